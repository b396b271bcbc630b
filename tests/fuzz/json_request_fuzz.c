/*
 * Fuzz target for request bodies: bytes -> JSON (as the pipeline parses them, duplicates
 * rejected) -> the input decoder of every KMS operation. Property: no crash, no leak, and a
 * decoder either succeeds or fails with a validation/serialization error.
 */
#include <stdint.h>
#include <stdlib.h>

#include "kms/kms_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL) {
        return 0;
    }
    for (int op = 0; op < KMS_OP_COUNT; op++) {
        struct kms_req r;
        coffer_err rc = kms_req_decode((enum kms_op_id)op, j, &r);
        if (rc == COFFER_OK) {
            kms_req_clean(&r);
        } else if (rc != COFFER_ERR_VALIDATION && rc != COFFER_ERR_SERIALIZATION && rc != COFFER_ERR_NOMEM) {
            abort();
        }
    }
    json_decref(j);
    return 0;
}
