/*
 * Shared between the IAM, STS and admin handlers (iam_service.c, sts_service.c): the service
 * state and the identity-policy check of a caller.
 */
#ifndef COFFER_IAM_IAM_SERVICE_INTERNAL_H
#define COFFER_IAM_IAM_SERVICE_INTERNAL_H

#include "iam/iam_service.h"
#include "iam/policy.h"

struct iam_services {
    iam_directory *dir;    /* borrowed */
    iam_creds *creds;      /* borrowed */
    struct iam_identity_source source;
    char operator_account[13];
    struct api_service iam_api;
    struct api_service sts_api;
    struct api_service admin_api;
};

/*
 * The caller's identity-policy decision for `action` on `resource`. An account root is allowed
 * everything in its own account (POLICY_ALLOW when resource_account equals the caller's).
 */
enum policy_decision iam_caller_identity_decision(iam_services *s, const struct api_call *call, const char *action,
                                                  const char *resource, const char *resource_account);

/* AccessDenied with AWS's message for an identity-based denial. */
coffer_err iam_access_denied(const struct api_call *call, const char *action, const char *resource,
                             enum policy_decision d);

/* STS and admin operation tables (sts_service.c). */
void iam_services_init_sts(iam_services *s);
void iam_services_init_admin(iam_services *s);

#endif
