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

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "common/err.h"
#include "iam/policy.h"

struct iam_policy_list {
    const policy *const *items; /* compiled identity policies (no Principal element) */
    size_t n;
    void *handle; /* the source's reference; passed back to release */
    /*
     * The unique id the user or role has now ("AIDA...", "AROA..."), "" when it does not exist,
     * NULL when the source does not say. A caller whose own id (a session: "AROA...:SESSION")
     * is not this entity's acts for a principal that was deleted, maybe re-created under the
     * same name: the authorizer refuses it.
     */
    const char *principal_id;
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
    /*
     * The unique id of the IAM user or role `arn` names (policy_principal_bindable), written to
     * uid; COFFER_ERR_NO_SUCH_ENTITY when there is none. May be NULL (nothing is bound then).
     * Reads the store: for storing a policy or a grant, never per request.
     */
    coffer_err (*resolve)(void *ctx, const char *arn, char uid[POLICY_UID_MAX]);
    /* Does account `account_id` exist? May be NULL (no account is known then). Reads the store:
     * for the rare calls that name an account other than the caller's (a peer region's). */
    bool (*account_exists)(void *ctx, const char *account_id);
};

/*
 * Do credentials with unique id `caller_id` ("AIDA...", "AROA...:SESSION") still stand for the
 * entity `list` belongs to? False once it was deleted or re-created under the same name.
 */
static inline bool iam_policy_list_current(const struct iam_policy_list *list, const char *caller_id)
{
    if (list->principal_id == NULL) {
        return true; /* the source does not track ids */
    }
    size_t n = strlen(list->principal_id);
    return n > 0 && strncmp(caller_id, list->principal_id, n) == 0 &&
           (caller_id[n] == '\0' || caller_id[n] == ':');
}

#endif
