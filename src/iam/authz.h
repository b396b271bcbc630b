/*
 * The authorizer: decides whether an authenticated caller may perform one action on one
 * resource, the way AWS combines resource-based (key) policies, identity-based policies and
 * grants. Services call it after resolving the resource and before doing any work:
 *
 *   pipeline -> sigv4 -> service (resolve key) -> authz_check -> work
 *                                                   |-> key policy (compiled, cached by the service)
 *                                                   |-> iam_identity_source (caller's policies)
 *
 * Rules (AWS "Determining whether a request is allowed within an account" and KMS "Key
 * policies"):
 *  - an explicit Deny in the resource policy or in any identity policy wins, even over a grant;
 *  - a grant covering the operation allows without policies;
 *  - a resource policy that names the caller directly (its ARN, its role for an assumed-role
 *    session, or "*") allows on its own for a caller of the resource's account;
 *  - a resource policy that allows only through the caller's account (Principal the account
 *    root) delegates to IAM: the caller's identity policies must allow too;
 *  - a caller from another account always needs both sides;
 *  - an account root has every identity permission in its own account (it is never asked to the
 *    identity source); actions without a resource policy (CreateKey, ListKeys) are decided by
 *    identity policies alone.
 *
 * Performance: the request context (condition keys) is built only when a policy that applies
 * has conditions or policy variables, through the caller's callback; evaluation allocates
 * nothing. Thread-safety: an authz is immutable after authz_new and may be used from any
 * number of threads at once.
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
 */
enum authz_ctx_keys {
    AUTHZ_CTX_SOURCE_IP = 1u << 0,      /* aws:SourceIp */
    AUTHZ_CTX_TRANSPORT = 1u << 1,      /* aws:SecureTransport */
    AUTHZ_CTX_TIME = 1u << 2,           /* aws:CurrentTime, aws:EpochTime, aws:TokenIssueTime */
    AUTHZ_CTX_PRINCIPAL = 1u << 3,      /* aws:PrincipalArn/Account/Type, aws:username, aws:userid */
    AUTHZ_CTX_CALLER_ACCOUNT = 1u << 4, /* kms:CallerAccount */
    AUTHZ_CTX_ENCRYPTION_CONTEXT = 1u << 5, /* kms:EncryptionContext:<key>, kms:EncryptionContextKeys */
    AUTHZ_CTX_RESOURCE_TAGS = 1u << 6,  /* aws:ResourceTag/<key> */
    AUTHZ_CTX_REQUEST_TAGS = 1u << 7,   /* aws:RequestTag/<key>, aws:TagKeys */
    AUTHZ_CTX_OTHER = 1u << 8,          /* every other key (kms:KeySpec, kms:Grant*, ...) */
    AUTHZ_CTX_RESOURCE_ALIASES = 1u << 9, /* kms:ResourceAliases: costs a store scan, so on its own */
    AUTHZ_CTX_REQUEST = 1u << 10,       /* aws:RequestedRegion, aws:UserAgent, aws:MultiFactorAuthPresent,
                                           aws:ViaAWSService, aws:PrincipalIsAWSService */
    AUTHZ_CTX_ALL = (1u << 11) - 1,
};

/* Fills service-specific condition keys of the families in `wanted` (enum authz_ctx_keys). */
typedef coffer_err (*authz_ctx_fn)(void *arg, unsigned wanted, policy_ctx *ctx);

struct authz_request {
    const struct api_caller *caller; /* who */
    const char *region;              /* aws:RequestedRegion; NULL: absent */
    const char *action;              /* "kms:Encrypt" */
    const char *resource;            /* key ARN, alias ARN or "*" */
    const char *resource_account;    /* account owning the resource; NULL: the caller's */
    const policy *resource_policy;   /* the key policy; NULL when the action has none */
    bool granted;                    /* a grant for the caller already covers the action */
    int64_t now_ms;                  /* request time for aws:CurrentTime (0: the clock) */
    authz_ctx_fn add_ctx;            /* may be NULL */
    void *add_ctx_arg;
};

/*
 * Creates an authorizer over `src` (borrowed; may be NULL: then callers other than account
 * roots have no identity permissions). *out is set only on success.
 */
coffer_err authz_new(const struct iam_identity_source *src, authz **out) __attribute__((warn_unused_result));
void authz_free(authz *a); /* accepts NULL */

/*
 * COFFER_OK when the request is allowed; COFFER_ERR_ACCESS_DENIED with AWS's message
 * ("User: <arn> is not authorized to perform: <action> on resource: <resource> because no
 * resource-based policy allows the <action> action", "... with an explicit deny in a
 * resource-based policy", "... in an identity-based policy", "... because no identity-based
 * policy allows ..."); COFFER_ERR_NOMEM or the identity source's error otherwise.
 */
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
/* True when evaluating `p` needs a request context (it has conditions or policy variables). */
bool authz_policy_needs_ctx(const policy *p);
/* The families of condition keys `p` reads (AUTHZ_CTX_ALL when it uses policy variables). */
unsigned authz_policy_ctx_keys(const policy *p);

/*
 * Fills `ctx` with the global condition keys of a request by `caller` (aws:SourceIp,
 * aws:SecureTransport, aws:CurrentTime, aws:EpochTime, aws:TokenIssueTime (sessions),
 * aws:Principal*, aws:userid,
 * aws:username, aws:RequestedRegion, aws:UserAgent, ...), for services that evaluate policies
 * themselves (IAM identity policies, STS trust policies). `region` may be NULL; `now_ms` 0 means
 * the clock. On failure the context is incomplete and must not be evaluated.
 */
coffer_err authz_global_ctx(const struct api_caller *caller, const char *region, const char *action,
                            int64_t now_ms, policy_ctx *ctx) __attribute__((warn_unused_result));

#endif
