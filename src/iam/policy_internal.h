/*
 * The compiled form of a policy, shared by the compiler (policy.c) and the evaluator
 * (policy_eval.c). Everything the evaluator needs is decided at compile time: operators are
 * enum values, condition keys are lower-cased, typed values (numbers, dates, CIDRs, booleans)
 * are pre-parsed, and strings that carry policy variables are flagged.
 */
#ifndef COFFER_IAM_POLICY_INTERNAL_H
#define COFFER_IAM_POLICY_INTERNAL_H

#include <stdatomic.h>

#include "iam/policy.h"

#define POLICY_SUMMARY_SET 0x80000000u

/* The escape byte the variable substitution puts before a literal '*', '?' or '$'. */
#define POLICY_ESC '\x01'

enum cond_base {
    COND_STR_EQ,
    COND_STR_EQ_IC,
    COND_STR_LIKE,
    COND_NUM_EQ,
    COND_NUM_LT,
    COND_NUM_LE,
    COND_NUM_GT,
    COND_NUM_GE,
    COND_DATE_EQ,
    COND_DATE_LT,
    COND_DATE_LE,
    COND_DATE_GT,
    COND_DATE_GE,
    COND_BOOL,
    COND_IP,
    COND_ARN_LIKE,
    COND_NULL,
};

enum cond_set { COND_SET_NONE, COND_SET_ANY, COND_SET_ALL };

struct policy_cidr {
    int family;       /* 4 or 6 */
    unsigned prefix;  /* bits */
    uint8_t addr[16]; /* network order, masked */
};

struct cond_value {
    char *s;      /* the value as written (NUL-terminated) */
    bool has_var; /* contains ${...} and the document is version 2012-10-17 */
    union {
        double num;
        int64_t ms;
        bool b;
        struct policy_cidr ip;
    } v;
};

struct policy_cond {
    enum cond_base base;
    enum cond_set set;
    bool negated;      /* StringNotEquals, NotIpAddress, ... */
    bool if_exists;    /* ...IfExists */
    char *key;         /* lower-cased context key */
    uint32_t key_hash; /* policy_key_hash(key) */
    struct cond_value *values;
    size_t n_values;
};

struct pattern {
    char *s;      /* lower-cased for actions, as written for resources */
    bool has_var; /* resources only */
    bool literal; /* no wildcard and no variable: compared with strcmp */
};

/* One principal entry ("AWS" or "Service" or any other type). */
enum principal_kind {
    PRINCIPAL_ANY,     /* "*" or {"AWS":"*"} */
    PRINCIPAL_ACCOUNT, /* "123456789012" or "arn:aws:iam::123456789012:root" */
    PRINCIPAL_ARN,     /* any other AWS ARN, matched exactly */
    PRINCIPAL_SERVICE, /* "ec2.amazonaws.com" */
    PRINCIPAL_OTHER,   /* Federated, CanonicalUser: never matches a Coffer principal */
};

struct principal {
    enum principal_kind kind;
    char *s;   /* account id (12 digits), ARN or service name */
    char *uid; /* PRINCIPAL_ARN of a user or role: the unique id it is bound to (policy_bind_principals) */
};

struct statement {
    char *sid;
    bool deny;
    bool has_principal; /* Principal or NotPrincipal present */
    bool not_principal;
    struct principal *principals;
    size_t n_principals;
    bool not_action;
    struct pattern *actions;
    size_t n_actions;
    bool has_resource;
    bool not_resource;
    struct pattern *resources;
    size_t n_resources;
    struct policy_cond *conds;
    size_t n_conds;
};

struct policy {
    /*
     * A cache for readers that summarise the compiled form (the authorizer's condition-key
     * families): 0 until computed, then the summary | POLICY_SUMMARY_SET. Computing it twice
     * in a race gives the same value, so relaxed atomics suffice.
     */
    _Atomic unsigned summary;
    char *id;
    bool vars; /* version 2012-10-17: policy variables are substituted */
    struct statement *stmts;
    size_t n_stmts;
};

/*
 * Glob match with '*' and '?'; `esc` honours POLICY_ESC before a literal. Cost
 * O(|pat| + |s| * ceil(longest segment between two '*' / 64)), whatever the pattern.
 */
bool policy_glob(const char *pat, const char *s, bool icase, bool esc);
/* Matching steps (subject bytes x 64-bit words, pattern bytes) taken by this thread so far. */
uint64_t policy_glob_steps(void);
/* ARN match: six colon-separated components matched one by one (last takes the rest). */
bool policy_arn_match(const char *pat, const char *s, bool esc);
uint32_t policy_key_hash(const char *lower_key);
bool policy_parse_cidr(const char *s, bool allow_prefix, struct policy_cidr *out);

#endif
