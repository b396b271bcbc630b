/* The writes: PutParameter (with AllowedPattern and data types), DeleteParameter(s). */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/buf.h"
#include "ssm/ssm_internal.h"

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
    const char *v = given != NULL ? given : ssm_vstr(from, member);
    if (v == NULL) {
        return COFFER_OK;
    }
    return json_object_set_new(to, member, json_string(v)) == 0 ? COFFER_OK : ssm_oom();
}

coffer_err ssm_op_PutParameter(void *state, struct api_call *call)
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
    TRY(ssm_name_check(name, true, ssm_arn_prefix_len(call), canon, sizeof(canon)));
    if (tags != NULL && overwrite) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "Invalid request: tags and overwrite can't be used together. To create a parameter with "
            "tags, please remove overwrite flag. To update tags for an existing parameter, please use "
            "AddTagsToResource or RemoveTagsFromResource.");
    }
    if (tags != NULL) {
        TRY(ssm_tags_check(tags, "tags"));
    }
    if (type == 2 && s->kms == NULL) {
        /* never stored in clear: without KMS there is nothing to encrypt it with */
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "SecureString parameters need KMS.");
    }
    TRY(ssm_authorize_param(s, call, canon));

    char key[SSM_KEY_MAX];
    ssm_param_key(call, canon, key, sizeof(key));
    store_txn *t = NULL;
    json_t *rec = NULL, *ver = NULL, *cur = NULL, *pols = NULL;
    const char *value_format = NULL;
    char *cipher = NULL;
    coffer_err rc = COFFER_OK;
    /* read first: encrypting may write a record (the AWS managed key, made on first use), which
     * cannot happen inside this request's transaction; the transaction checks nothing moved */
    TRY_OUT(ssm_rec_load(s->st, NULL, key, &rec));
    const json_t *prev = rec != NULL ? ssm_rec_latest(rec) : NULL;
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
    bool was_advanced = prev != NULL && strcmp(ssm_vstr(prev, "Tier"), "Advanced") == 0;
    if (was_advanced && tier == TIER_STANDARD) {
        FAIL_OUT(COFFER_ERR_VALIDATION,
                 "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the "
                 "advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the "
                 "advanced "
                 "parameter and recreate it as a standard parameter.");
    }
    /* Policies replace the whole set; an overwrite without them keeps the previous ones */
    if (policies != NULL) {
        TRY_OUT(ssm_policies_parse(policies, call->now_ms, &pols));
    } else if ((pols = prev != NULL ? ssm_policies_of(prev) : json_array()) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    bool has_policies = json_array_size(pols) > 0;
    bool advanced = tier == TIER_ADVANCED || was_advanced ||
                    (tier == TIER_INTELLIGENT && (chars > SSM_STANDARD_MAX_VALUE || has_policies));
    if (has_policies && !advanced) {
        FAIL_OUT(
            COFFER_ERR_VALIDATION,
            "Parameter policies are supported only for the advanced-parameter tier. To use parameter "
            "policies, upgrade the parameter to use the advanced-parameter tier. For more information, see "
            "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
            "parameter-store-advanced-parameters.html");
    }
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
        pattern != NULL ? pattern : (prev != NULL ? ssm_vstr(prev, "AllowedPattern") : NULL);
    TRY_OUT(pattern_check(eff_pattern, value));
    const char *eff_dt = data_type != NULL && data_type[0] != 0
                             ? data_type
                             : (prev != NULL ? ssm_vstr(prev, "DataType") : "text");
    TRY_OUT(check_data_type(eff_dt, value));
    const char *eff_type = type >= 0 ? types[type] : ssm_vstr(prev, "Type");
    bool secure = strcmp(eff_type, "SecureString") == 0;
    if (key_id != NULL && !secure) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "KeyId is only valid for SecureString parameters.");
    }
    const char *eff_key = NULL;
    if (secure) {
        if (s->kms == NULL) {
            FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION, "SecureString parameters need KMS.");
        }
        const char *prev_key = prev != NULL ? ssm_vstr(prev, "KeyId") : NULL;
        eff_key = key_id != NULL ? key_id : (prev_key != NULL ? prev_key : SSM_DEFAULT_KEY);
        TRY_OUT(ssm_value_encrypt(s, call, canon, eff_key, value, &cipher, &value_format));
    }

    json_int_t version = prev != NULL ? ssm_vint(prev, "Version") + 1 : 1;
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
    if (value_format != NULL && json_object_set_new(ver, "ValueFormat", json_string(value_format)) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (policies == NULL) {
        /* a new version restarts the clock of a NoChangeNotification */
        size_t i;
        json_t *item;
        json_array_foreach(pols, i, item)
        {
            if (ssm_policy_kind(item) == SSM_POLICY_NO_CHANGE &&
                json_object_set_new(item, "PolicyStatus", json_string("Pending")) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
        }
    }
    if (has_policies && json_object_set(ver, "Policies", pols) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(ssm_rec_load(s->st, t, key, &cur));
    if ((cur == NULL) != (rec == NULL) ||
        (cur != NULL && ssm_vint(ssm_rec_latest(cur), "Version") != version - 1)) {
        FAIL_OUT(COFFER_ERR_TOO_MANY_UPDATES,
                 "There are concurrent updates for a resource that supports one update at a time.");
    }
    if (tier == TIER_INTELLIGENT && prev == NULL && !advanced) {
        /* Intelligent-Tiering also moves up once the account has no standard place left; an
         * overwrite keeps its place (the user guide's third reason) */
        bool full = false;
        TRY_OUT(ssm_count_standard_full(s, t, call->caller->account_id, call->region, &full));
        if (full) {
            advanced = true;
            if (json_object_set_new(ver, "Tier", json_string("Advanced")) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
        }
    }
    /* a new parameter, or one moving up to Advanced, counts against the account's limits */
    TRY_OUT(
        ssm_count_add(s, t, call->caller->account_id, call->region,
                      prev == NULL && !advanced ? 1 : (prev != NULL && advanced && !was_advanced ? -1 : 0),
                      advanced && !was_advanced ? 1 : 0));
    /* build on the record as the transaction reads it: labels and tags set since stay */
    json_decref(rec);
    rec = cur;
    cur = NULL;
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
    /* the oldest version goes once the parameter holds more than it keeps, unless labelled */
    TRY_OUT(ssm_versions_trim(rec));
    /* rec still lists the old version's index entries in "Due": dropped, then the new ones */
    TRY_OUT(ssm_due_rewrite(t, key, rec, rec));
    TRY_OUT(ssm_rec_store(t, key, rec));
    rc = ssm_commit(s, t);
    t = NULL;
    TRY_OUT(rc);
    call->output = json_pack("{s:I, s:s}", "Version", version, "Tier", advanced ? "Advanced" : "Standard");
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    store_txn_abort(t);
    free(cipher);
    json_decref(cur);
    json_decref(ver);
    json_decref(rec);
    json_decref(pols);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading one parameter                                                                        */

/* ------------------------------------------------------------------------------------------ */
/* Deleting                                                                                     */

/* Deletes `name` in `t`; COFFER_ERR_NOT_FOUND (no detail) when absent. */
static coffer_err delete_one(const struct ssm *s, const struct api_call *call, store_txn *t, const char *name)
{
    char canon[SSM_NAME_MAX + 1], key[SSM_KEY_MAX];
    TRY(ssm_name_check(name, false, ssm_arn_prefix_len(call), canon, sizeof(canon)));
    TRY(ssm_authorize_param(s, call, canon));
    ssm_param_key(call, canon, key, sizeof(key));
    json_t *rec = NULL;
    TRY(ssm_rec_load(s->st, t, key, &rec));
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    bool advanced = strcmp(ssm_vstr(ssm_rec_latest(rec), "Tier"), "Advanced") == 0;
    coffer_err rc = ssm_due_rewrite(t, key, rec, NULL); /* its policies' index entries go too */
    json_decref(rec);
    TRY(rc);
    TRY(ssm_count_add(s, t, call->caller->account_id, call->region, advanced ? 0 : -1, advanced ? -1 : 0));
    return store_txn_delete(t, key);
}

coffer_err ssm_op_DeleteParameter(void *state, struct api_call *call)
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
    return ssm_commit(s, t);
}

coffer_err ssm_op_DeleteParameters(void *state, struct api_call *call)
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
    rc = ssm_commit(s, t);
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
