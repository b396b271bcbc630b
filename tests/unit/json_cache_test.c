/*
 * Unit tests for src/common/json_cache: a hit is a copy the caller may change, entries expire,
 * an invalidation removes the record and refuses what was read before it (the generation), the
 * entry and byte bounds push out the oldest entries, a record too large for its share of the
 * budget is not cached, entries are charged what their trees take, and bad arguments are
 * refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/json_cache.h"

#define MIB (1024u * 1024u)

static json_cache *cache_new_bytes(size_t max, size_t max_bytes, int64_t ttl)
{
    json_cache *c = NULL;
    assert_int_equal(json_cache_new(max, max_bytes, ttl, &c), COFFER_OK);
    assert_non_null(c);
    return c;
}

static json_cache *cache_new(size_t max, int64_t ttl)
{
    json_cache *c = NULL;
    assert_int_equal(json_cache_new(max, 64 * MIB, ttl, &c), COFFER_OK);
    assert_non_null(c);
    return c;
}

static json_t *rec(const char *v)
{
    json_t *r = json_pack("{s:s, s:[{s:s}]}", "Name", v, "Versions", "Data", v);
    assert_non_null(r);
    return r;
}

static const char *name_of(const json_t *r)
{
    return json_string_value(json_object_get(r, "Name"));
}

static void test_hit_is_a_private_copy(void **state)
{
    (void)state;
    json_cache *c = cache_new(10, 1000);
    assert_null(json_cache_get(c, "k", 0));
    json_t *r = rec("one");
    json_cache_put(c, "k", r, json_cache_generation(c), 0);
    /* the caller's record is its own: changing it after the put changes nothing cached */
    json_object_set_new(r, "Name", json_string("changed"));
    json_t *a = json_cache_get(c, "k", 10);
    assert_non_null(a);
    assert_string_equal(name_of(a), "one");
    assert_ptr_not_equal(a, r);
    /* nor does changing what a hit returned */
    json_object_set_new(a, "Name", json_string("mine"));
    json_t *b = json_cache_get(c, "k", 20);
    assert_string_equal(name_of(b), "one");
    json_decref(r);
    json_decref(a);
    json_decref(b);
    json_cache_free(c);
}

static void test_entries_expire(void **state)
{
    (void)state;
    json_cache *c = cache_new(10, 1000);
    json_t *r = rec("one");
    json_cache_put(c, "k", r, json_cache_generation(c), 5000);
    json_t *a = json_cache_get(c, "k", 5999);
    assert_non_null(a);
    json_decref(a);
    assert_null(json_cache_get(c, "k", 6000)); /* read 1000 ms ago: too old */
    assert_null(json_cache_get(c, "k", 5001)); /* and gone, not back */
    json_decref(r);
    json_cache_free(c);
}

static void test_invalidation_and_generation(void **state)
{
    (void)state;
    json_cache *c = cache_new(10, 1000);
    json_t *r = rec("old");
    json_cache_put(c, "a", r, json_cache_generation(c), 0);
    json_cache_put(c, "b", r, json_cache_generation(c), 0);
    json_cache_invalidate(c, "a");
    assert_null(json_cache_get(c, "a", 1));
    json_t *b = json_cache_get(c, "b", 1);
    assert_non_null(b); /* another key stays */
    json_decref(b);

    /* A reader took the generation, read "old", and a write committed and invalidated before
     * the reader put what it read: the stale record must not land. */
    uint64_t gen = json_cache_generation(c);
    json_cache_invalidate(c, "a");
    json_cache_put(c, "a", r, gen, 2);
    assert_null(json_cache_get(c, "a", 3));
    /* read after the invalidation: cached */
    json_cache_put(c, "a", r, json_cache_generation(c), 4);
    json_t *a = json_cache_get(c, "a", 5);
    assert_non_null(a);
    json_decref(a);

    json_cache_invalidate(c, NULL); /* everything */
    assert_null(json_cache_get(c, "a", 6));
    assert_null(json_cache_get(c, "b", 6));
    json_decref(r);
    json_cache_free(c);
}

static void test_bound(void **state)
{
    (void)state;
    json_cache *c = cache_new(2, 1000);
    json_t *r = rec("x");
    json_cache_put(c, "a", r, json_cache_generation(c), 0);
    json_cache_put(c, "b", r, json_cache_generation(c), 0);
    json_cache_put(c, "b", r, json_cache_generation(c), 0); /* a replacement does not overflow */
    json_t *a = json_cache_get(c, "a", 1);
    assert_non_null(a);
    json_decref(a);
    json_cache_put(c, "c", r, json_cache_generation(c), 0); /* full: the oldest ("a") leaves */
    assert_null(json_cache_get(c, "a", 1));
    json_t *got = json_cache_get(c, "b", 1);
    assert_non_null(got);
    json_decref(got);
    got = json_cache_get(c, "c", 1);
    assert_non_null(got);
    json_decref(got);
    json_decref(r);
    json_cache_free(c);
}

/* A record of `n` versions, each with a value of `len` bytes: the shape of a parameter. */
static json_t *big_rec(size_t n, size_t len)
{
    char *v = malloc(len + 1);
    assert_non_null(v);
    memset(v, 'v', len);
    v[len] = 0;
    json_t *versions = json_array();
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            json_array_append_new(versions, json_pack("{s:I, s:s}", "Version", (json_int_t)i, "Value", v)),
            0);
    }
    free(v);
    json_t *r = json_pack("{s:s, s:o}", "Name", "big", "Versions", versions);
    assert_non_null(r);
    return r;
}

static size_t used_bytes(json_cache *c, size_t *entries)
{
    size_t n, bytes;
    json_cache_usage(c, &n, &bytes);
    if (entries != NULL) {
        *entries = n;
    }
    return bytes;
}

static void test_byte_bound_pushes_out_the_oldest(void **state)
{
    (void)state;
    json_t *r = big_rec(10, 10000); /* about 100 KB */
    json_cache *probe = cache_new(10, 1000);
    json_cache_put(probe, "k00", r, 0, 0);
    size_t one = used_bytes(probe, NULL);
    assert_true(one >= 100000);
    json_cache_free(probe);

    /* Room for ten such records (the entry bound is far away); the eleventh pushes out "k00". */
    json_cache *c = cache_new_bytes(10000, 10 * one + one / 2, 1000);
    char key[16];
    for (int i = 0; i < 11; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        json_cache_put(c, key, r, json_cache_generation(c), 0);
        assert_true(used_bytes(c, NULL) <= 10 * one + one / 2);
    }
    size_t entries = 0;
    assert_int_equal(used_bytes(c, &entries), 10 * one);
    assert_int_equal(entries, 10);
    assert_null(json_cache_get(c, "k00", 1));
    for (int i = 1; i < 11; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        json_t *got = json_cache_get(c, key, 1);
        assert_non_null(got);
        json_decref(got);
    }
    /* A replacement is charged once, not twice. */
    json_cache_put(c, "k05", r, json_cache_generation(c), 2);
    assert_int_equal(used_bytes(c, &entries), 10 * one);
    /* What leaves is no longer charged: expiry, invalidation of one key, of all. */
    assert_null(json_cache_get(c, "k01", 1000));
    assert_int_equal(used_bytes(c, NULL), 9 * one);
    json_cache_invalidate(c, "k02");
    assert_int_equal(used_bytes(c, &entries), 8 * one);
    assert_int_equal(entries, 8);
    json_cache_invalidate(c, NULL);
    assert_int_equal(used_bytes(c, &entries), 0);
    assert_int_equal(entries, 0);
    json_decref(r);
    json_cache_free(c);
}

static void test_large_record_is_not_cached(void **state)
{
    (void)state;
    /* A parameter's 100 versions of 8 KB each: about 800 KB, over 1/8 of a 4 MiB budget. */
    json_cache *c = cache_new_bytes(10000, 4 * MIB, 1000);
    json_t *big = big_rec(100, 8192);
    json_cache_put(c, "big", big, json_cache_generation(c), 0);
    assert_null(json_cache_get(c, "big", 1));
    size_t entries = 1;
    assert_int_equal(used_bytes(c, &entries), 0);
    assert_int_equal(entries, 0);
    /* One under the share is cached. */
    json_t *small = big_rec(10, 8192);
    json_cache_put(c, "small", small, json_cache_generation(c), 0);
    json_t *got = json_cache_get(c, "small", 1);
    assert_non_null(got);
    assert_true(json_equal(got, small));
    json_decref(got);
    json_decref(big);
    json_decref(small);
    json_cache_free(c);
}

static void test_entries_are_charged_their_trees(void **state)
{
    (void)state;
    /* Long strings: at least their bytes. */
    json_t *r = big_rec(100, 8192);
    char *text = json_dumps(r, JSON_COMPACT);
    assert_non_null(text);
    assert_true(json_cache_tree_bytes(r) >= strlen(text));
    free(text);
    json_decref(r);
    /* Many small members: each value and member costs far more in memory than in its text
     * ("a":1 is six bytes), and the charge says so. */
    json_t *o = json_object();
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "%d", i);
        assert_int_equal(json_object_set_new(o, key, json_integer(i)), 0);
    }
    text = json_dumps(o, JSON_COMPACT);
    assert_non_null(text);
    assert_true(json_cache_tree_bytes(o) >= 10 * strlen(text));
    free(text);
    json_decref(o);
    /* Shared singletons cost nothing of their own; containers and numbers do. */
    assert_int_equal(json_cache_tree_bytes(json_true()), 0);
    json_t *empty = json_object();
    assert_true(json_cache_tree_bytes(empty) > 0);
    json_decref(empty);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    json_cache *c = (json_cache *)1;
    assert_int_equal(json_cache_new(0, MIB, 1000, &c), COFFER_ERR_USAGE);
    assert_null(c);
    assert_int_equal(json_cache_new(10, 0, 1000, &c), COFFER_ERR_USAGE);
    assert_int_equal(json_cache_new(10, MIB, 0, &c), COFFER_ERR_USAGE);
    coffer_clear_err();
    /* a NULL cache is no cache */
    assert_null(json_cache_get(NULL, "k", 0));
    assert_int_equal(json_cache_generation(NULL), 0);
    json_cache_put(NULL, "k", NULL, 0, 0);
    json_cache_invalidate(NULL, NULL);
    size_t entries = 1, bytes = 1;
    json_cache_usage(NULL, &entries, &bytes);
    assert_int_equal(entries + bytes, 0);
    json_cache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_is_a_private_copy),
        cmocka_unit_test(test_entries_expire),
        cmocka_unit_test(test_invalidation_and_generation),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_byte_bound_pushes_out_the_oldest),
        cmocka_unit_test(test_large_record_is_not_cached),
        cmocka_unit_test(test_entries_are_charged_their_trees),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
