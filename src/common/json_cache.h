/*
 * A read cache of parsed JSON records, for services whose hot read is "load one record from the
 * store, open it, parse it" (a secret, a parameter): the parse of a record of a few kilobytes
 * costs more than the rest of the request.
 *
 * Records are keyed by their store key. What the cache holds is immutable: a reader gets its
 * own deep copy, which it may change (writers load through the same path, then save).
 *
 * Consistency. Within one process, every write through the owning service calls
 * json_cache_invalidate after its commit, and a reader fills the cache only with what it read
 * under the generation it took before reading (json_cache_generation), so a record read before
 * a concurrent commit never lands in the cache after that commit's invalidation. Across
 * processes sharing one database (several nodes), the store's change feed (store_watch) calls
 * json_cache_invalidate for what another node changed; as a second bound, whatever the feed
 * does, every entry lives at most `ttl_ms` after it was read.
 *
 * Memory. A record can be large (a parameter's 100 versions, a secret's versions: megabytes),
 * so the cache is bounded in bytes as well as in entries: each entry is charged what its tree
 * takes in memory (json_cache_tree_bytes: every value, member name and string, with the
 * allocator's and jansson's overhead per node, plus the key), a record over 1/JSON_CACHE_MAX_SHARE
 * of the budget is not cached at all (it would push out many others for one reader), and when
 * a put would go over either bound the oldest entries leave first.
 *
 * Holds only what the records hold (values sealed under KMS data keys, never a plaintext); an
 * entry leaving the cache is freed, not wiped. Thread-safe.
 */
#ifndef COFFER_COMMON_JSON_CACHE_H
#define COFFER_COMMON_JSON_CACHE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define JSON_CACHE_MAX_SHARE 8 /* a record over max_bytes / 8 is not cached */

typedef struct json_cache json_cache;

/*
 * At most `max_entries` records (> 0) taking at most `max_bytes` (> 0) together, each kept at
 * most `ttl_ms` (> 0) after it was read.
 */
coffer_err json_cache_new(size_t max_entries, size_t max_bytes, int64_t ttl_ms, json_cache **out)
    __attribute__((warn_unused_result));
void json_cache_free(json_cache *c); /* accepts NULL */

/* Taken before reading the store for a record that may then be put. NULL c: 0. */
uint64_t json_cache_generation(json_cache *c);

/* A deep copy (new reference) of the record under `key` read less than ttl_ms before `now_ms`,
 * or NULL (absent, expired, out of memory, NULL c). */
json_t *json_cache_get(json_cache *c, const char *key, int64_t now_ms);

/*
 * Keeps a deep copy of `rec` (read at `now_ms`) under `key`, unless the cache was invalidated
 * since `gen` (then what was read may already be older than a committed write) or the record is
 * too large to cache (JSON_CACHE_MAX_SHARE). Makes room by dropping the oldest entries. Best
 * effort: out of memory just leaves the record uncached. NULL c: nothing.
 */
void json_cache_put(json_cache *c, const char *key, const json_t *rec, uint64_t gen, int64_t now_ms);

/* After a write of `key` commits (or its record is deleted). NULL key: every record. */
void json_cache_invalidate(json_cache *c, const char *key);

/* What the cache holds now: entries and the bytes charged for them (for tests and stats). */
void json_cache_usage(json_cache *c, size_t *entries, size_t *bytes);

/* What the tree `v` takes in memory, as the cache charges it: an estimate from its shape. */
size_t json_cache_tree_bytes(const json_t *v);

#endif
