/*
 * Fault hooks for cofferd_faults, a test-only build of cofferd: the same objects as cofferd,
 * linked with -Wl,--wrap=write,--wrap=store_precommit_set,--wrap=store_txn_commit and the audit
 * line writer's member functions (audit_line_string, _bool, _json, _object_begin) wrapped, so that
 * these calls land here first. Nothing here is in the cofferd that ships.
 *
 * While the environment names a directory in COFFER_FAULTS_DIR:
 *   - while DIR/audit exists, every write(2) to an audit trail file fails with ENOSPC, as on a
 *     full file system (the trail's own descriptor, found through /proc/self/fd);
 *   - while DIR/commit exists, every store commit of a request fails with COFFER_ERR_STORE
 *     right after the pipeline's pre-commit hook wrote the request's audit event, as a
 *     backend commit that fails after the event is on record.
 *   - while DIR/json-NAME exists, adding a member NAME to a JSON object (json_object_set_new
 *     from cofferd's own code) fails as when memory runs out: the value is released and the
 *     member is missing. This definition takes the place of jansson's for the objects linked
 *     here; the real one is found with dlsym(RTLD_NEXT). Writing a member NAME of an audit
 *     event straight into a batch (audit_line_*) fails the same way: the event is incomplete.
 * The files are looked up on every call, so a test arms and disarms a fault by creating and
 * removing them while the server runs.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "audit/audit.h"
#include "common/err.h"
#include "store/store.h"

ssize_t __real_write(int fd, const void *buf, size_t n);
void __real_audit_line_string(audit_batch *b, const char *key, const char *value, bool lossy);
void __real_audit_line_bool(audit_batch *b, const char *key, bool value);
void __real_audit_line_json(audit_batch *b, const char *key, const json_t *value);
void __real_audit_line_object_begin(audit_batch *b, const char *key);
void __wrap_audit_line_string(audit_batch *b, const char *key, const char *value, bool lossy);
void __wrap_audit_line_bool(audit_batch *b, const char *key, bool value);
void __wrap_audit_line_json(audit_batch *b, const char *key, const json_t *value);
void __wrap_audit_line_object_begin(audit_batch *b, const char *key);
void __real_store_precommit_set(store_precommit_fn fn, void *ctx);
coffer_err __real_store_txn_commit(store_txn *t);

ssize_t __wrap_write(int fd, const void *buf, size_t n);
void __wrap_store_precommit_set(store_precommit_fn fn, void *ctx);
coffer_err __wrap_store_txn_commit(store_txn *t);

/* Whether DIR/name exists (DIR from COFFER_FAULTS_DIR); false when the variable is unset. */
static bool fault_armed(const char *name)
{
    const char *dir = getenv("COFFER_FAULTS_DIR");
    if (dir == NULL || dir[0] == '\0') {
        return false;
    }
    char path[PATH_MAX];
    int w = snprintf(path, sizeof(path), "%s/%s", dir, name);
    return w > 0 && (size_t)w < sizeof(path) && access(path, F_OK) == 0;
}

/* Whether fd is open on a file of an audit trail directory (".../audit/trail-NNNNNN.jsonl"). */
static bool is_trail_fd(int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof(target) - 1);
    if (len <= 0) {
        return false;
    }
    target[len] = '\0';
    return strstr(target, "/" AUDIT_SUBDIR "/trail-") != NULL;
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    if (fault_armed("audit") && is_trail_fd(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return __real_write(fd, buf, n);
}

/* The hook the pipeline installed on this thread (store_precommit_set), NULL outside requests. */
static _Thread_local store_precommit_fn hook_fn;
static _Thread_local void *hook_ctx;

void __wrap_store_precommit_set(store_precommit_fn fn, void *ctx)
{
    hook_fn = fn;
    hook_ctx = fn != NULL ? ctx : NULL;
    __real_store_precommit_set(fn, ctx);
}

/* The pipeline's hook, then a failure: the store aborts the transaction after the event is on record. */
static coffer_err failing_hook(void *ctx)
{
    coffer_err rc = hook_fn(ctx);
    return rc != COFFER_OK ? rc : coffer_fail(COFFER_ERR_STORE, "injected fault: commit");
}

/*
 * Only commits of a request (a hook installed on this thread) fail, so the scheduler's own
 * commits and other threads are untouched. The commit still goes through store_txn_commit,
 * which runs the hook and discards the transaction when it fails, as when a backend commit
 * fails after the event was written.
 */
coffer_err __wrap_store_txn_commit(store_txn *t)
{
    if (hook_fn == NULL || !fault_armed("commit")) {
        return __real_store_txn_commit(t);
    }
    __real_store_precommit_set(failing_hook, hook_ctx);
    coffer_err rc = __real_store_txn_commit(t);
    __real_store_precommit_set(hook_fn, hook_ctx);
    return rc;
}

int json_object_set_new(json_t *object, const char *key, json_t *value)
{
    static int (*real)(json_t *, const char *, json_t *);
    char name[128];
    if (real == NULL) {
        real = (int (*)(json_t *, const char *, json_t *))dlsym(RTLD_NEXT, "json_object_set_new");
    }
    int w = key != NULL ? snprintf(name, sizeof(name), "json-%s", key) : -1;
    if (w > 0 && (size_t)w < sizeof(name) && fault_armed(name)) {
        json_decref(value);
        return -1;
    }
    return real(object, key, value);
}

/* Whether adding a member `key` is armed to fail (DIR/json-KEY). */
static bool member_fault(const char *key)
{
    char name[128];
    int w = key != NULL ? snprintf(name, sizeof(name), "json-%s", key) : -1;
    return w > 0 && (size_t)w < sizeof(name) && fault_armed(name);
}

void __wrap_audit_line_string(audit_batch *b, const char *key, const char *value, bool lossy)
{
    if (member_fault(key)) {
        audit_line_fail(b);
    }
    __real_audit_line_string(b, key, value, lossy);
}

void __wrap_audit_line_bool(audit_batch *b, const char *key, bool value)
{
    if (member_fault(key)) {
        audit_line_fail(b);
    }
    __real_audit_line_bool(b, key, value);
}

void __wrap_audit_line_json(audit_batch *b, const char *key, const json_t *value)
{
    if (member_fault(key)) {
        audit_line_fail(b);
    }
    __real_audit_line_json(b, key, value);
}

void __wrap_audit_line_object_begin(audit_batch *b, const char *key)
{
    if (member_fault(key)) {
        audit_line_fail(b);
    }
    __real_audit_line_object_begin(b, key);
}
