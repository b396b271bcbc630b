/*
 * The in-memory backend ("mem:"): a sorted array of records behind a lock, with the same
 * semantics as the SQLite backend but nothing durable. Unit tests of other modules run their
 * services over it. Transactions are serialised by a mutex held from begin to commit/abort;
 * their writes collect in a sorted write-set that reads consult first and commit applies in one
 * step under the write lock, so other threads never see half a transaction.
 */
#include "store/store_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct kv {
    char *key;
    uint8_t *val;
    size_t vlen;
    bool deleted; /* write-set only: a tombstone */
};

struct kvarr {
    struct kv *v;
    size_t n, cap;
};

struct mem_store {
    struct store base;
    pthread_rwlock_t lock;  /* guards data */
    pthread_mutex_t txn_mu; /* one transaction at a time */
    struct kvarr data;
};

struct mem_txn {
    struct store_txn base;
    struct mem_store *s;
    struct kvarr writes;
};

/* ---------------------------------------------------------------------------------------------
 * Sorted arrays
 * ------------------------------------------------------------------------------------------- */

/* First index whose key is >= k (strict = false) or > k (strict = true). */
static size_t kv_bound(const struct kvarr *a, const char *k, bool strict)
{
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(a->v[mid].key, k);
        if (c < 0 || (strict && c == 0)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct kv *kv_find(const struct kvarr *a, const char *k)
{
    size_t i = kv_bound(a, k, false);
    return i < a->n && strcmp(a->v[i].key, k) == 0 ? &a->v[i] : NULL;
}

static void kv_clear(struct kv *e)
{
    free(e->key);
    free(e->val);
    memset(e, 0, sizeof(*e));
}

static void kvarr_free(struct kvarr *a)
{
    for (size_t i = 0; i < a->n; i++) {
        kv_clear(&a->v[i]);
    }
    free(a->v);
    memset(a, 0, sizeof(*a));
}

static coffer_err dup_val(coffer_cursor v, uint8_t **out)
{
    *out = malloc(v.len ? v.len : 1);
    if (*out == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    if (v.len) {
        memcpy(*out, v.ptr, v.len);
    }
    return COFFER_OK;
}

/* Inserts or replaces `key` (copied) with `v` (copied). */
static coffer_err kvarr_set(struct kvarr *a, const char *key, coffer_cursor v, bool deleted)
{
    uint8_t *val = NULL;
    TRY(dup_val(v, &val));
    size_t i = kv_bound(a, key, false);
    if (i < a->n && strcmp(a->v[i].key, key) == 0) {
        free(a->v[i].val);
        a->v[i].val = val;
        a->v[i].vlen = v.len;
        a->v[i].deleted = deleted;
        return COFFER_OK;
    }
    char *k = strdup(key);
    if (k == NULL) {
        free(val);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        struct kv *nv = realloc(a->v, cap * sizeof(*nv));
        if (nv == NULL) {
            free(k);
            free(val);
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        a->v = nv;
        a->cap = cap;
    }
    memmove(&a->v[i + 1], &a->v[i], (a->n - i) * sizeof(*a->v));
    a->v[i] = (struct kv){k, val, v.len, deleted};
    a->n++;
    return COFFER_OK;
}

static void kvarr_remove(struct kvarr *a, const char *key)
{
    size_t i = kv_bound(a, key, false);
    if (i < a->n && strcmp(a->v[i].key, key) == 0) {
        kv_clear(&a->v[i]);
        memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(*a->v));
        a->n--;
    }
}

/* Index range [*lo, *hi) of keys starting with prefix and sorting after start_after. */
static void kv_range(const struct kvarr *a, const char *prefix, const char *start_after, size_t *lo,
                     size_t *hi)
{
    char upper[STORE_KEY_MAX + 2];
    size_t l = kv_bound(a, prefix, false);
    if (start_after[0] != '\0') {
        size_t l2 = kv_bound(a, start_after, true);
        l = l2 > l ? l2 : l;
    }
    size_t h = store_prefix_upper_bound(prefix, upper) ? kv_bound(a, upper, false) : a->n;
    *lo = l;
    *hi = h > l ? h : l;
}

/* Copies the records of a range, so callbacks run without our lock held. */
static coffer_err kv_snapshot(struct mem_store *s, const char *prefix, const char *start_after,
                              struct kvarr *out)
{
    coffer_err rc = COFFER_OK;
    pthread_rwlock_rdlock(&s->lock);
    size_t lo, hi;
    kv_range(&s->data, prefix, start_after, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        TRY_OUT(
            kvarr_set(out, s->data.v[i].key, coffer_cursor_from(s->data.v[i].val, s->data.v[i].vlen), false));
    }
out:
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Store methods
 * ------------------------------------------------------------------------------------------- */

static coffer_err mem_get(struct store *base, const char *key, coffer_buf *value)
{
    struct mem_store *s = (struct mem_store *)base;
    pthread_rwlock_rdlock(&s->lock);
    struct kv *e = kv_find(&s->data, key);
    coffer_err rc = e ? coffer_buf_append(value, e->val, e->vlen)
                      : coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key");
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* Merges the base snapshot with an optional write-set (which wins on equal keys). */
static coffer_err merged_scan(const struct kvarr *snap, const struct kvarr *writes, const char *prefix,
                              const char *start_after, size_t limit, store_scan_fn fn, void *ctx)
{
    size_t i = 0, n = 0, j = 0, jend = 0;
    if (writes != NULL) {
        kv_range(writes, prefix, start_after, &j, &jend);
    }
    while (i < snap->n || j < jend) {
        const struct kv *e;
        int c = i == snap->n ? 1 : j == jend ? -1 : strcmp(snap->v[i].key, writes->v[j].key);
        if (c < 0) {
            e = &snap->v[i++];
        } else {
            e = &writes->v[j++];
            i += c == 0;
            if (e->deleted) {
                continue;
            }
        }
        TRY(fn(ctx, e->key, coffer_cursor_from(e->val, e->vlen)));
        if (limit != 0 && ++n == limit) {
            break;
        }
    }
    return COFFER_OK;
}

static coffer_err mem_scan(struct store *base, const char *prefix, const char *start_after, size_t limit,
                           store_scan_fn fn, void *ctx)
{
    struct mem_store *s = (struct mem_store *)base;
    struct kvarr snap = {0};
    coffer_err rc = COFFER_OK;
    TRY_OUT(kv_snapshot(s, prefix, start_after, &snap));
    rc = merged_scan(&snap, NULL, prefix, start_after, limit, fn, ctx);
out:
    kvarr_free(&snap);
    return rc;
}

static coffer_err mem_txn_begin(struct store *base, struct store_txn **out)
{
    struct mem_store *s = (struct mem_store *)base;
    struct mem_txn *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    /* An error-checking mutex: a second begin on the same thread would otherwise deadlock. */
    if (pthread_mutex_lock(&s->txn_mu) != 0) {
        free(t);
        return coffer_fail(COFFER_ERR_USAGE, "this thread already has a transaction open");
    }
    t->s = s;
    *out = &t->base;
    return COFFER_OK;
}

static coffer_err mem_txn_get(struct store_txn *base, const char *key, coffer_buf *value)
{
    struct mem_txn *t = (struct mem_txn *)base;
    struct kv *w = kv_find(&t->writes, key);
    if (w != NULL) {
        return w->deleted ? coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key")
                          : coffer_buf_append(value, w->val, w->vlen);
    }
    return mem_get(&t->s->base, key, value);
}

static coffer_err mem_txn_put(struct store_txn *base, const char *key, coffer_cursor value)
{
    struct mem_txn *t = (struct mem_txn *)base;
    return kvarr_set(&t->writes, key, value, false);
}

static coffer_err mem_txn_delete(struct store_txn *base, const char *key)
{
    struct mem_txn *t = (struct mem_txn *)base;
    struct kv *w = kv_find(&t->writes, key);
    bool present;
    if (w != NULL) {
        present = !w->deleted;
    } else {
        pthread_rwlock_rdlock(&t->s->lock);
        present = kv_find(&t->s->data, key) != NULL;
        pthread_rwlock_unlock(&t->s->lock);
    }
    if (!present) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "no record under this key");
    }
    return kvarr_set(&t->writes, key, coffer_cursor_from(NULL, 0), true);
}

static coffer_err mem_txn_scan(struct store_txn *base, const char *prefix, const char *start_after,
                               size_t limit, store_scan_fn fn, void *ctx)
{
    struct mem_txn *t = (struct mem_txn *)base;
    struct kvarr snap = {0};
    coffer_err rc = COFFER_OK;
    TRY_OUT(kv_snapshot(t->s, prefix, start_after, &snap));
    rc = merged_scan(&snap, &t->writes, prefix, start_after, limit, fn, ctx);
out:
    kvarr_free(&snap);
    return rc;
}

static void mem_txn_abort(struct store_txn *base)
{
    struct mem_txn *t = (struct mem_txn *)base;
    kvarr_free(&t->writes);
    pthread_mutex_unlock(&t->s->txn_mu);
    free(t);
}

static coffer_err mem_txn_commit(struct store_txn *base)
{
    struct mem_txn *t = (struct mem_txn *)base;
    struct mem_store *s = t->s;
    coffer_err rc = COFFER_OK;
    /* Make room first, so applying cannot fail halfway for lack of memory. */
    pthread_rwlock_wrlock(&s->lock);
    size_t need = s->data.n + t->writes.n;
    if (need > s->data.cap) {
        struct kv *nv = realloc(s->data.v, need * sizeof(*nv));
        if (nv == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        s->data.v = nv;
        s->data.cap = need;
    }
    for (size_t i = 0; i < t->writes.n; i++) {
        struct kv *w = &t->writes.v[i];
        if (w->deleted) {
            kvarr_remove(&s->data, w->key);
            continue;
        }
        struct kv *e = kv_find(&s->data, w->key);
        if (e != NULL) {
            /* Move the value over: no allocation. */
            free(e->val);
            e->val = w->val;
            e->vlen = w->vlen;
            w->val = NULL;
            continue;
        }
        size_t at = kv_bound(&s->data, w->key, false);
        assert(s->data.n < s->data.cap); /* room was made above for every write */
        memmove(&s->data.v[at + 1], &s->data.v[at], (s->data.n - at) * sizeof(*s->data.v));
        s->data.v[at] = (struct kv){w->key, w->val, w->vlen, false};
        s->data.n++;
        w->key = NULL;
        w->val = NULL;
    }
out:
    pthread_rwlock_unlock(&s->lock);
    mem_txn_abort(base);
    return rc;
}

static void mem_destroy(struct store *base)
{
    struct mem_store *s = (struct mem_store *)base;
    kvarr_free(&s->data);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->txn_mu);
    free(s);
}

static const struct store_vt mem_vt = {
    .vt_size = sizeof(struct store_vt),
    .name = "mem",
    .get = mem_get,
    .scan = mem_scan,
    .txn_begin = mem_txn_begin,
    .txn_get = mem_txn_get,
    .txn_put = mem_txn_put,
    .txn_delete = mem_txn_delete,
    .txn_scan = mem_txn_scan,
    .txn_commit = mem_txn_commit,
    .txn_abort = mem_txn_abort,
    .destroy = mem_destroy,
};

coffer_err store_mem_open(store **out)
{
    struct mem_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    s->base.vt = &mem_vt;
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&s->txn_mu, &attr);
    pthread_mutexattr_destroy(&attr);
    *out = &s->base;
    return COFFER_OK;
}
