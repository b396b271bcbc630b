/*
 * The IAM directory: accounts, IAM users, roles, their access keys, inline and managed
 * policies. It sits under the IAM/STS/admin services and over the store:
 *
 *   pipeline -> iam/sts/admin service -> directory -> store ("iam/..." records)
 *   authz --(iam_identity_source)--> directory (compiled policies, cached)
 *
 * Records (JSON, one per entity, written in one store transaction per change):
 *   iam/account/<acct>                 {"AccountId","AccountName","CreateDate"}
 *   iam/user/<acct>/<lowercase name>   the User shape + "_policies" {name: document},
 *                                      "_attached" [policy ARN], "_keys" [AccessKeyMetadata]
 *   iam/role/<acct>/<lowercase name>   the Role shape (AssumeRolePolicyDocument as JSON text)
 *                                      + "_policies", "_attached", "_trust_ids" {ARN: unique id}
 *                                      (the users and roles the trust policy names, bound when
 *                                      it is stored; a record without is bound at first use)
 *   iam/policy/<acct>/<lowercase name> the Policy shape + "_document"
 * Names are unique per account without regard to case, as in IAM. Access keys themselves are
 * credential records (iam/credentials.h); a user's "_keys" lists them.
 *
 * Entities returned by the functions below are new JSON objects in the shape of the IAM API
 * (internal "_" members removed); the caller owns them. Policy documents are returned as the
 * JSON text they were given (the Query layer URL-encodes them). Every function is thread-safe.
 *
 * Errors: COFFER_ERR_NO_SUCH_ENTITY, COFFER_ERR_ENTITY_EXISTS, COFFER_ERR_LIMIT_EXCEEDED,
 * COFFER_ERR_DELETE_CONFLICT, COFFER_ERR_MALFORMED_POLICY, COFFER_ERR_VALIDATION with the
 * message IAM gives, or store/seal failures.
 */
#ifndef COFFER_IAM_DIRECTORY_H
#define COFFER_IAM_DIRECTORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/aws_ids.h"
#include "iam/credentials.h"
#include "iam/identity.h"
#include "iam/policy.h"
#include "store/store.h"

#define IAM_DIR_NAME_MAX 64         /* user and role names */
#define IAM_DIR_POLICY_NAME_MAX 128 /* inline and managed policy names */
#define IAM_DIR_PATH_MAX 512
#define IAM_DIR_ACCOUNT_NAME_MAX 50
#define IAM_DIR_MAX_ACCESS_KEYS 2 /* per user, as IAM's AccessKeysPerUser quota */
#define IAM_DIR_SESSION_MIN 3600  /* MaxSessionDuration bounds */
#define IAM_DIR_SESSION_MAX 43200
#define IAM_DIR_POLICY_DOC_MAX 131072 /* characters of a policy document we accept */

typedef struct iam_directory iam_directory;

enum iam_kind {
    IAM_KIND_USER = 0,
    IAM_KIND_ROLE = 1,
};

/* Borrows st and creds (both must outlive the directory). */
coffer_err iam_directory_new(store *st, iam_creds *creds, iam_directory **out)
    __attribute__((warn_unused_result));
void iam_directory_free(iam_directory *d); /* accepts NULL */
/*
 * IAM resource quotas, per account: AWS's defaults, each changeable by the operator
 * (server/config.c). Going over a count is LimitExceeded. Counts are per-account counters
 * written in the same transaction as the create or delete they count.
 */
struct iam_limits {
    size_t iam_users;             /* AWS: 5,000 */
    size_t iam_roles;             /* AWS: 1,000 */
    size_t iam_policies;          /* customer managed policies (AWS: 1,500) */
    size_t iam_attached;          /* managed policies attached to one user or role (AWS: 10) */
    size_t iam_user_inline_chars; /* all inline policies of one user together (AWS: 2,048) */
    size_t iam_role_inline_chars; /* all inline policies of one role together (AWS: 10,240) */
    size_t iam_managed_doc_chars; /* one managed policy document (AWS: 6,144) */
    size_t iam_trust_doc_chars;   /* one role trust policy (AWS: 2,048) */
};

#define IAM_LIMITS_DEFAULT                                                                                   \
    {                                                                                                        \
        .iam_users = 5000, .iam_roles = 1000, .iam_policies = 1500, .iam_attached = 10,                      \
        .iam_user_inline_chars = 2048, .iam_role_inline_chars = 10240, .iam_managed_doc_chars = 6144,        \
        .iam_trust_doc_chars = 2048,                                                                         \
    }

/* Resource quotas (copied; default IAM_LIMITS_DEFAULT). Call before serving requests. */
void iam_directory_set_limits(iam_directory *d, const struct iam_limits *limits);

/*
 * The identity-policy source for the authorizer (iam/identity.h). principal_arn may be a user
 * ARN, a role ARN or an assumed-role session ARN (mapped to its role). Lists are compiled once
 * and cached per principal; any change in the directory invalidates the cache. ctx is `d`.
 */
struct iam_identity_source iam_directory_identity_source(iam_directory *d);

/* Drops every cached compiled policy list (tests; changes do it themselves). */
void iam_directory_invalidate(iam_directory *d);

/* ---- accounts ---- */

/* Records `account_id` (the operator account at first start) unless it exists. */
coffer_err iam_dir_account_ensure(iam_directory *d, const char *account_id, const char *name, int64_t now_s)
    __attribute__((warn_unused_result));
/*
 * Creates an account and an access key for its root: with id `want_id` (12 digits), as the
 * same account of a peer region's deployment is made, AlreadyExists when it is taken; NULL: a
 * fresh random id. Writes the id and the key id; appends the secret (NUL-terminated) to the
 * secret buffer `secret_out`.
 */
coffer_err iam_dir_account_create(iam_directory *d, const char *name, const char *want_id, int64_t now_s,
                                  char account_id_out[AWS_ACCOUNT_ID_LEN + 1],
                                  char akid_out[IAM_ACCESS_KEY_ID_LEN + 1], coffer_buf *secret_out)
    __attribute__((warn_unused_result));
coffer_err iam_dir_account_list(iam_directory *d, json_t **out) __attribute__((warn_unused_result));

/* ---- users and roles ---- */

coffer_err iam_dir_user_create(iam_directory *d, const char *acct, const char *name, const char *path,
                               int64_t now_s, json_t **out) __attribute__((warn_unused_result));
/* `trust_doc` is validated as a trust policy; max_session 0 means 3600. */
coffer_err iam_dir_role_create(iam_directory *d, const char *acct, const char *name, const char *path,
                               const char *trust_doc, int64_t max_session, const char *description,
                               int64_t now_s, json_t **out) __attribute__((warn_unused_result));
coffer_err iam_dir_get(iam_directory *d, enum iam_kind kind, const char *acct, const char *name, json_t **out)
    __attribute__((warn_unused_result));
/*
 * The role's trust policy compiled, its users and roles bound to the unique ids they had when it
 * was stored (iam/policy.h policy_bind_principals). The caller owns *out.
 */
coffer_err iam_dir_trust_policy(iam_directory *d, const char *acct, const char *name, policy **out)
    __attribute__((warn_unused_result));
/* DeleteConflict while the entity has access keys, inline or attached policies. */
coffer_err iam_dir_delete(iam_directory *d, enum iam_kind kind, const char *acct, const char *name)
    __attribute__((warn_unused_result));
/* Array of entities whose path starts with path_prefix (NULL = all), in name order. */
coffer_err iam_dir_list(iam_directory *d, enum iam_kind kind, const char *acct, const char *path_prefix,
                        json_t **out) __attribute__((warn_unused_result));

/* Inline policies (validated as identity policies). */
coffer_err iam_dir_inline_put(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                              const char *policy_name, const char *doc) __attribute__((warn_unused_result));
/* *out is a new JSON string holding the document. */
coffer_err iam_dir_inline_get(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                              const char *policy_name, json_t **out) __attribute__((warn_unused_result));
coffer_err iam_dir_inline_delete(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                                 const char *policy_name) __attribute__((warn_unused_result));
/* Array of policy names. */
coffer_err iam_dir_inline_list(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                               json_t **out) __attribute__((warn_unused_result));

/* Managed policy attachment; the policy must be in `acct`. Attaching twice is a no-op. */
coffer_err iam_dir_attach(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                          const char *policy_arn, bool attach) __attribute__((warn_unused_result));
/* Array of {"PolicyName","PolicyArn"}. */
coffer_err iam_dir_attached_list(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                                 json_t **out) __attribute__((warn_unused_result));

/* ---- managed policies ---- */

coffer_err iam_dir_policy_create(iam_directory *d, const char *acct, const char *name, const char *path,
                                 const char *doc, const char *description, int64_t now_s, json_t **out)
    __attribute__((warn_unused_result));
/* `acct` is the caller's account: a policy ARN of another account is NoSuchEntity. */
coffer_err iam_dir_policy_get(iam_directory *d, const char *acct, const char *policy_arn, json_t **out)
    __attribute__((warn_unused_result));
/* The document of a managed policy (its only version, "v1") as a new JSON string. */
coffer_err iam_dir_policy_document(iam_directory *d, const char *acct, const char *policy_arn, json_t **out)
    __attribute__((warn_unused_result));
/* DeleteConflict while attached. */
coffer_err iam_dir_policy_delete(iam_directory *d, const char *acct, const char *policy_arn)
    __attribute__((warn_unused_result));
coffer_err iam_dir_policy_list(iam_directory *d, const char *acct, json_t **out)
    __attribute__((warn_unused_result));

/* ---- access keys ---- */

/*
 * Creates an Active key for the user (LimitExceeded beyond IAM_DIR_MAX_ACCESS_KEYS). *out is
 * {"UserName","AccessKeyId","Status","SecretAccessKey","CreateDate"}: the caller must wipe the
 * secret member before releasing it.
 */
coffer_err iam_dir_key_create(iam_directory *d, const char *acct, const char *user, int64_t now_s,
                              json_t **out) __attribute__((warn_unused_result));
/* Status change and deletion take effect at once (the credential cache is evicted). */
coffer_err iam_dir_key_update(iam_directory *d, const char *acct, const char *user, const char *akid,
                              bool active) __attribute__((warn_unused_result));
coffer_err iam_dir_key_delete(iam_directory *d, const char *acct, const char *user, const char *akid)
    __attribute__((warn_unused_result));
/* Array of {"UserName","AccessKeyId","Status","CreateDate"}. */
coffer_err iam_dir_key_list(iam_directory *d, const char *acct, const char *user, json_t **out)
    __attribute__((warn_unused_result));

/* ---- unique ids ---- */

/*
 * The unique id ("AIDA...", "AROA...") of the user or role `arn` names (its exact ARN, path
 * included); COFFER_ERR_NO_SUCH_ENTITY when there is none. Reads the store.
 */
coffer_err iam_dir_principal_uid(iam_directory *d, const char *arn, char uid[POLICY_UID_MAX])
    __attribute__((warn_unused_result));

/* ---- ARNs and names ---- */

/* Parses "arn:aws:iam::ACCT:user/path/NAME" (or role/..., policy/...): account and last segment. */
bool iam_arn_parse(const char *arn, const char *resource_type, char acct[AWS_ACCOUNT_ID_LEN + 1],
                   char name[IAM_DIR_POLICY_NAME_MAX + 1]);
/* IAM name rule [\w+=,.@-]{1,max}. */
bool iam_name_valid(const char *name, size_t max);

#endif
