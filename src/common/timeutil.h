/*
 * Wall-clock helpers. Times on the wire are epoch seconds (JSON numbers) or ISO 8601 UTC.
 */
#ifndef COFFER_COMMON_TIMEUTIL_H
#define COFFER_COMMON_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

int64_t coffer_now_ms(void);        /* wall clock, ms since epoch */
uint64_t coffer_monotonic_ns(void); /* for intervals and token buckets */
/* "2026-11-23T09:00:00Z" (CloudTrail eventTime form) */
void coffer_time_iso8601(int64_t epoch_s, char *out, size_t n);
/* "2026-11-23T09:00:00.123Z" */
void coffer_time_iso8601_ms(int64_t epoch_ms, char *out, size_t n);
/* "20261123T090000Z" (SigV4 X-Amz-Date) */
void coffer_time_amz(int64_t epoch_s, char *out, size_t n);
/* Parses "YYYYMMDDTHHMMSSZ"; returns 0 and sets *epoch_s, or -1. */
int coffer_time_parse_amz(const char *s, size_t len, int64_t *epoch_s);
/* RFC 1123 "Mon, 23 Nov 2026 09:00:00 GMT" for the HTTP Date header */
void coffer_time_http(int64_t epoch_s, char *out, size_t n);

#endif
