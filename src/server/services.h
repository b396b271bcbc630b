/*
 * The services cofferd serves. Each is a module (api/module.h) that lives in its own folder;
 * registering one is one line in services.c (and linking its library into cofferd_core). The
 * identity services (IAM, STS, CofferAdmin) are not modules: the credential lookup and the
 * authorizer every service uses are built on them, so main.c starts them first.
 */
#ifndef COFFER_SERVER_SERVICES_H
#define COFFER_SERVER_SERVICES_H

#include <stddef.h>

#include "api/module.h"
#include "server/config.h"

/* One registered service: its module and the settings block of the configuration it reads. */
struct server_service {
    const struct api_module *module;
    const void *settings; /* NULL: the module's defaults */
};

/* Fills `out` (room for `max`) with the registered services in order; returns how many there
 * are (more than `max`: only `max` were written). The first answers requests that no service
 * claims (an unknown X-Amz-Target). */
size_t server_services(const struct server_config *cfg, struct server_service *out, size_t max);

/*
 * The daemon: parses argv, serves the registered services plus `extra` (modules a test build
 * links in, e.g. tests/echo; NULL when n_extra is 0) until SIGTERM/SIGINT. Returns the exit
 * status.
 */
int cofferd_main(int argc, char **argv, const struct api_module *const *extra, size_t n_extra);

#endif
