/*
 * Token buckets for request quotas, consulted by the pipeline after authentication and before
 * the service runs. Buckets are keyed by (account, bucket name) and live in hash maps split
 * into stripes, each with its own mutex, so workers charging different accounts rarely contend.
 * Account names come from requests, so both the stripe and the slot are chosen by a keyed hash.
 *
 * A bucket holds capacity = rps tokens (one second of burst, at least one token) and refills
 * continuously: tokens += elapsed_ns * rps / 1e9, capped at capacity. A bucket that would be full
 * now is indistinguishable from a fresh one, so such buckets may be dropped at any time; this
 * is how the table stays bounded when many accounts come and go.
 */
#include "quota/quota.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/map.h"

#define QUOTA_STRIPES 16    /* power of two */
#define QUOTA_SWEEP_AT 4096 /* entries per stripe before idle buckets are dropped */
#define QUOTA_NAME_MAX 256  /* longer account or bucket names are refused */
#define CRYPTO_BUCKET "crypto"

struct bucket {
    double rps;       /* refill rate, tokens per second */
    double capacity;  /* max tokens: max(rps, 1) */
    double tokens;    /* tokens available at `last_ns` */
    uint64_t last_ns; /* time of the last refill */
};

struct stripe {
    pthread_mutex_t lock;
    coffer_map buckets; /* account '\0' bucket name -> struct bucket * (owned) */
    size_t sweep_at;    /* sweep when the count reaches this (amortises sweeps) */
};

struct quota {
    double crypto_rps;                       /* <= 0: quotas off */
    uint8_t stripe_key[COFFER_HASH_KEY_LEN]; /* picks the stripe of a key */
    struct stripe stripes[QUOTA_STRIPES];
};

quota *quota_new(double crypto_rps)
{
    quota *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    if (RAND_bytes(q->stripe_key, sizeof(q->stripe_key)) != 1) {
        free(q);
        return NULL;
    }
    q->crypto_rps = crypto_rps;
    for (size_t i = 0; i < QUOTA_STRIPES; i++) {
        pthread_mutex_init(&q->stripes[i].lock, NULL);
        coffer_map_init(&q->stripes[i].buckets, free);
        q->stripes[i].sweep_at = QUOTA_SWEEP_AT;
    }
    return q;
}

void quota_free(quota *q)
{
    if (q == NULL) {
        return;
    }
    for (size_t i = 0; i < QUOTA_STRIPES; i++) {
        struct stripe *s = &q->stripes[i];
        coffer_map_clean(&s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(q);
}

/* Tokens the bucket holds at `now_ns`; time going backwards refills nothing. */
static void refill(struct bucket *b, uint64_t now_ns)
{
    if (now_ns <= b->last_ns) {
        return;
    }
    double add = (double)(now_ns - b->last_ns) * b->rps / 1e9;
    b->tokens = b->tokens + add >= b->capacity ? b->capacity : b->tokens + add;
    b->last_ns = now_ns;
}

/* Drops buckets that would be full at `now_ns`: forgetting them changes no decision. */
static void stripe_sweep(struct stripe *s, uint64_t now_ns)
{
    coffer_map_iter it;
    const char *key;
    size_t n;
    void *v;
    coffer_map_iter_init(&it, &s->buckets);
    while (coffer_map_iter_next(&it, &key, &n, &v)) {
        struct bucket *b = v;
        refill(b, now_ns);
        if (b->tokens >= b->capacity) {
            coffer_map_delete_n(&s->buckets, key, n);
        }
    }
}

/* A new, full bucket; NULL on allocation failure. */
static struct bucket *stripe_insert(struct stripe *s, const char *key, size_t n, double rps, uint64_t now_ns)
{
    if (coffer_map_count(&s->buckets) >= s->sweep_at) {
        stripe_sweep(s, now_ns);
        /* If most buckets are busy, wait until the stripe doubles before sweeping again. */
        size_t count = coffer_map_count(&s->buckets);
        s->sweep_at = count * 2 > QUOTA_SWEEP_AT ? count * 2 : QUOTA_SWEEP_AT;
    }
    struct bucket *b = malloc(sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->rps = rps;
    b->capacity = rps < 1.0 ? 1.0 : rps;
    b->tokens = b->capacity;
    b->last_ns = now_ns;
    if (coffer_map_put_n(&s->buckets, key, n, b) != COFFER_OK) {
        free(b);
        return NULL;
    }
    return b;
}

bool quota_take(quota *q, const char *account, const char *bucket, double rps, uint64_t now_ns)
{
    if (q == NULL || q->crypto_rps <= 0) {
        return true;
    }
    if (account == NULL || bucket == NULL) {
        return false;
    }
    if (strcmp(bucket, CRYPTO_BUCKET) == 0) {
        rps = q->crypto_rps;
    }
    if (!(rps > 0)) {
        return true; /* this operation has no quota */
    }
    size_t an = strnlen(account, QUOTA_NAME_MAX + 1);
    size_t bn = strnlen(bucket, QUOTA_NAME_MAX + 1);
    if (an > QUOTA_NAME_MAX || bn > QUOTA_NAME_MAX) {
        return false;
    }
    char key[2 * QUOTA_NAME_MAX + 1];
    memcpy(key, account, an);
    key[an] = '\0';
    memcpy(key + an + 1, bucket, bn);
    size_t n = an + 1 + bn;
    uint64_t h = coffer_siphash24(q->stripe_key, key, n);

    struct stripe *s = &q->stripes[h & (QUOTA_STRIPES - 1)];
    bool granted = false;
    pthread_mutex_lock(&s->lock);
    struct bucket *b = coffer_map_get_n(&s->buckets, key, n);
    if (b == NULL) {
        /* Out of memory: refuse (the client retries) rather than run unmetered. */
        b = stripe_insert(s, key, n, rps, now_ns);
    }
    if (b != NULL) {
        refill(b, now_ns);
        if (b->rps != rps) {
            /* The configured rate changed: adopt it, keeping at most the new burst. */
            b->rps = rps;
            b->capacity = rps < 1.0 ? 1.0 : rps;
            b->tokens = b->tokens > b->capacity ? b->capacity : b->tokens;
        }
        if (b->tokens >= 1.0) {
            b->tokens -= 1.0;
            granted = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return granted;
}
