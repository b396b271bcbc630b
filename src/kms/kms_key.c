/*
 * Key records, the in-memory key cache and KeyId resolution for the KMS service. Handlers ask
 * here for a key (by id, ARN, alias or alias ARN, per kms.md §3); records come from the store
 * once and stay cached with their unsealed material, so the crypto hot path is a hash lookup
 * under a shared lock.
 *
 * Store layout (all values JSON except material):
 *   kms/key/<account>/<region>/<key id>                       key record (no secrets; tags inside)
 *   kms/material/<account>/<region>/<key id>/<material hex>   sealed key material of the key's
 *                                                             spec (kms_material.h); the seal
 *                                                             identity is this store key
 *   kms/alias/<account>/<region>/<alias name>                 {"AliasName","TargetKeyId",dates}
 *   kms/deletion/<deletion ms, 16 digits>/<acct>/<region>/<id>  index of scheduled deletions
 *   kms/import/..., kms/importcheck/..., kms/expiry/...       imported material (kms_ops_import.c)
 *   kms/replication/key                                       sealed P-256 key pair peers seal
 *                                                             replica material to (kms_replica.c)
 *
 * Key record (version 1): KeyId, AWSAccountId, Region, CreationDate (ms), Description, KeySpec,
 * KeyUsage, KeyState, DeletionDate (ms, PendingDeletion only), PendingWindowInDays (also while
 * PendingReplicaDeletion), Origin,
 * KeyManager, MultiRegion, MultiRegionConfiguration {MultiRegionKeyType, PrimaryRegion,
 * ReplicaRegions} (multi-Region keys only, kms_replica.c), Policy, Tags [{TagKey,TagValue}],
 * CurrentKeyMaterialId, KeyMaterials [{KeyMaterialId, CreationDate, State}], Rotation {Enabled,
 * PeriodInDays}; Origin EXTERNAL keys also ImportedKeyMaterialId (kept once material was
 * imported, so a re-import restores the same id), ExpirationModel and ValidTo (ms) while
 * material is in. A PendingImport key has an empty KeyMaterials list and no CurrentKeyMaterialId.
 * Several materials per key, origin, multi-region and spec/usage are there for rotation,
 * imported material, replicas and asymmetric keys.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "kms/kms_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Names                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static const char *const state_names[] = {
    "Enabled",     "Disabled", "PendingDeletion", "PendingImport",
    "Unavailable", "Creating", "Updating",        "PendingReplicaDeletion"};

bool kms_state_pending_deletion(enum kms_state s)
{
    return s == KMS_STATE_PENDING_DELETION || s == KMS_STATE_PENDING_REPLICA_DELETION;
}

const char *kms_state_name(enum kms_state s)
{
    return state_names[s];
}

bool kms_state_parse(const char *s, enum kms_state *out)
{
    for (size_t i = 0; s != NULL && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum kms_state)i;
            return true;
        }
    }
    return false;
}

void kms_key_store_key(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    snprintf(out, n, "kms/key/%s/%s/%s", acct, region, id);
}

void kms_alias_store_key(char *out, size_t n, const char *acct, const char *region, const char *alias)
{
    snprintf(out, n, "kms/alias/%s/%s/%s", acct, region, alias);
}

void kms_key_arn(char *out, size_t n, const char *region, const char *acct, const char *id)
{
    snprintf(out, n, "arn:aws:kms:%s:%s:key/%s", region, acct, id);
}

void kms_alias_arn(char *out, size_t n, const char *region, const char *acct, const char *alias)
{
    snprintf(out, n, "arn:aws:kms:%s:%s:%s", region, acct, alias);
}

static void material_store_key(char *out, size_t n, const struct kms_key *k,
                               const uint8_t id[KMS_MATERIAL_ID_LEN])
{
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    coffer_hex_encode(id, KMS_MATERIAL_ID_LEN, hex);
    snprintf(out, n, "kms/material/%s/%s/%s/%s", k->account, k->region, k->key_id, hex);
}

/* ------------------------------------------------------------------------------------------ */
/* Per-account counters                                                                       */
/* ------------------------------------------------------------------------------------------ */

#define COUNT_PREFIX "kms/count/"

void kms_count_keys_key(char *out, size_t n, const char *acct, const char *region)
{
    snprintf(out, n, COUNT_PREFIX "%s/%s/keys", acct, region);
}

void kms_count_aliases_key(char *out, size_t n, const char *acct, const char *region, const char *key_id)
{
    snprintf(out, n, COUNT_PREFIX "%s/%s/aliases/%s", acct, region, key_id);
}

struct recount {
    const char *target; /* aliases: count only those pointing here; NULL: count every record */
    size_t n;
};

static coffer_err recount_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct recount *rc = ctx;
    (void)key;
    if (rc->target == NULL) {
        rc->n++;
        return COFFER_OK;
    }
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    const char *t = json_string_value(json_object_get(rec, "TargetKeyId"));
    if (t != NULL && strcmp(t, rc->target) == 0) {
        rc->n++;
    }
    json_decref(rec);
    return COFFER_OK;
}

/* A store written before counters existed: count the records once. */
static coffer_err count_rebuild(store_txn *t, const char *ckey, size_t *out)
{
    char acct[API_ACCOUNT_ID_LEN + 1], region[KMS_REGION_MAX + 1], what[16], id[KMS_KEY_ID_MAX + 1];
    char prefix[STORE_KEY_BUF];
    struct recount rc = {0};
    id[0] = '\0';
    if (sscanf(ckey, COUNT_PREFIX "%12[0-9]/%32[a-z0-9-]/%15[a-z]/%40[a-z0-9-]", acct, region, what, id) <
        3) {
        return coffer_fail(COFFER_ERR_INTERNAL, "bad counter key %s", ckey);
    }
    if (strcmp(what, "keys") == 0) {
        snprintf(prefix, sizeof(prefix), "kms/key/%s/%s/", acct, region);
    } else {
        snprintf(prefix, sizeof(prefix), "kms/alias/%s/%s/", acct, region);
        rc.target = id;
    }
    TRY(store_txn_scan(t, prefix, NULL, 0, recount_cb, &rc));
    *out = rc.n;
    return COFFER_OK;
}

coffer_err kms_count_add(store_txn *t, const char *ckey, long delta, size_t limit, const char *what)
{
    coffer_buf val = COFFER_BUF_INIT;
    size_t n = 0;
    char text[32];
    bool parsed = false;
    coffer_err rc = store_txn_get(t, ckey, &val);
    if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    if (rc == COFFER_OK && val.len < sizeof(text)) {
        char *end = NULL;
        memcpy(text, val.data, val.len);
        text[val.len] = '\0';
        unsigned long long v = strtoull(text, &end, 10);
        parsed = end != text && *end == '\0';
        n = (size_t)v;
    }
    /* Missing or unreadable: rebuilt from the records, never reset to zero. */
    if (!parsed) {
        TRY_OUT(count_rebuild(t, ckey, &n));
    }
    if (delta > 0 && n + (size_t)delta > limit) {
        FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED,
                 "The request was rejected because the quota of %zu %s has been "
                 "reached.",
                 limit, what);
    }
    n = delta < 0 && (size_t)-delta > n ? 0 : (size_t)((long long)n + delta);
    snprintf(text, sizeof(text), "%zu", n);
    rc = store_txn_put(t, ckey, coffer_cursor_from_str(text));
out:
    coffer_buf_free(&val);
    return rc;
}

/* "<account>/<region>/<id>", truncated to n - 1 bytes like the snprintf it replaces on the hot path. */
static void cache_key(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    const char *parts[3] = {acct, region, id};
    size_t len = 0;
    for (size_t i = 0; i < 3 && len + 1 < n; i++) {
        if (i > 0) {
            out[len++] = '/';
        }
        len += coffer_str_copy(out + len, n - len, parts[i]);
    }
    out[len] = '\0';
}

/* Bounded copy (truncates; callers have checked lengths where it matters). */
static void copy_str(char *dst, size_t n, const char *src)
{
    size_t len = strnlen(src, n - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

coffer_err kms_nomem(void)
{
    return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Cached key objects                                                                         */
/* ------------------------------------------------------------------------------------------ */

void kms_key_free(struct kms_key *k)
{
    if (k == NULL) {
        return;
    }
    for (size_t i = 0; i < k->n_mats; i++) {
        kms_material_clear(&k->mats[i]);
    }
    free(k->mats);
    json_decref(k->rec);
    json_decref(k->grants);
    policy_free(k->kpol);
    free(k);
}

/* Fills the identity fields of k from its record. */
static coffer_err key_from_rec(const struct kms_service *svc, struct kms_key *k, json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "KeyId"));
    const char *acct = json_string_value(json_object_get(rec, "AWSAccountId"));
    const char *region = json_string_value(json_object_get(rec, "Region"));
    enum kms_state st;
    enum kms_spec spec;
    if (id == NULL || acct == NULL || region == NULL || strlen(id) > KMS_KEY_ID_MAX ||
        strlen(acct) > API_ACCOUNT_ID_LEN || strlen(region) > KMS_REGION_MAX ||
        !kms_state_parse(json_string_value(json_object_get(rec, "KeyState")), &st) ||
        !kms_spec_parse(json_string_value(json_object_get(rec, "KeySpec")), &spec) ||
        kms_spec_family(spec) == KMS_FAMILY_UNSUPPORTED) {
        return coffer_fail(COFFER_ERR_STORE, "corrupt key record");
    }
    const char *pol = json_string_value(json_object_get(rec, "Policy"));
    if (pol == NULL || kms_key_policy_compile(svc, rec, &k->kpol) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_STORE, "corrupt key policy");
    }
    snprintf(k->key_id, sizeof(k->key_id), "%s", id);
    snprintf(k->account, sizeof(k->account), "%s", acct);
    snprintf(k->region, sizeof(k->region), "%s", region);
    kms_key_arn(k->arn, sizeof(k->arn), region, acct, id);
    k->state = st;
    k->spec = spec;
    k->rec = rec;
    const char *cks = json_string_value(json_object_get(rec, "CustomKeyStoreId"));
    if (cks != NULL) {
        coffer_str_copy(k->cks_id, sizeof(k->cks_id), cks);
        k->cks = svc->cks;
    }
    return COFFER_OK;
}

/* Origin AWS_CLOUDHSM: the material is a token object; the record lists its id only. */
static bool in_token(const json_t *rec)
{
    const char *origin = json_string_value(json_object_get(rec, "Origin"));
    return origin != NULL && strcmp(origin, "AWS_CLOUDHSM") == 0;
}

/* Reads and unseals every material the record lists. */
static coffer_err load_materials(struct kms_service *svc, struct kms_key *k)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT, plain = COFFER_SECRET_BUF_INIT;
    const json_t *list = json_object_get(k->rec, "KeyMaterials");
    const char *current = json_string_value(json_object_get(k->rec, "CurrentKeyMaterialId"));
    size_t n = json_array_size(list);
    bool current_found = false;
    const char *origin = json_string_value(json_object_get(k->rec, "Origin"));
    if (n == 0 && origin != NULL && strcmp(origin, "EXTERNAL") == 0) {
        return COFFER_OK; /* imported material not (or no longer) there: no state uses it */
    }
    if (n == 0 || current == NULL) {
        return coffer_fail(COFFER_ERR_STORE, "key record without material");
    }
    k->mats = calloc(n, sizeof(*k->mats));
    if (k->mats == NULL) {
        return kms_nomem();
    }
    for (size_t i = 0; i < n; i++) {
        const char *hex = json_string_value(json_object_get(json_array_get(list, i), "KeyMaterialId"));
        struct kms_material *m = &k->mats[k->n_mats];
        char skey[STORE_KEY_BUF];
        if (hex == NULL ||
            coffer_hex_decode(coffer_cursor_from_str(hex), m->id, KMS_MATERIAL_ID_LEN) != COFFER_OK) {
            FAIL_OUT(COFFER_ERR_STORE, "corrupt key record");
        }
        /* A token's key has nothing sealed in the store: its id is all there is here. */
        if (!in_token(k->rec)) {
            material_store_key(skey, sizeof(skey), k, m->id);
            coffer_buf_reset(&sealed);
            coffer_buf_reset(&plain);
            TRY_OUT(store_get(svc->st, skey, &sealed));
            TRY_OUT(seal_record_open(svc->sl, skey, coffer_buf_cursor(&sealed), &plain));
            if (kms_material_set(k->spec, coffer_buf_cursor(&plain), m) != COFFER_OK) {
                FAIL_OUT(COFFER_ERR_STORE, "corrupt key material");
            }
        }
        if (strcmp(hex, current) == 0) {
            k->current = k->n_mats;
            current_found = true;
        }
        k->n_mats++;
    }
    /* Falling back to another material would encrypt under a key the record does not name. */
    if (!current_found) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "corrupt key record: CurrentKeyMaterialId names no listed material");
    }
out:
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = coffer_fail(COFFER_ERR_STORE, "key material missing");
    }
    coffer_buf_free(&sealed);
    coffer_buf_free(&plain);
    return rc;
}

/* wmu held. Loads a key into the cache when absent. COFFER_ERR_NOT_FOUND (no message) if unknown. */
static coffer_err key_load(struct kms_service *svc, const char *acct, const char *region, const char *id)
{
    char ck[STORE_KEY_BUF], skey[STORE_KEY_BUF];
    cache_key(ck, sizeof(ck), acct, region, id);
    if (coffer_map_get(&svc->keys, ck) != NULL) {
        return COFFER_OK;
    }
    coffer_err rc = COFFER_OK;
    coffer_buf val = COFFER_BUF_INIT;
    struct kms_key *k = NULL;
    json_t *rec = NULL;
    kms_key_store_key(skey, sizeof(skey), acct, region, id);
    rc = store_get(svc->st, skey, &val);
    if (rc != COFFER_OK) {
        goto out;
    }
    rec = json_loadb((const char *)val.data, val.len, 0, NULL);
    k = calloc(1, sizeof(*k));
    if (rec == NULL || k == NULL) {
        FAIL_OUT(COFFER_ERR_STORE, "corrupt key record");
    }
    TRY_OUT(key_from_rec(svc, k, rec));
    rec = NULL;
    TRY_OUT(load_materials(svc, k));
    TRY_OUT(kms_grants_load(svc, k, &k->grants));
    pthread_rwlock_wrlock(&svc->lock);
    rc = coffer_map_put(&svc->keys, ck, k);
    pthread_rwlock_unlock(&svc->lock);
    TRY_OUT(rc);
    k = NULL; /* owned by the cache now */
out:
    json_decref(rec);
    kms_key_free(k);
    coffer_buf_free(&val);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* KeyId resolution (kms.md §3)                                                               */
/* ------------------------------------------------------------------------------------------ */

struct kms_ref {
    bool is_alias;
    char account[API_ACCOUNT_ID_LEN + 1];
    char name[KMS_ALIAS_MAX + 1]; /* key id or alias name ("alias/x") */
};

static coffer_err invalid_key_id(const char *in)
{
    return coffer_fail(COFFER_ERR_NOT_FOUND, "Invalid keyId '%.300s'", in);
}

static coffer_err parse_ref(const struct kms_service *svc, const struct api_call *call, const char *in,
                            unsigned flags, struct kms_ref *r)
{
    memset(r, 0, sizeof(*r));
    const char *acct = call->caller->account_id;
    const char *name = in;
    if (strncmp(in, "arn:", 4) == 0) {
        /* arn:<partition>:kms:<region>:<account>:<resource>; the resource may hold ':' */
        const char *p[5];
        const char *s = in;
        for (int i = 0; i < 5; i++) {
            s = strchr(s, ':');
            if (s == NULL) {
                return invalid_key_id(in);
            }
            p[i] = ++s;
        }
        size_t region_len = (size_t)(p[3] - p[2] - 1), acct_len = (size_t)(p[4] - p[3] - 1);
        if (strncmp(p[0], "aws:", 4) != 0 || strncmp(p[1], "kms:", 4) != 0 ||
            acct_len != API_ACCOUNT_ID_LEN) {
            return invalid_key_id(in);
        }
        if (region_len != strlen(call->region) || strncmp(p[2], call->region, region_len) != 0) {
            return coffer_fail(COFFER_ERR_NOT_FOUND, "Invalid arn %.*s",
                               (int)(region_len > 64 ? 64 : region_len), p[2]);
        }
        memcpy(r->account, p[3], API_ACCOUNT_ID_LEN);
        name = p[4];
        if (strncmp(name, "key/", 4) == 0) {
            name += 4;
        } else if (strncmp(name, "alias/", 6) != 0) {
            return invalid_key_id(in);
        }
    } else {
        coffer_str_copy(r->account, sizeof(r->account), acct);
    }
    if (strncmp(name, "alias/", 6) == 0) {
        if (!(flags & KMS_REF_ALIAS) || strlen(name) > KMS_ALIAS_MAX || name[6] == '\0') {
            return invalid_key_id(in);
        }
        r->is_alias = true;
    } else if (!kms_key_id_valid(name)) {
        return invalid_key_id(in);
    }
    coffer_str_copy(r->name, sizeof(r->name), name);
    if (strcmp(r->account, acct) != 0 && (!(flags & KMS_REF_CROSS) || svc->az == NULL)) {
        /* Same-account operations (and everything while no key policy is evaluated): refuse. */
        char arn[KMS_ARN_MAX];
        if (r->is_alias) {
            kms_alias_arn(arn, sizeof(arn), call->region, r->account, r->name);
        } else {
            kms_key_arn(arn, sizeof(arn), call->region, r->account, r->name);
        }
        return coffer_fail(COFFER_ERR_ACCESS_DENIED,
                           "User: %s is not authorized to perform: kms:%s on resource: %s because no "
                           "resource-based policy allows the kms:%s action",
                           call->caller->principal_arn, call->operation, arn, call->operation);
    }
    return COFFER_OK;
}

static coffer_err alias_not_found(const struct api_call *call, const char *acct, const char *alias)
{
    char arn[KMS_ARN_MAX + KMS_ALIAS_MAX];
    kms_alias_arn(arn, sizeof(arn), call->region, acct, alias);
    return coffer_fail(COFFER_ERR_NOT_FOUND, "Alias %s is not found.", arn);
}

static coffer_err key_not_found(const struct api_call *call, const char *acct, const char *id)
{
    char arn[KMS_ARN_MAX];
    kms_key_arn(arn, sizeof(arn), call->region, acct, id);
    return coffer_fail(COFFER_ERR_NOT_FOUND, "Key '%s' does not exist", arn);
}

coffer_err kms_alias_cache_set(struct kms_service *svc, const char *acct, const char *region,
                               const char *alias, const char *target)
{
    char ck[STORE_KEY_BUF];
    cache_key(ck, sizeof(ck), acct, region, alias);
    coffer_err rc = COFFER_OK;
    char *copy = NULL;
    if (target != NULL && (copy = strdup(target)) == NULL) {
        return kms_nomem();
    }
    pthread_rwlock_wrlock(&svc->lock);
    if (copy != NULL) {
        rc = coffer_map_put(&svc->aliases, ck, copy); /* frees the previous target */
    } else {
        coffer_map_delete(&svc->aliases, ck);
    }
    pthread_rwlock_unlock(&svc->lock);
    if (rc != COFFER_OK) {
        free(copy);
    }
    return rc;
}

coffer_err kms_alias_lookup(struct kms_service *svc, const char *acct, const char *region, const char *alias,
                            char target[KMS_KEY_ID_MAX + 1])
{
    char ck[STORE_KEY_BUF], skey[STORE_KEY_BUF];
    cache_key(ck, sizeof(ck), acct, region, alias);
    pthread_rwlock_rdlock(&svc->lock);
    const char *t = coffer_map_get(&svc->aliases, ck);
    if (t != NULL) {
        snprintf(target, KMS_KEY_ID_MAX + 1, "%s", t);
    }
    pthread_rwlock_unlock(&svc->lock);
    if (t != NULL) {
        return COFFER_OK;
    }
    /* Miss: read the record under wmu so no writer can interleave. */
    coffer_err rc = COFFER_OK;
    coffer_buf val = COFFER_BUF_INIT;
    json_t *rec = NULL;
    pthread_mutex_lock(&svc->wmu);
    kms_alias_store_key(skey, sizeof(skey), acct, region, alias);
    rc = store_get(svc->st, skey, &val);
    if (rc != COFFER_OK) {
        goto out;
    }
    rec = json_loadb((const char *)val.data, val.len, 0, NULL);
    const char *id = json_string_value(json_object_get(rec, "TargetKeyId"));
    if (id == NULL || strlen(id) > KMS_KEY_ID_MAX) {
        FAIL_OUT(COFFER_ERR_STORE, "corrupt alias record");
    }
    snprintf(target, KMS_KEY_ID_MAX + 1, "%s", id);
    rc = kms_alias_cache_set(svc, acct, region, alias, id);
out:
    pthread_mutex_unlock(&svc->wmu);
    json_decref(rec);
    coffer_buf_free(&val);
    return rc;
}

/*
 * Resolves `in` to a key id (of r->account) and makes sure the key is cached. When the key is
 * already cached and `held` is not NULL, returns with svc->lock read-held and *held the key, so
 * that the caller does not look it up a second time (kms_release drops the lock).
 */
static coffer_err resolve(struct kms_service *svc, const struct api_call *call, const char *in,
                          unsigned flags, bool hold_wmu, struct kms_ref *rp, char id[KMS_KEY_ID_MAX + 1],
                          struct kms_key **held)
{
    struct kms_ref r;
    TRY(parse_ref(svc, call, in, flags, &r));
    *rp = r;
    if (r.is_alias) {
        coffer_err rc = kms_alias_lookup(svc, r.account, call->region, r.name, id);
        /* An AWS managed key appears on the first use of its alias in its own account. */
        if (rc == COFFER_ERR_NOT_FOUND && !hold_wmu && kms_managed_alias(r.name) &&
            strcmp(r.account, call->caller->account_id) == 0) {
            rc = kms_managed_key_ensure(svc, r.account, call->region, r.name, kms_call_now_ms(call));
            if (rc == COFFER_OK) {
                rc = kms_alias_lookup(svc, r.account, call->region, r.name, id);
            }
        }
        if (rc == COFFER_ERR_NOT_FOUND) {
            return alias_not_found(call, r.account, r.name);
        }
        TRY(rc);
    } else {
        copy_str(id, KMS_KEY_ID_MAX + 1, r.name);
    }
    if (!hold_wmu) {
        char ck[STORE_KEY_BUF];
        cache_key(ck, sizeof(ck), r.account, call->region, id);
        pthread_rwlock_rdlock(&svc->lock);
        struct kms_key *hit = coffer_map_get(&svc->keys, ck);
        if (hit != NULL && held != NULL) {
            *held = hit;
            return COFFER_OK;
        }
        pthread_rwlock_unlock(&svc->lock);
        if (hit != NULL) {
            return COFFER_OK;
        }
        pthread_mutex_lock(&svc->wmu);
    }
    coffer_err rc = key_load(svc, r.account, call->region, id);
    if (!hold_wmu && rc == COFFER_OK && held != NULL) {
        /* Read-locked before wmu goes: the change feed (kms_cache_changed) may evict the key the
         * moment wmu is free, and the caller would find it gone. */
        char ck[STORE_KEY_BUF];
        cache_key(ck, sizeof(ck), r.account, call->region, id);
        pthread_rwlock_rdlock(&svc->lock);
        *held = coffer_map_get(&svc->keys, ck);
        pthread_mutex_unlock(&svc->wmu);
        if (*held != NULL) {
            return COFFER_OK;
        }
        pthread_rwlock_unlock(&svc->lock);
        return key_not_found(call, r.account, id);
    }
    if (!hold_wmu) {
        pthread_mutex_unlock(&svc->wmu);
    }
    if (rc == COFFER_ERR_NOT_FOUND) {
        return key_not_found(call, r.account, id);
    }
    return rc;
}

coffer_err kms_acquire(struct kms_service *svc, const struct api_call *call, const char *key_ref,
                       unsigned flags, struct kms_key **out)
{
    char id[KMS_KEY_ID_MAX + 1], ck[STORE_KEY_BUF];
    struct kms_ref r;
    struct kms_key *held = NULL;
    *out = NULL;
    TRY(resolve(svc, call, key_ref, flags, false, &r, id, &held));
    if (held != NULL) {
        *out = held; /* cached: svc->lock is read-held */
        return COFFER_OK;
    }
    cache_key(ck, sizeof(ck), r.account, call->region, id);
    pthread_rwlock_rdlock(&svc->lock);
    struct kms_key *k = coffer_map_get(&svc->keys, ck);
    if (k == NULL) {
        /* Deleted by the sweeper between resolution and now. */
        pthread_rwlock_unlock(&svc->lock);
        return key_not_found(call, r.account, id);
    }
    *out = k;
    return COFFER_OK;
}

void kms_release(struct kms_service *svc)
{
    pthread_rwlock_unlock(&svc->lock);
}

void kms_write_begin(struct kms_service *svc)
{
    pthread_mutex_lock(&svc->wmu);
}

void kms_write_release(struct kms_service *svc)
{
    pthread_mutex_unlock(&svc->wmu);
}

coffer_err kms_key_get_locked(struct kms_service *svc, const char *acct, const char *region, const char *id,
                              struct kms_key **out)
{
    char ck[STORE_KEY_BUF];
    *out = NULL;
    TRY(key_load(svc, acct, region, id));
    cache_key(ck, sizeof(ck), acct, region, id);
    *out = coffer_map_get(&svc->keys, ck);
    return *out != NULL ? COFFER_OK : COFFER_ERR_NOT_FOUND;
}

coffer_err kms_acquire_write(struct kms_service *svc, const struct api_call *call, const char *key_ref,
                             unsigned flags, struct kms_key **out)
{
    char id[KMS_KEY_ID_MAX + 1], ck[STORE_KEY_BUF];
    struct kms_ref r;
    *out = NULL;
    TRY(parse_ref(svc, call, key_ref, flags, &r));
    copy_str(id, sizeof(id), r.name);
    if (r.is_alias) {
        /* Before wmu: an alias miss takes wmu itself. */
        coffer_err arc = kms_alias_lookup(svc, r.account, call->region, r.name, id);
        if (arc == COFFER_ERR_NOT_FOUND) {
            return alias_not_found(call, r.account, r.name);
        }
        TRY(arc);
    }
    pthread_mutex_lock(&svc->wmu);
    coffer_err rc = key_load(svc, r.account, call->region, id);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = key_not_found(call, r.account, id);
    }
    TRY_OUT(rc);
    cache_key(ck, sizeof(ck), r.account, call->region, id);
    *out = coffer_map_get(&svc->keys, ck);
    if (*out == NULL) {
        rc = key_not_found(call, r.account, id);
    }
out:
    /* On success the caller holds wmu until kms_write_release. */
    if (rc != COFFER_OK) {
        pthread_mutex_unlock(&svc->wmu);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                     */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_txn_put_json(store_txn *t, const char *skey, const json_t *rec)
{
    char *s = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (s == NULL) {
        return kms_nomem();
    }
    coffer_err rc = store_txn_put(t, skey, coffer_cursor_from_str(s));
    free(s);
    return rc;
}

/* What a record update does besides the record (kms_key_replace_material). */
struct material_change {
    bool active;               /* replace k's materials with `mats` (n_mats: 0 or 1) */
    struct kms_material *mats; /* calloc'd array, moved into the cache on success */
    size_t n_mats;
    coffer_buf sealed; /* mats[0] sealed under its store key */
    const struct kms_key *k;
    kms_txn_fn extra;
    void *ctx;
};

/* In the record's transaction: old material records go, the new one is written. */
static coffer_err material_txn(store_txn *t, void *ctx)
{
    struct material_change *mc = ctx;
    const struct kms_key *k = mc->k;
    char skey[STORE_KEY_BUF];
    for (size_t i = 0; i < k->n_mats; i++) {
        if (mc->n_mats > 0 && memcmp(k->mats[i].id, mc->mats[0].id, KMS_MATERIAL_ID_LEN) == 0) {
            continue; /* overwritten below */
        }
        material_store_key(skey, sizeof(skey), k, k->mats[i].id);
        coffer_err rc = store_txn_delete(t, skey);
        if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
            return rc;
        }
    }
    if (mc->n_mats > 0) {
        material_store_key(skey, sizeof(skey), k, mc->mats[0].id);
        TRY(store_txn_put(t, skey, coffer_buf_cursor(&mc->sealed)));
    }
    return mc->extra != NULL ? mc->extra(t, mc->ctx) : COFFER_OK;
}

/*
 * With wmu held: writes `rec` (taken) as k's record, the sealed `add` material when given and
 * `extra`, all in one store transaction, then swaps record, policy and materials into the cache:
 * `add` appended as the current material (rotation), or k's materials replaced by mc's (imports;
 * mc's txn function, passed as `extra`, writes and deletes their records). A failure anywhere
 * leaves store and cache as they were; `add` stays the caller's.
 */
static coffer_err key_write(struct kms_service *svc, struct kms_key *k, json_t *rec, kms_txn_fn extra,
                            void *ctx, struct kms_material *add, struct material_change *mc)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    char skey[STORE_KEY_BUF];
    enum kms_state st;
    policy *kpol = NULL;
    struct kms_material *mats = NULL;
    coffer_buf sealed = COFFER_BUF_INIT;
    if (!kms_state_parse(json_string_value(json_object_get(rec, "KeyState")), &st)) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "bad key state");
    }
    if (json_object_get(rec, "PolicyPrincipals") == NULL && authz_resolves_principals(svc->az)) {
        /* A record from before binding: its principals are bound (as loaded) from now on. */
        json_t *principals = NULL;
        TRY_OUT(kms_policy_principals(svc, json_string_value(json_object_get(rec, "Policy")), false,
                                      &principals));
        if (json_object_set_new(rec, "PolicyPrincipals", principals) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    TRY_OUT(kms_key_policy_compile(svc, rec, &kpol));
    if (add != NULL) {
        /* The array readers will see after the commit, built before it so nothing can fail after. */
        if ((mats = calloc(k->n_mats + 1, sizeof(*mats))) == NULL) {
            rc = kms_nomem();
            goto out;
        }
        material_store_key(skey, sizeof(skey), k, add->id);
        TRY_OUT(seal_record_seal(svc->sl, skey, kms_material_bytes(add), &sealed));
    }
    TRY_OUT(store_txn_begin(svc->st, &t));
    if (add != NULL) {
        TRY_OUT(store_txn_put(t, skey, coffer_buf_cursor(&sealed)));
    }
    kms_key_store_key(skey, sizeof(skey), k->account, k->region, k->key_id);
    TRY_OUT(kms_txn_put_json(t, skey, rec));
    if (extra != NULL) {
        TRY_OUT(extra(t, ctx));
    }
    rc = store_txn_commit(t);
    t = NULL;
    if (rc != COFFER_OK) {
        goto out;
    }
    struct kms_material *old_mats = NULL;
    size_t old_n = 0;
    pthread_rwlock_wrlock(&svc->lock);
    json_t *old = k->rec;
    policy *old_pol = k->kpol;
    k->rec = rec;
    k->kpol = kpol;
    k->state = st;
    if (add != NULL) {
        /* Readers use k->mats only under the shared lock: the swap is invisible to them. */
        memcpy(mats, k->mats, k->n_mats * sizeof(*mats));
        mats[k->n_mats] = *add;
        old_mats = k->mats;
        k->mats = mats;
        k->current = k->n_mats++;
        *add = (struct kms_material){0}; /* owned by the cache now */
        mats = NULL;
    } else if (mc != NULL && mc->active) {
        old_mats = k->mats;
        old_n = k->n_mats;
        k->mats = mc->mats;
        k->n_mats = mc->n_mats;
        k->current = 0;
        mc->mats = NULL;
    }
    pthread_rwlock_unlock(&svc->lock);
    json_decref(old);
    policy_free(old_pol);
    for (size_t i = 0; i < old_n; i++) {
        kms_material_clear(&old_mats[i]); /* wiped after the lock: readers are gone */
    }
    free(old_mats);
    coffer_buf_free(&sealed);
    return COFFER_OK;
out:
    store_txn_abort(t);
    json_decref(rec);
    policy_free(kpol);
    free(mats);
    coffer_buf_free(&sealed);
    return rc;
}

coffer_err kms_key_update(struct kms_service *svc, struct kms_key *k, json_t *rec, kms_txn_fn extra,
                          void *ctx)
{
    return key_write(svc, k, rec, extra, ctx, NULL, NULL);
}

coffer_err kms_key_rotate(struct kms_service *svc, struct kms_key *k, json_t *rec, const char *rotation_type,
                          int64_t now_ms, kms_txn_fn extra, void *ctx)
{
    coffer_err rc = COFFER_OK;
    struct kms_material m = {0};
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    json_t *list = json_object_get(rec, "KeyMaterials"), *e;
    size_t i;
    if (!json_is_array(list)) {
        json_decref(rec);
        return coffer_fail(COFFER_ERR_INTERNAL, "corrupt key record");
    }
    TRY_OUT(kms_material_generate(k->spec, &m));
    coffer_hex_encode(m.id, KMS_MATERIAL_ID_LEN, hex);
    json_array_foreach(list, i, e)
    {
        if (json_object_set_new(e, "State", json_string("NON_CURRENT")) != 0) {
            rc = kms_nomem();
            goto out;
        }
    }
    if (json_array_append_new(list, json_pack("{s:s,s:I,s:s,s:s}", "KeyMaterialId", hex, "CreationDate",
                                              (json_int_t)now_ms, "State", "CURRENT", "RotationType",
                                              rotation_type)) != 0 ||
        json_object_set_new(rec, "CurrentKeyMaterialId", json_string(hex)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    rc = key_write(svc, k, rec, extra, ctx, &m, NULL);
    rec = NULL; /* taken by key_write */
out:
    json_decref(rec);
    kms_material_clear(&m); /* empty once the cache holds it */
    return rc;
}

coffer_err kms_key_replace_material(struct kms_service *svc, struct kms_key *k, json_t *rec,
                                    struct kms_material *m, kms_txn_fn extra, void *ctx)
{
    coffer_err rc = COFFER_OK;
    char skey[STORE_KEY_BUF];
    struct material_change mc = {.active = true, .k = k, .extra = extra, .ctx = ctx};
    coffer_buf_init(&mc.sealed, false);
    if (m != NULL) {
        material_store_key(skey, sizeof(skey), k, m->id);
        TRY_OUT(seal_record_seal(svc->sl, skey, kms_material_bytes(m), &mc.sealed));
        if ((mc.mats = calloc(1, sizeof(*mc.mats))) == NULL) {
            rc = kms_nomem();
            goto out;
        }
        mc.n_mats = 1;
        mc.mats[0] = *m; /* moved: m no longer owns the key bytes */
        memset(m, 0, sizeof(*m));
    }
    rc = key_write(svc, k, rec, material_txn, &mc, NULL, &mc);
    rec = NULL;
out:
    json_decref(rec);
    if (mc.mats != NULL) {
        /* Not taken: hand the material back so the caller's cleanup wipes it. */
        *m = mc.mats[0];
        free(mc.mats);
    }
    coffer_buf_free(&mc.sealed);
    return rc;
}

static const char *rec_str(const json_t *rec, const char *name);

coffer_err kms_key_create(struct kms_service *svc, struct api_call *call, json_t *rec, kms_txn_fn extra,
                          void *ctx, struct kms_key **out)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf sealed = COFFER_BUF_INIT;
    struct kms_key *k = calloc(1, sizeof(*k));
    char skey[STORE_KEY_BUF], ck[STORE_KEY_BUF], hex[KMS_MATERIAL_HEX_LEN + 1];
    *out = NULL;
    enum kms_spec spec;
    if (k == NULL || (k->mats = calloc(1, sizeof(*k->mats))) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (!kms_spec_parse(json_string_value(json_object_get(rec, "KeySpec")), &spec)) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "new key record without a KeySpec");
    }
    /* Origin EXTERNAL: no material until the caller imports it (ImportKeyMaterial). */
    if (strcmp(rec_str(rec, "Origin"), "EXTERNAL") == 0) {
        if (json_object_set_new(rec, "KeyMaterials", json_array()) != 0) {
            rc = kms_nomem();
            goto out;
        }
    } else {
        k->n_mats = 1;
        if (in_token(rec)) {
            /* The caller generated the key in the token; only its id is ours. */
            TRY_OUT(crypto_random(k->mats[0].id, KMS_MATERIAL_ID_LEN));
        } else {
            TRY_OUT(kms_material_generate(spec, &k->mats[0]));
        }
        coffer_hex_encode(k->mats[0].id, KMS_MATERIAL_ID_LEN, hex);
        json_t *mat = json_pack("{s:s,s:I,s:s}", "KeyMaterialId", hex, "CreationDate",
                                (json_int_t)json_integer_value(json_object_get(rec, "CreationDate")), "State",
                                "CURRENT");
        if (mat == NULL || json_object_set_new(rec, "KeyMaterials", json_pack("[o]", mat)) != 0 ||
            json_object_set_new(rec, "CurrentKeyMaterialId", json_string(hex)) != 0) {
            rc = kms_nomem();
            goto out;
        }
    }
    TRY_OUT(key_from_rec(svc, k, rec));
    rec = NULL; /* owned by k now */
    if ((k->grants = json_array()) == NULL) {
        rc = kms_nomem();
        goto out;
    }

    if (call != NULL) {
        /* The request's event is written just before the commit: it names the new key already. */
        json_t *meta = kms_key_metadata(k);
        call->audit_response = meta != NULL ? json_pack("{s:o}", "keyMetadata", kms_camel_copy(meta)) : NULL;
        json_decref(meta);
        if (call->audit_response == NULL) {
            rc = kms_nomem();
            goto out;
        }
        kms_audit_key(call, k);
    }

    bool sealed_material = k->n_mats > 0 && k->mats[0].key != NULL;
    if (sealed_material) {
        material_store_key(skey, sizeof(skey), k, k->mats[0].id);
        TRY_OUT(seal_record_seal(svc->sl, skey, kms_material_bytes(&k->mats[0]), &sealed));
    }
    TRY_OUT(store_txn_begin(svc->st, &t));
    kms_count_keys_key(ck, sizeof(ck), k->account, k->region);
    TRY_OUT(kms_count_add(t, ck, 1, svc->limits.kms_keys, "KMS keys in this account and Region"));
    /* A new key starts with a zero alias counter, so its first alias never needs a rebuild scan. */
    kms_count_aliases_key(ck, sizeof(ck), k->account, k->region, k->key_id);
    TRY_OUT(store_txn_put(t, ck, coffer_cursor_from_str("0")));
    if (sealed_material) {
        material_store_key(skey, sizeof(skey), k, k->mats[0].id);
        TRY_OUT(store_txn_put(t, skey, coffer_buf_cursor(&sealed)));
    }
    kms_key_store_key(skey, sizeof(skey), k->account, k->region, k->key_id);
    TRY_OUT(kms_txn_put_json(t, skey, k->rec));
    if (extra != NULL) {
        TRY_OUT(extra(t, ctx));
    }
    rc = store_txn_commit(t);
    t = NULL;
    if (rc != COFFER_OK) {
        goto out;
    }
    cache_key(ck, sizeof(ck), k->account, k->region, k->key_id);
    pthread_rwlock_wrlock(&svc->lock);
    rc = coffer_map_put(&svc->keys, ck, k);
    pthread_rwlock_unlock(&svc->lock);
    if (rc != COFFER_OK) {
        goto out; /* durable but not cached: the next use loads it */
    }
    *out = k;
    k = NULL;
out:
    store_txn_abort(t);
    json_decref(rec);
    kms_key_free(k);
    coffer_buf_free(&sealed);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* State rules and metadata                                                                   */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_check_state(const struct kms_key *k, enum kms_state_rule rule)
{
    enum kms_state s = k->state;
    if (rule == KMS_RULE_ANY) {
        return COFFER_OK;
    }
    if (rule == KMS_RULE_CANCEL) {
        if (!kms_state_pending_deletion(s)) {
            return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is not pending deletion.", k->arn);
        }
        return COFFER_OK;
    }
    if (kms_state_pending_deletion(s)) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is pending deletion.", k->arn);
    }
    if (rule == KMS_RULE_NOT_PENDING) {
        return COFFER_OK;
    }
    if (s == KMS_STATE_PENDING_IMPORT) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is pending import.", k->arn);
    }
    if (s == KMS_STATE_CREATING) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is creating.", k->arn);
    }
    if (rule == KMS_RULE_ENABLE_DISABLE) {
        if (s == KMS_STATE_UPDATING) {
            return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is updating.", k->arn);
        }
        return COFFER_OK;
    }
    /* KMS_RULE_CRYPTO */
    if (s == KMS_STATE_DISABLED) {
        return coffer_fail(COFFER_ERR_DISABLED, "%s is disabled.", k->arn);
    }
    if (s == KMS_STATE_UNAVAILABLE) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is unavailable.", k->arn);
    }
    return COFFER_OK;
}

static double ms_to_epoch(const json_t *v)
{
    return (double)json_integer_value(v) / 1000.0;
}

static const char *rec_str(const json_t *rec, const char *name)
{
    const char *v = json_string_value(json_object_get(rec, name));
    return v != NULL ? v : "";
}

/*
 * MultiRegionConfiguration of §4 from rec.MultiRegionConfiguration {MultiRegionKeyType,
 * PrimaryRegion, ReplicaRegions}: every related key has k's id and account, so only the
 * regions are stored and the ARNs are made here. NULL when memory runs out.
 */
static json_t *multi_region_configuration(const struct kms_key *k)
{
    const json_t *mrc = json_object_get(k->rec, "MultiRegionConfiguration");
    const char *primary = rec_str(mrc, "PrimaryRegion");
    char arn[KMS_ARN_MAX];
    kms_key_arn(arn, sizeof(arn), primary, k->account, k->key_id);
    json_t *replicas = json_array();
    json_t *out = json_pack("{s:s,s:{s:s,s:s},s:o}", "MultiRegionKeyType", rec_str(mrc, "MultiRegionKeyType"),
                            "PrimaryKey", "Arn", arn, "Region", primary, "ReplicaKeys", replicas);
    if (out == NULL) {
        return NULL;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(mrc, "ReplicaRegions"), i, r)
    {
        kms_key_arn(arn, sizeof(arn), json_string_value(r), k->account, k->key_id);
        if (json_array_append_new(replicas,
                                  json_pack("{s:s,s:s}", "Arn", arn, "Region", json_string_value(r))) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* Built from copies only: readers share k->rec, so no reference counts are touched. NULL when
 * memory runs out: the metadata is whole or not given. */
json_t *kms_key_metadata(const struct kms_key *k)
{
    const json_t *rec = k->rec;
    enum kms_state shown = k->state;
    char code[KMS_CKS_ERROR_CODE_MAX];
    /* A key whose custom key store is not connected is Unavailable until it is (kms.md §6). */
    if (k->cks != NULL && (shown == KMS_STATE_ENABLED || shown == KMS_STATE_DISABLED) &&
        kms_cks_state_of(k->cks, k->cks_id, NULL, code, sizeof(code)) != KMS_CKS_CONNECTED) {
        shown = KMS_STATE_UNAVAILABLE;
    }
    json_t *m = json_pack(
        "{s:s,s:s,s:s,s:f,s:b,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "AWSAccountId", k->account, "KeyId",
        k->key_id, "Arn", k->arn, "CreationDate", ms_to_epoch(json_object_get(rec, "CreationDate")),
        "Enabled", shown == KMS_STATE_ENABLED, "Description", rec_str(rec, "Description"), "KeyUsage",
        rec_str(rec, "KeyUsage"), "KeyState", kms_state_name(shown), "Origin", rec_str(rec, "Origin"),
        "KeyManager", rec_str(rec, "KeyManager"), "CustomerMasterKeySpec", rec_str(rec, "KeySpec"), "KeySpec",
        rec_str(rec, "KeySpec"), "MultiRegion", json_is_true(json_object_get(rec, "MultiRegion")));
    if (m == NULL) {
        return NULL;
    }
    if ((k->state == KMS_STATE_PENDING_DELETION &&
         json_object_set_new(m, "DeletionDate",
                             json_real(ms_to_epoch(json_object_get(rec, "DeletionDate")))) != 0) ||
        /* A primary waiting for its replicas has no date yet, only the period it will wait. */
        (k->state == KMS_STATE_PENDING_REPLICA_DELETION &&
         json_object_set_new(m, "PendingDeletionWindowInDays",
                             json_integer(json_integer_value(json_object_get(rec, "PendingWindowInDays")))) !=
             0) ||
        kms_set_algorithms(m, k->spec, rec_str(rec, "KeyUsage")) != COFFER_OK ||
        (json_is_true(json_object_get(rec, "MultiRegion")) &&
         json_object_set_new(m, "MultiRegionConfiguration", multi_region_configuration(k)) != 0) ||
        (json_object_get(rec, "CurrentKeyMaterialId") != NULL &&
         json_object_set_new(m, "CurrentKeyMaterialId", json_string(rec_str(rec, "CurrentKeyMaterialId"))) !=
             0) ||
        (json_object_get(rec, "ExpirationModel") != NULL &&
         json_object_set_new(m, "ExpirationModel", json_string(rec_str(rec, "ExpirationModel"))) != 0) ||
        (json_object_get(rec, "ValidTo") != NULL &&
         json_object_set_new(m, "ValidTo", json_real(ms_to_epoch(json_object_get(rec, "ValidTo")))) != 0)) {
        json_decref(m);
        return NULL;
    }
    if (k->cks != NULL) {
        /* The store's cluster now (UpdateCustomKeyStore may have moved it to a related one). */
        char cluster[KMS_HSM_CLUSTER_ID_MAX + 1];
        if (!kms_cks_cluster_of(k->cks, k->cks_id, cluster, sizeof(cluster))) {
            coffer_str_copy(cluster, sizeof(cluster), rec_str(rec, "CloudHsmClusterId"));
        }
        if (json_object_set_new(m, "CustomKeyStoreId", json_string(k->cks_id)) != 0 ||
            json_object_set_new(m, "CloudHsmClusterId", json_string(cluster)) != 0) {
            json_decref(m);
            return NULL;
        }
    }
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* Keys whose material comes from elsewhere (multi-Region replicas)                           */
/* ------------------------------------------------------------------------------------------ */

/* Seals and stores every material of `mats` that k does not hold yet, inside t. */
static coffer_err put_new_materials(struct kms_service *svc, store_txn *t, const struct kms_key *k,
                                    const struct kms_material *mats, size_t n)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT;
    char skey[STORE_KEY_BUF];
    for (size_t i = 0; i < n; i++) {
        bool have = false;
        for (size_t j = 0; j < k->n_mats && !have; j++) {
            have = memcmp(k->mats[j].id, mats[i].id, KMS_MATERIAL_ID_LEN) == 0;
        }
        if (have) {
            continue;
        }
        material_store_key(skey, sizeof(skey), k, mats[i].id);
        coffer_buf_reset(&sealed);
        TRY_OUT(seal_record_seal(svc->sl, skey, kms_material_bytes(&mats[i]), &sealed));
        TRY_OUT(store_txn_put(t, skey, coffer_buf_cursor(&sealed)));
    }
out:
    coffer_buf_free(&sealed);
    return rc;
}

/* The index of rec.CurrentKeyMaterialId in mats; false when it names none of them. */
static bool current_index(const json_t *rec, const struct kms_material *mats, size_t n, size_t *out)
{
    const char *cur = json_string_value(json_object_get(rec, "CurrentKeyMaterialId"));
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    for (size_t i = 0; cur != NULL && i < n; i++) {
        coffer_hex_encode(mats[i].id, KMS_MATERIAL_ID_LEN, hex);
        if (strcmp(hex, cur) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

coffer_err kms_key_install(struct kms_service *svc, json_t *rec, struct kms_material *mats, size_t n_mats,
                           struct kms_key **out)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    struct kms_key *k = calloc(1, sizeof(*k));
    char skey[STORE_KEY_BUF], ck[STORE_KEY_BUF];
    *out = NULL;
    if (k == NULL || (k->grants = json_array()) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(key_from_rec(svc, k, rec));
    rec = NULL; /* owned by k now */
    if (n_mats == 0 || !current_index(k->rec, mats, n_mats, &k->current)) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "key record without its current material");
    }
    TRY_OUT(store_txn_begin(svc->st, &t));
    kms_key_store_key(skey, sizeof(skey), k->account, k->region, k->key_id);
    coffer_buf existing = COFFER_BUF_INIT;
    rc = store_txn_get(t, skey, &existing);
    coffer_buf_free(&existing);
    if (rc == COFFER_OK) {
        FAIL_OUT(COFFER_ERR_ALREADY_EXISTS, "%s already exists", k->arn);
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    TRY_OUT(put_new_materials(svc, t, k, mats, n_mats));
    kms_count_keys_key(ck, sizeof(ck), k->account, k->region);
    TRY_OUT(kms_count_add(t, ck, 1, svc->limits.kms_keys, "KMS keys in this account and Region"));
    kms_count_aliases_key(ck, sizeof(ck), k->account, k->region, k->key_id);
    TRY_OUT(store_txn_put(t, ck, coffer_cursor_from_str("0")));
    TRY_OUT(kms_txn_put_json(t, skey, k->rec));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    /* The materials move into k only now: on failure they stay with the caller. */
    k->mats = mats;
    k->n_mats = n_mats;
    cache_key(ck, sizeof(ck), k->account, k->region, k->key_id);
    pthread_rwlock_wrlock(&svc->lock);
    rc = coffer_map_put(&svc->keys, ck, k);
    pthread_rwlock_unlock(&svc->lock);
    if (rc != COFFER_OK) {
        k->mats = NULL; /* durable but not cached: the next use loads it; the caller frees mats */
        k->n_mats = 0;
        goto out;
    }
    *out = k;
    k = NULL;
out:
    store_txn_abort(t);
    json_decref(rec);
    kms_key_free(k);
    return rc;
}

coffer_err kms_key_sync_materials(struct kms_service *svc, struct kms_key *k, json_t *rec,
                                  struct kms_material *mats, size_t n_mats)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    char skey[STORE_KEY_BUF];
    enum kms_state st;
    policy *kpol = NULL;
    size_t current = 0;
    if (!kms_state_parse(json_string_value(json_object_get(rec, "KeyState")), &st)) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "bad key state");
    }
    if (n_mats == 0 || !current_index(rec, mats, n_mats, &current)) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "key record without its current material");
    }
    TRY_OUT(kms_key_policy_compile(svc, rec, &kpol));
    TRY_OUT(store_txn_begin(svc->st, &t));
    TRY_OUT(put_new_materials(svc, t, k, mats, n_mats));
    kms_key_store_key(skey, sizeof(skey), k->account, k->region, k->key_id);
    TRY_OUT(kms_txn_put_json(t, skey, rec));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    pthread_rwlock_wrlock(&svc->lock);
    json_t *old = k->rec;
    policy *old_pol = k->kpol;
    struct kms_material *old_mats = k->mats;
    size_t old_n = k->n_mats;
    k->rec = rec;
    k->kpol = kpol;
    k->state = st;
    k->mats = mats;
    k->n_mats = n_mats;
    k->current = current;
    pthread_rwlock_unlock(&svc->lock);
    json_decref(old);
    policy_free(old_pol);
    for (size_t i = 0; i < old_n; i++) {
        kms_material_clear(&old_mats[i]);
    }
    free(old_mats);
    return COFFER_OK;
out:
    store_txn_abort(t);
    json_decref(rec);
    policy_free(kpol);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Changes made by other nodes (the store's change feed)                                      */
/* ------------------------------------------------------------------------------------------ */

/* "<acct>/<region>/<id>" of a record "kms/<kind>/<acct>/<region>/<id>[/...]"; false if malformed. */
static bool changed_key_id(const char *rest, char *ck, size_t n)
{
    const char *p = rest;
    for (int slashes = 0; *p != '\0'; p++) {
        if (*p == '/' && ++slashes == 3) {
            break;
        }
    }
    size_t len = (size_t)(p - rest);
    if (len == 0 || len >= n) {
        return false;
    }
    memcpy(ck, rest, len);
    ck[len] = '\0';
    return true;
}

void kms_cache_changed(void *ctx, const char *key)
{
    struct kms_service *svc = ctx;
    char ck[STORE_KEY_BUF];
    struct kms_key *gone = NULL;
    /* Under wmu, as every load is: a load that read the record before this change either
     * finished before us (and is evicted here) or starts after us and reads the new record. */
    pthread_mutex_lock(&svc->wmu);
    pthread_rwlock_wrlock(&svc->lock);
    if (key == NULL) {
        coffer_map_clean(&svc->keys);
        coffer_map_clean(&svc->aliases);
    } else if (strncmp(key, "kms/alias/", 10) == 0) {
        coffer_map_delete(&svc->aliases, key + 10);
    } else if ((strncmp(key, "kms/key/", 8) == 0 && changed_key_id(key + 8, ck, sizeof(ck))) ||
               (strncmp(key, "kms/grant/", 10) == 0 && changed_key_id(key + 10, ck, sizeof(ck))) ||
               (strncmp(key, "kms/material/", 13) == 0 && changed_key_id(key + 13, ck, sizeof(ck)))) {
        gone = coffer_map_take(&svc->keys, ck); /* freed after the lock: it wipes key material */
    }
    pthread_rwlock_unlock(&svc->lock);
    pthread_mutex_unlock(&svc->wmu);
    kms_key_free(gone);
}
