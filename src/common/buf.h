/*
 * The two byte types of the tree. coffer_buf owns its bytes (data, len, cap); a secret buffer
 * comes from the locked allocator and is wiped when freed or grown. coffer_cursor is a borrowed,
 * bounds-checked view over untrusted input: every read checks the remaining length first and
 * leaves the cursor untouched on failure, so parsers never do raw pointer arithmetic.
 */
#ifndef COFFER_COMMON_BUF_H
#define COFFER_COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct coffer_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool secret; /* locked allocation, wiped on free and on growth */
} coffer_buf;

typedef struct coffer_cursor {
    const uint8_t *ptr;
    size_t len;
} coffer_cursor;

#define COFFER_BUF_INIT                                                                                      \
    {                                                                                                        \
        NULL, 0, 0, false                                                                                    \
    }
#define COFFER_SECRET_BUF_INIT                                                                               \
    {                                                                                                        \
        NULL, 0, 0, true                                                                                     \
    }

/* ---- owned buffers ---- */
void coffer_buf_init(coffer_buf *b, bool secret);
coffer_err coffer_buf_reserve(coffer_buf *b, size_t extra) __attribute__((warn_unused_result));
coffer_err coffer_buf_append(coffer_buf *b, const void *p, size_t n) __attribute__((warn_unused_result));
coffer_err coffer_buf_append_cur(coffer_buf *b, coffer_cursor c) __attribute__((warn_unused_result));
coffer_err coffer_buf_append_str(coffer_buf *b, const char *s) __attribute__((warn_unused_result));
coffer_err coffer_buf_append_u8(coffer_buf *b, uint8_t v) __attribute__((warn_unused_result));
coffer_err coffer_buf_append_u16be(coffer_buf *b, uint16_t v) __attribute__((warn_unused_result));
coffer_err coffer_buf_append_u32be(coffer_buf *b, uint32_t v) __attribute__((warn_unused_result));
coffer_err coffer_buf_append_u64be(coffer_buf *b, uint64_t v) __attribute__((warn_unused_result));
coffer_err coffer_buf_printf(coffer_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a NUL after the contents without counting it in len (for C-string use). */
coffer_err coffer_buf_nul_terminate(coffer_buf *b) __attribute__((warn_unused_result));
/* Copies n bytes into a fresh buffer (secret or not). */
coffer_err coffer_buf_from(coffer_buf *b, const void *p, size_t n, bool secret)
    __attribute__((warn_unused_result));
void coffer_buf_reset(coffer_buf *b); /* len = 0, keeps memory (wiped if secret) */
void coffer_buf_free(coffer_buf *b);  /* accepts an already-freed/zero buffer */
coffer_cursor coffer_buf_cursor(const coffer_buf *b);

/* ---- C strings ---- */
/* Copies src into dst[n] (n > 0), truncated to n - 1 bytes and NUL-terminated: what
 * snprintf(dst, n, "%s", src) does, without a format parsed on hot paths. Returns strlen(dst). */
size_t coffer_str_copy(char *dst, size_t n, const char *src);

/* ---- borrowed cursors over untrusted bytes ---- */
coffer_cursor coffer_cursor_from(const void *p, size_t n);
coffer_cursor coffer_cursor_from_str(const char *s);
bool coffer_cursor_eq(coffer_cursor a, coffer_cursor b);
bool coffer_cursor_eq_str(coffer_cursor a, const char *s);

/* Each read fails with COFFER_ERR_BAD_MESSAGE if fewer bytes remain, leaving *c unchanged. */
coffer_err cur_read_u8(coffer_cursor *c, uint8_t *v) __attribute__((warn_unused_result));
coffer_err cur_read_u16be(coffer_cursor *c, uint16_t *v) __attribute__((warn_unused_result));
coffer_err cur_read_u32be(coffer_cursor *c, uint32_t *v) __attribute__((warn_unused_result));
coffer_err cur_read_u64be(coffer_cursor *c, uint64_t *v) __attribute__((warn_unused_result));
coffer_err cur_read_bytes(coffer_cursor *c, size_t n, coffer_cursor *out) __attribute__((warn_unused_result));
coffer_err cur_copy_bytes(coffer_cursor *c, void *dst, size_t n) __attribute__((warn_unused_result));
coffer_err cur_skip(coffer_cursor *c, size_t n) __attribute__((warn_unused_result));

#endif
