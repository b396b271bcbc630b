/*
 * Operation lookup in a service's table (see api.h).
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
