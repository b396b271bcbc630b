/*
 * Text encodings used on the wire: strict base64 (RFC 4648 §4, padding required, no whitespace),
 * as AWS JSON 1.1 carries blobs, lowercase hex, and percent-encoding.
 */
#ifndef COFFER_COMMON_CODEC_H
#define COFFER_COMMON_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

size_t coffer_b64_encoded_len(size_t n);
/* Appends the base64 of `in` to `out` (no NUL). */
coffer_err coffer_b64_encode(coffer_cursor in, coffer_buf *out) __attribute__((warn_unused_result));
/* Appends the decoded bytes; COFFER_ERR_VALIDATION on any malformed input. */
coffer_err coffer_b64_decode(coffer_cursor in, coffer_buf *out) __attribute__((warn_unused_result));

/* Writes 2n lowercase hex chars plus NUL to out (size >= 2n+1). */
void coffer_hex_encode(const uint8_t *in, size_t n, char *out);
/* The value of one hex digit (either case), or -1. */
int coffer_hex_digit(uint8_t ch);
/* Decodes exactly 2n hex chars (either case) to n bytes; COFFER_ERR_VALIDATION otherwise. */
coffer_err coffer_hex_decode(coffer_cursor in, uint8_t *out, size_t n) __attribute__((warn_unused_result));

/* Appends `s` percent-encoded, every byte but the RFC 3986 unreserved ones as %XX (uppercase),
 * as AWS encodes policy documents in IAM answers and as a form body is encoded. */
coffer_err coffer_url_encode(const char *s, coffer_buf *out) __attribute__((warn_unused_result));

#endif
