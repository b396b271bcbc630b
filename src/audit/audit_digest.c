/*
 * Signed digests of the audit trail, as CloudTrail's log file integrity validation does them.
 * The hash chain of the events (audit.c) shows an event removed or changed in the middle, but
 * it has no key: whoever can write the data dir can re-hash everything after a change, or cut
 * the end off. A digest closes that gap. Every period the trail writer closes its file and
 * writes DIR/digest/digest-<end time>.json listing each trail file closed since the previous
 * digest with the SHA-256 of its bytes; each digest names the previous one with its hash and
 * signature, and is signed with an RSA-2048 key the server holds under the seal. Without that
 * key nobody can produce a digest that verifies, so a file changed, removed or added after its
 * digest was written, a digest removed from the middle of the chain, or one rewritten, shows.
 *
 * The signature covers, as CloudTrail's does, a signing string rather than the JSON alone:
 *   digestEndTime \n digest file name \n nodeId \n hex SHA-256 of the digest bytes \n
 *   previousDigestSignature (or "null")
 * so a digest renamed, moved to another node's trail or detached from its predecessor fails.
 * The signature goes in a file beside the digest (CloudTrail keeps it in object metadata),
 * written first: a digest without its signature is a write that never finished.
 *
 * The verifier below reads everything as untrusted input; it reports rather than stops.
 */
#include "audit/audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit_internal.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

#define DIGEST_PREFIX "digest-"
#define DIGEST_JSON_SUFFIX ".json"
#define DIGEST_SIG_SUFFIX ".sig"
#define DIGEST_MAX_BYTES (16u << 20)           /* a digest lists at most a period's files */
#define DIGEST_SIG_MAX_HEX 2048                /* RSA-2048: 512 hex chars */
#define TRAIL_FILE_MAX_BYTES ((size_t)1 << 31) /* files rotate far below this */
#define EVENT_TIME_KEY "\"eventTime\":\""
#define HASH_ALGORITHM "SHA-256"
#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"

/* ---------------------------------------------------------------- small helpers */

bool audit_node_id_valid(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;
    if (n == 0 || n > AUDIT_NODE_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* The value of the `n` digits at s (all digits), or -1. */
static int digits_at(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int64_t audit_time_parse(const char *s)
{
    /* YYYY-MM-DDTHH:MM:SS, every position checked (no sign, no spaces sscanf would take). */
    if (s == NULL || strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':') {
        return -1;
    }
    int y = digits_at(s, 4), mo = digits_at(s + 5, 2), d = digits_at(s + 8, 2), h = digits_at(s + 11, 2);
    int mi = digits_at(s + 14, 2), sec = digits_at(s + 17, 2);
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
            }
        }
        if (digits == 0) {
            return -1;
        }
        for (; digits < 3; digits++) {
            ms *= 10;
        }
    }
    if (strcmp(p, "Z") != 0 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 60) {
        return -1;
    }
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return -1;
    }
    return (int64_t)t * 1000 + ms;
}

/* "digest-20261206T050000.000Z.json": names sort as their end times do. */
static void digest_name(int64_t end_ms, char out[AUDIT_DIGEST_NAME_MAX])
{
    time_t s = (time_t)(end_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, AUDIT_DIGEST_NAME_MAX, DIGEST_PREFIX "%04d%02d%02dT%02d%02d%02d.%03dZ" DIGEST_JSON_SUFFIX,
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(end_ms % 1000));
}

/* "digest-...json" -> "digest-...sig" into out. */
static void sig_name_of(const char *json_name, char *out, size_t n)
{
    size_t base = strlen(json_name) - (sizeof(DIGEST_JSON_SUFFIX) - 1);
    snprintf(out, n, "%.*s" DIGEST_SIG_SUFFIX, (int)base, json_name);
}

static bool is_digest_name(const char *name)
{
    size_t n = strlen(name);
    return n < AUDIT_DIGEST_NAME_MAX && n > sizeof(DIGEST_PREFIX) + sizeof(DIGEST_JSON_SUFFIX) &&
           strncmp(name, DIGEST_PREFIX, sizeof(DIGEST_PREFIX) - 1) == 0 &&
           strcmp(name + n - (sizeof(DIGEST_JSON_SUFFIX) - 1), DIGEST_JSON_SUFFIX) == 0 &&
           strchr(name, '/') == NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* The digest file names in `ddir`, sorted (oldest first). A missing directory is no digests. */
static coffer_err digest_names(const char *ddir, char ***out, size_t *count)
{
    coffer_err rc = COFFER_OK;
    char **names = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *count = 0;
    DIR *d = opendir(ddir);
    if (d == NULL) {
        return errno == ENOENT ? COFFER_OK
                               : coffer_fail(COFFER_ERR_AUDIT, "cannot read the digest directory");
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_digest_name(e->d_name)) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof(*nn));
            if (nn == NULL) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory listing digests");
            }
            names = nn;
            cap = ncap;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory listing digests");
        }
        n++;
    }
    if (n > 0) {
        qsort(names, n, sizeof(*names), cmp_names);
    }
    *out = names;
    *count = n;
    names = NULL;
    n = 0;
out:
    closedir(d);
    names_free(names, n);
    return rc;
}

/* Reads a whole file of at most `max` bytes. *absent: it does not exist (COFFER_OK, empty). */
static coffer_err read_all(const char *path, size_t max, coffer_buf *out, bool *absent)
{
    coffer_err rc = COFFER_OK;
    *absent = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *absent = true;
            return COFFER_OK;
        }
        return coffer_fail(COFFER_ERR_AUDIT, "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        FAIL_OUT(COFFER_ERR_AUDIT, "%s is not a regular file of at most %zu bytes", path, max);
    }
    TRY_OUT(coffer_buf_reserve(out, (size_t)st.st_size + 1));
    for (;;) {
        if (out->len > max) {
            FAIL_OUT(COFFER_ERR_AUDIT, "%s grew past %zu bytes", path, max);
        }
        TRY_OUT(coffer_buf_reserve(out, 65536));
        ssize_t r = read(fd, out->data + out->len, out->cap - out->len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            FAIL_OUT(COFFER_ERR_AUDIT, "cannot read %s", path);
        }
        if (r == 0) {
            break;
        }
        out->len += (size_t)r;
    }
out:
    close(fd);
    return rc;
}

/* Writes dir/name through a temporary file, fsync and rename: whole or not at all. */
static coffer_err write_atomic(const char *dir, const char *name, const void *p, size_t n)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    int a = snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    int b = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (a < 0 || (size_t)a >= sizeof(tmp) || b < 0 || (size_t)b >= sizeof(path)) {
        return coffer_fail(COFFER_ERR_AUDIT, "digest path too long");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("audit: cannot create %s: %s", tmp, strerror(errno));
        return coffer_fail(COFFER_ERR_AUDIT, "cannot write an audit digest");
    }
    ssize_t w = write(fd, p, n);
    bool ok = w == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        log_error("audit: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return coffer_fail(COFFER_ERR_AUDIT, "cannot write an audit digest");
    }
    return COFFER_OK;
}

/* dir/name into out; COFFER_ERR_AUDIT when it does not fit. */
static coffer_err join_path(char *out, size_t n, const char *dir, const char *name)
{
    int w = snprintf(out, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n) {
        return coffer_fail(COFFER_ERR_AUDIT, "audit path too long");
    }
    return COFFER_OK;
}

static void sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        log_warn("audit: cannot sync the directory %s: %s", dir, strerror(errno));
    }
    if (dfd >= 0) {
        close(dfd);
    }
}

static coffer_err digest_dir_path(const char *dir, char *out, size_t n)
{
    int w = snprintf(out, n, "%s/" AUDIT_DIGEST_SUBDIR, dir);
    if (w < 0 || (size_t)w >= n) {
        return coffer_fail(COFFER_ERR_AUDIT, "digest path too long");
    }
    return COFFER_OK;
}

static void sha256_hex(const void *p, size_t n, char out[AUDIT_HASH_HEX_LEN + 1])
{
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(p, n, h);
    coffer_hex_encode(h, sizeof(h), out);
}

/* Hex SHA-256 of the key's DER SubjectPublicKeyInfo: which key signed a digest. */
static coffer_err key_fingerprint(const crypto_pkey *k, char out[AUDIT_HASH_HEX_LEN + 1])
{
    coffer_buf der = COFFER_BUF_INIT;
    coffer_err rc = crypto_pkey_public_der(k, &der);
    if (rc == COFFER_OK) {
        sha256_hex(der.data, der.len, out);
    }
    coffer_buf_free(&der);
    return rc;
}

/* SHA-256 of the signing string (see the top of this file). */
static void signing_digest(const char *end_time, const char *name, const char *node_id, const char *hash_hex,
                           const char *prev_sig, uint8_t out[CRYPTO_SHA256_LEN], coffer_buf *scratch)
{
    coffer_buf_reset(scratch);
    if (coffer_buf_printf(scratch, "%s\n%s\n%s\n%s\n%s", end_time, name, node_id, hash_hex,
                          prev_sig != NULL ? prev_sig : "null") != COFFER_OK) {
        memset(out, 0, CRYPTO_SHA256_LEN); /* cannot verify against an all-zero digest */
        return;
    }
    crypto_sha256(scratch->data, scratch->len, out);
}

/* ---------------------------------------------------------------- public key */

coffer_err audit_public_key_pem(const crypto_pkey *k, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf der = COFFER_BUF_INIT, b64 = COFFER_BUF_INIT;
    TRY_OUT(crypto_pkey_public_der(k, &der));
    TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&der), &b64));
    TRY_OUT(coffer_buf_append_str(out, PEM_BEGIN "\n"));
    for (size_t i = 0; i < b64.len; i += 64) {
        size_t n = b64.len - i < 64 ? b64.len - i : 64;
        TRY_OUT(coffer_buf_append(out, b64.data + i, n));
        TRY_OUT(coffer_buf_append_u8(out, '\n'));
    }
    TRY_OUT(coffer_buf_append_str(out, PEM_END "\n"));
    TRY_OUT(coffer_buf_nul_terminate(out));
out:
    coffer_buf_free(&der);
    coffer_buf_free(&b64);
    return rc;
}

coffer_err audit_public_key_from_pem(const char *pem, size_t len, crypto_pkey **out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf b64 = COFFER_BUF_INIT, der = COFFER_BUF_INIT;
    *out = NULL;
    const char *end = pem + len;
    const char *p = memmem(pem, len, PEM_BEGIN, sizeof(PEM_BEGIN) - 1);
    const char *e = p != NULL ? memmem(p, (size_t)(end - p), PEM_END, sizeof(PEM_END) - 1) : NULL;
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "not a PEM public key");
    }
    for (p += sizeof(PEM_BEGIN) - 1; p < e; p++) {
        if (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t') {
            continue;
        }
        TRY_OUT(coffer_buf_append_u8(&b64, (uint8_t)*p));
    }
    if (coffer_b64_decode(coffer_buf_cursor(&b64), &der) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "not a PEM public key");
    }
    rc = crypto_pkey_from_public_der(CRYPTO_PKEY_RSA_2048, coffer_buf_cursor(&der), out);
out:
    coffer_buf_free(&b64);
    coffer_buf_free(&der);
    return rc;
}

coffer_err audit_public_key_publish(const char *dir, const crypto_pkey *key)
{
    coffer_err rc = COFFER_OK;
    coffer_buf pem = COFFER_BUF_INIT, have = COFFER_BUF_INIT;
    char path[PATH_MAX];
    bool absent;
    int w = snprintf(path, sizeof(path), "%s/" AUDIT_PUBLIC_KEY_FILE, dir);
    if (w < 0 || (size_t)w >= sizeof(path)) {
        return coffer_fail(COFFER_ERR_AUDIT, "public key path too long");
    }
    TRY_OUT(audit_public_key_pem(key, &pem));
    size_t n = pem.len; /* the NUL is past len */
    if (read_all(path, 65536, &have, &absent) == COFFER_OK && !absent && have.len == n &&
        memcmp(have.data, pem.data, n) == 0) {
        goto out;
    }
    if (!absent) {
        log_warn("audit: %s did not hold the digest signing key's public key: rewritten", path);
    }
    TRY_OUT(write_atomic(dir, AUDIT_PUBLIC_KEY_FILE, pem.data, n));
out:
    coffer_buf_free(&pem);
    coffer_buf_free(&have);
    return rc;
}

/* ---------------------------------------------------------------- one trail file, summarised */

struct file_summary {
    uint64_t size;
    uint64_t events;
    char hash[AUDIT_HASH_HEX_LEN + 1];       /* SHA-256 of the file's bytes */
    char first_prev[AUDIT_HASH_HEX_LEN + 1]; /* previousEventHash of its first event */
    char first[AUDIT_HASH_HEX_LEN + 1];      /* hash of its first event */
    char last[AUDIT_HASH_HEX_LEN + 1];       /* hash of its last event */
    char oldest[40], newest[40];             /* eventTime bounds ("" when none) */
};

/* The eventTime of one line (the trail's own member: written as a key, never escaped). */
static void line_time(const uint8_t *l, size_t n, char out[40])
{
    out[0] = '\0';
    const uint8_t *k = memmem(l, n, EVENT_TIME_KEY, sizeof(EVENT_TIME_KEY) - 1);
    if (k == NULL) {
        return;
    }
    const uint8_t *v = k + sizeof(EVENT_TIME_KEY) - 1;
    const uint8_t *q = memchr(v, '"', (size_t)(l + n - v));
    if (q == NULL || q - v >= 40) {
        return;
    }
    memcpy(out, v, (size_t)(q - v));
    out[q - v] = '\0';
}

static coffer_err summarize_file(const char *dir, unsigned num, struct file_summary *fs)
{
    coffer_err rc = COFFER_OK;
    coffer_buf data = COFFER_BUF_INIT;
    char path[PATH_MAX];
    bool absent;
    memset(fs, 0, sizeof(*fs));
    TRY(audit_file_path(dir, num, path, sizeof(path)));
    TRY_OUT(read_all(path, TRAIL_FILE_MAX_BYTES, &data, &absent));
    if (absent) {
        FAIL_OUT(COFFER_ERR_AUDIT, "trail file " AUDIT_FILE_FMT " is gone", num);
    }
    fs->size = data.len;
    sha256_hex(data.data, data.len, fs->hash);
    const uint8_t *p = data.data, *end = data.data + data.len;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        char when[40];
        sha256_hex(p, n, fs->last);
        if (fs->events == 0) {
            memcpy(fs->first, fs->last, sizeof(fs->first));
            if (n >= AUDIT_PREFIX_LEN && memcmp(p, AUDIT_PREFIX_HEAD, AUDIT_PREFIX_HEAD_LEN) == 0) {
                memcpy(fs->first_prev, p + AUDIT_PREFIX_HEAD_LEN, AUDIT_HASH_HEX_LEN);
            }
        }
        line_time(p, n, when);
        if (when[0] != '\0' && (fs->oldest[0] == '\0' || strcmp(when, fs->oldest) < 0)) {
            memcpy(fs->oldest, when, sizeof(when));
        }
        if (when[0] != '\0' && strcmp(when, fs->newest) > 0) {
            memcpy(fs->newest, when, sizeof(when));
        }
        fs->events++;
        p = nl != NULL ? nl + 1 : end;
    }
out:
    coffer_buf_free(&data);
    return rc;
}

static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

/* ---------------------------------------------------------------- writer */

void audit_digest_state_clean(struct audit_digest_state *st)
{
    free(st->prev_sig);
    memset(st, 0, sizeof(*st));
}

/* The highest trail file number a parsed digest lists (0 for none). */
static unsigned digest_last_file(const json_t *j)
{
    unsigned last = 0;
    json_t *files = json_object_get(j, "logFiles");
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f)
    {
        const char *name = json_string_value(json_object_get(f, "fileName"));
        unsigned v;
        if (name != NULL && sscanf(name, "trail-%u.jsonl", &v) == 1 && v > last) {
            last = v;
        }
    }
    return last;
}

coffer_err audit_digest_recover(const char *dir, int64_t now_ms, struct audit_digest_state *st)
{
    coffer_err rc = COFFER_OK;
    char ddir[PATH_MAX], path[PATH_MAX], sig_name[AUDIT_DIGEST_NAME_MAX + 8];
    char **names = NULL;
    size_t count = 0;
    coffer_buf data = COFFER_BUF_INIT, sig = COFFER_BUF_INIT;
    json_t *j = NULL;
    memset(st, 0, sizeof(*st));
    st->prev_end_ms = now_ms;
    TRY(digest_dir_path(dir, ddir, sizeof(ddir)));
    if (mkdir(ddir, 0700) != 0 && errno != EEXIST) {
        return coffer_fail(COFFER_ERR_AUDIT, "cannot create the digest directory");
    }
    TRY_OUT(digest_names(ddir, &names, &count));
    /* Newest first: the newest complete digest is what the next one links to; the newest one
     * that lists a file says where listing resumes. */
    for (size_t i = count; i > 0; i--) {
        bool absent;
        const char *name = names[i - 1];
        sig_name_of(name, sig_name, sizeof(sig_name));
        TRY_OUT(join_path(path, sizeof(path), ddir, sig_name));
        coffer_buf_reset(&sig);
        TRY_OUT(read_all(path, DIGEST_SIG_MAX_HEX + 2, &sig, &absent));
        if (absent) {
            /* The signature is written first: a digest without one was never written whole. */
            if (!st->have_prev) {
                log_warn("audit: digest %s has no signature; ignored", name);
            }
            continue;
        }
        TRY_OUT(join_path(path, sizeof(path), ddir, name));
        coffer_buf_reset(&data);
        TRY_OUT(read_all(path, DIGEST_MAX_BYTES, &data, &absent));
        json_decref(j);
        j = json_loadb((const char *)data.data, data.len, JSON_REJECT_DUPLICATES, NULL);
        if (j == NULL) {
            FAIL_OUT(COFFER_ERR_AUDIT, "audit digest %s is not valid JSON", name);
        }
        if (!st->have_prev) {
            int64_t end = audit_time_parse(json_string_value(json_object_get(j, "digestEndTime")));
            if (end < 0) {
                FAIL_OUT(COFFER_ERR_AUDIT, "audit digest %s has no digestEndTime", name);
            }
            while (sig.len > 0 && (sig.data[sig.len - 1] == '\n' || sig.data[sig.len - 1] == '\r')) {
                sig.len--;
            }
            st->prev_sig = strndup((const char *)sig.data, sig.len);
            if (st->prev_sig == NULL) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            st->have_prev = true;
            st->prev_end_ms = end;
            const char *node = json_string_value(json_object_get(j, AUDIT_NODE_FIELD));
            snprintf(st->node_id, sizeof(st->node_id), "%s", node != NULL ? node : "");
            snprintf(st->prev_name, sizeof(st->prev_name), "%s", name);
            sha256_hex(data.data, data.len, st->prev_hash);
        }
        st->last_file = digest_last_file(j);
        if (st->last_file > 0) {
            break;
        }
    }
out:
    if (rc != COFFER_OK) {
        audit_digest_state_clean(st);
    }
    json_decref(j);
    names_free(names, count);
    coffer_buf_free(&data);
    coffer_buf_free(&sig);
    return rc;
}

coffer_err audit_trail_recorded_node(const char *dir, char out[AUDIT_NODE_ID_MAX + 1], bool *found)
{
    struct audit_digest_state st;
    *found = false;
    TRY(audit_digest_recover(dir, 0, &st));
    if (st.have_prev && audit_node_id_valid(st.node_id)) {
        memcpy(out, st.node_id, sizeof(st.node_id));
        *found = true;
    }
    audit_digest_state_clean(&st);
    return COFFER_OK;
}

coffer_err audit_digest_write(const char *dir, const char *node_id, const crypto_pkey *key,
                              struct audit_digest_state *st, unsigned closed_upto, int64_t now_ms, bool final)
{
    coffer_err rc = COFFER_OK;
    json_t *d = NULL, *files = NULL;
    char *text = NULL;
    coffer_buf scratch = COFFER_BUF_INIT, sig = COFFER_BUF_INIT;
    char ddir[PATH_MAX], name[AUDIT_DIGEST_NAME_MAX], sig_name[AUDIT_DIGEST_NAME_MAX + 8];
    char start[40], end[40], fp[AUDIT_HASH_HEX_LEN + 1], hash[AUDIT_HASH_HEX_LEN + 1];
    char oldest[40] = "", newest[40] = "";
    char *sig_hex = NULL;
    TRY(digest_dir_path(dir, ddir, sizeof(ddir)));
    /* Names and periods strictly increase, even when two digests fall in one millisecond. */
    int64_t end_ms = now_ms > st->prev_end_ms ? now_ms : st->prev_end_ms + 1;
    coffer_time_iso8601_ms(st->prev_end_ms, start, sizeof(start));
    coffer_time_iso8601_ms(end_ms, end, sizeof(end));
    digest_name(end_ms, name);
    TRY_OUT(key_fingerprint(key, fp));

    files = json_array();
    if (files == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (unsigned num = st->last_file + 1; num <= closed_upto; num++) {
        struct file_summary fs;
        char fname[32];
        TRY_OUT(summarize_file(dir, num, &fs));
        snprintf(fname, sizeof(fname), AUDIT_FILE_FMT, num);
        json_t *f =
            json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:o,s:o,s:o,s:o}", "fileName", fname, "hashValue", fs.hash,
                      "hashAlgorithm", HASH_ALGORITHM, "size", (json_int_t)fs.size, "events",
                      (json_int_t)fs.events, "oldestEventTime", str_or_null(fs.oldest), "newestEventTime",
                      str_or_null(fs.newest), "previousEventHash", str_or_null(fs.first_prev),
                      "firstEventHash", str_or_null(fs.first), "lastEventHash", str_or_null(fs.last));
        if (f == NULL || json_array_append_new(files, f) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        if (fs.oldest[0] != '\0' && (oldest[0] == '\0' || strcmp(fs.oldest, oldest) < 0)) {
            memcpy(oldest, fs.oldest, sizeof(oldest));
        }
        if (strcmp(fs.newest, newest) > 0) {
            memcpy(newest, fs.newest, sizeof(newest));
        }
    }
    d = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:s,s:o,s:s,s:s,s:o,s:o,s:b,s:o}", "digestStartTime", start,
                  "digestEndTime", end, AUDIT_NODE_FIELD, node_id, "digestFileName", name,
                  "previousDigestFileName", str_or_null(st->have_prev ? st->prev_name : NULL),
                  "previousDigestHashValue", str_or_null(st->have_prev ? st->prev_hash : NULL),
                  "previousDigestHashAlgorithm", HASH_ALGORITHM, "previousDigestSignature",
                  str_or_null(st->have_prev ? st->prev_sig : NULL), "digestPublicKeyFingerprint", fp,
                  "digestSignatureAlgorithm", AUDIT_SIGNATURE_ALGORITHM, "oldestEventTime",
                  str_or_null(oldest), "newestEventTime", str_or_null(newest), "finalDigest", final,
                  "logFiles", files);
    files = NULL; /* d owns it now, or json_pack released it */
    if (d == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory building an audit digest");
    }
    text = json_dumps(d, JSON_INDENT(2));
    if (text == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory building an audit digest");
    }
    size_t len = strlen(text);
    text[len++] = '\n'; /* json_dumps NUL-terminates: room for the newline, then no NUL needed */

    uint8_t h[CRYPTO_SHA256_LEN];
    sha256_hex(text, len, hash);
    signing_digest(end, name, node_id, hash, st->have_prev ? st->prev_sig : NULL, h, &scratch);
    TRY_OUT(crypto_pkey_sign(key, CRYPTO_SIG_RSA_PKCS1, CRYPTO_SHA256, (coffer_cursor){h, sizeof(h)}, &sig));
    sig_hex = malloc(sig.len * 2 + 2);
    if (sig_hex == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_hex_encode(sig.data, sig.len, sig_hex);
    sig_hex[sig.len * 2] = '\n';
    /* The signature first: a digest file without its signature is one never written whole. */
    sig_name_of(name, sig_name, sizeof(sig_name));
    TRY_OUT(write_atomic(ddir, sig_name, sig_hex, sig.len * 2 + 1));
    TRY_OUT(write_atomic(ddir, name, text, len));
    sync_dir(ddir);

    sig_hex[sig.len * 2] = '\0';
    free(st->prev_sig);
    st->prev_sig = sig_hex;
    sig_hex = NULL;
    st->have_prev = true;
    snprintf(st->prev_name, sizeof(st->prev_name), "%s", name);
    memcpy(st->prev_hash, hash, sizeof(hash));
    st->prev_end_ms = end_ms;
    if (closed_upto > st->last_file) {
        st->last_file = closed_upto;
    }
out:
    json_decref(files);
    json_decref(d);
    free(text);
    free(sig_hex);
    coffer_buf_free(&scratch);
    coffer_buf_free(&sig);
    return rc;
}

/* ---------------------------------------------------------------- verifier */

enum digest_status { DG_VALID, DG_INVALID };

struct digest_entry {
    char *name;
    bool present_sig;
    coffer_buf data;
    char hash[AUDIT_HASH_HEX_LEN + 1];
    char *sig; /* hex, NUL-terminated, or NULL */
    json_t *j;
    int64_t start_ms, end_ms;
    enum digest_status status;
    char why[200];
};

/* Files a valid digest lists, by number. */
struct listed_file {
    unsigned num;
    const char *hash; /* borrowed from the digest's JSON */
    size_t digest;    /* index of the digest listing it */
};

struct vctx {
    const char *dir;
    const char *ddir; /* dir/AUDIT_DIGEST_SUBDIR */
    FILE *report;
    struct audit_digest_result *res;
    int64_t from_ms, to_ms;
};

static void say(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct vctx *v, const char *fmt, ...)
{
    if (v->report != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(v->report, fmt, ap);
        va_end(ap);
    }
}

static bool in_range(const struct vctx *v, int64_t start_ms, int64_t end_ms)
{
    return end_ms >= v->from_ms && start_ms <= v->to_ms;
}

static const crypto_pkey *key_for(const char *fp, const crypto_pkey *const *keys,
                                  char (*fps)[AUDIT_HASH_HEX_LEN + 1], size_t n)
{
    for (size_t i = 0; fp != NULL && i < n; i++) {
        if (strcmp(fps[i], fp) == 0) {
            return keys[i];
        }
    }
    return NULL;
}

static void invalid(struct digest_entry *e, const char *why)
{
    if (e->status == DG_VALID) {
        e->status = DG_INVALID;
        snprintf(e->why, sizeof(e->why), "%s", why);
    }
}

/* Loads digest `e` and checks it alone: JSON, fields, signature. */
static void digest_check_self(struct vctx *v, struct digest_entry *e, const crypto_pkey *const *keys,
                              char (*fps)[AUDIT_HASH_HEX_LEN + 1], size_t n_keys, coffer_buf *scratch)
{
    char path[PATH_MAX], sig_name[AUDIT_DIGEST_NAME_MAX + 8];
    coffer_buf sig = COFFER_BUF_INIT, raw = COFFER_BUF_INIT;
    bool absent = false;
    e->status = DG_VALID;
    if (join_path(path, sizeof(path), v->ddir, e->name) != COFFER_OK ||
        read_all(path, DIGEST_MAX_BYTES, &e->data, &absent) != COFFER_OK || absent) {
        invalid(e, "cannot be read");
        goto out;
    }
    sha256_hex(e->data.data, e->data.len, e->hash);
    sig_name_of(e->name, sig_name, sizeof(sig_name));
    if (join_path(path, sizeof(path), v->ddir, sig_name) != COFFER_OK ||
        read_all(path, DIGEST_SIG_MAX_HEX + 2, &sig, &absent) != COFFER_OK || absent) {
        invalid(e, "its signature file is missing");
    } else {
        while (sig.len > 0 && (sig.data[sig.len - 1] == '\n' || sig.data[sig.len - 1] == '\r')) {
            sig.len--;
        }
        e->sig = strndup((const char *)sig.data, sig.len);
    }
    e->j = json_loadb((const char *)e->data.data, e->data.len, JSON_REJECT_DUPLICATES, NULL);
    const char *end = json_string_value(json_object_get(e->j, "digestEndTime"));
    const char *node = json_string_value(json_object_get(e->j, AUDIT_NODE_FIELD));
    e->start_ms = audit_time_parse(json_string_value(json_object_get(e->j, "digestStartTime")));
    e->end_ms = audit_time_parse(end);
    if (e->j == NULL || !json_is_object(e->j) || e->start_ms < 0 || e->end_ms < e->start_ms || node == NULL ||
        !json_is_array(json_object_get(e->j, "logFiles"))) {
        invalid(e, "not a well-formed digest");
        e->start_ms = e->end_ms = 0;
        goto out;
    }
    const char *named = json_string_value(json_object_get(e->j, "digestFileName"));
    if (named == NULL || strcmp(named, e->name) != 0) {
        invalid(e, "digestFileName does not name this file (renamed or copied)");
    }
    if (v->res->node_id[0] == '\0') {
        snprintf(v->res->node_id, sizeof(v->res->node_id), "%s", node);
    } else if (strcmp(v->res->node_id, node) != 0) {
        invalid(e, "belongs to another node");
    }
    const char *fp = json_string_value(json_object_get(e->j, "digestPublicKeyFingerprint"));
    const crypto_pkey *k = key_for(fp, keys, fps, n_keys);
    if (k == NULL) {
        invalid(e, "signed with a key that is not trusted (digestPublicKeyFingerprint unknown)");
        goto out;
    }
    if (e->sig == NULL || sig.len % 2 != 0 || sig.len == 0) {
        invalid(e, "signature missing or malformed");
        goto out;
    }
    uint8_t h[CRYPTO_SHA256_LEN];
    const char *prev_sig = json_string_value(json_object_get(e->j, "previousDigestSignature"));
    signing_digest(end, e->name, node, e->hash, prev_sig, h, scratch);
    coffer_buf_reset(&raw);
    if (coffer_buf_reserve(&raw, sig.len / 2) != COFFER_OK ||
        coffer_hex_decode((coffer_cursor){sig.data, sig.len}, raw.data, sig.len / 2) != COFFER_OK) {
        invalid(e, "signature malformed");
        goto out;
    }
    raw.len = sig.len / 2;
    if (crypto_pkey_verify(k, CRYPTO_SIG_RSA_PKCS1, CRYPTO_SHA256, (coffer_cursor){h, sizeof(h)},
                           coffer_buf_cursor(&raw)) != COFFER_OK) {
        invalid(e, "signature does not verify (digest altered or forged)");
    }
out:
    coffer_buf_free(&sig);
    coffer_buf_free(&raw);
}

/* Checks digest i's link to the one before it in the directory. */
static void digest_check_link(struct digest_entry *all, size_t i, char ***missing, size_t *n_missing)
{
    struct digest_entry *e = &all[i];
    if (e->j == NULL) {
        return;
    }
    const char *prev_name = json_string_value(json_object_get(e->j, "previousDigestFileName"));
    const char *prev_hash = json_string_value(json_object_get(e->j, "previousDigestHashValue"));
    const char *prev_sig = json_string_value(json_object_get(e->j, "previousDigestSignature"));
    struct digest_entry *p = i > 0 ? &all[i - 1] : NULL;
    if (prev_name == NULL) {
        if (p != NULL) {
            invalid(e, "starts a new chain although earlier digests exist");
        }
        return;
    }
    if (p == NULL || strcmp(prev_name, p->name) != 0) {
        if (p != NULL && strcmp(prev_name, p->name) < 0) {
            invalid(e, "does not link to the digest before it");
            return;
        }
        /* The digest it names is not here: it was deleted. */
        char **nm = realloc(*missing, (*n_missing + 1) * sizeof(*nm));
        if (nm != NULL) {
            *missing = nm;
            nm[*n_missing] = strdup(prev_name);
            if (nm[*n_missing] != NULL) {
                (*n_missing)++;
            }
        }
        return;
    }
    if (prev_hash == NULL || strcmp(prev_hash, p->hash) != 0) {
        invalid(e, "previousDigestHashValue does not match the previous digest (it was altered)");
    } else if (prev_sig == NULL || p->sig == NULL || strcmp(prev_sig, p->sig) != 0) {
        invalid(e, "previousDigestSignature does not match the previous digest's signature");
    } else if (p->j != NULL && e->start_ms != p->end_ms) {
        invalid(e, "its period does not start where the previous digest's ends");
    }
}

static int cmp_listed(const void *a, const void *b)
{
    const struct listed_file *x = a, *y = b;
    return (x->num > y->num) - (x->num < y->num);
}

/* Hash of trail file `num` into hex; *absent when it is not there. */
static coffer_err trail_file_hash(const char *dir, unsigned num, char hex[AUDIT_HASH_HEX_LEN + 1],
                                  bool *absent)
{
    char path[PATH_MAX];
    coffer_buf data = COFFER_BUF_INIT;
    TRY(audit_file_path(dir, num, path, sizeof(path)));
    coffer_err rc = read_all(path, TRAIL_FILE_MAX_BYTES, &data, absent);
    if (rc == COFFER_OK && !*absent) {
        sha256_hex(data.data, data.len, hex);
    }
    coffer_buf_free(&data);
    return rc;
}

coffer_err audit_verify_digests(const char *dir, const crypto_pkey *const *keys, size_t n_keys,
                                int64_t from_ms, int64_t to_ms, FILE *report, struct audit_digest_result *res)
{
    coffer_err rc = COFFER_OK;
    struct audit_digest_result local;
    struct vctx v = {
        .dir = dir, .report = report, .res = res ? res : &local, .from_ms = from_ms, .to_ms = to_ms};
    crypto_pkey *own_key = NULL;
    const crypto_pkey *one[1];
    char(*fps)[AUDIT_HASH_HEX_LEN + 1] = NULL;
    char ddir[PATH_MAX], path[PATH_MAX];
    char **names = NULL, **missing = NULL;
    size_t count = 0, n_missing = 0, n_listed = 0, n_present = 0;
    unsigned covered = 0; /* the highest file number any digest lists */
    struct digest_entry *all = NULL;
    struct listed_file *listed = NULL;
    unsigned *present = NULL;
    coffer_buf scratch = COFFER_BUF_INIT, pem = COFFER_BUF_INIT;
    memset(v.res, 0, sizeof(*v.res));
    ENSURE_REF(dir);

    if (n_keys == 0) {
        bool absent;
        TRY_OUT(join_path(path, sizeof(path), dir, AUDIT_PUBLIC_KEY_FILE));
        TRY_OUT(read_all(path, 65536, &pem, &absent));
        if (!absent) {
            TRY_OUT(audit_public_key_from_pem((const char *)pem.data, pem.len, &own_key));
            one[0] = own_key;
            keys = one;
            n_keys = 1;
        }
    }
    fps = calloc(n_keys ? n_keys : 1, sizeof(*fps));
    if (fps == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_keys; i++) {
        TRY_OUT(key_fingerprint(keys[i], fps[i]));
    }
    TRY_OUT(digest_dir_path(dir, ddir, sizeof(ddir)));
    v.ddir = ddir;
    TRY_OUT(digest_names(ddir, &names, &count));
    all = calloc(count ? count : 1, sizeof(*all));
    if (all == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        all[i].name = names[i];
        coffer_buf_init(&all[i].data, false);
        digest_check_self(&v, &all[i], keys, fps, n_keys, &scratch);
    }
    for (size_t i = 0; i < count; i++) {
        digest_check_link(all, i, &missing, &n_missing);
    }
    if (count > 0 && n_keys == 0) {
        say(&v, "no public key: neither given nor in %s/%s\n", dir, AUDIT_PUBLIC_KEY_FILE);
    }

    /* Digests, in order; the files the valid ones list. */
    for (size_t i = 0; i < n_missing; i++) {
        say(&v, "digest file %s: missing (deleted: %s)\n", missing[i], "the next digest links to it");
        v.res->digests_missing++;
    }
    for (size_t i = 0; i < count; i++) {
        struct digest_entry *e = &all[i];
        bool shown = in_range(&v, e->start_ms, e->end_ms);
        if (e->status != DG_VALID) {
            unsigned upto = e->j != NULL ? digest_last_file(e->j) : 0;
            covered = upto > covered ? upto : covered;
            /* An unreadable digest has no period: always shown. */
            say(&v, "digest file %s: invalid (%s)\n", e->name, e->why);
            v.res->digests_invalid++;
            continue;
        }
        if (shown) {
            say(&v, "digest file %s: valid\n", e->name);
            v.res->digests_valid++;
        }
        json_t *files = json_object_get(e->j, "logFiles");
        size_t k;
        json_t *f;
        /* Only a valid digest's list is trusted; any digest says how far listing had got. */
        unsigned upto = digest_last_file(e->j);
        covered = upto > covered ? upto : covered;
        json_array_foreach(files, k, f)
        {
            const char *fname = json_string_value(json_object_get(f, "fileName"));
            const char *fhash = json_string_value(json_object_get(f, "hashValue"));
            unsigned num;
            char check[32];
            if (fname == NULL || fhash == NULL || sscanf(fname, "trail-%u.jsonl", &num) != 1 || num == 0 ||
                (snprintf(check, sizeof(check), AUDIT_FILE_FMT, num), strcmp(check, fname) != 0)) {
                continue; /* the signature held: we wrote it, and we write no such entry */
            }
            struct listed_file *nl = realloc(listed, (n_listed + 1) * sizeof(*nl));
            if (nl == NULL) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
            }
            listed = nl;
            listed[n_listed++] = (struct listed_file){.num = num, .hash = fhash, .digest = i};
        }
    }
    if (n_listed > 0) {
        qsort(listed, n_listed, sizeof(*listed), cmp_listed);
    }

    /* Trail files: each listed one against its hash; the numbering has no hole. */
    coffer_err lrc = audit_files_list(dir, &present, &n_present);
    if (lrc != COFFER_OK && errno != ENOENT) {
        TRY_OUT(lrc);
    }
    unsigned max_listed = n_listed > 0 ? listed[n_listed - 1].num : 0;
    max_listed = covered > max_listed ? covered : max_listed;
    size_t li = 0;
    for (unsigned num = 1; num <= max_listed; num++) {
        char fname[32];
        snprintf(fname, sizeof(fname), AUDIT_FILE_FMT, num);
        if (li >= n_listed || listed[li].num != num) {
            say(&v, "trail file %s: missing (%s)\n", fname, "no valid digest lists it");
            v.res->files_missing++;
            continue;
        }
        struct listed_file *lf = &listed[li];
        struct digest_entry *e = &all[lf->digest];
        bool shown = in_range(&v, e->start_ms, e->end_ms);
        for (; li < n_listed && listed[li].num == num; li++) {
        }
        if (!shown) {
            continue; /* outside --from/--to, as validate-logs leaves it */
        }
        char hex[AUDIT_HASH_HEX_LEN + 1];
        bool absent;
        if (trail_file_hash(dir, num, hex, &absent) != COFFER_OK) {
            absent = false;
            memset(hex, 0, sizeof(hex));
        }
        if (absent) {
            say(&v, "trail file %s: deleted (listed in %s)\n", fname, e->name);
            v.res->files_deleted++;
        } else if (strcmp(hex, lf->hash) != 0) {
            say(&v, "trail file %s: modified (SHA-256 differs from %s)\n", fname, e->name);
            v.res->files_modified++;
        } else {
            say(&v, "trail file %s: valid\n", fname);
            v.res->files_valid++;
        }
    }
    unsigned next = max_listed + 1;
    for (size_t i = 0; i < n_present; i++) {
        if (present[i] <= max_listed) {
            continue;
        }
        char fname[32];
        for (; next < present[i]; next++) {
            snprintf(fname, sizeof(fname), AUDIT_FILE_FMT, next);
            say(&v, "trail file %s: missing (%s)\n", fname, "a gap in the numbering");
            v.res->files_missing++;
        }
        snprintf(fname, sizeof(fname), AUDIT_FILE_FMT, present[i]);
        say(&v, "trail file %s: %s\n", fname, "not yet in a digest (checked by the event chain only)");
        v.res->files_undigested++;
        next = present[i] + 1;
    }

    /* The events themselves: the chain, and every event of this node. */
    struct audit_verify_result vr;
    v.res->chain_ok =
        audit_verify_walk(dir, v.res->node_id[0] ? v.res->node_id : NULL, NULL, report, &vr) == COFFER_OK;
    if (report != NULL) {
        fprintf(report,
                "node %s: %u/%u digest files valid, %u missing; %u/%u trail files valid, %u modified, "
                "%u deleted, %u missing, %u not yet in a digest\n",
                v.res->node_id[0] ? v.res->node_id : "?", v.res->digests_valid,
                v.res->digests_valid + v.res->digests_invalid, v.res->digests_missing, v.res->files_valid,
                v.res->files_valid + v.res->files_modified + v.res->files_deleted, v.res->files_modified,
                v.res->files_deleted, v.res->files_missing, v.res->files_undigested);
    }
    if (v.res->digests_invalid || v.res->digests_missing || v.res->files_modified || v.res->files_deleted ||
        v.res->files_missing || !v.res->chain_ok) {
        rc = coffer_fail(COFFER_ERR_AUDIT, "the audit trail of node %s does not validate",
                         v.res->node_id[0] ? v.res->node_id : "?");
    }
out:
    for (size_t i = 0; all != NULL && i < count; i++) {
        coffer_buf_free(&all[i].data);
        free(all[i].sig);
        json_decref(all[i].j);
    }
    free(all);
    names_free(names, count);
    names_free(missing, n_missing);
    free(listed);
    free(present);
    free(fps);
    crypto_pkey_free(own_key);
    coffer_buf_free(&scratch);
    coffer_buf_free(&pem);
    return rc;
}
