/*
 * Rotation schedules (secretsmanager.md §3): RotationRules AutomaticallyAfterDays, Duration and
 * ScheduleExpression, either "rate(N hours|days)" or "cron(min hour dom month dow year)" in UTC
 * with the syntax AWS's schedule expressions accept (lists, ranges, steps, *, ?, L on the day of
 * the month, N#k and NL on the day of the week, month and day names). Pure: no clock, no store.
 *
 * A rate counts from the last rotation (or from the moment rotation was set up) and scales with
 * the length of a day (cofferd --secret-rotation-day-ms); a cron expression is a calendar, in real
 * UTC time whatever the day's length.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secrets/secrets_internal.h"

#define CRON_YEAR_MIN 1970
#define CRON_YEAR_MAX 2199

static coffer_err bad(const char *why)
{
    return coffer_fail(COFFER_ERR_INVALID_PARAMETER, "Invalid ScheduleExpression: %s", why);
}

/* ------------------------------------------------------------------------------------------ */
/* rate()                                                                                       */

static coffer_err parse_rate(const char *body, size_t n, struct sm_schedule *out)
{
    char buf[64];
    if (n >= sizeof(buf)) {
        return bad("a rate is rate(N hours) or rate(N days).");
    }
    memcpy(buf, body, n);
    buf[n] = 0;
    char *end = NULL;
    if (!isdigit((unsigned char)buf[0])) {
        return bad("a rate is rate(N hours) or rate(N days).");
    }
    long long v = strtoll(buf, &end, 10);
    if (*end != ' ' || v <= 0 || v > 24000) {
        return bad("a rate is rate(N hours) or rate(N days).");
    }
    while (*end == ' ') {
        end++;
    }
    if (strcmp(end, "day") == 0 || strcmp(end, "days") == 0) {
        if (v > SM_ROTATION_MAX_DAYS) {
            return bad("a rate can be at most 1000 days.");
        }
        out->kind = SM_SCHED_DAYS;
    } else if (strcmp(end, "hour") == 0 || strcmp(end, "hours") == 0) {
        if (v < SM_ROTATION_MIN_HOURS) {
            return bad("a secret can't be rotated more often than every 4 hours.");
        }
        if (v > SM_ROTATION_MAX_DAYS * 24) {
            return bad("a rate can be at most 1000 days.");
        }
        out->kind = SM_SCHED_HOURS;
    } else {
        return bad("a rate is rate(N hours) or rate(N days).");
    }
    out->every = v;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* cron()                                                                                       */

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

/* One value of a field: a number or (month, day of week) a name; -1 when neither. */
static int field_value(const char *s, size_t n, int lo, const char *const *names, int n_names)
{
    if (n == 0) {
        return -1;
    }
    if (names != NULL && n == 3) {
        for (int i = 0; i < n_names; i++) {
            if (strncasecmp(s, names[i], 3) == 0) {
                return lo + i;
            }
        }
    }
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]) || v > 10000) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/*
 * One comma-separated item of a plain field: "*", "N", "N-M", "*\/S", "N/S", "N-M/S", into
 * bits[lo..hi]. Returns false when malformed or out of range.
 */
static bool field_item(const char *s, size_t n, int lo, int hi, const char *const *names, int n_names,
                       uint8_t *bits)
{
    const char *slash = memchr(s, '/', n);
    size_t head = slash != NULL ? (size_t)(slash - s) : n;
    int step = 1, from, to;
    if (slash != NULL) {
        step = field_value(slash + 1, n - head - 1, 0, NULL, 0);
        if (step <= 0) {
            return false;
        }
    }
    if (head == 1 && s[0] == '*') {
        from = lo;
        to = hi;
    } else {
        const char *dash = memchr(s, '-', head);
        if (dash != NULL) {
            from = field_value(s, (size_t)(dash - s), lo, names, n_names);
            to = field_value(dash + 1, head - (size_t)(dash - s) - 1, lo, names, n_names);
        } else {
            from = field_value(s, head, lo, names, n_names);
            to = slash != NULL ? hi : from;
        }
        if (from < lo || to > hi || from > to) {
            return false;
        }
    }
    for (int v = from; v <= to; v += step) {
        bits[v] = 1;
    }
    return true;
}

static bool field_list(const char *s, size_t n, int lo, int hi, const char *const *names, int n_names,
                       uint8_t *bits)
{
    while (n > 0) {
        const char *comma = memchr(s, ',', n);
        size_t len = comma != NULL ? (size_t)(comma - s) : n;
        if (!field_item(s, len, lo, hi, names, n_names, bits)) {
            return false;
        }
        if (comma == NULL) {
            return true;
        }
        s = comma + 1;
        n -= len + 1;
        if (n == 0) {
            return false; /* a trailing comma */
        }
    }
    return false;
}

static coffer_err parse_cron(const char *body, size_t n, struct sm_schedule *out)
{
    const char *f[6];
    size_t len[6];
    int k = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && body[i] == ' ') {
            i++;
        }
        if (i == n) {
            break;
        }
        if (k == 6) {
            return bad(
                "a cron expression has six fields: minutes hours day-of-month month day-of-week year.");
        }
        f[k] = body + i;
        while (i < n && body[i] != ' ') {
            i++;
        }
        len[k] = (size_t)(body + i - f[k]);
        k++;
    }
    if (k != 6) {
        return bad("a cron expression has six fields: minutes hours day-of-month month day-of-week year.");
    }
    struct sm_cron *c = &out->cron;
    memset(c, 0, sizeof(*c));
    if (!field_list(f[0], len[0], 0, 59, NULL, 0, c->minute)) {
        return bad("the minutes field must hold values 0-59.");
    }
    if (!field_list(f[1], len[1], 0, 23, NULL, 0, c->hour)) {
        return bad("the hours field must hold values 0-23.");
    }
    if (!field_list(f[3], len[3], 1, 12, month_names, 12, c->month)) {
        return bad("the month field must hold values 1-12 or JAN-DEC.");
    }
    if (!field_list(f[5], len[5], CRON_YEAR_MIN, CRON_YEAR_MAX, NULL, 0, c->year)) {
        return bad("the year field must hold values 1970-2199.");
    }
    bool dom_any = len[2] == 1 && f[2][0] == '?';
    bool dow_any = len[4] == 1 && f[4][0] == '?';
    if (dom_any == dow_any) {
        return bad("one of the day-of-month and day-of-week fields must be '?', and only one.");
    }
    if (!dom_any) {
        c->by_dom = true;
        if (len[2] == 1 && f[2][0] == 'L') {
            c->last_dom = true;
        } else if (!field_list(f[2], len[2], 1, 31, NULL, 0, c->dom)) {
            return bad("the day-of-month field must hold values 1-31, L or ?.");
        }
    } else {
        const char *hash = memchr(f[4], '#', len[4]);
        if (hash != NULL) {
            int d = field_value(f[4], (size_t)(hash - f[4]), 1, day_names, 7);
            int nth = field_value(hash + 1, len[4] - (size_t)(hash - f[4]) - 1, 0, NULL, 0);
            if (d < 1 || d > 7 || nth < 1 || nth > 5) {
                return bad("the day-of-week field must hold values 1-7 or SUN-SAT.");
            }
            c->dow_nth = nth;
            c->dow[d] = 1;
        } else if (len[4] >= 2 && f[4][len[4] - 1] == 'L') {
            int d = field_value(f[4], len[4] - 1, 1, day_names, 7);
            if (d < 1 || d > 7) {
                return bad("the day-of-week field must hold values 1-7 or SUN-SAT.");
            }
            c->dow_last = true;
            c->dow[d] = 1;
        } else if (!field_list(f[4], len[4], 1, 7, day_names, 7, c->dow)) {
            return bad("the day-of-week field must hold values 1-7 or SUN-SAT.");
        }
    }
    out->kind = SM_SCHED_CRON;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Rules                                                                                        */

coffer_err sm_schedule_parse(const char *expression, int64_t after_days, const char *duration,
                             struct sm_schedule *out)
{
    memset(out, 0, sizeof(*out));
    if (expression != NULL && after_days > 0) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "You can't specify both rotation frequency and schedule expression together.");
    }
    if (after_days > 0) {
        out->kind = SM_SCHED_DAYS;
        out->every = after_days;
    } else if (expression != NULL) {
        size_t n = strlen(expression);
        if (n > 6 && strncmp(expression, "rate(", 5) == 0 && expression[n - 1] == ')') {
            TRY(parse_rate(expression + 5, n - 6, out));
        } else if (n > 6 && strncmp(expression, "cron(", 5) == 0 && expression[n - 1] == ')') {
            TRY(parse_cron(expression + 5, n - 6, out));
        } else {
            return bad("it must be rate(N hours), rate(N days) or cron(...).");
        }
    }
    if (duration != NULL) {
        size_t n = strlen(duration);
        int hours = n >= 2 && duration[n - 1] == 'h' ? field_value(duration, n - 1, 0, NULL, 0) : -1;
        if (hours < 1 || hours > 24) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                               "The rotation window Duration must be between 1h and 24h.");
        }
        if (out->kind == SM_SCHED_HOURS && hours > out->every) {
            return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                               "The rotation window Duration can't be longer than the rotation interval.");
        }
        out->window_hours = hours;
    }
    return COFFER_OK;
}

/* Days in `month` (1-12) of `year`. */
static int month_days(int year, int month)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : d[month - 1];
}

static bool day_matches(const struct sm_cron *c, const struct tm *tm)
{
    int year = tm->tm_year + 1900, month = tm->tm_mon + 1;
    if (!c->year[year] || !c->month[month]) {
        return false;
    }
    if (c->by_dom) {
        return c->last_dom ? tm->tm_mday == month_days(year, month) : c->dom[tm->tm_mday] != 0;
    }
    if (!c->dow[tm->tm_wday + 1]) {
        return false;
    }
    if (c->dow_nth > 0) {
        return (tm->tm_mday - 1) / 7 + 1 == c->dow_nth;
    }
    if (c->dow_last) {
        return tm->tm_mday + 7 > month_days(year, month);
    }
    return true;
}

/* The first minute strictly after `after_ms` the calendar names; 0 when there is none. */
static int64_t cron_next(const struct sm_cron *c, int64_t after_ms)
{
    int64_t start_min = after_ms / 60000 + 1; /* the next whole minute */
    int64_t day = start_min / 1440;
    int first_min_of_day = (int)(start_min % 1440);
    for (int64_t d = day; d < day + 366LL * (CRON_YEAR_MAX - CRON_YEAR_MIN + 1); d++) {
        time_t t = (time_t)(d * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        if (tm.tm_year + 1900 > CRON_YEAR_MAX) {
            return 0;
        }
        if (!day_matches(c, &tm)) {
            continue;
        }
        for (int m = d == day ? first_min_of_day : 0; m < 1440; m++) {
            if (c->hour[m / 60] && c->minute[m % 60]) {
                return (d * 1440 + m) * 60000;
            }
        }
    }
    return 0;
}

int64_t sm_schedule_next(const struct sm_schedule *sch, int64_t from_ms, int64_t after_ms, int64_t day_ms)
{
    switch (sch->kind) {
    case SM_SCHED_DAYS:
    case SM_SCHED_HOURS: {
        int64_t period = sch->kind == SM_SCHED_DAYS ? sch->every * day_ms : sch->every * day_ms / 24;
        if (period <= 0) {
            period = 1;
        }
        int64_t next = from_ms + period;
        if (next <= after_ms) {
            /* windows missed while nothing ran: the next one still ahead */
            next += ((after_ms - next) / period + 1) * period;
        }
        return next;
    }
    case SM_SCHED_CRON:
        return cron_next(&sch->cron, after_ms);
    case SM_SCHED_NONE:
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Windows                                                                                      */

/* Whether a cron calendar is a schedule "in hours" (it opens more than one hour of a day). */
static bool cron_in_hours(const struct sm_cron *c)
{
    int hours = 0;
    for (int h = 0; h < 24; h++) {
        hours += c->hour[h] != 0;
    }
    return hours > 1;
}

int64_t sm_schedule_window_end(const struct sm_schedule *sch, int64_t opening, int64_t day_ms)
{
    bool cron = sch->kind == SM_SCHED_CRON;
    int64_t day = cron ? SM_DAY_MS : (day_ms > 0 ? day_ms : 1);
    int64_t hour = day / 24 > 0 ? day / 24 : 1;
    bool in_hours = sch->kind == SM_SCHED_HOURS || (cron && cron_in_hours(&sch->cron));
    int64_t day_end = (opening / day + 1) * day;
    int64_t end =
        sch->window_hours > 0 ? opening + sch->window_hours * hour : (in_hours ? opening + hour : day_end);
    /* never into the next UTC day, nor into the next window */
    if (end > day_end) {
        end = day_end;
    }
    int64_t next = sm_schedule_next(sch, opening, opening, day_ms);
    if (next > opening && end > next) {
        end = next;
    }
    return end > opening ? end : opening + 1;
}

int64_t sm_schedule_window_start(int64_t opening, int64_t end, const char *seed)
{
    if (end <= opening) {
        return opening;
    }
    /* FNV-1a over the seed and the opening: the same secret lands elsewhere in each window */
    uint64_t h = 14695981039346656037ULL;
    for (const char *p = seed != NULL ? seed : ""; *p != 0; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    }
    for (int i = 0; i < 8; i++) {
        h = (h ^ (uint8_t)((uint64_t)opening >> (8 * i))) * 1099511628211ULL;
    }
    h ^= h >> 29; /* FNV's low bits vary little with the last bytes: fold the high ones in */
    return opening + (int64_t)(h % (uint64_t)(end - opening));
}
