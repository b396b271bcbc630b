/*
 * Typed reading of AWS JSON 1.1 request members with AWS-shaped validation errors (see
 * api_input.h). Sits between the pipeline's JSON parse and a service handler: the handler
 * never touches jansson types for scalar members.
 */
#include "api/api_input.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/codec.h"

#define API_IN_PATH_MAX 128
#define API_IN_ECHO_MAX 160 /* longer values are cut in messages (the detail is bounded anyway) */

void api_in_init(api_in *in, const json_t *input)
{
    memset(in, 0, sizeof(*in));
    in->obj = input;
    in->not_object = input != NULL && !json_is_object(input);
}

void api_in_member_path(const char *name, char *out, size_t n)
{
    if (n == 0) {
        return;
    }
    coffer_str_copy(out, n, name);
    if (out[0] >= 'A' && out[0] <= 'Z') {
        out[0] = (char)(out[0] - 'A' + 'a');
    }
}

static void msg_append(api_in *in, const char *s)
{
    size_t n = strlen(s);
    size_t room = sizeof(in->msg) - 1 - in->msg_len;
    if (n > room) {
        n = room;
    }
    memcpy(in->msg + in->msg_len, s, n);
    in->msg_len += n;
    in->msg[in->msg_len] = '\0';
}

void api_in_add_error(api_in *in, const char *member, bool is_null, const char *value, const char *constraint)
{
    char one[API_IN_MSG_MAX];
    in->n_errors++;
    if (in->n_errors > API_IN_MAX_ERRORS) {
        return;
    }
    if (is_null) {
        snprintf(one, sizeof(one), "Value null at '%s' failed to satisfy constraint: %s", member, constraint);
    } else if (value != NULL) {
        snprintf(one, sizeof(one), "Value '%.*s' at '%s' failed to satisfy constraint: %s", API_IN_ECHO_MAX,
                 value, member, constraint);
    } else {
        snprintf(one, sizeof(one), "Value at '%s' failed to satisfy constraint: %s", member, constraint);
    }
    if (in->msg_len > 0) {
        msg_append(in, "; ");
    }
    msg_append(in, one);
}

coffer_err api_in_done(api_in *in)
{
    if (in->not_object) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Start of structure or map found where not expected.");
    }
    if (in->n_errors == 0) {
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_VALIDATION, "%zu validation error%s detected: %s", in->n_errors,
                       in->n_errors == 1 ? "" : "s", in->msg);
}

size_t api_in_utf8_len(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            count++;
        }
    }
    return count;
}

/* The member, or NULL when absent or null. */
static const json_t *member_get(const api_in *in, const char *name)
{
    if (in->obj == NULL || in->not_object) {
        return NULL;
    }
    const json_t *v = json_object_get(in->obj, name);
    if (v == NULL || json_is_null(v)) {
        return NULL;
    }
    return v;
}

static coffer_err type_error(const char *name, const char *expected)
{
    return coffer_fail(COFFER_ERR_SERIALIZATION, "Unexpected value type for member '%s': expected %s", name,
                       expected);
}

static bool check_required(api_in *in, const char *name, unsigned flags, const json_t *v)
{
    if (v != NULL) {
        return true;
    }
    if (flags & API_IN_REQUIRED) {
        char path[API_IN_PATH_MAX];
        api_in_member_path(name, path, sizeof(path));
        api_in_add_error(in, path, true, NULL, "Member must not be null");
    }
    return false;
}

/* Length check shared by strings, blobs and lists; records the error and returns false. */
static bool check_length(api_in *in, const char *path, const char *echo, size_t len, size_t min, size_t max)
{
    char constraint[96];
    if (len < min) {
        snprintf(constraint, sizeof(constraint), "Member must have length greater than or equal to %zu", min);
        api_in_add_error(in, path, false, echo, constraint);
        return false;
    }
    if (len > max) {
        snprintf(constraint, sizeof(constraint), "Member must have length less than or equal to %zu", max);
        api_in_add_error(in, path, false, echo, constraint);
        return false;
    }
    return true;
}

static bool string_ok(api_in *in, const char *path, const json_t *v, unsigned flags, size_t min, size_t max)
{
    const char *s = json_string_value(v);
    size_t len = api_in_utf8_len(s, json_string_length(v));
    return check_length(in, path, (flags & (API_IN_SENSITIVE | API_IN_SECRET)) ? NULL : s, len, min, max);
}

coffer_err api_in_string(api_in *in, const char *name, unsigned flags, size_t min, size_t max,
                         const char **out)
{
    *out = NULL;
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_string(v)) {
        return type_error(name, "string");
    }
    char path[API_IN_PATH_MAX];
    api_in_member_path(name, path, sizeof(path));
    if (string_ok(in, path, v, flags, min, max)) {
        *out = json_string_value(v);
    }
    return COFFER_OK;
}

coffer_err api_in_blob(api_in *in, const char *name, unsigned flags, size_t min, size_t max, coffer_buf *out,
                       bool *present)
{
    coffer_buf_init(out, (flags & API_IN_SECRET) != 0);
    if (present != NULL) {
        *present = false;
    }
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_string(v)) {
        return type_error(name, "base64 string");
    }
    char path[API_IN_PATH_MAX];
    api_in_member_path(name, path, sizeof(path));
    size_t enc_len = json_string_length(v);
    /* Bound the work before decoding: a string longer than any valid encoding of `max`
     * bytes is over the limit whatever it decodes to (when it decodes at all). */
    size_t max_enc = (max / 3 + 1) * 4;
    if (enc_len > max_enc) {
        check_length(in, path, NULL, max + 1, min, max);
        return COFFER_OK;
    }
    /* Empty input decodes to nothing (and is never handed to the decoder with a NULL buffer). */
    coffer_err rc =
        enc_len == 0 ? COFFER_OK : coffer_b64_decode(coffer_cursor_from(json_string_value(v), enc_len), out);
    if (rc == COFFER_ERR_NOMEM) {
        coffer_buf_free(out);
        return rc;
    }
    if (rc != COFFER_OK) {
        coffer_buf_free(out);
        coffer_buf_init(out, (flags & API_IN_SECRET) != 0);
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Invalid base64 in member '%s'", name);
    }
    if (!check_length(in, path, NULL, out->len, min, max)) {
        coffer_buf_free(out);
        coffer_buf_init(out, (flags & API_IN_SECRET) != 0);
        return COFFER_OK;
    }
    if (out->data == NULL) {
        /* An empty blob still reads as present: give it a valid (empty) allocation. */
        rc = coffer_buf_reserve(out, 1);
        if (rc != COFFER_OK) {
            return rc;
        }
    }
    if (present != NULL) {
        *present = true;
    }
    return COFFER_OK;
}

coffer_err api_in_int(api_in *in, const char *name, unsigned flags, int64_t min, int64_t max, int64_t *out,
                      bool *present)
{
    *present = false;
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_integer(v)) {
        return type_error(name, "integer");
    }
    char path[API_IN_PATH_MAX], echo[32], constraint[96];
    api_in_member_path(name, path, sizeof(path));
    int64_t x = (int64_t)json_integer_value(v);
    snprintf(echo, sizeof(echo), "%" PRId64, x);
    if (x < min) {
        snprintf(constraint, sizeof(constraint), "Member must have value greater than or equal to %" PRId64,
                 min);
        api_in_add_error(in, path, false, echo, constraint);
        return COFFER_OK;
    }
    if (x > max) {
        snprintf(constraint, sizeof(constraint), "Member must have value less than or equal to %" PRId64,
                 max);
        api_in_add_error(in, path, false, echo, constraint);
        return COFFER_OK;
    }
    *out = x;
    *present = true;
    return COFFER_OK;
}

coffer_err api_in_bool(api_in *in, const char *name, bool dflt, bool *out)
{
    *out = dflt;
    const json_t *v = member_get(in, name);
    if (v == NULL) {
        return COFFER_OK;
    }
    if (!json_is_boolean(v)) {
        return type_error(name, "boolean");
    }
    *out = json_is_true(v);
    return COFFER_OK;
}

coffer_err api_in_enum(api_in *in, const char *name, unsigned flags, const char *const *values, int *out)
{
    *out = -1;
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_string(v)) {
        return type_error(name, "string");
    }
    const char *s = json_string_value(v);
    for (int i = 0; values[i] != NULL; i++) {
        if (strcmp(s, values[i]) == 0) {
            *out = i;
            return COFFER_OK;
        }
    }
    char path[API_IN_PATH_MAX], constraint[API_IN_MSG_MAX];
    api_in_member_path(name, path, sizeof(path));
    size_t n = (size_t)snprintf(constraint, sizeof(constraint), "Member must satisfy enum value set: [");
    for (int i = 0; values[i] != NULL && n < sizeof(constraint); i++) {
        n += (size_t)snprintf(constraint + n, sizeof(constraint) - n, "%s%s", i ? ", " : "", values[i]);
    }
    if (n < sizeof(constraint)) {
        snprintf(constraint + n, sizeof(constraint) - n, "]");
    }
    api_in_add_error(in, path, false, s, constraint);
    return COFFER_OK;
}

coffer_err api_in_string_map(api_in *in, const char *name, unsigned flags, const json_t **out)
{
    *out = NULL;
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_object(v)) {
        return type_error(name, "map");
    }
    const char *k;
    const json_t *val;
    json_object_foreach((json_t *)v, k, val)
    {
        if (!json_is_string(val)) {
            return type_error(name, "map of strings");
        }
    }
    *out = v;
    return COFFER_OK;
}

coffer_err api_in_string_list(api_in *in, const char *name, unsigned flags, size_t min_n, size_t max_n,
                              size_t min, size_t max, const json_t **out)
{
    *out = NULL;
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_array(v)) {
        return type_error(name, "list");
    }
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) {
            return type_error(name, "list of strings");
        }
    }
    char path[API_IN_PATH_MAX];
    api_in_member_path(name, path, sizeof(path));
    bool ok = check_length(in, path, NULL, json_array_size(v), min_n, max_n);
    json_array_foreach(v, i, e)
    {
        char epath[API_IN_PATH_MAX + 32];
        snprintf(epath, sizeof(epath), "%s.%zu.member", path, i + 1);
        ok &= string_ok(in, epath, e, flags, min, max);
    }
    if (ok) {
        *out = v;
    }
    return COFFER_OK;
}

coffer_err api_in_tags(api_in *in, const char *name, unsigned flags, const char *key_name,
                       const char *value_name, const json_t **out)
{
    *out = NULL;
    const json_t *v = member_get(in, name);
    if (!check_required(in, name, flags, v)) {
        return COFFER_OK;
    }
    if (!json_is_array(v)) {
        return type_error(name, "list");
    }
    char path[API_IN_PATH_MAX], kpath[API_IN_PATH_MAX], vpath[API_IN_PATH_MAX];
    api_in_member_path(name, path, sizeof(path));
    api_in_member_path(key_name, kpath, sizeof(kpath));
    api_in_member_path(value_name, vpath, sizeof(vpath));
    bool ok = true;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_object(e)) {
            return type_error(name, "list of tags");
        }
        const json_t *tk = json_object_get(e, key_name), *tv = json_object_get(e, value_name);
        if ((tk != NULL && !json_is_null(tk) && !json_is_string(tk)) ||
            (tv != NULL && !json_is_null(tv) && !json_is_string(tv))) {
            return type_error(name, "list of tags");
        }
        char epath[3 * API_IN_PATH_MAX];
        snprintf(epath, sizeof(epath), "%s.%zu.member.%s", path, i + 1, kpath);
        if (tk == NULL || json_is_null(tk)) {
            api_in_add_error(in, epath, true, NULL, "Member must not be null");
            ok = false;
        } else {
            ok &= string_ok(in, epath, tk, 0, 1, 128);
        }
        snprintf(epath, sizeof(epath), "%s.%zu.member.%s", path, i + 1, vpath);
        if (tv == NULL || json_is_null(tv)) {
            api_in_add_error(in, epath, true, NULL, "Member must not be null");
            ok = false;
        } else {
            ok &= string_ok(in, epath, tv, 0, 0, 256);
        }
    }
    if (ok) {
        *out = v;
    }
    return COFFER_OK;
}
