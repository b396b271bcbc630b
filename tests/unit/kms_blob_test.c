/*
 * Unit tests for src/kms/kms_blob.c: round trip, canonical encryption context, and every kind
 * of tampering (truncation at each length, each bit flipped, other key, other context) giving
 * the same InvalidCiphertextException.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kms/kms_blob.h"

static const char *ARN = "arn:aws:kms:us-east-1:000000000000:key/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

struct fixture {
    uint8_t key[32];
    uint8_t mid[KMS_MATERIAL_ID_LEN];
    json_t *ec;
    coffer_buf blob;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    memset(f.key, 0x42, sizeof(f.key));
    memset(f.mid, 0x17, sizeof(f.mid));
    f.ec = json_pack("{s:s,s:s}", "b", "2", "a", "1");
    coffer_buf_init(&f.blob, false);
    assert_int_equal(kms_blob_encrypt(coffer_cursor_from(f.key, 32), ARN, f.mid, f.ec,
                                      coffer_cursor_from_str("hello world"), &f.blob),
                     COFFER_OK);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    json_decref(f->ec);
    coffer_buf_free(&f->blob);
    return 0;
}

static coffer_err try_open(struct fixture *f, coffer_cursor in, const json_t *ec, coffer_buf *pt)
{
    struct kms_blob b;
    coffer_err rc = kms_blob_parse(in, &b);
    if (rc != COFFER_OK) {
        return rc;
    }
    return kms_blob_decrypt(coffer_cursor_from(f->key, 32), &b, ec, pt);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct kms_blob b;
    assert_int_equal(f->blob.len, 2 + strlen(ARN) + 32 + 12 + 11 + 16);
    assert_int_equal(kms_blob_parse(coffer_buf_cursor(&f->blob), &b), COFFER_OK);
    assert_int_equal(b.version, 1);
    assert_true(coffer_cursor_eq_str(b.key_arn, ARN));
    assert_memory_equal(b.material_id, f->mid, 32);

    /* Context order does not matter: the canonical form sorts keys. */
    json_t *same = json_pack("{s:s,s:s}", "a", "1", "b", "2");
    coffer_buf pt = COFFER_SECRET_BUF_INIT;
    assert_int_equal(try_open(f, coffer_buf_cursor(&f->blob), same, &pt), COFFER_OK);
    assert_int_equal(pt.len, 11);
    assert_memory_equal(pt.data, "hello world", 11);
    coffer_buf_free(&pt);
    json_decref(same);

    coffer_buf again = COFFER_BUF_INIT;
    assert_int_equal(kms_blob_serialize(&b, &again), COFFER_OK);
    assert_int_equal(again.len, f->blob.len);
    assert_memory_equal(again.data, f->blob.data, again.len);
    coffer_buf_free(&again);
}

static void test_wrong_context(void **state)
{
    struct fixture *f = *state;
    coffer_buf pt = COFFER_SECRET_BUF_INIT;
    json_t *other = json_pack("{s:s,s:s}", "a", "1", "b", "3");
    assert_int_equal(try_open(f, coffer_buf_cursor(&f->blob), other, &pt), COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(pt.len, 0);
    assert_string_equal(coffer_last_message(), "");
    json_decref(other);
    assert_int_equal(try_open(f, coffer_buf_cursor(&f->blob), NULL, &pt), COFFER_ERR_INVALID_CIPHERTEXT);
    other = json_pack("{s:s,s:s,s:s}", "a", "1", "b", "2", "c", "");
    assert_int_equal(try_open(f, coffer_buf_cursor(&f->blob), other, &pt), COFFER_ERR_INVALID_CIPHERTEXT);
    json_decref(other);
    /* Moving a byte between key and value must change the canonical form. */
    other = json_pack("{s:s,s:s}", "a1", "", "b", "2");
    assert_int_equal(try_open(f, coffer_buf_cursor(&f->blob), other, &pt), COFFER_ERR_INVALID_CIPHERTEXT);
    json_decref(other);
    coffer_buf_free(&pt);
}

static void test_truncations_and_bit_flips(void **state)
{
    struct fixture *f = *state;
    coffer_buf pt = COFFER_SECRET_BUF_INIT;
    for (size_t n = 0; n < f->blob.len; n++) {
        assert_int_equal(try_open(f, coffer_cursor_from(f->blob.data, n), f->ec, &pt),
                         COFFER_ERR_INVALID_CIPHERTEXT);
    }
    coffer_buf copy = COFFER_BUF_INIT;
    assert_int_equal(coffer_buf_append_cur(&copy, coffer_buf_cursor(&f->blob)), COFFER_OK);
    for (size_t i = 0; i < copy.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            copy.data[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(try_open(f, coffer_buf_cursor(&copy), f->ec, &pt),
                             COFFER_ERR_INVALID_CIPHERTEXT);
            copy.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Extra trailing byte. */
    assert_int_equal(coffer_buf_append_u8(&copy, 0), COFFER_OK);
    assert_int_equal(try_open(f, coffer_buf_cursor(&copy), f->ec, &pt), COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(pt.len, 0);
    coffer_buf_free(&copy);
    coffer_buf_free(&pt);
}

static void test_wrong_key_and_garbage(void **state)
{
    struct fixture *f = *state;
    coffer_buf pt = COFFER_SECRET_BUF_INIT;
    struct kms_blob b;
    uint8_t other[32];
    memset(other, 0x43, sizeof(other));
    assert_int_equal(kms_blob_parse(coffer_buf_cursor(&f->blob), &b), COFFER_OK);
    assert_int_equal(kms_blob_decrypt(coffer_cursor_from(other, 32), &b, f->ec, &pt),
                     COFFER_ERR_INVALID_CIPHERTEXT);

    uint8_t junk[200];
    memset(junk, 0xff, sizeof(junk));
    assert_int_equal(kms_blob_parse(coffer_cursor_from(junk, sizeof(junk)), &b),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    junk[0] = 1;
    junk[1] = 5; /* ARN shorter than any real one */
    assert_int_equal(kms_blob_parse(coffer_cursor_from(junk, sizeof(junk)), &b),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    junk[1] = 30; /* 0xff is not printable ASCII */
    assert_int_equal(kms_blob_parse(coffer_cursor_from(junk, sizeof(junk)), &b),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(kms_blob_parse(coffer_cursor_from(NULL, 0), &b), COFFER_ERR_INVALID_CIPHERTEXT);
    coffer_buf_free(&pt);
}

static void test_ec_canonical_form(void **state)
{
    json_t *ec = json_pack("{s:s,s:s}", "bb", "x", "a", "yz");
    coffer_buf out = COFFER_BUF_INIT;
    assert_int_equal(kms_ec_canonical(ec, &out), COFFER_OK);
    static const uint8_t want[] = {0,   0,   0, 2, 0, 0, 0,   1,   'a', 0, 0, 0, 2,
                                   'y', 'z', 0, 0, 0, 2, 'b', 'b', 0,   0, 0, 1, 'x'};
    assert_int_equal(out.len, sizeof(want));
    assert_memory_equal(out.data, want, sizeof(want));
    coffer_buf_reset(&out);
    assert_int_equal(kms_ec_canonical(NULL, &out), COFFER_OK);
    assert_int_equal(out.len, 4);
    coffer_buf_free(&out);
    json_decref(ec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncations_and_bit_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_and_garbage, setup, teardown),
        cmocka_unit_test(test_ec_canonical_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
