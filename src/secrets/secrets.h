/*
 * Secrets Manager (AWS JSON 1.1, target prefix "secretsmanager", signing name "secretsmanager"):
 * named secrets holding versions of a value (a string or bytes, at most 65,536 bytes), each
 * version carrying staging labels (AWSCURRENT, AWSPREVIOUS, AWSPENDING, custom ones) that move
 * as in AWS. Every value is encrypted under a data key that KMS (in process, with the caller's
 * identity, kms:ViaService secretsmanager.<region>.amazonaws.com) encrypts with the secret's
 * key, alias/aws/secretsmanager by default; a value is never stored nor logged in clear.
 * Authorization combines the caller's identity policies with the secret's resource policy as
 * AWS does. A secret scheduled for deletion is removed by the scheduler at the end of its
 * recovery window. A secret may be replicated to peer regions (the --peer deployments of
 * multi-Region KMS keys): read-only replicas with the same versions and labels, encrypted under
 * a key of their own region (secrets_replication.c).
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

#define SECRETS_MAX_ROTATION_FUNCTIONS 32
#define SECRETS_FUNCTION_ARN_MAX 256
#define SECRETS_FUNCTION_TARGET_MAX 1024
#define SECRETS_FUNCTION_CA_MAX 1024

/*
 * A rotation function: the Lambda-like ARN a secret names (RotationLambdaARN,
 * "arn:aws:lambda:REGION:ACCOUNT:function:NAME") and what runs for it: "exec:/path/to/program"
 * (the event JSON on stdin, exit status 0 for success), "https://host/path" (a POST of the event
 * JSON, 2xx for success; "http://" for a loopback listener) or "builtin:postgres-single-user" /
 * "builtin:postgres-alternating-users" (the PostgreSQL rotators run inside cofferd). An https
 * target may end in ",ca=/path/to/ca.pem": the webhook's certificate must then chain to those
 * CA certificates instead of the system's.
 */
struct secrets_rotation_function {
    char arn[SECRETS_FUNCTION_ARN_MAX];
    char target[SECRETS_FUNCTION_TARGET_MAX];
    char ca[SECRETS_FUNCTION_CA_MAX]; /* PEM CA bundle for an https target; "": the system's */
};

/* What cofferd configures for Secrets Manager: the module's settings block (host->settings). */
struct secrets_settings {
    /* The length of one day of a recovery window (RecoveryWindowInDays), in ms (86,400,000).
     * Tests shorten it (cofferd --secret-recovery-day-ms) so that a 7-day window passes in
     * seconds; DeletionDate follows it. */
    int64_t recovery_day_ms;
    /* The length of one day of a rotation schedule (rate(), AutomaticallyAfterDays), in ms;
     * tests shorten it (--secret-rotation-day-ms) to wait for rate(1 days) in seconds. */
    int64_t rotation_day_ms;
    /* How long one step of a rotation function may run before it is killed (failed), in ms. */
    int64_t rotation_step_timeout_ms;
    struct secrets_rotation_function functions[SECRETS_MAX_ROTATION_FUNCTIONS];
    size_t n_functions;
};

#define SECRETS_SETTINGS_DEFAULT                                                                             \
    {                                                                                                        \
        .recovery_day_ms = 86400000LL, .rotation_day_ms = 86400000LL, .rotation_step_timeout_ms = 30000      \
    }

/*
 * One --rotation-function value, "ARN=TARGET" (struct secrets_rotation_function), into *out;
 * COFFER_ERR_CONFIG naming what is wrong.
 */
coffer_err secrets_rotation_function_parse(const char *spec, struct secrets_rotation_function *out)
    __attribute__((warn_unused_result));

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
