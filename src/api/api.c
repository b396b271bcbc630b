/*
 * Operation lookup in a service's table and the names of principal kinds (see api.h).
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

static const struct {
    const char *trail;
    const char *policy;
} principal_names[] = {
    [API_PRINCIPAL_UNKNOWN] = {"Unknown", NULL},
    [API_PRINCIPAL_ROOT] = {"Root", "Account"},
    [API_PRINCIPAL_USER] = {"IAMUser", "User"},
    [API_PRINCIPAL_ASSUMED_ROLE] = {"AssumedRole", "AssumedRole"},
};
#define N_PRINCIPAL_KINDS (sizeof(principal_names) / sizeof(principal_names[0]))

const char *api_principal_trail_type(enum api_principal_kind kind)
{
    return (size_t)kind < N_PRINCIPAL_KINDS ? principal_names[kind].trail : principal_names[0].trail;
}

const char *api_principal_policy_type(enum api_principal_kind kind)
{
    return (size_t)kind < N_PRINCIPAL_KINDS ? principal_names[kind].policy : NULL;
}

enum api_principal_kind api_principal_kind_parse(const char *trail_type)
{
    if (trail_type == NULL) {
        return API_PRINCIPAL_UNKNOWN;
    }
    for (size_t k = API_PRINCIPAL_UNKNOWN + 1; k < N_PRINCIPAL_KINDS; k++) {
        if (strcmp(trail_type, principal_names[k].trail) == 0) {
            return (enum api_principal_kind)k;
        }
    }
    return API_PRINCIPAL_UNKNOWN;
}
