/*
 * The encryption context: a map of UTF-8 byte strings kept sorted by raw key bytes, which is
 * the order the message format serializes it in, plus its reader and writer
 * (structures.md §Encryption Context, message-header.md §AAD).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "esdk/esdk_internal.h"

static int ec_cmp(coffer_cursor a, coffer_cursor b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (r != 0) {
        return r;
    }
    return a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
}

/* Index of the first entry >= key. */
static size_t ec_lower_bound(const coffer_ec *ec, coffer_cursor key)
{
    size_t lo = 0, hi = ec->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ec_cmp(coffer_buf_cursor(&ec->v[mid].key), key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

const struct esdk_ec_entry *esdk_ec_find(const coffer_ec *ec, coffer_cursor key)
{
    if (!ec) {
        return NULL;
    }
    size_t i = ec_lower_bound(ec, key);
    if (i < ec->n && ec_cmp(coffer_buf_cursor(&ec->v[i].key), key) == 0) {
        return &ec->v[i];
    }
    return NULL;
}

coffer_err esdk_ec_put(coffer_ec *ec, coffer_cursor key, coffer_cursor val)
{
    ENSURE(key.len <= UINT16_MAX && val.len <= UINT16_MAX, COFFER_ERR_LIMIT);
    size_t i = ec_lower_bound(ec, key);
    coffer_buf nv = COFFER_BUF_INIT;
    if (i < ec->n && ec_cmp(coffer_buf_cursor(&ec->v[i].key), key) == 0) {
        TRY(coffer_buf_from(&nv, val.ptr, val.len, false));
        coffer_buf_free(&ec->v[i].val);
        ec->v[i].val = nv;
        return COFFER_OK;
    }
    if (ec->n == ec->cap) {
        size_t ncap = ec->cap ? ec->cap * 2 : 8;
        struct esdk_ec_entry *p = realloc(ec->v, ncap * sizeof(*p));
        ENSURE(p != NULL, COFFER_ERR_NOMEM);
        ec->v = p;
        ec->cap = ncap;
    }
    assert(i <= ec->n && ec->n < ec->cap);
    struct esdk_ec_entry e = {COFFER_BUF_INIT, COFFER_BUF_INIT};
    coffer_err rc = COFFER_OK;
    TRY_OUT(coffer_buf_from(&e.key, key.ptr, key.len, false));
    TRY_OUT(coffer_buf_from(&e.val, val.ptr, val.len, false));
    memmove(&ec->v[i + 1], &ec->v[i], (ec->n - i) * sizeof(*ec->v));
    ec->v[i] = e;
    ec->n++;
    return COFFER_OK;
out:
    coffer_buf_free(&e.key);
    coffer_buf_free(&e.val);
    return rc;
}

coffer_err esdk_ec_remove(coffer_ec *ec, coffer_cursor key)
{
    size_t i = ec_lower_bound(ec, key);
    if (i < ec->n && ec_cmp(coffer_buf_cursor(&ec->v[i].key), key) == 0) {
        coffer_buf_free(&ec->v[i].key);
        coffer_buf_free(&ec->v[i].val);
        memmove(&ec->v[i], &ec->v[i + 1], (ec->n - i - 1) * sizeof(*ec->v));
        ec->n--;
    }
    return COFFER_OK;
}

static coffer_err ec_serialize_filtered(const coffer_ec *ec, const coffer_ec *keys, coffer_buf *out)
{
    size_t count = 0;
    for (size_t i = 0; ec && i < ec->n; i++) {
        if (!keys || esdk_ec_find(keys, coffer_buf_cursor(&ec->v[i].key))) {
            count++;
        }
    }
    if (count == 0) {
        return COFFER_OK; /* structures.md: an empty context serializes to nothing */
    }
    ENSURE(count <= UINT16_MAX, COFFER_ERR_LIMIT);
    size_t start = out->len;
    TRY(coffer_buf_append_u16be(out, (uint16_t)count));
    for (size_t i = 0; i < ec->n; i++) {
        const struct esdk_ec_entry *e = &ec->v[i];
        if (keys && !esdk_ec_find(keys, coffer_buf_cursor(&e->key))) {
            continue;
        }
        TRY(coffer_buf_append_u16be(out, (uint16_t)e->key.len));
        TRY(coffer_buf_append(out, e->key.data, e->key.len));
        TRY(coffer_buf_append_u16be(out, (uint16_t)e->val.len));
        TRY(coffer_buf_append(out, e->val.data, e->val.len));
    }
    if (out->len - start > UINT16_MAX) {
        out->len = start;
        return coffer_fail(COFFER_ERR_LIMIT, "encryption context longer than 65535 bytes");
    }
    return COFFER_OK;
}

coffer_err esdk_ec_serialize(const coffer_ec *ec, coffer_buf *out)
{
    return ec_serialize_filtered(ec, NULL, out);
}

coffer_err esdk_ec_serialize_subset(const coffer_ec *ec, const coffer_ec *keys, coffer_buf *out)
{
    if (!keys || keys->n == 0) {
        return COFFER_OK;
    }
    return ec_serialize_filtered(ec, keys, out);
}

coffer_err esdk_ec_parse(coffer_cursor c, coffer_ec **out)
{
    coffer_err rc = COFFER_OK;
    coffer_ec *ec = coffer_ec_new();
    uint16_t count = 0;

    *out = NULL;
    ENSURE(ec != NULL, COFFER_ERR_NOMEM);
    if (c.len == 0) {
        goto done;
    }
    /* structures.md §Serialization: Key Value Pair Count */
    TRY_OUT(cur_read_u16be(&c, &count));
    for (uint16_t i = 0; i < count; i++) {
        uint16_t kl, vl;
        coffer_cursor k, v;
        /* §Key Value Pair Entries: Key Length, Key, Value Length, Value */
        TRY_OUT(cur_read_u16be(&c, &kl));
        TRY_OUT(cur_read_bytes(&c, kl, &k));
        TRY_OUT(cur_read_u16be(&c, &vl));
        TRY_OUT(cur_read_bytes(&c, vl, &v));
        if (esdk_ec_find(ec, k)) {
            FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "duplicate encryption context key");
        }
        TRY_OUT(esdk_ec_put(ec, k, v));
    }
    if (c.len != 0) {
        FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "trailing bytes in encryption context");
    }
done:
    *out = ec;
    ec = NULL;
out:
    coffer_ec_free(ec);
    return rc;
}

/* ---- public API ---- */

coffer_ec *coffer_ec_new(void)
{
    return calloc(1, sizeof(coffer_ec));
}

void coffer_ec_free(coffer_ec *ec)
{
    if (!ec) {
        return;
    }
    for (size_t i = 0; i < ec->n; i++) {
        coffer_buf_free(&ec->v[i].key);
        coffer_buf_free(&ec->v[i].val);
    }
    free(ec->v);
    free(ec);
}

coffer_ec *coffer_ec_clone(const coffer_ec *ec)
{
    coffer_ec *c = coffer_ec_new();
    for (size_t i = 0; c && ec && i < ec->n; i++) {
        if (esdk_ec_put(c, coffer_buf_cursor(&ec->v[i].key), coffer_buf_cursor(&ec->v[i].val)) != COFFER_OK) {
            coffer_ec_free(c);
            return NULL;
        }
    }
    return c;
}

static coffer_err esdk_ec_set(coffer_ec *ec, const uint8_t *key, size_t key_len, const uint8_t *val,
                              size_t val_len)
{
    ENSURE(ec && (key || !key_len) && (val || !val_len), COFFER_ERR_USAGE);
    return esdk_ec_put(ec, coffer_cursor_from(key, key_len), coffer_cursor_from(val, val_len));
}

int coffer_ec_set(coffer_ec *ec, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    return esdk_status(esdk_ec_set(ec, key, key_len, val, val_len));
}

static coffer_err esdk_ec_set_str(coffer_ec *ec, const char *key, const char *val)
{
    ENSURE(ec && key && val, COFFER_ERR_USAGE);
    return esdk_ec_put(ec, coffer_cursor_from_str(key), coffer_cursor_from_str(val));
}

int coffer_ec_set_str(coffer_ec *ec, const char *key, const char *val)
{
    return esdk_status(esdk_ec_set_str(ec, key, val));
}

size_t coffer_ec_count(const coffer_ec *ec)
{
    return ec ? ec->n : 0;
}

static coffer_err esdk_ec_get_at(const coffer_ec *ec, size_t i, const uint8_t **key, size_t *key_len,
                                 const uint8_t **val, size_t *val_len)
{
    ENSURE(ec && i < ec->n && key && key_len && val && val_len, COFFER_ERR_USAGE);
    *key = ec->v[i].key.data;
    *key_len = ec->v[i].key.len;
    *val = ec->v[i].val.data;
    *val_len = ec->v[i].val.len;
    return COFFER_OK;
}

int coffer_ec_get_at(const coffer_ec *ec, size_t i, const uint8_t **key, size_t *key_len, const uint8_t **val,
                     size_t *val_len)
{
    return esdk_status(esdk_ec_get_at(ec, i, key, key_len, val, val_len));
}

const uint8_t *coffer_ec_get(const coffer_ec *ec, const uint8_t *key, size_t key_len, size_t *val_len)
{
    const struct esdk_ec_entry *e = esdk_ec_find(ec, coffer_cursor_from(key, key_len));
    if (!e) {
        return NULL;
    }
    if (val_len) {
        *val_len = e->val.len;
    }
    return e->val.data ? e->val.data : (const uint8_t *)"";
}
