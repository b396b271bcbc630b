/*
 * libcoffer's boundary for errors. Inside, libcoffer fails with the tree's coffer_err like the
 * server does; those numbers move whenever a server error is added. Outside, callers see the
 * stable codes of include/coffer/error.h. esdk_status is the one translation from the first to
 * the second, and every public `int` function returns through it; esdk_err goes the other way
 * for the statuses a keyring or CMM vtable method returns.
 */
#include <stdio.h>

#include "esdk/esdk_internal.h"

/* X(public code, its name, the coffer_err a vtable status becomes, fixed description) */
#define ESDK_STATUSES(X)                                                                                     \
    X(COFFER_STATUS_OK, COFFER_OK, "success")                                                                \
    X(COFFER_STATUS_NOMEM, COFFER_ERR_NOMEM, "out of memory")                                                \
    X(COFFER_STATUS_INTERNAL, COFFER_ERR_INTERNAL, "internal error")                                         \
    X(COFFER_STATUS_IO, COFFER_ERR_IO, "I/O error")                                                          \
    X(COFFER_STATUS_CRYPTO, COFFER_ERR_CRYPTO, "cryptographic failure")                                      \
    X(COFFER_STATUS_CONFIG, COFFER_ERR_CONFIG, "invalid configuration")                                      \
    X(COFFER_STATUS_USAGE, COFFER_ERR_USAGE, "invalid argument")                                             \
    X(COFFER_STATUS_UNAVAILABLE, COFFER_ERR_UNAVAILABLE, "service unavailable")                              \
    X(COFFER_STATUS_BAD_MESSAGE, COFFER_ERR_BAD_MESSAGE, "malformed or tampered message")                    \
    X(COFFER_STATUS_CANNOT_DECRYPT, COFFER_ERR_CANNOT_DECRYPT, "no keyring could decrypt a data key")        \
    X(COFFER_STATUS_COMMITMENT_MISMATCH, COFFER_ERR_COMMITMENT_MISMATCH, "key commitment mismatch")          \
    X(COFFER_STATUS_POLICY_VIOLATION, COFFER_ERR_POLICY_VIOLATION, "commitment policy forbids this suite")   \
    X(COFFER_STATUS_BAD_SIGNATURE, COFFER_ERR_BAD_SIGNATURE, "message signature does not verify")            \
    X(COFFER_STATUS_LIMIT, COFFER_ERR_LIMIT, "a configured limit was exceeded")                              \
    X(COFFER_STATUS_KEYRING, COFFER_ERR_KEYRING, "keyring failure")

struct status_entry {
    const char *name;
    coffer_err err;
    const char *message;
};

static const struct status_entry status_table[] = {
#define ESDK_STATUS_ROW(status, err, msg) [status] = {#status, err, msg},
    ESDK_STATUSES(ESDK_STATUS_ROW)
#undef ESDK_STATUS_ROW
};

#define ESDK_STATUS_COUNT (sizeof(status_table) / sizeof(status_table[0]))

static const struct status_entry *status_entry_of(int status)
{
    if (status < 0 || (size_t)status >= ESDK_STATUS_COUNT || !status_table[status].name) {
        return NULL;
    }
    return &status_table[status];
}

int esdk_status(coffer_err e)
{
    switch (e) {
    case COFFER_OK:
        return COFFER_STATUS_OK;
    case COFFER_ERR_NOMEM:
        return COFFER_STATUS_NOMEM;
    case COFFER_ERR_INTERNAL:
        return COFFER_STATUS_INTERNAL;
    case COFFER_ERR_IO:
        return COFFER_STATUS_IO;
    case COFFER_ERR_CRYPTO:
        return COFFER_STATUS_CRYPTO;
    case COFFER_ERR_CONFIG:
        return COFFER_STATUS_CONFIG;
    case COFFER_ERR_USAGE:
        return COFFER_STATUS_USAGE;
    case COFFER_ERR_UNAVAILABLE:
        return COFFER_STATUS_UNAVAILABLE;
    case COFFER_ERR_BAD_MESSAGE:
        return COFFER_STATUS_BAD_MESSAGE;
    case COFFER_ERR_CANNOT_DECRYPT:
        return COFFER_STATUS_CANNOT_DECRYPT;
    case COFFER_ERR_COMMITMENT_MISMATCH:
        return COFFER_STATUS_COMMITMENT_MISMATCH;
    case COFFER_ERR_POLICY_VIOLATION:
        return COFFER_STATUS_POLICY_VIOLATION;
    case COFFER_ERR_BAD_SIGNATURE:
        return COFFER_STATUS_BAD_SIGNATURE;
    case COFFER_ERR_LIMIT:
        return COFFER_STATUS_LIMIT;
    case COFFER_ERR_KEYRING:
        return COFFER_STATUS_KEYRING;
    /* The shared codec reports bad base64/hex as a validation error: an argument was rejected. */
    case COFFER_ERR_VALIDATION:
    case COFFER_ERR_SERIALIZATION:
        return COFFER_STATUS_USAGE;
    /* The crypto layer's AEAD open fails this way: the bytes were not what was sealed. */
    case COFFER_ERR_INVALID_CIPHERTEXT:
        return COFFER_STATUS_BAD_MESSAGE;
    /* SigV4 signing (the KMS keyring) refuses credentials or a clock it cannot sign with. */
    case COFFER_ERR_MISSING_AUTH:
    case COFFER_ERR_INCOMPLETE_SIGNATURE:
    case COFFER_ERR_INVALID_SIGNATURE:
    case COFFER_ERR_UNRECOGNIZED_CLIENT:
    case COFFER_ERR_EXPIRED_TOKEN:
        return COFFER_STATUS_CONFIG;
    default:
        /* Errors only the server raises (storage, audit, quotas, key states, IAM): reaching
         * libcoffer's boundary with one of them is a bug, not something a caller can act on. */
        return COFFER_STATUS_INTERNAL;
    }
}

coffer_err esdk_err(int status, coffer_err unknown)
{
    if (status == COFFER_STATUS_OK) {
        return COFFER_OK;
    }
    /* A built-in method failed through coffer_fail: keep its exact code and detail. */
    coffer_err last = coffer_last_err();
    if (last != COFFER_OK && esdk_status(last) == status) {
        return last;
    }
    const struct status_entry *s = status_entry_of(status);
    if (!s) {
        return coffer_fail(unknown, "a method returned the unknown status %d", status);
    }
    return coffer_fail(s->err, "%s", s->message);
}

const char *coffer_strerror(int status)
{
    const struct status_entry *s = status_entry_of(status);
    return s ? s->message : "unknown status";
}

const char *coffer_status_name(int status)
{
    const struct status_entry *s = status_entry_of(status);
    return s ? s->name : "COFFER_STATUS_UNKNOWN";
}

const char *coffer_status_message(int status)
{
    coffer_err last = coffer_last_err();
    if (status != COFFER_STATUS_OK && last != COFFER_OK && esdk_status(last) == status) {
        return coffer_err_message(last);
    }
    return coffer_strerror(status);
}

int coffer_last_status(void)
{
    return esdk_status(coffer_last_err());
}
