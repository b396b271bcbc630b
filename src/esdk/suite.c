/*
 * The algorithm suite table and the key schedule of the message format: which AES key length,
 * which KDF, whether the suite commits to its key and whether it is signed, plus the
 * commitment-policy checks. Read by the header parser, the CMMs and the streams.
 */
#include <openssl/obj_mac.h>
#include <string.h>

#include "common/secret.h"
#include "esdk/esdk_internal.h"

/* ESDK algorithm-suites.md §Supported Algorithm Suites */
static const struct esdk_suite suites[] = {
    {0x0014, 1, 16, ESDK_KDF_NONE, CRYPTO_SHA256, 0, NULL},
    {0x0046, 1, 24, ESDK_KDF_NONE, CRYPTO_SHA256, 0, NULL},
    {0x0078, 1, 32, ESDK_KDF_NONE, CRYPTO_SHA256, 0, NULL},
    {0x0114, 1, 16, ESDK_KDF_HKDF, CRYPTO_SHA256, 0, NULL},
    {0x0146, 1, 24, ESDK_KDF_HKDF, CRYPTO_SHA256, 0, NULL},
    {0x0178, 1, 32, ESDK_KDF_HKDF, CRYPTO_SHA256, 0, NULL},
    {0x0214, 1, 16, ESDK_KDF_HKDF, CRYPTO_SHA256, NID_X9_62_prime256v1, "SHA256"},
    {0x0346, 1, 24, ESDK_KDF_HKDF, CRYPTO_SHA384, NID_secp384r1, "SHA384"},
    {0x0378, 1, 32, ESDK_KDF_HKDF, CRYPTO_SHA384, NID_secp384r1, "SHA384"},
    {0x0478, 2, 32, ESDK_KDF_HKDF_COMMIT, CRYPTO_SHA512, 0, NULL},
    {0x0578, 2, 32, ESDK_KDF_HKDF_COMMIT, CRYPTO_SHA512, NID_secp384r1, "SHA384"},
};

const struct esdk_suite *esdk_suite_find(uint16_t id)
{
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        if (suites[i].id == id) {
            return &suites[i];
        }
    }
    return NULL;
}

coffer_err esdk_suite_derive(const struct esdk_suite *s, coffer_cursor data_key, coffer_cursor msg_id,
                             uint8_t key_out[ESDK_MAX_KEY_LEN], uint8_t commit_out[ESDK_COMMIT_LEN])
{
    uint8_t info[2 + ESDK_MSG_ID_V2_LEN];
    coffer_err rc = COFFER_OK;

    ENSURE(data_key.len == s->key_len, COFFER_ERR_CRYPTO);
    info[0] = (uint8_t)(s->id >> 8);
    info[1] = (uint8_t)s->id;
    switch (s->kdf) {
    case ESDK_KDF_NONE:
        /* algorithm-suites.md §Identity KDF: the data key is the content key. */
        memcpy(key_out, data_key.ptr, s->key_len);
        break;
    case ESDK_KDF_HKDF: {
        /* §HKDF: no salt, info = suite id || message id. */
        ENSURE(msg_id.len == ESDK_MSG_ID_V1_LEN, COFFER_ERR_BAD_MESSAGE);
        memcpy(info + 2, msg_id.ptr, msg_id.len);
        coffer_cursor infos[1] = {coffer_cursor_from(info, 2 + msg_id.len)};
        uint8_t *outs[1] = {key_out};
        size_t lens[1] = {s->key_len};
        rc = esdk_hkdf(s->kdf_md, data_key, coffer_cursor_from(NULL, 0), infos, outs, lens, 1);
        break;
    }
    case ESDK_KDF_HKDF_COMMIT: {
        /* §Key Commitment: salt = message id; info = suite id || "DERIVEKEY", and "COMMITKEY". */
        ENSURE(msg_id.len == ESDK_MSG_ID_V2_LEN, COFFER_ERR_BAD_MESSAGE);
        memcpy(info + 2, "DERIVEKEY", 9);
        coffer_cursor infos[2] = {coffer_cursor_from(info, 11), coffer_cursor_from_str("COMMITKEY")};
        uint8_t *outs[2] = {key_out, commit_out};
        size_t lens[2] = {s->key_len, ESDK_COMMIT_LEN};
        rc = esdk_hkdf(s->kdf_md, data_key, msg_id, infos, outs, lens, 2);
        break;
    }
    }
    if (rc != COFFER_OK) {
        coffer_secure_zero(key_out, ESDK_MAX_KEY_LEN);
    }
    return rc;
}

/* client.md §Commitment Policy */
coffer_err esdk_policy_check_encrypt(coffer_commitment_policy p, const struct esdk_suite *s)
{
    bool commit = esdk_suite_commits(s);
    if (p == COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT && commit) {
        return coffer_fail(COFFER_ERR_POLICY_VIOLATION, "policy forbids committing suite 0x%04x", s->id);
    }
    if (p != COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT && !commit) {
        return coffer_fail(COFFER_ERR_POLICY_VIOLATION, "policy requires a committing suite, not 0x%04x",
                           s->id);
    }
    return COFFER_OK;
}

coffer_err esdk_policy_check_decrypt(coffer_commitment_policy p, const struct esdk_suite *s)
{
    if (p == COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT && !esdk_suite_commits(s)) {
        return coffer_fail(COFFER_ERR_POLICY_VIOLATION, "policy requires a committing suite, not 0x%04x",
                           s->id);
    }
    return COFFER_OK;
}
