/*
 * The policy scheduler: a job of the service (run at every tick of the daemon's scheduler)
 * that carries out the parameter policies whose time has come, found through the date index
 * "ssm/due/..." (ssm_internal.h), so a run reads the due entries and their parameters only.
 *
 *   Expiration              the parameter goes (all versions), recorded in the audit trail as
 *                           a DeleteParameter service event, and a policy action event
 *   ExpirationNotification  a policy action event, the policy Finished
 *   NoChangeNotification    likewise; a new version restarts its clock (PutParameter rewrites
 *                           the index)
 *
 * Each entry is handled in one store transaction; its events are written before the commit, so
 * nothing happens without its record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "ssm/ssm_internal.h"

#define DUE_PREFIX "ssm/due/"
#define PARAM_PREFIX "ssm/param"
#define DUE_BATCH 64

/* ------------------------------------------------------------------------------------------ */
/* The index                                                                                    */

static coffer_err delete_quiet(store_txn *t, const char *key)
{
    coffer_err rc = store_txn_delete(t, key);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        return COFFER_OK;
    }
    return rc;
}

coffer_err ssm_due_rewrite(store_txn *t, const char *param_key, const json_t *old_rec, json_t *rec)
{
    size_t i;
    const json_t *k;
    json_array_foreach(json_object_get(old_rec, "Due"), i, k)
    {
        if (json_is_string(k)) {
            TRY(delete_quiet(t, json_string_value(k)));
        }
    }
    if (rec == NULL) {
        return COFFER_OK;
    }
    const json_t *ver = ssm_rec_latest(rec);
    const json_t *policies = json_object_get(ver, "Policies");
    json_t *due = json_array();
    if (due == NULL) {
        return ssm_oom();
    }
    coffer_err rc = COFFER_OK;
    for (i = 0; i < json_array_size(policies); i++) {
        int64_t at = ssm_policy_due(policies, i, ssm_vint(ver, "LastModifiedDate"));
        if (at < 0) {
            continue;
        }
        char key[STORE_KEY_MAX + 64];
        int n = snprintf(key, sizeof(key), DUE_PREFIX "%016lld/%02zu%s", (long long)at, i,
                         param_key + strlen(PARAM_PREFIX));
        if (n < 0 || (size_t)n > STORE_KEY_MAX) {
            FAIL_OUT(COFFER_ERR_VALIDATION, "The parameter name is too long to carry a policy.");
        }
        TRY_OUT(store_txn_put(t, key, coffer_cursor_from_str("{}")));
        if (json_array_append_new(due, json_string(key)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (json_array_size(due) == 0) {
        json_object_del(rec, "Due");
    } else if (json_object_set(rec, "Due", due) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
out:
    json_decref(due);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Events                                                                                       */

struct due_param {
    char acct[API_ACCOUNT_ID_LEN + 1];
    char region[64];
    char canon[SSM_NAME_MAX + 1];
    char arn[SSM_ARN_PREFIX_MAX + SSM_NAME_MAX];
    char key[STORE_KEY_MAX + 1];
    size_t index; /* the policy's place in the latest version's Policies */
};

/* Splits "ssm/due/<ms>/<nn>/<acct>/<region><key form>"; false when it is not one of ours. */
static bool due_split(const char *due_key, struct due_param *p)
{
    long long at = 0;
    int idx = 0, n = 0, m = 0;
    if (sscanf(due_key, DUE_PREFIX "%16lld/%2d%n", &at, &idx, &n) != 2 || idx < 0 ||
        idx >= SSM_MAX_POLICIES) {
        return false;
    }
    const char *rest = due_key + n; /* "/<acct>/<region>/<name...>" */
    if (sscanf(rest, "/%12[0-9]/%63[^/]%n", p->acct, p->region, &m) != 2 || rest[m] != '/') {
        return false;
    }
    const char *kf = rest + m;
    /* the key form of a one-level name has the '/' its canonical form drops */
    coffer_str_copy(p->canon, sizeof(p->canon), strchr(kf + 1, '/') == NULL ? kf + 1 : kf);
    snprintf(p->key, sizeof(p->key), PARAM_PREFIX "%s", rest);
    snprintf(p->arn, sizeof(p->arn), "arn:aws:ssm:%s:%s:parameter/%s", p->region, p->acct,
             p->canon[0] == '/' ? p->canon + 1 : p->canon);
    p->index = (size_t)idx;
    return true;
}

/* The EventBridge event "Parameter Store Policy Action" (ssm-parameters.md §5). */
static coffer_err policy_event(const struct due_param *p, const json_t *ver, const json_t *item,
                               int64_t now_ms, json_t **out)
{
    char id[CRYPTO_UUID_STR_LEN + 1], when[40];
    TRY(crypto_uuid_v4(id));
    coffer_time_iso8601(now_ms / 1000, when, sizeof(when));
    *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[s], s:{s:s, s:s, s:s, s:s, s:s}}", "version",
                     "0", "id", id, "detail-type", "Parameter Store Policy Action", "source", "aws.ssm",
                     "account", p->acct, "time", when, "region", p->region, "resources", p->arn, "detail",
                     "parameter-name", p->canon, "parameter-type", ssm_vstr(ver, "Type"), "policy-type",
                     ssm_vstr(item, "PolicyType"), "policy-content", ssm_vstr(item, "PolicyText"),
                     "action-status", "Finished");
    return *out != NULL ? COFFER_OK : ssm_oom();
}

/* CloudTrail records what Parameter Store does on its own as an AwsServiceEvent. */
static coffer_err service_event(const struct ssm *s, const struct due_param *p, const char *event_name,
                                int64_t now_ms)
{
    if (s->record == NULL) {
        return COFFER_OK;
    }
    char id[CRYPTO_UUID_STR_LEN + 1], when[40];
    TRY(crypto_uuid_v4(id));
    coffer_time_iso8601(now_ms / 1000, when, sizeof(when));
    const char *source = s->api.event_source;
    json_t *ev = json_pack(
        "{s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:n, s:{s:s, s:s}, s:s, s:b, "
        "s:[{s:s, s:s, s:s}], s:s, s:b, s:s, s:s}",
        "eventVersion", "1.08", "userIdentity", "accountId", p->acct, "invokedBy", source, "eventTime", when,
        "eventSource", source, "eventName", event_name, "awsRegion", p->region, "sourceIPAddress", source,
        "userAgent", source, "requestParameters", "responseElements", "serviceEventDetails", "name", p->canon,
        "policyType", "Expiration", "eventID", id, "readOnly", 0, "resources", "accountId", p->acct, "type",
        "AWS::SSM::Parameter", "ARN", p->arn, "eventType", "AwsServiceEvent", "managementEvent", 1,
        "recipientAccountId", p->acct, "eventCategory", "Management");
    if (ev == NULL) {
        return ssm_oom();
    }
    coffer_err rc = s->record(s->record_ctx, ev);
    json_decref(ev);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* A run                                                                                        */

static bool lists(const json_t *rec, const char *due_key)
{
    size_t i;
    const json_t *k;
    json_array_foreach(json_object_get(rec, "Due"), i, k)
    {
        if (json_is_string(k) && strcmp(json_string_value(k), due_key) == 0) {
            return true;
        }
    }
    return false;
}

static coffer_err run_due(struct ssm *s, const char *due_key, int64_t now_ms)
{
    struct due_param p;
    store_txn *t = NULL;
    json_t *rec = NULL, *ev = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(store_txn_begin(s->st, &t));
    /* an entry the parameter no longer lists (overwritten, deleted) only goes */
    if (due_split(due_key, &p)) {
        TRY_OUT(ssm_rec_load(s->st, t, p.key, &rec));
    }
    if (rec == NULL || !lists(rec, due_key)) {
        TRY_OUT(delete_quiet(t, due_key));
        goto commit;
    }
    json_t *ver = ssm_rec_latest(rec);
    json_t *item = json_array_get(json_object_get(ver, "Policies"), p.index);
    TRY_OUT(policy_event(&p, ver, item, now_ms, &ev));
    if (ssm_policy_kind(item) == SSM_POLICY_EXPIRATION) {
        bool advanced = strcmp(ssm_vstr(ver, "Tier"), "Advanced") == 0;
        TRY_OUT(ssm_count_add(s, t, p.acct, p.region, advanced ? 0 : -1, advanced ? -1 : 0));
        TRY_OUT(ssm_due_rewrite(t, p.key, rec, NULL));
        TRY_OUT(store_txn_delete(t, p.key));
        TRY_OUT(service_event(s, &p, "DeleteParameter", now_ms));
    } else {
        if (json_object_set_new(item, "PolicyStatus", json_string("Finished")) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        TRY_OUT(ssm_due_rewrite(t, p.key, rec, rec));
        TRY_OUT(ssm_rec_store(t, p.key, rec));
    }
    TRY_OUT(ssm_events_append(s->events, ev));
commit:
    rc = ssm_commit(s, t);
    t = NULL;
out:
    store_txn_abort(t);
    json_decref(ev);
    json_decref(rec);
    return rc;
}

struct due_scan {
    int64_t now_ms;
    size_t n;
    char *keys[DUE_BATCH];
};

static coffer_err due_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct due_scan *d = ctx;
    (void)value;
    if (strlen(key) < strlen(DUE_PREFIX) + 16 || strtoll(key + strlen(DUE_PREFIX), NULL, 10) > d->now_ms) {
        return STORE_SCAN_STOP; /* in date order: nothing further is due */
    }
    if (d->n == DUE_BATCH) {
        return STORE_SCAN_STOP;
    }
    if ((d->keys[d->n] = strdup(key)) == NULL) {
        return ssm_oom();
    }
    d->n++;
    return COFFER_OK;
}

coffer_err ssm_policy_job(void *ctx, int64_t now_ms)
{
    struct ssm *s = ctx;
    /* every entry handled goes, so the loop ends once nothing due is left */
    for (;;) {
        struct due_scan d = {.now_ms = now_ms};
        coffer_err rc = store_scan(s->st, DUE_PREFIX, NULL, DUE_BATCH, due_cb, &d);
        for (size_t i = 0; i < d.n && rc == COFFER_OK; i++) {
            rc = run_due(s, d.keys[i], now_ms);
        }
        for (size_t i = 0; i < d.n; i++) {
            free(d.keys[i]);
        }
        if (rc != COFFER_OK || d.n < DUE_BATCH) {
            return rc;
        }
    }
}
