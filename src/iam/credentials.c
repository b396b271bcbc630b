/*
 * The credential store behind SigV4 (listener -> auth -> here -> barrier -> store). An access
 * key is a JSON record under "iam/access-key/<AKID>":
 *
 *   {"account": "000000000000", "principal_arn": "...", "principal_type": "Root",
 *    "principal_id": "...", "status": "Active", "created": "2026-11-23T09:00:00Z",
 *    "secret": base64(seal_record_seal(identity "iam-access-key/<AKID>", secret access key))}
 *
 * Every request looks its key up, so lookups are served from an in-memory hash table behind a
 * rwlock; an entry keeps the already-unsealed secret in locked secret memory, so a cache hit
 * touches neither SQLite nor the barrier. Only keys that exist and are Active are cached, so
 * unknown keys cannot grow the table. Deactivating or deleting a key evicts its entry after the
 * change commits; a generation counter keeps a lookup that read the record before the change
 * from putting the stale entry back.
 *
 * Temporary credentials (STS AssumeRole) need no record: the session token is the sealed
 * session itself, base64(seal_record_seal(identity "sts-session/<ASIA AKID>", JSON {account,
 * role, session ARN, principal id, secret, issue time, expiry})). Only this server's barrier can
 * make or open one, the identity binds it to its access key id, and it survives restarts because
 * the barrier keyring is durable. Expiry is checked by the SigV4 verifier (expires_at). A token
 * sealed without an issue time ("issued") opens with issued_at 0: aws:TokenIssueTime is then
 * absent, as AWS treats a key it has no value for. A session stands for the role with the unique
 * id in its principal id ("AROA...:SESSION"): when that role is gone, so is the session.
 */
#include "iam/credentials.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/map.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

#define IAM_AKID_PREFIX "AKIA"
#define IAM_AKID_RANDOM_BYTES 10   /* 80 bits = 16 base32 characters */
#define IAM_SECRET_RANDOM_BYTES 30 /* 240 bits = 40 base64 characters, no padding */
#define IAM_KEY_RECORD_PREFIX "iam/access-key/"
#define IAM_KEY_SEAL_PREFIX "iam-access-key/"
#define IAM_CREATE_ATTEMPTS 4
#define IAM_SESSION_AKID_PREFIX "ASIA"
#define IAM_SESSION_SEAL_PREFIX "sts-session/"
#define IAM_SESSION_TOKEN_MAX 4096 /* base64 characters of a session token */

struct cred_entry {
    struct sigv4_identity id; /* secret is a secret buffer owned by the entry */
};

struct iam_creds {
    store *st;                        /* borrowed */
    seal *sl;                         /* borrowed */
    pthread_rwlock_t lock;            /* guards the table */
    coffer_map cache;                 /* access key id -> struct cred_entry * (owned) */
    atomic_uint_fast64_t gen;         /* bumped by every eviction */
    struct iam_identity_source roles; /* whose roles sessions stand for; unset: not checked */
    bool has_roles;
};

static const char base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static coffer_err unrecognized(void)
{
    return coffer_fail(COFFER_ERR_UNRECOGNIZED_CLIENT, "%s",
                       coffer_err_default_message(COFFER_ERR_UNRECOGNIZED_CLIENT));
}

/* ---------------------------------------------------------------------------------------------
 * Cache
 * ------------------------------------------------------------------------------------------- */

static struct cred_entry *cache_find(const struct iam_creds *c, coffer_cursor akid)
{
    return coffer_map_get_n(&c->cache, akid.ptr, akid.len);
}

static void entry_free(struct cred_entry *e)
{
    if (e != NULL) {
        coffer_buf_free(&e->id.secret);
        free(e);
    }
}

static void entry_free_value(void *e)
{
    entry_free(e);
}

/*
 * Inserts `e` (takes ownership) unless another thread got there first or a key was evicted
 * since the caller read the record (generation `gen`), in which case the record may be stale.
 */
static void cache_insert(struct iam_creds *c, struct cred_entry *e, uint64_t gen)
{
    pthread_rwlock_wrlock(&c->lock);
    if (atomic_load(&c->gen) != gen || cache_find(c, coffer_cursor_from_str(e->id.access_key_id)) != NULL ||
        coffer_map_put(&c->cache, e->id.access_key_id, e) != COFFER_OK) {
        /* Stale, already there, or no memory: the entry is only a cache, so drop it. */
        pthread_rwlock_unlock(&c->lock);
        entry_free(e);
        return;
    }
    pthread_rwlock_unlock(&c->lock);
}

/* Copies an identity, the secret into a fresh secret buffer. */
static coffer_err identity_copy(const struct sigv4_identity *src, struct sigv4_identity *dst)
{
    struct sigv4_identity tmp = *src;
    coffer_buf_init(&tmp.secret, true);
    coffer_err rc = coffer_buf_append(&tmp.secret, src->secret.data, src->secret.len);
    if (rc == COFFER_OK) {
        rc = coffer_buf_nul_terminate(&tmp.secret);
    }
    if (rc != COFFER_OK) {
        coffer_buf_free(&tmp.secret);
        return rc;
    }
    *dst = tmp;
    return COFFER_OK;
}

/*
 * The store's change feed: another node changed (or deleted) an access key record, or anything
 * may have changed (key NULL). The generation bump keeps a lookup that read the old record
 * from caching it after this eviction.
 */
static void creds_changed(void *ctx, const char *key)
{
    struct iam_creds *c = ctx;
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_add(&c->gen, 1);
    if (key == NULL) {
        coffer_map_clean(&c->cache);
    } else {
        coffer_map_delete(&c->cache, key + strlen(IAM_KEY_RECORD_PREFIX));
    }
    pthread_rwlock_unlock(&c->lock);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

coffer_err iam_creds_new(store *st, seal *sl, iam_creds **out)
{
    ENSURE_REF(st);
    ENSURE_REF(sl);
    ENSURE_REF(out);
    struct iam_creds *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_map_init(&c->cache, entry_free_value);
    c->st = st;
    c->sl = sl;
    pthread_rwlock_init(&c->lock, NULL);
    coffer_err rc = store_watch(st, IAM_KEY_RECORD_PREFIX, creds_changed, c);
    if (rc != COFFER_OK) {
        iam_creds_free(c);
        return rc;
    }
    *out = c;
    return COFFER_OK;
}

void iam_creds_free(iam_creds *c)
{
    if (c == NULL) {
        return;
    }
    store_unwatch(c->st, creds_changed, c);
    coffer_map_clean(&c->cache);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

/* ---------------------------------------------------------------------------------------------
 * The record: writer and reader
 * ------------------------------------------------------------------------------------------- */

static coffer_err copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap) {
        return coffer_fail(COFFER_ERR_VALIDATION, "field length %zu outside 1..%zu", n, cap - 1);
    }
    memcpy(dst, src, n + 1);
    return COFFER_OK;
}

static coffer_err record_key(const char *akid, char *out, size_t cap)
{
    int n = snprintf(out, cap, IAM_KEY_RECORD_PREFIX "%s", akid);
    ENSURE(n > 0 && (size_t)n < cap, COFFER_ERR_INTERNAL);
    return COFFER_OK;
}

static coffer_err seal_identity(const char *akid, char *out, size_t cap)
{
    int n = snprintf(out, cap, IAM_KEY_SEAL_PREFIX "%s", akid);
    ENSURE(n > 0 && (size_t)n < cap, COFFER_ERR_INTERNAL);
    return COFFER_OK;
}

/* Serialises `id` with its secret sealed; the JSON never holds the secret in clear. */
static coffer_err record_write(struct iam_creds *c, const struct sigv4_identity *id, const char *status,
                               coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT, b64 = COFFER_BUF_INIT;
    json_t *obj = NULL;
    char *text = NULL;
    char identity[sizeof(IAM_KEY_SEAL_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    char created[32];
    TRY_OUT(seal_identity(id->access_key_id, identity, sizeof(identity)));
    TRY_OUT(seal_record_seal(c->sl, identity, coffer_buf_cursor(&id->secret), &sealed));
    TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&sealed), &b64));
    TRY_OUT(coffer_buf_nul_terminate(&b64));
    coffer_time_iso8601(coffer_now_ms() / 1000, created, sizeof(created));
    obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "account", id->account_id, "principal_arn",
                    id->principal_arn, "principal_type", id->principal_type, "principal_id", id->principal_id,
                    "status", status, "created", created, "secret", (const char *)b64.data);
    if (obj == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "cannot build the access key record");
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "cannot serialise the access key record");
    }
    TRY_OUT(coffer_buf_append_str(out, text));
out:
    free(text);
    json_decref(obj);
    coffer_buf_free(&sealed);
    coffer_buf_free(&b64);
    return rc;
}

static coffer_err bad_record(void)
{
    return coffer_fail(COFFER_ERR_STORE, "malformed access key record");
}

/* Parses a stored record for `akid` and unseals its secret into a new cache entry. */
static coffer_err record_read(struct iam_creds *c, const char *akid, coffer_cursor json,
                              struct cred_entry **out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT;
    json_t *root = NULL;
    const char *account = NULL, *arn = NULL, *type = NULL, *pid = NULL, *status = NULL, *secret = NULL;
    char identity[sizeof(IAM_KEY_SEAL_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    struct cred_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_buf_init(&e->id.secret, true);
    root = json_loadb((const char *)json.ptr, json.len, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL || json_unpack(root, "{s:s, s:s, s:s, s:s, s:s, s:s}", "account", &account,
                                    "principal_arn", &arn, "principal_type", &type, "principal_id", &pid,
                                    "status", &status, "secret", &secret) != 0) {
        FAIL_OUT(COFFER_ERR_STORE, "malformed access key record");
    }
    if (strcmp(status, "Active") != 0) {
        FAIL_OUT(COFFER_ERR_UNRECOGNIZED_CLIENT, "%s",
                 coffer_err_default_message(COFFER_ERR_UNRECOGNIZED_CLIENT));
    }
    if (copy_field(e->id.access_key_id, sizeof(e->id.access_key_id), akid) != COFFER_OK ||
        copy_field(e->id.account_id, sizeof(e->id.account_id), account) != COFFER_OK ||
        copy_field(e->id.principal_arn, sizeof(e->id.principal_arn), arn) != COFFER_OK ||
        copy_field(e->id.principal_type, sizeof(e->id.principal_type), type) != COFFER_OK ||
        copy_field(e->id.principal_id, sizeof(e->id.principal_id), pid) != COFFER_OK) {
        rc = bad_record();
        goto out;
    }
    if (coffer_b64_decode(coffer_cursor_from_str(secret), &sealed) != COFFER_OK) {
        rc = bad_record();
        goto out;
    }
    TRY_OUT(seal_identity(akid, identity, sizeof(identity)));
    TRY_OUT(seal_record_open(c->sl, identity, coffer_buf_cursor(&sealed), &e->id.secret));
    TRY_OUT(coffer_buf_nul_terminate(&e->id.secret));
    e->id.expires_at = 0;
    *out = e;
    e = NULL;
out:
    entry_free(e);
    json_decref(root);
    coffer_buf_free(&sealed);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Create
 * ------------------------------------------------------------------------------------------- */

/* `prefix` + 16 base32 characters from 80 random bits. */
static coffer_err random_id(const char *prefix, char *out, size_t cap)
{
    uint8_t r[IAM_AKID_RANDOM_BYTES];
    size_t plen = strlen(prefix);
    ENSURE(cap > plen + 16, COFFER_ERR_INTERNAL);
    TRY(crypto_random(r, sizeof(r)));
    memcpy(out, prefix, plen);
    /* 10 bytes = two 40-bit groups of eight 5-bit characters */
    for (size_t g = 0; g < 2; g++) {
        uint64_t v = 0;
        for (size_t i = 0; i < 5; i++) {
            v = v << 8 | r[g * 5 + i];
        }
        for (size_t i = 0; i < 8; i++) {
            out[plen + g * 8 + i] = base32_alphabet[(v >> (35 - 5 * i)) & 31];
        }
    }
    out[plen + 16] = '\0';
    return COFFER_OK;
}

static bool valid_account_id(const char *a)
{
    if (a == NULL || strlen(a) != AWS_ACCOUNT_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < AWS_ACCOUNT_ID_LEN; i++) {
        if (a[i] < '0' || a[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Fills everything but access_key_id; the secret is 40 chars from 30 random bytes. */
static coffer_err identity_build(const char *account_id, const char *principal_arn,
                                 enum api_principal_kind kind, const char *principal_id,
                                 struct sigv4_identity *id)
{
    TRY(copy_field(id->account_id, sizeof(id->account_id), account_id));
    TRY(copy_field(id->principal_arn, sizeof(id->principal_arn), principal_arn));
    ENSURE(kind != API_PRINCIPAL_UNKNOWN, COFFER_ERR_USAGE);
    TRY(copy_field(id->principal_type, sizeof(id->principal_type), api_principal_trail_type(kind)));
    if (principal_id != NULL) {
        TRY(copy_field(id->principal_id, sizeof(id->principal_id), principal_id));
    } else if (kind == API_PRINCIPAL_ROOT) {
        /* The account root's principal id is the account id (as in CloudTrail userIdentity). */
        TRY(copy_field(id->principal_id, sizeof(id->principal_id), account_id));
    } else {
        TRY(random_id(kind == API_PRINCIPAL_ASSUMED_ROLE ? "AROA" : "AIDA", id->principal_id,
                      sizeof(id->principal_id)));
    }
    uint8_t *r = coffer_secret_alloc(IAM_SECRET_RANDOM_BYTES);
    if (r == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_err rc = crypto_random(r, IAM_SECRET_RANDOM_BYTES);
    if (rc == COFFER_OK) {
        rc = coffer_b64_encode(coffer_cursor_from(r, IAM_SECRET_RANDOM_BYTES), &id->secret);
    }
    coffer_secret_free(r, IAM_SECRET_RANDOM_BYTES);
    return rc;
}

/* Puts the record under a fresh AKID into `t`; retries on the (2^-80) collision. */
static coffer_err txn_new_key(struct iam_creds *c, store_txn *t, struct sigv4_identity *id)
{
    coffer_err rc = COFFER_OK;
    coffer_buf rec = COFFER_BUF_INIT, existing = COFFER_BUF_INIT;
    char key[sizeof(IAM_KEY_RECORD_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    for (int attempt = 0; attempt < IAM_CREATE_ATTEMPTS; attempt++) {
        TRY_OUT(random_id(IAM_AKID_PREFIX, id->access_key_id, sizeof(id->access_key_id)));
        TRY_OUT(record_key(id->access_key_id, key, sizeof(key)));
        coffer_buf_reset(&existing);
        rc = store_txn_get(t, key, &existing);
        if (rc == COFFER_OK) {
            continue;
        }
        if (rc != COFFER_ERR_NOT_FOUND) {
            goto out;
        }
        TRY_OUT(record_write(c, id, "Active", &rec));
        rc = store_txn_put(t, key, coffer_buf_cursor(&rec));
        goto out;
    }
    rc = coffer_fail(COFFER_ERR_INTERNAL, "could not allocate a unique access key id");
out:
    coffer_buf_free(&rec);
    coffer_buf_free(&existing);
    return rc;
}

/* Stores the record under a fresh AKID in its own transaction. */
static coffer_err store_new_key(struct iam_creds *c, struct sigv4_identity *id)
{
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    TRY_OUT(store_txn_begin(c->st, &t));
    TRY_OUT(txn_new_key(c, t, id));
    rc = store_txn_commit(t);
    t = NULL;
out:
    store_txn_abort(t);
    return rc;
}

coffer_err iam_creds_create(iam_creds *c, const char *account_id, const char *principal_arn,
                            enum api_principal_kind kind, char akid_out[IAM_ACCESS_KEY_ID_LEN + 1],
                            coffer_buf *secret_out)
{
    ENSURE_REF(c);
    ENSURE_REF(akid_out);
    ENSURE_REF(secret_out);
    if (!valid_account_id(account_id)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "account id must be 12 digits");
    }
    if (principal_arn == NULL || kind == API_PRINCIPAL_UNKNOWN) {
        return coffer_fail(COFFER_ERR_VALIDATION, "principal ARN and type are required");
    }
    coffer_err rc = COFFER_OK;
    struct cred_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_buf_init(&e->id.secret, true);
    size_t start = secret_out->len;
    uint64_t gen = atomic_load(&c->gen);
    TRY_OUT(identity_build(account_id, principal_arn, kind, NULL, &e->id));
    TRY_OUT(store_new_key(c, &e->id));
    TRY_OUT(coffer_buf_append(secret_out, e->id.secret.data, e->id.secret.len));
    rc = coffer_buf_nul_terminate(secret_out);
    if (rc != COFFER_OK) {
        secret_out->len = start;
        goto out;
    }
    TRY_OUT(coffer_buf_nul_terminate(&e->id.secret));
    memcpy(akid_out, e->id.access_key_id, IAM_ACCESS_KEY_ID_LEN + 1);
    cache_insert(c, e, gen);
    e = NULL;
out:
    entry_free(e);
    return rc;
}

coffer_err iam_creds_create_in(iam_creds *c, store_txn *t, const char *account_id, const char *principal_arn,
                               enum api_principal_kind kind, const char *principal_id,
                               char akid_out[IAM_ACCESS_KEY_ID_LEN + 1], coffer_buf *secret_out)
{
    ENSURE(c != NULL && t != NULL && akid_out != NULL && secret_out != NULL, COFFER_ERR_USAGE);
    if (!valid_account_id(account_id)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "account id must be 12 digits");
    }
    ENSURE(principal_arn != NULL && kind != API_PRINCIPAL_UNKNOWN, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    struct sigv4_identity id;
    memset(&id, 0, sizeof(id));
    coffer_buf_init(&id.secret, true);
    size_t start = secret_out->len;
    TRY_OUT(identity_build(account_id, principal_arn, kind, principal_id, &id));
    TRY_OUT(txn_new_key(c, t, &id));
    TRY_OUT(coffer_buf_append(secret_out, id.secret.data, id.secret.len));
    rc = coffer_buf_nul_terminate(secret_out);
    if (rc != COFFER_OK) {
        secret_out->len = start;
        goto out;
    }
    memcpy(akid_out, id.access_key_id, IAM_ACCESS_KEY_ID_LEN + 1);
out:
    coffer_buf_free(&id.secret);
    return rc;
}

coffer_err iam_creds_set_status_in(iam_creds *c, store_txn *t, const char *akid, bool active)
{
    ENSURE(c != NULL && t != NULL && akid != NULL, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    coffer_buf rec = COFFER_BUF_INIT;
    json_t *root = NULL;
    char *text = NULL;
    char key[sizeof(IAM_KEY_RECORD_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    ENSURE(strlen(akid) <= AWS_ACCESS_KEY_ID_MAX, COFFER_ERR_VALIDATION);
    TRY_OUT(record_key(akid, key, sizeof(key)));
    TRY_OUT(store_txn_get(t, key, &rec));
    root = json_loadb((const char *)rec.data, rec.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root) ||
        json_object_set_new(root, "status", json_string(active ? "Active" : "Inactive"))) {
        rc = bad_record();
        goto out;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(store_txn_put(t, key, coffer_cursor_from_str(text)));
out:
    free(text);
    json_decref(root);
    coffer_buf_free(&rec);
    return rc;
}

coffer_err iam_creds_delete_in(iam_creds *c, store_txn *t, const char *akid)
{
    ENSURE(c != NULL && t != NULL && akid != NULL, COFFER_ERR_USAGE);
    char key[sizeof(IAM_KEY_RECORD_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    ENSURE(strlen(akid) <= AWS_ACCESS_KEY_ID_MAX, COFFER_ERR_VALIDATION);
    TRY(record_key(akid, key, sizeof(key)));
    return store_txn_delete(t, key);
}

void iam_creds_evict(iam_creds *c, const char *akid)
{
    if (c == NULL || akid == NULL) {
        return;
    }
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_add(&c->gen, 1);
    coffer_map_delete(&c->cache, akid);
    pthread_rwlock_unlock(&c->lock);
}

/* ---------------------------------------------------------------------------------------------
 * Temporary credentials (STS sessions): the token is the sealed session
 * ------------------------------------------------------------------------------------------- */

static coffer_err session_identity(const char *akid, char *out, size_t cap)
{
    int n = snprintf(out, cap, IAM_SESSION_SEAL_PREFIX "%s", akid);
    ENSURE(n > 0 && (size_t)n < cap, COFFER_ERR_INTERNAL);
    return COFFER_OK;
}

coffer_err iam_creds_issue_session(iam_creds *c, const struct iam_session_spec *spec,
                                   char akid_out[IAM_ACCESS_KEY_ID_LEN + 1], coffer_buf *secret_out,
                                   coffer_buf *token_out)
{
    ENSURE(c != NULL && spec != NULL && akid_out != NULL && secret_out != NULL && token_out != NULL,
           COFFER_ERR_USAGE);
    ENSURE(spec->account_id && spec->session_arn && spec->role_arn && spec->principal_id, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    struct sigv4_identity id;
    memset(&id, 0, sizeof(id));
    coffer_buf_init(&id.secret, true);
    coffer_buf plain = COFFER_SECRET_BUF_INIT, sealed = COFFER_BUF_INIT;
    json_t *obj = NULL;
    char *text = NULL;
    char akid[IAM_ACCESS_KEY_ID_LEN + 1];
    char identity[sizeof(IAM_SESSION_SEAL_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    size_t secret_start = secret_out->len, token_start = token_out->len;
    TRY_OUT(identity_build(spec->account_id, spec->session_arn, API_PRINCIPAL_ASSUMED_ROLE,
                           spec->principal_id, &id));
    TRY_OUT(coffer_buf_nul_terminate(&id.secret));
    TRY_OUT(random_id(IAM_SESSION_AKID_PREFIX, akid, sizeof(akid)));
    TRY_OUT(session_identity(akid, identity, sizeof(identity)));
    ENSURE(spec->issued_at > 0, COFFER_ERR_USAGE);
    obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "account", spec->account_id, "role_arn",
                    spec->role_arn, "principal_arn", spec->session_arn, "principal_id", spec->principal_id,
                    "secret", (const char *)id.secret.data, "issued", (json_int_t)spec->issued_at, "expires",
                    (json_int_t)spec->expires_at);
    if (obj == NULL) {
        FAIL_OUT(COFFER_ERR_VALIDATION, "invalid session fields");
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(coffer_buf_append_str(&plain, text));
    TRY_OUT(seal_record_seal(c->sl, identity, coffer_buf_cursor(&plain), &sealed));
    TRY_OUT(coffer_b64_encode(coffer_buf_cursor(&sealed), token_out));
    TRY_OUT(coffer_buf_nul_terminate(token_out));
    TRY_OUT(coffer_buf_append(secret_out, id.secret.data, strlen((const char *)id.secret.data)));
    TRY_OUT(coffer_buf_nul_terminate(secret_out));
    memcpy(akid_out, akid, IAM_ACCESS_KEY_ID_LEN + 1);
out:
    if (rc != COFFER_OK) {
        secret_out->len = secret_start;
        token_out->len = token_start;
    }
    if (text != NULL) {
        coffer_secure_zero(text, strlen(text));
        free(text);
    }
    if (obj != NULL) {
        json_t *sv = json_object_get(obj, "secret");
        if (sv != NULL) {
            coffer_secure_zero((char *)json_string_value(sv), json_string_length(sv));
        }
        json_decref(obj);
    }
    coffer_buf_free(&plain);
    coffer_buf_free(&sealed);
    coffer_buf_free(&id.secret);
    return rc;
}

void iam_creds_set_session_roles(iam_creds *c, const struct iam_identity_source *roles)
{
    if (c == NULL || roles == NULL || roles->policies == NULL) {
        return;
    }
    c->roles = *roles;
    c->has_roles = true;
}

/*
 * Does the role `role_arn` still have the unique id the session `pid` ("AROA...:SESSION") was
 * issued for? Asked on every request made with a session, so it goes through the source's
 * compiled-policy cache (the lookup the authorizer makes next hits the same entry): no store
 * read while the role is unchanged. A deleted role, or a new one under the same name, refuses
 * the session as a token that does not open is refused.
 */
static coffer_err session_role_current(struct iam_creds *c, const char *role_arn, const char *pid)
{
    if (!c->has_roles) {
        return COFFER_OK;
    }
    struct iam_policy_list list;
    memset(&list, 0, sizeof(list));
    TRY(c->roles.policies(c->roles.ctx, role_arn, &list));
    bool current = iam_policy_list_current(&list, pid);
    if (c->roles.release != NULL) {
        c->roles.release(c->roles.ctx, &list);
    }
    return current ? COFFER_OK : unrecognized();
}

/* Opens a session token presented with `akid`; anything that does not open is unrecognized. */
static coffer_err session_lookup(struct iam_creds *c, coffer_cursor akid_cur, const char *token,
                                 struct sigv4_identity *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT, plain = COFFER_SECRET_BUF_INIT;
    json_t *root = NULL;
    struct sigv4_identity id;
    memset(&id, 0, sizeof(id));
    coffer_buf_init(&id.secret, true);
    char akid[AWS_ACCESS_KEY_ID_MAX + 1];
    char identity[sizeof(IAM_SESSION_SEAL_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    const char *account = NULL, *role = NULL, *arn = NULL, *pid = NULL, *secret = NULL;
    json_int_t expires = 0, issued = 0;
    size_t tlen = strlen(token);
    if (tlen > IAM_SESSION_TOKEN_MAX || akid_cur.len != IAM_ACCESS_KEY_ID_LEN ||
        memcmp(akid_cur.ptr, IAM_SESSION_AKID_PREFIX, 4) != 0) {
        return unrecognized();
    }
    memcpy(akid, akid_cur.ptr, akid_cur.len);
    akid[akid_cur.len] = '\0';
    TRY_OUT(session_identity(akid, identity, sizeof(identity)));
    if (coffer_b64_decode(coffer_cursor_from(token, tlen), &sealed) != COFFER_OK ||
        seal_record_open(c->sl, identity, coffer_buf_cursor(&sealed), &plain) != COFFER_OK) {
        rc = unrecognized();
        goto out;
    }
    root = json_loadb((const char *)plain.data, plain.len, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL || json_unpack(root, "{s:s, s:s, s:s, s:s, s:s, s:I, s?I}", "account", &account,
                                    "role_arn", &role, "principal_arn", &arn, "principal_id", &pid, "secret",
                                    &secret, "expires", &expires, "issued", &issued) != 0) {
        rc = unrecognized();
        goto out;
    }
    if (copy_field(id.access_key_id, sizeof(id.access_key_id), akid) != COFFER_OK ||
        copy_field(id.account_id, sizeof(id.account_id), account) != COFFER_OK ||
        copy_field(id.principal_arn, sizeof(id.principal_arn), arn) != COFFER_OK ||
        copy_field(id.principal_type, sizeof(id.principal_type),
                   api_principal_trail_type(API_PRINCIPAL_ASSUMED_ROLE)) != COFFER_OK ||
        copy_field(id.principal_id, sizeof(id.principal_id), pid) != COFFER_OK ||
        copy_field(id.role_arn, sizeof(id.role_arn), role) != COFFER_OK) {
        rc = unrecognized();
        goto out;
    }
    TRY_OUT(session_role_current(c, id.role_arn, id.principal_id));
    TRY_OUT(coffer_buf_append_str(&id.secret, secret));
    TRY_OUT(coffer_buf_nul_terminate(&id.secret));
    id.expires_at = expires > 0 ? (int64_t)expires : 1;
    id.issued_at = issued > 0 ? (int64_t)issued : 0;
    *out = id;
    memset(&id, 0, sizeof(id));
out:
    if (root != NULL) {
        json_t *sv = json_object_get(root, "secret");
        if (sv != NULL) {
            coffer_secure_zero((char *)json_string_value(sv), json_string_length(sv));
        }
        json_decref(root);
    }
    coffer_buf_free(&id.secret);
    coffer_buf_free(&plain);
    coffer_buf_free(&sealed);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Lookup (the sigv4_lookup_fn)
 * ------------------------------------------------------------------------------------------- */

static bool plausible_akid(coffer_cursor a)
{
    if (a.len < 16 || a.len > AWS_ACCESS_KEY_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < a.len; i++) {
        uint8_t ch = a.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
            return false;
        }
    }
    return true;
}

coffer_err iam_creds_lookup(void *ctx, coffer_cursor access_key_id, const char *session_token,
                            struct sigv4_identity *out)
{
    struct iam_creds *c = ctx;
    ENSURE_REF(c);
    ENSURE_REF(out);
    /* Refuse malformed ids before they reach the cache or the store. */
    if (!plausible_akid(access_key_id)) {
        return unrecognized();
    }
    /* A session token goes with a temporary (ASIA) key and carries the whole session. */
    if (session_token != NULL && session_token[0] != '\0') {
        return session_lookup(c, access_key_id, session_token, out);
    }
    pthread_rwlock_rdlock(&c->lock);
    struct cred_entry *hit = cache_find(c, access_key_id);
    coffer_err rc = hit != NULL ? identity_copy(&hit->id, out) : COFFER_ERR_NOT_FOUND;
    pthread_rwlock_unlock(&c->lock);
    if (hit != NULL) {
        return rc;
    }

    char akid[AWS_ACCESS_KEY_ID_MAX + 1];
    char key[sizeof(IAM_KEY_RECORD_PREFIX) + AWS_ACCESS_KEY_ID_MAX];
    memcpy(akid, access_key_id.ptr, access_key_id.len);
    akid[access_key_id.len] = '\0';
    TRY(record_key(akid, key, sizeof(key)));
    coffer_buf rec = COFFER_BUF_INIT;
    struct cred_entry *e = NULL;
    uint64_t gen = atomic_load(&c->gen);
    rc = store_get(c->st, key, &rec);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = unrecognized();
    } else if (rc == COFFER_OK) {
        rc = record_read(c, akid, coffer_buf_cursor(&rec), &e);
    }
    coffer_buf_free(&rec);
    if (rc != COFFER_OK) {
        return rc;
    }
    rc = identity_copy(&e->id, out);
    cache_insert(c, e, gen);
    return rc;
}
