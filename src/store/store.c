/*
 * The storage interface seen by services (listener -> auth -> service -> barrier -> store):
 * thin wrappers over the backend vtable, URL dispatch to a backend, and the validation every
 * backend relies on (key shape, value size), done once here rather than in each backend.
 */
#include "store/store.h"

#include <stdbool.h>
#include <string.h>

#include "store/store_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------------- */

static coffer_err check_key(const char *key)
{
    if (key == NULL) {
        return coffer_fail(COFFER_ERR_USAGE, "store key missing");
    }
    size_t n = strnlen(key, STORE_KEY_MAX + 1);
    if (n == 0 || n > STORE_KEY_MAX) {
        return coffer_fail(COFFER_ERR_USAGE, "store key length %zu outside 1..%d", n, STORE_KEY_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch < 0x20 || ch > 0x7e) {
            return coffer_fail(COFFER_ERR_USAGE, "store key holds a non-printable byte at %zu", i);
        }
    }
    return COFFER_OK;
}

/* Prefix and start_after are bounds, not keys: any length up to the key limit, may be empty. */
static coffer_err check_bound(const char *b)
{
    if (b != NULL && strnlen(b, STORE_KEY_MAX + 1) > STORE_KEY_MAX) {
        return coffer_fail(COFFER_ERR_USAGE, "store scan bound longer than %d", STORE_KEY_MAX);
    }
    return COFFER_OK;
}

static coffer_err check_scan(const char *prefix, const char *start_after, store_scan_fn fn)
{
    ENSURE_REF(fn);
    TRY(check_bound(prefix));
    return check_bound(start_after);
}

bool store_prefix_upper_bound(const char *prefix, char *out)
{
    size_t n = strlen(prefix);
    /* Bytes compare unsigned (memcmp order, SQLite BINARY collation): drop trailing 0xFF, which
     * cannot be incremented, then bump the last remaining byte. "ab" -> "ac", "a\xff" -> "b". */
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff) {
        n--;
    }
    if (n == 0) {
        return false;
    }
    memcpy(out, prefix, n);
    out[n - 1] = (char)((unsigned char)prefix[n - 1] + 1);
    out[n] = '\0';
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Open / close
 * ------------------------------------------------------------------------------------------- */

coffer_err store_open(const char *url, store **out)
{
    ENSURE_REF(url);
    ENSURE_REF(out);
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *path = url + 7;
        /* Accept the URL form sqlite:///abs/path as well as sqlite:/abs/path. */
        if (strncmp(path, "//", 2) == 0) {
            path += 2;
        }
        return store_sqlite_open(path, out);
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        return store_pg_open(url, out);
    }
    if (strncmp(url, "mem:", 4) == 0) {
        return store_mem_open(out);
    }
    if (strstr(url, "://") != NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "unsupported store URL scheme");
    }
    if (url[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "empty store path");
    }
    return store_sqlite_open(url, out);
}

void store_close(store *s)
{
    if (s != NULL) {
        s->vt->destroy(s);
    }
}

const char *store_backend_name(const store *s)
{
    return s != NULL ? s->vt->name : "none";
}

/* ---------------------------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------------------------- */

coffer_err store_get(store *s, const char *key, coffer_buf *value)
{
    ENSURE_REF(s);
    ENSURE_REF(value);
    TRY(check_key(key));
    return s->vt->get(s, key, value);
}

coffer_err store_scan(store *s, const char *prefix, const char *start_after, size_t limit, store_scan_fn fn,
                      void *ctx)
{
    ENSURE_REF(s);
    TRY(check_scan(prefix, start_after, fn));
    coffer_err rc = s->vt->scan(s, prefix ? prefix : "", start_after ? start_after : "", limit, fn, ctx);
    return rc == STORE_SCAN_STOP ? COFFER_OK : rc;
}

/* ---------------------------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------------------------- */

coffer_err store_txn_begin(store *s, store_txn **out)
{
    ENSURE_REF(s);
    ENSURE_REF(out);
    store_txn *t = NULL;
    TRY(s->vt->txn_begin(s, &t));
    t->st = s;
    *out = t;
    return COFFER_OK;
}

coffer_err store_txn_get(store_txn *t, const char *key, coffer_buf *value)
{
    ENSURE_REF(t);
    ENSURE_REF(value);
    TRY(check_key(key));
    return t->st->vt->txn_get(t, key, value);
}

static coffer_err check_value(coffer_cursor value)
{
    if (value.len > STORE_VALUE_MAX) {
        return coffer_fail(COFFER_ERR_USAGE, "store value of %zu bytes over the %d limit", value.len,
                           STORE_VALUE_MAX);
    }
    if (value.len > 0 && value.ptr == NULL) {
        return coffer_fail(COFFER_ERR_USAGE, "store value pointer missing");
    }
    return COFFER_OK;
}

coffer_err store_txn_put(store_txn *t, const char *key, coffer_cursor value)
{
    ENSURE_REF(t);
    TRY(check_key(key));
    TRY(check_value(value));
    return t->st->vt->txn_put(t, key, value);
}

coffer_err store_txn_delete(store_txn *t, const char *key)
{
    ENSURE_REF(t);
    TRY(check_key(key));
    return t->st->vt->txn_delete(t, key);
}

coffer_err store_txn_scan(store_txn *t, const char *prefix, const char *start_after, size_t limit,
                          store_scan_fn fn, void *ctx)
{
    ENSURE_REF(t);
    TRY(check_scan(prefix, start_after, fn));
    coffer_err rc =
        t->st->vt->txn_scan(t, prefix ? prefix : "", start_after ? start_after : "", limit, fn, ctx);
    return rc == STORE_SCAN_STOP ? COFFER_OK : rc;
}

/* ---------------------------------------------------------------------------------------------
 * Plaintext records: the same as the calls above on a backend that stores values as given
 * ------------------------------------------------------------------------------------------- */

coffer_err store_get_plain(store *s, const char *key, coffer_buf *value)
{
    ENSURE_REF(s);
    ENSURE_REF(value);
    TRY(check_key(key));
    return s->vt->get_plain != NULL ? s->vt->get_plain(s, key, value) : s->vt->get(s, key, value);
}

coffer_err store_txn_get_plain(store_txn *t, const char *key, coffer_buf *value)
{
    ENSURE_REF(t);
    ENSURE_REF(value);
    TRY(check_key(key));
    const struct store_vt *vt = t->st->vt;
    return vt->txn_get_plain != NULL ? vt->txn_get_plain(t, key, value) : vt->txn_get(t, key, value);
}

coffer_err store_txn_put_plain(store_txn *t, const char *key, coffer_cursor value)
{
    ENSURE_REF(t);
    TRY(check_key(key));
    TRY(check_value(value));
    const struct store_vt *vt = t->st->vt;
    return vt->txn_put_plain != NULL ? vt->txn_put_plain(t, key, value) : vt->txn_put(t, key, value);
}

/* One hook per thread: a transaction belongs to the thread that began it (store.h). */
static _Thread_local store_precommit_fn precommit_fn;
static _Thread_local void *precommit_ctx;

void store_precommit_set(store_precommit_fn fn, void *ctx)
{
    precommit_fn = fn;
    precommit_ctx = fn != NULL ? ctx : NULL;
}

coffer_err store_txn_commit(store_txn *t)
{
    ENSURE_REF(t);
    store_precommit_fn fn = precommit_fn;
    if (fn == NULL) {
        return t->st->vt->txn_commit(t);
    }
    /* Removed until this commit is done: not for commits the hook makes itself, and not again
     * when a wrapper (the sealed view, the fault injector) commits its inner transaction. */
    precommit_fn = NULL;
    coffer_err rc = fn(precommit_ctx);
    if (rc != COFFER_OK) {
        t->st->vt->txn_abort(t);
    } else {
        rc = t->st->vt->txn_commit(t);
    }
    precommit_fn = fn;
    return rc;
}

void store_txn_abort(store_txn *t)
{
    if (t != NULL) {
        t->st->vt->txn_abort(t);
    }
}

bool store_scheduler_lease(store *s)
{
    if (s == NULL) {
        return false;
    }
    return s->vt->scheduler_lease != NULL ? s->vt->scheduler_lease(s) : true;
}

coffer_err store_watch(store *s, const char *prefix, store_change_fn fn, void *ctx)
{
    ENSURE_REF(s);
    ENSURE_REF(fn);
    TRY(check_bound(prefix));
    return s->vt->watch != NULL ? s->vt->watch(s, prefix != NULL ? prefix : "", fn, ctx) : COFFER_OK;
}

void store_unwatch(store *s, store_change_fn fn, void *ctx)
{
    if (s != NULL && s->vt->unwatch != NULL) {
        s->vt->unwatch(s, fn, ctx);
    }
}
