/*
 * Shared by the Parameter Store's files (not part of the module's interface): the service
 * state, the record format and the helpers every operation group uses.
 *
 * A parameter is one JSON record "ssm/param/<account>/<region><key form of its name>":
 *
 *   {"Name": "/a/b", "Tags": [{"Key","Value"}...],
 *    "Versions": [{"Version", "Type", "Value", "LastModifiedDate" (ms), "LastModifiedUser",
 *                  "Description", "AllowedPattern", "Tier", "DataType"}, ...]}
 *
 * oldest version first, at most SSM_MAX_VERSIONS; the last one is the current value. Every
 * version carries the whole metadata so that GetParameterHistory reports each as it was.
 *
 * Files: ssm_service.c (the module and its operation table), ssm_record.c (names, keys,
 * records, values), ssm_ops_put.c (PutParameter, DeleteParameter(s)), ssm_ops_get.c
 * (GetParameter(s)), ssm_ops_list.c (GetParametersByPath, DescribeParameters,
 * GetParameterHistory).
 */
#ifndef COFFER_SSM_SSM_INTERNAL_H
#define COFFER_SSM_SSM_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/api.h"
#include "common/buf.h"
#include "common/json_cache.h"
#include "iam/authz.h"
#include "kms/kms.h"
#include "ssm/ssm.h"
#include "ssm/ssm_name.h"
#include "store/store.h"

#define SSM_STANDARD_MAX_VALUE 4096
#define SSM_ADVANCED_MAX_VALUE 8192
#define SSM_KEY_MAX (128 + SSM_NAME_MAX + 8) /* names are checked to fit the store's 1024 */
#define SSM_ARN_PREFIX_MAX 128
#define SSM_DEFAULT_KEY "alias/aws/ssm"
#define SSM_KMS_MAX_PLAINTEXT 4096 /* one KMS Encrypt; larger values use envelope encryption */
#define SSM_MAX_LABELS 10          /* labels on one version */
#define SSM_MAX_TAGS 50            /* tags on one parameter */
#define SSM_MAX_TAGS_PER_CALL 1000 /* tags in one AddTagsToResource or PutParameter */
#define SSM_CACHE_ENTRIES 10000
#define SSM_CACHE_BYTES (64u << 20) /* what the cached records may take in memory */
#define SSM_CACHE_TTL_MS 1000       /* a cached record is read again after this, change feed or not */

struct ssm_events;

struct ssm {
    store *st;
    authz *az;                 /* NULL: any authenticated caller may do anything in its account */
    const struct kms_api *kms; /* the daemon's KMS; NULL: no SecureString */
    const char *region;        /* the daemon's region (the scheduler's calls have no request) */
    api_event_sink record;     /* the audit trail, for what the scheduler does; NULL: not recorded */
    void *record_ctx;
    struct ssm_events *events; /* the policy events log; NULL: no data dir, events are dropped */
    struct api_job jobs[1];
    struct ssm_settings limits; /* parameter counts per account and region */
    const void *secrets;        /* lookup("secretsmanager") at start; NULL: not served */
    json_cache *cache;          /* parsed records for GetParameter(s); ssm_commit invalidates */
    struct api_service api;
};

/* The handlers, one per row of ssm_ops.def. */
#define SSM_OP(name, flags, rps) coffer_err ssm_op_##name(void *state, struct api_call *call);
#include "ssm/ssm_ops.def"
#undef SSM_OP

/* Names, keys and authorization (ssm_record.c). */
void ssm_arn_prefix(const struct api_call *call, char *out, size_t n);
void ssm_param_arn(const struct api_call *call, const char *canon, char *out, size_t n);
void ssm_account_prefix(const struct api_call *call, char *out, size_t n);
void ssm_param_key(const struct api_call *call, const char *canon, char *out, size_t n);
size_t ssm_arn_prefix_len(const struct api_call *call);
coffer_err ssm_authorize(const struct ssm *s, const struct api_call *call, const char *action,
                         const char *resource) __attribute__((warn_unused_result));
coffer_err ssm_authorize_param(const struct ssm *s, const struct api_call *call, const char *canon)
    __attribute__((warn_unused_result));

/* Records (ssm_record.c). */
coffer_err ssm_rec_parse(coffer_cursor v, json_t **out) __attribute__((warn_unused_result));
coffer_err ssm_rec_load(store *st, store_txn *t, const char *key, json_t **out)
    __attribute__((warn_unused_result));
/* As ssm_rec_load outside a transaction, for a request that only reads: the record may come
 * from the read cache (up to STORE_CHANGE_STALENESS_MS behind another node's change). */
coffer_err ssm_rec_load_read(const struct ssm *s, const char *key, json_t **out)
    __attribute__((warn_unused_result));
/* Commits a transaction of the service and drops what the read cache holds. */
coffer_err ssm_commit(const struct ssm *s, store_txn *t) __attribute__((warn_unused_result));
coffer_err ssm_rec_store(store_txn *t, const char *key, const json_t *rec)
    __attribute__((warn_unused_result));
json_t *ssm_rec_latest(const json_t *rec);
const char *ssm_vstr(const json_t *ver, const char *member);
json_int_t ssm_vint(const json_t *ver, const char *member);
json_t *ssm_date_of(const json_t *ver);
coffer_err ssm_oom(void);

/* Values (ssm_record.c). */
json_t *ssm_value_context(const struct api_call *call, const char *canon);
coffer_err ssm_kms_failure(coffer_err rc);
coffer_err ssm_value_json(const struct ssm *s, const struct api_call *call, const char *canon,
                          const json_t *ver, bool decrypt, json_t **out) __attribute__((warn_unused_result));
coffer_err ssm_parameter_json(const struct ssm *s, const struct api_call *call, const json_t *rec,
                              const json_t *ver, const char *selector, bool decrypt, json_t **out)
    __attribute__((warn_unused_result));

/*
 * SecureString values (ssm_envelope.c): one KMS Encrypt up to SSM_KMS_MAX_PLAINTEXT bytes,
 * envelope encryption beyond (the version's "ValueFormat" is then SSM_VALUE_ENVELOPE).
 * encrypt: *stored (free()) is the Value to keep, *format the ValueFormat (NULL: none).
 * decrypt: `plain` (initialised here, a secret buffer the caller frees) from `ver`.
 */
#define SSM_VALUE_ENVELOPE "envelope-1"
coffer_err ssm_value_encrypt(const struct ssm *s, const struct api_call *call, const char *canon,
                             const char *key_id, const char *value, char **stored, const char **format)
    __attribute__((warn_unused_result));
coffer_err ssm_value_decrypt(const struct ssm *s, const struct api_call *call, const char *canon,
                             const json_t *ver, coffer_buf *plain) __attribute__((warn_unused_result));

/* A read's reference (name or ARN, optional selector) to its record and version (ssm_ops_get.c). */
coffer_err ssm_resolve(const struct ssm *s, const struct api_call *call, const char *ref, json_t **rec_out,
                       const json_t **ver_out, char *selector, size_t sel_n)
    __attribute__((warn_unused_result));

/*
 * Parameter policies (ssm_policy.c). A version carries "Policies": [{"PolicyText",
 * "PolicyType", "PolicyStatus"}] as DescribeParameters reports them.
 */
#define SSM_MAX_POLICIES 10
enum { SSM_POLICY_EXPIRATION, SSM_POLICY_EXPIRATION_NOTIFICATION, SSM_POLICY_NO_CHANGE };
/*
 * Checks PutParameter's Policies string (a JSON array) at `now_ms` and makes its items, all
 * Pending; "[{}]" gives none. InvalidPolicyTypeException, InvalidPolicyAttributeException,
 * PoliciesLimitExceededException, IncompatiblePolicyException or ValidationException.
 */
coffer_err ssm_policies_parse(const char *text, int64_t now_ms, json_t **out)
    __attribute__((warn_unused_result));
/* An ISO-8601 instant ("...Z" or with an offset) in epoch ms: 0, or -1 when malformed. */
int ssm_policy_parse_time(const char *s, int64_t *out_ms);
/* SSM_POLICY_* of a Policies item; -1 when unknown. */
int ssm_policy_kind(const json_t *item);
/* When item `i` of `policies` acts, for a version last modified at `modified_ms`; -1: never
 * (Finished, or nothing to act on). */
int64_t ssm_policy_due(const json_t *policies, size_t i, int64_t modified_ms);
/* A new copy of the Policies of `ver` ([] when it has none). */
json_t *ssm_policies_of(const json_t *ver);

/*
 * The scheduler (ssm_jobs.c). A policy that will act has an index record
 * "ssm/due/<ms, 16 digits>/<policy index, 2 digits><parameter key minus "ssm/param">", listed
 * in the parameter record's "Due" array, so a run reads only what is due. ssm_due_rewrite drops
 * the entries `old_rec` lists and writes those of the latest version of `rec` (its "Due" set).
 */
coffer_err ssm_due_rewrite(store_txn *t, const char *param_key, const json_t *old_rec, json_t *rec)
    __attribute__((warn_unused_result));
coffer_err ssm_policy_job(void *ctx, int64_t now_ms);

/* The policy events log "<data dir>/events/ssm.jsonl" (ssm_events.c). */
coffer_err ssm_events_open(const char *data_dir, struct ssm_events **out) __attribute__((warn_unused_result));
/* Appends `event` as one line and fsyncs it. */
coffer_err ssm_events_append(struct ssm_events *ev, const json_t *event) __attribute__((warn_unused_result));
void ssm_events_close(struct ssm_events *ev);

/*
 * Labels (ssm_ops_label.c: LabelParameterVersion, UnlabelParameterVersion, labels in reads and
 * the 100-version rule). A version's labels are its "Labels" member (a list of strings, absent
 * when it has none); a label is on at most one version of a parameter.
 */
/* The version of `rec` carrying `label`, or NULL. */
const json_t *ssm_rec_labeled(const json_t *rec, const char *label);
/* The version a listing reports: the one a Label filter of `filters` names (NULL when none
 * carries it), else the latest. */
const json_t *ssm_rec_version_for(const json_t *rec, const json_t *filters);
/* Drops the oldest versions past SSM_MAX_VERSIONS; ParameterMaxVersionLimitExceeded (nothing
 * changed but what was dropped already) when the oldest carries a label. */
coffer_err ssm_versions_trim(json_t *rec) __attribute__((warn_unused_result));

/*
 * Tags (ssm_ops_tags.c). Checks tags a request gives as list member `member` ("tags") against
 * AWS's pattern and the reserved "aws:" prefix: ValidationException naming each bad one.
 */
coffer_err ssm_tags_check(const json_t *tags, const char *member) __attribute__((warn_unused_result));

/*
 * The account's parameter counts (ssm_count.c). Call in the transaction that creates, deletes
 * or moves a parameter between tiers, BEFORE writing the parameter record: adds d_standard and
 * d_advanced to the counts of `account` in `region`, refusing with ParameterLimitExceeded a
 * rise past s->limits. See ssm_count.c for how the counts stay exact.
 */
coffer_err ssm_count_add(const struct ssm *s, store_txn *t, const char *account, const char *region,
                         int d_standard, int d_advanced) __attribute__((warn_unused_result));
/*
 * Whether one more standard parameter would pass s->limits.max_standard for `account` in
 * `region`, as `t` sees the counts (exact: rebuilt before answering true). Intelligent-Tiering
 * creates an advanced parameter then.
 */
coffer_err ssm_count_standard_full(const struct ssm *s, store_txn *t, const char *account, const char *region,
                                   bool *full) __attribute__((warn_unused_result));

/*
 * Secrets Manager references (ssm_secret_ref.c): whether a read's reference is
 * "/aws/reference/secretsmanager/...", and its Parameter object (a new object in *out), or
 * ValidationException while Secrets Manager is not served.
 */
bool ssm_is_secret_ref(const char *ref);
coffer_err ssm_secret_ref_get(const struct ssm *s, const struct api_call *call, const char *ref, bool decrypt,
                              json_t **out) __attribute__((warn_unused_result));

#endif
