/*
 * Tags on parameters: AddTagsToResource, RemoveTagsFromResource, ListTagsForResource with
 * ResourceType "Parameter" and the parameter's name as ResourceId (not its ARN, as AWS). The
 * tags are the "Tags" member of the parameter record ([{"Key","Value"}...], in the order they
 * were first added), so they go when the parameter goes and a change is one transaction.
 *
 * Authorization is ssm:<Operation> on the parameter's ARN; an unknown parameter is
 * InvalidResourceId, another SSM resource type InvalidResourceType (both without a message).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_input.h"
#include "ssm/ssm_internal.h"

/* SSM's ResourceTypeForTagging; only parameters live here. */
static const char *const resource_types[] = {
    "Document", "ManagedInstance", "MaintenanceWindow", "Parameter",   "PatchBaseline",
    "OpsItem",  "OpsMetadata",     "Automation",        "Association", NULL};
#define RESOURCE_PARAMETER 3

#define TAG_PATTERN "^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$"

/*
 * The tag pattern's ASCII part: letters, digits, space, "_.:/=+-@". Characters beyond ASCII are
 * letters, separators or numbers often enough that telling them apart is not worth a Unicode
 * table here: they pass.
 */
static bool tag_text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != 0; p++) {
        if (*p >= 0x80 || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr(" _.:/=+-@", *p) != NULL) {
            continue;
        }
        return false;
    }
    return true;
}

coffer_err ssm_tags_check(const json_t *tags, const char *member)
{
    api_in in;
    api_in_init(&in, NULL);
    char path[160];
    size_t i;
    const json_t *t;
    if (json_array_size(tags) > SSM_MAX_TAGS_PER_CALL) {
        api_in_add_error(&in, member, false, NULL, "Member must have length less than or equal to 1000");
    }
    json_array_foreach(tags, i, t)
    {
        const char *k = ssm_vstr(t, "Key"), *v = ssm_vstr(t, "Value");
        snprintf(path, sizeof(path), "%s.%zu.member.key", member, i + 1);
        if (!tag_text_ok(k)) {
            api_in_add_error(&in, path, false, k,
                             "Member must satisfy regular expression pattern: " TAG_PATTERN);
        } else if (strncmp(k, "aws:", 4) == 0) {
            /* AWS keeps the aws: prefix for the tags it sets itself */
            api_in_add_error(&in, path, false, k, "Member must not start with 'aws:'");
        }
        snprintf(path, sizeof(path), "%s.%zu.member.value", member, i + 1);
        if (!tag_text_ok(v)) {
            api_in_add_error(&in, path, false, v,
                             "Member must satisfy regular expression pattern: " TAG_PATTERN);
        }
    }
    return api_in_done(&in);
}

/* Index of the tag `key` in `tags`, or -1. */
static int tag_index(const json_t *tags, const char *key)
{
    size_t i;
    const json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (strcmp(ssm_vstr(t, "Key"), key) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* The parameter a request names, its record key, and the caller's right to the operation on it. */
static coffer_err tags_resolve(const struct ssm *s, struct api_call *call, int type, const char *id,
                               char *canon, size_t cn, char *key, size_t kn)
{
    if (type != RESOURCE_PARAMETER) {
        return coffer_fail(COFFER_ERR_INVALID_RESOURCE_TYPE, "%s", "");
    }
    /* a name that cannot be a parameter's (an ARN among them) names no resource */
    if (ssm_name_check(id, false, ssm_arn_prefix_len(call), canon, cn) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_INVALID_RESOURCE_ID, "%s", "");
    }
    TRY(ssm_authorize_param(s, call, canon));
    ssm_param_key(call, canon, key, kn);
    return COFFER_OK;
}

/* Loads the record in `t`; InvalidResourceId when there is no such parameter. */
static coffer_err tags_load(const struct ssm *s, store_txn *t, const char *key, json_t **rec)
{
    TRY(ssm_rec_load(s->st, t, key, rec));
    if (*rec == NULL) {
        return coffer_fail(COFFER_ERR_INVALID_RESOURCE_ID, "%s", "");
    }
    if (!json_is_array(json_object_get(*rec, "Tags")) &&
        json_object_set_new(*rec, "Tags", json_array()) != 0) {
        return ssm_oom();
    }
    return COFFER_OK;
}

/*
 * Reads the request: ResourceType, ResourceId, plus `list_member` (AddTagsToResource: Tags; Remove: TagKeys;
 * NULL for List) into *list.
 */
static coffer_err tags_input(const struct ssm *s, struct api_call *call, const char *list_member,
                             const json_t **list, char *canon, size_t cn, char *key, size_t kn)
{
    api_in in;
    int type = -1;
    const char *id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_enum(&in, "ResourceType", API_IN_REQUIRED, resource_types, &type));
    TRY(api_in_string(&in, "ResourceId", API_IN_REQUIRED, 1, SSM_NAME_MAX, &id));
    if (list_member != NULL && strcmp(list_member, "Tags") == 0) {
        TRY(api_in_tags(&in, "Tags", API_IN_REQUIRED, "Key", "Value", list));
    } else if (list_member != NULL) {
        TRY(api_in_string_list(&in, list_member, API_IN_REQUIRED, 0, SSM_MAX_TAGS_PER_CALL, 1, 128, list));
    }
    TRY(api_in_done(&in));
    if (list_member != NULL && strcmp(list_member, "Tags") == 0) {
        TRY(ssm_tags_check(*list, "tags"));
    }
    return tags_resolve(s, call, type, id, canon, cn, key, kn);
}

coffer_err ssm_op_AddTagsToResource(void *state, struct api_call *call)
{
    struct ssm *s = state;
    const json_t *add = NULL;
    char canon[SSM_NAME_MAX + 1], key[SSM_KEY_MAX];
    TRY(tags_input(s, call, "Tags", &add, canon, sizeof(canon), key, sizeof(key)));
    store_txn *t = NULL;
    json_t *rec = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(tags_load(s, t, key, &rec));
    json_t *tags = json_object_get(rec, "Tags");
    size_t i;
    const json_t *a;
    json_array_foreach(add, i, a)
    {
        /* an existing key takes the new value where it stands */
        int at = tag_index(tags, ssm_vstr(a, "Key"));
        json_t *tag = json_pack("{s:s, s:s}", "Key", ssm_vstr(a, "Key"), "Value", ssm_vstr(a, "Value"));
        if (tag == NULL ||
            (at >= 0 ? json_array_set_new(tags, (size_t)at, tag) : json_array_append_new(tags, tag)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (json_array_size(tags) > SSM_MAX_TAGS) {
        FAIL_OUT(COFFER_ERR_TOO_MANY_TAGS, "%s", "");
    }
    TRY_OUT(ssm_rec_store(t, key, rec));
    rc = ssm_commit(s, t);
    t = NULL;
out:
    store_txn_abort(t);
    json_decref(rec);
    return rc;
}

coffer_err ssm_op_RemoveTagsFromResource(void *state, struct api_call *call)
{
    struct ssm *s = state;
    const json_t *keys = NULL;
    char canon[SSM_NAME_MAX + 1], key[SSM_KEY_MAX];
    TRY(tags_input(s, call, "TagKeys", &keys, canon, sizeof(canon), key, sizeof(key)));
    store_txn *t = NULL;
    json_t *rec = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(tags_load(s, t, key, &rec));
    json_t *tags = json_object_get(rec, "Tags");
    size_t i;
    const json_t *k;
    json_array_foreach(keys, i, k)
    {
        int at = tag_index(tags, json_string_value(k));
        if (at >= 0) {
            json_array_remove(tags, (size_t)at);
        }
    }
    TRY_OUT(ssm_rec_store(t, key, rec));
    rc = ssm_commit(s, t);
    t = NULL;
out:
    store_txn_abort(t);
    json_decref(rec);
    return rc;
}

coffer_err ssm_op_ListTagsForResource(void *state, struct api_call *call)
{
    struct ssm *s = state;
    char canon[SSM_NAME_MAX + 1], key[SSM_KEY_MAX];
    TRY(tags_input(s, call, NULL, NULL, canon, sizeof(canon), key, sizeof(key)));
    json_t *rec = NULL;
    TRY(tags_load(s, NULL, key, &rec));
    call->output = json_pack("{s:O}", "TagList", json_object_get(rec, "Tags"));
    json_decref(rec);
    return call->output != NULL ? COFFER_OK : ssm_oom();
}
