/*
 * Imported key material (kms.md §8 "Imported key material"): GetParametersForImport,
 * ImportKeyMaterial, DeleteImportedKeyMaterial, and the scheduler's expiry of material whose
 * ValidTo has passed. Keys of Origin EXTERNAL are created PendingImport without material
 * (kms_key.c); the caller wraps its material under a one-day RSA wrapping key of ours and
 * imports it, and the key becomes Enabled.
 *
 * Store layout (next to the key record, kms_key.c):
 *   kms/import/<acct>/<region>/<key id>/<token hex>   sealed import parameters: the wrapping
 *                                                    private key with its algorithm and expiry;
 *                                                    the seal identity (this store key) binds
 *                                                    them to the key and to the token
 *   kms/importcheck/<acct>/<region>/<key id>         sealed salt + HMAC-SHA-256(salt, first
 *                                                    material): a re-import must be the same
 *                                                    material, with no digest of it in clear
 *   kms/expiry/<ValidTo ms, 16 digits>/<acct>/<region>/<key id>   index for the expiry job
 *
 * Material, tokens and wrapped bytes never reach the audit record (kms_service.c's sensitive
 * members) and are wiped after use.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"
#include "crypto/crypto.h"
#include "kms/kms_internal.h"

#define MS_PER_DAY 86400000LL
#define IMPORT_PARAMS_VALID_MS MS_PER_DAY         /* ParametersValidTo: now + 24 h, as AWS */
#define IMPORT_VALID_TO_MAX_MS (365 * MS_PER_DAY) /* ValidTo at most a year ahead, as AWS */
#define TOKEN_NONCE_LEN 32
#define TOKEN_MAGIC "CKIT"
#define TOKEN_VERSION 1
#define PARAMS_VERSION 1
#define PARAMS_HEADER_LEN 11 /* version, algorithm, wrapping spec, 8-byte big-endian expiry */
#define CHECK_SALT_LEN 32
#define EXPIRY_BATCH 64
#define EPHEMERAL_AES_KEY_LEN 32 /* RSA_AES_KEY_WRAP_*: the AES key wrapped under RSA-OAEP */

static const char *const audit_params[] = {"KeyId", "WrappingAlgorithm", "WrappingKeySpec", NULL};
static const char *const audit_import[] = {
    "KeyId", "ValidTo", "ExpirationModel", "ImportType", "KeyMaterialDescription", "KeyMaterialId", NULL};
static const char *const audit_delete[] = {"KeyId", "KeyMaterialId", NULL};

/* Indexes of kms_wrapping_algorithms[] / kms_wrapping_key_specs[] (kms_input.c). */
enum wrap_alg {
    WRAP_RSAES_PKCS1_V1_5,
    WRAP_RSAES_OAEP_SHA_1,
    WRAP_RSAES_OAEP_SHA_256,
    WRAP_RSA_AES_KEY_WRAP_SHA_1,
    WRAP_RSA_AES_KEY_WRAP_SHA_256,
    WRAP_SM2PKE,
};
static const enum crypto_pkey_type wrap_key_types[] = {CRYPTO_PKEY_RSA_2048, CRYPTO_PKEY_RSA_3072,
                                                       CRYPTO_PKEY_RSA_4096};
#define WRAP_SPEC_SM2 3
#define EXPIRATION_DOES_NOT_EXPIRE 1 /* index of KEY_MATERIAL_DOES_NOT_EXPIRE in kms_expiration_models[] */
#define IMPORT_TYPE_NEW 0            /* index of NEW_KEY_MATERIAL in kms_import_types[] */

/* ------------------------------------------------------------------------------------------ */
/* Store keys and shared checks                                                               */
/* ------------------------------------------------------------------------------------------ */

static void params_prefix(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    snprintf(out, n, "kms/import/%s/%s/%s/", acct, region, id);
}

static void params_key(char *out, size_t n, const struct kms_key *k, const uint8_t nonce[TOKEN_NONCE_LEN])
{
    char hex[2 * TOKEN_NONCE_LEN + 1];
    coffer_hex_encode(nonce, TOKEN_NONCE_LEN, hex);
    snprintf(out, n, "kms/import/%s/%s/%s/%s", k->account, k->region, k->key_id, hex);
}

static void check_key(char *out, size_t n, const char *acct, const char *region, const char *id)
{
    snprintf(out, n, "kms/importcheck/%s/%s/%s", acct, region, id);
}

static void expiry_key(char *out, size_t n, int64_t when_ms, const struct kms_key *k)
{
    snprintf(out, n, "kms/expiry/%016" PRId64 "/%s/%s/%s", when_ms, k->account, k->region, k->key_id);
}

static const char *rec_str(const json_t *rec, const char *name)
{
    const char *v = json_string_value(json_object_get(rec, name));
    return v != NULL ? v : "";
}

/* kms.md §6 footnote 9: only keys of Origin EXTERNAL have material to import or delete. */
static coffer_err check_external(const struct kms_key *k)
{
    const char *origin = rec_str(k->rec, "Origin");
    if (strcmp(origin, "EXTERNAL") != 0) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "%s origin is %s which is not valid for this operation.", k->arn, origin);
    }
    return COFFER_OK;
}

/* kms.md §6: the import operations refuse Creating keys, and (unless `updating_ok`) Updating ones. */
static coffer_err check_import_state(const struct kms_key *k, bool pending_deletion_ok, bool updating_ok)
{
    if (kms_state_pending_deletion(k->state) && !pending_deletion_ok) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is pending deletion.", k->arn);
    }
    if (k->state == KMS_STATE_CREATING) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is creating.", k->arn);
    }
    if (k->state == KMS_STATE_UPDATING && !updating_ok) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is updating.", k->arn);
    }
    if (k->state == KMS_STATE_UNAVAILABLE) {
        return coffer_fail(COFFER_ERR_INVALID_STATE, "%s is unavailable.", k->arn);
    }
    return COFFER_OK;
}

struct key_list {
    char **v;
    size_t n, cap;
};

static coffer_err key_list_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct key_list *l = ctx;
    (void)value;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return kms_nomem();
        }
        l->v = v;
        l->cap = cap;
    }
    if ((l->v[l->n] = strdup(key)) == NULL) {
        return kms_nomem();
    }
    l->n++;
    return COFFER_OK;
}

static void key_list_free(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Deletes every store entry under `prefix` inside t. */
static coffer_err delete_prefix(store_txn *t, const char *prefix)
{
    struct key_list l = {0};
    coffer_err rc = store_txn_scan(t, prefix, NULL, 0, key_list_cb, &l);
    for (size_t i = 0; rc == COFFER_OK && i < l.n; i++) {
        rc = store_txn_delete(t, l.v[i]);
        rc = rc == COFFER_ERR_NOT_FOUND ? COFFER_OK : rc;
    }
    key_list_free(&l);
    return rc;
}

coffer_err kms_import_delete_in(store_txn *t, const char *acct, const char *region, const char *key_id)
{
    char skey[STORE_KEY_BUF];
    params_prefix(skey, sizeof(skey), acct, region, key_id);
    TRY(delete_prefix(t, skey));
    check_key(skey, sizeof(skey), acct, region, key_id);
    coffer_err rc = store_txn_delete(t, skey);
    return rc == COFFER_ERR_NOT_FOUND ? COFFER_OK : rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Import token: "CKIT" | version | key id length | key id | nonce                             */
/* ------------------------------------------------------------------------------------------ */

static coffer_err token_make(const struct kms_key *k, const uint8_t nonce[TOKEN_NONCE_LEN], coffer_buf *out)
{
    uint8_t head[6] = {'C', 'K', 'I', 'T', TOKEN_VERSION, (uint8_t)strlen(k->key_id)};
    TRY(coffer_buf_append(out, head, sizeof(head)));
    TRY(coffer_buf_append(out, k->key_id, strlen(k->key_id)));
    return coffer_buf_append(out, nonce, TOKEN_NONCE_LEN);
}

static coffer_err invalid_token(void)
{
    return coffer_fail(COFFER_ERR_INVALID_IMPORT_TOKEN,
                       "The import token is invalid or is associated with a different KMS key.");
}

/* The nonce of a token issued for k; anything else, or a token of another key, is invalid. */
static coffer_err token_parse(const struct kms_key *k, coffer_cursor tok, uint8_t nonce[TOKEN_NONCE_LEN])
{
    size_t id_len = strlen(k->key_id);
    if (tok.len != 6 + id_len + TOKEN_NONCE_LEN || memcmp(tok.ptr, TOKEN_MAGIC, 4) != 0 ||
        tok.ptr[4] != TOKEN_VERSION || tok.ptr[5] != id_len || memcmp(tok.ptr + 6, k->key_id, id_len) != 0) {
        return invalid_token();
    }
    memcpy(nonce, tok.ptr + 6 + id_len, TOKEN_NONCE_LEN);
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* GetParametersForImport                                                                     */
/* ------------------------------------------------------------------------------------------ */

static coffer_err check_wrapping(const struct kms_req *r)
{
    if (r->wrapping_alg == WRAP_RSAES_PKCS1_V1_5) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "The RSAES_PKCS1_V1_5 wrapping algorithm is deprecated and not supported.");
    }
    if (r->wrapping_alg == WRAP_SM2PKE || r->wrapping_spec == WRAP_SPEC_SM2) {
        return coffer_fail(COFFER_ERR_VALIDATION, "SM2 wrapping is supported only in China Regions.");
    }
    return COFFER_OK;
}

static void put_be64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static int64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return (int64_t)v;
}

struct params_write {
    char prefix[STORE_KEY_BUF];
    char key[STORE_KEY_BUF];
    coffer_cursor sealed;
};

coffer_err kms_op_GetParametersForImport(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    crypto_pkey *pair = NULL;
    coffer_buf params = COFFER_SECRET_BUF_INIT, sealed = COFFER_BUF_INIT, pub = COFFER_BUF_INIT,
               token = COFFER_BUF_INIT;
    uint8_t nonce[TOKEN_NONCE_LEN];
    store_txn *t = NULL;
    bool held = false;
    coffer_err rc = COFFER_OK;
    kms_audit_request(call, audit_params);
    TRY(kms_req_decode(KMS_OP_GetParametersForImport, call->input, &r));
    TRY_OUT(check_wrapping(&r));
    /* Made before the key is taken for writing: an RSA-4096 pair takes a while. */
    TRY_OUT(crypto_pkey_generate(wrap_key_types[r.wrapping_spec], &pair));
    TRY_OUT(kms_acquire_write(svc, call, r.key_id, 0, &k));
    held = true;
    kms_audit_key(call, k);
    TRY_OUT(kms_authorize_key(svc, call, k,
                              &(struct kms_authz_in){.action = "kms:GetParametersForImport", .r = &r}));
    TRY_OUT(check_external(k));
    TRY_OUT(check_import_state(k, false, false));

    int64_t valid_to = kms_call_now_ms(call) + IMPORT_PARAMS_VALID_MS;
    uint8_t head[PARAMS_HEADER_LEN] = {PARAMS_VERSION, (uint8_t)r.wrapping_alg, (uint8_t)r.wrapping_spec};
    put_be64(head + 3, valid_to);
    TRY_OUT(coffer_buf_append(&params, head, sizeof(head)));
    TRY_OUT(crypto_pkey_private_der(pair, &params));
    TRY_OUT(crypto_random(nonce, sizeof(nonce)));
    char skey[STORE_KEY_BUF], prefix[STORE_KEY_BUF];
    params_key(skey, sizeof(skey), k, nonce);
    TRY_OUT(seal_record_seal(svc->sl, skey, coffer_buf_cursor(&params), &sealed));
    /* One set of parameters per key: a new request replaces the previous token. */
    params_prefix(prefix, sizeof(prefix), k->account, k->region, k->key_id);
    TRY_OUT(store_txn_begin(svc->st, &t));
    TRY_OUT(delete_prefix(t, prefix));
    TRY_OUT(store_txn_put(t, skey, coffer_buf_cursor(&sealed)));
    rc = store_txn_commit(t);
    t = NULL;
    TRY_OUT(rc);

    TRY_OUT(crypto_pkey_public_der(pair, &pub));
    TRY_OUT(token_make(k, nonce, &token));
    call->output = json_pack("{s:s,s:f}", "KeyId", k->arn, "ParametersValidTo", (double)valid_to / 1000.0);
    if (call->output == NULL) {
        rc = kms_nomem();
        goto out;
    }
    TRY_OUT(kms_out_blob(call->output, "ImportToken", coffer_buf_cursor(&token), false));
    TRY_OUT(kms_out_blob(call->output, "PublicKey", coffer_buf_cursor(&pub), false));
out:
    store_txn_abort(t);
    if (held) {
        kms_write_release(svc);
    }
    crypto_pkey_free(pair);
    coffer_buf_free(&params);
    coffer_buf_free(&sealed);
    coffer_buf_free(&pub);
    coffer_buf_free(&token);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* ImportKeyMaterial                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* The wrapping parameters a token names (k held for writing); the pair in *pair is the caller's. */
static coffer_err params_load(struct kms_service *svc, const struct kms_key *k, coffer_cursor token,
                              int64_t now_ms, int *alg, crypto_pkey **pair)
{
    uint8_t nonce[TOKEN_NONCE_LEN];
    char skey[STORE_KEY_BUF];
    coffer_buf sealed = COFFER_BUF_INIT, params = COFFER_SECRET_BUF_INIT;
    coffer_err rc = COFFER_OK;
    TRY(token_parse(k, token, nonce));
    params_key(skey, sizeof(skey), k, nonce);
    rc = store_get(svc->st, skey, &sealed);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = invalid_token(); /* replaced by a newer token, or never ours */
    }
    TRY_OUT(rc);
    TRY_OUT(seal_record_open(svc->sl, skey, coffer_buf_cursor(&sealed), &params));
    if (params.len <= PARAMS_HEADER_LEN || params.data[0] != PARAMS_VERSION ||
        params.data[2] >= sizeof(wrap_key_types) / sizeof(wrap_key_types[0])) {
        FAIL_OUT(COFFER_ERR_STORE, "corrupt import parameters");
    }
    if (get_be64(params.data + 3) <= now_ms) {
        FAIL_OUT(COFFER_ERR_EXPIRED_IMPORT_TOKEN,
                 "The import token is expired. Use GetParametersForImport to get a new import token and "
                 "public key.");
    }
    *alg = params.data[1];
    coffer_cursor der = coffer_cursor_from(params.data + PARAMS_HEADER_LEN, params.len - PARAMS_HEADER_LEN);
    if (crypto_pkey_from_private_der(wrap_key_types[params.data[2]], der, pair) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_STORE, "corrupt import parameters");
    }
out:
    coffer_buf_free(&sealed);
    coffer_buf_free(&params);
    return rc;
}

/* Unwraps EncryptedKeyMaterial as `alg` describes into `out` (secret). */
static coffer_err material_unwrap(const crypto_pkey *pair, int alg, coffer_cursor wrapped, coffer_buf *out)
{
    if (alg == WRAP_RSAES_OAEP_SHA_1 || alg == WRAP_RSAES_OAEP_SHA_256) {
        return crypto_pkey_oaep_decrypt(
            pair, alg == WRAP_RSAES_OAEP_SHA_1 ? CRYPTO_OAEP_SHA1 : CRYPTO_OAEP_SHA256, wrapped, out);
    }
    /* RSA_AES_KEY_WRAP_*: an ephemeral AES key under RSA-OAEP (one modulus long), then the
     * material under that key with AES key wrap with padding (RFC 5649). */
    size_t n = crypto_pkey_size(pair);
    coffer_buf aes = COFFER_SECRET_BUF_INIT;
    coffer_err rc = COFFER_OK;
    if (wrapped.len <= n) {
        return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    TRY_OUT(crypto_pkey_oaep_decrypt(
        pair, alg == WRAP_RSA_AES_KEY_WRAP_SHA_1 ? CRYPTO_OAEP_SHA1 : CRYPTO_OAEP_SHA256,
        coffer_cursor_from(wrapped.ptr, n), &aes));
    TRY_OUT(crypto_aes_kwp_unwrap(coffer_buf_cursor(&aes),
                                  coffer_cursor_from(wrapped.ptr + n, wrapped.len - n), out));
out:
    coffer_buf_free(&aes);
    return rc;
}

/*
 * The first material imported into a key fixes it: a salted HMAC of it, sealed (so the store
 * alone cannot test guesses against it), is what every later import is compared with.
 * *fresh is set to the sealed record to write when the key has none yet.
 */
static coffer_err material_check(struct kms_service *svc, const struct kms_key *k, coffer_cursor material,
                                 coffer_buf *fresh)
{
    char skey[STORE_KEY_BUF];
    coffer_buf sealed = COFFER_BUF_INIT, rec = COFFER_SECRET_BUF_INIT;
    uint8_t mac[CRYPTO_SHA256_LEN], salt_mac[CHECK_SALT_LEN + CRYPTO_SHA256_LEN];
    coffer_err rc = COFFER_OK;
    check_key(skey, sizeof(skey), k->account, k->region, k->key_id);
    rc = store_get(svc->st, skey, &sealed);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = COFFER_OK;
        TRY_OUT(crypto_random(salt_mac, CHECK_SALT_LEN));
        TRY_OUT(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(salt_mac, CHECK_SALT_LEN), material,
                            salt_mac + CHECK_SALT_LEN));
        TRY_OUT(seal_record_seal(svc->sl, skey, coffer_cursor_from(salt_mac, sizeof(salt_mac)), fresh));
        goto out;
    }
    TRY_OUT(rc);
    TRY_OUT(seal_record_open(svc->sl, skey, coffer_buf_cursor(&sealed), &rec));
    if (rec.len != sizeof(salt_mac)) {
        FAIL_OUT(COFFER_ERR_STORE, "corrupt import check record");
    }
    TRY_OUT(crypto_hmac(CRYPTO_SHA256, coffer_cursor_from(rec.data, CHECK_SALT_LEN), material, mac));
    if (crypto_memcmp(mac, rec.data + CHECK_SALT_LEN, sizeof(mac)) != 0) {
        FAIL_OUT(COFFER_ERR_INCORRECT_KEY_MATERIAL,
                 "The key material is not the same key material that was previously imported into this KMS "
                 "key.");
    }
out:
    coffer_secure_zero(salt_mac, sizeof(salt_mac));
    coffer_secure_zero(mac, sizeof(mac));
    coffer_buf_free(&sealed);
    coffer_buf_free(&rec);
    return rc;
}

/* What ImportKeyMaterial and DeleteImportedKeyMaterial change besides the record and material. */
struct import_txn {
    struct kms_service *svc;       /* with `expired`: the service whose event sink records it */
    const struct kms_key *expired; /* the scheduler's expiry: DeleteExpiredKeyMaterial on record */
    int64_t now_ms;
    char check_key[STORE_KEY_BUF];
    const coffer_buf *check; /* the new import check record, or NULL */
    char old_expiry[STORE_KEY_BUF];
    char new_expiry[STORE_KEY_BUF];
};

static coffer_err import_txn_fn(store_txn *t, void *ctx)
{
    struct import_txn *x = ctx;
    if (x->check != NULL && x->check->len > 0) {
        TRY(store_txn_put(t, x->check_key, coffer_buf_cursor(x->check)));
    }
    if (x->old_expiry[0] != '\0' && strcmp(x->old_expiry, x->new_expiry) != 0) {
        coffer_err rc = store_txn_delete(t, x->old_expiry);
        if (rc != COFFER_OK && rc != COFFER_ERR_NOT_FOUND) {
            return rc;
        }
    }
    if (x->new_expiry[0] != '\0') {
        TRY(store_txn_put(t, x->new_expiry, coffer_cursor_from_str("{}")));
    }
    if (x->expired != NULL) {
        /* On record before the material is gone; a refused record leaves it for the next tick. */
        const struct kms_key *k = x->expired;
        TRY(kms_record_service_event(x->svc, "DeleteExpiredKeyMaterial", k->account, k->region, k->key_id,
                                     x->now_ms));
    }
    return COFFER_OK;
}

/* The expiry index entry of k's current record, if its material expires. */
static void current_expiry(const struct kms_key *k, char *out, size_t n)
{
    const json_t *vt = json_object_get(k->rec, "ValidTo");
    out[0] = '\0';
    if (vt != NULL) {
        expiry_key(out, n, (int64_t)json_integer_value(vt), k);
    }
}

static coffer_err check_validity(const struct kms_req *r, int64_t now_ms, bool *expires)
{
    *expires = r->expiration_model != EXPIRATION_DOES_NOT_EXPIRE; /* AWS's default: KEY_MATERIAL_EXPIRES */
    if (*expires && !r->has_valid_to) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES");
    }
    if (!*expires && r->has_valid_to) {
        return coffer_fail(
            COFFER_ERR_VALIDATION,
            "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE");
    }
    if (*expires && r->valid_to_ms <= now_ms) {
        return coffer_fail(COFFER_ERR_VALIDATION, "The validTo date must be in the future.");
    }
    if (*expires && r->valid_to_ms > now_ms + IMPORT_VALID_TO_MAX_MS) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "The validTo date must be no more than 365 days in the future.");
    }
    return COFFER_OK;
}

/* k's record with material `hex` in place (or none when hex is NULL), for the given expiry. */
static json_t *rec_with_material(const struct kms_key *k, const char *hex, int64_t now_ms, bool expires,
                                 int64_t valid_to_ms, enum kms_state st)
{
    json_t *rec = json_deep_copy(k->rec);
    if (rec == NULL) {
        return NULL;
    }
    int bad = json_object_set_new(rec, "KeyState", json_string(kms_state_name(st)));
    json_object_del(rec, "ValidTo");
    if (hex == NULL) {
        json_object_del(rec, "CurrentKeyMaterialId");
        json_object_del(rec, "ExpirationModel");
        bad |= json_object_set_new(rec, "KeyMaterials", json_array());
    } else {
        bad |= json_object_set_new(rec, "CurrentKeyMaterialId", json_string(hex));
        bad |= json_object_set_new(rec, "ImportedKeyMaterialId", json_string(hex));
        bad |= json_object_set_new(
            rec, "ExpirationModel",
            json_string(expires ? "KEY_MATERIAL_EXPIRES" : "KEY_MATERIAL_DOES_NOT_EXPIRE"));
        if (expires) {
            bad |= json_object_set_new(rec, "ValidTo", json_integer(valid_to_ms));
        }
        bad |= json_object_set_new(rec, "KeyMaterials",
                                   json_pack("[{s:s,s:I,s:s}]", "KeyMaterialId", hex, "CreationDate",
                                             (json_int_t)now_ms, "State", "CURRENT"));
    }
    if (bad != 0) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

coffer_err kms_op_ImportKeyMaterial(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    crypto_pkey *pair = NULL;
    coffer_buf material = COFFER_SECRET_BUF_INIT, check = COFFER_BUF_INIT;
    struct kms_material m = {0};
    struct import_txn x = {0};
    char hex[KMS_MATERIAL_HEX_LEN + 1];
    int alg = 0;
    bool expires = true;
    coffer_err rc = COFFER_OK;
    TRY(kms_begin_key_write(svc, call, KMS_OP_ImportKeyMaterial, audit_import, KMS_RULE_ANY, &r, &k));
    int64_t now = kms_call_now_ms(call);
    TRY_OUT(check_external(k));
    TRY_OUT(check_import_state(k, false, true));
    TRY_OUT(check_validity(&r, now, &expires));
    const char *imported = json_string_value(json_object_get(k->rec, "ImportedKeyMaterialId"));
    if (r.key_material_id != NULL && (imported == NULL || strcmp(r.key_material_id, imported) != 0)) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND, "Key material %s does not exist for %s.", r.key_material_id, k->arn);
    }
    if (r.import_type == IMPORT_TYPE_NEW && imported != NULL) {
        /* A second, different material of one key is rotation of imported material. */
        FAIL_OUT(
            COFFER_ERR_UNSUPPORTED_OPERATION,
            "ImportType NEW_KEY_MATERIAL for a key that already has imported key material is not supported.");
    }
    TRY_OUT(params_load(svc, k, coffer_buf_cursor(&r.import_token), now, &alg, &pair));
    rc = material_unwrap(pair, alg, coffer_buf_cursor(&r.ciphertext), &material);
    if (rc == COFFER_ERR_INVALID_CIPHERTEXT) {
        FAIL_OUT(
            COFFER_ERR_INVALID_CIPHERTEXT,
            "The encrypted key material could not be decrypted with the import parameters of the token.");
    }
    TRY_OUT(rc);
    if (kms_material_set(k->spec, coffer_buf_cursor(&material), &m) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_INCORRECT_KEY_MATERIAL, "The key material is not valid for a %s key.",
                 kms_spec_name(k->spec));
    }
    TRY_OUT(material_check(svc, k, coffer_buf_cursor(&material), &check));
    /* The same material keeps its id, so ciphertexts made before a deletion decrypt again. */
    if (imported != NULL) {
        if (coffer_hex_decode(coffer_cursor_from_str(imported), m.id, KMS_MATERIAL_ID_LEN) != COFFER_OK) {
            FAIL_OUT(COFFER_ERR_STORE, "corrupt key record");
        }
    } else {
        TRY_OUT(crypto_random(m.id, KMS_MATERIAL_ID_LEN));
    }
    coffer_hex_encode(m.id, KMS_MATERIAL_ID_LEN, hex);
    enum kms_state st = k->state == KMS_STATE_PENDING_IMPORT ? KMS_STATE_ENABLED : k->state;
    json_t *rec = rec_with_material(k, hex, now, expires, r.valid_to_ms, st);
    if (rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    check_key(x.check_key, sizeof(x.check_key), k->account, k->region, k->key_id);
    x.check = &check;
    current_expiry(k, x.old_expiry, sizeof(x.old_expiry));
    if (expires) {
        expiry_key(x.new_expiry, sizeof(x.new_expiry), r.valid_to_ms, k);
    }
    /* Before the commit: the request's event is written then, with these elements. */
    call->output = json_pack("{s:s,s:s}", "KeyId", k->arn, "KeyMaterialId", hex);
    call->audit_response = kms_camel_copy(call->output);
    if (call->output == NULL) {
        json_decref(rec);
        rc = kms_nomem();
        goto out;
    }
    rc = kms_key_replace_material(svc, k, rec, &m, import_txn_fn, &x);
out:
    kms_write_release(svc);
    kms_material_clear(&m);
    crypto_pkey_free(pair);
    coffer_buf_free(&material);
    coffer_buf_free(&check);
    kms_req_clean(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* DeleteImportedKeyMaterial and expiry                                                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * With wmu held: deletes k's imported material. The key goes to PendingImport, except a key
 * pending deletion, which stays so (CancelKeyDeletion then finds it without material). `expired`:
 * the scheduler does it, and records DeleteExpiredKeyMaterial.
 */
static coffer_err material_remove(struct kms_service *svc, struct kms_key *k, int64_t now_ms, bool expired)
{
    struct import_txn x = {.svc = svc, .expired = expired ? k : NULL, .now_ms = now_ms};
    enum kms_state st = kms_state_pending_deletion(k->state) ? k->state : KMS_STATE_PENDING_IMPORT;
    json_t *rec = rec_with_material(k, NULL, now_ms, false, 0, st);
    if (rec == NULL) {
        return kms_nomem();
    }
    current_expiry(k, x.old_expiry, sizeof(x.old_expiry));
    return kms_key_replace_material(svc, k, rec, NULL, import_txn_fn, &x);
}

coffer_err kms_op_DeleteImportedKeyMaterial(void *state, struct api_call *call)
{
    struct kms_service *svc = state;
    struct kms_req r;
    struct kms_key *k = NULL;
    coffer_err rc = COFFER_OK;
    TRY(kms_begin_key_write(svc, call, KMS_OP_DeleteImportedKeyMaterial, audit_delete, KMS_RULE_ANY, &r, &k));
    TRY_OUT(check_external(k));
    TRY_OUT(check_import_state(k, true, false));
    const char *current = json_string_value(json_object_get(k->rec, "CurrentKeyMaterialId"));
    const char *imported = json_string_value(json_object_get(k->rec, "ImportedKeyMaterialId"));
    if (r.key_material_id != NULL && (imported == NULL || strcmp(r.key_material_id, imported) != 0)) {
        FAIL_OUT(COFFER_ERR_NOT_FOUND, "Key material %s does not exist for %s.", r.key_material_id, k->arn);
    }
    call->output = json_pack("{s:s}", "KeyId", k->arn);
    if (call->output == NULL || (imported != NULL && json_object_set_new(call->output, "KeyMaterialId",
                                                                         json_string(imported)) != 0)) {
        rc = kms_nomem();
        goto out;
    }
    call->audit_response = kms_camel_copy(call->output);
    if (current == NULL) {
        goto out; /* PendingImport: nothing to delete (kms.md §6) */
    }
    rc = material_remove(svc, k, kms_call_now_ms(call), false);
out:
    kms_write_release(svc);
    kms_req_clean(&r);
    return rc;
}

/* One due index entry: the key's material is deleted when its ValidTo has passed. */
static coffer_err expire_one(struct kms_service *svc, const char *index_key, int64_t now_ms)
{
    char acct[API_ACCOUNT_ID_LEN + 1], region[KMS_REGION_MAX + 1], id[KMS_KEY_ID_MAX + 1];
    long long when;
    struct kms_key *k = NULL;
    coffer_err rc = COFFER_OK;
    bool drop = true;
    pthread_mutex_lock(&svc->wmu);
    if (sscanf(index_key, "kms/expiry/%16lld/%12[0-9]/%32[a-z0-9-]/%40[a-z0-9-]", &when, acct, region, id) ==
        4) {
        rc = kms_key_get_locked(svc, acct, region, id, &k);
        if (rc == COFFER_ERR_NOT_FOUND) {
            rc = COFFER_OK; /* key gone: only the index entry is left */
        }
        const json_t *vt = k != NULL ? json_object_get(k->rec, "ValidTo") : NULL;
        if (rc == COFFER_OK && vt != NULL && json_integer_value(vt) == when && when <= now_ms) {
            /* material_remove drops this entry with the record, in one transaction. */
            rc = material_remove(svc, k, now_ms, true);
            drop = false;
        }
    }
    if (rc == COFFER_OK && drop) {
        /* A stale entry (re-imported with another ValidTo, deleted, or not ours). */
        store_txn *t = NULL;
        rc = store_txn_begin(svc->st, &t);
        if (rc == COFFER_OK) {
            rc = store_txn_delete(t, index_key);
            rc = rc == COFFER_ERR_NOT_FOUND ? COFFER_OK : rc;
        }
        if (rc == COFFER_OK) {
            rc = store_txn_commit(t);
            t = NULL;
        }
        store_txn_abort(t);
    }
    pthread_mutex_unlock(&svc->wmu);
    return rc;
}

struct expiry_scan {
    int64_t now_ms;
    struct key_list keys;
};

static coffer_err expiry_due_cb(void *ctx, const char *key, coffer_cursor value)
{
    struct expiry_scan *s = ctx;
    (void)value;
    if (strlen(key) < strlen("kms/expiry/") + 17) {
        return key_list_cb(&s->keys, key, value); /* malformed: dropped by expire_one */
    }
    if (strtoll(key + strlen("kms/expiry/"), NULL, 10) > s->now_ms) {
        return STORE_SCAN_STOP; /* ordered by date: nothing further is due */
    }
    return key_list_cb(&s->keys, key, value);
}

coffer_err kms_service_expire_imports(struct kms_service *svc, int64_t now_ms)
{
    for (;;) {
        struct expiry_scan s = {.now_ms = now_ms};
        coffer_err rc = store_scan(svc->st, "kms/expiry/", NULL, EXPIRY_BATCH, expiry_due_cb, &s);
        for (size_t i = 0; rc == COFFER_OK && i < s.keys.n; i++) {
            rc = expire_one(svc, s.keys.v[i], now_ms);
        }
        size_t n = s.keys.n;
        key_list_free(&s.keys);
        if (rc != COFFER_OK || n < EXPIRY_BATCH) {
            return rc;
        }
    }
}
