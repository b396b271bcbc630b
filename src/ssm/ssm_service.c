/*
 * The Parameter Store service (ssm.h): the module, the operation table and the handlers.
 *
 * A parameter is one JSON record "ssm/param/<account>/<region><key form of its name>":
 *
 *   {"Name": "/a/b", "Tags": [{"Key","Value"}...],
 *    "Versions": [{"Version", "Type", "Value", "LastModifiedDate" (ms), "LastModifiedUser",
 *                  "Description", "AllowedPattern", "Tier", "DataType"}, ...]}
 *
 * oldest version first, at most SSM_MAX_VERSIONS; the last one is the current value. Every
 * version carries the whole metadata so that GetParameterHistory reports each as it was.
 */
#include "ssm/ssm.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/buf.h"
#include "iam/authz.h"
#include "kms/kms.h"
#include "ssm/ssm_name.h"
#include "store/store.h"

#define SSM_STANDARD_MAX_VALUE 4096
#define SSM_ADVANCED_MAX_VALUE 8192
#define SSM_KEY_MAX (128 + SSM_NAME_MAX + 8) /* names are checked to fit the store's 1024 */
#define SSM_ARN_PREFIX_MAX 128
#define SSM_DEFAULT_KEY "alias/aws/ssm"
#define SSM_KMS_MAX_PLAINTEXT 4096 /* one KMS Encrypt; larger values need envelope encryption */

struct ssm {
    store *st;
    authz *az;                 /* NULL: any authenticated caller may do anything in its account */
    const struct kms_api *kms; /* the daemon's KMS; NULL: no SecureString */
    struct api_service api;
};

/* ------------------------------------------------------------------------------------------ */
/* Names, keys, authorization                                                                   */

static void arn_prefix(const struct api_call *call, char *out, size_t n)
{
    snprintf(out, n, "arn:aws:ssm:%s:%s:parameter/", call->region, call->caller->account_id);
}

static void param_arn(const struct api_call *call, const char *canon, char *out, size_t n)
{
    snprintf(out, n, "arn:aws:ssm:%s:%s:parameter/%s", call->region, call->caller->account_id,
             canon[0] == '/' ? canon + 1 : canon);
}

/* "ssm/param/<account>/<region>": every record of the caller's parameters starts with it. */
static void account_prefix(const struct api_call *call, char *out, size_t n)
{
    snprintf(out, n, "ssm/param/%s/%s", call->caller->account_id, call->region);
}

static void param_key(const struct api_call *call, const char *canon, char *out, size_t n)
{
    char base[128], kf[SSM_NAME_MAX + 2];
    account_prefix(call, base, sizeof(base));
    ssm_name_key(canon, kf, sizeof(kf));
    snprintf(out, n, "%s%s", base, kf);
}

static size_t arn_prefix_len(const struct api_call *call)
{
    char p[SSM_ARN_PREFIX_MAX];
    arn_prefix(call, p, sizeof(p));
    return strlen(p);
}

/* Identity policies decide: "ssm:<action>" on `resource` in the caller's account. */
static coffer_err ssm_authorize(const struct ssm *s, const struct api_call *call, const char *action,
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

static coffer_err authorize_param(const struct ssm *s, const struct api_call *call, const char *canon)
{
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    param_arn(call, canon, arn, sizeof(arn));
    return ssm_authorize(s, call, call->operation, arn);
}

/* ------------------------------------------------------------------------------------------ */
/* Records                                                                                      */

static coffer_err rec_parse(coffer_cursor v, json_t **out)
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
static coffer_err rec_load(store *st, store_txn *t, const char *key, json_t **out)
{
    coffer_buf b;
    coffer_buf_init(&b, false);
    *out = NULL;
    coffer_err rc = t != NULL ? store_txn_get(t, key, &b) : store_get(st, key, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        rc = COFFER_OK;
    } else if (rc == COFFER_OK) {
        rc = rec_parse(coffer_buf_cursor(&b), out);
    }
    coffer_buf_free(&b);
    return rc;
}

static coffer_err rec_store(store_txn *t, const char *key, const json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT);
    if (text == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = store_txn_put(t, key, coffer_cursor_from_str(text));
    free(text);
    return rc;
}

static json_t *rec_latest(const json_t *rec)
{
    const json_t *v = json_object_get(rec, "Versions");
    return json_array_get(v, json_array_size(v) - 1);
}

static const char *vstr(const json_t *ver, const char *member)
{
    return json_string_value(json_object_get(ver, member));
}

static json_int_t vint(const json_t *ver, const char *member)
{
    return json_integer_value(json_object_get(ver, member));
}

static json_t *date_of(const json_t *ver)
{
    return json_real((double)vint(ver, "LastModifiedDate") / 1000.0);
}

static coffer_err oom(void)
{
    return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

/* {"PARAMETER_ARN": <ARN>}: the encryption context of a SecureString value, as AWS sets it. */
static json_t *value_context(const struct api_call *call, const char *canon)
{
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    param_arn(call, canon, arn, sizeof(arn));
    return json_pack("{s:s}", "PARAMETER_ARN", arn);
}

/* KMS's refusals of a key in Parameter Store's words: an unusable key is InvalidKeyId. */
static coffer_err kms_failure(coffer_err rc)
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
static coffer_err value_json(const struct ssm *s, const struct api_call *call, const char *canon,
                             const json_t *ver, bool decrypt, json_t **out)
{
    *out = NULL;
    if (!decrypt || strcmp(vstr(ver, "Type"), "SecureString") != 0) {
        *out = json_string(vstr(ver, "Value"));
        return *out != NULL ? COFFER_OK : oom();
    }
    if (s->kms == NULL) {
        return coffer_fail(COFFER_ERR_INVALID_KEY_ID, "The query key ID isn't valid.");
    }
    char via[96], key_arn[512];
    snprintf(via, sizeof(via), "ssm.%s.amazonaws.com", call->region);
    json_t *ec = value_context(call, canon);
    if (ec == NULL) {
        return oom();
    }
    coffer_buf plain;
    coffer_err rc =
        s->kms->decrypt(s->kms->svc, call, via, vstr(ver, "Value"), ec, &plain, key_arn, sizeof(key_arn));
    json_decref(ec);
    if (rc == COFFER_OK) {
        *out = json_stringn((const char *)plain.data, plain.len);
        rc = *out != NULL ? COFFER_OK : oom();
    } else {
        rc = kms_failure(rc);
    }
    coffer_buf_free(&plain);
    return rc;
}

/* The Parameter object of `ver` (GetParameter, GetParameters, GetParametersByPath). */
static coffer_err parameter_json(const struct ssm *s, const struct api_call *call, const json_t *rec,
                                 const json_t *ver, const char *selector, bool decrypt, json_t **out)
{
    const char *name = json_string_value(json_object_get(rec, "Name"));
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    param_arn(call, name, arn, sizeof(arn));
    json_t *value = NULL;
    TRY(value_json(s, call, name, ver, decrypt, &value));
    *out = json_pack("{s:s, s:s, s:o, s:I, s:o, s:s, s:s}", "Name", name, "Type", vstr(ver, "Type"), "Value",
                     value, "Version", vint(ver, "Version"), "LastModifiedDate", date_of(ver), "ARN", arn,
                     "DataType", vstr(ver, "DataType"));
    if (*out == NULL ||
        (selector != NULL && json_object_set_new(*out, "Selector", json_string(selector)) != 0)) {
        return oom();
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* AllowedPattern                                                                               */

/*
 * AllowedPattern is a Java regular expression; POSIX extended expressions cover what people
 * write there once the Perl class escapes (\d, \w, \s and their negations) are spelled out.
 */
static coffer_err pattern_compile(const char *pattern, regex_t *re)
{
    coffer_buf b;
    coffer_buf_init(&b, false);
    coffer_err rc = COFFER_OK;
    for (const char *p = pattern; *p != 0; p++) {
        const char *add = NULL;
        char one[3] = {p[0], 0, 0};
        if (p[0] == '\\' && p[1] != 0) {
            switch (p[1]) {
            case 'd':
                add = "[0-9]";
                break;
            case 'D':
                add = "[^0-9]";
                break;
            case 'w':
                add = "[A-Za-z0-9_]";
                break;
            case 'W':
                add = "[^A-Za-z0-9_]";
                break;
            case 's':
                add = "[[:space:]]";
                break;
            case 'S':
                add = "[^[:space:]]";
                break;
            default:
                one[1] = p[1];
                break;
            }
            p++;
        }
        TRY_OUT(coffer_buf_append_str(&b, add != NULL ? add : one));
    }
    TRY_OUT(coffer_buf_nul_terminate(&b));
    if (regcomp(re, (const char *)b.data, REG_EXTENDED | REG_NOSUB) != 0) {
        FAIL_OUT(COFFER_ERR_INVALID_PATTERN, "The allowed pattern %s is not valid.", pattern);
    }
out:
    coffer_buf_free(&b);
    return rc;
}

static coffer_err pattern_check(const char *pattern, const char *value)
{
    if (pattern == NULL || pattern[0] == 0) {
        return COFFER_OK;
    }
    regex_t re;
    TRY(pattern_compile(pattern, &re));
    int m = regexec(&re, value, 0, NULL, 0);
    regfree(&re);
    if (m != 0) {
        return coffer_fail(COFFER_ERR_PATTERN_MISMATCH,
                           "Parameter value, cannot be validated against allowedPattern: %s", pattern);
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* PutParameter                                                                                 */

static const char *const types[] = {"String", "StringList", "SecureString", NULL};
static const char *const tiers[] = {"Standard", "Advanced", "Intelligent-Tiering", NULL};
enum { TIER_STANDARD, TIER_ADVANCED, TIER_INTELLIGENT };

static coffer_err check_data_type(const char *dt, const char *value)
{
    if (strcmp(dt, "text") == 0 || strcmp(dt, "aws:ssm:integration") == 0) {
        return COFFER_OK;
    }
    if (strcmp(dt, "aws:ec2:image") == 0) {
        if (strncmp(value, "ami-", 4) != 0) {
            return coffer_fail(
                COFFER_ERR_VALIDATION,
                "The parameter value is not a valid EC2 image id (ami-...) for data type aws:ec2:image.");
        }
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_VALIDATION,
                       "The following data type is not supported: %s (Data type names are all lowercase.)",
                       dt);
}

/* Copies `member` of `from` into `to` unless `given` is set (an overwrite keeps what it omits). */
static coffer_err inherit(json_t *to, const char *member, const char *given, const json_t *from)
{
    const char *v = given != NULL ? given : vstr(from, member);
    if (v == NULL) {
        return COFFER_OK;
    }
    return json_object_set_new(to, member, json_string(v)) == 0 ? COFFER_OK : oom();
}

static coffer_err op_PutParameter(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *name = NULL, *description = NULL, *value = NULL, *key_id = NULL, *pattern = NULL,
               *policies = NULL, *data_type = NULL;
    const json_t *tags = NULL;
    int type = -1, tier = -1;
    bool overwrite = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SSM_NAME_MAX, &name));
    TRY(api_in_string(&in, "Description", 0, 0, 1024, &description));
    TRY(api_in_string(&in, "Value", API_IN_REQUIRED | API_IN_SENSITIVE, 1, 1 << 20, &value));
    TRY(api_in_enum(&in, "Type", 0, types, &type));
    TRY(api_in_string(&in, "KeyId", 0, 1, 256, &key_id));
    TRY(api_in_bool(&in, "Overwrite", false, &overwrite));
    TRY(api_in_string(&in, "AllowedPattern", 0, 0, 1024, &pattern));
    TRY(api_in_tags(&in, "Tags", 0, "Key", "Value", &tags));
    TRY(api_in_enum(&in, "Tier", 0, tiers, &tier));
    TRY(api_in_string(&in, "Policies", 0, 1, 4096, &policies));
    TRY(api_in_string(&in, "DataType", 0, 0, 128, &data_type));
    TRY(api_in_done(&in));

    char canon[SSM_NAME_MAX + 1];
    TRY(ssm_name_check(name, true, arn_prefix_len(call), canon, sizeof(canon)));
    if (tags != NULL && overwrite) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "Invalid request: tags and overwrite can't be used together. To create a parameter with "
            "tags, please remove overwrite flag. To update tags for an existing parameter, please use "
            "AddTagsToResource or RemoveTagsFromResource.");
    }
    if (type == 2 && s->kms == NULL) {
        /* never stored in clear: without KMS there is nothing to encrypt it with */
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "SecureString parameters need KMS.");
    }
    if (policies != NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "Parameter policies are not supported yet.");
    }
    TRY(authorize_param(s, call, canon));

    char key[SSM_KEY_MAX];
    param_key(call, canon, key, sizeof(key));
    store_txn *t = NULL;
    json_t *rec = NULL, *ver = NULL, *cur = NULL, *ec = NULL;
    char *cipher = NULL;
    coffer_err rc = COFFER_OK;
    /* read first: encrypting may write a record (the AWS managed key, made on first use), which
     * cannot happen inside this request's transaction; the transaction checks nothing moved */
    TRY_OUT(rec_load(s->st, NULL, key, &rec));
    const json_t *prev = rec != NULL ? rec_latest(rec) : NULL;
    if (prev != NULL && !overwrite) {
        FAIL_OUT(
            COFFER_ERR_ALREADY_EXISTS,
            "The parameter already exists. To overwrite this value, set the overwrite option in the request "
            "to true.");
    }
    if (prev == NULL && type < 0) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "A parameter type is required when you create a parameter.");
    }
    size_t chars = api_in_utf8_len(value, strlen(value));
    bool was_advanced = prev != NULL && strcmp(vstr(prev, "Tier"), "Advanced") == 0;
    if (was_advanced && tier == TIER_STANDARD) {
        FAIL_OUT(COFFER_ERR_VALIDATION,
                 "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the "
                 "advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the "
                 "advanced "
                 "parameter and recreate it as a standard parameter.");
    }
    bool advanced =
        tier == TIER_ADVANCED || was_advanced || (tier == TIER_INTELLIGENT && chars > SSM_STANDARD_MAX_VALUE);
    if (!advanced && chars > SSM_STANDARD_MAX_VALUE) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "Standard tier parameters support a maximum parameter value of 4096 "
                                        "characters. To create a larger "
                                        "parameter value, upgrade the parameter to use the "
                                        "advanced-parameter tier. For more information, "
                                        "see "
                                        "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
                                        "parameter-store-advanced-parameters.html");
    }
    if (advanced && chars > SSM_ADVANCED_MAX_VALUE) {
        FAIL_OUT(COFFER_ERR_VALIDATION,
                 "Advanced tier parameters support a maximum parameter value of 8192 characters.");
    }
    const char *eff_pattern =
        pattern != NULL ? pattern : (prev != NULL ? vstr(prev, "AllowedPattern") : NULL);
    TRY_OUT(pattern_check(eff_pattern, value));
    const char *eff_dt =
        data_type != NULL && data_type[0] != 0 ? data_type : (prev != NULL ? vstr(prev, "DataType") : "text");
    TRY_OUT(check_data_type(eff_dt, value));
    const char *eff_type = type >= 0 ? types[type] : vstr(prev, "Type");
    bool secure = strcmp(eff_type, "SecureString") == 0;
    if (key_id != NULL && !secure) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "KeyId is only valid for SecureString parameters.");
    }
    const char *eff_key = NULL;
    if (secure) {
        if (s->kms == NULL) {
            FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION, "SecureString parameters need KMS.");
        }
        const char *prev_key = prev != NULL ? vstr(prev, "KeyId") : NULL;
        eff_key = key_id != NULL ? key_id : (prev_key != NULL ? prev_key : SSM_DEFAULT_KEY);
        if (strlen(value) > SSM_KMS_MAX_PLAINTEXT) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "SecureString values longer than %d bytes are not supported.",
                     SSM_KMS_MAX_PLAINTEXT);
        }
        char via[96], key_arn[512];
        snprintf(via, sizeof(via), "ssm.%s.amazonaws.com", call->region);
        if ((ec = value_context(call, canon)) == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        rc = s->kms->encrypt(s->kms->svc, call, via, eff_key, ec, coffer_cursor_from_str(value), &cipher,
                             key_arn, sizeof(key_arn));
        if (rc != COFFER_OK) {
            rc = kms_failure(rc);
            goto out;
        }
    }

    json_int_t version = prev != NULL ? vint(prev, "Version") + 1 : 1;
    ver = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s}", "Version", version, "Type", eff_type, "Value",
                    cipher != NULL ? cipher : value, "LastModifiedDate", (json_int_t)call->now_ms,
                    "LastModifiedUser", call->caller->principal_arn, "Tier",
                    advanced ? "Advanced" : "Standard", "DataType", eff_dt);
    if (ver == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(inherit(ver, "Description", description, prev));
    TRY_OUT(inherit(ver, "AllowedPattern", pattern, prev));
    if (eff_key != NULL && json_object_set_new(ver, "KeyId", json_string(eff_key)) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(rec_load(s->st, t, key, &cur));
    if ((cur == NULL) != (rec == NULL) || (cur != NULL && vint(rec_latest(cur), "Version") != version - 1)) {
        FAIL_OUT(COFFER_ERR_TOO_MANY_UPDATES,
                 "There are concurrent updates for a resource that supports one update at a time.");
    }
    if (rec == NULL) {
        rec = json_pack("{s:s, s:[], s:[]}", "Name", canon, "Versions", "Tags");
        if (rec == NULL || (tags != NULL && json_object_set(rec, "Tags", (json_t *)tags) != 0)) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    json_t *versions = json_object_get(rec, "Versions");
    if (json_array_append(versions, ver) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* the oldest version goes once the parameter holds more than it keeps */
    while (json_array_size(versions) > SSM_MAX_VERSIONS) {
        json_array_remove(versions, 0);
    }
    TRY_OUT(rec_store(t, key, rec));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    call->output = json_pack("{s:I, s:s}", "Version", version, "Tier", advanced ? "Advanced" : "Standard");
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    store_txn_abort(t);
    free(cipher);
    json_decref(ec);
    json_decref(cur);
    json_decref(ver);
    json_decref(rec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading one parameter                                                                        */

/*
 * Resolves a read operation's reference (name or ARN, optional selector) to its record and
 * version, authorizing the read. COFFER_ERR_NOT_FOUND when there is no such parameter (or
 * label), COFFER_ERR_VERSION_NOT_FOUND for an unknown version. *rec_out is owned by the caller;
 * *ver_out points into it.
 */
static coffer_err resolve(const struct ssm *s, const struct api_call *call, const char *ref, json_t **rec_out,
                          const json_t **ver_out, char *selector, size_t sel_n)
{
    char prefix[SSM_ARN_PREFIX_MAX], name[SSM_NAME_MAX + 2], label[101], canon[SSM_NAME_MAX + 1];
    int64_t version = 0;
    *rec_out = NULL;
    *ver_out = NULL;
    selector[0] = 0;
    arn_prefix(call, prefix, sizeof(prefix));
    TRY(ssm_ref_split(ref, prefix, name, sizeof(name), &version, label, sizeof(label)));
    if (name[0] == 0) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    TRY(ssm_name_check(name, false, strlen(prefix), canon, sizeof(canon)));
    TRY(authorize_param(s, call, canon));
    char key[SSM_KEY_MAX];
    param_key(call, canon, key, sizeof(key));
    json_t *rec = NULL;
    TRY(rec_load(s->st, NULL, key, &rec));
    if (rec == NULL || label[0] != 0) {
        /* labels are not kept yet: a label selects nothing */
        json_decref(rec);
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    const json_t *ver = rec_latest(rec);
    if (version > 0) {
        snprintf(selector, sel_n, ":%lld", (long long)version);
        ver = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rec, "Versions"), i, v)
        {
            if (vint(v, "Version") == version) {
                ver = v;
            }
        }
        if (ver == NULL) {
            json_decref(rec);
            return coffer_fail(
                COFFER_ERR_VERSION_NOT_FOUND,
                "Systems Manager could not find version %lld of %s. Verify the version and try again.",
                (long long)version, canon);
        }
    }
    *rec_out = rec;
    *ver_out = ver;
    return COFFER_OK;
}

static coffer_err op_GetParameter(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *name = NULL;
    bool decrypt = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SSM_NAME_MAX, &name));
    TRY(api_in_bool(&in, "WithDecryption", false, &decrypt));
    TRY(api_in_done(&in));
    json_t *rec = NULL, *param = NULL;
    const json_t *ver = NULL;
    char selector[32];
    TRY(resolve(s, call, name, &rec, &ver, selector, sizeof(selector)));
    coffer_err rc = parameter_json(s, call, rec, ver, selector[0] != 0 ? selector : NULL, decrypt, &param);
    json_decref(rec);
    TRY(rc);
    call->output = json_pack("{s:o}", "Parameter", param);
    return call->output != NULL ? COFFER_OK : oom();
}

static int by_name(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "Name")),
                  json_string_value(json_object_get(y, "Name")));
}

static coffer_err op_GetParameters(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const json_t *names = NULL;
    bool decrypt = false;
    api_in_init(&in, call->input);
    TRY(api_in_string_list(&in, "Names", API_IN_REQUIRED, 1, 10, 1, SSM_NAME_MAX, &names));
    TRY(api_in_bool(&in, "WithDecryption", false, &decrypt));
    TRY(api_in_done(&in));
    json_t *found[10];
    size_t n_found = 0;
    json_t *invalid = json_array();
    coffer_err rc = COFFER_OK;
    if (invalid == NULL) {
        return oom();
    }
    size_t i;
    const json_t *n;
    json_array_foreach(names, i, n)
    {
        json_t *rec = NULL, *param = NULL;
        const json_t *ver = NULL;
        char selector[32];
        rc = resolve(s, call, json_string_value(n), &rec, &ver, selector, sizeof(selector));
        if (rc == COFFER_ERR_NOT_FOUND || rc == COFFER_ERR_VERSION_NOT_FOUND || rc == COFFER_ERR_VALIDATION ||
            rc == COFFER_ERR_HIERARCHY_LIMIT) {
            /* an unknown or malformed name is not an error here: it is reported back */
            coffer_clear_err();
            rc = COFFER_OK;
            if (json_array_append(invalid, (json_t *)n) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            continue;
        }
        TRY_OUT(rc);
        rc = parameter_json(s, call, rec, ver, selector[0] != 0 ? selector : NULL, decrypt, &param);
        json_decref(rec);
        TRY_OUT(rc);
        found[n_found++] = param;
    }
    qsort(found, n_found, sizeof(found[0]), by_name);
    json_t *params = json_array();
    call->output = json_pack("{s:o, s:O}", "Parameters", params, "InvalidParameters", invalid);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < n_found; k++) {
        if (json_array_append_new(params, found[k]) != 0) {
            found[k] = NULL;
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        found[k] = NULL;
    }
    n_found = 0;
out:
    for (size_t k = 0; k < n_found; k++) {
        json_decref(found[k]);
    }
    json_decref(invalid);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Deleting                                                                                     */

/* Deletes `name` in `t`; COFFER_ERR_NOT_FOUND (no detail) when absent. */
static coffer_err delete_one(const struct ssm *s, const struct api_call *call, store_txn *t, const char *name)
{
    char canon[SSM_NAME_MAX + 1], key[SSM_KEY_MAX];
    TRY(ssm_name_check(name, false, arn_prefix_len(call), canon, sizeof(canon)));
    TRY(authorize_param(s, call, canon));
    param_key(call, canon, key, sizeof(key));
    coffer_buf b;
    coffer_buf_init(&b, false);
    coffer_err rc = store_txn_get(t, key, &b);
    coffer_buf_free(&b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    TRY(rc);
    return store_txn_delete(t, key);
}

static coffer_err op_DeleteParameter(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *name = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SSM_NAME_MAX, &name));
    TRY(api_in_done(&in));
    store_txn *t = NULL;
    TRY(store_txn_begin(s->st, &t));
    coffer_err rc = delete_one(s, call, t, name);
    if (rc != COFFER_OK) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t);
}

static coffer_err op_DeleteParameters(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const json_t *names = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string_list(&in, "Names", API_IN_REQUIRED, 1, 10, 1, SSM_NAME_MAX, &names));
    TRY(api_in_done(&in));
    json_t *deleted = json_array(), *invalid = json_array();
    store_txn *t = NULL;
    coffer_err rc = COFFER_OK;
    if (deleted == NULL || invalid == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(store_txn_begin(s->st, &t));
    size_t i;
    const json_t *n;
    json_array_foreach(names, i, n)
    {
        rc = delete_one(s, call, t, json_string_value(n));
        if (rc == COFFER_ERR_NOT_FOUND || rc == COFFER_ERR_VALIDATION || rc == COFFER_ERR_HIERARCHY_LIMIT) {
            coffer_clear_err();
            rc = COFFER_OK;
            if (json_array_append(invalid, (json_t *)n) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            continue;
        }
        TRY_OUT(rc);
        if (json_array_append(deleted, (json_t *)n) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    call->output = json_pack("{s:O, s:O}", "DeletedParameters", deleted, "InvalidParameters", invalid);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    store_txn_abort(t);
    json_decref(deleted);
    json_decref(invalid);
    return rc;
}

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
        if (strcmp(vstr(t, "Key"), tag) == 0) {
            return json_array_size(values) == 0 || filter_any(f, vstr(t, "Value"));
        }
    }
    return false;
}

/* Whether the parameter passes every filter (the Path filter is applied by the scan). */
static bool filters_pass(const json_t *filters, const json_t *rec, const char *canon)
{
    const json_t *ver = rec_latest(rec);
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
            ok = filter_any(f, vstr(ver, key));
        } else if (strcmp(key, "Label") == 0) {
            ok = false; /* no version carries a label */
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
    TRY(rec_parse(value, &rec));
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
    pg->failure = parameter_json(pg->s, pg->call, rec, rec_latest(rec), NULL, pg->decrypt, &p);
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
        return oom();
    }
    return COFFER_OK;
}

static coffer_err op_GetParametersByPath(void *state, struct api_call *call)
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
    arn_prefix(call, arn, sizeof(arn));
    snprintf(arn + strlen(arn), sizeof(arn) - strlen(arn), "%.*s",
             (int)strlen(sub) - 2 > 0 ? (int)strlen(sub) - 2 : 0, sub + 1);
    TRY(ssm_authorize(s, call, "GetParametersByPath", arn));
    account_prefix(call, base, sizeof(base));
    struct page pg = {.s = s,
                      .call = call,
                      .decrypt = decrypt,
                      .filters = filters,
                      .recursive = recursive,
                      .max = (size_t)max,
                      .visit = visit_parameter,
                      .items = json_array()};
    if (pg.items == NULL) {
        return oom();
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
    const json_t *ver = rec_latest(rec);
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    param_arn(pg->call, canon, arn, sizeof(arn));
    json_t *m = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:s, s:[], s:s}", "Name", canon, "ARN", arn, "Type",
                          vstr(ver, "Type"), "LastModifiedDate", date_of(ver), "LastModifiedUser",
                          vstr(ver, "LastModifiedUser"), "Version", vint(ver, "Version"), "Tier",
                          vstr(ver, "Tier"), "Policies", "DataType", vstr(ver, "DataType"));
    if (m == NULL) {
        return false;
    }
    static const char *const optional[] = {"Description", "AllowedPattern", "KeyId", NULL};
    for (const char *const *o = optional; *o != NULL; o++) {
        if (vstr(ver, *o) != NULL && json_object_set_new(m, *o, json_string(vstr(ver, *o))) != 0) {
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
            return oom();
        }
    }
    return COFFER_OK;
}

static coffer_err op_DescribeParameters(void *state, struct api_call *call)
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
    account_prefix(call, base, sizeof(base));
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

static coffer_err op_GetParameterHistory(void *state, struct api_call *call)
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
    char selector[32];
    TRY(resolve(s, call, name, &rec, &ver, selector, sizeof(selector)));
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
        TRY_OUT(value_json(s, call, canon, v, decrypt, &value));
        json_t *h = json_pack("{s:s, s:s, s:o, s:s, s:o, s:I, s:[], s:s, s:[], s:s}", "Name", canon, "Type",
                              vstr(v, "Type"), "LastModifiedDate", date_of(v), "LastModifiedUser",
                              vstr(v, "LastModifiedUser"), "Value", value, "Version", vint(v, "Version"),
                              "Labels", "Tier", vstr(v, "Tier"), "Policies", "DataType", vstr(v, "DataType"));
        if (h == NULL || json_array_append_new(items, h) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        static const char *const optional[] = {"Description", "AllowedPattern", "KeyId", NULL};
        for (const char *const *o = optional; *o != NULL; o++) {
            if (vstr(v, *o) != NULL && json_object_set_new(h, *o, json_string(vstr(v, *o))) != 0) {
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

/* ------------------------------------------------------------------------------------------ */
/* The module                                                                                   */

static const struct api_op ssm_ops[] = {
#define SSM_OP(name, flags, rps) {#name, op_##name, flags, rps},
#include "ssm/ssm_ops.def"
#undef SSM_OP
};

/* Parameter Store's names for the shared errors (ssm-parameters.md §3). */
static const struct api_error_name ssm_errors[] = {
    {COFFER_ERR_NOT_FOUND, "ParameterNotFound", 0, ""},
    {COFFER_ERR_ALREADY_EXISTS, "ParameterAlreadyExists", 0, NULL},
    {COFFER_ERR_LIMIT_EXCEEDED, "ParameterLimitExceeded", 0, NULL},
    {COFFER_ERR_INVALID_MARKER, "InvalidNextToken", 0, "The specified token is not valid."},
    {COFFER_ERR_UNSUPPORTED_OPERATION, "UnsupportedParameterType", 0, NULL},
    {COFFER_ERR_INTERNAL, "InternalServerError", 500, NULL},
    {COFFER_ERR_NOMEM, "InternalServerError", 500, NULL},
    {COFFER_ERR_STORE, "InternalServerError", 500, NULL},
    {COFFER_ERR_IO, "InternalServerError", 500, NULL},
    {COFFER_ERR_CRYPTO, "InternalServerError", 500, NULL},
};

/* Parameter values are secrets: wiped after use and never in the trail. */
static const char *const ssm_sensitive_members[] = {"Value", NULL};

static coffer_err ssm_start(const struct api_host *host, void **instance, const struct api_service **api)
{
    TRY(api_ops_check(ssm_ops, sizeof(ssm_ops) / sizeof(ssm_ops[0])));
    struct ssm *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return oom();
    }
    s->st = host->store;
    s->az = host->authz;
    s->kms = host->lookup != NULL ? host->lookup(host->lookup_ctx, "kms") : NULL;
    s->api = (struct api_service){
        .target_prefix = "AmazonSSM",
        .signing_name = "ssm",
        .event_source = "ssm.amazonaws.com",
        .ops = ssm_ops,
        .n_ops = sizeof(ssm_ops) / sizeof(ssm_ops[0]),
        .state = s,
        .errors = ssm_errors,
        .n_errors = sizeof(ssm_errors) / sizeof(ssm_errors[0]),
        .sensitive_members = ssm_sensitive_members,
    };
    *instance = s;
    *api = &s->api;
    return COFFER_OK;
}

static void ssm_stop(void *instance)
{
    free(instance);
}

const struct api_module ssm_module = {.name = "ssm", .start = ssm_start, .stop = ssm_stop};
