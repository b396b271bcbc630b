/*
 * `coffer admin`: operator commands against a running cofferd, signed with the operator
 * credentials the server wrote at first start.
 *
 *   coffer admin create-account NAME [--data-dir DIR] [--endpoint URL]
 *   coffer admin list-accounts [--data-dir DIR] [--endpoint URL]
 *
 * The client speaks the server's CofferAdmin JSON service (X-Amz-Target "CofferAdmin.<op>",
 * SigV4 signing name "coffer-admin") over libcurl: credentials from DIR/credentials (profile
 * "coffer"), region from DIR/config, the CA from DIR/tls/ca.pem, and the endpoint from
 * --endpoint or else DIR/endpoint (written by cofferd once it listens).
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/sigv4.h"
#include "common/buf.h"
#include "common/secret.h"

#define ADMIN_DEFAULT_DATA_DIR "coffer-data"
#define ADMIN_PROFILE "coffer"
#define ADMIN_SERVICE "coffer-admin"
#define ADMIN_TARGET_PREFIX "CofferAdmin."
#define ADMIN_CONTENT_TYPE "application/x-amz-json-1.1"
#define ADMIN_MAX_RESPONSE (1024 * 1024)
#define ADMIN_LINE_MAX 1024
#define ADMIN_TIMEOUT_S 30L

struct admin_opts {
    const char *data_dir;
    const char *endpoint; /* NULL: read DIR/endpoint */
};

struct admin_client {
    char endpoint[ADMIN_LINE_MAX];
    char host[ADMIN_LINE_MAX]; /* host[:port] of the endpoint, the signed Host header */
    char region[64];
    char akid[129];
    coffer_buf secret; /* secret buffer */
    char ca[ADMIN_LINE_MAX];
};

static void admin_usage(FILE *f)
{
    fprintf(f, "usage: coffer admin create-account NAME [--data-dir DIR] [--endpoint URL]\n"
               "       coffer admin list-accounts [--data-dir DIR] [--endpoint URL]\n\n"
               "Talks to a running cofferd with the operator credentials of DIR (default ./%s):\n"
               "DIR/credentials (profile %s), DIR/config (region), DIR/tls/ca.pem and DIR/endpoint.\n"
               "create-account prints {\"AccountId\",\"AccessKeyId\",\"SecretAccessKey\"} for the new\n"
               "account's administrator (its root).\n",
               ADMIN_DEFAULT_DATA_DIR, ADMIN_PROFILE);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
    return s;
}

/*
 * Reads `key` from section `section` of an INI file (AWS shared credentials/config format).
 * Appends the value to `out`. Returns 0 when found.
 */
static int ini_get(const char *path, const char *section, const char *key, coffer_buf *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[ADMIN_LINE_MAX];
    bool in_section = false;
    int found = -1;
    while (found != 0 && fgets(line, sizeof(line), f) != NULL) {
        char *l = trim(line);
        if (l[0] == '[') {
            char *end = strchr(l, ']');
            if (end != NULL) {
                *end = '\0';
            }
            in_section = strcmp(trim(l + 1), section) == 0;
            continue;
        }
        char *eq = strchr(l, '=');
        if (!in_section || eq == NULL) {
            continue;
        }
        *eq = '\0';
        if (strcmp(trim(l), key) == 0) {
            char *v = trim(eq + 1);
            found = coffer_buf_append_str(out, v) == COFFER_OK && coffer_buf_nul_terminate(out) == COFFER_OK ? 0 : -1;
        }
    }
    coffer_secure_zero(line, sizeof(line));
    fclose(f);
    return found;
}

static int read_first_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char *ok = fgets(out, (int)cap, f);
    fclose(f);
    if (ok == NULL) {
        return -1;
    }
    char *t = trim(out);
    memmove(out, t, strlen(t) + 1);
    return out[0] ? 0 : -1;
}

/* host[:port] of "scheme://host[:port][/path]". */
static int endpoint_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    if (p == NULL) {
        return -1;
    }
    p += 3;
    size_t n = strcspn(p, "/?#");
    if (n == 0 || n >= cap) {
        return -1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static int admin_client_load(const struct admin_opts *o, struct admin_client *c)
{
    char path[ADMIN_LINE_MAX];
    coffer_buf tmp = COFFER_BUF_INIT;
    if (o->endpoint != NULL) {
        snprintf(c->endpoint, sizeof(c->endpoint), "%s", o->endpoint);
    } else {
        snprintf(path, sizeof(path), "%s/endpoint", o->data_dir);
        if (read_first_line(path, c->endpoint, sizeof(c->endpoint)) != 0) {
            fprintf(stderr, "coffer admin: no endpoint: %s is missing (is cofferd running?); use --endpoint URL\n",
                    path);
            return -1;
        }
    }
    if (endpoint_host(c->endpoint, c->host, sizeof(c->host)) != 0) {
        fprintf(stderr, "coffer admin: invalid endpoint URL '%s'\n", c->endpoint);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/credentials", o->data_dir);
    if (ini_get(path, ADMIN_PROFILE, "aws_access_key_id", &tmp) != 0 || tmp.len >= sizeof(c->akid) ||
        ini_get(path, ADMIN_PROFILE, "aws_secret_access_key", &c->secret) != 0) {
        fprintf(stderr, "coffer admin: cannot read the operator credentials (profile %s) from %s\n", ADMIN_PROFILE,
                path);
        coffer_buf_free(&tmp);
        return -1;
    }
    snprintf(c->akid, sizeof(c->akid), "%s", (const char *)tmp.data);
    coffer_buf_reset(&tmp);
    snprintf(path, sizeof(path), "%s/config", o->data_dir);
    if (ini_get(path, "profile " ADMIN_PROFILE, "region", &tmp) == 0 && tmp.len < sizeof(c->region)) {
        snprintf(c->region, sizeof(c->region), "%s", (const char *)tmp.data);
    } else {
        snprintf(c->region, sizeof(c->region), "us-east-1");
    }
    coffer_buf_free(&tmp);
    snprintf(c->ca, sizeof(c->ca), "%s/tls/ca.pem", o->data_dir);
    if (access(c->ca, R_OK) != 0) {
        c->ca[0] = '\0'; /* the system trust store, e.g. for an operator-supplied certificate */
    }
    return 0;
}

struct admin_response {
    coffer_buf body;
    bool too_big;
};

static size_t admin_write_cb(char *p, size_t size, size_t nmemb, void *ctx)
{
    struct admin_response *r = ctx;
    size_t n = size * nmemb;
    if (r->body.len + n > ADMIN_MAX_RESPONSE || coffer_buf_append(&r->body, p, n) != COFFER_OK) {
        r->too_big = true;
        return 0;
    }
    return n;
}

static struct curl_slist *header_add(struct curl_slist *list, const char *name, const char *value, bool *ok)
{
    char line[ADMIN_LINE_MAX * 2];
    int w = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (w < 0 || (size_t)w >= sizeof(line)) {
        *ok = false;
        return list;
    }
    struct curl_slist *t = curl_slist_append(list, line);
    if (t == NULL) {
        *ok = false;
        return list;
    }
    return t;
}

/* One signed call; on HTTP 200 appends the response body to `out` (secret buffer) and returns 0. */
static int admin_call(struct admin_client *c, const char *op, const char *body, coffer_buf *out)
{
    int ret = -1;
    coffer_buf auth = COFFER_BUF_INIT;
    struct admin_response r = {.body = COFFER_SECRET_BUF_INIT};
    struct curl_slist *list = NULL;
    CURL *curl = NULL;
    char amz_date[17], target[128];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(target, sizeof(target), ADMIN_TARGET_PREFIX "%s", op);
    struct sigv4_header hs[4] = {
        {"content-type", ADMIN_CONTENT_TYPE},
        {"host", c->host},
        {"x-amz-date", amz_date},
        {"x-amz-target", target},
    };
    struct sigv4_request req = {"POST", "/", "", hs, 4, coffer_cursor_from_str(body), false};
    struct sigv4_credentials creds = {c->akid, (const char *)c->secret.data, NULL};
    if (sigv4_sign(&req, &creds, c->region, ADMIN_SERVICE, amz_date, "content-type;host;x-amz-date;x-amz-target",
                   &auth) != COFFER_OK ||
        coffer_buf_nul_terminate(&auth) != COFFER_OK) {
        fprintf(stderr, "coffer admin: cannot sign the request: %s\n", coffer_last_message());
        goto out;
    }
    bool ok = true;
    list = header_add(list, "Content-Type", ADMIN_CONTENT_TYPE, &ok);
    list = header_add(list, "Host", c->host, &ok);
    list = header_add(list, "X-Amz-Date", amz_date, &ok);
    list = header_add(list, "X-Amz-Target", target, &ok);
    list = header_add(list, "Authorization", (const char *)auth.data, &ok);
    list = ok ? curl_slist_append(list, "Expect:") : list;
    if (!ok || list == NULL || (curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "coffer admin: out of memory\n");
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_URL, c->endpoint);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, ADMIN_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca[0]) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, c->ca);
    }
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "coffer-admin");
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, admin_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    CURLcode cc = curl_easy_perform(curl);
    if (cc != CURLE_OK) {
        fprintf(stderr, "coffer admin: request to %s failed: %s\n", c->endpoint,
                r.too_big ? "response too large" : curl_easy_strerror(cc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        json_t *err = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
        const char *type = json_string_value(json_object_get(err, "__type"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        fprintf(stderr, "coffer admin: %s failed (HTTP %ld): %s%s%s\n", op, status, type ? type : "error",
                msg ? ": " : "", msg ? msg : "");
        json_decref(err);
        goto out;
    }
    if (coffer_buf_append_cur(out, coffer_buf_cursor(&r.body)) != COFFER_OK ||
        coffer_buf_nul_terminate(out) != COFFER_OK) {
        goto out;
    }
    ret = 0;
out:
    curl_easy_cleanup(curl);
    curl_slist_free_all(list);
    coffer_buf_free(&auth);
    coffer_buf_free(&r.body);
    return ret;
}

/* Prints the JSON response indented; only the members named (or all when names is NULL). */
static int print_response(const coffer_buf *resp, const char *const *names)
{
    json_t *j = json_loadb((const char *)resp->data, resp->len, 0, NULL);
    if (!json_is_object(j)) {
        fprintf(stderr, "coffer admin: the server answered with malformed JSON\n");
        json_decref(j);
        return -1;
    }
    json_t *out = j;
    if (names != NULL) {
        out = json_object();
        for (size_t i = 0; names[i]; i++) {
            json_t *v = json_object_get(j, names[i]);
            if (v == NULL) {
                fprintf(stderr, "coffer admin: the response lacks %s\n", names[i]);
                json_decref(out);
                json_decref(j);
                return -1;
            }
            json_object_set(out, names[i], v);
        }
    }
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    int ret = text != NULL && printf("%s\n", text) > 0 && fflush(stdout) == 0 ? 0 : -1;
    if (text != NULL) {
        coffer_secure_zero(text, strlen(text));
        free(text);
    }
    if (out != j) {
        json_decref(out);
    }
    json_t *sv = json_object_get(j, "SecretAccessKey");
    if (json_is_string(sv)) {
        coffer_secure_zero((char *)json_string_value(sv), json_string_length(sv));
    }
    json_decref(j);
    return ret;
}

int cli_admin_main(int argc, char **argv)
{
    struct admin_opts o = {.data_dir = ADMIN_DEFAULT_DATA_DIR, .endpoint = NULL};
    const char *cmd = NULL, *name = NULL;
    if (argc < 2 || cli_is_help(argv[1])) {
        admin_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            o.data_dir = argv[++i];
        } else if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc) {
            o.endpoint = argv[++i];
        } else if (cli_is_help(argv[i])) {
            admin_usage(stdout);
            return CLI_EXIT_OK;
        } else if (argv[i][0] != '-' && name == NULL) {
            name = argv[i];
        } else {
            fprintf(stderr, "coffer admin: unexpected argument '%s'\n", argv[i]);
            admin_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    bool create = strcmp(cmd, "create-account") == 0, list = strcmp(cmd, "list-accounts") == 0;
    if ((!create && !list) || (create && name == NULL) || (list && name != NULL)) {
        admin_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    int ret = CLI_EXIT_FAILED;
    struct admin_client c;
    memset(&c, 0, sizeof(c));
    coffer_buf_init(&c.secret, true);
    coffer_buf resp = COFFER_SECRET_BUF_INIT;
    char *body = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "coffer admin: cannot initialise libcurl\n");
        goto out;
    }
    if (admin_client_load(&o, &c) != 0) {
        goto out;
    }
    json_t *req = create ? json_pack("{s:s}", "AccountName", name) : json_object();
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL) {
        fprintf(stderr, "coffer admin: the account name must be valid UTF-8\n");
        goto out;
    }
    static const char *const created[] = {"AccountId", "AccessKeyId", "SecretAccessKey", NULL};
    if (admin_call(&c, create ? "CreateAccount" : "ListAccounts", body, &resp) == 0 &&
        print_response(&resp, create ? created : NULL) == 0) {
        ret = CLI_EXIT_OK;
    }
out:
    free(body);
    coffer_buf_free(&resp);
    coffer_buf_free(&c.secret);
    curl_global_cleanup();
    return ret;
}
