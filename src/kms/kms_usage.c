/*
 * Key last usage (GetKeyLastUsage): the last successful cryptographic operation of each key.
 *
 * Writing a record on every Encrypt would put a store commit on the hot path, so a success
 * only updates an entry in memory (one mutex, one map lookup) and the "key usage flush" job
 * writes the entries that changed once a second, in one transaction, as
 *
 *   kms/usage/<acct>/<region>/<id>  {"Operation", "Timestamp" (ms), "CloudTrailEventId",
 *                                    "KmsRequestId"}
 *
 * keeping whichever of the stored and the pending use is later (several nodes may flush the
 * same key). A kill -9 loses at most the last second of usage news, never a key or a request;
 * a clean stop flushes. The deletion sweeper removes the record with its key.
 *
 * "kms/usage-since" holds when this deployment began tracking ({"Since": ms}), written at the
 * first start that knows about usage: TrackingStartDate is the later of it and the key's
 * creation, as AWS reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "kms/kms_internal.h"

#define USAGE_SINCE_KEY "kms/usage-since"

struct usage {
    char acct[API_ACCOUNT_ID_LEN + 1];
    char region[KMS_REGION_MAX + 1];
    char id[KMS_KEY_ID_MAX + 1];
    const char *operation; /* static: a KMS operation name */
    int64_t when_ms;
    char event_id[40];
    char request_id[40];
};

/* "<acct>/<region>/<id>" without snprintf: this runs on every successful Encrypt. */
static void map_key(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    size_t la = strlen(acct), lr = strlen(region), li = strlen(id);
    if (la + lr + li + 3 > n) {
        out[0] = 0;
        return;
    }
    memcpy(out, acct, la);
    out[la] = '/';
    memcpy(out + la + 1, region, lr);
    out[la + 1 + lr] = '/';
    memcpy(out + la + lr + 2, id, li + 1);
}

static void usage_record_key(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    snprintf(out, n, "%s%s/%s/%s", KMS_USAGE_PREFIX, acct, region, id);
}

coffer_err kms_usage_init(struct kms_service *svc)
{
    if (pthread_mutex_init(&svc->usage_mu, NULL) != 0) {
        return coffer_fail(COFFER_ERR_INTERNAL, "lock init failed");
    }
    coffer_map_init(&svc->usage, free);
    svc->usage_ready = true;
    store_txn *t = NULL;
    coffer_buf have = COFFER_BUF_INIT;
    json_t *rec = NULL;
    coffer_err rc = store_txn_begin(svc->st, &t);
    if (rc != COFFER_OK) {
        return rc;
    }
    rc = store_txn_get(t, USAGE_SINCE_KEY, &have);
    if (rc == COFFER_OK) {
        json_t *old = json_loadb((const char *)have.data, have.len, 0, NULL);
        svc->usage_since_ms = (int64_t)json_integer_value(json_object_get(old, "Since"));
        json_decref(old);
        goto out;
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    coffer_clear_err();
    svc->usage_since_ms = coffer_now_ms();
    rec = json_pack("{s:I}", "Since", (json_int_t)svc->usage_since_ms);
    if (rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_txn_put_json(t, USAGE_SINCE_KEY, rec));
    rc = store_txn_commit(t);
    t = NULL;
out:
    store_txn_abort(t);
    coffer_buf_free(&have);
    json_decref(rec);
    return rc;
}

void kms_usage_free(struct kms_service *svc)
{
    if (!svc->usage_ready) {
        return;
    }
    if (kms_usage_flush(svc) != COFFER_OK) {
        log_warn("kms: key usage not saved at stop: %s", coffer_last_message());
    }
    coffer_map_clean(&svc->usage);
    pthread_mutex_destroy(&svc->usage_mu);
    svc->usage_ready = false;
}

void kms_usage_note(struct kms_service *svc, const struct api_call *call, const char *acct,
                    const char *region, const char *id, const char *operation)
{
    if (!svc->usage_ready) {
        return;
    }
    char mkey[API_ACCOUNT_ID_LEN + KMS_REGION_MAX + KMS_KEY_ID_MAX + 4];
    map_key(mkey, sizeof(mkey), acct, region, id);
    pthread_mutex_lock(&svc->usage_mu);
    struct usage *u = coffer_map_get(&svc->usage, mkey);
    if (u == NULL) {
        u = calloc(1, sizeof(*u));
        if (u == NULL || coffer_map_put(&svc->usage, mkey, u) != COFFER_OK) {
            /* Usage is advisory: a failed note must not fail the operation that succeeded. */
            pthread_mutex_unlock(&svc->usage_mu);
            free(u);
            coffer_clear_err();
            return;
        }
        coffer_str_copy(u->acct, sizeof(u->acct), acct);
        coffer_str_copy(u->region, sizeof(u->region), region);
        coffer_str_copy(u->id, sizeof(u->id), id);
    }
    int64_t when = call->now_ms;
    if (when >= u->when_ms) {
        u->operation = operation;
        u->when_ms = when;
        coffer_str_copy(u->event_id, sizeof(u->event_id), call->event_id != NULL ? call->event_id : "");
        coffer_str_copy(u->request_id, sizeof(u->request_id),
                        call->request_id != NULL ? call->request_id : "");
    }
    pthread_mutex_unlock(&svc->usage_mu);
}

void kms_usage_note_arn(struct kms_service *svc, const struct api_call *call, const char *arn,
                        const char *operation)
{
    char region[KMS_REGION_MAX + 1], acct[API_ACCOUNT_ID_LEN + 1], id[KMS_KEY_ID_MAX + 1];
    /* arn:aws:kms:<region>:<account>:key/<id>, as kms_key_arn writes it */
    if (sscanf(arn, "arn:aws:kms:%32[^:]:%12[0-9]:key/%40s", region, acct, id) == 3) {
        kms_usage_note(svc, call, acct, region, id, operation);
    }
}

static json_t *usage_json(const struct usage *u)
{
    return json_pack("{s:s,s:I,s:s,s:s}", "Operation", u->operation, "Timestamp", (json_int_t)u->when_ms,
                     "CloudTrailEventId", u->event_id, "KmsRequestId", u->request_id);
}

static coffer_err load_json(store_txn *t, store *st, const char *skey, json_t **out)
{
    coffer_buf b = COFFER_BUF_INIT;
    *out = NULL;
    coffer_err rc = t != NULL ? store_txn_get(t, skey, &b) : store_get(st, skey, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        rc = COFFER_OK;
    } else if (rc == COFFER_OK) {
        *out = json_loadb((const char *)b.data, b.len, 0, NULL);
        if (*out == NULL) {
            rc = coffer_fail(COFFER_ERR_INTERNAL, "corrupt key usage record %s", skey);
        }
    }
    coffer_buf_free(&b);
    return rc;
}

coffer_err kms_usage_flush(struct kms_service *svc)
{
    coffer_map pending;
    pthread_mutex_lock(&svc->usage_mu);
    pending = svc->usage;
    coffer_map_init(&svc->usage, free);
    pthread_mutex_unlock(&svc->usage_mu);
    if (coffer_map_count(&pending) == 0) {
        coffer_map_clean(&pending);
        return COFFER_OK;
    }
    store_txn *t = NULL;
    coffer_err rc = store_txn_begin(svc->st, &t);
    coffer_map_iter it;
    void *value;
    coffer_buf probe = COFFER_BUF_INIT;
    coffer_map_iter_init(&it, &pending);
    while (rc == COFFER_OK && coffer_map_iter_next(&it, NULL, NULL, &value)) {
        const struct usage *u = value;
        char skey[STORE_KEY_BUF];
        /* A key deleted since its last use leaves no usage record behind. */
        kms_key_store_key(skey, sizeof(skey), u->acct, u->region, u->id);
        rc = store_txn_get(t, skey, &probe);
        coffer_buf_free(&probe);
        if (rc == COFFER_ERR_NOT_FOUND) {
            coffer_clear_err();
            rc = COFFER_OK;
            continue;
        }
        if (rc != COFFER_OK) {
            break;
        }
        usage_record_key(skey, sizeof(skey), u->acct, u->region, u->id);
        json_t *old = NULL;
        rc = load_json(t, NULL, skey, &old);
        if (rc == COFFER_OK &&
            (old == NULL || json_integer_value(json_object_get(old, "Timestamp")) <= u->when_ms)) {
            json_t *rec = usage_json(u);
            rc = rec != NULL ? kms_txn_put_json(t, skey, rec) : kms_nomem();
            json_decref(rec);
        }
        json_decref(old);
    }
    if (rc == COFFER_OK) {
        rc = store_txn_commit(t);
        t = NULL;
    }
    store_txn_abort(t);
    coffer_map_clean(&pending);
    return rc;
}

coffer_err kms_usage_job(void *ctx, int64_t now_ms)
{
    (void)now_ms;
    return kms_usage_flush(ctx);
}

coffer_err kms_usage_get(struct kms_service *svc, const struct kms_key *k, json_t **out)
{
    char mkey[API_ACCOUNT_ID_LEN + KMS_REGION_MAX + KMS_KEY_ID_MAX + 4], skey[STORE_KEY_BUF];
    *out = NULL;
    map_key(mkey, sizeof(mkey), k->account, k->region, k->key_id);
    pthread_mutex_lock(&svc->usage_mu);
    const struct usage *u = coffer_map_get(&svc->usage, mkey);
    json_t *pending = u != NULL ? usage_json(u) : NULL;
    bool oom = u != NULL && pending == NULL;
    pthread_mutex_unlock(&svc->usage_mu);
    if (oom) {
        return kms_nomem();
    }
    json_t *stored = NULL;
    usage_record_key(skey, sizeof(skey), k->account, k->region, k->key_id);
    coffer_err rc = load_json(NULL, svc->st, skey, &stored);
    if (rc != COFFER_OK) {
        json_decref(pending);
        return rc;
    }
    /* The later of this node's unflushed use and the stored one (perhaps another node's). */
    if (pending != NULL &&
        (stored == NULL || json_integer_value(json_object_get(stored, "Timestamp")) <=
                               json_integer_value(json_object_get(pending, "Timestamp")))) {
        json_decref(stored);
        *out = pending;
    } else {
        json_decref(pending);
        *out = stored;
    }
    return COFFER_OK;
}

coffer_err kms_usage_delete_in(store_txn *t, const char *acct, const char *region, const char *id)
{
    char skey[STORE_KEY_BUF];
    usage_record_key(skey, sizeof(skey), acct, region, id);
    coffer_err rc = store_txn_delete(t, skey);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        rc = COFFER_OK;
    }
    return rc;
}
