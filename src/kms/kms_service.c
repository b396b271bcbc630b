/*
 * The KMS service object: operation table for the HTTP pipeline, lifecycle, the deletion
 * sweeper run by the scheduler, and the audit/output helpers the handlers share.
 */
#include "kms/kms.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

#define SWEEP_BATCH 64

/*
 * The rows of kms_ops.def, in their order: KMS_OP_<Name> indexes this table. (The macro's
 * parameters are not called name/flags: the preprocessor would rewrite the designators too.)
 */
static const struct api_op kms_ops[KMS_OP_COUNT] = {
#define KMS_OP(op, decoder, op_flags, rps)                                                                   \
    [KMS_OP_##op] = {.name = #op, .handler = kms_op_##op, .flags = (op_flags), .quota_rps = (rps)},
#include "kms/kms_ops.def"
#undef KMS_OP
};

const char *kms_op_name(enum kms_op_id op)
{
    assert((unsigned)op < KMS_OP_COUNT);
    return kms_ops[op].name;
}

/* Where KMS names an error differently from common/err.h's defaults (kms.md §8). */
static const struct api_error_name kms_errors[] = {
    {COFFER_ERR_NOMEM, "KMSInternalException", 0, NULL},
    {COFFER_ERR_INTERNAL, "KMSInternalException", 0, NULL},
    {COFFER_ERR_IO, "KMSInternalException", 0, NULL},
    {COFFER_ERR_STORE, "KMSInternalException", 0, NULL},
    {COFFER_ERR_AUDIT, "KMSInternalException", 0, NULL},
    {COFFER_ERR_CRYPTO, "KMSInternalException", 0, NULL},
    {COFFER_ERR_CONFIG, "KMSInternalException", 0, NULL},
    {COFFER_ERR_KEYRING, "KMSInternalException", 0, NULL},
    {COFFER_ERR_INVALID_STATE, "KMSInvalidStateException", 0, NULL},
    {COFFER_ERR_THROTTLING, NULL, 0,
     "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."},
};

/* Members that carry plaintext, key material or bulky blobs in some KMS operation: never echoed
 * into the trail, wiped after use. */
static const char *const kms_sensitive_members[] = {
    "Plaintext",
    "CiphertextBlob",
    "PrivateKeyPlaintext",
    "PrivateKeyCiphertextBlob",
    "EncryptedKeyMaterial",
    "ImportToken",
    "Message",
    "Signature",
    "Mac",
    "CiphertextForRecipient",
    "SharedSecret",
    "PublicKey",
    "KeyStorePassword",
    "XksProxyAuthenticationCredential",
    "WrappedMaterial",
    NULL,
};

static coffer_err sweep_job(void *ctx, int64_t now_ms)
{
    coffer_err rc = kms_service_sweep(ctx, now_ms);
    /* Replicas deleted now or earlier: their primary regions are told, or retried next run. */
    kms_mrk_replica_gone_deliver(ctx);
    return rc;
}

static coffer_err rotation_job(void *ctx, int64_t now_ms)
{
    return kms_service_rotate_due(ctx, now_ms);
}

static coffer_err expiry_job(void *ctx, int64_t now_ms)
{
    return kms_service_expire_imports(ctx, now_ms);
}

static void free_key(void *p)
{
    kms_key_free(p);
}

/* ReplicateKey only, signed for a peer region: the replica side of a replication (kms_ops_region.c). */
static bool scope_region_ok(void *state, const char *op, const char *region)
{
    return strcmp(op, "ReplicateKey") == 0 && kms_peer_find(state, region) != NULL;
}

coffer_err kms_service_new(store *st, seal *sl, const char *region, struct kms_service **out)
{
    ENSURE_REF(st);
    ENSURE_REF(sl);
    ENSURE_REF(out);
    *out = NULL;
    /* A row of kms_ops.def out of order would make some operations unreachable: refuse to start. */
    TRY(api_ops_check(kms_ops, KMS_OP_COUNT));
    TRY(kms_grants_index_ensure(st));
    struct kms_service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL) {
        return kms_nomem();
    }
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Crypto readers are many and constant: without this a control-plane writer could starve. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&svc->lock, &attr) != 0 || pthread_mutex_init(&svc->wmu, NULL) != 0) {
        pthread_rwlockattr_destroy(&attr);
        free(svc);
        return coffer_fail(COFFER_ERR_INTERNAL, "lock init failed");
    }
    pthread_rwlockattr_destroy(&attr);
    kms_inproc_init(svc);
    svc->st = st;
    svc->sl = sl;
    coffer_map_init(&svc->keys, free_key);
    coffer_map_init(&svc->aliases, free);
    svc->limits = (struct kms_limits)KMS_LIMITS_DEFAULT;
    snprintf(svc->region, sizeof(svc->region), "%s", region != NULL ? region : "");
    svc->api.target_prefix = "TrentService";
    svc->api.signing_name = "kms";
    svc->api.event_source = "kms.amazonaws.com";
    svc->api.ops = kms_ops;
    svc->api.n_ops = KMS_OP_COUNT;
    svc->api.state = svc;
    svc->api.errors = kms_errors;
    svc->api.n_errors = sizeof(kms_errors) / sizeof(kms_errors[0]);
    svc->api.sensitive_members = kms_sensitive_members;
    svc->api.scope_region_ok = scope_region_ok;
    /* Keys whose waiting period ended are deleted at every tick of the scheduler. */
    svc->jobs[0] = (struct api_job){.name = "key deletion sweep", .fn = sweep_job, .ctx = svc, .period_s = 0};
    /* Due automatic rotations, found through their date index: a tick without any reads one entry. */
    svc->jobs[1] = (struct api_job){.name = "key rotation", .fn = rotation_job, .ctx = svc, .period_s = 0};
    /* Imported material whose ValidTo passed is deleted at every tick too. */
    svc->jobs[2] =
        (struct api_job){.name = "imported material expiry", .fn = expiry_job, .ctx = svc, .period_s = 0};
    /* Key last usage noted in memory reaches the store once a second. */
    svc->jobs[3] =
        (struct api_job){.name = "key usage flush", .fn = kms_usage_job, .ctx = svc, .period_s = 1};
    svc->api.jobs = svc->jobs;
    svc->api.n_jobs = sizeof(svc->jobs) / sizeof(svc->jobs[0]);
    coffer_err rc = kms_cks_registry_new(&svc->cks);
    if (rc == COFFER_OK) {
        rc = kms_usage_init(svc);
    }
    /* Other nodes sharing the store change records this node caches. */
    static const char *const cached[] = KMS_CACHED_PREFIXES;
    for (size_t i = 0; rc == COFFER_OK && i < sizeof(cached) / sizeof(cached[0]); i++) {
        rc = store_watch(st, cached[i], kms_cache_changed, svc);
    }
    if (rc != COFFER_OK) {
        kms_service_free(svc);
        return rc;
    }
    *out = svc;
    return COFFER_OK;
}

void kms_service_set_authorizer(struct kms_service *svc, authz *az)
{
    svc->az = az;
}

void kms_service_set_event_sink(struct kms_service *svc, kms_event_sink fn, void *ctx)
{
    svc->event_sink = fn;
    svc->event_ctx = ctx;
}

void kms_service_set_trail(struct kms_service *svc, struct audit_trail *trail)
{
    svc->trail = trail;
}

/* CloudTrail records what KMS does on its own (DeleteKey, RotateKey, ...) as an AwsServiceEvent. */
coffer_err kms_record_service_event(struct kms_service *svc, const char *event_name, const char *acct,
                                    const char *region, const char *id, int64_t now_ms)
{
    if (svc->event_sink == NULL) {
        return COFFER_OK;
    }
    char ids[1][CRYPTO_UUID_STR_LEN + 1], when[40], arn[KMS_ARN_MAX];
    TRY(crypto_uuid_v4_many(ids, 1));
    coffer_time_iso8601(now_ms / 1000, when, sizeof(when));
    kms_key_arn(arn, sizeof(arn), region, acct, id);
    const char *source = svc->api.event_source; /* the service itself acts */
    json_t *ev =
        json_pack("{s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:n,s:n,s:{s:s},s:s,s:b,"
                  "s:[{s:s,s:s,s:s}],s:s,s:b,s:s,s:s}",
                  "eventVersion", "1.08", "userIdentity", "accountId", acct, "invokedBy", source, "eventTime",
                  when, "eventSource", source, "eventName", event_name, "awsRegion", region,
                  "sourceIPAddress", source, "userAgent", source, "requestParameters", "responseElements",
                  "additionalEventData", "keyId", arn, "eventID", ids[0], "readOnly", 0, "resources",
                  "accountId", acct, "type", "AWS::KMS::Key", "ARN", arn, "eventType", "AwsServiceEvent",
                  "managementEvent", 1, "recipientAccountId", acct, "eventCategory", "Management");
    if (ev == NULL) {
        return kms_nomem();
    }
    coffer_err rc = svc->event_sink(svc->event_ctx, ev);
    json_decref(ev);
    return rc;
}

void kms_service_set_limits(struct kms_service *svc, const struct kms_limits *limits)
{
    svc->limits = *limits;
}

void kms_service_set_peers(struct kms_service *svc, const struct kms_peer *peers, size_t n)
{
    svc->n_peers = n < KMS_MAX_PEERS ? n : KMS_MAX_PEERS;
    memcpy(svc->peers, peers, svc->n_peers * sizeof(*peers));
}

const struct api_service *kms_service_api(struct kms_service *svc)
{
    return &svc->api;
}

void kms_service_free(struct kms_service *svc)
{
    if (svc == NULL) {
        return;
    }
    store_unwatch(svc->st, kms_cache_changed, svc); /* no callback runs after this */
    kms_usage_free(svc);
    coffer_map_clean(&svc->keys);
    kms_cks_registry_free(svc->cks); /* after the keys, which borrow it */
    coffer_map_clean(&svc->aliases);
    pthread_rwlock_destroy(&svc->lock);
    pthread_mutex_destroy(&svc->wmu);
    free(svc);
}

static const struct kms_hsm_cluster *set_clusters(const void *settings)
{
    return ((const struct kms_settings *)settings)->hsm_clusters;
}

static size_t set_n_clusters(const void *settings)
{
    return ((const struct kms_settings *)settings)->n_hsm_clusters;
}

coffer_err kms_service_set_hsm_clusters(struct kms_service *svc, const struct kms_hsm_cluster *clusters,
                                        size_t n)
{
    kms_cks_set_clusters(svc->cks, clusters, n);
    return kms_cks_start(svc->cks, svc->st);
}

/* The module cofferd starts (api/module.h): settings are a struct kms_settings. */
static coffer_err module_start(const struct api_host *host, void **instance, const struct api_service **api)
{
    struct kms_service *svc = NULL;
    TRY(kms_service_new(host->store, host->seal, host->region, &svc));
    if (host->settings != NULL) {
        const struct kms_settings *set = host->settings;
        kms_service_set_limits(svc, &set->limits);
        kms_service_set_peers(svc, set->peers, set->n_peers);
    }
    coffer_err rc =
        kms_service_set_hsm_clusters(svc, host->settings != NULL ? set_clusters(host->settings) : NULL,
                                     host->settings != NULL ? set_n_clusters(host->settings) : 0);
    if (rc != COFFER_OK) {
        kms_service_free(svc);
        return rc;
    }
    kms_service_set_event_sink(svc, host->record, host->record_ctx);
    kms_service_set_trail(svc, host->trail);
    if (host->authz != NULL) {
        kms_service_set_authorizer(svc, host->authz);
        rc = kms_service_bind_principals(svc);
        if (rc != COFFER_OK) {
            kms_service_free(svc);
            return rc;
        }
    }
    *instance = svc;
    *api = kms_service_api(svc);
    return COFFER_OK;
}

static void module_stop(void *instance)
{
    kms_service_free(instance);
}

static const void *module_interface(void *instance)
{
    return &((struct kms_service *)instance)->inproc;
}

const struct api_module kms_module = {
    .name = "kms", .start = module_start, .stop = module_stop, .interface = module_interface};

/* ------------------------------------------------------------------------------------------ */
/* Sweeper                                                                                    */
/* ------------------------------------------------------------------------------------------ */

struct strvec {
    char **v;
    size_t n, cap;
};

static coffer_err strvec_push(struct strvec *s, const char *str, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL) {
            return kms_nomem();
        }
        s->v = v;
        s->cap = cap;
    }
    if ((s->v[s->n] = strndup(str, len)) == NULL) {
        return kms_nomem();
    }
    s->n++;
    return COFFER_OK;
}

static void strvec_free(struct strvec *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i]);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

struct due_scan {
    const char *prefix; /* "kms/deletion/", "kms/rotation/": entries "<prefix><16 digits ms>/..." */
    int64_t now_ms;
    struct strvec keys;
};

static coffer_err due_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct due_scan *d = ctx;
    (void)value;
    const char *ts = key + strlen(d->prefix);
    if (strlen(key) < strlen(d->prefix) + 17) {
        return COFFER_OK;
    }
    int64_t when = strtoll(ts, NULL, 10);
    if (when > d->now_ms) {
        return STORE_SCAN_STOP; /* ordered by date: nothing further is due */
    }
    return strvec_push(&d->keys, key, strlen(key));
}

static coffer_err collect_cb(void *ctx, const char *key, coffer_cursor value)
{
    (void)value;
    return strvec_push(ctx, key, strlen(key));
}

struct alias_scan {
    const char *target;
    struct strvec keys;
};

static coffer_err alias_target_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct alias_scan *a = ctx;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    const char *t = json_string_value(json_object_get(rec, "TargetKeyId"));
    coffer_err rc = COFFER_OK;
    if (t != NULL && strcmp(t, a->target) == 0) {
        rc = strvec_push(&a->keys, key, strlen(key));
    }
    json_decref(rec);
    return rc;
}

/* Deletes one due key (wmu held). `index_key` is its kms/deletion entry. */
static coffer_err purge_key(struct kms_service *svc, const char *index_key, int64_t now_ms)
{
    char acct[API_ACCOUNT_ID_LEN + 1], region[KMS_REGION_MAX + 1], id[KMS_KEY_ID_MAX + 1];
    char skey[STORE_KEY_BUF], prefix[STORE_KEY_BUF];
    long long ts;
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    coffer_buf val = COFFER_BUF_INIT;
    json_t *rec = NULL;
    struct strvec mats = {0};
    struct alias_scan aliases = {0};
    bool deleted = false;
    char cks_id[KMS_CKS_ID_LEN + 1] = "";
    if (sscanf(index_key, "kms/deletion/%16lld/%12[0-9]/%32[a-z0-9-]/%40[a-z0-9-]", &ts, acct, region, id) !=
        4) {
        /* Not ours to interpret: drop the index entry so the sweeper does not spin on it. */
        acct[0] = '\0';
    }
    TRY_OUT(store_txn_begin(svc->st, &t));
    if (acct[0] != '\0') {
        kms_key_store_key(skey, sizeof(skey), acct, region, id);
        rc = store_txn_get(t, skey, &val);
        if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
            goto out;
        }
        /* A record already gone leaves only its index entry to drop. */
        bool found = rc == COFFER_OK;
        rc = COFFER_OK;
        rec = found ? json_loadb((const char *)val.data, val.len, 0, NULL) : NULL;
        const char *state = json_string_value(json_object_get(rec, "KeyState"));
        int64_t due = (int64_t)json_integer_value(json_object_get(rec, "DeletionDate"));
        if (state != NULL && strcmp(state, "PendingDeletion") == 0 && due <= now_ms) {
            /* Before the record goes, so a counter rebuilt here still sees this key. */
            kms_count_keys_key(prefix, sizeof(prefix), acct, region);
            TRY_OUT(kms_count_add(t, prefix, -1, 0, "KMS keys"));
            TRY_OUT(store_txn_delete(t, skey));
            deleted = true;
            /* A replica's primary region must learn it is gone (sent after the commit). */
            TRY_OUT(kms_mrk_replica_gone_txn(t, rec, acct, id));
            snprintf(prefix, sizeof(prefix), "kms/material/%s/%s/%s/", acct, region, id);
            TRY_OUT(store_txn_scan(t, prefix, NULL, 0, collect_cb, &mats));
            for (size_t i = 0; i < mats.n; i++) {
                TRY_OUT(store_txn_delete(t, mats.v[i]));
            }
            /* Grants die with their key, their index entries with them. */
            TRY_OUT(kms_grants_delete_in(t, acct, region, id));
            /* So do its import parameters and import check (an expiry entry left drops itself). */
            TRY_OUT(kms_import_delete_in(t, acct, region, id));
            TRY_OUT(kms_usage_delete_in(t, acct, region, id));
            /* A key of a custom key store leaves its store's list (its token object goes below). */
            const char *in_store = json_string_value(json_object_get(rec, "CustomKeyStoreId"));
            if (in_store != NULL) {
                coffer_str_copy(cks_id, sizeof(cks_id), in_store);
                kms_cks_key_index(prefix, sizeof(prefix), acct, region, cks_id, id);
                rc = store_txn_delete(t, prefix);
                if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
                    goto out;
                }
                rc = COFFER_OK;
            }
            snprintf(prefix, sizeof(prefix), "kms/alias/%s/%s/", acct, region);
            aliases.target = id;
            TRY_OUT(store_txn_scan(t, prefix, NULL, 0, alias_target_cb, &aliases));
            for (size_t i = 0; i < aliases.keys.n; i++) {
                TRY_OUT(store_txn_delete(t, aliases.keys.v[i]));
            }
            kms_count_aliases_key(prefix, sizeof(prefix), acct, region, id);
            rc = store_txn_delete(t, prefix);
            if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
                goto out;
            }
        }
    }
    rc = store_txn_delete(t, index_key);
    if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    if (deleted) {
        TRY_OUT(kms_record_service_event(svc, "DeleteKey", acct, region, id,
                                         now_ms)); /* on record before it is gone */
    }
    rc = store_txn_commit(t);
    t = NULL;
    if (rc != COFFER_OK || acct[0] == '\0') {
        goto out;
    }
    /* Durable: now forget it in memory. */
    char ck[STORE_KEY_BUF];
    snprintf(ck, sizeof(ck), "%s/%s/%s", acct, region, id);
    struct kms_key *gone = NULL;
    pthread_rwlock_wrlock(&svc->lock);
    if (deleted) {
        gone = coffer_map_take(&svc->keys, ck); /* freed after the lock: it wipes key material */
    }
    for (size_t i = 0; i < aliases.keys.n; i++) {
        /* "kms/alias/<acct>/<region>/<alias name>" -> "<acct>/<region>/<alias name>" */
        coffer_map_delete(&svc->aliases, aliases.keys.v[i] + strlen("kms/alias/"));
    }
    pthread_rwlock_unlock(&svc->lock);
    kms_key_free(gone);
    /* As AWS does, best effort: a store disconnected now keeps the (unreachable) token object. */
    if (deleted && cks_id[0] != '\0' && kms_cks_key_destroy(svc->cks, cks_id, id) != COFFER_OK) {
        log_warn("kms: the key material of deleted key %s stays in custom key store %s: %s", id, cks_id,
                 coffer_last_message());
    }
out:
    store_txn_abort(t);
    json_decref(rec);
    coffer_buf_free(&val);
    strvec_free(&mats);
    strvec_free(&aliases.keys);
    return rc;
}

/* Finds up to SWEEP_BATCH due keys (in d->keys, which the caller frees) and purges them. */
static coffer_err sweep_batch(struct kms_service *svc, struct due_scan *d, int64_t now_ms)
{
    TRY(store_scan(svc->st, d->prefix, NULL, SWEEP_BATCH, due_cb, d));
    for (size_t i = 0; i < d->keys.n; i++) {
        pthread_mutex_lock(&svc->wmu);
        coffer_err rc = purge_key(svc, d->keys.v[i], now_ms);
        pthread_mutex_unlock(&svc->wmu);
        TRY(rc);
    }
    return COFFER_OK;
}

coffer_err kms_service_sweep(struct kms_service *svc, int64_t now_ms)
{
    for (;;) {
        struct due_scan d = {.prefix = "kms/deletion/", .now_ms = now_ms};
        coffer_err rc = sweep_batch(svc, &d, now_ms);
        size_t n = d.keys.n;
        strvec_free(&d.keys);
        if (rc != COFFER_OK || n < SWEEP_BATCH) {
            return rc;
        }
    }
}

/* Finds up to SWEEP_BATCH due rotations (in d->keys, which the caller frees) and runs them. */
static coffer_err rotate_batch(struct kms_service *svc, struct due_scan *d, int64_t now_ms)
{
    TRY(store_scan(svc->st, d->prefix, NULL, SWEEP_BATCH, due_cb, d));
    for (size_t i = 0; i < d->keys.n; i++) {
        struct kms_rotated_primary push = {0};
        pthread_mutex_lock(&svc->wmu);
        coffer_err rc = kms_rotation_run_due(svc, d->keys.v[i], now_ms, &push);
        pthread_mutex_unlock(&svc->wmu);
        TRY(rc);
        if (push.rotated) {
            kms_rotation_push_replicas(svc, push.account, push.key_id);
        }
    }
    return COFFER_OK;
}

coffer_err kms_service_rotate_due(struct kms_service *svc, int64_t now_ms)
{
    /* Each run moves or drops its entry, so the loop ends once nothing due is left. */
    for (;;) {
        struct due_scan d = {.prefix = "kms/rotation/", .now_ms = now_ms};
        coffer_err rc = rotate_batch(svc, &d, now_ms);
        size_t n = d.keys.n;
        strvec_free(&d.keys);
        if (rc != COFFER_OK || n < SWEEP_BATCH) {
            return rc;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Audit and output helpers                                                                   */
/* ------------------------------------------------------------------------------------------ */

static bool is_map_member(const char *name)
{
    size_t n = strlen(name), m = strlen("EncryptionContext");
    return n >= m && strcmp(name + n - m, "EncryptionContext") == 0;
}

/* Deep copy with object keys in lowerCamelCase (maps copied verbatim); NULL when memory runs out. */
json_t *kms_camel_copy(const json_t *v)
{
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            char path[128];
            api_in_member_path(k, path, sizeof(path));
            if (o == NULL ||
                json_object_set_new(o, path, is_map_member(k) ? json_deep_copy(e) : kms_camel_copy(e)) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (a == NULL || json_array_append_new(a, kms_camel_copy(e)) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    return json_deep_copy(v);
}

void kms_audit_request(struct api_call *call, const char *const *members)
{
    if (!json_is_object(call->input)) {
        return;
    }
    json_t *req = json_object();
    for (size_t i = 0; req != NULL && members[i] != NULL; i++) {
        const json_t *v = json_object_get(call->input, members[i]);
        if (v == NULL || json_is_null(v)) {
            continue;
        }
        char path[128];
        api_in_member_path(members[i], path, sizeof(path));
        if (json_object_set_new(req, path,
                                is_map_member(members[i]) ? json_deep_copy(v) : kms_camel_copy(v)) != 0) {
            json_decref(req);
            req = NULL;
        }
    }
    if (req == NULL) {
        call->audit_incomplete = true; /* the request is refused: its event would lack parameters */
        return;
    }
    json_decref(call->audit_request);
    call->audit_request = req;
}

void kms_audit_key_arn(struct api_call *call, const char *account, const char *arn)
{
    /* Built member by member: json_pack parses its format on every call of every key operation. */
    json_t *r = json_object();
    if (r != NULL && (json_object_set_new_nocheck(r, "accountId", json_string(account)) != 0 ||
                      json_object_set_new_nocheck(r, "type", json_string_nocheck("AWS::KMS::Key")) != 0 ||
                      json_object_set_new_nocheck(r, "ARN", json_string(arn)) != 0)) {
        json_decref(r);
        r = NULL;
    }
    if (call->audit_resources == NULL) {
        call->audit_resources = json_array();
    }
    if (json_array_append_new(call->audit_resources, r) != 0) {
        call->audit_incomplete = true; /* the request is refused: its event would lack the key */
    }
}

void kms_audit_key(struct api_call *call, const struct kms_key *k)
{
    kms_audit_key_arn(call, k->account, k->arn);
}

coffer_err kms_out_blob(json_t *obj, const char *name, coffer_cursor bytes, bool secret)
{
    coffer_err rc = COFFER_OK;
    coffer_buf b64;
    coffer_buf_init(&b64, secret);
    TRY_OUT(coffer_b64_encode(bytes, &b64));
    /* Base64 is ASCII: no UTF-8 check needed. */
    if (json_object_set_new(obj, name,
                            json_stringn_nocheck(b64.len ? (const char *)b64.data : "", b64.len)) != 0) {
        rc = kms_nomem();
    }
out:
    coffer_buf_free(&b64);
    return rc;
}

json_t *kms_out_key(const char *arn, const char *alg)
{
    json_t *o = json_object();
    if (o == NULL || json_object_set_new_nocheck(o, "KeyId", json_string(arn)) != 0 ||
        (alg != NULL && json_object_set_new_nocheck(o, "EncryptionAlgorithm", json_string(alg)) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int64_t kms_call_now_ms(const struct api_call *call)
{
    return call->now_ms > 0 ? call->now_ms : coffer_now_ms();
}

coffer_err kms_marker_encode(const char *last, json_t *out_obj)
{
    return kms_out_blob(out_obj, "NextMarker", coffer_cursor_from_str(last), false);
}

coffer_err kms_marker_decode(const char *marker, char *out, size_t n)
{
    coffer_buf raw = COFFER_BUF_INIT;
    coffer_err rc = coffer_b64_decode(coffer_cursor_from_str(marker), &raw);
    if (rc != COFFER_OK || raw.len == 0 || raw.len >= n || memchr(raw.data, 0, raw.len) != NULL) {
        coffer_buf_free(&raw);
        return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", marker);
    }
    memcpy(out, raw.data, raw.len);
    out[raw.len] = '\0';
    coffer_buf_free(&raw);
    return COFFER_OK;
}

coffer_err kms_begin_key_write(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                               const char *const *audit_members, enum kms_state_rule rule, struct kms_req *r,
                               struct kms_key **k)
{
    kms_audit_request(call, audit_members);
    TRY(kms_req_decode(op, call->input, r));
    TRY(kms_acquire_write(svc, call, r->key_id, 0, k));
    kms_audit_key(call, *k);
    char action[64];
    snprintf(action, sizeof(action), "kms:%s", kms_op_name(op));
    coffer_err rc = COFFER_OK;
    TRY_OUT(kms_authorize_key(svc, call, *k, &(struct kms_authz_in){.action = action, .r = r}));
    TRY_OUT(kms_check_state(*k, rule));
out:
    /* On success the caller holds the key for writing until kms_write_release. */
    if (rc != COFFER_OK) {
        kms_write_release(svc);
        *k = NULL;
    }
    return rc;
}
