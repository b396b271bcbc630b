/*
 * Unit tests for the KMS service (src/kms): every implemented operation through the op table,
 * as the pipeline calls it, with the happy paths and the AWS errors next to each other: key
 * states of kms.md §6, KeyId forms accepted and refused per operation (§3), validation limits,
 * tampered and mis-bound ciphertexts, DryRun, paging, the deletion sweeper, durability across a
 * reopened store, and a concurrency smoke test. The whole group runs twice: on "sqlite:" in a
 * temp dir and on "mem:", with a real seal over a temp root key file.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/codec.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "kms/kms.h"

/* ------------------------------------------------------------------------------------------ */
/* Harness                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define ACCOUNT "111122223333"
#define REGION "us-east-1"
#define DAY_MS 86400000LL
#define T0 1700000000000LL

struct env {
    char dir[64];
    char url[160];
    char root[160];
    store *st;
    seal *sl;
    struct kms_service *svc;
    const struct api_service *api;
    struct api_caller caller;
    int64_t now;
    /* The quota hook handlers of API_OP_KEY_QUOTA operations see (NULL: quotas off). */
    bool (*quota_take)(void *ctx, const char *bucket, double rps);
    char charged[8][32]; /* buckets charged by the last requests, in order */
    double charged_rps[8];
    int n_charged;
    bool quota_refuse;
};

static bool use_mem; /* which backend the current group runs on */

static void env_open(struct env *e)
{
    assert_int_equal(store_open(e->url, &e->st), COFFER_OK);
    assert_int_equal(seal_open_keyfile(e->root, true, e->st, &e->sl), COFFER_OK);
    assert_int_equal(kms_service_new(e->st, e->sl, REGION, &e->svc), COFFER_OK);
    e->api = kms_service_api(e->svc);
}

static void env_close(struct env *e)
{
    kms_service_free(e->svc);
    seal_free(e->sl);
    store_close(e->st);
    e->svc = NULL;
    e->sl = NULL;
    e->st = NULL;
}

/* A fresh service over the same store and seal: cold cache, everything read back. */
static void env_restart_service(struct env *e)
{
    kms_service_free(e->svc);
    assert_int_equal(kms_service_new(e->st, e->sl, REGION, &e->svc), COFFER_OK);
    e->api = kms_service_api(e->svc);
}

/* Closes everything and opens again (a restart of the process); "mem:" does not persist. */
static void env_reopen(struct env *e)
{
    if (use_mem) {
        env_restart_service(e);
        return;
    }
    env_close(e);
    env_open(e);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/kmstest.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    if (use_mem) {
        snprintf(e->url, sizeof(e->url), "mem:");
    } else {
        snprintf(e->url, sizeof(e->url), "sqlite:%s/coffer.db", e->dir);
    }
    snprintf(e->root, sizeof(e->root), "%s/root.key", e->dir);
    snprintf(e->caller.account_id, sizeof(e->caller.account_id), ACCOUNT);
    snprintf(e->caller.principal_arn, sizeof(e->caller.principal_arn), "arn:aws:iam::" ACCOUNT ":root");
    e->now = T0;
    env_open(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char cmd[128];
    env_close(e);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

struct result {
    coffer_err rc;
    json_t *out;
    json_t *audit_request, *audit_response, *audit_resources;
    char msg[512];
};

static void result_free(struct result *r)
{
    json_decref(r->out);
    json_decref(r->audit_request);
    json_decref(r->audit_response);
    json_decref(r->audit_resources);
    memset(r, 0, sizeof(*r));
}

/* Runs op with the JSON text `in` (format string) as the caller of env. */
static struct result run(struct env *e, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct result run(struct env *e, const char *op, const char *fmt, ...)
{
    char body[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    json_error_t jerr;
    json_t *in = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
    if (in == NULL) {
        fail_msg("bad test JSON: %s: %s", body, jerr.text);
    }
    const struct api_op *o = api_service_find_op(e->api, op, strlen(op));
    assert_non_null(o);
    struct api_call call = {.caller = &e->caller,
                            .region = REGION,
                            .request_id = "r",
                            .operation = op,
                            .now_ms = e->now,
                            .input = in,
                            .quota_take = e->quota_take,
                            .quota_ctx = e};
    coffer_clear_err();
    struct result r = {0};
    r.rc = o->handler(e->api->state, &call);
    snprintf(r.msg, sizeof(r.msg), "%s", r.rc == COFFER_OK ? "" : coffer_err_message(r.rc));
    if (r.rc != COFFER_OK) {
        json_decref(call.output);
    } else {
        r.out = call.output != NULL ? call.output : json_object();
    }
    r.audit_request = call.audit_request;
    r.audit_response = call.audit_response;
    r.audit_resources = call.audit_resources;
    /* Never any secret in the audit record. */
    if (r.audit_request != NULL) {
        char *s = json_dumps(r.audit_request, 0);
        assert_null(strstr(s, "plaintext"));
        assert_null(strstr(s, "ciphertextBlob"));
        free(s);
    }
    json_decref(in);
    return r;
}

static const char *sval(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    assert_non_null(v);
    return v;
}

static void expect(struct result *r, coffer_err rc, const char *msg)
{
    if (r->rc != rc) {
        fail_msg("expected %s got %s (%s)", coffer_err_name(rc), coffer_err_name(r->rc), r->msg);
    }
    if (msg != NULL) {
        assert_string_equal(r->msg, msg);
    }
    result_free(r);
}

/* Creates a key and returns its id in out (37 bytes). */
static void create_key(struct env *e, char *out)
{
    struct result r = run(e, "CreateKey", "{\"Description\":\"test key\"}");
    assert_int_equal(r.rc, COFFER_OK);
    snprintf(out, 64, "%s", sval(json_object_get(r.out, "KeyMetadata"), "KeyId"));
    result_free(&r);
}

/* Encrypts text under key with optional context JSON; returns the base64 blob (malloc). */
static char *encrypt(struct env *e, const char *key, const char *ctx)
{
    struct result r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"%s%s}", key,
                          ctx ? ",\"EncryptionContext\":" : "", ctx ? ctx : "");
    if (r.rc != COFFER_OK) {
        fail_msg("Encrypt failed: %s", r.msg);
    }
    char *b = strdup(sval(r.out, "CiphertextBlob"));
    result_free(&r);
    return b;
}

static void arn_of(char *out, size_t n, const char *id)
{
    snprintf(out, n, "arn:aws:kms:" REGION ":" ACCOUNT ":key/%s", id);
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_op_table(void **state)
{
    struct env *e = *state;
    assert_string_equal(e->api->target_prefix, "TrentService");
    assert_string_equal(e->api->signing_name, "kms");
    assert_string_equal(e->api->event_source, "kms.amazonaws.com");
    for (size_t i = 1; i < e->api->n_ops; i++) {
        assert_true(strcmp(e->api->ops[i - 1].name, e->api->ops[i].name) < 0);
    }
    assert_int_equal(api_ops_check(e->api->ops, e->api->n_ops), COFFER_OK);
    /* Every row is reachable by its name, and by no other. */
    for (size_t i = 0; i < e->api->n_ops; i++) {
        const char *name = e->api->ops[i].name;
        assert_ptr_equal(api_service_find_op(e->api, name, strlen(name)), &e->api->ops[i]);
    }
    const struct api_op *o = api_service_find_op(e->api, "Encrypt", 7);
    assert_true(o->flags & API_OP_CRYPTO);
    o = api_service_find_op(e->api, "DescribeKey", 11);
    assert_true(o->flags & API_OP_READONLY);
    assert_true(o->quota_rps == 2000);
    o = api_service_find_op(e->api, "CreateKey", 9);
    assert_true(o->quota_rps == 5);
    assert_false(o->flags & API_OP_READONLY);
}

/* What KMS answered for every error before a service named its own errors: unchanged. */
static const struct {
    coffer_err code;
    const char *type;
    int status;
} kms_wire_errors[] = {
    {COFFER_ERR_NOMEM, "KMSInternalException", 500},
    {COFFER_ERR_INTERNAL, "KMSInternalException", 500},
    {COFFER_ERR_IO, "KMSInternalException", 500},
    {COFFER_ERR_STORE, "KMSInternalException", 500},
    {COFFER_ERR_AUDIT, "KMSInternalException", 500},
    {COFFER_ERR_CRYPTO, "KMSInternalException", 500},
    {COFFER_ERR_CONFIG, "KMSInternalException", 500},
    {COFFER_ERR_USAGE, "ValidationException", 400},
    {COFFER_ERR_UNAVAILABLE, "ServiceUnavailableException", 503},
    {COFFER_ERR_VALIDATION, "ValidationException", 400},
    {COFFER_ERR_SERIALIZATION, "SerializationException", 400},
    {COFFER_ERR_UNKNOWN_OPERATION, "UnknownOperationException", 400},
    {COFFER_ERR_MISSING_AUTH, "MissingAuthenticationTokenException", 400},
    {COFFER_ERR_INCOMPLETE_SIGNATURE, "IncompleteSignatureException", 400},
    {COFFER_ERR_INVALID_SIGNATURE, "InvalidSignatureException", 400},
    {COFFER_ERR_UNRECOGNIZED_CLIENT, "UnrecognizedClientException", 400},
    {COFFER_ERR_EXPIRED_TOKEN, "ExpiredTokenException", 400},
    {COFFER_ERR_ACCESS_DENIED, "AccessDeniedException", 400},
    {COFFER_ERR_THROTTLING, "ThrottlingException", 400},
    {COFFER_ERR_NOT_FOUND, "NotFoundException", 400},
    {COFFER_ERR_DISABLED, "DisabledException", 400},
    {COFFER_ERR_INVALID_STATE, "KMSInvalidStateException", 400},
    {COFFER_ERR_INVALID_CIPHERTEXT, "InvalidCiphertextException", 400},
    {COFFER_ERR_INCORRECT_KEY, "IncorrectKeyException", 400},
    {COFFER_ERR_INVALID_KEY_USAGE, "InvalidKeyUsageException", 400},
    {COFFER_ERR_ALREADY_EXISTS, "AlreadyExistsException", 400},
    {COFFER_ERR_INVALID_MARKER, "InvalidMarkerException", 400},
    {COFFER_ERR_INVALID_ARN, "InvalidArnException", 400},
    {COFFER_ERR_TAG, "TagException", 400},
    {COFFER_ERR_LIMIT_EXCEEDED, "LimitExceededException", 400},
    {COFFER_ERR_MALFORMED_POLICY, "MalformedPolicyDocumentException", 400},
    {COFFER_ERR_UNSUPPORTED_OPERATION, "UnsupportedOperationException", 400},
    {COFFER_ERR_DRY_RUN, "DryRunOperationException", 400},
    {COFFER_ERR_INVALID_GRANT_TOKEN, "InvalidGrantTokenException", 400},
    {COFFER_ERR_INVALID_GRANT_ID, "InvalidGrantIdException", 400},
    {COFFER_ERR_NO_SUCH_ENTITY, "NoSuchEntity", 404},
    {COFFER_ERR_ENTITY_EXISTS, "EntityAlreadyExists", 409},
    {COFFER_ERR_DELETE_CONFLICT, "DeleteConflict", 409},
    {COFFER_ERR_BAD_MESSAGE, "InvalidCiphertextException", 400},
    {COFFER_ERR_CANNOT_DECRYPT, "InvalidCiphertextException", 400},
    {COFFER_ERR_COMMITMENT_MISMATCH, "InvalidCiphertextException", 400},
    {COFFER_ERR_POLICY_VIOLATION, "ValidationException", 400},
    {COFFER_ERR_BAD_SIGNATURE, "InvalidCiphertextException", 400},
    {COFFER_ERR_LIMIT, "ValidationException", 400},
    {COFFER_ERR_KEYRING, "KMSInternalException", 500},
};

static void test_declaration(void **state)
{
    struct env *e = *state;
    for (size_t i = 0; i < sizeof(kms_wire_errors) / sizeof(kms_wire_errors[0]); i++) {
        struct api_error got = api_service_error(e->api, kms_wire_errors[i].code);
        assert_string_equal(got.type, kms_wire_errors[i].type);
        assert_int_equal(got.status, kms_wire_errors[i].status);
    }
    coffer_clear_err();
    assert_string_equal(
        api_service_error_message(e->api, COFFER_ERR_THROTTLING),
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.");
    assert_true(api_service_member_is_sensitive(e->api, "Plaintext"));
    assert_true(api_service_member_is_sensitive(e->api, "CiphertextBlob"));
    assert_false(api_service_member_is_sensitive(e->api, "KeyId"));
    /* The deletion sweeper, the rotation job and the expiry of imported key material are jobs the
     * service declares, run at every tick; key usage is flushed once a second. */
    assert_int_equal(e->api->n_jobs, 4);
    for (size_t i = 0; i < e->api->n_jobs; i++) {
        assert_int_equal(e->api->jobs[i].period_s, i == 3 ? 1 : 0);
        assert_int_equal(e->api->jobs[i].fn(e->api->jobs[i].ctx, 0), COFFER_OK);
    }
    assert_string_equal(e->api->jobs[1].name, "key rotation");
    assert_string_equal(e->api->jobs[2].name, "imported material expiry");
    assert_string_equal(e->api->jobs[3].name, "key usage flush");
}

static void test_create_describe(void **state)
{
    struct env *e = *state;
    struct result r =
        run(e, "CreateKey", "{\"Description\":\"d1\",\"Tags\":[{\"TagKey\":\"team\",\"TagValue\":\"x\"}]}");
    assert_int_equal(r.rc, COFFER_OK);
    json_t *m = json_object_get(r.out, "KeyMetadata");
    char id[64], arn[160];
    snprintf(id, sizeof(id), "%s", sval(m, "KeyId"));
    arn_of(arn, sizeof(arn), id);
    assert_string_equal(sval(m, "AWSAccountId"), ACCOUNT);
    assert_string_equal(sval(m, "Arn"), arn);
    assert_true(json_is_real(json_object_get(m, "CreationDate")));
    assert_true(json_real_value(json_object_get(m, "CreationDate")) == 1700000000.0);
    assert_true(json_is_true(json_object_get(m, "Enabled")));
    assert_string_equal(sval(m, "Description"), "d1");
    assert_string_equal(sval(m, "KeyUsage"), "ENCRYPT_DECRYPT");
    assert_string_equal(sval(m, "KeyState"), "Enabled");
    assert_null(json_object_get(m, "DeletionDate"));
    assert_string_equal(sval(m, "Origin"), "AWS_KMS");
    assert_string_equal(sval(m, "KeyManager"), "CUSTOMER");
    assert_string_equal(sval(m, "CustomerMasterKeySpec"), "SYMMETRIC_DEFAULT");
    assert_string_equal(sval(m, "KeySpec"), "SYMMETRIC_DEFAULT");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "EncryptionAlgorithms"), 0)),
                        "SYMMETRIC_DEFAULT");
    assert_true(json_is_false(json_object_get(m, "MultiRegion")));
    assert_int_equal(strlen(sval(m, "CurrentKeyMaterialId")), 64);
    /* Audit: response elements and resources. */
    assert_non_null(json_object_get(json_object_get(r.audit_response, "keyMetadata"), "keyId"));
    assert_string_equal(sval(json_array_get(r.audit_resources, 0), "ARN"), arn);
    assert_string_equal(sval(json_array_get(r.audit_resources, 0), "type"), "AWS::KMS::Key");
    assert_string_equal(sval(r.audit_request, "description"), "d1");
    result_free(&r);

    /* DescribeKey by id, ARN, alias, alias ARN. */
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeyId"), id);
    result_free(&r);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", arn);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/d1\",\"TargetKeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/d1\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeyId"), id);
    result_free(&r);
    r = run(e, "DescribeKey", "{\"KeyId\":\"arn:aws:kms:" REGION ":" ACCOUNT ":alias/d1\"}");
    expect(&r, COFFER_OK, NULL);

    /* Errors with AWS text. */
    r = run(e, "DescribeKey", "{\"KeyId\":\"0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9\"}");
    expect(
        &r, COFFER_ERR_NOT_FOUND,
        "Key 'arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9' does not exist");
    r = run(e, "DescribeKey", "{\"KeyId\":\"not-a-key\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, "Invalid keyId 'not-a-key'");
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/nope\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, "Alias arn:aws:kms:us-east-1:111122223333:alias/nope is not found.");
    r = run(e, "DescribeKey", "{\"KeyId\":\"arn:aws:kms:eu-west-1:" ACCOUNT ":key/%s\"}", id);
    expect(&r, COFFER_ERR_NOT_FOUND, "Invalid arn eu-west-1");
    r = run(e, "DescribeKey", "{\"KeyId\":\"arn:aws:kms:" REGION ":999999999999:key/%s\"}", id);
    expect(&r, COFFER_ERR_ACCESS_DENIED, NULL);
    r = run(e, "DescribeKey", "{}");
    expect(&r, COFFER_ERR_VALIDATION,
           "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not "
           "be null");
    r = run(e, "DescribeKey", "{\"KeyId\":7}");
    expect(&r, COFFER_ERR_SERIALIZATION, NULL);
}

static void test_create_key_refusals(void **state)
{
    struct env *e = *state;
    struct result r = run(e, "CreateKey", "{\"KeySpec\":\"RSA_2048\"}");
    expect(&r, COFFER_ERR_VALIDATION,
           "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.");
    r = run(e, "CreateKey", "{\"KeySpec\":\"RSA_2048\",\"KeyUsage\":\"GENERATE_VERIFY_MAC\"}");
    expect(&r, COFFER_ERR_VALIDATION, "KeyUsage GENERATE_VERIFY_MAC is not compatible with KeySpec RSA_2048");
    r = run(e, "CreateKey", "{\"KeySpec\":\"ECC_NIST_P256\",\"KeyUsage\":\"ENCRYPT_DECRYPT\"}");
    expect(&r, COFFER_ERR_VALIDATION,
           "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec ECC_NIST_P256");
    r = run(e, "CreateKey", "{\"KeySpec\":\"HMAC_256\",\"KeyUsage\":\"ENCRYPT_DECRYPT\"}");
    expect(&r, COFFER_ERR_VALIDATION, "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec HMAC_256");
    r = run(e, "CreateKey", "{\"KeySpec\":\"ECC_SECG_P256K1\",\"KeyUsage\":\"KEY_AGREEMENT\"}");
    expect(&r, COFFER_ERR_VALIDATION,
           "KeyUsage KEY_AGREEMENT is not compatible with KeySpec ECC_SECG_P256K1");
    r = run(e, "CreateKey", "{\"KeySpec\":\"ECC_NIST_P256\",\"KeyUsage\":\"KEY_AGREEMENT\"}");
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, "KeyUsage KEY_AGREEMENT is not supported by this server.");
    r = run(e, "CreateKey", "{\"KeySpec\":\"SM2\",\"KeyUsage\":\"SIGN_VERIFY\"}");
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, "KeySpec SM2 is not supported by this server.");
    r = run(e, "CreateKey", "{\"KeySpec\":\"ML_DSA_65\",\"KeyUsage\":\"SIGN_VERIFY\"}");
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, "KeySpec ML_DSA_65 is not supported by this server.");
    r = run(e, "CreateKey", "{\"KeySpec\":\"ECC_NIST_EDWARDS25519\",\"KeyUsage\":\"SIGN_VERIFY\"}");
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, NULL);
    /* Each served family shows its algorithms the way AWS lists them. */
    static const struct {
        const char *spec, *usage, *member, *first;
        size_t n;
    } served[] = {
        {"RSA_2048", "SIGN_VERIFY", "SigningAlgorithms", "RSASSA_PKCS1_V1_5_SHA_256", 6},
        {"RSA_3072", "ENCRYPT_DECRYPT", "EncryptionAlgorithms", "RSAES_OAEP_SHA_1", 2},
        {"ECC_NIST_P384", "SIGN_VERIFY", "SigningAlgorithms", "ECDSA_SHA_384", 1},
        {"ECC_SECG_P256K1", "SIGN_VERIFY", "SigningAlgorithms", "ECDSA_SHA_256", 1},
        {"HMAC_224", "GENERATE_VERIFY_MAC", "MacAlgorithms", "HMAC_SHA_224", 1},
        {"HMAC_512", "GENERATE_VERIFY_MAC", "MacAlgorithms", "HMAC_SHA_512", 1},
    };
    for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
        r = run(e, "CreateKey", "{\"KeySpec\":\"%s\",\"KeyUsage\":\"%s\"}", served[i].spec, served[i].usage);
        assert_int_equal(r.rc, COFFER_OK);
        const json_t *m = json_object_get(r.out, "KeyMetadata");
        assert_string_equal(sval(m, "KeySpec"), served[i].spec);
        assert_string_equal(sval(m, "CustomerMasterKeySpec"), served[i].spec);
        assert_string_equal(sval(m, "KeyUsage"), served[i].usage);
        const json_t *algs = json_object_get(m, served[i].member);
        assert_int_equal(json_array_size(algs), served[i].n);
        assert_string_equal(json_string_value(json_array_get(algs, 0)), served[i].first);
        assert_int_equal(json_object_size(m) > 0 &&
                             (json_object_get(m, "EncryptionAlgorithms") == NULL) ==
                                 (strcmp(served[i].member, "EncryptionAlgorithms") != 0),
                         1);
        result_free(&r);
    }
    r = run(e, "CreateKey", "{\"KeyUsage\":\"SIGN_VERIFY\"}");
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    r = run(e, "CreateKey", "{\"KeySpec\":\"AES_999\"}");
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    /* A key in a custom key store names its store, and only such a key names one. */
    r = run(e, "CreateKey", "{\"Origin\":\"AWS_CLOUDHSM\"}");
    expect(&r, COFFER_ERR_VALIDATION, "CustomKeyStoreId is required when Origin is AWS_CLOUDHSM.");
    r = run(e, "CreateKey", "{\"CustomKeyStoreId\":\"cks-1234567890abcdef0\"}");
    expect(&r, COFFER_ERR_VALIDATION, "A CustomKeyStoreId requires Origin AWS_CLOUDHSM.");
    r = run(e, "CreateKey", "{\"Origin\":\"AWS_CLOUDHSM\",\"CustomKeyStoreId\":\"cks-1234567890abcdef0\"}");
    expect(&r, COFFER_ERR_CUSTOM_KEY_STORE_NOT_FOUND, NULL);
    r = run(e, "CreateKey",
            "{\"Origin\":\"AWS_CLOUDHSM\",\"CustomKeyStoreId\":\"cks-1234567890abcdef0\",\"KeySpec\":\"HMAC_"
            "256\","
            "\"KeyUsage\":\"GENERATE_VERIFY_MAC\"}");
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION,
           "KeySpec HMAC_256 is not supported for keys in an AWS CloudHSM key store.");
    r = run(e, "CreateKey", "{\"KeySpec\":\"HMAC_256\"}");
    expect(&r, COFFER_ERR_VALIDATION,
           "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.");
    r = run(e, "CreateKey", "{\"KeySpec\":\"HMAC_256\",\"KeyUsage\":\"ENCRYPT_DECRYPT\"}");
    expect(&r, COFFER_ERR_VALIDATION, "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec HMAC_256");
    /* A multi-Region primary: an mrk- id, its own region as primary, no replica yet. */
    r = run(e, "CreateKey", "{\"MultiRegion\":true}");
    assert_int_equal(r.rc, COFFER_OK);
    {
        const json_t *m = json_object_get(r.out, "KeyMetadata");
        const char *mid = sval(m, "KeyId");
        assert_int_equal(strlen(mid), 36);
        assert_memory_equal(mid, "mrk-", 4);
        assert_true(json_is_true(json_object_get(m, "MultiRegion")));
        const json_t *mrc = json_object_get(m, "MultiRegionConfiguration");
        assert_string_equal(sval(mrc, "MultiRegionKeyType"), "PRIMARY");
        assert_string_equal(sval(json_object_get(mrc, "PrimaryKey"), "Region"), "us-east-1");
        assert_int_equal(json_array_size(json_object_get(mrc, "ReplicaKeys")), 0);
        char mrk[64];
        snprintf(mrk, sizeof(mrk), "%s", mid);
        result_free(&r);
        /* Resolvable by id (both id forms are 36 characters long). */
        r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", mrk);
        expect(&r, COFFER_OK, NULL);
        /* No peer region is configured here. */
        r = run(e, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu-west-1\"}", mrk);
        expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, NULL);
        r = run(e, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu_west\"}", mrk);
        expect(&r, COFFER_ERR_VALIDATION, NULL);
        r = run(e, "UpdatePrimaryRegion", "{\"KeyId\":\"%s\",\"PrimaryRegion\":\"eu-west-1\"}", mrk);
        expect(&r, COFFER_ERR_NOT_FOUND, NULL);
        /* Coffer's replication operations: no peer, nobody. */
        r = run(e, "CofferGetReplicationKey", "{\"SourceRegion\":\"eu-west-1\"}");
        expect(&r, COFFER_ERR_ACCESS_DENIED, NULL);
        r = run(e, "CofferReplicaDeleted", "{\"SourceRegion\":\"eu-west-1\",\"KeyId\":\"%s\"}", mrk);
        expect(&r, COFFER_ERR_ACCESS_DENIED, NULL);
        /* A primary without replicas is deleted as any key: PendingDeletion with a date. */
        r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", mrk);
        assert_int_equal(r.rc, COFFER_OK);
        assert_string_equal(sval(r.out, "KeyState"), "PendingDeletion");
        assert_non_null(json_object_get(r.out, "DeletionDate"));
        result_free(&r);
        r = run(e, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", mrk);
        expect(&r, COFFER_OK, NULL);
    }
    r = run(e, "CreateKey", "{\"Policy\":\"not json\"}");
    expect(&r, COFFER_ERR_MALFORMED_POLICY, NULL);
    r = run(e, "CreateKey", "{\"Tags\":[{\"TagKey\":\"aws:x\",\"TagValue\":\"v\"}]}");
    expect(&r, COFFER_ERR_TAG, "Tags beginning with aws: are reserved");
    r = run(e, "CreateKey", "{\"Description\":5}");
    expect(&r, COFFER_ERR_SERIALIZATION, NULL);

    /* Default policy and an explicit one. */
    char id[64];
    create_key(e, id);
    r = run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_non_null(strstr(sval(r.out, "Policy"), "\"AWS\" : \"arn:aws:iam::" ACCOUNT ":root\""));
    assert_string_equal(sval(r.out, "PolicyName"), "default");
    result_free(&r);
    r = run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\",\"PolicyName\":\"other\"}", id);
    expect(&r, COFFER_ERR_NOT_FOUND, "No such policy exists");
    r = run(e, "ListKeyPolicies", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.out, "PolicyNames"), 0)),
                        "default");
    result_free(&r);
}

/* The pipeline's quota hook, recording what a handler charges. */
static bool record_quota(void *ctx, const char *bucket, double rps)
{
    struct env *e = ctx;
    if (e->n_charged < 8) {
        snprintf(e->charged[e->n_charged], sizeof(e->charged[0]), "%s", bucket);
        e->charged_rps[e->n_charged++] = rps;
    }
    return !e->quota_refuse;
}

/* Asymmetric keys: each request charges the bucket of its key's type once, DryRun does not sign
 * and charges nothing, and RSA ciphertext has no key material id. */
static void test_asymmetric_quota_and_dry_run(void **state)
{
    struct env *e = *state;
    char sym[64], ecc[64], rsa[64];
    create_key(e, sym);
    struct result r = run(e, "CreateKey", "{\"KeySpec\":\"ECC_NIST_P256\",\"KeyUsage\":\"SIGN_VERIFY\"}");
    assert_int_equal(r.rc, COFFER_OK);
    snprintf(ecc, sizeof(ecc), "%s", sval(json_object_get(r.out, "KeyMetadata"), "KeyId"));
    result_free(&r);
    r = run(e, "CreateKey", "{\"KeySpec\":\"RSA_2048\",\"KeyUsage\":\"ENCRYPT_DECRYPT\"}");
    assert_int_equal(r.rc, COFFER_OK);
    snprintf(rsa, sizeof(rsa), "%s", sval(json_object_get(r.out, "KeyMetadata"), "KeyId"));
    result_free(&r);

    e->quota_take = record_quota;
    r = run(e, "Sign",
            "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\",\"DryRun\":true}",
            ecc);
    expect(&r, COFFER_ERR_DRY_RUN, NULL);
    assert_int_equal(e->n_charged, 0);
    r = run(e, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}", ecc);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Encrypt",
            "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}", rsa);
    assert_int_equal(r.rc, COFFER_OK);
    char ct[600];
    snprintf(ct, sizeof(ct), "%s", sval(r.out, "CiphertextBlob"));
    result_free(&r);
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", sym);
    expect(&r, COFFER_OK, NULL);
    /* ReEncrypt RSA -> symmetric: one charge, the source's bucket; no material id for RSA. */
    r = run(e, "ReEncrypt",
            "{\"CiphertextBlob\":\"%s\",\"SourceKeyId\":\"%s\",\"SourceEncryptionAlgorithm\":\"RSAES_OAEP_"
            "SHA_256\","
            "\"DestinationKeyId\":\"%s\"}",
            ct, rsa, sym);
    assert_int_equal(r.rc, COFFER_OK);
    assert_null(json_object_get(r.out, "SourceKeyMaterialId"));
    assert_non_null(json_object_get(r.out, "DestinationKeyMaterialId"));
    result_free(&r);
    assert_int_equal(e->n_charged, 4);
    assert_string_equal(e->charged[0], "kms:crypto-ecc");
    assert_true(e->charged_rps[0] == 300);
    assert_string_equal(e->charged[1], "kms:crypto-rsa");
    assert_true(e->charged_rps[1] == 500);
    assert_string_equal(e->charged[2], "crypto");
    assert_string_equal(e->charged[3], "kms:crypto-rsa");
    /* An empty bucket: ThrottlingException, nothing done. */
    e->quota_refuse = true;
    r = run(e, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}", ecc);
    expect(&r, COFFER_ERR_THROTTLING, NULL);
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"KeyId\":\"%s\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}", ct,
            rsa);
    expect(&r, COFFER_ERR_THROTTLING, NULL);
    e->quota_refuse = false;
    /* Data key pairs: a bucket per KeyPairSpec at AWS's rate, shared by both operations. */
    e->n_charged = 0;
    r = run(e, "GenerateDataKeyPairWithoutPlaintext", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"ECC_NIST_P384\"}",
            sym);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"ECC_SECG_P256K1\"}", sym);
    expect(&r, COFFER_OK, NULL);
    assert_int_equal(e->n_charged, 2);
    assert_string_equal(e->charged[0], "kms:pair-ECC_NIST_P384");
    assert_true(e->charged_rps[0] == 10);
    assert_string_equal(e->charged[1], "kms:pair-ECC_SECG_P256K1");
    assert_true(e->charged_rps[1] == 25);
    e->quota_refuse = true;
    r = run(e, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"RSA_4096\"}", sym);
    expect(&r, COFFER_ERR_THROTTLING, NULL);
    assert_string_equal(e->charged[2], "kms:pair-RSA_4096");
    assert_true(e->charged_rps[2] == 0.1);
    r = run(e, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"RSA_3072\"}", sym);
    expect(&r, COFFER_ERR_THROTTLING, NULL);
    assert_true(e->charged_rps[3] == 0.5);
    r = run(e, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"RSA_2048\"}", sym);
    expect(&r, COFFER_ERR_THROTTLING, NULL);
    assert_true(e->charged_rps[4] == 1);
    e->quota_refuse = false;
    e->quota_take = NULL;
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"KeyId\":\"%s\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}", ct,
            rsa);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "Plaintext"), "aGk=");
    assert_null(json_object_get(r.out, "KeyMaterialId"));
    result_free(&r);
}

/* GetKeyLastUsage: successes only, kept in memory, written by the flush job, read after a restart. */
static void test_key_last_usage(void **state)
{
    struct env *e = *state;
    char id[64];
    create_key(e, id);
    struct result r = run(e, "GetKeyLastUsage", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyId"), id);
    assert_int_equal(json_object_size(json_object_get(r.out, "KeyLastUsage")), 0);
    double since = json_real_value(json_object_get(r.out, "TrackingStartDate"));
    assert_true(since >= json_real_value(json_object_get(r.out, "KeyCreationDate")));
    result_free(&r);

    char *blob = encrypt(e, id, "{\"a\":\"b\"}");
    r = run(e, "GetKeyLastUsage", "{\"KeyId\":\"%s\"}", id);
    json_t *used = json_object_get(r.out, "KeyLastUsage");
    assert_string_equal(sval(used, "Operation"), "Encrypt");
    assert_string_equal(sval(used, "KmsRequestId"), "r");
    assert_true(json_real_value(json_object_get(used, "Timestamp")) == (double)e->now / 1000.0);
    result_free(&r);

    /* A failed Decrypt later on is not a use. */
    e->now += 5000;
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, "");
    r = run(e, "GetKeyLastUsage", "{\"KeyId\":\"%s\"}", id);
    assert_string_equal(sval(json_object_get(r.out, "KeyLastUsage"), "Operation"), "Encrypt");
    result_free(&r);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"a\":\"b\"}}", blob);
    assert_int_equal(r.rc, COFFER_OK);
    result_free(&r);

    /* Written by the job; a new service over the same store reads it back. */
    assert_int_equal(e->api->jobs[3].fn(e->api->jobs[3].ctx, e->now), COFFER_OK);
    char skey[256];
    snprintf(skey, sizeof(skey), "kms/usage/" ACCOUNT "/" REGION "/%s", id);
    coffer_buf raw = COFFER_BUF_INIT;
    assert_int_equal(store_get(e->st, skey, &raw), COFFER_OK); /* sealed bytes: it exists */
    coffer_buf_free(&raw);
    env_reopen(e);
    r = run(e, "GetKeyLastUsage", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_object_get(r.out, "KeyLastUsage"), "Operation"), "Decrypt");
    assert_true(json_real_value(json_object_get(r.out, "TrackingStartDate")) == since);
    result_free(&r);

    /* Alias names are not accepted. */
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/used\",\"TargetKeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    result_free(&r);
    r = run(e, "GetKeyLastUsage", "{\"KeyId\":\"alias/used\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, NULL);
    free(blob);

    /* The record goes with its key. */
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id);
    assert_int_equal(r.rc, COFFER_OK);
    result_free(&r);
    e->now += 8LL * 86400 * 1000;
    assert_int_equal(e->api->jobs[0].fn(e->api->jobs[0].ctx, e->now), COFFER_OK);
    assert_int_equal(store_get(e->st, skey, &raw), COFFER_ERR_NOT_FOUND);
    coffer_clear_err();
}

static void test_encrypt_decrypt(void **state)
{
    struct env *e = *state;
    char id[64], arn[160], other[64];
    create_key(e, id);
    create_key(e, other);
    arn_of(arn, sizeof(arn), id);
    char *blob = encrypt(e, id, "{\"purpose\":\"test\",\"a\":\"b\"}");

    struct result r =
        run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"a\":\"b\",\"purpose\":\"test\"}}", blob);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "Plaintext"), "aGVsbG8=");
    assert_string_equal(sval(r.out, "KeyId"), arn);
    assert_string_equal(sval(r.out, "EncryptionAlgorithm"), "SYMMETRIC_DEFAULT");
    assert_int_equal(strlen(sval(r.out, "KeyMaterialId")), 64);
    assert_string_equal(sval(json_array_get(r.audit_resources, 0), "ARN"), arn);
    assert_string_equal(sval(json_object_get(r.audit_request, "encryptionContext"), "purpose"), "test");
    assert_null(r.audit_response);
    result_free(&r);

    /* Wrong, missing or extra context; tampered blob; garbage. */
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"a\":\"b\",\"purpose\":\"Test\"}}", blob);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, "");
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, "");
    char *bad = strdup(blob);
    size_t n = strlen(bad);
    bad[n - 6] = bad[n - 6] == 'A' ? 'B' : 'A';
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"a\":\"b\",\"purpose\":\"test\"}}", bad);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, "");
    free(bad);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"AAECAwQFBgcICQ==\"}");
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, "");
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%%%%\"}");
    expect(&r, COFFER_ERR_SERIALIZATION, NULL);
    r = run(e, "Decrypt", "{}");
    expect(&r, COFFER_ERR_VALIDATION, NULL);

    /* KeyId on Decrypt: same key by alias is fine, another key is IncorrectKeyException. */
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/enc\",\"TargetKeyId\":\"%s\"}", arn);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"KeyId\":\"alias/"
            "enc\",\"EncryptionContext\":{\"a\":\"b\",\"purpose\":\"test\"}}",
            blob);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"KeyId\":\"%s\",\"EncryptionContext\":{\"a\":\"b\",\"purpose\":"
            "\"test\"}}",
            blob, other);
    expect(&r, COFFER_ERR_INCORRECT_KEY,
           "The key ID in the request does not identify a CMK that can perform this operation.");

    /* Encrypt by alias, ARN and alias ARN; output KeyId is the key ARN. */
    r = run(e, "Encrypt", "{\"KeyId\":\"alias/enc\",\"Plaintext\":\"aGVsbG8=\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyId"), arn);
    result_free(&r);
    r = run(e, "Encrypt",
            "{\"KeyId\":\"arn:aws:kms:" REGION ":" ACCOUNT ":alias/enc\",\"Plaintext\":\"aGVsbG8=\"}");
    expect(&r, COFFER_OK, NULL);

    /* 4096 bytes pass, 4097 fail with the AWS text. */
    coffer_buf raw = COFFER_BUF_INIT, b64 = COFFER_BUF_INIT;
    assert_int_equal(coffer_buf_reserve(&raw, 4097), COFFER_OK);
    memset(raw.data, 'x', 4097);
    assert_int_equal(coffer_b64_encode(coffer_cursor_from(raw.data, 4096), &b64), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b64), COFFER_OK);
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\"}", id, (char *)b64.data);
    expect(&r, COFFER_OK, NULL);
    coffer_buf_reset(&b64);
    assert_int_equal(coffer_b64_encode(coffer_cursor_from(raw.data, 4097), &b64), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b64), COFFER_OK);
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\"}", id, (char *)b64.data);
    expect(&r, COFFER_ERR_VALIDATION,
           "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have "
           "length "
           "less than or equal to 4096");
    coffer_buf_free(&raw);
    coffer_buf_free(&b64);

    /* DryRun and algorithms. */
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\",\"DryRun\":true}", id);
    expect(&r, COFFER_ERR_DRY_RUN, "The request would have succeeded, but the DryRun option is set.");
    r = run(e, "Decrypt",
            "{\"CiphertextBlob\":\"%s\",\"DryRun\":true,\"EncryptionContext\":{\"a\":\"b\",\"purpose\":"
            "\"test\"}}",
            blob);
    expect(&r, COFFER_ERR_DRY_RUN, NULL);
    r = run(e, "Decrypt", "{\"DryRun\":true,\"DryRunModifiers\":[\"IGNORE_CIPHERTEXT\"],\"KeyId\":\"%s\"}",
            id);
    expect(&r, COFFER_ERR_DRY_RUN, NULL);
    r = run(e, "Encrypt",
            "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\",\"EncryptionAlgorithm\":\"RSAES_OAEP_SHA_1\"}", id);
    expect(&r, COFFER_ERR_INVALID_KEY_USAGE, NULL);
    free(blob);
}

static void test_key_states(void **state)
{
    struct env *e = *state;
    char id[64], arn[160], msg[256];
    create_key(e, id);
    arn_of(arn, sizeof(arn), id);
    char *blob = encrypt(e, id, NULL);

    struct result r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    snprintf(msg, sizeof(msg), "%s is disabled.", arn);
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"}", id);
    expect(&r, COFFER_ERR_DISABLED, msg);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_ERR_DISABLED, msg);
    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\"}", id);
    expect(&r, COFFER_ERR_DISABLED, msg);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeyState"), "Disabled");
    assert_true(json_is_false(json_object_get(json_object_get(r.out, "KeyMetadata"), "Enabled")));
    result_free(&r);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", arn);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_OK, NULL);

    /* Enable/Disable refuse aliases (kms.md §3). */
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/st\",\"TargetKeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "DisableKey", "{\"KeyId\":\"alias/st\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, "Invalid keyId 'alias/st'");

    /* Deletion window limits. */
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":6}", id);
    expect(&r, COFFER_ERR_VALIDATION, "PendingWindowInDays should be between 7 and 30, but it is 6");
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":366}", id);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    r = run(e, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", id);
    snprintf(msg, sizeof(msg), "%s is not pending deletion.", arn);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);

    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyId"), arn);
    assert_string_equal(sval(r.out, "KeyState"), "PendingDeletion");
    assert_int_equal(json_integer_value(json_object_get(r.out, "PendingWindowInDays")), 30);
    assert_true(json_real_value(json_object_get(r.out, "DeletionDate")) ==
                (double)(T0 + 30 * DAY_MS) / 1000.0);
    assert_non_null(json_object_get(r.audit_response, "deletionDate"));
    result_free(&r);

    snprintf(msg, sizeof(msg), "%s is pending deletion.", arn);
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "UpdateKeyDescription", "{\"KeyId\":\"%s\",\"Description\":\"x\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/st2\",\"TargetKeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, msg);
    /* Still describable, listable, alias deletable. */
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/st\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeyState"), "PendingDeletion");
    assert_non_null(json_object_get(json_object_get(r.out, "KeyMetadata"), "DeletionDate"));
    result_free(&r);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);

    r = run(e, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyId"), arn);
    result_free(&r);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeyState"), "Disabled");
    assert_null(json_object_get(json_object_get(r.out, "KeyMetadata"), "DeletionDate"));
    result_free(&r);

    r = run(e, "UpdateKeyDescription", "{\"KeyId\":\"%s\",\"Description\":\"new\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "Description"), "new");
    result_free(&r);
    free(blob);
}

static void test_data_keys_and_random(void **state)
{
    struct env *e = *state;
    char id[64];
    create_key(e, id);
    struct result r =
        run(e, "GenerateDataKey",
            "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\",\"EncryptionContext\":{\"k\":\"v\"}}", id);
    assert_int_equal(r.rc, COFFER_OK);
    coffer_buf pt = COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_decode(coffer_cursor_from_str(sval(r.out, "Plaintext")), &pt), COFFER_OK);
    assert_int_equal(pt.len, 32);
    char *blob = strdup(sval(r.out, "CiphertextBlob"));
    char *plain = strdup(sval(r.out, "Plaintext"));
    assert_int_equal(strlen(sval(r.out, "KeyMaterialId")), 64);
    result_free(&r);
    coffer_buf_free(&pt);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"k\":\"v\"}}", blob);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "Plaintext"), plain);
    result_free(&r);
    free(blob);
    free(plain);

    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_128\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(strlen(sval(r.out, "Plaintext")), 24);
    result_free(&r);
    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"NumberOfBytes\":1024}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"NumberOfBytes\":1025}", id);
    expect(&r, COFFER_ERR_VALIDATION,
           "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: "
           "Member must have "
           "value less than or equal to 1024");
    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_VALIDATION, "Please specify either number of bytes or key spec.");
    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"NumberOfBytes\":32,\"KeySpec\":\"AES_256\"}", id);
    expect(&r, COFFER_ERR_VALIDATION, "Please specify either number of bytes or key spec.");
    r = run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\",\"DryRun\":true}", id);
    expect(&r, COFFER_ERR_DRY_RUN, NULL);

    r = run(e, "GenerateDataKeyWithoutPlaintext", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_null(json_object_get(r.out, "Plaintext"));
    assert_non_null(json_object_get(r.out, "CiphertextBlob"));
    result_free(&r);

    r = run(e, "GenerateRandom", "{\"NumberOfBytes\":1024}");
    assert_int_equal(r.rc, COFFER_OK);
    pt = (coffer_buf)COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_decode(coffer_cursor_from_str(sval(r.out, "Plaintext")), &pt), COFFER_OK);
    assert_int_equal(pt.len, 1024);
    coffer_buf_free(&pt);
    result_free(&r);
    r = run(e, "GenerateRandom", "{\"NumberOfBytes\":1025}");
    expect(&r, COFFER_ERR_VALIDATION,
           "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: "
           "Member must have "
           "value less than or equal to 1024");
    r = run(e, "GenerateRandom", "{}");
    expect(&r, COFFER_ERR_VALIDATION, "NumberOfBytes is required.");
}

static void test_reencrypt(void **state)
{
    struct env *e = *state;
    char a[64], b[64], barn[160];
    create_key(e, a);
    create_key(e, b);
    arn_of(barn, sizeof(barn), b);
    char *blob = encrypt(e, a, "{\"x\":\"1\"}");
    struct result r = run(
        e, "ReEncrypt",
        "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"x\":\"1\"},\"DestinationKeyId\":\"%s\","
        "\"DestinationEncryptionContext\":{\"y\":\"2\"}}",
        blob, b);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyId"), barn);
    assert_non_null(strstr(sval(r.out, "SourceKeyId"), a));
    char *blob2 = strdup(sval(r.out, "CiphertextBlob"));
    assert_int_equal(json_array_size(r.audit_resources), 2);
    result_free(&r);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"y\":\"2\"}}", blob2);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyId"), barn);
    assert_string_equal(sval(r.out, "Plaintext"), "aGVsbG8=");
    result_free(&r);
    /* Wrong source context, wrong SourceKeyId, DryRun. */
    r = run(e, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"DestinationKeyId\":\"%s\"}", blob, b);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, "");
    r = run(e, "ReEncrypt",
            "{\"CiphertextBlob\":\"%s\",\"SourceKeyId\":\"%s\",\"SourceEncryptionContext\":{\"x\":\"1\"},"
            "\"DestinationKeyId\":\"%s\"}",
            blob, b, b);
    expect(&r, COFFER_ERR_INCORRECT_KEY, NULL);
    r = run(
        e, "ReEncrypt",
        "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"x\":\"1\"},\"DestinationKeyId\":\"%s\","
        "\"DryRun\":true}",
        blob, b);
    expect(&r, COFFER_ERR_DRY_RUN, NULL);
    r = run(e, "ReEncrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    free(blob);
    free(blob2);
}

/* The store's change feed entry point (kms_internal.h). */
void kms_cache_changed(void *ctx, const char *key);

/* Another node's change: a second service over the same store stands for a second node. Its
 * cache keeps what it read until the change feed names the record (the feed itself is the
 * store's: on SQLite and mem it never fires, so it is called here directly). */
static void test_other_node_changes(void **state)
{
    struct env *e = *state;
    char a[64], b[64], skey[256];
    create_key(e, a);
    create_key(e, b);
    struct result r = run(e, "CreateAlias", "{\"AliasName\":\"alias/shared\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    struct env other = *e; /* same store, seal and caller; its own service and caches */
    assert_int_equal(kms_service_new(e->st, e->sl, REGION, &other.svc), COFFER_OK);
    other.api = kms_service_api(other.svc);
    free(encrypt(&other, "alias/shared", NULL)); /* the alias and key a are cached there */

    /* Node 1 disables a and moves the alias: node 2 serves its cached state until told. */
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "UpdateAlias", "{\"AliasName\":\"alias/shared\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    free(encrypt(&other, a, NULL));
    snprintf(skey, sizeof(skey), "kms/key/" ACCOUNT "/" REGION "/%s", a);
    kms_cache_changed(other.svc, skey);
    r = run(&other, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"}", a);
    expect(&r, COFFER_ERR_DISABLED, NULL);
    r = run(&other, "Encrypt", "{\"KeyId\":\"alias/shared\",\"Plaintext\":\"aGVsbG8=\"}");
    assert_int_equal(r.rc, COFFER_ERR_DISABLED); /* still the old target */
    result_free(&r);
    kms_cache_changed(other.svc, "kms/alias/" ACCOUNT "/" REGION "/alias/shared");
    r = run(&other, "Encrypt", "{\"KeyId\":\"alias/shared\",\"Plaintext\":\"aGVsbG8=\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_non_null(strstr(sval(r.out, "KeyId"), b));
    result_free(&r);

    /* A grant or material record names its key; "anything changed" drops every entry. */
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    snprintf(skey, sizeof(skey), "kms/grant/" ACCOUNT "/" REGION "/%s/0123", a);
    kms_cache_changed(other.svc, skey);
    free(encrypt(&other, a, NULL));
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    kms_cache_changed(other.svc, "kms/usage/" ACCOUNT "/" REGION "/x"); /* not cached: ignored */
    kms_cache_changed(other.svc, "kms/key/malformed");
    free(encrypt(&other, b, NULL));
    kms_cache_changed(other.svc, NULL);
    r = run(&other, "Encrypt", "{\"KeyId\":\"alias/shared\",\"Plaintext\":\"aGVsbG8=\"}");
    expect(&r, COFFER_ERR_DISABLED, NULL);
    kms_service_free(other.svc);
}

static void test_aliases(void **state)
{
    struct env *e = *state;
    char a[64], b[64], msg[256];
    create_key(e, a);
    create_key(e, b);
    struct result r = run(e, "CreateAlias", "{\"AliasName\":\"alias/one\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/one\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_ERR_ALREADY_EXISTS,
           "An alias with the name arn:aws:kms:us-east-1:111122223333:alias/one already exists");
    r = run(e, "CreateAlias", "{\"AliasName\":\"one\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_ERR_VALIDATION,
           "Alias must start with the prefix \"alias/\". Please see "
           "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html");
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/aws/mine\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/bad name\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_ERR_VALIDATION,
           "1 validation error detected: Value 'alias/bad name' at 'aliasName' failed to satisfy constraint: "
           "Member "
           "must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$");
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/two\",\"TargetKeyId\":\"alias/one\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, "Invalid keyId 'alias/one'");
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/two\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/three\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);

    /* UpdateAlias moves alias/one to b; encrypt through it now names b. */
    r = run(e, "UpdateAlias", "{\"AliasName\":\"alias/one\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Encrypt", "{\"KeyId\":\"alias/one\",\"Plaintext\":\"aGVsbG8=\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_non_null(strstr(sval(r.out, "KeyId"), b));
    result_free(&r);
    r = run(e, "UpdateAlias", "{\"AliasName\":\"alias/none\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_ERR_NOT_FOUND, "Alias arn:aws:kms:us-east-1:111122223333:alias/none is not found.");

    /* ListAliases: all, paged, filtered. The AWS managed aliases are listed before their keys
     * exist, without TargetKeyId, in order among the account's own. */
    r = run(e, "ListAliases", "{}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(r.out, "Aliases")), 5);
    json_t *managed = json_array_get(json_object_get(r.out, "Aliases"), 0);
    assert_string_equal(sval(managed, "AliasName"), "alias/aws/secretsmanager");
    assert_string_equal(sval(managed, "AliasArn"),
                        "arn:aws:kms:us-east-1:111122223333:alias/aws/secretsmanager");
    assert_null(json_object_get(managed, "TargetKeyId"));
    assert_string_equal(sval(json_array_get(json_object_get(r.out, "Aliases"), 1), "AliasName"),
                        "alias/aws/ssm");
    json_t *first = json_array_get(json_object_get(r.out, "Aliases"), 2);
    assert_string_equal(sval(first, "AliasName"), "alias/one");
    assert_string_equal(sval(first, "AliasArn"), "arn:aws:kms:us-east-1:111122223333:alias/one");
    assert_string_equal(sval(first, "TargetKeyId"), b);
    assert_true(json_is_false(json_object_get(r.out, "Truncated")));
    result_free(&r);
    const char *pages[][2] = {
        {"alias/aws/secretsmanager", "alias/aws/ssm"}, {"alias/one", "alias/three"}, {"alias/two", NULL}};
    char *marker = NULL;
    for (size_t p = 0; p < 3; p++) {
        if (marker == NULL) {
            r = run(e, "ListAliases", "{\"Limit\":2}");
        } else {
            r = run(e, "ListAliases", "{\"Limit\":2,\"Marker\":\"%s\"}", marker);
        }
        assert_int_equal(r.rc, COFFER_OK);
        const json_t *list = json_object_get(r.out, "Aliases");
        assert_int_equal(json_array_size(list), pages[p][1] != NULL ? 2 : 1);
        for (size_t i = 0; i < json_array_size(list); i++) {
            assert_string_equal(sval(json_array_get(list, i), "AliasName"), pages[p][i]);
        }
        assert_int_equal(json_is_true(json_object_get(r.out, "Truncated")), p < 2);
        free(marker);
        marker = p < 2 ? strdup(sval(r.out, "NextMarker")) : NULL;
        result_free(&r);
    }
    r = run(e, "ListAliases", "{\"Marker\":\"bm9wZQ==\"}");
    expect(&r, COFFER_ERR_INVALID_MARKER, NULL);
    r = run(e, "ListAliases", "{\"KeyId\":\"%s\"}", a);
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(r.out, "Aliases")), 0);
    result_free(&r);
    r = run(e, "ListAliases", "{\"KeyId\":\"%s\"}", b);
    assert_int_equal(json_array_size(json_object_get(r.out, "Aliases")), 3);
    result_free(&r);
    r = run(e, "ListAliases", "{\"KeyId\":\"alias/one\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, NULL);
    r = run(e, "ListAliases", "{\"Limit\":101}");
    expect(&r, COFFER_ERR_VALIDATION, NULL);

    r = run(e, "DeleteAlias", "{\"AliasName\":\"alias/one\"}");
    expect(&r, COFFER_OK, NULL);
    r = run(e, "DeleteAlias", "{\"AliasName\":\"alias/one\"}");
    snprintf(msg, sizeof(msg), "Alias arn:aws:kms:us-east-1:111122223333:alias/one is not found.");
    expect(&r, COFFER_ERR_NOT_FOUND, msg);
    r = run(e, "Encrypt", "{\"KeyId\":\"alias/one\",\"Plaintext\":\"aGVsbG8=\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, msg);
}

static void test_tags(void **state)
{
    struct env *e = *state;
    char id[64];
    create_key(e, id);
    struct result r = run(e, "TagResource",
                          "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"1\"},{\"TagKey\":"
                          "\"b\",\"TagValue\":\"2\"}]}",
                          id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"3\"}]}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    json_t *tags = json_object_get(r.out, "Tags");
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(sval(json_array_get(tags, 0), "TagKey"), "a");
    assert_string_equal(sval(json_array_get(tags, 0), "TagValue"), "3");
    result_free(&r);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\",\"Limit\":1}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_true(json_is_true(json_object_get(r.out, "Truncated")));
    char *marker = strdup(sval(r.out, "NextMarker"));
    result_free(&r);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\",\"Limit\":1,\"Marker\":\"%s\"}", id, marker);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(json_array_get(json_object_get(r.out, "Tags"), 0), "TagKey"), "b");
    assert_true(json_is_false(json_object_get(r.out, "Truncated")));
    result_free(&r);
    free(marker);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\",\"Marker\":\"garbage\"}", id);
    expect(&r, COFFER_ERR_INVALID_MARKER, NULL);

    r = run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"aws:x\",\"TagValue\":\"1\"}]}", id);
    expect(&r, COFFER_ERR_TAG, "Tags beginning with aws: are reserved");
    r = run(e, "TagResource",
            "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"d\",\"TagValue\":\"1\"},{\"TagKey\":\"d\","
            "\"TagValue\":\"2\"}]}",
            id);
    expect(&r, COFFER_ERR_TAG, "Duplicate tag keys");
    char many[8192];
    size_t n = (size_t)snprintf(many, sizeof(many), "[");
    for (int i = 0; i < 49; i++) {
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s{\"TagKey\":\"k%d\",\"TagValue\":\"v\"}",
                              i ? "," : "", i);
    }
    snprintf(many + n, sizeof(many) - n, "]");
    r = run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":%s}", id, many);
    expect(&r, COFFER_ERR_TAG, "Too many tags");
    r = run(e, "TagResource", "{\"KeyId\":\"alias/x\",\"Tags\":[]}");
    expect(&r, COFFER_ERR_NOT_FOUND, "Invalid keyId 'alias/x'");

    r = run(e, "UntagResource", "{\"KeyId\":\"%s\",\"TagKeys\":[\"a\",\"zz\"]}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(json_array_size(json_object_get(r.out, "Tags")), 1);
    result_free(&r);
}

static void test_list_keys_paging(void **state)
{
    struct env *e = *state;
    char id[64];
    for (int i = 0; i < 5; i++) {
        create_key(e, id);
    }
    size_t seen = 0;
    char marker[256] = "";
    for (int page = 0; page < 10; page++) {
        struct result r = marker[0] ? run(e, "ListKeys", "{\"Limit\":2,\"Marker\":\"%s\"}", marker)
                                    : run(e, "ListKeys", "{\"Limit\":2}");
        assert_int_equal(r.rc, COFFER_OK);
        json_t *keys = json_object_get(r.out, "Keys");
        seen += json_array_size(keys);
        assert_non_null(
            strstr(sval(json_array_get(keys, 0), "KeyArn"), sval(json_array_get(keys, 0), "KeyId")));
        bool more = json_is_true(json_object_get(r.out, "Truncated"));
        if (more) {
            snprintf(marker, sizeof(marker), "%s", sval(r.out, "NextMarker"));
        } else {
            assert_null(json_object_get(r.out, "NextMarker"));
        }
        result_free(&r);
        if (!more) {
            break;
        }
    }
    assert_int_equal(seen, 5);
    struct result r = run(e, "ListKeys", "{\"Marker\":\"bm90LWEta2V5\"}");
    expect(&r, COFFER_ERR_INVALID_MARKER, NULL);
    r = run(e, "ListKeys", "{\"Limit\":0}");
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    /* Another account sees nothing. */
    snprintf(e->caller.account_id, sizeof(e->caller.account_id), "222233334444");
    r = run(e, "ListKeys", "{}");
    assert_int_equal(json_array_size(json_object_get(r.out, "Keys")), 0);
    result_free(&r);
    snprintf(e->caller.account_id, sizeof(e->caller.account_id), ACCOUNT);
}

static coffer_err collect_first_key(void *ctx, const char *key, coffer_cursor value)
{
    (void)value;
    snprintf(ctx, 512, "%s", key);
    return STORE_SCAN_STOP;
}

/* A store written before the retiring-principal index: the index is built at the next start. */
static void test_retirable_index_backfill(void **state)
{
    struct env *e = *state;
    char a[64], ikey[512] = "";
    create_key(e, a);
    struct result r =
        run(e, "CreateGrant",
            "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"arn:aws:iam::" ACCOUNT ":user/app\","
            "\"RetiringPrincipal\":\"arn:aws:iam::" ACCOUNT ":user/old\",\"Operations\":[\"Encrypt\"]}",
            a);
    expect(&r, COFFER_OK, NULL);
    assert_int_equal(store_scan(e->st, "kms/rgrant/", "", 0, collect_first_key, ikey), COFFER_OK);
    assert_true(ikey[0] != '\0');
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(e->st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, ikey), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "kms/meta/rgrant-index-v2"), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    r = run(e, "ListRetirableGrants", "{\"RetiringPrincipal\":\"arn:aws:iam::" ACCOUNT ":user/old\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 0);
    result_free(&r);
    env_restart_service(e);
    r = run(e, "ListRetirableGrants", "{\"RetiringPrincipal\":\"arn:aws:iam::" ACCOUNT ":user/old\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 1);
    result_free(&r);
    /* Another account's principal is refused. */
    r = run(e, "ListRetirableGrants", "{\"RetiringPrincipal\":\"arn:aws:iam::222233334444:user/old\"}");
    expect(&r, COFFER_ERR_ACCESS_DENIED, NULL);
}

/* What the sweeper recorded; `fail` makes the sink refuse, as a full trail would. */
struct sink_log {
    bool fail;
    int events;
    char last[2048];
};

static coffer_err sink_record(void *ctx, json_t *event)
{
    struct sink_log *l = ctx;
    if (l->fail) {
        return coffer_fail(COFFER_ERR_AUDIT, "%s", "trail refused");
    }
    l->events++;
    char *text = json_dumps(event, JSON_COMPACT);
    snprintf(l->last, sizeof(l->last), "%s", text != NULL ? text : "");
    free(text);
    return COFFER_OK;
}

/* A key deleted by the sweeper is on record first; when the record cannot be written, it stays. */
static void test_sweep_records_deletion(void **state)
{
    struct env *e = *state;
    char a[64];
    create_key(e, a);
    struct result r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", a);
    expect(&r, COFFER_OK, NULL);
    struct sink_log log = {.fail = true};
    kms_service_set_event_sink(e->svc, sink_record, &log);
    assert_int_not_equal(kms_service_sweep(e->svc, T0 + 7 * DAY_MS), COFFER_OK);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL); /* not deleted: nothing to show for it */
    assert_int_equal(log.events, 0);
    log.fail = false;
    assert_int_equal(kms_service_sweep(e->svc, T0 + 7 * DAY_MS), COFFER_OK);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_ERR_NOT_FOUND, NULL);
    assert_int_equal(log.events, 1);
    assert_non_null(strstr(log.last, "\"eventName\":\"DeleteKey\""));
    assert_non_null(strstr(log.last, "\"eventType\":\"AwsServiceEvent\""));
    assert_non_null(strstr(log.last, a));
    kms_service_set_event_sink(e->svc, NULL, NULL);
}

/* An AWS managed key appears on first use of its alias, once, on record, and only for its own account. */
static void test_managed_keys(void **state)
{
    struct env *e = *state;
    struct sink_log log = {0};
    kms_service_set_event_sink(e->svc, sink_record, &log);
    struct result r = run(e, "DescribeKey", "{\"KeyId\":\"alias/aws/ssm\"}");
    assert_int_equal(r.rc, COFFER_OK);
    const json_t *m = json_object_get(r.out, "KeyMetadata");
    assert_string_equal(sval(m, "KeyManager"), "AWS");
    assert_string_equal(sval(m, "Description"),
                        "Default key that protects my SSM parameters when no other key is defined");
    assert_string_equal(sval(m, "KeySpec"), "SYMMETRIC_DEFAULT");
    char id[64];
    snprintf(id, sizeof(id), "%s", sval(m, "KeyId"));
    result_free(&r);
    assert_int_equal(log.events, 1);
    assert_non_null(strstr(log.last, "\"eventName\":\"CreateKey\""));
    assert_non_null(strstr(log.last, id));

    /* The second use finds the same key; nothing more is created. */
    r = run(e, "Encrypt", "{\"KeyId\":\"alias/aws/ssm\",\"Plaintext\":\"aGVsbG8=\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_non_null(strstr(sval(r.out, "KeyId"), id));
    result_free(&r);
    assert_int_equal(log.events, 1);
    r = run(e, "ListAliases", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(r.out, "Aliases")), 1);
    assert_string_equal(sval(json_array_get(json_object_get(r.out, "Aliases"), 0), "AliasName"),
                        "alias/aws/ssm");
    result_free(&r);
    r = run(e, "ListAliases", "{}");
    assert_int_equal(json_array_size(json_object_get(r.out, "Aliases")), 2);
    assert_null(json_object_get(json_array_get(json_object_get(r.out, "Aliases"), 0), "TargetKeyId"));
    assert_string_equal(sval(json_array_get(json_object_get(r.out, "Aliases"), 1), "TargetKeyId"), id);
    result_free(&r);
    r = run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\",\"PolicyName\":\"default\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_non_null(strstr(sval(r.out, "Policy"), "\"kms:ViaService\" : \"ssm.us-east-1.amazonaws.com\""));
    result_free(&r);
    /* AWS rotates its managed keys every year. */
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_true(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    assert_int_equal(json_integer_value(json_object_get(r.out, "RotationPeriodInDays")), 365);
    result_free(&r);

    /* Not a managed alias, another account's managed alias, or one that cannot be recorded: nothing made. */
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/aws/lambda\"}");
    expect(&r, COFFER_ERR_NOT_FOUND,
           "Alias arn:aws:kms:us-east-1:111122223333:alias/aws/lambda is not found.");
    r = run(e, "DescribeKey", "{\"KeyId\":\"arn:aws:kms:us-east-1:444455556666:alias/aws/ssm\"}");
    assert_int_not_equal(r.rc, COFFER_OK);
    result_free(&r);
    log.fail = true;
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/aws/secretsmanager\"}");
    assert_int_not_equal(r.rc, COFFER_OK);
    result_free(&r);
    log.fail = false;
    r = run(e, "ListKeys", "{}");
    assert_int_equal(json_array_size(json_object_get(r.out, "Keys")), 1);
    result_free(&r);
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/aws/secretsmanager\"}");
    assert_int_equal(r.rc, COFFER_OK);
    result_free(&r);
    assert_int_equal(log.events, 2);

    /* Nobody names a managed alias by hand. */
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/aws/mine\",\"TargetKeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    kms_service_set_event_sink(e->svc, NULL, NULL);
}

static void test_sweep(void **state)
{
    struct env *e = *state;
    char a[64], b[64];
    create_key(e, a);
    create_key(e, b);
    char *blob = encrypt(e, a, NULL);
    struct result r = run(e, "CreateAlias", "{\"AliasName\":\"alias/doomed\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/kept\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    /* A retirable grant on each: the one on a leaves the retiring principal's index with a. */
    for (int i = 0; i < 2; i++) {
        r = run(e, "CreateGrant",
                "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"arn:aws:iam::" ACCOUNT ":user/app\","
                "\"RetiringPrincipal\":\"arn:aws:iam::" ACCOUNT ":user/ret\",\"Operations\":[\"Encrypt\"]}",
                i == 0 ? a : b);
        expect(&r, COFFER_OK, NULL);
    }
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", a);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":8}", b);
    expect(&r, COFFER_OK, NULL);

    /* Not yet due. */
    assert_int_equal(kms_service_sweep(e->svc, T0 + 7 * DAY_MS - 1), COFFER_OK);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);

    /* a is due, b is not. */
    assert_int_equal(kms_service_sweep(e->svc, T0 + 7 * DAY_MS), COFFER_OK);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_ERR_NOT_FOUND, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/doomed\"}");
    expect(&r, COFFER_ERR_NOT_FOUND, NULL);
    /* The blob's key is gone: indistinguishable from a damaged key id inside the blob. */
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/kept\"}");
    expect(&r, COFFER_OK, NULL);
    r = run(e, "ListAliases", "{}"); /* alias/kept and the two AWS managed aliases */
    assert_int_equal(json_array_size(json_object_get(r.out, "Aliases")), 3);
    result_free(&r);
    r = run(e, "ListKeys", "{}");
    assert_int_equal(json_array_size(json_object_get(r.out, "Keys")), 1);
    result_free(&r);
    r = run(e, "ListRetirableGrants", "{\"RetiringPrincipal\":\"arn:aws:iam::" ACCOUNT ":user/ret\"}");
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 1);
    result_free(&r);

    /* Cancelled before its date: the sweeper leaves it alone. */
    r = run(e, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    assert_int_equal(kms_service_sweep(e->svc, T0 + 100 * DAY_MS), COFFER_OK);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);

    /* A fresh service (cold cache) agrees: a is gone from the store too. */
    env_restart_service(e);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_ERR_NOT_FOUND, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"alias/kept\"}");
    expect(&r, COFFER_OK, NULL);
    free(blob);
}

/* ------------------------------------------------------------------------------------------ */
/* Rotation                                                                                   */
/* ------------------------------------------------------------------------------------------ */

#define ON_DEMAND_MAX 25 /* on-demand rotations per key (AWS's resource quota) */

/* The key's CurrentKeyMaterialId (DescribeKey) in out (65 bytes). */
static void current_material(struct env *e, const char *id, char *out)
{
    struct result r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    snprintf(out, 65, "%s", sval(json_object_get(r.out, "KeyMetadata"), "CurrentKeyMaterialId"));
    result_free(&r);
}

/* Decrypts blob and checks it gives "hello" under key id. */
static void decrypts(struct env *e, const char *blob, const char *id)
{
    struct result r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    if (r.rc != COFFER_OK) {
        fail_msg("Decrypt failed: %s", r.msg);
    }
    assert_string_equal(sval(r.out, "Plaintext"), "aGVsbG8=");
    char arn[128];
    arn_of(arn, sizeof(arn), id);
    assert_string_equal(sval(r.out, "KeyId"), arn);
    result_free(&r);
}

/* Number of Rotations ListKeyRotations gives for id (one page of at most 1000). */
static size_t rotations(struct env *e, const char *id)
{
    struct result r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\",\"Limit\":1000}", id);
    assert_int_equal(r.rc, COFFER_OK);
    size_t n = json_array_size(json_object_get(r.out, "Rotations"));
    result_free(&r);
    return n;
}

static coffer_err count_cb(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    (void)value;
    (*(size_t *)ctx)++;
    return COFFER_OK;
}

/* Sets one member of a stored key record (as a key of another type would have it) and restarts. */
static void set_record_member(struct env *e, const char *id, const char *member, const char *value)
{
    char skey[256];
    snprintf(skey, sizeof(skey), "kms/key/" ACCOUNT "/" REGION "/%s", id);
    coffer_buf v = COFFER_BUF_INIT;
    assert_int_equal(store_get(e->st, skey, &v), COFFER_OK);
    json_t *rec = json_loadb((const char *)v.data, v.len, 0, NULL);
    coffer_buf_free(&v);
    assert_non_null(rec);
    assert_int_equal(json_object_set_new(rec, member, json_string(value)), 0);
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(e->st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, skey, coffer_cursor_from_str(text)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    free(text);
    env_restart_service(e);
}

static void test_rotation_settings(void **state)
{
    struct env *e = *state;
    char id[64], arn[128], msg[512];
    create_key(e, id);
    arn_of(arn, sizeof(arn), id);
    struct result r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_false(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    assert_string_equal(sval(r.out, "KeyId"), arn);
    assert_null(json_object_get(r.out, "NextRotationDate"));
    result_free(&r);

    /* Default period 365 days, counted from now. */
    r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", arn);
    assert_int_equal(r.rc, COFFER_OK);
    assert_true(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    assert_int_equal(json_integer_value(json_object_get(r.out, "RotationPeriodInDays")), 365);
    assert_true(json_real_value(json_object_get(r.out, "NextRotationDate")) ==
                (double)(T0 + 365 * DAY_MS) / 1000.0);
    assert_null(json_object_get(r.out, "OnDemandRotationStartDate"));
    result_free(&r);
    /* A new period counts from the same start; the request is audited with it. */
    e->now = T0 + 10 * DAY_MS;
    r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":90}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_int_equal(json_integer_value(json_object_get(r.audit_request, "rotationPeriodInDays")), 90);
    assert_string_equal(sval(json_array_get(r.audit_resources, 0), "ARN"), arn);
    result_free(&r);
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(json_integer_value(json_object_get(r.out, "RotationPeriodInDays")), 90);
    assert_true(json_real_value(json_object_get(r.out, "NextRotationDate")) ==
                (double)(T0 + 90 * DAY_MS) / 1000.0);
    result_free(&r);

    /* The model's range, in AWS's words. */
    r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":89}", id);
    expect(&r, COFFER_ERR_VALIDATION,
           "1 validation error detected: Value '89' at 'rotationPeriodInDays' failed to satisfy constraint: "
           "Member must have value greater than or equal to 90");
    r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":2561}", id);
    expect(
        &r, COFFER_ERR_VALIDATION,
        "1 validation error detected: Value '2561' at 'rotationPeriodInDays' failed to satisfy constraint: "
        "Member must have value less than or equal to 2560");
    r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":2560}", id);
    expect(&r, COFFER_OK, NULL);
    /* Key id or ARN only (kms.md §3). */
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/rot\",\"TargetKeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    const char *ops[] = {"EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus",
                         "RotateKeyOnDemand", "ListKeyRotations"};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        r = run(e, ops[i], "{\"KeyId\":\"alias/rot\"}");
        expect(&r, COFFER_ERR_NOT_FOUND, "Invalid keyId 'alias/rot'");
    }

    /* Disabled: the settings cannot change (DisabledException); the status still reads. */
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    snprintf(msg, sizeof(msg), "%s is disabled.", arn);
    const char *writes[] = {"EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand"};
    for (size_t i = 0; i < 3; i++) {
        r = run(e, writes[i], "{\"KeyId\":\"%s\"}", id);
        expect(&r, COFFER_ERR_DISABLED, msg);
    }
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_true(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    result_free(&r);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);

    /* Pending deletion: KMSInvalidStateException, and the status reads false... */
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id);
    expect(&r, COFFER_OK, NULL);
    snprintf(msg, sizeof(msg), "%s is pending deletion.", arn);
    for (size_t i = 0; i < 3; i++) {
        r = run(e, writes[i], "{\"KeyId\":\"%s\"}", id);
        expect(&r, COFFER_ERR_INVALID_STATE, msg);
    }
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_false(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    assert_null(json_object_get(r.out, "RotationPeriodInDays"));
    result_free(&r);
    /* ...until the deletion is cancelled: the setting was kept. */
    r = run(e, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_true(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    assert_int_equal(json_integer_value(json_object_get(r.out, "RotationPeriodInDays")), 2560);
    result_free(&r);

    r = run(e, "DisableKeyRotation", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "DisableKeyRotation", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL); /* already off */
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_false(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    result_free(&r);
    /* Nothing left for the scheduler. */
    assert_int_equal(kms_service_rotate_due(e->svc, T0 + 10000 * DAY_MS), COFFER_OK);
    assert_int_equal(rotations(e, id), 0);
}

/* Rotation is for symmetric keys with AWS_KMS origin: the check reads the record's spec and origin. */
static void test_rotation_unsupported(void **state)
{
    struct env *e = *state;
    char a[64], b[64], arn[128], msg[512];
    create_key(e, a);
    create_key(e, b);
    /* 32 bytes of material are a valid HMAC_256 key: the record loads as one. */
    set_record_member(e, a, "KeySpec", "HMAC_256");
    set_record_member(e, b, "Origin", "EXTERNAL");
    const char *writes[] = {"EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand",
                            "ListKeyRotations"};
    arn_of(arn, sizeof(arn), a);
    snprintf(msg, sizeof(msg), "%s key spec is HMAC_256 which is not valid for this operation.", arn);
    for (size_t i = 0; i < 4; i++) {
        struct result r = run(e, writes[i], "{\"KeyId\":\"%s\"}", a);
        expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, msg);
    }
    arn_of(arn, sizeof(arn), b);
    snprintf(msg, sizeof(msg), "%s origin is EXTERNAL which is not valid for this operation.", arn);
    for (size_t i = 0; i < 3; i++) {
        struct result r = run(e, writes[i], "{\"KeyId\":\"%s\"}", b);
        expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, msg);
    }
    struct result r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", b);
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, msg);
    /* An asymmetric or HMAC key made by KMS reads as "not rotating", as AWS answers Terraform. */
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", a);
    assert_int_equal(r.rc, COFFER_OK);
    assert_false(json_is_true(json_object_get(r.out, "KeyRotationEnabled")));
    result_free(&r);
}

static void test_rotate_on_demand(void **state)
{
    struct env *e = *state;
    char id[64], arn[128], m0[65], m1[65], msg[512];
    char *blobs[ON_DEMAND_MAX + 1];
    create_key(e, id);
    arn_of(arn, sizeof(arn), id);
    current_material(e, id, m0);
    blobs[0] = encrypt(e, id, NULL);
    struct result r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":100}", id);
    expect(&r, COFFER_OK, NULL);
    for (int i = 1; i <= ON_DEMAND_MAX; i++) {
        e->now = T0 + i * 1000;
        r = run(e, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id);
        assert_int_equal(r.rc, COFFER_OK);
        assert_string_equal(sval(r.out, "KeyId"), arn);
        assert_string_equal(sval(r.audit_response, "keyId"), arn);
        result_free(&r);
        blobs[i] = encrypt(e, id, NULL);
    }
    current_material(e, id, m1);
    assert_string_not_equal(m0, m1);
    /* AWS's per-key quota, in its words. */
    snprintf(
        msg, sizeof(msg),
        "The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations "
        "can be performed for this key: %s",
        arn);
    r = run(e, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_LIMIT_EXCEEDED, msg);
    /* The automatic schedule did not move. */
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id);
    assert_true(json_real_value(json_object_get(r.out, "NextRotationDate")) ==
                (double)(T0 + 100 * DAY_MS) / 1000.0);
    result_free(&r);

    /* Every ciphertext decrypts, before and after a restart that reads everything back. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i <= ON_DEMAND_MAX; i++) {
            decrypts(e, blobs[i], id);
        }
        char now[65];
        current_material(e, id, now);
        assert_string_equal(now, m1);
        env_reopen(e);
    }

    /* ListKeyRotations: the rotations in order, paged; ALL_KEY_MATERIAL adds the first material. */
    r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\",\"Limit\":10}", id);
    assert_int_equal(r.rc, COFFER_OK);
    json_t *rot = json_object_get(r.out, "Rotations");
    assert_int_equal(json_array_size(rot), 10);
    assert_true(json_is_true(json_object_get(r.out, "Truncated")));
    assert_string_equal(sval(json_array_get(rot, 0), "RotationType"), "ON_DEMAND");
    assert_string_equal(sval(json_array_get(rot, 0), "KeyId"), id);
    assert_string_equal(sval(json_array_get(rot, 0), "KeyMaterialState"), "NON_CURRENT");
    assert_true(json_real_value(json_object_get(json_array_get(rot, 0), "RotationDate")) ==
                (double)(T0 + 1000) / 1000.0);
    char marker[256];
    snprintf(marker, sizeof(marker), "%s", sval(r.out, "NextMarker"));
    result_free(&r);
    r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\",\"Limit\":100,\"Marker\":\"%s\"}", id, marker);
    assert_int_equal(r.rc, COFFER_OK);
    rot = json_object_get(r.out, "Rotations");
    assert_int_equal(json_array_size(rot), ON_DEMAND_MAX - 10);
    assert_false(json_is_true(json_object_get(r.out, "Truncated")));
    assert_null(json_object_get(r.out, "NextMarker"));
    json_t *last = json_array_get(rot, json_array_size(rot) - 1);
    assert_string_equal(sval(last, "KeyMaterialState"), "CURRENT");
    assert_string_equal(sval(last, "KeyMaterialId"), m1);
    result_free(&r);
    r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\",\"IncludeKeyMaterial\":\"ALL_KEY_MATERIAL\"}", id);
    rot = json_object_get(r.out, "Rotations");
    assert_int_equal(json_array_size(rot), ON_DEMAND_MAX + 1);
    assert_string_equal(sval(json_array_get(rot, 0), "KeyMaterialId"), m0);
    assert_null(json_object_get(json_array_get(rot, 0), "RotationType"));
    result_free(&r);
    r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\",\"Marker\":\"bm90LWEtbWF0ZXJpYWw=\"}", id);
    expect(&r, COFFER_ERR_INVALID_MARKER, NULL);
    r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\",\"IncludeKeyMaterial\":\"SOME\"}", id);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    for (int i = 0; i <= ON_DEMAND_MAX; i++) {
        free(blobs[i]);
    }
}

static void test_rotation_schedule(void **state)
{
    struct env *e = *state;
    char a[64], b[64], m0[65], m1[65], m2[65];
    create_key(e, a);
    create_key(e, b);
    char *blob0 = encrypt(e, a, NULL);
    current_material(e, a, m0);
    struct result r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":90}", a);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\",\"RotationPeriodInDays\":91}", b);
    expect(&r, COFFER_OK, NULL);

    /* Not yet due. */
    assert_int_equal(kms_service_rotate_due(e->svc, T0 + 90 * DAY_MS - 1), COFFER_OK);
    current_material(e, a, m1);
    assert_string_equal(m0, m1);

    /* Due: on record first; a refused record leaves the key as it was, in the store too. */
    struct sink_log log = {.fail = true};
    kms_service_set_event_sink(e->svc, sink_record, &log);
    assert_int_not_equal(kms_service_rotate_due(e->svc, T0 + 90 * DAY_MS), COFFER_OK);
    current_material(e, a, m1);
    assert_string_equal(m0, m1);
    env_reopen(e);
    kms_service_set_event_sink(e->svc, sink_record, &log);
    current_material(e, a, m1);
    assert_string_equal(m0, m1);
    assert_int_equal(rotations(e, a), 0);
    log.fail = false;
    assert_int_equal(kms_service_rotate_due(e->svc, T0 + 90 * DAY_MS + 5), COFFER_OK);
    assert_int_equal(log.events, 1);
    assert_non_null(strstr(log.last, "\"eventName\":\"RotateKey\""));
    assert_non_null(strstr(log.last, a));
    current_material(e, a, m1);
    assert_string_not_equal(m0, m1);
    r = run(e, "ListKeyRotations", "{\"KeyId\":\"%s\"}", a);
    assert_string_equal(sval(json_array_get(json_object_get(r.out, "Rotations"), 0), "RotationType"),
                        "AUTOMATIC");
    result_free(&r);
    /* The next one a period after this one; b (91 days) was not due. */
    r = run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", a);
    assert_true(json_real_value(json_object_get(r.out, "NextRotationDate")) ==
                (double)(T0 + 180 * DAY_MS + 5) / 1000.0);
    result_free(&r);
    assert_int_equal(rotations(e, b), 0);
    char *blob1 = encrypt(e, a, NULL);
    decrypts(e, blob0, a);
    decrypts(e, blob1, a);

    /* A disabled key does not rotate; enabled again after its date, it rotates at the next run. */
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    assert_int_equal(kms_service_rotate_due(e->svc, T0 + 200 * DAY_MS), COFFER_OK);
    assert_int_equal(rotations(e, a), 1);
    assert_int_equal(rotations(e, b), 1);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    env_reopen(e);
    assert_int_equal(kms_service_rotate_due(e->svc, T0 + 201 * DAY_MS), COFFER_OK);
    assert_int_equal(rotations(e, a), 2);
    current_material(e, a, m2);
    assert_string_not_equal(m1, m2);
    decrypts(e, blob0, a);
    decrypts(e, blob1, a);

    /* Rotation turned off: no more rotations; a deleted key's entry goes quietly. */
    r = run(e, "DisableKeyRotation", "{\"KeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", b);
    expect(&r, COFFER_OK, NULL);
    assert_int_equal(kms_service_sweep(e->svc, T0 + 300 * DAY_MS), COFFER_OK);
    assert_int_equal(kms_service_rotate_due(e->svc, T0 + 1000 * DAY_MS), COFFER_OK);
    assert_int_equal(rotations(e, a), 2);
    /* Both entries were dropped: a run now reads nothing. */
    size_t entries = 0;
    assert_int_equal(store_scan(e->st, "kms/rotation/", NULL, 0, count_cb, &entries), COFFER_OK);
    assert_int_equal(entries, 0);
    kms_service_set_event_sink(e->svc, NULL, NULL);
    free(blob0);
    free(blob1);
}

/* Manual rotation (kms.md: a new key, then UpdateAlias): old ciphertexts keep their key. */
static void test_rotation_by_alias(void **state)
{
    struct env *e = *state;
    char a[64], b[64];
    create_key(e, a);
    create_key(e, b);
    struct result r = run(e, "CreateAlias", "{\"AliasName\":\"alias/app\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    char *old = encrypt(e, "alias/app", NULL);
    r = run(e, "UpdateAlias", "{\"AliasName\":\"alias/app\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    char *fresh = encrypt(e, "alias/app", NULL);
    decrypts(e, old, a);
    decrypts(e, fresh, b);
    free(old);
    free(fresh);
}

static void test_reopen(void **state)
{
    struct env *e = *state;
    char id[64];
    create_key(e, id);
    struct result r = run(e, "CreateAlias", "{\"AliasName\":\"alias/persist\",\"TargetKeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"t\",\"TagValue\":\"v\"}]}", id);
    expect(&r, COFFER_OK, NULL);
    char *blob = encrypt(e, "alias/persist", "{\"c\":\"d\"}");
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);

    env_reopen(e);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"c\":\"d\"}}", blob);
    expect(&r, COFFER_ERR_DISABLED, NULL);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"c\":\"d\"}}", blob);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "Plaintext"), "aGVsbG8=");
    result_free(&r);
    r = run(e, "ListResourceTags", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(json_array_size(json_object_get(r.out, "Tags")), 1);
    result_free(&r);
    free(blob);
}

struct worker {
    struct env *e;
    const char *key;
    atomic_bool *settled; /* set once the key is enabled for good */
    int ok, disabled, other;
    bool last_ok; /* the round after `settled`, when the key is certainly enabled */
};

/*
 * Encrypts and decrypts while the main thread toggles the key, until one round has run after
 * the key was enabled for good: that round must succeed whatever the scheduling was.
 */
/* Drops a counter record, as in a store written before counters existed. */
static void drop_record(struct env *e, const char *key)
{
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(e->st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, key), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
}

/*
 * A key record whose CurrentKeyMaterialId names none of its materials is corrupt: the key
 * answers an internal error instead of encrypting under whichever material was listed first.
 */
static void test_corrupt_current_material(void **state)
{
    struct env *e = *state;
    char id[64], skey[256];
    create_key(e, id);
    snprintf(skey, sizeof(skey), "kms/key/" ACCOUNT "/" REGION "/%s", id);
    coffer_buf v = COFFER_BUF_INIT;
    assert_int_equal(store_get(e->st, skey, &v), COFFER_OK);
    json_t *rec = json_loadb((const char *)v.data, v.len, 0, NULL);
    coffer_buf_free(&v);
    assert_non_null(rec);
    assert_int_equal(
        json_object_set_new(rec, "CurrentKeyMaterialId", json_string("00000000000000000000000000000000")), 0);
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(e->st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, skey, coffer_cursor_from_str(text)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    free(text);

    env_restart_service(e);
    struct result r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"}", id);
    expect(&r, COFFER_ERR_INTERNAL, "corrupt key record: CurrentKeyMaterialId names no listed material");
}

static void test_quota_counters(void **state)
{
    struct env *e = *state;
    struct kms_limits lim = KMS_LIMITS_DEFAULT;
    lim.kms_keys = 2;
    lim.kms_aliases_per_key = 1;
    kms_service_set_limits(e->svc, &lim);
    char a[64], b[64], ck[256];
    create_key(e, a);
    create_key(e, b);
    struct result r = run(e, "CreateKey", "{}");
    expect(&r, COFFER_ERR_LIMIT_EXCEEDED, NULL);
    /* A missing counter is rebuilt from the records, never reset to zero. */
    drop_record(e, "kms/count/" ACCOUNT "/" REGION "/keys");
    r = run(e, "CreateKey", "{}");
    expect(&r, COFFER_ERR_LIMIT_EXCEEDED, NULL);

    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/q1\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);
    snprintf(ck, sizeof(ck), "kms/count/" ACCOUNT "/" REGION "/aliases/%s", a);
    drop_record(e, ck);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/q2\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_ERR_LIMIT_EXCEEDED, NULL);
    r = run(e, "UpdateAlias", "{\"AliasName\":\"alias/q1\",\"TargetKeyId\":\"%s\"}", b);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "CreateAlias", "{\"AliasName\":\"alias/q2\",\"TargetKeyId\":\"%s\"}", a);
    expect(&r, COFFER_OK, NULL);

    /* A deleted key frees its place and takes its alias counter with it. */
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", a);
    expect(&r, COFFER_OK, NULL);
    assert_int_equal(kms_service_sweep(e->svc, T0 + 7 * DAY_MS), COFFER_OK);
    coffer_buf v = COFFER_BUF_INIT;
    assert_int_equal(store_get(e->st, ck, &v), COFFER_ERR_NOT_FOUND);
    assert_int_equal(store_get(e->st, "kms/count/" ACCOUNT "/" REGION "/keys", &v), COFFER_OK);
    assert_int_equal(v.len, 1);
    assert_int_equal(v.data[0], '1');
    coffer_buf_free(&v);
    r = run(e, "CreateKey", "{}");
    expect(&r, COFFER_OK, NULL);
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    for (bool last = false; !last;) {
        last = atomic_load(w->settled);
        struct result r = run(w->e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"}", w->key);
        if (r.rc == COFFER_OK) {
            char *blob = strdup(sval(r.out, "CiphertextBlob"));
            result_free(&r);
            r = run(w->e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
            free(blob);
            if (r.rc == COFFER_OK && strcmp(sval(r.out, "Plaintext"), "aGVsbG8=") != 0) {
                r.rc = COFFER_ERR_INTERNAL;
            }
        }
        if (r.rc == COFFER_OK) {
            w->ok++;
        } else if (r.rc == COFFER_ERR_DISABLED) {
            w->disabled++;
        } else {
            w->other++;
        }
        w->last_ok = r.rc == COFFER_OK;
        result_free(&r);
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    struct env *e = *state;
    char id[64];
    create_key(e, id);
    struct worker w[4];
    pthread_t th[4];
    atomic_bool settled = false;
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.e = e, .key = id, .settled = &settled};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 40; i++) {
        struct result r = run(e, i % 2 ? "EnableKey" : "DisableKey", "{\"KeyId\":\"%s\"}", id);
        assert_int_equal(r.rc, COFFER_OK);
        result_free(&r);
    }
    struct result r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    atomic_store(&settled, true);
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].other, 0);
        assert_true(w[i].last_ok);
        ok += w[i].ok;
    }
    assert_true(ok > 0);
    char *blob = encrypt(e, id, NULL);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob);
    expect(&r, COFFER_OK, NULL);
    free(blob);
}

/* ------------------------------------------------------------------------------------------ */
/* HMAC keys and imported key material                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Creates a key from the CreateKey input `in`; its id in out (64 bytes). */
static void create_key_with(struct env *e, const char *in, char *out)
{
    struct result r = run(e, "CreateKey", "%s", in);
    assert_int_equal(r.rc, COFFER_OK);
    snprintf(out, 64, "%s", sval(json_object_get(r.out, "KeyMetadata"), "KeyId"));
    result_free(&r);
}

static char *b64(const void *p, size_t n)
{
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_encode(coffer_cursor_from(p, n), &b), COFFER_OK);
    char *s = strndup((const char *)b.data, b.len);
    coffer_buf_free(&b);
    return s;
}

static size_t unb64(const char *s, uint8_t *out, size_t cap)
{
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_decode(coffer_cursor_from_str(s), &b), COFFER_OK);
    assert_true(b.len <= cap);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    coffer_buf_free(&b);
    return n;
}

/* What a client does: RSA-OAEP-SHA-256 of `mat` under the SPKI `pub_b64`, base64. */
static char *client_wrap(const char *pub_b64, const uint8_t *mat, size_t n)
{
    uint8_t der[1024], ct[512];
    size_t der_len = unb64(pub_b64, der, sizeof(der)), ct_len = sizeof(ct);
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)der_len);
    assert_non_null(pk);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &ct_len, mat, n), 1);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return b64(ct, ct_len);
}

/* GetParametersForImport (RSAES_OAEP_SHA_256, RSA_2048): token and public key, base64. */
static void import_params(struct env *e, const char *id, char **token, char **pub)
{
    struct result r = run(e, "GetParametersForImport",
                          "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_256\","
                          "\"WrappingKeySpec\":\"RSA_2048\"}",
                          id);
    assert_int_equal(r.rc, COFFER_OK);
    *token = strdup(sval(r.out, "ImportToken"));
    *pub = strdup(sval(r.out, "PublicKey"));
    assert_true(json_real_value(json_object_get(r.out, "ParametersValidTo")) * 1000.0 ==
                (double)(e->now + DAY_MS));
    result_free(&r);
}

/* Imports `mat` into key `id`; `tail` adds members (",\"ValidTo\":..."). */
static struct result import_material(struct env *e, const char *id, const uint8_t *mat, size_t n,
                                     const char *tail)
{
    char *token = NULL, *pub = NULL;
    import_params(e, id, &token, &pub);
    char *wrapped = client_wrap(pub, mat, n);
    struct result r = run(e, "ImportKeyMaterial",
                          "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\"%s}", id,
                          token, wrapped, tail);
    free(token);
    free(pub);
    free(wrapped);
    return r;
}

static const char *key_state(struct env *e, const char *id)
{
    static char st[32];
    struct result r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    snprintf(st, sizeof(st), "%s", sval(json_object_get(r.out, "KeyMetadata"), "KeyState"));
    result_free(&r);
    return st;
}

static void test_hmac_keys(void **state)
{
    struct env *e = *state;
    char id[64], sym[64], arn[160];
    static const char *const specs[] = {"HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"};
    static const size_t mac_lens[] = {28, 32, 48, 64};
    char msg_b64[] = "aGVsbG8="; /* "hello" */
    for (int i = 0; i < 4; i++) {
        char in[128], alg[32], other[32];
        snprintf(in, sizeof(in), "{\"KeySpec\":\"%s\",\"KeyUsage\":\"GENERATE_VERIFY_MAC\"}", specs[i]);
        create_key_with(e, in, id);
        snprintf(alg, sizeof(alg), "HMAC_SHA_%s", specs[i] + 5);
        snprintf(other, sizeof(other), "HMAC_SHA_%s", specs[(i + 1) % 4] + 5);
        struct result r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
        assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeyUsage"), "GENERATE_VERIFY_MAC");
        assert_string_equal(sval(json_object_get(r.out, "KeyMetadata"), "KeySpec"), specs[i]);
        assert_null(json_object_get(json_object_get(r.out, "KeyMetadata"), "EncryptionAlgorithms"));
        snprintf(arn, sizeof(arn), "%s", sval(json_object_get(r.out, "KeyMetadata"), "Arn"));
        result_free(&r);
        r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"%s\"}", id,
                msg_b64, alg);
        assert_int_equal(r.rc, COFFER_OK);
        assert_string_equal(sval(r.out, "KeyId"), arn);
        assert_string_equal(sval(r.out, "MacAlgorithm"), alg);
        /* The message stays out of the trail. */
        assert_null(json_object_get(r.audit_request, "message"));
        assert_string_equal(sval(r.audit_request, "macAlgorithm"), alg);
        uint8_t mac[64];
        size_t mac_len = unb64(sval(r.out, "Mac"), mac, sizeof(mac));
        assert_int_equal(mac_len, mac_lens[i]);
        char *mac_b64 = strdup(sval(r.out, "Mac"));
        result_free(&r);
        r = run(e, "VerifyMac",
                "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"%s\",\"Mac\":\"%s\"}", id, msg_b64,
                alg, mac_b64);
        assert_int_equal(r.rc, COFFER_OK);
        assert_true(json_is_true(json_object_get(r.out, "MacValid")));
        assert_null(json_object_get(r.audit_request, "mac"));
        result_free(&r);
        mac[0] ^= 1;
        char *bad = b64(mac, mac_len);
        r = run(e, "VerifyMac",
                "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"%s\",\"Mac\":\"%s\"}", id, msg_b64,
                alg, bad);
        expect(&r, COFFER_ERR_MAC_MISMATCH, "");
        free(bad);
        bad = b64(mac, mac_len - 1); /* a prefix of a right MAC is no MAC */
        mac[0] ^= 1;
        r = run(e, "VerifyMac",
                "{\"KeyId\":\"%s\",\"Message\":\"aGVsbG9v\",\"MacAlgorithm\":\"%s\",\"Mac\":\"%s\"}", id, alg,
                mac_b64);
        expect(&r, COFFER_ERR_MAC_MISMATCH, "");
        r = run(e, "VerifyMac",
                "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"%s\",\"Mac\":\"%s\"}", id, msg_b64,
                alg, bad);
        expect(&r, COFFER_ERR_MAC_MISMATCH, "");
        free(bad);
        free(mac_b64);
        char want[160];
        snprintf(want, sizeof(want), "Algorithm %s is incompatible with key spec %s.", other, specs[i]);
        r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"%s\"}", id,
                msg_b64, other);
        expect(&r, COFFER_ERR_INVALID_KEY_USAGE, want);
    }
    /* HMAC keys do not encrypt; symmetric keys do not MAC. */
    struct result r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\"}", id, msg_b64);
    expect(&r, COFFER_ERR_INVALID_KEY_USAGE, NULL);
    create_key(e, sym);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", sym);
    snprintf(arn, sizeof(arn), "%s", sval(json_object_get(r.out, "KeyMetadata"), "Arn"));
    result_free(&r);
    char want[256];
    snprintf(want, sizeof(want), "%s key usage is ENCRYPT_DECRYPT which is not valid for GenerateMac.", arn);
    r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"HMAC_SHA_256\"}", sym,
            msg_b64);
    expect(&r, COFFER_ERR_INVALID_KEY_USAGE, want);
    /* Bad input: message too long, unknown algorithm, DryRun, a disabled key. */
    char long_msg[5600];
    memset(long_msg, 'A', 5464);
    long_msg[5464] = '\0'; /* 4098 bytes */
    r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"HMAC_SHA_512\"}", id,
            long_msg);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"HMAC_MD5\"}", id,
            msg_b64);
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    r = run(e, "GenerateMac",
            "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"HMAC_SHA_512\",\"DryRun\":true}", id,
            msg_b64);
    expect(&r, COFFER_ERR_DRY_RUN, NULL);
    r = run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"%s\",\"MacAlgorithm\":\"HMAC_SHA_512\"}", id,
            msg_b64);
    expect(&r, COFFER_ERR_DISABLED, NULL);
    /* Grants: MAC operations only on HMAC keys, and nothing else but the grant ones on them. */
    r = run(e, "CreateGrant",
            "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"arn:aws:iam::" ACCOUNT ":user/u\","
            "\"Operations\":[\"GenerateMac\",\"VerifyMac\",\"DescribeKey\"]}",
            id);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "CreateGrant",
            "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"arn:aws:iam::" ACCOUNT
            ":user/u\",\"Operations\":[\"Encrypt\"]}",
            id);
    expect(&r, COFFER_ERR_VALIDATION, "Grant operation Encrypt is not valid for this KMS key.");
    r = run(e, "CreateGrant",
            "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"arn:aws:iam::" ACCOUNT
            ":user/u\",\"Operations\":[\"GenerateMac\"]}",
            sym);
    expect(&r, COFFER_ERR_VALIDATION, "Grant operation GenerateMac is not valid for this KMS key.");
}

static void test_import(void **state)
{
    struct env *e = *state;
    char id[64], arn[160], sym[64];
    uint8_t mat[32], other[32];
    for (size_t i = 0; i < sizeof(mat); i++) {
        mat[i] = (uint8_t)i;
        other[i] = (uint8_t)(0xff - i);
    }
    create_key_with(
        e, "{\"KeySpec\":\"HMAC_256\",\"KeyUsage\":\"GENERATE_VERIFY_MAC\",\"Origin\":\"EXTERNAL\"}", id);
    struct result r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    json_t *m = json_object_get(r.out, "KeyMetadata");
    assert_string_equal(sval(m, "KeyState"), "PendingImport");
    assert_string_equal(sval(m, "Origin"), "EXTERNAL");
    assert_false(json_is_true(json_object_get(m, "Enabled")));
    assert_null(json_object_get(m, "CurrentKeyMaterialId"));
    assert_null(json_object_get(m, "ValidTo"));
    snprintf(arn, sizeof(arn), "%s", sval(m, "Arn"));
    result_free(&r);
    char want[256];
    snprintf(want, sizeof(want), "%s is pending import.", arn);
    r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"HMAC_SHA_256\"}",
            id);
    expect(&r, COFFER_ERR_INVALID_STATE, want);
    r = run(e, "EnableKey", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_ERR_INVALID_STATE, want);
    /* Nothing to delete yet: no effect. */
    r = run(e, "DeleteImportedKeyMaterial", "{\"KeyId\":\"%s\"}", id);
    expect(&r, COFFER_OK, NULL);

    /* Material of the wrong length for the spec; then the right one, expiring in a day. */
    r = import_material(e, id, mat, 16, ",\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"");
    expect(&r, COFFER_ERR_INCORRECT_KEY_MATERIAL, NULL);
    r = import_material(e, id, mat, sizeof(mat), "");
    expect(&r, COFFER_ERR_VALIDATION,
           "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES");
    r = import_material(e, id, mat, sizeof(mat), ",\"ValidTo\":1600000000");
    expect(&r, COFFER_ERR_VALIDATION, NULL);
    r = import_material(e, id, mat, sizeof(mat),
                        ",\"ValidTo\":1700086400,\"ExpirationModel\":\"KEY_MATERIAL_EXPIRES\"");
    assert_int_equal(r.rc, COFFER_OK);
    char mid[80];
    snprintf(mid, sizeof(mid), "%s", sval(r.out, "KeyMaterialId"));
    assert_int_equal(strlen(mid), 64);
    assert_null(json_object_get(r.audit_request, "encryptedKeyMaterial"));
    assert_null(json_object_get(r.audit_request, "importToken"));
    result_free(&r);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    m = json_object_get(r.out, "KeyMetadata");
    assert_string_equal(sval(m, "KeyState"), "Enabled");
    assert_string_equal(sval(m, "ExpirationModel"), "KEY_MATERIAL_EXPIRES");
    assert_true(json_real_value(json_object_get(m, "ValidTo")) == 1700086400.0);
    assert_string_equal(sval(m, "CurrentKeyMaterialId"), mid);
    result_free(&r);

    /* The MAC is OpenSSL's HMAC over the imported bytes, through a restart too. */
    uint8_t want_mac[32], got[64];
    assert_int_equal(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(mat, sizeof(mat)),
                                 coffer_cursor_from_str("hi"), want_mac),
                     COFFER_OK);
    for (int pass = 0; pass < 2; pass++) {
        r = run(e, "GenerateMac", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"MacAlgorithm\":\"HMAC_SHA_256\"}",
                id);
        assert_int_equal(r.rc, COFFER_OK);
        assert_int_equal(unb64(sval(r.out, "Mac"), got, sizeof(got)), 32);
        assert_memory_equal(got, want_mac, 32);
        result_free(&r);
        env_reopen(e);
    }

    /* Expiry: not before ValidTo, not without its event on record, then material gone and the key
     * PendingImport. */
    struct sink_log log = {.fail = true};
    kms_service_set_event_sink(e->svc, sink_record, &log);
    assert_int_equal(kms_service_expire_imports(e->svc, 1700086400000LL - 1), COFFER_OK);
    assert_string_equal(key_state(e, id), "Enabled");
    assert_int_not_equal(kms_service_expire_imports(e->svc, 1700086400000LL), COFFER_OK);
    assert_string_equal(key_state(e, id), "Enabled");
    log.fail = false;
    assert_int_equal(kms_service_expire_imports(e->svc, 1700086400000LL), COFFER_OK);
    assert_string_equal(key_state(e, id), "PendingImport");
    assert_int_equal(log.events, 1);
    assert_non_null(strstr(log.last, "\"eventName\":\"DeleteExpiredKeyMaterial\""));
    assert_non_null(strstr(log.last, "\"eventType\":\"AwsServiceEvent\""));
    assert_non_null(strstr(log.last, id));
    kms_service_set_event_sink(e->svc, NULL, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    m = json_object_get(r.out, "KeyMetadata");
    assert_null(json_object_get(m, "ValidTo"));
    assert_null(json_object_get(m, "CurrentKeyMaterialId"));
    result_free(&r);
    env_reopen(e);
    assert_string_equal(key_state(e, id), "PendingImport");

    /* Only the same material goes back in; it keeps its id. */
    r = import_material(e, id, other, sizeof(other), ",\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"");
    expect(&r, COFFER_ERR_INCORRECT_KEY_MATERIAL, NULL);
    r = import_material(e, id, mat, sizeof(mat), ",\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"");
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyMaterialId"), mid);
    result_free(&r);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id);
    m = json_object_get(r.out, "KeyMetadata");
    assert_string_equal(sval(m, "ExpirationModel"), "KEY_MATERIAL_DOES_NOT_EXPIRE");
    assert_null(json_object_get(m, "ValidTo"));
    result_free(&r);
    /* The stale expiry entry does nothing. */
    assert_int_equal(kms_service_expire_imports(e->svc, 1800000000000LL), COFFER_OK);
    assert_string_equal(key_state(e, id), "Enabled");

    /* Tokens: garbage, another key's, replaced, expired. */
    char *token = NULL, *pub = NULL, *token2 = NULL, *pub2 = NULL;
    import_params(e, id, &token, &pub);
    char *wrapped = client_wrap(pub, mat, sizeof(mat));
    r = run(e, "ImportKeyMaterial",
            "{\"KeyId\":\"%s\",\"ImportToken\":\"AAAA\",\"EncryptedKeyMaterial\":\"%s\","
            "\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"}",
            id, wrapped);
    expect(&r, COFFER_ERR_INVALID_IMPORT_TOKEN, NULL);
    create_key_with(e, "{\"Origin\":\"EXTERNAL\"}", sym);
    r = run(e, "ImportKeyMaterial",
            "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\","
            "\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"}",
            sym, token, wrapped);
    expect(&r, COFFER_ERR_INVALID_IMPORT_TOKEN, NULL);
    /* Wrapped under another key: does not open. */
    import_params(e, id, &token2, &pub2);
    r = run(e, "ImportKeyMaterial",
            "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\","
            "\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"}",
            id, token2, wrapped);
    expect(&r, COFFER_ERR_INVALID_CIPHERTEXT, NULL);
    /* The first token was replaced by the second. */
    r = run(e, "ImportKeyMaterial",
            "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\","
            "\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"}",
            id, token, wrapped);
    expect(&r, COFFER_ERR_INVALID_IMPORT_TOKEN, NULL);
    free(wrapped);
    wrapped = client_wrap(pub2, mat, sizeof(mat));
    e->now += DAY_MS;
    r = run(e, "ImportKeyMaterial",
            "{\"KeyId\":\"%s\",\"ImportToken\":\"%s\",\"EncryptedKeyMaterial\":\"%s\","
            "\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"}",
            id, token2, wrapped);
    expect(&r, COFFER_ERR_EXPIRED_IMPORT_TOKEN, NULL);
    e->now -= DAY_MS;
    free(wrapped);
    free(token);
    free(pub);
    free(token2);
    free(pub2);

    /* Delete: PendingImport, no material; the material id is reported. */
    r = run(e, "DeleteImportedKeyMaterial", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "KeyMaterialId"), mid);
    assert_string_equal(sval(r.out, "KeyId"), arn);
    result_free(&r);
    assert_string_equal(key_state(e, id), "PendingImport");
    env_reopen(e);
    assert_string_equal(key_state(e, id), "PendingImport");

    /* A symmetric imported key: ciphertexts made before a deletion decrypt after re-import. */
    r = import_material(e, sym, mat, sizeof(mat), ",\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"");
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", sym);
    assert_int_equal(r.rc, COFFER_OK);
    char *ct = strdup(sval(r.out, "CiphertextBlob"));
    result_free(&r);
    r = run(e, "DeleteImportedKeyMaterial", "{\"KeyId\":\"%s\"}", sym);
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", ct);
    expect(&r, COFFER_ERR_INVALID_STATE, NULL);
    r = import_material(e, sym, mat, sizeof(mat), ",\"ExpirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"");
    expect(&r, COFFER_OK, NULL);
    r = run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", ct);
    assert_int_equal(r.rc, COFFER_OK);
    assert_string_equal(sval(r.out, "Plaintext"), "aGk=");
    result_free(&r);
    free(ct);

    /* AWS_KMS keys have nothing to import. */
    char own[64];
    create_key(e, own);
    r = run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", own);
    snprintf(want, sizeof(want), "%s origin is AWS_KMS which is not valid for this operation.",
             sval(json_object_get(r.out, "KeyMetadata"), "Arn"));
    result_free(&r);
    r = run(
        e, "GetParametersForImport",
        "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_256\",\"WrappingKeySpec\":\"RSA_2048\"}",
        own);
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, want);
    r = run(e, "DeleteImportedKeyMaterial", "{\"KeyId\":\"%s\"}", own);
    expect(&r, COFFER_ERR_UNSUPPORTED_OPERATION, want);
    r = run(e, "GetParametersForImport",
            "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_PKCS1_V1_5\",\"WrappingKeySpec\":\"RSA_2048\"}",
            id);
    expect(&r, COFFER_ERR_VALIDATION, NULL);

    /* Pending deletion: no new parameters; the key and its import records go with the sweep. */
    r = run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id);
    expect(&r, COFFER_OK, NULL);
    r = run(
        e, "GetParametersForImport",
        "{\"KeyId\":\"%s\",\"WrappingAlgorithm\":\"RSAES_OAEP_SHA_256\",\"WrappingKeySpec\":\"RSA_2048\"}",
        id);
    expect(&r, COFFER_ERR_INVALID_STATE, NULL);
    assert_int_equal(kms_service_sweep(e->svc, T0 + 7 * DAY_MS), COFFER_OK);
    coffer_buf v = COFFER_BUF_INIT;
    char skey[256];
    snprintf(skey, sizeof(skey), "kms/importcheck/" ACCOUNT "/" REGION "/%s", id);
    assert_int_equal(store_get(e->st, skey, &v), COFFER_ERR_NOT_FOUND);
    coffer_buf_free(&v);
}

/* --hsm-cluster mappings: CLUSTER_ID=module=PATH,token=LABEL|slot=N,pin-file=PATH|pin-env=NAME[,sessions=N]
 */
static void test_hsm_cluster_parse(void **state)
{
    (void)state;
    struct kms_hsm_cluster h;
    assert_int_equal(
        kms_hsm_cluster_parse("cluster-1234567890a=module=/lib/p11.so,token=ks,pin-file=/etc/pin", &h),
        COFFER_OK);
    assert_string_equal(h.cluster_id, "cluster-1234567890a");
    assert_string_equal(h.module, "/lib/p11.so");
    assert_string_equal(h.token, "ks");
    assert_string_equal(h.pin_file, "/etc/pin");
    assert_string_equal(h.pin_env, "");
    assert_int_equal(h.sessions, KMS_HSM_SESSIONS_DEFAULT);
    assert_int_equal(
        kms_hsm_cluster_parse("cluster-abcdefghijklmnop=module=/m.so,slot=3,pin-env=HSM_PIN,sessions=16", &h),
        COFFER_OK);
    assert_string_equal(h.token, "");
    assert_int_equal(h.slot, 3);
    assert_string_equal(h.pin_env, "HSM_PIN");
    assert_int_equal(h.sessions, 16);
    static const struct {
        const char *spec, *why;
    } bad[] = {
        {"module=/m.so,token=t,pin-env=P", "is not a cluster id"},
        {"cluster-short=module=/m.so,token=t,pin-env=P", "is not a cluster id"},
        {"cluster-abcdefghijklmnopq=module=/m.so,token=t,pin-env=P", "is not a cluster id"},
        {"cluster-1234567890!=module=/m.so,token=t,pin-env=P", "is not a cluster id"},
        {"cluster-1234567890a", "--hsm-cluster must be"},
        {"cluster-1234567890a=token=t,pin-env=P", "module=PATH is required"},
        {"cluster-1234567890a=module=/m.so,pin-env=P", "one of token=LABEL or slot=N"},
        {"cluster-1234567890a=module=/m.so,token=t,slot=1,pin-env=P", "one of token=LABEL or slot=N"},
        {"cluster-1234567890a=module=/m.so,token=t", "one of pin-file=PATH or pin-env=NAME"},
        {"cluster-1234567890a=module=/m.so,token=t,pin-env=P,pin-file=/f", "one of pin-file=PATH or pin-env"},
        {"cluster-1234567890a=module=/m.so,token=t,pin-env=P,sessions=0", "sessions must be an integer"},
        {"cluster-1234567890a=module=/m.so,token=t,pin-env=P,sessions=17", "sessions must be an integer"},
        {"cluster-1234567890a=module=/m.so,token=t,pin-env=P,slot=x", "slot must be an integer"},
        {"cluster-1234567890a=module=/m.so,token=t,pin-env=P,colour=blue", "unknown setting 'colour'"},
        {"cluster-1234567890a=module=/m.so,token,pin-env=P", "is not NAME=VALUE"},
        {"cluster-1234567890a=module=/m.so,token=a-token-label-longer-than-32-bytes,pin-env=P",
         "token is empty or longer"},
        {"cluster-1234567890a=module=,token=t,pin-env=P", "module is empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kms_hsm_cluster_parse(bad[i].spec, &h), COFFER_ERR_CONFIG);
        if (strstr(coffer_last_message(), bad[i].why) == NULL) {
            fail_msg("%s: got '%s', want '%s'", bad[i].spec, coffer_last_message(), bad[i].why);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_op_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declaration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_key_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encrypt_decrypt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_last_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_asymmetric_quota_and_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_keys_and_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reencrypt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_node_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_keys_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_managed_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_records_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retirable_index_backfill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_current_material, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_on_demand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_by_alias, setup, teardown),
        cmocka_unit_test(test_hsm_cluster_parse),
    };
    int rc = cmocka_run_group_tests_name("kms_service_sqlite", tests, NULL, NULL);
    use_mem = true;
    rc |= cmocka_run_group_tests_name("kms_service_mem", tests, NULL, NULL);
    return rc;
}
