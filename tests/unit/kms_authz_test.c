/*
 * Unit tests for authorization inside the KMS service (src/kms/kms_authz.c and every handler's
 * call into the authorizer): key policy operations and the lockout safety check, condition keys
 * of the request (encryption context, caller account, source address), delegation to IAM through
 * a stub identity source, cross-account use of keys by ARN and from the ciphertext blob, grants
 * with constraints, tokens, retirement and revocation (also after a restart of the service), and
 * alias operations needing both the alias and the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "kms/kms.h"

#define ACCT "111122223333"
#define OTHER "444455556666"
#define REGION "us-east-1"
#define ROOT "arn:aws:iam::" ACCT ":root"
#define OROOT "arn:aws:iam::" OTHER ":root"
#define ALICE "arn:aws:iam::" ACCT ":user/alice"
#define BOB "arn:aws:iam::" ACCT ":user/bob"
#define CAROL "arn:aws:iam::" OTHER ":user/carol"
#define ROLE "arn:aws:iam::" ACCT ":role/worker"
#define SESSION "arn:aws:sts::" ACCT ":assumed-role/worker/s1"
#define T0 1700000000000LL

/* ---- stub identity source: principal ARN -> one identity policy ---- */
struct stub {
    const char *arn[8];
    policy *pol[8];
    size_t n;
};

static coffer_err stub_policies(void *ctx, const char *arn, struct iam_policy_list *out)
{
    struct stub *s = ctx;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->arn[i], arn) == 0) {
            out->items = (const policy *const *)&s->pol[i];
            out->n = 1;
        }
    }
    return COFFER_OK;
}

static void stub_release(void *ctx, struct iam_policy_list *list)
{
    (void)ctx;
    (void)list;
}

/* ---- environment ---- */
struct env {
    char dir[64], url[160], root[160];
    store *st;
    seal *sl;
    struct kms_service *svc;
    const struct api_service *api;
    struct stub stub;
    struct iam_identity_source src;
    authz *az;
    struct api_caller caller;
};

static void set_caller(struct env *e, const char *acct, const char *arn, enum api_principal_kind kind,
                       const char *role)
{
    memset(&e->caller, 0, sizeof(e->caller));
    snprintf(e->caller.account_id, sizeof(e->caller.account_id), "%s", acct);
    snprintf(e->caller.principal_arn, sizeof(e->caller.principal_arn), "%s", arn);
    e->caller.principal_kind = kind;
    snprintf(e->caller.role_arn, sizeof(e->caller.role_arn), "%s", role != NULL ? role : "");
    e->caller.source_ip = "127.0.0.1";
    e->caller.secure_transport = true;
}

static void as_root(struct env *e)
{
    set_caller(e, ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
}

static void service_start(struct env *e)
{
    assert_int_equal(kms_service_new(e->st, e->sl, REGION, &e->svc), COFFER_OK);
    kms_service_set_authorizer(e->svc, e->az);
    e->api = kms_service_api(e->svc);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "/tmp/kmsauthz.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->url, sizeof(e->url), "sqlite:%s/coffer.db", e->dir);
    snprintf(e->root, sizeof(e->root), "%s/root.key", e->dir);
    assert_int_equal(store_open(e->url, &e->st), COFFER_OK);
    assert_int_equal(seal_open_keyfile(e->root, true, e->st, &e->sl), COFFER_OK);
    e->src =
        (struct iam_identity_source){.ctx = &e->stub, .policies = stub_policies, .release = stub_release};
    assert_int_equal(authz_new(&e->src, &e->az), COFFER_OK);
    service_start(e);
    as_root(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char cmd[128];
    kms_service_free(e->svc);
    authz_free(e->az);
    for (size_t i = 0; i < e->stub.n; i++) {
        policy_free(e->stub.pol[i]);
    }
    seal_free(e->sl);
    store_close(e->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

/* Policies are written with ' for " in the tests. */
static void unquote(char *s)
{
    for (; *s; s++) {
        if (*s == '\'') {
            *s = '"';
        }
    }
}

static void stub_add(struct env *e, const char *arn, const char *text)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s", text);
    unquote(buf);
    e->stub.arn[e->stub.n] = arn;
    assert_int_equal(
        policy_compile_ex(coffer_cursor_from_str(buf), POLICY_COMPILE_NO_PRINCIPAL, &e->stub.pol[e->stub.n]),
        COFFER_OK);
    e->stub.n++;
}

struct result {
    coffer_err rc;
    json_t *out;
    char msg[600];
};

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
    json_t *in = json_loads(body, 0, &jerr);
    if (in == NULL) {
        fail_msg("bad test JSON: %s: %s", body, jerr.text);
    }
    const struct api_op *o = api_service_find_op(e->api, op, strlen(op));
    assert_non_null(o);
    struct api_call call = {.caller = &e->caller,
                            .region = REGION,
                            .request_id = "r",
                            .operation = op,
                            .now_ms = T0,
                            .input = in};
    coffer_clear_err();
    struct result r = {0};
    r.rc = o->handler(e->api->state, &call);
    snprintf(r.msg, sizeof(r.msg), "%s", r.rc == COFFER_OK ? "" : coffer_err_message(r.rc));
    if (r.rc == COFFER_OK) {
        r.out = call.output != NULL ? call.output : json_object();
    } else {
        json_decref(call.output);
    }
    json_decref(call.audit_request);
    json_decref(call.audit_response);
    json_decref(call.audit_resources);
    json_decref(in);
    return r;
}

/* Asserts the outcome (and the message when given) and frees the result. */
static void expect(struct result r, coffer_err rc, const char *msg)
{
    if (r.rc != rc) {
        fail_msg("expected %s got %s (%s)", coffer_err_name(rc), coffer_err_name(r.rc), r.msg);
    }
    if (msg != NULL) {
        assert_string_equal(r.msg, msg);
    }
    json_decref(r.out);
}

static void ok(struct result r)
{
    expect(r, COFFER_OK, NULL);
}

static void denied(struct result r)
{
    expect(r, COFFER_ERR_ACCESS_DENIED, NULL);
}

/* Creates a key (as the current caller) with an optional policy (' quoted); writes its id and ARN. */
static void create_key(struct env *e, const char *policy_text, char id[64], char arn[128])
{
    struct result r;
    if (policy_text != NULL) {
        char buf[8192];
        snprintf(buf, sizeof(buf), "%s", policy_text);
        unquote(buf);
        json_t *in = json_pack("{s:s}", "Policy", buf);
        char *s = json_dumps(in, 0);
        r = run(e, "CreateKey", "%s", s);
        free(s);
        json_decref(in);
    } else {
        r = run(e, "CreateKey", "{}");
    }
    if (r.rc != COFFER_OK) {
        fail_msg("CreateKey: %s", r.msg);
    }
    const json_t *m = json_object_get(r.out, "KeyMetadata");
    snprintf(id, 64, "%s", json_string_value(json_object_get(m, "KeyId")));
    snprintf(arn, 128, "%s", json_string_value(json_object_get(m, "Arn")));
    json_decref(r.out);
}

static struct result put_policy(struct env *e, const char *key, const char *policy_text, bool bypass)
{
    char buf[8192];
    snprintf(buf, sizeof(buf), "%s", policy_text);
    unquote(buf);
    json_t *in = json_pack("{s:s,s:s,s:s,s:b}", "KeyId", key, "PolicyName", "default", "Policy", buf,
                           "BypassPolicyLockoutSafetyCheck", bypass);
    char *s = json_dumps(in, 0);
    struct result r = run(e, "PutKeyPolicy", "%s", s);
    free(s);
    json_decref(in);
    return r;
}

/* Encrypts; returns the blob (malloc'd) or NULL when refused (r->rc tells why). */
static char *encrypt(struct env *e, const char *key, const char *ec_json, coffer_err *rc)
{
    struct result r = run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8=\"%s%s}", key,
                          ec_json != NULL ? ",\"EncryptionContext\":" : "", ec_json != NULL ? ec_json : "");
    *rc = r.rc;
    char *blob =
        r.rc == COFFER_OK ? strdup(json_string_value(json_object_get(r.out, "CiphertextBlob"))) : NULL;
    json_decref(r.out);
    return blob;
}

#define STMT(effect, principal, action)                                                                      \
    "{'Effect':'" effect "','Principal':{'AWS':'" principal "'},'Action':" action ",'Resource':'*'}"
#define DOC(...) "{'Version':'2012-10-17','Statement':[" __VA_ARGS__ "]}"
#define ROOT_ALL STMT("Allow", ROOT, "'kms:*'")

/* ------------------------------------------------------------------------------------------ */

static void test_key_policy_ops(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(e, NULL, id, arn);
    struct result r = run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\",\"PolicyName\":\"default\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    assert_non_null(strstr(json_string_value(json_object_get(r.out, "Policy")),
                           "\"Sid\" : \"Enable IAM User Permissions\""));
    assert_string_equal(json_string_value(json_object_get(r.out, "PolicyName")), "default");
    ok(r);
    coffer_err rc;
    char *blob = encrypt(e, id, NULL, &rc);
    assert_non_null(blob);

    /* Deny Encrypt to the root: Encrypt refused at once, Decrypt still fine. */
    ok(put_policy(e, id, DOC(ROOT_ALL "," STMT("Deny", ROOT, "'kms:Encrypt'")), false));
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    char want[512];
    snprintf(want, sizeof(want),
             "User: " ROOT
             " is not authorized to perform: kms:Encrypt on resource: %s with an explicit deny in a "
             "resource-based policy",
             arn);
    assert_string_equal(coffer_last_message(), want);
    assert_non_null(strstr(coffer_last_message(), arn));
    assert_non_null(strstr(coffer_last_message(), "with an explicit deny in a resource-based policy"));
    ok(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob));

    /* The policy survives a restart of the service (compiled again from the record). */
    kms_service_free(e->svc);
    service_start(e);
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);

    /* Lockout safety check, then the bypass. */
    expect(put_policy(e, id, DOC(STMT("Allow", ROOT, "'kms:Encrypt'")), false), COFFER_ERR_MALFORMED_POLICY,
           "The new key policy will not allow you to update the key policy in the future.");
    expect(put_policy(e, id, "{'Statement':[{'Effect':'Allow','Action':'*','Resource':'*'}]}", false),
           COFFER_ERR_MALFORMED_POLICY, NULL);
    expect(put_policy(e, id, "not json", false), COFFER_ERR_MALFORMED_POLICY, NULL);
    expect(run(e, "PutKeyPolicy", "{\"KeyId\":\"%s\",\"PolicyName\":\"other\",\"Policy\":\"{}\"}", id),
           COFFER_ERR_NOT_FOUND, "No such policy exists");
    ok(put_policy(e, id, DOC(STMT("Allow", ROOT, "'kms:Encrypt'")), true));
    free(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    denied(run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "ListKeyPolicies", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]}", id));
    denied(run(e, "ListResourceTags", "{\"KeyId\":\"%s\"}", id));
    denied(put_policy(e, id, DOC(ROOT_ALL), true));

    /* CreateKey: lockout check and bypass as well. */
    struct result c = run(e, "CreateKey",
                          "{\"Policy\":\"{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{"
                          "\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":{\\\"AWS\\\":\\\"" ROOT "\\\"},"
                          "\\\"Action\\\":\\\"kms:Encrypt\\\",\\\"Resource\\\":\\\"*\\\"}]}\"}");
    expect(c, COFFER_ERR_MALFORMED_POLICY,
           "The new key policy will not allow you to update the key policy in the future.");
    free(blob);
}

static void test_condition_keys(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(
        e,
        DOC(STMT("Allow", ROOT,
                 "['kms:PutKeyPolicy','kms:GetKeyPolicy']") ","
                                                            "{'Effect':'Allow','Principal':{'AWS':'" ROOT
                                                            "'},'Action':['kms:Encrypt','kms:Decrypt'],"
                                                            "'Resource':'*','Condition':{'StringEquals':{'"
                                                            "kms:EncryptionContext:Department':'IT',"
                                                            "'kms:CallerAccount':'" ACCT
                                                            "','kms:EncryptionAlgorithm':'SYMMETRIC_DEFAULT',"
                                                            "'kms:KeySpec':'SYMMETRIC_DEFAULT','kms:"
                                                            "KeyOrigin':'AWS_KMS'},"
                                                            "'IpAddress':{'aws:SourceIp':'127.0.0.0/"
                                                            "8'},'Bool':{'aws:SecureTransport':'true'}}}"),
        id, arn);
    coffer_err rc;
    char *blob = encrypt(e, id, "{\"Department\":\"IT\"}", &rc);
    assert_non_null(blob);
    assert_null(encrypt(e, id, "{\"Department\":\"HR\"}", &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    ok(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"Department\":\"IT\"}}", blob));
    e->caller.source_ip = "10.1.2.3";
    denied(
        run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"Department\":\"IT\"}}", blob));
    e->caller.source_ip = "127.0.0.1";
    e->caller.secure_transport = false;
    denied(
        run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"Department\":\"IT\"}}", blob));
    e->caller.secure_transport = true;
    /* An alias in the request sets kms:RequestAlias. */
    ok(put_policy(
        e, id,
        DOC(STMT(
            "Allow", ROOT,
            "['kms:PutKeyPolicy','kms:CreateAlias','kms:DescribeKey']") ","
                                                                        "{'Effect':'Allow','Principal':{'AWS'"
                                                                        ":'" ROOT "'},'Action':'kms:Encrypt',"
                                                                        "'Resource':'*',"
                                                                        "'Condition':{'StringEquals':{'kms:"
                                                                        "RequestAlias':'alias/orders'}}}"),
        false));
    ok(run(e, "CreateAlias", "{\"AliasName\":\"alias/orders\",\"TargetKeyId\":\"%s\"}", id));
    free(encrypt(e, "alias/orders", NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    free(blob);
}

static void test_request_tags(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    /* TagResource only with tag keys from an allowed list; the key's own tags as aws:ResourceTag. */
    create_key(
        e,
        DOC(STMT(
            "Allow", ROOT,
            "['kms:PutKeyPolicy','kms:DescribeKey','kms:UntagResource']") ","
                                                                          "{'Effect':'Allow','Principal':{'"
                                                                          "AWS':'" ROOT
                                                                          "'},'Action':'kms:TagResource','"
                                                                          "Resource':'*',"
                                                                          "'Condition':{'ForAllValues:"
                                                                          "StringEquals':{'aws:TagKeys':['"
                                                                          "team','env']},"
                                                                          "'StringEqualsIfExists':{'aws:"
                                                                          "RequestTag/env':'prod'}}},"
                                                                          "{'Effect':'Allow','Principal':{'"
                                                                          "AWS':'" ROOT
                                                                          "'},'Action':'kms:Encrypt','"
                                                                          "Resource':'*',"
                                                                          "'Condition':{'StringEquals':{'aws:"
                                                                          "ResourceTag/team':'pay'}}}"),
        id, arn);
    ok(run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"team\",\"TagValue\":\"pay\"}]}", id));
    denied(
        run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"owner\",\"TagValue\":\"x\"}]}", id));
    denied(
        run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"env\",\"TagValue\":\"dev\"}]}", id));
    coffer_err rc;
    free(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    ok(run(e, "UntagResource", "{\"KeyId\":\"%s\",\"TagKeys\":[\"team\"]}", id));
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
}

static void test_resource_aliases(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(
        e,
        DOC(STMT(
            "Allow", ROOT,
            "['kms:PutKeyPolicy','kms:CreateAlias','kms:DeleteAlias']") ","
                                                                        "{'Effect':'Allow','Principal':{'AWS'"
                                                                        ":'" ROOT "'},'Action':'kms:Encrypt',"
                                                                        "'Resource':'*',"
                                                                        "'Condition':{'ForAnyValue:"
                                                                        "StringLike':{'kms:ResourceAliases':'"
                                                                        "alias/finance-*'}}}"),
        id, arn);
    coffer_err rc;
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    ok(run(e, "CreateAlias", "{\"AliasName\":\"alias/other\",\"TargetKeyId\":\"%s\"}", id));
    ok(run(e, "CreateAlias", "{\"AliasName\":\"alias/finance-ledger\",\"TargetKeyId\":\"%s\"}", id));
    free(encrypt(e, id, NULL, &rc)); /* by key id: the key's aliases count, not the request's */
    assert_int_equal(rc, COFFER_OK);
    ok(run(e, "DeleteAlias", "{\"AliasName\":\"alias/finance-ledger\"}"));
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
}

/* An AWS managed key is for its service: the account reads its metadata, nothing more. */
static void test_managed_key_policy(void **state)
{
    struct env *e = *state;
    struct result r = run(e, "DescribeKey", "{\"KeyId\":\"alias/aws/secretsmanager\"}");
    assert_int_equal(r.rc, COFFER_OK);
    char id[64];
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(json_object_get(r.out, "KeyMetadata"), "KeyId")));
    json_decref(r.out);
    coffer_err rc;
    assert_null(encrypt(e, "alias/aws/secretsmanager", NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    ok(run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\",\"PolicyName\":\"default\"}", id));
    ok(run(e, "ListResourceTags", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "PutKeyPolicy", "{\"KeyId\":\"%s\",\"PolicyName\":\"default\",\"Policy\":\"%s\"}", id,
               "{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[]}"));
    denied(run(e, "DisableKey", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "TagResource", "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]}", id));
    denied(run(e, "CreateAlias", "{\"AliasName\":\"alias/mine\",\"TargetKeyId\":\"%s\"}", id));
    /* Another account cannot reach it, nor make one in this account through its alias ARN. */
    set_caller(e, OTHER, OROOT, API_PRINCIPAL_ROOT, NULL);
    r = run(e, "DescribeKey", "{\"KeyId\":\"arn:aws:kms:" REGION ":" ACCT ":alias/aws/ssm\"}");
    assert_int_not_equal(r.rc, COFFER_OK);
    json_decref(r.out);
    r = run(e, "DescribeKey", "{\"KeyId\":\"arn:aws:kms:" REGION ":" ACCT ":key/%s\"}", id);
    assert_int_not_equal(r.rc, COFFER_OK);
    json_decref(r.out);
    set_caller(e, ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
    r = run(e, "ListKeys", "{}");
    assert_int_equal(json_array_size(json_object_get(r.out, "Keys")), 1);
    json_decref(r.out);
}

static void test_iam_delegation(void **state)
{
    struct env *e = *state;
    char id[64], arn[128], id2[64], arn2[128];
    create_key(e, NULL, id, arn);
    create_key(e, NULL, id2, arn2);
    char doc[512];
    snprintf(doc, sizeof(doc),
             "{'Version':'2012-10-17','Statement':[{'Effect':'Allow','Action':['kms:Encrypt',"
             "'kms:DescribeKey'],'Resource':'%s'}]}",
             arn);
    stub_add(e, ALICE, doc);
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    coffer_err rc;
    free(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    assert_null(encrypt(e, id2, NULL, &rc)); /* the policy names one key only */
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(),
                           "User: " ALICE " is not authorized to perform: kms:Encrypt on resource: "));
    assert_non_null(
        strstr(coffer_last_message(), "because no identity-based policy allows the kms:Encrypt action"));
    ok(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "CreateKey", "{}"));
    denied(run(e, "ListKeys", "{}"));
    denied(run(e, "ListAliases", "{}"));
    denied(run(e, "GenerateRandom", "{\"NumberOfBytes\":8}"));
    set_caller(e, ACCT, BOB, API_PRINCIPAL_USER, NULL);
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    /* A key policy naming bob directly needs no IAM policy. */
    as_root(e);
    ok(put_policy(e, id2, DOC(ROOT_ALL "," STMT("Allow", BOB, "'kms:Encrypt'")), false));
    set_caller(e, ACCT, BOB, API_PRINCIPAL_USER, NULL);
    free(encrypt(e, id2, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    /* The root may do anything its key policies let the account do. */
    as_root(e);
    ok(run(e, "ListKeys", "{}"));
    ok(run(e, "GenerateRandom", "{\"NumberOfBytes\":8}"));
}

static void test_cross_account(void **state)
{
    struct env *e = *state;
    char id[64], arn[128], alias_arn[128];
    create_key(e,
               DOC(ROOT_ALL "," STMT("Allow", OROOT,
                                     "['kms:Encrypt','kms:Decrypt','kms:DescribeKey',"
                                     "'kms:CreateGrant','kms:GetKeyPolicy']")),
               id, arn);
    ok(run(e, "CreateAlias", "{\"AliasName\":\"alias/shared\",\"TargetKeyId\":\"%s\"}", id));
    coffer_err rc;
    char *blob = encrypt(e, id, NULL, &rc);
    assert_non_null(blob);
    snprintf(alias_arn, sizeof(alias_arn), "arn:aws:kms:" REGION ":" ACCT ":alias/shared");

    /* Account B's root: the key policy is enough; keys are named by ARN. */
    set_caller(e, OTHER, OROOT, API_PRINCIPAL_ROOT, NULL);
    free(encrypt(e, arn, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    free(encrypt(e, alias_arn, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    assert_null(encrypt(e, id, NULL, &rc)); /* a bare id is looked up in B's own account */
    assert_int_equal(rc, COFFER_ERR_NOT_FOUND);
    ok(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob)); /* the blob names A's key */
    ok(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", arn));
    /* Same-account-only operations refuse another account's key even when the policy allows. */
    denied(run(e, "GetKeyPolicy", "{\"KeyId\":\"%s\"}", arn));
    denied(run(e, "DisableKey", "{\"KeyId\":\"%s\"}", arn));
    /* Not in the key policy. */
    denied(run(e, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\"}", arn));
    expect(run(e, "DescribeKey",
               "{\"KeyId\":\"arn:aws:kms:" REGION ":" ACCT ":key/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9\"}"),
           COFFER_ERR_NOT_FOUND,
           "Key 'arn:aws:kms:us-east-1:" ACCT ":key/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9' does not exist");

    /* B's user: needs its own IAM allow as well. */
    set_caller(e, OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    denied(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob));
    assert_non_null(
        strstr(coffer_last_message(), "because no identity-based policy allows the kms:Decrypt action"));
    /* B's root may grant on A's key (the key policy allows kms:CreateGrant to B): the grant lets
     * carol decrypt without any IAM policy of hers; A's root revokes it. */
    set_caller(e, OTHER, OROOT, API_PRINCIPAL_ROOT, NULL);
    struct result g = run(e, "CreateGrant",
                          "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" CAROL "\","
                          "\"Operations\":[\"Decrypt\"]}",
                          arn);
    assert_int_equal(g.rc, COFFER_OK);
    char gid[80];
    snprintf(gid, sizeof(gid), "%s", json_string_value(json_object_get(g.out, "GrantId")));
    ok(g);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" CAROL "\",\"Operations\":[\"Decrypt\"]}", id),
           COFFER_ERR_NOT_FOUND, NULL); /* a bare id is B's own */
    denied(run(e, "ListGrants", "{\"KeyId\":\"%s\"}", arn));
    set_caller(e, OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    ok(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob));
    as_root(e);
    ok(run(e, "RevokeGrant", "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", id, gid));
    set_caller(e, OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    denied(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob));
    stub_add(
        e, CAROL,
        "{'Version':'2012-10-17','Statement':[{'Effect':'Allow','Action':'kms:Decrypt','Resource':'*'}]}");
    ok(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob));
    assert_null(encrypt(e, arn, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);

    /* Removing the statement removes the access at once. */
    as_root(e);
    ok(put_policy(e, id, DOC(ROOT_ALL), false));
    set_caller(e, OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    denied(run(e, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob));
    free(blob);
}

/*
 * The rotation operations are key operations like the others: kms:<Operation> from the key
 * policy (and IAM through it); GetKeyRotationStatus alone may name another account's key.
 */
static void test_rotation_authz(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(
        e,
        DOC(ROOT_ALL "," STMT("Deny", ROOT, "'kms:RotateKeyOnDemand'") "," STMT(
            "Allow", OROOT, "['kms:GetKeyRotationStatus','kms:EnableKeyRotation','kms:ListKeyRotations']")),
        id, arn);
    ok(run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", id));
    ok(run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id));
    ok(run(e, "ListKeyRotations", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id));
    assert_non_null(strstr(coffer_last_message(), "kms:RotateKeyOnDemand"));
    ok(run(e, "DisableKeyRotation", "{\"KeyId\":\"%s\"}", id));

    /* Another account: the status by ARN (cross-account allowed); the writes never are. */
    set_caller(e, OTHER, OROOT, API_PRINCIPAL_ROOT, NULL);
    ok(run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", arn));
    denied(run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", arn));
    denied(run(e, "ListKeyRotations", "{\"KeyId\":\"%s\"}", arn));

    /* An IAM user of the key's account: the default delegation needs their own allow. */
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    denied(run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id));
    stub_add(e, ALICE,
             "{'Version':'2012-10-17','Statement':[{'Effect':'Allow','Action':'kms:GetKeyRotationStatus',"
             "'Resource':'*'}]}");
    ok(run(e, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", id));
}

static void test_grants(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(e, NULL, id, arn);
    struct result r =
        run(e, "CreateGrant",
            "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"RetiringPrincipal\":\"" BOB "\","
            "\"Operations\":[\"Encrypt\",\"Decrypt\"],\"Name\":\"g1\","
            "\"Constraints\":{\"EncryptionContextSubset\":{\"Department\":\"IT\"}}}",
            id);
    assert_int_equal(r.rc, COFFER_OK);
    char grant_id[80], token[600];
    snprintf(grant_id, sizeof(grant_id), "%s", json_string_value(json_object_get(r.out, "GrantId")));
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(r.out, "GrantToken")));
    assert_int_equal(strlen(grant_id), 64);
    json_decref(r.out);
    /* Idempotent by Name with the same parameters. */
    r = run(e, "CreateGrant",
            "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"RetiringPrincipal\":\"" BOB "\","
            "\"Operations\":[\"Decrypt\",\"Encrypt\"],\"Name\":\"g1\","
            "\"Constraints\":{\"EncryptionContextSubset\":{\"Department\":\"IT\"}}}",
            id);
    assert_string_equal(json_string_value(json_object_get(r.out, "GrantId")), grant_id);
    ok(r);

    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    coffer_err rc;
    char *blob = encrypt(e, id, "{\"Department\":\"IT\",\"x\":\"y\"}", &rc);
    assert_non_null(blob);
    assert_null(encrypt(e, id, "{\"Department\":\"HR\"}", &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    assert_null(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    ok(run(e, "Decrypt",
           "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"Department\":\"IT\",\"x\":\"y\"}}", blob));
    denied(run(e, "GenerateDataKey",
               "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\","
               "\"EncryptionContext\":{\"Department\":\"IT\"}}",
               id));
    denied(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    denied(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" BOB "\",\"Operations\":[\"Decrypt\"]}", id));
    /* Tokens: ours pass, garbage does not. */
    expect(run(e, "Encrypt",
               "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"GrantTokens\":[\"bad\"],"
               "\"EncryptionContext\":{\"Department\":\"IT\"}}",
               id),
           COFFER_ERR_INVALID_GRANT_TOKEN, NULL);
    ok(run(e, "Encrypt",
           "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"GrantTokens\":[\"%s\"],"
           "\"EncryptionContext\":{\"Department\":\"IT\"}}",
           id, token));

    /* A grant for the role covers its sessions. */
    as_root(e);
    ok(run(e, "CreateGrant",
           "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ROLE "\",\"Operations\":[\"DescribeKey\"]}", id));
    set_caller(e, ACCT, SESSION, API_PRINCIPAL_ASSUMED_ROLE, ROLE);
    ok(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));

    /* Listing. */
    as_root(e);
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 2);
    ok(r);
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Limit\":1}", id);
    const json_t *g = json_array_get(json_object_get(r.out, "Grants"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "GrantId")), grant_id);
    assert_string_equal(json_string_value(json_object_get(g, "KeyId")), arn);
    assert_string_equal(json_string_value(json_object_get(g, "IssuingAccount")), ROOT);
    assert_true(json_is_real(json_object_get(g, "CreationDate")));
    ok(r);
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\",\"Limit\":1}", id);
    assert_true(json_is_true(json_object_get(r.out, "Truncated")));
    char marker[256];
    snprintf(marker, sizeof(marker), "%s", json_string_value(json_object_get(r.out, "NextMarker")));
    ok(r);
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\",\"Limit\":1,\"Marker\":\"%s\"}", id, marker);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 1);
    assert_false(json_is_true(json_object_get(r.out, "Truncated")));
    ok(r);
    expect(run(e, "ListGrants", "{\"KeyId\":\"%s\",\"GrantId\":\"zz\"}", id), COFFER_ERR_INVALID_GRANT_ID,
           NULL);
    set_caller(e, ACCT, BOB, API_PRINCIPAL_USER, NULL);
    r = run(e, "ListRetirableGrants", "{\"RetiringPrincipal\":\"" BOB "\"}");
    denied(r); /* bob has no kms:ListRetirableGrants */
    stub_add(e, BOB,
             "{'Version':'2012-10-17','Statement':[{'Effect':'Allow','Action':'kms:ListRetirableGrants',"
             "'Resource':'*'}]}");
    r = run(e, "ListRetirableGrants", "{}");
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 1);
    ok(r);

    /* Grants survive a restart. */
    kms_service_free(e->svc);
    service_start(e);
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    ok(run(e, "Decrypt",
           "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"Department\":\"IT\",\"x\":\"y\"}}", blob));

    /* Alice is not the retiring principal; bob is. */
    denied(run(e, "RetireGrant", "{\"GrantToken\":\"%s\"}", token));
    expect(run(e, "RetireGrant", "{\"GrantToken\":\"garbage\"}"), COFFER_ERR_INVALID_GRANT_TOKEN, NULL);
    expect(run(e, "RetireGrant", "{}"), COFFER_ERR_VALIDATION,
           "Grant token OR (grant ID, key ID) must be specified");
    set_caller(e, ACCT, BOB, API_PRINCIPAL_USER, NULL);
    ok(run(e, "RetireGrant", "{\"GrantToken\":\"%s\"}", token));
    expect(run(e, "RetireGrant", "{\"GrantToken\":\"%s\"}", token), COFFER_ERR_NOT_FOUND, NULL);
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    denied(run(e, "Decrypt",
               "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"Department\":\"IT\",\"x\":\"y\"}}",
               blob));

    /* Revoke: needs kms:RevokeGrant; the root has it. */
    as_root(e);
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    char role_grant[80];
    snprintf(
        role_grant, sizeof(role_grant), "%s",
        json_string_value(json_object_get(json_array_get(json_object_get(r.out, "Grants"), 0), "GrantId")));
    ok(r);
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    denied(run(e, "RevokeGrant", "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", id, role_grant));
    as_root(e);
    ok(run(e, "RevokeGrant", "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", id, role_grant));
    set_caller(e, ACCT, SESSION, API_PRINCIPAL_ASSUMED_ROLE, ROLE);
    denied(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    as_root(e);
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 0);
    ok(r);
    free(blob);
}

/* Grants carry the asymmetric operations like any other: each one allows exactly itself. */
static void test_asymmetric_grants(void **state)
{
    struct env *e = *state;
    as_root(e);
    struct result r = run(e, "CreateKey", "{\"KeySpec\":\"ECC_NIST_P256\",\"KeyUsage\":\"SIGN_VERIFY\"}");
    assert_int_equal(r.rc, COFFER_OK);
    char id[64];
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(json_object_get(r.out, "KeyMetadata"), "KeyId")));
    json_decref(r.out);
    char sym[64], sym_arn[128];
    create_key(e, NULL, sym, sym_arn);
    ok(run(e, "CreateGrant",
           "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Sign\",\"GetPublicKey\"]}",
           id));
    ok(run(e, "CreateGrant",
           "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\","
           "\"Operations\":[\"GenerateDataKeyPairWithoutPlaintext\"]}",
           sym));
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Sign\",\"Encrypt\"]}",
               id),
           COFFER_ERR_VALIDATION, "Grant operation Encrypt is not valid for this KMS key.");
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Sign\"]}", sym),
           COFFER_ERR_VALIDATION, "Grant operation Sign is not valid for this KMS key.");
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    r = run(e, "Sign", "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    char sig[256];
    snprintf(sig, sizeof(sig), "%s", json_string_value(json_object_get(r.out, "Signature")));
    json_decref(r.out);
    ok(run(e, "GetPublicKey", "{\"KeyId\":\"%s\"}", id));
    denied(run(
        e, "Verify",
        "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}",
        id, sig));
    denied(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    ok(run(e, "GenerateDataKeyPairWithoutPlaintext", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"ECC_NIST_P256\"}",
           sym));
    denied(run(e, "GenerateDataKeyPair", "{\"KeyId\":\"%s\",\"KeyPairSpec\":\"ECC_NIST_P256\"}", sym));
    as_root(e);
    ok(run(
        e, "Verify",
        "{\"KeyId\":\"%s\",\"Message\":\"aGk=\",\"Signature\":\"%s\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}",
        id, sig));
}

static void test_grant_validation(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(e, NULL, id, arn);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Sign\"]}", id),
           COFFER_ERR_VALIDATION, NULL);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Fly\"]}", id),
           COFFER_ERR_VALIDATION, NULL);
    expect(
        run(e, "CreateGrant", "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[]}", id),
        COFFER_ERR_VALIDATION, NULL);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"alice\",\"Operations\":[\"Decrypt\"]}", id),
           COFFER_ERR_VALIDATION, NULL);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Decrypt\"],"
               "\"Constraints\":{\"EncryptionContextSubset\":{\"a\":\"b\"},"
               "\"EncryptionContextEquals\":{\"a\":\"b\"}}}",
               id),
           COFFER_ERR_VALIDATION, NULL);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Decrypt\"],"
               "\"Constraints\":{\"EncryptionContextSubset\":{\"a\":1}}}",
               id),
           COFFER_ERR_SERIALIZATION, NULL);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Decrypt\"],"
               "\"DryRun\":true}",
               id),
           COFFER_ERR_DRY_RUN, NULL);
    expect(run(e, "CreateGrant",
               "{\"KeyId\":\"alias/x\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Decrypt\"]}"),
           COFFER_ERR_NOT_FOUND, NULL);
    expect(run(e, "RevokeGrant", "{\"KeyId\":\"%s\",\"GrantId\":\"%064d\"}", id, 0), COFFER_ERR_NOT_FOUND,
           NULL);
    expect(run(e, "RevokeGrant", "{\"KeyId\":\"%s\",\"GrantId\":\"short\"}", id), COFFER_ERR_INVALID_GRANT_ID,
           NULL);
    /* Tokens that decode but are not well formed. */
    const char *bad[] = {"Y2d0MTo=", /* "cgt1:" */
                         "Y2d0MToxMTExMjIyMjMzMzM6dXMtZWFzdC0xOm5vdC1hLWtleTphYmM6ZGVm", "", "!!!!"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect(run(e, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"GrantTokens\":[\"%s\"]}", id,
                   bad[i]),
               bad[i][0] == '\0' ? COFFER_ERR_VALIDATION : COFFER_ERR_INVALID_GRANT_TOKEN, NULL);
    }
    /* Nothing was created by the refusals. */
    struct result r = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(json_array_size(json_object_get(r.out, "Grants")), 0);
    ok(r);
    /* An empty member constrains nothing: not "both", and not stored. */
    struct result g = run(e, "CreateGrant",
                          "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Decrypt\"],"
                          "\"Name\":\"empty-subset\",\"Constraints\":{\"EncryptionContextSubset\":{},"
                          "\"EncryptionContextEquals\":{\"a\":\"b\"}}}",
                          id);
    assert_int_equal(g.rc, COFFER_OK);
    json_decref(g.out);
    g = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(g.rc, COFFER_OK);
    const json_t *listed =
        json_object_get(json_array_get(json_object_get(g.out, "Grants"), 0), "Constraints");
    assert_null(json_object_get(listed, "EncryptionContextSubset"));
    assert_non_null(json_object_get(listed, "EncryptionContextEquals"));
    json_decref(g.out);
}

static void test_aliases_need_both(void **state)
{
    struct env *e = *state;
    char a[64], aarn[128], b[64], barn[128];
    create_key(e, NULL, a, aarn);
    create_key(
        e, DOC(ROOT_ALL "," STMT("Deny", ROOT, "['kms:CreateAlias','kms:UpdateAlias','kms:DeleteAlias']")), b,
        barn);
    denied(run(e, "CreateAlias", "{\"AliasName\":\"alias/b\",\"TargetKeyId\":\"%s\"}", b));
    ok(run(e, "CreateAlias", "{\"AliasName\":\"alias/a\",\"TargetKeyId\":\"%s\"}", a));
    denied(run(e, "UpdateAlias", "{\"AliasName\":\"alias/a\",\"TargetKeyId\":\"%s\"}", b));
    ok(put_policy(e, b, DOC(ROOT_ALL "," STMT("Deny", ROOT, "['kms:DeleteAlias']")), false));
    ok(run(e, "UpdateAlias", "{\"AliasName\":\"alias/a\",\"TargetKeyId\":\"%s\"}", b));
    denied(run(e, "DeleteAlias", "{\"AliasName\":\"alias/a\"}")); /* the key it points to refuses */
    /* IAM side: a user allowed on the key but not on the alias ARN. */
    char doc[512];
    snprintf(doc, sizeof(doc),
             "{'Version':'2012-10-17','Statement':[{'Effect':'Allow','Action':'kms:CreateAlias',"
             "'Resource':'%s'}]}",
             aarn);
    stub_add(e, ALICE, doc);
    set_caller(e, ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    denied(run(e, "CreateAlias", "{\"AliasName\":\"alias/alice\",\"TargetKeyId\":\"%s\"}", a));
    assert_non_null(strstr(coffer_last_message(), "on resource: arn:aws:kms:us-east-1:" ACCT ":alias/alice"));
}

static void test_authorization_off(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    create_key(e, DOC(ROOT_ALL "," STMT("Deny", ROOT, "'kms:Encrypt'") "," STMT("Allow", OROOT, "'kms:*'")),
               id, arn);
    kms_service_set_authorizer(e->svc, NULL);
    coffer_err rc;
    free(encrypt(e, id, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
    /* Another account's key stays out of reach without the authorizer. */
    set_caller(e, OTHER, OROOT, API_PRINCIPAL_ROOT, NULL);
    assert_null(encrypt(e, arn, NULL, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    kms_service_set_authorizer(e->svc, e->az);
    free(encrypt(e, arn, NULL, &rc));
    assert_int_equal(rc, COFFER_OK);
}

/* The 20-statement policy bench/authz.sh measures: each statement decides on its own condition
 * family, so every one of them is evaluated, not only the first or the last. */
static void test_twenty_statements(void **state)
{
    struct env *e = *state;
    char id[64], arn[128];
    char doc[16384];
    size_t len = (size_t)snprintf(doc, sizeof(doc), "{'Version':'2012-10-17','Statement':[");
    for (int i = 0; i < 19; i++) {
        char cond[256];
        switch (i % 4) {
        case 0:
            snprintf(cond, sizeof(cond), "{'StringEquals':{'kms:EncryptionContext:Department':'dept-%d'}}",
                     i);
            break;
        case 1:
            snprintf(cond, sizeof(cond), "{'IpAddress':{'aws:SourceIp':'10.%d.0.0/16'}}", i);
            break;
        case 2:
            snprintf(cond, sizeof(cond),
                     "{'StringLike':{'aws:PrincipalArn':'arn:aws:iam::" ACCT ":user/t-%d-*'}}", i);
            break;
        default:
            snprintf(cond, sizeof(cond),
                     "{'DateLessThan':{'aws:CurrentTime':'2001-01-%02dT00:00:00Z'},'Bool':{'aws:"
                     "SecureTransport':'true'}}",
                     i % 28 + 1);
        }
        len += (size_t)snprintf(doc + len, sizeof(doc) - len,
                                "{'Effect':'Allow','Principal':{'AWS':'" ROOT
                                "'},'Action':['kms:Encrypt','kms:Decrypt'],"
                                "'Resource':'*','Condition':%s},",
                                cond);
    }
    snprintf(doc + len, sizeof(doc) - len,
             "{'Effect':'Allow','Principal':{'AWS':'" ROOT "'},'Action':'kms:*','Resource':'*','Condition':"
             "{'StringEquals':{'kms:CallerAccount':'" ACCT "'},'Bool':{'aws:SecureTransport':'true'}}}]}");
    create_key(e, doc, id, arn);
    const char *it = "{\"Department\":\"IT\",\"Purpose\":\"bench\"}";
    coffer_err rc;
    /* Only the last statement matches: the account's own caller over TLS. */
    free(encrypt(e, id, it, &rc));
    assert_int_equal(rc, COFFER_OK);
    e->caller.secure_transport = false;
    assert_null(encrypt(e, id, it, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    /* Without TLS, each earlier statement still allows Encrypt on its own condition. */
    free(encrypt(e, id, "{\"Department\":\"dept-4\"}", &rc)); /* statement 4: kms:EncryptionContext */
    assert_int_equal(rc, COFFER_OK);
    e->caller.source_ip = "10.13.7.7"; /* statement 13: aws:SourceIp */
    free(encrypt(e, id, it, &rc));
    assert_int_equal(rc, COFFER_OK);
    e->caller.source_ip = "10.14.7.7"; /* no statement covers 10.14/16 */
    assert_null(encrypt(e, id, it, &rc));
    assert_int_equal(rc, COFFER_ERR_ACCESS_DENIED);
    /* Only the last statement grants anything beyond Encrypt and Decrypt. */
    e->caller.secure_transport = true;
    e->caller.source_ip = "127.0.0.1";
    ok(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    e->caller.secure_transport = false;
    denied(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
    e->caller.source_ip = "10.13.7.7";
    denied(run(e, "DescribeKey", "{\"KeyId\":\"%s\"}", id));
}

/* ---- a resolver binding ALICE that can be made to fail, as a store read can ---- */
static coffer_err resolve_fault = COFFER_OK;

static coffer_err stub_resolve(void *ctx, const char *arn, char uid[POLICY_UID_MAX])
{
    (void)ctx;
    if (resolve_fault != COFFER_OK) {
        return coffer_fail(resolve_fault, "identity store unavailable");
    }
    if (strcmp(arn, ALICE) != 0) {
        return COFFER_ERR_NO_SUCH_ENTITY;
    }
    snprintf(uid, POLICY_UID_MAX, "AIDAALICE0000000000000");
    return COFFER_OK;
}

/* A grant's principal that cannot be looked up fails the listing; it is not shown as unbound. */
static void test_principal_lookup_failure(void **state)
{
    struct env *e = *state;
    authz_free(e->az);
    e->src.resolve = stub_resolve;
    assert_int_equal(authz_new(&e->src, &e->az), COFFER_OK);
    kms_service_set_authorizer(e->svc, e->az);
    char id[64], arn[128];
    create_key(e, NULL, id, arn);
    ok(run(e, "CreateGrant",
           "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ALICE "\",\"Operations\":[\"Decrypt\"]}", id));
    struct result r = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    assert_int_equal(r.rc, COFFER_OK);
    json_t *g = json_array_get(json_object_get(r.out, "Grants"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "GranteePrincipal")), ALICE);
    json_decref(r.out);
    resolve_fault = COFFER_ERR_STORE;
    r = run(e, "ListGrants", "{\"KeyId\":\"%s\"}", id);
    resolve_fault = COFFER_OK;
    expect(r, COFFER_ERR_STORE, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_policy_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_condition_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_managed_key_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resource_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iam_delegation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_account, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_authz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_asymmetric_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliases_need_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authorization_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twenty_statements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_principal_lookup_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
