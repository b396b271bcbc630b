/*
 * Access keys: the credential store the SigV4 verifier consults. A record lives in the store
 * under "iam/access-key/<AKID>" with the secret access key sealed by the barrier (identity
 * "iam-access-key/<AKID>"); lookups are cached in memory. Issue-4 work (IAM users, roles, STS)
 * grows this module; for now there is the account administrator created on first start.
 */
#ifndef COFFER_IAM_CREDENTIALS_H
#define COFFER_IAM_CREDENTIALS_H

#include "auth/sigv4.h"
#include "seal/seal.h"
#include "store/store.h"

typedef struct iam_creds iam_creds;

coffer_err iam_creds_new(store *st, seal *sl, iam_creds **out) __attribute__((warn_unused_result));
void iam_creds_free(iam_creds *c);

/*
 * Creates an access key for `principal_arn` in `account_id` (AKID "AKIA" + 16 uppercase
 * base32 chars, secret 40 base64-ish chars) and stores it durably. Writes the secret
 * (NUL-terminated) into the secret buffer `secret_out`.
 */
coffer_err iam_creds_create(iam_creds *c, const char *account_id, const char *principal_arn,
                            const char *principal_type, char akid_out[21], coffer_buf *secret_out)
    __attribute__((warn_unused_result));

/* A sigv4_lookup_fn; ctx is the iam_creds. */
coffer_err iam_creds_lookup(void *ctx, coffer_cursor access_key_id, const char *session_token,
                            struct sigv4_identity *out);

#endif
