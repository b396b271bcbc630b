/*
 * The framing of encrypted trail files (audit.h, "Encrypted trail"): the header line that
 * carries a file's wrapped data key, and one AES-256-GCM sealed line per event. Sealing runs
 * under the trail lock (the chain head is part of the plaintext), so it is a single GCM pass
 * and a base64 encoding into a buffer the caller reuses.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/audit_internal.h"
#include "common/codec.h"
#include "common/json_out.h"
#include "common/secret.h"
#include "crypto/crypto.h"

#define ENC_EVENT_KEY ",\"" AUDIT_ENC_EVENT_FIELD "\":\""

void audit_data_key_clean(struct audit_data_key *k)
{
    if (k == NULL) {
        return;
    }
    coffer_buf_free(&k->key);
    free(k->wrapped_b64);
    k->wrapped_b64 = NULL;
    k->key_arn[0] = '\0';
}

/* `{"previousEventHash":"<head>"` and `,"nodeId":"<id>"` when there is one. */
static coffer_err line_start(const char head[AUDIT_HASH_HEX_LEN + 1], const char *node_id, coffer_buf *out)
{
    TRY(coffer_buf_append(out, AUDIT_PREFIX_HEAD, AUDIT_PREFIX_HEAD_LEN));
    TRY(coffer_buf_append(out, head, AUDIT_HASH_HEX_LEN));
    TRY(coffer_buf_append_u8(out, '"'));
    if (node_id != NULL) {
        /* A node id is [A-Za-z0-9._-]: nothing to escape. */
        TRY(coffer_buf_append_str(out, ",\"" AUDIT_NODE_FIELD "\":\""));
        TRY(coffer_buf_append_str(out, node_id));
        TRY(coffer_buf_append_u8(out, '"'));
    }
    return COFFER_OK;
}

coffer_err audit_enc_header_line(const char head[AUDIT_HASH_HEX_LEN + 1], const char *node_id,
                                 const char *file_name, const struct audit_data_key *k, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    json_t *h =
        json_pack("{s:s, s:s, s:s, s:{s:s}}", "algorithm", AUDIT_ENC_ALGORITHM, "keyArn", k->key_arn,
                  "encryptedDataKey", k->wrapped_b64, "encryptionContext", AUDIT_ENC_CONTEXT_KEY, file_name);
    if (h == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory framing the audit file header");
    }
    TRY_OUT(line_start(head, node_id, out));
    TRY_OUT(coffer_buf_append_str(out, ",\"" AUDIT_ENC_HEADER_FIELD "\":"));
    TRY_OUT(json_out_compact(h, out));
    TRY_OUT(coffer_buf_append_str(out, "}\n"));
out:
    json_decref(h);
    return rc;
}

coffer_err audit_enc_seal_line(const struct audit_data_key *k, const char *file_name,
                               const char head[AUDIT_HASH_HEX_LEN + 1], const char *node_id,
                               const uint8_t *plain, size_t len, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT;
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    /* A fresh random nonce per line under a per-file key: far from GCM's 2^32 random-nonce bound. */
    TRY(crypto_random(iv, sizeof(iv)));
    TRY_OUT(coffer_buf_reserve(&sealed, sizeof(iv) + len + CRYPTO_AES_GCM_TAG_LEN));
    TRY_OUT(coffer_buf_append(&sealed, iv, sizeof(iv)));
    TRY_OUT(crypto_aes_gcm_seal(coffer_buf_cursor(&k->key), iv, coffer_cursor_from_str(file_name),
                                coffer_cursor_from(plain, len), &sealed));
    TRY_OUT(line_start(head, node_id, out));
    TRY_OUT(coffer_buf_append_str(out, ENC_EVENT_KEY));
    TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&sealed), out));
    TRY_OUT(coffer_buf_append_str(out, "\"}\n"));
out:
    coffer_buf_free(&sealed);
    return rc;
}

coffer_err audit_enc_header(const uint8_t *line, size_t len, bool *encrypted, char **wrapped_b64,
                            char **key_arn)
{
    coffer_err rc = COFFER_OK;
    *encrypted = false;
    *wrapped_b64 = NULL;
    *key_arn = NULL;
    json_t *j = json_loadb((const char *)line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        FAIL_OUT(COFFER_ERR_AUDIT, "the first line of the trail file is not a JSON object");
    }
    json_t *h = json_object_get(j, AUDIT_ENC_HEADER_FIELD);
    if (h == NULL) {
        goto out; /* a plaintext file */
    }
    const char *alg = json_string_value(json_object_get(h, "algorithm"));
    const char *w = json_string_value(json_object_get(h, "encryptedDataKey"));
    const char *arn = json_string_value(json_object_get(h, "keyArn"));
    if (alg == NULL || strcmp(alg, AUDIT_ENC_ALGORITHM) != 0 || w == NULL || arn == NULL) {
        FAIL_OUT(COFFER_ERR_AUDIT, "the trail file's encryption header is malformed");
    }
    *wrapped_b64 = strdup(w);
    *key_arn = strdup(arn);
    if (*wrapped_b64 == NULL || *key_arn == NULL) {
        free(*wrapped_b64);
        free(*key_arn);
        *wrapped_b64 = *key_arn = NULL;
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    *encrypted = true;
out:
    json_decref(j);
    return rc;
}

coffer_err audit_enc_open_line(coffer_cursor key, const char *file_name, const uint8_t *line, size_t len,
                               coffer_buf *plain)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT;
    const uint8_t *k = memmem(line, len, ENC_EVENT_KEY, sizeof(ENC_EVENT_KEY) - 1);
    if (len < AUDIT_PREFIX_LEN || memcmp(line, AUDIT_PREFIX_HEAD, AUDIT_PREFIX_HEAD_LEN) != 0 || k == NULL ||
        len < 2 || memcmp(line + len - 2, "\"}", 2) != 0) {
        return coffer_fail(COFFER_ERR_AUDIT, "not an encrypted audit event line");
    }
    const uint8_t *b = k + sizeof(ENC_EVENT_KEY) - 1;
    const uint8_t *e = line + len - 2;
    if (b > e || coffer_b64_decode(coffer_cursor_from(b, (size_t)(e - b)), &sealed) != COFFER_OK ||
        sealed.len < CRYPTO_AES_GCM_IV_LEN + CRYPTO_AES_GCM_TAG_LEN) {
        FAIL_OUT(COFFER_ERR_AUDIT, "malformed encrypted audit event");
    }
    size_t before = plain->len;
    TRY_OUT(crypto_aes_gcm_open(
        key, sealed.data, coffer_cursor_from_str(file_name),
        coffer_cursor_from(sealed.data + CRYPTO_AES_GCM_IV_LEN, sealed.len - CRYPTO_AES_GCM_IV_LEN), plain));
    /* The event's own previousEventHash must be the line's: a sealed event moved to another
     * place in the same file decrypts, but no longer matches the chain it sits in. */
    if (plain->len - before < AUDIT_PREFIX_LEN ||
        memcmp(plain->data + before, line, AUDIT_PREFIX_HEAD_LEN + AUDIT_HASH_HEX_LEN) != 0) {
        coffer_secure_zero(plain->data + before, plain->len - before);
        plain->len = before;
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT,
                 "the encrypted audit event is not the one of this place in the chain");
    }
out:
    coffer_buf_free(&sealed);
    return rc;
}
