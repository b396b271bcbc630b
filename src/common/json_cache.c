#include "common/json_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/map.h"

/*
 * What a tree takes beyond its strings, as glibc's malloc and jansson 2.14 lay it out on a
 * 64-bit machine (measured with mallinfo2 over parsed records; within a few percent for
 * records of short and of long strings): a value's struct and chunk header, an object member's
 * hashtable pair (with its key) and bucket share, an array slot.
 */
#define NODE_BYTES 48   /* a string, number or container struct in its chunk */
#define STRING_BYTES 24 /* a string's own chunk: header and rounding, beyond its length */
#define MEMBER_BYTES 96 /* an object member: pair, list links, bucket share, beyond the key */
#define SLOT_BYTES 16   /* an array element's slot, with the table's growth slack */

struct cache_entry {
    json_t *rec;                       /* owned, never changed once cached */
    int64_t read_ms;                   /* when it was read from the store */
    size_t bytes;                      /* what it is charged against max_bytes */
    struct cache_entry *older, *newer; /* in the order of their puts: the oldest leaves first */
    char key[];                        /* the map's key, to drop the entry from the list's end */
};

struct json_cache {
    pthread_mutex_t mu;
    coffer_map map; /* store key -> struct cache_entry */
    uint64_t gen;   /* bumped by every invalidation */
    struct cache_entry *oldest, *newest;
    size_t bytes; /* sum of the entries' bytes */
    size_t max_entries;
    size_t max_bytes;
    int64_t ttl_ms;
};

static void entry_free(void *p)
{
    struct cache_entry *e = p;
    json_decref(e->rec);
    free(e);
}

size_t json_cache_tree_bytes(const json_t *v)
{
    size_t n = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        const json_t *m;
        n = NODE_BYTES;
        json_object_foreach((json_t *)v, k, m)
        {
            n += MEMBER_BYTES + strlen(k) + json_cache_tree_bytes(m);
        }
        break;
    }
    case JSON_ARRAY:
        n = NODE_BYTES;
        for (size_t i = 0; i < json_array_size(v); i++) {
            n += SLOT_BYTES + json_cache_tree_bytes(json_array_get(v, i));
        }
        break;
    case JSON_STRING:
        n = NODE_BYTES + STRING_BYTES + json_string_length(v);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        n = NODE_BYTES;
        break;
    default:
        break; /* true, false, null: shared, nothing of their own */
    }
    return n;
}

coffer_err json_cache_new(size_t max_entries, size_t max_bytes, int64_t ttl_ms, json_cache **out)
{
    *out = NULL;
    if (max_entries == 0 || max_bytes == 0 || ttl_ms <= 0) {
        return coffer_fail(COFFER_ERR_USAGE, "json_cache_new: bounds and a lifetime are needed");
    }
    json_cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    coffer_map_init(&c->map, entry_free);
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->ttl_ms = ttl_ms;
    *out = c;
    return COFFER_OK;
}

void json_cache_free(json_cache *c)
{
    if (c == NULL) {
        return;
    }
    coffer_map_clean(&c->map);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

uint64_t json_cache_generation(json_cache *c)
{
    if (c == NULL) {
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    uint64_t gen = c->gen;
    pthread_mutex_unlock(&c->mu);
    return gen;
}

/* With c->mu held: takes `e` out of the list and the map, and frees it. */
static void entry_drop(json_cache *c, struct cache_entry *e)
{
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        c->oldest = e->newer;
    }
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        c->newest = e->older;
    }
    c->bytes -= e->bytes;
    coffer_map_delete(&c->map, e->key); /* frees e (and with it the key) */
}

/* With c->mu held: forgets every entry. */
static void drop_all(json_cache *c)
{
    coffer_map_clean(&c->map);
    c->oldest = c->newest = NULL;
    c->bytes = 0;
}

json_t *json_cache_get(json_cache *c, const char *key, int64_t now_ms)
{
    if (c == NULL) {
        return NULL;
    }
    json_t *copy = NULL;
    pthread_mutex_lock(&c->mu);
    struct cache_entry *e = coffer_map_get(&c->map, key);
    if (e != NULL && now_ms - e->read_ms >= c->ttl_ms) {
        entry_drop(c, e);
    } else if (e != NULL) {
        /* A copy, not a reference: readers may change what they get (writers load this way
         * too), and the cached record must stay as it was read. */
        copy = json_deep_copy(e->rec);
    }
    pthread_mutex_unlock(&c->mu);
    return copy;
}

void json_cache_put(json_cache *c, const char *key, const json_t *rec, uint64_t gen, int64_t now_ms)
{
    if (c == NULL || rec == NULL) {
        return;
    }
    size_t klen = strlen(key);
    /* The key twice (the map's copy and the entry's) and the map's own entry, roughly. */
    size_t bytes = json_cache_tree_bytes(rec) + sizeof(struct cache_entry) + 2 * klen + NODE_BYTES;
    if (bytes > c->max_bytes / JSON_CACHE_MAX_SHARE) {
        return; /* one such record would push out many smaller ones; its readers parse it */
    }
    /* Copied before taking the lock: the caller's record is its own and may change later. */
    struct cache_entry *e = malloc(sizeof(*e) + klen + 1);
    json_t *copy = json_deep_copy(rec);
    if (e == NULL || copy == NULL) {
        free(e);
        json_decref(copy);
        return;
    }
    e->rec = copy;
    e->read_ms = now_ms;
    e->bytes = bytes;
    e->older = e->newer = NULL;
    memcpy(e->key, key, klen + 1);
    pthread_mutex_lock(&c->mu);
    if (gen != c->gen) {
        pthread_mutex_unlock(&c->mu);
        entry_free(e);
        return;
    }
    struct cache_entry *old = coffer_map_get(&c->map, key);
    if (old != NULL) {
        entry_drop(c, old); /* replaced: it no longer counts */
    }
    /* Over a bound: the oldest go first, they are the nearest to their TTL anyway. */
    while (c->oldest != NULL &&
           (coffer_map_count(&c->map) >= c->max_entries || c->bytes + bytes > c->max_bytes)) {
        entry_drop(c, c->oldest);
    }
    if (coffer_map_put(&c->map, key, e) != COFFER_OK) {
        coffer_clear_err();
        entry_free(e);
    } else {
        e->older = c->newest;
        if (c->newest != NULL) {
            c->newest->newer = e;
        } else {
            c->oldest = e;
        }
        c->newest = e;
        c->bytes += bytes;
    }
    pthread_mutex_unlock(&c->mu);
}

void json_cache_invalidate(json_cache *c, const char *key)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->gen++;
    if (key == NULL) {
        drop_all(c);
    } else {
        struct cache_entry *e = coffer_map_get(&c->map, key);
        if (e != NULL) {
            entry_drop(c, e);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void json_cache_usage(json_cache *c, size_t *entries, size_t *bytes)
{
    *entries = *bytes = 0;
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    *entries = coffer_map_count(&c->map);
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}
