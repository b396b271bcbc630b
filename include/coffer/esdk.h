/*
 * libcoffer: the Coffer Encryption SDK. Client-side envelope encryption in the AWS Encryption
 * SDK message format (v1 and v2, every algorithm suite), byte-compatible with the official SDKs.
 * This header is the whole public surface; everything else in src/esdk stays private.
 *
 * The pieces, as in the official SDKs:
 *   keyring   wraps and unwraps data keys (raw AES, raw RSA, multi; KMS plugs in the same way)
 *   cmm       cryptographic materials manager: picks the suite, signing keys, calls keyrings
 *   encryptor / decryptor   streaming objects (init / update / finish) in constant memory
 *   coffer_encrypt / coffer_decrypt   one-shot helpers built on the streams
 *
 * Return values: every `int` function returns COFFER_STATUS_OK (0) on success and one of the
 * stable codes of coffer/error.h otherwise (coffer_strerror / coffer_status_message describe
 * it); the same holds for the `int` methods a caller-written keyring or CMM implements. Crypto
 * failures are deliberately indistinguishable: a wrong key, a wrong context and a flipped bit
 * all report a bad message. Attributes (coffer/export.h): a status or a new object must not be
 * ignored, and COFFER_NONNULL names the pointers that may not be NULL. Objects are not
 * thread-safe; keyrings and CMMs are refcounted and may be shared across threads once built
 * (retain/release use atomics).
 */
#ifndef COFFER_ESDK_H
#define COFFER_ESDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/error.h"
#include "coffer/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- algorithm suites (ESDK algorithm-suites.md) ---- */
enum coffer_suite_id {
    COFFER_SUITE_AES128_GCM = 0x0014,                         /* no KDF, v1 (legacy) */
    COFFER_SUITE_AES192_GCM = 0x0046,                         /* no KDF, v1 (legacy) */
    COFFER_SUITE_AES256_GCM = 0x0078,                         /* no KDF, v1 (legacy) */
    COFFER_SUITE_AES128_GCM_HKDF_SHA256 = 0x0114,             /* v1 */
    COFFER_SUITE_AES192_GCM_HKDF_SHA256 = 0x0146,             /* v1 */
    COFFER_SUITE_AES256_GCM_HKDF_SHA256 = 0x0178,             /* v1 */
    COFFER_SUITE_AES128_GCM_HKDF_SHA256_P256 = 0x0214,        /* v1, ECDSA P-256 */
    COFFER_SUITE_AES192_GCM_HKDF_SHA384_P384 = 0x0346,        /* v1, ECDSA P-384 */
    COFFER_SUITE_AES256_GCM_HKDF_SHA384_P384 = 0x0378,        /* v1, ECDSA P-384 */
    COFFER_SUITE_AES256_GCM_HKDF_SHA512_COMMIT = 0x0478,      /* v2, key commitment */
    COFFER_SUITE_AES256_GCM_HKDF_SHA512_COMMIT_P384 = 0x0578, /* v2, commitment + ECDSA P-384 (default) */
};

/* Whether committing suites are required (client.md §Commitment Policy). */
typedef enum coffer_commitment_policy {
    COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT = 0, /* default */
    COFFER_COMMIT_REQUIRE_ENCRYPT_ALLOW_DECRYPT = 1,
    COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT = 2,
} coffer_commitment_policy;

#define COFFER_DEFAULT_FRAME_LENGTH 4096u
#define COFFER_DEFAULT_MAX_EDKS 0u /* 0 = no limit */

/* Frees a buffer returned by the one-shot helpers (wipes it first). Accepts NULL. */
COFFER_API void coffer_bytes_free(uint8_t *p, size_t len);

/* ---- encryption context: a map of UTF-8 byte strings, sorted by raw bytes ---- */
typedef struct coffer_ec coffer_ec;

COFFER_API coffer_ec *coffer_ec_new(void) COFFER_WARN_UNUSED;
COFFER_API void coffer_ec_free(coffer_ec *ec);
COFFER_API coffer_ec *coffer_ec_clone(const coffer_ec *ec) COFFER_WARN_UNUSED;
/* Inserts or replaces a pair; copies both. */
COFFER_API int coffer_ec_set(coffer_ec *ec, const uint8_t *key, size_t key_len, const uint8_t *val,
                             size_t val_len) COFFER_WARN_UNUSED COFFER_NONNULL(1);
COFFER_API int coffer_ec_set_str(coffer_ec *ec, const char *key, const char *val) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2, 3);
COFFER_API size_t coffer_ec_count(const coffer_ec *ec);
/* Borrows the i-th pair (in serialization order); valid until the map changes. */
COFFER_API int coffer_ec_get_at(const coffer_ec *ec, size_t i, const uint8_t **key, size_t *key_len,
                                const uint8_t **val, size_t *val_len) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 3, 4, 5, 6);
/* Value for a key, or NULL. */
COFFER_API const uint8_t *coffer_ec_get(const coffer_ec *ec, const uint8_t *key, size_t key_len,
                                        size_t *val_len) COFFER_NONNULL(1);

/* ---- encrypted data keys (borrowed views) ---- */
typedef struct coffer_edk {
    const uint8_t *provider_id;
    size_t provider_id_len;
    const uint8_t *provider_info;
    size_t provider_info_len;
    const uint8_t *ciphertext;
    size_t ciphertext_len;
} coffer_edk;

/* ---- materials: what keyrings and CMMs read and fill in ---- */
typedef struct coffer_enc_materials coffer_enc_materials;
typedef struct coffer_dec_materials coffer_dec_materials;

COFFER_API uint16_t coffer_enc_materials_suite(const coffer_enc_materials *m) COFFER_NONNULL(1);
COFFER_API const coffer_ec *coffer_enc_materials_ec(const coffer_enc_materials *m) COFFER_NONNULL(1);
COFFER_API size_t coffer_enc_materials_data_key_len(const coffer_enc_materials *m)
    COFFER_NONNULL(1); /* what the suite needs */
/* Borrows the plaintext data key; *key = NULL when no keyring has generated one yet. */
COFFER_API void coffer_enc_materials_data_key(const coffer_enc_materials *m, const uint8_t **key, size_t *len)
    COFFER_NONNULL(1, 2, 3);
/* Sets the data key (a generator keyring does this once); length must equal data_key_len. */
COFFER_API int coffer_enc_materials_set_data_key(coffer_enc_materials *m, const uint8_t *key,
                                                 size_t len) COFFER_WARN_UNUSED COFFER_NONNULL(1, 2);
/* Adds an EDK (copied). */
COFFER_API int coffer_enc_materials_add_edk(coffer_enc_materials *m, const coffer_edk *edk) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2);
COFFER_API size_t coffer_enc_materials_edk_count(const coffer_enc_materials *m) COFFER_NONNULL(1);

COFFER_API uint16_t coffer_dec_materials_suite(const coffer_dec_materials *m) COFFER_NONNULL(1);
/* The full context: the header's pairs plus the reproduced pairs not stored in the header. */
COFFER_API const coffer_ec *coffer_dec_materials_ec(const coffer_dec_materials *m) COFFER_NONNULL(1);
COFFER_API size_t coffer_dec_materials_data_key_len(const coffer_dec_materials *m) COFFER_NONNULL(1);
COFFER_API bool coffer_dec_materials_has_data_key(const coffer_dec_materials *m) COFFER_NONNULL(1);
COFFER_API int coffer_dec_materials_set_data_key(coffer_dec_materials *m, const uint8_t *key,
                                                 size_t len) COFFER_WARN_UNUSED COFFER_NONNULL(1, 2);

/*
 * ---- keyrings ----
 * How a keyring is implemented (e.g. the KMS keyring in src/esdk/keyring_kms.c):
 *   1. Define `struct my_keyring { coffer_keyring base; ...your fields... };` with base first.
 *   2. Define one `static const struct coffer_keyring_vt my_vt = { sizeof(struct coffer_keyring_vt),
 *      "my-keyring", my_on_encrypt, my_on_decrypt, my_destroy };`.
 *   3. The constructor allocates the struct, calls coffer_keyring_base_init(&k->base, &my_vt)
 *      (refcount 1) and returns &k->base.
 *   on_encrypt: if the materials have no data key, generate one of data_key_len bytes (or fail
 *     if this keyring cannot generate) and set it; then wrap the data key and add one EDK.
 *     Use coffer_enc_materials_ec() as the context to bind (raw AES uses it as AAD).
 *   on_decrypt: if the materials already have a data key, return 0 at once. Otherwise try each
 *     EDK that belongs to this keyring (match on provider id / info); on the first one that
 *     unwraps, set the data key and return 0. Return 0 with no key set if nothing matched;
 *     return an error only for failures the caller should see (the CMM then reports
 *     "cannot decrypt" when no key was set).
 *   destroy: release fields and free the struct; called when the refcount reaches zero.
 * Methods are called from one thread at a time per message, but a keyring shared between
 * streams may be called concurrently, so keep mutable state behind a lock.
 */
typedef struct coffer_keyring coffer_keyring;
struct coffer_keyring_vt {
    size_t vt_size;   /* sizeof(struct coffer_keyring_vt) */
    const char *name; /* for logs only */
    int (*on_encrypt)(coffer_keyring *kr, coffer_enc_materials *m);
    int (*on_decrypt)(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks, size_t edk_count);
    void (*destroy)(coffer_keyring *kr);
};
struct coffer_keyring {
    const struct coffer_keyring_vt *vt;
    unsigned long refcount; /* touched only through retain/release (atomic) */
};

COFFER_API void coffer_keyring_base_init(coffer_keyring *kr, const struct coffer_keyring_vt *vt)
    COFFER_NONNULL(1, 2);
COFFER_API coffer_keyring *coffer_keyring_retain(coffer_keyring *kr);
COFFER_API void coffer_keyring_release(coffer_keyring *kr); /* accepts NULL */
COFFER_API int coffer_keyring_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2);
COFFER_API int coffer_keyring_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                         size_t edk_count) COFFER_WARN_UNUSED COFFER_NONNULL(1, 2);

/*
 * Raw AES keyring (raw-aes-keyring.md): wraps with AES-GCM under a 16/24/32-byte key. EDK
 * provider id = key_namespace; provider info = key_name || tag bits (u32) || IV length (u32) || IV.
 * The AAD is the serialized encryption context. Copies the key. NULL on bad arguments.
 */
COFFER_API coffer_keyring *coffer_keyring_raw_aes_new(const char *key_namespace, const char *key_name,
                                                      const uint8_t *key, size_t key_len) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2, 3);

typedef enum coffer_rsa_padding {
    COFFER_RSA_PKCS1 = 0,
    COFFER_RSA_OAEP_SHA1_MGF1 = 1, /* OAEP with MGF1 over the same hash, as the official SDKs */
    COFFER_RSA_OAEP_SHA256_MGF1 = 2,
    COFFER_RSA_OAEP_SHA384_MGF1 = 3,
    COFFER_RSA_OAEP_SHA512_MGF1 = 4,
} coffer_rsa_padding;

/*
 * Raw RSA keyring (raw-rsa-keyring.md): PEM keys (SubjectPublicKeyInfo / PKCS#8 or traditional).
 * Either may be NULL: no public key = cannot encrypt, no private key = cannot decrypt. A private
 * key alone also encrypts. Provider info = key_name.
 */
COFFER_API coffer_keyring *coffer_keyring_raw_rsa_new(const char *key_namespace, const char *key_name,
                                                      const char *public_pem, const char *private_pem,
                                                      coffer_rsa_padding padding) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2);

/*
 * Multi-keyring: generator (may be NULL) generates and wraps, every child wraps too; on decrypt
 * the generator then the children are tried in order. Retains every keyring it is given.
 */
COFFER_API coffer_keyring *coffer_keyring_multi_new(coffer_keyring *generator,
                                                    coffer_keyring *const *children,
                                                    size_t child_count) COFFER_WARN_UNUSED;

/*
 * AWS KMS keyring (aws-kms-keyring.md, aws-kms-discovery-keyring.md), against any KMS that
 * speaks the AWS JSON 1.1 protocol (cofferd or AWS). Requests are signed with SigV4 and sent
 * over HTTPS (libcurl, one keep-alive connection per keyring behind a mutex, so the keyring may
 * be shared between threads). EDK provider id "aws-kms", provider info = the key ARN.
 * Strict mode: encrypt generates with key_ids[0] (GenerateDataKey, or Encrypt when a data key
 * exists) and wraps with each other id; decrypt calls Decrypt only for EDKs whose ARN equals a
 * configured id (aliases therefore only encrypt). Discovery mode cannot encrypt; decrypt tries
 * every "aws-kms" EDK with a key ARN that passes the filter (partition AND one of the accounts;
 * both or neither must be given). Credentials are resolved once, at construction:
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, else the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials) section `profile`. The endpoint defaults
 * to AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, then https://kms.<region>.amazonaws.com.
 * KMS errors are reported as COFFER_STATUS_KEYRING (encrypt) or COFFER_STATUS_CANNOT_DECRYPT
 * (decrypt) with "aws-kms: <Operation>: <KMS error type> ..." as the message.
 */
struct coffer_kms_keyring_options {
    const char *const
        *key_ids; /* strict mode: key ARNs/aliases; the first is the generator; NULL/0 = discovery */
    size_t n_key_ids;
    bool discovery;                  /* decrypt with any key ARN in the EDK that passes the filter */
    const char *discovery_partition; /* filter; NULL = no filter */
    const char *const *discovery_accounts;
    size_t n_discovery_accounts;
    const char *region;    /* NULL = from the key ARN, else AWS_REGION/AWS_DEFAULT_REGION/profile */
    const char *endpoint;  /* NULL = https://kms.<region>.amazonaws.com */
    const char *profile;   /* NULL = AWS_PROFILE or "default" */
    const char *ca_bundle; /* NULL = AWS_CA_BUNDLE or system store */
};
/*
 * Strings are copied; credentials, region and endpoint are resolved here. NULL on error (bad
 * options: usage error; no region/credentials or a bad endpoint: configuration error), with the
 * detail recorded for this thread as for the other constructors.
 */
COFFER_API coffer_keyring *
coffer_keyring_kms_new(const struct coffer_kms_keyring_options *opts) COFFER_WARN_UNUSED COFFER_NONNULL(1);

/* ---- cryptographic materials managers ---- */
typedef struct coffer_cmm coffer_cmm;

typedef struct coffer_enc_request {
    const coffer_ec *ec; /* caller's context (borrowed) */
    uint16_t suite;      /* 0 = pick the default for the policy */
    coffer_commitment_policy policy;
    uint64_t plaintext_length; /* UINT64_MAX when unknown */
} coffer_enc_request;

typedef struct coffer_dec_request {
    uint16_t suite;
    coffer_commitment_policy policy;
    const coffer_ec *ec;            /* the context stored in the header */
    const coffer_ec *reproduced_ec; /* from the caller; may be NULL */
    const coffer_edk *edks;
    size_t edk_count;
} coffer_dec_request;

struct coffer_cmm_vt {
    size_t vt_size;
    const char *name;
    int (*get_enc_materials)(coffer_cmm *cmm, const coffer_enc_request *req, coffer_enc_materials **out);
    int (*get_dec_materials)(coffer_cmm *cmm, const coffer_dec_request *req, coffer_dec_materials **out);
    void (*destroy)(coffer_cmm *cmm);
};
struct coffer_cmm {
    const struct coffer_cmm_vt *vt;
    unsigned long refcount;
};

COFFER_API void coffer_cmm_base_init(coffer_cmm *cmm, const struct coffer_cmm_vt *vt) COFFER_NONNULL(1, 2);
COFFER_API coffer_cmm *coffer_cmm_retain(coffer_cmm *cmm);
COFFER_API void coffer_cmm_release(coffer_cmm *cmm);
COFFER_API int coffer_cmm_get_enc_materials(coffer_cmm *cmm, const coffer_enc_request *req,
                                            coffer_enc_materials **out) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2, 3);
COFFER_API int coffer_cmm_get_dec_materials(coffer_cmm *cmm, const coffer_dec_request *req,
                                            coffer_dec_materials **out) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 2, 3);
COFFER_API void coffer_enc_materials_free(coffer_enc_materials *m);
COFFER_API void coffer_dec_materials_free(coffer_dec_materials *m);

/* Default CMM over one keyring (retained). */
COFFER_API coffer_cmm *coffer_cmm_default_new(coffer_keyring *kr) COFFER_WARN_UNUSED COFFER_NONNULL(1);
/*
 * Required-encryption-context CMM: encrypt needs every listed key in the context and keeps
 * those pairs out of the header (they are authenticated, not stored); decrypt needs them in the
 * reproduced context. Retains `underlying`.
 */
COFFER_API coffer_cmm *coffer_cmm_required_ec_new(coffer_cmm *underlying, const char *const *keys,
                                                  size_t key_count) COFFER_WARN_UNUSED COFFER_NONNULL(1);

/*
 * Caching CMM: reuses data keys from a local LRU cache of `capacity` entries. An entry expires
 * after max_age_seconds, once it has encrypted max_bytes or max_messages. Signed suites are
 * cached too (the signing key is part of the entry). Retains `underlying`.
 */
COFFER_API coffer_cmm *coffer_cmm_caching_new(coffer_cmm *underlying, size_t capacity,
                                              uint64_t max_age_seconds, uint64_t max_bytes,
                                              uint64_t max_messages) COFFER_WARN_UNUSED COFFER_NONNULL(1);

/* ---- parsed message header (message-header.md) ---- */
typedef struct coffer_header coffer_header;

/* Parses a complete header plus its authentication tag from the start of `msg`. */
COFFER_API int coffer_header_parse(const uint8_t *msg, size_t len, coffer_header **out,
                                   size_t *consumed) COFFER_WARN_UNUSED COFFER_NONNULL(1, 3);
COFFER_API void coffer_header_free(coffer_header *h);
COFFER_API uint8_t coffer_header_version(const coffer_header *h) COFFER_NONNULL(1); /* 1 or 2 */
COFFER_API uint16_t coffer_header_suite(const coffer_header *h) COFFER_NONNULL(1);
COFFER_API const uint8_t *coffer_header_message_id(const coffer_header *h, size_t *len)
    COFFER_NONNULL(1, 2); /* 16 or 32 bytes */
COFFER_API const coffer_ec *coffer_header_ec(const coffer_header *h) COFFER_NONNULL(1);
COFFER_API size_t coffer_header_edk_count(const coffer_header *h) COFFER_NONNULL(1);
COFFER_API int coffer_header_edk(const coffer_header *h, size_t i, coffer_edk *out) COFFER_WARN_UNUSED
    COFFER_NONNULL(1, 3);
COFFER_API bool coffer_header_framed(const coffer_header *h) COFFER_NONNULL(1);
COFFER_API uint32_t coffer_header_frame_length(const coffer_header *h)
    COFFER_NONNULL(1); /* 0 when non-framed */

/* ---- streams ---- */
/* Output sink: called with each chunk the stream produces; non-zero aborts (and fails) the stream. */
typedef int (*coffer_write_fn)(void *ctx, const uint8_t *p, size_t n);

typedef struct coffer_encryptor coffer_encryptor;

/* Retains `cmm`. Defaults: policy require/require, suite per policy, frame 4096, no EDK limit. */
COFFER_API coffer_encryptor *coffer_encryptor_new(coffer_cmm *cmm) COFFER_WARN_UNUSED COFFER_NONNULL(1);
COFFER_API void coffer_encryptor_free(coffer_encryptor *e);
/* Setters: only before the first update/finish (else COFFER_STATUS_USAGE). */
COFFER_API int coffer_encryptor_set_output(coffer_encryptor *e, coffer_write_fn fn,
                                           void *ctx) COFFER_WARN_UNUSED COFFER_NONNULL(1);
COFFER_API int coffer_encryptor_set_commitment_policy(coffer_encryptor *e,
                                                      coffer_commitment_policy p) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
COFFER_API int coffer_encryptor_set_suite(coffer_encryptor *e, uint16_t suite) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
COFFER_API int coffer_encryptor_set_frame_length(coffer_encryptor *e,
                                                 uint32_t frame_length) COFFER_WARN_UNUSED
    COFFER_NONNULL(1); /* > 0 */
COFFER_API int coffer_encryptor_set_max_edks(coffer_encryptor *e, size_t max_edks) COFFER_WARN_UNUSED
    COFFER_NONNULL(1); /* 0 = none */
COFFER_API int coffer_encryptor_set_ec(coffer_encryptor *e, const coffer_ec *ec) COFFER_WARN_UNUSED
    COFFER_NONNULL(1); /* copies */
COFFER_API int coffer_encryptor_set_plaintext_length(coffer_encryptor *e, uint64_t len) COFFER_WARN_UNUSED
    COFFER_NONNULL(1); /* a hint */
COFFER_API int coffer_encryptor_update(coffer_encryptor *e, const uint8_t *in, size_t len) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
COFFER_API int coffer_encryptor_finish(coffer_encryptor *e) COFFER_WARN_UNUSED COFFER_NONNULL(1);
/* After the first update/finish: the header written (NULL before). */
COFFER_API const coffer_header *coffer_encryptor_header(const coffer_encryptor *e);

typedef struct coffer_decryptor coffer_decryptor;

COFFER_API coffer_decryptor *coffer_decryptor_new(coffer_cmm *cmm) COFFER_WARN_UNUSED COFFER_NONNULL(1);
COFFER_API void coffer_decryptor_free(coffer_decryptor *d);
COFFER_API int coffer_decryptor_set_output(coffer_decryptor *d, coffer_write_fn fn,
                                           void *ctx) COFFER_WARN_UNUSED COFFER_NONNULL(1);
COFFER_API int coffer_decryptor_set_commitment_policy(coffer_decryptor *d,
                                                      coffer_commitment_policy p) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
COFFER_API int coffer_decryptor_set_max_edks(coffer_decryptor *d, size_t max_edks) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
/* The reproduced encryption context (copied): must match the header, supplies required pairs. */
COFFER_API int coffer_decryptor_set_ec(coffer_decryptor *d, const coffer_ec *ec) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
/*
 * Signed suites: by default plaintext is held until the signature verifies at the end. With
 * streaming release on, each frame's plaintext is written once its GCM tag verifies, before
 * the signature is checked: the caller must discard it if finish fails.
 */
COFFER_API int coffer_decryptor_set_streaming_release(coffer_decryptor *d, bool on) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
COFFER_API int coffer_decryptor_update(coffer_decryptor *d, const uint8_t *in, size_t len) COFFER_WARN_UNUSED
    COFFER_NONNULL(1);
/* Fails unless the whole message (and nothing more) has been seen and verified. */
COFFER_API int coffer_decryptor_finish(coffer_decryptor *d) COFFER_WARN_UNUSED COFFER_NONNULL(1);
COFFER_API const coffer_header *coffer_decryptor_header(const coffer_decryptor *d); /* NULL until parsed */

/* ---- one-shot helpers (output freed with coffer_bytes_free) ---- */
COFFER_API int coffer_encryptor_run(coffer_encryptor *e, const uint8_t *in, size_t len, uint8_t **out,
                                    size_t *out_len) COFFER_WARN_UNUSED COFFER_NONNULL(1, 4, 5);
COFFER_API int coffer_decryptor_run(coffer_decryptor *d, const uint8_t *in, size_t len, uint8_t **out,
                                    size_t *out_len) COFFER_WARN_UNUSED COFFER_NONNULL(1, 4, 5);
/* Defaults everywhere (policy require/require, suite 0x0578, frame 4096). */
COFFER_API int coffer_encrypt(coffer_cmm *cmm, const coffer_ec *ec, const uint8_t *in, size_t len,
                              uint8_t **out, size_t *out_len) COFFER_WARN_UNUSED COFFER_NONNULL(1, 5, 6);
COFFER_API int coffer_decrypt(coffer_cmm *cmm, const coffer_ec *reproduced_ec, const uint8_t *in, size_t len,
                              uint8_t **out, size_t *out_len) COFFER_WARN_UNUSED COFFER_NONNULL(1, 5, 6);

#ifdef __cplusplus
}
#endif
#endif
