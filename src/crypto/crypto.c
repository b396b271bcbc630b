/*
 * OpenSSL wrappers (see crypto.h). The EVP cipher and MAC objects are fetched once and reused;
 * contexts are per call so every function is thread-safe without locks.
 */
#include "crypto/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/secret.h"

/*
 * Small random values (IVs, request ids, nonces, 256-bit keys) come from a per-thread pool that
 * one RAND_bytes call refills: OpenSSL 3's DRBG checks for a fork with getpid(2) on every call,
 * and a request draws two or three values, so each cost a system call. The pool holds DRBG output
 * not yet handed out, no more secret than the DRBG state itself: it lives in locked memory, every
 * byte is wiped as it is taken, and a fork discards every pool (a child must never hand out the
 * bytes its parent will also use). Larger requests go to the DRBG directly.
 */
#define CRYPTO_POOL_BYTES 4096
#define CRYPTO_POOL_MAX_TAKE 64

struct crypto_rand_pool {
    uint8_t *buf; /* CRYPTO_POOL_BYTES of locked memory, or NULL before the first use */
    size_t left;  /* unused bytes at the end of buf; the used ones before them are zero */
    unsigned gen; /* crypto_fork_gen when the pool was filled */
};

static _Thread_local struct crypto_rand_pool rand_pool;
static atomic_uint crypto_fork_gen;
static pthread_key_t rand_pool_key;
static bool rand_pool_key_ok;
static pthread_once_t rand_pool_once = PTHREAD_ONCE_INIT;

static void rand_pool_after_fork(void)
{
    atomic_fetch_add(&crypto_fork_gen, 1);
}

static void rand_pool_thread_exit(void *p)
{
    struct crypto_rand_pool *pool = p;
    coffer_secret_free(pool->buf, CRYPTO_POOL_BYTES);
    pool->buf = NULL;
    pool->left = 0;
}

static void rand_pool_init(void)
{
    rand_pool_key_ok = pthread_key_create(&rand_pool_key, rand_pool_thread_exit) == 0 &&
                       pthread_atfork(NULL, NULL, rand_pool_after_fork) == 0;
}

/* Hands out n bytes from this thread's pool; false when the pool cannot serve them. */
static bool rand_pool_take(uint8_t *out, size_t n)
{
    struct crypto_rand_pool *pool = &rand_pool;
    pthread_once(&rand_pool_once, rand_pool_init);
    if (!rand_pool_key_ok) {
        return false;
    }
    unsigned gen = atomic_load(&crypto_fork_gen);
    if (pool->buf == NULL) {
        pool->buf = coffer_secret_alloc(CRYPTO_POOL_BYTES);
        if (pool->buf == NULL || pthread_setspecific(rand_pool_key, pool) != 0) {
            coffer_secret_free(pool->buf, CRYPTO_POOL_BYTES);
            pool->buf = NULL;
            return false;
        }
        pool->left = 0;
    }
    if (pool->gen != gen) {
        coffer_secure_zero(pool->buf, CRYPTO_POOL_BYTES); /* filled before a fork: never used */
        pool->left = 0;
    }
    if (pool->left < n) {
        if (RAND_bytes(pool->buf, CRYPTO_POOL_BYTES) != 1) {
            coffer_secure_zero(pool->buf, CRYPTO_POOL_BYTES);
            pool->left = 0;
            return false;
        }
        pool->left = CRYPTO_POOL_BYTES;
        pool->gen = gen;
    }
    uint8_t *src = pool->buf + CRYPTO_POOL_BYTES - pool->left;
    memcpy(out, src, n);
    coffer_secure_zero(src, n);
    pool->left -= n;
    return true;
}

coffer_err crypto_random(void *out, size_t n)
{
    if (n == 0 || (n <= CRYPTO_POOL_MAX_TAKE && rand_pool_take(out, n))) {
        return COFFER_OK;
    }
    if (RAND_bytes(out, (int)n) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "random generator failure");
    }
    return COFFER_OK;
}

static void uuid_format(uint8_t b[16], char out[CRYPTO_UUID_STR_LEN + 1])
{
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char hex[33];
    coffer_hex_encode(b, 16, hex);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
}

coffer_err crypto_uuid_v4_many(char (*out)[CRYPTO_UUID_STR_LEN + 1], size_t n)
{
    uint8_t b[8 * 16];
    if (n > 8) {
        return coffer_fail(COFFER_ERR_USAGE, "too many UUIDs at once");
    }
    TRY(crypto_random(b, n * 16));
    for (size_t i = 0; i < n; i++) {
        uuid_format(b + 16 * i, out[i]);
    }
    return COFFER_OK;
}

coffer_err crypto_uuid_v4(char out[CRYPTO_UUID_STR_LEN + 1])
{
    return crypto_uuid_v4_many((char(*)[CRYPTO_UUID_STR_LEN + 1]) out, 1);
}

/*
 * Hot path: every request hashes its body, its canonical request and its audit line, and signs
 * once. The implicit-fetch one-shot APIs (SHA256(), HMAC()) look the algorithm up in the
 * provider store on every call; here the algorithms are fetched once per process and each
 * thread keeps its own contexts, released by a pthread key destructor at thread exit.
 */
static EVP_MD *fetched_md[CRYPTO_DIGEST_COUNT];
static EVP_MAC *fetched_hmac;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

struct crypto_thread_ctx {
    EVP_MD_CTX *md;
    EVP_MAC_CTX *mac[CRYPTO_DIGEST_COUNT]; /* digest parameter set once per digest */
    /* crypto_hmac_sha256_reuse: a context keyed with reuse_key (a locked block of
     * CRYPTO_HMAC_REUSE_KEY_MAX bytes, reuse_len of them the key; 0: not keyed). */
    EVP_MAC_CTX *reuse;
    uint8_t *reuse_key;
    size_t reuse_len;
};

static void crypto_thread_ctx_free(void *p)
{
    struct crypto_thread_ctx *t = p;
    EVP_MD_CTX_free(t->md);
    for (int i = 0; i < CRYPTO_DIGEST_COUNT; i++) {
        EVP_MAC_CTX_free(t->mac[i]);
    }
    EVP_MAC_CTX_free(t->reuse);
    coffer_secret_free(t->reuse_key, CRYPTO_HMAC_REUSE_KEY_MAX);
    free(t);
}

static void crypto_fetch_all(void)
{
    fetched_md[CRYPTO_SHA256] = EVP_MD_fetch(NULL, "SHA256", NULL);
    fetched_md[CRYPTO_SHA384] = EVP_MD_fetch(NULL, "SHA384", NULL);
    fetched_md[CRYPTO_SHA512] = EVP_MD_fetch(NULL, "SHA512", NULL);
    fetched_md[CRYPTO_SHA224] = EVP_MD_fetch(NULL, "SHA224", NULL);
    fetched_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    pthread_key_create(&ctx_key, crypto_thread_ctx_free);
}

static struct crypto_thread_ctx *crypto_thread_ctx(void)
{
    pthread_once(&fetch_once, crypto_fetch_all);
    struct crypto_thread_ctx *t = pthread_getspecific(ctx_key);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL) {
            return NULL;
        }
        t->md = EVP_MD_CTX_new();
        pthread_setspecific(ctx_key, t);
    }
    return t;
}

void crypto_sha256(const void *p, size_t n, uint8_t out[CRYPTO_SHA256_LEN])
{
    struct crypto_thread_ctx *t = crypto_thread_ctx();
    unsigned int len = 0;
    if (t != NULL && t->md != NULL && fetched_md[CRYPTO_SHA256] != NULL &&
        EVP_DigestInit_ex2(t->md, fetched_md[CRYPTO_SHA256], NULL) == 1 &&
        EVP_DigestUpdate(t->md, p, n) == 1 && EVP_DigestFinal_ex(t->md, out, &len) == 1) {
        return;
    }
    SHA256(p, n, out); /* allocation failure above: the slow path still gives the right answer */
}

coffer_err crypto_digest(enum crypto_digest d, coffer_cursor msg, uint8_t *out)
{
    struct crypto_thread_ctx *t = crypto_thread_ctx();
    unsigned int len = 0;
    if (t == NULL || t->md == NULL || fetched_md[d] == NULL ||
        EVP_DigestInit_ex2(t->md, fetched_md[d], NULL) != 1 ||
        EVP_DigestUpdate(t->md, msg.ptr, msg.len) != 1 || EVP_DigestFinal_ex(t->md, out, &len) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "digest failed");
    }
    return COFFER_OK;
}

size_t crypto_digest_len(enum crypto_digest d)
{
    switch (d) {
    case CRYPTO_SHA224:
        return 28;
    case CRYPTO_SHA384:
        return 48;
    case CRYPTO_SHA512:
        return 64;
    default:
        return 32;
    }
}

static const char *digest_name(enum crypto_digest d)
{
    switch (d) {
    case CRYPTO_SHA224:
        return "SHA224";
    case CRYPTO_SHA384:
        return "SHA384";
    case CRYPTO_SHA512:
        return "SHA512";
    default:
        return "SHA256";
    }
}

coffer_err crypto_hmac(enum crypto_digest d, coffer_cursor key, coffer_cursor msg, uint8_t *out)
{
    static const uint8_t empty = 0;
    struct crypto_thread_ctx *t = crypto_thread_ctx();
    if (t == NULL || fetched_hmac == NULL || (unsigned)d >= CRYPTO_DIGEST_COUNT) {
        return coffer_fail(COFFER_ERR_CRYPTO, "HMAC unavailable");
    }
    if (t->mac[d] == NULL) {
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest_name(d), 0),
            OSSL_PARAM_construct_end(),
        };
        t->mac[d] = EVP_MAC_CTX_new(fetched_hmac);
        if (t->mac[d] == NULL || EVP_MAC_CTX_set_params(t->mac[d], params) != 1) {
            EVP_MAC_CTX_free(t->mac[d]);
            t->mac[d] = NULL;
            return coffer_fail(COFFER_ERR_CRYPTO, "HMAC unavailable");
        }
    }
    size_t len = 0;
    if (EVP_MAC_init(t->mac[d], key.len ? key.ptr : &empty, key.len, NULL) != 1 ||
        EVP_MAC_update(t->mac[d], msg.len ? msg.ptr : &empty, msg.len) != 1 ||
        EVP_MAC_final(t->mac[d], out, &len, crypto_digest_len(d)) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "HMAC failure");
    }
    return COFFER_OK;
}

coffer_err crypto_hmac_sha256_reuse(coffer_cursor key, coffer_cursor msg, uint8_t out[CRYPTO_SHA256_LEN])
{
    static const uint8_t empty = 0;
    struct crypto_thread_ctx *t = crypto_thread_ctx();
    if (t == NULL || fetched_hmac == NULL || key.len == 0 || key.len > CRYPTO_HMAC_REUSE_KEY_MAX) {
        return crypto_hmac(CRYPTO_SHA256, key, msg, out);
    }
    if (t->reuse == NULL) {
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest_name(CRYPTO_SHA256), 0),
            OSSL_PARAM_construct_end(),
        };
        t->reuse = EVP_MAC_CTX_new(fetched_hmac);
        t->reuse_key = coffer_secret_alloc(CRYPTO_HMAC_REUSE_KEY_MAX);
        if (t->reuse == NULL || t->reuse_key == NULL || EVP_MAC_CTX_set_params(t->reuse, params) != 1) {
            EVP_MAC_CTX_free(t->reuse);
            coffer_secret_free(t->reuse_key, CRYPTO_HMAC_REUSE_KEY_MAX);
            t->reuse = NULL;
            t->reuse_key = NULL;
            return crypto_hmac(CRYPTO_SHA256, key, msg, out);
        }
        t->reuse_len = 0;
    }
    /* A NULL key re-initialises the context from the schedule of the key it was last given. */
    bool same = t->reuse_len == key.len && CRYPTO_memcmp(t->reuse_key, key.ptr, key.len) == 0;
    t->reuse_len = 0; /* until the context is keyed again */
    size_t len = 0;
    if (EVP_MAC_init(t->reuse, same ? NULL : key.ptr, same ? 0 : key.len, NULL) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "HMAC failure");
    }
    memcpy(t->reuse_key, key.ptr, key.len);
    t->reuse_len = key.len;
    if (EVP_MAC_update(t->reuse, msg.len ? msg.ptr : &empty, msg.len) != 1 ||
        EVP_MAC_final(t->reuse, out, &len, CRYPTO_SHA256_LEN) != 1) {
        return coffer_fail(COFFER_ERR_CRYPTO, "HMAC failure");
    }
    return COFFER_OK;
}

coffer_err crypto_hkdf(enum crypto_digest d, coffer_cursor ikm, coffer_cursor salt, coffer_cursor info,
                       uint8_t *out, size_t out_len)
{
    coffer_err rc = COFFER_OK;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    uint8_t zero_salt[64] = {0};
    if (ctx == NULL) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "HKDF unavailable");
    }
    OSSL_PARAM params[5];
    size_t np = 0;
    params[np++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest_name(d), 0);
    params[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                     (void *)(ikm.len ? ikm.ptr : zero_salt), ikm.len);
    if (salt.len) {
        params[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt.ptr, salt.len);
    } else {
        params[np++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, zero_salt, crypto_digest_len(d));
    }
    params[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                     (void *)(info.len ? info.ptr : zero_salt), info.len);
    params[np] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, out, out_len, params) != 1) {
        coffer_secure_zero(out, out_len);
        FAIL_OUT(COFFER_ERR_CRYPTO, "HKDF failure");
    }
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* Fetched once like the digests: EVP_aes_*_gcm() would make every EncryptInit look the
 * implementation up in the provider store again. The legacy objects are the fallback when a
 * fetch fails. */
static EVP_CIPHER *fetched_gcm[3];
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;

static void gcm_fetch_all(void)
{
    fetched_gcm[0] = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    fetched_gcm[1] = EVP_CIPHER_fetch(NULL, "AES-192-GCM", NULL);
    fetched_gcm[2] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *gcm_cipher(size_t key_len)
{
    pthread_once(&gcm_once, gcm_fetch_all);
    switch (key_len) {
    case 16:
        return fetched_gcm[0] ? fetched_gcm[0] : EVP_aes_128_gcm();
    case 24:
        return fetched_gcm[1] ? fetched_gcm[1] : EVP_aes_192_gcm();
    case 32:
        return fetched_gcm[2] ? fetched_gcm[2] : EVP_aes_256_gcm();
    default:
        return NULL;
    }
}

coffer_err crypto_aes_gcm_seal(coffer_cursor key, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                               coffer_cursor plaintext, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    const EVP_CIPHER *cipher = gcm_cipher(key.len);
    EVP_CIPHER_CTX *ctx = NULL;
    int n = 0;
    size_t start = out->len;
    if (cipher == NULL) {
        return coffer_fail(COFFER_ERR_CRYPTO, "bad AES key length");
    }
    TRY_OUT(coffer_buf_reserve(out, plaintext.len + CRYPTO_AES_GCM_TAG_LEN));
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, cipher, NULL, key.ptr, iv) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "cipher init failure");
    }
    if (aad.len && EVP_EncryptUpdate(ctx, NULL, &n, aad.ptr, (int)aad.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "cipher failure");
    }
    if (plaintext.len &&
        EVP_EncryptUpdate(ctx, out->data + out->len, &n, plaintext.ptr, (int)plaintext.len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "cipher failure");
    }
    out->len += plaintext.len;
    if (EVP_EncryptFinal_ex(ctx, out->data + out->len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_AES_GCM_TAG_LEN, out->data + out->len) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "cipher failure");
    }
    out->len += CRYPTO_AES_GCM_TAG_LEN;
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

coffer_err crypto_aes_gcm_open(coffer_cursor key, const uint8_t iv[CRYPTO_AES_GCM_IV_LEN], coffer_cursor aad,
                               coffer_cursor ct, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    const EVP_CIPHER *cipher = gcm_cipher(key.len);
    EVP_CIPHER_CTX *ctx = NULL;
    int n = 0;
    size_t start = out->len;
    if (cipher == NULL) {
        return coffer_fail(COFFER_ERR_CRYPTO, "bad AES key length");
    }
    if (ct.len < CRYPTO_AES_GCM_TAG_LEN) {
        return coffer_fail(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    size_t body = ct.len - CRYPTO_AES_GCM_TAG_LEN;
    TRY_OUT(coffer_buf_reserve(out, body + 16));
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_DecryptInit_ex(ctx, cipher, NULL, key.ptr, iv) != 1) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "cipher init failure");
    }
    if (aad.len && EVP_DecryptUpdate(ctx, NULL, &n, aad.ptr, (int)aad.len) != 1) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    if (body && EVP_DecryptUpdate(ctx, out->data + out->len, &n, ct.ptr, (int)body) != 1) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_AES_GCM_TAG_LEN, (void *)(ct.ptr + body)) !=
            1 ||
        EVP_DecryptFinal_ex(ctx, out->data + out->len + body, &n) != 1) {
        FAIL_OUT(COFFER_ERR_INVALID_CIPHERTEXT, "%s", "");
    }
    out->len += body;
out:
    if (rc != COFFER_OK) {
        /* Never leave unauthenticated plaintext in the caller's buffer. */
        if (out->data != NULL) {
            coffer_secure_zero(out->data + start, out->cap - start);
        }
        out->len = start;
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int crypto_memcmp(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n);
}
