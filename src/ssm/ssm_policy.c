/*
 * Parameter policies (ssm-parameters.md §4): the Policies string of PutParameter checked and
 * turned into the Policies items a version carries, and the time each of them acts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ssm/ssm_internal.h"

#define HOUR_MS (3600LL * 1000)

static const char *const policy_types[] = {"Expiration", "ExpirationNotification", "NoChangeNotification"};

/* "2026-12-31T00:00:00.000Z", "2019-11-01T22:13:48.87+10:30:00": an ISO-8601 instant in ms. */
int ssm_policy_parse_time(const char *s, int64_t *out_ms)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19) {
        return -1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970) {
        return -1;
    }
    const char *p = s + n;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
            }
        }
        if (digits == 0) {
            return -1;
        }
        for (; digits < 3; digits++) {
            ms *= 10;
        }
    }
    int64_t offset_s = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh = 0, om = 0, os = 0, m = 0;
        int got = sscanf(p + 1, "%2d:%2d%n:%2d%n", &oh, &om, &m, &os, &m);
        if (got < 2 || oh > 23 || om > 59 || os > 59) {
            return -1;
        }
        offset_s = (oh * 3600 + om * 60 + os) * (*p == '-' ? -1 : 1);
        p += 1 + m;
    } else {
        return -1;
    }
    if (*p != 0) {
        return -1;
    }
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return -1;
    }
    *out_ms = ((int64_t)t - offset_s) * 1000 + ms;
    return 0;
}

/* A positive count of hours or days ("Before"/"After" with "Unit") in ms; -1 when invalid. */
static int64_t span_ms(const json_t *attrs, const char *member)
{
    const char *n = json_string_value(json_object_get(attrs, member));
    const char *unit = json_string_value(json_object_get(attrs, "Unit"));
    if (n == NULL || unit == NULL || n[0] < '1' || n[0] > '9' || strlen(n) > 6) {
        return -1;
    }
    char *end = NULL;
    long v = strtol(n, &end, 10);
    if (*end != 0) {
        return -1;
    }
    if (strcmp(unit, "Hours") == 0) {
        return v * HOUR_MS;
    }
    if (strcmp(unit, "Days") == 0) {
        return v * 24 * HOUR_MS;
    }
    return -1;
}

static coffer_err attr_fail(const char *type, const char *what)
{
    return coffer_fail(COFFER_ERR_INVALID_POLICY_ATTRIBUTE,
                       "A policy attribute or its value is invalid. %s: %s", type, what);
}

/* Checks one policy object; *kind is its index in policy_types. */
static coffer_err check_one(const json_t *p, int64_t now_ms, int *kind)
{
    if (!json_is_object(p)) {
        return coffer_fail(COFFER_ERR_INVALID_POLICY_TYPE, "%s", "");
    }
    const char *type = json_string_value(json_object_get(p, "Type"));
    *kind = -1;
    for (int i = 0; type != NULL && i < 3; i++) {
        if (strcmp(type, policy_types[i]) == 0) {
            *kind = i;
        }
    }
    if (*kind < 0) {
        return coffer_fail(COFFER_ERR_INVALID_POLICY_TYPE, "%s", "");
    }
    const char *version = json_string_value(json_object_get(p, "Version"));
    if (version == NULL || strcmp(version, "1.0") != 0) {
        return attr_fail(type, "Version must be \"1.0\"");
    }
    const json_t *attrs = json_object_get(p, "Attributes");
    if (!json_is_object(attrs)) {
        return attr_fail(type, "Attributes must be an object");
    }
    if (*kind == SSM_POLICY_EXPIRATION) {
        int64_t at = 0;
        if (ssm_policy_parse_time(json_string_value(json_object_get(attrs, "Timestamp")), &at) != 0) {
            return attr_fail(type, "Timestamp must be an ISO-8601 date and time");
        }
        if (at <= now_ms) {
            return attr_fail(type, "Timestamp must be in the future");
        }
    } else if (span_ms(attrs, *kind == SSM_POLICY_EXPIRATION_NOTIFICATION ? "Before" : "After") < 0) {
        return attr_fail(type, *kind == SSM_POLICY_EXPIRATION_NOTIFICATION
                                   ? "Before must be a positive whole number and Unit Days or Hours"
                                   : "After must be a positive whole number and Unit Days or Hours");
    }
    return COFFER_OK;
}

coffer_err ssm_policies_parse(const char *text, int64_t now_ms, json_t **out)
{
    *out = NULL;
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    json_t *items = NULL;
    coffer_err rc = COFFER_OK;
    if (!json_is_array(doc)) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "Invalid policies input: Policies must be a JSON array of policies.");
    }
    items = json_array();
    if (items == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* "[{}]" is how a caller removes every policy */
    if (json_array_size(doc) == 1 && json_is_object(json_array_get(doc, 0)) &&
        json_object_size(json_array_get(doc, 0)) == 0) {
        goto done;
    }
    if (json_array_size(doc) > SSM_MAX_POLICIES) {
        FAIL_OUT(COFFER_ERR_POLICIES_LIMIT, "%s", "");
    }
    int expirations = 0, notifications = 0;
    size_t i;
    const json_t *p;
    json_array_foreach(doc, i, p)
    {
        int kind = -1;
        TRY_OUT(check_one(p, now_ms, &kind));
        expirations += kind == SSM_POLICY_EXPIRATION;
        notifications += kind == SSM_POLICY_EXPIRATION_NOTIFICATION;
        char *ptext = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_t *item = ptext == NULL ? NULL
                                     : json_pack("{s:s, s:s, s:s}", "PolicyText", ptext, "PolicyType",
                                                 policy_types[kind], "PolicyStatus", "Pending");
        free(ptext);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (expirations > 1) {
        FAIL_OUT(COFFER_ERR_INCOMPATIBLE_POLICY, "%s", "");
    }
    if (notifications > 0 && expirations == 0) {
        FAIL_OUT(
            COFFER_ERR_INCOMPATIBLE_POLICY,
            "There is a conflict in the policies specified for this parameter. An ExpirationNotification "
            "policy needs an Expiration policy. Review your policies, and try again.");
    }
done:
    *out = items;
    items = NULL;
out:
    json_decref(items);
    json_decref(doc);
    return rc;
}

int ssm_policy_kind(const json_t *item)
{
    const char *type = json_string_value(json_object_get(item, "PolicyType"));
    for (int i = 0; type != NULL && i < 3; i++) {
        if (strcmp(type, policy_types[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* The Expiration time of a version's policies; -1 when none. */
static int64_t expiration_of(const json_t *policies)
{
    size_t i;
    const json_t *item;
    json_array_foreach(policies, i, item)
    {
        if (ssm_policy_kind(item) == SSM_POLICY_EXPIRATION) {
            json_t *p = json_loads(ssm_vstr(item, "PolicyText"), 0, NULL);
            int64_t at = -1;
            if (ssm_policy_parse_time(
                    json_string_value(json_object_get(json_object_get(p, "Attributes"), "Timestamp")), &at) !=
                0) {
                at = -1;
            }
            json_decref(p);
            return at;
        }
    }
    return -1;
}

int64_t ssm_policy_due(const json_t *policies, size_t i, int64_t modified_ms)
{
    const json_t *item = json_array_get(policies, i);
    const char *status = ssm_vstr(item, "PolicyStatus");
    int kind = ssm_policy_kind(item);
    if (kind < 0 || status == NULL || strcmp(status, "Finished") == 0) {
        return -1;
    }
    if (kind == SSM_POLICY_EXPIRATION) {
        return expiration_of(policies);
    }
    json_t *p = json_loads(ssm_vstr(item, "PolicyText"), 0, NULL);
    const json_t *attrs = json_object_get(p, "Attributes");
    int64_t span = span_ms(attrs, kind == SSM_POLICY_EXPIRATION_NOTIFICATION ? "Before" : "After");
    json_decref(p);
    if (span < 0) {
        return -1;
    }
    if (kind == SSM_POLICY_NO_CHANGE) {
        return modified_ms + span;
    }
    int64_t at = expiration_of(policies);
    return at < 0 ? -1 : (at - span > 0 ? at - span : 0);
}

json_t *ssm_policies_of(const json_t *ver)
{
    const json_t *p = json_object_get(ver, "Policies");
    return json_is_array(p) ? json_deep_copy(p) : json_array();
}
