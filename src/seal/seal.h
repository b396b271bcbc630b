/*
 * The barrier between services and storage. Every record a service persists is sealed here
 * first: services write through the sealed view of the store (seal_store_wrap), and a service
 * may also seal a secret inside a record itself (KMS key material, secret access keys):
 *
 *   sealed = version(1) || term(4, big endian) || iv(12) || AES-256-GCM(ciphertext) || tag(16)
 *   AAD    = version || term || identity
 *
 * `identity` names the record (e.g. "kms-material/<account>/<key id>/<material id>"), so a
 * sealed blob copied under another record's name fails to open. The barrier keys ("terms") are
 * random AES-256 keys kept in the store under "seal/keyring", themselves wrapped by the root
 * key provider; a provider is a small vtable (key file, passphrase, PKCS#11 token) so
 * the root key can live in an HSM and only ever unwraps the keyring.
 *
 * A seal is shared by all threads; every function is thread-safe.
 */
#ifndef COFFER_SEAL_SEAL_H
#define COFFER_SEAL_SEAL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "store/store.h"

typedef struct seal seal;

#define SEAL_ROOT_KEY_LEN 32
#define SEAL_OVERHEAD (1 + 4 + 12 + 16)

/*
 * Opens the barrier with the root key in `root_key_path` (32 random bytes, mode 0600). When
 * `create` is true and the file does not exist it is created atomically with O_EXCL.
 * Loads (or on first start creates) the barrier keyring from `st`.
 */
coffer_err seal_open_keyfile(const char *root_key_path, bool create, store *st, seal **out)
    __attribute__((warn_unused_result));
void seal_free(seal *s); /* wipes every key; accepts NULL */

/* Appends the sealed form of `plaintext` to `out`. */
coffer_err seal_record_seal(seal *s, const char *identity, coffer_cursor plaintext, coffer_buf *out)
    __attribute__((warn_unused_result));
/*
 * Appends the plaintext to `out` (pass a secret buffer). A wrong identity, an unknown term or
 * any altered byte gives COFFER_ERR_CRYPTO ("sealed record failed to open"), and nothing is
 * appended.
 */
coffer_err seal_record_open(seal *s, const char *identity, coffer_cursor sealed, coffer_buf *out)
    __attribute__((warn_unused_result));

/*
 * Adds a fresh term to the stored keyring (in one store transaction) and makes it the one new
 * records are sealed under; records sealed under older terms still open. Other processes on the
 * same store pick the new term up the first time they meet a record sealed under it.
 */
coffer_err seal_rotate(seal *s) __attribute__((warn_unused_result));
/* The term new records are sealed under (1 for a fresh keyring). */
uint32_t seal_active_term(seal *s);

/*
 * The sealed view of `inner` (seal_store.c): a store that seals every value it is given with
 * the record's key as identity and opens it again on every read, so services, which are handed
 * the view, store nothing in clear unless they ask for it (store_txn_put_plain). `inner` must be
 * the store the seal was opened on. On first use on a store written in clear, every record is
 * sealed in place in one transaction. The view borrows `s` and `inner`: close it (store_close)
 * before freeing them.
 */
coffer_err seal_store_wrap(seal *s, store *inner, store **out) __attribute__((warn_unused_result));
/* The plaintext record, in the bare store, whose presence says its records are all sealed. */
#define SEAL_STORE_MARKER "seal/records"

#endif
