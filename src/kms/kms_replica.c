/*
 * Multi-Region keys between Coffer deployments: the key record's multi-Region fields, the
 * client side that talks to a peer region, and Coffer's own replication operations a peer
 * calls (CofferGetReplicationKey, CofferSyncReplica). ReplicateKey and UpdatePrimaryRegion
 * (kms_ops_region.c) are built on these.
 *
 *   ReplicateKey (region A) --CofferGetReplicationKey--> region B: B's public key
 *                           --CofferSyncReplica {record, material sealed to B}--> B
 *
 * How material travels: each server has a replication key pair (P-256, private half sealed
 * in its store under kms/replication/key, made on first use). The sender asks the peer for its
 * public key over TLS (the peer's CA pinned in config, the call signed with the replication
 * credential) and seals the key's materials to it with crypto_box, bound to the account, key id
 * and target region. The materials are therefore never in the clear outside the two barriers,
 * not even inside the TLS channel, and a box made for one key or region opens for no other.
 *
 * Who may call: the replication operations are not AWS operations and no key or IAM policy
 * grants them. A call names its source region, which must be a configured peer, and must come
 * from exactly that peer's configured `principal`; anyone else, the account's root included,
 * gets AccessDeniedException. A replica accepts updates only from the region it records as its
 * primary.
 *
 * Which account: a key's replicas are in its own account, whichever account the replication
 * principal belongs to. The sender names the owner (AccountId) and binds the box to it; the
 * receiver acts in that account, which must exist there, and opens the box only as that
 * account's, so a box made for one account never installs into another.
 *
 * Other services replicate their own records the same way (Secrets Manager): struct kms_api
 * (kms.h) lends them the peer client, the principal check and this server's replication key
 * pair, so there is one path for everything that crosses regions.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "awsclient/awsclient.h"
#include "common/codec.h"
#include "common/log.h"
#include "crypto/crypto.h"
#include "crypto/crypto_box.h"
#include "iam/authz.h"
#include "kms/kms_internal.h"

#define REPLICATION_KEY_STORE_KEY "kms/replication/key"
#define BOX_AAD_MAX 160

/* ------------------------------------------------------------------------------------------ */
/* Record fields                                                                              */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_mrk_id_new(char id[KMS_KEY_ID_MAX + 1])
{
    uint8_t raw[16];
    TRY(crypto_random(raw, sizeof(raw)));
    memcpy(id, "mrk-", 4);
    coffer_hex_encode(raw, sizeof(raw), id + 4);
    return COFFER_OK;
}

coffer_err kms_mrk_record_init(json_t *rec, const char *region)
{
    json_t *mrc = json_pack("{s:s,s:s,s:[]}", "MultiRegionKeyType", "PRIMARY", "PrimaryRegion", region,
                            "ReplicaRegions");
    if (mrc == NULL || json_object_set_new(rec, "MultiRegionConfiguration", mrc) != 0 ||
        json_object_set_new(rec, "MultiRegion", json_true()) != 0) {
        return kms_nomem();
    }
    return COFFER_OK;
}

bool kms_mrk_is(const struct kms_key *k)
{
    return json_is_true(json_object_get(k->rec, "MultiRegion")) &&
           json_is_object(json_object_get(k->rec, "MultiRegionConfiguration"));
}

bool kms_mrk_is_primary(const struct kms_key *k)
{
    const json_t *mrc = json_object_get(k->rec, "MultiRegionConfiguration");
    const char *t = json_string_value(json_object_get(mrc, "MultiRegionKeyType"));
    return kms_mrk_is(k) && t != NULL && strcmp(t, "PRIMARY") == 0;
}

coffer_err kms_mrk_local_arn(const char *region, char *arn, size_t n)
{
    /* arn:aws:kms:<region>:<12 digits>:key/mrk-... */
    static const char head[] = "arn:aws:kms:";
    if (strncmp(arn, head, sizeof(head) - 1) != 0) {
        return COFFER_OK;
    }
    const char *reg = arn + sizeof(head) - 1;
    const char *colon = strchr(reg, ':');
    if (colon == NULL || strlen(colon + 1) < API_ACCOUNT_ID_LEN + 9 ||
        strncmp(colon + 1 + API_ACCOUNT_ID_LEN, ":key/mrk-", 9) != 0) {
        return COFFER_OK;
    }
    char acct[API_ACCOUNT_ID_LEN + 1], id[KMS_KEY_ID_MAX + 1];
    memcpy(acct, colon + 1, API_ACCOUNT_ID_LEN);
    acct[API_ACCOUNT_ID_LEN] = '\0';
    const char *key = colon + 1 + API_ACCOUNT_ID_LEN + 5;
    if (strlen(key) > KMS_KEY_ID_MAX || !kms_key_id_valid(key)) {
        return COFFER_OK; /* not a key id: the caller's checks refuse it */
    }
    snprintf(id, sizeof(id), "%s", key);
    char out[KMS_ARN_MAX];
    kms_key_arn(out, sizeof(out), region, acct, id);
    if (strlen(out) >= n) {
        return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    memcpy(arn, out, strlen(out) + 1);
    return COFFER_OK;
}

/* The regions of rec's multi-Region configuration. */
static const char *mrc_primary(const json_t *rec)
{
    return json_string_value(
        json_object_get(json_object_get(rec, "MultiRegionConfiguration"), "PrimaryRegion"));
}

static const json_t *mrc_replicas(const json_t *rec)
{
    return json_object_get(json_object_get(rec, "MultiRegionConfiguration"), "ReplicaRegions");
}

static bool regions_has(const json_t *list, const char *region)
{
    size_t i;
    const json_t *r;
    json_array_foreach(list, i, r)
    {
        if (json_string_value(r) != NULL && strcmp(json_string_value(r), region) == 0) {
            return true;
        }
    }
    return false;
}

bool kms_mrk_has_region(const struct kms_key *k, const char *region)
{
    const char *p = mrc_primary(k->rec);
    return (p != NULL && strcmp(p, region) == 0) || regions_has(mrc_replicas(k->rec), region);
}

/* A MultiRegionConfiguration as `region` records it. */
json_t *kms_mrk_config_for(const char *region, const char *primary, const json_t *replicas)
{
    return json_pack("{s:s,s:s,s:O}", "MultiRegionKeyType",
                     strcmp(region, primary) == 0 ? "PRIMARY" : "REPLICA", "PrimaryRegion", primary,
                     "ReplicaRegions", replicas);
}

/* ------------------------------------------------------------------------------------------ */
/* Peers                                                                                      */
/* ------------------------------------------------------------------------------------------ */

const struct kms_peer *kms_peer_find(const struct kms_service *svc, const char *region)
{
    for (size_t i = 0; i < svc->n_peers; i++) {
        if (strcmp(svc->peers[i].region, region) == 0) {
            return &svc->peers[i];
        }
    }
    return NULL;
}

/* An error answer of a peer, as this server reports it to its own caller. */
static coffer_err peer_error(const struct kms_peer *p, const struct awsclient_answer *ans)
{
    static const coffer_err passed[] = {
        COFFER_ERR_ALREADY_EXISTS,        COFFER_ERR_MALFORMED_POLICY, COFFER_ERR_TAG,
        COFFER_ERR_LIMIT_EXCEEDED,        COFFER_ERR_VALIDATION,       COFFER_ERR_NOT_FOUND,
        COFFER_ERR_UNSUPPORTED_OPERATION,
    };
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
        if (strcmp(ans->error_type, coffer_err_aws_type(passed[i])) == 0) {
            return coffer_fail(passed[i], "%s", ans->error_message);
        }
    }
    if (strcmp(ans->error_type, "KMSInvalidStateException") == 0) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s", ans->error_message);
    }
    /* Anything else (the replication credential refused, the peer failing) is this side's
     * problem to report, not the caller's mistake. */
    return coffer_fail(COFFER_ERR_UNAVAILABLE, "Replication to %s failed: %s: %s", p->region, ans->error_type,
                       ans->error_message);
}

/*
 * Calls `target` ("TrentService.CofferSyncReplica", "secretsmanager.CofferSyncSecret") of peer
 * p, signed for `signing_name`, with `body` (borrowed) and gives the answer object in *out. The
 * credential is read now, so an operator can replace it without a restart.
 */
static coffer_err peer_call_target(const struct kms_peer *p, const char *signing_name, const char *target,
                                   const json_t *body, json_t **out)
{
    coffer_err rc = COFFER_OK;
    struct awsclient_credentials creds = {0};
    awsclient *cl = NULL;
    struct awsclient_answer ans;
    char *text = NULL;
    awsclient_answer_init(&ans);
    *out = NULL;
    if (p->credentials_file[0] == '\0') {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s has no replication credential configured.",
                 p->region);
    }
    struct awsclient_source src = {
        .profile = p->profile[0] != '\0' ? p->profile : "default",
        .credentials_file = p->credentials_file,
        .config_file = "",
        .skip_env = true,
    };
    if (awsclient_credentials_load(&src, &creds) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s: the replication credential cannot be read.",
                 p->region);
    }
    struct awsclient_config cfg = {
        .service = signing_name,
        .region = p->region,
        .endpoint = p->endpoint,
        .ca_bundle = p->ca_bundle[0] != '\0' ? p->ca_bundle : NULL,
        .skip_env = true,
        .user_agent = "cofferd-replication",
        .credentials = &creds,
    };
    if (awsclient_new(&cfg, &cl) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s: cannot build a client for %s.", p->region,
                 p->endpoint);
    }
    if ((text = json_dumps(body, JSON_COMPACT)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (awsclient_json_call(cl, target, coffer_cursor_from_str(text), &ans) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s cannot be reached.", p->region);
    }
    if (ans.status != 200) {
        rc = peer_error(p, &ans);
        goto out;
    }
    *out = json_loadb((const char *)ans.body.data, ans.body.len, 0, NULL);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s answered %s with no JSON object.", p->region,
                 target);
    }
out:
    free(text);
    awsclient_answer_clean(&ans);
    awsclient_free(cl);
    awsclient_credentials_clean(&creds);
    return rc;
}

/* Calls KMS operation `op` (CofferSyncReplica, ...) of peer p. */
static coffer_err peer_call(const struct kms_service *svc, const struct kms_peer *p, const char *op,
                            const json_t *body, json_t **out)
{
    char target[64];
    (void)svc;
    snprintf(target, sizeof(target), "TrentService.%s", op);
    return peer_call_target(p, "kms", target, body, out);
}

/* "coffer replica <account> <key id> <target region>": what a box of materials is bound to. */
static void box_aad(char out[BOX_AAD_MAX], const char *acct, const char *key_id, const char *region)
{
    snprintf(out, BOX_AAD_MAX, "coffer replica %s %s %s", acct, key_id, region);
}

/* ------------------------------------------------------------------------------------------ */
/* Materials on the wire                                                                      */
/* ------------------------------------------------------------------------------------------ */

/*
 * The plaintext of a box: u32be count, then per material: id (32) | u32be length | bytes.
 * Appends every material of k (lock held) to `out` (a secret buffer).
 */
static coffer_err materials_encode(const struct kms_key *k, coffer_buf *out)
{
    TRY(coffer_buf_append_u32be(out, (uint32_t)k->n_mats));
    for (size_t i = 0; i < k->n_mats; i++) {
        coffer_cursor b = kms_material_bytes(&k->mats[i]);
        TRY(coffer_buf_append(out, k->mats[i].id, KMS_MATERIAL_ID_LEN));
        TRY(coffer_buf_append_u32be(out, (uint32_t)b.len));
        TRY(coffer_buf_append_cur(out, b));
    }
    return COFFER_OK;
}

static void materials_free(struct kms_material *mats, size_t n)
{
    for (size_t i = 0; mats != NULL && i < n; i++) {
        kms_material_clear(&mats[i]);
    }
    free(mats);
}

/* Parses materials_encode's bytes for a key of `spec`; *out is a new array of *n. */
static coffer_err materials_decode(enum kms_spec spec, coffer_cursor in, struct kms_material **out, size_t *n)
{
    coffer_err rc = COFFER_OK;
    uint32_t count = 0;
    struct kms_material *mats = NULL;
    size_t have = 0;
    coffer_cursor c = in;
    if (cur_read_u32be(&c, &count) != COFFER_OK || count == 0 || count > c.len / (KMS_MATERIAL_ID_LEN + 4)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "malformed replica material");
    }
    if ((mats = calloc(count, sizeof(*mats))) == NULL) {
        return kms_nomem();
    }
    for (; have < count; have++) {
        coffer_cursor id, bytes;
        uint32_t len = 0;
        if (cur_read_bytes(&c, KMS_MATERIAL_ID_LEN, &id) != COFFER_OK ||
            cur_read_u32be(&c, &len) != COFFER_OK || cur_read_bytes(&c, len, &bytes) != COFFER_OK) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "malformed replica material");
        }
        memcpy(mats[have].id, id.ptr, KMS_MATERIAL_ID_LEN);
        if (kms_material_set(spec, bytes, &mats[have]) != COFFER_OK) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "replica material does not match the key spec");
        }
    }
    if (c.len != 0) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "malformed replica material");
    }
    *out = mats;
    *n = count;
    mats = NULL;
out:
    materials_free(mats, have);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Sending a key to a peer                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* What the sender takes out of a key under the lock, so no lock is held across the network. */
struct kms_mrk_snapshot {
    char account[API_ACCOUNT_ID_LEN + 1];
    char key_id[KMS_KEY_ID_MAX + 1];
    json_t *rec;        /* deep copy of the record */
    coffer_buf payload; /* secret: materials_encode */
};

coffer_err kms_mrk_snapshot_take(const struct kms_key *k, struct kms_mrk_snapshot **out)
{
    struct kms_mrk_snapshot *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (s == NULL) {
        return kms_nomem();
    }
    coffer_buf_init(&s->payload, true);
    snprintf(s->account, sizeof(s->account), "%s", k->account);
    snprintf(s->key_id, sizeof(s->key_id), "%s", k->key_id);
    s->rec = json_deep_copy(k->rec);
    coffer_err rc = s->rec != NULL ? materials_encode(k, &s->payload) : kms_nomem();
    if (rc != COFFER_OK) {
        kms_mrk_snapshot_free(s);
        return rc;
    }
    *out = s;
    return COFFER_OK;
}

void kms_mrk_snapshot_free(struct kms_mrk_snapshot *s)
{
    if (s == NULL) {
        return;
    }
    json_decref(s->rec);
    coffer_buf_free(&s->payload);
    free(s);
}

/*
 * What a replica of snapshot s in `target_region` is installed from: *rec_text, the record
 * with the multi-Region configuration `primary`/`replicas` and `extra` (Description, Tags,
 * Policy; borrowed, may be NULL), and *box, the materials sealed to that region's `spki`.
 */
coffer_err kms_mrk_package(const struct kms_service *svc, const char *target_region, coffer_cursor spki,
                           const struct kms_mrk_snapshot *s, const char *primary, const json_t *replicas,
                           const json_t *extra, char **rec_text, coffer_buf *box)
{
    char aad[BOX_AAD_MAX];
    json_t *rec = NULL;
    (void)svc;
    *rec_text = NULL;
    box_aad(aad, s->account, s->key_id, target_region);
    TRY(crypto_ecies_seal(spki, coffer_cursor_from_str(aad), coffer_buf_cursor(&s->payload), box));
    /* Only what the replica shares with its primary (kms.md §8), plus the replica's own
     * description, tags and policy when it is created. */
    rec = json_pack("{s:s,s:s,s:O,s:O,s:O,s:O*,s:O,s:O,s:o}", "KeyId", s->key_id, "AWSAccountId", s->account,
                    "KeySpec", json_object_get(s->rec, "KeySpec"), "KeyUsage",
                    json_object_get(s->rec, "KeyUsage"), "Origin", json_object_get(s->rec, "Origin"),
                    "Rotation", json_object_get(s->rec, "Rotation"), "KeyMaterials",
                    json_object_get(s->rec, "KeyMaterials"), "CurrentKeyMaterialId",
                    json_object_get(s->rec, "CurrentKeyMaterialId"), "MultiRegionConfiguration",
                    kms_mrk_config_for(target_region, primary, replicas));
    coffer_err rc = COFFER_OK;
    if (rec == NULL || (extra != NULL && json_object_update(rec, (json_t *)extra) != 0) ||
        (*rec_text = json_dumps(rec, JSON_COMPACT)) == NULL) {
        rc = kms_nomem();
    }
    json_decref(rec);
    return rc;
}

/*
 * Sends snapshot s to peer p as its replica (create) or as an update of its copy, with the
 * multi-Region configuration `primary`/`replicas` and, for a new replica, `extra`
 * (Description, Tags, Policy; borrowed, may be NULL). *answer (may be NULL) gets the peer's
 * answer object.
 */
coffer_err kms_mrk_send(const struct kms_service *svc, const struct kms_peer *p,
                        const struct kms_mrk_snapshot *s, bool create, const char *primary,
                        const json_t *replicas, const json_t *extra, json_t **answer)
{
    coffer_err rc = COFFER_OK;
    json_t *body = NULL, *keyans = NULL, *ans = NULL;
    coffer_buf spki = COFFER_BUF_INIT, box = COFFER_BUF_INIT;
    char *rec_text = NULL;
    if (answer != NULL) {
        *answer = NULL;
    }
    /* The peer's public key, fresh for each send: a peer may have rebuilt its store. */
    if ((body = json_pack("{s:s}", "SourceRegion", svc->region)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(peer_call(svc, p, "CofferGetReplicationKey", body, &keyans));
    const char *pk = json_string_value(json_object_get(keyans, "PublicKey"));
    if (pk == NULL || coffer_b64_decode(coffer_cursor_from_str(pk), &spki) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s answered without a replication key.", p->region);
    }
    TRY_OUT(kms_mrk_package(svc, p->region, coffer_buf_cursor(&spki), s, primary, replicas, extra, &rec_text,
                            &box));
    json_decref(body);
    body = json_pack("{s:s,s:s,s:s,s:b}", "SourceRegion", svc->region, "AccountId", s->account, "KeyRecord",
                     rec_text, "Create", create);
    if (body == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(body, "WrappedMaterial", coffer_buf_cursor(&box), false));
    TRY_OUT(peer_call(svc, p, "CofferSyncReplica", body, &ans));
    if (answer != NULL) {
        *answer = ans;
        ans = NULL;
    }
out:
    free(rec_text);
    json_decref(body);
    json_decref(keyans);
    json_decref(ans);
    coffer_buf_free(&spki);
    coffer_buf_free(&box);
    return rc;
}

coffer_err kms_mrk_push_all(struct kms_service *svc, const struct kms_mrk_snapshot *s, const char *skip)
{
    coffer_err first = COFFER_OK;
    const char *primary = mrc_primary(s->rec);
    const json_t *replicas = mrc_replicas(s->rec);
    json_t *targets = json_array();
    if (primary == NULL || targets == NULL || json_array_extend(targets, (json_t *)replicas) != 0 ||
        json_array_append_new(targets, json_string(primary)) != 0) {
        json_decref(targets);
        return kms_nomem();
    }
    size_t i;
    const json_t *r;
    json_array_foreach(targets, i, r)
    {
        const char *region = json_string_value(r);
        if (region == NULL || strcmp(region, svc->region) == 0 ||
            (skip != NULL && strcmp(region, skip) == 0)) {
            continue;
        }
        const struct kms_peer *p = kms_peer_find(svc, region);
        coffer_err rc = p != NULL
                            ? kms_mrk_send(svc, p, s, false, primary, replicas, NULL, NULL)
                            : coffer_fail(COFFER_ERR_UNAVAILABLE, "Region %s is not a peer region.", region);
        if (rc != COFFER_OK) {
            log_warn("kms: multi-Region key %s not updated in %s: %s", s->key_id, region,
                     coffer_last_message());
            if (first == COFFER_OK) {
                first = rc;
            }
        }
    }
    json_decref(targets);
    return first;
}

coffer_err kms_replica_push(struct kms_service *svc, const char *acct, const char *key_id)
{
    struct kms_key *k = NULL;
    struct kms_mrk_snapshot *s = NULL;
    coffer_err rc = COFFER_OK;
    kms_write_begin(svc);
    rc = kms_key_get_locked(svc, acct, svc->region, key_id, &k);
    if (rc == COFFER_OK && kms_mrk_is_primary(k)) {
        rc = kms_mrk_snapshot_take(k, &s);
    }
    kms_write_release(svc);
    if (rc != COFFER_OK || s == NULL) {
        return rc;
    }
    rc = kms_mrk_push_all(svc, s, NULL);
    kms_mrk_snapshot_free(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The replication operations (served to peers)                                               */
/* ------------------------------------------------------------------------------------------ */

/* Only the configured principal of the peer the call claims to come from; `service` names the
 * action in the refusal ("kms", "secretsmanager"). */
static coffer_err peer_caller_check_as(const struct kms_service *svc, const struct api_call *call,
                                       const char *source_region, const char *service)
{
    const struct kms_peer *p = source_region != NULL ? kms_peer_find(svc, source_region) : NULL;
    if (p == NULL || p->principal[0] == '\0' || strcmp(p->principal, call->caller->principal_arn) != 0) {
        return coffer_fail(COFFER_ERR_ACCESS_DENIED,
                           "User: %s is not authorized to perform: %s:%s because it is not the replication "
                           "principal of a peer region",
                           call->caller->principal_arn, service, call->operation);
    }
    return COFFER_OK;
}

coffer_err kms_peer_caller_check(const struct kms_service *svc, const struct api_call *call,
                                 const char *source_region)
{
    return peer_caller_check_as(svc, call, source_region, "kms");
}

/* The account a peer's call (its principal checked) acts in: the one it names, which must exist
 * here; a peer naming none acts in its principal's own account, as peers did before naming it. */
static coffer_err peer_account(const struct kms_service *svc, const struct api_call *call, const char *named,
                               char out[API_ACCOUNT_ID_LEN + 1])
{
    if (named != NULL && strcmp(named, call->caller->account_id) != 0 &&
        !authz_account_exists(svc->az, named)) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "Account %s does not exist in region %s.", named,
                           call->region);
    }
    snprintf(out, API_ACCOUNT_ID_LEN + 1, "%s", named != NULL ? named : call->caller->account_id);
    return COFFER_OK;
}

/* This server's replication key pair: the private half (DER PKCS#8, secret) and the public SPKI. */
static coffer_err replication_key(struct kms_service *svc, coffer_buf *priv, coffer_buf *spki)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT;
    crypto_pkey *pk = NULL;
    store_txn *t = NULL;
    kms_write_begin(svc); /* one pair, even when two peers ask at once */
    rc = store_get(svc->st, REPLICATION_KEY_STORE_KEY, &sealed);
    if (rc == COFFER_OK) {
        TRY_OUT(seal_record_open(svc->sl, REPLICATION_KEY_STORE_KEY, coffer_buf_cursor(&sealed), priv));
        TRY_OUT(crypto_pkey_from_private_der(CRYPTO_PKEY_EC_P256, coffer_buf_cursor(priv), &pk));
    } else if (rc == COFFER_ERR_NOT_FOUND) {
        TRY_OUT(crypto_pkey_generate(CRYPTO_PKEY_EC_P256, &pk));
        TRY_OUT(crypto_pkey_private_der(pk, priv));
        coffer_buf_reset(&sealed);
        TRY_OUT(seal_record_seal(svc->sl, REPLICATION_KEY_STORE_KEY, coffer_buf_cursor(priv), &sealed));
        TRY_OUT(store_txn_begin(svc->st, &t));
        TRY_OUT(store_txn_put(t, REPLICATION_KEY_STORE_KEY, coffer_buf_cursor(&sealed)));
        rc = store_txn_commit(t);
        t = NULL;
        TRY_OUT(rc);
    } else {
        goto out;
    }
    rc = crypto_pkey_public_der(pk, spki);
out:
    kms_write_release(svc);
    store_txn_abort(t);
    crypto_pkey_free(pk);
    coffer_buf_free(&sealed);
    return rc;
}

coffer_err kms_replica_serve_key(struct kms_service *svc, struct api_call *call)
{
    static const char *const audit[] = {"SourceRegion", NULL};
    struct kms_req r;
    coffer_buf priv = COFFER_SECRET_BUF_INIT, spki = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_CofferGetReplicationKey, call->input, &r));
    TRY_OUT(kms_peer_caller_check(svc, call, r.source_region));
    TRY_OUT(replication_key(svc, &priv, &spki));
    if ((call->output = json_pack("{s:s}", "Region", call->region)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "PublicKey", coffer_buf_cursor(&spki), false));
out:
    coffer_buf_free(&priv);
    coffer_buf_free(&spki);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Replication for the other services (struct kms_api, kms.h)                                 */
/* ------------------------------------------------------------------------------------------ */

bool kms_peer_known(struct kms_service *svc, const char *region)
{
    return kms_peer_find(svc, region) != NULL;
}

coffer_err kms_peer_call_service(struct kms_service *svc, const char *region, const char *signing_name,
                                 const char *target, const json_t *body, json_t **out)
{
    const struct kms_peer *p = kms_peer_find(svc, region);
    *out = NULL;
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_UNAVAILABLE, "Region %s is not a peer region.", region);
    }
    return peer_call_target(p, signing_name, target, body, out);
}

coffer_err kms_peer_seal(struct kms_service *svc, const char *region, coffer_cursor aad,
                         coffer_cursor plaintext, coffer_buf *box)
{
    json_t *body = NULL, *keyans = NULL;
    coffer_buf spki = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    const struct kms_peer *p = kms_peer_find(svc, region);
    coffer_buf_init(box, false);
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_UNAVAILABLE, "Region %s is not a peer region.", region);
    }
    /* The peer's public key, fresh for each box: a peer may have rebuilt its store. */
    if ((body = json_pack("{s:s}", "SourceRegion", svc->region)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(peer_call(svc, p, "CofferGetReplicationKey", body, &keyans));
    const char *pk = json_string_value(json_object_get(keyans, "PublicKey"));
    if (pk == NULL || coffer_b64_decode(coffer_cursor_from_str(pk), &spki) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s answered without a replication key.", p->region);
    }
    rc = crypto_ecies_seal(coffer_buf_cursor(&spki), aad, plaintext, box);
out:
    json_decref(body);
    json_decref(keyans);
    coffer_buf_free(&spki);
    return rc;
}

coffer_err kms_replication_open(struct kms_service *svc, coffer_cursor aad, coffer_cursor box,
                                coffer_buf *plain)
{
    coffer_buf priv = COFFER_SECRET_BUF_INIT, spki = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    coffer_buf_init(plain, true);
    TRY_OUT(replication_key(svc, &priv, &spki));
    if (crypto_ecies_open(coffer_buf_cursor(&priv), aad, box, plain) != COFFER_OK) {
        coffer_buf_free(plain);
        FAIL_OUT(COFFER_ERR_VALIDATION, "the replicated value cannot be opened by this region");
    }
out:
    coffer_buf_free(&priv);
    coffer_buf_free(&spki);
    return rc;
}

coffer_err kms_peer_caller_check_service(struct kms_service *svc, const struct api_call *call,
                                         const char *source_region, const char *service)
{
    return peer_caller_check_as(svc, call, source_region, service);
}

/* The checks on a record a peer sends; *spec is its key spec. */
static coffer_err sent_record_check(const struct api_call *call, const char *account, const char *source,
                                    const json_t *sent, enum kms_spec *spec)
{
    const char *id = json_string_value(json_object_get(sent, "KeyId"));
    const char *acct = json_string_value(json_object_get(sent, "AWSAccountId"));
    const json_t *mrc = json_object_get(sent, "MultiRegionConfiguration");
    const char *primary = json_string_value(json_object_get(mrc, "PrimaryRegion"));
    const json_t *replicas = json_object_get(mrc, "ReplicaRegions");
    size_t i;
    const json_t *v;
    if (id == NULL || strncmp(id, "mrk-", 4) != 0 || !kms_key_id_valid(id) || acct == NULL ||
        strcmp(acct, account) != 0 || primary == NULL || !json_is_array(replicas) ||
        !kms_spec_parse(json_string_value(json_object_get(sent, "KeySpec")), spec) ||
        kms_spec_family(*spec) == KMS_FAMILY_UNSUPPORTED ||
        !json_is_string(json_object_get(sent, "KeyUsage")) ||
        !json_is_string(json_object_get(sent, "Origin")) ||
        !json_is_array(json_object_get(sent, "KeyMaterials")) ||
        !json_is_string(json_object_get(sent, "CurrentKeyMaterialId"))) {
        return coffer_fail(COFFER_ERR_VALIDATION, "malformed replica record");
    }
    json_array_foreach(replicas, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) > KMS_REGION_MAX) {
            return coffer_fail(COFFER_ERR_VALIDATION, "malformed replica record");
        }
    }
    /* This region must be part of the key, and the sender must be its primary or have been. */
    if (strcmp(primary, call->region) != 0 && !regions_has(replicas, call->region)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "the replica record does not name region %s", call->region);
    }
    (void)source;
    return COFFER_OK;
}

/* Is every KeyMaterialId of sent.KeyMaterials one of mats? */
static bool materials_cover(const json_t *sent, const struct kms_material *mats, size_t n)
{
    size_t i;
    const json_t *e;
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    json_array_foreach(json_object_get(sent, "KeyMaterials"), i, e)
    {
        const char *want = json_string_value(json_object_get(e, "KeyMaterialId"));
        bool found = false;
        for (size_t j = 0; want != NULL && j < n && !found; j++) {
            coffer_hex_encode(mats[j].id, KMS_MATERIAL_ID_LEN, hex);
            found = strcmp(hex, want) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return json_array_size(json_object_get(sent, "KeyMaterials")) > 0;
}

static coffer_err open_materials(struct kms_service *svc, const struct api_call *call, const char *account,
                                 coffer_cursor box, const json_t *sent, enum kms_spec spec,
                                 struct kms_material **mats, size_t *n)
{
    const char *key_id = json_string_value(json_object_get(sent, "KeyId"));
    coffer_buf priv = COFFER_SECRET_BUF_INIT, spki = COFFER_BUF_INIT, plain = COFFER_SECRET_BUF_INIT;
    char aad[BOX_AAD_MAX];
    coffer_err rc = COFFER_OK;
    TRY_OUT(replication_key(svc, &priv, &spki));
    box_aad(aad, account, key_id, call->region);
    if (crypto_ecies_open(coffer_buf_cursor(&priv), coffer_cursor_from_str(aad), box, &plain) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "the replica material cannot be opened by this region");
    }
    TRY_OUT(materials_decode(spec, coffer_buf_cursor(&plain), mats, n));
    /* Every material the record lists must have come: a key must load again after a restart. */
    if (!materials_cover(sent, *mats, *n)) {
        materials_free(*mats, *n);
        *mats = NULL;
        *n = 0;
        FAIL_OUT(COFFER_ERR_VALIDATION, "the replica record lists material that was not sent");
    }
out:
    coffer_buf_free(&priv);
    coffer_buf_free(&spki);
    coffer_buf_free(&plain);
    return rc;
}

/* A new replica's record, from what the primary sent. */
static coffer_err replica_record(struct kms_service *svc, const struct api_call *call, const char *account,
                                 const json_t *sent, json_t **out)
{
    const char *policy_text = json_string_value(json_object_get(sent, "Policy"));
    char *dflt = NULL;
    json_t *principals = NULL, *tags = NULL;
    coffer_err rc = COFFER_OK;
    *out = NULL;
    if (policy_text == NULL) {
        if ((dflt = kms_default_policy(account)) == NULL) {
            return kms_nomem();
        }
        policy_text = dflt;
        principals = json_object();
    } else {
        if (strlen(policy_text) > svc->limits.kms_key_policy_bytes) {
            FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED, "The key policy exceeds the maximum size of %zu bytes.",
                     svc->limits.kms_key_policy_bytes);
        }
        policy *p = NULL;
        TRY_OUT(kms_policy_compile(policy_text, &p));
        policy_free(p);
        TRY_OUT(kms_policy_principals(svc, policy_text, true, &principals));
    }
    const json_t *sent_tags = json_object_get(sent, "Tags");
    TRY_OUT(kms_tags_merge(NULL, json_is_array(sent_tags) ? sent_tags : NULL, svc->limits.kms_tags_per_key,
                           &tags));
    const char *desc = json_string_value(json_object_get(sent, "Description"));
    const json_t *rotation = json_object_get(sent, "Rotation");
    *out = json_pack("{s:i,s:O,s:s,s:s,s:I,s:s,s:O,s:O,s:s,s:O,s:s,s:b,s:s,s:O,s:O,s:O,s:O,s:O,s:O}",
                     "Version", KMS_RECORD_VERSION, "KeyId", json_object_get(sent, "KeyId"), "AWSAccountId",
                     account, "Region", call->region, "CreationDate", (json_int_t)kms_call_now_ms(call),
                     "Description", desc != NULL ? desc : "", "KeySpec", json_object_get(sent, "KeySpec"),
                     "KeyUsage", json_object_get(sent, "KeyUsage"), "KeyState", "Enabled", "Origin",
                     json_object_get(sent, "Origin"), "KeyManager", "CUSTOMER", "MultiRegion", 1, "Policy",
                     policy_text, "PolicyPrincipals", principals, "Tags", tags, "Rotation",
                     rotation != NULL ? rotation : json_null(), "KeyMaterials",
                     json_object_get(sent, "KeyMaterials"), "CurrentKeyMaterialId",
                     json_object_get(sent, "CurrentKeyMaterialId"), "MultiRegionConfiguration",
                     json_object_get(sent, "MultiRegionConfiguration"));
    if (*out == NULL) {
        rc = kms_nomem();
    }
out:
    free(dflt);
    json_decref(principals);
    json_decref(tags);
    return rc;
}

/* The peer's copy of an existing key takes the shared parts of `sent`; its own stay. */
static coffer_err replica_update(struct kms_service *svc, const struct api_call *call, const char *account,
                                 const char *source, const json_t *sent, struct kms_material *mats, size_t n,
                                 bool *installed)
{
    struct kms_key *k = NULL;
    json_t *rec = NULL;
    coffer_err rc = COFFER_OK;
    const char *id = json_string_value(json_object_get(sent, "KeyId"));
    kms_write_begin(svc);
    rc = kms_key_get_locked(svc, account, call->region, id, &k);
    if (rc == COFFER_ERR_NOT_FOUND) {
        char arn[KMS_ARN_MAX];
        kms_key_arn(arn, sizeof(arn), call->region, account, id);
        FAIL_OUT(COFFER_ERR_NOT_FOUND, "Key '%s' does not exist", arn);
    }
    TRY_OUT(rc);
    if (!kms_mrk_is(k) || mrc_primary(k->rec) == NULL || strcmp(mrc_primary(k->rec), source) != 0 ||
        strcmp(json_string_value(json_object_get(k->rec, "KeySpec")),
               json_string_value(json_object_get(sent, "KeySpec"))) != 0) {
        FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION, "%s is not a replica of the multi-Region key in %s.",
                 k->arn, source);
    }
    if ((rec = json_deep_copy(k->rec)) == NULL ||
        json_object_set(rec, "MultiRegionConfiguration", json_object_get(sent, "MultiRegionConfiguration")) !=
            0 ||
        json_object_set(rec, "KeyMaterials", json_object_get(sent, "KeyMaterials")) != 0 ||
        json_object_set(rec, "CurrentKeyMaterialId", json_object_get(sent, "CurrentKeyMaterialId")) != 0 ||
        (json_object_get(sent, "Rotation") != NULL &&
         json_object_set(rec, "Rotation", json_object_get(sent, "Rotation")) != 0)) {
        rc = kms_nomem();
        goto out;
    }
    rc = kms_key_sync_materials(svc, k, rec, mats, n);
    rec = NULL;
    *installed = rc == COFFER_OK;
out:
    kms_write_release(svc);
    json_decref(rec);
    return rc;
}

/* Installs the new replica `sent` describes with materials `mats` (taken, freed on failure) and
 * sets call->output to ReplicateKey's answer elements. */
static coffer_err install_new_replica(struct kms_service *svc, struct api_call *call, const char *account,
                                      const json_t *sent, struct kms_material *mats, size_t n,
                                      const char *id_arn)
{
    json_t *rec = NULL, *meta = NULL;
    coffer_err rc = replica_record(svc, call, account, sent, &rec);
    if (rc != COFFER_OK) {
        materials_free(mats, n);
        return rc;
    }
    struct kms_key *k = NULL;
    kms_write_begin(svc);
    rc = kms_key_install(svc, rec, mats, n, &k);
    rec = NULL;
    if (rc == COFFER_OK) {
        mats = NULL; /* the key's now */
        meta = kms_key_metadata(k);
        /* Copies: readers share k->rec once it is cached, so its reference counts stay untouched. */
        call->output = meta != NULL
                           ? json_pack("{s:O,s:o,s:o}", "ReplicaKeyMetadata", meta, "ReplicaPolicy",
                                       json_deep_copy(json_object_get(k->rec, "Policy")), "ReplicaTags",
                                       json_deep_copy(json_object_get(k->rec, "Tags")))
                           : NULL;
        if (call->output == NULL) {
            rc = kms_nomem();
        }
    } else if (rc == COFFER_ERR_ALREADY_EXISTS) {
        rc = coffer_fail(COFFER_ERR_ALREADY_EXISTS, "Replica key %s already exists.", id_arn);
    }
    kms_write_release(svc);
    materials_free(mats, n);
    json_decref(meta);
    return rc;
}

coffer_err kms_replica_serve_sync(struct kms_service *svc, struct api_call *call)
{
    static const char *const audit[] = {"SourceRegion", "Create", NULL};
    struct kms_req r;
    json_t *sent = NULL;
    struct kms_material *mats = NULL;
    size_t n = 0;
    enum kms_spec spec;
    bool installed = false;
    coffer_err rc = COFFER_OK;
    char acct[API_ACCOUNT_ID_LEN + 1];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_CofferSyncReplica, call->input, &r));
    TRY_OUT(kms_peer_caller_check(svc, call, r.source_region));
    TRY_OUT(peer_account(svc, call, r.peer_account, acct));
    sent = json_loads(r.key_record, 0, NULL);
    if (!json_is_object(sent)) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "malformed replica record");
    }
    TRY_OUT(sent_record_check(call, acct, r.source_region, sent, &spec));
    const char *id = json_string_value(json_object_get(sent, "KeyId"));
    char id_arn[KMS_ARN_MAX];
    kms_key_arn(id_arn, sizeof(id_arn), call->region, acct, id);
    kms_audit_key_arn(call, acct, id_arn);
    TRY_OUT(open_materials(svc, call, acct, coffer_buf_cursor(&r.ciphertext), sent, spec, &mats, &n));
    if (!r.create_replica) {
        TRY_OUT(replica_update(svc, call, acct, r.source_region, sent, mats, n, &installed));
        mats = installed ? NULL : mats;
        goto out;
    }
    const char *primary = mrc_primary(sent);
    if (strcmp(primary, r.source_region) != 0) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "a replica is created by its primary region only");
    }
    rc = install_new_replica(svc, call, acct, sent, mats, n, id_arn);
    mats = NULL; /* taken */
out:
    materials_free(mats, n);
    json_decref(sent);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_replica_pull(struct kms_service *svc, struct api_call *call, const struct kms_peer *p,
                            const char *key_id, const json_t *extra)
{
    coffer_buf priv = COFFER_SECRET_BUF_INIT, spki = COFFER_BUF_INIT, box = COFFER_BUF_INIT;
    json_t *body = NULL, *ans = NULL, *sent = NULL;
    struct kms_material *mats = NULL;
    size_t n = 0;
    enum kms_spec spec;
    coffer_err rc = COFFER_OK;
    char id_arn[KMS_ARN_MAX];
    char key_ref[KMS_ARN_MAX];
    TRY_OUT(replication_key(svc, &priv, &spki));
    /* By ARN: the key is in the caller's account there, whichever account the principal that
     * asks for it belongs to. */
    kms_key_arn(key_ref, sizeof(key_ref), p->region, call->caller->account_id, key_id);
    if ((body = json_pack("{s:s,s:s}", "SourceRegion", svc->region, "KeyId", key_ref)) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(body, "PublicKey", coffer_buf_cursor(&spki), false));
    TRY_OUT(peer_call(svc, p, "CofferPullReplica", body, &ans));
    const char *text = json_string_value(json_object_get(ans, "KeyRecord"));
    const char *wrapped = json_string_value(json_object_get(ans, "WrappedMaterial"));
    /* Parsed on its own line: json_is_object is a macro that evaluates its argument twice. */
    if (text != NULL) {
        sent = json_loads(text, 0, NULL);
    }
    if (wrapped == NULL || coffer_b64_decode(coffer_cursor_from_str(wrapped), &box) != COFFER_OK ||
        !json_is_object(sent)) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s answered without a replica record.", p->region);
    }
    /* The replica's own description, tags and policy, which the caller gave here. */
    if (extra != NULL && json_object_update(sent, (json_t *)extra) != 0) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(sent_record_check(call, call->caller->account_id, p->region, sent, &spec));
    const char *primary = mrc_primary(sent);
    if (strcmp(json_string_value(json_object_get(sent, "KeyId")), key_id) != 0 ||
        strcmp(primary, p->region) != 0) {
        FAIL_OUT(COFFER_ERR_UNAVAILABLE, "Peer region %s answered with another key's record.", p->region);
    }
    kms_key_arn(id_arn, sizeof(id_arn), call->region, call->caller->account_id, key_id);
    kms_audit_key_arn(call, call->caller->account_id, id_arn);
    TRY_OUT(
        open_materials(svc, call, call->caller->account_id, coffer_buf_cursor(&box), sent, spec, &mats, &n));
    rc = install_new_replica(svc, call, call->caller->account_id, sent, mats, n, id_arn);
    mats = NULL; /* taken */
out:
    materials_free(mats, n);
    coffer_buf_free(&priv);
    coffer_buf_free(&spki);
    coffer_buf_free(&box);
    json_decref(body);
    json_decref(ans);
    json_decref(sent);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* A replica's deletion, told to its primary                                                  */
/* ------------------------------------------------------------------------------------------ */

#define REPLICA_GONE_PREFIX "kms/replica-gone/"

coffer_err kms_mrk_replica_gone_txn(store_txn *t, const json_t *rec, const char *acct, const char *id)
{
    const json_t *mrc = json_object_get(rec, "MultiRegionConfiguration");
    const char *type = json_string_value(json_object_get(mrc, "MultiRegionKeyType"));
    const char *primary = mrc_primary(rec);
    if (!json_is_true(json_object_get(rec, "MultiRegion")) || type == NULL || strcmp(type, "REPLICA") != 0 ||
        primary == NULL) {
        return COFFER_OK;
    }
    char skey[STORE_KEY_BUF];
    snprintf(skey, sizeof(skey), REPLICA_GONE_PREFIX "%s/%s", acct, id);
    json_t *v = json_pack("{s:s}", "PrimaryRegion", primary);
    char *text = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (text == NULL) {
        return kms_nomem();
    }
    coffer_err rc = store_txn_put(t, skey, coffer_cursor_from_str(text));
    free(text);
    return rc;
}

struct gone_scan {
    size_t n;
    char keys[16][STORE_KEY_BUF];
    char primary[16][KMS_REGION_MAX + 1];
};

static coffer_err gone_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct gone_scan *g = ctx;
    json_t *v = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    const char *p = json_string_value(json_object_get(v, "PrimaryRegion"));
    snprintf(g->keys[g->n], sizeof(g->keys[g->n]), "%s", key);
    snprintf(g->primary[g->n], sizeof(g->primary[g->n]), "%s", p != NULL ? p : "");
    json_decref(v);
    return ++g->n == sizeof(g->keys) / sizeof(g->keys[0]) ? STORE_SCAN_STOP : COFFER_OK;
}

static void gone_drop(struct kms_service *svc, const char *skey)
{
    store_txn *t = NULL;
    kms_write_begin(svc);
    coffer_err rc = store_txn_begin(svc->st, &t);
    if (rc == COFFER_OK) {
        rc = store_txn_delete(t, skey);
        rc = rc == COFFER_OK || rc == COFFER_ERR_NOT_FOUND ? store_txn_commit(t) : rc;
        t = rc == COFFER_OK ? NULL : t;
    }
    store_txn_abort(t);
    kms_write_release(svc);
    if (rc != COFFER_OK) {
        log_warn("kms: replica deletion notice %s not dropped: %s", skey, coffer_last_message());
    }
}

/* Sends one notice; true when it is done with (delivered, or nothing left to tell). */
static bool gone_send(struct kms_service *svc, const char *skey, const char *primary)
{
    char acct[API_ACCOUNT_ID_LEN + 1], id[KMS_KEY_ID_MAX + 1], rkey[STORE_KEY_BUF];
    if (sscanf(skey, REPLICA_GONE_PREFIX "%12[0-9]/%40[a-z0-9-]", acct, id) != 2 || primary[0] == '\0') {
        return true; /* not ours to interpret */
    }
    /* Replicated here again since: the primary lists this region rightly. */
    coffer_buf val = COFFER_BUF_INIT;
    kms_key_store_key(rkey, sizeof(rkey), acct, svc->region, id);
    coffer_err rc = store_get(svc->st, rkey, &val);
    coffer_buf_free(&val);
    if (rc == COFFER_OK) {
        return true;
    }
    const struct kms_peer *p = kms_peer_find(svc, primary);
    if (p == NULL) {
        log_warn("kms: replica %s deleted, but its primary region %s is no longer a peer", id, primary);
        return true;
    }
    json_t *body = json_pack("{s:s,s:s,s:s}", "SourceRegion", svc->region, "AccountId", acct, "KeyId", id);
    json_t *ans = NULL;
    rc = body != NULL ? peer_call(svc, p, "CofferReplicaDeleted", body, &ans) : kms_nomem();
    json_decref(body);
    json_decref(ans);
    if (rc == COFFER_OK || rc == COFFER_ERR_NOT_FOUND) {
        return true;
    }
    log_warn("kms: replica %s deleted, primary region %s not told yet (retried): %s", id, primary,
             coffer_last_message());
    return false;
}

void kms_mrk_replica_gone_deliver(struct kms_service *svc)
{
    struct gone_scan *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return;
    }
    /* At most one batch per run, so a primary that cannot be reached costs a run a bounded
     * number of attempts; undelivered notices stay and come first again next run. */
    if (store_scan(svc->st, REPLICA_GONE_PREFIX, NULL, 0, gone_cb, g) == COFFER_OK) {
        for (size_t i = 0; i < g->n; i++) {
            if (gone_send(svc, g->keys[i], g->primary[i])) {
                gone_drop(svc, g->keys[i]);
            }
        }
    }
    free(g);
}

struct deletion_start {
    char key[STORE_KEY_BUF];
};

static coffer_err deletion_start_txn(store_txn *t, void *ctx)
{
    struct deletion_start *d = ctx;
    return store_txn_put(t, d->key, coffer_cursor_from_str("{}"));
}

coffer_err kms_replica_serve_gone(struct kms_service *svc, struct api_call *call)
{
    static const char *const audit[] = {"SourceRegion", "KeyId", NULL};
    struct kms_req r;
    struct kms_key *k = NULL;
    json_t *rec = NULL, *left = NULL;
    coffer_err rc = COFFER_OK;
    bool changed = false, start = false;
    struct deletion_start d = {{0}};
    char acct[API_ACCOUNT_ID_LEN + 1], id[KMS_KEY_ID_MAX + 1];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_CofferReplicaDeleted, call->input, &r));
    TRY_OUT(kms_peer_caller_check(svc, call, r.source_region));
    if (!kms_key_id_valid(r.key_id) || strncmp(r.key_id, "mrk-", 4) != 0) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "malformed replica key id");
    }
    TRY_OUT(peer_account(svc, call, r.peer_account, acct));
    snprintf(id, sizeof(id), "%s", r.key_id);
    kms_write_begin(svc);
    rc = kms_key_get_locked(svc, acct, call->region, id, &k);
    if (rc == COFFER_ERR_NOT_FOUND) {
        char arn[KMS_ARN_MAX];
        kms_key_arn(arn, sizeof(arn), call->region, acct, id);
        rc = coffer_fail(COFFER_ERR_NOT_FOUND, "Key '%s' does not exist", arn);
    }
    if (rc != COFFER_OK) {
        goto unlock;
    }
    kms_audit_key(call, k);
    /* Only the primary keeps the list; a region it no longer lists has nothing to change. */
    if (!kms_mrk_is_primary(k) || !regions_has(mrc_replicas(k->rec), r.source_region)) {
        goto unlock;
    }
    if ((left = json_array()) == NULL || (rec = json_deep_copy(k->rec)) == NULL) {
        rc = kms_nomem();
        goto unlock;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(mrc_replicas(k->rec), i, v)
    {
        if (strcmp(json_string_value(v), r.source_region) != 0 && json_array_append(left, (json_t *)v) != 0) {
            rc = kms_nomem();
            goto unlock;
        }
    }
    json_t *mrc = kms_mrk_config_for(call->region, call->region, left);
    if (mrc == NULL || json_object_set_new(rec, "MultiRegionConfiguration", mrc) != 0) {
        rc = kms_nomem();
        goto unlock;
    }
    /* The last replica gone: a primary scheduled for deletion starts its waiting period now. */
    start = k->state == KMS_STATE_PENDING_REPLICA_DELETION && json_array_size(left) == 0;
    if (start) {
        int64_t days = (int64_t)json_integer_value(json_object_get(k->rec, "PendingWindowInDays"));
        int64_t when = kms_call_now_ms(call) + days * svc->limits.kms_deletion_day_ms;
        if (json_object_set_new(rec, "KeyState", json_string("PendingDeletion")) != 0 ||
            json_object_set_new(rec, "DeletionDate", json_integer(when)) != 0) {
            rc = kms_nomem();
            goto unlock;
        }
        snprintf(d.key, sizeof(d.key), "kms/deletion/%016" PRId64 "/%s/%s/%s", when, acct, call->region, id);
    }
    rc = kms_key_update(svc, k, rec, start ? deletion_start_txn : NULL, &d);
    rec = NULL;
    changed = rc == COFFER_OK;
unlock:
    kms_write_release(svc);
    if (changed && kms_replica_push(svc, acct, id) != COFFER_OK) {
        /* each region not reached is logged; the next change or rotation tells it */
    }
out:
    json_decref(rec);
    json_decref(left);
    kms_req_clean(&r);
    return rc;
}
