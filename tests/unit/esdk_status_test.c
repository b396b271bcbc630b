/*
 * libcoffer's status codes are ABI: this test pins every number and name, so renumbering one
 * fails here, and checks the boundary: every internal coffer_err maps to a public status,
 * public calls answer public statuses (not the server's enum positions), and a status returned
 * by a caller-written keyring survives the trip through the library.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/esdk.h"
#include "esdk/esdk_internal.h"

/* The published values. Append new codes at the end; never edit a line. */
static const struct {
    int status;
    int pinned;
    const char *name;
} pins[] = {
    {COFFER_STATUS_OK, 0, "COFFER_STATUS_OK"},
    {COFFER_STATUS_NOMEM, 1, "COFFER_STATUS_NOMEM"},
    {COFFER_STATUS_INTERNAL, 2, "COFFER_STATUS_INTERNAL"},
    {COFFER_STATUS_IO, 3, "COFFER_STATUS_IO"},
    {COFFER_STATUS_CRYPTO, 4, "COFFER_STATUS_CRYPTO"},
    {COFFER_STATUS_CONFIG, 5, "COFFER_STATUS_CONFIG"},
    {COFFER_STATUS_USAGE, 6, "COFFER_STATUS_USAGE"},
    {COFFER_STATUS_UNAVAILABLE, 7, "COFFER_STATUS_UNAVAILABLE"},
    {COFFER_STATUS_BAD_MESSAGE, 8, "COFFER_STATUS_BAD_MESSAGE"},
    {COFFER_STATUS_CANNOT_DECRYPT, 9, "COFFER_STATUS_CANNOT_DECRYPT"},
    {COFFER_STATUS_COMMITMENT_MISMATCH, 10, "COFFER_STATUS_COMMITMENT_MISMATCH"},
    {COFFER_STATUS_POLICY_VIOLATION, 11, "COFFER_STATUS_POLICY_VIOLATION"},
    {COFFER_STATUS_BAD_SIGNATURE, 12, "COFFER_STATUS_BAD_SIGNATURE"},
    {COFFER_STATUS_LIMIT, 13, "COFFER_STATUS_LIMIT"},
    {COFFER_STATUS_KEYRING, 14, "COFFER_STATUS_KEYRING"},
};
#define N_PINS (sizeof(pins) / sizeof(pins[0]))

static bool known_status(int s)
{
    return strcmp(coffer_status_name(s), "COFFER_STATUS_UNKNOWN") != 0;
}

static void test_values_are_pinned(void **state)
{
    for (size_t i = 0; i < N_PINS; i++) {
        assert_int_equal(pins[i].status, pins[i].pinned);
        assert_string_equal(coffer_status_name(pins[i].pinned), pins[i].name);
        assert_string_not_equal(coffer_strerror(pins[i].pinned), "unknown status");
    }
    /* Nothing past the last pinned code is named: a new code needs a pin above. */
    assert_false(known_status((int)N_PINS));
    assert_false(known_status(-1));
    assert_string_equal(coffer_strerror(-1), "unknown status");
    assert_string_equal(coffer_strerror(1000), "unknown status");
    assert_string_equal(coffer_status_name(1000), "COFFER_STATUS_UNKNOWN");
    assert_string_equal(coffer_strerror(COFFER_STATUS_OK), "success");
    assert_string_equal(coffer_strerror(COFFER_STATUS_BAD_MESSAGE), "malformed or tampered message");
}

static void test_every_internal_error_maps(void **state)
{
    for (int e = 0; e < COFFER_ERR_COUNT; e++) {
        int s = esdk_status((coffer_err)e);
        if (!known_status(s)) {
            fail_msg("%s maps to the unknown status %d", coffer_err_name((coffer_err)e), s);
        }
        if ((e == COFFER_OK) != (s == COFFER_STATUS_OK)) {
            fail_msg("%s maps to %s", coffer_err_name((coffer_err)e), coffer_status_name(s));
        }
    }
    /* The codes libcoffer raises itself keep their meaning. */
    assert_int_equal(esdk_status(COFFER_ERR_USAGE), COFFER_STATUS_USAGE);
    assert_int_equal(esdk_status(COFFER_ERR_BAD_MESSAGE), COFFER_STATUS_BAD_MESSAGE);
    assert_int_equal(esdk_status(COFFER_ERR_CANNOT_DECRYPT), COFFER_STATUS_CANNOT_DECRYPT);
    assert_int_equal(esdk_status(COFFER_ERR_KEYRING), COFFER_STATUS_KEYRING);
    assert_int_equal(esdk_status(COFFER_ERR_INVALID_CIPHERTEXT), COFFER_STATUS_BAD_MESSAGE);
    assert_int_equal(esdk_status(COFFER_ERR_ACCESS_DENIED), COFFER_STATUS_INTERNAL);
}

static void test_status_round_trip(void **state)
{
    for (size_t i = 0; i < N_PINS; i++) {
        coffer_clear_err();
        assert_int_equal(esdk_status(esdk_err(pins[i].status, COFFER_ERR_INTERNAL)), pins[i].status);
        assert_int_equal(coffer_last_status(), pins[i].status);
    }
    coffer_clear_err();
    assert_int_equal(esdk_err(1000, COFFER_ERR_KEYRING), COFFER_ERR_KEYRING);
    assert_int_equal(coffer_last_status(), COFFER_STATUS_KEYRING);
    /* A built-in method's own failure keeps its exact code and detail. */
    coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "the tag does not verify");
    assert_int_equal(esdk_err(COFFER_STATUS_BAD_MESSAGE, COFFER_ERR_INTERNAL), COFFER_ERR_INVALID_CIPHERTEXT);
    assert_string_equal(coffer_status_message(COFFER_STATUS_BAD_MESSAGE), "the tag does not verify");
    assert_string_equal(coffer_status_message(COFFER_STATUS_USAGE), "invalid argument");
}

static const uint8_t key32[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* The public calls answer the pinned numbers, whatever the server's enum looks like. */
static void test_public_calls_answer_public_codes(void **state)
{
    coffer_header *h = NULL;
    assert_int_equal(coffer_header_parse((const uint8_t *)"\x02\x05", 2, &h, NULL), 8);
    assert_int_equal(coffer_last_status(), COFFER_STATUS_BAD_MESSAGE);
    assert_string_equal(coffer_status_name(coffer_last_status()), "COFFER_STATUS_BAD_MESSAGE");

    coffer_keyring *kr = coffer_keyring_raw_aes_new("ns", "k", key32, 32);
    assert_non_null(kr);
    coffer_cmm *cmm = coffer_cmm_default_new(kr);
    assert_non_null(cmm);
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    assert_non_null(e);
    assert_int_equal(coffer_encryptor_set_frame_length(e, 0), 6);
    assert_int_equal(coffer_encryptor_set_suite(e, 0x0999), COFFER_STATUS_USAGE);
    coffer_encryptor_free(e);

    uint8_t *ct = NULL, *pt = NULL;
    size_t ctl = 0, ptl = 0;
    assert_int_equal(coffer_encrypt(cmm, NULL, (const uint8_t *)"hello", 5, &ct, &ctl), COFFER_STATUS_OK);
    ct[ctl - 1] ^= 1;
    int st = coffer_decrypt(cmm, NULL, ct, ctl, &pt, &ptl);
    assert_true(st == COFFER_STATUS_BAD_MESSAGE || st == COFFER_STATUS_BAD_SIGNATURE);
    coffer_bytes_free(ct, ctl);
    coffer_cmm_release(cmm);
    coffer_keyring_release(kr);
}

/* A caller-written keyring: it knows only the public statuses. */
struct failing_keyring {
    coffer_keyring base;
    int status;
};

static int failing_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    return ((struct failing_keyring *)kr)->status;
}

static int failing_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks, size_t n)
{
    return ((struct failing_keyring *)kr)->status;
}

static void failing_destroy(coffer_keyring *kr)
{
}

static const struct coffer_keyring_vt failing_vt = {
    sizeof(struct coffer_keyring_vt), "failing", failing_on_encrypt, failing_on_decrypt, failing_destroy,
};

static int encrypt_with_status(int status)
{
    struct failing_keyring k;
    coffer_keyring_base_init(&k.base, &failing_vt);
    k.status = status;
    coffer_cmm *cmm = coffer_cmm_default_new(&k.base);
    assert_non_null(cmm);
    uint8_t *ct = NULL;
    size_t ctl = 0;
    coffer_clear_err();
    int st = coffer_encrypt(cmm, NULL, (const uint8_t *)"x", 1, &ct, &ctl);
    coffer_cmm_release(cmm);
    return st;
}

static void test_caller_keyring_status_survives(void **state)
{
    assert_int_equal(encrypt_with_status(COFFER_STATUS_KEYRING), COFFER_STATUS_KEYRING);
    assert_string_equal(coffer_status_message(COFFER_STATUS_KEYRING), "keyring failure");
    assert_int_equal(encrypt_with_status(COFFER_STATUS_UNAVAILABLE), COFFER_STATUS_UNAVAILABLE);
    assert_int_equal(encrypt_with_status(COFFER_STATUS_LIMIT), COFFER_STATUS_LIMIT);
    /* Not a status at all: reported as a keyring failure, never as success or as garbage. */
    assert_int_equal(encrypt_with_status(-1), COFFER_STATUS_KEYRING);
    assert_int_equal(encrypt_with_status(4242), COFFER_STATUS_KEYRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_pinned),
        cmocka_unit_test(test_every_internal_error_maps),
        cmocka_unit_test(test_status_round_trip),
        cmocka_unit_test(test_public_calls_answer_public_codes),
        cmocka_unit_test(test_caller_keyring_status_survives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
