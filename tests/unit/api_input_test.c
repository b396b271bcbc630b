/*
 * Unit tests for src/api/api_input: typed member readers with AWS-exact validation messages,
 * serialization errors for wrong JSON types, and the limits of blobs on decoded bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/codec.h"
#include "api/api.h"
#include "api/api_input.h"

static json_t *parse(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(j);
    return j;
}

static void test_string_ok_and_missing(void **state)
{
    json_t *j = parse("{\"KeyId\":\"alias/x\",\"Other\":5}");
    api_in in;
    const char *key = NULL, *desc = (const char *)1;
    api_in_init(&in, j);
    assert_int_equal(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key), COFFER_OK);
    assert_int_equal(api_in_string(&in, "Description", 0, 0, 8192, &desc), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_OK);
    assert_string_equal(key, "alias/x");
    assert_null(desc);
    json_decref(j);

    j = parse("{\"KeyId\":null}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key), COFFER_OK);
    assert_null(key);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(
        coffer_last_message(),
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member "
        "must not be null");
    json_decref(j);
}

static void test_string_wrong_type_and_length(void **state)
{
    json_t *j = parse("{\"KeyId\":12}");
    api_in in;
    const char *key = NULL;
    api_in_init(&in, j);
    assert_int_equal(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key), COFFER_ERR_SERIALIZATION);
    json_decref(j);

    j = parse("{\"KeyId\":\"\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(
        coffer_last_message(),
        "1 validation error detected: Value '' at 'keyId' failed to satisfy constraint: Member "
        "must have length greater than or equal to 1");
    json_decref(j);

    /* Length counts characters, not bytes: 3 two-byte characters fit a max of 3. */
    j = parse("{\"D\":\"\\u00e9\\u00e9\\u00e9\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string(&in, "D", 0, 0, 3, &key), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_OK);
    assert_non_null(key);
    json_decref(j);
}

static void test_blob_limits(void **state)
{
    /* 4097 bytes of plaintext -> the exact AWS message; 4096 passes. */
    size_t n = 4097;
    uint8_t *raw = calloc(1, n);
    coffer_buf b64 = COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_encode(coffer_cursor_from(raw, n), &b64), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b64), COFFER_OK);
    json_t *j = json_pack("{s:s}", "Plaintext", (const char *)b64.data);
    api_in in;
    coffer_buf pt;
    bool present = true;
    api_in_init(&in, j);
    assert_int_equal(api_in_blob(&in, "Plaintext", API_IN_REQUIRED | API_IN_SECRET, 1, 4096, &pt, &present),
                     COFFER_OK);
    assert_false(present);
    assert_null(pt.data);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(
        coffer_last_message(),
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member "
        "must have length less than or equal to 4096");
    json_decref(j);
    coffer_buf_free(&b64);

    coffer_buf_init(&b64, false);
    assert_int_equal(coffer_b64_encode(coffer_cursor_from(raw, 4096), &b64), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b64), COFFER_OK);
    j = json_pack("{s:s}", "Plaintext", (const char *)b64.data);
    api_in_init(&in, j);
    assert_int_equal(api_in_blob(&in, "Plaintext", API_IN_REQUIRED | API_IN_SECRET, 1, 4096, &pt, &present),
                     COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_OK);
    assert_true(present);
    assert_true(pt.secret);
    assert_int_equal(pt.len, 4096);
    coffer_buf_free(&pt);
    json_decref(j);
    coffer_buf_free(&b64);
    free(raw);

    /* Empty blob: below min 1. */
    j = parse("{\"Plaintext\":\"\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_blob(&in, "Plaintext", API_IN_REQUIRED, 1, 4096, &pt, &present), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(
        coffer_last_message(),
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member "
        "must have length greater than or equal to 1");
    json_decref(j);

    /* Bad base64 and wrong type are serialization errors. */
    j = parse("{\"Plaintext\":\"a*==\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_blob(&in, "Plaintext", API_IN_REQUIRED, 1, 4096, &pt, &present),
                     COFFER_ERR_SERIALIZATION);
    assert_null(pt.data);
    json_decref(j);
    j = parse("{\"Plaintext\":[1]}");
    api_in_init(&in, j);
    assert_int_equal(api_in_blob(&in, "Plaintext", API_IN_REQUIRED, 1, 4096, &pt, &present),
                     COFFER_ERR_SERIALIZATION);
    json_decref(j);
}

static void test_int_range(void **state)
{
    json_t *j = parse("{\"NumberOfBytes\":1025}");
    api_in in;
    int64_t v = 0;
    bool present = true;
    api_in_init(&in, j);
    assert_int_equal(api_in_int(&in, "NumberOfBytes", 0, 1, 1024, &v, &present), COFFER_OK);
    assert_false(present);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(coffer_last_message(),
                        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy "
                        "constraint: Member must have value less than or equal to 1024");
    json_decref(j);

    j = parse("{\"NumberOfBytes\":0}");
    api_in_init(&in, j);
    assert_int_equal(api_in_int(&in, "NumberOfBytes", 0, 1, 1024, &v, &present), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(coffer_last_message(),
                        "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy "
                        "constraint: Member must have value greater than or equal to 1");
    json_decref(j);

    j = parse("{\"NumberOfBytes\":32}");
    api_in_init(&in, j);
    assert_int_equal(api_in_int(&in, "NumberOfBytes", 0, 1, 1024, &v, &present), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_OK);
    assert_true(present);
    assert_int_equal(v, 32);
    json_decref(j);

    j = parse("{\"NumberOfBytes\":\"32\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_int(&in, "NumberOfBytes", 0, 1, 1024, &v, &present), COFFER_ERR_SERIALIZATION);
    json_decref(j);
    j = parse("{\"NumberOfBytes\":1.5}");
    api_in_init(&in, j);
    assert_int_equal(api_in_int(&in, "NumberOfBytes", 0, 1, 1024, &v, &present), COFFER_ERR_SERIALIZATION);
    json_decref(j);
}

static void test_bool_enum_and_several_errors(void **state)
{
    static const char *const specs[] = {"AES_256", "AES_128", NULL};
    json_t *j = parse("{\"DryRun\":true,\"KeySpec\":\"AES_512\",\"KeyId\":\"\"}");
    api_in in;
    bool dry = false;
    int spec = 7;
    const char *key;
    api_in_init(&in, j);
    assert_int_equal(api_in_bool(&in, "DryRun", false, &dry), COFFER_OK);
    assert_true(dry);
    assert_int_equal(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key), COFFER_OK);
    assert_int_equal(api_in_enum(&in, "KeySpec", 0, specs, &spec), COFFER_OK);
    assert_int_equal(spec, -1);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(
        coffer_last_message(),
        "2 validation errors detected: Value '' at 'keyId' failed to satisfy constraint: Member "
        "must have length greater than or equal to 1; Value 'AES_512' at 'keySpec' failed to "
        "satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]");
    json_decref(j);

    j = parse("{\"DryRun\":\"yes\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_bool(&in, "DryRun", false, &dry), COFFER_ERR_SERIALIZATION);
    json_decref(j);

    j = parse("{\"KeySpec\":\"AES_128\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_enum(&in, "KeySpec", 0, specs, &spec), COFFER_OK);
    assert_int_equal(spec, 1);
    assert_int_equal(api_in_done(&in), COFFER_OK);
    json_decref(j);
}

static void test_map_list_tags(void **state)
{
    json_t *j = parse("{\"EncryptionContext\":{\"a\":\"1\",\"b\":\"2\"},\"GrantTokens\":[\"t\"],"
                      "\"Tags\":[{\"TagKey\":\"k\",\"TagValue\":\"\"}]}");
    api_in in;
    const json_t *ec, *gt, *tags;
    api_in_init(&in, j);
    assert_int_equal(api_in_string_map(&in, "EncryptionContext", 0, &ec), COFFER_OK);
    assert_int_equal(api_in_string_list(&in, "GrantTokens", 0, 0, 10, 1, 8192, &gt), COFFER_OK);
    assert_int_equal(api_in_tags(&in, "Tags", 0, "TagKey", "TagValue", &tags), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_OK);
    assert_int_equal(json_object_size(ec), 2);
    assert_int_equal(json_array_size(gt), 1);
    assert_int_equal(json_array_size(tags), 1);
    json_decref(j);

    j = parse("{\"EncryptionContext\":{\"a\":1}}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string_map(&in, "EncryptionContext", 0, &ec), COFFER_ERR_SERIALIZATION);
    json_decref(j);
    j = parse("{\"EncryptionContext\":\"a\"}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string_map(&in, "EncryptionContext", 0, &ec), COFFER_ERR_SERIALIZATION);
    json_decref(j);

    /* Tag key too long and a missing value: AWS member paths. */
    char longkey[130];
    memset(longkey, 'k', 129);
    longkey[129] = '\0';
    j = json_pack("{s:[{s:s,s:s},{s:s}]}", "Tags", "TagKey", "ok", "TagValue", "v", "TagKey", longkey);
    api_in_init(&in, j);
    assert_int_equal(api_in_tags(&in, "Tags", 0, "TagKey", "TagValue", &tags), COFFER_OK);
    assert_null(tags);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_non_null(strstr(coffer_last_message(), "2 validation errors detected: "));
    assert_non_null(strstr(coffer_last_message(),
                           "at 'tags.2.member.tagKey' failed to satisfy constraint: Member "
                           "must have length less than or equal to 128"));
    assert_non_null(strstr(coffer_last_message(), "Value null at 'tags.2.member.tagValue'"));
    json_decref(j);

    j = parse("{\"TagKeys\":[\"a\",\"\"]}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string_list(&in, "TagKeys", API_IN_REQUIRED, 0, 50, 1, 128, &gt), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
    assert_string_equal(coffer_last_message(),
                        "1 validation error detected: Value '' at 'tagKeys.2.member' failed to satisfy "
                        "constraint: Member must have length greater than or equal to 1");
    json_decref(j);
    j = parse("{\"TagKeys\":[\"a\",3]}");
    api_in_init(&in, j);
    assert_int_equal(api_in_string_list(&in, "TagKeys", API_IN_REQUIRED, 0, 50, 1, 128, &gt),
                     COFFER_ERR_SERIALIZATION);
    json_decref(j);
}

static void test_not_object(void **state)
{
    json_t *j = parse("[1,2]");
    api_in in;
    const char *key;
    api_in_init(&in, j);
    assert_int_equal(api_in_string(&in, "KeyId", 0, 1, 2048, &key), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_ERR_SERIALIZATION);
    json_decref(j);

    /* NULL input reads as {}. */
    api_in_init(&in, NULL);
    assert_int_equal(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key), COFFER_OK);
    assert_int_equal(api_in_done(&in), COFFER_ERR_VALIDATION);
}

/* A service's declaration overrides err.h's names field by field; no service means the defaults. */
static void test_service_errors_and_sensitive_members(void **state)
{
    (void)state;
    static const struct api_error_name errors[] = {
        {COFFER_ERR_NOT_FOUND, "ParameterNotFound", 0, NULL},
        {COFFER_ERR_INTERNAL, NULL, 503, "try again"},
    };
    static const char *const sensitive[] = {"Value", NULL};
    struct api_service svc = {.errors = errors, .n_errors = 2, .sensitive_members = sensitive};
    struct api_error e = api_service_error(&svc, COFFER_ERR_NOT_FOUND);
    assert_string_equal(e.type, "ParameterNotFound");
    assert_int_equal(e.status, 400);
    e = api_service_error(&svc, COFFER_ERR_INTERNAL);
    assert_string_equal(e.type, "InternalFailure");
    assert_int_equal(e.status, 503);
    assert_string_equal(e.message, "try again");
    e = api_service_error(NULL, COFFER_ERR_INTERNAL);
    assert_string_equal(e.type, "InternalFailure");
    assert_int_equal(e.status, 500);
    coffer_clear_err();
    assert_string_equal(api_service_error_message(&svc, COFFER_ERR_INTERNAL), "try again");
    coffer_fail(COFFER_ERR_INTERNAL, "disk on fire");
    assert_string_equal(api_service_error_message(&svc, COFFER_ERR_INTERNAL), "disk on fire");
    assert_string_equal(api_service_error_message(&svc, COFFER_ERR_NOT_FOUND), "not found");
    assert_true(api_service_member_is_sensitive(&svc, "Value"));
    assert_false(api_service_member_is_sensitive(&svc, "Name"));
    svc.sensitive_members = NULL;
    assert_false(api_service_member_is_sensitive(&svc, "Value"));
    assert_true(api_service_member_is_sensitive(NULL, "Name"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_ok_and_missing),
        cmocka_unit_test(test_string_wrong_type_and_length),
        cmocka_unit_test(test_blob_limits),
        cmocka_unit_test(test_int_range),
        cmocka_unit_test(test_bool_enum_and_several_errors),
        cmocka_unit_test(test_map_list_tags),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_service_errors_and_sensitive_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
