/*
 * The audit trail verifier behind `coffer audit verify`: it re-reads every trail file in
 * order and recomputes the hash chain, so a removed, altered, reordered or torn event shows up
 * as the first line whose previousEventHash does not match, unless every later line was
 * re-hashed too (the chain has no key) or the change is at the very end (the last events, the
 * newest files): only an anchor, a hash printed by an earlier run and kept elsewhere, catches
 * those. The trail files are untrusted
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
    return audit_line_check_node(line, len, prev_hex, NULL, hash, why, why_len);
}

bool audit_line_check_node(const uint8_t *line, size_t len, const char prev_hex[AUDIT_HASH_HEX_LEN + 1],
                           const char *node_id, uint8_t hash[CRYPTO_SHA256_LEN], char *why, size_t why_len)
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
    /* Events written before node ids existed have none; one that names another node was
     * moved here from that node's trail. */
    json_t *node = json_object_get(ev, AUDIT_NODE_FIELD);
    if (node_id != NULL && node != NULL &&
        (!json_is_string(node) || strcmp(json_string_value(node), node_id) != 0)) {
        snprintf(why, why_len, "the event belongs to another node (" AUDIT_NODE_FIELD " is not %s)", node_id);
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
    const char *anchor;  /* hex hash of an event that must be in the chain, or NULL */
    const char *node_id; /* every event's node, or NULL */
    uint64_t anchor_at;  /* 1-based index of that event, 0 while not seen */
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
        if (!audit_line_check_node((const uint8_t *)line, (size_t)n - 1, w->prev, w->node_id, h, why,
                                   sizeof(why))) {
            rc = broken(w, num, line_no, why);
            break;
        }
        coffer_hex_encode(h, sizeof(h), w->prev);
        w->res->events++;
        if (w->anchor != NULL && w->anchor_at == 0 && strcmp(w->prev, w->anchor) == 0) {
            w->anchor_at = w->res->events;
        }
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
    return audit_verify_dir_anchored(dir, NULL, report, res);
}

coffer_err audit_verify_dir_anchored(const char *dir, const char *anchor, FILE *report,
                                     struct audit_verify_result *res)
{
    return audit_verify_walk(dir, NULL, anchor, report, res);
}

coffer_err audit_verify_walk(const char *dir, const char *node_id, const char *anchor, FILE *report,
                             struct audit_verify_result *res)
{
    coffer_err rc = COFFER_OK;
    struct audit_verify_result local;
    unsigned *nums = NULL;
    size_t count = 0;
    ENSURE_REF(dir);
    if (anchor != NULL && strlen(anchor) != AUDIT_HASH_HEX_LEN) {
        return coffer_fail(COFFER_ERR_USAGE, "an anchor is a hex SHA-256 (%d characters)",
                           AUDIT_HASH_HEX_LEN);
    }
    struct walk w = {.report = report, .res = res ? res : &local, .anchor = anchor, .node_id = node_id};
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
            TRY_OUT(broken(&w, expect, 0, "file is missing"));
        }
        TRY_OUT(walk_file(&w, dir, nums[i]));
        w.res->files++;
    }
    memcpy(w.res->last_hash, w.prev, sizeof(w.prev));
    /*
     * The chain alone cannot tell a trail cut short, or rewritten and re-hashed from some point
     * on, from an intact one: only a hash kept elsewhere can. If the anchor is not in the chain,
     * events up to it were removed or rewritten.
     */
    if (anchor != NULL && w.anchor_at == 0) {
        rc = coffer_fail(COFFER_ERR_AUDIT,
                         "the anchored event %s is not in the trail: the trail was truncated before it, or "
                         "events up to it were removed or rewritten",
                         anchor);
        if (report != NULL) {
            fprintf(report, "audit trail BROKEN: %s\n", coffer_last_message());
        }
        goto out;
    }
    if (report != NULL) {
        fprintf(report, "audit trail OK: %llu events in %u files\nlast event hash: %s\n",
                (unsigned long long)w.res->events, w.res->files, w.res->last_hash);
        if (anchor != NULL) {
            fprintf(report, "anchor found at event %llu; %llu events after it\n",
                    (unsigned long long)w.anchor_at, (unsigned long long)(w.res->events - w.anchor_at));
        }
    }
out:
    if (rc != COFFER_OK) {
        memcpy(w.res->last_hash, w.prev, sizeof(w.prev));
    }
    free(nums);
    return rc;
}
