/*
 * Resource policies of secrets: PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy and
 * ValidateResourcePolicy. A policy is kept as the caller wrote it and compiled by the shared
 * policy engine when a request is decided (sm_authorize).
 */
#include <string.h>
#include <strings.h>

#include "iam/policy.h"
#include "secrets/secrets_internal.h"

static coffer_err compile(const char *doc, policy **out)
{
    coffer_err rc = policy_compile_ex(coffer_cursor_from_str(doc), POLICY_COMPILE_REQUIRE_PRINCIPAL, out);
    if (rc == COFFER_ERR_MALFORMED_POLICY) {
        char why[400];
        coffer_str_copy(why, sizeof(why), coffer_last_message());
        return coffer_fail(COFFER_ERR_MALFORMED_POLICY, "This resource policy contains a syntax error: %s",
                           why);
    }
    return rc;
}

/* Condition keys that confine a statement to known callers, so that "*" as principal is not public. */
static bool restrictive_condition(const json_t *cond)
{
    static const char *const keys[] = {"aws:sourceaccount",
                                       "aws:sourcearn",
                                       "aws:principalaccount",
                                       "aws:principalarn",
                                       "aws:principalorgid",
                                       "aws:sourcevpc",
                                       "aws:sourcevpce",
                                       "aws:sourceowner",
                                       "aws:userid",
                                       "kms:calleraccount",
                                       NULL};
    const char *op;
    const json_t *block;
    json_object_foreach((json_t *)cond, op, block)
    {
        if (strncasecmp(op, "StringNot", 9) == 0 || strncasecmp(op, "ArnNot", 6) == 0 ||
            strstr(op, "IfExists")) {
            continue; /* negations and IfExists let unknown callers through */
        }
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)block, key, v)
        {
            for (const char *const *k = keys; *k != NULL; k++) {
                if (strcasecmp(key, *k) == 0) {
                    const char *s = json_string_value(v);
                    if (s == NULL || strchr(s, '*') == NULL) {
                        return true;
                    }
                }
            }
        }
    }
    return false;
}

static bool principal_is_public(const json_t *p)
{
    if (json_is_string(p)) {
        return strcmp(json_string_value(p), "*") == 0;
    }
    if (json_is_array(p)) {
        size_t i;
        const json_t *e;
        json_array_foreach(p, i, e)
        {
            if (principal_is_public(e)) {
                return true;
            }
        }
        return false;
    }
    if (json_is_object(p)) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)p, k, v)
        {
            if (principal_is_public(v)) {
                return true;
            }
        }
    }
    return false;
}

/* True when the policy allows anyone (Principal "*" or NotPrincipal) without a condition naming whom. */
static bool policy_is_public(const char *doc)
{
    json_error_t jerr;
    json_t *root = json_loads(doc, 0, &jerr);
    bool pub = false;
    json_t *stmts = json_object_get(root, "Statement");
    json_t *one = NULL;
    if (json_is_object(stmts)) {
        one = json_pack("[O]", stmts);
        stmts = one;
    }
    size_t i;
    const json_t *st;
    json_array_foreach(stmts, i, st)
    {
        const char *effect = sm_str(st, "Effect");
        if (effect == NULL || strcmp(effect, "Allow") != 0) {
            continue;
        }
        bool broad = json_object_get(st, "NotPrincipal") != NULL ||
                     principal_is_public(json_object_get(st, "Principal"));
        const json_t *cond = json_object_get(st, "Condition");
        if (broad && !(json_is_object(cond) && restrictive_condition(cond))) {
            pub = true;
        }
    }
    json_decref(one);
    json_decref(root);
    return pub;
}

coffer_err sm_op_PutResourcePolicy(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *doc = NULL;
    bool block = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "ResourcePolicy", API_IN_REQUIRED, 1, SM_POLICY_MAX, &doc));
    TRY(api_in_bool(&in, "BlockPublicPolicy", false, &block));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    policy *p = NULL;
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "PutResourcePolicy", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    TRY_OUT(compile(doc, &p));
    if (block && policy_is_public(doc)) {
        FAIL_OUT(COFFER_ERR_PUBLIC_POLICY, "%s", coffer_err_default_message(COFFER_ERR_PUBLIC_POLICY));
    }
    if (json_object_set_new(sec.rec, "ResourcePolicy", json_string(doc)) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(sm_save(s, &sec, 0));
    if ((call->output = json_pack("{s:s, s:s}", "ARN", sec.arn, "Name", sec.name)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    policy_free(p);
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_GetResourcePolicy(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_done(&in));
    struct sm_secret sec;
    TRY(sm_resolve_read(s, call, id, &sec));
    coffer_err rc = COFFER_OK;
    TRY_OUT(sm_authorize(s, call, "GetResourcePolicy", &sec));
    TRY_OUT(sm_check_live(&sec));
    call->output = json_pack("{s:s, s:s}", "ARN", sec.arn, "Name", sec.name);
    const char *doc = sm_str(sec.rec, "ResourcePolicy");
    if (call->output == NULL ||
        (doc != NULL && json_object_set_new(call->output, "ResourcePolicy", json_string(doc)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_DeleteResourcePolicy(void *state, struct api_call *call)
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
    TRY_OUT(sm_authorize(s, call, "DeleteResourcePolicy", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    if (json_object_get(sec.rec, "ResourcePolicy") != NULL) {
        json_object_del(sec.rec, "ResourcePolicy");
        TRY_OUT(sm_save(s, &sec, 0));
    }
    if ((call->output = json_pack("{s:s, s:s}", "ARN", sec.arn, "Name", sec.name)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_ValidateResourcePolicy(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *doc = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", 0, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "ResourcePolicy", API_IN_REQUIRED, 1, SM_POLICY_MAX, &doc));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    if (id != NULL) {
        TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
        TRY_OUT(sm_authorize(s, call, "ValidateResourcePolicy", &sec));
    } else {
        TRY_OUT(sm_authorize_any(s, call, "ValidateResourcePolicy"));
    }
    policy *p = NULL;
    json_t *errors = json_array();
    if (errors == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    rc = compile(doc, &p);
    if (rc == COFFER_ERR_MALFORMED_POLICY) {
        char why[480];
        coffer_str_copy(why, sizeof(why), coffer_last_message());
        coffer_clear_err();
        rc = json_array_append_new(
                 errors, json_pack("{s:s, s:s}", "CheckName", "SYNTAX_CHECK", "ErrorMessage", why)) == 0
                 ? COFFER_OK
                 : sm_oom();
    } else if (rc == COFFER_OK && policy_is_public(doc)) {
        rc = json_array_append_new(errors,
                                   json_pack("{s:s, s:s}", "CheckName", "PUBLIC_ACCESS_CHECK", "ErrorMessage",
                                             "This resource policy grants broad access to the secret.")) == 0
                 ? COFFER_OK
                 : sm_oom();
    }
    policy_free(p);
    if (rc == COFFER_OK) {
        call->output = json_pack("{s:b, s:O}", "PolicyValidationPassed", json_array_size(errors) == 0,
                                 "ValidationErrors", errors);
        rc = call->output != NULL ? COFFER_OK : sm_oom();
    }
    json_decref(errors);
out:
    sm_secret_free(&sec);
    return rc;
}
