/*
 * KMS for the other services of the daemon (struct kms_api, kms.h): Encrypt and Decrypt run as
 * the handlers the wire requests run, on a call carrying the original caller, so the key policy,
 * the identity policies, grants, key state and the encryption context are checked by the one
 * code path; only kms:ViaService tells the two apart.
 */
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "kms/kms_internal.h"

/* Wipes the string `member` of `obj` in place (base64 of a plaintext). */
static void wipe_member(json_t *obj, const char *member)
{
    json_t *v = json_object_get(obj, member);
    if (json_is_string(v)) {
        coffer_secure_zero((char *)json_string_value(v), json_string_length(v));
    }
}

/* Runs `handler` on a call of the caller's identity with `input`; *out is its output. */
static coffer_err run_as_caller(struct kms_service *svc, const struct api_call *call, const char *via_service,
                                const char *operation, api_handler handler, json_t *input, json_t **out)
{
    struct api_call sub = {
        .caller = call->caller,
        .region = call->region,
        .request_id = call->request_id,
        .event_id = call->event_id,
        .operation = operation,
        .now_ms = call->now_ms,
        .input = input,
        .via_service = via_service,
    };
    coffer_err rc = handler(svc, &sub);
    json_decref(sub.audit_request);
    json_decref(sub.audit_response);
    json_decref(sub.audit_resources);
    *out = sub.output;
    if (rc != COFFER_OK) {
        json_decref(sub.output);
        *out = NULL;
    }
    return rc;
}

static coffer_err inproc_encrypt(struct kms_service *svc, const struct api_call *call,
                                 const char *via_service, const char *key_id, const json_t *ec,
                                 coffer_cursor plaintext, char **ciphertext_b64, char *key_arn, size_t n)
{
    coffer_buf b64 = COFFER_BUF_INIT;
    json_t *input = NULL, *out = NULL;
    coffer_err rc = COFFER_OK;
    *ciphertext_b64 = NULL;
    coffer_buf_init(&b64, true);
    TRY_OUT(coffer_b64_encode(plaintext, &b64));
    input = json_pack("{s:s, s:s%}", "KeyId", key_id, "Plaintext", (const char *)b64.data, b64.len);
    if (input == NULL || (ec != NULL && json_object_set(input, "EncryptionContext", (json_t *)ec) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    rc = run_as_caller(svc, call, via_service, "Encrypt", kms_op_Encrypt, input, &out);
    wipe_member(input, "Plaintext");
    TRY_OUT(rc);
    const char *blob = json_string_value(json_object_get(out, "CiphertextBlob"));
    const char *arn = json_string_value(json_object_get(out, "KeyId"));
    if (blob == NULL || arn == NULL || (*ciphertext_b64 = strdup(blob)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_str_copy(key_arn, n, arn);
out:
    json_decref(out);
    json_decref(input);
    coffer_buf_free(&b64);
    return rc;
}

static coffer_err inproc_decrypt(struct kms_service *svc, const struct api_call *call,
                                 const char *via_service, const char *ciphertext_b64, const json_t *ec,
                                 coffer_buf *plaintext, char *key_arn, size_t n)
{
    json_t *input = NULL, *out = NULL;
    coffer_err rc = COFFER_OK;
    coffer_buf_init(plaintext, true);
    input = json_pack("{s:s}", "CiphertextBlob", ciphertext_b64);
    if (input == NULL || (ec != NULL && json_object_set(input, "EncryptionContext", (json_t *)ec) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(run_as_caller(svc, call, via_service, "Decrypt", kms_op_Decrypt, input, &out));
    const char *b64 = json_string_value(json_object_get(out, "Plaintext"));
    const char *arn = json_string_value(json_object_get(out, "KeyId"));
    if (b64 == NULL || arn == NULL) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "Decrypt answered without a plaintext");
    }
    rc = coffer_b64_decode(coffer_cursor_from_str(b64), plaintext);
    wipe_member(out, "Plaintext");
    TRY_OUT(rc);
    coffer_str_copy(key_arn, n, arn);
out:
    json_decref(out);
    json_decref(input);
    return rc;
}

void kms_inproc_init(struct kms_service *svc)
{
    svc->inproc = (struct kms_api){.svc = svc, .encrypt = inproc_encrypt, .decrypt = inproc_decrypt};
}
