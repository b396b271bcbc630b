/*
 * Cryptographic operations (kms.md §8 "Cryptographic operations"): Encrypt, Decrypt, ReEncrypt,
 * GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom. The hot path: decode,
 * resolve the key in the cache under the shared lock, AES-256-GCM with the cached material,
 * base64 out. No store access, no unsealing, no allocation of key material. RSA keys with
 * ENCRYPT_DECRYPT usage encrypt with RSA-OAEP instead (kms_ops_asym.c): their ciphertext is the
 * raw OAEP output, so Decrypt of one needs KeyId and the algorithm, as on AWS.
 *
 * Plaintext and data keys live in secret buffers; the JSON output necessarily holds their
 * base64 (the pipeline owns and frees it). Audit records never carry them.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

static const char *const audit_encrypt[] = {
    "KeyId", "EncryptionContext", "EncryptionAlgorithm", "GrantTokens", "DryRun", NULL};
static const char *const audit_decrypt[] = {
    "KeyId", "EncryptionContext", "EncryptionAlgorithm", "GrantTokens", "DryRun", "DryRunModifiers", NULL};
static const char *const audit_reencrypt[] = {"SourceKeyId",
                                              "DestinationKeyId",
                                              "SourceEncryptionContext",
                                              "DestinationEncryptionContext",
                                              "SourceEncryptionAlgorithm",
                                              "DestinationEncryptionAlgorithm",
                                              "GrantTokens",
                                              "DryRun",
                                              NULL};
static const char *const audit_gdk[] = {
    "KeyId", "EncryptionContext", "NumberOfBytes", "KeySpec", "GrantTokens", "DryRun", NULL};
static const char *const audit_random[] = {"NumberOfBytes", "CustomKeyStoreId", NULL};

static coffer_err dry_run(void)
{
    return coffer_fail(COFFER_ERR_DRY_RUN, "%s", coffer_err_default_message(COFFER_ERR_DRY_RUN));
}

static coffer_err unsupported_recipient(void)
{
    return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "Recipient is not supported by this server yet.");
}

static coffer_err missing_ciphertext(void)
{
    return coffer_fail(COFFER_ERR_VALIDATION,
                       "1 validation error detected: Value null at 'ciphertextBlob' failed to "
                       "satisfy constraint: Member must not be null");
}

static bool ignore_ciphertext(const struct kms_req *r)
{
    if (!r->dry_run || r->dry_run_modifiers == NULL) {
        return false;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(r->dry_run_modifiers, i, m)
    {
        if (strcmp(json_string_value(m), "IGNORE_CIPHERTEXT") == 0) {
            return true;
        }
    }
    return false;
}

coffer_err kms_encrypt_with(const struct kms_key *k, const json_t *ec, int alg, coffer_cursor pt,
                            coffer_buf *out)
{
    /* A cached key has at least one material and current is set only to the index of a loaded one. */
    assert(k->current < k->n_mats);
    if (kms_spec_family(k->spec) == KMS_FAMILY_RSA) {
        return kms_rsa_encrypt(k, alg, pt, out);
    }
    /* The blob format is AES-256-GCM: only a symmetric key's material may key it. */
    if (k->spec != KMS_SPEC_SYMMETRIC_DEFAULT) {
        return coffer_fail(COFFER_ERR_INVALID_KEY_USAGE, "%s is not a symmetric encryption key.", k->arn);
    }
    if (k->cks != NULL) {
        return kms_cks_encrypt(k, ec, pt, out); /* the key is in the token: so is the AES-GCM */
    }
    const struct kms_material *m = &k->mats[k->current];
    return kms_blob_encrypt(kms_material_bytes(m), k->arn, m->id, ec, pt, out);
}

/* Draws an n-byte data key into dk and encrypts it under k (shared lock held) into blob. */
static coffer_err data_key_with(const struct kms_key *k, const json_t *ec, size_t n, coffer_buf *dk,
                                coffer_buf *blob)
{
    TRY(coffer_buf_reserve(dk, n));
    TRY(crypto_random(dk->data, n));
    dk->len = n;
    return kms_encrypt_with(k, ec, -1, coffer_buf_cursor(dk), blob);
}

/*
 * Asymmetric keys take no encryption context (it would bind nothing): refused rather than
 * silently dropped, so a caller never believes a ciphertext is bound to one.
 */
static coffer_err check_no_context(const struct kms_key *k, const json_t *ec)
{
    if (k->spec != KMS_SPEC_SYMMETRIC_DEFAULT && json_object_size(ec) > 0) {
        return coffer_fail(COFFER_ERR_VALIDATION, "EncryptionContext is not supported with key spec %s.",
                           kms_spec_name(k->spec));
    }
    return COFFER_OK;
}

coffer_err kms_acquire_to_encrypt(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                                  const char *action, const char *key_ref, const json_t *ec, int alg,
                                  bool data_key, bool dry, struct kms_key **out)
{
    struct kms_key *k;
    coffer_err rc = COFFER_OK;
    *out = NULL;
    TRY(kms_acquire(svc, call, key_ref, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(
        svc, call, k, &(struct kms_authz_in){.action = action, .r = r, .ec = ec, .key_ref = key_ref}));
    TRY_OUT(kms_check_state(k, KMS_RULE_CRYPTO));
    if (k->cks != NULL) {
        TRY_OUT(kms_cks_usable(k)); /* a disconnected store: KMSInvalidStateException, as AWS */
    }
    TRY_OUT(kms_check_usage(k, "ENCRYPT_DECRYPT", call->operation != NULL ? call->operation : action + 4));
    if (data_key && k->spec != KMS_SPEC_SYMMETRIC_DEFAULT) {
        FAIL_OUT(COFFER_ERR_INVALID_KEY_USAGE, "%s is not a symmetric encryption key.", k->arn);
    }
    TRY_OUT(kms_check_enc_algorithm(k, alg));
    TRY_OUT(check_no_context(k, ec));
    if (dry) {
        rc = dry_run();
        goto out;
    }
    TRY_OUT(kms_charge_quota(svc, call, k->spec));
    *out = k;
out:
    if (rc != COFFER_OK) {
        kms_release(svc);
    }
    return rc;
}

static coffer_err set_material_id(json_t *obj, const char *name, const uint8_t id[KMS_MATERIAL_ID_LEN])
{
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    coffer_hex_encode(id, KMS_MATERIAL_ID_LEN, hex);
    return json_object_set_new(obj, name, json_string(hex)) == 0 ? COFFER_OK : kms_nomem();
}

/* ------------------------------------------------------------------------------------------ */
/* Encrypt                                                                                    */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_op_Encrypt(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    coffer_buf blob = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_encrypt);
    TRY(kms_req_decode(KMS_OP_Encrypt, call->input, &r));
    TRY_OUT(kms_acquire_to_encrypt(svc, call, &r, "kms:Encrypt", r.key_id, r.ec, r.enc_alg, false, r.dry_run,
                                   &k));
    rc = kms_encrypt_with(k, r.ec, r.enc_alg, coffer_buf_cursor(&r.plaintext), &blob);
    if (rc == COFFER_OK) {
        KMS_USAGE_NOTE(svc, call, k, "Encrypt");
    }
    char arn[KMS_ARN_MAX];
    coffer_str_copy(arn, sizeof(arn), k->arn);
    kms_release(svc);
    TRY_OUT(rc);
    call->output = kms_out_key(arn, kms_enc_algorithms[r.enc_alg < 0 ? 0 : r.enc_alg]);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "CiphertextBlob", coffer_buf_cursor(&blob), false));
out:
    coffer_buf_free(&blob);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Decrypt and the source half of ReEncrypt                                                   */
/* ------------------------------------------------------------------------------------------ */

struct opened {
    char arn[KMS_ARN_MAX];
    char acct[API_ACCOUNT_ID_LEN + 1], region[KMS_REGION_MAX + 1], id[KMS_KEY_ID_MAX + 1]; /* of arn */
    uint8_t material_id[KMS_MATERIAL_ID_LEN];
    int alg;            /* index of kms_enc_algorithms */
    enum kms_spec spec; /* of the key that opened it */
};

static void opened_key(struct opened *o, const struct kms_key *k)
{
    coffer_str_copy(o->acct, sizeof(o->acct), k->account);
    coffer_str_copy(o->region, sizeof(o->region), k->region);
    coffer_str_copy(o->id, sizeof(o->id), k->key_id);
}

/*
 * Opens `ciphertext` for the caller: the blob names its key; `key_ref` (optional) must name the
 * same key. Plaintext goes to `pt` (secret). With `dry` the checks run but nothing is opened
 * and COFFER_ERR_DRY_RUN is returned.
 */
static coffer_err open_blob(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                            const char *action, coffer_cursor ciphertext, const char *key_ref, int alg,
                            const json_t *ec, bool dry, coffer_buf *pt, struct opened *o)
{
    struct kms_blob b;
    struct kms_key *k = NULL;
    char blob_arn[KMS_BLOB_ARN_MAX + 1], want_arn[KMS_ARN_MAX] = "", prefix[64];
    TRY(kms_blob_parse(ciphertext, &b));
    memcpy(blob_arn, b.key_arn.ptr, b.key_arn.len);
    blob_arn[b.key_arn.len] = '\0';
    /* A multi-Region key's ciphertext is opened by any related multi-Region key: the same key
     * id here stands for the key of the region the blob names. */
    TRY(kms_mrk_local_arn(call->region, blob_arn, sizeof(blob_arn)));
    /* A blob of another region or partition cannot be ours: same answer as any bad blob. */
    snprintf(prefix, sizeof(prefix), "arn:aws:kms:%s:", call->region);
    if (strncmp(blob_arn, prefix, strlen(prefix)) != 0 || strstr(blob_arn, ":key/") == NULL) {
        return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    if (key_ref != NULL) {
        /* Only compared with the blob's key, which is the one authorized below. */
        TRY(kms_acquire(svc, call, key_ref, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
        coffer_str_copy(want_arn, sizeof(want_arn), k->arn);
        kms_release(svc);
    }
    coffer_err rc = kms_acquire(svc, call, blob_arn, KMS_REF_CROSS, &k);
    if (rc == COFFER_ERR_NOT_FOUND) {
        /* The key id travels inside the blob, unauthenticated until opened: a flipped bit there
         * must look like any other damage, not reveal which key ids exist. */
        return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    TRY(rc);
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(
        svc, call, k, &(struct kms_authz_in){.action = action, .r = r, .ec = ec, .key_ref = key_ref}));
    if (key_ref != NULL && strcmp(want_arn, k->arn) != 0) {
        rc =
            coffer_fail(COFFER_ERR_INCORRECT_KEY, "%s", coffer_err_default_message(COFFER_ERR_INCORRECT_KEY));
        goto out;
    }
    TRY_OUT(kms_check_state(k, KMS_RULE_CRYPTO));
    if (k->cks != NULL) {
        TRY_OUT(kms_cks_usable(k));
    }
    TRY_OUT(kms_check_enc_algorithm(k, alg));
    const struct kms_material *m = NULL;
    for (size_t i = 0; i < k->n_mats; i++) {
        if (crypto_memcmp(k->mats[i].id, b.material_id, KMS_MATERIAL_ID_LEN) == 0) {
            m = &k->mats[i];
        }
    }
    if (m == NULL || k->spec != KMS_SPEC_SYMMETRIC_DEFAULT) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    if (dry) {
        rc = dry_run();
        goto out;
    }
    TRY_OUT(kms_charge_quota(svc, call, k->spec));
    if (k->cks != NULL) {
        /* The blob names this key and this material; the token key is the key's only material. */
        TRY_OUT(kms_cks_decrypt(k, &b, ec, pt));
    } else {
        TRY_OUT(kms_blob_decrypt(kms_material_bytes(m), &b, ec, pt));
    }
    coffer_str_copy(o->arn, sizeof(o->arn), k->arn);
    opened_key(o, k);
    memcpy(o->material_id, m->id, KMS_MATERIAL_ID_LEN);
    o->alg = 0;
    o->spec = k->spec;
out:
    kms_release(svc);
    return rc;
}

/*
 * Opens an RSA ciphertext with the key the request names: raw OAEP output carries no key id, so
 * its Decrypt needs KeyId and the algorithm (as on AWS). *handled is false when key_ref is absent
 * or names a symmetric key, whose blob says itself which key opens it (open_blob).
 */
static coffer_err open_asym(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                            const char *action, coffer_cursor ciphertext, const char *key_ref, int alg,
                            const json_t *ec, bool dry, coffer_buf *pt, struct opened *o, bool *handled)
{
    struct kms_key *k;
    coffer_err rc = COFFER_OK;
    *handled = false;
    if (key_ref == NULL) {
        return COFFER_OK;
    }
    TRY(kms_acquire(svc, call, key_ref, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    if (k->spec == KMS_SPEC_SYMMETRIC_DEFAULT) {
        kms_release(svc);
        return COFFER_OK;
    }
    *handled = true;
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(
        svc, call, k, &(struct kms_authz_in){.action = action, .r = r, .ec = ec, .key_ref = key_ref}));
    TRY_OUT(kms_check_state(k, KMS_RULE_CRYPTO));
    TRY_OUT(kms_check_usage(k, "ENCRYPT_DECRYPT", call->operation != NULL ? call->operation : action + 4));
    TRY_OUT(kms_check_enc_algorithm(k, alg));
    TRY_OUT(check_no_context(k, ec));
    if (dry) {
        rc = dry_run();
        goto out;
    }
    TRY_OUT(kms_charge_quota(svc, call, k->spec));
    TRY_OUT(kms_rsa_decrypt(k, alg, ciphertext, pt));
    snprintf(o->arn, sizeof(o->arn), "%s", k->arn);
    opened_key(o, k);
    memset(o->material_id, 0, sizeof(o->material_id));
    o->alg = alg;
    o->spec = k->spec;
out:
    kms_release(svc);
    return rc;
}

/* Opens a ciphertext of either kind: RSA with the key named, else a symmetric blob. */
static coffer_err open_any(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                           const char *action, coffer_cursor ciphertext, const char *key_ref, int alg,
                           const json_t *ec, bool dry, coffer_buf *pt, struct opened *o)
{
    bool handled;
    TRY(open_asym(svc, call, r, action, ciphertext, key_ref, alg, ec, dry, pt, o, &handled));
    if (handled) {
        return COFFER_OK;
    }
    return open_blob(svc, call, r, action, ciphertext, key_ref, alg, ec, dry, pt, o);
}

/* Sets name to the hex id of the material that did the work; symmetric keys only. */
static coffer_err set_material_of(json_t *obj, const char *name, const struct opened *o)
{
    return o->spec == KMS_SPEC_SYMMETRIC_DEFAULT ? set_material_id(obj, name, o->material_id) : COFFER_OK;
}

/* DryRun with IGNORE_CIPHERTEXT: only the key named by key_ref is checked. */
static coffer_err dry_run_key_only(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                                   const char *action, const char *key_ref, const json_t *ec, int alg)
{
    if (key_ref != NULL) {
        /* Answers the dry run itself once the key passes. */
        struct kms_key *k;
        return kms_acquire_to_encrypt(svc, call, r, action, key_ref, ec, alg, false, true, &k);
    }
    return dry_run();
}

coffer_err kms_op_Decrypt(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    coffer_buf pt = COFFER_SECRET_BUF_INIT;
    struct opened o = {.alg = 0};
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_decrypt);
    TRY(kms_req_decode(KMS_OP_Decrypt, call->input, &r));
    if (r.has_recipient) {
        FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION, "Recipient is not supported by this server yet.");
    }
    if (ignore_ciphertext(&r)) {
        rc = dry_run_key_only(svc, call, &r, "kms:Decrypt", r.key_id, r.ec, r.enc_alg);
        goto out;
    }
    if (!r.has_ciphertext) {
        rc = missing_ciphertext();
        goto out;
    }
    TRY_OUT(open_any(svc, call, &r, "kms:Decrypt", coffer_buf_cursor(&r.ciphertext), r.key_id, r.enc_alg,
                     r.ec, r.dry_run, &pt, &o));
    call->output = kms_out_key(o.arn, kms_enc_algorithms[o.alg]);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "Plaintext", coffer_buf_cursor(&pt), true));
    TRY_OUT(set_material_of(call->output, "KeyMaterialId", &o));
    kms_usage_note(svc, call, o.acct, o.region, o.id, "Decrypt");
out:
    coffer_buf_free(&pt);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_ReEncrypt(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    coffer_buf pt = COFFER_SECRET_BUF_INIT, blob = COFFER_BUF_INIT;
    struct opened o = {.alg = 0};
    struct kms_key *k = NULL;
    coffer_err rc = COFFER_OK;
    struct opened dst;
    kms_audit_request(call, audit_reencrypt);
    TRY(kms_req_decode(KMS_OP_ReEncrypt, call->input, &r));
    bool ignore = ignore_ciphertext(&r);
    if (!ignore && !r.has_ciphertext) {
        rc = missing_ciphertext();
        goto out;
    }
    if (ignore && r.source_key_id != NULL) {
        rc = dry_run_key_only(svc, call, &r, "kms:ReEncryptFrom", r.source_key_id, r.src_ec, r.src_enc_alg);
        if (rc != COFFER_ERR_DRY_RUN) {
            goto out;
        }
    } else if (!ignore) {
        /* Source checked first: a dry run still proves the ciphertext opens with the context. */
        TRY_OUT(open_any(svc, call, &r, "kms:ReEncryptFrom", coffer_buf_cursor(&r.ciphertext),
                         r.source_key_id, r.src_enc_alg, r.src_ec, false, &pt, &o));
    }
    TRY_OUT(kms_acquire_to_encrypt(svc, call, &r, "kms:ReEncryptTo", r.destination_key_id, r.dst_ec,
                                   r.dst_enc_alg, false, r.dry_run || ignore, &k));
    rc = kms_encrypt_with(k, r.dst_ec, r.dst_enc_alg, coffer_buf_cursor(&pt), &blob);
    snprintf(dst.arn, sizeof(dst.arn), "%s", k->arn);
    opened_key(&dst, k);
    memcpy(dst.material_id, k->mats[k->current].id, KMS_MATERIAL_ID_LEN);
    dst.spec = k->spec;
    dst.alg = r.dst_enc_alg < 0 ? 0 : r.dst_enc_alg;
    kms_release(svc);
    TRY_OUT(rc);
    call->output =
        json_pack("{s:s,s:s,s:s,s:s}", "SourceKeyId", o.arn, "KeyId", dst.arn, "SourceEncryptionAlgorithm",
                  kms_enc_algorithms[o.alg], "DestinationEncryptionAlgorithm", kms_enc_algorithms[dst.alg]);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "CiphertextBlob", coffer_buf_cursor(&blob), false));
    TRY_OUT(set_material_of(call->output, "SourceKeyMaterialId", &o));
    TRY_OUT(set_material_of(call->output, "DestinationKeyMaterialId", &dst));
    /* Both keys did their part of one successful ReEncrypt. */
    kms_usage_note(svc, call, o.acct, o.region, o.id, "ReEncrypt");
    kms_usage_note(svc, call, dst.acct, dst.region, dst.id, "ReEncrypt");
out:
    coffer_buf_free(&pt);
    coffer_buf_free(&blob);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Data keys and random                                                                       */
/* ------------------------------------------------------------------------------------------ */

static coffer_err generate_data_key(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                    bool with_plain)
{
    struct kms_req r;
    struct kms_key *k = NULL;
    coffer_buf dk = COFFER_SECRET_BUF_INIT, blob = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    uint8_t mid[KMS_MATERIAL_ID_LEN];
    char arn[KMS_ARN_MAX];
    kms_audit_request(call, audit_gdk);
    TRY(kms_req_decode(op, call->input, &r));
    if (r.has_recipient) {
        rc = unsupported_recipient();
        goto out;
    }
    if (r.has_number_of_bytes == (r.data_key_spec >= 0)) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "Please specify either number of bytes or key spec.");
    }
    size_t n = r.has_number_of_bytes ? (size_t)r.number_of_bytes : (r.data_key_spec == 0 ? 32 : 16);
    char action[64];
    snprintf(action, sizeof(action), "kms:%s", kms_op_name(op));
    /* No EncryptionAlgorithm in these requests: -1. */
    TRY_OUT(kms_acquire_to_encrypt(svc, call, &r, action, r.key_id, r.ec, -1, true, r.dry_run, &k));
    rc = data_key_with(k, r.ec, n, &dk, &blob);
    if (rc == COFFER_OK) {
        KMS_USAGE_NOTE(svc, call, k, kms_op_name(op));
    }
    coffer_str_copy(arn, sizeof(arn), k->arn);
    memcpy(mid, k->mats[k->current].id, KMS_MATERIAL_ID_LEN);
    kms_release(svc);
    TRY_OUT(rc);
    call->output = kms_out_key(arn, NULL);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "CiphertextBlob", coffer_buf_cursor(&blob), false));
    if (with_plain) {
        TRY_OUT(kms_out_blob(call->output, "Plaintext", coffer_buf_cursor(&dk), true));
    }
    TRY_OUT(set_material_id(call->output, "KeyMaterialId", mid));
out:
    coffer_buf_free(&dk);
    coffer_buf_free(&blob);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_GenerateDataKey(void *state, struct api_call *call)
{
    return generate_data_key(state, call, KMS_OP_GenerateDataKey, true);
}

coffer_err kms_op_GenerateDataKeyWithoutPlaintext(void *state, struct api_call *call)
{
    return generate_data_key(state, call, KMS_OP_GenerateDataKeyWithoutPlaintext, false);
}

coffer_err kms_op_GenerateRandom(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    json_t *store_rec = NULL;
    coffer_buf rnd = COFFER_SECRET_BUF_INIT;
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_random);
    TRY(kms_req_decode(KMS_OP_GenerateRandom, call->input, &r));
    TRY_OUT(kms_authorize_plain(state, call, "kms:GenerateRandom", "*", &r));
    if (!r.has_number_of_bytes) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "NumberOfBytes is required.");
    }
    if (r.has_recipient) {
        rc = unsupported_recipient();
        goto out;
    }
    TRY_OUT(coffer_buf_reserve(&rnd, (size_t)r.number_of_bytes));
    if (r.custom_key_store_id != NULL) {
        /* From the token of the caller's store, as AWS takes them from the store's cluster. */
        TRY_OUT(kms_cks_record_get(svc, call->caller->account_id, call->region, r.custom_key_store_id,
                                   &store_rec));
        TRY_OUT(kms_cks_random(svc->cks, r.custom_key_store_id, rnd.data, (size_t)r.number_of_bytes));
    } else {
        TRY_OUT(crypto_random(rnd.data, (size_t)r.number_of_bytes));
    }
    rnd.len = (size_t)r.number_of_bytes;
    call->output = json_object();
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "Plaintext", coffer_buf_cursor(&rnd), true));
out:
    json_decref(store_rec);
    coffer_buf_free(&rnd);
    kms_req_clean(&r);
    return rc;
}

/* Key agreement needs a KEY_AGREEMENT key, which CreateKey does not make: every key refuses it. */
coffer_err kms_op_DeriveSharedSecret(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "KeyAgreementAlgorithm", "GrantTokens", "DryRun", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_DeriveSharedSecret, call->input, &r));
    coffer_err rc = kms_acquire(svc, call, r.key_id, KMS_REF_ALIAS | KMS_REF_CROSS, &k);
    if (rc != COFFER_OK) {
        kms_req_clean(&r);
        return rc;
    }
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(
        svc, call, k,
        &(struct kms_authz_in){.action = "kms:DeriveSharedSecret", .r = &r, .key_ref = r.key_id}));
    TRY_OUT(kms_check_state(k, KMS_RULE_CRYPTO));
    rc = coffer_fail(COFFER_ERR_INVALID_KEY_USAGE,
                     "%s key usage is %s which is not valid for DeriveSharedSecret.", k->arn,
                     json_string_value(json_object_get(k->rec, "KeyUsage")));
out:
    kms_release(svc);
    kms_req_clean(&r);
    return rc;
}
