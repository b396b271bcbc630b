/*
 * AWS Signature Version 4, header form: the verifier used by cofferd on every request and the
 * signer used by our clients (KMS keyring, `coffer admin`, benchmarks). See ../shared/api/sigv4.md.
 *
 * Verification takes the request exactly as received (method, path, query, headers in arrival
 * order, raw body) and signs precisely the headers listed in SignedHeaders. Parsing of the
 * Authorization header is separate (sigv4_parse_authorization) so it can be fuzzed alone.
 */
#ifndef COFFER_AUTH_SIGV4_H
#define COFFER_AUTH_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/aws_ids.h"
#include "common/buf.h"
#include "crypto/crypto.h"

#define SIGV4_MAX_SIGNED_HEADERS 64
#define SIGV4_DEFAULT_SKEW_S (15 * 60)

struct sigv4_header {
    const char *name;  /* as received (any case) */
    const char *value; /* as received */
};

/* A received (or to-be-sent) HTTP request. Pointers are borrowed. */
struct sigv4_request {
    const char *method; /* "POST" */
    const char *path;   /* "/" (not yet URI-encoded; the canonical form encodes it) */
    const char *query;  /* "" or the raw query string without '?' */
    const struct sigv4_header *headers;
    size_t n_headers;
    coffer_cursor body;
    bool raw_path; /* false (default): remove dot segments and empty segments first, as every AWS
                      service but S3 does; true: encode the path exactly as given */
};

/* The parsed Authorization header; cursors point into the header value. */
struct sigv4_authorization {
    coffer_cursor access_key_id;
    coffer_cursor date; /* yyyymmdd of the credential scope */
    coffer_cursor region;
    coffer_cursor service;
    coffer_cursor signed_headers; /* "content-type;host;x-amz-date" */
    coffer_cursor signature;      /* 64 lowercase hex */
    coffer_cursor terminator;     /* last scope element, "aws4_request" when well formed */
};

/*
 * Parses "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request,
 * SignedHeaders=..., Signature=...". Errors: COFFER_ERR_INCOMPLETE_SIGNATURE with an AWS-style
 * message for missing or malformed parts.
 */
coffer_err sigv4_parse_authorization(coffer_cursor header, struct sigv4_authorization *out)
    __attribute__((warn_unused_result));

/*
 * What the verifier learns about an access key from the credential store. `secret` must stay
 * valid until sigv4_verify returns; the lookup copies account and principal data for the caller.
 */
struct sigv4_identity {
    char access_key_id[AWS_ACCESS_KEY_ID_MAX + 1];
    char account_id[AWS_ACCOUNT_ID_LEN + 1];
    char principal_arn[AWS_PRINCIPAL_ARN_MAX + 1];
    char principal_id[AWS_PRINCIPAL_ID_MAX + 1];
    char principal_type[AWS_PRINCIPAL_TYPE_MAX + 1];
    char role_arn[AWS_PRINCIPAL_ARN_MAX + 1]; /* assumed-role sessions: the role's ARN; "" otherwise */
    coffer_buf secret;  /* secret access key (secret buffer), owned: freed by sigv4_identity_clean */
    int64_t expires_at; /* 0 = never; temporary credentials (session token) expire */
    int64_t issued_at;  /* temporary credentials: when issued (epoch s, aws:TokenIssueTime); 0 = not known */
};
void sigv4_identity_clean(struct sigv4_identity *id);

/*
 * Credential lookup: fill *out for `access_key_id` (and check `session_token`, NULL when the
 * request has none). Return COFFER_ERR_UNRECOGNIZED_CLIENT for unknown keys or bad tokens.
 */
typedef coffer_err (*sigv4_lookup_fn)(void *ctx, coffer_cursor access_key_id, const char *session_token,
                                      struct sigv4_identity *out);

struct sigv4_verify_opts {
    const char *region;  /* the region we answer for; scope must match */
    const char *service; /* "kms"; scope must match */
    int64_t now_s;       /* server clock (epoch seconds) */
    int max_skew_s;      /* SIGV4_DEFAULT_SKEW_S */
};

/*
 * Verifies `req`. On success fills *who (caller cleans it). Errors, with AWS messages:
 * COFFER_ERR_MISSING_AUTH, COFFER_ERR_INCOMPLETE_SIGNATURE, COFFER_ERR_UNRECOGNIZED_CLIENT,
 * COFFER_ERR_INVALID_SIGNATURE (mismatch, scope, skew), COFFER_ERR_EXPIRED_TOKEN.
 * Thread-safe; caches derived signing keys per (key, date, region, service).
 * Order of checks: Authorization present and well formed, date header, scope (date, region,
 * service, terminator), skew, `host` signed, X-Amz-Content-Sha256 (when sent) equal to the body
 * hash, lookup (gets the trimmed X-Amz-Security-Token, signed or not), expiry, signature.
 * *who is written only on success.
 */
coffer_err sigv4_verify(const struct sigv4_request *req, const struct sigv4_verify_opts *opts,
                        sigv4_lookup_fn lookup, void *lookup_ctx, struct sigv4_identity *who)
    __attribute__((warn_unused_result));

/* Signing (clients). */
struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL when none */
};

/*
 * Computes the Authorization header value for `req`, signing `signed_headers` (a ';'-joined
 * lowercase list that must name headers present in req, including host and x-amz-date).
 * `amz_date` is "YYYYMMDDTHHMMSSZ". Appends the value (no NUL) to `authorization`.
 * creds->session_token is not added to the request here: the caller sends it as an
 * X-Amz-Security-Token header and lists it in `signed_headers`, as botocore does.
 */
coffer_err sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *creds,
                      const char *region, const char *service, const char *amz_date,
                      const char *signed_headers, coffer_buf *authorization)
    __attribute__((warn_unused_result));

/* Drops every cached signing key (e.g. after a key is deleted). Thread-safe. */
void sigv4_cache_clear(void);

/* Building blocks, exposed for tests: canonical request text and string to sign. */
coffer_err sigv4_canonical_request(const struct sigv4_request *req, coffer_cursor signed_headers,
                                   coffer_buf *out) __attribute__((warn_unused_result));
coffer_err sigv4_string_to_sign(coffer_cursor canonical_request, const char *amz_date, const char *scope,
                                coffer_buf *out) __attribute__((warn_unused_result));
coffer_err sigv4_signing_key(coffer_cursor secret, const char *date, const char *region, const char *service,
                             uint8_t out[CRYPTO_SHA256_LEN]) __attribute__((warn_unused_result));

#endif
