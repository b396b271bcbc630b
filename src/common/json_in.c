/*
 * Request bodies to JSON trees (see json_in.h). The fast reader accepts a strict subset of JSON
 * and builds the tree with the constructors Jansson's own reader uses, so the two agree on
 * everything the subset contains; the fuzz target tests/fuzz/json_in_fuzz.c checks exactly that.
 */
#include "common/json_in.h"

#include <stdbool.h>

struct json_in_reader {
    const uint8_t *p;
    size_t n;
    size_t pos;
};

static void skip_ws(struct json_in_reader *r)
{
    while (r->pos < r->n) {
        uint8_t c = r->p[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        r->pos++;
    }
}

/* The next byte, or -1 at the end. */
static int peek(const struct json_in_reader *r)
{
    return r->pos < r->n ? r->p[r->pos] : -1;
}

/* Reads the literal `lit` at the current position. */
static bool read_literal(struct json_in_reader *r, const char *lit, size_t len)
{
    if (r->n - r->pos < len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (r->p[r->pos + i] != (uint8_t)lit[i]) {
            return false;
        }
    }
    r->pos += len;
    return true;
}

/*
 * A string of printable ASCII without escapes: on success *s and *len point into the input
 * (after the opening quote) and the closing quote is consumed. Anything else declines.
 */
static bool read_plain_string(struct json_in_reader *r, const char **s, size_t *len)
{
    if (peek(r) != '"') {
        return false;
    }
    size_t start = ++r->pos;
    while (r->pos < r->n) {
        uint8_t c = r->p[r->pos];
        if (c == '"') {
            *s = (const char *)r->p + start;
            *len = r->pos - start;
            r->pos++;
            return true;
        }
        if (c < 0x20 || c >= 0x7f || c == '\\') {
            return false; /* control bytes, non-ASCII (UTF-8 checks) and escapes: Jansson's */
        }
        r->pos++;
    }
    return false;
}

/* A non-negative integer without leading zeros, at most JSON_IN_SIMPLE_MAX_DIGITS digits. */
static json_t *read_integer(struct json_in_reader *r)
{
    size_t start = r->pos;
    json_int_t v = 0;
    while (r->pos < r->n && r->p[r->pos] >= '0' && r->p[r->pos] <= '9') {
        if (r->pos - start == JSON_IN_SIMPLE_MAX_DIGITS) {
            return NULL;
        }
        v = v * 10 + (r->p[r->pos] - '0');
        r->pos++;
    }
    size_t digits = r->pos - start;
    if (digits == 0 || (digits > 1 && r->p[start] == '0')) {
        return NULL;
    }
    /* "1.5", "1e3": reals are Jansson's (the caller also declines on any unexpected byte). */
    int c = peek(r);
    if (c == '.' || c == 'e' || c == 'E') {
        return NULL;
    }
    return json_integer(v);
}

static json_t *read_value(struct json_in_reader *r, int depth);

static json_t *read_object(struct json_in_reader *r, int depth)
{
    if (depth > JSON_IN_SIMPLE_MAX_DEPTH || peek(r) != '{') {
        return NULL;
    }
    r->pos++;
    json_t *obj = json_object();
    if (obj == NULL) {
        return NULL;
    }
    skip_ws(r);
    if (peek(r) == '}') {
        r->pos++;
        return obj;
    }
    for (;;) {
        const char *key;
        size_t key_len;
        skip_ws(r);
        if (!read_plain_string(r, &key, &key_len)) {
            goto decline;
        }
        skip_ws(r);
        if (peek(r) != ':') {
            goto decline;
        }
        r->pos++;
        skip_ws(r);
        /* A repeated member is an error under JSON_REJECT_DUPLICATES: Jansson reports it. */
        if (json_object_getn(obj, key, key_len) != NULL) {
            goto decline;
        }
        json_t *val = read_value(r, depth + 1);
        if (val == NULL || json_object_setn_new_nocheck(obj, key, key_len, val) != 0) {
            goto decline; /* setn_new releases val on failure */
        }
        skip_ws(r);
        int c = peek(r);
        if (c < 0) {
            goto decline;
        }
        r->pos++;
        if (c == '}') {
            return obj;
        }
        if (c != ',') {
            goto decline;
        }
    }
decline:
    json_decref(obj);
    return NULL;
}

static json_t *read_array(struct json_in_reader *r, int depth)
{
    if (depth > JSON_IN_SIMPLE_MAX_DEPTH) {
        return NULL;
    }
    r->pos++; /* '[' */
    json_t *arr = json_array();
    if (arr == NULL) {
        return NULL;
    }
    skip_ws(r);
    if (peek(r) == ']') {
        r->pos++;
        return arr;
    }
    for (;;) {
        skip_ws(r);
        json_t *val = read_value(r, depth + 1);
        if (val == NULL || json_array_append_new(arr, val) != 0) {
            goto decline;
        }
        skip_ws(r);
        int c = peek(r);
        if (c < 0) {
            goto decline;
        }
        r->pos++;
        if (c == ']') {
            return arr;
        }
        if (c != ',') {
            goto decline;
        }
    }
decline:
    json_decref(arr);
    return NULL;
}

static json_t *read_value(struct json_in_reader *r, int depth)
{
    int c = peek(r);
    if (c == '"') {
        const char *s;
        size_t len;
        return read_plain_string(r, &s, &len) ? json_stringn_nocheck(s, len) : NULL;
    }
    if (c == '{') {
        return read_object(r, depth);
    }
    if (c == '[') {
        return read_array(r, depth);
    }
    if (c >= '0' && c <= '9') {
        return read_integer(r);
    }
    if (c == 't') {
        return read_literal(r, "true", 4) ? json_true() : NULL;
    }
    if (c == 'f') {
        return read_literal(r, "false", 5) ? json_false() : NULL;
    }
    if (c == 'n') {
        return read_literal(r, "null", 4) ? json_null() : NULL;
    }
    return NULL; /* '-' and anything else */
}

json_t *json_in_simple(const uint8_t *p, size_t n)
{
    if (p == NULL || n == 0) {
        return NULL;
    }
    struct json_in_reader r = {p, n, 0};
    skip_ws(&r);
    json_t *obj = read_object(&r, 1);
    if (obj == NULL) {
        return NULL;
    }
    skip_ws(&r);
    if (r.pos != r.n) {
        json_decref(obj); /* trailing bytes: Jansson says what is wrong with them */
        return NULL;
    }
    return obj;
}

json_t *json_in_object(const uint8_t *p, size_t n)
{
    json_t *j = json_in_simple(p, n);
    if (j != NULL) {
        return j;
    }
    j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}
