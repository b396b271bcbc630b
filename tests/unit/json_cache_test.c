/*
 * Unit tests for src/common/json_cache: a hit is a copy the caller may change, entries expire,
 * an invalidation removes the record and refuses what was read before it (the generation), the
 * bound starts the cache over, and bad arguments are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/json_cache.h"

static json_cache *cache_new(size_t max, int64_t ttl)
{
    json_cache *c = NULL;
    assert_int_equal(json_cache_new(max, ttl, &c), COFFER_OK);
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
    json_cache_put(c, "c", r, json_cache_generation(c), 0); /* full: starts over with "c" */
    assert_null(json_cache_get(c, "a", 1));
    assert_null(json_cache_get(c, "b", 1));
    json_t *got = json_cache_get(c, "c", 1);
    assert_non_null(got);
    json_decref(got);
    json_decref(r);
    json_cache_free(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    json_cache *c = (json_cache *)1;
    assert_int_equal(json_cache_new(0, 1000, &c), COFFER_ERR_USAGE);
    assert_null(c);
    assert_int_equal(json_cache_new(10, 0, &c), COFFER_ERR_USAGE);
    coffer_clear_err();
    /* a NULL cache is no cache */
    assert_null(json_cache_get(NULL, "k", 0));
    assert_int_equal(json_cache_generation(NULL), 0);
    json_cache_put(NULL, "k", NULL, 0, 0);
    json_cache_invalidate(NULL, NULL);
    json_cache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_is_a_private_copy),
        cmocka_unit_test(test_entries_expire),
        cmocka_unit_test(test_invalidation_and_generation),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
