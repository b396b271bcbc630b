/*
 * The PKCS#11 root key provider: the root key is an AES key inside a token (an HSM, or SoftHSM),
 * created non-extractable and sensitive, and the token itself wraps and unwraps the barrier
 * keyring with CKM_AES_GCM: the root key never exists in this process's memory, only the keyring
 * it unwraps at start does. The module named in the configuration is loaded with dlopen, so any
 * vendor's module works the same way; only the OASIS PKCS#11 2.40 interface is used.
 *
 *   wrapped = version(1) || iv(12) || AES-GCM ciphertext || tag(16),  AAD = version || aad
 *
 * Every step that can fail at start (module, token, PIN, key) fails with one line that names it.
 * The token plumbing (module, session, login, keys, AES-GCM) is hsm/hsm.h's, shared with the
 * KMS custom key stores; one session is enough here (calls only happen at start, on rotation,
 * and on a keyring reload).
 */
#include "seal/seal_provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/secret.h"
#include "crypto/crypto.h"
#include "hsm/hsm.h"

#define P11_WRAP_VERSION 1
#define P11_IV_LEN HSM_GCM_IV_LEN
#define P11_TAG_LEN HSM_GCM_TAG_LEN

struct p11_provider {
    struct seal_provider base;
    hsm_token *tok;
    hsm_object key;
    char token[HSM_LABEL_MAX];
    char key_label[HSM_LABEL_MAX];
    char module[1024];
};

/* ---------------------------------------------------------------------------------------------
 * Wrap / unwrap, in the token
 * ------------------------------------------------------------------------------------------- */

/* Fails with `code` and hsm's last message between `before` and `after` (copied first: the
 * message lives in the buffer coffer_fail writes). */
static coffer_err refail(coffer_err code, const char *before, const char *after)
{
    char why[512];
    snprintf(why, sizeof(why), "%s", coffer_last_message());
    return coffer_fail(code, "%s%s%s", before, why, after);
}

static coffer_err full_aad(coffer_cursor aad, coffer_buf *out)
{
    TRY(coffer_buf_append_u8(out, P11_WRAP_VERSION));
    return coffer_buf_append_cur(out, aad);
}

static coffer_err p11_wrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor plaintext,
                           coffer_buf *out)
{
    struct p11_provider *p = (struct p11_provider *)base;
    coffer_err rc = COFFER_OK;
    coffer_buf a = COFFER_BUF_INIT;
    uint8_t iv[P11_IV_LEN];
    size_t start = out->len;
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    TRY_OUT(full_aad(aad, &a));
    TRY_OUT(coffer_buf_append_u8(out, P11_WRAP_VERSION));
    TRY_OUT(coffer_buf_append(out, iv, sizeof(iv)));
    if (hsm_gcm_encrypt(p->tok, p->key, iv, coffer_buf_cursor(&a), plaintext, out) != COFFER_OK) {
        rc = refail(COFFER_ERR_CRYPTO, "the token cannot wrap the keyring: ", "");
        goto out;
    }
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    coffer_buf_free(&a);
    return rc;
}

static coffer_err p11_unwrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor wrapped,
                             coffer_buf *out)
{
    struct p11_provider *p = (struct p11_provider *)base;
    coffer_err rc = COFFER_OK;
    coffer_buf a = COFFER_BUF_INIT;
    coffer_cursor c = wrapped, iv;
    uint8_t version = 0;
    if (cur_read_u8(&c, &version) != COFFER_OK || version != P11_WRAP_VERSION ||
        cur_read_bytes(&c, P11_IV_LEN, &iv) != COFFER_OK || c.len < P11_TAG_LEN) {
        FAIL_OUT(COFFER_ERR_CRYPTO,
                 "the PKCS#11 key cannot unwrap the barrier keyring (not wrapped by a token)");
    }
    TRY_OUT(full_aad(aad, &a));
    if (hsm_gcm_decrypt(p->tok, p->key, iv.ptr, coffer_buf_cursor(&a), c, out) != COFFER_OK) {
        rc = refail(COFFER_ERR_CRYPTO, "",
                    " (the key in the token cannot unwrap the barrier keyring: another key wrapped it?)");
        goto out;
    }
out:
    coffer_buf_free(&a);
    return rc;
}

/* Parameters kept for `coffer seal status` and to name the expected key when another is given. */
static coffer_err p11_attach(struct seal_provider *base, coffer_cursor stored, coffer_buf *params)
{
    struct p11_provider *p = (struct p11_provider *)base;
    char label[HSM_LABEL_MAX], token[HSM_LABEL_MAX];
    if (stored.len > 0 && seal_param_get(stored, "key", label, sizeof(label)) == COFFER_OK &&
        seal_param_get(stored, "token", token, sizeof(token)) == COFFER_OK &&
        (strcmp(label, p->key_label) != 0 || strcmp(token, p->token) != 0)) {
        return coffer_fail(
            COFFER_ERR_CONFIG,
            "the data dir is sealed by PKCS#11 key '%s' in token '%s', not key '%s' in token '%s'", label,
            token, p->key_label, p->token);
    }
    return coffer_buf_printf(params, "mechanism=CKM_AES_GCM\nmodule=%s\ntoken=%s\nkey=%s\n", p->module,
                             p->token, p->key_label);
}

static void p11_destroy(struct seal_provider *base)
{
    struct p11_provider *p = (struct p11_provider *)base;
    hsm_token_free(p->tok);
    free(p);
}

static const struct seal_provider_vt p11_vt = {
    .vt_size = sizeof(struct seal_provider_vt),
    .name = "pkcs11",
    .wrap = p11_wrap,
    .unwrap = p11_unwrap,
    .destroy = p11_destroy,
    .attach = p11_attach,
};

/* ---------------------------------------------------------------------------------------------
 * Opening: module, token, login, key
 * ------------------------------------------------------------------------------------------- */

static coffer_err find_key(struct p11_provider *p, const char *label, bool create)
{
    coffer_err rc = hsm_aes_find(p->tok, label, &p->key);
    if (rc == COFFER_ERR_NOT_FOUND && create) {
        if (hsm_aes_generate(p->tok, label, &p->key) != COFFER_OK) {
            return refail(COFFER_ERR_CONFIG, "", " (the root key)");
        }
        log_info("seal: generated AES-256 key '%s' in PKCS#11 token '%s' (non-extractable, sensitive)", label,
                 p->token);
    } else if (rc == COFFER_ERR_NOT_FOUND) {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "PKCS#11: token '%s' holds no AES key labelled '%s' (add create=yes to make one)",
                           p->token, label);
    } else if (rc != COFFER_OK) {
        return refail(COFFER_ERR_CONFIG, "", "");
    }
    /* A root key that can leave the token is not one the token protects: say so, once. */
    bool extractable = false, sensitive = true;
    if (hsm_aes_protection(p->tok, p->key, &extractable, &sensitive) == COFFER_OK &&
        (extractable || !sensitive)) {
        log_warn("seal: PKCS#11 key '%s' in token '%s' is %s: its value can leave the token", label, p->token,
                 extractable ? "extractable" : "not sensitive");
    }
    return COFFER_OK;
}

coffer_err seal_provider_pkcs11_open(const struct seal_pkcs11_config *cfg, struct seal_provider **out)
{
    ENSURE_REF(cfg);
    ENSURE_REF(out);
    coffer_err rc = COFFER_OK;
    if (cfg->module == NULL || cfg->module[0] == '\0' || cfg->pin == NULL || cfg->key_label == NULL ||
        cfg->key_label[0] == '\0' || strlen(cfg->key_label) >= HSM_LABEL_MAX) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11 needs a module path, a PIN and a key label");
    }
    struct p11_provider *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    p->base.vt = &p11_vt;
    snprintf(p->key_label, sizeof(p->key_label), "%s", cfg->key_label);
    if (strlen(cfg->module) >= sizeof(p->module) || strchr(cfg->module, '\n') != NULL ||
        strchr(cfg->key_label, '\n') != NULL) {
        FAIL_OUT(COFFER_ERR_CONFIG, "PKCS#11: the module path or key label is too long or holds a newline");
    }
    snprintf(p->module, sizeof(p->module), "%s", cfg->module);
    struct hsm_token_config tc = {
        .module = cfg->module, .token = cfg->token, .slot = cfg->slot, .sessions = 1};
    TRY_OUT(hsm_token_open(&tc, coffer_cursor_from_str(cfg->pin), &p->tok, NULL));
    snprintf(p->token, sizeof(p->token), "%s", hsm_token_label(p->tok));
    TRY_OUT(find_key(p, cfg->key_label, cfg->create_key));
    log_info("seal: root key '%s' in PKCS#11 token '%s' (module %s)", p->key_label, p->token, cfg->module);
    *out = &p->base;
    p = NULL;
out:
    if (p != NULL) {
        p11_destroy(&p->base);
    }
    return rc;
}
