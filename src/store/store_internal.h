/*
 * Inside the storage layer: the backend vtable and the base structs every backend embeds first.
 * Callers outside src/store use only store.h; backends (store_sqlite.c, store_pg.c, store_mem.c, the
 * fault-injection wrapper store_fault.c, and the barrier's sealed view in src/seal) implement `struct
 * store_vt` and are reached through the thin wrappers in store.c, which also validate keys and values once
 * for every backend.
 */
#ifndef COFFER_STORE_STORE_INTERNAL_H
#define COFFER_STORE_STORE_INTERNAL_H

#include <stddef.h>

#include "store/store.h"

struct store_vt {
    size_t vt_size;   /* sizeof(struct store_vt): lets us add methods later */
    const char *name; /* "sqlite", "postgres", "mem", "fault": for logs only */
    coffer_err (*get)(struct store *s, const char *key, coffer_buf *value);
    coffer_err (*scan)(struct store *s, const char *prefix, const char *start_after, size_t limit,
                       store_scan_fn fn, void *ctx);
    coffer_err (*txn_begin)(struct store *s, struct store_txn **out);
    coffer_err (*txn_get)(struct store_txn *t, const char *key, coffer_buf *value);
    coffer_err (*txn_put)(struct store_txn *t, const char *key, coffer_cursor value);
    coffer_err (*txn_delete)(struct store_txn *t, const char *key);
    coffer_err (*txn_scan)(struct store_txn *t, const char *prefix, const char *start_after, size_t limit,
                           store_scan_fn fn, void *ctx);
    coffer_err (*txn_commit)(struct store_txn *t); /* frees t whatever the outcome */
    void (*txn_abort)(struct store_txn *t);        /* frees t */
    void (*destroy)(struct store *s);
    /* Plaintext records (store.h). Optional: a backend that stores values as given leaves them
     * NULL and the plain calls use get/txn_get/txn_put; a wrapper that transforms values (the
     * sealed view) must set all three. */
    coffer_err (*get_plain)(struct store *s, const char *key, coffer_buf *value);
    coffer_err (*txn_get_plain)(struct store_txn *t, const char *key, coffer_buf *value);
    coffer_err (*txn_put_plain)(struct store_txn *t, const char *key, coffer_cursor value);
    /* store_scheduler_lease. Optional: NULL means this process is the only one (true). */
    bool (*scheduler_lease)(struct store *s);
    /* The change feed (store.h). Optional: NULL means no other process writes to this store, so
     * there is nothing to report (watching succeeds). Wrappers forward to their inner store. */
    coffer_err (*watch)(struct store *s, const char *prefix, store_change_fn fn, void *ctx);
    void (*unwatch)(struct store *s, store_change_fn fn, void *ctx);
};

struct store {
    const struct store_vt *vt;
};

struct store_txn {
    struct store *st; /* the store that began it: its vtable serves the transaction */
};

/* ---- backends ---- */

/* "sqlite:/path" or a bare path; `path` is the file name. */
coffer_err store_sqlite_open(const char *path, store **out) __attribute__((warn_unused_result));
/*
 * "postgres://USER@HOST:PORT/DB?..." or "postgresql://...": any libpq connection URI (the URL
 * may carry a password; it is never logged).
 */
coffer_err store_pg_open(const char *url, store **out) __attribute__((warn_unused_result));
/* "mem:" (anything after the colon is ignored): a private, non-durable store for tests. */
coffer_err store_mem_open(store **out) __attribute__((warn_unused_result));

/*
 * Schema migrations: migration i brings the schema from version i to i + 1 (SQLite: PRAGMA
 * user_version). Exposed so tests can open a file with an older or a longer list.
 */
struct store_migration {
    const char *name; /* for logs */
    const char *sql;  /* one or more statements */
};
coffer_err store_sqlite_open_with(const char *path, const struct store_migration *migrations, size_t n,
                                  store **out) __attribute__((warn_unused_result));
/* The same for PostgreSQL: the count is kept in the table coffer_schema, and the migrations run
 * under an advisory lock so that nodes opening the database together apply them once. */
coffer_err store_pg_open_with(const char *url, const struct store_migration *migrations, size_t n,
                              store **out) __attribute__((warn_unused_result));

/*
 * The smallest string greater than every string that starts with `prefix` (the exclusive upper
 * bound of a prefix range), written to `out` (capacity >= strlen(prefix) + 1). Returns false
 * when there is none (empty prefix or all 0xFF bytes): the range is then unbounded above.
 */
bool store_prefix_upper_bound(const char *prefix, char *out);

#endif
