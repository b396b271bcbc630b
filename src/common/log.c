/*
 * stderr logger (see log.h).
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/timeutil.h"

static volatile int log_level = COFFER_LOG_INFO;

void coffer_log_set_level(enum coffer_log_level lvl)
{
    log_level = lvl;
}

int coffer_log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

void coffer_log(enum coffer_log_level lvl, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if ((int)lvl < log_level || lvl >= COFFER_LOG_OFF) {
        return;
    }
    char line[2048];
    char ts[40];
    coffer_time_iso8601_ms(coffer_now_ms(), ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s %s ", ts, tags[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
