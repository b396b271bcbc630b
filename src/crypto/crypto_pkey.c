/*
 * Asymmetric key pairs over OpenSSL's EVP_PKEY. The types are the fixed set KMS key specs
 * name, so a key loaded from the store or imported by a caller is checked against the spec it
 * claims (algorithm, modulus size or curve) before anything uses it.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/secret.h"
#include "crypto/crypto.h"

struct crypto_pkey {
    enum crypto_pkey_type type;
    EVP_PKEY *pkey;
};

struct pkey_type_info {
    const char *algorithm; /* EVP_PKEY_is_a name */
    int rsa_bits;          /* RSA: modulus size */
    const char *group;     /* EC: OpenSSL group name */
};

static const struct pkey_type_info type_info[] = {
    [CRYPTO_PKEY_RSA_2048] = {"RSA", 2048, NULL},        [CRYPTO_PKEY_RSA_3072] = {"RSA", 3072, NULL},
    [CRYPTO_PKEY_RSA_4096] = {"RSA", 4096, NULL},        [CRYPTO_PKEY_EC_P256] = {"EC", 0, "prime256v1"},
    [CRYPTO_PKEY_EC_P384] = {"EC", 0, "secp384r1"},      [CRYPTO_PKEY_EC_P521] = {"EC", 0, "secp521r1"},
    [CRYPTO_PKEY_EC_SECP256K1] = {"EC", 0, "secp256k1"},
};

static coffer_err pkey_wrap(enum crypto_pkey_type type, EVP_PKEY *pkey, crypto_pkey **out)
{
    crypto_pkey *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    k->type = type;
    k->pkey = pkey;
    *out = k;
    return COFFER_OK;
}

coffer_err crypto_pkey_generate(enum crypto_pkey_type type, crypto_pkey **out)
{
    const struct pkey_type_info *ti = &type_info[type];
    EVP_PKEY *pkey = ti->rsa_bits > 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)ti->rsa_bits)
                                      : EVP_PKEY_Q_keygen(NULL, NULL, "EC", ti->group);
    *out = NULL;
    if (pkey == NULL) {
        return coffer_fail(COFFER_ERR_CRYPTO, "key pair generation failed");
    }
    return pkey_wrap(type, pkey, out);
}

/* Is pkey a private key of exactly `type`? */
static bool pkey_matches(const EVP_PKEY *pkey, enum crypto_pkey_type type)
{
    const struct pkey_type_info *ti = &type_info[type];
    if (!EVP_PKEY_is_a(pkey, ti->algorithm)) {
        return false;
    }
    if (ti->rsa_bits > 0) {
        BIGNUM *e = NULL;
        bool ok = EVP_PKEY_get_bits(pkey) == ti->rsa_bits &&
                  EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && BN_is_odd(e);
        BN_free(e);
        return ok;
    }
    char group[64];
    size_t len = 0;
    return EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len) ==
               1 &&
           strcmp(group, ti->group) == 0;
}

coffer_err crypto_pkey_from_private_der(enum crypto_pkey_type type, coffer_cursor der, crypto_pkey **out)
{
    *out = NULL;
    const unsigned char *p = der.ptr;
    if (der.len == 0 || der.len > (size_t)LONG_MAX) {
        return coffer_fail(COFFER_ERR_VALIDATION, "not a private key");
    }
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der.len);
    /* Trailing bytes after the structure would make two different blobs load as one key. */
    if (p8 == NULL || p != der.ptr + der.len) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return coffer_fail(COFFER_ERR_VALIDATION, "not a private key");
    }
    EVP_PKEY *pkey = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (pkey == NULL || !pkey_matches(pkey, type)) {
        EVP_PKEY_free(pkey);
        return coffer_fail(COFFER_ERR_VALIDATION, "not a private key of the expected type");
    }
    return pkey_wrap(type, pkey, out);
}

coffer_err crypto_pkey_from_public_der(enum crypto_pkey_type type, coffer_cursor der, crypto_pkey **out)
{
    *out = NULL;
    const unsigned char *p = der.ptr;
    if (der.len == 0 || der.len > (size_t)LONG_MAX) {
        return coffer_fail(COFFER_ERR_VALIDATION, "not a public key");
    }
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)der.len);
    /* As for private keys: trailing bytes would let two different blobs load as one key. */
    if (pkey == NULL || p != der.ptr + der.len || !pkey_matches(pkey, type)) {
        EVP_PKEY_free(pkey);
        return coffer_fail(COFFER_ERR_VALIDATION, "not a public key of the expected type");
    }
    return pkey_wrap(type, pkey, out);
}

coffer_err crypto_pkey_private_der(const crypto_pkey *k, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k->pkey);
    int n = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) : -1;
    if (n <= 0) {
        rc = coffer_fail(COFFER_ERR_CRYPTO, "private key encoding failed");
        goto out;
    }
    /* Encode straight into the caller's (secret) buffer: no copy of the key elsewhere. */
    TRY_OUT(coffer_buf_reserve(out, (size_t)n));
    unsigned char *p = out->data + out->len;
    if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
        rc = coffer_fail(COFFER_ERR_CRYPTO, "private key encoding failed");
        goto out;
    }
    out->len += (size_t)n;
out:
    PKCS8_PRIV_KEY_INFO_free(p8);
    return rc;
}

coffer_err crypto_pkey_public_der(const crypto_pkey *k, coffer_buf *out)
{
    int n = i2d_PUBKEY(k->pkey, NULL);
    if (n <= 0) {
        return coffer_fail(COFFER_ERR_CRYPTO, "public key encoding failed");
    }
    TRY(coffer_buf_reserve(out, (size_t)n));
    unsigned char *p = out->data + out->len;
    if (i2d_PUBKEY(k->pkey, &p) != n) {
        return coffer_fail(COFFER_ERR_CRYPTO, "public key encoding failed");
    }
    out->len += (size_t)n;
    return COFFER_OK;
}

enum crypto_pkey_type crypto_pkey_type_of(const crypto_pkey *k)
{
    return k->type;
}

void crypto_pkey_free(crypto_pkey *k)
{
    if (k == NULL) {
        return;
    }
    EVP_PKEY_free(k->pkey);
    free(k);
}

/* ------------------------------------------------------------------------------------------ */
/* AES key wrap with padding (imported key material; RSA-OAEP is crypto_pkey_oaep_*)          */
/* ------------------------------------------------------------------------------------------ */

/* RFC 5649 with the AES key size of `kek` (16, 24 or 32 bytes). */
static const EVP_CIPHER *kwp_cipher(size_t kek_len)
{
    switch (kek_len) {
    case 16:
        return EVP_aes_128_wrap_pad();
    case 24:
        return EVP_aes_192_wrap_pad();
    case 32:
        return EVP_aes_256_wrap_pad();
    default:
        return NULL;
    }
}

static coffer_err kwp_run(bool enc, coffer_cursor kek, coffer_cursor in, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    const EVP_CIPHER *c = kwp_cipher(kek.len);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t *tmp = NULL;
    size_t cap = in.len + 16;
    int len = 0, fin = 0;
    coffer_err bad = enc ? COFFER_ERR_CRYPTO : COFFER_ERR_INVALID_CIPHERTEXT;
    if (c == NULL || ctx == NULL || in.len == 0 || in.len > INT_MAX - 16) {
        FAIL_OUT(bad, "%s", "");
    }
    if ((tmp = coffer_secret_alloc(cap)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* Wrap modes are refused by EVP unless the context explicitly allows them. */
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_CipherInit_ex(ctx, c, NULL, kek.ptr, NULL, enc ? 1 : 0) != 1 ||
        EVP_CipherUpdate(ctx, tmp, &len, in.ptr, (int)in.len) != 1 ||
        EVP_CipherFinal_ex(ctx, tmp + len, &fin) != 1) {
        /* The integrity check of RFC 5649 failed: wrong key or damaged bytes. */
        FAIL_OUT(bad, "%s", "");
    }
    TRY_OUT(coffer_buf_append(out, tmp, (size_t)len + (size_t)fin));
out:
    coffer_secret_free(tmp, cap);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

coffer_err crypto_aes_kwp_wrap(coffer_cursor kek, coffer_cursor plain, coffer_buf *out)
{
    return kwp_run(true, kek, plain, out);
}

coffer_err crypto_aes_kwp_unwrap(coffer_cursor kek, coffer_cursor wrapped, coffer_buf *out)
{
    return kwp_run(false, kek, wrapped, out);
}

size_t crypto_pkey_size(const crypto_pkey *k)
{
    int n = EVP_PKEY_get_size(k->pkey);
    return n > 0 ? (size_t)n : 0;
}
/* Signatures and RSA-OAEP                                                                    */
/* ------------------------------------------------------------------------------------------ */

static const EVP_MD *sig_md(enum crypto_digest d)
{
    switch (d) {
    case CRYPTO_SHA384:
        return EVP_sha384();
    case CRYPTO_SHA512:
        return EVP_sha512();
    default:
        return EVP_sha256();
    }
}

static bool is_rsa(const crypto_pkey *k)
{
    return type_info[k->type].rsa_bits > 0;
}

/* A context for one sign or verify with `scheme`'s parameters; NULL if k cannot do it. */
static EVP_PKEY_CTX *sig_ctx(const crypto_pkey *k, enum crypto_sig_scheme scheme, enum crypto_digest d,
                             bool sign)
{
    if ((scheme == CRYPTO_SIG_ECDSA) == is_rsa(k)) {
        return NULL;
    }
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    bool ok = c != NULL && (sign ? EVP_PKEY_sign_init(c) : EVP_PKEY_verify_init(c)) == 1;
    if (ok && scheme != CRYPTO_SIG_ECDSA) {
        ok = EVP_PKEY_CTX_set_rsa_padding(c, scheme == CRYPTO_SIG_RSA_PSS ? RSA_PKCS1_PSS_PADDING
                                                                          : RSA_PKCS1_PADDING) == 1;
    }
    ok = ok && EVP_PKEY_CTX_set_signature_md(c, sig_md(d)) == 1;
    if (ok && scheme == CRYPTO_SIG_RSA_PSS) {
        /* KMS's PSS: MGF1 with the message digest, salt length = digest length. */
        ok = EVP_PKEY_CTX_set_rsa_mgf1_md(c, sig_md(d)) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    if (!ok) {
        EVP_PKEY_CTX_free(c);
        return NULL;
    }
    return c;
}

coffer_err crypto_pkey_sign(const crypto_pkey *k, enum crypto_sig_scheme scheme, enum crypto_digest d,
                            coffer_cursor digest, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    if (digest.len != crypto_digest_len(d)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "digest length does not match its algorithm");
    }
    EVP_PKEY_CTX *c = sig_ctx(k, scheme, d, true);
    size_t len = 0;
    if (c == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "signature scheme not valid for this key");
    }
    if (EVP_PKEY_sign(c, NULL, &len, digest.ptr, digest.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "signing failed");
    }
    TRY_OUT(coffer_buf_reserve(out, len));
    if (EVP_PKEY_sign(c, out->data + out->len, &len, digest.ptr, digest.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "signing failed");
    }
    out->len += len; /* ECDSA: the DER length of this signature, at most the first answer */
out:
    EVP_PKEY_CTX_free(c);
    return rc;
}

coffer_err crypto_pkey_verify(const crypto_pkey *k, enum crypto_sig_scheme scheme, enum crypto_digest d,
                              coffer_cursor digest, coffer_cursor sig)
{
    if (digest.len != crypto_digest_len(d)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "digest length does not match its algorithm");
    }
    EVP_PKEY_CTX *c = sig_ctx(k, scheme, d, false);
    if (c == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "signature scheme not valid for this key");
    }
    int ok = sig.len > 0 ? EVP_PKEY_verify(c, sig.ptr, sig.len, digest.ptr, digest.len) : 0;
    EVP_PKEY_CTX_free(c);
    /* Malformed DER, wrong length and a wrong value are one answer: the signature is not valid. */
    return ok == 1 ? COFFER_OK : coffer_fail(COFFER_ERR_SIGNATURE_MISMATCH, "%s", "");
}

static const EVP_MD *oaep_md(enum crypto_oaep_hash h)
{
    return h == CRYPTO_OAEP_SHA1 ? EVP_sha1() : EVP_sha256();
}

size_t crypto_pkey_oaep_max_plaintext(const crypto_pkey *k, enum crypto_oaep_hash h)
{
    if (!is_rsa(k)) {
        return 0;
    }
    size_t hlen = (size_t)EVP_MD_get_size(oaep_md(h));
    return (size_t)type_info[k->type].rsa_bits / 8 - 2 * hlen - 2;
}

static EVP_PKEY_CTX *oaep_ctx(const crypto_pkey *k, enum crypto_oaep_hash h, bool encrypt)
{
    EVP_PKEY_CTX *c = is_rsa(k) ? EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL) : NULL;
    if (c == NULL || (encrypt ? EVP_PKEY_encrypt_init(c) : EVP_PKEY_decrypt_init(c)) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(c, oaep_md(h)) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(c, oaep_md(h)) != 1) {
        EVP_PKEY_CTX_free(c);
        return NULL;
    }
    return c;
}

coffer_err crypto_pkey_oaep_encrypt(const crypto_pkey *k, enum crypto_oaep_hash h, coffer_cursor pt,
                                    coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    if (!is_rsa(k) || pt.len > crypto_pkey_oaep_max_plaintext(k, h)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "plaintext too long for this key");
    }
    EVP_PKEY_CTX *c = oaep_ctx(k, h, true);
    size_t len = 0;
    if (c == NULL || EVP_PKEY_encrypt(c, NULL, &len, pt.ptr, pt.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "RSA encryption failed");
    }
    TRY_OUT(coffer_buf_reserve(out, len));
    if (EVP_PKEY_encrypt(c, out->data + out->len, &len, pt.ptr, pt.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "RSA encryption failed");
    }
    out->len += len;
out:
    EVP_PKEY_CTX_free(c);
    return rc;
}

coffer_err crypto_pkey_oaep_decrypt(const crypto_pkey *k, enum crypto_oaep_hash h, coffer_cursor ct,
                                    coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf tmp = COFFER_SECRET_BUF_INIT;
    EVP_PKEY_CTX *c = oaep_ctx(k, h, false);
    size_t len = 0;
    if (c == NULL) {
        return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    if (ct.len == 0 || EVP_PKEY_decrypt(c, NULL, &len, ct.ptr, ct.len) != 1) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    /* Into a buffer of our own first: nothing reaches `out` unless the padding checks. */
    TRY_OUT(coffer_buf_reserve(&tmp, len));
    if (EVP_PKEY_decrypt(c, tmp.data, &len, ct.ptr, ct.len) != 1) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    tmp.len = len;
    TRY_OUT(coffer_buf_append(out, tmp.data, tmp.len));
out:
    coffer_buf_free(&tmp);
    EVP_PKEY_CTX_free(c);
    return rc;
}
