/*
 * Reader and writer of the symmetric ciphertext blob (see kms_blob.h). The service calls these
 * from Encrypt/GenerateDataKey (write) and Decrypt/ReEncrypt (read); the bytes come from the
 * client, so the reader trusts nothing.
 *
 * Coffer KMS ciphertext blob, version 1 (all integers big endian):
 *
 *   offset      size   field
 *   0           1      version            = 0x01
 *   1           1      arn_len            L, KMS_BLOB_ARN_MIN..KMS_BLOB_ARN_MAX
 *   2           L      key_arn            printable ASCII, "arn:<partition>:kms:<region>:<account>:key/<id>"
 *   2+L         32     material_id        backing key material of that key (rotation keeps old ones)
 *   34+L        12     iv                 random per blob
 *   46+L        n      ciphertext         AES-256-GCM of the plaintext (n >= 0)
 *   46+L+n      16     tag                GCM tag
 *
 *   header = bytes [0, 34+L)              (version .. material_id)
 *   AAD    = header || canonical(encryption context)      (kms_ec_canonical)
 *
 * Binding the header means a blob whose key ARN or material id was edited fails to open even
 * under the right key; binding the context gives the exact-match rule of AWS. The total is
 * bounded by KMS_BLOB_MAX (the API's CiphertextBlob limit).
 */
#include "kms/kms_blob.h"

#include <stdlib.h>
#include <string.h>

static coffer_err bad_blob(void)
{
    /* Same code and empty message for every failure: nothing here may help an attacker. */
    return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
}

/* ------------------------------------------------------------------------------------------ */
/* Reader                                                                                     */
/* ------------------------------------------------------------------------------------------ */

coffer_err kms_blob_parse(coffer_cursor in, struct kms_blob *out)
{
    struct kms_blob b;
    coffer_cursor c = in;
    uint8_t arn_len = 0;
    if (in.len > KMS_BLOB_MAX) {
        return bad_blob();
    }
    /* version(1) */
    if (cur_read_u8(&c, &b.version) != COFFER_OK || b.version != KMS_BLOB_VERSION) {
        return bad_blob();
    }
    /* arn_len(1) | key_arn(L) */
    if (cur_read_u8(&c, &arn_len) != COFFER_OK || arn_len < KMS_BLOB_ARN_MIN ||
        cur_read_bytes(&c, arn_len, &b.key_arn) != COFFER_OK) {
        return bad_blob();
    }
    for (size_t i = 0; i < b.key_arn.len; i++) {
        if (b.key_arn.ptr[i] < 0x21 || b.key_arn.ptr[i] > 0x7e) {
            return bad_blob();
        }
    }
    /* material_id(32) */
    if (cur_copy_bytes(&c, b.material_id, sizeof(b.material_id)) != COFFER_OK) {
        return bad_blob();
    }
    b.header = coffer_cursor_from(in.ptr, in.len - c.len);
    /* iv(12) */
    if (cur_copy_bytes(&c, b.iv, sizeof(b.iv)) != COFFER_OK) {
        return bad_blob();
    }
    /* ciphertext(n) | tag(16): the rest */
    if (c.len < CRYPTO_AES_GCM_TAG_LEN) {
        return bad_blob();
    }
    b.ciphertext = c;
    *out = b;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static coffer_err write_header(coffer_buf *out, coffer_cursor arn,
                               const uint8_t material_id[KMS_MATERIAL_ID_LEN])
{
    if (arn.len < KMS_BLOB_ARN_MIN || arn.len > KMS_BLOB_ARN_MAX) {
        return coffer_fail(COFFER_ERR_INTERNAL, "key ARN length out of range for a ciphertext blob");
    }
    TRY(coffer_buf_append_u8(out, KMS_BLOB_VERSION));
    TRY(coffer_buf_append_u8(out, (uint8_t)arn.len));
    TRY(coffer_buf_append_cur(out, arn));
    return coffer_buf_append(out, material_id, KMS_MATERIAL_ID_LEN);
}

coffer_err kms_blob_serialize(const struct kms_blob *b, coffer_buf *out)
{
    size_t start = out->len;
    coffer_err rc = COFFER_OK;
    TRY_OUT(write_header(out, b->key_arn, b->material_id));
    TRY_OUT(coffer_buf_append(out, b->iv, sizeof(b->iv)));
    TRY_OUT(coffer_buf_append_cur(out, b->ciphertext));
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Encryption context                                                                         */
/* ------------------------------------------------------------------------------------------ */

struct ec_pair {
    const char *k;
    size_t klen;
    const json_t *v;
};

static int ec_pair_cmp(const void *a, const void *b)
{
    const struct ec_pair *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->k, y->k, n);
    if (c != 0) {
        return c;
    }
    return (x->klen > y->klen) - (x->klen < y->klen);
}

coffer_err kms_ec_canonical(const json_t *ec, coffer_buf *out)
{
    size_t n = ec != NULL ? json_object_size(ec) : 0;
    if (n > UINT32_MAX) {
        return coffer_fail(COFFER_ERR_VALIDATION, "encryption context too large");
    }
    TRY(coffer_buf_append_u32be(out, (uint32_t)n));
    if (n == 0) {
        return COFFER_OK;
    }
    coffer_err rc = COFFER_OK;
    struct ec_pair *pairs = calloc(n, sizeof(*pairs));
    if (pairs == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    size_t i = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)ec, k, v)
    {
        if (!json_is_string(v)) {
            FAIL_OUT(COFFER_ERR_SERIALIZATION, "encryption context values must be strings");
        }
        pairs[i].k = k;
        pairs[i].klen = strlen(k);
        pairs[i].v = v;
        i++;
    }
    qsort(pairs, n, sizeof(*pairs), ec_pair_cmp);
    for (i = 0; i < n; i++) {
        size_t vlen = json_string_length(pairs[i].v);
        if (pairs[i].klen > UINT32_MAX || vlen > UINT32_MAX) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "encryption context too large");
        }
        TRY_OUT(coffer_buf_append_u32be(out, (uint32_t)pairs[i].klen));
        TRY_OUT(coffer_buf_append(out, pairs[i].k, pairs[i].klen));
        TRY_OUT(coffer_buf_append_u32be(out, (uint32_t)vlen));
        TRY_OUT(coffer_buf_append(out, json_string_value(pairs[i].v), vlen));
    }
out:
    free(pairs);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Encrypt / decrypt                                                                          */
/* ------------------------------------------------------------------------------------------ */

static coffer_err build_aad(coffer_cursor header, const json_t *ec, coffer_buf *aad)
{
    TRY(coffer_buf_append_cur(aad, header));
    return kms_ec_canonical(ec, aad);
}

coffer_err kms_blob_encrypt_by(kms_blob_aead_fn seal, void *ctx, const char *key_arn,
                               const uint8_t material_id[KMS_MATERIAL_ID_LEN], const json_t *ec,
                               coffer_cursor plaintext, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf aad = COFFER_BUF_INIT;
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    size_t start = out->len;
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    TRY_OUT(write_header(out, coffer_cursor_from_str(key_arn), material_id));
    TRY_OUT(build_aad(coffer_cursor_from(out->data + start, out->len - start), ec, &aad));
    TRY_OUT(coffer_buf_append(out, iv, sizeof(iv)));
    TRY_OUT(seal(ctx, iv, coffer_buf_cursor(&aad), plaintext, out));
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    coffer_buf_free(&aad);
    return rc;
}

coffer_err kms_blob_decrypt_by(kms_blob_aead_fn open, void *ctx, const struct kms_blob *b, const json_t *ec,
                               coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf aad = COFFER_BUF_INIT;
    size_t start = out->len;
    rc = build_aad(b->header, ec, &aad);
    if (rc != COFFER_OK) {
        goto out;
    }
    if (open(ctx, b->iv, coffer_buf_cursor(&aad), b->ciphertext, out) != COFFER_OK) {
        out->len = start;
        rc = bad_blob();
    }
out:
    coffer_buf_free(&aad);
    return rc;
}

/* AES-256-GCM with a key in memory, for the two functions above. */
static coffer_err memory_seal(void *ctx, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                              coffer_cursor in, coffer_buf *out)
{
    return crypto_aes_gcm_seal(*(const coffer_cursor *)ctx, iv, aad, in, out);
}

static coffer_err memory_open(void *ctx, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                              coffer_cursor in, coffer_buf *out)
{
    return crypto_aes_gcm_open(*(const coffer_cursor *)ctx, iv, aad, in, out);
}

coffer_err kms_blob_encrypt(coffer_cursor key, const char *key_arn,
                            const uint8_t material_id[KMS_MATERIAL_ID_LEN], const json_t *ec,
                            coffer_cursor plaintext, coffer_buf *out)
{
    if (key.len != CRYPTO_AES256_KEY_LEN) {
        return coffer_fail(COFFER_ERR_INTERNAL, "bad key length");
    }
    return kms_blob_encrypt_by(memory_seal, &key, key_arn, material_id, ec, plaintext, out);
}

coffer_err kms_blob_decrypt(coffer_cursor key, const struct kms_blob *b, const json_t *ec, coffer_buf *out)
{
    return kms_blob_decrypt_by(memory_open, &key, b, ec, out);
}
