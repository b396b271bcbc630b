/*
 * Root key providers: where the key that wraps the barrier keyring lives. The barrier (seal.c)
 * only ever asks a provider to wrap or unwrap the keyring, so a provider may keep its key out
 * of process (PKCS#11 HSM) or derive it (passphrase). Providers are a small vtable, one file per
 * variant: seal_file.c (32-byte key file; also a raw in-memory key for tests and fuzzing),
 * seal_passphrase.c (Argon2id of a passphrase), seal_pkcs11.c (an AES key inside a PKCS#11
 * token, which does the wrapping). seal_spec.c builds one from a text spec ("pkcs11:module=...").
 *
 * The data dir remembers which provider wrapped its keyring in the plaintext record
 * SEAL_PROVIDER_RECORD: "provider=NAME\n" followed by the provider's own "name=value\n" lines
 * (the passphrase's salt and costs, the token and key labels), so a start with another provider
 * fails with a message that says which one is needed. A data dir without that record was sealed
 * by the key file (it predates the other providers).
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
    /* Called once before the first wrap or unwrap. `stored` holds the parameter lines the data dir
     * keeps for this provider, or is empty when the keyring is being wrapped anew (new data dir,
     * migration), in which case the provider makes fresh ones. Appends the lines to keep to
     * `params`. NULL: the provider has no parameters. */
    coffer_err (*attach)(struct seal_provider *p, coffer_cursor stored, coffer_buf *params);
};

struct seal_provider {
    const struct seal_provider_vt *vt;
};

/* The plaintext record naming the provider that wraps the keyring (see above). */
#define SEAL_PROVIDER_RECORD "seal/provider"

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

/*
 * The passphrase provider: the root key is Argon2id (libsodium crypto_pwhash) of the passphrase
 * with a random 16-byte salt, and wraps as the key file does. `ops` and `mem_bytes` are the
 * costs used when the keyring is wrapped anew (0: libsodium's "moderate" costs); a data dir's
 * stored costs win over them. The passphrase is copied and wiped once the key is derived.
 * COFFER_ERR_CRYPTO with "wrong passphrase" when it does not unwrap the keyring.
 */
coffer_err seal_provider_passphrase_new(coffer_cursor passphrase, unsigned long long ops, size_t mem_bytes,
                                        struct seal_provider **out) __attribute__((warn_unused_result));

/* The PKCS#11 provider's settings (seal_pkcs11.c). */
struct seal_pkcs11_config {
    const char *module;    /* path of the PKCS#11 module, loaded with dlopen */
    const char *token;     /* token label, or NULL to pick by slot */
    long slot;             /* slot id when token is NULL */
    const char *pin;       /* the user PIN (the caller wipes its copy) */
    const char *key_label; /* CKA_LABEL of the AES key */
    bool create_key;       /* generate the key (AES-256, non-extractable, sensitive) when absent */
};

/*
 * The PKCS#11 provider: loads the module, logs in to the token and finds the AES key, which
 * wraps and unwraps the keyring inside the token (CKM_AES_GCM); the root key never enters this
 * process. Errors name the cause in one line: the module cannot be loaded, no such token, wrong
 * PIN, no such key (COFFER_ERR_CONFIG), or the token failed (COFFER_ERR_CRYPTO).
 *   wrapped = version(1) || iv(12) || AES-GCM ciphertext || tag(16),  AAD = version || aad
 */
coffer_err seal_provider_pkcs11_open(const struct seal_pkcs11_config *cfg, struct seal_provider **out)
    __attribute__((warn_unused_result));

/*
 * A provider from a spec, the form cofferd's --seal and `coffer seal migrate --to` take:
 *   file[:path=PATH]                      the key file (default DATA_DIR/root.key); created when
 *                                         `create` is true and it does not exist
 *   passphrase[:SOURCE][,ops=N][,mem=MiB] SOURCE: fd=N, file=PATH, env=NAME, credential=NAME
 *                                         (systemd's $CREDENTIALS_DIRECTORY/NAME); without one,
 *                                         the credential "coffer-passphrase" when present, else
 *                                         a prompt on the terminal (twice when `create`: a new one)
 *   pkcs11:module=PATH,token=LABEL|slot=N,pin-file=PATH|pin-env=NAME,key=LABEL[,create=yes]
 * COFFER_ERR_CONFIG with the reason for a bad spec.
 */
coffer_err seal_provider_from_spec(const char *spec, const char *data_dir, bool create,
                                   struct seal_provider **out) __attribute__((warn_unused_result));

/*
 * Checks, before a provider is opened from `spec`, that the data dir in `st` is sealed by a
 * provider of that kind (COFFER_ERR_CONFIG naming the one it needs otherwise), so a wrong start
 * leaves nothing behind (no key file made, no token key generated). *fresh: no keyring yet.
 */
coffer_err seal_spec_check(store *st, const char *spec, bool *fresh) __attribute__((warn_unused_result));

/*
 * Reads a secret (a PIN) whole from the file `file`, else from the environment variable `env`,
 * one trailing newline dropped, appending it to `out` (a secret buffer). COFFER_ERR_CONFIG
 * naming `what` when it cannot be read or is empty; the secret itself is never in a message.
 */
coffer_err seal_secret_read(const char *file, const char *env, const char *what, coffer_buf *out)
    __attribute__((warn_unused_result));

/* The value of `name` in "name=value\n" lines, copied to out; COFFER_ERR_NOT_FOUND when absent. */
coffer_err seal_param_get(coffer_cursor lines, const char *name, char *out, size_t cap)
    __attribute__((warn_unused_result));

/*
 * Appends the data dir's provider record to `out` ("provider=file\n" for a keyring that predates
 * the record). COFFER_ERR_NOT_FOUND when the store holds no keyring.
 */
coffer_err seal_provider_record(store *st, coffer_buf *out) __attribute__((warn_unused_result));

/*
 * Re-wraps the stored keyring, which `from` must unwrap, under `to`, and records `to` as the
 * data dir's provider, in one store transaction: sealed records are untouched, and a failure
 * leaves the data dir as it was. Both providers are borrowed. COFFER_ERR_CONFIG when the data
 * dir is sealed by another provider than `from`, COFFER_ERR_NOT_FOUND when it has no keyring.
 */
coffer_err seal_migrate(store *st, struct seal_provider *from, struct seal_provider *to)
    __attribute__((warn_unused_result));

/*
 * The data dir's lock file (DATA_DIR/seal.lock): cofferd holds it shared while it runs, so that
 * `coffer seal migrate`, which wants it exclusive, refuses to re-wrap under a running server.
 * Returns the fd to keep open (closing it releases the lock); COFFER_ERR_UNAVAILABLE when the
 * other side holds it.
 */
coffer_err seal_dir_lock(const char *data_dir, bool exclusive, int *fd_out)
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
