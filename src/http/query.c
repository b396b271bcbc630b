/*
 * The AWS Query protocol: the form reader and the XML writer side by side (see query.h), plus
 * the one table that maps internal errors to Query error codes.
 */
#include "http/query.h"

#include <stdio.h>
#include <string.h>

#include "common/codec.h"

/* ---------------------------------------------------------------------------------------------
 * Form reader (application/x-www-form-urlencoded, WHATWG URL §5.1)
 * ------------------------------------------------------------------------------------------- */

/* Decodes one name or value into `out` (reset first); `max` bounds the decoded length. */
static coffer_err form_decode(coffer_cursor in, size_t max, coffer_buf *out)
{
    coffer_buf_reset(out);
    coffer_cursor c = in;
    while (c.len > 0) {
        uint8_t ch;
        TRY(cur_read_u8(&c, &ch));
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            uint8_t h[2];
            if (cur_copy_bytes(&c, h, 2) != COFFER_OK || coffer_hex_digit(h[0]) < 0 ||
                coffer_hex_digit(h[1]) < 0) {
                return coffer_fail(COFFER_ERR_VALIDATION, "%s",
                                   "Invalid percent-encoding in the request body.");
            }
            ch = (uint8_t)(coffer_hex_digit(h[0]) << 4 | coffer_hex_digit(h[1]));
        }
        if (ch == '\0') {
            return coffer_fail(COFFER_ERR_VALIDATION, "%s", "Request parameters must not contain NUL.");
        }
        if (out->len >= max) {
            return coffer_fail(COFFER_ERR_VALIDATION, "Request parameter longer than %zu bytes.", max);
        }
        TRY(coffer_buf_append_u8(out, ch));
    }
    return COFFER_OK;
}

static bool name_is_printable(const coffer_buf *b)
{
    if (b->len == 0) {
        return false;
    }
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] <= 0x20 || b->data[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Splits `c` at the first `sep`: *head is before it, c is after it (or empty). */
static coffer_cursor split_at(coffer_cursor *c, uint8_t sep, bool *found)
{
    const uint8_t *p = c->len ? memchr(c->ptr, sep, c->len) : NULL;
    coffer_cursor head = *c;
    *found = p != NULL;
    if (p == NULL) {
        c->ptr += c->len;
        c->len = 0;
        return head;
    }
    head.len = (size_t)(p - c->ptr);
    c->ptr = p + 1;
    c->len -= head.len + 1;
    return head;
}

coffer_err query_form_parse(coffer_cursor body, json_t **out)
{
    ENSURE_REF(out);
    coffer_err rc = COFFER_OK;
    /* values may be secrets: a secret buffer is wiped when it grows and when it is freed */
    coffer_buf name = COFFER_BUF_INIT, value = COFFER_SECRET_BUF_INIT;
    json_t *obj = json_object();
    size_t n = 0;
    if (obj == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_cursor rest = body;
    while (rest.len > 0) {
        bool amp, eq;
        coffer_cursor pair = split_at(&rest, '&', &amp);
        if (pair.len == 0) {
            continue; /* "a=1&&b=2" */
        }
        if (++n > QUERY_MAX_PARAMS) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "More than %d request parameters.", QUERY_MAX_PARAMS);
        }
        coffer_cursor k = split_at(&pair, '=', &eq);
        TRY_OUT(form_decode(k, QUERY_MAX_NAME, &name));
        TRY_OUT(form_decode(pair, QUERY_MAX_VALUE, &value));
        if (!name_is_printable(&name)) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "%s", "Invalid request parameter name.");
        }
        TRY_OUT(coffer_buf_nul_terminate(&name));
        const char *key = (const char *)name.data;
        if (json_object_get(obj, key) != NULL) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "Request parameter %s is given more than once.", key);
        }
        json_t *s = json_stringn(value.len ? (const char *)value.data : "", value.len);
        if (s == NULL) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "Request parameter %s is not valid UTF-8.", key);
        }
        if (json_object_set_new(obj, key, s) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    *out = obj;
    obj = NULL;
out:
    json_decref(obj);
    coffer_buf_free(&name);
    coffer_buf_free(&value);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * XML writer
 * ------------------------------------------------------------------------------------------- */

coffer_err query_xml_escape(const char *s, size_t len, coffer_buf *out)
{
    ENSURE(s != NULL && out != NULL, COFFER_ERR_USAGE);
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = (uint8_t)s[i];
        const char *rep = NULL;
        char num[8];
        switch (ch) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            if (ch < 0x20) {
                /* XML 1.0 admits only tab, LF and CR among controls; others become U+FFFD. */
                if (ch == '\t' || ch == '\n' || ch == '\r') {
                    snprintf(num, sizeof(num), "&#x%X;", ch);
                    rep = num;
                } else {
                    rep = "\xEF\xBF\xBD";
                }
            }
            break;
        }
        if (rep != NULL) {
            TRY(coffer_buf_append_str(out, rep));
        } else {
            TRY(coffer_buf_append_u8(out, ch));
        }
    }
    return COFFER_OK;
}

static coffer_err xml_value(const json_t *v, coffer_buf *out, int depth);

static coffer_err xml_element(const char *name, const json_t *v, coffer_buf *out, int depth)
{
    if (json_is_null(v)) {
        return COFFER_OK;
    }
    TRY(coffer_buf_printf(out, "<%s>", name));
    TRY(xml_value(v, out, depth + 1));
    TRY(coffer_buf_printf(out, "</%s>", name));
    return COFFER_OK;
}

static coffer_err xml_value(const json_t *v, coffer_buf *out, int depth)
{
    if (depth > QUERY_MAX_XML_DEPTH) {
        return coffer_fail(COFFER_ERR_INTERNAL, "response nested too deeply");
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member)
        {
            TRY(xml_element(key, member, out, depth));
        }
        return COFFER_OK;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            TRY(xml_element("member", item, out, depth));
        }
        return COFFER_OK;
    }
    case JSON_STRING:
        return query_xml_escape(json_string_value(v), json_string_length(v), out);
    case JSON_INTEGER:
        return coffer_buf_printf(out, "%lld", (long long)json_integer_value(v));
    case JSON_REAL:
        return coffer_buf_printf(out, "%.17g", json_real_value(v));
    case JSON_TRUE:
        return coffer_buf_append_str(out, "true");
    case JSON_FALSE:
        return coffer_buf_append_str(out, "false");
    case JSON_NULL:
        return COFFER_OK;
    }
    return COFFER_OK;
}

static bool xml_name_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 128) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))) {
            return false;
        }
    }
    return true;
}

coffer_err query_xml_response(const char *action, const char *xml_namespace, const json_t *result,
                              const char *request_id, coffer_buf *out)
{
    ENSURE(out != NULL && xml_namespace != NULL && request_id != NULL, COFFER_ERR_USAGE);
    ENSURE(xml_name_ok(action), COFFER_ERR_USAGE);
    size_t start = out->len;
    coffer_err rc = COFFER_OK;
    TRY_OUT(coffer_buf_printf(out, "<%sResponse xmlns=\"", action));
    TRY_OUT(query_xml_escape(xml_namespace, strlen(xml_namespace), out));
    TRY_OUT(coffer_buf_append_str(out, "\">"));
    if (result != NULL) {
        TRY_OUT(coffer_buf_printf(out, "<%sResult>", action));
        TRY_OUT(xml_value(result, out, 0));
        TRY_OUT(coffer_buf_printf(out, "</%sResult>", action));
    }
    TRY_OUT(coffer_buf_append_str(out, "<ResponseMetadata><RequestId>"));
    TRY_OUT(query_xml_escape(request_id, strlen(request_id), out));
    TRY_OUT(coffer_buf_printf(out, "</RequestId></ResponseMetadata></%sResponse>", action));
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

coffer_err query_xml_error(const char *code, int status, const char *message, const char *request_id,
                           coffer_buf *out)
{
    ENSURE(code != NULL && out != NULL && request_id != NULL, COFFER_ERR_USAGE);
    size_t start = out->len;
    coffer_err rc = COFFER_OK;
    TRY_OUT(coffer_buf_printf(out, "<ErrorResponse><Error><Type>%s</Type><Code>",
                              status >= 500 ? "Receiver" : "Sender"));
    TRY_OUT(query_xml_escape(code, strlen(code), out));
    TRY_OUT(coffer_buf_append_str(out, "</Code>"));
    if (message != NULL && message[0] != '\0') {
        TRY_OUT(coffer_buf_append_str(out, "<Message>"));
        TRY_OUT(query_xml_escape(message, strlen(message), out));
        TRY_OUT(coffer_buf_append_str(out, "</Message>"));
    }
    TRY_OUT(coffer_buf_append_str(out, "</Error><RequestId>"));
    TRY_OUT(query_xml_escape(request_id, strlen(request_id), out));
    TRY_OUT(coffer_buf_append_str(out, "</RequestId></ErrorResponse>"));
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    return rc;
}
