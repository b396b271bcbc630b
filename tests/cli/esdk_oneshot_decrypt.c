/*
 * Test driver for the CLI tests: decrypts a message written by `coffer encrypt` with the
 * library's one-shot API (coffer_decrypt, default policy) under a raw AES key, and compares
 * the result with the expected plaintext. Proves the CLI emits plain ESDK messages.
 * usage: esdk_oneshot_decrypt KEYFILE NAMESPACE NAME CIPHERTEXT PLAINTEXT   (exit 0 = match)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/esdk.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p = NULL;
    size_t cap = 0, n = 0, r;
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *q = realloc(p, cap);
            if (q == NULL) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = q;
        }
        r = fread(p + n, 1, cap - n, f);
        if (r == 0) {
            break;
        }
        n += r;
    }
    fclose(f);
    *len = n;
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s KEYFILE NAMESPACE NAME CIPHERTEXT PLAINTEXT\n", argv[0]);
        return 2;
    }
    size_t kl = 0, cl = 0, pl = 0, ol = 0;
    uint8_t *key = slurp(argv[1], &kl), *ct = slurp(argv[4], &cl), *pt = slurp(argv[5], &pl), *out = NULL;
    int rc = 1;
    if (key == NULL || ct == NULL || pt == NULL) {
        fprintf(stderr, "cannot read inputs\n");
        goto out;
    }
    coffer_keyring *kr = coffer_keyring_raw_aes_new(argv[2], argv[3], key, kl);
    coffer_cmm *cmm = kr ? coffer_cmm_default_new(kr) : NULL;
    int st = cmm ? coffer_decrypt(cmm, NULL, ct, cl, &out, &ol) : -1;
    if (st != 0) {
        fprintf(stderr, "coffer_decrypt failed: %s\n", st > 0 ? coffer_status_name(st) : "setup");
    } else if (ol != pl || (pl > 0 && memcmp(out, pt, pl) != 0)) {
        fprintf(stderr, "plaintext differs (%zu vs %zu bytes)\n", ol, pl);
    } else {
        rc = 0;
    }
    coffer_bytes_free(out, ol);
    coffer_cmm_release(cmm);
    coffer_keyring_release(kr);
out:
    free(key);
    free(ct);
    free(pt);
    return rc;
}
