/*
 * The audit trail: one CloudTrail-shaped JSON event per request (allowed, denied or failed),
 * appended as a line to DIR/audit/trail-<n>.jsonl. Each event carries the SHA-256 of the line
 * before it ("previousEventHash"), so removing or editing any event breaks the chain and
 * `coffer audit verify DIR` reports the first break. The trail never holds plaintext or key
 * material: callers pass requestParameters with such members already removed.
 *
 * If an event cannot be written the caller refuses the request (COFFER_ERR_AUDIT).
 * Thread-safe: appends from all worker threads are serialised.
 */
#ifndef COFFER_AUDIT_AUDIT_H
#define COFFER_AUDIT_AUDIT_H

#include <jansson.h>
#include <stdio.h>

#include "common/err.h"

typedef struct audit_trail audit_trail;

/* Opens (creating as needed) the trail under `dir` and recovers the chain head from the last line. */
coffer_err audit_trail_open(const char *dir, audit_trail **out) __attribute__((warn_unused_result));
void audit_trail_close(audit_trail *t); /* flushes; accepts NULL */

/*
 * Appends `event` (borrowed; a JSON object with the CloudTrail fields) after adding
 * "previousEventHash". The line reaches the kernel (write(2)) before this returns, so it
 * survives a kill of the process. COFFER_ERR_AUDIT when it cannot be written.
 */
coffer_err audit_trail_append(audit_trail *t, json_t *event) __attribute__((warn_unused_result));

/*
 * Walks every trail file under `dir` in order and checks the chain. Returns COFFER_OK when
 * intact; otherwise COFFER_ERR_AUDIT with the first break (file, line, reason) described in
 * the thread's error message. Writes a short progress/summary report to `report` (may be NULL).
 */
coffer_err audit_verify_dir(const char *dir, FILE *report) __attribute__((warn_unused_result));

#endif
