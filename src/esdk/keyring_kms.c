/*
 * AWS KMS keyring (aws-kms-keyring.md, aws-kms-discovery-keyring.md): data keys are generated
 * and wrapped by a KMS that speaks the AWS JSON 1.1 protocol (Coffer's cofferd, or AWS KMS
 * itself). This is the client side of listener -> auth -> service: awsclient/ resolves the
 * credentials, signs the requests with SigV4 and sends them over HTTPS, retrying throttling.
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
 * Threading: one awsclient per keyring (one keep-alive connection, calls serialised by the
 * client); the credentials are resolved once at construction and never change.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "awsclient/awsclient.h"
#include "common/codec.h"
#include "common/secret.h"
#include "esdk/esdk_internal.h"

#define KMS_PROVIDER_ID "aws-kms"
#define KMS_SERVICE "kms"
#define KMS_TARGET_PREFIX "TrentService."
#define KMS_MAX_RESPONSE (64u * 1024u) /* KMS answers are small; refuse anything bigger */
#define KMS_MAX_ARN_LEN 2048
#define KMS_MAX_TARGET 128

struct kms_keyring {
    coffer_keyring base;
    char **key_ids; /* strict: configured ids; [0] is the generator */
    size_t n_key_ids;
    bool discovery;
    char *partition; /* discovery filter, NULL = none */
    char **accounts; /* discovery filter, n_accounts == 0 = none */
    size_t n_accounts;
    char *region;
    awsclient *client; /* endpoint, CA, credentials, the connection */
};

/* ================================================================================================
 * Small string helpers
 * ============================================================================================= */

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
    if (s.len == 0 || s.len > KMS_MAX_ARN_LEN || !kms_arn_field(&c, &prefix) ||
        !coffer_cursor_eq_str(prefix, "arn") || !kms_arn_field(&c, &a->partition) ||
        !kms_arn_field(&c, &a->service) || !coffer_cursor_eq_str(a->service, KMS_SERVICE) ||
        !kms_arn_field(&c, &a->region) || !kms_arn_field(&c, &a->account) || c.len == 0) {
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
 * Calls
 * ============================================================================================= */

/*
 * Calls TrentService.<target> with a JSON request; on HTTP 200 returns the parsed answer in
 * *out. KMS errors become `fail_code` with "aws-kms: <Op>: <ErrorType> (HTTP n): <message>" as
 * the detail; no answer at all is COFFER_ERR_UNAVAILABLE. The client retries throttling and 5xx.
 */
static coffer_err kms_call(struct kms_keyring *k, const char *target, json_t *request, coffer_err fail_code,
                           json_t **out)
{
    coffer_err rc = COFFER_OK;
    struct awsclient_answer ans;
    char *body = NULL, full_target[KMS_MAX_TARGET];
    json_t *doc = NULL;

    awsclient_answer_init(&ans);
    *out = NULL;
    /* The request body may carry a plaintext data key (Encrypt): it is wiped below. */
    body = json_dumps(request, JSON_COMPACT);
    if (!body) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    snprintf(full_target, sizeof(full_target), KMS_TARGET_PREFIX "%s", target);
    rc = awsclient_json_call(k->client, full_target, coffer_cursor_from(body, strlen(body)), &ans);
    if (rc != COFFER_OK) {
        char detail[512];
        snprintf(detail, sizeof(detail), "%s", coffer_last_message());
        FAIL_OUT(rc == COFFER_ERR_NOMEM || rc == COFFER_ERR_UNAVAILABLE ? rc : COFFER_ERR_KEYRING,
                 "aws-kms: %s", detail);
    }
    if (ans.status != 200) {
        FAIL_OUT(fail_code, "aws-kms: %s: %s (HTTP %ld)%s%s", target, ans.error_type, ans.status,
                 ans.error_message[0] ? ": " : "", ans.error_message);
    }
    doc = json_loadb((const char *)ans.body.data, ans.body.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        FAIL_OUT(COFFER_ERR_KEYRING, "aws-kms: %s: malformed response", target);
    }
    *out = doc;
    doc = NULL;
out:
    json_decref(doc);
    if (body) {
        coffer_secure_zero(body, strlen(body));
        free(body);
    }
    awsclient_answer_clean(&ans);
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
    TRY_OUT(coffer_b64_encode(bytes, &b));
    TRY_OUT(kms_json_set(req, key, json_stringn((const char *)b.data, b.len)));
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
        coffer_b64_decode(coffer_cursor_from(json_string_value(v), json_string_length(v)), out) !=
            COFFER_OK) {
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
    TRY_OUT(kms_json_get_b64(doc, op, "CiphertextBlob", &ct));
    coffer_edk e = {(const uint8_t *)KMS_PROVIDER_ID,
                    strlen(KMS_PROVIDER_ID),
                    (const uint8_t *)json_string_value(kid),
                    json_string_length(kid),
                    ct.data,
                    ct.len};
    TRY_OUT(esdk_enc_materials_add_edk(m, &e));
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
    TRY_OUT(kms_json_set(req, "KeyId", json_string(k->key_ids[0])));
    TRY_OUT(kms_json_set(req, "NumberOfBytes", json_integer((json_int_t)key_len)));
    TRY_OUT(kms_json_ec(req, coffer_enc_materials_ec(m)));
    TRY_OUT(kms_call(k, "GenerateDataKey", req, COFFER_ERR_KEYRING, &resp));
    TRY_OUT(kms_json_get_b64(resp, "GenerateDataKey", "Plaintext", &pt));
    if (pt.len != key_len) {
        FAIL_OUT(COFFER_ERR_KEYRING, "aws-kms: GenerateDataKey returned %zu bytes, the suite needs %zu",
                 pt.len, key_len);
    }
    TRY_OUT(kms_add_edk(m, resp, "GenerateDataKey"));
    TRY_OUT(esdk_enc_materials_set_data_key(m, pt.data, pt.len));
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
    TRY_OUT(kms_json_set(req, "KeyId", json_string(key_id)));
    TRY_OUT(kms_json_b64(req, "Plaintext", coffer_cursor_from(dk, dk_len), true));
    TRY_OUT(kms_json_ec(req, coffer_enc_materials_ec(m)));
    TRY_OUT(kms_call(k, "Encrypt", req, COFFER_ERR_KEYRING, &resp));
    TRY_OUT(kms_add_edk(m, resp, "Encrypt"));
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
    TRY_OUT(kms_json_set(req, "KeyId", json_stringn((const char *)e->provider_info, e->provider_info_len)));
    TRY_OUT(kms_json_b64(req, "CiphertextBlob", coffer_cursor_from(e->ciphertext, e->ciphertext_len), false));
    TRY_OUT(kms_json_ec(req, coffer_dec_materials_ec(m)));
    TRY_OUT(kms_call(k, "Decrypt", req, COFFER_ERR_CANNOT_DECRYPT, &resp));
    /* aws-kms-keyring.md §OnDecrypt: the KeyId MUST equal the EDK's ARN, the key MUST fit the suite */
    json_t *kid = json_object_get(resp, "KeyId");
    if (!json_is_string(kid) ||
        !coffer_cursor_eq(coffer_cursor_from(json_string_value(kid), json_string_length(kid)),
                          coffer_cursor_from(e->provider_info, e->provider_info_len))) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "aws-kms: Decrypt answered for a different key");
    }
    TRY_OUT(kms_json_get_b64(resp, "Decrypt", "Plaintext", &pt));
    if (pt.len != key_len) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "aws-kms: Decrypt returned %zu bytes, the suite needs %zu",
                 pt.len, key_len);
    }
    TRY_OUT(esdk_dec_materials_set_data_key(m, pt.data, pt.len));
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
    awsclient_free(k->client);
    kms_strv_free(k->key_ids, k->n_key_ids);
    kms_strv_free(k->accounts, k->n_accounts);
    free(k->partition);
    free(k->region);
    free(k);
}

ESDK_KEYRING_STATUS_METHODS(kms)

static const struct coffer_keyring_vt kms_vt = {
    sizeof(struct coffer_keyring_vt), "aws-kms", kms_on_encrypt_status, kms_on_decrypt_status, kms_destroy,
};

/* ================================================================================================
 * Construction
 * ============================================================================================= */

/* Re-records the client's failure with the keyring's prefix, keeping its code. */
static coffer_err kms_config_fail(coffer_err rc)
{
    char detail[512];
    snprintf(detail, sizeof(detail), "%s", coffer_last_message());
    return coffer_fail(rc, "aws-kms keyring: %s", detail);
}

/* Region: explicit, else the generator's ARN, else the environment, else the config file. */
static coffer_err kms_pick_region(struct kms_keyring *k, const struct coffer_kms_keyring_options *o,
                                  const struct awsclient_source *src)
{
    struct kms_arn arn;
    if (o->region && o->region[0]) {
        k->region = strdup(o->region);
    } else if (k->n_key_ids && kms_arn_parse(coffer_cursor_from_str(k->key_ids[0]), &arn)) {
        k->region = kms_cursor_strdup(arn.region);
    } else {
        coffer_err rc = awsclient_region_load(src, &k->region);
        if (rc != COFFER_OK) {
            return kms_config_fail(rc);
        }
    }
    if (!k->region || !k->region[0]) {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "aws-kms keyring: no region (option, key ARN, AWS_REGION or config)");
    }
    if (!awsclient_region_valid(k->region)) {
        return coffer_fail(COFFER_ERR_CONFIG, "aws-kms keyring: invalid region");
    }
    return COFFER_OK;
}

/* Credentials (environment, then the shared files for the profile), endpoint and CA. */
static coffer_err kms_client_setup(struct kms_keyring *k, const struct coffer_kms_keyring_options *o,
                                   const struct awsclient_source *src)
{
    coffer_err rc = COFFER_OK;
    struct awsclient_credentials creds = {NULL, COFFER_SECRET_BUF_INIT, COFFER_SECRET_BUF_INIT};

    TRY_OUT(awsclient_credentials_load(src, &creds));
    struct awsclient_config cfg = {
        .service = KMS_SERVICE,
        .region = k->region,
        .endpoint = o->endpoint,
        .env_service = "KMS",
        .ca_bundle = o->ca_bundle,
        .user_agent = "libcoffer-esdk/aws-kms",
        .max_response = KMS_MAX_RESPONSE,
        .credentials = &creds,
    };
    TRY_OUT(awsclient_new(&cfg, &k->client));
out:
    awsclient_credentials_clean(&creds);
    return rc == COFFER_OK ? COFFER_OK : kms_config_fail(rc);
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
        return coffer_fail(COFFER_ERR_USAGE,
                           "aws-kms keyring: a discovery filter needs a partition and accounts");
    }
    return COFFER_OK;
}

coffer_keyring *coffer_keyring_kms_new(const struct coffer_kms_keyring_options *o)
{
    struct kms_keyring *k = NULL;
    coffer_err rc = COFFER_OK;

    TRY_OUT(kms_check_options(o));
    if (!(k = calloc(1, sizeof(*k)))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_keyring_base_init(&k->base, &kms_vt);
    k->discovery = o->discovery;
    TRY_OUT(kms_strv_dup(o->key_ids, o->n_key_ids, &k->key_ids));
    k->n_key_ids = o->n_key_ids;
    TRY_OUT(kms_strv_dup(o->discovery_accounts, o->n_discovery_accounts, &k->accounts));
    k->n_accounts = o->n_discovery_accounts;
    if (o->discovery_partition && !(k->partition = strdup(o->discovery_partition))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* The SDK defaults: AWS_PROFILE or "default", files from AWS_SHARED_CREDENTIALS_FILE etc. */
    struct awsclient_source src = {.profile = o->profile};
    TRY_OUT(kms_pick_region(k, o, &src));
    TRY_OUT(kms_client_setup(k, o, &src));
out:
    if (rc != COFFER_OK) {
        if (k) {
            kms_destroy(&k->base);
        }
        return NULL;
    }
    return &k->base;
}
