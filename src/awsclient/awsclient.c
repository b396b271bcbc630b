/*
 * The AWS client: SigV4-signed AWS JSON requests over one keep-alive libcurl handle, with bounded
 * retries and the AWS error type read out of error answers. Credentials and region come from
 * awsclient_creds.c; the signature arithmetic from auth/sigv4.c.
 *
 * Retries follow the AWS SDKs' standard mode, bounded: throttling answers, 5xx and connection
 * failures are tried again up to max_attempts in all, waiting AWSCLIENT_BACKOFF_BASE_MS << n ms
 * before retry n. Each attempt is signed afresh (X-Amz-Date moves on).
 */
#include "awsclient/awsclient.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/sigv4.h"
#include "common/secret.h"
#include "common/timeutil.h"

#define AWSCLIENT_MAX_URL 2048

struct awsclient {
    char *service; /* signing name */
    char *region;
    char *endpoint;  /* "https://host[:port]" without a trailing slash */
    char *host;      /* Host header value: host[:port] */
    char *ca_bundle; /* NULL: system store */
    size_t max_response;
    int max_attempts;
    struct awsclient_credentials creds; /* own copy; secrets wiped on free */
    pthread_mutex_t lock;               /* guards curl: one request at a time on one connection */
    bool lock_ready;                    /* lock was initialised (construction may stop before) */
    CURL *curl;
};

static const char *aws_env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

static char *cursor_strdup(coffer_cursor c)
{
    char *s = malloc(c.len + 1);
    if (s) {
        if (c.len > 0) { /* an empty cursor may hold NULL, which memcpy may not be given */
            memcpy(s, c.ptr, c.len);
        }
        s[c.len] = '\0';
    }
    return s;
}

/* ================================================================================================
 * Signing
 * ============================================================================================= */

/*
 * Signs POST / with the given Content-Type, Host, X-Amz-Date, X-Amz-Target (JSON protocol; NULL
 * for the Query protocol) and X-Amz-Security-Token when there is a token, all signed as botocore
 * does, so a proxy cannot strip or swap any of them.
 */
static coffer_err post_sign(const struct awsclient_credentials *creds, const char *region,
                            const char *service, const char *host, const char *content_type,
                            const char *target, coffer_cursor body, int64_t now,
                            char amz_date[AWSCLIENT_AMZ_DATE_LEN], coffer_buf *authorization)
{
    const char *token = creds->session_token.len ? (const char *)creds->session_token.data : NULL;
    struct sigv4_header hs[5];
    size_t n = 0;
    char signed_hdrs[96];

    if (!creds->access_key_id || !creds->secret_key.data) {
        return coffer_fail(COFFER_ERR_CONFIG, "no credentials to sign with");
    }
    coffer_time_amz(now, amz_date, AWSCLIENT_AMZ_DATE_LEN);
    hs[n++] = (struct sigv4_header){"content-type", content_type};
    hs[n++] = (struct sigv4_header){"host", host};
    hs[n++] = (struct sigv4_header){"x-amz-date", amz_date};
    if (token) {
        hs[n++] = (struct sigv4_header){"x-amz-security-token", token};
    }
    if (target) {
        hs[n++] = (struct sigv4_header){"x-amz-target", target};
    }
    snprintf(signed_hdrs, sizeof(signed_hdrs), "content-type;host;x-amz-date%s%s",
             token ? ";x-amz-security-token" : "", target ? ";x-amz-target" : "");
    struct sigv4_request req = {"POST", "/", "", hs, n, body, false};
    struct sigv4_credentials sc = {creds->access_key_id, (const char *)creds->secret_key.data, token};
    TRY(sigv4_sign(&req, &sc, region, service, amz_date, signed_hdrs, authorization));
    return coffer_buf_nul_terminate(authorization);
}

coffer_err awsclient_json_sign(const struct awsclient_credentials *creds, const char *region,
                               const char *service, const char *host, const char *target, coffer_cursor body,
                               int64_t now, char amz_date[AWSCLIENT_AMZ_DATE_LEN], coffer_buf *authorization)
{
    return post_sign(creds, region, service, host, AWSCLIENT_JSON_CONTENT_TYPE, target, body, now, amz_date,
                     authorization);
}

/* ================================================================================================
 * Construction
 * ============================================================================================= */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_global(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* "scheme://host[:port][/]" -> endpoint without the trailing '/', and the Host header value. */
static coffer_err endpoint_set(awsclient *c, const struct awsclient_config *cfg)
{
    char buf[AWSCLIENT_MAX_URL];
    const char *ep = cfg->endpoint;
    if (!ep && !cfg->skip_env) {
        if (cfg->env_service) {
            snprintf(buf, sizeof(buf), "AWS_ENDPOINT_URL_%s", cfg->env_service);
            ep = aws_env(buf);
        }
        ep = ep ? ep : aws_env("AWS_ENDPOINT_URL");
    }
    if (!ep) {
        snprintf(buf, sizeof(buf), "https://%s.%s.amazonaws.com", c->service, c->region);
        ep = buf;
    }
    const char *host = NULL;
    if (strncmp(ep, "https://", 8) == 0) {
        host = ep + 8;
    } else if (strncmp(ep, "http://", 7) == 0) {
        host = ep + 7;
    }
    size_t host_len = host ? strcspn(host, "/?#") : 0;
    if (!host || host_len == 0 || host[host_len] == '?' || host[host_len] == '#' ||
        (host[host_len] == '/' && host[host_len + 1] != '\0')) {
        return coffer_fail(COFFER_ERR_CONFIG, "endpoint must be http(s)://host[:port]");
    }
    c->host = cursor_strdup(coffer_cursor_from(host, host_len));
    c->endpoint = cursor_strdup(coffer_cursor_from(ep, (size_t)(host - ep) + host_len));
    if (!c->host || !c->endpoint) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static coffer_err curl_setup(awsclient *c, const char *user_agent)
{
    pthread_once(&curl_once, curl_global);
    if (curl_init_rc != CURLE_OK) {
        return coffer_fail(COFFER_ERR_CONFIG, "HTTP client initialisation failed");
    }
    if (!(c->curl = curl_easy_init())) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, AWSCLIENT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, AWSCLIENT_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect would resend a signed body elsewhere */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, user_agent ? user_agent : "coffer");
    curl_easy_setopt(h, CURLOPT_URL, c->endpoint);
    if (c->ca_bundle) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle);
    }
    return COFFER_OK;
}

coffer_err awsclient_new(const struct awsclient_config *cfg, awsclient **out)
{
    coffer_err rc = COFFER_OK;
    awsclient *c = NULL;

    *out = NULL;
    if (!cfg->service || !cfg->service[0] || !cfg->credentials) {
        return coffer_fail(COFFER_ERR_USAGE, "a signing name and credentials are required");
    }
    if (!awsclient_region_valid(cfg->region)) {
        return coffer_fail(COFFER_ERR_CONFIG, "invalid region");
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    c->max_response = cfg->max_response ? cfg->max_response : AWSCLIENT_DEFAULT_MAX_RESPONSE;
    c->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : AWSCLIENT_DEFAULT_MAX_ATTEMPTS;
    coffer_buf_init(&c->creds.secret_key, true);
    coffer_buf_init(&c->creds.session_token, true);
    if (!(c->service = strdup(cfg->service)) || !(c->region = strdup(cfg->region))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(endpoint_set(c, cfg));
    const char *ca = cfg->ca_bundle ? cfg->ca_bundle : cfg->skip_env ? NULL : aws_env("AWS_CA_BUNDLE");
    if (ca && !(c->ca_bundle = strdup(ca))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    const struct awsclient_credentials *cr = cfg->credentials;
    TRY_OUT(awsclient_credentials_set(&c->creds, cr->access_key_id, (const char *)cr->secret_key.data,
                                      cr->session_token.len ? (const char *)cr->session_token.data : NULL));
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        FAIL_OUT(COFFER_ERR_CONFIG, "mutex initialisation failed");
    }
    c->lock_ready = true;
    TRY_OUT(curl_setup(c, cfg->user_agent));
    *out = c;
    return COFFER_OK;
out:
    awsclient_free(c);
    return rc;
}

void awsclient_free(awsclient *c)
{
    if (!c) {
        return;
    }
    curl_easy_cleanup(c->curl);
    if (c->lock_ready) {
        pthread_mutex_destroy(&c->lock);
    }
    free(c->service);
    free(c->region);
    free(c->endpoint);
    free(c->host);
    free(c->ca_bundle);
    awsclient_credentials_clean(&c->creds);
    free(c);
}

const char *awsclient_endpoint(const awsclient *c)
{
    return c->endpoint;
}

const char *awsclient_host(const awsclient *c)
{
    return c->host;
}

const char *awsclient_ca_bundle(const awsclient *c)
{
    return c->ca_bundle;
}

const char *awsclient_access_key_id(const awsclient *c)
{
    return c->creds.access_key_id;
}

/* ================================================================================================
 * Answers and errors
 * ============================================================================================= */

void awsclient_answer_init(struct awsclient_answer *a)
{
    memset(a, 0, sizeof(*a));
    coffer_buf_init(&a->body, true);
}

void awsclient_answer_clean(struct awsclient_answer *a)
{
    if (a) {
        coffer_buf_free(&a->body);
        a->status = 0;
        a->error_type[0] = a->error_message[0] = '\0';
    }
}

void awsclient_json_error(coffer_cursor body, char type[AWSCLIENT_ERROR_TYPE_LEN],
                          char message[AWSCLIENT_ERROR_MESSAGE_LEN])
{
    json_t *doc = body.len ? json_loadb((const char *)body.ptr, body.len, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(doc, "__type"));
    const char *m = json_string_value(json_object_get(doc, "message"));
    t = t ? t : json_string_value(json_object_get(doc, "code"));
    m = m ? m : json_string_value(json_object_get(doc, "Message"));
    /* "com.amazonaws.kms#NotFoundException" and "NotFoundException:http://..." name the same type */
    if (t && strchr(t, '#')) {
        t = strchr(t, '#') + 1;
    }
    size_t tn = t ? strcspn(t, ":") : 0;
    if (tn == 0) {
        t = "UnknownError";
        tn = strlen(t);
    }
    snprintf(type, AWSCLIENT_ERROR_TYPE_LEN, "%.*s", (int)tn, t);
    snprintf(message, AWSCLIENT_ERROR_MESSAGE_LEN, "%s", m ? m : "");
    json_decref(doc);
}

/* The text of the first <name>...</name> in `body`, or an empty cursor. */
static coffer_cursor xml_element(coffer_cursor body, const char *name)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", name);
    snprintf(close, sizeof(close), "</%s>", name);
    if (body.len == 0) {
        return coffer_cursor_from(NULL, 0); /* memmem may not be given a NULL haystack */
    }
    const uint8_t *a = memmem(body.ptr, body.len, open, strlen(open));
    if (!a) {
        return coffer_cursor_from(NULL, 0);
    }
    a += strlen(open);
    size_t rest = body.len - (size_t)(a - body.ptr);
    const uint8_t *b = memmem(a, rest, close, strlen(close));
    return b ? coffer_cursor_from(a, (size_t)(b - a)) : coffer_cursor_from(NULL, 0);
}

void awsclient_query_error(coffer_cursor body, char type[AWSCLIENT_ERROR_TYPE_LEN],
                           char message[AWSCLIENT_ERROR_MESSAGE_LEN])
{
    /* <ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>...</Message> */
    coffer_cursor err = xml_element(body, "Error");
    coffer_cursor code = xml_element(err, "Code"), msg = xml_element(err, "Message");
    if (code.len == 0 || code.len >= AWSCLIENT_ERROR_TYPE_LEN || memchr(code.ptr, '<', code.len)) {
        code = coffer_cursor_from_str("UnknownError");
    }
    snprintf(type, AWSCLIENT_ERROR_TYPE_LEN, "%.*s", (int)code.len, (const char *)code.ptr);
    /* Message text stays as sent (entities undecoded): it is only shown to people. */
    size_t ml = msg.len < AWSCLIENT_ERROR_MESSAGE_LEN ? msg.len : AWSCLIENT_ERROR_MESSAGE_LEN - 1;
    snprintf(message, AWSCLIENT_ERROR_MESSAGE_LEN, "%.*s", (int)ml, msg.len ? (const char *)msg.ptr : "");
}

/* application/x-www-form-urlencoded as the AWS Query protocol wants it: RFC 3986 unreserved kept. */
static coffer_err form_append(coffer_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~') {
            TRY(coffer_buf_append_u8(out, *p));
        } else {
            uint8_t e[3] = {'%', (uint8_t)hex[*p >> 4], (uint8_t)hex[*p & 15]};
            TRY(coffer_buf_append(out, e, sizeof(e)));
        }
    }
    return COFFER_OK;
}

bool awsclient_retryable(long status, const char *error_type)
{
    /* The throttling codes botocore's standard retry mode knows, those a KMS-like service sends. */
    static const char *const throttles[] = {"ThrottlingException",  "Throttling",
                                            "ThrottledException",   "TooManyRequestsException",
                                            "RequestLimitExceeded", "RequestThrottledException",
                                            "RequestThrottled",     "SlowDown"};
    if (status >= 500 || status == 429) {
        return true;
    }
    for (size_t i = 0; i < sizeof(throttles) / sizeof(throttles[0]); i++) {
        if (strcmp(error_type, throttles[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Failures before any answer that a new connection may cure, as botocore's connection errors. */
static bool curl_retryable(CURLcode cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
           cc == CURLE_GOT_NOTHING;
}

/* ================================================================================================
 * Calls
 * ============================================================================================= */

struct awsclient_sink {
    coffer_buf *body;
    size_t max;
    bool too_big;
};

static size_t sink_write(char *p, size_t size, size_t nmemb, void *ctx)
{
    struct awsclient_sink *s = ctx;
    size_t n = size * nmemb;
    if (s->body->len + n > s->max || coffer_buf_append(s->body, p, n) != COFFER_OK) {
        s->too_big = true;
        return 0;
    }
    return n;
}

/* Frees a header list after wiping it: it holds the session token. */
static void headers_free(struct curl_slist *list)
{
    for (struct curl_slist *l = list; l; l = l->next) {
        coffer_secure_zero(l->data, strlen(l->data));
    }
    curl_slist_free_all(list);
}

static coffer_err header_add(struct curl_slist **list, coffer_buf *line, const char *name, const char *value)
{
    coffer_buf_reset(line);
    TRY(coffer_buf_printf(line, "%s: %s", name, value));
    struct curl_slist *t = curl_slist_append(*list, (const char *)line->data);
    if (!t) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    *list = t;
    return COFFER_OK;
}

/* One signed POST. *cc is the transfer's outcome; the answer lands in ans. Caller holds c->lock. */
static coffer_err post_once(awsclient *c, const char *content_type, const char *target, coffer_cursor body,
                            struct awsclient_answer *ans, CURLcode *cc, bool *too_big)
{
    coffer_err rc = COFFER_OK;
    coffer_buf auth = COFFER_BUF_INIT, line = COFFER_SECRET_BUF_INIT;
    struct curl_slist *list = NULL;
    char amz_date[AWSCLIENT_AMZ_DATE_LEN];

    TRY_OUT(post_sign(&c->creds, c->region, c->service, c->host, content_type, target, body,
                      (int64_t)time(NULL), amz_date, &auth));
    struct curl_slist *t = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    if (!t) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    list = t;
    TRY_OUT(header_add(&list, &line, "Content-Type", content_type));
    TRY_OUT(header_add(&list, &line, "Host", c->host));
    TRY_OUT(header_add(&list, &line, "X-Amz-Date", amz_date));
    if (target) {
        TRY_OUT(header_add(&list, &line, "X-Amz-Target", target));
    }
    if (c->creds.session_token.len) {
        TRY_OUT(header_add(&list, &line, "X-Amz-Security-Token", (const char *)c->creds.session_token.data));
    }
    TRY_OUT(header_add(&list, &line, "Authorization", (const char *)auth.data));

    struct awsclient_sink sink = {&ans->body, c->max_response, false};
    coffer_buf_reset(&ans->body);
    ans->status = 0;
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)body.ptr); /* not copied: the caller wipes it */
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body.len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    *cc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    *too_big = sink.too_big;
    if (*cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ans->status);
    }
out:
    headers_free(list);
    coffer_buf_free(&auth);
    coffer_buf_free(&line);
    return rc;
}

typedef void (*error_parser)(coffer_cursor body, char type[AWSCLIENT_ERROR_TYPE_LEN],
                             char message[AWSCLIENT_ERROR_MESSAGE_LEN]);

/* The retry loop shared by both protocols; `what` names the call in messages. */
static coffer_err post_call(awsclient *c, const char *what, const char *content_type, const char *target,
                            coffer_cursor body, error_parser parse_error, struct awsclient_answer *ans)
{
    coffer_err rc = COFFER_OK;

    pthread_mutex_lock(&c->lock);
    for (int attempt = 1;; attempt++) {
        CURLcode cc = CURLE_OK;
        bool too_big = false;
        ans->error_type[0] = ans->error_message[0] = '\0';
        TRY_OUT(post_once(c, content_type, target, body, ans, &cc, &too_big));
        bool last = attempt >= c->max_attempts;
        if (too_big) {
            FAIL_OUT(COFFER_ERR_LIMIT, "%s: the answer is larger than %zu bytes", what, c->max_response);
        }
        if (cc != CURLE_OK) {
            if (last || !curl_retryable(cc)) {
                FAIL_OUT(COFFER_ERR_UNAVAILABLE, "%s to %s failed: %s", what, c->endpoint,
                         curl_easy_strerror(cc));
            }
        } else if (ans->status >= 200 && ans->status < 300) {
            break;
        } else {
            parse_error(coffer_buf_cursor(&ans->body), ans->error_type, ans->error_message);
            if (last || !awsclient_retryable(ans->status, ans->error_type)) {
                break;
            }
        }
        usleep((useconds_t)(AWSCLIENT_BACKOFF_BASE_MS << (attempt - 1)) * 1000u);
    }
out:
    pthread_mutex_unlock(&c->lock);
    return rc;
}

coffer_err awsclient_json_call(awsclient *c, const char *target, coffer_cursor body,
                               struct awsclient_answer *ans)
{
    return post_call(c, target, AWSCLIENT_JSON_CONTENT_TYPE, target, body, awsclient_json_error, ans);
}

coffer_err awsclient_query_call(awsclient *c, const char *action, const char *version,
                                const struct awsclient_param *params, size_t n_params,
                                struct awsclient_answer *ans)
{
    coffer_err rc = COFFER_OK;
    coffer_buf form = COFFER_SECRET_BUF_INIT; /* parameters may be secrets (passwords, policies) */

    TRY_OUT(coffer_buf_append_str(&form, "Action="));
    TRY_OUT(form_append(&form, action));
    TRY_OUT(coffer_buf_append_str(&form, "&Version="));
    TRY_OUT(form_append(&form, version));
    for (size_t i = 0; i < n_params; i++) {
        TRY_OUT(coffer_buf_append_u8(&form, '&'));
        TRY_OUT(form_append(&form, params[i].name));
        TRY_OUT(coffer_buf_append_u8(&form, '='));
        TRY_OUT(form_append(&form, params[i].value));
    }
    TRY_OUT(post_call(c, action, AWSCLIENT_QUERY_CONTENT_TYPE, NULL, coffer_buf_cursor(&form),
                      awsclient_query_error, ans));
out:
    coffer_buf_free(&form);
    return rc;
}
