/*
 * One error space for the whole tree. Every failure is a coffer_err; the X-macro below names
 * the AWS error type a client expects, its HTTP status and a default message, so the enum, the
 * strings and the wire mapping cannot drift apart. The failing site records a detail message in
 * a thread-local context with coffer_fail(); the HTTP layer turns (code, detail) into the AWS
 * JSON error body. The names here are defaults, the spelling most AWS services share; a service
 * whose API names an error differently declares it in its api_service.errors (api/api.h), so
 * the same code may be KMSInternalException for one service and InternalFailure for another.
 */
#ifndef COFFER_COMMON_ERR_H
#define COFFER_COMMON_ERR_H

#include <stdbool.h>

/* X(code, aws type, http status, default message) */
#define COFFER_ERRORS(X)                                                                                     \
    X(COFFER_OK, "", 200, "success")                                                                         \
    /* generic */                                                                                            \
    X(COFFER_ERR_NOMEM, "InternalFailure", 500, "out of memory")                                             \
    X(COFFER_ERR_INTERNAL, "InternalFailure", 500, "internal error")                                         \
    X(COFFER_ERR_IO, "InternalFailure", 500, "I/O error")                                                    \
    X(COFFER_ERR_STORE, "InternalFailure", 500, "storage failure")                                           \
    X(COFFER_ERR_AUDIT, "InternalFailure", 500, "the audit trail cannot be written")                         \
    X(COFFER_ERR_CRYPTO, "InternalFailure", 500, "cryptographic failure")                                    \
    X(COFFER_ERR_CONFIG, "InternalFailure", 500, "invalid configuration")                                    \
    X(COFFER_ERR_USAGE, "ValidationException", 400, "invalid argument")                                      \
    X(COFFER_ERR_UNAVAILABLE, "ServiceUnavailableException", 503, "service unavailable")                     \
    /* protocol */                                                                                           \
    X(COFFER_ERR_VALIDATION, "ValidationException", 400, "validation error")                                 \
    X(COFFER_ERR_SERIALIZATION, "SerializationException", 400, "malformed request body")                     \
    X(COFFER_ERR_UNKNOWN_OPERATION, "UnknownOperationException", 400, "unknown operation")                   \
    /* authentication and authorization */                                                                   \
    X(COFFER_ERR_MISSING_AUTH, "MissingAuthenticationTokenException", 400, "Missing Authentication Token")   \
    X(COFFER_ERR_INCOMPLETE_SIGNATURE, "IncompleteSignatureException", 400, "incomplete signature")          \
    X(COFFER_ERR_INVALID_SIGNATURE, "InvalidSignatureException", 400,                                        \
      "The request signature we calculated does not match the signature you provided. Check your AWS "       \
      "Secret Access Key and signing method. Consult the service documentation for details.")                \
    X(COFFER_ERR_UNRECOGNIZED_CLIENT, "UnrecognizedClientException", 400,                                    \
      "The security token included in the request is invalid.")                                              \
    X(COFFER_ERR_EXPIRED_TOKEN, "ExpiredTokenException", 400,                                                \
      "The security token included in the request is expired")                                               \
    X(COFFER_ERR_ACCESS_DENIED, "AccessDeniedException", 400, "access denied")                               \
    X(COFFER_ERR_THROTTLING, "ThrottlingException", 400, "Rate exceeded")                                    \
    /* resources and their states */                                                                         \
    X(COFFER_ERR_NOT_FOUND, "NotFoundException", 400, "not found")                                           \
    X(COFFER_ERR_DISABLED, "DisabledException", 400, "key is disabled")                                      \
    X(COFFER_ERR_INVALID_STATE, "InvalidRequestException", 400, "invalid key state")                         \
    X(COFFER_ERR_INVALID_CIPHERTEXT, "InvalidCiphertextException", 400, "")                                  \
    X(COFFER_ERR_INCORRECT_KEY, "IncorrectKeyException", 400,                                                \
      "The key ID in the request does not identify a CMK that can perform this operation.")                  \
    X(COFFER_ERR_INVALID_KEY_USAGE, "InvalidKeyUsageException", 400, "invalid key usage")                    \
    X(COFFER_ERR_ALREADY_EXISTS, "AlreadyExistsException", 400, "already exists")                            \
    X(COFFER_ERR_INVALID_MARKER, "InvalidMarkerException", 400, "invalid marker")                            \
    X(COFFER_ERR_INVALID_ARN, "InvalidArnException", 400, "invalid ARN")                                     \
    X(COFFER_ERR_TAG, "TagException", 400, "invalid tag")                                                    \
    X(COFFER_ERR_LIMIT_EXCEEDED, "LimitExceededException", 400, "limit exceeded")                            \
    X(COFFER_ERR_MALFORMED_POLICY, "MalformedPolicyDocumentException", 400, "malformed policy document")     \
    X(COFFER_ERR_UNSUPPORTED_OPERATION, "UnsupportedOperationException", 400, "unsupported operation")       \
    X(COFFER_ERR_DRY_RUN, "DryRunOperationException", 400,                                                   \
      "The request would have succeeded, but the DryRun option is set.")                                     \
    X(COFFER_ERR_INVALID_GRANT_TOKEN, "InvalidGrantTokenException", 400, "invalid grant token")              \
    X(COFFER_ERR_INVALID_GRANT_ID, "InvalidGrantIdException", 400, "invalid grant id")                       \
    X(COFFER_ERR_SIGNATURE_MISMATCH, "KMSInvalidSignatureException", 400, "")                                \
    X(COFFER_ERR_MAC_MISMATCH, "KMSInvalidMacException", 400, "")                                            \
    X(COFFER_ERR_INCORRECT_KEY_MATERIAL, "IncorrectKeyMaterialException", 400, "incorrect key material")     \
    X(COFFER_ERR_INVALID_IMPORT_TOKEN, "InvalidImportTokenException", 400, "invalid import token")           \
    X(COFFER_ERR_EXPIRED_IMPORT_TOKEN, "ExpiredImportTokenException", 400, "expired import token")           \
    X(COFFER_ERR_CUSTOM_KEY_STORE_NOT_FOUND, "CustomKeyStoreNotFoundException", 400,                         \
      "The request was rejected because AWS KMS cannot find a custom key store with the specified key "      \
      "store "                                                                                               \
      "name or ID.")                                                                                         \
    X(COFFER_ERR_CONFLICT, "ConflictException", 409,                                                         \
      "The request was rejected because an automatic rotation of this key is currently in progress or "      \
      "scheduled to begin within the next 20 minutes.")                                                      \
    X(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_FOUND, "CloudHsmClusterNotFoundException", 400,                        \
      "The request was rejected because AWS KMS cannot find the AWS CloudHSM cluster with the specified "    \
      "cluster ID. Retry the request with a different cluster ID.")                                          \
    X(COFFER_ERR_CLOUDHSM_CLUSTER_IN_USE, "CloudHsmClusterInUseException", 400,                              \
      "The request was rejected because the specified AWS CloudHSM cluster is already associated with an "   \
      "AWS CloudHSM key store in the account, or it shares a backup history with an AWS CloudHSM key store " \
      "in the account. Each AWS CloudHSM key store in the account must be associated with a different "      \
      "AWS CloudHSM cluster.")                                                                               \
    X(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_RELATED, "CloudHsmClusterNotRelatedException", 400,                    \
      "The request was rejected because the specified AWS CloudHSM cluster has a different cluster "         \
      "certificate than the original cluster. You cannot use the operation to specify an unrelated "         \
      "cluster for an AWS CloudHSM key store.")                                                              \
    X(COFFER_ERR_CUSTOM_KEY_STORE_NAME_IN_USE, "CustomKeyStoreNameInUseException", 400,                      \
      "The request was rejected because the specified custom key store name is already assigned to "         \
      "another custom key store in the account. Try again with a custom key store name that is unique in "   \
      "the account.")                                                                                        \
    X(COFFER_ERR_CUSTOM_KEY_STORE_INVALID_STATE, "CustomKeyStoreInvalidStateException", 400,                 \
      "The request was rejected because of the ConnectionState of the custom key store.")                    \
    X(COFFER_ERR_CUSTOM_KEY_STORE_HAS_CMKS, "CustomKeyStoreHasCMKsException", 400,                           \
      "The request was rejected because the custom key store contains KMS keys. After verifying that you "   \
      "do not need to use the KMS keys, use the ScheduleKeyDeletion operation to delete the KMS keys. "      \
      "After "                                                                                               \
      "they are deleted, you can delete the custom key store.")                                              \
    /* IAM and STS (Query protocol) */                                                                       \
    X(COFFER_ERR_NO_SUCH_ENTITY, "NoSuchEntity", 404, "The entity cannot be found.")                         \
    X(COFFER_ERR_ENTITY_EXISTS, "EntityAlreadyExists", 409, "The entity already exists.")                    \
    X(COFFER_ERR_DELETE_CONFLICT, "DeleteConflict", 409, "The entity still has attached resources.")         \
    /* Encryption SDK (libcoffer); not sent on the wire */                                                   \
    X(COFFER_ERR_BAD_MESSAGE, "InvalidCiphertextException", 400, "malformed or tampered message")            \
    X(COFFER_ERR_CANNOT_DECRYPT, "InvalidCiphertextException", 400, "no keyring could decrypt a data key")   \
    X(COFFER_ERR_COMMITMENT_MISMATCH, "InvalidCiphertextException", 400, "key commitment mismatch")          \
    X(COFFER_ERR_POLICY_VIOLATION, "ValidationException", 400, "commitment policy forbids this suite")       \
    X(COFFER_ERR_BAD_SIGNATURE, "InvalidCiphertextException", 400, "message signature does not verify")      \
    X(COFFER_ERR_LIMIT, "ValidationException", 400, "a configured limit was exceeded")                       \
    X(COFFER_ERR_KEYRING, "InternalFailure", 500, "keyring failure")                                         \
    /* Parameter Store */                                                                                    \
    X(COFFER_ERR_VERSION_NOT_FOUND, "ParameterVersionNotFound", 400, "version not found")                    \
    X(COFFER_ERR_LABEL_LIMIT, "ParameterVersionLabelLimitExceeded", 400,                                     \
      "A parameter version can have maximum 10 labels. Move one or more labels to another version and try "  \
      "again.")                                                                                              \
    X(COFFER_ERR_MAX_VERSIONS, "ParameterMaxVersionLimitExceeded", 400,                                      \
      "The oldest version of the parameter can't be deleted because it has a label.")                        \
    X(COFFER_ERR_INVALID_RESOURCE_TYPE, "InvalidResourceType", 400, "")                                      \
    X(COFFER_ERR_INVALID_RESOURCE_ID, "InvalidResourceId", 400, "")                                          \
    X(COFFER_ERR_TOO_MANY_TAGS, "TooManyTagsError", 400, "")                                                 \
    X(COFFER_ERR_HIERARCHY_LIMIT, "HierarchyLevelLimitExceededException", 400,                               \
      "A hierarchy can have a maximum of 15 levels.")                                                        \
    X(COFFER_ERR_PATTERN_MISMATCH, "ParameterPatternMismatchException", 400,                                 \
      "The parameter value does not match the allowed pattern.")                                             \
    X(COFFER_ERR_INVALID_PATTERN, "InvalidAllowedPatternException", 400,                                     \
      "The allowed pattern is not valid.")                                                                   \
    X(COFFER_ERR_INVALID_POLICY_TYPE, "InvalidPolicyTypeException", 400,                                     \
      "The policy type isn't supported. Parameter Store supports the following policy types: Expiration, "   \
      "ExpirationNotification, and NoChangeNotification.")                                                   \
    X(COFFER_ERR_INVALID_POLICY_ATTRIBUTE, "InvalidPolicyAttributeException", 400,                           \
      "A policy attribute or its value is invalid.")                                                         \
    X(COFFER_ERR_POLICIES_LIMIT, "PoliciesLimitExceededException", 400,                                      \
      "You specified more than the maximum number of allowed policies for the parameter. The maximum is "    \
      "10.")                                                                                                 \
    X(COFFER_ERR_INCOMPATIBLE_POLICY, "IncompatiblePolicyException", 400,                                    \
      "There is a conflict in the policies specified for this parameter. You can't, for example, specify "   \
      "two Expiration policies for a parameter. Review your policies, and try again.")                       \
    X(COFFER_ERR_INVALID_KEY_ID, "InvalidKeyId", 400, "The query key ID isn't valid.")                       \
    X(COFFER_ERR_TOO_MANY_UPDATES, "TooManyUpdates", 400,                                                    \
      "There are concurrent updates for a resource that supports one update at a time.")                     \
    X(COFFER_ERR_INVALID_FILTER_KEY, "InvalidFilterKey", 400, "The specified key is not valid.")             \
    X(COFFER_ERR_INVALID_FILTER_OPTION, "InvalidFilterOption", 400,                                          \
      "Valid options are Equals and BeginsWith. For Path filter, valid options are Recursive and OneLevel.") \
    /* Secrets Manager */                                                                                    \
    X(COFFER_ERR_INVALID_PARAMETER, "InvalidParameterException", 400, "A parameter value is not valid.")     \
    X(COFFER_ERR_PUBLIC_POLICY, "PublicPolicyException", 400,                                                \
      "The BlockPublicPolicy parameter is set to true and the resource policy did not prevent broad "        \
      "access to the secret.")                                                                               \
    X(COFFER_ERR_ENCRYPTION_FAILURE, "EncryptionFailure", 400, "Secrets Manager can't encrypt the value.")   \
    X(COFFER_ERR_DECRYPTION_FAILURE, "DecryptionFailure", 400, "Secrets Manager can't decrypt the value.")

typedef enum coffer_err {
#define COFFER_ERR_ENUM(code, type, status, msg) code,
    COFFER_ERRORS(COFFER_ERR_ENUM)
#undef COFFER_ERR_ENUM
        COFFER_ERR_COUNT
} coffer_err;

/* Static facts about a code. Never NULL. */
const char *coffer_err_name(coffer_err e);     /* "COFFER_ERR_DISABLED" */
const char *coffer_err_aws_type(coffer_err e); /* "DisabledException" */
int coffer_err_http_status(coffer_err e);
const char *coffer_err_default_message(coffer_err e);

/*
 * Records `code` with a printf-style detail message for this thread and returns `code`.
 * The detail becomes the AWS error `message`, so it must never contain secrets, paths or
 * OpenSSL strings. Use as: return coffer_fail(COFFER_ERR_VALIDATION, "KeyId too long (%zu)", n);
 */
#define coffer_fail(code, ...) coffer_fail_at((code), __FILE__, __LINE__, __VA_ARGS__)
coffer_err coffer_fail_at(coffer_err code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The code and detail of this thread's last coffer_fail (detail "" when none). */
coffer_err coffer_last_err(void);
const char *coffer_last_message(void);
const char *coffer_last_location(void); /* "file.c:123", for debug logs */
void coffer_clear_err(void);

/* Message for `e`: the thread's detail when it belongs to `e`, else the default. */
const char *coffer_err_message(coffer_err e);

/* Propagate, ensure. Use only where nothing needs releasing on failure. */
#define TRY(expr)                                                                                            \
    do {                                                                                                     \
        coffer_err try_rc_ = (expr);                                                                         \
        if (try_rc_ != COFFER_OK) {                                                                          \
            return try_rc_;                                                                                  \
        }                                                                                                    \
    } while (0)

#define ENSURE(cond, code)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            return coffer_fail((code), "%s", coffer_err_default_message(code));                              \
        }                                                                                                    \
    } while (0)

#define ENSURE_REF(p) ENSURE((p) != NULL, COFFER_ERR_USAGE)

/* In functions with an `out:` label and a `coffer_err rc`. */
#define TRY_OUT(expr)                                                                                        \
    do {                                                                                                     \
        if ((rc = (expr)) != COFFER_OK) {                                                                    \
            goto out;                                                                                        \
        }                                                                                                    \
    } while (0)

#define FAIL_OUT(code, ...)                                                                                  \
    do {                                                                                                     \
        rc = coffer_fail((code), __VA_ARGS__);                                                               \
        goto out;                                                                                            \
    } while (0)

#endif
