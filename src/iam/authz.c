/*
 * The authorizer (see authz.h): combines the resource policy, the caller's identity policies
 * and grants into one decision with AWS's denial messages. Evaluation itself is
 * policy_evaluate on compiled policies; this file only decides which policies apply, builds
 * the request context when one of them needs it, and words the refusal.
 */
#include "iam/authz.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "iam/policy_internal.h"

struct authz {
    struct iam_identity_source src; /* copy of the borrowed source's vtable and ctx */
    bool has_src;
};

coffer_err authz_new(const struct iam_identity_source *src, authz **out)
{
    ENSURE_REF(out);
    *out = NULL;
    ENSURE(src == NULL || src->policies != NULL, COFFER_ERR_USAGE);
    authz *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    if (src != NULL) {
        a->src = *src;
        a->has_src = true;
    }
    *out = a;
    return COFFER_OK;
}

void authz_free(authz *a)
{
    free(a);
}

/* Compiled condition keys are lower-cased. */
static unsigned key_family(const char *k)
{
    static const struct {
        const char *name;
        bool prefix;
        unsigned bit;
    } map[] = {
        {"aws:sourceip", false, AUTHZ_CTX_SOURCE_IP},
        {"aws:securetransport", false, AUTHZ_CTX_TRANSPORT},
        {"aws:currenttime", false, AUTHZ_CTX_TIME},
        {"aws:epochtime", false, AUTHZ_CTX_TIME},
        {"aws:tokenissuetime", false, AUTHZ_CTX_TIME},
        {"aws:principalarn", false, AUTHZ_CTX_PRINCIPAL},
        {"aws:principalaccount", false, AUTHZ_CTX_PRINCIPAL},
        {"aws:principaltype", false, AUTHZ_CTX_PRINCIPAL},
        {"aws:username", false, AUTHZ_CTX_PRINCIPAL},
        {"aws:userid", false, AUTHZ_CTX_PRINCIPAL},
        {"kms:calleraccount", false, AUTHZ_CTX_CALLER_ACCOUNT},
        {"kms:encryptioncontext:", true, AUTHZ_CTX_ENCRYPTION_CONTEXT},
        {"kms:encryptioncontextkeys", false, AUTHZ_CTX_ENCRYPTION_CONTEXT},
        {"aws:resourcetag/", true, AUTHZ_CTX_RESOURCE_TAGS},
        {"aws:requesttag/", true, AUTHZ_CTX_REQUEST_TAGS},
        {"aws:tagkeys", false, AUTHZ_CTX_REQUEST_TAGS},
        {"kms:resourcealiases", false, AUTHZ_CTX_RESOURCE_ALIASES},
        {"aws:requestedregion", false, AUTHZ_CTX_REQUEST},
        {"aws:useragent", false, AUTHZ_CTX_REQUEST},
        {"aws:multifactorauthpresent", false, AUTHZ_CTX_REQUEST},
        {"aws:viaawsservice", false, AUTHZ_CTX_REQUEST},
        {"aws:principalisawsservice", false, AUTHZ_CTX_REQUEST},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        size_t n = strlen(map[i].name);
        if (map[i].prefix ? strncmp(k, map[i].name, n) == 0 : strcmp(k, map[i].name) == 0) {
            return map[i].bit;
        }
    }
    return AUTHZ_CTX_OTHER;
}

static unsigned policy_ctx_families(const policy *p)
{
    unsigned bits = 0;
    for (size_t i = 0; i < p->n_stmts; i++) {
        const struct statement *st = &p->stmts[i];
        for (size_t j = 0; j < st->n_resources; j++) {
            if (st->resources[j].has_var) {
                return AUTHZ_CTX_ALL; /* ${...} may name any key */
            }
        }
        for (size_t j = 0; j < st->n_conds; j++) {
            const struct policy_cond *c = &st->conds[j];
            bits |= key_family(c->key);
            for (size_t v = 0; v < c->n_values; v++) {
                if (c->values[v].has_var) {
                    return AUTHZ_CTX_ALL;
                }
            }
        }
    }
    return bits;
}

/* Called per request for every applicable policy: the walk over its conditions is done once. */
unsigned authz_policy_ctx_keys(const policy *p)
{
    if (p == NULL) {
        return 0;
    }
    policy *mp = (policy *)p; /* only the summary cache is written */
    unsigned cached = atomic_load_explicit(&mp->summary, memory_order_relaxed);
    if (cached & POLICY_SUMMARY_SET) {
        return cached & ~POLICY_SUMMARY_SET;
    }
    unsigned bits = policy_ctx_families(p);
    atomic_store_explicit(&mp->summary, bits | POLICY_SUMMARY_SET, memory_order_relaxed);
    return bits;
}

bool authz_policy_needs_ctx(const policy *p)
{
    return authz_policy_ctx_keys(p) != 0;
}

static bool is_root(const struct api_caller *c)
{
    return c->principal_kind == API_PRINCIPAL_ROOT;
}

/* ------------------------------------------------------------------------------------------ */
/* Request context                                                                            */
/* ------------------------------------------------------------------------------------------ */

/*
 * The global condition keys AWS sets on every request, for every service: the one place they
 * are filled. Keys this server has nothing to fill with stay absent and evaluate as AWS does
 * for an absent key (see cond_holds_view): aws:PrincipalTag/<k> (IAM principals carry no tags),
 * aws:TokenIssueTime for long-term keys (AWS sets it only for temporary credentials) and for
 * session tokens sealed before the issue time was, aws:MultiFactorAuthAge, aws:SourceVpc(e),
 * aws:VpcSourceIp, aws:SourceArn/Account, aws:CalledVia*, aws:PrincipalOrg*,
 * aws:PrincipalServiceName*.
 */
static coffer_err add_global_keys(policy_ctx *ctx, const struct authz_request *req, unsigned want)
{
    const struct api_caller *c = req->caller;
    int64_t now_ms = req->now_ms != 0 ? req->now_ms : coffer_now_ms();
    if ((want & AUTHZ_CTX_SOURCE_IP) && c->source_ip != NULL && c->source_ip[0] != '\0') {
        coffer_err rc = policy_ctx_set_ip(ctx, "aws:SourceIp", c->source_ip);
        if (rc != COFFER_OK && rc != COFFER_ERR_USAGE) { /* an unparsable address is simply absent */
            return rc;
        }
    }
    if (want & AUTHZ_CTX_TRANSPORT) {
        TRY(policy_ctx_set_bool(ctx, "aws:SecureTransport", c->secure_transport));
    }
    if (want & AUTHZ_CTX_TIME) {
        TRY(policy_ctx_set_time(ctx, "aws:CurrentTime", now_ms / 1000));
        TRY(policy_ctx_set_number(ctx, "aws:EpochTime", now_ms / 1000));
        /* When the session token was issued, ISO 8601 as AWS gives it: "revoke older sessions". */
        if (c->token_issued_at > 0) {
            TRY(policy_ctx_set_time(ctx, "aws:TokenIssueTime", c->token_issued_at));
        }
    }
    /* Set even when no condition reads them: the same-account direct-grant pass in decide()
     * clears principal_account, and the evaluator falls back to the request fields. */
    TRY(policy_ctx_set_str(ctx, "aws:PrincipalAccount", c->account_id));
    if (want & AUTHZ_CTX_PRINCIPAL) {
        TRY(policy_ctx_set_str(ctx, "aws:PrincipalArn", c->principal_arn));
        const char *type = api_principal_policy_type(c->principal_kind);
        if (type != NULL) {
            TRY(policy_ctx_set_str(ctx, "aws:PrincipalType", type));
        }
        if (c->principal_id[0] != '\0') {
            TRY(policy_ctx_set_str(ctx, "aws:userid", c->principal_id));
        } else if (is_root(c)) {
            TRY(policy_ctx_set_str(ctx, "aws:userid", c->account_id));
        }
        if (c->principal_kind == API_PRINCIPAL_USER) {
            const char *slash = strrchr(c->principal_arn, '/');
            TRY(policy_ctx_set_str(ctx, "aws:username", slash != NULL ? slash + 1 : c->principal_arn));
        }
    }
    if (want & AUTHZ_CTX_REQUEST) {
        if (req->region != NULL && req->region[0] != '\0') {
            TRY(policy_ctx_set_str(ctx, "aws:RequestedRegion", req->region));
        }
        /* The header may be as long as the listener allows; policies see its first bytes only,
         * so matching stays within the same bound as any other request value. A client chooses
         * its User-Agent freely, so this moves no guardrail an attacker could not move anyway. */
        char ua[AUTHZ_USER_AGENT_MAX + 1];
        snprintf(ua, sizeof(ua), "%s", c->user_agent != NULL ? c->user_agent : "");
        TRY(policy_ctx_set_str(ctx, "aws:UserAgent", ua));
        /* No caller here is a service acting for a principal, nor a service principal itself. */
        TRY(policy_ctx_set_bool(ctx, "aws:ViaAWSService", false));
        TRY(policy_ctx_set_bool(ctx, "aws:PrincipalIsAWSService", false));
        /* AWS: present (false without MFA) for temporary credentials, absent for long-term keys. */
        if (c->principal_kind == API_PRINCIPAL_ASSUMED_ROLE) {
            TRY(policy_ctx_set_bool(ctx, "aws:MultiFactorAuthPresent", false));
        }
    }
    return COFFER_OK;
}

/*
 * The request context is rebuilt for every request that needs one, into a context kept per
 * thread (policy_ctx_clear keeps its buffers), so a warm worker builds it without allocating.
 * The key's destructor frees it when the thread ends.
 */
static pthread_key_t ctx_key;
static pthread_once_t ctx_key_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;

static void ctx_key_destroy(void *p)
{
    policy_ctx_free(p);
}

static void ctx_key_init(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_key_destroy) == 0;
}

/* The calling thread's context, emptied; NULL with an error when it cannot be had. */
static coffer_err thread_ctx(policy_ctx **out)
{
    pthread_once(&ctx_key_once, ctx_key_init);
    if (!ctx_key_ok) {
        return coffer_fail(COFFER_ERR_INTERNAL, "no thread-local storage for the request context");
    }
    policy_ctx *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        TRY(policy_ctx_new(&ctx));
        if (pthread_setspecific(ctx_key, ctx) != 0) {
            policy_ctx_free(ctx);
            return coffer_fail(COFFER_ERR_INTERNAL, "no thread-local storage for the request context");
        }
    }
    policy_ctx_clear(ctx);
    *out = ctx;
    return COFFER_OK;
}

static coffer_err build_ctx(const struct authz_request *req, unsigned want, policy_ctx **out)
{
    policy_ctx *ctx = NULL;
    TRY(thread_ctx(&ctx));
    TRY(add_global_keys(ctx, req, want));
    for (size_t i = 0; i < req->n_keys; i++) {
        TRY(policy_ctx_add(ctx, req->keys[i].name, req->keys[i].value));
    }
    if (req->add_ctx != NULL) {
        TRY(req->add_ctx(req->add_ctx_arg, want, ctx));
    }
    *out = ctx;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Decision                                                                                   */
/* ------------------------------------------------------------------------------------------ */

struct authz_request authz_request_for(const struct api_call *call, const char *action, const char *resource)
{
    return (struct authz_request){
        .caller = call->caller,
        .region = call->region,
        .action = action,
        .resource = resource,
        .resource_account = call->caller->account_id,
        .now_ms = call->now_ms,
    };
}

coffer_err authz_refusal(const struct authz_request *req, const struct authz_verdict *v)
{
    static const char *const tail[] = {
        [AUTHZ_DENY_RESOURCE_EXPLICIT] = "with an explicit deny in a resource-based policy",
        [AUTHZ_DENY_IDENTITY_EXPLICIT] = "with an explicit deny in an identity-based policy",
        [AUTHZ_DENY_NO_RESOURCE_ALLOW] = "because no resource-based policy allows the",
        [AUTHZ_DENY_NO_IDENTITY_ALLOW] = "because no identity-based policy allows the",
        [AUTHZ_DENY_TOO_COSTLY] =
            "because the policies that apply cost too much to evaluate for this request",
    };
    ENSURE(req != NULL && req->caller != NULL && req->action != NULL && v != NULL, COFFER_ERR_USAGE);
    if (v->allowed) {
        return COFFER_OK;
    }
    enum authz_denial why = v->why;
    assert((size_t)why < sizeof(tail) / sizeof(tail[0]));
    const char *resource = req->resource != NULL ? req->resource : "*";
    if (why == AUTHZ_DENY_RESOURCE_EXPLICIT || why == AUTHZ_DENY_IDENTITY_EXPLICIT ||
        why == AUTHZ_DENY_TOO_COSTLY) {
        return coffer_fail(COFFER_ERR_ACCESS_DENIED,
                           "User: %s is not authorized to perform: %s on resource: %s %s",
                           req->caller->principal_arn, req->action, resource, tail[why]);
    }
    return coffer_fail(COFFER_ERR_ACCESS_DENIED,
                       "User: %s is not authorized to perform: %s on resource: %s %s %s action",
                       req->caller->principal_arn, req->action, resource, tail[why], req->action);
}

static struct authz_verdict allow(void)
{
    return (struct authz_verdict){.allowed = true};
}

/* A refusal by an explicit Deny: one that ran out of budget may have been a Deny not evaluated. */
static struct authz_verdict deny_explicit(enum authz_denial why)
{
    return (struct authz_verdict){.explicit_deny = true,
                                  .why = policy_budget_exhausted() ? AUTHZ_DENY_TOO_COSTLY : why};
}

static struct authz_verdict deny_implicit(enum authz_denial why)
{
    return (struct authz_verdict){.why = policy_budget_exhausted() ? AUTHZ_DENY_TOO_COSTLY : why};
}

/*
 * Does the resource policy alone allow a caller of its own account? It already allows the
 * request as made (with the caller's account); what is asked is whether it does so by naming
 * the caller rather than by trusting the account.
 */
static bool resource_names_caller(const struct authz_request *req, const policy *rp, struct policy_request pr)
{
    if (req->same_account == AUTHZ_SAME_ACCOUNT_UNLESS_ACCOUNT) {
        /* Trust policies: the caller is named unless the account as such (its root) is trusted. */
        char root[sizeof("arn:aws:iam:::root") + API_ACCOUNT_ID_LEN];
        snprintf(root, sizeof(root), "arn:aws:iam::%s:root", req->caller->account_id);
        pr.principal_arn = root;
        pr.principal_id = NULL;
        pr.principal_role_arn = NULL;
        pr.principal_type = api_principal_policy_type(API_PRINCIPAL_ROOT);
        return policy_evaluate(rp, &pr) != POLICY_ALLOW && !policy_budget_exhausted();
    }
    /*
     * Key policies: without the account, a Principal naming the account (root) no longer
     * matches, so what still allows names the caller's ARN, its role, or "*".
     * aws:PrincipalAccount stays in ctx when built.
     */
    pr.principal_account = NULL;
    return policy_evaluate(rp, &pr) == POLICY_ALLOW;
}

static struct authz_verdict decide(const struct authz_request *req, const policy *const *ids, size_t n_ids,
                                   const policy_ctx *ctx)
{
    const struct api_caller *c = req->caller;
    const char *res_acct = req->resource_account != NULL ? req->resource_account : c->account_id;
    bool same_account = strcmp(res_acct, c->account_id) == 0;
    bool root = is_root(c);
    struct policy_request pr = {
        .principal_arn = c->principal_arn,
        .principal_id = c->principal_id[0] != '\0' ? c->principal_id : NULL,
        .principal_role_arn = c->role_arn[0] != '\0' ? c->role_arn : NULL,
        .principal_account = c->account_id,
        .principal_type = api_principal_policy_type(c->principal_kind),
        .action = req->action,
        .resource = req->resource != NULL ? req->resource : "*",
        .ctx = ctx,
    };
    const policy *rp = req->resource_policy;
    policy_budget_reset(POLICY_EVAL_BUDGET_STEPS); /* one budget for the whole decision */
    enum policy_decision rdec = rp != NULL ? policy_evaluate(rp, &pr) : POLICY_NOT_APPLICABLE;
    if (rdec == POLICY_DENY_EXPLICIT) {
        return deny_explicit(AUTHZ_DENY_RESOURCE_EXPLICIT);
    }
    /* The root has every identity permission in its own account; no source, no policies. */
    enum policy_decision idec = root ? POLICY_ALLOW : policy_evaluate_all(ids, n_ids, &pr);
    if (idec == POLICY_DENY_EXPLICIT) {
        return deny_explicit(AUTHZ_DENY_IDENTITY_EXPLICIT);
    }
    /* (A service's own fallback, such as a KMS grant, may allow from here on: see authz.h.) */
    if (rp == NULL) {
        /* Another account's resource is reachable only through a policy of its own. */
        if (!same_account) {
            return (struct authz_verdict){.why = AUTHZ_DENY_NO_RESOURCE_ALLOW};
        }
        return idec == POLICY_ALLOW ? allow() : (struct authz_verdict){.why = AUTHZ_DENY_NO_IDENTITY_ALLOW};
    }
    if (rdec != POLICY_ALLOW) {
        return (struct authz_verdict){.why = AUTHZ_DENY_NO_RESOURCE_ALLOW};
    }
    if (idec == POLICY_ALLOW) {
        return allow(); /* both sides: enough in any account */
    }
    if (!same_account) {
        return (struct authz_verdict){.why = AUTHZ_DENY_NO_IDENTITY_ALLOW};
    }
    /* Same account, no identity allow: the resource policy must name the caller itself. */
    if (resource_names_caller(req, rp, pr)) {
        return allow();
    }
    return deny_implicit(AUTHZ_DENY_NO_IDENTITY_ALLOW);
}

/*
 * A user's or session's credentials stand for the entity that existed when they were issued:
 * once it is deleted (and maybe re-created under the same name, with a new unique id) they are
 * refused, as AWS refuses the session token of a deleted role.
 */
static coffer_err caller_current(const struct api_caller *c, const struct iam_policy_list *list)
{
    if (iam_policy_list_current(list, c->principal_id)) {
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_UNRECOGNIZED_CLIENT,
                       "The security token included in the request is invalid.");
}

bool authz_resolves_principals(const authz *a)
{
    return a != NULL && a->has_src && a->src.resolve != NULL;
}

coffer_err authz_resolve_principal(const authz *a, const char *arn, char uid[POLICY_UID_MAX])
{
    ENSURE(arn != NULL && uid != NULL, COFFER_ERR_USAGE);
    uid[0] = '\0';
    if (!authz_resolves_principals(a) || !policy_principal_bindable(arn)) {
        return COFFER_OK;
    }
    return a->src.resolve(a->src.ctx, arn, uid);
}

bool authz_account_exists(const authz *a, const char *account_id)
{
    return a != NULL && a->has_src && a->src.account_exists != NULL && account_id != NULL &&
           a->src.account_exists(a->src.ctx, account_id);
}

static coffer_err check(const authz *a, const struct authz_request *req, struct authz_verdict *v)
{
    ENSURE_REF(req);
    ENSURE_REF(req->caller);
    ENSURE_REF(req->action);
    coffer_err rc = COFFER_OK;
    struct iam_policy_list list = {0};
    policy_ctx *ctx = NULL;
    const struct api_caller *c = req->caller;
    if (!is_root(c) && a != NULL && a->has_src) {
        const char *who = c->role_arn[0] != '\0' ? c->role_arn : c->principal_arn;
        TRY_OUT(a->src.policies(a->src.ctx, who, &list));
        TRY_OUT(caller_current(c, &list));
    }
    unsigned want = authz_policy_ctx_keys(req->resource_policy);
    for (size_t i = 0; want != AUTHZ_CTX_ALL && i < list.n; i++) {
        want |= authz_policy_ctx_keys(list.items[i]);
    }
    if (want != 0) {
        TRY_OUT(build_ctx(req, want, &ctx));
    }
    *v = decide(req, list.items, list.n, ctx);
out:
    policy_ctx_clear(ctx); /* the thread's context: emptied, not freed */
    if (a != NULL && a->has_src && a->src.release != NULL) {
        a->src.release(a->src.ctx, &list);
    }
    return rc;
}

coffer_err authz_decide(const authz *a, const struct authz_request *req, struct authz_verdict *out)
{
    ENSURE_REF(out);
    *out = (struct authz_verdict){.why = AUTHZ_DENY_NO_IDENTITY_ALLOW}; /* refused until decided */
    return check(a, req, out);
}

coffer_err authz_check(const authz *a, const struct authz_request *req)
{
    struct authz_verdict v = {0};
    TRY(check(a, req, &v));
    return authz_refusal(req, &v);
}

bool authz_policy_allows(const authz *a, const struct authz_request *req)
{
    struct authz_verdict v = {0};
    return check(a, req, &v) == COFFER_OK && v.allowed;
}
