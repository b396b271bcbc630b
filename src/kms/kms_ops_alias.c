/*
 * Alias and tag operations (kms.md §8 "Aliases", "Tags"): CreateAlias, UpdateAlias,
 * DeleteAlias, ListAliases, TagResource, UntagResource, ListResourceTags. Alias records live
 * under kms/alias/<account>/<region>/<alias name>; tags live inside the key record.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_internal.h"

#define ALIAS_PREFIX "alias/"
#define ALIAS_RESERVED "alias/aws/"

static const char *const audit_alias[] = {"AliasName", "TargetKeyId", NULL};

/* Rules AWS applies to an AliasName beyond the model pattern. */
static coffer_err check_alias_name(const char *name, bool creating)
{
    if (strncmp(name, ALIAS_PREFIX, strlen(ALIAS_PREFIX)) != 0 || name[strlen(ALIAS_PREFIX)] == '\0') {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Alias must start with the prefix \"alias/\". Please see "
                           "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html");
    }
    if (creating && strncmp(name, ALIAS_RESERVED, strlen(ALIAS_RESERVED)) == 0) {
        /* AWS managed aliases are made by the services themselves, never by CreateAlias. */
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Alias names beginning with alias/aws/ are reserved for AWS managed keys.");
    }
    return COFFER_OK;
}

static coffer_err alias_not_found(const struct api_call *call, const char *name)
{
    char arn[KMS_ARN_MAX + KMS_ALIAS_MAX];
    kms_alias_arn(arn, sizeof(arn), call->region, call->caller->account_id, name);
    return coffer_fail(COFFER_ERR_NOT_FOUND, "Alias %s is not found.", arn);
}

/*
 * Reads the alias record inside the transaction that will change it (wmu held). wmu only
 * serialises this process: reading through the transaction is what keeps two nodes sharing a
 * database from both creating one alias, or both moving it from the same old key.
 * NOT_FOUND (no message) when absent.
 */
static coffer_err alias_get(store_txn *t, const char *skey, json_t **out)
{
    coffer_buf val = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    *out = NULL;
    TRY_OUT(store_txn_get(t, skey, &val));
    *out = json_loadb((const char *)val.data, val.len, 0, NULL);
    if (*out == NULL) {
        FAIL_OUT(COFFER_ERR_STORE, "corrupt alias record");
    }
out:
    coffer_buf_free(&val);
    return rc;
}

/*
 * Moves one alias between the per-key alias counters (key ids; NULL: no key on that side),
 * inside the transaction that writes the alias, before the alias record changes: a counter
 * rebuilt here still sees the old record.
 */
static coffer_err alias_counts(struct kms_service *svc, store_txn *t, const struct api_call *call,
                               const char *from, const char *to)
{
    char ck[STORE_KEY_BUF];
    if (from != NULL && to != NULL && strcmp(from, to) == 0) {
        return COFFER_OK;
    }
    if (to != NULL) {
        kms_count_aliases_key(ck, sizeof(ck), call->caller->account_id, call->region, to);
        TRY(kms_count_add(t, ck, 1, svc->limits.kms_aliases_per_key, "aliases for this KMS key"));
    }
    if (from != NULL) {
        kms_count_aliases_key(ck, sizeof(ck), call->caller->account_id, call->region, from);
        TRY(kms_count_add(t, ck, -1, 0, "aliases"));
    }
    return COFFER_OK;
}

/* Finishes *tp (the transaction alias_get read in): counters, record, commit. *tp is NULL after a
 * commit, committed or not; on an earlier failure the caller still aborts it. */
static coffer_err alias_put(struct kms_service *svc, store_txn **tp, const struct api_call *call,
                            const char *skey, const json_t *rec, const char *from)
{
    const char *to = json_string_value(json_object_get(rec, "TargetKeyId"));
    TRY(alias_counts(svc, *tp, call, from, to));
    TRY(kms_txn_put_json(*tp, skey, rec));
    coffer_err rc = store_txn_commit(*tp);
    *tp = NULL; /* commit frees the transaction, committed or not */
    return rc;
}

/* Alias operations need the action on the alias itself (identity policies only: an alias has
 * no resource policy) and on every key involved (kms.md, "Controlling access to aliases"). */
static coffer_err authorize_alias(const struct kms_service *svc, const struct api_call *call,
                                  const char *action, const char *alias)
{
    char arn[KMS_ARN_MAX + KMS_ALIAS_MAX];
    kms_alias_arn(arn, sizeof(arn), call->region, call->caller->account_id, alias);
    return kms_authorize_plain(svc, call, action, arn, NULL);
}

/* wmu held: the key an existing alias points to must allow `action` too. */
static coffer_err authorize_alias_target(struct kms_service *svc, const struct api_call *call,
                                         const char *action, const char *target)
{
    struct kms_key *old = NULL;
    if (target == NULL || svc->az == NULL) {
        return COFFER_OK;
    }
    coffer_err rc = kms_key_get_locked(svc, call->caller->account_id, call->region, target, &old);
    if (rc == COFFER_ERR_NOT_FOUND) {
        return COFFER_OK; /* a dangling alias: nothing left to protect */
    }
    TRY(rc);
    return kms_authorize_key(svc, call, old, &(struct kms_authz_in){.action = action});
}

static coffer_err set_alias(struct kms_service *svc, struct api_call *call, bool creating)
{
    struct kms_req r;
    struct kms_key *k = NULL;
    json_t *rec = NULL;
    store_txn *t = NULL;
    char skey[STORE_KEY_BUF], arn[KMS_ARN_MAX + KMS_ALIAS_MAX];
    kms_audit_request(call, audit_alias);
    TRY(kms_req_decode(creating ? KMS_OP_CreateAlias : KMS_OP_UpdateAlias, call->input, &r));
    TRY(check_alias_name(r.alias_name, creating));
    const char *action = creating ? "kms:CreateAlias" : "kms:UpdateAlias";
    TRY(authorize_alias(svc, call, action, r.alias_name));
    /* TargetKeyId: key id or key ARN only (kms.md §3). */
    TRY(kms_acquire_write(svc, call, r.target_key_id, 0, &k));
    kms_audit_key(call, k);
    int64_t now = kms_call_now_ms(call);
    coffer_err rc = COFFER_OK;
    TRY_OUT(kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = action, .r = &r}));
    TRY_OUT(kms_check_state(k, KMS_RULE_NOT_PENDING));
    kms_alias_store_key(skey, sizeof(skey), call->caller->account_id, call->region, r.alias_name);
    TRY_OUT(store_txn_begin(svc->st, &t));
    rc = alias_get(t, skey, &rec);
    if (creating && rc == COFFER_OK) {
        kms_alias_arn(arn, sizeof(arn), call->region, call->caller->account_id, r.alias_name);
        FAIL_OUT(COFFER_ERR_ALREADY_EXISTS, "An alias with the name %s already exists", arn);
    }
    if (!creating && rc == COFFER_ERR_NOT_FOUND) {
        rc = alias_not_found(call, r.alias_name);
        goto out;
    }
    if (creating && rc == COFFER_ERR_NOT_FOUND) {
        rec = json_pack("{s:s,s:I}", "AliasName", r.alias_name, "CreationDate", (json_int_t)now);
        rc = rec != NULL ? COFFER_OK : kms_nomem();
    }
    if (rc != COFFER_OK) {
        goto out;
    }
    char from[KMS_KEY_ID_MAX + 1] = "";
    if (!creating) {
        /* UpdateAlias: the key the alias leaves must allow it as well. */
        const char *old = json_string_value(json_object_get(rec, "TargetKeyId"));
        if (old != NULL && strcmp(old, k->key_id) != 0) {
            TRY_OUT(authorize_alias_target(svc, call, action, old));
        }
        snprintf(from, sizeof(from), "%s", old != NULL ? old : "");
    }
    if (json_object_set_new(rec, "TargetKeyId", json_string(k->key_id)) != 0 ||
        json_object_set_new(rec, "LastUpdatedDate", json_integer(now)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(alias_put(svc, &t, call, skey, rec, from[0] != '\0' ? from : NULL));
    rc = kms_alias_cache_set(svc, call->caller->account_id, call->region, r.alias_name, k->key_id);
out:
    store_txn_abort(t);
    kms_write_release(svc);
    json_decref(rec);
    return rc;
}

coffer_err kms_op_CreateAlias(void *state, struct api_call *call)
{
    return set_alias(state, call, true);
}

coffer_err kms_op_UpdateAlias(void *state, struct api_call *call)
{
    return set_alias(state, call, false);
}

coffer_err kms_op_DeleteAlias(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *rec = NULL;
    store_txn *t = NULL;
    char skey[STORE_KEY_BUF], arn[KMS_ARN_MAX];
    kms_audit_request(call, audit_alias);
    TRY(kms_req_decode(KMS_OP_DeleteAlias, call->input, &r));
    TRY(check_alias_name(r.alias_name, false));
    TRY(authorize_alias(svc, call, "kms:DeleteAlias", r.alias_name));
    kms_alias_store_key(skey, sizeof(skey), call->caller->account_id, call->region, r.alias_name);
    kms_write_begin(svc);
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_txn_begin(svc->st, &t));
    rc = alias_get(t, skey, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = alias_not_found(call, r.alias_name);
        goto out;
    }
    if (rc != COFFER_OK) {
        goto out;
    }
    const char *target = json_string_value(json_object_get(rec, "TargetKeyId"));
    if (target != NULL) {
        kms_key_arn(arn, sizeof(arn), call->region, call->caller->account_id, target);
        kms_audit_key_arn(call, call->caller->account_id, arn);
    }
    TRY_OUT(authorize_alias_target(svc, call, "kms:DeleteAlias", target));
    TRY_OUT(alias_counts(svc, t, call, target, NULL));
    TRY_OUT(store_txn_delete(t, skey));
    rc = store_txn_commit(t);
    t = NULL; /* commit frees the transaction, committed or not */
    TRY_OUT(rc);
    rc = kms_alias_cache_set(svc, call->caller->account_id, call->region, r.alias_name, NULL);
out:
    store_txn_abort(t);
    kms_write_release(svc);
    json_decref(rec);
    return rc;
}

struct alias_scan {
    const struct api_call *call;
    const char *filter; /* key id or NULL */
    size_t limit;
    json_t *list;
    char last[KMS_ALIAS_MAX + 1];
    bool truncated;
    size_t next_managed; /* the first AWS managed alias not yet passed (kms_managed_alias_name) */
};

static double ms_secs(const json_t *rec, const char *name)
{
    return (double)json_integer_value(json_object_get(rec, name)) / 1000.0;
}

/* Appends one alias (rec NULL: an AWS managed alias whose key does not exist yet) or stops at the limit. */
static coffer_err alias_emit(struct alias_scan *s, const char *name, const json_t *rec)
{
    if (json_array_size(s->list) == s->limit) {
        s->truncated = true;
        return STORE_SCAN_STOP;
    }
    char arn[KMS_ARN_MAX + KMS_ALIAS_MAX];
    kms_alias_arn(arn, sizeof(arn), s->call->region, s->call->caller->account_id, name);
    const char *target = json_string_value(json_object_get(rec, "TargetKeyId"));
    json_t *e = rec == NULL ? json_pack("{s:s,s:s}", "AliasName", name, "AliasArn", arn)
                            : json_pack("{s:s,s:s,s:f,s:f}", "AliasName", name, "AliasArn", arn,
                                        "CreationDate", ms_secs(rec, "CreationDate"), "LastUpdatedDate",
                                        ms_secs(rec, "LastUpdatedDate"));
    if (e == NULL || (target != NULL && json_object_set_new(e, "TargetKeyId", json_string(target)) != 0) ||
        json_array_append_new(s->list, e) != 0) {
        return kms_nomem();
    }
    snprintf(s->last, sizeof(s->last), "%s", name);
    return COFFER_OK;
}

/*
 * The AWS managed aliases that sort before `upto` (NULL: all that are left) and were not
 * listed yet, as AWS lists them before their keys exist. An alias in the store with the same
 * name is listed from the store instead. Not when filtering by key: they name no key.
 */
static coffer_err alias_emit_managed(struct alias_scan *s, const char *upto)
{
    for (; s->filter == NULL && s->next_managed < kms_managed_alias_count(); s->next_managed++) {
        const char *m = kms_managed_alias_name(s->next_managed);
        int cmp = upto != NULL ? strcmp(m, upto) : -1;
        if (cmp > 0) {
            break;
        }
        if (cmp < 0) {
            TRY(alias_emit(s, m, NULL));
        }
    }
    return COFFER_OK;
}

static coffer_err alias_scan_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct alias_scan *s = ctx;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    const char *name = json_string_value(json_object_get(rec, "AliasName"));
    const char *target = json_string_value(json_object_get(rec, "TargetKeyId"));
    coffer_err rc = COFFER_OK;
    (void)key;
    if (name == NULL) {
        goto out;
    }
    TRY_OUT(alias_emit_managed(s, name));
    if (s->filter != NULL && (target == NULL || strcmp(target, s->filter) != 0)) {
        goto out;
    }
    rc = alias_emit(s, name, rec);
out:
    json_decref(rec);
    return rc;
}

coffer_err kms_op_ListAliases(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    char prefix[STORE_KEY_BUF], start[2 * STORE_KEY_BUF], marker[KMS_ALIAS_MAX + 1], id[KMS_KEY_ID_MAX + 1];
    struct alias_scan s = {.call = call};
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListAliases, call->input, &r));
    TRY(kms_authorize_plain(svc, call, "kms:ListAliases", "*", &r));
    if (r.key_id != NULL) {
        /* Key id or key ARN (kms.md §3); the key must exist. */
        TRY(kms_acquire(svc, call, r.key_id, 0, &k));
        snprintf(id, sizeof(id), "%s", k->key_id);
        kms_audit_key(call, k);
        kms_release(svc);
        s.filter = id;
    }
    snprintf(prefix, sizeof(prefix), "kms/alias/%s/%s/", call->caller->account_id, call->region);
    start[0] = '\0';
    if (r.marker != NULL) {
        TRY(kms_marker_decode(r.marker, marker, sizeof(marker)));
        if (strncmp(marker, ALIAS_PREFIX, strlen(ALIAS_PREFIX)) != 0) {
            return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
        }
        snprintf(start, sizeof(start), "%s%s", prefix, marker);
    }
    s.limit = r.has_limit ? (size_t)r.limit : 50;
    s.list = json_array();
    if (s.list == NULL) {
        return kms_nomem();
    }
    /* Managed aliases at or before the marker were listed on an earlier page. */
    while (r.marker != NULL && s.next_managed < kms_managed_alias_count() &&
           strcmp(kms_managed_alias_name(s.next_managed), marker) <= 0) {
        s.next_managed++;
    }
    TRY_OUT(store_scan(svc->st, prefix, start, 0, alias_scan_cb, &s));
    if (!s.truncated) {
        rc = alias_emit_managed(&s, NULL);
        if (rc == STORE_SCAN_STOP) {
            rc = COFFER_OK;
        }
        TRY_OUT(rc);
    }
    call->output = json_pack("{s:O,s:b}", "Aliases", s.list, "Truncated", s.truncated);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (s.truncated) {
        TRY_OUT(kms_marker_encode(s.last, call->output));
    }
out:
    json_decref(s.list);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Tags                                                                                       */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_op_TagResource(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "Tags", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    json_t *tags = NULL, *rec = NULL;
    TRY(kms_begin_key_write(svc, call, KMS_OP_TagResource, audit, KMS_RULE_NOT_PENDING, &r, &k));
    coffer_err rc = COFFER_OK;
    TRY_OUT(kms_tags_merge(json_object_get(k->rec, "Tags"), r.tags, svc->limits.kms_tags_per_key, &tags));
    rec = json_deep_copy(k->rec);
    if (rec == NULL) {
        json_decref(tags);
        rc = kms_nomem();
        goto out;
    }
    /* json_object_set_new takes tags whether or not it succeeds. */
    if (json_object_set_new(rec, "Tags", tags) != 0) {
        json_decref(rec);
        rc = kms_nomem();
        goto out;
    }
    rc = kms_key_update(svc, k, rec, NULL, NULL); /* takes rec */
out:
    kms_write_release(svc);
    return rc;
}

coffer_err kms_op_UntagResource(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "TagKeys", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    TRY(kms_begin_key_write(svc, call, KMS_OP_UntagResource, audit, KMS_RULE_NOT_PENDING, &r, &k));
    coffer_err rc = COFFER_OK;
    json_t *rec = json_deep_copy(k->rec);
    if (rec == NULL) {
        rc = kms_nomem();
    } else {
        json_t *tags = json_object_get(rec, "Tags");
        size_t i, j;
        const json_t *name;
        json_array_foreach(r.tag_keys, i, name)
        {
            for (j = 0; j < json_array_size(tags); j++) {
                const char *tk = json_string_value(json_object_get(json_array_get(tags, j), "TagKey"));
                if (tk != NULL && strcmp(tk, json_string_value(name)) == 0) {
                    json_array_remove(tags, j);
                    break;
                }
            }
        }
        rc = kms_key_update(svc, k, rec, NULL, NULL);
    }
    kms_write_release(svc);
    return rc;
}

coffer_err kms_op_ListResourceTags(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    char marker[32];
    size_t from = 0;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListResourceTags, call->input, &r));
    if (r.marker != NULL) {
        char *end = NULL;
        TRY(kms_marker_decode(r.marker, marker, sizeof(marker)));
        unsigned long long v = 0;
        if (strncmp(marker, "tag:", 4) != 0 || (v = strtoull(marker + 4, &end, 10)) == 0 || *end != '\0' ||
            v > svc->limits.kms_tags_per_key) {
            return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
        }
        from = (size_t)v;
    }
    size_t limit = r.has_limit ? (size_t)r.limit : 50;
    TRY(kms_acquire(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    coffer_err arc =
        kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:ListResourceTags", .r = &r});
    if (arc != COFFER_OK) {
        kms_release(svc);
        return arc;
    }
    const json_t *tags = json_object_get(k->rec, "Tags");
    size_t n = json_array_size(tags);
    json_t *list = json_array();
    for (size_t i = from; list != NULL && i < n && i < from + limit; i++) {
        const json_t *t = json_array_get(tags, i);
        json_array_append_new(list, json_pack("{s:s,s:s}", "TagKey",
                                              json_string_value(json_object_get(t, "TagKey")), "TagValue",
                                              json_string_value(json_object_get(t, "TagValue"))));
    }
    kms_release(svc);
    bool truncated = from + limit < n;
    call->output = json_pack("{s:o,s:b}", "Tags", list, "Truncated", truncated);
    if (call->output == NULL) {
        return kms_nomem();
    }
    if (truncated) {
        snprintf(marker, sizeof(marker), "tag:%zu", from + limit);
        TRY(kms_marker_encode(marker, call->output));
    }
    return COFFER_OK;
}
