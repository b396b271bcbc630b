/*
 * Unit tests for src/http/query: the form reader (escapes, repeated and bad names, UTF-8,
 * limits), the XML writer (escaping, lists as <member>, the envelope) and the error document.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/query.h"

static json_t *form_ok(const char *s)
{
    json_t *j = NULL;
    assert_int_equal(query_form_parse(coffer_cursor_from_str(s), &j), COFFER_OK);
    assert_non_null(j);
    return j;
}

static void form_bad(const char *s, size_t len)
{
    json_t *j = NULL;
    assert_int_equal(query_form_parse(coffer_cursor_from(s, len), &j), COFFER_ERR_VALIDATION);
    assert_null(j);
}

static void test_form_basic(void **state)
{
    (void)state;
    json_t *j =
        form_ok("Action=CreateUser&Version=2010-05-08&UserName=al%69ce+b&&Path=%2Fdev%2F&Empty=&Flag");
    assert_string_equal(json_string_value(json_object_get(j, "Action")), "CreateUser");
    assert_string_equal(json_string_value(json_object_get(j, "UserName")), "alice b");
    assert_string_equal(json_string_value(json_object_get(j, "Path")), "/dev/");
    assert_string_equal(json_string_value(json_object_get(j, "Empty")), "");
    assert_string_equal(json_string_value(json_object_get(j, "Flag")), "");
    assert_int_equal(json_object_size(j), 6);
    json_decref(j);
}

static void test_form_policy_document(void **state)
{
    (void)state;
    json_t *j = form_ok("PolicyDocument=%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D"
                        "&Tags.member.1.Key=k%C3%A9");
    assert_string_equal(json_string_value(json_object_get(j, "PolicyDocument")),
                        "{\"Version\":\"2012-10-17\",\"Statement\":[]}");
    assert_string_equal(json_string_value(json_object_get(j, "Tags.member.1.Key")), "k\xC3\xA9");
    json_decref(j);
}

static void test_form_empty(void **state)
{
    (void)state;
    json_t *j = form_ok("");
    assert_int_equal(json_object_size(j), 0);
    json_decref(j);
}

static void test_form_rejects(void **state)
{
    (void)state;
    form_bad("A=%", 3);
    form_bad("A=%4", 4);
    form_bad("A=%zz", 5);
    form_bad("A=1&A=2", 7);  /* repeated name */
    form_bad("=1", 2);       /* empty name */
    form_bad("A%20B=1", 7);  /* name with a space */
    form_bad("A=%00", 5);    /* NUL */
    form_bad("A=%FF%FE", 8); /* not UTF-8 */
    form_bad("A=\xC3", 3);   /* truncated UTF-8, raw */
    form_bad("%E2%82=1", 8); /* non-ASCII name */
}

static void test_form_limits(void **state)
{
    (void)state;
    /* QUERY_MAX_PARAMS + 1 distinct parameters */
    coffer_buf b = COFFER_BUF_INIT;
    for (int i = 0; i <= QUERY_MAX_PARAMS; i++) {
        assert_int_equal(coffer_buf_printf(&b, "%sP%d=v", i ? "&" : "", i), COFFER_OK);
    }
    form_bad((const char *)b.data, b.len);
    coffer_buf_reset(&b);
    /* a name one byte over the limit */
    assert_int_equal(coffer_buf_append_str(&b, "N"), COFFER_OK);
    for (int i = 0; i < QUERY_MAX_NAME; i++) {
        assert_int_equal(coffer_buf_append_str(&b, "x"), COFFER_OK);
    }
    assert_int_equal(coffer_buf_append_str(&b, "=1"), COFFER_OK);
    form_bad((const char *)b.data, b.len);
    coffer_buf_free(&b);
}

static void test_xml_escape(void **state)
{
    (void)state;
    coffer_buf b = COFFER_BUF_INIT;
    const char in[] = "<a href='x'>&\"\n\x01";
    assert_int_equal(query_xml_escape(in, sizeof(in) - 1, &b), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_string_equal((const char *)b.data, "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&#xA;\xEF\xBF\xBD");
    coffer_buf_free(&b);
}

static void test_xml_response(void **state)
{
    (void)state;
    coffer_buf b = COFFER_BUF_INIT;
    json_t *out = json_pack("{s:[{s:s, s:i}, {s:s}], s:b, s:n}", "Users", "UserName", "a<b", "Count", 3,
                            "UserName", "c", "IsTruncated", 0, "Marker");
    assert_int_equal(
        query_xml_response("ListUsers", "https://iam.amazonaws.com/doc/2010-05-08/", out, "rid-1", &b),
        COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_string_equal(
        (const char *)b.data,
        "<ListUsersResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ListUsersResult>"
        "<Users><member><UserName>a&lt;b</UserName><Count>3</Count></member>"
        "<member><UserName>c</UserName></member></Users><IsTruncated>false</IsTruncated>"
        "</ListUsersResult><ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata>"
        "</ListUsersResponse>");
    json_decref(out);
    coffer_buf_reset(&b);
    /* no output: no Result element */
    assert_int_equal(query_xml_response("DeleteUser", "ns", NULL, "r", &b), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_string_equal((const char *)b.data,
                        "<DeleteUserResponse xmlns=\"ns\"><ResponseMetadata><RequestId>r"
                        "</RequestId></ResponseMetadata></DeleteUserResponse>");
    /* an action name that is not a plain identifier is refused, nothing appended */
    size_t len = b.len;
    assert_int_equal(query_xml_response("Bad<Name", "ns", NULL, "r", &b), COFFER_ERR_USAGE);
    assert_int_equal(b.len, len);
    coffer_buf_free(&b);
}

static void test_xml_error(void **state)
{
    (void)state;
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(
        query_xml_error("NoSuchEntity", 404, "The user with name <x> cannot be found.", "r1", &b), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_string_equal(
        (const char *)b.data,
        "<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with "
        "name &lt;x&gt; cannot be found.</Message></Error><RequestId>r1</RequestId></ErrorResponse>");
    coffer_buf_free(&b);
    b = (coffer_buf)COFFER_BUF_INIT;
    assert_int_equal(query_xml_error("ServiceFailure", 500, NULL, "r2", &b), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_non_null(strstr((const char *)b.data, "<Type>Receiver</Type>"));
    assert_null(strstr((const char *)b.data, "<Message>"));
    coffer_buf_free(&b);
    b = (coffer_buf)COFFER_BUF_INIT;
    assert_int_equal(query_xml_error("A&B", 400, "", "r3", &b), COFFER_OK); /* escaped, no empty message */
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_non_null(strstr((const char *)b.data, "<Code>A&amp;B</Code></Error>"));
    coffer_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_basic),   cmocka_unit_test(test_form_policy_document),
        cmocka_unit_test(test_form_empty),   cmocka_unit_test(test_form_rejects),
        cmocka_unit_test(test_form_limits),  cmocka_unit_test(test_xml_escape),
        cmocka_unit_test(test_xml_response), cmocka_unit_test(test_xml_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
