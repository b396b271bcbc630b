/*
 * Required-encryption-context CMM (required-encryption-context-cmm.md): wraps another CMM and
 * insists that a fixed set of context keys is present. On encrypt those pairs are marked
 * "authenticate only": the stream keeps them out of the header but feeds them to the header
 * tag, and keyrings (raw AES) still bind the full context. On decrypt the caller must supply
 * them again in the reproduced context.
 */
#include <stdlib.h>
#include <string.h>

#include "esdk/esdk_internal.h"

struct cmm_req {
    coffer_cmm base;
    coffer_cmm *under;
    coffer_ec *keys; /* a set: values empty */
};

static coffer_err req_get_enc(coffer_cmm *cmm, const coffer_enc_request *req, coffer_enc_materials **out)
{
    struct cmm_req *c = (struct cmm_req *)cmm;
    coffer_enc_materials *m = NULL;
    coffer_err rc = COFFER_OK;

    for (size_t i = 0; i < c->keys->n; i++) {
        if (!esdk_ec_find(req->ec, coffer_buf_cursor(&c->keys->v[i].key))) {
            FAIL_OUT(COFFER_ERR_USAGE, "a required encryption context key is missing");
        }
    }
    TRY_OUT(esdk_cmm_get_enc_materials(c->under, req, &m));
    for (size_t i = 0; i < c->keys->n; i++) {
        TRY_OUT(esdk_ec_put(m->required_keys, coffer_buf_cursor(&c->keys->v[i].key),
                            coffer_cursor_from(NULL, 0)));
    }
    *out = m;
    m = NULL;
out:
    coffer_enc_materials_free(m);
    return rc;
}

static coffer_err req_get_dec(coffer_cmm *cmm, const coffer_dec_request *req, coffer_dec_materials **out)
{
    struct cmm_req *c = (struct cmm_req *)cmm;
    coffer_dec_materials *m = NULL;
    coffer_err rc = COFFER_OK;

    for (size_t i = 0; i < c->keys->n; i++) {
        if (!esdk_ec_find(req->reproduced_ec, coffer_buf_cursor(&c->keys->v[i].key))) {
            FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "a required encryption context key was not reproduced");
        }
    }
    TRY_OUT(esdk_cmm_get_dec_materials(c->under, req, &m));
    for (size_t i = 0; i < c->keys->n; i++) {
        if (!esdk_ec_find(m->ec, coffer_buf_cursor(&c->keys->v[i].key))) {
            FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "a required encryption context key is missing");
        }
    }
    *out = m;
    m = NULL;
out:
    coffer_dec_materials_free(m);
    return rc;
}

static void req_destroy(coffer_cmm *cmm)
{
    struct cmm_req *c = (struct cmm_req *)cmm;
    coffer_cmm_release(c->under);
    coffer_ec_free(c->keys);
    free(c);
}

ESDK_CMM_STATUS_METHODS(req)

static const struct coffer_cmm_vt required_vt = {
    sizeof(struct coffer_cmm_vt),
    "required-encryption-context",
    req_get_enc_status,
    req_get_dec_status,
    req_destroy,
};

coffer_cmm *coffer_cmm_required_ec_new(coffer_cmm *underlying, const char *const *keys, size_t key_count)
{
    if (!underlying || (key_count && !keys)) {
        coffer_fail(COFFER_ERR_USAGE, "invalid required-encryption-context CMM arguments");
        return NULL;
    }
    struct cmm_req *c = calloc(1, sizeof(*c));
    if (!c || !(c->keys = coffer_ec_new())) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < key_count; i++) {
        if (!keys[i] ||
            esdk_ec_put(c->keys, coffer_cursor_from_str(keys[i]), coffer_cursor_from(NULL, 0)) != COFFER_OK) {
            coffer_ec_free(c->keys);
            free(c);
            return NULL;
        }
    }
    coffer_cmm_base_init(&c->base, &required_vt);
    c->under = coffer_cmm_retain(underlying);
    return &c->base;
}
