/*
 * ListSecrets (and BatchGetSecretValue) filters: {Key, Values}. A value matches an attribute
 * that starts with it, case-sensitively except for `description` and `all`; a leading '!'
 * negates it. The values of one filter are alternatives; every filter must hold. `all` splits
 * its value into words, each of which must match the name, the description, a tag key or a
 * tag value.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "secrets/secrets_internal.h"

static const char *const filter_keys[] = {"description",    "name",           "tag-key", "tag-value",
                                          "primary-region", "owning-service", "all",     NULL};

static bool value_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr(" :_@/+=.-!", c);
}

coffer_err sm_filters_check(const json_t *filters)
{
    if (filters == NULL || json_is_null(filters)) {
        return COFFER_OK;
    }
    if (!json_is_array(filters)) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Filters must be a list");
    }
    if (json_array_size(filters) > 10) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "1 validation error detected: Value at 'filters' failed to satisfy constraint: Member "
            "must have length less than or equal to 10");
    }
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        const char *key = json_string_value(json_object_get(f, "Key"));
        const json_t *values = json_object_get(f, "Values");
        if (!json_is_object(f) || (json_object_get(f, "Key") != NULL && key == NULL) ||
            (values != NULL && !json_is_array(values))) {
            return coffer_fail(COFFER_ERR_SERIALIZATION, "Filters: malformed filter");
        }
        bool known = false;
        for (const char *const *k = filter_keys; key != NULL && *k != NULL; k++) {
            known = known || strcmp(*k, key) == 0;
        }
        if (!known) {
            return coffer_fail(
                COFFER_ERR_VALIDATION,
                "1 validation error detected: Value '%.64s' at 'filters.%zu.member.key' failed to "
                "satisfy constraint: Member must satisfy enum value set: [all, name, tag-key, "
                "description, tag-value, primary-region, owning-service]",
                key != NULL ? key : "", i + 1);
        }
        if (json_array_size(values) < 1 || json_array_size(values) > 10) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                               "Invalid filter values: a filter needs 1 to 10 values.");
        }
        size_t j;
        const json_t *v;
        json_array_foreach(values, j, v)
        {
            const char *s = json_string_value(v);
            if (s == NULL) {
                return coffer_fail(COFFER_ERR_SERIALIZATION, "Filters: values must be strings");
            }
            bool ok = strlen(s) <= 512;
            for (const char *p = s; ok && *p != 0; p++) {
                ok = value_char_ok(*p) && (*p != '!' || p == s);
            }
            if (!ok) {
                return coffer_fail(
                    COFFER_ERR_VALIDATION,
                    "1 validation error detected: Value '[%.64s]' at 'filters.%zu.member.values' "
                    "failed to satisfy constraint: Member must satisfy constraint: [Member must "
                    "have length less than or equal to 512, Member must have length greater than "
                    "or equal to 0, Member must satisfy regular expression pattern: "
                    "^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$]",
                    s, i + 1);
            }
        }
    }
    return COFFER_OK;
}

static bool prefix(const char *attr, const char *value, bool icase)
{
    if (attr == NULL) {
        return false;
    }
    size_t n = strlen(value);
    return icase ? strncasecmp(attr, value, n) == 0 : strncmp(attr, value, n) == 0;
}

static bool tags_match(const json_t *rec, const char *member, const char *value, bool icase)
{
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(rec, "Tags"), i, t)
    {
        if (prefix(sm_str(t, member), value, icase)) {
            return true;
        }
    }
    return false;
}

static bool word_matches(const json_t *rec, const char *w)
{
    return prefix(sm_str(rec, "Name"), w, true) || prefix(sm_str(rec, "Description"), w, true) ||
           tags_match(rec, "Key", w, true) || tags_match(rec, "Value", w, true);
}

static bool all_matches(const json_t *rec, const char *value)
{
    char buf[520];
    snprintf(buf, sizeof(buf), "%s", value);
    char *save = NULL;
    bool any = false;
    for (char *w = strtok_r(buf, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
        any = true;
        if (!word_matches(rec, w)) {
            return false;
        }
    }
    return any || value[0] == 0;
}

static bool value_matches(const char *key, const json_t *rec, const char *value)
{
    if (strcmp(key, "name") == 0) {
        return prefix(sm_str(rec, "Name"), value, false);
    }
    if (strcmp(key, "description") == 0) {
        return prefix(sm_str(rec, "Description"), value, true);
    }
    if (strcmp(key, "tag-key") == 0) {
        return tags_match(rec, "Key", value, false);
    }
    if (strcmp(key, "tag-value") == 0) {
        return tags_match(rec, "Value", value, false);
    }
    if (strcmp(key, "primary-region") == 0) {
        return prefix(sm_str(rec, "PrimaryRegion"), value, false);
    }
    if (strcmp(key, "owning-service") == 0) {
        return prefix(sm_str(rec, "OwningService"), value, false);
    }
    return all_matches(rec, value);
}

bool sm_filters_pass(const json_t *filters, const json_t *rec)
{
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        const char *key = sm_str(f, "Key");
        bool any = false;
        size_t j;
        const json_t *v;
        json_array_foreach(json_object_get(f, "Values"), j, v)
        {
            const char *s = json_string_value(v);
            bool negate = s[0] == '!';
            bool m = value_matches(key, rec, negate ? s + 1 : s);
            if (m != negate) {
                any = true;
                break;
            }
        }
        if (!any) {
            return false;
        }
    }
    return true;
}
