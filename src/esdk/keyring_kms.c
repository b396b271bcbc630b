/*
 * AWS KMS keyring (aws-kms-keyring.md, aws-kms-discovery-keyring.md): data keys are generated
 * and wrapped by a KMS that speaks the AWS JSON 1.1 protocol (Coffer's cofferd, or AWS KMS
 * itself). This is the client side of listener -> auth -> service: requests are signed with
 * SigV4 (auth/sigv4.h) and sent over HTTPS with libcurl.
 *
 * Encrypt: the generator (first key id) calls GenerateDataKey when the materials have no data
 * key yet, else Encrypt; every other key id calls Encrypt. Each result becomes an EDK with
 * provider id "aws-kms" and provider info = the key ARN that KMS returned. The encryption
 * context is sent as the KMS EncryptionContext, so KMS binds the data key to it.
 *
 * Decrypt: each "aws-kms" EDK whose ARN is one of our key ids (strict) or passes the
 * partition/account filter (discovery) is sent to Decrypt with KeyId = that ARN; the first
 * answer whose KeyId equals the ARN and whose plaintext has the suite's key length wins.
 *
 * Threading: one CURL handle per keyring (keep-alive across calls) behind a mutex; the
 * credentials are resolved once at construction and never change.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/sigv4.h"
#include "common/codec.h"
#include "common/secret.h"
#include "esdk/esdk_internal.h"

#define KMS_PROVIDER_ID "aws-kms"
#define KMS_SERVICE "kms"
#define KMS_JSON_CONTENT_TYPE "application/x-amz-json-1.1"
#define KMS_MAX_RESPONSE (64u * 1024u) /* KMS answers are small; refuse anything bigger */
#define KMS_MAX_ATTEMPTS 4             /* throttling and 5xx are retried with backoff */
#define KMS_BACKOFF_BASE_MS 50
#define KMS_TIMEOUT_S 30L
#define KMS_MAX_ARN_LEN 2048
#define KMS_MAX_LINE 4096

struct kms_keyring {
    coffer_keyring base;
    char **key_ids; /* strict: configured ids; [0] is the generator */
    size_t n_key_ids;
    bool discovery;
    char *partition; /* discovery filter, NULL = none */
    char **accounts; /* discovery filter, n_accounts == 0 = none */
    size_t n_accounts;
    char *region;
    char *endpoint; /* "https://host[:port]" without a trailing slash */
    char *host;     /* Host header value: host[:port] */
    char *ca_bundle;
    char *akid;
    coffer_buf secret_key; /* secret buffer, NUL-terminated */
    char *session_token;   /* NULL when none */
    pthread_mutex_t lock;  /* guards curl */
    CURL *curl;
};

/* ================================================================================================
 * Small string helpers
 * ============================================================================================= */

static char *kms_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void kms_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static coffer_err kms_strv_dup(const char *const *in, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0) {
        return COFFER_OK;
    }
    char **v = calloc(n, sizeof(*v));
    if (!v) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (!in[i] || !in[i][0] || !(v[i] = strdup(in[i]))) {
            kms_strv_free(v, n);
            return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: empty or missing string in a list option");
        }
    }
    *out = v;
    return COFFER_OK;
}

static const char *kms_env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

/* ================================================================================================
 * Key ARNs (aws-kms-key-arn.md): arn:<partition>:kms:<region>:<account>:key/<id> or alias/<name>
 * ============================================================================================= */

struct kms_arn {
    coffer_cursor partition, service, region, account, resource;
};

static bool kms_arn_field(coffer_cursor *c, coffer_cursor *out)
{
    const uint8_t *colon = memchr(c->ptr, ':', c->len);
    if (!colon) {
        return false;
    }
    size_t n = (size_t)(colon - c->ptr);
    *out = coffer_cursor_from(c->ptr, n);
    *c = coffer_cursor_from(colon + 1, c->len - n - 1);
    return n > 0;
}

static bool kms_arn_parse(coffer_cursor s, struct kms_arn *a)
{
    coffer_cursor c = s, prefix;
    if (s.len == 0 || s.len > KMS_MAX_ARN_LEN || !kms_arn_field(&c, &prefix) || !coffer_cursor_eq_str(prefix, "arn") ||
        !kms_arn_field(&c, &a->partition) || !kms_arn_field(&c, &a->service) ||
        !coffer_cursor_eq_str(a->service, KMS_SERVICE) || !kms_arn_field(&c, &a->region) ||
        !kms_arn_field(&c, &a->account) || c.len == 0) {
        return false;
    }
    a->resource = c;
    const uint8_t *slash = memchr(c.ptr, '/', c.len);
    if (!slash || slash == c.ptr || (size_t)(slash - c.ptr) + 1 == c.len) {
        return false;
    }
    coffer_cursor type = coffer_cursor_from(c.ptr, (size_t)(slash - c.ptr));
    return coffer_cursor_eq_str(type, "key") || coffer_cursor_eq_str(type, "alias");
}

static char *kms_cursor_strdup(coffer_cursor c)
{
    char *s = malloc(c.len + 1);
    if (s) {
        memcpy(s, c.ptr, c.len);
        s[c.len] = '\0';
    }
    return s;
}

/* ================================================================================================
 * Shared config and credentials files (INI as the AWS CLI writes them)
 * ============================================================================================= */

static char *kms_trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) {
        s[--n] = '\0';
    }
    return s;
}

/*
 * Reads `key` from section `section` of an INI file. Returns a malloc'd value (wiped and freed
 * by the caller when secret) or NULL when absent or unreadable.
 */
static char *kms_ini_get(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    char line[KMS_MAX_LINE];
    bool in_section = false;
    char *val = NULL;
    while (!val && fgets(line, sizeof(line), f)) {
        char *p = kms_trim(line);
        if (*p == '#' || *p == ';' || *p == '\0') {
            continue;
        }
        if (*p == '[') {
            char *end = strchr(p, ']');
            if (end) {
                *end = '\0';
                in_section = strcmp(kms_trim(p + 1), section) == 0;
            }
            continue;
        }
        char *eq = strchr(p, '=');
        if (!in_section || !eq) {
            continue;
        }
        *eq = '\0';
        if (strcmp(kms_trim(p), key) == 0) {
            val = strdup(kms_trim(eq + 1));
        }
    }
    coffer_secure_zero(line, sizeof(line));
    fclose(f);
    return val;
}

static char *kms_home_path(const char *env_name, const char *rel)
{
    const char *p = kms_env(env_name);
    if (p) {
        return strdup(p);
    }
    const char *home = kms_env("HOME");
    if (!home) {
        return NULL;
    }
    size_t n = strlen(home) + strlen(rel) + 2;
    char *s = malloc(n);
    if (s) {
        snprintf(s, n, "%s/%s", home, rel);
    }
    return s;
}

static void kms_free_secret_str(char *s)
{
    if (s) {
        coffer_secure_zero(s, strlen(s));
        free(s);
    }
}

/* Environment first, then the shared credentials file, as the AWS SDKs do. */
static coffer_err kms_load_credentials(struct kms_keyring *k, const char *profile)
{
    coffer_err rc = COFFER_OK;
    char *path = NULL, *akid = NULL, *secret = NULL, *token = NULL;
    const char *env_akid = kms_env("AWS_ACCESS_KEY_ID"), *env_secret = kms_env("AWS_SECRET_ACCESS_KEY");

    if (env_akid && env_secret) {
        akid = strdup(env_akid);
        secret = strdup(env_secret);
        token = kms_strdup(kms_env("AWS_SESSION_TOKEN"));
    } else {
        path = kms_home_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        if (path) {
            akid = kms_ini_get(path, profile, "aws_access_key_id");
            secret = kms_ini_get(path, profile, "aws_secret_access_key");
            token = kms_ini_get(path, profile, "aws_session_token");
        }
    }
    if (!akid || !secret || !akid[0] || !secret[0]) {
        FAIL_OUT(COFFER_ERR_CONFIG, "aws-kms keyring: no credentials (environment or profile \"%s\")", profile);
    }
    coffer_buf_init(&k->secret_key, true);
    GUARD(coffer_buf_append_str(&k->secret_key, secret));
    GUARD(coffer_buf_nul_terminate(&k->secret_key));
    k->akid = akid;
    k->session_token = token;
    akid = token = NULL;
out:
    free(path);
    free(akid);
    kms_free_secret_str(secret);
    kms_free_secret_str(token);
    return rc;
}

/* Region from the config file: "[default]" or "[profile NAME]". */
static char *kms_config_region(const char *profile)
{
    char *path = kms_home_path("AWS_CONFIG_FILE", ".aws/config");
    if (!path) {
        return NULL;
    }
    char section[512];
    if (strcmp(profile, "default") == 0) {
        snprintf(section, sizeof(section), "default");
    } else {
        snprintf(section, sizeof(section), "profile %s", profile);
    }
    char *r = kms_ini_get(path, section, "region");
    if (!r && strcmp(profile, "default") == 0) {
        r = kms_ini_get(path, "profile default", "region");
    }
    free(path);
    return r;
}

/* ================================================================================================
 * HTTP + SigV4
 * ============================================================================================= */

struct kms_response {
    coffer_buf body; /* secret buffer: may hold a plaintext data key */
    bool too_big;
};

static size_t kms_write_cb(char *p, size_t size, size_t nmemb, void *ctx)
{
    struct kms_response *r = ctx;
    size_t n = size * nmemb;
    if (r->body.len + n > KMS_MAX_RESPONSE || coffer_buf_append(&r->body, p, n) != COFFER_OK) {
        r->too_big = true;
        return 0;
    }
    return n;
}

static void kms_amz_date(char out[17])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* One signed POST. On success *status and r->body are filled. Caller holds k->lock. */
static coffer_err kms_post_once(struct kms_keyring *k, const char *target, coffer_cursor body, long *status,
                                struct kms_response *r)
{
    coffer_err rc = COFFER_OK;
    coffer_buf auth = COFFER_BUF_INIT, hdr = COFFER_BUF_INIT;
    struct curl_slist *list = NULL;
    char amz_date[17], target_hdr[128];

    kms_amz_date(amz_date);
    snprintf(target_hdr, sizeof(target_hdr), "TrentService.%s", target);
    struct sigv4_header hs[5] = {
        {"content-type", KMS_JSON_CONTENT_TYPE},
        {"host", k->host},
        {"x-amz-date", amz_date},
        {"x-amz-target", target_hdr},
        {"x-amz-security-token", k->session_token},
    };
    struct sigv4_request req = {"POST", "/", "", hs, k->session_token ? 5 : 4, body, false};
    struct sigv4_credentials creds = {k->akid, (const char *)k->secret_key.data, k->session_token};
    const char *signed_hdrs = k->session_token ? "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
                                               : "content-type;host;x-amz-date;x-amz-target";
    GUARD(sigv4_sign(&req, &creds, k->region, KMS_SERVICE, amz_date, signed_hdrs, &auth));
    GUARD(coffer_buf_append_str(&hdr, "Authorization: "));
    GUARD(coffer_buf_append_cur(&hdr, coffer_buf_cursor(&auth)));
    GUARD(coffer_buf_nul_terminate(&hdr));

    char line[KMS_MAX_LINE];
    const char *fixed[] = {"Content-Type: " KMS_JSON_CONTENT_TYPE, "Expect:", NULL};
    for (size_t i = 0; fixed[i]; i++) {
        struct curl_slist *t = curl_slist_append(list, fixed[i]);
        if (!t) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        list = t;
    }
    const char *pairs[][2] = {{"Host", k->host},
                              {"X-Amz-Date", amz_date},
                              {"X-Amz-Target", target_hdr},
                              {"X-Amz-Security-Token", k->session_token}};
    for (size_t i = 0; i < 4; i++) {
        if (!pairs[i][1]) {
            continue;
        }
        int w = snprintf(line, sizeof(line), "%s: %s", pairs[i][0], pairs[i][1]);
        if (w < 0 || (size_t)w >= sizeof(line)) {
            FAIL_OUT(COFFER_ERR_CONFIG, "aws-kms: %s header too long", pairs[i][0]);
        }
        struct curl_slist *t = curl_slist_append(list, line);
        if (!t) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        list = t;
    }
    struct curl_slist *t = curl_slist_append(list, (const char *)hdr.data);
    if (!t) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    list = t;

    CURL *c = k->curl;
    coffer_buf_reset(&r->body);
    r->too_big = false;
    curl_easy_setopt(c, CURLOPT_URL, k->endpoint);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body.ptr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, kms_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    if (cc != CURLE_OK) {
        FAIL_OUT(r->too_big ? COFFER_ERR_KEYRING : COFFER_ERR_UNAVAILABLE, "aws-kms: %s to %s failed: %s", target,
                 k->endpoint, r->too_big ? "response too large" : curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
out:
    curl_slist_free_all(list);
    coffer_buf_free(&auth);
    coffer_buf_free(&hdr);
    return rc;
}

/* The AWS error type of a failed call: "__type" without any "namespace#" prefix. */
static void kms_error_type(json_t *doc, char *type, size_t type_len, char *msg, size_t msg_len)
{
    const char *t = json_string_value(json_object_get(doc, "__type"));
    const char *m = json_string_value(json_object_get(doc, "message"));
    if (!m) {
        m = json_string_value(json_object_get(doc, "Message"));
    }
    if (t && strchr(t, '#')) {
        t = strchr(t, '#') + 1;
    }
    snprintf(type, type_len, "%s", t ? t : "UnknownError");
    snprintf(msg, msg_len, "%s", m ? m : "");
}

/*
 * Calls TrentService.<target> with a JSON request; on HTTP 200 returns the parsed answer in
 * *out. KMS errors become `fail_code` with "<Op>: <ErrorType>: <message>" as the detail.
 * Throttling and 5xx answers are retried with exponential backoff.
 */
static coffer_err kms_call(struct kms_keyring *k, const char *target, json_t *request, coffer_err fail_code,
                           json_t **out)
{
    coffer_err rc = COFFER_OK;
    struct kms_response r = {COFFER_BUF_INIT, false};
    char *body = NULL;
    json_t *doc = NULL;
    bool locked = false;

    coffer_buf_init(&r.body, true);
    *out = NULL;
    /* The request body may carry a plaintext data key (Encrypt): build it in memory we wipe. */
    body = json_dumps(request, JSON_COMPACT);
    if (!body) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&k->lock);
    locked = true;
    for (int attempt = 0;; attempt++) {
        long status = 0;
        GUARD(kms_post_once(k, target, coffer_cursor_from(body, strlen(body)), &status, &r));
        json_decref(doc);
        doc = json_loadb((const char *)r.body.data, r.body.len, JSON_REJECT_DUPLICATES, NULL);
        if (status == 200) {
            if (!json_is_object(doc)) {
                FAIL_OUT(COFFER_ERR_KEYRING, "aws-kms: %s: malformed response", target);
            }
            break;
        }
        char type[128], msg[256];
        kms_error_type(doc, type, sizeof(type), msg, sizeof(msg));
        bool retry = status >= 500 || strcmp(type, "ThrottlingException") == 0;
        if (!retry || attempt + 1 >= KMS_MAX_ATTEMPTS) {
            FAIL_OUT(fail_code, "aws-kms: %s: %s (HTTP %ld)%s%s", target, type, status, msg[0] ? ": " : "", msg);
        }
        usleep((useconds_t)(KMS_BACKOFF_BASE_MS << attempt) * 1000u);
    }
    *out = doc;
    doc = NULL;
out:
    if (locked) {
        pthread_mutex_unlock(&k->lock);
    }
    json_decref(doc);
    kms_free_secret_str(body);
    coffer_buf_free(&r.body);
    return rc;
}

/* ================================================================================================
 * Request building and response checking
 * ============================================================================================= */

static coffer_err kms_json_set(json_t *o, const char *key, json_t *v)
{
    if (!v || json_object_set_new(o, key, v) != 0) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

/* KMS EncryptionContext: a JSON object of the context's pairs (UTF-8 by construction). */
static coffer_err kms_json_ec(json_t *req, const coffer_ec *ec)
{
    size_t n = coffer_ec_count(ec);
    if (n == 0) {
        return COFFER_OK;
    }
    json_t *o = json_object();
    if (!o) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *key, *val;
        size_t key_len, val_len;
        char *ks = NULL;
        if (coffer_ec_get_at(ec, i, &key, &key_len, &val, &val_len) != 0 ||
            !(ks = kms_cursor_strdup(coffer_cursor_from(key, key_len)))) {
            json_decref(o);
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        json_t *v = json_stringn((const char *)val, val_len);
        int bad = !v || strlen(ks) != key_len || json_object_set_new(o, ks, v) != 0;
        free(ks);
        if (bad) {
            json_decref(o);
            return coffer_fail(COFFER_ERR_KEYRING, "aws-kms: encryption context is not valid UTF-8 text");
        }
    }
    return kms_json_set(req, "EncryptionContext", o);
}

static coffer_err kms_json_b64(json_t *req, const char *key, coffer_cursor bytes, bool secret)
{
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    coffer_buf_init(&b, secret);
    GUARD(coffer_b64_encode(bytes, &b));
    GUARD(kms_json_set(req, key, json_stringn((const char *)b.data, b.len)));
out:
    coffer_buf_free(&b);
    return rc;
}

/*
 * Jansson keeps string values in its own heap; a value holding key material is wiped in place
 * before the document is released so the plaintext does not linger in freed memory.
 */
static void kms_json_wipe_string(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (json_is_string(v)) {
        coffer_secure_zero((void *)json_string_value(v), json_string_length(v));
    }
}

/* Reads a base64 field of the answer into `out` (secret when it holds a key). */
static coffer_err kms_json_get_b64(json_t *doc, const char *op, const char *key, coffer_buf *out)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_string(v) ||
        coffer_b64_decode(coffer_cursor_from(json_string_value(v), json_string_length(v)), out) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_KEYRING, "aws-kms: %s: response has no valid %s", op, key);
    }
    return COFFER_OK;
}

/* Adds the EDK for an answer of GenerateDataKey / Encrypt: provider info = the returned ARN. */
static coffer_err kms_add_edk(coffer_enc_materials *m, json_t *doc, const char *op)
{
    coffer_err rc = COFFER_OK;
    coffer_buf ct = COFFER_BUF_INIT;
    struct kms_arn arn;
    json_t *kid = json_object_get(doc, "KeyId");

    /* aws-kms-keyring.md §OnEncrypt: the response KeyId MUST be a valid key ARN */
    if (!json_is_string(kid) ||
        !kms_arn_parse(coffer_cursor_from(json_string_value(kid), json_string_length(kid)), &arn)) {
        FAIL_OUT(COFFER_ERR_KEYRING, "aws-kms: %s: response KeyId is not a key ARN", op);
    }
    GUARD(kms_json_get_b64(doc, op, "CiphertextBlob", &ct));
    coffer_edk e = {(const uint8_t *)KMS_PROVIDER_ID, strlen(KMS_PROVIDER_ID),
                    (const uint8_t *)json_string_value(kid), json_string_length(kid), ct.data, ct.len};
    GUARD(esdk_enc_materials_add_edk(m, &e));
out:
    coffer_buf_free(&ct);
    return rc;
}

static coffer_err kms_generate(struct kms_keyring *k, coffer_enc_materials *m)
{
    coffer_err rc = COFFER_OK;
    coffer_buf pt = COFFER_BUF_INIT;
    json_t *req = json_object(), *resp = NULL;
    size_t key_len = coffer_enc_materials_data_key_len(m);

    coffer_buf_init(&pt, true);
    if (!req) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    GUARD(kms_json_set(req, "KeyId", json_string(k->key_ids[0])));
    GUARD(kms_json_set(req, "NumberOfBytes", json_integer((json_int_t)key_len)));
    GUARD(kms_json_ec(req, coffer_enc_materials_ec(m)));
    GUARD(kms_call(k, "GenerateDataKey", req, COFFER_ERR_KEYRING, &resp));
    GUARD(kms_json_get_b64(resp, "GenerateDataKey", "Plaintext", &pt));
    if (pt.len != key_len) {
        FAIL_OUT(COFFER_ERR_KEYRING, "aws-kms: GenerateDataKey returned %zu bytes, the suite needs %zu", pt.len,
                 key_len);
    }
    GUARD(kms_add_edk(m, resp, "GenerateDataKey"));
    GUARD(esdk_enc_materials_set_data_key(m, pt.data, pt.len));
out:
    if (resp) {
        kms_json_wipe_string(resp, "Plaintext");
    }
    json_decref(resp);
    json_decref(req);
    coffer_buf_free(&pt);
    return rc;
}

static coffer_err kms_wrap(struct kms_keyring *k, const char *key_id, coffer_enc_materials *m)
{
    coffer_err rc = COFFER_OK;
    json_t *req = json_object(), *resp = NULL;
    const uint8_t *dk;
    size_t dk_len;

    coffer_enc_materials_data_key(m, &dk, &dk_len);
    if (!req) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    GUARD(kms_json_set(req, "KeyId", json_string(key_id)));
    GUARD(kms_json_b64(req, "Plaintext", coffer_cursor_from(dk, dk_len), true));
    GUARD(kms_json_ec(req, coffer_enc_materials_ec(m)));
    GUARD(kms_call(k, "Encrypt", req, COFFER_ERR_KEYRING, &resp));
    GUARD(kms_add_edk(m, resp, "Encrypt"));
out:
    if (req) {
        kms_json_wipe_string(req, "Plaintext");
    }
    json_decref(resp);
    json_decref(req);
    return rc;
}

static coffer_err kms_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct kms_keyring *k = (struct kms_keyring *)kr;
    const uint8_t *dk;
    size_t dk_len;

    /* aws-kms-discovery-keyring.md §OnEncrypt: a discovery keyring MUST fail */
    if (k->discovery || k->n_key_ids == 0) {
        return coffer_fail(COFFER_ERR_KEYRING, "aws-kms: a discovery keyring cannot encrypt");
    }
    coffer_enc_materials_data_key(m, &dk, &dk_len);
    if (!dk) {
        TRY(kms_generate(k, m));
    } else {
        TRY(kms_wrap(k, k->key_ids[0], m));
    }
    for (size_t i = 1; i < k->n_key_ids; i++) {
        TRY(kms_wrap(k, k->key_ids[i], m));
    }
    return COFFER_OK;
}

/* Is this EDK one we may send to KMS? Strict: exact key id; discovery: the filter. */
static bool kms_edk_wanted(const struct kms_keyring *k, const coffer_edk *e, struct kms_arn *arn)
{
    coffer_cursor info = coffer_cursor_from(e->provider_info, e->provider_info_len);
    if (!coffer_cursor_eq_str(coffer_cursor_from(e->provider_id, e->provider_id_len), KMS_PROVIDER_ID) ||
        !kms_arn_parse(info, arn)) {
        return false;
    }
    /* aws-kms-keyring.md §OnDecrypt: the provider info MUST be an ARN of resource type "key" */
    if (!coffer_cursor_eq_str(coffer_cursor_from(arn->resource.ptr, 4), "key/")) {
        return false;
    }
    if (!k->discovery) {
        for (size_t i = 0; i < k->n_key_ids; i++) {
            if (coffer_cursor_eq_str(info, k->key_ids[i])) {
                return true;
            }
        }
        return false;
    }
    /* aws-kms-discovery-keyring.md §OnDecrypt: only ARNs passing the filter */
    if (k->partition && !coffer_cursor_eq_str(arn->partition, k->partition)) {
        return false;
    }
    if (k->n_accounts == 0) {
        return true;
    }
    for (size_t i = 0; i < k->n_accounts; i++) {
        if (coffer_cursor_eq_str(arn->account, k->accounts[i])) {
            return true;
        }
    }
    return false;
}

static coffer_err kms_unwrap(struct kms_keyring *k, coffer_dec_materials *m, const coffer_edk *e)
{
    coffer_err rc = COFFER_OK;
    coffer_buf pt = COFFER_BUF_INIT;
    json_t *req = json_object(), *resp = NULL;
    size_t key_len = coffer_dec_materials_data_key_len(m);

    coffer_buf_init(&pt, true);
    if (!req) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    GUARD(kms_json_set(req, "KeyId", json_stringn((const char *)e->provider_info, e->provider_info_len)));
    GUARD(kms_json_b64(req, "CiphertextBlob", coffer_cursor_from(e->ciphertext, e->ciphertext_len), false));
    GUARD(kms_json_ec(req, coffer_dec_materials_ec(m)));
    GUARD(kms_call(k, "Decrypt", req, COFFER_ERR_CANNOT_DECRYPT, &resp));
    /* aws-kms-keyring.md §OnDecrypt: the KeyId MUST equal the EDK's ARN, the key MUST fit the suite */
    json_t *kid = json_object_get(resp, "KeyId");
    if (!json_is_string(kid) ||
        !coffer_cursor_eq(coffer_cursor_from(json_string_value(kid), json_string_length(kid)),
                          coffer_cursor_from(e->provider_info, e->provider_info_len))) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "aws-kms: Decrypt answered for a different key");
    }
    GUARD(kms_json_get_b64(resp, "Decrypt", "Plaintext", &pt));
    if (pt.len != key_len) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "aws-kms: Decrypt returned %zu bytes, the suite needs %zu", pt.len,
                 key_len);
    }
    GUARD(esdk_dec_materials_set_data_key(m, pt.data, pt.len));
out:
    if (resp) {
        kms_json_wipe_string(resp, "Plaintext");
    }
    json_decref(resp);
    json_decref(req);
    coffer_buf_free(&pt);
    return rc;
}

static coffer_err kms_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                 size_t n)
{
    struct kms_keyring *k = (struct kms_keyring *)kr;
    coffer_err first = COFFER_OK;
    char first_msg[512] = "";

    if (coffer_dec_materials_has_data_key(m)) {
        return COFFER_OK;
    }
    for (size_t i = 0; i < n; i++) {
        struct kms_arn arn;
        if (!kms_edk_wanted(k, &edks[i], &arn)) {
            continue;
        }
        coffer_err rc = kms_unwrap(k, m, &edks[i]);
        if (rc == COFFER_OK) {
            coffer_clear_err();
            return COFFER_OK;
        }
        if (first == COFFER_OK) {
            first = rc;
            snprintf(first_msg, sizeof(first_msg), "%s", coffer_last_message());
        }
    }
    if (first == COFFER_OK) {
        return COFFER_OK; /* nothing of ours: the caller reports "cannot decrypt" */
    }
    /* Every attempt failed: report the first KMS error, as a decrypt failure. */
    return coffer_fail(first == COFFER_ERR_NOMEM ? first : COFFER_ERR_CANNOT_DECRYPT, "%s", first_msg);
}

static void kms_destroy(coffer_keyring *kr)
{
    struct kms_keyring *k = (struct kms_keyring *)kr;
    if (k->curl) {
        curl_easy_cleanup(k->curl);
        pthread_mutex_destroy(&k->lock);
    }
    kms_strv_free(k->key_ids, k->n_key_ids);
    kms_strv_free(k->accounts, k->n_accounts);
    free(k->partition);
    free(k->region);
    free(k->endpoint);
    free(k->host);
    free(k->ca_bundle);
    free(k->akid);
    kms_free_secret_str(k->session_token);
    coffer_buf_free(&k->secret_key);
    free(k);
}

ESDK_KEYRING_STATUS_METHODS(kms)

static const struct coffer_keyring_vt kms_vt = {
    sizeof(struct coffer_keyring_vt), "aws-kms", kms_on_encrypt_status, kms_on_decrypt_status, kms_destroy,
};

/* ================================================================================================
 * Construction
 * ============================================================================================= */

static pthread_once_t kms_curl_once = PTHREAD_ONCE_INIT;
static CURLcode kms_curl_init_rc = CURLE_OK;

static void kms_curl_global_init(void)
{
    kms_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Region: explicit, else the generator's ARN, else the environment, else the config file. */
static coffer_err kms_pick_region(struct kms_keyring *k, const struct coffer_kms_keyring_options *o,
                                  const char *profile)
{
    struct kms_arn arn;
    if (o->region && o->region[0]) {
        k->region = strdup(o->region);
    } else if (k->n_key_ids && kms_arn_parse(coffer_cursor_from_str(k->key_ids[0]), &arn)) {
        k->region = kms_cursor_strdup(arn.region);
    } else if (kms_env("AWS_REGION") || kms_env("AWS_DEFAULT_REGION")) {
        k->region = strdup(kms_env("AWS_REGION") ? kms_env("AWS_REGION") : kms_env("AWS_DEFAULT_REGION"));
    } else {
        k->region = kms_config_region(profile);
    }
    if (!k->region || !k->region[0]) {
        return coffer_fail(COFFER_ERR_CONFIG, "aws-kms keyring: no region (option, key ARN, AWS_REGION or config)");
    }
    for (const char *p = k->region; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return coffer_fail(COFFER_ERR_CONFIG, "aws-kms keyring: invalid region");
        }
    }
    return COFFER_OK;
}

/* Endpoint "scheme://host[:port][/]" -> endpoint without trailing '/', Host header value. */
static coffer_err kms_pick_endpoint(struct kms_keyring *k, const char *ep)
{
    char buf[512];
    if (!ep) {
        ep = kms_env("AWS_ENDPOINT_URL_KMS") ? kms_env("AWS_ENDPOINT_URL_KMS") : kms_env("AWS_ENDPOINT_URL");
    }
    if (!ep) {
        snprintf(buf, sizeof(buf), "https://kms.%s.amazonaws.com", k->region);
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
        return coffer_fail(COFFER_ERR_CONFIG, "aws-kms keyring: endpoint must be http(s)://host[:port]");
    }
    k->host = kms_cursor_strdup(coffer_cursor_from(host, host_len));
    k->endpoint = kms_cursor_strdup(coffer_cursor_from(ep, (size_t)(host - ep) + host_len));
    if (!k->host || !k->endpoint) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static coffer_err kms_curl_setup(struct kms_keyring *k)
{
    pthread_once(&kms_curl_once, kms_curl_global_init);
    if (kms_curl_init_rc != CURLE_OK) {
        return coffer_fail(COFFER_ERR_KEYRING, "aws-kms keyring: HTTP client initialisation failed");
    }
    if (!(k->curl = curl_easy_init())) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        curl_easy_cleanup(k->curl);
        k->curl = NULL;
        return coffer_fail(COFFER_ERR_INTERNAL, "aws-kms keyring: mutex initialisation failed");
    }
    CURL *c = k->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, KMS_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "libcoffer-esdk/aws-kms");
    if (k->ca_bundle) {
        curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_bundle);
    }
    return COFFER_OK;
}

static coffer_err kms_check_options(const struct coffer_kms_keyring_options *o)
{
    if (!o) {
        return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: options are required");
    }
    if ((o->n_key_ids && !o->key_ids) || (o->n_discovery_accounts && !o->discovery_accounts)) {
        return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: list pointer is NULL with a non-zero count");
    }
    if (o->discovery && o->n_key_ids) {
        return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: discovery mode takes no key ids");
    }
    if (!o->discovery && o->n_key_ids == 0) {
        return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: strict mode needs at least one key id");
    }
    if (!o->discovery && (o->discovery_partition || o->n_discovery_accounts)) {
        return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: a discovery filter needs discovery mode");
    }
    /* aws-kms-discovery-keyring.md: a filter names both the partition and the accounts */
    if (o->discovery && (o->discovery_partition != NULL) != (o->n_discovery_accounts != 0)) {
        return coffer_fail(COFFER_ERR_USAGE, "aws-kms keyring: a discovery filter needs a partition and accounts");
    }
    return COFFER_OK;
}

coffer_keyring *coffer_keyring_kms_new(const struct coffer_kms_keyring_options *o)
{
    struct kms_keyring *k = NULL;
    coffer_err rc = COFFER_OK;

    GUARD(kms_check_options(o));
    if (!(k = calloc(1, sizeof(*k)))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_keyring_base_init(&k->base, &kms_vt);
    coffer_buf_init(&k->secret_key, true);
    k->discovery = o->discovery;
    GUARD(kms_strv_dup(o->key_ids, o->n_key_ids, &k->key_ids));
    k->n_key_ids = o->n_key_ids;
    GUARD(kms_strv_dup(o->discovery_accounts, o->n_discovery_accounts, &k->accounts));
    k->n_accounts = o->n_discovery_accounts;
    if (o->discovery_partition && !(k->partition = strdup(o->discovery_partition))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    const char *profile = o->profile ? o->profile : kms_env("AWS_PROFILE") ? kms_env("AWS_PROFILE") : "default";
    GUARD(kms_pick_region(k, o, profile));
    GUARD(kms_pick_endpoint(k, o->endpoint));
    const char *ca = o->ca_bundle ? o->ca_bundle : kms_env("AWS_CA_BUNDLE");
    if (ca && !(k->ca_bundle = strdup(ca))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    GUARD(kms_load_credentials(k, profile));
    GUARD(kms_curl_setup(k));
out:
    if (rc != COFFER_OK) {
        if (k) {
            kms_destroy(&k->base);
        }
        return NULL;
    }
    return &k->base;
}
