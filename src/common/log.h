/*
 * Line-oriented logging to stderr: "2026-11-23T09:00:00.123Z INFO  message". Never pass secrets:
 * log ids, sizes and hashes only. Thread-safe (one write(2) per line).
 */
#ifndef COFFER_COMMON_LOG_H
#define COFFER_COMMON_LOG_H

enum coffer_log_level {
    COFFER_LOG_DEBUG,
    COFFER_LOG_INFO,
    COFFER_LOG_WARN,
    COFFER_LOG_ERROR,
    COFFER_LOG_OFF
};

void coffer_log_set_level(enum coffer_log_level lvl);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int coffer_log_level_parse(const char *s);
void coffer_log(enum coffer_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) coffer_log(COFFER_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) coffer_log(COFFER_LOG_INFO, __VA_ARGS__)
#define log_warn(...) coffer_log(COFFER_LOG_WARN, __VA_ARGS__)
#define log_error(...) coffer_log(COFFER_LOG_ERROR, __VA_ARGS__)

#endif
