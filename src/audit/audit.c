/*
 * The audit trail writer. It sits beside the request pipeline: the HTTP layer records one
 * CloudTrail event per request before answering; if the event cannot be written the request is
 * refused.
 *
 * Two ways in. audit_trail_append takes an event as a JSON tree, bounds it and serialises it
 * (JSON_COMPACT, insertion order) outside the lock into a line buffer that leaves room for the
 * `{"previousEventHash":"<64 hex>",` prefix. audit_trail_write_batch takes lines the writer of
 * audit_line.c made the same way without a tree, several at once (the requests of one turn of a
 * worker's loop). Under the lock only the head is spliced into each line in turn and hashed, the
 * line or the batch goes out with one write(2) on an O_APPEND descriptor, and the last hash
 * becomes the new head. No fsync per event: a write(2) to the page cache survives a kill of the
 * process; audit_trail_sync and the optional background thread cover the rest.
 */
#include "audit/audit.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit_internal.h"
#include "common/codec.h"
#include "common/json_out.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

#define PREFIX_HEAD AUDIT_PREFIX_HEAD
#define PREFIX_HEAD_LEN AUDIT_PREFIX_HEAD_LEN
#define PREFIX_LEN AUDIT_PREFIX_LEN
#define TAIL_CHUNK 65536        /* backwards scan on recovery */
#define AUDIT_KEY_RETRY_MS 1000 /* a failed data key fetch is tried again after this */

struct audit_trail {
    pthread_mutex_t lock;              /* guards everything below up to `failed` */
    char *dir;                         /* trail directory */
    int fd;                            /* current file, O_APPEND */
    unsigned file_no;                  /* number of the current file */
    uint64_t file_size;                /* bytes in the current file */
    char head[AUDIT_HASH_HEX_LEN + 1]; /* hex SHA-256 of the last line */
    bool failed;                       /* a partial write could not be undone */
    bool closed;                       /* a digest listed the current file: the next write rotates */
    size_t rotate_bytes;               /* start a new file past this size */
    unsigned sync_ms;                  /* background fdatasync period, 0 = none */
    pthread_t syncer;                  /* the background thread when sync_ms > 0 */
    bool syncer_started;
    pthread_mutex_t sync_lock; /* guards `stopping` */
    pthread_cond_t sync_cond;  /* wakes the syncer early on close */
    bool stopping;
    char *node_id;                /* every event's AUDIT_NODE_FIELD, or NULL */
    const crypto_pkey *sign_key;  /* borrowed; NULL: no digests */
    unsigned period_ms;           /* digest period */
    pthread_mutex_t digest_lock;  /* serialises digests; guards `dg` */
    struct audit_digest_state dg; /* where the digest chain stands */
    pthread_t digester;           /* writes a digest at every period boundary */
    bool digester_started;
    bool enc_pending;           /* opened for encryption: never append to the recovered file */
    pthread_cond_t digest_cond; /* CLOCK_REALTIME: boundaries are wall-clock times */
    /* Encryption: set once under `lock` by audit_trail_start_encryption (NULL: plaintext). */
    const struct audit_key_source *ks;
    bool enc_cur;               /* the current file is encrypted under `cur` */
    struct audit_data_key cur;  /* the current file's key */
    struct audit_data_key next; /* the key fetched ahead for file `next_for` (0: none yet) */
    unsigned next_for;
    size_t header_size;       /* bytes of the current file's header line (0: plaintext) */
    coffer_buf enc_out;       /* sealed lines on their way to write(2) (reused, under `lock`) */
    atomic_bool fetching;     /* a thread is fetching `next`: the others do not wait for it */
    _Atomic int64_t retry_ms; /* after a failed fetch, no other before this time */
};

static const char zero_hash[AUDIT_HASH_HEX_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* ---------------------------------------------------------------- files */

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a;
    unsigned y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

/* trail-<1..9 digits>.jsonl, nothing else; the number must be > 0. */
static bool parse_file_name(const char *name, unsigned *num)
{
    static const char pre[] = "trail-";
    static const char suf[] = ".jsonl";
    size_t n = strlen(name);
    if (n <= sizeof(pre) - 1 + sizeof(suf) - 1 || strncmp(name, pre, sizeof(pre) - 1) != 0 ||
        strcmp(name + n - (sizeof(suf) - 1), suf) != 0) {
        return false;
    }
    size_t digits = n - (sizeof(pre) - 1) - (sizeof(suf) - 1);
    if (digits > 9) {
        return false;
    }
    unsigned v = 0;
    for (size_t i = 0; i < digits; i++) {
        char c = name[sizeof(pre) - 1 + i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(c - '0');
    }
    if (v == 0) {
        return false;
    }
    *num = v;
    return true;
}

coffer_err audit_files_list(const char *dir, unsigned **nums, size_t *count)
{
    coffer_err rc = COFFER_OK;
    unsigned *arr = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return coffer_fail(COFFER_ERR_AUDIT, "cannot open the audit trail directory");
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned v;
        if (!parse_file_name(e->d_name, &v)) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            unsigned *na = realloc(arr, ncap * sizeof(*na));
            if (na == NULL) {
                FAIL_OUT(COFFER_ERR_NOMEM, "out of memory listing the audit trail");
            }
            arr = na;
            cap = ncap;
        }
        arr[n++] = v;
    }
    if (n > 0) {
        qsort(arr, n, sizeof(*arr), cmp_unsigned);
    }
    *nums = arr;
    *count = n;
    arr = NULL;
out:
    closedir(d);
    free(arr);
    return rc;
}

coffer_err audit_file_path(const char *dir, unsigned num, char *out, size_t n)
{
    int w = snprintf(out, n, "%s/" AUDIT_FILE_FMT, dir, num);
    if (w < 0 || (size_t)w >= n) {
        return coffer_fail(COFFER_ERR_AUDIT, "audit trail path too long");
    }
    return COFFER_OK;
}

static coffer_err open_file(audit_trail *t, unsigned num, bool create, int *fd_out)
{
    char path[PATH_MAX];
    TRY(audit_file_path(t->dir, num, path, sizeof(path)));
    int flags = O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        log_error("audit: cannot open trail file " AUDIT_FILE_FMT ": %s", num, strerror(errno));
        return coffer_fail(COFFER_ERR_AUDIT, "cannot open the audit trail file");
    }
    *fd_out = fd;
    return COFFER_OK;
}

/* Makes a newly created file name durable (best effort: the events are not fsynced either). */
static void sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        /* Not propagated: the event lines themselves are written without fsync, so a lost
         * directory entry is the same crash window, not a new one. Worth a line in the log. */
        log_warn("audit: cannot sync the directory %s: %s", dir, strerror(errno));
    }
    if (dfd >= 0) {
        close(dfd);
    }
}

/* ---------------------------------------------------------------- recovery */

/*
 * Position just after the last '\n' in [0, end) of fd (0 when there is none), scanning
 * backwards in chunks so a large file costs one or two reads.
 */
static coffer_err find_last_newline(int fd, uint64_t end, uint64_t *after)
{
    char buf[TAIL_CHUNK];
    uint64_t pos = end;
    while (pos > 0) {
        size_t want = pos < sizeof(buf) ? (size_t)pos : sizeof(buf);
        uint64_t start = pos - want;
        ssize_t r = pread(fd, buf, want, (off_t)start);
        if (r != (ssize_t)want) {
            return coffer_fail(COFFER_ERR_AUDIT, "cannot read the audit trail tail");
        }
        for (size_t i = want; i > 0; i--) {
            if (buf[i - 1] == '\n') {
                *after = start + i;
                return COFFER_OK;
            }
        }
        pos = start;
    }
    *after = 0;
    return COFFER_OK;
}

/* SHA-256 of the line [start, end) of fd, hex into `hex`. */
static coffer_err hash_range(int fd, uint64_t start, uint64_t end, char hex[AUDIT_HASH_HEX_LEN + 1])
{
    if (end - start > AUDIT_MAX_EVENT_BYTES + PREFIX_LEN) {
        return coffer_fail(COFFER_ERR_AUDIT, "the last audit event is too long");
    }
    size_t n = (size_t)(end - start);
    uint8_t *line = malloc(n ? n : 1);
    if (line == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory reading the audit trail");
    }
    if (pread(fd, line, n, (off_t)start) != (ssize_t)n) {
        free(line);
        return coffer_fail(COFFER_ERR_AUDIT, "cannot read the audit trail tail");
    }
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(line, n, h);
    coffer_hex_encode(h, sizeof(h), hex);
    free(line);
    return COFFER_OK;
}

/*
 * Drops a torn last line of the newest file (no trailing newline: the write never completed,
 * so the event was never acknowledged) and reports its new size.
 */
static coffer_err truncate_torn_tail(int fd, unsigned num, uint64_t *size)
{
    if (*size == 0) {
        return COFFER_OK;
    }
    char last;
    if (pread(fd, &last, 1, (off_t)(*size - 1)) != 1) {
        return coffer_fail(COFFER_ERR_AUDIT, "cannot read the audit trail tail");
    }
    if (last == '\n') {
        return COFFER_OK;
    }
    uint64_t keep;
    TRY(find_last_newline(fd, *size, &keep));
    if (ftruncate(fd, (off_t)keep) != 0) {
        log_error("audit: cannot truncate torn line: %s", strerror(errno));
        return coffer_fail(COFFER_ERR_AUDIT, "cannot repair the audit trail tail");
    }
    log_warn("audit: " AUDIT_FILE_FMT " ended with an incomplete line (%llu bytes, never acknowledged); "
             "truncated it",
             num, (unsigned long long)(*size - keep));
    *size = keep;
    return COFFER_OK;
}

/* Hash of the last line of file `num` into `hex`; *found false when the file is empty. */
static coffer_err last_line_hash(int fd, uint64_t size, char hex[AUDIT_HASH_HEX_LEN + 1], bool *found)
{
    *found = false;
    if (size == 0) {
        return COFFER_OK;
    }
    uint64_t start;
    TRY(find_last_newline(fd, size - 1, &start));
    TRY(hash_range(fd, start, size - 1, hex));
    *found = true;
    return COFFER_OK;
}

static coffer_err file_size_of(int fd, uint64_t *size);

/* The hash of the last line of the older file `num` into t->head; *found false when it is empty. */
static coffer_err older_file_hash(audit_trail *t, unsigned num, bool *found)
{
    int fd;
    uint64_t size = 0;
    TRY(open_file(t, num, false, &fd));
    coffer_err rc = COFFER_OK;
    TRY_OUT(file_size_of(fd, &size));
    rc = last_line_hash(fd, size, t->head, found);
out:
    close(fd);
    return rc;
}

static coffer_err file_size_of(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return coffer_fail(COFFER_ERR_AUDIT, "cannot stat the audit trail file");
    }
    *size = (uint64_t)st.st_size;
    return COFFER_OK;
}

/* Opens the newest file (or creates trail-000001) and finds the chain head. */
static coffer_err recover(audit_trail *t)
{
    coffer_err rc = COFFER_OK;
    unsigned *nums = NULL;
    size_t count = 0;
    TRY_OUT(audit_files_list(t->dir, &nums, &count));
    memcpy(t->head, zero_hash, sizeof(t->head));
    if (count == 0) {
        /* Numbering resumes after the files digests listed, even if those are gone. */
        t->file_no = t->dg.last_file + 1;
        TRY_OUT(open_file(t, t->file_no, true, &t->fd));
        t->file_size = 0;
        sync_dir(t->dir);
        goto out;
    }
    t->file_no = nums[count - 1];
    TRY_OUT(open_file(t, t->file_no, false, &t->fd));
    TRY_OUT(file_size_of(t->fd, &t->file_size));
    TRY_OUT(truncate_torn_tail(t->fd, t->file_no, &t->file_size));
    bool found;
    TRY_OUT(last_line_hash(t->fd, t->file_size, t->head, &found));
    /* The newest file may be empty (rotation just happened): the head is in an older file. */
    for (size_t i = count - 1; !found && i > 0; i--) {
        TRY_OUT(older_file_hash(t, nums[i - 1], &found));
    }
    if (t->file_size > 0 && t->enc_pending) {
        /* Maybe another run's encrypted file, whose key this run has not fetched: the next
         * event starts a new file. */
        t->closed = true;
    }
    if (t->sign_key != NULL && t->file_no <= t->dg.last_file) {
        /* A digest listed the newest file (a clean stop closed it): it is never written again. */
        close(t->fd);
        t->fd = -1;
        t->file_no = t->dg.last_file + 1;
        TRY_OUT(open_file(t, t->file_no, true, &t->fd));
        t->file_size = 0;
        sync_dir(t->dir);
    }
out:
    free(nums);
    return rc;
}

/* ---------------------------------------------------------------- background sync */

static void *syncer_main(void *arg)
{
    audit_trail *t = arg;
    pthread_mutex_lock(&t->sync_lock);
    while (!t->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)t->sync_ms * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        int w = 0;
        while (!t->stopping && w != ETIMEDOUT) {
            w = pthread_cond_timedwait(&t->sync_cond, &t->sync_lock, &until);
        }
        if (t->stopping) {
            break;
        }
        pthread_mutex_unlock(&t->sync_lock);
        if (audit_trail_sync(t) != COFFER_OK) {
            log_error("audit: periodic fdatasync failed: %s", coffer_last_message());
        }
        pthread_mutex_lock(&t->sync_lock);
    }
    pthread_mutex_unlock(&t->sync_lock);
    return NULL;
}

static coffer_err start_syncer(audit_trail *t)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&t->sync_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        return coffer_fail(COFFER_ERR_INTERNAL, "cannot create the audit sync condition");
    }
    if (pthread_create(&t->syncer, NULL, syncer_main, t) != 0) {
        pthread_cond_destroy(&t->sync_cond);
        return coffer_fail(COFFER_ERR_INTERNAL, "cannot start the audit sync thread");
    }
    t->syncer_started = true;
    return COFFER_OK;
}

/* ---------------------------------------------------------------- digests */

/*
 * Closes the current file if it holds events (the next write starts a new one: no empty file
 * is left waiting for events, and the file is final before it is read) and writes the digest
 * of every file closed since the last one.
 */
static coffer_err digest_now(audit_trail *t, bool final)
{
    unsigned closed_upto;
    pthread_mutex_lock(&t->digest_lock);
    pthread_mutex_lock(&t->lock);
    /* An encrypted file is closed only once the next one's key is there (or nothing follows). */
    if (t->file_size > t->header_size && (final || t->ks == NULL || t->next_for == t->file_no + 1)) {
        t->closed = true;
        closed_upto = t->file_no;
    } else {
        closed_upto = t->file_no - 1;
    }
    int fd = closed_upto == t->file_no ? dup(t->fd) : -1;
    pthread_mutex_unlock(&t->lock);
    if (fd >= 0) {
        if (fdatasync(fd) != 0) {
            log_error("audit: fdatasync of a closed trail file failed: %s", strerror(errno));
        }
        close(fd);
    }
    coffer_err rc =
        audit_digest_write(t->dir, t->node_id, t->sign_key, &t->dg, closed_upto, coffer_now_ms(), final);
    pthread_mutex_unlock(&t->digest_lock);
    return rc;
}

coffer_err audit_trail_digest(audit_trail *t)
{
    ENSURE_REF(t);
    if (t->sign_key == NULL) {
        return coffer_fail(COFFER_ERR_USAGE, "the audit trail has no digest signing key");
    }
    return digest_now(t, false);
}

static void *digester_main(void *arg)
{
    audit_trail *t = arg;
    pthread_mutex_lock(&t->sync_lock);
    while (!t->stopping) {
        /* The next multiple of the period since the epoch: on the hour for an hour. */
        int64_t now = coffer_now_ms();
        int64_t next = (now / t->period_ms + 1) * t->period_ms;
        struct timespec until = {.tv_sec = (time_t)(next / 1000), .tv_nsec = (long)(next % 1000) * 1000000L};
        int w = 0;
        while (!t->stopping && w != ETIMEDOUT) {
            w = pthread_cond_timedwait(&t->digest_cond, &t->sync_lock, &until);
        }
        if (t->stopping) {
            break;
        }
        pthread_mutex_unlock(&t->sync_lock);
        if (digest_now(t, false) != COFFER_OK) {
            log_error("audit: digest failed: %s", coffer_last_message());
        }
        pthread_mutex_lock(&t->sync_lock);
    }
    pthread_mutex_unlock(&t->sync_lock);
    return NULL;
}

static coffer_err start_digester(audit_trail *t)
{
    if (pthread_cond_init(&t->digest_cond, NULL) != 0) {
        return coffer_fail(COFFER_ERR_INTERNAL, "cannot create the audit digest condition");
    }
    if (pthread_create(&t->digester, NULL, digester_main, t) != 0) {
        pthread_cond_destroy(&t->digest_cond);
        return coffer_fail(COFFER_ERR_INTERNAL, "cannot start the audit digest thread");
    }
    t->digester_started = true;
    return COFFER_OK;
}

/* ---------------------------------------------------------------- open / close */

coffer_err audit_trail_open(const char *dir, audit_trail **out)
{
    return audit_trail_open_ex(dir, NULL, out);
}

coffer_err audit_trail_open_ex(const char *dir, const struct audit_trail_options *opts, audit_trail **out)
{
    coffer_err rc = COFFER_OK;
    ENSURE_REF(out);
    *out = NULL;
    ENSURE_REF(dir);
    audit_trail *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    t->fd = -1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->sync_lock, NULL);
    t->rotate_bytes = opts && opts->rotate_bytes ? opts->rotate_bytes : AUDIT_ROTATE_BYTES_DEFAULT;
    pthread_mutex_init(&t->digest_lock, NULL);
    t->sync_ms = opts ? opts->sync_interval_ms : 0;
    t->sign_key = opts ? opts->sign_key : NULL;
    t->period_ms = opts && opts->period_ms ? opts->period_ms : AUDIT_PERIOD_MS_DEFAULT;
    t->enc_pending = opts != NULL && opts->encrypted;
    coffer_buf_init(&t->cur.key, true);
    coffer_buf_init(&t->next.key, true);
    atomic_init(&t->fetching, false);
    atomic_init(&t->retry_ms, 0);
    t->dir = strdup(dir);
    if (t->dir == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (opts != NULL && opts->node_id != NULL) {
        if (!audit_node_id_valid(opts->node_id)) {
            FAIL_OUT(COFFER_ERR_CONFIG, "a node id is 1 to %d of A-Z a-z 0-9 . _ -", AUDIT_NODE_ID_MAX);
        }
        t->node_id = strdup(opts->node_id);
        if (t->node_id == NULL) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (t->sign_key != NULL && t->node_id == NULL) {
        FAIL_OUT(COFFER_ERR_USAGE, "signed audit digests need a node id");
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("audit: cannot create the trail directory: %s", strerror(errno));
        FAIL_OUT(COFFER_ERR_AUDIT, "cannot create the audit trail directory");
    }
    if (t->sign_key != NULL) {
        TRY_OUT(audit_public_key_publish(dir, t->sign_key));
        TRY_OUT(audit_digest_recover(dir, coffer_now_ms(), &t->dg));
        if (t->dg.have_prev && strcmp(t->dg.node_id, t->node_id) != 0) {
            FAIL_OUT(COFFER_ERR_CONFIG, "the audit trail in %s is the chain of node %s, not %s", dir,
                     t->dg.node_id, t->node_id);
        }
    }
    TRY_OUT(recover(t));
    if (t->sync_ms > 0) {
        TRY_OUT(start_syncer(t));
    }
    if (t->sign_key != NULL) {
        TRY_OUT(start_digester(t));
    }
    *out = t;
    t = NULL;
out:
    if (t != NULL) {
        t->sign_key = NULL; /* a trail that never opened writes no final digest */
    }
    audit_trail_close(t);
    return rc;
}

void audit_trail_close(audit_trail *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->sync_lock);
    t->stopping = true;
    if (t->syncer_started) {
        pthread_cond_signal(&t->sync_cond);
    }
    if (t->digester_started) {
        pthread_cond_signal(&t->digest_cond);
    }
    pthread_mutex_unlock(&t->sync_lock);
    if (t->syncer_started) {
        pthread_join(t->syncer, NULL);
        pthread_cond_destroy(&t->sync_cond);
    }
    if (t->digester_started) {
        pthread_join(t->digester, NULL);
        pthread_cond_destroy(&t->digest_cond);
    }
    if (t->sign_key != NULL && t->fd >= 0 && digest_now(t, true) != COFFER_OK) {
        log_error("audit: the final digest could not be written: %s", coffer_last_message());
    }
    if (t->fd >= 0) {
        if (fdatasync(t->fd) != 0) {
            log_error("audit: fdatasync on close failed: %s", strerror(errno));
        }
        close(t->fd);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->sync_lock);
    pthread_mutex_destroy(&t->digest_lock);
    audit_digest_state_clean(&t->dg);
    audit_data_key_clean(&t->cur);
    audit_data_key_clean(&t->next);
    coffer_buf_free(&t->enc_out);
    free(t->node_id);
    free(t->dir);
    free(t);
}

coffer_err audit_trail_sync(audit_trail *t)
{
    ENSURE_REF(t);
    /* A dup keeps the descriptor valid if a rotation closes it while we sync. */
    pthread_mutex_lock(&t->lock);
    int fd = t->fd >= 0 ? dup(t->fd) : -1;
    pthread_mutex_unlock(&t->lock);
    if (fd < 0) {
        return coffer_fail(COFFER_ERR_AUDIT, "the audit trail is not open");
    }
    int r = fdatasync(fd);
    int e = errno;
    close(fd);
    if (r != 0) {
        log_error("audit: fdatasync failed: %s", strerror(e));
        return coffer_fail(COFFER_ERR_AUDIT, "cannot sync the audit trail");
    }
    return COFFER_OK;
}

const char *audit_trail_node_id(const audit_trail *t)
{
    return t->node_id;
}

void audit_trail_head(audit_trail *t, char out[AUDIT_HASH_HEX_LEN + 1])
{
    pthread_mutex_lock(&t->lock);
    memcpy(out, t->head, AUDIT_HASH_HEX_LEN + 1);
    pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------------- append */

/*
 * Under t->lock: starts the next file. The old descriptor is handed back in *old_fd so the
 * caller syncs and closes it after dropping the lock (an fdatasync of up to 64 MiB must not
 * stall every other worker).
 */
static coffer_err rotate_locked(audit_trail *t, int *old_fd)
{
    int fd;
    if (t->file_no == UINT_MAX / 2) {
        return coffer_fail(COFFER_ERR_AUDIT, "audit trail file numbers exhausted");
    }
    TRY(open_file(t, t->file_no + 1, true, &fd));
    *old_fd = t->fd;
    t->fd = fd;
    t->file_no++;
    t->file_size = 0;
    t->header_size = 0;
    t->closed = false;
    if (t->ks != NULL) {
        /* The caller checked that `next` is this file's key; its header goes first. */
        audit_data_key_clean(&t->cur);
        t->cur = t->next;
        memset(&t->next, 0, sizeof(t->next));
        coffer_buf_init(&t->next.key, true);
        t->next_for = 0;
        t->enc_cur = true;
    }
    return COFFER_OK;
}

static void file_name_of(unsigned num, char out[32])
{
    snprintf(out, 32, AUDIT_FILE_FMT, num);
}

static void hash_into_head(audit_trail *t, const uint8_t *line, size_t len)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(line, len, h);
    coffer_hex_encode(h, sizeof(h), t->head);
}

static coffer_err write_locked(audit_trail *t, const char *line, size_t len);

/* Under t->lock: the header line of a new encrypted file, chained like an event. */
static coffer_err write_header_locked(audit_trail *t)
{
    char name[32];
    file_name_of(t->file_no, name);
    t->enc_out.len = 0;
    TRY(audit_enc_header_line(t->head, t->node_id, name, &t->cur, &t->enc_out));
    TRY(write_locked(t, (const char *)t->enc_out.data, t->enc_out.len));
    hash_into_head(t, t->enc_out.data, t->enc_out.len - 1);
    t->file_size = t->header_size = t->enc_out.len;
    return COFFER_OK;
}

/*
 * Under t->lock, before `len` more bytes: rotates when the file is full or closed (an
 * encrypted trail only once the next file's key is there: until then the current file goes
 * on), writes a new encrypted file's header, and sets *want_key when the next key is missing.
 */
static coffer_err prepare_locked(audit_trail *t, size_t len, int *old_fd, bool *want_key)
{
    if (t->failed) {
        return coffer_fail(COFFER_ERR_AUDIT, "the audit trail is in a failed state");
    }
    if (t->file_size > t->header_size && (t->closed || t->file_size + len > t->rotate_bytes) &&
        (t->ks == NULL || t->next_for == t->file_no + 1)) {
        TRY(rotate_locked(t, old_fd));
    }
    if (t->ks != NULL) {
        if (t->file_size == 0) {
            TRY(write_header_locked(t));
        }
        *want_key = t->next_for != t->file_no + 1;
    }
    return COFFER_OK;
}

/*
 * Outside every lock: fetches the key of the file after the current one unless another
 * thread is at it (a thread whose own KMS call records an event comes back here and leaves
 * at once). A failure is logged; the next append tries again.
 */
static void prefetch_key(audit_trail *t)
{
    if (coffer_now_ms() < atomic_load(&t->retry_ms) || atomic_exchange(&t->fetching, true)) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    unsigned want = t->file_no + 1;
    bool have = t->next_for == want;
    pthread_mutex_unlock(&t->lock);
    if (!have) {
        char name[32];
        struct audit_data_key k = {.key = COFFER_SECRET_BUF_INIT};
        file_name_of(want, name);
        if (t->ks->data_key(t->ks->ctx, name, &k) != COFFER_OK) {
            /* Not on every event while KMS refuses (each refusal is an event of its own). */
            atomic_store(&t->retry_ms, coffer_now_ms() + AUDIT_KEY_RETRY_MS);
            log_error("audit: no data key for %s yet: %s", name, coffer_last_message());
        } else if (k.key.len != AUDIT_ENC_KEY_LEN || k.wrapped_b64 == NULL) {
            log_error("audit: the data key for %s is malformed", name);
        } else {
            pthread_mutex_lock(&t->lock);
            if (t->file_no + 1 == want && t->next_for != want) {
                audit_data_key_clean(&t->next);
                t->next = k;
                t->next_for = want;
                memset(&k, 0, sizeof(k));
            }
            pthread_mutex_unlock(&t->lock);
        }
        audit_data_key_clean(&k);
    }
    atomic_store(&t->fetching, false);
}

/* After an append, outside the lock: a rotation is finished and a missing key fetched. */
static void after_append(audit_trail *t, int old_fd, bool want_key)
{
    if (old_fd >= 0) {
        if (fdatasync(old_fd) != 0) {
            log_error("audit: fdatasync of the rotated file failed: %s", strerror(errno));
        }
        close(old_fd);
        sync_dir(t->dir);
    }
    if (want_key) {
        prefetch_key(t);
    }
}

coffer_err audit_trail_start_encryption(audit_trail *t, const struct audit_key_source *ks)
{
    ENSURE_REF(t);
    ENSURE_REF(ks);
    coffer_err rc = COFFER_ERR_AUDIT;
    /* A few tries: the fetch's own event may have made the current file rotate by size. */
    for (int attempt = 0; attempt < 3 && rc != COFFER_OK; attempt++) {
        pthread_mutex_lock(&t->lock);
        unsigned want = t->file_no + 1;
        pthread_mutex_unlock(&t->lock);
        char name[32];
        struct audit_data_key k = {.key = COFFER_SECRET_BUF_INIT};
        file_name_of(want, name);
        rc = ks->data_key(ks->ctx, name, &k);
        if (rc == COFFER_OK && (k.key.len != AUDIT_ENC_KEY_LEN || k.wrapped_b64 == NULL)) {
            rc = coffer_fail(COFFER_ERR_AUDIT, "the audit data key is malformed");
        }
        if (rc != COFFER_OK) {
            char why[256]; /* the detail lives in the buffer the next failure writes */
            snprintf(why, sizeof(why), "%s", coffer_last_message());
            audit_data_key_clean(&k);
            return coffer_fail(COFFER_ERR_AUDIT, "no data key for the audit trail: %s", why);
        }
        int old_fd = -1;
        bool failed = false;
        pthread_mutex_lock(&t->lock);
        if (t->file_no + 1 != want) {
            rc = COFFER_ERR_AUDIT; /* try again for the new next file */
        } else {
            t->ks = ks;
            audit_data_key_clean(&t->next);
            t->next = k;
            t->next_for = want;
            memset(&k, 0, sizeof(k));
            rc = rotate_locked(t, &old_fd);
            if (rc == COFFER_OK) {
                rc = write_header_locked(t);
            }
            if (rc != COFFER_OK) {
                t->failed = failed = true; /* neither plaintext nor encrypted from here: refuse events */
            }
        }
        pthread_mutex_unlock(&t->lock);
        audit_data_key_clean(&k);
        after_append(t, old_fd, rc == COFFER_OK);
        if (failed) {
            return coffer_fail(COFFER_ERR_AUDIT, "the encrypted audit trail could not be started");
        }
    }
    if (rc != COFFER_OK) {
        return coffer_fail(COFFER_ERR_AUDIT, "the audit trail kept rotating while its data key was fetched");
    }
    return COFFER_OK;
}

/* One write(2); a short write is undone so no torn line stays behind for the next event. */
static coffer_err write_locked(audit_trail *t, const char *line, size_t len)
{
    ssize_t w;
    do {
        w = write(t->fd, line, len);
    } while (w < 0 && errno == EINTR);
    if (w == (ssize_t)len) {
        return COFFER_OK;
    }
    int e = w < 0 ? errno : ENOSPC;
    if (w > 0 && ftruncate(t->fd, (off_t)t->file_size) != 0) {
        t->failed = true;
        log_error("audit: partial write could not be undone; refusing further events");
    }
    log_error("audit: write to " AUDIT_FILE_FMT " failed: %s", t->file_no, strerror(e));
    return coffer_fail(COFFER_ERR_AUDIT, "the audit trail cannot be written");
}

/* ---------------------------------------------------------------- bounding */

#define OMITTED_MEMBER "omitted"

/* Bytes of the compact JSON of v (an upper bound is enough: only compared with budgets). */
static size_t json_size(const json_t *v)
{
    return json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* A copy of the first bytes of s (cut at a UTF-8 boundary) followed by the marker. */
static json_t *string_cut(const char *s)
{
    static const char marker[] = AUDIT_TRUNCATED_MARKER;
    char buf[AUDIT_MAX_STRING_BYTES];
    size_t keep = AUDIT_MAX_STRING_BYTES - (sizeof(marker) - 1);
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) {
        keep--; /* s[keep] continues a sequence: cut before the sequence starts */
    }
    memcpy(buf, s, keep);
    memcpy(buf + keep, marker, sizeof(marker) - 1);
    return json_stringn(buf, keep + sizeof(marker) - 1);
}

static bool is_omitted_marker(const json_t *v)
{
    return json_is_object(v) && json_is_true(json_object_get(v, OMITTED_MEMBER));
}

static json_t *omitted_marker(size_t original)
{
    return json_pack("{s:b,s:I}", OMITTED_MEMBER, 1, "originalSize", (json_int_t)original);
}

/* Cuts every over-long string inside v (objects and arrays, any depth). */
static coffer_err cut_strings(json_t *v)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *val;
        void *tmp;
        json_object_foreach_safe(v, tmp, key, val)
        {
            if (json_is_string(val) && json_string_length(val) > AUDIT_MAX_STRING_BYTES) {
                json_t *cut = string_cut(json_string_value(val));
                if (cut == NULL || json_object_set_new(v, key, cut) != 0) {
                    return coffer_fail(COFFER_ERR_NOMEM, "out of memory bounding an audit event");
                }
            } else {
                TRY(cut_strings(val));
            }
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *val = json_array_get(v, i);
            if (json_is_string(val) && json_string_length(val) > AUDIT_MAX_STRING_BYTES) {
                json_t *cut = string_cut(json_string_value(val));
                if (cut == NULL || json_array_set_new(v, i, cut) != 0) {
                    return coffer_fail(COFFER_ERR_NOMEM, "out of memory bounding an audit event");
                }
            } else {
                TRY(cut_strings(val));
            }
        }
    }
    return COFFER_OK;
}

static coffer_err omit_member(json_t *event, const char *key, size_t size)
{
    json_t *m = omitted_marker(size);
    if (m == NULL || json_object_set_new(event, key, m) != 0) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory bounding an audit event");
    }
    return COFFER_OK;
}

/* Cuts the over-long strings directly in the event (userAgent, errorMessage, ...): always. */
static coffer_err cut_top_strings(json_t *event)
{
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(event, tmp, key, val)
    {
        if (json_is_string(val) && json_string_length(val) > AUDIT_MAX_STRING_BYTES) {
            json_t *cut = string_cut(json_string_value(val));
            if (cut == NULL || json_object_set_new(event, key, cut) != 0) {
                return coffer_fail(COFFER_ERR_NOMEM, "out of memory bounding an audit event");
            }
        }
    }
    return COFFER_OK;
}

/*
 * The expensive part, run only for an event whose JSON is over AUDIT_MAX_FIELD_BYTES: inside
 * an oversized member cut the long strings, then omit what is still too large.
 */
static coffer_err bound_members(json_t *event)
{
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(event, tmp, key, val)
    {
        if (!json_is_object(val) && !json_is_array(val)) {
            continue;
        }
        if (json_size(val) <= AUDIT_MAX_FIELD_BYTES) {
            continue;
        }
        TRY(cut_strings(val));
        size_t n = json_size(val);
        if (n > AUDIT_MAX_FIELD_BYTES) {
            TRY(omit_member(event, key, n));
        }
    }
    /* Still over the budget: omit the largest container members until it fits. */
    while (json_size(event) > AUDIT_EVENT_BUDGET_BYTES) {
        const char *big = NULL;
        size_t big_n = 0;
        json_object_foreach(event, key, val)
        {
            if ((json_is_object(val) || json_is_array(val)) && !is_omitted_marker(val)) {
                size_t n = json_size(val);
                if (n > big_n) {
                    big = key;
                    big_n = n;
                }
            }
        }
        if (big == NULL) {
            return coffer_fail(COFFER_ERR_USAGE, "the audit event cannot be bounded");
        }
        TRY(omit_member(event, big, big_n));
    }
    return COFFER_OK;
}

/*
 * Serialises `event` into `line` (empty on entry) and frames it:
 * `{"previousEventHash":"` + 64 placeholder chars + `",` + members + `}` + '\n'.
 * The serialised object is written at the comma slot, so its '{' becomes the separator.
 */
static coffer_err frame_event(json_t *event, coffer_buf *line)
{
    TRY(coffer_buf_reserve(line, PREFIX_LEN + 1024));
    line->len = PREFIX_LEN - 1;
    TRY(json_out_compact(event, line));
    size_t body = line->len - (PREFIX_LEN - 1);
    if (body < 2) {
        return coffer_fail(COFFER_ERR_AUDIT, "the audit event cannot be serialised");
    }
    char *l = (char *)line->data;
    memcpy(l, PREFIX_HEAD, PREFIX_HEAD_LEN);
    l[PREFIX_HEAD_LEN + AUDIT_HASH_HEX_LEN] = '"';
    if (body == 2) {
        /* {} : no members, so no comma either. */
        l[PREFIX_LEN - 1] = '}';
        line->len = PREFIX_LEN;
    } else {
        l[PREFIX_LEN - 1] = ',';
    }
    return coffer_buf_append_u8(line, '\n');
}

/*
 * With t->lock held: rotates first when the line would overflow the file (the old descriptor,
 * still to sync and close, goes to *old_fd), splices the chain head into the framed line, writes
 * it and makes its hash the new head.
 */
static coffer_err append_locked(audit_trail *t, char *line, size_t len, int *old_fd, bool *want_key)
{
    /* frame_event made the line: prefix with a head slot, at least "{}" and the newline. */
    assert(len > PREFIX_LEN && line[len - 1] == '\n');
    TRY(prepare_locked(t, len, old_fd, want_key));
    memcpy(line + PREFIX_HEAD_LEN, t->head, AUDIT_HASH_HEX_LEN);
    if (t->enc_cur) {
        char name[32];
        file_name_of(t->file_no, name);
        t->enc_out.len = 0;
        TRY(audit_enc_seal_line(&t->cur, name, t->head, t->node_id, (const uint8_t *)line, len - 1,
                                &t->enc_out));
        TRY(write_locked(t, (const char *)t->enc_out.data, t->enc_out.len));
        hash_into_head(t, t->enc_out.data, t->enc_out.len - 1);
        t->file_size += t->enc_out.len;
        return COFFER_OK;
    }
    TRY(write_locked(t, line, len));
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(line, len - 1, h);
    coffer_hex_encode(h, sizeof(h), t->head);
    t->file_size += len;
    return COFFER_OK;
}

coffer_err audit_trail_append(audit_trail *t, json_t *event)
{
    coffer_err rc = COFFER_OK;
    coffer_buf framed = COFFER_BUF_INIT;
    char *line = NULL;
    int old_fd = -1;
    ENSURE_REF(t);
    if (!json_is_object(event)) {
        return coffer_fail(COFFER_ERR_USAGE, "an audit event must be a JSON object");
    }
    if (json_object_get(event, AUDIT_HASH_FIELD) != NULL) {
        return coffer_fail(COFFER_ERR_USAGE, "the audit event already has " AUDIT_HASH_FIELD);
    }

    if (t->node_id != NULL && json_object_get(event, AUDIT_NODE_FIELD) == NULL &&
        json_object_set_new(event, AUDIT_NODE_FIELD, json_string(t->node_id)) != 0) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    /* Outside the lock: bound, serialise and frame (serialised twice only when oversized). */
    TRY_OUT(cut_top_strings(event));
    TRY_OUT(frame_event(event, &framed));
    if (framed.len > AUDIT_MAX_FIELD_BYTES) {
        TRY_OUT(bound_members(event));
        coffer_buf_reset(&framed);
        TRY_OUT(frame_event(event, &framed));
    }
    if (framed.len > AUDIT_MAX_EVENT_BYTES) {
        FAIL_OUT(COFFER_ERR_USAGE, "audit event too large (%zu bytes)", framed.len); /* cannot happen */
    }
    line = (char *)framed.data;
    size_t len = framed.len;

    /* Critical section: splice the head, write, hash the new line. */
    bool want_key = false;
    pthread_mutex_lock(&t->lock);
    rc = append_locked(t, line, len, &old_fd, &want_key);
    pthread_mutex_unlock(&t->lock);

    /* Whether or not the line was written: a rotation that happened is finished here. */
    after_append(t, old_fd, want_key);
out:
    coffer_buf_free(&framed);
    return rc;
}

/*
 * With t->lock held, the current file encrypted: as write_batch_locked, each line sealed into
 * t->enc_out and chained by its sealed form, all of them still one write(2).
 */
static coffer_err write_sealed_batch_locked(audit_trail *t, coffer_buf *lines)
{
    char name[32];
    char head[AUDIT_HASH_HEX_LEN + 1];
    file_name_of(t->file_no, name);
    memcpy(head, t->head, sizeof(head));
    t->enc_out.len = 0;
    char *l = (char *)lines->data;
    char *end = l + lines->len;
    while (l < end) {
        char *nl = memchr(l, '\n', (size_t)(end - l));
        assert(nl != NULL && (size_t)(nl - l) >= PREFIX_LEN);
        memcpy(l + PREFIX_HEAD_LEN, head, AUDIT_HASH_HEX_LEN);
        size_t at = t->enc_out.len;
        TRY(audit_enc_seal_line(&t->cur, name, head, t->node_id, (const uint8_t *)l, (size_t)(nl - l),
                                &t->enc_out));
        uint8_t h[CRYPTO_SHA256_LEN];
        crypto_sha256(t->enc_out.data + at, t->enc_out.len - at - 1, h);
        coffer_hex_encode(h, sizeof(h), head);
        l = nl + 1;
    }
    TRY(write_locked(t, (const char *)t->enc_out.data, t->enc_out.len));
    memcpy(t->head, head, sizeof(head));
    t->file_size += t->enc_out.len;
    return COFFER_OK;
}

/*
 * With t->lock held: fills the head slot of every line of `lines` in order (each line's hash
 * is the next one's previousEventHash), writes them with one write(2) and, only once that
 * worked, makes the last line's hash the head. The chain is spliced under the lock because
 * each line's hash depends on the line before it, whichever thread wrote that one.
 */
static coffer_err write_batch_locked(audit_trail *t, coffer_buf *lines, int *old_fd, bool *want_key)
{
    TRY(prepare_locked(t, lines->len, old_fd, want_key));
    if (t->enc_cur) {
        return write_sealed_batch_locked(t, lines);
    }
    char head[AUDIT_HASH_HEX_LEN + 1];
    memcpy(head, t->head, sizeof(head));
    char *l = (char *)lines->data;
    char *end = l + lines->len;
    while (l < end) {
        char *nl = memchr(l, '\n', (size_t)(end - l));
        assert(nl != NULL && (size_t)(nl - l) >= PREFIX_LEN); /* at least {"previousEventHash":"..."} */
        memcpy(l + PREFIX_HEAD_LEN, head, AUDIT_HASH_HEX_LEN);
        uint8_t h[CRYPTO_SHA256_LEN];
        crypto_sha256(l, (size_t)(nl - l), h);
        coffer_hex_encode(h, sizeof(h), head);
        l = nl + 1;
    }
    TRY(write_locked(t, (const char *)lines->data, lines->len));
    memcpy(t->head, head, sizeof(head));
    t->file_size += lines->len;
    return COFFER_OK;
}

coffer_err audit_trail_write_batch(audit_trail *t, audit_batch *b)
{
    ENSURE_REF(t);
    ENSURE_REF(b);
    if (b->open) {
        return coffer_fail(COFFER_ERR_USAGE, "an audit event is still being written");
    }
    if (b->count == 0) {
        return COFFER_OK;
    }
    int old_fd = -1;
    bool want_key = false;
    pthread_mutex_lock(&t->lock);
    coffer_err rc = write_batch_locked(t, &b->lines, &old_fd, &want_key);
    pthread_mutex_unlock(&t->lock);
    after_append(t, old_fd, want_key);
    b->lines.len = 0;
    b->count = 0;
    return rc;
}
