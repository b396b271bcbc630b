/*
 * Policy compiler: validates an IAM policy document (JSON, through Jansson) and turns it into
 * the immutable struct policy that policy_eval.c evaluates per request. Every rejection is a
 * MalformedPolicyDocumentException whose message names the statement (by index and Sid) and the
 * element at fault, so an operator can fix the document from the error alone.
 */
#include "iam/policy.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/aws_ids.h"
#include "iam/policy_internal.h"

#define MALFORMED COFFER_ERR_MALFORMED_POLICY

/* ---------------------------------------------------------------------------------------------
 * Operator table: the name AWS spells, its base comparison and whether it is negated.
 * ------------------------------------------------------------------------------------------- */

struct op_def {
    const char *name;
    enum cond_base base;
    bool negated;
};

static const struct op_def op_table[] = {
    {"StringEquals", COND_STR_EQ, false},
    {"StringNotEquals", COND_STR_EQ, true},
    {"StringEqualsIgnoreCase", COND_STR_EQ_IC, false},
    {"StringNotEqualsIgnoreCase", COND_STR_EQ_IC, true},
    {"StringLike", COND_STR_LIKE, false},
    {"StringNotLike", COND_STR_LIKE, true},
    {"NumericEquals", COND_NUM_EQ, false},
    {"NumericNotEquals", COND_NUM_EQ, true},
    {"NumericLessThan", COND_NUM_LT, false},
    {"NumericLessThanEquals", COND_NUM_LE, false},
    {"NumericGreaterThan", COND_NUM_GT, false},
    {"NumericGreaterThanEquals", COND_NUM_GE, false},
    {"DateEquals", COND_DATE_EQ, false},
    {"DateNotEquals", COND_DATE_EQ, true},
    {"DateLessThan", COND_DATE_LT, false},
    {"DateLessThanEquals", COND_DATE_LE, false},
    {"DateGreaterThan", COND_DATE_GT, false},
    {"DateGreaterThanEquals", COND_DATE_GE, false},
    {"Bool", COND_BOOL, false},
    {"BinaryEquals", COND_STR_EQ, false}, /* base64 text compared exactly */
    {"IpAddress", COND_IP, false},
    {"NotIpAddress", COND_IP, true},
    {"ArnEquals", COND_ARN_LIKE, false},
    {"ArnNotEquals", COND_ARN_LIKE, true},
    {"ArnLike", COND_ARN_LIKE, false},
    {"ArnNotLike", COND_ARN_LIKE, true},
    {"Null", COND_NULL, false},
};

/* Error context: which statement we are in, for messages. */
struct cctx {
    size_t idx;
    const char *sid;
    bool vars;
    unsigned flags;
};

#define SFAIL(cc, ...) stmt_fail((cc), __VA_ARGS__)

static coffer_err stmt_fail(const struct cctx *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static coffer_err stmt_fail(const struct cctx *cc, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (cc->sid != NULL) {
        return coffer_fail(MALFORMED, "Statement %zu (Sid \"%.64s\"): %s", cc->idx, cc->sid, detail);
    }
    return coffer_fail(MALFORMED, "Statement %zu: %s", cc->idx, detail);
}

/* ---------------------------------------------------------------------------------------------
 * Freeing
 * ------------------------------------------------------------------------------------------- */

static void stmt_clean(struct statement *st)
{
    free(st->sid);
    for (size_t i = 0; i < st->n_principals; i++) {
        free(st->principals[i].s);
        free(st->principals[i].uid);
    }
    free(st->principals);
    for (size_t i = 0; i < st->n_actions; i++) {
        free(st->actions[i].s);
    }
    free(st->actions);
    for (size_t i = 0; i < st->n_resources; i++) {
        free(st->resources[i].s);
    }
    free(st->resources);
    for (size_t i = 0; i < st->n_conds; i++) {
        struct policy_cond *c = &st->conds[i];
        free(c->key);
        for (size_t j = 0; j < c->n_values; j++) {
            free(c->values[j].s);
        }
        free(c->values);
    }
    free(st->conds);
}

void policy_free(policy *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->n_stmts; i++) {
        stmt_clean(&p->stmts[i]);
    }
    free(p->stmts);
    free(p->id);
    free(p);
}

size_t policy_statement_count(const policy *p)
{
    return p == NULL ? 0 : p->n_stmts;
}

const char *policy_id(const policy *p)
{
    return p == NULL ? NULL : p->id;
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static char *dup_lower(const char *s, bool lower)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        d[i] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
    }
    d[n] = '\0';
    return d;
}

static bool has_ctrl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20) {
            return true;
        }
    }
    return false;
}

/* A JSON string of bounded length with no control characters or NULs. */
static coffer_err get_str(const struct cctx *cc, const json_t *v, const char *elem, const char **out)
{
    if (!json_is_string(v)) {
        return SFAIL(cc, "%s must contain strings", elem);
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0) {
        return SFAIL(cc, "%s contains an empty string", elem);
    }
    if (n > POLICY_MAX_STRING) {
        return SFAIL(cc, "%s entry longer than %d characters", elem, POLICY_MAX_STRING);
    }
    if (has_ctrl(s, n) || strlen(s) != n) {
        return SFAIL(cc, "%s contains control characters", elem);
    }
    *out = s;
    return COFFER_OK;
}

/* A string or a non-empty array of strings: returns the count and the i-th item via json. */
static coffer_err list_shape(const struct cctx *cc, const json_t *v, const char *elem, size_t *n)
{
    if (json_is_string(v)) {
        *n = 1;
        return COFFER_OK;
    }
    if (!json_is_array(v)) {
        return SFAIL(cc, "%s must be a string or an array of strings", elem);
    }
    *n = json_array_size(v);
    if (*n == 0) {
        return SFAIL(cc, "%s must not be an empty array", elem);
    }
    if (*n > POLICY_MAX_VALUES) {
        return SFAIL(cc, "%s has more than %d entries", elem, POLICY_MAX_VALUES);
    }
    return COFFER_OK;
}

static const json_t *list_item(const json_t *v, size_t i)
{
    return json_is_array(v) ? json_array_get(v, i) : v;
}

static bool has_policy_var(const struct cctx *cc, const char *s)
{
    return cc->vars && strstr(s, "${") != NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Action / Resource
 * ------------------------------------------------------------------------------------------- */

static bool valid_action(const char *s)
{
    if (strcmp(s, "*") == 0) {
        return true;
    }
    const char *colon = strchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0' || strchr(colon + 1, ':') != NULL) {
        return false;
    }
    for (const char *p = s; p < colon; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '*' && *p != '?') {
            return false;
        }
    }
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && *p != '*' && *p != '?' && *p != '-' && *p != '_') {
            return false;
        }
    }
    return true;
}

static coffer_err compile_patterns(const struct cctx *cc, const json_t *v, const char *elem, bool action,
                                   struct pattern **out, size_t *n_out)
{
    size_t n = 0;
    TRY(list_shape(cc, v, elem, &n));
    struct pattern *pats = calloc(n, sizeof(*pats));
    if (pats == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    *out = pats;
    *n_out = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = NULL;
        TRY(get_str(cc, list_item(v, i), elem, &s));
        if (action && !valid_action(s)) {
            return SFAIL(cc, "%s \"%.128s\" is not of the form service:ActionName", elem, s);
        }
        if (!action && strcmp(s, "*") != 0 && strncmp(s, "arn:", 4) != 0) {
            return SFAIL(cc, "%s \"%.128s\" must be \"*\" or an ARN", elem, s);
        }
        pats[i].has_var = !action && has_policy_var(cc, s);
        if (pats[i].has_var && strchr(s, POLICY_ESC) != NULL) {
            return SFAIL(cc, "%s contains control characters", elem);
        }
        pats[i].literal = strpbrk(s, "*?") == NULL && !pats[i].has_var;
        pats[i].s = dup_lower(s, action);
        if (pats[i].s == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        *n_out = i + 1;
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Principal / NotPrincipal
 * ------------------------------------------------------------------------------------------- */

static bool is_account_id(const char *s)
{
    size_t n = strlen(s);
    if (n != AWS_ACCOUNT_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* "arn:aws:iam::123456789012:root" -> copies the account id into acct. */
static bool is_root_arn(const char *s, char acct[AWS_ACCOUNT_ID_LEN + 1])
{
    const char *pfx = "arn:aws:iam::";
    size_t pl = strlen(pfx);
    if (strncmp(s, pfx, pl) != 0 || strlen(s) != AWS_ROOT_ARN_LEN ||
        strcmp(s + pl + AWS_ACCOUNT_ID_LEN, ":root") != 0) {
        return false;
    }
    memcpy(acct, s + pl, AWS_ACCOUNT_ID_LEN);
    acct[AWS_ACCOUNT_ID_LEN] = '\0';
    return is_account_id(acct);
}

static coffer_err compile_principal_entry(const struct cctx *cc, const char *type, const char *s,
                                          struct principal *out)
{
    char acct[AWS_ACCOUNT_ID_LEN + 1];
    if (strcmp(type, "AWS") == 0) {
        if (strcmp(s, "*") == 0) {
            out->kind = PRINCIPAL_ANY;
            return COFFER_OK;
        }
        if (strpbrk(s, "*?") != NULL) {
            return SFAIL(
                cc, "Principal \"%.128s\": wildcards are not allowed in a principal other than \"*\"", s);
        }
        if (is_account_id(s) || is_root_arn(s, acct)) {
            out->kind = PRINCIPAL_ACCOUNT;
            out->s = is_account_id(s) ? dup_lower(s, false) : dup_lower(acct, false);
        } else if (strncmp(s, "arn:", 4) == 0 && strchr(s + 4, ':') != NULL) {
            out->kind = PRINCIPAL_ARN;
            out->s = dup_lower(s, false);
        } else {
            return SFAIL(cc, "Principal \"%.128s\" is not an ARN, an account id or \"*\"", s);
        }
    } else if (strcmp(type, "Service") == 0) {
        if (strpbrk(s, "*?") != NULL) {
            return SFAIL(cc, "Principal Service \"%.128s\": wildcards are not allowed", s);
        }
        out->kind = PRINCIPAL_SERVICE;
        out->s = dup_lower(s, true);
    } else if (strcmp(type, "Federated") == 0 || strcmp(type, "CanonicalUser") == 0) {
        out->kind = PRINCIPAL_OTHER;
        out->s = dup_lower(s, false);
    } else {
        return SFAIL(cc, "Principal type \"%.64s\" is not one of AWS, Service, Federated, CanonicalUser",
                     type);
    }
    if (out->s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static coffer_err compile_principal(const struct cctx *cc, struct statement *st, const json_t *v,
                                    const char *elem)
{
    st->has_principal = true;
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "*") != 0) {
            return SFAIL(cc, "%s must be \"*\" or an object such as {\"AWS\": ...}", elem);
        }
        st->principals = calloc(1, sizeof(*st->principals));
        if (st->principals == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        st->principals[0].kind = PRINCIPAL_ANY;
        st->n_principals = 1;
        return COFFER_OK;
    }
    if (!json_is_object(v) || json_object_size(v) == 0) {
        return SFAIL(cc, "%s must be \"*\" or a non-empty object such as {\"AWS\": ...}", elem);
    }
    size_t total = 0;
    const char *type;
    const json_t *list;
    json_object_foreach((json_t *)v, type, list)
    {
        size_t n = 0;
        TRY(list_shape(cc, list, elem, &n));
        total += n;
    }
    if (total > POLICY_MAX_VALUES) {
        return SFAIL(cc, "%s has more than %d entries", elem, POLICY_MAX_VALUES);
    }
    st->principals = calloc(total, sizeof(*st->principals));
    if (st->principals == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    json_object_foreach((json_t *)v, type, list)
    {
        size_t n = 0;
        TRY(list_shape(cc, list, elem, &n));
        for (size_t i = 0; i < n; i++) {
            const char *s = NULL;
            TRY(get_str(cc, list_item(list, i), elem, &s));
            TRY(compile_principal_entry(cc, type, s, &st->principals[st->n_principals]));
            st->n_principals++;
        }
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Condition
 * ------------------------------------------------------------------------------------------- */

static bool parse_op(const char *name, enum cond_set *set, const struct op_def **def, bool *if_exists)
{
    *set = COND_SET_NONE;
    if (strncmp(name, "ForAnyValue:", 12) == 0) {
        *set = COND_SET_ANY;
        name += 12;
    } else if (strncmp(name, "ForAllValues:", 13) == 0) {
        *set = COND_SET_ALL;
        name += 13;
    }
    size_t n = strlen(name);
    *if_exists = n > 8 && strcmp(name + n - 8, "IfExists") == 0;
    if (*if_exists) {
        n -= 8;
    }
    for (size_t i = 0; i < sizeof(op_table) / sizeof(op_table[0]); i++) {
        if (strlen(op_table[i].name) == n && strncmp(op_table[i].name, name, n) == 0) {
            *def = &op_table[i];
            return true;
        }
    }
    return false;
}

static bool parse_number(const char *s, double *out)
{
    if (*s == '\0' || isspace((unsigned char)*s)) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(d)) {
        return false;
    }
    /* hex floats, "inf" and "nan" are not AWS numbers */
    for (const char *p = s; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p) && strchr("+-.eE", *p) == NULL) {
            return false;
        }
    }
    *out = d;
    return true;
}

/* Converts a JSON scalar condition value to text (AWS accepts numbers and booleans too). */
static coffer_err value_text(const struct cctx *cc, const json_t *v, const char *op, char *tmp, size_t tmpn,
                             const char **out)
{
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        const char *s = json_string_value(v);
        if (n > POLICY_MAX_STRING || strlen(s) != n) {
            return SFAIL(cc, "Condition %s: value too long or contains NUL", op);
        }
        *out = s;
        return COFFER_OK;
    }
    if (json_is_true(v) || json_is_false(v)) {
        *out = json_is_true(v) ? "true" : "false";
        return COFFER_OK;
    }
    if (json_is_integer(v)) {
        snprintf(tmp, tmpn, "%lld", (long long)json_integer_value(v));
        *out = tmp;
        return COFFER_OK;
    }
    if (json_is_real(v)) {
        snprintf(tmp, tmpn, "%.17g", json_real_value(v));
        *out = tmp;
        return COFFER_OK;
    }
    return SFAIL(cc, "Condition %s: values must be strings, numbers or booleans", op);
}

static coffer_err compile_value(const struct cctx *cc, const struct policy_cond *c, const char *op,
                                const char *key, const char *s, struct cond_value *out)
{
    switch (c->base) {
    case COND_NUM_EQ:
    case COND_NUM_LT:
    case COND_NUM_LE:
    case COND_NUM_GT:
    case COND_NUM_GE:
        if (!parse_number(s, &out->v.num)) {
            return SFAIL(cc, "Condition %s on %s: \"%.64s\" is not a number", op, key, s);
        }
        break;
    case COND_DATE_EQ:
    case COND_DATE_LT:
    case COND_DATE_LE:
    case COND_DATE_GT:
    case COND_DATE_GE:
        if (!policy_parse_date(s, &out->v.ms)) {
            return SFAIL(cc, "Condition %s on %s: \"%.64s\" is not an ISO 8601 date or epoch seconds", op,
                         key, s);
        }
        break;
    case COND_BOOL:
    case COND_NULL:
        if (strcasecmp(s, "true") != 0 && strcasecmp(s, "false") != 0) {
            return SFAIL(cc, "Condition %s on %s: \"%.64s\" is not true or false", op, key, s);
        }
        out->v.b = strcasecmp(s, "true") == 0;
        break;
    case COND_IP:
        if (!policy_parse_cidr(s, true, &out->v.ip)) {
            return SFAIL(cc, "Condition %s on %s: \"%.64s\" is not an IPv4 or IPv6 address or CIDR block", op,
                         key, s);
        }
        break;
    case COND_ARN_LIKE:
    case COND_STR_EQ:
    case COND_STR_EQ_IC:
    case COND_STR_LIKE:
        out->has_var = has_policy_var(cc, s);
        if (out->has_var && strchr(s, POLICY_ESC) != NULL) {
            return SFAIL(cc, "Condition %s on %s: value contains control characters", op, key);
        }
        break;
    }
    out->s = dup_lower(s, false);
    if (out->s == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static coffer_err compile_cond(const struct cctx *cc, const char *op, const char *key, const json_t *vals,
                               struct policy_cond *c)
{
    const struct op_def *def = NULL;
    if (!parse_op(op, &c->set, &def, &c->if_exists)) {
        return SFAIL(cc, "Condition operator \"%.64s\" is not supported", op);
    }
    c->base = def->base;
    c->negated = def->negated;
    if (c->base == COND_NULL && (c->if_exists || c->set != COND_SET_NONE)) {
        return SFAIL(cc, "Condition operator \"%.64s\": Null takes no IfExists or set qualifier", op);
    }
    size_t klen = strlen(key);
    if (klen == 0 || klen > POLICY_MAX_STRING || has_ctrl(key, klen)) {
        return SFAIL(cc, "Condition %s: invalid condition key", op);
    }
    c->key = dup_lower(key, true);
    if (c->key == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    c->key_hash = policy_key_hash(c->key);
    size_t n = 1;
    if (json_is_array(vals)) {
        n = json_array_size(vals);
        if (n == 0) {
            return SFAIL(cc, "Condition %s on %s: empty value list", op, key);
        }
        if (n > POLICY_MAX_VALUES) {
            return SFAIL(cc, "Condition %s on %s: more than %d values", op, key, POLICY_MAX_VALUES);
        }
    }
    c->values = calloc(n, sizeof(*c->values));
    if (c->values == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char tmp[64];
        const char *s = NULL;
        TRY(value_text(cc, list_item(vals, i), op, tmp, sizeof(tmp), &s));
        TRY(compile_value(cc, c, op, key, s, &c->values[i]));
        c->n_values = i + 1;
    }
    return COFFER_OK;
}

static coffer_err compile_conditions(const struct cctx *cc, struct statement *st, const json_t *v)
{
    if (!json_is_object(v)) {
        return SFAIL(cc, "Condition must be an object of operators");
    }
    size_t total = 0;
    const char *op;
    const json_t *block;
    json_object_foreach((json_t *)v, op, block)
    {
        if (!json_is_object(block) || json_object_size(block) == 0) {
            return SFAIL(cc, "Condition %.64s must be a non-empty object of condition keys", op);
        }
        total += json_object_size(block);
    }
    if (total > POLICY_MAX_CONDITIONS) {
        return SFAIL(cc, "Condition has more than %d keys", POLICY_MAX_CONDITIONS);
    }
    if (total == 0) {
        return COFFER_OK;
    }
    st->conds = calloc(total, sizeof(*st->conds));
    if (st->conds == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    json_object_foreach((json_t *)v, op, block)
    {
        const char *key;
        const json_t *vals;
        json_object_foreach((json_t *)block, key, vals)
        {
            struct policy_cond *c = &st->conds[st->n_conds++];
            TRY(compile_cond(cc, op, key, vals, c));
        }
    }
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Statement and document
 * ------------------------------------------------------------------------------------------- */

static const char *const stmt_elements[] = {"Sid",       "Effect",   "Principal",   "NotPrincipal", "Action",
                                            "NotAction", "Resource", "NotResource", "Condition"};

static coffer_err compile_statement(struct cctx *cc, const json_t *js, struct statement *st)
{
    if (!json_is_object(js)) {
        return SFAIL(cc, "a statement must be an object");
    }
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)js, name, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(stmt_elements) / sizeof(stmt_elements[0]); i++) {
            known = known || strcmp(name, stmt_elements[i]) == 0;
        }
        if (!known) {
            return SFAIL(cc, "unknown element \"%.64s\"", name);
        }
    }
    const json_t *sid = json_object_get(js, "Sid");
    if (sid != NULL) {
        if (!json_is_string(sid) || json_string_length(sid) > 256 ||
            strlen(json_string_value(sid)) != json_string_length(sid)) {
            return SFAIL(cc, "Sid must be a string of at most 256 characters");
        }
        for (const char *p = json_string_value(sid); *p != '\0'; p++) {
            if (!isalnum((unsigned char)*p) && *p != ' ' && *p != '-' && *p != '_' && *p != '.' &&
                *p != ':') {
                return SFAIL(cc, "Sid \"%.64s\" contains characters other than letters, digits and \" -_.:\"",
                             json_string_value(sid));
            }
        }
        st->sid = dup_lower(json_string_value(sid), false);
        if (st->sid == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        cc->sid = st->sid;
    }
    const json_t *eff = json_object_get(js, "Effect");
    if (eff == NULL) {
        return SFAIL(cc, "missing Effect");
    }
    if (!json_is_string(eff) ||
        (strcmp(json_string_value(eff), "Allow") != 0 && strcmp(json_string_value(eff), "Deny") != 0)) {
        return SFAIL(cc, "Effect must be \"Allow\" or \"Deny\"");
    }
    st->deny = strcmp(json_string_value(eff), "Deny") == 0;

    const json_t *pr = json_object_get(js, "Principal"), *npr = json_object_get(js, "NotPrincipal");
    if (pr != NULL && npr != NULL) {
        return SFAIL(cc, "Principal and NotPrincipal cannot both be present");
    }
    if (npr != NULL && !st->deny) {
        return SFAIL(cc, "NotPrincipal is only supported with Effect \"Deny\"");
    }
    if (pr == NULL && npr == NULL && (cc->flags & POLICY_COMPILE_REQUIRE_PRINCIPAL)) {
        return SFAIL(cc, "missing Principal (required in a resource policy)");
    }
    if ((pr != NULL || npr != NULL) && (cc->flags & POLICY_COMPILE_NO_PRINCIPAL)) {
        return SFAIL(cc, "%s is not allowed in an identity policy",
                     pr != NULL ? "Principal" : "NotPrincipal");
    }
    if (pr != NULL || npr != NULL) {
        st->not_principal = npr != NULL;
        TRY(compile_principal(cc, st, pr != NULL ? pr : npr, pr != NULL ? "Principal" : "NotPrincipal"));
    }

    const json_t *ac = json_object_get(js, "Action"), *nac = json_object_get(js, "NotAction");
    if (ac != NULL && nac != NULL) {
        return SFAIL(cc, "Action and NotAction cannot both be present");
    }
    if (ac == NULL && nac == NULL) {
        return SFAIL(cc, "missing Action or NotAction");
    }
    st->not_action = nac != NULL;
    TRY(compile_patterns(cc, ac != NULL ? ac : nac, ac != NULL ? "Action" : "NotAction", true, &st->actions,
                         &st->n_actions));

    const json_t *rs = json_object_get(js, "Resource"), *nrs = json_object_get(js, "NotResource");
    if (rs != NULL && nrs != NULL) {
        return SFAIL(cc, "Resource and NotResource cannot both be present");
    }
    if (rs == NULL && nrs == NULL && !(cc->flags & POLICY_COMPILE_RESOURCE_OPTIONAL)) {
        return SFAIL(cc, "missing Resource or NotResource");
    }
    if (rs != NULL || nrs != NULL) {
        st->has_resource = true;
        st->not_resource = nrs != NULL;
        TRY(compile_patterns(cc, rs != NULL ? rs : nrs, rs != NULL ? "Resource" : "NotResource", false,
                             &st->resources, &st->n_resources));
    }

    const json_t *cond = json_object_get(js, "Condition");
    if (cond != NULL) {
        TRY(compile_conditions(cc, st, cond));
    }
    return COFFER_OK;
}

static coffer_err compile_document(const json_t *doc, unsigned flags, policy *p)
{
    if (!json_is_object(doc)) {
        return coffer_fail(MALFORMED, "the policy document must be a JSON object");
    }
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)doc, name, v)
    {
        if (strcmp(name, "Version") != 0 && strcmp(name, "Id") != 0 && strcmp(name, "Statement") != 0) {
            return coffer_fail(MALFORMED, "unknown top-level element \"%.64s\"", name);
        }
    }
    const json_t *ver = json_object_get(doc, "Version");
    if (ver != NULL) {
        if (!json_is_string(ver) || (strcmp(json_string_value(ver), "2012-10-17") != 0 &&
                                     strcmp(json_string_value(ver), "2008-10-17") != 0)) {
            return coffer_fail(MALFORMED, "Version must be \"2012-10-17\" or \"2008-10-17\"");
        }
        p->vars = strcmp(json_string_value(ver), "2012-10-17") == 0;
    }
    const json_t *id = json_object_get(doc, "Id");
    if (id != NULL) {
        if (!json_is_string(id) || json_string_length(id) > 256 ||
            strlen(json_string_value(id)) != json_string_length(id)) {
            return coffer_fail(MALFORMED, "Id must be a string of at most 256 characters");
        }
        p->id = dup_lower(json_string_value(id), false);
        if (p->id == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    const json_t *stmts = json_object_get(doc, "Statement");
    if (stmts == NULL) {
        return coffer_fail(MALFORMED, "missing Statement");
    }
    size_t n = 1;
    if (json_is_array(stmts)) {
        n = json_array_size(stmts);
        if (n == 0) {
            return coffer_fail(MALFORMED, "Statement must not be an empty array");
        }
    } else if (!json_is_object(stmts)) {
        return coffer_fail(MALFORMED, "Statement must be an object or an array of objects");
    }
    if (n > POLICY_MAX_STATEMENTS) {
        return coffer_fail(MALFORMED, "more than %d statements", POLICY_MAX_STATEMENTS);
    }
    p->stmts = calloc(n, sizeof(*p->stmts));
    if (p->stmts == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        struct cctx cc = {i, NULL, p->vars, flags};
        p->n_stmts = i + 1;
        TRY(compile_statement(&cc, list_item(stmts, i), &p->stmts[i]));
        for (size_t j = 0; j < i && p->stmts[i].sid != NULL; j++) {
            if (p->stmts[j].sid != NULL && strcmp(p->stmts[j].sid, p->stmts[i].sid) == 0) {
                return SFAIL(&cc, "duplicate Sid (also statement %zu)", j);
            }
        }
    }
    return COFFER_OK;
}

coffer_err policy_compile_ex(coffer_cursor json_text, unsigned flags, policy **out)
{
    coffer_err rc = COFFER_OK;
    json_t *doc = NULL;
    policy *p = NULL;
    if (out == NULL || (json_text.ptr == NULL && json_text.len != 0)) {
        return coffer_fail(COFFER_ERR_USAGE, "policy_compile: invalid argument");
    }
    *out = NULL;
    if (json_text.len > POLICY_MAX_DOCUMENT) {
        FAIL_OUT(MALFORMED, "policy document is longer than %d characters", POLICY_MAX_DOCUMENT);
    }
    if (json_text.len == 0) {
        FAIL_OUT(MALFORMED, "policy document is empty");
    }
    json_error_t jerr;
    doc = json_loadb((const char *)json_text.ptr, json_text.len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        FAIL_OUT(MALFORMED, "policy document is not valid JSON (line %d, column %d): %.80s", jerr.line,
                 jerr.column, jerr.text);
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(compile_document(doc, flags, p));
    *out = p;
    p = NULL;
out:
    policy_free(p);
    json_decref(doc);
    return rc;
}

coffer_err policy_compile(coffer_cursor json_text, policy **out)
{
    return policy_compile_ex(json_text, 0, out);
}

/* ---------------------------------------------------------------------------------------------
 * Principal binding (unique ids of IAM users and roles)
 * ------------------------------------------------------------------------------------------- */

/* A principal bound to an entity that no longer exists: no caller's unique id looks like it. */
#define POLICY_UID_NONE "-"

bool policy_principal_bindable(const char *arn)
{
    static const char pfx[] = "arn:aws:iam::";
    if (arn == NULL || strncmp(arn, pfx, sizeof(pfx) - 1) != 0) {
        return false;
    }
    const char *a = arn + sizeof(pfx) - 1;
    if (strlen(a) < AWS_ACCOUNT_ID_LEN + 2 || a[AWS_ACCOUNT_ID_LEN] != ':') {
        return false;
    }
    for (size_t i = 0; i < AWS_ACCOUNT_ID_LEN; i++) {
        if (!isdigit((unsigned char)a[i])) {
            return false;
        }
    }
    const char *res = a + AWS_ACCOUNT_ID_LEN + 1;
    return strncmp(res, "user/", 5) == 0 || strncmp(res, "role/", 5) == 0;
}

coffer_err policy_bind_principals(policy *p, policy_uid_lookup_fn lookup, void *ctx)
{
    ENSURE(p != NULL && lookup != NULL, COFFER_ERR_USAGE);
    for (size_t i = 0; i < p->n_stmts; i++) {
        struct statement *st = &p->stmts[i];
        for (size_t j = 0; j < st->n_principals; j++) {
            struct principal *pe = &st->principals[j];
            if (pe->kind != PRINCIPAL_ARN || pe->uid != NULL || !policy_principal_bindable(pe->s)) {
                continue;
            }
            const char *uid = lookup(ctx, pe->s);
            pe->uid = strdup(uid != NULL && uid[0] != '\0' ? uid : POLICY_UID_NONE);
            if (pe->uid == NULL) {
                return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
            }
        }
    }
    return COFFER_OK;
}

coffer_err policy_visit_aws_principals(json_t *doc, policy_principal_visit_fn fn, void *arg)
{
    json_t *stmts = json_object_get(doc, "Statement");
    size_t n = json_is_array(stmts) ? json_array_size(stmts) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *st = json_is_array(stmts) ? json_array_get(stmts, i) : stmts;
        static const char *const elems[] = {"Principal", "NotPrincipal"};
        for (size_t e = 0; e < 2; e++) {
            json_t *aws = json_object_get(json_object_get(st, elems[e]), "AWS");
            if (json_is_string(aws)) {
                TRY(fn(arg, aws));
            }
            size_t j;
            json_t *v;
            json_array_foreach(aws, j, v)
            {
                if (json_is_string(v)) {
                    TRY(fn(arg, v));
                }
            }
        }
    }
    return COFFER_OK;
}
