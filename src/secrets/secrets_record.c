/*
 * Secret records (secrets_internal.h): names and ARNs, finding a secret by name or ARN,
 * reading and writing its record, authorization, and the encryption of its values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/timeutil.h"
#include "common/secret.h"
#include "crypto/crypto.h"
#include "iam/policy.h"
#include "secrets/secrets_internal.h"

coffer_err sm_oom(void)
{
    return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
}

const char *sm_str(const json_t *o, const char *member)
{
    return json_string_value(json_object_get(o, member));
}

int64_t sm_int(const json_t *o, const char *member)
{
    return json_integer_value(json_object_get(o, member));
}

int64_t sm_day_of(int64_t ms)
{
    return ms - ms % SM_DAY_MS;
}

json_t *sm_date(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

/* ------------------------------------------------------------------------------------------ */
/* Names                                                                                        */

coffer_err sm_name_check(const char *name)
{
    bool ok = name[0] != 0 && strlen(name) <= SM_NAME_MAX;
    for (const char *p = name; ok && *p != 0; p++) {
        char c = *p;
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             strchr("/_+=.@-!", c);
    }
    if (!ok) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Invalid name. Must be a valid name containing alphanumeric characters, or any of "
                           "the following: -/_+=.@!");
    }
    return COFFER_OK;
}

void sm_record_key(const char *account, const char *region, const char *name, char *out, size_t n)
{
    snprintf(out, n, "secrets/%s/%s/%s", account, region, name);
}

void sm_secret_arn(const char *region, const char *account, const char *name, const char *suffix, char *out,
                   size_t n)
{
    snprintf(out, n, "arn:aws:secretsmanager:%s:%s:secret:%s-%s", region, account, name, suffix);
}

/* ------------------------------------------------------------------------------------------ */
/* Records                                                                                      */

/* The record under `key` parsed into *out (NULL when there is none); from the read cache when
 * `cached` (only outside a transaction). */
static coffer_err load_record(const struct sm *s, store_txn *t, const char *key, bool cached, json_t **out)
{
    coffer_buf b;
    *out = NULL;
    int64_t now = (int64_t)(coffer_monotonic_ns() / 1000000);
    uint64_t gen = 0;
    cached = cached && t == NULL;
    if (cached) {
        if ((*out = json_cache_get(s->cache, key, now)) != NULL) {
            return COFFER_OK;
        }
        gen = json_cache_generation(s->cache);
    }
    coffer_buf_init(&b, false);
    coffer_err rc = t != NULL ? store_txn_get(t, key, &b) : store_get(s->st, key, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        rc = COFFER_OK;
    } else if (rc == COFFER_OK) {
        json_error_t jerr;
        *out = json_loadb((const char *)b.data, b.len, 0, &jerr);
        if (*out == NULL || !json_is_array(json_object_get(*out, "Versions"))) {
            json_decref(*out);
            *out = NULL;
            rc = coffer_fail(COFFER_ERR_INTERNAL, "corrupt secret record");
        } else if (cached) {
            json_cache_put(s->cache, key, *out, gen, now);
        }
    }
    coffer_buf_free(&b);
    return rc;
}

coffer_err sm_load(const struct sm *s, store_txn *t, const char *key, json_t **out)
{
    return load_record(s, t, key, false, out);
}

void sm_secret_free(struct sm_secret *sec)
{
    json_decref(sec->rec);
    sec->rec = NULL;
}

static coffer_err load_named(const struct sm *s, store_txn *t, const char *account, const char *region,
                             const char *name, bool cached, struct sm_secret *sec)
{
    if (strlen(name) > SM_NAME_MAX) {
        return COFFER_OK;
    }
    char key[SM_KEY_MAX];
    sm_record_key(account, region, name, key, sizeof(key));
    json_t *rec = NULL;
    TRY(load_record(s, t, key, cached, &rec));
    if (rec != NULL) {
        sec->rec = rec;
        coffer_str_copy(sec->key, sizeof(sec->key), key);
        coffer_str_copy(sec->name, sizeof(sec->name), name);
        coffer_str_copy(sec->account, sizeof(sec->account), account);
        coffer_str_copy(sec->region, sizeof(sec->region), region);
        sm_secret_arn(region, account, name, sm_str(rec, "Suffix"), sec->arn, sizeof(sec->arn));
        sec->stored = true;
        sec->revision = sm_int(rec, "Revision");
        sec->rotation_due = sm_int(rec, "RotationDue");
    }
    return COFFER_OK;
}

coffer_err sm_load_key(const struct sm *s, const char *key, struct sm_secret *sec)
{
    memset(sec, 0, sizeof(*sec));
    /* "secrets/<account>/<region>/<name>" */
    const char *p = strncmp(key, "secrets/", 8) == 0 ? key + 8 : NULL;
    const char *slash = p != NULL ? strchr(p, '/') : NULL;
    const char *slash2 = slash != NULL ? strchr(slash + 1, '/') : NULL;
    if (slash2 == NULL || (size_t)(slash - p) != API_ACCOUNT_ID_LEN ||
        (size_t)(slash2 - slash - 1) >= sizeof(sec->region)) {
        return COFFER_OK;
    }
    char account[API_ACCOUNT_ID_LEN + 1], region[64];
    snprintf(account, sizeof(account), "%.*s", (int)(slash - p), p);
    snprintf(region, sizeof(region), "%.*s", (int)(slash2 - slash - 1), slash + 1);
    return load_named(s, NULL, account, region, slash2 + 1, false, sec);
}

static coffer_err not_found(void)
{
    return coffer_fail(COFFER_ERR_NOT_FOUND, "Secrets Manager can't find the specified secret.");
}

/*
 * "arn:<partition>:secretsmanager:<region>:<account>:secret:<rest>": a full ARN ends with
 * "-" and the 6-character suffix of the secret it names, a partial one is the name alone.
 */
static coffer_err resolve_arn(const struct sm *s, store_txn *t, const struct api_call *call, const char *id,
                              bool cached, struct sm_secret *sec)
{
    char buf[SM_ID_MAX + 1];
    coffer_str_copy(buf, sizeof(buf), id);
    char *parts[6];
    char *p = buf;
    for (int i = 0; i < 6; i++) {
        parts[i] = p;
        p = strchr(p, ':');
        if (p == NULL) {
            return not_found();
        }
        *p++ = 0;
    }
    /* parts: arn, partition, service, region, account, "secret"; p: the rest */
    if (strcmp(parts[2], "secretsmanager") != 0 || strcmp(parts[5], "secret") != 0 ||
        strcmp(parts[3], call->region) != 0 || strlen(parts[4]) != API_ACCOUNT_ID_LEN) {
        return not_found();
    }
    const char *account = parts[4];
    size_t n = strlen(p);
    if (n > SM_SUFFIX_LEN + 1 && p[n - SM_SUFFIX_LEN - 1] == '-') {
        char name[SM_ID_MAX + 1];
        snprintf(name, sizeof(name), "%.*s", (int)(n - SM_SUFFIX_LEN - 1), p);
        TRY(load_named(s, t, account, call->region, name, cached, sec));
        if (sec->rec != NULL && strcmp(sm_str(sec->rec, "Suffix"), p + n - SM_SUFFIX_LEN) == 0) {
            return COFFER_OK;
        }
        sm_secret_free(sec); /* another secret of that name (re-created): not this ARN's */
    }
    return load_named(s, t, account, call->region, p, cached, sec);
}

static coffer_err resolve(const struct sm *s, store_txn *t, const struct api_call *call, const char *id,
                          bool cached, struct sm_secret *sec)
{
    memset(sec, 0, sizeof(*sec));
    if (strncmp(id, "arn:", 4) == 0) {
        TRY(resolve_arn(s, t, call, id, cached, sec));
    } else {
        TRY(load_named(s, t, call->caller->account_id, call->region, id, cached, sec));
    }
    if (sec->rec == NULL) {
        return not_found();
    }
    sec->cross_account = strcmp(sec->account, call->caller->account_id) != 0;
    if (sec->cross_account && s->az == NULL) {
        /* without authorization nothing reaches into another account */
        sm_secret_free(sec);
        return not_found();
    }
    return COFFER_OK;
}

coffer_err sm_resolve(const struct sm *s, store_txn *t, const struct api_call *call, const char *id,
                      struct sm_secret *sec)
{
    return resolve(s, t, call, id, false, sec);
}

coffer_err sm_resolve_read(const struct sm *s, const struct api_call *call, const char *id,
                           struct sm_secret *sec)
{
    return resolve(s, NULL, call, id, true, sec);
}

void sm_rotation_index_key(const struct sm_secret *sec, int64_t when, char *out, size_t n)
{
    snprintf(out, n, SM_ROTATION_PREFIX "%016lld/%s/%s/%s", (long long)when, sec->account, sec->region,
             sec->name);
}

static void deletion_key(const char *account, const char *region, const char *name, int64_t when, char *out,
                         size_t n)
{
    snprintf(out, n, SM_DELETION_PREFIX "%016lld/%s/%s/%s", (long long)when, account, region, name);
}

/* In the save's transaction: the stored record is the one sec was loaded from. */
static coffer_err check_unchanged(const struct sm *s, store_txn *t, const struct sm_secret *sec)
{
    json_t *cur = NULL;
    TRY(load_record(s, t, sec->key, false, &cur));
    bool same = (cur != NULL) == sec->stored && (cur == NULL || sm_int(cur, "Revision") == sec->revision);
    json_decref(cur);
    if (!same) {
        return coffer_fail(COFFER_ERR_STORE,
                           "The secret was changed by another request at the same time. Try again.");
    }
    return COFFER_OK;
}

/* In the save's transaction: the replication mark as sec->push says (secrets_replication.c). */
static coffer_err replication_mark(const struct sm_secret *sec, store_txn *t)
{
    char mkey[SM_KEY_MAX + 32], value[64];
    sm_replication_marker_key(sec, mkey, sizeof(mkey));
    bool replicated = sec->rec != NULL && json_array_size(json_object_get(sec->rec, "ReplicationStatus")) > 0;
    enum sm_push what = sec->push;
    if (what == SM_PUSH_MARK && !replicated) {
        what = sec->rec == NULL ? SM_PUSH_DONE : SM_PUSH_LEAVE;
    }
    switch (what) {
    case SM_PUSH_LEAVE:
        return COFFER_OK;
    case SM_PUSH_DONE: {
        coffer_err rc = store_txn_delete(t, mkey);
        if (rc == COFFER_ERR_NOT_FOUND) {
            coffer_clear_err();
            rc = COFFER_OK;
        }
        return rc;
    }
    case SM_PUSH_MARK:
    case SM_PUSH_RETRY:
        break;
    }
    snprintf(value, sizeof(value), "{\"NotBefore\":%lld}",
             what == SM_PUSH_RETRY ? (long long)sec->push_after : 0LL);
    return store_txn_put(t, mkey, coffer_cursor_from_str(value));
}

coffer_err sm_save(const struct sm *s, struct sm_secret *sec, int64_t old_deletion)
{
    store_txn *t = NULL;
    char *text = NULL;
    char dkey[SM_KEY_MAX + 64];
    coffer_err rc = COFFER_OK;
    int64_t deletion = sec->rec != NULL ? sm_int(sec->rec, "DeletionDate") : 0;
    int64_t due = sec->rec != NULL ? sm_int(sec->rec, "RotationDue") : 0;
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(check_unchanged(s, t, sec));
    if (sec->rotation_due != 0 && sec->rotation_due != due) {
        sm_rotation_index_key(sec, sec->rotation_due, dkey, sizeof(dkey));
        rc = store_txn_delete(t, dkey);
        if (rc == COFFER_ERR_NOT_FOUND) {
            coffer_clear_err();
            rc = COFFER_OK;
        }
        TRY_OUT(rc);
    }
    if (sec->rec != NULL && due != 0 && due != sec->rotation_due) {
        sm_rotation_index_key(sec, due, dkey, sizeof(dkey));
        TRY_OUT(store_txn_put(t, dkey, coffer_cursor_from_str(sec->key)));
    }
    if (old_deletion != 0 && old_deletion != deletion) {
        deletion_key(sec->account, sec->region, sec->name, old_deletion, dkey, sizeof(dkey));
        rc = store_txn_delete(t, dkey);
        if (rc == COFFER_ERR_NOT_FOUND) {
            coffer_clear_err();
            rc = COFFER_OK;
        }
        TRY_OUT(rc);
    }
    TRY_OUT(replication_mark(sec, t));
    if (sec->rec == NULL) {
        TRY_OUT(store_txn_delete(t, sec->key));
    } else {
        if (deletion != 0 && deletion != old_deletion) {
            deletion_key(sec->account, sec->region, sec->name, deletion, dkey, sizeof(dkey));
            TRY_OUT(store_txn_put(t, dkey, coffer_cursor_from_str(sec->key)));
        }
        if (json_object_set_new(sec->rec, "Revision", json_integer(sec->revision + 1)) != 0 ||
            (text = json_dumps(sec->rec, JSON_COMPACT)) == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        TRY_OUT(store_txn_put(t, sec->key, coffer_cursor_from_str(text)));
    }
    rc = store_txn_commit(t);
    t = NULL;
    if (rc == COFFER_OK) {
        sec->stored = sec->rec != NULL;
        sec->revision = sec->rec != NULL ? sec->revision + 1 : 0;
        sec->rotation_due = due;
    }
out:
    store_txn_abort(t);
    free(text);
    /* Even after a failed commit: whether it reached the database may be unknown. */
    json_cache_invalidate(s->cache, sec->key);
    return rc;
}

coffer_err sm_check_live(const struct sm_secret *sec)
{
    if (json_object_get(sec->rec, "DeletedDate") != NULL) {
        return coffer_fail(
            COFFER_ERR_INVALID_STATE,
            "You can't perform this operation on the secret because it was marked for deletion.");
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Authorization                                                                                */

/* aws:ResourceTag/<k> and secretsmanager:ResourceTag/<k> from the secret's tags. */
static coffer_err add_tag_ctx(void *arg, unsigned wanted, policy_ctx *ctx)
{
    const struct sm_secret *sec = arg;
    if (sec->rec == NULL || (wanted & (AUTHZ_CTX_RESOURCE_TAGS | AUTHZ_CTX_OTHER)) == 0) {
        return COFFER_OK;
    }
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(sec->rec, "Tags"), i, t)
    {
        char key[320];
        const char *k = sm_str(t, "Key"), *v = sm_str(t, "Value");
        if (k == NULL || v == NULL) {
            continue;
        }
        if (wanted & AUTHZ_CTX_RESOURCE_TAGS) {
            snprintf(key, sizeof(key), "aws:ResourceTag/%s", k);
            TRY(policy_ctx_add_variant(ctx, key, v));
        }
        if (wanted & AUTHZ_CTX_OTHER) {
            snprintf(key, sizeof(key), "secretsmanager:ResourceTag/%s", k);
            TRY(policy_ctx_add_variant(ctx, key, v));
        }
    }
    return COFFER_OK;
}

/*
 * AWS: within the secret's account either the identity policies or the resource policy may
 * allow; from another account both must. The shared authorizer reads a resource policy that
 * does not allow as a refusal (key policies work so), so in the same account an implicit
 * refusal by the resource policy is decided again by the identity policies alone (an explicit
 * Deny anywhere has already refused).
 */
coffer_err sm_authorize(const struct sm *s, const struct api_call *call, const char *action,
                        const struct sm_secret *sec)
{
    if (s->az == NULL) {
        return COFFER_OK;
    }
    char act[96];
    snprintf(act, sizeof(act), "secretsmanager:%s", action);
    policy *p = NULL;
    const char *doc = sec->rec != NULL ? sm_str(sec->rec, "ResourcePolicy") : NULL;
    if (doc != NULL &&
        policy_compile_ex(coffer_cursor_from_str(doc), POLICY_COMPILE_REQUIRE_PRINCIPAL, &p) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_INTERNAL, "the stored resource policy does not compile");
    }
    struct authz_key keys[] = {{"secretsmanager:SecretId", sec->arn}};
    struct authz_request req = authz_request_for(call, act, sec->arn);
    req.resource_account = sec->account;
    req.resource_policy = p;
    req.keys = keys;
    req.n_keys = 1;
    req.add_ctx = add_tag_ctx;
    req.add_ctx_arg = (void *)sec;
    struct authz_verdict v;
    coffer_err rc = authz_decide(s->az, &req, &v);
    if (rc == COFFER_OK && !v.allowed && !v.explicit_deny && !sec->cross_account && p != NULL &&
        v.why == AUTHZ_DENY_NO_RESOURCE_ALLOW) {
        req.resource_policy = NULL;
        rc = authz_decide(s->az, &req, &v);
    }
    if (rc == COFFER_OK) {
        rc = authz_refusal(&req, &v);
    }
    policy_free(p);
    return rc;
}

coffer_err sm_authorize_any(const struct sm *s, const struct api_call *call, const char *action)
{
    if (s->az == NULL) {
        return COFFER_OK;
    }
    char act[96];
    snprintf(act, sizeof(act), "secretsmanager:%s", action);
    struct authz_request req = authz_request_for(call, act, "*");
    return authz_check(s->az, &req);
}

/* ------------------------------------------------------------------------------------------ */
/* Values                                                                                       */

/* KMS's refusals in Secrets Manager's terms: a key that cannot be used is EncryptionFailure or
 * DecryptionFailure with KMS's reason; access, capacity and storage errors stay as they are. */
static coffer_err kms_failure(coffer_err rc, coffer_err as)
{
    if (rc == COFFER_ERR_ACCESS_DENIED || rc == COFFER_ERR_NOMEM || rc == COFFER_ERR_STORE ||
        rc == COFFER_ERR_AUDIT || rc == COFFER_ERR_THROTTLING) {
        return rc;
    }
    char why[256];
    snprintf(why, sizeof(why), "%s", coffer_last_message());
    return coffer_fail(as, "%s", why[0] != 0 ? why : coffer_err_default_message(as));
}

static json_t *value_context(const struct sm_secret *sec, const char *vid)
{
    return json_pack("{s:s, s:s}", "SecretARN", sec->arn, "SecretVersionId", vid);
}

/* The AES-GCM additional data: the secret's ARN and the version, so a value cannot be moved. */
static coffer_err value_aad(const struct sm_secret *sec, const char *vid, coffer_buf *aad)
{
    coffer_buf_init(aad, false);
    coffer_err rc = coffer_buf_append_str(aad, sec->arn);
    if (rc == COFFER_OK) {
        rc = coffer_buf_append_u8(aad, 0);
    }
    if (rc == COFFER_OK) {
        rc = coffer_buf_append_str(aad, vid);
    }
    return rc;
}

static coffer_err default_key_cross_account(void)
{
    return coffer_fail(COFFER_ERR_INVALID_STATE,
                       "You can't access a secret from a different AWS account if you "
                       "encrypt the secret with the default KMS service key.");
}

static void via_service(const struct api_call *call, char *out, size_t n)
{
    snprintf(out, n, "secretsmanager.%s.amazonaws.com", call->region);
}

coffer_err sm_value_seal(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                         const char *key_id, coffer_cursor value, bool binary, json_t *ver)
{
    const char *vid = sm_str(ver, "VersionId");
    if (sec->cross_account && key_id != NULL && strncmp(key_id, "arn:", 4) != 0) {
        /* a key id or alias of the owner's account means nothing in the caller's: the key of
         * the current version names it by ARN */
        const json_t *cur = sm_label_owner(json_object_get(sec->rec, "Versions"), SM_CURRENT);
        key_id = sm_str(cur, "KeyArn") != NULL ? sm_str(cur, "KeyArn") : key_id;
    }
    if (key_id == NULL || key_id[0] == 0) {
        if (sec->cross_account) {
            return default_key_cross_account();
        }
        key_id = SM_DEFAULT_KEY;
    }
    if (s->kms == NULL) {
        return coffer_fail(COFFER_ERR_ENCRYPTION_FAILURE, "No KMS is available to encrypt the value.");
    }
    uint8_t *dk = coffer_secret_alloc(CRYPTO_AES256_KEY_LEN);
    if (dk == NULL) {
        return sm_oom();
    }
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    char via[96], key_arn[512];
    char *blob = NULL;
    json_t *ec = NULL;
    coffer_buf aad, ct, ct64, iv64;
    coffer_buf_init(&aad, false);
    coffer_buf_init(&ct, false);
    coffer_buf_init(&ct64, false);
    coffer_buf_init(&iv64, false);
    coffer_err rc = COFFER_OK;
    TRY_OUT(crypto_random(dk, CRYPTO_AES256_KEY_LEN));
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    if ((ec = value_context(sec, vid)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    via_service(call, via, sizeof(via));
    rc = s->kms->encrypt(s->kms->svc, call, via, key_id, ec, coffer_cursor_from(dk, CRYPTO_AES256_KEY_LEN),
                         &blob, key_arn, sizeof(key_arn));
    if (rc != COFFER_OK) {
        rc = kms_failure(rc, COFFER_ERR_ENCRYPTION_FAILURE);
        goto out;
    }
    TRY_OUT(value_aad(sec, vid, &aad));
    TRY_OUT(crypto_aes_gcm_seal(coffer_cursor_from(dk, CRYPTO_AES256_KEY_LEN), iv, coffer_buf_cursor(&aad),
                                value, &ct));
    TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&ct), &ct64));
    TRY_OUT(coffer_b64_encode(coffer_cursor_from(iv, sizeof(iv)), &iv64));
    if (json_object_set_new(ver, "KeyArn", json_string(key_arn)) != 0 ||
        json_object_set_new(ver, "DataKey", json_string(blob)) != 0 ||
        json_object_set_new(ver, "Iv", json_stringn((const char *)iv64.data, iv64.len)) != 0 ||
        json_object_set_new(ver, "Data", json_stringn((const char *)ct64.data, ct64.len)) != 0 ||
        json_object_set_new(ver, "Binary", json_boolean(binary)) != 0 ||
        json_object_set_new(ver, "DefaultKey", json_boolean(strcmp(key_id, SM_DEFAULT_KEY) == 0)) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    coffer_secret_free(dk, CRYPTO_AES256_KEY_LEN);
    free(blob);
    json_decref(ec);
    coffer_buf_free(&aad);
    coffer_buf_free(&ct);
    coffer_buf_free(&ct64);
    coffer_buf_free(&iv64);
    return rc;
}

coffer_err sm_value_open(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                         const json_t *ver, coffer_buf *plain)
{
    coffer_buf_init(plain, true);
    const char *vid = sm_str(ver, "VersionId");
    const char *blob = sm_str(ver, "DataKey");
    if (blob == NULL || sm_str(ver, "Data") == NULL || sm_str(ver, "Iv") == NULL) {
        return coffer_fail(COFFER_ERR_NOT_FOUND,
                           "Secrets Manager can't find the specified secret value for "
                           "VersionId: %s",
                           vid);
    }
    if (sec->cross_account && json_is_true(json_object_get(ver, "DefaultKey"))) {
        return default_key_cross_account();
    }
    if (s->kms == NULL) {
        return coffer_fail(COFFER_ERR_DECRYPTION_FAILURE, "No KMS is available to decrypt the value.");
    }
    char via[96], key_arn[512];
    json_t *ec = NULL;
    coffer_buf dk, aad, ct, iv;
    coffer_buf_init(&dk, true);
    coffer_buf_init(&aad, false);
    coffer_buf_init(&ct, false);
    coffer_buf_init(&iv, false);
    coffer_err rc = COFFER_OK;
    if ((ec = value_context(sec, vid)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    via_service(call, via, sizeof(via));
    rc = s->kms->decrypt(s->kms->svc, call, via, blob, ec, &dk, key_arn, sizeof(key_arn));
    if (rc != COFFER_OK) {
        rc = kms_failure(rc, COFFER_ERR_DECRYPTION_FAILURE);
        goto out;
    }
    TRY_OUT(value_aad(sec, vid, &aad));
    TRY_OUT(coffer_b64_decode(coffer_cursor_from_str(sm_str(ver, "Data")), &ct));
    TRY_OUT(coffer_b64_decode(coffer_cursor_from_str(sm_str(ver, "Iv")), &iv));
    if (iv.len != CRYPTO_AES_GCM_IV_LEN || dk.len != CRYPTO_AES256_KEY_LEN) {
        FAIL_OUT(COFFER_ERR_DECRYPTION_FAILURE, "Secrets Manager can't decrypt the protected secret text.");
    }
    rc = crypto_aes_gcm_open(coffer_buf_cursor(&dk), iv.data, coffer_buf_cursor(&aad), coffer_buf_cursor(&ct),
                             plain);
    if (rc != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_DECRYPTION_FAILURE, "Secrets Manager can't decrypt the protected secret text.");
    }
out:
    json_decref(ec);
    coffer_buf_free(&dk);
    coffer_buf_free(&aad);
    coffer_buf_free(&ct);
    coffer_buf_free(&iv);
    if (rc != COFFER_OK) {
        coffer_buf_free(plain);
        coffer_buf_init(plain, true);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Request values                                                                               */

coffer_err sm_value_read(api_in *in, struct sm_value *v)
{
    memset(v, 0, sizeof(*v));
    coffer_buf_init(&v->binary, true);
    TRY(api_in_blob(in, "SecretBinary", API_IN_SECRET, 1, SM_VALUE_MAX, &v->binary, &v->has_binary));
    return api_in_string(in, "SecretString", API_IN_SENSITIVE, 1, SM_VALUE_MAX, &v->string);
}

bool sm_value_given(const struct sm_value *v)
{
    return v->string != NULL || v->has_binary;
}

coffer_err sm_value_check(const struct sm_value *v, bool required)
{
    if (v->string != NULL && v->has_binary) {
        return coffer_fail(
            COFFER_ERR_INVALID_PARAMETER,
            "You can't specify both a binary secret value and a string secret value in the same "
            "secret.");
    }
    if (required && !sm_value_given(v)) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "You must provide either SecretString or SecretBinary.");
    }
    if (v->string != NULL && strlen(v->string) > SM_VALUE_MAX) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "The secret value is larger than the maximum of 65536 bytes.");
    }
    return COFFER_OK;
}

coffer_cursor sm_value_cursor(const struct sm_value *v)
{
    return v->has_binary ? coffer_buf_cursor(&v->binary) : coffer_cursor_from_str(v->string);
}

void sm_value_free(struct sm_value *v)
{
    coffer_buf_free(&v->binary);
}

/* ------------------------------------------------------------------------------------------ */
/* DescribeSecret                                                                               */

static int set_date(json_t *o, const char *member, const json_t *rec, const char *from)
{
    if (json_object_get(rec, from) == NULL) {
        return 0;
    }
    return json_object_set_new(o, member, sm_date(sm_int(rec, from)));
}

json_t *sm_describe_json(const struct sm_secret *sec, bool list_form)
{
    const json_t *rec = sec->rec;
    json_t *o = json_pack("{s:s, s:s}", "ARN", sec->arn, "Name", sec->name);
    json_t *map = json_object();
    if (o == NULL || map == NULL) {
        goto fail;
    }
    static const char *const optional[] = {"Description", "KmsKeyId", "OwningService", "PrimaryRegion", NULL};
    for (const char *const *m = optional; *m != NULL; m++) {
        if (sm_str(rec, *m) != NULL && json_object_set_new(o, *m, json_string(sm_str(rec, *m))) != 0) {
            goto fail;
        }
    }
    if (set_date(o, "LastChangedDate", rec, "LastChangedDate") != 0 ||
        set_date(o, "LastAccessedDate", rec, "LastAccessedDate") != 0 ||
        set_date(o, "DeletedDate", rec, "DeletedDate") != 0 ||
        set_date(o, "CreatedDate", rec, "CreatedDate") != 0) {
        goto fail;
    }
    const json_t *tags = json_object_get(rec, "Tags");
    if (json_array_size(tags) > 0 && json_object_set(o, "Tags", (json_t *)tags) != 0) {
        goto fail;
    }
    if (sm_rotation_describe(rec, o) != COFFER_OK) {
        goto fail;
    }
    if (json_array_size(json_object_get(rec, "ReplicationStatus")) > 0 &&
        json_object_set_new(o, "ReplicationStatus", sm_replication_status(rec)) != 0) {
        goto fail;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(rec, "Versions"), i, v)
    {
        const json_t *stages = json_object_get(v, "Stages");
        if (json_array_size(stages) > 0 &&
            json_object_set_new(map, sm_str(v, "VersionId"), json_deep_copy(stages)) != 0) {
            goto fail;
        }
    }
    if (json_object_size(map) > 0 &&
        json_object_set(o, list_form ? "SecretVersionsToStages" : "VersionIdsToStages", map) != 0) {
        goto fail;
    }
    json_decref(map);
    return o;
fail:
    json_decref(map);
    json_decref(o);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The jobs' walk over a date index                                                             */

struct due {
    const char *prefix;
    int64_t now_ms;
    json_t *entries; /* [[index key, record key, due]...] */
};

static coffer_err due_one(void *ctx, const char *key, coffer_cursor value)
{
    struct due *d = ctx;
    long long when = strtoll(key + strlen(d->prefix), NULL, 10);
    if (when > d->now_ms) {
        return STORE_SCAN_STOP; /* in date order: nothing further is due */
    }
    json_t *e = json_pack("[s, s%, I]", key, (const char *)value.ptr, value.len, (json_int_t)when);
    return e != NULL && json_array_append_new(d->entries, e) == 0 ? COFFER_OK : sm_oom();
}

coffer_err sm_walk_due(struct sm *s, const char *prefix, int64_t now_ms, sm_skip_fn skip, sm_due_fn act)
{
    struct due d = {.prefix = prefix, .now_ms = now_ms, .entries = json_array()};
    if (d.entries == NULL) {
        return sm_oom();
    }
    /* collected first: acting writes the index the scan reads */
    coffer_err rc = store_scan(s->st, prefix, NULL, 0, due_one, &d);
    size_t i;
    json_t *e;
    json_array_foreach(d.entries, i, e)
    {
        if (rc != COFFER_OK) {
            break;
        }
        const char *rkey = json_string_value(json_array_get(e, 1));
        if (skip != NULL && skip(s, rkey)) {
            continue;
        }
        pthread_mutex_lock(&s->wmu);
        rc = act(s, json_string_value(json_array_get(e, 0)), rkey, json_integer_value(json_array_get(e, 2)),
                 now_ms);
        pthread_mutex_unlock(&s->wmu);
    }
    json_decref(d.entries);
    return rc;
}
