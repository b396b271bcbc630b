/*
 * Key rotation (kms.md §8 "Rotation"): EnableKeyRotation, DisableKeyRotation,
 * GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations, and the one step of the scheduler's
 * rotation job that rotates a due key. A rotation adds a backing material to the key
 * (kms_key_rotate): new ciphertexts use it, older ones name theirs in the blob and still decrypt;
 * key id, ARN and policy stay.
 *
 * Record (kms_key.c) members used here: Rotation {Enabled, PeriodInDays, NextRotationDate (ms,
 * while Enabled)}, KeyMaterials [{KeyMaterialId, CreationDate, State CURRENT|NON_CURRENT,
 * RotationType AUTOMATIC|ON_DEMAND (absent on the material the key was created with)}].
 * Automatic rotation is found by the date index of kms_internal.h ("kms/rotation/...").
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kms/kms_internal.h"

#define ROTATION_PREFIX "kms/rotation/"

static const char *const audit_key_only[] = {"KeyId", NULL};

static const char *rec_str(const json_t *rec, const char *name)
{
    const char *v = json_string_value(json_object_get(rec, name));
    return v != NULL ? v : "";
}

static void index_key(char *out, size_t n, const char *acct, const char *region, const char *id,
                      int64_t when_ms)
{
    snprintf(out, n, ROTATION_PREFIX "%016" PRId64 "/%s/%s/%s", when_ms, acct, region, id);
}

static bool rotation_on(const json_t *rec)
{
    return json_is_true(json_object_get(json_object_get(rec, "Rotation"), "Enabled"));
}

static int64_t rotation_next(const json_t *rec)
{
    return (int64_t)json_integer_value(json_object_get(json_object_get(rec, "Rotation"), "NextRotationDate"));
}

static int64_t rotation_period(const json_t *rec)
{
    json_int_t d = json_integer_value(json_object_get(json_object_get(rec, "Rotation"), "PeriodInDays"));
    return d >= KMS_ROTATION_MIN_DAYS && d <= KMS_ROTATION_MAX_DAYS ? (int64_t)d : KMS_ROTATION_DEFAULT_DAYS;
}

static bool is_symmetric(const json_t *rec)
{
    return strcmp(rec_str(rec, "KeySpec"), "SYMMETRIC_DEFAULT") == 0;
}

/* A replica's materials come from its primary (kms_replica_push); it never rotates itself. */
static bool is_replica(const struct kms_key *k)
{
    return kms_mrk_is(k) && !kms_mrk_is_primary(k);
}

/*
 * Rotation is for symmetric encryption keys whose material KMS made: any other key spec or
 * origin (asymmetric, HMAC, imported material, custom key stores) is UnsupportedOperationException.
 * The origin text is AWS's. For a key spec AWS sends the exception without a message; an empty
 * detail would read as the generic default here, so the key spec is named in the origin's words.
 */
static coffer_err rotatable(const struct kms_key *k)
{
    const char *origin = rec_str(k->rec, "Origin");
    if (strcmp(origin, "AWS_KMS") != 0) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "%s origin is %s which is not valid for this operation.", k->arn, origin);
    }
    if (!is_symmetric(k->rec)) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "%s key spec is %s which is not valid for this operation.", k->arn,
                           rec_str(k->rec, "KeySpec"));
    }
    if (is_replica(k)) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "%s is a multi-Region replica key: its rotation is managed by its primary key.",
                           k->arn);
    }
    return COFFER_OK;
}

/* A copy of rec.Rotation to change (an empty object for records without one), set in rec. */
static json_t *rotation_copy(json_t *rec)
{
    const json_t *old = json_object_get(rec, "Rotation");
    json_t *rot = json_is_object(old) ? json_deep_copy(old) : json_object();
    if (rot == NULL || json_object_set_new(rec, "Rotation", rot) != 0) {
        return NULL;
    }
    return rot;
}

/* The index entries a record change removes and adds, written in the record's transaction. */
struct index_change {
    char del[STORE_KEY_BUF]; /* "" when none */
    char put[STORE_KEY_BUF]; /* "" when none */
    struct kms_service *svc; /* set: the change is a scheduled rotation, recorded before it commits */
    const struct kms_key *k;
    int64_t now_ms;
};

static coffer_err index_change_txn(store_txn *t, void *ctx)
{
    struct index_change *c = ctx;
    if (c->del[0] != '\0' && strcmp(c->del, c->put) != 0) {
        coffer_err rc = store_txn_delete(t, c->del);
        if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
            return rc;
        }
    }
    if (c->put[0] != '\0') {
        TRY(store_txn_put(t, c->put, coffer_cursor_from_str("{}")));
    }
    if (c->svc != NULL) {
        TRY(kms_record_service_event(c->svc, "RotateKey", c->k->account, c->k->region, c->k->key_id,
                                     c->now_ms));
    }
    return COFFER_OK;
}

coffer_err kms_rotation_schedule_txn(store_txn *t, const char *acct, const char *region, const char *id,
                                     int64_t when_ms)
{
    char key[STORE_KEY_BUF];
    index_key(key, sizeof(key), acct, region, id, when_ms);
    return store_txn_put(t, key, coffer_cursor_from_str("{}"));
}

coffer_err kms_rotation_reindex_txn(store_txn *t, void *ctx)
{
    const struct kms_rotation_reindex *r = ctx;
    if (!rotation_on(r->rec)) {
        return COFFER_OK;
    }
    char key[STORE_KEY_BUF];
    index_key(key, sizeof(key), r->k->account, r->k->region, r->k->key_id, rotation_next(r->rec));
    return store_txn_put(t, key, coffer_cursor_from_str("{}"));
}

/* The opening of the three rotation writes: the key (id or ARN), authorized, rotatable, usable. */
static coffer_err begin_rotation_write(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                       const char *const *audit, struct kms_req *r, struct kms_key **k)
{
    TRY(kms_begin_key_write(svc, call, op, audit, KMS_RULE_ANY, r, k));
    coffer_err rc = COFFER_OK;
    /* Before the state: a key pending import answers with its origin, as AWS does. */
    TRY_OUT(rotatable(*k));
    /* kms.md §6: Disabled is DisabledException, PendingDeletion/Creating KMSInvalidStateException. */
    TRY_OUT(kms_check_state(*k, KMS_RULE_CRYPTO));
out:
    if (rc != COFFER_OK) {
        kms_write_release(svc);
        *k = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* EnableKeyRotation, DisableKeyRotation                                                      */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_op_EnableKeyRotation(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "RotationPeriodInDays", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    TRY(begin_rotation_write(svc, call, KMS_OP_EnableKeyRotation, audit, &r, &k));
    coffer_err rc = COFFER_OK;
    int64_t day = svc->limits.kms_rotation_day_ms, now = kms_call_now_ms(call);
    int64_t period = r.has_rotation_days ? r.rotation_days : KMS_ROTATION_DEFAULT_DAYS;
    struct index_change c = {.del = "", .put = ""};
    json_t *rec = json_deep_copy(k->rec), *rot = NULL;
    if (rec == NULL || (rot = rotation_copy(rec)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    /*
     * The first rotation comes one period after rotation is turned on. A new period on a key
     * already rotating counts from the same start (its last rotation, or when rotation was
     * turned on), so the next date moves by the difference.
     */
    int64_t next = now + period * day;
    if (rotation_on(k->rec)) {
        int64_t old_next = rotation_next(k->rec);
        next = old_next - rotation_period(k->rec) * day + period * day;
        index_key(c.del, sizeof(c.del), k->account, k->region, k->key_id, old_next);
    }
    index_key(c.put, sizeof(c.put), k->account, k->region, k->key_id, next);
    if (json_object_set_new(rot, "Enabled", json_true()) != 0 ||
        json_object_set_new(rot, "PeriodInDays", json_integer(period)) != 0 ||
        json_object_set_new(rot, "NextRotationDate", json_integer(next)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    rc = kms_key_update(svc, k, rec, index_change_txn, &c);
    rec = NULL; /* taken by kms_key_update */
out:
    json_decref(rec);
    kms_write_release(svc);
    return rc;
}

coffer_err kms_op_DisableKeyRotation(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    TRY(begin_rotation_write(svc, call, KMS_OP_DisableKeyRotation, audit_key_only, &r, &k));
    coffer_err rc = COFFER_OK;
    struct index_change c = {.del = "", .put = ""};
    json_t *rec = NULL, *rot = NULL;
    if (!rotation_on(k->rec)) {
        goto out; /* already off: nothing to write */
    }
    rec = json_deep_copy(k->rec);
    if (rec == NULL || (rot = rotation_copy(rec)) == NULL ||
        json_object_set_new(rot, "Enabled", json_false()) != 0) {
        rc = kms_nomem();
        goto out;
    }
    /* The period stays on record; only the schedule goes. */
    json_object_del(rot, "NextRotationDate");
    index_key(c.del, sizeof(c.del), k->account, k->region, k->key_id, rotation_next(k->rec));
    rc = kms_key_update(svc, k, rec, index_change_txn, &c);
    rec = NULL; /* taken by kms_key_update */
out:
    json_decref(rec);
    kms_write_release(svc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* GetKeyRotationStatus                                                                       */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_op_GetKeyRotationStatus(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    kms_audit_request(call, audit_key_only);
    TRY(kms_req_decode(KMS_OP_GetKeyRotationStatus, call->input, &r));
    /* Key id or key ARN; the ARN may name another account's key (kms.md §3). */
    TRY(kms_acquire(svc, call, r.key_id, KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    coffer_err rc = COFFER_OK;
    TRY_OUT(kms_authorize_key(svc, call, k,
                              &(struct kms_authz_in){.action = "kms:GetKeyRotationStatus", .r = &r}));
    const char *origin = rec_str(k->rec, "Origin");
    if (strcmp(origin, "AWS_KMS") != 0) {
        TRY_OUT(rotatable(k));
    }
    /*
     * Asymmetric and HMAC keys answer false rather than an error (their status "is always
     * false"), as AWS does: Terraform reads it for every key KMS made. A key pending deletion
     * reports false too while it keeps its setting for a cancelled deletion.
     */
    bool on = is_symmetric(k->rec) && !kms_state_pending_deletion(k->state) && rotation_on(k->rec);
    call->output = json_pack("{s:b,s:s}", "KeyRotationEnabled", on, "KeyId", k->arn);
    if (call->output == NULL ||
        (on && (json_object_set_new(call->output, "RotationPeriodInDays",
                                    json_integer(rotation_period(k->rec))) != 0 ||
                json_object_set_new(call->output, "NextRotationDate",
                                    json_real((double)rotation_next(k->rec) / 1000.0)) != 0))) {
        rc = kms_nomem();
        goto out;
    }
    /*
     * OnDemandRotationStartDate is absent: AWS shows it only while an on-demand rotation is in
     * progress, and here one completes within its request (ListKeyRotations shows it at once).
     */
out:
    kms_release(svc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* RotateKeyOnDemand                                                                          */
/* ------------------------------------------------------------------------------------------ */

static size_t on_demand_count(const json_t *rec)
{
    size_t n = 0, i;
    const json_t *m;
    json_array_foreach(json_object_get(rec, "KeyMaterials"), i, m)
    {
        n += strcmp(rec_str(m, "RotationType"), "ON_DEMAND") == 0;
    }
    return n;
}

coffer_err kms_op_RotateKeyOnDemand(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    TRY(begin_rotation_write(svc, call, KMS_OP_RotateKeyOnDemand, audit_key_only, &r, &k));
    coffer_err rc = COFFER_OK;
    json_t *rec = NULL;
    bool push = false;
    char acct[API_ACCOUNT_ID_LEN + 1], id[KMS_KEY_ID_MAX + 1];
    /* Counted from the materials themselves, so the count cannot drift from what happened. */
    if (on_demand_count(k->rec) >= KMS_ON_DEMAND_ROTATIONS_MAX) {
        FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED,
                 "The on-demand rotations limit has been reached for the given keyId. No more on-demand "
                 "rotations can be performed for this key: %s",
                 k->arn);
    }
    /*
     * An on-demand rotation right before an automatic one would add two materials within
     * minutes; AWS refuses it inside a fixed 20-minute window of wall-clock time (not scaled by
     * --rotation-day-ms, so a short test day shows it).
     */
    if (rotation_on(k->rec) && rotation_next(k->rec) - kms_call_now_ms(call) < KMS_ROTATION_CONFLICT_MS) {
        FAIL_OUT(COFFER_ERR_CONFLICT,
                 "The request was rejected because an automatic rotation of this key is currently in "
                 "progress or scheduled to begin within the next 20 minutes: %s",
                 k->arn);
    }
    /* Before the commit: the request's event is written then, with these elements. */
    call->output = json_pack("{s:s}", "KeyId", k->arn);
    call->audit_response = kms_camel_copy(call->output);
    rec = json_deep_copy(k->rec);
    if (call->output == NULL || rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    /* The automatic schedule is not moved (kms.md §8): the record's Rotation stays as it is. */
    rc = kms_key_rotate(svc, k, rec, "ON_DEMAND", kms_call_now_ms(call), NULL, NULL);
    rec = NULL; /* taken by kms_key_rotate */
    push = rc == COFFER_OK && kms_mrk_is(k);
    coffer_str_copy(acct, sizeof(acct), k->account);
    coffer_str_copy(id, sizeof(id), k->key_id);
out:
    json_decref(rec);
    kms_write_release(svc);
    if (push) {
        kms_rotation_push_replicas(svc, acct, id);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* ListKeyRotations                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* One entry of Rotations for material m of k (copies only: k->rec is shared with readers). */
static json_t *rotation_item(const struct kms_key *k, const json_t *m)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "KeyId", k->key_id, "KeyMaterialId", rec_str(m, "KeyMaterialId"),
                          "KeyMaterialState", rec_str(m, "State"));
    const char *type = json_string_value(json_object_get(m, "RotationType"));
    if (o != NULL && type != NULL &&
        (json_object_set_new(o, "RotationType", json_string(type)) != 0 ||
         json_object_set_new(
             o, "RotationDate",
             json_real((double)json_integer_value(json_object_get(m, "CreationDate")) / 1000.0)) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

coffer_err kms_op_ListKeyRotations(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "IncludeKeyMaterial", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    char marker[KMS_MATERIAL_HEX_LEN + 1], last[KMS_MATERIAL_HEX_LEN + 1] = "";
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListKeyRotations, call->input, &r));
    if (r.marker != NULL) {
        TRY(kms_marker_decode(r.marker, marker, sizeof(marker)));
    }
    TRY(kms_acquire(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    coffer_err rc = COFFER_OK;
    json_t *items = NULL;
    TRY_OUT(
        kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:ListKeyRotations", .r = &r}));
    if (!is_symmetric(k->rec)) {
        TRY_OUT(rotatable(k));
    }
    /* ROTATIONS_ONLY (the default) leaves out the material the key was created with. */
    bool all = r.include_key_material >= 0 &&
               strcmp(kms_include_key_material[r.include_key_material], "ALL_KEY_MATERIAL") == 0;
    size_t limit = r.has_limit ? (size_t)r.limit : 100, i;
    bool started = r.marker == NULL, truncated = false;
    const json_t *m;
    if ((items = json_array()) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    json_array_foreach(json_object_get(k->rec, "KeyMaterials"), i, m)
    {
        if (!started) {
            started = strcmp(rec_str(m, "KeyMaterialId"), marker) == 0;
            continue;
        }
        if (!all && json_object_get(m, "RotationType") == NULL) {
            continue;
        }
        if (json_array_size(items) == limit) {
            truncated = true;
            break;
        }
        if (json_array_append_new(items, rotation_item(k, m)) != 0) {
            rc = kms_nomem();
            goto out;
        }
        snprintf(last, sizeof(last), "%s", rec_str(m, "KeyMaterialId"));
    }
    if (!started) {
        FAIL_OUT(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
    }
    call->output = json_pack("{s:O,s:b}", "Rotations", items, "Truncated", truncated);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (truncated) {
        TRY_OUT(kms_marker_encode(last, call->output));
    }
out:
    kms_release(svc);
    json_decref(items);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The scheduler's step                                                                       */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_rotation_run_due(struct kms_service *svc, const char *entry, int64_t now_ms,
                                struct kms_rotated_primary *push)
{
    char acct[API_ACCOUNT_ID_LEN + 1], region[KMS_REGION_MAX + 1], id[KMS_KEY_ID_MAX + 1];
    long long when;
    struct kms_key *k = NULL;
    struct index_change c = {.del = "", .put = ""};
    coffer_err rc = COFFER_OK;
    json_t *rec = NULL, *rot = NULL;
    snprintf(c.del, sizeof(c.del), "%s", entry);
    if (sscanf(entry, ROTATION_PREFIX "%16lld/%12[0-9]/%32[a-z0-9-]/%40[a-z0-9-]", &when, acct, region, id) ==
        4) {
        rc = kms_key_get_locked(svc, acct, region, id, &k);
        if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
            return rc;
        }
        rc = COFFER_OK;
    }
    /*
     * Only a key still due on this very date rotates. Anything else drops the entry: rotation
     * turned off or rescheduled (a stale date), a key disabled or pending deletion (EnableKey puts
     * it back, due at once if its date has passed, as AWS rotates a re-enabled key), or a key gone.
     */
    if (k == NULL || !rotation_on(k->rec) || rotation_next(k->rec) != (int64_t)when ||
        k->state != KMS_STATE_ENABLED || strcmp(rec_str(k->rec, "Origin"), "AWS_KMS") != 0 ||
        !is_symmetric(k->rec) || is_replica(k)) {
        store_txn *t = NULL;
        TRY(store_txn_begin(svc->st, &t));
        rc = index_change_txn(t, &c);
        if (rc != COFFER_OK) {
            store_txn_abort(t);
            return rc;
        }
        return store_txn_commit(t);
    }
    /* The next one period after this rotation, whenever the scheduler got to it. */
    int64_t next = now_ms + rotation_period(k->rec) * svc->limits.kms_rotation_day_ms;
    index_key(c.put, sizeof(c.put), k->account, k->region, k->key_id, next);
    c.svc = svc;
    c.k = k;
    c.now_ms = now_ms;
    rec = json_deep_copy(k->rec);
    if (rec == NULL || (rot = rotation_copy(rec)) == NULL ||
        json_object_set_new(rot, "NextRotationDate", json_integer(next)) != 0) {
        json_decref(rec);
        return kms_nomem();
    }
    rc = kms_key_rotate(svc, k, rec, "AUTOMATIC", now_ms, index_change_txn, &c);
    if (rc == COFFER_OK && kms_mrk_is(k)) {
        push->rotated = true;
        coffer_str_copy(push->account, sizeof(push->account), k->account);
        coffer_str_copy(push->key_id, sizeof(push->key_id), k->key_id);
    }
    return rc;
}

void kms_rotation_push_replicas(struct kms_service *svc, const char *acct, const char *key_id)
{
    /* The rotation is committed here whatever a peer does; an unreachable replica keeps decrypting
     * the older ciphertexts and catches up on the primary's next push. */
    if (kms_replica_push(svc, acct, key_id) != COFFER_OK) {
        coffer_log(COFFER_LOG_WARN,
                   "kms: could not bring every replica of %s up to its primary's rotation: %s", key_id,
                   coffer_last_message());
    }
}
