/*
 * Unit tests for src/quota: token buckets with a controlled clock. A bucket grants exactly
 * its one-second burst, refills continuously, is independent per account and per bucket
 * name, and never grants more than capacity + refill under concurrent use.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "quota/quota.h"

#define T0 1000000000000ULL /* an arbitrary monotonic reading */
#define MS 1000000ULL

static int take_n(quota *q, const char *acct, const char *bucket, double rps, uint64_t now, int n)
{
    int granted = 0;
    for (int i = 0; i < n; i++) {
        granted += quota_take(q, acct, bucket, rps, now) ? 1 : 0;
    }
    return granted;
}

static void test_burst_then_refuse(void **state)
{
    quota *q = quota_new(100);
    assert_non_null(q);
    assert_int_equal(take_n(q, "111111111111", "crypto", 0, T0, 100), 100);
    assert_false(quota_take(q, "111111111111", "crypto", 0, T0));
    assert_false(quota_take(q, "111111111111", "crypto", 0, T0));
    quota_free(q);
}

static void test_refill(void **state)
{
    quota *q = quota_new(100);
    assert_int_equal(take_n(q, "a", "crypto", 0, T0, 200), 100);
    /* 100 rps: one token per 10 ms, continuous. */
    assert_false(quota_take(q, "a", "crypto", 0, T0 + 9 * MS));
    assert_true(quota_take(q, "a", "crypto", 0, T0 + 10 * MS));
    assert_false(quota_take(q, "a", "crypto", 0, T0 + 10 * MS));
    assert_int_equal(take_n(q, "a", "crypto", 0, T0 + 60 * MS, 10), 5);
    /* A long idle period refills to capacity, never beyond. */
    assert_int_equal(take_n(q, "a", "crypto", 0, T0 + 3600 * 1000 * MS, 1000), 100);
    /* Time going backwards grants nothing extra. */
    assert_false(quota_take(q, "a", "crypto", 0, T0));
    quota_free(q);
}

static void test_independent_accounts_and_buckets(void **state)
{
    quota *q = quota_new(10);
    assert_int_equal(take_n(q, "acct-1", "crypto", 0, T0, 50), 10);
    assert_int_equal(take_n(q, "acct-2", "crypto", 0, T0, 50), 10);
    /* Control-plane buckets have their own rate, separate from crypto and from each other. */
    assert_int_equal(take_n(q, "acct-1", "CreateKey", 5, T0, 50), 5);
    assert_int_equal(take_n(q, "acct-1", "ListKeys", 3, T0, 50), 3);
    /* The rps argument is ignored for "crypto": the configured rate applies. */
    assert_int_equal(take_n(q, "acct-3", "crypto", 1000, T0, 50), 10);
    /* Keys do not collide through concatenation: ("ab","c") vs ("a","bc"). */
    assert_int_equal(take_n(q, "ab", "c", 2, T0, 10), 2);
    assert_int_equal(take_n(q, "a", "bc", 2, T0, 10), 2);
    quota_free(q);
}

static void test_disabled_and_edge_cases(void **state)
{
    quota *q = quota_new(0);
    assert_int_equal(take_n(q, "a", "crypto", 0, T0, 100000), 100000);
    assert_int_equal(take_n(q, "a", "CreateKey", 1, T0, 1000), 1000);
    quota_free(q);
    q = quota_new(-5);
    assert_true(quota_take(q, "a", "crypto", 1, T0));
    quota_free(q);
    quota_free(NULL);
    assert_true(quota_take(NULL, "a", "crypto", 1, T0));

    q = quota_new(10);
    /* An operation without a rate is not limited. */
    assert_int_equal(take_n(q, "a", "DescribeKey", 0, T0, 100), 100);
    /* Fractional rates still allow one request, then refill slowly. */
    assert_true(quota_take(q, "a", "Slow", 0.5, T0));
    assert_false(quota_take(q, "a", "Slow", 0.5, T0 + 1000 * MS));
    assert_true(quota_take(q, "a", "Slow", 0.5, T0 + 2000 * MS));
    /* Missing or oversized names are refused, not crashed on. */
    assert_false(quota_take(q, NULL, "crypto", 0, T0));
    assert_false(quota_take(q, "a", NULL, 0, T0));
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(quota_take(q, big, "crypto", 0, T0));
    /* A changed rate for an existing bucket is adopted, the burst capped to it. */
    assert_int_equal(take_n(q, "b", "Op", 100, T0, 10), 10);
    assert_int_equal(take_n(q, "b", "Op", 5, T0, 100), 5);
    quota_free(q);
}

static void test_many_accounts_stay_bounded(void **state)
{
    /* Many accounts each touching once: idle buckets are swept, decisions stay right. */
    quota *q = quota_new(2);
    char acct[32];
    for (int i = 0; i < 200000; i++) {
        snprintf(acct, sizeof(acct), "%012d", i);
        uint64_t now = T0 + (uint64_t)i * MS; /* 1 ms apart: old buckets are full again */
        assert_true(quota_take(q, acct, "crypto", 0, now));
    }
    /* A hot account keeps its state through sweeps. */
    uint64_t t_end = T0 + 200000 * MS;
    assert_int_equal(take_n(q, "hot", "crypto", 0, t_end, 5), 2);
    for (int i = 0; i < 70000; i++) {
        snprintf(acct, sizeof(acct), "x%011d", i);
        assert_true(quota_take(q, acct, "crypto", 0, t_end + 10 * MS));
    }
    assert_false(quota_take(q, "hot", "crypto", 0, t_end + 10 * MS));
    assert_true(quota_take(q, "hot", "crypto", 0, t_end + 600 * MS));
    quota_free(q);
}

struct hammer {
    quota *q;
    _Atomic uint64_t *clock;
    int iterations;
    int granted;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < h->iterations; i++) {
        /* Every thread advances the shared clock by 1 us and charges at its reading. */
        uint64_t now = atomic_fetch_add(h->clock, 1000) + 1000;
        h->granted += quota_take(h->q, "shared", "crypto", 0, now) ? 1 : 0;
    }
    return NULL;
}

static void test_threads_never_exceed(void **state)
{
    enum { THREADS = 8, ITER = 50000 };
    const double rps = 1000;
    quota *q = quota_new(rps);
    _Atomic uint64_t clock = T0;
    pthread_t th[THREADS];
    struct hammer h[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){q, &clock, ITER, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        total += h[i].granted;
    }
    double elapsed_s = (double)(atomic_load(&clock) - T0) / 1e9; /* 0.4 s of simulated time */
    double bound = rps + rps * elapsed_s;
    assert_true(total <= (int)bound);
    /* And the bucket did not starve: nearly the whole allowance was granted. */
    assert_true(total >= (int)(bound * 0.95));
    quota_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refuse),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_independent_accounts_and_buckets),
        cmocka_unit_test(test_disabled_and_edge_cases),
        cmocka_unit_test(test_many_accounts_stay_bounded),
        cmocka_unit_test(test_threads_never_exceed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
