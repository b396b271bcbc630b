/*
 * Encryption SDK benchmark (bench/esdk.sh runs it; not part of CI).
 *
 *   esdk_bench stream SUITE FRAME MIB
 *       Encrypts MIB MiB of generated plaintext (one 1 MiB buffer fed again and again, nothing
 *       stored) through the streaming API with a raw AES-256 keyring, then runs the same input
 *       through encrypt -> decrypt in a pipeline and times the decryptor alone. Prints one line:
 *       "stream suite=0x0478 frame=65536 mib=1024 enc_MBps=... dec_MBps=... maxrss_kB=..."
 *       (MB = 10^6 bytes, as openssl speed reports).
 *
 *   esdk_bench stream SUITE FRAME MIB enc   encrypt only (for profiling)
 *
 *   esdk_bench cache ENDPOINT KEY_ARN MESSAGES MAX_MESSAGES [SUITE]
 *       Encrypts MESSAGES small messages with SUITE (default 0x0478) through a KMS keyring wrapped in a
 *       counting keyring; with MAX_MESSAGES > 0 through a caching CMM (max_messages_encrypted =
 *       MAX_MESSAGES), else through the default CMM. Credentials and CA come from the usual AWS
 *       environment. Prints "cache messages=... keyring_calls=... us_per_msg=...".
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "coffer/esdk.h"

#ifndef BENCH_CHUNK
#define BENCH_CHUNK (1u << 20) /* the fixed input buffer */
#endif
#define BENCH_SMALL_MSG 256 /* bytes per message in the cache run */
#define BENCH_CACHE_CAPACITY 16
#define BENCH_FAIL (-1) /* setup failure: no library status to describe */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int die(const char *what, int rc)
{
    if (rc == BENCH_FAIL) {
        fprintf(stderr, "%s: failed\n", what);
    } else {
        fprintf(stderr, "%s: %s: %s\n", what, coffer_status_name(rc), coffer_status_message(rc));
    }
    return 2;
}

/* ---- streaming throughput ---- */

static int sink_discard(void *ctx, const uint8_t *p, size_t n)
{
    (void)p;
    *(uint64_t *)ctx += n;
    return 0;
}

struct pipe_ctx {
    coffer_decryptor *d;
    double dec_s;   /* time spent inside the decryptor */
    uint64_t plain; /* plaintext bytes released */
    int rc;
};

static int sink_to_decryptor(void *ctx, const uint8_t *p, size_t n)
{
    struct pipe_ctx *pc = ctx;
    double t0 = now_s();
    pc->rc = coffer_decryptor_update(pc->d, p, n);
    pc->dec_s += now_s() - t0;
    return pc->rc;
}

static coffer_encryptor *make_encryptor(coffer_cmm *cmm, uint16_t suite, uint32_t frame, uint64_t total)
{
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    if (!e || coffer_encryptor_set_suite(e, suite) || coffer_encryptor_set_frame_length(e, frame) ||
        coffer_encryptor_set_plaintext_length(e, total) ||
        ((suite & 0x0f00) != 0x0500 && (suite & 0x0f00) != 0x0400 &&
         coffer_encryptor_set_commitment_policy(e, COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT))) {
        coffer_encryptor_free(e);
        return NULL;
    }
    return e;
}

static int feed(coffer_encryptor *e, const uint8_t *buf, uint64_t total)
{
    for (uint64_t done = 0; done < total; done += BENCH_CHUNK) {
        size_t n = total - done < BENCH_CHUNK ? (size_t)(total - done) : BENCH_CHUNK;
        int rc = coffer_encryptor_update(e, buf, n);
        if (rc) {
            return rc;
        }
    }
    return coffer_encryptor_finish(e);
}

static int bench_stream(uint16_t suite, uint32_t frame, uint64_t mib, bool enc_only)
{
    uint64_t total = mib << 20, ct_bytes = 0;
    uint8_t key[32];
    uint8_t *buf = malloc(BENCH_CHUNK);
    int rc;
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (uint8_t)(i * 7 + 1);
    }
    for (size_t i = 0; buf && i < BENCH_CHUNK; i++) {
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    coffer_keyring *kr = coffer_keyring_raw_aes_new("bench", "aes-256", key, sizeof(key));
    coffer_cmm *cmm = kr ? coffer_cmm_default_new(kr) : NULL;
    if (!buf || !cmm) {
        return die("setup", BENCH_FAIL);
    }

    /* 1. encrypt alone, output discarded */
    coffer_encryptor *e = make_encryptor(cmm, suite, frame, total);
    if (!e || coffer_encryptor_set_output(e, sink_discard, &ct_bytes)) {
        return die("encryptor", BENCH_FAIL);
    }
    double t0 = now_s();
    if ((rc = feed(e, buf, total))) {
        return die("encrypt", rc);
    }
    double enc_s = now_s() - t0;
    coffer_encryptor_free(e);
    if (enc_only) { /* for profiling the encrypt path alone */
        printf("stream suite=0x%04x frame=%u mib=%llu enc_MBps=%.1f maxrss_kB=%ld\n", suite, frame,
               (unsigned long long)mib, (double)total / enc_s / 1e6, max_rss_kb());
        return 0;
    }

    /* 2. encrypt -> decrypt pipeline, the decryptor timed on its own */
    struct pipe_ctx pc = {coffer_decryptor_new(cmm), 0, 0, 0};
    e = make_encryptor(cmm, suite, frame, total);
    /* Signed suites: release each frame once its tag verifies, else the whole message is held. */
    if (!e || !pc.d || coffer_encryptor_set_output(e, sink_to_decryptor, &pc) ||
        coffer_decryptor_set_output(pc.d, sink_discard, &pc.plain) ||
        coffer_decryptor_set_streaming_release(pc.d, true) ||
        ((suite & 0x0f00) < 0x0400 &&
         coffer_decryptor_set_commitment_policy(pc.d, COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT))) {
        return die("decryptor", BENCH_FAIL);
    }
    if ((rc = feed(e, buf, total))) {
        return die("encrypt->decrypt", pc.rc ? pc.rc : rc);
    }
    double t1 = now_s();
    if ((rc = coffer_decryptor_finish(pc.d))) {
        return die("decrypt finish", rc);
    }
    pc.dec_s += now_s() - t1;
    if (pc.plain != total) {
        fprintf(stderr, "decrypted %llu bytes, expected %llu\n", (unsigned long long)pc.plain,
                (unsigned long long)total);
        return 2;
    }
    printf("stream suite=0x%04x frame=%u mib=%llu ct_bytes=%llu enc_MBps=%.1f dec_MBps=%.1f maxrss_kB=%ld\n",
           suite, frame, (unsigned long long)mib, (unsigned long long)ct_bytes, (double)total / enc_s / 1e6,
           (double)total / pc.dec_s / 1e6, max_rss_kb());
    coffer_encryptor_free(e);
    coffer_decryptor_free(pc.d);
    coffer_cmm_release(cmm);
    coffer_keyring_release(kr);
    free(buf);
    return 0;
}

/* ---- caching CMM against a live KMS keyring ---- */

struct counting {
    coffer_keyring base;
    coffer_keyring *inner;
    atomic_ulong calls; /* on_encrypt + on_decrypt */
};

static int counting_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct counting *c = (struct counting *)kr;
    atomic_fetch_add(&c->calls, 1);
    return coffer_keyring_on_encrypt(c->inner, m);
}

static int counting_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks, size_t n)
{
    struct counting *c = (struct counting *)kr;
    atomic_fetch_add(&c->calls, 1);
    return coffer_keyring_on_decrypt(c->inner, m, edks, n);
}

static void counting_destroy(coffer_keyring *kr)
{
    struct counting *c = (struct counting *)kr;
    coffer_keyring_release(c->inner);
    free(c);
}

static const struct coffer_keyring_vt counting_vt = {
    sizeof(struct coffer_keyring_vt), "counting", counting_on_encrypt, counting_on_decrypt, counting_destroy,
};

static int bench_cache(const char *endpoint, const char *arn, unsigned long n, unsigned long max_messages,
                       uint16_t suite)
{
    const char *ids[] = {arn};
    struct coffer_kms_keyring_options o = {.key_ids = ids, .n_key_ids = 1, .endpoint = endpoint};
    coffer_keyring *kms = coffer_keyring_kms_new(&o);
    if (!kms) {
        return die("kms keyring", BENCH_FAIL);
    }
    struct counting *cnt = calloc(1, sizeof(*cnt));
    coffer_keyring_base_init(&cnt->base, &counting_vt);
    cnt->inner = kms;
    coffer_cmm *dflt = coffer_cmm_default_new(&cnt->base);
    coffer_cmm *cmm = max_messages
                          ? coffer_cmm_caching_new(dflt, BENCH_CACHE_CAPACITY, 3600, UINT64_MAX, max_messages)
                          : coffer_cmm_retain(dflt);
    coffer_ec *ec = coffer_ec_new();
    if (!ec || coffer_ec_set_str(ec, "purpose", "bench") != 0) {
        return die("encryption context", BENCH_FAIL);
    }
    uint8_t msg[BENCH_SMALL_MSG];
    memset(msg, 'm', sizeof(msg));
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        coffer_encryptor *e = coffer_encryptor_new(cmm);
        int rc = !e ? BENCH_FAIL : coffer_encryptor_set_suite(e, suite);
        rc = rc ? rc : coffer_encryptor_set_ec(e, ec);
        rc = rc ? rc : coffer_encryptor_run(e, msg, sizeof(msg), &out, &out_len);
        coffer_bytes_free(out, out_len);
        coffer_encryptor_free(e);
        if (rc) {
            return die("encrypt", rc);
        }
    }
    double dt = now_s() - t0;
    printf("cache suite=0x%04x messages=%lu max_messages=%lu keyring_calls=%lu us_per_msg=%.2f total_s=%.2f "
           "maxrss_kB=%ld\n",
           suite, n, max_messages, (unsigned long)atomic_load(&cnt->calls), dt / (double)n * 1e6, dt,
           max_rss_kb());
    coffer_ec_free(ec);
    coffer_cmm_release(cmm);
    coffer_cmm_release(dflt);
    coffer_keyring_release(&cnt->base);
    return 0;
}

int main(int argc, char **argv)
{
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "stream") == 0) {
        return bench_stream((uint16_t)strtoul(argv[2], NULL, 0), (uint32_t)strtoul(argv[3], NULL, 0),
                            strtoull(argv[4], NULL, 0), argc == 6 && strcmp(argv[5], "enc") == 0);
    }
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "cache") == 0) {
        uint16_t suite =
            argc == 7 ? (uint16_t)strtoul(argv[6], NULL, 0) : COFFER_SUITE_AES256_GCM_HKDF_SHA512_COMMIT;
        return bench_cache(argv[2], argv[3], strtoul(argv[4], NULL, 0), strtoul(argv[5], NULL, 0), suite);
    }
    fprintf(
        stderr,
        "usage: esdk_bench stream SUITE FRAME MIB | cache ENDPOINT KEY_ARN MESSAGES MAX_MESSAGES [SUITE]\n");
    return 1;
}
