/*
 * The Secrets Manager service (secrets.h): the module, its declaration (operations, error
 * names, sensitive members, the deletion, rotation and replication jobs) and GetRandomPassword.
 */
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "crypto/crypto.h"
#include "secrets/secrets_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* GetRandomPassword                                                                            */

coffer_err sm_op_GetRandomPassword(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    int64_t length = 32;
    bool has_length = false;
    struct sm_password_spec spec = {0};
    api_in_init(&in, call->input);
    TRY(api_in_int(&in, "PasswordLength", 0, 1, 4096, &length, &has_length));
    TRY(api_in_string(&in, "ExcludeCharacters", 0, 0, 4096, &spec.exclude));
    TRY(api_in_bool(&in, "ExcludeNumbers", false, &spec.no_numbers));
    TRY(api_in_bool(&in, "ExcludePunctuation", false, &spec.no_punctuation));
    TRY(api_in_bool(&in, "ExcludeUppercase", false, &spec.no_upper));
    TRY(api_in_bool(&in, "ExcludeLowercase", false, &spec.no_lower));
    TRY(api_in_bool(&in, "IncludeSpace", false, &spec.include_space));
    TRY(api_in_bool(&in, "RequireEachIncludedType", true, &spec.require_each));
    TRY(api_in_done(&in));
    spec.length = has_length ? (size_t)length : 32;
    TRY(sm_authorize_any(s, call, "GetRandomPassword"));
    char *pw = coffer_secret_alloc(spec.length + 1);
    if (pw == NULL) {
        return sm_oom();
    }
    coffer_err rc = sm_password(&spec, crypto_random, pw);
    if (rc == COFFER_OK) {
        call->output = json_pack("{s:s}", "RandomPassword", pw);
        rc = call->output != NULL ? COFFER_OK : sm_oom();
    }
    coffer_secret_free(pw, spec.length + 1);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The module                                                                                   */

static const struct api_op sm_ops[] = {
#define SM_OP(name, flags, rps) {#name, sm_op_##name, flags, rps},
#include "secrets/secrets_ops.def"
#undef SM_OP
};

/* Secrets Manager's names for the shared errors (secretsmanager.md). */
static const struct api_error_name sm_errors[] = {
    {COFFER_ERR_NOT_FOUND, "ResourceNotFoundException", 0,
     "Secrets Manager can't find the specified secret."},
    {COFFER_ERR_ALREADY_EXISTS, "ResourceExistsException", 0, NULL},
    {COFFER_ERR_INVALID_STATE, "InvalidRequestException", 0, NULL},
    {COFFER_ERR_INVALID_MARKER, "InvalidNextTokenException", 0, "The NextToken value is invalid."},
    {COFFER_ERR_INTERNAL, "InternalServiceError", 500, NULL},
    {COFFER_ERR_NOMEM, "InternalServiceError", 500, NULL},
    {COFFER_ERR_STORE, "InternalServiceError", 500, NULL},
    {COFFER_ERR_IO, "InternalServiceError", 500, NULL},
    {COFFER_ERR_CRYPTO, "InternalServiceError", 500, NULL},
};

/* Secret values, passwords and rotation tokens: wiped after use and never in the trail. */
static const char *const sm_sensitive_members[] = {
    "SecretString", "SecretBinary", "RandomPassword", "RotationToken", "SecretValues", "WrappedValues", NULL};

/* Another node changed a secret record (key NULL: maybe any): the read cache drops it. */
static void sm_record_changed(void *ctx, const char *key)
{
    json_cache_invalidate(((struct sm *)ctx)->cache, key);
}

static coffer_err sm_start(const struct api_host *host, void **instance, const struct api_service **api)
{
    TRY(api_ops_check(sm_ops, sizeof(sm_ops) / sizeof(sm_ops[0])));
    struct sm *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return sm_oom();
    }
    const struct secrets_settings defaults = SECRETS_SETTINGS_DEFAULT;
    const struct secrets_settings *set = host->settings != NULL ? host->settings : &defaults;
    coffer_err rc = json_cache_new(SM_CACHE_ENTRIES, SM_CACHE_BYTES, SM_CACHE_TTL_MS, &s->cache);
    if (rc != COFFER_OK) {
        free(s);
        return rc;
    }
    if ((rc = store_watch(host->store, "secrets/", sm_record_changed, s)) != COFFER_OK) {
        json_cache_free(s->cache);
        free(s);
        return rc;
    }
    s->st = host->store;
    s->az = host->authz;
    s->kms = host->lookup != NULL ? host->lookup(host->lookup_ctx, "kms") : NULL;
    s->day_ms = set->recovery_day_ms > 0 ? set->recovery_day_ms : defaults.recovery_day_ms;
    s->rotation_day_ms = set->rotation_day_ms > 0 ? set->rotation_day_ms : defaults.rotation_day_ms;
    s->step_timeout_ms =
        set->rotation_step_timeout_ms > 0 ? set->rotation_step_timeout_ms : defaults.rotation_step_timeout_ms;
    s->functions = set->functions;
    s->n_functions = set->n_functions;
    s->record = host->record;
    s->record_ctx = host->record_ctx;
    pthread_mutex_init(&s->wmu, NULL);
    s->jobs[0] = (struct api_job){.name = "secret deletion sweep", .fn = sm_sweep, .ctx = s, .period_s = 0};
    s->jobs[1] = (struct api_job){.name = "secret rotation", .fn = sm_rotation_job, .ctx = s, .period_s = 0};
    s->jobs[2] =
        (struct api_job){.name = "secret replication", .fn = sm_replication_job, .ctx = s, .period_s = 0};
    s->api = (struct api_service){
        .target_prefix = "secretsmanager",
        .signing_name = "secretsmanager",
        .event_source = "secretsmanager.amazonaws.com",
        .ops = sm_ops,
        .n_ops = sizeof(sm_ops) / sizeof(sm_ops[0]),
        .state = s,
        .errors = sm_errors,
        .n_errors = sizeof(sm_errors) / sizeof(sm_errors[0]),
        .sensitive_members = sm_sensitive_members,
        .jobs = s->jobs,
        .n_jobs = 3,
    };
    sm_inproc_init(s);
    if ((rc = sm_rotor_start(s)) != COFFER_OK) {
        store_unwatch(s->st, sm_record_changed, s);
        pthread_mutex_destroy(&s->wmu);
        json_cache_free(s->cache);
        free(s);
        return rc;
    }
    *instance = s;
    *api = &s->api;
    return COFFER_OK;
}

static const void *sm_interface(void *instance)
{
    return &((struct sm *)instance)->inproc;
}

static void sm_stop(void *instance)
{
    struct sm *s = instance;
    if (s == NULL) {
        return;
    }
    store_unwatch(s->st, sm_record_changed, s);
    sm_rotor_stop(s);
    pthread_mutex_destroy(&s->wmu);
    json_cache_free(s->cache);
    free(s);
}

const struct api_module secrets_module = {
    .name = "secretsmanager", .start = sm_start, .stop = sm_stop, .interface = sm_interface};
