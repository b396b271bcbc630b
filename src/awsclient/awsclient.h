/*
 * The client side of an AWS-compatible API, shared by every caller that talks to cofferd or to
 * AWS itself: the KMS keyring in libcoffer, `coffer admin` and the load generator.
 *
 * Three parts, usable separately:
 *   - the credentials chain, as the AWS SDKs resolve it: the environment (AWS_ACCESS_KEY_ID,
 *     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the shared credentials file, then the shared
 *     config file, for one profile; and the region (AWS_REGION, AWS_DEFAULT_REGION, config file);
 *   - SigV4 signing of an AWS JSON request (auth/sigv4.h does the arithmetic), for callers with
 *     their own transport;
 *   - a client object: endpoint, CA, credentials and one keep-alive libcurl handle, making AWS JSON
 *     calls (X-Amz-Target) and AWS Query calls (Action=...&Version=..., as IAM and STS speak),
 *     with bounded retries and the AWS error type read out of error answers.
 *
 * Nothing here knows a service: callers pass the signing name and the X-Amz-Target. It is linked
 * into libcoffer, so it uses only common/ and auth/ and exports nothing (no COFFER_API).
 */
#ifndef COFFER_AWSCLIENT_AWSCLIENT_H
#define COFFER_AWSCLIENT_AWSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define AWSCLIENT_JSON_CONTENT_TYPE "application/x-amz-json-1.1"
#define AWSCLIENT_QUERY_CONTENT_TYPE "application/x-www-form-urlencoded; charset=utf-8"
#define AWSCLIENT_AMZ_DATE_LEN 17    /* "YYYYMMDDTHHMMSSZ" + NUL */
#define AWSCLIENT_ERROR_TYPE_LEN 128 /* AWS error type names are short ("ThrottlingException") */
#define AWSCLIENT_ERROR_MESSAGE_LEN 256
#define AWSCLIENT_MAX_FILE (1024u * 1024u) /* larger shared credentials/config files are refused */
#define AWSCLIENT_DEFAULT_MAX_RESPONSE (1024u * 1024u)
#define AWSCLIENT_DEFAULT_MAX_ATTEMPTS 4 /* first try + 3 retries, as the AWS SDKs' standard mode */
#define AWSCLIENT_BACKOFF_BASE_MS 50     /* retry n waits BASE << n ms */
#define AWSCLIENT_TIMEOUT_S 30L          /* whole request */
#define AWSCLIENT_CONNECT_TIMEOUT_S 10L

/* ================================================================================================
 * Credentials chain
 * ============================================================================================= */

/*
 * Where to look. Every field may be NULL (the SDK default); "" for a file means "do not read
 * any file there". Borrowed for the duration of the call.
 */
struct awsclient_source {
    const char *profile;          /* NULL: $AWS_PROFILE, else "default" */
    const char *credentials_file; /* NULL: $AWS_SHARED_CREDENTIALS_FILE, else $HOME/.aws/credentials */
    const char *config_file;      /* NULL: $AWS_CONFIG_FILE, else $HOME/.aws/config */
    bool skip_env;                /* ignore the AWS_* credential and region variables (and AWS_PROFILE) */
};

/* Resolved credentials. Zero-initialise, fill with a _load/_set, release with _clean. */
struct awsclient_credentials {
    char *access_key_id;      /* owned */
    coffer_buf secret_key;    /* secret buffer, NUL-terminated */
    coffer_buf session_token; /* secret buffer, NUL-terminated; len 0 when there is none */
};

/*
 * Resolves credentials in the SDK order: the environment (both AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY set, unless skip_env), then section [profile] of the credentials file,
 * then section [profile NAME] ([default] for the default profile) of the config file. A source
 * that names an access key without a secret key (or the reverse) is an error, not skipped.
 * Missing files are skipped. Errors: COFFER_ERR_CONFIG (nothing found, partial credentials, a
 * file too large), COFFER_ERR_NOMEM. *out is written only on success.
 */
coffer_err awsclient_credentials_load(const struct awsclient_source *src, struct awsclient_credentials *out)
    __attribute__((warn_unused_result, nonnull(1, 2)));

/* Explicit credentials (copied). session_token may be NULL or "". Errors: COFFER_ERR_CONFIG, NOMEM. */
coffer_err awsclient_credentials_set(struct awsclient_credentials *out, const char *access_key_id,
                                     const char *secret_key, const char *session_token)
    __attribute__((warn_unused_result, nonnull(1)));

/* Wipes the secrets and frees everything; the struct may be reused. Accepts a zeroed struct. */
void awsclient_credentials_clean(struct awsclient_credentials *c);

/*
 * The region: $AWS_REGION, $AWS_DEFAULT_REGION (unless skip_env), then `region` in the profile's
 * config section. *out is a malloc'd string, or NULL when no source names one (not an error).
 * Errors: COFFER_ERR_CONFIG (a region that is not [a-z0-9-]+, a file too large), COFFER_ERR_NOMEM.
 */
coffer_err awsclient_region_load(const struct awsclient_source *src, char **out)
    __attribute__((warn_unused_result, nonnull(1, 2)));

/* True when `region` can be put in a signing scope and a host name: [a-z0-9-]+. */
bool awsclient_region_valid(const char *region);

/* ================================================================================================
 * Signing
 * ============================================================================================= */

/*
 * Signs an AWS JSON request (POST / with Content-Type AWSCLIENT_JSON_CONTENT_TYPE, Host, X-Amz-Date
 * and X-Amz-Target, plus X-Amz-Security-Token when the credentials have a session token, all
 * signed as botocore does) made at `now` (epoch seconds). Writes the X-Amz-Date value to
 * amz_date and appends the Authorization value (NUL-terminated) to `authorization`.
 */
coffer_err awsclient_json_sign(const struct awsclient_credentials *creds, const char *region,
                               const char *service, const char *host, const char *target, coffer_cursor body,
                               int64_t now, char amz_date[AWSCLIENT_AMZ_DATE_LEN], coffer_buf *authorization)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 4, 5, 8, 9)));

/* ================================================================================================
 * Client
 * ============================================================================================= */

typedef struct awsclient awsclient;

struct awsclient_config {
    const char *service;     /* SigV4 signing name: "kms", "coffer-admin" (required) */
    const char *region;      /* required, see awsclient_region_valid */
    const char *endpoint;    /* "http(s)://host[:port][/]"; NULL: $AWS_ENDPOINT_URL_<env_service>,
                                $AWS_ENDPOINT_URL, then https://<service>.<region>.amazonaws.com */
    const char *env_service; /* "KMS" for AWS_ENDPOINT_URL_KMS; NULL: none */
    const char *ca_bundle;   /* PEM file to trust; NULL: $AWS_CA_BUNDLE, else the system store */
    bool skip_env;           /* read no AWS_ENDPOINT_URL* / AWS_CA_BUNDLE */
    const char *user_agent;  /* NULL: "coffer" */
    size_t max_response;     /* 0: AWSCLIENT_DEFAULT_MAX_RESPONSE */
    int max_attempts;        /* 0: AWSCLIENT_DEFAULT_MAX_ATTEMPTS */
    const struct awsclient_credentials *credentials; /* required; copied */
};

/*
 * Builds a client. Strings are copied. Errors: COFFER_ERR_CONFIG (bad endpoint or region, no
 * credentials, HTTP client initialisation), COFFER_ERR_NOMEM. *out is written only on success.
 */
coffer_err awsclient_new(const struct awsclient_config *cfg, awsclient **out)
    __attribute__((warn_unused_result, nonnull(1, 2)));
void awsclient_free(awsclient *c); /* wipes the copied secrets; accepts NULL */

/* What the client resolved, for messages and tests: "https://host[:port]", "host[:port]", the CA. */
const char *awsclient_endpoint(const awsclient *c) __attribute__((nonnull));
const char *awsclient_host(const awsclient *c) __attribute__((nonnull));
const char *awsclient_ca_bundle(const awsclient *c) __attribute__((nonnull)); /* NULL: system store */
const char *awsclient_access_key_id(const awsclient *c) __attribute__((nonnull));

/* The answer to a call. _init before the call, _clean after (wipes the body). */
struct awsclient_answer {
    long status;                                     /* HTTP status of the last attempt */
    coffer_buf body;                                 /* secret buffer: answers may carry key material */
    char error_type[AWSCLIENT_ERROR_TYPE_LEN];       /* non-2xx: "NotFoundException"; "" on success */
    char error_message[AWSCLIENT_ERROR_MESSAGE_LEN]; /* non-2xx: the server's message, may be "" */
};
void awsclient_answer_init(struct awsclient_answer *a) __attribute__((nonnull));
void awsclient_answer_clean(struct awsclient_answer *a);

/*
 * One AWS JSON call: POST `body` (borrowed; it is never copied, so a caller holding plaintext in
 * it wipes it afterwards) with X-Amz-Target `target` ("TrentService.Encrypt"). Throttling
 * answers, 5xx and connection failures are retried up to max_attempts with exponential backoff;
 * the answer of the last attempt is returned. Returns COFFER_OK whenever an HTTP answer arrived:
 * the caller checks ans->status (error answers also fill error_type and error_message).
 * Errors: COFFER_ERR_UNAVAILABLE (no answer: "<target> to <endpoint> failed: <reason>"),
 * COFFER_ERR_LIMIT (answer larger than max_response), COFFER_ERR_NOMEM.
 * Thread-safe: calls on one client are serialised (one connection).
 */
coffer_err awsclient_json_call(awsclient *c, const char *target, coffer_cursor body,
                               struct awsclient_answer *ans)
    __attribute__((warn_unused_result, nonnull(1, 2, 4)));

/* One Query parameter ("UserName", "alice"); both are form-encoded by the call. */
struct awsclient_param {
    const char *name;
    const char *value;
};

/*
 * One AWS Query call (IAM, STS): POST "Action=<action>&Version=<version>&<params>" form-encoded,
 * no X-Amz-Target; the answer is XML, left to the caller. Errors, retries and thread-safety as
 * awsclient_json_call; error answers are read with awsclient_query_error. The form is built in a
 * secret buffer and wiped, since parameters may hold secrets.
 */
coffer_err awsclient_query_call(awsclient *c, const char *action, const char *version,
                                const struct awsclient_param *params, size_t n_params,
                                struct awsclient_answer *ans)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 6)));

/*
 * The AWS error type and message of a JSON error answer: "__type" (or "code") without any
 * "namespace#" prefix or ":suffix", and "message" (or "Message"). Type "UnknownError" and
 * message "" when the body says nothing usable. Never fails; exposed for tests and fuzzing.
 */
void awsclient_json_error(coffer_cursor body, char type[AWSCLIENT_ERROR_TYPE_LEN],
                          char message[AWSCLIENT_ERROR_MESSAGE_LEN]) __attribute__((nonnull(2, 3)));

/* The same for a Query error answer: <Error><Code> and <Error><Message>. */
void awsclient_query_error(coffer_cursor body, char type[AWSCLIENT_ERROR_TYPE_LEN],
                           char message[AWSCLIENT_ERROR_MESSAGE_LEN]) __attribute__((nonnull(2, 3)));

/* True when an answer should be retried: 5xx, 429 or a throttling error type. */
bool awsclient_retryable(long status, const char *error_type) __attribute__((nonnull(2)));

#endif
