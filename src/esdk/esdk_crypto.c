/*
 * The OpenSSL calls the message format needs beyond src/crypto: AES-GCM over a context the
 * streams reuse frame after frame (no allocation per frame), ECDSA P-256/P-384 with the
 * compressed public points the format stores in the encryption context, and RSA key wrapping
 * with PKCS#1 v1.5 or OAEP (MGF1 over the same hash, as the official SDKs use).
 */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "esdk/esdk_internal.h"

/*
 * Algorithms are fetched once per process. The implicit fetches behind EVP_aes_256_gcm() and
 * a by-name EVP_KDF/EVP_MD lookup cost more than sealing a small message, and the caching CMM
 * makes a small message cheap enough for them to dominate. Fetched objects are immutable and
 * shared by every thread; each call still works on its own context.
 */
static EVP_CIPHER *fetched_gcm[3]; /* AES-128/192/256-GCM */
static EVP_KDF *fetched_hkdf;
static pthread_key_t hkdf_key; /* per thread: struct hkdf_thread */
static bool hkdf_key_ok;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

/* One HKDF context per digest and thread, the digest set once (setting it fetches by name). */
struct hkdf_thread {
    EVP_KDF_CTX *ctx[3];
};

static void hkdf_thread_free(void *p)
{
    struct hkdf_thread *t = p;
    for (size_t i = 0; i < 3; i++) {
        EVP_KDF_CTX_free(t->ctx[i]);
    }
    free(t);
}

static const char *md_name(enum crypto_digest d)
{
    return d == CRYPTO_SHA256 ? "SHA256" : d == CRYPTO_SHA384 ? "SHA384" : "SHA512";
}

static void fetch_all(void)
{
    static const char *const gcm_names[3] = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM"};
    for (size_t i = 0; i < 3; i++) {
        fetched_gcm[i] = EVP_CIPHER_fetch(NULL, gcm_names[i], NULL);
    }
    fetched_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    hkdf_key_ok = pthread_key_create(&hkdf_key, hkdf_thread_free) == 0;
}

static const EVP_CIPHER *gcm_cipher(size_t key_len)
{
    pthread_once(&fetch_once, fetch_all);
    switch (key_len) {
    case 16:
        return fetched_gcm[0];
    case 24:
        return fetched_gcm[1];
    case 32:
        return fetched_gcm[2];
    default:
        return NULL;
    }
}

coffer_err esdk_gcm_key(EVP_CIPHER_CTX *ctx, bool encrypt, const uint8_t *key, size_t key_len)
{
    const EVP_CIPHER *cipher = gcm_cipher(key_len);
    ENSURE(cipher != NULL, COFFER_ERR_CRYPTO);
    if (EVP_CipherInit_ex(ctx, cipher, NULL, key, NULL, encrypt ? 1 : 0) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "AES-GCM key setup failed");
    }
    return COFFER_OK;
}

coffer_err esdk_gcm_seal_keyed(EVP_CIPHER_CTX *ctx, const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad,
                               coffer_cursor pt, uint8_t *ct_out, uint8_t tag_out[ESDK_TAG_LEN])
{
    uint8_t fin[16]; /* GCM writes nothing at final; never offset a possibly-NULL output */
    int n = 0;
    ENSURE(pt.len <= INT32_MAX && aad.len <= INT32_MAX, COFFER_ERR_CRYPTO);
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
        (aad.len && EVP_EncryptUpdate(ctx, NULL, &n, aad.ptr, (int)aad.len) != 1) ||
        (pt.len && EVP_EncryptUpdate(ctx, ct_out, &n, pt.ptr, (int)pt.len) != 1) ||
        EVP_EncryptFinal_ex(ctx, fin, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ESDK_TAG_LEN, tag_out) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "AES-GCM seal failed");
    }
    return COFFER_OK;
}

coffer_err esdk_gcm_open_keyed(EVP_CIPHER_CTX *ctx, const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad,
                               coffer_cursor ct, const uint8_t tag[ESDK_TAG_LEN], uint8_t *pt_out)
{
    uint8_t tagcopy[ESDK_TAG_LEN];
    uint8_t fin[16];
    int n = 0;
    ENSURE(ct.len <= INT32_MAX && aad.len <= INT32_MAX, COFFER_ERR_CRYPTO);
    memcpy(tagcopy, tag, ESDK_TAG_LEN);
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
        (aad.len && EVP_DecryptUpdate(ctx, NULL, &n, aad.ptr, (int)aad.len) != 1) ||
        (ct.len && EVP_DecryptUpdate(ctx, pt_out, &n, ct.ptr, (int)ct.len) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ESDK_TAG_LEN, tagcopy) != 1 ||
        EVP_DecryptFinal_ex(ctx, fin, &n) != 1) {
        /* Never leave unauthenticated plaintext behind. */
        if (ct.len) {
            coffer_secure_zero(pt_out, ct.len);
        }
        return coffer_fail(COFFER_ERR_BAD_MESSAGE, "authentication failed");
    }
    return COFFER_OK;
}

coffer_err esdk_gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t *key, size_t key_len,
                         const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad, coffer_cursor pt, uint8_t *ct_out,
                         uint8_t tag_out[ESDK_TAG_LEN])
{
    TRY(esdk_gcm_key(ctx, true, key, key_len));
    return esdk_gcm_seal_keyed(ctx, iv, aad, pt, ct_out, tag_out);
}

coffer_err esdk_gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t *key, size_t key_len,
                         const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad, coffer_cursor ct,
                         const uint8_t tag[ESDK_TAG_LEN], uint8_t *pt_out)
{
    TRY(esdk_gcm_key(ctx, false, key, key_len));
    return esdk_gcm_open_keyed(ctx, iv, aad, ct, tag, pt_out);
}

/* ---- HKDF (RFC 5869) through OpenSSL's KDF ---- */

static EVP_KDF_CTX *hkdf_ctx(enum crypto_digest d)
{
    pthread_once(&fetch_once, fetch_all);
    if (!fetched_hkdf || !hkdf_key_ok || (unsigned)d >= 3) {
        return NULL;
    }
    struct hkdf_thread *t = pthread_getspecific(hkdf_key);
    if (!t) {
        if (!(t = calloc(1, sizeof(*t))) || pthread_setspecific(hkdf_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    if (!t->ctx[d]) {
        EVP_KDF_CTX *c = EVP_KDF_CTX_new(fetched_hkdf);
        OSSL_PARAM p[2] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md_name(d), 0),
                           OSSL_PARAM_construct_end()};
        if (!c || EVP_KDF_CTX_set_params(c, p) != 1) {
            EVP_KDF_CTX_free(c);
            return NULL;
        }
        t->ctx[d] = c;
    }
    return t->ctx[d];
}

static coffer_err hkdf_run(EVP_KDF_CTX *c, int mode, coffer_cursor key, coffer_cursor salt,
                           coffer_cursor info, uint8_t *out, size_t out_len)
{
    OSSL_PARAM p[5];
    size_t np = 0;
    p[np++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    p[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key.ptr, key.len);
    if (mode != EVP_KDF_HKDF_MODE_EXPAND_ONLY) {
        p[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt.ptr, salt.len);
    }
    if (mode != EVP_KDF_HKDF_MODE_EXTRACT_ONLY) {
        p[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info.ptr, info.len);
    }
    p[np] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(c, out, out_len, p) != 1) {
        coffer_secure_zero(out, out_len);
        return coffer_fail(COFFER_ERR_CRYPTO, "HKDF failure");
    }
    return COFFER_OK;
}

/* The context keeps a copy of the last key it was given (a data key or a PRK): replacing it
 * makes OpenSSL wipe and free that copy, so nothing secret outlives the call. */
static bool hkdf_scrub(EVP_KDF_CTX *c)
{
    static const uint8_t zero[1] = {0};
    OSSL_PARAM p[2] = {OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)zero, sizeof(zero)),
                       OSSL_PARAM_construct_end()};
    return EVP_KDF_CTX_set_params(c, p) == 1;
}

coffer_err esdk_hkdf(enum crypto_digest d, coffer_cursor ikm, coffer_cursor salt, const coffer_cursor *infos,
                     uint8_t *const *outs, const size_t *out_lens, size_t n)
{
    static const uint8_t zeros[64] = {0};
    uint8_t prk[64];
    size_t prk_len = crypto_digest_len(d);
    coffer_err rc = COFFER_OK;
    EVP_KDF_CTX *c = hkdf_ctx(d);

    ENSURE(c != NULL && ikm.len > 0 && prk_len <= sizeof(prk) && n > 0, COFFER_ERR_CRYPTO);
    /* No salt means a string of HashLen zeros (RFC 5869 §2.2). */
    if (salt.len == 0) {
        salt = coffer_cursor_from(zeros, prk_len);
    }
    if (n == 1) {
        TRY_OUT(hkdf_run(c, EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, ikm, salt, infos[0], outs[0], out_lens[0]));
        goto out;
    }
    /* Several outputs from one key and salt share one extract step. */
    TRY_OUT(
        hkdf_run(c, EVP_KDF_HKDF_MODE_EXTRACT_ONLY, ikm, salt, coffer_cursor_from(NULL, 0), prk, prk_len));
    for (size_t i = 0; i < n; i++) {
        TRY_OUT(hkdf_run(c, EVP_KDF_HKDF_MODE_EXPAND_ONLY, coffer_cursor_from(prk, prk_len), salt, infos[i],
                         outs[i], out_lens[i]));
    }
out:
    if (!hkdf_scrub(c)) {
        /* Cannot prove the copy is gone: drop the whole context (freeing it wipes the key). */
        struct hkdf_thread *t = pthread_getspecific(hkdf_key);
        EVP_KDF_CTX_free(c);
        t->ctx[d] = NULL;
    }
    if (rc != COFFER_OK) {
        for (size_t i = 0; i < n; i++) {
            coffer_secure_zero(outs[i], out_lens[i]);
        }
    }
    coffer_secure_zero(prk, sizeof(prk));
    return rc;
}

/* ---- ECDSA ---- */

static const char *curve_name(const struct esdk_suite *s)
{
    return s->sig_curve_nid == NID_X9_62_prime256v1 ? "P-256" : "P-384";
}

coffer_err esdk_sig_keygen(const struct esdk_suite *s, EVP_PKEY **out)
{
    EVP_PKEY *k = EVP_EC_gen(curve_name(s));
    ENSURE(k != NULL, COFFER_ERR_CRYPTO);
    *out = k;
    return COFFER_OK;
}

coffer_err esdk_sig_pubkey_b64(EVP_PKEY *k, coffer_buf *out)
{
    uint8_t pt[1 + 2 * 66];
    size_t n = 0;
    /* The format stores the compressed point (SEC 1 §2.3.3): 02|03 by the parity of y, then x. */
    if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &n) != 1 || n < 3 ||
        pt[0] != 0x04 || (n - 1) % 2 != 0) {
        return coffer_fail(COFFER_ERR_CRYPTO, "cannot encode the public key");
    }
    size_t coord = (n - 1) / 2;
    pt[0] = (uint8_t)(0x02 | (pt[n - 1] & 1));
    return coffer_b64_encode(coffer_cursor_from(pt, 1 + coord), out);
}

coffer_err esdk_sig_pubkey_from_b64(const struct esdk_suite *s, coffer_cursor b64, EVP_PKEY **out)
{
    coffer_buf raw = COFFER_BUF_INIT;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *k = NULL;
    OSSL_PARAM params[3];
    coffer_err rc = COFFER_OK;
    size_t want = s->sig_curve_nid == NID_X9_62_prime256v1 ? 33 : 49;

    if (coffer_b64_decode(b64, &raw) != COFFER_OK || raw.len != want ||
        (raw.data[0] != 2 && raw.data[0] != 3)) {
        FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "malformed signing public key");
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)curve_name(s), 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, raw.data, raw.len);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "invalid signing public key");
    }
    *out = k;
    k = NULL;
out:
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    coffer_buf_free(&raw);
    return rc;
}

coffer_err esdk_sig_init(const struct esdk_suite *s, EVP_PKEY *k, bool sign, EVP_MD_CTX **out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ENSURE(ctx != NULL, COFFER_ERR_NOMEM);
    int ok = sign ? EVP_DigestSignInit_ex(ctx, NULL, s->sig_md, NULL, NULL, k, NULL)
                  : EVP_DigestVerifyInit_ex(ctx, NULL, s->sig_md, NULL, NULL, k, NULL);
    if (ok != 1) {
        EVP_MD_CTX_free(ctx);
        return coffer_fail(COFFER_ERR_CRYPTO, "signature init failed");
    }
    *out = ctx;
    return COFFER_OK;
}

coffer_err esdk_sig_update(EVP_MD_CTX *ctx, coffer_cursor data)
{
    /* DigestSignUpdate and DigestVerifyUpdate are the same digest update underneath. */
    if (data.len && EVP_DigestUpdate(ctx, data.ptr, data.len) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "signature update failed");
    }
    return COFFER_OK;
}

coffer_err esdk_sig_sign_final(EVP_MD_CTX *ctx, coffer_buf *sig_out)
{
    size_t n = 0;
    ENSURE(EVP_DigestSignFinal(ctx, NULL, &n) == 1, COFFER_ERR_CRYPTO);
    TRY(coffer_buf_reserve(sig_out, n));
    ENSURE(EVP_DigestSignFinal(ctx, sig_out->data + sig_out->len, &n) == 1, COFFER_ERR_CRYPTO);
    sig_out->len += n;
    return COFFER_OK;
}

coffer_err esdk_sig_verify_final(EVP_MD_CTX *ctx, coffer_cursor sig)
{
    if (EVP_DigestVerifyFinal(ctx, sig.ptr, sig.len) != 1) {
        return coffer_fail(COFFER_ERR_BAD_SIGNATURE, "message signature does not verify");
    }
    return COFFER_OK;
}

/* ---- RSA ---- */

static coffer_err rsa_ctx_setup(EVP_PKEY_CTX *ctx, coffer_rsa_padding pad)
{
    static const char *const md[] = {NULL, "SHA1", "SHA256", "SHA384", "SHA512"};
    if (pad == COFFER_RSA_PKCS1) {
        ENSURE(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1, COFFER_ERR_CRYPTO);
        return COFFER_OK;
    }
    ENSURE(pad > COFFER_RSA_PKCS1 && pad <= COFFER_RSA_OAEP_SHA512_MGF1, COFFER_ERR_USAGE);
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md[pad], NULL) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md[pad], NULL) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "RSA padding setup failed");
    }
    return COFFER_OK;
}

coffer_err esdk_rsa_wrap(EVP_PKEY *k, coffer_rsa_padding pad, coffer_cursor pt, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    size_t n = 0;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    if (!ctx || EVP_PKEY_encrypt_init(ctx) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "RSA init failed");
    }
    TRY_OUT(rsa_ctx_setup(ctx, pad));
    if (EVP_PKEY_encrypt(ctx, NULL, &n, pt.ptr, pt.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "RSA encrypt failed");
    }
    TRY_OUT(coffer_buf_reserve(out, n));
    if (EVP_PKEY_encrypt(ctx, out->data + out->len, &n, pt.ptr, pt.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "RSA encrypt failed");
    }
    out->len += n;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

coffer_err esdk_rsa_unwrap(EVP_PKEY *k, coffer_rsa_padding pad, coffer_cursor ct, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    size_t n = 0;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    if (!ctx || EVP_PKEY_decrypt_init(ctx) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "RSA init failed");
    }
    TRY_OUT(rsa_ctx_setup(ctx, pad));
    if (pad == COFFER_RSA_PKCS1) {
        /* Implicit rejection would return random bytes instead of failing; the caller checks
         * the length and the message tags catch a wrong key, so ask for an explicit error. */
        EVP_PKEY_CTX_ctrl_str(ctx, "rsa_pkcs1_implicit_rejection", "0");
    }
    if (EVP_PKEY_decrypt(ctx, NULL, &n, ct.ptr, ct.len) != 1) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "RSA unwrap failed");
    }
    TRY_OUT(coffer_buf_reserve(out, n));
    if (EVP_PKEY_decrypt(ctx, out->data + out->len, &n, ct.ptr, ct.len) != 1) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "RSA unwrap failed");
    }
    out->len += n;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}
