/*
 * How a service plugs into a daemon. A service folder exports one `struct api_module`; the
 * daemon (server/services.c) lists the modules it serves, starts each with what it lends every
 * service (api_host), registers the api_service the module returns with the request pipeline
 * and the scheduler, and stops it at shutdown:
 *
 *   cofferd -> module.start(host) -> api_service (ops, errors, sensitive members, jobs)
 *           -> pipeline + scheduler -> module.stop
 *
 * Nothing here is transport: a module never sees HTTP, and the daemon never sees a service's
 * types (its settings block is passed through untyped).
 */
#ifndef COFFER_API_MODULE_H
#define COFFER_API_MODULE_H

#include <jansson.h>

#include "api/api.h"

struct store;
struct seal;
struct authz;
struct audit_trail;

/*
 * Records an event a service produces on its own, outside any request (KMS: the sweeper's
 * DeleteKey), in the daemon's audit trail. `event` is borrowed. A failure means the event is
 * not on record: the service must not commit what it describes.
 */
typedef coffer_err (*api_event_sink)(void *ctx, json_t *event);

/* What the daemon lends a service; every pointer is borrowed and outlives the service. */
struct api_host {
    struct store *store;
    struct seal *seal;   /* the barrier for everything secret the service persists */
    const char *region;  /* the region this daemon answers for */
    struct authz *authz; /* the shared authorizer (iam/authz.h); NULL: authorization is off */
    api_event_sink record;
    void *record_ctx;
    /* The trail `record` writes to (audit/audit.h), for events on a service's hot path written
     * with the line writer instead of as trees; NULL: everything goes to `record`. */
    struct audit_trail *trail;
    const void *settings; /* the service's own settings block from the configuration; NULL: defaults */
    /* The daemon's data directory, where a service may keep files of its own (Parameter Store:
     * events/ssm.jsonl); NULL: none (tests), the service keeps no files. */
    const char *data_dir;
    /*
     * The in-process interface of a service started before this one (api_module.interface),
     * by module name ("kms" gives a const struct kms_api *, kms/kms.h); NULL when there is no
     * such service or it has none. Call during start only; the result outlives the service.
     */
    const void *(*lookup)(void *lookup_ctx, const char *module_name);
    void *lookup_ctx;
};

struct api_module {
    const char *name; /* for logs: "kms" */
    /* Creates the service; on success *instance is its state and *api its declaration (valid
     * until stop). Called once, before any request. */
    coffer_err (*start)(const struct api_host *host, void **instance, const struct api_service **api);
    /* Frees the service; no request or job is in flight. Accepts NULL. */
    void (*stop)(void *instance);
    /* What other services may call in-process (api_host.lookup); NULL: nothing. */
    const void *(*interface)(void *instance);
};

#endif
