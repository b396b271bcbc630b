/*
 * Unit tests for src/iam/directory.c and the IAM/STS/admin handlers (iam_service.c,
 * sts_service.c): users, roles, keys (limit, deactivation and deletion taking effect at once in
 * the credential cache), inline and managed policies, the compiled-policy cache behind
 * iam_identity_source (cached, invalidated, old snapshots valid), accounts, STS session tokens
 * (forged, swapped, expired through the SigV4 verifier with an injected clock), authorization
 * of IAM calls, AssumeRole's trust rules, persistence across a reopen, and store faults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/codec.h"
#include "iam/directory.h"
#include "iam/iam_service.h"
#include "iam/policy.h"
#include "store/store_fault.h"

#define ACCT "000000000000"
#define OTHER "111122223333"
#define NOW_S 1795424400        /* 2026-11-23T09:00:00Z */
#define IAM_TEST_TOKEN_MAX 4097 /* a session token and its NUL */
#define ALLOW_KMS                                                                                            \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*" \
    "\"}]}"

struct fixture {
    char dir[64];
    char dbpath[128];
    char keypath[128];
    store *st;
    seal *sl;
    iam_creds *creds;
    iam_directory *d;
    iam_services *svc;
};

static void open_all(struct fixture *f, bool fault)
{
    store *inner = NULL;
    assert_int_equal(store_open(f->dbpath, &inner), COFFER_OK);
    if (fault) {
        assert_int_equal(store_fault_wrap(inner, &f->st), COFFER_OK);
    } else {
        f->st = inner;
    }
    assert_int_equal(seal_open_keyfile(f->keypath, true, f->st, &f->sl), COFFER_OK);
    assert_int_equal(iam_creds_new(f->st, f->sl, &f->creds), COFFER_OK);
    assert_int_equal(iam_directory_new(f->st, f->creds, &f->d), COFFER_OK);
    assert_int_equal(iam_dir_account_ensure(f->d, ACCT, "operator", NOW_S), COFFER_OK);
    assert_int_equal(iam_services_new(f->d, f->creds, ACCT, &f->svc), COFFER_OK);
}

static void close_all(struct fixture *f)
{
    iam_services_free(f->svc);
    iam_directory_free(f->d);
    iam_creds_free(f->creds);
    seal_free(f->sl);
    store_close(f->st);
    f->svc = NULL;
    f->d = NULL;
    f->creds = NULL;
    f->sl = NULL;
    f->st = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/coffer-iamdir-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->dbpath, sizeof(f->dbpath), "%s/coffer.db", f->dir);
    snprintf(f->keypath, sizeof(f->keypath), "%s/root.key", f->dir);
    open_all(f, false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close_all(f);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static json_t *new_user(struct fixture *f, const char *acct, const char *name)
{
    json_t *u = NULL;
    assert_int_equal(iam_dir_user_create(f->d, acct, name, NULL, NOW_S, &u), COFFER_OK);
    return u;
}

static void new_key(struct fixture *f, const char *acct, const char *user, char akid[21], char secret[64])
{
    json_t *k = NULL;
    assert_int_equal(iam_dir_key_create(f->d, acct, user, NOW_S, &k), COFFER_OK);
    snprintf(akid, 21, "%s", json_string_value(json_object_get(k, "AccessKeyId")));
    snprintf(secret, 64, "%s", json_string_value(json_object_get(k, "SecretAccessKey")));
    assert_string_equal(json_string_value(json_object_get(k, "Status")), "Active");
    json_decref(k);
}

static coffer_err lookup(struct fixture *f, const char *akid, const char *token, struct sigv4_identity *who)
{
    memset(who, 0, sizeof(*who));
    coffer_buf_init(&who->secret, true);
    coffer_err rc = iam_creds_lookup(f->creds, coffer_cursor_from_str(akid), token, who);
    return rc;
}

/* Calls a handler of `svc` as `caller` with a form-shaped input. */
static coffer_err call_op(const struct api_service *svc, const struct api_caller *caller, const char *op,
                          json_t *input, int64_t now_s, json_t **output)
{
    const struct api_op *o = api_service_find_op(svc, op, strlen(op));
    assert_non_null(o);
    struct api_call call = {
        .caller = caller,
        .region = "us-east-1",
        .request_id = "r",
        .operation = o->name,
        .now_ms = now_s * 1000,
        .input = input,
    };
    coffer_err rc = o->handler(svc->state, &call);
    if (output != NULL) {
        *output = call.output;
    } else {
        json_decref(call.output);
    }
    json_decref(call.audit_request);
    json_decref(call.audit_response);
    json_decref(call.audit_resources);
    json_decref(input);
    return rc;
}

static struct api_caller caller_root(const char *acct)
{
    struct api_caller c;
    memset(&c, 0, sizeof(c));
    snprintf(c.account_id, sizeof(c.account_id), "%s", acct);
    snprintf(c.principal_arn, sizeof(c.principal_arn), "arn:aws:iam::%s:root", acct);
    snprintf(c.principal_id, sizeof(c.principal_id), "%s", acct);
    c.principal_kind = API_PRINCIPAL_ROOT;
    c.source_ip = "127.0.0.1";
    c.user_agent = "";
    c.secure_transport = true;
    return c;
}

static struct api_caller caller_from(const struct sigv4_identity *who)
{
    struct api_caller c = caller_root(who->account_id);
    snprintf(c.access_key_id, sizeof(c.access_key_id), "%s", who->access_key_id);
    snprintf(c.principal_arn, sizeof(c.principal_arn), "%s", who->principal_arn);
    snprintf(c.principal_id, sizeof(c.principal_id), "%s", who->principal_id);
    c.principal_kind = api_principal_kind_parse(who->principal_type);
    snprintf(c.role_arn, sizeof(c.role_arn), "%s", who->role_arn);
    return c;
}

/* ---- users ---- */

static void test_user_lifecycle(void **state)
{
    struct fixture *f = *state;
    json_t *u = NULL;
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "alice", "/team/", NOW_S, &u), COFFER_OK);
    assert_string_equal(json_string_value(json_object_get(u, "Arn")),
                        "arn:aws:iam::000000000000:user/team/alice");
    assert_string_equal(json_string_value(json_object_get(u, "CreateDate")), "2026-11-23T09:00:00Z");
    assert_memory_equal(json_string_value(json_object_get(u, "UserId")), "AIDA", 4);
    assert_null(json_object_get(u, "_keys")); /* internal members never leave the directory */
    json_decref(u);

    u = NULL;
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "ALICE", NULL, NOW_S, &u), COFFER_ERR_ENTITY_EXISTS);
    assert_null(u);
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "bad name", NULL, NOW_S, &u), COFFER_ERR_VALIDATION);
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "", NULL, NOW_S, &u), COFFER_ERR_VALIDATION);
    char long_name[IAM_DIR_NAME_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(iam_dir_user_create(f->d, ACCT, long_name, NULL, NOW_S, &u), COFFER_ERR_VALIDATION);
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "bob", "no-slash", NOW_S, &u), COFFER_ERR_VALIDATION);
    assert_int_equal(iam_dir_user_create(f->d, "12345", "bob", NULL, NOW_S, &u), COFFER_ERR_USAGE);

    json_t *other = new_user(f, OTHER, "alice"); /* same name, other account */
    json_decref(other);
    json_t *list = NULL;
    assert_int_equal(iam_dir_list(f->d, IAM_KIND_USER, ACCT, NULL, &list), COFFER_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    assert_int_equal(iam_dir_list(f->d, IAM_KIND_USER, ACCT, "/other/", &list), COFFER_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    assert_int_equal(iam_dir_get(f->d, IAM_KIND_USER, ACCT, "Alice", &u), COFFER_OK);
    assert_string_equal(json_string_value(json_object_get(u, "UserName")), "alice");
    json_decref(u);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "alice", "p", ALLOW_KMS), COFFER_OK);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_USER, ACCT, "alice"), COFFER_ERR_DELETE_CONFLICT);
    assert_int_equal(iam_dir_inline_delete(f->d, IAM_KIND_USER, ACCT, "alice", "p"), COFFER_OK);
    assert_int_equal(iam_dir_inline_delete(f->d, IAM_KIND_USER, ACCT, "alice", "p"),
                     COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_USER, ACCT, "alice"), COFFER_OK);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_USER, ACCT, "alice"), COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_get(f->d, IAM_KIND_USER, ACCT, "alice", &u), COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_get(f->d, IAM_KIND_USER, OTHER, "alice", &u), COFFER_OK);
    json_decref(u);
}

/* ---- access keys ---- */

static void test_access_keys(void **state)
{
    struct fixture *f = *state;
    json_t *u = new_user(f, ACCT, "keyed");
    char akid[21], akid2[21], secret[64], secret2[64];
    new_key(f, ACCT, "keyed", akid, secret);
    new_key(f, ACCT, "keyed", akid2, secret2);
    json_t *k = NULL;
    assert_int_equal(iam_dir_key_create(f->d, ACCT, "keyed", NOW_S, &k), COFFER_ERR_LIMIT_EXCEEDED);
    assert_null(k);
    assert_int_equal(iam_dir_key_create(f->d, ACCT, "nobody", NOW_S, &k), COFFER_ERR_NO_SUCH_ENTITY);

    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    assert_string_equal(who.principal_type, "IAMUser");
    assert_string_equal(who.principal_arn, "arn:aws:iam::000000000000:user/keyed");
    assert_string_equal(who.principal_id, json_string_value(json_object_get(u, "UserId")));
    assert_string_equal((const char *)who.secret.data, secret);
    sigv4_identity_clean(&who);

    /* Deactivation takes effect although the key is cached. */
    assert_int_equal(iam_dir_key_update(f->d, ACCT, "keyed", akid, false), COFFER_OK);
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    sigv4_identity_clean(&who);
    json_t *list = NULL;
    assert_int_equal(iam_dir_key_list(f->d, ACCT, "keyed", &list), COFFER_OK);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "Status")), "Inactive");
    json_decref(list);
    assert_int_equal(iam_dir_key_update(f->d, ACCT, "keyed", akid, true), COFFER_OK);
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    sigv4_identity_clean(&who);

    /* A key of another user, or unknown, is not found; deletion takes effect at once. */
    json_t *u2 = new_user(f, ACCT, "other");
    assert_int_equal(iam_dir_key_delete(f->d, ACCT, "other", akid), COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_key_update(f->d, ACCT, "keyed", "AKIAAAAAAAAAAAAAAAAA", false),
                     COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_USER, ACCT, "keyed"), COFFER_ERR_DELETE_CONFLICT);
    assert_int_equal(iam_dir_key_delete(f->d, ACCT, "keyed", akid), COFFER_OK);
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    sigv4_identity_clean(&who);
    assert_int_equal(lookup(f, akid2, NULL, &who), COFFER_OK);
    sigv4_identity_clean(&who);
    assert_int_equal(iam_dir_key_delete(f->d, ACCT, "keyed", akid2), COFFER_OK);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_USER, ACCT, "keyed"), COFFER_OK);
    json_decref(u);
    json_decref(u2);
}

/* ---- policies and the identity source ---- */

static void test_identity_source(void **state)
{
    struct fixture *f = *state;
    struct iam_identity_source src = iam_directory_identity_source(f->d);
    json_decref(new_user(f, ACCT, "pol"));
    const char *arn = "arn:aws:iam::000000000000:user/pol";
    struct iam_policy_list a, b, c;
    assert_int_equal(src.policies(src.ctx, arn, &a), COFFER_OK);
    assert_int_equal(a.n, 0);
    src.release(src.ctx, &a);

    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "pol", "kms", ALLOW_KMS), COFFER_OK);
    assert_int_equal(src.policies(src.ctx, arn, &a), COFFER_OK);
    assert_int_equal(a.n, 1);
    assert_int_equal(src.policies(src.ctx, arn, &b), COFFER_OK);
    assert_ptr_equal(a.handle, b.handle); /* compiled once, served from the cache */
    src.release(src.ctx, &b);
    struct policy_request req = {.principal_arn = arn,
                                 .principal_account = ACCT,
                                 .principal_type = "User",
                                 .action = "kms:Encrypt",
                                 .resource = "arn:aws:kms:us-east-1:000000000000:key/k"};
    assert_int_equal(policy_evaluate_all(a.items, a.n, &req), POLICY_ALLOW);

    /* A managed policy attached: the cache is invalidated, the old snapshot stays usable. */
    json_t *p = NULL;
    const char *deny =
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"kms:Encrypt\","
        "\"Resource\":\"*\"}]}";
    assert_int_equal(iam_dir_policy_create(f->d, ACCT, "deny-enc", NULL, deny, NULL, NOW_S, &p), COFFER_OK);
    const char *parn = json_string_value(json_object_get(p, "Arn"));
    assert_string_equal(parn, "arn:aws:iam::000000000000:policy/deny-enc");
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, ACCT, "pol", parn, true), COFFER_OK);
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, ACCT, "pol", parn, true),
                     COFFER_OK); /* idempotent */
    assert_int_equal(src.policies(src.ctx, arn, &c), COFFER_OK);
    assert_ptr_not_equal(c.handle, a.handle);
    assert_int_equal(c.n, 2);
    assert_int_equal(policy_evaluate_all(c.items, c.n, &req), POLICY_DENY_EXPLICIT);
    assert_int_equal(policy_evaluate_all(a.items, a.n, &req), POLICY_ALLOW);
    src.release(src.ctx, &a);
    src.release(src.ctx, &c);
    json_t *pol = NULL;
    assert_int_equal(iam_dir_policy_get(f->d, ACCT, parn, &pol), COFFER_OK);
    assert_int_equal(json_integer_value(json_object_get(pol, "AttachmentCount")), 1);
    json_decref(pol);
    assert_int_equal(iam_dir_policy_delete(f->d, ACCT, parn), COFFER_ERR_DELETE_CONFLICT);
    /* Policies of another account are not attachable; a wrong path is not this policy. */
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, OTHER, "pol", parn, true),
                     COFFER_ERR_NO_SUCH_ENTITY);
    json_decref(new_user(f, OTHER, "pol"));
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, OTHER, "pol", parn, true),
                     COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, ACCT, "pol",
                                    "arn:aws:iam::000000000000:policy/x/deny-enc", false),
                     COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, ACCT, "pol", parn, false), COFFER_OK);
    assert_int_equal(iam_dir_attach(f->d, IAM_KIND_USER, ACCT, "pol", parn, false),
                     COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(iam_dir_policy_delete(f->d, ACCT, parn), COFFER_OK);
    json_decref(p);

    /* Roles, and an assumed-role session ARN maps to its role. */
    const char *trust =
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
        "\"000000000000\"},\"Action\":\"sts:AssumeRole\"}]}";
    json_t *r = NULL;
    assert_int_equal(iam_dir_role_create(f->d, ACCT, "R", "/svc/", trust, 0, "d", NOW_S, &r), COFFER_OK);
    assert_int_equal(json_integer_value(json_object_get(r, "MaxSessionDuration")), 3600);
    json_decref(r);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_ROLE, ACCT, "R", "kms", ALLOW_KMS), COFFER_OK);
    assert_int_equal(src.policies(src.ctx, "arn:aws:iam::000000000000:role/svc/R", &a), COFFER_OK);
    assert_int_equal(a.n, 1);
    assert_int_equal(src.policies(src.ctx, "arn:aws:sts::000000000000:assumed-role/R/s1", &b), COFFER_OK);
    assert_ptr_equal(a.handle, b.handle);
    src.release(src.ctx, &a);
    src.release(src.ctx, &b);
    /* Unknown or unparsable principals have no policies. */
    assert_int_equal(src.policies(src.ctx, "arn:aws:iam::000000000000:user/ghost", &a), COFFER_OK);
    assert_int_equal(a.n, 0);
    src.release(src.ctx, &a);
    assert_int_equal(src.policies(src.ctx, "arn:aws:iam::000000000000:root", &a), COFFER_OK);
    assert_int_equal(a.n, 0);
    src.release(src.ctx, &a);
    assert_int_equal(src.policies(src.ctx, "garbage", &a), COFFER_OK);
    assert_int_equal(a.n, 0);
    src.release(src.ctx, &a);
    memset(&a, 0, sizeof(a));
    src.release(src.ctx, &a); /* a zeroed list is fine */
}

#define SOURCE_THREADS 4
#define SOURCE_ROUNDS 300

struct source_arg {
    struct iam_identity_source src;
    int bad;
};

static void *source_reader(void *p)
{
    struct source_arg *a = p;
    struct policy_request req = {.principal_arn = "arn:aws:iam::000000000000:user/conc",
                                 .principal_account = ACCT,
                                 .principal_type = "User",
                                 .action = "kms:Encrypt",
                                 .resource = "*"};
    for (int i = 0; i < SOURCE_ROUNDS; i++) {
        struct iam_policy_list l;
        if (a->src.policies(a->src.ctx, req.principal_arn, &l) != COFFER_OK) {
            a->bad++;
            continue;
        }
        /* Every snapshot is complete: "kms" alone allows, with "deny" it denies. */
        enum policy_decision d = policy_evaluate_all(l.items, l.n, &req);
        if (l.n > 0 && d == POLICY_NOT_APPLICABLE) {
            a->bad++;
        }
        a->src.release(a->src.ctx, &l);
    }
    return NULL;
}

/* Requests read the cache while policies change: no torn list, no leak, no race (ASan/TSan). */
static void test_identity_source_threads(void **state)
{
    struct fixture *f = *state;
    json_decref(new_user(f, ACCT, "conc"));
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "conc", "kms", ALLOW_KMS), COFFER_OK);
    struct source_arg args[SOURCE_THREADS];
    pthread_t th[SOURCE_THREADS];
    for (int i = 0; i < SOURCE_THREADS; i++) {
        args[i] = (struct source_arg){.src = iam_directory_identity_source(f->d)};
        assert_int_equal(pthread_create(&th[i], NULL, source_reader, &args[i]), 0);
    }
    const char *deny = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"kms:*\","
                       "\"Resource\":\"*\"}]}";
    for (int i = 0; i < 20; i++) {
        assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "conc", "deny", deny), COFFER_OK);
        assert_int_equal(iam_dir_inline_delete(f->d, IAM_KIND_USER, ACCT, "conc", "deny"), COFFER_OK);
    }
    for (int i = 0; i < SOURCE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
    }
}

static void test_malformed_documents(void **state)
{
    struct fixture *f = *state;
    json_decref(new_user(f, ACCT, "m"));
    const char *with_principal =
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\","
        "\"Action\":\"kms:*\",\"Resource\":\"*\"}]}";
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "m", "p", with_principal),
                     COFFER_ERR_MALFORMED_POLICY);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "m", "p", "{"),
                     COFFER_ERR_MALFORMED_POLICY);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "m", "p", NULL),
                     COFFER_ERR_MALFORMED_POLICY);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "m", "bad name", ALLOW_KMS),
                     COFFER_ERR_VALIDATION);
    json_t *r = NULL, *p = NULL;
    assert_int_equal(iam_dir_role_create(f->d, ACCT, "r", NULL, ALLOW_KMS, 0, NULL, NOW_S, &r),
                     COFFER_ERR_MALFORMED_POLICY); /* a trust policy must name a principal */
    assert_int_equal(iam_dir_role_create(f->d, ACCT, "r", NULL, with_principal, 3599, NULL, NOW_S, &r),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(iam_dir_role_create(f->d, ACCT, "r", NULL, with_principal, 43201, NULL, NOW_S, &r),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(iam_dir_policy_create(f->d, ACCT, "p", NULL, "[]", NULL, NOW_S, &p),
                     COFFER_ERR_MALFORMED_POLICY);
    assert_null(r);
    assert_null(p);
    /* Nothing was stored by the failures. */
    json_t *list = NULL;
    assert_int_equal(iam_dir_inline_list(f->d, IAM_KIND_USER, ACCT, "m", &list), COFFER_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(iam_dir_list(f->d, IAM_KIND_ROLE, ACCT, NULL, &list), COFFER_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

/* ---- accounts ---- */

static void test_accounts(void **state)
{
    struct fixture *f = *state;
    char acct[13], akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    assert_int_equal(iam_dir_account_create(f->d, "tenant", NULL, NOW_S, acct, akid, &secret), COFFER_OK);
    assert_int_equal(strlen(acct), 12);
    assert_int_not_equal(strcmp(acct, ACCT), 0);
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    assert_string_equal(who.account_id, acct);
    assert_string_equal(who.principal_type, "Root");
    assert_string_equal((const char *)who.secret.data, (const char *)secret.data);
    sigv4_identity_clean(&who);
    char acct2[13], akid2[21];
    assert_int_equal(iam_dir_account_create(f->d, "tenant", NULL, NOW_S, acct2, akid2, &secret), COFFER_OK);
    assert_int_not_equal(strcmp(acct, acct2), 0);
    assert_int_equal(iam_dir_account_create(f->d, "", NULL, NOW_S, acct2, akid2, &secret),
                     COFFER_ERR_VALIDATION);
    json_t *list = NULL;
    assert_int_equal(iam_dir_account_list(f->d, &list), COFFER_OK);
    assert_int_equal(json_array_size(list), 3);
    json_decref(list);
    assert_int_equal(iam_dir_account_ensure(f->d, ACCT, "operator", NOW_S), COFFER_OK); /* idempotent */
    coffer_buf_free(&secret);
}

/* The same account in a peer region's deployment: made with the id it has there. */
static void test_account_with_given_id(void **state)
{
    struct fixture *f = *state;
    char acct[13], akid[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT;
    assert_int_equal(iam_dir_account_create(f->d, "tenant", "123456789012", NOW_S, acct, akid, &secret),
                     COFFER_OK);
    assert_string_equal(acct, "123456789012");
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    assert_string_equal(who.account_id, "123456789012");
    sigv4_identity_clean(&who);
    struct iam_identity_source src = iam_directory_identity_source(f->d);
    assert_true(src.account_exists(src.ctx, "123456789012"));
    assert_false(src.account_exists(src.ctx, "123456789013"));
    assert_false(src.account_exists(src.ctx, "not-an-id"));
    assert_int_equal(iam_dir_account_create(f->d, "again", "123456789012", NOW_S, acct, akid, &secret),
                     COFFER_ERR_ALREADY_EXISTS);
    assert_int_equal(iam_dir_account_create(f->d, "bad", "12345", NOW_S, acct, akid, &secret),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(iam_dir_account_create(f->d, "operator", ACCT, NOW_S, acct, akid, &secret),
                     COFFER_ERR_VALIDATION);
    coffer_buf_free(&secret);
}

/* ---- STS sessions ---- */

static void issue(struct fixture *f, int64_t expires, char akid[21], coffer_buf *secret, coffer_buf *token)
{
    struct iam_session_spec spec = {
        .account_id = ACCT,
        .role_arn = "arn:aws:iam::000000000000:role/R",
        .session_arn = "arn:aws:sts::000000000000:assumed-role/R/s",
        .principal_id = "AROAEXAMPLE:s",
        .issued_at = NOW_S,
        .expires_at = expires,
    };
    assert_int_equal(iam_creds_issue_session(f->creds, &spec, akid, secret, token), COFFER_OK);
}

static coffer_err verify_signed(struct fixture *f, const char *akid, const char *secret, const char *token,
                                int64_t now_s)
{
    const char *body = "Action=GetCallerIdentity&Version=2011-06-15";
    struct sigv4_header hdrs[5] = {
        {"Host", "127.0.0.1:8443"},
        {"X-Amz-Date", "20261123T090000Z"},
        {"X-Amz-Security-Token", token},
        {"Authorization", NULL},
    };
    struct sigv4_request req = {.method = "POST",
                                .path = "/",
                                .query = "",
                                .headers = hdrs,
                                .n_headers = 3,
                                .body = coffer_cursor_from_str(body)};
    struct sigv4_credentials cr = {akid, secret, token};
    coffer_buf auth = COFFER_BUF_INIT;
    assert_int_equal(sigv4_sign(&req, &cr, "us-east-1", "sts", "20261123T090000Z",
                                "host;x-amz-date;x-amz-security-token", &auth),
                     COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&auth), COFFER_OK);
    hdrs[3].value = (const char *)auth.data;
    req.n_headers = 4;
    struct sigv4_verify_opts opts = {"us-east-1", "sts", now_s, SIGV4_DEFAULT_SKEW_S * 100};
    struct sigv4_identity who;
    coffer_err rc = sigv4_verify(&req, &opts, iam_creds_lookup, f->creds, &who);
    if (rc == COFFER_OK) {
        assert_string_equal(who.principal_type, "AssumedRole");
        assert_string_equal(who.role_arn, "arn:aws:iam::000000000000:role/R");
        sigv4_identity_clean(&who);
    }
    coffer_buf_free(&auth);
    return rc;
}

static void test_session_tokens(void **state)
{
    struct fixture *f = *state;
    char akid[21], akid2[21];
    coffer_buf secret = COFFER_SECRET_BUF_INIT, token = COFFER_BUF_INIT;
    coffer_buf secret2 = COFFER_SECRET_BUF_INIT, token2 = COFFER_BUF_INIT;
    issue(f, NOW_S + 900, akid, &secret, &token);
    issue(f, NOW_S + 900, akid2, &secret2, &token2);
    assert_memory_equal(akid, "ASIA", 4);

    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, (const char *)token.data, &who), COFFER_OK);
    assert_string_equal(who.principal_arn, "arn:aws:sts::000000000000:assumed-role/R/s");
    assert_string_equal(who.principal_id, "AROAEXAMPLE:s");
    assert_int_equal(who.expires_at, NOW_S + 900);
    assert_int_equal(who.issued_at, NOW_S);
    assert_string_equal((const char *)who.secret.data, (const char *)secret.data);
    sigv4_identity_clean(&who);
    /* Without a token, with another session's token, with a flipped byte: unrecognized. */
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    assert_int_equal(lookup(f, akid, (const char *)token2.data, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    char *forged = strdup((const char *)token.data);
    forged[10] = forged[10] == 'A' ? 'B' : 'A';
    assert_int_equal(lookup(f, akid, forged, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    forged[10] = '\0'; /* truncated */
    assert_int_equal(lookup(f, akid, forged, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    free(forged);
    assert_int_equal(lookup(f, akid, "not base64 !!", &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    /* A long-term key with a token is refused too. */
    json_decref(new_user(f, ACCT, "u"));
    char uk[21], us[64];
    new_key(f, ACCT, "u", uk, us);
    assert_int_equal(lookup(f, uk, (const char *)token.data, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);

    /* Through the verifier with an injected clock: valid until expiry, then ExpiredToken. */
    assert_int_equal(verify_signed(f, akid, (const char *)secret.data, (const char *)token.data, NOW_S),
                     COFFER_OK);
    assert_int_equal(verify_signed(f, akid, (const char *)secret.data, (const char *)token.data, NOW_S + 899),
                     COFFER_OK);
    assert_int_equal(verify_signed(f, akid, (const char *)secret.data, (const char *)token.data, NOW_S + 900),
                     COFFER_ERR_EXPIRED_TOKEN);
    assert_int_equal(verify_signed(f, akid, (const char *)secret2.data, (const char *)token.data, NOW_S),
                     COFFER_ERR_INVALID_SIGNATURE);

    /* Sessions survive a restart (the barrier keyring is durable). */
    close_all(f);
    open_all(f, false);
    assert_int_equal(lookup(f, akid, (const char *)token.data, &who), COFFER_OK);
    sigv4_identity_clean(&who);
    assert_int_equal(lookup(f, uk, NULL, &who), COFFER_OK);
    sigv4_identity_clean(&who);
    coffer_buf_free(&secret);
    coffer_buf_free(&token);
    coffer_buf_free(&secret2);
    coffer_buf_free(&token2);
}

/* ---- operation tables: sorted by name, every row reachable (api_ops_check) ---- */

static void test_op_tables(void **state)
{
    struct fixture *f = *state;
    const struct api_service *services[] = {iam_services_iam_api(f->svc), iam_services_sts_api(f->svc),
                                            iam_services_admin_api(f->svc)};
    for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++) {
        const struct api_service *svc = services[s];
        assert_true(svc->n_ops > 0);
        assert_int_equal(api_ops_check(svc->ops, svc->n_ops), COFFER_OK);
        for (size_t i = 0; i < svc->n_ops; i++) {
            const char *name = svc->ops[i].name;
            assert_ptr_equal(api_service_find_op(svc, name, strlen(name)), &svc->ops[i]);
        }
    }
}

/* IAM and STS answer in their own (Query-protocol) error names, the same for both. */
static void test_error_names(void **state)
{
    struct fixture *f = *state;
    const struct api_service *services[] = {iam_services_iam_api(f->svc), iam_services_sts_api(f->svc)};
    static const struct {
        coffer_err code;
        const char *type;
        int status;
    } want[] = {
        {COFFER_ERR_NO_SUCH_ENTITY, "NoSuchEntity", 404},
        {COFFER_ERR_NOT_FOUND, "NoSuchEntity", 404},
        {COFFER_ERR_ENTITY_EXISTS, "EntityAlreadyExists", 409},
        {COFFER_ERR_ALREADY_EXISTS, "EntityAlreadyExists", 409},
        {COFFER_ERR_LIMIT_EXCEEDED, "LimitExceeded", 409},
        {COFFER_ERR_MALFORMED_POLICY, "MalformedPolicyDocument", 400},
        {COFFER_ERR_VALIDATION, "ValidationError", 400},
        {COFFER_ERR_UNKNOWN_OPERATION, "InvalidAction", 400},
        {COFFER_ERR_ACCESS_DENIED, "AccessDenied", 403},
        {COFFER_ERR_UNRECOGNIZED_CLIENT, "InvalidClientTokenId", 403},
        {COFFER_ERR_INVALID_SIGNATURE, "SignatureDoesNotMatch", 403},
        {COFFER_ERR_EXPIRED_TOKEN, "ExpiredToken", 400},
        {COFFER_ERR_THROTTLING, "Throttling", 400},
        {COFFER_ERR_DELETE_CONFLICT, "DeleteConflict", 409},
        {COFFER_ERR_INTERNAL, "ServiceFailure", 500},
        {COFFER_ERR_STORE, "ServiceFailure", 500},
        {COFFER_ERR_AUDIT, "ServiceFailure", 500},
        {COFFER_ERR_UNAVAILABLE, "ServiceUnavailable", 503},
    };
    for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++) {
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
            struct api_error e = api_service_error(services[s], want[i].code);
            assert_string_equal(e.type, want[i].type);
            assert_int_equal(e.status, want[i].status);
        }
    }
    /* Every code at 500 or above is a ServiceFailure or ServiceUnavailable: none keeps a JSON name. */
    for (int c = COFFER_ERR_NOMEM; c < COFFER_ERR_COUNT; c++) {
        struct api_error e = api_service_error(services[0], (coffer_err)c);
        if (e.status >= 500) {
            assert_true(strcmp(e.type, "ServiceFailure") == 0 || strcmp(e.type, "ServiceUnavailable") == 0);
        }
    }
}

/* ---- handlers: authorization of IAM calls and AssumeRole ---- */

static void test_iam_authorization(void **state)
{
    struct fixture *f = *state;
    const struct api_service *iam = iam_services_iam_api(f->svc);
    struct api_caller root = caller_root(ACCT);
    json_t *out = NULL;
    assert_int_equal(call_op(iam, &root, "CreateUser", json_pack("{s:s}", "UserName", "op"), NOW_S, &out),
                     COFFER_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "User"), "UserName")), "op");
    json_decref(out);
    assert_int_equal(
        call_op(iam, &root, "CreateAccessKey", json_pack("{s:s}", "UserName", "op"), NOW_S, &out), COFFER_OK);
    char akid[21];
    snprintf(akid, sizeof(akid), "%s",
             json_string_value(json_object_get(json_object_get(out, "AccessKey"), "AccessKeyId")));
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    json_decref(out);
    struct api_caller user = caller_from(&who);
    sigv4_identity_clean(&who);

    /* No policy: denied with AWS's message. */
    assert_int_equal(call_op(iam, &user, "CreateUser", json_pack("{s:s}", "UserName", "x"), NOW_S, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(
        coffer_last_message(),
        "User: arn:aws:iam::000000000000:user/op is not authorized to perform: iam:CreateUser on "
        "resource: arn:aws:iam::000000000000:user/x because no identity-based policy allows the "
        "iam:CreateUser action");
    const char *allow_create = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
                               "\"iam:CreateUser\",\"Resource\":\"arn:aws:iam::000000000000:user/ok-*\"}]}";
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "op", "c", allow_create), COFFER_OK);
    assert_int_equal(call_op(iam, &user, "CreateUser", json_pack("{s:s}", "UserName", "ok-1"), NOW_S, NULL),
                     COFFER_OK);
    assert_int_equal(call_op(iam, &user, "CreateUser", json_pack("{s:s}", "UserName", "no-1"), NOW_S, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    /* Nobody reaches another account's entities: the other root sees none of ours. */
    struct api_caller other = caller_root(OTHER);
    assert_int_equal(call_op(iam, &other, "GetUser", json_pack("{s:s}", "UserName", "op"), NOW_S, NULL),
                     COFFER_ERR_NO_SUCH_ENTITY);
    assert_int_equal(call_op(iam, &other, "ListUsers", json_object(), NOW_S, &out), COFFER_OK);
    assert_int_equal(json_array_size(json_object_get(out, "Users")), 0);
    json_decref(out);
    /* Policy documents come back URL-encoded. */
    assert_int_equal(call_op(iam, &root, "GetUserPolicy",
                             json_pack("{s:s, s:s}", "UserName", "op", "PolicyName", "c"), NOW_S, &out),
                     COFFER_OK);
    assert_non_null(strstr(json_string_value(json_object_get(out, "PolicyDocument")), "%7B%22Version%22"));
    json_decref(out);
    /* Validation of the form input. */
    assert_int_equal(call_op(iam, &root, "CreateUser", json_object(), NOW_S, NULL), COFFER_ERR_VALIDATION);
    assert_int_equal(
        call_op(iam, &root, "UpdateAccessKey",
                json_pack("{s:s, s:s, s:s}", "UserName", "op", "AccessKeyId", akid, "Status", "Maybe"), NOW_S,
                NULL),
        COFFER_ERR_VALIDATION);
    /* CofferAdmin is for the operator root only. */
    const struct api_service *admin = iam_services_admin_api(f->svc);
    assert_int_equal(
        call_op(admin, &user, "CreateAccount", json_pack("{s:s}", "AccountName", "x"), NOW_S, NULL),
        COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(call_op(admin, &other, "ListAccounts", json_object(), NOW_S, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(
        call_op(admin, &root, "CreateAccount", json_pack("{s:s}", "AccountName", "x"), NOW_S, &out),
        COFFER_OK);
    assert_int_equal(strlen(json_string_value(json_object_get(out, "AccountId"))), 12);
    json_decref(out);
}

static struct api_caller user_with_key(struct fixture *f, const char *acct, const char *name)
{
    json_decref(new_user(f, acct, name));
    char akid[21], secret[64];
    new_key(f, acct, name, akid, secret);
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    struct api_caller c = caller_from(&who);
    sigv4_identity_clean(&who);
    return c;
}

static coffer_err assume(struct fixture *f, const struct api_caller *c, const char *role_arn,
                         const char *duration, json_t **out)
{
    json_t *in = json_pack("{s:s, s:s}", "RoleArn", role_arn, "RoleSessionName", "sess");
    if (duration != NULL) {
        json_object_set_new(in, "DurationSeconds", json_string(duration));
    }
    return call_op(iam_services_sts_api(f->svc), c, "AssumeRole", in, NOW_S, out);
}

static void make_role(struct fixture *f, const char *acct, const char *name, const char *principal)
{
    char trust[512];
    snprintf(
        trust, sizeof(trust),
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"%s\"},"
        "\"Action\":\"sts:AssumeRole\"}]}",
        principal);
    json_t *r = NULL;
    assert_int_equal(iam_dir_role_create(f->d, acct, name, NULL, trust, 7200, NULL, NOW_S, &r), COFFER_OK);
    json_decref(r);
}

static void test_assume_role_rules(void **state)
{
    struct fixture *f = *state;
    struct api_caller alice = user_with_key(f, ACCT, "alice");
    struct api_caller bob = user_with_key(f, OTHER, "bob");
    const char *allow_assume = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
                               "\"sts:AssumeRole\",\"Resource\":\"*\"}]}";
    make_role(f, ACCT, "named", "arn:aws:iam::000000000000:user/alice");
    make_role(f, ACCT, "acct", "arn:aws:iam::000000000000:root");
    make_role(f, ACCT, "cross", "arn:aws:iam::111122223333:root");
    make_role(f, ACCT, "cross-named", "arn:aws:iam::111122223333:user/bob");

    /* Named directly, same account: the trust policy alone suffices. */
    json_t *out = NULL;
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/named", NULL, &out), COFFER_OK);
    json_t *cr = json_object_get(out, "Credentials");
    assert_memory_equal(json_string_value(json_object_get(cr, "AccessKeyId")), "ASIA", 4);
    assert_string_equal(json_string_value(json_object_get(cr, "Expiration")), "2026-11-23T10:00:00Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "AssumedRoleUser"), "Arn")),
                        "arn:aws:sts::000000000000:assumed-role/named/sess");
    /* The session authenticates as AssumedRole with the role ARN, and its GetCallerIdentity says so. */
    struct sigv4_identity who;
    assert_int_equal(lookup(f, json_string_value(json_object_get(cr, "AccessKeyId")),
                            json_string_value(json_object_get(cr, "SessionToken")), &who),
                     COFFER_OK);
    assert_string_equal(who.role_arn, "arn:aws:iam::000000000000:role/named");
    assert_int_equal(who.expires_at, NOW_S + 3600);
    assert_int_equal(who.issued_at, NOW_S);
    struct api_caller session = caller_from(&who);
    sigv4_identity_clean(&who);
    json_decref(out);
    assert_int_equal(
        call_op(iam_services_sts_api(f->svc), &session, "GetCallerIdentity", json_object(), NOW_S, &out),
        COFFER_OK);
    assert_string_equal(json_string_value(json_object_get(out, "Arn")),
                        "arn:aws:sts::000000000000:assumed-role/named/sess");
    json_decref(out);

    /* Durations: within 900..MaxSessionDuration. */
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/named", "899", NULL),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/named", "7201", NULL),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/named", "12x", NULL),
                     COFFER_ERR_VALIDATION);
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/named", "7200", NULL), COFFER_OK);

    /* Account trust: the caller's identity policy must allow too. */
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/acct", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "alice", "a", allow_assume), COFFER_OK);
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/acct", NULL, NULL), COFFER_OK);
    /* Not trusted at all, or no such role: denied. */
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/cross", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/none", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    /* An explicit deny in the caller's policies wins even over a trust naming the caller. */
    const char *deny = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"sts:*\","
                       "\"Resource\":\"*\"}]}";
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "alice", "d", deny), COFFER_OK);
    assert_int_equal(assume(f, &alice, "arn:aws:iam::000000000000:role/named", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);

    /* Cross account: both sides, even when the trust names the caller. */
    assert_int_equal(assume(f, &bob, "arn:aws:iam::000000000000:role/cross", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(assume(f, &bob, "arn:aws:iam::000000000000:role/cross-named", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, OTHER, "bob", "a", allow_assume), COFFER_OK);
    assert_int_equal(assume(f, &bob, "arn:aws:iam::000000000000:role/cross", NULL, NULL), COFFER_OK);
    assert_int_equal(assume(f, &bob, "arn:aws:iam::000000000000:role/cross-named", NULL, NULL), COFFER_OK);
    /* The other account's root is trusted by "cross" and holds its account's permissions. */
    struct api_caller other_root = caller_root(OTHER);
    assert_int_equal(assume(f, &other_root, "arn:aws:iam::000000000000:role/cross", NULL, NULL), COFFER_OK);
    assert_int_equal(assume(f, &other_root, "arn:aws:iam::000000000000:role/acct", NULL, NULL),
                     COFFER_ERR_ACCESS_DENIED);
}

/* A token sealed before issue times were recorded opens, with no issue time (the key is absent). */
static void test_session_token_without_issue_time(void **state)
{
    struct fixture *f = *state;
    const char *akid = "ASIAOLDTOKEN23456789";
    const char *plain =
        "{\"account\":\"000000000000\",\"expires\":1795428000,"
        "\"principal_arn\":\"arn:aws:sts::000000000000:assumed-role/R/s\","
        "\"principal_id\":\"AROAEXAMPLE:s\",\"role_arn\":\"arn:aws:iam::000000000000:role/R\","
        "\"secret\":\"old-secret\"}";
    coffer_buf sealed = COFFER_BUF_INIT, token = COFFER_BUF_INIT;
    assert_int_equal(
        seal_record_seal(f->sl, "sts-session/ASIAOLDTOKEN23456789", coffer_cursor_from_str(plain), &sealed),
        COFFER_OK);
    assert_int_equal(coffer_b64_encode(coffer_buf_cursor(&sealed), &token), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&token), COFFER_OK);
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, (const char *)token.data, &who), COFFER_OK);
    assert_int_equal(who.issued_at, 0);
    assert_int_equal(who.expires_at, 1795428000);
    sigv4_identity_clean(&who);
    coffer_buf_free(&sealed);
    coffer_buf_free(&token);
}

/* A session's token is refused once its role is deleted, and stays refused under a namesake. */
static void test_session_ends_with_role(void **state)
{
    struct fixture *f = *state;
    struct iam_identity_source roles = iam_directory_identity_source(f->d);
    iam_creds_set_session_roles(f->creds, &roles);
    make_role(f, ACCT, "brief", "arn:aws:iam::000000000000:root");
    struct api_caller root = caller_root(ACCT);
    json_t *out = NULL;
    assert_int_equal(assume(f, &root, "arn:aws:iam::000000000000:role/brief", NULL, &out), COFFER_OK);
    json_t *cr = json_object_get(out, "Credentials");
    char akid[21], token[IAM_TEST_TOKEN_MAX];
    snprintf(akid, sizeof(akid), "%s", json_string_value(json_object_get(cr, "AccessKeyId")));
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(cr, "SessionToken")));
    json_decref(out);
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, token, &who), COFFER_OK);
    sigv4_identity_clean(&who);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_ROLE, ACCT, "brief"), COFFER_OK);
    assert_int_equal(lookup(f, akid, token, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    make_role(f, ACCT, "brief", "arn:aws:iam::000000000000:root");
    assert_int_equal(lookup(f, akid, token, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
    /* Still refused after a restart: the role's unique id is sealed in the token. */
    close_all(f);
    open_all(f, false);
    roles = iam_directory_identity_source(f->d);
    iam_creds_set_session_roles(f->creds, &roles);
    assert_int_equal(lookup(f, akid, token, &who), COFFER_ERR_UNRECOGNIZED_CLIENT);
}

/* ---- persistence and faults ---- */

static void test_reopen_keeps_everything(void **state)
{
    struct fixture *f = *state;
    json_decref(new_user(f, ACCT, "durable"));
    char akid[21], secret[64];
    new_key(f, ACCT, "durable", akid, secret);
    assert_int_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "durable", "p", ALLOW_KMS), COFFER_OK);
    close_all(f);
    open_all(f, false);
    json_t *u = NULL;
    assert_int_equal(iam_dir_get(f->d, IAM_KIND_USER, ACCT, "durable", &u), COFFER_OK);
    json_decref(u);
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    assert_string_equal((const char *)who.secret.data, secret);
    sigv4_identity_clean(&who);
    struct iam_identity_source src = iam_directory_identity_source(f->d);
    struct iam_policy_list l;
    assert_int_equal(src.policies(src.ctx, "arn:aws:iam::000000000000:user/durable", &l), COFFER_OK);
    assert_int_equal(l.n, 1);
    src.release(src.ctx, &l);
    /* The secret never reaches the database in clear. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "grep -c '%s' %s/coffer.db* >/dev/null 2>&1", secret, f->dir);
    assert_int_not_equal(system(cmd), 0);
}

/* Per-account quotas: counted per account, freed by deletion, rebuilt when the counter is missing. */
static void test_quota_counters(void **state)
{
    struct fixture *f = *state;
    struct iam_limits lim = IAM_LIMITS_DEFAULT;
    lim.iam_users = 2;
    lim.iam_policies = 1;
    iam_directory_set_limits(f->d, &lim);
    json_t *u = NULL;
    json_decref(new_user(f, ACCT, "q1"));
    json_decref(new_user(f, ACCT, "q2"));
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "q3", NULL, NOW_S, &u), COFFER_ERR_LIMIT_EXCEEDED);
    json_decref(new_user(f, OTHER, "q1")); /* another account has its own count */
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, "iam/count/" ACCT "/users"), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "q3", NULL, NOW_S, &u), COFFER_ERR_LIMIT_EXCEEDED);
    assert_int_equal(iam_dir_delete(f->d, IAM_KIND_USER, ACCT, "q1"), COFFER_OK);
    close_all(f);
    open_all(f, false);
    iam_directory_set_limits(f->d, &lim);
    json_decref(new_user(f, ACCT, "q3"));
    assert_int_equal(iam_dir_user_create(f->d, ACCT, "q4", NULL, NOW_S, &u), COFFER_ERR_LIMIT_EXCEEDED);
    assert_int_equal(iam_dir_policy_create(f->d, ACCT, "p1", NULL, ALLOW_KMS, NULL, NOW_S, NULL), COFFER_OK);
    assert_int_equal(iam_dir_policy_create(f->d, ACCT, "p2", NULL, ALLOW_KMS, NULL, NOW_S, NULL),
                     COFFER_ERR_LIMIT_EXCEEDED);
    assert_int_equal(iam_dir_policy_delete(f->d, ACCT, "arn:aws:iam::" ACCT ":policy/p1"), COFFER_OK);
    assert_int_equal(iam_dir_policy_create(f->d, ACCT, "p2", NULL, ALLOW_KMS, NULL, NOW_S, NULL), COFFER_OK);
}

static void test_store_faults(void **state)
{
    struct fixture *f = *state;
    close_all(f);
    open_all(f, true);
    json_decref(new_user(f, ACCT, "faulty"));
    /* Each write failing in turn: the key either exists in full (listed and usable) or not at all. */
    for (int n = 0; n < 8; n++) {
        store_fault_set(f->st, n);
        json_t *k = NULL;
        coffer_err rc = iam_dir_key_create(f->d, ACCT, "faulty", NOW_S, &k);
        bool failed = store_fault_failures(f->st) > 0;
        store_fault_set(f->st, -1);
        json_t *list = NULL;
        assert_int_equal(iam_dir_key_list(f->d, ACCT, "faulty", &list), COFFER_OK);
        if (rc == COFFER_OK) {
            assert_false(failed);
            assert_int_equal(json_array_size(list), 1);
            const char *akid = json_string_value(json_object_get(k, "AccessKeyId"));
            struct sigv4_identity who;
            assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
            sigv4_identity_clean(&who);
            assert_int_equal(iam_dir_key_delete(f->d, ACCT, "faulty", akid), COFFER_OK);
            json_decref(k);
            json_decref(list);
            break;
        }
        assert_null(k);
        assert_int_equal(json_array_size(list), 0);
        json_decref(list);
    }
    /* A failed deletion leaves the key working; a failed policy change leaves the old policies. */
    char akid[21], secret[64];
    new_key(f, ACCT, "faulty", akid, secret);
    store_fault_set(f->st, 0);
    assert_int_not_equal(iam_dir_key_delete(f->d, ACCT, "faulty", akid), COFFER_OK);
    assert_int_not_equal(iam_dir_inline_put(f->d, IAM_KIND_USER, ACCT, "faulty", "p", ALLOW_KMS), COFFER_OK);
    store_fault_set(f->st, -1);
    struct sigv4_identity who;
    assert_int_equal(lookup(f, akid, NULL, &who), COFFER_OK);
    sigv4_identity_clean(&who);
    json_t *names = NULL;
    assert_int_equal(iam_dir_inline_list(f->d, IAM_KIND_USER, ACCT, "faulty", &names), COFFER_OK);
    assert_int_equal(json_array_size(names), 0);
    json_decref(names);
}

static void test_arn_parse(void **state)
{
    (void)state;
    char acct[13], name[IAM_DIR_POLICY_NAME_MAX + 1];
    assert_true(iam_arn_parse("arn:aws:iam::123456789012:role/a/b/R1", "role", acct, name));
    assert_string_equal(acct, "123456789012");
    assert_string_equal(name, "R1");
    assert_false(iam_arn_parse("arn:aws:iam::123456789012:user/x", "role", acct, name));
    assert_false(iam_arn_parse("arn:aws:iam::12345678901:role/x", "role", acct, name));
    assert_false(iam_arn_parse("arn:aws:iam::12345678901a:role/x", "role", acct, name));
    assert_false(iam_arn_parse("arn:aws:iam::123456789012:role/", "role", acct, name));
    assert_false(iam_arn_parse("arn:aws:iam::123456789012:role", "role", acct, name));
    assert_false(iam_arn_parse("arn:aws:kms::123456789012:role/x", "role", acct, name));
    assert_false(iam_arn_parse(NULL, "role", acct, name));
    assert_true(iam_name_valid("a+=,.@-_Z9", 64));
    assert_false(iam_name_valid("a b", 64));
    assert_false(iam_name_valid("a/b", 64));
    assert_false(iam_name_valid("", 64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_source_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_with_given_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_ends_with_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_token_without_issue_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_op_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iam_authorization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assume_role_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_counters, setup, teardown),
        cmocka_unit_test(test_arn_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
