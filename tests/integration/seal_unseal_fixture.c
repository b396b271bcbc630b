/*
 * Test fixture for the conversion of data dirs written in clear: turns a cofferd data dir back
 * into the format of versions whose services stored their records as written (only key
 * material and secret access keys sealed, inside the record). Every record is read through the
 * sealed view and written back in clear to the bare store, and the marker that says the records
 * are sealed is removed. What the services wrote is the same in both versions, so the result is
 * what such a version leaves behind. Run on a stopped cofferd's data dir:
 *
 *   seal_unseal_fixture DATA_DIR
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seal/seal.h"

struct record {
    char *key;
    coffer_buf value;
};

struct records {
    struct record *v;
    size_t n, cap;
};

static coffer_err collect(void *ctx, const char *key, coffer_cursor value)
{
    struct records *r = ctx;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct record *v = realloc(r->v, cap * sizeof(*v));
        if (v == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        r->v = v;
        r->cap = cap;
    }
    struct record *rec = &r->v[r->n];
    *rec = (struct record){.key = strdup(key), .value = COFFER_SECRET_BUF_INIT};
    if (rec->key == NULL || coffer_buf_append_cur(&rec->value, value) != COFFER_OK) {
        free(rec->key);
        coffer_buf_free(&rec->value);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    r->n++;
    return COFFER_OK;
}

int main(int argc, char **argv)
{
    coffer_err rc = COFFER_OK;
    store *st = NULL, *view = NULL;
    seal *sl = NULL;
    store_txn *t = NULL;
    struct records recs = {0};
    char path[PATH_MAX];
    if (argc != 2) {
        fprintf(stderr, "usage: seal_unseal_fixture DATA_DIR\n");
        return 2;
    }
    snprintf(path, sizeof(path), "sqlite:%s/coffer.db", argv[1]);
    TRY_OUT(store_open(path, &st));
    snprintf(path, sizeof(path), "%s/root.key", argv[1]);
    TRY_OUT(seal_open_keyfile(path, false, st, &sl));
    TRY_OUT(seal_store_wrap(sl, st, &view));
    TRY_OUT(store_scan(view, "", NULL, 0, collect, &recs));
    TRY_OUT(store_txn_begin(st, &t));
    for (size_t i = 0; i < recs.n; i++) {
        TRY_OUT(store_txn_put(t, recs.v[i].key, coffer_buf_cursor(&recs.v[i].value)));
    }
    TRY_OUT(store_txn_delete(t, SEAL_STORE_MARKER));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    printf("wrote %zu records in clear\n", recs.n);
out:
    if (rc != COFFER_OK) {
        fprintf(stderr, "seal_unseal_fixture: %s\n", coffer_last_message());
    }
    store_txn_abort(t);
    for (size_t i = 0; i < recs.n; i++) {
        free(recs.v[i].key);
        coffer_buf_free(&recs.v[i].value);
    }
    free(recs.v);
    store_close(view);
    seal_free(sl);
    store_close(st);
    return rc == COFFER_OK ? 0 : 1;
}
