/*
 * ECIES over P-256 with HKDF-SHA256 and AES-256-GCM (format in crypto_box.h). The parser of a
 * box reads through cursors and answers every failure the same way, like the KMS blob reader.
 */
#include "crypto/crypto_box.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto/crypto.h"

#define BOX_INFO "coffer box v1"
#define BOX_OKM_LEN (CRYPTO_AES256_KEY_LEN + CRYPTO_AES_GCM_IV_LEN)
#define BOX_SPKI_MAX 256 /* a P-256 SPKI is 91 bytes */

static coffer_err bad_box(void)
{
    return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
}

/* A P-256 public key from DER SPKI; NULL for anything else. */
static EVP_PKEY *p256_public(coffer_cursor spki)
{
    const unsigned char *p = spki.ptr;
    EVP_PKEY *k = spki.len <= BOX_SPKI_MAX ? d2i_PUBKEY(NULL, &p, (long)spki.len) : NULL;
    char group[32];
    size_t glen = 0;
    if (k == NULL || p != spki.ptr + spki.len || !EVP_PKEY_is_a(k, "EC") ||
        !EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen) ||
        strcmp(group, "prime256v1") != 0) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

/* okm = HKDF(ECDH(mine, theirs), salt = epk || rpk). */
static coffer_err derive(EVP_PKEY *mine, EVP_PKEY *theirs, coffer_cursor epk, coffer_cursor rpk,
                         uint8_t okm[BOX_OKM_LEN])
{
    coffer_err rc = COFFER_OK;
    uint8_t shared[66];
    size_t shared_len = sizeof(shared);
    coffer_buf salt = COFFER_BUF_INIT;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL);
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 || EVP_PKEY_derive_set_peer(ctx, theirs) <= 0 ||
        EVP_PKEY_derive(ctx, shared, &shared_len) <= 0) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "key agreement failed");
    }
    TRY_OUT(coffer_buf_append_cur(&salt, epk));
    TRY_OUT(coffer_buf_append_cur(&salt, rpk));
    TRY_OUT(crypto_hkdf(CRYPTO_SHA256, coffer_cursor_from(shared, shared_len), coffer_buf_cursor(&salt),
                        coffer_cursor_from_str(BOX_INFO), okm, BOX_OKM_LEN));
out:
    OPENSSL_cleanse(shared, sizeof(shared));
    EVP_PKEY_CTX_free(ctx);
    coffer_buf_free(&salt);
    return rc;
}

static coffer_err build_aad(coffer_cursor epk, coffer_cursor aad, coffer_buf *out)
{
    TRY(coffer_buf_append_u8(out, CRYPTO_BOX_VERSION));
    TRY(coffer_buf_append_u16be(out, (uint16_t)epk.len));
    TRY(coffer_buf_append_cur(out, epk));
    return coffer_buf_append_cur(out, aad);
}

coffer_err crypto_ecies_seal(coffer_cursor recipient_spki, coffer_cursor aad, coffer_cursor plaintext,
                             coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    EVP_PKEY *rpk = p256_public(recipient_spki), *eph = NULL;
    unsigned char *epk_der = NULL;
    uint8_t okm[BOX_OKM_LEN];
    coffer_buf full_aad = COFFER_BUF_INIT;
    size_t start = out->len;
    if (rpk == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "recipient key is not a P-256 public key");
    }
    eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "prime256v1");
    int epk_len = eph != NULL ? i2d_PUBKEY(eph, &epk_der) : -1;
    if (epk_len <= 0 || epk_len > BOX_SPKI_MAX) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "ephemeral key generation failed");
    }
    coffer_cursor epk = coffer_cursor_from(epk_der, (size_t)epk_len);
    TRY_OUT(derive(eph, rpk, epk, recipient_spki, okm));
    TRY_OUT(build_aad(epk, aad, &full_aad));
    TRY_OUT(coffer_buf_append_u8(out, CRYPTO_BOX_VERSION));
    TRY_OUT(coffer_buf_append_u16be(out, (uint16_t)epk.len));
    TRY_OUT(coffer_buf_append_cur(out, epk));
    TRY_OUT(crypto_aes_gcm_seal(coffer_cursor_from(okm, CRYPTO_AES256_KEY_LEN), okm + CRYPTO_AES256_KEY_LEN,
                                coffer_buf_cursor(&full_aad), plaintext, out));
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    OPENSSL_cleanse(okm, sizeof(okm));
    OPENSSL_free(epk_der);
    EVP_PKEY_free(eph);
    EVP_PKEY_free(rpk);
    coffer_buf_free(&full_aad);
    return rc;
}

coffer_err crypto_ecies_open(coffer_cursor recipient_private_der, coffer_cursor aad, coffer_cursor box,
                             coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_cursor c = box, epk, ct;
    uint8_t version = 0;
    uint16_t epk_len = 0;
    uint8_t okm[BOX_OKM_LEN];
    unsigned char *rpk_der = NULL;
    coffer_buf full_aad = COFFER_BUF_INIT;
    EVP_PKEY *me = NULL, *eph = NULL;
    /* version(1) | epk_len(2) | epk(E) | ciphertext||tag */
    if (cur_read_u8(&c, &version) != COFFER_OK || version != CRYPTO_BOX_VERSION ||
        cur_read_u16be(&c, &epk_len) != COFFER_OK || cur_read_bytes(&c, epk_len, &epk) != COFFER_OK ||
        c.len < CRYPTO_AES_GCM_TAG_LEN) {
        return bad_box();
    }
    ct = c;
    if ((eph = p256_public(epk)) == NULL) {
        return bad_box();
    }
    const unsigned char *p = recipient_private_der.ptr;
    me = d2i_AutoPrivateKey(NULL, &p, (long)recipient_private_der.len);
    int rpk_len = me != NULL ? i2d_PUBKEY(me, &rpk_der) : -1;
    if (rpk_len <= 0) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "recipient key unusable");
    }
    if (derive(me, eph, epk, coffer_cursor_from(rpk_der, (size_t)rpk_len), okm) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    TRY_OUT(build_aad(epk, aad, &full_aad));
    if (crypto_aes_gcm_open(coffer_cursor_from(okm, CRYPTO_AES256_KEY_LEN), okm + CRYPTO_AES256_KEY_LEN,
                            coffer_buf_cursor(&full_aad), ct, out) != COFFER_OK) {
        rc = bad_box();
    }
out:
    OPENSSL_cleanse(okm, sizeof(okm));
    OPENSSL_free(rpk_der);
    EVP_PKEY_free(me);
    EVP_PKEY_free(eph);
    coffer_buf_free(&full_aad);
    return rc;
}
