/*
 * The AWS request pipeline (see pipeline.h). One call of pipeline_handle per HTTP request, on
 * the worker thread that received it; all state it touches (credential cache, quotas, trail,
 * services) is thread-safe.
 */
#include "http/pipeline.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "common/json_in.h"
#include "common/json_out.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "http/query.h"
#include "store/store.h"

#define JSON_CONTENT_TYPE "application/x-amz-json-1.1"
#define PIPELINE_MAX_SCOPE_REGION 64

struct request_state {
    struct pipeline *p;
    struct api_caller caller;
    struct api_call call;
    const struct api_service *svc;
    const struct api_op *op;
    char op_name[128];
    char ids[3][CRYPTO_UUID_STR_LEN + 1]; /* request id, audit event id, id of a superseding event */
    const char *request_id;
    bool authenticated;
    bool query;              /* Query protocol: errors and output as XML */
    json_t *form;            /* Query protocol: the decoded form, owned until the handler gets it */
    char route_message[256]; /* detail of a routing failure, reported after authentication */
    char scope_region[PIPELINE_MAX_SCOPE_REGION + 1]; /* a foreign scope the service accepted */
    /* The pre-commit event (audit_precommit): */
    bool event_written;    /* on record before the first commit of this request */
    bool precommit_failed; /* the trail refused it: that commit was aborted */
    json_t *recorded[3];   /* copies of what it said: audit_request, audit_response, audit_resources */
};

/* api_call.quota_take: one token of the caller's `bucket`, for a handler that knows it only now. */
static bool pipeline_quota_take(void *ctx, const char *bucket, double rps)
{
    struct request_state *st = ctx;
    return quota_take(st->p->quota, st->caller.account_id, bucket, rps, coffer_monotonic_ns());
}

/* Overwrites the text of svc's sensitive string members of `obj` in place before it is
 * released, in nested objects and in objects inside arrays (lists of credentials, key pairs). */
static void json_wipe_sensitive(const struct api_service *svc, json_t *obj)
{
    const char *key;
    json_t *val;
    size_t i;
    if (json_is_array(obj)) {
        json_array_foreach(obj, i, val)
        {
            json_wipe_sensitive(svc, val);
        }
        return;
    }
    if (!json_is_object(obj)) {
        return;
    }
    json_object_foreach(obj, key, val)
    {
        if (json_is_string(val) && api_service_member_is_sensitive(svc, key)) {
            coffer_secure_zero((char *)json_string_value(val), json_string_length(val));
        } else if (json_is_object(val) || json_is_array(val)) {
            json_wipe_sensitive(svc, val);
        }
    }
}

/*
 * A JSON string for an event field or an error message. What a client sent (a User-Agent, an
 * operation name) is bytes, not always UTF-8, which JSON strings must be: the field is kept
 * with '?' for every byte that is not ASCII rather than left out. NULL only when memory runs out.
 */
static json_t *lossy_string(const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL || s == NULL) {
        return v;
    }
    char *copy = strdup(s);
    if (copy == NULL) {
        return NULL;
    }
    for (char *c = copy; *c != '\0'; c++) {
        if ((unsigned char)*c >= 0x80) {
            *c = '?';
        }
    }
    v = json_string(copy);
    free(copy);
    return v;
}

/* Sets o[key] = v (taking v); clears *complete when v is NULL or the member cannot be added. */
static void set_member(json_t *o, const char *key, json_t *v, bool *complete)
{
    if (json_object_set_new(o, key, v) != 0) {
        *complete = false;
    }
}

/* requestParameters for the trail when the handler gave none: the input, lowerCamelCase, minus
 * secrets. NULL when memory runs out. */
static json_t *audit_default_request(const struct api_service *svc, const json_t *input)
{
    json_t *out = json_object();
    const char *key;
    json_t *val;
    if (out == NULL || !json_is_object(input)) {
        return out;
    }
    json_object_foreach((json_t *)input, key, val)
    {
        if (api_service_member_is_sensitive(svc, key)) {
            continue;
        }
        char name[128];
        snprintf(name, sizeof(name), "%s", key);
        if (name[0] >= 'A' && name[0] <= 'Z') {
            name[0] = (char)(name[0] - 'A' + 'a');
        }
        if (json_object_set(out, name, val) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* The JSON error body, in the words of the service the request was for (err.h's when none). */
static void set_error(struct http_response *resp, const struct api_service *svc, coffer_err rc)
{
    struct api_error e = api_service_error(svc, rc);
    const char *type = e.type;
    const char *msg = api_service_error_message(svc, rc);
    resp->status = e.status;
    resp->content_type = JSON_CONTENT_TYPE;
    coffer_buf_reset(&resp->body);
    bool complete = true;
    json_t *body = json_object();
    set_member(body, "__type", json_string(type), &complete);
    /* UnknownOperationException carries no message; others only when there is one. */
    if (rc != COFFER_ERR_UNKNOWN_OPERATION && msg != NULL && msg[0] != '\0') {
        set_member(body, "message", lossy_string(msg), &complete);
    }
    char *text = complete ? json_dumps(body, JSON_COMPACT) : NULL;
    /* Out of memory: a bare 500 rather than a body that names a different error. */
    if (text == NULL || coffer_buf_append_str(&resp->body, text) != COFFER_OK) {
        resp->status = 500;
        coffer_buf_reset(&resp->body);
    }
    free(text);
    json_decref(body);
}

/* The Query-protocol error document (IAM, STS), in the words of the service. */
static void set_error_query(struct http_response *resp, const struct api_service *svc, coffer_err rc,
                            const char *request_id)
{
    struct api_error e = api_service_error(svc, rc);
    resp->status = e.status;
    resp->content_type = QUERY_XML_CONTENT_TYPE;
    coffer_buf_reset(&resp->body);
    if (query_xml_error(e.type, e.status, api_service_error_message(svc, rc), request_id, &resp->body) !=
        COFFER_OK) {
        resp->status = 500;
    }
}

/* The caller's identity; NULL when it cannot be built whole. */
static json_t *audit_user_identity(const struct request_state *st)
{
    bool complete = true;
    json_t *id = json_object();
    if (id == NULL) {
        return NULL;
    }
    if (st->authenticated) {
        set_member(id, "type", lossy_string(api_principal_trail_type(st->caller.principal_kind)), &complete);
        set_member(id, "principalId", lossy_string(st->caller.principal_id), &complete);
        set_member(id, "arn", lossy_string(st->caller.principal_arn), &complete);
        set_member(id, "accountId", lossy_string(st->caller.account_id), &complete);
        set_member(id, "accessKeyId", lossy_string(st->caller.access_key_id), &complete);
    } else {
        set_member(id, "type", json_string("Unknown"), &complete);
        if (st->caller.access_key_id[0]) {
            set_member(id, "accessKeyId", lossy_string(st->caller.access_key_id), &complete);
        }
    }
    if (!complete) {
        json_decref(id);
        return NULL;
    }
    return id;
}

/* A deep copy of v, or NULL; NULL also when the copy fails (the event then says less, never more). */
static json_t *json_copy_or_null(const json_t *v)
{
    return v != NULL ? json_deep_copy(v) : NULL;
}

/*
 * Builds the CloudTrail event of this request as known now. `take`: the event takes the
 * handler's audit fields (the last event of the request); otherwise it gets copies, so the
 * handler may still change them (the pre-commit event). `supersedes`: the id of an earlier
 * event of the same request that this one replaces (it then records the final outcome).
 * NULL when memory runs out: an event is written whole or not at all, and a request whose
 * event is not written is refused (audit_append).
 */
static json_t *audit_event_build(struct pipeline *p, struct request_state *st, coffer_err rc,
                                 const char *error_message, const char *event_id, const char *supersedes,
                                 bool take)
{
    char when[40];
    bool complete = !st->call.audit_incomplete;
    coffer_time_iso8601(st->call.now_ms / 1000, when, sizeof(when));
    json_t *ev = json_object();
    if (ev == NULL) {
        complete = false;
        ev = json_null(); /* a singleton: the sets below fail and the fields taken are released */
    }
    set_member(ev, "eventVersion", json_string("1.08"), &complete);
    set_member(ev, "userIdentity", audit_user_identity(st), &complete);
    set_member(ev, "eventTime", json_string(when), &complete);
    set_member(ev, "eventSource",
               json_string(st->svc && st->svc->event_source ? st->svc->event_source : "unknown"), &complete);
    set_member(ev, "eventName", lossy_string(st->op_name[0] ? st->op_name : "Unknown"), &complete);
    set_member(ev, "awsRegion", json_string(p->region), &complete);
    set_member(ev, "sourceIPAddress", lossy_string(st->caller.source_ip ? st->caller.source_ip : ""),
               &complete);
    /* Long strings (a 60 KB User-Agent) are cut by the trail: events are bounded there. */
    set_member(ev, "userAgent", lossy_string(st->caller.user_agent ? st->caller.user_agent : ""), &complete);
    if (rc != COFFER_OK) {
        set_member(ev, "errorCode", json_string(api_service_error(st->svc, rc).type), &complete);
        if (error_message && error_message[0]) {
            set_member(ev, "errorMessage", lossy_string(error_message), &complete);
        }
    }
    json_t *req_params = take ? st->call.audit_request : json_copy_or_null(st->call.audit_request);
    if (take) {
        st->call.audit_request = NULL;
    } else if (req_params == NULL && st->call.audit_request != NULL) {
        complete = false;
    }
    /* Nothing a caller that failed authentication sent is echoed: it costs them nothing to send. */
    if (req_params == NULL && st->call.input != NULL && st->authenticated) {
        req_params = audit_default_request(st->svc, st->call.input);
        if (req_params == NULL) {
            complete = false;
        }
    }
    set_member(ev, "requestParameters", req_params ? req_params : json_null(), &complete);
    json_t *resp_elems = NULL;
    if (rc == COFFER_OK) {
        resp_elems = take ? st->call.audit_response : json_copy_or_null(st->call.audit_response);
        if (!take && resp_elems == NULL && st->call.audit_response != NULL) {
            complete = false;
        }
    } else if (take) {
        json_decref(st->call.audit_response);
    }
    if (take) {
        st->call.audit_response = NULL;
    }
    set_member(ev, "responseElements", resp_elems ? resp_elems : json_null(), &complete);
    if (supersedes != NULL) {
        set_member(ev, "additionalEventData", json_pack("{s:s}", "supersedesEventId", supersedes), &complete);
    }
    set_member(ev, "requestID", json_string(st->request_id), &complete);
    set_member(ev, "eventID", json_string(event_id), &complete);
    set_member(ev, "readOnly", json_boolean(st->op && (st->op->flags & API_OP_READONLY)), &complete);
    json_t *res = take ? st->call.audit_resources : json_copy_or_null(st->call.audit_resources);
    if (take) {
        st->call.audit_resources = NULL;
    } else if (res == NULL && st->call.audit_resources != NULL) {
        complete = false;
    }
    set_member(ev, "resources", res ? res : json_array(), &complete);
    set_member(ev, "eventType", json_string("AwsApiCall"), &complete);
    set_member(ev, "managementEvent", json_boolean(!(st->op && (st->op->flags & API_OP_CRYPTO))), &complete);
    set_member(ev, "recipientAccountId", lossy_string(st->authenticated ? st->caller.account_id : ""),
               &complete);
    set_member(ev, "tlsDetails",
               st->caller.secure_transport ? json_pack("{s:s}", "clientProvidedHostHeader", "") : json_null(),
               &complete);
    if (!complete) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

static bool audit_append(struct pipeline *p, struct request_state *st, json_t *ev)
{
    coffer_err arc =
        ev != NULL ? audit_trail_append(p->trail, ev) : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    json_decref(ev);
    if (arc != COFFER_OK) {
        log_error("audit trail write failed: %s; refusing request %s", coffer_last_message(), st->request_id);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- the event written directly */

/*
 * Each worker thread's batch of events waiting for the end of its loop turn (pipeline_pass_end).
 * A thread-specific key rather than a field of the pipeline: the pipeline is shared by every
 * worker, and the key's destructor frees a worker's batch when its thread ends.
 */
static pthread_key_t batch_key;
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;
static bool batch_key_ok;

static void batch_destroy(void *b)
{
    audit_batch_free(b);
}

static void batch_key_init(void)
{
    batch_key_ok = pthread_key_create(&batch_key, batch_destroy) == 0;
}

/* The calling thread's batch, created on first use; NULL when it cannot be. */
static audit_batch *thread_batch(void)
{
    pthread_once(&batch_once, batch_key_init);
    if (!batch_key_ok) {
        return NULL;
    }
    audit_batch *b = pthread_getspecific(batch_key);
    if (b == NULL && audit_batch_new(&b) == COFFER_OK && pthread_setspecific(batch_key, b) != 0) {
        audit_batch_free(b);
        b = NULL;
    }
    return b;
}

/*
 * The event audit_event_build makes (with take = true), written member by member into `b`
 * instead: same members, same order, same values, so the same line in the trail. The handler's
 * audit fields are read where they are, not copied. An event that audit_event_build could not
 * build whole is left failed (audit_line_end then refuses it).
 */
static void audit_event_write(audit_batch *b, struct pipeline *p, struct request_state *st, coffer_err rc,
                              const char *error_message, const char *event_id, const char *supersedes)
{
    char when[40];
    coffer_time_iso8601(st->call.now_ms / 1000, when, sizeof(when));
    audit_line_begin(b);
    if (st->call.audit_incomplete) {
        audit_line_fail(b);
    }
    audit_line_string(b, "eventVersion", "1.08", false);
    audit_line_object_begin(b, "userIdentity");
    if (st->authenticated) {
        audit_line_string(b, "type", api_principal_trail_type(st->caller.principal_kind), true);
        audit_line_string(b, "principalId", st->caller.principal_id, true);
        audit_line_string(b, "arn", st->caller.principal_arn, true);
        audit_line_string(b, "accountId", st->caller.account_id, true);
        audit_line_string(b, "accessKeyId", st->caller.access_key_id, true);
    } else {
        audit_line_string(b, "type", "Unknown", false);
        if (st->caller.access_key_id[0]) {
            audit_line_string(b, "accessKeyId", st->caller.access_key_id, true);
        }
    }
    audit_line_object_end(b);
    audit_line_string(b, "eventTime", when, false);
    audit_line_string(b, "eventSource", st->svc && st->svc->event_source ? st->svc->event_source : "unknown",
                      false);
    audit_line_string(b, "eventName", st->op_name[0] ? st->op_name : "Unknown", true);
    audit_line_string(b, "awsRegion", p->region, false);
    audit_line_string(b, "sourceIPAddress", st->caller.source_ip ? st->caller.source_ip : "", true);
    audit_line_string(b, "userAgent", st->caller.user_agent ? st->caller.user_agent : "", true);
    if (rc != COFFER_OK) {
        audit_line_string(b, "errorCode", api_service_error(st->svc, rc).type, false);
        if (error_message && error_message[0]) {
            audit_line_string(b, "errorMessage", error_message, true);
        }
    }
    json_t *defaults = NULL;
    const json_t *req_params = st->call.audit_request;
    if (req_params == NULL && st->call.input != NULL && st->authenticated) {
        req_params = defaults = audit_default_request(st->svc, st->call.input);
        if (defaults == NULL) {
            audit_line_fail(b);
        }
    }
    audit_line_json(b, "requestParameters", req_params);
    json_decref(defaults);
    audit_line_json(b, "responseElements", rc == COFFER_OK ? st->call.audit_response : NULL);
    if (supersedes != NULL) {
        audit_line_object_begin(b, "additionalEventData");
        audit_line_string(b, "supersedesEventId", supersedes, false);
        audit_line_object_end(b);
    }
    audit_line_string(b, "requestID", st->request_id, false);
    audit_line_string(b, "eventID", event_id, false);
    audit_line_bool(b, "readOnly", st->op && (st->op->flags & API_OP_READONLY));
    if (st->call.audit_resources != NULL) {
        audit_line_json(b, "resources", st->call.audit_resources);
    } else {
        json_t *none = json_array();
        if (none == NULL) {
            audit_line_fail(b);
        }
        audit_line_json(b, "resources", none);
        json_decref(none);
    }
    audit_line_string(b, "eventType", "AwsApiCall", false);
    audit_line_bool(b, "managementEvent", !(st->op && (st->op->flags & API_OP_CRYPTO)));
    audit_line_string(b, "recipientAccountId", st->authenticated ? st->caller.account_id : "", true);
    if (st->caller.secure_transport) {
        audit_line_object_begin(b, "tlsDetails");
        audit_line_string(b, "clientProvidedHostHeader", "", false);
        audit_line_object_end(b);
    } else {
        audit_line_json(b, "tlsDetails", NULL);
    }
    /* Last, where audit_trail_append adds it to a tree: the same line either way. */
    const char *node = audit_trail_node_id(p->trail);
    if (node != NULL) {
        audit_line_string(b, AUDIT_NODE_FIELD, node, false);
    }
}

/*
 * Records the last event of a request. `hold` (the server keeps the reply until the end of its
 * loop turn): the event goes into the thread's batch, *held is set and pipeline_pass_end writes
 * it, before the reply goes out or is refused. Otherwise, or for an event too large for the
 * writer (it needs the trail's bounding of a tree), it is written now. false: refused now.
 */
static bool audit_final(struct pipeline *p, struct request_state *st, coffer_err rc,
                        const char *error_message, const char *event_id, const char *supersedes, bool hold,
                        bool *held)
{
    audit_batch *b = hold ? thread_batch() : NULL;
    if (b != NULL) {
        bool oversized = false;
        audit_event_write(b, p, st, rc, error_message, event_id, supersedes);
        if (audit_line_end(b, &oversized) != COFFER_OK) {
            log_error("audit event could not be built: %s; refusing request %s", coffer_last_message(),
                      st->request_id);
            return false;
        }
        if (!oversized) {
            *held = true;
            return true;
        }
    }
    return audit_append(p, st, audit_event_build(p, st, rc, error_message, event_id, supersedes, true));
}

bool pipeline_pass_end(void *ctx)
{
    struct pipeline *p = ctx;
    audit_batch *b = batch_key_ok ? pthread_getspecific(batch_key) : NULL;
    if (b == NULL || audit_batch_count(b) == 0) {
        return true;
    }
    size_t n = audit_batch_count(b);
    if (audit_trail_write_batch(p->trail, b) != COFFER_OK) {
        log_error("audit trail write failed: %s; refusing the %zu requests of the batch",
                  coffer_last_message(), n);
        return false;
    }
    return true;
}

/*
 * The store's pre-commit hook while a handler runs (store_precommit_set): before the first
 * commit of the request becomes visible, its event is on record with what is known so far
 * (the outcome so far is success). If the trail refuses it, the commit is aborted and the
 * request fails with COFFER_ERR_AUDIT: no change without its event, whichever service or path
 * commits. Later commits of the same request are covered by that event.
 */
static coffer_err audit_precommit(void *ctx)
{
    struct request_state *st = ctx;
    if (st->event_written) {
        return COFFER_OK;
    }
    json_t *ev = audit_event_build(st->p, st, COFFER_OK, NULL, st->ids[1], NULL, false);
    if (!audit_append(st->p, st, ev)) {
        st->precommit_failed = true;
        return coffer_fail(COFFER_ERR_AUDIT, "%s", "The request could not be recorded in the audit trail.");
    }
    st->event_written = true;
    st->recorded[0] = json_copy_or_null(st->call.audit_request);
    st->recorded[1] = json_copy_or_null(st->call.audit_response);
    st->recorded[2] = json_copy_or_null(st->call.audit_resources);
    return COFFER_OK;
}

static bool json_same(const json_t *a, const json_t *b)
{
    return a == NULL ? b == NULL : b != NULL && json_equal((json_t *)a, (json_t *)b);
}

/*
 * Records the request's outcome; false when the trail refused it. When a pre-commit event is
 * on record and says it all (success, same audit fields) nothing more is written; otherwise a
 * second event of the same request carries the final outcome and names the first in
 * additionalEventData.supersedesEventId (a commit that failed after its event, or audit fields
 * a handler set after committing).
 */
static bool audit_record(struct pipeline *p, struct request_state *st, coffer_err rc,
                         const char *error_message, bool hold, bool *held)
{
    if (!st->event_written) {
        if (!st->authenticated &&
            !audit_limiter_admit(p->unauth_limit, st->caller.source_ip, st->call.now_ms)) {
            return true; /* counted in the window's summary instead */
        }
        return audit_final(p, st, rc, error_message, st->ids[1], NULL, hold, held);
    }
    if (rc == COFFER_OK && json_same(st->recorded[0], st->call.audit_request) &&
        json_same(st->recorded[1], st->call.audit_response) &&
        json_same(st->recorded[2], st->call.audit_resources)) {
        return true;
    }
    return audit_final(p, st, rc, error_message, st->ids[2], st->ids[1], hold, held);
}

static const struct api_service *service_by_prefix(struct pipeline *p, const char *target, size_t prefix_len)
{
    for (size_t i = 0; i < p->n_services; i++) {
        const char *pre = p->services[i]->target_prefix;
        if (pre != NULL && strlen(pre) == prefix_len && strncmp(pre, target, prefix_len) == 0) {
            return p->services[i];
        }
    }
    return NULL;
}

static const struct api_service *service_by_signing_name(struct pipeline *p, coffer_cursor name)
{
    for (size_t i = 0; i < p->n_services; i++) {
        if (coffer_cursor_eq_str(name, p->services[i]->signing_name)) {
            return p->services[i];
        }
    }
    return NULL;
}

static const struct api_service *query_service_by_scope(struct pipeline *p,
                                                        const struct http_request_view *req)
{
    const char *auth = http_request_header(req, "Authorization");
    struct sigv4_authorization parsed;
    if (auth == NULL || sigv4_parse_authorization(coffer_cursor_from_str(auth), &parsed) != COFFER_OK) {
        return NULL;
    }
    const struct api_service *svc = service_by_signing_name(p, parsed.service);
    return svc != NULL && svc->protocol == API_PROTOCOL_QUERY ? svc : NULL;
}

/* The service whose words answer a Query request: the one it names, else the first Query one. */
static const struct api_service *query_error_service(const struct pipeline *p, const struct request_state *st)
{
    if (st->svc != NULL && st->svc->protocol == API_PROTOCOL_QUERY) {
        return st->svc;
    }
    for (size_t i = 0; i < p->n_services; i++) {
        if (p->services[i]->protocol == API_PROTOCOL_QUERY) {
            return p->services[i];
        }
    }
    return NULL;
}

/*
 * A request without X-Amz-Target and with a form body speaks the Query protocol: the service
 * is the one the credential scope names, the operation is the Action parameter.
 */
static coffer_err pipeline_route_query(struct pipeline *p, const struct http_request_view *req,
                                       struct request_state *st)
{
    const char *ctype = http_request_header(req, "Content-Type");
    if (ctype == NULL || strncasecmp(ctype, QUERY_CONTENT_TYPE, strlen(QUERY_CONTENT_TYPE)) != 0) {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    }
    st->query = true;
    TRY(query_form_parse(req->body, &st->form));
    const char *action = json_string_value(json_object_get(st->form, "Action"));
    if (action == NULL || action[0] == '\0') {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    }
    snprintf(st->op_name, sizeof(st->op_name), "%s", action);
    st->svc = query_service_by_scope(p, req);
    if (st->svc == NULL) {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    }
    st->op = api_service_find_op(st->svc, action, strlen(action));
    if (st->op == NULL) {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "Could not find operation %s for version %s", action,
                           st->svc->xml_namespace);
    }
    return COFFER_OK;
}

static coffer_err pipeline_route(struct pipeline *p, const struct http_request_view *req,
                                 struct request_state *st)
{
    const char *target = http_request_header(req, "X-Amz-Target");
    if (target == NULL) {
        return pipeline_route_query(p, req, st);
    }
    const char *dot = strrchr(target, '.');
    if (dot == NULL) {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    }
    coffer_str_copy(st->op_name, sizeof(st->op_name), dot + 1);
    const struct api_service *svc = service_by_prefix(p, target, (size_t)(dot - target));
    if (svc == NULL) {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    }
    st->svc = svc;
    st->op = api_service_find_op(svc, dot + 1, strlen(dot + 1));
    if (st->op == NULL) {
        return coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    }
    return COFFER_OK;
}

static coffer_err pipeline_authenticate(struct pipeline *p, const struct http_request_view *req,
                                        struct request_state *st)
{
    struct sigv4_request sreq = {
        .method = req->method,
        .path = req->path,
        .query = req->query,
        .headers = req->headers,
        .n_headers = req->n_headers,
        .body = req->body,
    };
    /*
     * The credential scope names the service; it must agree with the routed target. The scope is
     * read here only when routing left the service open or the service is global (IAM accepts
     * whichever region the client scoped its signature to); sigv4_verify checks it either way.
     */
    const char *service = st->svc ? st->svc->signing_name : NULL;
    bool global = st->svc != NULL && st->svc->global;
    const char *auth = http_request_header(req, "Authorization");
    struct sigv4_authorization parsed;
    bool scoped = (service == NULL || global) && auth != NULL &&
                  sigv4_parse_authorization(coffer_cursor_from_str(auth), &parsed) == COFFER_OK;
    if (service == NULL && scoped) {
        const struct api_service *by_scope = service_by_signing_name(p, parsed.service);
        service = by_scope ? by_scope->signing_name : NULL;
    }
    if (service == NULL && p->n_services > 0) {
        /* No service claims the request: it is verified as one for the first registered. */
        service = p->services[0]->signing_name;
    }
    char scope_region[PIPELINE_MAX_SCOPE_REGION + 1];
    const char *region = p->region;
    if (global && scoped && parsed.region.len > 0 && parsed.region.len <= PIPELINE_MAX_SCOPE_REGION) {
        memcpy(scope_region, parsed.region.ptr, parsed.region.len);
        scope_region[parsed.region.len] = '\0';
        region = scope_region;
    }
    struct sigv4_verify_opts opts = {
        .region = region,
        .service = service ? service : "",
        .now_s = st->call.now_ms / 1000,
        .max_skew_s = p->max_skew_s,
    };
    struct sigv4_identity who;
    memset(&who, 0, sizeof(who));
    coffer_buf_init(&who.secret, true);
    coffer_err rc = sigv4_verify(&sreq, &opts, p->lookup, p->lookup_ctx, &who);
    if (rc == COFFER_ERR_INVALID_SIGNATURE && !global && st->svc != NULL &&
        st->svc->scope_region_ok != NULL && st->op != NULL && auth != NULL) {
        /*
         * Scoped to another region: a service may take some operations so (KMS: a ReplicateKey
         * a client sends to the replica's endpoint signed for the primary's region). Only read on
         * this failure path, so a request scoped to this region pays nothing for it.
         */
        struct sigv4_authorization other;
        if (sigv4_parse_authorization(coffer_cursor_from_str(auth), &other) == COFFER_OK &&
            other.region.len > 0 && other.region.len <= PIPELINE_MAX_SCOPE_REGION &&
            !coffer_cursor_eq_str(other.region, p->region)) {
            memcpy(st->scope_region, other.region.ptr, other.region.len);
            st->scope_region[other.region.len] = '\0';
            if (st->svc->scope_region_ok(st->svc->state, st->op->name, st->scope_region)) {
                sigv4_identity_clean(&who);
                memset(&who, 0, sizeof(who));
                coffer_buf_init(&who.secret, true);
                opts.region = st->scope_region;
                coffer_clear_err();
                rc = sigv4_verify(&sreq, &opts, p->lookup, p->lookup_ctx, &who);
                st->call.scope_region = rc == COFFER_OK ? st->scope_region : NULL;
            }
        }
    }
    if (who.access_key_id[0]) {
        coffer_str_copy(st->caller.access_key_id, sizeof(st->caller.access_key_id), who.access_key_id);
    }
    if (rc == COFFER_OK && api_principal_kind_parse(who.principal_type) == API_PRINCIPAL_UNKNOWN) {
        /* A credential record of no kind this server knows cannot be authorized: refused. */
        rc = coffer_fail(COFFER_ERR_UNRECOGNIZED_CLIENT, "%s",
                         coffer_err_default_message(COFFER_ERR_UNRECOGNIZED_CLIENT));
    }
    if (rc == COFFER_OK) {
        coffer_str_copy(st->caller.account_id, sizeof(st->caller.account_id), who.account_id);
        coffer_str_copy(st->caller.principal_arn, sizeof(st->caller.principal_arn), who.principal_arn);
        coffer_str_copy(st->caller.principal_id, sizeof(st->caller.principal_id), who.principal_id);
        st->caller.principal_kind = api_principal_kind_parse(who.principal_type);
        coffer_str_copy(st->caller.role_arn, sizeof(st->caller.role_arn), who.role_arn);
        st->caller.token_issued_at = who.issued_at;
        st->authenticated = true;
    }
    sigv4_identity_clean(&who);
    return rc;
}

static coffer_err pipeline_parse_body(const struct http_request_view *req, json_t **out)
{
    if (req->body.len == 0) {
        *out = json_object();
        return COFFER_OK;
    }
    /* Not JSON, not an object, or a repeated member: all one SerializationException. */
    json_t *j = json_in_object(req->body.ptr, req->body.len);
    if (j == NULL) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "%s",
                           "Start of structure or map found where not expected.");
    }
    *out = j;
    return COFFER_OK;
}

static void pipeline_health(const struct http_request_view *req, struct http_response *resp)
{
    resp->status = 200;
    resp->content_type = "application/json";
    if (coffer_buf_append_str(&resp->body, "{\"status\":\"ok\"}") != COFFER_OK) {
        resp->status = 500;
    }
}

/* The answer of a request whose event was in a batch the trail refused: as when it is refused at once. */
static void pipeline_refuse(struct http_response *resp, const struct api_service *svc, bool query)
{
    log_error("audit trail write failed; refusing request %s", resp->request_id);
    coffer_fail(COFFER_ERR_AUDIT, "%s", "The request could not be recorded in the audit trail.");
    if (query) {
        set_error_query(resp, svc, COFFER_ERR_AUDIT, resp->request_id);
    } else {
        set_error(resp, svc, COFFER_ERR_AUDIT);
    }
}

static void pipeline_refuse_json(struct http_response *resp, const void *svc)
{
    pipeline_refuse(resp, svc, false);
}

static void pipeline_refuse_query(struct http_response *resp, const void *svc)
{
    pipeline_refuse(resp, svc, true);
}

void pipeline_handle(void *ctx, const struct http_request_view *req, struct http_response *resp)
{
    struct pipeline *p = ctx;
    struct request_state st;
    memset(&st, 0, sizeof(st));
    json_t *input = NULL;
    coffer_err rc = COFFER_OK;
    char saved_message[512] = "";

    if (strcmp(req->path, "/health") == 0 &&
        (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)) {
        pipeline_health(req, resp);
        return;
    }
    coffer_clear_err();
    st.call.now_ms = coffer_now_ms();
    st.p = p;
    if (crypto_uuid_v4_many(st.ids, 3) != COFFER_OK) {
        set_error(resp, NULL, COFFER_ERR_INTERNAL);
        return;
    }
    st.request_id = st.ids[0];
    coffer_str_copy(resp->request_id, sizeof(resp->request_id), st.request_id);
    st.caller.source_ip = req->source_ip;
    const char *ua = http_request_header(req, "User-Agent");
    st.caller.user_agent = ua ? ua : "";
    st.caller.secure_transport = req->secure;
    st.call.caller = &st.caller;
    st.call.region = p->region;
    st.call.request_id = st.request_id;
    st.call.event_id = st.ids[1];

    coffer_err route_rc = COFFER_OK;
    if (strcmp(req->method, "POST") != 0 || strcmp(req->path, "/") != 0) {
        route_rc = coffer_fail(COFFER_ERR_UNKNOWN_OPERATION, "%s", "");
    } else {
        route_rc = pipeline_route(p, req, &st);
        if (route_rc != COFFER_OK) {
            snprintf(st.route_message, sizeof(st.route_message), "%s", coffer_err_message(route_rc));
        }
    }
    input = st.form; /* owned here from now on */
    st.form = NULL;
    /* Authenticate before revealing anything about operations. */
    TRY_OUT(pipeline_authenticate(p, req, &st));
    if (route_rc != COFFER_OK) {
        rc = coffer_fail(route_rc, "%s",
                         route_rc == COFFER_ERR_UNKNOWN_OPERATION && !st.query ? "" : st.route_message);
        goto out;
    }
    st.call.operation = st.op->name;
    if (p->quota != NULL && (st.op->flags & API_OP_KEY_QUOTA)) {
        st.call.quota_take = pipeline_quota_take;
        st.call.quota_ctx = &st;
    } else if (p->quota != NULL) {
        /* An operation's bucket is the service's: KMS's TagResource is not another service's. */
        char own[160];
        const char *bucket = "crypto";
        if (!(st.op->flags & API_OP_CRYPTO)) {
            snprintf(own, sizeof(own), "%s:%s", st.svc->signing_name, st.op->name);
            bucket = own;
        }
        if (!quota_take(p->quota, st.caller.account_id, bucket, st.op->quota_rps, coffer_monotonic_ns())) {
            FAIL_OUT(COFFER_ERR_THROTTLING, "%s", api_service_error(st.svc, COFFER_ERR_THROTTLING).message);
        }
    }
    if (!st.query) {
        TRY_OUT(pipeline_parse_body(req, &input));
    }
    st.call.input = input;
    store_precommit_set(audit_precommit, &st);
    rc = st.op->handler(st.svc->state, &st.call);
    store_precommit_set(NULL, NULL);
    if (st.precommit_failed && !st.event_written) {
        /* Whatever the handler made of its failed commit, the answer is that the trail refused. */
        rc = coffer_fail(COFFER_ERR_AUDIT, "%s", "The request could not be recorded in the audit trail.");
    }
out:
    if (rc != COFFER_OK) {
        snprintf(saved_message, sizeof(saved_message), "%s", api_service_error_message(st.svc, rc));
    }
    bool held = false;
    if (!audit_record(p, &st, rc, saved_message, req->can_hold, &held)) {
        rc = coffer_fail(COFFER_ERR_AUDIT, "%s", "The request could not be recorded in the audit trail.");
        snprintf(saved_message, sizeof(saved_message), "%s", api_service_error_message(st.svc, rc));
    }
    if (rc != COFFER_OK) {
        if (rc >= COFFER_ERR_NOMEM && api_service_error(st.svc, rc).status >= 500) {
            log_error("request %s %s failed: %s (%s)", st.request_id, st.op_name, saved_message,
                      coffer_last_location());
        }
        coffer_fail(rc, "%s", saved_message);
        if (st.query) {
            set_error_query(resp, query_error_service(p, &st), rc, st.request_id);
        } else {
            set_error(resp, st.svc, rc);
        }
    } else if (st.query) {
        resp->status = 200;
        resp->content_type = QUERY_XML_CONTENT_TYPE;
        if (query_xml_response(st.op->name, st.svc->xml_namespace, st.call.output, st.request_id,
                               &resp->body) != COFFER_OK) {
            set_error_query(resp, query_error_service(p, &st), COFFER_ERR_INTERNAL, st.request_id);
        }
    } else {
        resp->status = 200;
        resp->content_type = JSON_CONTENT_TYPE;
        json_t *output = st.call.output ? st.call.output : json_object();
        if (json_out_compact(output, &resp->body) != COFFER_OK) {
            set_error(resp, st.svc, COFFER_ERR_NOMEM);
        }
        if (output != st.call.output) {
            json_decref(output);
        }
    }
    if (held) {
        /* The event waits in this worker's batch: the server sends the reply after
         * pipeline_pass_end wrote it, or the refusal if it could not. */
        resp->refuse = st.query ? pipeline_refuse_query : pipeline_refuse_json;
        resp->refuse_arg = st.query ? query_error_service(p, &st) : st.svc;
    }
    json_wipe_sensitive(st.svc, st.call.output);
    json_decref(st.call.output);
    json_decref(st.call.audit_request);
    json_decref(st.call.audit_response);
    json_decref(st.call.audit_resources);
    for (size_t i = 0; i < sizeof(st.recorded) / sizeof(st.recorded[0]); i++) {
        json_decref(st.recorded[i]);
    }
    if (audit_limiter_due(p->unauth_limit, st.call.now_ms)) {
        /* The summary is not this request's event: a failure is logged by the flush, which keeps
         * the count for the next due flush, so the request's answer does not depend on it. */
        (void)audit_limiter_flush(p->unauth_limit, p->trail, p->region, st.call.now_ms, false);
    }
    json_wipe_sensitive(st.svc, input);
    json_decref(input);
}
