/*
 * The barrier (service -> barrier -> store): every secret a service persists is sealed here
 * with AES-256-GCM under a barrier key ("term"), binding the record's identity as AAD so a
 * sealed blob cannot be moved to another record. The terms form a keyring stored under
 * "seal/keyring", wrapped by the root key provider (seal_provider.h: key file, passphrase or
 * PKCS#11 token; the provider record says which), so the root key only ever unwraps the
 * keyring and can live in an HSM.
 *
 *   sealed  = version(1) || term(4, big endian) || iv(12) || ciphertext || tag(16)
 *   AAD     = version || term || identity
 *
 *   keyring (plaintext, wrapped by the provider with AAD "coffer-seal-keyring-v1"):
 *           format(1) || active term(4) || count(4) || count x { term(4) || key(32) }
 *           terms strictly ascending, non-zero; the active term is one of them.
 *
 * IVs are random: with 96-bit random IVs one key should seal at most 2^32 records (NIST
 * SP 800-38D §8.3), which seal_rotate keeps far away. Records sealed under older terms stay
 * readable. Thread-safety: the keyring sits behind a rwlock; rotation swaps it whole.
 */
#include "seal/seal.h"

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/secret.h"
#include "crypto/crypto.h"
#include "seal/seal_provider.h"

#define SEAL_RECORD_VERSION 1
#define SEAL_KEYRING_STORE_KEY "seal/keyring"
#define SEAL_KEYRING_AAD "coffer-seal-keyring-v1"
#define SEAL_KEYRING_FORMAT 1
#define SEAL_KEYRING_MAX_TERMS 100000
#define SEAL_TERM_KEY_LEN CRYPTO_AES256_KEY_LEN
#define SEAL_TERM_WIRE_LEN (4 + SEAL_TERM_KEY_LEN)

struct seal_term {
    uint32_t id;
    uint8_t key[SEAL_TERM_KEY_LEN];
};

struct keyring {
    struct seal_term *terms; /* secret memory, ascending by id */
    size_t n;
    uint32_t active; /* the term new records are sealed under */
};

struct seal {
    struct seal_provider *provider; /* owned */
    store *st;                      /* borrowed */
    pthread_rwlock_t lock;          /* guards kr */
    pthread_mutex_t rotate_mu;      /* one rotation or reload at a time */
    struct keyring kr;
};

static coffer_err open_failed(void)
{
    /* One answer for every reason: wrong identity, unknown term, tampering, truncation. */
    return coffer_fail(COFFER_ERR_CRYPTO, "sealed record failed to open");
}

/* ---------------------------------------------------------------------------------------------
 * Provider wrappers
 * ------------------------------------------------------------------------------------------- */

coffer_err seal_provider_wrap(struct seal_provider *p, coffer_cursor aad, coffer_cursor plaintext,
                              coffer_buf *out)
{
    ENSURE_REF(p);
    ENSURE_REF(out);
    return p->vt->wrap(p, aad, plaintext, out);
}

coffer_err seal_provider_unwrap(struct seal_provider *p, coffer_cursor aad, coffer_cursor wrapped,
                                coffer_buf *out)
{
    ENSURE_REF(p);
    ENSURE_REF(out);
    return p->vt->unwrap(p, aad, wrapped, out);
}

void seal_provider_free(struct seal_provider *p)
{
    if (p != NULL) {
        p->vt->destroy(p);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Keyring: the reader and the writer of its format
 * ------------------------------------------------------------------------------------------- */

static void keyring_clean(struct keyring *kr)
{
    coffer_secret_free(kr->terms, kr->n * sizeof(*kr->terms));
    memset(kr, 0, sizeof(*kr));
}

static coffer_err keyring_alloc(size_t n, struct keyring *kr)
{
    kr->terms = coffer_secret_alloc(n * sizeof(*kr->terms));
    if (kr->terms == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    kr->n = n;
    return COFFER_OK;
}

static const struct seal_term *keyring_find(const struct keyring *kr, uint32_t id)
{
    size_t lo = 0, hi = kr->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kr->terms[mid].id == id) {
            return &kr->terms[mid];
        }
        if (kr->terms[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static coffer_err keyring_bad(void)
{
    return coffer_fail(COFFER_ERR_CRYPTO, "the barrier keyring is malformed");
}

static coffer_err keyring_parse(coffer_cursor in, struct keyring *out)
{
    coffer_err rc = COFFER_OK;
    struct keyring kr = {0};
    coffer_cursor c = in;
    uint8_t format = 0;
    uint32_t active = 0, count = 0;
    if (cur_read_u8(&c, &format) != COFFER_OK || format != SEAL_KEYRING_FORMAT ||
        cur_read_u32be(&c, &active) != COFFER_OK || cur_read_u32be(&c, &count) != COFFER_OK) {
        return keyring_bad();
    }
    /* Check the count against the bytes present before allocating anything. */
    if (count == 0 || count > SEAL_KEYRING_MAX_TERMS || c.len != (size_t)count * SEAL_TERM_WIRE_LEN) {
        return keyring_bad();
    }
    TRY_OUT(keyring_alloc(count, &kr));
    for (size_t i = 0; i < count; i++) {
        struct seal_term *t = &kr.terms[i];
        if (cur_read_u32be(&c, &t->id) != COFFER_OK ||
            cur_copy_bytes(&c, t->key, SEAL_TERM_KEY_LEN) != COFFER_OK) {
            FAIL_OUT(COFFER_ERR_CRYPTO, "the barrier keyring is malformed");
        }
        if (t->id == 0 || (i > 0 && t->id <= kr.terms[i - 1].id)) {
            FAIL_OUT(COFFER_ERR_CRYPTO, "the barrier keyring is malformed");
        }
    }
    kr.active = active;
    if (keyring_find(&kr, active) == NULL) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "the barrier keyring is malformed");
    }
    *out = kr;
    kr = (struct keyring){0};
out:
    keyring_clean(&kr);
    return rc;
}

static coffer_err keyring_serialize(const struct keyring *kr, coffer_buf *out)
{
    TRY(coffer_buf_append_u8(out, SEAL_KEYRING_FORMAT));
    TRY(coffer_buf_append_u32be(out, kr->active));
    TRY(coffer_buf_append_u32be(out, (uint32_t)kr->n));
    for (size_t i = 0; i < kr->n; i++) {
        TRY(coffer_buf_append_u32be(out, kr->terms[i].id));
        TRY(coffer_buf_append(out, kr->terms[i].key, SEAL_TERM_KEY_LEN));
    }
    return COFFER_OK;
}

/* *out = `base` (may be empty) plus one fresh random term, which becomes active. */
static coffer_err keyring_extend(const struct keyring *base, struct keyring *out)
{
    coffer_err rc = COFFER_OK;
    struct keyring kr = {0};
    uint32_t last = base->n ? base->terms[base->n - 1].id : 0;
    if (last == UINT32_MAX || base->n >= SEAL_KEYRING_MAX_TERMS) {
        return coffer_fail(COFFER_ERR_LIMIT_EXCEEDED, "the barrier keyring is full");
    }
    TRY_OUT(keyring_alloc(base->n + 1, &kr));
    if (base->n) {
        memcpy(kr.terms, base->terms, base->n * sizeof(*kr.terms));
    }
    kr.terms[base->n].id = last + 1;
    TRY_OUT(crypto_random(kr.terms[base->n].key, SEAL_TERM_KEY_LEN));
    kr.active = last + 1;
    *out = kr;
    kr = (struct keyring){0};
out:
    keyring_clean(&kr);
    return rc;
}

static coffer_err keyring_unwrap(struct seal_provider *p, coffer_cursor wrapped, struct keyring *out)
{
    coffer_buf plain = COFFER_SECRET_BUF_INIT;
    coffer_err rc = COFFER_OK;
    TRY_OUT(seal_provider_unwrap(p, coffer_cursor_from_str(SEAL_KEYRING_AAD), wrapped, &plain));
    rc = keyring_parse(coffer_buf_cursor(&plain), out);
out:
    coffer_buf_free(&plain);
    return rc;
}

/* Reads the stored keyring in `t`; *found = false when there is none yet. */
static coffer_err keyring_load(struct seal *s, store_txn *t, struct keyring *out, bool *found)
{
    coffer_buf wrapped = COFFER_BUF_INIT;
    /* Plaintext records: the keyring is what opens sealed records, so it cannot be one; it is
     * wrapped by the root key provider instead. */
    coffer_err rc = t != NULL ? store_txn_get_plain(t, SEAL_KEYRING_STORE_KEY, &wrapped)
                              : store_get_plain(s->st, SEAL_KEYRING_STORE_KEY, &wrapped);
    *found = rc != COFFER_ERR_NOT_FOUND;
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = COFFER_OK; /* a new data dir: the caller creates the first term */
        goto out;
    }
    TRY_OUT(rc);
    rc = keyring_unwrap(s->provider, coffer_buf_cursor(&wrapped), out);
out:
    coffer_buf_free(&wrapped);
    return rc;
}

static coffer_err keyring_save(struct seal *s, store_txn *t, const struct keyring *kr)
{
    coffer_err rc = COFFER_OK;
    coffer_buf plain = COFFER_SECRET_BUF_INIT, wrapped = COFFER_BUF_INIT;
    TRY_OUT(keyring_serialize(kr, &plain));
    TRY_OUT(seal_provider_wrap(s->provider, coffer_cursor_from_str(SEAL_KEYRING_AAD),
                               coffer_buf_cursor(&plain), &wrapped));
    TRY_OUT(
        store_txn_put_plain(t, SEAL_KEYRING_STORE_KEY, coffer_buf_cursor(&wrapped))); /* see keyring_load */
out:
    coffer_buf_free(&plain);
    coffer_buf_free(&wrapped);
    return rc;
}

/* Replaces the in-memory keyring; the old one is wiped. */
static void keyring_install(struct seal *s, struct keyring *kr)
{
    pthread_rwlock_wrlock(&s->lock);
    struct keyring old = s->kr;
    s->kr = *kr;
    pthread_rwlock_unlock(&s->lock);
    *kr = (struct keyring){0};
    keyring_clean(&old);
}

/* ---------------------------------------------------------------------------------------------
 * The provider record: which provider wraps the keyring, and its parameters
 * ------------------------------------------------------------------------------------------- */

coffer_err seal_param_get(coffer_cursor lines, const char *name, char *out, size_t cap)
{
    ENSURE_REF(name);
    ENSURE_REF(out);
    size_t nlen = strlen(name);
    const char *p = (const char *)lines.ptr, *end = p + lines.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl != NULL ? nl : end;
        if ((size_t)(eol - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t vlen = (size_t)(eol - p) - nlen - 1;
            if (vlen >= cap) {
                return coffer_fail(COFFER_ERR_CONFIG, "the seal parameter %s is too long", name);
            }
            memcpy(out, p + nlen + 1, vlen);
            out[vlen] = '\0';
            return COFFER_OK;
        }
        p = eol + 1;
    }
    return COFFER_ERR_NOT_FOUND;
}

/*
 * Sets provider `p` up for the keyring in `t`. *have_keyring says whether the store holds one.
 * When it does and `anew` is false, the data dir must have been sealed by a provider of p's kind,
 * which then adopts its stored parameters; otherwise (a new keyring, or a migration when `anew`)
 * the provider makes fresh parameters. The record is (re)written when it changed.
 */
static coffer_err provider_bind(struct seal_provider *p, store_txn *t, bool anew, bool *have_keyring)
{
    coffer_err rc = COFFER_OK;
    coffer_buf stored = COFFER_BUF_INIT, params = COFFER_BUF_INIT, record = COFFER_BUF_INIT;
    coffer_cursor stored_params = {0};
    char stored_name[32] = "file"; /* a keyring without a record predates the record: the key file */
    rc = store_txn_get_plain(t, SEAL_KEYRING_STORE_KEY, &stored);
    *have_keyring = rc == COFFER_OK;
    if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    coffer_buf_reset(&stored);
    rc = store_txn_get_plain(t, SEAL_PROVIDER_RECORD, &stored);
    if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    bool have_record = rc == COFFER_OK;
    rc = COFFER_OK;
    if (have_record) {
        if (seal_param_get(coffer_buf_cursor(&stored), "provider", stored_name, sizeof(stored_name)) !=
            COFFER_OK) {
            FAIL_OUT(COFFER_ERR_CONFIG, "the data dir's seal provider record is malformed");
        }
        const uint8_t *nl = memchr(stored.data, '\n', stored.len);
        if (nl != NULL) {
            stored_params = coffer_cursor_from(nl + 1, stored.len - (size_t)(nl + 1 - stored.data));
        }
    }
    if (*have_keyring && !anew) {
        if (strcmp(stored_name, p->vt->name) != 0) {
            FAIL_OUT(COFFER_ERR_CONFIG,
                     "the data dir is sealed by the %s provider, not %s: start with --seal %s (or migrate it "
                     "with `coffer seal migrate`)",
                     stored_name, p->vt->name, stored_name);
        }
    } else {
        stored_params = (coffer_cursor){0};
    }
    if (p->vt->vt_size >= offsetof(struct seal_provider_vt, attach) + sizeof(p->vt->attach) &&
        p->vt->attach != NULL) {
        TRY_OUT(p->vt->attach(p, stored_params, &params));
    }
    TRY_OUT(coffer_buf_printf(&record, "provider=%s\n", p->vt->name));
    TRY_OUT(coffer_buf_append_cur(&record, coffer_buf_cursor(&params)));
    if (!have_record || record.len != stored.len || memcmp(record.data, stored.data, record.len) != 0) {
        /* Plaintext: it says how to unwrap the keyring, so it cannot be sealed by it. */
        TRY_OUT(store_txn_put_plain(t, SEAL_PROVIDER_RECORD, coffer_buf_cursor(&record)));
    }
out:
    coffer_buf_free(&stored);
    coffer_buf_free(&params);
    coffer_buf_free(&record);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Open / close / rotate
 * ------------------------------------------------------------------------------------------- */

/*
 * The store's change feed: another node rotated the keyring (or anything may have changed,
 * key NULL). Adopting its keyring at once makes this node seal new records under the new term
 * too, rather than only learning of it when it first opens a record sealed under it.
 */
static void seal_keyring_changed(void *ctx, const char *key)
{
    struct seal *s = ctx;
    if (key != NULL && strcmp(key, SEAL_KEYRING_STORE_KEY) != 0) {
        return;
    }
    struct keyring kr = {0};
    bool found = false;
    pthread_mutex_lock(&s->rotate_mu);
    coffer_err rc = keyring_load(s, NULL, &kr, &found);
    if (rc != COFFER_OK) {
        log_warn("seal: cannot reload the barrier keyring another node changed: %s", coffer_err_message(rc));
    } else if (found) {
        pthread_rwlock_rdlock(&s->lock);
        /* Terms are only ever added: a keyring with fewer is not newer than ours. */
        bool newer = kr.n > s->kr.n || (kr.n == s->kr.n && kr.active != s->kr.active);
        pthread_rwlock_unlock(&s->lock);
        if (newer) {
            keyring_install(s, &kr);
        }
    }
    keyring_clean(&kr);
    pthread_mutex_unlock(&s->rotate_mu);
}

coffer_err seal_open(struct seal_provider *p, store *st, seal **out)
{
    coffer_err rc = COFFER_OK;
    struct seal *s = NULL;
    store_txn *t = NULL;
    struct keyring kr = {0}, empty = {0};
    bool found = false;
    if (p == NULL || st == NULL || out == NULL) {
        seal_provider_free(p);
        return coffer_fail(COFFER_ERR_USAGE, "seal_open needs a provider, a store and an out pointer");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        seal_provider_free(p);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    s->provider = p;
    s->st = st;
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->rotate_mu, NULL);

    /* In a write transaction, so two processes starting at once cannot both create a keyring. */
    TRY_OUT(store_txn_begin(st, &t));
    TRY_OUT(provider_bind(p, t, false, &found));
    if (found) {
        TRY_OUT(keyring_load(s, t, &kr, &found));
    } else {
        TRY_OUT(keyring_extend(&empty, &kr));
        TRY_OUT(keyring_save(s, t, &kr));
        log_info("seal: created the barrier keyring (term %u) under the %s provider", kr.active, p->vt->name);
    }
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    s->kr = kr;
    kr = (struct keyring){0};
    TRY_OUT(store_watch(st, SEAL_KEYRING_STORE_KEY, seal_keyring_changed, s));
    *out = s;
    s = NULL;
out:
    store_txn_abort(t);
    keyring_clean(&kr);
    seal_free(s);
    return rc;
}

coffer_err seal_migrate(store *st, struct seal_provider *from, struct seal_provider *to)
{
    ENSURE_REF(st);
    ENSURE_REF(from);
    ENSURE_REF(to);
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    struct keyring kr = {0};
    bool found = false;
    struct seal old_side = {.provider = from, .st = st}, new_side = {.provider = to, .st = st};
    TRY_OUT(store_txn_begin(st, &t));
    TRY_OUT(provider_bind(from, t, false, &found));
    if (!found) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND,
                 "the data dir holds no barrier keyring (cofferd has never started on it)");
    }
    TRY_OUT(keyring_load(&old_side, t, &kr, &found));
    /* Fresh parameters for the new provider (a new salt), then the same keyring under it. */
    TRY_OUT(provider_bind(to, t, true, &found));
    TRY_OUT(keyring_save(&new_side, t, &kr));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    log_info("seal: re-wrapped the barrier keyring from the %s provider to the %s provider", from->vt->name,
             to->vt->name);
out:
    store_txn_abort(t);
    keyring_clean(&kr);
    return rc;
}

coffer_err seal_provider_record(store *st, coffer_buf *out)
{
    ENSURE_REF(st);
    ENSURE_REF(out);
    coffer_err rc = COFFER_OK;
    coffer_buf b = COFFER_BUF_INIT;
    rc = store_get_plain(st, SEAL_KEYRING_STORE_KEY, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND,
                 "the data dir holds no barrier keyring (cofferd has never started on it)");
    }
    TRY_OUT(rc);
    coffer_buf_reset(&b);
    rc = store_get_plain(st, SEAL_PROVIDER_RECORD, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = coffer_buf_append_str(out, "provider=file\n");
        goto out;
    }
    TRY_OUT(rc);
    rc = coffer_buf_append_cur(out, coffer_buf_cursor(&b));
out:
    coffer_buf_free(&b);
    return rc;
}

coffer_err seal_open_keyfile(const char *root_key_path, bool create, store *st, seal **out)
{
    ENSURE_REF(out);
    struct seal_provider *p = NULL;
    TRY(seal_provider_file_open(root_key_path, create, &p));
    return seal_open(p, st, out);
}

void seal_free(seal *s)
{
    if (s == NULL) {
        return;
    }
    store_unwatch(s->st, seal_keyring_changed, s);
    keyring_clean(&s->kr);
    seal_provider_free(s->provider);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->rotate_mu);
    free(s);
}

coffer_err seal_rotate(seal *s)
{
    ENSURE_REF(s);
    coffer_err rc = COFFER_OK;
    store_txn *t = NULL;
    struct keyring cur = {0}, next = {0};
    bool found = false;
    pthread_mutex_lock(&s->rotate_mu);
    /* Extend what the store holds, not our copy: another node may have rotated already. */
    TRY_OUT(store_txn_begin(s->st, &t));
    TRY_OUT(keyring_load(s, t, &cur, &found));
    if (!found) {
        FAIL_OUT(COFFER_ERR_STORE, "the barrier keyring is missing from the store");
    }
    TRY_OUT(keyring_extend(&cur, &next));
    TRY_OUT(keyring_save(s, t, &next));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);
    log_info("seal: rotated the barrier keyring to term %u", next.active);
    keyring_install(s, &next);
out:
    store_txn_abort(t);
    pthread_mutex_unlock(&s->rotate_mu);
    keyring_clean(&cur);
    keyring_clean(&next);
    return rc;
}

uint32_t seal_active_term(seal *s)
{
    pthread_rwlock_rdlock(&s->lock);
    uint32_t term = s->kr.active;
    pthread_rwlock_unlock(&s->lock);
    return term;
}

/* A record names a term newer than ours: another node rotated. Re-read the stored keyring. */
static void seal_reload(struct seal *s, uint32_t wanted)
{
    struct keyring kr = {0};
    bool found = false;
    pthread_mutex_lock(&s->rotate_mu);
    pthread_rwlock_rdlock(&s->lock);
    bool have = keyring_find(&s->kr, wanted) != NULL;
    pthread_rwlock_unlock(&s->lock);
    if (!have) {
        coffer_err rc = keyring_load(s, NULL, &kr, &found);
        if (rc != COFFER_OK) {
            /* Not propagated: the caller's open then fails as for any record it cannot read (one
             * answer for every bad record); why the keyring could not be read is for the log. */
            log_warn("seal: cannot reload the barrier keyring for term %u: %s", (unsigned)wanted,
                     coffer_err_message(rc));
        } else if (found && keyring_find(&kr, wanted) != NULL) {
            keyring_install(s, &kr);
        }
    }
    keyring_clean(&kr);
    pthread_mutex_unlock(&s->rotate_mu);
}

/* ---------------------------------------------------------------------------------------------
 * Sealed records: the writer and the reader of the format
 * ------------------------------------------------------------------------------------------- */

static coffer_err record_aad(uint8_t version, uint32_t term, const char *identity, coffer_buf *aad)
{
    TRY(coffer_buf_append_u8(aad, version));
    TRY(coffer_buf_append_u32be(aad, term));
    return coffer_buf_append_str(aad, identity);
}

/* With s->lock held (read): appends the record header, the IV and the AES-GCM of plaintext under
 * `term` to out, building the AAD in aad. */
static coffer_err record_seal_with(const struct seal_term *term, const char *identity,
                                   const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor plaintext,
                                   coffer_buf *aad, coffer_buf *out)
{
    TRY(record_aad(SEAL_RECORD_VERSION, term->id, identity, aad));
    TRY(coffer_buf_reserve(out, SEAL_OVERHEAD + plaintext.len));
    /* Header first: it is also the start of the AAD. */
    TRY(coffer_buf_append(out, aad->data, 1 + 4));
    TRY(coffer_buf_append(out, iv, CRYPTO_AES_GCM_IV_LEN));
    return crypto_aes_gcm_seal(coffer_cursor_from(term->key, SEAL_TERM_KEY_LEN), iv, coffer_buf_cursor(aad),
                               plaintext, out);
}

coffer_err seal_record_seal(seal *s, const char *identity, coffer_cursor plaintext, coffer_buf *out)
{
    ENSURE_REF(s);
    ENSURE_REF(out);
    if (identity == NULL || identity[0] == '\0') {
        return coffer_fail(COFFER_ERR_USAGE, "a sealed record needs an identity");
    }
    coffer_err rc = COFFER_OK;
    coffer_buf aad = COFFER_BUF_INIT;
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    size_t start = out->len;
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    pthread_rwlock_rdlock(&s->lock);
    const struct seal_term *term = keyring_find(&s->kr, s->kr.active);
    /* keyring_parse and keyring_extend only make keyrings whose active term is in them. */
    assert(term != NULL);
    rc = record_seal_with(term, identity, iv, plaintext, &aad, out);
    pthread_rwlock_unlock(&s->lock);
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    coffer_buf_free(&aad);
    return rc;
}

coffer_err seal_record_open(seal *s, const char *identity, coffer_cursor sealed, coffer_buf *out)
{
    ENSURE_REF(s);
    ENSURE_REF(out);
    if (identity == NULL || identity[0] == '\0') {
        return coffer_fail(COFFER_ERR_USAGE, "a sealed record needs an identity");
    }
    coffer_err rc = COFFER_OK;
    coffer_buf aad = COFFER_BUF_INIT;
    size_t start = out->len;
    coffer_cursor c = sealed, iv;
    uint8_t version = 0;
    uint32_t term_id = 0;
    /* version(1) || term(4) || iv(12) || ciphertext || tag(16) */
    if (cur_read_u8(&c, &version) != COFFER_OK || version != SEAL_RECORD_VERSION ||
        cur_read_u32be(&c, &term_id) != COFFER_OK ||
        cur_read_bytes(&c, CRYPTO_AES_GCM_IV_LEN, &iv) != COFFER_OK || c.len < CRYPTO_AES_GCM_TAG_LEN) {
        return open_failed();
    }
    TRY_OUT(record_aad(version, term_id, identity, &aad));
    pthread_rwlock_rdlock(&s->lock);
    bool known = keyring_find(&s->kr, term_id) != NULL;
    uint32_t newest = s->kr.n ? s->kr.terms[s->kr.n - 1].id : 0;
    pthread_rwlock_unlock(&s->lock);
    if (!known && term_id > newest) {
        seal_reload(s, term_id);
    }
    pthread_rwlock_rdlock(&s->lock);
    const struct seal_term *term = keyring_find(&s->kr, term_id);
    rc = term == NULL ? COFFER_ERR_CRYPTO
                      : crypto_aes_gcm_open(coffer_cursor_from(term->key, SEAL_TERM_KEY_LEN), iv.ptr,
                                            coffer_buf_cursor(&aad), c, out);
    pthread_rwlock_unlock(&s->lock);
    if (rc != COFFER_OK) {
        rc = open_failed();
    }
out:
    if (rc != COFFER_OK && out->len > start) {
        coffer_secure_zero(out->data + start, out->len - start);
        out->len = start;
    }
    coffer_buf_free(&aad);
    return rc;
}
