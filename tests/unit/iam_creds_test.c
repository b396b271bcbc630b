/*
 * Unit tests for src/iam/credentials.c: access key creation and lookup, the cache (a hit
 * touches neither the store nor the barrier), unknown and malformed keys, persistence across
 * a reopen of a SQLite store, the secret never appearing in clear in the database files,
 * records that were moved or tampered with, store faults, and a SigV4 round trip through the
 * verifier with iam_creds_lookup as its credential source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iam/credentials.h"
#include "seal/seal_provider.h"
#include "store/store_fault.h"

#define ACCOUNT "000000000000"
#define ROOT_ARN "arn:aws:iam::000000000000:root"

struct fixture {
    char dir[64];
    char dbpath[128];
    char keypath[128];
    store *st;
    seal *sl;
    iam_creds *creds;
};

static void open_all(struct fixture *f)
{
    assert_int_equal(store_open(f->dbpath, &f->st), COFFER_OK);
    assert_int_equal(seal_open_keyfile(f->keypath, true, f->st, &f->sl), COFFER_OK);
    assert_int_equal(iam_creds_new(f->st, f->sl, &f->creds), COFFER_OK);
}

static void close_all(struct fixture *f)
{
    iam_creds_free(f->creds);
    seal_free(f->sl);
    store_close(f->st);
    f->creds = NULL;
    f->sl = NULL;
    f->st = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/coffer-iam-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->dbpath, sizeof(f->dbpath), "%s/coffer.db", f->dir);
    snprintf(f->keypath, sizeof(f->keypath), "%s/root.key", f->dir);
    open_all(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close_all(f);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void create_root_key(iam_creds *c, char akid[21], coffer_buf *secret)
{
    assert_int_equal(iam_creds_create(c, ACCOUNT, ROOT_ARN, API_PRINCIPAL_ROOT, akid, secret), COFFER_OK);
}

static coffer_err lookup(iam_creds *c, const char *akid, const char *token, struct sigv4_identity *id)
{
    return iam_creds_lookup(c, coffer_cursor_from_str(akid), token, id);
}

static void test_create_then_lookup(void **state)
{
    struct fixture *f = *state;
    char akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    create_root_key(f->creds, akid, &secret);

    assert_int_equal(strlen(akid), 20);
    assert_memory_equal(akid, "AKIA", 4);
    assert_int_equal(strspn(akid + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 16);
    assert_int_equal(secret.len, 40);
    assert_int_equal(strlen((const char *)secret.data), 40); /* NUL-terminated */
    assert_int_equal(
        strspn((const char *)secret.data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
        40);

    struct sigv4_identity id;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(lookup(f->creds, akid, NULL, &id), COFFER_OK);
        assert_string_equal(id.access_key_id, akid);
        assert_string_equal(id.account_id, ACCOUNT);
        assert_string_equal(id.principal_arn, ROOT_ARN);
        assert_string_equal(id.principal_type, "Root");
        assert_string_equal(id.principal_id, ACCOUNT);
        assert_int_equal(id.expires_at, 0);
        assert_true(id.secret.secret);
        assert_int_equal(id.secret.len, 40);
        assert_memory_equal(id.secret.data, secret.data, 40);
        sigv4_identity_clean(&id);
    }

    /* A second key for a user differs and gets an IAM-style principal id. */
    char akid2[21];
    coffer_buf secret2 = COFFER_SECRET_BUF_INIT;
    assert_int_equal(iam_creds_create(f->creds, ACCOUNT, "arn:aws:iam::000000000000:user/alice",
                                      API_PRINCIPAL_USER, akid2, &secret2),
                     COFFER_OK);
    assert_string_not_equal(akid, akid2);
    assert_memory_not_equal(secret.data, secret2.data, 40);
    assert_int_equal(lookup(f->creds, akid2, NULL, &id), COFFER_OK);
    assert_memory_equal(id.principal_id, "AIDA", 4);
    assert_int_equal(strlen(id.principal_id), 20);
    sigv4_identity_clean(&id);

    /* A fresh cache reads the same from the store. */
    iam_creds *cold = NULL;
    assert_int_equal(iam_creds_new(f->st, f->sl, &cold), COFFER_OK);
    assert_int_equal(lookup(cold, akid2, NULL, &id), COFFER_OK);
    assert_string_equal(id.principal_arn, "arn:aws:iam::000000000000:user/alice");
    assert_memory_equal(id.secret.data, secret2.data, 40);
    sigv4_identity_clean(&id);
    iam_creds_free(cold);
    coffer_buf_free(&secret);
    coffer_buf_free(&secret2);
}

static void test_unknown_and_malformed(void **state)
{
    struct fixture *f = *state;
    char akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    create_root_key(f->creds, akid, &secret);
    struct sigv4_identity id;
    assert_int_equal(lookup(f->creds, "AKIAAAAAAAAAAAAAAAAA", NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    assert_int_equal(lookup(f->creds, "", NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    assert_int_equal(lookup(f->creds, "akiaaaaaaaaaaaaaaaaa", NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    assert_int_equal(lookup(f->creds, "AKIA/../seal/keyring", NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    char longid[200];
    memset(longid, 'A', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(lookup(f->creds, longid, NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    /* a prefix of a real key is not that key */
    char prefix[21];
    memcpy(prefix, akid, 19);
    prefix[19] = '\0';
    assert_int_equal(lookup(f->creds, prefix, NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    /* embedded NUL in the cursor */
    char withnul[21];
    memcpy(withnul, akid, 21);
    withnul[10] = '\0';
    assert_int_equal(iam_creds_lookup(f->creds, coffer_cursor_from(withnul, 20), NULL, &id),
                     COFFER_ERR_UNRECOGNIZED_CLIENT);
    /* permanent keys with a session token: refused */
    assert_int_equal(lookup(f->creds, akid, "FwoGZXIvYXdzEJr", &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    assert_string_equal(coffer_err_message(COFFER_ERR_UNRECOGNIZED_CLIENT),
                        "The security token included in the request is invalid.");
    /* and the real one still works, with an empty token meaning none */
    assert_int_equal(lookup(f->creds, akid, "", &id), COFFER_OK);
    sigv4_identity_clean(&id);

    /* Creation arguments */
    char out[21];
    assert_int_equal(iam_creds_create(f->creds, "12345", ROOT_ARN, API_PRINCIPAL_ROOT, out, &secret),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(iam_creds_create(f->creds, "00000000000x", ROOT_ARN, API_PRINCIPAL_ROOT, out, &secret),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(iam_creds_create(f->creds, ACCOUNT, "", API_PRINCIPAL_ROOT, out, &secret),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(iam_creds_create(f->creds, ACCOUNT, ROOT_ARN, API_PRINCIPAL_UNKNOWN, out, &secret),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(secret.len, 40); /* untouched by the failures */
    coffer_buf_free(&secret);
}

/* A cache hit needs neither the store nor the barrier: delete the record, the hit still works. */
static void test_cache_hit_skips_store(void **state)
{
    struct fixture *f = *state;
    char akid[21], key[64];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    create_root_key(f->creds, akid, &secret);
    snprintf(key, sizeof(key), "iam/access-key/%s", akid);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, key), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);

    struct sigv4_identity id;
    assert_int_equal(lookup(f->creds, akid, NULL, &id), COFFER_OK);
    assert_memory_equal(id.secret.data, secret.data, 40);
    sigv4_identity_clean(&id);

    iam_creds *cold = NULL;
    assert_int_equal(iam_creds_new(f->st, f->sl, &cold), COFFER_OK);
    assert_int_equal(lookup(cold, akid, NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    iam_creds_free(cold);
    coffer_buf_free(&secret);
}

static void test_persisted_across_reopen(void **state)
{
    struct fixture *f = *state;
    char akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    create_root_key(f->creds, akid, &secret);
    close_all(f);
    open_all(f);
    struct sigv4_identity id;
    assert_int_equal(lookup(f->creds, akid, NULL, &id), COFFER_OK);
    assert_memory_equal(id.secret.data, secret.data, 40);
    assert_string_equal(id.principal_arn, ROOT_ARN);
    sigv4_identity_clean(&id);
    coffer_buf_free(&secret);
}

static bool file_contains(const char *path, const void *needle, size_t n)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return false;
    }
    coffer_buf b = COFFER_BUF_INIT;
    uint8_t chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        assert_int_equal(coffer_buf_append(&b, chunk, r), COFFER_OK);
    }
    fclose(fp);
    bool found = b.len >= n && memmem(b.data, b.len, needle, n) != NULL;
    coffer_buf_free(&b);
    return found;
}

static void test_secret_never_in_clear_on_disk(void **state)
{
    struct fixture *f = *state;
    char akid[21], wal[160];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    create_root_key(f->creds, akid, &secret);
    struct sigv4_identity id;
    assert_int_equal(lookup(f->creds, akid, NULL, &id), COFFER_OK);
    sigv4_identity_clean(&id);
    snprintf(wal, sizeof(wal), "%s-wal", f->dbpath);
    /* Sanity: we are looking at the right bytes, the AKID is there in clear. */
    assert_true(file_contains(f->dbpath, akid, 20) || file_contains(wal, akid, 20));
    assert_false(file_contains(f->dbpath, secret.data, 40));
    assert_false(file_contains(wal, secret.data, 40));
    assert_false(file_contains(f->dbpath, secret.data + 10, 20));
    assert_false(file_contains(wal, secret.data + 10, 20));
    /* and after closing (checkpoint into the main file) */
    close_all(f);
    assert_true(file_contains(f->dbpath, akid, 20));
    assert_false(file_contains(f->dbpath, secret.data, 40));
    assert_false(file_contains(wal, secret.data, 40));
    open_all(f);
    coffer_buf_free(&secret);
}

/* A record copied under another AKID does not open there: the seal identity names the key. */
static void test_moved_and_tampered_records(void **state)
{
    struct fixture *f = *state;
    char a[21], b[21], ka[64], kb[64];
    coffer_buf sa = COFFER_SECRET_BUF_INIT, sb = COFFER_SECRET_BUF_INIT, rec = COFFER_BUF_INIT;
    create_root_key(f->creds, a, &sa);
    create_root_key(f->creds, b, &sb);
    snprintf(ka, sizeof(ka), "iam/access-key/%s", a);
    snprintf(kb, sizeof(kb), "iam/access-key/%s", b);
    assert_int_equal(store_get(f->st, ka, &rec), COFFER_OK);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, kb, coffer_buf_cursor(&rec)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);

    iam_creds *cold = NULL;
    struct sigv4_identity id;
    assert_int_equal(iam_creds_new(f->st, f->sl, &cold), COFFER_OK);
    assert_int_equal(lookup(cold, b, NULL, &id), COFFER_ERR_CRYPTO);
    assert_int_equal(lookup(cold, a, NULL, &id), COFFER_OK);
    sigv4_identity_clean(&id);

    /* Not JSON, JSON without the fields, an inactive key. */
    static const char *const bad[] = {"not json", "{}", "[1,2]",
                                      "{\"account\":\"000000000000\",\"principal_arn\":\"x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
        assert_int_equal(store_txn_put(t, kb, coffer_cursor_from_str(bad[i])), COFFER_OK);
        assert_int_equal(store_txn_commit(t), COFFER_OK);
        assert_int_equal(lookup(cold, b, NULL, &id), COFFER_ERR_STORE);
    }
    coffer_buf_reset(&rec);
    assert_int_equal(store_get(f->st, ka, &rec), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&rec), COFFER_OK);
    char *inactive = strdup((const char *)rec.data);
    char *st = strstr(inactive, "\"Active\"");
    assert_non_null(st);
    memcpy(st, "\"Paused\"", 8);
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, ka, coffer_cursor_from_str(inactive)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    iam_creds *cold2 = NULL;
    assert_int_equal(iam_creds_new(f->st, f->sl, &cold2), COFFER_OK);
    assert_int_equal(lookup(cold2, a, NULL, &id), COFFER_ERR_UNRECOGNIZED_CLIENT);
    iam_creds_free(cold2);
    free(inactive);
    iam_creds_free(cold);
    coffer_buf_free(&rec);
    coffer_buf_free(&sa);
    coffer_buf_free(&sb);
}

/* Creation under store faults: an error, nothing stored, nothing cached, no leak. */
static void test_create_under_faults(void **state)
{
    uint8_t key[SEAL_ROOT_KEY_LEN];
    memset(key, 1, sizeof(key));
    store *inner = NULL, *st = NULL;
    struct seal_provider *p = NULL;
    seal *sl = NULL;
    iam_creds *c = NULL;
    assert_int_equal(store_open("mem:", &inner), COFFER_OK);
    assert_int_equal(store_fault_wrap(inner, &st), COFFER_OK);
    assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    assert_int_equal(iam_creds_new(st, sl, &c), COFFER_OK);
    for (int n = 0; n < 2; n++) {
        char akid[21] = "";
        coffer_buf secret = COFFER_SECRET_BUF_INIT;
        store_fault_set(st, n);
        assert_int_equal(iam_creds_create(c, ACCOUNT, ROOT_ARN, API_PRINCIPAL_ROOT, akid, &secret),
                         COFFER_ERR_STORE);
        assert_int_equal(secret.len, 0);
        assert_string_equal(akid, "");
        coffer_buf_free(&secret);
    }
    store_fault_set(st, -1);
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(store_get(st, "iam/access-key/AKIAAAAAAAAAAAAAAAAA", &b), COFFER_ERR_NOT_FOUND);
    char akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    assert_int_equal(iam_creds_create(c, ACCOUNT, ROOT_ARN, API_PRINCIPAL_ROOT, akid, &secret), COFFER_OK);
    coffer_buf_free(&secret);
    iam_creds_free(c);
    seal_free(sl);
    store_close(st);
}

/* The verifier with iam_creds_lookup as its credential source accepts a request we signed. */
static void test_sigv4_round_trip(void **state)
{
    struct fixture *f = *state;
    char akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT, auth = COFFER_BUF_INIT;
    create_root_key(f->creds, akid, &secret);

    const char *body = "{\"KeyId\":\"alias/x\"}";
    struct sigv4_header hdrs[4] = {
        {"Host", "127.0.0.1:8443"},
        {"X-Amz-Date", "20261123T090000Z"},
        {"X-Amz-Target", "TrentService.DescribeKey"},
        {"Authorization", NULL},
    };
    struct sigv4_request req = {.method = "POST",
                                .path = "/",
                                .query = "",
                                .headers = hdrs,
                                .n_headers = 3,
                                .body = coffer_cursor_from_str(body)};
    struct sigv4_credentials cr = {akid, (const char *)secret.data, NULL};
    assert_int_equal(
        sigv4_sign(&req, &cr, "us-east-1", "kms", "20261123T090000Z", "host;x-amz-date;x-amz-target", &auth),
        COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&auth), COFFER_OK);
    hdrs[3].value = (const char *)auth.data;
    req.n_headers = 4;
    struct sigv4_verify_opts opts = {"us-east-1", "kms", 1795424400, SIGV4_DEFAULT_SKEW_S};
    struct sigv4_identity who;
    coffer_err rc = sigv4_verify(&req, &opts, iam_creds_lookup, f->creds, &who);
    assert_int_equal(rc, COFFER_OK);
    assert_string_equal(who.account_id, ACCOUNT);
    assert_string_equal(who.principal_arn, ROOT_ARN);
    sigv4_identity_clean(&who);

    /* A different secret for the same AKID is refused. */
    coffer_buf forged = COFFER_BUF_INIT;
    char wrong[41];
    memcpy(wrong, secret.data, 41);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    struct sigv4_credentials bad = {akid, wrong, NULL};
    req.n_headers = 3;
    assert_int_equal(sigv4_sign(&req, &bad, "us-east-1", "kms", "20261123T090000Z",
                                "host;x-amz-date;x-amz-target", &forged),
                     COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&forged), COFFER_OK);
    hdrs[3].value = (const char *)forged.data;
    req.n_headers = 4;
    assert_int_equal(sigv4_verify(&req, &opts, iam_creds_lookup, f->creds, &who),
                     COFFER_ERR_INVALID_SIGNATURE);
    coffer_buf_free(&forged);
    coffer_buf_free(&auth);
    coffer_buf_free(&secret);
}

#define LOOKUP_THREADS 4

struct lookup_arg {
    iam_creds *c;
    char akid[21];
    const uint8_t *secret;
};

static void *lookup_worker(void *p)
{
    struct lookup_arg *a = p;
    for (int i = 0; i < 500; i++) {
        struct sigv4_identity id;
        if (lookup(a->c, a->akid, NULL, &id) != COFFER_OK || memcmp(id.secret.data, a->secret, 40) != 0) {
            return (void *)1;
        }
        sigv4_identity_clean(&id);
    }
    return NULL;
}

static void test_concurrent_lookups(void **state)
{
    struct fixture *f = *state;
    struct lookup_arg args[LOOKUP_THREADS];
    coffer_buf secrets[LOOKUP_THREADS];
    pthread_t th[LOOKUP_THREADS];
    iam_creds *cold = NULL;
    /* Cold cache: threads race to fill it. */
    assert_int_equal(iam_creds_new(f->st, f->sl, &cold), COFFER_OK);
    for (int i = 0; i < LOOKUP_THREADS; i++) {
        coffer_buf_init(&secrets[i], true);
        create_root_key(f->creds, args[i].akid, &secrets[i]);
        args[i].c = cold;
        args[i].secret = secrets[i].data;
    }
    for (int i = 0; i < LOOKUP_THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, lookup_worker, &args[i]), 0);
    }
    for (int i = 0; i < LOOKUP_THREADS; i++) {
        void *res = (void *)-1;
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
        coffer_buf_free(&secrets[i]);
    }
    iam_creds_free(cold);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_then_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_hit_skips_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persisted_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_never_in_clear_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_and_tampered_records, setup, teardown),
        cmocka_unit_test(test_create_under_faults),
        cmocka_unit_test_setup_teardown(test_sigv4_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lookups, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
