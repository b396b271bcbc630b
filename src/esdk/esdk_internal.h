/*
 * Private shapes of libcoffer shared between the files of src/esdk: the suite table, the
 * encryption-context map, materials, the parsed header and the OpenSSL helpers (ECDSA, RSA,
 * AES-GCM with a reusable context). Nothing here is part of the public API.
 */
#ifndef COFFER_ESDK_ESDK_INTERNAL_H
#define COFFER_ESDK_ESDK_INTERNAL_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "coffer/esdk.h"
#include "common/buf.h"
#include "common/err.h"
#include "crypto/crypto.h"

#define ESDK_IV_LEN 12
#define ESDK_TAG_LEN 16
#define ESDK_MAX_KEY_LEN 32
#define ESDK_MSG_ID_V1_LEN 16
#define ESDK_MSG_ID_V2_LEN 32
#define ESDK_COMMIT_LEN 32
#define ESDK_PUBKEY_EC_KEY "aws-crypto-public-key"
/* Non-framed content may not exceed 2^36 - 32 bytes (message-body.md §Non-Framed Data). */
#define ESDK_MAX_SINGLE_BLOCK ((((uint64_t)1) << 36) - 32)

/* ---- algorithm suites (algorithm-suites.md) ---- */
enum esdk_kdf { ESDK_KDF_NONE, ESDK_KDF_HKDF, ESDK_KDF_HKDF_COMMIT };

struct esdk_suite {
    uint16_t id;
    uint8_t version; /* message format version: 1 or 2 */
    size_t key_len;  /* AES key length = data key length */
    enum esdk_kdf kdf;
    enum crypto_digest kdf_md;
    int sig_curve_nid;  /* 0 when the suite is unsigned */
    const char *sig_md; /* "SHA256" / "SHA384" */
};

const struct esdk_suite *esdk_suite_find(uint16_t id);
static inline bool esdk_suite_signed(const struct esdk_suite *s)
{
    return s->sig_curve_nid != 0;
}
static inline bool esdk_suite_commits(const struct esdk_suite *s)
{
    return s->kdf == ESDK_KDF_HKDF_COMMIT;
}
/* Derives the content key (and for committing suites the commitment) from the data key. */
coffer_err esdk_suite_derive(const struct esdk_suite *s, coffer_cursor data_key, coffer_cursor msg_id,
                             uint8_t key_out[ESDK_MAX_KEY_LEN], uint8_t commit_out[ESDK_COMMIT_LEN]);
coffer_err esdk_policy_check_encrypt(coffer_commitment_policy p, const struct esdk_suite *s);
coffer_err esdk_policy_check_decrypt(coffer_commitment_policy p, const struct esdk_suite *s);

/* ---- encryption context (structures.md §Encryption Context) ---- */
struct esdk_ec_entry {
    coffer_buf key;
    coffer_buf val;
};
struct coffer_ec {
    struct esdk_ec_entry *v; /* sorted by raw key bytes */
    size_t n;
    size_t cap;
};
coffer_err esdk_ec_put(coffer_ec *ec, coffer_cursor key, coffer_cursor val);
const struct esdk_ec_entry *esdk_ec_find(const coffer_ec *ec, coffer_cursor key);
coffer_err esdk_ec_remove(coffer_ec *ec, coffer_cursor key);
/* Appends count + pairs; nothing at all for an empty map. Fails past 65535 bytes. */
coffer_err esdk_ec_serialize(const coffer_ec *ec, coffer_buf *out);
/* Parses `c` (exactly the AAD field) into a new map; duplicates and trailing bytes fail. */
coffer_err esdk_ec_parse(coffer_cursor c, coffer_ec **out);
/* Serializes only the pairs whose key is in `keys` (a map used as a set). */
coffer_err esdk_ec_serialize_subset(const coffer_ec *ec, const coffer_ec *keys, coffer_buf *out);

/* ---- EDK lists ---- */
struct esdk_edk {
    coffer_buf provider_id;
    coffer_buf provider_info;
    coffer_buf ciphertext;
};
struct esdk_edk_list {
    struct esdk_edk *v;
    size_t n;
    size_t cap;
};
coffer_err esdk_edk_list_add(struct esdk_edk_list *l, coffer_cursor pid, coffer_cursor info,
                             coffer_cursor ct);
void esdk_edk_list_clean(struct esdk_edk_list *l);
/* Borrowed public views (caller frees the array with free()). */
coffer_err esdk_edk_list_views(const struct esdk_edk_list *l, coffer_edk **out);

/* ---- materials ---- */
struct coffer_enc_materials {
    const struct esdk_suite *suite;
    coffer_ec *ec;            /* full context, incl. the public key for signed suites */
    coffer_ec *required_keys; /* keys authenticated but not stored (values empty) */
    coffer_buf data_key;      /* secret */
    struct esdk_edk_list edks;
    EVP_PKEY *signing_key; /* signed suites only */
};
struct coffer_dec_materials {
    const struct esdk_suite *suite;
    coffer_ec *ec;
    coffer_ec *required_keys;
    coffer_buf data_key; /* secret */
    EVP_PKEY *verify_key;
};
coffer_enc_materials *esdk_enc_materials_new(const struct esdk_suite *s, const coffer_ec *ec);
coffer_dec_materials *esdk_dec_materials_new(const struct esdk_suite *s, const coffer_ec *ec);
coffer_err esdk_enc_materials_clone(const coffer_enc_materials *m, coffer_enc_materials **out);
/* Draws a random data key for m's suite unless an earlier keyring already set one. */
coffer_err esdk_enc_materials_fill_data_key(coffer_enc_materials *m);

/* ---- header (message-header.md) ---- */
struct coffer_header {
    uint8_t version;
    const struct esdk_suite *suite;
    uint8_t message_id[ESDK_MSG_ID_V2_LEN];
    size_t message_id_len;
    coffer_ec *ec;
    struct esdk_edk_list edks;
    uint8_t content_type; /* 1 non-framed, 2 framed */
    uint32_t frame_length;
    uint8_t suite_data[ESDK_COMMIT_LEN]; /* v2: commitment key */
    uint8_t auth_iv[ESDK_IV_LEN];        /* v1 only; zero in v2 */
    uint8_t auth_tag[ESDK_TAG_LEN];
    size_t body_len;  /* bytes of the header before the auth fields */
    size_t total_len; /* body_len + auth fields */
};
#define ESDK_CONTENT_NONFRAMED 1
#define ESDK_CONTENT_FRAMED 2

/*
 * Parses a header. On a short input returns COFFER_ERR_BAD_MESSAGE with *truncated = true so
 * streams know to wait for more bytes; any other failure is final. max_edks 0 = no limit.
 */
coffer_err esdk_header_parse(coffer_cursor *c, size_t max_edks, coffer_header **out, bool *truncated);
/* Serializes the header body (without auth fields). */
coffer_err esdk_header_write_body(const coffer_header *h, coffer_buf *out);
coffer_header *esdk_header_new(void);

/* ---- AES-GCM with one reusable context (message-body.md) ---- */
/* Keys the context once for a run of seals (encrypt) or opens under one key. */
coffer_err esdk_gcm_key(EVP_CIPHER_CTX *ctx, bool encrypt, const uint8_t *key, size_t key_len);
/* Seal / open under the key set by esdk_gcm_key; only the IV changes. */
coffer_err esdk_gcm_seal_keyed(EVP_CIPHER_CTX *ctx, const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad,
                               coffer_cursor pt, uint8_t *ct_out, uint8_t tag_out[ESDK_TAG_LEN]);
coffer_err esdk_gcm_open_keyed(EVP_CIPHER_CTX *ctx, const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad,
                               coffer_cursor ct, const uint8_t tag[ESDK_TAG_LEN], uint8_t *pt_out);
/* Key + one seal / open. */
coffer_err esdk_gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t *key, size_t key_len,
                         const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad, coffer_cursor pt, uint8_t *ct_out,
                         uint8_t tag_out[ESDK_TAG_LEN]);
/* Writes plaintext to pt_out (same length as ct); on failure wipes pt_out. */
coffer_err esdk_gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t *key, size_t key_len,
                         const uint8_t iv[ESDK_IV_LEN], coffer_cursor aad, coffer_cursor ct,
                         const uint8_t tag[ESDK_TAG_LEN], uint8_t *pt_out);

/*
 * HKDF (RFC 5869) with OpenSSL's KDF: n outputs from one key and salt (empty salt = HashLen
 * zeros), each with its own info. With n > 1 the extract step runs once. On failure every
 * output is wiped.
 */
coffer_err esdk_hkdf(enum crypto_digest d, coffer_cursor ikm, coffer_cursor salt, const coffer_cursor *infos,
                     uint8_t *const *outs, const size_t *out_lens, size_t n);

/* ---- ECDSA for signed suites (esdk_crypto.c) ---- */
coffer_err esdk_sig_keygen(const struct esdk_suite *s, EVP_PKEY **out);
/* base64 of the compressed public point, as stored under aws-crypto-public-key. */
coffer_err esdk_sig_pubkey_b64(EVP_PKEY *k, coffer_buf *out);
coffer_err esdk_sig_pubkey_from_b64(const struct esdk_suite *s, coffer_cursor b64, EVP_PKEY **out);
/* Streaming sign/verify over SHA-256/384. */
coffer_err esdk_sig_init(const struct esdk_suite *s, EVP_PKEY *k, bool sign, EVP_MD_CTX **out);
coffer_err esdk_sig_update(EVP_MD_CTX *ctx, coffer_cursor data);
coffer_err esdk_sig_sign_final(EVP_MD_CTX *ctx, coffer_buf *sig_out);
coffer_err esdk_sig_verify_final(EVP_MD_CTX *ctx, coffer_cursor sig);

/* ---- RSA key wrapping (esdk_crypto.c) ---- */
coffer_err esdk_rsa_wrap(EVP_PKEY *k, coffer_rsa_padding pad, coffer_cursor pt, coffer_buf *out);
coffer_err esdk_rsa_unwrap(EVP_PKEY *k, coffer_rsa_padding pad, coffer_cursor ct, coffer_buf *out);

/*
 * ---- the error boundary (status.c) ----
 * Inside libcoffer everything fails with coffer_err; callers see the stable coffer_status codes.
 * Each public `int` function coffer_X is a one-line wrapper, return esdk_status(esdk_X(...)), over
 * its coffer_err form esdk_X, which is what code inside the library calls.
 */
/* The public status for an internal error: the one place where the two numberings meet. */
int esdk_status(coffer_err e);
/*
 * The coffer_err for a status a vtable method returned. A built-in method's own failure (code
 * and detail) is kept; a status no coffer_fail stands behind is recorded with its description,
 * and an unknown one as `unknown`.
 */
coffer_err esdk_err(int status, coffer_err unknown);

coffer_err esdk_encryptor_set_output(coffer_encryptor *e, coffer_write_fn fn, void *ctx);
coffer_err esdk_encryptor_set_ec(coffer_encryptor *e, const coffer_ec *ec);
coffer_err esdk_encryptor_set_plaintext_length(coffer_encryptor *e, uint64_t len);
coffer_err esdk_encryptor_update(coffer_encryptor *e, const uint8_t *in, size_t len);
coffer_err esdk_encryptor_finish(coffer_encryptor *e);
coffer_err esdk_decryptor_set_output(coffer_decryptor *d, coffer_write_fn fn, void *ctx);
coffer_err esdk_decryptor_set_ec(coffer_decryptor *d, const coffer_ec *ec);
coffer_err esdk_decryptor_update(coffer_decryptor *d, const uint8_t *in, size_t len);
coffer_err esdk_decryptor_finish(coffer_decryptor *d);
coffer_err esdk_enc_materials_set_data_key(coffer_enc_materials *m, const uint8_t *key, size_t len);
coffer_err esdk_enc_materials_add_edk(coffer_enc_materials *m, const coffer_edk *edk);
coffer_err esdk_dec_materials_set_data_key(coffer_dec_materials *m, const uint8_t *key, size_t len);
coffer_err esdk_keyring_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m);
coffer_err esdk_keyring_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                   size_t edk_count);
coffer_err esdk_cmm_get_enc_materials(coffer_cmm *cmm, const coffer_enc_request *req,
                                      coffer_enc_materials **out);
coffer_err esdk_cmm_get_dec_materials(coffer_cmm *cmm, const coffer_dec_request *req,
                                      coffer_dec_materials **out);

/*
 * The built-in keyrings and CMMs implement their methods as coffer_err functions
 * <prefix>_on_encrypt / _on_decrypt (keyrings) or <prefix>_get_enc / _get_dec (CMMs), but sit
 * behind the public vtables, whose methods answer public statuses. These define the adapters
 * <prefix>_on_encrypt_status ... that the vtable points at.
 */
#define ESDK_KEYRING_STATUS_METHODS(prefix)                                                                  \
    static int prefix##_on_encrypt_status(coffer_keyring *kr, coffer_enc_materials *m)                       \
    {                                                                                                        \
        return esdk_status(prefix##_on_encrypt(kr, m));                                                      \
    }                                                                                                        \
    static int prefix##_on_decrypt_status(coffer_keyring *kr, coffer_dec_materials *m,                       \
                                          const coffer_edk *edks, size_t n)                                  \
    {                                                                                                        \
        return esdk_status(prefix##_on_decrypt(kr, m, edks, n));                                             \
    }

#define ESDK_CMM_STATUS_METHODS(prefix)                                                                      \
    static int prefix##_get_enc_status(coffer_cmm *cmm, const coffer_enc_request *req,                       \
                                       coffer_enc_materials **out)                                           \
    {                                                                                                        \
        return esdk_status(prefix##_get_enc(cmm, req, out));                                                 \
    }                                                                                                        \
    static int prefix##_get_dec_status(coffer_cmm *cmm, const coffer_dec_request *req,                       \
                                       coffer_dec_materials **out)                                           \
    {                                                                                                        \
        return esdk_status(prefix##_get_dec(cmm, req, out));                                                 \
    }

/* Refcount helpers shared by keyrings and CMMs. */
static inline void esdk_ref_inc(unsigned long *r)
{
    __atomic_add_fetch(r, 1, __ATOMIC_RELAXED);
}
static inline bool esdk_ref_dec(unsigned long *r)
{
    return __atomic_sub_fetch(r, 1, __ATOMIC_ACQ_REL) == 0;
}

#endif
