/*
 * Force-included when building coffer_kms_stub: the CLI's aws-kms option parsing runs against a
 * stub keyring (tests/cli/kms_keyring_stub.c) that records the options instead of calling KMS.
 * The declaration is the real one from include/coffer/esdk.h.
 */
#ifndef COFFER_TESTS_CLI_KMS_KEYRING_STUB_H
#define COFFER_TESTS_CLI_KMS_KEYRING_STUB_H

#include "coffer/esdk.h"

#endif
