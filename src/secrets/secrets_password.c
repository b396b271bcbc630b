/*
 * GetRandomPassword: characters drawn uniformly (rejection sampling, no modulo bias) from the
 * classes left after the exclusions, with at least one of every included class when
 * RequireEachIncludedType asks for it (placed at random positions).
 */
#include <string.h>

#include "common/secret.h"
#include "secrets/secrets_internal.h"

#define SM_PUNCTUATION "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

enum { CLASS_LOWER, CLASS_UPPER, CLASS_DIGIT, CLASS_PUNCT, CLASS_SPACE, N_CLASSES };

static const char *const class_chars[N_CLASSES] = {"abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                                   "0123456789", SM_PUNCTUATION, " "};

/* A uniform index below n (n <= 256) from the random source. */
static coffer_err draw(sm_random_fn rnd, size_t n, size_t *out)
{
    unsigned limit = 256u - (256u % (unsigned)n); /* bytes at or above are rejected */
    for (;;) {
        unsigned char b;
        TRY(rnd(&b, 1));
        if (b < limit) {
            *out = b % n;
            return COFFER_OK;
        }
    }
}

coffer_err sm_password(const struct sm_password_spec *spec, sm_random_fn rnd, char *out)
{
    bool included[N_CLASSES] = {!spec->no_lower, !spec->no_upper, !spec->no_numbers, !spec->no_punctuation,
                                spec->include_space};
    char sets[N_CLASSES][40];
    char all[128];
    size_t n_all = 0, n_required = 0;
    for (int c = 0; c < N_CLASSES; c++) {
        size_t n = 0;
        for (const char *p = class_chars[c]; included[c] && *p != 0; p++) {
            if (spec->exclude == NULL || strchr(spec->exclude, *p) == NULL) {
                sets[c][n++] = *p;
                all[n_all++] = *p;
            }
        }
        sets[c][n] = 0;
        if (n == 0) {
            included[c] = false; /* every character of the class is excluded */
        } else if (spec->require_each) {
            n_required++;
        }
    }
    if (n_all == 0) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "The password can't be generated because every character is excluded.");
    }
    if (spec->require_each && spec->length < n_required) {
        return coffer_fail(COFFER_ERR_INVALID_PARAMETER,
                           "Password length is too short based on the required types.");
    }
    coffer_err rc = COFFER_OK;
    for (size_t i = 0; i < spec->length; i++) {
        size_t k;
        TRY_OUT(draw(rnd, n_all, &k));
        out[i] = all[k];
    }
    out[spec->length] = 0;
    if (spec->require_each) {
        /* one character of each required class at distinct random positions */
        size_t taken[N_CLASSES];
        size_t n_taken = 0;
        for (int c = 0; c < N_CLASSES; c++) {
            if (!included[c]) {
                continue;
            }
            size_t pos, k;
            bool fresh;
            do {
                TRY_OUT(draw(rnd, spec->length < 256 ? spec->length : 256, &pos));
                if (spec->length > 256) {
                    size_t hi;
                    TRY_OUT(draw(rnd, (spec->length + 255) / 256, &hi));
                    pos += hi * 256;
                    if (pos >= spec->length) {
                        fresh = false;
                        continue;
                    }
                }
                fresh = true;
                for (size_t t = 0; t < n_taken; t++) {
                    fresh = fresh && taken[t] != pos;
                }
            } while (!fresh);
            taken[n_taken++] = pos;
            TRY_OUT(draw(rnd, strlen(sets[c]), &k));
            out[pos] = sets[c][k];
        }
    }
out:
    if (rc != COFFER_OK) {
        coffer_secure_zero(out, spec->length + 1);
    }
    coffer_secure_zero(all, sizeof(all));
    return rc;
}
