/*
 * Principal binding for key policies and grants. An IAM user or role named in a key policy, as a
 * grantee or as a retiring principal is bound to its unique id ("AIDA...", "AROA...") when the
 * policy or grant is stored, as AWS does: deleting the entity and creating another one with the
 * same name does not hand the new one the old access. The binding is resolved once, on the write
 * path (service -> authz -> IAM directory), and persisted with the record:
 *
 *   key record   "PolicyPrincipals": {"<ARN as written>": "<unique id>"}
 *   grant record "_GranteePrincipalId", "_RetiringPrincipalId": "<unique id>"
 *
 * so evaluation on the hot path compares the caller's unique id with a string already in
 * memory. What the caller reads back (GetKeyPolicy, ListGrants) shows the unique id in place of
 * the ARN once the entity it was bound to no longer holds that ARN, as AWS shows it.
 *
 * Key policies and grants written before binding existed are bound once at start
 * (kms_service_bind_principals) to the entities holding their names then, and persisted; a name
 * with no entity binds nobody. A record that start missed (written by an older node meanwhile)
 * is bound when the key is loaded, and its map persisted with the next write of the key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_internal.h"

#define KMS_INVALID_PRINCIPALS "Policy contains a statement with one or more invalid principals."

struct collect {
    const struct kms_service *svc;
    json_t *map;
    bool strict; /* a missing user or role is an error (else it stays unbound: nobody) */
};

static coffer_err collect_one(void *arg, json_t *value)
{
    struct collect *c = arg;
    const char *arn = json_string_value(value);
    char uid[POLICY_UID_MAX];
    if (!policy_principal_bindable(arn) || json_object_get(c->map, arn) != NULL) {
        return COFFER_OK;
    }
    coffer_err rc = authz_resolve_principal(c->svc->az, arn, uid);
    if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
        return c->strict ? coffer_fail(COFFER_ERR_MALFORMED_POLICY, KMS_INVALID_PRINCIPALS) : COFFER_OK;
    }
    TRY(rc);
    if (uid[0] != '\0' && json_object_set_new(c->map, arn, json_string(uid)) != 0) {
        return kms_nomem();
    }
    return COFFER_OK;
}

coffer_err kms_policy_principals(const struct kms_service *svc, const char *text, bool strict, json_t **out)
{
    *out = NULL;
    json_t *doc = json_loads(text, 0, NULL);
    struct collect c = {.svc = svc, .map = json_object(), .strict = strict};
    coffer_err rc = COFFER_OK;
    if (doc == NULL || c.map == NULL) {
        rc = doc == NULL ? coffer_fail(COFFER_ERR_MALFORMED_POLICY, "The policy document is not valid JSON.")
                         : kms_nomem();
        goto out;
    }
    TRY_OUT(policy_visit_aws_principals(doc, collect_one, &c));
    *out = c.map;
    c.map = NULL;
out:
    json_decref(doc);
    json_decref(c.map);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Compiling a stored key policy                                                              */
/* ------------------------------------------------------------------------------------------ */

struct bind_lookup {
    const struct kms_service *svc;
    const json_t *map;        /* the record's PolicyPrincipals; NULL for a record without */
    char uid[POLICY_UID_MAX]; /* the last resolved id (lookup results are borrowed) */
};

static const char *bind_lookup(void *ctx, const char *arn)
{
    struct bind_lookup *b = ctx;
    if (b->map != NULL) {
        return json_string_value(json_object_get(b->map, arn)); /* absent: bound to nobody */
    }
    /* A record from before binding: bind to the entity holding the name now. */
    if (authz_resolve_principal(b->svc->az, arn, b->uid) != COFFER_OK || b->uid[0] == '\0') {
        return NULL; /* no such entity (or unreadable): bound to nobody */
    }
    return b->uid;
}

coffer_err kms_key_policy_compile(const struct kms_service *svc, const json_t *rec, policy **out)
{
    policy *p = NULL;
    TRY(kms_policy_compile(json_string_value(json_object_get(rec, "Policy")), &p));
    const json_t *map = json_object_get(rec, "PolicyPrincipals");
    if (svc == NULL || !authz_resolves_principals(svc->az)) {
        *out = p; /* nothing to resolve against: names stay names */
        return COFFER_OK;
    }
    struct bind_lookup b = {.svc = svc, .map = json_is_object(map) ? map : NULL};
    coffer_err rc = policy_bind_principals(p, bind_lookup, &b);
    if (rc != COFFER_OK) {
        policy_free(p);
        return rc;
    }
    *out = p;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* What callers read back                                                                     */
/* ------------------------------------------------------------------------------------------ */

/*
 * Is `uid` (bound to `arn`) still the entity holding `arn`? *current is false when nobody holds
 * it now. A failed lookup is an error, not "not current": the policy shown would be wrong.
 */
static coffer_err binding_current(const struct kms_service *svc, const char *arn, const char *uid,
                                  bool *current)
{
    char now[POLICY_UID_MAX];
    *current = false;
    coffer_err rc = authz_resolve_principal(svc->az, arn, now);
    if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
        coffer_clear_err();
        return COFFER_OK;
    }
    TRY(rc);
    *current = strcmp(now, uid) == 0;
    return COFFER_OK;
}

struct display {
    const struct kms_service *svc;
    const json_t *map;
    bool changed;
};

static coffer_err display_one(void *arg, json_t *value)
{
    struct display *d = arg;
    const char *uid = json_string_value(json_object_get(d->map, json_string_value(value)));
    if (uid == NULL) {
        return COFFER_OK;
    }
    bool current;
    TRY(binding_current(d->svc, json_string_value(value), uid, &current));
    if (!current) {
        if (json_string_set(value, uid) != 0) {
            return kms_nomem();
        }
        d->changed = true;
    }
    return COFFER_OK;
}

coffer_err kms_key_policy_text(const struct kms_service *svc, const json_t *rec, char **out)
{
    const char *text = json_string_value(json_object_get(rec, "Policy"));
    const json_t *map = json_object_get(rec, "PolicyPrincipals");
    *out = NULL;
    if (text == NULL) {
        return coffer_fail(COFFER_ERR_STORE, "corrupt key policy");
    }
    json_t *doc = json_object_size(map) > 0 && authz_resolves_principals(svc->az)
                      ? json_loads(text, JSON_PRESERVE_ORDER, NULL)
                      : NULL;
    struct display d = {.svc = svc, .map = map};
    coffer_err rc = COFFER_OK;
    if (doc != NULL) {
        TRY_OUT(policy_visit_aws_principals(doc, display_one, &d));
    }
    /* Untouched policies come back byte for byte as they were put. */
    *out = d.changed ? json_dumps(doc, JSON_PRESERVE_ORDER | JSON_INDENT(2)) : strdup(text);
    if (*out == NULL) {
        rc = kms_nomem();
    }
out:
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Grants                                                                                     */
/* ------------------------------------------------------------------------------------------ */

#define GRANT_ID_MEMBER_MAX 64 /* "_RetiringPrincipalId" and NUL, with room */

/* "GranteePrincipal" -> "_GranteePrincipalId": where a grant keeps the bound id of a member. */
static void grant_id_member(const char *member, char out[GRANT_ID_MEMBER_MAX])
{
    snprintf(out, GRANT_ID_MEMBER_MAX, "_%sId", member);
}

coffer_err kms_grant_bind_principals(const struct kms_service *svc, json_t *g)
{
    static const char *const members[] = {"GranteePrincipal", "RetiringPrincipal"};
    for (size_t i = 0; i < 2; i++) {
        const char *arn = json_string_value(json_object_get(g, members[i]));
        char uid[POLICY_UID_MAX], idm[GRANT_ID_MEMBER_MAX];
        if (arn == NULL) {
            continue;
        }
        coffer_err rc = authz_resolve_principal(svc->az, arn, uid);
        if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
            return coffer_fail(COFFER_ERR_INVALID_ARN, "%s %.256s is not a valid principal.", members[i],
                               arn);
        }
        TRY(rc);
        grant_id_member(members[i], idm);
        if (uid[0] != '\0' && json_object_set_new(g, idm, json_string(uid)) != 0) {
            return kms_nomem();
        }
    }
    return COFFER_OK;
}

const char *kms_grant_principal_id(const json_t *g, const char *member)
{
    char idm[GRANT_ID_MEMBER_MAX];
    grant_id_member(member, idm);
    return json_string_value(json_object_get(g, idm));
}

static coffer_err grant_view_principals(const struct kms_service *svc, json_t *v)
{
    static const char *const members[] = {"GranteePrincipal", "RetiringPrincipal"};
    for (size_t i = 0; i < 2; i++) {
        char idm[GRANT_ID_MEMBER_MAX];
        grant_id_member(members[i], idm);
        const char *uid = json_string_value(json_object_get(v, idm));
        const char *arn = json_string_value(json_object_get(v, members[i]));
        if (uid != NULL && arn != NULL) {
            bool current;
            TRY(binding_current(svc, arn, uid, &current));
            if (!current && json_object_set_new(v, members[i], json_string(uid)) != 0) {
                return kms_nomem();
            }
        }
        json_object_del(v, idm);
    }
    return COFFER_OK;
}

coffer_err kms_grants_view_principals(const struct kms_service *svc, json_t *items)
{
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v)
    {
        TRY(grant_view_principals(svc, v));
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Records stored before binding                                                              */
/* ------------------------------------------------------------------------------------------ */

struct unbound_scan {
    const char *kind; /* "key" or "grant" */
    json_t *todo;     /* {"store key": record} needing a binding */
};

static bool grant_unbound(const json_t *g)
{
    static const char *const members[] = {"GranteePrincipal", "RetiringPrincipal"};
    for (size_t i = 0; i < 2; i++) {
        if (policy_principal_bindable(json_string_value(json_object_get(g, members[i]))) &&
            kms_grant_principal_id(g, members[i]) == NULL) {
            return true;
        }
    }
    return false;
}

static coffer_err unbound_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct unbound_scan *s = ctx;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    bool todo = false;
    if (json_is_object(rec) && strcmp(s->kind, "key") == 0) {
        todo = json_is_string(json_object_get(rec, "Policy")) &&
               json_object_get(rec, "PolicyPrincipals") == NULL;
    } else if (json_is_object(rec)) {
        todo = json_is_string(json_object_get(rec, "GrantId")) && grant_unbound(rec);
    }
    coffer_err rc = COFFER_OK;
    if (todo && json_object_set(s->todo, key, rec) != 0) {
        rc = kms_nomem();
    }
    json_decref(rec);
    return rc;
}

/* Binds a grant stored before binding; a principal gone since is bound to nobody. */
static coffer_err grant_bind_existing(const struct kms_service *svc, json_t *g)
{
    static const char *const members[] = {"GranteePrincipal", "RetiringPrincipal"};
    for (size_t i = 0; i < 2; i++) {
        const char *arn = json_string_value(json_object_get(g, members[i]));
        char uid[POLICY_UID_MAX], idm[GRANT_ID_MEMBER_MAX];
        if (!policy_principal_bindable(arn) || kms_grant_principal_id(g, members[i]) != NULL) {
            continue;
        }
        coffer_err rc = authz_resolve_principal(svc->az, arn, uid);
        if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
            snprintf(uid, sizeof(uid), "-");
        } else if (rc != COFFER_OK) {
            return rc;
        }
        grant_id_member(members[i], idm);
        if (json_object_set_new(g, idm, json_string(uid)) != 0) {
            return kms_nomem();
        }
    }
    return COFFER_OK;
}

/* Binds the principals of one stored record of `kind` and rewrites it, with its index entry, in
 * one transaction. */
static coffer_err bind_record(const struct kms_service *svc, const char *kind, const char *skey, json_t *rec)
{
    char old_ikey[512], ikey[512];
    bool indexed = false;
    char *text = NULL;
    store_txn *t = NULL;
    coffer_err rc = COFFER_OK;
    if (strcmp(kind, "key") == 0) {
        json_t *principals = NULL;
        TRY_OUT(kms_policy_principals(svc, json_string_value(json_object_get(rec, "Policy")), false,
                                      &principals));
        if (json_object_set_new(rec, "PolicyPrincipals", principals) != 0) {
            rc = kms_nomem();
            goto out;
        }
    } else {
        /* The retiring-principal index is keyed by the binding: the entry moves with it. */
        indexed = kms_grant_index_key(old_ikey, sizeof(old_ikey), rec, skey);
        TRY_OUT(grant_bind_existing(svc, rec));
        indexed = indexed && kms_grant_index_key(ikey, sizeof(ikey), rec, skey);
    }
    text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(store_txn_begin(svc->st, &t));
    TRY_OUT(store_txn_put(t, skey, coffer_cursor_from_str(text)));
    if (indexed) {
        rc = store_txn_delete(t, old_ikey);
        if (rc == COFFER_ERR_NOT_FOUND) {
            /* No entry under the old binding: nothing to move, the new one is written below. */
            coffer_clear_err();
            rc = COFFER_OK;
        }
        TRY_OUT(rc);
        TRY_OUT(store_txn_put(t, ikey, coffer_cursor_from_str(text)));
    }
    rc = store_txn_commit(t);
    t = NULL; /* commit frees the transaction, committed or not */
out:
    store_txn_abort(t);
    free(text);
    return rc;
}

static coffer_err bind_existing(const struct kms_service *svc, const char *kind)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "kms/%s/", kind);
    struct unbound_scan s = {.kind = kind, .todo = json_object()};
    if (s.todo == NULL) {
        return kms_nomem();
    }
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_scan(svc->st, prefix, NULL, 0, unbound_cb, &s));
    const char *skey;
    json_t *rec;
    json_object_foreach(s.todo, skey, rec)
    {
        TRY_OUT(bind_record(svc, kind, skey, rec));
    }
out:
    json_decref(s.todo);
    return rc;
}

coffer_err kms_service_bind_principals(struct kms_service *svc)
{
    ENSURE_REF(svc);
    if (!authz_resolves_principals(svc->az)) {
        return COFFER_OK;
    }
    TRY(bind_existing(svc, "key"));
    return bind_existing(svc, "grant");
}
