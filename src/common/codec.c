/*
 * base64, hex and percent-encoding (see codec.h). The decoder is table-driven and rejects anything that is
 * not canonical padded base64, so a blob has exactly one text form.
 */
#include "common/codec.h"

#include <string.h>

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t coffer_b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

coffer_err coffer_b64_encode(coffer_cursor in, coffer_buf *out)
{
    if (in.len == 0) {
        return COFFER_OK; /* out->data may still be NULL: no pointer arithmetic on it */
    }
    TRY(coffer_buf_reserve(out, coffer_b64_encoded_len(in.len)));
    char *o = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= in.len; i += 3) {
        uint32_t v = ((uint32_t)in.ptr[i] << 16) | ((uint32_t)in.ptr[i + 1] << 8) | in.ptr[i + 2];
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (in.len - i == 1) {
        uint32_t v = (uint32_t)in.ptr[i] << 16;
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (in.len - i == 2) {
        uint32_t v = ((uint32_t)in.ptr[i] << 16) | ((uint32_t)in.ptr[i + 1] << 8);
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = '=';
    }
    out->len = (size_t)((uint8_t *)o - out->data);
    return COFFER_OK;
}

/* Value of each byte as a base64 digit, -1 for a byte that is not one (the inverse of
 * b64_alphabet, so the decoder costs one load per character). */
static const int8_t b64_rev[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
    13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1, -1, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int b64_value(uint8_t ch)
{
    return b64_rev[ch];
}

coffer_err coffer_b64_decode(coffer_cursor in, coffer_buf *out)
{
    if (in.len % 4 != 0) {
        return coffer_fail(COFFER_ERR_VALIDATION, "invalid base64: length is not a multiple of 4");
    }
    if (in.len == 0) {
        return COFFER_OK;
    }
    TRY(coffer_buf_reserve(out, in.len / 4 * 3));
    uint8_t *o = out->data + out->len;
    for (size_t i = 0; i < in.len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            uint8_t ch = in.ptr[i + k];
            if (ch == '=' && i + 4 == in.len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = b64_value(ch)) < 0) {
                return coffer_fail(COFFER_ERR_VALIDATION, "invalid base64");
            }
        }
        uint32_t x = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        /* Canonical form only: the bits dropped by padding must be zero. */
        if ((pad == 1 && (x & 0xff)) || (pad == 2 && (x & 0xffff))) {
            return coffer_fail(COFFER_ERR_VALIDATION, "invalid base64: non-canonical padding");
        }
        *o++ = (uint8_t)(x >> 16);
        if (pad < 2) {
            *o++ = (uint8_t)(x >> 8);
        }
        if (pad < 1) {
            *o++ = (uint8_t)x;
        }
    }
    out->len = (size_t)(o - out->data);
    return COFFER_OK;
}

void coffer_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int coffer_hex_digit(uint8_t ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

coffer_err coffer_hex_decode(coffer_cursor in, uint8_t *out, size_t n)
{
    if (in.len != 2 * n) {
        return coffer_fail(COFFER_ERR_VALIDATION, "invalid hex length");
    }
    for (size_t i = 0; i < n; i++) {
        int hi = coffer_hex_digit(in.ptr[2 * i]), lo = coffer_hex_digit(in.ptr[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return coffer_fail(COFFER_ERR_VALIDATION, "invalid hex digit");
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return COFFER_OK;
}

coffer_err coffer_url_encode(const char *s, coffer_buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    ENSURE(s != NULL && out != NULL, COFFER_ERR_USAGE);
    for (const uint8_t *p = (const uint8_t *)s; *p; p++) {
        uint8_t ch = *p;
        bool unreserved = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                          ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (unreserved) {
            TRY(coffer_buf_append_u8(out, ch));
            continue;
        }
        char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
        TRY(coffer_buf_append(out, enc, 3));
    }
    return COFFER_OK;
}
