/*
 * Compact JSON serialiser (see json_out.h).
 */
#include "common/json_out.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_OUT_MAX_DEPTH 64

#define JSON_OUT_ONES 0x0101010101010101ULL
#define JSON_OUT_HIGHS 0x8080808080808080ULL

/*
 * True when one of the eight bytes of w is below 0x20, '"' or '\\': the bytes a JSON string
 * escapes. The usual word-at-a-time tests: (x - 0x01..) & ~x & 0x80.. is non-zero exactly when
 * some byte of x is zero, (w - 0x20..) & ~w & 0x80.. exactly when some byte of w is below 0x20.
 */
static bool json_out_word_escapes(uint64_t w)
{
    uint64_t quote = w ^ (JSON_OUT_ONES * '"'), bslash = w ^ (JSON_OUT_ONES * '\\');
    uint64_t ctl = (w - JSON_OUT_ONES * 0x20) & ~w;
    uint64_t q = (quote - JSON_OUT_ONES) & ~quote;
    uint64_t b = (bslash - JSON_OUT_ONES) & ~bslash;
    return ((ctl | q | b) & JSON_OUT_HIGHS) != 0;
}

static coffer_err json_out_string(const char *s, size_t n, coffer_buf *out)
{
    /* Worst case: every byte becomes \u00XX (6 bytes), plus quotes. */
    TRY(coffer_buf_reserve(out, n * 6 + 2));
    char *o = (char *)out->data + out->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        /* Eight bytes at a time while none needs escaping (base64 blobs, ARNs, ids). */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (json_out_word_escapes(w)) {
                break;
            }
            memcpy(o, s + i, 8);
            o += 8;
            i += 8;
        }
        if (i == n) {
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default: {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        }
    }
    *o++ = '"';
    out->len = (size_t)((uint8_t *)o - out->data);
    return COFFER_OK;
}

static coffer_err json_out_value(const json_t *v, coffer_buf *out, int depth)
{
    if (depth > JSON_OUT_MAX_DEPTH) {
        return coffer_fail(COFFER_ERR_INTERNAL, "JSON nesting too deep to serialise");
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        bool first = true;
        TRY(coffer_buf_append_u8(out, '{'));
        json_object_foreach((json_t *)v, key, val)
        {
            if (!first) {
                TRY(coffer_buf_append_u8(out, ','));
            }
            first = false;
            TRY(json_out_string(key, strlen(key), out));
            TRY(coffer_buf_append_u8(out, ':'));
            TRY(json_out_value(val, out, depth + 1));
        }
        return coffer_buf_append_u8(out, '}');
    }
    case JSON_ARRAY: {
        TRY(coffer_buf_append_u8(out, '['));
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0) {
                TRY(coffer_buf_append_u8(out, ','));
            }
            TRY(json_out_value(json_array_get(v, i), out, depth + 1));
        }
        return coffer_buf_append_u8(out, ']');
    }
    case JSON_STRING:
        return json_out_string(json_string_value(v), json_string_length(v), out);
    case JSON_INTEGER: {
        char num[32];
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return coffer_buf_append(out, num, (size_t)n);
    }
    case JSON_REAL: {
        /* Rare (timestamps): let jansson format it so the digits match exactly. */
        char num[64];
        size_t n = json_dumpb(v, num, sizeof(num), JSON_COMPACT | JSON_ENCODE_ANY);
        if (n == 0 || n > sizeof(num)) {
            return coffer_fail(COFFER_ERR_INTERNAL, "cannot serialise a number");
        }
        return coffer_buf_append(out, num, n);
    }
    case JSON_TRUE:
        return coffer_buf_append(out, "true", 4);
    case JSON_FALSE:
        return coffer_buf_append(out, "false", 5);
    case JSON_NULL:
        return coffer_buf_append(out, "null", 4);
    }
    return coffer_fail(COFFER_ERR_INTERNAL, "unknown JSON type");
}

coffer_err json_out_compact(const json_t *v, coffer_buf *out)
{
    size_t start = out->len;
    coffer_err rc = json_out_value(v, out, 0);
    if (rc != COFFER_OK) {
        out->len = start;
    }
    return rc;
}
