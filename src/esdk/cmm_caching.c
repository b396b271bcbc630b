/*
 * Caching materials manager (caching-cmm.md): keeps materials from an underlying CMM in a
 * small local LRU cache so most messages need no keyring (and no KMS) call. Encryption entries
 * are keyed by suite + policy + context and retire after max age, max bytes or max messages;
 * decryption entries by suite + policy + EDKs + contexts. An entry's identity is the exact,
 * length-prefixed serialization of those fields (no digest: nothing can collide, and a hit
 * costs one memcmp instead of a SHA-512). Requests with an unknown plaintext length bypass the
 * cache for encryption because the byte limit could not be enforced. A mutex makes it
 * thread-safe. Cached materials keep the signing key of signed suites, so a hit also skips
 * the EC key generation; every message still gets its own message id, derived key and
 * signature.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esdk/esdk_internal.h"

struct cache_entry {
    coffer_buf id; /* the request's identity bytes (cache_id_*) */
    bool is_enc;
    coffer_enc_materials *enc;
    coffer_dec_materials *dec;
    uint64_t created;   /* seconds, monotonic */
    uint64_t last_used; /* LRU order */
    uint64_t bytes;
    uint64_t messages;
};

struct cmm_cache {
    coffer_cmm base;
    coffer_cmm *under;
    pthread_mutex_t lock;
    struct cache_entry *v;
    size_t n, cap;
    uint64_t max_age, max_bytes, max_messages;
    uint64_t tick;
};

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

static void entry_clean(struct cache_entry *e)
{
    coffer_buf_free(&e->id);
    coffer_enc_materials_free(e->enc);
    coffer_dec_materials_free(e->dec);
    memset(e, 0, sizeof(*e));
}

static void cache_remove(struct cmm_cache *c, size_t i)
{
    entry_clean(&c->v[i]);
    c->v[i] = c->v[--c->n];
}

static struct cache_entry *cache_find(struct cmm_cache *c, const coffer_buf *id, bool is_enc)
{
    uint64_t t = now_s();
    for (size_t i = 0; i < c->n; i++) {
        const coffer_buf *eid = &c->v[i].id;
        if (c->v[i].is_enc == is_enc && eid->len == id->len && memcmp(eid->data, id->data, id->len) == 0) {
            if (t - c->v[i].created >= c->max_age) {
                cache_remove(c, i);
                return NULL;
            }
            return &c->v[i];
        }
    }
    return NULL;
}

static struct cache_entry *cache_slot(struct cmm_cache *c)
{
    if (c->n == c->cap) {
        size_t lru = 0;
        for (size_t i = 1; i < c->n; i++) {
            if (c->v[i].last_used < c->v[lru].last_used) {
                lru = i;
            }
        }
        cache_remove(c, lru);
    }
    struct cache_entry *e = &c->v[c->n++];
    memset(e, 0, sizeof(*e));
    e->created = now_s();
    return e;
}

/* Length-prefixed, so no two different field sequences serialize alike. */
static coffer_err id_cur(coffer_buf *id, coffer_cursor c)
{
    TRY(coffer_buf_append_u64be(id, (uint64_t)c.len));
    return coffer_buf_append_cur(id, c);
}

static coffer_err id_ec(coffer_buf *id, const coffer_ec *ec)
{
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    TRY_OUT(esdk_ec_serialize(ec, &b));
    rc = id_cur(id, coffer_buf_cursor(&b));
out:
    coffer_buf_free(&b);
    return rc;
}

static coffer_err id_start(coffer_buf *id, char kind, uint16_t suite, coffer_commitment_policy policy)
{
    uint8_t hdr[4] = {(uint8_t)kind, (uint8_t)(suite >> 8), (uint8_t)suite, (uint8_t)policy};
    return coffer_buf_append(id, hdr, sizeof(hdr));
}

static coffer_err cache_get_enc(coffer_cmm *cmm, const coffer_enc_request *req, coffer_enc_materials **out)
{
    struct cmm_cache *c = (struct cmm_cache *)cmm;
    coffer_buf id = COFFER_BUF_INIT;
    coffer_enc_materials *m = NULL;
    coffer_err rc = COFFER_OK;

    if (req->plaintext_length == UINT64_MAX || req->plaintext_length > c->max_bytes) {
        return esdk_cmm_get_enc_materials(c->under, req, out);
    }
    TRY_OUT(id_start(&id, 'E', req->suite, req->policy));
    TRY_OUT(id_ec(&id, req->ec));

    pthread_mutex_lock(&c->lock);
    struct cache_entry *e = cache_find(c, &id, true);
    if (e && (e->messages + 1 > c->max_messages || e->bytes + req->plaintext_length > c->max_bytes)) {
        cache_remove(c, (size_t)(e - c->v));
        e = NULL;
    }
    if (e) {
        e->messages++;
        e->bytes += req->plaintext_length;
        e->last_used = ++c->tick;
        rc = esdk_enc_materials_clone(e->enc, out);
        pthread_mutex_unlock(&c->lock);
        goto out;
    }
    pthread_mutex_unlock(&c->lock);

    TRY_OUT(esdk_cmm_get_enc_materials(c->under, req, &m));
    coffer_enc_materials *copy = NULL;
    TRY_OUT(esdk_enc_materials_clone(m, &copy));
    pthread_mutex_lock(&c->lock);
    e = cache_slot(c);
    e->id = id; /* the entry owns the identity now */
    id = (coffer_buf)COFFER_BUF_INIT;
    e->is_enc = true;
    e->enc = copy;
    e->messages = 1;
    e->bytes = req->plaintext_length;
    e->last_used = ++c->tick;
    pthread_mutex_unlock(&c->lock);
    *out = m;
    m = NULL;
out:
    coffer_buf_free(&id);
    coffer_enc_materials_free(m);
    return rc;
}

static coffer_err dec_clone(const coffer_dec_materials *m, coffer_dec_materials **out)
{
    coffer_err rc = COFFER_OK;
    coffer_dec_materials *c = esdk_dec_materials_new(m->suite, m->ec);
    ENSURE(c != NULL, COFFER_ERR_NOMEM);
    for (size_t i = 0; i < m->required_keys->n; i++) {
        TRY_OUT(esdk_ec_put(c->required_keys, coffer_buf_cursor(&m->required_keys->v[i].key),
                            coffer_cursor_from(NULL, 0)));
    }
    TRY_OUT(coffer_buf_append(&c->data_key, m->data_key.data, m->data_key.len));
    if (m->verify_key) {
        if (EVP_PKEY_up_ref(m->verify_key) != 1) {
            FAIL_OUT(COFFER_ERR_CRYPTO, "key reference failed");
        }
        c->verify_key = m->verify_key;
    }
    *out = c;
    c = NULL;
out:
    coffer_dec_materials_free(c);
    return rc;
}

static coffer_err cache_get_dec(coffer_cmm *cmm, const coffer_dec_request *req, coffer_dec_materials **out)
{
    struct cmm_cache *c = (struct cmm_cache *)cmm;
    coffer_buf id = COFFER_BUF_INIT;
    coffer_dec_materials *m = NULL;
    coffer_err rc = COFFER_OK;

    TRY_OUT(id_start(&id, 'D', req->suite, req->policy));
    TRY_OUT(coffer_buf_append_u64be(&id, (uint64_t)req->edk_count));
    for (size_t i = 0; i < req->edk_count; i++) {
        TRY_OUT(id_cur(&id, coffer_cursor_from(req->edks[i].provider_id, req->edks[i].provider_id_len)));
        TRY_OUT(id_cur(&id, coffer_cursor_from(req->edks[i].provider_info, req->edks[i].provider_info_len)));
        TRY_OUT(id_cur(&id, coffer_cursor_from(req->edks[i].ciphertext, req->edks[i].ciphertext_len)));
    }
    TRY_OUT(id_ec(&id, req->ec));
    /* No reproduced context and an empty one are different requests. */
    TRY_OUT(coffer_buf_append_u8(&id, req->reproduced_ec != NULL));
    if (req->reproduced_ec) {
        TRY_OUT(id_ec(&id, req->reproduced_ec));
    }

    pthread_mutex_lock(&c->lock);
    struct cache_entry *e = cache_find(c, &id, false);
    if (e) {
        e->last_used = ++c->tick;
        rc = dec_clone(e->dec, out);
        pthread_mutex_unlock(&c->lock);
        goto out;
    }
    pthread_mutex_unlock(&c->lock);

    TRY_OUT(esdk_cmm_get_dec_materials(c->under, req, &m));
    coffer_dec_materials *copy = NULL;
    TRY_OUT(dec_clone(m, &copy));
    pthread_mutex_lock(&c->lock);
    e = cache_slot(c);
    e->id = id;
    id = (coffer_buf)COFFER_BUF_INIT;
    e->dec = copy;
    e->last_used = ++c->tick;
    pthread_mutex_unlock(&c->lock);
    *out = m;
    m = NULL;
out:
    coffer_buf_free(&id);
    coffer_dec_materials_free(m);
    return rc;
}

static void cache_destroy(coffer_cmm *cmm)
{
    struct cmm_cache *c = (struct cmm_cache *)cmm;
    for (size_t i = 0; i < c->n; i++) {
        entry_clean(&c->v[i]);
    }
    free(c->v);
    pthread_mutex_destroy(&c->lock);
    coffer_cmm_release(c->under);
    free(c);
}

ESDK_CMM_STATUS_METHODS(cache)

static const struct coffer_cmm_vt caching_vt = {
    sizeof(struct coffer_cmm_vt), "caching", cache_get_enc_status, cache_get_dec_status, cache_destroy,
};

coffer_cmm *coffer_cmm_caching_new(coffer_cmm *underlying, size_t capacity, uint64_t max_age_seconds,
                                   uint64_t max_bytes, uint64_t max_messages)
{
    if (!underlying || capacity == 0 || max_age_seconds == 0 || max_messages == 0) {
        coffer_fail(COFFER_ERR_USAGE, "invalid caching CMM arguments");
        return NULL;
    }
    struct cmm_cache *c = calloc(1, sizeof(*c));
    if (!c || !(c->v = calloc(capacity, sizeof(*c->v)))) {
        free(c);
        coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    coffer_cmm_base_init(&c->base, &caching_vt);
    c->under = coffer_cmm_retain(underlying);
    c->cap = capacity;
    c->max_age = max_age_seconds;
    c->max_bytes = max_bytes;
    c->max_messages = max_messages;
    return &c->base;
}
