/*
 * Fuzz target for the fast reader of request bodies (common/json_in.h), differential against
 * Jansson as the pipeline used it alone: whenever json_in_simple reads a document, Jansson
 * (JSON_REJECT_DUPLICATES) must read it too, to an object equal to it; json_in_object must
 * accept exactly what Jansson accepts as an object. No crash, no leak.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_in.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *fast = json_in_simple(data, size);
    json_t *ref = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (fast != NULL && (ref == NULL || !json_is_object(ref) || !json_equal(fast, ref))) {
        abort();
    }
    if (fast != NULL) {
        /* Same member order too: responses and trail records iterate it. */
        void *a = json_object_iter(fast), *b = json_object_iter(ref);
        for (; a != NULL && b != NULL;
             a = json_object_iter_next(fast, a), b = json_object_iter_next(ref, b)) {
            if (strcmp(json_object_iter_key(a), json_object_iter_key(b)) != 0) {
                abort();
            }
        }
        if (a != NULL || b != NULL) {
            abort();
        }
    }
    json_t *full = json_in_object(data, size);
    bool ref_ok = ref != NULL && json_is_object(ref);
    if ((full != NULL) != ref_ok || (full != NULL && !json_equal(full, ref))) {
        abort();
    }
    json_decref(full);
    json_decref(ref);
    json_decref(fast);
    return 0;
}
