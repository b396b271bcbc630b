/*
 * A PKCS#11 token, reached through the vendor's module loaded with dlopen: the plumbing the
 * PKCS#11 root key provider (seal/seal_pkcs11.c) and the KMS custom key stores
 * (kms/kms_cks.c) share. Only the OASIS PKCS#11 2.40 interface is used, so any vendor's HSM
 * works the same way (SoftHSM2 in tests).
 *
 * A token handle holds a small pool of logged-in sessions: a PKCS#11 session is not safe for
 * concurrent use, so each operation takes one session of the pool for its duration, and
 * several workers can use the token at once. The keys are AES-256 secret keys created
 * non-extractable and sensitive: their value never leaves the token, which does the AES-GCM.
 *
 * Thread-safety: every function may be called from any thread on an open token; hsm_token_free
 * must not race with the others. Errors carry one line that names the cause; `why` (when not
 * NULL) classifies a failed open for callers that report it in their own terms.
 */
#ifndef COFFER_HSM_HSM_H
#define COFFER_HSM_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define HSM_GCM_IV_LEN 12
#define HSM_GCM_TAG_LEN 16
#define HSM_LABEL_MAX 128   /* CKA_LABEL of a key, and the token label (32 in PKCS#11) */
#define HSM_SESSIONS_MAX 16 /* sessions one token handle opens at most */

typedef struct hsm_token hsm_token;
typedef unsigned long hsm_object; /* a CK_OBJECT_HANDLE: valid in every session of the token */

struct hsm_token_config {
    const char *module; /* path of the PKCS#11 module */
    const char *token;  /* token label, or NULL to pick by slot */
    long slot;          /* slot id when token is NULL */
    size_t sessions;    /* sessions in the pool (1..HSM_SESSIONS_MAX; 0 means 1) */
};

/* Why hsm_token_open failed. */
enum hsm_failure {
    HSM_FAIL_NONE,
    HSM_FAIL_MODULE,        /* the module cannot be loaded or initialised */
    HSM_FAIL_NO_TOKEN,      /* no token with that label (or in that slot) */
    HSM_FAIL_PIN_INCORRECT, /* CKR_PIN_INCORRECT */
    HSM_FAIL_PIN_LOCKED,    /* CKR_PIN_LOCKED */
    HSM_FAIL_OTHER,         /* anything else the token answered */
};

/*
 * Loads the module (one C_Initialize per module per process, shared with every other handle on
 * it), finds the token, opens the session pool and logs the user in with `pin` (borrowed; the
 * caller wipes it). COFFER_ERR_CONFIG with the cause ("cannot load module ...", "no token
 * labelled '...'", "wrong PIN for token '...' (CKR_PIN_INCORRECT)") and *why set.
 */
coffer_err hsm_token_open(const struct hsm_token_config *cfg, coffer_cursor pin, hsm_token **out,
                          enum hsm_failure *why) __attribute__((warn_unused_result));
/* Closes the sessions and releases the module. NULL is fine. */
void hsm_token_free(hsm_token *t);
/* The token's label (as the token reports it). */
const char *hsm_token_label(const hsm_token *t);

/* The AES token key labelled `label`: COFFER_ERR_NOT_FOUND (no message) when there is none,
 * COFFER_ERR_CONFIG when there are several. */
coffer_err hsm_aes_find(hsm_token *t, const char *label, hsm_object *out) __attribute__((warn_unused_result));
/* Generates an AES-256 token key labelled `label`: private, sensitive, non-extractable, for
 * encrypt and decrypt only. COFFER_ERR_CRYPTO when the token refuses. */
coffer_err hsm_aes_generate(hsm_token *t, const char *label, hsm_object *out)
    __attribute__((warn_unused_result));
/*
 * A session copy of token key `key` (CKA_TOKEN false, everything else the same, so still
 * sensitive and non-extractable, still inside the token): tokens that keep their token objects
 * in files check those on every use of one, not of a session object. It lives until the
 * token handle is freed. COFFER_ERR_CRYPTO when the token refuses to copy.
 */
coffer_err hsm_object_session_copy(hsm_token *t, hsm_object key, hsm_object *out)
    __attribute__((warn_unused_result));
/* Destroys a token object. */
coffer_err hsm_object_destroy(hsm_token *t, hsm_object o) __attribute__((warn_unused_result));
/* CKA_EXTRACTABLE and CKA_SENSITIVE of a key. */
coffer_err hsm_aes_protection(hsm_token *t, hsm_object key, bool *extractable, bool *sensitive)
    __attribute__((warn_unused_result));

/*
 * `n` bytes from the token's random number generator (C_GenerateRandom) into `out`.
 * COFFER_ERR_CRYPTO with the token's answer on failure (`out` then holds nothing of use).
 */
coffer_err hsm_random(hsm_token *t, uint8_t *out, size_t n) __attribute__((warn_unused_result));

/*
 * AES-GCM in the token with `key`: appends ciphertext || tag (plaintext.len + HSM_GCM_TAG_LEN
 * bytes) to `out`. COFFER_ERR_CRYPTO with the token's answer on failure, nothing appended.
 */
coffer_err hsm_gcm_encrypt(hsm_token *t, hsm_object key, const uint8_t iv[HSM_GCM_IV_LEN], coffer_cursor aad,
                           coffer_cursor plaintext, coffer_buf *out) __attribute__((warn_unused_result));
/*
 * Authenticates and decrypts ciphertext || tag in the token; appends the plaintext to `out` (a
 * secret buffer). COFFER_ERR_CRYPTO on any failure (a wrong tag included), nothing appended.
 */
coffer_err hsm_gcm_decrypt(hsm_token *t, hsm_object key, const uint8_t iv[HSM_GCM_IV_LEN], coffer_cursor aad,
                           coffer_cursor sealed, coffer_buf *out) __attribute__((warn_unused_result));

#endif
