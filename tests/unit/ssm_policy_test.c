/*
 * Unit tests for src/ssm/ssm_policy.c and ssm_jobs.c: policy times (ISO-8601 instants with and
 * without an offset), validation of the Policies string, when each policy acts, and the
 * scheduler over an in-memory store: a NoChangeNotification fires once its time has passed
 * (an event line in the log, the policy Finished, its index entry gone) and not before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ssm/ssm_internal.h"

#define HOUR 3600000LL
#define NOW 1800000000000LL /* 2027-01-15T08:00:00Z */

static void test_times(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(ssm_policy_parse_time("2027-01-15T08:00:00.000Z", &ms), 0);
    assert_int_equal(ms, NOW);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T08:00:00Z", &ms), 0);
    assert_int_equal(ms, NOW);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T08:00:00.5Z", &ms), 0);
    assert_int_equal(ms, NOW + 500);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T18:30:00.000+10:30", &ms), 0);
    assert_int_equal(ms, NOW);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T18:30:00.000+10:30:00", &ms), 0);
    assert_int_equal(ms, NOW);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T03:00:00-05:00", &ms), 0);
    assert_int_equal(ms, NOW);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T08:00:00", &ms), -1);
    assert_int_equal(ssm_policy_parse_time("2027-13-15T08:00:00Z", &ms), -1);
    assert_int_equal(ssm_policy_parse_time("2027-01-15 08:00:00Z", &ms), -1);
    assert_int_equal(ssm_policy_parse_time("2027-01-15T08:00:00Zx", &ms), -1);
    assert_int_equal(ssm_policy_parse_time("", &ms), -1);
}

static coffer_err parse(const char *text, json_t **out)
{
    return ssm_policies_parse(text, NOW, out);
}

static void test_validation(void **state)
{
    (void)state;
    json_t *p = NULL;
    assert_int_equal(parse("[{}]", &p), COFFER_OK);
    assert_int_equal(json_array_size(p), 0);
    json_decref(p);
    assert_int_equal(parse("not json", &p), COFFER_ERR_VALIDATION);
    assert_int_equal(parse("[1]", &p), COFFER_ERR_INVALID_POLICY_TYPE);
    assert_int_equal(parse("[{\"Type\":\"Expiration\",\"Version\":\"2.0\",\"Attributes\":"
                           "{\"Timestamp\":\"2030-01-01T00:00:00Z\"}}]",
                           &p),
                     COFFER_ERR_INVALID_POLICY_ATTRIBUTE);
    assert_int_equal(parse("[{\"Type\":\"Expiration\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"Timestamp\":\"2027-01-15T08:00:00Z\"}}]",
                           &p),
                     COFFER_ERR_INVALID_POLICY_ATTRIBUTE); /* not in the future */
    assert_int_equal(parse("[{\"Type\":\"NoChangeNotification\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"After\":\"3x\",\"Unit\":\"Days\"}}]",
                           &p),
                     COFFER_ERR_INVALID_POLICY_ATTRIBUTE);
    assert_int_equal(parse("[{\"Type\":\"NoChangeNotification\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"After\":\"3\"}}]",
                           &p),
                     COFFER_ERR_INVALID_POLICY_ATTRIBUTE);
}

static void test_due_times(void **state)
{
    (void)state;
    json_t *p = NULL;
    assert_int_equal(parse("[{\"Type\":\"Expiration\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"Timestamp\":\"2027-01-20T08:00:00.000Z\"}},"
                           "{\"Type\":\"ExpirationNotification\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"Before\":\"2\",\"Unit\":\"Days\"}},"
                           "{\"Type\":\"NoChangeNotification\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"After\":\"5\",\"Unit\":\"Hours\"}}]",
                           &p),
                     COFFER_OK);
    assert_int_equal(json_array_size(p), 3);
    assert_string_equal(ssm_vstr(json_array_get(p, 2), "PolicyStatus"), "Pending");
    assert_int_equal(ssm_policy_due(p, 0, NOW), NOW + 5 * 24 * HOUR);
    assert_int_equal(ssm_policy_due(p, 1, NOW), NOW + 3 * 24 * HOUR);
    /* NoChangeNotification counts from the last modification */
    assert_int_equal(ssm_policy_due(p, 2, NOW + HOUR), NOW + 6 * HOUR);
    json_object_set_new(json_array_get(p, 2), "PolicyStatus", json_string("Finished"));
    assert_int_equal(ssm_policy_due(p, 2, NOW), -1);
    json_decref(p);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f != NULL && (c = fgetc(f)) != EOF) {
        n += c == '\n';
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

static coffer_err count_cb(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    (void)value;
    (*(int *)ctx)++;
    return COFFER_OK;
}

static void test_no_change_notification_fires_once(void **state)
{
    (void)state;
    char dir[] = "/tmp/ssm-policy-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct ssm s = {.region = "us-east-1", .api = {.event_source = "ssm.amazonaws.com"}};
    assert_int_equal(store_open("mem:", &s.st), COFFER_OK);
    assert_int_equal(ssm_events_open(dir, &s.events), COFFER_OK);

    json_t *pols = NULL;
    assert_int_equal(parse("[{\"Type\":\"NoChangeNotification\",\"Version\":\"1.0\",\"Attributes\":"
                           "{\"After\":\"1\",\"Unit\":\"Hours\"}}]",
                           &pols),
                     COFFER_OK);
    const char *key = "ssm/param/000000000000/us-east-1/app/flag";
    json_t *rec =
        json_pack("{s:s, s:[{s:I, s:s, s:s, s:I, s:s, s:o}], s:[]}", "Name", "/app/flag", "Versions",
                  "Version", (json_int_t)1, "Type", "String", "Value", "v", "LastModifiedDate",
                  (json_int_t)NOW, "Tier", "Advanced", "Policies", pols, "Tags");
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(s.st, &t), COFFER_OK);
    assert_int_equal(ssm_due_rewrite(t, key, NULL, rec), COFFER_OK);
    assert_int_equal(ssm_rec_store(t, key, rec), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(rec, "Due")), 1);
    json_decref(rec);

    char log[128];
    snprintf(log, sizeof(log), "%s/events/ssm.jsonl", dir);
    assert_int_equal(ssm_policy_job(&s, NOW + HOUR - 1), COFFER_OK);
    assert_int_equal(count_lines(log), 0);
    assert_int_equal(ssm_policy_job(&s, NOW + HOUR), COFFER_OK);
    assert_int_equal(count_lines(log), 1);
    assert_int_equal(ssm_policy_job(&s, NOW + 2 * HOUR), COFFER_OK);
    assert_int_equal(count_lines(log), 1);

    json_t *after = NULL;
    assert_int_equal(ssm_rec_load(s.st, NULL, key, &after), COFFER_OK);
    const json_t *item = json_array_get(json_object_get(ssm_rec_latest(after), "Policies"), 0);
    assert_string_equal(ssm_vstr(item, "PolicyStatus"), "Finished");
    assert_null(json_object_get(after, "Due"));
    json_decref(after);
    int entries = 0;
    assert_int_equal(store_scan(s.st, "ssm/due/", NULL, 0, count_cb, &entries), COFFER_OK);
    assert_int_equal(entries, 0);

    FILE *f = fopen(log, "r");
    char line[2048];
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    json_t *ev = json_loads(line, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(ev, "detail-type")),
                        "Parameter Store Policy Action");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "detail"), "policy-type")),
                        "NoChangeNotification");
    assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "resources"), 0)),
                        "arn:aws:ssm:us-east-1:000000000000:parameter/app/flag");
    json_decref(ev);

    ssm_events_close(s.events);
    store_close(s.st);
    unlink(log);
    snprintf(log, sizeof(log), "%s/events", dir);
    rmdir(log);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_due_times),
        cmocka_unit_test(test_no_change_notification_fires_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
