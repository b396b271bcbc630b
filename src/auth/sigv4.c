/*
 * AWS Signature Version 4 (header form). Sits between the listener and the services: cofferd
 * calls sigv4_verify on every request before policy evaluation, and our clients call sigv4_sign.
 * The reader of the Authorization header and the writer of it live here together, with the
 * canonical-request rules both sides share (../shared/api/sigv4.md §2).
 *
 * Everything read from the request is untrusted: it is walked through bounds-checked cursors,
 * errors carry the messages AWS clients know, and untrusted text quoted back in a message is
 * truncated and reduced to printable ASCII. Secrets and derived keys live in secret buffers and
 * are wiped on every exit path; they never appear in a message.
 */
#include "auth/sigv4.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/codec.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR "aws4_request"
#define SIGV4_SIG_HEX_LEN 64
#define SIGV4_AMZ_DATE_LEN 16  /* "YYYYMMDDTHHMMSSZ" */
#define SIGV4_SCOPE_DATE_LEN 8 /* "YYYYMMDD" */
#define SIGV4_HTTP_DATE_LEN 29 /* "Sun, 30 Aug 2015 12:36:00 GMT" */
#define SIGV4_ECHO_MAX 160     /* bytes of untrusted input quoted back in an error message */
#define SIGV4_CACHE_SLOTS 128  /* signing-key cache entries (direct mapped) */
#define SIGV4_MAX_QUERY_PARAMS 1024
#define SIGV4_MAX_SCOPE_PART 128 /* region and service names */
#define SIGV4_CREQ_RESERVE 1024  /* canonical request bytes reserved up front */
#define SIGV4_STS_RESERVE 256    /* string-to-sign bytes reserved up front */

/* ================================================================================================
 * Small cursor helpers
 * ============================================================================================== */

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static coffer_cursor cur_trim(coffer_cursor c)
{
    while (c.len > 0 && is_ws(c.ptr[0])) {
        c.ptr++;
        c.len--;
    }
    while (c.len > 0 && is_ws(c.ptr[c.len - 1])) {
        c.len--;
    }
    return c;
}

/*
 * Splits *c at the first `sep`: *head gets the bytes before it and *c what follows it.
 * Without a separator *head gets everything, *c becomes empty and false is returned.
 */
static bool cur_split(coffer_cursor *c, uint8_t sep, coffer_cursor *head)
{
    const uint8_t *p = c->len ? memchr(c->ptr, sep, c->len) : NULL;
    size_t n = p ? (size_t)(p - c->ptr) : c->len;
    /* Both reads stay within c->len by construction, so they cannot fail. */
    if (cur_read_bytes(c, n, head) != COFFER_OK || p == NULL) {
        return false;
    }
    return cur_skip(c, 1) == COFFER_OK;
}

/* Case-insensitive comparison of a C string with a cursor. */
static bool cur_ieq_str(coffer_cursor c, const char *s)
{
    size_t n = strlen(s);
    return n == c.len && (n == 0 || strncasecmp((const char *)c.ptr, s, n) == 0);
}

/* Printable, truncated copy of untrusted text for error messages. */
static const char *echo(coffer_cursor c, char *out, size_t out_size)
{
    size_t n = 0;
    for (size_t i = 0; i < c.len && n + 4 < out_size && i < SIGV4_ECHO_MAX; i++) {
        uint8_t ch = c.ptr[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (c.len > SIGV4_ECHO_MAX || n + 4 >= out_size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* NUL-terminated copy of a cursor into a fixed buffer; false when it does not fit. */
static bool cur_to_cstr(coffer_cursor c, char *out, size_t out_size)
{
    if (c.len >= out_size || memchr(c.ptr, '\0', c.len) != NULL) {
        return false;
    }
    memcpy(out, c.ptr, c.len);
    out[c.len] = '\0';
    return true;
}

/* ================================================================================================
 * Authorization header (sigv4.md §2 step 1, errors §4)
 * ============================================================================================== */

/* RFC 7230 tchar, the characters a header name may use. */
static bool is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static coffer_err parse_signed_headers(coffer_cursor v)
{
    char q[SIGV4_ECHO_MAX + 8];
    coffer_cursor rest = v, name;
    size_t count = 0;
    bool more = true;
    while (more) {
        more = cur_split(&rest, ';', &name);
        bool ok = name.len > 0;
        for (size_t i = 0; ok && i < name.len; i++) {
            ok = is_tchar(name.ptr[i]);
        }
        if (!ok) {
            return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                               "Authorization header has an invalid SignedHeaders list: '%s'.",
                               echo(v, q, sizeof(q)));
        }
        if (++count > SIGV4_MAX_SIGNED_HEADERS) {
            return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                               "Authorization header names more than %d SignedHeaders.",
                               SIGV4_MAX_SIGNED_HEADERS);
        }
    }
    return COFFER_OK;
}

/* Credential = <AKID>/<yyyymmdd>/<region>/<service>/<terminator> */
static coffer_err parse_credential(coffer_cursor v, struct sigv4_authorization *a)
{
    char q[SIGV4_ECHO_MAX + 8];
    coffer_cursor rest = v;
    coffer_cursor *parts[5] = {&a->access_key_id, &a->date, &a->region, &a->service, &a->terminator};
    bool ok = true;
    for (size_t i = 0; i < 5 && ok; i++) {
        bool sep = cur_split(&rest, '/', parts[i]);
        ok = parts[i]->len > 0 && (i == 4 ? !sep : sep);
    }
    if (!ok) {
        return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                           "Credential must have exactly 5 slash-delimited elements, e.g. "
                           "keyid/date/region/service/term, got '%s'",
                           echo(v, q, sizeof(q)));
    }
    return COFFER_OK;
}

enum { AUTH_CREDENTIAL, AUTH_SIGNED_HEADERS, AUTH_SIGNATURE, AUTH_NPARAMS };
static const char *const auth_param_names[AUTH_NPARAMS] = {"Credential", "SignedHeaders", "Signature"};

/* One "key=value" component; unknown keys are ignored, repeated known keys rejected. */
static coffer_err parse_component(coffer_cursor comp, coffer_cursor header, coffer_cursor vals[AUTH_NPARAMS],
                                  bool seen[AUTH_NPARAMS])
{
    char q1[SIGV4_ECHO_MAX + 8], q2[SIGV4_ECHO_MAX + 8];
    coffer_cursor value = comp, key;
    if (!cur_split(&value, '=', &key)) {
        return coffer_fail(
            COFFER_ERR_INCOMPLETE_SIGNATURE,
            "'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.",
            echo(comp, q1, sizeof(q1)), echo(header, q2, sizeof(q2)));
    }
    for (int i = 0; i < AUTH_NPARAMS; i++) {
        if (!coffer_cursor_eq_str(key, auth_param_names[i])) {
            continue;
        }
        if (seen[i]) {
            return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                               "Authorization header contains the '%s' parameter more than once.",
                               auth_param_names[i]);
        }
        seen[i] = true;
        vals[i] = cur_trim(value);
    }
    return COFFER_OK;
}

static coffer_err missing_params(const coffer_cursor vals[AUTH_NPARAMS])
{
    /* AWS lists every missing part, Credential first, then Signature, then SignedHeaders. */
    static const int order[AUTH_NPARAMS] = {AUTH_CREDENTIAL, AUTH_SIGNATURE, AUTH_SIGNED_HEADERS};
    char msg[256] = "";
    size_t n = 0;
    for (int k = 0; k < AUTH_NPARAMS; k++) {
        int i = order[k];
        if (vals[i].len == 0) {
            n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%sAuthorization header requires '%s' parameter.",
                                  n ? " " : "", auth_param_names[i]);
        }
    }
    if (n == 0) {
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE, "%s", msg);
}

coffer_err sigv4_parse_authorization(coffer_cursor header, struct sigv4_authorization *out)
{
    char q[SIGV4_ECHO_MAX + 8];
    ENSURE_REF(out);
    coffer_cursor h = cur_trim(header);
    if (h.len == 0 || (h.ptr == NULL)) {
        return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE, "Authorization header is empty.");
    }
    /* "AWS4-HMAC-SHA256" SP components */
    coffer_cursor rest = h, alg;
    const uint8_t *sp = NULL;
    for (size_t i = 0; i < h.len && sp == NULL; i++) {
        sp = is_ws(h.ptr[i]) ? h.ptr + i : NULL;
    }
    TRY(cur_read_bytes(&rest, sp ? (size_t)(sp - h.ptr) : h.len, &alg));
    if (!coffer_cursor_eq_str(alg, SIGV4_ALGORITHM)) {
        return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE, "Unsupported AWS 'algorithm': '%s'.",
                           echo(alg, q, sizeof(q)));
    }
    rest = cur_trim(rest);

    /* components: key=value separated by ',' and optional spaces */
    coffer_cursor vals[AUTH_NPARAMS] = {{NULL, 0}};
    bool seen[AUTH_NPARAMS] = {false};
    bool more = rest.len > 0;
    while (more) {
        coffer_cursor comp;
        more = cur_split(&rest, ',', &comp);
        TRY(parse_component(cur_trim(comp), h, vals, seen));
    }
    TRY(missing_params(vals));

    struct sigv4_authorization a;
    memset(&a, 0, sizeof(a));
    TRY(parse_credential(vals[AUTH_CREDENTIAL], &a));
    TRY(parse_signed_headers(vals[AUTH_SIGNED_HEADERS]));
    a.signed_headers = vals[AUTH_SIGNED_HEADERS];
    a.signature = vals[AUTH_SIGNATURE];
    *out = a;
    return COFFER_OK;
}

/* ================================================================================================
 * Canonical request (sigv4.md §2 step 5)
 * ============================================================================================== */

/* RFC 3986 unreserved: A-Z a-z 0-9 - _ . ~ */
static bool is_unreserved(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static coffer_err uri_encode(coffer_buf *out, coffer_cursor in, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    TRY(coffer_buf_reserve(out, in.len));
    for (size_t i = 0; i < in.len; i++) {
        uint8_t c = in.ptr[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            TRY(coffer_buf_append_u8(out, c));
            continue;
        }
        uint8_t esc[3] = {'%', (uint8_t)hex[c >> 4], (uint8_t)hex[c & 15]};
        TRY(coffer_buf_append(out, esc, sizeof(esc)));
    }
    return COFFER_OK;
}

/* Decodes %XY escapes (a '%' not followed by two hex digits stays literal), then re-encodes. */
static coffer_err query_normalize(coffer_buf *out, coffer_cursor in)
{
    coffer_err rc = COFFER_OK;
    coffer_buf raw = COFFER_BUF_INIT;
    TRY_OUT(coffer_buf_reserve(&raw, in.len));
    for (size_t i = 0; i < in.len; i++) {
        uint8_t c = in.ptr[i];
        if (c == '%' && i + 2 < in.len && coffer_hex_digit(in.ptr[i + 1]) >= 0 &&
            coffer_hex_digit(in.ptr[i + 2]) >= 0) {
            c = (uint8_t)(coffer_hex_digit(in.ptr[i + 1]) << 4 | coffer_hex_digit(in.ptr[i + 2]));
            i += 2;
        }
        TRY_OUT(coffer_buf_append_u8(&raw, c));
    }
    TRY_OUT(uri_encode(out, coffer_buf_cursor(&raw), false));
out:
    coffer_buf_free(&raw);
    return rc;
}

/* Path: optionally normalised (dot segments and empty segments removed), each segment encoded. */
static coffer_err canonical_uri(const struct sigv4_request *req, coffer_buf *out)
{
    coffer_cursor path = coffer_cursor_from_str(req->path && req->path[0] ? req->path : "/");
    if (req->raw_path) {
        return uri_encode(out, path, true);
    }
    if (path.len == 1 && path.ptr[0] == '/') {
        return coffer_buf_append_u8(out, '/'); /* every JSON and Query request */
    }
    coffer_err rc = COFFER_OK;
    size_t max_segs = path.len / 2 + 1, n = 0;
    coffer_cursor *segs = calloc(max_segs, sizeof(*segs));
    if (segs == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_cursor rest = path, seg;
    bool more = true;
    while (more) {
        more = cur_split(&rest, '/', &seg);
        if (seg.len == 0 || coffer_cursor_eq_str(seg, ".")) {
            continue;
        }
        if (coffer_cursor_eq_str(seg, "..")) {
            n -= n > 0;
            continue;
        }
        segs[n++] = seg; /* a segment is >= 1 byte plus a '/', so n < max_segs */
    }
    for (size_t i = 0; i < n; i++) {
        TRY_OUT(coffer_buf_append_u8(out, '/'));
        TRY_OUT(uri_encode(out, segs[i], false));
    }
    if (n == 0 || path.ptr[path.len - 1] == '/') {
        TRY_OUT(coffer_buf_append_u8(out, '/'));
    }
out:
    free(segs);
    return rc;
}

struct query_param {
    size_t name_off, name_len, value_off, value_len; /* into the encoded buffer */
    const uint8_t *base;                             /* set once the buffer stops moving */
};

static int query_param_cmp(const void *pa, const void *pb)
{
    const struct query_param *a = pa, *b = pb;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = n ? memcmp(a->base + a->name_off, b->base + b->name_off, n) : 0;
    if (c != 0 || a->name_len != b->name_len) {
        return c != 0 ? c : (a->name_len < b->name_len ? -1 : 1);
    }
    n = a->value_len < b->value_len ? a->value_len : b->value_len;
    c = n ? memcmp(a->base + a->value_off, b->base + b->value_off, n) : 0;
    if (c != 0 || a->value_len == b->value_len) {
        return c;
    }
    return a->value_len < b->value_len ? -1 : 1;
}

/* name=value pairs, each RFC 3986 encoded, sorted by name then value, joined with '&'. */
static coffer_err canonical_query(const struct sigv4_request *req, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf enc = COFFER_BUF_INIT;
    struct query_param *params = NULL;
    size_t n = 0, cap = 0;
    coffer_cursor rest = coffer_cursor_from_str(req->query ? req->query : ""), pair;
    bool more = rest.len > 0;
    while (more) {
        more = cur_split(&rest, '&', &pair);
        if (pair.len == 0) {
            continue;
        }
        if (n == SIGV4_MAX_QUERY_PARAMS) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "too many query parameters");
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct query_param *grown = realloc(params, cap * sizeof(*params));
            if (grown == NULL) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            params = grown;
        }
        coffer_cursor value = pair, name;
        cur_split(&value, '=', &name);
        struct query_param *p = &params[n++];
        p->name_off = enc.len;
        TRY_OUT(query_normalize(&enc, name));
        p->name_len = enc.len - p->name_off;
        p->value_off = enc.len;
        TRY_OUT(query_normalize(&enc, value));
        p->value_len = enc.len - p->value_off;
    }
    /* Pairs that are all empty ("=", "a&=") leave enc without storage: no offset on NULL. */
    const uint8_t *base = enc.data != NULL ? enc.data : (const uint8_t *)"";
    for (size_t i = 0; i < n; i++) {
        params[i].base = base;
    }
    if (n > 1) {
        qsort(params, n, sizeof(*params), query_param_cmp);
    }
    for (size_t i = 0; i < n; i++) {
        TRY_OUT(coffer_buf_append(out, "&", i > 0));
        TRY_OUT(coffer_buf_append(out, base + params[i].name_off, params[i].name_len));
        TRY_OUT(coffer_buf_append_u8(out, '='));
        TRY_OUT(coffer_buf_append(out, base + params[i].value_off, params[i].value_len));
    }
out:
    free(params);
    coffer_buf_free(&enc);
    return rc;
}

/* Value trimmed, runs of spaces and tabs collapsed to one space. */
static coffer_err append_header_value(coffer_buf *out, const char *value)
{
    coffer_cursor v = cur_trim(coffer_cursor_from_str(value ? value : ""));
    /* Written in place after one reserve: this runs over every signed header of every request,
     * and the output is never longer than the value. */
    TRY(coffer_buf_reserve(out, v.len));
    uint8_t *w = out->data + out->len;
    bool in_ws = false;
    for (size_t i = 0; i < v.len; i++) {
        uint8_t c = v.ptr[i];
        bool ws = is_ws(c) || c == '\r' || c == '\n';
        if (ws && in_ws) {
            continue;
        }
        in_ws = ws;
        *w++ = ws ? ' ' : c;
    }
    out->len = (size_t)(w - out->data);
    return COFFER_OK;
}

/* One "name:v1,v2\n" line for a signed header; all occurrences in arrival order. */
static coffer_err canonical_header_line(const struct sigv4_request *req, coffer_cursor name, coffer_buf *out)
{
    char q[SIGV4_ECHO_MAX + 8];
    TRY(coffer_buf_reserve(out, name.len + 1));
    uint8_t *w = out->data + out->len;
    for (size_t i = 0; i < name.len; i++) {
        uint8_t c = name.ptr[i];
        w[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    w[name.len] = ':';
    out->len += name.len + 1;
    size_t found = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name == NULL || !cur_ieq_str(name, req->headers[i].name)) {
            continue;
        }
        TRY(coffer_buf_append(out, ",", found > 0));
        TRY(append_header_value(out, req->headers[i].value));
        found++;
    }
    if (found == 0) {
        return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                           "'%s' is named as a SignedHeader, but it does not exist in the HTTP request.",
                           echo(name, q, sizeof(q)));
    }
    return coffer_buf_append_u8(out, '\n');
}

/* Index of the only header named `name`, -1 when absent; duplicates are an error. */
static coffer_err find_single_header(const struct sigv4_request *req, const char *name, const char **value)
{
    *value = NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name == NULL || strcasecmp(req->headers[i].name, name) != 0) {
            continue;
        }
        if (*value != NULL) {
            return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE, "The request has more than one '%s' header.",
                               name);
        }
        *value = req->headers[i].value ? req->headers[i].value : "";
    }
    return COFFER_OK;
}

static coffer_err hashed_payload(const struct sigv4_request *req, coffer_buf *out)
{
    const char *given = NULL;
    TRY(find_single_header(req, "x-amz-content-sha256", &given));
    if (given != NULL) {
        return coffer_buf_append_cur(out, cur_trim(coffer_cursor_from_str(given)));
    }
    uint8_t d[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    crypto_sha256(req->body.len ? req->body.ptr : (const uint8_t *)"", req->body.len, d);
    coffer_hex_encode(d, sizeof(d), hex);
    return coffer_buf_append(out, hex, 2 * CRYPTO_SHA256_LEN);
}

coffer_err sigv4_canonical_request(const struct sigv4_request *req, coffer_cursor signed_headers,
                                   coffer_buf *out)
{
    ENSURE_REF(req);
    ENSURE_REF(out);
    ENSURE(req->method != NULL && (req->headers != NULL || req->n_headers == 0), COFFER_ERR_USAGE);
    TRY(parse_signed_headers(signed_headers));
    TRY(coffer_buf_append_str(out, req->method));
    TRY(coffer_buf_append_u8(out, '\n'));
    TRY(canonical_uri(req, out));
    TRY(coffer_buf_append_u8(out, '\n'));
    TRY(canonical_query(req, out));
    TRY(coffer_buf_append_u8(out, '\n'));
    coffer_cursor rest = signed_headers, name;
    bool more = true;
    while (more) {
        more = cur_split(&rest, ';', &name);
        TRY(canonical_header_line(req, name, out));
    }
    TRY(coffer_buf_append_u8(out, '\n'));
    TRY(coffer_buf_reserve(out, signed_headers.len + 1));
    uint8_t *w = out->data + out->len;
    for (size_t i = 0; i < signed_headers.len; i++) {
        uint8_t c = signed_headers.ptr[i];
        w[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    w[signed_headers.len] = '\n';
    out->len += signed_headers.len + 1;
    return hashed_payload(req, out);
}

/* ================================================================================================
 * String to sign, signing key, signature (sigv4.md §2 steps 6-8)
 * ============================================================================================== */

coffer_err sigv4_string_to_sign(coffer_cursor canonical_request, const char *amz_date, const char *scope,
                                coffer_buf *out)
{
    ENSURE_REF(amz_date);
    ENSURE_REF(scope);
    ENSURE_REF(out);
    uint8_t d[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    crypto_sha256(canonical_request.len ? canonical_request.ptr : (const uint8_t *)"", canonical_request.len,
                  d);
    coffer_hex_encode(d, sizeof(d), hex);
    TRY(coffer_buf_append_str(out, SIGV4_ALGORITHM "\n"));
    TRY(coffer_buf_append_str(out, amz_date));
    TRY(coffer_buf_append_u8(out, '\n'));
    TRY(coffer_buf_append_str(out, scope));
    TRY(coffer_buf_append_u8(out, '\n'));
    return coffer_buf_append(out, hex, 2 * CRYPTO_SHA256_LEN);
}

coffer_err sigv4_signing_key(coffer_cursor secret, const char *date, const char *region, const char *service,
                             uint8_t out[CRYPTO_SHA256_LEN])
{
    ENSURE(date != NULL && region != NULL && service != NULL && out != NULL, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    coffer_buf k = COFFER_SECRET_BUF_INIT;
    uint8_t a[CRYPTO_SHA256_LEN], b[CRYPTO_SHA256_LEN];
    TRY_OUT(coffer_buf_append_str(&k, "AWS4"));
    TRY_OUT(coffer_buf_append_cur(&k, secret));
    TRY_OUT(crypto_hmac(CRYPTO_SHA256, coffer_buf_cursor(&k), coffer_cursor_from_str(date), a));
    TRY_OUT(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(a, sizeof(a)), coffer_cursor_from_str(region), b));
    TRY_OUT(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(b, sizeof(b)), coffer_cursor_from_str(service), a));
    TRY_OUT(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(a, sizeof(a)),
                        coffer_cursor_from_str(SIGV4_TERMINATOR), out));
out:
    coffer_secure_zero(a, sizeof(a));
    coffer_secure_zero(b, sizeof(b));
    coffer_buf_free(&k);
    return rc;
}

/*
 * Signing-key cache. Deriving kSigning costs four HMACs; at >20k requests/s most requests come
 * from a few keys on the same day, so the result is kept in a small direct-mapped table in locked
 * memory. An entry holds the whole tuple it was derived from (access key id, secret, date,
 * region, service) and is used only when every part of it is equal to the request's, so a
 * rotated secret or a different scope can never hit a stale entry. Comparing the tuple itself
 * costs a few dozen instructions where hashing it cost a SHA-256 per request; the secret is
 * compared in constant time and lives here as it does in the credential cache the lookup copies
 * it from: in locked memory, wiped by sigv4_cache_clear or when the entry is replaced. Tuples
 * with a part longer than the entry's fields are derived every time.
 */
#define SIGV4_CACHE_AKID_MAX 64
#define SIGV4_CACHE_SECRET_MAX 64
#define SIGV4_CACHE_SCOPE_MAX 32

struct sigv4_cache_slot {
    uint8_t key[CRYPTO_SHA256_LEN]; /* kSigning */
    uint8_t secret[SIGV4_CACHE_SECRET_MAX];
    char akid[SIGV4_CACHE_AKID_MAX];
    char date[SIGV4_SCOPE_DATE_LEN];
    char region[SIGV4_CACHE_SCOPE_MAX];
    char service[SIGV4_CACHE_SCOPE_MAX];
    uint8_t akid_len, secret_len, region_len, service_len;
    bool used;
};

/* The tuple of one request, as borrowed views. */
struct sigv4_cache_tuple {
    coffer_cursor akid, secret, region, service;
    const char *date; /* SIGV4_SCOPE_DATE_LEN chars */
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sigv4_cache_slot *cache_slots; /* SIGV4_CACHE_SLOTS entries, locked, guarded by cache_mu */

void sigv4_cache_clear(void)
{
    pthread_mutex_lock(&cache_mu);
    if (cache_slots != NULL) {
        coffer_secure_zero(cache_slots, SIGV4_CACHE_SLOTS * sizeof(*cache_slots));
    }
    pthread_mutex_unlock(&cache_mu);
}

static bool cache_fits(const struct sigv4_cache_tuple *t)
{
    return t->akid.len <= SIGV4_CACHE_AKID_MAX && t->secret.len <= SIGV4_CACHE_SECRET_MAX &&
           t->region.len <= SIGV4_CACHE_SCOPE_MAX && t->service.len <= SIGV4_CACHE_SCOPE_MAX;
}

/* FNV-1a over the access key id and the scope: it only picks the slot, equality is checked. */
static size_t cache_slot_of(const struct sigv4_cache_tuple *t)
{
    uint32_t h = 2166136261u;
    const coffer_cursor parts[3] = {t->akid, t->region, t->service};
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < parts[i].len; j++) {
            h = (h ^ parts[i].ptr[j]) * 16777619u;
        }
    }
    return h % SIGV4_CACHE_SLOTS;
}

static bool cache_field_eq(const void *field, size_t field_len, coffer_cursor c)
{
    return field_len == c.len && (c.len == 0 || memcmp(field, c.ptr, c.len) == 0);
}

static bool cache_slot_matches(const struct sigv4_cache_slot *s, const struct sigv4_cache_tuple *t)
{
    /* Lengths are not secret; the secret's bytes are compared in constant time. */
    return s->used && memcmp(s->date, t->date, SIGV4_SCOPE_DATE_LEN) == 0 &&
           cache_field_eq(s->akid, s->akid_len, t->akid) &&
           cache_field_eq(s->region, s->region_len, t->region) &&
           cache_field_eq(s->service, s->service_len, t->service) && s->secret_len == t->secret.len &&
           (t->secret.len == 0 || crypto_memcmp(s->secret, t->secret.ptr, t->secret.len) == 0);
}

static void cache_slot_fill(struct sigv4_cache_slot *s, const struct sigv4_cache_tuple *t,
                            const uint8_t key[CRYPTO_SHA256_LEN])
{
    coffer_secure_zero(s, sizeof(*s));
    memcpy(s->key, key, CRYPTO_SHA256_LEN);
    memcpy(s->date, t->date, SIGV4_SCOPE_DATE_LEN);
    const struct {
        void *dst;
        uint8_t *len;
        coffer_cursor src;
    } parts[4] = {{s->akid, &s->akid_len, t->akid},
                  {s->secret, &s->secret_len, t->secret},
                  {s->region, &s->region_len, t->region},
                  {s->service, &s->service_len, t->service}};
    for (size_t i = 0; i < 4; i++) {
        if (parts[i].src.len > 0) {
            memcpy(parts[i].dst, parts[i].src.ptr, parts[i].src.len);
        }
        *parts[i].len = (uint8_t)parts[i].src.len; /* cache_fits bounds every part below 256 */
    }
    s->used = true;
}

static coffer_err cached_signing_key(coffer_cursor akid, coffer_cursor secret, const char *date,
                                     const char *region, const char *service, uint8_t out[CRYPTO_SHA256_LEN])
{
    struct sigv4_cache_tuple t = {akid, secret, coffer_cursor_from_str(region),
                                  coffer_cursor_from_str(service), date};
    if (!cache_fits(&t)) {
        return sigv4_signing_key(secret, date, region, service, out);
    }
    size_t slot = cache_slot_of(&t);
    pthread_mutex_lock(&cache_mu);
    if (cache_slots == NULL) {
        cache_slots = coffer_secret_alloc(SIGV4_CACHE_SLOTS * sizeof(*cache_slots));
    }
    struct sigv4_cache_slot *s = cache_slots ? &cache_slots[slot] : NULL;
    bool hit = s != NULL && cache_slot_matches(s, &t);
    if (hit) {
        memcpy(out, s->key, CRYPTO_SHA256_LEN);
    }
    pthread_mutex_unlock(&cache_mu);
    if (hit) {
        return COFFER_OK;
    }

    TRY(sigv4_signing_key(secret, date, region, service, out));
    pthread_mutex_lock(&cache_mu);
    if (s != NULL) {
        cache_slot_fill(s, &t, out);
    }
    pthread_mutex_unlock(&cache_mu);
    return COFFER_OK;
}

/* Lowercase hex signature of the request under the given scope; `hex` gets 64 chars + NUL. */
static coffer_err compute_signature(const struct sigv4_request *req, coffer_cursor signed_headers,
                                    coffer_cursor akid, coffer_cursor secret, const char *amz_date,
                                    const char *region, const char *service, char hex[SIGV4_SIG_HEX_LEN + 1])
{
    coffer_err rc = COFFER_OK;
    coffer_buf creq = COFFER_BUF_INIT, sts = COFFER_BUF_INIT;
    uint8_t key[CRYPTO_SHA256_LEN], mac[CRYPTO_SHA256_LEN];
    char date[SIGV4_SCOPE_DATE_LEN + 1], scope[SIGV4_SCOPE_DATE_LEN + 2 * SIGV4_MAX_SCOPE_PART + 32];
    memcpy(date, amz_date, SIGV4_SCOPE_DATE_LEN);
    date[SIGV4_SCOPE_DATE_LEN] = '\0';
    /* "<date>/<region>/<service>/aws4_request", assembled without a format on every request. */
    size_t region_len = strlen(region), service_len = strlen(service);
    if (region_len > SIGV4_MAX_SCOPE_PART || service_len > SIGV4_MAX_SCOPE_PART) {
        FAIL_OUT(COFFER_ERR_USAGE, "region or service name too long");
    }
    char *w = scope;
    memcpy(w, date, SIGV4_SCOPE_DATE_LEN);
    w += SIGV4_SCOPE_DATE_LEN;
    *w++ = '/';
    memcpy(w, region, region_len);
    w += region_len;
    *w++ = '/';
    memcpy(w, service, service_len);
    w += service_len;
    memcpy(w, "/" SIGV4_TERMINATOR, sizeof("/" SIGV4_TERMINATOR)); /* with its NUL */
    /* One allocation each for what a typical request needs, rather than several growths. */
    TRY_OUT(coffer_buf_reserve(&creq, SIGV4_CREQ_RESERVE));
    TRY_OUT(coffer_buf_reserve(&sts, SIGV4_STS_RESERVE));
    TRY_OUT(sigv4_canonical_request(req, signed_headers, &creq));
    TRY_OUT(sigv4_string_to_sign(coffer_buf_cursor(&creq), amz_date, scope, &sts));
    TRY_OUT(cached_signing_key(akid, secret, date, region, service, key));
    TRY_OUT(crypto_hmac_sha256_reuse(coffer_cursor_from(key, sizeof(key)), coffer_buf_cursor(&sts), mac));
    coffer_hex_encode(mac, sizeof(mac), hex);
out:
    coffer_secure_zero(key, sizeof(key));
    coffer_buf_free(&creq);
    coffer_buf_free(&sts);
    return rc;
}

/* ================================================================================================
 * Verification (server)
 * ============================================================================================== */

void sigv4_identity_clean(struct sigv4_identity *id)
{
    if (id == NULL) {
        return;
    }
    coffer_buf_free(&id->secret);
    memset(id, 0, sizeof(*id));
    id->secret.secret = true;
}

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static bool parse_digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

/* RFC 1123 "Sun, 30 Aug 2015 12:36:00 GMT" -> epoch seconds. */
static bool parse_http_date(coffer_cursor c, int64_t *epoch_s)
{
    char s[SIGV4_HTTP_DATE_LEN + 1];
    if (c.len != SIGV4_HTTP_DATE_LEN || !cur_to_cstr(c, s, sizeof(s))) {
        return false;
    }
    if (s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' ||
        s[22] != ':' || strcmp(s + 25, " GMT") != 0) {
        return false;
    }
    int day, year, hh, mm, ss, mon = -1;
    for (int i = 0; i < 12; i++) {
        mon = strncmp(s + 8, month_names[i], 3) == 0 ? i : mon;
    }
    if (mon < 0 || !parse_digits(s + 5, 2, &day) || !parse_digits(s + 12, 4, &year) ||
        !parse_digits(s + 17, 2, &hh) || !parse_digits(s + 20, 2, &mm) || !parse_digits(s + 23, 2, &ss)) {
        return false;
    }
    if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
        return false;
    }
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    *epoch_s = (int64_t)timegm(&tm);
    return true;
}

/* X-Amz-Date, else Date (RFC 1123), as "YYYYMMDDTHHMMSSZ" and epoch seconds. */
static coffer_err request_date(const struct sigv4_request *req, char amz_date[SIGV4_AMZ_DATE_LEN + 1],
                               int64_t *t)
{
    char q[SIGV4_ECHO_MAX + 8];
    const char *xdate = NULL, *date = NULL;
    TRY(find_single_header(req, "x-amz-date", &xdate));
    if (xdate != NULL) {
        coffer_cursor v = cur_trim(coffer_cursor_from_str(xdate));
        if (coffer_time_parse_amz((const char *)v.ptr, v.len, t) != 0 || !cur_to_cstr(v, amz_date, 17)) {
            return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                               "Date must be in ISO-8601 'basic format'. Got '%s'. See "
                               "http://en.wikipedia.org/wiki/ISO_8601",
                               echo(v, q, sizeof(q)));
        }
        return COFFER_OK;
    }
    TRY(find_single_header(req, "date", &date));
    if (date == NULL) {
        return coffer_fail(
            COFFER_ERR_INCOMPLETE_SIGNATURE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
    }
    coffer_cursor v = cur_trim(coffer_cursor_from_str(date));
    if (!parse_http_date(v, t)) {
        return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE, "Date header is not an RFC 1123 date: '%s'.",
                           echo(v, q, sizeof(q)));
    }
    coffer_time_amz(*t, amz_date, SIGV4_AMZ_DATE_LEN + 1);
    return COFFER_OK;
}

/* sigv4.md §3: the window is opts->max_skew_s, reported in minutes as AWS does. */
static coffer_err check_skew(int64_t t, const char *amz_date, const struct sigv4_verify_opts *opts)
{
    int64_t skew = opts->max_skew_s > 0 ? opts->max_skew_s : SIGV4_DEFAULT_SKEW_S;
    char now[SIGV4_AMZ_DATE_LEN + 1], bound[SIGV4_AMZ_DATE_LEN + 1];
    if (t >= opts->now_s - skew && t <= opts->now_s + skew) {
        return COFFER_OK; /* the clock is formatted only for the messages below */
    }
    coffer_time_amz(opts->now_s, now, sizeof(now));
    if (t < opts->now_s - skew) {
        coffer_time_amz(opts->now_s - skew, bound, sizeof(bound));
        return coffer_fail(COFFER_ERR_INVALID_SIGNATURE,
                           "Signature expired: %s is now earlier than %s (%s - %d min.)", amz_date, bound,
                           now, (int)(skew / 60));
    }
    if (t > opts->now_s + skew) {
        coffer_time_amz(opts->now_s + skew, bound, sizeof(bound));
        return coffer_fail(COFFER_ERR_INVALID_SIGNATURE,
                           "Signature not yet current: %s is still later than %s (%s + %d min.)", amz_date,
                           bound, now, (int)(skew / 60));
    }
    return COFFER_OK;
}

/* sigv4.md §2 steps 2-3: scope date, region, service, terminator. */
static coffer_err check_scope(const struct sigv4_authorization *a, const char *amz_date,
                              const struct sigv4_verify_opts *opts)
{
    char q[SIGV4_ECHO_MAX + 8];
    if (a->date.len != SIGV4_SCOPE_DATE_LEN || memcmp(a->date.ptr, amz_date, SIGV4_SCOPE_DATE_LEN) != 0) {
        return coffer_fail(
            COFFER_ERR_INVALID_SIGNATURE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
            "HTTP: '%s' != '%.8s', from '%s'.",
            echo(a->date, q, sizeof(q)), amz_date, amz_date);
    }
    if (!coffer_cursor_eq_str(a->region, opts->region)) {
        return coffer_fail(COFFER_ERR_INVALID_SIGNATURE, "Credential should be scoped to a valid region. ");
    }
    if (!coffer_cursor_eq_str(a->service, opts->service)) {
        return coffer_fail(COFFER_ERR_INVALID_SIGNATURE,
                           "Credential should be scoped to correct service: '%s'. ", opts->service);
    }
    if (!coffer_cursor_eq_str(a->terminator, SIGV4_TERMINATOR)) {
        return coffer_fail(COFFER_ERR_INVALID_SIGNATURE,
                           "Credential should be scoped with a valid terminator: '" SIGV4_TERMINATOR
                           "', not '%s'. ",
                           echo(a->terminator, q, sizeof(q)));
    }
    return COFFER_OK;
}

static coffer_err check_host_signed(coffer_cursor signed_headers)
{
    coffer_cursor rest = signed_headers, name;
    bool more = true;
    while (more) {
        more = cur_split(&rest, ';', &name);
        if (cur_ieq_str(name, "host")) {
            return COFFER_OK;
        }
    }
    return coffer_fail(COFFER_ERR_INCOMPLETE_SIGNATURE,
                       "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
}

/*
 * When the client sent X-Amz-Content-Sha256 it signed that value instead of hashing the body, so
 * the header must be checked against the body we received: otherwise a body could be swapped
 * under a valid signature. UNSIGNED-PAYLOAD and streaming forms are refused for the same reason.
 */
static coffer_err check_content_sha256(const struct sigv4_request *req)
{
    const char *given = NULL;
    TRY(find_single_header(req, "x-amz-content-sha256", &given));
    if (given == NULL) {
        return COFFER_OK;
    }
    uint8_t d[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    crypto_sha256(req->body.len ? req->body.ptr : (const uint8_t *)"", req->body.len, d);
    coffer_hex_encode(d, sizeof(d), hex);
    if (!coffer_cursor_eq_str(cur_trim(coffer_cursor_from_str(given)), hex)) {
        return coffer_fail(COFFER_ERR_INVALID_SIGNATURE,
                           "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    return COFFER_OK;
}

/* Everything that can be checked before the credential store is consulted. */
static coffer_err verify_request_shape(const struct sigv4_request *req, const struct sigv4_verify_opts *opts,
                                       struct sigv4_authorization *auth,
                                       char amz_date[SIGV4_AMZ_DATE_LEN + 1])
{
    const char *authz = NULL;
    TRY(find_single_header(req, "authorization", &authz));
    if (authz == NULL) {
        return coffer_fail(COFFER_ERR_MISSING_AUTH, "Missing Authentication Token");
    }
    TRY(sigv4_parse_authorization(coffer_cursor_from_str(authz), auth));
    int64_t t = 0;
    TRY(request_date(req, amz_date, &t));
    TRY(check_scope(auth, amz_date, opts));
    TRY(check_skew(t, amz_date, opts));
    TRY(check_host_signed(auth->signed_headers));
    return check_content_sha256(req);
}

coffer_err sigv4_verify(const struct sigv4_request *req, const struct sigv4_verify_opts *opts,
                        sigv4_lookup_fn lookup, void *lookup_ctx, struct sigv4_identity *who)
{
    ENSURE(req != NULL && opts != NULL && lookup != NULL && who != NULL, COFFER_ERR_USAGE);
    ENSURE(opts->region != NULL && opts->service != NULL, COFFER_ERR_USAGE);
    ENSURE(req->method != NULL && (req->headers != NULL || req->n_headers == 0), COFFER_ERR_USAGE);
    ENSURE(strlen(opts->region) <= SIGV4_MAX_SCOPE_PART && strlen(opts->service) <= SIGV4_MAX_SCOPE_PART,
           COFFER_ERR_USAGE);

    coffer_err rc = COFFER_OK;
    struct sigv4_authorization auth;
    struct sigv4_identity id;
    char amz_date[SIGV4_AMZ_DATE_LEN + 1] = "", expected[SIGV4_SIG_HEX_LEN + 1];
    char *token = NULL;
    memset(&id, 0, sizeof(id));
    id.secret.secret = true;

    TRY_OUT(verify_request_shape(req, opts, &auth, amz_date));
    const char *token_hdr = NULL;
    TRY_OUT(find_single_header(req, "x-amz-security-token", &token_hdr));
    if (token_hdr != NULL) {
        coffer_cursor tv = cur_trim(coffer_cursor_from_str(token_hdr));
        token = strndup((const char *)tv.ptr, tv.len);
        if (token == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    TRY_OUT(lookup(lookup_ctx, auth.access_key_id, token, &id));
    if (id.expires_at != 0 && id.expires_at <= opts->now_s) {
        FAIL_OUT(COFFER_ERR_EXPIRED_TOKEN, "%s", coffer_err_default_message(COFFER_ERR_EXPIRED_TOKEN));
    }
    TRY_OUT(compute_signature(req, auth.signed_headers, auth.access_key_id, coffer_buf_cursor(&id.secret),
                              amz_date, opts->region, opts->service, expected));
    /* Constant time so that response timing does not reveal how many leading characters matched. */
    if (auth.signature.len != SIGV4_SIG_HEX_LEN ||
        crypto_memcmp(expected, auth.signature.ptr, SIGV4_SIG_HEX_LEN) != 0) {
        FAIL_OUT(COFFER_ERR_INVALID_SIGNATURE, "%s",
                 coffer_err_default_message(COFFER_ERR_INVALID_SIGNATURE));
    }
    *who = id;
    memset(&id, 0, sizeof(id)); /* ownership of the secret moved to *who */
out:
    coffer_secure_zero(expected, sizeof(expected));
    free(token);
    if (rc != COFFER_OK) {
        sigv4_identity_clean(&id);
    }
    return rc;
}

/* ================================================================================================
 * Signing (clients)
 * ============================================================================================== */

coffer_err sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *creds,
                      const char *region, const char *service, const char *amz_date,
                      const char *signed_headers, coffer_buf *authorization)
{
    ENSURE(req != NULL && creds != NULL && region != NULL && service != NULL && amz_date != NULL &&
               signed_headers != NULL && authorization != NULL,
           COFFER_ERR_USAGE);
    ENSURE(creds->access_key_id != NULL && creds->secret_access_key != NULL, COFFER_ERR_USAGE);
    int64_t t = 0;
    if (coffer_time_parse_amz(amz_date, strlen(amz_date), &t) != 0) {
        return coffer_fail(COFFER_ERR_USAGE, "amz_date must be YYYYMMDDTHHMMSSZ");
    }
    ENSURE(strlen(region) <= SIGV4_MAX_SCOPE_PART && strlen(service) <= SIGV4_MAX_SCOPE_PART,
           COFFER_ERR_USAGE);
    char sig[SIGV4_SIG_HEX_LEN + 1];
    TRY(compute_signature(req, coffer_cursor_from_str(signed_headers),
                          coffer_cursor_from_str(creds->access_key_id),
                          coffer_cursor_from_str(creds->secret_access_key), amz_date, region, service, sig));
    return coffer_buf_printf(authorization,
                             SIGV4_ALGORITHM " Credential=%s/%.8s/%s/%s/" SIGV4_TERMINATOR
                                             ", SignedHeaders=%s, Signature=%s",
                             creds->access_key_id, amz_date, region, service, signed_headers, sig);
}
