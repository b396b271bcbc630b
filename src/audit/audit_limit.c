/*
 * What requests that failed authentication may write to the trail. Such a request costs its
 * sender nothing (no key, no signature), so without a bound one connection could fill the disk
 * with events, and a full disk refuses every request. Each source address gets `per_source`
 * events per window and all sources together `total`; the rest are counted, and once the window
 * is over one summary event says how many were left out and from where.
 *
 * Windows are fixed and shared by all sources. The table of sources is fixed-size (open
 * addressing, a few probes): a source that finds no slot counts only against `total`, so memory
 * and bytes written stay bounded whatever the number of addresses.
 */
#include "audit/audit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

#define LIMIT_SLOTS 1024u     /* sources tracked per window */
#define LIMIT_PROBES 8u       /* slots tried before a source counts as "other" */
#define LIMIT_SOURCE_MAX 64u  /* an IPv6 literal with zone fits */
#define LIMIT_TOP_SOURCES 10u /* sources named in a summary */

struct limit_slot {
    char source[LIMIT_SOURCE_MAX]; /* "" = free */
    uint32_t admitted;
    uint64_t suppressed;
};

struct audit_limiter {
    pthread_mutex_t lock; /* guards everything but window_end's atomic reads */
    struct audit_limit_options o;
    int64_t window_start_ms;
    _Atomic int64_t window_end_ms; /* read without the lock by audit_limiter_due */
    uint64_t admitted;             /* this window, all sources */
    uint64_t suppressed;           /* this window, all sources */
    uint64_t suppressed_other;     /* sources that found no slot */
    struct limit_slot slots[LIMIT_SLOTS];
    json_t *pending;          /* a finished window's summary not yet written */
    _Atomic bool has_pending; /* pending != NULL, read without the lock */
};

coffer_err audit_limiter_new(const struct audit_limit_options *o, audit_limiter **out)
{
    ENSURE_REF(out);
    *out = NULL;
    audit_limiter *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&l->lock, NULL);
    l->o.per_source = o && o->per_source ? o->per_source : AUDIT_UNAUTH_PER_SOURCE_DEFAULT;
    l->o.total = o && o->total ? o->total : AUDIT_UNAUTH_TOTAL_DEFAULT;
    l->o.window_s = o && o->window_s ? o->window_s : AUDIT_UNAUTH_WINDOW_S_DEFAULT;
    l->window_start_ms = -1; /* the first call opens a window */
    atomic_store(&l->window_end_ms, 0);
    *out = l;
    return COFFER_OK;
}

void audit_limiter_free(audit_limiter *l)
{
    if (l == NULL) {
        return;
    }
    json_decref(l->pending);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static uint32_t source_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a: no secrecy needed, a clash only shares the "other" count */
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 16777619u;
    }
    return h;
}

static struct limit_slot *slot_find(audit_limiter *l, const char *source)
{
    uint32_t h = source_hash(source);
    for (uint32_t i = 0; i < LIMIT_PROBES; i++) {
        struct limit_slot *s = &l->slots[(h + i) % LIMIT_SLOTS];
        if (s->source[0] == '\0') {
            snprintf(s->source, sizeof(s->source), "%s", source);
            return s;
        }
        if (strcmp(s->source, source) == 0) {
            return s;
        }
    }
    return NULL;
}

/* The summary of the window that just ended: counts and the sources that lost the most. NULL
 * when memory runs out: a summary is whole or not made. */
static json_t *summary_details(audit_limiter *l)
{
    char from[40], to[40];
    coffer_time_iso8601(l->window_start_ms / 1000, from, sizeof(from));
    coffer_time_iso8601(atomic_load(&l->window_end_ms) / 1000, to, sizeof(to));
    json_t *top = json_array();
    if (top == NULL) {
        return NULL;
    }
    bool taken[LIMIT_SLOTS] = {false};
    for (unsigned n = 0; n < LIMIT_TOP_SOURCES; n++) {
        size_t best = LIMIT_SLOTS;
        for (size_t i = 0; i < LIMIT_SLOTS; i++) {
            if (!taken[i] && l->slots[i].suppressed > 0 &&
                (best == LIMIT_SLOTS || l->slots[i].suppressed > l->slots[best].suppressed)) {
                best = i;
            }
        }
        if (best == LIMIT_SLOTS) {
            break;
        }
        taken[best] = true;
        if (json_array_append_new(top, json_pack("{s:s,s:I}", "sourceIPAddress", l->slots[best].source,
                                                 "suppressedEvents",
                                                 (json_int_t)l->slots[best].suppressed)) != 0) {
            json_decref(top);
            return NULL;
        }
    }
    return json_pack("{s:I,s:s,s:s,s:I,s:I,s:o}", "suppressedEvents", (json_int_t)l->suppressed,
                     "windowStart", from, "windowEnd", to, "eventsPerSourceLimit",
                     (json_int_t)l->o.per_source, "eventsTotalLimit", (json_int_t)l->o.total, "topSources",
                     top);
}

/* A copy of the unwritten summary `pending` extended by the later summary `d`; NULL when memory
 * runs out (`pending` is left as it was). */
static json_t *summary_merge(const json_t *pending, const json_t *d)
{
    json_t *merged = json_deep_copy(pending);
    json_int_t n = json_integer_value(json_object_get(pending, "suppressedEvents")) +
                   json_integer_value(json_object_get(d, "suppressedEvents"));
    if (merged == NULL || json_object_set_new(merged, "suppressedEvents", json_integer(n)) != 0 ||
        json_object_set(merged, "windowEnd", json_object_get(d, "windowEnd")) != 0) {
        json_decref(merged);
        return NULL;
    }
    return merged;
}

/* Under the lock: closes the window when it is over (or when forced), keeping its summary. */
static void window_roll_locked(audit_limiter *l, int64_t now_ms, bool force)
{
    if (l->window_start_ms >= 0 && !force && now_ms < atomic_load(&l->window_end_ms)) {
        return;
    }
    if (l->suppressed > 0) {
        json_t *d = summary_details(l);
        if (d != NULL && l->pending != NULL) {
            /* The previous summary is still unwritten: this window's count joins it. */
            json_t *merged = summary_merge(l->pending, d);
            json_decref(d);
            d = merged;
            if (merged != NULL) {
                json_decref(l->pending);
                l->pending = NULL;
            }
        }
        if (d != NULL) {
            l->pending = d;
        } else {
            /* Nothing to record it in: say so where an operator looks, since the trail cannot. */
            log_error("audit: out of memory; %llu suppressed unauthenticated events of the window ending "
                      "at %lld ms are not summarized",
                      (unsigned long long)l->suppressed, (long long)atomic_load(&l->window_end_ms));
        }
        atomic_store(&l->has_pending, l->pending != NULL);
    }
    memset(l->slots, 0, sizeof(l->slots));
    l->admitted = l->suppressed = l->suppressed_other = 0;
    l->window_start_ms = now_ms;
    atomic_store(&l->window_end_ms, now_ms + (int64_t)l->o.window_s * 1000);
}

bool audit_limiter_admit(audit_limiter *l, const char *source, int64_t now_ms)
{
    if (l == NULL) {
        return true;
    }
    pthread_mutex_lock(&l->lock);
    window_roll_locked(l, now_ms, false);
    struct limit_slot *s = slot_find(l, source != NULL ? source : "");
    bool ok = l->admitted < l->o.total && (s == NULL || s->admitted < l->o.per_source);
    if (ok) {
        l->admitted++;
        if (s != NULL) {
            s->admitted++;
        }
    } else {
        l->suppressed++;
        if (s != NULL) {
            s->suppressed++;
        } else {
            l->suppressed_other++;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

bool audit_limiter_due(audit_limiter *l, int64_t now_ms)
{
    /* Racy by design: a stale read only delays the summary to a later request. */
    return l != NULL && (atomic_load(&l->has_pending) || now_ms >= atomic_load(&l->window_end_ms));
}

coffer_err audit_limiter_flush(audit_limiter *l, audit_trail *t, const char *region, int64_t now_ms,
                               bool force)
{
    coffer_err rc = COFFER_OK;
    if (l == NULL) {
        return COFFER_OK;
    }
    pthread_mutex_lock(&l->lock);
    window_roll_locked(l, now_ms, force);
    json_t *details = l->pending;
    l->pending = NULL;
    atomic_store(&l->has_pending, false);
    pthread_mutex_unlock(&l->lock);
    if (details == NULL) {
        return COFFER_OK;
    }
    char id[1][CRYPTO_UUID_STR_LEN + 1];
    char when[40];
    coffer_time_iso8601(now_ms / 1000, when, sizeof(when));
    json_t *ev = NULL;
    if (crypto_uuid_v4_many(id, 1) == COFFER_OK) {
        ev = json_pack("{s:s,s:{s:s},s:s,s:s,s:s,s:s,s:s,s:O,s:s,s:b,s:b,s:s}", "eventVersion", "1.08",
                       "userIdentity", "type", "Unknown", "eventTime", when, "eventSource",
                       AUDIT_EVENT_SOURCE, "eventName", AUDIT_SUPPRESSED_EVENT_NAME, "awsRegion",
                       region ? region : "", "sourceIPAddress", "", "serviceEventDetails", details, "eventID",
                       id[0], "readOnly", 1, "managementEvent", 1, "eventType", "AwsServiceEvent");
    }
    rc = ev != NULL ? audit_trail_append(t, ev) : coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    json_decref(ev);
    if (rc != COFFER_OK) {
        /* Keep the count for the next attempt rather than lose it. */
        log_error("audit: cannot write the suppressed-events summary: %s", coffer_last_message());
        pthread_mutex_lock(&l->lock);
        if (l->pending == NULL) {
            l->pending = details;
            details = NULL;
            atomic_store(&l->has_pending, true);
        }
        pthread_mutex_unlock(&l->lock);
    }
    json_decref(details);
    return rc;
}
