/*
 * The symmetric KMS ciphertext blob: what Encrypt and GenerateDataKey return as CiphertextBlob
 * and Decrypt/ReEncrypt accept. It names the key (by ARN) and the backing key material that
 * encrypted it, so Decrypt needs no KeyId and material kept after rotation still decrypts.
 * Format and AAD are described at the top of kms_blob.c, where the reader and the writer live.
 *
 * Every parse or authentication failure is COFFER_ERR_INVALID_CIPHERTEXT with an empty
 * message: garbage, truncation, a flipped bit, another key or another context look the same.
 * Pure functions; thread-safe.
 */
#ifndef COFFER_KMS_KMS_BLOB_H
#define COFFER_KMS_KMS_BLOB_H

#include <jansson.h>
#include <stdint.h>

#include "common/buf.h"
#include "crypto/crypto.h"

#define KMS_BLOB_VERSION 1
#define KMS_MATERIAL_ID_LEN 32
#define KMS_BLOB_ARN_MIN 20
#define KMS_BLOB_ARN_MAX 255
#define KMS_BLOB_MAX 6144 /* CiphertextBlob limit of the API model */

struct kms_blob {
    uint8_t version;                          /* KMS_BLOB_VERSION */
    coffer_cursor key_arn;                    /* borrowed: "arn:aws:kms:<region>:<acct>:key/<id>" */
    uint8_t material_id[KMS_MATERIAL_ID_LEN]; /* which backing material of the key */
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    coffer_cursor ciphertext; /* borrowed: AES-256-GCM ciphertext || tag (>= 16 bytes) */
    coffer_cursor header;     /* borrowed: the bytes bound as the AAD prefix */
};

/* Parses `in` into *out (cursors borrow from `in`). INVALID_CIPHERTEXT on any malformation. */
coffer_err kms_blob_parse(coffer_cursor in, struct kms_blob *out) __attribute__((warn_unused_result));

/* Writes the parsed fields back in wire form (appends to out). serialize(parse(x)) == x. */
coffer_err kms_blob_serialize(const struct kms_blob *b, coffer_buf *out) __attribute__((warn_unused_result));

/*
 * Appends the canonical form of an encryption context (object of string -> string, or NULL =
 * empty): u32be count, then for each pair in ascending byte order of the key: u32be key
 * length, key, u32be value length, value.
 */
coffer_err kms_ec_canonical(const json_t *ec, coffer_buf *out) __attribute__((warn_unused_result));

/*
 * Encrypts `plaintext` under the 32-byte `key` of material `material_id` of key `key_arn`,
 * with a fresh random IV, binding `ec`; appends the blob to `out`.
 */
coffer_err kms_blob_encrypt(coffer_cursor key, const char *key_arn,
                            const uint8_t material_id[KMS_MATERIAL_ID_LEN], const json_t *ec,
                            coffer_cursor plaintext, coffer_buf *out) __attribute__((warn_unused_result));

/* Authenticates and decrypts a parsed blob with `key` and `ec`; appends to `out` (a secret buffer). */
coffer_err kms_blob_decrypt(coffer_cursor key, const struct kms_blob *b, const json_t *ec, coffer_buf *out)
    __attribute__((warn_unused_result));

/*
 * The AES-256-GCM of a blob done elsewhere (a key inside an HSM): appends ciphertext || tag of
 * `in` (seal) or the plaintext of ciphertext || tag `in` (open) to `out`, nothing on failure.
 */
typedef coffer_err (*kms_blob_aead_fn)(void *ctx, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                                       coffer_cursor in, coffer_buf *out);
/* kms_blob_encrypt and kms_blob_decrypt with the AES-GCM done by `seal` / `open`. */
coffer_err kms_blob_encrypt_by(kms_blob_aead_fn seal, void *ctx, const char *key_arn,
                               const uint8_t material_id[KMS_MATERIAL_ID_LEN], const json_t *ec,
                               coffer_cursor plaintext, coffer_buf *out) __attribute__((warn_unused_result));
coffer_err kms_blob_decrypt_by(kms_blob_aead_fn open, void *ctx, const struct kms_blob *b, const json_t *ec,
                               coffer_buf *out) __attribute__((warn_unused_result));

#endif
