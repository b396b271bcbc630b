/*
 * Raw AES keyring (raw-aes-keyring.md): wraps the data key with AES-GCM under a local key.
 * The EDK names the key through provider id = namespace and provider info = key name followed
 * by the tag length in bits, the IV length and the IV; the AAD is the serialized encryption
 * context, so a data key cannot be moved to a message with a different context.
 */
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "esdk/esdk_internal.h"

struct raw_aes {
    coffer_keyring base;
    coffer_buf ns;   /* provider id */
    coffer_buf name; /* key name, prefix of provider info */
    coffer_buf key;  /* secret wrapping key */
};

static coffer_err aes_wrap(struct raw_aes *k, coffer_enc_materials *m)
{
    coffer_err rc = COFFER_OK;
    coffer_buf aad = COFFER_BUF_INIT, info = COFFER_BUF_INIT, ct = COFFER_BUF_INIT;
    uint8_t iv[ESDK_IV_LEN];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

    if (!ctx) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    TRY_OUT(esdk_ec_serialize(m->ec, &aad));
    /* raw-aes-keyring.md §Key Provider Information: name, tag bits, IV length, IV */
    TRY_OUT(coffer_buf_append(&info, k->name.data, k->name.len));
    TRY_OUT(coffer_buf_append_u32be(&info, ESDK_TAG_LEN * 8));
    TRY_OUT(coffer_buf_append_u32be(&info, ESDK_IV_LEN));
    TRY_OUT(coffer_buf_append(&info, iv, sizeof(iv)));
    /* §Ciphertext: encrypted key followed by the tag */
    TRY_OUT(coffer_buf_reserve(&ct, m->data_key.len + ESDK_TAG_LEN));
    TRY_OUT(esdk_gcm_seal(ctx, k->key.data, k->key.len, iv, coffer_buf_cursor(&aad),
                          coffer_buf_cursor(&m->data_key), ct.data, ct.data + m->data_key.len));
    ct.len = m->data_key.len + ESDK_TAG_LEN;
    coffer_edk e = {k->ns.data, k->ns.len, info.data, info.len, ct.data, ct.len};
    TRY_OUT(esdk_enc_materials_add_edk(m, &e));
out:
    EVP_CIPHER_CTX_free(ctx);
    coffer_buf_free(&aad);
    coffer_buf_free(&info);
    coffer_buf_free(&ct);
    return rc;
}

static coffer_err aes_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct raw_aes *k = (struct raw_aes *)kr;
    TRY(esdk_enc_materials_fill_data_key(m));
    return aes_wrap(k, m);
}

/* Does this EDK name our key? Checks the provider id and the info layout exactly. */
static bool aes_edk_matches(const struct raw_aes *k, const coffer_edk *e, const uint8_t **iv)
{
    coffer_cursor c = coffer_cursor_from(e->provider_info, e->provider_info_len);
    coffer_cursor name;
    uint32_t tag_bits, iv_len;
    coffer_cursor ivc;

    if (!coffer_cursor_eq(coffer_cursor_from(e->provider_id, e->provider_id_len),
                          coffer_buf_cursor(&k->ns))) {
        return false;
    }
    if (cur_read_bytes(&c, k->name.len, &name) != COFFER_OK ||
        !coffer_cursor_eq(name, coffer_buf_cursor(&k->name)) || cur_read_u32be(&c, &tag_bits) != COFFER_OK ||
        cur_read_u32be(&c, &iv_len) != COFFER_OK || tag_bits != ESDK_TAG_LEN * 8 || iv_len != ESDK_IV_LEN ||
        cur_read_bytes(&c, ESDK_IV_LEN, &ivc) != COFFER_OK || c.len != 0) {
        return false;
    }
    *iv = ivc.ptr;
    return true;
}

static coffer_err aes_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                 size_t n)
{
    struct raw_aes *k = (struct raw_aes *)kr;
    coffer_err rc = COFFER_OK;
    coffer_buf aad = COFFER_BUF_INIT;
    uint8_t dk[ESDK_MAX_KEY_LEN];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

    if (!ctx) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(esdk_ec_serialize(m->ec, &aad));
    for (size_t i = 0; i < n; i++) {
        const uint8_t *iv;
        if (!aes_edk_matches(k, &edks[i], &iv) ||
            edks[i].ciphertext_len != m->suite->key_len + ESDK_TAG_LEN) {
            continue;
        }
        coffer_cursor ct = coffer_cursor_from(edks[i].ciphertext, m->suite->key_len);
        /* An EDK that does not open is skipped, not reported: the message may carry other EDKs
         * this or another keyring opens, and when none does the caller answers CannotDecrypt. */
        if (esdk_gcm_open(ctx, k->key.data, k->key.len, iv, coffer_buf_cursor(&aad), ct,
                          edks[i].ciphertext + m->suite->key_len, dk) == COFFER_OK) {
            TRY_OUT(esdk_dec_materials_set_data_key(m, dk, m->suite->key_len));
            break;
        }
    }
    coffer_clear_err(); /* a non-matching EDK is not an error */
out:
    coffer_secure_zero(dk, sizeof(dk));
    EVP_CIPHER_CTX_free(ctx);
    coffer_buf_free(&aad);
    return rc;
}

static void aes_destroy(coffer_keyring *kr)
{
    struct raw_aes *k = (struct raw_aes *)kr;
    coffer_buf_free(&k->ns);
    coffer_buf_free(&k->name);
    coffer_buf_free(&k->key);
    free(k);
}

ESDK_KEYRING_STATUS_METHODS(aes)

static const struct coffer_keyring_vt raw_aes_vt = {
    sizeof(struct coffer_keyring_vt), "raw-aes", aes_on_encrypt_status, aes_on_decrypt_status, aes_destroy,
};

coffer_keyring *coffer_keyring_raw_aes_new(const char *key_namespace, const char *key_name,
                                           const uint8_t *key, size_t key_len)
{
    if (!key_namespace || !key_name || !key || (key_len != 16 && key_len != 24 && key_len != 32) ||
        strlen(key_namespace) > UINT16_MAX || strlen(key_name) > UINT16_MAX - 20) {
        coffer_fail(COFFER_ERR_USAGE, "invalid raw AES keyring arguments");
        return NULL;
    }
    struct raw_aes *k = calloc(1, sizeof(*k));
    if (!k) {
        return NULL;
    }
    coffer_keyring_base_init(&k->base, &raw_aes_vt);
    if (coffer_buf_from(&k->ns, key_namespace, strlen(key_namespace), false) != COFFER_OK ||
        coffer_buf_from(&k->name, key_name, strlen(key_name), false) != COFFER_OK ||
        coffer_buf_from(&k->key, key, key_len, true) != COFFER_OK) {
        aes_destroy(&k->base);
        return NULL;
    }
    return &k->base;
}
