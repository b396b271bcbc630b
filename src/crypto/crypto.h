/*
 * Thin, safe wrappers over OpenSSL for the server side: random bytes, SHA-256, HMAC, HKDF and
 * AES-GCM. Services never call OpenSSL directly; they call these. Every function returns
 * COFFER_OK or COFFER_ERR_CRYPTO and never leaves partial plaintext behind on failure.
 * All functions are thread-safe.
 */
#ifndef COFFER_CRYPTO_CRYPTO_H
#define COFFER_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_AES_GCM_IV_LEN 12
#define CRYPTO_AES_GCM_TAG_LEN 16
#define CRYPTO_AES256_KEY_LEN 32
#define CRYPTO_UUID_STR_LEN 36

enum crypto_digest { CRYPTO_SHA256, CRYPTO_SHA384, CRYPTO_SHA512 };

coffer_err crypto_random(void *out, size_t n) __attribute__((warn_unused_result));
/* Lowercase RFC 4122 version-4 UUID, 36 chars + NUL. */
coffer_err crypto_uuid_v4(char out[CRYPTO_UUID_STR_LEN + 1]) __attribute__((warn_unused_result));
/* n UUIDs from one draw of the generator (cheaper than n calls on a hot path). n <= 8. */
coffer_err crypto_uuid_v4_many(char (*out)[CRYPTO_UUID_STR_LEN + 1], size_t n)
    __attribute__((warn_unused_result));

void crypto_sha256(const void *p, size_t n, uint8_t out[CRYPTO_SHA256_LEN]);
size_t crypto_digest_len(enum crypto_digest d);
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

#endif
