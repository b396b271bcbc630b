/*
 * Operation lookup in a service's table and the check of its order (see api.h).
 */
#include "api/api.h"

#include <string.h>

const struct api_op *api_service_find_op(const struct api_service *svc, const char *name, size_t name_len)
{
    size_t lo = 0, hi = svc->n_ops;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *op = svc->ops[mid].name;
        int c = strncmp(op, name, name_len);
        if (c == 0 && op[name_len] != '\0') {
            c = 1; /* op is longer than name: it sorts after */
        }
        if (c == 0) {
            return &svc->ops[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

coffer_err api_ops_check(const struct api_op *ops, size_t n_ops)
{
    for (size_t i = 0; i < n_ops; i++) {
        if (ops[i].name == NULL || ops[i].handler == NULL) {
            return coffer_fail(COFFER_ERR_INTERNAL, "operation table: row %zu has no %s", i,
                               ops[i].name == NULL ? "name" : "handler");
        }
        if (i == 0) {
            continue;
        }
        int c = strcmp(ops[i - 1].name, ops[i].name);
        if (c == 0) {
            return coffer_fail(COFFER_ERR_INTERNAL, "operation table: \"%s\" is listed twice", ops[i].name);
        }
        if (c > 0) {
            return coffer_fail(COFFER_ERR_INTERNAL,
                               "operation table: \"%s\" is listed after \"%s\"; rows must be sorted by name",
                               ops[i].name, ops[i - 1].name);
        }
    }
    return COFFER_OK;
}
