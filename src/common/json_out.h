/*
 * A compact JSON serialiser for jansson values, producing exactly what
 * json_dumps(v, JSON_COMPACT) produces (insertion order, no spaces, the same escapes), but in a
 * fraction of the instructions: it is on the per-request path twice (the audit line and the
 * response body). Strings in jansson values are valid UTF-8 by construction, so only '"', '\\'
 * and control characters need escaping.
 */
#ifndef COFFER_COMMON_JSON_OUT_H
#define COFFER_COMMON_JSON_OUT_H

#include <jansson.h>

#include "common/buf.h"

/* Appends the JSON string of the n bytes at s (valid UTF-8) to `out`, escaped as above. */
coffer_err json_out_string(const char *s, size_t n, coffer_buf *out) __attribute__((warn_unused_result));

/* Appends the compact serialisation of `v` to `out`. */
coffer_err json_out_compact(const json_t *v, coffer_buf *out) __attribute__((warn_unused_result));

#endif
