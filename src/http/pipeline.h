/*
 * The AWS request pipeline: everything between the listener and a service handler.
 *
 *   route (X-Amz-Target) -> SigV4 -> quota -> JSON body -> handler -> audit -> response
 *
 * Errors anywhere become the AWS JSON 1.1 error body ({"__type","message"}) with the name and
 * status the routed service declares (api_service.errors; err.h's defaults otherwise); the
 * service's sensitive members are wiped after use and kept out of the trail. Every request,
 * allowed, denied or failed, produces an audit event with the service's eventSource, and if
 * the event cannot be written the request is refused. A request that changes anything has
 * its event written before its first commit (a store pre-commit hook installed around the
 * handler), so no change is ever visible without its event; when the outcome then differs
 * (the commit failed, or the handler set audit fields afterwards) a second event of the same
 * request records the final outcome and names the first as superseded. Requests that fail
 * authentication are bounded per source address (audit_limiter) and counted in a summary.
 */
#ifndef COFFER_HTTP_PIPELINE_H
#define COFFER_HTTP_PIPELINE_H

#include "audit/audit.h"
#include "auth/sigv4.h"
#include "api/api.h"
#include "http/server.h"
#include "quota/quota.h"

#define PIPELINE_MAX_SERVICES 8

struct pipeline {
    /* Routed by target prefix, or by signing name for Query services. The first also answers
     * requests no service claims (an unknown X-Amz-Target is verified against its scope). */
    const struct api_service *services[PIPELINE_MAX_SERVICES];
    size_t n_services;
    const char *region;
    sigv4_lookup_fn lookup;
    void *lookup_ctx;
    int max_skew_s;
    quota *quota;                /* may be NULL (no quotas) */
    audit_trail *trail;          /* required */
    audit_limiter *unauth_limit; /* bounds events of requests that fail authentication; NULL: no bound */
};

/*
 * The http_handler_fn of cofferd; ctx is a struct pipeline. When the server can hold the reply
 * (req->can_hold), the request's last event goes into the worker thread's batch instead of
 * being written at once, and the reply is held (resp->refuse set) until pipeline_pass_end.
 */
void pipeline_handle(void *ctx, const struct http_request_view *req, struct http_response *resp);

/*
 * The server's pass_end: writes the calling worker's batch of events (one write(2)). false when
 * the trail refused it: every request of the batch is then answered with the refusal
 * (KMSInternalException, as for an event that cannot be written at once), none with its answer.
 */
bool pipeline_pass_end(void *ctx);

#endif
