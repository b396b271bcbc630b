/*
 * Grants (kms.md §8 "Grants"): CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
 * RevokeGrant. A grant lets its grantee principal perform a list of operations on one key,
 * optionally only with a matching encryption context, without any policy naming it.
 *
 * Store: kms/grant/<account>/<region>/<key id>/<grant id> -> grant record (JSON, no secrets, so
 * not sealed): GrantId, KeyId (ARN), Name, CreationDate (ms), GranteePrincipal,
 * RetiringPrincipal, IssuingAccount, Operations, Constraints. The key's cache entry holds the
 * array of its grants (k->grants), replaced whole under the write lock after each durable
 * change, so a grant is in force (and a retired one gone) before the call answers.
 *
 * Index: kms/rgrant/<sha256 hex of the retiring principal>/<account>/<region>/<key id>/<grant id>
 * -> the same record, written and deleted in the transaction that writes or deletes the grant
 * (and in the one that deletes its key), so ListRetirableGrants reads only the grants of one
 * retiring principal. The principal is the unique id the grant's RetiringPrincipal is bound to
 * (an IAM user or role), else the ARN as written (an account, a session): a user or role
 * re-created under the same name has a new id, so it is not shown its predecessor's grants, and
 * the grants of a deleted one are listed for nobody. The hash gives the principal a fixed-size,
 * separator-free segment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

#define GRANT_ID_BYTES 32
#define LIST_GRANTS_DEFAULT 50
#define MAX_CONSTRAINT_PAIRS 8
#define MAX_CONSTRAINT_VALUE 384
#define MAX_CONSTRAINT_KEY 384 /* AWS names no key length; a key as long as a value at most */

static void grant_store_key(char *out, size_t n, const struct kms_key *k, const char *grant_id)
{
    snprintf(out, n, "kms/grant/%s/%s/%s/%.64s", k->account, k->region, k->key_id, grant_id);
}

#define RGRANT_PREFIX "kms/rgrant/"
/* v1 keyed the index by the RetiringPrincipal ARN; v2 by the bound unique id (rebuilt once). */
#define RGRANT_INDEX_DONE "kms/meta/rgrant-index-v2"
#define RGRANT_INDEX_V1 "kms/meta/rgrant-index-v1"

/* "kms/rgrant/<sha256 hex of principal>/" */
static void rgrant_prefix(char *out, size_t n, const char *principal)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    crypto_sha256(principal, strlen(principal), h);
    coffer_hex_encode(h, sizeof(h), hex);
    snprintf(out, n, RGRANT_PREFIX "%s/", hex);
}

bool kms_grant_index_key(char *out, size_t n, const json_t *g, const char *skey)
{
    const char *rp = json_string_value(json_object_get(g, "RetiringPrincipal"));
    const char *uid = kms_grant_principal_id(g, "RetiringPrincipal");
    if (rp == NULL || strncmp(skey, "kms/grant/", 10) != 0) {
        return false;
    }
    char prefix[128];
    rgrant_prefix(prefix, sizeof(prefix), uid != NULL ? uid : rp);
    snprintf(out, n, "%s%s", prefix, skey + 10);
    return true;
}

/* wmu held: the grant list after a durable change replaces the cached one. */
static void grants_swap(struct kms_service *svc, struct kms_key *k, json_t *list)
{
    pthread_rwlock_wrlock(&svc->lock);
    json_t *old = k->grants;
    k->grants = list;
    pthread_rwlock_unlock(&svc->lock);
    json_decref(old);
}

static json_t *grant_find(const struct kms_key *k, const char *grant_id, size_t *index)
{
    size_t i;
    json_t *g;
    json_array_foreach(k->grants, i, g)
    {
        if (strcmp(json_string_value(json_object_get(g, "GrantId")), grant_id) == 0) {
            if (index != NULL) {
                *index = i;
            }
            return g;
        }
    }
    return NULL;
}

static bool principal_arn_ok(const char *p)
{
    return strncmp(p, "arn:aws:iam::", 13) == 0 || strncmp(p, "arn:aws:sts::", 13) == 0;
}

static coffer_err check_principal(const char *member, const char *p)
{
    if (p != NULL && !principal_arn_ok(p)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "Invalid %s: %.256s", member, p);
    }
    return COFFER_OK;
}

/* A constraint member given as null or {} constrains nothing (the Terraform provider sends both). */
static const json_t *constraint_member(const json_t *c, const char *name)
{
    const json_t *m = json_object_get(c, name);
    return json_object_size(m) > 0 ? m : NULL;
}

/* The constraints as stored and compared: only the members that constrain; NULL when none. */
static coffer_err constraints_copy(const json_t *c, json_t **out)
{
    static const char *const members[] = {"EncryptionContextSubset", "EncryptionContextEquals"};
    *out = NULL;
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        const json_t *m = constraint_member(c, members[i]);
        if (m == NULL) {
            continue;
        }
        if ((*out == NULL && (*out = json_object()) == NULL) ||
            json_object_set_new(*out, members[i], json_deep_copy(m)) != 0) {
            json_decref(*out);
            *out = NULL;
            return kms_nomem();
        }
    }
    return COFFER_OK;
}

static coffer_err check_constraints(const json_t *c)
{
    const json_t *sub = constraint_member(c, "EncryptionContextSubset");
    const json_t *eq = constraint_member(c, "EncryptionContextEquals");
    if (sub != NULL && eq != NULL) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "Only one of EncryptionContextSubset or EncryptionContextEquals can be specified.");
    }
    const json_t *m = sub != NULL ? sub : eq;
    if (json_object_size(m) > MAX_CONSTRAINT_PAIRS) {
        return coffer_fail(COFFER_ERR_VALIDATION, "A grant constraint may hold at most %d pairs.",
                           MAX_CONSTRAINT_PAIRS);
    }
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)m, name, v)
    {
        if (strlen(name) > MAX_CONSTRAINT_KEY) {
            return coffer_fail(COFFER_ERR_VALIDATION, "Grant constraint keys are limited to %d characters.",
                               MAX_CONSTRAINT_KEY);
        }
        if (strlen(json_string_value(v)) > MAX_CONSTRAINT_VALUE) {
            return coffer_fail(COFFER_ERR_VALIDATION, "Grant constraint values are limited to %d characters.",
                               MAX_CONSTRAINT_VALUE);
        }
    }
    return COFFER_OK;
}

/* Only operations this server performs, and that the key's type and usage support, may be granted. */
static coffer_err check_operations(const struct kms_key *k, const json_t *ops)
{
    if (json_array_size(ops) == 0) {
        return coffer_fail(COFFER_ERR_VALIDATION, "Operations must not be empty.");
    }
    size_t i;
    const json_t *o;
    json_array_foreach(ops, i, o)
    {
        if (!kms_grant_op_fits(k, json_string_value(o))) {
            return coffer_fail(COFFER_ERR_VALIDATION, "Grant operation %s is not valid for this KMS key.",
                               json_string_value(o));
        }
    }
    return COFFER_OK;
}

/*
 * The operations as a set, in the order first given: a grant stores each operation once, so
 * neither its record nor every later authorization on the key pays for repeats. *out is owned.
 */
static coffer_err operations_set(const json_t *ops, json_t **out)
{
    *out = NULL;
    json_t *set = json_array();
    if (set == NULL) {
        return kms_nomem();
    }
    size_t i;
    json_t *o;
    json_array_foreach(ops, i, o)
    {
        if (!kms_ops_has(set, json_string_value(o)) && json_array_append(set, o) != 0) {
            json_decref(set);
            return kms_nomem();
        }
    }
    *out = set;
    return COFFER_OK;
}

static bool str_eq_opt(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Both grants name the same principal in `member`: the same ARN, bound to the same entity. */
static bool same_principal(const json_t *a, const json_t *b, const char *member)
{
    return str_eq_opt(json_string_value(json_object_get(a, member)),
                      json_string_value(json_object_get(b, member))) &&
           str_eq_opt(kms_grant_principal_id(a, member), kms_grant_principal_id(b, member));
}

/*
 * An existing grant the bound record `rec` of this request repeats. The principals compare by
 * the entity they are bound to, not by ARN alone: a grant for a deleted user is never handed out
 * again for a new user of the same name.
 */
static const json_t *same_named_grant(const struct kms_key *k, const struct kms_req *r, const json_t *rec)
{
    size_t i;
    const json_t *g;
    if (r->grant_name == NULL) {
        return NULL;
    }
    json_array_foreach(k->grants, i, g)
    {
        const json_t *c = json_object_get(g, "Constraints");
        if (str_eq_opt(json_string_value(json_object_get(g, "Name")), r->grant_name) &&
            same_principal(g, rec, "GranteePrincipal") && same_principal(g, rec, "RetiringPrincipal") &&
            kms_ops_within(json_object_get(g, "Operations"), r->operations) &&
            kms_ops_within(r->operations, json_object_get(g, "Operations")) &&
            ((c == NULL && r->constraints == NULL) ||
             (c != NULL && r->constraints != NULL && json_equal(c, r->constraints)))) {
            return g;
        }
    }
    return NULL;
}

static coffer_err dry_run(void)
{
    return coffer_fail(COFFER_ERR_DRY_RUN, "%s", coffer_err_default_message(COFFER_ERR_DRY_RUN));
}

static coffer_err grant_output(struct api_call *call, const struct kms_key *k, const char *grant_id)
{
    char *token = NULL;
    TRY(kms_grant_token_make(k->account, k->region, k->key_id, grant_id, &token));
    call->output = json_pack("{s:s,s:s}", "GrantToken", token, "GrantId", grant_id);
    free(token);
    if (call->output == NULL) {
        return kms_nomem();
    }
    call->audit_response = json_pack("{s:s}", "grantId", grant_id);
    return COFFER_OK;
}

/*
 * Writes grant record `g` (put) or deletes it (!put) durably, with its retiring-principal
 * index entry in the same transaction.
 */
static coffer_err grant_write(struct kms_service *svc, const char *skey, const json_t *g, bool put)
{
    store_txn *t = NULL;
    char *text = NULL;
    char ikey[STORE_KEY_BUF];
    bool indexed = kms_grant_index_key(ikey, sizeof(ikey), g, skey);
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_txn_begin(svc->st, &t));
    if (put) {
        text = json_dumps(g, JSON_COMPACT | JSON_SORT_KEYS);
        if (text == NULL) {
            rc = kms_nomem();
            goto out;
        }
        TRY_OUT(store_txn_put(t, skey, coffer_cursor_from_str(text)));
        if (indexed) {
            TRY_OUT(store_txn_put(t, ikey, coffer_cursor_from_str(text)));
        }
    } else {
        TRY_OUT(store_txn_delete(t, skey));
        if (indexed) {
            rc = store_txn_delete(t, ikey);
            if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
                goto out;
            }
        }
    }
    rc = store_txn_commit(t);
    t = NULL;
out:
    store_txn_abort(t);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* CreateGrant                                                                                */
/* ------------------------------------------------------------------------------------------ */

static const char *const audit_create[] = {"KeyId",       "GranteePrincipal", "RetiringPrincipal",
                                           "Operations",  "Constraints",      "Name",
                                           "GrantTokens", "DryRun",           NULL};

static json_t *grant_record(const struct api_call *call, const struct kms_key *k, const struct kms_req *r,
                            const char *grant_id)
{
    char issuing[AWS_ROOT_ARN_LEN + 1];
    snprintf(issuing, sizeof(issuing), "arn:aws:iam::%s:root", call->caller->account_id);
    json_t *g = json_pack("{s:s,s:s,s:I,s:s,s:s,s:O}", "GrantId", grant_id, "KeyId", k->arn, "CreationDate",
                          (json_int_t)kms_call_now_ms(call), "GranteePrincipal", r->grantee_principal,
                          "IssuingAccount", issuing, "Operations", r->operations);
    if (g == NULL) {
        return NULL;
    }
    if ((r->grant_name != NULL && json_object_set_new(g, "Name", json_string(r->grant_name)) != 0) ||
        (r->retiring_principal != NULL &&
         json_object_set_new(g, "RetiringPrincipal", json_string(r->retiring_principal)) != 0) ||
        (r->constraints != NULL &&
         json_object_set_new(g, "Constraints", json_deep_copy(r->constraints)) != 0)) {
        json_decref(g);
        return NULL;
    }
    return g;
}

coffer_err kms_op_CreateGrant(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    json_t *rec = NULL, *list = NULL, *ops = NULL, *cons = NULL;
    char skey[STORE_KEY_BUF], grant_id[KMS_GRANT_ID_LEN + 1];
    uint8_t raw[GRANT_ID_BYTES];
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_create);
    TRY(kms_req_decode(KMS_OP_CreateGrant, call->input, &r));
    TRY(check_principal("GranteePrincipal", r.grantee_principal));
    TRY(check_principal("RetiringPrincipal", r.retiring_principal));
    TRY(check_constraints(r.constraints));
    TRY(constraints_copy(r.constraints, &cons));
    r.constraints = cons; /* from here on only what constrains; cons outlives r */
    rc = operations_set(r.operations, &ops);
    if (rc != COFFER_OK) {
        json_decref(cons);
        return rc;
    }
    r.operations = ops; /* from here on the set; ops outlives r */
    rc = kms_acquire_write(svc, call, r.key_id, KMS_REF_CROSS, &k);
    if (rc != COFFER_OK) {
        json_decref(cons);
        json_decref(ops);
        kms_req_clean(&r);
        return rc;
    }
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:CreateGrant", .r = &r}));
    TRY_OUT(kms_check_state(k, KMS_RULE_NOT_PENDING));
    TRY_OUT(check_operations(k, r.operations));
    if (r.dry_run) {
        rc = dry_run();
        goto out;
    }
    TRY_OUT(crypto_random(raw, sizeof(raw)));
    coffer_hex_encode(raw, sizeof(raw), grant_id);
    rec = grant_record(call, k, &r, grant_id);
    if (rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    /* Bound first: whether an existing grant is the same depends on whom the names stand for now. */
    TRY_OUT(kms_grant_bind_principals(svc, rec));
    const json_t *same = same_named_grant(k, &r, rec);
    if (same != NULL) {
        rc = grant_output(call, k, json_string_value(json_object_get(same, "GrantId")));
        goto out;
    }
    if (json_array_size(k->grants) >= svc->limits.kms_grants_per_key) {
        rc = coffer_fail(COFFER_ERR_LIMIT_EXCEEDED,
                         "The request would exceed the limit of %zu grants for this KMS key.",
                         svc->limits.kms_grants_per_key);
        goto out;
    }
    list = json_copy(k->grants); /* shallow: the records themselves never change */
    if (list == NULL || json_array_append(list, rec) != 0) {
        rc = kms_nomem();
        goto out;
    }
    grant_store_key(skey, sizeof(skey), k, grant_id);
    /* Before the commit: the request's event is written then, naming the new grant. */
    TRY_OUT(grant_output(call, k, grant_id));
    TRY_OUT(grant_write(svc, skey, rec, true));
    grants_swap(svc, k, list);
    list = NULL;
out:
    kms_write_release(svc);
    json_decref(rec);
    json_decref(list);
    json_decref(ops);
    json_decref(cons);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* ListGrants, ListRetirableGrants                                                            */
/* ------------------------------------------------------------------------------------------ */

/* A grant as ListGrants shows it (CreationDate in epoch seconds). */
static json_t *grant_view(const json_t *g)
{
    json_t *v = json_deep_copy(g);
    if (v != NULL) {
        json_object_set_new(
            v, "CreationDate",
            json_real((double)json_integer_value(json_object_get(g, "CreationDate")) / 1000.0));
    }
    return v;
}

static coffer_err paged_output(struct api_call *call, json_t *items, bool truncated, const char *last)
{
    call->output = json_pack("{s:o,s:b}", "Grants", items, "Truncated", truncated);
    if (call->output == NULL) {
        return kms_nomem();
    }
    return truncated ? kms_marker_encode(last, call->output) : COFFER_OK;
}

/* Shows the principals of `items` (taken) as bound now and makes them the paged output. */
static coffer_err paged_grants_output(const struct kms_service *svc, struct api_call *call, json_t *items,
                                      bool truncated, const char *last)
{
    coffer_err rc = kms_grants_view_principals(svc, items);
    if (rc != COFFER_OK) {
        json_decref(items);
        return rc;
    }
    return paged_output(call, items, truncated, last);
}

/*
 * A ListGrants GranteePrincipal filter, matched as grants are bound: an IAM user or role ARN
 * finds the grants of the entity holding it now (none once nobody holds it), and the unique id
 * a grant of a deleted entity is shown by finds that grant.
 */
struct grantee_filter {
    const char *text;         /* as given; NULL: no filter */
    char uid[POLICY_UID_MAX]; /* the entity holding text now; "" when text is not bound */
    bool held;                /* false when text is a user or role ARN nobody holds */
};

static coffer_err grantee_filter_init(const struct kms_service *svc, const char *text,
                                      struct grantee_filter *f)
{
    f->text = text;
    f->uid[0] = '\0';
    f->held = true;
    if (text == NULL) {
        return COFFER_OK;
    }
    coffer_err rc = authz_resolve_principal(svc->az, text, f->uid);
    if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
        coffer_clear_err();
        f->held = false;
        return COFFER_OK;
    }
    return rc;
}

static bool grantee_filter_match(const struct grantee_filter *f, const json_t *g)
{
    const char *uid = kms_grant_principal_id(g, "GranteePrincipal");
    if (f->text == NULL || (uid != NULL && strcmp(uid, f->text) == 0)) {
        return true;
    }
    return f->held && str_eq_opt(json_string_value(json_object_get(g, "GranteePrincipal")), f->text) &&
           str_eq_opt(uid, f->uid[0] != '\0' ? f->uid : NULL);
}

struct grants_page {
    json_t *items; /* the grants listed (views) */
    bool truncated;
    char last[KMS_GRANT_ID_LEN + 1]; /* id of the last grant listed: the next marker */
};

/*
 * Takes the key named by r->key_id, authorizes ListGrants and collects the page after `marker`
 * ("" for the first) matching r->grant_id and the grantee filter; releases the key before
 * returning. On failure p->items is NULL.
 */
static coffer_err grants_page_collect(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                                      const char *marker, const struct grantee_filter *grantee,
                                      struct grants_page *p)
{
    struct kms_key *k;
    coffer_err rc = COFFER_OK;
    bool started = marker[0] == '\0';
    size_t limit = r->has_limit ? (size_t)r->limit : LIST_GRANTS_DEFAULT;
    TRY(kms_acquire(svc, call, r->key_id, KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:ListGrants", .r = r}));
    if ((p->items = json_array()) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    size_t i;
    const json_t *g;
    json_array_foreach(k->grants, i, g)
    {
        const char *id = json_string_value(json_object_get(g, "GrantId"));
        if (!started) {
            started = strcmp(id, marker) == 0;
            continue;
        }
        if ((r->grant_id != NULL && strcmp(id, r->grant_id) != 0) || !grantee_filter_match(grantee, g)) {
            continue;
        }
        if (json_array_size(p->items) == limit) {
            p->truncated = true;
            break;
        }
        if (json_array_append_new(p->items, grant_view(g)) != 0) {
            rc = kms_nomem();
            goto out;
        }
        snprintf(p->last, sizeof(p->last), "%s", id);
    }
    if (!started) {
        FAIL_OUT(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r->marker);
    }
out:
    kms_release(svc);
    if (rc != COFFER_OK) {
        json_decref(p->items);
        p->items = NULL;
    }
    return rc;
}

coffer_err kms_op_ListGrants(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "GrantId", "GranteePrincipal", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    char marker[KMS_GRANT_ID_LEN + 1] = "";
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListGrants, call->input, &r));
    if (r.grant_id != NULL && !kms_grant_id_valid(r.grant_id)) {
        return coffer_fail(COFFER_ERR_INVALID_GRANT_ID, "Invalid grant ID %.128s", r.grant_id);
    }
    if (r.marker != NULL) {
        TRY(kms_marker_decode(r.marker, marker, sizeof(marker)));
        if (!kms_grant_id_valid(marker)) {
            return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
        }
    }
    struct grantee_filter grantee;
    TRY(grantee_filter_init(svc, r.grantee_principal, &grantee)); /* reads the store: before the key lock */
    struct grants_page p = {.items = NULL};
    TRY(grants_page_collect(svc, call, &r, marker, &grantee, &p));
    return paged_grants_output(svc, call, p.items, p.truncated, p.last);
}

struct retirable_scan {
    const char *principal; /* the RetiringPrincipal ARN asked about */
    const char *uid;       /* the unique id it stands for now; NULL when it is not bound */
    size_t limit;
    json_t *items;
    char last[STORE_KEY_BUF];
    bool truncated;
};

static coffer_err retirable_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct retirable_scan *s = ctx;
    json_t *g = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    coffer_err rc = COFFER_OK;
    if (!str_eq_opt(json_string_value(json_object_get(g, "RetiringPrincipal")), s->principal) ||
        !str_eq_opt(kms_grant_principal_id(g, "RetiringPrincipal"), s->uid)) {
        goto out; /* another ARN bound to the same entity, or a hash collision: not this principal's */
    }
    if (json_array_size(s->items) == s->limit) {
        s->truncated = true;
        rc = STORE_SCAN_STOP;
        goto out;
    }
    if (json_array_append_new(s->items, grant_view(g)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    snprintf(s->last, sizeof(s->last), "%s", key);
out:
    json_decref(g);
    return rc;
}

/* The 12-digit account of an IAM or STS principal ARN, or "" when it names none. */
static void principal_account(const char *arn, char out[API_ACCOUNT_ID_LEN + 1])
{
    out[0] = '\0';
    if (strncmp(arn, "arn:aws:iam::", 13) != 0 && strncmp(arn, "arn:aws:sts::", 13) != 0) {
        return;
    }
    const char *a = arn + 13;
    if (strspn(a, "0123456789") == API_ACCOUNT_ID_LEN && a[API_ACCOUNT_ID_LEN] == ':') {
        memcpy(out, a, API_ACCOUNT_ID_LEN);
        out[API_ACCOUNT_ID_LEN] = '\0';
    }
}

/*
 * ListRetirableGrants (AWS: "You must specify a principal in your AWS account"): a principal of
 * another account is refused with AccessDeniedException, so no account learns another's grants.
 * The grants listed may sit on keys of any account, as in AWS. An IAM user or role is the
 * entity holding the ARN now: only grants bound to it are listed, none for an ARN no entity
 * holds.
 */
coffer_err kms_op_ListRetirableGrants(void *state, struct api_call *call)
{
    static const char *const audit[] = {"RetiringPrincipal", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    char start[STORE_KEY_BUF] = "", prefix[128], acct[API_ACCOUNT_ID_LEN + 1];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListRetirableGrants, call->input, &r));
    TRY(kms_authorize_plain(svc, call, "kms:ListRetirableGrants", "*", &r));
    const char *principal = r.retiring_principal != NULL ? r.retiring_principal : call->caller->principal_arn;
    principal_account(principal, acct);
    if (strcmp(acct, call->caller->account_id) != 0) {
        return coffer_fail(
            COFFER_ERR_ACCESS_DENIED,
            "User: %s is not authorized to perform: kms:ListRetirableGrants for principal: %.256s "
            "because it is not in the caller's account",
            call->caller->principal_arn, principal);
    }
    char uid[POLICY_UID_MAX];
    coffer_err rc = authz_resolve_principal(svc->az, principal, uid);
    if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
        /* Nobody holds the ARN: nothing is retirable by it, and no listing of it has a next page. */
        coffer_clear_err();
        if (r.marker != NULL) {
            return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
        }
        json_t *none = json_array();
        return none != NULL ? paged_output(call, none, false, "") : kms_nomem();
    }
    TRY(rc);
    rgrant_prefix(prefix, sizeof(prefix), uid[0] != '\0' ? uid : principal);
    if (r.marker != NULL) {
        TRY(kms_marker_decode(r.marker, start, sizeof(start)));
        if (strncmp(start, prefix, strlen(prefix)) != 0) {
            return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
        }
    }
    struct retirable_scan s = {
        .principal = principal,
        .uid = uid[0] != '\0' ? uid : NULL,
        .limit = r.has_limit ? (size_t)r.limit : LIST_GRANTS_DEFAULT,
        .items = json_array(),
    };
    if (s.items == NULL) {
        return kms_nomem();
    }
    rc = store_scan(svc->st, prefix, start, 0, retirable_cb, &s);
    if (rc != COFFER_OK) {
        json_decref(s.items);
        return rc;
    }
    return paged_grants_output(svc, call, s.items, s.truncated, s.last);
}

/* ------------------------------------------------------------------------------------------ */
/* Retiring-principal index: key deletion and the first start over older data                 */
/* ------------------------------------------------------------------------------------------ */

struct grant_keys {
    json_t *keys;  /* store keys to delete (or, for the backfill, index keys) */
    json_t *texts; /* backfill only: the record text of each index key */
};

static coffer_err grant_keys_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct grant_keys *gk = ctx;
    char ikey[STORE_KEY_BUF];
    json_t *g = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    bool indexed = g != NULL && kms_grant_index_key(ikey, sizeof(ikey), g, key);
    json_decref(g);
    if (gk->texts == NULL) {
        if (json_array_append_new(gk->keys, json_string(key)) != 0 ||
            (indexed && json_array_append_new(gk->keys, json_string(ikey)) != 0)) {
            return kms_nomem();
        }
        return COFFER_OK;
    }
    if (indexed &&
        (json_array_append_new(gk->keys, json_string(ikey)) != 0 ||
         json_array_append_new(gk->texts, json_stringn((const char *)value.ptr, value.len)) != 0)) {
        return kms_nomem();
    }
    return COFFER_OK;
}

/* Deletes `key` in t; absent is fine. */
static coffer_err delete_if_present(store_txn *t, const char *key)
{
    coffer_err rc = store_txn_delete(t, key);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        return COFFER_OK;
    }
    return rc;
}

coffer_err kms_grants_delete_in(store_txn *t, const char *acct, const char *region, const char *key_id)
{
    char prefix[256];
    struct grant_keys gk = {.keys = json_array()};
    if (gk.keys == NULL) {
        return kms_nomem();
    }
    kms_grant_prefix(prefix, sizeof(prefix), acct, region, key_id);
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_txn_scan(t, prefix, NULL, 0, grant_keys_cb, &gk));
    size_t i;
    const json_t *k;
    json_array_foreach(gk.keys, i, k)
    {
        /* No index entry: tolerated, the grant record is what matters. */
        TRY_OUT(delete_if_present(t, json_string_value(k)));
    }
out:
    json_decref(gk.keys);
    return rc;
}

static coffer_err key_list_cb(void *ctx, const char *key, coffer_cursor value)
{
    (void)value;
    return json_array_append_new(ctx, json_string(key)) == 0 ? COFFER_OK : kms_nomem();
}

/*
 * Once per store, in one transaction: every index entry of an older layout is dropped and the
 * index rebuilt from the grant records. Grants not yet bound are indexed by ARN here and moved
 * to their bound id when kms_service_bind_principals binds them.
 */
coffer_err kms_grants_index_ensure(store *st)
{
    store_txn *t = NULL;
    coffer_buf done = COFFER_BUF_INIT;
    struct grant_keys gk = {.keys = json_array(), .texts = json_array()};
    json_t *stale = json_array();
    coffer_err rc = COFFER_OK;
    if (gk.keys == NULL || gk.texts == NULL || stale == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(store_txn_begin(st, &t));
    rc = store_txn_get(t, RGRANT_INDEX_DONE, &done);
    if (rc == COFFER_OK) {
        goto out; /* built once, then kept by every change */
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    TRY_OUT(store_txn_scan(t, RGRANT_PREFIX, NULL, 0, key_list_cb, stale));
    for (size_t i = 0; i < json_array_size(stale); i++) {
        TRY_OUT(store_txn_delete(t, json_string_value(json_array_get(stale, i))));
    }
    TRY_OUT(delete_if_present(t, RGRANT_INDEX_V1));
    TRY_OUT(store_txn_scan(t, "kms/grant/", NULL, 0, grant_keys_cb, &gk));
    for (size_t i = 0; i < json_array_size(gk.keys); i++) {
        TRY_OUT(store_txn_put(t, json_string_value(json_array_get(gk.keys, i)),
                              coffer_cursor_from_str(json_string_value(json_array_get(gk.texts, i)))));
    }
    TRY_OUT(store_txn_put(t, RGRANT_INDEX_DONE, coffer_cursor_from_str("1")));
    rc = store_txn_commit(t);
    t = NULL;
out:
    store_txn_abort(t);
    coffer_buf_free(&done);
    json_decref(gk.keys);
    json_decref(gk.texts);
    json_decref(stale);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* RetireGrant, RevokeGrant                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* wmu held: removes grant `index` of k durably, then from the cache. */
static coffer_err grant_remove(struct kms_service *svc, struct kms_key *k, size_t index)
{
    char skey[STORE_KEY_BUF];
    const json_t *g = json_array_get(k->grants, index);
    grant_store_key(skey, sizeof(skey), k, json_string_value(json_object_get(g, "GrantId")));
    json_t *list = json_copy(k->grants);
    if (list == NULL || json_array_remove(list, index) != 0) {
        json_decref(list);
        return kms_nomem();
    }
    coffer_err rc = grant_write(svc, skey, g, false); /* g stays alive in k->grants until the swap */
    if (rc != COFFER_OK) {
        json_decref(list);
        return rc;
    }
    grants_swap(svc, k, list);
    return COFFER_OK;
}

static coffer_err grant_not_found(const char *id)
{
    return coffer_fail(COFFER_ERR_NOT_FOUND, "Grant ID %s not found", id);
}

/*
 * Who may retire (kms.md §8, AWS "Retiring and revoking grants"): the retiring principal, the
 * grantee when this very grant includes RetireGrant, the root of the account that created the
 * grant, or a principal whose key or IAM policies allow kms:RetireGrant on the key. Another
 * grant never does: kms_authorize_key does not count grants for kms:RetireGrant.
 */
static coffer_err may_retire(const struct kms_service *svc, const struct api_call *call,
                             const struct kms_key *k, const json_t *g, const struct kms_req *r)
{
    const struct api_caller *c = call->caller;
    char issuing_root[AWS_ROOT_ARN_LEN + 1];
    snprintf(issuing_root, sizeof(issuing_root), "arn:aws:iam::%s:root", c->account_id);
    const char *issuing = json_string_value(json_object_get(g, "IssuingAccount"));
    if (svc->az == NULL || kms_grant_names(g, c, "RetiringPrincipal") ||
        (kms_grant_names(g, c, "GranteePrincipal") && kms_grant_has_op(g, "RetireGrant")) ||
        (c->principal_kind == API_PRINCIPAL_ROOT && issuing != NULL && strcmp(issuing, issuing_root) == 0)) {
        return COFFER_OK;
    }
    return kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:RetireGrant", .r = r});
}

coffer_err kms_op_RetireGrant(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "GrantId", "DryRun", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    struct kms_grant_ref ref;
    char arn[KMS_ARN_MAX];
    const char *key_ref = NULL, *grant_id = NULL;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_RetireGrant, call->input, &r));
    if (r.grant_token != NULL) {
        TRY(kms_grant_token_parse(r.grant_token, &ref));
        if (strcmp(ref.region, call->region) != 0) {
            return coffer_fail(COFFER_ERR_INVALID_GRANT_TOKEN, "Invalid grant token");
        }
        kms_key_arn(arn, sizeof(arn), ref.region, ref.account, ref.key_id);
        key_ref = arn;
        grant_id = ref.grant_id;
    } else if (r.key_id != NULL && r.grant_id != NULL) {
        key_ref = r.key_id;
        grant_id = r.grant_id;
    } else {
        return coffer_fail(COFFER_ERR_VALIDATION, "Grant token OR (grant ID, key ID) must be specified");
    }
    if (!kms_grant_id_valid(grant_id)) {
        return coffer_fail(COFFER_ERR_INVALID_GRANT_ID, "Invalid grant ID %.128s", grant_id);
    }
    TRY(kms_acquire_write(svc, call, key_ref, KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    coffer_err rc = COFFER_OK;
    size_t index = 0;
    const json_t *g = grant_find(k, grant_id, &index);
    if (g == NULL) {
        rc = grant_not_found(grant_id);
        goto out;
    }
    TRY_OUT(may_retire(svc, call, k, g, &r));
    if (r.dry_run) {
        rc = dry_run();
        goto out;
    }
    rc = grant_remove(svc, k, index);
out:
    kms_write_release(svc);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_RevokeGrant(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "GrantId", "DryRun", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_RevokeGrant, call->input, &r));
    if (!kms_grant_id_valid(r.grant_id)) {
        return coffer_fail(COFFER_ERR_INVALID_GRANT_ID, "Invalid grant ID %.128s", r.grant_id);
    }
    TRY(kms_acquire_write(svc, call, r.key_id, KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    coffer_err rc = COFFER_OK;
    size_t index = 0;
    TRY_OUT(kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:RevokeGrant", .r = &r}));
    if (grant_find(k, r.grant_id, &index) == NULL) {
        rc = grant_not_found(r.grant_id);
        goto out;
    }
    if (r.dry_run) {
        rc = dry_run();
        goto out;
    }
    rc = grant_remove(svc, k, index);
out:
    kms_write_release(svc);
    kms_req_clean(&r);
    return rc;
}
