/*
 * A string-keyed hash map for the in-memory caches and indexes of every subsystem (KMS keys
 * and aliases, the credential cache, the compiled-policy cache, quota buckets). Keys are byte
 * strings, copied into the map; values are opaque pointers the map owns only in that it calls
 * the caller's `free_value` on them when they leave the map (replaced, deleted, cleaned).
 *
 * Keys often come from requests (access key ids, ARNs, account ids), so chains are picked with
 * SipHash-2-4 under a random key drawn per table: a client cannot choose keys that collide.
 *
 * The map does no locking: callers keep it behind their own lock, as they did their tables.
 * It has no size bound, TTL or eviction of its own; a cache that needs one applies its policy
 * around the map (count, iterate and delete, or clean).
 */
#ifndef COFFER_COMMON_MAP_H
#define COFFER_COMMON_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define COFFER_HASH_KEY_LEN 16 /* SipHash key bytes */

/* Releases a value leaving the map. */
typedef void (*coffer_map_free_fn)(void *value);

struct coffer_map_entry;

/* Embed it and call coffer_map_init; the fields are the map's own. A zeroed map is a valid
 * empty map whose values are never freed. */
typedef struct coffer_map {
    struct coffer_map_entry **slots;       /* chains; NULL until the first insert */
    size_t nslots;                         /* 0 or a power of two */
    size_t count;                          /* entries */
    coffer_map_free_fn free_value;         /* NULL: values are not the map's to free */
    uint8_t hash_key[COFFER_HASH_KEY_LEN]; /* drawn with each new table */
} coffer_map;

/* Walks every entry once, in no particular order. */
typedef struct coffer_map_iter {
    const coffer_map *m;
    size_t slot;                   /* next chain to look at */
    struct coffer_map_entry *next; /* next entry to return; NULL: move on to `slot` */
} coffer_map_iter;

/* An empty map; `free_value` (may be NULL) releases values that leave it. Allocates nothing. */
void coffer_map_init(coffer_map *m, coffer_map_free_fn free_value);
/* Removes every entry, freeing values with free_value, and releases the table. The map stays
 * initialised (same free_value) and may be used again. Accepts a zeroed map. */
void coffer_map_clean(coffer_map *m);

size_t coffer_map_count(const coffer_map *m);

/* The value stored under the key, or NULL. Borrowed: valid until the entry changes. */
void *coffer_map_get(const coffer_map *m, const char *key);
void *coffer_map_get_n(const coffer_map *m, const void *key, size_t key_len);

/*
 * Stores `value` (not NULL) under a copy of the key. A value already there is replaced and
 * freed with free_value (unless it is `value` itself). On success the map owns `value`; on
 * failure (COFFER_ERR_NOMEM, COFFER_ERR_INTERNAL when no random hash key could be drawn,
 * COFFER_ERR_USAGE for a NULL value) the caller still does and the map is unchanged.
 */
coffer_err coffer_map_put(coffer_map *m, const char *key, void *value) __attribute__((warn_unused_result));
coffer_err coffer_map_put_n(coffer_map *m, const void *key, size_t key_len, void *value)
    __attribute__((warn_unused_result));

/* Removes the entry and hands its value to the caller (not freed); NULL when absent. */
void *coffer_map_take(coffer_map *m, const char *key);
void *coffer_map_take_n(coffer_map *m, const void *key, size_t key_len);

/* Removes the entry and frees its value with free_value; false when absent. */
bool coffer_map_delete(coffer_map *m, const char *key);
bool coffer_map_delete_n(coffer_map *m, const void *key, size_t key_len);

/*
 * Iteration: coffer_map_iter_next returns each entry once, with its key and value borrowed.
 * Keys are stored with a NUL after key_len bytes, so string keys read as C strings. While
 * iterating, the only change allowed is deleting or taking the entry just returned (a sweep);
 * any other insert or delete invalidates `it`.
 */
void coffer_map_iter_init(coffer_map_iter *it, const coffer_map *m);
bool coffer_map_iter_next(coffer_map_iter *it, const char **key, size_t *key_len, void **value);

/* SipHash-2-4 of `data` under `key`, for callers that spread work by hash (quota stripes). */
uint64_t coffer_siphash24(const uint8_t key[COFFER_HASH_KEY_LEN], const void *data, size_t n);

#endif
