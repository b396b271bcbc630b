/*
 * cofferd configuration loading (see config.h). One table names every option once, with its
 * flag, environment variable and setter, so the three sources cannot disagree.
 */
#include "server/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "quota/quota.h"

typedef coffer_err (*config_setter)(struct server_config *cfg, const char *value);

struct config_option {
    const char *flag; /* long flag without "--"; also the config-file key */
    const char *env;
    bool takes_value;
    config_setter set;
    const char *help;
};

static coffer_err copy_str(char *dst, size_t n, const char *v, const char *what)
{
    if (strlen(v) >= n) {
        return coffer_fail(COFFER_ERR_CONFIG, "%s is too long", what);
    }
    memcpy(dst, v, strlen(v) + 1);
    return COFFER_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

static coffer_err parse_long(const char *v, long min, long max, const char *what, long *out)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < min || x > max) {
        return coffer_fail(COFFER_ERR_CONFIG, "%s must be an integer between %ld and %ld (got '%s')", what,
                           min, max, v);
    }
    *out = x;
    return COFFER_OK;
}

static coffer_err set_data_dir(struct server_config *c, const char *v)
{
    return copy_str(c->data_dir, sizeof(c->data_dir), v, "data dir");
}

/* The URL may carry a password: errors never repeat it. */
static coffer_err set_store(struct server_config *c, const char *v)
{
    if (strcmp(v, "sqlite") != 0 && strncmp(v, "postgres://", 11) != 0 &&
        strncmp(v, "postgresql://", 13) != 0) {
        return coffer_fail(COFFER_ERR_CONFIG, "--store must be sqlite or a postgres:// URL");
    }
    return copy_str(c->store, sizeof(c->store), v, "store URL");
}

static coffer_err set_listen(struct server_config *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "--listen must be HOST:PORT (got '%s')", v);
    }
    size_t hlen = (size_t)(colon - v);
    const char *host = v;
    if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']') { /* [::1]:8443 */
        host = v + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(c->listen_host)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--listen has an invalid host (got '%s')", v);
    }
    memcpy(c->listen_host, host, hlen);
    c->listen_host[hlen] = '\0';
    long port = 0;
    TRY(parse_long(colon + 1, 0, 65535, "listen port", &port));
    c->listen_port = (int)port;
    return COFFER_OK;
}

static coffer_err set_tls_cert(struct server_config *c, const char *v)
{
    return copy_str(c->tls_cert, sizeof(c->tls_cert), v, "TLS certificate path");
}

static coffer_err set_tls_key(struct server_config *c, const char *v)
{
    return copy_str(c->tls_key, sizeof(c->tls_key), v, "TLS key path");
}

static coffer_err set_insecure(struct server_config *c, const char *v)
{
    c->insecure_http = v == NULL || strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
    return COFFER_OK;
}

static coffer_err set_region(struct server_config *c, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-')) {
            return coffer_fail(COFFER_ERR_CONFIG, "region must look like us-east-1 (got '%s')", v);
        }
    }
    return copy_str(c->region, sizeof(c->region), v, "region");
}

static coffer_err set_audit_kms_key(struct server_config *c, const char *v)
{
    if (v[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "--audit-kms-key-id needs a key ARN, key id or alias");
    }
    return copy_str(c->audit_kms_key_id, sizeof(c->audit_kms_key_id), v, "audit KMS key id");
}

static coffer_err set_node_id(struct server_config *c, const char *v)
{
    if (!audit_node_id_valid(v)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--node-id must be 1 to %d of A-Z a-z 0-9 . _ - (got '%s')",
                           AUDIT_NODE_ID_MAX, v);
    }
    return copy_str(c->node_id, sizeof(c->node_id), v, "node id");
}

static coffer_err set_log_level(struct server_config *c, const char *v)
{
    return copy_str(c->log_level, sizeof(c->log_level), v, "log level");
}

static coffer_err set_authorization(struct server_config *c, const char *v)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "off") == 0) {
        c->authorization = strcmp(v, "on") == 0;
        return COFFER_OK;
    }
    return coffer_fail(COFFER_ERR_CONFIG, "--authorization must be on or off (got '%s')", v);
}

/* A numeric setting: set_NAME parses v within [lo, hi] and stores it in c->FIELD as TYPE. */
#define NUMBER_SETTER(name, field, type, lo, hi, flag)                                                       \
    static coffer_err set_##name(struct server_config *c, const char *v)                                     \
    {                                                                                                        \
        long x = 0;                                                                                          \
        TRY(parse_long(v, lo, hi, flag, &x));                                                                \
        c->field = (type)x;                                                                                  \
        return COFFER_OK;                                                                                    \
    }
NUMBER_SETTER(workers, workers, int, 0, 256, "workers")
NUMBER_SETTER(quota, quota_crypto_rps, double, 0, 100000000, "quota-crypto-rps")
NUMBER_SETTER(max_conn, max_connections, int, 1, 1000000, "max-connections")
NUMBER_SETTER(max_body, max_body, size_t, 1024, 64L * 1024 * 1024, "max-body")
NUMBER_SETTER(timeout, timeout_s, int, 1, 3600, "timeout")
NUMBER_SETTER(sweep, sweep_interval_s, int, 1, 86400, "sweep-interval")
NUMBER_SETTER(unauth_per_source, audit_unauth_per_source, unsigned, 1, 1000000, "audit-unauth-per-source")
NUMBER_SETTER(unauth_total, audit_unauth_total, unsigned, 1, 100000000, "audit-unauth-total")
NUMBER_SETTER(unauth_window, audit_unauth_window_s, unsigned, 1, 86400, "audit-unauth-window")
NUMBER_SETTER(audit_period, audit_period_ms, unsigned, 100, 86400000, "audit-period-ms")
/* Resource quotas: all with the same bounds. */
NUMBER_SETTER(kms_keys, kms.limits.kms_keys, size_t, 1, 100000000, "max-keys")
NUMBER_SETTER(kms_aliases_per_key, kms.limits.kms_aliases_per_key, size_t, 1, 100000000,
              "max-aliases-per-key")
NUMBER_SETTER(kms_tags_per_key, kms.limits.kms_tags_per_key, size_t, 1, 100000000, "max-tags-per-key")
NUMBER_SETTER(kms_key_policy_bytes, kms.limits.kms_key_policy_bytes, size_t, 1, 100000000,
              "max-key-policy-bytes")
NUMBER_SETTER(kms_grants_per_key, kms.limits.kms_grants_per_key, size_t, 1, 100000000, "max-grants-per-key")
NUMBER_SETTER(kms_rotation_day_ms, kms.limits.kms_rotation_day_ms, int64_t, 1, 86400000, "rotation-day-ms")
NUMBER_SETTER(kms_deletion_day_ms, kms.limits.kms_deletion_day_ms, int64_t, 1, 86400000, "deletion-day-ms")
NUMBER_SETTER(secret_recovery_day_ms, secrets.recovery_day_ms, int64_t, 1, 86400000, "secret-recovery-day-ms")
NUMBER_SETTER(secret_rotation_day_ms, secrets.rotation_day_ms, int64_t, 1, 86400000, "secret-rotation-day-ms")
NUMBER_SETTER(secret_rotation_timeout_ms, secrets.rotation_step_timeout_ms, int64_t, 100, 900000,
              "secret-rotation-timeout-ms")
NUMBER_SETTER(kms_rsa_rps, kms.limits.rsa_rps, double, 1, 100000000, "quota-rsa-rps")
NUMBER_SETTER(kms_ecc_rps, kms.limits.ecc_rps, double, 1, 100000000, "quota-ecc-rps")
NUMBER_SETTER(ssm_max_standard, ssm.max_standard, size_t, 1, 100000000, "ssm-max-standard")
NUMBER_SETTER(ssm_max_advanced, ssm.max_advanced, size_t, 1, 100000000, "ssm-max-advanced")
NUMBER_SETTER(iam_users, iam_limits.iam_users, size_t, 1, 100000000, "max-users")
NUMBER_SETTER(iam_roles, iam_limits.iam_roles, size_t, 1, 100000000, "max-roles")
NUMBER_SETTER(iam_policies, iam_limits.iam_policies, size_t, 1, 100000000, "max-policies")
NUMBER_SETTER(iam_attached, iam_limits.iam_attached, size_t, 1, 100000000, "max-attached-policies")
NUMBER_SETTER(iam_user_inline_chars, iam_limits.iam_user_inline_chars, size_t, 1, 100000000,
              "max-user-inline-policy-chars")
NUMBER_SETTER(iam_role_inline_chars, iam_limits.iam_role_inline_chars, size_t, 1, 100000000,
              "max-role-inline-policy-chars")
NUMBER_SETTER(iam_managed_doc_chars, iam_limits.iam_managed_doc_chars, size_t, 1, 100000000,
              "max-managed-policy-chars")
NUMBER_SETTER(iam_trust_doc_chars, iam_limits.iam_trust_doc_chars, size_t, 1, 100000000,
              "max-trust-policy-chars")
#undef NUMBER_SETTER

/* ------------------------------------------------------------------------------------------ */
/* Repeatable list settings: --peer, --hsm-cluster, --rotation-function                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * One NAME=VALUE setting an item of a list may carry after its head ("ca=PATH" of a peer):
 * the value is copied into the char array at `offset` in the entry. A flag's settings are a
 * table ending in {NULL}, so a new one is one more line.
 */
struct item_setting {
    const char *name;
    size_t offset;    /* of the char array in the entry */
    size_t size;      /* of that array */
    const char *what; /* "peer CA path": for "... is too long" */
};
#define ITEM_SETTING(name, type, field, what)                                                                \
    {                                                                                                        \
        name, offsetof(type, field), sizeof(((type *)0)->field), what                                        \
    }

/*
 * The rest of an item being split on ',' by strtok_r (`save`): every part is NAME=VALUE with
 * NAME in `table`; names and values are trimmed; empty parts (a trailing ',') are skipped.
 * Errors name the flag and the item's key.
 */
static coffer_err item_settings(char **save, const struct item_setting *table, void *entry, const char *flag,
                                const char *key)
{
    char *part;
    while ((part = strtok_r(NULL, ",", save)) != NULL) {
        char *eq = strchr(part, '=');
        if (eq == NULL) {
            return coffer_fail(COFFER_ERR_CONFIG, "%s %s: '%s' is not NAME=VALUE", flag, key, part);
        }
        *eq = '\0';
        const char *name = trim(part), *val = trim(eq + 1);
        const struct item_setting *s = table;
        while (s->name != NULL && strcmp(s->name, name) != 0) {
            s++;
        }
        if (s->name == NULL) {
            return coffer_fail(COFFER_ERR_CONFIG, "%s %s: unknown setting '%s'", flag, key, name);
        }
        TRY(copy_str((char *)entry + s->offset, s->size, val, s->what));
    }
    return COFFER_OK;
}

/* Room for one parsed item of any list. */
union list_entry {
    struct kms_peer peer;
    struct kms_hsm_cluster hsm_cluster;
    struct secrets_rotation_function rotation_function;
};

/*
 * A setting that is a list of entries keyed by a name: several may be given by repeating the
 * flag or the file line, or separated by ';' in one value (the environment variable). An entry
 * whose key is named again replaces the earlier one, so a flag overrides the file line of the
 * same key; a new key is appended, up to `max`.
 */
struct config_list {
    const char *flag;  /* "--peer" */
    const char *noun;  /* "peer regions": "at most 16 peer regions" */
    size_t max;        /* entries the array holds */
    size_t array;      /* offsetof the entry array in struct server_config */
    size_t count;      /* offsetof its size_t count */
    size_t entry_size; /* of one entry (<= sizeof(union list_entry)) */
    size_t key;        /* offsetof the entry's NUL-terminated key */
    /* Parses one trimmed, non-empty item (may modify it) into *entry; COFFER_ERR_CONFIG why not. */
    coffer_err (*parse)(char *item, void *entry);
};
#define CONFIG_LIST(flag, noun, max, array, count, type, key, parse)                                         \
    {                                                                                                        \
        flag, noun, max, offsetof(struct server_config, array), offsetof(struct server_config, count),       \
            sizeof(type), offsetof(type, key), parse                                                         \
    }

static coffer_err config_list_add(struct server_config *c, const struct config_list *l, const char *v)
{
    char buf[4096], what[64];
    snprintf(what, sizeof(what), "%s value", l->flag);
    TRY(copy_str(buf, sizeof(buf), v, what));
    unsigned char *entries = (unsigned char *)c + l->array;
    size_t *n = (size_t *)(void *)((unsigned char *)c + l->count);
    assert(l->entry_size <= sizeof(union list_entry));
    char *save = NULL;
    for (char *one = strtok_r(buf, ";", &save); one != NULL; one = strtok_r(NULL, ";", &save)) {
        char *item = trim(one);
        if (*item == '\0') {
            continue;
        }
        union list_entry e;
        TRY(l->parse(item, &e));
        const char *key = (const char *)&e + l->key;
        size_t i = 0;
        while (i < *n && strcmp((const char *)entries + i * l->entry_size + l->key, key) != 0) {
            i++;
        }
        if (i == l->max) {
            return coffer_fail(COFFER_ERR_CONFIG, "at most %zu %s", l->max, l->noun);
        }
        memcpy(entries + i * l->entry_size, &e, l->entry_size);
        if (i == *n) {
            (*n)++;
        }
    }
    return COFFER_OK;
}

/* ---- --peer: "REGION=URL[,ca=PATH][,credentials=PATH][,profile=NAME][,principal=ARN]" (kms.h
 * struct kms_peer) ---- */

static const struct item_setting peer_settings[] = {
    ITEM_SETTING("ca", struct kms_peer, ca_bundle, "peer CA path"),
    ITEM_SETTING("credentials", struct kms_peer, credentials_file, "peer credentials path"),
    ITEM_SETTING("profile", struct kms_peer, profile, "peer profile"),
    ITEM_SETTING("principal", struct kms_peer, principal, "peer principal"),
    {NULL, 0, 0, NULL},
};

static coffer_err peer_parse(char *item, void *entry)
{
    struct kms_peer *p = entry;
    memset(p, 0, sizeof(*p));
    char *save = NULL, *part = strtok_r(item, ",", &save);
    char *eq = part != NULL ? strchr(part, '=') : NULL;
    if (eq == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "--peer must be REGION=URL[,ca=PATH][,credentials=PATH]"
                                              "[,profile=NAME][,principal=ARN]");
    }
    *eq = '\0';
    const char *region = trim(part), *url = trim(eq + 1);
    if (*region == '\0' || strlen(region) > KMS_PEER_REGION_MAX) {
        return coffer_fail(COFFER_ERR_CONFIG, "--peer: bad region '%s'", region);
    }
    for (const char *q = region; *q; q++) {
        if (!(islower((unsigned char)*q) || isdigit((unsigned char)*q) || *q == '-')) {
            return coffer_fail(COFFER_ERR_CONFIG, "--peer: region must look like eu-west-1 (got '%s')",
                               region);
        }
    }
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) {
        return coffer_fail(COFFER_ERR_CONFIG, "--peer %s: the endpoint must be an http(s) URL (got '%s')",
                           region, url);
    }
    TRY(copy_str(p->region, sizeof(p->region), region, "peer region"));
    TRY(copy_str(p->endpoint, sizeof(p->endpoint), url, "peer endpoint"));
    return item_settings(&save, peer_settings, p, "--peer", p->region);
}

static const struct config_list peer_list = CONFIG_LIST("--peer", "peer regions", KMS_MAX_PEERS, kms.peers,
                                                        kms.n_peers, struct kms_peer, region, peer_parse);

static coffer_err set_peer(struct server_config *c, const char *v)
{
    return config_list_add(c, &peer_list, v);
}

/* ---- --hsm-cluster: CloudHSM cluster ids mapped to PKCS#11 tokens (kms.h struct
 * kms_hsm_cluster; kms_hsm_cluster_parse reads the settings) ---- */

static coffer_err hsm_cluster_parse(char *item, void *entry)
{
    return kms_hsm_cluster_parse(item, entry);
}

static const struct config_list hsm_cluster_list =
    CONFIG_LIST("--hsm-cluster", "HSM clusters", KMS_MAX_HSM_CLUSTERS, kms.hsm_clusters, kms.n_hsm_clusters,
                struct kms_hsm_cluster, cluster_id, hsm_cluster_parse);

static coffer_err set_hsm_cluster(struct server_config *c, const char *v)
{
    return config_list_add(c, &hsm_cluster_list, v);
}

/* ---- --rotation-function: "ARN=TARGET" (secrets.h struct secrets_rotation_function) ---- */

static coffer_err rotation_function_parse(char *item, void *entry)
{
    return secrets_rotation_function_parse(item, entry);
}

static const struct config_list rotation_function_list = CONFIG_LIST(
    "--rotation-function", "rotation functions", SECRETS_MAX_ROTATION_FUNCTIONS, secrets.functions,
    secrets.n_functions, struct secrets_rotation_function, arn, rotation_function_parse);

static coffer_err set_rotation_function(struct server_config *c, const char *v)
{
    return config_list_add(c, &rotation_function_list, v);
}

static coffer_err set_config_file(struct server_config *c, const char *v)
{
    return copy_str(c->config_file, sizeof(c->config_file), v, "config file path");
}

static coffer_err set_seal(struct server_config *c, const char *v)
{
    if (v == NULL || v[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal needs a provider: file, passphrase or pkcs11:...");
    }
    /* The provider's own settings are checked when it is opened; its name is checked now. */
    size_t n = strcspn(v, ":");
    if (!((n == 4 && strncmp(v, "file", n) == 0) || (n == 10 && strncmp(v, "passphrase", n) == 0) ||
          (n == 6 && strncmp(v, "pkcs11", n) == 0))) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal: unknown provider '%.*s' (file, passphrase or pkcs11)",
                           (int)n, v);
    }
    return copy_str(c->seal, sizeof(c->seal), v, "--seal value");
}

static const struct config_option options[] = {
    {"data-dir", "COFFER_DATA_DIR", true, set_data_dir, "data directory (default ./coffer-data)"},
    {"store", "COFFER_STORE", true, set_store,
     "where records live: sqlite (DIR/coffer.db, the default) or postgres://USER@HOST:PORT/DB?sslmode=..., "
     "one database shared by every node of a deployment (nodes share DIR's root.key and tls/ by copying "
     "DIR)"},
    {"listen", "COFFER_LISTEN", true, set_listen, "HOST:PORT to listen on (default 127.0.0.1:8443)"},
    {"tls-cert", "COFFER_TLS_CERT", true, set_tls_cert,
     "PEM certificate chain (default: generated in DIR/tls)"},
    {"tls-key", "COFFER_TLS_KEY", true, set_tls_key, "PEM private key for --tls-cert"},
    {"insecure-http", "COFFER_INSECURE_HTTP", false, set_insecure, "serve plain HTTP (testing only)"},
    {"workers", "COFFER_WORKERS", true, set_workers, "worker threads (default: number of CPUs)"},
    {"region", "COFFER_REGION", true, set_region, "region this server answers for (default us-east-1)"},
    {"quota-crypto-rps", "COFFER_QUOTA_CRYPTO_RPS", true, set_quota,
     "shared cryptographic quota per account, requests/s (default 5500; 0 turns quotas off)"},
    {"quota-rsa-rps", "COFFER_QUOTA_RSA_RPS", true, set_kms_rsa_rps,
     "KMS cryptographic requests with RSA keys per account, requests/s (default 500)"},
    {"quota-ecc-rps", "COFFER_QUOTA_ECC_RPS", true, set_kms_ecc_rps,
     "KMS Sign and Verify requests with ECC keys per account, requests/s (default 300)"},
    {"authorization", "COFFER_AUTHORIZATION", true, set_authorization,
     "on: key policies, IAM policies and grants decide every request; off: any valid key may do anything "
     "(default on)"},
    {"max-connections", "COFFER_MAX_CONNECTIONS", true, set_max_conn, "open connection cap (default 4096)"},
    {"max-body", "COFFER_MAX_BODY", true, set_max_body, "request body limit in bytes (default 1048576)"},
    {"max-grants-per-key", "COFFER_MAX_GRANTS_PER_KEY", true, set_kms_grants_per_key,
     "grants one KMS key may hold; CreateGrant beyond it is LimitExceededException (default 50000)"},
    {"rotation-day-ms", "COFFER_ROTATION_DAY_MS", true, set_kms_rotation_day_ms,
     "length of one day of a KMS key rotation period in ms (testing only; default 86400000)"},
    {"deletion-day-ms", "COFFER_DELETION_DAY_MS", true, set_kms_deletion_day_ms,
     "length of one day of a KMS key deletion waiting period in ms (testing only; default 86400000)"},
    {"secret-recovery-day-ms", "COFFER_SECRET_RECOVERY_DAY_MS", true, set_secret_recovery_day_ms,
     "length of one day of a Secrets Manager recovery window in ms (testing only; default 86400000)"},
    {"secret-rotation-day-ms", "COFFER_SECRET_ROTATION_DAY_MS", true, set_secret_rotation_day_ms,
     "length of one day of a Secrets Manager rotation schedule in ms (testing only; default 86400000)"},
    {"secret-rotation-timeout-ms", "COFFER_SECRET_ROTATION_TIMEOUT_MS", true, set_secret_rotation_timeout_ms,
     "time one step of a secret rotation function may take, in ms (default 30000)"},
    {"rotation-function", "COFFER_ROTATION_FUNCTION", true, set_rotation_function,
     "Secrets Manager rotation function, repeatable: ARN=exec:/path, ARN=https://host/path[,ca=/ca.pem] "
     "(the webhook's certificate checked against that CA file, default the system's) or "
     "ARN=builtin:postgres-single-user|postgres-alternating-users"},
    {"timeout", "COFFER_TIMEOUT", true, set_timeout, "header/body/idle timeout in seconds (default 30)"},
    {"sweep-interval", "COFFER_SWEEP_INTERVAL", true, set_sweep,
     "seconds between scheduler runs (deletions) (default 10)"},
    {"audit-unauth-per-source", "COFFER_AUDIT_UNAUTH_PER_SOURCE", true, set_unauth_per_source,
     "audit events per source address per window for requests that fail authentication (default 20)"},
    {"audit-unauth-total", "COFFER_AUDIT_UNAUTH_TOTAL", true, set_unauth_total,
     "audit events per window for requests that fail authentication, all sources (default 1000)"},
    {"audit-unauth-window", "COFFER_AUDIT_UNAUTH_WINDOW", true, set_unauth_window,
     "seconds per window; suppressed events are summed in one event per window (default 60)"},
    {"node-id", "COFFER_NODE_ID", true, set_node_id,
     "this node's name in audit events and digests, each node keeping its own chain (default: the host "
     "name and a hash of the data dir)"},
    {"audit-period-ms", "COFFER_AUDIT_PERIOD_MS", true, set_audit_period,
     "trail files rotate and a signed digest is written every period, on wall-clock multiples "
     "(default 3600000: hourly)"},
    {"audit-kms-key-id", "COFFER_AUDIT_KMS_KEY_ID", true, set_audit_kms_key,
     "encrypt the audit trail: each file gets a data key under this KMS key (ARN, key id or alias) of "
     "the default account, whose root the key policy must allow kms:GenerateDataKey"},
    {"peer", "COFFER_PEER", true, set_peer,
     "peer region for multi-Region keys, repeatable: REGION=URL[,ca=PATH][,credentials=PATH][,profile=NAME]"
     "[,principal=ARN] (several in one value separated by ';')"},
    {"log-level", "COFFER_LOG_LEVEL", true, set_log_level, "debug, info, warn, error (default info)"},
    {"ssm-max-standard", "COFFER_SSM_MAX_STANDARD", true, set_ssm_max_standard,
     "standard-tier SSM parameters per account and region (default 10000)"},
    {"ssm-max-advanced", "COFFER_SSM_MAX_ADVANCED", true, set_ssm_max_advanced,
     "advanced-tier SSM parameters per account and region (default 100000)"},
    {"max-keys", "COFFER_MAX_KEYS", true, set_kms_keys, "KMS keys per account and region (default 100000)"},
    {"max-aliases-per-key", "COFFER_MAX_ALIASES_PER_KEY", true, set_kms_aliases_per_key,
     "aliases per KMS key (default 50)"},
    {"max-tags-per-key", "COFFER_MAX_TAGS_PER_KEY", true, set_kms_tags_per_key,
     "tags per KMS key (default 50)"},
    {"max-key-policy-bytes", "COFFER_MAX_KEY_POLICY_BYTES", true, set_kms_key_policy_bytes,
     "key policy document size (default 32768)"},
    {"max-users", "COFFER_MAX_USERS", true, set_iam_users, "IAM users per account (default 5000)"},
    {"max-roles", "COFFER_MAX_ROLES", true, set_iam_roles, "IAM roles per account (default 1000)"},
    {"max-policies", "COFFER_MAX_POLICIES", true, set_iam_policies,
     "customer managed policies per account (default 1500)"},
    {"max-attached-policies", "COFFER_MAX_ATTACHED_POLICIES", true, set_iam_attached,
     "managed policies attached to one user or role (default 10)"},
    {"max-user-inline-policy-chars", "COFFER_MAX_USER_INLINE_POLICY_CHARS", true, set_iam_user_inline_chars,
     "all inline policies of one user, non-space characters (default 2048)"},
    {"max-role-inline-policy-chars", "COFFER_MAX_ROLE_INLINE_POLICY_CHARS", true, set_iam_role_inline_chars,
     "all inline policies of one role, non-space characters (default 10240)"},
    {"max-managed-policy-chars", "COFFER_MAX_MANAGED_POLICY_CHARS", true, set_iam_managed_doc_chars,
     "one managed policy document, non-space characters (default 6144)"},
    {"max-trust-policy-chars", "COFFER_MAX_TRUST_POLICY_CHARS", true, set_iam_trust_doc_chars,
     "one role trust policy, non-space characters (default 2048)"},
    {"seal", "COFFER_SEAL", true, set_seal,
     "where the root key lives: file[:path=PATH] (default DIR/root.key), "
     "passphrase[:fd=N|file=PATH|env=NAME|credential=NAME][,ops=N,mem=MiB] (else prompted), or "
     "pkcs11:module=PATH,token=LABEL|slot=N,pin-file=PATH|pin-env=NAME,key=LABEL[,create=yes] (default "
     "file)"},
    {"hsm-cluster", "COFFER_HSM_CLUSTER", true, set_hsm_cluster,
     "a CloudHSM cluster id for custom key stores, mapped to a PKCS#11 token: "
     "CLUSTER_ID=module=PATH,token=LABEL|slot=N,pin-file=PATH|pin-env=NAME[,sessions=N] (repeatable)"},
    {"config", "COFFER_CONFIG", true, set_config_file, "config file (default DIR/cofferd.conf if present)"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static const struct config_option *option_find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, name, len) == 0) {
            return &options[i];
        }
    }
    return NULL;
}

void server_config_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [options]\n\nOptions (each also settable by environment or config file):\n",
            prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        fprintf(stderr, "  --%-28s %s [%s]\n", options[i].flag, options[i].help, options[i].env);
    }
    fprintf(stderr, "  --%-28s %s\n", "help", "show this help");
}

/* The built-in defaults go through the same setters as user input; they are valid by construction. */
static void default_set(coffer_err rc)
{
    assert(rc == COFFER_OK);
    (void)rc;
}

static void config_defaults(struct server_config *c)
{
    memset(c, 0, sizeof(*c));
    default_set(set_data_dir(c, CONFIG_DEFAULT_DATA_DIR));
    default_set(set_store(c, "sqlite"));
    default_set(set_listen(c, CONFIG_DEFAULT_LISTEN));
    default_set(set_region(c, CONFIG_DEFAULT_REGION));
    c->quota_crypto_rps = QUOTA_DEFAULT_CRYPTO_RPS;
    c->authorization = true;
    c->max_connections = 4096;
    c->max_body = 1024 * 1024;
    c->timeout_s = 30;
    c->sweep_interval_s = 10;
    c->audit_unauth_per_source = AUDIT_UNAUTH_PER_SOURCE_DEFAULT;
    c->audit_unauth_total = AUDIT_UNAUTH_TOTAL_DEFAULT;
    c->audit_unauth_window_s = AUDIT_UNAUTH_WINDOW_S_DEFAULT;
    c->audit_period_ms = AUDIT_PERIOD_MS_DEFAULT;
    default_set(set_log_level(c, "info"));
    default_set(set_seal(c, "file"));
    c->kms.limits = (struct kms_limits)KMS_LIMITS_DEFAULT;
    c->secrets = (struct secrets_settings)SECRETS_SETTINGS_DEFAULT;
    c->iam_limits = (struct iam_limits)IAM_LIMITS_DEFAULT;
    c->ssm = (struct ssm_settings)SSM_SETTINGS_DEFAULT;
}

static coffer_err config_load_file(struct server_config *c, const char *path, bool must_exist)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return must_exist
                   ? coffer_fail(COFFER_ERR_CONFIG, "cannot open config file %s: %s", path, strerror(errno))
                   : COFFER_OK;
    }
    char line[2048];
    int lineno = 0;
    coffer_err rc = COFFER_OK;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) {
            *hash = '\0';
        }
        char *s = trim(line);
        if (*s == '\0') {
            continue;
        }
        char *eq = strchr(s, '=');
        char *key = trim(eq ? (*eq = '\0', s) : s);
        char *val = eq ? trim(eq + 1) : NULL;
        const struct config_option *o = option_find(key, strlen(key));
        if (o == NULL || strcmp(o->flag, "config") == 0) {
            FAIL_OUT(COFFER_ERR_CONFIG, "%s:%d: unknown setting '%s'", path, lineno, key);
        }
        if (o->takes_value && (val == NULL || *val == '\0')) {
            FAIL_OUT(COFFER_ERR_CONFIG, "%s:%d: '%s' needs a value", path, lineno, key);
        }
        TRY_OUT(o->set(c, val));
    }
out:
    fclose(f);
    return rc;
}

/* One pass over argv: apply only --config/--data-dir (pass 0) or everything (pass 1). */
static coffer_err config_apply_args(struct server_config *c, int argc, char **argv, int pass)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            server_config_usage(argv[0]);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) {
            return coffer_fail(COFFER_ERR_CONFIG, "unexpected argument '%s' (see --help)", a);
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct config_option *o = option_find(name, nlen);
        if (o == NULL) {
            return coffer_fail(COFFER_ERR_CONFIG, "unknown option '%s' (see --help)", a);
        }
        const char *val = NULL;
        if (o->takes_value) {
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                return coffer_fail(COFFER_ERR_CONFIG, "option --%s needs a value", o->flag);
            }
        } else if (eq) {
            val = eq + 1;
        }
        bool early = o->set == set_config_file || o->set == set_data_dir;
        if (pass == 1 || early) {
            TRY(o->set(c, val));
        }
    }
    return COFFER_OK;
}

static coffer_err config_apply_env(struct server_config *c, bool early_only)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        bool early = options[i].set == set_config_file || options[i].set == set_data_dir;
        if (early_only != early) {
            continue;
        }
        const char *v = getenv(options[i].env);
        if (v != NULL && *v != '\0') {
            TRY(options[i].set(c, v));
        }
    }
    return COFFER_OK;
}

coffer_err server_config_load(struct server_config *c, int argc, char **argv)
{
    config_defaults(c);
    /* Locate the config file first (it may live in the data dir), then layer the sources. */
    TRY(config_apply_env(c, true));
    TRY(config_apply_args(c, argc, argv, 0));
    char path[1100];
    bool explicit_file = c->config_file[0] != '\0';
    snprintf(path, sizeof(path), "%s", explicit_file ? c->config_file : "");
    if (!explicit_file) {
        snprintf(path, sizeof(path), "%s/cofferd.conf", c->data_dir);
    }
    TRY(config_load_file(c, path, explicit_file));
    TRY(config_apply_env(c, false));
    TRY(config_apply_env(c, true));
    TRY(config_apply_args(c, argc, argv, 1));
    if ((c->tls_cert[0] != '\0') != (c->tls_key[0] != '\0')) {
        return coffer_fail(COFFER_ERR_CONFIG, "--tls-cert and --tls-key go together");
    }
    for (size_t i = 0; i < c->kms.n_peers; i++) {
        if (strcmp(c->kms.peers[i].region, c->region) == 0) {
            return coffer_fail(COFFER_ERR_CONFIG, "--peer %s: a server cannot be its own peer", c->region);
        }
    }
    return COFFER_OK;
}
