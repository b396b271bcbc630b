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
 * unknown keys cannot grow the table. Keys are never removed yet (no DeleteAccessKey); when
 * they are, the deleting path must also evict the entry.
 */
#include "iam/credentials.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

#define IAM_AKID_PREFIX "AKIA"
#define IAM_AKID_LEN 20
#define IAM_AKID_RANDOM_BYTES 10 /* 80 bits = 16 base32 characters */
#define IAM_SECRET_LEN 40
#define IAM_SECRET_RANDOM_BYTES 30 /* 240 bits = 40 base64 characters, no padding */
#define IAM_KEY_RECORD_PREFIX "iam/access-key/"
#define IAM_KEY_SEAL_PREFIX "iam-access-key/"
#define IAM_AKID_MAX 128
#define IAM_CACHE_INITIAL_BUCKETS 256
#define IAM_CREATE_ATTEMPTS 4

struct cred_entry {
    struct sigv4_identity id; /* secret is a secret buffer owned by the entry */
    uint64_t hash;
    struct cred_entry *next;
};

struct iam_creds {
    store *st;              /* borrowed */
    seal *sl;               /* borrowed */
    pthread_rwlock_t lock;  /* guards the table */
    struct cred_entry **buckets;
    size_t nbuckets;        /* a power of two */
    size_t count;
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

static uint64_t akid_hash(coffer_cursor akid)
{
    /* FNV-1a: only keys that exist are inserted, so callers cannot choose colliding keys. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < akid.len; i++) {
        h = (h ^ akid.ptr[i]) * 1099511628211ull;
    }
    return h;
}

static struct cred_entry *cache_find(const struct iam_creds *c, coffer_cursor akid, uint64_t h)
{
    for (struct cred_entry *e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->next) {
        if (e->hash == h && coffer_cursor_eq_str(akid, e->id.access_key_id)) {
            return e;
        }
    }
    return NULL;
}

static void entry_free(struct cred_entry *e)
{
    if (e != NULL) {
        coffer_buf_free(&e->id.secret);
        free(e);
    }
}

static void cache_grow(struct iam_creds *c)
{
    size_t n = c->nbuckets * 2;
    struct cred_entry **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return; /* keep the longer chains; still correct */
    }
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct cred_entry *e = c->buckets[i];
        while (e != NULL) {
            struct cred_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

/* Inserts `e` (takes ownership) unless another thread got there first. */
static void cache_insert(struct iam_creds *c, struct cred_entry *e)
{
    pthread_rwlock_wrlock(&c->lock);
    if (cache_find(c, coffer_cursor_from_str(e->id.access_key_id), e->hash) != NULL) {
        pthread_rwlock_unlock(&c->lock);
        entry_free(e);
        return;
    }
    if (c->count >= c->nbuckets * 2) {
        cache_grow(c);
    }
    size_t b = e->hash & (c->nbuckets - 1);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    c->count++;
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
    c->buckets = calloc(IAM_CACHE_INITIAL_BUCKETS, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    c->nbuckets = IAM_CACHE_INITIAL_BUCKETS;
    c->st = st;
    c->sl = sl;
    pthread_rwlock_init(&c->lock, NULL);
    *out = c;
    return COFFER_OK;
}

void iam_creds_free(iam_creds *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct cred_entry *e = c->buckets[i];
        while (e != NULL) {
            struct cred_entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(c->buckets);
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
static coffer_err record_write(struct iam_creds *c, const struct sigv4_identity *id, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT, b64 = COFFER_BUF_INIT;
    json_t *obj = NULL;
    char *text = NULL;
    char identity[sizeof(IAM_KEY_SEAL_PREFIX) + IAM_AKID_MAX];
    char created[32];
    GUARD(seal_identity(id->access_key_id, identity, sizeof(identity)));
    GUARD(seal_record_seal(c->sl, identity, coffer_buf_cursor(&id->secret), &sealed));
    GUARD(coffer_b64_encode(coffer_buf_cursor(&sealed), &b64));
    GUARD(coffer_buf_nul_terminate(&b64));
    coffer_time_iso8601(coffer_now_ms() / 1000, created, sizeof(created));
    obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "account", id->account_id, "principal_arn",
                    id->principal_arn, "principal_type", id->principal_type, "principal_id", id->principal_id,
                    "status", "Active", "created", created, "secret", (const char *)b64.data);
    if (obj == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "cannot build the access key record");
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "cannot serialise the access key record");
    }
    GUARD(coffer_buf_append_str(out, text));
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
static coffer_err record_read(struct iam_creds *c, const char *akid, coffer_cursor json, struct cred_entry **out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf sealed = COFFER_BUF_INIT;
    json_t *root = NULL;
    const char *account = NULL, *arn = NULL, *type = NULL, *pid = NULL, *status = NULL, *secret = NULL;
    char identity[sizeof(IAM_KEY_SEAL_PREFIX) + IAM_AKID_MAX];
    struct cred_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_buf_init(&e->id.secret, true);
    root = json_loadb((const char *)json.ptr, json.len, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL || json_unpack(root, "{s:s, s:s, s:s, s:s, s:s, s:s}", "account", &account, "principal_arn",
                                    &arn, "principal_type", &type, "principal_id", &pid, "status", &status,
                                    "secret", &secret) != 0) {
        FAIL_OUT(COFFER_ERR_STORE, "malformed access key record");
    }
    if (strcmp(status, "Active") != 0) {
        FAIL_OUT(COFFER_ERR_UNRECOGNIZED_CLIENT, "%s", coffer_err_default_message(COFFER_ERR_UNRECOGNIZED_CLIENT));
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
    GUARD(seal_identity(akid, identity, sizeof(identity)));
    GUARD(seal_record_open(c->sl, identity, coffer_buf_cursor(&sealed), &e->id.secret));
    GUARD(coffer_buf_nul_terminate(&e->id.secret));
    e->id.expires_at = 0;
    e->hash = akid_hash(coffer_cursor_from_str(akid));
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
    if (a == NULL || strlen(a) != 12) {
        return false;
    }
    for (size_t i = 0; i < 12; i++) {
        if (a[i] < '0' || a[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Fills everything but access_key_id; the secret is 40 chars from 30 random bytes. */
static coffer_err identity_build(const char *account_id, const char *principal_arn, const char *principal_type,
                                 struct sigv4_identity *id)
{
    TRY(copy_field(id->account_id, sizeof(id->account_id), account_id));
    TRY(copy_field(id->principal_arn, sizeof(id->principal_arn), principal_arn));
    TRY(copy_field(id->principal_type, sizeof(id->principal_type), principal_type));
    if (strcmp(principal_type, "Root") == 0) {
        /* The account root's principal id is the account id (as in CloudTrail userIdentity). */
        TRY(copy_field(id->principal_id, sizeof(id->principal_id), account_id));
    } else {
        TRY(random_id(strcmp(principal_type, "AssumedRole") == 0 ? "AROA" : "AIDA", id->principal_id,
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

/* Stores the record under a fresh AKID in one transaction; retries on the (2^-80) collision. */
static coffer_err store_new_key(struct iam_creds *c, struct sigv4_identity *id)
{
    coffer_err rc = COFFER_OK;
    coffer_buf rec = COFFER_BUF_INIT, existing = COFFER_BUF_INIT;
    store_txn *t = NULL;
    char key[sizeof(IAM_KEY_RECORD_PREFIX) + IAM_AKID_MAX];
    for (int attempt = 0; attempt < IAM_CREATE_ATTEMPTS; attempt++) {
        GUARD(random_id(IAM_AKID_PREFIX, id->access_key_id, sizeof(id->access_key_id)));
        GUARD(record_key(id->access_key_id, key, sizeof(key)));
        coffer_buf_reset(&rec);
        coffer_buf_reset(&existing);
        GUARD(record_write(c, id, &rec));
        GUARD(store_txn_begin(c->st, &t));
        rc = store_txn_get(t, key, &existing);
        if (rc == COFFER_OK) {
            store_txn_abort(t);
            t = NULL;
            continue;
        }
        if (rc != COFFER_ERR_NOT_FOUND) {
            goto out;
        }
        GUARD(store_txn_put(t, key, coffer_buf_cursor(&rec)));
        rc = store_txn_commit(t);
        t = NULL;
        goto out;
    }
    rc = coffer_fail(COFFER_ERR_INTERNAL, "could not allocate a unique access key id");
out:
    store_txn_abort(t);
    coffer_buf_free(&rec);
    coffer_buf_free(&existing);
    return rc;
}

coffer_err iam_creds_create(iam_creds *c, const char *account_id, const char *principal_arn,
                            const char *principal_type, char akid_out[21], coffer_buf *secret_out)
{
    ENSURE_REF(c);
    ENSURE_REF(akid_out);
    ENSURE_REF(secret_out);
    if (!valid_account_id(account_id)) {
        return coffer_fail(COFFER_ERR_VALIDATION, "account id must be 12 digits");
    }
    if (principal_arn == NULL || principal_type == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION, "principal ARN and type are required");
    }
    coffer_err rc = COFFER_OK;
    struct cred_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_buf_init(&e->id.secret, true);
    size_t start = secret_out->len;
    GUARD(identity_build(account_id, principal_arn, principal_type, &e->id));
    GUARD(store_new_key(c, &e->id));
    GUARD(coffer_buf_append(secret_out, e->id.secret.data, e->id.secret.len));
    rc = coffer_buf_nul_terminate(secret_out);
    if (rc != COFFER_OK) {
        secret_out->len = start;
        goto out;
    }
    GUARD(coffer_buf_nul_terminate(&e->id.secret));
    memcpy(akid_out, e->id.access_key_id, IAM_AKID_LEN + 1);
    e->hash = akid_hash(coffer_cursor_from_str(e->id.access_key_id));
    cache_insert(c, e);
    e = NULL;
out:
    entry_free(e);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Lookup (the sigv4_lookup_fn)
 * ------------------------------------------------------------------------------------------- */

static bool plausible_akid(coffer_cursor a)
{
    if (a.len < 16 || a.len > IAM_AKID_MAX) {
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
    /* No temporary credentials yet (STS comes later): a token cannot belong to a key we issued. */
    if (session_token != NULL && session_token[0] != '\0') {
        return unrecognized();
    }
    uint64_t h = akid_hash(access_key_id);
    pthread_rwlock_rdlock(&c->lock);
    struct cred_entry *hit = cache_find(c, access_key_id, h);
    coffer_err rc = hit != NULL ? identity_copy(&hit->id, out) : COFFER_ERR_NOT_FOUND;
    pthread_rwlock_unlock(&c->lock);
    if (hit != NULL) {
        return rc;
    }

    char akid[IAM_AKID_MAX + 1];
    char key[sizeof(IAM_KEY_RECORD_PREFIX) + IAM_AKID_MAX];
    memcpy(akid, access_key_id.ptr, access_key_id.len);
    akid[access_key_id.len] = '\0';
    TRY(record_key(akid, key, sizeof(key)));
    coffer_buf rec = COFFER_BUF_INIT;
    struct cred_entry *e = NULL;
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
    cache_insert(c, e);
    return rc;
}
