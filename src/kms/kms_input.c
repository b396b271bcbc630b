/*
 * Request decoders of the KMS operations: one function per operation reads the members of its
 * input shape (botocore kms 2014-11-01 model; limits in shared/api/kms.md §2 and §8) into a
 * struct kms_req, with the model's constraints. Each operation's row in kms_ops.def names its
 * decoder. The handlers run the decoded request; the json_request fuzz target runs these
 * decoders alone. No store, no seal, no locks here.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "kms/kms_internal.h"

const char *const kms_key_specs[] = {"SYMMETRIC_DEFAULT",
                                     "RSA_2048",
                                     "RSA_3072",
                                     "RSA_4096",
                                     "ECC_NIST_P256",
                                     "ECC_NIST_P384",
                                     "ECC_NIST_P521",
                                     "ECC_SECG_P256K1",
                                     "ECC_NIST_EDWARDS25519",
                                     "HMAC_224",
                                     "HMAC_256",
                                     "HMAC_384",
                                     "HMAC_512",
                                     "SM2",
                                     "ML_DSA_44",
                                     "ML_DSA_65",
                                     "ML_DSA_87",
                                     NULL};
const char *const kms_cmk_specs[] = {"RSA_2048",
                                     "RSA_3072",
                                     "RSA_4096",
                                     "ECC_NIST_P256",
                                     "ECC_NIST_P384",
                                     "ECC_NIST_P521",
                                     "ECC_SECG_P256K1",
                                     "SYMMETRIC_DEFAULT",
                                     "HMAC_224",
                                     "HMAC_256",
                                     "HMAC_384",
                                     "HMAC_512",
                                     "SM2",
                                     NULL};
const char *const kms_key_usages[] = {"SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC",
                                      "KEY_AGREEMENT", NULL};
const char *const kms_origins[] = {"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE", NULL};
const char *const kms_enc_algorithms[] = {"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256",
                                          "SM2PKE", NULL};
const char *const kms_data_key_specs[] = {"AES_256", "AES_128", NULL};
const char *const kms_dry_run_modifiers[] = {"IGNORE_CIPHERTEXT", NULL};
const char *const kms_include_key_material[] = {"ALL_KEY_MATERIAL", "ROTATIONS_ONLY", NULL};
const char *const kms_grant_operations[] = {"Decrypt",
                                            "Encrypt",
                                            "GenerateDataKey",
                                            "GenerateDataKeyWithoutPlaintext",
                                            "ReEncryptFrom",
                                            "ReEncryptTo",
                                            "Sign",
                                            "Verify",
                                            "GetPublicKey",
                                            "CreateGrant",
                                            "RetireGrant",
                                            "DescribeKey",
                                            "GenerateDataKeyPair",
                                            "GenerateDataKeyPairWithoutPlaintext",
                                            "GenerateMac",
                                            "VerifyMac",
                                            "DeriveSharedSecret",
                                            NULL};
const char *const kms_mac_algorithms[] = {"HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512",
                                          NULL};
const char *const kms_wrapping_algorithms[] = {"RSAES_PKCS1_V1_5",
                                               "RSAES_OAEP_SHA_1",
                                               "RSAES_OAEP_SHA_256",
                                               "RSA_AES_KEY_WRAP_SHA_1",
                                               "RSA_AES_KEY_WRAP_SHA_256",
                                               "SM2PKE",
                                               NULL};
const char *const kms_wrapping_key_specs[] = {"RSA_2048", "RSA_3072", "RSA_4096", "SM2", NULL};
const char *const kms_expiration_models[] = {"KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE", NULL};
const char *const kms_import_types[] = {"NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL", NULL};

const char *const kms_sign_algorithms[] = {"RSASSA_PSS_SHA_256",
                                           "RSASSA_PSS_SHA_384",
                                           "RSASSA_PSS_SHA_512",
                                           "RSASSA_PKCS1_V1_5_SHA_256",
                                           "RSASSA_PKCS1_V1_5_SHA_384",
                                           "RSASSA_PKCS1_V1_5_SHA_512",
                                           "ECDSA_SHA_256",
                                           "ECDSA_SHA_384",
                                           "ECDSA_SHA_512",
                                           "SM2DSA",
                                           "ML_DSA_SHAKE_256",
                                           "ED25519_SHA_512",
                                           "ED25519_PH_SHA_512",
                                           NULL};
const char *const kms_message_types[] = {"RAW", "DIGEST", "EXTERNAL_MU", NULL};
const char *const kms_key_pair_specs[] = {
    "RSA_2048",      "RSA_3072",        "RSA_4096", "ECC_NIST_P256",         "ECC_NIST_P384",
    "ECC_NIST_P521", "ECC_SECG_P256K1", "SM2",      "ECC_NIST_EDWARDS25519", NULL};

#define KEY_ID_MAX 2048
#define MARKER_MAX 1024
#define DESCRIPTION_MAX 8192
#define POLICY_MAX 131072
#define GRANT_TOKENS_MAX 10
/*
 * Operations is a set of GrantOperation (17 values); the model sets no list length, so a list
 * may repeat values, but a request cannot make the server walk or store an unbounded one.
 */
#define GRANT_OPERATIONS_LIST_MAX 100
#define GRANT_TOKEN_MAX 8192
bool kms_key_id_valid(const char *s)
{
    size_t n = strlen(s);
    /* Both forms are 36 characters long: the prefix tells them apart. */
    if (n == 36 && strncmp(s, "mrk-", 4) != 0) {
        for (size_t i = 0; i < n; i++) {
            char c = s[i];
            bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
                return false;
            }
        }
        return true;
    }
    if (n == 4 + 32 && strncmp(s, "mrk-", 4) == 0) {
        for (size_t i = 4; i < n; i++) {
            if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
                return false;
            }
        }
        return true;
    }
    return false;
}

/* Pattern checks the model states as regular expressions, reported in AWS form. */
static void check_pattern(api_in *in, const char *name, const char *value, bool (*ok)(unsigned char),
                          const char *pattern)
{
    if (value == NULL) {
        return;
    }
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (!ok(*p)) {
            char path[64], constraint[128];
            api_in_member_path(name, path, sizeof(path));
            snprintf(constraint, sizeof(constraint), "Member must satisfy regular expression pattern: %s",
                     pattern);
            api_in_add_error(in, path, false, value, constraint);
            return;
        }
    }
}

static bool alias_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
           c == '/' || c == '_' || c == '-';
}

static bool word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* [\u0020-\u00FF]: the JSON string is UTF-8, so code points up to U+00FF use lead bytes
 * 0x20-0x7e, 0xc2, 0xc3 and continuation bytes. */
static bool latin1_char(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) && (c < 0x80 || c == 0xc2 || c == 0xc3 || (c >= 0x80 && c <= 0xbf));
}

static bool policy_char(unsigned char c)
{
    return c == '\t' || c == '\n' || c == '\r' || latin1_char(c);
}

static coffer_err key_id(api_in *in, struct kms_req *r, unsigned flags)
{
    return api_in_string(in, "KeyId", flags, 1, KEY_ID_MAX, &r->key_id);
}

static coffer_err grant_tokens(api_in *in, struct kms_req *r)
{
    return api_in_string_list(in, "GrantTokens", 0, 0, GRANT_TOKENS_MAX, 1, GRANT_TOKEN_MAX,
                              &r->grant_tokens);
}

/*
 * An EncryptionContext map (also each grant constraint's), at most
 * KMS_MAX_ENCRYPTION_CONTEXT_BYTES of keys and values. It is authenticated data, not data: the cap
 * is far beyond any real context, and it bounds what a request makes the policy evaluator read
 * (kms:EncryptionContext:<k>, kms:EncryptionContextKeys).
 */
static coffer_err enc_context(api_in *in, const char *name, const json_t **out)
{
    TRY(api_in_string_map(in, name, 0, out));
    size_t total = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)*out, k, v)
    {
        total += strlen(k) + json_string_length(v);
    }
    if (total > KMS_MAX_ENCRYPTION_CONTEXT_BYTES) {
        char path[64], constraint[128];
        api_in_member_path(name, path, sizeof(path));
        snprintf(constraint, sizeof(constraint),
                 "Member must have keys and values of total length less than or equal to %d bytes",
                 KMS_MAX_ENCRYPTION_CONTEXT_BYTES);
        api_in_add_error(in, path, false, NULL, constraint);
    }
    return COFFER_OK;
}

static coffer_err paging(api_in *in, struct kms_req *r, int64_t max_limit)
{
    TRY(api_in_int(in, "Limit", 0, 1, max_limit, &r->limit, &r->has_limit));
    TRY(api_in_string(in, "Marker", 0, 1, MARKER_MAX, &r->marker));
    check_pattern(in, "Marker", r->marker, latin1_char, "[\\u0020-\\u00FF]*");
    return COFFER_OK;
}

static bool recipient_present(const json_t *input)
{
    const json_t *v = json_is_object(input) ? json_object_get(input, "Recipient") : NULL;
    return v != NULL && !json_is_null(v);
}

/* ------------------------------------------------------------------------------------------ */

static coffer_err dec_create_key(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "Policy", 0, 1, POLICY_MAX, &r->policy));
    check_pattern(in, "Policy", r->policy, policy_char, "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+");
    TRY(api_in_string(in, "Description", 0, 0, DESCRIPTION_MAX, &r->description));
    TRY(api_in_enum(in, "KeyUsage", 0, kms_key_usages, &r->key_usage));
    TRY(api_in_enum(in, "CustomerMasterKeySpec", 0, kms_cmk_specs, &r->cmk_spec));
    TRY(api_in_enum(in, "KeySpec", 0, kms_key_specs, &r->key_spec));
    TRY(api_in_enum(in, "Origin", 0, kms_origins, &r->origin));
    TRY(api_in_string(in, "CustomKeyStoreId", 0, 1, 64, &r->custom_key_store_id));
    TRY(api_in_bool(in, "BypassPolicyLockoutSafetyCheck", false, &r->bypass_lockout));
    TRY(api_in_tags(in, "Tags", 0, "TagKey", "TagValue", &r->tags));
    TRY(api_in_bool(in, "MultiRegion", false, &r->multi_region));
    return api_in_string(in, "XksKeyId", 0, 1, 128, &r->xks_key_id);
}

static coffer_err dec_key_only(api_in *in, struct kms_req *r)
{
    return key_id(in, r, API_IN_REQUIRED);
}

static coffer_err dec_describe_key(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return grant_tokens(in, r);
}

static coffer_err dec_list_keys(api_in *in, struct kms_req *r)
{
    return paging(in, r, 1000);
}

static coffer_err dec_schedule_key_deletion(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return api_in_int(in, "PendingWindowInDays", 0, 1, 365, &r->pending_days, &r->has_pending_days);
}

static coffer_err dec_enable_key_rotation(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return api_in_int(in, "RotationPeriodInDays", 0, KMS_ROTATION_MIN_DAYS, KMS_ROTATION_MAX_DAYS,
                      &r->rotation_days, &r->has_rotation_days);
}

static coffer_err dec_list_key_rotations(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_enum(in, "IncludeKeyMaterial", 0, kms_include_key_material, &r->include_key_material));
    return paging(in, r, 1000);
}

static coffer_err dec_update_key_description(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return api_in_string(in, "Description", API_IN_REQUIRED, 0, DESCRIPTION_MAX, &r->description);
}

static coffer_err dec_encrypt(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_blob(in, "Plaintext", API_IN_REQUIRED | API_IN_SECRET, 1, KMS_MAX_PLAINTEXT, &r->plaintext,
                    &r->has_plaintext));
    TRY(enc_context(in, "EncryptionContext", &r->ec));
    TRY(grant_tokens(in, r));
    TRY(api_in_enum(in, "EncryptionAlgorithm", 0, kms_enc_algorithms, &r->enc_alg));
    return api_in_bool(in, "DryRun", false, &r->dry_run);
}

static coffer_err dec_decrypt(api_in *in, struct kms_req *r)
{
    TRY(api_in_blob(in, "CiphertextBlob", 0, 1, KMS_MAX_CIPHERTEXT, &r->ciphertext, &r->has_ciphertext));
    TRY(enc_context(in, "EncryptionContext", &r->ec));
    TRY(grant_tokens(in, r));
    TRY(key_id(in, r, 0));
    TRY(api_in_enum(in, "EncryptionAlgorithm", 0, kms_enc_algorithms, &r->enc_alg));
    TRY(api_in_bool(in, "DryRun", false, &r->dry_run));
    TRY(api_in_string_list(in, "DryRunModifiers", 0, 0, 1, 1, 64, &r->dry_run_modifiers));
    r->has_recipient = recipient_present(in->obj);
    return COFFER_OK;
}

static coffer_err dec_re_encrypt(api_in *in, struct kms_req *r)
{
    TRY(api_in_blob(in, "CiphertextBlob", 0, 1, KMS_MAX_CIPHERTEXT, &r->ciphertext, &r->has_ciphertext));
    TRY(enc_context(in, "SourceEncryptionContext", &r->src_ec));
    TRY(api_in_string(in, "SourceKeyId", 0, 1, KEY_ID_MAX, &r->source_key_id));
    TRY(api_in_string(in, "DestinationKeyId", API_IN_REQUIRED, 1, KEY_ID_MAX, &r->destination_key_id));
    TRY(enc_context(in, "DestinationEncryptionContext", &r->dst_ec));
    TRY(api_in_enum(in, "SourceEncryptionAlgorithm", 0, kms_enc_algorithms, &r->src_enc_alg));
    TRY(api_in_enum(in, "DestinationEncryptionAlgorithm", 0, kms_enc_algorithms, &r->dst_enc_alg));
    TRY(grant_tokens(in, r));
    TRY(api_in_bool(in, "DryRun", false, &r->dry_run));
    return api_in_string_list(in, "DryRunModifiers", 0, 0, 1, 1, 64, &r->dry_run_modifiers);
}

static coffer_err dec_generate_data_key(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(enc_context(in, "EncryptionContext", &r->ec));
    TRY(api_in_int(in, "NumberOfBytes", 0, 1, KMS_MAX_RANDOM, &r->number_of_bytes, &r->has_number_of_bytes));
    TRY(api_in_enum(in, "KeySpec", 0, kms_data_key_specs, &r->data_key_spec));
    TRY(grant_tokens(in, r));
    TRY(api_in_bool(in, "DryRun", false, &r->dry_run));
    r->has_recipient = recipient_present(in->obj);
    return COFFER_OK;
}

static coffer_err dec_generate_random(api_in *in, struct kms_req *r)
{
    TRY(api_in_int(in, "NumberOfBytes", 0, 1, KMS_MAX_RANDOM, &r->number_of_bytes, &r->has_number_of_bytes));
    TRY(api_in_string(in, "CustomKeyStoreId", 0, 1, 64, &r->custom_key_store_id));
    r->has_recipient = recipient_present(in->obj);
    return COFFER_OK;
}

static const char *const custom_key_store_types[] = {"AWS_CLOUDHSM", "EXTERNAL_KEY_STORE", NULL};
static const char *const key_agreement_algorithms[] = {"ECDH", NULL};
static const char *const xks_connectivity[] = {"PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE", NULL};

/* The members both CreateCustomKeyStore and UpdateCustomKeyStore take about the HSM or proxy. */
static coffer_err key_store_settings(api_in *in, struct kms_req *r)
{
    const char *ignored;
    int ignored_enum;
    TRY(api_in_string(in, "CloudHsmClusterId", 0, 19, 24, &r->cloud_hsm_cluster_id));
    TRY(api_in_string(in, "KeyStorePassword", 0, 7, 32, &r->key_store_password));
    TRY(api_in_string(in, "XksProxyUriEndpoint", 0, 10, 128, &ignored));
    TRY(api_in_string(in, "XksProxyUriPath", 0, 10, 128, &ignored));
    TRY(api_in_string(in, "XksProxyVpcEndpointServiceName", 0, 20, 64, &ignored));
    return api_in_enum(in, "XksProxyConnectivity", 0, xks_connectivity, &ignored_enum);
}

static coffer_err dec_create_custom_key_store(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "CustomKeyStoreName", API_IN_REQUIRED, 1, 256, &r->custom_key_store_name));
    TRY(api_in_string(in, "TrustAnchorCertificate", 0, 1, 5000, &r->trust_anchor_certificate));
    TRY(api_in_enum(in, "CustomKeyStoreType", 0, custom_key_store_types, &r->custom_key_store_type));
    return key_store_settings(in, r);
}

static coffer_err dec_custom_key_store_id(api_in *in, struct kms_req *r)
{
    return api_in_string(in, "CustomKeyStoreId", API_IN_REQUIRED, 1, 64, &r->custom_key_store_id);
}

static coffer_err dec_describe_custom_key_stores(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "CustomKeyStoreId", 0, 1, 64, &r->custom_key_store_id));
    TRY(api_in_string(in, "CustomKeyStoreName", 0, 1, 256, &r->custom_key_store_name));
    return paging(in, r, 1000);
}

static coffer_err dec_update_custom_key_store(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "CustomKeyStoreId", API_IN_REQUIRED, 1, 64, &r->custom_key_store_id));
    TRY(api_in_string(in, "NewCustomKeyStoreName", 0, 1, 256, &r->new_custom_key_store_name));
    return key_store_settings(in, r);
}

static coffer_err dec_replicate_key(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_string(in, "ReplicaRegion", API_IN_REQUIRED, 1, 32, &r->replica_region));
    TRY(api_in_string(in, "Policy", 0, 1, POLICY_MAX, &r->policy));
    TRY(api_in_bool(in, "BypassPolicyLockoutSafetyCheck", false, &r->bypass_lockout));
    TRY(api_in_string(in, "Description", 0, 0, DESCRIPTION_MAX, &r->description));
    return api_in_tags(in, "Tags", 0, "TagKey", "TagValue", &r->tags);
}

/* Coffer's replication operations (kms_replica.c): a peer region calls them, never a client. */
#define KEY_RECORD_MAX (256 * 1024)
#define WRAPPED_MATERIAL_MAX (512 * 1024)

static coffer_err dec_coffer_replication_key(api_in *in, struct kms_req *r)
{
    return api_in_string(in, "SourceRegion", API_IN_REQUIRED, 1, 32, &r->source_region);
}

static coffer_err dec_coffer_pull_replica(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "SourceRegion", API_IN_REQUIRED, 1, 32, &r->source_region));
    TRY(key_id(in, r, API_IN_REQUIRED));
    /* The puller's replication public key (a P-256 SubjectPublicKeyInfo, 91 bytes). */
    return api_in_blob(in, "PublicKey", API_IN_REQUIRED, 1, 1024, &r->ciphertext, &r->has_ciphertext);
}

static coffer_err dec_coffer_replica_deleted(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "SourceRegion", API_IN_REQUIRED, 1, 32, &r->source_region));
    TRY(api_in_string(in, "AccountId", 0, API_ACCOUNT_ID_LEN, API_ACCOUNT_ID_LEN, &r->peer_account));
    return key_id(in, r, API_IN_REQUIRED);
}

static coffer_err dec_coffer_sync_replica(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "SourceRegion", API_IN_REQUIRED, 1, 32, &r->source_region));
    TRY(api_in_string(in, "KeyRecord", API_IN_REQUIRED, 2, KEY_RECORD_MAX, &r->key_record));
    TRY(api_in_string(in, "AccountId", 0, API_ACCOUNT_ID_LEN, API_ACCOUNT_ID_LEN, &r->peer_account));
    TRY(api_in_bool(in, "Create", false, &r->create_replica));
    return api_in_blob(in, "WrappedMaterial", API_IN_REQUIRED, 1, WRAPPED_MATERIAL_MAX, &r->ciphertext,
                       &r->has_ciphertext);
}

static coffer_err dec_update_primary_region(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return api_in_string(in, "PrimaryRegion", API_IN_REQUIRED, 1, 32, &r->primary_region);
}

static coffer_err dec_derive_shared_secret(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_enum(in, "KeyAgreementAlgorithm", API_IN_REQUIRED, key_agreement_algorithms,
                    &r->key_agreement_alg));
    TRY(api_in_blob(in, "PublicKey", API_IN_REQUIRED, 1, 8192, &r->public_key, &r->has_public_key));
    TRY(grant_tokens(in, r));
    TRY(api_in_bool(in, "DryRun", false, &r->dry_run));
    r->has_recipient = recipient_present(in->obj);
    return COFFER_OK;
}

static coffer_err sign_members(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_blob(in, "Message", API_IN_REQUIRED | API_IN_SECRET, 1, KMS_MAX_PLAINTEXT, &r->message,
                    &r->has_message));
    TRY(api_in_enum(in, "MessageType", 0, kms_message_types, &r->message_type));
    TRY(grant_tokens(in, r));
    TRY(api_in_enum(in, "SigningAlgorithm", API_IN_REQUIRED, kms_sign_algorithms, &r->sign_alg));
    return api_in_bool(in, "DryRun", false, &r->dry_run);
}

static coffer_err dec_sign(api_in *in, struct kms_req *r)
{
    return sign_members(in, r);
}

static coffer_err dec_verify(api_in *in, struct kms_req *r)
{
    TRY(sign_members(in, r));
    return api_in_blob(in, "Signature", API_IN_REQUIRED, 1, KMS_MAX_CIPHERTEXT, &r->signature,
                       &r->has_signature);
}

static coffer_err dec_get_public_key(api_in *in, struct kms_req *r)
{
    return dec_describe_key(in, r);
}

static coffer_err dec_generate_data_key_pair(api_in *in, struct kms_req *r)
{
    TRY(enc_context(in, "EncryptionContext", &r->ec));
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_enum(in, "KeyPairSpec", API_IN_REQUIRED, kms_key_pair_specs, &r->key_pair_spec));
    TRY(grant_tokens(in, r));
    TRY(api_in_bool(in, "DryRun", false, &r->dry_run));
    r->has_recipient = recipient_present(in->obj);
    return COFFER_OK;
}

static coffer_err dec_alias(api_in *in, struct kms_req *r, bool with_target)
{
    TRY(api_in_string(in, "AliasName", API_IN_REQUIRED, 1, KMS_ALIAS_MAX, &r->alias_name));
    check_pattern(in, "AliasName", r->alias_name, alias_char, "^[a-zA-Z0-9:/_-]+$");
    if (with_target) {
        TRY(api_in_string(in, "TargetKeyId", API_IN_REQUIRED, 1, KEY_ID_MAX, &r->target_key_id));
    }
    return COFFER_OK;
}

static coffer_err dec_create_alias(api_in *in, struct kms_req *r)
{
    return dec_alias(in, r, true);
}

static coffer_err dec_delete_alias(api_in *in, struct kms_req *r)
{
    return dec_alias(in, r, false);
}

static coffer_err dec_list_aliases(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, 0));
    return paging(in, r, 100);
}

static coffer_err dec_tag_resource(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return api_in_tags(in, "Tags", API_IN_REQUIRED, "TagKey", "TagValue", &r->tags);
}

static coffer_err dec_untag_resource(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return api_in_string_list(in, "TagKeys", API_IN_REQUIRED, 0, SIZE_MAX, 1, 128, &r->tag_keys);
}

static coffer_err dec_list_resource_tags(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return paging(in, r, 50);
}

static coffer_err dec_get_key_policy(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_string(in, "PolicyName", 0, 1, 128, &r->policy_name));
    check_pattern(in, "PolicyName", r->policy_name, word_char, "\\w+");
    return COFFER_OK;
}

static coffer_err dec_list_key_policies(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return paging(in, r, 1000);
}

static coffer_err dec_put_key_policy(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_string(in, "PolicyName", 0, 1, 128, &r->policy_name));
    check_pattern(in, "PolicyName", r->policy_name, word_char, "\\w+");
    TRY(api_in_string(in, "Policy", API_IN_REQUIRED, 1, POLICY_MAX, &r->policy));
    check_pattern(in, "Policy", r->policy, policy_char, "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+");
    return api_in_bool(in, "BypassPolicyLockoutSafetyCheck", false, &r->bypass_lockout);
}

static bool grant_name_char(unsigned char c)
{
    return alias_char(c);
}

/* Constraints {EncryptionContextSubset, EncryptionContextEquals}: maps of strings, not both. */
static coffer_err grant_constraints(api_in *in, struct kms_req *r)
{
    const json_t *c = json_is_object(in->obj) ? json_object_get(in->obj, "Constraints") : NULL;
    if (c == NULL || json_is_null(c)) {
        return COFFER_OK;
    }
    if (!json_is_object(c)) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Constraints must be a structure");
    }
    api_in sub;
    const json_t *subset = NULL, *equals = NULL;
    api_in_init(&sub, c);
    TRY(enc_context(&sub, "EncryptionContextSubset", &subset));
    TRY(enc_context(&sub, "EncryptionContextEquals", &equals));
    if (json_object_get(c, "SourceArn") != NULL) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "The SourceArn grant constraint is not supported.");
    }
    r->constraints = c;
    return COFFER_OK;
}

static coffer_err dec_create_grant(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_string(in, "GranteePrincipal", API_IN_REQUIRED, 1, 256, &r->grantee_principal));
    TRY(api_in_string(in, "RetiringPrincipal", 0, 1, 256, &r->retiring_principal));
    TRY(api_in_string_list(in, "Operations", API_IN_REQUIRED, 0, GRANT_OPERATIONS_LIST_MAX, 1, 64,
                           &r->operations));
    size_t i;
    const json_t *o;
    json_array_foreach(r->operations, i, o)
    {
        bool known = false;
        for (size_t j = 0; kms_grant_operations[j] != NULL; j++) {
            known = known || strcmp(json_string_value(o), kms_grant_operations[j]) == 0;
        }
        if (!known) {
            char path[64];
            snprintf(path, sizeof(path), "operations.%zu.member", i + 1);
            api_in_add_error(
                in, path, false, json_string_value(o),
                "Member must satisfy enum value set: [Decrypt, Encrypt, GenerateDataKey, "
                "GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, Sign, Verify, "
                "GetPublicKey, CreateGrant, RetireGrant, DescribeKey, GenerateDataKeyPair, "
                "GenerateDataKeyPairWithoutPlaintext, GenerateMac, VerifyMac, DeriveSharedSecret]");
        }
    }
    TRY(grant_constraints(in, r));
    TRY(grant_tokens(in, r));
    TRY(api_in_string(in, "Name", 0, 1, 256, &r->grant_name));
    check_pattern(in, "Name", r->grant_name, grant_name_char, "^[a-zA-Z0-9:/_-]+$");
    return api_in_bool(in, "DryRun", false, &r->dry_run);
}

static coffer_err dec_list_grants(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(paging(in, r, 100));
    TRY(api_in_string(in, "GrantId", 0, 1, 128, &r->grant_id));
    return api_in_string(in, "GranteePrincipal", 0, 1, 256, &r->grantee_principal);
}

static coffer_err dec_list_retirable_grants(api_in *in, struct kms_req *r)
{
    TRY(paging(in, r, 100));
    return api_in_string(in, "RetiringPrincipal", 0, 1, 256, &r->retiring_principal);
}

static coffer_err dec_retire_grant(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "GrantToken", 0, 1, 8192, &r->grant_token));
    TRY(key_id(in, r, 0));
    TRY(api_in_string(in, "GrantId", 0, 1, 128, &r->grant_id));
    return api_in_bool(in, "DryRun", false, &r->dry_run);
}

static coffer_err dec_revoke_grant(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_string(in, "GrantId", API_IN_REQUIRED, 1, 128, &r->grant_id));
    return api_in_bool(in, "DryRun", false, &r->dry_run);
}

static coffer_err mac_request(api_in *in, struct kms_req *r)
{
    TRY(api_in_blob(in, "Message", API_IN_REQUIRED | API_IN_SECRET, 1, KMS_MAX_PLAINTEXT, &r->plaintext,
                    &r->has_plaintext));
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_enum(in, "MacAlgorithm", API_IN_REQUIRED, kms_mac_algorithms, &r->mac_alg));
    TRY(grant_tokens(in, r));
    return api_in_bool(in, "DryRun", false, &r->dry_run);
}

static coffer_err dec_generate_mac(api_in *in, struct kms_req *r)
{
    return mac_request(in, r);
}

static coffer_err dec_verify_mac(api_in *in, struct kms_req *r)
{
    TRY(mac_request(in, r));
    return api_in_blob(in, "Mac", API_IN_REQUIRED, 1, KMS_MAX_CIPHERTEXT, &r->ciphertext, &r->has_ciphertext);
}

static coffer_err dec_get_parameters_for_import(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_enum(in, "WrappingAlgorithm", API_IN_REQUIRED, kms_wrapping_algorithms, &r->wrapping_alg));
    return api_in_enum(in, "WrappingKeySpec", API_IN_REQUIRED, kms_wrapping_key_specs, &r->wrapping_spec);
}

static bool lower_hex_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static coffer_err key_material_id(api_in *in, struct kms_req *r)
{
    TRY(api_in_string(in, "KeyMaterialId", 0, KMS_MATERIAL_HEX_LEN, KMS_MATERIAL_HEX_LEN,
                      &r->key_material_id));
    check_pattern(in, "KeyMaterialId", r->key_material_id, lower_hex_char, "^[a-f0-9]+$");
    return COFFER_OK;
}

/* A timestamp member: epoch seconds (a JSON number, fractions allowed), read as milliseconds. */
static coffer_err timestamp(api_in *in, const char *name, int64_t *out_ms, bool *present)
{
    const json_t *v = json_is_object(in->obj) ? json_object_get(in->obj, name) : NULL;
    *present = false;
    if (v == NULL || json_is_null(v)) {
        return COFFER_OK;
    }
    double s = json_number_value(v);
    /* Beyond year 9999 is no date: refused with the other shape errors. */
    if (!json_is_number(v) || s < 0 || s > 253402300799.0) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "%s must be a timestamp in epoch seconds", name);
    }
    *out_ms = (int64_t)(s * 1000.0);
    *present = true;
    return COFFER_OK;
}

static coffer_err dec_import_key_material(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    TRY(api_in_blob(in, "ImportToken", API_IN_REQUIRED, 1, KMS_MAX_CIPHERTEXT, &r->import_token, NULL));
    TRY(api_in_blob(in, "EncryptedKeyMaterial", API_IN_REQUIRED, 1, KMS_MAX_CIPHERTEXT, &r->ciphertext,
                    &r->has_ciphertext));
    TRY(timestamp(in, "ValidTo", &r->valid_to_ms, &r->has_valid_to));
    TRY(api_in_enum(in, "ExpirationModel", 0, kms_expiration_models, &r->expiration_model));
    TRY(api_in_enum(in, "ImportType", 0, kms_import_types, &r->import_type));
    TRY(api_in_string(in, "KeyMaterialDescription", 0, 0, 256, &r->key_material_description));
    return key_material_id(in, r);
}

static coffer_err dec_delete_imported_key_material(api_in *in, struct kms_req *r)
{
    TRY(key_id(in, r, API_IN_REQUIRED));
    return key_material_id(in, r);
}

/* ------------------------------------------------------------------------------------------ */

typedef coffer_err (*member_reader)(api_in *in, struct kms_req *r);

/* The decoder column of kms_ops.def, indexed by operation id. */
static const member_reader decoders[KMS_OP_COUNT] = {
#define KMS_OP(name, decoder, flags, quota_rps) [KMS_OP_##name] = decoder,
#include "kms/kms_ops.def"
#undef KMS_OP
};

void kms_req_clean(struct kms_req *r)
{
    coffer_buf_free(&r->plaintext);
    coffer_buf_free(&r->ciphertext);
    coffer_buf_free(&r->public_key);
    coffer_buf_free(&r->import_token);
    coffer_buf_free(&r->message);
    coffer_buf_free(&r->signature);
    coffer_buf_init(&r->plaintext, true);
    coffer_buf_init(&r->ciphertext, false);
    coffer_buf_init(&r->public_key, false);
    coffer_buf_init(&r->import_token, false);
    coffer_buf_init(&r->message, true);
    coffer_buf_init(&r->signature, false);
}

coffer_err kms_req_decode(enum kms_op_id op, const json_t *input, struct kms_req *r)
{
    assert((unsigned)op < KMS_OP_COUNT);
    memset(r, 0, sizeof(*r));
    r->key_spec = r->cmk_spec = r->key_usage = r->origin = -1;
    r->enc_alg = r->src_enc_alg = r->dst_enc_alg = r->data_key_spec = r->include_key_material = -1;
    r->custom_key_store_type = r->key_agreement_alg = -1;
    r->mac_alg = r->wrapping_alg = r->wrapping_spec = r->expiration_model = r->import_type = -1;
    r->sign_alg = r->message_type = r->key_pair_spec = -1;
    coffer_buf_init(&r->plaintext, true);
    coffer_buf_init(&r->ciphertext, false);
    coffer_buf_init(&r->public_key, false);
    coffer_buf_init(&r->import_token, false);
    coffer_buf_init(&r->message, true);
    coffer_buf_init(&r->signature, false);
    api_in in;
    api_in_init(&in, input);
    coffer_err rc = COFFER_OK;
    TRY_OUT(decoders[op](&in, r));
    TRY_OUT(api_in_done(&in));
out:
    if (rc != COFFER_OK) {
        kms_req_clean(r);
    }
    return rc;
}
