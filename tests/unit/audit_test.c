/*
 * Unit tests for src/audit: the hash-chained trail writer and its verifier. Tampering cases
 * (removed, edited, reordered, torn lines, missing files) must be reported at the right file
 * and line; concurrent appends must form one intact chain; a trail that cannot be written
 * must fail cleanly with COFFER_ERR_AUDIT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "common/codec.h"
#include "common/log.h"
#include "crypto/crypto.h"

/* ---------------------------------------------------------------- helpers */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static char *tmpdir_new(void)
{
    char *d = strdup("/tmp/coffer-audit-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void tmpdir_free(char *d)
{
    nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

static char *file_path(const char *dir, unsigned n)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/trail-%06u.jsonl", dir, n);
    return path;
}

static json_t *make_event(int i)
{
    char req[64];
    snprintf(req, sizeof(req), "req-%08d", i);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s}, s:n, s:s, s:s, s:b, s:s, s:s}",
        "eventVersion", "1.08", "eventTime", "2026-11-23T09:00:00Z", "eventSource", "kms.amazonaws.com",
        "eventName", "Encrypt", "awsRegion", "us-east-1", "sourceIPAddress", "127.0.0.1", "userAgent",
        "aws-cli/2.15", "userIdentity", "type", "IAMUser", "accountId", "000000000000", "requestParameters",
        "keyId", "alias/test", "responseElements", "requestID", req, "eventID", req, "readOnly", 0,
        "eventType", "AwsApiCall", "recipientAccountId", "000000000000");
}

static void append_n(audit_trail *t, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        json_t *ev = make_event(i);
        assert_non_null(ev);
        assert_int_equal(audit_trail_append(t, ev), COFFER_OK);
        json_decref(ev);
    }
}

static void write_trail(const char *dir, int n, const struct audit_trail_options *opts)
{
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open_ex(dir, opts, &t), COFFER_OK);
    append_n(t, 0, n);
    audit_trail_close(t);
}

/* Whole file as lines (newlines kept). */
struct lines {
    char *buf;
    char *line[4096];
    size_t len[4096];
    size_t n;
};

static void lines_read(const char *path, struct lines *l)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    l->buf = malloc((size_t)sz + 1);
    assert_int_equal(fread(l->buf, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    l->n = 0;
    size_t start = 0;
    for (size_t i = 0; i < (size_t)sz; i++) {
        if (l->buf[i] == '\n' || i + 1 == (size_t)sz) {
            assert_true(l->n < 4096);
            l->line[l->n] = l->buf + start;
            l->len[l->n] = i + 1 - start;
            l->n++;
            start = i + 1;
        }
    }
}

static void lines_write(const char *path, const struct lines *l)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < l->n; i++) {
        assert_int_equal(fwrite(l->line[i], 1, l->len[i], f), l->len[i]);
    }
    fclose(f);
}

static void verify_breaks_at(const char *dir, const char *file, uint64_t line, const char *why)
{
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_ERR_AUDIT);
    assert_string_equal(r.break_file, file);
    assert_int_equal(r.break_line, line);
    assert_non_null(strstr(coffer_last_message(), file));
    if (why != NULL) {
        assert_non_null(strstr(coffer_last_message(), why));
    }
}

static void verify_ok(const char *dir, uint64_t events, unsigned files)
{
    struct audit_verify_result r;
    coffer_err rc = audit_verify_dir_ex(dir, NULL, &r);
    if (rc != COFFER_OK) {
        fail_msg("verify: %s", coffer_last_message());
    }
    assert_int_equal(r.events, events);
    assert_int_equal(r.files, files);
    assert_string_equal(r.break_file, "");
}

/* ---------------------------------------------------------------- happy paths */

static void test_append_format(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 3, NULL);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    assert_int_equal(l.n, 3);
    /* First event links to 64 zeros; the hash is the first member, then insertion order. */
    const char *first =
        "{\"previousEventHash\":\"0000000000000000000000000000000000000000000000000000000000000000\","
        "\"eventVersion\":\"1.08\",\"eventTime\":";
    assert_memory_equal(l.line[0], first, strlen(first));
    /* Line 2's previousEventHash is, independently recomputed, the SHA-256 of line 1. */
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[65];
    crypto_sha256(l.line[0], l.len[0] - 1, h);
    coffer_hex_encode(h, sizeof(h), hex);
    assert_memory_equal(l.line[1] + 22, hex, 64);
    /* Each line is one compact JSON object with the request's members intact. */
    json_error_t err;
    json_t *ev = json_loadb(l.line[2], l.len[2] - 1, 0, &err);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "requestID")), "req-00000002");
    assert_string_equal(json_string_value(json_object_get(ev, "eventType")), "AwsApiCall");
    assert_null(memchr(l.line[2], ' ', l.len[2]));
    json_decref(ev);
    free(l.buf);

    struct audit_verify_result r;
    char out[512] = {0};
    FILE *rep = fmemopen(out, sizeof(out) - 1, "w");
    assert_int_equal(audit_verify_dir_ex(dir, rep, &r), COFFER_OK);
    fclose(rep);
    assert_non_null(strstr(out, "audit trail OK: 3 events in 1 files"));
    /* The head reported by the verifier is the hash of the last line. */
    lines_read(file_path(dir, 1), &l);
    crypto_sha256(l.line[2], l.len[2] - 1, h);
    coffer_hex_encode(h, sizeof(h), hex);
    assert_string_equal(r.last_hash, hex);
    assert_non_null(strstr(out, hex));
    free(l.buf);
    tmpdir_free(dir);
}

static void test_empty_object_and_large_event(void **state)
{
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    json_t *empty = json_object();
    assert_int_equal(audit_trail_append(t, empty), COFFER_OK);
    json_decref(empty);
    /* Larger than the stack buffer: the heap path. */
    char *big = malloc(20000);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    json_t *ev = json_pack("{s:s, s:{s:s}}", "eventName", "PutParameter", "requestParameters", "pad", big);
    assert_int_equal(audit_trail_append(t, ev), COFFER_OK);
    json_decref(ev);
    free(big);
    append_n(t, 0, 1);
    audit_trail_close(t);
    verify_ok(dir, 3, 1);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    assert_int_equal(l.len[0], 22 + 64 + 2 + 1);
    assert_memory_equal(l.line[0] + 22 + 64, "\"}\n", 3);
    assert_true(l.len[1] > 20000);
    free(l.buf);
    tmpdir_free(dir);
}

struct worker {
    audit_trail *t;
    int base;
    int n;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        json_t *ev = make_event(w->base + i);
        if (audit_trail_append(w->t, ev) != COFFER_OK) {
            json_decref(ev);
            return (void *)1;
        }
        json_decref(ev);
    }
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    enum { THREADS = 4, PER = 2500 };
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    /* Small files so rotation races with appends too. */
    struct audit_trail_options o = {.rotate_bytes = 256 * 1024, .sync_interval_ms = 5};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){t, i * PER, PER};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    assert_int_equal(audit_trail_sync(t), COFFER_OK);
    char head[65];
    audit_trail_head(t, head);
    audit_trail_close(t);
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_OK);
    assert_int_equal(r.events, THREADS * PER);
    assert_true(r.files > 1);
    assert_string_equal(r.last_hash, head);
    tmpdir_free(dir);
}

static void test_reopen_continues_chain(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 4, NULL);
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_OK);
    char head[65];
    audit_trail_head(t, head);
    assert_string_equal(head, r.last_hash);
    append_n(t, 4, 4);
    audit_trail_close(t);
    verify_ok(dir, 8, 1);
    tmpdir_free(dir);
}

static void test_rotation(void **state)
{
    char *dir = tmpdir_new();
    struct audit_trail_options o = {.rotate_bytes = 2048};
    write_trail(dir, 40, &o);
    struct stat st;
    assert_int_equal(stat(file_path(dir, 5), &st), 0);
    assert_true(st.st_size <= 2048);
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_OK);
    assert_int_equal(r.events, 40);
    unsigned files = r.files;
    assert_true(files >= 10);
    /* Reopen appends to the newest file and keeps the chain across the boundary. */
    write_trail(dir, 40, &o);
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_OK);
    assert_int_equal(r.events, 80);
    assert_true(r.files > files);
    /* An empty newest file (crash right after rotation): the head comes from the file before. */
    FILE *f = fopen(file_path(dir, r.files + 1), "w");
    fclose(f);
    write_trail(dir, 1, &o);
    verify_ok(dir, 81, r.files + 1);
    tmpdir_free(dir);
}

/* ---------------------------------------------------------------- tampering */

static void test_tamper_delete_line(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 10, NULL);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    memmove(&l.line[4], &l.line[5], (l.n - 5) * sizeof(l.line[0]));
    memmove(&l.len[4], &l.len[5], (l.n - 5) * sizeof(l.len[0]));
    l.n--;
    lines_write(file_path(dir, 1), &l);
    free(l.buf);
    verify_breaks_at(dir, "trail-000001.jsonl", 5, "does not match");
    tmpdir_free(dir);
}

static void test_tamper_edit_byte(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 10, NULL);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    char *p = strstr(l.line[3], "Encrypt");
    assert_non_null(p);
    p[0] = 'D'; /* still valid JSON: only the chain can tell */
    lines_write(file_path(dir, 1), &l);
    free(l.buf);
    verify_breaks_at(dir, "trail-000001.jsonl", 5, "does not match");

    tmpdir_free(dir);

    /* An edit that breaks the JSON is reported on the edited line itself. */
    dir = tmpdir_new();
    write_trail(dir, 10, NULL);
    lines_read(file_path(dir, 1), &l);
    l.line[6][0] = '[';
    lines_write(file_path(dir, 1), &l);
    free(l.buf);
    verify_breaks_at(dir, "trail-000001.jsonl", 7, "not valid JSON");
    tmpdir_free(dir);
}

static void test_tamper_edit_hash_field(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 6, NULL);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    l.line[2][30] = l.line[2][30] == 'a' ? 'b' : 'a';
    lines_write(file_path(dir, 1), &l);
    free(l.buf);
    verify_breaks_at(dir, "trail-000001.jsonl", 3, "does not match");
    tmpdir_free(dir);
}

static void test_tamper_reorder(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 10, NULL);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    char *tp = l.line[5];
    size_t tl = l.len[5];
    l.line[5] = l.line[6];
    l.len[5] = l.len[6];
    l.line[6] = tp;
    l.len[6] = tl;
    lines_write(file_path(dir, 1), &l);
    free(l.buf);
    verify_breaks_at(dir, "trail-000001.jsonl", 6, "does not match");
    tmpdir_free(dir);
}

static void test_tamper_truncated_tail(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 10, NULL);
    struct stat st;
    assert_int_equal(stat(file_path(dir, 1), &st), 0);
    assert_int_equal(truncate(file_path(dir, 1), st.st_size - 40), 0);
    verify_breaks_at(dir, "trail-000001.jsonl", 10, "incomplete");
    tmpdir_free(dir);
}

static void test_tamper_duplicate_key_and_non_object(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 3, NULL);
    /* A second previousEventHash would let one line claim two parents: rejected. */
    FILE *f = fopen(file_path(dir, 1), "ab");
    fputs("{\"previousEventHash\":\"00\",\"previousEventHash\":\"00\"}\n", f);
    fclose(f);
    verify_breaks_at(dir, "trail-000001.jsonl", 4, "not valid JSON");
    tmpdir_free(dir);

    dir = tmpdir_new();
    f = fopen(file_path(dir, 1), "wb");
    fputs("[\"previousEventHash\"]\n", f);
    fclose(f);
    verify_breaks_at(dir, "trail-000001.jsonl", 1, "not a JSON object");
    tmpdir_free(dir);

    dir = tmpdir_new();
    f = fopen(file_path(dir, 1), "wb");
    fputs("\n", f);
    fclose(f);
    verify_breaks_at(dir, "trail-000001.jsonl", 1, "not valid JSON");
    tmpdir_free(dir);

    dir = tmpdir_new();
    f = fopen(file_path(dir, 1), "wb");
    fputs("{\"eventName\":\"Encrypt\"}\n", f);
    fclose(f);
    verify_breaks_at(dir, "trail-000001.jsonl", 1, "missing");
    tmpdir_free(dir);
}

static void test_tamper_missing_file(void **state)
{
    char *dir = tmpdir_new();
    struct audit_trail_options o = {.rotate_bytes = 2048};
    write_trail(dir, 40, &o);
    assert_int_equal(unlink(file_path(dir, 3)), 0);
    verify_breaks_at(dir, "trail-000003.jsonl", 0, "missing");
    /* Removing the first file is caught too. */
    assert_int_equal(unlink(file_path(dir, 1)), 0);
    verify_breaks_at(dir, "trail-000001.jsonl", 0, "missing");
    tmpdir_free(dir);

    /* A file renamed into the gap does not link to its predecessor. */
    dir = tmpdir_new();
    write_trail(dir, 40, &o);
    assert_int_equal(unlink(file_path(dir, 3)), 0);
    char from[512];
    snprintf(from, sizeof(from), "%s", file_path(dir, 4));
    assert_int_equal(rename(from, file_path(dir, 3)), 0);
    verify_breaks_at(dir, "trail-000003.jsonl", 1, "does not match");
    tmpdir_free(dir);
}

/* ---------------------------------------------------------------- recovery and failures */

static void test_torn_tail_recovered_on_open(void **state)
{
    char *dir = tmpdir_new();
    write_trail(dir, 5, NULL);
    struct stat before;
    assert_int_equal(stat(file_path(dir, 1), &before), 0);
    FILE *f = fopen(file_path(dir, 1), "ab");
    fputs("{\"previousEventHash\":\"abc", f); /* the crash hit mid-write */
    fclose(f);
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    struct stat after;
    assert_int_equal(stat(file_path(dir, 1), &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    append_n(t, 5, 2);
    audit_trail_close(t);
    verify_ok(dir, 7, 1);

    /* A file holding only a torn line is emptied; the chain starts from zeros. */
    char *dir2 = tmpdir_new();
    f = fopen(file_path(dir2, 1), "wb");
    fputs("{\"prev", f);
    fclose(f);
    write_trail(dir2, 2, NULL);
    verify_ok(dir2, 2, 1);
    tmpdir_free(dir2);
    tmpdir_free(dir);
}

static void test_append_fails_on_full_device(void **state)
{
    if (access("/dev/full", W_OK) != 0) {
        skip();
    }
    char *dir = tmpdir_new();
    assert_int_equal(symlink("/dev/full", file_path(dir, 1)), 0);
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    char before[65], after[65];
    audit_trail_head(t, before);
    json_t *ev = make_event(1);
    assert_int_equal(audit_trail_append(t, ev), COFFER_ERR_AUDIT);
    assert_int_equal(coffer_last_err(), COFFER_ERR_AUDIT);
    assert_int_equal(audit_trail_append(t, ev), COFFER_ERR_AUDIT);
    audit_trail_head(t, after);
    assert_string_equal(before, after); /* the failed event is not in the chain */
    json_decref(ev);
    audit_trail_close(t);
    tmpdir_free(dir);
}

static void test_append_fails_when_dir_removed(void **state)
{
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    struct audit_trail_options o = {.rotate_bytes = 1024};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    append_n(t, 0, 1);
    /* Remove the directory under the writer: the next rotation cannot create a file. */
    assert_int_equal(unlink(file_path(dir, 1)), 0);
    assert_int_equal(rmdir(dir), 0);
    coffer_err rc = COFFER_OK;
    for (int i = 0; i < 20 && rc == COFFER_OK; i++) {
        json_t *ev = make_event(i);
        rc = audit_trail_append(t, ev);
        json_decref(ev);
    }
    assert_int_equal(rc, COFFER_ERR_AUDIT);
    audit_trail_close(t);
    free(dir);
}

static void test_open_errors(void **state)
{
    audit_trail *t = (audit_trail *)1;
    /* The parent does not exist: cannot create the trail directory. */
    assert_int_equal(audit_trail_open("/nonexistent-coffer/a/b", &t), COFFER_ERR_AUDIT);
    assert_null(t);
    assert_int_equal(audit_trail_open(NULL, &t), COFFER_ERR_USAGE);
    /* A regular file where the directory should be. */
    char *dir = tmpdir_new();
    char path[512];
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(audit_trail_open(path, &t), COFFER_ERR_AUDIT);
    assert_null(t);
    tmpdir_free(dir);
    audit_trail_close(NULL);
}

static void test_append_usage_errors(void **state)
{
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    json_t *arr = json_array();
    assert_int_equal(audit_trail_append(t, arr), COFFER_ERR_USAGE);
    assert_int_equal(audit_trail_append(t, NULL), COFFER_ERR_USAGE);
    json_decref(arr);
    json_t *forged = json_pack("{s:s}", "previousEventHash", "00");
    assert_int_equal(audit_trail_append(t, forged), COFFER_ERR_USAGE);
    json_decref(forged);
    assert_int_equal(audit_trail_append(NULL, NULL), COFFER_ERR_USAGE);
    audit_trail_close(t);
    struct stat st;
    assert_int_equal(stat(file_path(dir, 1), &st), 0);
    assert_int_equal(st.st_size, 0);
    verify_ok(dir, 0, 1);
    tmpdir_free(dir);
}

static json_t *line_json(const struct lines *l, size_t i)
{
    json_error_t e;
    json_t *j = json_loadb(l->line[i], l->len[i] - 1, 0, &e);
    assert_non_null(j);
    return j;
}

/* Oversized events are bounded, never refused: strings cut with a marker, members omitted. */
static void test_oversized_events_bounded(void **state)
{
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    size_t n = AUDIT_MAX_EVENT_BYTES + 10;
    char *big = malloc(n);
    memset(big, 'y', n - 1);
    big[n - 1] = '\0';
    /* A long top-level string (a User-Agent) is cut even in a small event. */
    json_t *ev = json_pack("{s:s,s:s}", "userAgent", big + n - 60001, "eventName", "X");
    assert_int_equal(audit_trail_append(t, ev), COFFER_OK);
    json_decref(ev);
    /* Over the event size: the long string inside requestParameters is cut, the rest kept. */
    ev = json_pack("{s:s,s:{s:s,s:s}}", "eventName", "Y", "requestParameters", "big", big, "small", "kept");
    assert_int_equal(audit_trail_append(t, ev), COFFER_OK);
    json_decref(ev);
    /* Many small values: the member is omitted with a marker. */
    json_t *ops = json_array();
    for (int i = 0; i < 100000; i++) {
        json_array_append_new(ops, json_string("Decrypt"));
    }
    ev = json_pack("{s:s,s:{s:o}}", "eventName", "Z", "requestParameters", "operations", ops);
    assert_int_equal(audit_trail_append(t, ev), COFFER_OK);
    json_decref(ev);
    free(big);
    audit_trail_close(t);
    verify_ok(dir, 3, 1);

    struct lines l;
    lines_read(file_path(dir, 1), &l);
    for (size_t i = 0; i < 3; i++) {
        assert_true(l.len[i] <= AUDIT_EVENT_BUDGET_BYTES + 128);
    }
    json_t *j = line_json(&l, 0);
    const char *ua = json_string_value(json_object_get(j, "userAgent"));
    assert_int_equal(strlen(ua), AUDIT_MAX_STRING_BYTES);
    assert_string_equal(ua + strlen(ua) - strlen(AUDIT_TRUNCATED_MARKER), AUDIT_TRUNCATED_MARKER);
    json_decref(j);
    j = line_json(&l, 1);
    json_t *rp = json_object_get(j, "requestParameters");
    assert_string_equal(json_string_value(json_object_get(rp, "small")), "kept");
    assert_int_equal(json_string_length(json_object_get(rp, "big")), AUDIT_MAX_STRING_BYTES);
    json_decref(j);
    j = line_json(&l, 2);
    rp = json_object_get(j, "requestParameters");
    assert_true(json_is_true(json_object_get(rp, "omitted")));
    assert_true(json_integer_value(json_object_get(rp, "originalSize")) > (json_int_t)AUDIT_MAX_FIELD_BYTES);
    json_decref(j);
    free(l.buf);
    tmpdir_free(dir);
}

/* ---------------------------------------------------------------- the direct line writer */

/* One member of an event, written both as a JSON tree and through audit_line_*. */
enum field_kind { F_STR, F_LOSSY, F_BOOL, F_JSON, F_OBJ, F_END };
struct field {
    enum field_kind kind;
    const char *key;
    const char *s; /* F_STR, F_LOSSY */
    bool b;        /* F_BOOL */
    json_t *j;     /* F_JSON (borrowed; NULL: null) */
};

/* The pipeline's lossy_string: jansson's string, or '?' for every byte that is not ASCII. */
static json_t *lossy(const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL) {
        return v;
    }
    char *c = strdup(s);
    for (char *p = c; *p; p++) {
        if ((unsigned char)*p >= 0x80) {
            *p = '?';
        }
    }
    v = json_string(c);
    free(c);
    return v;
}

#define FSTR(k, v)                                                                                           \
    {                                                                                                        \
        .kind = F_STR, .key = (k), .s = (v)                                                                  \
    }
#define FLOSSY(k, v)                                                                                         \
    {                                                                                                        \
        .kind = F_LOSSY, .key = (k), .s = (v)                                                                \
    }
#define FBOOL(k, v)                                                                                          \
    {                                                                                                        \
        .kind = F_BOOL, .key = (k), .b = (v)                                                                 \
    }
#define FJSON(k, v)                                                                                          \
    {                                                                                                        \
        .kind = F_JSON, .key = (k), .j = (v)                                                                 \
    }
#define FOBJ(k)                                                                                              \
    {                                                                                                        \
        .kind = F_OBJ, .key = (k)                                                                            \
    }
#define FEND                                                                                                 \
    {                                                                                                        \
        .kind = F_END                                                                                        \
    }

static json_t *fields_tree(const struct field *f, size_t n)
{
    json_t *ev = json_object();
    json_t *o = ev;
    for (size_t i = 0; i < n; i++) {
        switch (f[i].kind) {
        case F_STR:
            assert_int_equal(json_object_set_new(o, f[i].key, json_string(f[i].s)), 0);
            break;
        case F_LOSSY:
            assert_int_equal(json_object_set_new(o, f[i].key, lossy(f[i].s)), 0);
            break;
        case F_BOOL:
            assert_int_equal(json_object_set_new(o, f[i].key, json_boolean(f[i].b)), 0);
            break;
        case F_JSON:
            assert_int_equal(json_object_set_new(o, f[i].key, f[i].j ? json_deep_copy(f[i].j) : json_null()),
                             0);
            break;
        case F_OBJ:
            o = json_object();
            assert_int_equal(json_object_set_new(ev, f[i].key, o), 0);
            break;
        case F_END:
            o = ev;
            break;
        }
    }
    return ev;
}

static coffer_err fields_write(audit_batch *b, const struct field *f, size_t n, bool *oversized)
{
    audit_line_begin(b);
    for (size_t i = 0; i < n; i++) {
        switch (f[i].kind) {
        case F_STR:
            audit_line_string(b, f[i].key, f[i].s, false);
            break;
        case F_LOSSY:
            audit_line_string(b, f[i].key, f[i].s, true);
            break;
        case F_BOOL:
            audit_line_bool(b, f[i].key, f[i].b);
            break;
        case F_JSON:
            audit_line_json(b, f[i].key, f[i].j);
            break;
        case F_OBJ:
            audit_line_object_begin(b, f[i].key);
            break;
        case F_END:
            audit_line_object_end(b);
            break;
        }
    }
    return audit_line_end(b, oversized);
}

static char *file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *len = (size_t)sz;
    return buf;
}

/*
 * Appends each event to trail `tree` as a JSON tree (audit_trail_append) and to trail `direct`
 * through the writer, all in one batch; an event the writer hands back as oversized goes to
 * `direct` as a tree, as the pipeline does. Returns how many were handed back.
 */
static size_t write_both(audit_trail *tree, audit_trail *direct, audit_batch *b, const struct field *f,
                         size_t n)
{
    json_t *ev = fields_tree(f, n);
    assert_int_equal(audit_trail_append(tree, ev), COFFER_OK);
    json_decref(ev);
    bool oversized = true;
    size_t before = audit_batch_count(b);
    assert_int_equal(fields_write(b, f, n, &oversized), COFFER_OK);
    if (!oversized) {
        assert_int_equal(audit_batch_count(b), before + 1);
        return 0;
    }
    assert_int_equal(audit_batch_count(b), before);
    assert_int_equal(audit_trail_write_batch(direct, b), COFFER_OK); /* keep the order */
    ev = fields_tree(f, n);
    assert_int_equal(audit_trail_append(direct, ev), COFFER_OK);
    json_decref(ev);
    return 1;
}

static void assert_same_trails(const char *a, const char *b)
{
    size_t la, lb;
    char *x = file_bytes(file_path(a, 1), &la);
    char *y = file_bytes(file_path(b, 1), &lb);
    for (size_t i = 0; i < la && i < lb; i++) {
        if (x[i] != y[i]) {
            fail_msg("trails differ at byte %zu: %.80s | %.80s", i, x + (i > 40 ? i - 40 : 0),
                     y + (i > 40 ? i - 40 : 0));
        }
    }
    assert_int_equal(la, lb);
    free(x);
    free(y);
}

/* Same bytes as the tree path for tricky values: unicode, control characters, escapes, cuts at
 * a UTF-8 boundary, bytes that are not UTF-8, nested long strings kept, members omitted. */
static void test_line_writer_same_bytes(void **state)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    audit_trail *ta = NULL, *tb = NULL;
    audit_batch *b = NULL;
    assert_int_equal(audit_trail_open(da, &ta), COFFER_OK);
    assert_int_equal(audit_trail_open(db, &tb), COFFER_OK);
    assert_int_equal(audit_batch_new(&b), COFFER_OK);

    /* 3000 bytes of 2-byte characters: the cut falls inside one (keep backs off a byte). */
    char *eacute = malloc(3001);
    for (int i = 0; i < 3000; i += 2) {
        eacute[i] = '\xc3';
        eacute[i + 1] = '\xa9';
    }
    eacute[3000] = '\0';
    /* 4-byte characters after one ASCII byte, and a long string of escapes. */
    char *emoji = malloc(4002);
    emoji[0] = 'a';
    for (int i = 1; i < 4001; i += 4) {
        memcpy(emoji + i, "\xf0\x9f\x94\x91", 4);
    }
    emoji[4001] = '\0';
    char *ctl = malloc(2001);
    for (int i = 0; i < 2000; i++) {
        ctl[i] = (char)(1 + i % 40); /* control characters, '"' (34) and '\'' among them */
    }
    ctl[2000] = '\0';
    char *plain = malloc(1100);
    memset(plain, 'x', 1099);
    plain[1099] = '\0';
    char exact[AUDIT_MAX_STRING_BYTES + 1];
    memset(exact, 'e', AUDIT_MAX_STRING_BYTES);
    exact[AUDIT_MAX_STRING_BYTES] = '\0';

    json_t *params = json_pack("{s:s,s:{s:s,s:s},s:[i,f,b,n],s:s}", "keyId", "alias/\xe2\x82\xac-\"q\"\\/",
                               "encryptionContext", "tab", "a\tb\nc\r\x01\x1f\x7f", "long", plain, "list",
                               -42, 1.5, 1, "plain", eacute);
    json_t *resources = json_pack("[{s:s,s:s}]", "accountId", "111122223333", "type", "AWS::KMS::Key");
    struct field typical[] = {
        FSTR("eventVersion", "1.08"),
        FOBJ("userIdentity"),
        FLOSSY("type", "IAMUser"),
        FLOSSY("arn", plain), /* nested: not cut */
        FLOSSY("accessKeyId", "AKIA\xff\xfe"),
        FEND,
        FSTR("eventTime", "2026-12-05T21:00:00Z"),
        FLOSSY("eventName", "Enc\xc3\x28rypt"),
        FLOSSY("userAgent", eacute),
        FLOSSY("errorMessage", emoji),
        FLOSSY("sourceIPAddress", ctl),
        FLOSSY("exact", exact),
        FLOSSY("overlong", "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe0\x80\xaf"),
        FLOSSY("unicode", "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\x91 \xc2\x80 \xef\xbf\xbf"),
        FJSON("requestParameters", params),
        FJSON("responseElements", NULL),
        FBOOL("readOnly", false),
        FJSON("resources", resources),
        FBOOL("managementEvent", true),
        FOBJ("tlsDetails"),
        FSTR("clientProvidedHostHeader", ""),
        FEND,
        FOBJ("empty"),
        FEND,
        FLOSSY("odd \"key\"\\\x01", "v"), /* a key that needs escapes */
    };
    assert_int_equal(write_both(ta, tb, b, typical, sizeof(typical) / sizeof(typical[0])), 0);
    struct field none[] = {FJSON("x", NULL)};
    assert_int_equal(write_both(ta, tb, b, none, 0), 0); /* {} */

    /* Random bytes, mostly outside ASCII: valid or not, lossy values match jansson's test. */
    srand(20261205);
    char rnd[64][40];
    struct field random_fields[64];
    for (int i = 0; i < 64; i++) {
        size_t len = (size_t)(rand() % 39);
        for (size_t k = 0; k < len; k++) {
            int r = rand() % 4;
            rnd[i][k] = (char)(r == 0   ? 0x20 + rand() % 95
                               : r == 1 ? 0x80 + rand() % 64
                                        : 0xc0 + rand() % 64);
        }
        rnd[i][len] = '\0';
        random_fields[i] = (struct field){.kind = F_LOSSY, .s = rnd[i]};
    }
    char keys[64][8];
    for (int i = 0; i < 64; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        random_fields[i].key = keys[i];
    }
    assert_int_equal(write_both(ta, tb, b, random_fields, 64), 0);

    /* Over AUDIT_MAX_FIELD_BYTES: handed back for the tree path, which omits the member. */
    json_t *ops = json_array();
    for (int i = 0; i < 20000; i++) {
        json_array_append_new(ops, json_string("Decrypt"));
    }
    json_t *big = json_pack("{s:o}", "operations", ops);
    struct field oversized[] = {
        FSTR("eventName", "Big"),
        FJSON("requestParameters", big),
        FLOSSY("userAgent", plain),
    };
    assert_int_equal(write_both(ta, tb, b, oversized, 3), 1);
    assert_int_equal(write_both(ta, tb, b, typical, sizeof(typical) / sizeof(typical[0])), 0);

    assert_int_equal(audit_batch_count(b), 1); /* the batch was written before the oversized one */
    assert_int_equal(audit_trail_write_batch(tb, b), COFFER_OK);
    assert_int_equal(audit_batch_count(b), 0);
    char ha[65], hb[65];
    audit_trail_head(ta, ha);
    audit_trail_head(tb, hb);
    assert_string_equal(ha, hb);
    audit_trail_close(ta);
    audit_trail_close(tb);
    assert_same_trails(da, db);
    verify_ok(db, 5, 1);

    json_decref(params);
    json_decref(resources);
    json_decref(big);
    free(eacute);
    free(emoji);
    free(ctl);
    free(plain);
    audit_batch_free(b);
    tmpdir_free(da);
    tmpdir_free(db);
}

/* An event the writer cannot complete leaves nothing in the batch; the batch goes on. */
static void test_line_writer_incomplete(void **state)
{
    audit_batch *b = NULL;
    bool oversized = true;
    assert_int_equal(audit_batch_new(&b), COFFER_OK);
    audit_line_begin(b);
    audit_line_string(b, "eventName", "Encrypt", false);
    audit_line_string(b, "awsRegion", "\xff", false); /* strict: not UTF-8 */
    assert_int_not_equal(audit_line_end(b, &oversized), COFFER_OK);
    assert_int_equal(audit_batch_count(b), 0);
    audit_line_begin(b);
    audit_line_string(b, "eventName", NULL, true);
    assert_int_not_equal(audit_line_end(b, &oversized), COFFER_OK);
    audit_line_begin(b);
    audit_line_string(b, "eventName", "Encrypt", false);
    audit_line_fail(b);
    assert_int_not_equal(audit_line_end(b, &oversized), COFFER_OK);
    audit_line_begin(b);
    audit_line_object_begin(b, "userIdentity");
    assert_int_not_equal(audit_line_end(b, &oversized), COFFER_OK); /* object left open */
    assert_int_equal(audit_batch_count(b), 0);
    audit_line_begin(b);
    audit_line_string(b, "eventName", "Encrypt", false);
    assert_int_equal(audit_line_end(b, &oversized), COFFER_OK);
    assert_false(oversized);
    assert_int_equal(audit_batch_count(b), 1);

    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    assert_int_equal(audit_trail_write_batch(t, b), COFFER_OK);
    audit_trail_close(t);
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    assert_int_equal(l.n, 1);
    assert_non_null(strstr(l.line[0], "\"eventName\":\"Encrypt\"}\n"));
    free(l.buf);
    verify_ok(dir, 1, 1);
    audit_batch_free(b);
    tmpdir_free(dir);
}

/* A batch chains its lines after the events written one by one, and across rotations; a batch
 * that cannot be written leaves the head and the file as they were. */
static void test_batch_chain_and_failure(void **state)
{
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    audit_batch *b = NULL;
    struct audit_trail_options o = {.rotate_bytes = 4096};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    assert_int_equal(audit_batch_new(&b), COFFER_OK);
    assert_int_equal(audit_trail_write_batch(t, b), COFFER_OK); /* empty: nothing */
    append_n(t, 0, 2);
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 5; i++) {
            bool oversized;
            audit_line_begin(b);
            audit_line_string(b, "eventName", "Encrypt", false);
            audit_line_bool(b, "readOnly", i % 2 == 0);
            assert_int_equal(audit_line_end(b, &oversized), COFFER_OK);
        }
        assert_int_equal(audit_trail_write_batch(t, b), COFFER_OK);
        append_n(t, round * 10, 1);
    }
    audit_trail_close(t);
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_OK);
    assert_int_equal(r.events, 2 + 6 * 6);
    assert_true(r.files > 1);
    tmpdir_free(dir);

    if (access("/dev/full", W_OK) != 0) {
        audit_batch_free(b);
        return;
    }
    dir = tmpdir_new();
    assert_int_equal(symlink("/dev/full", file_path(dir, 1)), 0);
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    char before[65], after[65];
    audit_trail_head(t, before);
    for (int i = 0; i < 3; i++) {
        bool oversized;
        audit_line_begin(b);
        audit_line_string(b, "eventName", "Encrypt", false);
        assert_int_equal(audit_line_end(b, &oversized), COFFER_OK);
    }
    assert_int_equal(audit_trail_write_batch(t, b), COFFER_ERR_AUDIT);
    assert_int_equal(audit_batch_count(b), 0); /* emptied either way */
    audit_trail_head(t, after);
    assert_string_equal(before, after);
    audit_trail_close(t);
    tmpdir_free(dir);
    audit_batch_free(b);
}

/* Cutting the last events still verifies on its own; against an anchor it is a break. */
static void test_verify_anchor_catches_truncation(void **state)
{
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    append_n(t, 0, 5);
    char anchor[AUDIT_HASH_HEX_LEN + 1];
    audit_trail_head(t, anchor);
    append_n(t, 5, 2);
    audit_trail_close(t);
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_anchored(dir, anchor, NULL, &r), COFFER_OK);
    assert_int_equal(r.events, 7);
    assert_int_equal(audit_verify_dir_anchored(dir, "abc", NULL, &r), COFFER_ERR_USAGE);

    /* Drop the last three lines (the anchored event among them). */
    struct lines l;
    lines_read(file_path(dir, 1), &l);
    size_t keep = 0;
    for (size_t i = 0; i < 4; i++) {
        keep += l.len[i];
    }
    free(l.buf);
    assert_int_equal(truncate(file_path(dir, 1), (off_t)keep), 0);
    verify_ok(dir, 4, 1); /* the chain alone cannot tell */
    assert_int_equal(audit_verify_dir_anchored(dir, anchor, NULL, &r), COFFER_ERR_AUDIT);
    tmpdir_free(dir);
}

static void test_verify_missing_dir(void **state)
{
    assert_int_equal(audit_verify_dir("/nonexistent-coffer-trail", NULL), COFFER_ERR_AUDIT);
    char *dir = tmpdir_new();
    verify_ok(dir, 0, 0); /* an empty directory: nothing to check */
    /* Files that are not trail files are ignored. */
    FILE *f = fopen(file_path(dir, 0), "w");
    fputs("garbage\n", f);
    fclose(f);
    char other[512];
    snprintf(other, sizeof(other), "%s/trail-1.jsonl.bak", dir);
    f = fopen(other, "w");
    fputs("garbage\n", f);
    fclose(f);
    verify_ok(dir, 0, 0);
    tmpdir_free(dir);
}

/* ---------------------------------------------------------------- signed digests */

static crypto_pkey *sign_key;  /* one RSA-2048 pair for every digest test (generation is slow) */
static crypto_pkey *other_key; /* someone else's: a forger's, or a replaced pair */

#define NODE "node-a"

static void signed_open(const char *dir, const crypto_pkey *key, unsigned period_ms, audit_trail **t)
{
    struct audit_trail_options o = {.node_id = NODE, .sign_key = key, .period_ms = period_ms};
    assert_int_equal(audit_trail_open_ex(dir, &o, t), COFFER_OK);
}

static char *digest_dir(const char *dir)
{
    static char p[512];
    snprintf(p, sizeof(p), "%s/digest", dir);
    return p;
}

/* The digest file names, sorted; returns how many (at most 64). */
static size_t digest_list(const char *dir, char names[64][80])
{
    struct dirent **ents = NULL;
    int n = scandir(digest_dir(dir), &ents, NULL, alphasort);
    assert_true(n >= 0);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(ents[i]->d_name);
        if (len > 5 && strcmp(ents[i]->d_name + len - 5, ".json") == 0 && k < 64) {
            snprintf(names[k++], 80, "%s", ents[i]->d_name);
        }
        free(ents[i]);
    }
    free(ents);
    return k;
}

static json_t *digest_load(const char *dir, const char *name)
{
    char p[8192];
    snprintf(p, sizeof(p), "%s/%s", digest_dir(dir), name);
    json_t *j = json_load_file(p, 0, NULL);
    assert_non_null(j);
    return j;
}

static coffer_err verify_digests(const char *dir, const crypto_pkey *key, struct audit_digest_result *r)
{
    const crypto_pkey *keys[1] = {key};
    return audit_verify_digests(dir, keys, key ? 1 : 0, 0, INT64_MAX,
                                getenv("AUDIT_TEST_REPORT") ? stderr : NULL, r);
}

/*
 * Three files, each closed by a digest, then a digest with nothing new, then a clean close
 * with two more events: five digests, four files, every event of the node.
 */
static void build_signed_trail(const char *dir)
{
    audit_trail *t = NULL;
    signed_open(dir, sign_key, 3600000, &t);
    append_n(t, 0, 4);
    assert_int_equal(audit_trail_digest(t), COFFER_OK);
    append_n(t, 4, 3);
    assert_int_equal(audit_trail_digest(t), COFFER_OK);
    append_n(t, 7, 3);
    assert_int_equal(audit_trail_digest(t), COFFER_OK);
    assert_int_equal(audit_trail_digest(t), COFFER_OK); /* a period without a new file */
    append_n(t, 10, 2);
    audit_trail_close(t); /* closes trail-000004 and writes the final digest */
}

static void test_digest_chain(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    build_signed_trail(dir);
    char names[64][80];
    assert_int_equal(digest_list(dir, names), 5);
    size_t expect_files[5] = {1, 1, 1, 0, 1};
    char prev_hash[AUDIT_HASH_HEX_LEN + 1] = "";
    for (size_t i = 0; i < 5; i++) {
        json_t *d = digest_load(dir, names[i]);
        assert_string_equal(json_string_value(json_object_get(d, "nodeId")), NODE);
        assert_string_equal(json_string_value(json_object_get(d, "digestSignatureAlgorithm")),
                            "SHA256withRSA");
        assert_string_equal(json_string_value(json_object_get(d, "digestFileName")), names[i]);
        json_t *files = json_object_get(d, "logFiles");
        assert_int_equal(json_array_size(files), expect_files[i]);
        if (i == 0) {
            assert_true(json_is_null(json_object_get(d, "previousDigestHashValue")));
        } else {
            assert_string_equal(json_string_value(json_object_get(d, "previousDigestFileName")),
                                names[i - 1]);
            assert_string_equal(json_string_value(json_object_get(d, "previousDigestHashValue")), prev_hash);
        }
        assert_int_equal(json_is_true(json_object_get(d, "finalDigest")), i == 4);
        if (i == 0) {
            json_t *f = json_array_get(files, 0);
            assert_string_equal(json_string_value(json_object_get(f, "fileName")), "trail-000001.jsonl");
            assert_int_equal(json_integer_value(json_object_get(f, "events")), 4);
            assert_string_equal(json_string_value(json_object_get(f, "oldestEventTime")),
                                "2026-11-23T09:00:00Z");
            assert_string_equal(json_string_value(json_object_get(f, "previousEventHash")),
                                "0000000000000000000000000000000000000000000000000000000000000000");
        }
        json_decref(d);
        /* The next digest names this one by the SHA-256 of its bytes. */
        char p[8192];
        snprintf(p, sizeof(p), "%s/%s", digest_dir(dir), names[i]);
        struct lines l;
        lines_read(p, &l);
        size_t total = 0;
        for (size_t k = 0; k < l.n; k++) {
            total += l.len[k];
        }
        uint8_t h[CRYPTO_SHA256_LEN];
        crypto_sha256(l.buf, total, h);
        coffer_hex_encode(h, sizeof(h), prev_hash);
        free(l.buf);
    }
    /* Every event names the node. */
    struct lines l;
    lines_read(file_path(dir, 2), &l);
    assert_int_equal(l.n, 3);
    assert_non_null(strstr(l.line[0], "\"nodeId\":\"" NODE "\"}"));
    free(l.buf);

    struct audit_digest_result r;
    assert_int_equal(verify_digests(dir, sign_key, &r), COFFER_OK);
    assert_int_equal(r.digests_valid, 5);
    assert_int_equal(r.files_valid, 4);
    assert_int_equal(r.files_undigested, 0);
    assert_true(r.chain_ok);
    assert_string_equal(r.node_id, NODE);
    /* Without a key given, the published one is used. */
    assert_int_equal(verify_digests(dir, NULL, &r), COFFER_OK);
    /* A time range after everything: nothing to report. */
    const crypto_pkey *keys[1] = {sign_key};
    int64_t future = audit_time_parse("2999-01-01T00:00:00Z");
    assert_int_equal(audit_verify_digests(dir, keys, 1, future, INT64_MAX, NULL, &r), COFFER_OK);
    assert_int_equal(r.digests_valid, 0);
    assert_int_equal(r.files_valid, 0);
    assert_int_equal(audit_verify_digests(dir, keys, 1, 0, future, NULL, &r), COFFER_OK);
    assert_int_equal(r.digests_valid, 5);

    /* Reopened: the closed file stays closed, the chain of digests and events goes on. */
    audit_trail *t = NULL;
    signed_open(dir, sign_key, 3600000, &t);
    append_n(t, 12, 1);
    audit_trail_close(t);
    assert_int_equal(access(file_path(dir, 5), F_OK), 0);
    assert_int_equal(digest_list(dir, names), 6);
    json_t *d = digest_load(dir, names[5]);
    assert_string_equal(json_string_value(json_object_get(d, "previousDigestFileName")), names[4]);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(d, "logFiles"), 0), "fileName")),
        "trail-000005.jsonl");
    json_decref(d);
    assert_int_equal(verify_digests(dir, sign_key, &r), COFFER_OK);
    assert_int_equal(r.files_valid, 5);
    verify_ok(dir, 13, 5);

    /* One directory, one node: its id is kept, another one is refused. */
    char node[AUDIT_NODE_ID_MAX + 1];
    bool found = false;
    assert_int_equal(audit_trail_recorded_node(dir, node, &found), COFFER_OK);
    assert_true(found);
    assert_string_equal(node, NODE);
    struct audit_trail_options o = {.node_id = "node-z", .sign_key = sign_key};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_ERR_CONFIG);
    assert_null(t);
    assert_int_equal(verify_digests(dir, sign_key, &r), COFFER_OK); /* and left nothing behind */
    tmpdir_free(dir);
}

/* The writer's thread closes the file and writes a digest at every wall-clock period. */
static void test_digest_rotation_by_period(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    signed_open(dir, sign_key, 200, &t);
    append_n(t, 0, 2);
    usleep(450 * 1000);
    append_n(t, 2, 2);
    usleep(450 * 1000);
    audit_trail_close(t);
    char names[64][80];
    size_t n = digest_list(dir, names);
    assert_true(n >= 4); /* at least two boundaries passed, then the final one */
    assert_int_equal(access(file_path(dir, 2), F_OK), 0); /* the first file was closed by the period */
    struct audit_digest_result r;
    assert_int_equal(verify_digests(dir, sign_key, &r), COFFER_OK);
    assert_int_equal(r.digests_valid, n);
    assert_true(r.files_valid >= 2);
    assert_int_equal(r.files_undigested, 0);
    verify_ok(dir, 4, r.files_valid);
    tmpdir_free(dir);
}

static void expect_invalid(const char *dir, const crypto_pkey *key, struct audit_digest_result *r)
{
    assert_int_equal(verify_digests(dir, key, r), COFFER_ERR_AUDIT);
}

static void test_digest_tamper_files(void **state)
{
    (void)state;
    struct audit_digest_result r;
    struct lines l;

    /* An event edited: its file no longer has the digest's hash. */
    char *dir = tmpdir_new();
    build_signed_trail(dir);
    lines_read(file_path(dir, 2), &l);
    char *p = strstr(l.line[1], "Encrypt");
    assert_non_null(p);
    p[0] = 'D';
    lines_write(file_path(dir, 2), &l);
    free(l.buf);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.files_modified, 1);
    assert_int_equal(r.files_valid, 3);
    assert_int_equal(r.digests_valid, 5);
    tmpdir_free(dir);

    /* A file deleted. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    assert_int_equal(unlink(file_path(dir, 3)), 0);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.files_deleted, 1);
    assert_false(r.chain_ok);
    tmpdir_free(dir);

    /* The newest files cut: the last one truncated, the chain alone would not tell. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    lines_read(file_path(dir, 4), &l);
    assert_int_equal(truncate(file_path(dir, 4), (off_t)l.len[0]), 0);
    free(l.buf);
    verify_ok(dir, 11, 4);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.files_modified, 1);
    assert_true(r.chain_ok);
    tmpdir_free(dir);

    /* Events reordered inside a file. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    lines_read(file_path(dir, 1), &l);
    char *l0 = l.line[0];
    size_t n0 = l.len[0];
    l.line[0] = l.line[1];
    l.len[0] = l.len[1];
    l.line[1] = l0;
    l.len[1] = n0;
    lines_write(file_path(dir, 1), &l);
    free(l.buf);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.files_modified, 1);
    assert_false(r.chain_ok);
    tmpdir_free(dir);

    /* A file slipped in with a number a digest covered. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    char from[8192];
    snprintf(from, sizeof(from), "%s", file_path(dir, 4));
    assert_int_equal(rename(from, file_path(dir, 7)), 0);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.files_deleted, 1);
    assert_int_equal(r.files_missing, 2); /* trail-000005 and -000006: a gap */
    tmpdir_free(dir);
}

/* Rewrites digest `name` with `edit` applied to its JSON, keeping its signature file. */
static void digest_rewrite(const char *dir, const char *name, const char *key, json_t *value)
{
    json_t *d = digest_load(dir, name);
    assert_int_equal(json_object_set_new(d, key, value), 0);
    char p[8192];
    snprintf(p, sizeof(p), "%s/%s", digest_dir(dir), name);
    assert_int_equal(json_dump_file(d, p, JSON_INDENT(2)), 0);
    json_decref(d);
}

static void test_digest_tamper_digests(void **state)
{
    (void)state;
    struct audit_digest_result r;
    char names[64][80], p[8192];

    /* An edited file and its digest rewritten to match, without the key: the signature fails. */
    char *dir = tmpdir_new();
    build_signed_trail(dir);
    assert_int_equal(digest_list(dir, names), 5);
    FILE *f = fopen(file_path(dir, 1), "ab");
    fputs("{\"forged\":true}\n", f);
    fclose(f);
    json_t *d = digest_load(dir, names[0]);
    json_t *entry = json_array_get(json_object_get(d, "logFiles"), 0);
    json_decref(d);
    (void)entry;
    digest_rewrite(dir, names[0], "oldestEventTime", json_string("1999-01-01T00:00:00Z"));
    expect_invalid(dir, sign_key, &r);
    assert_true(r.digests_invalid >= 1);
    tmpdir_free(dir);

    /* A digest deleted from the middle: the next one names it. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    assert_int_equal(digest_list(dir, names), 5);
    snprintf(p, sizeof(p), "%s/%s", digest_dir(dir), names[2]);
    assert_int_equal(unlink(p), 0);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.digests_missing, 1);
    assert_int_equal(r.files_missing, 1); /* the file only it listed */
    tmpdir_free(dir);

    /* A digest renamed: its signature binds its name. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    assert_int_equal(digest_list(dir, names), 5);
    char to[8192], from_sig[8192], to_sig[8192];
    snprintf(p, sizeof(p), "%s/%s", digest_dir(dir), names[4]);
    snprintf(to, sizeof(to), "%s/digest-29991231T000000.000Z.json", digest_dir(dir));
    snprintf(from_sig, sizeof(from_sig), "%.*s.sig", (int)(strlen(p) - 5), p);
    snprintf(to_sig, sizeof(to_sig), "%s/digest-29991231T000000.000Z.sig", digest_dir(dir));
    assert_int_equal(rename(p, to), 0);
    assert_int_equal(rename(from_sig, to_sig), 0);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.digests_invalid, 1);
    tmpdir_free(dir);

    /* Its signature file removed. */
    dir = tmpdir_new();
    build_signed_trail(dir);
    assert_int_equal(digest_list(dir, names), 5);
    snprintf(p, sizeof(p), "%s/%.*s.sig", digest_dir(dir), (int)(strlen(names[1]) - 5), names[1]);
    assert_int_equal(unlink(p), 0);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.digests_invalid, 2); /* it, and the next one that links to its signature */
    tmpdir_free(dir);
}

/*
 * Someone with write access but without the sealed key replaces the key pair: a whole trail
 * signed by another key, its public key published in the directory. Against the directory's
 * own key it validates; against the key kept elsewhere nothing does.
 */
static void test_digest_replaced_key(void **state)
{
    (void)state;
    struct audit_digest_result r;
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    signed_open(dir, other_key, 3600000, &t);
    append_n(t, 0, 3);
    assert_int_equal(audit_trail_digest(t), COFFER_OK);
    audit_trail_close(t);
    assert_int_equal(verify_digests(dir, NULL, &r), COFFER_OK);
    expect_invalid(dir, sign_key, &r);
    assert_int_equal(r.digests_valid, 0);
    assert_int_equal(r.digests_invalid, 2);
    assert_int_equal(r.files_missing, 1); /* no valid digest lists trail-000001 */
    tmpdir_free(dir);
}

/* Events of another node in this node's trail are reported. */
static void test_digest_other_node_events(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    struct audit_trail_options o = {.node_id = "node-b"};
    write_trail(dir, 2, &o);
    audit_trail *t = NULL;
    signed_open(dir, sign_key, 3600000, &t);
    audit_trail_close(t);
    struct audit_digest_result r;
    assert_int_equal(verify_digests(dir, sign_key, &r), COFFER_ERR_AUDIT);
    assert_false(r.chain_ok);
    assert_non_null(strstr(coffer_last_message(), NODE));
    tmpdir_free(dir);
}

static void test_digest_misc(void **state)
{
    (void)state;
    coffer_buf pem = COFFER_BUF_INIT;
    crypto_pkey *k = NULL;
    assert_int_equal(audit_public_key_pem(sign_key, &pem), COFFER_OK);
    assert_non_null(strstr((const char *)pem.data, "-----BEGIN PUBLIC KEY-----\n"));
    assert_int_equal(audit_public_key_from_pem((const char *)pem.data, pem.len, &k), COFFER_OK);
    crypto_pkey_free(k);
    assert_int_not_equal(audit_public_key_from_pem("garbage", 7, &k), COFFER_OK);
    assert_null(k);
    coffer_buf_free(&pem);

    assert_int_equal(audit_time_parse("2026-12-06T05:00:00Z"), 1796533200000LL);
    assert_int_equal(audit_time_parse("2026-12-06T05:00:00.25Z"), 1796533200250LL);
    assert_int_equal(audit_time_parse("2026-12-06T05:00:00"), -1);
    assert_int_equal(audit_time_parse("2026-13-06T05:00:00Z"), -1);
    assert_int_equal(audit_time_parse("x"), -1);

    assert_true(audit_node_id_valid("host-1.a_b"));
    assert_false(audit_node_id_valid(""));
    assert_false(audit_node_id_valid("a/b"));
    assert_false(
        audit_node_id_valid("0123456789012345678901234567890123456789012345678901234567890123456789"));

    /* Digests need a node id; a bad one is refused; without a key there is nothing to digest. */
    char *dir = tmpdir_new();
    audit_trail *t = NULL;
    struct audit_trail_options o = {.sign_key = sign_key};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_ERR_USAGE);
    o.node_id = "bad id";
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_ERR_CONFIG);
    assert_int_equal(audit_trail_open(dir, &t), COFFER_OK);
    assert_int_equal(audit_trail_digest(t), COFFER_ERR_USAGE);
    assert_null(audit_trail_node_id(t));
    audit_trail_close(t);
    tmpdir_free(dir);
}

/* ---------------------------------------------------------------- encrypted files */

#define ENC_ARN "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"

/*
 * A stand-in for KMS: the "wrapped" key is base64 of file name || key, so the test can unwrap
 * it and check the encryption context; like an in-process KMS call it records its own event
 * in the trail it serves, from inside data_key.
 */
struct fake_kms {
    audit_trail *t;
    unsigned calls;
    bool fail;
};

static coffer_err fake_data_key(void *ctx, const char *file_name, struct audit_data_key *out)
{
    struct fake_kms *k = ctx;
    k->calls++;
    if (k->t != NULL) {
        json_t *ev = json_pack("{s:s, s:s, s:{s:s}}", "eventName", "GenerateDataKey", "eventTime",
                               "2026-11-23T09:00:00Z", "requestParameters", "file", file_name);
        coffer_err rc = audit_trail_append(k->t, ev);
        json_decref(ev);
        if (rc != COFFER_OK) {
            return rc;
        }
    }
    if (k->fail) {
        return coffer_fail(COFFER_ERR_AUDIT, "KMS is down");
    }
    uint8_t raw[64 + AUDIT_ENC_KEY_LEN];
    size_t nl = strlen(file_name);
    assert_true(nl <= 64);
    memcpy(raw, file_name, nl);
    assert_int_equal(crypto_random(raw + nl, AUDIT_ENC_KEY_LEN), COFFER_OK);
    assert_int_equal(coffer_buf_append(&out->key, raw + nl, AUDIT_ENC_KEY_LEN), COFFER_OK);
    coffer_buf b64 = COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_encode(coffer_cursor_from(raw, nl + AUDIT_ENC_KEY_LEN), &b64), COFFER_OK);
    assert_int_equal(coffer_buf_nul_terminate(&b64), COFFER_OK);
    out->wrapped_b64 = strdup((const char *)b64.data);
    coffer_buf_free(&b64);
    snprintf(out->key_arn, sizeof(out->key_arn), "%s", ENC_ARN);
    return COFFER_OK;
}

/* Unwraps a fake key, checking it was made for `file_name`. */
static void fake_unwrap(const char *wrapped_b64, const char *file_name, coffer_buf *key)
{
    coffer_buf raw = COFFER_BUF_INIT;
    assert_int_equal(coffer_b64_decode(coffer_cursor_from_str(wrapped_b64), &raw), COFFER_OK);
    size_t nl = strlen(file_name);
    assert_int_equal(raw.len, nl + AUDIT_ENC_KEY_LEN);
    assert_memory_equal(raw.data, file_name, nl);
    assert_int_equal(coffer_buf_append(key, raw.data + nl, AUDIT_ENC_KEY_LEN), COFFER_OK);
    coffer_buf_free(&raw);
}

/*
 * Decrypts every event of file `num` (which must be encrypted), checking each against the
 * file's key; returns how many events had eventName `name`.
 */
static unsigned decrypt_file(const char *dir, unsigned num, const char *name)
{
    char fname[32];
    snprintf(fname, sizeof(fname), "trail-%06u.jsonl", num);
    struct lines l;
    lines_read(file_path(dir, num), &l);
    assert_true(l.n >= 1);
    bool enc;
    char *wrapped, *arn;
    assert_int_equal(audit_enc_header((const uint8_t *)l.line[0], l.len[0] - 1, &enc, &wrapped, &arn),
                     COFFER_OK);
    assert_true(enc);
    assert_string_equal(arn, ENC_ARN);
    coffer_buf key = COFFER_SECRET_BUF_INIT;
    fake_unwrap(wrapped, fname, &key);
    unsigned hits = 0;
    for (size_t i = 1; i < l.n; i++) {
        coffer_buf plain = COFFER_SECRET_BUF_INIT;
        assert_int_equal(audit_enc_open_line(coffer_buf_cursor(&key), fname, (const uint8_t *)l.line[i],
                                             l.len[i] - 1, &plain),
                         COFFER_OK);
        json_t *ev = json_loadb((const char *)plain.data, plain.len, 0, NULL);
        assert_non_null(ev);
        assert_non_null(json_object_get(ev, AUDIT_HASH_FIELD));
        const char *en = json_string_value(json_object_get(ev, "eventName"));
        hits += en != NULL && strcmp(en, name) == 0;
        json_decref(ev);
        coffer_buf_free(&plain);
    }
    coffer_buf_free(&key);
    free(wrapped);
    free(arn);
    free(l.buf);
    return hits;
}

static bool file_has(const char *dir, unsigned num, const char *needle)
{
    struct lines l;
    lines_read(file_path(dir, num), &l);
    bool found = false;
    for (size_t i = 0; i < l.n && !found; i++) {
        found = memmem(l.line[i], l.len[i], needle, strlen(needle)) != NULL;
    }
    free(l.buf);
    return found;
}

static unsigned count_files(const char *dir)
{
    unsigned n = 0;
    while (access(file_path(dir, n + 1), F_OK) == 0) {
        n++;
    }
    return n;
}

/* One run: startup events in clear, then every event sealed, files rotating by size. */
static void enc_run(const char *dir, struct fake_kms *fk, unsigned *first_enc)
{
    audit_trail *t = NULL;
    struct audit_trail_options o = {
        .rotate_bytes = 4096, .node_id = NODE, .sign_key = sign_key, .period_ms = 3600000, .encrypted = true};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    fk->t = t;
    struct audit_key_source ks = {.data_key = fake_data_key, .ctx = fk};
    append_n(t, 0, 2); /* before KMS is up */
    assert_int_equal(audit_trail_start_encryption(t, &ks), COFFER_OK);
    *first_enc = count_files(dir);
    append_n(t, 100, 30);
    audit_batch *b = NULL;
    assert_int_equal(audit_batch_new(&b), COFFER_OK);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 4; i++) {
            bool oversized;
            audit_line_begin(b);
            audit_line_string(b, "eventName", "Decrypt", false);
            audit_line_string(b, AUDIT_NODE_FIELD, NODE, false);
            assert_int_equal(audit_line_end(b, &oversized), COFFER_OK);
        }
        assert_int_equal(audit_trail_write_batch(t, b), COFFER_OK);
    }
    audit_batch_free(b);
    assert_int_equal(audit_trail_digest(t), COFFER_OK);
    append_n(t, 200, 3);
    audit_trail_close(t);
    fk->t = NULL;
}

static void test_encrypted_trail_round_trip(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    struct fake_kms fk = {0};
    unsigned runs_first[2], runs_last[2];
    for (int run = 0; run < 2; run++) {
        enc_run(dir, &fk, &runs_first[run]);
        runs_last[run] = count_files(dir);
        /* The run's startup file is in clear: the start events and the first key's event. */
        assert_true(file_has(dir, runs_first[run] - 1, "\"eventName\":\"Encrypt\""));
        assert_true(file_has(dir, runs_first[run] - 1, "\"eventName\":\"GenerateDataKey\""));
    }
    assert_true(runs_last[0] - runs_first[0] >= 3); /* rotated by size, each file its own key */
    for (int run = 0; run < 2; run++) {
        unsigned enc = 0, dec = 0;
        for (unsigned f = runs_first[run]; f <= runs_last[run]; f++) {
            assert_false(file_has(dir, f, "eventName"));
            assert_false(file_has(dir, f, "req-"));
            enc += decrypt_file(dir, f, "Encrypt");
            dec += decrypt_file(dir, f, "Decrypt");
        }
        assert_int_equal(enc, 33);
        assert_int_equal(dec, 20);
    }
    /* Verification needs no key: the chain and the digests hold over the sealed lines. */
    struct audit_verify_result r;
    assert_int_equal(audit_verify_dir_ex(dir, NULL, &r), COFFER_OK);
    struct audit_digest_result dr;
    assert_int_equal(audit_verify_digests(dir, NULL, 0, 0, INT64_MAX, NULL, &dr), COFFER_OK);
    assert_int_equal(dr.files_modified + dr.files_missing + dr.digests_invalid, 0);
    tmpdir_free(dir);
}

static void test_encrypted_trail_tampered(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    struct fake_kms fk = {0};
    unsigned first;
    enc_run(dir, &fk, &first);
    char fname[32];
    snprintf(fname, sizeof(fname), "trail-%06u.jsonl", first);
    struct lines l, other;
    lines_read(file_path(dir, first), &l);
    lines_read(file_path(dir, first + 1), &other);
    assert_true(l.n >= 3 && other.n >= 2);
    bool enc;
    char *wrapped, *arn;
    assert_int_equal(audit_enc_header((const uint8_t *)l.line[0], l.len[0] - 1, &enc, &wrapped, &arn),
                     COFFER_OK);
    coffer_buf key = COFFER_SECRET_BUF_INIT, plain = COFFER_SECRET_BUF_INIT;
    fake_unwrap(wrapped, fname, &key);
    const uint8_t *line = (const uint8_t *)l.line[2];
    size_t len = l.len[2] - 1;
    assert_int_equal(audit_enc_open_line(coffer_buf_cursor(&key), fname, line, len, &plain), COFFER_OK);
    /* Under another file's name (the AAD), another key, or another place in the chain. */
    plain.len = 0;
    assert_int_equal(audit_enc_open_line(coffer_buf_cursor(&key), "trail-000099.jsonl", line, len, &plain),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    uint8_t wrong[AUDIT_ENC_KEY_LEN] = {0};
    assert_int_equal(audit_enc_open_line(coffer_cursor_from(wrong, sizeof(wrong)), fname, line, len, &plain),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    char *moved = malloc(len);
    memcpy(moved, line, len);
    memcpy(moved + strlen("{\"previousEventHash\":\""), l.line[1] + strlen("{\"previousEventHash\":\""), 64);
    assert_int_equal(audit_enc_open_line(coffer_buf_cursor(&key), fname, (uint8_t *)moved, len, &plain),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    free(moved);
    assert_int_equal(plain.len, 0);
    assert_int_equal(audit_enc_open_line(coffer_buf_cursor(&key), fname, (const uint8_t *)"{}", 2, &plain),
                     COFFER_ERR_AUDIT);
    /* One base64 character of the sealed event changed: it fails to open, and the chain breaks. */
    char *ct = memmem(l.line[2], l.len[2], "\"encryptedEvent\":\"", 18);
    assert_non_null(ct);
    ct += 18 + 20;
    *ct = *ct == 'A' ? 'B' : 'A';
    assert_int_equal(audit_enc_open_line(coffer_buf_cursor(&key), fname, line, len, &plain),
                     COFFER_ERR_INVALID_CIPHERTEXT);
    lines_write(file_path(dir, first), &l);
    verify_breaks_at(dir, fname, 4, "previousEventHash");
    coffer_buf_free(&key);
    coffer_buf_free(&plain);
    free(wrapped);
    free(arn);
    free(l.buf);
    free(other.buf);
    tmpdir_free(dir);
}

/* Without the next file's key the current file goes on, past its size and its period. */
static void test_encrypted_trail_waits_for_key(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    struct fake_kms fk = {0};
    audit_trail *t = NULL;
    struct audit_trail_options o = {
        .rotate_bytes = 2048, .node_id = NODE, .sign_key = sign_key, .encrypted = true};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    fk.t = t;
    struct audit_key_source ks = {.data_key = fake_data_key, .ctx = &fk};
    fk.fail = true;
    assert_int_equal(audit_trail_start_encryption(t, &ks), COFFER_ERR_AUDIT);
    fk.fail = false;
    assert_int_equal(audit_trail_start_encryption(t, &ks), COFFER_OK);
    unsigned files = count_files(dir);
    unsigned calls = fk.calls;
    fk.fail = true; /* the key fetched ahead is consumed by the first rotation, then none comes */
    append_n(t, 0, 30);
    assert_int_equal(count_files(dir), files + 1);
    assert_int_equal(fk.calls - calls, 1); /* one refusal, then no call until the retry time */
    assert_int_equal(audit_trail_digest(t), COFFER_OK);
    append_n(t, 30, 2);
    assert_int_equal(count_files(dir), files + 1);
    fk.fail = false;
    append_n(t, 32, 2);
    assert_int_equal(count_files(dir), files + 1);
    usleep(1100 * 1000);
    append_n(t, 34, 8); /* the key comes: the next events start the next file */
    assert_true(count_files(dir) > files + 1);
    fk.t = NULL;
    audit_trail_close(t);
    assert_int_equal(audit_verify_dir(dir, NULL), COFFER_OK);
    unsigned enc = 0;
    for (unsigned f = files; f <= count_files(dir); f++) {
        enc += decrypt_file(dir, f, "Encrypt");
    }
    assert_int_equal(enc, 42);
    tmpdir_free(dir);
}

struct enc_worker {
    audit_trail *t;
    int from;
};

static void *enc_worker_main(void *arg)
{
    struct enc_worker *w = arg;
    audit_batch *b = NULL;
    if (audit_batch_new(&b) != COFFER_OK) {
        return (void *)1;
    }
    for (int i = 0; i < 100; i++) {
        json_t *ev = make_event(w->from + i);
        coffer_err rc = audit_trail_append(w->t, ev);
        json_decref(ev);
        bool oversized;
        audit_line_begin(b);
        audit_line_string(b, "eventName", "Encrypt", false);
        if (rc != COFFER_OK || audit_line_end(b, &oversized) != COFFER_OK ||
            audit_trail_write_batch(w->t, b) != COFFER_OK) {
            audit_batch_free(b);
            return (void *)1;
        }
    }
    audit_batch_free(b);
    return NULL;
}

/* Threads appending while files rotate and keys are fetched ahead: one chain, every event sealed. */
static void test_encrypted_trail_concurrent(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    struct fake_kms fk = {0};
    audit_trail *t = NULL;
    struct audit_trail_options o = {.rotate_bytes = 8192, .encrypted = true};
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    fk.t = t;
    struct audit_key_source ks = {.data_key = fake_data_key, .ctx = &fk};
    assert_int_equal(audit_trail_start_encryption(t, &ks), COFFER_OK);
    unsigned first = count_files(dir);
    pthread_t th[4];
    struct enc_worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct enc_worker){.t = t, .from = i * 1000};
        assert_int_equal(pthread_create(&th[i], NULL, enc_worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_null(ret);
    }
    fk.t = NULL;
    audit_trail_close(t);
    assert_int_equal(audit_verify_dir(dir, NULL), COFFER_OK);
    unsigned n = count_files(dir), enc = 0;
    assert_true(n > first + 5);
    for (unsigned f = first; f <= n; f++) {
        assert_false(file_has(dir, f, "eventName"));
        enc += decrypt_file(dir, f, "Encrypt");
    }
    assert_int_equal(enc, 800);
    tmpdir_free(dir);
}

static int digest_setup(void **state)
{
    (void)state;
    return crypto_pkey_generate(CRYPTO_PKEY_RSA_2048, &sign_key) == COFFER_OK &&
                   crypto_pkey_generate(CRYPTO_PKEY_RSA_2048, &other_key) == COFFER_OK
               ? 0
               : -1;
}

static int digest_teardown(void **state)
{
    (void)state;
    crypto_pkey_free(sign_key);
    crypto_pkey_free(other_key);
    return 0;
}

int main(void)
{
    coffer_log_set_level(COFFER_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_format),
        cmocka_unit_test(test_empty_object_and_large_event),
        cmocka_unit_test(test_concurrent_appends),
        cmocka_unit_test(test_reopen_continues_chain),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_tamper_delete_line),
        cmocka_unit_test(test_tamper_edit_byte),
        cmocka_unit_test(test_tamper_edit_hash_field),
        cmocka_unit_test(test_tamper_reorder),
        cmocka_unit_test(test_tamper_truncated_tail),
        cmocka_unit_test(test_tamper_duplicate_key_and_non_object),
        cmocka_unit_test(test_tamper_missing_file),
        cmocka_unit_test(test_torn_tail_recovered_on_open),
        cmocka_unit_test(test_append_fails_on_full_device),
        cmocka_unit_test(test_append_fails_when_dir_removed),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_append_usage_errors),
        cmocka_unit_test(test_oversized_events_bounded),
        cmocka_unit_test(test_line_writer_same_bytes),
        cmocka_unit_test(test_line_writer_incomplete),
        cmocka_unit_test(test_batch_chain_and_failure),
        cmocka_unit_test(test_verify_anchor_catches_truncation),
        cmocka_unit_test(test_verify_missing_dir),
        cmocka_unit_test(test_digest_chain),
        cmocka_unit_test(test_digest_rotation_by_period),
        cmocka_unit_test(test_digest_tamper_files),
        cmocka_unit_test(test_digest_tamper_digests),
        cmocka_unit_test(test_digest_replaced_key),
        cmocka_unit_test(test_digest_other_node_events),
        cmocka_unit_test(test_digest_misc),
        cmocka_unit_test(test_encrypted_trail_round_trip),
        cmocka_unit_test(test_encrypted_trail_tampered),
        cmocka_unit_test(test_encrypted_trail_waits_for_key),
        cmocka_unit_test(test_encrypted_trail_concurrent),
    };
    return cmocka_run_group_tests(tests, digest_setup, digest_teardown);
}
