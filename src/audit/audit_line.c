/*
 * The audit line writer (see audit.h, "events written directly"): the per-request event is
 * serialised once, straight into the worker's batch, instead of being built as a JSON tree,
 * bounded, serialised and copied. It must write exactly what audit.c's tree path writes for the
 * same members, because the verifier and every reader of the trail see only the bytes: the
 * framing is the same prefix with a head slot, strings are escaped by the same serialiser
 * (json_out), the UTF-8 check is jansson's (a value jansson would refuse is either made ASCII
 * with '?' or makes the event incomplete, as in the pipeline's tree), and a string member of
 * the event is cut as audit.c's string_cut cuts it. The rest of the bounding (omitting large
 * members) needs the tree: such an event is handed back.
 */
#include "audit/audit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_internal.h"
#include "common/json_out.h"

#define LINE_RESERVE 2048 /* a typical event; the buffer grows as needed */

coffer_err audit_batch_new(audit_batch **out)
{
    ENSURE_REF(out);
    audit_batch *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        *out = NULL;
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_buf_init(&b->lines, false);
    *out = b;
    return COFFER_OK;
}

void audit_batch_free(audit_batch *b)
{
    if (b == NULL) {
        return;
    }
    coffer_buf_free(&b->lines);
    free(b);
}

size_t audit_batch_count(const audit_batch *b)
{
    return b->count;
}

/* Jansson's test of a string it accepts (utf8_check_string): well-formed UTF-8, no surrogates,
 * no overlong forms, nothing over U+10FFFF. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t w;
        if (n - i >= 8 && (memcpy(&w, s + i, sizeof(w)), (w & 0x8080808080808080ull) == 0)) {
            i += 8; /* eight ASCII bytes */
            continue;
        }
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t size;
        uint32_t v;
        if (c < 0xC2) {
            return false; /* a continuation byte, or the start of an overlong 2-byte form */
        } else if (c < 0xE0) {
            size = 2;
            v = c & 0x1F;
        } else if (c < 0xF0) {
            size = 3;
            v = c & 0x0F;
        } else if (c < 0xF5) {
            size = 4;
            v = c & 0x07;
        } else {
            return false;
        }
        if (n - i < size) {
            return false;
        }
        for (size_t k = 1; k < size; k++) {
            unsigned u = s[i + k];
            if ((u & 0xC0) != 0x80) {
                return false;
            }
            v = (v << 6) | (u & 0x3F);
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (size == 3 && v < 0x800) ||
            (size == 4 && v < 0x10000)) {
            return false;
        }
        i += size;
    }
    return true;
}

/* The separator and the key of the next member; false when the line is already failed. The
 * keys are the event's own names: written as they are when nothing in them needs an escape. */
static bool member_key(audit_batch *b, const char *key)
{
    if (!b->open || b->failed) {
        return false;
    }
    bool *first = &b->first[b->depth];
    size_t klen = strlen(key);
    bool plain = true;
    for (size_t i = 0; i < klen && plain; i++) {
        unsigned char c = (unsigned char)key[i];
        plain = c >= 0x20 && c != '"' && c != '\\';
    }
    if (plain && coffer_buf_reserve(&b->lines, klen + 4) == COFFER_OK) {
        char *o = (char *)b->lines.data + b->lines.len;
        if (!*first) {
            *o++ = ',';
        }
        *o++ = '"';
        memcpy(o, key, klen);
        o += klen;
        *o++ = '"';
        *o++ = ':';
        b->lines.len = (size_t)((uint8_t *)o - b->lines.data);
    } else if ((!*first && coffer_buf_append_u8(&b->lines, ',') != COFFER_OK) ||
               json_out_string(key, klen, &b->lines) != COFFER_OK ||
               coffer_buf_append_u8(&b->lines, ':') != COFFER_OK) {
        b->failed = true;
        return false;
    }
    *first = false;
    return true;
}

void audit_line_begin(audit_batch *b)
{
    b->start = b->lines.len;
    b->open = true;
    b->failed = false;
    b->depth = 0;
    b->first[0] = false; /* the hash field comes first */
    if (coffer_buf_reserve(&b->lines, LINE_RESERVE) != COFFER_OK) {
        b->failed = true;
        return;
    }
    uint8_t *l = b->lines.data + b->lines.len;
    memcpy(l, AUDIT_PREFIX_HEAD, AUDIT_PREFIX_HEAD_LEN);
    memset(l + AUDIT_PREFIX_HEAD_LEN, '0', AUDIT_HASH_HEX_LEN); /* the head slot */
    l[AUDIT_PREFIX_HEAD_LEN + AUDIT_HASH_HEX_LEN] = '"';
    b->lines.len += AUDIT_PREFIX_LEN - 1; /* the comma comes with the first member */
}

void audit_line_string(audit_batch *b, const char *key, const char *value, bool lossy)
{
    static const char marker[] = AUDIT_TRUNCATED_MARKER;
    if (value == NULL) {
        b->failed = true;
    }
    if (!member_key(b, key)) {
        return;
    }
    size_t n = strlen(value);
    const char *s = value;
    char *copy = NULL;
    if (!utf8_ok((const unsigned char *)value, n)) {
        if (!lossy) {
            b->failed = true;
            return;
        }
        copy = malloc(n + 1);
        if (copy == NULL) {
            b->failed = true;
            return;
        }
        for (size_t i = 0; i < n; i++) {
            copy[i] = (unsigned char)value[i] >= 0x80 ? '?' : value[i];
        }
        s = copy;
    }
    coffer_err rc;
    if (b->depth == 0 && n > AUDIT_MAX_STRING_BYTES) {
        /* audit.c's string_cut: the first bytes up to a UTF-8 boundary, then the marker. */
        char cut[AUDIT_MAX_STRING_BYTES];
        size_t keep = AUDIT_MAX_STRING_BYTES - (sizeof(marker) - 1);
        while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) {
            keep--;
        }
        memcpy(cut, s, keep);
        memcpy(cut + keep, marker, sizeof(marker) - 1);
        rc = json_out_string(cut, keep + sizeof(marker) - 1, &b->lines);
    } else {
        rc = json_out_string(s, n, &b->lines);
    }
    free(copy);
    if (rc != COFFER_OK) {
        b->failed = true;
    }
}

void audit_line_bool(audit_batch *b, const char *key, bool value)
{
    if (member_key(b, key) && coffer_buf_append_str(&b->lines, value ? "true" : "false") != COFFER_OK) {
        b->failed = true;
    }
}

void audit_line_json(audit_batch *b, const char *key, const json_t *value)
{
    if (!member_key(b, key)) {
        return;
    }
    coffer_err rc =
        value != NULL ? json_out_compact(value, &b->lines) : coffer_buf_append_str(&b->lines, "null");
    if (rc != COFFER_OK) {
        b->failed = true;
    }
}

void audit_line_object_begin(audit_batch *b, const char *key)
{
    if (b->depth != 0) {
        b->failed = true; /* one level only: a caller's mistake */
        return;
    }
    if (member_key(b, key) && coffer_buf_append_u8(&b->lines, '{') != COFFER_OK) {
        b->failed = true;
    }
    b->depth = 1;
    b->first[1] = true;
}

void audit_line_object_end(audit_batch *b)
{
    if (b->depth != 1) {
        b->failed = true;
        return;
    }
    b->depth = 0;
    if (!b->failed && coffer_buf_append_u8(&b->lines, '}') != COFFER_OK) {
        b->failed = true;
    }
}

void audit_line_fail(audit_batch *b)
{
    b->failed = true;
}

coffer_err audit_line_end(audit_batch *b, bool *oversized)
{
    coffer_err rc = COFFER_OK;
    *oversized = false;
    if (!b->open) {
        return coffer_fail(COFFER_ERR_USAGE, "no audit event is being written");
    }
    b->open = false;
    if (b->failed || b->depth != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "the audit event could not be written whole");
    }
    if (coffer_buf_append(&b->lines, "}\n", 2) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory writing an audit event");
    }
    if (b->lines.len - b->start > AUDIT_MAX_FIELD_BYTES) {
        /* audit_trail_append would bound this one member by member: it needs the tree. */
        *oversized = true;
        b->lines.len = b->start;
        return COFFER_OK;
    }
    b->count++;
    return COFFER_OK;
out:
    b->lines.len = b->start;
    return rc;
}
