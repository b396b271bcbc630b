/*
 * A PKCS#11 token through its module (hsm.h): module loading and initialisation, the token by
 * label or slot, a pool of logged-in sessions, AES keys by label, and AES-GCM in the token.
 */
#include "hsm/hsm.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "common/secret.h"

#define HSM_MAX_SLOTS 256
#define HSM_MAX_MODULES 8

struct hsm_session {
    pthread_mutex_t mu; /* one operation at a time per session */
    CK_SESSION_HANDLE h;
    bool open;
};

struct hsm_token {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool initialized; /* this handle holds a reference on the module's C_Initialize */
    char label[33];
    struct hsm_session sessions[HSM_SESSIONS_MAX];
    size_t n_sessions;
    unsigned next; /* round robin start for the next operation (racy by design: only a hint) */
};

/* ---------------------------------------------------------------------------------------------
 * One C_Initialize per module per process: two handles on one module (the root key and a key
 * store in one token, or a migration between two keys of one token) share it, and the last one
 * out calls C_Finalize.
 * ------------------------------------------------------------------------------------------- */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    CK_FUNCTION_LIST_PTR f;
    int refs;
    bool owned; /* our C_Initialize made it: ours to C_Finalize */
} inits[HSM_MAX_MODULES];

static CK_RV module_init(CK_FUNCTION_LIST_PTR f)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&init_mu);
    size_t free_slot = HSM_MAX_MODULES;
    for (size_t i = 0; i < HSM_MAX_MODULES; i++) {
        if (inits[i].f == f) {
            inits[i].refs++;
            goto out;
        }
        if (inits[i].f == NULL && free_slot == HSM_MAX_MODULES) {
            free_slot = i;
        }
    }
    if (free_slot == HSM_MAX_MODULES) {
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
    for (size_t i = 0; i < HSM_MAX_MODULES; i++) {
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
    static const struct {
        CK_RV rv;
        const char *name;
    } names[] = {
#define RV(x) {x, #x}
        RV(CKR_OK),
        RV(CKR_HOST_MEMORY),
        RV(CKR_SLOT_ID_INVALID),
        RV(CKR_GENERAL_ERROR),
        RV(CKR_FUNCTION_FAILED),
        RV(CKR_ARGUMENTS_BAD),
        RV(CKR_DEVICE_ERROR),
        RV(CKR_DEVICE_REMOVED),
        RV(CKR_ENCRYPTED_DATA_INVALID),
        RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
        RV(CKR_KEY_HANDLE_INVALID),
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
        RV(CKR_MECHANISM_INVALID),
        RV(CKR_MECHANISM_PARAM_INVALID),
        RV(CKR_OBJECT_HANDLE_INVALID),
        RV(CKR_PIN_INCORRECT),
        RV(CKR_PIN_LOCKED),
        RV(CKR_PIN_LEN_RANGE),
        RV(CKR_SESSION_HANDLE_INVALID),
        RV(CKR_SESSION_CLOSED),
        RV(CKR_TOKEN_NOT_PRESENT),
        RV(CKR_TOKEN_NOT_RECOGNIZED),
        RV(CKR_USER_NOT_LOGGED_IN),
        RV(CKR_USER_PIN_NOT_INITIALIZED),
        RV(CKR_BUFFER_TOO_SMALL),
        RV(CKR_CRYPTOKI_NOT_INITIALIZED),
        RV(CKR_TEMPLATE_INCONSISTENT),
        RV(CKR_ATTRIBUTE_VALUE_INVALID),
#undef RV
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].rv == rv) {
            return names[i].name;
        }
    }
    return "a PKCS#11 error";
}

static coffer_err p11_fail(coffer_err code, CK_RV rv, const char *what)
{
    return coffer_fail(code, "PKCS#11: %s (%s, 0x%lx)", what, rv_name(rv), (unsigned long)rv);
}

/* ---------------------------------------------------------------------------------------------
 * The session pool
 * ------------------------------------------------------------------------------------------- */

/* A session for one operation: a free one when there is one, else waits for one. */
static struct hsm_session *session_take(hsm_token *t)
{
    unsigned start = __atomic_fetch_add(&t->next, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < t->n_sessions; i++) {
        struct hsm_session *s = &t->sessions[(start + i) % t->n_sessions];
        if (pthread_mutex_trylock(&s->mu) == 0) {
            return s;
        }
    }
    struct hsm_session *s = &t->sessions[start % t->n_sessions];
    pthread_mutex_lock(&s->mu);
    return s;
}

static void session_give(struct hsm_session *s)
{
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Opening: module, token, sessions, login
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

static coffer_err find_slot(hsm_token *t, const struct hsm_token_config *cfg, CK_SLOT_ID *out)
{
    CK_SLOT_ID slots[HSM_MAX_SLOTS];
    CK_ULONG n = HSM_MAX_SLOTS;
    CK_RV rv = t->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CONFIG, rv, "cannot list the slots with a token");
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        char label[33];
        if (t->f->C_GetTokenInfo(slots[i], &info) != CKR_OK) {
            continue;
        }
        label_text(info.label, label);
        if (cfg->token != NULL ? strcmp(label, cfg->token) == 0 : (long)slots[i] == cfg->slot) {
            memcpy(t->label, label, sizeof(t->label));
            *out = slots[i];
            return COFFER_OK;
        }
    }
    if (cfg->token != NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: no token labelled '%s' is present", cfg->token);
    }
    return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: no token is present in slot %ld", cfg->slot);
}

static coffer_err login(hsm_token *t, coffer_cursor pin, enum hsm_failure *why)
{
    CK_RV rv = t->f->C_Login(t->sessions[0].h, CKU_USER, (CK_UTF8CHAR_PTR)pin.ptr, pin.len);
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        return COFFER_OK;
    }
    if (rv == CKR_PIN_INCORRECT) {
        *why = HSM_FAIL_PIN_INCORRECT;
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: wrong PIN for token '%s' (CKR_PIN_INCORRECT)",
                           t->label);
    }
    if (rv == CKR_PIN_LOCKED) {
        *why = HSM_FAIL_PIN_LOCKED;
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: the PIN of token '%s' is locked (CKR_PIN_LOCKED)",
                           t->label);
    }
    *why = HSM_FAIL_OTHER;
    return p11_fail(COFFER_ERR_CONFIG, rv, "cannot log in to the token");
}

static coffer_err load_module(hsm_token *t, const char *module, enum hsm_failure *why)
{
    *why = HSM_FAIL_MODULE;
    t->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (t->dl == NULL) {
        const char *err = dlerror();
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: cannot load module %s: %s", module,
                           err ? err : "unknown error");
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(t->dl, "C_GetFunctionList");
    if (get == NULL || get(&t->f) != CKR_OK || t->f == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: %s is not a PKCS#11 module (no C_GetFunctionList)",
                           module);
    }
    CK_RV rv = module_init(t->f);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CONFIG, rv, "the module cannot be initialised");
    }
    t->initialized = true;
    *why = HSM_FAIL_NONE;
    return COFFER_OK;
}

coffer_err hsm_token_open(const struct hsm_token_config *cfg, coffer_cursor pin, hsm_token **out,
                          enum hsm_failure *why)
{
    enum hsm_failure ignored;
    coffer_err rc = COFFER_OK;
    CK_SLOT_ID slot = 0;
    if (why == NULL) {
        why = &ignored;
    }
    *why = HSM_FAIL_OTHER;
    ENSURE_REF(cfg);
    ENSURE_REF(out);
    *out = NULL;
    if (cfg->module == NULL || cfg->module[0] == '\0' || cfg->sessions > HSM_SESSIONS_MAX) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11 needs a module path");
    }
    hsm_token *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(load_module(t, cfg->module, why));
    *why = HSM_FAIL_NO_TOKEN;
    TRY_OUT(find_slot(t, cfg, &slot));
    *why = HSM_FAIL_OTHER;
    size_t want = cfg->sessions == 0 ? 1 : cfg->sessions;
    for (; t->n_sessions < want; t->n_sessions++) {
        struct hsm_session *s = &t->sessions[t->n_sessions];
        CK_RV rv = t->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s->h);
        if (rv != CKR_OK) {
            rc = p11_fail(COFFER_ERR_CONFIG, rv, "cannot open a session on the token");
            goto out;
        }
        pthread_mutex_init(&s->mu, NULL);
        s->open = true;
    }
    /* Login is per application and token: one C_Login logs in every session of the pool. */
    TRY_OUT(login(t, pin, why));
    *why = HSM_FAIL_NONE;
    *out = t;
    t = NULL;
out:
    hsm_token_free(t);
    return rc;
}

void hsm_token_free(hsm_token *t)
{
    if (t == NULL) {
        return;
    }
    /* No C_Logout: another handle (the root key) may share the token's login; closing our last
     * session ends it when no other handle holds one. */
    for (size_t i = 0; i < t->n_sessions; i++) {
        if (t->sessions[i].open) {
            t->f->C_CloseSession(t->sessions[i].h);
            pthread_mutex_destroy(&t->sessions[i].mu);
        }
    }
    if (t->initialized) {
        module_fini(t->f);
    }
    if (t->dl != NULL) {
        dlclose(t->dl);
    }
    free(t);
}

const char *hsm_token_label(const hsm_token *t)
{
    return t->label;
}

/* ---------------------------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------------------------- */

coffer_err hsm_aes_find(hsm_token *t, const char *label, hsm_object *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    /* Token objects only: a session copy (hsm_object_session_copy) has the same label. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_FindObjectsInit(s->h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]));
    if (rv == CKR_OK) {
        rv = t->f->C_FindObjects(s->h, found, 2, &n);
        t->f->C_FindObjectsFinal(s->h);
    }
    session_give(s);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "cannot search the token for a key");
    }
    if (n > 1) {
        return coffer_fail(COFFER_ERR_CONFIG, "PKCS#11: token '%s' holds more than one AES key labelled '%s'",
                           t->label, label);
    }
    if (n == 0) {
        return COFFER_ERR_NOT_FOUND;
    }
    *out = found[0];
    return COFFER_OK;
}

coffer_err hsm_aes_generate(hsm_token *t, const char *label, hsm_object *out)
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
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_GenerateKey(s->h, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    session_give(s);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "cannot generate an AES key in the token");
    }
    *out = h;
    return COFFER_OK;
}

coffer_err hsm_object_session_copy(hsm_token *t, hsm_object key, hsm_object *out)
{
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    /* Session 0 stays open as long as the handle: the copy lives as long. */
    struct hsm_session *s = &t->sessions[0];
    pthread_mutex_lock(&s->mu);
    CK_RV rv = t->f->C_CopyObject(s->h, key, tmpl, 1, &h);
    pthread_mutex_unlock(&s->mu);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "cannot copy a key into a session object");
    }
    *out = h;
    return COFFER_OK;
}

coffer_err hsm_object_destroy(hsm_token *t, hsm_object o)
{
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_DestroyObject(s->h, o);
    session_give(s);
    if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "cannot destroy a key in the token");
    }
    return COFFER_OK;
}

coffer_err hsm_aes_protection(hsm_token *t, hsm_object key, bool *extractable, bool *sensitive)
{
    CK_BBOOL ext = CK_TRUE, sens = CK_FALSE;
    CK_ATTRIBUTE attrs[] = {{CKA_EXTRACTABLE, &ext, sizeof(ext)}, {CKA_SENSITIVE, &sens, sizeof(sens)}};
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_GetAttributeValue(s->h, key, attrs, 2);
    session_give(s);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "cannot read a key's attributes");
    }
    *extractable = ext == CK_TRUE;
    *sensitive = sens == CK_TRUE;
    return COFFER_OK;
}

coffer_err hsm_random(hsm_token *t, uint8_t *out, size_t n)
{
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_GenerateRandom(s->h, out, (CK_ULONG)n);
    session_give(s);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "cannot generate random bytes");
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * AES-GCM in the token
 * ------------------------------------------------------------------------------------------- */

static CK_MECHANISM gcm_mechanism(CK_GCM_PARAMS *params, uint8_t *iv, coffer_cursor aad)
{
    *params = (CK_GCM_PARAMS){
        .pIv = iv,
        .ulIvLen = HSM_GCM_IV_LEN,
        .ulIvBits = HSM_GCM_IV_LEN * 8,
        .pAAD = (CK_BYTE_PTR)aad.ptr,
        .ulAADLen = aad.len,
        .ulTagBits = HSM_GCM_TAG_LEN * 8,
    };
    return (CK_MECHANISM){.mechanism = CKM_AES_GCM, .pParameter = params, .ulParameterLen = sizeof(*params)};
}

coffer_err hsm_gcm_encrypt(hsm_token *t, hsm_object key, const uint8_t iv[HSM_GCM_IV_LEN], coffer_cursor aad,
                           coffer_cursor plaintext, coffer_buf *out)
{
    uint8_t iv_copy[HSM_GCM_IV_LEN];
    CK_GCM_PARAMS params;
    memcpy(iv_copy, iv, sizeof(iv_copy)); /* the mechanism takes a non-const pointer */
    TRY(coffer_buf_reserve(out, plaintext.len + HSM_GCM_TAG_LEN));
    CK_MECHANISM mech = gcm_mechanism(&params, iv_copy, aad);
    CK_ULONG n = (CK_ULONG)(out->cap - out->len);
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_EncryptInit(s->h, &mech, key);
    if (rv == CKR_OK) {
        rv = t->f->C_Encrypt(s->h, (CK_BYTE_PTR)plaintext.ptr, plaintext.len, out->data + out->len, &n);
    }
    session_give(s);
    if (rv != CKR_OK) {
        return p11_fail(COFFER_ERR_CRYPTO, rv, "the token cannot encrypt");
    }
    if (n != plaintext.len + HSM_GCM_TAG_LEN) {
        return coffer_fail(COFFER_ERR_CRYPTO, "PKCS#11: the token's AES-GCM output has an unexpected length");
    }
    out->len += n;
    return COFFER_OK;
}

coffer_err hsm_gcm_decrypt(hsm_token *t, hsm_object key, const uint8_t iv[HSM_GCM_IV_LEN], coffer_cursor aad,
                           coffer_cursor sealed, coffer_buf *out)
{
    uint8_t iv_copy[HSM_GCM_IV_LEN];
    CK_GCM_PARAMS params;
    if (sealed.len < HSM_GCM_TAG_LEN) {
        return coffer_fail(COFFER_ERR_CRYPTO, "PKCS#11: AES-GCM input shorter than its tag");
    }
    memcpy(iv_copy, iv, sizeof(iv_copy));
    /* Room for the whole input: some modules want the output buffer as long as the ciphertext. */
    TRY(coffer_buf_reserve(out, sealed.len));
    CK_MECHANISM mech = gcm_mechanism(&params, iv_copy, aad);
    CK_ULONG n = (CK_ULONG)(out->cap - out->len);
    struct hsm_session *s = session_take(t);
    CK_RV rv = t->f->C_DecryptInit(s->h, &mech, key);
    if (rv == CKR_OK) {
        rv = t->f->C_Decrypt(s->h, (CK_BYTE_PTR)sealed.ptr, sealed.len, out->data + out->len, &n);
    }
    session_give(s);
    if (rv != CKR_OK || n != sealed.len - HSM_GCM_TAG_LEN) {
        coffer_secure_zero(out->data + out->len, out->cap - out->len);
        return p11_fail(COFFER_ERR_CRYPTO, rv, "the token cannot decrypt");
    }
    out->len += n;
    return COFFER_OK;
}
