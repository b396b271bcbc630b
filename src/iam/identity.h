/*
 * The seam between the IAM directory (accounts, users, roles and the policies attached to
 * them) and the authorizer that decides requests. The directory implements the source; the
 * authorizer only asks it for a principal's identity-based policies, already compiled.
 *
 *   pipeline -> service -> authz --(iam_identity_source)--> IAM directory -> store
 *
 * A list is an immutable snapshot: the source may change the principal's policies while a
 * request holds an older list, which stays valid until released.
 */
#ifndef COFFER_IAM_IDENTITY_H
#define COFFER_IAM_IDENTITY_H

#include <stddef.h>

#include "common/err.h"
#include "iam/policy.h"

struct iam_policy_list {
    const policy *const *items; /* compiled identity policies (no Principal element) */
    size_t n;
    void *handle;               /* the source's reference; passed back to release */
};

struct iam_identity_source {
    void *ctx;
    /*
     * The identity-based policies of `principal_arn`: for an IAM user its inline policies, its
     * attached managed policies and those of its groups; for a role (pass the role ARN of an
     * assumed-role session, api_caller.role_arn) the role's inline and attached policies. An
     * unknown principal has none (n == 0, COFFER_OK). Account roots are not asked: the
     * authorizer treats the root of an account as allowed everything in its own account.
     */
    coffer_err (*policies)(void *ctx, const char *principal_arn, struct iam_policy_list *out);
    void (*release)(void *ctx, struct iam_policy_list *list); /* accepts a zeroed list */
};

#endif
