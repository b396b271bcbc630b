/*
 * Compact JSON serialiser (see json_out.h).
 */
#include "common/json_out.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_OUT_MAX_DEPTH 64

/*
 * Bytes before the first one that needs an escape ('"', '\\' or a control character) among
 * the n at s, eight at a time: most strings (ids, ARNs, a User-Agent) need none, and copying
 * them in runs costs a fraction of a byte-by-byte loop. The tests flag a byte below 0x20 or
 * equal to '"' or '\\' with the usual zero-byte trick; the lowest flagged byte is always a
 * true one (borrows only reach upwards), which is the one found.
 */
static size_t json_out_plain_run(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, sizeof(w));
        uint64_t q = w ^ (ones * '"');
        uint64_t b = w ^ (ones * '\\');
        uint64_t hit = ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b);
        hit &= highs;
        if (hit != 0) {
            return i + (size_t)__builtin_ctzll(hit) / 8;
        }
    }
    while (i < n && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\') {
        i++;
    }
    return i;
}

coffer_err json_out_string(const char *s, size_t n, coffer_buf *out)
{
    /* Worst case: every byte becomes \u00XX (6 bytes), plus quotes. */
    TRY(coffer_buf_reserve(out, n * 6 + 2));
    char *o = (char *)out->data + out->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = json_out_plain_run((const unsigned char *)s + i, n - i);
        memcpy(o, s + i, run);
        o += run;
        i += run;
        if (i == n) {
            break;
        }
        unsigned char c = (unsigned char)s[i++];
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
