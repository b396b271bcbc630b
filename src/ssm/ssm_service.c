/* The Parameter Store service (ssm.h): the module and its operation table. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/buf.h"
#include "ssm/ssm_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* The module                                                                                   */

static const struct api_op ssm_ops[] = {
#define SSM_OP(name, flags, rps) {#name, ssm_op_##name, flags, rps},
#include "ssm/ssm_ops.def"
#undef SSM_OP
};

/* Parameter Store's names for the shared errors (ssm-parameters.md §3). */
static const struct api_error_name ssm_errors[] = {
    {COFFER_ERR_NOT_FOUND, "ParameterNotFound", 0, ""},
    {COFFER_ERR_ALREADY_EXISTS, "ParameterAlreadyExists", 0, NULL},
    {COFFER_ERR_LIMIT_EXCEEDED, "ParameterLimitExceeded", 0, NULL},
    {COFFER_ERR_INVALID_MARKER, "InvalidNextToken", 0, "The specified token is not valid."},
    {COFFER_ERR_UNSUPPORTED_OPERATION, "UnsupportedParameterType", 0, NULL},
    {COFFER_ERR_INTERNAL, "InternalServerError", 500, NULL},
    {COFFER_ERR_NOMEM, "InternalServerError", 500, NULL},
    {COFFER_ERR_STORE, "InternalServerError", 500, NULL},
    {COFFER_ERR_IO, "InternalServerError", 500, NULL},
    {COFFER_ERR_CRYPTO, "InternalServerError", 500, NULL},
};

/* Parameter values are secrets: wiped after use and never in the trail. */
static const char *const ssm_sensitive_members[] = {"Value", "SourceResult", NULL};

/* Another node changed a parameter record (key NULL: maybe any): the read cache drops it. */
static void ssm_record_changed(void *ctx, const char *key)
{
    json_cache_invalidate(((struct ssm *)ctx)->cache, key);
}

static coffer_err ssm_start(const struct api_host *host, void **instance, const struct api_service **api)
{
    TRY(api_ops_check(ssm_ops, sizeof(ssm_ops) / sizeof(ssm_ops[0])));
    struct ssm *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return ssm_oom();
    }
    coffer_err rc = json_cache_new(SSM_CACHE_ENTRIES, SSM_CACHE_BYTES, SSM_CACHE_TTL_MS, &s->cache);
    if (rc != COFFER_OK) {
        free(s);
        return rc;
    }
    s->st = host->store;
    s->az = host->authz;
    s->kms = host->lookup != NULL ? host->lookup(host->lookup_ctx, "kms") : NULL;
    s->region = host->region;
    s->record = host->record;
    s->record_ctx = host->record_ctx;
    if (host->data_dir != NULL && (rc = ssm_events_open(host->data_dir, &s->events)) != COFFER_OK) {
        json_cache_free(s->cache);
        free(s);
        return rc;
    }
    if ((rc = store_watch(host->store, "ssm/param/", ssm_record_changed, s)) != COFFER_OK) {
        ssm_events_close(s->events);
        json_cache_free(s->cache);
        free(s);
        return rc;
    }
    /* parameter policies, at every tick of the daemon's scheduler (cofferd --sweep-interval) */
    s->jobs[0] =
        (struct api_job){.name = "parameter policies", .fn = ssm_policy_job, .ctx = s, .period_s = 0};
    s->secrets = host->lookup != NULL ? host->lookup(host->lookup_ctx, "secretsmanager") : NULL;
    s->limits = host->settings != NULL ? *(const struct ssm_settings *)host->settings
                                       : (struct ssm_settings)SSM_SETTINGS_DEFAULT;
    s->api = (struct api_service){
        .target_prefix = "AmazonSSM",
        .signing_name = "ssm",
        .event_source = "ssm.amazonaws.com",
        .ops = ssm_ops,
        .n_ops = sizeof(ssm_ops) / sizeof(ssm_ops[0]),
        .state = s,
        .errors = ssm_errors,
        .n_errors = sizeof(ssm_errors) / sizeof(ssm_errors[0]),
        .sensitive_members = ssm_sensitive_members,
        .jobs = s->jobs,
        .n_jobs = sizeof(s->jobs) / sizeof(s->jobs[0]),
    };
    *instance = s;
    *api = &s->api;
    return COFFER_OK;
}

static void ssm_stop(void *instance)
{
    struct ssm *s = instance;
    if (s != NULL) {
        store_unwatch(s->st, ssm_record_changed, s);
        ssm_events_close(s->events);
        json_cache_free(s->cache);
    }
    free(instance);
}

const struct api_module ssm_module = {.name = "ssm", .start = ssm_start, .stop = ssm_stop};
