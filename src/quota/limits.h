/*
 * Resource quotas: how many of each thing one account may hold and how large its documents may
 * be. The defaults are AWS's default quotas; cofferd lets the operator change each one (see
 * server/config.c). Going over a count quota is LimitExceededException (IAM: LimitExceeded);
 * an oversized document is the error AWS gives for that operation.
 *
 * Counts are kept as per-account counters written in the same store transaction as the create
 * or delete they count, so checking a quota costs one record read.
 */
#ifndef COFFER_QUOTA_LIMITS_H
#define COFFER_QUOTA_LIMITS_H

#include <stddef.h>

struct coffer_limits {
    /* KMS, per account and region */
    size_t kms_keys;             /* customer managed keys (AWS: 100,000) */
    size_t kms_aliases_per_key;  /* aliases pointing at one key (AWS: 50) */
    size_t kms_tags_per_key;     /* tags on one key (AWS: 50) */
    size_t kms_key_policy_bytes; /* key policy document (AWS: 32 KB) */
    size_t kms_grants_per_key;   /* grants on one key (AWS: 50,000) */
    /* IAM, per account */
    size_t iam_users;              /* AWS: 5,000 */
    size_t iam_roles;              /* AWS: 1,000 */
    size_t iam_policies;           /* customer managed policies (AWS: 1,500) */
    size_t iam_attached;           /* managed policies attached to one user or role (AWS: 10) */
    size_t iam_user_inline_chars;  /* all inline policies of one user together (AWS: 2,048) */
    size_t iam_role_inline_chars;  /* all inline policies of one role together (AWS: 10,240) */
    size_t iam_managed_doc_chars;  /* one managed policy document (AWS: 6,144) */
    size_t iam_trust_doc_chars;    /* one role trust policy (AWS: 2,048) */
};

#define COFFER_LIMITS_DEFAULT                                                                                         \
    {                                                                                                                 \
        .kms_keys = 100000, .kms_aliases_per_key = 50, .kms_tags_per_key = 50, .kms_key_policy_bytes = 32768,       \
        .kms_grants_per_key = 50000,                                                                                \
        .iam_users = 5000, .iam_roles = 1000, .iam_policies = 1500, .iam_attached = 10,                             \
        .iam_user_inline_chars = 2048, .iam_role_inline_chars = 10240, .iam_managed_doc_chars = 6144,               \
        .iam_trust_doc_chars = 2048,                                                                                 \
    }

#endif
