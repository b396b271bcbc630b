/*
 * Unit tests for the pure parts of src/secrets: staging labels (AWSCURRENT taken from a version
 * leaves AWSPREVIOUS there, one owner per label, 20 labels per version), pruning of unlabeled
 * versions, GetRandomPassword (classes, exclusions, RequireEachIncludedType, no modulo bias
 * through rejection), ListSecrets filters (prefix, case, negation, all) and secret names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/crypto.h"
#include "secrets/secrets_internal.h"

static json_t *versions_of(const char *json)
{
    json_error_t e;
    json_t *v = json_loads(json, 0, &e);
    assert_non_null(v);
    return v;
}

static const char *labels_of(const json_t *versions, const char *vid, char *buf, size_t n)
{
    buf[0] = 0;
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(sm_version_find(versions, vid), "Stages"), i, l)
    {
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? "," : "", json_string_value(l));
    }
    return buf;
}

static void test_current_leaves_previous_behind(void **state)
{
    (void)state;
    char b[256];
    json_t *vs = versions_of("[{\"VersionId\":\"v1\",\"Stages\":[\"AWSCURRENT\"]},"
                             "{\"VersionId\":\"v2\",\"Stages\":[]},{\"VersionId\":\"v3\",\"Stages\":[]}]");
    assert_int_equal(sm_label_attach(vs, sm_version_find(vs, "v2"), SM_CURRENT), COFFER_OK);
    assert_string_equal(labels_of(vs, "v1", b, sizeof(b)), "AWSPREVIOUS");
    assert_string_equal(labels_of(vs, "v2", b, sizeof(b)), "AWSCURRENT");
    assert_int_equal(sm_label_attach(vs, sm_version_find(vs, "v3"), SM_CURRENT), COFFER_OK);
    assert_string_equal(labels_of(vs, "v1", b, sizeof(b)), "");
    assert_string_equal(labels_of(vs, "v2", b, sizeof(b)), "AWSPREVIOUS");
    assert_string_equal(labels_of(vs, "v3", b, sizeof(b)), "AWSCURRENT");
    /* attaching where it already is changes nothing */
    assert_int_equal(sm_label_attach(vs, sm_version_find(vs, "v3"), SM_CURRENT), COFFER_OK);
    assert_string_equal(labels_of(vs, "v2", b, sizeof(b)), "AWSPREVIOUS");
    /* a custom label moves alone */
    assert_int_equal(sm_label_attach(vs, sm_version_find(vs, "v1"), "blue"), COFFER_OK);
    assert_int_equal(sm_label_attach(vs, sm_version_find(vs, "v2"), "blue"), COFFER_OK);
    assert_string_equal(labels_of(vs, "v1", b, sizeof(b)), "");
    assert_string_equal(labels_of(vs, "v2", b, sizeof(b)), "AWSPREVIOUS,blue");
    assert_ptr_equal(sm_label_owner(vs, "blue"), sm_version_find(vs, "v2"));
    sm_label_detach(sm_version_find(vs, "v2"), "blue");
    assert_null(sm_label_owner(vs, "blue"));
    json_decref(vs);
}

static void test_twenty_labels_per_version(void **state)
{
    (void)state;
    json_t *vs = versions_of("[{\"VersionId\":\"v1\",\"Stages\":[]}]");
    json_t *v = sm_version_find(vs, "v1");
    char l[16];
    for (int i = 0; i < SM_MAX_LABELS; i++) {
        snprintf(l, sizeof(l), "l%d", i);
        assert_int_equal(sm_label_attach(vs, v, l), COFFER_OK);
    }
    assert_int_equal(sm_label_attach(vs, v, "one-more"), COFFER_ERR_LIMIT_EXCEEDED);
    json_decref(vs);
}

static void test_prune_keeps_labelled_and_young_versions(void **state)
{
    (void)state;
    int64_t now = 10 * SM_DAY_MS;
    json_t *vs = json_array();
    char id[16];
    for (int i = 0; i < SM_MAX_VERSIONS + 5; i++) {
        snprintf(id, sizeof(id), "v%d", i);
        /* v0..v2 old and unlabeled, v3 old and labelled, the rest young */
        int64_t created = i < 4 ? now - 2 * SM_DAY_MS : now - 1000;
        json_array_append_new(
            vs, json_pack("{s:s, s:[], s:I}", "VersionId", id, "Stages", "CreatedDate", (json_int_t)created));
    }
    assert_int_equal(sm_label_attach(vs, sm_version_find(vs, "v3"), "keep"), COFFER_OK);
    sm_versions_prune(vs, now);
    /* the three old unlabeled ones go; the young ones stay even beyond the cap */
    assert_int_equal(json_array_size(vs), SM_MAX_VERSIONS + 2);
    assert_null(sm_version_find(vs, "v0"));
    assert_null(sm_version_find(vs, "v2"));
    assert_non_null(sm_version_find(vs, "v3"));
    /* under the cap nothing is pruned */
    json_t *few = versions_of("[{\"VersionId\":\"a\",\"Stages\":[],\"CreatedDate\":0}]");
    sm_versions_prune(few, now);
    assert_int_equal(json_array_size(few), 1);
    json_decref(few);
    json_decref(vs);
}

/* A deterministic source: a counter, so tests can check rejection and placement. */
static unsigned char counter;
static coffer_err counting_random(void *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ((unsigned char *)out)[i] = counter++;
    }
    return COFFER_OK;
}

static bool has_any(const char *s, const char *set)
{
    return strpbrk(s, set) != NULL;
}

static void test_password_classes_and_exclusions(void **state)
{
    (void)state;
    char pw[4097];
    struct sm_password_spec spec = {.length = 32, .require_each = true};
    for (int round = 0; round < 200; round++) {
        assert_int_equal(sm_password(&spec, crypto_random, pw), COFFER_OK);
        assert_int_equal(strlen(pw), 32);
        assert_true(has_any(pw, "abcdefghijklmnopqrstuvwxyz"));
        assert_true(has_any(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert_true(has_any(pw, "0123456789"));
        assert_true(has_any(pw, "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
        assert_false(has_any(pw, " "));
    }
    /* four classes in four characters, with most of each class excluded */
    spec = (struct sm_password_spec){.length = 4,
                                     .exclude = "abcdefghijklmnopqrstuvwxyABCDEFGHIJKLMNOPQRSTUVWXY012345678",
                                     .require_each = true};
    for (int round = 0; round < 200; round++) {
        assert_int_equal(sm_password(&spec, crypto_random, pw), COFFER_OK);
        assert_true(strchr(pw, 'z') && strchr(pw, 'Z') && strchr(pw, '9'));
    }
    spec.length = 3;
    assert_int_equal(sm_password(&spec, crypto_random, pw), COFFER_ERR_INVALID_PARAMETER);
    assert_string_equal(coffer_last_message(), "Password length is too short based on the required types.");
    /* a class wholly excluded is not required */
    spec = (struct sm_password_spec){
        .length = 2, .no_punctuation = true, .no_upper = true, .exclude = "0123456789", .require_each = true};
    assert_int_equal(sm_password(&spec, crypto_random, pw), COFFER_OK);
    /* everything excluded */
    spec = (struct sm_password_spec){
        .length = 8, .no_punctuation = true, .no_upper = true, .no_lower = true, .no_numbers = true};
    assert_int_equal(sm_password(&spec, crypto_random, pw), COFFER_ERR_INVALID_PARAMETER);
    /* space only when asked for, and the longest password */
    spec = (struct sm_password_spec){.length = 4096, .include_space = true, .require_each = true};
    assert_int_equal(sm_password(&spec, crypto_random, pw), COFFER_OK);
    assert_int_equal(strlen(pw), 4096);
    assert_true(has_any(pw, " "));
}

static void test_password_draws_without_bias(void **state)
{
    (void)state;
    /* digits only: 10 characters, so bytes 250..255 must be rejected, never folded onto 0..5 */
    struct sm_password_spec spec = {
        .length = 256, .no_punctuation = true, .no_upper = true, .no_lower = true};
    char pw[257];
    counter = 0;
    assert_int_equal(sm_password(&spec, counting_random, pw), COFFER_OK);
    int counts[10] = {0};
    for (int i = 0; i < 256; i++) {
        counts[pw[i] - '0']++;
    }
    /* the counter yields 0..249 (25 of each digit) then 250..255 rejected, then 0..5 again */
    for (int d = 0; d < 10; d++) {
        assert_int_equal(counts[d], d < 6 ? 26 : 25);
    }
}

static json_t *record(void)
{
    return versions_of(
        "{\"Name\":\"prod/db/password\",\"Description\":\"Payments Database\","
        "\"Tags\":[{\"Key\":\"env\",\"Value\":\"prod\"},{\"Key\":\"Team\",\"Value\":\"core\"}],"
        "\"Versions\":[]}");
}

static bool passes(const char *filters_json)
{
    json_t *rec = record();
    json_t *f = versions_of(filters_json);
    assert_int_equal(sm_filters_check(f), COFFER_OK);
    bool ok = sm_filters_pass(f, rec);
    json_decref(f);
    json_decref(rec);
    return ok;
}

static void test_filters(void **state)
{
    (void)state;
    assert_true(passes("[{\"Key\":\"name\",\"Values\":[\"prod/\"]}]"));
    assert_false(passes("[{\"Key\":\"name\",\"Values\":[\"Prod/\"]}]")); /* names are case-sensitive */
    assert_false(passes("[{\"Key\":\"name\",\"Values\":[\"db\"]}]"));    /* a prefix, not a substring */
    assert_true(passes("[{\"Key\":\"description\",\"Values\":[\"payments\"]}]"));
    assert_true(passes("[{\"Key\":\"tag-key\",\"Values\":[\"Team\"]}]"));
    assert_false(passes("[{\"Key\":\"tag-key\",\"Values\":[\"team\"]}]"));
    assert_true(
        passes("[{\"Key\":\"tag-value\",\"Values\":[\"nope\", \"co\"]}]")); /* values are alternatives */
    assert_false(passes("[{\"Key\":\"tag-key\",\"Values\":[\"!env\"]}]"));
    assert_true(passes("[{\"Key\":\"tag-key\",\"Values\":[\"!owner\"]}]"));
    assert_false(
        passes("[{\"Key\":\"name\",\"Values\":[\"prod\"]},{\"Key\":\"tag-value\",\"Values\":[\"dev\"]}]"));
    assert_true(passes("[{\"Key\":\"all\",\"Values\":[\"PAYMENTS core\"]}]"));
    assert_false(passes("[{\"Key\":\"all\",\"Values\":[\"payments other\"]}]"));
    assert_false(passes("[{\"Key\":\"primary-region\",\"Values\":[\"us\"]}]"));
    json_t *bad = versions_of("[{\"Key\":\"colour\",\"Values\":[\"x\"]}]");
    assert_int_equal(sm_filters_check(bad), COFFER_ERR_VALIDATION);
    json_decref(bad);
    bad = versions_of("[{\"Key\":\"name\",\"Values\":[\"a#b\"]}]");
    assert_int_equal(sm_filters_check(bad), COFFER_ERR_VALIDATION);
    json_decref(bad);
    bad = versions_of("[{\"Key\":\"name\",\"Values\":[]}]");
    assert_int_equal(sm_filters_check(bad), COFFER_ERR_INVALID_PARAMETER);
    json_decref(bad);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(sm_name_check("prod/app_1+x=y.z@w-v!"), COFFER_OK);
    assert_int_equal(sm_name_check("has space"), COFFER_ERR_VALIDATION);
    assert_int_equal(sm_name_check("semi;colon"), COFFER_ERR_VALIDATION);
    assert_int_equal(sm_name_check(""), COFFER_ERR_VALIDATION);
    char longest[SM_NAME_MAX + 2];
    memset(longest, 'a', SM_NAME_MAX);
    longest[SM_NAME_MAX] = 0;
    assert_int_equal(sm_name_check(longest), COFFER_OK);
    longest[SM_NAME_MAX] = 'a';
    longest[SM_NAME_MAX + 1] = 0;
    assert_int_equal(sm_name_check(longest), COFFER_ERR_VALIDATION);
    char arn[SM_ARN_MAX];
    sm_secret_arn("us-east-1", "000000000000", "a/b", "AbC123", arn, sizeof(arn));
    assert_string_equal(arn, "arn:aws:secretsmanager:us-east-1:000000000000:secret:a/b-AbC123");
    assert_int_equal(sm_day_of(SM_DAY_MS * 3 + 12345), SM_DAY_MS * 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_current_leaves_previous_behind),
        cmocka_unit_test(test_twenty_labels_per_version),
        cmocka_unit_test(test_prune_keeps_labelled_and_young_versions),
        cmocka_unit_test(test_password_classes_and_exclusions),
        cmocka_unit_test(test_password_draws_without_bias),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
