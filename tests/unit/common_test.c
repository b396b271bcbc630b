/*
 * Unit tests for src/common: cursors, buffers, base64/hex, error context, time formatting.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/err.h"
#include "common/json_in.h"
#include "common/json_out.h"
#include "common/secret.h"
#include "common/timeutil.h"

static void test_cursor_reads(void **state)
{
    const uint8_t bytes[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                             0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
    coffer_cursor c = coffer_cursor_from(bytes, sizeof(bytes));
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    assert_int_equal(cur_read_u8(&c, &u8), COFFER_OK);
    assert_int_equal(u8, 1);
    assert_int_equal(cur_read_u16be(&c, &u16), COFFER_OK);
    assert_int_equal(u16, 0x0203);
    assert_int_equal(cur_read_u32be(&c, &u32), COFFER_OK);
    assert_int_equal(u32, 0x04050607);
    assert_int_equal(cur_read_u64be(&c, &u64), COFFER_OK);
    assert_true(u64 == 0x08090a0b0c0d0e0fULL);
    assert_int_equal(c.len, 0);
    /* A short read fails and leaves the cursor where it was. */
    coffer_cursor d = coffer_cursor_from(bytes, 3);
    assert_int_equal(cur_read_u32be(&d, &u32), COFFER_ERR_BAD_MESSAGE);
    assert_int_equal(d.len, 3);
    assert_ptr_equal(d.ptr, bytes);
    coffer_cursor f;
    assert_int_equal(cur_read_bytes(&d, 4, &f), COFFER_ERR_BAD_MESSAGE);
    assert_int_equal(cur_read_bytes(&d, 3, &f), COFFER_OK);
    assert_int_equal(f.len, 3);
}

static void test_buf_append_and_secret(void **state)
{
    coffer_buf b = COFFER_BUF_INIT;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(coffer_buf_append_u16be(&b, (uint16_t)i), COFFER_OK);
    }
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.data[1998], 999 >> 8);
    assert_int_equal(b.data[1999], 999 & 0xff);
    assert_int_equal(coffer_buf_printf(&b, "x=%d", 42), COFFER_OK);
    assert_memory_equal(b.data + 2000, "x=42", 4);
    coffer_buf_free(&b);
    assert_null(b.data);
    coffer_buf_free(&b); /* double free is harmless */

    coffer_buf s = COFFER_SECRET_BUF_INIT;
    for (int i = 0; i < 300; i++) {
        assert_int_equal(coffer_buf_append_u8(&s, 0xAA), COFFER_OK);
    }
    assert_int_equal(s.len, 300);
    assert_true(s.cap >= 300);
    coffer_buf_free(&s);
}

static void test_b64(void **state)
{
    static const struct {
        const char *plain, *enc;
    } cases[] = {{"", ""},
                 {"f", "Zg=="},
                 {"fo", "Zm8="},
                 {"foo", "Zm9v"},
                 {"foob", "Zm9vYg=="},
                 {"fooba", "Zm9vYmE="},
                 {"foobar", "Zm9vYmFy"},
                 {"hello", "aGVsbG8="}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        coffer_buf e = COFFER_BUF_INIT, d = COFFER_BUF_INIT;
        assert_int_equal(coffer_b64_encode(coffer_cursor_from_str(cases[i].plain), &e), COFFER_OK);
        assert_int_equal(e.len, strlen(cases[i].enc));
        assert_memory_equal(e.data, cases[i].enc, e.len);
        assert_int_equal(coffer_b64_decode(coffer_cursor_from_str(cases[i].enc), &d), COFFER_OK);
        assert_int_equal(d.len, strlen(cases[i].plain));
        if (d.len) {
            assert_memory_equal(d.data, cases[i].plain, d.len);
        }
        coffer_buf_free(&e);
        coffer_buf_free(&d);
    }
    static const char *bad[] = {"Zg=", "Zg", "Z===", "Zh==", "Zm9v\n", "Zm=v", "====", "Zm9*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        coffer_buf d = COFFER_BUF_INIT;
        assert_int_equal(coffer_b64_decode(coffer_cursor_from_str(bad[i]), &d), COFFER_ERR_VALIDATION);
        coffer_buf_free(&d);
    }
    /* Every byte value as the first digit: only the 64 of the alphabet decode, each to its index. */
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int c = 0; c < 256; c++) {
        uint8_t group[4] = {(uint8_t)c, 'A', 'A', 'A'};
        coffer_buf d = COFFER_BUF_INIT;
        const char *at = c != 0 ? strchr(alphabet, c) : NULL;
        coffer_err rc = coffer_b64_decode(coffer_cursor_from(group, sizeof(group)), &d);
        if (at == NULL) {
            assert_int_equal(rc, COFFER_ERR_VALIDATION);
        } else {
            assert_int_equal(rc, COFFER_OK);
            assert_int_equal(d.len, 3);
            assert_int_equal(d.data[0], (uint8_t)((at - alphabet) << 2));
        }
        coffer_buf_free(&d);
    }
}

static void test_hex(void **state)
{
    uint8_t in[] = {0x00, 0xde, 0xad, 0xbe, 0xef, 0xff};
    char out[13];
    coffer_hex_encode(in, sizeof(in), out);
    assert_string_equal(out, "00deadbeefff");
    uint8_t back[6];
    assert_int_equal(coffer_hex_decode(coffer_cursor_from_str("00DEADbeefff"), back, 6), COFFER_OK);
    assert_memory_equal(back, in, 6);
    assert_int_equal(coffer_hex_decode(coffer_cursor_from_str("00deadbeeff"), back, 6),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(coffer_hex_decode(coffer_cursor_from_str("00deadbeefzz"), back, 6),
                     COFFER_ERR_VALIDATION);
}

static void test_url_encode(void **state)
{
    (void)state;
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(coffer_url_encode("{\"a\": \"b/c~d\"}\xC3\xA9", &b), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b), COFFER_OK);
    assert_string_equal((const char *)b.data, "%7B%22a%22%3A%20%22b%2Fc~d%22%7D%C3%A9");
    coffer_buf_free(&b);
}

static void test_err_context(void **state)
{
    coffer_clear_err();
    assert_int_equal(coffer_fail(COFFER_ERR_VALIDATION, "KeyId too long (%d)", 3000), COFFER_ERR_VALIDATION);
    assert_string_equal(coffer_last_message(), "KeyId too long (3000)");
    assert_string_equal(coffer_err_message(COFFER_ERR_VALIDATION), "KeyId too long (3000)");
    /* A different code falls back to its own default message. */
    assert_string_equal(coffer_err_message(COFFER_ERR_DISABLED), "key is disabled");
    /* The defaults name no service (a service maps its own names: api_service.errors). */
    assert_string_equal(coffer_err_aws_type(COFFER_ERR_INVALID_STATE), "InvalidRequestException");
    assert_int_equal(coffer_err_http_status(COFFER_ERR_INTERNAL), 500);
    assert_int_equal(coffer_err_http_status(COFFER_ERR_NOT_FOUND), 400);
    assert_string_equal(coffer_err_aws_type((coffer_err)9999), "InternalFailure");
}

static void test_time(void **state)
{
    char buf[64];
    coffer_time_amz(1440938160, buf, sizeof(buf));
    assert_string_equal(buf, "20150830T123600Z");
    int64_t t;
    assert_int_equal(coffer_time_parse_amz("20150830T123600Z", 16, &t), 0);
    assert_true(t == 1440938160);
    assert_int_equal(coffer_time_parse_amz("20151330T123600Z", 16, &t), -1);
    assert_int_equal(coffer_time_parse_amz("20150830 123600Z", 16, &t), -1);
    assert_int_equal(coffer_time_parse_amz("20150830T12360Z", 15, &t), -1);
    coffer_time_iso8601(1440938160, buf, sizeof(buf));
    assert_string_equal(buf, "2015-08-30T12:36:00Z");
    coffer_time_http(1440938160, buf, sizeof(buf));
    assert_string_equal(buf, "Sun, 30 Aug 2015 12:36:00 GMT");
}

/* The fast serialiser must agree byte for byte with jansson's compact output. */
static void test_json_out_matches_jansson(void **state)
{
    static const char *docs[] = {
        "{}",
        "[]",
        "{\"a\":1}",
        "{\"z\":1,\"a\":2,\"m\":[true,false,null]}",
        "{\"s\":\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r bs \\b ff \\f\"}",
        "{\"ctl\":\"\\u0000\\u0001\\u001f\\u007f\",\"utf8\":\"caf\\u00e9 \\u4e2d \\ud83d\\ude00\"}",
        "{\"n\":-9223372036854775807,\"r\":1700000000.123,\"e\":1e-300,\"neg\":-0.5}",
        "{\"deep\":{\"a\":[{\"b\":[[],{}]}],\"k\\u0002\":\"v\"}}",
        "[1,\"x\",{\"y\":[2.5,null]}]",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_error_t err;
        json_t *v = json_loads(docs[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        assert_non_null(v);
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        coffer_buf got = COFFER_BUF_INIT;
        assert_int_equal(json_out_compact(v, &got), COFFER_OK);
        assert_int_equal(got.len, strlen(want));
        assert_memory_equal(got.data, want, got.len);
        free(want);
        coffer_buf_free(&got);
        json_decref(v);
    }
    /* Strings copied in runs: every byte that needs an escape, at every offset of a word. */
    static const char special[] = {'"', '\\', '\n', '\x01', '\x1f', '\t'};
    for (size_t len = 1; len < 40; len++) {
        for (size_t at = 0; at < len; at++) {
            for (size_t k = 0; k < sizeof(special); k++) {
                char s[48];
                memset(s, 'a', len);
                s[len] = '\0';
                s[at] = special[k];
                if (at + 4 < len) {
                    s[at + 1] = ' ';     /* the lowest byte above 0x1f */
                    s[len - 2] = '\xc3'; /* bytes over 0x7f pass as they are */
                    s[len - 1] = '\xa9';
                }
                json_t *v = json_stringn_nocheck(s, len);
                char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                coffer_buf got = COFFER_BUF_INIT;
                assert_int_equal(json_out_compact(v, &got), COFFER_OK);
                assert_int_equal(got.len, strlen(want));
                assert_memory_equal(got.data, want, got.len);
                free(want);
                coffer_buf_free(&got);
                json_decref(v);
            }
        }
    }
    /* Strings long enough for the eight-bytes-at-a-time scan, with one byte to escape (or a
     * UTF-8 sequence, copied as is) at every offset: the scan must stop exactly there. */
    static const char *specials[] = {"\"", "\\", "\n", "\x01", "\x1f", "\xc3\xa9", " ", "~"};
    for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
        for (size_t at = 0; at <= 25; at++) {
            char text[64];
            memset(text, 'a' + (char)(at % 26), sizeof(text));
            size_t sl = strlen(specials[k]);
            memcpy(text + at, specials[k], sl);
            text[27 + at % 5] = '\0';
            json_t *v = json_pack("{s:s}", "k", text);
            assert_non_null(v);
            char *want = json_dumps(v, JSON_COMPACT);
            coffer_buf got = COFFER_BUF_INIT;
            assert_int_equal(json_out_compact(v, &got), COFFER_OK);
            assert_int_equal(got.len, strlen(want));
            assert_memory_equal(got.data, want, got.len);
            free(want);
            coffer_buf_free(&got);
            json_decref(v);
        }
    }
}

/* Member names of `v` in order, ',' joined, to compare orders. */
static void member_order(const json_t *v, char *out, size_t out_size)
{
    out[0] = '\0';
    for (void *it = json_object_iter((json_t *)v); it != NULL; it = json_object_iter_next((json_t *)v, it)) {
        strncat(out, json_object_iter_key(it), out_size - strlen(out) - 2);
        strcat(out, ",");
    }
}

/* The fast reader of request bodies reads what it accepts exactly as jansson does, declines
 * everything it leaves to jansson, and json_in_object accepts exactly jansson's objects. */
static void test_json_in_matches_jansson(void **state)
{
    static const char *simple[] = {
        "{}",
        " { } \r\n",
        "{\"KeyId\":\"alias/x\",\"Plaintext\":\"aGVsbG8=\"}",
        "{\"z\":1,\"a\":0,\"m\":[true,false,null],\"e\":[],\"o\":{}}",
        "{ \"KeyId\" : \"k\" ,\n\t\"EC\" : { \"b\" : \"2\", \"a\" : \"1\" } , \"N\" : 123456789012345 }",
        "{\"GrantTokens\":[\"t1\",\"t2\"],\"s\":\"sp ace /~!#\",\"\":\"empty key\"}",
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        json_t *fast = json_in_simple((const uint8_t *)simple[i], strlen(simple[i]));
        json_t *ref = json_loads(simple[i], JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(fast);
        assert_non_null(ref);
        assert_true(json_equal(fast, ref));
        char a[512], b[512];
        member_order(fast, a, sizeof(a));
        member_order(ref, b, sizeof(b));
        assert_string_equal(a, b);
        json_decref(fast);
        json_decref(ref);
    }
    /* Declined by the fast reader; valid or not, jansson decides. */
    static const struct {
        const char *doc;
        bool valid;
    } declined[] = {
        {"{\"a\":\"caf\xc3\xa9\"}", true},
        {"{\"a\":\"esc \\\" \\u00e9\"}", true},
        {"{\"a\":1.5}", true},
        {"{\"a\":1e3}", true},
        {"{\"a\":-1}", true},
        {"{\"a\":1234567890123456}", true},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}",
         true}, /* deeper than JSON_IN_SIMPLE_MAX_DEPTH */
        {"{\"a\":1,\"a\":2}", false},
        {"{\"o\":{\"a\":1,\"a\":1}}", false},
        {"{\"a\":01}", false},
        {"{\"a\":1,}", false},
        {"{\"a\":[1,]}", false},
        {"{\"a\" 1}", false},
        {"{\"a\":tru}", false},
        {"{\"a\":truex}", false},
        {"{\"a\":\"\x01\"}", false},
        {"{\"a\":\"unterminated}", false},
        {"{\"a\":1} x", false},
        {"{\"a\":1}{}", false},
        {"{\"a\":1", false},
        {"[1,2]", false}, /* valid JSON, not an object */
        {"\"s\"", false},
        {"", false},
        {"{\"a\":\"\xff\"}", false},
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        const uint8_t *p = (const uint8_t *)declined[i].doc;
        size_t n = strlen(declined[i].doc);
        assert_null(json_in_simple(p, n));
        json_t *full = json_in_object(p, n);
        assert_int_equal(full != NULL, declined[i].valid);
        json_decref(full);
    }
    /* An embedded NUL is not a document end. */
    assert_null(json_in_simple((const uint8_t *)"{}\0", 3));
    assert_null(json_in_object((const uint8_t *)"{}\0", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_reads),
        cmocka_unit_test(test_buf_append_and_secret),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_url_encode),
        cmocka_unit_test(test_err_context),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_json_out_matches_jansson),
        cmocka_unit_test(test_json_in_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
