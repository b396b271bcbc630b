/*
 * Labels: LabelParameterVersion, UnlabelParameterVersion, and what reads and writes need of
 * them (a "name:label" selector, the Label filter, the 100-version rule).
 *
 * A version's labels are its "Labels" member in the parameter record (absent when it has
 * none). A label names at most one version of a parameter: attaching it elsewhere moves it, in
 * the same transaction, so a reader never sees it twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "ssm/ssm_internal.h"

/* Index of `label` in the version's Labels, or -1. */
static int label_index(const json_t *ver, const char *label)
{
    size_t i;
    const json_t *l;
    json_array_foreach(json_object_get(ver, "Labels"), i, l)
    {
        if (strcmp(json_string_value(l), label) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const json_t *ssm_rec_labeled(const json_t *rec, const char *label)
{
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(rec, "Versions"), i, v)
    {
        if (label_index(v, label) >= 0) {
            return v;
        }
    }
    return NULL;
}

const json_t *ssm_rec_version_for(const json_t *rec, const json_t *filters)
{
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "Key")), "Label") != 0) {
            continue;
        }
        /* the newest version carrying one of the labels; none: the parameter is left out */
        const json_t *found = NULL;
        size_t j;
        const json_t *v;
        json_array_foreach(json_object_get(f, "Values"), j, v)
        {
            const json_t *ver = ssm_rec_labeled(rec, json_string_value(v));
            if (ver != NULL && (found == NULL || ssm_vint(ver, "Version") > ssm_vint(found, "Version"))) {
                found = ver;
            }
        }
        return found;
    }
    return ssm_rec_latest(rec);
}

coffer_err ssm_versions_trim(json_t *rec)
{
    json_t *versions = json_object_get(rec, "Versions");
    while (json_array_size(versions) > SSM_MAX_VERSIONS) {
        const json_t *oldest = json_array_get(versions, 0);
        if (json_array_size(json_object_get(oldest, "Labels")) > 0) {
            return coffer_fail(COFFER_ERR_MAX_VERSIONS,
                               "You attempted to create a new version of %s by calling the PutParameter API "
                               "with the overwrite flag. Version %lld, the oldest version, can't be deleted "
                               "because it has a label associated with it. Move the label to another version "
                               "of the parameter, and try again.",
                               json_string_value(json_object_get(rec, "Name")),
                               (long long)ssm_vint(oldest, "Version"));
        }
        json_array_remove(versions, 0);
    }
    return COFFER_OK;
}

/* The version `version` of `rec`; ParameterVersionNotFound when it is not kept. */
static coffer_err version_find(json_t *rec, const char *canon, int64_t version, json_t **out)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "Versions"), i, v)
    {
        if (ssm_vint(v, "Version") == version) {
            *out = v;
            return COFFER_OK;
        }
    }
    return coffer_fail(COFFER_ERR_VERSION_NOT_FOUND,
                       "Systems Manager could not find version %lld of %s. Verify the version and try again.",
                       (long long)version, canon);
}

/* Removes `label` from every version of `rec` but `keep`. */
static void label_remove_elsewhere(json_t *rec, const json_t *keep, const char *label)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "Versions"), i, v)
    {
        int at = v != keep ? label_index(v, label) : -1;
        if (at < 0) {
            continue;
        }
        json_array_remove(json_object_get(v, "Labels"), (size_t)at);
        if (json_array_size(json_object_get(v, "Labels")) == 0) {
            json_object_del(v, "Labels");
        }
    }
}

/*
 * The common part of both operations: Name (a name, not an ARN or selector), the version
 * (latest when has_version is false), the labels; loads the record in `t` after authorizing.
 */
struct label_req {
    const char *name;
    int64_t version;
    bool has_version;
    const json_t *labels;
    char canon[SSM_NAME_MAX + 1];
    char key[SSM_KEY_MAX];
};

static coffer_err label_input(struct api_call *call, bool version_required, struct label_req *r)
{
    api_in in;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "Name", API_IN_REQUIRED, 1, SSM_NAME_MAX, &r->name));
    TRY(api_in_int(&in, "ParameterVersion", version_required ? API_IN_REQUIRED : 0, INT64_MIN, INT64_MAX,
                   &r->version, &r->has_version));
    TRY(api_in_string_list(&in, "Labels", API_IN_REQUIRED, 1, 10, 1, SSM_LABEL_MAX, &r->labels));
    TRY(api_in_done(&in));
    TRY(ssm_name_check(r->name, false, ssm_arn_prefix_len(call), r->canon, sizeof(r->canon)));
    ssm_param_key(call, r->canon, r->key, sizeof(r->key));
    return COFFER_OK;
}

static coffer_err label_load(const struct ssm *s, struct label_req *r, store_txn *t, json_t **rec,
                             json_t **ver)
{
    TRY(ssm_rec_load(s->st, t, r->key, rec));
    if (*rec == NULL) {
        return coffer_fail(COFFER_ERR_NOT_FOUND, "%s", "");
    }
    int64_t v = r->has_version ? r->version : ssm_vint(ssm_rec_latest(*rec), "Version");
    r->version = v;
    return version_find(*rec, r->canon, v, ver);
}

coffer_err ssm_op_LabelParameterVersion(void *state, struct api_call *call)
{
    struct ssm *s = state;
    struct label_req r = {0};
    TRY(label_input(call, false, &r));
    TRY(ssm_authorize_param(s, call, r.canon));
    store_txn *t = NULL;
    json_t *rec = NULL, *ver = NULL, *invalid = json_array();
    coffer_err rc = COFFER_OK;
    if (invalid == NULL) {
        return ssm_oom();
    }
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(label_load(s, &r, t, &rec, &ver));
    size_t i;
    const json_t *l;
    json_array_foreach(r.labels, i, l)
    {
        const char *label = json_string_value(l);
        if (!ssm_label_valid(label)) {
            if (json_array_append(invalid, (json_t *)l) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            continue;
        }
        label_remove_elsewhere(rec, ver, label);
        if (label_index(ver, label) >= 0) {
            continue;
        }
        json_t *labels = json_object_get(ver, "Labels");
        if (labels == NULL) {
            labels = json_array();
            if (labels == NULL || json_object_set_new(ver, "Labels", labels) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
        }
        if (json_array_size(labels) == SSM_MAX_LABELS) {
            FAIL_OUT(COFFER_ERR_LABEL_LIMIT,
                     "A parameter version can have maximum %d labels.Move one or more labels to another "
                     "version and try again.",
                     SSM_MAX_LABELS);
        }
        if (json_array_append(labels, (json_t *)l) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    TRY_OUT(ssm_rec_store(t, r.key, rec));
    rc = ssm_commit(s, t);
    t = NULL;
    TRY_OUT(rc);
    call->output =
        json_pack("{s:O, s:I}", "InvalidLabels", invalid, "ParameterVersion", (json_int_t)r.version);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    store_txn_abort(t);
    json_decref(rec);
    json_decref(invalid);
    return rc;
}

coffer_err ssm_op_UnlabelParameterVersion(void *state, struct api_call *call)
{
    struct ssm *s = state;
    struct label_req r = {0};
    TRY(label_input(call, true, &r));
    TRY(ssm_authorize_param(s, call, r.canon));
    store_txn *t = NULL;
    json_t *rec = NULL, *ver = NULL, *removed = json_array(), *invalid = json_array();
    coffer_err rc = COFFER_OK;
    if (removed == NULL || invalid == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(label_load(s, &r, t, &rec, &ver));
    size_t i;
    const json_t *l;
    json_array_foreach(r.labels, i, l)
    {
        int at = label_index(ver, json_string_value(l));
        /* a label not on that version (or given twice) is reported, not an error */
        if (json_array_append(at >= 0 ? removed : invalid, (json_t *)l) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        if (at >= 0) {
            json_array_remove(json_object_get(ver, "Labels"), (size_t)at);
        }
    }
    if (json_array_size(json_object_get(ver, "Labels")) == 0) {
        json_object_del(ver, "Labels");
    }
    if (json_array_size(removed) > 0) {
        TRY_OUT(ssm_rec_store(t, r.key, rec));
        rc = ssm_commit(s, t);
        t = NULL;
        TRY_OUT(rc);
    }
    call->output = json_pack("{s:O, s:O}", "RemovedLabels", removed, "InvalidLabels", invalid);
    if (call->output == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    store_txn_abort(t);
    json_decref(rec);
    json_decref(removed);
    json_decref(invalid);
    return rc;
}
