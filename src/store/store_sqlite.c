/*
 * The embedded SQLite backend of the storage interface (the bottom of listener -> auth ->
 * service -> barrier -> store). One table kv(key, value) WITHOUT ROWID, so the primary key
 * b-tree is the table and a prefix scan is a range scan in key order.
 *
 * Threads: SQLite connections are not meant to be shared, so each thread gets its own
 * connection, created lazily and found through a pthread key; the store keeps a list of them
 * and closes them all at store_close (or one at a time when a thread exits). Each connection
 * caches its prepared statements: store_get is on the hot path of every KMS crypto operation.
 *
 * Durability: WAL with synchronous=FULL, so a COMMIT that returned has been fsynced to the WAL
 * and survives kill -9 or power loss. Write transactions are BEGIN IMMEDIATE (the write lock is
 * taken up front, no upgrade deadlocks between processes) and, within this process, are also
 * serialised by a mutex so waiting writers sleep on a condition instead of polling the busy
 * handler.
 *
 * Schema: PRAGMA user_version counts the migrations applied; at open, the missing ones run in
 * one transaction, so a schema change is a new entry at the end of `migrations`.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define SQLITE_BUSY_TIMEOUT_MS 10000

static const struct store_migration default_migrations[] = {
    {"kv table", "CREATE TABLE kv(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;"},
};

enum stmt_id { ST_GET, ST_PUT, ST_DEL, ST_SCAN, ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_COUNT };

static const char *const stmt_sql[ST_COUNT] = {
    [ST_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_PUT] =
        "INSERT INTO kv(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_DEL] = "DELETE FROM kv WHERE key = ?1",
    /* ?3 is the prefix's upper bound; with no bound we pass "\x7f", above every printable key. */
    [ST_SCAN] = "SELECT key, value FROM kv WHERE key >= ?1 AND key > ?2 AND key < ?3 ORDER BY key LIMIT ?4",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

struct sqlite_store;

struct sqlite_conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared lazily, kept for the connection's life */
    bool scanning;                /* ST_SCAN is being stepped (a callback may scan again) */
    bool in_txn;                  /* this thread holds the store's write transaction */
    struct sqlite_store *owner;
    struct sqlite_conn *next, *prev; /* owner's list of every open connection */
};

struct sqlite_store {
    struct store base;
    char *path;
    pthread_key_t tls;         /* -> struct sqlite_conn of the calling thread */
    pthread_mutex_t conns_mu;  /* guards the connection list */
    struct sqlite_conn *conns; /* every connection, for store_close */
    pthread_mutex_t writer_mu; /* serialises write transactions of this process */
};

struct sqlite_txn {
    struct store_txn base;
    struct sqlite_conn *conn;
};

static coffer_err sql_fail(sqlite3 *db, int code, const char *what)
{
    /* sqlite3_errstr gives the generic text of the code: no paths, no SQL, no data. */
    (void)db;
    return coffer_fail(COFFER_ERR_STORE, "%s: %s", what, sqlite3_errstr(code));
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

static void conn_close(struct sqlite_conn *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(c->stmt[i]);
    }
    if (c->db != NULL && sqlite3_close(c->db) != SQLITE_OK) {
        log_warn("store: sqlite connection closed with statements still open");
        sqlite3_close_v2(c->db);
    }
    free(c);
}

static void conn_unlink(struct sqlite_store *s, struct sqlite_conn *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->next = c->prev = NULL;
}

/* pthread key destructor: the thread is exiting, its connection goes with it. */
static void conn_thread_exit(void *p)
{
    struct sqlite_conn *c = p;
    struct sqlite_store *s = c->owner;
    if (c->in_txn) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        c->in_txn = false;
        pthread_mutex_unlock(&s->writer_mu);
    }
    pthread_mutex_lock(&s->conns_mu);
    conn_unlink(s, c);
    pthread_mutex_unlock(&s->conns_mu);
    conn_close(c);
}

static coffer_err conn_exec(sqlite3 *db, const char *sql, const char *what)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, what);
    }
    return COFFER_OK;
}

static coffer_err conn_open_db(const char *path, sqlite3 **out)
{
    sqlite3 *db = NULL;
    /* NOMUTEX: a connection is only ever used by the one thread that owns it. */
    int rc =
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        coffer_err e = sql_fail(db, rc, "cannot open the database");
        sqlite3_close(db);
        return e;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, SQLITE_BUSY_TIMEOUT_MS);
    /* synchronous is per connection: FULL makes every WAL commit fsync before returning.
     * secure_delete overwrites the space a deleted or replaced value leaves behind, so the file
     * holds no stale copy of a record: once a record is rewritten (sealed, say) its old bytes
     * are gone from the pages, not just unlinked. */
    coffer_err e = conn_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA secure_delete=ON;",
                             "cannot configure");
    if (e != COFFER_OK) {
        sqlite3_close(db);
        return e;
    }
    *out = db;
    return COFFER_OK;
}

static coffer_err conn_new(struct sqlite_store *s, sqlite3 *db, struct sqlite_conn **out)
{
    struct sqlite_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sqlite3_close(db);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    c->db = db;
    c->owner = s;
    if (pthread_setspecific(s->tls, c) != 0) {
        conn_close(c);
        return coffer_fail(COFFER_ERR_NOMEM, "cannot attach the connection to the thread");
    }
    pthread_mutex_lock(&s->conns_mu);
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    pthread_mutex_unlock(&s->conns_mu);
    *out = c;
    return COFFER_OK;
}

/* The calling thread's connection, opened on first use. */
static coffer_err conn_get(struct sqlite_store *s, struct sqlite_conn **out)
{
    struct sqlite_conn *c = pthread_getspecific(s->tls);
    if (c != NULL) {
        *out = c;
        return COFFER_OK;
    }
    sqlite3 *db = NULL;
    TRY(conn_open_db(s->path, &db));
    return conn_new(s, db, out);
}

static coffer_err conn_stmt(struct sqlite_conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    if (c->stmt[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            return sql_fail(c->db, rc, "cannot prepare a statement");
        }
    }
    *out = c->stmt[id];
    return COFFER_OK;
}

/* Runs a cached statement that returns no rows (BEGIN/COMMIT/ROLLBACK). */
static coffer_err conn_run(struct sqlite_conn *c, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = NULL;
    TRY(conn_stmt(c, id, &st));
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(c->db, rc, what);
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Operations on one connection (shared by plain reads and transactions)
 * ------------------------------------------------------------------------------------------- */

static coffer_err conn_read(struct sqlite_conn *c, const char *key, coffer_buf *value)
{
    sqlite3_stmt *st = NULL;
    TRY(conn_stmt(c, ST_GET, &st));
    coffer_err e = COFFER_OK;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        e = coffer_buf_append(value, p, n);
    } else if (rc == SQLITE_DONE) {
        e = coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key");
    } else {
        e = sql_fail(c->db, rc, "read failed");
    }
    /* Reset at once: an un-reset statement keeps its WAL read snapshot and blocks checkpoints. */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return e;
}

static coffer_err conn_scan(struct sqlite_conn *c, const char *prefix, const char *start_after, size_t limit,
                            store_scan_fn fn, void *ctx)
{
    char upper[STORE_KEY_MAX + 2];
    if (!store_prefix_upper_bound(prefix, upper)) {
        strcpy(upper, "\x7f");
    }
    /* A callback may itself scan on this thread: then use a one-off statement. */
    sqlite3_stmt *st = NULL;
    bool cached = !c->scanning;
    if (cached) {
        TRY(conn_stmt(c, ST_SCAN, &st));
    } else {
        int prc = sqlite3_prepare_v2(c->db, stmt_sql[ST_SCAN], -1, &st, NULL);
        if (prc != SQLITE_OK) {
            return sql_fail(c->db, prc, "cannot prepare a statement");
        }
    }
    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, start_after, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, upper, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, limit == 0 || limit > INT64_MAX ? -1 : (sqlite3_int64)limit);
    if (cached) {
        c->scanning = true;
    }
    coffer_err e = COFFER_OK;
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            break;
        }
        if (rc != SQLITE_ROW) {
            e = sql_fail(c->db, rc, "scan failed");
            break;
        }
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const void *v = sqlite3_column_blob(st, 1);
        size_t vn = (size_t)sqlite3_column_bytes(st, 1);
        if (k == NULL) {
            e = coffer_fail(COFFER_ERR_NOMEM, "out of memory");
            break;
        }
        e = fn(ctx, k, coffer_cursor_from(v, vn));
        if (e != COFFER_OK) {
            break;
        }
    }
    if (cached) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        c->scanning = false;
    } else {
        sqlite3_finalize(st);
    }
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * Store methods
 * ------------------------------------------------------------------------------------------- */

static coffer_err sq_get(struct store *base, const char *key, coffer_buf *value)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct sqlite_conn *c = NULL;
    TRY(conn_get(s, &c));
    return conn_read(c, key, value);
}

static coffer_err sq_scan(struct store *base, const char *prefix, const char *start_after, size_t limit,
                          store_scan_fn fn, void *ctx)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct sqlite_conn *c = NULL;
    TRY(conn_get(s, &c));
    return conn_scan(c, prefix, start_after, limit, fn, ctx);
}

static coffer_err sq_txn_begin(struct store *base, struct store_txn **out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct sqlite_conn *c = NULL;
    TRY(conn_get(s, &c));
    if (c->in_txn) {
        return coffer_fail(COFFER_ERR_USAGE, "this thread already has a transaction open");
    }
    struct sqlite_txn *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&s->writer_mu);
    coffer_err e = conn_run(c, ST_BEGIN, "cannot begin a transaction");
    if (e != COFFER_OK) {
        pthread_mutex_unlock(&s->writer_mu);
        free(t);
        return e;
    }
    c->in_txn = true;
    t->conn = c;
    *out = &t->base;
    return COFFER_OK;
}

static coffer_err sq_txn_get(struct store_txn *base, const char *key, coffer_buf *value)
{
    struct sqlite_txn *t = (struct sqlite_txn *)base;
    return conn_read(t->conn, key, value);
}

static coffer_err sq_txn_put(struct store_txn *base, const char *key, coffer_cursor value)
{
    struct sqlite_txn *t = (struct sqlite_txn *)base;
    sqlite3_stmt *st = NULL;
    TRY(conn_stmt(t->conn, ST_PUT, &st));
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    /* A zero-length blob must still be a blob, not NULL (the column is NOT NULL). */
    sqlite3_bind_blob(st, 2, value.len ? (const void *)value.ptr : "", (int)value.len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(t->conn->db, rc, "write failed");
    }
    return COFFER_OK;
}

static coffer_err sq_txn_delete(struct store_txn *base, const char *key)
{
    struct sqlite_txn *t = (struct sqlite_txn *)base;
    sqlite3_stmt *st = NULL;
    TRY(conn_stmt(t->conn, ST_DEL, &st));
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(t->conn->db, rc, "delete failed");
    }
    if (sqlite3_changes(t->conn->db) == 0) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key");
    }
    return COFFER_OK;
}

static coffer_err sq_txn_scan(struct store_txn *base, const char *prefix, const char *start_after,
                              size_t limit, store_scan_fn fn, void *ctx)
{
    struct sqlite_txn *t = (struct sqlite_txn *)base;
    return conn_scan(t->conn, prefix, start_after, limit, fn, ctx);
}

static void txn_finish(struct sqlite_txn *t)
{
    struct sqlite_conn *c = t->conn;
    c->in_txn = false;
    pthread_mutex_unlock(&c->owner->writer_mu);
    free(t);
}

static void sq_txn_abort(struct store_txn *base)
{
    struct sqlite_txn *t = (struct sqlite_txn *)base;
    if (conn_run(t->conn, ST_ROLLBACK, "rollback failed") != COFFER_OK &&
        !sqlite3_get_autocommit(t->conn->db)) {
        /* Should not happen; make sure the connection does not stay inside a transaction. */
        sqlite3_exec(t->conn->db, "ROLLBACK", NULL, NULL, NULL);
    }
    txn_finish(t);
}

static coffer_err sq_txn_commit(struct store_txn *base)
{
    struct sqlite_txn *t = (struct sqlite_txn *)base;
    coffer_err e = conn_run(t->conn, ST_COMMIT, "commit failed");
    if (e != COFFER_OK) {
        /* A failed COMMIT may leave the transaction open (e.g. SQLITE_FULL): undo it all. */
        if (!sqlite3_get_autocommit(t->conn->db)) {
            sqlite3_exec(t->conn->db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    txn_finish(t);
    return e;
}

static void sq_destroy(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    /* Deleting the key first means no thread-exit destructor runs on our connections later. */
    pthread_key_delete(s->tls);
    struct sqlite_conn *c = s->conns;
    while (c != NULL) {
        struct sqlite_conn *next = c->next;
        conn_close(c);
        c = next;
    }
    pthread_mutex_destroy(&s->conns_mu);
    pthread_mutex_destroy(&s->writer_mu);
    free(s->path);
    free(s);
}

static const struct store_vt sqlite_vt = {
    .vt_size = sizeof(struct store_vt),
    .name = "sqlite",
    .get = sq_get,
    .scan = sq_scan,
    .txn_begin = sq_txn_begin,
    .txn_get = sq_txn_get,
    .txn_put = sq_txn_put,
    .txn_delete = sq_txn_delete,
    .txn_scan = sq_txn_scan,
    .txn_commit = sq_txn_commit,
    .txn_abort = sq_txn_abort,
    .destroy = sq_destroy,
};

/* ---------------------------------------------------------------------------------------------
 * Open: file, WAL, migrations
 * ------------------------------------------------------------------------------------------- */

/* The file holds metadata in clear (key ids, policies): create it 0600 before SQLite does
 * (SQLite gives the -wal and -shm files the mode of the database file). */
static coffer_err precreate(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("store: cannot open %s: %s", path, strerror(errno));
        return coffer_fail(COFFER_ERR_STORE, "cannot open the database file");
    }
    close(fd);
    return COFFER_OK;
}

static coffer_err enable_wal(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "cannot enable WAL");
    }
    rc = sqlite3_step(st);
    bool wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
               strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        return coffer_fail(COFFER_ERR_STORE, "the database does not support WAL mode");
    }
    return COFFER_OK;
}

static coffer_err read_user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "cannot read the schema version");
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return sql_fail(db, rc, "cannot read the schema version");
    }
    *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return COFFER_OK;
}

/* Applies migrations [user_version, n) in one IMMEDIATE transaction: all or nothing. */
static coffer_err migrate(sqlite3 *db, const struct store_migration *m, size_t n)
{
    coffer_err rc = COFFER_OK;
    bool open = false;
    TRY_OUT(conn_exec(db, "BEGIN IMMEDIATE", "cannot begin the migration"));
    open = true;
    int v = 0;
    TRY_OUT(read_user_version(db, &v));
    if (v < 0 || (size_t)v > n) {
        FAIL_OUT(COFFER_ERR_STORE, "database schema version %d is newer than this build knows (%zu)", v, n);
    }
    if ((size_t)v == n) {
        TRY_OUT(conn_exec(db, "COMMIT", "cannot finish the migration"));
        open = false;
        goto out;
    }
    for (size_t i = (size_t)v; i < n; i++) {
        log_info("store: applying schema migration %zu (%s)", i + 1, m[i].name);
        TRY_OUT(conn_exec(db, m[i].sql, "schema migration failed"));
    }
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%zu", n);
    TRY_OUT(conn_exec(db, sql, "cannot record the schema version"));
    TRY_OUT(conn_exec(db, "COMMIT", "cannot commit the migration"));
    open = false;
out:
    if (open) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

static pthread_once_t sqlite_global_once = PTHREAD_ONCE_INIT;

static void sqlite_global_init(void)
{
    /* Memory statistics take a process-wide mutex on every allocation: off, for scaling across
     * worker threads. Only possible before SQLite initialises; harmless if someone beat us. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)sqlite3_initialize();
}

coffer_err store_sqlite_open_with(const char *path, const struct store_migration *migrations, size_t n,
                                  store **out)
{
    pthread_once(&sqlite_global_once, sqlite_global_init);
    ENSURE_REF(path);
    ENSURE_REF(out);
    if (path[0] == '\0' || path[0] == ':') {
        return coffer_fail(COFFER_ERR_CONFIG, "the SQLite store needs a file path");
    }
    coffer_err rc = COFFER_OK;
    sqlite3 *db = NULL;
    struct sqlite_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    s->base.vt = &sqlite_vt;
    pthread_mutex_init(&s->conns_mu, NULL);
    pthread_mutex_init(&s->writer_mu, NULL);
    if (pthread_key_create(&s->tls, conn_thread_exit) != 0) {
        pthread_mutex_destroy(&s->conns_mu);
        pthread_mutex_destroy(&s->writer_mu);
        free(s);
        return coffer_fail(COFFER_ERR_NOMEM, "cannot create a thread key");
    }
    s->path = strdup(path);
    if (s->path == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(precreate(path));
    TRY_OUT(conn_open_db(path, &db));
    TRY_OUT(enable_wal(db));
    TRY_OUT(migrate(db, migrations, n));
    /* Keep the migration connection as this thread's connection. */
    struct sqlite_conn *c = NULL;
    rc = conn_new(s, db, &c);
    db = NULL; /* conn_new owns it now, even on failure */
    if (rc != COFFER_OK) {
        goto out;
    }
    *out = &s->base;
    s = NULL;
out:
    if (db != NULL) {
        sqlite3_close(db);
    }
    if (s != NULL) {
        sq_destroy(&s->base);
    }
    return rc;
}

coffer_err store_sqlite_open(const char *path, store **out)
{
    return store_sqlite_open_with(path, default_migrations,
                                  sizeof(default_migrations) / sizeof(default_migrations[0]), out);
}
