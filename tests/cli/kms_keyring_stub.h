/*
 * Test-only stand-in for the AWS KMS keyring's declaration, force-included when building
 * coffer_kms_stub so the CLI's aws-kms parsing (behind COFFER_HAVE_KMS_KEYRING) compiles and
 * runs in tests. The real declaration lives in include/coffer/esdk.h once the keyring exists.
 */
#ifndef COFFER_TESTS_CLI_KMS_KEYRING_STUB_H
#define COFFER_TESTS_CLI_KMS_KEYRING_STUB_H

#include "coffer/esdk.h"

struct coffer_kms_keyring_options {
    const char *const *key_ids;
    size_t n_key_ids; /* strict; first is generator */
    bool discovery;
    const char *discovery_partition;
    const char *const *discovery_accounts;
    size_t n_discovery_accounts;
    const char *region;
    const char *endpoint;
    const char *profile;
    const char *ca_bundle;
};
coffer_keyring *coffer_keyring_kms_new(const struct coffer_kms_keyring_options *opts);

#endif
