/*
 * SecureString values through KMS. A value that fits one KMS Encrypt (SSM_KMS_MAX_PLAINTEXT
 * bytes) is its CiphertextBlob, as AWS stores standard parameters. A larger one (Advanced tier,
 * up to 8 KB) is sealed under a data key (envelope encryption, as AWS does for advanced
 * parameters): KMS GenerateDataKey under the parameter's key and encryption context, then
 * AES-256-GCM with the parameter ARN as additional data. The version then carries
 * "ValueFormat": "envelope-1" and its Value is the base64 of
 *
 *   0x01 | u16 BE length of the encrypted data key | encrypted data key | 12-byte IV |
 *   ciphertext || 16-byte tag
 *
 * so both forms read back; reading either needs the caller's kms:Decrypt on the key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "crypto/crypto.h"
#include "ssm/ssm_internal.h"

#define ENVELOPE_VERSION 0x01
#define DATA_KEY_LEN 32

static void via_of(const struct api_call *call, char *out, size_t n)
{
    snprintf(out, n, "ssm.%s.amazonaws.com", call->region);
}

static coffer_err envelope_seal(const struct ssm *s, const struct api_call *call, const char *canon,
                                const char *key_id, const json_t *ec, const char *value, char **stored)
{
    char via[96], key_arn[512], arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    coffer_buf dk, blob, edk, b64;
    char *edk_b64 = NULL;
    coffer_err rc = COFFER_OK;
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    coffer_buf_init(&dk, true);
    coffer_buf_init(&blob, false);
    coffer_buf_init(&edk, false);
    coffer_buf_init(&b64, false);
    via_of(call, via, sizeof(via));
    ssm_param_arn(call, canon, arn, sizeof(arn));
    rc = s->kms->generate_data_key(s->kms->svc, call, via, key_id, ec, DATA_KEY_LEN, &dk, &edk_b64, key_arn,
                                   sizeof(key_arn));
    if (rc != COFFER_OK) {
        rc = ssm_kms_failure(rc);
        goto out;
    }
    TRY_OUT(coffer_b64_decode(coffer_cursor_from_str(edk_b64), &edk));
    if (dk.len != DATA_KEY_LEN || edk.len > 0xffff) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "unexpected data key from KMS");
    }
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    uint8_t head[3] = {ENVELOPE_VERSION, (uint8_t)(edk.len >> 8), (uint8_t)edk.len};
    TRY_OUT(coffer_buf_append(&blob, head, sizeof(head)));
    TRY_OUT(coffer_buf_append(&blob, edk.data, edk.len));
    TRY_OUT(coffer_buf_append(&blob, iv, sizeof(iv)));
    TRY_OUT(crypto_aes_gcm_seal(coffer_buf_cursor(&dk), iv, coffer_cursor_from_str(arn),
                                coffer_cursor_from_str(value), &blob));
    TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&blob), &b64));
    if ((*stored = strndup((const char *)b64.data, b64.len)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    free(edk_b64);
    coffer_buf_free(&dk);
    coffer_buf_free(&blob);
    coffer_buf_free(&edk);
    coffer_buf_free(&b64);
    return rc;
}

coffer_err ssm_value_encrypt(const struct ssm *s, const struct api_call *call, const char *canon,
                             const char *key_id, const char *value, char **stored, const char **format)
{
    *stored = NULL;
    *format = NULL;
    json_t *ec = ssm_value_context(call, canon);
    if (ec == NULL) {
        return ssm_oom();
    }
    coffer_err rc = COFFER_OK;
    if (strlen(value) > SSM_KMS_MAX_PLAINTEXT) {
        rc = envelope_seal(s, call, canon, key_id, ec, value, stored);
        *format = SSM_VALUE_ENVELOPE;
    } else {
        char via[96], key_arn[512];
        via_of(call, via, sizeof(via));
        rc = s->kms->encrypt(s->kms->svc, call, via, key_id, ec, coffer_cursor_from_str(value), stored,
                             key_arn, sizeof(key_arn));
        if (rc != COFFER_OK) {
            rc = ssm_kms_failure(rc);
        }
    }
    json_decref(ec);
    return rc;
}

static coffer_err envelope_open(const struct ssm *s, const struct api_call *call, const char *canon,
                                const json_t *ec, const char *stored, coffer_buf *plain)
{
    char via[96], key_arn[512], arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    coffer_buf blob, edk_b64, dk;
    coffer_err rc = COFFER_OK;
    coffer_buf_init(&blob, false);
    coffer_buf_init(&edk_b64, false);
    coffer_buf_init(&dk, true);
    via_of(call, via, sizeof(via));
    ssm_param_arn(call, canon, arn, sizeof(arn));
    TRY_OUT(coffer_b64_decode(coffer_cursor_from_str(stored), &blob));
    size_t edk_len = blob.len >= 3 ? ((size_t)blob.data[1] << 8) | blob.data[2] : 0;
    if (blob.len < 3 || blob.data[0] != ENVELOPE_VERSION ||
        blob.len < 3 + edk_len + CRYPTO_AES_GCM_IV_LEN + CRYPTO_AES_GCM_TAG_LEN) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "corrupt SecureString value");
    }
    TRY_OUT(coffer_b64_encode((coffer_cursor){.ptr = blob.data + 3, .len = edk_len}, &edk_b64));
    TRY_OUT(coffer_buf_nul_terminate(&edk_b64));
    rc = s->kms->decrypt(s->kms->svc, call, via, (const char *)edk_b64.data, ec, &dk, key_arn,
                         sizeof(key_arn));
    if (rc != COFFER_OK) {
        rc = ssm_kms_failure(rc);
        goto out;
    }
    const uint8_t *iv = blob.data + 3 + edk_len;
    coffer_cursor body = {.ptr = iv + CRYPTO_AES_GCM_IV_LEN,
                          .len = blob.len - 3 - edk_len - CRYPTO_AES_GCM_IV_LEN};
    rc = crypto_aes_gcm_open(coffer_buf_cursor(&dk), iv, coffer_cursor_from_str(arn), body, plain);
    if (rc != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "corrupt SecureString value");
    }
out:
    coffer_buf_free(&blob);
    coffer_buf_free(&edk_b64);
    coffer_buf_free(&dk);
    return rc;
}

coffer_err ssm_value_decrypt(const struct ssm *s, const struct api_call *call, const char *canon,
                             const json_t *ver, coffer_buf *plain)
{
    coffer_buf_init(plain, true);
    json_t *ec = ssm_value_context(call, canon);
    if (ec == NULL) {
        return ssm_oom();
    }
    const char *format = ssm_vstr(ver, "ValueFormat");
    coffer_err rc = COFFER_OK;
    if (format != NULL && strcmp(format, SSM_VALUE_ENVELOPE) == 0) {
        rc = envelope_open(s, call, canon, ec, ssm_vstr(ver, "Value"), plain);
    } else if (format != NULL) {
        rc = coffer_fail(COFFER_ERR_INTERNAL, "unknown SecureString format %s", format);
    } else {
        char via[96], key_arn[512];
        via_of(call, via, sizeof(via));
        coffer_buf_free(plain); /* decrypt initialises it */
        rc = s->kms->decrypt(s->kms->svc, call, via, ssm_vstr(ver, "Value"), ec, plain, key_arn,
                             sizeof(key_arn));
        if (rc != COFFER_OK) {
            rc = ssm_kms_failure(rc);
        }
    }
    json_decref(ec);
    return rc;
}
