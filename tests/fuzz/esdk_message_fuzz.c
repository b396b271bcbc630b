/*
 * libFuzzer target for the ESDK message parser: header parse, then a full streaming decrypt
 * with a fixed raw AES keyring (namespace "ProviderName", key name "KeyId", 32 zero bytes, the
 * key of the commitment KAT's first messages), fed in two chunks split at a data-driven point.
 * Any input must fail cleanly (with a published status code) or decrypt; a header that parses
 * must serialize its fields sanely.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/esdk.h"

static int sink(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static coffer_cmm *cmm;
    if (!cmm) {
        static const uint8_t zero[32];
        coffer_keyring *kr = coffer_keyring_raw_aes_new("ProviderName", "KeyId", zero, sizeof(zero));
        cmm = kr ? coffer_cmm_default_new(kr) : NULL;
        coffer_keyring_release(kr);
        if (!cmm) {
            abort();
        }
    }
    coffer_header *h = NULL;
    size_t used = 0;
    if (coffer_header_parse(data, size, &h, &used) == 0) {
        if (used > size || coffer_header_edk_count(h) == 0) {
            abort();
        }
        coffer_edk e;
        for (size_t i = 0; i < coffer_header_edk_count(h); i++) {
            if (coffer_header_edk(h, i, &e) != 0) {
                abort();
            }
        }
        coffer_header_free(h);
    }
    coffer_decryptor *d = coffer_decryptor_new(cmm);
    if (!d || coffer_decryptor_set_commitment_policy(d, COFFER_COMMIT_REQUIRE_ENCRYPT_ALLOW_DECRYPT) != 0 ||
        coffer_decryptor_set_max_edks(d, 16) != 0 || coffer_decryptor_set_output(d, sink, NULL) != 0) {
        abort();
    }
    size_t split = size ? data[size - 1] % (size + 1) : 0;
    int st = coffer_decryptor_update(d, data, split);
    st = st ? st : coffer_decryptor_update(d, data + split, size - split);
    st = st ? st : coffer_decryptor_finish(d);
    /* Whatever the input, a failure is one of the published status codes. */
    if (strcmp(coffer_status_name(st), "COFFER_STATUS_UNKNOWN") == 0) {
        abort();
    }
    coffer_decryptor_free(d);
    return 0;
}
