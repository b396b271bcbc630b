/*
 * libevent evhttp listener with one event loop per worker thread (see server.h).
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/secret.h"
#include "http/wipe.h"

#define HTTP_STOP_GRACE_MS 2000
#define HTTP_COALESCE_MAX 16384 /* one TLS record of plaintext; larger replies are several anyway */

/*
 * A TLS connection, recorded in its SSL object (ssl_worker_index) so that its close is counted
 * and so that records OpenSSL read ahead are not left unread (http_worker_tls_check).
 */
struct http_tls_conn {
    struct http_worker *w;
    struct bufferevent *bev;
    bool queued;                          /* on w->tls_check */
    LIST_ENTRY(http_tls_conn) check_next; /* in w->tls_check */
};
LIST_HEAD(http_tls_conn_list, http_tls_conn);

struct http_held {
    struct evhttp_request *req;
    struct http_response resp; /* its body owned here until sent */
};

struct http_worker {
    struct http_server *server;
    int index;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct event *stop_ev;               /* activated from another thread to begin the stop */
    struct event *drain_ev;              /* polls until connections are gone or grace expires */
    struct event *pass_ev;               /* activated by the first held reply of a turn (http_worker_hold) */
    struct http_held *held;              /* replies waiting for the end of this turn */
    struct event *tls_check_ev;          /* activated by the first connection put on tls_check */
    struct http_tls_conn_list tls_check; /* connections that read a TLS record in this turn */
    size_t n_held, cap_held;
    int connections; /* open connections on this worker (worker thread only) */
    int max_connections;
    bool accepting;
    bool stopping;
    int drain_ticks;
};

struct http_server {
    struct http_server_config cfg;
    struct http_worker *workers;
    int port;
    atomic_bool stop_requested;
};

/* The SSL object of each connection records its http_tls_conn. */
static int ssl_worker_index = -1;
static pthread_once_t ssl_index_once = PTHREAD_ONCE_INIT;

static void http_worker_conn_closed(struct http_worker *w)
{
    w->connections--;
    if (!w->accepting && !w->stopping && w->connections < w->max_connections) {
        evconnlistener_enable(w->listener);
        w->accepting = true;
    }
}

static void ssl_exdata_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct http_tls_conn *c = ptr;
    if (c == NULL) {
        return;
    }
    if (c->queued) {
        LIST_REMOVE(c, check_next);
    }
    http_worker_conn_closed(c->w);
    free(c);
}

/*
 * Connections read with OpenSSL's read-ahead: one read(2) takes whatever the socket holds, where
 * reading record by record took two (the 5-byte header, then the body). But libevent 2.1's
 * OpenSSL bufferevent stops reading once the current record's plaintext is consumed
 * (SSL_pending), not when OpenSSL's buffer is empty (SSL_has_pending): a request sent as
 * several records in one segment (headers and body written separately, a body over 16 KiB,
 * pipelined requests) would wait for the client's next packet with the rest already here. So
 * every connection that read a record in a turn of the loop is checked once that read is over
 * (http_worker_tls_check), and one whose SSL still holds bytes has its read callback run again:
 * it takes them from OpenSSL's buffer, and a partial record costs one read(2) that finds nothing.
 */
/* Puts c on its worker's list for the end of the current callback (http_worker_tls_check). */
static void http_tls_conn_queue(struct http_tls_conn *c)
{
    if (c == NULL || c->queued) {
        return;
    }
    struct http_worker *w = c->w;
    bool first = LIST_EMPTY(&w->tls_check);
    LIST_INSERT_HEAD(&w->tls_check, c, check_next);
    c->queued = true;
    if (first) {
        /* Runs after the callback that is running now: a read in it is over by then. */
        event_active(w->tls_check_ev, 0, 1);
    }
}

static void http_tls_record_seen(int write_p, int version, int content_type, const void *buf, size_t len,
                                 SSL *ssl, void *arg)
{
    if (!write_p && content_type == SSL3_RT_HEADER) {
        http_tls_conn_queue(SSL_get_ex_data(ssl, ssl_worker_index));
    }
}

/*
 * The reply is written. evhttp does not read while a request is answered (the bufferevent
 * reads nothing while disabled, so a check then finds the bytes and cannot take them) and
 * enables reading again right after this callback: records read ahead meanwhile (a pipelined
 * request) are taken then.
 */
static void http_tls_reply_done(struct evhttp_request *r, void *arg)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(r);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (ssl != NULL && SSL_has_pending(ssl)) {
        http_tls_conn_queue(SSL_get_ex_data(ssl, ssl_worker_index));
    }
}

static void http_worker_tls_check(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    struct http_tls_conn *c;
    while ((c = LIST_FIRST(&w->tls_check)) != NULL) {
        LIST_REMOVE(c, check_next);
        c->queued = false;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl != NULL && SSL_has_pending(ssl)) {
            event_active(&c->bev->ev_read, EV_READ, 1);
        }
    }
}

static void ssl_index_init(void)
{
    ssl_worker_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_exdata_free);
    /* libevent copies bodies between its chains (reading, evhttp splitting a request off the
     * connection buffer) and frees chains without clearing them: every block it frees is wiped.
     * The functions wrap malloc, so blocks allocated before this call are freed correctly. */
    event_set_mem_functions(malloc, coffer_wipe_realloc, coffer_wipe_free);
}

static void http_worker_conn_opened(struct http_worker *w)
{
    w->connections++;
    if (w->accepting && w->connections >= w->max_connections) {
        /* At our share of the cap: leave further connections in the kernel backlog. */
        evconnlistener_disable(w->listener);
        w->accepting = false;
    }
}

static void plain_filter_free(void *ctx)
{
    http_worker_conn_closed(ctx);
}

static enum bufferevent_filter_result pass_through(struct evbuffer *src, struct evbuffer *dst,
                                                   ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                   void *ctx)
{
    evbuffer_add_buffer(dst, src);
    return BEV_OK;
}

/* evhttp asks us for the bufferevent of each accepted connection. */
static struct bufferevent *http_worker_bev(struct event_base *base, void *arg)
{
    struct http_worker *w = arg;
    struct bufferevent *bev;
    if (w->server->cfg.tls != NULL) {
        struct http_tls_conn *c = calloc(1, sizeof(*c));
        SSL *ssl = c != NULL ? SSL_new(w->server->cfg.tls) : NULL;
        if (ssl == NULL) {
            free(c);
            return NULL;
        }
        bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (bev == NULL) {
            SSL_free(ssl);
            free(c);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        c->w = w;
        c->bev = bev;
        SSL_set_ex_data(ssl, ssl_worker_index, c);
        SSL_set_read_ahead(ssl, 1);
        SSL_set_msg_callback(ssl, http_tls_record_seen);
    } else {
        struct bufferevent *sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (sock == NULL) {
            return NULL;
        }
        bev = bufferevent_filter_new(sock, pass_through, pass_through, BEV_OPT_CLOSE_ON_FREE,
                                     plain_filter_free, w);
        if (bev == NULL) {
            bufferevent_free(sock);
            return NULL;
        }
    }
    http_worker_conn_opened(w);
    return bev;
}

const char *http_request_header(const struct http_request_view *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

static const char *http_status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static void http_send_simple(struct evhttp_request *r, int status, const char *type, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        evbuffer_add_printf(b, "{\"__type\":\"%s\",\"message\":\"%s\"}", type, msg);
    }
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/x-amz-json-1.1");
    evhttp_request_set_on_complete_cb(r, http_tls_reply_done, NULL);
    evhttp_send_reply(r, status, http_status_reason(status), b);
    if (b != NULL) {
        evbuffer_free(b);
    }
}

/*
 * Sends what evhttp queued for a TLS connection now instead of on the next turn of the loop.
 * evhttp leaves a reply in the bufferevent's output and arms its write event: waiting for
 * EPOLLOUT costs an epoll_ctl to watch for it, an epoll_wait and an epoll_ctl to stop watching,
 * per response, for a socket that is almost always writable. Running the write callback at once
 * does what epoll would have triggered, and the changelist folds the add and the delete of the
 * write event into no epoll_ctl at all; a socket that cannot take everything keeps the event
 * armed as before. The headers and a small body are made one extent first, so that the reply
 * goes out as one TLS record, in one write(2).
 */
static void http_worker_send_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) <= HTTP_COALESCE_MAX) {
        http_evbuf_coalesce_secret(out);
    }
    if (event_pending(&bev->ev_write, EV_WRITE, NULL)) {
        event_active(&bev->ev_write, EV_WRITE, 1);
    }
}

/* Sends `resp` as the answer to `r`; the body is handed to libevent (resp->body is left empty). */
static void http_worker_reply(struct http_worker *w, struct evhttp_request *r, struct http_response *resp)
{
    struct evkeyvalq *out_hdrs = evhttp_request_get_output_headers(r);
    evhttp_add_header(out_hdrs, "Content-Type", resp->content_type);
    if (resp->request_id[0]) {
        evhttp_add_header(out_hdrs, "x-amzn-RequestId", resp->request_id);
    }
    if (w->stopping) {
        evhttp_add_header(out_hdrs, "Connection", "close");
    }
    /* Fetched now: a connection that failed while the reply was held is gone (NULL), and
     * evhttp_send_reply then only frees the request. */
    struct evhttp_connection *conn = evhttp_request_get_connection(r);
    /* The body goes to libevent by reference, never copied into its chains: the cleanup wipes
     * and frees it once it is sent (or the connection dropped). */
    struct evbuffer *ob = evbuffer_new();
    if (ob == NULL || http_evbuf_add_secret(ob, &resp->body) != COFFER_OK) {
        if (ob != NULL) {
            evbuffer_free(ob);
        }
        http_send_simple(r, 500, coffer_err_aws_type(COFFER_ERR_NOMEM), "out of memory");
        return;
    }
    if (conn != NULL && w->server->cfg.tls != NULL) {
        evhttp_request_set_on_complete_cb(r, http_tls_reply_done, NULL);
    }
    evhttp_send_reply(r, resp->status, http_status_reason(resp->status), ob);
    evbuffer_free(ob);
    if (conn != NULL && w->server->cfg.tls != NULL) {
        /* The connection outlives evhttp_send_reply: it only queues the reply. */
        http_worker_send_now(evhttp_connection_get_bufferevent(conn));
    }
}

/*
 * Keeps a reply until the end of this turn of the loop (http_worker_pass_end). The pass event
 * is activated with the first held reply: it runs after the callbacks already queued in this
 * turn, so every request read in the turn is handled (its audit event added to the worker's
 * batch) before the batch is written and the replies go out.
 */
static coffer_err http_worker_hold(struct http_worker *w, struct evhttp_request *r,
                                   struct http_response *resp)
{
    if (w->n_held == w->cap_held) {
        size_t cap = w->cap_held ? w->cap_held * 2 : 64;
        struct http_held *h = realloc(w->held, cap * sizeof(*h));
        if (h == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        w->held = h;
        w->cap_held = cap;
    }
    w->held[w->n_held].req = r;
    w->held[w->n_held].resp = *resp;
    w->n_held++;
    coffer_buf_init(&resp->body, true); /* moved: the caller's copy is empty */
    if (w->n_held == 1) {
        event_active(w->pass_ev, 0, 1);
    }
    return COFFER_OK;
}

/* End of a turn: the handler's shared work (pass_end), then the held replies, refused if it failed. */
static void http_worker_pass_end(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    if (w->n_held == 0) {
        return;
    }
    bool ok = w->server->cfg.pass_end(w->server->cfg.handler_ctx);
    /* The list is taken whole: a reply held while these go out (nothing in libevent calls back
     * from evhttp_send_reply today) starts a list of its own for its own turn. */
    struct http_held *held = w->held;
    size_t n = w->n_held, cap = w->cap_held;
    w->held = NULL;
    w->n_held = w->cap_held = 0;
    for (size_t i = 0; i < n; i++) {
        struct http_held *h = &held[i];
        if (!ok) {
            h->resp.refuse(&h->resp, h->resp.refuse_arg);
        }
        http_worker_reply(w, h->req, &h->resp);
        coffer_buf_free(&h->resp.body);
    }
    if (w->held == NULL) {
        w->held = held; /* kept for the next turn */
        w->cap_held = cap;
    } else {
        free(held);
    }
}

static void http_worker_request(struct evhttp_request *r, void *arg)
{
    struct http_worker *w = arg;
    struct http_request_view view;
    struct http_response resp;
    memset(&view, 0, sizeof(view));
    memset(&resp, 0, sizeof(resp));
    /* Responses may hold plaintext (Decrypt, GenerateDataKey, CreateAccessKey): a secret buffer
     * is wiped whenever it grows and when it is released. */
    coffer_buf_init(&resp.body, true);
    char *path = NULL;
    uint8_t *body_copy = NULL;
    size_t body_len = 0;

    switch (evhttp_request_get_command(r)) {
    case EVHTTP_REQ_GET:
        view.method = "GET";
        break;
    case EVHTTP_REQ_POST:
        view.method = "POST";
        break;
    case EVHTTP_REQ_PUT:
        view.method = "PUT";
        break;
    case EVHTTP_REQ_DELETE:
        view.method = "DELETE";
        break;
    case EVHTTP_REQ_HEAD:
        view.method = "HEAD";
        break;
    default:
        view.method = "OTHER";
        break;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    path = evhttp_uridecode(raw_path && raw_path[0] ? raw_path : "/", 0, NULL);
    view.path = path ? path : "/";
    view.query = query ? query : "";

    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(r);
    struct evkeyval *h;
    TAILQ_FOREACH(h, hdrs, next)
    {
        if (view.n_headers == HTTP_MAX_HEADERS) {
            http_send_simple(r, 400, "ValidationException", "too many headers");
            goto out;
        }
        view.headers[view.n_headers].name = h->key;
        view.headers[view.n_headers].value = h->value;
        view.n_headers++;
    }

    struct evbuffer *in = evhttp_request_get_input_buffer(r);
    body_len = evbuffer_get_length(in);
    if (body_len > 0) {
        /* Bodies may hold plaintext: copy into locked memory, wipe the evbuffer's copy. */
        body_copy = coffer_secret_alloc(body_len);
        if (body_copy == NULL) {
            http_send_simple(r, 500, coffer_err_aws_type(COFFER_ERR_NOMEM), "out of memory");
            goto out;
        }
        evbuffer_copyout(in, body_copy, body_len);
        http_evbuf_wipe(in);
        evbuffer_drain(in, body_len);
    }
    view.body = coffer_cursor_from(body_copy, body_len);

    struct evhttp_connection *conn = evhttp_request_get_connection(r);
    char *peer = NULL;
    ev_uint16_t peer_port = 0;
    if (conn != NULL) {
        evhttp_connection_get_peer(conn, &peer, &peer_port);
    }
    view.source_ip = peer ? peer : "";
    view.secure = w->server->cfg.tls != NULL;

    resp.status = 200;
    resp.content_type = "application/x-amz-json-1.1";
    view.can_hold = w->server->cfg.pass_end != NULL;
    w->server->cfg.handler(w->server->cfg.handler_ctx, &view, &resp);
    if (resp.refuse != NULL && view.can_hold) {
        if (http_worker_hold(w, r, &resp) == COFFER_OK) {
            goto out; /* the reply now belongs to the held list */
        }
        /* No memory to hold it: refused now. Its part of the turn's work may still be done at
         * the end of the turn (an audit event without its answer, never an answer without it). */
        resp.refuse(&resp, resp.refuse_arg);
    }
    http_worker_reply(w, r, &resp);
out:
    coffer_buf_free(&resp.body); /* still ours when the reply was not sent: wiped here */
    coffer_secret_free(body_copy, body_len);
    free(path);
}

static void http_worker_drain(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    w->drain_ticks++;
    if (w->connections <= 0 || w->drain_ticks * 50 >= HTTP_STOP_GRACE_MS) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = {0, 50 * 1000};
    event_add(w->drain_ev, &tv);
}

static void http_worker_begin_stop(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    w->stopping = true;
    if (w->accepting) {
        evconnlistener_disable(w->listener);
        w->accepting = false;
    }
    /* Idle keep-alive connections would hold the drain open until the grace period: the
     * timeout is shortened so they close promptly while requests in flight still finish. */
    struct timeval tv = {0, 200 * 1000};
    evhttp_set_timeout_tv(w->http, &tv);
    w->drain_ticks = 0;
    http_worker_drain(-1, 0, w);
}

static void *http_worker_main(void *arg)
{
    struct http_worker *w = arg;
    event_base_dispatch(w->base);
    /* A turn cut short by the exit leaves its held replies: their work is finished (the audit
     * events written) and the replies queued, though the connections close unsent. */
    http_worker_pass_end(-1, 0, w);
    return NULL;
}

static coffer_err http_worker_init(struct http_server *s, struct http_worker *w, const struct sockaddr *sa,
                                   socklen_t salen)
{
    const struct http_server_config *cfg = &s->cfg;
    w->server = s;
    /* The changelist folds the add/del pairs libevent makes around each request into one
     * epoll_ctl (or none): a measurable share of a small request's cost. */
    struct event_config *ecfg = event_config_new();
    if (ecfg != NULL) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    w->http = w->base ? evhttp_new(w->base) : NULL;
    if (w->http == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "cannot create event loop");
    }
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->max_body);
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)cfg->max_headers);
    struct timeval tv = {cfg->timeout_s, 0};
    evhttp_set_timeout_tv(w->http, &tv);
    evhttp_set_gencb(w->http, http_worker_request, w);
    evhttp_set_bevcb(w->http, http_worker_bev, w);
    evhttp_set_default_content_type(w->http, "application/x-amz-json-1.1");

    w->listener = evconnlistener_new_bind(w->base, NULL, NULL,
                                          LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE |
                                              LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
                                          1024, sa, (int)salen);
    if (w->listener == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "cannot listen on %s:%d: %s", cfg->listen_host,
                           cfg->listen_port, strerror(errno));
    }
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. Without it, small
     * responses wait for the client's delayed ACK (~40 ms per request on keep-alive). */
    int one = 1;
    /* A failure only costs latency (the delayed-ACK wait above), never a wrong answer: not fatal. */
    (void)setsockopt(evconnlistener_get_fd(w->listener), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (evhttp_bind_listener(w->http, w->listener) == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "cannot bind HTTP listener");
    }
    w->max_connections = cfg->max_connections / cfg->workers;
    if (w->max_connections < 1) {
        w->max_connections = 1;
    }
    w->stop_ev = event_new(w->base, -1, 0, http_worker_begin_stop, w);
    w->drain_ev = evtimer_new(w->base, http_worker_drain, w);
    w->pass_ev = event_new(w->base, -1, 0, http_worker_pass_end, w);
    w->tls_check_ev = event_new(w->base, -1, 0, http_worker_tls_check, w);
    LIST_INIT(&w->tls_check);
    if (w->stop_ev == NULL || w->drain_ev == NULL || w->pass_ev == NULL || w->tls_check_ev == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "cannot create events");
    }
    return COFFER_OK;
}

static coffer_err http_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (strcmp(host, "localhost") == 0) {
        host = "127.0.0.1";
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return COFFER_OK;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_CONFIG, "listen address must be an IP address or localhost: %s", host);
}

coffer_err http_server_start(const struct http_server_config *cfg, http_server **out)
{
    coffer_err rc = COFFER_OK;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    struct http_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    s->cfg = *cfg;
    if (s->cfg.workers < 1) {
        s->cfg.workers = 1;
    }
    pthread_once(&ssl_index_once, ssl_index_init);
    evthread_use_pthreads();
    s->workers = calloc((size_t)s->cfg.workers, sizeof(*s->workers));
    if (s->workers == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(http_resolve(cfg->listen_host, cfg->listen_port, &ss, &sslen));
    for (int i = 0; i < s->cfg.workers; i++) {
        s->workers[i].index = i;
        TRY_OUT(http_worker_init(s, &s->workers[i], (struct sockaddr *)&ss, sslen));
        if (i == 0) {
            /* With port 0 the first bind picks a port; the others join it. */
            struct sockaddr_storage bound;
            socklen_t blen = sizeof(bound);
            getsockname(evconnlistener_get_fd(s->workers[0].listener), (struct sockaddr *)&bound, &blen);
            s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                        : ((struct sockaddr_in *)&bound)->sin_port);
            if (ss.ss_family == AF_INET6) {
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)s->port);
            } else {
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)s->port);
            }
        }
    }
    for (int i = 0; i < s->cfg.workers; i++) {
        struct http_worker *w = &s->workers[i];
        evconnlistener_enable(w->listener);
        w->accepting = true;
        if (pthread_create(&w->thread, NULL, http_worker_main, w) != 0) {
            FAIL_OUT(COFFER_ERR_INTERNAL, "cannot start worker thread");
        }
    }
    *out = s;
    return COFFER_OK;
out:
    http_server_stop(s);
    http_server_free(s);
    return rc;
}

int http_server_port(const http_server *s)
{
    return s->port;
}

void http_server_stop(http_server *s)
{
    if (s == NULL || atomic_exchange(&s->stop_requested, true)) {
        return;
    }
    for (int i = 0; i < s->cfg.workers; i++) {
        if (s->workers && s->workers[i].stop_ev) {
            event_active(s->workers[i].stop_ev, 0, 0);
        }
    }
}

void http_server_free(http_server *s)
{
    if (s == NULL) {
        return;
    }
    for (int i = 0; s->workers && i < s->cfg.workers; i++) {
        struct http_worker *w = &s->workers[i];
        if (w->thread) {
            pthread_join(w->thread, NULL);
        }
        w->stopping = true; /* connections freed below must not re-enable the listener */
        if (w->stop_ev) {
            event_free(w->stop_ev);
        }
        if (w->drain_ev) {
            event_free(w->drain_ev);
        }
        if (w->pass_ev) {
            event_free(w->pass_ev);
        }
        if (w->tls_check_ev) {
            event_free(w->tls_check_ev);
        }
        free(w->held);
        if (w->http) {
            evhttp_free(w->http); /* also frees the bound listener */
        } else if (w->listener) {
            evconnlistener_free(w->listener);
        }
        if (w->base) {
            event_base_free(w->base);
        }
    }
    free(s->workers);
    free(s);
}
