/*
 * Unit tests for the principal kinds of src/api/api.c: each kind's CloudTrail and
 * aws:PrincipalType names come from one table, the stored name reads back as the same kind, and
 * anything else (including the zeroed caller) is no kind at all, never the account root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "api/api.h"

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(api_principal_trail_type(API_PRINCIPAL_ROOT), "Root");
    assert_string_equal(api_principal_trail_type(API_PRINCIPAL_USER), "IAMUser");
    assert_string_equal(api_principal_trail_type(API_PRINCIPAL_ASSUMED_ROLE), "AssumedRole");
    assert_string_equal(api_principal_trail_type(API_PRINCIPAL_UNKNOWN), "Unknown");
    assert_string_equal(api_principal_policy_type(API_PRINCIPAL_ROOT), "Account");
    assert_string_equal(api_principal_policy_type(API_PRINCIPAL_USER), "User");
    assert_string_equal(api_principal_policy_type(API_PRINCIPAL_ASSUMED_ROLE), "AssumedRole");
    assert_null(api_principal_policy_type(API_PRINCIPAL_UNKNOWN));
    /* Out of range: treated as no kind. */
    assert_string_equal(api_principal_trail_type((enum api_principal_kind)99), "Unknown");
    assert_null(api_principal_policy_type((enum api_principal_kind)99));
}

static void test_parse(void **state)
{
    (void)state;
    const enum api_principal_kind kinds[] = {API_PRINCIPAL_ROOT, API_PRINCIPAL_USER,
                                             API_PRINCIPAL_ASSUMED_ROLE};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        assert_int_equal(api_principal_kind_parse(api_principal_trail_type(kinds[i])), kinds[i]);
    }
    assert_int_equal(api_principal_kind_parse("root"), API_PRINCIPAL_UNKNOWN); /* stored names are exact */
    assert_int_equal(api_principal_kind_parse("Account"), API_PRINCIPAL_UNKNOWN);
    assert_int_equal(api_principal_kind_parse("Unknown"), API_PRINCIPAL_UNKNOWN);
    assert_int_equal(api_principal_kind_parse(""), API_PRINCIPAL_UNKNOWN);
    assert_int_equal(api_principal_kind_parse(NULL), API_PRINCIPAL_UNKNOWN);
    struct api_caller zeroed;
    memset(&zeroed, 0, sizeof(zeroed));
    assert_int_equal(zeroed.principal_kind, API_PRINCIPAL_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
