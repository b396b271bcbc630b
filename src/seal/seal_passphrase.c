/*
 * The passphrase root key provider: the root key is Argon2id (libsodium's crypto_pwhash,
 * ALG_ARGON2ID13) of an operator's passphrase and a random salt, and wraps the keyring as the key
 * file does (seal_file.c, through a raw provider over the derived key). The salt and the costs
 * are not secret: they are the provider's parameters in the data dir's provider record, so the
 * same passphrase derives the same key on the next start, and a keyring wrapped anew (new data
 * dir, migration) gets a fresh salt.
 *
 *   params: "kdf=argon2id13\nsalt=<32 hex>\nops=<N>\nmem=<bytes>\n"
 *
 * libsodium is linked for crypto_pwhash only; everything else cryptographic is OpenSSL's.
 */
#include "seal/seal_provider.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/codec.h"
#include "common/log.h"
#include "common/secret.h"
#include "crypto/crypto.h"

#define PASS_MAX_LEN 4096
#define PASS_SALT_LEN crypto_pwhash_SALTBYTES
/* Bounds on stored costs: the record is plaintext, and a start should not be made to spend
 * unbounded memory or time by whoever can write it. */
#define PASS_OPS_MAX 64ULL
#define PASS_MEM_MAX ((size_t)4 << 30)

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static bool sodium_ok; /* sodium_init succeeded */

static void sodium_start(void)
{
    sodium_ok = sodium_init() >= 0;
}

static coffer_err sodium_ready(void)
{
    pthread_once(&sodium_once, sodium_start);
    if (!sodium_ok) {
        return coffer_fail(COFFER_ERR_CONFIG, "the passphrase provider cannot initialise libsodium");
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The provider
 * ------------------------------------------------------------------------------------------- */

struct pass_provider {
    struct seal_provider base;
    uint8_t *pass; /* secret memory; wiped and freed once the key is derived */
    size_t pass_len;
    unsigned long long ops; /* costs for a keyring wrapped anew */
    size_t mem;
    struct seal_provider *inner; /* the raw provider over the derived key, after attach */
    coffer_buf params;           /* the parameter lines the key was derived with */
};

static coffer_err pp_wrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor plaintext,
                          coffer_buf *out)
{
    struct pass_provider *p = (struct pass_provider *)base;
    if (p->inner == NULL) {
        return coffer_fail(COFFER_ERR_INTERNAL, "the passphrase provider has no key yet");
    }
    return seal_provider_wrap(p->inner, aad, plaintext, out);
}

static coffer_err pp_unwrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor wrapped,
                            coffer_buf *out)
{
    struct pass_provider *p = (struct pass_provider *)base;
    if (p->inner == NULL) {
        return coffer_fail(COFFER_ERR_INTERNAL, "the passphrase provider has no key yet");
    }
    if (seal_provider_unwrap(p->inner, aad, wrapped, out) != COFFER_OK) {
        return coffer_fail(COFFER_ERR_CRYPTO, "wrong passphrase: it does not unwrap the barrier keyring");
    }
    return COFFER_OK;
}

static void pass_forget(struct pass_provider *p)
{
    coffer_secret_free(p->pass, p->pass_len ? p->pass_len : 1);
    p->pass = NULL;
    p->pass_len = 0;
}

static void pp_destroy(struct seal_provider *base)
{
    struct pass_provider *p = (struct pass_provider *)base;
    pass_forget(p);
    seal_provider_free(p->inner);
    coffer_buf_free(&p->params);
    free(p);
}

static coffer_err parse_u64(const char *v, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end != '\0' || x == 0 || x > max) {
        return COFFER_ERR_CONFIG;
    }
    *out = x;
    return COFFER_OK;
}

static bool hex_decode(const char *hex, uint8_t *out, size_t n)
{
    if (strlen(hex) != 2 * n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = coffer_hex_digit((uint8_t)hex[2 * i]), lo = coffer_hex_digit((uint8_t)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static coffer_err stored_params(coffer_cursor stored, uint8_t salt[PASS_SALT_LEN], unsigned long long *ops,
                                size_t *mem)
{
    char kdf[32], salt_hex[2 * PASS_SALT_LEN + 1], ops_s[32], mem_s[32];
    uint64_t o = 0, m = 0;
    if (seal_param_get(stored, "kdf", kdf, sizeof(kdf)) != COFFER_OK || strcmp(kdf, "argon2id13") != 0 ||
        seal_param_get(stored, "salt", salt_hex, sizeof(salt_hex)) != COFFER_OK ||
        seal_param_get(stored, "ops", ops_s, sizeof(ops_s)) != COFFER_OK ||
        seal_param_get(stored, "mem", mem_s, sizeof(mem_s)) != COFFER_OK ||
        !hex_decode(salt_hex, salt, PASS_SALT_LEN) || parse_u64(ops_s, PASS_OPS_MAX, &o) != COFFER_OK ||
        parse_u64(mem_s, PASS_MEM_MAX, &m) != COFFER_OK || o < crypto_pwhash_OPSLIMIT_MIN ||
        m < crypto_pwhash_MEMLIMIT_MIN) {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "the data dir's passphrase parameters (salt, costs) are malformed");
    }
    *ops = o;
    *mem = (size_t)m;
    return COFFER_OK;
}

static coffer_err pp_attach(struct seal_provider *base, coffer_cursor stored, coffer_buf *params)
{
    struct pass_provider *p = (struct pass_provider *)base;
    coffer_err rc = COFFER_OK;
    uint8_t salt[PASS_SALT_LEN];
    char salt_hex[2 * PASS_SALT_LEN + 1];
    unsigned long long ops = p->ops;
    size_t mem = p->mem;
    uint8_t *key = NULL;
    if (p->inner != NULL) {
        /* Attached before (it wrapped a keyring during a migration): the same parameters only. */
        if (stored.len > 0 &&
            (stored.len != p->params.len || memcmp(stored.ptr, p->params.data, stored.len) != 0)) {
            return coffer_fail(COFFER_ERR_CRYPTO, "wrong passphrase parameters for this keyring");
        }
        return coffer_buf_append_cur(params, coffer_buf_cursor(&p->params));
    }
    if (p->pass == NULL) {
        return coffer_fail(COFFER_ERR_INTERNAL, "the passphrase provider has no passphrase");
    }
    if (stored.len > 0) {
        TRY(stored_params(stored, salt, &ops, &mem));
    } else {
        TRY(crypto_random(salt, sizeof(salt)));
    }
    key = coffer_secret_alloc(SEAL_ROOT_KEY_LEN);
    if (key == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (crypto_pwhash(key, SEAL_ROOT_KEY_LEN, (const char *)p->pass, p->pass_len, salt, ops, mem,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "Argon2id needs %zu MiB of memory, which cannot be had", mem >> 20);
    }
    TRY_OUT(seal_provider_raw_new(coffer_cursor_from(key, SEAL_ROOT_KEY_LEN), &p->inner));
    coffer_hex_encode(salt, sizeof(salt), salt_hex);
    TRY_OUT(
        coffer_buf_printf(&p->params, "kdf=argon2id13\nsalt=%s\nops=%llu\nmem=%zu\n", salt_hex, ops, mem));
    TRY_OUT(coffer_buf_append_cur(params, coffer_buf_cursor(&p->params)));
out:
    coffer_secret_free(key, SEAL_ROOT_KEY_LEN);
    pass_forget(p); /* derived or not, it is not needed again */
    return rc;
}

static const struct seal_provider_vt pass_vt = {
    .vt_size = sizeof(struct seal_provider_vt),
    .name = "passphrase",
    .wrap = pp_wrap,
    .unwrap = pp_unwrap,
    .destroy = pp_destroy,
    .attach = pp_attach,
};

coffer_err seal_provider_passphrase_new(coffer_cursor passphrase, unsigned long long ops, size_t mem_bytes,
                                        struct seal_provider **out)
{
    ENSURE_REF(out);
    if (passphrase.len == 0 || passphrase.ptr == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "the passphrase is empty");
    }
    if (passphrase.len > PASS_MAX_LEN) {
        return coffer_fail(COFFER_ERR_CONFIG, "the passphrase is longer than %d bytes", PASS_MAX_LEN);
    }
    if (ops == 0) {
        ops = crypto_pwhash_OPSLIMIT_MODERATE;
    }
    if (mem_bytes == 0) {
        mem_bytes = crypto_pwhash_MEMLIMIT_MODERATE;
    }
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > PASS_OPS_MAX || mem_bytes < crypto_pwhash_MEMLIMIT_MIN ||
        mem_bytes > PASS_MEM_MAX) {
        return coffer_fail(COFFER_ERR_CONFIG, "Argon2id costs out of range (ops 1..%llu, mem 1..%zu MiB)",
                           PASS_OPS_MAX, PASS_MEM_MAX >> 20);
    }
    TRY(sodium_ready());
    struct pass_provider *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    p->pass = coffer_secret_alloc(passphrase.len);
    if (p->pass == NULL) {
        free(p);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    memcpy(p->pass, passphrase.ptr, passphrase.len);
    p->pass_len = passphrase.len;
    p->ops = ops;
    p->mem = mem_bytes;
    p->base.vt = &pass_vt;
    *out = &p->base;
    return COFFER_OK;
}
