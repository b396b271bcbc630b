/*
 * The fault-injection wrapper (see store_fault.h): a backend whose methods forward to an inner
 * store through the public wrappers, counting write operations and failing them once the
 * configured budget is spent. Reads always pass through.
 */
#include "store/store_fault.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "store/store_internal.h"

struct fault_store {
    struct store base;
    store *inner;
    atomic_int budget;   /* writes that may still succeed; < 0 = unlimited (disarmed) */
    atomic_int failures; /* writes failed since the last store_fault_set */
};

struct fault_txn {
    struct store_txn base;
    store_txn *inner;
};

/* Spends one unit of the budget; fails when there is none left. */
static coffer_err fault_charge(struct fault_store *f, const char *what)
{
    int b = atomic_load(&f->budget);
    while (b > 0) {
        if (atomic_compare_exchange_weak(&f->budget, &b, b - 1)) {
            return COFFER_OK;
        }
    }
    if (b < 0) {
        return COFFER_OK;
    }
    atomic_fetch_add(&f->failures, 1);
    return coffer_fail(COFFER_ERR_STORE, "injected fault: %s", what);
}

static struct fault_store *fault_of(struct store_txn *t)
{
    return (struct fault_store *)t->st;
}

static coffer_err f_get(struct store *s, const char *key, coffer_buf *value)
{
    return store_get(((struct fault_store *)s)->inner, key, value);
}

static coffer_err f_scan(struct store *s, const char *prefix, const char *start_after, size_t limit,
                         store_scan_fn fn, void *ctx)
{
    return store_scan(((struct fault_store *)s)->inner, prefix, start_after, limit, fn, ctx);
}

static coffer_err f_txn_begin(struct store *s, struct store_txn **out)
{
    struct fault_txn *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = store_txn_begin(((struct fault_store *)s)->inner, &t->inner);
    if (rc != COFFER_OK) {
        free(t);
        return rc;
    }
    *out = &t->base;
    return COFFER_OK;
}

static coffer_err f_txn_get(struct store_txn *t, const char *key, coffer_buf *value)
{
    return store_txn_get(((struct fault_txn *)t)->inner, key, value);
}

static coffer_err f_txn_put(struct store_txn *t, const char *key, coffer_cursor value)
{
    TRY(fault_charge(fault_of(t), "put"));
    return store_txn_put(((struct fault_txn *)t)->inner, key, value);
}

static coffer_err f_get_plain(struct store *s, const char *key, coffer_buf *value)
{
    return store_get_plain(((struct fault_store *)s)->inner, key, value);
}

static coffer_err f_txn_get_plain(struct store_txn *t, const char *key, coffer_buf *value)
{
    return store_txn_get_plain(((struct fault_txn *)t)->inner, key, value);
}

static coffer_err f_txn_put_plain(struct store_txn *t, const char *key, coffer_cursor value)
{
    TRY(fault_charge(fault_of(t), "put"));
    return store_txn_put_plain(((struct fault_txn *)t)->inner, key, value);
}

static coffer_err f_txn_delete(struct store_txn *t, const char *key)
{
    TRY(fault_charge(fault_of(t), "delete"));
    return store_txn_delete(((struct fault_txn *)t)->inner, key);
}

static coffer_err f_txn_scan(struct store_txn *t, const char *prefix, const char *start_after, size_t limit,
                             store_scan_fn fn, void *ctx)
{
    return store_txn_scan(((struct fault_txn *)t)->inner, prefix, start_after, limit, fn, ctx);
}

static void f_txn_abort(struct store_txn *t)
{
    store_txn_abort(((struct fault_txn *)t)->inner);
    free(t);
}

static coffer_err f_txn_commit(struct store_txn *t)
{
    coffer_err rc = fault_charge(fault_of(t), "commit");
    if (rc != COFFER_OK) {
        f_txn_abort(t);
        return rc;
    }
    rc = store_txn_commit(((struct fault_txn *)t)->inner);
    free(t);
    return rc;
}

static void f_destroy(struct store *s)
{
    store_close(((struct fault_store *)s)->inner);
    free(s);
}

static coffer_err f_watch(struct store *s, const char *prefix, store_change_fn fn, void *ctx)
{
    return store_watch(((struct fault_store *)s)->inner, prefix, fn, ctx);
}

static void f_unwatch(struct store *s, store_change_fn fn, void *ctx)
{
    store_unwatch(((struct fault_store *)s)->inner, fn, ctx);
}

static const struct store_vt fault_vt = {
    .vt_size = sizeof(struct store_vt),
    .name = "fault",
    .get = f_get,
    .scan = f_scan,
    .txn_begin = f_txn_begin,
    .txn_get = f_txn_get,
    .txn_put = f_txn_put,
    .txn_delete = f_txn_delete,
    .txn_scan = f_txn_scan,
    .txn_commit = f_txn_commit,
    .txn_abort = f_txn_abort,
    .destroy = f_destroy,
    .get_plain = f_get_plain,
    .txn_get_plain = f_txn_get_plain,
    .txn_put_plain = f_txn_put_plain,
    .watch = f_watch,
    .unwatch = f_unwatch,
};

coffer_err store_fault_wrap(store *inner, store **out)
{
    ENSURE_REF(inner);
    ENSURE_REF(out);
    struct fault_store *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    f->base.vt = &fault_vt;
    f->inner = inner;
    atomic_init(&f->budget, -1);
    atomic_init(&f->failures, 0);
    *out = &f->base;
    return COFFER_OK;
}

void store_fault_set(store *s, int fail_after_ops)
{
    if (s == NULL || s->vt != &fault_vt) {
        return;
    }
    struct fault_store *f = (struct fault_store *)s;
    atomic_store(&f->failures, 0);
    atomic_store(&f->budget, fail_after_ops < 0 ? -1 : fail_after_ops);
}

int store_fault_failures(store *s)
{
    if (s == NULL || s->vt != &fault_vt) {
        return 0;
    }
    return atomic_load(&((struct fault_store *)s)->failures);
}
