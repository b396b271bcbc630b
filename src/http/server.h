/*
 * The HTTP(S) listener: N worker threads, each with its own libevent loop and its own
 * SO_REUSEPORT listening socket on the same address, so the kernel spreads connections and
 * workers share nothing mutable. Requests are handed to one handler as a plain view
 * (http_request_view); the handler fills an http_response synchronously. Limits: body size,
 * header size, a read/write timeout that also bounds idle and slow-header connections, and a
 * cap on open connections (a worker at its share stops accepting until one closes).
 */
#ifndef COFFER_HTTP_SERVER_H
#define COFFER_HTTP_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth/sigv4.h"
#include "common/buf.h"

#define HTTP_MAX_HEADERS 64

struct http_request_view {
    const char *method;
    const char *path;  /* decoded path without the query */
    const char *query; /* "" when none */
    struct sigv4_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    coffer_cursor body;
    const char *source_ip;
    bool secure;
};

/* Looks up a header by case-insensitive name; NULL when absent. */
const char *http_request_header(const struct http_request_view *req, const char *name);

struct http_response {
    int status;
    const char *content_type; /* static string */
    char request_id[40];      /* x-amzn-RequestId, when set */
    coffer_buf body;          /* owned by the server; handler appends */
};

typedef void (*http_handler_fn)(void *ctx, const struct http_request_view *req, struct http_response *resp);

struct http_server_config {
    const char *listen_host; /* "127.0.0.1", "::1", "0.0.0.0" */
    int listen_port;         /* 0 picks a free port (see http_server_port) */
    int workers;             /* >= 1 */
    SSL_CTX *tls;            /* NULL = plain HTTP (only when the operator asked for it) */
    size_t max_body;         /* bytes */
    size_t max_headers;      /* bytes */
    int timeout_s;           /* read/write/idle */
    int max_connections;     /* total, split across workers */
    http_handler_fn handler;
    void *handler_ctx;
};

typedef struct http_server http_server;

/* Binds and starts the workers. *out is set only on success. */
coffer_err http_server_start(const struct http_server_config *cfg, http_server **out)
    __attribute__((warn_unused_result));
int http_server_port(const http_server *s); /* the bound port */
/*
 * Graceful stop: workers stop accepting, finish the requests in flight and flush their
 * responses (bounded by a grace period), then exit. Safe to call from any thread once.
 */
void http_server_stop(http_server *s);
/* Waits for the workers and frees everything. */
void http_server_free(http_server *s);

#endif
