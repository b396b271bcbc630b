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

#include "common/aws_ids.h"
#include "common/err.h"

#define API_ACCOUNT_ID_LEN AWS_ACCOUNT_ID_LEN

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
    char access_key_id[AWS_ACCESS_KEY_ID_MAX + 1];
    char principal_arn[AWS_PRINCIPAL_ARN_MAX + 1]; /* "arn:aws:iam::000000000000:root" or a user/role ARN */
    char principal_id[AWS_PRINCIPAL_ID_MAX + 1];   /* AWS userIdentity.principalId */
    enum api_principal_kind principal_kind;
    char role_arn[AWS_PRINCIPAL_ARN_MAX + 1]; /* AssumedRole: "arn:aws:iam::ACCOUNT:role/NAME"; else "" */
    const char *source_ip;                    /* borrowed, valid for the call */
    const char *user_agent;                   /* borrowed, may be "" */
    bool secure_transport;                    /* true over TLS */
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
    const char *event_id;   /* uuid, the eventID of the request's audit event */
    const char *operation;  /* "Encrypt" */
    int64_t now_ms;         /* request arrival time */
    const json_t *input;
    json_t *output;
    json_t *audit_request;
    json_t *audit_response;
    json_t *audit_resources;
    /* Set by a handler whose audit fields could not be built whole (out of memory): the
     * pipeline then refuses the request rather than record a partial event. */
    bool audit_incomplete;
    /*
     * For an API_OP_KEY_QUOTA operation the pipeline leaves the quota to the handler, which
     * calls quota_take(quota_ctx, bucket, rps) once it knows which bucket the request counts
     * against ("crypto": the shared cryptographic bucket, rps ignored; else "<service>:<name>"
     * at `rps`). False: over quota. NULL when quotas are off.
     */
    bool (*quota_take)(void *quota_ctx, const char *bucket, double rps);
    void *quota_ctx;
    /*
     * Set when another service makes this call in-process on the caller's behalf (Parameter
     * Store encrypting a SecureString through KMS): its endpoint, "ssm.<region>.amazonaws.com",
     * the value of kms:ViaService. NULL for a request that came over the wire.
     */
    const char *via_service;
    /* The region of the credential scope when the service accepted one other than `region`
     * (api_service.scope_region_ok); NULL for a request signed for this region. */
    const char *scope_region;
};

/* Flags of an operation. */
enum api_op_flags {
    API_OP_READONLY = 1 << 0,   /* CloudTrail readOnly=true */
    API_OP_CRYPTO = 1 << 1,     /* counts against the shared cryptographic quota */
    API_OP_DATA_EVENT = 1 << 2, /* request parameters may hold secrets: never echo input */
    API_OP_KEY_QUOTA = 1 << 3, /* with API_OP_CRYPTO: the bucket depends on the key; the handler charges it */
};

typedef coffer_err (*api_handler)(void *service_state, struct api_call *call);

struct api_op {
    const char *name; /* "Encrypt" (target is "<prefix>.<name>") */
    api_handler handler;
    unsigned flags;   /* enum api_op_flags */
    double quota_rps; /* per-operation control-plane quota (ignored for API_OP_CRYPTO) */
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

/*
 * How a service names an error on the wire where its API differs from the default of
 * common/err.h (the spelling most AWS JSON services share: InternalFailure, ValidationException,
 * ...). KMS answers an internal error as KMSInternalException, Secrets Manager a missing secret
 * as ResourceNotFoundException. Zero fields keep the default.
 */
struct api_error_name {
    coffer_err code;
    const char *type;    /* "KMSInternalException"; NULL: err.h's */
    int status;          /* HTTP status; 0: err.h's */
    const char *message; /* message when the failing site gave none; NULL: err.h's */
};

/* The wire spelling of one error for one service. */
struct api_error {
    const char *type;
    int status;
    const char *message;
};

/*
 * A periodic job of a service (KMS: the deletion sweeper). The daemon's scheduler runs every
 * job of every registered service on its own thread, concurrently with requests:
 * fn(ctx, now_ms) at most every `period_s` seconds, rounded up to the scheduler's tick; a
 * failure is logged and the job runs again at its next period.
 */
typedef coffer_err (*api_job_fn)(void *ctx, int64_t now_ms);
struct api_job {
    const char *name; /* for logs: "key deletion sweep" */
    api_job_fn fn;
    void *ctx;
    int period_s; /* 0: every tick of the scheduler (cofferd --sweep-interval) */
};

/*
 * Everything a service declares about itself; the layers below it (pipeline, audit, scheduler)
 * know a service only through this.
 */
struct api_service {
    const char *target_prefix; /* "TrentService"; NULL for a Query service */
    const char *signing_name;  /* "kms": the SigV4 credential-scope service */
    const char *event_source;  /* "kms.amazonaws.com": eventSource of its CloudTrail events */
    const struct api_op *ops;  /* sorted by name (binary search) */
    size_t n_ops;
    void *state; /* passed to every handler */
    enum api_protocol protocol;
    const char *xml_namespace; /* Query services: "https://iam.amazonaws.com/doc/2010-05-08/" */
    bool global;               /* a global service (IAM): any region in the credential scope */
    /* Its error names where they differ from err.h's (see api_error_name); may be empty. */
    const struct api_error_name *errors;
    size_t n_errors;
    /*
     * NULL-terminated names of the JSON members whose values are secret or bulky in any of its
     * operations, inputs and outputs ("Plaintext", "SecretAccessKey"): the pipeline wipes them
     * (at any depth) before releasing a request, and leaves them out of the requestParameters it
     * records when the handler sets none. A name means the same thing in every operation of a
     * service, so one list per service errs only on the side of wiping. NULL: none.
     */
    const char *const *sensitive_members;
    const struct api_job *jobs; /* run by the daemon's scheduler; may be empty */
    size_t n_jobs;
    /*
     * May operation `op` be signed for `region`, another region than this server's? NULL: never
     * (a global service takes any region anyway). A request so accepted reaches its handler
     * with api_call.scope_region set.
     */
    bool (*scope_region_ok)(void *state, const char *op, const char *region);
};

/* Binary search of svc->ops; NULL when unknown. */
const struct api_op *api_service_find_op(const struct api_service *svc, const char *name, size_t name_len);

/*
 * The order api_service_find_op relies on: every name strictly after the one before it in
 * byte order (strcmp), so none is out of place or listed twice. COFFER_ERR_INTERNAL naming the
 * offending pair otherwise; a service checks its table when it is created, and its unit test.
 */
coffer_err api_ops_check(const struct api_op *ops, size_t n_ops) __attribute__((warn_unused_result));

/* How `svc` answers `code`: its own name, status and default message where it declares them,
 * else err.h's. `svc` may be NULL (a request no service claimed): err.h's. */
struct api_error api_service_error(const struct api_service *svc, coffer_err code);

/* The message of `code` for `svc`: this thread's detail when it belongs to `code` (coffer_fail),
 * else the service's default message. */
const char *api_service_error_message(const struct api_service *svc, coffer_err code);

/* True when `name` is one of svc's sensitive members; true for every name when `svc` is NULL
 * (nothing is known about a request no service claimed). */
bool api_service_member_is_sensitive(const struct api_service *svc, const char *name);

#endif
