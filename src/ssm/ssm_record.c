/* Names, record keys, authorization, records and values: what every operation group shares. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/buf.h"
#include "common/timeutil.h"
#include "ssm/ssm_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Names, keys, authorization                                                                   */

void ssm_arn_prefix(const struct api_call *call, char *out, size_t n)
{
    snprintf(out, n, "arn:aws:ssm:%s:%s:parameter/", call->region, call->caller->account_id);
}

void ssm_param_arn(const struct api_call *call, const char *canon, char *out, size_t n)
{
    snprintf(out, n, "arn:aws:ssm:%s:%s:parameter/%s", call->region, call->caller->account_id,
             canon[0] == '/' ? canon + 1 : canon);
}

/* "ssm/param/<account>/<region>": every record of the caller's parameters starts with it. */
void ssm_account_prefix(const struct api_call *call, char *out, size_t n)
{
    snprintf(out, n, "ssm/param/%s/%s", call->caller->account_id, call->region);
}

void ssm_param_key(const struct api_call *call, const char *canon, char *out, size_t n)
{
    char base[128], kf[SSM_NAME_MAX + 2];
    ssm_account_prefix(call, base, sizeof(base));
    ssm_name_key(canon, kf, sizeof(kf));
    snprintf(out, n, "%s%s", base, kf);
}

size_t ssm_arn_prefix_len(const struct api_call *call)
{
    char p[SSM_ARN_PREFIX_MAX];
    ssm_arn_prefix(call, p, sizeof(p));
    return strlen(p);
}

/* Identity policies decide: "ssm:<action>" on `resource` in the caller's account. */
coffer_err ssm_authorize(const struct ssm *s, const struct api_call *call, const char *action,
                         const char *resource)
{
    if (s->az == NULL) {
        return COFFER_OK;
    }
    char act[64];
    snprintf(act, sizeof(act), "ssm:%s", action);
    struct authz_request req = authz_request_for(call, act, resource);
    return authz_check(s->az, &req);
}

coffer_err ssm_authorize_param(const struct ssm *s, const struct api_call *call, const char *canon)
{
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    ssm_param_arn(call, canon, arn, sizeof(arn));
    return ssm_authorize(s, call, call->operation, arn);
}

/* ------------------------------------------------------------------------------------------ */
/* Records                                                                                      */

coffer_err ssm_rec_parse(coffer_cursor v, json_t **out)
{
    json_error_t jerr;
    *out = json_loadb((const char *)v.ptr, v.len, 0, &jerr);
    if (*out == NULL || !json_is_array(json_object_get(*out, "Versions"))) {
        json_decref(*out);
        *out = NULL;
        return coffer_fail(COFFER_ERR_INTERNAL, "corrupt parameter record");
    }
    return COFFER_OK;
}

/* The record of `key` (NULL when absent); through `t` when not NULL. */
coffer_err ssm_rec_load(store *st, store_txn *t, const char *key, json_t **out)
{
    coffer_buf b;
    coffer_buf_init(&b, false);
    *out = NULL;
    coffer_err rc = t != NULL ? store_txn_get(t, key, &b) : store_get(st, key, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        rc = COFFER_OK;
    } else if (rc == COFFER_OK) {
        rc = ssm_rec_parse(coffer_buf_cursor(&b), out);
    }
    coffer_buf_free(&b);
    return rc;
}

coffer_err ssm_rec_load_read(const struct ssm *s, const char *key, json_t **out)
{
    int64_t now = (int64_t)(coffer_monotonic_ns() / 1000000);
    if ((*out = json_cache_get(s->cache, key, now)) != NULL) {
        return COFFER_OK;
    }
    uint64_t gen = json_cache_generation(s->cache);
    TRY(ssm_rec_load(s->st, NULL, key, out));
    if (*out != NULL) {
        json_cache_put(s->cache, key, *out, gen, now);
    }
    return COFFER_OK;
}

coffer_err ssm_commit(const struct ssm *s, store_txn *t)
{
    coffer_err rc = store_txn_commit(t);
    /*
     * Every record the transaction wrote or deleted may be cached; which ones is not tracked,
     * so all of them go (writes are rare next to reads). Also after a failed commit: whether it
     * reached the database may be unknown.
     */
    json_cache_invalidate(s->cache, NULL);
    return rc;
}

coffer_err ssm_rec_store(store_txn *t, const char *key, const json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT);
    if (text == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = store_txn_put(t, key, coffer_cursor_from_str(text));
    free(text);
    return rc;
}

json_t *ssm_rec_latest(const json_t *rec)
{
    const json_t *v = json_object_get(rec, "Versions");
    return json_array_get(v, json_array_size(v) - 1);
}

const char *ssm_vstr(const json_t *ver, const char *member)
{
    return json_string_value(json_object_get(ver, member));
}

json_int_t ssm_vint(const json_t *ver, const char *member)
{
    return json_integer_value(json_object_get(ver, member));
}

json_t *ssm_date_of(const json_t *ver)
{
    return json_real((double)ssm_vint(ver, "LastModifiedDate") / 1000.0);
}

coffer_err ssm_oom(void)
{
    return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

/* {"PARAMETER_ARN": <ARN>}: the encryption context of a SecureString value, as AWS sets it. */
json_t *ssm_value_context(const struct api_call *call, const char *canon)
{
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    ssm_param_arn(call, canon, arn, sizeof(arn));
    return json_pack("{s:s}", "PARAMETER_ARN", arn);
}

/* KMS's refusals of a key in Parameter Store's words: an unusable key is InvalidKeyId. */
coffer_err ssm_kms_failure(coffer_err rc)
{
    if (rc == COFFER_ERR_ACCESS_DENIED || rc == COFFER_ERR_NOMEM || rc == COFFER_ERR_STORE ||
        rc == COFFER_ERR_AUDIT || rc == COFFER_ERR_THROTTLING || rc == COFFER_ERR_VALIDATION) {
        return rc;
    }
    char why[256];
    snprintf(why, sizeof(why), "%s", coffer_last_message());
    return coffer_fail(COFFER_ERR_INVALID_KEY_ID, "%s", why[0] != 0 ? why : "The query key ID isn't valid.");
}

/*
 * The Value of `ver` as the reader gets it: a SecureString is the base64 ciphertext as stored,
 * or with `decrypt` the plaintext, which KMS gives only when the caller may kms:Decrypt with
 * the parameter's key. A new JSON string.
 */
coffer_err ssm_value_json(const struct ssm *s, const struct api_call *call, const char *canon,
                          const json_t *ver, bool decrypt, json_t **out)
{
    *out = NULL;
    if (!decrypt || strcmp(ssm_vstr(ver, "Type"), "SecureString") != 0) {
        *out = json_string(ssm_vstr(ver, "Value"));
        return *out != NULL ? COFFER_OK : ssm_oom();
    }
    if (s->kms == NULL) {
        return coffer_fail(COFFER_ERR_INVALID_KEY_ID, "The query key ID isn't valid.");
    }
    coffer_buf plain;
    coffer_err rc = ssm_value_decrypt(s, call, canon, ver, &plain);
    if (rc == COFFER_OK) {
        *out = json_stringn((const char *)plain.data, plain.len);
        rc = *out != NULL ? COFFER_OK : ssm_oom();
    }
    coffer_buf_free(&plain);
    return rc;
}

/* The Parameter object of `ver` (GetParameter, GetParameters, GetParametersByPath). */
coffer_err ssm_parameter_json(const struct ssm *s, const struct api_call *call, const json_t *rec,
                              const json_t *ver, const char *selector, bool decrypt, json_t **out)
{
    const char *name = json_string_value(json_object_get(rec, "Name"));
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    ssm_param_arn(call, name, arn, sizeof(arn));
    json_t *value = NULL;
    TRY(ssm_value_json(s, call, name, ver, decrypt, &value));
    *out = json_pack("{s:s, s:s, s:o, s:I, s:o, s:s, s:s}", "Name", name, "Type", ssm_vstr(ver, "Type"),
                     "Value", value, "Version", ssm_vint(ver, "Version"), "LastModifiedDate",
                     ssm_date_of(ver), "ARN", arn, "DataType", ssm_vstr(ver, "DataType"));
    if (*out == NULL ||
        (selector != NULL && json_object_set_new(*out, "Selector", json_string(selector)) != 0)) {
        return ssm_oom();
    }
    return COFFER_OK;
}
