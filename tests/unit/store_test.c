/*
 * Unit tests for src/store: the same table of behaviour tests runs over the SQLite and the
 * in-memory backend (CRUD, scan bounds and order, transactions, concurrent writers), then
 * SQLite-only tests cover durability across kill -9, schema migrations and file permissions,
 * and the fault-injection wrapper is checked on its own.
 *
 * With COFFER_TEST_PG_URL set (tests/integration/pg_cluster.py run -- store_test, the CTest
 * entry store_test_pg), the same behaviour table runs over PostgreSQL instead, followed by the
 * PostgreSQL-only tests: migrations under the migration lock, writers on two stores (two nodes)
 * serialised, and reconnection after the server ends the sessions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_fault.h"
#include "store/store_internal.h"

struct fixture {
    store *st;
    char dir[64];
    char path[128];
    bool sqlite;
};

static int setup_sqlite(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/coffer-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/coffer.db", f->dir);
    char url[160];
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(store_open(url, &f->st), COFFER_OK);
    assert_string_equal(store_backend_name(f->st), "sqlite");
    f->sqlite = true;
    *state = f;
    return 0;
}

/* The test's own connection, for what the store does not expose: emptying the table between
 * tests, making schemas, ending the store's sessions. */
static PGconn *pg_admin(void)
{
    PGconn *db = PQconnectdb(getenv("COFFER_TEST_PG_URL"));
    assert_int_equal(PQstatus(db), CONNECTION_OK);
    return db;
}

static void pg_admin_exec(const char *sql)
{
    PGconn *db = pg_admin();
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    }
    PQclear(r);
    PQfinish(db);
}

static long pg_admin_long(const char *sql)
{
    PGconn *db = pg_admin();
    PGresult *r = PQexec(db, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(db);
    return v;
}

static int setup_pg(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(store_open(getenv("COFFER_TEST_PG_URL"), &f->st), COFFER_OK);
    assert_string_equal(store_backend_name(f->st), "postgres");
    pg_admin_exec("TRUNCATE coffer_kv");
    *state = f;
    return 0;
}

static int setup_mem(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(store_open("mem:", &f->st), COFFER_OK);
    assert_string_equal(store_backend_name(f->st), "mem");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    if (f->sqlite) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
    }
    free(f);
    return 0;
}

static void put1(store *st, const char *key, const char *val)
{
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, key, coffer_cursor_from_str(val)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
}

static void check_value(store *st, const char *key, const char *val)
{
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_get(st, key, &b), COFFER_OK);
    assert_int_equal(b.len, strlen(val));
    assert_memory_equal(b.data, val, b.len);
    coffer_buf_free(&b);
}

static void expect_absent(store *st, const char *key)
{
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_get(st, key, &b), COFFER_ERR_NOT_FOUND);
    assert_int_equal(b.len, 0);
    coffer_buf_free(&b);
}

/* ---------------------------------------------------------------------------------------------
 * Behaviour shared by every backend
 * ------------------------------------------------------------------------------------------- */

static void test_crud(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    expect_absent(st, "k/1");
    put1(st, "k/1", "one");
    check_value(st, "k/1", "one");
    put1(st, "k/1", "uno");
    check_value(st, "k/1", "uno");

    /* store_get appends */
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(coffer_buf_append_str(&b, "x:"), COFFER_OK);
    assert_int_equal(store_get(st, "k/1", &b), COFFER_OK);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "x:uno", 5);
    coffer_buf_free(&b);

    /* empty and binary values */
    store_txn *t = NULL;
    uint8_t bin[] = {0, 1, 0xff, 0, 7};
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "k/empty", coffer_cursor_from(NULL, 0)), COFFER_OK);
    assert_int_equal(store_txn_put(t, "k/bin", coffer_cursor_from(bin, sizeof(bin))), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    check_value(st, "k/empty", "");
    assert_int_equal(store_get(st, "k/bin", &b), COFFER_OK);
    assert_int_equal(b.len, sizeof(bin));
    assert_memory_equal(b.data, bin, sizeof(bin));
    coffer_buf_free(&b);

    /* delete */
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "k/1"), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "k/1"), COFFER_ERR_NOT_FOUND);
    assert_int_equal(store_txn_delete(t, "k/never"), COFFER_ERR_NOT_FOUND);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    expect_absent(st, "k/1");
    check_value(st, "k/empty", "");
}

static void test_invalid_input(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    coffer_buf b = COFFER_BUF_INIT;
    char longkey[STORE_KEY_MAX + 2];
    memset(longkey, 'a', sizeof(longkey));
    longkey[STORE_KEY_MAX + 1] = '\0';

    assert_int_equal(store_get(st, "", &b), COFFER_ERR_USAGE);
    assert_int_equal(store_get(st, NULL, &b), COFFER_ERR_USAGE);
    assert_int_equal(store_get(st, longkey, &b), COFFER_ERR_USAGE);
    assert_int_equal(store_get(st, "bad\nkey", &b), COFFER_ERR_USAGE);
    assert_int_equal(store_get(st, "bad\x80key", &b), COFFER_ERR_USAGE);

    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    uint8_t *big = calloc(1, STORE_VALUE_MAX + 1);
    assert_int_equal(store_txn_put(t, "k", coffer_cursor_from(big, STORE_VALUE_MAX + 1)), COFFER_ERR_USAGE);
    /* exactly at the limits is fine */
    assert_int_equal(store_txn_put(t, "k", coffer_cursor_from(big, STORE_VALUE_MAX)), COFFER_OK);
    longkey[STORE_KEY_MAX] = '\0';
    assert_int_equal(store_txn_put(t, longkey, coffer_cursor_from_str("v")), COFFER_OK);
    assert_int_equal(store_txn_put(t, "tab\tkey", coffer_cursor_from_str("v")), COFFER_ERR_USAGE);
    assert_int_equal(store_txn_delete(t, ""), COFFER_ERR_USAGE);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    free(big);
    assert_int_equal(store_get(st, "k", &b), COFFER_OK);
    assert_int_equal(b.len, STORE_VALUE_MAX);
    coffer_buf_free(&b);
    check_value(st, longkey, "v");
}

struct collect {
    char keys[32][64];
    char vals[32][64];
    size_t n;
    size_t stop_at; /* 0 = never; else return STORE_SCAN_STOP after this many */
    coffer_err fail_with;
};

static coffer_err collect_fn(void *ctx, const char *key, coffer_cursor value)
{
    struct collect *c = ctx;
    assert_true(c->n < 32);
    snprintf(c->keys[c->n], 64, "%s", key);
    snprintf(c->vals[c->n], 64, "%.*s", (int)value.len, (const char *)value.ptr);
    c->n++;
    if (c->fail_with != COFFER_OK) {
        return c->fail_with;
    }
    if (c->stop_at != 0 && c->n == c->stop_at) {
        return STORE_SCAN_STOP;
    }
    return COFFER_OK;
}

static void expect_keys(const struct collect *c, const char *const *want, size_t n)
{
    assert_int_equal(c->n, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(c->keys[i], want[i]);
    }
}

#define EXPECT_KEYS(c, ...)                                                                                  \
    do {                                                                                                     \
        static const char *const want_[] = {__VA_ARGS__};                                                    \
        expect_keys((c), want_, sizeof(want_) / sizeof(want_[0]));                                           \
    } while (0)

static void seed_scan_keys(store *st)
{
    /* Inserted out of order; "a0" is the exclusive upper bound of prefix "a/" and must not show. */
    static const char *const keys[] = {"a/2", "b/x", "a0", "a/10", "a", "a/~", "a/1", "a/", "0"};
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_int_equal(store_txn_put(t, keys[i], coffer_cursor_from_str(keys[i])), COFFER_OK);
    }
    assert_int_equal(store_txn_commit(t), COFFER_OK);
}

static void test_scan(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    seed_scan_keys(st);
    struct collect c = {0};

    assert_int_equal(store_scan(st, "a/", NULL, 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a/", "a/1", "a/10", "a/2", "a/~");
    assert_string_equal(c.vals[2], "a/10");

    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, NULL, NULL, 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "0", "a", "a/", "a/1", "a/10", "a/2", "a/~", "a0", "b/x");

    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a", "", 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a", "a/", "a/1", "a/10", "a/2", "a/~", "a0");

    /* a prefix ending in the highest printable byte */
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a/~", NULL, 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a/~");

    /* start_after: exclusive, inside, before and beyond the range */
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a/", "a/10", 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a/2", "a/~");
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a/", "a/0", 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a/1", "a/10", "a/2", "a/~");
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a/", "0", 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a/", "a/1", "a/10", "a/2", "a/~");
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a/", "a0", 0, collect_fn, &c), COFFER_OK);
    assert_int_equal(c.n, 0);

    /* no match */
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "zz", NULL, 0, collect_fn, &c), COFFER_OK);
    assert_int_equal(c.n, 0);

    /* limit */
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_scan(st, "a/", NULL, 2, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "a/", "a/1");

    /* STORE_SCAN_STOP ends early with success; any other error propagates */
    memset(&c, 0, sizeof(c));
    c.stop_at = 3;
    assert_int_equal(store_scan(st, "", NULL, 0, collect_fn, &c), COFFER_OK);
    assert_int_equal(c.n, 3);
    memset(&c, 0, sizeof(c));
    c.fail_with = COFFER_ERR_VALIDATION;
    assert_int_equal(store_scan(st, "a/", NULL, 0, collect_fn, &c), COFFER_ERR_VALIDATION);
    assert_int_equal(c.n, 1);

    assert_int_equal(store_scan(st, "a/", NULL, 0, NULL, NULL), COFFER_ERR_USAGE);
}

/* Paging with limit 1 and start_after = last key visits every record once, in order. */
static void test_scan_paging(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    seed_scan_keys(st);
    struct collect all = {0};
    char last[64] = "";
    for (int guard = 0; guard < 20; guard++) {
        struct collect page = {0};
        assert_int_equal(store_scan(st, "a", last, 1, collect_fn, &page), COFFER_OK);
        if (page.n == 0) {
            break;
        }
        assert_int_equal(page.n, 1);
        strcpy(all.keys[all.n++], page.keys[0]);
        strcpy(last, page.keys[0]);
    }
    EXPECT_KEYS(&all, "a", "a/", "a/1", "a/10", "a/2", "a/~", "a0");
}

/* A scan callback may read and scan again on the same thread. */
static coffer_err nested_fn(void *ctx, const char *key, coffer_cursor value)
{
    store *st = ctx;
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_get(st, key, &b), COFFER_OK);
    assert_int_equal(b.len, value.len);
    coffer_buf_free(&b);
    struct collect c = {0};
    assert_int_equal(store_scan(st, key, NULL, 0, collect_fn, &c), COFFER_OK);
    assert_true(c.n >= 1);
    assert_string_equal(c.keys[0], key);
    return COFFER_OK;
}

static void test_scan_nested(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    seed_scan_keys(st);
    assert_int_equal(store_scan(st, "a/", NULL, 0, nested_fn, st), COFFER_OK);
}

static void *get_in_thread(void *p)
{
    store *st = p;
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = store_get(st, "t/new", &b);
    coffer_buf_free(&b);
    return (void *)(intptr_t)rc;
}

static void test_txn_read_your_writes(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    put1(st, "t/old", "old");
    put1(st, "t/gone", "gone");
    store_txn *t = NULL;
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "t/new", coffer_cursor_from_str("new")), COFFER_OK);
    assert_int_equal(store_txn_put(t, "t/old", coffer_cursor_from_str("changed")), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "t/gone"), COFFER_OK);

    assert_int_equal(store_txn_get(t, "t/new", &b), COFFER_OK);
    assert_memory_equal(b.data, "new", 3);
    coffer_buf_reset(&b);
    assert_int_equal(store_txn_get(t, "t/old", &b), COFFER_OK);
    assert_int_equal(b.len, 7);
    coffer_buf_reset(&b);
    assert_int_equal(store_txn_get(t, "t/gone", &b), COFFER_ERR_NOT_FOUND);

    struct collect c = {0};
    assert_int_equal(store_txn_scan(t, "t/", NULL, 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "t/new", "t/old");
    assert_string_equal(c.vals[1], "changed");
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_txn_scan(t, "t/", "t/new", 1, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "t/old");

    /* Another thread does not see uncommitted writes. */
    pthread_t th;
    void *res = NULL;
    assert_int_equal(pthread_create(&th, NULL, get_in_thread, st), 0);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_int_equal((coffer_err)(intptr_t)res, COFFER_ERR_NOT_FOUND);

    assert_int_equal(store_txn_commit(t), COFFER_OK);
    check_value(st, "t/new", "new");
    check_value(st, "t/old", "changed");
    expect_absent(st, "t/gone");
    coffer_buf_free(&b);
}

static void test_txn_abort(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    put1(st, "x/keep", "keep");
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "x/new", coffer_cursor_from_str("new")), COFFER_OK);
    assert_int_equal(store_txn_put(t, "x/keep", coffer_cursor_from_str("overwritten")), COFFER_OK);
    store_txn_abort(t);
    expect_absent(st, "x/new");
    check_value(st, "x/keep", "keep");

    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "x/keep"), COFFER_OK);
    store_txn_abort(t);
    check_value(st, "x/keep", "keep");
    store_txn_abort(NULL);

    /* After an abort the store takes new transactions. */
    put1(st, "x/after", "after");
    check_value(st, "x/after", "after");
}

struct hook_state {
    int calls;
    coffer_err answer;
};

static coffer_err hook_fn(void *ctx)
{
    struct hook_state *h = ctx;
    h->calls++;
    return h->answer;
}

/* A failing pre-commit hook aborts the transaction: nothing it wrote is visible. */
static void test_precommit_hook(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    put1(st, "h/keep", "keep");
    struct hook_state h = {.answer = COFFER_ERR_AUDIT};
    store_precommit_set(hook_fn, &h);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "h/new", coffer_cursor_from_str("new")), COFFER_OK);
    assert_int_equal(store_txn_put(t, "h/keep", coffer_cursor_from_str("overwritten")), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_ERR_AUDIT);
    assert_int_equal(h.calls, 1);
    expect_absent(st, "h/new");
    check_value(st, "h/keep", "keep");

    /* Once the hook agrees the commit goes through. */
    h.answer = COFFER_OK;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "h/new", coffer_cursor_from_str("new")), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(h.calls, 2);
    check_value(st, "h/new", "new");

    store_precommit_set(NULL, NULL);
    put1(st, "h/after", "after");
    assert_int_equal(h.calls, 2);
}

/* A wrapper's commit of its inner transaction is the same commit: the hook runs once. */
static void test_precommit_hook_once_through_a_wrapper(void **state)
{
    (void)state;
    store *inner = NULL, *st = NULL;
    assert_int_equal(store_open("mem:", &inner), COFFER_OK);
    assert_int_equal(store_fault_wrap(inner, &st), COFFER_OK);
    struct hook_state h = {.answer = COFFER_OK};
    store_precommit_set(hook_fn, &h);
    put1(st, "w/one", "one");
    assert_int_equal(h.calls, 1);
    h.answer = COFFER_ERR_AUDIT;
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "w/two", coffer_cursor_from_str("two")), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_ERR_AUDIT);
    assert_int_equal(h.calls, 2);
    store_precommit_set(NULL, NULL);
    expect_absent(st, "w/two");
    store_close(st);
}

#define WRITERS 4
#define INCREMENTS 60

static void *increment_worker(void *p)
{
    store *st = p;
    for (int i = 0; i < INCREMENTS; i++) {
        store_txn *t = NULL;
        coffer_buf b = COFFER_BUF_INIT;
        if (store_txn_begin(st, &t) != COFFER_OK) {
            return (void *)1;
        }
        unsigned long v = 0;
        coffer_err rc = store_txn_get(t, "counter", &b);
        if (rc == COFFER_OK) {
            char tmp[32] = {0};
            memcpy(tmp, b.data, b.len < 31 ? b.len : 31);
            v = strtoul(tmp, NULL, 10);
        } else if (rc != COFFER_ERR_NOT_FOUND) {
            store_txn_abort(t);
            return (void *)2;
        }
        coffer_buf_free(&b);
        char out[32];
        snprintf(out, sizeof(out), "%lu", v + 1);
        if (store_txn_put(t, "counter", coffer_cursor_from_str(out)) != COFFER_OK) {
            store_txn_abort(t);
            return (void *)3;
        }
        if (store_txn_commit(t) != COFFER_OK) {
            return (void *)4;
        }
        /* Plain reads interleave with the writers. */
        if (store_get(st, "counter", &b) != COFFER_OK) {
            return (void *)5;
        }
        coffer_buf_free(&b);
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, increment_worker, st), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        void *res = (void *)-1;
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
    }
    char want[16];
    snprintf(want, sizeof(want), "%d", WRITERS * INCREMENTS);
    check_value(st, "counter", want);
}

/* Plaintext records on a bare backend are the same records as the sealed-call ones. */
static void test_plain_records(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    store_txn *t = NULL;
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put_plain(t, "plain/marker", coffer_cursor_from_str("v1")), COFFER_OK);
    assert_int_equal(store_txn_get_plain(t, "plain/marker", &b), COFFER_OK);
    assert_int_equal(b.len, 2);
    coffer_buf_reset(&b);
    assert_int_equal(store_txn_get_plain(t, "plain/absent", &b), COFFER_ERR_NOT_FOUND);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(store_get_plain(st, "plain/marker", &b), COFFER_OK);
    assert_memory_equal(b.data, "v1", 2);
    coffer_buf_free(&b);
    check_value(st, "plain/marker", "v1");
    assert_int_equal(store_get_plain(st, "plain/absent", &b), COFFER_ERR_NOT_FOUND);
    coffer_buf_free(&b);
}

/* A backend only one process opens: that process runs the scheduled jobs. */
static void test_scheduler_lease_single(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    assert_true(store_scheduler_lease(st));
    assert_true(store_scheduler_lease(st));
    assert_false(store_scheduler_lease(NULL));
}

/* ---------------------------------------------------------------------------------------------
 * PostgreSQL only
 * ------------------------------------------------------------------------------------------- */

/* The test URL with the schema search path set to `schema` (created empty first). */
static void pg_schema_url(const char *schema, char *out, size_t n)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema, schema);
    pg_admin_exec(sql);
    const char *base = getenv("COFFER_TEST_PG_URL");
    snprintf(out, n, "%s%coptions=-csearch_path%%3D%s", base, strchr(base, '?') ? '&' : '?', schema);
}

static long pg_schema_version(const char *schema)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT version FROM %s.coffer_schema", schema);
    return pg_admin_long(sql);
}

static bool pg_table_exists(const char *schema, const char *table)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM information_schema.tables WHERE table_schema = '%s' AND table_name = '%s'",
             schema, table);
    return pg_admin_long(sql) == 1;
}

static void test_pg_migrations(void **state)
{
    (void)state;
    char url[512];
    pg_schema_url("coffer_mig", url, sizeof(url));
    static const struct store_migration m[] = {
        {"kv", "CREATE TABLE coffer_kv(key text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL)"},
        {"meta", "CREATE TABLE meta(k text PRIMARY KEY, v text); INSERT INTO meta VALUES('a', 'b')"},
        {"broken", "CREATE TABLE third(x int); CREATE TABLE coffer_kv(y int)"},
    };
    store *st = NULL;
    assert_int_equal(store_pg_open_with(url, m, 1, &st), COFFER_OK);
    put1(st, "m/1", "kept");
    store_close(st);
    assert_int_equal(pg_schema_version("coffer_mig"), 1);

    /* An existing database at version 1 gets migration 2 and keeps its data. */
    assert_int_equal(store_pg_open_with(url, m, 2, &st), COFFER_OK);
    check_value(st, "m/1", "kept");
    store_close(st);
    assert_int_equal(pg_schema_version("coffer_mig"), 2);
    assert_true(pg_table_exists("coffer_mig", "meta"));

    /* Reopening at the same version runs nothing (migration 2 again would fail). */
    assert_int_equal(store_pg_open_with(url, m, 2, &st), COFFER_OK);
    store_close(st);

    /* A failing migration rolls back completely: no version bump, no half-made table. */
    st = NULL;
    assert_int_equal(store_pg_open_with(url, m, 3, &st), COFFER_ERR_STORE);
    assert_null(st);
    assert_int_equal(pg_schema_version("coffer_mig"), 2);
    assert_false(pg_table_exists("coffer_mig", "third"));

    /* A build that knows fewer migrations refuses a newer database. */
    assert_int_equal(store_pg_open_with(url, m, 1, &st), COFFER_ERR_STORE);
    assert_null(st);
    pg_admin_exec("DROP SCHEMA coffer_mig CASCADE");
}

#define OPENERS 6

static const struct store_migration once_migrations[] = {
    {"kv", "CREATE TABLE coffer_kv(key text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL)"},
    /* Not idempotent: a second run fails, so every opener succeeding means it ran once. */
    {"once", "CREATE TABLE once(x int); INSERT INTO once VALUES(1)"},
};

static void *open_worker(void *p)
{
    store *st = NULL;
    coffer_err rc = store_pg_open_with(p, once_migrations, 2, &st);
    store_close(st);
    return (void *)(intptr_t)rc;
}

/* Nodes starting together on an empty database: one migrates, the others wait, all open. */
static void test_pg_concurrent_migration(void **state)
{
    (void)state;
    char url[512];
    pg_schema_url("coffer_race", url, sizeof(url));
    pthread_t th[OPENERS];
    for (int i = 0; i < OPENERS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, open_worker, url), 0);
    }
    for (int i = 0; i < OPENERS; i++) {
        void *res = (void *)-1;
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_int_equal((coffer_err)(intptr_t)res, COFFER_OK);
    }
    assert_int_equal(pg_schema_version("coffer_race"), 2);
    assert_int_equal(pg_admin_long("SELECT count(*) FROM coffer_race.once"), 1);
    pg_admin_exec("DROP SCHEMA coffer_race CASCADE");
}

/* Two stores on one database are two nodes: their writers are serialised by the server, so
 * read-increment-write from both never loses an update. */
static void test_pg_two_nodes_serialised(void **state)
{
    store *a = ((struct fixture *)*state)->st;
    store *b = NULL;
    assert_int_equal(store_open(getenv("COFFER_TEST_PG_URL"), &b), COFFER_OK);
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, increment_worker, i % 2 ? b : a), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        void *res = (void *)-1;
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
    }
    char want[16];
    snprintf(want, sizeof(want), "%d", WRITERS * INCREMENTS);
    check_value(a, "counter", want);
    check_value(b, "counter", want);
    store_close(b);
}

static void pg_kill_sessions(void)
{
    pg_admin_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cofferd' "
                  "AND pid <> pg_backend_pid()");
}

/* Stores on one database are nodes: one holds the lease at a time, another takes it over when
 * the holder closes or its session ends, and a holder notices when it lost it. */
static void test_pg_scheduler_lease(void **state)
{
    (void)state;
    const char *url = getenv("COFFER_TEST_PG_URL");
    store *x = NULL, *y = NULL, *z = NULL;
    assert_int_equal(store_open(url, &x), COFFER_OK);
    assert_int_equal(store_open(url, &y), COFFER_OK);
    assert_true(store_scheduler_lease(x));
    assert_false(store_scheduler_lease(y));
    assert_true(store_scheduler_lease(x));
    assert_false(store_scheduler_lease(y));

    /* The holder goes away: the server releases the lock as the session ends. */
    store_close(x);
    bool took = false;
    for (int i = 0; i < 100 && !took; i++) {
        took = store_scheduler_lease(y);
        if (!took) {
            usleep(20000);
        }
    }
    assert_true(took);

    /* The holder's session ends under it (a restart): it notices, and takes it again if free. */
    assert_int_equal(store_open(url, &z), COFFER_OK);
    assert_false(store_scheduler_lease(z));
    pg_kill_sessions();
    usleep(100000);
    assert_true(store_scheduler_lease(z) != store_scheduler_lease(y));
    store_close(y);
    store_close(z);
}

/* The server ends every session (as a restart does): reads and new transactions reconnect and
 * succeed; a transaction that lost its session fails and leaves nothing behind. */
static void test_pg_reconnect(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    put1(st, "r/1", "one");
    pg_kill_sessions();
    check_value(st, "r/1", "one");
    struct collect c = {0};
    pg_kill_sessions();
    assert_int_equal(store_scan(st, "r/", NULL, 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "r/1");
    pg_kill_sessions();
    put1(st, "r/2", "two");
    check_value(st, "r/2", "two");

    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "r/3", coffer_cursor_from_str("three")), COFFER_OK);
    pg_kill_sessions();
    coffer_err rc = store_txn_put(t, "r/4", coffer_cursor_from_str("four"));
    if (rc == COFFER_OK) {
        rc = store_txn_commit(t);
    } else {
        store_txn_abort(t);
    }
    assert_int_equal(rc, COFFER_ERR_STORE);
    expect_absent(st, "r/3");
    expect_absent(st, "r/4");
    put1(st, "r/5", "five");
    check_value(st, "r/5", "five");
}

/* A failed statement inside a transaction makes COMMIT a rollback: reported, not a success. */
static void test_pg_failed_statement_fails_commit(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    store_txn *t = NULL;
    pg_admin_exec("ALTER TABLE coffer_kv ADD CONSTRAINT short_values CHECK (length(value) < 5) NOT VALID");
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "e/1", coffer_cursor_from_str("one")), COFFER_OK);
    assert_int_equal(store_txn_put(t, "e/2", coffer_cursor_from_str("too long")), COFFER_ERR_STORE);
    assert_int_equal(store_txn_commit(t), COFFER_ERR_STORE);
    pg_admin_exec("ALTER TABLE coffer_kv DROP CONSTRAINT short_values");
    expect_absent(st, "e/1");
    put1(st, "e/3", "three");
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Nothing listening: a clear storage error, at once, not a hang. */
static void test_pg_unreachable(void **state)
{
    (void)state;
    store *st = NULL;
    double t0 = now_s();
    assert_int_equal(store_open("postgres://coffer@127.0.0.1:1/db?sslmode=disable", &st), COFFER_ERR_STORE);
    assert_null(st);
    assert_true(now_s() - t0 < 5.0);
}

/* ---------------------------------------------------------------------------------------------
 * SQLite only
 * ------------------------------------------------------------------------------------------- */

static void test_sqlite_reopen(void **state)
{
    struct fixture *f = *state;
    put1(f->st, "p/1", "persisted");
    store_close(f->st);
    f->st = NULL;
    assert_int_equal(store_open(f->path, &f->st), COFFER_OK); /* bare path form */
    check_value(f->st, "p/1", "persisted");

    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
}

/* A child commits then dies by SIGKILL without closing anything; the commit must be there. */
static void test_sqlite_durable_after_kill(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    f->st = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store *cs = NULL;
        if (store_open(f->path, &cs) != COFFER_OK) {
            _exit(10);
        }
        for (int i = 0; i < 20; i++) {
            char key[32];
            snprintf(key, sizeof(key), "d/%02d", i);
            store_txn *t = NULL;
            if (store_txn_begin(cs, &t) != COFFER_OK || store_txn_put(t, key, coffer_cursor_from_str("v")) ||
                store_txn_commit(t) != COFFER_OK) {
                _exit(11);
            }
        }
        kill(getpid(), SIGKILL);
        _exit(12);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_equal(store_open(f->path, &f->st), COFFER_OK);
    struct collect c = {0};
    assert_int_equal(store_scan(f->st, "d/", NULL, 0, collect_fn, &c), COFFER_OK);
    assert_int_equal(c.n, 20);
    assert_string_equal(c.keys[19], "d/19");
}

static int user_version(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static bool table_exists(const char *path, const char *name)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

static void test_sqlite_migrations(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    f->st = NULL;
    char path[160];
    snprintf(path, sizeof(path), "%s/mig.db", f->dir);

    static const struct store_migration m[] = {
        {"kv", "CREATE TABLE kv(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;"},
        {"meta", "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT); INSERT INTO meta VALUES('a', 'b');"},
        {"broken", "CREATE TABLE third(x); CREATE TABLE kv(y);"},
    };
    store *st = NULL;
    assert_int_equal(store_sqlite_open_with(path, m, 1, &st), COFFER_OK);
    put1(st, "m/1", "kept");
    store_close(st);
    assert_int_equal(user_version(path), 1);

    /* An existing file at version 1 gets migration 2 and keeps its data. */
    assert_int_equal(store_sqlite_open_with(path, m, 2, &st), COFFER_OK);
    check_value(st, "m/1", "kept");
    store_close(st);
    assert_int_equal(user_version(path), 2);
    assert_true(table_exists(path, "meta"));

    /* Reopening at the same version runs nothing. */
    assert_int_equal(store_sqlite_open_with(path, m, 2, &st), COFFER_OK);
    store_close(st);

    /* A failing migration rolls back completely: no version bump, no half-made table. */
    st = NULL;
    assert_int_equal(store_sqlite_open_with(path, m, 3, &st), COFFER_ERR_STORE);
    assert_null(st);
    assert_int_equal(user_version(path), 2);
    assert_false(table_exists(path, "third"));

    /* A build that knows fewer migrations refuses a newer file. */
    assert_int_equal(store_sqlite_open_with(path, m, 1, &st), COFFER_ERR_STORE);
    assert_null(st);

    /* The default list opens a fresh file and the production migrations are recorded. */
    assert_int_equal(store_open(f->path, &f->st), COFFER_OK);
    assert_true(user_version(f->path) >= 1);
}

static void test_nested_txn_refused(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    store_txn *t = NULL, *t2 = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_begin(st, &t2), COFFER_ERR_USAGE);
    assert_null(t2);
    store_txn_abort(t);
}

static void test_open_errors(void **state)
{
    store *st = NULL;
    assert_int_equal(store_open("mysql://nowhere/db", &st), COFFER_ERR_CONFIG);
    assert_int_equal(store_open("", &st), COFFER_ERR_CONFIG);
    assert_int_equal(store_open("sqlite:", &st), COFFER_ERR_CONFIG);
    assert_int_equal(store_open("/nonexistent-dir/x/coffer.db", &st), COFFER_ERR_STORE);
    assert_null(st);
    store_close(NULL);
}

static void test_upper_bound(void **state)
{
    char out[8];
    assert_true(store_prefix_upper_bound("ab", out));
    assert_string_equal(out, "ac");
    assert_true(store_prefix_upper_bound("a~", out));
    assert_string_equal(out, "a\x7f");
    assert_true(store_prefix_upper_bound("a\xff\xff", out));
    assert_string_equal(out, "b");
    assert_false(store_prefix_upper_bound("\xff", out));
    assert_false(store_prefix_upper_bound("", out));
}

/* ---------------------------------------------------------------------------------------------
 * Fault injection wrapper
 * ------------------------------------------------------------------------------------------- */

static void test_fault_wrapper(void **state)
{
    store *inner = NULL, *st = NULL;
    assert_int_equal(store_open("mem:", &inner), COFFER_OK);
    assert_int_equal(store_fault_wrap(inner, &st), COFFER_OK);
    assert_string_equal(store_backend_name(st), "fault");

    put1(st, "f/0", "zero"); /* disarmed: passes */

    /* Loop the same two-write transaction over N: it is all there or not at all. */
    for (int n = 0; n <= 3; n++) {
        store_fault_set(st, n);
        store_txn *t = NULL;
        assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
        coffer_err rc = store_txn_put(t, "f/a", coffer_cursor_from_str("a"));
        if (rc == COFFER_OK) {
            rc = store_txn_put(t, "f/b", coffer_cursor_from_str("b"));
        }
        if (rc == COFFER_OK) {
            rc = store_txn_commit(t);
        } else {
            store_txn_abort(t);
        }
        if (n < 3) {
            assert_int_equal(rc, COFFER_ERR_STORE);
            assert_int_equal(store_fault_failures(st), 1);
            expect_absent(st, "f/a");
            expect_absent(st, "f/b");
        } else {
            assert_int_equal(rc, COFFER_OK);
            assert_int_equal(store_fault_failures(st), 0);
            check_value(st, "f/a", "a");
            check_value(st, "f/b", "b");
        }
    }
    /* Reads pass through even when writes fail. */
    store_fault_set(st, 0);
    check_value(st, "f/0", "zero");
    struct collect c = {0};
    assert_int_equal(store_scan(st, "f/", NULL, 0, collect_fn, &c), COFFER_OK);
    EXPECT_KEYS(&c, "f/0", "f/a", "f/b");
    store_fault_set(st, -1);
    put1(st, "f/c", "c");
    store_fault_set(inner, 0); /* not a fault store: ignored */
    assert_int_equal(store_fault_failures(inner), 0);
    store_close(st); /* closes inner too */
}

/* store_copy: every record as stored, one transaction, a non-empty target refused unless told. */
static void copy_progress(void *ctx, const char *what, size_t n)
{
    (void)what;
    (void)n;
    (*(int *)ctx)++;
}

static void test_store_copy(void **state)
{
    store *src = ((struct fixture *)*state)->st;
    store *dst = NULL;
    assert_int_equal(store_open("mem:", &dst), COFFER_OK);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(src, &t), COFFER_OK);
    for (int i = 0; i < 1500; i++) {
        char k[32], v[32];
        snprintf(k, sizeof(k), "c/%04d", i);
        snprintf(v, sizeof(v), "value %d", i);
        assert_int_equal(store_txn_put(t, k, coffer_cursor_from_str(v)), COFFER_OK);
    }
    const uint8_t bin[] = {0, 1, 0xff, 0};
    assert_int_equal(store_txn_put(t, "c/bin", coffer_cursor_from(bin, sizeof(bin))), COFFER_OK);
    assert_int_equal(store_txn_put_plain(t, "seal/x", coffer_cursor_from_str("plain")), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);

    struct store_copy_stats stats;
    int calls = 0;
    assert_int_equal(store_copy(src, dst, false, copy_progress, &calls, &stats), COFFER_OK);
    assert_int_equal(stats.copied, 1502);
    assert_int_equal(stats.target_count, 1502);
    assert_int_equal(stats.verified, 1502);
    assert_true(calls >= 2);
    check_value(dst, "c/0042", "value 42");
    check_value(dst, "seal/x", "plain");
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_get(dst, "c/bin", &b), COFFER_OK);
    assert_int_equal(b.len, sizeof(bin));
    assert_memory_equal(b.data, bin, sizeof(bin));
    coffer_buf_free(&b);

    /* A target with records: refused, nothing written; with overwrite, copied over. */
    put1(dst, "other/1", "kept");
    put1(src, "c/new", "new");
    assert_int_equal(store_copy(src, dst, false, NULL, NULL, &stats), COFFER_ERR_CONFLICT);
    assert_int_equal(stats.target_before, 1503);
    expect_absent(dst, "c/new");
    assert_int_equal(store_copy(src, dst, true, NULL, NULL, &stats), COFFER_OK);
    check_value(dst, "c/new", "new");
    check_value(dst, "other/1", "kept");
    size_t n = 0;
    assert_int_equal(store_count(dst, "", &n), COFFER_OK);
    assert_int_equal(n, 1504);
    store_close(dst);
}

/* ---- the change feed ---- */

struct feed_log {
    pthread_mutex_t mu;
    char keys[64][64];
    int n_keys;
    int n_all; /* calls with key NULL */
};

static void feed_log_fn(void *ctx, const char *key)
{
    struct feed_log *l = ctx;
    pthread_mutex_lock(&l->mu);
    if (key == NULL) {
        l->n_all++;
    } else if (l->n_keys < 64) {
        snprintf(l->keys[l->n_keys++], sizeof(l->keys[0]), "%s", key);
    }
    pthread_mutex_unlock(&l->mu);
}

static void feed_log_reset(struct feed_log *l)
{
    pthread_mutex_lock(&l->mu);
    l->n_keys = 0;
    l->n_all = 0;
    pthread_mutex_unlock(&l->mu);
}

static bool feed_log_has(struct feed_log *l, const char *key)
{
    pthread_mutex_lock(&l->mu);
    bool found = false;
    for (int i = 0; i < l->n_keys && !found; i++) {
        found = key == NULL ? false : strcmp(l->keys[i], key) == 0;
    }
    if (key == NULL) {
        found = l->n_all > 0;
    }
    pthread_mutex_unlock(&l->mu);
    return found;
}

/* Waits up to `ms` for `key` (NULL: a call saying anything may have changed). */
static bool feed_log_wait(struct feed_log *l, const char *key, int ms)
{
    for (int waited = 0; waited <= ms; waited += 10) {
        if (feed_log_has(l, key)) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

/* One process alone on its store: watching works and nothing is ever reported. */
static void test_watch_single(void **state)
{
    store *st = ((struct fixture *)*state)->st;
    struct feed_log l = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(store_watch(st, "w/", feed_log_fn, &l), COFFER_OK);
    put1(st, "w/1", "one");
    usleep(50000);
    assert_int_equal(l.n_keys + l.n_all, 0);
    store_unwatch(st, feed_log_fn, &l);
    assert_int_equal(store_watch(st, NULL, NULL, &l), COFFER_ERR_USAGE);
}

/* Two stores on one database are two nodes: a change committed by one reaches the other's
 * watchers of its prefix within the staleness bound, and a lost notification or a lost feed
 * connection is reported as "anything may have changed" within the same bound. */
static void test_pg_change_feed(void **state)
{
    store *a = ((struct fixture *)*state)->st;
    store *b = NULL;
    assert_int_equal(store_open(getenv("COFFER_TEST_PG_URL"), &b), COFFER_OK);
    struct feed_log l = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(store_watch(b, "w/", feed_log_fn, &l), COFFER_OK);
    /* The feed says "anything" once it listens: from then on nothing is missed. */
    assert_true(feed_log_wait(&l, NULL, 3000));
    feed_log_reset(&l);

    put1(a, "x/1", "other prefix");
    put1(a, "w/1", "one");
    assert_true(feed_log_wait(&l, "w/1", STORE_CHANGE_STALENESS_MS));
    assert_false(feed_log_has(&l, "x/1"));
    assert_int_equal(l.n_all, 0);

    /* Deletes are changes; an aborted transaction is none. */
    store_txn *t = NULL;
    feed_log_reset(&l);
    assert_int_equal(store_txn_begin(a, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "w/aborted", coffer_cursor_from_str("no")), COFFER_OK);
    store_txn_abort(t);
    assert_int_equal(store_txn_begin(a, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "w/1"), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_true(feed_log_wait(&l, "w/1", STORE_CHANGE_STALENESS_MS));
    assert_false(feed_log_has(&l, "w/aborted"));

    /* A transaction writing many keys says "anything" instead of listing them. */
    feed_log_reset(&l);
    assert_int_equal(store_txn_begin(a, &t), COFFER_OK);
    for (int i = 0; i < 100; i++) {
        char k[32];
        snprintf(k, sizeof(k), "w/many/%03d", i);
        assert_int_equal(store_txn_put(t, k, coffer_cursor_from_str("v")), COFFER_OK);
    }
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_true(feed_log_wait(&l, NULL, STORE_CHANGE_STALENESS_MS));

    /* A change whose notification never came: the counter poll finds it. */
    usleep(200000);
    feed_log_reset(&l);
    pg_admin_exec("UPDATE coffer_changes SET n = n + 1");
    assert_true(feed_log_wait(&l, NULL, STORE_CHANGE_STALENESS_MS));

    /* The feed's session ends (a server restart): "anything", then it listens again. */
    usleep(200000);
    feed_log_reset(&l);
    pg_kill_sessions();
    assert_true(feed_log_wait(&l, NULL, STORE_CHANGE_STALENESS_MS));
    usleep(1000000);
    feed_log_reset(&l);
    put1(a, "w/2", "two");
    assert_true(feed_log_wait(&l, "w/2", STORE_CHANGE_STALENESS_MS));

    /* Once unwatched, nothing more is reported. */
    store_unwatch(b, feed_log_fn, &l);
    feed_log_reset(&l);
    put1(a, "w/3", "three");
    usleep(600000);
    assert_false(feed_log_has(&l, "w/3"));
    store_close(b);
}

#define BOTH(fn)                                                                                             \
    cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown),                                             \
        cmocka_unit_test_setup_teardown(fn, setup_mem, teardown)

#define ON_PG(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int main(void)
{
    if (getenv("COFFER_TEST_PG_URL") != NULL) {
        const struct CMUnitTest pg_tests[] = {
            ON_PG(test_crud),
            ON_PG(test_invalid_input),
            ON_PG(test_scan),
            ON_PG(test_scan_paging),
            ON_PG(test_scan_nested),
            ON_PG(test_txn_read_your_writes),
            ON_PG(test_txn_abort),
            ON_PG(test_precommit_hook),
            ON_PG(test_concurrent_writers),
            ON_PG(test_nested_txn_refused),
            ON_PG(test_plain_records),
            ON_PG(test_pg_two_nodes_serialised),
            ON_PG(test_pg_reconnect),
            ON_PG(test_pg_failed_statement_fails_commit),
            ON_PG(test_pg_change_feed),
            cmocka_unit_test(test_pg_scheduler_lease),
            cmocka_unit_test(test_pg_migrations),
            cmocka_unit_test(test_pg_concurrent_migration),
            cmocka_unit_test(test_pg_unreachable),
        };
        return cmocka_run_group_tests_name("store on PostgreSQL", pg_tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        BOTH(test_crud),
        BOTH(test_invalid_input),
        BOTH(test_scan),
        BOTH(test_scan_paging),
        BOTH(test_scan_nested),
        BOTH(test_txn_read_your_writes),
        BOTH(test_txn_abort),
        BOTH(test_precommit_hook),
        BOTH(test_concurrent_writers),
        BOTH(test_nested_txn_refused),
        BOTH(test_plain_records),
        BOTH(test_scheduler_lease_single),
        BOTH(test_watch_single),
        cmocka_unit_test_setup_teardown(test_store_copy, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_reopen, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_durable_after_kill, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_migrations, setup_sqlite, teardown),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_pg_unreachable),
        cmocka_unit_test(test_upper_bound),
        cmocka_unit_test(test_fault_wrapper),
        cmocka_unit_test(test_precommit_hook_once_through_a_wrapper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
