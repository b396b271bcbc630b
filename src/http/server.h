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
    bool can_hold; /* the server keeps a reply with resp->refuse set until pass_end (see below) */
};

/* Looks up a header by case-insensitive name; NULL when absent. */
const char *http_request_header(const struct http_request_view *req, const char *name);

struct http_response {
    int status;
    const char *content_type; /* static string */
    char request_id[40];      /* x-amzn-RequestId, when set */
    coffer_buf body;          /* owned by the server; handler appends */
    /*
     * Set by a handler (only when req->can_hold) whose answer may go out only once work shared
     * by the requests of one turn of the event loop is done (cofferd: their audit events,
     * written in one batch). The reply is held until the end of that turn, when the server calls
     * pass_end once; if pass_end fails, refuse(resp, refuse_arg) rewrites the response first.
     */
    void (*refuse)(struct http_response *resp, const void *refuse_arg);
    const void *refuse_arg;
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
    /*
     * Optional. Called on the worker thread at the end of every turn of its event loop in which a
     * handler held a reply, before any held reply goes out; false: every reply held in that turn
     * is refused (http_response.refuse). Without it replies are never held.
     */
    bool (*pass_end)(void *handler_ctx);
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
