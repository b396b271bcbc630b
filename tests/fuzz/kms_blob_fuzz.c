/*
 * Fuzz target for the KMS ciphertext blob reader (src/kms/kms_blob.c). Property: any input the
 * reader accepts serialises back to exactly the same bytes, and decrypting it under a fixed key
 * never crashes (it fails with InvalidCiphertextException unless the bytes are a real blob).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kms_blob b;
    coffer_cursor in = coffer_cursor_from(data, size);
    if (kms_blob_parse(in, &b) != COFFER_OK) {
        return 0;
    }
    coffer_buf out = COFFER_BUF_INIT;
    if (kms_blob_serialize(&b, &out) != COFFER_OK || out.len != size || memcmp(out.data, data, size) != 0) {
        abort();
    }
    coffer_buf_free(&out);

    static const uint8_t key[32] = {0x42};
    coffer_buf pt = COFFER_SECRET_BUF_INIT;
    coffer_err rc = kms_blob_decrypt(coffer_cursor_from(key, sizeof(key)), &b, NULL, &pt);
    if (rc != COFFER_OK && (rc != COFFER_ERR_INVALID_CIPHERTEXT || pt.len != 0)) {
        abort();
    }
    coffer_buf_free(&pt);
    return 0;
}
