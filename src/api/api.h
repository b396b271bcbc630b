/*
 * The contract between the services (KMS now; SSM and Secrets Manager later) and whatever
 * carries their requests. It knows no transport: a service includes only this folder, and the
 * HTTP pipeline (src/http) is one user of the contract among others (unit tests, fuzz targets).
 * A service is a table of operations keyed by X-Amz-Target; the pipeline authenticates
 * the caller (SigV4), applies quotas, parses the JSON body, calls the handler, writes the audit
 * event and serialises the answer or the AWS error. Handlers never see HTTP or TLS.
 *
 *   listener -> sigv4 -> quota -> handler(api_call) -> audit -> response
 */
#ifndef COFFER_API_API_H
#define COFFER_API_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define API_ACCOUNT_ID_LEN 12

/*
 * What kind of principal is calling. The zero value is no principal at all (an unauthenticated
 * or unknown caller), so a caller left zeroed is never mistaken for an account root.
 */
enum api_principal_kind {
    API_PRINCIPAL_UNKNOWN = 0,
    API_PRINCIPAL_ROOT,         /* an account's root credentials */
    API_PRINCIPAL_USER,         /* an IAM user's access key */
    API_PRINCIPAL_ASSUMED_ROLE, /* temporary credentials of a role session (STS AssumeRole) */
};

/*
 * The names of a kind, from one table: `trail` is CloudTrail's userIdentity.type and the form
 * credential records store ("Root", "IAMUser", "AssumedRole"; "Unknown"); `policy` is the value
 * of aws:PrincipalType ("Account", "User", "AssumedRole"; NULL for API_PRINCIPAL_UNKNOWN).
 */
const char *api_principal_trail_type(enum api_principal_kind kind);
const char *api_principal_policy_type(enum api_principal_kind kind);
/* The kind whose trail name is `trail_type`; API_PRINCIPAL_UNKNOWN for any other string or NULL. */
enum api_principal_kind api_principal_kind_parse(const char *trail_type);

/* Who is calling: filled by the SigV4 verifier from the credential record. */
struct api_caller {
    char account_id[API_ACCOUNT_ID_LEN + 1]; /* "000000000000" */
    char access_key_id[129];
    char principal_arn[256];  /* "arn:aws:iam::000000000000:root" or a user/role ARN */
    char principal_id[129];   /* AWS userIdentity.principalId */
    enum api_principal_kind principal_kind;
    char role_arn[256];       /* for an AssumedRole session, "arn:aws:iam::ACCOUNT:role/NAME"; else "" */
    const char *source_ip;    /* borrowed, valid for the call */
    const char *user_agent;   /* borrowed, may be "" */
    bool secure_transport;    /* true over TLS */
    /* Temporary credentials: when the session was issued (epoch s), aws:TokenIssueTime. 0 for
     * long-term keys and for tokens issued before the time was sealed in: the key is absent. */
    int64_t token_issued_at;
};

/*
 * One call of one operation. The handler reads `input` (a JSON object, borrowed) and sets
 * `output` to a new JSON object on success (the pipeline takes ownership; NULL means `{}`).
 * For audit, the handler may set `audit_request` (requestParameters: never plaintext or key
 * material), `audit_response` (responseElements) and `audit_resources` (array of
 * {"accountId","type","ARN"}); the pipeline takes ownership of all three. When unset, the
 * pipeline records the input with blob members (Plaintext, CiphertextBlob, ...) removed.
 */
struct api_call {
    const struct api_caller *caller;
    const char *region;     /* the region this server answers for, e.g. "us-east-1" */
    const char *request_id; /* uuid, also x-amzn-RequestId */
    const char *operation;  /* "Encrypt" */
    int64_t now_ms;         /* request arrival time */
    const json_t *input;
    json_t *output;
    json_t *audit_request;
    json_t *audit_response;
    json_t *audit_resources;
};

/* Flags of an operation. */
enum api_op_flags {
    API_OP_READONLY = 1 << 0,   /* CloudTrail readOnly=true */
    API_OP_CRYPTO = 1 << 1,     /* counts against the shared cryptographic quota */
    API_OP_DATA_EVENT = 1 << 2, /* request parameters may hold secrets: never echo input */
};

typedef coffer_err (*api_handler)(void *service_state, struct api_call *call);

struct api_op {
    const char *name;   /* "Encrypt" (target is "<prefix>.<name>") */
    api_handler handler;
    unsigned flags;     /* enum api_op_flags */
    double quota_rps;   /* per-operation control-plane quota (ignored for API_OP_CRYPTO) */
};

/*
 * How a service is spoken. JSON (the zero value): POST with X-Amz-Target "<prefix>.<op>" and a
 * JSON body. QUERY (IAM, STS): POST of a form body "Action=<op>&Version=...", routed by the
 * SigV4 credential-scope service; the form becomes the JSON input (http/query.h) and the output
 * is written as XML in `xml_namespace`.
 */
enum api_protocol {
    API_PROTOCOL_JSON = 0,
    API_PROTOCOL_QUERY = 1,
};

struct api_service {
    const char *target_prefix; /* "TrentService"; NULL for a Query service */
    const char *signing_name;  /* "kms": the SigV4 credential-scope service */
    const char *event_source;  /* "kms.amazonaws.com" for CloudTrail */
    const struct api_op *ops;  /* sorted by name (binary search) */
    size_t n_ops;
    void *state;               /* passed to every handler */
    enum api_protocol protocol;
    const char *xml_namespace; /* Query services: "https://iam.amazonaws.com/doc/2010-05-08/" */
    bool global;               /* a global service (IAM): any region in the credential scope */
};

/* Binary search of svc->ops; NULL when unknown. */
const struct api_op *api_service_find_op(const struct api_service *svc, const char *name, size_t name_len);

#endif
