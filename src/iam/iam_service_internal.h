/*
 * Shared between the IAM, STS and admin handlers (iam_service.c, sts_service.c): the service
 * state, with the authorizer every IAM and STS request is decided by.
 */
#ifndef COFFER_IAM_IAM_SERVICE_INTERNAL_H
#define COFFER_IAM_IAM_SERVICE_INTERNAL_H

#include "iam/authz.h"
#include "iam/iam_service.h"

struct iam_services {
    iam_directory *dir; /* borrowed */
    iam_creds *creds;   /* borrowed */
    struct iam_identity_source source;
    authz *az; /* owned: over `source` */
    char operator_account[AWS_ACCOUNT_ID_LEN + 1];
    struct api_service iam_api;
    struct api_service sts_api;
    struct api_service admin_api;
};

/* Members wiped after use and kept out of the trail, for all three services (iam_service.c). */
extern const char *const iam_sensitive_members[];
/* Error names of IAM and STS (Query-protocol codes such as NoSuchEntity), for both services. */
extern const struct api_error_name iam_query_errors[];
extern const size_t iam_n_query_errors;

/* STS and admin operation tables (sts_service.c). */
void iam_services_init_sts(iam_services *s);
void iam_services_init_admin(iam_services *s);

#endif
