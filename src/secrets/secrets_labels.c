/*
 * Versions and staging labels, on the "Versions" array of a secret record (secrets_internal.h).
 * A label is on at most one version of a secret; AWSCURRENT leaving a version for another
 * leaves AWSPREVIOUS on the version it left, as AWS moves them.
 */
#include <string.h>

#include "secrets/secrets_internal.h"

json_t *sm_version_find(const json_t *versions, const char *vid)
{
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "VersionId"));
        if (id != NULL && vid != NULL && strcmp(id, vid) == 0) {
            return v;
        }
    }
    return NULL;
}

bool sm_has_label(const json_t *ver, const char *label)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(ver, "Stages"), i, l)
    {
        if (strcmp(json_string_value(l), label) == 0) {
            return true;
        }
    }
    return false;
}

json_t *sm_label_owner(const json_t *versions, const char *label)
{
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v)
    {
        if (sm_has_label(v, label)) {
            return v;
        }
    }
    return NULL;
}

void sm_label_detach(json_t *ver, const char *label)
{
    json_t *stages = json_object_get(ver, "Stages");
    for (size_t i = 0; i < json_array_size(stages);) {
        if (strcmp(json_string_value(json_array_get(stages, i)), label) == 0) {
            json_array_remove(stages, i);
        } else {
            i++;
        }
    }
}

static coffer_err attach_one(json_t *ver, const char *label)
{
    if (sm_has_label(ver, label)) {
        return COFFER_OK;
    }
    json_t *stages = json_object_get(ver, "Stages");
    if (stages == NULL) {
        if (json_object_set_new(ver, "Stages", json_array()) != 0) {
            return sm_oom();
        }
        stages = json_object_get(ver, "Stages");
    }
    if (json_array_size(stages) >= SM_MAX_LABELS) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED,
                           "A version can't have more than %d staging labels attached.", SM_MAX_LABELS);
    }
    return json_array_append_new(stages, json_string(label)) == 0 ? COFFER_OK : sm_oom();
}

coffer_err sm_label_attach(json_t *versions, json_t *ver, const char *label)
{
    json_t *owner = sm_label_owner(versions, label);
    if (owner == ver) {
        return COFFER_OK;
    }
    TRY(attach_one(ver, label));
    if (owner == NULL) {
        return COFFER_OK;
    }
    sm_label_detach(owner, label);
    if (strcmp(label, SM_CURRENT) == 0) {
        json_t *prev = sm_label_owner(versions, SM_PREVIOUS);
        if (prev != NULL) {
            sm_label_detach(prev, SM_PREVIOUS);
        }
        TRY(attach_one(owner, SM_PREVIOUS));
    }
    return COFFER_OK;
}

void sm_versions_prune(json_t *versions, int64_t now_ms)
{
    for (size_t i = 0; json_array_size(versions) > SM_MAX_VERSIONS && i < json_array_size(versions);) {
        json_t *v = json_array_get(versions, i);
        int64_t created = json_integer_value(json_object_get(v, "CreatedDate"));
        if (json_array_size(json_object_get(v, "Stages")) == 0 && now_ms - created >= SM_VERSION_MIN_AGE_MS) {
            json_array_remove(versions, i);
        } else {
            i++;
        }
    }
}
