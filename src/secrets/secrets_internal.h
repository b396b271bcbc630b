/*
 * What the files of the Secrets Manager service share (secrets.h for the whole).
 *
 * A secret is one JSON record "secrets/<account>/<region>/<name>" in the host's sealed store:
 *
 *   {"Name", "Suffix" (the ARN's 6 random characters), "CreatedDate", "LastChangedDate",
 *    "LastAccessedDate" (ms; the last one at day granularity), "Description"?, "KmsKeyId"?
 *    (as the caller named it; absent: the default key), "Tags": [{"Key","Value"}...],
 *    "DeletedDate"?, "DeletionDate"? (scheduled deletion), "ResourcePolicy"?, "Revision"
 *    (counts the saves: a save over another than the one loaded is refused),
 *    "Versions": [{"VersionId", "Stages": [...], "CreatedDate", "LastAccessedDate"?,
 *                  "KeyArn", "DataKey" (KMS ciphertext of the data key), "Iv", "Data"
 *                  (AES-256-GCM of the value), "Binary" (SecretBinary or SecretString)}...]}
 *
 * versions in creation order. Multi-Region secrets (secrets_replication.c): a primary with
 * replicas has "PrimaryRegion" (its own region) and "ReplicationStatus": [{"Region",
 * "KmsKeyId"? (the replica's key as named; absent: its default key), "Status" (InProgress,
 * InSync, Failed), "StatusMessage"?, "Force"? (ForceOverwriteReplicaSecret, until the first
 * sync)}], and while a change has not reached every replica a mark
 * "secrets-replication/<record key>" {"NotBefore": ms} the replication job scans; a replica
 * has "PrimaryRegion" naming another region and versions encrypted under its own region's key. A secret
 * scheduled for deletion also has an index record "secrets-deletion/<16-digit
 * DeletionDate>/<account>/<region>/<name>" the deletion job scans in date order; one with rotation work ahead
 * (secrets_rotation.c: "RotationEnabled", "RotationLambdaARN", "RotationRules", "LastRotatedDate",
 * "NextRotationDate", "RotationDue", "RotationWindowEnd", "Rotation") has "secrets-rotation/<16-digit
 * RotationDue>/<account>/<region>/<name>".
 *
 * Writes are serialised by one mutex of the service: a writer loads the record, decides,
 * encrypts (KMS may write its AWS managed key on first use: never inside our transaction) and
 * writes it back in one transaction, all under the mutex.
 */
#ifndef COFFER_SECRETS_SECRETS_INTERNAL_H
#define COFFER_SECRETS_SECRETS_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "api/api_input.h"
#include "common/buf.h"
#include "common/json_cache.h"
#include "iam/authz.h"
#include "kms/kms.h"
#include "secrets/secrets.h"
#include "store/store.h"

#define SM_NAME_MAX 512
#define SM_ID_MAX 2048
#define SM_VALUE_MAX 65536
#define SM_ARN_MAX (128 + SM_NAME_MAX)
#define SM_KEY_MAX (64 + SM_NAME_MAX)
#define SM_SUFFIX_LEN 6
#define SM_MAX_LABELS 20                           /* staging labels on one version */
#define SM_MAX_VERSIONS 100                        /* versions kept; unlabeled ones beyond are pruned */
#define SM_MAX_TAGS 50                             /* tags on one secret */
#define SM_POLICY_MAX 20480                        /* characters of a resource policy */
#define SM_VERSION_MIN_AGE_MS (24LL * 3600 * 1000) /* an unlabeled version is kept at least a day */
#define SM_DAY_MS (24LL * 3600 * 1000)
#define SM_DEFAULT_KEY "alias/aws/secretsmanager"
#define SM_CURRENT "AWSCURRENT"
#define SM_PREVIOUS "AWSPREVIOUS"
#define SM_PENDING "AWSPENDING"
#define SM_DELETION_PREFIX "secrets-deletion/"
#define SM_CACHE_ENTRIES 10000
#define SM_CACHE_BYTES (64u << 20) /* what the cached records may take in memory */
#define SM_CACHE_TTL_MS 1000       /* a cached record is read again after this, change feed or not */
#define SM_ROTATION_PREFIX "secrets-rotation/"
#define SM_ROTATION_MAX_DAYS 1000 /* AutomaticallyAfterDays, rate(N days) */
#define SM_ROTATION_MIN_HOURS 4   /* no schedule rotates more often */

struct sm_rotor; /* secrets_rotation.c: the rotation worker */

struct sm {
    store *st;
    authz *az;                 /* NULL: any authenticated caller may do anything in its account */
    const struct kms_api *kms; /* the daemon's KMS; NULL: no value can be stored */
    int64_t day_ms;            /* one day of a recovery window */
    api_event_sink record;     /* the deletion job's events */
    void *record_ctx;
    pthread_mutex_t wmu; /* serialises every read-decide-write of a secret record */
    json_cache *cache;   /* parsed records for reads (sm_resolve_read); sm_save invalidates */
    struct api_service api;
    struct api_job jobs[3];
    struct secrets_api inproc; /* secrets_inproc.c */
    /* Rotation (secrets_rotation.c) */
    int64_t rotation_day_ms;                           /* one day of a rotation schedule */
    int64_t step_timeout_ms;                           /* one step of a rotation function */
    const struct secrets_rotation_function *functions; /* the configured ones (borrowed) */
    size_t n_functions;
    char runner[40];              /* this process: who claimed a rotation in progress */
    struct sm_rotor *rotor;       /* the worker thread running rotations */
    int64_t rotation_job_prev_ms; /* the rotation job's previous run here (its thread only); 0: none */
};

/* Fills s->inproc (secrets_inproc.c). */
void sm_inproc_init(struct sm *s);

/* What sm_save does with a primary's replication mark ("secrets-replication/<record key>"). */
enum sm_push {
    SM_PUSH_MARK = 0, /* a change: the replicas get it (when the record lists any) */
    SM_PUSH_LEAVE,    /* no change the replicas need (their status, a replica's own record) */
    SM_PUSH_DONE,     /* every replica has it: the mark goes */
    SM_PUSH_RETRY,    /* a replica failed: pushed again at push_after */
};

/* One secret as a request sees it: its record and where it lives. */
struct sm_secret {
    json_t *rec; /* owned; NULL when not loaded */
    char account[API_ACCOUNT_ID_LEN + 1];
    char region[64];
    char name[SM_NAME_MAX + 1];
    char key[SM_KEY_MAX]; /* store key */
    char arn[SM_ARN_MAX];
    bool cross_account;   /* the caller's account is not the owner's */
    bool stored;          /* the record was in the store when loaded */
    int64_t revision;     /* and its "Revision" then: sm_save writes only over that revision */
    int64_t rotation_due; /* the record's RotationDue when loaded: where its index entry is */
    enum sm_push push;    /* what sm_save does with the record's replication mark */
    int64_t push_after;   /* SM_PUSH_RETRY: when the job pushes it again */
};

/* ---- secrets_record.c: names, records, authorization, values ---- */

coffer_err sm_oom(void);
const char *sm_str(const json_t *o, const char *member);
int64_t sm_int(const json_t *o, const char *member);
/* Secret names: 1-512 of letters, digits and /_+=.@-! (ValidationException otherwise). */
coffer_err sm_name_check(const char *name) __attribute__((warn_unused_result));
void sm_record_key(const char *account, const char *region, const char *name, char *out, size_t n);
void sm_secret_arn(const char *region, const char *account, const char *name, const char *suffix, char *out,
                   size_t n);
/* The secret `id` names (name, full ARN, partial ARN) loaded into *sec (COFFER_ERR_NOT_FOUND when
 * there is none); through `t` when not NULL. */
coffer_err sm_resolve(const struct sm *s, store_txn *t, const struct api_call *call, const char *id,
                      struct sm_secret *sec) __attribute__((warn_unused_result));
/* As sm_resolve for a request that only reads: the record may come from the read cache (up to
 * STORE_CHANGE_STALENESS_MS behind another node's change). Never for a read-decide-write. */
coffer_err sm_resolve_read(const struct sm *s, const struct api_call *call, const char *id,
                           struct sm_secret *sec) __attribute__((warn_unused_result));
/* The secret stored under `key` ("secrets/<account>/<region>/<name>") into *sec; sec->rec is
 * NULL when there is none. */
coffer_err sm_load_key(const struct sm *s, const char *key, struct sm_secret *sec)
    __attribute__((warn_unused_result));
/* Loads the record of sec->key again (after the mutex was taken). */
coffer_err sm_load(const struct sm *s, store_txn *t, const char *key, json_t **out)
    __attribute__((warn_unused_result));
void sm_secret_free(struct sm_secret *sec);
/* Writes sec->rec (and the deletion and rotation indexes) in one transaction, if the record is still what
 * was loaded (sec->stored, sec->revision): several nodes may load the same record, and the
 * second save would undo the first. Otherwise COFFER_ERR_STORE (a 500, which SDKs retry). */
coffer_err sm_save(const struct sm *s, struct sm_secret *sec, int64_t old_deletion)
    __attribute__((warn_unused_result));
/* "secretsmanager:<action>" on the secret, identity policies and its resource policy combined. */
coffer_err sm_authorize(const struct sm *s, const struct api_call *call, const char *action,
                        const struct sm_secret *sec) __attribute__((warn_unused_result));
/* "secretsmanager:<action>" on "*" (ListSecrets, GetRandomPassword). */
coffer_err sm_authorize_any(const struct sm *s, const struct api_call *call, const char *action)
    __attribute__((warn_unused_result));
/* InvalidRequestException when the secret is scheduled for deletion. */
coffer_err sm_check_live(const struct sm_secret *sec) __attribute__((warn_unused_result));
/*
 * Encrypts `value` into the version object `ver` (which holds its VersionId): a fresh data key
 * encrypted by KMS under `key_id` (NULL or "": the default key) for the caller, with the
 * encryption context {"SecretARN", "SecretVersionId"}, seals the value with AES-256-GCM.
 */
coffer_err sm_value_seal(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                         const char *key_id, coffer_cursor value, bool binary, json_t *ver)
    __attribute__((warn_unused_result));
/* The value of `ver` for the caller, into `plain` (initialised here: a secret buffer). */
coffer_err sm_value_open(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                         const json_t *ver, coffer_buf *plain) __attribute__((warn_unused_result));
/* DescribeSecret's object (ListSecrets': `list_form`, with SecretVersionsToStages). */
json_t *sm_describe_json(const struct sm_secret *sec, bool list_form);
/* The day `ms` falls in (UTC midnight), as AWS reports LastAccessedDate. */
int64_t sm_day_of(int64_t ms);
json_t *sm_date(int64_t ms);
/* The value members of a request: exactly one of SecretString / SecretBinary when `required`. */
struct sm_value {
    const char *string; /* borrowed */
    coffer_buf binary;  /* secret buffer */
    bool has_binary;
};
coffer_err sm_value_read(api_in *in, struct sm_value *v) __attribute__((warn_unused_result));
coffer_err sm_value_check(const struct sm_value *v, bool required) __attribute__((warn_unused_result));
bool sm_value_given(const struct sm_value *v);
coffer_cursor sm_value_cursor(const struct sm_value *v);
void sm_value_free(struct sm_value *v);

/*
 * The walk of the scheduler's jobs over a date index (the deletion index, the rotation index:
 * "<prefix><16-digit ms>/<account>/<region>/<name>" holding the record key): every entry due at
 * now_ms, in date order, is handed to `act` under s->wmu, unless `skip` (may be NULL) passes over
 * its record key first. Stops at the first error.
 */
typedef bool (*sm_skip_fn)(struct sm *s, const char *rkey);
typedef coffer_err (*sm_due_fn)(struct sm *s, const char *ikey, const char *rkey, int64_t when,
                                int64_t now_ms);
coffer_err sm_walk_due(struct sm *s, const char *prefix, int64_t now_ms, sm_skip_fn skip, sm_due_fn act)
    __attribute__((warn_unused_result));

/* ---- secrets_schedule.c: rotation schedules (pure) ---- */

enum sm_schedule_kind { SM_SCHED_NONE = 0, SM_SCHED_DAYS, SM_SCHED_HOURS, SM_SCHED_CRON };

/* A cron calendar: one flag per value of each field (index = the value). */
struct sm_cron {
    uint8_t minute[60], hour[24], dom[32], month[13], dow[8], year[2200];
    bool by_dom;   /* the day of the month decides (the day of the week is '?') */
    bool last_dom; /* "L": the last day of the month */
    int dow_nth;   /* "D#n": the n-th such day of the month; 0: any */
    bool dow_last; /* "DL": the last such day of the month */
};

struct sm_schedule {
    enum sm_schedule_kind kind;
    int64_t every;    /* SM_SCHED_DAYS / SM_SCHED_HOURS: N */
    int window_hours; /* Duration; 0: AWS's default window */
    struct sm_cron cron;
};

/*
 * RotationRules into *out: AutomaticallyAfterDays (`after_days` > 0) or a ScheduleExpression
 * (NULL: none), and a Duration (NULL: none). InvalidParameterException for an expression AWS
 * would refuse (both given, a malformed rate or cron, more often than every 4 hours).
 */
coffer_err sm_schedule_parse(const char *expression, int64_t after_days, const char *duration,
                             struct sm_schedule *out) __attribute__((warn_unused_result));
/*
 * When the schedule next opens a rotation window strictly after `after_ms`: a rate counts its
 * periods from `from_ms` (the last rotation) with days of `day_ms`; a cron expression is read in
 * UTC. 0 when it never does again (SM_SCHED_NONE, a cron calendar that has ended).
 */
int64_t sm_schedule_next(const struct sm_schedule *sch, int64_t from_ms, int64_t after_ms, int64_t day_ms);
/*
 * When the window that opens at `opening` closes: after Duration, else AWS's default (one hour
 * for a schedule in hours, the end of the UTC day for one in days), but never past the end of
 * that day nor into the next window. A rate's hours and days scale with `day_ms`, as in
 * sm_schedule_next; a cron calendar is real time.
 */
int64_t sm_schedule_window_end(const struct sm_schedule *sch, int64_t opening, int64_t day_ms);
/*
 * When a rotation starts in the window [opening, end): AWS picks a random moment in it; here a
 * hash of `seed` (the secret's ARN) and the opening, so that secrets sharing a schedule spread
 * over the window and a secret's start is the same on every node and after a restart.
 */
int64_t sm_schedule_window_start(int64_t opening, int64_t end, const char *seed);

/* ---- secrets_labels.c: versions and staging labels (pure) ---- */

json_t *sm_version_find(const json_t *versions, const char *vid);
json_t *sm_label_owner(const json_t *versions, const char *label);
bool sm_has_label(const json_t *ver, const char *label);
void sm_label_detach(json_t *ver, const char *label);
/*
 * Attaches `label` to `ver`, taking it from the version holding it; AWSCURRENT taken from
 * another version leaves AWSPREVIOUS on that version. LimitExceededException beyond 20 labels.
 */
coffer_err sm_label_attach(json_t *versions, json_t *ver, const char *label)
    __attribute__((warn_unused_result));
/* Drops unlabeled versions older than a day, oldest first, while more than SM_MAX_VERSIONS remain. */
void sm_versions_prune(json_t *versions, int64_t now_ms);

/* ---- secrets_password.c: GetRandomPassword (pure but for the random source) ---- */

struct sm_password_spec {
    size_t length;
    const char *exclude; /* characters never used; may be NULL */
    bool no_numbers, no_punctuation, no_upper, no_lower, include_space, require_each;
};
typedef coffer_err (*sm_random_fn)(void *out, size_t n);
/* A password of spec->length characters into out (size length + 1); InvalidParameterException
 * when the classes left cannot make one. */
coffer_err sm_password(const struct sm_password_spec *spec, sm_random_fn rnd, char *out)
    __attribute__((warn_unused_result));

/* ---- secrets_filters.c: ListSecrets filters (pure) ---- */

/* True when the record passes every filter of `filters` (a validated Filters list). */
bool sm_filters_pass(const json_t *filters, const json_t *rec);
/* InvalidParameterException / ValidationException for a malformed Filters list. */
coffer_err sm_filters_check(const json_t *filters) __attribute__((warn_unused_result));

/* ---- secrets_list.c ---- */

/*
 * The records of the caller's secrets in this region that pass `filters` (may be NULL), those
 * scheduled for deletion only with `include_deleted`, into *out (a new array of records).
 */
coffer_err sm_list_collect(const struct sm *s, const struct api_call *call, const json_t *filters,
                           bool include_deleted, json_t **out) __attribute__((warn_unused_result));
/* The deletion job: removes every secret whose recovery window ended at or before now_ms. */
coffer_err sm_sweep(void *ctx, int64_t now_ms) __attribute__((warn_unused_result));
/* A page offset from a NextToken (InvalidNextTokenException when it is not one). */
coffer_err sm_token_offset(const char *token, size_t *offset) __attribute__((warn_unused_result));

/* ---- secrets_rotation.c ---- */

/* The store key of a secret's rotation index entry for RotationDue `when`. */
void sm_rotation_index_key(const struct sm_secret *sec, int64_t when, char *out, size_t n);
/* DescribeSecret's rotation members of `rec` into `o`: RotationEnabled, RotationLambdaARN,
 * RotationRules, LastRotatedDate, NextRotationDate. */
coffer_err sm_rotation_describe(const json_t *rec, json_t *o) __attribute__((warn_unused_result));
/*
 * A caller's PutSecretValue / UpdateSecret made a new AWSCURRENT value of sec (not saved yet):
 * with AutomaticallyAfterDays AWS counts it as a rotation ("calculates the next rotation date
 * based on the previous rotation. Manually updating the secret value [...] is considered a valid
 * rotation"), so the count of days restarts now; LastRotatedDate stays (Secrets Manager did not
 * rotate). Schedule expressions keep their calendar; a rotation in progress is left alone.
 */
void sm_rotation_value_changed(const struct sm *s, struct sm_secret *sec, int64_t now_ms);
/* Starts (stops) the rotation worker of `s`. */
coffer_err sm_rotor_start(struct sm *s) __attribute__((warn_unused_result));
void sm_rotor_stop(struct sm *s);
/* The rotation job: starts every rotation whose RotationDue has come (a scheduled window, a
 * failed rotation's retry, a rotation whose runner died mid-way). */
coffer_err sm_rotation_job(void *ctx, int64_t now_ms) __attribute__((warn_unused_result));
/* True once the service is stopping: a running rotation step gives up. */
bool sm_rotor_stopping(const struct sm *s);

/* ---- secrets_rotator.c: running one step of a rotation function ---- */

/*
 * Runs `step` of the rotation of `secret_arn` with ClientRequestToken `token` through `f`,
 * at most s->step_timeout_ms. COFFER_OK when the function reported success; otherwise an error
 * and the reason in why (for the trail; never a secret value).
 */
coffer_err sm_rotator_step(struct sm *s, const struct secrets_rotation_function *f, const char *region,
                           const char *secret_arn, const char *token, const char *step, char *why,
                           size_t why_n) __attribute__((warn_unused_result));
/* The built-in rotators (secrets_rotator_pg.c): "postgres-single-user", "postgres-alternating-users". */
coffer_err sm_pg_rotator_step(struct sm *s, const char *strategy, const char *region, const char *secret_arn,
                              const char *token, const char *step, char *why, size_t why_n)
    __attribute__((warn_unused_result));

/* ---- secrets_replication.c: multi-Region secrets ---- */

/* Is sec a replica (its PrimaryRegion another region)? */
bool sm_is_replica(const struct sm_secret *sec);
/* InvalidParameterException for a write on a replica (AWS: "Operation not permitted on a
 * replica secret. Call must be made in primary secret's region."). */
coffer_err sm_check_writable(const struct sm_secret *sec) __attribute__((warn_unused_result));
/* DeleteSecret of a primary that still has replicas: InvalidParameterException naming them. */
coffer_err sm_check_no_replicas(const struct sm_secret *sec) __attribute__((warn_unused_result));
/* The store key of sec's replication mark. */
void sm_replication_marker_key(const struct sm_secret *sec, char *out, size_t n);
/* ReplicationStatus of `rec` as DescribeSecret shows it (a new array; NULL: no memory). */
json_t *sm_replication_status(const json_t *rec);
/* Checks an AddReplicaRegions list (`required`: ReplicateSecretToRegions): ValidationException
 * or InvalidParameterException (this region, twice, not a peer region). */
coffer_err sm_replicas_parse(const struct sm *s, const struct api_call *call, const json_t *list,
                             bool required) __attribute__((warn_unused_result));
/* Adds the regions of a checked AddReplicaRegions list to sec's ReplicationStatus (InProgress)
 * and makes sec a primary in `own_region`. */
coffer_err sm_replicas_add(struct sm_secret *sec, const json_t *list, bool force, const char *own_region)
    __attribute__((warn_unused_result));
/* The replication job: pushes every marked secret to its replicas. */
coffer_err sm_replication_job(void *ctx, int64_t now_ms) __attribute__((warn_unused_result));

/* ---- secrets_versions.c ---- */

/* GetSecretValue's object for `ver` of `sec` (the value decrypted for the caller). */
coffer_err sm_value_output(const struct sm *s, const struct api_call *call, const struct sm_secret *sec,
                           const json_t *ver, json_t **out) __attribute__((warn_unused_result));

/* ---- handlers (one file per group) ---- */

#define SM_OP(name, flags, rps) coffer_err sm_op_##name(void *state, struct api_call *call);
#include "secrets/secrets_ops.def"
#undef SM_OP

#endif
