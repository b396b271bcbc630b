/*
 * Multi-Region secrets between Coffer deployments (the peer regions of multi-Region KMS keys,
 * cofferd --peer): ReplicateSecretToRegions, RemoveRegionsFromReplication,
 * StopReplicationToReplica, CreateSecret's AddReplicaRegions, and Coffer's own operations a
 * peer calls (CofferSyncSecret, CofferRemoveReplicaSecret, CofferReplicaPromoted).
 *
 *   write on the primary -> sm_save marks "secrets-replication/<record key>"
 *   replication job      -> per replica region: values sealed to that region (kms peer_seal)
 *                        --secretsmanager.CofferSyncSecret {record, sealed values}--> replica
 *                        <- Status; the primary's ReplicationStatus follows
 *
 * A replica has the primary's name and ARN suffix, versions, staging labels, description, tags
 * and resource policy; it is read-only (sm_check_writable) and encrypted under a KMS key of its
 * own region (the KmsKeyId its primary names for it, else alias/aws/secretsmanager): the
 * primary decrypts each value and seals the whole set with crypto_box to the replica region's
 * replication key (the one multi-Region keys use), bound to the account, the secret and the
 * region, so values are never in clear outside the two barriers; the replica opens the box and
 * encrypts each value again with a data key of its own key.
 *
 * A write reaches the replicas asynchronously, as in AWS: the record stays marked until every
 * replica took it; a replica that cannot be reached shows Status Failed with the reason and is
 * tried again by the job (SM_REPLICATION_RETRY_MS later) or by the next write. So is the
 * deletion of a replica whose region was down at RemoveRegionsFromReplication.
 *
 * Who may call the Coffer operations: only the configured replication principal of the peer
 * the call names as its source (the check KMS's replication operations make); no policy grants
 * them. A replica takes changes only from the region it records as its primary. The calls name
 * the secret's account (AccountId), in which the replica is, whichever account the replication
 * principal belongs to; the receiver acts in it only when it exists there, and the box opens
 * only as that account's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "iam/authz.h"
#include "secrets/secrets_internal.h"

#define SM_REPLICATION_PREFIX "secrets-replication/"
#define SM_REPLICATION_RETRY_MS 5000 /* a replica that failed is tried again this much later */
#define SM_REPLICATION_BATCH 64      /* marked secrets one job run pushes at most */
/* Values in one box: with the record and base64, a request stays under cofferd's default
 * 1 MiB body limit (--max-body); a secret holding more travels in several rounds. */
#define SM_REPLICATION_CHUNK (512 * 1024)
#define SM_REPLICATION_ROUNDS 256
#define SM_REGION_MAX 63
#define SM_BOX_AAD_MAX (SM_ARN_MAX + 64)

static const char *const replica_refusal =
    "Operation not permitted on a replica secret. Call must be made in primary secret's region.";

/* ------------------------------------------------------------------------------------------ */
/* Record fields                                                                              */

bool sm_is_replica(const struct sm_secret *sec)
{
    const char *primary = sm_str(sec->rec, "PrimaryRegion");
    return primary != NULL && strcmp(primary, sec->region) != 0;
}

coffer_err sm_check_writable(const struct sm_secret *sec)
{
    if (sm_is_replica(sec)) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER, "%s", replica_refusal);
    }
    return COFFER_OK;
}

coffer_err sm_check_no_replicas(const struct sm_secret *sec)
{
    const json_t *list = json_object_get(sec->rec, "ReplicationStatus");
    if (json_array_size(list) == 0) {
        return COFFER_OK;
    }
    char regions[512] = "";
    size_t used = 0, i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        int n =
            snprintf(regions + used, sizeof(regions) - used, "%s%s", i > 0 ? ", " : "", sm_str(e, "Region"));
        if (n < 0 || (size_t)n >= sizeof(regions) - used) {
            break;
        }
        used += (size_t)n;
    }
    return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                       "You can't delete secret %s that still has replica regions [%s].", sec->arn, regions);
}

void sm_replication_marker_key(const struct sm_secret *sec, char *out, size_t n)
{
    snprintf(out, n, SM_REPLICATION_PREFIX "%s", sec->key);
}

/* ReplicationStatus as the API shows it: the stored entries without what only we use. */
json_t *sm_replication_status(const json_t *rec)
{
    json_t *out = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(rec, "ReplicationStatus"), i, e)
    {
        json_t *o = json_pack("{s:s, s:s, s:s}", "Region", sm_str(e, "Region"), "KmsKeyId",
                              sm_str(e, "KmsKeyId") != NULL ? sm_str(e, "KmsKeyId") : SM_DEFAULT_KEY,
                              "Status", sm_str(e, "Status"));
        if (o == NULL || out == NULL ||
            (sm_str(e, "StatusMessage") != NULL &&
             json_object_set_new(o, "StatusMessage", json_string(sm_str(e, "StatusMessage"))) != 0) ||
            (json_object_get(e, "LastAccessedDate") != NULL &&
             json_object_set_new(o, "LastAccessedDate", sm_date(sm_int(e, "LastAccessedDate"))) != 0) ||
            json_array_append_new(out, o) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *replica_entry(const json_t *list, const char *region)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (strcmp(sm_str(e, "Region"), region) == 0) {
            return e;
        }
    }
    return NULL;
}

/* An AWS region code: ^([a-z]+-)+\d+$ (one or more lowercase words each followed by '-', then digits). */
static bool region_valid(const char *r)
{
    size_t n = strlen(r), i = 0, words = 0;
    if (n == 0 || n > SM_REGION_MAX) {
        return false;
    }
    while (r[i] >= 'a' && r[i] <= 'z') {
        while (r[i] >= 'a' && r[i] <= 'z') {
            i++;
        }
        if (r[i] != '-') {
            return false;
        }
        i++;
        words++;
    }
    size_t digits = i;
    while (r[i] >= '0' && r[i] <= '9') {
        i++;
    }
    return words > 0 && i > digits && r[i] == 0;
}

coffer_err sm_replicas_parse(const struct sm *s, const struct api_call *call, const json_t *list,
                             bool required)
{
    if (list == NULL || json_is_null(list)) {
        return required
                   ? coffer_fail(COFFER_ERR_VALIDATION,
                                 "1 validation error detected: Value null at 'addReplicaRegions' failed to "
                                 "satisfy constraint: Member must not be null")
                   : COFFER_OK;
    }
    if (!json_is_array(list)) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Start of list found where not expected");
    }
    if (json_array_size(list) == 0) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "1 validation error detected: Value '[]' at 'addReplicaRegions' failed to satisfy "
                           "constraint: Member must have length greater than or equal to 1");
    }
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *region = sm_str(e, "Region");
        const json_t *key = json_object_get(e, "KmsKeyId");
        if (!json_is_object(e) || region == NULL ||
            (key != NULL && !json_is_null(key) && !json_is_string(key))) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER, "Invalid replica region: Region is required.");
        }
        if (!region_valid(region)) {
            return coffer_fail(
                COFFER_ERR_VALIDATION,
                "1 validation error detected: Value '%.64s' at 'addReplicaRegions.%zu.member.region' "
                "failed to satisfy constraint: Member must satisfy regular expression pattern: "
                "^([a-z]+-)+\\d+$",
                region, i + 1);
        }
        if (json_is_string(key) && strlen(json_string_value(key)) > 2048) {
            return coffer_fail(
                COFFER_ERR_VALIDATION,
                "1 validation error detected: Value at 'addReplicaRegions.%zu.member.kmsKeyId' "
                "failed to satisfy constraint: Member must have length less than or equal to 2048",
                i + 1);
        }
        if (strcmp(region, call->region) == 0) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                               "Invalid replica region: %s is the primary region of the secret.", region);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(sm_str(json_array_get(list, j), "Region"), region) == 0) {
                return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                                   "Invalid replica region: %s is listed twice.", region);
            }
        }
        if (s->kms == NULL || !s->kms->peer_known(s->kms->svc, region)) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                               "Invalid replica region: %s is not a peer region of this server.", region);
        }
    }
    return COFFER_OK;
}

coffer_err sm_replicas_add(struct sm_secret *sec, const json_t *list, bool force, const char *own_region)
{
    json_t *status = json_object_get(sec->rec, "ReplicationStatus");
    if (status == NULL) {
        if ((status = json_array()) == NULL ||
            json_object_set_new(sec->rec, "ReplicationStatus", status) != 0) {
            return sm_oom();
        }
    }
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *region = sm_str(e, "Region");
        const char *key = sm_str(e, "KmsKeyId");
        if (replica_entry(status, region) != NULL) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                               "Invalid replica region: the secret is already replicated to %s.", region);
        }
        json_t *o = json_pack("{s:s, s:s, s:b}", "Region", region, "Status", "InProgress", "Force", force);
        if (o == NULL ||
            (key != NULL && key[0] != 0 && json_object_set_new(o, "KmsKeyId", json_string(key)) != 0) ||
            json_array_append_new(status, o) != 0) {
            json_decref(o);
            return sm_oom();
        }
    }
    if (json_object_set_new(sec->rec, "PrimaryRegion", json_string(own_region)) != 0) {
        return sm_oom();
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* What travels: the shared record and the sealed values                                      */

/* "coffer secret <account> <name>-<suffix> <target region>": what one box is bound to. */
static void box_aad(char out[SM_BOX_AAD_MAX], const char *account, const char *name, const char *suffix,
                    const char *region)
{
    snprintf(out, SM_BOX_AAD_MAX, "coffer secret %s %s-%s %s", account, name, suffix, region);
}

/* The secret's owner acting through the service: what decrypts and re-encrypts values for
 * replication, which has no caller of its own (kms:ViaService secretsmanager). */
static void owner_caller(const char *account, struct api_caller *c)
{
    memset(c, 0, sizeof(*c));
    coffer_str_copy(c->account_id, sizeof(c->account_id), account);
    snprintf(c->principal_arn, sizeof(c->principal_arn), "arn:aws:iam::%s:root", account);
    coffer_str_copy(c->principal_id, sizeof(c->principal_id), account);
    c->principal_kind = API_PRINCIPAL_ROOT;
    c->source_ip = "secretsmanager.amazonaws.com";
    c->user_agent = "secretsmanager.amazonaws.com";
    c->secure_transport = true;
}

/*
 * The plaintext of a box, per version with a value:
 *   u8 VersionId length | VersionId | u8 binary | u32be length | value
 * Appends the values of the versions `want` names (VersionIds, in order; decrypted for the
 * owner) to `out` (a secret buffer) while they fit in SM_REPLICATION_CHUNK (the first always
 * goes), and their VersionIds to `sent`.
 */
static coffer_err values_encode(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                                const json_t *want, coffer_buf *out, json_t *sent)
{
    size_t i;
    const json_t *w;
    json_array_foreach(want, i, w)
    {
        const char *vid = json_string_value(w);
        const json_t *v = vid != NULL ? sm_version_find(json_object_get(sec->rec, "Versions"), vid) : NULL;
        if (v == NULL || sm_str(v, "Data") == NULL || strlen(vid) > 64) {
            continue;
        }
        coffer_buf plain;
        TRY(sm_value_open(s, call, sec, v, &plain));
        if (out->len > 0 && out->len + plain.len > SM_REPLICATION_CHUNK) {
            coffer_buf_free(&plain);
            break; /* the next round's */
        }
        coffer_err rc = coffer_buf_append_u8(out, (uint8_t)strlen(vid));
        rc = rc == COFFER_OK ? coffer_buf_append_str(out, vid) : rc;
        rc = rc == COFFER_OK ? coffer_buf_append_u8(out, json_is_true(json_object_get(v, "Binary")) ? 1 : 0)
                             : rc;
        rc = rc == COFFER_OK ? coffer_buf_append_u32be(out, (uint32_t)plain.len) : rc;
        rc = rc == COFFER_OK ? coffer_buf_append_cur(out, coffer_buf_cursor(&plain)) : rc;
        coffer_buf_free(&plain);
        TRY(rc);
        if (json_array_append_new(sent, json_string(vid)) != 0) {
            return sm_oom();
        }
    }
    return COFFER_OK;
}

static bool list_has(const json_t *list, const char *s)
{
    size_t i;
    const json_t *x;
    json_array_foreach(list, i, x)
    {
        if (json_string_value(x) != NULL && strcmp(json_string_value(x), s) == 0) {
            return true;
        }
    }
    return false;
}

/* The versions whose values the replica of `entry` lacks as far as the primary knows (it
 * reports what it has, "Have"): labelled ones first, newest first, so that the first box of a
 * large secret carries what readers ask for. */
static json_t *values_needed(const struct sm_secret *sec, const json_t *entry)
{
    const json_t *versions = json_object_get(sec->rec, "Versions");
    const json_t *have = json_object_get(entry, "Have");
    json_t *out = json_array();
    for (int labelled = 1; out != NULL && labelled >= 0; labelled--) {
        for (size_t i = json_array_size(versions); i-- > 0;) {
            const json_t *v = json_array_get(versions, i);
            const char *vid = sm_str(v, "VersionId");
            if (vid == NULL || sm_str(v, "Data") == NULL || list_has(have, vid) ||
                (json_array_size(json_object_get(v, "Stages")) > 0) != (labelled == 1)) {
                continue;
            }
            if (json_array_append_new(out, json_string(vid)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
    }
    return out;
}

/* The value of version `vid` in a box's plaintext; false when the box has none. */
static bool values_find(coffer_cursor in, const char *vid, coffer_cursor *value, bool *binary)
{
    coffer_cursor c = in;
    while (c.len > 0) {
        uint8_t idlen = 0, bin = 0;
        uint32_t len = 0;
        coffer_cursor id, bytes;
        if (cur_read_u8(&c, &idlen) != COFFER_OK || cur_read_bytes(&c, idlen, &id) != COFFER_OK ||
            cur_read_u8(&c, &bin) != COFFER_OK || cur_read_u32be(&c, &len) != COFFER_OK ||
            cur_read_bytes(&c, len, &bytes) != COFFER_OK) {
            return false;
        }
        if (id.len == strlen(vid) && memcmp(id.ptr, vid, id.len) == 0) {
            *value = bytes;
            *binary = bin != 0;
            return true;
        }
    }
    return false;
}

/* What a replica shares with its primary (no values, no rotation, no replication list). */
static json_t *shared_record(const json_t *rec)
{
    json_t *o = json_pack("{s:O, s:O, s:O, s:O, s:[]}", "Name", json_object_get(rec, "Name"), "Suffix",
                          json_object_get(rec, "Suffix"), "CreatedDate", json_object_get(rec, "CreatedDate"),
                          "LastChangedDate", json_object_get(rec, "LastChangedDate"), "Versions");
    static const char *const optional[] = {"Description", "Tags", "ResourcePolicy", NULL};
    for (const char *const *m = optional; o != NULL && *m != NULL; m++) {
        json_t *v = json_object_get(rec, *m);
        if (v != NULL && json_object_set(o, *m, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(rec, "Versions"), i, v)
    {
        json_t *e = o != NULL
                        ? json_pack("{s:O, s:O, s:O, s:b}", "VersionId", json_object_get(v, "VersionId"),
                                    "Stages", json_object_get(v, "Stages"), "CreatedDate",
                                    json_object_get(v, "CreatedDate"), "HasValue", sm_str(v, "Data") != NULL)
                        : NULL;
        if (e == NULL || json_array_append_new(json_object_get(o, "Versions"), e) != 0) {
            json_decref(e);
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* The primary's side: pushing a secret to its replicas                                       */

/* What one push to one region came to. */
enum push_result { PUSH_IN_SYNC, PUSH_FAILED, PUSH_DETACHED };

/* The regions one job run found unavailable: the run's other secrets do not wait for them
 * again (a peer that does not answer costs a run one timeout, not one per secret). */
#define SM_DOWN_MAX 16
struct push_run {
    size_t n_down;
    char down[SM_DOWN_MAX][SM_REGION_MAX + 1];
    char why[SM_DOWN_MAX][256];
};

static const char *run_down(const struct push_run *run, const char *region)
{
    for (size_t i = 0; i < run->n_down; i++) {
        if (strcmp(run->down[i], region) == 0) {
            return run->why[i];
        }
    }
    return NULL;
}

/* One CofferSyncSecret of sec with the values in `plain` to `region`; *ans the answer. */
static coffer_err sync_send(struct sm *s, const struct sm_secret *sec, const json_t *shared,
                            const json_t *entry, coffer_cursor plain, json_t **ans)
{
    const char *region = sm_str(entry, "Region");
    char aad[SM_BOX_AAD_MAX];
    coffer_buf box, b64;
    json_t *body = NULL;
    coffer_buf_init(&b64, false);
    box_aad(aad, sec->account, sec->name, sm_str(sec->rec, "Suffix"), region);
    coffer_err rc = s->kms->peer_seal(s->kms->svc, region, coffer_cursor_from_str(aad), plain, &box);
    if (rc == COFFER_OK) {
        rc = coffer_b64_encode(coffer_buf_cursor(&box), &b64);
    }
    if (rc == COFFER_OK) {
        body = json_pack("{s:s, s:s, s:s, s:O, s:s%, s:b}", "SourceRegion", sec->region, "AccountId",
                         sec->account, "Name", sec->name, "Secret", shared, "WrappedValues",
                         (const char *)b64.data, b64.len, "ForceOverwriteReplicaSecret",
                         json_is_true(json_object_get(entry, "Force")));
        if (body == NULL ||
            (sm_str(entry, "KmsKeyId") != NULL &&
             json_object_set_new(body, "KmsKeyId", json_string(sm_str(entry, "KmsKeyId"))) != 0)) {
            rc = sm_oom();
        }
    }
    if (rc == COFFER_OK) {
        rc = s->kms->peer_call(s->kms->svc, region, "secretsmanager", "secretsmanager.CofferSyncSecret", body,
                               ans);
    }
    coffer_buf_free(&box);
    coffer_buf_free(&b64);
    json_decref(body);
    return rc;
}

/*
 * Brings the replica in `entry`'s region up to sec: the values it lacks go in boxes of at most
 * SM_REPLICATION_CHUNK, each round sending what the replica still reports missing. On
 * PUSH_IN_SYNC, *have is what the replica now holds (for the next push to skip).
 */
static enum push_result push_one(struct sm *s, struct push_run *run, const struct api_call *call,
                                 const struct sm_secret *sec, const json_t *shared, const json_t *entry,
                                 json_t **have, char *why, size_t why_n)
{
    enum push_result res = PUSH_FAILED;
    const char *region = sm_str(entry, "Region");
    *have = NULL;
    if (run_down(run, region) != NULL) {
        snprintf(why, why_n, "%s", run_down(run, region));
        return PUSH_FAILED;
    }
    json_t *need = values_needed(sec, entry), *sent = NULL, *ans = NULL;
    coffer_buf plain;
    coffer_buf_init(&plain, true);
    snprintf(why, why_n, "Replication failed.");
    for (int round = 0; need != NULL && round < SM_REPLICATION_ROUNDS; round++) {
        json_decref(sent);
        json_decref(ans);
        ans = NULL;
        coffer_buf_reset(&plain);
        if ((sent = json_array()) == NULL) {
            break;
        }
        if (values_encode(s, call, sec, need, &plain, sent) != COFFER_OK) {
            snprintf(why, why_n, "Replication failed: the primary secret's value cannot be read: %s",
                     coffer_last_message());
            coffer_clear_err();
            break;
        }
        if (round > 0 && json_array_size(sent) == 0) {
            snprintf(why, why_n,
                     "Replication failed: the replica asks for values the primary does not hold.");
            break;
        }
        coffer_err rc = sync_send(s, sec, shared, entry, coffer_buf_cursor(&plain), &ans);
        if (rc != COFFER_OK) {
            snprintf(why, why_n, "%s", coffer_last_message());
            coffer_clear_err();
            if (rc == COFFER_ERR_UNAVAILABLE && run->n_down < SM_DOWN_MAX) {
                coffer_str_copy(run->down[run->n_down], sizeof(run->down[0]), region);
                coffer_str_copy(run->why[run->n_down], sizeof(run->why[0]), why);
                run->n_down++;
            }
            break;
        }
        const char *status = sm_str(ans, "Status") != NULL ? sm_str(ans, "Status") : "";
        if (strcmp(status, "InSync") == 0) {
            *have = json_incref(json_object_get(ans, "Have"));
            res = PUSH_IN_SYNC;
            break;
        }
        if (strcmp(status, "Detached") == 0) {
            res = PUSH_DETACHED;
            break;
        }
        const json_t *missing = json_object_get(ans, "Missing");
        if (strcmp(status, "Missing") != 0 || json_array_size(missing) == 0) {
            snprintf(why, why_n, "%s",
                     sm_str(ans, "StatusMessage") != NULL ? sm_str(ans, "StatusMessage")
                                                          : "Replication failed.");
            break;
        }
        size_t i;
        const json_t *m;
        json_array_foreach(missing, i, m)
        {
            if (!json_is_string(m) || list_has(sent, json_string_value(m))) {
                /* sent and still missing: it would never converge */
                snprintf(why, why_n, "Replication failed: the replica did not take version %s.",
                         json_is_string(m) ? json_string_value(m) : "?");
                goto out;
            }
        }
        json_decref(need);
        need = json_incref((json_t *)missing);
    }
out:
    coffer_buf_free(&plain);
    json_decref(need);
    json_decref(sent);
    json_decref(ans);
    return res;
}

/* The outcome of one push, kept until the record is written. */
struct push_outcome {
    char region[SM_REGION_MAX + 1];
    enum push_result res;
    char why[512];
    json_t *have; /* PUSH_IN_SYNC: the VersionIds whose values the replica holds */
};

/* The mark of a secret that is no more (record key `key`). */
static coffer_err marker_drop(struct sm *s, const char *key)
{
    char mkey[SM_KEY_MAX + 32];
    store_txn *t = NULL;
    snprintf(mkey, sizeof(mkey), SM_REPLICATION_PREFIX "%s", key);
    coffer_err rc = store_txn_begin(s->st, &t);
    if (rc == COFFER_OK) {
        rc = store_txn_delete(t, mkey);
        if (rc == COFFER_ERR_NOT_FOUND) {
            coffer_clear_err();
            rc = COFFER_OK;
        }
    }
    if (rc == COFFER_OK) {
        rc = store_txn_commit(t);
        t = NULL;
    }
    store_txn_abort(t);
    return rc;
}

/*
 * Writes the outcomes into the record of `key` (loaded again, under the mutex) and settles its
 * marker: gone when every replica took revision `pushed` and nothing changed since, due again
 * SM_REPLICATION_RETRY_MS later when one failed, left for the next run after a newer write.
 */
static coffer_err push_settle(struct sm *s, const char *key, int64_t pushed, const struct push_outcome *o,
                              size_t n, int64_t now_ms)
{
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    bool failed = false;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_load_key(s, key, &sec));
    json_t *status = json_object_get(sec.rec, "ReplicationStatus");
    if (sec.rec == NULL) {
        rc = marker_drop(s, key);
        goto out;
    }
    if (status == NULL) {
        sec.push = SM_PUSH_DONE;
        rc = sm_save(s, &sec, sm_int(sec.rec, "DeletionDate"));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = replica_entry(status, o[i].region);
        if (e == NULL) {
            continue; /* removed meanwhile */
        }
        failed = failed || o[i].res == PUSH_FAILED;
        if (o[i].res == PUSH_DETACHED) {
            size_t j;
            json_t *x;
            json_array_foreach(status, j, x)
            {
                if (x == e) {
                    json_array_remove(status, j);
                    break;
                }
            }
            continue;
        }
        int r = json_object_set_new(e, "Status", json_string(o[i].res == PUSH_IN_SYNC ? "InSync" : "Failed"));
        if (o[i].res == PUSH_IN_SYNC) {
            json_object_del(e, "StatusMessage");
            json_object_del(e, "Force");
            if (json_is_array(o[i].have)) {
                r = json_object_set(e, "Have", o[i].have);
            }
        } else {
            r = r != 0 ? r : json_object_set_new(e, "StatusMessage", json_string(o[i].why));
        }
        if (r != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (json_array_size(status) == 0) {
        json_object_del(sec.rec, "ReplicationStatus");
        json_object_del(sec.rec, "PrimaryRegion");
    }
    sec.push = sec.revision != pushed ? SM_PUSH_LEAVE : failed ? SM_PUSH_RETRY : SM_PUSH_DONE;
    sec.push_after = now_ms + SM_REPLICATION_RETRY_MS;
    rc = sm_save(s, &sec, sm_int(sec.rec, "DeletionDate"));
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

/* Pushes the secret stored under `key` to every replica region it lists. */
static coffer_err push_secret(struct sm *s, struct push_run *run, const char *key, int64_t now_ms)
{
    struct sm_secret sec = {0};
    struct api_caller owner;
    struct push_outcome *o = NULL;
    json_t *shared = NULL;
    coffer_err rc = COFFER_OK;
    size_t n = 0;
    TRY_OUT(sm_load_key(s, key, &sec));
    const json_t *status = json_object_get(sec.rec, "ReplicationStatus");
    if (sec.rec == NULL || json_array_size(status) == 0 || s->kms == NULL) {
        rc = push_settle(s, key, sec.revision, NULL, 0, now_ms);
        goto out;
    }
    char rid[CRYPTO_UUID_STR_LEN + 1];
    TRY_OUT(crypto_uuid_v4(rid));
    owner_caller(sec.account, &owner);
    struct api_call call = {.caller = &owner,
                            .region = sec.region,
                            .request_id = rid,
                            .event_id = rid,
                            .operation = "ReplicateSecretToRegions",
                            .now_ms = now_ms};
    n = json_array_size(status);
    if ((shared = shared_record(sec.rec)) == NULL || (o = calloc(n, sizeof(*o))) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(status, i);
        coffer_str_copy(o[i].region, sizeof(o[i].region), sm_str(e, "Region"));
        o[i].res = push_one(s, run, &call, &sec, shared, e, &o[i].have, o[i].why, sizeof(o[i].why));
        if (o[i].res == PUSH_FAILED) {
            log_warn("secretsmanager: %s not replicated to %s: %s", sec.arn, o[i].region, o[i].why);
        }
    }
    rc = push_settle(s, key, sec.revision, o, n, now_ms);
out:
    for (size_t i = 0; o != NULL && i < n; i++) {
        json_decref(o[i].have);
    }
    json_decref(shared);
    free(o);
    sm_secret_free(&sec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Replicas to delete                                                                         */

/*
 * RemoveRegionsFromReplication deletes the replicas at once; one whose region cannot be reached
 * stays listed in "secrets-replica-removal/<replica region>/<record key>" {"NotBefore",
 * "Account", "Region", "Name", "Suffix"} until its region confirms the deletion, so that no
 * orphan replica outlives an outage of its region. The replication job tries it again every
 * SM_REPLICATION_RETRY_MS.
 */
#define SM_REMOVAL_PREFIX "secrets-replica-removal/"

static void removal_key(const char *replica_region, const char *record_key, char *out, size_t n)
{
    snprintf(out, n, SM_REMOVAL_PREFIX "%s/%s", replica_region, record_key);
}

/* Records the pending deletion of the replicas of sec in `regions` (due `not_before`). */
static coffer_err removal_record(struct sm *s, const struct sm_secret *sec, const json_t *regions,
                                 int64_t not_before)
{
    store_txn *t = NULL;
    json_t *v = NULL;
    char *text = NULL;
    coffer_err rc = store_txn_begin(s->st, &t);
    size_t i;
    const json_t *r;
    json_array_foreach(regions, i, r)
    {
        char key[SM_KEY_MAX + SM_REGION_MAX + 32];
        if (rc != COFFER_OK) {
            break;
        }
        removal_key(json_string_value(r), sec->key, key, sizeof(key));
        v = json_pack("{s:I, s:s, s:s, s:s, s:s}", "NotBefore", (json_int_t)not_before, "Account",
                      sec->account, "Region", sec->region, "Name", sec->name, "Suffix",
                      sm_str(sec->rec, "Suffix"));
        text = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;
        rc = text != NULL ? store_txn_put(t, key, coffer_cursor_from_str(text)) : sm_oom();
        free(text);
        json_decref(v);
        text = NULL;
        v = NULL;
    }
    if (rc == COFFER_OK) {
        rc = store_txn_commit(t);
        t = NULL;
    }
    store_txn_abort(t);
    return rc;
}

/* The pending deletion under `key` is settled: gone, or due again at `not_before` (value `v`). */
static coffer_err removal_settle(struct sm *s, const char *key, json_t *v, int64_t not_before)
{
    store_txn *t = NULL;
    char *text = NULL;
    coffer_err rc = store_txn_begin(s->st, &t);
    if (rc == COFFER_OK && not_before == 0) {
        rc = store_txn_delete(t, key);
        if (rc == COFFER_ERR_NOT_FOUND) {
            coffer_clear_err();
            rc = COFFER_OK;
        }
    } else if (rc == COFFER_OK) {
        text = json_object_set_new(v, "NotBefore", json_integer(not_before)) == 0
                   ? json_dumps(v, JSON_COMPACT)
                   : NULL;
        rc = text != NULL ? store_txn_put(t, key, coffer_cursor_from_str(text)) : sm_oom();
    }
    if (rc == COFFER_OK) {
        rc = store_txn_commit(t);
        t = NULL;
    }
    store_txn_abort(t);
    free(text);
    return rc;
}

/* Asks the replica in `region` to delete its copy of the secret (name and suffix); false, with
 * the reason logged, when it was not done. */
static bool replica_delete(struct sm *s, const char *region, const char *own_region, const char *account,
                           const char *name, const char *suffix, coffer_err *why)
{
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "SourceRegion", own_region, "AccountId", account, "Name",
                             name, "Suffix", suffix);
    json_t *ans = NULL;
    coffer_err rc = body == NULL ? sm_oom()
                    : s->kms == NULL
                        ? coffer_fail(COFFER_ERR_UNAVAILABLE, "no peer regions")
                        : s->kms->peer_call(s->kms->svc, region, "secretsmanager",
                                            "secretsmanager.CofferRemoveReplicaSecret", body, &ans);
    *why = rc;
    if (rc != COFFER_OK) {
        log_warn("secretsmanager: the replica of %s in %s not deleted yet: %s", name, region,
                 coffer_last_message());
        coffer_clear_err();
    }
    json_decref(body);
    json_decref(ans);
    return rc == COFFER_OK;
}

struct removals {
    int64_t now_ms;
    json_t *due; /* [[key, value]...] */
};

static coffer_err removal_due(void *ctx, const char *key, coffer_cursor value)
{
    struct removals *m = ctx;
    json_t *v = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    if (v != NULL && sm_int(v, "NotBefore") <= m->now_ms &&
        json_array_append_new(m->due, json_pack("[s, o]", key, v)) != 0) {
        return sm_oom();
    }
    if (v != NULL && sm_int(v, "NotBefore") > m->now_ms) {
        json_decref(v);
    }
    return json_array_size(m->due) >= SM_REPLICATION_BATCH ? STORE_SCAN_STOP : COFFER_OK;
}

/* One pending deletion: dropped when the secret lists the region again (its push owns the
 * replica now) or the region confirms; else due again SM_REPLICATION_RETRY_MS later. */
static coffer_err removal_one(struct sm *s, struct push_run *run, const char *key, json_t *v, int64_t now_ms)
{
    const char *replica = key + strlen(SM_REMOVAL_PREFIX);
    const char *slash = strchr(replica, '/');
    const char *name = sm_str(v, "Name"), *suffix = sm_str(v, "Suffix"), *own = sm_str(v, "Region");
    const char *account = sm_str(v, "Account");
    char region[SM_REGION_MAX + 1];
    struct sm_secret sec = {0};
    if (slash == NULL || (size_t)(slash - replica) > SM_REGION_MAX || name == NULL || suffix == NULL ||
        own == NULL || account == NULL) {
        return removal_settle(s, key, v, 0); /* not one we wrote */
    }
    memcpy(region, replica, (size_t)(slash - replica));
    region[slash - replica] = '\0';
    TRY(sm_load_key(s, slash + 1, &sec));
    bool listed = sec.rec != NULL && strcmp(sm_str(sec.rec, "Suffix"), suffix) == 0 &&
                  replica_entry(json_object_get(sec.rec, "ReplicationStatus"), region) != NULL;
    sm_secret_free(&sec);
    if (listed) {
        return removal_settle(s, key, v, 0);
    }
    coffer_err why = COFFER_OK;
    if (run_down(run, region) == NULL && replica_delete(s, region, own, account, name, suffix, &why)) {
        return removal_settle(s, key, v, 0);
    }
    if (why == COFFER_ERR_UNAVAILABLE && run->n_down < SM_DOWN_MAX) {
        coffer_str_copy(run->down[run->n_down], sizeof(run->down[0]), region);
        snprintf(run->why[run->n_down], sizeof(run->why[0]), "Region %s is unavailable.", region);
        run->n_down++;
    }
    return removal_settle(s, key, v, now_ms + SM_REPLICATION_RETRY_MS);
}

/* The run's part for pending deletions of replicas. */
static coffer_err removal_job(struct sm *s, struct push_run *run, int64_t now_ms)
{
    struct removals m = {.now_ms = now_ms, .due = json_array()};
    if (m.due == NULL) {
        return sm_oom();
    }
    coffer_err rc = store_scan(s->st, SM_REMOVAL_PREFIX, NULL, 0, removal_due, &m);
    size_t i;
    const json_t *e;
    json_array_foreach(m.due, i, e)
    {
        if (rc != COFFER_OK || sm_rotor_stopping(s)) {
            break;
        }
        rc = removal_one(s, run, json_string_value(json_array_get(e, 0)), json_array_get(e, 1), now_ms);
        if (rc == COFFER_ERR_STORE) {
            coffer_clear_err(); /* written meanwhile: the next run settles it */
            rc = COFFER_OK;
        }
    }
    json_decref(m.due);
    return rc;
}

struct marked {
    int64_t now_ms;
    json_t *keys; /* record keys due */
};

static coffer_err marked_one(void *ctx, const char *key, coffer_cursor value)
{
    struct marked *m = ctx;
    json_t *v = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    int64_t after = sm_int(v, "NotBefore");
    json_decref(v);
    if (after <= m->now_ms &&
        json_array_append_new(m->keys, json_string(key + strlen(SM_REPLICATION_PREFIX))) != 0) {
        return sm_oom();
    }
    return json_array_size(m->keys) >= SM_REPLICATION_BATCH ? STORE_SCAN_STOP : COFFER_OK;
}

coffer_err sm_replication_job(void *ctx, int64_t now_ms)
{
    struct sm *s = ctx;
    struct marked m = {.now_ms = now_ms, .keys = json_array()};
    struct push_run run = {0};
    if (m.keys == NULL) {
        return sm_oom();
    }
    coffer_err rc = store_scan(s->st, SM_REPLICATION_PREFIX, NULL, 0, marked_one, &m);
    size_t i;
    const json_t *k;
    json_array_foreach(m.keys, i, k)
    {
        if (rc != COFFER_OK || sm_rotor_stopping(s)) {
            break;
        }
        rc = push_secret(s, &run, json_string_value(k), now_ms);
        if (rc == COFFER_ERR_STORE) {
            /* changed under us: the next run pushes the newer record */
            coffer_clear_err();
            rc = COFFER_OK;
        }
    }
    json_decref(m.keys);
    if (rc == COFFER_OK && !sm_rotor_stopping(s)) {
        rc = removal_job(s, &run, now_ms);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The AWS operations                                                                         */

coffer_err sm_op_ReplicateSecretToRegions(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    bool force = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_bool(&in, "ForceOverwriteReplicaSecret", false, &force));
    TRY(api_in_done(&in));
    const json_t *list = json_object_get(call->input, "AddReplicaRegions");
    TRY(sm_replicas_parse(s, call, list, true));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "ReplicateSecretToRegions", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    TRY_OUT(sm_replicas_add(&sec, list, force, call->region));
    TRY_OUT(sm_save(s, &sec, 0));
    json_t *status = sm_replication_status(sec.rec);
    call->output =
        status != NULL ? json_pack("{s:s, s:o}", "ARN", sec.arn, "ReplicationStatus", status) : NULL;
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_RemoveRegionsFromReplication(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    const json_t *regions = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string_list(&in, "RemoveReplicaRegions", API_IN_REQUIRED, 1, 100, 1, 128, &regions));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    bool locked = true;
    char name[SM_NAME_MAX + 1], suffix[SM_SUFFIX_LEN + 1];
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "RemoveRegionsFromReplication", &sec));
    TRY_OUT(sm_check_writable(&sec));
    json_t *status = json_object_get(sec.rec, "ReplicationStatus");
    size_t i;
    const json_t *r;
    json_array_foreach(regions, i, r)
    {
        json_t *e = replica_entry(status, json_string_value(r));
        if (e == NULL) {
            FAIL_OUT(COFFER_ERR_INVALID_PARAMETER,
                     "Invalid replica region: the secret is not replicated to %s.", json_string_value(r));
        }
        size_t j;
        json_t *x;
        json_array_foreach(status, j, x)
        {
            if (x == e) {
                json_array_remove(status, j);
                break;
            }
        }
    }
    if (json_array_size(status) == 0) {
        json_object_del(sec.rec, "ReplicationStatus");
        json_object_del(sec.rec, "PrimaryRegion");
    }
    /* kept until each region confirms; a save that fails leaves the regions listed, and the job
     * drops a pending deletion of a region its secret lists */
    TRY_OUT(removal_record(s, &sec, regions, call->now_ms + SM_REPLICATION_RETRY_MS));
    TRY_OUT(sm_save(s, &sec, 0));
    json_t *left = sm_replication_status(sec.rec);
    call->output = left != NULL ? json_pack("{s:s, s:o}", "ARN", sec.arn, "ReplicationStatus", left) : NULL;
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_str_copy(name, sizeof(name), sec.name);
    coffer_str_copy(suffix, sizeof(suffix), sm_str(sec.rec, "Suffix"));
    pthread_mutex_unlock(&s->wmu);
    locked = false;
    /* replicas are deleted at once, as in AWS; no lock across the network */
    json_array_foreach(regions, i, r)
    {
        coffer_err why;
        char key[SM_KEY_MAX + SM_REGION_MAX + 32];
        if (replica_delete(s, json_string_value(r), call->region, sec.account, name, suffix, &why)) {
            removal_key(json_string_value(r), sec.key, key, sizeof(key));
            if (removal_settle(s, key, NULL, 0) != COFFER_OK) {
                coffer_clear_err(); /* the job asks again: the deletion is idempotent */
            }
        }
    }
out:
    if (locked) {
        pthread_mutex_unlock(&s->wmu);
    }
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_StopReplicationToReplica(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    char primary[SM_REGION_MAX + 1];
    pthread_mutex_lock(&s->wmu);
    rc = sm_resolve(s, NULL, call, id, &sec);
    if (rc == COFFER_OK) {
        rc = sm_authorize(s, call, "StopReplicationToReplica", &sec);
    }
    if (rc == COFFER_OK && !sm_is_replica(&sec)) {
        rc = coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                         "StopReplicationToReplica is permitted on a replica secret only: %s is not one.",
                         sec.arn);
    }
    if (rc == COFFER_OK) {
        coffer_str_copy(primary, sizeof(primary), sm_str(sec.rec, "PrimaryRegion"));
        json_object_del(sec.rec, "PrimaryRegion");
        rc = sm_save(s, &sec, 0);
    }
    pthread_mutex_unlock(&s->wmu);
    TRY_OUT(rc);
    if ((call->output = json_pack("{s:s}", "ARN", sec.arn)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    /* The primary drops this region now if it can be reached; otherwise its next push learns
     * that the copy here is standalone (CofferSyncSecret answers Detached). */
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "SourceRegion", call->region, "AccountId", sec.account,
                             "Name", sec.name, "Suffix", sm_str(sec.rec, "Suffix"));
    json_t *ans = NULL;
    if (body != NULL && s->kms != NULL &&
        s->kms->peer_call(s->kms->svc, primary, "secretsmanager", "secretsmanager.CofferReplicaPromoted",
                          body, &ans) != COFFER_OK) {
        log_warn("secretsmanager: %s promoted; its primary region %s not told yet: %s", sec.arn, primary,
                 coffer_last_message());
        coffer_clear_err();
    }
    json_decref(body);
    json_decref(ans);
out:
    sm_secret_free(&sec);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Coffer's operations, served to peers                                                       */

/* The request members the trail keeps of a Coffer operation (never the sealed values). */
static void peer_audit(struct api_call *call, const char *name)
{
    const char *source = sm_str(call->input, "SourceRegion");
    call->audit_request = json_pack("{s:s?, s:s?}", "sourceRegion", source, "name", name);
    call->audit_incomplete = call->audit_request == NULL;
}

/* The secret the call is about, named as the trail names resources (its owner's account). */
static void peer_audit_resource(struct api_call *call, const char *account, const char *arn)
{
    json_t *r =
        json_pack("{s:s, s:s, s:s}", "accountId", account, "type", "AWS::SecretsManager::Secret", "ARN", arn);
    if (r == NULL || (call->audit_resources == NULL && (call->audit_resources = json_array()) == NULL) ||
        json_array_append_new(call->audit_resources, r) != 0) {
        call->audit_incomplete = true;
    }
}

/* The caller is the replication principal of `source`, `name`/`suffix` are well formed and
 * `account` (where the call acts) is the one it names, or the caller's own when it names none.
 * An account named that does not exist here: COFFER_ERR_NOT_FOUND. */
static coffer_err peer_request(const struct sm *s, struct api_call *call, const char **source,
                               const char **name, const char **suffix, bool need_suffix,
                               char account[API_ACCOUNT_ID_LEN + 1])
{
    const char *named = sm_str(call->input, "AccountId");
    *source = sm_str(call->input, "SourceRegion");
    *name = sm_str(call->input, "Name");
    *suffix = sm_str(call->input, "Suffix");
    peer_audit(call, *name);
    if (s->kms == NULL) {
        return coffer_fail(COFFER_ERR_ACCESS_DENIED,
                           "User: %s is not authorized to perform: secretsmanager:%s",
                           call->caller->principal_arn, call->operation);
    }
    TRY(s->kms->peer_caller_check(s->kms->svc, call, *source, "secretsmanager"));
    if (*name == NULL || sm_name_check(*name) != COFFER_OK ||
        (need_suffix && (*suffix == NULL || strlen(*suffix) != SM_SUFFIX_LEN))) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER, "malformed replication request");
    }
    if (named != NULL && strcmp(named, call->caller->account_id) != 0 &&
        !authz_account_exists(s->az, named)) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "Account %.12s does not exist in region %s.", named,
                           call->region);
    }
    coffer_str_copy(account, API_ACCOUNT_ID_LEN + 1, named != NULL ? named : call->caller->account_id);
    return COFFER_OK;
}

/* The versions of the replica record `rec` from the shared list: a version this region already
 * encrypted under `key_id` keeps its ciphertext, any other gets its value from the box; one
 * with a value that is in neither is left out and its VersionId appended to `missing`. */
static coffer_err replica_versions(const struct sm *s, const struct api_call *owner_call,
                                   struct sm_secret *sec, const json_t *old, const json_t *shared,
                                   coffer_cursor plain, const char *key_id, json_t *missing)
{
    json_t *versions = json_object_get(sec->rec, "Versions");
    const char *old_key = sm_str(old, "KmsKeyId");
    bool same_key = old != NULL && ((old_key == NULL && key_id == NULL) ||
                                    (old_key != NULL && key_id != NULL && strcmp(old_key, key_id) == 0));
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(shared, "Versions"), i, v)
    {
        const char *vid = sm_str(v, "VersionId");
        const json_t *stages = json_object_get(v, "Stages");
        if (vid == NULL || strlen(vid) > 64 || !json_is_array(stages)) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER, "malformed replication request");
        }
        json_t *mine = same_key ? sm_version_find(json_object_get(old, "Versions"), vid) : NULL;
        json_t *ver = NULL;
        coffer_cursor value;
        bool binary = false;
        if (mine != NULL && sm_str(mine, "Data") != NULL) {
            ver = json_deep_copy(mine);
            if (ver == NULL || json_object_set(ver, "Stages", (json_t *)stages) != 0) {
                json_decref(ver);
                return sm_oom();
            }
        } else {
            ver = json_pack("{s:s, s:O, s:O}", "VersionId", vid, "Stages", stages, "CreatedDate",
                            json_object_get(v, "CreatedDate"));
            if (ver == NULL) {
                return sm_oom();
            }
            if (values_find(plain, vid, &value, &binary)) {
                coffer_err rc = sm_value_seal(s, owner_call, sec, key_id, value, binary, ver);
                if (rc != COFFER_OK) {
                    json_decref(ver);
                    return rc;
                }
            } else if (json_is_true(json_object_get(v, "HasValue"))) {
                /* not here and not in this box: left out until a later round brings it */
                json_decref(ver);
                if (json_array_append_new(missing, json_string(vid)) != 0) {
                    return sm_oom();
                }
                continue;
            }
        }
        if (json_array_append_new(versions, ver) != 0) {
            return sm_oom();
        }
    }
    return COFFER_OK;
}

coffer_err sm_op_CofferSyncSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    const char *source = NULL, *name = NULL, *suffix_unused = NULL;
    struct sm_secret sec = {0};
    coffer_buf box, plain;
    coffer_buf_init(&box, false);
    coffer_buf_init(&plain, true);
    json_t *old = NULL, *missing = NULL, *have = NULL;
    bool locked = false;
    coffer_err rc = COFFER_OK;
    char acct[API_ACCOUNT_ID_LEN + 1];
    rc = peer_request(s, call, &source, &name, &suffix_unused, false, acct);
    if (rc == COFFER_ERR_NOT_FOUND) {
        /* the primary shows it as the replica's status, as it shows a name taken there */
        char why[256];
        snprintf(why, sizeof(why), "Replication failed: %s", coffer_last_message());
        coffer_clear_err();
        call->output = json_pack("{s:s, s:s}", "Status", "Failed", "StatusMessage", why);
        return call->output != NULL ? COFFER_OK : sm_oom();
    }
    TRY(rc);
    const json_t *shared = json_object_get(call->input, "Secret");
    const char *suffix = sm_str(shared, "Suffix");
    const char *wrapped = sm_str(call->input, "WrappedValues");
    const json_t *key = json_object_get(call->input, "KmsKeyId");
    const char *key_id = json_is_string(key) && json_string_length(key) > 0 ? json_string_value(key) : NULL;
    bool force = json_is_true(json_object_get(call->input, "ForceOverwriteReplicaSecret"));
    if (!json_is_object(shared) || suffix == NULL || strlen(suffix) != SM_SUFFIX_LEN || wrapped == NULL ||
        sm_str(shared, "Name") == NULL || strcmp(sm_str(shared, "Name"), name) != 0 ||
        !json_is_array(json_object_get(shared, "Versions")) ||
        coffer_b64_decode(coffer_cursor_from_str(wrapped), &box) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_INVALID_PARAMETER, "malformed replication request");
    }
    char aad[SM_BOX_AAD_MAX];
    box_aad(aad, acct, name, suffix, call->region);
    TRY_OUT(
        s->kms->replication_open(s->kms->svc, coffer_cursor_from_str(aad), coffer_buf_cursor(&box), &plain));
    pthread_mutex_lock(&s->wmu);
    locked = true;
    char rkey[SM_KEY_MAX];
    sm_record_key(acct, call->region, name, rkey, sizeof(rkey));
    char arn[SM_ARN_MAX];
    sm_secret_arn(call->region, acct, name, suffix, arn, sizeof(arn));
    peer_audit_resource(call, acct, arn);
    TRY_OUT(sm_load_key(s, rkey, &sec));
    int64_t old_deletion = 0;
    if (sec.rec != NULL) {
        bool same_secret = strcmp(sm_str(sec.rec, "Suffix"), suffix) == 0;
        const char *primary = sm_str(sec.rec, "PrimaryRegion");
        if (same_secret && primary == NULL) {
            /* promoted here (StopReplicationToReplica): no longer the primary's to change */
            call->output = json_pack("{s:s}", "Status", "Detached");
            rc = call->output != NULL ? COFFER_OK : sm_oom();
            goto out;
        }
        if (!(same_secret && strcmp(primary, source) == 0) && !force) {
            call->output = json_pack("{s:s, s:s}", "Status", "Failed", "StatusMessage",
                                     "Replication failed: Secret name already exists in Region. Use "
                                     "ForceOverwriteReplicaSecret to overwrite it.");
            rc = call->output != NULL ? COFFER_OK : sm_oom();
            goto out;
        }
        old_deletion = sm_int(sec.rec, "DeletionDate");
        old = sec.rec;
        sec.rec = NULL;
        if (!same_secret) {
            json_decref(old); /* overwritten: nothing of the other secret is kept */
            old = NULL;
        }
    } else {
        coffer_str_copy(sec.account, sizeof(sec.account), acct);
        coffer_str_copy(sec.region, sizeof(sec.region), call->region);
        coffer_str_copy(sec.name, sizeof(sec.name), name);
        coffer_str_copy(sec.key, sizeof(sec.key), rkey);
    }
    sm_secret_arn(sec.region, sec.account, name, suffix, sec.arn, sizeof(sec.arn));
    sec.rec =
        json_pack("{s:s, s:s, s:O, s:O, s:[], s:[], s:s}", "Name", name, "Suffix", suffix, "CreatedDate",
                  json_object_get(shared, "CreatedDate"), "LastChangedDate",
                  json_object_get(shared, "LastChangedDate"), "Tags", "Versions", "PrimaryRegion", source);
    if (sec.rec == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    static const char *const copied[] = {"Description", "Tags", "ResourcePolicy", NULL};
    for (const char *const *m = copied; *m != NULL; m++) {
        json_t *v = json_object_get(shared, *m);
        if (v != NULL && json_object_set(sec.rec, *m, v) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if ((key_id != NULL && json_object_set_new(sec.rec, "KmsKeyId", json_string(key_id)) != 0) ||
        (old != NULL && json_object_get(old, "LastAccessedDate") != NULL &&
         json_object_set(sec.rec, "LastAccessedDate", json_object_get(old, "LastAccessedDate")) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    struct api_caller owner;
    owner_caller(acct, &owner);
    struct api_call owner_call = *call;
    owner_call.caller = &owner;
    if ((missing = json_array()) == NULL || (have = json_array()) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(replica_versions(s, &owner_call, &sec, old, shared, coffer_buf_cursor(&plain), key_id, missing));
    /* saved even when values are missing: the next round builds on what this one brought */
    sec.push = SM_PUSH_LEAVE;
    TRY_OUT(sm_save(s, &sec, old_deletion));
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(sec.rec, "Versions"), i, v)
    {
        if (sm_str(v, "Data") != NULL &&
            json_array_append_new(have, json_string(sm_str(v, "VersionId"))) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    call->output = json_array_size(missing) > 0
                       ? json_pack("{s:s, s:s, s:O}", "Status", "Missing", "ARN", sec.arn, "Missing", missing)
                       : json_pack("{s:s, s:s, s:O}", "Status", "InSync", "ARN", sec.arn, "Have", have);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    if (locked) {
        pthread_mutex_unlock(&s->wmu);
    }
    json_decref(old);
    json_decref(missing);
    json_decref(have);
    sm_secret_free(&sec);
    coffer_buf_free(&box);
    coffer_buf_free(&plain);
    return rc;
}

coffer_err sm_op_CofferRemoveReplicaSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    const char *source = NULL, *name = NULL, *suffix = NULL;
    struct sm_secret sec = {0};
    char acct[API_ACCOUNT_ID_LEN + 1], arn[SM_ARN_MAX];
    TRY(peer_request(s, call, &source, &name, &suffix, true, acct));
    char rkey[SM_KEY_MAX];
    sm_record_key(acct, call->region, name, rkey, sizeof(rkey));
    sm_secret_arn(call->region, acct, name, suffix, arn, sizeof(arn));
    peer_audit_resource(call, acct, arn);
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_load_key(s, rkey, &sec));
    /* only the replica this primary made: a standalone secret or another's replica stays */
    if (sec.rec != NULL && strcmp(sm_str(sec.rec, "Suffix"), suffix) == 0 &&
        sm_str(sec.rec, "PrimaryRegion") != NULL && strcmp(sm_str(sec.rec, "PrimaryRegion"), source) == 0) {
        int64_t old = sm_int(sec.rec, "DeletionDate");
        json_decref(sec.rec);
        sec.rec = NULL;
        TRY_OUT(sm_save(s, &sec, old));
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_op_CofferReplicaPromoted(void *state, struct api_call *call)
{
    struct sm *s = state;
    const char *source = NULL, *name = NULL, *suffix = NULL;
    struct sm_secret sec = {0};
    char acct[API_ACCOUNT_ID_LEN + 1], arn[SM_ARN_MAX];
    TRY(peer_request(s, call, &source, &name, &suffix, true, acct));
    char rkey[SM_KEY_MAX];
    sm_record_key(acct, call->region, name, rkey, sizeof(rkey));
    sm_secret_arn(call->region, acct, name, suffix, arn, sizeof(arn));
    peer_audit_resource(call, acct, arn);
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_load_key(s, rkey, &sec));
    json_t *status = json_object_get(sec.rec, "ReplicationStatus");
    json_t *e = replica_entry(status, source);
    if (sec.rec == NULL || e == NULL || strcmp(sm_str(sec.rec, "Suffix"), suffix) != 0) {
        goto out;
    }
    size_t j;
    json_t *x;
    json_array_foreach(status, j, x)
    {
        if (x == e) {
            json_array_remove(status, j);
            break;
        }
    }
    if (json_array_size(status) == 0) {
        json_object_del(sec.rec, "ReplicationStatus");
        json_object_del(sec.rec, "PrimaryRegion");
    }
    sec.push = SM_PUSH_LEAVE;
    TRY_OUT(sm_save(s, &sec, sm_int(sec.rec, "DeletionDate")));
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}
