/*
 * Unit tests for src/common/map: insert, get, replace, delete, growth, iteration (with the
 * deletion a sweep does), odd keys (empty, long, embedded NUL), value ownership, and SipHash-2-4
 * against its published vector and OpenSSL's implementation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/map.h"

static int frees; /* values released through count_free */

static void count_free(void *v)
{
    frees++;
    free(v);
}

static int *int_new(int n)
{
    int *p = malloc(sizeof(*p));
    assert_non_null(p);
    *p = n;
    return p;
}

static int get_int(const coffer_map *m, const char *key)
{
    const int *p = coffer_map_get(m, key);
    return p != NULL ? *p : -1;
}

static void test_insert_get_replace_delete(void **state)
{
    coffer_map m;
    coffer_map_init(&m, count_free);
    frees = 0;
    assert_null(coffer_map_get(&m, "a")); /* empty, nothing allocated yet */
    assert_null(coffer_map_take(&m, "a"));
    assert_false(coffer_map_delete(&m, "a"));

    assert_int_equal(coffer_map_put(&m, "a", int_new(1)), COFFER_OK);
    assert_int_equal(coffer_map_put(&m, "b", int_new(2)), COFFER_OK);
    assert_int_equal(coffer_map_count(&m), 2);
    assert_int_equal(get_int(&m, "a"), 1);
    assert_int_equal(get_int(&m, "b"), 2);
    assert_null(coffer_map_get(&m, "c"));
    assert_null(coffer_map_get(&m, "ab"));

    /* Replacing frees the old value, keeps the count. */
    assert_int_equal(coffer_map_put(&m, "a", int_new(10)), COFFER_OK);
    assert_int_equal(frees, 1);
    assert_int_equal(coffer_map_count(&m), 2);
    assert_int_equal(get_int(&m, "a"), 10);
    /* Putting the same pointer again frees nothing. */
    assert_int_equal(coffer_map_put(&m, "a", coffer_map_get(&m, "a")), COFFER_OK);
    assert_int_equal(frees, 1);

    /* take hands the value back unfreed; delete frees it. */
    int *b = coffer_map_take(&m, "b");
    assert_non_null(b);
    assert_int_equal(*b, 2);
    assert_int_equal(frees, 1);
    free(b);
    assert_null(coffer_map_get(&m, "b"));
    assert_true(coffer_map_delete(&m, "a"));
    assert_int_equal(frees, 2);
    assert_false(coffer_map_delete(&m, "a"));
    assert_int_equal(coffer_map_count(&m), 0);

    /* A NULL value is refused: NULL is what get says for "absent". */
    assert_int_equal(coffer_map_put(&m, "x", NULL), COFFER_ERR_USAGE);
    assert_int_equal(coffer_map_count(&m), 0);
    coffer_map_clean(&m);
}

static void test_keys_are_copied(void **state)
{
    coffer_map m;
    coffer_map_init(&m, count_free);
    char key[8] = "key";
    assert_int_equal(coffer_map_put(&m, key, int_new(7)), COFFER_OK);
    memcpy(key, "xyz", 4); /* the caller's buffer changes; the map's key does not */
    assert_int_equal(get_int(&m, "key"), 7);
    assert_null(coffer_map_get(&m, "xyz"));
    coffer_map_clean(&m);
}

static void test_growth_many_keys(void **state)
{
    enum { N = 20000 };
    coffer_map m;
    coffer_map_init(&m, count_free);
    frees = 0;
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(coffer_map_put(&m, key, int_new(i)), COFFER_OK);
    }
    assert_int_equal(coffer_map_count(&m), N);
    assert_true(m.nslots >= N); /* grew: chains stay short */
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(get_int(&m, key), i);
    }
    /* Delete the odd ones, the even ones stay. */
    for (int i = 1; i < N; i += 2) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_true(coffer_map_delete(&m, key));
    }
    assert_int_equal(coffer_map_count(&m), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(get_int(&m, key), i % 2 == 0 ? i : -1);
    }
    frees = 0;
    coffer_map_clean(&m);
    assert_int_equal(frees, N / 2);
    assert_int_equal(coffer_map_count(&m), 0);
    assert_null(m.slots);
    /* Usable again after clean, with the same free function. */
    assert_int_equal(coffer_map_put(&m, "again", int_new(1)), COFFER_OK);
    assert_int_equal(get_int(&m, "again"), 1);
    frees = 0;
    coffer_map_clean(&m);
    assert_int_equal(frees, 1);
}

static void test_iteration(void **state)
{
    enum { N = 1000 };
    coffer_map m;
    coffer_map_init(&m, count_free);
    coffer_map_iter it;
    coffer_map_iter_init(&it, &m);
    assert_false(coffer_map_iter_next(&it, NULL, NULL, NULL)); /* empty map */

    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(coffer_map_put(&m, key, int_new(i)), COFFER_OK);
    }
    static unsigned char seen[N];
    memset(seen, 0, sizeof(seen));
    const char *k;
    size_t klen;
    void *v;
    size_t n = 0;
    coffer_map_iter_init(&it, &m);
    while (coffer_map_iter_next(&it, &k, &klen, &v)) {
        int i = *(int *)v;
        snprintf(key, sizeof(key), "k%d", i);
        assert_string_equal(k, key); /* keys read as C strings */
        assert_int_equal(klen, strlen(key));
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        n++;
    }
    assert_int_equal(n, N);
    coffer_map_clean(&m);
}

static void test_delete_during_iteration(void **state)
{
    enum { N = 5000 };
    coffer_map m;
    coffer_map_init(&m, count_free);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(coffer_map_put(&m, key, int_new(i)), COFFER_OK);
    }
    /* A sweep: delete every entry divisible by 3 as it is returned. */
    frees = 0;
    size_t visited = 0;
    const char *k;
    size_t klen;
    void *v;
    coffer_map_iter it;
    coffer_map_iter_init(&it, &m);
    while (coffer_map_iter_next(&it, &k, &klen, &v)) {
        visited++;
        if (*(int *)v % 3 == 0) {
            assert_true(coffer_map_delete_n(&m, k, klen)); /* frees k too: not used after */
        }
    }
    assert_int_equal(visited, N);
    assert_int_equal(frees, (N + 2) / 3);
    assert_int_equal(coffer_map_count(&m), N - (N + 2) / 3);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(get_int(&m, key), i % 3 == 0 ? -1 : i);
    }
    /* Taking every entry while iterating empties the map. */
    coffer_map_iter_init(&it, &m);
    while (coffer_map_iter_next(&it, &k, &klen, &v)) {
        assert_ptr_equal(coffer_map_take_n(&m, k, klen), v);
        free(v);
    }
    assert_int_equal(coffer_map_count(&m), 0);
    coffer_map_clean(&m);
}

static void test_odd_keys(void **state)
{
    coffer_map m;
    coffer_map_init(&m, count_free);
    /* The empty key is a key like any other. */
    assert_int_equal(coffer_map_put(&m, "", int_new(1)), COFFER_OK);
    assert_int_equal(get_int(&m, ""), 1);
    assert_int_equal(coffer_map_put_n(&m, NULL, 0, int_new(2)), COFFER_OK); /* same key */
    assert_int_equal(coffer_map_count(&m), 1);
    assert_int_equal(get_int(&m, ""), 2);

    /* Long keys, differing only in their last byte. */
    size_t long_len = 100000;
    char *a = malloc(long_len + 1), *b = malloc(long_len + 1);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 'x', long_len);
    memset(b, 'x', long_len);
    a[long_len] = b[long_len] = '\0';
    b[long_len - 1] = 'y';
    assert_int_equal(coffer_map_put(&m, a, int_new(3)), COFFER_OK);
    assert_int_equal(coffer_map_put(&m, b, int_new(4)), COFFER_OK);
    assert_int_equal(get_int(&m, a), 3);
    assert_int_equal(get_int(&m, b), 4);
    a[long_len - 1] = '\0'; /* a prefix of both is neither */
    assert_null(coffer_map_get(&m, a));

    /* Binary keys: an embedded NUL separates "acct\0bucket" from "acct". */
    const char k1[] = {'a', 'c', 'c', 't', '\0', 'b'};
    assert_int_equal(coffer_map_put_n(&m, k1, sizeof(k1), int_new(5)), COFFER_OK);
    assert_null(coffer_map_get(&m, "acct"));
    int *p = coffer_map_get_n(&m, k1, sizeof(k1));
    assert_non_null(p);
    assert_int_equal(*p, 5);
    assert_int_equal(coffer_map_count(&m), 4);
    free(a);
    free(b);
    coffer_map_clean(&m);
}

static void test_zeroed_map_frees_nothing(void **state)
{
    coffer_map m = {0};
    int v = 1; /* not heap: a map without free_value must never free it */
    assert_null(coffer_map_get(&m, "k"));
    assert_int_equal(coffer_map_put(&m, "k", &v), COFFER_OK);
    assert_ptr_equal(coffer_map_get(&m, "k"), &v);
    assert_true(coffer_map_delete(&m, "k"));
    assert_int_equal(coffer_map_put(&m, "k", &v), COFFER_OK);
    coffer_map_clean(&m);
    coffer_map_clean(&m); /* twice is fine */
}

static void test_tables_have_their_own_hash_key(void **state)
{
    coffer_map a, b;
    coffer_map_init(&a, NULL);
    coffer_map_init(&b, NULL);
    int v = 0;
    assert_int_equal(coffer_map_put(&a, "k", &v), COFFER_OK);
    assert_int_equal(coffer_map_put(&b, "k", &v), COFFER_OK);
    /* 2^-128 chance of a false failure. */
    assert_memory_not_equal(a.hash_key, b.hash_key, sizeof(a.hash_key));
    coffer_map_clean(&a);
    coffer_map_clean(&b);
}

static uint64_t openssl_siphash24(const uint8_t key[16], const uint8_t *data, size_t n)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    assert_non_null(mac);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    assert_non_null(ctx);
    unsigned int size = 8, c_rounds = 2, d_rounds = 4;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c_rounds),
        OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d_rounds),
        OSSL_PARAM_construct_end(),
    };
    uint8_t out[8];
    size_t out_len = 0;
    assert_int_equal(EVP_MAC_init(ctx, key, 16, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, data, n), 1);
    assert_int_equal(EVP_MAC_final(ctx, out, &out_len, sizeof(out)), 1);
    assert_int_equal(out_len, 8);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | out[i];
    }
    return v;
}

static void test_siphash(void **state)
{
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++) {
        key[i] = (uint8_t)i;
    }
    for (int i = 0; i < 64; i++) {
        msg[i] = (uint8_t)i;
    }
    /* The paper's appendix A vector: key 00..0f, message 00..0e. */
    assert_true(coffer_siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
    /* Every length through several blocks matches OpenSSL's SipHash-2-4. */
    for (size_t n = 0; n <= sizeof(msg); n++) {
        assert_true(coffer_siphash24(key, msg, n) == openssl_siphash24(key, msg, n));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_get_replace_delete),
        cmocka_unit_test(test_keys_are_copied),
        cmocka_unit_test(test_growth_many_keys),
        cmocka_unit_test(test_iteration),
        cmocka_unit_test(test_delete_during_iteration),
        cmocka_unit_test(test_odd_keys),
        cmocka_unit_test(test_zeroed_map_frees_nothing),
        cmocka_unit_test(test_tables_have_their_own_hash_key),
        cmocka_unit_test(test_siphash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
