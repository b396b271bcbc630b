/*
 * Root key providers: where the key that wraps the barrier keyring lives. The barrier (seal.c)
 * only ever asks a provider to wrap or unwrap the keyring, so a provider may keep its key out
 * of process (PKCS#11 HSM) or derive it (passphrase). Providers are a small vtable, one file per
 * variant: seal_file.c (32-byte key file; also a raw in-memory key for tests and fuzzing).
 */
#ifndef COFFER_SEAL_SEAL_PROVIDER_H
#define COFFER_SEAL_SEAL_PROVIDER_H

#include <stdbool.h>

#include "common/buf.h"
#include "seal/seal.h"
#include "store/store.h"

struct seal_provider;

struct seal_provider_vt {
    size_t vt_size;   /* sizeof(struct seal_provider_vt): lets us add methods later */
    const char *name; /* "file", "pkcs11": for logs only */
    /* Appends the wrapped form of `plaintext` (bound to `aad`) to `out`. */
    coffer_err (*wrap)(struct seal_provider *p, coffer_cursor aad, coffer_cursor plaintext, coffer_buf *out);
    /* Appends the plaintext to `out` (a secret buffer); COFFER_ERR_CRYPTO and nothing appended
     * when `wrapped` was not made by this provider's key with this `aad`. */
    coffer_err (*unwrap)(struct seal_provider *p, coffer_cursor aad, coffer_cursor wrapped, coffer_buf *out);
    void (*destroy)(struct seal_provider *p); /* wipes the key */
};

struct seal_provider {
    const struct seal_provider_vt *vt;
};

/* Format of the file provider's wrapping: version(1) || iv(12) || AES-256-GCM ciphertext || tag(16). */
#define SEAL_FILE_WRAP_VERSION 1

/*
 * The key-file provider. The file holds exactly SEAL_ROOT_KEY_LEN raw bytes and must not be
 * accessible by group or others; when `create` is true and the file does not exist, it is
 * created with O_CREAT|O_EXCL, mode 0600, from fresh random bytes and fsynced. Errors:
 * COFFER_ERR_CONFIG (missing file, bad mode, bad size, not a regular file), COFFER_ERR_IO.
 */
coffer_err seal_provider_file_open(const char *path, bool create, struct seal_provider **out)
    __attribute__((warn_unused_result));
/* The same provider over a key given in memory (copied): tests, fuzzing, `coffer init` tools. */
coffer_err seal_provider_raw_new(coffer_cursor key, struct seal_provider **out)
    __attribute__((warn_unused_result));

coffer_err seal_provider_wrap(struct seal_provider *p, coffer_cursor aad, coffer_cursor plaintext,
                              coffer_buf *out) __attribute__((warn_unused_result));
coffer_err seal_provider_unwrap(struct seal_provider *p, coffer_cursor aad, coffer_cursor wrapped,
                                coffer_buf *out) __attribute__((warn_unused_result));
void seal_provider_free(struct seal_provider *p); /* accepts NULL */

/*
 * Opens the barrier over `st` with root key provider `p`, which it takes ownership of (freed
 * with the seal, or at once on failure). Loads the keyring from "seal/keyring", or creates it
 * with one term when absent. COFFER_ERR_CRYPTO when the stored keyring does not unwrap (wrong
 * root key), COFFER_ERR_STORE on storage failure.
 */
coffer_err seal_open(struct seal_provider *p, store *st, seal **out) __attribute__((warn_unused_result));

#endif
