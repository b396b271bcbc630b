#include "common/json_cache.h"

#include <pthread.h>
#include <stdlib.h>

#include "common/map.h"

struct cache_entry {
    json_t *rec;     /* owned, never changed once cached */
    int64_t read_ms; /* when it was read from the store */
};

struct json_cache {
    pthread_mutex_t mu;
    coffer_map map; /* store key -> struct cache_entry */
    uint64_t gen;   /* bumped by every invalidation */
    size_t max_entries;
    int64_t ttl_ms;
};

static void entry_free(void *p)
{
    struct cache_entry *e = p;
    json_decref(e->rec);
    free(e);
}

coffer_err json_cache_new(size_t max_entries, int64_t ttl_ms, json_cache **out)
{
    *out = NULL;
    if (max_entries == 0 || ttl_ms <= 0) {
        return coffer_fail(COFFER_ERR_USAGE, "json_cache_new: a bound and a lifetime are needed");
    }
    json_cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    coffer_map_init(&c->map, entry_free);
    c->max_entries = max_entries;
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

json_t *json_cache_get(json_cache *c, const char *key, int64_t now_ms)
{
    if (c == NULL) {
        return NULL;
    }
    json_t *copy = NULL;
    pthread_mutex_lock(&c->mu);
    struct cache_entry *e = coffer_map_get(&c->map, key);
    if (e != NULL && now_ms - e->read_ms >= c->ttl_ms) {
        coffer_map_delete(&c->map, key);
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
    /* Copied before taking the lock: the caller's record is its own and may change later. */
    struct cache_entry *e = malloc(sizeof(*e));
    json_t *copy = json_deep_copy(rec);
    if (e == NULL || copy == NULL) {
        free(e);
        json_decref(copy);
        return;
    }
    e->rec = copy;
    e->read_ms = now_ms;
    pthread_mutex_lock(&c->mu);
    if (gen != c->gen) {
        pthread_mutex_unlock(&c->mu);
        entry_free(e);
        return;
    }
    if (coffer_map_count(&c->map) >= c->max_entries && coffer_map_get(&c->map, key) == NULL) {
        /* Full: start over rather than pick victims; a working set larger than the bound
         * then costs a reload per record, as it would without the cache. */
        coffer_map_clean(&c->map);
    }
    if (coffer_map_put(&c->map, key, e) != COFFER_OK) {
        coffer_clear_err();
        entry_free(e);
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
        coffer_map_clean(&c->map);
    } else {
        coffer_map_delete(&c->map, key);
    }
    pthread_mutex_unlock(&c->mu);
}
