/*
 * cofferd configuration. Precedence: command-line flags, then environment variables
 * (COFFER_DATA_DIR, COFFER_LISTEN, ...), then the config file (`--config FILE`, or
 * DIR/cofferd.conf when present), then defaults. The file holds `key = value` lines with the
 * long flag names as keys ("listen = 127.0.0.1:8443"); '#' starts a comment.
 */
#ifndef COFFER_SERVER_CONFIG_H
#define COFFER_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "audit/audit.h"
#include "common/err.h"
#include "iam/directory.h"
#include "kms/kms.h"
#include "secrets/secrets.h"
#include "ssm/ssm.h"

#define CONFIG_DEFAULT_DATA_DIR "./coffer-data"
#define CONFIG_DEFAULT_LISTEN "127.0.0.1:8443"
#define CONFIG_DEFAULT_REGION "us-east-1"
#define CONFIG_DEFAULT_ACCOUNT "000000000000"

struct server_config {
    char data_dir[1024];
    char store[1024]; /* "sqlite" (DIR/coffer.db) or a postgres:// URL; may hold a password */
    char listen_host[256];
    int listen_port;
    char tls_cert[1024]; /* empty: generated under DIR/tls */
    char tls_key[1024];
    bool insecure_http;
    int workers; /* 0 = number of CPUs */
    char region[64];
    double quota_crypto_rps; /* 0 = quotas off */
    bool authorization;      /* key policies, IAM policies and grants decide requests (default on) */
    int max_connections;
    size_t max_body;
    int timeout_s;
    int sweep_interval_s;
    unsigned
        audit_unauth_per_source;    /* trail events per source address per window for failed authentication */
    unsigned audit_unauth_total;    /* the same from all sources together */
    unsigned audit_unauth_window_s; /* the window, seconds */
    char node_id[AUDIT_NODE_ID_MAX + 1];      /* this node's audit chain; "" = derived at start */
    unsigned audit_period_ms;                 /* trail rotation and digest period (default an hour) */
    char audit_kms_key_id[AUDIT_ENC_ARN_MAX]; /* "": the trail in clear; else its files' KMS key */
    char log_level[16];
    struct kms_settings kms;         /* KMS resource quotas and peer regions (kms/kms.h) */
    struct secrets_settings secrets; /* Secrets Manager (secrets/secrets.h) */
    struct iam_limits iam_limits;    /* IAM resource quotas (iam/directory.h) */
    struct ssm_settings ssm;         /* Parameter Store parameter counts (ssm/ssm.h) */
    char config_file[1024];
    char seal[2048]; /* root key provider spec (seal_provider.h): file, passphrase[:...], pkcs11:... */
};

/* Fills *cfg from defaults, file, environment and argv. Prints usage and exits for --help. */
coffer_err server_config_load(struct server_config *cfg, int argc, char **argv)
    __attribute__((warn_unused_result));
void server_config_usage(const char *prog);

#endif
