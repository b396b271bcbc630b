/*
 * Fuzz target for the small parsers the digest verifier runs on untrusted bytes besides the
 * JSON itself: the times of a digest (audit_time_parse) and the PEM public key beside the
 * digests (audit_public_key_from_pem). Properties: a time that parses prints back (ISO 8601
 * with milliseconds) to a string that parses to the same instant; a key that parses writes
 * back as PEM that parses again.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "common/timeutil.h"
#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t t = audit_time_parse(s);
    if (t >= 0) {
        char back[40];
        coffer_time_iso8601_ms(t, back, sizeof(back));
        if (audit_time_parse(back) != t) {
            abort();
        }
    }
    crypto_pkey *k = NULL, *k2 = NULL;
    if (audit_public_key_from_pem(s, size, &k) == COFFER_OK) {
        coffer_buf pem = COFFER_BUF_INIT;
        if (audit_public_key_pem(k, &pem) != COFFER_OK ||
            audit_public_key_from_pem((const char *)pem.data, pem.len, &k2) != COFFER_OK) {
            abort();
        }
        coffer_buf_free(&pem);
    }
    crypto_pkey_free(k);
    crypto_pkey_free(k2);
    free(s);
    return 0;
}
