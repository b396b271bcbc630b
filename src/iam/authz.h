/*
 * The authorizer of every service: decides whether an authenticated caller may perform one
 * action on one resource, the way AWS combines a resource-based policy (a KMS key policy, a
 * role's trust policy, a secret's resource policy) with the caller's identity-based policies.
 * A service supplies what only it knows and gets Allow or AccessDenied with AWS's message:
 *
 *   service (resolve resource) -> authz_check(action, resource ARN, resource policy?, keys) -> work
 *                                   |-> global condition keys (aws:*, from the caller: here only)
 *                                   |-> service condition keys (authz_request.keys / .add_ctx)
 *                                   |-> iam_identity_source (caller's identity policies)
 *
 * IAM calls it with "iam:CreateUser" and the user's ARN and no resource policy; KMS with
 * "kms:Encrypt", the key ARN, the key policy and its kms:* keys through add_ctx; STS with
 * "sts:AssumeRole", the role ARN and the trust policy (AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT).
 * What is particular to one service stays with it: KMS grants are a KMS-side fallback after a
 * refusal that is not an explicit deny (authz_decide, authz_verdict.explicit_deny).
 *
 * Rules (AWS "Determining whether a request is allowed within an account" and KMS "Key
 * policies"):
 *  - an explicit Deny in the resource policy or in any identity policy wins (even over a grant);
 *  - a resource policy that names the caller directly (its ARN, its role for an assumed-role
 *    session, or "*") allows on its own for a caller of the resource's account
 *    (authz_request.same_account says how strictly "directly" is read);
 *  - a resource policy that allows only through the caller's account (Principal the account
 *    root) delegates to IAM: the caller's identity policies must allow too;
 *  - a caller from another account always needs both sides, so without a resource policy it is
 *    refused;
 *  - an account root has every identity permission in its own account (it is never asked to the
 *    identity source); actions without a resource policy (iam:*, kms:CreateKey) are decided by
 *    identity policies alone.
 * There are no session policies or permission boundaries: an assumed-role session has exactly
 * its role's identity policies.
 *
 * Performance: the request context (condition keys) is built only when a policy that applies
 * has conditions or policy variables; evaluation allocates nothing. Thread-safety: an authz is
 * immutable after authz_new and may be used from any number of threads at once.
 */
#ifndef COFFER_IAM_AUTHZ_H
#define COFFER_IAM_AUTHZ_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "api/api.h"
#include "iam/identity.h"
#include "iam/policy.h"

typedef struct authz authz;

/* Bytes of the User-Agent header that aws:UserAgent holds (the rest is not matched). */
#define AUTHZ_USER_AGENT_MAX 8192

/*
 * Families of condition keys, so that a request context holds only what the applicable
 * policies can read (building it is the main cost of a conditional policy on the hot path).
 * The authorizer fills the global ones (source IP, transport, time, principal, request) from
 * the caller; the others are the service's to fill through authz_request.add_ctx (KMS's keys
 * have families of their own because some are costly to build; any other key is OTHER).
 */
enum authz_ctx_keys {
    AUTHZ_CTX_SOURCE_IP = 1u << 0,          /* aws:SourceIp */
    AUTHZ_CTX_TRANSPORT = 1u << 1,          /* aws:SecureTransport */
    AUTHZ_CTX_TIME = 1u << 2,               /* aws:CurrentTime, aws:EpochTime, aws:TokenIssueTime */
    AUTHZ_CTX_PRINCIPAL = 1u << 3,          /* aws:PrincipalArn/Account/Type, aws:username, aws:userid */
    AUTHZ_CTX_CALLER_ACCOUNT = 1u << 4,     /* kms:CallerAccount */
    AUTHZ_CTX_ENCRYPTION_CONTEXT = 1u << 5, /* kms:EncryptionContext:<key>, kms:EncryptionContextKeys */
    AUTHZ_CTX_RESOURCE_TAGS = 1u << 6,      /* aws:ResourceTag/<key> */
    AUTHZ_CTX_REQUEST_TAGS = 1u << 7,       /* aws:RequestTag/<key>, aws:TagKeys */
    AUTHZ_CTX_OTHER = 1u << 8,              /* every other key (kms:KeySpec, kms:Grant*, ...) */
    AUTHZ_CTX_RESOURCE_ALIASES = 1u << 9,   /* kms:ResourceAliases: costs a store scan, so on its own */
    AUTHZ_CTX_REQUEST = 1u << 10,           /* aws:RequestedRegion, aws:UserAgent, aws:MultiFactorAuthPresent,
                                               aws:ViaAWSService, aws:PrincipalIsAWSService */
    AUTHZ_CTX_ALL = (1u << 11) - 1,
};

/* Fills service-specific condition keys of the families in `wanted` (enum authz_ctx_keys). */
typedef coffer_err (*authz_ctx_fn)(void *arg, unsigned wanted, policy_ctx *ctx);

/* A service-specific condition key and one value of it, known when the request is made. */
struct authz_key {
    const char *name;  /* "secretsmanager:SecretId" */
    const char *value; /* a key named twice has both values */
};

/*
 * How far a resource policy alone allows a caller of the resource's own account, without the
 * caller's identity policies.
 */
enum authz_same_account {
    /* Key policies (KMS), secret policies: a statement whose Principal is the caller itself
     * (its ARN, its role for a session) or "*" is enough; one naming the account delegates. */
    AUTHZ_SAME_ACCOUNT_NAMED = 0,
    /* Role trust policies (STS): enough only when the policy does not also allow the account
     * root; a policy that trusts the account (its root, its id, "*") delegates to IAM. */
    AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT = 1,
};

struct authz_request {
    const struct api_caller *caller; /* who */
    const char *region;              /* aws:RequestedRegion; NULL: absent */
    const char *action;              /* "kms:Encrypt", "iam:CreateUser" */
    const char *resource;            /* the resource's ARN, or "*" */
    const char *resource_account;    /* account owning the resource; NULL: the caller's */
    const policy *resource_policy;   /* the key / trust / secret policy; NULL when there is none */
    enum authz_same_account same_account;
    const struct authz_key *keys; /* service condition keys, added when a context is built */
    size_t n_keys;
    int64_t now_ms;       /* request time for aws:CurrentTime (0: the clock) */
    authz_ctx_fn add_ctx; /* service condition keys built on demand; may be NULL */
    void *add_ctx_arg;
};

/*
 * The request of `call` for `action` on `resource` in the caller's own account, with no resource
 * policy and no service keys: what an identity-only service (IAM, Parameter Store) fills in.
 * Set the other members on the result when the service has them.
 */
struct authz_request authz_request_for(const struct api_call *call, const char *action, const char *resource);

/* Why a request was refused; each has its own AWS message (authz_refusal). */
enum authz_denial {
    AUTHZ_DENY_RESOURCE_EXPLICIT, /* an explicit Deny in the resource policy */
    AUTHZ_DENY_IDENTITY_EXPLICIT, /* an explicit Deny in an identity policy */
    AUTHZ_DENY_NO_RESOURCE_ALLOW, /* the resource policy does not allow */
    AUTHZ_DENY_NO_IDENTITY_ALLOW, /* no identity policy allows (nor the resource policy alone) */
    AUTHZ_DENY_TOO_COSTLY,        /* the evaluation budget ran out (fail closed) */
};

struct authz_verdict {
    bool allowed;
    /* Refused by an explicit Deny (or a budget exhausted where a Deny was being looked for):
     * nothing a service adds (a KMS grant) may allow it. False for an implicit refusal. */
    bool explicit_deny;
    enum authz_denial why; /* when !allowed */
};
/*
 * Creates an authorizer over `src` (borrowed; may be NULL: then callers other than account
 * roots have no identity permissions). *out is set only on success.
 */
coffer_err authz_new(const struct iam_identity_source *src, authz **out) __attribute__((warn_unused_result));
void authz_free(authz *a); /* accepts NULL */

/*
 * Decides `req` into *out: COFFER_OK with the verdict, or COFFER_ERR_NOMEM, the identity source's
 * error, or COFFER_ERR_UNRECOGNIZED_CLIENT for a user or session whose entity was deleted since
 * its credentials were issued. For services that add a fallback of their own (KMS grants) or
 * word the refusal themselves (STS AssumeRole); the others call authz_check.
 */
coffer_err authz_decide(const authz *a, const struct authz_request *req, struct authz_verdict *out)
    __attribute__((warn_unused_result));

/*
 * COFFER_ERR_ACCESS_DENIED with AWS's message for a refused verdict ("User: <arn> is not
 * authorized to perform: <action> on resource: <resource> because no resource-based policy
 * allows the <action> action", "... with an explicit deny in a resource-based policy", "... in
 * an identity-based policy", "... because no identity-based policy allows ..."). COFFER_OK for
 * an allowed one.
 */
coffer_err authz_refusal(const struct authz_request *req, const struct authz_verdict *v)
    __attribute__((warn_unused_result));

/* authz_decide, then authz_refusal: COFFER_OK when allowed, else AccessDenied or the error. */
coffer_err authz_check(const authz *a, const struct authz_request *req) __attribute__((warn_unused_result));

/*
 * Evaluates only whether `p` (a key policy) allows the request, as the lockout safety check
 * does for a new key policy: true when authz_check with `p` as the resource policy would allow.
 */
bool authz_policy_allows(const authz *a, const struct authz_request *req);

/*
 * The unique id of the IAM user or role `arn` names, through the identity source, for binding a
 * policy or a grant when it is stored. uid is "" (COFFER_OK) when `arn` is not bound (an account,
 * a service, a session, "*") or there is no source; COFFER_ERR_NO_SUCH_ENTITY when the user or
 * role does not exist. Reads the store.
 */
coffer_err authz_resolve_principal(const authz *a, const char *arn, char uid[POLICY_UID_MAX])
    __attribute__((warn_unused_result));
/* True when the identity source binds principals (authz_resolve_principal can answer). */
bool authz_resolves_principals(const authz *a);
/* Does account `account_id` exist, as the identity source knows? False without a source that
 * can answer. Reads the store. */
bool authz_account_exists(const authz *a, const char *account_id);
/* True when evaluating `p` needs a request context (it has conditions or policy variables). */
bool authz_policy_needs_ctx(const policy *p);
/* The families of condition keys `p` reads (AUTHZ_CTX_ALL when it uses policy variables). */
unsigned authz_policy_ctx_keys(const policy *p);

#endif
