/*
 * Unit tests of libcoffer: round trips over every suite, keyring and frame size (empty input
 * and exact frame multiples included), commitment policies, EDK limits, required context,
 * caching, the stream contract, and adversarial input: every truncation and bit flips of a
 * small message must fail cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/esdk.h"

static const uint16_t all_suites[] = {0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178,
                                      0x0214, 0x0346, 0x0378, 0x0478, 0x0578};
static char *rsa_priv_pem, *rsa_pub_pem;

static int make_rsa(void **state)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    BIO *p = BIO_new(BIO_s_mem());
    char *data;
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    PEM_write_bio_PUBKEY(p, k);
    long n = BIO_get_mem_data(b, &data);
    rsa_priv_pem = strndup(data, (size_t)n);
    n = BIO_get_mem_data(p, &data);
    rsa_pub_pem = strndup(data, (size_t)n);
    BIO_free(b);
    BIO_free(p);
    EVP_PKEY_free(k);
    return 0;
}

static int free_rsa(void **state)
{
    free(rsa_priv_pem);
    free(rsa_pub_pem);
    return 0;
}

/*
 * NULL the compiler cannot see: COFFER_NONNULL turns a literal NULL into a warning, but the
 * library still checks, and these tests prove a NULL that slips through is refused cleanly.
 */
static void *volatile null_arg;

/* The tests that pass it break the nonnull contract on purpose; UBSan's check of that contract
 * at the call would stop them before the library's own check is reached. */
#if defined(__clang__)
#define BREAKS_NONNULL_CONTRACT __attribute__((no_sanitize("nonnull-attribute")))
#else
#define BREAKS_NONNULL_CONTRACT
#endif

static const uint8_t key32[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static coffer_keyring *make_keyring(int which)
{
    switch (which) {
    case 0:
        return coffer_keyring_raw_aes_new("ns", "aes-256", key32, 32);
    case 1:
        return coffer_keyring_raw_rsa_new("ns", "rsa", rsa_pub_pem, rsa_priv_pem,
                                          COFFER_RSA_OAEP_SHA256_MGF1);
    default: {
        coffer_keyring *a = coffer_keyring_raw_aes_new("ns", "aes-128", key32, 16);
        coffer_keyring *r = coffer_keyring_raw_rsa_new("ns", "rsa", NULL, rsa_priv_pem, COFFER_RSA_PKCS1);
        coffer_keyring *m = coffer_keyring_multi_new(a, &r, 1);
        coffer_keyring_release(a);
        coffer_keyring_release(r);
        return m;
    }
    }
}

static coffer_commitment_policy policy_for(uint16_t suite)
{
    return suite >= 0x0478 ? COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT
                           : COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT;
}

static int encrypt_with(coffer_cmm *cmm, uint16_t suite, uint32_t frame, const coffer_ec *ec,
                        const uint8_t *pt, size_t n, uint8_t **ct, size_t *ct_len)
{
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    int rc = coffer_encryptor_set_commitment_policy(e, policy_for(suite));
    rc = rc ? rc : coffer_encryptor_set_suite(e, suite);
    rc = rc ? rc : coffer_encryptor_set_frame_length(e, frame);
    rc = rc ? rc : (ec ? coffer_encryptor_set_ec(e, ec) : 0);
    rc = rc ? rc : coffer_encryptor_run(e, pt, n, ct, ct_len);
    coffer_encryptor_free(e);
    return rc;
}

static int decrypt_with(coffer_cmm *cmm, coffer_commitment_policy p, const coffer_ec *ec, const uint8_t *ct,
                        size_t n, uint8_t **pt, size_t *pt_len)
{
    coffer_decryptor *d = coffer_decryptor_new(cmm);
    int rc = coffer_decryptor_set_commitment_policy(d, p);
    rc = rc ? rc : (ec ? coffer_decryptor_set_ec(d, ec) : 0);
    rc = rc ? rc : coffer_decryptor_run(d, ct, n, pt, pt_len);
    coffer_decryptor_free(d);
    return rc;
}

static void test_round_trip_matrix(void **state)
{
    static const uint32_t frames[] = {1, 7, 512};
    static const size_t sizes[] = {0, 1, 7, 14, 512, 1024, 1500};
    uint8_t pt[1500];
    for (size_t i = 0; i < sizeof(pt); i++) {
        pt[i] = (uint8_t)(i * 31 + 7);
    }
    coffer_ec *ec = coffer_ec_new();
    assert_int_equal(coffer_ec_set_str(ec, "purpose", "test"), 0);
    for (int kr = 0; kr < 3; kr++) {
        coffer_keyring *k = make_keyring(kr);
        assert_non_null(k);
        coffer_cmm *cmm = coffer_cmm_default_new(k);
        for (size_t s = 0; s < sizeof(all_suites) / sizeof(all_suites[0]); s++) {
            for (size_t f = 0; f < 3; f++) {
                for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
                    if (frames[f] == 1 && sizes[z] > 64) {
                        continue; /* one frame per byte: keep the test fast */
                    }
                    uint8_t *ct = NULL, *out = NULL;
                    size_t ctl = 0, outl = 0;
                    assert_int_equal(encrypt_with(cmm, all_suites[s], frames[f], ec, pt, sizes[z], &ct, &ctl),
                                     0);
                    coffer_header *h = NULL;
                    size_t used = 0;
                    assert_int_equal(coffer_header_parse(ct, ctl, &h, &used), 0);
                    assert_int_equal(coffer_header_suite(h), all_suites[s]);
                    assert_int_equal(coffer_header_frame_length(h), frames[f]);
                    assert_int_equal(coffer_header_edk_count(h), kr == 2 ? 2 : 1);
                    coffer_header_free(h);
                    assert_int_equal(decrypt_with(cmm, COFFER_COMMIT_REQUIRE_ENCRYPT_ALLOW_DECRYPT, ec, ct,
                                                  ctl, &out, &outl),
                                     0);
                    assert_int_equal(outl, sizes[z]);
                    assert_memory_equal(out, pt, sizes[z]);
                    coffer_bytes_free(out, outl);
                    coffer_bytes_free(ct, ctl);
                }
            }
        }
        coffer_cmm_release(cmm);
        coffer_keyring_release(k);
    }
    coffer_ec_free(ec);
}

BREAKS_NONNULL_CONTRACT static void test_defaults_and_policy(void **state)
{
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    uint8_t *ct, *pt;
    size_t ctl, ptl;
    assert_int_equal(coffer_encrypt(cmm, NULL, (const uint8_t *)"hi", 2, &ct, &ctl), 0);
    coffer_header *h;
    assert_int_equal(coffer_header_parse(ct, ctl, &h, NULL), 0);
    assert_int_equal(coffer_header_suite(h), 0x0578);
    assert_int_equal(coffer_header_version(h), 2);
    size_t idl;
    coffer_header_message_id(h, &idl);
    assert_int_equal(idl, 32);
    assert_non_null(coffer_ec_get(coffer_header_ec(h), (const uint8_t *)"aws-crypto-public-key", 21, NULL));
    coffer_header_free(h);
    assert_int_equal(coffer_decrypt(cmm, NULL, ct, ctl, &pt, &ptl), 0);
    assert_int_equal(ptl, 2);
    coffer_bytes_free(pt, ptl);
    coffer_bytes_free(ct, ctl);

    /* a non-committing message is refused under require/require */
    assert_int_equal(encrypt_with(cmm, 0x0178, 4096, NULL, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    assert_int_not_equal(coffer_decrypt(cmm, NULL, ct, ctl, &pt, &ptl), 0);
    assert_int_equal(decrypt_with(cmm, COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT, NULL, ct, ctl, &pt, &ptl),
                     0);
    coffer_bytes_free(pt, ptl);
    coffer_bytes_free(ct, ctl);

    /* encrypt-side policy violations */
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    assert_int_equal(coffer_encryptor_set_suite(e, 0x0178), 0);
    assert_int_not_equal(coffer_encryptor_run(e, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    assert_int_not_equal(coffer_encryptor_update(e, (const uint8_t *)"x", 1), 0); /* stays failed */
    coffer_encryptor_free(e);
    e = coffer_encryptor_new(cmm);
    assert_int_equal(coffer_encryptor_set_commitment_policy(e, COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT),
                     0);
    assert_int_equal(coffer_encryptor_set_suite(e, 0x0478), 0);
    assert_int_not_equal(coffer_encryptor_run(e, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    coffer_encryptor_free(e);
    assert_int_not_equal(coffer_encryptor_set_suite(coffer_encryptor_new(null_arg), 0x0478), 0);

    /* reserved context key */
    coffer_ec *ec = coffer_ec_new();
    assert_int_equal(coffer_ec_set_str(ec, "aws-crypto-public-key", "x"), 0);
    assert_int_not_equal(coffer_encrypt(cmm, ec, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    coffer_ec_free(ec);
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

static void test_max_edks_and_wrong_key(void **state)
{
    coffer_keyring *k = make_keyring(2); /* two EDKs */
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    uint8_t *ct, *pt;
    size_t ctl, ptl;
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    assert_int_equal(coffer_encryptor_set_max_edks(e, 1), 0);
    assert_int_not_equal(coffer_encryptor_run(e, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    coffer_encryptor_free(e);
    assert_int_equal(coffer_encrypt(cmm, NULL, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    coffer_decryptor *d = coffer_decryptor_new(cmm);
    assert_int_equal(coffer_decryptor_set_max_edks(d, 1), 0);
    assert_int_not_equal(coffer_decryptor_run(d, ct, ctl, &pt, &ptl), 0);
    coffer_decryptor_free(d);
    /* a keyring with another key cannot decrypt; neither can a mismatched context */
    uint8_t other[32] = {0};
    coffer_keyring *k2 = coffer_keyring_raw_aes_new("ns", "aes-128", other, 16);
    coffer_cmm *cmm2 = coffer_cmm_default_new(k2);
    assert_int_not_equal(coffer_decrypt(cmm2, NULL, ct, ctl, &pt, &ptl), 0);
    coffer_ec *ec = coffer_ec_new();
    assert_int_equal(coffer_ec_set_str(ec, "a", "b"), 0);
    /* a reproduced pair the header lacks is treated as authenticate-only: the header tag fails */
    assert_int_not_equal(coffer_decrypt(cmm, ec, ct, ctl, &pt, &ptl), 0);
    coffer_ec_free(ec);
    coffer_bytes_free(ct, ctl);
    coffer_cmm_release(cmm2);
    coffer_keyring_release(k2);
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

static void test_required_ec(void **state)
{
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *def = coffer_cmm_default_new(k);
    const char *keys[] = {"tenant"};
    coffer_cmm *cmm = coffer_cmm_required_ec_new(def, keys, 1);
    coffer_ec *ec = coffer_ec_new();
    assert_int_equal(coffer_ec_set_str(ec, "tenant", "acme"), 0);
    assert_int_equal(coffer_ec_set_str(ec, "stored", "yes"), 0);
    uint8_t *ct, *pt;
    size_t ctl, ptl;
    coffer_ec *missing = coffer_ec_new();
    assert_int_not_equal(coffer_encrypt(cmm, missing, (const uint8_t *)"x", 1, &ct, &ctl), 0);
    assert_int_equal(coffer_encrypt(cmm, ec, (const uint8_t *)"secret", 6, &ct, &ctl), 0);
    coffer_header *h;
    assert_int_equal(coffer_header_parse(ct, ctl, &h, NULL), 0);
    assert_null(coffer_ec_get(coffer_header_ec(h), (const uint8_t *)"tenant", 6, NULL));
    assert_non_null(coffer_ec_get(coffer_header_ec(h), (const uint8_t *)"stored", 6, NULL));
    coffer_header_free(h);
    assert_int_not_equal(coffer_decrypt(cmm, NULL, ct, ctl, &pt, &ptl), 0);
    assert_int_not_equal(coffer_decrypt(def, NULL, ct, ctl, &pt, &ptl), 0);
    coffer_ec *wrong = coffer_ec_new();
    assert_int_equal(coffer_ec_set_str(wrong, "tenant", "evil"), 0);
    assert_int_not_equal(coffer_decrypt(def, wrong, ct, ctl, &pt, &ptl), 0);
    assert_int_equal(coffer_decrypt(cmm, ec, ct, ctl, &pt, &ptl), 0);
    assert_memory_equal(pt, "secret", 6);
    coffer_bytes_free(pt, ptl);
    coffer_bytes_free(ct, ctl);
    coffer_ec_free(wrong);
    coffer_ec_free(missing);
    coffer_ec_free(ec);
    coffer_cmm_release(cmm);
    coffer_cmm_release(def);
    coffer_keyring_release(k);
}

struct counter {
    coffer_keyring base;
    coffer_keyring *inner;
    int encrypts, decrypts;
};
static int cnt_enc(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct counter *c = (struct counter *)kr;
    c->encrypts++;
    return coffer_keyring_on_encrypt(c->inner, m);
}
static int cnt_dec(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *e, size_t n)
{
    struct counter *c = (struct counter *)kr;
    c->decrypts++;
    return coffer_keyring_on_decrypt(c->inner, m, e, n);
}
static void cnt_destroy(coffer_keyring *kr)
{
    coffer_keyring_release(((struct counter *)kr)->inner);
}
static const struct coffer_keyring_vt cnt_vt = {sizeof(struct coffer_keyring_vt), "counter", cnt_enc, cnt_dec,
                                                cnt_destroy};

static void test_caching_cmm(void **state)
{
    struct counter c = {0};
    coffer_keyring_base_init(&c.base, &cnt_vt);
    c.inner = make_keyring(0);
    coffer_cmm *def = coffer_cmm_default_new(&c.base);
    coffer_cmm *cache = coffer_cmm_caching_new(def, 4, 60, 100, 3);
    uint8_t *ct[5], *pt;
    size_t ctl[5], ptl;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(coffer_encrypt(cache, NULL, (const uint8_t *)"0123456789", 10, &ct[i], &ctl[i]), 0);
    }
    assert_int_equal(c.encrypts, 2); /* max 3 messages per data key */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(coffer_decrypt(cache, NULL, ct[i], ctl[i], &pt, &ptl), 0);
        assert_memory_equal(pt, "0123456789", 10);
        coffer_bytes_free(pt, ptl);
    }
    assert_int_equal(c.decrypts, 2); /* the same EDKs decrypt once */
    for (int i = 0; i < 5; i++) {
        coffer_bytes_free(ct[i], ctl[i]);
    }
    /* byte limit: the second key has 20 bytes used; one 60-byte message fits, the next does not */
    uint8_t big[60] = {0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(coffer_encrypt(cache, NULL, big, sizeof(big), &ct[0], &ctl[0]), 0);
        coffer_bytes_free(ct[0], ctl[0]);
    }
    assert_int_equal(c.encrypts, 3);
    coffer_cmm_release(cache);
    coffer_cmm_release(def);
    assert_int_equal(c.base.refcount, 1);
    cnt_destroy(&c.base);
}

static int collect(void *ctx, const uint8_t *p, size_t n)
{
    size_t *total = ctx;
    *total += n;
    return 0;
}

/* A cached data key is reused only for the same suite and the same context, and every message
 * under it still gets its own message id (so its own derived key and commitment). */
static void test_caching_cmm_identity(void **state)
{
    (void)state;
    struct counter c = {0};
    coffer_keyring_base_init(&c.base, &cnt_vt);
    c.inner = make_keyring(0);
    coffer_cmm *def = coffer_cmm_default_new(&c.base);
    coffer_cmm *cache = coffer_cmm_caching_new(def, 8, 60, UINT64_MAX, 100);
    coffer_ec *a = coffer_ec_new(), *b = coffer_ec_new();
    assert_int_equal(coffer_ec_set_str(a, "ab", "c"), 0);
    assert_int_equal(coffer_ec_set_str(b, "a", "bc"), 0); /* same bytes if fields were not delimited */
    const coffer_ec *ecs[] = {a, b, a, NULL, b, NULL};
    const uint16_t suites[] = {0x0478, 0x0478, 0x0478, 0x0478, 0x0578, 0x0478};
    uint8_t ids[6][32];
    for (int i = 0; i < 6; i++) {
        coffer_encryptor *e = coffer_encryptor_new(cache);
        uint8_t *ct;
        size_t ctl, idl;
        assert_int_equal(coffer_encryptor_set_suite(e, suites[i]), 0);
        if (ecs[i]) {
            assert_int_equal(coffer_encryptor_set_ec(e, ecs[i]), 0);
        }
        assert_int_equal(coffer_encryptor_run(e, (const uint8_t *)"x", 1, &ct, &ctl), 0);
        const uint8_t *id = coffer_header_message_id(coffer_encryptor_header(e), &idl);
        assert_int_equal(idl, 32);
        memcpy(ids[i], id, 32);
        uint8_t *pt;
        size_t ptl;
        assert_int_equal(coffer_decrypt(def, ecs[i], ct, ctl, &pt, &ptl), 0);
        assert_int_equal(ptl, 1);
        coffer_bytes_free(pt, ptl);
        coffer_bytes_free(ct, ctl);
        coffer_encryptor_free(e);
    }
    /* a, b, empty context, and b under another suite: four data keys; the repeats hit */
    assert_int_equal(c.encrypts, 4);
    for (int i = 0; i < 6; i++) {
        for (int j = i + 1; j < 6; j++) {
            assert_memory_not_equal(ids[i], ids[j], 32);
        }
    }
    coffer_ec_free(a);
    coffer_ec_free(b);
    coffer_cmm_release(cache);
    coffer_cmm_release(def);
    cnt_destroy(&c.base);
}

static void test_stream_contract(void **state)
{
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    uint8_t pt[3000];
    memset(pt, 0x5a, sizeof(pt));
    uint8_t *ct;
    size_t ctl;
    assert_int_equal(encrypt_with(cmm, 0x0578, 100, NULL, pt, sizeof(pt), &ct, &ctl), 0);
    /* signed suite: nothing released before the signature verifies */
    size_t got = 0;
    coffer_decryptor *d = coffer_decryptor_new(cmm);
    assert_int_equal(coffer_decryptor_set_output(d, collect, &got), 0);
    assert_int_equal(coffer_decryptor_update(d, ct, ctl - 10), 0);
    assert_int_equal(got, 0);
    assert_non_null(coffer_decryptor_header(d));
    assert_int_not_equal(coffer_decryptor_finish(d), 0);                    /* truncated */
    assert_int_not_equal(coffer_decryptor_update(d, ct + ctl - 10, 10), 0); /* stays failed */
    assert_int_equal(got, 0);
    coffer_decryptor_free(d);
    /* streaming release: frames come out before the footer */
    got = 0;
    d = coffer_decryptor_new(cmm);
    assert_int_equal(coffer_decryptor_set_output(d, collect, &got), 0);
    assert_int_equal(coffer_decryptor_set_streaming_release(d, true), 0);
    assert_int_equal(coffer_decryptor_update(d, ct, ctl - 10), 0);
    assert_true(got > 0);
    for (size_t i = ctl - 10; i < ctl; i++) {
        assert_int_equal(coffer_decryptor_update(d, ct + i, 1), 0);
    }
    assert_int_equal(coffer_decryptor_finish(d), 0);
    assert_int_equal(got, sizeof(pt));
    assert_int_not_equal(coffer_decryptor_set_streaming_release(d, false), 0); /* too late */
    coffer_decryptor_free(d);
    /* trailing garbage fails */
    uint8_t *longer = malloc(ctl + 1);
    memcpy(longer, ct, ctl);
    longer[ctl] = 0;
    uint8_t *out;
    size_t outl;
    assert_int_not_equal(coffer_decrypt(cmm, NULL, longer, ctl + 1, &out, &outl), 0);
    free(longer);
    coffer_bytes_free(ct, ctl);
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

struct sink_buf {
    uint8_t data[1100];
    size_t len;
};

static int collect_copy(void *ctx, const uint8_t *p, size_t n)
{
    struct sink_buf *b = ctx;
    if (n > sizeof(b->data) - b->len) {
        return -1;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* A message fed in pieces that split frames anywhere (inside the sequence number, the final
 * frame's marker and length, the content, the tag) decrypts to the same plaintext: the
 * decryptor completes a split frame from the next piece and parses the rest in place. */
static void test_split_feeds(void **state)
{
    (void)state;
    static const uint16_t suites[] = {0x0478, 0x0578};
    static const size_t pieces[] = {1, 3, 5, 23, 99, 100, 131, 132, 133, 250, 517, 5000};
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    uint8_t pt[1037];
    for (size_t i = 0; i < sizeof(pt); i++) {
        pt[i] = (uint8_t)(i * 7 + 1);
    }
    for (size_t si = 0; si < sizeof(suites) / sizeof(suites[0]); si++) {
        uint8_t *ct;
        size_t ctl;
        assert_int_equal(encrypt_with(cmm, suites[si], 100, NULL, pt, sizeof(pt), &ct, &ctl), 0);
        for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
            struct sink_buf got = {.len = 0};
            coffer_decryptor *d = coffer_decryptor_new(cmm);
            assert_int_equal(coffer_decryptor_set_output(d, collect_copy, &got), 0);
            for (size_t off = 0; off < ctl; off += pieces[pi]) {
                size_t n = ctl - off < pieces[pi] ? ctl - off : pieces[pi];
                assert_int_equal(coffer_decryptor_update(d, ct + off, n), 0);
            }
            assert_int_equal(coffer_decryptor_finish(d), 0);
            assert_int_equal(got.len, sizeof(pt));
            assert_memory_equal(got.data, pt, sizeof(pt));
            coffer_decryptor_free(d);
        }
        coffer_bytes_free(ct, ctl);
    }
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

/* With the plaintext length given, whole frames fed one call each are sealed in place; the
 * message is the same as without the length, and a wrong length still makes a valid message
 * (a shorter, possibly empty, final frame). */
static void test_length_hint_frames(void **state)
{
    (void)state;
    static const uint64_t hints[] = {UINT64_MAX /* unknown */, 300, 200, 400, 100, 0};
    size_t lens[sizeof(hints) / sizeof(hints[0])];
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    uint8_t pt[300];
    for (size_t i = 0; i < sizeof(pt); i++) {
        pt[i] = (uint8_t)(i * 13 + 5);
    }
    for (size_t hi = 0; hi < sizeof(hints) / sizeof(hints[0]); hi++) {
        struct sink_buf ct = {.len = 0};
        coffer_encryptor *e = coffer_encryptor_new(cmm);
        assert_int_equal(coffer_encryptor_set_output(e, collect_copy, &ct), 0);
        assert_int_equal(coffer_encryptor_set_suite(e, 0x0478), 0);
        assert_int_equal(coffer_encryptor_set_frame_length(e, 100), 0);
        assert_int_equal(coffer_encryptor_set_plaintext_length(e, hints[hi]), 0);
        for (size_t off = 0; off < sizeof(pt); off += 100) {
            assert_int_equal(coffer_encryptor_update(e, pt + off, 100), 0);
        }
        assert_int_equal(coffer_encryptor_finish(e), 0);
        coffer_encryptor_free(e);
        uint8_t *out;
        size_t outl;
        assert_int_equal(decrypt_with(cmm, COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT, NULL, ct.data,
                                      ct.len, &out, &outl),
                         0);
        assert_int_equal(outl, sizeof(pt));
        assert_memory_equal(out, pt, sizeof(pt));
        coffer_bytes_free(out, outl);
        lens[hi] = ct.len;
    }
    /* the exact length frames as an unknown one (the last frame final and full); one too long
     * ends in an empty final frame: a 40-byte final frame instead of 140, plus a regular 132 */
    assert_int_equal(lens[1], lens[0]);
    assert_int_equal(lens[3], lens[0] + 32);
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

static void tamper_all(uint16_t suite)
{
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    uint8_t *ct, *out;
    size_t ctl, outl;
    assert_int_equal(
        encrypt_with(cmm, suite, 16, NULL, (const uint8_t *)"attack at dawn, not at dusk", 27, &ct, &ctl), 0);
    for (size_t n = 0; n < ctl; n++) {
        assert_int_not_equal(
            decrypt_with(cmm, COFFER_COMMIT_REQUIRE_ENCRYPT_ALLOW_DECRYPT, NULL, ct, n, &out, &outl), 0);
    }
    for (size_t i = 0; i < ctl; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            ct[i] ^= (uint8_t)(1u << bit);
            int rc =
                decrypt_with(cmm, COFFER_COMMIT_REQUIRE_ENCRYPT_ALLOW_DECRYPT, NULL, ct, ctl, &out, &outl);
            ct[i] ^= (uint8_t)(1u << bit);
            if (rc == 0) {
                coffer_bytes_free(out, outl);
                fail_msg("bit flip at byte %zu bit %d of suite 0x%04x decrypted", i, bit, suite);
            }
        }
    }
    coffer_bytes_free(ct, ctl);
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

static void test_tamper_and_truncate(void **state)
{
    tamper_all(0x0578);
    tamper_all(0x0478);
    tamper_all(0x0178);
    tamper_all(0x0214);
}

BREAKS_NONNULL_CONTRACT static void test_bad_arguments(void **state)
{
    assert_null(coffer_keyring_raw_aes_new("ns", "k", key32, 17));
    assert_null(coffer_keyring_raw_aes_new(null_arg, "k", key32, 16));
    assert_null(coffer_keyring_raw_rsa_new("ns", "k", "not a pem", NULL, COFFER_RSA_PKCS1));
    assert_null(coffer_keyring_multi_new(NULL, NULL, 0));
    assert_null(coffer_cmm_default_new(null_arg));
    assert_string_equal(coffer_status_name(coffer_last_status()), "COFFER_STATUS_USAGE");
    assert_string_equal(coffer_status_message(coffer_last_status()), "default CMM needs a keyring");
    assert_null(coffer_cmm_caching_new(null_arg, 1, 1, 1, 1));
    assert_string_equal(coffer_status_message(coffer_last_status()), "invalid caching CMM arguments");
    coffer_header *h;
    assert_int_not_equal(coffer_header_parse((const uint8_t *)"\x01\x80", 2, &h, NULL), 0);
    assert_int_not_equal(coffer_header_parse((const uint8_t *)"\x03", 1, &h, NULL), 0);
    coffer_keyring *k = make_keyring(0);
    coffer_cmm *cmm = coffer_cmm_default_new(k);
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    assert_int_not_equal(coffer_encryptor_set_frame_length(e, 0), 0);
    assert_int_not_equal(coffer_encryptor_set_suite(e, 0x0999), 0);
    assert_int_equal(coffer_encryptor_update(e, (const uint8_t *)"a", 1), 0);
    assert_int_not_equal(coffer_encryptor_set_frame_length(e, 10), 0); /* after start */
    assert_int_equal(coffer_encryptor_finish(e), 0);
    assert_int_not_equal(coffer_encryptor_finish(e), 0);
    coffer_encryptor_free(e);
    coffer_cmm_release(cmm);
    coffer_keyring_release(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_matrix),
        cmocka_unit_test(test_defaults_and_policy),
        cmocka_unit_test(test_max_edks_and_wrong_key),
        cmocka_unit_test(test_required_ec),
        cmocka_unit_test(test_caching_cmm),
        cmocka_unit_test(test_caching_cmm_identity),
        cmocka_unit_test(test_stream_contract),
        cmocka_unit_test(test_tamper_and_truncate),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_split_feeds),
        cmocka_unit_test(test_length_hint_frames),
    };
    return cmocka_run_group_tests(tests, make_rsa, free_rsa);
}
