/*
 * Multi-Region keys (kms.md §8 "Multi-Region"): ReplicateKey and UpdatePrimaryRegion, plus the
 * handlers of Coffer's own replication operations that a peer region calls. The exchange with
 * the peer, and why it is safe, is in kms_replica.c; here are AWS's checks and the order of the
 * two sides' writes: the peer is changed first, then this side, so a failure of the peer leaves
 * nothing changed anywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_internal.h"

/* The Region pattern of the API model: ^([a-z]+-){2,3}\d+$ */
static bool region_valid(const char *s)
{
    int groups = 0;
    const char *p = s;
    while (groups < 4) {
        const char *start = p;
        while (*p >= 'a' && *p <= 'z') {
            p++;
        }
        if (p == start || *p != '-') {
            p = start;
            break;
        }
        p++;
        groups++;
    }
    if (groups < 2 || groups > 3 || *p == '\0') {
        return false;
    }
    for (; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

static coffer_err region_invalid(const char *member, const char *value)
{
    return coffer_fail(
        COFFER_ERR_VALIDATION,
        "1 validation error detected: Value '%.64s' at '%s' failed to satisfy constraint: Member "
        "must satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$",
        value, member);
}

static coffer_err not_primary(const struct kms_key *k)
{
    return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "%s is not a multi-region primary key.", k->arn);
}

static coffer_err no_peer(const char *region)
{
    return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                       "Region %s is not a peer region of this server: multi-Region keys can be replicated "
                       "only into configured peer regions.",
                       region);
}

/*
 * The opening both operations share: resolves the primary key (key id or ARN), authorizes
 * `action`, checks it is a multi-Region primary in a state that allows the change, and takes a
 * snapshot of it, its replica regions, account and key id. No lock is held on return.
 */
static coffer_err primary_snapshot(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                                   unsigned ref_flags, const char *action, struct kms_mrk_snapshot **snap,
                                   json_t **replicas, char acct[API_ACCOUNT_ID_LEN + 1],
                                   char key_id[KMS_KEY_ID_MAX + 1])
{
    struct kms_key *k;
    coffer_err rc = COFFER_OK;
    *snap = NULL;
    *replicas = NULL;
    TRY(kms_acquire(svc, call, r->key_id, ref_flags, &k));
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = action, .r = r}));
    if (!kms_mrk_is_primary(k)) {
        rc = not_primary(k);
        goto out;
    }
    TRY_OUT(kms_check_state(k, KMS_RULE_ENABLE_DISABLE));
    const json_t *list =
        json_object_get(json_object_get(k->rec, "MultiRegionConfiguration"), "ReplicaRegions");
    if ((*replicas = json_deep_copy(list != NULL ? list : json_array())) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_mrk_snapshot_take(k, snap));
    snprintf(acct, API_ACCOUNT_ID_LEN + 1, "%s", k->account);
    snprintf(key_id, KMS_KEY_ID_MAX + 1, "%s", k->key_id);
out:
    kms_release(svc);
    if (rc != COFFER_OK) {
        json_decref(*replicas);
        *replicas = NULL;
    }
    return rc;
}

/* With nothing held: sets the multi-Region configuration of this region's copy of the key. */
static coffer_err local_config_set(struct kms_service *svc, const char *acct, const char *key_id,
                                   const char *primary, const json_t *replicas)
{
    struct kms_key *k = NULL;
    json_t *rec = NULL;
    coffer_err rc = COFFER_OK;
    kms_write_begin(svc);
    TRY_OUT(kms_key_get_locked(svc, acct, svc->region, key_id, &k));
    json_t *mrc = kms_mrk_config_for(svc->region, primary, replicas);
    if ((rec = json_deep_copy(k->rec)) == NULL || mrc == NULL ||
        json_object_set_new(rec, "MultiRegionConfiguration", mrc) != 0) {
        rc = kms_nomem();
        goto out;
    }
    rc = kms_key_update(svc, k, rec, NULL, NULL);
    rec = NULL;
out:
    kms_write_release(svc);
    json_decref(rec);
    return rc;
}

/* After a change of the configuration here: tell the other related regions (best effort: each
 * is logged when it fails, and the caller's change stands). */
static void push_others(struct kms_service *svc, const char *acct, const char *key_id, const char *skip)
{
    struct kms_key *k = NULL;
    struct kms_mrk_snapshot *s = NULL;
    kms_write_begin(svc);
    if (kms_key_get_locked(svc, acct, svc->region, key_id, &k) == COFFER_OK &&
        kms_mrk_snapshot_take(k, &s) != COFFER_OK) {
        s = NULL;
    }
    kms_write_release(svc);
    if (s != NULL && kms_mrk_push_all(svc, s, skip) != COFFER_OK) {
        /* each failing region is logged there; the next change or rotation sends it again */
    }
    kms_mrk_snapshot_free(s);
}

/* Would `text`, as the replica's policy, still let the caller change it? */
static coffer_err lockout_check(const struct kms_service *svc, const struct api_call *call, const char *arn,
                                const char *text)
{
    policy *p = NULL;
    json_t *rec = json_pack("{s:s}", "Policy", text);
    coffer_err rc = rec != NULL ? kms_key_policy_compile(svc, rec, &p) : kms_nomem();
    json_decref(rec);
    TRY(rc);
    bool ok = kms_policy_lockout_ok(svc, call, arn, p);
    policy_free(p);
    if (!ok) {
        return coffer_fail(COFFER_ERR_MALFORMED_POLICY,
                           "The new key policy will not allow you to update the key policy in the future.");
    }
    return COFFER_OK;
}

/* As AWS answers ReplicateKey: the replica is reported Creating; DescribeKey shows it installed. */
static coffer_err report_creating(json_t *meta)
{
    const char *state = json_string_value(json_object_get(meta, "KeyState"));
    if (state != NULL && strcmp(state, "Enabled") == 0 &&
        (json_object_set_new(meta, "KeyState", json_string("Creating")) != 0 ||
         json_object_set_new(meta, "Enabled", json_false()) != 0)) {
        return kms_nomem();
    }
    return COFFER_OK;
}

/*
 * ReplicateKey sent to this region's endpoint but signed for the primary's region, as the
 * Terraform provider and the SDKs' region-switching clients send it: this region creates its
 * own replica by asking the primary (CofferPullReplica, with this region's replication
 * credential), so no call goes back and forth between the two while a worker waits. Two sides
 * consent: here the caller's identity policies must allow kms:ReplicateKey on the primary key
 * and kms:CreateKey (AWS's two permissions); there the primary's key policy must allow
 * kms:ReplicateKey to this region's replication principal.
 */
static coffer_err replicate_here(struct kms_service *svc, struct api_call *call, const struct kms_req *r)
{
    char region[KMS_REGION_MAX + 1], acct[API_ACCOUNT_ID_LEN + 1], id[KMS_KEY_ID_MAX + 1];
    char primary_arn[KMS_ARN_MAX], arn[KMS_ARN_MAX];
    json_t *extra = NULL, *tags = NULL;
    coffer_err rc = COFFER_OK;
    if (strcmp(r->replica_region, call->region) != 0) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "ReplicateKey signed for %s reached region %s, which creates replicas in %s only.",
                           call->scope_region, call->region, call->region);
    }
    const struct kms_peer *peer = kms_peer_find(svc, call->scope_region);
    if (peer == NULL) {
        return no_peer(call->scope_region);
    }
    /* The primary's key id or key ARN; an alias names nothing the primary can be asked for. */
    coffer_str_copy(acct, sizeof(acct), call->caller->account_id);
    if (strncmp(r->key_id, "arn:", 4) == 0) {
        if (sscanf(r->key_id, "arn:aws:kms:%32[^:]:%12[0-9]:key/%40s", region, acct, id) != 3 ||
            strcmp(region, call->scope_region) != 0) {
            return coffer_fail(COFFER_ERR_NOT_FOUND, "Key '%s' does not exist", r->key_id);
        }
    } else {
        coffer_str_copy(id, sizeof(id), r->key_id);
    }
    if (strncmp(id, "mrk-", 4) != 0 || !kms_key_id_valid(id)) {
        kms_key_arn(primary_arn, sizeof(primary_arn), call->scope_region, acct, id);
        return coffer_fail(COFFER_ERR_NOT_FOUND, "Key '%s' does not exist", primary_arn);
    }
    if (strcmp(acct, call->caller->account_id) != 0) {
        return coffer_fail(COFFER_ERR_ACCESS_DENIED,
                           "User: %s is not authorized to perform: kms:ReplicateKey",
                           call->caller->principal_arn);
    }
    kms_key_arn(primary_arn, sizeof(primary_arn), call->scope_region, acct, id);
    kms_key_arn(arn, sizeof(arn), call->region, acct, id);
    TRY(kms_authorize_plain(svc, call, "kms:ReplicateKey", primary_arn, r));
    TRY(kms_authorize_plain(svc, call, "kms:CreateKey", "*", r));
    if (r->policy != NULL && !r->bypass_lockout) {
        TRY(lockout_check(svc, call, arn, r->policy));
    }
    TRY_OUT(kms_tags_merge(NULL, r->tags, svc->limits.kms_tags_per_key, &tags));
    if ((extra = json_pack("{s:s,s:O}", "Description", r->description != NULL ? r->description : "", "Tags",
                           tags)) == NULL ||
        (r->policy != NULL && json_object_set_new(extra, "Policy", json_string(r->policy)) != 0)) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_replica_pull(svc, call, peer, id, extra));
    rc = report_creating(json_object_get(call->output, "ReplicaKeyMetadata"));
out:
    json_decref(extra);
    json_decref(tags);
    return rc;
}

coffer_err kms_op_ReplicateKey(void *state, struct api_call *call)
{
    static const char *const audit[] = {
        "KeyId", "ReplicaRegion", "Description", "Tags", "BypassPolicyLockoutSafetyCheck", "Policy", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_mrk_snapshot *snap = NULL;
    json_t *replicas = NULL, *extra = NULL, *answer = NULL, *tags = NULL;
    coffer_err rc = COFFER_OK;
    char acct[API_ACCOUNT_ID_LEN + 1], key_id[KMS_KEY_ID_MAX + 1], arn[KMS_ARN_MAX];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ReplicateKey, call->input, &r));
    if (!region_valid(r.replica_region)) {
        rc = region_invalid("replicaRegion", r.replica_region);
        goto out;
    }
    if (call->scope_region != NULL) {
        rc = replicate_here(svc, call, &r);
        goto out;
    }
    TRY_OUT(primary_snapshot(svc, call, &r, 0, "kms:ReplicateKey", &snap, &replicas, acct, key_id));
    kms_key_arn(arn, sizeof(arn), r.replica_region, acct, key_id);
    if (strcmp(r.replica_region, call->region) == 0) {
        FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION,
                 "A replica must be in a different Region than its primary key (%s).", call->region);
    }
    bool exists = false;
    size_t i;
    const json_t *v;
    json_array_foreach(replicas, i, v)
    {
        exists = exists || strcmp(json_string_value(v), r.replica_region) == 0;
    }
    const struct kms_peer *peer = kms_peer_find(svc, r.replica_region);
    /* A listed replica may have been deleted there since: the peer, when there is one, is the
     * one to say whether it still exists (AlreadyExistsException comes back from it). */
    if (exists && peer == NULL) {
        FAIL_OUT(COFFER_ERR_ALREADY_EXISTS, "Replica key %s already exists.", arn);
    }
    if (peer == NULL) {
        rc = no_peer(r.replica_region);
        goto out;
    }
    /*
     * The lockout safety check of CreateKey (kms.md §5) is made here, where the caller is known:
     * the replica region sees only the replication principal. The policy's syntax and
     * principals are still the replica region's to judge.
     */
    if (r.policy != NULL && !r.bypass_lockout) {
        TRY_OUT(lockout_check(svc, call, arn, r.policy));
    }
    /* Tags are checked here as CreateKey checks them. */
    TRY_OUT(kms_tags_merge(NULL, r.tags, svc->limits.kms_tags_per_key, &tags));
    if ((extra = json_pack("{s:s,s:O}", "Description", r.description != NULL ? r.description : "", "Tags",
                           tags)) == NULL ||
        (r.policy != NULL && json_object_set_new(extra, "Policy", json_string(r.policy)) != 0) ||
        (!exists && json_array_append_new(replicas, json_string(r.replica_region)) != 0)) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_mrk_send(svc, peer, snap, true, call->region, replicas, extra, &answer));
    /* The replica exists: the primary lists it from now on. */
    TRY_OUT(local_config_set(svc, acct, key_id, call->region, replicas));
    push_others(svc, acct, key_id, r.replica_region);
    if (!json_is_object(json_object_get(answer, "ReplicaKeyMetadata"))) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s answered without the replica's metadata.",
                 r.replica_region);
    }
    TRY_OUT(report_creating(json_object_get(answer, "ReplicaKeyMetadata")));
    call->output =
        json_pack("{s:O,s:O*,s:O*}", "ReplicaKeyMetadata", json_object_get(answer, "ReplicaKeyMetadata"),
                  "ReplicaPolicy", json_object_get(answer, "ReplicaPolicy"), "ReplicaTags",
                  json_object_get(answer, "ReplicaTags"));
    if (call->output == NULL) {
        rc = kms_nomem();
    }
out:
    kms_mrk_snapshot_free(snap);
    json_decref(replicas);
    json_decref(extra);
    json_decref(answer);
    json_decref(tags);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_UpdatePrimaryRegion(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "PrimaryRegion", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_mrk_snapshot *snap = NULL;
    json_t *replicas = NULL, *next = NULL;
    coffer_err rc = COFFER_OK;
    char acct[API_ACCOUNT_ID_LEN + 1], key_id[KMS_KEY_ID_MAX + 1], arn[KMS_ARN_MAX];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_UpdatePrimaryRegion, call->input, &r));
    if (!region_valid(r.primary_region)) {
        rc = region_invalid("primaryRegion", r.primary_region);
        goto out;
    }
    TRY_OUT(primary_snapshot(svc, call, &r, 0, "kms:UpdatePrimaryRegion", &snap, &replicas, acct, key_id));
    if (strcmp(r.primary_region, call->region) == 0) {
        goto out; /* already the primary: nothing to change */
    }
    kms_key_arn(arn, sizeof(arn), r.primary_region, acct, key_id);
    if ((next = json_array()) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    bool found = false;
    size_t i;
    const json_t *v;
    json_array_foreach(replicas, i, v)
    {
        if (strcmp(json_string_value(v), r.primary_region) == 0) {
            found = true;
        } else if (json_array_append(next, (json_t *)v) != 0) {
            rc = kms_nomem();
            goto out;
        }
    }
    if (!found) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND, "Key '%s' does not exist", arn);
    }
    const struct kms_peer *peer = kms_peer_find(svc, r.primary_region);
    if (peer == NULL) {
        rc = no_peer(r.primary_region);
        goto out;
    }
    /* This region becomes a replica. */
    if (json_array_append_new(next, json_string(call->region)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    /* The new primary first: if it cannot be told, nothing changes and the caller may retry. */
    TRY_OUT(kms_mrk_send(svc, peer, snap, false, r.primary_region, next, NULL, NULL));
    TRY_OUT(local_config_set(svc, acct, key_id, r.primary_region, next));
    /* The other replicas still know this region as their primary: only it can tell them. */
    push_others(svc, acct, key_id, r.primary_region);
out:
    kms_mrk_snapshot_free(snap);
    json_decref(replicas);
    json_decref(next);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_CofferGetReplicationKey(void *state, struct api_call *call)
{
    return kms_replica_serve_key(state, call);
}

/*
 * A replica region creating its replica of a primary here (see replicate_here): only that
 * region's replication principal, and only as far as the key policy lets that principal
 * kms:ReplicateKey. The replica region names the key by its ARN, so the key's account, not the
 * principal's, is the one read; the answer is bound to it. The answer is what a push would have sent: the
 * record and the materials sealed to the public key the caller sent, which opens only in the caller's
 * barrier.
 */
coffer_err kms_op_CofferPullReplica(void *state, struct api_call *call)
{
    static const char *const audit[] = {"SourceRegion", "KeyId", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_mrk_snapshot *snap = NULL;
    json_t *replicas = NULL;
    coffer_buf box = COFFER_BUF_INIT;
    char *rec_text = NULL;
    coffer_err rc = COFFER_OK;
    char acct[API_ACCOUNT_ID_LEN + 1], key_id[KMS_KEY_ID_MAX + 1];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_CofferPullReplica, call->input, &r));
    TRY_OUT(kms_peer_caller_check(svc, call, r.source_region));
    if (strcmp(r.source_region, call->region) == 0) {
        FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION,
                 "A replica must be in a different Region than its primary key (%s).", call->region);
    }
    /* The key ARN names the key's account, which need not be the replication principal's: the
     * key policy (and that principal's own policies) must then allow it, as across accounts. */
    TRY_OUT(
        primary_snapshot(svc, call, &r, KMS_REF_CROSS, "kms:ReplicateKey", &snap, &replicas, acct, key_id));
    bool listed = false;
    size_t i;
    const json_t *v;
    json_array_foreach(replicas, i, v)
    {
        listed = listed || strcmp(json_string_value(v), r.source_region) == 0;
    }
    if (!listed && json_array_append_new(replicas, json_string(r.source_region)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_mrk_package(svc, r.source_region, coffer_buf_cursor(&r.ciphertext), snap, call->region,
                            replicas, NULL, &rec_text, &box));
    /* Listed before the replica installs it: a replica that then fails to install is the
     * stale listing ReplicateKey already tolerates (the replica region says what exists). */
    TRY_OUT(local_config_set(svc, acct, key_id, call->region, replicas));
    push_others(svc, acct, key_id, r.source_region);
    if ((call->output = json_pack("{s:s}", "KeyRecord", rec_text)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "WrappedMaterial", coffer_buf_cursor(&box), false));
out:
    kms_mrk_snapshot_free(snap);
    json_decref(replicas);
    coffer_buf_free(&box);
    free(rec_text);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_CofferReplicaDeleted(void *state, struct api_call *call)
{
    return kms_replica_serve_gone(state, call);
}

coffer_err kms_op_CofferSyncReplica(void *state, struct api_call *call)
{
    return kms_replica_serve_sync(state, call);
}
