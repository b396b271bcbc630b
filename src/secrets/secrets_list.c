/*
 * Listing and the life cycle of secrets: ListSecrets, DeleteSecret, RestoreSecret, TagResource,
 * UntagResource, and the job that deletes secrets at the end of their recovery window.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "crypto/crypto.h"
#include "secrets/secrets_internal.h"

coffer_err sm_token_offset(const char *token, size_t *offset)
{
    *offset = 0;
    if (token == NULL) {
        return COFFER_OK;
    }
    char *end = NULL;
    unsigned long long v = strtoull(token, &end, 10);
    if (end == token || *end != 0 || token[0] == '-' || v > 1000000000ULL) {
        return coffer_fail(COFFER_ERR_INVALID_MARKER, "The NextToken value is invalid.");
    }
    *offset = (size_t)v;
    return COFFER_OK;
}

struct collect {
    const json_t *filters;
    bool include_deleted;
    json_t *out;
};

static coffer_err collect_one(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    struct collect *c = ctx;
    json_error_t jerr;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, &jerr);
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_INTERNAL, "corrupt secret record");
    }
    coffer_err rc = COFFER_OK;
    bool deleted = json_object_get(rec, "DeletedDate") != NULL;
    if ((c->include_deleted || !deleted) && (c->filters == NULL || sm_filters_pass(c->filters, rec))) {
        /* the listing never needs the values: drop them early */
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rec, "Versions"), i, v)
        {
            json_object_del(v, "DataKey");
            json_object_del(v, "Data");
            json_object_del(v, "Iv");
        }
        rc = json_array_append(c->out, rec) == 0 ? COFFER_OK : sm_oom();
    }
    json_decref(rec);
    return rc;
}

coffer_err sm_list_collect(const struct sm *s, const struct api_call *call, const json_t *filters,
                           bool include_deleted, json_t **out)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "secrets/%s/%s/", call->caller->account_id, call->region);
    struct collect c = {.filters = filters, .include_deleted = include_deleted, .out = json_array()};
    if (c.out == NULL) {
        return sm_oom();
    }
    coffer_err rc = store_scan(s->st, prefix, NULL, 0, collect_one, &c);
    if (rc != COFFER_OK) {
        json_decref(c.out);
        return rc;
    }
    *out = c.out;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* ListSecrets                                                                                  */

static const char *const sort_keys[] = {"created-date", "last-accessed-date", "last-changed-date", "name",
                                        NULL};
static const char *const sort_orders[] = {"asc", "desc", NULL};

struct sort_spec {
    int by; /* index in sort_keys */
    bool desc;
};

static int compare_records(const void *a, const void *b, void *arg)
{
    const struct sort_spec *spec = arg;
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c;
    if (spec->by == 3) {
        c = strcmp(sm_str(x, "Name"), sm_str(y, "Name"));
    } else {
        const char *m = spec->by == 0   ? "CreatedDate"
                        : spec->by == 1 ? "LastAccessedDate"
                                        : "LastChangedDate";
        int64_t p = sm_int(x, m), q = sm_int(y, m);
        c = p < q ? -1 : p > q ? 1 : strcmp(sm_str(x, "Name"), sm_str(y, "Name"));
    }
    return spec->desc ? -c : c;
}

static coffer_err sort_records(json_t *recs, int by, bool desc)
{
    size_t n = json_array_size(recs);
    json_t **items = calloc(n + 1, sizeof(*items));
    if (items == NULL) {
        return sm_oom();
    }
    for (size_t i = 0; i < n; i++) {
        items[i] = json_incref(json_array_get(recs, i));
    }
    struct sort_spec spec = {.by = by, .desc = desc};
    qsort_r(items, n, sizeof(*items), compare_records, &spec);
    json_array_clear(recs);
    coffer_err rc = COFFER_OK;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(recs, items[i]) != 0) {
            rc = sm_oom();
        }
    }
    free(items);
    return rc;
}

coffer_err sm_op_ListSecrets(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *token = NULL;
    int64_t max = 100;
    bool has_max = false, include_deleted = false;
    int by = -1, order = -1;
    api_in_init(&in, call->input);
    TRY(api_in_bool(&in, "IncludePlannedDeletion", false, &include_deleted));
    TRY(api_in_int(&in, "MaxResults", 0, 1, 100, &max, &has_max));
    TRY(api_in_string(&in, "NextToken", 0, 1, 4096, &token));
    TRY(api_in_enum(&in, "SortOrder", 0, sort_orders, &order));
    TRY(api_in_enum(&in, "SortBy", 0, sort_keys, &by));
    TRY(api_in_done(&in));
    max = has_max ? max : 100;
    const json_t *filters = json_object_get(call->input, "Filters");
    filters = json_is_null(filters) ? NULL : filters;
    TRY(sm_filters_check(filters));
    size_t offset = 0;
    TRY(sm_token_offset(token, &offset));
    TRY(sm_authorize_any(s, call, "ListSecrets"));
    json_t *recs = NULL, *items = json_array();
    coffer_err rc = COFFER_OK;
    if (items == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(sm_list_collect(s, call, filters, include_deleted, &recs));
    TRY_OUT(sort_records(recs, by < 0 ? 0 : by, order == 1));
    size_t end = offset + (size_t)max < json_array_size(recs) ? offset + (size_t)max : json_array_size(recs);
    for (size_t i = offset; i < end; i++) {
        struct sm_secret sec = {.rec = json_array_get(recs, i)};
        coffer_str_copy(sec.name, sizeof(sec.name), sm_str(sec.rec, "Name"));
        sm_secret_arn(call->region, call->caller->account_id, sec.name, sm_str(sec.rec, "Suffix"), sec.arn,
                      sizeof(sec.arn));
        if (json_array_append_new(items, sm_describe_json(&sec, true)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    call->output = json_pack("{s:O}", "SecretList", items);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (end < json_array_size(recs)) {
        char next[32];
        snprintf(next, sizeof(next), "%zu", end);
        if (json_object_set_new(call->output, "NextToken", json_string(next)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
out:
    json_decref(recs);
    json_decref(items);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* DeleteSecret, RestoreSecret                                                                  */

coffer_err sm_op_DeleteSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    int64_t days = 30;
    bool has_days = false, force = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_int(&in, "RecoveryWindowInDays", 0, INT64_MIN, INT64_MAX, &days, &has_days));
    TRY(api_in_bool(&in, "ForceDeleteWithoutRecovery", false, &force));
    TRY(api_in_done(&in));
    if (force && has_days) {
        return coffer_fail(
            COFFER_ERR_INVALID_PARAMETER,
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.");
    }
    if (has_days && (days < 7 || days > 30)) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).");
    }
    days = has_days ? days : 30;
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    rc = sm_resolve(s, NULL, call, id, &sec);
    if (rc == COFFER_ERR_NOT_FOUND && force && strncmp(id, "arn:", 4) != 0 &&
        sm_name_check(id) == COFFER_OK) {
        /* AWS answers a forced deletion of a secret that does not exist as done */
        coffer_clear_err();
        rc = sm_authorize_any(s, call, "DeleteSecret");
        if (rc == COFFER_OK) {
            call->output =
                json_pack("{s:s, s:s, s:o}", "ARN", "", "Name", id, "DeletionDate", sm_date(call->now_ms));
            rc = call->output != NULL ? COFFER_OK : sm_oom();
        }
        goto out;
    }
    TRY_OUT(rc);
    TRY_OUT(sm_authorize(s, call, "DeleteSecret", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_no_replicas(&sec));
    int64_t old = sm_int(sec.rec, "DeletionDate");
    if (!force && json_object_get(sec.rec, "DeletedDate") != NULL) {
        FAIL_OUT(COFFER_ERR_INVALID_STATE,
                 "You tried to perform the operation on a secret that's currently marked "
                 "deleted.");
    }
    int64_t when = force ? call->now_ms : call->now_ms + days * s->day_ms;
    char arn[SM_ARN_MAX];
    coffer_str_copy(arn, sizeof(arn), sec.arn);
    if (force) {
        json_decref(sec.rec);
        sec.rec = NULL;
    } else if (json_object_set_new(sec.rec, "DeletedDate", json_integer(call->now_ms)) != 0 ||
               json_object_set_new(sec.rec, "DeletionDate", json_integer(when)) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(sm_save(s, &sec, old));
    call->output = json_pack("{s:s, s:s, s:o}", "ARN", arn, "Name", sec.name, "DeletionDate", sm_date(when));
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_RestoreSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "RestoreSecret", &sec));
    TRY_OUT(sm_check_writable(&sec));
    int64_t old = sm_int(sec.rec, "DeletionDate");
    json_object_del(sec.rec, "DeletedDate");
    json_object_del(sec.rec, "DeletionDate");
    TRY_OUT(sm_save(s, &sec, old));
    if ((call->output = json_pack("{s:s, s:s}", "ARN", sec.arn, "Name", sec.name)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Tags                                                                                         */

coffer_err sm_op_TagResource(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    const json_t *tags = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_tags(&in, "Tags", API_IN_REQUIRED, "Key", "Value", &tags));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "TagResource", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    json_t *have = json_object_get(sec.rec, "Tags");
    size_t i, j;
    const json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (strncmp(sm_str(t, "Key"), "aws:", 4) == 0) {
            FAIL_OUT(COFFER_ERR_INVALID_PARAMETER, "Invalid tag key: the prefix aws: is reserved.");
        }
        bool replaced = false;
        json_t *h;
        json_array_foreach(have, j, h)
        {
            if (strcmp(sm_str(h, "Key"), sm_str(t, "Key")) == 0) {
                json_object_set_new(h, "Value", json_string(sm_str(t, "Value")));
                replaced = true;
            }
        }
        if (!replaced && json_array_append_new(have, json_pack("{s:s, s:s}", "Key", sm_str(t, "Key"), "Value",
                                                               sm_str(t, "Value"))) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (json_array_size(have) > SM_MAX_TAGS) {
        FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED,
                 "The request failed because it would exceed one of the Secrets Manager quotas: a secret can "
                 "have at most 50 tags.");
    }
    TRY_OUT(sm_save(s, &sec, 0));
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_UntagResource(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    const json_t *keys = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string_list(&in, "TagKeys", API_IN_REQUIRED, 0, 50, 1, 128, &keys));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "UntagResource", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    json_t *have = json_object_get(sec.rec, "Tags");
    size_t i;
    const json_t *k;
    json_array_foreach(keys, i, k)
    {
        for (size_t j = 0; j < json_array_size(have);) {
            if (strcmp(sm_str(json_array_get(have, j), "Key"), json_string_value(k)) == 0) {
                json_array_remove(have, j);
            } else {
                j++;
            }
        }
    }
    TRY_OUT(sm_save(s, &sec, 0));
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The deletion job                                                                             */

/* CloudTrail records the end of a recovery window as the service's own DeleteSecret. */
static coffer_err record_deletion(struct sm *s, const char *account, const char *region, const char *arn,
                                  int64_t now_ms)
{
    if (s->record == NULL) {
        return COFFER_OK;
    }
    char when[40], ids[1][CRYPTO_UUID_STR_LEN + 1];
    TRY(crypto_uuid_v4_many(ids, 1));
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *source = "secretsmanager.amazonaws.com";
    json_t *ev =
        json_pack("{s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:n,s:n,s:s,s:b,"
                  "s:[{s:s,s:s,s:s}],s:s,s:b,s:s,s:s}",
                  "eventVersion", "1.08", "userIdentity", "accountId", account, "invokedBy", source,
                  "eventTime", when, "eventSource", source, "eventName", "DeleteSecret", "awsRegion", region,
                  "sourceIPAddress", source, "userAgent", source, "requestParameters", "responseElements",
                  "eventID", ids[0], "readOnly", 0, "resources", "accountId", account, "type",
                  "AWS::SecretsManager::Secret", "ARN", arn, "eventType", "AwsServiceEvent",
                  "managementEvent", 1, "recipientAccountId", account, "eventCategory", "Management");
    if (ev == NULL) {
        return sm_oom();
    }
    coffer_err rc = s->record(s->record_ctx, ev);
    json_decref(ev);
    return rc;
}

/* One due entry of the deletion index: the secret removed if its window ended, the entry dropped. */
static coffer_err sweep_one(struct sm *s, const char *ikey, const char *rkey, int64_t when, int64_t now_ms)
{
    (void)when; /* the record decides: it may have been restored or re-scheduled since */
    json_t *rec = NULL;
    store_txn *t = NULL;
    coffer_err rc = sm_load(s, NULL, rkey, &rec);
    bool due = rc == COFFER_OK && rec != NULL && json_object_get(rec, "DeletionDate") != NULL &&
               sm_int(rec, "DeletionDate") <= now_ms;
    if (due) {
        /* "secrets/<account>/<region>/<name>" */
        char account[API_ACCOUNT_ID_LEN + 1] = "", region[64] = "", arn[SM_ARN_MAX];
        const char *p = rkey + strlen("secrets/");
        const char *slash = strchr(p, '/');
        const char *slash2 = slash != NULL ? strchr(slash + 1, '/') : NULL;
        if (slash != NULL && slash2 != NULL) {
            snprintf(account, sizeof(account), "%.*s", (int)(slash - p), p);
            snprintf(region, sizeof(region), "%.*s", (int)(slash2 - slash - 1), slash + 1);
            sm_secret_arn(region, account, slash2 + 1, sm_str(rec, "Suffix"), arn, sizeof(arn));
            rc = record_deletion(s, account, region, arn, now_ms);
        }
    }
    if (rc == COFFER_OK) {
        rc = store_txn_begin(s->st, &t);
    }
    if (rc == COFFER_OK && due) {
        rc = store_txn_delete(t, rkey);
    }
    if (rc == COFFER_OK) {
        /* the index entry goes whether or not the secret was due (restored, re-scheduled) */
        rc = store_txn_delete(t, ikey);
    }
    if (rc == COFFER_OK) {
        rc = store_txn_commit(t);
        t = NULL;
    }
    store_txn_abort(t);
    if (due) {
        json_cache_invalidate(s->cache, rkey);
    }
    json_decref(rec);
    return rc;
}

coffer_err sm_sweep(void *ctx, int64_t now_ms)
{
    return sm_walk_due(ctx, SM_DELETION_PREFIX, now_ms, NULL, sweep_one);
}
