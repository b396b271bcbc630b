/*
 * The sealed view of a store (service -> barrier -> store): a store whose every value is sealed
 * by the barrier on put and opened on get and scan, so a backend only ever holds sealed values.
 * Services are handed this view and write through the ordinary store calls; sealing is the
 * default, not something each service remembers to do.
 *
 *   stored value = seal_record_seal(identity "record:" + key, value)
 *
 * Binding the key makes a sealed value copied under another key fail to open; the "record:"
 * prefix keeps these identities apart from those services use for what they seal themselves
 * (key material, secret access keys), which stay sealed inside the record as before.
 *
 * Keys pass through in clear (they are the index, see store.h). Keys under "seal/" belong to the
 * barrier (its keyring, the format marker below), kept in the bare store: the view refuses them
 * and its scans skip them.
 *
 * Plaintext records (store_*_plain) pass through unchanged. A sealed read of one fails, as does
 * a read of any value that was altered, moved or never sealed: COFFER_ERR_STORE, never the
 * bytes.
 *
 * Migration: data dirs written before the barrier sealed every record hold their values as the
 * services wrote them. The first time a view is opened on such a store, every record outside
 * "seal/" is sealed in place and the marker SEAL_STORE_MARKER is written, all in one transaction:
 * a crash leaves the store wholly in the old format (and the next start converts it) or wholly
 * in the new one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "seal/seal.h"
#include "store/store_internal.h"

#define RESERVED_PREFIX "seal/"
#define RESERVED_PREFIX_LEN (sizeof(RESERVED_PREFIX) - 1)
/* SEAL_STORE_MARKER's value is the format number. Plaintext: it is read before anything can be
 * opened, and holds nothing but that number. */
#define SEALED_MARKER SEAL_STORE_MARKER
#define SEALED_FORMAT "1"
#define IDENTITY_PREFIX "record:"

struct sealed_store {
    struct store base;
    store *inner; /* borrowed: the seal keeps its keyring there too */
    seal *sl;     /* borrowed */
};

struct sealed_txn {
    struct store_txn base;
    store_txn *inner;
};

static struct sealed_store *view_of(struct store *s)
{
    return (struct sealed_store *)s;
}

static struct sealed_store *view_of_txn(struct store_txn *t)
{
    return (struct sealed_store *)t->st;
}

static store_txn *inner_txn(struct store_txn *t)
{
    return ((struct sealed_txn *)t)->inner;
}

static bool reserved(const char *key)
{
    return strncmp(key, RESERVED_PREFIX, RESERVED_PREFIX_LEN) == 0;
}

static coffer_err refuse_reserved(const char *key)
{
    if (reserved(key)) {
        return coffer_fail(COFFER_ERR_USAGE, "store keys under \"%s\" belong to the barrier",
                           RESERVED_PREFIX);
    }
    return COFFER_OK;
}

/* The identity a record's value is sealed under; keys are at most STORE_KEY_MAX (checked above). */
struct identity {
    char s[sizeof(IDENTITY_PREFIX) + STORE_KEY_MAX];
};

static const char *identity_of(const char *key, struct identity *id)
{
    snprintf(id->s, sizeof(id->s), "%s%s", IDENTITY_PREFIX, key);
    return id->s;
}

static coffer_err seal_value(seal *sl, const char *key, coffer_cursor value, coffer_buf *out)
{
    struct identity id;
    return seal_record_seal(sl, identity_of(key, &id), value, out);
}

/* Appends the plaintext of `sealed` to `out`; on any failure nothing is appended. */
static coffer_err open_value(seal *sl, const char *key, coffer_cursor sealed, coffer_buf *out)
{
    struct identity id;
    if (seal_record_open(sl, identity_of(key, &id), sealed, out) != COFFER_OK) {
        /* The key is not secret (store.h) and tells the operator which record to look at. */
        log_error("store: the record %s failed to open: altered, moved or never sealed", key);
        return coffer_fail(COFFER_ERR_STORE, "a stored record failed to open");
    }
    return COFFER_OK;
}

/* get / txn_get share this: read the sealed bytes with `read`, open them into `value`. */
static coffer_err get_sealed(seal *sl, const char *key, coffer_buf *value, store *s, store_txn *t)
{
    TRY(refuse_reserved(key));
    coffer_buf sealed = COFFER_BUF_INIT;
    coffer_err rc = t != NULL ? store_txn_get(t, key, &sealed) : store_get(s, key, &sealed);
    if (rc == COFFER_OK) {
        rc = open_value(sl, key, coffer_buf_cursor(&sealed), value);
    }
    coffer_buf_free(&sealed);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Scans: the caller's callback sees each value opened, in a buffer wiped after the callback
 * ------------------------------------------------------------------------------------------- */

struct scan_ctx {
    seal *sl;
    store_scan_fn fn;
    void *ctx;
    size_t limit, seen; /* limit 0 = none; counted here because reserved keys are skipped */
    coffer_buf plain;   /* secret: reused for every record */
};

static coffer_err scan_cb(void *p, const char *key, coffer_cursor value)
{
    struct scan_ctx *sc = p;
    if (reserved(key)) {
        return COFFER_OK;
    }
    coffer_buf_reset(&sc->plain);
    TRY(open_value(sc->sl, key, value, &sc->plain));
    coffer_err rc = sc->fn(sc->ctx, key, coffer_buf_cursor(&sc->plain));
    coffer_buf_reset(&sc->plain);
    if (rc == COFFER_OK && sc->limit != 0 && ++sc->seen == sc->limit) {
        return STORE_SCAN_STOP;
    }
    return rc;
}

static coffer_err scan_sealed(seal *sl, store *s, store_txn *t, const char *prefix, const char *start_after,
                              size_t limit, store_scan_fn fn, void *ctx)
{
    if (reserved(prefix)) {
        return coffer_fail(COFFER_ERR_USAGE, "store keys under \"%s\" belong to the barrier",
                           RESERVED_PREFIX);
    }
    struct scan_ctx sc = {.sl = sl, .fn = fn, .ctx = ctx, .limit = limit, .plain = COFFER_SECRET_BUF_INIT};
    /* Only a prefix of "seal/" ("" say) can meet the barrier's records, which are skipped: then
     * the limit is counted here in what the caller sees, and the backend, which stops stepping
     * as soon as a callback says stop, gets none. */
    size_t below = strncmp(RESERVED_PREFIX, prefix, strlen(prefix)) == 0 ? 0 : limit;
    coffer_err rc = t != NULL ? store_txn_scan(t, prefix, start_after, below, scan_cb, &sc)
                              : store_scan(s, prefix, start_after, below, scan_cb, &sc);
    coffer_buf_free(&sc.plain);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Store methods
 * ------------------------------------------------------------------------------------------- */

static coffer_err v_get(struct store *s, const char *key, coffer_buf *value)
{
    return get_sealed(view_of(s)->sl, key, value, view_of(s)->inner, NULL);
}

static coffer_err v_scan(struct store *s, const char *prefix, const char *start_after, size_t limit,
                         store_scan_fn fn, void *ctx)
{
    return scan_sealed(view_of(s)->sl, view_of(s)->inner, NULL, prefix, start_after, limit, fn, ctx);
}

static coffer_err v_txn_begin(struct store *s, struct store_txn **out)
{
    struct sealed_txn *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = store_txn_begin(view_of(s)->inner, &t->inner);
    if (rc != COFFER_OK) {
        free(t);
        return rc;
    }
    *out = &t->base;
    return COFFER_OK;
}

static coffer_err v_txn_get(struct store_txn *t, const char *key, coffer_buf *value)
{
    return get_sealed(view_of_txn(t)->sl, key, value, NULL, inner_txn(t));
}

static coffer_err v_txn_put(struct store_txn *t, const char *key, coffer_cursor value)
{
    TRY(refuse_reserved(key));
    coffer_buf sealed = COFFER_BUF_INIT;
    coffer_err rc = seal_value(view_of_txn(t)->sl, key, value, &sealed);
    if (rc == COFFER_OK) {
        rc = store_txn_put(inner_txn(t), key, coffer_buf_cursor(&sealed));
    }
    coffer_buf_free(&sealed);
    return rc;
}

static coffer_err v_txn_delete(struct store_txn *t, const char *key)
{
    TRY(refuse_reserved(key));
    return store_txn_delete(inner_txn(t), key);
}

static coffer_err v_txn_scan(struct store_txn *t, const char *prefix, const char *start_after, size_t limit,
                             store_scan_fn fn, void *ctx)
{
    return scan_sealed(view_of_txn(t)->sl, NULL, inner_txn(t), prefix, start_after, limit, fn, ctx);
}

static void v_txn_abort(struct store_txn *t)
{
    store_txn_abort(inner_txn(t));
    free(t);
}

static coffer_err v_txn_commit(struct store_txn *t)
{
    coffer_err rc = store_txn_commit(inner_txn(t));
    free(t);
    return rc;
}

static void v_destroy(struct store *s)
{
    free(s); /* the inner store and the seal are borrowed */
}

static coffer_err v_get_plain(struct store *s, const char *key, coffer_buf *value)
{
    TRY(refuse_reserved(key));
    return store_get_plain(view_of(s)->inner, key, value);
}

static coffer_err v_txn_get_plain(struct store_txn *t, const char *key, coffer_buf *value)
{
    TRY(refuse_reserved(key));
    return store_txn_get_plain(inner_txn(t), key, value);
}

static coffer_err v_txn_put_plain(struct store_txn *t, const char *key, coffer_cursor value)
{
    TRY(refuse_reserved(key));
    return store_txn_put_plain(inner_txn(t), key, value);
}

/* Keys are in clear on both sides of the view: the change feed is the inner store's. */
static coffer_err v_watch(struct store *s, const char *prefix, store_change_fn fn, void *ctx)
{
    return store_watch(view_of(s)->inner, prefix, fn, ctx);
}

static void v_unwatch(struct store *s, store_change_fn fn, void *ctx)
{
    store_unwatch(view_of(s)->inner, fn, ctx);
}

static const struct store_vt sealed_vt = {
    .vt_size = sizeof(struct store_vt),
    .name = "sealed",
    .get = v_get,
    .scan = v_scan,
    .txn_begin = v_txn_begin,
    .txn_get = v_txn_get,
    .txn_put = v_txn_put,
    .txn_delete = v_txn_delete,
    .txn_scan = v_txn_scan,
    .txn_commit = v_txn_commit,
    .txn_abort = v_txn_abort,
    .destroy = v_destroy,
    .get_plain = v_get_plain,
    .txn_get_plain = v_txn_get_plain,
    .txn_put_plain = v_txn_put_plain,
    .watch = v_watch,
    .unwatch = v_unwatch,
};

/* ---------------------------------------------------------------------------------------------
 * Migration of records written in clear
 * ------------------------------------------------------------------------------------------- */

struct key_list {
    char **v;
    size_t n, cap;
};

static void key_list_free(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    *l = (struct key_list){0};
}

static coffer_err collect_key(void *p, const char *key, coffer_cursor value)
{
    (void)value;
    struct key_list *l = p;
    if (reserved(key)) {
        return COFFER_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strdup(key);
    if (l->v[l->n] == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    l->n++;
    return COFFER_OK;
}

static coffer_err seal_in_place(seal *sl, store_txn *t, const char *key)
{
    coffer_err rc = COFFER_OK;
    coffer_buf plain = COFFER_SECRET_BUF_INIT, sealed = COFFER_BUF_INIT;
    TRY_OUT(store_txn_get(t, key, &plain));
    TRY_OUT(seal_value(sl, key, coffer_buf_cursor(&plain), &sealed));
    TRY_OUT(store_txn_put(t, key, coffer_buf_cursor(&sealed)));
out:
    coffer_buf_free(&plain);
    coffer_buf_free(&sealed);
    return rc;
}

/* Seals every record of a store written in clear, once, in one transaction (see the top). */
static coffer_err migrate(seal *sl, store *inner)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf marker = COFFER_BUF_INIT;
    struct key_list keys = {0};
    /* In a write transaction, so two processes starting at once cannot both convert. */
    TRY_OUT(store_txn_begin(inner, &t));
    rc = store_txn_get_plain(t, SEALED_MARKER, &marker);
    if (rc == COFFER_OK) {
        if (marker.len != strlen(SEALED_FORMAT) || memcmp(marker.data, SEALED_FORMAT, marker.len) != 0) {
            FAIL_OUT(COFFER_ERR_STORE, "the store's records are in an unknown sealed format");
        }
        goto out; /* already sealed: the transaction is aborted, having written nothing */
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    /* Keys first, then rewrite: a backend need not support writes under a running scan. */
    TRY_OUT(store_txn_scan(t, "", NULL, 0, collect_key, &keys));
    for (size_t i = 0; i < keys.n; i++) {
        TRY_OUT(seal_in_place(sl, t, keys.v[i]));
    }
    /* Plaintext by necessity: see SEALED_MARKER. */
    TRY_OUT(store_txn_put_plain(t, SEALED_MARKER, coffer_cursor_from_str(SEALED_FORMAT)));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    if (keys.n > 0) {
        log_info("seal: sealed %zu records stored in clear by an earlier version", keys.n);
    }
out:
    store_txn_abort(t);
    coffer_buf_free(&marker);
    key_list_free(&keys);
    return rc;
}

coffer_err seal_store_wrap(seal *sl, store *inner, store **out)
{
    ENSURE_REF(sl);
    ENSURE_REF(inner);
    ENSURE_REF(out);
    TRY(migrate(sl, inner));
    struct sealed_store *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    v->base.vt = &sealed_vt;
    v->inner = inner;
    v->sl = sl;
    *out = &v->base;
    return COFFER_OK;
}
