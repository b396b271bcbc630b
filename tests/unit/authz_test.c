/*
 * Unit tests for the authorizer (src/iam/authz.c): same-account direct allow, delegation to IAM
 * through the account root, cross-account needing both sides, explicit denies on either side,
 * grants as a service-side fallback, assumed-role sessions matched through their role, the
 * request context callback and AWS's denial messages; and the entry point as each service uses
 * it (identity-only IAM, a resource policy alone, a trust policy, the global condition keys).
 * A stub identity source maps principal ARNs to compiled policies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "iam/authz.h"

#define ACCT "111122223333"
#define OTHER "444455556666"
#define ALICE "arn:aws:iam::" ACCT ":user/alice"
#define BOB "arn:aws:iam::" ACCT ":user/bob"
#define ROOT "arn:aws:iam::" ACCT ":root"
#define OROOT "arn:aws:iam::" OTHER ":root"
#define CAROL "arn:aws:iam::" OTHER ":user/carol"
#define ROLE "arn:aws:iam::" OTHER ":role/Reader"
#define SESSION "arn:aws:sts::" OTHER ":assumed-role/Reader/s1"
#define KEY "arn:aws:kms:us-east-1:" ACCT ":key/1234abcd-12ab-34cd-56ef-1234567890ab"

#define DOC(stmts) "{'Version':'2012-10-17','Statement':[" stmts "]}"
#define DEFAULT_POLICY                                                                                       \
    DOC("{'Sid':'Enable IAM User Permissions','Effect':'Allow','Principal':{'AWS':'" ROOT                    \
        "'},'Action':'kms:*','Resource':'*'}")
#define ALLOW_ENCRYPT DOC("{'Effect':'Allow','Action':'kms:Encrypt','Resource':'*'}")

/* ---- stub identity source ---- */
#define MAX_ENTRIES 8
struct stub {
    const char *arn[MAX_ENTRIES];
    policy *pol[MAX_ENTRIES];
    size_t n;
    int asked, released;
    const char *last_asked;
};

static coffer_err stub_policies(void *ctx, const char *arn, struct iam_policy_list *out)
{
    struct stub *s = ctx;
    s->asked++;
    s->last_asked = arn;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->arn[i], arn) == 0) {
            out->items = (const policy *const *)&s->pol[i];
            out->n = 1;
            out->handle = s;
        }
    }
    return COFFER_OK;
}

static void stub_release(void *ctx, struct iam_policy_list *list)
{
    struct stub *s = ctx;
    if (list->handle != NULL) {
        s->released++;
    }
}

static policy *compile(const char *text, unsigned flags)
{
    char buf[4096];
    size_t n = strlen(text);
    assert_true(n < sizeof(buf));
    for (size_t i = 0; i <= n; i++) {
        buf[i] = text[i] == '\'' ? '"' : text[i];
    }
    policy *p = NULL;
    assert_int_equal(policy_compile_ex(coffer_cursor_from_str(buf), flags, &p), COFFER_OK);
    return p;
}

static policy *key_policy(const char *text)
{
    return compile(text, POLICY_COMPILE_REQUIRE_PRINCIPAL);
}

static void stub_add(struct stub *s, const char *arn, const char *text)
{
    assert_true(s->n < MAX_ENTRIES);
    s->arn[s->n] = arn;
    s->pol[s->n] = compile(text, POLICY_COMPILE_NO_PRINCIPAL);
    s->n++;
}

static void stub_free(struct stub *s)
{
    for (size_t i = 0; i < s->n; i++) {
        policy_free(s->pol[i]);
    }
}

static struct api_caller caller(const char *acct, const char *arn, enum api_principal_kind kind,
                                const char *role)
{
    struct api_caller c;
    memset(&c, 0, sizeof(c));
    snprintf(c.account_id, sizeof(c.account_id), "%s", acct);
    snprintf(c.principal_arn, sizeof(c.principal_arn), "%s", arn);
    c.principal_kind = kind;
    snprintf(c.role_arn, sizeof(c.role_arn), "%s", role != NULL ? role : "");
    snprintf(c.principal_id, sizeof(c.principal_id), "AIDAEXAMPLE");
    c.source_ip = "127.0.0.1";
    c.secure_transport = true;
    return c;
}

struct fixture {
    struct stub stub;
    struct iam_identity_source src;
    authz *az;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->src =
        (struct iam_identity_source){.ctx = &f->stub, .policies = stub_policies, .release = stub_release};
    assert_int_equal(authz_new(&f->src, &f->az), COFFER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    authz_free(f->az);
    stub_free(&f->stub);
    free(f);
    return 0;
}

static coffer_err run(const authz *az, const struct api_caller *c, const char *action, const policy *kp,
                      bool granted)
{
    struct authz_request r = {.caller = c,
                              .action = action,
                              .resource = KEY,
                              .resource_account = ACCT,
                              .resource_policy = kp,
                              .keys = &(struct authz_key){"kms:CallerAccount", c->account_id},
                              .n_keys = 1};
    struct authz_verdict v;
    coffer_err rc = authz_decide(az, &r, &v);
    if (rc != COFFER_OK) {
        return rc;
    }
    /* A service's own fallback (KMS: a grant) may lift only a refusal that is not explicit. */
    if (!v.allowed && !v.explicit_deny && granted) {
        return COFFER_OK;
    }
    return authz_refusal(&r, &v);
}

/* ------------------------------------------------------------------------------------------ */

static void test_root_and_default_policy(void **state)
{
    struct fixture *f = *state;
    policy *kp = key_policy(DEFAULT_POLICY);
    struct api_caller root = caller(ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
    assert_int_equal(run(f->az, &root, "kms:Encrypt", kp, false), COFFER_OK);
    assert_int_equal(f->stub.asked, 0); /* roots are never looked up */
    /* Without a key policy statement for the account even the root is refused. */
    policy *other =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ALICE "'},'Action':'*','Resource':'*'}"));
    assert_int_equal(run(f->az, &root, "kms:Encrypt", other, false), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(),
                        "User: " ROOT " is not authorized to perform: kms:Encrypt on resource: " KEY
                        " because no resource-based policy allows the kms:Encrypt action");
    /* No resource policy (CreateKey, ListKeys): the root of the account may. */
    struct authz_request r = {.caller = &root, .action = "kms:CreateKey", .resource = "*"};
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    policy_free(kp);
    policy_free(other);
}

static void test_delegation_to_iam(void **state)
{
    struct fixture *f = *state;
    policy *kp = key_policy(DEFAULT_POLICY);
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    struct api_caller bob = caller(ACCT, BOB, API_PRINCIPAL_USER, NULL);
    stub_add(&f->stub, ALICE, ALLOW_ENCRYPT);
    assert_int_equal(run(f->az, &alice, "kms:Encrypt", kp, false), COFFER_OK);
    assert_int_equal(f->stub.released, 1);
    assert_int_equal(run(f->az, &alice, "kms:Decrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(),
                        "User: " ALICE " is not authorized to perform: kms:Decrypt on resource: " KEY
                        " because no identity-based policy allows the kms:Decrypt action");
    assert_int_equal(run(f->az, &bob, "kms:Encrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    /* No identity source at all: only roots have identity permissions. */
    authz *bare = NULL;
    assert_int_equal(authz_new(NULL, &bare), COFFER_OK);
    assert_int_equal(run(bare, &alice, "kms:Encrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    struct api_caller root = caller(ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
    assert_int_equal(run(bare, &root, "kms:Encrypt", kp, false), COFFER_OK);
    authz_free(bare);
    policy_free(kp);
}

static void test_direct_key_policy(void **state)
{
    struct fixture *f = *state;
    /* The key policy names alice: no IAM policy needed; bob is only covered by nothing. */
    policy *kp = key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ALICE "'},'Action':['kms:Encrypt',"
                                "'kms:Decrypt'],'Resource':'*'}"));
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    struct api_caller bob = caller(ACCT, BOB, API_PRINCIPAL_USER, NULL);
    assert_int_equal(run(f->az, &alice, "kms:Encrypt", kp, false), COFFER_OK);
    assert_int_equal(run(f->az, &alice, "kms:PutKeyPolicy", kp, false), COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(run(f->az, &bob, "kms:Encrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(), "because no resource-based policy allows"));
    /* Principal "*" names everyone directly. */
    policy *star =
        key_policy(DOC("{'Effect':'Allow','Principal':'*','Action':'kms:Encrypt','Resource':'*'}"));
    assert_int_equal(run(f->az, &bob, "kms:Encrypt", star, false), COFFER_OK);
    /* The account given as a bare id delegates, like the root ARN. */
    policy *acct =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ACCT "'},'Action':'*','Resource':'*'}"));
    assert_int_equal(run(f->az, &bob, "kms:Encrypt", acct, false), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(), "because no identity-based policy allows"));
    policy_free(kp);
    policy_free(star);
    policy_free(acct);
}

static void test_explicit_deny(void **state)
{
    struct fixture *f = *state;
    policy *kp = key_policy(
        DOC("{'Effect':'Allow','Principal':{'AWS':'" ROOT "'},'Action':'kms:*','Resource':'*'},"
            "{'Effect':'Deny','Principal':{'AWS':'" ROOT "'},'Action':'kms:Encrypt','Resource':'*'}"));
    struct api_caller root = caller(ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
    assert_int_equal(run(f->az, &root, "kms:Encrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(),
                        "User: " ROOT " is not authorized to perform: kms:Encrypt on resource: " KEY
                        " with an explicit deny in a resource-based policy");
    assert_int_equal(run(f->az, &root, "kms:Decrypt", kp, false), COFFER_OK);
    /* A deny wins over a grant too. */
    assert_int_equal(run(f->az, &root, "kms:Encrypt", kp, true), COFFER_ERR_ACCESS_DENIED);

    /* Identity-side deny beats a direct key policy allow. */
    policy *direct =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ALICE "'},'Action':'*','Resource':'*'}"));
    stub_add(&f->stub, ALICE,
             DOC("{'Effect':'Allow','Action':'*','Resource':'*'},{'Effect':'Deny','Action':'kms:Decrypt','"
                 "Resource':'*'}"));
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    assert_int_equal(run(f->az, &alice, "kms:Encrypt", direct, false), COFFER_OK);
    assert_int_equal(run(f->az, &alice, "kms:Decrypt", direct, false), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(),
                        "User: " ALICE " is not authorized to perform: kms:Decrypt on resource: " KEY
                        " with an explicit deny in an identity-based policy");
    policy_free(kp);
    policy_free(direct);
}

static void test_cross_account(void **state)
{
    struct fixture *f = *state;
    policy *own = key_policy(DEFAULT_POLICY);
    policy *shared =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ROOT "'},'Action':'kms:*','Resource':'*'},"
                       "{'Effect':'Allow','Principal':{'AWS':'" OROOT "'},'Action':'kms:Decrypt',"
                       "'Resource':'*'}"));
    struct api_caller carol = caller(OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    struct api_caller oroot = caller(OTHER, OROOT, API_PRINCIPAL_ROOT, NULL);
    /* Key policy does not name account B. */
    assert_int_equal(run(f->az, &oroot, "kms:Decrypt", own, false), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(), "because no resource-based policy allows"));
    /* B's root: the key policy suffices (the root has every identity permission). */
    assert_int_equal(run(f->az, &oroot, "kms:Decrypt", shared, false), COFFER_OK);
    /* B's user: key policy alone is not enough. */
    assert_int_equal(run(f->az, &carol, "kms:Decrypt", shared, false), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(), "because no identity-based policy allows"));
    stub_add(&f->stub, CAROL, DOC("{'Effect':'Allow','Action':'kms:Decrypt','Resource':'" KEY "'}"));
    assert_int_equal(run(f->az, &carol, "kms:Decrypt", shared, false), COFFER_OK);
    assert_int_equal(run(f->az, &carol, "kms:Encrypt", shared, false), COFFER_ERR_ACCESS_DENIED);
    /* Even a key policy naming carol directly needs carol's own IAM allow across accounts. */
    policy *named = key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" CAROL "'},'Action':'kms:Encrypt',"
                                   "'Resource':'*'}"));
    assert_int_equal(run(f->az, &carol, "kms:Encrypt", named, false), COFFER_ERR_ACCESS_DENIED);
    policy_free(own);
    policy_free(shared);
    policy_free(named);
}

static void test_assumed_role(void **state)
{
    struct fixture *f = *state;
    policy *kp =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ROLE "'},'Action':'kms:Decrypt',"
                       "'Resource':'*','Condition':{'StringEquals':{'kms:CallerAccount':'" OTHER "'}}}"));
    struct api_caller s = caller(OTHER, SESSION, API_PRINCIPAL_ASSUMED_ROLE, ROLE);
    /* Role without policies: denied on the identity side. */
    assert_int_equal(run(f->az, &s, "kms:Decrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(f->stub.last_asked, ROLE); /* the role, not the session, is looked up */
    assert_non_null(strstr(coffer_last_message(), "User: " SESSION " is not authorized"));
    stub_add(&f->stub, ROLE, DOC("{'Effect':'Allow','Action':'kms:*','Resource':'*'}"));
    assert_int_equal(run(f->az, &s, "kms:Decrypt", kp, false), COFFER_OK);
    assert_int_equal(run(f->az, &s, "kms:CreateGrant", kp, false), COFFER_ERR_ACCESS_DENIED);
    /* The CallerAccount condition is evaluated: a session of another account does not match. */
    policy *kp2 =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ROLE "'},'Action':'kms:Decrypt',"
                       "'Resource':'*','Condition':{'StringEquals':{'kms:CallerAccount':'" ACCT "'}}}"));
    assert_int_equal(run(f->az, &s, "kms:Decrypt", kp2, false), COFFER_ERR_ACCESS_DENIED);
    policy_free(kp);
    policy_free(kp2);
}

static void test_grants(void **state)
{
    struct fixture *f = *state;
    policy *kp = key_policy(DEFAULT_POLICY);
    struct api_caller bob = caller(ACCT, BOB, API_PRINCIPAL_USER, NULL);
    struct api_caller carol = caller(OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    assert_int_equal(run(f->az, &bob, "kms:Decrypt", kp, false), COFFER_ERR_ACCESS_DENIED);
    assert_int_equal(run(f->az, &bob, "kms:Decrypt", kp, true), COFFER_OK);
    assert_int_equal(run(f->az, &carol, "kms:Decrypt", kp, true), COFFER_OK); /* grants cross accounts */
    stub_add(&f->stub, CAROL, DOC("{'Effect':'Deny','Action':'kms:*','Resource':'*'}"));
    assert_int_equal(run(f->az, &carol, "kms:Decrypt", kp, true), COFFER_ERR_ACCESS_DENIED);
    policy_free(kp);
}

struct ctx_arg {
    int calls;
    const char *dept;
};

static coffer_err add_ec(void *arg, unsigned want, policy_ctx *ctx)
{
    struct ctx_arg *a = arg;
    assert_true(want & AUTHZ_CTX_ENCRYPTION_CONTEXT);
    a->calls++;
    return policy_ctx_set_str(ctx, "kms:EncryptionContext:Department", a->dept);
}

static void test_context(void **state)
{
    struct fixture *f = *state;
    struct api_caller root = caller(ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
    policy *plain = key_policy(DEFAULT_POLICY);
    policy *cond =
        key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':'" ROOT "'},'Action':'kms:*','Resource':'*',"
                       "'Condition':{'StringEquals':{'kms:EncryptionContext:Department':'IT'},"
                       "'IpAddress':{'aws:SourceIp':'127.0.0.0/8'},'Bool':{'aws:SecureTransport':'true'}}}"));
    struct ctx_arg arg = {.dept = "IT"};
    struct authz_request r = {.caller = &root,
                              .action = "kms:Encrypt",
                              .resource = KEY,
                              .resource_account = ACCT,
                              .resource_policy = plain,
                              .add_ctx = add_ec,
                              .add_ctx_arg = &arg};
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    assert_int_equal(arg.calls, 0); /* no conditions: no context built */
    assert_false(authz_policy_needs_ctx(plain));
    assert_true(authz_policy_needs_ctx(cond));
    r.resource_policy = cond;
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    assert_int_equal(arg.calls, 1);
    arg.dept = "HR";
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    arg.dept = "IT";
    root.source_ip = "10.1.2.3";
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    root.source_ip = "127.0.0.1";
    root.secure_transport = false;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    root.secure_transport = true;
    root.source_ip = "not an address"; /* absent, not a failure: the IpAddress condition fails */
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_true(authz_policy_allows(f->az, &(struct authz_request){.caller = &root,
                                                                   .action = "kms:PutKeyPolicy",
                                                                   .resource = KEY,
                                                                   .resource_policy = plain}));
    assert_false(authz_policy_allows(
        f->az, &(struct authz_request){
                   .caller = &root, .action = "kms:PutKeyPolicy", .resource = KEY, .resource_policy = cond}));
    /* Principal keys and aws:username for a user. */
    policy *who =
        key_policy(DOC("{'Effect':'Allow','Principal':'*','Action':'kms:*','Resource':'*',"
                       "'Condition':{'StringEquals':{'aws:username':'alice','aws:PrincipalType':'User',"
                       "'aws:PrincipalAccount':'" ACCT "'}}}"));
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    struct api_caller bob = caller(ACCT, BOB, API_PRINCIPAL_USER, NULL);
    r = (struct authz_request){
        .caller = &alice, .action = "kms:Encrypt", .resource = KEY, .resource_policy = who};
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    r.caller = &bob;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(api_principal_policy_type(root.principal_kind), "Account");
    assert_string_equal(api_principal_policy_type(alice.principal_kind), "User");
    policy_free(plain);
    policy_free(cond);
    policy_free(who);
}

/* ---- the entry point every service uses: authz_request_for, authz_decide, authz_check ---- */

#define USER_ARN(acct, name) "arn:aws:iam::" acct ":user/" name
#define ROLE_ARN_ACCT "arn:aws:iam::" ACCT ":role/Deploy"
#define SECRET "arn:aws:secretsmanager:us-east-1:" ACCT ":secret:db-AbCdEf"

static struct api_call call_of(const struct api_caller *c)
{
    return (struct api_call){.caller = c,
                             .region = "us-east-1",
                             .operation = "CreateUser",
                             .now_ms = 1795424400000}; /* 2026-11-23T09:00:00Z */
}

/* An identity-only service (IAM): action and resource ARN, no resource policy. */
static void test_identity_only_service(void **state)
{
    struct fixture *f = *state;
    struct api_caller root = caller(ACCT, ROOT, API_PRINCIPAL_ROOT, NULL);
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    struct api_caller bob = caller(ACCT, BOB, API_PRINCIPAL_USER, NULL);
    struct api_call rc = call_of(&root), ac = call_of(&alice), bc = call_of(&bob);
    const char *target = USER_ARN(ACCT, "carol");

    /* The account root may do anything in its own account, without asking the directory. */
    struct authz_request r = authz_request_for(&rc, "iam:CreateUser", target);
    assert_string_equal(r.resource_account, ACCT);
    assert_null(r.resource_policy);
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    assert_int_equal(f->stub.asked, 0);

    /* A user without any policy is refused, in AWS's words. */
    r = authz_request_for(&bc, "iam:CreateUser", target);
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(),
                        "User: " BOB " is not authorized to perform: iam:CreateUser on "
                        "resource: " USER_ARN(ACCT, "carol") " because no identity-based "
                                                             "policy allows the iam:CreateUser action");
    struct authz_verdict v;
    assert_int_equal(authz_decide(f->az, &r, &v), COFFER_OK);
    assert_false(v.allowed);
    assert_false(v.explicit_deny);
    assert_int_equal(v.why, AUTHZ_DENY_NO_IDENTITY_ALLOW);

    /* An explicit Deny beats an Allow, and says so; no service fallback may lift it. */
    stub_add(&f->stub, ALICE,
             DOC("{'Effect':'Allow','Action':'iam:*','Resource':'*'},"
                 "{'Effect':'Deny','Action':'iam:CreateUser','Resource':'" USER_ARN(ACCT, "carol") "'}"));
    r = authz_request_for(&ac, "iam:GetUser", target);
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    r = authz_request_for(&ac, "iam:CreateUser", USER_ARN(ACCT, "dave"));
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    r = authz_request_for(&ac, "iam:CreateUser", target);
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_string_equal(coffer_last_message(),
                        "User: " ALICE " is not authorized to perform: iam:CreateUser on "
                        "resource: " USER_ARN(ACCT, "carol") " with an explicit deny in an "
                                                             "identity-based policy");
    assert_int_equal(authz_decide(f->az, &r, &v), COFFER_OK);
    assert_false(v.allowed);
    assert_true(v.explicit_deny);
    assert_int_equal(v.why, AUTHZ_DENY_IDENTITY_EXPLICIT);
    assert_int_equal(authz_refusal(&r, &v), COFFER_ERR_ACCESS_DENIED);

    /* Another account's resource without a resource policy: not even the root, not even "*". */
    r = authz_request_for(&rc, "iam:GetUser", USER_ARN(OTHER, "erin"));
    r.resource_account = OTHER;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(
        strstr(coffer_last_message(), "because no resource-based policy allows the iam:GetUser action"));
    r.caller = &alice;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
}

/* A resource policy on its own (a secret's, a key's) for a caller of the resource's account. */
static void test_resource_policy_alone(void **state)
{
    struct fixture *f = *state;
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    struct api_caller bob = caller(ACCT, BOB, API_PRINCIPAL_USER, NULL);
    struct api_caller carol = caller(OTHER, CAROL, API_PRINCIPAL_USER, NULL);
    struct api_call ac = call_of(&alice), bc = call_of(&bob), cc = call_of(&carol);
    policy *names_alice = key_policy(DOC("{'Effect':'Allow','Principal':{'AWS':['" ALICE "','" CAROL "']},"
                                         "'Action':'secretsmanager:GetSecretValue','Resource':'*'}"));
    struct authz_request r = authz_request_for(&ac, "secretsmanager:GetSecretValue", SECRET);
    r.resource_policy = names_alice;
    /* Named directly, same account, no identity policy at all: allowed. */
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    r.action = "secretsmanager:PutSecretValue";
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(), "because no resource-based policy allows"));
    /* Not named: refused on the resource side. */
    r = authz_request_for(&bc, "secretsmanager:GetSecretValue", SECRET);
    r.resource_policy = names_alice;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    /* Named, but from another account: its own identity policies must allow too. */
    r = authz_request_for(&cc, "secretsmanager:GetSecretValue", SECRET);
    r.resource_account = ACCT;
    r.resource_policy = names_alice;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    assert_non_null(strstr(coffer_last_message(), "because no identity-based policy allows"));

    /* A trust policy (AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT): naming alice is enough for alice ... */
    policy *trust_alice = compile(DOC("{'Effect':'Allow','Principal':{'AWS':'" ALICE "'},"
                                      "'Action':'sts:AssumeRole'}"),
                                  POLICY_COMPILE_RESOURCE_OPTIONAL | POLICY_COMPILE_REQUIRE_PRINCIPAL);
    policy *trust_star = compile(DOC("{'Effect':'Allow','Principal':{'AWS':'*'},'Action':'sts:AssumeRole'}"),
                                 POLICY_COMPILE_RESOURCE_OPTIONAL | POLICY_COMPILE_REQUIRE_PRINCIPAL);
    r = authz_request_for(&ac, "sts:AssumeRole", ROLE_ARN_ACCT);
    r.resource_policy = trust_alice;
    r.same_account = AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT;
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    /* ... but trusting everyone ("*") trusts the account: alice's identity policies must allow,
     * where a key policy with "*" allows on its own. */
    r.resource_policy = trust_star;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    r.same_account = AUTHZ_SAME_ACCOUNT_NAMED;
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    stub_add(&f->stub, ALICE,
             DOC("{'Effect':'Allow','Action':'sts:AssumeRole','Resource':'" ROLE_ARN_ACCT "'}"));
    r.same_account = AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT;
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    policy_free(names_alice);
    policy_free(trust_alice);
    policy_free(trust_star);
}

struct seen {
    int calls;
    unsigned wanted;
};

static coffer_err note_wanted(void *arg, unsigned wanted, policy_ctx *ctx)
{
    (void)ctx;
    struct seen *s = arg;
    s->calls++;
    s->wanted |= wanted;
    return COFFER_OK;
}

/* The global condition keys are the authorizer's, for every service; the service adds its own. */
static void test_global_keys_reach_conditions(void **state)
{
    struct fixture *f = *state;
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    struct api_caller sess = caller(ACCT, "arn:aws:sts::" ACCT ":assumed-role/Deploy/s1",
                                    API_PRINCIPAL_ASSUMED_ROLE, ROLE_ARN_ACCT);
    alice.user_agent = "aws-cli/2.15 Python/3.11";
    sess.user_agent = "aws-cli/2.15 Python/3.11";
    sess.token_issued_at = 1795420800; /* 2026-11-23T08:00:00Z */
    stub_add(&f->stub, ALICE,
             DOC("{'Effect':'Allow','Action':'ssm:GetParameter','Resource':'*','Condition':{"
                 "'StringEquals':{'aws:RequestedRegion':'us-east-1','aws:PrincipalType':'User',"
                 "'aws:username':'alice','aws:PrincipalAccount':'" ACCT "','ssm:Overwrite':'false'},"
                 "'StringLike':{'aws:UserAgent':'aws-cli/*'},"
                 "'IpAddress':{'aws:SourceIp':'127.0.0.0/8'},'Bool':{'aws:SecureTransport':'true'},"
                 "'DateGreaterThan':{'aws:CurrentTime':'2026-11-01T00:00:00Z'},"
                 "'Null':{'kms:CallerAccount':'true','aws:TokenIssueTime':'true'}}}"));
    stub_add(&f->stub, ROLE_ARN_ACCT,
             DOC("{'Effect':'Allow','Action':'ssm:GetParameter','Resource':'*','Condition':{"
                 "'StringEquals':{'aws:PrincipalType':'AssumedRole'},"
                 "'Bool':{'aws:MultiFactorAuthPresent':'false'},"
                 "'DateGreaterThan':{'aws:TokenIssueTime':'2026-11-23T07:00:00Z'}}}"));
    struct api_call call = call_of(&alice);
    struct authz_key keys[] = {{"ssm:Overwrite", "false"}};
    struct seen seen = {0};
    struct authz_request r =
        authz_request_for(&call, "ssm:GetParameter", "arn:aws:ssm:us-east-1:" ACCT ":parameter/db/password");
    r.keys = keys;
    r.n_keys = 1;
    r.add_ctx = note_wanted;
    r.add_ctx_arg = &seen;
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    assert_int_equal(seen.calls, 1);
    assert_true(seen.wanted & AUTHZ_CTX_SOURCE_IP);
    assert_true(seen.wanted & AUTHZ_CTX_REQUEST);
    /* Each key is read from the request: change one, and the Allow no longer applies. */
    r.region = "eu-west-1";
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    r.region = "us-east-1";
    alice.user_agent = "Boto3/1.34";
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    alice.user_agent = "aws-cli/2.15";
    alice.source_ip = "192.0.2.1";
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    alice.source_ip = "127.0.0.1";
    alice.secure_transport = false;
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    alice.secure_transport = true;
    r.now_ms = 1761955200000; /* 2025-11-01: before the date */
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    r.now_ms = call.now_ms;
    keys[0].value = "true"; /* the service's own key */
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    keys[0].value = "false";
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);

    /* A session: aws:TokenIssueTime and aws:MultiFactorAuthPresent are set, by the same code. */
    struct api_call scall = call_of(&sess);
    r = authz_request_for(&scall, "ssm:GetParameter", "*");
    assert_int_equal(authz_check(f->az, &r), COFFER_OK);
    sess.token_issued_at = 1795417200 - 3600; /* 06:00: older than the policy accepts */
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
    sess.token_issued_at = 0; /* unknown: absent, so DateGreaterThan does not hold */
    assert_int_equal(authz_check(f->az, &r), COFFER_ERR_ACCESS_DENIED);
}

static coffer_err failing_source(void *ctx, const char *arn, struct iam_policy_list *out)
{
    (void)ctx;
    (void)arn;
    (void)out;
    return coffer_fail(COFFER_ERR_STORE, "directory unavailable");
}

static void test_misuse(void **state)
{
    (void)state;
    authz *az = NULL;
    assert_int_equal(authz_new(NULL, NULL), COFFER_ERR_USAGE);
    struct iam_identity_source bad = {0};
    assert_int_equal(authz_new(&bad, &az), COFFER_ERR_USAGE);
    assert_null(az);
    struct iam_identity_source failing = {.policies = failing_source};
    assert_int_equal(authz_new(&failing, &az), COFFER_OK);
    struct api_caller alice = caller(ACCT, ALICE, API_PRINCIPAL_USER, NULL);
    policy *kp = key_policy(DEFAULT_POLICY);
    /* A failing directory fails the request; it never allows. */
    assert_int_equal(run(az, &alice, "kms:Encrypt", kp, false), COFFER_ERR_STORE);
    assert_int_equal(authz_check(az, NULL), COFFER_ERR_USAGE);
    assert_int_equal(authz_check(az, &(struct authz_request){.caller = &alice}), COFFER_ERR_USAGE);
    authz_free(az);
    authz_free(NULL);
    policy_free(kp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_root_and_default_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delegation_to_iam, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_key_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_account, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assumed_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_only_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resource_policy_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_global_keys_reach_conditions, setup, teardown),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
