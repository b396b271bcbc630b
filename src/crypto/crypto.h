/*
 * Thin, safe wrappers over OpenSSL for the server side: random bytes, SHA-256, HMAC, HKDF and
 * AES-GCM. Services never call OpenSSL directly; they call these. Every function returns
 * COFFER_OK or COFFER_ERR_CRYPTO and never leaves partial plaintext behind on failure.
 * All functions are thread-safe.
 */
#ifndef COFFER_CRYPTO_CRYPTO_H
#define COFFER_CRYPTO_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_AES_GCM_IV_LEN 12
#define CRYPTO_AES_GCM_TAG_LEN 16
#define CRYPTO_AES256_KEY_LEN 32
#define CRYPTO_UUID_STR_LEN 36

/* SHA-224 is last so the others keep their values; KMS HMAC_224 keys need it. */
enum crypto_digest { CRYPTO_SHA256, CRYPTO_SHA384, CRYPTO_SHA512, CRYPTO_SHA224, CRYPTO_DIGEST_COUNT };
#define CRYPTO_MAX_DIGEST_LEN 64

coffer_err crypto_random(void *out, size_t n) __attribute__((warn_unused_result));
/* Lowercase RFC 4122 version-4 UUID, 36 chars + NUL. */
coffer_err crypto_uuid_v4(char out[CRYPTO_UUID_STR_LEN + 1]) __attribute__((warn_unused_result));
/* n UUIDs from one draw of the generator (cheaper than n calls on a hot path). n <= 8. */
coffer_err crypto_uuid_v4_many(char (*out)[CRYPTO_UUID_STR_LEN + 1], size_t n)
    __attribute__((warn_unused_result));

void crypto_sha256(const void *p, size_t n, uint8_t out[CRYPTO_SHA256_LEN]);
size_t crypto_digest_len(enum crypto_digest d);
/* out receives crypto_digest_len(d) bytes. */
coffer_err crypto_digest(enum crypto_digest d, coffer_cursor msg, uint8_t *out)
    __attribute__((warn_unused_result));
coffer_err crypto_hmac(enum crypto_digest d, coffer_cursor key, coffer_cursor msg, uint8_t *out)
    __attribute__((warn_unused_result));
/*
 * HMAC-SHA256 for a key that comes back call after call (SigV4's signing key, the same for
 * every request of a client on a day): the thread keeps the key schedule of the last key it
 * saw (the key itself in locked memory) and, when the same key comes again, reuses it instead
 * of hashing the padded key twice. Any other key, or one longer than CRYPTO_HMAC_REUSE_KEY_MAX,
 * is set up afresh. Same result as crypto_hmac(CRYPTO_SHA256, ...).
 */
#define CRYPTO_HMAC_REUSE_KEY_MAX 64
coffer_err crypto_hmac_sha256_reuse(coffer_cursor key, coffer_cursor msg, uint8_t out[CRYPTO_SHA256_LEN])
    __attribute__((warn_unused_result));
/* HKDF (RFC 5869) extract+expand; salt may be empty (then a zero salt of digest length). */
coffer_err crypto_hkdf(enum crypto_digest d, coffer_cursor ikm, coffer_cursor salt, coffer_cursor info,
                       uint8_t *out, size_t out_len) __attribute__((warn_unused_result));

/*
 * AES-GCM with a 12-byte IV and 16-byte tag; key length 16, 24 or 32 selects AES-128/192/256.
 * seal appends ciphertext then tag to `out`. open verifies and appends plaintext to `out`
 * (give it a secret buffer); on failure nothing is appended and COFFER_ERR_INVALID_CIPHERTEXT
 * is returned, the same for a wrong key, wrong AAD or a flipped bit.
 */
coffer_err crypto_aes_gcm_seal(coffer_cursor key, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                               coffer_cursor plaintext, coffer_buf *out) __attribute__((warn_unused_result));
coffer_err crypto_aes_gcm_open(coffer_cursor key, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                               coffer_cursor ciphertext_and_tag, coffer_buf *out)
    __attribute__((warn_unused_result));

/* Constant-time comparison: 0 when equal. */
int crypto_memcmp(const void *a, const void *b, size_t n);

/*
 * Asymmetric key pairs (crypto_pkey.c): RSA of a fixed modulus size and EC on a named curve.
 * The private key leaves a crypto_pkey only as DER PKCS#8 PrivateKeyInfo in a secret buffer
 * (for sealing), and comes back only through crypto_pkey_from_private_der, which checks that
 * the bytes are a key of exactly the expected type. A crypto_pkey is immutable once made and
 * may be used from several threads at once.
 */
enum crypto_pkey_type {
    CRYPTO_PKEY_RSA_2048,
    CRYPTO_PKEY_RSA_3072,
    CRYPTO_PKEY_RSA_4096,
    CRYPTO_PKEY_EC_P256,
    CRYPTO_PKEY_EC_P384,
    CRYPTO_PKEY_EC_P521,
    CRYPTO_PKEY_EC_SECP256K1,
};
typedef struct crypto_pkey crypto_pkey;

/* A fresh key pair of `type` (RSA with public exponent 65537). */
coffer_err crypto_pkey_generate(enum crypto_pkey_type type, crypto_pkey **out)
    __attribute__((warn_unused_result));
/*
 * Parses DER PKCS#8 PrivateKeyInfo. COFFER_ERR_INVALID_INPUT when the bytes are not one whole
 * private key of `type` (another algorithm, modulus size or curve, trailing bytes).
 */
coffer_err crypto_pkey_from_private_der(enum crypto_pkey_type type, coffer_cursor der, crypto_pkey **out)
    __attribute__((warn_unused_result));
/*
 * Parses DER X.509 SubjectPublicKeyInfo: a public key only (it can verify, not sign).
 * COFFER_ERR_VALIDATION when the bytes are not one whole public key of `type`.
 */
coffer_err crypto_pkey_from_public_der(enum crypto_pkey_type type, coffer_cursor der, crypto_pkey **out)
    __attribute__((warn_unused_result));
/* Appends the DER PKCS#8 PrivateKeyInfo to `out` (give it a secret buffer). */
coffer_err crypto_pkey_private_der(const crypto_pkey *k, coffer_buf *out) __attribute__((warn_unused_result));
/* Appends the DER X.509 SubjectPublicKeyInfo to `out`. */
coffer_err crypto_pkey_public_der(const crypto_pkey *k, coffer_buf *out) __attribute__((warn_unused_result));
enum crypto_pkey_type crypto_pkey_type_of(const crypto_pkey *k);

/*
 * Signatures over a digest the caller computed (crypto_digest) with `d`. RSA keys sign with
 * PKCS#1 v1.5 or PSS (MGF1 with the same digest, salt as long as the digest); EC keys with
 * ECDSA, the signature DER-encoded as SEQUENCE{r, s}. A scheme the key cannot do is
 * COFFER_ERR_VALIDATION.
 */
enum crypto_sig_scheme { CRYPTO_SIG_RSA_PKCS1, CRYPTO_SIG_RSA_PSS, CRYPTO_SIG_ECDSA };
/* Appends the signature to `out`. */
coffer_err crypto_pkey_sign(const crypto_pkey *k, enum crypto_sig_scheme scheme, enum crypto_digest d,
                            coffer_cursor digest, coffer_buf *out) __attribute__((warn_unused_result));
/* COFFER_OK when `sig` is a valid signature; COFFER_ERR_SIGNATURE_MISMATCH otherwise, whatever the flaw. */
coffer_err crypto_pkey_verify(const crypto_pkey *k, enum crypto_sig_scheme scheme, enum crypto_digest d,
                              coffer_cursor digest, coffer_cursor sig) __attribute__((warn_unused_result));

/*
 * RSAES-OAEP with an empty label, MGF1 over the same hash as OAEP's. The ciphertext is the raw
 * OAEP output (modulus size). Plaintext longer than crypto_pkey_oaep_max_plaintext is
 * COFFER_ERR_VALIDATION. decrypt appends to `out` (give it a secret buffer); any
 * ciphertext that does not open is COFFER_ERR_INVALID_CIPHERTEXT, nothing appended.
 */
enum crypto_oaep_hash { CRYPTO_OAEP_SHA1, CRYPTO_OAEP_SHA256 };
size_t crypto_pkey_oaep_max_plaintext(const crypto_pkey *k, enum crypto_oaep_hash h); /* 0: not RSA */
coffer_err crypto_pkey_oaep_encrypt(const crypto_pkey *k, enum crypto_oaep_hash h, coffer_cursor pt,
                                    coffer_buf *out) __attribute__((warn_unused_result));
coffer_err crypto_pkey_oaep_decrypt(const crypto_pkey *k, enum crypto_oaep_hash h, coffer_cursor ct,
                                    coffer_buf *out) __attribute__((warn_unused_result));
void crypto_pkey_free(crypto_pkey *k); /* accepts NULL */

/* The RSA modulus (or EC signature bound) in bytes. */
size_t crypto_pkey_size(const crypto_pkey *k);
/*
 * AES key wrap with padding (RFC 5649) under a 16/24/32-byte `kek`. unwrap checks the RFC's
 * integrity value: COFFER_ERR_INVALID_CIPHERTEXT for a wrong key or damaged bytes.
 */
coffer_err crypto_aes_kwp_wrap(coffer_cursor kek, coffer_cursor plain, coffer_buf *out)
    __attribute__((warn_unused_result));
coffer_err crypto_aes_kwp_unwrap(coffer_cursor kek, coffer_cursor wrapped, coffer_buf *out)
    __attribute__((warn_unused_result));

#endif
