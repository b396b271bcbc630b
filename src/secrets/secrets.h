/*
 * Secrets Manager (AWS JSON 1.1, target prefix "secretsmanager", signing name "secretsmanager"):
 * named secrets holding versions of a value (a string or bytes, at most 65,536 bytes), each
 * version carrying staging labels (AWSCURRENT, AWSPREVIOUS, AWSPENDING, custom ones) that move
 * as in AWS. Every value is encrypted under a data key that KMS (in process, with the caller's
 * identity, kms:ViaService secretsmanager.<region>.amazonaws.com) encrypts with the secret's
 * key, alias/aws/secretsmanager by default; a value is never stored nor logged in clear.
 * Authorization combines the caller's identity policies with the secret's resource policy as
 * AWS does. A secret scheduled for deletion is removed by the scheduler at the end of its
 * recovery window.
 *
 * Thread-safety: handlers and the deletion job run concurrently; reads take no lock, and every
 * change of a secret is read, decided and written (one store transaction) under one mutex of
 * the service.
 */
#ifndef COFFER_SECRETS_SECRETS_H
#define COFFER_SECRETS_SECRETS_H

#include <stdint.h>

#include <jansson.h>

#include "api/api.h"
#include "api/module.h"

/* What cofferd configures for Secrets Manager: the module's settings block (host->settings). */
struct secrets_settings {
    /* The length of one day of a recovery window (RecoveryWindowInDays), in ms (86,400,000).
     * Tests shorten it (cofferd --secret-recovery-day-ms) so that a 7-day window passes in
     * seconds; DeletionDate follows it. */
    int64_t recovery_day_ms;
};

#define SECRETS_SETTINGS_DEFAULT                                                                             \
    {                                                                                                        \
        .recovery_day_ms = 86400000LL                                                                        \
    }

/*
 * What other services call in process (api_host.lookup(ctx, "secretsmanager")): Parameter
 * Store's /aws/reference/secretsmanager/<id>. `get_value` is GetSecretValue made by `call`'s
 * caller, authorized as that caller (identity and resource policies, and kms:Decrypt on the
 * secret's key): *out is GetSecretValue's output object (ARN, Name, VersionId, SecretString or
 * SecretBinary, VersionStages, CreatedDate), with the same errors. `version_id` and
 * `version_stage` may be NULL.
 */
struct secrets_api {
    void *svc;
    coffer_err (*get_value)(void *svc, const struct api_call *call, const char *secret_id,
                            const char *version_id, const char *version_stage, json_t **out);
};

/* Secrets Manager as a module of the daemon (api/module.h); settings: struct secrets_settings. */
extern const struct api_module secrets_module;

#endif
