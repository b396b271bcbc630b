/*
 * Fuzz target for the ListSecrets / BatchGetSecretValue filter reader (src/secrets/
 * secrets_filters.c): Filters arrive from any caller. Property: a list the checker accepts has
 * only known keys and string values the matcher can evaluate against a secret record without
 * failing; a refused list is refused with a validation, parameter or serialization error.
 */
#include <stdint.h>
#include <stdlib.h>

#include "secrets/secrets_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *filters = json_loadb((const char *)data, size, 0, &jerr);
    if (filters == NULL) {
        return 0;
    }
    coffer_err rc = sm_filters_check(filters);
    if (rc == COFFER_OK && filters != NULL && !json_is_null(filters)) {
        json_t *rec = json_pack("{s:s, s:s, s:[{s:s, s:s}], s:[]}", "Name", "prod/db", "Description",
                                "Payments", "Tags", "Key", "env", "Value", "prod", "Versions");
        if (rec == NULL) {
            abort();
        }
        (void)sm_filters_pass(filters, rec);
        json_decref(rec);
    } else if (rc != COFFER_OK && rc != COFFER_ERR_VALIDATION && rc != COFFER_ERR_INVALID_PARAMETER &&
               rc != COFFER_ERR_SERIALIZATION) {
        abort();
    }
    json_decref(filters);
    return 0;
}
