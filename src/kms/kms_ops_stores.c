/*
 * Custom key stores: CreateCustomKeyStore, ConnectCustomKeyStore, DisconnectCustomKeyStore,
 * DeleteCustomKeyStore, DescribeCustomKeyStores and UpdateCustomKeyStore. A key store here is
 * a PKCS#11 token the operator maps to a CloudHSM cluster id in the configuration
 * (--hsm-cluster, kms.h struct kms_hsm_cluster); kms_cks.c holds the connections and does the
 * token's work. External key stores (an XKS proxy) are not served. All of these operations are
 * authorized on "*" by identity policies only, as in AWS.
 *
 * Store record (kms/cks/<acct>/<region>/<id>, version 1): Version, CustomKeyStoreId,
 * CustomKeyStoreName, CustomKeyStoreType, CloudHsmClusterId, TrustAnchorCertificate,
 * CreationDate (ms), AWSAccountId, Region, ConnectionState (CONNECTED, DISCONNECTED or FAILED:
 * what the store was last asked to be, or why it could not), ConnectionErrorCode (FAILED only),
 * PasswordSalt and PasswordHash (a salted HMAC of the kmsuser password, which is the token's
 * PIN; the password itself is neither kept nor logged nor audited).
 *
 * Every change runs under the service's write mutex, so the connection state and the record
 * move together and two changes of one store never interleave.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

#define CKS_RECORD_VERSION 1
#define CKS_DESCRIBE_LIMIT_DEFAULT 1000

static coffer_err store_op_begin(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                 const char *action, const char *const *audit, struct kms_req *r)
{
    kms_audit_request(call, audit);
    TRY(kms_req_decode(op, call->input, r));
    return kms_authorize_plain(svc, call, action, "*", r);
}

static coffer_err store_not_found(void)
{
    return coffer_fail(COFFER_ERR_CUSTOM_KEY_STORE_NOT_FOUND, "%s",
                       coffer_err_default_message(COFFER_ERR_CUSTOM_KEY_STORE_NOT_FOUND));
}

static const char *rec_str(const json_t *rec, const char *name)
{
    const char *v = json_string_value(json_object_get(rec, name));
    return v != NULL ? v : "";
}

coffer_err kms_cks_record_get(struct kms_service *svc, const char *acct, const char *region, const char *id,
                              json_t **out)
{
    char skey[STORE_KEY_BUF];
    coffer_buf val = COFFER_BUF_INIT;
    *out = NULL;
    if (strlen(id) != KMS_CKS_ID_LEN || strchr(id, '/') != NULL) {
        return store_not_found();
    }
    kms_cks_store_key(skey, sizeof(skey), acct, region, id);
    coffer_err rc = store_get(svc->st, skey, &val);
    if (rc == COFFER_ERR_NOT_FOUND) {
        return store_not_found();
    }
    if (rc == COFFER_OK && (*out = json_loadb((const char *)val.data, val.len, 0, NULL)) == NULL) {
        rc = coffer_fail(COFFER_ERR_STORE, "corrupt custom key store record");
    }
    coffer_buf_free(&val);
    return rc;
}

/* Writes a store record (wmu held). */
static coffer_err record_put(struct kms_service *svc, const json_t *rec)
{
    char skey[STORE_KEY_BUF];
    store_txn *t = NULL;
    kms_cks_store_key(skey, sizeof(skey), rec_str(rec, "AWSAccountId"), rec_str(rec, "Region"),
                      rec_str(rec, "CustomKeyStoreId"));
    TRY(store_txn_begin(svc->st, &t));
    coffer_err rc = kms_txn_put_json(t, skey, rec);
    if (rc != COFFER_OK) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t);
}

/* Records the connection state (and its error code, "" for none) in rec and the store. */
static coffer_err record_state(struct kms_service *svc, json_t *rec, const char *state, const char *code)
{
    if (json_object_set_new(rec, "ConnectionState", json_string(state)) != 0) {
        return kms_nomem();
    }
    json_object_del(rec, "ConnectionErrorCode");
    if (code[0] != '\0' && json_object_set_new(rec, "ConnectionErrorCode", json_string(code)) != 0) {
        return kms_nomem();
    }
    return record_put(svc, rec);
}

/* Every store record (all accounts: a cluster serves one store only), in key order. */
static coffer_err all_cb(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_STORE, "corrupt custom key store record");
    }
    return json_array_append_new(ctx, rec) == 0 ? COFFER_OK : kms_nomem();
}

static coffer_err records_load(struct kms_service *svc, const char *prefix, json_t **out)
{
    json_t *all = json_array();
    if (all == NULL) {
        return kms_nomem();
    }
    coffer_err rc = store_scan(svc->st, prefix, NULL, 0, all_cb, all);
    if (rc != COFFER_OK) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return COFFER_OK;
}

static bool same_account(const json_t *rec, const struct api_call *call)
{
    return strcmp(rec_str(rec, "AWSAccountId"), call->caller->account_id) == 0 &&
           strcmp(rec_str(rec, "Region"), call->region) == 0;
}

/* Two mappings of one token are one cluster (the keys of a store are in its token). */
static bool same_token(const struct kms_hsm_cluster *a, const struct kms_hsm_cluster *b)
{
    return a != NULL && b != NULL && strcmp(a->module, b->module) == 0 && strcmp(a->token, b->token) == 0 &&
           (a->token[0] != '\0' || a->slot == b->slot);
}

/*
 * The checks of a store's name and cluster against every other store (all but `self`, which may
 * be NULL): name unique in the account and Region, cluster (or its token) not used by another.
 */
static coffer_err check_others(struct kms_service *svc, const struct api_call *call, const char *self,
                               const char *name, const char *cluster_id, size_t *count)
{
    json_t *all = NULL;
    coffer_err rc = COFFER_OK;
    const struct kms_hsm_cluster *mine = kms_cks_cluster(svc->cks, cluster_id);
    TRY(records_load(svc, KMS_CKS_PREFIX, &all));
    *count = 0;
    size_t i;
    const json_t *rec;
    json_array_foreach(all, i, rec)
    {
        if (self != NULL && strcmp(rec_str(rec, "CustomKeyStoreId"), self) == 0) {
            continue;
        }
        if (same_account(rec, call)) {
            (*count)++;
            if (name != NULL && strcmp(rec_str(rec, "CustomKeyStoreName"), name) == 0) {
                FAIL_OUT(COFFER_ERR_CUSTOM_KEY_STORE_NAME_IN_USE, "%s",
                         coffer_err_default_message(COFFER_ERR_CUSTOM_KEY_STORE_NAME_IN_USE));
            }
        }
        const char *other = rec_str(rec, "CloudHsmClusterId");
        if (cluster_id != NULL &&
            (strcmp(other, cluster_id) == 0 || same_token(mine, kms_cks_cluster(svc->cks, other)))) {
            FAIL_OUT(COFFER_ERR_CLOUDHSM_CLUSTER_IN_USE, "%s",
                     coffer_err_default_message(COFFER_ERR_CLOUDHSM_CLUSTER_IN_USE));
        }
    }
out:
    json_decref(all);
    return rc;
}

static coffer_err cluster_not_found(void)
{
    return coffer_fail(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_FOUND, "%s",
                       coffer_err_default_message(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_FOUND));
}

static coffer_err invalid_state(const char *id, enum kms_cks_state s, const char *valid)
{
    return coffer_fail(
        COFFER_ERR_CUSTOM_KEY_STORE_INVALID_STATE,
        "Custom key store %s has ConnectionState %s: this operation is valid only when it is %s.", id,
        kms_cks_state_name(s), valid);
}

/* "cks-" and 17 hex digits, as AWS's ids. */
static coffer_err new_store_id(char out[KMS_CKS_ID_LEN + 1])
{
    uint8_t rnd[9];
    char hex[2 * sizeof(rnd) + 1];
    TRY(crypto_random(rnd, sizeof(rnd)));
    coffer_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(out, KMS_CKS_ID_LEN + 1, "cks-%.17s", hex);
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* CreateCustomKeyStore                                                                       */
/* ------------------------------------------------------------------------------------------ */

static coffer_err create_check(const struct kms_service *svc, const struct kms_req *r)
{
    if (r->custom_key_store_type == 1) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "External key stores (EXTERNAL_KEY_STORE) are not supported by this server.");
    }
    if (r->cloud_hsm_cluster_id == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "CloudHsmClusterId is required for a custom key store of type AWS_CLOUDHSM.");
    }
    if (r->trust_anchor_certificate == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "TrustAnchorCertificate is required for a custom key store of type AWS_CLOUDHSM.");
    }
    if (r->key_store_password == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "KeyStorePassword is required for a custom key store of type AWS_CLOUDHSM.");
    }
    if (kms_cks_cluster(svc->cks, r->cloud_hsm_cluster_id) == NULL) {
        return cluster_not_found();
    }
    return COFFER_OK;
}

coffer_err kms_op_CreateCustomKeyStore(void *state, struct api_call *call)
{
    /* Never the password or the proxy credential: they are sensitive members. */
    static const char *const audit[] = {
        "CustomKeyStoreName",  "CloudHsmClusterId", "TrustAnchorCertificate", "CustomKeyStoreType",
        "XksProxyUriEndpoint", "XksProxyUriPath",   "XksProxyConnectivity",   NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *rec = NULL;
    char id[KMS_CKS_ID_LEN + 1];
    size_t count = 0;
    bool locked = false;
    coffer_err rc = COFFER_OK;
    TRY(store_op_begin(svc, call, KMS_OP_CreateCustomKeyStore, "kms:CreateCustomKeyStore", audit, &r));
    TRY_OUT(create_check(svc, &r));
    kms_write_begin(svc);
    locked = true;
    TRY_OUT(check_others(svc, call, NULL, r.custom_key_store_name, r.cloud_hsm_cluster_id, &count));
    if (count >= KMS_CKS_PER_ACCOUNT_MAX) {
        FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED, "This account already has %d custom key stores in this Region.",
                 KMS_CKS_PER_ACCOUNT_MAX);
    }
    TRY_OUT(new_store_id(id));
    rec = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "Version", CKS_RECORD_VERSION,
                    "CustomKeyStoreId", id, "CustomKeyStoreName", r.custom_key_store_name,
                    "CustomKeyStoreType", "AWS_CLOUDHSM", "CloudHsmClusterId", r.cloud_hsm_cluster_id,
                    "TrustAnchorCertificate", r.trust_anchor_certificate, "CreationDate",
                    (json_int_t)kms_call_now_ms(call), "AWSAccountId", call->caller->account_id, "Region",
                    call->region, "ConnectionState", "DISCONNECTED");
    if (rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_cks_password_set(rec, r.key_store_password));
    TRY_OUT(record_put(svc, rec));
    TRY_OUT(kms_cks_note(svc->cks, id, rec));
    call->output = json_pack("{s:s}", "CustomKeyStoreId", id);
    call->audit_response = json_pack("{s:s}", "customKeyStoreId", id);
    if (call->output == NULL) {
        rc = kms_nomem();
    }
out:
    if (locked) {
        kms_write_release(svc);
    }
    json_decref(rec);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Connect, disconnect, delete                                                                */
/* ------------------------------------------------------------------------------------------ */

static const char *const audit_store_id[] = {"CustomKeyStoreId", NULL};

/*
 * The opening of the operations on one store: decode, authorize, take wmu, load the caller's
 * record of r->custom_key_store_id into *rec and its state into *st. On failure nothing is held.
 */
static coffer_err store_write_begin(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                    const char *action, const char *const *audit, struct kms_req *r,
                                    json_t **rec, enum kms_cks_state *st)
{
    char code[KMS_CKS_ERROR_CODE_MAX];
    TRY(store_op_begin(svc, call, op, action, audit, r));
    kms_write_begin(svc);
    coffer_err rc =
        kms_cks_record_get(svc, call->caller->account_id, call->region, r->custom_key_store_id, rec);
    if (rc != COFFER_OK) {
        kms_write_release(svc);
        kms_req_clean(r);
        return rc;
    }
    *st = kms_cks_state_of(svc->cks, r->custom_key_store_id, *rec, code, sizeof(code));
    return COFFER_OK;
}

static coffer_err store_write_end(struct kms_service *svc, struct api_call *call, coffer_err rc, json_t *rec,
                                  struct kms_req *r)
{
    kms_write_release(svc);
    json_decref(rec);
    kms_req_clean(r);
    if (rc == COFFER_OK && (call->output = json_object()) == NULL) {
        rc = kms_nomem();
    }
    return rc;
}

coffer_err kms_op_ConnectCustomKeyStore(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *rec = NULL;
    enum kms_cks_state st;
    char code[KMS_CKS_ERROR_CODE_MAX];
    TRY(store_write_begin(svc, call, KMS_OP_ConnectCustomKeyStore, "kms:ConnectCustomKeyStore",
                          audit_store_id, &r, &rec, &st));
    coffer_err rc = COFFER_OK;
    if (st == KMS_CKS_FAILED) {
        /* As AWS: a FAILED store is disconnected first, which clears its error. */
        rc = invalid_state(r.custom_key_store_id, st, "not FAILED (disconnect it first)");
    } else if (st != KMS_CKS_CONNECTED) {
        /* The answer is 200 either way, as AWS's (asynchronous) connect: the outcome is the
         * ConnectionState and ConnectionErrorCode DescribeCustomKeyStores reports. */
        bool ok = kms_cks_connect(svc->cks, r.custom_key_store_id, rec, code, sizeof(code)) == COFFER_OK;
        rc = record_state(svc, rec, ok ? "CONNECTED" : "FAILED", ok ? "" : code);
    }
    return store_write_end(svc, call, rc, rec, &r);
}

coffer_err kms_op_DisconnectCustomKeyStore(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *rec = NULL;
    enum kms_cks_state st;
    TRY(store_write_begin(svc, call, KMS_OP_DisconnectCustomKeyStore, "kms:DisconnectCustomKeyStore",
                          audit_store_id, &r, &rec, &st));
    coffer_err rc = COFFER_OK;
    if (st == KMS_CKS_DISCONNECTED) {
        rc = invalid_state(r.custom_key_store_id, st, "not DISCONNECTED");
    } else {
        kms_cks_disconnect(svc->cks, r.custom_key_store_id, rec);
        rc = record_state(svc, rec, "DISCONNECTED", "");
    }
    return store_write_end(svc, call, rc, rec, &r);
}

static coffer_err any_cb(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    (void)value;
    *(bool *)ctx = true;
    return STORE_SCAN_STOP;
}

coffer_err kms_op_DeleteCustomKeyStore(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *rec = NULL;
    enum kms_cks_state st;
    char prefix[STORE_KEY_BUF];
    bool has_keys = false;
    store_txn *t = NULL;
    TRY(store_write_begin(svc, call, KMS_OP_DeleteCustomKeyStore, "kms:DeleteCustomKeyStore", audit_store_id,
                          &r, &rec, &st));
    coffer_err rc = COFFER_OK;
    if (st != KMS_CKS_DISCONNECTED) {
        rc = invalid_state(r.custom_key_store_id, st, "DISCONNECTED");
        goto out;
    }
    /* Keys pending deletion count too: they are gone only when their waiting period ends. */
    snprintf(prefix, sizeof(prefix), "%s%s/%s/%s/", KMS_CKS_KEY_PREFIX, call->caller->account_id,
             call->region, r.custom_key_store_id);
    TRY_OUT(store_scan(svc->st, prefix, NULL, 1, any_cb, &has_keys));
    if (has_keys) {
        FAIL_OUT(COFFER_ERR_CUSTOM_KEY_STORE_HAS_CMKS, "%s",
                 coffer_err_default_message(COFFER_ERR_CUSTOM_KEY_STORE_HAS_CMKS));
    }
    kms_cks_store_key(prefix, sizeof(prefix), call->caller->account_id, call->region, r.custom_key_store_id);
    TRY_OUT(store_txn_begin(svc->st, &t));
    TRY_OUT(store_txn_delete(t, prefix));
    rc = store_txn_commit(t);
    t = NULL;
    if (rc == COFFER_OK) {
        kms_cks_forget(svc->cks, r.custom_key_store_id);
    }
out:
    store_txn_abort(t);
    return store_write_end(svc, call, rc, rec, &r);
}

/* ------------------------------------------------------------------------------------------ */
/* UpdateCustomKeyStore                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* A new cluster for a store: mapped, not another store's, and the same token as its own. */
static coffer_err check_new_cluster(struct kms_service *svc, const struct api_call *call, const json_t *rec,
                                    const char *cluster_id)
{
    const struct kms_hsm_cluster *now = kms_cks_cluster(svc->cks, rec_str(rec, "CloudHsmClusterId"));
    const struct kms_hsm_cluster *next = kms_cks_cluster(svc->cks, cluster_id);
    size_t count;
    if (next == NULL) {
        return cluster_not_found();
    }
    if (strcmp(cluster_id, rec_str(rec, "CloudHsmClusterId")) == 0) {
        return COFFER_OK;
    }
    TRY(check_others(svc, call, rec_str(rec, "CustomKeyStoreId"), NULL, cluster_id, &count));
    /* The store's keys are objects of its token: a cluster of another token cannot hold them. */
    if (!same_token(now, next)) {
        return coffer_fail(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_RELATED, "%s",
                           coffer_err_default_message(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_RELATED));
    }
    return COFFER_OK;
}

coffer_err kms_op_UpdateCustomKeyStore(void *state, struct api_call *call)
{
    static const char *const audit[] = {"CustomKeyStoreId",
                                        "NewCustomKeyStoreName",
                                        "CloudHsmClusterId",
                                        "XksProxyUriEndpoint",
                                        "XksProxyUriPath",
                                        "XksProxyConnectivity",
                                        NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *rec = NULL;
    enum kms_cks_state st;
    size_t count;
    TRY(store_write_begin(svc, call, KMS_OP_UpdateCustomKeyStore, "kms:UpdateCustomKeyStore", audit, &r, &rec,
                          &st));
    coffer_err rc = COFFER_OK;
    if (st != KMS_CKS_DISCONNECTED) {
        rc = invalid_state(r.custom_key_store_id, st, "DISCONNECTED");
        goto out;
    }
    if (r.new_custom_key_store_name != NULL) {
        TRY_OUT(check_others(svc, call, r.custom_key_store_id, r.new_custom_key_store_name, NULL, &count));
        if (json_object_set_new(rec, "CustomKeyStoreName", json_string(r.new_custom_key_store_name)) != 0) {
            rc = kms_nomem();
            goto out;
        }
    }
    if (r.cloud_hsm_cluster_id != NULL) {
        TRY_OUT(check_new_cluster(svc, call, rec, r.cloud_hsm_cluster_id));
        if (json_object_set_new(rec, "CloudHsmClusterId", json_string(r.cloud_hsm_cluster_id)) != 0) {
            rc = kms_nomem();
            goto out;
        }
    }
    if (r.key_store_password != NULL) {
        /* Telling the store the kmsuser's new password: checked against the token at connect. */
        TRY_OUT(kms_cks_password_set(rec, r.key_store_password));
    }
    TRY_OUT(record_put(svc, rec));
    TRY_OUT(kms_cks_note(svc->cks, r.custom_key_store_id, rec));
out:
    return store_write_end(svc, call, rc, rec, &r);
}

/* ------------------------------------------------------------------------------------------ */
/* DescribeCustomKeyStores                                                                    */
/* ------------------------------------------------------------------------------------------ */

static json_t *describe_one(struct kms_service *svc, const json_t *rec)
{
    char code[KMS_CKS_ERROR_CODE_MAX];
    const char *id = rec_str(rec, "CustomKeyStoreId");
    enum kms_cks_state st = kms_cks_state_of(svc->cks, id, rec, code, sizeof(code));
    char cluster[KMS_HSM_CLUSTER_ID_MAX + 1];
    coffer_str_copy(cluster, sizeof(cluster), rec_str(rec, "CloudHsmClusterId"));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:s}", "CustomKeyStoreId", id, "CustomKeyStoreName",
                  rec_str(rec, "CustomKeyStoreName"), "CloudHsmClusterId", cluster, "TrustAnchorCertificate",
                  rec_str(rec, "TrustAnchorCertificate"), "ConnectionState", kms_cks_state_name(st),
                  "CreationDate", (double)json_integer_value(json_object_get(rec, "CreationDate")) / 1000.0,
                  "CustomKeyStoreType", rec_str(rec, "CustomKeyStoreType"));
    if (o != NULL && st == KMS_CKS_FAILED && code[0] != '\0' &&
        json_object_set_new(o, "ConnectionErrorCode", json_string(code)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

coffer_err kms_op_DescribeCustomKeyStores(void *state, struct api_call *call)
{
    static const char *const audit[] = {"CustomKeyStoreId", "CustomKeyStoreName", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *all = NULL, *list = NULL;
    char prefix[STORE_KEY_BUF], after[KMS_CKS_ID_LEN + 8] = "";
    coffer_err rc = COFFER_OK;
    TRY(store_op_begin(svc, call, KMS_OP_DescribeCustomKeyStores, "kms:DescribeCustomKeyStores", audit, &r));
    if (r.marker != NULL) {
        TRY_OUT(kms_marker_decode(r.marker, after, sizeof(after)));
    }
    snprintf(prefix, sizeof(prefix), "%s%s/%s/", KMS_CKS_PREFIX, call->caller->account_id, call->region);
    TRY_OUT(records_load(svc, prefix, &all));
    if ((list = json_array()) == NULL) {
        rc = kms_nomem();
        goto out;
    }
    size_t limit = r.has_limit ? (size_t)r.limit : CKS_DESCRIBE_LIMIT_DEFAULT, i;
    bool truncated = false, filtered = r.custom_key_store_id != NULL || r.custom_key_store_name != NULL;
    const json_t *rec;
    json_array_foreach(all, i, rec)
    {
        const char *id = rec_str(rec, "CustomKeyStoreId");
        if ((r.custom_key_store_id != NULL && strcmp(id, r.custom_key_store_id) != 0) ||
            (r.custom_key_store_name != NULL &&
             strcmp(rec_str(rec, "CustomKeyStoreName"), r.custom_key_store_name) != 0) ||
            strcmp(id, after) <= 0) {
            continue;
        }
        if (json_array_size(list) == limit) {
            truncated = true;
            break;
        }
        if (json_array_append_new(list, describe_one(svc, rec)) != 0) {
            rc = kms_nomem();
            goto out;
        }
    }
    if (filtered && json_array_size(list) == 0 && r.marker == NULL) {
        rc = store_not_found();
        goto out;
    }
    call->output = json_pack("{s:O,s:b}", "CustomKeyStores", list, "Truncated", truncated);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (truncated) {
        const json_t *last = json_array_get(list, json_array_size(list) - 1);
        TRY_OUT(kms_marker_encode(rec_str(last, "CustomKeyStoreId"), call->output));
    }
out:
    json_decref(all);
    json_decref(list);
    kms_req_clean(&r);
    return rc;
}
