/*
 * The IAM service (Query protocol): one handler per operation over the directory, each
 * authorizing the caller first (see iam_service.h). Inputs are the flat form members
 * (http/query.h); policy documents arrive URL-decoded by the form reader and are returned
 * URL-encoded, as IAM does (the AWS CLI and boto3 decode them).
 */
#include "iam/iam_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/codec.h"
#include "iam/authz.h"
#include "iam/iam_service_internal.h"

#define IAM_QUOTA_RPS 50
#define IAM_ARN_MAX 1100

/* ---------------------------------------------------------------------------------------------
 * Authorization of the caller
 * ------------------------------------------------------------------------------------------- */

/* Authorizes iam:<operation> on `resource` (an ARN in the caller's account): identity policies only. */
static coffer_err authorize(iam_services *s, const struct api_call *call, const char *resource)
{
    char action[160];
    snprintf(action, sizeof(action), "iam:%s", call->operation);
    struct authz_request req = authz_request_for(call, action, resource);
    return authz_check(s->az, &req);
}

/* The ARN of a user or role for authorization: the stored one (with its path) when it exists. */
static void entity_arn(iam_services *s, const struct api_call *call, enum iam_kind kind, const char *name,
                       const char *path, char out[IAM_ARN_MAX])
{
    json_t *e = NULL;
    const char *acct = call->caller->account_id;
    if (path == NULL && name != NULL && call->caller->principal_kind != API_PRINCIPAL_ROOT &&
        iam_dir_get(s->dir, kind, acct, name, &e) == COFFER_OK) {
        snprintf(out, IAM_ARN_MAX, "%s", json_string_value(json_object_get(e, "Arn")));
        json_decref(e);
        return;
    }
    snprintf(out, IAM_ARN_MAX, "arn:aws:iam::%s:%s%s%s", acct, kind == IAM_KIND_USER ? "user" : "role",
             path ? path : "/", name ? name : "");
}

/* ---------------------------------------------------------------------------------------------
 * Input and output helpers
 * ------------------------------------------------------------------------------------------- */

/* The user named by UserName, or the calling IAM user when absent. */
static coffer_err user_name_or_caller(api_in *in, const struct api_call *call, const char **out,
                                      char buf[128])
{
    const char *name = NULL;
    TRY(api_in_string(in, "UserName", 0, 1, 128, &name));
    if (name == NULL && call->caller->principal_kind == API_PRINCIPAL_USER) {
        const char *slash = strrchr(call->caller->principal_arn, '/');
        snprintf(buf, 128, "%s", slash ? slash + 1 : "");
        name = buf;
    }
    *out = name;
    return COFFER_OK;
}

/* Sets out[member] to the URL-encoded form of a JSON-text member (policy documents). */
static coffer_err encode_document(json_t *obj, const char *member)
{
    const char *doc = json_string_value(json_object_get(obj, member));
    if (doc == NULL) {
        return COFFER_OK;
    }
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = coffer_url_encode(doc, &b);
    if (rc == COFFER_OK) {
        rc = coffer_buf_nul_terminate(&b);
    }
    if (rc == COFFER_OK) {
        json_object_set_new(obj, member, json_string((const char *)b.data));
    }
    coffer_buf_free(&b);
    return rc;
}

static coffer_err wrap(struct api_call *call, const char *member, json_t *value)
{
    call->output = json_object();
    if (call->output == NULL || value == NULL) {
        json_decref(value);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    json_object_set_new(call->output, member, value);
    return COFFER_OK;
}

static coffer_err wrap_list(struct api_call *call, const char *member, json_t *arr)
{
    TRY(wrap(call, member, arr));
    json_object_set_new(call->output, "IsTruncated", json_false());
    return COFFER_OK;
}

static int64_t now_s(const struct api_call *call)
{
    return call->now_ms / 1000;
}

/* ---------------------------------------------------------------------------------------------
 * Users
 * ------------------------------------------------------------------------------------------- */

static coffer_err op_CreateUser(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL, *path = NULL;
    char arn[IAM_ARN_MAX];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Path", 0, 1, IAM_DIR_PATH_MAX, &path));
    TRY(api_in_string(&in, "UserName", API_IN_REQUIRED, 1, IAM_DIR_NAME_MAX, &name));
    TRY(api_in_done(&in));
    entity_arn(s, call, IAM_KIND_USER, name, path ? path : "/", arn);
    TRY(authorize(s, call, arn));
    json_t *user = NULL;
    TRY(iam_dir_user_create(s->dir, call->caller->account_id, name, path, now_s(call), &user));
    return wrap(call, "User", user);
}

static coffer_err op_GetUser(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL;
    char buf[128], arn[IAM_ARN_MAX];
    api_in_init(&in, call->input);
    TRY(user_name_or_caller(&in, call, &name, buf));
    TRY(api_in_done(&in));
    if (name == NULL) {
        /* The account root (or a session) asking about itself. */
        if (call->caller->principal_kind != API_PRINCIPAL_ROOT) {
            return coffer_fail(COFFER_ERR_VALIDATION,
                               "Must specify userName when calling with non-User credentials");
        }
        return wrap(call, "User",
                    json_pack("{s:s, s:s, s:s}", "UserId", call->caller->account_id, "Arn",
                              call->caller->principal_arn, "CreateDate", "1970-01-01T00:00:00Z"));
    }
    entity_arn(s, call, IAM_KIND_USER, name, NULL, arn);
    TRY(authorize(s, call, arn));
    json_t *user = NULL;
    TRY(iam_dir_get(s->dir, IAM_KIND_USER, call->caller->account_id, name, &user));
    return wrap(call, "User", user);
}

static coffer_err op_DeleteUser(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL;
    char arn[IAM_ARN_MAX];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "UserName", API_IN_REQUIRED, 1, IAM_DIR_NAME_MAX, &name));
    TRY(api_in_done(&in));
    entity_arn(s, call, IAM_KIND_USER, name, NULL, arn);
    TRY(authorize(s, call, arn));
    return iam_dir_delete(s->dir, IAM_KIND_USER, call->caller->account_id, name);
}

static coffer_err list_entities(iam_services *s, struct api_call *call, enum iam_kind kind,
                                const char *member)
{
    api_in in;
    const char *prefix = NULL;
    char arn[IAM_ARN_MAX];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PathPrefix", 0, 1, IAM_DIR_PATH_MAX, &prefix));
    TRY(api_in_done(&in));
    snprintf(arn, sizeof(arn), "arn:aws:iam::%s:%s/", call->caller->account_id,
             kind == IAM_KIND_USER ? "user" : "role");
    TRY(authorize(s, call, arn));
    json_t *arr = NULL;
    TRY(iam_dir_list(s->dir, kind, call->caller->account_id, prefix, &arr));
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (encode_document(v, "AssumeRolePolicyDocument") != COFFER_OK) {
            json_decref(arr);
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    return wrap_list(call, member, arr);
}

static coffer_err op_ListUsers(void *state, struct api_call *call)
{
    return list_entities(state, call, IAM_KIND_USER, "Users");
}

/* ---------------------------------------------------------------------------------------------
 * Access keys
 * ------------------------------------------------------------------------------------------- */

static coffer_err key_user(iam_services *s, struct api_call *call, api_in *in, const char **name,
                           char buf[128])
{
    char arn[IAM_ARN_MAX];
    TRY(user_name_or_caller(in, call, name, buf));
    if (*name == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Must specify userName when calling with non-User credentials");
    }
    entity_arn(s, call, IAM_KIND_USER, *name, NULL, arn);
    return authorize(s, call, arn);
}

static coffer_err op_CreateAccessKey(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL;
    char buf[128];
    api_in_init(&in, call->input);
    TRY(api_in_done(&in));
    TRY(key_user(s, call, &in, &name, buf));
    json_t *key = NULL;
    TRY(iam_dir_key_create(s->dir, call->caller->account_id, name, now_s(call), &key));
    return wrap(call, "AccessKey", key);
}

static const char *const key_status_values[] = {"Active", "Inactive", NULL};

static coffer_err op_UpdateAccessKey(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL, *akid = NULL;
    int status = -1;
    char buf[128];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "AccessKeyId", API_IN_REQUIRED, 16, 128, &akid));
    TRY(api_in_enum(&in, "Status", API_IN_REQUIRED, key_status_values, &status));
    TRY(api_in_done(&in));
    TRY(key_user(s, call, &in, &name, buf));
    return iam_dir_key_update(s->dir, call->caller->account_id, name, akid, status == 0);
}

static coffer_err op_DeleteAccessKey(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL, *akid = NULL;
    char buf[128];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "AccessKeyId", API_IN_REQUIRED, 16, 128, &akid));
    TRY(api_in_done(&in));
    TRY(key_user(s, call, &in, &name, buf));
    return iam_dir_key_delete(s->dir, call->caller->account_id, name, akid);
}

static coffer_err op_ListAccessKeys(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL;
    char buf[128];
    api_in_init(&in, call->input);
    TRY(api_in_done(&in));
    TRY(key_user(s, call, &in, &name, buf));
    json_t *arr = NULL;
    TRY(iam_dir_key_list(s->dir, call->caller->account_id, name, &arr));
    return wrap_list(call, "AccessKeyMetadata", arr);
}

/* ---------------------------------------------------------------------------------------------
 * Inline policies (user and role share the code; only the member names differ)
 * ------------------------------------------------------------------------------------------- */

static const char *name_member(enum iam_kind kind)
{
    return kind == IAM_KIND_USER ? "UserName" : "RoleName";
}

static coffer_err read_entity_name(api_in *in, enum iam_kind kind, const char **name)
{
    return api_in_string(in, name_member(kind), API_IN_REQUIRED, 1, IAM_DIR_NAME_MAX, name);
}

static coffer_err authorize_entity(iam_services *s, struct api_call *call, enum iam_kind kind,
                                   const char *name)
{
    char arn[IAM_ARN_MAX];
    entity_arn(s, call, kind, name, NULL, arn);
    return authorize(s, call, arn);
}

static coffer_err put_inline(iam_services *s, struct api_call *call, enum iam_kind kind)
{
    api_in in;
    const char *name = NULL, *pname = NULL, *doc = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PolicyDocument", API_IN_REQUIRED, 1, IAM_DIR_POLICY_DOC_MAX, &doc));
    TRY(api_in_string(&in, "PolicyName", API_IN_REQUIRED, 1, IAM_DIR_POLICY_NAME_MAX, &pname));
    TRY(read_entity_name(&in, kind, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, kind, name));
    return iam_dir_inline_put(s->dir, kind, call->caller->account_id, name, pname, doc);
}

static coffer_err get_inline(iam_services *s, struct api_call *call, enum iam_kind kind)
{
    api_in in;
    const char *name = NULL, *pname = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PolicyName", API_IN_REQUIRED, 1, IAM_DIR_POLICY_NAME_MAX, &pname));
    TRY(read_entity_name(&in, kind, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, kind, name));
    json_t *doc = NULL;
    TRY(iam_dir_inline_get(s->dir, kind, call->caller->account_id, name, pname, &doc));
    call->output =
        json_pack("{s:s, s:s, s:o}", name_member(kind), name, "PolicyName", pname, "PolicyDocument", doc);
    if (call->output == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return encode_document(call->output, "PolicyDocument");
}

static coffer_err delete_inline(iam_services *s, struct api_call *call, enum iam_kind kind)
{
    api_in in;
    const char *name = NULL, *pname = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PolicyName", API_IN_REQUIRED, 1, IAM_DIR_POLICY_NAME_MAX, &pname));
    TRY(read_entity_name(&in, kind, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, kind, name));
    return iam_dir_inline_delete(s->dir, kind, call->caller->account_id, name, pname);
}

static coffer_err list_inline(iam_services *s, struct api_call *call, enum iam_kind kind)
{
    api_in in;
    const char *name = NULL;
    api_in_init(&in, call->input);
    TRY(read_entity_name(&in, kind, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, kind, name));
    json_t *arr = NULL;
    TRY(iam_dir_inline_list(s->dir, kind, call->caller->account_id, name, &arr));
    return wrap_list(call, "PolicyNames", arr);
}

static coffer_err attach(iam_services *s, struct api_call *call, enum iam_kind kind, bool on)
{
    api_in in;
    const char *name = NULL, *arn = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PolicyArn", API_IN_REQUIRED, 20, 2048, &arn));
    TRY(read_entity_name(&in, kind, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, kind, name));
    return iam_dir_attach(s->dir, kind, call->caller->account_id, name, arn, on);
}

static coffer_err list_attached(iam_services *s, struct api_call *call, enum iam_kind kind)
{
    api_in in;
    const char *name = NULL;
    api_in_init(&in, call->input);
    TRY(read_entity_name(&in, kind, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, kind, name));
    json_t *arr = NULL;
    TRY(iam_dir_attached_list(s->dir, kind, call->caller->account_id, name, &arr));
    return wrap_list(call, "AttachedPolicies", arr);
}

static coffer_err op_PutUserPolicy(void *st, struct api_call *c)
{
    return put_inline(st, c, IAM_KIND_USER);
}
static coffer_err op_GetUserPolicy(void *st, struct api_call *c)
{
    return get_inline(st, c, IAM_KIND_USER);
}
static coffer_err op_DeleteUserPolicy(void *st, struct api_call *c)
{
    return delete_inline(st, c, IAM_KIND_USER);
}
static coffer_err op_ListUserPolicies(void *st, struct api_call *c)
{
    return list_inline(st, c, IAM_KIND_USER);
}
static coffer_err op_PutRolePolicy(void *st, struct api_call *c)
{
    return put_inline(st, c, IAM_KIND_ROLE);
}
static coffer_err op_GetRolePolicy(void *st, struct api_call *c)
{
    return get_inline(st, c, IAM_KIND_ROLE);
}
static coffer_err op_DeleteRolePolicy(void *st, struct api_call *c)
{
    return delete_inline(st, c, IAM_KIND_ROLE);
}
static coffer_err op_ListRolePolicies(void *st, struct api_call *c)
{
    return list_inline(st, c, IAM_KIND_ROLE);
}
static coffer_err op_AttachUserPolicy(void *st, struct api_call *c)
{
    return attach(st, c, IAM_KIND_USER, true);
}
static coffer_err op_DetachUserPolicy(void *st, struct api_call *c)
{
    return attach(st, c, IAM_KIND_USER, false);
}
static coffer_err op_AttachRolePolicy(void *st, struct api_call *c)
{
    return attach(st, c, IAM_KIND_ROLE, true);
}
static coffer_err op_DetachRolePolicy(void *st, struct api_call *c)
{
    return attach(st, c, IAM_KIND_ROLE, false);
}
static coffer_err op_ListAttachedUserPolicies(void *st, struct api_call *c)
{
    return list_attached(st, c, IAM_KIND_USER);
}
static coffer_err op_ListAttachedRolePolicies(void *st, struct api_call *c)
{
    return list_attached(st, c, IAM_KIND_ROLE);
}

/* ---------------------------------------------------------------------------------------------
 * Roles
 * ------------------------------------------------------------------------------------------- */

static coffer_err role_output(struct api_call *call, json_t *role)
{
    coffer_err rc = encode_document(role, "AssumeRolePolicyDocument");
    if (rc != COFFER_OK) {
        json_decref(role);
        return rc;
    }
    return wrap(call, "Role", role);
}

static coffer_err op_CreateRole(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL, *path = NULL, *doc = NULL, *desc = NULL, *max_text = NULL;
    char arn[IAM_ARN_MAX];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "AssumeRolePolicyDocument", API_IN_REQUIRED, 1, IAM_DIR_POLICY_DOC_MAX, &doc));
    TRY(api_in_string(&in, "Description", 0, 0, 1000, &desc));
    TRY(api_in_string(&in, "MaxSessionDuration", 0, 1, 12, &max_text));
    TRY(api_in_string(&in, "Path", 0, 1, IAM_DIR_PATH_MAX, &path));
    TRY(api_in_string(&in, "RoleName", API_IN_REQUIRED, 1, IAM_DIR_NAME_MAX, &name));
    TRY(api_in_done(&in));
    int64_t max_session = 0;
    if (max_text != NULL) {
        char *end = NULL;
        long long v = strtoll(max_text, &end, 10);
        if (end == max_text || *end != '\0') {
            return coffer_fail(COFFER_ERR_VALIDATION, "MaxSessionDuration must be an integer");
        }
        max_session = v;
    }
    entity_arn(s, call, IAM_KIND_ROLE, name, path ? path : "/", arn);
    TRY(authorize(s, call, arn));
    json_t *role = NULL;
    TRY(iam_dir_role_create(s->dir, call->caller->account_id, name, path, doc, max_session, desc, now_s(call),
                            &role));
    return role_output(call, role);
}

static coffer_err op_GetRole(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL;
    api_in_init(&in, call->input);
    TRY(read_entity_name(&in, IAM_KIND_ROLE, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, IAM_KIND_ROLE, name));
    json_t *role = NULL;
    TRY(iam_dir_get(s->dir, IAM_KIND_ROLE, call->caller->account_id, name, &role));
    return role_output(call, role);
}

static coffer_err op_DeleteRole(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL;
    api_in_init(&in, call->input);
    TRY(read_entity_name(&in, IAM_KIND_ROLE, &name));
    TRY(api_in_done(&in));
    TRY(authorize_entity(s, call, IAM_KIND_ROLE, name));
    return iam_dir_delete(s->dir, IAM_KIND_ROLE, call->caller->account_id, name);
}

static coffer_err op_ListRoles(void *state, struct api_call *call)
{
    return list_entities(state, call, IAM_KIND_ROLE, "Roles");
}

/* ---------------------------------------------------------------------------------------------
 * Managed policies
 * ------------------------------------------------------------------------------------------- */

static coffer_err op_CreatePolicy(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *name = NULL, *path = NULL, *doc = NULL, *desc = NULL;
    char arn[IAM_ARN_MAX];
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Description", 0, 0, 1000, &desc));
    TRY(api_in_string(&in, "Path", 0, 1, IAM_DIR_PATH_MAX, &path));
    TRY(api_in_string(&in, "PolicyDocument", API_IN_REQUIRED, 1, IAM_DIR_POLICY_DOC_MAX, &doc));
    TRY(api_in_string(&in, "PolicyName", API_IN_REQUIRED, 1, IAM_DIR_POLICY_NAME_MAX, &name));
    TRY(api_in_done(&in));
    snprintf(arn, sizeof(arn), "arn:aws:iam::%s:policy%s%s", call->caller->account_id, path ? path : "/",
             name);
    TRY(authorize(s, call, arn));
    json_t *pol = NULL;
    TRY(iam_dir_policy_create(s->dir, call->caller->account_id, name, path, doc, desc, now_s(call), &pol));
    return wrap(call, "Policy", pol);
}

static coffer_err policy_arn_input(iam_services *s, struct api_call *call, const char **arn)
{
    api_in in;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PolicyArn", API_IN_REQUIRED, 20, 2048, arn));
    TRY(api_in_done(&in));
    return authorize(s, call, *arn);
}

static coffer_err op_GetPolicy(void *state, struct api_call *call)
{
    iam_services *s = state;
    const char *arn = NULL;
    TRY(policy_arn_input(s, call, &arn));
    json_t *pol = NULL;
    TRY(iam_dir_policy_get(s->dir, call->caller->account_id, arn, &pol));
    return wrap(call, "Policy", pol);
}

static coffer_err op_DeletePolicy(void *state, struct api_call *call)
{
    iam_services *s = state;
    const char *arn = NULL;
    TRY(policy_arn_input(s, call, &arn));
    return iam_dir_policy_delete(s->dir, call->caller->account_id, arn);
}

static coffer_err op_GetPolicyVersion(void *state, struct api_call *call)
{
    iam_services *s = state;
    api_in in;
    const char *arn = NULL, *version = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "PolicyArn", API_IN_REQUIRED, 20, 2048, &arn));
    TRY(api_in_string(&in, "VersionId", API_IN_REQUIRED, 1, 32, &version));
    TRY(api_in_done(&in));
    TRY(authorize(s, call, arn));
    json_t *doc = NULL;
    TRY(iam_dir_policy_document(s->dir, call->caller->account_id, arn, &doc));
    if (strcmp(version, "v1") != 0) {
        json_decref(doc);
        return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY,
                           "Policy %s version %s does not exist or is not attachable.", arn, version);
    }
    json_t *ver = json_pack("{s:o, s:s, s:b}", "Document", doc, "VersionId", "v1", "IsDefaultVersion", 1);
    if (ver == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY(encode_document(ver, "Document"));
    return wrap(call, "PolicyVersion", ver);
}

static coffer_err op_ListPolicies(void *state, struct api_call *call)
{
    iam_services *s = state;
    char arn[IAM_ARN_MAX];
    snprintf(arn, sizeof(arn), "arn:aws:iam::%s:policy/", call->caller->account_id);
    TRY(authorize(s, call, arn));
    json_t *arr = NULL;
    TRY(iam_dir_policy_list(s->dir, call->caller->account_id, &arr));
    return wrap_list(call, "Policies", arr);
}

/* ---------------------------------------------------------------------------------------------
 * The service
 * ------------------------------------------------------------------------------------------- */

/* Sorted by name (binary search). */
static const struct api_op iam_ops[] = {
    {"AttachRolePolicy", op_AttachRolePolicy, 0, IAM_QUOTA_RPS},
    {"AttachUserPolicy", op_AttachUserPolicy, 0, IAM_QUOTA_RPS},
    {"CreateAccessKey", op_CreateAccessKey, 0, IAM_QUOTA_RPS},
    {"CreatePolicy", op_CreatePolicy, 0, IAM_QUOTA_RPS},
    {"CreateRole", op_CreateRole, 0, IAM_QUOTA_RPS},
    {"CreateUser", op_CreateUser, 0, IAM_QUOTA_RPS},
    {"DeleteAccessKey", op_DeleteAccessKey, 0, IAM_QUOTA_RPS},
    {"DeletePolicy", op_DeletePolicy, 0, IAM_QUOTA_RPS},
    {"DeleteRole", op_DeleteRole, 0, IAM_QUOTA_RPS},
    {"DeleteRolePolicy", op_DeleteRolePolicy, 0, IAM_QUOTA_RPS},
    {"DeleteUser", op_DeleteUser, 0, IAM_QUOTA_RPS},
    {"DeleteUserPolicy", op_DeleteUserPolicy, 0, IAM_QUOTA_RPS},
    {"DetachRolePolicy", op_DetachRolePolicy, 0, IAM_QUOTA_RPS},
    {"DetachUserPolicy", op_DetachUserPolicy, 0, IAM_QUOTA_RPS},
    {"GetPolicy", op_GetPolicy, API_OP_READONLY, IAM_QUOTA_RPS},
    {"GetPolicyVersion", op_GetPolicyVersion, API_OP_READONLY, IAM_QUOTA_RPS},
    {"GetRole", op_GetRole, API_OP_READONLY, IAM_QUOTA_RPS},
    {"GetRolePolicy", op_GetRolePolicy, API_OP_READONLY, IAM_QUOTA_RPS},
    {"GetUser", op_GetUser, API_OP_READONLY, IAM_QUOTA_RPS},
    {"GetUserPolicy", op_GetUserPolicy, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListAccessKeys", op_ListAccessKeys, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListAttachedRolePolicies", op_ListAttachedRolePolicies, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListAttachedUserPolicies", op_ListAttachedUserPolicies, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListPolicies", op_ListPolicies, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListRolePolicies", op_ListRolePolicies, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListRoles", op_ListRoles, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListUserPolicies", op_ListUserPolicies, API_OP_READONLY, IAM_QUOTA_RPS},
    {"ListUsers", op_ListUsers, API_OP_READONLY, IAM_QUOTA_RPS},
    {"PutRolePolicy", op_PutRolePolicy, 0, IAM_QUOTA_RPS},
    {"PutUserPolicy", op_PutUserPolicy, 0, IAM_QUOTA_RPS},
    {"UpdateAccessKey", op_UpdateAccessKey, 0, IAM_QUOTA_RPS},
};

/* Secrets in IAM, STS and CofferAdmin answers (new access keys, session credentials). */
const char *const iam_sensitive_members[] = {"SecretAccessKey", "SessionToken", NULL};

/* How IAM and STS name errors (their Query-protocol codes), where err.h's defaults differ. */
const struct api_error_name iam_query_errors[] = {
    {COFFER_ERR_NOMEM, "ServiceFailure", 500, NULL},
    {COFFER_ERR_INTERNAL, "ServiceFailure", 500, NULL},
    {COFFER_ERR_IO, "ServiceFailure", 500, NULL},
    {COFFER_ERR_STORE, "ServiceFailure", 500, NULL},
    {COFFER_ERR_AUDIT, "ServiceFailure", 500, NULL},
    {COFFER_ERR_CRYPTO, "ServiceFailure", 500, NULL},
    {COFFER_ERR_CONFIG, "ServiceFailure", 500, NULL},
    {COFFER_ERR_KEYRING, "ServiceFailure", 500, NULL},
    {COFFER_ERR_USAGE, "ValidationError", 400, NULL},
    {COFFER_ERR_VALIDATION, "ValidationError", 400, NULL},
    {COFFER_ERR_SERIALIZATION, "ValidationError", 400, NULL},
    {COFFER_ERR_UNKNOWN_OPERATION, "InvalidAction", 400, NULL},
    {COFFER_ERR_MISSING_AUTH, "MissingAuthenticationToken", 403, NULL},
    {COFFER_ERR_INCOMPLETE_SIGNATURE, "IncompleteSignature", 400, NULL},
    {COFFER_ERR_INVALID_SIGNATURE, "SignatureDoesNotMatch", 403, NULL},
    {COFFER_ERR_UNRECOGNIZED_CLIENT, "InvalidClientTokenId", 403, NULL},
    {COFFER_ERR_EXPIRED_TOKEN, "ExpiredToken", 400, NULL},
    {COFFER_ERR_ACCESS_DENIED, "AccessDenied", 403, NULL},
    {COFFER_ERR_THROTTLING, "Throttling", 400, NULL},
    {COFFER_ERR_MALFORMED_POLICY, "MalformedPolicyDocument", 400, NULL},
    {COFFER_ERR_LIMIT_EXCEEDED, "LimitExceeded", 409, NULL},
    {COFFER_ERR_NOT_FOUND, "NoSuchEntity", 404, NULL},
    {COFFER_ERR_ALREADY_EXISTS, "EntityAlreadyExists", 409, NULL},
    {COFFER_ERR_UNAVAILABLE, "ServiceUnavailable", 503, NULL},
};
const size_t iam_n_query_errors = sizeof(iam_query_errors) / sizeof(iam_query_errors[0]);

coffer_err iam_services_new(iam_directory *dir, iam_creds *creds, const char *operator_account,
                            iam_services **out)
{
    ENSURE(dir != NULL && creds != NULL && operator_account != NULL && out != NULL, COFFER_ERR_USAGE);
    ENSURE(strlen(operator_account) == 12, COFFER_ERR_USAGE);
    iam_services *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    s->dir = dir;
    s->creds = creds;
    s->source = iam_directory_identity_source(dir);
    coffer_err rc = authz_new(&s->source, &s->az);
    if (rc != COFFER_OK) {
        free(s);
        return rc;
    }
    snprintf(s->operator_account, sizeof(s->operator_account), "%s", operator_account);
    s->iam_api = (struct api_service){
        .target_prefix = NULL,
        .signing_name = "iam",
        .event_source = "iam.amazonaws.com",
        .ops = iam_ops,
        .n_ops = sizeof(iam_ops) / sizeof(iam_ops[0]),
        .state = s,
        .protocol = API_PROTOCOL_QUERY,
        .xml_namespace = IAM_XML_NAMESPACE,
        .global = true,
        .errors = iam_query_errors,
        .n_errors = iam_n_query_errors,
        .sensitive_members = iam_sensitive_members,
    };
    iam_services_init_sts(s);
    iam_services_init_admin(s);
    *out = s;
    return COFFER_OK;
}

void iam_services_free(iam_services *s)
{
    if (s == NULL) {
        return;
    }
    authz_free(s->az);
    free(s);
}

const struct api_service *iam_services_iam_api(iam_services *s)
{
    return &s->iam_api;
}

const struct api_service *iam_services_sts_api(iam_services *s)
{
    return &s->sts_api;
}

const struct api_service *iam_services_admin_api(iam_services *s)
{
    return &s->admin_api;
}
