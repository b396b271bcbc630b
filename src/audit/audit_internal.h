/*
 * Shared inside src/audit only: the trail file naming and listing, and the check of one line
 * of the chain (used by the verifier and the fuzz target).
 */
#ifndef COFFER_AUDIT_AUDIT_INTERNAL_H
#define COFFER_AUDIT_AUDIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "common/buf.h"
#include "crypto/crypto.h"

#define AUDIT_FILE_FMT "trail-%06u.jsonl"

/* A line starts {"previousEventHash":"  then 64 hex chars, then  ",  then the event's members. */
#define AUDIT_PREFIX_HEAD "{\"" AUDIT_HASH_FIELD "\":\""
#define AUDIT_PREFIX_HEAD_LEN (sizeof(AUDIT_PREFIX_HEAD) - 1)
#define AUDIT_PREFIX_LEN (AUDIT_PREFIX_HEAD_LEN + AUDIT_HASH_HEX_LEN + 2) /* + closing quote and comma */

/*
 * Framed lines waiting for audit_trail_write_batch, and the line being written (audit_line_*).
 * Each line is complete but for its head slot (64 placeholder chars after AUDIT_PREFIX_HEAD),
 * filled in when the batch is chained and written. Lines hold no raw newline (JSON escapes
 * it), so the '\n' ending each one is how the writer finds them again.
 */
struct audit_batch {
    coffer_buf lines; /* complete lines, then the one being written */
    size_t count;     /* complete lines */
    size_t start;     /* offset of the line being written */
    bool open;        /* a line is being written */
    bool failed;      /* ... and it cannot be completed (out of memory, not UTF-8) */
    unsigned depth;   /* 0: event members; 1: inside an object member */
    bool first[2];    /* no member written yet at this depth (the hash field counts at 0) */
};

/*
 * Lists the trail file numbers in `dir`, ascending, into a malloc'd array (*nums, *count; NULL
 * and 0 when there are none). Names that are not exactly trail-<digits>.jsonl are ignored.
 * COFFER_ERR_AUDIT when the directory cannot be read (errno preserved for ENOENT checks).
 */
coffer_err audit_files_list(const char *dir, unsigned **nums, size_t *count);

/* "DIR/trail-000042.jsonl" into out; COFFER_ERR_AUDIT when it does not fit. */
coffer_err audit_file_path(const char *dir, unsigned num, char *out, size_t n);

/*
 * Checks one line (without its newline; untrusted bytes): a JSON object, no duplicate keys,
 * with a string previousEventHash equal to `prev_hex`. On success writes the SHA-256 of the
 * line to `hash` and returns true; otherwise writes the reason to `why` and returns false.
 */
bool audit_line_check(const uint8_t *line, size_t len, const char prev_hex[AUDIT_HASH_HEX_LEN + 1],
                      uint8_t hash[CRYPTO_SHA256_LEN], char *why, size_t why_len);

/* ---------------------------------------------------------------- digests (audit_digest.c) */

#define AUDIT_DIGEST_NAME_MAX 64 /* "digest-20261206T050000.000Z.json" */

/* Where the digest chain stands: what the next digest links to. */
struct audit_digest_state {
    bool have_prev;                         /* a digest was written before */
    char prev_name[AUDIT_DIGEST_NAME_MAX];  /* its file name */
    char prev_hash[AUDIT_HASH_HEX_LEN + 1]; /* hex SHA-256 of its bytes */
    char *prev_sig;                         /* hex signature (malloc'd) */
    int64_t prev_end_ms;                    /* its digestEndTime: the next one's start */
    unsigned last_file;                     /* highest trail file number listed so far */
    char node_id[AUDIT_NODE_ID_MAX + 1];    /* the node the newest digest is of ("" none) */
};

void audit_digest_state_clean(struct audit_digest_state *st);

/*
 * Recovers the state from the newest digest in DIR/digest (a digest without its signature is
 * an interrupted write: removed). No digest yet: have_prev false, last_file 0, prev_end_ms
 * `now_ms` (the first digest's period starts when the trail is opened).
 */
coffer_err audit_digest_recover(const char *dir, int64_t now_ms, struct audit_digest_state *st);

/*
 * Writes the digest of trail files last_file+1 .. closed_upto (closed: never written again)
 * for the period ending at now_ms, signed with `key`, and advances `st`. `final`: written by a
 * clean close.
 */
coffer_err audit_digest_write(const char *dir, const char *node_id, const crypto_pkey *key,
                              struct audit_digest_state *st, unsigned closed_upto, int64_t now_ms,
                              bool final);

/* Writes DIR/AUDIT_PUBLIC_KEY_FILE when it is missing or holds another key. */
coffer_err audit_public_key_publish(const char *dir, const crypto_pkey *key);

/* As audit_line_check; a non-NULL `node_id` must also be the event's AUDIT_NODE_FIELD. */
bool audit_line_check_node(const uint8_t *line, size_t len, const char prev_hex[AUDIT_HASH_HEX_LEN + 1],
                           const char *node_id, uint8_t hash[CRYPTO_SHA256_LEN], char *why, size_t why_len);

/* As audit_verify_dir_ex, every event also carrying `node_id` when it is not NULL. */
coffer_err audit_verify_walk(const char *dir, const char *node_id, const char *anchor, FILE *report,
                             struct audit_verify_result *res);

/* ---------------------------------------------------------------- encrypted files (audit_enc.c) */

/* Appends the header line (with its newline) of encrypted file `file_name` chained to `head`. */
coffer_err audit_enc_header_line(const char head[AUDIT_HASH_HEX_LEN + 1], const char *node_id,
                                 const char *file_name, const struct audit_data_key *k, coffer_buf *out);
/*
 * Appends the encrypted line (with its newline) of the plaintext line `plain` (without its
 * newline, its previousEventHash already `head`) of file `file_name`.
 */
coffer_err audit_enc_seal_line(const struct audit_data_key *k, const char *file_name,
                               const char head[AUDIT_HASH_HEX_LEN + 1], const char *node_id,
                               const uint8_t *plain, size_t len, coffer_buf *out);

#endif
