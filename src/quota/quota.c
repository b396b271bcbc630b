/*
 * Token buckets for request quotas, consulted by the pipeline after authentication and before
 * the service runs. Buckets are keyed by (account, bucket name) and live in a hash table split
 * into stripes, each with its own mutex, so workers charging different accounts rarely contend.
 *
 * A bucket holds capacity = rps tokens (one second of burst, at least one token) and refills
 * continuously: tokens += elapsed_ns * rps / 1e9, capped at capacity. A bucket that would be full
 * now is indistinguishable from a fresh one, so such buckets may be dropped at any time; this
 * is how the table stays bounded when many accounts come and go.
 */
#include "quota/quota.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define QUOTA_STRIPES 16       /* power of two */
#define QUOTA_INITIAL_SLOTS 64 /* per stripe, power of two */
#define QUOTA_SWEEP_AT 4096    /* entries per stripe before idle buckets are dropped */
#define QUOTA_NAME_MAX 256     /* longer account or bucket names are refused */
#define CRYPTO_BUCKET "crypto"

struct bucket {
    struct bucket *next; /* chain in the slot */
    uint64_t hash;       /* of the key, to skip compares and to rehash */
    double rps;          /* refill rate, tokens per second */
    double capacity;     /* max tokens: max(rps, 1) */
    double tokens;       /* tokens available at `last_ns` */
    uint64_t last_ns;    /* time of the last refill */
    size_t key_len;      /* account '\0' bucket */
    char key[];
};

struct stripe {
    pthread_mutex_t lock;
    struct bucket **slots; /* chains; NULL until first use */
    size_t nslots;         /* power of two */
    size_t count;          /* buckets in this stripe */
    size_t sweep_at;       /* sweep when count reaches this (amortises sweeps) */
};

struct quota {
    double crypto_rps; /* <= 0: quotas off */
    struct stripe stripes[QUOTA_STRIPES];
};

quota *quota_new(double crypto_rps)
{
    quota *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    q->crypto_rps = crypto_rps;
    for (size_t i = 0; i < QUOTA_STRIPES; i++) {
        pthread_mutex_init(&q->stripes[i].lock, NULL);
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
        for (size_t j = 0; j < s->nslots; j++) {
            struct bucket *b = s->slots[j];
            while (b != NULL) {
                struct bucket *next = b->next;
                free(b);
                b = next;
            }
        }
        free(s->slots);
        pthread_mutex_destroy(&s->lock);
    }
    free(q);
}

/* FNV-1a over the key bytes: not adversary-proof, but keys are authenticated account ids. */
static uint64_t key_hash(const char *key, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ULL;
    }
    return h;
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

static bool stripe_grow(struct stripe *s)
{
    size_t n = s->nslots ? s->nslots * 2 : QUOTA_INITIAL_SLOTS;
    struct bucket **slots = calloc(n, sizeof(*slots));
    if (slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < s->nslots; i++) {
        struct bucket *b = s->slots[i];
        while (b != NULL) {
            struct bucket *next = b->next;
            size_t j = (size_t)(b->hash >> 8) & (n - 1);
            b->next = slots[j];
            slots[j] = b;
            b = next;
        }
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = n;
    return true;
}

/* Drops buckets that would be full at `now_ns`: forgetting them changes no decision. */
static void stripe_sweep(struct stripe *s, uint64_t now_ns)
{
    for (size_t i = 0; i < s->nslots; i++) {
        struct bucket **pp = &s->slots[i];
        while (*pp != NULL) {
            struct bucket *b = *pp;
            refill(b, now_ns);
            if (b->tokens >= b->capacity) {
                *pp = b->next;
                free(b);
                s->count--;
                continue;
            }
            pp = &b->next;
        }
    }
}

static struct bucket *stripe_find(struct stripe *s, uint64_t h, const char *key, size_t n)
{
    if (s->nslots == 0) {
        return NULL;
    }
    for (struct bucket *b = s->slots[(size_t)(h >> 8) & (s->nslots - 1)]; b != NULL; b = b->next) {
        if (b->hash == h && b->key_len == n && memcmp(b->key, key, n) == 0) {
            return b;
        }
    }
    return NULL;
}

/* A new, full bucket; NULL on allocation failure. */
static struct bucket *stripe_insert(struct stripe *s, uint64_t h, const char *key, size_t n, double rps,
                                    uint64_t now_ns)
{
    if (s->count >= s->sweep_at) {
        stripe_sweep(s, now_ns);
        /* If most buckets are busy, wait until the stripe doubles before sweeping again. */
        s->sweep_at = s->count * 2 > QUOTA_SWEEP_AT ? s->count * 2 : QUOTA_SWEEP_AT;
    }
    if ((s->nslots == 0 || s->count >= s->nslots) && !stripe_grow(s) && s->nslots == 0) {
        return NULL;
    }
    struct bucket *b = malloc(sizeof(*b) + n);
    if (b == NULL) {
        return NULL;
    }
    b->hash = h;
    b->rps = rps;
    b->capacity = rps < 1.0 ? 1.0 : rps;
    b->tokens = b->capacity;
    b->last_ns = now_ns;
    b->key_len = n;
    memcpy(b->key, key, n);
    size_t j = (size_t)(h >> 8) & (s->nslots - 1);
    b->next = s->slots[j];
    s->slots[j] = b;
    s->count++;
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
    uint64_t h = key_hash(key, n);

    struct stripe *s = &q->stripes[h & (QUOTA_STRIPES - 1)];
    bool granted = false;
    pthread_mutex_lock(&s->lock);
    struct bucket *b = stripe_find(s, h, key, n);
    if (b == NULL) {
        /* Out of memory: refuse (the client retries) rather than run unmetered. */
        b = stripe_insert(s, h, key, n, rps, now_ns);
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
