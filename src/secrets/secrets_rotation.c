/*
 * Rotation (secretsmanager.md §3): RotateSecret, CancelRotateSecret, the rotation worker that
 * drives a rotation function through createSecret -> setSecret -> testSecret -> finishSecret,
 * and the scheduler's job that starts rotations when due.
 *
 * Record members (secrets_internal.h): "RotationEnabled", "RotationLambdaARN", "RotationRules"
 * (as DescribeSecret shows them), "LastRotatedDate", "NextRotationDate" (ms), and for the
 * scheduler "RotationDue" (ms; indexed), "RotationWindowEnd" (ms) and, while a rotation runs,
 * "Rotation" {"Token" (the AWSPENDING version), "Runner" (the process running it), "Step"}.
 *
 * A scheduled rotation starts inside its window (RotationRules Duration, or AWS's default
 * window): NextRotationDate is when the window opens, RotationDue a moment in it that spreads
 * secrets sharing a schedule (sm_schedule_window_start), and a start found only after the
 * window closed (no node ran the job meanwhile) waits for the next window instead.
 *
 * A rotation is resumable: its AWSPENDING version and the "Rotation" claim are written before
 * any step runs, and every step moves RotationDue to the moment the claim expires (the step's
 * timeout and a margin). If the process dies, the claim expires, the job (on the node that
 * holds the scheduler lease) finds the entry due and runs the rotation again from createSecret
 * with the same ClientRequestToken, as AWS retries a rotation; the steps are idempotent by the
 * rotation function contract. A failed rotation leaves AWSPENDING where it is and is retried at
 * the schedule's next window. Coffer itself never moves AWSCURRENT: finishSecret does, and it
 * runs only after testSecret succeeded.
 *
 * Rotation functions run on one worker thread per service, never on a request thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "secrets/secrets_internal.h"

#define CLAIM_MARGIN_MS 5000 /* a step's claim outlives its timeout by this much */

static const char *const steps[] = {"createSecret", "setSecret", "testSecret", "finishSecret"};

/* ------------------------------------------------------------------------------------------ */
/* Rotation functions                                                                           */

coffer_err secrets_rotation_function_parse(const char *spec, struct secrets_rotation_function *out)
{
    memset(out, 0, sizeof(*out));
    const char *eq = strchr(spec, '=');
    if (eq == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "--rotation-function must be ARN=exec:/path, ARN=https://host/path[,ca=/ca.pem] "
                           "or ARN=builtin:postgres-single-user|postgres-alternating-users");
    }
    size_t alen = (size_t)(eq - spec);
    const char *target = eq + 1;
    /* arn:aws:lambda:REGION:ACCOUNT:function:NAME */
    char arn[SECRETS_FUNCTION_ARN_MAX];
    if (alen == 0 || alen >= sizeof(arn)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--rotation-function: bad function ARN");
    }
    memcpy(arn, spec, alen);
    arn[alen] = 0;
    const char *p = arn;
    int colons = 0;
    for (const char *q = arn; *q; q++) {
        colons += *q == ':';
    }
    const char *fn = strstr(arn, ":function:");
    if (strncmp(p, "arn:aws:lambda:", 15) != 0 || colons < 6 || fn == NULL || fn[10] == 0) {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "--rotation-function: the ARN must look like "
                           "arn:aws:lambda:REGION:ACCOUNT:function:NAME (got '%s')",
                           arn);
    }
    if (strncmp(target, "exec:/", 6) != 0 && strncmp(target, "https://", 8) != 0 &&
        strncmp(target, "http://", 7) != 0 && strcmp(target, "builtin:postgres-single-user") != 0 &&
        strcmp(target, "builtin:postgres-alternating-users") != 0) {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "--rotation-function %s: the target must be exec:/absolute/path, an http(s) URL, "
                           "builtin:postgres-single-user or builtin:postgres-alternating-users",
                           arn);
    }
    /* ",ca=PATH" after an https URL: its own trust anchors (a URL rarely holds ",ca=") */
    const char *ca = strstr(target, ",ca=");
    size_t tlen = ca != NULL ? (size_t)(ca - target) : strlen(target);
    if (ca != NULL) {
        ca += 4;
        if (strncmp(target, "https://", 8) != 0) {
            return coffer_fail(COFFER_ERR_CONFIG,
                               "--rotation-function %s: ca= applies to an https:// target only", arn);
        }
        if (ca[0] == 0 || strlen(ca) >= sizeof(out->ca)) {
            return coffer_fail(COFFER_ERR_CONFIG, "--rotation-function %s: ca= needs the path of a PEM file",
                               arn);
        }
        if (access(ca, R_OK) != 0) {
            return coffer_fail(COFFER_ERR_CONFIG, "--rotation-function %s: cannot read the CA file %s: %s",
                               arn, ca, strerror(errno));
        }
        coffer_str_copy(out->ca, sizeof(out->ca), ca);
    }
    if (tlen >= sizeof(out->target)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--rotation-function %s: the target is too long", arn);
    }
    coffer_str_copy(out->arn, sizeof(out->arn), arn);
    memcpy(out->target, target, tlen);
    out->target[tlen] = 0;
    return COFFER_OK;
}

static const struct secrets_rotation_function *function_find(const struct sm *s, const char *arn)
{
    for (size_t i = 0; arn != NULL && i < s->n_functions; i++) {
        if (strcmp(s->functions[i].arn, arn) == 0) {
            return &s->functions[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Record members                                                                               */

coffer_err sm_rotation_describe(const json_t *rec, json_t *o)
{
    const json_t *enabled = json_object_get(rec, "RotationEnabled");
    if (enabled == NULL) {
        return COFFER_OK; /* rotation never configured: AWS shows none of it */
    }
    const json_t *rules = json_object_get(rec, "RotationRules");
    if (json_object_set_new(o, "RotationEnabled", json_boolean(json_is_true(enabled))) != 0 ||
        (sm_str(rec, "RotationLambdaARN") != NULL &&
         json_object_set_new(o, "RotationLambdaARN", json_string(sm_str(rec, "RotationLambdaARN"))) != 0) ||
        (rules != NULL && json_object_set_new(o, "RotationRules", json_deep_copy(rules)) != 0) ||
        (json_object_get(rec, "LastRotatedDate") != NULL &&
         json_object_set_new(o, "LastRotatedDate", sm_date(sm_int(rec, "LastRotatedDate"))) != 0) ||
        (json_is_true(enabled) && json_object_get(rec, "NextRotationDate") != NULL &&
         json_object_set_new(o, "NextRotationDate", sm_date(sm_int(rec, "NextRotationDate"))) != 0)) {
        return sm_oom();
    }
    return COFFER_OK;
}

/* The stored RotationRules as a schedule. */
static coffer_err stored_schedule(const json_t *rec, struct sm_schedule *out)
{
    const json_t *rules = json_object_get(rec, "RotationRules");
    const char *expr = sm_str(rules, "ScheduleExpression");
    int64_t days = expr == NULL ? sm_int(rules, "AutomaticallyAfterDays") : 0;
    return sm_schedule_parse(expr, days, sm_str(rules, "Duration"), out);
}

/* When the next window opens after `now_ms` for a secret last rotated at `from_ms` (0: none). */
static int64_t next_window(const struct sm *s, const json_t *rec, int64_t from_ms, int64_t now_ms)
{
    struct sm_schedule sch;
    if (stored_schedule(rec, &sch) != COFFER_OK) {
        coffer_clear_err();
        return 0;
    }
    return sm_schedule_next(&sch, from_ms != 0 ? from_ms : now_ms, now_ms, s->rotation_day_ms);
}

static int set_ms(json_t *rec, const char *member, int64_t ms)
{
    if (ms == 0) {
        json_object_del(rec, member);
        return 0;
    }
    return json_object_set_new(rec, member, json_integer(ms));
}

/*
 * The next rotation of sec in the window that opens at `opening` (0: none, rotation waits for
 * the next RotateSecret): NextRotationDate shows the opening, RotationDue is the start picked in
 * the window (sm_schedule_window_start) and RotationWindowEnd when the window closes; a start
 * the job finds only after that is skipped for the next window (start_due).
 */
static int schedule(const struct sm *s, struct sm_secret *sec, int64_t opening)
{
    struct sm_schedule sch;
    if (opening == 0 || stored_schedule(sec->rec, &sch) != COFFER_OK) {
        coffer_clear_err();
        json_object_del(sec->rec, "RotationWindowEnd");
        return set_ms(sec->rec, "NextRotationDate", opening) | set_ms(sec->rec, "RotationDue", opening);
    }
    int64_t end = sm_schedule_window_end(&sch, opening, s->rotation_day_ms);
    return set_ms(sec->rec, "NextRotationDate", opening) |
           set_ms(sec->rec, "RotationDue", sm_schedule_window_start(opening, end, sec->arn)) |
           set_ms(sec->rec, "RotationWindowEnd", end);
}

void sm_rotation_value_changed(const struct sm *s, struct sm_secret *sec, int64_t now_ms)
{
    const json_t *rules = json_object_get(sec->rec, "RotationRules");
    if (!json_is_true(json_object_get(sec->rec, "RotationEnabled")) ||
        json_object_get(sec->rec, "Rotation") != NULL || sm_str(rules, "ScheduleExpression") != NULL ||
        sm_int(rules, "AutomaticallyAfterDays") <= 0) {
        return;
    }
    schedule(s, sec, next_window(s, sec->rec, now_ms, now_ms));
}

/* ------------------------------------------------------------------------------------------ */
/* The trail                                                                                    */

/*
 * A service event of the rotation (CloudTrail: RotationStarted, RotationSucceeded,
 * RotationFailed, RotationAbandoned, eventType AwsServiceEvent). `details` (borrowed, may be
 * NULL) becomes serviceEventDetails; it never holds a value.
 */
static coffer_err record_event(const struct sm *s, const struct sm_secret *sec, const char *name,
                               int64_t now_ms, json_t *details)
{
    if (s->record == NULL) {
        return COFFER_OK;
    }
    char when[40], ids[1][CRYPTO_UUID_STR_LEN + 1];
    TRY(crypto_uuid_v4_many(ids, 1));
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *source = "secretsmanager.amazonaws.com";
    json_t *ev = json_pack(
        "{s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:n,s:n,s:{s:s},s:s,s:b,"
        "s:[{s:s,s:s,s:s}],s:s,s:b,s:s,s:s}",
        "eventVersion", "1.08", "userIdentity", "accountId", sec->account, "invokedBy", source, "eventTime",
        when, "eventSource", source, "eventName", name, "awsRegion", sec->region, "sourceIPAddress", source,
        "userAgent", source, "requestParameters", "responseElements", "additionalEventData", "SecretId",
        sec->arn, "eventID", ids[0], "readOnly", 0, "resources", "accountId", sec->account, "type",
        "AWS::SecretsManager::Secret", "ARN", sec->arn, "eventType", "AwsServiceEvent", "managementEvent", 1,
        "recipientAccountId", sec->account, "eventCategory", "Management");
    if (ev == NULL || (details != NULL && json_object_set(ev, "serviceEventDetails", details) != 0)) {
        json_decref(ev);
        return sm_oom();
    }
    coffer_err rc = s->record(s->record_ctx, ev);
    json_decref(ev);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Starting a rotation                                                                          */

static coffer_err previous_incomplete(void)
{
    return coffer_fail(COFFER_ERR_INVALID_STATE,
                       "A previous rotation isn't complete. That rotation will be reattempted.");
}

/* The version carrying AWSPENDING but not AWSCURRENT: a rotation not finished; NULL if none. */
static json_t *unfinished(const json_t *rec)
{
    const json_t *versions = json_object_get(rec, "Versions");
    json_t *pending = sm_label_owner(versions, SM_PENDING);
    return pending != NULL && !sm_has_label(pending, SM_CURRENT) ? pending : NULL;
}

/*
 * Claims the rotation of sec for this process (the caller holds the service's mutex and saves):
 * the unfinished rotation's AWSPENDING version when there is one (resumed with its token), else
 * a new value-less version `token` (NULL: a fresh UUID) labelled AWSPENDING. vid gets its id.
 */
static coffer_err claim(struct sm *s, struct sm_secret *sec, const char *token, int64_t now_ms, char vid[65])
{
    json_t *versions = json_object_get(sec->rec, "Versions");
    json_t *pending = unfinished(sec->rec);
    if (pending != NULL) {
        coffer_str_copy(vid, 65, sm_str(pending, "VersionId"));
    } else {
        if (token != NULL) {
            coffer_str_copy(vid, 65, token);
        } else {
            char u[CRYPTO_UUID_STR_LEN + 1];
            TRY(crypto_uuid_v4(u));
            coffer_str_copy(vid, 65, u);
        }
        if (sm_version_find(versions, vid) != NULL) {
            return coffer_fail(
                COFFER_ERR_ALREADY_EXISTS,
                "You can't use ClientRequestToken %s because that value is already in use for a "
                "version of secret %s.",
                vid, sec->arn);
        }
        json_t *ver =
            json_pack("{s:s, s:[], s:I}", "VersionId", vid, "Stages", "CreatedDate", (json_int_t)now_ms);
        if (ver == NULL || json_array_append_new(versions, ver) != 0) {
            return sm_oom();
        }
        TRY(sm_label_attach(versions, ver, SM_PENDING));
        sm_versions_prune(versions, now_ms);
    }
    json_object_del(sec->rec, "RotationWindowEnd"); /* a claim runs whatever the window */
    json_t *r = json_pack("{s:s, s:s, s:s}", "Token", vid, "Runner", s->runner, "Step", steps[0]);
    if (r == NULL || json_object_set_new(sec->rec, "Rotation", r) != 0 ||
        set_ms(sec->rec, "RotationDue", now_ms + s->step_timeout_ms + CLAIM_MARGIN_MS) != 0) {
        return sm_oom();
    }
    return COFFER_OK;
}

/*
 * RotateSecret with RotateImmediately=false: AWS tests the configuration by running the
 * function's testSecret step alone, on an AWSPENDING label it adds for the test and removes
 * afterwards. Here the label goes on the AWSCURRENT version, which the test runs against (its
 * VersionId is the ClientRequestToken); the claim is marked "Test" so that neither the worker nor
 * a node resuming it runs any other step, and the scheduled window (NextRotationDate) stays.
 */
static coffer_err claim_test(struct sm *s, struct sm_secret *sec, int64_t now_ms)
{
    json_t *versions = json_object_get(sec->rec, "Versions");
    json_t *current = sm_label_owner(versions, SM_CURRENT);
    TRY(sm_label_attach(versions, current, SM_PENDING));
    json_object_del(sec->rec, "RotationWindowEnd");
    json_t *r = json_pack("{s:s, s:s, s:s, s:b}", "Token", sm_str(current, "VersionId"), "Runner", s->runner,
                          "Step", steps[2], "Test", 1);
    if (r == NULL || json_object_set_new(sec->rec, "Rotation", r) != 0 ||
        set_ms(sec->rec, "RotationDue", now_ms + s->step_timeout_ms + CLAIM_MARGIN_MS) != 0) {
        return sm_oom();
    }
    return COFFER_OK;
}

/* Ends a configuration test (claim_test) on sec: AWSPENDING leaves the tested version. */
static void end_test(const struct sm *s, struct sm_secret *sec)
{
    const json_t *r = json_object_get(sec->rec, "Rotation");
    json_t *ver = sm_version_find(json_object_get(sec->rec, "Versions"), sm_str(r, "Token"));
    if (ver != NULL) {
        sm_label_detach(ver, SM_PENDING);
    }
    json_object_del(sec->rec, "Rotation");
    if (json_is_true(json_object_get(sec->rec, "RotationEnabled"))) {
        schedule(s, sec, sm_int(sec->rec, "NextRotationDate"));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The worker                                                                                   */

struct sm_rotor {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
    json_t *queue;           /* record keys waiting */
    char active[SM_KEY_MAX]; /* the record being rotated; "" */
};

bool sm_rotor_stopping(const struct sm *s)
{
    return s->rotor != NULL && __atomic_load_n(&s->rotor->stop, __ATOMIC_ACQUIRE);
}

/* Whether `key` is queued or being rotated here. */
static bool rotor_busy(struct sm_rotor *r, const char *key)
{
    bool busy = strcmp(r->active, key) == 0;
    size_t i;
    json_t *k;
    json_array_foreach(r->queue, i, k)
    {
        busy = busy || strcmp(json_string_value(k), key) == 0;
    }
    return busy;
}

static bool rotor_is_busy(struct sm *s, const char *key)
{
    pthread_mutex_lock(&s->rotor->mu);
    bool busy = rotor_busy(s->rotor, key);
    pthread_mutex_unlock(&s->rotor->mu);
    return busy;
}

static void rotor_enqueue(struct sm *s, const char *key)
{
    struct sm_rotor *r = s->rotor;
    pthread_mutex_lock(&r->mu);
    if (!rotor_busy(r, key) && json_array_append_new(r->queue, json_string(key)) == 0) {
        pthread_cond_signal(&r->cond);
    }
    pthread_mutex_unlock(&r->mu);
}

/*
 * Loads the secret under `key` for a step of the rotation `token` claimed by this process;
 * false (sec freed) when the rotation is no longer ours to run: finished, cancelled, taken over
 * by another node after our claim expired, or the secret gone.
 */
static bool still_ours(struct sm *s, const char *key, const char *token, struct sm_secret *sec)
{
    if (sm_load_key(s, key, sec) != COFFER_OK) {
        coffer_clear_err();
        sm_secret_free(sec);
        return false;
    }
    const json_t *r = json_object_get(sec->rec, "Rotation");
    if (sec->rec == NULL || r == NULL || strcmp(sm_str(r, "Runner"), s->runner) != 0 ||
        (token != NULL && strcmp(sm_str(r, "Token"), token) != 0)) {
        sm_secret_free(sec);
        return false;
    }
    return true;
}

/* Ends the rotation `token` of `key`: its outcome on the record and in the trail. */
static void finish(struct sm *s, const char *key, const char *token, const char *failed_step, const char *why)
{
    pthread_mutex_lock(&s->wmu);
    struct sm_secret sec;
    int64_t now = coffer_now_ms();
    if (!still_ours(s, key, token, &sec)) {
        pthread_mutex_unlock(&s->wmu);
        return;
    }
    if (json_is_true(json_object_get(json_object_get(sec.rec, "Rotation"), "Test"))) {
        /* a configuration test: only a failure goes on the trail */
        end_test(s, &sec);
        json_t *d = NULL;
        coffer_err rc = COFFER_OK;
        if (failed_step != NULL) {
            log_warn("secrets: the rotation test of %s failed in %s: %s", sec.arn, failed_step,
                     why != NULL ? why : "");
            d = json_pack("{s:s, s:s, s:s, s:s}", "SecretId", sec.arn, "ClientRequestToken", token,
                          "FailedStep", failed_step, "Reason", why != NULL ? why : "");
            rc = d != NULL ? record_event(s, &sec, "RotationFailed", now, d) : sm_oom();
        }
        if (rc == COFFER_OK) {
            rc = sm_save(s, &sec, sm_int(sec.rec, "DeletionDate"));
        }
        if (rc != COFFER_OK) {
            log_warn("secrets: cannot record the rotation test of %s: %s", sec.arn, coffer_last_message());
            coffer_clear_err();
        }
        json_decref(d);
        sm_secret_free(&sec);
        pthread_mutex_unlock(&s->wmu);
        return;
    }
    const json_t *ver = sm_version_find(json_object_get(sec.rec, "Versions"), token);
    char reason[512];
    if (failed_step == NULL && !sm_has_label(ver, SM_CURRENT)) {
        /* the function said it finished but did not promote its version */
        failed_step = "finishSecret";
        snprintf(reason, sizeof(reason), "finishSecret did not move AWSCURRENT to version %s", token);
        why = reason;
    }
    json_object_del(sec.rec, "Rotation");
    json_t *details = NULL;
    const char *event = NULL;
    int64_t next = next_window(s, sec.rec, now, now);
    if (failed_step == NULL) {
        event = "RotationSucceeded";
        set_ms(sec.rec, "LastRotatedDate", now);
        details = json_pack("{s:s, s:s}", "SecretId", sec.arn, "ClientRequestToken", token);
        schedule(s, &sec, next);
    } else {
        /* AWSPENDING stays on the version: the next window runs this rotation again */
        event = "RotationFailed";
        details = json_pack("{s:s, s:s, s:s, s:s}", "SecretId", sec.arn, "ClientRequestToken", token,
                            "FailedStep", failed_step, "Reason", why != NULL ? why : "");
        log_warn("secrets: rotation of %s failed in %s: %s", sec.arn, failed_step, why != NULL ? why : "");
        if (next != 0) {
            schedule(s, &sec, next);
        } else {
            /* no schedule: retried a day later */
            schedule(s, &sec, 0);
            set_ms(sec.rec, "RotationDue", now + s->rotation_day_ms);
        }
    }
    coffer_err rc = record_event(s, &sec, event, now, details);
    if (rc == COFFER_OK) {
        rc = sm_save(s, &sec, sm_int(sec.rec, "DeletionDate"));
    }
    if (rc != COFFER_OK) {
        /* the claim expires and the job runs the rotation again */
        log_warn("secrets: cannot record the rotation of %s: %s", sec.arn, coffer_last_message());
        coffer_clear_err();
    }
    json_decref(details);
    sm_secret_free(&sec);
    pthread_mutex_unlock(&s->wmu);
}

/* Runs the rotation claimed on `key`, all four steps. */
static void rotate_one(struct sm *s, const char *key)
{
    char token[65] = "", arn[SM_ARN_MAX], region[64], why[512];
    struct secrets_rotation_function f;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (sm_rotor_stopping(s)) {
            return; /* the claim expires; the next start resumes it */
        }
        pthread_mutex_lock(&s->wmu);
        struct sm_secret sec;
        if (!still_ours(s, key, token[0] != 0 ? token : NULL, &sec)) {
            pthread_mutex_unlock(&s->wmu);
            return;
        }
        const json_t *r = json_object_get(sec.rec, "Rotation");
        if (json_is_true(json_object_get(r, "Test")) && strcmp(steps[i], "testSecret") != 0) {
            /* a configuration test runs testSecret alone */
            sm_secret_free(&sec);
            pthread_mutex_unlock(&s->wmu);
            continue;
        }
        coffer_str_copy(token, sizeof(token), sm_str(r, "Token"));
        coffer_str_copy(arn, sizeof(arn), sec.arn);
        coffer_str_copy(region, sizeof(region), sec.region);
        const struct secrets_rotation_function *fn = function_find(s, sm_str(sec.rec, "RotationLambdaARN"));
        bool enabled = json_is_true(json_object_get(sec.rec, "RotationEnabled"));
        bool deleted = json_object_get(sec.rec, "DeletedDate") != NULL;
        /* finishSecret already promoted the version (a rotation resumed after a crash that came
         * before its outcome was recorded): nothing is left to run */
        bool promoted =
            !json_is_true(json_object_get(r, "Test")) &&
            sm_has_label(sm_version_find(json_object_get(sec.rec, "Versions"), token), SM_CURRENT);
        if (promoted) {
            sm_secret_free(&sec);
            pthread_mutex_unlock(&s->wmu);
            break;
        }
        coffer_err rc = COFFER_OK;
        if (fn != NULL && enabled && !deleted) {
            f = *fn;
            int64_t now = coffer_now_ms();
            if (json_object_set_new((json_t *)r, "Step", json_string(steps[i])) != 0 ||
                set_ms(sec.rec, "RotationDue", now + s->step_timeout_ms + CLAIM_MARGIN_MS) != 0) {
                rc = sm_oom();
            }
            if (rc == COFFER_OK && i == 0) {
                json_t *d = json_pack("{s:s, s:s}", "SecretId", sec.arn, "ClientRequestToken", token);
                rc = d != NULL ? record_event(s, &sec, "RotationStarted", now, d) : sm_oom();
                json_decref(d);
            }
            if (rc == COFFER_OK) {
                rc = sm_save(s, &sec, sm_int(sec.rec, "DeletionDate"));
            }
        }
        sm_secret_free(&sec);
        pthread_mutex_unlock(&s->wmu);
        if (fn == NULL) {
            finish(s, key, token, steps[i], "the rotation function is not configured on this server");
            return;
        }
        if (!enabled || deleted) {
            finish(s, key, token, steps[i],
                   !enabled ? "rotation was cancelled"
                            : "the secret is scheduled "
                              "for deletion");
            return;
        }
        if (rc != COFFER_OK) {
            log_warn("secrets: rotation of %s: %s", arn, coffer_last_message());
            coffer_clear_err();
            return; /* the claim expires and the job tries again */
        }
        why[0] = 0;
        rc = sm_rotator_step(s, &f, region, arn, token, steps[i], why, sizeof(why));
        if (rc != COFFER_OK) {
            coffer_clear_err();
            if (sm_rotor_stopping(s)) {
                return;
            }
            finish(s, key, token, steps[i], why);
            return;
        }
    }
    finish(s, key, token, NULL, NULL);
}

static void *rotor_main(void *arg)
{
    struct sm *s = arg;
    struct sm_rotor *r = s->rotor;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (json_array_size(r->queue) == 0) {
            pthread_cond_wait(&r->cond, &r->mu);
            continue;
        }
        coffer_str_copy(r->active, sizeof(r->active), json_string_value(json_array_get(r->queue, 0)));
        json_array_remove(r->queue, 0);
        pthread_mutex_unlock(&r->mu);
        rotate_one(s, r->active);
        pthread_mutex_lock(&r->mu);
        r->active[0] = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

coffer_err sm_rotor_start(struct sm *s)
{
    struct sm_rotor *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->queue = json_array()) == NULL) {
        free(r);
        return sm_oom();
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    s->rotor = r;
    char u[CRYPTO_UUID_STR_LEN + 1];
    coffer_err rc = crypto_uuid_v4(u);
    if (rc == COFFER_OK) {
        coffer_str_copy(s->runner, sizeof(s->runner), u);
        if (pthread_create(&r->thread, NULL, rotor_main, s) != 0) {
            rc = coffer_fail(COFFER_ERR_INTERNAL, "cannot start the rotation worker");
        }
    }
    if (rc != COFFER_OK) {
        json_decref(r->queue);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cond);
        free(r);
        s->rotor = NULL;
    }
    return rc;
}

void sm_rotor_stop(struct sm *s)
{
    struct sm_rotor *r = s->rotor;
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    __atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    json_decref(r->queue);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    free(r);
    s->rotor = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The job                                                                                      */

/*
 * Whether the scheduled start of rec was missed: its window has closed and this process did not
 * run the job while it was open (the job runs once a scheduler tick, so a start it finds just
 * after the window closed, having run before, is a start in time).
 */
static bool missed(const struct sm *s, const json_t *rec, int64_t now_ms)
{
    int64_t end = sm_int(rec, "RotationWindowEnd");
    return end != 0 && now_ms >= end && (s->rotation_job_prev_ms == 0 || s->rotation_job_prev_ms >= end);
}

/* One due entry: the rotation started (or resumed) and queued, or the stale entry dropped. */
static coffer_err start_due(struct sm *s, const char *ikey, const char *rkey, int64_t when, int64_t now_ms)
{
    struct sm_secret sec;
    TRY(sm_load_key(s, rkey, &sec));
    coffer_err rc = COFFER_OK;
    bool queue = false;
    if (sec.rec == NULL || sec.rotation_due != when) {
        /* the secret is gone or its rotation moved: the entry is left over */
        store_txn *t = NULL;
        TRY_OUT(store_txn_begin(s->st, &t));
        rc = store_txn_delete(t, ikey);
        if (rc == COFFER_OK) {
            rc = store_txn_commit(t);
            t = NULL;
        }
        store_txn_abort(t);
        goto out;
    }
    const json_t *r = json_object_get(sec.rec, "Rotation");
    if (!json_is_true(json_object_get(sec.rec, "RotationEnabled"))) {
        json_object_del(sec.rec, "RotationDue");
        json_object_del(sec.rec, "Rotation");
    } else if (json_object_get(sec.rec, "DeletedDate") != NULL) {
        /* no rotation while the secret waits for deletion; the next window may find it restored */
        if (json_is_true(json_object_get(r, "Test"))) {
            end_test(s, &sec);
        }
        int64_t next = next_window(s, sec.rec, now_ms, now_ms);
        schedule(s, &sec, next);
        if (next == 0) {
            set_ms(sec.rec, "RotationDue", now_ms + s->rotation_day_ms);
        }
        json_object_del(sec.rec, "Rotation");
    } else if (r == NULL && missed(s, sec.rec, now_ms)) {
        /* the window closed before this start came (no node ran the job in it): AWS does not
         * rotate late, the next window does */
        struct sm_schedule sch;
        int64_t next = 0;
        if (stored_schedule(sec.rec, &sch) == COFFER_OK) {
            next = sm_schedule_next(&sch, sm_int(sec.rec, "NextRotationDate"), now_ms, s->rotation_day_ms);
        }
        coffer_clear_err();
        log_info("secrets: the rotation window of %s closed before it started; next window at %lld ms",
                 sec.arn, (long long)next);
        schedule(s, &sec, next);
    } else {
        const char *token = r != NULL ? sm_str(r, "Token") : NULL;
        const json_t *ver =
            token != NULL ? sm_version_find(json_object_get(sec.rec, "Versions"), token) : NULL;
        char vid[65];
        if (sm_has_label(ver, SM_CURRENT) || json_is_true(json_object_get(r, "Test"))) {
            /* its runner died after finishSecret, before recording the outcome, or during a
             * configuration test: take the claim over, the worker records it (runs the test) */
            if (json_object_set_new((json_t *)r, "Runner", json_string(s->runner)) != 0 ||
                set_ms(sec.rec, "RotationDue", now_ms + s->step_timeout_ms + CLAIM_MARGIN_MS) != 0) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
        } else {
            /* a claim that expired (its runner died) resumes its AWSPENDING version; none: a new
             * rotation */
            TRY_OUT(claim(s, &sec, NULL, now_ms, vid));
        }
        queue = true;
    }
    TRY_OUT(sm_save(s, &sec, sm_int(sec.rec, "DeletionDate")));
    if (queue) {
        rotor_enqueue(s, rkey);
    }
out:
    sm_secret_free(&sec);
    return rc;
}

coffer_err sm_rotation_job(void *ctx, int64_t now_ms)
{
    struct sm *s = ctx;
    /* a rotation running here is skipped: its worker moves the entry */
    coffer_err rc = sm_walk_due(s, SM_ROTATION_PREFIX, now_ms, rotor_is_busy, start_due);
    s->rotation_job_prev_ms = now_ms;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* RotateSecret, CancelRotateSecret                                                             */

/*
 * RotationRules: the members AWS's model constrains (ValidationException, as api_in reports
 * them), then the schedule (InvalidParameterException). *shown is the object DescribeSecret
 * will show: a rate in days also as AutomaticallyAfterDays, as AWS reports it.
 */
static coffer_err read_rules(api_in *in, const json_t *rules, json_t **shown, struct sm_schedule *sch)
{
    *shown = NULL;
    if (rules == NULL || json_is_null(rules)) {
        return COFFER_OK;
    }
    if (!json_is_object(rules)) {
        return coffer_fail(COFFER_ERR_SERIALIZATION, "Unexpected type for RotationRules");
    }
    api_in sub;
    const char *expr = NULL, *duration = NULL;
    int64_t days = 0;
    bool has_days = false;
    api_in_init(&sub, rules);
    TRY(api_in_int(&sub, "AutomaticallyAfterDays", 0, 1, SM_ROTATION_MAX_DAYS, &days, &has_days));
    TRY(api_in_string(&sub, "Duration", 0, 2, 3, &duration));
    TRY(api_in_string(&sub, "ScheduleExpression", 0, 1, 256, &expr));
    if (api_in_done(&sub) != COFFER_OK) {
        /* the same constraints, reported at their path under rotationRules */
        coffer_clear_err();
        const json_t *v = json_object_get(rules, "AutomaticallyAfterDays");
        char num[32];
        if (json_is_integer(v) &&
            (json_integer_value(v) < 1 || json_integer_value(v) > SM_ROTATION_MAX_DAYS)) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
            api_in_add_error(in, "rotationRules.automaticallyAfterDays", false, num,
                             json_integer_value(v) < 1 ? "Member must have value greater than or equal to 1"
                                                       : "Member must have value less than or equal to 1000");
        }
        const char *dv = sm_str(rules, "Duration");
        if (dv != NULL && (strlen(dv) < 2 || strlen(dv) > 3)) {
            api_in_add_error(in, "rotationRules.duration", false, dv,
                             strlen(dv) < 2 ? "Member must have length greater than or equal to 2"
                                            : "Member must have length less than or equal to 3");
        }
        const char *ev = sm_str(rules, "ScheduleExpression");
        if (ev != NULL && (ev[0] == 0 || strlen(ev) > 256)) {
            api_in_add_error(in, "rotationRules.scheduleExpression", false, ev,
                             ev[0] == 0 ? "Member must have length greater than or equal to 1"
                                        : "Member must have length less than or equal to 256");
        }
        return COFFER_OK;
    }
    if (duration != NULL) {
        bool ok = duration[strlen(duration) - 1] == 'h';
        for (const char *p = duration; ok && p[1] != 0; p++) {
            ok = *p >= '0' && *p <= '9';
        }
        if (!ok) {
            api_in_add_error(in, "rotationRules.duration", false, duration,
                             "Member must satisfy regular expression pattern: [0-9h]+");
            return COFFER_OK;
        }
    }
    if (expr != NULL &&
        strspn(expr, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz()#?*-/, ") !=
            strlen(expr)) {
        api_in_add_error(in, "rotationRules.scheduleExpression", false, expr,
                         "Member must satisfy regular expression pattern: [0-9A-Za-z\\(\\)#\\?\\*\\-\\/, ]+");
        return COFFER_OK;
    }
    TRY(sm_schedule_parse(expr, has_days ? days : 0, duration, sch));
    *shown = json_object();
    if (*shown == NULL) {
        return sm_oom();
    }
    int64_t shown_days = has_days ? days : (sch->kind == SM_SCHED_DAYS ? sch->every : 0);
    if ((shown_days > 0 &&
         json_object_set_new(*shown, "AutomaticallyAfterDays", json_integer(shown_days)) != 0) ||
        (duration != NULL && json_object_set_new(*shown, "Duration", json_string(duration)) != 0) ||
        (expr != NULL && json_object_set_new(*shown, "ScheduleExpression", json_string(expr)) != 0)) {
        json_decref(*shown);
        *shown = NULL;
        return sm_oom();
    }
    return COFFER_OK;
}

coffer_err sm_op_RotateSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL, *token = NULL, *lambda = NULL;
    bool immediately = true;
    json_t *rules = NULL;
    struct sm_schedule sch;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_string(&in, "ClientRequestToken", 0, 32, 64, &token));
    TRY(api_in_string(&in, "RotationLambdaARN", 0, 0, 2048, &lambda));
    TRY(read_rules(&in, json_object_get(call->input, "RotationRules"), &rules, &sch));
    coffer_err rc = api_in_bool(&in, "RotateImmediately", true, &immediately);
    if (rc == COFFER_OK) {
        rc = api_in_done(&in);
    }
    if (rc != COFFER_OK) {
        json_decref(rules);
        return rc;
    }
    struct sm_secret sec = {0};
    char vid[65] = "";
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "RotateSecret", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    if (json_object_get(call->input, "ExternalSecretRotationMetadata") != NULL ||
        json_object_get(call->input, "ExternalSecretRotationRoleArn") != NULL) {
        FAIL_OUT(COFFER_ERR_INVALID_PARAMETER,
                 "Rotation of managed external secrets is not supported by this server.");
    }
    if (lambda == NULL || lambda[0] == 0) {
        lambda = sm_str(sec.rec, "RotationLambdaARN");
    }
    if (lambda == NULL || lambda[0] == 0) {
        FAIL_OUT(COFFER_ERR_INVALID_STATE, "No Lambda rotation function ARN is associated with this secret.");
    }
    if (function_find(s, lambda) == NULL) {
        FAIL_OUT(
            COFFER_ERR_ACCESS_DENIED,
            "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function policy "
            "grants access to the principal secretsmanager.amazonaws.com.");
    }
    if (sm_label_owner(json_object_get(sec.rec, "Versions"), SM_CURRENT) == NULL) {
        FAIL_OUT(COFFER_ERR_INVALID_STATE,
                 "Secrets Manager can't rotate a secret that has no value: it has no AWSCURRENT version.");
    }
    if (unfinished(sec.rec) != NULL || json_object_get(sec.rec, "Rotation") != NULL) {
        TRY_OUT(previous_incomplete());
    }
    char lambda_copy[2049];
    coffer_str_copy(lambda_copy, sizeof(lambda_copy), lambda);
    if (json_object_set_new(sec.rec, "RotationEnabled", json_true()) != 0 ||
        json_object_set_new(sec.rec, "RotationLambdaARN", json_string(lambda_copy)) != 0 ||
        (rules != NULL && json_object_set(sec.rec, "RotationRules", rules) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    int64_t now = call->now_ms;
    int64_t next = next_window(s, sec.rec, immediately ? now : sm_int(sec.rec, "LastRotatedDate"), now);
    if (immediately) {
        set_ms(sec.rec, "NextRotationDate", next);
        TRY_OUT(claim(s, &sec, token, now, vid));
    } else {
        schedule(s, &sec, next);
        TRY_OUT(claim_test(s, &sec, now));
    }
    json_object_set_new(sec.rec, "LastChangedDate", json_integer(now));
    TRY_OUT(sm_save(s, &sec, 0));
    rotor_enqueue(s, sec.key);
    call->output = json_pack("{s:s, s:s}", "ARN", sec.arn, "Name", sec.name);
    if (call->output == NULL ||
        (vid[0] != 0 && json_object_set_new(call->output, "VersionId", json_string(vid)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    json_decref(rules);
    return rc;
}

coffer_err sm_op_CancelRotateSecret(void *state, struct api_call *call)
{
    struct sm *s = state;
    api_in in;
    const char *id = NULL;
    api_in_init(&in, call->input);
    TRY(api_in_string(&in, "SecretId", API_IN_REQUIRED, 1, SM_ID_MAX, &id));
    TRY(api_in_done(&in));
    struct sm_secret sec = {0};
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&s->wmu);
    TRY_OUT(sm_resolve(s, NULL, call, id, &sec));
    TRY_OUT(sm_authorize(s, call, "CancelRotateSecret", &sec));
    TRY_OUT(sm_check_writable(&sec));
    TRY_OUT(sm_check_live(&sec));
    if (json_object_get(sec.rec, "RotationEnabled") == NULL) {
        FAIL_OUT(COFFER_ERR_INVALID_STATE,
                 "Secrets Manager can't cancel rotation: rotation is not configured for "
                 "this secret.");
    }
    /* AWSPENDING stays where it is, as in AWS: the caller removes it */
    const json_t *pending = unfinished(sec.rec);
    char vid[65] = "";
    if (pending != NULL) {
        coffer_str_copy(vid, sizeof(vid), sm_str(pending, "VersionId"));
    }
    if (json_is_true(json_object_get(json_object_get(sec.rec, "Rotation"), "Test"))) {
        end_test(s, &sec); /* the test's AWSPENDING label is no rotation's */
    }
    json_object_set_new(sec.rec, "RotationEnabled", json_false());
    json_object_del(sec.rec, "NextRotationDate");
    json_object_del(sec.rec, "RotationDue");
    json_object_del(sec.rec, "RotationWindowEnd");
    json_object_del(sec.rec, "Rotation");
    json_object_set_new(sec.rec, "LastChangedDate", json_integer(call->now_ms));
    TRY_OUT(sm_save(s, &sec, 0));
    call->output = json_pack("{s:s, s:s}", "ARN", sec.arn, "Name", sec.name);
    if (call->output == NULL ||
        (vid[0] != 0 && json_object_set_new(call->output, "VersionId", json_string(vid)) != 0)) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&s->wmu);
    sm_secret_free(&sec);
    return rc;
}
