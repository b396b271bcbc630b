/*
 * The AWS request pipeline: everything between the listener and a service handler.
 *
 *   route (X-Amz-Target) -> SigV4 -> quota -> JSON body -> handler -> audit -> response
 *
 * Errors anywhere become the AWS JSON 1.1 error body ({"__type","message"}) with the status
 * a client expects; every request, allowed, denied or failed, produces one audit event, and
 * if the event cannot be written the request is refused.
 */
#ifndef COFFER_HTTP_PIPELINE_H
#define COFFER_HTTP_PIPELINE_H

#include "audit/audit.h"
#include "auth/sigv4.h"
#include "http/api.h"
#include "http/server.h"
#include "quota/quota.h"

#define PIPELINE_MAX_SERVICES 8

struct pipeline {
    const struct api_service *services[PIPELINE_MAX_SERVICES];
    size_t n_services;
    const char *region;
    sigv4_lookup_fn lookup;
    void *lookup_ctx;
    int max_skew_s;
    quota *quota;       /* may be NULL (no quotas) */
    audit_trail *trail; /* required */
};

/* The http_handler_fn of cofferd; ctx is a struct pipeline. */
void pipeline_handle(void *ctx, const struct http_request_view *req, struct http_response *resp);

#endif
