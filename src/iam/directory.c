/*
 * The IAM directory (see directory.h): entity records in the store, changes in one transaction
 * each, and the cache of compiled identity policies behind iam_identity_source.
 *
 * The cache maps a principal ARN to an immutable, refcounted list of compiled policies. Any
 * change to any entity bumps a generation and empties the cache (a managed policy change can
 * affect many principals, and changes are rare next to requests). A list built from records
 * read before a change is handed to its caller but not cached, so the cache never holds a list
 * older than the last change.
 */
#include "iam/directory.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/map.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "iam/policy.h"

#define DIR_KEY_MAX 256
#define DIR_CACHE_MAX_ENTRIES 8192 /* beyond this the cache starts over: memory stays bounded */
#define DIR_ID_ATTEMPTS 8
#define DIR_UNIQUE_ID_CHARS 17 /* random base32 characters after the "AIDA"/"AROA"/"ANPA" prefix */
#define ARN_MAX 1024

static const char base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* A compiled identity-policy list shared by the cache and the requests holding it. */
struct plist {
    atomic_int refs;
    policy **items;
    size_t n;
    char uid[POLICY_UID_MAX]; /* the entity's unique id; "" when it does not exist */
};

struct iam_directory {
    store *st;             /* borrowed */
    iam_creds *creds;      /* borrowed */
    pthread_rwlock_t lock; /* guards cache and gen; readers are requests */
    coffer_map cache;      /* canonical principal -> struct plist * (one reference held) */
    uint64_t gen;
    struct iam_limits limits;
};

static const char *const kind_prefix[] = {"iam/user/", "iam/role/"};
static const char *const kind_arn_type[] = {"user", "role"};
static const char *const kind_noun[] = {"user", "role"};

/* ---------------------------------------------------------------------------------------------
 * Names, ids, ARNs
 * ------------------------------------------------------------------------------------------- */

bool iam_name_valid(const char *name, size_t max)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isalnum(c) || c == '_' || strchr("+=,.@-", c) != NULL)) {
            return false;
        }
    }
    return true;
}

static bool path_valid(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > IAM_DIR_PATH_MAX || p[0] != '/' || p[n - 1] != '/') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static bool account_valid(const char *a)
{
    if (a == NULL || strlen(a) != AWS_ACCOUNT_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < AWS_ACCOUNT_ID_LEN; i++) {
        if (a[i] < '0' || a[i] > '9') {
            return false;
        }
    }
    return true;
}

bool iam_arn_parse(const char *arn, const char *resource_type, char acct[AWS_ACCOUNT_ID_LEN + 1],
                   char name[IAM_DIR_POLICY_NAME_MAX + 1])
{
    static const char prefix[] = "arn:aws:iam::";
    if (arn == NULL || strncmp(arn, prefix, sizeof(prefix) - 1) != 0) {
        return false;
    }
    const char *a = arn + sizeof(prefix) - 1;
    if (strlen(a) < AWS_ACCOUNT_ID_LEN + 1 || a[AWS_ACCOUNT_ID_LEN] != ':') {
        return false;
    }
    memcpy(acct, a, AWS_ACCOUNT_ID_LEN);
    acct[AWS_ACCOUNT_ID_LEN] = '\0';
    if (!account_valid(acct)) {
        return false;
    }
    const char *res = a + AWS_ACCOUNT_ID_LEN + 1;
    size_t tl = strlen(resource_type);
    if (strncmp(res, resource_type, tl) != 0 || res[tl] != '/') {
        return false;
    }
    const char *last = strrchr(res, '/') + 1;
    if (!iam_name_valid(last, IAM_DIR_POLICY_NAME_MAX)) {
        return false;
    }
    snprintf(name, IAM_DIR_POLICY_NAME_MAX + 1, "%s", last);
    return true;
}

/* `prefix` + 17 base32 characters (85 random bits), the shape of IAM unique ids. */
static coffer_err random_id(const char *prefix, char *out, size_t cap)
{
    uint8_t r[DIR_UNIQUE_ID_CHARS];
    size_t plen = strlen(prefix);
    ENSURE(cap > plen + sizeof(r), COFFER_ERR_INTERNAL);
    TRY(crypto_random(r, sizeof(r)));
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < sizeof(r); i++) {
        out[plen + i] = base32_alphabet[r[i] & 31];
    }
    out[plen + sizeof(r)] = '\0';
    return COFFER_OK;
}

static coffer_err record_key(const char *prefix, const char *acct, const char *name, char out[DIR_KEY_MAX])
{
    int n = snprintf(out, DIR_KEY_MAX, "%s%s/", prefix, acct);
    ENSURE(n > 0 && n < DIR_KEY_MAX, COFFER_ERR_INTERNAL);
    size_t len = (size_t)n, nl = strlen(name);
    ENSURE(len + nl < DIR_KEY_MAX, COFFER_ERR_VALIDATION);
    for (size_t i = 0; i < nl; i++) {
        out[len + i] = (char)tolower((unsigned char)name[i]);
    }
    out[len + nl] = '\0';
    return COFFER_OK;
}

static void iso_time(int64_t now_s, char out[32])
{
    coffer_time_iso8601(now_s, out, 32);
}

/* ---------------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------------- */

static coffer_err parse_record(coffer_cursor text, json_t **out)
{
    json_t *j = json_loadb((const char *)text.ptr, text.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return coffer_fail(COFFER_ERR_STORE, "malformed IAM record");
    }
    *out = j;
    return COFFER_OK;
}

static coffer_err txn_load(store_txn *t, const char *key, json_t **out)
{
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = store_txn_get(t, key, &b);
    if (rc == COFFER_OK) {
        rc = parse_record(coffer_buf_cursor(&b), out);
    }
    coffer_buf_free(&b);
    return rc;
}

static coffer_err load(store *st, const char *key, json_t **out)
{
    coffer_buf b = COFFER_BUF_INIT;
    coffer_err rc = store_get(st, key, &b);
    if (rc == COFFER_OK) {
        rc = parse_record(coffer_buf_cursor(&b), out);
    }
    coffer_buf_free(&b);
    return rc;
}

static coffer_err txn_save(store_txn *t, const char *key, const json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "cannot serialise an IAM record");
    }
    coffer_err rc = store_txn_put(t, key, coffer_cursor_from_str(text));
    free(text);
    return rc;
}

/* The API view of a record: a copy without the internal "_" members. */
static json_t *view(const json_t *rec)
{
    json_t *v = json_object();
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)rec, k, val)
    {
        if (k[0] != '_') {
            json_object_set(v, k, val);
        }
    }
    return v;
}

static coffer_err no_such(enum iam_kind kind, const char *name)
{
    return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "The %s with name %s cannot be found.", kind_noun[kind],
                       name);
}

static json_t *member_obj(json_t *rec, const char *name)
{
    json_t *o = json_object_get(rec, name);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(rec, name, o);
    }
    return o;
}

static json_t *member_arr(json_t *rec, const char *name)
{
    json_t *a = json_object_get(rec, name);
    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(rec, name, a);
    }
    return a;
}

/* ---------------------------------------------------------------------------------------------
 * Compiled-policy cache and the identity source
 * ------------------------------------------------------------------------------------------- */

static void plist_release(struct plist *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        policy_free(l->items[i]);
    }
    free(l->items);
    free(l);
}

static void plist_release_value(void *l)
{
    plist_release(l);
}

static void cache_flush_locked(struct iam_directory *d)
{
    coffer_map_clean(&d->cache);
}

void iam_directory_invalidate(iam_directory *d)
{
    if (d == NULL) {
        return;
    }
    pthread_rwlock_wrlock(&d->lock);
    d->gen++;
    cache_flush_locked(d);
    pthread_rwlock_unlock(&d->lock);
}

static coffer_err plist_add(struct plist *l, const char *doc, size_t *cap)
{
    policy *p = NULL;
    if (policy_compile_ex(coffer_cursor_from_str(doc), POLICY_COMPILE_NO_PRINCIPAL, &p) != COFFER_OK) {
        /* Documents are validated when stored; one that no longer compiles grants nothing. */
        log_warn("skipping a stored identity policy that does not compile: %s", coffer_last_message());
        return COFFER_OK;
    }
    if (l->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        policy **items = realloc(l->items, ncap * sizeof(*items));
        if (items == NULL) {
            policy_free(p);
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        l->items = items;
        *cap = ncap;
    }
    l->items[l->n++] = p;
    return COFFER_OK;
}

/* The unique id of a user or role record ("" when the record has none). */
static const char *entity_uid(enum iam_kind kind, const json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, kind == IAM_KIND_USER ? "UserId" : "RoleId"));
    return id != NULL ? id : "";
}

/* Builds the list of a user or role from its records (none when it does not exist). */
static coffer_err plist_build(struct iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                              struct plist **out)
{
    coffer_err rc = COFFER_OK;
    json_t *rec = NULL;
    size_t cap = 0;
    char key[DIR_KEY_MAX];
    struct plist *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    atomic_init(&l->refs, 1);
    TRY_OUT(record_key(kind_prefix[kind], acct, name, key));
    rc = load(d->st, key, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = COFFER_OK;
        goto done;
    }
    TRY_OUT(rc);
    snprintf(l->uid, sizeof(l->uid), "%s", entity_uid(kind, rec));
    const char *pname;
    json_t *doc;
    json_object_foreach(member_obj(rec, "_policies"), pname, doc)
    {
        if (json_is_string(doc)) {
            TRY_OUT(plist_add(l, json_string_value(doc), &cap));
        }
    }
    size_t i;
    json_t *arn;
    json_array_foreach(member_arr(rec, "_attached"), i, arn)
    {
        char pacct[AWS_ACCOUNT_ID_LEN + 1], pn[IAM_DIR_POLICY_NAME_MAX + 1], pkey[DIR_KEY_MAX];
        json_t *prec = NULL;
        if (!iam_arn_parse(json_string_value(arn), "policy", pacct, pn)) {
            continue;
        }
        TRY_OUT(record_key("iam/policy/", pacct, pn, pkey));
        coffer_err lrc = load(d->st, pkey, &prec);
        if (lrc == COFFER_ERR_NOT_FOUND) {
            continue;
        }
        TRY_OUT(lrc);
        const char *text = json_string_value(json_object_get(prec, "_document"));
        rc = text ? plist_add(l, text, &cap) : COFFER_OK;
        json_decref(prec);
        TRY_OUT(rc);
    }
done:
    *out = l;
    l = NULL;
out:
    plist_release(l);
    json_decref(rec);
    return rc;
}

/* Maps a principal ARN to the user or role whose policies apply. */
static bool principal_target(const char *arn, enum iam_kind *kind, char acct[AWS_ACCOUNT_ID_LEN + 1],
                             char name[IAM_DIR_POLICY_NAME_MAX + 1])
{
    if (iam_arn_parse(arn, "user", acct, name)) {
        *kind = IAM_KIND_USER;
        return true;
    }
    if (iam_arn_parse(arn, "role", acct, name)) {
        *kind = IAM_KIND_ROLE;
        return true;
    }
    /* arn:aws:sts::ACCT:assumed-role/ROLE/SESSION: the role's policies */
    static const char sts[] = "arn:aws:sts::";
    if (arn != NULL && strncmp(arn, sts, sizeof(sts) - 1) == 0) {
        const char *a = arn + sizeof(sts) - 1;
        static const char ar[] = ":assumed-role/";
        if (strlen(a) > AWS_ACCOUNT_ID_LEN + sizeof(ar) - 1 &&
            strncmp(a + AWS_ACCOUNT_ID_LEN, ar, sizeof(ar) - 1) == 0) {
            memcpy(acct, a, AWS_ACCOUNT_ID_LEN);
            acct[AWS_ACCOUNT_ID_LEN] = '\0';
            const char *r = a + AWS_ACCOUNT_ID_LEN + sizeof(ar) - 1;
            const char *slash = strchr(r, '/');
            size_t n = slash ? (size_t)(slash - r) : strlen(r);
            if (!account_valid(acct) || n == 0 || n > IAM_DIR_NAME_MAX) {
                return false;
            }
            memcpy(name, r, n);
            name[n] = '\0';
            *kind = IAM_KIND_ROLE;
            return iam_name_valid(name, IAM_DIR_NAME_MAX);
        }
    }
    return false;
}

static coffer_err source_policies(void *ctx, const char *principal_arn, struct iam_policy_list *out)
{
    struct iam_directory *d = ctx;
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    memset(out, 0, sizeof(*out));
    enum iam_kind kind;
    char acct[AWS_ACCOUNT_ID_LEN + 1], name[IAM_DIR_POLICY_NAME_MAX + 1];
    if (!principal_target(principal_arn, &kind, acct, name)) {
        return COFFER_OK;
    }
    char canon[ARN_MAX];
    snprintf(canon, sizeof(canon), "%s/%s/%s", acct, kind_arn_type[kind], name);
    for (char *p = canon; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
    }
    pthread_rwlock_rdlock(&d->lock);
    uint64_t gen = d->gen;
    struct plist *l = coffer_map_get(&d->cache, canon);
    if (l != NULL) {
        atomic_fetch_add(&l->refs, 1);
    }
    pthread_rwlock_unlock(&d->lock);
    if (l == NULL) {
        TRY(plist_build(d, kind, acct, name, &l));
        pthread_rwlock_wrlock(&d->lock);
        /* Another request may have built it meanwhile. */
        if (d->gen == gen && coffer_map_get(&d->cache, canon) == NULL) {
            if (coffer_map_count(&d->cache) >= DIR_CACHE_MAX_ENTRIES) {
                cache_flush_locked(d);
            }
            atomic_fetch_add(&l->refs, 1); /* the cache's reference */
            if (coffer_map_put(&d->cache, canon, l) != COFFER_OK) {
                atomic_fetch_sub(&l->refs, 1); /* no memory: handed out, not cached */
            }
        }
        pthread_rwlock_unlock(&d->lock);
    }
    out->items = (const policy *const *)l->items;
    out->n = l->n;
    out->handle = l;
    out->principal_id = l->uid;
    return COFFER_OK;
}

coffer_err iam_dir_principal_uid(iam_directory *d, const char *arn, char uid[POLICY_UID_MAX])
{
    ENSURE(d != NULL && arn != NULL, COFFER_ERR_USAGE);
    enum iam_kind kind;
    char acct[AWS_ACCOUNT_ID_LEN + 1], name[IAM_DIR_POLICY_NAME_MAX + 1], key[DIR_KEY_MAX];
    if (!policy_principal_bindable(arn) || !principal_target(arn, &kind, acct, name)) {
        return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "no such principal %.256s", arn);
    }
    json_t *rec = NULL;
    TRY(record_key(kind_prefix[kind], acct, name, key));
    coffer_err rc = load(d->st, key, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "no such principal %.256s", arn);
    }
    TRY(rc);
    /* The ARN must be the entity's own, path included: "user/a/x" does not name "user/x". */
    const char *own = json_string_value(json_object_get(rec, "Arn"));
    const char *id = entity_uid(kind, rec);
    if (own == NULL || strcmp(own, arn) != 0 || id[0] == '\0') {
        json_decref(rec);
        return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "no such principal %.256s", arn);
    }
    snprintf(uid, POLICY_UID_MAX, "%s", id);
    json_decref(rec);
    return COFFER_OK;
}

static coffer_err source_resolve(void *ctx, const char *arn, char uid[POLICY_UID_MAX])
{
    return iam_dir_principal_uid(ctx, arn, uid);
}

static bool source_account_exists(void *ctx, const char *account_id)
{
    iam_directory *d = ctx;
    char key[DIR_KEY_MAX];
    coffer_buf b = COFFER_BUF_INIT;
    if (!account_valid(account_id)) {
        return false;
    }
    snprintf(key, sizeof(key), "iam/account/%s", account_id);
    coffer_err rc = store_get(d->st, key, &b);
    coffer_buf_free(&b);
    if (rc != COFFER_OK) {
        coffer_clear_err();
    }
    return rc == COFFER_OK;
}

static void source_release(void *ctx, struct iam_policy_list *list)
{
    (void)ctx;
    if (list != NULL) {
        plist_release(list->handle);
        memset(list, 0, sizeof(*list));
    }
}

struct iam_identity_source iam_directory_identity_source(iam_directory *d)
{
    struct iam_identity_source s = {.ctx = d,
                                    .policies = source_policies,
                                    .release = source_release,
                                    .resolve = source_resolve,
                                    .account_exists = source_account_exists};
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

/* The store's change feed: another node changed an IAM entity (user, role, policy, account)
 * or anything may have changed (NULL). Access keys and counters are no part of the cache. */
static void directory_changed(void *ctx, const char *key)
{
    if (key != NULL && (strncmp(key, "iam/access-key/", 15) == 0 || strncmp(key, "iam/count/", 10) == 0)) {
        return;
    }
    iam_directory_invalidate(ctx);
}

coffer_err iam_directory_new(store *st, iam_creds *creds, iam_directory **out)
{
    ENSURE(st != NULL && creds != NULL && out != NULL, COFFER_ERR_USAGE);
    struct iam_directory *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    d->st = st;
    d->creds = creds;
    d->limits = (struct iam_limits)IAM_LIMITS_DEFAULT;
    coffer_map_init(&d->cache, plist_release_value);
    pthread_rwlock_init(&d->lock, NULL);
    coffer_err rc = store_watch(st, "iam/", directory_changed, d);
    if (rc != COFFER_OK) {
        iam_directory_free(d);
        return rc;
    }
    *out = d;
    return COFFER_OK;
}

void iam_directory_set_limits(iam_directory *d, const struct iam_limits *limits)
{
    d->limits = *limits;
}

void iam_directory_free(iam_directory *d)
{
    if (d == NULL) {
        return;
    }
    store_unwatch(d->st, directory_changed, d);
    cache_flush_locked(d);
    pthread_rwlock_destroy(&d->lock);
    free(d);
}

/* ---------------------------------------------------------------------------------------------
 * Quotas: per-account counters ("iam/count/<acct>/users|roles|policies"), written in the
 * transaction that creates or deletes what they count; a store written before them gets its
 * counter rebuilt by one scan. Policy sizes count characters other than white space, as IAM does.
 * ------------------------------------------------------------------------------------------- */

enum count_kind { COUNT_USERS, COUNT_ROLES, COUNT_POLICIES };
static const char *const count_name[] = {"users", "roles", "policies"};
static const char *const count_records[] = {"iam/user/", "iam/role/", "iam/policy/"};
static const char *const count_quota_name[] = {"UsersPerAccount", "RolesPerAccount", "PoliciesPerAccount"};

static coffer_err count_one(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    (void)value;
    (*(size_t *)ctx)++;
    return COFFER_OK;
}

static size_t count_limit(const struct iam_directory *d, enum count_kind k)
{
    return k == COUNT_USERS   ? d->limits.iam_users
           : k == COUNT_ROLES ? d->limits.iam_roles
                              : d->limits.iam_policies;
}

/* Adds delta to the account's counter; going over the quota is LimitExceeded, nothing written. */
static coffer_err count_add(struct iam_directory *d, store_txn *t, enum count_kind k, const char *acct,
                            int delta)
{
    char key[DIR_KEY_MAX], text[32];
    coffer_buf b = COFFER_BUF_INIT;
    size_t n = 0;
    bool parsed = false;
    snprintf(key, sizeof(key), "iam/count/%s/%s", acct, count_name[k]);
    coffer_err rc = store_txn_get(t, key, &b);
    if (rc == COFFER_OK && b.len < sizeof(text)) {
        char *end = NULL;
        memcpy(text, b.data, b.len);
        text[b.len] = '\0';
        n = (size_t)strtoull(text, &end, 10);
        parsed = end != text && *end == '\0';
    }
    coffer_buf_free(&b);
    if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
        return rc;
    }
    if (!parsed) {
        char prefix[DIR_KEY_MAX];
        snprintf(prefix, sizeof(prefix), "%s%s/", count_records[k], acct);
        n = 0;
        TRY(store_txn_scan(t, prefix, NULL, 0, count_one, &n));
    }
    if (delta > 0 && n + (size_t)delta > count_limit(d, k)) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED, "Cannot exceed quota for %s: %zu", count_quota_name[k],
                           count_limit(d, k));
    }
    n = delta < 0 && (size_t)-delta > n ? 0 : n + (size_t)(long)delta;
    snprintf(text, sizeof(text), "%zu", n);
    return store_txn_put(t, key, coffer_cursor_from_str(text));
}

static size_t policy_chars(const char *doc)
{
    size_t n = 0;
    for (const char *p = doc; p != NULL && *p; p++) {
        n += !isspace((unsigned char)*p);
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * One change = one transaction: load a record, edit it, save it, then drop the policy cache
 * ------------------------------------------------------------------------------------------- */

typedef coffer_err (*edit_fn)(struct iam_directory *d, store_txn *t, json_t *rec, void *arg);

/*
 * Loads an entity record in a transaction, lets `fn` check or change it, then saves it (or,
 * with `remove`, deletes it) and commits: every change to an entity is one transaction.
 */
static coffer_err change_entity(struct iam_directory *d, enum iam_kind kind, const char *acct,
                                const char *name, edit_fn fn, void *arg, bool remove)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    json_t *rec = NULL;
    char key[DIR_KEY_MAX];
    if (!iam_name_valid(name, IAM_DIR_NAME_MAX)) {
        return no_such(kind, name ? name : "");
    }
    TRY_OUT(record_key(kind_prefix[kind], acct, name, key));
    TRY_OUT(store_txn_begin(d->st, &t));
    rc = txn_load(t, key, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = no_such(kind, name);
    }
    TRY_OUT(rc);
    TRY_OUT(fn(d, t, rec, arg));
    if (remove) {
        TRY_OUT(count_add(d, t, kind == IAM_KIND_USER ? COUNT_USERS : COUNT_ROLES, acct, -1));
    }
    TRY_OUT(remove ? store_txn_delete(t, key) : txn_save(t, key, rec));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    iam_directory_invalidate(d);
out:
    store_txn_abort(t);
    json_decref(rec);
    return rc;
}

static coffer_err edit_entity(struct iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                              edit_fn fn, void *arg)
{
    return change_entity(d, kind, acct, name, fn, arg, false);
}

static coffer_err get_entity(struct iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                             json_t **rec)
{
    char key[DIR_KEY_MAX];
    if (!iam_name_valid(name, IAM_DIR_NAME_MAX)) {
        return no_such(kind, name ? name : "");
    }
    TRY(record_key(kind_prefix[kind], acct, name, key));
    coffer_err rc = load(d->st, key, rec);
    return rc == COFFER_ERR_NOT_FOUND ? no_such(kind, name) : rc;
}

static coffer_err validate_identity_doc(const char *doc)
{
    policy *p = NULL;
    if (doc == NULL || strlen(doc) > IAM_DIR_POLICY_DOC_MAX) {
        return coffer_fail(COFFER_ERR_MALFORMED_POLICY, "The policy document is missing or too large.");
    }
    TRY(policy_compile_ex(coffer_cursor_from_str(doc), POLICY_COMPILE_NO_PRINCIPAL, &p));
    policy_free(p);
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Accounts
 * ------------------------------------------------------------------------------------------- */

static coffer_err account_put(store_txn *t, const char *acct, const char *name, int64_t now_s)
{
    char key[DIR_KEY_MAX], when[32];
    snprintf(key, sizeof(key), "iam/account/%s", acct);
    iso_time(now_s, when);
    json_t *rec = json_pack("{s:s, s:s, s:s}", "AccountId", acct, "AccountName", name, "CreateDate", when);
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "invalid account name");
    }
    coffer_err rc = txn_save(t, key, rec);
    json_decref(rec);
    return rc;
}

static bool account_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > IAM_DIR_ACCOUNT_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

coffer_err iam_dir_account_ensure(iam_directory *d, const char *account_id, const char *name, int64_t now_s)
{
    ENSURE(d != NULL && account_valid(account_id) && account_name_valid(name), COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf b = COFFER_BUF_INIT;
    char key[DIR_KEY_MAX];
    snprintf(key, sizeof(key), "iam/account/%s", account_id);
    TRY_OUT(store_txn_begin(d->st, &t));
    rc = store_txn_get(t, key, &b);
    if (rc == COFFER_OK) {
        goto out;
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    TRY_OUT(account_put(t, account_id, name, now_s));
    rc = store_txn_commit(t);
    t = NULL;
out:
    store_txn_abort(t);
    coffer_buf_free(&b);
    return rc;
}

static coffer_err random_account(char out[AWS_ACCOUNT_ID_LEN + 1])
{
    uint8_t r[8];
    TRY(crypto_random(r, sizeof(r)));
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(r); i++) {
        v = v << 8 | r[i];
    }
    /* 2^64 is about 1.8e7 times 1e12: the modulo bias is below 1e-7. */
    snprintf(out, 13, "%012llu", (unsigned long long)(v % 1000000000000ull));
    return COFFER_OK;
}

coffer_err iam_dir_account_create(iam_directory *d, const char *name, const char *want_id, int64_t now_s,
                                  char account_id_out[AWS_ACCOUNT_ID_LEN + 1],
                                  char akid_out[IAM_ACCESS_KEY_ID_LEN + 1], coffer_buf *secret_out)
{
    ENSURE(d != NULL && account_id_out != NULL && akid_out != NULL && secret_out != NULL, COFFER_ERR_USAGE);
    if (!account_name_valid(name)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "AccountName must be 1 to %d printable characters",
                           IAM_DIR_ACCOUNT_NAME_MAX);
    }
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf b = COFFER_BUF_INIT;
    char acct[AWS_ACCOUNT_ID_LEN + 1] = "", key[DIR_KEY_MAX], root[AWS_ROOT_ARN_LEN + 1],
                                   akid[IAM_ACCESS_KEY_ID_LEN + 1];
    size_t start = secret_out->len;
    if (want_id != NULL && (!account_valid(want_id) || strcmp(want_id, "000000000000") == 0)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "AccountId must be 12 digits, not the operator account");
    }
    TRY_OUT(store_txn_begin(d->st, &t));
    if (want_id != NULL) {
        snprintf(key, sizeof(key), "iam/account/%s", want_id);
        rc = store_txn_get(t, key, &b);
        if (rc == COFFER_OK) {
            FAIL_OUT(COFFER_ERR_ALREADY_EXISTS, "Account %s already exists.", want_id);
        }
        if (rc != COFFER_ERR_NOT_FOUND) {
            goto out;
        }
        rc = COFFER_OK;
        memcpy(acct, want_id, AWS_ACCOUNT_ID_LEN + 1);
    }
    for (int i = 0; i < DIR_ID_ATTEMPTS && acct[0] == '\0'; i++) {
        char cand[AWS_ACCOUNT_ID_LEN + 1];
        TRY_OUT(random_account(cand));
        snprintf(key, sizeof(key), "iam/account/%s", cand);
        coffer_buf_reset(&b);
        rc = store_txn_get(t, key, &b);
        if (rc == COFFER_ERR_NOT_FOUND && strcmp(cand, "000000000000") != 0) {
            memcpy(acct, cand, sizeof(cand));
            rc = COFFER_OK;
        } else if (rc != COFFER_OK) {
            goto out;
        }
    }
    if (acct[0] == '\0') {
        FAIL_OUT(COFFER_ERR_INTERNAL, "could not allocate a unique account id");
    }
    TRY_OUT(account_put(t, acct, name, now_s));
    snprintf(root, sizeof(root), "arn:aws:iam::%s:root", acct);
    TRY_OUT(iam_creds_create_in(d->creds, t, acct, root, API_PRINCIPAL_ROOT, NULL, akid, secret_out));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    memcpy(account_id_out, acct, 13);
    memcpy(akid_out, akid, 21);
out:
    if (rc != COFFER_OK && secret_out->len > start) {
        coffer_secure_zero(secret_out->data + start, secret_out->len - start);
        secret_out->len = start;
    }
    store_txn_abort(t);
    coffer_buf_free(&b);
    return rc;
}

struct scan_ctx {
    json_t *arr;
    const char *path_prefix;
    struct iam_directory *d;
    bool roles; /* role records: trust policies shown as GetRole shows them */
};

static void trust_view(struct iam_directory *d, const json_t *rec, json_t *v);

static coffer_err scan_collect(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    struct scan_ctx *s = ctx;
    json_t *rec = NULL;
    TRY(parse_record(value, &rec));
    const char *path = json_string_value(json_object_get(rec, "Path"));
    if (s->path_prefix == NULL ||
        (path != NULL && strncmp(path, s->path_prefix, strlen(s->path_prefix)) == 0)) {
        json_t *v = view(rec);
        if (s->roles && v != NULL) {
            trust_view(s->d, rec, v);
        }
        json_array_append_new(s->arr, v);
    }
    json_decref(rec);
    return COFFER_OK;
}

static coffer_err scan_all(struct iam_directory *d, const char *prefix, const char *path_prefix, json_t **out)
{
    struct scan_ctx s = {.arr = json_array(),
                         .path_prefix = path_prefix,
                         .d = d,
                         .roles = strncmp(prefix, "iam/role/", 9) == 0};
    if (s.arr == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = store_scan(d->st, prefix, NULL, 0, scan_collect, &s);
    if (rc != COFFER_OK) {
        json_decref(s.arr);
        return rc;
    }
    *out = s.arr;
    return COFFER_OK;
}

coffer_err iam_dir_account_list(iam_directory *d, json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    return scan_all(d, "iam/account/", NULL, out);
}

/* ---------------------------------------------------------------------------------------------
 * Users and roles
 * ------------------------------------------------------------------------------------------- */

static coffer_err entity_insert(struct iam_directory *d, enum iam_kind kind, const char *acct,
                                const char *name, json_t *rec, json_t **out)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf b = COFFER_BUF_INIT;
    char key[DIR_KEY_MAX];
    TRY_OUT(record_key(kind_prefix[kind], acct, name, key));
    TRY_OUT(store_txn_begin(d->st, &t));
    rc = store_txn_get(t, key, &b);
    if (rc == COFFER_OK) {
        FAIL_OUT(COFFER_ERR_ENTITY_EXISTS, "%s with name %s already exists.",
                 kind == IAM_KIND_USER ? "User" : "Role", name);
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    TRY_OUT(count_add(d, t, kind == IAM_KIND_USER ? COUNT_USERS : COUNT_ROLES, acct, 1));
    TRY_OUT(txn_save(t, key, rec));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    iam_directory_invalidate(d);
    if (out != NULL) {
        *out = view(rec);
    }
out:
    store_txn_abort(t);
    coffer_buf_free(&b);
    return rc;
}

static coffer_err check_name_path(enum iam_kind kind, const char *acct, const char *name, const char **path)
{
    if (!account_valid(acct)) {
        return coffer_fail(COFFER_ERR_USAGE, "invalid account");
    }
    if (!iam_name_valid(name, IAM_DIR_NAME_MAX)) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "1 validation error detected: Value at '%s' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: [\\w+=,.@-]+",
            kind == IAM_KIND_USER ? "userName" : "roleName");
    }
    if (*path == NULL || (*path)[0] == '\0') {
        *path = "/";
    }
    if (!path_valid(*path)) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "The specified value for path is invalid. It must begin and end "
                           "with / and contain only alphanumeric characters and/or / characters.");
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Trust policies: the users and roles they name, bound to their unique ids
 * ------------------------------------------------------------------------------------------- */

struct trust_collect {
    struct iam_directory *d;
    json_t *map;
    bool strict; /* a missing user or role is an error (else left out: it binds nobody) */
};

static coffer_err trust_collect_one(void *arg, json_t *value)
{
    struct trust_collect *c = arg;
    const char *arn = json_string_value(value);
    char uid[POLICY_UID_MAX];
    if (!policy_principal_bindable(arn) || json_object_get(c->map, arn) != NULL) {
        return COFFER_OK;
    }
    coffer_err rc = iam_dir_principal_uid(c->d, arn, uid);
    if (rc == COFFER_ERR_NO_SUCH_ENTITY) {
        return c->strict ? coffer_fail(COFFER_ERR_MALFORMED_POLICY,
                                       "Invalid principal in policy: \"AWS\":\"%.256s\"", arn)
                         : COFFER_OK;
    }
    TRY(rc);
    return json_object_set_new(c->map, arn, json_string(uid)) == 0
               ? COFFER_OK
               : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

/* {"ARN": "unique id"} of the users and roles `doc` names; MalformedPolicyDocument if one is missing. */
static coffer_err trust_principals(struct iam_directory *d, const char *doc, bool strict, json_t **out)
{
    json_t *js = json_loads(doc, 0, NULL);
    struct trust_collect c = {.d = d, .map = json_object(), .strict = strict};
    coffer_err rc = js != NULL && c.map != NULL
                        ? policy_visit_aws_principals(js, trust_collect_one, &c)
                        : coffer_fail(COFFER_ERR_MALFORMED_POLICY, "Syntax errors in policy.");
    json_decref(js);
    if (rc != COFFER_OK) {
        json_decref(c.map);
        return rc;
    }
    *out = c.map;
    return COFFER_OK;
}

/*
 * A role stored before trust policies were bound: bind them now, once, to the users and roles
 * holding the names at this moment, and persist that, so later namesakes never match.
 */
static coffer_err trust_bind_edit(struct iam_directory *d, store_txn *t, json_t *rec, void *arg)
{
    (void)t;
    (void)arg;
    const char *doc = json_string_value(json_object_get(rec, "AssumeRolePolicyDocument"));
    json_t *map = NULL;
    if (json_object_get(rec, "_trust_ids") != NULL || doc == NULL) {
        return COFFER_OK;
    }
    TRY(trust_principals(d, doc, false, &map));
    return json_object_set_new(rec, "_trust_ids", map) == 0 ? COFFER_OK
                                                            : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

struct trust_lookup {
    struct iam_directory *d;
    const json_t *map; /* the role's "_trust_ids"; NULL for a role stored before binding */
    char uid[POLICY_UID_MAX];
};

static const char *trust_lookup_fn(void *ctx, const char *arn)
{
    struct trust_lookup *t = ctx;
    if (t->map != NULL) {
        return json_string_value(json_object_get(t->map, arn));
    }
    /* A role stored before binding: the entity holding the name now. */
    return iam_dir_principal_uid(t->d, arn, t->uid) == COFFER_OK ? t->uid : NULL;
}

struct trust_display {
    struct iam_directory *d;
    const json_t *map;
    bool changed;
};

static coffer_err trust_display_one(void *arg, json_t *value)
{
    struct trust_display *t = arg;
    const char *arn = json_string_value(value);
    const char *uid = json_string_value(json_object_get(t->map, arn));
    char now[POLICY_UID_MAX];
    if (uid != NULL && (iam_dir_principal_uid(t->d, arn, now) != COFFER_OK || strcmp(now, uid) != 0)) {
        t->changed = true;
        return json_string_set(value, uid) == 0 ? COFFER_OK : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

/* A role's trust policy as GetRole shows it: principals deleted since by their unique id, as IAM does. */
static void trust_view(struct iam_directory *d, const json_t *rec, json_t *v)
{
    const json_t *map = json_object_get(rec, "_trust_ids");
    const char *doc = json_string_value(json_object_get(rec, "AssumeRolePolicyDocument"));
    if (json_object_size(map) == 0 || doc == NULL) {
        return;
    }
    json_t *js = json_loads(doc, JSON_PRESERVE_ORDER, NULL);
    struct trust_display t = {.d = d, .map = map};
    if (js != NULL && policy_visit_aws_principals(js, trust_display_one, &t) == COFFER_OK && t.changed) {
        char *text = json_dumps(js, JSON_PRESERVE_ORDER | JSON_COMPACT);
        if (text != NULL) {
            json_object_set_new(v, "AssumeRolePolicyDocument", json_string(text));
        }
        free(text);
    }
    json_decref(js);
}

coffer_err iam_dir_user_create(iam_directory *d, const char *acct, const char *name, const char *path,
                               int64_t now_s, json_t **out)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    TRY(check_name_path(IAM_KIND_USER, acct, name, &path));
    char id[POLICY_UID_MAX], arn[ARN_MAX], when[32];
    TRY(random_id("AIDA", id, sizeof(id)));
    snprintf(arn, sizeof(arn), "arn:aws:iam::%s:user%s%s", acct, path, name);
    iso_time(now_s, when);
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{}, s:[], s:[]}", "Path", path, "UserName", name,
                            "UserId", id, "Arn", arn, "CreateDate", when, "_policies", "_attached", "_keys");
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = entity_insert(d, IAM_KIND_USER, acct, name, rec, out);
    json_decref(rec);
    return rc;
}

coffer_err iam_dir_role_create(iam_directory *d, const char *acct, const char *name, const char *path,
                               const char *trust_doc, int64_t max_session, const char *description,
                               int64_t now_s, json_t **out)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    TRY(check_name_path(IAM_KIND_ROLE, acct, name, &path));
    if (max_session == 0) {
        max_session = IAM_DIR_SESSION_MIN;
    }
    if (max_session < IAM_DIR_SESSION_MIN || max_session > IAM_DIR_SESSION_MAX) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "1 validation error detected: Value '%lld' at 'maxSessionDuration' failed to satisfy "
            "constraint: Member must have value %s",
            (long long)max_session,
            max_session < IAM_DIR_SESSION_MIN ? "greater than or equal to 3600"
                                              : "less than or equal to 43200");
    }
    policy *p = NULL;
    if (trust_doc == NULL || strlen(trust_doc) > IAM_DIR_POLICY_DOC_MAX) {
        return coffer_fail(COFFER_ERR_MALFORMED_POLICY, "The trust policy document is missing or too large.");
    }
    if (policy_chars(trust_doc) > d->limits.iam_trust_doc_chars) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED, "Cannot exceed quota for ACLSizePerRole: %zu",
                           d->limits.iam_trust_doc_chars);
    }
    TRY(policy_compile_ex(coffer_cursor_from_str(trust_doc),
                          POLICY_COMPILE_REQUIRE_PRINCIPAL | POLICY_COMPILE_RESOURCE_OPTIONAL, &p));
    policy_free(p);
    json_t *trust_ids = NULL;
    TRY(trust_principals(d, trust_doc, true, &trust_ids));
    char id[POLICY_UID_MAX], arn[ARN_MAX], when[32];
    TRY(random_id("AROA", id, sizeof(id)));
    snprintf(arn, sizeof(arn), "arn:aws:iam::%s:role%s%s", acct, path, name);
    iso_time(now_s, when);
    json_t *rec =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:{}, s:[]}", "Path", path, "RoleName", name, "RoleId",
                  id, "Arn", arn, "CreateDate", when, "AssumeRolePolicyDocument", trust_doc,
                  "MaxSessionDuration", (json_int_t)max_session, "_policies", "_attached");
    if (rec == NULL || json_object_set_new(rec, "_trust_ids", trust_ids) != 0) {
        json_decref(rec);
        return coffer_fail(COFFER_ERR_VALIDATION, "invalid role fields");
    }
    if (description != NULL && description[0] != '\0') {
        json_object_set_new(rec, "Description", json_string(description));
    }
    coffer_err rc = entity_insert(d, IAM_KIND_ROLE, acct, name, rec, out);
    json_decref(rec);
    return rc;
}

coffer_err iam_dir_get(iam_directory *d, enum iam_kind kind, const char *acct, const char *name, json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(get_entity(d, kind, acct, name, &rec));
    *out = view(rec);
    if (kind == IAM_KIND_ROLE) {
        trust_view(d, rec, *out);
    }
    json_decref(rec);
    return COFFER_OK;
}

coffer_err iam_dir_trust_policy(iam_directory *d, const char *acct, const char *name, policy **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    policy *p = NULL;
    TRY(get_entity(d, IAM_KIND_ROLE, acct, name, &rec));
    coffer_err rc = COFFER_OK;
    if (json_object_get(rec, "_trust_ids") == NULL) {
        json_decref(rec);
        rec = NULL;
        TRY(edit_entity(d, IAM_KIND_ROLE, acct, name, trust_bind_edit, NULL));
        TRY(get_entity(d, IAM_KIND_ROLE, acct, name, &rec));
    }
    const char *doc = json_string_value(json_object_get(rec, "AssumeRolePolicyDocument"));
    if (doc == NULL) {
        FAIL_OUT(COFFER_ERR_STORE, "malformed role record");
    }
    TRY_OUT(policy_compile_ex(coffer_cursor_from_str(doc),
                              POLICY_COMPILE_REQUIRE_PRINCIPAL | POLICY_COMPILE_RESOURCE_OPTIONAL, &p));
    struct trust_lookup tl = {.d = d, .map = json_object_get(rec, "_trust_ids")};
    TRY_OUT(policy_bind_principals(p, trust_lookup_fn, &tl));
    *out = p;
    p = NULL;
out:
    policy_free(p);
    json_decref(rec);
    return rc;
}

/* An entity is deleted only once nothing hangs off it, as IAM requires. */
static coffer_err check_deletable(struct iam_directory *d, store_txn *t, json_t *rec, void *arg)
{
    (void)d;
    (void)t;
    (void)arg;
    if (json_array_size(json_object_get(rec, "_keys")) > 0) {
        return coffer_fail(COFFER_ERR_DELETE_CONFLICT,
                           "Cannot delete entity, must delete access keys first.");
    }
    if (json_object_size(json_object_get(rec, "_policies")) > 0) {
        return coffer_fail(COFFER_ERR_DELETE_CONFLICT, "Cannot delete entity, must delete policies first.");
    }
    if (json_array_size(json_object_get(rec, "_attached")) > 0) {
        return coffer_fail(COFFER_ERR_DELETE_CONFLICT,
                           "Cannot delete entity, must detach all policies first.");
    }
    return COFFER_OK;
}

coffer_err iam_dir_delete(iam_directory *d, enum iam_kind kind, const char *acct, const char *name)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    return change_entity(d, kind, acct, name, check_deletable, NULL, true);
}

coffer_err iam_dir_list(iam_directory *d, enum iam_kind kind, const char *acct, const char *path_prefix,
                        json_t **out)
{
    ENSURE(d != NULL && out != NULL && account_valid(acct), COFFER_ERR_USAGE);
    char prefix[DIR_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "%s%s/", kind_prefix[kind], acct);
    return scan_all(d, prefix, path_prefix, out);
}

/* ---------------------------------------------------------------------------------------------
 * Inline policies
 * ------------------------------------------------------------------------------------------- */

struct inline_arg {
    enum iam_kind kind;
    const char *policy_name;
    const char *doc; /* NULL: delete */
};

static coffer_err inline_edit(struct iam_directory *d, store_txn *t, json_t *rec, void *arg)
{
    (void)t;
    struct inline_arg *a = arg;
    json_t *pols = member_obj(rec, "_policies");
    if (a->doc != NULL) {
        json_t *s = json_string(a->doc);
        if (s == NULL || json_object_set_new(pols, a->policy_name, s) != 0) {
            return coffer_fail(COFFER_ERR_MALFORMED_POLICY, "The policy document is not valid UTF-8.");
        }
        /* IAM's quota is on all inline policies of the entity together. */
        size_t total = 0, max = a->kind == IAM_KIND_USER ? d->limits.iam_user_inline_chars
                                                         : d->limits.iam_role_inline_chars;
        const char *pn;
        json_t *doc;
        json_object_foreach(pols, pn, doc)
        {
            total += policy_chars(json_string_value(doc));
        }
        if (total > max) {
            return coffer_fail(
                COFFER_ERR_LIMIT_EXCEEDED, "Maximum policy size of %zu bytes exceeded for %s %s", max,
                kind_noun[a->kind],
                json_string_value(json_object_get(rec, a->kind == IAM_KIND_USER ? "UserName" : "RoleName")));
        }
        return COFFER_OK;
    }
    if (json_object_del(pols, a->policy_name) != 0) {
        return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "The %s policy with name %s cannot be found.",
                           kind_noun[a->kind], a->policy_name);
    }
    return COFFER_OK;
}

static coffer_err check_policy_name(const char *pname)
{
    if (!iam_name_valid(pname, IAM_DIR_POLICY_NAME_MAX)) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "1 validation error detected: Value at 'policyName' failed to satisfy constraint: Member "
            "must satisfy regular expression pattern: [\\w+=,.@-]+");
    }
    return COFFER_OK;
}

coffer_err iam_dir_inline_put(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                              const char *policy_name, const char *doc)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    TRY(check_policy_name(policy_name));
    TRY(validate_identity_doc(doc));
    struct inline_arg a = {kind, policy_name, doc};
    return edit_entity(d, kind, acct, name, inline_edit, &a);
}

coffer_err iam_dir_inline_get(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                              const char *policy_name, json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(get_entity(d, kind, acct, name, &rec));
    json_t *doc = policy_name ? json_object_get(json_object_get(rec, "_policies"), policy_name) : NULL;
    if (!json_is_string(doc)) {
        json_decref(rec);
        return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "The %s policy with name %s cannot be found.",
                           kind_noun[kind], policy_name ? policy_name : "");
    }
    *out = json_incref(doc);
    json_decref(rec);
    return COFFER_OK;
}

coffer_err iam_dir_inline_delete(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                                 const char *policy_name)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    if (policy_name == NULL) {
        return check_policy_name(policy_name);
    }
    struct inline_arg a = {kind, policy_name, NULL};
    return edit_entity(d, kind, acct, name, inline_edit, &a);
}

coffer_err iam_dir_inline_list(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                               json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(get_entity(d, kind, acct, name, &rec));
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(member_obj(rec, "_policies"), k, v)
    {
        json_array_append_new(arr, json_string(k));
    }
    json_decref(rec);
    *out = arr;
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Managed policies and attachments
 * ------------------------------------------------------------------------------------------- */

static coffer_err policy_not_found(const char *arn)
{
    return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "Policy %s does not exist or is not attachable.",
                       arn ? arn : "");
}

/* The store key of a managed policy of `acct` named by `arn`. */
static coffer_err policy_key(const char *acct, const char *arn, char key[DIR_KEY_MAX])
{
    char pacct[AWS_ACCOUNT_ID_LEN + 1], pn[IAM_DIR_POLICY_NAME_MAX + 1];
    if (!iam_arn_parse(arn, "policy", pacct, pn) || strcmp(pacct, acct) != 0) {
        return policy_not_found(arn);
    }
    return record_key("iam/policy/", pacct, pn, key);
}

coffer_err iam_dir_policy_create(iam_directory *d, const char *acct, const char *name, const char *path,
                                 const char *doc, const char *description, int64_t now_s, json_t **out)
{
    ENSURE(d != NULL && account_valid(acct), COFFER_ERR_USAGE);
    TRY(check_policy_name(name));
    if (path == NULL || path[0] == '\0') {
        path = "/";
    }
    if (!path_valid(path)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "The specified value for path is invalid.");
    }
    TRY(validate_identity_doc(doc));
    if (policy_chars(doc) > d->limits.iam_managed_doc_chars) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED, "Cannot exceed quota for PolicySize: %zu",
                           d->limits.iam_managed_doc_chars);
    }
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf b = COFFER_BUF_INIT;
    json_t *rec = NULL;
    char id[POLICY_UID_MAX], arn[ARN_MAX], when[32], key[DIR_KEY_MAX];
    TRY_OUT(random_id("ANPA", id, sizeof(id)));
    snprintf(arn, sizeof(arn), "arn:aws:iam::%s:policy%s%s", acct, path, name);
    iso_time(now_s, when);
    rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:s, s:s, s:s}", "PolicyName", name, "PolicyId",
                    id, "Arn", arn, "Path", path, "DefaultVersionId", "v1", "AttachmentCount", 0,
                    "PermissionsBoundaryUsageCount", 0, "IsAttachable", 1, "CreateDate", when, "UpdateDate",
                    when, "_document", doc);
    if (rec == NULL) {
        FAIL_OUT(COFFER_ERR_MALFORMED_POLICY, "The policy document is not valid UTF-8.");
    }
    if (description != NULL && description[0] != '\0') {
        json_object_set_new(rec, "Description", json_string(description));
    }
    TRY_OUT(record_key("iam/policy/", acct, name, key));
    TRY_OUT(store_txn_begin(d->st, &t));
    rc = store_txn_get(t, key, &b);
    if (rc == COFFER_OK) {
        FAIL_OUT(COFFER_ERR_ENTITY_EXISTS,
                 "A policy called %s already exists. Duplicate names are not allowed.", name);
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    TRY_OUT(count_add(d, t, COUNT_POLICIES, acct, 1));
    TRY_OUT(txn_save(t, key, rec));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    if (out != NULL) {
        *out = view(rec);
    }
out:
    store_txn_abort(t);
    coffer_buf_free(&b);
    json_decref(rec);
    return rc;
}

/* The stored record of a managed policy; its ARN must match exactly (path included). */
static coffer_err policy_record(struct iam_directory *d, const char *acct, const char *policy_arn,
                                json_t **out)
{
    char key[DIR_KEY_MAX];
    json_t *rec = NULL;
    TRY(policy_key(acct, policy_arn, key));
    coffer_err rc = load(d->st, key, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        return policy_not_found(policy_arn);
    }
    TRY(rc);
    const char *stored = json_string_value(json_object_get(rec, "Arn"));
    if (stored == NULL || strcmp(stored, policy_arn) != 0) {
        json_decref(rec);
        return policy_not_found(policy_arn);
    }
    *out = rec;
    return COFFER_OK;
}

coffer_err iam_dir_policy_document(iam_directory *d, const char *acct, const char *policy_arn, json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(policy_record(d, acct, policy_arn, &rec));
    json_t *doc = json_object_get(rec, "_document");
    *out = json_is_string(doc) ? json_incref(doc) : json_string("");
    json_decref(rec);
    return COFFER_OK;
}

coffer_err iam_dir_policy_get(iam_directory *d, const char *acct, const char *policy_arn, json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(policy_record(d, acct, policy_arn, &rec));
    *out = view(rec);
    json_decref(rec);
    return COFFER_OK;
}

coffer_err iam_dir_policy_delete(iam_directory *d, const char *acct, const char *policy_arn)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    json_t *rec = NULL;
    char key[DIR_KEY_MAX];
    TRY_OUT(policy_key(acct, policy_arn, key));
    TRY_OUT(store_txn_begin(d->st, &t));
    rc = txn_load(t, key, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = policy_not_found(policy_arn);
    }
    TRY_OUT(rc);
    if (json_integer_value(json_object_get(rec, "AttachmentCount")) > 0) {
        FAIL_OUT(COFFER_ERR_DELETE_CONFLICT, "Cannot delete a policy attached to entities.");
    }
    TRY_OUT(count_add(d, t, COUNT_POLICIES, acct, -1));
    TRY_OUT(store_txn_delete(t, key));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    iam_directory_invalidate(d);
out:
    store_txn_abort(t);
    json_decref(rec);
    return rc;
}

coffer_err iam_dir_policy_list(iam_directory *d, const char *acct, json_t **out)
{
    ENSURE(d != NULL && out != NULL && account_valid(acct), COFFER_ERR_USAGE);
    char prefix[DIR_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "iam/policy/%s/", acct);
    return scan_all(d, prefix, NULL, out);
}

struct attach_arg {
    const char *acct;
    const char *arn;
    bool attach;
};

static coffer_err attach_edit(struct iam_directory *d, store_txn *t, json_t *rec, void *arg)
{
    struct attach_arg *a = arg;
    /* The stored policy must carry exactly this ARN (path included). */
    coffer_err rc = COFFER_OK;
    json_t *prec = NULL;
    char key[DIR_KEY_MAX];
    TRY_OUT(policy_key(a->acct, a->arn, key));
    rc = txn_load(t, key, &prec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = COFFER_OK;
    }
    TRY_OUT(rc);
    const char *stored = prec ? json_string_value(json_object_get(prec, "Arn")) : NULL;
    if (stored == NULL || strcmp(stored, a->arn) != 0) {
        FAIL_OUT(COFFER_ERR_NO_SUCH_ENTITY, "Policy %s does not exist or is not attachable.", a->arn);
    }
    json_t *list = member_arr(rec, "_attached");
    size_t i, found = (size_t)-1;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), a->arn) == 0) {
            found = i;
        }
    }
    json_int_t count = json_integer_value(json_object_get(prec, "AttachmentCount"));
    if (a->attach) {
        if (found != (size_t)-1) {
            goto out;
        }
        if (json_array_size(list) >= d->limits.iam_attached) {
            FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED, "Cannot exceed quota for %s: %zu",
                     json_object_get(rec, "RoleName") != NULL ? "PoliciesPerRole" : "PoliciesPerUser",
                     d->limits.iam_attached);
        }
        json_array_append_new(list, json_string(a->arn));
        count++;
    } else {
        if (found == (size_t)-1) {
            FAIL_OUT(COFFER_ERR_NO_SUCH_ENTITY, "Policy %s was not found.", a->arn);
        }
        json_array_remove(list, found);
        count = count > 0 ? count - 1 : 0;
    }
    json_object_set_new(prec, "AttachmentCount", json_integer(count));
    TRY_OUT(txn_save(t, key, prec));
out:
    json_decref(prec);
    return rc;
}

coffer_err iam_dir_attach(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                          const char *policy_arn, bool attach)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    if (policy_arn == NULL) {
        return policy_not_found("");
    }
    struct attach_arg a = {acct, policy_arn, attach};
    return edit_entity(d, kind, acct, name, attach_edit, &a);
}

coffer_err iam_dir_attached_list(iam_directory *d, enum iam_kind kind, const char *acct, const char *name,
                                 json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(get_entity(d, kind, acct, name, &rec));
    json_t *arr = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(member_arr(rec, "_attached"), i, v)
    {
        const char *arn = json_string_value(v);
        const char *slash = arn ? strrchr(arn, '/') : NULL;
        if (slash != NULL) {
            json_array_append_new(arr, json_pack("{s:s, s:s}", "PolicyName", slash + 1, "PolicyArn", arn));
        }
    }
    json_decref(rec);
    *out = arr;
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Access keys
 * ------------------------------------------------------------------------------------------- */

struct key_arg {
    const char *acct;
    const char *akid;                         /* update/delete */
    bool active;                              /* update */
    bool remove;                              /* delete */
    int64_t now_s;                            /* create */
    char new_akid[IAM_ACCESS_KEY_ID_LEN + 1]; /* create: out */
    coffer_buf secret;                        /* create: out (secret buffer) */
    char when[32];
};

static coffer_err key_create_edit(struct iam_directory *d, store_txn *t, json_t *rec, void *arg)
{
    struct key_arg *a = arg;
    json_t *keys = member_arr(rec, "_keys");
    if (json_array_size(keys) >= IAM_DIR_MAX_ACCESS_KEYS) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED, "Cannot exceed quota for AccessKeysPerUser: %d",
                           IAM_DIR_MAX_ACCESS_KEYS);
    }
    const char *arn = json_string_value(json_object_get(rec, "Arn"));
    const char *uid = json_string_value(json_object_get(rec, "UserId"));
    if (arn == NULL || uid == NULL) {
        return coffer_fail(COFFER_ERR_STORE, "malformed IAM user record");
    }
    TRY(iam_creds_create_in(d->creds, t, a->acct, arn, API_PRINCIPAL_USER, uid, a->new_akid, &a->secret));
    iso_time(a->now_s, a->when);
    json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s}", "UserName",
                                          json_string_value(json_object_get(rec, "UserName")), "AccessKeyId",
                                          a->new_akid, "Status", "Active", "CreateDate", a->when));
    return COFFER_OK;
}

static coffer_err key_change_edit(struct iam_directory *d, store_txn *t, json_t *rec, void *arg)
{
    struct key_arg *a = arg;
    json_t *keys = member_arr(rec, "_keys");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *id = json_string_value(json_object_get(k, "AccessKeyId"));
        if (id == NULL || strcmp(id, a->akid) != 0) {
            continue;
        }
        coffer_err rc = a->remove ? iam_creds_delete_in(d->creds, t, a->akid)
                                  : iam_creds_set_status_in(d->creds, t, a->akid, a->active);
        if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
            return rc;
        }
        if (a->remove) {
            json_array_remove(keys, i);
        } else {
            json_object_set_new(k, "Status", json_string(a->active ? "Active" : "Inactive"));
        }
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_NO_SUCH_ENTITY, "The Access Key with id %s cannot be found.", a->akid);
}

coffer_err iam_dir_key_create(iam_directory *d, const char *acct, const char *user, int64_t now_s,
                              json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    struct key_arg a = {.acct = acct, .now_s = now_s};
    coffer_buf_init(&a.secret, true);
    coffer_err rc = edit_entity(d, IAM_KIND_USER, acct, user, key_create_edit, &a);
    if (rc == COFFER_OK) {
        *out = json_pack("{s:s, s:s, s:s, s:s, s:s}", "UserName", user, "AccessKeyId", a.new_akid, "Status",
                         "Active", "SecretAccessKey", (const char *)a.secret.data, "CreateDate", a.when);
        if (*out == NULL) {
            rc = coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    coffer_buf_free(&a.secret);
    return rc;
}

static coffer_err key_change(struct iam_directory *d, const char *acct, const char *user, const char *akid,
                             bool active, bool remove)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    if (akid == NULL || akid[0] == '\0' || strlen(akid) > 128) {
        return coffer_fail(COFFER_ERR_VALIDATION, "AccessKeyId is required (16 to 128 characters).");
    }
    struct key_arg a = {.acct = acct, .akid = akid, .active = active, .remove = remove};
    coffer_buf_init(&a.secret, true);
    coffer_err rc = edit_entity(d, IAM_KIND_USER, acct, user, key_change_edit, &a);
    if (rc == COFFER_OK) {
        iam_creds_evict(d->creds, akid);
    }
    coffer_buf_free(&a.secret);
    return rc;
}

coffer_err iam_dir_key_update(iam_directory *d, const char *acct, const char *user, const char *akid,
                              bool active)
{
    return key_change(d, acct, user, akid, active, false);
}

coffer_err iam_dir_key_delete(iam_directory *d, const char *acct, const char *user, const char *akid)
{
    return key_change(d, acct, user, akid, false, true);
}

coffer_err iam_dir_key_list(iam_directory *d, const char *acct, const char *user, json_t **out)
{
    ENSURE(d != NULL && out != NULL, COFFER_ERR_USAGE);
    json_t *rec = NULL;
    TRY(get_entity(d, IAM_KIND_USER, acct, user, &rec));
    *out = json_deep_copy(member_arr(rec, "_keys"));
    json_decref(rec);
    return *out ? COFFER_OK : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}
