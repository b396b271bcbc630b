/*
 * Key lifecycle operations (kms.md §8 "Key lifecycle", §5 policies): CreateKey, DescribeKey,
 * ListKeys, EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion,
 * UpdateKeyDescription, GetKeyPolicy, ListKeyPolicies. Each handler decodes its input
 * (kms_input.c), resolves the key (kms_key.c) and writes through kms_key_update so the
 * store and the cache change together.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

coffer_err kms_tags_merge(const json_t *existing, const json_t *add, size_t max_tags, json_t **out)
{
    *out = NULL;
    json_t *merged = existing != NULL ? json_deep_copy(existing) : json_array();
    if (merged == NULL) {
        return kms_nomem();
    }
    size_t i, j;
    const json_t *t;
    json_array_foreach(add, i, t)
    {
        const char *k = json_string_value(json_object_get(t, "TagKey"));
        const char *v = json_string_value(json_object_get(t, "TagValue"));
        if (strncmp(k, "aws:", 4) == 0) {
            json_decref(merged);
            return coffer_fail(COFFER_ERR_TAG, "Tags beginning with aws: are reserved");
        }
        for (j = 0; j < i; j++) {
            if (strcmp(k, json_string_value(json_object_get(json_array_get(add, j), "TagKey"))) == 0) {
                json_decref(merged);
                return coffer_fail(COFFER_ERR_TAG, "Duplicate tag keys");
            }
        }
        bool replaced = false;
        json_t *e;
        json_array_foreach(merged, j, e)
        {
            if (strcmp(json_string_value(json_object_get(e, "TagKey")), k) == 0) {
                json_object_set_new(e, "TagValue", json_string(v));
                replaced = true;
                break;
            }
        }
        if (!replaced &&
            json_array_append_new(merged, json_pack("{s:s,s:s}", "TagKey", k, "TagValue", v)) != 0) {
            json_decref(merged);
            return kms_nomem();
        }
    }
    if (json_array_size(merged) > max_tags) {
        json_decref(merged);
        return coffer_fail(COFFER_ERR_TAG, "Too many tags");
    }
    *out = merged;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* CreateKey                                                                                  */
/* ------------------------------------------------------------------------------------------ */

char *kms_default_policy(const char *account)
{
    /* kms.md §5: the policy AWS attaches when CreateKey has no Policy, in AWS's layout. */
    static const char fmt[] = "{\n"
                              "  \"Version\" : \"2012-10-17\",\n"
                              "  \"Id\" : \"key-default-1\",\n"
                              "  \"Statement\" : [ {\n"
                              "    \"Sid\" : \"Enable IAM User Permissions\",\n"
                              "    \"Effect\" : \"Allow\",\n"
                              "    \"Principal\" : {\n"
                              "      \"AWS\" : \"arn:aws:iam::%s:root\"\n"
                              "    },\n"
                              "    \"Action\" : \"kms:*\",\n"
                              "    \"Resource\" : \"*\"\n"
                              "  } ]\n"
                              "}";
    char *s = NULL;
    if (asprintf(&s, fmt, account) < 0) {
        return NULL;
    }
    return s;
}

/* The KeyUsage values AWS accepts for each key spec family. */
static bool usage_fits(enum kms_spec spec, const char *usage)
{
    switch (spec) {
    case KMS_SPEC_SYMMETRIC_DEFAULT:
        return strcmp(usage, "ENCRYPT_DECRYPT") == 0;
    case KMS_SPEC_RSA_2048:
    case KMS_SPEC_RSA_3072:
    case KMS_SPEC_RSA_4096:
        return strcmp(usage, "ENCRYPT_DECRYPT") == 0 || strcmp(usage, "SIGN_VERIFY") == 0;
    case KMS_SPEC_ECC_NIST_P256:
    case KMS_SPEC_ECC_NIST_P384:
    case KMS_SPEC_ECC_NIST_P521:
        return strcmp(usage, "SIGN_VERIFY") == 0 || strcmp(usage, "KEY_AGREEMENT") == 0;
    case KMS_SPEC_SM2:
        return strcmp(usage, "GENERATE_VERIFY_MAC") != 0;
    case KMS_SPEC_HMAC_224:
    case KMS_SPEC_HMAC_256:
    case KMS_SPEC_HMAC_384:
    case KMS_SPEC_HMAC_512:
        return strcmp(usage, "GENERATE_VERIFY_MAC") == 0;
    default: /* ECC_SECG_P256K1, ECC_NIST_EDWARDS25519, ML_DSA_* */
        return strcmp(usage, "SIGN_VERIFY") == 0;
    }
}

/*
 * The checks AWS makes on CreateKey's spec/usage/origin: a pair AWS refuses is its
 * ValidationException; a pair AWS accepts but this server does not serve (SM2, Ed25519, ML-DSA,
 * key agreement) is UnsupportedOperationException.
 */
static coffer_err create_key_check(const struct kms_req *r, const char **spec, const char **usage)
{
    if (r->key_spec >= 0 && r->cmk_spec >= 0) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. "
                           "CustomerMasterKeySpec parameter is deprecated. Use KeySpec parameter instead.");
    }
    *spec = r->key_spec >= 0   ? kms_key_specs[r->key_spec]
            : r->cmk_spec >= 0 ? kms_cmk_specs[r->cmk_spec]
                               : "SYMMETRIC_DEFAULT";
    enum kms_spec s = KMS_SPEC_SYMMETRIC_DEFAULT;
    if (!kms_spec_parse(*spec, &s)) {
        return coffer_fail(COFFER_ERR_INTERNAL, "KeySpec table mismatch");
    }
    if (s != KMS_SPEC_SYMMETRIC_DEFAULT && r->key_usage < 0) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.");
    }
    *usage = r->key_usage >= 0 ? kms_key_usages[r->key_usage] : "ENCRYPT_DECRYPT";
    if (!usage_fits(s, *usage)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "KeyUsage %s is not compatible with KeySpec %s", *usage,
                           *spec);
    }
    if (kms_spec_family(s) == KMS_FAMILY_UNSUPPORTED) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "KeySpec %s is not supported by this server.",
                           *spec);
    }
    if (strcmp(*usage, "KEY_AGREEMENT") == 0) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "KeyUsage KEY_AGREEMENT is not supported by this server.");
    }
    bool hsm = r->origin >= 0 && strcmp(kms_origins[r->origin], "AWS_CLOUDHSM") == 0;
    if (r->origin >= 0 && strcmp(kms_origins[r->origin], "AWS_KMS") != 0 &&
        strcmp(kms_origins[r->origin], "EXTERNAL") != 0 && !hsm) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "Origin %s is not supported by this server yet.",
                           kms_origins[r->origin]);
    }
    if (hsm != (r->custom_key_store_id != NULL)) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           hsm ? "CustomKeyStoreId is required when Origin is AWS_CLOUDHSM."
                               : "A CustomKeyStoreId requires Origin AWS_CLOUDHSM.");
    }
    /* A CloudHSM key store holds symmetric encryption keys only, and no multi-Region key. */
    if (hsm && s != KMS_SPEC_SYMMETRIC_DEFAULT) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "KeySpec %s is not supported for keys in an AWS CloudHSM key store.", *spec);
    }
    if (hsm && r->multi_region) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "Multi-Region keys cannot be created in a custom key store.");
    }
    if (r->xks_key_id != NULL) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "External key stores (XksKeyId) are not supported by this server.");
    }
    return COFFER_OK;
}

static coffer_err lockout_refused(void)
{
    return coffer_fail(COFFER_ERR_MALFORMED_POLICY,
                       "The new key policy will not allow you to update the key policy in the future.");
}

/*
 * Validates a key policy document the caller supplies and applies the lockout safety check
 * (kms.md §5) unless bypassed: the policy must still let the caller call PutKeyPolicy.
 */
static coffer_err key_policy_accept(const struct kms_service *svc, const struct api_call *call,
                                    const char *key_arn, const char *text, bool bypass, json_t **principals)
{
    if (strlen(text) > svc->limits.kms_key_policy_bytes) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED, "The key policy exceeds the maximum size of %zu bytes.",
                           svc->limits.kms_key_policy_bytes);
    }
    policy *p = NULL;
    json_t *rec = NULL;
    TRY(kms_policy_compile(text, &p));
    policy_free(p);
    p = NULL;
    /* The users and roles it names, bound now; the lockout check sees the policy as stored. */
    TRY(kms_policy_principals(svc, text, true, principals));
    rec = json_pack("{s:s,s:O}", "Policy", text, "PolicyPrincipals", *principals);
    coffer_err rc = rec != NULL ? kms_key_policy_compile(svc, rec, &p) : kms_nomem();
    json_decref(rec);
    if (rc != COFFER_OK) {
        json_decref(*principals);
        *principals = NULL;
        return rc;
    }
    bool ok = bypass || kms_policy_lockout_ok(svc, call, key_arn, p);
    policy_free(p);
    if (!ok) {
        json_decref(*principals);
        *principals = NULL;
        return lockout_refused();
    }
    return COFFER_OK;
}

struct store_index {
    char skey[STORE_KEY_BUF];
};

static coffer_err store_index_txn(store_txn *t, void *ctx)
{
    const struct store_index *ix = ctx;
    return store_txn_put(t, ix->skey, coffer_cursor_from_str("{}"));
}

/*
 * With wmu held: creates the key of `rec` (takes ownership) in custom key store `cks_id` of the
 * caller, which must be CONNECTED: the AES-256 key is generated in the store's token first,
 * labelled with the key id, and destroyed again when the record cannot be written.
 */
static coffer_err create_in_store(struct kms_service *svc, struct api_call *call, const char *cks_id,
                                  json_t *rec, struct kms_key **out)
{
    json_t *store_rec = NULL;
    char code[KMS_CKS_ERROR_CODE_MAX];
    struct store_index ix;
    const char *acct = call->caller->account_id, *id = json_string_value(json_object_get(rec, "KeyId"));
    coffer_err rc = kms_cks_record_get(svc, acct, call->region, cks_id, &store_rec);
    if (rc != COFFER_OK) {
        json_decref(rec);
        return rc;
    }
    if (kms_cks_state_of(svc->cks, cks_id, store_rec, code, sizeof(code)) != KMS_CKS_CONNECTED) {
        FAIL_OUT(
            COFFER_ERR_CUSTOM_KEY_STORE_INVALID_STATE,
            "Custom key store %s is not connected: a KMS key can be created in a connected key store only.",
            cks_id);
    }
    if (json_object_set_new(rec, "Origin", json_string("AWS_CLOUDHSM")) != 0 ||
        json_object_set_new(rec, "CustomKeyStoreId", json_string(cks_id)) != 0 ||
        json_object_set(rec, "CloudHsmClusterId", json_object_get(store_rec, "CloudHsmClusterId")) != 0) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_cks_key_generate(svc->cks, cks_id, id));
    kms_cks_key_index(ix.skey, sizeof(ix.skey), acct, call->region, cks_id, id);
    char key_id[KMS_KEY_ID_MAX + 1];
    coffer_str_copy(key_id, sizeof(key_id), id);
    rc = kms_key_create(svc, call, rec, store_index_txn, &ix, out);
    rec = NULL;
    if (rc != COFFER_OK && kms_cks_key_destroy(svc->cks, cks_id, key_id) != COFFER_OK) {
        log_warn("kms: key %s was not created, but its material stays in custom key store %s", key_id,
                 cks_id);
    }
out:
    json_decref(rec);
    json_decref(store_rec);
    return rc;
}

coffer_err kms_op_CreateKey(void *state, struct api_call *call)
{
    static const char *const audit[] = {"Description", "KeyUsage",
                                        "KeySpec",     "CustomerMasterKeySpec",
                                        "Origin",      "BypassPolicyLockoutSafetyCheck",
                                        "Tags",        "MultiRegion",
                                        "Policy",      "CustomKeyStoreId",
                                        NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    coffer_err rc = COFFER_OK;
    json_t *rec = NULL, *tags = NULL, *meta = NULL, *principals = NULL;
    char *policy_text = NULL;
    const char *spec = NULL, *usage = NULL;
    char id[KMS_KEY_ID_MAX + 1];
    struct kms_key *k = NULL;
    bool locked = false;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_CreateKey, call->input, &r));
    TRY_OUT(kms_authorize_plain(svc, call, "kms:CreateKey", "*", &r));
    if (r.tags != NULL && json_array_size(r.tags) > 0) {
        /* AWS: tagging at creation needs kms:TagResource as well. */
        TRY_OUT(kms_authorize_plain(svc, call, "kms:TagResource", "*", &r));
    }
    TRY_OUT(create_key_check(&r, &spec, &usage));
    TRY_OUT(kms_tags_merge(NULL, r.tags, svc->limits.kms_tags_per_key, &tags));
    TRY_OUT(r.multi_region ? kms_mrk_id_new(id) : crypto_uuid_v4(id));
    if (r.policy != NULL) {
        char arn[KMS_ARN_MAX];
        kms_key_arn(arn, sizeof(arn), call->region, call->caller->account_id, id);
        TRY_OUT(key_policy_accept(svc, call, arn, r.policy, r.bypass_lockout, &principals));
    }
    policy_text = r.policy != NULL ? strdup(r.policy) : kms_default_policy(call->caller->account_id);
    if (policy_text == NULL) {
        rc = kms_nomem();
        goto out;
    }
    rec =
        json_pack("{s:i,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:O,s:{s:b,s:i}}", "Version",
                  KMS_RECORD_VERSION, "KeyId", id, "AWSAccountId", call->caller->account_id, "Region",
                  call->region, "CreationDate", (json_int_t)kms_call_now_ms(call), "Description",
                  r.description != NULL ? r.description : "", "KeySpec", spec, "KeyUsage", usage, "KeyState",
                  "Enabled", "Origin", "AWS_KMS", "KeyManager", "CUSTOMER", "MultiRegion", false, "Policy",
                  policy_text, "Tags", tags, "Rotation", "Enabled", false, "PeriodInDays", 365);
    /* Origin EXTERNAL keys wait in PendingImport, without material, for ImportKeyMaterial (kms.md §6). */
    bool external = r.origin >= 0 && strcmp(kms_origins[r.origin], "EXTERNAL") == 0;
    if (rec != NULL && external &&
        (json_object_set_new(rec, "KeyState", json_string("PendingImport")) != 0 ||
         json_object_set_new(rec, "Origin", json_string("EXTERNAL")) != 0)) {
        rc = kms_nomem();
        goto out;
    }
    if (rec == NULL ||
        json_object_set_new(rec, "PolicyPrincipals",
                            principals != NULL ? json_incref(principals) : json_object()) != 0 ||
        (r.multi_region && kms_mrk_record_init(rec, call->region) != COFFER_OK)) {
        rc = kms_nomem();
        goto out;
    }
    kms_write_begin(svc);
    locked = true;
    if (r.custom_key_store_id != NULL) {
        rc = create_in_store(svc, call, r.custom_key_store_id, rec, &k);
    } else {
        rc = kms_key_create(svc, call, rec, NULL, NULL, &k);
    }
    rec = NULL;
    if (rc != COFFER_OK) {
        goto out;
    }
    meta = kms_key_metadata(k);
    call->output = json_pack("{s:O}", "KeyMetadata", meta);
    if (meta == NULL || call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
out:
    if (locked) {
        kms_write_release(svc);
    }
    json_decref(meta);
    json_decref(rec);
    json_decref(tags);
    json_decref(principals);
    free(policy_text);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* DescribeKey, ListKeys, policies                                                            */
/* ------------------------------------------------------------------------------------------ */

static const char *const audit_key_only[] = {"KeyId", NULL};

coffer_err kms_op_DescribeKey(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    kms_audit_request(call, audit_key_only);
    TRY(kms_req_decode(KMS_OP_DescribeKey, call->input, &r));
    TRY(kms_acquire(svc, call, r.key_id, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    coffer_err rc = kms_authorize_key(
        svc, call, k, &(struct kms_authz_in){.action = "kms:DescribeKey", .r = &r, .key_ref = r.key_id});
    if (rc != COFFER_OK) {
        kms_release(svc);
        return rc;
    }
    json_t *meta = kms_key_metadata(k);
    kms_release(svc);
    if (meta == NULL || (call->output = json_pack("{s:o}", "KeyMetadata", meta)) == NULL) {
        return kms_nomem();
    }
    return COFFER_OK;
}

struct list_keys_scan {
    const struct api_call *call;
    size_t prefix_len;
    size_t limit;
    json_t *keys;
    char last[KMS_KEY_ID_MAX + 1];
    bool truncated;
};

static coffer_err list_keys_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct list_keys_scan *s = ctx;
    (void)value;
    if (json_array_size(s->keys) == s->limit) {
        s->truncated = true;
        return STORE_SCAN_STOP;
    }
    const char *id = key + s->prefix_len;
    char arn[KMS_ARN_MAX];
    kms_key_arn(arn, sizeof(arn), s->call->region, s->call->caller->account_id, id);
    if (json_array_append_new(s->keys, json_pack("{s:s,s:s}", "KeyId", id, "KeyArn", arn)) != 0) {
        return kms_nomem();
    }
    snprintf(s->last, sizeof(s->last), "%s", id);
    return COFFER_OK;
}

coffer_err kms_op_ListKeys(void *state, struct api_call *call)
{
    static const char *const audit[] = {"Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    coffer_err rc = COFFER_OK;
    char prefix[STORE_KEY_BUF], start[2 * STORE_KEY_BUF], marker[KMS_KEY_ID_MAX + 1];
    struct list_keys_scan s = {.call = call};
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListKeys, call->input, &r));
    TRY_OUT(kms_authorize_plain(svc, call, "kms:ListKeys", "*", &r));
    snprintf(prefix, sizeof(prefix), "kms/key/%s/%s/", call->caller->account_id, call->region);
    start[0] = '\0';
    if (r.marker != NULL) {
        TRY_OUT(kms_marker_decode(r.marker, marker, sizeof(marker)));
        if (!kms_key_id_valid(marker)) {
            FAIL_OUT(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
        }
        snprintf(start, sizeof(start), "%s%s", prefix, marker);
    }
    s.prefix_len = strlen(prefix);
    s.limit = r.has_limit ? (size_t)r.limit : 100;
    s.keys = json_array();
    if (s.keys == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(store_scan(svc->st, prefix, start, s.limit + 1, list_keys_cb, &s));
    call->output = json_pack("{s:O,s:b}", "Keys", s.keys, "Truncated", s.truncated);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (s.truncated) {
        TRY_OUT(kms_marker_encode(s.last, call->output));
    }
out:
    json_decref(s.keys);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_GetKeyPolicy(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "PolicyName", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_GetKeyPolicy, call->input, &r));
    TRY(kms_acquire(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    coffer_err rc =
        kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:GetKeyPolicy", .r = &r});
    if (rc != COFFER_OK) {
        kms_release(svc);
        return rc;
    }
    if (r.policy_name != NULL && strcmp(r.policy_name, "default") != 0) {
        kms_release(svc);
        return coffer_fail(COFFER_ERR_NOT_FOUND, "No such policy exists");
    }
    /*
     * Shown as stored, except principals deleted since: those by their unique id, as AWS does.
     * A copy of its own, taken under the cache's lock: jansson reads a refcount without an
     * atomic load (json_incref), so a record another worker increfs and decrefs at the same
     * time must not be shared by reference.
     */
    json_t *rec = json_deep_copy(k->rec);
    kms_release(svc);
    if (rec == NULL) {
        return kms_nomem();
    }
    char *text = NULL;
    rc = kms_key_policy_text(svc, rec, &text);
    json_decref(rec);
    TRY(rc);
    call->output = json_pack("{s:s,s:s}", "Policy", text, "PolicyName", "default");
    free(text);
    return call->output != NULL ? COFFER_OK : kms_nomem();
}

coffer_err kms_op_ListKeyPolicies(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "Limit", "Marker", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ListKeyPolicies, call->input, &r));
    if (r.marker != NULL) {
        return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
    }
    TRY(kms_acquire(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    coffer_err rc =
        kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = "kms:ListKeyPolicies", .r = &r});
    kms_release(svc);
    TRY(rc);
    call->output = json_pack("{s:[s],s:b}", "PolicyNames", "default", "Truncated", false);
    return call->output != NULL ? COFFER_OK : kms_nomem();
}

/* ------------------------------------------------------------------------------------------ */
/* State changes                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Copy of k's record with KeyState set (wmu held, so the record cannot change under us). */
static json_t *rec_with_state(const struct kms_key *k, enum kms_state st)
{
    json_t *rec = json_deep_copy(k->rec);
    if (rec != NULL && json_object_set_new(rec, "KeyState", json_string(kms_state_name(st))) != 0) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

static coffer_err set_enabled(struct kms_service *svc, struct api_call *call, enum kms_op_id op, bool enable)
{
    struct kms_req r;
    struct kms_key *k;
    TRY(kms_begin_key_write(svc, call, op, audit_key_only, KMS_RULE_ENABLE_DISABLE, &r, &k));
    coffer_err rc = COFFER_OK;
    enum kms_state want = enable ? KMS_STATE_ENABLED : KMS_STATE_DISABLED;
    if (k->state != want) {
        json_t *rec = rec_with_state(k, want);
        /* A key enabled again resumes its automatic rotation (due at once if its date passed). */
        struct kms_rotation_reindex ri = {.k = k, .rec = rec};
        rc = rec != NULL ? kms_key_update(svc, k, rec, enable ? kms_rotation_reindex_txn : NULL, &ri)
                         : kms_nomem();
    }
    kms_write_release(svc);
    return rc;
}

coffer_err kms_op_EnableKey(void *state, struct api_call *call)
{
    return set_enabled(state, call, KMS_OP_EnableKey, true);
}

coffer_err kms_op_DisableKey(void *state, struct api_call *call)
{
    return set_enabled(state, call, KMS_OP_DisableKey, false);
}

struct deletion_index {
    char key[STORE_KEY_BUF];
    bool remove;
};

static coffer_err deletion_index_txn(store_txn *t, void *ctx)
{
    struct deletion_index *d = ctx;
    if (!d->remove) {
        return store_txn_put(t, d->key, coffer_cursor_from_str("{}"));
    }
    coffer_err rc = store_txn_delete(t, d->key);
    return rc == COFFER_ERR_NOT_FOUND ? COFFER_OK : rc;
}

static void deletion_index_key(struct deletion_index *d, const struct kms_key *k, int64_t when_ms)
{
    snprintf(d->key, sizeof(d->key), "kms/deletion/%016" PRId64 "/%s/%s/%s", when_ms, k->account, k->region,
             k->key_id);
}

coffer_err kms_op_ScheduleKeyDeletion(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "PendingWindowInDays", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    struct deletion_index d = {.remove = false};
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_ScheduleKeyDeletion, call->input, &r));
    int64_t days = r.has_pending_days ? r.pending_days : KMS_DELETION_DEFAULT_DAYS;
    if (days < KMS_DELETION_MIN_DAYS || days > KMS_DELETION_MAX_DAYS) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "PendingWindowInDays should be between %d and %d, but it is %" PRId64,
                           KMS_DELETION_MIN_DAYS, KMS_DELETION_MAX_DAYS, days);
    }
    TRY(kms_acquire_write(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    int64_t when = kms_call_now_ms(call) + days * svc->limits.kms_deletion_day_ms;
    json_t *rec = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(kms_authorize_key(svc, call, k,
                              &(struct kms_authz_in){.action = "kms:ScheduleKeyDeletion", .r = &r}));
    TRY_OUT(kms_check_state(k, KMS_RULE_NOT_PENDING));
    /*
     * AWS never deletes a multi-Region primary that still has replicas: it waits in
     * PendingReplicaDeletion, without a date, and its waiting period starts when the last
     * replica is deleted (kms_mrk_replica_gone).
     */
    const json_t *replicas =
        json_object_get(json_object_get(k->rec, "MultiRegionConfiguration"), "ReplicaRegions");
    bool wait_replicas = kms_mrk_is_primary(k) && json_array_size(replicas) > 0;
    enum kms_state st = wait_replicas ? KMS_STATE_PENDING_REPLICA_DELETION : KMS_STATE_PENDING_DELETION;
    rec = rec_with_state(k, st);
    if (rec == NULL ||
        (!wait_replicas && json_object_set_new(rec, "DeletionDate", json_integer(when)) != 0) ||
        json_object_set_new(rec, "PendingWindowInDays", json_integer(days)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    /* Before the commit: the request's event is written then, with these elements. */
    call->output = json_pack("{s:s,s:s,s:I}", "KeyId", k->arn, "KeyState", kms_state_name(st),
                             "PendingWindowInDays", (json_int_t)days);
    if (call->output != NULL && !wait_replicas &&
        json_object_set_new(call->output, "DeletionDate", json_real((double)when / 1000.0)) != 0) {
        rc = kms_nomem();
        goto out;
    }
    call->audit_response = kms_camel_copy(call->output);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    deletion_index_key(&d, k, when);
    rc = kms_key_update(svc, k, rec, wait_replicas ? NULL : deletion_index_txn, &d);
    rec = NULL; /* taken by kms_key_update */
out:
    json_decref(rec);
    kms_write_release(svc);
    return rc;
}

coffer_err kms_op_CancelKeyDeletion(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    struct deletion_index d = {.remove = true};
    TRY(kms_begin_key_write(svc, call, KMS_OP_CancelKeyDeletion, audit_key_only, KMS_RULE_CANCEL, &r, &k));
    coffer_err rc = COFFER_OK;
    /* kms.md §6: a cancelled deletion leaves the key Disabled, not Enabled; a key whose imported
     * material was deleted meanwhile waits for it again. */
    json_t *rec = rec_with_state(k, k->n_mats == 0 ? KMS_STATE_PENDING_IMPORT : KMS_STATE_DISABLED);
    if (rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    /* A primary waiting for its replicas has no date, so no deletion index entry either. */
    bool dated = json_object_get(rec, "DeletionDate") != NULL;
    deletion_index_key(&d, k, (int64_t)json_integer_value(json_object_get(rec, "DeletionDate")));
    json_object_del(rec, "DeletionDate");
    json_object_del(rec, "PendingWindowInDays");
    /* Before the commit: the request's event is written then, with these elements. */
    call->output = json_pack("{s:s}", "KeyId", k->arn);
    call->audit_response = kms_camel_copy(call->output);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    rc = kms_key_update(svc, k, rec, dated ? deletion_index_txn : NULL, &d);
    rec = NULL; /* taken by kms_key_update */
out:
    json_decref(rec);
    kms_write_release(svc);
    return rc;
}

coffer_err kms_op_UpdateKeyDescription(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "Description", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    TRY(kms_begin_key_write(svc, call, KMS_OP_UpdateKeyDescription, audit, KMS_RULE_NOT_PENDING, &r, &k));
    coffer_err rc;
    json_t *rec = json_deep_copy(k->rec);
    if (rec == NULL || json_object_set_new(rec, "Description", json_string(r.description)) != 0) {
        json_decref(rec);
        rc = kms_nomem();
    } else {
        rc = kms_key_update(svc, k, rec, NULL, NULL);
    }
    kms_write_release(svc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* PutKeyPolicy                                                                               */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_op_PutKeyPolicy(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "PolicyName", "Policy", "BypassPolicyLockoutSafetyCheck",
                                        NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    TRY(kms_begin_key_write(svc, call, KMS_OP_PutKeyPolicy, audit, KMS_RULE_ANY, &r, &k));
    coffer_err rc = COFFER_OK;
    json_t *rec = NULL, *principals = NULL;
    if (r.policy_name != NULL && strcmp(r.policy_name, "default") != 0) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND, "No such policy exists");
    }
    TRY_OUT(key_policy_accept(svc, call, k->arn, r.policy, r.bypass_lockout, &principals));
    rec = json_deep_copy(k->rec);
    if (rec == NULL || json_object_set_new(rec, "Policy", json_string(r.policy)) != 0 ||
        json_object_set(rec, "PolicyPrincipals", principals) != 0) {
        rc = kms_nomem();
        goto out;
    }
    /* Compiled again with the record and swapped in before the next request sees the key. */
    rc = kms_key_update(svc, k, rec, NULL, NULL);
    rec = NULL;
out:
    json_decref(rec);
    json_decref(principals);
    kms_write_release(svc);
    return rc;
}

static json_t *epoch_s(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

coffer_err kms_op_GetKeyLastUsage(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k;
    json_t *used = NULL;
    kms_audit_request(call, audit_key_only);
    TRY(kms_req_decode(KMS_OP_GetKeyLastUsage, call->input, &r));
    /* A key id or key ARN: AWS takes no alias here. */
    TRY(kms_acquire(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    coffer_err rc = kms_authorize_key(
        svc, call, k, &(struct kms_authz_in){.action = "kms:GetKeyLastUsage", .r = &r, .key_ref = r.key_id});
    if (rc != COFFER_OK) {
        goto out;
    }
    TRY_OUT(kms_usage_get(svc, k, &used));
    int64_t created = (int64_t)json_integer_value(json_object_get(k->rec, "CreationDate"));
    int64_t since = created > svc->usage_since_ms ? created : svc->usage_since_ms;
    /* Never used since tracking began: KeyLastUsage is an empty object. */
    json_t *last =
        used == NULL
            ? json_object()
            : json_pack("{s:O,s:o,s:O,s:O}", "Operation", json_object_get(used, "Operation"), "Timestamp",
                        epoch_s((int64_t)json_integer_value(json_object_get(used, "Timestamp"))),
                        "CloudTrailEventId", json_object_get(used, "CloudTrailEventId"), "KmsRequestId",
                        json_object_get(used, "KmsRequestId"));
    call->output = last == NULL
                       ? NULL
                       : json_pack("{s:s,s:o,s:o,s:o}", "KeyId", k->key_id, "KeyLastUsage", last,
                                   "TrackingStartDate", epoch_s(since), "KeyCreationDate", epoch_s(created));
    if (call->output == NULL) {
        rc = kms_nomem();
    }
out:
    kms_release(svc);
    json_decref(used);
    return rc;
}
