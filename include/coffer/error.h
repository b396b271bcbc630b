/*
 * libcoffer's status codes. Every `int` function of the public API returns one of these: 0 on
 * success, a positive code otherwise. The numbers are part of the ABI: a code keeps its value
 * forever, is never renumbered or reused, and new codes are only appended (tests/unit/
 * esdk_status_test.c pins every value). They are independent of the codes the Coffer server
 * uses internally, which libcoffer translates at its boundary.
 *
 * Crypto failures are deliberately coarse: a wrong key, a wrong context and a flipped bit all
 * report COFFER_STATUS_BAD_MESSAGE or COFFER_STATUS_CANNOT_DECRYPT.
 */
#ifndef COFFER_ERROR_H
#define COFFER_ERROR_H

#include "coffer/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum coffer_status {
    COFFER_STATUS_OK = 0,             /* success */
    COFFER_STATUS_NOMEM = 1,          /* out of memory */
    COFFER_STATUS_INTERNAL = 2,       /* an unexpected state inside libcoffer (a bug) */
    COFFER_STATUS_IO = 3,             /* reading or writing failed, e.g. the output sink refused data */
    COFFER_STATUS_CRYPTO = 4,         /* the crypto library failed (not a bad message) */
    COFFER_STATUS_CONFIG = 5,         /* configuration: no region, no credentials, bad endpoint, bad key */
    COFFER_STATUS_USAGE = 6,          /* invalid argument, or a call out of order */
    COFFER_STATUS_UNAVAILABLE = 7,    /* a remote service (KMS) could not be reached or failed */
    COFFER_STATUS_BAD_MESSAGE = 8,    /* malformed, truncated or tampered message */
    COFFER_STATUS_CANNOT_DECRYPT = 9, /* no keyring could decrypt a data key */
    COFFER_STATUS_COMMITMENT_MISMATCH = 10, /* the key commitment does not match */
    COFFER_STATUS_POLICY_VIOLATION = 11,    /* the commitment policy forbids this suite */
    COFFER_STATUS_BAD_SIGNATURE = 12,       /* the message signature does not verify */
    COFFER_STATUS_LIMIT = 13,               /* a configured limit was exceeded (EDK count, sizes) */
    COFFER_STATUS_KEYRING = 14,             /* a keyring failed to wrap or generate a data key */
    /* New codes go here, with the next free number. */
} coffer_status;

/* A fixed description of `status` ("malformed or tampered message"); never NULL. */
COFFER_API const char *coffer_strerror(int status) COFFER_WARN_UNUSED;
/* The enumerator's name ("COFFER_STATUS_BAD_MESSAGE"); never NULL. */
COFFER_API const char *coffer_status_name(int status) COFFER_WARN_UNUSED;
/* This thread's detail for `status` when its last failure has that status, else coffer_strerror. */
COFFER_API const char *coffer_status_message(int status) COFFER_WARN_UNUSED;
/*
 * The status of this thread's most recent failure (0 if nothing has failed yet). It is what
 * a constructor that returned NULL has to offer in place of a return code:
 *     if (!(kr = coffer_keyring_kms_new(&o)))
 *         fprintf(stderr, "%s\n", coffer_status_message(coffer_last_status()));
 * Successful calls do not reset it, so read it right after the call that failed.
 */
COFFER_API int coffer_last_status(void) COFFER_WARN_UNUSED;

#ifdef __cplusplus
}
#endif
#endif
