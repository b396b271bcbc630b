/*
 * Unit tests for src/kms/kms_material.c and the key pairs under it (src/crypto/crypto_pkey.c):
 * the spec enum matches the API model's table, every served spec generates material that loads
 * back, and material of another spec (modulus size, curve, algorithm, length) or with bytes
 * appended is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kms/kms_internal.h"
#include "kms/kms_material.h"

static void test_spec_table(void **state)
{
    (void)state;
    int n = 0;
    while (kms_key_specs[n] != NULL) {
        enum kms_spec s;
        assert_true(kms_spec_parse(kms_key_specs[n], &s));
        assert_int_equal(s, n);
        assert_string_equal(kms_spec_name(s), kms_key_specs[n]);
        n++;
    }
    assert_int_equal(n, KMS_SPEC_COUNT);
    enum kms_spec s;
    assert_false(kms_spec_parse("symmetric_default", &s));
    assert_false(kms_spec_parse(NULL, &s));
    assert_int_equal(kms_spec_family(KMS_SPEC_RSA_3072), KMS_FAMILY_RSA);
    assert_int_equal(kms_spec_family(KMS_SPEC_ECC_SECG_P256K1), KMS_FAMILY_ECC);
    assert_int_equal(kms_spec_family(KMS_SPEC_HMAC_384), KMS_FAMILY_HMAC);
    assert_int_equal(kms_spec_family(KMS_SPEC_SM2), KMS_FAMILY_UNSUPPORTED);
    assert_int_equal(kms_spec_hmac_key_len(KMS_SPEC_HMAC_224), 28);
    assert_int_equal(kms_spec_hmac_key_len(KMS_SPEC_HMAC_512), 64);
    assert_int_equal(kms_spec_hmac_key_len(KMS_SPEC_SYMMETRIC_DEFAULT), 0);
}

/* Generates material of spec, checks its shape and that it loads back as the same spec only. */
static void roundtrip(enum kms_spec spec, enum kms_spec other)
{
    struct kms_material m = {0}, back = {0}, wrong = {0};
    assert_int_equal(kms_material_generate(spec, &m), COFFER_OK);
    assert_non_null(m.key);
    enum kms_spec_family fam = kms_spec_family(spec);
    if (fam == KMS_FAMILY_RSA || fam == KMS_FAMILY_ECC) {
        assert_non_null(m.pair);
        /* The public half is a SubjectPublicKeyInfo OpenSSL reads. */
        coffer_buf pub = COFFER_BUF_INIT;
        assert_int_equal(crypto_pkey_public_der(m.pair, &pub), COFFER_OK);
        const unsigned char *p = pub.data;
        EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)pub.len);
        assert_non_null(pk);
        assert_ptr_equal(p, pub.data + pub.len);
        EVP_PKEY_free(pk);
        coffer_buf_free(&pub);
    } else {
        assert_null(m.pair);
        assert_int_equal(m.key_len, fam == KMS_FAMILY_HMAC ? kms_spec_hmac_key_len(spec) : 32);
    }
    assert_int_equal(kms_material_set(spec, kms_material_bytes(&m), &back), COFFER_OK);
    assert_int_equal(back.key_len, m.key_len);
    assert_memory_equal(back.key, m.key, m.key_len);
    assert_int_equal(kms_material_set(other, kms_material_bytes(&m), &wrong), COFFER_ERR_VALIDATION);
    assert_null(wrong.key);

    /* One byte more or less is not the same material. */
    uint8_t *longer = malloc(m.key_len + 1);
    assert_non_null(longer);
    memcpy(longer, m.key, m.key_len);
    longer[m.key_len] = 0;
    assert_int_equal(kms_material_set(spec, coffer_cursor_from(longer, m.key_len + 1), &wrong),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(kms_material_set(spec, coffer_cursor_from(m.key, m.key_len - 1), &wrong),
                     COFFER_ERR_VALIDATION);
    assert_null(wrong.key);
    free(longer);

    /* Two generations differ. */
    struct kms_material m2 = {0};
    assert_int_equal(kms_material_generate(spec, &m2), COFFER_OK);
    assert_memory_not_equal(m.id, m2.id, KMS_MATERIAL_ID_LEN);
    assert_false(m.key_len == m2.key_len && memcmp(m.key, m2.key, m.key_len) == 0);
    kms_material_clear(&m2);

    kms_material_clear(&m);
    kms_material_clear(&back);
    assert_null(m.key);
    assert_int_equal(m.key_len, 0);
    assert_null(m.pair);
}

static void test_symmetric(void **state)
{
    (void)state;
    roundtrip(KMS_SPEC_SYMMETRIC_DEFAULT, KMS_SPEC_HMAC_384);
}

static void test_hmac(void **state)
{
    (void)state;
    roundtrip(KMS_SPEC_HMAC_224, KMS_SPEC_HMAC_256);
    roundtrip(KMS_SPEC_HMAC_256, KMS_SPEC_HMAC_224);
    roundtrip(KMS_SPEC_HMAC_384, KMS_SPEC_HMAC_512);
    roundtrip(KMS_SPEC_HMAC_512, KMS_SPEC_HMAC_384);
}

static void test_rsa(void **state)
{
    (void)state;
    roundtrip(KMS_SPEC_RSA_2048, KMS_SPEC_RSA_3072);
    roundtrip(KMS_SPEC_RSA_2048, KMS_SPEC_ECC_NIST_P256);
}

static void test_ecc(void **state)
{
    (void)state;
    roundtrip(KMS_SPEC_ECC_NIST_P256, KMS_SPEC_ECC_SECG_P256K1);
    roundtrip(KMS_SPEC_ECC_NIST_P384, KMS_SPEC_ECC_NIST_P521);
    roundtrip(KMS_SPEC_ECC_NIST_P521, KMS_SPEC_RSA_2048);
    roundtrip(KMS_SPEC_ECC_SECG_P256K1, KMS_SPEC_ECC_NIST_P256);
}

static void test_unsupported(void **state)
{
    (void)state;
    struct kms_material m = {0};
    assert_int_equal(kms_material_generate(KMS_SPEC_SM2, &m), COFFER_ERR_UNSUPPORTED_OPERATION);
    assert_int_equal(kms_material_set(KMS_SPEC_ML_DSA_44, coffer_cursor_from("x", 1), &m),
                     COFFER_ERR_VALIDATION);
    assert_null(m.key);
    /* Garbage is not a key pair. */
    assert_int_equal(kms_material_set(KMS_SPEC_RSA_2048, coffer_cursor_from("\x30\x03\x02\x01\x00", 5), &m),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(kms_material_set(KMS_SPEC_RSA_2048, coffer_cursor_from("", 0), &m),
                     COFFER_ERR_VALIDATION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_table), cmocka_unit_test(test_symmetric),
        cmocka_unit_test(test_hmac),       cmocka_unit_test(test_rsa),
        cmocka_unit_test(test_ecc),        cmocka_unit_test(test_unsupported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
