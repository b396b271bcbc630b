/*
 * The in-process interface (secrets.h, struct secrets_api): GetSecretValue for another service
 * acting for its caller, through the operation's own handler so that authorization, the
 * deletion window and the errors are exactly the API's.
 */
#include <string.h>

#include "secrets/secrets_internal.h"

static coffer_err inproc_get_value(void *svc, const struct api_call *call, const char *secret_id,
                                   const char *version_id, const char *version_stage, json_t **out)
{
    *out = NULL;
    json_t *input = json_pack("{s:s}", "SecretId", secret_id);
    if (input == NULL ||
        (version_id != NULL && json_object_set_new(input, "VersionId", json_string(version_id))) ||
        (version_stage != NULL && json_object_set_new(input, "VersionStage", json_string(version_stage)))) {
        json_decref(input);
        return sm_oom();
    }
    struct api_call sub = {
        .caller = call->caller,
        .region = call->region,
        .request_id = call->request_id,
        .event_id = call->event_id,
        .operation = "GetSecretValue",
        .now_ms = call->now_ms,
        .input = input,
        .via_service = call->via_service,
    };
    coffer_err rc = sm_op_GetSecretValue(svc, &sub);
    json_decref(sub.audit_request);
    json_decref(sub.audit_response);
    json_decref(sub.audit_resources);
    json_decref(input);
    if (rc == COFFER_OK) {
        *out = sub.output != NULL ? sub.output : json_object();
    } else {
        json_decref(sub.output);
    }
    return rc;
}

void sm_inproc_init(struct sm *s)
{
    s->inproc = (struct secrets_api){.svc = s, .get_value = inproc_get_value};
}
