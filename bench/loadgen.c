/*
 * coffer-loadgen: a small load generator for cofferd's AWS JSON 1.1 API. It keeps N keep-alive
 * HTTP/1.1 connections (TLS through OpenSSL, or plain HTTP) busy with SigV4-signed requests from
 * one thread and one epoll loop, so it stays light next to the server it measures. The signed
 * request is rebuilt once per wall-clock second (X-Amz-Date has one-second resolution) and copied
 * into each connection. Reports requests/s, latency percentiles, and counts by HTTP status, as
 * text and optionally as one JSON line.
 *
 * With --sequence N (or --cycle M) every request has a body of its own: the template's "{n}"
 * becomes the request's number and "{dK}" its K-th digit (zero-padded to the width of the
 * largest number, K from 0 on the left), so N requests create N distinct parameters
 * ("/a{d0}/b{d1}/c{d2}/p{d3}{d4}") or reads spread over M names; each such request is signed on
 * its own.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "awsclient/awsclient.h"
#include "common/secret.h"

#define LG_MAX_CONNS 4096
#define LG_MAX_RESPONSE (1 << 20) /* a response larger than this is an error */
#define LG_ERROR_BODY_MAX 1024    /* bytes of the first error body printed */
#define LG_STATUS_MAX 600
#define LG_REOPEN_NS 50000000u /* failed connections are retried at most every 50 ms */

/* ================================================================================================
 * Configuration
 * ============================================================================================== */

struct lg_config {
    char scheme[8];
    char host[256];
    char port[8];
    char host_header[272];
    const char *ca_file;
    bool plain_http; /* --insecure-http or an http:// endpoint */
    bool no_verify;  /* --no-verify: accept any server certificate (testing only) */
    const char *region;
    const char *service; /* NULL: derived from the target prefix */
    char target[128];    /* "TrentService.Encrypt" */
    char *body;
    struct awsclient_credentials creds; /* secrets wiped in teardown */
    int connections;
    double duration_s;
    long requests; /* 0: run for duration_s */
    double warmup_s;
    bool json;
    long seq_first; /* --sequence-start: the first number */
    long seq_count; /* --sequence N: N numbered requests, then stop; 0: off */
    long cycle;     /* --cycle M: numbers from seq_first cycle over M, for the duration; 0: off */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: coffer-loadgen [options]\n"
            "  --endpoint URL          https://127.0.0.1:8443 (http:// for plain HTTP)\n"
            "  --ca FILE               CA bundle to trust (default: system store)\n"
            "  --insecure-http         plain HTTP, no TLS\n"
            "  --no-verify             do not verify the server certificate (testing only)\n"
            "  --region NAME           us-east-1\n"
            "  --service NAME          signing name (default from the target: kms, ssm, secretsmanager)\n"
            "  --access-key ID --secret-key KEY [--session-token T]\n"
            "  --credentials FILE      AWS shared credentials file (only this file; default: the SDK chain:\n"
            "                          AWS_ACCESS_KEY_ID..., ~/.aws/credentials, ~/.aws/config)\n"
            "  --profile NAME          profile in the files (default: AWS_PROFILE, else 'default')\n"
            "  --connections N         16\n"
            "  --duration SECONDS      10 (ignored with --requests)\n"
            "  --requests N            stop after N measured responses\n"
            "  --warmup SECONDS        0; results during warmup are discarded\n"
            "  --target OP             Encrypt (-> TrentService.Encrypt) or Prefix.Op\n"
            "  --body JSON | --body-file FILE   request body (default {})\n"
            "  --json                  also print one JSON line with the results\n"
            "  --sequence N            N requests, each with its number in the body ({n}, digits {d0}...)\n"
            "  --cycle M               numbered requests cycling over M numbers, for the duration\n"
            "  --sequence-start S      the first number (default 0)\n");
}

static bool parse_endpoint(struct lg_config *c, const char *url)
{
    const char *p = strstr(url, "://");
    if (p == NULL || (size_t)(p - url) >= sizeof(c->scheme)) {
        return false;
    }
    snprintf(c->scheme, sizeof(c->scheme), "%.*s", (int)(p - url), url);
    if (strcmp(c->scheme, "http") != 0 && strcmp(c->scheme, "https") != 0) {
        return false;
    }
    c->plain_http |= strcmp(c->scheme, "http") == 0;
    p += 3;
    size_t n = strcspn(p, "/");
    char hostport[256];
    if (n == 0 || n >= sizeof(hostport)) {
        return false;
    }
    snprintf(hostport, sizeof(hostport), "%.*s", (int)n, p);
    const char *default_port = strcmp(c->scheme, "http") == 0 ? "80" : "443";
    char *colon = hostport[0] == '[' ? strstr(hostport, "]:") : strrchr(hostport, ':');
    if (colon != NULL && hostport[0] == '[') {
        colon++;
    }
    if (colon != NULL) {
        *colon = '\0';
        snprintf(c->port, sizeof(c->port), "%s", colon + 1);
    } else {
        snprintf(c->port, sizeof(c->port), "%s", default_port);
    }
    snprintf(c->host, sizeof(c->host), "%s", hostport);
    /* botocore: lowercase host, plus :port when it is not the scheme default */
    for (char *h = c->host; *h; h++) {
        *h = (char)((*h >= 'A' && *h <= 'Z') ? *h + 32 : *h);
    }
    if (strcmp(c->port, default_port) == 0) {
        snprintf(c->host_header, sizeof(c->host_header), "%s", c->host);
    } else {
        snprintf(c->host_header, sizeof(c->host_header), "%s:%s", c->host, c->port);
    }
    if (c->host[0] == '[') { /* connect to the bare IPv6 address */
        memmove(c->host, c->host + 1, strlen(c->host));
        c->host[strcspn(c->host, "]")] = '\0';
    }
    return true;
}

/* Explicit keys win; else --credentials FILE alone; else the SDK chain (environment, shared files). */
static bool load_credentials(struct lg_config *c, const char *akid, const char *secret, const char *token,
                             const char *file, const char *profile)
{
    coffer_err rc;
    if (akid != NULL || secret != NULL) {
        rc = awsclient_credentials_set(&c->creds, akid, secret, token);
    } else {
        struct awsclient_source src = {.profile = profile,
                                       .credentials_file = file,
                                       .config_file = file ? "" : NULL,
                                       .skip_env = file != NULL};
        rc = awsclient_credentials_load(&src, &c->creds);
    }
    if (rc != COFFER_OK) {
        fprintf(stderr,
                "coffer-loadgen: %s (--access-key/--secret-key, --credentials, or the AWS environment)\n",
                coffer_last_message());
        return false;
    }
    return true;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf != NULL && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *g = realloc(buf, cap * 2);
            if (g == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
    }
    return buf;
}

static const char *service_for_target(const char *target)
{
    static const struct {
        const char *prefix, *service;
    } map[] = {{"TrentService.", "kms"}, {"AmazonSSM.", "ssm"}, {"secretsmanager.", "secretsmanager"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strncmp(target, map[i].prefix, strlen(map[i].prefix)) == 0) {
            return map[i].service;
        }
    }
    return "kms";
}

static bool parse_args(struct lg_config *c, int argc, char **argv)
{
    enum {
        O_ENDPOINT = 256,
        O_CA,
        O_PLAIN,
        O_NOVERIFY,
        O_REGION,
        O_SERVICE,
        O_AK,
        O_SK,
        O_TOKEN,
        O_CREDS,
        O_PROFILE,
        O_CONNS,
        O_DURATION,
        O_REQUESTS,
        O_WARMUP,
        O_TARGET,
        O_BODY,
        O_BODYFILE,
        O_JSON,
        O_SEQ,
        O_CYCLE,
        O_SEQSTART,
        O_HELP
    };
    static const struct option opts[] = {
        {"endpoint", 1, 0, O_ENDPOINT},   {"ca", 1, 0, O_CA},
        {"insecure-http", 0, 0, O_PLAIN}, {"no-verify", 0, 0, O_NOVERIFY},
        {"region", 1, 0, O_REGION},       {"service", 1, 0, O_SERVICE},
        {"access-key", 1, 0, O_AK},       {"secret-key", 1, 0, O_SK},
        {"session-token", 1, 0, O_TOKEN}, {"credentials", 1, 0, O_CREDS},
        {"profile", 1, 0, O_PROFILE},     {"connections", 1, 0, O_CONNS},
        {"duration", 1, 0, O_DURATION},   {"requests", 1, 0, O_REQUESTS},
        {"warmup", 1, 0, O_WARMUP},       {"target", 1, 0, O_TARGET},
        {"body", 1, 0, O_BODY},           {"body-file", 1, 0, O_BODYFILE},
        {"json", 0, 0, O_JSON},           {"sequence", 1, 0, O_SEQ},
        {"cycle", 1, 0, O_CYCLE},         {"sequence-start", 1, 0, O_SEQSTART},
        {"help", 0, 0, O_HELP},           {0, 0, 0, 0}};
    const char *endpoint = "https://127.0.0.1:8443", *creds = NULL, *profile = NULL, *target = "Encrypt";
    const char *akid = NULL, *secret = NULL, *token = NULL;
    c->region = "us-east-1";
    c->connections = 16;
    c->duration_s = 10;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_ENDPOINT:
            endpoint = optarg;
            break;
        case O_CA:
            c->ca_file = optarg;
            break;
        case O_PLAIN:
            c->plain_http = true;
            break;
        case O_NOVERIFY:
            c->no_verify = true;
            break;
        case O_REGION:
            c->region = optarg;
            break;
        case O_SERVICE:
            c->service = optarg;
            break;
        case O_AK:
            akid = optarg;
            break;
        case O_SK:
            secret = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_CREDS:
            creds = optarg;
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_CONNS:
            c->connections = atoi(optarg);
            break;
        case O_DURATION:
            c->duration_s = atof(optarg);
            break;
        case O_REQUESTS:
            c->requests = atol(optarg);
            break;
        case O_WARMUP:
            c->warmup_s = atof(optarg);
            break;
        case O_TARGET:
            target = optarg;
            break;
        case O_SEQ:
            c->seq_count = atol(optarg);
            break;
        case O_CYCLE:
            c->cycle = atol(optarg);
            break;
        case O_SEQSTART:
            c->seq_first = atol(optarg);
            break;
        case O_BODY:
            free(c->body);
            c->body = strdup(optarg);
            break;
        case O_BODYFILE:
            free(c->body);
            if ((c->body = read_file(optarg)) == NULL) {
                fprintf(stderr, "coffer-loadgen: cannot read %s\n", optarg);
                return false;
            }
            break;
        case O_JSON:
            c->json = true;
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return false;
        }
    }
    if (!parse_endpoint(c, endpoint)) {
        fprintf(stderr, "coffer-loadgen: bad --endpoint '%s'\n", endpoint);
        return false;
    }
    if (!load_credentials(c, akid, secret, token, creds, profile)) {
        return false;
    }
    if (c->connections < 1 || c->connections > LG_MAX_CONNS || c->duration_s <= 0 || c->requests < 0 ||
        c->warmup_s < 0) {
        fprintf(stderr, "coffer-loadgen: bad --connections/--duration/--requests/--warmup\n");
        return false;
    }
    snprintf(c->target, sizeof(c->target), "%s%s", strchr(target, '.') ? "" : "TrentService.", target);
    if (c->service == NULL) {
        c->service = service_for_target(c->target);
    }
    if (c->seq_count < 0 || c->cycle < 0 || (c->seq_count > 0 && c->cycle > 0)) {
        fprintf(stderr, "coffer-loadgen: --sequence and --cycle take a positive count, one of them\n");
        return false;
    }
    if (c->seq_count > 0) {
        c->requests = c->seq_count; /* every numbered request is measured: no warmup */
        c->warmup_s = 0;
    }
    if (c->body == NULL) {
        c->body = strdup("{}");
    }
    return c->body != NULL;
}

/* ================================================================================================
 * The signed request, rebuilt once per second
 * ============================================================================================== */

struct lg_request {
    time_t second;   /* wall-clock second it was signed for */
    coffer_buf text; /* the whole HTTP request */
};

/* The whole HTTP request of `body`, signed for `now`, into `text`. */
static bool request_format(const struct lg_config *c, const char *body, time_t now, coffer_buf *text)
{
    char amz_date[AWSCLIENT_AMZ_DATE_LEN];
    const char *token = c->creds.session_token.len ? (const char *)c->creds.session_token.data : NULL;
    coffer_buf authz = COFFER_BUF_INIT;
    if (awsclient_json_sign(&c->creds, c->region, c->service, c->host_header, c->target,
                            coffer_cursor_from_str(body), (int64_t)now, amz_date, &authz) != COFFER_OK) {
        fprintf(stderr, "coffer-loadgen: signing failed: %s\n", coffer_last_message());
        coffer_buf_free(&authz);
        return false;
    }
    coffer_buf_reset(text);
    coffer_err rc = coffer_buf_printf(
        text,
        "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: " AWSCLIENT_JSON_CONTENT_TYPE "\r\n"
        "X-Amz-Target: %s\r\nX-Amz-Date: %s\r\n%s%s%sAuthorization: %s\r\n"
        "Content-Length: %zu\r\nUser-Agent: coffer-loadgen\r\n\r\n%s",
        c->host_header, c->target, amz_date, token ? "X-Amz-Security-Token: " : "", token ? token : "",
        token ? "\r\n" : "", (const char *)authz.data, strlen(body), body);
    coffer_buf_free(&authz);
    return rc == COFFER_OK;
}

static bool request_build(const struct lg_config *c, struct lg_request *r, time_t now)
{
    r->second = now;
    return request_format(c, c->body, now, &r->text);
}

/* The template with request number `num` in place of "{n}" and its digits "{dK}" (ssm bench). */
static bool request_numbered(const struct lg_config *c, long num, coffer_buf *text)
{
    long last = c->seq_count > 0 ? c->seq_first + c->seq_count - 1 : c->seq_first + c->cycle - 1;
    char digits[24], number[24];
    int width = snprintf(digits, sizeof(digits), "%ld", last);
    snprintf(digits, sizeof(digits), "%0*ld", width, num);
    snprintf(number, sizeof(number), "%ld", num);
    coffer_buf body = COFFER_BUF_INIT;
    bool ok = true;
    for (const char *p = c->body; *p != 0 && ok;) {
        if (strncmp(p, "{n}", 3) == 0) {
            ok = coffer_buf_append(&body, number, strlen(number)) == COFFER_OK;
            p += 3;
        } else if (p[0] == '{' && p[1] == 'd' && p[2] >= '0' && p[2] <= '9' && p[3] == '}' &&
                   p[2] - '0' < width) {
            ok = coffer_buf_append(&body, &digits[p[2] - '0'], 1) == COFFER_OK;
            p += 4;
        } else {
            ok = coffer_buf_append(&body, p, 1) == COFFER_OK;
            p++;
        }
    }
    ok = ok && coffer_buf_nul_terminate(&body) == COFFER_OK &&
         request_format(c, (const char *)body.data, time(NULL), text);
    coffer_buf_free(&body);
    return ok;
}

/* ================================================================================================
 * Connections
 * ============================================================================================== */

enum lg_state { ST_CONNECTING, ST_HANDSHAKE, ST_SEND, ST_SENDING, ST_READING };

struct lg_conn {
    int fd;
    SSL *ssl;
    enum lg_state state;
    coffer_buf out; /* request being sent */
    size_t out_off;
    uint8_t *in; /* response bytes */
    size_t in_len, in_cap;
    uint64_t t_start_ns;
    bool parked; /* failed; reopened by the main loop */
};

struct lg_stats {
    uint32_t *lat_us; /* measured latencies */
    size_t n, cap;
    long status[LG_STATUS_MAX];
    long transport_errors;
    long non200;
    bool printed_error;
};

struct lg {
    struct lg_config cfg;
    struct addrinfo *addr;
    SSL_CTX *ctx;
    int ep;
    struct lg_conn *conns;
    struct lg_request req;
    struct lg_stats st;
    bool measuring, stop;
    uint64_t measure_start_ns;
    long seq_sent; /* numbered requests sent so far */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void conn_close(struct lg_conn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->in_len = 0;
}

static bool conn_open(struct lg *g, struct lg_conn *c)
{
    c->fd = socket(g->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, g->addr->ai_addr, g->addr->ai_addrlen) != 0 && errno != EINPROGRESS) {
        conn_close(c);
        return false;
    }
    c->state = ST_CONNECTING;
    if (!g->cfg.plain_http) {
        c->ssl = SSL_new(g->ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
            conn_close(c);
            return false;
        }
        struct in6_addr ip;
        bool is_ip = inet_pton(AF_INET, g->cfg.host, &ip) == 1 || inet_pton(AF_INET6, g->cfg.host, &ip) == 1;
        if (is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), g->cfg.host);
        } else {
            SSL_set_tlsext_host_name(c->ssl, g->cfg.host);
            SSL_set1_host(c->ssl, g->cfg.host);
        }
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_close(c);
        return false;
    }
    return true;
}

/* I/O result: >0 bytes, 0 would block, -1 error or EOF (eof flag set for a clean close). */
static ssize_t conn_io(struct lg_conn *c, bool write, void *buf, size_t n, bool *eof)
{
    *eof = false;
    if (c->ssl == NULL) {
        ssize_t r = write ? send(c->fd, buf, n, MSG_NOSIGNAL) : recv(c->fd, buf, n, 0);
        if (r > 0) {
            return r;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return 0;
        }
        *eof = r == 0;
        return -1;
    }
    int r = write ? SSL_write(c->ssl, buf, (int)n) : SSL_read(c->ssl, buf, (int)n);
    if (r > 0) {
        return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return 0;
    }
    *eof = e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0);
    ERR_clear_error();
    return -1;
}

/* ================================================================================================
 * HTTP/1.1 response parsing: status line, Content-Length, chunked, or close-delimited
 * ============================================================================================== */

enum { RESP_INCOMPLETE = 0, RESP_DONE = 1, RESP_BAD = -1 };

struct lg_response {
    int status;
    bool keep_alive;
    bool chunked;
    const uint8_t *body;
    size_t body_len;
};

static const char *find_header(const char *hdrs, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *p = hdrs, *end = hdrs + len; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        eol = eol ? eol : end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Returns the length of a complete chunked body, 0 if incomplete, -1 if malformed. */
static long chunked_len(const uint8_t *b, size_t n)
{
    size_t off = 0;
    for (;;) {
        const uint8_t *eol = memmem(b + off, n - off, "\r\n", 2);
        if (eol == NULL) {
            return 0;
        }
        char *endp = NULL;
        char line[32];
        size_t ll = (size_t)(eol - (b + off));
        if (ll == 0 || ll >= sizeof(line)) {
            return -1;
        }
        memcpy(line, b + off, ll);
        line[ll] = '\0';
        unsigned long sz = strtoul(line, &endp, 16);
        if (endp == line || sz > LG_MAX_RESPONSE) {
            return -1;
        }
        off += ll + 2;
        if (sz == 0) { /* no trailers expected: the final CRLF */
            return n - off >= 2 ? (long)(off + 2) : 0;
        }
        if (n - off < sz + 2) {
            return 0;
        }
        off += sz + 2;
    }
}

static int parse_response(const uint8_t *buf, size_t len, bool eof, struct lg_response *r, size_t *consumed)
{
    const uint8_t *hend = memmem(buf, len, "\r\n\r\n", 4);
    if (hend == NULL) {
        return eof || len > LG_MAX_RESPONSE ? RESP_BAD : RESP_INCOMPLETE;
    }
    size_t hlen = (size_t)(hend - buf) + 4;
    const char *h = (const char *)buf;
    if (hlen < 12 || strncmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ') {
        return RESP_BAD;
    }
    r->status = atoi(h + 9);
    if (r->status < 100 || r->status >= LG_STATUS_MAX) {
        return RESP_BAD;
    }
    size_t vl = 0;
    const char *conn = find_header(h, hlen, "Connection", &vl);
    r->keep_alive = h[7] == '1' ? !(conn && vl == 5 && strncasecmp(conn, "close", 5) == 0)
                                : (conn && vl == 10 && strncasecmp(conn, "keep-alive", 10) == 0);
    r->body = buf + hlen;
    const char *te = find_header(h, hlen, "Transfer-Encoding", &vl);
    const char *cl = find_header(h, hlen, "Content-Length", &vl);
    if (te != NULL && vl >= 7 && strncasecmp(te, "chunked", 7) == 0) {
        long bl = chunked_len(buf + hlen, len - hlen);
        if (bl < 0 || (bl == 0 && eof)) {
            return RESP_BAD;
        }
        r->body_len = (size_t)bl;
        r->chunked = true;
        *consumed = hlen + (size_t)bl;
        return bl > 0 ? RESP_DONE : RESP_INCOMPLETE;
    }
    if (cl != NULL) {
        unsigned long n = strtoul(cl, NULL, 10);
        if (n > LG_MAX_RESPONSE) {
            return RESP_BAD;
        }
        if (len - hlen < n) {
            return eof ? RESP_BAD : RESP_INCOMPLETE;
        }
        r->body_len = n;
        *consumed = hlen + n;
        return RESP_DONE;
    }
    if (r->status == 204 || r->status == 304 || r->status < 200) {
        r->body_len = 0;
        *consumed = hlen;
        return RESP_DONE;
    }
    /* delimited by close */
    r->keep_alive = false;
    r->body_len = len - hlen;
    *consumed = len;
    return eof ? RESP_DONE : RESP_INCOMPLETE;
}

/* ================================================================================================
 * Event loop
 * ============================================================================================== */

/* The body as text for a message: chunk framing removed, truncated, one line. */
static void error_body_text(const struct lg_response *r, char *out, size_t cap)
{
    size_t n = 0, off = 0;
    while (off < r->body_len && n + 1 < cap) {
        size_t chunk = r->body_len - off;
        if (r->chunked) {
            char *endp = NULL;
            unsigned long sz = strtoul((const char *)r->body + off, &endp, 16);
            const uint8_t *eol = memmem(r->body + off, r->body_len - off, "\r\n", 2);
            if (sz == 0 || eol == NULL) {
                break;
            }
            off = (size_t)(eol - r->body) + 2;
            chunk = sz < r->body_len - off ? sz : r->body_len - off;
        }
        for (size_t i = 0; i < chunk && n + 1 < cap; i++) {
            uint8_t ch = r->body[off + i];
            out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
        }
        off += chunk + (r->chunked ? 2 : 0);
    }
    out[n] = '\0';
}

static void record(struct lg *g, const struct lg_response *r, uint64_t lat_ns)
{
    if (!g->measuring) {
        return;
    }
    struct lg_stats *s = &g->st;
    s->status[r->status]++;
    if (r->status != 200) {
        s->non200++;
        if (!s->printed_error) {
            s->printed_error = true;
            char text[LG_ERROR_BODY_MAX + 1];
            error_body_text(r, text, sizeof(text));
            fprintf(stderr, "coffer-loadgen: first error response: HTTP %d: %s\n", r->status, text);
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        uint32_t *g2 = realloc(s->lat_us, cap * sizeof(*g2));
        if (g2 == NULL) {
            return;
        }
        s->lat_us = g2;
        s->cap = cap;
    }
    uint64_t us = lat_ns / 1000;
    s->lat_us[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (g->cfg.requests > 0 && (long)s->n >= g->cfg.requests) {
        g->stop = true;
    }
}

/* A failed connection is parked and reopened by the main loop every LG_REOPEN_NS, so a refused or
   failing endpoint costs a few reconnects per second instead of a busy loop. */
static void conn_fail(struct lg *g, struct lg_conn *c, const char *what)
{
    if (g->measuring) {
        if (g->st.transport_errors == 0) {
            fprintf(stderr, "coffer-loadgen: connection error: %s\n", what);
        }
        g->st.transport_errors++;
    }
    conn_close(c);
    c->parked = true;
}

/* Advances one connection until it would block. */
static void conn_drive(struct lg *g, struct lg_conn *c)
{
    for (;;) {
        switch (c->state) {
        case ST_CONNECTING: {
            int err = 0;
            socklen_t el = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
                conn_fail(g, c, err ? strerror(err) : "connect failed");
                return;
            }
            c->state = c->ssl ? ST_HANDSHAKE : ST_SEND;
            break;
        }
        case ST_HANDSHAKE: {
            int r = SSL_connect(c->ssl);
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return;
                }
                unsigned long ecode = ERR_get_error();
                char msg[256];
                ERR_error_string_n(ecode, msg, sizeof(msg));
                ERR_clear_error();
                conn_fail(g, c, ecode ? msg : "TLS handshake failed");
                return;
            }
            c->state = ST_SEND;
            break;
        }
        case ST_SEND: {
            if (g->stop) {
                return;
            }
            if (g->cfg.seq_count > 0 || g->cfg.cycle > 0) {
                if (g->cfg.seq_count > 0 && g->seq_sent >= g->cfg.seq_count) {
                    return; /* all sent: the connection waits for the run to end */
                }
                long k = g->seq_sent++;
                long num = g->cfg.seq_first + (g->cfg.cycle > 0 ? k % g->cfg.cycle : k);
                if (!request_numbered(&g->cfg, num, &c->out)) {
                    g->stop = true;
                    return;
                }
            } else {
                time_t sec = time(NULL);
                if (sec != g->req.second && !request_build(&g->cfg, &g->req, sec)) {
                    g->stop = true;
                    return;
                }
                coffer_buf_reset(&c->out);
                if (coffer_buf_append_cur(&c->out, coffer_buf_cursor(&g->req.text)) != COFFER_OK) {
                    g->stop = true;
                    return;
                }
            }
            c->out_off = 0;
            c->in_len = 0;
            c->t_start_ns = now_ns();
            c->state = ST_SENDING;
            break;
        }
        case ST_SENDING: {
            bool eof;
            ssize_t r = conn_io(c, true, c->out.data + c->out_off, c->out.len - c->out_off, &eof);
            if (r < 0) {
                conn_fail(g, c, "write failed");
                return;
            }
            if (r == 0) {
                return;
            }
            c->out_off += (size_t)r;
            if (c->out_off == c->out.len) {
                c->state = ST_READING;
            }
            break;
        }
        case ST_READING: {
            if (c->in_cap - c->in_len < 4096) {
                size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
                uint8_t *in = cap <= 2 * LG_MAX_RESPONSE ? realloc(c->in, cap) : NULL;
                if (in == NULL) {
                    conn_fail(g, c, "response too large");
                    return;
                }
                c->in = in;
                c->in_cap = cap;
            }
            bool eof;
            ssize_t r = conn_io(c, false, c->in + c->in_len, c->in_cap - c->in_len, &eof);
            if (r == 0) {
                return;
            }
            if (r < 0 && !eof) {
                conn_fail(g, c, "read failed");
                return;
            }
            c->in_len += r > 0 ? (size_t)r : 0;
            struct lg_response resp = {0};
            size_t used = 0;
            int p = parse_response(c->in, c->in_len, eof, &resp, &used);
            if (p == RESP_BAD) {
                conn_fail(g, c,
                          eof && c->in_len == 0 ? "server closed the connection" : "malformed response");
                return;
            }
            if (p == RESP_INCOMPLETE) {
                break;
            }
            record(g, &resp, now_ns() - c->t_start_ns);
            if (!resp.keep_alive || eof) {
                conn_close(c);
                c->parked = !g->stop && !conn_open(g, c);
                return;
            }
            c->state = ST_SEND;
            break;
        }
        }
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const struct lg_stats *s, double p)
{
    if (s->n == 0) {
        return 0;
    }
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->lat_us[i] / 1000.0;
}

static void report(struct lg *g, double secs)
{
    struct lg_stats *s = &g->st;
    if (s->n > 1) {
        qsort(s->lat_us, s->n, sizeof(s->lat_us[0]), cmp_u32);
    }
    double rps = secs > 0 ? (double)s->n / secs : 0;
    printf("coffer-loadgen: %s %s, %d connections, %.2f s\n", g->cfg.target,
           g->cfg.plain_http ? "http" : "https", g->cfg.connections, secs);
    printf("  requests   %zu (%.1f req/s)\n", s->n, rps);
    printf("  latency ms p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", pct_ms(s, 0.5), pct_ms(s, 0.9),
           pct_ms(s, 0.99), pct_ms(s, 1.0));
    printf("  errors     %ld non-200, %ld transport\n", s->non200, s->transport_errors);
    printf("  status    ");
    for (int i = 0; i < LG_STATUS_MAX; i++) {
        if (s->status[i]) {
            printf(" %d:%ld", i, s->status[i]);
        }
    }
    printf("\n");
    if (!g->cfg.json) {
        return;
    }
    printf("{\"target\":\"%s\",\"connections\":%d,\"duration_s\":%.3f,\"requests\":%zu,\"rps\":%.1f,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%ld,"
           "\"non200\":%ld,\"transport_errors\":%ld,\"status\":{",
           g->cfg.target, g->cfg.connections, secs, s->n, rps, pct_ms(s, 0.5), pct_ms(s, 0.9),
           pct_ms(s, 0.99), pct_ms(s, 1.0), s->non200 + s->transport_errors, s->non200, s->transport_errors);
    bool first = true;
    for (int i = 0; i < LG_STATUS_MAX; i++) {
        if (s->status[i]) {
            printf("%s\"%d\":%ld", first ? "" : ",", i, s->status[i]);
            first = false;
        }
    }
    printf("}}\n");
}

static bool setup(struct lg *g)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(g->cfg.host, g->cfg.port, &hints, &res);
    if (e != 0 || res == NULL) {
        fprintf(stderr, "coffer-loadgen: cannot resolve %s: %s\n", g->cfg.host, gai_strerror(e));
        return false;
    }
    g->addr = res;
    if (!g->cfg.plain_http) {
        g->ctx = SSL_CTX_new(TLS_client_method());
        if (g->ctx == NULL) {
            return false;
        }
        SSL_CTX_set_min_proto_version(g->ctx, TLS1_2_VERSION);
        /* Servers often close without close_notify after a close-delimited response; the framing
           checks in parse_response still catch a truncated Content-Length or chunked body. */
        SSL_CTX_set_options(g->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_verify(g->ctx, g->cfg.no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
        bool ok = g->cfg.ca_file ? SSL_CTX_load_verify_locations(g->ctx, g->cfg.ca_file, NULL) == 1
                                 : SSL_CTX_set_default_verify_paths(g->ctx) == 1;
        if (!ok) {
            fprintf(stderr, "coffer-loadgen: cannot load CA file %s\n",
                    g->cfg.ca_file ? g->cfg.ca_file : "(default)");
            return false;
        }
    }
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->conns = calloc((size_t)g->cfg.connections, sizeof(*g->conns));
    if (g->ep < 0 || g->conns == NULL || !request_build(&g->cfg, &g->req, time(NULL))) {
        return false;
    }
    for (int i = 0; i < g->cfg.connections; i++) {
        struct lg_conn *c = &g->conns[i];
        c->fd = -1;
        coffer_buf_init(&c->out, false);
        if (!conn_open(g, c)) {
            fprintf(stderr, "coffer-loadgen: cannot connect to %s:%s: %s\n", g->cfg.host, g->cfg.port,
                    strerror(errno));
            return false;
        }
    }
    return true;
}

static void teardown(struct lg *g)
{
    for (int i = 0; g->conns && i < g->cfg.connections; i++) {
        conn_close(&g->conns[i]);
        coffer_buf_free(&g->conns[i].out);
        free(g->conns[i].in);
    }
    free(g->conns);
    if (g->ep >= 0) {
        close(g->ep);
    }
    SSL_CTX_free(g->ctx);
    if (g->addr) {
        freeaddrinfo(g->addr);
    }
    coffer_buf_free(&g->req.text);
    free(g->st.lat_us);
    free(g->cfg.body);
    awsclient_credentials_clean(&g->cfg.creds);
}

int main(int argc, char **argv)
{
    static struct lg g; /* large; zero-initialised */
    g.ep = -1;
    signal(SIGPIPE, SIG_IGN);
    if (!parse_args(&g.cfg, argc, argv) || !setup(&g)) {
        teardown(&g);
        return 1;
    }
    uint64_t t0 = now_ns(), warm_end = t0 + (uint64_t)(g.cfg.warmup_s * 1e9);
    g.measuring = g.cfg.warmup_s <= 0;
    g.measure_start_ns = t0;
    struct epoll_event evs[256];
    uint64_t last_reopen_ns = t0;
    while (!g.stop) {
        uint64_t t = now_ns();
        if (!g.measuring && t >= warm_end) {
            g.measuring = true;
            g.measure_start_ns = t;
        }
        if (g.measuring && g.cfg.requests == 0 &&
            t - g.measure_start_ns >= (uint64_t)(g.cfg.duration_s * 1e9)) {
            break;
        }
        int n = epoll_wait(g.ep, evs, 256, 50);
        for (int i = 0; i < n && !g.stop; i++) {
            conn_drive(&g, evs[i].data.ptr);
        }
        uint64_t tick = now_ns();
        bool reopen = tick - last_reopen_ns >= LG_REOPEN_NS;
        last_reopen_ns = reopen ? tick : last_reopen_ns;
        for (int i = 0; reopen && i < g.cfg.connections && !g.stop; i++) {
            struct lg_conn *c = &g.conns[i];
            if (c->parked) {
                c->parked = !conn_open(&g, c);
                g.st.transport_errors += c->parked && g.measuring;
            }
        }
        if (g.measuring && g.st.n == 0 && g.st.transport_errors > 100L * g.cfg.connections) {
            fprintf(stderr, "coffer-loadgen: giving up, no successful connection\n");
            break;
        }
    }
    double secs = (double)(now_ns() - g.measure_start_ns) / 1e9;
    report(&g, secs);
    int rc = (g.st.non200 || g.st.transport_errors || g.st.n == 0) ? 2 : 0;
    teardown(&g);
    return rc;
}
