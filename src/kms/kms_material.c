/*
 * Backing key material by key spec (kms_material.h).
 */
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "kms/kms_internal.h"
#include "kms/kms_material.h"

struct spec_info {
    enum kms_spec_family family;
    size_t hmac_len;            /* HMAC: key bytes */
    enum crypto_pkey_type pair; /* RSA, ECC */
};

static const struct spec_info specs[KMS_SPEC_COUNT] = {
    [KMS_SPEC_SYMMETRIC_DEFAULT] = {KMS_FAMILY_SYMMETRIC, 0, 0},
    [KMS_SPEC_RSA_2048] = {KMS_FAMILY_RSA, 0, CRYPTO_PKEY_RSA_2048},
    [KMS_SPEC_RSA_3072] = {KMS_FAMILY_RSA, 0, CRYPTO_PKEY_RSA_3072},
    [KMS_SPEC_RSA_4096] = {KMS_FAMILY_RSA, 0, CRYPTO_PKEY_RSA_4096},
    [KMS_SPEC_ECC_NIST_P256] = {KMS_FAMILY_ECC, 0, CRYPTO_PKEY_EC_P256},
    [KMS_SPEC_ECC_NIST_P384] = {KMS_FAMILY_ECC, 0, CRYPTO_PKEY_EC_P384},
    [KMS_SPEC_ECC_NIST_P521] = {KMS_FAMILY_ECC, 0, CRYPTO_PKEY_EC_P521},
    [KMS_SPEC_ECC_SECG_P256K1] = {KMS_FAMILY_ECC, 0, CRYPTO_PKEY_EC_SECP256K1},
    [KMS_SPEC_ECC_NIST_EDWARDS25519] = {KMS_FAMILY_UNSUPPORTED, 0, 0},
    [KMS_SPEC_HMAC_224] = {KMS_FAMILY_HMAC, 28, 0},
    [KMS_SPEC_HMAC_256] = {KMS_FAMILY_HMAC, 32, 0},
    [KMS_SPEC_HMAC_384] = {KMS_FAMILY_HMAC, 48, 0},
    [KMS_SPEC_HMAC_512] = {KMS_FAMILY_HMAC, 64, 0},
    [KMS_SPEC_SM2] = {KMS_FAMILY_UNSUPPORTED, 0, 0},
    [KMS_SPEC_ML_DSA_44] = {KMS_FAMILY_UNSUPPORTED, 0, 0},
    [KMS_SPEC_ML_DSA_65] = {KMS_FAMILY_UNSUPPORTED, 0, 0},
    [KMS_SPEC_ML_DSA_87] = {KMS_FAMILY_UNSUPPORTED, 0, 0},
};

enum kms_spec_family kms_spec_family(enum kms_spec s)
{
    return (unsigned)s < KMS_SPEC_COUNT ? specs[s].family : KMS_FAMILY_UNSUPPORTED;
}

bool kms_spec_parse(const char *name, enum kms_spec *out)
{
    for (int i = 0; name != NULL && i < KMS_SPEC_COUNT; i++) {
        if (strcmp(name, kms_key_specs[i]) == 0) {
            *out = (enum kms_spec)i;
            return true;
        }
    }
    return false;
}

const char *kms_spec_name(enum kms_spec s)
{
    return kms_key_specs[s];
}

size_t kms_spec_hmac_key_len(enum kms_spec s)
{
    return kms_spec_family(s) == KMS_FAMILY_HMAC ? specs[s].hmac_len : 0;
}

/* The length the bytes of a symmetric or HMAC spec must have. */
static size_t secret_len(enum kms_spec spec)
{
    return spec == KMS_SPEC_SYMMETRIC_DEFAULT ? CRYPTO_AES256_KEY_LEN : specs[spec].hmac_len;
}

/* Takes ownership of key (key_len bytes, locked) and pair into m, releasing what m held. */
static void material_install(struct kms_material *m, uint8_t *key, size_t key_len, crypto_pkey *pair)
{
    kms_material_clear(m);
    m->key = key;
    m->key_len = key_len;
    m->pair = pair;
}

coffer_err kms_material_generate(enum kms_spec spec, struct kms_material *m)
{
    coffer_err rc = COFFER_OK;
    coffer_buf der = COFFER_SECRET_BUF_INIT;
    crypto_pkey *pair = NULL;
    uint8_t *key = NULL;
    size_t len = 0;
    enum kms_spec_family fam = kms_spec_family(spec);
    if (fam == KMS_FAMILY_UNSUPPORTED) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "KeySpec %s is not supported.",
                           kms_spec_name(spec));
    }
    TRY(crypto_random(m->id, KMS_MATERIAL_ID_LEN));
    if (fam == KMS_FAMILY_RSA || fam == KMS_FAMILY_ECC) {
        TRY_OUT(crypto_pkey_generate(specs[spec].pair, &pair));
        TRY_OUT(crypto_pkey_private_der(pair, &der));
        len = der.len;
    } else {
        len = secret_len(spec);
    }
    if ((key = coffer_secret_alloc(len)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (pair != NULL) {
        memcpy(key, der.data, len);
    } else {
        TRY_OUT(crypto_random(key, len));
    }
    material_install(m, key, len, pair);
    key = NULL;
    pair = NULL;
out:
    coffer_secret_free(key, len);
    crypto_pkey_free(pair);
    coffer_buf_free(&der);
    return rc;
}

coffer_err kms_material_set(enum kms_spec spec, coffer_cursor bytes, struct kms_material *m)
{
    coffer_err rc = COFFER_OK;
    crypto_pkey *pair = NULL;
    uint8_t *key = NULL;
    enum kms_spec_family fam = kms_spec_family(spec);
    if (fam == KMS_FAMILY_UNSUPPORTED) {
        return coffer_fail(COFFER_ERR_VALIDATION, "KeySpec %s has no material here", kms_spec_name(spec));
    }
    if (fam == KMS_FAMILY_RSA || fam == KMS_FAMILY_ECC) {
        TRY(crypto_pkey_from_private_der(specs[spec].pair, bytes, &pair));
    } else if (bytes.len != secret_len(spec)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "%s key material must be %zu bytes", kms_spec_name(spec),
                           secret_len(spec));
    }
    if ((key = coffer_secret_alloc(bytes.len)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    memcpy(key, bytes.ptr, bytes.len);
    material_install(m, key, bytes.len, pair);
    pair = NULL;
out:
    crypto_pkey_free(pair);
    return rc;
}

void kms_material_clear(struct kms_material *m)
{
    coffer_secret_free(m->key, m->key_len);
    crypto_pkey_free(m->pair);
    m->key = NULL;
    m->key_len = 0;
    m->pair = NULL;
}
