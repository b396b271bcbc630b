/*
 * The audit trail verifier behind `coffer audit verify`: it re-reads every trail file in
 * order and recomputes the hash chain, so a removed, altered, reordered or torn event shows up
 * as the first line whose previousEventHash does not match. The trail files are untrusted
 * input here (the point is to detect tampering): every line is parsed strictly and bounded.
 */
#include "audit/audit.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "audit/audit_internal.h"
#include "common/codec.h"

bool audit_line_check(const uint8_t *line, size_t len, const char prev_hex[AUDIT_HASH_HEX_LEN + 1],
                      uint8_t hash[CRYPTO_SHA256_LEN], char *why, size_t why_len)
{
    bool ok = false;
    json_error_t jerr;
    json_t *ev = NULL;
    if (len > AUDIT_MAX_EVENT_BYTES + AUDIT_HASH_HEX_LEN + 32) {
        snprintf(why, why_len, "line too long (%zu bytes)", len);
        goto out;
    }
    ev = json_loadb((const char *)line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (ev == NULL) {
        snprintf(why, why_len, "not valid JSON (column %d: %s)", jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(ev)) {
        snprintf(why, why_len, "not a JSON object");
        goto out;
    }
    json_t *ph = json_object_get(ev, AUDIT_HASH_FIELD);
    if (!json_is_string(ph) || json_string_length(ph) != AUDIT_HASH_HEX_LEN) {
        snprintf(why, why_len, "missing or malformed " AUDIT_HASH_FIELD);
        goto out;
    }
    if (memcmp(json_string_value(ph), prev_hex, AUDIT_HASH_HEX_LEN) != 0) {
        snprintf(why, why_len,
                 AUDIT_HASH_FIELD " does not match the previous event (an event before it was removed, "
                                  "altered or reordered)");
        goto out;
    }
    crypto_sha256(line, len, hash);
    ok = true;
out:
    json_decref(ev);
    return ok;
}

/* Verification state carried across files. */
struct walk {
    FILE *report;
    struct audit_verify_result *res;
    char prev[AUDIT_HASH_HEX_LEN + 1];
};

static coffer_err broken(struct walk *w, unsigned num, uint64_t line_no, const char *why)
{
    snprintf(w->res->break_file, sizeof(w->res->break_file), AUDIT_FILE_FMT, num);
    w->res->break_line = line_no;
    coffer_err rc =
        coffer_fail(COFFER_ERR_AUDIT, AUDIT_FILE_FMT ":%llu: %s", num, (unsigned long long)line_no, why);
    if (w->report != NULL) {
        fprintf(w->report, "audit trail BROKEN at %s\n", coffer_last_message());
    }
    return rc;
}

static coffer_err walk_file(struct walk *w, const char *dir, unsigned num)
{
    coffer_err rc = COFFER_OK;
    char path[PATH_MAX];
    char *line = NULL;
    size_t cap = 0;
    uint64_t line_no = 0;
    TRY(audit_file_path(dir, num, path, sizeof(path)));
    FILE *f = fopen(path, "rbe");
    if (f == NULL) {
        return broken(w, num, 0, "cannot be opened");
    }
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
            if (ferror(f)) {
                rc = broken(w, num, line_no + 1, "read error");
            }
            break;
        }
        line_no++;
        if (line[n - 1] != '\n') {
            rc = broken(w, num, line_no, "incomplete last line (no trailing newline)");
            break;
        }
        uint8_t h[CRYPTO_SHA256_LEN];
        char why[256];
        if (!audit_line_check((const uint8_t *)line, (size_t)n - 1, w->prev, h, why, sizeof(why))) {
            rc = broken(w, num, line_no, why);
            break;
        }
        coffer_hex_encode(h, sizeof(h), w->prev);
        w->res->events++;
    }
    free(line);
    fclose(f);
    return rc;
}

coffer_err audit_verify_dir(const char *dir, FILE *report)
{
    return audit_verify_dir_ex(dir, report, NULL);
}

coffer_err audit_verify_dir_ex(const char *dir, FILE *report, struct audit_verify_result *res)
{
    coffer_err rc = COFFER_OK;
    struct audit_verify_result local;
    unsigned *nums = NULL;
    size_t count = 0;
    ENSURE_REF(dir);
    struct walk w = {.report = report, .res = res ? res : &local};
    memset(w.res, 0, sizeof(*w.res));
    memset(w.prev, '0', AUDIT_HASH_HEX_LEN);
    w.prev[AUDIT_HASH_HEX_LEN] = '\0';
    rc = audit_files_list(dir, &nums, &count);
    if (rc != COFFER_OK) {
        if (report != NULL) {
            fprintf(report, "audit trail: %s\n", coffer_last_message());
        }
        goto out;
    }
    /* Files are numbered from 1 without gaps: a missing file is a removed run of events. */
    for (size_t i = 0; i < count; i++) {
        unsigned expect = (unsigned)i + 1;
        if (nums[i] != expect) {
            GUARD(broken(&w, expect, 0, "file is missing"));
        }
        GUARD(walk_file(&w, dir, nums[i]));
        w.res->files++;
    }
    memcpy(w.res->last_hash, w.prev, sizeof(w.prev));
    if (report != NULL) {
        fprintf(report, "audit trail OK: %llu events in %u files\nlast event hash: %s\n",
                (unsigned long long)w.res->events, w.res->files, w.res->last_hash);
    }
out:
    if (rc != COFFER_OK) {
        memcpy(w.res->last_hash, w.prev, sizeof(w.prev));
    }
    free(nums);
    return rc;
}
