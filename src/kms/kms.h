/*
 * The KMS service (AWS KMS wire protocol, target prefix "TrentService"): symmetric keys,
 * aliases, tags and the cryptographic operations. The HTTP pipeline calls it through the
 * operation table returned by kms_service_api (see api/api.h); the service calls the barrier
 * (seal) for key material and the store for records.
 *
 *   listener -> sigv4 -> quota -> kms handler -> seal/store
 *
 * Thread-safety: every handler and kms_service_sweep may run concurrently from any number of
 * threads. Key records and unsealed key material are cached in memory (secret buffers, behind
 * a rwlock) and updated on every local write, so the cryptographic operations never touch the
 * store or the seal after a key's first use.
 */
#ifndef COFFER_KMS_KMS_H
#define COFFER_KMS_KMS_H

#include <jansson.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "api/api.h"
#include "api/module.h"
#include "iam/authz.h"
#include "seal/seal.h"
#include "store/store.h"

#define KMS_MAX_PLAINTEXT 4096
#define KMS_MAX_CIPHERTEXT 6144
#define KMS_MAX_RANDOM 1024
#define KMS_DELETION_MIN_DAYS 7
#define KMS_DELETION_MAX_DAYS 30
#define KMS_DELETION_DEFAULT_DAYS 30

struct kms_service;

/*
 * Creates the service over `st` and `sl` (both borrowed: they must outlive the service).
 * `region` is the default region (copied), used by kms_service_sweep's logs only: each call
 * carries its own region. *out is set only on success.
 */
coffer_err kms_service_new(store *st, seal *sl, const char *region, struct kms_service **out)
    __attribute__((warn_unused_result));

/*
 * Turns authorization on: every operation is then decided by `az` (borrowed; must outlive the
 * service) from the key policy, the caller's identity policies and the key's grants, and keys of
 * other accounts become usable by ARN where AWS allows it. NULL (the default) turns it off: any
 * authenticated caller may do anything in its own account. Call before serving requests.
 */
void kms_service_set_authorizer(struct kms_service *svc, authz *az);
/*
 * Binds the IAM users and roles named by key policies and grants stored before principals were
 * bound to unique ids (to the entities holding those names now; a name with no entity binds
 * nobody) and persists the bindings. Call at start, after kms_service_set_authorizer and before
 * serving; idempotent. Store errors are returned.
 */
coffer_err kms_service_bind_principals(struct kms_service *svc) __attribute__((warn_unused_result));

/*
 * Resource quotas, per account and region: how many of each thing one account may hold and how
 * large its documents may be. The defaults are AWS's default quotas; cofferd lets the operator
 * change each one (server/config.c). Going over a count is LimitExceededException. Counts are
 * per-account counters written in the same store transaction as the create or delete they
 * count, so checking one costs one record read.
 */
struct kms_limits {
    size_t kms_keys;             /* customer managed keys (AWS: 100,000) */
    size_t kms_aliases_per_key;  /* aliases pointing at one key (AWS: 50) */
    size_t kms_tags_per_key;     /* tags on one key (AWS: 50) */
    size_t kms_key_policy_bytes; /* key policy document (AWS: 32 KB) */
    size_t kms_grants_per_key;   /* grants on one key (AWS: 50,000) */
    /*
     * Not a quota: the length of one day of a rotation period, in ms (86,400,000). Tests shorten
     * it (cofferd --rotation-day-ms) so that a 90-day period passes in seconds; dates reported
     * (NextRotationDate) follow it.
     */
    int64_t kms_rotation_day_ms;
    /* Likewise the length of one day of a deletion waiting period (PendingWindowInDays), in ms:
     * tests shorten it (cofferd --deletion-day-ms) so that a 7-day wait passes in a second. */
    int64_t kms_deletion_day_ms;
    /* Request rates of the cryptographic operations on asymmetric keys, per account: buckets of
     * their own, apart from the symmetric one (AWS: RSA 500/s, ECC 300/s). */
    double rsa_rps; /* Encrypt, Decrypt, ReEncrypt, Sign, Verify with RSA keys */
    double ecc_rps; /* Sign, Verify with ECC keys */
};

#define KMS_LIMITS_DEFAULT                                                                                   \
    {                                                                                                        \
        .kms_keys = 100000, .kms_aliases_per_key = 50, .kms_tags_per_key = 50,                               \
        .kms_key_policy_bytes = 32768, .kms_grants_per_key = 50000, .kms_rotation_day_ms = 86400000LL,       \
        .kms_deletion_day_ms = 86400000LL, .rsa_rps = 500, .ecc_rps = 300,                                   \
    }

/* Resource quotas (copied; default KMS_LIMITS_DEFAULT). Call before serving requests. */
void kms_service_set_limits(struct kms_service *svc, const struct kms_limits *limits);

/*
 * A peer region: another Coffer deployment that holds replicas of this one's multi-Region keys
 * (ReplicateKey, UpdatePrimaryRegion). Outbound, this server calls the peer at `endpoint`,
 * trusting `ca_bundle`, signed with the replication credential read from `credentials_file`
 * (profile `profile`) when a call needs it, so the credential can change without a restart.
 * Inbound, a call of Coffer's replication operations claiming to come from `region` is accepted
 * only from the principal `principal` (the identity the peer's replication credential has here).
 */
#define KMS_MAX_PEERS 16
#define KMS_PEER_REGION_MAX 32
#define KMS_PEER_PATH_MAX 1024
struct kms_peer {
    char region[KMS_PEER_REGION_MAX + 1];
    char endpoint[512];                       /* "https://host:port" */
    char ca_bundle[KMS_PEER_PATH_MAX];        /* PEM; "": the system store */
    char credentials_file[KMS_PEER_PATH_MAX]; /* AWS shared credentials file */
    char profile[128];                        /* "": "default" */
    char principal[256];                      /* inbound: ARN of the peer's replication principal */
};

/*
 * A CloudHSM cluster id mapped to a PKCS#11 token: what a custom key store of type
 * AWS_CLOUDHSM (CreateCustomKeyStore's CloudHsmClusterId) stands for here. The token's user PIN
 * is the kmsuser's password: it is read from `pin_file` or the environment variable `pin_env`
 * each time the store connects, and the KeyStorePassword a store was given must match it.
 */
#define KMS_MAX_HSM_CLUSTERS 16
#define KMS_HSM_CLUSTER_ID_MIN 19 /* "cluster-" + 11..16 characters, as AWS's ids */
#define KMS_HSM_CLUSTER_ID_MAX 24
#define KMS_HSM_TOKEN_MAX 32       /* PKCS#11 token labels are 32 bytes */
#define KMS_HSM_SESSIONS_DEFAULT 4 /* parallel operations on one store */
struct kms_hsm_cluster {
    char cluster_id[KMS_HSM_CLUSTER_ID_MAX + 1];
    char module[KMS_PEER_PATH_MAX];    /* PKCS#11 module, loaded with dlopen */
    char token[KMS_HSM_TOKEN_MAX + 1]; /* token label; "": the token in `slot` */
    long slot;
    char pin_file[KMS_PEER_PATH_MAX]; /* one of pin_file and pin_env is set */
    char pin_env[128];
    unsigned sessions; /* PKCS#11 sessions a connected store opens (1..16) */
};
/*
 * Parses one mapping "CLUSTER_ID=module=PATH,token=LABEL|slot=N,pin-file=PATH|pin-env=NAME
 * [,sessions=N]" into *out (zeroed first). COFFER_ERR_CONFIG naming the fault.
 */
coffer_err kms_hsm_cluster_parse(const char *spec, struct kms_hsm_cluster *out)
    __attribute__((warn_unused_result));

/* What cofferd configures for KMS: the module's settings block (host->settings). */
struct kms_settings {
    struct kms_limits limits;
    size_t n_peers;
    struct kms_peer peers[KMS_MAX_PEERS];
    size_t n_hsm_clusters;
    struct kms_hsm_cluster hsm_clusters[KMS_MAX_HSM_CLUSTERS];
};

/* Peer regions (copied). Call before serving requests. */
void kms_service_set_peers(struct kms_service *svc, const struct kms_peer *peers, size_t n);
/*
 * The CloudHSM cluster mappings (copied), then reconnects every custom key store that was
 * connected when the server stopped (one that cannot connect is FAILED with its reason). Call
 * before serving requests.
 */
coffer_err kms_service_set_hsm_clusters(struct kms_service *svc, const struct kms_hsm_cluster *clusters,
                                        size_t n) __attribute__((warn_unused_result));

/*
 * Where the service records what it does on its own, outside any request: the sweeper's
 * DeleteKey at the end of a waiting period. fn(ctx, event) gets a CloudTrail-shaped event
 * (borrowed) before the deletion commits; when it fails the deletion is not committed and is
 * retried at the next sweep, so no key disappears without its event. Call before serving.
 */
typedef api_event_sink kms_event_sink;
void kms_service_set_event_sink(struct kms_service *svc, kms_event_sink fn, void *ctx);

/*
 * The daemon's audit trail (borrowed, outlives the service; NULL: none), where the events of
 * in-process calls (struct kms_api) are then written directly with the line writer
 * (audit/audit.h), without a JSON tree: they are on the hot path of every GetSecretValue and
 * GetParameter WithDecryption. Without it they go to the event sink as trees. Call before
 * serving.
 */
struct audit_trail;
void kms_service_set_trail(struct kms_service *svc, struct audit_trail *trail);

/*
 * The service's declaration: target prefix "TrentService", signing name "kms", ops sorted by
 * name, KMS's error names, its sensitive members and the deletion sweeper as a scheduled job.
 */
const struct api_service *kms_service_api(struct kms_service *svc);

/*
 * KMS as a module of the daemon (api/module.h): kms_service_new over the host's store, barrier
 * and region, its limits and peers from host->settings (a struct kms_settings; NULL: defaults), its own
 * events to host->record, and the host's authorizer (principals bound at start) when there is one.
 */
extern const struct api_module kms_module;

/*
 * Deletes every key whose deletion date is at or before `now_ms`: key record, key material,
 * aliases pointing to it (tags live in the key record). Called by the scheduler every few
 * seconds (the job kms_service_api declares); safe concurrently with requests.
 */
coffer_err kms_service_sweep(struct kms_service *svc, int64_t now_ms) __attribute__((warn_unused_result));
/*
 * Imported key material whose ValidTo is at or before `now_ms` is deleted and its key goes to
 * PendingImport (a job kms_service_api declares, run at every scheduler tick); safe
 * concurrently with requests.
 */
coffer_err kms_service_expire_imports(struct kms_service *svc, int64_t now_ms)
    __attribute__((warn_unused_result));

/*
 * Rotates every key whose automatic rotation is due at `now_ms` (a new backing material; the
 * next date one period later) and drops index entries of keys that no longer rotate (rotation
 * off, key disabled, pending deletion or deleted: EnableKey puts a rotating key back). Each
 * rotation is on record (a RotateKey event) before it commits. Called by the scheduler at every
 * tick (the second job kms_service_api declares); safe concurrently with requests.
 */
coffer_err kms_service_rotate_due(struct kms_service *svc, int64_t now_ms)
    __attribute__((warn_unused_result));

/*
 * KMS for the other services of the daemon, in process (api_host.lookup("kms")). A service
 * encrypting for a caller (Parameter Store: SecureString values) calls these with the api_call
 * of the caller's own request, so KMS decides with the caller's identity, exactly as for an
 * Encrypt or Decrypt the caller sent itself, with kms:ViaService = `via_service`
 * ("ssm.<region>.amazonaws.com") in the request context: the AWS managed key of that service
 * (alias/aws/ssm, created on first use) allows only such calls. Each call is a KMS event of its
 * own in the audit trail, as CloudTrail records a service's calls for a user: the caller's
 * identity, invokedBy the service ("ssm.amazonaws.com"), the request's id; when the trail
 * cannot take the event the call fails (COFFER_ERR_AUDIT).
 *
 *   encrypt: `key_id` (id, ARN, alias name or alias ARN) encrypts `plaintext` under the
 *            encryption context `ec` (a JSON object of strings, may be NULL); *ciphertext_b64
 *            is a new string (free()) holding the base64 CiphertextBlob, key_arn (size n) the
 *            key's ARN.
 *   decrypt: the base64 CiphertextBlob under `ec` into `plaintext` (initialised here, a secret
 *            buffer the caller frees); key_arn (size n) the ARN of the key that decrypted.
 *
 * KMS's errors are returned as they are (NotFoundException, DisabledException,
 * AccessDeniedException, ...); the calling service names them in its own terms.
 */
struct kms_api {
    struct kms_service *svc;
    coffer_err (*encrypt)(struct kms_service *svc, const struct api_call *call, const char *via_service,
                          const char *key_id, const json_t *ec, coffer_cursor plaintext,
                          char **ciphertext_b64, char *key_arn, size_t n);
    coffer_err (*decrypt)(struct kms_service *svc, const struct api_call *call, const char *via_service,
                          const char *ciphertext_b64, const json_t *ec, coffer_buf *plaintext, char *key_arn,
                          size_t n);
    /*
     * generate_data_key: a new data key of `n_bytes` under `key_id` and `ec`: `plaintext`
     * (initialised here, a secret buffer the caller frees) and *ciphertext_b64 (free()), the
     * base64 CiphertextBlob that decrypt takes back; key_arn (size n) the key's ARN.
     */
    coffer_err (*generate_data_key)(struct kms_service *svc, const struct api_call *call,
                                    const char *via_service, const char *key_id, const json_t *ec,
                                    size_t n_bytes, coffer_buf *plaintext, char **ciphertext_b64,
                                    char *key_arn, size_t n);
    /*
     * Replication between peer regions for the services that replicate their own records
     * (Secrets Manager): the peers, replication credentials, principal check and replication
     * key pair of multi-Region keys, so every replicated byte travels the same way.
     *
     *   peer_known: is `region` a configured peer (--peer)?
     *   peer_call: calls `target` ("secretsmanager.CofferSyncSecret") of the peer of `region`,
     *            signed for `signing_name` with the replication credential, with `body`
     *            (borrowed); *out is the answer object (new). A peer that is not configured,
     *            cannot be reached or refuses: ServiceUnavailableException, the message saying
     *            which (the peer's error type and message included).
     *   peer_seal: seals `plaintext` to the replication public key of the peer of `region`
     *            (asked of it now, CofferGetReplicationKey) with crypto_box, bound to `aad`;
     *            *box is initialised here. Only that peer's barrier can open it.
     *   replication_open: opens a box a peer sealed to this server's replication key under
     *            `aad` into `plain` (initialised here, a secret buffer); ValidationException
     *            for any other box.
     *   peer_caller_check: AccessDeniedException (naming the action `service`:<operation>)
     *            unless call's caller is the configured principal of peer `source_region`.
     */
    bool (*peer_known)(struct kms_service *svc, const char *region);
    coffer_err (*peer_call)(struct kms_service *svc, const char *region, const char *signing_name,
                            const char *target, const json_t *body, json_t **out);
    coffer_err (*peer_seal)(struct kms_service *svc, const char *region, coffer_cursor aad,
                            coffer_cursor plaintext, coffer_buf *box);
    coffer_err (*replication_open)(struct kms_service *svc, coffer_cursor aad, coffer_cursor box,
                                   coffer_buf *plain);
    coffer_err (*peer_caller_check)(struct kms_service *svc, const struct api_call *call,
                                    const char *source_region, const char *service);
};

/* Wipes cached key material and frees everything; accepts NULL. No call may be in flight. */
void kms_service_free(struct kms_service *svc);

#endif
