/*
 * Echo: a test-only service that proves a service is one folder. It declares everything the
 * layers below it need (api/api.h, api/module.h) and nothing outside this folder names it but
 * the one line that registers it (cofferd_echo.c):
 *
 *   - target prefix "EchoService", signing name "echo", eventSource "echo.coffer.local";
 *   - its own error names: EchoValidationException, EchoUnknownOperationException,
 *     EchoInternalFailure (AccessDeniedException and the SigV4 errors keep the shared names);
 *   - a sensitive member, "Secret": answered back, wiped after use, never in the trail;
 *   - authorization by the shared authorizer (echo_authorize), action "echo:<Operation>";
 *   - a scheduled job that counts the scheduler's ticks (GetTicks reads the count).
 *
 * Operations: Echo {Message, Secret?} -> {Message, Secret?, Account}; GetTicks {} -> {Ticks}.
 */
#include "echo/echo_service.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_input.h"
#include "iam/authz.h"

#define ECHO_MESSAGE_MAX 1024

struct echo {
    authz *az; /* borrowed; NULL: any authenticated caller may call */
    atomic_long ticks;
    struct api_job jobs[1];
    struct api_service api;
};

/*
 * The one place Echo asks the shared authorizer: "echo:<Operation>" on the caller's echo
 * resource, with no resource policy, so the caller's identity policies decide (an account root
 * may do anything in its account).
 */
static coffer_err echo_authorize(const struct echo *e, const struct api_call *call)
{
    if (e->az == NULL) {
        return COFFER_OK;
    }
    char action[64], resource[128];
    snprintf(action, sizeof(action), "echo:%s", call->operation);
    snprintf(resource, sizeof(resource), "arn:aws:echo:%s:%s:echo/default", call->region,
             call->caller->account_id);
    struct authz_request req = authz_request_for(call, action, resource);
    return authz_check(e->az, &req);
}

static coffer_err op_Echo(void *state, struct api_call *call)
{
    struct echo *e = state;
    api_in in;
    const char *message = NULL, *secret = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Message", API_IN_REQUIRED, 1, ECHO_MESSAGE_MAX, &message));
    TRY(api_in_string(&in, "Secret", API_IN_SENSITIVE, 1, ECHO_MESSAGE_MAX, &secret));
    TRY(api_in_done(&in));
    TRY(echo_authorize(e, call));
    call->output = json_pack("{s:s, s:s}", "Message", message, "Account", call->caller->account_id);
    if (call->output == NULL ||
        (secret != NULL && json_object_set_new(call->output, "Secret", json_string(secret)) != 0)) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static coffer_err op_GetTicks(void *state, struct api_call *call)
{
    struct echo *e = state;
    TRY(echo_authorize(e, call));
    call->output = json_pack("{s:I}", "Ticks", (json_int_t)atomic_load(&e->ticks));
    return call->output != NULL ? COFFER_OK : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

static const struct api_op echo_ops[] = {
    {"Echo", op_Echo, 0, 0},
    {"GetTicks", op_GetTicks, API_OP_READONLY, 0},
};

static const struct api_error_name echo_errors[] = {
    {COFFER_ERR_VALIDATION, "EchoValidationException", 0, NULL},
    {COFFER_ERR_UNKNOWN_OPERATION, "EchoUnknownOperationException", 404, NULL},
    {COFFER_ERR_INTERNAL, "EchoInternalFailure", 0, "echo failed"},
    {COFFER_ERR_NOMEM, "EchoInternalFailure", 0, NULL},
};

static const char *const echo_sensitive_members[] = {"Secret", NULL};

static coffer_err count_tick(void *ctx, int64_t now_ms)
{
    struct echo *e = ctx;
    atomic_fetch_add(&e->ticks, 1);
    return COFFER_OK;
}

static coffer_err echo_start(const struct api_host *host, void **instance, const struct api_service **api)
{
    struct echo *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    e->az = host->authz;
    atomic_init(&e->ticks, 0);
    e->jobs[0] = (struct api_job){.name = "echo tick counter", .fn = count_tick, .ctx = e};
    e->api = (struct api_service){
        .target_prefix = "EchoService",
        .signing_name = "echo",
        .event_source = "echo.coffer.local",
        .ops = echo_ops,
        .n_ops = sizeof(echo_ops) / sizeof(echo_ops[0]),
        .state = e,
        .errors = echo_errors,
        .n_errors = sizeof(echo_errors) / sizeof(echo_errors[0]),
        .sensitive_members = echo_sensitive_members,
        .jobs = e->jobs,
        .n_jobs = 1,
    };
    *instance = e;
    *api = &e->api;
    return COFFER_OK;
}

static void echo_stop(void *instance)
{
    free(instance);
}

const struct api_module echo_module = {.name = "echo", .start = echo_start, .stop = echo_stop};
