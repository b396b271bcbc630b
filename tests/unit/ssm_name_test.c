/*
 * Unit tests for src/ssm/ssm_name.c: parameter names (characters, hierarchy depth, the reserved
 * prefixes, one-level names with and without their slash, the ARN length), references of the
 * read operations (name or ARN, version and label selectors) and GetParametersByPath prefixes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ssm/ssm_name.h"

#define ARN_PREFIX "arn:aws:ssm:us-east-1:000000000000:parameter/"

static coffer_err check(const char *name, bool write, char *canon)
{
    return ssm_name_check(name, write, strlen(ARN_PREFIX), canon, SSM_NAME_MAX + 1);
}

static void test_valid_names_and_canonical_form(void **state)
{
    (void)state;
    char c[SSM_NAME_MAX + 1];
    assert_int_equal(check("/a/b-c/d_e.f", true, c), COFFER_OK);
    assert_string_equal(c, "/a/b-c/d_e.f");
    /* "/x" and "x" are one parameter */
    assert_int_equal(check("/TestParam1", true, c), COFFER_OK);
    assert_string_equal(c, "TestParam1");
    assert_int_equal(check("  padded  ", true, c), COFFER_OK);
    assert_string_equal(c, "padded");
    char key[SSM_NAME_MAX + 2];
    ssm_name_key("TestParam1", key, sizeof(key));
    assert_string_equal(key, "/TestParam1");
    ssm_name_key("/a/b", key, sizeof(key));
    assert_string_equal(key, "/a/b");
}

static void test_invalid_names(void **state)
{
    (void)state;
    char c[SSM_NAME_MAX + 1];
    const char *bad[] = {"", "   ", "a/b", "/a//b", "/a/", "/a b", "/a/$", "/", "x:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check(bad[i], false, c), COFFER_ERR_VALIDATION);
        assert_string_equal(coffer_last_message(), SSM_MSG_BAD_NAME);
    }
}

static void test_hierarchy_depth(void **state)
{
    (void)state;
    char name[256] = "", c[SSM_NAME_MAX + 1];
    for (int i = 1; i <= 15; i++) {
        snprintf(name + strlen(name), sizeof(name) - strlen(name), "/L%d", i);
    }
    assert_int_equal(check(name, true, c), COFFER_OK); /* 15 levels */
    strcat(name, "/L16");
    assert_int_equal(check(name, true, c), COFFER_ERR_HIERARCHY_LIMIT);
}

static void test_reserved_prefixes_only_for_writes(void **state)
{
    (void)state;
    char c[SSM_NAME_MAX + 1];
    assert_int_equal(check("awsThing", true, c), COFFER_ERR_VALIDATION);
    assert_string_equal(coffer_last_message(), SSM_MSG_RESERVED_PLAIN);
    assert_int_equal(check("SSMthing", true, c), COFFER_ERR_VALIDATION);
    assert_int_equal(check("/Ssm/x", true, c), COFFER_ERR_VALIDATION);
    assert_string_equal(coffer_last_message(), SSM_MSG_BAD_NAME);
    assert_int_equal(check("/AWS/x", true, c), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(), "No access to reserved parameter name: /AWS/x");
    assert_int_equal(check("/aws/x", false, c), COFFER_OK);
    assert_int_equal(check("/my/aws", true, c), COFFER_OK);
}

static void test_arn_length(void **state)
{
    (void)state;
    char name[1100], c[SSM_NAME_MAX + 1];
    size_t room = 1011 - strlen(ARN_PREFIX);
    name[0] = '/';
    memset(name + 1, 'a', room);
    name[room + 1] = 0;
    assert_int_equal(check(name, true, c), COFFER_OK); /* the slash is not in the ARN */
    name[room + 1] = 'a';
    name[room + 2] = 0;
    assert_int_equal(check(name, true, c), COFFER_ERR_VALIDATION);
}

static void test_references(void **state)
{
    (void)state;
    char name[SSM_NAME_MAX + 2], label[101];
    int64_t v = -1;
    assert_int_equal(ssm_ref_split("/a/b", ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
                     COFFER_OK);
    assert_string_equal(name, "/a/b");
    assert_int_equal(v, 0);
    assert_string_equal(label, "");
    assert_int_equal(ssm_ref_split("/a/b:12", ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
                     COFFER_OK);
    assert_string_equal(name, "/a/b");
    assert_int_equal(v, 12);
    assert_int_equal(ssm_ref_split("/a/b:prod", ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
                     COFFER_OK);
    assert_int_equal(v, 0);
    assert_string_equal(label, "prod");
    /* an ARN names the parameter without its leading slash */
    assert_int_equal(
        ssm_ref_split(ARN_PREFIX "a/b:3", ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
        COFFER_OK);
    assert_string_equal(name, "/a/b");
    assert_int_equal(v, 3);
    assert_int_equal(ssm_ref_split(ARN_PREFIX "x", ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
                     COFFER_OK);
    assert_string_equal(name, "x");
    /* another account's ARN, two selectors, version 0: nothing */
    const char *none[] = {"arn:aws:ssm:us-east-1:111111111111:parameter/x", "/a:1:2", "/a:0"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        assert_int_equal(ssm_ref_split(none[i], ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
                         COFFER_OK);
        assert_string_equal(name, "");
    }
    assert_int_equal(ssm_ref_split("/a:", ARN_PREFIX, name, sizeof(name), &v, label, sizeof(label)),
                     COFFER_ERR_VALIDATION);
}

static void test_path_prefix(void **state)
{
    (void)state;
    char p[SSM_NAME_MAX + 2];
    assert_int_equal(ssm_path_prefix("/a/b", p, sizeof(p)), COFFER_OK);
    assert_string_equal(p, "/a/b/");
    assert_int_equal(ssm_path_prefix("/a/b/", p, sizeof(p)), COFFER_OK);
    assert_string_equal(p, "/a/b/");
    assert_int_equal(ssm_path_prefix("/", p, sizeof(p)), COFFER_OK);
    assert_string_equal(p, "/");
    assert_int_equal(ssm_path_prefix("a/b", p, sizeof(p)), COFFER_ERR_VALIDATION);
    assert_int_equal(ssm_path_prefix("/a//b", p, sizeof(p)), COFFER_ERR_VALIDATION);
    assert_int_equal(ssm_path_prefix("/a b", p, sizeof(p)), COFFER_ERR_VALIDATION);
}

static void test_labels(void **state)
{
    (void)state;
    const char *good[] = {"prod", "Release-1.2_x", "a", "v1", "my-aws", "Ssx", "x123"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(ssm_label_valid(good[i]));
    }
    const char *bad[] = {"", "1st", "aws", "AWSlabel", "ssm-x", "sSm", "has space", "a/b", "a:b", "x*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(ssm_label_valid(bad[i]));
    }
    char longest[SSM_LABEL_MAX + 2];
    memset(longest, 'x', SSM_LABEL_MAX);
    longest[SSM_LABEL_MAX] = 0;
    assert_true(ssm_label_valid(longest));
    longest[SSM_LABEL_MAX] = 'x';
    longest[SSM_LABEL_MAX + 1] = 0;
    assert_false(ssm_label_valid(longest));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_names_and_canonical_form),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_hierarchy_depth),
        cmocka_unit_test(test_reserved_prefixes_only_for_writes),
        cmocka_unit_test(test_arn_length),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_path_prefix),
        cmocka_unit_test(test_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
