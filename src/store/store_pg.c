/*
 * The PostgreSQL backend of the storage interface (the bottom of listener -> auth -> service ->
 * barrier -> store), for deployments where several cofferd nodes share one database. It keeps
 * the contract of the SQLite backend (store.h), so services run unchanged on either.
 *
 * Table: coffer_kv(key text COLLATE "C" PRIMARY KEY, value bytea). The "C" collation compares
 * keys byte by byte, as SQLite's BINARY does, so a prefix scan is a range scan of the primary
 * key index in the same order on both backends.
 *
 * Write transactions, serialised across every node: BEGIN ISOLATION LEVEL READ COMMITTED, then
 * pg_advisory_xact_lock on one fixed lock id (both in one round trip). This is SQLite's BEGIN
 * IMMEDIATE stretched over the cluster: one writer at a time, the lock taken before anything is
 * read, so a transaction's reads see every write committed before it and a read-modify-write
 * (an alias moved, a version number bumped) can never lose an update or hand out a number twice.
 * Why not SERIALIZABLE with retries: the store's callers are not written to be re-run (a retry
 * would have to replay the whole service handler, audit hook included), and under contention
 * SSI aborts fail many transactions that the lock simply queues. READ COMMITTED is named
 * explicitly because a server whose default is REPEATABLE READ or SERIALIZABLE would take the
 * transaction's snapshot at the lock statement, before the wait, and read stale rows. PostgreSQL
 * releases a transaction's locks only after its commit is visible to new snapshots, so the next
 * holder's statements see it. The lock is released by COMMIT or ROLLBACK, and by the server when
 * the session dies (a node killed mid-transaction holds nobody up).
 *
 * Durability: COMMIT returns once the server has committed (synchronous_commit as the server
 * is configured: on by default, i.e. flushed to its WAL).
 *
 * Connections: one per thread, opened on first use and found through a pthread key, like the
 * SQLite backend (a worker thread is the unit of concurrency, so this is a pool per worker).
 * Each caches its prepared statements. After a server restart the first statement on a
 * connection fails with the connection marked bad: reads and BEGIN (which have done nothing yet)
 * reconnect and run once more; a statement inside a transaction fails the transaction with
 * COFFER_ERR_STORE, since its earlier writes are gone. While the server is unreachable every call
 * fails with COFFER_ERR_STORE within the connect timeout rather than hanging; statement, lock and
 * idle-in-transaction timeouts bound the time a call or a stuck peer can hold things up. The URL's
 * own settings (connect_timeout, keepalives, sslmode, ...) take precedence over ours.
 *
 * Scans page through the range (STORE_PG_SCAN_PAGE rows per statement) so that a callback may
 * use the connection again (read, scan) and a large range never sits in memory at once.
 *
 * Time-driven jobs run on one node: store_scheduler_lease is a session advisory lock held on a
 * connection of its own, released by the server when that node's session ends.
 *
 * The change feed (store_watch): each write transaction, at commit, bumps the counter in
 * coffer_changes and sends NOTIFY coffer_changes '<counter> <key>' for each key it wrote, in one
 * statement just before COMMIT, so the notifications leave only if the transaction commits (a
 * transaction that wrote more than PG_NOTIFY_KEYS_MAX keys sends '<counter> *': anything may
 * have changed). Writers are serialised by the writer lock, so the counter goes up by one per
 * write transaction, in commit order, which is also the order notifications arrive in. A feed
 * thread per process LISTENs on a connection of its own and hands each key to the watchers of
 * its prefix. A counter that skips a value, or a counter polled (every PG_FEED_POLL_MS) ahead of
 * the notifications and still ahead at the next poll, means a notification was missed: every
 * watcher is told that anything may have changed, as it is when the feed's connection is lost
 * and again when it is back. So a process lags a change by at most about two polls plus a round
 * trip (under STORE_CHANGE_STALENESS_MS), whatever is lost.
 *
 * Schema: coffer_schema holds the number of migrations applied. At open, under a session
 * advisory lock, the missing ones run in one transaction, so nodes starting together migrate
 * once: the first takes the lock and migrates, the others wait for it and then find nothing to
 * do.
 *
 * The URL may carry a password: it is never logged (use PGPASSWORD or ~/.pgpass to keep it out
 * of argv too).
 */
#include "store/store_internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/secret.h"
#include "common/timeutil.h"

/* Advisory lock ids: the two-key form, class "Cofr", so they cannot meet an application's ids
 * that use the one-key form. Advisory locks are per database. */
#define PG_LOCK_CLASS "1131375218" /* 0x436f6672, "Cofr" */
#define PG_LOCK_WRITER "1"         /* held by every write transaction */
#define PG_LOCK_MIGRATE "2"        /* held while the schema is checked and migrated */
#define PG_LOCK_SCHEDULER "3"      /* held by the one node that runs the time-driven jobs */

#define PG_CONNECT_TIMEOUT_S "5"
#define PG_STATEMENT_TIMEOUT_MS 15000
#define PG_LOCK_TIMEOUT_MS 15000
/* A node that stops mid-transaction without its connection closing (a hung process) would block
 * every writer in the cluster: the server ends such a session after this long. */
#define PG_IDLE_IN_TXN_TIMEOUT_MS 30000
#define STORE_PG_SCAN_PAGE 256

/* The change feed: its channel, how many keys one transaction lists before it says "anything"
 * instead, how often the counter is polled, and how long the feed waits for the server. */
#define PG_FEED_CHANNEL "coffer_changes"
#define PG_NOTIFY_KEYS_MAX 64
#define PG_FEED_POLL_MS 300
#define PG_FEED_WAIT_MS 100   /* the feed thread notices store_close within this */
#define PG_FEED_QUERY_MS 2000 /* a counter poll not answered by then: the connection is dead */
#define PG_FEED_RETRY_MS 250  /* between reconnection attempts */

static const struct store_migration pg_default_migrations[] = {
    {"kv table", "CREATE TABLE coffer_kv(key text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL)"},
};

enum pg_stmt { PS_GET, PS_PUT, PS_DEL, PS_SCAN, PS_NOTIFY, PS_COUNT };

static const char *const pg_stmt_name[PS_COUNT] = {"coffer_get", "coffer_put", "coffer_del", "coffer_scan",
                                                   "coffer_notify"};
static const char *const pg_stmt_sql[PS_COUNT] = {
    [PS_GET] = "SELECT value FROM coffer_kv WHERE key = $1",
    [PS_PUT] = "INSERT INTO coffer_kv(key, value) VALUES($1, $2) ON CONFLICT(key) DO UPDATE SET value = "
               "excluded.value",
    [PS_DEL] = "DELETE FROM coffer_kv WHERE key = $1",
    /* $3 is the prefix's upper bound; with no bound we pass "\x7f", above every printable key. */
    [PS_SCAN] = "SELECT key, value FROM coffer_kv WHERE key >= $1 AND key > $2 AND key < $3 ORDER BY key "
                "LIMIT $4::bigint",
    /* $1: the keys written, one per line (keys are printable: no newline in one), or "*". */
    [PS_NOTIFY] = "WITH c AS (UPDATE coffer_changes SET n = n + 1 RETURNING n) "
                  "SELECT pg_notify('" PG_FEED_CHANNEL "', c.n::text || ' ' || k) "
                  "FROM c, unnest(string_to_array($1, chr(10))) AS k",
};

#define PG_BEGIN_SQL                                                                                         \
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(" PG_LOCK_CLASS "," PG_LOCK_WRITER ")"

struct pg_store;

struct pg_conn {
    PGconn *db;        /* NULL or bad: reconnect before use */
    unsigned prepared; /* bit i: pg_stmt i is prepared on db */
    bool in_txn;       /* this thread holds the store's write transaction */
    struct pg_store *owner;
    struct pg_conn *next, *prev; /* owner's list of every connection */
};

struct pg_watch {
    char *prefix;
    store_change_fn fn;
    void *ctx;
};

struct pg_store {
    struct store base;
    char *url;                /* secret when it carries a password: never logged */
    pthread_key_t tls;        /* -> struct pg_conn of the calling thread */
    pthread_mutex_t conns_mu; /* guards the connection list */
    struct pg_conn *conns;    /* every connection, for store_close */
    pthread_mutex_t lease_mu; /* guards the two below */
    PGconn *lease_db;         /* the session holding PG_LOCK_SCHEDULER, or trying to */
    bool lease_held;
    pthread_mutex_t watch_mu; /* guards the watcher list; held while callbacks run */
    struct pg_watch *watches;
    size_t n_watches, cap_watches;
    bool feed_started; /* guarded by watch_mu */
    pthread_t feed;    /* the feed thread, started by the first store_watch */
    atomic_bool feed_stop;
};

struct pg_txn {
    struct store_txn base;
    struct pg_conn *conn;
    coffer_buf changed; /* the keys written, one per line, for the commit's notification */
    size_t n_changed;
    bool changed_all; /* more than PG_NOTIFY_KEYS_MAX: notify "*" */
};

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* Logs the server's or libpq's reason (SQLSTATE and primary message: never parameters, which
 * are sealed values or keys) and returns a generic COFFER_ERR_STORE for the caller. */
static coffer_err pg_fail(PGconn *db, const PGresult *r, const char *what)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL && db != NULL) {
        msg = PQerrorMessage(db);
    }
    char line[256];
    snprintf(line, sizeof(line), "%s", msg != NULL ? msg : "unknown error");
    line[strcspn(line, "\n")] = '\0';
    log_warn("store: postgres: %s: %s%s%s", what, state != NULL ? state : "", state != NULL ? " " : "", line);
    return coffer_fail(COFFER_ERR_STORE, "%s", what);
}

static bool conn_broken(const struct pg_conn *c)
{
    return c->db == NULL || PQstatus(c->db) != CONNECTION_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

static void conn_drop_db(struct pg_conn *c)
{
    PQfinish(c->db); /* accepts NULL */
    c->db = NULL;
    c->prepared = 0;
}

/* One statement that returns no rows (or whose rows we ignore) on a connection outside the
 * prepared set. */
static coffer_err db_exec(PGconn *db, const char *sql, const char *what)
{
    PGresult *r = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(r);
    coffer_err e = COFFER_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        e = pg_fail(db, r, what);
    }
    PQclear(r);
    return e;
}

/* Server notices (e.g. "there is no transaction in progress") are ours to ignore, not stderr's. */
static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static coffer_err db_connect(const char *url, PGconn **out)
{
    /* Our defaults come before the URL: with expand_dbname, settings processed later override
     * earlier ones, so whatever the URL says wins. */
    const char *const keys[] = {
        "connect_timeout",     "keepalives",       "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "application_name",    "dbname",           NULL,
    };
    const char *const vals[] = {
        PG_CONNECT_TIMEOUT_S, "1", "10", "5", "3", "20000", "cofferd", url, NULL,
    };
    PGconn *db = PQconnectdbParams(keys, vals, 1);
    if (db == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    if (PQstatus(db) != CONNECTION_OK) {
        coffer_err e = pg_fail(db, NULL, "cannot connect to the database");
        PQfinish(db);
        return e;
    }
    PQsetNoticeProcessor(db, notice_ignore, NULL);
    char sql[256];
    snprintf(
        sql, sizeof(sql),
        "SET statement_timeout = %d; SET lock_timeout = %d; SET idle_in_transaction_session_timeout = %d",
        PG_STATEMENT_TIMEOUT_MS, PG_LOCK_TIMEOUT_MS, PG_IDLE_IN_TXN_TIMEOUT_MS);
    coffer_err e = db_exec(db, sql, "cannot configure the connection");
    if (e != COFFER_OK) {
        PQfinish(db);
        return e;
    }
    *out = db;
    return COFFER_OK;
}

static void conn_unlink(struct pg_store *s, struct pg_conn *c)
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

/* pthread key destructor: the thread is exiting, its connection goes with it (closing the
 * session rolls back a transaction left open). */
static void conn_thread_exit(void *p)
{
    struct pg_conn *c = p;
    struct pg_store *s = c->owner;
    pthread_mutex_lock(&s->conns_mu);
    conn_unlink(s, c);
    pthread_mutex_unlock(&s->conns_mu);
    conn_drop_db(c);
    free(c);
}

static coffer_err conn_attach(struct pg_store *s, PGconn *db, struct pg_conn **out)
{
    struct pg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        PQfinish(db);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    c->db = db;
    c->owner = s;
    if (pthread_setspecific(s->tls, c) != 0) {
        conn_drop_db(c);
        free(c);
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

/* The calling thread's connection, (re)connected when it has none or its session is gone. */
static coffer_err conn_get(struct pg_store *s, struct pg_conn **out)
{
    struct pg_conn *c = pthread_getspecific(s->tls);
    if (c == NULL) {
        PGconn *db = NULL;
        TRY(db_connect(s->url, &db));
        return conn_attach(s, db, out);
    }
    if (conn_broken(c) && !c->in_txn) {
        conn_drop_db(c);
        TRY(db_connect(s->url, &c->db));
    }
    *out = c;
    return COFFER_OK;
}

/* After a failure outside a transaction: whether the session is gone, in which case the
 * connection is reopened so the caller can run its statement once more. */
static bool conn_retry(struct pg_conn *c)
{
    if (c->in_txn || !conn_broken(c)) {
        return false;
    }
    conn_drop_db(c);
    if (db_connect(c->owner->url, &c->db) != COFFER_OK) {
        return false;
    }
    log_info("store: postgres: reconnected");
    return true;
}

static coffer_err conn_prepare(struct pg_conn *c, enum pg_stmt id)
{
    if (c->prepared & (1u << id)) {
        return COFFER_OK;
    }
    PGresult *r = PQprepare(c->db, pg_stmt_name[id], pg_stmt_sql[id], 0, NULL);
    coffer_err e = COFFER_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        e = pg_fail(c->db, r, "cannot prepare a statement");
    } else {
        c->prepared |= 1u << id;
    }
    PQclear(r);
    return e;
}

/* Runs a prepared statement; results come back in binary (bytea as raw bytes). *out is set on
 * success only, and the caller PQclears it. */
static coffer_err conn_run(struct pg_conn *c, enum pg_stmt id, int n, const char *const *vals,
                           const int *lens, const int *fmts, ExecStatusType want, const char *what,
                           PGresult **out)
{
    TRY(conn_prepare(c, id));
    PGresult *r = PQexecPrepared(c->db, pg_stmt_name[id], n, vals, lens, fmts, 1);
    if (PQresultStatus(r) != want) {
        coffer_err e = pg_fail(c->db, r, what);
        PQclear(r);
        return e;
    }
    *out = r;
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Operations on one connection (shared by plain reads and transactions)
 * ------------------------------------------------------------------------------------------- */

static coffer_err conn_read(struct pg_conn *c, const char *key, coffer_buf *value)
{
    PGresult *r = NULL;
    const char *vals[1] = {key};
    TRY(conn_run(c, PS_GET, 1, vals, NULL, NULL, PGRES_TUPLES_OK, "read failed", &r));
    coffer_err e = COFFER_OK;
    if (PQntuples(r) == 0) {
        e = coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key");
    } else {
        e = coffer_buf_append(value, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    }
    PQclear(r);
    return e;
}

/* One page of a scan: rows after `after`, at most `page`; *last gets the page's last key. */
static coffer_err conn_scan_page(struct pg_conn *c, const char *prefix, const char *after, const char *upper,
                                 size_t page, store_scan_fn fn, void *ctx, size_t *seen, char *last)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", page);
    const char *vals[4] = {prefix, after, upper, lim};
    PGresult *r = NULL;
    TRY(conn_run(c, PS_SCAN, 4, vals, NULL, NULL, PGRES_TUPLES_OK, "scan failed", &r));
    coffer_err e = COFFER_OK;
    int rows = PQntuples(r);
    for (int i = 0; i < rows && e == COFFER_OK; i++) {
        /* Binary text is the key's bytes, and libpq ends every value with a zero byte. */
        const char *k = PQgetvalue(r, i, 0);
        e = fn(ctx, k, coffer_cursor_from(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1)));
        if (i == rows - 1) {
            snprintf(last, STORE_KEY_MAX + 1, "%s", k);
        }
    }
    *seen = (size_t)rows;
    PQclear(r);
    return e;
}

static coffer_err conn_scan(struct pg_conn *c, const char *prefix, const char *start_after, size_t limit,
                            store_scan_fn fn, void *ctx)
{
    char upper[STORE_KEY_MAX + 2];
    if (!store_prefix_upper_bound(prefix, upper)) {
        strcpy(upper, "\x7f");
    }
    /* The cursor lives on the heap: a callback may scan again on this thread, and two key-sized
     * buffers per level would make deep nesting a stack hazard. */
    char *after = malloc(STORE_KEY_MAX + 1);
    if (after == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    snprintf(after, STORE_KEY_MAX + 1, "%s", start_after);
    coffer_err e = COFFER_OK;
    size_t done = 0;
    for (;;) {
        size_t page = STORE_PG_SCAN_PAGE;
        if (limit != 0 && limit - done < page) {
            page = limit - done;
        }
        size_t seen = 0;
        e = conn_scan_page(c, prefix, after, upper, page, fn, ctx, &seen, after);
        done += seen;
        if (e != COFFER_OK || seen < page || (limit != 0 && done == limit)) {
            break;
        }
    }
    free(after);
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * Store methods
 * ------------------------------------------------------------------------------------------- */

static coffer_err pg_get(struct store *base, const char *key, coffer_buf *value)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *c = NULL;
    TRY(conn_get(s, &c));
    coffer_err e = conn_read(c, key, value);
    if (e == COFFER_ERR_STORE && conn_retry(c)) {
        e = conn_read(c, key, value);
    }
    return e;
}

/* The retry is safe only while no row has reached the callback. */
struct scan_guard {
    store_scan_fn fn;
    void *ctx;
    bool called;
};

static coffer_err scan_guard_fn(void *ctx, const char *key, coffer_cursor value)
{
    struct scan_guard *g = ctx;
    g->called = true;
    return g->fn(g->ctx, key, value);
}

static coffer_err pg_scan(struct store *base, const char *prefix, const char *start_after, size_t limit,
                          store_scan_fn fn, void *ctx)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *c = NULL;
    TRY(conn_get(s, &c));
    struct scan_guard g = {.fn = fn, .ctx = ctx};
    coffer_err e = conn_scan(c, prefix, start_after, limit, scan_guard_fn, &g);
    if (e == COFFER_ERR_STORE && !g.called && conn_retry(c)) {
        e = conn_scan(c, prefix, start_after, limit, scan_guard_fn, &g);
    }
    return e;
}

static coffer_err conn_begin(struct pg_conn *c)
{
    PGresult *r = PQexec(c->db, PG_BEGIN_SQL);
    coffer_err e = COFFER_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        e = pg_fail(c->db, r, "cannot begin a transaction");
        PQclear(r);
        /* BEGIN may have succeeded and the lock wait failed (lock_timeout): leave no
         * transaction open on the connection. */
        if (!conn_broken(c) && PQtransactionStatus(c->db) != PQTRANS_IDLE) {
            PQclear(PQexec(c->db, "ROLLBACK"));
        }
        return e;
    }
    PQclear(r);
    return COFFER_OK;
}

static coffer_err pg_txn_begin(struct store *base, struct store_txn **out)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_conn *c = NULL;
    TRY(conn_get(s, &c));
    if (c->in_txn) {
        return coffer_fail(COFFER_ERR_USAGE, "this thread already has a transaction open");
    }
    struct pg_txn *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err e = conn_begin(c);
    if (e == COFFER_ERR_STORE && conn_retry(c)) {
        e = conn_begin(c);
    }
    if (e != COFFER_OK) {
        free(t);
        return e;
    }
    c->in_txn = true;
    t->conn = c;
    *out = &t->base;
    return COFFER_OK;
}

static coffer_err pg_txn_get(struct store_txn *base, const char *key, coffer_buf *value)
{
    struct pg_txn *t = (struct pg_txn *)base;
    return conn_read(t->conn, key, value);
}

/* Remembers a written key for the notification sent at commit. */
static coffer_err txn_note_change(struct pg_txn *t, const char *key)
{
    if (t->changed_all) {
        return COFFER_OK;
    }
    if (t->n_changed == PG_NOTIFY_KEYS_MAX) {
        t->changed_all = true;
        coffer_buf_free(&t->changed);
        return COFFER_OK;
    }
    if (t->n_changed > 0) {
        TRY(coffer_buf_append(&t->changed, "\n", 1));
    }
    TRY(coffer_buf_append_str(&t->changed, key));
    t->n_changed++;
    return COFFER_OK;
}

static coffer_err pg_txn_put(struct store_txn *base, const char *key, coffer_cursor value)
{
    struct pg_txn *t = (struct pg_txn *)base;
    /* The key as text, the value as binary bytea (its bytes, no escaping). */
    const char *vals[2] = {key, value.len ? (const char *)value.ptr : ""};
    const int lens[2] = {0, (int)value.len};
    const int fmts[2] = {0, 1};
    PGresult *r = NULL;
    TRY(conn_run(t->conn, PS_PUT, 2, vals, lens, fmts, PGRES_COMMAND_OK, "write failed", &r));
    PQclear(r);
    return txn_note_change(t, key);
}

static coffer_err pg_txn_delete(struct store_txn *base, const char *key)
{
    struct pg_txn *t = (struct pg_txn *)base;
    const char *vals[1] = {key};
    PGresult *r = NULL;
    TRY(conn_run(t->conn, PS_DEL, 1, vals, NULL, NULL, PGRES_COMMAND_OK, "delete failed", &r));
    bool none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key");
    }
    return txn_note_change(t, key);
}

static coffer_err pg_txn_scan(struct store_txn *base, const char *prefix, const char *start_after,
                              size_t limit, store_scan_fn fn, void *ctx)
{
    struct pg_txn *t = (struct pg_txn *)base;
    return conn_scan(t->conn, prefix, start_after, limit, fn, ctx);
}

static void txn_finish(struct pg_txn *t)
{
    t->conn->in_txn = false;
    coffer_buf_free(&t->changed);
    free(t);
}

/* Bumps the change counter and queues the notification of every key written; the server sends
 * them when (and only if) the transaction commits. */
static coffer_err txn_notify(struct pg_txn *t)
{
    if (t->n_changed == 0 && !t->changed_all) {
        return COFFER_OK;
    }
    if (!t->changed_all) {
        TRY(coffer_buf_nul_terminate(&t->changed));
    }
    const char *vals[1] = {t->changed_all ? "*" : (const char *)t->changed.data};
    PGresult *r = NULL;
    TRY(conn_run(t->conn, PS_NOTIFY, 1, vals, NULL, NULL, PGRES_TUPLES_OK, "change notification failed", &r));
    PQclear(r);
    return COFFER_OK;
}

static void pg_txn_abort(struct store_txn *base)
{
    struct pg_txn *t = (struct pg_txn *)base;
    struct pg_conn *c = t->conn;
    if (!conn_broken(c)) {
        PGresult *r = PQexec(c->db, "ROLLBACK");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            /* A session that cannot roll back cannot be trusted with the next transaction. */
            (void)pg_fail(c->db, r, "rollback failed");
            conn_drop_db(c);
        }
        PQclear(r);
    }
    txn_finish(t);
}

static coffer_err pg_txn_commit(struct store_txn *base)
{
    struct pg_txn *t = (struct pg_txn *)base;
    struct pg_conn *c = t->conn;
    coffer_err e = txn_notify(t);
    if (e != COFFER_OK) {
        if (!conn_broken(c) && PQtransactionStatus(c->db) != PQTRANS_IDLE) {
            PQclear(PQexec(c->db, "ROLLBACK"));
        }
        txn_finish(t);
        return e;
    }
    PGresult *r = PQexec(c->db, "COMMIT");
    /* A transaction in which a statement failed answers COMMIT with "ROLLBACK": not a commit. */
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        e = pg_fail(c->db, r, "commit failed");
    } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        e = coffer_fail(COFFER_ERR_STORE, "the transaction was rolled back after a failed statement");
    }
    PQclear(r);
    if (e != COFFER_OK && !conn_broken(c) && PQtransactionStatus(c->db) != PQTRANS_IDLE) {
        PQclear(PQexec(c->db, "ROLLBACK"));
    }
    txn_finish(t);
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * The scheduler lease: a session advisory lock on a connection of its own
 * ------------------------------------------------------------------------------------------- */

/* Runs a one-row, one-column query; *value is whether it answered true. */
static coffer_err lease_query(PGconn *db, const char *sql, bool *value)
{
    PGresult *r = PQexec(db, sql);
    coffer_err e = COFFER_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        e = pg_fail(db, r, "scheduler lease check failed");
    } else {
        *value = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    }
    PQclear(r);
    return e;
}

static bool pg_scheduler_lease(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    bool held = false;
    pthread_mutex_lock(&s->lease_mu);
    if (s->lease_held) {
        /* Still ours only while the session lives: a server restart or a terminated session
         * took the lock with it, and another node may hold it now. */
        bool alive = false;
        if (PQstatus(s->lease_db) == CONNECTION_OK &&
            lease_query(s->lease_db, "SELECT true", &alive) == COFFER_OK && alive) {
            held = true;
            goto out;
        }
        log_warn(
            "store: postgres: lost the scheduler lease; scheduled jobs stop here until it is taken again");
        s->lease_held = false;
    }
    if (s->lease_db == NULL || PQstatus(s->lease_db) != CONNECTION_OK) {
        PQfinish(s->lease_db);
        s->lease_db = NULL;
        if (db_connect(s->url, &s->lease_db) != COFFER_OK) {
            goto out;
        }
    }
    if (lease_query(s->lease_db, "SELECT pg_try_advisory_lock(" PG_LOCK_CLASS "," PG_LOCK_SCHEDULER ")",
                    &held) != COFFER_OK) {
        held = false;
        goto out;
    }
    if (held) {
        log_info("store: postgres: this node holds the scheduler lease and runs the scheduled jobs");
        s->lease_held = true;
    }
out:
    pthread_mutex_unlock(&s->lease_mu);
    return held;
}

/* ---------------------------------------------------------------------------------------------
 * The change feed: LISTEN on a connection of its own, poll the counter, tell the watchers
 * ------------------------------------------------------------------------------------------- */

/* Calls the watchers of `key` (NULL: every watcher, anything may have changed). */
static void feed_dispatch(struct pg_store *s, const char *key)
{
    pthread_mutex_lock(&s->watch_mu);
    for (size_t i = 0; i < s->n_watches; i++) {
        const struct pg_watch *w = &s->watches[i];
        if (key == NULL || strncmp(key, w->prefix, strlen(w->prefix)) == 0) {
            w->fn(w->ctx, key);
        }
    }
    pthread_mutex_unlock(&s->watch_mu);
}

/* Waits until db's socket is readable or `ms` passed; false on a timeout or an error. */
static bool feed_wait(PGconn *db, int ms)
{
    struct pollfd pfd = {.fd = PQsocket(db), .events = POLLIN};
    if (pfd.fd < 0) {
        return false;
    }
    int n = poll(&pfd, 1, ms);
    return n > 0 || (n < 0 && errno == EINTR);
}

/*
 * Handles the notifications libpq has read. `seen` is the last counter value accounted for:
 * a notification that skips one means another was lost, and everything is dropped.
 */
static void feed_drain(struct pg_store *s, PGconn *db, long long *seen)
{
    PGnotify *n;
    while ((n = PQnotifies(db)) != NULL) {
        char *end = NULL;
        long long v = strtoll(n->extra, &end, 10);
        const char *key = end != NULL && *end == ' ' ? end + 1 : NULL;
        if (key == NULL || strcmp(key, "*") == 0 || v > *seen + 1) {
            feed_dispatch(s, NULL);
        } else {
            feed_dispatch(s, key);
        }
        if (v > *seen) {
            *seen = v;
        }
        PQfreemem(n);
    }
}

/* The counter's value, within PG_FEED_QUERY_MS (a connection that stopped answering is dead
 * even before TCP says so). Notifications that arrive meanwhile are kept for feed_drain. */
static coffer_err feed_counter(PGconn *db, long long *out)
{
    if (!PQsendQuery(db, "SELECT n FROM coffer_changes")) {
        return pg_fail(db, NULL, "change counter poll failed");
    }
    uint64_t deadline = coffer_monotonic_ns() + (uint64_t)PG_FEED_QUERY_MS * 1000000u;
    while (PQisBusy(db)) {
        uint64_t now = coffer_monotonic_ns();
        if (now >= deadline || !feed_wait(db, (int)((deadline - now) / 1000000u) + 1) ||
            !PQconsumeInput(db)) {
            return coffer_fail(COFFER_ERR_STORE, "change counter poll timed out");
        }
    }
    coffer_err e = COFFER_OK;
    bool got = false;
    PGresult *r;
    while ((r = PQgetResult(db)) != NULL) {
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            e = pg_fail(db, r, "change counter poll failed");
        } else {
            *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            got = true;
        }
        PQclear(r);
    }
    if (e == COFFER_OK && !got) {
        e = coffer_fail(COFFER_ERR_STORE, "change counter poll failed");
    }
    return e;
}

/* Connects, LISTENs, then reads the counter: a change committed after the read is notified. */
static coffer_err feed_connect(struct pg_store *s, PGconn **out, long long *seen)
{
    PGconn *db = NULL;
    TRY(db_connect(s->url, &db));
    coffer_err e = db_exec(db, "LISTEN " PG_FEED_CHANNEL, "cannot listen for changes");
    if (e == COFFER_OK) {
        e = feed_counter(db, seen);
    }
    if (e != COFFER_OK) {
        PQfinish(db);
        return e;
    }
    *out = db;
    return COFFER_OK;
}

static void feed_sleep(struct pg_store *s, int ms)
{
    for (int left = ms; left > 0 && !atomic_load(&s->feed_stop); left -= PG_FEED_WAIT_MS) {
        struct timespec ts = {0, (long)(left < PG_FEED_WAIT_MS ? left : PG_FEED_WAIT_MS) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *feed_main(void *arg)
{
    struct pg_store *s = arg;
    PGconn *db = NULL;
    long long seen = 0, suspect = 0; /* suspect: a counter value polled but not yet notified */
    uint64_t next_poll = 0;
    bool was_lost = false;
    while (!atomic_load(&s->feed_stop)) {
        if (db == NULL) {
            if (feed_connect(s, &db, &seen) != COFFER_OK) {
                feed_sleep(s, PG_FEED_RETRY_MS);
                continue;
            }
            if (was_lost) {
                log_info("store: postgres: change feed reconnected");
            }
            /* Whatever changed while nobody listened is unknown. */
            feed_dispatch(s, NULL);
            suspect = 0;
            next_poll = coffer_monotonic_ns() + (uint64_t)PG_FEED_POLL_MS * 1000000u;
        }
        bool ok = true;
        if (feed_wait(db, PG_FEED_WAIT_MS)) {
            ok = PQconsumeInput(db) != 0;
        }
        if (ok) {
            feed_drain(s, db, &seen);
        }
        if (ok && coffer_monotonic_ns() >= next_poll) {
            long long v = 0;
            ok = feed_counter(db, &v) == COFFER_OK;
            if (ok) {
                feed_drain(s, db, &seen); /* what arrived with the answer */
                if (suspect > 0 && seen < suspect) {
                    /* Committed a poll ago and still not notified: lost. */
                    feed_dispatch(s, NULL);
                    seen = v;
                    suspect = 0;
                } else {
                    /* A commit's notifications may reach us just after its counter does: only
                     * one the next poll still misses counts as lost. */
                    suspect = v > seen ? v : 0;
                }
            }
            next_poll = coffer_monotonic_ns() + (uint64_t)PG_FEED_POLL_MS * 1000000u;
        }
        if (!ok || PQstatus(db) != CONNECTION_OK) {
            log_warn(
                "store: postgres: change feed lost its connection; caches are dropped and it reconnects");
            PQfinish(db);
            db = NULL;
            was_lost = true;
            feed_dispatch(s, NULL); /* nothing cached can be trusted while nobody listens */
        }
    }
    PQfinish(db);
    return NULL;
}

static coffer_err pg_watch(struct store *base, const char *prefix, store_change_fn fn, void *ctx)
{
    struct pg_store *s = (struct pg_store *)base;
    coffer_err rc = COFFER_OK;
    char *p = strdup(prefix);
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&s->watch_mu);
    if (s->n_watches == s->cap_watches) {
        size_t cap = s->cap_watches ? s->cap_watches * 2 : 8;
        struct pg_watch *w = realloc(s->watches, cap * sizeof(*w));
        if (w == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        s->watches = w;
        s->cap_watches = cap;
    }
    if (!s->feed_started) {
        if (pthread_create(&s->feed, NULL, feed_main, s) != 0) {
            FAIL_OUT(COFFER_ERR_INTERNAL, "cannot start the change feed");
        }
        s->feed_started = true;
    }
    s->watches[s->n_watches++] = (struct pg_watch){.prefix = p, .fn = fn, .ctx = ctx};
    p = NULL;
out:
    pthread_mutex_unlock(&s->watch_mu);
    free(p);
    return rc;
}

static void pg_unwatch(struct store *base, store_change_fn fn, void *ctx)
{
    struct pg_store *s = (struct pg_store *)base;
    pthread_mutex_lock(&s->watch_mu);
    for (size_t i = 0; i < s->n_watches;) {
        if (s->watches[i].fn == fn && s->watches[i].ctx == ctx) {
            free(s->watches[i].prefix);
            s->watches[i] = s->watches[--s->n_watches];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&s->watch_mu);
}

static void pg_destroy(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    if (s->feed_started) {
        atomic_store(&s->feed_stop, true);
        pthread_join(s->feed, NULL);
    }
    for (size_t i = 0; i < s->n_watches; i++) {
        free(s->watches[i].prefix);
    }
    free(s->watches);
    pthread_mutex_destroy(&s->watch_mu);
    PQfinish(s->lease_db); /* ends the session: another node may take the lease at once */
    pthread_mutex_destroy(&s->lease_mu);
    /* Deleting the key first means no thread-exit destructor runs on our connections later. */
    pthread_key_delete(s->tls);
    struct pg_conn *c = s->conns;
    while (c != NULL) {
        struct pg_conn *next = c->next;
        conn_drop_db(c);
        free(c);
        c = next;
    }
    pthread_mutex_destroy(&s->conns_mu);
    if (s->url != NULL) {
        coffer_secure_zero(s->url, strlen(s->url));
    }
    free(s->url);
    free(s);
}

static const struct store_vt pg_vt = {
    .vt_size = sizeof(struct store_vt),
    .name = "postgres",
    .get = pg_get,
    .scan = pg_scan,
    .txn_begin = pg_txn_begin,
    .txn_get = pg_txn_get,
    .txn_put = pg_txn_put,
    .txn_delete = pg_txn_delete,
    .txn_scan = pg_txn_scan,
    .txn_commit = pg_txn_commit,
    .txn_abort = pg_txn_abort,
    .destroy = pg_destroy,
    .scheduler_lease = pg_scheduler_lease,
    .watch = pg_watch,
    .unwatch = pg_unwatch,
};

/* ---------------------------------------------------------------------------------------------
 * Open: connect, migrate under the migration lock
 * ------------------------------------------------------------------------------------------- */

static coffer_err read_schema_version(PGconn *db, long *out)
{
    PGresult *r = PQexec(db, "SELECT version FROM coffer_schema FOR UPDATE");
    coffer_err e = COFFER_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        e = pg_fail(db, r, "cannot read the schema version");
    } else {
        *out = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    }
    PQclear(r);
    return e;
}

/* Applies migrations [version, n) in one transaction: all or nothing. The caller holds the
 * migration lock. */
static coffer_err migrate_locked(PGconn *db, const struct store_migration *m, size_t n)
{
    coffer_err rc = COFFER_OK;
    bool open = false;
    TRY_OUT(db_exec(db, "BEGIN", "cannot begin the migration"));
    open = true;
    TRY_OUT(
        db_exec(db,
                "CREATE TABLE IF NOT EXISTS coffer_schema(one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                "version integer NOT NULL); "
                "INSERT INTO coffer_schema(version) VALUES(0) ON CONFLICT DO NOTHING; "
                "CREATE TABLE IF NOT EXISTS coffer_changes(one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                "n bigint NOT NULL); "
                "INSERT INTO coffer_changes(n) VALUES(0) ON CONFLICT DO NOTHING",
                "cannot create the schema version table"));
    long v = 0;
    TRY_OUT(read_schema_version(db, &v));
    if (v < 0 || (size_t)v > n) {
        FAIL_OUT(COFFER_ERR_STORE, "database schema version %ld is newer than this build knows (%zu)", v, n);
    }
    for (size_t i = (size_t)v; i < n; i++) {
        log_info("store: applying schema migration %zu (%s)", i + 1, m[i].name);
        TRY_OUT(db_exec(db, m[i].sql, "schema migration failed"));
    }
    if ((size_t)v < n) {
        char sql[64];
        snprintf(sql, sizeof(sql), "UPDATE coffer_schema SET version = %zu", n);
        TRY_OUT(db_exec(db, sql, "cannot record the schema version"));
    }
    TRY_OUT(db_exec(db, "COMMIT", "cannot commit the migration"));
    open = false;
out:
    if (open) {
        PQclear(PQexec(db, "ROLLBACK"));
    }
    return rc;
}

static coffer_err migrate(PGconn *db, const struct store_migration *m, size_t n)
{
    /* A session lock, not a transaction one: it is held across the migration's own transaction
     * and released explicitly (or by the server, should this process die). */
    TRY(db_exec(db, "SELECT pg_advisory_lock(" PG_LOCK_CLASS "," PG_LOCK_MIGRATE ")",
                "cannot take the migration lock"));
    coffer_err rc = migrate_locked(db, m, n);
    coffer_err un = db_exec(db, "SELECT pg_advisory_unlock(" PG_LOCK_CLASS "," PG_LOCK_MIGRATE ")",
                            "cannot release the migration lock");
    return rc != COFFER_OK ? rc : un;
}

coffer_err store_pg_open_with(const char *url, const struct store_migration *migrations, size_t n,
                              store **out)
{
    ENSURE_REF(url);
    ENSURE_REF(out);
    coffer_err rc = COFFER_OK;
    PGconn *db = NULL;
    struct pg_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    s->base.vt = &pg_vt;
    pthread_mutex_init(&s->conns_mu, NULL);
    pthread_mutex_init(&s->lease_mu, NULL);
    pthread_mutex_init(&s->watch_mu, NULL);
    if (pthread_key_create(&s->tls, conn_thread_exit) != 0) {
        pthread_mutex_destroy(&s->conns_mu);
        pthread_mutex_destroy(&s->lease_mu);
        pthread_mutex_destroy(&s->watch_mu);
        free(s);
        return coffer_fail(COFFER_ERR_NOMEM, "cannot create a thread key");
    }
    s->url = strdup(url);
    if (s->url == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(db_connect(url, &db));
    TRY_OUT(migrate(db, migrations, n));
    /* Keep the migration connection as this thread's connection. */
    struct pg_conn *c = NULL;
    rc = conn_attach(s, db, &c);
    db = NULL; /* conn_attach owns it now, even on failure */
    if (rc != COFFER_OK) {
        goto out;
    }
    *out = &s->base;
    s = NULL;
out:
    PQfinish(db);
    if (s != NULL) {
        pg_destroy(&s->base);
    }
    return rc;
}

coffer_err store_pg_open(const char *url, store **out)
{
    return store_pg_open_with(url, pg_default_migrations,
                              sizeof(pg_default_migrations) / sizeof(pg_default_migrations[0]), out);
}
