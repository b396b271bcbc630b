/*
 * KMS for the other services of the daemon (struct kms_api, kms.h): Encrypt and Decrypt run as
 * the handlers the wire requests run, on a call carrying the original caller, so the key policy,
 * the identity policies, grants, key state and the encryption context are checked by the one
 * code path; only kms:ViaService tells the two apart. Each call is in the audit trail as
 * CloudTrail records the KMS calls a service makes for a user: a KMS event (eventSource
 * kms.amazonaws.com) of the caller's identity, invokedBy the service ("ssm.amazonaws.com").
 * With the daemon's trail at hand (kms_service_set_trail) the event is written member by member
 * with the audit line writer, as the pipeline writes its events: a GetSecretValue or a
 * GetParameter WithDecryption pays for one line, not for a JSON tree bounded and serialised.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "audit/audit.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

/* Wipes the string `member` of `obj` in place (base64 of a plaintext). */
static void wipe_member(json_t *obj, const char *member)
{
    json_t *v = json_object_get(obj, member);
    if (json_is_string(v)) {
        coffer_secure_zero((char *)json_string_value(v), json_string_length(v));
    }
}

/* "ssm.amazonaws.com", the service principal of an endpoint "ssm.<region>.amazonaws.com". */
static void service_principal(const char *via_service, char *out, size_t n)
{
    const char *dot = strchr(via_service, '.');
    snprintf(out, n, "%.*s.amazonaws.com", dot != NULL ? (int)(dot - via_service) : (int)strlen(via_service),
             via_service);
}

/*
 * The KMS event of one in-process call: the caller's identity, invokedBy the service, the
 * request's id, and what the call was asked (key, encryption context, never a plaintext).
 */
static json_t *inproc_event(struct kms_service *svc, const struct api_call *call, const char *via_service,
                            const char *operation, const json_t *input, coffer_err rc, const char *why,
                            const char *key_arn, const char *id)
{
    char principal[128], when[40];
    service_principal(via_service, principal, sizeof(principal));
    coffer_time_iso8601(call->now_ms / 1000, when, sizeof(when));
    const struct api_caller *c = call->caller;
    json_t *req = json_object();
    const json_t *key_id = json_object_get(input, "KeyId"), *ec = json_object_get(input, "EncryptionContext");
    const json_t *nbytes = json_object_get(input, "NumberOfBytes");
    if (req == NULL || (key_id != NULL && json_object_set(req, "keyId", (json_t *)key_id) != 0) ||
        (nbytes != NULL && json_object_set(req, "numberOfBytes", (json_t *)nbytes) != 0) ||
        (ec != NULL && json_object_set_new(req, "encryptionContext", json_deep_copy(ec)) != 0) ||
        (nbytes == NULL &&
         json_object_set_new(req, "encryptionAlgorithm", json_string("SYMMETRIC_DEFAULT")) != 0)) {
        json_decref(req);
        return NULL;
    }
    json_t *ev =
        json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:n, "
                  "s:s, s:s, s:b, s:[], s:s, s:b, s:s}",
                  "eventVersion", "1.08", "userIdentity", "type", api_principal_trail_type(c->principal_kind),
                  "principalId", c->principal_id, "arn", c->principal_arn, "accountId", c->account_id,
                  "accessKeyId", c->access_key_id, "invokedBy", principal, "eventTime", when, "eventSource",
                  svc->api.event_source, "eventName", operation, "awsRegion", call->region, "sourceIPAddress",
                  principal, "userAgent", principal, "requestParameters", req, "responseElements",
                  "requestID", call->request_id, "eventID", id, "readOnly", 1, "resources", "eventType",
                  "AwsApiCall", "managementEvent", 0, "recipientAccountId", c->account_id);
    if (ev == NULL) {
        return NULL;
    }
    if (rc != COFFER_OK) {
        struct api_error e = api_service_error(&svc->api, rc);
        if (json_object_set_new(ev, "errorCode", json_string(e.type)) != 0 ||
            json_object_set_new(ev, "errorMessage", json_string(why[0] != 0 ? why : e.message)) != 0) {
            json_decref(ev);
            return NULL;
        }
    }
    if (key_arn != NULL && json_array_append_new(json_object_get(ev, "resources"),
                                                 json_pack("{s:s, s:s, s:s}", "accountId", c->account_id,
                                                           "type", "AWS::KMS::Key", "ARN", key_arn)) != 0) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

/*
 * The event inproc_event builds, written member by member into `b` instead: same members, same
 * order, same values, so the same line in the trail (audit_trail_append adds the node id last;
 * so does this). The resource is the one small tree left: the writer nests one level only.
 */
static void inproc_event_write(audit_batch *b, struct kms_service *svc, const struct api_call *call,
                               const char *via_service, const char *operation, const json_t *input,
                               coffer_err rc, const char *why, const char *key_arn, const char *id)
{
    char principal[128], when[40];
    service_principal(via_service, principal, sizeof(principal));
    coffer_time_iso8601(call->now_ms / 1000, when, sizeof(when));
    const struct api_caller *c = call->caller;
    const json_t *key_id = json_object_get(input, "KeyId"), *ec = json_object_get(input, "EncryptionContext");
    const json_t *nbytes = json_object_get(input, "NumberOfBytes");
    audit_line_begin(b);
    audit_line_string(b, "eventVersion", "1.08", false);
    audit_line_object_begin(b, "userIdentity");
    audit_line_string(b, "type", api_principal_trail_type(c->principal_kind), false);
    audit_line_string(b, "principalId", c->principal_id, false);
    audit_line_string(b, "arn", c->principal_arn, false);
    audit_line_string(b, "accountId", c->account_id, false);
    audit_line_string(b, "accessKeyId", c->access_key_id, false);
    audit_line_string(b, "invokedBy", principal, false);
    audit_line_object_end(b);
    audit_line_string(b, "eventTime", when, false);
    audit_line_string(b, "eventSource", svc->api.event_source, false);
    audit_line_string(b, "eventName", operation, false);
    audit_line_string(b, "awsRegion", call->region, false);
    audit_line_string(b, "sourceIPAddress", principal, false);
    audit_line_string(b, "userAgent", principal, false);
    audit_line_object_begin(b, "requestParameters");
    if (key_id != NULL) {
        audit_line_json(b, "keyId", key_id);
    }
    if (nbytes != NULL) {
        audit_line_json(b, "numberOfBytes", nbytes);
    }
    if (ec != NULL) {
        audit_line_json(b, "encryptionContext", ec);
    }
    if (nbytes == NULL) {
        audit_line_string(b, "encryptionAlgorithm", "SYMMETRIC_DEFAULT", false);
    }
    audit_line_object_end(b);
    audit_line_json(b, "responseElements", NULL);
    audit_line_string(b, "requestID", call->request_id, false);
    audit_line_string(b, "eventID", id, false);
    audit_line_bool(b, "readOnly", true);
    json_t *resources = json_array(), *r = NULL;
    if (resources == NULL) {
        audit_line_fail(b);
    } else if (key_arn != NULL) {
        r = json_object();
        if (r == NULL || json_object_set_new_nocheck(r, "accountId", json_string(c->account_id)) != 0 ||
            json_object_set_new_nocheck(r, "type", json_string_nocheck("AWS::KMS::Key")) != 0 ||
            json_object_set_new_nocheck(r, "ARN", json_string(key_arn)) != 0 ||
            json_array_append(resources, r) != 0) {
            audit_line_fail(b);
        }
    }
    audit_line_json(b, "resources", resources);
    json_decref(r);
    json_decref(resources);
    audit_line_string(b, "eventType", "AwsApiCall", false);
    audit_line_bool(b, "managementEvent", false);
    audit_line_string(b, "recipientAccountId", c->account_id, false);
    if (rc != COFFER_OK) {
        struct api_error e = api_service_error(&svc->api, rc);
        audit_line_string(b, "errorCode", e.type, false);
        audit_line_string(b, "errorMessage", why[0] != 0 ? why : e.message, false);
    }
    const char *node = audit_trail_node_id(svc->trail);
    if (node != NULL) {
        audit_line_string(b, AUDIT_NODE_FIELD, node, false);
    }
}

/* Puts the event of one in-process call on record: COFFER_OK once it is in the trail. */
static coffer_err inproc_record(struct kms_service *svc, const struct api_call *call, const char *via_service,
                                const char *operation, const json_t *input, coffer_err rc, const char *why,
                                const char *key_arn, const char *id)
{
    if (svc->trail != NULL) {
        audit_batch *b = NULL;
        TRY(audit_batch_new(&b));
        bool oversized = false;
        inproc_event_write(b, svc, call, via_service, operation, input, rc, why, key_arn, id);
        coffer_err arc = audit_line_end(b, &oversized);
        if (arc == COFFER_OK && !oversized) {
            arc = audit_trail_write_batch(svc->trail, b);
        }
        audit_batch_free(b);
        if (arc != COFFER_OK || !oversized) {
            return arc;
        }
        /* Too large for the writer (a huge encryption context): the trail bounds the tree. */
    }
    json_t *ev = inproc_event(svc, call, via_service, operation, input, rc, why, key_arn, id);
    if (ev == NULL) {
        return kms_nomem();
    }
    coffer_err arc =
        svc->trail != NULL ? audit_trail_append(svc->trail, ev) : svc->event_sink(svc->event_ctx, ev);
    json_decref(ev);
    return arc;
}

/* Runs `handler` on a call of the caller's identity with `input`; *out is its output. The call
 * is on record before its result is used: when the trail cannot take it, the call fails. */
static coffer_err run_as_caller(struct kms_service *svc, const struct api_call *call, const char *via_service,
                                const char *operation, api_handler handler, json_t *input, json_t **out)
{
    /* The KMS event's own id, known before the call: key last usage names it. */
    char event_id[CRYPTO_UUID_STR_LEN + 1];
    if (crypto_uuid_v4(event_id) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_INTERNAL, "no event id");
    }
    struct api_call sub = {
        .caller = call->caller,
        .region = call->region,
        .request_id = call->request_id,
        .event_id = event_id,
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
    if (svc->event_sink != NULL || svc->trail != NULL) {
        char why[512];
        snprintf(why, sizeof(why), "%s",
                 rc != COFFER_OK && coffer_last_err() == rc ? coffer_last_message() : "");
        const char *key_arn =
            rc == COFFER_OK ? json_string_value(json_object_get(sub.output, "KeyId")) : NULL;
        coffer_err arc = inproc_record(svc, call, via_service, operation, input, rc, why, key_arn, event_id);
        if (arc != COFFER_OK) {
            rc = coffer_fail(COFFER_ERR_AUDIT, "the audit trail cannot be written");
        } else if (rc != COFFER_OK) {
            rc = coffer_fail(rc, "%s", why); /* the detail the failure gave, for the calling service */
        }
    }
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

static coffer_err inproc_generate_data_key(struct kms_service *svc, const struct api_call *call,
                                           const char *via_service, const char *key_id, const json_t *ec,
                                           size_t n_bytes, coffer_buf *plaintext, char **ciphertext_b64,
                                           char *key_arn, size_t n)
{
    json_t *input = NULL, *out = NULL;
    coffer_err rc = COFFER_OK;
    *ciphertext_b64 = NULL;
    coffer_buf_init(plaintext, true);
    input = json_pack("{s:s, s:I}", "KeyId", key_id, "NumberOfBytes", (json_int_t)n_bytes);
    if (input == NULL || (ec != NULL && json_object_set(input, "EncryptionContext", (json_t *)ec) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(run_as_caller(svc, call, via_service, "GenerateDataKey", kms_op_GenerateDataKey, input, &out));
    const char *b64 = json_string_value(json_object_get(out, "Plaintext"));
    const char *blob = json_string_value(json_object_get(out, "CiphertextBlob"));
    const char *arn = json_string_value(json_object_get(out, "KeyId"));
    if (b64 == NULL || blob == NULL || arn == NULL) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "GenerateDataKey answered without a data key");
    }
    rc = coffer_b64_decode(coffer_cursor_from_str(b64), plaintext);
    wipe_member(out, "Plaintext");
    TRY_OUT(rc);
    if ((*ciphertext_b64 = strdup(blob)) == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_str_copy(key_arn, n, arn);
out:
    if (rc != COFFER_OK) {
        coffer_buf_free(plaintext);
    }
    json_decref(out);
    json_decref(input);
    return rc;
}

void kms_inproc_init(struct kms_service *svc)
{
    svc->inproc = (struct kms_api){.svc = svc,
                                   .encrypt = inproc_encrypt,
                                   .decrypt = inproc_decrypt,
                                   .generate_data_key = inproc_generate_data_key,
                                   .peer_known = kms_peer_known,
                                   .peer_call = kms_peer_call_service,
                                   .peer_seal = kms_peer_seal,
                                   .replication_open = kms_replication_open,
                                   .peer_caller_check = kms_peer_caller_check_service};
}
