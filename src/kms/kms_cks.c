/*
 * Custom key stores of type AWS_CLOUDHSM, where the key material lives in a PKCS#11 token: the
 * mapping of CloudHSM cluster ids to tokens (from the configuration), the live connection of
 * each store (its logged-in token, hsm/hsm.h), the AES-GCM of the ciphertext blob done in
 * the token for the keys of a store, and GenerateRandom's bytes from a store's token. The
 * operations themselves are in kms_ops_stores.c.
 *
 * A key of a store is an AES-256 token object labelled with the key id, generated in the token
 * as sensitive and non-extractable: its value never enters this process. Its key record has
 * Origin AWS_CLOUDHSM, CustomKeyStoreId, and one KeyMaterials entry whose id goes into the
 * blob's header as for any key; nothing is sealed into the store for it.
 *
 * Every store known to the service has an entry in the registry (loaded at start, added on
 * create, dropped on delete): its cluster id, its connection state and, while CONNECTED, the
 * token and a cache of the key objects' handles. The registry's rwlock is taken after the
 * service's locks (wmu, then lock), never before: crypto readers hold it shared for the whole
 * token operation, so a disconnect (exclusive) waits for them and no operation uses a closed
 * token.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/log.h"
#include "common/secret.h"
#include "hsm/hsm.h"
#include "kms/kms_internal.h"
#include "seal/seal_provider.h"

#define CKS_PIN_WHAT "HSM cluster PIN"

struct cks_entry {
    char cluster_id[KMS_HSM_CLUSTER_ID_MAX + 1];
    enum kms_cks_state state;
    char error_code[KMS_CKS_ERROR_CODE_MAX];
    hsm_token *tok;     /* CONNECTED only */
    pthread_mutex_t mu; /* guards handles */
    coffer_map handles; /* key id -> hsm_object * (malloc'd) */
};

struct kms_cks_registry {
    pthread_rwlock_t lock;
    coffer_map stores; /* custom key store id -> struct cks_entry * (owned) */
    size_t n_clusters;
    struct kms_hsm_cluster clusters[KMS_MAX_HSM_CLUSTERS];
};

static const char *const state_names[] = {"DISCONNECTED", "CONNECTING", "CONNECTED", "FAILED"};

const char *kms_cks_state_name(enum kms_cks_state s)
{
    return state_names[s];
}

static bool state_parse(const char *s, enum kms_cks_state *out)
{
    for (size_t i = 0; s != NULL && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum kms_cks_state)i;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* The cluster mapping                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* AWS's cluster ids are "cluster-" + 11..16 letters and digits. */
static bool cluster_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < KMS_HSM_CLUSTER_ID_MIN || n > KMS_HSM_CLUSTER_ID_MAX || strncmp(s, "cluster-", 8) != 0) {
        return false;
    }
    for (const char *p = s + 8; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p)) {
            return false;
        }
    }
    return true;
}

static coffer_err set_field(char *dst, size_t n, const char *v, const char *cluster, const char *name)
{
    if (v[0] == '\0' || strlen(v) >= n) {
        return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: %s is empty or longer than %zu bytes",
                           cluster, name, n - 1);
    }
    memcpy(dst, v, strlen(v) + 1);
    return COFFER_OK;
}

static coffer_err set_number(const char *v, long min, long max, const char *cluster, const char *name,
                             long *out)
{
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || x < min || x > max) {
        return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: %s must be an integer between %ld and %ld",
                           cluster, name, min, max);
    }
    *out = x;
    return COFFER_OK;
}

coffer_err kms_hsm_cluster_parse(const char *spec, struct kms_hsm_cluster *out)
{
    static const char usage[] = "--hsm-cluster must be CLUSTER_ID=module=PATH,token=LABEL|slot=N,"
                                "pin-file=PATH|pin-env=NAME[,sessions=N]";
    char buf[4096];
    struct kms_hsm_cluster h;
    bool have_slot = false;
    memset(&h, 0, sizeof(h));
    h.sessions = KMS_HSM_SESSIONS_DEFAULT;
    if (spec == NULL || strlen(spec) >= sizeof(buf)) {
        return coffer_fail(COFFER_ERR_CONFIG, "%s", usage);
    }
    memcpy(buf, spec, strlen(spec) + 1);
    char *eq = strchr(buf, '=');
    if (eq == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "%s", usage);
    }
    *eq = '\0';
    if (!cluster_id_valid(buf)) {
        return coffer_fail(
            COFFER_ERR_CONFIG,
            "--hsm-cluster: '%.40s' is not a cluster id (cluster- and 11 to 16 letters or digits)", buf);
    }
    memcpy(h.cluster_id, buf, strlen(buf) + 1);
    char *save = NULL;
    for (char *part = strtok_r(eq + 1, ",", &save); part != NULL; part = strtok_r(NULL, ",", &save)) {
        char *sep = strchr(part, '=');
        if (sep == NULL) {
            return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: '%.64s' is not NAME=VALUE", h.cluster_id,
                               part);
        }
        *sep = '\0';
        const char *name = part, *v = sep + 1;
        long n = 0;
        if (strcmp(name, "module") == 0) {
            TRY(set_field(h.module, sizeof(h.module), v, h.cluster_id, name));
        } else if (strcmp(name, "token") == 0) {
            TRY(set_field(h.token, sizeof(h.token), v, h.cluster_id, name));
        } else if (strcmp(name, "slot") == 0) {
            TRY(set_number(v, 0, 0x7fffffffL, h.cluster_id, name, &h.slot));
            have_slot = true;
        } else if (strcmp(name, "pin-file") == 0) {
            TRY(set_field(h.pin_file, sizeof(h.pin_file), v, h.cluster_id, name));
        } else if (strcmp(name, "pin-env") == 0) {
            TRY(set_field(h.pin_env, sizeof(h.pin_env), v, h.cluster_id, name));
        } else if (strcmp(name, "sessions") == 0) {
            TRY(set_number(v, 1, HSM_SESSIONS_MAX, h.cluster_id, name, &n));
            h.sessions = (unsigned)n;
        } else {
            return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: unknown setting '%.32s'", h.cluster_id,
                               name);
        }
    }
    if (h.module[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: module=PATH is required", h.cluster_id);
    }
    if ((h.token[0] != '\0') == have_slot) {
        return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: give one of token=LABEL or slot=N",
                           h.cluster_id);
    }
    if ((h.pin_file[0] != '\0') == (h.pin_env[0] != '\0')) {
        return coffer_fail(COFFER_ERR_CONFIG, "--hsm-cluster %s: give one of pin-file=PATH or pin-env=NAME",
                           h.cluster_id);
    }
    *out = h;
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Registry                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void entry_free(void *p)
{
    struct cks_entry *e = p;
    if (e == NULL) {
        return;
    }
    hsm_token_free(e->tok);
    coffer_map_clean(&e->handles);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

coffer_err kms_cks_registry_new(struct kms_cks_registry **out)
{
    struct kms_cks_registry *reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
        return kms_nomem();
    }
    if (pthread_rwlock_init(&reg->lock, NULL) != 0) {
        free(reg);
        return coffer_fail(COFFER_ERR_INTERNAL, "lock init failed");
    }
    coffer_map_init(&reg->stores, entry_free);
    *out = reg;
    return COFFER_OK;
}

void kms_cks_registry_free(struct kms_cks_registry *reg)
{
    if (reg == NULL) {
        return;
    }
    coffer_map_clean(&reg->stores);
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
}

void kms_cks_set_clusters(struct kms_cks_registry *reg, const struct kms_hsm_cluster *clusters, size_t n)
{
    reg->n_clusters = n < KMS_MAX_HSM_CLUSTERS ? n : KMS_MAX_HSM_CLUSTERS;
    memcpy(reg->clusters, clusters, reg->n_clusters * sizeof(*clusters));
}

const struct kms_hsm_cluster *kms_cks_cluster(const struct kms_cks_registry *reg, const char *cluster_id)
{
    for (size_t i = 0; cluster_id != NULL && i < reg->n_clusters; i++) {
        if (strcmp(reg->clusters[i].cluster_id, cluster_id) == 0) {
            return &reg->clusters[i];
        }
    }
    return NULL;
}

void kms_cks_store_key(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    snprintf(out, n, "%s%s/%s/%s", KMS_CKS_PREFIX, acct, region, id);
}

void kms_cks_key_index(char *out, size_t n, const char *acct, const char *region, const char *cks_id,
                       const char *key_id)
{
    snprintf(out, n, "%s%s/%s/%s/%s", KMS_CKS_KEY_PREFIX, acct, region, cks_id, key_id);
}

static const char *rec_str(const json_t *rec, const char *name)
{
    const char *v = json_string_value(json_object_get(rec, name));
    return v != NULL ? v : "";
}

/* Takes the registry's lock exclusively and returns the entry of `id`, made when absent from
 * the record `rec` (state and error as it says). NULL when out of memory (lock released). */
static struct cks_entry *entry_lock(struct kms_cks_registry *reg, const char *id, const json_t *rec)
{
    pthread_rwlock_wrlock(&reg->lock);
    struct cks_entry *e = coffer_map_get(&reg->stores, id);
    if (e != NULL) {
        return e;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        pthread_rwlock_unlock(&reg->lock);
        return NULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    coffer_map_init(&e->handles, free);
    coffer_str_copy(e->cluster_id, sizeof(e->cluster_id), rec_str(rec, "CloudHsmClusterId"));
    if (!state_parse(rec_str(rec, "ConnectionState"), &e->state) || e->state == KMS_CKS_CONNECTED ||
        e->state == KMS_CKS_CONNECTING) {
        /* Connected in the record but not in this process (yet): the start-up reconnects it. */
        e->state = KMS_CKS_DISCONNECTED;
    }
    coffer_str_copy(e->error_code, sizeof(e->error_code), rec_str(rec, "ConnectionErrorCode"));
    if (coffer_map_put(&reg->stores, id, e) != COFFER_OK) {
        pthread_rwlock_unlock(&reg->lock);
        entry_free(e);
        return NULL;
    }
    return e;
}

enum kms_cks_state kms_cks_state_of(struct kms_cks_registry *reg, const char *id, const json_t *rec,
                                    char *error_code, size_t n)
{
    pthread_rwlock_rdlock(&reg->lock);
    const struct cks_entry *e = coffer_map_get(&reg->stores, id);
    enum kms_cks_state s = KMS_CKS_DISCONNECTED;
    if (e != NULL) {
        s = e->state;
        coffer_str_copy(error_code, n, e->error_code);
    } else {
        if (!state_parse(rec_str(rec, "ConnectionState"), &s) || s == KMS_CKS_CONNECTED) {
            s = KMS_CKS_DISCONNECTED;
        }
        coffer_str_copy(error_code, n, rec_str(rec, "ConnectionErrorCode"));
    }
    pthread_rwlock_unlock(&reg->lock);
    return s;
}

void kms_cks_forget(struct kms_cks_registry *reg, const char *id)
{
    pthread_rwlock_wrlock(&reg->lock);
    struct cks_entry *e = coffer_map_take(&reg->stores, id);
    pthread_rwlock_unlock(&reg->lock);
    entry_free(e);
}

coffer_err kms_cks_note(struct kms_cks_registry *reg, const char *id, const json_t *rec)
{
    struct cks_entry *e = entry_lock(reg, id, rec);
    if (e == NULL) {
        return kms_nomem();
    }
    /* The record changed (UpdateCustomKeyStore): its cluster id goes with it. */
    coffer_str_copy(e->cluster_id, sizeof(e->cluster_id), rec_str(rec, "CloudHsmClusterId"));
    pthread_rwlock_unlock(&reg->lock);
    return COFFER_OK;
}

bool kms_cks_cluster_of(struct kms_cks_registry *reg, const char *id, char *out, size_t n)
{
    pthread_rwlock_rdlock(&reg->lock);
    const struct cks_entry *e = coffer_map_get(&reg->stores, id);
    if (e != NULL) {
        coffer_str_copy(out, n, e->cluster_id);
    }
    pthread_rwlock_unlock(&reg->lock);
    return e != NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The kmsuser password                                                                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * Only a salted HMAC-SHA-256 of the password is kept (in the store record, which the barrier
 * seals): enough to tell at connect time whether it is the token's PIN, never the password.
 */
#define CKS_SALT_LEN 16

static coffer_err password_mac(const uint8_t salt[CKS_SALT_LEN], coffer_cursor password,
                               uint8_t out[CRYPTO_SHA256_LEN])
{
    return crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(salt, CKS_SALT_LEN), password, out);
}

coffer_err kms_cks_password_set(json_t *rec, const char *password)
{
    uint8_t salt[CKS_SALT_LEN], mac[CRYPTO_SHA256_LEN];
    char salt_hex[2 * CKS_SALT_LEN + 1], mac_hex[2 * CRYPTO_SHA256_LEN + 1];
    TRY(crypto_random(salt, sizeof(salt)));
    TRY(password_mac(salt, coffer_cursor_from_str(password), mac));
    coffer_hex_encode(salt, sizeof(salt), salt_hex);
    coffer_hex_encode(mac, sizeof(mac), mac_hex);
    if (json_object_set_new(rec, "PasswordSalt", json_string(salt_hex)) != 0 ||
        json_object_set_new(rec, "PasswordHash", json_string(mac_hex)) != 0) {
        return kms_nomem();
    }
    return COFFER_OK;
}

/* Does `pin` match the password the record keeps the MAC of? Constant time in the MAC. */
static bool password_matches(const json_t *rec, coffer_cursor pin)
{
    uint8_t salt[CKS_SALT_LEN], want[CRYPTO_SHA256_LEN], got[CRYPTO_SHA256_LEN];
    if (coffer_hex_decode(coffer_cursor_from_str(rec_str(rec, "PasswordSalt")), salt, sizeof(salt)) !=
            COFFER_OK ||
        coffer_hex_decode(coffer_cursor_from_str(rec_str(rec, "PasswordHash")), want, sizeof(want)) !=
            COFFER_OK ||
        password_mac(salt, pin, got) != COFFER_OK) {
        return false;
    }
    bool ok = crypto_memcmp(got, want, sizeof(got)) == 0;
    coffer_secure_zero(got, sizeof(got));
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Connecting                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* AWS's ConnectionErrorCode for why the token could not be opened. */
static const char *error_code_of(enum hsm_failure why)
{
    switch (why) {
    case HSM_FAIL_PIN_INCORRECT:
        return "INVALID_CREDENTIALS";
    case HSM_FAIL_PIN_LOCKED:
        return "USER_LOCKED_OUT";
    case HSM_FAIL_NO_TOKEN:
        return "INSUFFICIENT_CLOUDHSM_HSMS";
    case HSM_FAIL_MODULE:
        return "NETWORK_ERRORS";
    default:
        return "INTERNAL_ERROR";
    }
}

/* Opens the token of `rec`'s cluster (no lock held: a login may take a while). */
static coffer_err open_token(const struct kms_cks_registry *reg, const char *id, const json_t *rec,
                             hsm_token **tok, const char **code)
{
    coffer_err rc = COFFER_OK;
    coffer_buf pin = COFFER_SECRET_BUF_INIT;
    enum hsm_failure why = HSM_FAIL_OTHER;
    const struct kms_hsm_cluster *c = kms_cks_cluster(reg, rec_str(rec, "CloudHsmClusterId"));
    if (c == NULL) {
        *code = "CLUSTER_NOT_FOUND";
        FAIL_OUT(COFFER_ERR_CONFIG, "cluster %s is not mapped to a PKCS#11 token (--hsm-cluster)",
                 rec_str(rec, "CloudHsmClusterId"));
    }
    if (seal_secret_read(c->pin_file, c->pin_env, CKS_PIN_WHAT, &pin) != COFFER_OK) {
        *code = "INTERNAL_ERROR";
        rc = coffer_last_err();
        goto out;
    }
    /* The store's password is the kmsuser's, the token's user PIN: a store told another one
     * cannot log in, as a CloudHSM key store with a stale password cannot. */
    if (!password_matches(rec, coffer_buf_cursor(&pin))) {
        *code = "INVALID_CREDENTIALS";
        FAIL_OUT(COFFER_ERR_CONFIG, "the key store password of %s is not the PIN of cluster %s", id,
                 c->cluster_id);
    }
    struct hsm_token_config tc = {
        .module = c->module,
        .token = c->token[0] != '\0' ? c->token : NULL,
        .slot = c->slot,
        .sessions = c->sessions,
    };
    if (hsm_token_open(&tc, coffer_buf_cursor(&pin), tok, &why) != COFFER_OK) {
        *code = error_code_of(why);
        rc = coffer_last_err();
        goto out;
    }
out:
    coffer_buf_free(&pin);
    return rc;
}

coffer_err kms_cks_connect(struct kms_cks_registry *reg, const char *id, const json_t *rec, char *error_code,
                           size_t n)
{
    hsm_token *tok = NULL;
    const char *code = "";
    struct cks_entry *e = entry_lock(reg, id, rec);
    if (e == NULL) {
        return kms_nomem();
    }
    if (e->state == KMS_CKS_CONNECTED) {
        pthread_rwlock_unlock(&reg->lock);
        error_code[0] = '\0';
        return COFFER_OK;
    }
    e->state = KMS_CKS_CONNECTING;
    e->error_code[0] = '\0';
    pthread_rwlock_unlock(&reg->lock);

    coffer_err rc = open_token(reg, id, rec, &tok, &code);
    if (rc != COFFER_OK) {
        char why[256];
        coffer_str_copy(why, sizeof(why), coffer_last_message());
        log_warn("kms: custom key store %s cannot connect (%s): %s", id, code, why);
    }
    /* The entry outlives the unlocked stretch: only DeleteCustomKeyStore drops it, and it runs
     * under wmu, as the callers of this function do. */
    pthread_rwlock_wrlock(&reg->lock);
    e = coffer_map_get(&reg->stores, id);
    if (e != NULL) {
        e->state = rc == COFFER_OK ? KMS_CKS_CONNECTED : KMS_CKS_FAILED;
        coffer_str_copy(e->error_code, sizeof(e->error_code), code);
        e->tok = tok;
        tok = NULL;
    }
    pthread_rwlock_unlock(&reg->lock);
    hsm_token_free(tok);
    coffer_str_copy(error_code, n, code);
    if (rc == COFFER_OK) {
        log_info("kms: custom key store %s connected to its PKCS#11 token", id);
    }
    return rc;
}

void kms_cks_disconnect(struct kms_cks_registry *reg, const char *id, const json_t *rec)
{
    struct cks_entry *e = entry_lock(reg, id, rec);
    if (e == NULL) {
        return;
    }
    /* Exclusive: every crypto operation on the token has finished. */
    hsm_token *tok = e->tok;
    e->tok = NULL;
    e->state = KMS_CKS_DISCONNECTED;
    e->error_code[0] = '\0';
    pthread_mutex_lock(&e->mu);
    coffer_map_clean(&e->handles);
    coffer_map_init(&e->handles, free);
    pthread_mutex_unlock(&e->mu);
    pthread_rwlock_unlock(&reg->lock);
    hsm_token_free(tok);
}

/* ------------------------------------------------------------------------------------------ */
/* Keys in the token                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* kms.md §6 footnote 11: a key of a store that is not connected "is unavailable". */
static coffer_err not_connected(const char *what)
{
    return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is unavailable.", what);
}

/* Shared lock held on success (release with pthread_rwlock_unlock): the connected entry of id. */
static coffer_err entry_connected(struct kms_cks_registry *reg, const char *id, const char *what,
                                  struct cks_entry **out)
{
    pthread_rwlock_rdlock(&reg->lock);
    struct cks_entry *e = coffer_map_get(&reg->stores, id);
    if (e == NULL || e->state != KMS_CKS_CONNECTED || e->tok == NULL) {
        pthread_rwlock_unlock(&reg->lock);
        return not_connected(what);
    }
    *out = e;
    return COFFER_OK;
}

coffer_err kms_cks_key_generate(struct kms_cks_registry *reg, const char *cks_id, const char *key_id)
{
    struct cks_entry *e;
    hsm_object o;
    TRY(entry_connected(reg, cks_id, cks_id, &e));
    coffer_err rc = hsm_aes_generate(e->tok, key_id, &o);
    pthread_rwlock_unlock(&reg->lock);
    if (rc != COFFER_OK) {
        char why[256];
        coffer_str_copy(why, sizeof(why), coffer_last_message());
        log_warn("kms: custom key store %s: %s", cks_id, why);
        return coffer_fail(COFFER_ERR_CRYPTO, "The key material cannot be generated in custom key store %s.",
                           cks_id);
    }
    return COFFER_OK;
}

coffer_err kms_cks_key_destroy(struct kms_cks_registry *reg, const char *cks_id, const char *key_id)
{
    struct cks_entry *e;
    hsm_object o = 0;
    TRY(entry_connected(reg, cks_id, cks_id, &e));
    pthread_mutex_lock(&e->mu);
    hsm_object *h = coffer_map_take(&e->handles, key_id);
    pthread_mutex_unlock(&e->mu);
    coffer_err rc = hsm_aes_find(e->tok, key_id, &o);
    if (h != NULL && (rc != COFFER_OK || *h != o)) {
        if (hsm_object_destroy(e->tok, *h) != COFFER_OK) { /* its session copy */
            log_warn("kms: a session copy of key %s stays until custom key store %s disconnects", key_id,
                     cks_id);
        }
    }
    if (rc == COFFER_OK) {
        rc = hsm_object_destroy(e->tok, o);
    } else if (rc == COFFER_ERR_NOT_FOUND) {
        rc = COFFER_OK; /* gone already */
    }
    free(h);
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

coffer_err kms_cks_key_protection(struct kms_cks_registry *reg, const char *cks_id, const char *key_id,
                                  bool *extractable, bool *sensitive)
{
    struct cks_entry *e;
    hsm_object o;
    TRY(entry_connected(reg, cks_id, cks_id, &e));
    coffer_err rc = hsm_aes_find(e->tok, key_id, &o);
    if (rc == COFFER_OK) {
        rc = hsm_aes_protection(e->tok, o, extractable, sensitive);
    }
    pthread_rwlock_unlock(&reg->lock);
    return rc;
}

coffer_err kms_cks_random(struct kms_cks_registry *reg, const char *cks_id, uint8_t *out, size_t n)
{
    struct cks_entry *e;
    /* AWS answers a store that is not connected with the store's state, not the key's. */
    if (entry_connected(reg, cks_id, cks_id, &e) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_CUSTOM_KEY_STORE_INVALID_STATE,
                           "Custom key store %s is not connected: GenerateRandom is valid in a connected "
                           "key store only.",
                           cks_id);
    }
    coffer_err rc = hsm_random(e->tok, out, n);
    pthread_rwlock_unlock(&reg->lock);
    if (rc != COFFER_OK) {
        char why[256];
        coffer_str_copy(why, sizeof(why), coffer_last_message());
        log_warn("kms: custom key store %s: %s", cks_id, why);
        return coffer_fail(COFFER_ERR_CRYPTO, "Random bytes cannot be generated in custom key store %s.",
                           cks_id);
    }
    return COFFER_OK;
}

coffer_err kms_cks_usable(const struct kms_key *k)
{
    struct cks_entry *e;
    TRY(entry_connected(k->cks, k->cks_id, k->arn, &e));
    pthread_rwlock_unlock(&k->cks->lock);
    return COFFER_OK;
}

/* With the registry's lock held shared: the token object of k (cached after the first look). */
static coffer_err key_handle(struct cks_entry *e, const struct kms_key *k, hsm_object *out)
{
    /* The first use looks the key up under the mutex, so two first uses make one copy. */
    pthread_mutex_lock(&e->mu);
    coffer_err rc = COFFER_OK;
    hsm_object found, *h = coffer_map_get(&e->handles, k->key_id);
    if (h != NULL) {
        *out = *h;
        goto out;
    }
    rc = hsm_aes_find(e->tok, k->key_id, &found);
    if (rc == COFFER_ERR_NOT_FOUND) {
        FAIL_OUT(COFFER_ERR_INVALID_STATE,
                 "%s is unavailable: its key material is not in custom key store %s.", k->arn, k->cks_id);
    }
    TRY_OUT(rc);
    *out = found;
    if ((h = malloc(sizeof(*h))) == NULL) {
        goto out; /* not cached: the next use looks again */
    }
    /* Requests use a session copy when the token makes one: the same key with the same
     * protection, inside the token, and cheaper to use on tokens that keep token objects in
     * files. It goes with the sessions (disconnect) or with the key (kms_cks_key_destroy). */
    if (hsm_object_session_copy(e->tok, found, h) != COFFER_OK) {
        *h = found;
    }
    if (coffer_map_put(&e->handles, k->key_id, h) != COFFER_OK) {
        if (*h != found && hsm_object_destroy(e->tok, *h) != COFFER_OK) {
            log_warn("kms: a session copy of key %s stays until its custom key store disconnects", k->key_id);
        }
        free(h);
        goto out;
    }
    *out = *h;
out:
    pthread_mutex_unlock(&e->mu);
    return rc;
}

struct token_op {
    hsm_token *tok;
    hsm_object key;
};

static coffer_err token_seal(void *ctx, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                             coffer_cursor in, coffer_buf *out)
{
    const struct token_op *op = ctx;
    return hsm_gcm_encrypt(op->tok, op->key, iv, aad, in, out);
}

static coffer_err token_open(void *ctx, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                             coffer_cursor in, coffer_buf *out)
{
    const struct token_op *op = ctx;
    return hsm_gcm_decrypt(op->tok, op->key, iv, aad, in, out);
}

coffer_err kms_cks_encrypt(const struct kms_key *k, const json_t *ec, coffer_cursor pt, coffer_buf *out)
{
    struct cks_entry *e;
    struct token_op op;
    TRY(entry_connected(k->cks, k->cks_id, k->arn, &e));
    coffer_err rc = key_handle(e, k, &op.key);
    if (rc == COFFER_OK) {
        op.tok = e->tok;
        rc = kms_blob_encrypt_by(token_seal, &op, k->arn, k->mats[k->current].id, ec, pt, out);
    }
    pthread_rwlock_unlock(&k->cks->lock);
    return rc;
}

coffer_err kms_cks_decrypt(const struct kms_key *k, const struct kms_blob *b, const json_t *ec,
                           coffer_buf *out)
{
    struct cks_entry *e;
    struct token_op op;
    TRY(entry_connected(k->cks, k->cks_id, k->arn, &e));
    coffer_err rc = key_handle(e, k, &op.key);
    if (rc == COFFER_OK) {
        op.tok = e->tok;
        rc = kms_blob_decrypt_by(token_open, &op, b, ec, out);
    }
    pthread_rwlock_unlock(&k->cks->lock);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Start-up                                                                                   */
/* ------------------------------------------------------------------------------------------ */

struct start_scan {
    json_t *recs; /* every store record */
};

static coffer_err start_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct start_scan *s = ctx;
    (void)key;
    json_t *rec = json_loadb((const char *)value.ptr, value.len, 0, NULL);
    if (rec == NULL) {
        return coffer_fail(COFFER_ERR_STORE, "corrupt custom key store record");
    }
    return json_array_append_new(s->recs, rec) == 0 ? COFFER_OK : kms_nomem();
}

coffer_err kms_cks_start(struct kms_cks_registry *reg, store *st)
{
    struct start_scan s = {.recs = json_array()};
    if (s.recs == NULL) {
        return kms_nomem();
    }
    coffer_err rc = store_scan(st, KMS_CKS_PREFIX, NULL, 0, start_cb, &s);
    size_t i;
    const json_t *rec;
    json_array_foreach(s.recs, i, rec)
    {
        if (rc != COFFER_OK) {
            break;
        }
        const char *id = rec_str(rec, "CustomKeyStoreId");
        rc = kms_cks_note(reg, id, rec);
        if (rc == COFFER_OK && strcmp(rec_str(rec, "ConnectionState"), "CONNECTED") == 0) {
            /* Connected when the server stopped: connected again, or FAILED with the reason. The
             * record keeps CONNECTED, so the next start tries again. */
            char code[KMS_CKS_ERROR_CODE_MAX];
            if (kms_cks_connect(reg, id, rec, code, sizeof(code)) != COFFER_OK) {
                log_warn("kms: custom key store %s stays FAILED (%s) until it is disconnected and connected",
                         id, code);
            }
        }
    }
    json_decref(s.recs);
    return rc;
}
