/*
 * Shared inside src/kms only: the operation ids and handlers (generated from kms_ops.def), the
 * decoded request, the key cache, key-id resolution and the record helpers used by the
 * operation files (kms_ops_*.c).
 *
 * Locking (two locks, always taken in this order, never the other way):
 *  - `wmu` (mutex) serialises every change of the cache and of the KMS records in the store:
 *    writers hold it across store transaction + cache update, and a cache miss loads under
 *    it, so a record loaded from the store can never overwrite a newer one in the cache.
 *  - `lock` (rwlock, writer-preferring) guards the maps and the entries' mutable fields.
 *    Readers (crypto ops, DescribeKey) hold it shared while they use a key; writers take it
 *    exclusively only for the pointer swap. Readers never take `wmu` while holding `lock`.
 */
#ifndef COFFER_KMS_KMS_INTERNAL_H
#define COFFER_KMS_KMS_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/map.h"
#include "api/api.h"
#include "api/api_input.h"
#include "iam/authz.h"
#include "iam/policy.h"
#include "kms/kms.h"
#include "kms/kms_blob.h"
#include "kms/kms_material.h"

#define KMS_KEY_ID_MAX 40 /* uuid (36) or "mrk-" + 32 hex */
#define KMS_ARN_MAX 256
#define KMS_REGION_MAX 32
#define KMS_ALIAS_MAX 256
#define KMS_MATERIAL_HEX_LEN (2 * KMS_MATERIAL_ID_LEN)
#define KMS_RECORD_VERSION 1
/*
 * Total size of one encryption context (UTF-8 bytes of every key and value). AWS documents no
 * figure; this bound keeps what a request can make the policy evaluator, the ciphertext AAD and
 * the audit record carry small, and no AWS SDK default context comes near it.
 */
#define KMS_MAX_ENCRYPTION_CONTEXT_BYTES 8192

/* ---- enums of the API model (index = position in the matching string table) ---- */
extern const char *const kms_key_specs[];            /* KeySpec */
extern const char *const kms_cmk_specs[];            /* CustomerMasterKeySpec */
extern const char *const kms_key_usages[];           /* KeyUsage */
extern const char *const kms_origins[];              /* Origin */
extern const char *const kms_enc_algorithms[];       /* EncryptionAlgorithmSpec */
extern const char *const kms_data_key_specs[];       /* DataKeySpec */
extern const char *const kms_dry_run_modifiers[];    /* DryRunModifierType */
extern const char *const kms_grant_operations[];     /* GrantOperation */
extern const char *const kms_include_key_material[]; /* IncludeKeyMaterial */
extern const char *const kms_mac_algorithms[];       /* MacAlgorithmSpec (HMAC_SHA_224 .. 512) */
extern const char *const kms_wrapping_algorithms[];  /* AlgorithmSpec (GetParametersForImport) */
extern const char *const kms_wrapping_key_specs[];   /* WrappingKeySpec */
extern const char *const kms_expiration_models[];    /* ExpirationModelType */
extern const char *const kms_import_types[];         /* ImportType */
extern const char *const kms_sign_algorithms[];      /* SigningAlgorithmSpec */
extern const char *const kms_message_types[];        /* MessageType */
extern const char *const kms_key_pair_specs[];       /* DataKeyPairSpec */

enum kms_state {
    KMS_STATE_ENABLED,
    KMS_STATE_DISABLED,
    KMS_STATE_PENDING_DELETION,
    KMS_STATE_PENDING_IMPORT,
    KMS_STATE_UNAVAILABLE,
    KMS_STATE_CREATING,
    KMS_STATE_UPDATING,
    /* A multi-Region primary scheduled for deletion while replicas remain: its waiting period
     * starts when the last replica is gone. */
    KMS_STATE_PENDING_REPLICA_DELETION,
};
const char *kms_state_name(enum kms_state s);
/* PendingDeletion or PendingReplicaDeletion: the "PD" column of kms.md §6. */
bool kms_state_pending_deletion(enum kms_state s);
bool kms_state_parse(const char *s, enum kms_state *out);

/* ---- decoded request: every member any implemented op reads (kms_input.c) ---- */
struct kms_req {
    const char *key_id, *description, *policy, *alias_name, *target_key_id, *marker;
    const char *source_key_id, *destination_key_id, *custom_key_store_id, *xks_key_id, *policy_name;
    const char *grantee_principal, *retiring_principal, *grant_name, *grant_id, *grant_token;
    const json_t *operations, *constraints; /* CreateGrant: list of GrantOperation, {EncryptionContext*} */
    int key_spec, cmk_spec, key_usage, origin, enc_alg, src_enc_alg, dst_enc_alg, data_key_spec;
    int include_key_material; /* ListKeyRotations: index in kms_include_key_material, -1 when absent */
    int sign_alg, message_type, key_pair_spec; /* Sign, Verify; GenerateDataKeyPair */
    const json_t *ec, *src_ec, *dst_ec, *tags, *tag_keys, *grant_tokens, *dry_run_modifiers;
    bool has_recipient;
    coffer_buf plaintext; /* secret: Plaintext, or the Message of GenerateMac/VerifyMac */
    coffer_buf
        ciphertext; /* CiphertextBlob, or VerifyMac's Mac, or ImportKeyMaterial's EncryptedKeyMaterial */
    bool has_plaintext, has_ciphertext;
    coffer_buf import_token;                                                 /* ImportKeyMaterial */
    int mac_alg, wrapping_alg, wrapping_spec, expiration_model, import_type; /* -1: absent */
    const char *key_material_id, *key_material_description;
    int64_t valid_to_ms; /* ImportKeyMaterial ValidTo */
    bool has_valid_to;
    int64_t limit, number_of_bytes, pending_days, rotation_days;
    bool has_limit, has_number_of_bytes, has_pending_days, has_rotation_days;
    coffer_buf message;   /* Sign, Verify: Message (secret) */
    coffer_buf signature; /* Verify */
    bool has_message, has_signature;
    bool dry_run, bypass_lockout, multi_region;
    /* custom key stores, multi-Region keys, key agreement */
    const char *custom_key_store_name, *new_custom_key_store_name, *cloud_hsm_cluster_id, *replica_region,
        *primary_region;
    int custom_key_store_type, key_agreement_alg;
    /* the kmsuser password (borrowed from the input, which the pipeline wipes; never logged) */
    const char *key_store_password, *trust_anchor_certificate;
    /* Coffer's replication operations: the calling peer's region, the key record it sends
     * (JSON text), whether to create the replica; the wrapped material is in `ciphertext` */
    const char *source_region, *key_record;
    const char *peer_account; /* the account the peer acts in (AccountId); NULL: its own */
    bool create_replica;
    coffer_buf public_key; /* DeriveSharedSecret: the peer's SubjectPublicKeyInfo */
    bool has_public_key;
};

/* ---- the operations (rows of kms_ops.def) ---- */
/* KMS_OP_<Name>: the position of an operation in the table, sorted by name. */
enum kms_op_id {
#define KMS_OP(name, decoder, flags, quota_rps) KMS_OP_##name,
#include "kms/kms_ops.def"
#undef KMS_OP
    KMS_OP_COUNT
};

/* The handler of each operation (kms_ops_*.c). */
#define KMS_OP(name, decoder, flags, quota_rps) coffer_err kms_op_##name(void *state, struct api_call *call);
#include "kms/kms_ops.def"
#undef KMS_OP

/* "Encrypt" for KMS_OP_Encrypt (kms_service.c). */
const char *kms_op_name(enum kms_op_id op);

/* Decodes the input of `op` into r (initialised here) with op's decoder; frees r's buffers on failure. */
coffer_err kms_req_decode(enum kms_op_id op, const json_t *input, struct kms_req *r)
    __attribute__((warn_unused_result));
void kms_req_clean(struct kms_req *r); /* wipes and frees plaintext/ciphertext/message/signature */
/* True when `s` is a well-formed key id (lowercase uuid or "mrk-" + 32 lowercase hex). */
bool kms_key_id_valid(const char *s);

/* ---- custom key stores (kms_cks.c; the operations in kms_ops_stores.c) ----
 * Store layout:
 *   kms/cks/<acct>/<region>/<cks id>                    the store's record (JSON; only a salted
 *                                                       MAC of its password)
 *   kms/cks-key/<acct>/<region>/<cks id>/<key id>       the keys in a store, for DeleteCustomKeyStore
 */
#define KMS_CKS_PREFIX "kms/cks/"
#define KMS_CKS_KEY_PREFIX "kms/cks-key/"
#define KMS_CKS_ID_LEN 21          /* "cks-" + 17 hex digits, as AWS's ids */
#define KMS_CKS_PER_ACCOUNT_MAX 10 /* AWS's quota of custom key stores per account and Region */
#define KMS_CKS_ERROR_CODE_MAX 48
struct kms_service;
struct kms_cks_registry; /* every known store: its cluster, its connection (opaque) */
enum kms_cks_state { KMS_CKS_DISCONNECTED, KMS_CKS_CONNECTING, KMS_CKS_CONNECTED, KMS_CKS_FAILED };
const char *kms_cks_state_name(enum kms_cks_state s);

coffer_err kms_cks_registry_new(struct kms_cks_registry **out) __attribute__((warn_unused_result));
void kms_cks_registry_free(struct kms_cks_registry *reg); /* disconnects every store */
void kms_cks_set_clusters(struct kms_cks_registry *reg, const struct kms_hsm_cluster *clusters, size_t n);
/* The mapping of `cluster_id`; NULL when the configuration names no such cluster. */
const struct kms_hsm_cluster *kms_cks_cluster(const struct kms_cks_registry *reg, const char *cluster_id);
/* Loads every store record of `st`, then reconnects those recorded CONNECTED. */
coffer_err kms_cks_start(struct kms_cks_registry *reg, store *st) __attribute__((warn_unused_result));
void kms_cks_store_key(char *out, size_t n, const char *acct, const char *region, const char *id);
void kms_cks_key_index(char *out, size_t n, const char *acct, const char *region, const char *cks_id,
                       const char *key_id);
/* The record of the caller's store `id` (*out new); CustomKeyStoreNotFoundException when none
 * (kms_ops_stores.c). */
coffer_err kms_cks_record_get(struct kms_service *svc, const char *acct, const char *region, const char *id,
                              json_t **out) __attribute__((warn_unused_result));
/* Sets rec's PasswordSalt and PasswordHash (a fresh salt, HMAC-SHA-256 of the password). */
coffer_err kms_cks_password_set(json_t *rec, const char *password) __attribute__((warn_unused_result));

/* Store `id` with record `rec` (new or changed): the registry learns it / its cluster id. */
coffer_err kms_cks_note(struct kms_cks_registry *reg, const char *id, const json_t *rec)
    __attribute__((warn_unused_result));
void kms_cks_forget(struct kms_cks_registry *reg, const char *id); /* a deleted store */
/* Its state now (the record's when this process has not seen it); error_code "" unless FAILED. */
enum kms_cks_state kms_cks_state_of(struct kms_cks_registry *reg, const char *id, const json_t *rec,
                                    char *error_code, size_t n);
/* Its current cluster id; false when the store is unknown. */
bool kms_cks_cluster_of(struct kms_cks_registry *reg, const char *id, char *out, size_t n);
/*
 * With wmu held: connects store `id`: reads the PIN of its cluster, checks it is the store's
 * password, opens the token and logs in. On failure the store is FAILED, error_code gets AWS's
 * ConnectionErrorCode (INVALID_CREDENTIALS, CLUSTER_NOT_FOUND, ...) and the cause is logged.
 */
coffer_err kms_cks_connect(struct kms_cks_registry *reg, const char *id, const json_t *rec, char *error_code,
                           size_t n) __attribute__((warn_unused_result));
/* With wmu held: closes the store's token (after every operation on it ends); DISCONNECTED. */
void kms_cks_disconnect(struct kms_cks_registry *reg, const char *id, const json_t *rec);
/* Generates / destroys the AES-256 token key labelled key_id. KMSInvalidStateException when the
 * store is not connected. */
coffer_err kms_cks_key_generate(struct kms_cks_registry *reg, const char *cks_id, const char *key_id)
    __attribute__((warn_unused_result));
coffer_err kms_cks_key_destroy(struct kms_cks_registry *reg, const char *cks_id, const char *key_id)
    __attribute__((warn_unused_result));
/* CKA_EXTRACTABLE and CKA_SENSITIVE of the token key of key_id. */
coffer_err kms_cks_key_protection(struct kms_cks_registry *reg, const char *cks_id, const char *key_id,
                                  bool *extractable, bool *sensitive) __attribute__((warn_unused_result));
/* GenerateRandom in a store: `n` bytes from its token's generator into `out`.
 * CustomKeyStoreInvalidStateException unless the store is connected. */
coffer_err kms_cks_random(struct kms_cks_registry *reg, const char *cks_id, uint8_t *out, size_t n)
    __attribute__((warn_unused_result));
struct kms_key;
/* KMSInvalidStateException unless k's store is connected. */
coffer_err kms_cks_usable(const struct kms_key *k) __attribute__((warn_unused_result));
/* The ciphertext blob of kms_blob.h, with the AES-GCM done by k's token key. */
coffer_err kms_cks_encrypt(const struct kms_key *k, const json_t *ec, coffer_cursor pt, coffer_buf *out)
    __attribute__((warn_unused_result));
coffer_err kms_cks_decrypt(const struct kms_key *k, const struct kms_blob *b, const json_t *ec,
                           coffer_buf *out) __attribute__((warn_unused_result));

/* ---- cached key ---- */

struct kms_key {
    char key_id[KMS_KEY_ID_MAX + 1];
    char account[API_ACCOUNT_ID_LEN + 1];
    char region[KMS_REGION_MAX + 1];
    char arn[KMS_ARN_MAX];
    enum kms_state state;      /* mirrors rec.KeyState */
    enum kms_spec spec;        /* mirrors rec.KeySpec */
    json_t *rec;               /* the stored record (owned; replaced whole on update) */
    struct kms_material *mats; /* every backing material (rotation keeps old ones) */
    size_t n_mats;
    size_t current; /* index of the material new ciphertexts use */
    policy *kpol;   /* rec.Policy compiled once; replaced together with rec */
    json_t *grants; /* array of grant records (owned; replaced whole, never NULL once cached) */
    /* A key in a custom key store (Origin AWS_CLOUDHSM): its store, whose token holds the key;
     * its materials then carry ids only. cks is NULL for every other key. */
    char cks_id[KMS_CKS_ID_LEN + 1];
    struct kms_cks_registry *cks;
};

/* Fills svc->inproc, the in-process interface (kms_inproc.c). */
struct kms_service;
void kms_inproc_init(struct kms_service *svc);

/* A buffer for one store key of KMS's records (every KMS key is far below STORE_KEY_MAX). */
#define STORE_KEY_BUF 512

struct kms_service {
    struct kms_api inproc; /* what other services call (kms_inproc.c) */
    store *st;
    seal *sl;
    char region[KMS_REGION_MAX + 1];
    pthread_mutex_t wmu;
    pthread_rwlock_t lock;
    coffer_map keys;    /* "<acct>/<region>/<id>" -> struct kms_key * (owned) */
    coffer_map aliases; /* "<acct>/<region>/<alias name>" -> char * target key id (owned) */
    authz *az;          /* borrowed; NULL: authorization off */
    struct kms_limits limits;
    struct kms_peer peers[KMS_MAX_PEERS]; /* multi-Region peer regions (kms_replica.c) */
    struct kms_cks_registry *cks;         /* custom key stores (kms_cks.c) */
    size_t n_peers;
    kms_event_sink event_sink; /* kms_service_set_event_sink; NULL: nothing recorded */
    void *event_ctx;
    struct audit_trail *trail; /* kms_service_set_trail; NULL: in-process events go to event_sink */
    struct api_service api;
    struct api_job jobs[4]; /* the deletion sweeper, the rotation job, the imported material expiry,
                               the key usage flush */
    /* Last use of each key not yet written (kms_usage.c): "<acct>/<region>/<id>" -> usage. */
    pthread_mutex_t usage_mu;
    coffer_map usage;
    bool usage_ready;
    int64_t usage_since_ms; /* when this deployment began tracking key usage */
};

/* ---- key last usage (kms_usage.c) ---- */
#define KMS_USAGE_PREFIX "kms/usage/"
/* Reads or creates the tracking start date; then notes are taken. */
coffer_err kms_usage_init(struct kms_service *svc) __attribute__((warn_unused_result));
void kms_usage_free(struct kms_service *svc); /* flushes what is pending */
/* A successful cryptographic `operation` (static, "Encrypt") with a key, made by `call`. Never fails. */
void kms_usage_note(struct kms_service *svc, const struct api_call *call, const char *acct,
                    const char *region, const char *id, const char *operation);
/* The same for the key of a key ARN. */
void kms_usage_note_arn(struct kms_service *svc, const struct api_call *call, const char *arn,
                        const char *operation);
#define KMS_USAGE_NOTE(svc, call, k, operation)                                                              \
    kms_usage_note((svc), (call), (k)->account, (k)->region, (k)->key_id, (operation))
coffer_err kms_usage_flush(struct kms_service *svc) __attribute__((warn_unused_result));
coffer_err kms_usage_job(void *ctx, int64_t now_ms);
/* The KeyLastUsage record of k ({Operation, Timestamp ms, CloudTrailEventId, KmsRequestId}); *out
 * NULL when the key has not been used since tracking began. */
coffer_err kms_usage_get(struct kms_service *svc, const struct kms_key *k, json_t **out)
    __attribute__((warn_unused_result));
/* Removes k's usage record in `t` (the deletion sweeper). */
coffer_err kms_usage_delete_in(store_txn *t, const char *acct, const char *region, const char *id)
    __attribute__((warn_unused_result));

/* ---- key references (kms_key.c) ---- */
enum kms_ref_flags {
    KMS_REF_ALIAS = 1 << 0, /* alias name and alias ARN accepted */
    KMS_REF_CROSS = 1 << 1, /* a key (or alias) ARN of another account is accepted (kms.md §3) */
};

/*
 * Resolves a KeyId input for reading: on success the key is in the cache, `lock` is held
 * shared and *out points at it until kms_release. Errors: NotFoundException with AWS text,
 * AccessDeniedException for another account's key.
 */
coffer_err kms_acquire(struct kms_service *svc, const struct api_call *call, const char *key_ref,
                       unsigned flags, struct kms_key **out) __attribute__((warn_unused_result));
void kms_release(struct kms_service *svc);

/* State rules of kms.md §6. */
enum kms_state_rule {
    KMS_RULE_CRYPTO,         /* Enabled only */
    KMS_RULE_ENABLE_DISABLE, /* not PendingDeletion / PendingImport / Creating / Updating */
    KMS_RULE_NOT_PENDING,    /* not PendingDeletion (tags, description, aliases, schedule) */
    KMS_RULE_CANCEL,         /* PendingDeletion only */
    KMS_RULE_ANY,            /* every state (PutKeyPolicy, grants management) */
};
/*
 * Resolves for writing: on success `wmu` is held (not `lock`), the key is cached and *out is
 * stable until kms_write_release. Update it only with kms_key_update.
 */
coffer_err kms_acquire_write(struct kms_service *svc, const struct api_call *call, const char *key_ref,
                             unsigned flags, struct kms_key **out) __attribute__((warn_unused_result));
void kms_write_begin(struct kms_service *svc); /* takes wmu without a key (CreateKey, aliases) */
/* With wmu held: the cached key (loaded when needed). COFFER_ERR_NOT_FOUND (no message) if unknown. */
coffer_err kms_key_get_locked(struct kms_service *svc, const char *acct, const char *region, const char *id,
                              struct kms_key **out) __attribute__((warn_unused_result));
/*
 * The opening of every handler that changes one key: records `audit_members` as the request
 * parameters, decodes `op`'s input into *r, takes the key named by r->key_id for writing
 * (key id or ARN only), adds it to the audit resources and checks `rule`. On success wmu is held
 * (release with kms_write_release); on any failure nothing is held.
 */
coffer_err kms_begin_key_write(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                               const char *const *audit_members, enum kms_state_rule rule, struct kms_req *r,
                               struct kms_key **k) __attribute__((warn_unused_result));
void kms_write_release(struct kms_service *svc);

/* Writes `rec` as compact JSON with sorted keys (the KMS record form) under skey in t. */
coffer_err kms_txn_put_json(store_txn *t, const char *skey, const json_t *rec)
    __attribute__((warn_unused_result));

/* Extra work inside the same store transaction as a record update. */
typedef coffer_err (*kms_txn_fn)(store_txn *t, void *ctx);

/*
 * With wmu held: writes `rec` (takes ownership) as k's record, plus `extra` in the same
 * transaction, commits (durable), then swaps it into the cache.
 */
coffer_err kms_key_update(struct kms_service *svc, struct kms_key *k, json_t *rec, kms_txn_fn extra,
                          void *ctx) __attribute__((warn_unused_result));

/*
 * With wmu held: creates a new key from `rec` (takes ownership) with fresh material of
 * rec.KeySpec, plus `extra` (may be NULL) in the same transaction. `call` is the request that
 * creates it (its audit event names the key), NULL when the service creates a key on its own
 * (`extra` then records the event).
 */
coffer_err kms_key_create(struct kms_service *svc, struct api_call *call, json_t *rec, kms_txn_fn extra,
                          void *ctx, struct kms_key **out) __attribute__((warn_unused_result));

/*
 * With wmu held: rotates k. Adds a fresh backing material to `rec` (takes ownership; a copy of
 * k's record with whatever else the rotation changes), marks it CURRENT (the others NON_CURRENT,
 * RotationType `rotation_type`, created at now_ms), then writes the sealed material, the record
 * and `extra` in one store transaction and swaps them into the cache: a crash leaves the key as
 * it was or wholly rotated. Ciphertexts of every older material still decrypt.
 */
coffer_err kms_key_rotate(struct kms_service *svc, struct kms_key *k, json_t *rec, const char *rotation_type,
                          int64_t now_ms, kms_txn_fn extra, void *ctx) __attribute__((warn_unused_result));

/*
 * With wmu held: as kms_key_update, and k's backing material becomes `m` alone (NULL: none):
 * m is sealed under its store key in the same transaction, every other material k had is
 * deleted from the store, and the cache swaps record and material together. On success m's
 * key bytes belong to the cache (m is zeroed); on failure m still owns them.
 */
coffer_err kms_key_replace_material(struct kms_service *svc, struct kms_key *k, json_t *rec,
                                    struct kms_material *m, kms_txn_fn extra, void *ctx)
    __attribute__((warn_unused_result));

/*
 * With wmu held: creates a key from `rec` (takes ownership) whose material is given rather than
 * generated (a multi-Region replica): `mats` (n_mats, malloc'd array) becomes the key's on
 * success and stays the caller's on failure; rec.CurrentKeyMaterialId must name one of them.
 * AlreadyExistsException when the key id exists in rec's account and region.
 */
coffer_err kms_key_install(struct kms_service *svc, json_t *rec, struct kms_material *mats, size_t n_mats,
                           struct kms_key **out) __attribute__((warn_unused_result));
/*
 * With wmu held: replaces k's record with `rec` (takes ownership) and its materials with `mats`
 * (a superset of k's: stores those k lacks, sealed) in one transaction, then swaps both into
 * the cache. `mats` (malloc'd) becomes k's on success and stays the caller's on failure.
 */
coffer_err kms_key_sync_materials(struct kms_service *svc, struct kms_key *k, json_t *rec,
                                  struct kms_material *mats, size_t n_mats)
    __attribute__((warn_unused_result));

coffer_err kms_check_state(const struct kms_key *k, enum kms_state_rule rule)
    __attribute__((warn_unused_result));

/* ---- asymmetric keys and algorithms by key spec (kms_ops_asym.c) ---- */
/*
 * May a grant on k carry GrantOperation `op`? The operations of k's type and usage (as AWS
 * lists them per key type) that this server performs, plus CreateGrant, RetireGrant, DescribeKey.
 */
bool kms_grant_op_fits(const struct kms_key *k, const char *op);
/* rec.KeyUsage of a cached key. */
const char *kms_key_usage(const struct kms_key *k);
/* InvalidKeyUsageException "<arn> key usage is <usage> which is not valid for <op>." unless k's usage is
 * `usage`. */
coffer_err kms_check_usage(const struct kms_key *k, const char *usage, const char *op)
    __attribute__((warn_unused_result));
/*
 * Sets the algorithm list KeyMetadata and GetPublicKey show for a key of `spec` and `usage`
 * (EncryptionAlgorithms, SigningAlgorithms or MacAlgorithms) in obj; nothing for a pair no
 * operation serves.
 */
coffer_err kms_set_algorithms(json_t *obj, enum kms_spec spec, const char *usage)
    __attribute__((warn_unused_result));
/*
 * The EncryptionAlgorithm `alg` (index of kms_enc_algorithms, negative when absent) checked
 * against k's spec: InvalidKeyUsageException "Algorithm <alg> is incompatible with key spec
 * <spec>." RSA keys need RSAES_OAEP_SHA_1/256, symmetric keys SYMMETRIC_DEFAULT (the default).
 */
coffer_err kms_check_enc_algorithm(const struct kms_key *k, int alg) __attribute__((warn_unused_result));
/* RSA keys (shared lock held): RSAES-OAEP with `alg`'s hash; AWS's size limit as ValidationException. */
coffer_err kms_rsa_encrypt(const struct kms_key *k, int alg, coffer_cursor pt, coffer_buf *out)
    __attribute__((warn_unused_result));
coffer_err kms_rsa_decrypt(const struct kms_key *k, int alg, coffer_cursor ct, coffer_buf *out)
    __attribute__((warn_unused_result));
/*
 * Charges the request against the cryptographic quota bucket of key spec `spec`: RSA, ECC or
 * the symmetric one. ThrottlingException when it is empty. For the operations whose bucket
 * depends on the key (API_OP_KEY_QUOTA rows of kms_ops.def); a request counts once, against the
 * first key it uses (ReEncrypt: the source).
 */
coffer_err kms_charge_quota(const struct kms_service *svc, struct api_call *call, enum kms_spec spec)
    __attribute__((warn_unused_result));

/* ---- shared by the encrypting operations (kms_ops_crypto.c) ---- */
/*
 * Acquires key_ref's key for the encrypting side of an operation: records it in the audit event,
 * authorizes `action` (with encryption context ec), checks the key state, its usage and `alg`
 * (negative when the request names none); `data_key`: symmetric keys only (data keys and key
 * pairs). Answers DryRun. On success *out is held (shared lock) and the caller must
 * kms_release; on failure nothing is held.
 */
coffer_err kms_acquire_to_encrypt(struct kms_service *svc, struct api_call *call, const struct kms_req *r,
                                  const char *action, const char *key_ref, const json_t *ec, int alg,
                                  bool data_key, bool dry, struct kms_key **out)
    __attribute__((warn_unused_result));
/* Encrypts pt under k (shared lock held) with `alg`: a symmetric blob bound to ec, or RSA-OAEP. */
coffer_err kms_encrypt_with(const struct kms_key *k, const json_t *ec, int alg, coffer_cursor pt,
                            coffer_buf *out) __attribute__((warn_unused_result));

/* KeyMetadata object of §4 for k (new reference). */
json_t *kms_key_metadata(const struct kms_key *k);

/* Store key helpers (fixed formats; see kms_key.c). */
void kms_key_store_key(char *out, size_t n, const char *acct, const char *region, const char *id);
void kms_alias_store_key(char *out, size_t n, const char *acct, const char *region, const char *alias);
void kms_key_arn(char *out, size_t n, const char *region, const char *acct, const char *id);
void kms_alias_arn(char *out, size_t n, const char *region, const char *acct, const char *alias);

/* Alias cache maintenance (wmu held). target NULL removes. */
coffer_err kms_alias_cache_set(struct kms_service *svc, const char *acct, const char *region,
                               const char *alias, const char *target) __attribute__((warn_unused_result));
/* Target key id of an alias, from cache or store (takes wmu on a miss; do not hold locks). */
coffer_err kms_alias_lookup(struct kms_service *svc, const char *acct, const char *region, const char *alias,
                            char target[KMS_KEY_ID_MAX + 1]) __attribute__((warn_unused_result));

/*
 * The store's change feed (store_watch) calls this for each KMS record another node changed
 * ("kms/key/", "kms/alias/", "kms/grant/", "kms/material/"), and with key NULL when anything
 * may have changed: the cached key (record, material, policy, grants) or alias is dropped and
 * the next use reads the store. Takes wmu; ctx is the service.
 */
#define KMS_CACHED_PREFIXES                                                                                  \
    {                                                                                                        \
        "kms/key/", "kms/alias/", "kms/grant/", "kms/material/"                                              \
    }
void kms_cache_changed(void *ctx, const char *key);

/* The key policy AWS attaches when CreateKey or ReplicateKey has none (kms.md §5); malloc'd. */
char *kms_default_policy(const char *account);

/* ---- multi-Region keys (kms_replica.c, kms_ops_region.c) ----
 * A multi-Region key's record holds MultiRegion true and MultiRegionConfiguration
 * {MultiRegionKeyType PRIMARY|REPLICA, PrimaryRegion, ReplicaRegions [..]}: every related key
 * has the same key id, account and material, so the regions say everything. */
/* A fresh "mrk-" + 32 lowercase hex key id. */
coffer_err kms_mrk_id_new(char id[KMS_KEY_ID_MAX + 1]) __attribute__((warn_unused_result));
/* Marks a new record as the primary of a multi-Region key in `region`, with no replica yet. */
coffer_err kms_mrk_record_init(json_t *rec, const char *region) __attribute__((warn_unused_result));
/*
 * Rewrites the key ARN `arn` (a buffer of n bytes) of a multi-Region key ("key/mrk-...") of
 * another region into the same key's ARN in `region`; any other ARN is left as it is. The
 * blob's own header (which still names the original region) stays the AAD, so this only
 * chooses which local key opens it. INVALID_CIPHERTEXT when the result does not fit.
 */
coffer_err kms_mrk_local_arn(const char *region, char *arn, size_t n) __attribute__((warn_unused_result));
/* Is k a multi-Region key; the primary? (lock or wmu held) */
bool kms_mrk_is(const struct kms_key *k);
bool kms_mrk_is_primary(const struct kms_key *k);
/*
 * The rotation hook: sends k's current multi-Region configuration and every material it holds
 * (sealed to each peer) to each replica region of the primary key acct/key_id, which adds the
 * materials it lacks and makes the same one current. Call without wmu held, after the
 * rotation committed. A replica that cannot be reached is reported (the first failure is
 * returned) while the others are still updated; calling again is harmless.
 */
coffer_err kms_replica_push(struct kms_service *svc, const char *acct, const char *key_id)
    __attribute__((warn_unused_result));
/* Is `region` the primary's or a replica's region of k? */
bool kms_mrk_has_region(const struct kms_key *k, const char *region);
/* A MultiRegionConfiguration record object as `region` holds it (new reference; NULL: no memory). */
json_t *kms_mrk_config_for(const char *region, const char *primary, const json_t *replicas);
/* The configured peer of `region`; NULL when there is none. */
const struct kms_peer *kms_peer_find(const struct kms_service *svc, const char *region);
/* What a send to a peer needs of a key, taken under the lock so no lock spans the network. */
struct kms_mrk_snapshot;
coffer_err kms_mrk_snapshot_take(const struct kms_key *k, struct kms_mrk_snapshot **out)
    __attribute__((warn_unused_result));
void kms_mrk_snapshot_free(struct kms_mrk_snapshot *s); /* wipes the materials; accepts NULL */
/*
 * Sends snapshot s to peer p: as a new replica (`create`) or as an update of the peer's copy,
 * with the configuration primary/replicas; `extra` (Description, Tags, Policy of a new replica;
 * may be NULL) is borrowed. *answer (when not NULL) gets the peer's answer. The peer's errors
 * that describe the request (AlreadyExists, MalformedPolicyDocument, Tag, ...) come back as
 * they are; an unreachable or refusing peer is ServiceUnavailableException.
 */
coffer_err kms_mrk_send(const struct kms_service *svc, const struct kms_peer *p,
                        const struct kms_mrk_snapshot *s, bool create, const char *primary,
                        const json_t *replicas, const json_t *extra, json_t **answer)
    __attribute__((warn_unused_result));
/* Sends s, as an update, to every region of its configuration but this one and `skip` (may be
 * NULL); every region is tried, the first failure is returned (and each one logged). */
coffer_err kms_mrk_push_all(struct kms_service *svc, const struct kms_mrk_snapshot *s, const char *skip)
    __attribute__((warn_unused_result));
/*
 * The record text and the materials sealed to `spki` from which a replica of snapshot s in
 * `target_region` is installed (a push's CofferSyncReplica, a pull's CofferPullReplica answer).
 */
coffer_err kms_mrk_package(const struct kms_service *svc, const char *target_region, coffer_cursor spki,
                           const struct kms_mrk_snapshot *s, const char *primary, const json_t *replicas,
                           const json_t *extra, char **rec_text, coffer_buf *box)
    __attribute__((warn_unused_result));
/*
 * ReplicateKey received in the replica region (signed for the primary's region, as clients
 * send it there): asks peer p, the primary, for key `key_id` sealed to this region's
 * replication key and installs it with `extra` (the caller's Description, Tags, Policy).
 * Sets call->output as ReplicateKey answers.
 */
coffer_err kms_replica_pull(struct kms_service *svc, struct api_call *call, const struct kms_peer *p,
                            const char *key_id, const json_t *extra) __attribute__((warn_unused_result));
/* AccessDeniedException unless the caller is the configured principal of peer `source_region`. */
coffer_err kms_peer_caller_check(const struct kms_service *svc, const struct api_call *call,
                                 const char *source_region) __attribute__((warn_unused_result));
/* struct kms_api's replication members (kms.h), kms_replica.c. */
bool kms_peer_known(struct kms_service *svc, const char *region);
coffer_err kms_peer_call_service(struct kms_service *svc, const char *region, const char *signing_name,
                                 const char *target, const json_t *body, json_t **out)
    __attribute__((warn_unused_result));
coffer_err kms_peer_seal(struct kms_service *svc, const char *region, coffer_cursor aad,
                         coffer_cursor plaintext, coffer_buf *box) __attribute__((warn_unused_result));
coffer_err kms_replication_open(struct kms_service *svc, coffer_cursor aad, coffer_cursor box,
                                coffer_buf *plain) __attribute__((warn_unused_result));
coffer_err kms_peer_caller_check_service(struct kms_service *svc, const struct api_call *call,
                                         const char *source_region, const char *service)
    __attribute__((warn_unused_result));
/* Coffer's own replication operations, served to peers only (kms_replica.c). */
coffer_err kms_replica_serve_key(struct kms_service *svc, struct api_call *call)
    __attribute__((warn_unused_result));
coffer_err kms_replica_serve_sync(struct kms_service *svc, struct api_call *call)
    __attribute__((warn_unused_result));
coffer_err kms_replica_serve_gone(struct kms_service *svc, struct api_call *call)
    __attribute__((warn_unused_result));
/*
 * A replica's deletion reaches its primary region, which drops it from its list (and, when it
 * was the last replica of a primary in PendingReplicaDeletion, starts the primary's waiting
 * period). Inside t, the transaction that deletes replica record `rec` (acct/id): queues the
 * notice under kms/replica-gone/<acct>/<id>. No-op for any other record.
 */
coffer_err kms_mrk_replica_gone_txn(store_txn *t, const json_t *rec, const char *acct, const char *id)
    __attribute__((warn_unused_result));
/*
 * Sends every queued notice to its primary region (wmu not held); one delivered, or answered
 * NotFound, is dropped, one that fails stays for the next run. Failures are logged, not
 * returned: the scheduler calls it on every sweep.
 */
void kms_mrk_replica_gone_deliver(struct kms_service *svc);

/* ---- AWS managed keys (kms_managed.c) ---- */
/* Is `alias` the alias of an AWS managed key of a service this server runs ("alias/aws/ssm")? */
bool kms_managed_alias(const char *alias);
/* The managed aliases in byte order, for ListAliases (i < kms_managed_alias_count()). */
size_t kms_managed_alias_count(void);
const char *kms_managed_alias_name(size_t i);
/*
 * Creates the AWS managed key of `alias` in acct/region unless its alias exists (wmu must not
 * be held). COFFER_ERR_NOT_FOUND (no message) when `alias` names no managed key.
 */
coffer_err kms_managed_key_ensure(struct kms_service *svc, const char *acct, const char *region,
                                  const char *alias, int64_t now_ms) __attribute__((warn_unused_result));

/* ---- per-account counters (kms_key.c) ----
 * Kept in the same transaction as the records they count, so a quota check is one read:
 *   kms/count/<acct>/<region>/keys               KMS keys
 *   kms/count/<acct>/<region>/aliases/<key id>   aliases pointing at that key
 * A counter missing from an older store is rebuilt by one scan the first time it is needed. */
void kms_count_keys_key(char *out, size_t n, const char *acct, const char *region);
void kms_count_aliases_key(char *out, size_t n, const char *acct, const char *region, const char *key_id);
/* Reads the counter `ckey` in t (rebuilding it when absent) and adds `delta`. With delta > 0,
 * a result above `limit` is LimitExceededException `what` and nothing is written. */
coffer_err kms_count_add(store_txn *t, const char *ckey, long delta, size_t limit, const char *what)
    __attribute__((warn_unused_result));

void kms_key_free(struct kms_key *k);

/* ---- rotation (kms_ops_rotation.c) ----
 * Keys with automatic rotation on are indexed by their next rotation date, so the scheduler reads
 * only the due ones: kms/rotation/<date ms, 16 digits>/<acct>/<region>/<key id>. The entry
 * exists while the record's Rotation.Enabled is true and the key is Enabled; the record's
 * Rotation.NextRotationDate is the date in its key. */
#define KMS_ROTATION_MIN_DAYS 90
#define KMS_ROTATION_MAX_DAYS 2560
#define KMS_ROTATION_DEFAULT_DAYS 365
/* On-demand rotations one key may have in its lifetime (AWS's resource quota; not adjustable). */
#define KMS_ON_DEMAND_ROTATIONS_MAX 25
#define KMS_ROTATION_CONFLICT_MS (20LL * 60 * 1000) /* automatic rotation this close: ConflictException */
/*
 * The txn function that (re)writes k's rotation index entry from rec (the record being written)
 * when its rotation is on: EnableKey uses it so a key re-enabled after its date rotates at the
 * next run. ctx is a struct kms_rotation_reindex.
 */
struct kms_rotation_reindex {
    const struct kms_key *k;
    const json_t *rec;
};
coffer_err kms_rotation_reindex_txn(store_txn *t, void *ctx) __attribute__((warn_unused_result));
/* Inside t: schedules the automatic rotation of a new key (acct/region/id) at when_ms. */
coffer_err kms_rotation_schedule_txn(store_txn *t, const char *acct, const char *region, const char *id,
                                     int64_t when_ms) __attribute__((warn_unused_result));
/*
 * With wmu held: handles the due index entry `entry` (a "kms/rotation/..." store key): rotates
 * the key it names when that key is still due on that date, else drops the entry. *push names the
 * key when it was a multi-Region primary (kms_rotation_push_replicas, once wmu is released).
 */
struct kms_rotated_primary { /* a multi-Region primary a scheduled rotation changed */
    bool rotated;
    char account[API_ACCOUNT_ID_LEN + 1];
    char key_id[KMS_KEY_ID_MAX + 1];
};
coffer_err kms_rotation_run_due(struct kms_service *svc, const char *entry, int64_t now_ms,
                                struct kms_rotated_primary *push) __attribute__((warn_unused_result));
/* After a multi-Region primary rotated (wmu not held): its replicas get the new material. */
void kms_rotation_push_replicas(struct kms_service *svc, const char *acct, const char *key_id);

/* ---- audit and output helpers (kms_service.c) ---- */
/*
 * Records `event_name` done by the service itself on key `id` (CloudTrail: an AwsServiceEvent):
 * the sweeper's DeleteKey, a scheduled RotateKey, DeleteExpiredKeyMaterial, the CreateKey of an AWS
 * managed key. COFFER_OK
 * when no sink is set. Call inside the transaction that makes the change, before it commits:
 * a failure must abort it.
 */
coffer_err kms_record_service_event(struct kms_service *svc, const char *event_name, const char *acct,
                                    const char *region, const char *id, int64_t now_ms)
    __attribute__((warn_unused_result));
/* requestParameters: the listed input members, lowerCamelCase, maps copied verbatim. */
void kms_audit_request(struct api_call *call, const char *const *members);
void kms_audit_key(struct api_call *call, const struct kms_key *k);
/* Deep copy with object keys in lowerCamelCase (EncryptionContext maps copied verbatim). */
json_t *kms_camel_copy(const json_t *v);
/* Milliseconds of the call (call->now_ms, or the clock when the caller left it 0). */
int64_t kms_call_now_ms(const struct api_call *call);
/*
 * Merges validated `add` tags ([{TagKey,TagValue}]) into `existing` (may be NULL) giving a new
 * array in *out: aws: prefix, duplicate keys and more than `max_tags` are TagException.
 */
coffer_err kms_tags_merge(const json_t *existing, const json_t *add, size_t max_tags, json_t **out)
    __attribute__((warn_unused_result));
/* Opaque paging markers: base64 of the last item returned. */
coffer_err kms_marker_encode(const char *last, json_t *out_obj) __attribute__((warn_unused_result));
coffer_err kms_marker_decode(const char *marker, char *out, size_t n) __attribute__((warn_unused_result));
void kms_audit_key_arn(struct api_call *call, const char *account, const char *arn);
/* Sets a base64 string member from bytes (secret: encoded in a locked buffer first). */
coffer_err kms_out_blob(json_t *obj, const char *name, coffer_cursor bytes, bool secret)
    __attribute__((warn_unused_result));
/* {"KeyId": arn} and, with `alg`, "EncryptionAlgorithm": alg: the start of the crypto
 * operations' answers, built without json_pack's format on every request. NULL when out of memory. */
json_t *kms_out_key(const char *arn, const char *alg);

coffer_err kms_nomem(void);

/* ---- authorization (kms_authz.c) ---- */
/* What one key-scoped authorization looks at besides the key. */
struct kms_authz_in {
    const char *action;      /* "kms:Encrypt" */
    const struct kms_req *r; /* the decoded request (tags, grant members, GrantTokens); may be NULL */
    const json_t *ec;        /* the encryption context the action uses (ReEncrypt: source or destination) */
    const char *key_ref;     /* the KeyId as given: an alias sets kms:RequestAlias */
};
/*
 * Authorizes `in->action` on k (held by the caller: shared lock or wmu) for the caller: key
 * policy, identity policies and the key's grants (constraints checked against in->ec).
 * COFFER_OK when authorization is off. AccessDeniedException / InvalidGrantTokenException.
 */
coffer_err kms_authorize_key(const struct kms_service *svc, const struct api_call *call,
                             const struct kms_key *k, const struct kms_authz_in *in)
    __attribute__((warn_unused_result));
/* Authorizes an action with no resource policy on `resource` ("*" or an alias ARN): identity only. */
coffer_err kms_authorize_plain(const struct kms_service *svc, const struct api_call *call, const char *action,
                               const char *resource, const struct kms_req *r)
    __attribute__((warn_unused_result));
/* Compiles a key policy document: MalformedPolicyDocumentException with the compiler's message. */
coffer_err kms_policy_compile(const char *text, policy **out) __attribute__((warn_unused_result));
/* Validates the GrantTokens of a request: InvalidGrantTokenException for anything not ours. */
coffer_err kms_grant_tokens_check(const json_t *tokens) __attribute__((warn_unused_result));
/* True when a grant in k->grants lets the caller perform `grant_op` with encryption context `ec`. */
bool kms_grant_allows(const struct kms_key *k, const struct api_caller *c, const char *grant_op,
                      const json_t *ec);
/* The grants of a key, from the store (wmu held). *out is a new array. */
coffer_err kms_grants_load(struct kms_service *svc, const struct kms_key *k, json_t **out)
    __attribute__((warn_unused_result));

/* The lockout safety check: may the caller still call PutKeyPolicy on key_arn under `candidate`? */
bool kms_policy_lockout_ok(const struct kms_service *svc, const struct api_call *call, const char *key_arn,
                           const policy *candidate);

/* ---- grants (kms_authz.c, kms_ops_grants.c) ---- */
#define KMS_GRANT_ID_LEN 64 /* hex */
struct kms_grant_ref {      /* what a grant token names */
    char account[API_ACCOUNT_ID_LEN + 1];
    char region[KMS_REGION_MAX + 1];
    char key_id[KMS_KEY_ID_MAX + 1];
    char grant_id[KMS_GRANT_ID_LEN + 1];
};
bool kms_grant_id_valid(const char *s);
/* A fresh token for a grant; *out is malloc'd (free). */
coffer_err kms_grant_token_make(const char *acct, const char *region, const char *key_id,
                                const char *grant_id, char **out) __attribute__((warn_unused_result));
/* InvalidGrantTokenException unless `token` is one of ours (shape only: the grant may be gone). */
coffer_err kms_grant_token_parse(const char *token, struct kms_grant_ref *g)
    __attribute__((warn_unused_result));
/*
 * Deletes every grant of a key and its retiring-principal index entries inside `t` (the
 * transaction that deletes the key).
 */
coffer_err kms_grants_delete_in(store_txn *t, const char *acct, const char *region, const char *key_id)
    __attribute__((warn_unused_result));
/*
 * The retiring-principal index key of grant record g stored under grant key skey (keyed by the
 * unique id its RetiringPrincipal is bound to, else by the ARN); false when it has none.
 */
bool kms_grant_index_key(char *out, size_t n, const json_t *g, const char *skey);
/* Builds the retiring-principal index over grants stored before it existed (once per store). */
coffer_err kms_grants_index_ensure(store *st) __attribute__((warn_unused_result));

/* "kms/grant/<acct>/<region>/<key id>/" */
void kms_grant_prefix(char *out, size_t n, const char *acct, const char *region, const char *key_id);
/* Does grant record g name the caller (ARN or, for a session, its role) in `member`? */
bool kms_grant_names(const json_t *g, const struct api_caller *c, const char *member);
bool kms_grant_has_op(const json_t *g, const char *op);
/* Is `op` in the operation array `ops`; is every operation of `ops` in `of`? */
bool kms_ops_has(const json_t *ops, const char *op);
bool kms_ops_within(const json_t *ops, const json_t *of);

/* ---- imported key material (kms_ops_import.c) ---- */
/* Deletes a key's import parameters and import check record inside `t` (the key's deletion). */
coffer_err kms_import_delete_in(store_txn *t, const char *acct, const char *region, const char *key_id)
    __attribute__((warn_unused_result));

/* ---- principal binding (kms_principals.c) ---- */
/*
 * The {"ARN": "unique id"} map of the IAM users and roles a key policy names, for the key
 * record's "PolicyPrincipals". MalformedPolicyDocumentException ("Policy contains a statement
 * with one or more invalid principals.") when one does not exist and `strict` (else it is left
 * out: bound to nobody). Reads the store.
 */
coffer_err kms_policy_principals(const struct kms_service *svc, const char *text, bool strict, json_t **out)
    __attribute__((warn_unused_result));
/* Compiles rec.Policy bound to rec.PolicyPrincipals (resolved now for a record without). */
coffer_err kms_key_policy_compile(const struct kms_service *svc, const json_t *rec, policy **out)
    __attribute__((warn_unused_result));
/* rec.Policy as GetKeyPolicy returns it: principals no longer holding their ARN by unique id. */
coffer_err kms_key_policy_text(const struct kms_service *svc, const json_t *rec, char **out)
    __attribute__((warn_unused_result));
/* Binds a new grant's GranteePrincipal / RetiringPrincipal (InvalidArnException when missing). */
coffer_err kms_grant_bind_principals(const struct kms_service *svc, json_t *g)
    __attribute__((warn_unused_result));
/* The unique id `member` of grant g is bound to; NULL when unbound. */
const char *kms_grant_principal_id(const json_t *g, const char *member);
/* Grant copies as ListGrants shows them: internal ids removed, stale principals by unique id. */
coffer_err kms_grants_view_principals(const struct kms_service *svc, json_t *items)
    __attribute__((warn_unused_result));

#endif
