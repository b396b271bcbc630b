/*
 * MAC operations (kms.md §8 "GenerateMac", "VerifyMac"): HMAC (RFC 2104) over the request's
 * Message with the cached material of an HMAC_224/256/384/512 key, whose spec fixes the one
 * MacAlgorithm it accepts. Same hot path as Encrypt: decode, resolve under the shared lock,
 * compute, base64 out; no store access.
 *
 * The Message is secret (locked buffer, never in the audit record); a computed MAC is wiped
 * once it has been written out or compared.
 */
#include <stdio.h>
#include <string.h>

#include "common/secret.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

static const char *const audit_mac[] = {"KeyId", "MacAlgorithm", "GrantTokens", "DryRun", NULL};

/* MacAlgorithmSpec, in the order of kms_mac_algorithms[]: the key spec and digest of each. */
static const struct {
    enum kms_spec spec;
    enum crypto_digest digest;
} mac_algs[] = {
    {KMS_SPEC_HMAC_224, CRYPTO_SHA224},
    {KMS_SPEC_HMAC_256, CRYPTO_SHA256},
    {KMS_SPEC_HMAC_384, CRYPTO_SHA384},
    {KMS_SPEC_HMAC_512, CRYPTO_SHA512},
};

/* The checks of AWS on a MAC request's key, after authorization and state. */
static coffer_err check_mac_key(const struct kms_key *k, const char *op, int alg)
{
    const char *usage = json_string_value(json_object_get(k->rec, "KeyUsage"));
    if (kms_spec_family(k->spec) != KMS_FAMILY_HMAC || usage == NULL ||
        strcmp(usage, "GENERATE_VERIFY_MAC") != 0) {
        return coffer_fail(COFFER_ERR_INVALID_KEY_USAGE, "%s key usage is %s which is not valid for %s.",
                           k->arn, usage != NULL ? usage : "ENCRYPT_DECRYPT", op);
    }
    if (mac_algs[alg].spec != k->spec) {
        return coffer_fail(COFFER_ERR_INVALID_KEY_USAGE, "Algorithm %s is incompatible with key spec %s.",
                           kms_mac_algorithms[alg], kms_spec_name(k->spec));
    }
    return COFFER_OK;
}

/*
 * Resolves the request's key, authorizes `op`, checks state, usage and algorithm, answers a
 * DryRun, and computes the MAC of r->plaintext into mac (CRYPTO_MAX_DIGEST_LEN bytes; *mac_len
 * set). arn receives the key's ARN. Nothing is held on return.
 */
static coffer_err mac_compute(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                              enum kms_op_id op, uint8_t mac[CRYPTO_MAX_DIGEST_LEN], size_t *mac_len,
                              char arn[KMS_ARN_MAX])
{
    struct kms_key *k = NULL;
    char action[64];
    coffer_err rc = COFFER_OK;
    snprintf(action, sizeof(action), "kms:%s", kms_op_name(op));
    TRY(kms_acquire(svc, call, r->key_id, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(svc, call, k,
                              &(struct kms_authz_in){.action = action, .r = r, .key_ref = r->key_id}));
    TRY_OUT(kms_check_state(k, KMS_RULE_CRYPTO));
    TRY_OUT(check_mac_key(k, kms_op_name(op), r->mac_alg));
    if (r->dry_run) {
        FAIL_OUT(COFFER_ERR_DRY_RUN, "%s", coffer_err_default_message(COFFER_ERR_DRY_RUN));
    }
    /* An Enabled key holds its material (PendingImport was refused above); checked all the same,
     * as an index into nothing would be worse than a refusal. */
    if (k->n_mats == 0) {
        FAIL_OUT(COFFER_ERR_INVALID_STATE, "%s is pending import.", k->arn);
    }
    enum crypto_digest d = mac_algs[r->mac_alg].digest;
    TRY_OUT(crypto_hmac(d, kms_material_bytes(&k->mats[k->current]), coffer_buf_cursor(&r->plaintext), mac));
    *mac_len = crypto_digest_len(d);
    snprintf(arn, KMS_ARN_MAX, "%s", k->arn);
out:
    kms_release(svc);
    return rc;
}

coffer_err kms_op_GenerateMac(void *state, struct api_call *call)
{
    struct kms_req r;
    uint8_t mac[CRYPTO_MAX_DIGEST_LEN];
    size_t mac_len = 0;
    char arn[KMS_ARN_MAX];
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_mac);
    TRY(kms_req_decode(KMS_OP_GenerateMac, call->input, &r));
    TRY_OUT(mac_compute(state, call, &r, KMS_OP_GenerateMac, mac, &mac_len, arn));
    call->output = json_pack("{s:s,s:s}", "KeyId", arn, "MacAlgorithm", kms_mac_algorithms[r.mac_alg]);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "Mac", coffer_cursor_from(mac, mac_len), false));
    kms_usage_note_arn(state, call, arn, "GenerateMac");
out:
    coffer_secure_zero(mac, sizeof(mac));
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_VerifyMac(void *state, struct api_call *call)
{
    struct kms_req r;
    uint8_t mac[CRYPTO_MAX_DIGEST_LEN];
    size_t mac_len = 0;
    char arn[KMS_ARN_MAX];
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_mac);
    TRY(kms_req_decode(KMS_OP_VerifyMac, call->input, &r));
    TRY_OUT(mac_compute(state, call, &r, KMS_OP_VerifyMac, mac, &mac_len, arn));
    /* Constant time: a byte-by-byte early exit would tell a forger how much of a guess is right.
     * The length is not secret (it is the algorithm's). AWS's mismatch carries no message. */
    if (r.ciphertext.len != mac_len || crypto_memcmp(r.ciphertext.data, mac, mac_len) != 0) {
        FAIL_OUT(COFFER_ERR_MAC_MISMATCH, "%s", "");
    }
    call->output = json_pack("{s:s,s:b,s:s}", "KeyId", arn, "MacValid", true, "MacAlgorithm",
                             kms_mac_algorithms[r.mac_alg]);
    if (call->output == NULL) {
        rc = kms_nomem();
    } else {
        kms_usage_note_arn(state, call, arn, "VerifyMac");
    }
out:
    coffer_secure_zero(mac, sizeof(mac));
    kms_req_clean(&r);
    return rc;
}
