/*
 * Unit tests for the operation table of src/api/api.c: api_ops_check accepts a table sorted by
 * name and names the offending rows of one that is not (out of order, listed twice, missing a
 * handler), and api_service_find_op reaches every row of a table that passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "api/api.h"

static coffer_err handler(void *state, struct api_call *call)
{
    (void)state;
    (void)call;
    return COFFER_OK;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_sorted_table_passes(void **state)
{
    (void)state;
    /* Byte order: upper case before lower case, a name before its extensions. */
    static const struct api_op ops[] = {
        {.name = "Decrypt", .handler = handler},
        {.name = "Encrypt", .handler = handler},
        {.name = "GenerateDataKey", .handler = handler},
        {.name = "GenerateDataKeyWithoutPlaintext", .handler = handler},
        {.name = "ListKeys", .handler = handler},
        {.name = "Lista", .handler = handler},
    };
    assert_int_equal(api_ops_check(ops, N(ops)), COFFER_OK);
    assert_int_equal(api_ops_check(ops, 0), COFFER_OK);
    assert_int_equal(api_ops_check(ops, 1), COFFER_OK);

    struct api_service svc = {.ops = ops, .n_ops = N(ops)};
    for (size_t i = 0; i < N(ops); i++) {
        assert_ptr_equal(api_service_find_op(&svc, ops[i].name, strlen(ops[i].name)), &ops[i]);
    }
    assert_null(api_service_find_op(&svc, "GenerateData", strlen("GenerateData")));
    assert_null(api_service_find_op(&svc, "Zzz", 3));
}

static void test_out_of_order_is_named(void **state)
{
    (void)state;
    static const struct api_op ops[] = {
        {.name = "CreateKey", .handler = handler},
        {.name = "Encrypt", .handler = handler},
        {.name = "Decrypt", .handler = handler},
    };
    assert_int_equal(api_ops_check(ops, N(ops)), COFFER_ERR_INTERNAL);
    assert_string_equal(
        coffer_last_message(),
        "operation table: \"Decrypt\" is listed after \"Encrypt\"; rows must be sorted by name");
    /* What a search would miss in such a table: the reason for the check. */
    struct api_service svc = {.ops = ops, .n_ops = N(ops)};
    assert_null(api_service_find_op(&svc, "Decrypt", strlen("Decrypt")));
}

static void test_duplicate_is_named(void **state)
{
    (void)state;
    static const struct api_op ops[] = {
        {.name = "CreateGrant", .handler = handler},
        {.name = "CreateGrant", .handler = handler},
    };
    assert_int_equal(api_ops_check(ops, N(ops)), COFFER_ERR_INTERNAL);
    assert_string_equal(coffer_last_message(), "operation table: \"CreateGrant\" is listed twice");
}

static void test_row_without_handler(void **state)
{
    (void)state;
    static const struct api_op ops[] = {
        {.name = "CreateGrant", .handler = handler},
        {.name = "Decrypt"},
    };
    assert_int_equal(api_ops_check(ops, N(ops)), COFFER_ERR_INTERNAL);
    assert_string_equal(coffer_last_message(), "operation table: row 1 has no handler");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sorted_table_passes),
        cmocka_unit_test(test_out_of_order_is_named),
        cmocka_unit_test(test_duplicate_is_named),
        cmocka_unit_test(test_row_without_handler),
    };
    return cmocka_run_group_tests_name("api_ops", tests, NULL, NULL);
}
