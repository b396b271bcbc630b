/*
 * The IAM policy language: compile a JSON policy document once into an immutable in-memory
 * form, then evaluate it many times against a request without touching JSON. Sits between
 * auth (which says who is calling) and the services (which say what is being done to which
 * resource): the authorizer builds a policy_request, evaluates the key policy and the caller's
 * identity policies, and combines the decisions (explicit deny, then allow, else implicit deny).
 *
 * Thread-safety: a compiled policy is read-only and may be evaluated from any number of threads
 * at once. A policy_ctx is owned by one request and must not be mutated while evaluated.
 */
#ifndef COFFER_IAM_POLICY_H
#define COFFER_IAM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

/* Limits enforced by policy_compile (MalformedPolicyDocumentException beyond them). */
#define POLICY_MAX_DOCUMENT 131072 /* bytes of JSON text */
#define POLICY_MAX_STATEMENTS 512  /* statements per document */
#define POLICY_MAX_VALUES 1024     /* entries in one Action/Resource/Principal/condition list */
#define POLICY_MAX_CONDITIONS 128  /* operator/key pairs per statement */
#define POLICY_MAX_STRING 2048     /* bytes in one action, ARN, key or value */
#define POLICY_MAX_CTX_VALUES 1024 /* values under one request-context key */

typedef struct policy policy;
typedef struct policy_ctx policy_ctx;

enum policy_decision {
    POLICY_NOT_APPLICABLE = 0, /* no statement matched: implicit deny */
    POLICY_ALLOW = 1,          /* an Allow statement matched and no Deny did */
    POLICY_DENY_EXPLICIT = 2,  /* a Deny statement matched */
};

/* Options for policy_compile_ex. */
#define POLICY_COMPILE_RESOURCE_OPTIONAL 0x1u /* trust policies carry no Resource element */
#define POLICY_COMPILE_REQUIRE_PRINCIPAL                                                                     \
    0x2u                                 /* resource (key, trust) policies: every statement names one        \
                                          */
#define POLICY_COMPILE_NO_PRINCIPAL 0x4u /* identity policies: Principal/NotPrincipal are refused */

/*
 * Who asks to do what to which resource. All strings are borrowed for the duration of the call
 * and may be NULL when unknown (a NULL principal_arn is the anonymous principal: only "*" matches).
 *   principal_arn      "arn:aws:iam::111122223333:user/alice", "...:root",
 *                      "arn:aws:sts::111122223333:assumed-role/R/session", or for a service
 *                      principal its name ("ec2.amazonaws.com")
 *   principal_role_arn for an assumed-role session, the role ("arn:aws:iam::111122223333:role/R"),
 *                      so that a Principal naming the role matches its sessions
 *   principal_account  "111122223333"
 *   principal_type     "Account", "User", "AssumedRole", "Service", ... (aws:PrincipalType)
 *   action             "kms:Encrypt" (matched case-insensitively)
 *   resource           "arn:aws:kms:us-east-1:111122223333:key/..." (case-sensitive)
 *   ctx                context keys; may be NULL. aws:PrincipalArn, aws:PrincipalAccount and
 *                      aws:PrincipalType default to the fields above when ctx does not set them.
 */
struct policy_request {
    const char *principal_arn;
    const char *principal_role_arn;
    const char *principal_account;
    const char *principal_type;
    const char *action;
    const char *resource;
    const policy_ctx *ctx;
    const char *principal_id; /* unique id: "AIDA..." (user), "AROA...:SESSION" (session); may be NULL */
};

/*
 * Validates and compiles a policy document. On success *out owns the compiled policy (free with
 * policy_free); on failure *out is NULL and the error is COFFER_ERR_MALFORMED_POLICY with a
 * detail naming the statement and element (coffer_last_message()), or COFFER_ERR_NOMEM.
 * Version must be "2012-10-17" or "2008-10-17" or absent; policy variables (${aws:username})
 * are honoured only under "2012-10-17", as AWS does.
 */
coffer_err policy_compile(coffer_cursor json_text, policy **out) __attribute__((warn_unused_result));
coffer_err policy_compile_ex(coffer_cursor json_text, unsigned flags, policy **out)
    __attribute__((warn_unused_result));
void policy_free(policy *p); /* accepts NULL */

/*
 * Principal binding. An IAM user or role ARN in a Principal/NotPrincipal element
 * ("arn:aws:iam::ACCT:user/...", "...:role/...") names the entity that had that name when the
 * policy was stored, by its unique id, as AWS does. policy_bind_principals asks `lookup` for the
 * id of each such ARN (borrowed result; NULL when it has none, e.g. it was deleted) and binds the
 * entry to it: a bound entry then matches only a caller whose principal_id is that id (or, for a
 * role, one of its sessions, "ID:SESSION"); an entry whose lookup gave NULL matches nobody.
 * Entries never bound keep matching by ARN. Call once, before the policy is shared.
 */
#define POLICY_UID_MAX 32 /* bytes of a unique id, with NUL */
typedef const char *(*policy_uid_lookup_fn)(void *ctx, const char *arn);
coffer_err policy_bind_principals(policy *p, policy_uid_lookup_fn lookup, void *ctx)
    __attribute__((warn_unused_result));
/*
 * Calls fn on every string under "AWS" of every Principal / NotPrincipal of a parsed policy
 * document (fn may change the string in place), stopping at the first error it returns. For
 * finding the principals to bind when a policy is stored, and for showing them.
 */
typedef coffer_err (*policy_principal_visit_fn)(void *arg, json_t *value);
coffer_err policy_visit_aws_principals(json_t *doc, policy_principal_visit_fn fn, void *arg)
    __attribute__((warn_unused_result));
/* True for the ARNs policy_bind_principals binds: an IAM user or role (not a root, not a session). */
bool policy_principal_bindable(const char *arn);

size_t policy_statement_count(const policy *p);
/* The document's Id, or NULL when absent. Borrowed from p. */
const char *policy_id(const policy *p);

/*
 * Evaluates one policy: POLICY_DENY_EXPLICIT if any Deny statement applies, else POLICY_ALLOW
 * if any Allow statement applies, else POLICY_NOT_APPLICABLE. A statement applies when its
 * principal, action, resource and every condition match. Never fails: anything that cannot be
 * evaluated (an unresolvable policy variable, an unparsable context value) does not match.
 */
enum policy_decision policy_evaluate(const policy *p, const struct policy_request *req)
    __attribute__((nonnull(1, 2)));

/*
 * Per-thread evaluation budget, in wildcard-matcher steps (one step is one subject byte against
 * one 64-bit word of a segment). A policy is written by one tenant and the request by another
 * (or by the same tenant, against a server shared by all): each input is capped, yet a key
 * policy full of short patterns against a context at its cap costs ~40 M steps (~70 ms). Callers
 * that decide one request reset the budget first; once it is spent, every further match fails
 * at once and policy_evaluate answers POLICY_DENY_EXPLICIT (fail closed: a Deny that was not
 * evaluated cannot be assumed not to apply), and policy_budget_exhausted() says why.
 * 2 M steps is ~4 ms here and over twice the costliest realistic policy (bench/policy_bench.c).
 * Without a reset on the thread, or after policy_budget_reset(0), there is no budget.
 */
#define POLICY_EVAL_BUDGET_STEPS 2000000u
void policy_budget_reset(uint64_t steps);
bool policy_budget_exhausted(void);

/* Combines decisions of several policies: explicit deny wins, then allow, else implicit deny. */
enum policy_decision policy_combine(const enum policy_decision *d, size_t n);
/* Evaluates every (non-NULL) policy and combines, stopping at the first explicit deny. */
enum policy_decision policy_evaluate_all(const policy *const *ps, size_t n, const struct policy_request *req)
    __attribute__((nonnull(3)));

const char *policy_decision_name(enum policy_decision d); /* "Allow", "ExplicitDeny", "ImplicitDeny" */

/* ---- request context: multi-valued keys, names case-insensitive, values case-sensitive ---- */

coffer_err policy_ctx_new(policy_ctx **out) __attribute__((warn_unused_result));
void policy_ctx_free(policy_ctx *c); /* accepts NULL */
/* Empties the context for the next request, keeping its memory (bounded) for reuse. */
void policy_ctx_clear(policy_ctx *c); /* accepts NULL */

/* Sets `key` to exactly these n values (copied), replacing earlier ones; n == 0 sets an empty set. */
coffer_err policy_ctx_set(policy_ctx *c, const char *key, const char *const *values, size_t n)
    __attribute__((warn_unused_result));
/* Appends one value to `key` (creating it). */
coffer_err policy_ctx_add(policy_ctx *c, const char *key, const char *value)
    __attribute__((warn_unused_result));
/*
 * Appends one value of a single-valued key whose name may arrive in several spellings that
 * differ only in case ("kms:EncryptionContext:<k>", "aws:RequestTag/<k>", ...): every variant is
 * kept and a condition on the key is evaluated over each as the key's only value, a Deny
 * applying if any variant satisfies it, an Allow only if all do.
 */
coffer_err policy_ctx_add_variant(policy_ctx *c, const char *key, const char *value)
    __attribute__((warn_unused_result));
coffer_err policy_ctx_set_str(policy_ctx *c, const char *key, const char *value)
    __attribute__((warn_unused_result));
coffer_err policy_ctx_set_bool(policy_ctx *c, const char *key, bool value)
    __attribute__((warn_unused_result));
coffer_err policy_ctx_set_number(policy_ctx *c, const char *key, int64_t value)
    __attribute__((warn_unused_result));
/* Stores epoch seconds as ISO 8601 UTC ("2026-11-23T09:00:00Z"), as aws:CurrentTime. */
coffer_err policy_ctx_set_time(policy_ctx *c, const char *key, int64_t epoch_s)
    __attribute__((warn_unused_result));
/* Validates an IPv4 or IPv6 address (COFFER_ERR_USAGE otherwise), as aws:SourceIp. */
coffer_err policy_ctx_set_ip(policy_ctx *c, const char *key, const char *ip)
    __attribute__((warn_unused_result));
/* Removes `key`; absent keys are fine. */
void policy_ctx_unset(policy_ctx *c, const char *key);

/*
 * Parses an AWS date condition value: ISO 8601 ("2026-11-23", "2026-11-23T09:00:00Z",
 * "...T09:00:00.123Z", "...T09:00:00+02:00", "...T09:00Z") or epoch seconds ("1795424400").
 * Returns true and sets *epoch_ms on success.
 */
bool policy_parse_date(const char *s, int64_t *epoch_ms);

#endif
