/*
 * The identity services cofferd speaks, all over the directory (iam/directory.h):
 *
 *   - IAM (Query protocol, signing name "iam", global): users, access keys, roles, inline and
 *     managed policies, in the caller's account only;
 *   - STS (Query protocol, signing name "sts"): GetCallerIdentity, AssumeRole;
 *   - CofferAdmin (JSON protocol, X-Amz-Target "CofferAdmin.<op>", signing name
 *     "coffer-admin"): CreateAccount and ListAccounts, for the operator account's root only.
 *
 *   pipeline -> (iam | sts | admin) handler -> directory / credentials -> store
 *
 * Every IAM call is authorized here: an account root may do anything in its own account; an
 * IAM user or an assumed-role session needs its identity policies to allow "iam:<Operation>" on
 * the entity's ARN. Handlers take the time from api_call.now_ms, so tests choose the clock.
 */
#ifndef COFFER_IAM_IAM_SERVICE_H
#define COFFER_IAM_IAM_SERVICE_H

#include "api/api.h"
#include "iam/credentials.h"
#include "iam/directory.h"

#define IAM_XML_NAMESPACE "https://iam.amazonaws.com/doc/2010-05-08/"
#define STS_XML_NAMESPACE "https://sts.amazonaws.com/doc/2011-06-15/"
#define ADMIN_TARGET_PREFIX "CofferAdmin"
#define ADMIN_SIGNING_NAME "coffer-admin"
#define STS_DURATION_MIN 900
#define STS_DURATION_DEFAULT 3600

typedef struct iam_services iam_services;

/* Borrows dir and creds. `operator_account` is copied (the account allowed to call CofferAdmin). */
coffer_err iam_services_new(iam_directory *dir, iam_creds *creds, const char *operator_account,
                            iam_services **out) __attribute__((warn_unused_result));
void iam_services_free(iam_services *s); /* accepts NULL */

const struct api_service *iam_services_iam_api(iam_services *s);
const struct api_service *iam_services_sts_api(iam_services *s);
const struct api_service *iam_services_admin_api(iam_services *s);

#endif
