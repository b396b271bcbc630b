/*
 * Wall-clock helpers (see timeutil.h). All formatting is UTC.
 */
#include "common/timeutil.h"

#include <stdio.h>
#include <time.h>

int64_t coffer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t coffer_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void utc(int64_t epoch_s, struct tm *tm)
{
    time_t t = (time_t)epoch_s;
    gmtime_r(&t, tm);
}

void coffer_time_iso8601(int64_t epoch_s, char *out, size_t n)
{
    struct tm tm;
    utc(epoch_s, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void coffer_time_iso8601_ms(int64_t epoch_ms, char *out, size_t n)
{
    struct tm tm;
    utc(epoch_ms / 1000, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", base, (int)(epoch_ms % 1000));
}

void coffer_time_amz(int64_t epoch_s, char *out, size_t n)
{
    struct tm tm;
    utc(epoch_s, &tm);
    strftime(out, n, "%Y%m%dT%H%M%SZ", &tm);
}

int coffer_time_parse_amz(const char *s, size_t len, int64_t *epoch_s)
{
    if (len != 16 || s[8] != 'T' || s[15] != 'Z') {
        return -1;
    }
    int v[6];
    static const int pos[6][2] = {{0, 4}, {4, 2}, {6, 2}, {9, 2}, {11, 2}, {13, 2}};
    for (int i = 0; i < 6; i++) {
        int x = 0;
        for (int k = 0; k < pos[i][1]; k++) {
            char ch = s[pos[i][0] + k];
            if (ch < '0' || ch > '9') {
                return -1;
            }
            x = x * 10 + (ch - '0');
        }
        v[i] = x;
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60) {
        return -1;
    }
    struct tm tm = {0};
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    *epoch_s = (int64_t)timegm(&tm);
    return 0;
}

void coffer_time_http(int64_t epoch_s, char *out, size_t n)
{
    struct tm tm;
    utc(epoch_s, &tm);
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
