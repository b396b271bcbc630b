/*
 * Asymmetric KMS keys (kms.md §8): Sign, Verify, GetPublicKey, GenerateDataKeyPair and
 * GenerateDataKeyPairWithoutPlaintext, plus what the other operations need to know about key
 * specs: which algorithms a spec and usage offer (KeyMetadata, GetPublicKey), RSA-OAEP for
 * Encrypt/Decrypt/ReEncrypt, and the RSA and ECC request quotas.
 *
 * RSA and ECC keys sign and decrypt with the key pair parsed once when the key was cached
 * (kms_material.h), under the shared lock like the symmetric operations. Messages and private
 * keys live in secret buffers; audit records carry neither (kms_service.c's sensitive members).
 */
#include <stdio.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Algorithms by key spec                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Indexes of kms_enc_algorithms (kms_input.c). */
enum { ENC_SYMMETRIC_DEFAULT = 0, ENC_RSAES_OAEP_SHA_1 = 1, ENC_RSAES_OAEP_SHA_256 = 2 };

/* What a SigningAlgorithmSpec means, by its index in kms_sign_algorithms. */
struct sign_alg_info {
    enum kms_spec_family family; /* KMS_FAMILY_UNSUPPORTED: no key here can use it */
    enum crypto_sig_scheme scheme;
    enum crypto_digest digest;
};

static const struct sign_alg_info sign_algs[] = {
    {KMS_FAMILY_RSA, CRYPTO_SIG_RSA_PSS, CRYPTO_SHA256},       /* RSASSA_PSS_SHA_256 */
    {KMS_FAMILY_RSA, CRYPTO_SIG_RSA_PSS, CRYPTO_SHA384},       /* RSASSA_PSS_SHA_384 */
    {KMS_FAMILY_RSA, CRYPTO_SIG_RSA_PSS, CRYPTO_SHA512},       /* RSASSA_PSS_SHA_512 */
    {KMS_FAMILY_RSA, CRYPTO_SIG_RSA_PKCS1, CRYPTO_SHA256},     /* RSASSA_PKCS1_V1_5_SHA_256 */
    {KMS_FAMILY_RSA, CRYPTO_SIG_RSA_PKCS1, CRYPTO_SHA384},     /* RSASSA_PKCS1_V1_5_SHA_384 */
    {KMS_FAMILY_RSA, CRYPTO_SIG_RSA_PKCS1, CRYPTO_SHA512},     /* RSASSA_PKCS1_V1_5_SHA_512 */
    {KMS_FAMILY_ECC, CRYPTO_SIG_ECDSA, CRYPTO_SHA256},         /* ECDSA_SHA_256 */
    {KMS_FAMILY_ECC, CRYPTO_SIG_ECDSA, CRYPTO_SHA384},         /* ECDSA_SHA_384 */
    {KMS_FAMILY_ECC, CRYPTO_SIG_ECDSA, CRYPTO_SHA512},         /* ECDSA_SHA_512 */
    {KMS_FAMILY_UNSUPPORTED, CRYPTO_SIG_ECDSA, CRYPTO_SHA256}, /* SM2DSA */
    {KMS_FAMILY_UNSUPPORTED, CRYPTO_SIG_ECDSA, CRYPTO_SHA256}, /* ML_DSA_SHAKE_256 */
    {KMS_FAMILY_UNSUPPORTED, CRYPTO_SIG_ECDSA, CRYPTO_SHA256}, /* ED25519_SHA_512 */
    {KMS_FAMILY_UNSUPPORTED, CRYPTO_SIG_ECDSA, CRYPTO_SHA256}, /* ED25519_PH_SHA_512 */
};

/* AWS pairs each curve with one ECDSA digest: P-256 and secp256k1 SHA-256, P-384 SHA-384, P-521 SHA-512. */
static enum crypto_digest ecc_digest(enum kms_spec spec)
{
    return spec == KMS_SPEC_ECC_NIST_P384   ? CRYPTO_SHA384
           : spec == KMS_SPEC_ECC_NIST_P521 ? CRYPTO_SHA512
                                            : CRYPTO_SHA256;
}

static bool sign_alg_fits(enum kms_spec spec, int alg)
{
    const struct sign_alg_info *a = &sign_algs[alg];
    if (a->family != kms_spec_family(spec)) {
        return false;
    }
    return a->family != KMS_FAMILY_ECC || a->digest == ecc_digest(spec);
}

static coffer_err append_names(json_t *arr, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        if (json_array_append_new(arr, json_string(names[i])) != 0) {
            return kms_nomem();
        }
    }
    return COFFER_OK;
}

coffer_err kms_set_algorithms(json_t *obj, enum kms_spec spec, const char *usage)
{
    static const char *const sym[] = {"SYMMETRIC_DEFAULT", NULL};
    static const char *const oaep[] = {"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", NULL};
    /* In the order DescribeKey lists them on AWS. */
    static const char *const rsa_sign[] = {"RSASSA_PKCS1_V1_5_SHA_256",
                                           "RSASSA_PKCS1_V1_5_SHA_384",
                                           "RSASSA_PKCS1_V1_5_SHA_512",
                                           "RSASSA_PSS_SHA_256",
                                           "RSASSA_PSS_SHA_384",
                                           "RSASSA_PSS_SHA_512",
                                           NULL};
    static const char *const ecdsa[][2] = {
        {"ECDSA_SHA_256", NULL}, {"ECDSA_SHA_384", NULL}, {"ECDSA_SHA_512", NULL}};
    static const char *const macs[][2] = {
        {"HMAC_SHA_224", NULL}, {"HMAC_SHA_256", NULL}, {"HMAC_SHA_384", NULL}, {"HMAC_SHA_512", NULL}};
    const char *member = NULL;
    const char *const *names = NULL;
    enum kms_spec_family fam = kms_spec_family(spec);
    if (strcmp(usage, "ENCRYPT_DECRYPT") == 0 && fam == KMS_FAMILY_SYMMETRIC) {
        member = "EncryptionAlgorithms", names = sym;
    } else if (strcmp(usage, "ENCRYPT_DECRYPT") == 0 && fam == KMS_FAMILY_RSA) {
        member = "EncryptionAlgorithms", names = oaep;
    } else if (strcmp(usage, "SIGN_VERIFY") == 0 && fam == KMS_FAMILY_RSA) {
        member = "SigningAlgorithms", names = rsa_sign;
    } else if (strcmp(usage, "SIGN_VERIFY") == 0 && fam == KMS_FAMILY_ECC) {
        member = "SigningAlgorithms", names = ecdsa[ecc_digest(spec)];
    } else if (strcmp(usage, "GENERATE_VERIFY_MAC") == 0 && fam == KMS_FAMILY_HMAC) {
        member = "MacAlgorithms", names = macs[spec - KMS_SPEC_HMAC_224];
    } else {
        return COFFER_OK;
    }
    json_t *arr = json_array();
    if (arr == NULL || json_object_set_new(obj, member, arr) != 0) {
        return kms_nomem();
    }
    return append_names(arr, names);
}

const char *kms_key_usage(const struct kms_key *k)
{
    const char *u = json_string_value(json_object_get(k->rec, "KeyUsage"));
    return u != NULL ? u : "ENCRYPT_DECRYPT";
}

coffer_err kms_check_usage(const struct kms_key *k, const char *usage, const char *op)
{
    const char *have = kms_key_usage(k);
    if (strcmp(have, usage) != 0) {
        return coffer_fail(COFFER_ERR_INVALID_KEY_USAGE, "%s key usage is %s which is not valid for %s.",
                           k->arn, have, op);
    }
    return COFFER_OK;
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], s) == 0) {
            return true;
        }
    }
    return false;
}

bool kms_grant_op_fits(const struct kms_key *k, const char *op)
{
    static const char *const any[] = {"CreateGrant", "RetireGrant", "DescribeKey", NULL};
    static const char *const symmetric[] = {"Decrypt",
                                            "Encrypt",
                                            "GenerateDataKey",
                                            "GenerateDataKeyWithoutPlaintext",
                                            "ReEncryptFrom",
                                            "ReEncryptTo",
                                            "GenerateDataKeyPair",
                                            "GenerateDataKeyPairWithoutPlaintext",
                                            NULL};
    static const char *const rsa_encrypt[] = {"Decrypt",     "Encrypt",      "ReEncryptFrom",
                                              "ReEncryptTo", "GetPublicKey", NULL};
    static const char *const sign[] = {"Sign", "Verify", "GetPublicKey", NULL};
    static const char *const mac[] = {"GenerateMac", "VerifyMac", NULL};
    if (in_list(any, op)) {
        return true;
    }
    bool encrypt = strcmp(kms_key_usage(k), "ENCRYPT_DECRYPT") == 0;
    switch (kms_spec_family(k->spec)) {
    case KMS_FAMILY_SYMMETRIC:
        return in_list(symmetric, op);
    case KMS_FAMILY_RSA:
        return in_list(encrypt ? rsa_encrypt : sign, op);
    case KMS_FAMILY_ECC:
        return in_list(sign, op);
    case KMS_FAMILY_HMAC:
        return in_list(mac, op);
    default:
        return false;
    }
}

static coffer_err incompatible(const char *alg, enum kms_spec spec)
{
    return coffer_fail(COFFER_ERR_INVALID_KEY_USAGE, "Algorithm %s is incompatible with key spec %s.", alg,
                       kms_spec_name(spec));
}

coffer_err kms_check_enc_algorithm(const struct kms_key *k, int alg)
{
    if (kms_spec_family(k->spec) == KMS_FAMILY_RSA) {
        if (alg != ENC_RSAES_OAEP_SHA_1 && alg != ENC_RSAES_OAEP_SHA_256) {
            /* No algorithm means SYMMETRIC_DEFAULT, which an RSA key cannot do. */
            return incompatible(kms_enc_algorithms[alg < 0 ? ENC_SYMMETRIC_DEFAULT : alg], k->spec);
        }
        return COFFER_OK;
    }
    if (alg > ENC_SYMMETRIC_DEFAULT) {
        return incompatible(kms_enc_algorithms[alg], k->spec);
    }
    return COFFER_OK;
}

static enum crypto_oaep_hash oaep_hash(int alg)
{
    return alg == ENC_RSAES_OAEP_SHA_1 ? CRYPTO_OAEP_SHA1 : CRYPTO_OAEP_SHA256;
}

coffer_err kms_rsa_encrypt(const struct kms_key *k, int alg, coffer_cursor pt, coffer_buf *out)
{
    const crypto_pkey *pair = k->mats[k->current].pair;
    size_t max = crypto_pkey_oaep_max_plaintext(pair, oaep_hash(alg));
    if (pt.len > max) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "Algorithm %s and key spec %s cannot encrypt data larger than %zu bytes.",
                           kms_enc_algorithms[alg], kms_spec_name(k->spec), max);
    }
    return crypto_pkey_oaep_encrypt(pair, oaep_hash(alg), pt, out);
}

coffer_err kms_rsa_decrypt(const struct kms_key *k, int alg, coffer_cursor ct, coffer_buf *out)
{
    /* Any material of the key: an RSA key is never rotated, but a ciphertext names none. */
    for (size_t i = 0; i < k->n_mats; i++) {
        if (crypto_pkey_oaep_decrypt(k->mats[i].pair, oaep_hash(alg), ct, out) == COFFER_OK) {
            return COFFER_OK;
        }
    }
    return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
}

coffer_err kms_charge_quota(const struct kms_service *svc, struct api_call *call, enum kms_spec spec)
{
    if (call->quota_take == NULL) {
        return COFFER_OK;
    }
    const char *bucket = "crypto";
    double rps = 0;
    switch (kms_spec_family(spec)) {
    case KMS_FAMILY_RSA:
        bucket = "kms:crypto-rsa", rps = svc->limits.rsa_rps;
        break;
    case KMS_FAMILY_ECC:
        bucket = "kms:crypto-ecc", rps = svc->limits.ecc_rps;
        break;
    default:
        break;
    }
    /* Once per request: a second key of the same request (ReEncrypt) is not charged again. */
    bool ok = call->quota_take(call->quota_ctx, bucket, rps);
    call->quota_take = NULL;
    return ok ? COFFER_OK : coffer_fail(COFFER_ERR_THROTTLING, "%s", "");
}

/* ------------------------------------------------------------------------------------------ */
/* Sign and Verify                                                                            */
/* ------------------------------------------------------------------------------------------ */

static const char *const audit_sign[] = {"KeyId",       "MessageType", "SigningAlgorithm",
                                         "GrantTokens", "DryRun",      NULL};

static coffer_err dry_run(void)
{
    return coffer_fail(COFFER_ERR_DRY_RUN, "%s", coffer_err_default_message(COFFER_ERR_DRY_RUN));
}

/* The digest to sign or verify: the message's (RAW) or the message itself (DIGEST), exact length. */
static coffer_err message_digest(const struct kms_req *r, enum crypto_digest d, uint8_t out[64])
{
    int type = r->message_type < 0 ? 0 : r->message_type;
    const char *alg = kms_sign_algorithms[r->sign_alg];
    if (strcmp(kms_message_types[type], "RAW") == 0) {
        return crypto_digest(d, coffer_buf_cursor(&r->message), out);
    }
    if (strcmp(kms_message_types[type], "DIGEST") != 0) {
        return coffer_fail(COFFER_ERR_VALIDATION, "Message type %s is incompatible with algorithm %s.",
                           kms_message_types[type], alg);
    }
    if (r->message.len != crypto_digest_len(d)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "Digest is invalid length for algorithm %s.", alg);
    }
    memcpy(out, r->message.data, r->message.len);
    return COFFER_OK;
}

static coffer_err sign_or_verify(struct kms_service *svc, struct api_call *call, enum kms_op_id op)
{
    bool sign = op == KMS_OP_Sign;
    struct kms_req r;
    struct kms_key *k = NULL;
    coffer_buf sig = COFFER_BUF_INIT;
    uint8_t dg[64];
    char arn[KMS_ARN_MAX];
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_sign);
    TRY(kms_req_decode(op, call->input, &r));
    TRY_OUT(kms_acquire(svc, call, r.key_id, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    rc = kms_authorize_key(
        svc, call, k,
        &(struct kms_authz_in){.action = sign ? "kms:Sign" : "kms:Verify", .r = &r, .key_ref = r.key_id});
    if (rc == COFFER_OK) {
        rc = kms_check_state(k, KMS_RULE_CRYPTO);
    }
    if (rc == COFFER_OK) {
        rc = kms_check_usage(k, "SIGN_VERIFY", kms_op_name(op));
    }
    if (rc == COFFER_OK && !sign_alg_fits(k->spec, r.sign_alg)) {
        rc = incompatible(kms_sign_algorithms[r.sign_alg], k->spec);
    }
    const struct sign_alg_info *a = &sign_algs[r.sign_alg];
    if (rc == COFFER_OK) {
        rc = message_digest(&r, a->digest, dg);
    }
    if (rc == COFFER_OK && r.dry_run) {
        rc = dry_run();
    }
    if (rc == COFFER_OK) {
        rc = kms_charge_quota(svc, call, k->spec);
    }
    if (rc == COFFER_OK) {
        const crypto_pkey *pair = k->mats[k->current].pair;
        coffer_cursor digest = coffer_cursor_from(dg, crypto_digest_len(a->digest));
        rc = sign ? crypto_pkey_sign(pair, a->scheme, a->digest, digest, &sig)
                  : crypto_pkey_verify(pair, a->scheme, a->digest, digest, coffer_buf_cursor(&r.signature));
    }
    if (rc == COFFER_OK) {
        KMS_USAGE_NOTE(svc, call, k, kms_op_name(op));
    }
    snprintf(arn, sizeof(arn), "%s", k->arn);
    kms_release(svc);
    TRY_OUT(rc);
    call->output =
        sign ? json_pack("{s:s,s:s}", "KeyId", arn, "SigningAlgorithm", kms_sign_algorithms[r.sign_alg])
             : json_pack("{s:s,s:b,s:s}", "KeyId", arn, "SignatureValid", 1, "SigningAlgorithm",
                         kms_sign_algorithms[r.sign_alg]);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    if (sign) {
        TRY_OUT(kms_out_blob(call->output, "Signature", coffer_buf_cursor(&sig), false));
    }
out:
    coffer_secure_zero(dg, sizeof(dg));
    coffer_buf_free(&sig);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_Sign(void *state, struct api_call *call)
{
    return sign_or_verify(state, call, KMS_OP_Sign);
}

coffer_err kms_op_Verify(void *state, struct api_call *call)
{
    return sign_or_verify(state, call, KMS_OP_Verify);
}

/* ------------------------------------------------------------------------------------------ */
/* GetPublicKey                                                                               */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_op_GetPublicKey(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "GrantTokens", NULL};
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    coffer_buf spki = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(KMS_OP_GetPublicKey, call->input, &r));
    TRY_OUT(kms_acquire(svc, call, r.key_id, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    kms_audit_key(call, k);
    rc = kms_authorize_key(
        svc, call, k, &(struct kms_authz_in){.action = "kms:GetPublicKey", .r = &r, .key_ref = r.key_id});
    /* A disabled key still shows its public key (kms.md §8); one pending deletion does not. */
    if (rc == COFFER_OK) {
        rc = kms_check_state(k, KMS_RULE_NOT_PENDING);
    }
    enum kms_spec_family fam = kms_spec_family(k->spec);
    if (rc == COFFER_OK && fam != KMS_FAMILY_RSA && fam != KMS_FAMILY_ECC) {
        rc = coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                         "%s is not an asymmetric KMS key: key spec %s has no public key.", k->arn,
                         kms_spec_name(k->spec));
    }
    if (rc == COFFER_OK) {
        rc = crypto_pkey_public_der(k->mats[k->current].pair, &spki);
    }
    if (rc == COFFER_OK) {
        const char *spec = kms_spec_name(k->spec);
        call->output = json_pack("{s:s,s:s,s:s,s:s}", "KeyId", k->arn, "KeySpec", spec,
                                 "CustomerMasterKeySpec", spec, "KeyUsage", kms_key_usage(k));
        rc = call->output != NULL ? kms_set_algorithms(call->output, k->spec, kms_key_usage(k)) : kms_nomem();
    }
    kms_release(svc);
    TRY_OUT(rc);
    TRY_OUT(kms_out_blob(call->output, "PublicKey", coffer_buf_cursor(&spki), false));
out:
    coffer_buf_free(&spki);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* GenerateDataKeyPair(WithoutPlaintext)                                                      */
/* ------------------------------------------------------------------------------------------ */

/* KeyPairSpec (index of kms_key_pair_specs) to the pair type; false for SM2 and Ed25519. */
static bool pair_type(int spec, enum crypto_pkey_type *out)
{
    static const enum crypto_pkey_type types[] = {
        CRYPTO_PKEY_RSA_2048, CRYPTO_PKEY_RSA_3072, CRYPTO_PKEY_RSA_4096,    CRYPTO_PKEY_EC_P256,
        CRYPTO_PKEY_EC_P384,  CRYPTO_PKEY_EC_P521,  CRYPTO_PKEY_EC_SECP256K1};
    if (spec < 0 || (size_t)spec >= sizeof(types) / sizeof(types[0])) {
        return false;
    }
    *out = types[spec];
    return true;
}

/*
 * AWS meters GenerateDataKeyPair(WithoutPlaintext) apart from every other operation, in one
 * bucket per KeyPairSpec, both operations sharing it (kms.md §9): a pair costs a key
 * generation, RSA ones most. Indexed like kms_key_pair_specs (RSA_2048 .. ECC_SECG_P256K1).
 */
static const double pair_rps[] = {1, 0.5, 0.1, 25, 10, 5, 25};

static coffer_err charge_pair_quota(struct api_call *call, int spec)
{
    if (call->quota_take == NULL || spec < 0 || (size_t)spec >= sizeof(pair_rps) / sizeof(pair_rps[0])) {
        return COFFER_OK;
    }
    char bucket[48];
    snprintf(bucket, sizeof(bucket), "kms:pair-%s", kms_key_pair_specs[spec]);
    bool ok = call->quota_take(call->quota_ctx, bucket, pair_rps[spec]);
    call->quota_take = NULL;
    return ok ? COFFER_OK : coffer_fail(COFFER_ERR_THROTTLING, "%s", "");
}

static coffer_err generate_data_key_pair(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                         bool with_plain)
{
    static const char *const audit[] = {"KeyId", "EncryptionContext", "KeyPairSpec", "GrantTokens", "DryRun",
                                        NULL};
    struct kms_req r;
    struct kms_key *k = NULL;
    crypto_pkey *pair = NULL;
    coffer_buf priv = COFFER_SECRET_BUF_INIT, pub = COFFER_BUF_INIT, blob = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    enum crypto_pkey_type type;
    char arn[KMS_ARN_MAX], action[64];
    uint8_t mid[KMS_MATERIAL_ID_LEN];
    kms_audit_request(call, audit);
    TRY(kms_req_decode(op, call->input, &r));
    if (r.has_recipient) {
        FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION, "Recipient is not supported by this server yet.");
    }
    snprintf(action, sizeof(action), "kms:%s", kms_op_name(op));
    /* Authorized and checked before the (slow) key generation, which runs with no lock held. */
    /* The wrapping key's bucket is not this request's: the pair's is, charged below. */
    bool (*quota_take)(void *, const char *, double) = call->quota_take;
    call->quota_take = NULL;
    rc = kms_acquire_to_encrypt(svc, call, &r, action, r.key_id, r.ec, -1, true, r.dry_run, &k);
    call->quota_take = quota_take;
    TRY_OUT(rc);
    kms_release(svc);
    if (!pair_type(r.key_pair_spec, &type)) {
        FAIL_OUT(COFFER_ERR_UNSUPPORTED_OPERATION, "KeyPairSpec %s is not supported by this server.",
                 kms_key_pair_specs[r.key_pair_spec]);
    }
    /* Before the generation, which is what the quota protects. */
    TRY_OUT(charge_pair_quota(call, r.key_pair_spec));
    TRY_OUT(crypto_pkey_generate(type, &pair));
    TRY_OUT(crypto_pkey_private_der(pair, &priv));
    TRY_OUT(crypto_pkey_public_der(pair, &pub));
    /* The key may have changed state meanwhile: checked again before it encrypts. */
    TRY_OUT(kms_acquire(svc, call, r.key_id, KMS_REF_ALIAS | KMS_REF_CROSS, &k));
    rc = kms_check_state(k, KMS_RULE_CRYPTO);
    if (rc == COFFER_OK) {
        rc = kms_encrypt_with(k, r.ec, -1, coffer_buf_cursor(&priv), &blob);
    }
    if (rc == COFFER_OK) {
        KMS_USAGE_NOTE(svc, call, k, kms_op_name(op));
    }
    snprintf(arn, sizeof(arn), "%s", k->arn);
    memcpy(mid, k->mats[k->current].id, KMS_MATERIAL_ID_LEN);
    kms_release(svc);
    TRY_OUT(rc);
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    coffer_hex_encode(mid, KMS_MATERIAL_ID_LEN, hex);
    call->output = json_pack("{s:s,s:s,s:s}", "KeyId", arn, "KeyPairSpec",
                             kms_key_pair_specs[r.key_pair_spec], "KeyMaterialId", hex);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "PrivateKeyCiphertextBlob", coffer_buf_cursor(&blob), false));
    TRY_OUT(kms_out_blob(call->output, "PublicKey", coffer_buf_cursor(&pub), false));
    if (with_plain) {
        TRY_OUT(kms_out_blob(call->output, "PrivateKeyPlaintext", coffer_buf_cursor(&priv), true));
    }
out:
    crypto_pkey_free(pair);
    coffer_buf_free(&priv);
    coffer_buf_free(&pub);
    coffer_buf_free(&blob);
    kms_req_clean(&r);
    return rc;
}

coffer_err kms_op_GenerateDataKeyPair(void *state, struct api_call *call)
{
    return generate_data_key_pair(state, call, KMS_OP_GenerateDataKeyPair, true);
}

coffer_err kms_op_GenerateDataKeyPairWithoutPlaintext(void *state, struct api_call *call)
{
    return generate_data_key_pair(state, call, KMS_OP_GenerateDataKeyPairWithoutPlaintext, false);
}
