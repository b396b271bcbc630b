/*
 * The audit trail: one CloudTrail-shaped JSON event per request (allowed, denied or failed),
 * appended as a line to the trail directory (the server uses DATA/audit/, AUDIT_SUBDIR) in files
 * trail-000001.jsonl, trail-000002.jsonl, ... Each event carries the SHA-256 of the line before
 * it ("previousEventHash", the exact bytes without the newline; 64 zeros for the very first
 * event), so removing or editing an event that has a successor breaks the chain and
 * `coffer audit verify DIR` reports the first break. The chain is not keyed and its head is not
 * stored anywhere else: truncation at the end, or a rewrite that re-hashes every later event,
 * is caught only against an anchor kept elsewhere (audit_verify_dir_anchored). The chain continues across
 * files: the first line of a new file links to the last line of the previous one. The trail never holds
 * plaintext or key material: callers pass requestParameters with such members already removed.
 *
 * If an event cannot be written the caller refuses the request (COFFER_ERR_AUDIT).
 * Thread-safe: appends from all worker threads are serialised; the JSON serialisation happens
 * outside the lock, the lock covers only splicing the previous hash, one write(2) and one
 * SHA-256 of the new line.
 */
#ifndef COFFER_AUDIT_AUDIT_H
#define COFFER_AUDIT_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/err.h"

#define AUDIT_SUBDIR "audit"                   /* the trail directory inside the data dir */
#define AUDIT_ROTATE_BYTES_DEFAULT (64u << 20) /* a new file starts past 64 MiB */
#define AUDIT_MAX_EVENT_BYTES (1u << 20)       /* hard cap on one line (verifier, recovery) */
#define AUDIT_EVENT_BUDGET_BYTES (256u << 10)  /* larger events get their big members omitted */
#define AUDIT_MAX_FIELD_BYTES (100u << 10)     /* an object/array member over this is omitted */
#define AUDIT_MAX_STRING_BYTES 1024u           /* a longer string is cut, ending in the marker */
#define AUDIT_TRUNCATED_MARKER "...[truncated]"
#define AUDIT_HASH_HEX_LEN 64 /* hex SHA-256 */
#define AUDIT_HASH_FIELD "previousEventHash"

typedef struct audit_trail audit_trail;
typedef struct crypto_pkey crypto_pkey;

/*
 * Signed digests (audit_digest.c), as CloudTrail's log file integrity validation: with a
 * signing key the trail also rotates every `period_ms` of wall clock (boundaries at multiples
 * of the period since the epoch: on the hour for the default; the file holding events is
 * closed at the boundary, the next one starts with the next event), and at each boundary a digest
 * file DIR/digest/digest-<UTC end time>.json lists every trail file closed since the previous
 * digest (SHA-256 of its bytes, first and last event, their times), names the previous digest
 * with the SHA-256 of its bytes and its signature, and is signed (SHA256withRSA over
 * AUDIT_DIGEST_SIGNING_STRING) into digest-<...>.sig. A digest is written even when no file
 * was closed, and a clean close (audit_trail_close) closes the current file and writes a
 * final one. The public key is written in clear to DIR/AUDIT_PUBLIC_KEY_FILE (PEM): it is not
 * secret, and a verifier should hold its own copy, since whoever can write DIR can replace it.
 */
#define AUDIT_PERIOD_MS_DEFAULT 3600000u /* an hour */
#define AUDIT_DIGEST_SUBDIR "digest"
#define AUDIT_PUBLIC_KEY_FILE "public-key.pem"
#define AUDIT_NODE_ID_MAX 64      /* [A-Za-z0-9._-], 1..64 chars */
#define AUDIT_NODE_FIELD "nodeId" /* the member naming the node in events and digests */
#define AUDIT_SIGNATURE_ALGORITHM "SHA256withRSA"
/* The sealed store record holding node <id>'s signing key (PKCS#8 DER): AUDIT_SIGNING_KEY_RECORD<id>. */
#define AUDIT_SIGNING_KEY_RECORD "audit/signing-key/"

/*
 * Encrypted trail (audit_enc.c). With a key source (audit_trail_start_encryption) every new
 * file gets its own 256-bit data key, made by KMS under the deployment's key with the
 * encryption context {AUDIT_ENC_CONTEXT_KEY: "<file name>"} (envelope encryption). The file's
 * first line is a header, chained like an event:
 *   {"previousEventHash":"..",["nodeId":"..",]"auditEncryption":{"algorithm":"AES_256_GCM",
 *    "keyArn":"..","encryptedDataKey":"<base64 CiphertextBlob>","encryptionContext":{..}}}
 * and every event line is
 *   {"previousEventHash":"..",["nodeId":"..",]"encryptedEvent":"<base64 nonce||ciphertext||tag>"}
 * where the ciphertext is AES-256-GCM (12-byte random nonce, AAD the file name) of the event's
 * plaintext line, whose own previousEventHash is the same value. The chain hashes these
 * ciphertext lines, not the plaintext: `coffer audit verify` and the digests never need the
 * key (their event counts include the header lines), and the per-file summary of a digest has
 * no event times for an encrypted file. Each line is still one write(2), so an acknowledged
 * event survives kill -9. With encryption on, the hot path adds one GCM seal and one base64
 * encoding per event under the trail lock; with it off, one branch.
 */
#define AUDIT_ENC_HEADER_FIELD "auditEncryption"
#define AUDIT_ENC_EVENT_FIELD "encryptedEvent"
#define AUDIT_ENC_ALGORITHM "AES_256_GCM"
#define AUDIT_ENC_CONTEXT_KEY "coffer:auditFile"
#define AUDIT_ENC_KEY_LEN 32
#define AUDIT_ENC_ARN_MAX 256

/* One file's data key: plaintext (a secret buffer) and its KMS ciphertext blob. */
struct audit_data_key {
    coffer_buf key;                  /* AUDIT_ENC_KEY_LEN bytes, secret */
    char *wrapped_b64;               /* malloc'd base64 CiphertextBlob */
    char key_arn[AUDIT_ENC_ARN_MAX]; /* the KMS key's ARN */
};
void audit_data_key_clean(struct audit_data_key *k); /* wipes and frees; accepts a zeroed one */

/*
 * Where data keys come from. `data_key` makes a fresh key for the trail file `file_name`
 * ("trail-000002.jsonl": the encryption context). It is called outside every trail lock,
 * and it may append to the trail itself (an in-process KMS call records its own event).
 */
struct audit_key_source {
    coffer_err (*data_key)(void *ctx, const char *file_name, struct audit_data_key *out);
    void *ctx;
};

struct audit_trail_options {
    size_t rotate_bytes;         /* 0: AUDIT_ROTATE_BYTES_DEFAULT */
    unsigned sync_interval_ms;   /* > 0: a background thread fdatasyncs the trail this often */
    const char *node_id;         /* NULL: events carry no node id; otherwise every event gets
                                  * AUDIT_NODE_FIELD (audit_trail_append adds it) */
    const crypto_pkey *sign_key; /* borrowed, RSA-2048, outlives the trail; NULL: no digests */
    unsigned period_ms;          /* digest period with sign_key; 0: AUDIT_PERIOD_MS_DEFAULT */
    bool encrypted;              /* audit_trail_start_encryption will follow: the file the trail
                                  * recovered is not appended to (it may be another run's
                                  * encrypted file, whose key this run does not hold) */
};

/* Whether `id` is a valid node id (see AUDIT_NODE_ID_MAX). */
bool audit_node_id_valid(const char *id);
/*
 * The node whose digests the trail directory `dir` holds (the newest digest's), so a node keeps
 * its id across restarts; *found false when there is no digest yet. A trail opened with
 * another node id than its digests' is refused (COFFER_ERR_CONFIG): one directory, one chain.
 */
coffer_err audit_trail_recorded_node(const char *dir, char out[AUDIT_NODE_ID_MAX + 1], bool *found)
    __attribute__((warn_unused_result));

/*
 * Opens (creating as needed, mode 0700) the trail directory `dir` itself (not the data dir)
 * and recovers the chain head from the last line of the newest file. A torn last line (no
 * trailing newline, left by a crash mid-write) was never acknowledged: it is truncated away
 * and a warning is logged. COFFER_ERR_AUDIT when the directory or the files cannot be used.
 * *out is NULL on failure.
 */
coffer_err audit_trail_open(const char *dir, audit_trail **out) __attribute__((warn_unused_result));
/* As audit_trail_open with options (`opts` may be NULL for the defaults). */
coffer_err audit_trail_open_ex(const char *dir, const struct audit_trail_options *opts, audit_trail **out)
    __attribute__((warn_unused_result));
void audit_trail_close(audit_trail *t); /* stops the sync thread, fdatasyncs, closes; accepts NULL */

/*
 * Appends `event` (borrowed; a JSON object with the CloudTrail fields, in the order they should
 * appear, without "previousEventHash") as one line with "previousEventHash" first. The line
 * reaches the kernel (one write(2), O_APPEND) before this returns, so it survives a kill of the
 * process; it is not fsynced (see audit_trail_sync).
 *
 * Events are bounded by construction, so an append fails only when the trail cannot be written,
 * never because of what a request carried: `event` is shortened in place before it is
 * serialised, as CloudTrail bounds its records. A string value longer than
 * AUDIT_MAX_STRING_BYTES (at any depth) is cut at a UTF-8 boundary and ends in
 * AUDIT_TRUNCATED_MARKER; a top-level object or array member whose JSON is still over
 * AUDIT_MAX_FIELD_BYTES is replaced by {"omitted":true,"originalSize":<bytes>}; if the whole
 * event is still over AUDIT_EVENT_BUDGET_BYTES, the largest such members are omitted the same
 * way until it fits.
 *
 * COFFER_ERR_USAGE for a non-object, an event that already has "previousEventHash" or one that
 * cannot be bounded (many small top-level members: a caller's mistake, never request data);
 * COFFER_ERR_AUDIT when it cannot be written (nothing is left half-written: a partial write is
 * truncated away, and if even that fails the trail stays failed and refuses every append).
 */
coffer_err audit_trail_append(audit_trail *t, json_t *event) __attribute__((warn_unused_result));

/*
 * Turns encryption on (`ks` borrowed, outlives the trail): fetches a key for the next file
 * (the fetch's own KMS event goes to the current file), then starts that file encrypted.
 * The trail opens before KMS is up, so the events of a run until this call (the start of the
 * daemon and the first key's GenerateDataKey, never a client request: call it before serving)
 * are in a plaintext file of their own. Afterwards the key of the file after the current one
 * is fetched ahead, outside the trail lock, whenever a file starts; until it is there the
 * current file is neither rotated by size nor closed by a digest. COFFER_ERR_AUDIT when no key
 * could be had.
 */
coffer_err audit_trail_start_encryption(audit_trail *t, const struct audit_key_source *ks)
    __attribute__((warn_unused_result));

/*
 * Reading encrypted files (`coffer audit cat`). audit_enc_header parses a file's first line:
 * *encrypted false for a plaintext file; otherwise *wrapped_b64 and *key_arn (malloc'd) to
 * decrypt through KMS with the encryption context {AUDIT_ENC_CONTEXT_KEY: file name}.
 * audit_enc_open_line decrypts one event line of file `file_name` into `plain` (a secret
 * buffer is advised: it is the event): COFFER_ERR_INVALID_CIPHERTEXT for a line that was
 * changed, moved to another file or is not under `key`, COFFER_ERR_AUDIT for a malformed one.
 */
coffer_err audit_enc_header(const uint8_t *line, size_t len, bool *encrypted, char **wrapped_b64,
                            char **key_arn) __attribute__((warn_unused_result));
coffer_err audit_enc_open_line(coffer_cursor key, const char *file_name, const uint8_t *line, size_t len,
                               coffer_buf *plain) __attribute__((warn_unused_result));

/* fdatasync of the current file (for shutdown and tests). COFFER_ERR_AUDIT on failure. */
coffer_err audit_trail_sync(audit_trail *t) __attribute__((warn_unused_result));

/* The chain head: hex SHA-256 of the last line written (64 zeros for an empty trail). */
void audit_trail_head(audit_trail *t, char out[AUDIT_HASH_HEX_LEN + 1]);

/* The node id events are written with (the option), or NULL. */
const char *audit_trail_node_id(const audit_trail *t);

/*
 * Closes the current file (when it holds events) and writes a digest now, as at a period
 * boundary. COFFER_ERR_USAGE without a signing key; COFFER_ERR_AUDIT when it cannot be written.
 */
coffer_err audit_trail_digest(audit_trail *t) __attribute__((warn_unused_result));

/* ---------------------------------------------------------------- events written directly, in batches */

/*
 * The hot path's way to the trail: an event is serialised member by member straight into a
 * batch (no JSON tree for the event itself), and a batch of events is chained and written with
 * one write(2). The line a writer makes is byte for byte the line audit_trail_append makes of
 * the same members as a JSON tree in the same order: same escapes, a string member of the event
 * itself cut at AUDIT_MAX_STRING_BYTES the same way, strings in nested members untouched. An
 * event whose line would need the rest of the bounding (over AUDIT_MAX_FIELD_BYTES) is not
 * written this way: audit_line_end says so and the caller appends the event as a tree.
 * A batch belongs to one thread at a time.
 */
typedef struct audit_batch audit_batch;

coffer_err audit_batch_new(audit_batch **out) __attribute__((warn_unused_result));
void audit_batch_free(audit_batch *b);          /* accepts NULL */
size_t audit_batch_count(const audit_batch *b); /* complete lines waiting to be written */

/* Starts an event (a line being written must be ended first). */
void audit_line_begin(audit_batch *b);
/*
 * A string member. `lossy`: a value that is not UTF-8 is kept with '?' for every byte that is
 * not ASCII (what a client sent: a User-Agent); otherwise such a value makes the event
 * incomplete. NULL makes it incomplete too. A member of the event itself is cut at
 * AUDIT_MAX_STRING_BYTES, ending in AUDIT_TRUNCATED_MARKER, as audit_trail_append cuts it.
 */
void audit_line_string(audit_batch *b, const char *key, const char *value, bool lossy);
void audit_line_bool(audit_batch *b, const char *key, bool value);
/* A JSON value serialised as it is (borrowed); NULL writes null. */
void audit_line_json(audit_batch *b, const char *key, const json_t *value);
/* An object member: the members until audit_line_object_end go inside it (one level only). */
void audit_line_object_begin(audit_batch *b, const char *key);
void audit_line_object_end(audit_batch *b);
/* The caller could not say everything the event should: it is dropped at audit_line_end. */
void audit_line_fail(audit_batch *b);
/*
 * Ends the event. COFFER_OK with *oversized false: the line waits in the batch. COFFER_OK with
 * *oversized true: the line is over AUDIT_MAX_FIELD_BYTES and was dropped; append the event as
 * a tree (audit_trail_append bounds it). An error (out of memory, an incomplete event): dropped.
 */
coffer_err audit_line_end(audit_batch *b, bool *oversized) __attribute__((warn_unused_result));

/*
 * Chains the complete lines of `b` in order from the trail's head and writes them with one
 * write(2) (O_APPEND), then empties `b` whether or not that worked. COFFER_OK: every line
 * reached the kernel. COFFER_ERR_AUDIT: none of them is in the trail (a partial write is
 * truncated away, as for audit_trail_append), and the head is unchanged. Thread-safe with
 * respect to the trail; an empty batch writes nothing.
 */
coffer_err audit_trail_write_batch(audit_trail *t, audit_batch *b) __attribute__((warn_unused_result));

/* ---------------------------------------------------------------- unauthenticated requests */

/*
 * Bounds the events of requests that failed authentication (audit_limit.c): per window of
 * `window_s` seconds, at most `per_source` events per source address and `total` from all
 * sources; the others are counted, and a summary event (eventSource AUDIT_EVENT_SOURCE,
 * eventName AUDIT_SUPPRESSED_EVENT_NAME, eventType AwsServiceEvent, serviceEventDetails with
 * suppressedEvents, windowStart, windowEnd and topSources) records them once the window is over.
 * Thread-safe.
 */
#define AUDIT_UNAUTH_PER_SOURCE_DEFAULT 20u
#define AUDIT_UNAUTH_TOTAL_DEFAULT 1000u
#define AUDIT_UNAUTH_WINDOW_S_DEFAULT 60u
#define AUDIT_EVENT_SOURCE "audit.coffer.local"
#define AUDIT_SUPPRESSED_EVENT_NAME "UnauthenticatedEventsSuppressed"

typedef struct audit_limiter audit_limiter;

struct audit_limit_options {
    unsigned per_source; /* 0: AUDIT_UNAUTH_PER_SOURCE_DEFAULT */
    unsigned total;      /* 0: AUDIT_UNAUTH_TOTAL_DEFAULT */
    unsigned window_s;   /* 0: AUDIT_UNAUTH_WINDOW_S_DEFAULT */
};

/* `o` may be NULL for the defaults. *out is NULL on failure. */
coffer_err audit_limiter_new(const struct audit_limit_options *o, audit_limiter **out)
    __attribute__((warn_unused_result));
void audit_limiter_free(audit_limiter *l); /* accepts NULL */
/* true: write this unauthenticated request's event; false: it is counted instead. NULL l: true. */
bool audit_limiter_admit(audit_limiter *l, const char *source, int64_t now_ms);
/* Cheap, lock-free: whether a window is over so audit_limiter_flush has work to do. */
bool audit_limiter_due(audit_limiter *l, int64_t now_ms);
/*
 * Writes the summary of a finished window to `t` if anything was suppressed (`force`: closes
 * the current window first, for shutdown). On a write failure the count is kept for the next
 * flush and COFFER_ERR_AUDIT is returned.
 */
coffer_err audit_limiter_flush(audit_limiter *l, audit_trail *t, const char *region, int64_t now_ms,
                               bool force);

/* What audit_verify_dir_ex found. */
struct audit_verify_result {
    uint64_t events;                        /* lines that verified before the end or the break */
    unsigned files;                         /* trail files walked */
    char last_hash[AUDIT_HASH_HEX_LEN + 1]; /* hash of the last verified line */
    char break_file[32];                    /* "" when intact, else "trail-000002.jsonl" */
    uint64_t break_line;                    /* 1-based line of the first break, 0 when intact */
};

/*
 * Walks every trail file in the trail directory `dir` in order and checks that every line is a
 * complete JSON object whose previousEventHash is the SHA-256 of the line before it, and that
 * no file is missing from the numbering. Returns COFFER_OK when intact; otherwise
 * COFFER_ERR_AUDIT with the first break ("trail-000001.jsonl:6: ...") in the thread's error
 * message. Writes a short summary or the break to `report` (may be NULL).
 */
coffer_err audit_verify_dir(const char *dir, FILE *report) __attribute__((warn_unused_result));
/* As audit_verify_dir, also filling `res` (may be NULL). */
coffer_err audit_verify_dir_ex(const char *dir, FILE *report, struct audit_verify_result *res)
    __attribute__((warn_unused_result));
/*
 * As audit_verify_dir_ex, and the event whose hash is `anchor` (64 hex chars: a "last event
 * hash" an earlier verification printed, kept outside the data dir) must be in the chain. The
 * chain is unkeyed and its head is not anchored by itself: without an anchor, deleting the last
 * events or newest files, editing the last event, or rewriting the chain from some event on
 * and re-hashing everything after it all still verify. With an anchor, any of these reaching
 * back to or before the anchored event is a break; changes after it are not detected.
 * COFFER_ERR_USAGE for a malformed anchor.
 */
coffer_err audit_verify_dir_anchored(const char *dir, const char *anchor, FILE *report,
                                     struct audit_verify_result *res) __attribute__((warn_unused_result));

/* ---------------------------------------------------------------- digests: verification */

/* What audit_verify_digests found (counts over the digests and files in the time range). */
struct audit_digest_result {
    unsigned digests_valid, digests_invalid, digests_missing;
    unsigned files_valid, files_modified, files_deleted, files_missing;
    unsigned files_undigested; /* newer than the last digest: checked by the chain only */
    char node_id[AUDIT_NODE_ID_MAX + 1];
    bool chain_ok; /* the event chain (audit_verify_dir_ex) held, node ids included */
};

/* PEM "PUBLIC KEY" of a SubjectPublicKeyInfo (appended to `out`, NUL-terminated past its len). */
coffer_err audit_public_key_pem(const crypto_pkey *k, coffer_buf *out) __attribute__((warn_unused_result));
/* Parses the PEM AUDIT_PUBLIC_KEY_FILE holds into an RSA-2048 public key. */
coffer_err audit_public_key_from_pem(const char *pem, size_t len, crypto_pkey **out)
    __attribute__((warn_unused_result));

/*
 * Validates the trail directory `dir` the way `aws cloudtrail validate-logs` validates a
 * trail: every digest is checked (signature under `keys`, the chain to the previous digest,
 * its node id and period continuity) and reported valid, invalid or missing; every trail file
 * a valid digest lists is reported valid (same SHA-256), modified or deleted, and a file no
 * valid digest accounts for is missing. The event chain is walked too (audit_verify_dir_ex),
 * and every event must carry the digests' node id. `keys` (borrowed, n_keys of them) are the
 * trusted public keys; n_keys 0: DIR/AUDIT_PUBLIC_KEY_FILE is trusted (which whoever can
 * write DIR can replace). Digests and files outside [from_ms, to_ms] (epoch ms; 0 and
 * INT64_MAX for everything) are checked for the chain but not reported. One line per digest
 * and file to `report` (may be NULL). COFFER_OK when everything is valid, COFFER_ERR_AUDIT
 * otherwise.
 */
coffer_err audit_verify_digests(const char *dir, const crypto_pkey *const *keys, size_t n_keys,
                                int64_t from_ms, int64_t to_ms, FILE *report, struct audit_digest_result *res)
    __attribute__((warn_unused_result));

/* Parses "2026-12-06T05:00:00Z" or with milliseconds ("...:00.123Z"): epoch ms, or -1. */
int64_t audit_time_parse(const char *s);

#endif
