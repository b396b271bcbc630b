/*
 * Owned buffers and bounds-checked cursors (see buf.h).
 */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"

void coffer_buf_init(coffer_buf *b, bool secret)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->secret = secret;
}

coffer_err coffer_buf_reserve(coffer_buf *b, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(b->len, extra, &need)) {
        return coffer_fail(COFFER_ERR_NOMEM, "buffer size overflow");
    }
    if (need <= b->cap) {
        return COFFER_OK;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (__builtin_mul_overflow(cap, 2, &cap)) {
            cap = need;
            break;
        }
    }
    uint8_t *p;
    if (b->secret) {
        /* Never realloc a secret: copy into a new locked block and wipe the old one. */
        p = coffer_secret_alloc(cap);
        if (p == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        if (b->len) {
            memcpy(p, b->data, b->len);
        }
        coffer_secret_free(b->data, b->cap);
    } else {
        p = realloc(b->data, cap);
        if (p == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    b->data = p;
    b->cap = cap;
    return COFFER_OK;
}

coffer_err coffer_buf_append(coffer_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return COFFER_OK;
    }
    TRY(coffer_buf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return COFFER_OK;
}

coffer_err coffer_buf_append_cur(coffer_buf *b, coffer_cursor c)
{
    return coffer_buf_append(b, c.ptr, c.len);
}

coffer_err coffer_buf_append_str(coffer_buf *b, const char *s)
{
    return coffer_buf_append(b, s, strlen(s));
}

coffer_err coffer_buf_append_u8(coffer_buf *b, uint8_t v)
{
    return coffer_buf_append(b, &v, 1);
}

coffer_err coffer_buf_append_u16be(coffer_buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return coffer_buf_append(b, x, sizeof(x));
}

coffer_err coffer_buf_append_u32be(coffer_buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return coffer_buf_append(b, x, sizeof(x));
}

coffer_err coffer_buf_append_u64be(coffer_buf *b, uint64_t v)
{
    TRY(coffer_buf_append_u32be(b, (uint32_t)(v >> 32)));
    return coffer_buf_append_u32be(b, (uint32_t)v);
}

coffer_err coffer_buf_printf(coffer_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return coffer_fail(COFFER_ERR_INTERNAL, "format error");
    }
    TRY(coffer_buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return COFFER_OK;
}

coffer_err coffer_buf_nul_terminate(coffer_buf *b)
{
    TRY(coffer_buf_reserve(b, 1));
    b->data[b->len] = '\0';
    return COFFER_OK;
}

coffer_err coffer_buf_from(coffer_buf *b, const void *p, size_t n, bool secret)
{
    coffer_buf_init(b, secret);
    return coffer_buf_append(b, p, n);
}

void coffer_buf_reset(coffer_buf *b)
{
    if (b->secret && b->data) {
        coffer_secure_zero(b->data, b->cap);
    }
    b->len = 0;
}

void coffer_buf_free(coffer_buf *b)
{
    if (b == NULL) {
        return;
    }
    if (b->secret) {
        coffer_secret_free(b->data, b->cap);
    } else {
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

coffer_cursor coffer_buf_cursor(const coffer_buf *b)
{
    coffer_cursor c = {b->data, b->len};
    return c;
}

coffer_cursor coffer_cursor_from(const void *p, size_t n)
{
    coffer_cursor c = {(const uint8_t *)p, n};
    return c;
}

coffer_cursor coffer_cursor_from_str(const char *s)
{
    return coffer_cursor_from(s, s ? strlen(s) : 0);
}

bool coffer_cursor_eq(coffer_cursor a, coffer_cursor b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool coffer_cursor_eq_str(coffer_cursor a, const char *s)
{
    return coffer_cursor_eq(a, coffer_cursor_from_str(s));
}

static coffer_err cur_short(void)
{
    return coffer_fail(COFFER_ERR_BAD_MESSAGE, "input truncated");
}

coffer_err cur_read_bytes(coffer_cursor *c, size_t n, coffer_cursor *out)
{
    if (c->len < n) {
        return cur_short();
    }
    out->ptr = c->ptr;
    out->len = n;
    c->ptr += n;
    c->len -= n;
    return COFFER_OK;
}

coffer_err cur_skip(coffer_cursor *c, size_t n)
{
    coffer_cursor unused;
    return cur_read_bytes(c, n, &unused);
}

coffer_err cur_copy_bytes(coffer_cursor *c, void *dst, size_t n)
{
    coffer_cursor f;
    TRY(cur_read_bytes(c, n, &f));
    if (n) {
        memcpy(dst, f.ptr, n);
    }
    return COFFER_OK;
}

coffer_err cur_read_u8(coffer_cursor *c, uint8_t *v)
{
    coffer_cursor f;
    TRY(cur_read_bytes(c, 1, &f));
    *v = f.ptr[0];
    return COFFER_OK;
}

coffer_err cur_read_u16be(coffer_cursor *c, uint16_t *v)
{
    coffer_cursor f;
    TRY(cur_read_bytes(c, 2, &f));
    *v = (uint16_t)((f.ptr[0] << 8) | f.ptr[1]);
    return COFFER_OK;
}

coffer_err cur_read_u32be(coffer_cursor *c, uint32_t *v)
{
    coffer_cursor f;
    TRY(cur_read_bytes(c, 4, &f));
    *v = ((uint32_t)f.ptr[0] << 24) | ((uint32_t)f.ptr[1] << 16) | ((uint32_t)f.ptr[2] << 8) | f.ptr[3];
    return COFFER_OK;
}

coffer_err cur_read_u64be(coffer_cursor *c, uint64_t *v)
{
    coffer_cursor f;
    TRY(cur_read_bytes(c, 8, &f));
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) {
        x = (x << 8) | f.ptr[i];
    }
    *v = x;
    return COFFER_OK;
}

size_t coffer_str_copy(char *dst, size_t n, const char *src)
{
    if (n == 0) {
        return 0;
    }
    size_t len = strnlen(src, n - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
    return len;
}
