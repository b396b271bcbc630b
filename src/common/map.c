/*
 * The string-keyed hash map of map.h: separate chaining over a power-of-two slot array that
 * doubles when the map holds as many entries as slots. Each entry is one allocation holding
 * the key; its hash is kept so growth never rehashes and most mismatches skip the memcmp.
 */
#include "common/map.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define MAP_INITIAL_SLOTS 16 /* power of two */

struct coffer_map_entry {
    struct coffer_map_entry *next; /* chain in the slot */
    uint64_t hash;                 /* of the key under the table's hash key */
    void *value;                   /* never NULL */
    size_t key_len;
    char key[]; /* key_len bytes, then a NUL */
};

/* ------------------------------------------------------------------------------------------ */
/* SipHash-2-4                                                                                */
/* ------------------------------------------------------------------------------------------ */

/*
 * Written out here (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012) rather than
 * called through OpenSSL's EVP_MAC: every request hashes a few short keys (the key cache, the
 * credential cache), and re-keying an EVP_MAC context with its parameter list cost about ten
 * times the hash itself. The unit test checks it against the reference vector and OpenSSL's.
 */
static uint64_t sip_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t sip_load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                            \
    do {                                                                                                     \
        v0 += v1;                                                                                            \
        v1 = sip_rotl(v1, 13);                                                                               \
        v1 ^= v0;                                                                                            \
        v0 = sip_rotl(v0, 32);                                                                               \
        v2 += v3;                                                                                            \
        v3 = sip_rotl(v3, 16);                                                                               \
        v3 ^= v2;                                                                                            \
        v0 += v3;                                                                                            \
        v3 = sip_rotl(v3, 21);                                                                               \
        v3 ^= v0;                                                                                            \
        v2 += v1;                                                                                            \
        v1 = sip_rotl(v1, 17);                                                                               \
        v1 ^= v2;                                                                                            \
        v2 = sip_rotl(v2, 32);                                                                               \
    } while (0)

uint64_t coffer_siphash24(const uint8_t key[COFFER_HASH_KEY_LEN], const void *data, size_t n)
{
    const uint8_t *p = n > 0 ? data : (const uint8_t *)"";
    uint64_t k0 = sip_load_le(key, 8), k1 = sip_load_le(key + 8, 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = n - n % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = sip_load_le(p + i, 8);
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    /* The last word: the remaining bytes, and the length's low byte in the top byte. */
    uint64_t b = sip_load_le(p + whole, n % 8) | ((uint64_t)(n & 0xff) << 56);
    v3 ^= b;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++) {
        SIP_ROUND(v0, v1, v2, v3);
    }
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------------------------------ */
/* Map                                                                                        */
/* ------------------------------------------------------------------------------------------ */

void coffer_map_init(coffer_map *m, coffer_map_free_fn free_value)
{
    memset(m, 0, sizeof(*m));
    m->free_value = free_value;
}

void coffer_map_clean(coffer_map *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct coffer_map_entry *e = m->slots[i];
        while (e != NULL) {
            struct coffer_map_entry *next = e->next;
            if (m->free_value != NULL) {
                m->free_value(e->value);
            }
            free(e);
            e = next;
        }
    }
    free(m->slots);
    coffer_map_init(m, m->free_value);
}

size_t coffer_map_count(const coffer_map *m)
{
    return m->count;
}

static uint64_t map_hash(const coffer_map *m, const void *key, size_t key_len)
{
    return coffer_siphash24(m->hash_key, key, key_len);
}

/* The link pointing at the entry for the key (NULL when absent): lets callers unlink it. */
static struct coffer_map_entry **map_find(const coffer_map *m, const void *key, size_t key_len, uint64_t h)
{
    if (key_len == 0) {
        key = ""; /* memcmp may not be given NULL, even for 0 bytes */
    }
    struct coffer_map_entry **pp = &m->slots[h & (m->nslots - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        const struct coffer_map_entry *e = *pp;
        if (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
            return pp;
        }
    }
    return NULL;
}

void *coffer_map_get_n(const coffer_map *m, const void *key, size_t key_len)
{
    if (m->count == 0) {
        return NULL;
    }
    struct coffer_map_entry **pp = map_find(m, key, key_len, map_hash(m, key, key_len));
    return pp != NULL ? (*pp)->value : NULL;
}

void *coffer_map_get(const coffer_map *m, const char *key)
{
    return coffer_map_get_n(m, key, strlen(key));
}

/* The first table, under a fresh random hash key. */
static coffer_err map_alloc(coffer_map *m)
{
    struct coffer_map_entry **slots = calloc(MAP_INITIAL_SLOTS, sizeof(*slots));
    if (slots == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    if (RAND_bytes(m->hash_key, sizeof(m->hash_key)) != 1) {
        free(slots);
        return coffer_fail(COFFER_ERR_INTERNAL, "no random bytes for a hash key");
    }
    m->slots = slots;
    m->nslots = MAP_INITIAL_SLOTS;
    return COFFER_OK;
}

/* Doubles the slots. Best effort: when memory is short the chains just get longer. */
static void map_grow(coffer_map *m)
{
    size_t n = m->nslots * 2;
    struct coffer_map_entry **slots = n > m->nslots ? calloc(n, sizeof(*slots)) : NULL;
    if (slots == NULL) {
        return;
    }
    for (size_t i = 0; i < m->nslots; i++) {
        struct coffer_map_entry *e = m->slots[i];
        while (e != NULL) {
            struct coffer_map_entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
}

coffer_err coffer_map_put_n(coffer_map *m, const void *key, size_t key_len, void *value)
{
    ENSURE(value != NULL && (key != NULL || key_len == 0), COFFER_ERR_USAGE);
    if (m->slots == NULL) {
        TRY(map_alloc(m));
    }
    uint64_t h = map_hash(m, key, key_len);
    struct coffer_map_entry **pp = map_find(m, key, key_len, h);
    if (pp != NULL) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        if (old != value && m->free_value != NULL) {
            m->free_value(old);
        }
        return COFFER_OK;
    }
    size_t size;
    if (__builtin_add_overflow(sizeof(struct coffer_map_entry) + 1, key_len, &size)) {
        return coffer_fail(COFFER_ERR_NOMEM, "map key too long");
    }
    struct coffer_map_entry *e = malloc(size);
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    e->hash = h;
    e->value = value;
    e->key_len = key_len;
    if (key_len > 0) {
        memcpy(e->key, key, key_len);
    }
    e->key[key_len] = '\0';
    if (m->count >= m->nslots) {
        map_grow(m);
    }
    size_t i = h & (m->nslots - 1);
    e->next = m->slots[i];
    m->slots[i] = e;
    m->count++;
    return COFFER_OK;
}

coffer_err coffer_map_put(coffer_map *m, const char *key, void *value)
{
    return coffer_map_put_n(m, key, strlen(key), value);
}

void *coffer_map_take_n(coffer_map *m, const void *key, size_t key_len)
{
    if (m->count == 0) {
        return NULL;
    }
    struct coffer_map_entry **pp = map_find(m, key, key_len, map_hash(m, key, key_len));
    if (pp == NULL) {
        return NULL;
    }
    struct coffer_map_entry *e = *pp;
    void *value = e->value;
    *pp = e->next;
    free(e);
    assert(m->count > 0);
    m->count--;
    return value;
}

void *coffer_map_take(coffer_map *m, const char *key)
{
    return coffer_map_take_n(m, key, strlen(key));
}

bool coffer_map_delete_n(coffer_map *m, const void *key, size_t key_len)
{
    void *value = coffer_map_take_n(m, key, key_len);
    if (value == NULL) {
        return false;
    }
    if (m->free_value != NULL) {
        m->free_value(value);
    }
    return true;
}

bool coffer_map_delete(coffer_map *m, const char *key)
{
    return coffer_map_delete_n(m, key, strlen(key));
}

/* ------------------------------------------------------------------------------------------ */
/* Iteration                                                                                  */
/* ------------------------------------------------------------------------------------------ */

void coffer_map_iter_init(coffer_map_iter *it, const coffer_map *m)
{
    it->m = m;
    it->slot = 0;
    it->next = NULL;
}

bool coffer_map_iter_next(coffer_map_iter *it, const char **key, size_t *key_len, void **value)
{
    /* `next` is read before the entry is returned, so the caller may free that entry. */
    while (it->next == NULL) {
        if (it->slot >= it->m->nslots) {
            return false;
        }
        it->next = it->m->slots[it->slot++];
    }
    const struct coffer_map_entry *e = it->next;
    it->next = e->next;
    if (key != NULL) {
        *key = e->key;
    }
    if (key_len != NULL) {
        *key_len = e->key_len;
    }
    if (value != NULL) {
        *value = e->value;
    }
    return true;
}
