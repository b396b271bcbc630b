/*
 * Copying every record of one store into another (`coffer store migrate`): the bytes as stored,
 * so sealed records stay sealed and nothing is opened on the way. Both stores are bare backends
 * (never the barrier's sealed view), whose get/put/scan carry values unchanged, and the
 * barrier's own plaintext records (its keyring, the provider record, the format marker) travel
 * the same way.
 *
 * The copy is one transaction on the target: a failure leaves it as it was, so a retry needs no
 * cleaning up. A record is copied from a scan callback while the target's transaction is open;
 * the two stores are different databases, so that is allowed. Afterwards every source record is
 * read back from the target and compared byte for byte.
 */
#include "store/store.h"

#include <stdbool.h>
#include <string.h>

#include "store/store_internal.h"

#define COPY_PROGRESS_EVERY 1000

struct copy_ctx {
    store_txn *t;
    store_copy_progress_fn progress;
    void *progress_ctx;
    size_t n;
    size_t bytes;
};

static coffer_err copy_cb(void *p, const char *key, coffer_cursor value)
{
    struct copy_ctx *c = p;
    TRY(store_txn_put(c->t, key, value));
    c->n++;
    c->bytes += value.len;
    if (c->progress != NULL && c->n % COPY_PROGRESS_EVERY == 0) {
        c->progress(c->progress_ctx, "copied", c->n);
    }
    return COFFER_OK;
}

static coffer_err count_cb(void *p, const char *key, coffer_cursor value)
{
    (void)key;
    (void)value;
    (*(size_t *)p)++;
    return COFFER_OK;
}

struct verify_ctx {
    store *to;
    store_copy_progress_fn progress;
    void *progress_ctx;
    size_t n;
    coffer_buf got;
};

static coffer_err verify_cb(void *p, const char *key, coffer_cursor value)
{
    struct verify_ctx *v = p;
    coffer_buf_reset(&v->got);
    coffer_err rc = store_get(v->to, key, &v->got);
    if (rc == COFFER_ERR_NOT_FOUND) {
        return coffer_fail(COFFER_ERR_STORE, "record %s is missing from the target after the copy", key);
    }
    TRY(rc);
    if (v->got.len != value.len || (value.len > 0 && memcmp(v->got.data, value.ptr, value.len) != 0)) {
        return coffer_fail(COFFER_ERR_STORE, "record %s differs in the target after the copy", key);
    }
    v->n++;
    if (v->progress != NULL && v->n % COPY_PROGRESS_EVERY == 0) {
        v->progress(v->progress_ctx, "verified", v->n);
    }
    return COFFER_OK;
}

coffer_err store_count(store *s, const char *prefix, size_t *out)
{
    ENSURE_REF(out);
    size_t n = 0;
    TRY(store_scan(s, prefix, NULL, 0, count_cb, &n));
    *out = n;
    return COFFER_OK;
}

coffer_err store_copy(store *from, store *to, bool overwrite, store_copy_progress_fn progress, void *ctx,
                      struct store_copy_stats *stats)
{
    ENSURE_REF(from);
    ENSURE_REF(to);
    ENSURE_REF(stats);
    coffer_err rc = COFFER_OK;
    memset(stats, 0, sizeof(*stats));
    size_t before = 0;
    TRY(store_count(to, "", &before));
    stats->target_before = before;
    if (before > 0 && !overwrite) {
        return coffer_fail(COFFER_ERR_CONFLICT,
                           "the target store already holds %zu records: refusing to mix two deployments "
                           "(allow it explicitly to replace records under the same keys)",
                           before);
    }
    struct copy_ctx c = {.progress = progress, .progress_ctx = ctx};
    TRY(store_txn_begin(to, &c.t));
    TRY_OUT(store_scan(from, "", NULL, 0, copy_cb, &c));
    rc = store_txn_commit(c.t);
    c.t = NULL;
    TRY_OUT(rc);
    stats->copied = c.n;
    stats->bytes = c.bytes;
    if (progress != NULL) {
        progress(ctx, "copied", c.n);
    }

    /* Counts: the source is unchanged (its writers are stopped), the target holds exactly it
     * when it was empty, and each record reads back identical. */
    size_t source = 0, target = 0;
    TRY_OUT(store_count(from, "", &source));
    TRY_OUT(store_count(to, "", &target));
    stats->source_count = source;
    stats->target_count = target;
    if (source != c.n) {
        FAIL_OUT(COFFER_ERR_STORE, "the source changed during the copy (%zu records copied, %zu now)", c.n,
                 source);
    }
    if (before == 0 && target != source) {
        FAIL_OUT(COFFER_ERR_STORE, "the target holds %zu records after copying %zu", target, source);
    }
    struct verify_ctx v = {.to = to, .progress = progress, .progress_ctx = ctx, .got = COFFER_BUF_INIT};
    rc = store_scan(from, "", NULL, 0, verify_cb, &v);
    coffer_buf_free(&v.got);
    TRY_OUT(rc);
    stats->verified = v.n;
    if (progress != NULL) {
        progress(ctx, "verified", v.n);
    }
out:
    store_txn_abort(c.t);
    return rc;
}
