/*
 * Raw RSA keyring (raw-rsa-keyring.md): wraps the data key with a local RSA key using
 * PKCS#1 v1.5 or OAEP. Provider id = namespace, provider info = key name. The encryption
 * context is not bound here (RSA wrapping has no AAD); the message header tag covers it.
 */
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "esdk/esdk_internal.h"

struct raw_rsa {
    coffer_keyring base;
    coffer_buf ns;
    coffer_buf name;
    EVP_PKEY *pub;  /* may be NULL */
    EVP_PKEY *priv; /* may be NULL */
    coffer_rsa_padding pad;
};

static coffer_err rsa_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct raw_rsa *k = (struct raw_rsa *)kr;
    coffer_buf ct = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;
    EVP_PKEY *key = k->pub ? k->pub : k->priv;

    if (!key) {
        return coffer_fail(COFFER_ERR_KEYRING, "raw RSA keyring has no public key");
    }
    TRY_OUT(esdk_enc_materials_fill_data_key(m));
    TRY_OUT(esdk_rsa_wrap(key, k->pad, coffer_buf_cursor(&m->data_key), &ct));
    coffer_edk e = {k->ns.data, k->ns.len, k->name.data, k->name.len, ct.data, ct.len};
    TRY_OUT(esdk_enc_materials_add_edk(m, &e));
out:
    coffer_buf_free(&ct);
    return rc;
}

static coffer_err rsa_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                 size_t n)
{
    struct raw_rsa *k = (struct raw_rsa *)kr;
    coffer_err rc = COFFER_OK;
    coffer_buf dk = COFFER_SECRET_BUF_INIT;

    if (!k->priv) {
        return COFFER_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (!coffer_cursor_eq(coffer_cursor_from(edks[i].provider_id, edks[i].provider_id_len),
                              coffer_buf_cursor(&k->ns)) ||
            !coffer_cursor_eq(coffer_cursor_from(edks[i].provider_info, edks[i].provider_info_len),
                              coffer_buf_cursor(&k->name))) {
            continue;
        }
        coffer_buf_reset(&dk);
        /* An EDK that does not unwrap is skipped, not reported: the message may carry other EDKs
         * this or another keyring opens, and when none does the caller answers CannotDecrypt. */
        if (esdk_rsa_unwrap(k->priv, k->pad, coffer_cursor_from(edks[i].ciphertext, edks[i].ciphertext_len),
                            &dk) == COFFER_OK &&
            dk.len == m->suite->key_len) {
            rc = esdk_dec_materials_set_data_key(m, dk.data, dk.len);
            break;
        }
    }
    if (rc == COFFER_OK) {
        coffer_clear_err();
    }
    coffer_buf_free(&dk);
    return rc;
}

static void rsa_destroy(coffer_keyring *kr)
{
    struct raw_rsa *k = (struct raw_rsa *)kr;
    coffer_buf_free(&k->ns);
    coffer_buf_free(&k->name);
    EVP_PKEY_free(k->pub);
    EVP_PKEY_free(k->priv);
    free(k);
}

ESDK_KEYRING_STATUS_METHODS(rsa)

static const struct coffer_keyring_vt raw_rsa_vt = {
    sizeof(struct coffer_keyring_vt), "raw-rsa", rsa_on_encrypt_status, rsa_on_decrypt_status, rsa_destroy,
};

static EVP_PKEY *pem_load(const char *pem, bool private_key)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = NULL;
    if (!b) {
        return NULL;
    }
    k = private_key ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

coffer_keyring *coffer_keyring_raw_rsa_new(const char *key_namespace, const char *key_name,
                                           const char *public_pem, const char *private_pem,
                                           coffer_rsa_padding padding)
{
    if (!key_namespace || !key_name || (!public_pem && !private_pem) || padding < COFFER_RSA_PKCS1 ||
        padding > COFFER_RSA_OAEP_SHA512_MGF1 || strlen(key_namespace) > UINT16_MAX ||
        strlen(key_name) > UINT16_MAX) {
        coffer_fail(COFFER_ERR_USAGE, "invalid raw RSA keyring arguments");
        return NULL;
    }
    struct raw_rsa *k = calloc(1, sizeof(*k));
    if (!k) {
        return NULL;
    }
    coffer_keyring_base_init(&k->base, &raw_rsa_vt);
    k->pad = padding;
    if (coffer_buf_from(&k->ns, key_namespace, strlen(key_namespace), false) != COFFER_OK ||
        coffer_buf_from(&k->name, key_name, strlen(key_name), false) != COFFER_OK) {
        goto fail;
    }
    if (public_pem && !(k->pub = pem_load(public_pem, false))) {
        goto fail;
    }
    if (private_pem && !(k->priv = pem_load(private_pem, true))) {
        goto fail;
    }
    return &k->base;
fail:
    coffer_fail(COFFER_ERR_USAGE, "invalid RSA key");
    rsa_destroy(&k->base);
    return NULL;
}
