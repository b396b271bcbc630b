/*
 * STS (Query protocol: GetCallerIdentity, AssumeRole) and the CofferAdmin service (JSON
 * protocol: CreateAccount, ListAccounts), see iam_service.h.
 *
 * AssumeRole decides as AWS does. The role's trust policy is evaluated with the caller as the
 * principal. When it names the caller itself (a user, a role, a session) and the caller is in
 * the role's account, that is enough; when it only trusts the caller's account (its root, its
 * account id, "*"), the caller's own identity policies must also allow sts:AssumeRole on the
 * role; a caller from another account always needs both. An explicit deny anywhere refuses.
 * That is the shared authorizer (iam/authz.h) with the trust policy as the role's resource
 * policy, read with AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "common/timeutil.h"
#include "api/api_input.h"
#include "iam/iam_service_internal.h"

#define STS_QUOTA_RPS 100
#define ADMIN_QUOTA_RPS 5
#define STS_ARN_MAX 1100

/* ---------------------------------------------------------------------------------------------
 * GetCallerIdentity
 * ------------------------------------------------------------------------------------------- */

static coffer_err op_GetCallerIdentity(void *state, struct api_call *call)
{
    (void)state;
    const struct api_caller *c = call->caller;
    call->output = json_pack("{s:s, s:s, s:s}", "UserId", c->principal_id, "Account", c->account_id, "Arn",
                             c->principal_arn);
    return call->output ? COFFER_OK : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------------------------------------
 * AssumeRole
 * ------------------------------------------------------------------------------------------- */

static bool session_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 64) {
        return false;
    }
    return iam_name_valid(s, 64);
}

/* The credentials and the assumed-role user of a new session, as STS returns them. */
static coffer_err session_output(iam_services *s, struct api_call *call, json_t *role, const char *session,
                                 int64_t duration)
{
    coffer_err rc = COFFER_OK;
    coffer_buf secret = COFFER_SECRET_BUF_INIT, token = COFFER_BUF_INIT;
    char akid[IAM_ACCESS_KEY_ID_LEN + 1], session_arn[STS_ARN_MAX], pid[160], expiration[32];
    const char *role_arn = json_string_value(json_object_get(role, "Arn"));
    const char *role_name = json_string_value(json_object_get(role, "RoleName"));
    const char *role_id = json_string_value(json_object_get(role, "RoleId"));
    char acct[AWS_ACCOUNT_ID_LEN + 1], name[IAM_DIR_POLICY_NAME_MAX + 1];
    if (role_arn == NULL || role_name == NULL || role_id == NULL ||
        !iam_arn_parse(role_arn, "role", acct, name)) {
        return coffer_fail(COFFER_ERR_STORE, "malformed role record");
    }
    snprintf(session_arn, sizeof(session_arn), "arn:aws:sts::%s:assumed-role/%s/%s", acct, role_name,
             session);
    snprintf(pid, sizeof(pid), "%s:%s", role_id, session);
    int64_t expires = call->now_ms / 1000 + duration;
    struct iam_session_spec spec = {
        .account_id = acct,
        .role_arn = role_arn,
        .session_arn = session_arn,
        .principal_id = pid,
        .issued_at = call->now_ms / 1000,
        .expires_at = expires,
    };
    TRY_OUT(iam_creds_issue_session(s->creds, &spec, akid, &secret, &token));
    coffer_time_iso8601(expires, expiration, sizeof(expiration));
    call->output =
        json_pack("{s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s}}", "Credentials", "AccessKeyId", akid,
                  "SecretAccessKey", (const char *)secret.data, "SessionToken", (const char *)token.data,
                  "Expiration", expiration, "AssumedRoleUser", "AssumedRoleId", pid, "Arn", session_arn);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    call->audit_response = json_pack("{s:{s:s, s:s}, s:{s:s}}", "assumedRoleUser", "assumedRoleId", pid,
                                     "arn", session_arn, "credentials", "accessKeyId", akid);
out:
    coffer_buf_free(&secret);
    coffer_buf_free(&token);
    return rc;
}

static coffer_err op_AssumeRole(void *state, struct api_call *call)
{
    iam_services *s = state;
    coffer_err rc = COFFER_OK;
    api_in in;
    const char *role_arn = NULL, *session = NULL, *dur_text = NULL;
    json_t *role = NULL;
    policy *trust = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "DurationSeconds", 0, 1, 12, &dur_text));
    TRY(api_in_string(&in, "RoleArn", API_IN_REQUIRED, 20, 2048, &role_arn));
    TRY(api_in_string(&in, "RoleSessionName", API_IN_REQUIRED, 2, 64, &session));
    TRY(api_in_done(&in));
    if (!session_name_valid(session)) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy "
                           "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
                           session);
    }
    int64_t duration = STS_DURATION_DEFAULT;
    if (dur_text != NULL) {
        char *end = NULL;
        long long v = strtoll(dur_text, &end, 10);
        if (end == dur_text || *end != '\0' || v < STS_DURATION_MIN || v > IAM_DIR_SESSION_MAX) {
            return coffer_fail(
                COFFER_ERR_VALIDATION,
                "1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy "
                "constraint: Member must have value %s",
                dur_text,
                (end != dur_text && *end == '\0' && v > IAM_DIR_SESSION_MAX)
                    ? "less than or equal to 43200"
                    : "greater than or equal to 900");
        }
        duration = v;
    }
    /* A role that does not exist is refused exactly like one that does not trust the caller. */
    char acct[AWS_ACCOUNT_ID_LEN + 1], name[IAM_DIR_POLICY_NAME_MAX + 1];
    if (!iam_arn_parse(role_arn, "role", acct, name) ||
        iam_dir_get(s->dir, IAM_KIND_ROLE, acct, name, &role) != COFFER_OK ||
        strcmp(json_string_value(json_object_get(role, "Arn"))
                   ? json_string_value(json_object_get(role, "Arn"))
                   : "",
               role_arn) != 0) {
        FAIL_OUT(COFFER_ERR_ACCESS_DENIED,
                 "User: %s is not authorized to perform: sts:AssumeRole on resource: %s",
                 call->caller->principal_arn, role_arn);
    }
    /* Bound: a user or role it names is the one that existed when it was stored, not a namesake. */
    if (iam_dir_trust_policy(s->dir, acct, name, &trust) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_ACCESS_DENIED,
                 "User: %s is not authorized to perform: sts:AssumeRole on resource: %s",
                 call->caller->principal_arn, role_arn);
    }
    /* The trust policy is the role's resource policy; trusting the account delegates to IAM. */
    struct authz_request req = authz_request_for(call, "sts:AssumeRole", role_arn);
    req.resource_account = acct;
    req.resource_policy = trust;
    req.same_account = AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT;
    struct authz_verdict v;
    TRY_OUT(authz_decide(s->az, &req, &v));
    if (!v.allowed) {
        FAIL_OUT(COFFER_ERR_ACCESS_DENIED,
                 "User: %s is not authorized to perform: sts:AssumeRole on resource: %s",
                 call->caller->principal_arn, role_arn);
    }
    json_int_t max_session = json_integer_value(json_object_get(role, "MaxSessionDuration"));
    if (max_session <= 0) {
        max_session = IAM_DIR_SESSION_MIN;
    }
    if (duration > max_session) {
        FAIL_OUT(COFFER_ERR_VALIDATION,
                 "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.");
    }
    call->audit_resources =
        json_pack("[{s:s, s:s, s:s}]", "accountId", acct, "type", "AWS::IAM::Role", "ARN", role_arn);
    TRY_OUT(session_output(s, call, role, session, duration));
out:
    policy_free(trust);
    json_decref(role);
    return rc;
}

static const struct api_op sts_ops[] = {
    {"AssumeRole", op_AssumeRole, 0, STS_QUOTA_RPS},
    {"GetCallerIdentity", op_GetCallerIdentity, API_OP_READONLY, STS_QUOTA_RPS},
};

void iam_services_init_sts(iam_services *s)
{
    s->sts_api = (struct api_service){
        .target_prefix = NULL,
        .signing_name = "sts",
        .event_source = "sts.amazonaws.com",
        .ops = sts_ops,
        .n_ops = sizeof(sts_ops) / sizeof(sts_ops[0]),
        .state = s,
        .protocol = API_PROTOCOL_QUERY,
        .xml_namespace = STS_XML_NAMESPACE,
        .errors = iam_query_errors,
        .n_errors = iam_n_query_errors,
        .sensitive_members = iam_sensitive_members,
    };
}

/* ---------------------------------------------------------------------------------------------
 * CofferAdmin: accounts, for the operator account's root only
 * ------------------------------------------------------------------------------------------- */

static coffer_err admin_authorize(iam_services *s, const struct api_call *call)
{
    const struct api_caller *c = call->caller;
    if (strcmp(c->account_id, s->operator_account) != 0 || c->principal_kind != API_PRINCIPAL_ROOT) {
        return coffer_fail(
            COFFER_ERR_ACCESS_DENIED,
            "User: %s is not authorized to perform: coffer-admin:%s: only the operator account's root "
            "may manage accounts",
            c->principal_arn, call->operation);
    }
    return COFFER_OK;
}

static coffer_err op_CreateAccount(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL, *want_id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "AccountName", API_IN_REQUIRED, 1, IAM_DIR_ACCOUNT_NAME_MAX, &name));
    /* The id of the same account in a peer region's deployment: multi-Region keys and secrets
     * replicate into the account of the same id. */
    TRY(api_in_string(&in, "AccountId", 0, AWS_ACCOUNT_ID_LEN, AWS_ACCOUNT_ID_LEN, &want_id));
    TRY(api_in_done(&in));
    TRY(admin_authorize(s, call));
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    char acct[AWS_ACCOUNT_ID_LEN + 1], akid[IAM_ACCESS_KEY_ID_LEN + 1];
    coffer_err rc = iam_dir_account_create(s->dir, name, want_id, call->now_ms / 1000, acct, akid, &secret);
    if (rc == COFFER_OK) {
        call->output = json_pack("{s:s, s:s, s:s}", "AccountId", acct, "AccessKeyId", akid, "SecretAccessKey",
                                 (const char *)secret.data);
        call->audit_response = json_pack("{s:s, s:s}", "accountId", acct, "accessKeyId", akid);
        if (call->output == NULL) {
            rc = coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    coffer_buf_free(&secret);
    return rc;
}

static coffer_err op_ListAccounts(void *state, struct api_call *call)
{
    iam_services *s = state;
    TRY(admin_authorize(s, call));
    json_t *arr = NULL;
    TRY(iam_dir_account_list(s->dir, &arr));
    call->output = json_pack("{s:o}", "Accounts", arr);
    return call->output ? COFFER_OK : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

static const struct api_op admin_ops[] = {
    {"CreateAccount", op_CreateAccount, 0, ADMIN_QUOTA_RPS},
    {"ListAccounts", op_ListAccounts, API_OP_READONLY, ADMIN_QUOTA_RPS},
};

void iam_services_init_admin(iam_services *s)
{
    s->admin_api = (struct api_service){
        .target_prefix = ADMIN_TARGET_PREFIX,
        .signing_name = ADMIN_SIGNING_NAME,
        .event_source = "admin.coffer.local",
        .ops = admin_ops,
        .n_ops = sizeof(admin_ops) / sizeof(admin_ops[0]),
        .state = s,
        .sensitive_members = iam_sensitive_members,
    };
}
