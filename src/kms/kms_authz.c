/*
 * Authorization of KMS requests: the bridge from a handler (which has resolved the key and
 * decoded the request) to the authorizer (iam/authz.h). Supplies the key policy compiled with
 * the cached key and the kms:* and aws:*Tag condition keys, which are only built when a policy
 * that applies has conditions; the grants of the key are KMS's own, looked at after the
 * authorizer refuses without an explicit deny. Also the grant token format.
 *
 *   handler -> kms_acquire (key cached, lock held) -> kms_authorize_key -> authz_decide
 *                                                                        -> grants (when not denied)
 *
 * Grant tokens are base64 of "cgt1:<account>:<region>:<key id>:<grant id>:<nonce hex>": they
 * name the grant they stand for, so RetireGrant can find it, and each CreateGrant hands out a
 * fresh one. Grants are durable and cached before CreateGrant answers, so a token never has to
 * carry authority of its own: presenting one is honoured at once, because the grant it names
 * is already in force.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "kms/kms_internal.h"

#define TOKEN_PREFIX "cgt1:"
#define TOKEN_TEXT_MAX 512
#define GRANT_ID_HEX 64
#define CTX_KEY_MAX 600

coffer_err kms_policy_compile(const char *text, policy **out)
{
    *out = NULL;
    if (text == NULL) {
        return coffer_fail(COFFER_ERR_MALFORMED_POLICY, "The policy document is missing.");
    }
    return policy_compile_ex(coffer_cursor_from_str(text), POLICY_COMPILE_REQUIRE_PRINCIPAL, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Grant tokens                                                                               */
/* ------------------------------------------------------------------------------------------ */

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

bool kms_grant_id_valid(const char *s)
{
    return s != NULL && strlen(s) == GRANT_ID_HEX && all_hex(s, GRANT_ID_HEX);
}

coffer_err kms_grant_token_make(const char *acct, const char *region, const char *key_id,
                                const char *grant_id, char **out)
{
    *out = NULL;
    uint8_t nonce[16];
    char nonce_hex[33], text[TOKEN_TEXT_MAX];
    TRY(crypto_random(nonce, sizeof(nonce)));
    coffer_hex_encode(nonce, sizeof(nonce), nonce_hex);
    int n = snprintf(text, sizeof(text), TOKEN_PREFIX "%s:%s:%s:%s:%s", acct, region, key_id, grant_id,
                     nonce_hex);
    if (n < 0 || (size_t)n >= sizeof(text)) {
        return coffer_fail(COFFER_ERR_INTERNAL, "grant token too long");
    }
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = coffer_b64_encode(coffer_cursor_from(text, (size_t)n), &b);
    if (rc == COFFER_OK) {
        rc = coffer_buf_nul_terminate(&b);
    }
    if (rc == COFFER_OK) {
        *out = (char *)b.data; /* ownership moves to the caller (free) */
        return COFFER_OK;
    }
    coffer_buf_free(&b);
    return rc;
}

static coffer_err bad_token(void)
{
    return coffer_fail(COFFER_ERR_INVALID_GRANT_TOKEN, "Invalid grant token");
}

coffer_err kms_grant_token_parse(const char *token, struct kms_grant_ref *g)
{
    memset(g, 0, sizeof(*g));
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    size_t tlen = strlen(token);
    if (tlen == 0 || tlen > 2 * TOKEN_TEXT_MAX ||
        coffer_b64_decode(coffer_cursor_from_str(token), &b) != COFFER_OK || b.len >= TOKEN_TEXT_MAX ||
        b.len < sizeof(TOKEN_PREFIX) - 1 || memcmp(b.data, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0) {
        rc = bad_token();
        goto out;
    }
    char text[TOKEN_TEXT_MAX];
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    if (memchr(text, '\0', b.len) != NULL) {
        rc = bad_token();
        goto out;
    }
    /* account:region:key id:grant id:nonce, each field checked for shape */
    char *fields[5];
    char *p = text + sizeof(TOKEN_PREFIX) - 1;
    for (int i = 0; i < 5; i++) {
        fields[i] = p;
        char *colon = strchr(p, ':');
        if ((colon == NULL) != (i == 4)) {
            rc = bad_token();
            goto out;
        }
        if (colon != NULL) {
            *colon = '\0';
            p = colon + 1;
        }
    }
    if (strlen(fields[0]) != API_ACCOUNT_ID_LEN || strspn(fields[0], "0123456789") != API_ACCOUNT_ID_LEN ||
        fields[1][0] == '\0' || strlen(fields[1]) > KMS_REGION_MAX || !kms_key_id_valid(fields[2]) ||
        !kms_grant_id_valid(fields[3]) || strlen(fields[4]) != 32 || !all_hex(fields[4], 32)) {
        rc = bad_token();
        goto out;
    }
    snprintf(g->account, sizeof(g->account), "%s", fields[0]);
    snprintf(g->region, sizeof(g->region), "%s", fields[1]);
    snprintf(g->key_id, sizeof(g->key_id), "%s", fields[2]);
    snprintf(g->grant_id, sizeof(g->grant_id), "%s", fields[3]);
out:
    coffer_buf_free(&b);
    return rc;
}

coffer_err kms_grant_tokens_check(const json_t *tokens)
{
    size_t i;
    const json_t *t;
    json_array_foreach(tokens, i, t)
    {
        struct kms_grant_ref g;
        TRY(kms_grant_token_parse(json_string_value(t), &g));
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Grants of a key                                                                            */
/* ------------------------------------------------------------------------------------------ */

struct grants_scan {
    json_t *list;
};

static coffer_err grants_scan_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct grants_scan *s = ctx;
    (void)key;
    json_t *g = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    if (!json_is_object(g)) {
        json_decref(g);
        return coffer_fail(COFFER_ERR_STORE, "corrupt grant record");
    }
    return json_array_append_new(s->list, g) == 0 ? COFFER_OK : kms_nomem();
}

void kms_grant_prefix(char *out, size_t n, const char *acct, const char *region, const char *key_id)
{
    snprintf(out, n, "kms/grant/%s/%s/%s/", acct, region, key_id);
}

coffer_err kms_grants_load(struct kms_service *svc, const struct kms_key *k, json_t **out)
{
    char prefix[256];
    struct grants_scan s = {.list = json_array()};
    *out = NULL;
    if (s.list == NULL) {
        return kms_nomem();
    }
    kms_grant_prefix(prefix, sizeof(prefix), k->account, k->region, k->key_id);
    coffer_err rc = store_scan(svc->st, prefix, "", 0, grants_scan_cb, &s);
    if (rc != COFFER_OK) {
        json_decref(s.list);
        return rc;
    }
    *out = s.list;
    return COFFER_OK;
}

/* Every pair of `sub` is in `ec` with the same value. */
static bool ec_contains(const json_t *ec, const json_t *sub)
{
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)sub, name, v)
    {
        const json_t *have = json_object_get(ec, name);
        if (have == NULL || strcmp(json_string_value(have), json_string_value(v)) != 0) {
            return false;
        }
    }
    return true;
}

/*
 * Grant constraints apply only to operations that take an encryption context; a constrained
 * grant's DescribeKey is not limited by them (GrantConstraints in the KMS API reference).
 */
static bool grant_constraints_ok(const json_t *g, const char *grant_op, const json_t *ec)
{
    if (strcmp(grant_op, "DescribeKey") == 0) {
        return true;
    }
    const json_t *c = json_object_get(g, "Constraints");
    const json_t *sub = json_object_get(c, "EncryptionContextSubset");
    const json_t *eq = json_object_get(c, "EncryptionContextEquals");
    if (sub != NULL && !ec_contains(ec, sub)) {
        return false;
    }
    if (eq != NULL && (json_object_size(eq) != json_object_size(ec) || !ec_contains(ec, eq))) {
        return false;
    }
    return true;
}

/* A bound grant principal names the caller by unique id: the user, or a session of the role. */
static bool grant_uid_names(const char *uid, const struct api_caller *c)
{
    size_t n = strlen(uid);
    return strncmp(c->principal_id, uid, n) == 0 && (c->principal_id[n] == '\0' || c->principal_id[n] == ':');
}

bool kms_grant_names(const json_t *g, const struct api_caller *c, const char *member)
{
    const char *p = json_string_value(json_object_get(g, member));
    if (p == NULL ||
        !(strcmp(p, c->principal_arn) == 0 || (c->role_arn[0] != '\0' && strcmp(p, c->role_arn) == 0))) {
        return false;
    }
    const char *uid = kms_grant_principal_id(g, member);
    return uid == NULL || grant_uid_names(uid, c);
}

bool kms_ops_has(const json_t *ops, const char *op)
{
    size_t i;
    const json_t *o;
    json_array_foreach(ops, i, o)
    {
        if (strcmp(json_string_value(o), op) == 0) {
            return true;
        }
    }
    return false;
}

bool kms_ops_within(const json_t *ops, const json_t *of)
{
    size_t i;
    const json_t *o;
    json_array_foreach(ops, i, o)
    {
        if (!kms_ops_has(of, json_string_value(o))) {
            return false;
        }
    }
    return true;
}

bool kms_grant_has_op(const json_t *g, const char *op)
{
    return kms_ops_has(json_object_get(g, "Operations"), op);
}

bool kms_grant_allows(const struct kms_key *k, const struct api_caller *c, const char *grant_op,
                      const json_t *ec)
{
    size_t i;
    const json_t *g;
    json_array_foreach(k->grants, i, g)
    {
        if (kms_grant_names(g, c, "GranteePrincipal") && kms_grant_has_op(g, grant_op) &&
            grant_constraints_ok(g, grant_op, ec)) {
            return true;
        }
    }
    return false;
}

/*
 * A child constraint at least as strict as the parent's: every encryption context the child
 * accepts, the parent accepts too. Parent Subset P: child Subset or Equals holding every pair
 * of P. Parent Equals P: child Equals P exactly (a Subset child would accept extra pairs).
 * Pairs compare exactly, which is never looser than how a constraint is matched.
 */
static bool constraints_imply(const json_t *child, const json_t *parent)
{
    const json_t *psub = json_object_get(parent, "EncryptionContextSubset");
    const json_t *peq = json_object_get(parent, "EncryptionContextEquals");
    const json_t *csub = json_object_get(child, "EncryptionContextSubset");
    const json_t *ceq = json_object_get(child, "EncryptionContextEquals");
    if (psub != NULL && json_object_size(psub) > 0) {
        const json_t *c = csub != NULL ? csub : ceq;
        return c != NULL && ec_contains(c, psub);
    }
    if (peq != NULL) {
        return ceq != NULL && json_object_size(ceq) == json_object_size(peq) && ec_contains(ceq, peq);
    }
    return true;
}

/*
 * CreateGrant authorized by a grant (AWS "Granting CreateGrant permission"): the caller's grant
 * must carry CreateGrant, every operation the new grant lists, and constraints the new grant's
 * imply. So the grantee of a grant can hand on its permissions but never widen them.
 */
static bool grant_allows_child(const struct kms_key *k, const struct api_caller *c, const struct kms_req *r)
{
    size_t i;
    const json_t *g;
    if (r == NULL || r->operations == NULL) {
        return false;
    }
    json_array_foreach(k->grants, i, g)
    {
        if (kms_grant_names(g, c, "GranteePrincipal") && kms_grant_has_op(g, "CreateGrant") &&
            kms_ops_within(r->operations, json_object_get(g, "Operations")) &&
            constraints_imply(r->constraints, json_object_get(g, "Constraints"))) {
            return true;
        }
    }
    return false;
}

/*
 * The operations a grant may carry (GrantOperation) that this server performs and a grant
 * authorizes like a policy would. RetireGrant is not among them: in a grant it lets the grantee
 * retire that grant only (kms_op_RetireGrant), never other grants of the key. CreateGrant is
 * checked against the new grant (grant_allows_child).
 */
static const char *grant_op_of(const char *action)
{
    static const char *const ops[] = {"Decrypt",
                                      "Encrypt",
                                      "GenerateDataKey",
                                      "GenerateDataKeyWithoutPlaintext",
                                      "ReEncryptFrom",
                                      "ReEncryptTo",
                                      "CreateGrant",
                                      "DescribeKey",
                                      "GenerateMac",
                                      "VerifyMac",
                                      "Sign",
                                      "Verify",
                                      "GetPublicKey",
                                      "GenerateDataKeyPair",
                                      "GenerateDataKeyPairWithoutPlaintext",
                                      NULL};
    if (strncmp(action, "kms:", 4) != 0) {
        return NULL;
    }
    for (size_t i = 0; ops[i] != NULL; i++) {
        if (strcmp(action + 4, ops[i]) == 0) {
            return ops[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Condition keys                                                                             */
/* ------------------------------------------------------------------------------------------ */

struct ctx_src {
    const struct api_caller *caller;
    const struct kms_service *svc;
    const struct kms_key *k;
    const struct kms_authz_in *in;
    const struct kms_req *r;
    const char *via_service; /* kms:ViaService; NULL: absent */
};

/*
 * <prefix><name> = value for request data whose names are case-sensitive (context keys, tag
 * keys) under a condition key that is not: names differing only in case become variants of
 * one key, all kept, so none can overwrite the value a policy looks for.
 */
static coffer_err set_prefixed(policy_ctx *ctx, const char *prefix, const char *name, const char *value)
{
    char key[CTX_KEY_MAX];
    int n = snprintf(key, sizeof(key), "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof(key)) {
        return COFFER_OK; /* a key too long for any policy to name (policy strings are shorter): left out */
    }
    return policy_ctx_add_variant(ctx, key, value);
}

/* aws:RequestTag/<k> and aws:TagKeys from a [{TagKey,TagValue}] list. */
static coffer_err add_request_tags(policy_ctx *ctx, const json_t *tags)
{
    size_t i;
    const json_t *t;
    TRY(policy_ctx_set(ctx, "aws:TagKeys", NULL, 0));
    json_array_foreach(tags, i, t)
    {
        const char *k = json_string_value(json_object_get(t, "TagKey"));
        const char *v = json_string_value(json_object_get(t, "TagValue"));
        if (k == NULL || v == NULL) {
            continue;
        }
        TRY(set_prefixed(ctx, "aws:RequestTag/", k, v));
        TRY(policy_ctx_add(ctx, "aws:TagKeys", k));
    }
    return COFFER_OK;
}

struct alias_names {
    const char *target;
    policy_ctx *ctx;
};

static coffer_err alias_name_cb(void *arg, const char *key, coffer_cursor value)
{
    struct alias_names *a = arg;
    (void)key;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    const char *t = json_string_value(json_object_get(rec, "TargetKeyId"));
    const char *name = json_string_value(json_object_get(rec, "AliasName"));
    coffer_err rc = COFFER_OK;
    if (t != NULL && name != NULL && strcmp(t, a->target) == 0) {
        rc = policy_ctx_add(a->ctx, "kms:ResourceAliases", name);
    }
    json_decref(rec);
    return rc;
}

/* kms:ResourceAliases: every alias of the key, read from the store (only policies naming the key pay). */
static coffer_err add_resource_aliases(const struct kms_service *svc, const struct kms_key *k,
                                       policy_ctx *ctx)
{
    char prefix[256];
    struct alias_names a = {.target = k->key_id, .ctx = ctx};
    snprintf(prefix, sizeof(prefix), "kms/alias/%s/%s/", k->account, k->region);
    TRY(policy_ctx_set(ctx, "kms:ResourceAliases", NULL, 0));
    return store_scan(svc->st, prefix, "", 0, alias_name_cb, &a);
}

static coffer_err add_key_ctx(void *arg, unsigned want, policy_ctx *ctx)
{
    const struct ctx_src *s = arg;
    const struct kms_req *r = s->r;
    if (want & AUTHZ_CTX_CALLER_ACCOUNT) {
        TRY(policy_ctx_set_str(ctx, "kms:CallerAccount", s->caller->account_id));
    }
    if (s->k != NULL && s->svc != NULL && (want & AUTHZ_CTX_RESOURCE_ALIASES)) {
        TRY(add_resource_aliases(s->svc, s->k, ctx));
    }
    if (s->k != NULL && (want & AUTHZ_CTX_RESOURCE_TAGS)) {
        size_t i;
        const json_t *t;
        json_array_foreach(json_object_get(s->k->rec, "Tags"), i, t)
        {
            const char *k = json_string_value(json_object_get(t, "TagKey"));
            const char *v = json_string_value(json_object_get(t, "TagValue"));
            if (k != NULL && v != NULL) {
                TRY(set_prefixed(ctx, "aws:ResourceTag/", k, v));
            }
        }
    }
    if ((want & AUTHZ_CTX_ENCRYPTION_CONTEXT) && s->in != NULL && s->in->ec != NULL) {
        const char *name;
        const json_t *v;
        TRY(policy_ctx_set(ctx, "kms:EncryptionContextKeys", NULL, 0));
        json_object_foreach((json_t *)s->in->ec, name, v)
        {
            TRY(set_prefixed(ctx, "kms:EncryptionContext:", name, json_string_value(v)));
            TRY(policy_ctx_add(ctx, "kms:EncryptionContextKeys", name));
        }
    }
    if ((want & AUTHZ_CTX_REQUEST_TAGS) && r != NULL) {
        if (r->tags != NULL) {
            TRY(add_request_tags(ctx, r->tags));
        }
        if (r->tag_keys != NULL) {
            size_t i;
            const json_t *t;
            TRY(policy_ctx_set(ctx, "aws:TagKeys", NULL, 0));
            json_array_foreach(r->tag_keys, i, t)
            {
                TRY(policy_ctx_add(ctx, "aws:TagKeys", json_string_value(t)));
            }
        }
    }
    if (!(want & AUTHZ_CTX_OTHER)) {
        return COFFER_OK;
    }
    if (s->via_service != NULL) {
        TRY(policy_ctx_set_str(ctx, "kms:ViaService", s->via_service));
    }
    if (s->k != NULL) {
        const json_t *rec = s->k->rec;
        const char *spec = json_string_value(json_object_get(rec, "KeySpec"));
        const char *usage = json_string_value(json_object_get(rec, "KeyUsage"));
        const char *origin = json_string_value(json_object_get(rec, "Origin"));
        if (spec != NULL) {
            TRY(policy_ctx_set_str(ctx, "kms:KeySpec", spec));
        }
        if (usage != NULL) {
            TRY(policy_ctx_set_str(ctx, "kms:KeyUsage", usage));
        }
        if (origin != NULL) {
            TRY(policy_ctx_set_str(ctx, "kms:KeyOrigin", origin));
        }
        TRY(policy_ctx_set_bool(ctx, "kms:MultiRegion", json_is_true(json_object_get(rec, "MultiRegion"))));
    }
    if (s->in != NULL && s->in->key_ref != NULL) {
        const char *a = strstr(s->in->key_ref, "alias/");
        if (a != NULL && (a == s->in->key_ref || strncmp(s->in->key_ref, "arn:", 4) == 0)) {
            TRY(policy_ctx_set_str(ctx, "kms:RequestAlias", a));
        }
    }
    if (r == NULL) {
        return COFFER_OK;
    }
    if (r->enc_alg >= 0) {
        TRY(policy_ctx_set_str(ctx, "kms:EncryptionAlgorithm", kms_enc_algorithms[r->enc_alg]));
    } else if (s->in != NULL && s->in->ec != NULL) {
        TRY(policy_ctx_set_str(ctx, "kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT"));
    }
    if (r->operations != NULL) {
        size_t i;
        const json_t *o;
        TRY(policy_ctx_set(ctx, "kms:GrantOperations", NULL, 0));
        json_array_foreach(r->operations, i, o)
        {
            TRY(policy_ctx_add(ctx, "kms:GrantOperations", json_string_value(o)));
        }
        TRY(policy_ctx_set_bool(ctx, "kms:GrantIsForAWSResource", false));
        const json_t *c = r->constraints;
        if (json_object_get(c, "EncryptionContextSubset") != NULL) {
            TRY(policy_ctx_set_str(ctx, "kms:GrantConstraintType", "EncryptionContextSubset"));
        } else if (json_object_get(c, "EncryptionContextEquals") != NULL) {
            TRY(policy_ctx_set_str(ctx, "kms:GrantConstraintType", "EncryptionContextEquals"));
        }
    }
    if (r->grantee_principal != NULL) {
        TRY(policy_ctx_set_str(ctx, "kms:GranteePrincipal", r->grantee_principal));
    }
    if (r->retiring_principal != NULL) {
        TRY(policy_ctx_set_str(ctx, "kms:RetiringPrincipal", r->retiring_principal));
    }
    if (r->policy != NULL || r->bypass_lockout) {
        TRY(policy_ctx_set_bool(ctx, "kms:BypassPolicyLockoutSafetyCheck", r->bypass_lockout));
    }
    if (s->k == NULL && s->in != NULL && strcmp(s->in->action, "kms:CreateKey") == 0) { /* the key-to-be */
        TRY(policy_ctx_set_str(ctx, "kms:KeySpec",
                               r->key_spec >= 0   ? kms_key_specs[r->key_spec]
                               : r->cmk_spec >= 0 ? kms_cmk_specs[r->cmk_spec]
                                                  : "SYMMETRIC_DEFAULT"));
        TRY(policy_ctx_set_bool(ctx, "kms:MultiRegion", r->multi_region));
        if (r->key_usage >= 0) {
            TRY(policy_ctx_set_str(ctx, "kms:KeyUsage", kms_key_usages[r->key_usage]));
        }
        if (r->origin >= 0) {
            TRY(policy_ctx_set_str(ctx, "kms:KeyOrigin", kms_origins[r->origin]));
        }
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points                                                                               */
/* ------------------------------------------------------------------------------------------ */

/*
 * The key policy and the identity policies decide first (authz_decide). A refusal that is not an
 * explicit deny may still be lifted by a grant of the key covering the operation: a grant never
 * overrides a Deny, and is looked at only when the policies alone do not allow.
 */
coffer_err kms_authorize_key(const struct kms_service *svc, const struct api_call *call,
                             const struct kms_key *k, const struct kms_authz_in *in)
{
    if (in->r != NULL && in->r->grant_tokens != NULL) {
        TRY(kms_grant_tokens_check(in->r->grant_tokens));
    }
    if (svc->az == NULL) {
        return COFFER_OK;
    }
    struct ctx_src src = {
        .caller = call->caller, .via_service = call->via_service, .svc = svc, .k = k, .in = in, .r = in->r};
    struct authz_request req = authz_request_for(call, in->action, k->arn);
    req.resource_account = k->account;
    req.resource_policy = k->kpol;
    req.add_ctx = add_key_ctx;
    req.add_ctx_arg = &src;
    struct authz_verdict v;
    TRY(authz_decide(svc->az, &req, &v));
    if (v.allowed || v.explicit_deny) {
        return authz_refusal(&req, &v);
    }
    const char *gop = grant_op_of(in->action);
    if (gop != NULL && json_array_size(k->grants) > 0) {
        bool granted = strcmp(gop, "CreateGrant") == 0 ? grant_allows_child(k, call->caller, in->r)
                                                       : kms_grant_allows(k, call->caller, gop, in->ec);
        if (granted) {
            return COFFER_OK;
        }
    }
    return authz_refusal(&req, &v);
}

coffer_err kms_authorize_plain(const struct kms_service *svc, const struct api_call *call, const char *action,
                               const char *resource, const struct kms_req *r)
{
    if (svc->az == NULL) {
        return COFFER_OK;
    }
    struct kms_authz_in in = {.action = action, .r = r};
    struct ctx_src src = {
        .caller = call->caller, .via_service = call->via_service, .k = NULL, .in = &in, .r = r};
    struct authz_request req = authz_request_for(call, action, resource);
    req.add_ctx = add_key_ctx;
    req.add_ctx_arg = &src;
    return authz_check(svc->az, &req);
}

bool kms_policy_lockout_ok(const struct kms_service *svc, const struct api_call *call, const char *key_arn,
                           const policy *candidate)
{
    if (svc->az == NULL) {
        return true;
    }
    struct kms_authz_in in = {.action = "kms:PutKeyPolicy"};
    struct ctx_src src = {.caller = call->caller, .via_service = call->via_service, .in = &in};
    struct authz_request req = authz_request_for(call, in.action, key_arn);
    req.resource_policy = candidate;
    req.add_ctx = add_key_ctx;
    req.add_ctx_arg = &src;
    return authz_policy_allows(svc->az, &req);
}
