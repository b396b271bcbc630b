/*
 * Unit tests for src/seal: sealed-record round trips and every way a record must fail to open
 * (wrong identity, each single-bit flip, each truncation, unknown term), the keyring under a
 * wrong root key, rotation, the key file's creation and permission checks, keyring creation
 * under injected store faults, and the sealed view of a store: what it seals, what it refuses,
 * plaintext records, and the one-time conversion of a store written in clear.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seal/seal.h"
#include "seal/seal_provider.h"
#include "store/store_fault.h"

/*
 * fsync as the tree sees it: defined here, it takes the place of libc's for the code under test.
 * With fail_dir_fsync set, syncing a directory fails as it would on a failing disk.
 */
static bool fail_dir_fsync;

int fsync(int fd)
{
    struct stat sb;
    if (fail_dir_fsync && fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

struct fixture {
    char dir[64];
    char keypath[128];
    store *st;
    seal *sl;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/coffer-seal-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->keypath, sizeof(f->keypath), "%s/root.key", f->dir);
    assert_int_equal(store_open("mem:", &f->st), COFFER_OK);
    assert_int_equal(seal_open_keyfile(f->keypath, true, f->st, &f->sl), COFFER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    seal_free(f->sl);
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void seal_str(seal *sl, const char *identity, const char *pt, coffer_buf *out)
{
    assert_int_equal(seal_record_seal(sl, identity, coffer_cursor_from_str(pt), out), COFFER_OK);
}

static void expect_opens(seal *sl, const char *identity, coffer_buf *sealed, const char *pt)
{
    coffer_buf out = COFFER_SECRET_BUF_INIT;
    assert_int_equal(seal_record_open(sl, identity, coffer_buf_cursor(sealed), &out), COFFER_OK);
    assert_int_equal(out.len, strlen(pt));
    assert_memory_equal(out.data, pt, out.len);
    coffer_buf_free(&out);
}

static void expect_fails(seal *sl, const char *identity, coffer_cursor sealed)
{
    coffer_buf out = COFFER_SECRET_BUF_INIT;
    assert_int_equal(seal_record_open(sl, identity, sealed, &out), COFFER_ERR_CRYPTO);
    assert_int_equal(out.len, 0);
    coffer_buf_free(&out);
}

static uint32_t term_of(const coffer_buf *b)
{
    return (uint32_t)b->data[1] << 24 | (uint32_t)b->data[2] << 16 | (uint32_t)b->data[3] << 8 | b->data[4];
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    coffer_buf a = COFFER_BUF_INIT, b = COFFER_BUF_INIT;
    seal_str(f->sl, "kms-material/1/k/m", "key material", &a);
    assert_int_equal(a.len, strlen("key material") + SEAL_OVERHEAD);
    assert_int_equal(a.data[0], 1);
    assert_int_equal(term_of(&a), 1);
    assert_int_equal(seal_active_term(f->sl), 1);
    expect_opens(f->sl, "kms-material/1/k/m", &a, "key material");

    /* Same input twice: fresh IV, different bytes. */
    seal_str(f->sl, "kms-material/1/k/m", "key material", &b);
    assert_int_equal(a.len, b.len);
    assert_memory_not_equal(a.data, b.data, a.len);

    /* Empty plaintext, and seal appends after what is in the buffer. */
    coffer_buf c = COFFER_BUF_INIT;
    assert_int_equal(coffer_buf_append_str(&c, "prefix"), COFFER_OK);
    assert_int_equal(seal_record_seal(f->sl, "id", coffer_cursor_from(NULL, 0), &c), COFFER_OK);
    assert_int_equal(c.len, 6 + SEAL_OVERHEAD);
    coffer_buf out = COFFER_SECRET_BUF_INIT;
    assert_int_equal(seal_record_open(f->sl, "id", coffer_cursor_from(c.data + 6, c.len - 6), &out),
                     COFFER_OK);
    assert_int_equal(out.len, 0);

    /* Arguments */
    assert_int_equal(seal_record_seal(f->sl, "", coffer_cursor_from_str("x"), &out), COFFER_ERR_USAGE);
    assert_int_equal(seal_record_seal(f->sl, NULL, coffer_cursor_from_str("x"), &out), COFFER_ERR_USAGE);
    assert_int_equal(seal_record_open(f->sl, NULL, coffer_buf_cursor(&a), &out), COFFER_ERR_USAGE);
    coffer_buf_free(&out);
    coffer_buf_free(&a);
    coffer_buf_free(&b);
    coffer_buf_free(&c);
}

static void test_wrong_identity(void **state)
{
    struct fixture *f = *state;
    coffer_buf a = COFFER_BUF_INIT;
    seal_str(f->sl, "iam-access-key/AKIAAAAAAAAAAAAAAAAA", "secret", &a);
    expect_fails(f->sl, "iam-access-key/AKIAAAAAAAAAAAAAAAAB", coffer_buf_cursor(&a));
    expect_fails(f->sl, "iam-access-key/AKIAAAAAAAAAAAAAAAA", coffer_buf_cursor(&a));
    expect_fails(f->sl, "iam-access-key/AKIAAAAAAAAAAAAAAAAAA", coffer_buf_cursor(&a));
    /* Appended output buffer is left untouched on failure. */
    coffer_buf out = COFFER_SECRET_BUF_INIT;
    assert_int_equal(coffer_buf_append_str(&out, "keep"), COFFER_OK);
    assert_int_equal(seal_record_open(f->sl, "other", coffer_buf_cursor(&a), &out), COFFER_ERR_CRYPTO);
    assert_int_equal(out.len, 4);
    coffer_buf_free(&out);
    coffer_buf_free(&a);
}

static void test_every_bit_flip_fails(void **state)
{
    struct fixture *f = *state;
    coffer_buf a = COFFER_BUF_INIT;
    seal_str(f->sl, "id/x", "sixteen byte msg", &a);
    for (size_t i = 0; i < a.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            a.data[i] ^= (uint8_t)(1u << bit);
            expect_fails(f->sl, "id/x", coffer_buf_cursor(&a));
            a.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    expect_opens(f->sl, "id/x", &a, "sixteen byte msg");
    coffer_buf_free(&a);
}

static void test_truncations_fail(void **state)
{
    struct fixture *f = *state;
    coffer_buf a = COFFER_BUF_INIT;
    seal_str(f->sl, "id/t", "plaintext", &a);
    for (size_t n = 0; n < a.len; n++) {
        expect_fails(f->sl, "id/t", coffer_cursor_from(a.data, n));
        /* dropping bytes from the front as well */
        expect_fails(f->sl, "id/t", coffer_cursor_from(a.data + a.len - n, n));
    }
    /* and a byte appended */
    assert_int_equal(coffer_buf_append_u8(&a, 0), COFFER_OK);
    expect_fails(f->sl, "id/t", coffer_buf_cursor(&a));
    coffer_buf_free(&a);
}

static void test_unknown_term_and_version(void **state)
{
    struct fixture *f = *state;
    coffer_buf a = COFFER_BUF_INIT;
    seal_str(f->sl, "id/u", "plaintext", &a);
    a.data[4] = 99; /* term 99: not in the keyring, not in the store either */
    expect_fails(f->sl, "id/u", coffer_buf_cursor(&a));
    a.data[4] = 0; /* term 0 */
    expect_fails(f->sl, "id/u", coffer_buf_cursor(&a));
    a.data[4] = 1;
    a.data[0] = 2; /* unknown format version */
    expect_fails(f->sl, "id/u", coffer_buf_cursor(&a));
    a.data[0] = 1;
    expect_opens(f->sl, "id/u", &a, "plaintext");
    coffer_buf_free(&a);
}

static void test_wrong_root_key(void **state)
{
    struct fixture *f = *state;
    char other[160];
    snprintf(other, sizeof(other), "%s/other.key", f->dir);
    seal *sl = NULL;
    assert_int_equal(seal_open_keyfile(other, true, f->st, &sl), COFFER_ERR_CRYPTO);
    assert_null(sl);

    /* The right key still opens it, and records sealed before open after reopening. */
    coffer_buf a = COFFER_BUF_INIT;
    seal_str(f->sl, "id/r", "persisted", &a);
    assert_int_equal(seal_open_keyfile(f->keypath, false, f->st, &sl), COFFER_OK);
    expect_opens(sl, "id/r", &a, "persisted");
    seal_free(sl);
    sl = NULL;

    /* A tampered stored keyring does not open either. */
    coffer_buf kr = COFFER_BUF_INIT;
    assert_int_equal(store_get(f->st, "seal/keyring", &kr), COFFER_OK);
    kr.data[kr.len / 2] ^= 1;
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "seal/keyring", coffer_buf_cursor(&kr)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(seal_open_keyfile(f->keypath, false, f->st, &sl), COFFER_ERR_CRYPTO);
    assert_null(sl);
    coffer_buf_free(&kr);
    coffer_buf_free(&a);
}

static void test_rotation(void **state)
{
    struct fixture *f = *state;
    coffer_buf r1 = COFFER_BUF_INIT, r2 = COFFER_BUF_INIT, r3 = COFFER_BUF_INIT;
    seal_str(f->sl, "id/1", "one", &r1);
    assert_int_equal(seal_rotate(f->sl), COFFER_OK);
    assert_int_equal(seal_active_term(f->sl), 2);
    seal_str(f->sl, "id/2", "two", &r2);
    assert_int_equal(term_of(&r1), 1);
    assert_int_equal(term_of(&r2), 2);
    expect_opens(f->sl, "id/1", &r1, "one");
    expect_opens(f->sl, "id/2", &r2, "two");

    /* A second seal over the same store (another node) sees both terms... */
    seal *other = NULL;
    assert_int_equal(seal_open_keyfile(f->keypath, false, f->st, &other), COFFER_OK);
    assert_int_equal(seal_active_term(other), 2);
    expect_opens(other, "id/1", &r1, "one");
    /* ...and when this one rotates again, the other picks term 3 up on first sight. */
    assert_int_equal(seal_rotate(f->sl), COFFER_OK);
    seal_str(f->sl, "id/3", "three", &r3);
    assert_int_equal(term_of(&r3), 3);
    expect_opens(other, "id/3", &r3, "three");
    assert_int_equal(seal_active_term(other), 3);
    seal_free(other);
    coffer_buf_free(&r1);
    coffer_buf_free(&r2);
    coffer_buf_free(&r3);
}

static void test_keyfile_checks(void **state)
{
    struct fixture *f = *state;
    struct stat sb;
    assert_int_equal(stat(f->keypath, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, SEAL_ROOT_KEY_LEN);

    struct seal_provider *p = NULL;
    /* create=true on an existing file loads it rather than replacing it */
    uint8_t before[SEAL_ROOT_KEY_LEN], after[SEAL_ROOT_KEY_LEN];
    FILE *fp = fopen(f->keypath, "rb");
    assert_int_equal(fread(before, 1, sizeof(before), fp), sizeof(before));
    fclose(fp);
    assert_int_equal(seal_provider_file_open(f->keypath, true, &p), COFFER_OK);
    seal_provider_free(p);
    fp = fopen(f->keypath, "rb");
    assert_int_equal(fread(after, 1, sizeof(after), fp), sizeof(after));
    fclose(fp);
    assert_memory_equal(before, after, sizeof(before));

    /* group- or world-accessible: refused */
    static const mode_t bad_modes[] = {0640, 0604, 0660, 0602, 0610};
    for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
        assert_int_equal(chmod(f->keypath, bad_modes[i]), 0);
        p = NULL;
        assert_int_equal(seal_provider_file_open(f->keypath, false, &p), COFFER_ERR_CONFIG);
        assert_null(p);
        assert_non_null(strstr(coffer_last_message(), "chmod 600"));
    }
    assert_int_equal(chmod(f->keypath, 0400), 0);
    assert_int_equal(seal_provider_file_open(f->keypath, false, &p), COFFER_OK);
    seal_provider_free(p);

    /* missing without create */
    char path[160];
    snprintf(path, sizeof(path), "%s/missing.key", f->dir);
    assert_int_equal(seal_provider_file_open(path, false, &p), COFFER_ERR_CONFIG);

    /* wrong sizes */
    static const size_t sizes[] = {0, 31, 33, 64};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(path, sizeof(path), "%s/size%zu.key", f->dir, sizes[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        uint8_t zeros[64] = {0};
        assert_int_equal(write(fd, zeros, sizes[i]), (ssize_t)sizes[i]);
        close(fd);
        assert_int_equal(seal_provider_file_open(path, false, &p), COFFER_ERR_CONFIG);
        assert_int_equal(seal_provider_file_open(path, true, &p), COFFER_ERR_CONFIG);
    }

    /* not a regular file; symlinks are not followed */
    assert_int_equal(seal_provider_file_open(f->dir, false, &p), COFFER_ERR_CONFIG);
    snprintf(path, sizeof(path), "%s/link.key", f->dir);
    assert_int_equal(symlink(f->keypath, path), 0);
    assert_int_not_equal(seal_provider_file_open(path, false, &p), COFFER_OK);
    assert_int_not_equal(seal_provider_file_open(path, true, &p), COFFER_OK);

    /* raw keys: only 32 bytes */
    uint8_t key[SEAL_ROOT_KEY_LEN + 1] = {0};
    assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, 31), &p), COFFER_ERR_USAGE);
    assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, 33), &p), COFFER_ERR_USAGE);
    assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, 32), &p), COFFER_OK);
    seal_provider_free(p);
}

/* A root key file whose directory entry cannot be synced is not created: nothing is left behind. */
static void test_keyfile_dir_sync_fails(void **state)
{
    struct fixture *f = *state;
    char path[160];
    struct stat sb;
    struct seal_provider *p = NULL;
    snprintf(path, sizeof(path), "%s/unsynced.key", f->dir);
    fail_dir_fsync = true;
    coffer_err rc = seal_provider_file_open(path, true, &p);
    fail_dir_fsync = false;
    assert_int_equal(rc, COFFER_ERR_IO);
    assert_null(p);
    assert_int_not_equal(stat(path, &sb), 0);
    assert_int_equal(seal_provider_file_open(path, true, &p), COFFER_OK);
    seal_provider_free(p);
    assert_int_equal(stat(path, &sb), 0);
}

/* Keyring creation under store faults: it fails cleanly and leaves nothing half-made. */
static void test_keyring_creation_faults(void **state)
{
    uint8_t key[SEAL_ROOT_KEY_LEN];
    memset(key, 7, sizeof(key));
    store *inner = NULL, *st = NULL;
    assert_int_equal(store_open("mem:", &inner), COFFER_OK);
    assert_int_equal(store_fault_wrap(inner, &st), COFFER_OK);
    for (int n = 0; n < 2; n++) {
        struct seal_provider *p = NULL;
        seal *sl = NULL;
        store_fault_set(st, n); /* put, commit */
        assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p), COFFER_OK);
        assert_int_equal(seal_open(p, st, &sl), COFFER_ERR_STORE);
        assert_null(sl);
        coffer_buf b = COFFER_BUF_INIT;
        assert_int_equal(store_get(st, "seal/keyring", &b), COFFER_ERR_NOT_FOUND);
        coffer_buf_free(&b);
    }
    store_fault_set(st, -1);
    struct seal_provider *p = NULL;
    seal *sl = NULL;
    assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    /* A rotation whose commit fails changes nothing. */
    store_fault_set(st, 1);
    assert_int_equal(seal_rotate(sl), COFFER_ERR_STORE);
    assert_int_equal(seal_active_term(sl), 1);
    store_fault_set(st, -1);
    assert_int_equal(seal_rotate(sl), COFFER_OK);
    assert_int_equal(seal_active_term(sl), 2);
    seal_free(sl);
    store_close(st);
}

#define THREADS 4
#define ROUNDS 200

static void *seal_worker(void *arg)
{
    seal *sl = arg;
    for (int i = 0; i < ROUNDS; i++) {
        coffer_buf a = COFFER_BUF_INIT, out = COFFER_SECRET_BUF_INIT;
        if (seal_record_seal(sl, "id/thread", coffer_cursor_from_str("payload"), &a) != COFFER_OK ||
            seal_record_open(sl, "id/thread", coffer_buf_cursor(&a), &out) != COFFER_OK || out.len != 7) {
            return (void *)1;
        }
        coffer_buf_free(&a);
        coffer_buf_free(&out);
    }
    return NULL;
}

static void test_threads_with_rotation(void **state)
{
    struct fixture *f = *state;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, seal_worker, f->sl), 0);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(seal_rotate(f->sl), COFFER_OK);
    }
    for (int i = 0; i < THREADS; i++) {
        void *res = (void *)-1;
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
    }
    assert_int_equal(seal_active_term(f->sl), 6);
}

/* ---- the sealed view of a store (seal_store.c) ---- */

static void put_str(store *st, const char *key, const char *value, bool plain)
{
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    coffer_cursor v = coffer_cursor_from_str(value);
    assert_int_equal(plain ? store_txn_put_plain(t, key, v) : store_txn_put(t, key, v), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
}

static void expect_record(store *st, const char *key, const char *value)
{
    coffer_buf b = COFFER_SECRET_BUF_INIT;
    assert_int_equal(store_get(st, key, &b), COFFER_OK);
    assert_int_equal(b.len, strlen(value));
    assert_memory_equal(b.data, value, b.len);
    coffer_buf_free(&b);
}

/* The bare store's bytes for `key` (what a backend holds). */
static void raw_value(store *st, const char *key, coffer_buf *out)
{
    coffer_buf_reset(out);
    assert_int_equal(store_get_plain(st, key, out), COFFER_OK);
}

static bool holds(const coffer_buf *b, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; b->len >= n && i <= b->len - n; i++) {
        if (memcmp(b->data + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

struct scan_seen {
    char keys[8][64];
    char values[8][64];
    size_t n;
};

static coffer_err record_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct scan_seen *s = ctx;
    assert_true(s->n < 8);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    snprintf(s->values[s->n], sizeof(s->values[0]), "%.*s", (int)value.len, (const char *)value.ptr);
    s->n++;
    return COFFER_OK;
}

static void test_view_seals_every_value(void **state)
{
    struct fixture *f = *state;
    store *v = NULL;
    coffer_buf raw = COFFER_BUF_INIT, got = COFFER_BUF_INIT;
    assert_int_equal(seal_store_wrap(f->sl, f->st, &v), COFFER_OK);
    assert_string_equal(store_backend_name(v), "sealed");
    put_str(v, "svc/a", "{\"Description\":\"marker-alpha\"}", false);
    put_str(v, "svc/b", "marker-beta", false);
    expect_record(v, "svc/a", "{\"Description\":\"marker-alpha\"}");
    /* The backend holds only the sealed form. */
    raw_value(f->st, "svc/a", &raw);
    assert_int_equal(raw.len, strlen("{\"Description\":\"marker-alpha\"}") + SEAL_OVERHEAD);
    assert_false(holds(&raw, "marker-alpha"));
    /* Reads inside a transaction open too. */
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(v, &t), COFFER_OK);
    assert_int_equal(store_txn_get(t, "svc/b", &got), COFFER_OK);
    assert_int_equal(got.len, strlen("marker-beta"));
    assert_int_equal(store_txn_delete(t, "svc/b"), COFFER_OK);
    assert_int_equal(store_txn_get(t, "svc/b", &got), COFFER_ERR_NOT_FOUND);
    store_txn_abort(t);
    /* Scans open every value, skip the barrier's own records, and count the limit in what
     * the caller sees. */
    put_str(v, "svc/c", "gamma", false);
    struct scan_seen seen = {0};
    assert_int_equal(store_scan(v, "", NULL, 0, record_cb, &seen), COFFER_OK);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.keys[0], "svc/a");
    assert_string_equal(seen.values[1], "marker-beta");
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_scan(v, "", "svc/a", 1, record_cb, &seen), COFFER_OK);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.values[0], "marker-beta");
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_txn_begin(v, &t), COFFER_OK);
    assert_int_equal(store_txn_scan(t, "svc/", NULL, 2, record_cb, &seen), COFFER_OK);
    store_txn_abort(t);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.values[0], "{\"Description\":\"marker-alpha\"}");
    coffer_buf_free(&raw);
    coffer_buf_free(&got);
    store_close(v);
}

static void test_view_refuses_what_it_did_not_seal(void **state)
{
    struct fixture *f = *state;
    store *v = NULL;
    coffer_buf raw = COFFER_BUF_INIT, got = COFFER_SECRET_BUF_INIT;
    assert_int_equal(seal_store_wrap(f->sl, f->st, &v), COFFER_OK);
    put_str(v, "svc/a", "alpha", false);
    put_str(v, "svc/b", "beta", false);
    raw_value(f->st, "svc/a", &raw);
    /* Each flipped bit of a stored value: an error, nothing served. */
    for (size_t i = 0; i < raw.len; i++) {
        raw.data[i] ^= 0x01;
        store_txn *t = NULL;
        assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
        assert_int_equal(store_txn_put(t, "svc/a", coffer_buf_cursor(&raw)), COFFER_OK);
        assert_int_equal(store_txn_commit(t), COFFER_OK);
        assert_int_equal(store_get(v, "svc/a", &got), COFFER_ERR_STORE);
        assert_int_equal(got.len, 0);
        raw.data[i] ^= 0x01;
    }
    /* A sealed value moved under another key. */
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "svc/b", coffer_buf_cursor(&raw)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(store_get(v, "svc/b", &got), COFFER_ERR_STORE);
    /* A scan meeting a bad record stops with the error. */
    struct scan_seen seen = {0};
    assert_int_equal(store_scan(v, "svc/", NULL, 0, record_cb, &seen), COFFER_ERR_STORE);
    /* A value written in clear under the view's back. */
    put_str(f->st, "svc/c", "gamma", false);
    assert_int_equal(store_get(v, "svc/c", &got), COFFER_ERR_STORE);
    assert_int_equal(got.len, 0);
    coffer_buf_free(&raw);
    coffer_buf_free(&got);
    store_close(v);
}

static void test_view_plain_records(void **state)
{
    struct fixture *f = *state;
    store *v = NULL;
    coffer_buf got = COFFER_BUF_INIT;
    assert_int_equal(seal_store_wrap(f->sl, f->st, &v), COFFER_OK);
    /* Asked for by name, stored as given, and refused by the sealed reads. */
    put_str(v, "plain/format", "7", true);
    raw_value(f->st, "plain/format", &got);
    assert_int_equal(got.len, 1);
    assert_int_equal(got.data[0], '7');
    coffer_buf_reset(&got);
    assert_int_equal(store_get_plain(v, "plain/format", &got), COFFER_OK);
    assert_int_equal(got.len, 1);
    coffer_buf_reset(&got);
    assert_int_equal(store_get(v, "plain/format", &got), COFFER_ERR_STORE);
    /* The barrier's own records are out of reach through the view. */
    assert_int_equal(store_get(v, "seal/keyring", &got), COFFER_ERR_USAGE);
    assert_int_equal(store_get_plain(v, "seal/keyring", &got), COFFER_ERR_USAGE);
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(v, &t), COFFER_OK);
    assert_int_equal(store_txn_put(t, "seal/x", coffer_cursor_from_str("x")), COFFER_ERR_USAGE);
    assert_int_equal(store_txn_put_plain(t, "seal/x", coffer_cursor_from_str("x")), COFFER_ERR_USAGE);
    assert_int_equal(store_txn_delete(t, SEAL_STORE_MARKER), COFFER_ERR_USAGE);
    struct scan_seen seen = {0};
    assert_int_equal(store_txn_scan(t, "seal/", NULL, 0, record_cb, &seen), COFFER_ERR_USAGE);
    store_txn_abort(t);
    coffer_buf_free(&got);
    store_close(v);
}

/* A store written in clear (as by versions that sealed only key material) is sealed once. */
static void test_view_migrates_clear_records(void **state)
{
    struct fixture *f = *state;
    store *v = NULL;
    coffer_buf raw = COFFER_BUF_INIT, before = COFFER_BUF_INIT;
    put_str(f->st, "kms/key/1", "{\"Description\":\"marker-old\"}", false);
    put_str(f->st, "kms/alias/1", "marker-alias", false);
    put_str(f->st, "iam/user/1", "", false);
    assert_int_equal(seal_store_wrap(f->sl, f->st, &v), COFFER_OK);
    raw_value(f->st, "kms/key/1", &raw);
    assert_false(holds(&raw, "marker-old"));
    raw_value(f->st, "kms/alias/1", &raw);
    assert_false(holds(&raw, "marker-alias"));
    raw_value(f->st, SEAL_STORE_MARKER, &raw);
    assert_int_equal(raw.len, 1);
    expect_record(v, "kms/key/1", "{\"Description\":\"marker-old\"}");
    expect_record(v, "kms/alias/1", "marker-alias");
    expect_record(v, "iam/user/1", "");
    /* Once: a second start seals nothing again. */
    raw_value(f->st, "kms/key/1", &before);
    store_close(v);
    assert_int_equal(seal_store_wrap(f->sl, f->st, &v), COFFER_OK);
    raw_value(f->st, "kms/key/1", &raw);
    assert_int_equal(raw.len, before.len);
    assert_memory_equal(raw.data, before.data, raw.len);
    expect_record(v, "kms/key/1", "{\"Description\":\"marker-old\"}");
    store_close(v);
    /* An unknown format number is refused rather than guessed at. */
    put_str(f->st, SEAL_STORE_MARKER, "9", true);
    assert_int_equal(seal_store_wrap(f->sl, f->st, &v), COFFER_ERR_STORE);
    coffer_buf_free(&raw);
    coffer_buf_free(&before);
}

/* The conversion is one transaction: a failure at any write leaves every record in clear, and
 * the next start converts them all. */
static void test_view_migration_faults(void **state)
{
    (void)state;
    uint8_t key[SEAL_ROOT_KEY_LEN];
    memset(key, 0x42, sizeof(key));
    for (int budget = 0;; budget++) {
        store *mem = NULL, *st = NULL, *v = NULL;
        seal *sl = NULL;
        struct seal_provider *p = NULL;
        coffer_buf raw = COFFER_BUF_INIT;
        assert_int_equal(store_open("mem:", &mem), COFFER_OK);
        assert_int_equal(store_fault_wrap(mem, &st), COFFER_OK);
        assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p), COFFER_OK);
        assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
        put_str(st, "a/1", "one", false);
        put_str(st, "a/2", "two", false);
        put_str(st, "a/3", "three", false);
        store_fault_set(st, budget);
        coffer_err rc = seal_store_wrap(sl, st, &v);
        store_fault_set(st, -1);
        if (rc == COFFER_OK) {
            assert_true(budget >= 5); /* three puts, the marker, the commit */
            expect_record(v, "a/2", "two");
            store_close(v);
            seal_free(sl);
            store_close(st);
            break;
        }
        assert_int_equal(rc, COFFER_ERR_STORE);
        raw_value(st, "a/2", &raw);
        assert_int_equal(raw.len, 3);
        assert_memory_equal(raw.data, "two", 3);
        assert_int_equal(store_get_plain(st, SEAL_STORE_MARKER, &raw), COFFER_ERR_NOT_FOUND);
        assert_int_equal(seal_store_wrap(sl, st, &v), COFFER_OK);
        expect_record(v, "a/1", "one");
        expect_record(v, "a/3", "three");
        store_close(v);
        coffer_buf_free(&raw);
        seal_free(sl);
        store_close(st);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Root key providers: passphrase, PKCS#11, the provider record, migration, specs, the lock
 * ------------------------------------------------------------------------------------------- */

/* Argon2id at its cheapest: the tests check the plumbing, not the cost. */
#define TEST_OPS 1
#define TEST_MEM (8u << 20)

static struct seal_provider *passphrase(const char *pw)
{
    struct seal_provider *p = NULL;
    assert_int_equal(seal_provider_passphrase_new(coffer_cursor_from_str(pw), TEST_OPS, TEST_MEM, &p),
                     COFFER_OK);
    return p;
}

static void record_of(store *st, char *name, size_t cap, coffer_buf *rec)
{
    assert_int_equal(seal_provider_record(st, rec), COFFER_OK);
    assert_int_equal(seal_param_get(coffer_buf_cursor(rec), "provider", name, cap), COFFER_OK);
}

static void test_passphrase_round_trip(void **state)
{
    (void)state;
    store *st = NULL;
    seal *sl = NULL;
    coffer_buf a = COFFER_BUF_INIT, rec = COFFER_BUF_INIT;
    char name[32], salt[64], salt2[64];
    assert_int_equal(store_open("mem:", &st), COFFER_OK);
    assert_int_equal(seal_provider_record(st, &rec), COFFER_ERR_NOT_FOUND);
    assert_int_equal(seal_open(passphrase("correct horse"), st, &sl), COFFER_OK);
    seal_str(sl, "id/p", "under a passphrase", &a);
    seal_free(sl);
    sl = NULL;

    /* The record names the provider and keeps the salt and costs, in clear. */
    record_of(st, name, sizeof(name), &rec);
    assert_string_equal(name, "passphrase");
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec), "salt", salt, sizeof(salt)), COFFER_OK);
    assert_int_equal(strlen(salt), 32);
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec), "ops", salt2, sizeof(salt2)), COFFER_OK);
    assert_string_equal(salt2, "1");
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec), "kdf", salt2, sizeof(salt2)), COFFER_OK);
    assert_string_equal(salt2, "argon2id13");

    /* The same passphrase opens it again (stored costs win over the provider's own). */
    struct seal_provider *p = NULL;
    assert_int_equal(seal_provider_passphrase_new(coffer_cursor_from_str("correct horse"), 2, 16u << 20, &p),
                     COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    expect_opens(sl, "id/p", &a, "under a passphrase");
    seal_free(sl);
    sl = NULL;

    /* A wrong one does not, and says so. */
    assert_int_equal(seal_open(passphrase("correct horsf"), st, &sl), COFFER_ERR_CRYPTO);
    assert_null(sl);
    assert_non_null(strstr(coffer_last_message(), "wrong passphrase"));

    /* Nor does another provider kind: the record says which one is needed. */
    uint8_t key[SEAL_ROOT_KEY_LEN] = {0};
    assert_int_equal(seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_ERR_CONFIG);
    assert_non_null(strstr(coffer_last_message(), "sealed by the passphrase provider"));
    bool fresh = true;
    assert_int_equal(seal_spec_check(st, "file", &fresh), COFFER_ERR_CONFIG);
    assert_int_equal(seal_spec_check(st, "passphrase:env=X", &fresh), COFFER_OK);
    assert_false(fresh);

    /* The salt is fresh per keyring. */
    store *st2 = NULL;
    coffer_buf rec2 = COFFER_BUF_INIT;
    assert_int_equal(store_open("mem:", &st2), COFFER_OK);
    assert_int_equal(seal_spec_check(st2, "file", &fresh), COFFER_OK);
    assert_true(fresh);
    assert_int_equal(seal_open(passphrase("correct horse"), st2, &sl), COFFER_OK);
    record_of(st2, name, sizeof(name), &rec2);
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec2), "salt", salt2, sizeof(salt2)), COFFER_OK);
    assert_string_not_equal(salt, salt2);
    seal_free(sl);
    store_close(st2);
    coffer_buf_free(&rec2);

    /* Empty and out-of-range inputs are refused before any work. */
    p = NULL;
    assert_int_equal(seal_provider_passphrase_new(coffer_cursor_from_str(""), 1, TEST_MEM, &p),
                     COFFER_ERR_CONFIG);
    assert_int_equal(seal_provider_passphrase_new(coffer_cursor_from_str("x"), 1000, TEST_MEM, &p),
                     COFFER_ERR_CONFIG);
    assert_null(p);
    coffer_buf_free(&a);
    coffer_buf_free(&rec);
    store_close(st);
}

/* A keyring made before the record existed is the key file's; the record is added on open. */
static void test_legacy_data_dir_is_file(void **state)
{
    struct fixture *f = *state;
    coffer_buf rec = COFFER_BUF_INIT;
    char name[32];
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(f->st, &t), COFFER_OK);
    assert_int_equal(store_txn_delete(t, SEAL_PROVIDER_RECORD), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    record_of(f->st, name, sizeof(name), &rec);
    assert_string_equal(name, "file");
    seal *sl = NULL;
    assert_int_equal(seal_open(passphrase("pw"), f->st, &sl), COFFER_ERR_CONFIG);
    assert_int_equal(seal_open_keyfile(f->keypath, false, f->st, &sl), COFFER_OK);
    seal_free(sl);
    coffer_buf raw = COFFER_BUF_INIT;
    assert_int_equal(store_get_plain(f->st, SEAL_PROVIDER_RECORD, &raw), COFFER_OK);
    assert_int_equal(raw.len, strlen("provider=file\n"));
    assert_memory_equal(raw.data, "provider=file\n", raw.len);
    coffer_buf_free(&raw);
    coffer_buf_free(&rec);
}

/* file -> passphrase -> another key file: records sealed at the start open at every step. */
static void test_migrate(void **state)
{
    struct fixture *f = *state;
    coffer_buf a = COFFER_BUF_INIT, before = COFFER_BUF_INIT, after = COFFER_BUF_INIT, rec = COFFER_BUF_INIT;
    char name[32], other[160];
    seal *sl = NULL;
    struct seal_provider *from = NULL, *to = NULL;
    seal_str(f->sl, "id/m", "migrated", &a);
    assert_int_equal(seal_rotate(f->sl), COFFER_OK);

    assert_int_equal(seal_provider_file_open(f->keypath, false, &from), COFFER_OK);
    to = passphrase("pw");
    assert_int_equal(seal_migrate(f->st, from, to), COFFER_OK);
    seal_provider_free(from);
    seal_provider_free(to);
    record_of(f->st, name, sizeof(name), &rec);
    assert_string_equal(name, "passphrase");
    /* The old root key no longer opens the data dir. */
    assert_int_equal(seal_open_keyfile(f->keypath, false, f->st, &sl), COFFER_ERR_CONFIG);
    assert_int_equal(seal_open(passphrase("pw"), f->st, &sl), COFFER_OK);
    expect_opens(sl, "id/m", &a, "migrated");
    assert_int_equal(seal_active_term(sl), 2);
    seal_free(sl);
    sl = NULL;

    /* A wrong `from` changes nothing: another kind, then the right kind with the wrong secret. */
    assert_int_equal(store_get_plain(f->st, "seal/keyring", &before), COFFER_OK);
    snprintf(other, sizeof(other), "%s/other.key", f->dir);
    assert_int_equal(seal_provider_file_open(other, true, &to), COFFER_OK);
    assert_int_equal(seal_provider_file_open(f->keypath, false, &from), COFFER_OK);
    assert_int_equal(seal_migrate(f->st, from, to), COFFER_ERR_CONFIG);
    seal_provider_free(from);
    from = passphrase("not pw");
    assert_int_equal(seal_migrate(f->st, from, to), COFFER_ERR_CRYPTO);
    seal_provider_free(from);
    assert_int_equal(store_get_plain(f->st, "seal/keyring", &after), COFFER_OK);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);

    from = passphrase("pw");
    assert_int_equal(seal_migrate(f->st, from, to), COFFER_OK);
    seal_provider_free(from);
    seal_provider_free(to);
    coffer_buf_reset(&rec);
    record_of(f->st, name, sizeof(name), &rec);
    assert_string_equal(name, "file");
    assert_int_equal(seal_open_keyfile(other, false, f->st, &sl), COFFER_OK);
    expect_opens(sl, "id/m", &a, "migrated");
    seal_free(sl);

    /* Nothing to migrate in a store without a keyring. */
    store *empty = NULL;
    assert_int_equal(store_open("mem:", &empty), COFFER_OK);
    from = passphrase("a");
    to = passphrase("b");
    assert_int_equal(seal_migrate(empty, from, to), COFFER_ERR_NOT_FOUND);
    seal_provider_free(from);
    seal_provider_free(to);
    store_close(empty);
    coffer_buf_free(&a);
    coffer_buf_free(&before);
    coffer_buf_free(&after);
    coffer_buf_free(&rec);
}

static void expect_spec_fails(const char *spec, const char *dir, const char *why)
{
    struct seal_provider *p = NULL;
    assert_int_equal(seal_provider_from_spec(spec, dir, false, &p), COFFER_ERR_CONFIG);
    assert_null(p);
    if (strstr(coffer_last_message(), why) == NULL) {
        fail_msg("spec '%s': got '%s', want '%s'", spec, coffer_last_message(), why);
    }
}

/* One passphrase from each source opens the same keyring. */
static void test_specs_and_passphrase_sources(void **state)
{
    struct fixture *f = *state;
    char spec[512], path[256], creds[160];
    store *st = NULL;
    seal *sl = NULL;
    struct seal_provider *p = NULL;
    assert_int_equal(store_open("mem:", &st), COFFER_OK);

    setenv("COFFER_TEST_PASS", "s3cret phrase", 1);
    assert_int_equal(
        seal_provider_from_spec("passphrase:env=COFFER_TEST_PASS,ops=1,mem=8", f->dir, false, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    seal_free(sl);

    /* A file, with its trailing newline dropped. */
    snprintf(path, sizeof(path), "%s/pass", f->dir);
    FILE *fp = fopen(path, "w");
    fputs("s3cret phrase\n", fp);
    fclose(fp);
    snprintf(spec, sizeof(spec), "passphrase:file=%s", path);
    assert_int_equal(seal_provider_from_spec(spec, f->dir, false, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    seal_free(sl);

    /* A file descriptor. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "s3cret phrase", 13), 13);
    close(fds[1]);
    snprintf(spec, sizeof(spec), "passphrase:fd=%d", fds[0]);
    assert_int_equal(seal_provider_from_spec(spec, f->dir, false, &p), COFFER_OK);
    close(fds[0]);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    seal_free(sl);

    /* A systemd credential, named or by its default name. */
    snprintf(creds, sizeof(creds), "%s/creds", f->dir);
    assert_int_equal(mkdir(creds, 0700), 0);
    snprintf(path, sizeof(path), "%s/coffer-passphrase", creds);
    fp = fopen(path, "w");
    fputs("s3cret phrase", fp);
    fclose(fp);
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    assert_int_equal(seal_provider_from_spec("passphrase:credential=coffer-passphrase", f->dir, false, &p),
                     COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    seal_free(sl);
    assert_int_equal(seal_provider_from_spec("passphrase", f->dir, false, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    seal_free(sl);
    expect_spec_fails("passphrase:credential=../x", f->dir, "not a plain name");
    unsetenv("CREDENTIALS_DIRECTORY");

    /* A wrong one from the environment fails closed. */
    setenv("COFFER_TEST_PASS", "s3cret phrasE", 1);
    assert_int_equal(seal_provider_from_spec("passphrase:env=COFFER_TEST_PASS", f->dir, false, &p),
                     COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_ERR_CRYPTO);
    unsetenv("COFFER_TEST_PASS");

    /* Bad specs say what is wrong. */
    expect_spec_fails("vault", f->dir, "unknown provider 'vault'");
    expect_spec_fails("file:nope=1", f->dir, "unknown setting 'nope'");
    expect_spec_fails("passphrase:env=A,file=B", f->dir, "give one of");
    expect_spec_fails("passphrase:env=COFFER_TEST_UNSET", f->dir, "is not set");
    expect_spec_fails("passphrase:file=/nonexistent/pass", f->dir, "cannot open the passphrase file");
    expect_spec_fails("passphrase:env=X,ops=x", f->dir, "ops must be a number");
    expect_spec_fails("passphrase:env", f->dir, "is not NAME=VALUE");
    expect_spec_fails("pkcs11:module=/x.so,token=t,pin-env=P", f->dir,
                      "module=PATH and key=LABEL are required");
    expect_spec_fails("pkcs11:module=/x.so,key=k,pin-env=P", f->dir, "token=LABEL or slot=N");
    expect_spec_fails("pkcs11:module=/x.so,token=t,key=k", f->dir, "pin-file=PATH or pin-env=NAME");
    expect_spec_fails("pkcs11:module=/x.so,token=t,key=k,pin-env=P,create=maybe", f->dir,
                      "create must be yes");
    setenv("COFFER_TEST_PIN", "1234", 1);
    expect_spec_fails("pkcs11:module=/nonexistent/lib.so,token=t,key=k,pin-env=COFFER_TEST_PIN", f->dir,
                      "cannot load module /nonexistent/lib.so");
    unsetenv("COFFER_TEST_PIN");

    /* The key file's own path. */
    snprintf(spec, sizeof(spec), "file:path=%s", f->keypath);
    assert_int_equal(seal_provider_from_spec(spec, "/nonexistent", false, &p), COFFER_OK);
    seal_provider_free(p);
    assert_int_equal(seal_provider_from_spec("file", f->dir, false, &p), COFFER_OK); /* DIR/root.key */
    seal_provider_free(p);
    store_close(st);
}

/* cofferd holds the lock shared; a migration wants it exclusive. */
static void test_dir_lock(void **state)
{
    struct fixture *f = *state;
    int a = -1, b = -1, c = -1;
    assert_int_equal(seal_dir_lock(f->dir, false, &a), COFFER_OK);
    assert_int_equal(seal_dir_lock(f->dir, false, &b), COFFER_OK);
    assert_int_equal(seal_dir_lock(f->dir, true, &c), COFFER_ERR_UNAVAILABLE);
    assert_non_null(strstr(coffer_last_message(), "a cofferd is running"));
    close(a);
    close(b);
    assert_int_equal(seal_dir_lock(f->dir, true, &c), COFFER_OK);
    assert_int_equal(seal_dir_lock(f->dir, false, &a), COFFER_ERR_UNAVAILABLE);
    close(c);
}

/* ---------------------------------------------------------------------------------------------
 * PKCS#11 against SoftHSM2, with a token made in a temporary directory
 * ------------------------------------------------------------------------------------------- */

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define SOFTHSM_UTIL "/usr/bin/softhsm2-util"

static bool softhsm_token(const char *dir, const char *label)
{
    char path[256], cmd[512];
    snprintf(path, sizeof(path), "%s/tokens", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", dir);
    fclose(fp);
    setenv("SOFTHSM2_CONF", path, 1);
    snprintf(cmd, sizeof(cmd),
             SOFTHSM_UTIL " --init-token --free --label %s --pin 1234 --so-pin 5678 >/dev/null", label);
    return system(cmd) == 0;
}

static coffer_err p11_open(const char *token, const char *pin, const char *key, bool create,
                           struct seal_provider **out)
{
    struct seal_pkcs11_config cfg = {
        .module = SOFTHSM_MODULE, .token = token, .pin = pin, .key_label = key, .create_key = create};
    return seal_provider_pkcs11_open(&cfg, out);
}

static void expect_p11_fails(const char *token, const char *pin, const char *key, const char *why)
{
    struct seal_provider *p = NULL;
    assert_int_equal(p11_open(token, pin, key, false, &p), COFFER_ERR_CONFIG);
    assert_null(p);
    if (strstr(coffer_last_message(), why) == NULL) {
        fail_msg("got '%s', want '%s'", coffer_last_message(), why);
    }
}

static void test_pkcs11_softhsm(void **state)
{
    struct fixture *f = *state;
    if (access(SOFTHSM_MODULE, R_OK) != 0 || access(SOFTHSM_UTIL, X_OK) != 0) {
        print_message("SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2)\n");
        skip();
    }
    assert_true(softhsm_token(f->dir, "coffer-unit"));
    store *st = NULL;
    seal *sl = NULL;
    struct seal_provider *p = NULL, *q = NULL;
    coffer_buf a = COFFER_BUF_INIT, wrapped = COFFER_BUF_INIT, rec = COFFER_BUF_INIT;
    char name[32], v[64];
    assert_int_equal(store_open("mem:", &st), COFFER_OK);

    /* No key yet: refused unless asked to make one. */
    expect_p11_fails("coffer-unit", "1234", "root", "holds no AES key labelled 'root'");
    assert_int_equal(p11_open("coffer-unit", "1234", "root", true, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    seal_str(sl, "id/h", "in the token", &a);
    seal_free(sl);
    sl = NULL;
    record_of(st, name, sizeof(name), &rec);
    assert_string_equal(name, "pkcs11");
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec), "token", v, sizeof(v)), COFFER_OK);
    assert_string_equal(v, "coffer-unit");
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec), "key", v, sizeof(v)), COFFER_OK);
    assert_string_equal(v, "root");
    assert_int_equal(seal_param_get(coffer_buf_cursor(&rec), "module", v, sizeof(v)), COFFER_OK);
    assert_string_equal(v, SOFTHSM_MODULE);
    /* The stored keyring is the token's AES-GCM: version, 12-byte IV, 9 + 36 bytes, tag. */
    assert_int_equal(store_get_plain(st, "seal/keyring", &wrapped), COFFER_OK);
    assert_int_equal(wrapped.len, 1 + 12 + 9 + 36 + 16);
    assert_int_equal(wrapped.data[0], 1);

    /* Found again by label (create=yes does not make a second one), and it opens the keyring. */
    assert_int_equal(p11_open("coffer-unit", "1234", "root", true, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    expect_opens(sl, "id/h", &a, "in the token");
    assert_int_equal(seal_rotate(sl), COFFER_OK); /* wraps in the token again */
    seal_free(sl);
    sl = NULL;

    /* Fail closed, each with its own reason. */
    expect_p11_fails("coffer-unit", "9999", "root", "wrong PIN for token 'coffer-unit'");
    expect_p11_fails("no-such-token", "1234", "root", "no token labelled 'no-such-token'");
    expect_p11_fails("coffer-unit", "1234", "other", "holds no AES key labelled 'other'");

    /* Another key of the same token does not open the keyring; the record names the right one. */
    assert_int_equal(p11_open("coffer-unit", "1234", "other", true, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_ERR_CONFIG);
    assert_non_null(strstr(coffer_last_message(), "sealed by PKCS#11 key 'root'"));

    /* pkcs11 -> passphrase -> pkcs11 (another key), both providers of one module open at once. */
    assert_int_equal(p11_open("coffer-unit", "1234", "root", false, &p), COFFER_OK);
    q = passphrase("pw");
    assert_int_equal(seal_migrate(st, p, q), COFFER_OK);
    seal_provider_free(p);
    assert_int_equal(p11_open("coffer-unit", "1234", "other", false, &p), COFFER_OK);
    assert_int_equal(seal_migrate(st, q, p), COFFER_OK);
    seal_provider_free(q);
    seal_provider_free(p);
    assert_int_equal(p11_open("coffer-unit", "1234", "other", false, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_OK);
    expect_opens(sl, "id/h", &a, "in the token");
    seal_free(sl);
    sl = NULL;

    /* A tampered keyring fails in the token as a wrong key would. */
    coffer_buf_reset(&wrapped);
    assert_int_equal(store_get_plain(st, "seal/keyring", &wrapped), COFFER_OK);
    wrapped.data[wrapped.len - 3] ^= 1;
    store_txn *t = NULL;
    assert_int_equal(store_txn_begin(st, &t), COFFER_OK);
    assert_int_equal(store_txn_put_plain(t, "seal/keyring", coffer_buf_cursor(&wrapped)), COFFER_OK);
    assert_int_equal(store_txn_commit(t), COFFER_OK);
    assert_int_equal(p11_open("coffer-unit", "1234", "other", false, &p), COFFER_OK);
    assert_int_equal(seal_open(p, st, &sl), COFFER_ERR_CRYPTO);
    assert_null(sl);

    unsetenv("SOFTHSM2_CONF");
    coffer_buf_free(&a);
    coffer_buf_free(&wrapped);
    coffer_buf_free(&rec);
    store_close(st);
}

/* With COFFER_TEST_PG_URL (the CTest entry seal_test_pg): two seals on one PostgreSQL database
 * are two nodes, and a rotation on one makes the other seal under the new term within the
 * change feed's bound, before it has opened anything sealed under it. */
static void test_pg_rotation_reaches_other_node(void **state)
{
    (void)state;
    char dir[] = "/tmp/coffer-seal-pg-XXXXXX", key[64];
    assert_non_null(mkdtemp(dir));
    snprintf(key, sizeof(key), "%s/root.key", dir);
    store *st1 = NULL, *st2 = NULL;
    seal *a = NULL, *b = NULL;
    assert_int_equal(store_open(getenv("COFFER_TEST_PG_URL"), &st1), COFFER_OK);
    assert_int_equal(store_open(getenv("COFFER_TEST_PG_URL"), &st2), COFFER_OK);
    assert_int_equal(seal_open_keyfile(key, true, st1, &a), COFFER_OK);
    assert_int_equal(seal_open_keyfile(key, false, st2, &b), COFFER_OK);
    uint32_t before = seal_active_term(b);
    assert_int_equal(seal_active_term(a), before);
    usleep(500000); /* both feeds listening */
    assert_int_equal(seal_rotate(a), COFFER_OK);
    int waited = 0;
    while (seal_active_term(b) == before && waited < STORE_CHANGE_STALENESS_MS) {
        usleep(10000);
        waited += 10;
    }
    assert_int_equal(seal_active_term(b), before + 1);
    coffer_buf r = COFFER_BUF_INIT;
    seal_str(b, "id/pg", "sealed on b", &r);
    assert_int_equal(term_of(&r), before + 1);
    expect_opens(a, "id/pg", &r, "sealed on b");
    coffer_buf_free(&r);
    seal_free(b);
    seal_free(a);
    store_close(st2);
    store_close(st1);
    unlink(key);
    rmdir(dir);
}

int main(void)
{
    if (getenv("COFFER_TEST_PG_URL") != NULL) {
        const struct CMUnitTest pg_tests[] = {
            cmocka_unit_test(test_pg_rotation_reaches_other_node),
        };
        return cmocka_run_group_tests_name("seal on PostgreSQL", pg_tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_bit_flip_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncations_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_term_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_root_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyfile_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyfile_dir_sync_fails, setup, teardown),
        cmocka_unit_test(test_keyring_creation_faults),
        cmocka_unit_test_setup_teardown(test_threads_with_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_seals_every_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_refuses_what_it_did_not_seal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_plain_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_migrates_clear_records, setup, teardown),
        cmocka_unit_test(test_view_migration_faults),
        cmocka_unit_test(test_passphrase_round_trip),
        cmocka_unit_test_setup_teardown(test_legacy_data_dir_is_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_specs_and_passphrase_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pkcs11_softhsm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
