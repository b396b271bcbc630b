/*
 * Unit tests for src/crypto against published known answers (RFC 4231 HMAC, RFC 5869 HKDF,
 * NIST GCM) plus tamper checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/codec.h"
#include "crypto/crypto.h"
#include "crypto/crypto_box.h"

static void unhex(const char *h, uint8_t *out, size_t n)
{
    assert_int_equal(coffer_hex_decode(coffer_cursor_from_str(h), out, n), COFFER_OK);
}

static void test_sha256_empty(void **state)
{
    uint8_t d[32];
    char hex[65];
    crypto_sha256("", 0, d);
    coffer_hex_encode(d, 32, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_hmac_rfc4231_case2(void **state)
{
    uint8_t mac[32];
    char hex[65];
    assert_int_equal(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from_str("Jefe"),
                                 coffer_cursor_from_str("what do ya want for nothing?"), mac),
                     COFFER_OK);
    coffer_hex_encode(mac, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_hmac_sha224_rfc4231_case2(void **state)
{
    uint8_t mac[28];
    char hex[57];
    assert_int_equal(crypto_digest_len(CRYPTO_SHA224), 28);
    assert_int_equal(crypto_hmac(CRYPTO_SHA224, coffer_cursor_from_str("Jefe"),
                                 coffer_cursor_from_str("what do ya want for nothing?"), mac),
                     COFFER_OK);
    coffer_hex_encode(mac, 28, hex);
    assert_string_equal(hex, "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44");
}

/* RFC 5649 §6, the 20-octet example; then a flipped bit and a wrong KEK fail the integrity check. */
static void test_aes_kwp_rfc5649(void **state)
{
    uint8_t kek[24], key[20], want[32];
    unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", kek, sizeof(kek));
    unhex("c37b7e6492584340bed12207808941155068f738", key, sizeof(key));
    unhex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", want, sizeof(want));
    coffer_buf w = COFFER_BUF_INIT, p = COFFER_SECRET_BUF_INIT;
    coffer_cursor kc = coffer_cursor_from(kek, sizeof(kek));
    assert_int_equal(crypto_aes_kwp_wrap(kc, coffer_cursor_from(key, sizeof(key)), &w), COFFER_OK);
    assert_int_equal(w.len, sizeof(want));
    assert_memory_equal(w.data, want, sizeof(want));
    assert_int_equal(crypto_aes_kwp_unwrap(kc, coffer_buf_cursor(&w), &p), COFFER_OK);
    assert_int_equal(p.len, sizeof(key));
    assert_memory_equal(p.data, key, sizeof(key));
    coffer_buf_reset(&p);
    w.data[5] ^= 1;
    assert_int_equal(crypto_aes_kwp_unwrap(kc, coffer_buf_cursor(&w), &p), COFFER_ERR_INVALID_CIPHERTEXT);
    w.data[5] ^= 1;
    kek[0] ^= 1;
    assert_int_equal(crypto_aes_kwp_unwrap(kc, coffer_buf_cursor(&w), &p), COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(p.len, 0);
    coffer_buf_free(&w);
    coffer_buf_free(&p);
}

/* OAEP with SHA-1 and SHA-256 round-trips; the other digest or a flipped bit does not open. */
static void test_oaep_wrap(void **state)
{
    crypto_pkey *k = NULL;
    uint8_t secret[32];
    memset(secret, 0x5a, sizeof(secret));
    assert_int_equal(crypto_pkey_generate(CRYPTO_PKEY_RSA_2048, &k), COFFER_OK);
    assert_int_equal(crypto_pkey_size(k), 256);
    for (int sha1 = 0; sha1 < 2; sha1++) {
        coffer_buf w = COFFER_BUF_INIT, p = COFFER_SECRET_BUF_INIT;
        assert_int_equal(crypto_pkey_oaep_encrypt(k, sha1 ? CRYPTO_OAEP_SHA1 : CRYPTO_OAEP_SHA256,
                                                  coffer_cursor_from(secret, sizeof(secret)), &w),
                         COFFER_OK);
        assert_int_equal(w.len, 256);
        assert_int_equal(crypto_pkey_oaep_decrypt(k, sha1 ? CRYPTO_OAEP_SHA256 : CRYPTO_OAEP_SHA1,
                                                  coffer_buf_cursor(&w), &p),
                         COFFER_ERR_INVALID_CIPHERTEXT);
        assert_int_equal(p.len, 0);
        assert_int_equal(crypto_pkey_oaep_decrypt(k, sha1 ? CRYPTO_OAEP_SHA1 : CRYPTO_OAEP_SHA256,
                                                  coffer_buf_cursor(&w), &p),
                         COFFER_OK);
        assert_int_equal(p.len, sizeof(secret));
        assert_memory_equal(p.data, secret, sizeof(secret));
        coffer_buf_reset(&p);
        w.data[100] ^= 0x80;
        assert_int_equal(crypto_pkey_oaep_decrypt(k, sha1 ? CRYPTO_OAEP_SHA1 : CRYPTO_OAEP_SHA256,
                                                  coffer_buf_cursor(&w), &p),
                         COFFER_ERR_INVALID_CIPHERTEXT);
        coffer_buf_free(&w);
        coffer_buf_free(&p);
    }
    crypto_pkey_free(k);
}

/* The key-reusing HMAC agrees with the plain one whatever the sequence of keys: the same key
 * again, another key, one of the same length differing in one byte, keys too long to keep. */
static void test_hmac_reuse_matches(void **state)
{
    uint8_t k1[32], k2[32], long_key[CRYPTO_HMAC_REUSE_KEY_MAX + 1];
    memset(k1, 0x11, sizeof(k1));
    memcpy(k2, k1, sizeof(k2));
    k2[31] ^= 1;
    memset(long_key, 0x22, sizeof(long_key));
    const struct {
        const uint8_t *key;
        size_t len;
    } seq[] = {{k1, sizeof(k1)}, {k1, sizeof(k1)}, {k2, sizeof(k2)},
               {k1, sizeof(k1)}, {k1, 16},         {long_key, sizeof(long_key)},
               {k1, sizeof(k1)}, {long_key, 64},   {long_key, 64},
               {k2, sizeof(k2)}};
    const char *msgs[] = {"", "AWS4-HMAC-SHA256\n20150830T123600Z\n", "x"};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        coffer_cursor key = coffer_cursor_from(seq[i].key, seq[i].len);
        coffer_cursor msg = coffer_cursor_from_str(msgs[i % 3]);
        uint8_t want[CRYPTO_SHA256_LEN], got[CRYPTO_SHA256_LEN];
        assert_int_equal(crypto_hmac(CRYPTO_SHA256, key, msg, want), COFFER_OK);
        assert_int_equal(crypto_hmac_sha256_reuse(key, msg, got), COFFER_OK);
        assert_memory_equal(got, want, sizeof(want));
    }
}

static void test_hkdf_rfc5869_case1(void **state)
{
    uint8_t ikm[22], salt[13], info[10], okm[42], want[42];
    memset(ikm, 0x0b, sizeof(ikm));
    unhex("000102030405060708090a0b0c", salt, sizeof(salt));
    unhex("f0f1f2f3f4f5f6f7f8f9", info, sizeof(info));
    unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865", want, 42);
    assert_int_equal(crypto_hkdf(CRYPTO_SHA256, coffer_cursor_from(ikm, sizeof(ikm)),
                                 coffer_cursor_from(salt, sizeof(salt)),
                                 coffer_cursor_from(info, sizeof(info)), okm, sizeof(okm)),
                     COFFER_OK);
    assert_memory_equal(okm, want, sizeof(okm));
}

static void test_gcm_nist_case3(void **state)
{
    /* NIST GCM test case 14-style: AES-256, zero key, zero IV, 16 zero bytes. */
    uint8_t key[32] = {0}, iv[12] = {0}, pt[16] = {0}, want[32];
    unhex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919", want, 32);
    coffer_buf out = COFFER_BUF_INIT;
    assert_int_equal(crypto_aes_gcm_seal(coffer_cursor_from(key, 32), iv, coffer_cursor_from(NULL, 0),
                                         coffer_cursor_from(pt, 16), &out),
                     COFFER_OK);
    assert_int_equal(out.len, 32);
    assert_memory_equal(out.data, want, 32);
    coffer_buf_free(&out);
}

static void test_gcm_roundtrip_and_tamper(void **state)
{
    uint8_t key[32], iv[12];
    assert_int_equal(crypto_random(key, sizeof(key)), COFFER_OK);
    assert_int_equal(crypto_random(iv, sizeof(iv)), COFFER_OK);
    coffer_cursor k = coffer_cursor_from(key, 32), aad = coffer_cursor_from_str("context");
    coffer_buf ct = COFFER_BUF_INIT, pt = COFFER_SECRET_BUF_INIT;
    assert_int_equal(crypto_aes_gcm_seal(k, iv, aad, coffer_cursor_from_str("attack at dawn"), &ct),
                     COFFER_OK);
    assert_int_equal(crypto_aes_gcm_open(k, iv, aad, coffer_buf_cursor(&ct), &pt), COFFER_OK);
    assert_int_equal(pt.len, 14);
    assert_memory_equal(pt.data, "attack at dawn", 14);
    coffer_buf_reset(&pt);
    /* wrong AAD, flipped bit, truncated tag: all the same error, nothing appended */
    assert_int_equal(
        crypto_aes_gcm_open(k, iv, coffer_cursor_from_str("contexT"), coffer_buf_cursor(&ct), &pt),
        COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(pt.len, 0);
    ct.data[3] ^= 1;
    assert_int_equal(crypto_aes_gcm_open(k, iv, aad, coffer_buf_cursor(&ct), &pt),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(pt.len, 0);
    ct.data[3] ^= 1;
    assert_int_equal(crypto_aes_gcm_open(k, iv, aad, coffer_cursor_from(ct.data, 10), &pt),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    coffer_buf_free(&ct);
    coffer_buf_free(&pt);
}

/* A box opens only for its recipient and its aad; any change of a byte refuses it. */
static void test_box_roundtrip_and_tamper(void **state)
{
    (void)state;
    crypto_pkey *me = NULL, *other = NULL;
    coffer_buf priv = COFFER_SECRET_BUF_INIT, other_priv = COFFER_SECRET_BUF_INIT, spki = COFFER_BUF_INIT;
    coffer_buf box = COFFER_BUF_INIT, out = COFFER_SECRET_BUF_INIT;
    const char *msg = "thirty-two bytes of key material";
    assert_int_equal(crypto_pkey_generate(CRYPTO_PKEY_EC_P256, &me), COFFER_OK);
    assert_int_equal(crypto_pkey_generate(CRYPTO_PKEY_EC_P256, &other), COFFER_OK);
    assert_int_equal(crypto_pkey_private_der(me, &priv), COFFER_OK);
    assert_int_equal(crypto_pkey_private_der(other, &other_priv), COFFER_OK);
    assert_int_equal(crypto_pkey_public_der(me, &spki), COFFER_OK);
    coffer_cursor aad = coffer_cursor_from_str("acct key region");
    assert_int_equal(crypto_ecies_seal(coffer_buf_cursor(&spki), aad, coffer_cursor_from_str(msg), &box),
                     COFFER_OK);
    assert_int_equal(crypto_ecies_open(coffer_buf_cursor(&priv), aad, coffer_buf_cursor(&box), &out),
                     COFFER_OK);
    assert_int_equal(out.len, strlen(msg));
    assert_memory_equal(out.data, msg, out.len);
    /* no plaintext in the box */
    assert_null(memmem(box.data, box.len, msg, 8));

    coffer_buf_reset(&out);
    assert_int_equal(crypto_ecies_open(coffer_buf_cursor(&other_priv), aad, coffer_buf_cursor(&box), &out),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(crypto_ecies_open(coffer_buf_cursor(&priv), coffer_cursor_from_str("acct key other"),
                                       coffer_buf_cursor(&box), &out),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    for (size_t i = 0; i < box.len; i += 7) {
        box.data[i] ^= 0x01;
        assert_int_equal(crypto_ecies_open(coffer_buf_cursor(&priv), aad, coffer_buf_cursor(&box), &out),
                         COFFER_ERR_INVALID_CIPHERTEXT);
        box.data[i] ^= 0x01;
    }
    assert_int_equal(
        crypto_ecies_open(coffer_buf_cursor(&priv), aad, coffer_cursor_from(box.data, box.len - 1), &out),
        COFFER_ERR_INVALID_CIPHERTEXT);
    assert_int_equal(out.len, 0);
    /* only P-256 recipients */
    crypto_pkey *p384 = NULL;
    coffer_buf p384_spki = COFFER_BUF_INIT;
    assert_int_equal(crypto_pkey_generate(CRYPTO_PKEY_EC_P384, &p384), COFFER_OK);
    assert_int_equal(crypto_pkey_public_der(p384, &p384_spki), COFFER_OK);
    assert_int_equal(crypto_ecies_seal(coffer_buf_cursor(&p384_spki), aad, coffer_cursor_from_str(msg), &box),
                     COFFER_ERR_VALIDATION);
    crypto_pkey_free(p384);
    crypto_pkey_free(me);
    crypto_pkey_free(other);
    coffer_buf_free(&p384_spki);
    coffer_buf_free(&priv);
    coffer_buf_free(&other_priv);
    coffer_buf_free(&spki);
    coffer_buf_free(&box);
    coffer_buf_free(&out);
}

static void test_uuid(void **state)
{
    char a[37], b[37];
    assert_int_equal(crypto_uuid_v4(a), COFFER_OK);
    assert_int_equal(crypto_uuid_v4(b), COFFER_OK);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_string_not_equal(a, b);
}

/* Random values come from a per-thread pool: successive values differ, a refill is seamless,
 * and a forked child never hands out the bytes its parent hands out next. */
static void test_random_pool(void **state)
{
    uint8_t a[16], b[16], zero[16] = {0};
    assert_int_equal(crypto_random(a, sizeof(a)), COFFER_OK);
    for (int i = 0; i < 200; i++) { /* several refills of the pool */
        assert_int_equal(crypto_random(b, sizeof(b)), COFFER_OK);
        assert_memory_not_equal(a, b, sizeof(a));
        assert_memory_not_equal(b, zero, sizeof(b));
        memcpy(a, b, sizeof(a));
    }
    uint8_t big[300];
    assert_int_equal(crypto_random(big, sizeof(big)), COFFER_OK); /* past the pool: the DRBG */

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t c[16];
        _exit(crypto_random(c, sizeof(c)) == COFFER_OK && write(fds[1], c, sizeof(c)) == sizeof(c) ? 0 : 1);
    }
    uint8_t parent[16], child[16];
    assert_int_equal(crypto_random(parent, sizeof(parent)), COFFER_OK);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(read(fds[0], child, sizeof(child)), sizeof(child));
    close(fds[0]);
    close(fds[1]);
    assert_memory_not_equal(parent, child, sizeof(parent));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_empty),
        cmocka_unit_test(test_hmac_rfc4231_case2),
        cmocka_unit_test(test_hmac_sha224_rfc4231_case2),
        cmocka_unit_test(test_aes_kwp_rfc5649),
        cmocka_unit_test(test_oaep_wrap),
        cmocka_unit_test(test_hmac_reuse_matches),
        cmocka_unit_test(test_hkdf_rfc5869_case1),
        cmocka_unit_test(test_gcm_nist_case3),
        cmocka_unit_test(test_gcm_roundtrip_and_tamper),
        cmocka_unit_test(test_box_roundtrip_and_tamper),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_random_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
