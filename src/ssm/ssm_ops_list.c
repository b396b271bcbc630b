/* The listings: GetParametersByPath, DescribeParameters (filters, paging), GetParameterHistory. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/buf.h"
#include "ssm/ssm_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Filters (GetParametersByPath, DescribeParameters)                                            */

static bool str_match(const char *option, const char *have, const char *want)
{
    if (have == NULL) {
        return false;
    }
    if (strcmp(option, "BeginsWith") == 0) {
        return strncmp(have, want, strlen(want)) == 0;
    }
    if (strcmp(option, "Contains") == 0) {
        return strstr(have, want) != NULL;
    }
    return strcmp(have, want) == 0;
}

/* True when one of the filter's values matches `have` ("Equals" when no Option). */
static bool filter_any(const json_t *f, const char *have)
{
    const char *option = json_string_value(json_object_get(f, "Option"));
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(f, "Values"), i, v)
    {
        if (str_match(option != NULL ? option : "Equals", have, json_string_value(v))) {
            return true;
        }
    }
    return false;
}

static bool name_filter(const json_t *f, const char *canon)
{
    char kf[SSM_NAME_MAX + 2];
    ssm_name_key(canon, kf, sizeof(kf));
    const char *option = json_string_value(json_object_get(f, "Option"));
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(f, "Values"), i, v)
    {
        const char *want = json_string_value(v);
        /* a one-level name is "x" and "/x" alike */
        if (str_match(option != NULL ? option : "Equals", canon, want) ||
            str_match(option != NULL ? option : "Equals", kf, want)) {
            return true;
        }
    }
    return false;
}

static bool tag_filter(const json_t *f, const json_t *rec)
{
    const char *tag = json_string_value(json_object_get(f, "Key")) + 4;
    const json_t *values = json_object_get(f, "Values");
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(rec, "Tags"), i, t)
    {
        if (strcmp(ssm_vstr(t, "Key"), tag) == 0) {
            return json_array_size(values) == 0 || filter_any(f, ssm_vstr(t, "Value"));
        }
    }
    return false;
}

/* Whether the parameter passes every filter (the Path filter is applied by the scan). */
static bool filters_pass(const json_t *filters, const json_t *rec, const char *canon)
{
    const json_t *ver = ssm_rec_version_for(rec, filters);
    if (ver == NULL) {
        return false;
    }
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        const char *key = json_string_value(json_object_get(f, "Key"));
        bool ok = true;
        if (strcmp(key, "Name") == 0) {
            ok = name_filter(f, canon);
        } else if (strcmp(key, "Type") == 0 || strcmp(key, "KeyId") == 0 || strcmp(key, "Tier") == 0 ||
                   strcmp(key, "DataType") == 0) {
            ok = filter_any(f, ssm_vstr(ver, key));
        } else if (strncmp(key, "tag:", 4) == 0) {
            ok = tag_filter(f, rec);
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}

/*
 * Checks a ParameterFilters list against the keys `allowed` (NULL-terminated; "tag:" allows
 * every tag key) and extracts the Path filter (*path, *recursive) when path is not NULL.
 */
static coffer_err filters_check(const json_t *filters, const char *const *allowed, const char **path,
                                bool *recursive)
{
    if (filters == NULL) {
        return COFFER_OK;
    }
    if (!json_is_array(filters) || json_array_size(filters) > 50) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "ParameterFilters must be a list");
    }
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        const char *key = json_string_value(json_object_get(f, "Key"));
        const json_t *option = json_object_get(f, "Option"), *values = json_object_get(f, "Values");
        if (!json_is_object(f) || key == NULL || (option != NULL && !json_is_string(option)) ||
            (values != NULL && !json_is_array(values))) {
            return coffer_fail(COFFER_ERR_SERIALIZATION, "ParameterFilters: malformed filter");
        }
        size_t j;
        const json_t *v;
        json_array_foreach(values, j, v)
        {
            if (!json_is_string(v) || strlen(json_string_value(v)) == 0 ||
                strlen(json_string_value(v)) > 1024) {
                return coffer_fail(COFFER_ERR_VALIDATION,
                                   "ParameterFilters: a value must be 1-1024 characters");
            }
        }
        bool ok = false;
        for (const char *const *a = allowed; *a != NULL; a++) {
            ok = ok || (strcmp(*a, "tag:") == 0 ? strncmp(key, "tag:", 4) == 0 && key[4] != 0
                                                : strcmp(*a, key) == 0);
        }
        if (!ok) {
            return coffer_fail(COFFER_ERR_INVALID_FILTER_KEY, "The following filter key is not valid: %s",
                               key);
        }
        if (strncmp(key, "tag:", 4) != 0 && json_array_size(values) == 0) {
            return coffer_fail(COFFER_ERR_VALIDATION, "ParameterFilters: the %s filter needs values", key);
        }
        const char *opt = json_string_value(option);
        bool is_path = strcmp(key, "Path") == 0;
        if (opt != NULL) {
            bool valid = is_path ? (strcmp(opt, "Recursive") == 0 || strcmp(opt, "OneLevel") == 0)
                                 : (strcmp(opt, "Equals") == 0 || strcmp(opt, "BeginsWith") == 0 ||
                                    (strcmp(key, "Name") == 0 && strcmp(opt, "Contains") == 0));
            if (!valid || (strcmp(key, "Label") == 0 && strcmp(opt, "Equals") != 0)) {
                return coffer_fail(COFFER_ERR_INVALID_FILTER_OPTION,
                                   "The following filter option is not valid: %s. "
                                   "Valid options include: [Equals, BeginsWith].",
                                   opt);
            }
        }
        if (strcmp(key, "Tier") == 0) {
            json_array_foreach(values, j, v)
            {
                const char *t = json_string_value(v);
                if (strcmp(t, "Standard") != 0 && strcmp(t, "Advanced") != 0 &&
                    strcmp(t, "Intelligent-Tiering") != 0) {
                    return coffer_fail(COFFER_ERR_INVALID_FILTER_OPTION,
                                       "The following filter value is not valid: %s. Valid values include: "
                                       "[Standard, Advanced, Intelligent-Tiering].",
                                       t);
                }
            }
        }
        if (is_path) {
            if (path == NULL || json_array_size(values) != 1) {
                return coffer_fail(COFFER_ERR_INVALID_FILTER_KEY, "The Path filter takes one value.");
            }
            *path = json_string_value(json_array_get(values, 0));
            *recursive = opt != NULL && strcmp(opt, "Recursive") == 0;
        }
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Listing a subtree                                                                            */

/*
 * One page of parameters under the key prefix `base` + `sub` ("ssm/param/A/R" + "/a/b/"), in
 * name order, after the key suffix `after`. Not recursive: only names right under the prefix;
 * a deeper subtree is skipped with one seek past it, so a page costs the records it returns
 * plus one seek per child subtree, whatever the total count.
 */
struct page {
    const struct ssm *s;
    const struct api_call *call;
    bool decrypt;
    const json_t *filters;
    size_t base_len;
    size_t sub_len;
    bool recursive;
    size_t max;
    bool (*visit)(struct page *pg, const json_t *rec, const char *canon); /* false: stop (out of memory) */
    json_t *items;
    bool more;              /* one more match exists past the page */
    char last[SSM_KEY_MAX]; /* key suffix of the last item of the page */
    char skip[SSM_KEY_MAX]; /* not recursive: resume the scan after this key */
    coffer_err failure;
};

static coffer_err page_visit(void *ctx, const char *key, coffer_cursor value)
{
    struct page *pg = ctx;
    const char *rest = key + pg->base_len + pg->sub_len;
    const char *slash = strchr(rest, '/');
    if (!pg->recursive && slash != NULL) {
        /* '~' sorts after every character of a name: the seek lands past the child's subtree */
        snprintf(pg->skip, sizeof(pg->skip), "%.*s/~", (int)(slash - key), key);
        return STORE_SCAN_STOP;
    }
    json_t *rec = NULL;
    TRY(ssm_rec_parse(value, &rec));
    const char *canon = json_string_value(json_object_get(rec, "Name"));
    coffer_err rc = COFFER_OK;
    if (canon != NULL && filters_pass(pg->filters, rec, canon)) {
        if (json_array_size(pg->items) == pg->max) {
            pg->more = true;
            rc = STORE_SCAN_STOP;
        } else {
            snprintf(pg->last, sizeof(pg->last), "%s", key + pg->base_len);
            if (!pg->visit(pg, rec, canon)) {
                rc = pg->failure != COFFER_OK ? pg->failure : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
            }
        }
    }
    json_decref(rec);
    return rc;
}

static coffer_err page_run(store *st, struct page *pg, const char *base, const char *sub, const char *after)
{
    char prefix[SSM_KEY_MAX], start[SSM_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "%s%s", base, sub);
    pg->base_len = strlen(base);
    pg->sub_len = strlen(sub);
    if (after != NULL) {
        snprintf(start, sizeof(start), "%s%s", base, after);
    } else {
        start[0] = 0;
    }
    for (;;) {
        pg->skip[0] = 0;
        TRY(store_scan(st, prefix, start, 0, page_visit, pg));
        if (pg->skip[0] == 0) {
            return COFFER_OK;
        }
        snprintf(start, sizeof(start), "%s", pg->skip);
    }
}

/* Checks a NextToken: a key suffix under `sub` made of name characters. */
static coffer_err token_check(const char *token, const char *sub)
{
    if (token == NULL) {
        return COFFER_OK;
    }
    bool ok = strncmp(token, sub, strlen(sub)) == 0 && strlen(token) <= SSM_NAME_MAX;
    for (const char *p = token; ok && *p != 0; p++) {
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
             *p == '.' || *p == '-' || *p == '/';
    }
    return ok ? COFFER_OK : coffer_fail(COFFER_ERR_INVALID_MARKER, "The specified token is not valid.");
}

static bool visit_parameter(struct page *pg, const json_t *rec, const char *canon)
{
    json_t *p = NULL;
    pg->failure = ssm_parameter_json(pg->s, pg->call, rec, ssm_rec_version_for(rec, pg->filters), NULL,
                                     pg->decrypt, &p);
    if (pg->failure != COFFER_OK) {
        return false;
    }
    return json_array_append_new(pg->items, p) == 0;
}

static coffer_err page_output(struct api_call *call, struct page *pg)
{
    call->output = json_pack("{s:O}", "Parameters", pg->items);
    if (call->output == NULL ||
        (pg->more && json_object_set_new(call->output, "NextToken", json_string(pg->last)) != 0)) {
        return ssm_oom();
    }
    return COFFER_OK;
}

coffer_err ssm_op_GetParametersByPath(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *path = NULL, *token = NULL;
    bool recursive = false, decrypt = false;
    int64_t max = 10;
    bool has_max = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Path", API_IN_REQUIRED, 1, SSM_NAME_MAX, &path));
    TRY(api_in_bool(&in, "Recursive", false, &recursive));
    TRY(api_in_bool(&in, "WithDecryption", false, &decrypt));
    TRY(api_in_int(&in, "MaxResults", 0, 1, 10, &max, &has_max));
    TRY(api_in_string(&in, "NextToken", 0, 1, 4096, &token));
    TRY(api_in_done(&in));
    max = has_max ? max : 10;
    const json_t *filters = json_object_get(call->input, "ParameterFilters");
    static const char *const allowed[] = {"Type", "KeyId", "Label", NULL};
    TRY(filters_check(json_is_null(filters) ? NULL : filters, allowed, NULL, NULL));
    char sub[SSM_NAME_MAX + 2], arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX], base[128];
    TRY(ssm_path_prefix(path, sub, sizeof(sub)));
    TRY(token_check(token, sub));
    /* the path's ARN: "/a/b/" -> "...:parameter/a/b", "/" -> "...:parameter/" */
    ssm_arn_prefix(call, arn, sizeof(arn));
    snprintf(arn + strlen(arn), sizeof(arn) - strlen(arn), "%.*s",
             (int)strlen(sub) - 2 > 0 ? (int)strlen(sub) - 2 : 0, sub + 1);
    TRY(ssm_authorize(s, call, "GetParametersByPath", arn));
    ssm_account_prefix(call, base, sizeof(base));
    struct page pg = {.s = s,
                      .call = call,
                      .decrypt = decrypt,
                      .filters = filters,
                      .recursive = recursive,
                      .max = (size_t)max,
                      .visit = visit_parameter,
                      .items = json_array()};
    if (pg.items == NULL) {
        return ssm_oom();
    }
    coffer_err rc = page_run(s->st, &pg, base, sub, token);
    if (rc == COFFER_OK) {
        rc = page_output(call, &pg);
    }
    json_decref(pg.items);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* DescribeParameters                                                                           */

static bool visit_metadata(struct page *pg, const json_t *rec, const char *canon)
{
    const json_t *ver = ssm_rec_latest(rec);
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    ssm_param_arn(pg->call, canon, arn, sizeof(arn));
    json_t *m = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:s, s:[], s:s}", "Name", canon, "ARN", arn, "Type",
                          ssm_vstr(ver, "Type"), "LastModifiedDate", ssm_date_of(ver), "LastModifiedUser",
                          ssm_vstr(ver, "LastModifiedUser"), "Version", ssm_vint(ver, "Version"), "Tier",
                          ssm_vstr(ver, "Tier"), "Policies", "DataType", ssm_vstr(ver, "DataType"));
    if (m == NULL || json_object_set_new(m, "Policies", ssm_policies_of(ver)) != 0) {
        json_decref(m);
        return false;
    }
    static const char *const optional[] = {"Description", "AllowedPattern", "KeyId", NULL};
    for (const char *const *o = optional; *o != NULL; o++) {
        if (ssm_vstr(ver, *o) != NULL && json_object_set_new(m, *o, json_string(ssm_vstr(ver, *o))) != 0) {
            json_decref(m);
            return false;
        }
    }
    return json_array_append_new(pg->items, m) == 0;
}

/* The deprecated Filters ({Key: Name|Type|KeyId, Values}) as ParameterFilters with Equals. */
static coffer_err legacy_filters(const json_t *filters, json_t *into)
{
    if (filters == NULL || json_is_null(filters)) {
        return COFFER_OK;
    }
    if (!json_is_array(filters)) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Filters must be a list");
    }
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        const char *key = json_string_value(json_object_get(f, "Key"));
        if (key == NULL || !json_is_array(json_object_get(f, "Values"))) {
            return coffer_fail(COFFER_ERR_SERIALIZATION, "Filters: malformed filter");
        }
        if (strcmp(key, "Name") != 0 && strcmp(key, "Type") != 0 && strcmp(key, "KeyId") != 0) {
            return coffer_fail(
                COFFER_ERR_VALIDATION,
                "1 validation error detected: Value '%s' at 'filters.%zu.member.key' failed to satisfy "
                "constraint: Member must satisfy enum value set: [Name, Type, KeyId]",
                key, i + 1);
        }
        if (json_array_append(into, (json_t *)f) != 0) {
            return ssm_oom();
        }
    }
    return COFFER_OK;
}

coffer_err ssm_op_DescribeParameters(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *token = NULL;
    bool shared = false;
    int64_t max = 50;
    bool has_max = false;
    api_in_init(&in, call->input);
    TRY(api_in_int(&in, "MaxResults", 0, 1, 50, &max, &has_max));
    TRY(api_in_string(&in, "NextToken", 0, 1, 4096, &token));
    TRY(api_in_bool(&in, "Shared", false, &shared));
    TRY(api_in_done(&in));
    max = has_max ? max : 50;
    const json_t *pfilters = json_object_get(call->input, "ParameterFilters");
    static const char *const allowed[] = {"Name", "Type", "KeyId", "Path", "Tier", "DataType", "tag:", NULL};
    const char *path = NULL;
    bool recursive = false;
    TRY(filters_check(json_is_null(pfilters) ? NULL : pfilters, allowed, &path, &recursive));
    char resource[SSM_ARN_PREFIX_MAX];
    snprintf(resource, sizeof(resource), "arn:aws:ssm:%s:%s:*", call->region, call->caller->account_id);
    TRY(ssm_authorize(s, call, "DescribeParameters", resource));

    char sub[SSM_NAME_MAX + 2] = "/", base[128];
    if (path != NULL) {
        TRY(ssm_path_prefix(path, sub, sizeof(sub)));
    } else {
        recursive = true;
    }
    TRY(token_check(token, sub));
    ssm_account_prefix(call, base, sizeof(base));
    json_t *filters = json_array();
    struct page pg = {.call = call,
                      .filters = filters,
                      .recursive = recursive,
                      .max = (size_t)max,
                      .visit = visit_metadata,
                      .items = json_array()};
    coffer_err rc = COFFER_OK;
    if (filters == NULL || pg.items == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(legacy_filters(json_object_get(call->input, "Filters"), filters));
    if (json_is_array(pfilters) && json_array_extend(filters, (json_t *)pfilters) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (!shared) {
        /* parameters shared by other accounts (RAM) do not exist here: a Shared listing is empty */
        TRY_OUT(page_run(s->st, &pg, base, sub, token));
    }
    TRY_OUT(page_output(call, &pg));
out:
    json_decref(filters);
    json_decref(pg.items);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* GetParameterHistory                                                                          */

coffer_err ssm_op_GetParameterHistory(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *name = NULL, *token = NULL;
    bool decrypt = false;
    int64_t max = 50;
    bool has_max = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SSM_NAME_MAX, &name));
    TRY(api_in_bool(&in, "WithDecryption", false, &decrypt));
    TRY(api_in_int(&in, "MaxResults", 0, 1, 50, &max, &has_max));
    TRY(api_in_string(&in, "NextToken", 0, 1, 4096, &token));
    TRY(api_in_done(&in));
    max = has_max ? max : 50;
    size_t start = 0;
    if (token != NULL) {
        char *end = NULL;
        long long v = strtoll(token, &end, 10);
        if (end == token || *end != 0 || v <= 0 || v > SSM_MAX_VERSIONS) {
            return coffer_fail(COFFER_ERR_INVALID_MARKER, "The specified token is not valid.");
        }
        start = (size_t)v;
    }
    json_t *rec = NULL;
    const json_t *ver = NULL;
    char selector[SSM_LABEL_MAX + 2];
    TRY(ssm_resolve(s, call, name, &rec, &ver, selector, sizeof(selector)));
    coffer_err rc = COFFER_OK;
    json_t *items = json_array();
    if (items == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (selector[0] != 0) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND, "%s", ""); /* a history names no version */
    }
    const json_t *versions = json_object_get(rec, "Versions");
    const char *canon = json_string_value(json_object_get(rec, "Name"));
    size_t end =
        start + (size_t)max < json_array_size(versions) ? start + (size_t)max : json_array_size(versions);
    for (size_t i = start; i < end; i++) {
        const json_t *v = json_array_get(versions, i);
        json_t *value = NULL;
        TRY_OUT(ssm_value_json(s, call, canon, v, decrypt, &value));
        const json_t *labels = json_object_get(v, "Labels");
        json_t *h =
            json_pack("{s:s, s:s, s:o, s:s, s:o, s:I, s:o, s:s, s:[], s:s}", "Name", canon, "Type",
                      ssm_vstr(v, "Type"), "LastModifiedDate", ssm_date_of(v), "LastModifiedUser",
                      ssm_vstr(v, "LastModifiedUser"), "Value", value, "Version", ssm_vint(v, "Version"),
                      "Labels", labels != NULL ? json_deep_copy(labels) : json_array(), "Tier",
                      ssm_vstr(v, "Tier"), "Policies", "DataType", ssm_vstr(v, "DataType"));
        if (h == NULL || json_array_append_new(items, h) != 0 ||
            json_object_set_new(h, "Policies", ssm_policies_of(v)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        static const char *const optional[] = {"Description", "AllowedPattern", "KeyId", NULL};
        for (const char *const *o = optional; *o != NULL; o++) {
            if (ssm_vstr(v, *o) != NULL && json_object_set_new(h, *o, json_string(ssm_vstr(v, *o))) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
        }
    }
    call->output = json_pack("{s:O}", "Parameters", items);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (end < json_array_size(versions)) {
        char next[24];
        snprintf(next, sizeof(next), "%zu", end);
        if (json_object_set_new(call->output, "NextToken", json_string(next)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
out:
    json_decref(items);
    json_decref(rec);
    return rc;
}
