/*
 * Backing key material of a KMS key, by key spec: what is generated for a new key or a
 * rotation, what is sealed into the store, and what is checked when it comes back (from the
 * store, or from a caller importing it). Shared inside src/kms only.
 *
 *   SYMMETRIC_DEFAULT   32 random bytes (AES-256-GCM)
 *   HMAC_224 .. 512     224 .. 512 random bits (the key length AWS uses for each spec)
 *   RSA_*, ECC_*        DER PKCS#8 PrivateKeyInfo of the pair, parsed once into `pair`
 *
 * The bytes live in locked memory and are wiped when the material is cleared.
 */
#ifndef COFFER_KMS_KMS_MATERIAL_H
#define COFFER_KMS_KMS_MATERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "crypto/crypto.h"
#include "kms/kms_blob.h"

/* KeySpec, in the order of kms_key_specs[] (kms_input.c), which the unit test pins. */
enum kms_spec {
    KMS_SPEC_SYMMETRIC_DEFAULT,
    KMS_SPEC_RSA_2048,
    KMS_SPEC_RSA_3072,
    KMS_SPEC_RSA_4096,
    KMS_SPEC_ECC_NIST_P256,
    KMS_SPEC_ECC_NIST_P384,
    KMS_SPEC_ECC_NIST_P521,
    KMS_SPEC_ECC_SECG_P256K1,
    KMS_SPEC_ECC_NIST_EDWARDS25519,
    KMS_SPEC_HMAC_224,
    KMS_SPEC_HMAC_256,
    KMS_SPEC_HMAC_384,
    KMS_SPEC_HMAC_512,
    KMS_SPEC_SM2,
    KMS_SPEC_ML_DSA_44,
    KMS_SPEC_ML_DSA_65,
    KMS_SPEC_ML_DSA_87,
    KMS_SPEC_COUNT
};

enum kms_spec_family {
    KMS_FAMILY_SYMMETRIC,
    KMS_FAMILY_RSA,
    KMS_FAMILY_ECC,
    KMS_FAMILY_HMAC,
    KMS_FAMILY_UNSUPPORTED, /* named by the API model, not served here (Ed25519, SM2, ML-DSA) */
};

enum kms_spec_family kms_spec_family(enum kms_spec s);
/* False for a name that is not a KeySpec (or NULL). */
bool kms_spec_parse(const char *name, enum kms_spec *out);
const char *kms_spec_name(enum kms_spec s);
/* HMAC specs: the key length in bytes; 0 for any other spec. */
size_t kms_spec_hmac_key_len(enum kms_spec s);

struct kms_material {
    uint8_t id[KMS_MATERIAL_ID_LEN];
    uint8_t *key; /* key bytes or DER PKCS#8 (see above), from the locked allocator */
    size_t key_len;
    crypto_pkey *pair; /* RSA and ECC: the parsed pair; NULL otherwise */
};

/* A fresh random id and fresh key material for `spec` (not FAMILY_UNSUPPORTED). */
coffer_err kms_material_generate(enum kms_spec spec, struct kms_material *m)
    __attribute__((warn_unused_result));
/*
 * Sets m's key from `bytes` (m->id untouched) after checking they are material of `spec`:
 * the exact length for symmetric and HMAC keys, a private key of that algorithm and size or
 * curve for RSA and ECC. COFFER_ERR_VALIDATION otherwise; m unchanged on failure.
 */
coffer_err kms_material_set(enum kms_spec spec, coffer_cursor bytes, struct kms_material *m)
    __attribute__((warn_unused_result));
static inline coffer_cursor kms_material_bytes(const struct kms_material *m)
{
    return coffer_cursor_from(m->key, m->key_len);
}
/* Wipes and frees the key; the struct can be reused. */
void kms_material_clear(struct kms_material *m);

#endif
