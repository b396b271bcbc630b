/*
 * Fuzz target for the audit line check (the verifier's parser of untrusted trail bytes).
 * The input is split at newlines and checked as a chain starting from 64 zeros. Property: a
 * line accepted by the check hashes to the value a fresh SHA-256 gives, and re-checking the
 * same line against the same predecessor gives the same verdict.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_internal.h"
#include "common/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char prev[AUDIT_HASH_HEX_LEN + 1];
    memset(prev, '0', AUDIT_HASH_HEX_LEN);
    prev[AUDIT_HASH_HEX_LEN] = '\0';
    size_t start = 0;
    while (start < size) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t len = nl ? (size_t)(nl - (data + start)) : size - start;
        uint8_t h[CRYPTO_SHA256_LEN], h2[CRYPTO_SHA256_LEN], ref[CRYPTO_SHA256_LEN];
        char why[256];
        bool ok = audit_line_check(data + start, len, prev, h, why, sizeof(why));
        bool again = audit_line_check(data + start, len, prev, h2, why, sizeof(why));
        if (ok != again) {
            abort();
        }
        if (!ok) {
            break;
        }
        crypto_sha256(data + start, len, ref);
        if (memcmp(h, ref, sizeof(h)) != 0 || memcmp(h, h2, sizeof(h)) != 0) {
            abort();
        }
        coffer_hex_encode(h, sizeof(h), prev);
        start += len + 1;
    }
    return 0;
}
