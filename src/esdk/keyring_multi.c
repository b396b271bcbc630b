/*
 * Multi-keyring (multi-keyring.md): a generator that makes and wraps the data key and any
 * number of children that wrap it too, so a message opens with any one of them. On decrypt the
 * generator, then each child, is tried until one yields the data key; failures of one member
 * do not stop the others.
 */
#include <stdlib.h>

#include "esdk/esdk_internal.h"

struct multi {
    coffer_keyring base;
    coffer_keyring *generator; /* may be NULL */
    coffer_keyring **children;
    size_t n;
};

static coffer_err multi_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct multi *k = (struct multi *)kr;
    if (k->generator) {
        TRY(esdk_keyring_on_encrypt(k->generator, m));
    }
    if (m->data_key.len == 0) {
        return coffer_fail(COFFER_ERR_KEYRING, "multi-keyring has no generator and no data key");
    }
    for (size_t i = 0; i < k->n; i++) {
        TRY(esdk_keyring_on_encrypt(k->children[i], m));
    }
    return COFFER_OK;
}

static coffer_err multi_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks,
                                   size_t n)
{
    struct multi *k = (struct multi *)kr;
    coffer_err first_err = COFFER_OK;
    for (size_t i = 0; i <= k->n && m->data_key.len == 0; i++) {
        coffer_keyring *member = i == 0 ? k->generator : k->children[i - 1];
        if (!member) {
            continue;
        }
        coffer_err rc = esdk_keyring_on_decrypt(member, m, edks, n);
        if (rc != COFFER_OK && first_err == COFFER_OK) {
            first_err = rc;
        }
    }
    return m->data_key.len ? COFFER_OK : first_err;
}

static void multi_destroy(coffer_keyring *kr)
{
    struct multi *k = (struct multi *)kr;
    coffer_keyring_release(k->generator);
    for (size_t i = 0; i < k->n; i++) {
        coffer_keyring_release(k->children[i]);
    }
    free(k->children);
    free(k);
}

ESDK_KEYRING_STATUS_METHODS(multi)

static const struct coffer_keyring_vt multi_vt = {
    sizeof(struct coffer_keyring_vt), "multi",       multi_on_encrypt_status,
    multi_on_decrypt_status,          multi_destroy,
};

coffer_keyring *coffer_keyring_multi_new(coffer_keyring *generator, coffer_keyring *const *children,
                                         size_t child_count)
{
    if ((!generator && child_count == 0) || (child_count && !children)) {
        coffer_fail(COFFER_ERR_USAGE, "multi-keyring needs members");
        return NULL;
    }
    for (size_t i = 0; i < child_count; i++) {
        if (!children[i]) {
            coffer_fail(COFFER_ERR_USAGE, "NULL child keyring");
            return NULL;
        }
    }
    struct multi *k = calloc(1, sizeof(*k));
    if (!k) {
        return NULL;
    }
    k->children = calloc(child_count ? child_count : 1, sizeof(*k->children));
    if (!k->children) {
        free(k);
        return NULL;
    }
    coffer_keyring_base_init(&k->base, &multi_vt);
    k->generator = coffer_keyring_retain(generator);
    for (size_t i = 0; i < child_count; i++) {
        k->children[i] = coffer_keyring_retain(children[i]);
    }
    k->n = child_count;
    return &k->base;
}
