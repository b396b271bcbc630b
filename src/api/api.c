/*
 * What the layers below a service ask of its declaration (see api.h): operation lookup and the
 * check of the table's order, error names, sensitive members; and the names of principal kinds.
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

struct api_error api_service_error(const struct api_service *svc, coffer_err code)
{
    struct api_error e = {
        .type = coffer_err_aws_type(code),
        .status = coffer_err_http_status(code),
        .message = coffer_err_default_message(code),
    };
    for (size_t i = 0; svc != NULL && i < svc->n_errors; i++) {
        const struct api_error_name *n = &svc->errors[i];
        if (n->code != code) {
            continue;
        }
        if (n->type != NULL) {
            e.type = n->type;
        }
        if (n->status != 0) {
            e.status = n->status;
        }
        if (n->message != NULL) {
            e.message = n->message;
        }
        break;
    }
    return e;
}

const char *api_service_error_message(const struct api_service *svc, coffer_err code)
{
    if (coffer_last_err() == code && coffer_last_message()[0] != '\0') {
        return coffer_last_message();
    }
    return api_service_error(svc, code).message;
}

bool api_service_member_is_sensitive(const struct api_service *svc, const char *name)
{
    if (svc == NULL) {
        return true;
    }
    for (const char *const *m = svc->sensitive_members; m != NULL && *m != NULL; m++) {
        if (strcmp(name, *m) == 0) {
            return true;
        }
    }
    return false;
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
