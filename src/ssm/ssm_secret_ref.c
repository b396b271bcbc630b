/*
 * "/aws/reference/secretsmanager/<secret-id>[:<version-id or stage>]": reading a Secrets
 * Manager secret through GetParameter and GetParameters. The secret is answered by the daemon's
 * Secrets Manager, found at start through api_host.lookup("secretsmanager"); until that service
 * offers an in-process interface, a reference gets a ValidationException saying so, never a
 * made-up value. Wiring it is this file's one function.
 */
#include <stdio.h>
#include <string.h>

#include "ssm/ssm_internal.h"

#define SECRET_REF_PREFIX "/aws/reference/secretsmanager/"

bool ssm_is_secret_ref(const char *ref)
{
    return strncmp(ref, SECRET_REF_PREFIX, strlen(SECRET_REF_PREFIX)) == 0;
}

coffer_err ssm_secret_ref_get(const struct ssm *s, const struct api_call *call, const char *ref, bool decrypt,
                              json_t **out)
{
    *out = NULL;
    if (!decrypt) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "WithDecryption flag must be True for retrieving a Secret Manager secret.");
    }
    /* the read itself is ssm:GetParameter(s) on the reference's parameter ARN */
    char name[SSM_NAME_MAX + 1];
    const char *colon = strchr(ref + strlen(SECRET_REF_PREFIX), ':');
    snprintf(name, sizeof(name), "%.*s", colon != NULL ? (int)(colon - ref) : (int)strlen(ref), ref);
    TRY(ssm_authorize_param(s, call, name));
    /*
     * s->secrets is what lookup("secretsmanager") gave at start. Secrets Manager offers no
     * in-process interface yet: when it does, GetSecretValue(secret-id, version or stage) is
     * called here with the caller's identity and its answer becomes the Parameter (Type
     * SecureString, Version 0, ARN the secret's, SourceResult the GetSecretValue JSON).
     */
    return coffer_fail(COFFER_ERR_VALIDATION,
                       "Secrets Manager references are not available: this server does not serve Secrets "
                       "Manager, so %s cannot be read.",
                       name);
}
