/*
 * Test-only AWS KMS keyring: records the options it was given (as one JSON line on stderr when
 * COFFER_KMS_STUB_TRACE is set) and wraps with a fixed raw AES key under namespace "aws-kms",
 * so the CLI's aws-kms path can be driven end to end without a KMS.
 */
#include "kms_keyring_stub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void trace_list(const char *name, const char *const *v, size_t n)
{
    fprintf(stderr, "\"%s\":[", name);
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "%s\"%s\"", i ? "," : "", v[i]);
    }
    fprintf(stderr, "],");
}

coffer_keyring *coffer_keyring_kms_new(const struct coffer_kms_keyring_options *o)
{
    static const uint8_t key[32] = {0x11};
    if (getenv("COFFER_KMS_STUB_TRACE") != NULL) {
        fprintf(stderr, "{");
        trace_list("key_ids", o->key_ids, o->n_key_ids);
        trace_list("discovery_accounts", o->discovery_accounts, o->n_discovery_accounts);
        fprintf(stderr,
                "\"discovery\":%s,\"partition\":\"%s\",\"region\":\"%s\",\"endpoint\":\"%s\",\"profile\":\"%"
                "s\"}\n",
                o->discovery ? "true" : "false", o->discovery_partition ? o->discovery_partition : "",
                o->region ? o->region : "", o->endpoint ? o->endpoint : "", o->profile ? o->profile : "");
    }
    return coffer_keyring_raw_aes_new("aws-kms", "stub", key, sizeof(key));
}
