/*
 * Access keys: the credential store the SigV4 verifier consults. A record lives in the store
 * under "iam/access-key/<AKID>" with the secret access key sealed by the barrier (identity
 * "iam-access-key/<AKID>"); lookups are cached in memory. Issue-4 work (IAM users, roles, STS)
 * grows this module; for now there is the account administrator created on first start.
 */
#ifndef COFFER_IAM_CREDENTIALS_H
#define COFFER_IAM_CREDENTIALS_H

#include <stdbool.h>

#include "api/api.h"
#include "auth/sigv4.h"
#include "iam/identity.h"
#include "seal/seal.h"
#include "store/store.h"

/* Access key ids this server issues: "AKIA" (long-term) or "ASIA" (session) + 16 base32. */
#define IAM_ACCESS_KEY_ID_LEN 20

typedef struct iam_creds iam_creds;

coffer_err iam_creds_new(store *st, seal *sl, iam_creds **out) __attribute__((warn_unused_result));
void iam_creds_free(iam_creds *c);

/*
 * Creates an access key for `principal_arn` in `account_id` (AKID "AKIA" + 16 uppercase
 * base32 chars, secret 40 base64-ish chars) and stores it durably. Writes the secret
 * (NUL-terminated) into the secret buffer `secret_out`.
 */
coffer_err iam_creds_create(iam_creds *c, const char *account_id, const char *principal_arn,
                            enum api_principal_kind kind, char akid_out[IAM_ACCESS_KEY_ID_LEN + 1],
                            coffer_buf *secret_out) __attribute__((warn_unused_result));

/*
 * The same inside the caller's transaction `t` (IAM CreateAccessKey, account creation), with
 * the principal id given (the user's "AIDA..." id; NULL picks one as iam_creds_create does).
 * The record becomes visible when the caller commits; lookups load it from the store then.
 */
coffer_err iam_creds_create_in(iam_creds *c, store_txn *t, const char *account_id, const char *principal_arn,
                               enum api_principal_kind kind, const char *principal_id,
                               char akid_out[IAM_ACCESS_KEY_ID_LEN + 1], coffer_buf *secret_out)
    __attribute__((warn_unused_result));

/*
 * Marks a key Active or Inactive, or deletes it, inside `t` (COFFER_ERR_NOT_FOUND when there
 * is no such key). After committing, the caller must call iam_creds_evict so the change takes
 * effect at once on every worker.
 */
coffer_err iam_creds_set_status_in(iam_creds *c, store_txn *t, const char *akid, bool active)
    __attribute__((warn_unused_result));
coffer_err iam_creds_delete_in(iam_creds *c, store_txn *t, const char *akid)
    __attribute__((warn_unused_result));

/* Drops `akid` from the lookup cache (the next lookup reads the store). Thread-safe. */
void iam_creds_evict(iam_creds *c, const char *akid);

/* What a temporary credential (STS AssumeRole) stands for. Strings are borrowed. */
struct iam_session_spec {
    const char *account_id;   /* the role's account */
    const char *role_arn;     /* "arn:aws:iam::ACCT:role/NAME" */
    const char *session_arn;  /* "arn:aws:sts::ACCT:assumed-role/NAME/SESSION" */
    const char *principal_id; /* "AROA...:SESSION" */
    int64_t issued_at;        /* epoch seconds; aws:TokenIssueTime of requests made with it */
    int64_t expires_at;       /* epoch seconds */
};

/*
 * Issues temporary credentials: an "ASIA..." access key id, a secret (appended NUL-terminated
 * to the secret buffer `secret_out`) and the session token (appended NUL-terminated to
 * `token_out`). Nothing is stored: the token is the session sealed by the barrier, so lookups
 * open it and it stays valid across restarts until `expires_at`.
 */
coffer_err iam_creds_issue_session(iam_creds *c, const struct iam_session_spec *spec,
                                   char akid_out[IAM_ACCESS_KEY_ID_LEN + 1], coffer_buf *secret_out,
                                   coffer_buf *token_out) __attribute__((warn_unused_result));

/*
 * Sessions end with their role: once set, every lookup of a session token asks `roles` (copied;
 * its ctx must outlive c) for the role the session was issued for, through the source's policy
 * cache, and refuses the token when that role no longer exists or is another role of the same
 * name (iam_policy_list_current). Without a source, tokens are checked only for seal and expiry.
 * Call before serving requests.
 */
void iam_creds_set_session_roles(iam_creds *c, const struct iam_identity_source *roles);

/*
 * A sigv4_lookup_fn; ctx is the iam_creds. With a session token it opens the token (which must
 * belong to `access_key_id`) and fills role_arn, issued_at and expires_at; a token that does not
 * open, or whose role was deleted since, is COFFER_ERR_UNRECOGNIZED_CLIENT (Query services answer
 * InvalidClientTokenId). Expiry itself is the verifier's check.
 */
coffer_err iam_creds_lookup(void *ctx, coffer_cursor access_key_id, const char *session_token,
                            struct sigv4_identity *out);

#endif
