/*
 * The values of secrets: CreateSecret, GetSecretValue, BatchGetSecretValue, PutSecretValue,
 * UpdateSecret, UpdateSecretVersionStage, DescribeSecret and ListSecretVersionIds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "crypto/crypto.h"
#include "secrets/secrets_internal.h"

static json_t *arn_name(const struct sm_secret *sec)
{
    return json_pack("{s:s, s:s}", "ARN", sec->arn, "Name", sec->name);
}

/* The ClientRequestToken, or a fresh UUID as the SDKs would have sent. */
static coffer_err version_id(const char *token, char out[65])
{
    if (token != NULL) {
        coffer_str_copy(out, 65, token);
        return COFFER_OK;
    }
    char u[CRYPTO_UUID_STR_LEN + 1];
    TRY(crypto_uuid_v4(u));
    coffer_str_copy(out, 65, u);
    return COFFER_OK;
}

/* A new version `vid` holding `value`, encrypted under `key_id`; appended to the record. */
static coffer_err add_version(const struct sm *s, const struct api_call *call, struct sm_secret *sec,
                              const char *vid, const char *key_id, const struct sm_value *value, json_t **out)
{
    json_t *ver =
        json_pack("{s:s, s:[], s:I}", "VersionId", vid, "Stages", "CreatedDate", (json_int_t)call->now_ms);
    if (ver == NULL) {
        return sm_oom();
    }
    coffer_err rc = sm_value_seal(s, call, sec, key_id, sm_value_cursor(value), value->has_binary, ver);
    if (rc == COFFER_OK && json_array_append(json_object_get(sec->rec, "Versions"), ver) != 0) {
        rc = sm_oom();
    }
    json_decref(ver);
    *out = rc == COFFER_OK ? ver : NULL;
    return rc;
}

/* Whether the stored value of `ver` is `value` (idempotent retries). */
static coffer_err same_value(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                             const json_t *ver, const struct sm_value *value, bool *same)
{
    coffer_buf plain;
    TRY(sm_value_open(s, call, sec, ver, &plain));
    coffer_cursor v = sm_value_cursor(value);
    *same = json_is_true(json_object_get(ver, "Binary")) == value->has_binary && plain.len == v.len &&
            crypto_memcmp(plain.data, v.ptr, v.len) == 0;
    coffer_buf_free(&plain);
    return COFFER_OK;
}

static coffer_err token_in_use(const char *token, const struct sm_secret *sec)
{
    return coffer_fail(
        COFFER_ERR_ALREADY_EXISTS,
        "You can't use ClientRequestToken %s because that value is already in use for a version of "
        "secret %s.",
        token, sec->arn);
}

static coffer_err too_many_versions(const json_t *versions)
{
    if (json_array_size(versions) > SM_MAX_VERSIONS) {
        return coffer_fail(
            COFFER_ERR_LIMIT_EXCEEDED,
            "You have exceeded the maximum number of versions (%d) of a secret; unlabeled versions "
            "are removed once they are a day old.",
            SM_MAX_VERSIONS);
    }
    return COFFER_OK;
}

static coffer_err tags_check(const json_t *tags)
{
    if (json_array_size(tags) > SM_MAX_TAGS) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED,
                           "The request failed because it would exceed one of the Secrets "
                           "Manager quotas: a secret can have at most 50 tags.");
    }
    size_t i;
    const json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (strncmp(sm_str(t, "Key"), "aws:", 4) == 0) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER, "Invalid tag key: the prefix aws: is reserved.");
        }
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* CreateSecret                                                                                 */

static coffer_err random_suffix(char out[SM_SUFFIX_LEN + 1])
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (int i = 0; i < SM_SUFFIX_LEN;) {
        unsigned char b;
        TRY(crypto_random(&b, 1));
        if (b < 248) { /* 248 = 4 * 62: no modulo bias */
            out[i++] = alnum[b % 62];
        }
    }
    out[SM_SUFFIX_LEN] = 0;
    return COFFER_OK;
}

coffer_err sm_op_CreateSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *name = NULL, *token = NULL, *description = NULL, *key_id = NULL;
    const json_t *tags = NULL, *replicas = NULL;
    bool force = false;
    struct sm_value value;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SM_NAME_MAX, &name));
    TRY(api_in_string(&in, "ClientRequestToken", 0, 32, 64, &token));
    TRY(api_in_string(&in, "Description", 0, 0, 2048, &description));
    TRY(api_in_string(&in, "KmsKeyId", 0, 0, 2048, &key_id));
    coffer_err rc = sm_value_read(&in, &value);
    if (rc == COFFER_OK) {
        rc = api_in_tags(&in, "Tags", 0, "Key", "Value", &tags);
    }
    if (rc == COFFER_OK) {
        rc = api_in_bool(&in, "ForceOverwriteReplicaSecret", false, &force);
    }
    if (rc == COFFER_OK) {
        rc = api_in_done(&in);
    }
    if (rc != COFFER_OK) {
        sm_value_free(&value);
        return rc;
    }
    struct sm_secret sec = {0};
    bool locked = false;
    TRY_OUT(sm_name_check(name));
    TRY_OUT(sm_value_check(&value, false));
    TRY_OUT(tags_check(tags));
    replicas = json_object_get(call->input, "AddReplicaRegions");
    TRY_OUT(sm_replicas_parse(s, call, replicas, false));
    pthread_mutex_lock(&s->wmu);
    locked = true;
    rc = sm_resolve(s, NULL, call, name, &sec);
    if (rc == COFFER_OK) {
        TRY_OUT(sm_authorize(s, call, "CreateSecret", &sec));
        if (json_object_get(sec.rec, "DeletedDate") != NULL) {
            FAIL_OUT(COFFER_ERR_INVALID_STATE,
                     "You can't create this secret because a secret with this name is "
                     "already scheduled for deletion.");
        }
        json_t *ver = token != NULL ? sm_version_find(json_object_get(sec.rec, "Versions"), token) : NULL;
        bool same = false;
        if (ver != NULL && sm_value_given(&value)) {
            TRY_OUT(same_value(s, call, &sec, ver, &value, &same));
        }
        if (!same) {
            FAIL_OUT(COFFER_ERR_ALREADY_EXISTS, "The operation failed because the secret %s already exists.",
                     name);
        }
        call->output = json_pack("{s:s, s:s, s:s}", "ARN", sec.arn, "Name", sec.name, "VersionId", token);
        if (call->output == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        goto out;
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    coffer_clear_err();
    rc = COFFER_OK;
    char suffix[SM_SUFFIX_LEN + 1];
    TRY_OUT(random_suffix(suffix));
    coffer_str_copy(sec.account, sizeof(sec.account), call->caller->account_id);
    coffer_str_copy(sec.region, sizeof(sec.region), call->region);
    coffer_str_copy(sec.name, sizeof(sec.name), name);
    sm_record_key(sec.account, sec.region, name, sec.key, sizeof(sec.key));
    sm_secret_arn(sec.region, sec.account, name, suffix, sec.arn, sizeof(sec.arn));
    TRY_OUT(sm_authorize(s, call, "CreateSecret", &sec));
    if (json_array_size(replicas) > 0) {
        /* AWS asks for both permissions of a secret created with replicas */
        TRY_OUT(sm_authorize(s, call, "ReplicateSecretToRegions", &sec));
    }
    sec.rec =
        json_pack("{s:s, s:s, s:I, s:I, s:[], s:[]}", "Name", name, "Suffix", suffix, "CreatedDate",
                  (json_int_t)call->now_ms, "LastChangedDate", (json_int_t)call->now_ms, "Tags", "Versions");
    if (sec.rec == NULL ||
        (description != NULL && json_object_set_new(sec.rec, "Description", json_string(description)) != 0) ||
        (key_id != NULL && key_id[0] != 0 &&
         json_object_set_new(sec.rec, "KmsKeyId", json_string(key_id)) != 0) ||
        (tags != NULL && json_object_set_new(sec.rec, "Tags", json_deep_copy(tags)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    char vid[65] = "";
    if (sm_value_given(&value)) {
        json_t *ver = NULL;
        TRY_OUT(version_id(token, vid));
        TRY_OUT(add_version(s, call, &sec, vid, key_id, &value, &ver));
        TRY_OUT(sm_label_attach(json_object_get(sec.rec, "Versions"), ver, SM_CURRENT));
    }
    if (json_array_size(replicas) > 0) {
        TRY_OUT(sm_replicas_add(&sec, replicas, force, call->region));
    }
    TRY_OUT(sm_save(s, &sec, 0));
    call->output = arn_name(&sec);
    if (call->output == NULL ||
        (vid[0] != 0 && json_object_set_new(call->output, "VersionId", json_string(vid)) != 0) ||
        (json_array_size(replicas) > 0 &&
         json_object_set_new(call->output, "ReplicationStatus", sm_replication_status(sec.rec)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    if (locked) {
        pthread_mutex_unlock(&s->wmu);
    }
    sm_secret_free(&sec);
    sm_value_free(&value);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* GetSecretValue                                                                               */

coffer_err sm_value_output(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                           const json_t *ver, json_t **out)
{
    coffer_buf plain, b64;
    coffer_buf_init(&b64, true);
    *out = NULL;
    TRY(sm_value_open(s, call, sec, ver, &plain));
    coffer_err rc = COFFER_OK;
    json_t *value = NULL;
    if (json_is_true(json_object_get(ver, "Binary"))) {
        TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&plain), &b64));
        value = json_stringn((const char *)b64.data, b64.len);
    } else {
        value = json_stringn((const char *)plain.data, plain.len);
    }
    const char *member = json_is_true(json_object_get(ver, "Binary")) ? "SecretBinary" : "SecretString";
    *out = json_pack("{s:s, s:s, s:s, s:o, s:O, s:o}", "ARN", sec->arn, "Name", sec->name, "VersionId",
                     sm_str(ver, "VersionId"), member, value, "VersionStages", json_object_get(ver, "Stages"),
                     "CreatedDate", sm_date(sm_int(ver, "CreatedDate")));
    if (*out == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    coffer_buf_free(&plain);
    coffer_buf_free(&b64);
    return rc;
}

/* The version a read selects: VersionId and/or VersionStage (AWSCURRENT when neither). */
static coffer_err select_version(const struct sm_secret *sec, const char *vid, const char *stage,
                                 json_t **out)
{
    const json_t *versions = json_object_get(sec->rec, "Versions");
    json_t *ver = NULL;
    if (vid != NULL) {
        ver = sm_version_find(versions, vid);
        if (ver == NULL || (stage != NULL && !sm_has_label(ver, stage))) {
            return coffer_fail(COFFER_ERR_NOT_FOUND,
                               "Secrets Manager can't find the specified secret value for VersionId: %s",
                               vid);
        }
    } else {
        stage = stage != NULL ? stage : SM_CURRENT;
        ver = sm_label_owner(versions, stage);
        if (ver == NULL) {
            return coffer_fail(COFFER_ERR_NOT_FOUND,
                               "Secrets Manager can't find the specified secret value for staging label: %s",
                               stage);
        }
    }
    if (sm_str(ver, "Data") == NULL) {
        return coffer_fail(COFFER_ERR_NOT_FOUND,
                           "Secrets Manager can't find the specified secret value for VersionId: %s",
                           sm_str(ver, "VersionId"));
    }
    *out = ver;
    return COFFER_OK;
}

/*
 * LastAccessedDate is a day: the record is written on the first read of a day only, so reads
 * stay reads. A failure to write it is not the reader's failure.
 */
static void note_access(struct sm *s, const struct api_call *call, const struct sm_secret *read,
                        const char *vid)
{
    int64_t today = sm_day_of(call->now_ms);
    const json_t *ver = sm_version_find(json_object_get(read->rec, "Versions"), vid);
    if (sm_int(read->rec, "LastAccessedDate") == today && sm_int(ver, "LastAccessedDate") == today) {
        return;
    }
    pthread_mutex_lock(&s->wmu);
    struct sm_secret sec = *read;
    sec.rec = NULL;
    sec.push = SM_PUSH_LEAVE; /* an access is this region's own: nothing for the replicas */
    if (sm_load(s, NULL, sec.key, &sec.rec) == COFFER_OK && sec.rec != NULL &&
        strcmp(sm_str(sec.rec, "Suffix"), sm_str(read->rec, "Suffix")) == 0) {
        /* saved over what was just loaded, not over what the read (maybe cached) saw */
        sec.stored = true;
        sec.revision = sm_int(sec.rec, "Revision");
        json_t *v = sm_version_find(json_object_get(sec.rec, "Versions"), vid);
        json_object_set_new(sec.rec, "LastAccessedDate", json_integer(today));
        if (v != NULL) {
            json_object_set_new(v, "LastAccessedDate", json_integer(today));
        }
        int64_t del = sm_int(sec.rec, "DeletionDate");
        if (sm_save(s, &sec, del) != COFFER_OK) {
            coffer_clear_err();
        }
    }
    coffer_clear_err();
    sm_secret_free(&sec);
    pthread_mutex_unlock(&s->wmu);
}

coffer_err sm_op_GetSecretValue(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *vid = NULL, *stage = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "VersionId", 0, 32, 64, &vid));
    TRY(api_in_string(&in, "VersionStage", 0, 1, 256, &stage));
    TRY(api_in_done(&in));
    struct sm_secret sec;
    TRY(sm_resolve_read(s, call, id, &sec));
    coffer_err rc = COFFER_OK;
    json_t *ver = NULL;
    TRY_OUT(sm_authorize(s, call, "GetSecretValue", &sec));
    TRY_OUT(sm_check_live(&sec));
    TRY_OUT(select_version(&sec, vid, stage, &ver));
    TRY_OUT(sm_value_output(s, call, &sec, ver, &call->output));
    note_access(s, call, &sec, sm_str(ver, "VersionId"));
out:
    sm_secret_free(&sec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* BatchGetSecretValue                                                                          */

static coffer_err batch_one(struct sm *s, struct api_call *call, const char *id, json_t *values,
                            json_t *errors)
{
    struct sm_secret sec = {0};
    json_t *ver = NULL, *item = NULL;
    coffer_err rc = sm_resolve_read(s, call, id, &sec);
    if (rc == COFFER_OK) {
        rc = sm_authorize(s, call, "GetSecretValue", &sec);
    }
    if (rc == COFFER_OK) {
        rc = sm_check_live(&sec);
    }
    if (rc == COFFER_OK) {
        rc = select_version(&sec, NULL, NULL, &ver);
    }
    if (rc == COFFER_OK) {
        rc = sm_value_output(s, call, &sec, ver, &item);
    }
    if (rc == COFFER_OK) {
        note_access(s, call, &sec, sm_str(ver, "VersionId"));
        rc = json_array_append_new(values, item) == 0 ? COFFER_OK : sm_oom();
    } else if (rc != COFFER_ERR_NOMEM && rc != COFFER_ERR_STORE && rc != COFFER_ERR_AUDIT) {
        struct api_error e = api_service_error(&s->api, rc);
        char msg[512];
        coffer_str_copy(msg, sizeof(msg), api_service_error_message(&s->api, rc));
        rc = json_array_append_new(errors, json_pack("{s:s, s:s, s:s}", "SecretId", id, "ErrorCode", e.type,
                                                     "Message", msg)) == 0
                 ? COFFER_OK
                 : sm_oom();
        coffer_clear_err();
    }
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_BatchGetSecretValue(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const json_t *ids = NULL;
    const char *token = NULL;
    int64_t max = 20;
    bool has_max = false;
    api_in_init(&in, call->input);
    TRY(api_in_string_list(&in, "SecretIdList", 0, 1, 20, 1, SM_ID_MAX, &ids));
    TRY(api_in_int(&in, "MaxResults", 0, 1, 20, &max, &has_max));
    TRY(api_in_string(&in, "NextToken", 0, 1, 4096, &token));
    TRY(api_in_done(&in));
    const json_t *filters = json_object_get(call->input, "Filters");
    filters = json_is_null(filters) ? NULL : filters;
    if ((ids == NULL) == (filters == NULL)) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "Either 'SecretIdList' or 'Filters' must be provided, but not both.");
    }
    if (has_max && filters == NULL) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "'Filters' not specified. 'Filters' must also be specified when 'MaxResults' is "
                           "provided.");
    }
    TRY(sm_filters_check(filters));
    TRY(sm_authorize_any(s, call, "BatchGetSecretValue"));
    size_t offset = 0;
    TRY(sm_token_offset(token, &offset));
    coffer_err rc = COFFER_OK;
    json_t *values = json_array(), *errors = json_array(), *recs = NULL;
    char next[32] = "";
    if (values == NULL || errors == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (ids != NULL) {
        size_t i;
        const json_t *id;
        json_array_foreach(ids, i, id)
        {
            TRY_OUT(batch_one(s, call, json_string_value(id), values, errors));
        }
    } else {
        TRY_OUT(sm_list_collect(s, call, filters, false, &recs));
        size_t end =
            offset + (size_t)max < json_array_size(recs) ? offset + (size_t)max : json_array_size(recs);
        for (size_t i = offset; i < end; i++) {
            const json_t *r = json_array_get(recs, i);
            char arn[SM_ARN_MAX];
            sm_secret_arn(call->region, call->caller->account_id, sm_str(r, "Name"), sm_str(r, "Suffix"), arn,
                          sizeof(arn));
            TRY_OUT(batch_one(s, call, arn, values, errors));
        }
        if (end < json_array_size(recs)) {
            snprintf(next, sizeof(next), "%zu", end);
        }
    }
    call->output = json_pack("{s:O, s:O}", "SecretValues", values, "Errors", errors);
    if (call->output == NULL ||
        (next[0] != 0 && json_object_set_new(call->output, "NextToken", json_string(next)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    json_decref(values);
    json_decref(errors);
    json_decref(recs);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* PutSecretValue                                                                               */

coffer_err sm_op_PutSecretValue(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *token = NULL, *rotation_token = NULL;
    const json_t *stages = NULL;
    struct sm_value value;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "ClientRequestToken", 0, 32, 64, &token));
    coffer_err rc = sm_value_read(&in, &value);
    if (rc == COFFER_OK) {
        rc = api_in_string_list(&in, "VersionStages", 0, 1, 20, 1, 256, &stages);
    }
    if (rc == COFFER_OK) {
        rc = api_in_string(&in, "RotationToken", API_IN_SENSITIVE, 36, 256, &rotation_token);
    }
    if (rc == COFFER_OK) {
        rc = api_in_done(&in);
    }
    if (rc != COFFER_OK) {
        sm_value_free(&value);
        return rc;
    }
    struct sm_secret sec = {0};
    bool locked = false;
    TRY_OUT(sm_value_check(&value, true));
    pthread_mutex_lock(&s->wmu);
    locked = true;
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "PutSecretValue", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    json_t *versions = json_object_get(sec.rec, "Versions");
    char vid[65];
    TRY_OUT(version_id(token, vid));
    json_t *ver = sm_version_find(versions, vid);
    if (ver != NULL && sm_str(ver, "Data") != NULL) {
        bool same = false;
        TRY_OUT(same_value(s, call, &sec, ver, &value, &same));
        if (!same) {
            TRY_OUT(token_in_use(vid, &sec));
        }
        call->output = json_pack("{s:s, s:s, s:s, s:O}", "ARN", sec.arn, "Name", sec.name, "VersionId", vid,
                                 "VersionStages", json_object_get(ver, "Stages"));
        if (call->output == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        goto out;
    }
    const char *key_id = sm_str(sec.rec, "KmsKeyId");
    if (ver != NULL) {
        /* a placeholder without a value (a rotation's AWSPENDING): the value fills it */
        TRY_OUT(sm_value_seal(s, call, &sec, key_id, sm_value_cursor(&value), value.has_binary, ver));
    } else {
        TRY_OUT(add_version(s, call, &sec, vid, key_id, &value, &ver));
    }
    bool current_given = false;
    size_t i;
    const json_t *l;
    json_array_foreach(stages, i, l)
    {
        TRY_OUT(sm_label_attach(versions, ver, json_string_value(l)));
        current_given = current_given || strcmp(json_string_value(l), SM_CURRENT) == 0;
    }
    if ((stages == NULL || sm_label_owner(versions, SM_CURRENT) == NULL) && !current_given) {
        TRY_OUT(sm_label_attach(versions, ver, SM_CURRENT));
    }
    sm_versions_prune(versions, call->now_ms);
    TRY_OUT(too_many_versions(versions));
    if (sm_has_label(ver, SM_CURRENT)) {
        sm_rotation_value_changed(s, &sec, call->now_ms);
    }
    json_object_set_new(sec.rec, "LastChangedDate", json_integer(call->now_ms));
    TRY_OUT(sm_save(s, &sec, 0));
    call->output = json_pack("{s:s, s:s, s:s, s:O}", "ARN", sec.arn, "Name", sec.name, "VersionId", vid,
                             "VersionStages", json_object_get(ver, "Stages"));
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    if (locked) {
        pthread_mutex_unlock(&s->wmu);
    }
    sm_secret_free(&sec);
    sm_value_free(&value);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* UpdateSecret                                                                                 */

/*
 * A new key re-encrypts the versions labelled AWSCURRENT, AWSPREVIOUS and AWSPENDING, as AWS
 * does; as in AWS, a version the caller cannot decrypt or re-encrypt keeps its old key.
 */
static coffer_err reencrypt_labelled(const struct sm *s, const struct api_call *call, struct sm_secret *sec,
                                     const char *key_id, const char *skip_vid)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(sec->rec, "Versions"), i, v)
    {
        if (!(sm_has_label(v, SM_CURRENT) || sm_has_label(v, SM_PREVIOUS) || sm_has_label(v, SM_PENDING)) ||
            sm_str(v, "Data") == NULL ||
            (skip_vid != NULL && strcmp(sm_str(v, "VersionId"), skip_vid) == 0)) {
            continue;
        }
        coffer_buf plain;
        coffer_err rc = sm_value_open(s, call, sec, v, &plain);
        bool opened = rc == COFFER_OK;
        if (opened) {
            json_t *copy = json_deep_copy(v);
            if (copy == NULL) {
                coffer_buf_free(&plain);
                return sm_oom();
            }
            rc = sm_value_seal(s, call, sec, key_id, coffer_buf_cursor(&plain),
                               json_is_true(json_object_get(v, "Binary")), copy);
            if (rc == COFFER_OK) {
                json_object_update(v, copy);
            }
            json_decref(copy);
        }
        coffer_buf_free(&plain);
        /* a new key that cannot encrypt at all is the caller's mistake; a version the caller may
         * not decrypt, or a key it may not use, is left as it is */
        if (rc == COFFER_ERR_NOMEM || rc == COFFER_ERR_STORE || rc == COFFER_ERR_AUDIT ||
            (opened && rc == COFFER_ERR_ENCRYPTION_FAILURE)) {
            return rc;
        }
        coffer_clear_err();
    }
    return COFFER_OK;
}

coffer_err sm_op_UpdateSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *token = NULL, *description = NULL, *key_id = NULL, *type = NULL;
    struct sm_value value;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "ClientRequestToken", 0, 32, 64, &token));
    TRY(api_in_string(&in, "Description", 0, 0, 2048, &description));
    TRY(api_in_string(&in, "KmsKeyId", 0, 0, 2048, &key_id));
    coffer_err rc = sm_value_read(&in, &value);
    if (rc == COFFER_OK) {
        rc = api_in_string(&in, "Type", 0, 0, 256, &type);
    }
    if (rc == COFFER_OK) {
        rc = api_in_done(&in);
    }
    if (rc != COFFER_OK) {
        sm_value_free(&value);
        return rc;
    }
    struct sm_secret sec = {0};
    bool locked = false;
    char vid[65] = "";
    TRY_OUT(sm_value_check(&value, false));
    pthread_mutex_lock(&s->wmu);
    locked = true;
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "UpdateSecret", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    json_t *versions = json_object_get(sec.rec, "Versions");
    const char *old_key = sm_str(sec.rec, "KmsKeyId");
    bool key_changed = key_id != NULL && strcmp(key_id, old_key != NULL ? old_key : "") != 0;
    const char *new_key = key_id != NULL ? key_id : old_key;
    if (sm_value_given(&value)) {
        TRY_OUT(version_id(token, vid));
        if (sm_version_find(versions, vid) != NULL) {
            TRY_OUT(token_in_use(vid, &sec));
        }
        json_t *ver = NULL;
        TRY_OUT(add_version(s, call, &sec, vid, new_key, &value, &ver));
        TRY_OUT(sm_label_attach(versions, ver, SM_CURRENT));
        sm_versions_prune(versions, call->now_ms);
        TRY_OUT(too_many_versions(versions));
        sm_rotation_value_changed(s, &sec, call->now_ms);
    }
    if (key_changed) {
        TRY_OUT(reencrypt_labelled(s, call, &sec, new_key, vid[0] != 0 ? vid : NULL));
        if (key_id[0] == 0) {
            json_object_del(sec.rec, "KmsKeyId");
        } else if (json_object_set_new(sec.rec, "KmsKeyId", json_string(key_id)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (description != NULL && json_object_set_new(sec.rec, "Description", json_string(description)) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    json_object_set_new(sec.rec, "LastChangedDate", json_integer(call->now_ms));
    TRY_OUT(sm_save(s, &sec, 0));
    call->output = arn_name(&sec);
    if (call->output == NULL ||
        (vid[0] != 0 && json_object_set_new(call->output, "VersionId", json_string(vid)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    if (locked) {
        pthread_mutex_unlock(&s->wmu);
    }
    sm_secret_free(&sec);
    sm_value_free(&value);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* UpdateSecretVersionStage                                                                     */

coffer_err sm_op_UpdateSecretVersionStage(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *label = NULL, *from = NULL, *to = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "VersionStage", API_IN_REQUIRED, 1, 256, &label));
    TRY(api_in_string(&in, "RemoveFromVersionId", 0, 32, 64, &from));
    TRY(api_in_string(&in, "MoveToVersionId", 0, 32, 64, &to));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "UpdateSecretVersionStage", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    json_t *versions = json_object_get(sec.rec, "Versions");
    json_t *owner = sm_label_owner(versions, label);
    json_t *source = NULL;
    if (from != NULL) {
        source = sm_version_find(versions, from);
        if (source == NULL) {
            FAIL_OUT(COFFER_ERR_INVALID_PARAMETER, "Not a valid version: %s", from);
        }
        if (source != owner) {
            FAIL_OUT(COFFER_ERR_INVALID_PARAMETER,
                     "The staging label %s is currently not attached to version %s, so you can't remove it.",
                     label, from);
        }
    }
    if (to != NULL) {
        json_t *target = sm_version_find(versions, to);
        if (target == NULL) {
            FAIL_OUT(COFFER_ERR_INVALID_PARAMETER, "Not a valid version: %s", to);
        }
        if (owner != NULL && owner != target && source == NULL) {
            FAIL_OUT(
                COFFER_ERR_INVALID_PARAMETER,
                "The parameter RemoveFromVersionId can't be empty. Staging label %s is currently attached to "
                "version %s, so you must explicitly reference that version in RemoveFromVersionId.",
                label, sm_str(owner, "VersionId"));
        }
        TRY_OUT(sm_label_attach(versions, target, label));
    } else if (source != NULL) {
        if (strcmp(label, SM_CURRENT) == 0) {
            FAIL_OUT(COFFER_ERR_INVALID_PARAMETER,
                     "You can only move staging label AWSCURRENT to a different secret "
                     "version. It can't be completely removed.");
        }
        sm_label_detach(source, label);
    }
    sm_versions_prune(versions, call->now_ms);
    json_object_set_new(sec.rec, "LastChangedDate", json_integer(call->now_ms));
    TRY_OUT(sm_save(s, &sec, 0));
    if ((call->output = arn_name(&sec)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* DescribeSecret, ListSecretVersionIds                                                         */

coffer_err sm_op_DescribeSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_done(&in));
    struct sm_secret sec;
    TRY(sm_resolve_read(s, call, id, &sec));
    coffer_err rc = sm_authorize(s, call, "DescribeSecret", &sec);
    if (rc == COFFER_OK && (call->output = sm_describe_json(&sec, false)) == NULL) {
        rc = sm_oom();
    }
    sm_secret_free(&sec);
    return rc;
}

static json_t *version_entry(const json_t *v)
{
    const char *key =
        json_is_true(json_object_get(v, "DefaultKey")) ? "DefaultEncryptionKey" : sm_str(v, "KeyArn");
    json_t *e = json_pack("{s:s, s:o}", "VersionId", sm_str(v, "VersionId"), "CreatedDate",
                          sm_date(sm_int(v, "CreatedDate")));
    if (e == NULL) {
        return NULL;
    }
    const json_t *stages = json_object_get(v, "Stages");
    if ((json_array_size(stages) > 0 && json_object_set(e, "VersionStages", (json_t *)stages) != 0) ||
        (json_object_get(v, "LastAccessedDate") != NULL &&
         json_object_set_new(e, "LastAccessedDate", sm_date(sm_int(v, "LastAccessedDate"))) != 0) ||
        (key != NULL && json_object_set_new(e, "KmsKeyIds", json_pack("[s]", key)) != 0)) {
        json_decref(e);
        return NULL;
    }
    return e;
}

coffer_err sm_op_ListSecretVersionIds(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *token = NULL;
    int64_t max = 100;
    bool has_max = false, deprecated = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_int(&in, "MaxResults", 0, 1, 100, &max, &has_max));
    TRY(api_in_string(&in, "NextToken", 0, 1, 4096, &token));
    TRY(api_in_bool(&in, "IncludeDeprecated", false, &deprecated));
    TRY(api_in_done(&in));
    max = has_max ? max : 100;
    size_t offset = 0;
    TRY(sm_token_offset(token, &offset));
    struct sm_secret sec;
    TRY(sm_resolve_read(s, call, id, &sec));
    coffer_err rc = COFFER_OK;
    json_t *items = json_array();
    if (items == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(sm_authorize(s, call, "ListSecretVersionIds", &sec));
    size_t i, seen = 0;
    json_t *v;
    bool more = false;
    json_array_foreach(json_object_get(sec.rec, "Versions"), i, v)
    {
        if (!deprecated && json_array_size(json_object_get(v, "Stages")) == 0) {
            continue;
        }
        if (seen++ < offset) {
            continue;
        }
        if (json_array_size(items) == (size_t)max) {
            more = true;
            break;
        }
        if (json_array_append_new(items, version_entry(v)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    call->output = json_pack("{s:O, s:s, s:s}", "Versions", items, "ARN", sec.arn, "Name", sec.name);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (more) {
        char next[32];
        snprintf(next, sizeof(next), "%zu", offset + (size_t)max);
        if (json_object_set_new(call->output, "NextToken", json_string(next)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
out:
    json_decref(items);
    sm_secret_free(&sec);
    return rc;
}
