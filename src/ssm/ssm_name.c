/*
 * Parameter names, ARNs and selectors (ssm_name.h).
 */
#include "ssm/ssm_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/';
}

static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && strncasecmp(s, prefix, pl) == 0;
}

coffer_err ssm_name_check(const char *name, bool for_write, size_t arn_prefix_len, char *canon, size_t n)
{
    while (*name == ' ') {
        name++;
    }
    size_t len = strlen(name);
    while (len > 0 && name[len - 1] == ' ') {
        len--;
    }
    if (len == 0 || len >= n || len > SSM_NAME_MAX) {
        return coffer_fail(COFFER_ERR_VALIDATION, SSM_MSG_BAD_NAME);
    }
    size_t slashes = 0;
    for (size_t i = 0; i < len; i++) {
        if (!name_char(name[i])) {
            return coffer_fail(COFFER_ERR_VALIDATION, SSM_MSG_BAD_NAME);
        }
        if (name[i] == '/') {
            slashes++;
            /* an empty level ("//", a trailing "/") names nothing */
            if (i + 1 == len || name[i + 1] == '/') {
                return coffer_fail(COFFER_ERR_VALIDATION, SSM_MSG_BAD_NAME);
            }
        }
    }
    bool hierarchical = slashes > 1 || (slashes == 1 && name[0] != '/');
    if (hierarchical && name[0] != '/') {
        return coffer_fail(COFFER_ERR_VALIDATION, SSM_MSG_BAD_NAME);
    }
    /* "/x" and "x" are one parameter: the canonical form of a one-level name has no slash */
    const char *c = (!hierarchical && name[0] == '/') ? name + 1 : name;
    size_t clen = len - (size_t)(c - name);
    if (hierarchical && slashes > SSM_MAX_LEVELS) {
        return coffer_fail(
            COFFER_ERR_HIERARCHY_LIMIT,
            "A hierarchy can have a maximum of 15 levels. For more information, see "
            "https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html");
    }
    if (for_write) {
        const char *first = hierarchical ? c + 1 : c;
        const char *end = hierarchical ? strchr(first, '/') : c + clen;
        size_t flen = (size_t)(end - first);
        if (hierarchical && flen == 3 && strncasecmp(first, "aws", 3) == 0) {
            return coffer_fail(COFFER_ERR_ACCESS_DENIED, "No access to reserved parameter name: %.*s",
                               (int)clen, c);
        }
        if (has_prefix_ci(first, flen, "aws") || has_prefix_ci(first, flen, "ssm")) {
            return coffer_fail(COFFER_ERR_VALIDATION,
                               hierarchical ? SSM_MSG_BAD_NAME : SSM_MSG_RESERVED_PLAIN);
        }
    }
    size_t arn_len = arn_prefix_len + clen - (c[0] == '/' ? 1 : 0);
    if (arn_len > SSM_ARN_MAX) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Parameter name: can't be longer than 1011 characters including the ARN prefix.");
    }
    memcpy(canon, c, clen);
    canon[clen] = 0;
    return COFFER_OK;
}

coffer_err ssm_ref_split(const char *ref, const char *arn_prefix, char *name, size_t n, int64_t *version,
                         char *label, size_t label_n)
{
    *version = 0;
    label[0] = 0;
    name[0] = 0;
    const char *body = ref;
    bool from_arn = false;
    if (strncmp(ref, "arn:", 4) == 0) {
        size_t pl = strlen(arn_prefix);
        if (strncmp(ref, arn_prefix, pl) != 0) {
            return COFFER_OK; /* another account's or region's parameter: not here */
        }
        body = ref + pl;
        from_arn = true;
    }
    const char *colon = strchr(body, ':');
    size_t nlen = colon != NULL ? (size_t)(colon - body) : strlen(body);
    if (colon != NULL) {
        const char *sel = colon + 1;
        if (strchr(sel, ':') != NULL) {
            return COFFER_OK; /* two selectors name no parameter */
        }
        size_t sl = strlen(sel);
        if (sl == 0 || sl > 100) {
            return coffer_fail(COFFER_ERR_VALIDATION, "Invalid selector: %s", ref);
        }
        bool digits = true;
        for (size_t i = 0; i < sl; i++) {
            digits = digits && sel[i] >= '0' && sel[i] <= '9';
        }
        if (digits) {
            if (sl > 18) {
                return COFFER_OK;
            }
            *version = strtoll(sel, NULL, 10);
            if (*version <= 0) {
                return COFFER_OK;
            }
        } else if (sl < label_n) {
            memcpy(label, sel, sl + 1);
        } else {
            return COFFER_OK;
        }
    }
    /* an ARN names the parameter without its leading slash: a hierarchical one gets it back */
    bool add_slash = from_arn && memchr(body, '/', nlen) != NULL;
    if (nlen + (add_slash ? 1 : 0) >= n || nlen == 0) {
        return COFFER_OK;
    }
    snprintf(name, n, "%s%.*s", add_slash ? "/" : "", (int)nlen, body);
    return COFFER_OK;
}

void ssm_name_key(const char *canon, char *out, size_t n)
{
    snprintf(out, n, "%s%s", canon[0] == '/' ? "" : "/", canon);
}

coffer_err ssm_path_prefix(const char *path, char *out, size_t n)
{
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/' || len + 2 > n) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "The parameter doesn't meet the parameter name requirements. "
                           "The parameter name must begin with a forward slash \"/\".");
    }
    for (size_t i = 0; i < len; i++) {
        if (!name_char(path[i]) || (path[i] == '/' && i + 1 < len && path[i + 1] == '/')) {
            return coffer_fail(COFFER_ERR_VALIDATION, SSM_MSG_BAD_NAME);
        }
    }
    /* the trailing slash is tolerated: "/a/b/" is "/a/b" */
    snprintf(out, n, "%s%s", path, path[len - 1] == '/' ? "" : "/");
    return COFFER_OK;
}

bool ssm_label_valid(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n > SSM_LABEL_MAX || (label[0] >= '0' && label[0] <= '9') ||
        has_prefix_ci(label, n, "aws") || has_prefix_ci(label, n, "ssm")) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!name_char(label[i]) || label[i] == '/') {
            return false;
        }
    }
    return true;
}
