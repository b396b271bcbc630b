/*
 * Materials (the data key, its EDKs, the context and the signing keys handed between CMMs,
 * keyrings and streams), the refcounted keyring and CMM bases, and the public helper that frees
 * returned buffers. The vtable methods answer public status codes (a caller's keyring knows no
 * other), so the esdk_ wrappers here turn them back into coffer_err with esdk_err.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "crypto/crypto.h"
#include "esdk/esdk_internal.h"

void coffer_bytes_free(uint8_t *p, size_t len)
{
    if (p) {
        coffer_secure_zero(p, len);
        free(p);
    }
}

/* ---- EDK lists ---- */

coffer_err esdk_edk_list_add(struct esdk_edk_list *l, coffer_cursor pid, coffer_cursor info, coffer_cursor ct)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 4;
        struct esdk_edk *p = realloc(l->v, ncap * sizeof(*p));
        ENSURE(p != NULL, COFFER_ERR_NOMEM);
        l->v = p;
        l->cap = ncap;
    }
    assert(l->n < l->cap);
    struct esdk_edk e = {COFFER_BUF_INIT, COFFER_BUF_INIT, COFFER_BUF_INIT};
    coffer_err rc = COFFER_OK;
    TRY_OUT(coffer_buf_from(&e.provider_id, pid.ptr, pid.len, false));
    TRY_OUT(coffer_buf_from(&e.provider_info, info.ptr, info.len, false));
    TRY_OUT(coffer_buf_from(&e.ciphertext, ct.ptr, ct.len, false));
    l->v[l->n++] = e;
    return COFFER_OK;
out:
    coffer_buf_free(&e.provider_id);
    coffer_buf_free(&e.provider_info);
    coffer_buf_free(&e.ciphertext);
    return rc;
}

void esdk_edk_list_clean(struct esdk_edk_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        coffer_buf_free(&l->v[i].provider_id);
        coffer_buf_free(&l->v[i].provider_info);
        coffer_buf_free(&l->v[i].ciphertext);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void edk_view(const struct esdk_edk *e, coffer_edk *v)
{
    v->provider_id = e->provider_id.data;
    v->provider_id_len = e->provider_id.len;
    v->provider_info = e->provider_info.data;
    v->provider_info_len = e->provider_info.len;
    v->ciphertext = e->ciphertext.data;
    v->ciphertext_len = e->ciphertext.len;
}

coffer_err esdk_edk_list_views(const struct esdk_edk_list *l, coffer_edk **out)
{
    coffer_edk *v = calloc(l->n ? l->n : 1, sizeof(*v));
    ENSURE(v != NULL, COFFER_ERR_NOMEM);
    for (size_t i = 0; i < l->n; i++) {
        edk_view(&l->v[i], &v[i]);
    }
    *out = v;
    return COFFER_OK;
}

/* ---- encryption materials ---- */

coffer_enc_materials *esdk_enc_materials_new(const struct esdk_suite *s, const coffer_ec *ec)
{
    coffer_enc_materials *m = calloc(1, sizeof(*m));
    if (!m) {
        return NULL;
    }
    m->suite = s;
    coffer_buf_init(&m->data_key, true);
    m->ec = coffer_ec_clone(ec);
    m->required_keys = coffer_ec_new();
    if (!m->ec || !m->required_keys) {
        coffer_enc_materials_free(m);
        return NULL;
    }
    return m;
}

void coffer_enc_materials_free(coffer_enc_materials *m)
{
    if (!m) {
        return;
    }
    coffer_ec_free(m->ec);
    coffer_ec_free(m->required_keys);
    coffer_buf_free(&m->data_key);
    esdk_edk_list_clean(&m->edks);
    EVP_PKEY_free(m->signing_key);
    free(m);
}

coffer_err esdk_enc_materials_clone(const coffer_enc_materials *m, coffer_enc_materials **out)
{
    coffer_err rc = COFFER_OK;
    coffer_enc_materials *c = esdk_enc_materials_new(m->suite, m->ec);
    ENSURE(c != NULL, COFFER_ERR_NOMEM);
    for (size_t i = 0; i < m->required_keys->n; i++) {
        TRY_OUT(esdk_ec_put(c->required_keys, coffer_buf_cursor(&m->required_keys->v[i].key),
                            coffer_cursor_from(NULL, 0)));
    }
    TRY_OUT(coffer_buf_append(&c->data_key, m->data_key.data, m->data_key.len));
    for (size_t i = 0; i < m->edks.n; i++) {
        const struct esdk_edk *e = &m->edks.v[i];
        TRY_OUT(esdk_edk_list_add(&c->edks, coffer_buf_cursor(&e->provider_id),
                                  coffer_buf_cursor(&e->provider_info), coffer_buf_cursor(&e->ciphertext)));
    }
    if (m->signing_key) {
        if (EVP_PKEY_up_ref(m->signing_key) != 1) {
            FAIL_OUT(COFFER_ERR_CRYPTO, "key reference failed");
        }
        c->signing_key = m->signing_key;
    }
    *out = c;
    c = NULL;
out:
    coffer_enc_materials_free(c);
    return rc;
}

uint16_t coffer_enc_materials_suite(const coffer_enc_materials *m)
{
    return m->suite->id;
}

const coffer_ec *coffer_enc_materials_ec(const coffer_enc_materials *m)
{
    return m->ec;
}

size_t coffer_enc_materials_data_key_len(const coffer_enc_materials *m)
{
    return m->suite->key_len;
}

void coffer_enc_materials_data_key(const coffer_enc_materials *m, const uint8_t **key, size_t *len)
{
    *key = m->data_key.len ? m->data_key.data : NULL;
    *len = m->data_key.len;
}

coffer_err esdk_enc_materials_set_data_key(coffer_enc_materials *m, const uint8_t *key, size_t len)
{
    ENSURE(m && key && len == m->suite->key_len && m->data_key.len == 0, COFFER_ERR_USAGE);
    return coffer_buf_append(&m->data_key, key, len);
}

int coffer_enc_materials_set_data_key(coffer_enc_materials *m, const uint8_t *key, size_t len)
{
    return esdk_status(esdk_enc_materials_set_data_key(m, key, len));
}

coffer_err esdk_enc_materials_fill_data_key(coffer_enc_materials *m)
{
    if (m->data_key.len != 0) {
        return COFFER_OK;
    }
    uint8_t dk[ESDK_MAX_KEY_LEN];
    /* Every suite's key fits: ESDK_MAX_KEY_LEN is the largest key_len of the suite table. */
    assert(m->suite->key_len <= sizeof(dk));
    coffer_err rc = COFFER_OK;
    TRY_OUT(crypto_random(dk, m->suite->key_len));
    TRY_OUT(esdk_enc_materials_set_data_key(m, dk, m->suite->key_len));
out:
    coffer_secure_zero(dk, sizeof(dk));
    return rc;
}

coffer_err esdk_enc_materials_add_edk(coffer_enc_materials *m, const coffer_edk *edk)
{
    ENSURE(m && edk, COFFER_ERR_USAGE);
    ENSURE(edk->provider_id_len <= UINT16_MAX && edk->provider_info_len <= UINT16_MAX &&
               edk->ciphertext_len <= UINT16_MAX,
           COFFER_ERR_LIMIT);
    return esdk_edk_list_add(&m->edks, coffer_cursor_from(edk->provider_id, edk->provider_id_len),
                             coffer_cursor_from(edk->provider_info, edk->provider_info_len),
                             coffer_cursor_from(edk->ciphertext, edk->ciphertext_len));
}

int coffer_enc_materials_add_edk(coffer_enc_materials *m, const coffer_edk *edk)
{
    return esdk_status(esdk_enc_materials_add_edk(m, edk));
}

size_t coffer_enc_materials_edk_count(const coffer_enc_materials *m)
{
    return m->edks.n;
}

/* ---- decryption materials ---- */

coffer_dec_materials *esdk_dec_materials_new(const struct esdk_suite *s, const coffer_ec *ec)
{
    coffer_dec_materials *m = calloc(1, sizeof(*m));
    if (!m) {
        return NULL;
    }
    m->suite = s;
    coffer_buf_init(&m->data_key, true);
    m->ec = coffer_ec_clone(ec);
    m->required_keys = coffer_ec_new();
    if (!m->ec || !m->required_keys) {
        coffer_dec_materials_free(m);
        return NULL;
    }
    return m;
}

void coffer_dec_materials_free(coffer_dec_materials *m)
{
    if (!m) {
        return;
    }
    coffer_ec_free(m->ec);
    coffer_ec_free(m->required_keys);
    coffer_buf_free(&m->data_key);
    EVP_PKEY_free(m->verify_key);
    free(m);
}

uint16_t coffer_dec_materials_suite(const coffer_dec_materials *m)
{
    return m->suite->id;
}

const coffer_ec *coffer_dec_materials_ec(const coffer_dec_materials *m)
{
    return m->ec;
}

size_t coffer_dec_materials_data_key_len(const coffer_dec_materials *m)
{
    return m->suite->key_len;
}

bool coffer_dec_materials_has_data_key(const coffer_dec_materials *m)
{
    return m->data_key.len != 0;
}

coffer_err esdk_dec_materials_set_data_key(coffer_dec_materials *m, const uint8_t *key, size_t len)
{
    ENSURE(m && key && len == m->suite->key_len && m->data_key.len == 0, COFFER_ERR_USAGE);
    return coffer_buf_append(&m->data_key, key, len);
}

int coffer_dec_materials_set_data_key(coffer_dec_materials *m, const uint8_t *key, size_t len)
{
    return esdk_status(esdk_dec_materials_set_data_key(m, key, len));
}

/* ---- keyring and CMM bases ---- */

void coffer_keyring_base_init(coffer_keyring *kr, const struct coffer_keyring_vt *vt)
{
    kr->vt = vt;
    kr->refcount = 1;
}

coffer_keyring *coffer_keyring_retain(coffer_keyring *kr)
{
    if (kr) {
        esdk_ref_inc(&kr->refcount);
    }
    return kr;
}

void coffer_keyring_release(coffer_keyring *kr)
{
    if (kr && esdk_ref_dec(&kr->refcount) && kr->vt->destroy) {
        kr->vt->destroy(kr);
    }
}

coffer_err esdk_keyring_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    ENSURE(kr && m && kr->vt->vt_size >= sizeof(struct coffer_keyring_vt) && kr->vt->on_encrypt,
           COFFER_ERR_USAGE);
    return esdk_err(kr->vt->on_encrypt(kr, m), COFFER_ERR_KEYRING);
}

int coffer_keyring_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    return esdk_status(esdk_keyring_on_encrypt(kr, m));
}

coffer_err esdk_keyring_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                   size_t edk_count)
{
    ENSURE(kr && m && kr->vt->vt_size >= sizeof(struct coffer_keyring_vt) && kr->vt->on_decrypt,
           COFFER_ERR_USAGE);
    if (m->data_key.len) {
        return COFFER_OK;
    }
    return esdk_err(kr->vt->on_decrypt(kr, m, edks, edk_count), COFFER_ERR_CANNOT_DECRYPT);
}

int coffer_keyring_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                              size_t edk_count)
{
    return esdk_status(esdk_keyring_on_decrypt(kr, m, edks, edk_count));
}

void coffer_cmm_base_init(coffer_cmm *cmm, const struct coffer_cmm_vt *vt)
{
    cmm->vt = vt;
    cmm->refcount = 1;
}

coffer_cmm *coffer_cmm_retain(coffer_cmm *cmm)
{
    if (cmm) {
        esdk_ref_inc(&cmm->refcount);
    }
    return cmm;
}

void coffer_cmm_release(coffer_cmm *cmm)
{
    if (cmm && esdk_ref_dec(&cmm->refcount) && cmm->vt->destroy) {
        cmm->vt->destroy(cmm);
    }
}

coffer_err esdk_cmm_get_enc_materials(coffer_cmm *cmm, const coffer_enc_request *req,
                                      coffer_enc_materials **out)
{
    ENSURE(cmm && req && out && cmm->vt->get_enc_materials, COFFER_ERR_USAGE);
    *out = NULL;
    return esdk_err(cmm->vt->get_enc_materials(cmm, req, out), COFFER_ERR_INTERNAL);
}

int coffer_cmm_get_enc_materials(coffer_cmm *cmm, const coffer_enc_request *req, coffer_enc_materials **out)
{
    return esdk_status(esdk_cmm_get_enc_materials(cmm, req, out));
}

coffer_err esdk_cmm_get_dec_materials(coffer_cmm *cmm, const coffer_dec_request *req,
                                      coffer_dec_materials **out)
{
    ENSURE(cmm && req && out && cmm->vt->get_dec_materials, COFFER_ERR_USAGE);
    *out = NULL;
    return esdk_err(cmm->vt->get_dec_materials(cmm, req, out), COFFER_ERR_INTERNAL);
}

int coffer_cmm_get_dec_materials(coffer_cmm *cmm, const coffer_dec_request *req, coffer_dec_materials **out)
{
    return esdk_status(esdk_cmm_get_dec_materials(cmm, req, out));
}
