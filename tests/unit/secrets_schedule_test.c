/*
 * Unit tests for rotation schedules (src/secrets/secrets_schedule.c): rate() and cron()
 * expressions as AWS accepts and refuses them, AutomaticallyAfterDays, Duration, and when each
 * opens its next window (rates from the last rotation, scaled days; cron in UTC, with lists,
 * ranges, steps, names, L, D#n and DL), and the windows rotations start in (Duration, AWS's
 * defaults, never into the next day or window; a start spread over the window).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "secrets/secrets_internal.h"

#define DAY 86400000LL
#define HOUR 3600000LL
#define MIN 60000LL

/* Epoch ms of a UTC date. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * 1000;
}

static void parse_ok(const char *expr, struct sm_schedule *s)
{
    coffer_err rc = sm_schedule_parse(expr, 0, NULL, s);
    if (rc != COFFER_OK) {
        fail_msg("%s: %s", expr, coffer_last_message());
    }
}

static void parse_bad(const char *expr)
{
    struct sm_schedule s;
    if (sm_schedule_parse(expr, 0, NULL, &s) != COFFER_ERR_INVALID_PARAMETER) {
        fail_msg("%s was accepted", expr);
    }
}

static void test_rates(void **state)
{
    (void)state;
    struct sm_schedule s;
    parse_ok("rate(10 days)", &s);
    assert_int_equal(s.kind, SM_SCHED_DAYS);
    assert_int_equal(s.every, 10);
    parse_ok("rate(1 day)", &s);
    assert_int_equal(s.every, 1);
    parse_ok("rate(4 hours)", &s);
    assert_int_equal(s.kind, SM_SCHED_HOURS);
    parse_ok("rate(1000 days)", &s);
    parse_bad("rate(3 hours)"); /* more often than every 4 hours */
    parse_bad("rate(0 days)");
    parse_bad("rate(1001 days)");
    parse_bad("rate(5 minutes)");
    parse_bad("rate(days)");
    parse_bad("rate(-1 days)");
    parse_bad("rate(10days)");
    parse_bad("rate 10 days");
    parse_bad("at(2026-01-01T00:00:00)");
    /* a rate counts from the last rotation, in days of the given length */
    parse_ok("rate(2 days)", &s);
    assert_int_equal(sm_schedule_next(&s, 1000, 1000, DAY), 1000 + 2 * DAY);
    assert_int_equal(sm_schedule_next(&s, 0, 0, 500), 1000); /* scaled: a day of 500 ms */
    /* missed windows are not replayed: the next one still ahead */
    assert_int_equal(sm_schedule_next(&s, 0, 2500, 500), 3000);
    assert_int_equal(sm_schedule_next(&s, 0, 3000, 500), 4000);
    parse_ok("rate(6 hours)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, 0, DAY), 6 * HOUR);
}

static void test_after_days_and_duration(void **state)
{
    (void)state;
    struct sm_schedule s;
    assert_int_equal(sm_schedule_parse(NULL, 30, NULL, &s), COFFER_OK);
    assert_int_equal(s.kind, SM_SCHED_DAYS);
    assert_int_equal(s.every, 30);
    assert_int_equal(sm_schedule_parse("rate(1 days)", 30, NULL, &s), COFFER_ERR_INVALID_PARAMETER);
    assert_string_equal(coffer_last_message(),
                        "You can't specify both rotation frequency and schedule expression together.");
    assert_int_equal(sm_schedule_parse("rate(1 days)", 0, "3h", &s), COFFER_OK);
    assert_int_equal(s.window_hours, 3);
    assert_int_equal(sm_schedule_parse("rate(1 days)", 0, "0h", &s), COFFER_ERR_INVALID_PARAMETER);
    assert_int_equal(sm_schedule_parse("rate(1 days)", 0, "25h", &s), COFFER_ERR_INVALID_PARAMETER);
    assert_int_equal(sm_schedule_parse("rate(1 days)", 0, "3", &s), COFFER_ERR_INVALID_PARAMETER);
    assert_int_equal(sm_schedule_parse("rate(4 hours)", 0, "5h", &s), COFFER_ERR_INVALID_PARAMETER);
    assert_int_equal(sm_schedule_parse(NULL, 0, NULL, &s), COFFER_OK);
    assert_int_equal(s.kind, SM_SCHED_NONE);
    assert_int_equal(sm_schedule_next(&s, 0, 0, DAY), 0);
}

static void test_cron_syntax(void **state)
{
    (void)state;
    struct sm_schedule s;
    parse_ok("cron(0 16 1,15 * ? *)", &s);
    assert_int_equal(s.kind, SM_SCHED_CRON);
    parse_ok("cron(0 8 ? * MON-FRI *)", &s);
    parse_ok("cron(0 0 L * ? *)", &s);
    parse_ok("cron(0 10 ? * 6L 2026-2030)", &s);
    parse_ok("cron(0 10 ? * 2#1 *)", &s);
    parse_ok("cron(0/30 */4 1-10/3 JAN,jul ? *)", &s);
    parse_ok("cron(0 0 ? * SUN *)", &s);
    parse_bad("cron(0 16 1,15 * * *)"); /* neither day field is '?' */
    parse_bad("cron(0 16 ? * ? *)");    /* both are */
    parse_bad("cron(0 16 1 * ?)");      /* five fields */
    parse_bad("cron(0 16 1 * ? * *)");  /* seven */
    parse_bad("cron(60 16 1 * ? *)");
    parse_bad("cron(0 24 1 * ? *)");
    parse_bad("cron(0 0 32 * ? *)");
    parse_bad("cron(0 0 0 * ? *)");
    parse_bad("cron(0 0 1 13 ? *)");
    parse_bad("cron(0 0 ? * 8 *)");
    parse_bad("cron(0 0 ? * MON#6 *)");
    parse_bad("cron(0 0 1 * ? 1969)");
    parse_bad("cron(0 0 5-1 * ? *)");
    parse_bad("cron(0 0 1, * ? *)");
    parse_bad("cron(0 0 1 FOO ? *)");
    parse_bad("cron(0 0 1/0 * ? *)");
    parse_bad("cron()");
}

static void test_cron_next(void **state)
{
    (void)state;
    struct sm_schedule s;
    /* 16:00 on the 1st and the 15th */
    parse_ok("cron(0 16 1,15 * ? *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 2, 0, 0), DAY), utc(2026, 3, 15, 16, 0));
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 15, 16, 0), DAY), utc(2026, 4, 1, 16, 0));
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 15, 15, 59), DAY), utc(2026, 3, 15, 16, 0));
    /* weekdays at 08:30; 2026-03-06 is a Friday */
    parse_ok("cron(30 8 ? * MON-FRI *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 6, 9, 0), DAY), utc(2026, 3, 9, 8, 30));
    /* the last day of February in a leap year */
    parse_ok("cron(0 0 L * ? *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2028, 2, 2, 0, 0), DAY), utc(2028, 2, 29, 0, 0));
    /* the first Monday (2) of the month; the last Friday (6L) */
    parse_ok("cron(0 10 ? * 2#1 *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 3, 0, 0), DAY), utc(2026, 4, 6, 10, 0));
    parse_ok("cron(0 10 ? * 6L *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 1, 0, 0), DAY), utc(2026, 3, 27, 10, 0));
    /* every 4 hours from 02:00; steps in minutes */
    parse_ok("cron(15/20 2/4 * * ? *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 1, 2, 55), DAY), utc(2026, 3, 1, 6, 15));
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 1, 2, 16), DAY), utc(2026, 3, 1, 2, 35));
    /* cron ignores the scaled day: a calendar is real time */
    parse_ok("cron(0 12 * * ? *)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 1, 0, 0), 100), utc(2026, 3, 1, 12, 0));
    /* a calendar that has ended */
    parse_ok("cron(0 0 1 1 ? 2020)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 3, 1, 0, 0), DAY), 0);
    /* February 30th never comes */
    parse_ok("cron(0 0 30 FEB ? 2026-2027)", &s);
    assert_int_equal(sm_schedule_next(&s, 0, utc(2026, 1, 1, 0, 0), DAY), 0);
    (void)MIN;
}

static void test_windows(void **state)
{
    (void)state;
    struct sm_schedule s;
    /* a rate in days: Duration, else to the end of the (scaled) day */
    assert_int_equal(sm_schedule_parse("rate(2 days)", 0, "3h", &s), COFFER_OK);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 0, 0), DAY), utc(2026, 3, 1, 3, 0));
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 22, 0), DAY), utc(2026, 3, 2, 0, 0));
    assert_int_equal(sm_schedule_window_end(&s, 2400, 2400), 2400 + 300); /* 3 hours of a 2400 ms day */
    assert_int_equal(sm_schedule_parse(NULL, 7, NULL, &s), COFFER_OK);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 5, 30), DAY), utc(2026, 3, 2, 0, 0));
    /* a rate in hours: one hour by default, never into the next window */
    assert_int_equal(sm_schedule_parse("rate(4 hours)", 0, NULL, &s), COFFER_OK);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 4, 0), DAY), utc(2026, 3, 1, 5, 0));
    assert_int_equal(sm_schedule_parse("rate(4 hours)", 0, "4h", &s), COFFER_OK);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 4, 0), DAY), utc(2026, 3, 1, 8, 0));
    /* cron: once a day is a schedule in days, several hours a day one in hours */
    parse_ok("cron(0 16 1,15 * ? *)", &s);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 15, 16, 0), 100), utc(2026, 3, 16, 0, 0));
    assert_int_equal(sm_schedule_parse("cron(0 16 1,15 * ? *)", 0, "3h", &s), COFFER_OK);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 15, 16, 0), 100), utc(2026, 3, 15, 19, 0));
    parse_ok("cron(0 4/6 * * ? *)", &s);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 4, 0), DAY), utc(2026, 3, 1, 5, 0));
    /* every 20 minutes: the window closes when the next opens */
    assert_int_equal(sm_schedule_parse("cron(0/20 4/6 * * ? *)", 0, "2h", &s), COFFER_OK);
    assert_int_equal(sm_schedule_window_end(&s, utc(2026, 3, 1, 4, 0), DAY), utc(2026, 3, 1, 4, 20));

    /* the start: inside the window, the same for the same secret and window, spread otherwise */
    int64_t open = utc(2026, 3, 1, 0, 0), end = open + 3 * HOUR;
    int64_t first = sm_schedule_window_start(open, end, "arn:aws:secretsmanager:us-east-1:1:secret:a-abcdef");
    assert_int_equal(
        sm_schedule_window_start(open, end, "arn:aws:secretsmanager:us-east-1:1:secret:a-abcdef"), first);
    int quarters[4] = {0, 0, 0, 0};
    bool moved = false;
    for (int i = 0; i < 200; i++) {
        char seed[80];
        snprintf(seed, sizeof(seed), "arn:aws:secretsmanager:us-east-1:1:secret:s%d-abcdef", i);
        int64_t t = sm_schedule_window_start(open, end, seed);
        assert_true(t >= open && t < end);
        quarters[(t - open) * 4 / (end - open)]++;
        moved = moved || sm_schedule_window_start(open + DAY, end + DAY, seed) - DAY != t;
    }
    for (int q = 0; q < 4; q++) {
        assert_true(quarters[q] >= 25); /* about 50 each */
    }
    assert_true(moved);
    assert_int_equal(sm_schedule_window_start(open, open + 1, "x"), open);
    assert_int_equal(sm_schedule_window_start(open, open, "x"), open);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates),       cmocka_unit_test(test_after_days_and_duration),
        cmocka_unit_test(test_cron_syntax), cmocka_unit_test(test_cron_next),
        cmocka_unit_test(test_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
