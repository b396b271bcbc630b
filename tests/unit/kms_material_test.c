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
#include <openssl/rsa.h>
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

/* The public half as OpenSSL sees it from the SPKI crypto_pkey_public_der gives. */
static EVP_PKEY *public_of(const crypto_pkey *k)
{
    coffer_buf spki = COFFER_BUF_INIT;
    assert_int_equal(crypto_pkey_public_der(k, &spki), COFFER_OK);
    const unsigned char *p = spki.data;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)spki.len);
    assert_non_null(pub);
    coffer_buf_free(&spki);
    return pub;
}

/* Signs with crypto_pkey_sign, checks the signature with OpenSSL directly, then tampers. */
static void sign_case(enum crypto_pkey_type type, enum crypto_sig_scheme scheme, enum crypto_digest d,
                      const EVP_MD *md)
{
    crypto_pkey *k = NULL;
    assert_int_equal(crypto_pkey_generate(type, &k), COFFER_OK);
    static const char msg[] = "message to sign";
    uint8_t dg[64];
    assert_int_equal(crypto_digest(d, coffer_cursor_from_str(msg), dg), COFFER_OK);
    coffer_cursor digest = coffer_cursor_from(dg, crypto_digest_len(d));
    coffer_buf sig = COFFER_BUF_INIT;
    assert_int_equal(crypto_pkey_sign(k, scheme, d, digest, &sig), COFFER_OK);
    assert_int_equal(crypto_pkey_verify(k, scheme, d, digest, coffer_buf_cursor(&sig)), COFFER_OK);

    /* Independent check: OpenSSL over the raw message with the SPKI's key. */
    EVP_PKEY *pub = public_of(k);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    assert_int_equal(EVP_DigestVerifyInit(mc, &pc, md, NULL, pub), 1);
    if (scheme == CRYPTO_SIG_RSA_PSS) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 1);
        /* Salt length = digest length: verifying with exactly that length must pass. */
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, (int)crypto_digest_len(d)), 1);
    }
    assert_int_equal(EVP_DigestVerify(mc, sig.data, sig.len, (const unsigned char *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(pub);

    /* Another message, a flipped bit, the other scheme, a short digest. */
    uint8_t other[64];
    memcpy(other, dg, sizeof(other));
    other[0] ^= 1;
    assert_int_equal(
        crypto_pkey_verify(k, scheme, d, coffer_cursor_from(other, digest.len), coffer_buf_cursor(&sig)),
        COFFER_ERR_SIGNATURE_MISMATCH);
    sig.data[sig.len / 2] ^= 0x10;
    assert_int_equal(crypto_pkey_verify(k, scheme, d, digest, coffer_buf_cursor(&sig)),
                     COFFER_ERR_SIGNATURE_MISMATCH);
    assert_int_equal(crypto_pkey_verify(k, scheme, d, digest, coffer_cursor_from(sig.data, 0)),
                     COFFER_ERR_SIGNATURE_MISMATCH);
    if (scheme != CRYPTO_SIG_ECDSA) {
        enum crypto_sig_scheme wrong =
            scheme == CRYPTO_SIG_RSA_PSS ? CRYPTO_SIG_RSA_PKCS1 : CRYPTO_SIG_RSA_PSS;
        sig.data[sig.len / 2] ^= 0x10;
        assert_int_equal(crypto_pkey_verify(k, wrong, d, digest, coffer_buf_cursor(&sig)),
                         COFFER_ERR_SIGNATURE_MISMATCH);
        assert_int_equal(crypto_pkey_sign(k, CRYPTO_SIG_ECDSA, d, digest, &sig), COFFER_ERR_VALIDATION);
    } else {
        assert_int_equal(crypto_pkey_sign(k, CRYPTO_SIG_RSA_PSS, d, digest, &sig), COFFER_ERR_VALIDATION);
    }
    assert_int_equal(crypto_pkey_sign(k, scheme, d, coffer_cursor_from(dg, digest.len - 1), &sig),
                     COFFER_ERR_VALIDATION);
    coffer_buf_free(&sig);
    crypto_pkey_free(k);
}

static void test_sign_verify(void **state)
{
    (void)state;
    sign_case(CRYPTO_PKEY_RSA_2048, CRYPTO_SIG_RSA_PSS, CRYPTO_SHA256, EVP_sha256());
    sign_case(CRYPTO_PKEY_RSA_2048, CRYPTO_SIG_RSA_PSS, CRYPTO_SHA512, EVP_sha512());
    sign_case(CRYPTO_PKEY_RSA_2048, CRYPTO_SIG_RSA_PKCS1, CRYPTO_SHA384, EVP_sha384());
    sign_case(CRYPTO_PKEY_EC_P256, CRYPTO_SIG_ECDSA, CRYPTO_SHA256, EVP_sha256());
    sign_case(CRYPTO_PKEY_EC_P384, CRYPTO_SIG_ECDSA, CRYPTO_SHA384, EVP_sha384());
    sign_case(CRYPTO_PKEY_EC_P521, CRYPTO_SIG_ECDSA, CRYPTO_SHA512, EVP_sha512());
    sign_case(CRYPTO_PKEY_EC_SECP256K1, CRYPTO_SIG_ECDSA, CRYPTO_SHA256, EVP_sha256());
}

/* OAEP both ways against OpenSSL directly, the size limit, and ciphertext that does not open. */
static void oaep_case(enum crypto_oaep_hash h, const EVP_MD *md, size_t max)
{
    crypto_pkey *k = NULL;
    assert_int_equal(crypto_pkey_generate(CRYPTO_PKEY_RSA_2048, &k), COFFER_OK);
    assert_int_equal(crypto_pkey_oaep_max_plaintext(k, h), max);
    uint8_t pt[256];
    memset(pt, 0xa5, sizeof(pt));
    coffer_buf ct = COFFER_BUF_INIT, out = COFFER_SECRET_BUF_INIT;
    assert_int_equal(crypto_pkey_oaep_encrypt(k, h, coffer_cursor_from(pt, max + 1), &ct),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(crypto_pkey_oaep_encrypt(k, h, coffer_cursor_from(pt, max), &ct), COFFER_OK);
    assert_int_equal(ct.len, 256);
    assert_int_equal(crypto_pkey_oaep_decrypt(k, h, coffer_buf_cursor(&ct), &out), COFFER_OK);
    assert_int_equal(out.len, max);
    assert_memory_equal(out.data, pt, max);
    /* The other hash does not open it. */
    out.len = 0;
    enum crypto_oaep_hash other = h == CRYPTO_OAEP_SHA1 ? CRYPTO_OAEP_SHA256 : CRYPTO_OAEP_SHA1;
    assert_int_equal(crypto_pkey_oaep_decrypt(k, other, coffer_buf_cursor(&ct), &out),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(out.len, 0);

    /* Made by OpenSSL with the public key alone, opened here. */
    EVP_PKEY *pub = public_of(k);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(c, md), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(c, md), 1);
    uint8_t ext[256];
    size_t ext_len = sizeof(ext);
    assert_int_equal(EVP_PKEY_encrypt(c, ext, &ext_len, pt, 32), 1);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pub);
    assert_int_equal(crypto_pkey_oaep_decrypt(k, h, coffer_cursor_from(ext, ext_len), &out), COFFER_OK);
    assert_int_equal(out.len, 32);
    ext[10] ^= 1;
    out.len = 0;
    assert_int_equal(crypto_pkey_oaep_decrypt(k, h, coffer_cursor_from(ext, ext_len), &out),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(crypto_pkey_oaep_decrypt(k, h, coffer_cursor_from(ext, 0), &out),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(out.len, 0);
    coffer_buf_free(&ct);
    coffer_buf_free(&out);
    crypto_pkey_free(k);
}

static void test_oaep(void **state)
{
    (void)state;
    oaep_case(CRYPTO_OAEP_SHA1, EVP_sha1(), 214);
    oaep_case(CRYPTO_OAEP_SHA256, EVP_sha256(), 190);
    /* An EC key does no OAEP. */
    crypto_pkey *k = NULL;
    coffer_buf ct = COFFER_BUF_INIT;
    assert_int_equal(crypto_pkey_generate(CRYPTO_PKEY_EC_P256, &k), COFFER_OK);
    assert_int_equal(crypto_pkey_oaep_max_plaintext(k, CRYPTO_OAEP_SHA256), 0);
    assert_int_equal(crypto_pkey_oaep_encrypt(k, CRYPTO_OAEP_SHA256, coffer_cursor_from_str("x"), &ct),
                     COFFER_ERR_VALIDATION);
    crypto_pkey_free(k);
    coffer_buf_free(&ct);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_table),  cmocka_unit_test(test_symmetric),
        cmocka_unit_test(test_hmac),        cmocka_unit_test(test_rsa),
        cmocka_unit_test(test_ecc),         cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_spec_table),  cmocka_unit_test(test_symmetric),
        cmocka_unit_test(test_hmac),        cmocka_unit_test(test_rsa),
        cmocka_unit_test(test_ecc),         cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_sign_verify), cmocka_unit_test(test_oaep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
