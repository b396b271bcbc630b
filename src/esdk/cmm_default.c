/*
 * The default materials manager (cmm-interface.md, default-cmm.md): picks the suite the
 * commitment policy allows, makes the ECDSA key pair of signed suites and publishes its
 * compressed public key in the context, then asks its keyring to make and wrap the data key.
 * On decrypt it rebuilds the verification key from the context, merges the caller's
 * reproduced context and asks the keyring to unwrap.
 */
#include <stdlib.h>

#include "esdk/esdk_internal.h"

struct cmm_default {
    coffer_cmm base;
    coffer_keyring *kr;
};

static coffer_err def_get_enc(coffer_cmm *cmm, const coffer_enc_request *req, coffer_enc_materials **out)
{
    struct cmm_default *c = (struct cmm_default *)cmm;
    coffer_err rc = COFFER_OK;
    coffer_enc_materials *m = NULL;
    coffer_buf pub = COFFER_BUF_INIT;
    uint16_t id = req->suite;

    if (id == 0) {
        id = req->policy == COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT ? 0x0378 : 0x0578;
    }
    const struct esdk_suite *s = esdk_suite_find(id);
    if (!s) {
        FAIL_OUT(COFFER_ERR_USAGE, "unknown algorithm suite 0x%04x", id);
    }
    TRY_OUT(esdk_policy_check_encrypt(req->policy, s));
    if (esdk_ec_find(req->ec, coffer_cursor_from_str(ESDK_PUBKEY_EC_KEY))) {
        FAIL_OUT(COFFER_ERR_USAGE, "the encryption context key %s is reserved", ESDK_PUBKEY_EC_KEY);
    }
    m = esdk_enc_materials_new(s, req->ec);
    if (!m) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (esdk_suite_signed(s)) {
        TRY_OUT(esdk_sig_keygen(s, &m->signing_key));
        TRY_OUT(esdk_sig_pubkey_b64(m->signing_key, &pub));
        TRY_OUT(esdk_ec_put(m->ec, coffer_cursor_from_str(ESDK_PUBKEY_EC_KEY), coffer_buf_cursor(&pub)));
    }
    TRY_OUT(esdk_keyring_on_encrypt(c->kr, m));
    if (m->data_key.len != s->key_len || m->edks.n == 0) {
        FAIL_OUT(COFFER_ERR_KEYRING, "keyring produced no data key or no encrypted data key");
    }
    *out = m;
    m = NULL;
out:
    coffer_buf_free(&pub);
    coffer_enc_materials_free(m);
    return rc;
}

static coffer_err def_get_dec(coffer_cmm *cmm, const coffer_dec_request *req, coffer_dec_materials **out)
{
    struct cmm_default *c = (struct cmm_default *)cmm;
    coffer_err rc = COFFER_OK;
    coffer_dec_materials *m = NULL;
    const struct esdk_suite *s = esdk_suite_find(req->suite);

    if (!s) {
        FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "unknown algorithm suite");
    }
    TRY_OUT(esdk_policy_check_decrypt(req->policy, s));
    m = esdk_dec_materials_new(s, req->ec);
    if (!m) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* Reproduced context: shared keys must agree; the others were authenticated only. */
    for (size_t i = 0; req->reproduced_ec && i < req->reproduced_ec->n; i++) {
        const struct esdk_ec_entry *r = &req->reproduced_ec->v[i];
        const struct esdk_ec_entry *h = esdk_ec_find(req->ec, coffer_buf_cursor(&r->key));
        if (h) {
            if (!coffer_cursor_eq(coffer_buf_cursor(&h->val), coffer_buf_cursor(&r->val))) {
                FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "encryption context does not match the message");
            }
            continue;
        }
        TRY_OUT(esdk_ec_put(m->ec, coffer_buf_cursor(&r->key), coffer_buf_cursor(&r->val)));
        TRY_OUT(esdk_ec_put(m->required_keys, coffer_buf_cursor(&r->key), coffer_cursor_from(NULL, 0)));
    }
    const struct esdk_ec_entry *pk = esdk_ec_find(m->ec, coffer_cursor_from_str(ESDK_PUBKEY_EC_KEY));
    if (esdk_suite_signed(s)) {
        if (!pk) {
            FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "signed message without a public key");
        }
        TRY_OUT(esdk_sig_pubkey_from_b64(s, coffer_buf_cursor(&pk->val), &m->verify_key));
    } else if (pk) {
        FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "unsigned suite with a signing public key");
    }
    TRY_OUT(esdk_keyring_on_decrypt(c->kr, m, req->edks, req->edk_count));
    if (m->data_key.len != s->key_len) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "no keyring could decrypt a data key");
    }
    *out = m;
    m = NULL;
out:
    coffer_dec_materials_free(m);
    return rc;
}

static void def_destroy(coffer_cmm *cmm)
{
    struct cmm_default *c = (struct cmm_default *)cmm;
    coffer_keyring_release(c->kr);
    free(c);
}

ESDK_CMM_STATUS_METHODS(def)

static const struct coffer_cmm_vt default_vt = {
    sizeof(struct coffer_cmm_vt), "default", def_get_enc_status, def_get_dec_status, def_destroy,
};

coffer_cmm *coffer_cmm_default_new(coffer_keyring *kr)
{
    if (!kr) {
        coffer_fail(COFFER_ERR_USAGE, "default CMM needs a keyring");
        return NULL;
    }
    struct cmm_default *c = calloc(1, sizeof(*c));
    if (!c) {
        coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        return NULL;
    }
    coffer_cmm_base_init(&c->base, &default_vt);
    c->kr = coffer_keyring_retain(kr);
    return &c->base;
}
