/*
 * The storage interface: an ordered key-value store with durable transactions. Services never
 * see SQL; they store records under string keys ("kms/key/<acct>/<region>/<id>") and scan by
 * prefix in key order. Values are opaque bytes. Services are handed the barrier's sealed view
 * of the store (src/seal/seal_store.c), which seals every value before a backend sees it: a
 * backend is untrusted storage. Keys stay in clear, since they are the index: they name
 * accounts, key ids, alias names, user and role names, access key ids, never a secret, and
 * whoever can read the database file can read them.
 *
 * Backends are vtables behind `struct store` (store_sqlite.c, store_pg.c). A store is
 * shared by all worker threads and every function is thread-safe. A transaction belongs to the
 * thread that began it. store_txn_commit returns only after the data is durable: a request
 * acknowledged after a commit survives kill -9.
 *
 * Keys: 1..1024 bytes of printable ASCII. Values: up to 16 MiB: a record holds every version of
 * what it describes, and the largest the services keep are a secret with 100 versions of 64 KB
 * (about 9 MB once encrypted and encoded) and a parameter with 100 versions of 8 KB.
 */
#ifndef COFFER_STORE_STORE_H
#define COFFER_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define STORE_KEY_MAX 1024
#define STORE_VALUE_MAX (16 * 1024 * 1024)

typedef struct store store;
typedef struct store_txn store_txn;

/*
 * Opens a store by URL: "sqlite:/path/to/coffer.db" or a bare path (SQLite), or
 * "postgres://USER@HOST:PORT/DB?sslmode=..." (also "postgresql://"; store_pg.c), a database that
 * several cofferd nodes may share. Creates the schema and applies migrations as needed.
 * *out is set only on success.
 */
coffer_err store_open(const char *url, store **out) __attribute__((warn_unused_result));
void store_close(store *s); /* accepts NULL */
const char *store_backend_name(const store *s);

/* Appends the value of `key` to `value`; COFFER_ERR_NOT_FOUND when absent. */
coffer_err store_get(store *s, const char *key, coffer_buf *value) __attribute__((warn_unused_result));

/*
 * Calls fn for each record whose key starts with `prefix` and sorts after `start_after`
 * (NULL or "" = from the start), in ascending key order, at most `limit` records (0 = no
 * limit). fn returns COFFER_OK to continue; any other value stops the scan and is returned,
 * except STORE_SCAN_STOP which stops it and makes store_scan return COFFER_OK.
 * `key` and `value` are valid only during the callback.
 */
#define STORE_SCAN_STOP ((coffer_err)-1)
typedef coffer_err (*store_scan_fn)(void *ctx, const char *key, coffer_cursor value);
coffer_err store_scan(store *s, const char *prefix, const char *start_after, size_t limit, store_scan_fn fn,
                      void *ctx) __attribute__((warn_unused_result));

/*
 * Read-write transactions, serialised against each other (SQLite: BEGIN IMMEDIATE). Reads
 * inside a transaction see its own writes. commit and abort free the transaction.
 * A thread holds at most one open transaction (a second begin gives COFFER_ERR_USAGE); whether
 * its plain store_get/store_scan calls see that transaction's writes is backend-specific, so
 * read through the transaction instead.
 */
coffer_err store_txn_begin(store *s, store_txn **out) __attribute__((warn_unused_result));
coffer_err store_txn_get(store_txn *t, const char *key, coffer_buf *value)
    __attribute__((warn_unused_result));
coffer_err store_txn_put(store_txn *t, const char *key, coffer_cursor value)
    __attribute__((warn_unused_result));
/* COFFER_ERR_NOT_FOUND when absent (nothing changed). */
coffer_err store_txn_delete(store_txn *t, const char *key) __attribute__((warn_unused_result));
coffer_err store_txn_scan(store_txn *t, const char *prefix, const char *start_after, size_t limit,
                          store_scan_fn fn, void *ctx) __attribute__((warn_unused_result));
coffer_err store_txn_commit(store_txn *t) __attribute__((warn_unused_result));
void store_txn_abort(store_txn *t); /* accepts NULL */

/*
 * Plaintext records. A store handed to services is normally the barrier's sealed view
 * (seal_store_wrap in src/seal): every value is sealed on put and opened on get and scan, so
 * the calls above never see or write a value in clear. A record that must stay readable
 * without the barrier (the barrier's own keyring, a format marker read before anything can be
 * opened) is written and read through these calls instead, and the caller says why in a
 * comment. Through a sealed view, a plaintext record read with store_get fails to open (it was
 * never sealed), and a sealed record read with store_get_plain comes back as its sealed bytes:
 * the two kinds never mix, so keep plaintext records under keys no sealed scan covers. On a
 * bare backend the two families are the same.
 */
coffer_err store_get_plain(store *s, const char *key, coffer_buf *value) __attribute__((warn_unused_result));
coffer_err store_txn_get_plain(store_txn *t, const char *key, coffer_buf *value)
    __attribute__((warn_unused_result));
coffer_err store_txn_put_plain(store_txn *t, const char *key, coffer_cursor value)
    __attribute__((warn_unused_result));

/*
 * The calling thread's pre-commit hook: while one is installed, store_txn_commit calls
 * fn(ctx) first and commits only if it returns COFFER_OK; otherwise the transaction is aborted
 * (nothing it wrote becomes visible) and commit returns fn's error. The request pipeline
 * installs one around each service handler so the request's audit event is on record before
 * any change the request makes can be seen, whichever service or code path commits it. The
 * hook lives in this layer, above every backend, so each backend gets it for free.
 * fn NULL removes the hook. It runs once per commit: not for commits it makes itself, and not
 * again when a wrapper store (the sealed view) commits its inner transaction.
 */
typedef coffer_err (*store_precommit_fn)(void *ctx);
void store_precommit_set(store_precommit_fn fn, void *ctx);

/*
 * Whether this process should run the deployment's time-driven jobs (key deletion, rotation,
 * expiries) now: exactly one process of those sharing a database does. Backends opened by one
 * process only (SQLite, mem) always say true. On PostgreSQL the answer is a session advisory
 * lock held on a connection of its own: the first node to ask takes it and keeps it while that
 * session lives; when the node dies the server ends the session and another node's next call
 * takes over. Each call checks that the session (and so the lock) is still there. Call it from
 * one thread (the scheduler) before each round of jobs; a failure to reach the database is a
 * false.
 */
bool store_scheduler_lease(store *s);

/*
 * The change feed: how a process learns that another process sharing its database changed
 * records, so that it can drop what it caches of them. A watcher registered for `prefix` is
 * called with the key of each record another writer (or this process) put or deleted under
 * that prefix, once the change is committed, and with key NULL when the feed cannot say what
 * changed (a notification was missed, the feed's connection was lost and reopened, a
 * transaction changed too many records to list): every cached record may then be stale.
 *
 * Backends opened by one process only (SQLite, mem) have nothing to report: watching succeeds
 * and the callback is never called; the process's own writes keep its caches right. On
 * PostgreSQL every write transaction sends its keys with LISTEN/NOTIFY (delivered only on
 * commit) and bumps a change counter that each process polls, so a cache is at most
 * STORE_CHANGE_STALENESS_MS behind the database even when a notification is lost.
 *
 * Callbacks run on the feed's own thread, one at a time; they may take the caller's locks and
 * read the store, but must not call store_watch/store_unwatch. A record loaded by a reader
 * before the change and cached after the callback ran would stay stale: a cache must make its
 * loads and the callback's eviction exclusive (a lock, or a generation the callback bumps).
 * store_unwatch returns once no call of fn with ctx is running or can start.
 */
#define STORE_CHANGE_STALENESS_MS 1000
typedef void (*store_change_fn)(void *ctx, const char *key);
coffer_err store_watch(store *s, const char *prefix, store_change_fn fn, void *ctx)
    __attribute__((warn_unused_result));
void store_unwatch(store *s, store_change_fn fn, void *ctx); /* accepts s NULL */

/*
 * Moving a deployment to another backend (store_copy.c; `coffer store migrate`). Both stores are
 * bare backends, never the sealed view: every record, sealed or the barrier's plaintext ones, is
 * copied as the bytes it is stored as, in one transaction on `to`. A target that holds records
 * is refused (COFFER_ERR_CONFLICT) unless `overwrite`, which replaces records under the same keys
 * and keeps the others. Then the counts are checked (source unchanged, an empty target now
 * holding exactly the source's records) and every source record is read back from `to` and
 * compared. `progress` (may be NULL) is called now and then with what is being done ("copied",
 * "verified") and how many records so far. The source must not change meanwhile (stop cofferd).
 */
struct store_copy_stats {
    size_t target_before; /* records in the target before the copy */
    size_t copied, bytes; /* records and value bytes written */
    size_t source_count, target_count;
    size_t verified; /* records read back identical */
};
typedef void (*store_copy_progress_fn)(void *ctx, const char *what, size_t n);
coffer_err store_copy(store *from, store *to, bool overwrite, store_copy_progress_fn progress, void *ctx,
                      struct store_copy_stats *stats) __attribute__((warn_unused_result));
/* The number of records under `prefix` ("" or NULL: all). */
coffer_err store_count(store *s, const char *prefix, size_t *out) __attribute__((warn_unused_result));

#endif
