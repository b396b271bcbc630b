/* The point reads: GetParameter, GetParameters, and the resolution of a name with its selector. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "common/buf.h"
#include "ssm/ssm_internal.h"

/*
 * Resolves a read operation's reference (name or ARN, optional selector) to its record and
 * version, authorizing the read. COFFER_ERR_NOT_FOUND when there is no such parameter (or
 * label), COFFER_ERR_VERSION_NOT_FOUND for an unknown version. *rec_out is owned by the caller;
 * *ver_out points into it.
 */
coffer_err ssm_resolve(const struct ssm *s, const struct api_call *call, const char *ref, json_t **rec_out,
                       const json_t **ver_out, char *selector, size_t sel_n)
{
    char prefix[SSM_ARN_PREFIX_MAX], name[SSM_NAME_MAX + 2], label[SSM_LABEL_MAX + 1],
        canon[SSM_NAME_MAX + 1];
    int64_t version = 0;
    *rec_out = NULL;
    *ver_out = NULL;
    selector[0] = 0;
    ssm_arn_prefix(call, prefix, sizeof(prefix));
    TRY(ssm_ref_split(ref, prefix, name, sizeof(name), &version, label, sizeof(label)));
    if (name[0] == 0) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    TRY(ssm_name_check(name, false, strlen(prefix), canon, sizeof(canon)));
    TRY(ssm_authorize_param(s, call, canon));
    char key[SSM_KEY_MAX];
    ssm_param_key(call, canon, key, sizeof(key));
    json_t *rec = NULL;
    TRY(ssm_rec_load_read(s, key, &rec));
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    const json_t *ver = ssm_rec_latest(rec);
    if (label[0] != 0) {
        snprintf(selector, sel_n, ":%s", label);
        if ((ver = ssm_rec_labeled(rec, label)) == NULL) {
            json_decref(rec);
            return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
        }
    }
    if (version > 0) {
        snprintf(selector, sel_n, ":%lld", (long long)version);
        ver = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rec, "Versions"), i, v)
        {
            if (ssm_vint(v, "Version") == version) {
                ver = v;
            }
        }
        if (ver == NULL) {
            json_decref(rec);
            return coffer_fail(
                COFFER_ERR_VERSION_NOT_FOUND,
                "Systems Manager could not find version %lld of %s. Verify the version and try again.",
                (long long)version, canon);
        }
    }
    *rec_out = rec;
    *ver_out = ver;
    return COFFER_OK;
}

coffer_err ssm_op_GetParameter(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const char *name = NULL;
    bool decrypt = false;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SSM_NAME_MAX, &name));
    TRY(api_in_bool(&in, "WithDecryption", false, &decrypt));
    TRY(api_in_done(&in));
    json_t *rec = NULL, *param = NULL;
    const json_t *ver = NULL;
    char selector[SSM_LABEL_MAX + 2];
    if (ssm_is_secret_ref(name)) {
        TRY(ssm_secret_ref_get(s, call, name, decrypt, &param));
        call->output = json_pack("{s:o}", "Parameter", param);
        return call->output != NULL ? COFFER_OK : ssm_oom();
    }
    TRY(ssm_resolve(s, call, name, &rec, &ver, selector, sizeof(selector)));
    coffer_err rc =
        ssm_parameter_json(s, call, rec, ver, selector[0] != 0 ? selector : NULL, decrypt, &param);
    json_decref(rec);
    TRY(rc);
    call->output = json_pack("{s:o}", "Parameter", param);
    return call->output != NULL ? COFFER_OK : ssm_oom();
}

static int by_name(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "Name")),
                  json_string_value(json_object_get(y, "Name")));
}

coffer_err ssm_op_GetParameters(void *state, struct api_call *call)
{
    struct ssm *s = state;
    api_in in;
    const json_t *names = NULL;
    bool decrypt = false;
    api_in_init(&in, call->input);
    TRY(api_in_string_list(&in, "Names", API_IN_REQUIRED, 1, 10, 1, SSM_NAME_MAX, &names));
    TRY(api_in_bool(&in, "WithDecryption", false, &decrypt));
    TRY(api_in_done(&in));
    json_t *found[10];
    size_t n_found = 0;
    json_t *invalid = json_array();
    coffer_err rc = COFFER_OK;
    if (invalid == NULL) {
        return ssm_oom();
    }
    size_t i;
    const json_t *n;
    json_array_foreach(names, i, n)
    {
        json_t *rec = NULL, *param = NULL;
        const json_t *ver = NULL;
        char selector[SSM_LABEL_MAX + 2];
        if (ssm_is_secret_ref(json_string_value(n))) {
            rc = ssm_secret_ref_get(s, call, json_string_value(n), decrypt, &param);
            if (rc == COFFER_ERR_NOT_FOUND) {
                /* a reference to no secret is an unknown name like any other */
                coffer_clear_err();
                rc = COFFER_OK;
                if (json_array_append(invalid, (json_t *)n) != 0) {
                    FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
                }
                continue;
            }
            TRY_OUT(rc);
            found[n_found++] = param;
            continue;
        }
        rc = ssm_resolve(s, call, json_string_value(n), &rec, &ver, selector, sizeof(selector));
        if (rc == COFFER_ERR_NOT_FOUND || rc == COFFER_ERR_VERSION_NOT_FOUND || rc == COFFER_ERR_VALIDATION ||
            rc == COFFER_ERR_HIERARCHY_LIMIT) {
            /* an unknown or malformed name is not an error here: it is reported back */
            coffer_clear_err();
            rc = COFFER_OK;
            if (json_array_append(invalid, (json_t *)n) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            continue;
        }
        TRY_OUT(rc);
        rc = ssm_parameter_json(s, call, rec, ver, selector[0] != 0 ? selector : NULL, decrypt, &param);
        json_decref(rec);
        TRY_OUT(rc);
        found[n_found++] = param;
    }
    qsort(found, n_found, sizeof(found[0]), by_name);
    json_t *params = json_array();
    call->output = json_pack("{s:o, s:O}", "Parameters", params, "InvalidParameters", invalid);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < n_found; k++) {
        if (json_array_append_new(params, found[k]) != 0) {
            found[k] = NULL;
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        found[k] = NULL;
    }
    n_found = 0;
out:
    for (size_t k = 0; k < n_found; k++) {
        json_decref(found[k]);
    }
    json_decref(invalid);
    return rc;
}
