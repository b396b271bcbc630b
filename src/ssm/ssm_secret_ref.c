/*
 * "/aws/reference/secretsmanager/<secret-id>[:<version-id or stage>]": reading a Secrets
 * Manager secret through GetParameter and GetParameters. The secret is answered by the daemon's
 * Secrets Manager (secrets.h, struct secrets_api, found at start through
 * api_host.lookup("secretsmanager")) with the caller's identity, so the caller needs
 * ssm:GetParameter(s) on the reference, secretsmanager:GetSecretValue on the secret and
 * kms:Decrypt on its key. Without Secrets Manager in the daemon, a reference is a
 * ValidationException saying so, never a made-up value.
 */
#include <stdio.h>
#include <string.h>

#include "common/secret.h"
#include "secrets/secrets.h"
#include "ssm/ssm_internal.h"

#define SECRET_REF_PREFIX "/aws/reference/secretsmanager/"

bool ssm_is_secret_ref(const char *ref)
{
    return strncmp(ref, SECRET_REF_PREFIX, strlen(SECRET_REF_PREFIX)) == 0;
}

/* A selector after the secret id: a version id (a UUID) or a staging label. */
static bool looks_like_version_id(const char *s)
{
    if (strlen(s) != 36) {
        return false;
    }
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdefABCDEF", s[i]) == NULL) {
            return false;
        }
    }
    return true;
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
    char name[SSM_NAME_MAX + 1], selector[128] = "";
    const char *colon = strchr(ref + strlen(SECRET_REF_PREFIX), ':');
    snprintf(name, sizeof(name), "%.*s", colon != NULL ? (int)(colon - ref) : (int)strlen(ref), ref);
    if (colon != NULL) {
        snprintf(selector, sizeof(selector), "%s", colon + 1);
    }
    TRY(ssm_authorize_param(s, call, name));
    const struct secrets_api *sm = s->secrets;
    if (sm == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Secrets Manager references are not available: this server does not serve Secrets "
                           "Manager, so %s cannot be read.",
                           name);
    }
    const char *secret_id = name + strlen(SECRET_REF_PREFIX);
    bool by_id = selector[0] != 0 && looks_like_version_id(selector);
    json_t *got = NULL;
    char *source = NULL;
    /* As the caller: secretsmanager:GetSecretValue and kms:Decrypt are theirs to have. */
    coffer_err rc = sm->get_value(sm->svc, call, secret_id, by_id ? selector : NULL,
                                  !by_id && selector[0] != 0 ? selector : NULL, &got);
    if (rc == COFFER_ERR_NOT_FOUND) {
        /* Parameter Store's own word for a reference to nothing. */
        rc = coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    TRY_OUT(rc);
    const json_t *value = json_object_get(got, "SecretString");
    if (value == NULL) {
        value = json_object_get(got, "SecretBinary"); /* base64, as GetSecretValue gives it */
    }
    if ((source = json_dumps(got, JSON_COMPACT)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* LastModifiedDate: when this version was made (GetSecretValue's CreatedDate). */
    /* A copy: what `got` holds is wiped below. */
    *out = json_pack("{s:s, s:s, s:o, s:i, s:s, s:O, s:O, s:s}", "Name", ref, "Type", "SecureString", "Value",
                     json_is_string(value) ? json_stringn(json_string_value(value), json_string_length(value))
                                           : json_null(),
                     "Version", 0, "SourceResult", source, "LastModifiedDate",
                     json_object_get(got, "CreatedDate"), "ARN", json_object_get(got, "ARN"), "DataType",
                     "text");
    if (*out == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (selector[0] != 0 && json_object_set_new(*out, "Selector", json_pack("s+", ":", selector)) != 0) {
        json_decref(*out);
        *out = NULL;
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    if (source != NULL) {
        coffer_secure_zero(source, strlen(source)); /* it holds the secret */
        free(source);
    }
    if (got != NULL) {
        /* the secret's text, wiped before it is released */
        json_t *v = json_object_get(got, "SecretString");
        if (json_is_string(v)) {
            coffer_secure_zero((void *)json_string_value(v), json_string_length(v));
        }
        v = json_object_get(got, "SecretBinary");
        if (json_is_string(v)) {
            coffer_secure_zero((void *)json_string_value(v), json_string_length(v));
        }
        json_decref(got);
    }
    return rc;
}
