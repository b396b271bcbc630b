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
 * A PKCS#11 session is not safe for concurrent use, so calls go one at a time (they only happen
 * at start, on rotation, and on a keyring reload).
 */
#include "seal/seal_provider.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "common/log.h"
#include "common/secret.h"
#include "crypto/crypto.h"

#define P11_WRAP_VERSION 1
#define P11_IV_LEN 12
#define P11_TAG_LEN 16
#define P11_LABEL_MAX 128
#define P11_MAX_SLOTS 256

struct p11_provider {
    struct seal_provider base;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool initialized; /* this provider holds a reference on the module's C_Initialize */
    CK_SESSION_HANDLE session;
    bool have_session;
    CK_OBJECT_HANDLE key;
    pthread_mutex_t mu;
    char token[P11_LABEL_MAX];
    char key_label[P11_LABEL_MAX];
    char module[1024];
};

/* ---------------------------------------------------------------------------------------------
 * One C_Initialize per module per process: two providers on one module (a migration between
 * two keys of one token) share it, and the last one out calls C_Finalize.
 * ------------------------------------------------------------------------------------------- */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    CK_FUNCTION_LIST_PTR f;
    int refs;
    bool owned; /* our C_Initialize made it: ours to C_Finalize */
} inits[8];

static CK_RV module_init(CK_FUNCTION_LIST_PTR f)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&init_mu);
    size_t free_slot = sizeof(inits) / sizeof(inits[0]);
    for (size_t i = 0; i < sizeof(inits) / sizeof(inits[0]); i++) {
        if (inits[i].f == f) {
            inits[i].refs++;
            goto out;
        }
        if (inits[i].f == NULL && free_slot == sizeof(inits) / sizeof(inits[0])) {
            free_slot = i;
        }
    }
    if (free_slot == sizeof(inits) / sizeof(inits[0])) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    rv = f->C_Initialize(&args);
    bool owned = rv == CKR_OK;
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        rv = CKR_OK; /* by someone else in the process: theirs to finalize */
    }
    if (rv == CKR_OK) {
        inits[free_slot].f = f;
        inits[free_slot].refs = 1;
        inits[free_slot].owned = owned;
    }
out:
    pthread_mutex_unlock(&init_mu);
    return rv;
}

static void module_fini(CK_FUNCTION_LIST_PTR f)
{
    pthread_mutex_lock(&init_mu);
    for (size_t i = 0; i < sizeof(inits) / sizeof(inits[0]); i++) {
        if (inits[i].f == f && --inits[i].refs == 0) {
            inits[i].f = NULL;
            if (inits[i].owned) {
                f->C_Finalize(NULL);
            }
        }
    }
    pthread_mutex_unlock(&init_mu);
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

static const char *rv_name(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case CKR_HOST_MEMORY:
        return "CKR_HOST_MEMORY";
    case CKR_SLOT_ID_INVALID:
        return "CKR_SLOT_ID_INVALID";
    case CKR_GENERAL_ERROR:
        return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED:
        return "CKR_FUNCTION_FAILED";
    case CKR_ARGUMENTS_BAD:
        return "CKR_ARGUMENTS_BAD";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_REMOVED:
        return "CKR_DEVICE_REMOVED";
    case CKR_ENCRYPTED_DATA_INVALID:
        return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
        return "CKR_ENCRYPTED_DATA_LEN_RANGE";
    case CKR_KEY_HANDLE_INVALID:
        return "CKR_KEY_HANDLE_INVALID";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID:
        return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_PIN_LEN_RANGE:
        return "CKR_PIN_LEN_RANGE";
    case CKR_SESSION_HANDLE_INVALID:
        return "CKR_SESSION_HANDLE_INVALID";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_NOT_RECOGNIZED:
        return "CKR_TOKEN_NOT_RECOGNIZED";
    case CKR_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_BUFFER_TOO_SMALL:
        return "CKR_BUFFER_TOO_SMALL";
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return "CKR_CRYPTOKI_NOT_INITIALIZED";
    case CKR_TEMPLATE_INCONSISTENT:
        return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_ATTRIBUTE_VALUE_INVALID:
        return "CKR_ATTRIBUTE_VALUE_INVALID";
    default:
        return "a PKCS#11 error";
    }
}

static coffer_err p11_fail(coffer_err code, CK_RV rv, const char *what)
{
    return coffer_fail(code, "PKCS#11: %s (%s, 0x%lx)", what, rv_name(rv), (unsigned long)rv);
}

/* ---------------------------------------------------------------------------------------------
 * Wrap / unwrap, in the token
 * ------------------------------------------------------------------------------------------- */

static coffer_err full_aad(coffer_cursor aad, coffer_buf *out)
{
    TRY(coffer_buf_append_u8(out, P11_WRAP_VERSION));
    return coffer_buf_append_cur(out, aad);
}

static CK_MECHANISM gcm_mechanism(CK_GCM_PARAMS *params, uint8_t *iv, coffer_buf *aad)
{
    *params = (CK_GCM_PARAMS){
        .pIv = iv,
        .ulIvLen = P11_IV_LEN,
        .ulIvBits = P11_IV_LEN * 8,
        .pAAD = aad->data,
        .ulAADLen = aad->len,
        .ulTagBits = P11_TAG_LEN * 8,
    };
    return (CK_MECHANISM){.mechanism = CKM_AES_GCM, .pParameter = params, .ulParameterLen = sizeof(*params)};
}

static coffer_err p11_wrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor plaintext,
                           coffer_buf *out)
{
    struct p11_provider *p = (struct p11_provider *)base;
    coffer_err rc = COFFER_OK;
    coffer_buf a = COFFER_BUF_INIT;
    uint8_t iv[P11_IV_LEN];
    CK_GCM_PARAMS params;
    size_t start = out->len;
    CK_RV rv;
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    TRY_OUT(full_aad(aad, &a));
    TRY_OUT(coffer_buf_append_u8(out, P11_WRAP_VERSION));
    TRY_OUT(coffer_buf_append(out, iv, sizeof(iv)));
    TRY_OUT(coffer_buf_reserve(out, plaintext.len + P11_TAG_LEN));
    CK_MECHANISM mech = gcm_mechanism(&params, iv, &a);
    CK_ULONG n = (CK_ULONG)(out->cap - out->len);
    pthread_mutex_lock(&p->mu);
    rv = p->f->C_EncryptInit(p->session, &mech, p->key);
    if (rv == CKR_OK) {
        rv = p->f->C_Encrypt(p->session, (CK_BYTE_PTR)plaintext.ptr, plaintext.len, out->data + out->len, &n);
    }
    pthread_mutex_unlock(&p->mu);
    if (rv != CKR_OK) {
        rc = p11_fail(COFFER_ERR_CRYPTO, rv, "the token cannot wrap the keyring");
        goto out;
    }
    if (n != plaintext.len + P11_TAG_LEN) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "PKCS#11: the token's AES-GCM output has an unexpected length");
    }
    out->len += n;
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
    uint8_t version = 0, iv_copy[P11_IV_LEN];
    CK_GCM_PARAMS params;
    size_t start = out->len;
    CK_RV rv;
    if (cur_read_u8(&c, &version) != COFFER_OK || version != P11_WRAP_VERSION ||
        cur_read_bytes(&c, P11_IV_LEN, &iv) != COFFER_OK || c.len < P11_TAG_LEN) {
        FAIL_OUT(COFFER_ERR_CRYPTO,
                 "the PKCS#11 key cannot unwrap the barrier keyring (not wrapped by a token)");
    }
    memcpy(iv_copy, iv.ptr, P11_IV_LEN);
    TRY_OUT(full_aad(aad, &a));
    /* Room for the whole input: some modules want the output buffer as long as the ciphertext. */
    TRY_OUT(coffer_buf_reserve(out, c.len));
    CK_MECHANISM mech = gcm_mechanism(&params, iv_copy, &a);
    CK_ULONG n = (CK_ULONG)(out->cap - out->len);
    pthread_mutex_lock(&p->mu);
    rv = p->f->C_DecryptInit(p->session, &mech, p->key);
    if (rv == CKR_OK) {
        rv = p->f->C_Decrypt(p->session, (CK_BYTE_PTR)c.ptr, c.len, out->data + out->len, &n);
    }
    pthread_mutex_unlock(&p->mu);
    if (rv != CKR_OK || n != c.len - P11_TAG_LEN) {
        coffer_secure_zero(out->data + out->len, out->cap - out->len);
        rc = p11_fail(COFFER_ERR_CRYPTO, rv,
                      "the key in the token cannot unwrap the barrier keyring (another key wrapped it?)");
        goto out;
    }
    out->len += n;
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    coffer_buf_free(&a);
    return rc;
}

/* Parameters kept for `coffer seal status` and to name the expected key when another is given. */
static coffer_err p11_attach(struct seal_provider *base, coffer_cursor stored, coffer_buf *params)
{
    struct p11_provider *p = (struct p11_provider *)base;
    char label[P11_LABEL_MAX], token[P11_LABEL_MAX];
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
    if (p->have_session) {
        p->f->C_CloseSession(p->session);
    }
    if (p->initialized) {
        module_fini(p->f);
    }
    if (p->dl != NULL) {
        dlclose(p->dl);
    }
    pthread_mutex_destroy(&p->mu);
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

/* Token labels are 32 bytes padded with spaces. */
static void label_text(const unsigned char raw[32], char out[33])
{
    size_t n = 32;
    while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\0')) {
        n--;
    }
    memcpy(out, raw, n);
    out[n] = '\0';
}

static coffer_err find_slot(struct p11_provider *p, const struct seal_pkcs11_config *cfg, CK_SLOT_ID *out)
{
    CK_SLOT_ID slots[P11_MAX_SLOTS];
    CK_ULONG n = P11_MAX_SLOTS;
    CK_RV rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CONFIG, rv, "cannot list the slots with a token");
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        char label[33];
        if (p->f->C_GetTokenInfo(slots[i], &info) != CKR_OK) {
            continue;
        }
        label_text(info.label, label);
        if (cfg->token != NULL ? strcmp(label, cfg->token) == 0 : (long)slots[i] == cfg->slot) {
            snprintf(p->token, sizeof(p->token), "%s", label);
            *out = slots[i];
            return COFFER_OK;
        }
    }
    if (cfg->token != NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: no token labelled '%s' is present", cfg->token);
    }
    return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: no token is present in slot %ld", cfg->slot);
}

static coffer_err login(struct p11_provider *p, const char *pin)
{
    CK_RV rv = p->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        return COFFER_OK;
    }
    if (rv == CKR_PIN_INCORRECT) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: wrong PIN for token '%s' (CKR_PIN_INCORRECT)",
                           p->token);
    }
    if (rv == CKR_PIN_LOCKED) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: the PIN of token '%s' is locked (CKR_PIN_LOCKED)",
                           p->token);
    }
    return p11_fail(COFFER_ERR_CONFIG, rv, "cannot log in to the token");
}

static coffer_err generate_key(struct p11_provider *p, const char *label, CK_OBJECT_HANDLE *out)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},   {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &no, sizeof(no)},        {CKA_UNWRAP, &no, sizeof(no)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_RV rv = p->f->C_GenerateKey(p->session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), out);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CONFIG, rv, "cannot generate the root key in the token");
    }
    log_info("seal: generated AES-256 key '%s' in PKCS#11 token '%s' (non-extractable, sensitive)", label,
             p->token);
    return COFFER_OK;
}

static coffer_err find_key(struct p11_provider *p, const char *label, bool create)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = p->f->C_FindObjectsInit(p->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]));
    if (rv == CKR_OK) {
        rv = p->f->C_FindObjects(p->session, found, 2, &n);
        p->f->C_FindObjectsFinal(p->session);
    }
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CONFIG, rv, "cannot search the token for the root key");
    }
    if (n > 1) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: token '%s' holds more than one AES key labelled '%s'",
                           p->token, label);
    }
    if (n == 1) {
        p->key = found[0];
    } else if (create) {
        TRY(generate_key(p, label, &p->key));
    } else {
        return coffer_fail(COFFER_ERR_CONFIG,
                           "PKCS#11: token '%s' holds no AES key labelled '%s' (add create=yes to make one)",
                           p->token, label);
    }
    /* A root key that can leave the token is not one the token protects: say so, once. */
    CK_BBOOL extractable = CK_FALSE, sensitive = CK_TRUE;
    CK_ATTRIBUTE attrs[] = {{CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
                            {CKA_SENSITIVE, &sensitive, sizeof(sensitive)}};
    if (p->f->C_GetAttributeValue(p->session, p->key, attrs, 2) == CKR_OK && (extractable || !sensitive)) {
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
    CK_SLOT_ID slot = 0;
    if (cfg->module == NULL || cfg->module[0] == '\0' || cfg->pin == NULL || cfg->key_label == NULL ||
        cfg->key_label[0] == '\0' || strlen(cfg->key_label) >= P11_LABEL_MAX) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11 needs a module path, a PIN and a key label");
    }
    struct p11_provider *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    p->base.vt = &p11_vt;
    snprintf(p->key_label, sizeof(p->key_label), "%s", cfg->key_label);
    if (strlen(cfg->module) >= sizeof(p->module) || strchr(cfg->module, '\n') != NULL ||
        strchr(cfg->key_label, '\n') != NULL) {
        FAIL_OUT(COFFER_ERR_CONFIG, "PKCS#11: the module path or key label is too long or holds a newline");
    }
    snprintf(p->module, sizeof(p->module), "%s", cfg->module);
    p->dl = dlopen(cfg->module, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        const char *why = dlerror();
        FAIL_OUT(COFFER_ERR_CONFIG, "PKCS#11: cannot load module %s: %s", cfg->module,
                 why ? why : "unknown error");
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(p->dl, "C_GetFunctionList");
    if (get == NULL || get(&p->f) != CKR_OK || p->f == NULL) {
        FAIL_OUT(COFFER_ERR_CONFIG, "PKCS#11: %s is not a PKCS#11 module (no C_GetFunctionList)",
                 cfg->module);
    }
    CK_RV rv = module_init(p->f);
    if (rv != CKR_OK) {
        rc = p11_fail(COFFER_ERR_CONFIG, rv, "the module cannot be initialised");
        goto out;
    }
    p->initialized = true;
    TRY_OUT(find_slot(p, cfg, &slot));
    rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->session);
    if (rv != CKR_OK) {
        rc = p11_fail(COFFER_ERR_CONFIG, rv, "cannot open a session on the token");
        goto out;
    }
    p->have_session = true;
    TRY_OUT(login(p, cfg->pin));
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
