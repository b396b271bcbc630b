/*
 * Worst-case cost of evaluating one request against conditional policies: the numbers behind
 * "per-request evaluation is bounded". Builds the most expensive context a request can bring
 * (an encryption context at the KMS cap, 8192 bytes, in one value or split into case variants
 * of one key; aws:UserAgent at its 8 KB cap) and key policies whose
 * StringLike patterns are the matcher's worst shapes at the policy string limit (2048 bytes),
 * then times policy_evaluate and reports the matcher's steps.
 *
 *   build/coffer-policy-bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iam/policy.h"
#include "iam/policy_internal.h"

#define EC_MAX 8192          /* kms_input.c ENCRYPTION_CONTEXT_MAX */
#define KEY_POLICY_MAX 32768 /* the default key policy size quota */
#define UA_MAX 8192          /* authz.h AUTHZ_USER_AGENT_MAX: what aws:UserAgent holds */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* "*a...ab*" with one segment of seg bytes: the shape that cost backtracking |s| * seg. */
static void long_segment(char *out, size_t seg, char tail)
{
    out[0] = '*';
    memset(out + 1, 'a', seg);
    out[seg] = tail;
    out[seg + 1] = '*';
    out[seg + 2] = '\0';
}

/* A Deny statement per pattern, each StringLike on `key`. */
static policy *make_policy(const char *key, size_t n_patterns, size_t seg)
{
    size_t cap = 256 + n_patterns * (seg + 256);
    char *doc = malloc(cap), *pat = malloc(seg + 3);
    size_t o = (size_t)snprintf(doc, cap, "{\"Version\":\"2012-10-17\",\"Statement\":[");
    for (size_t i = 0; i < n_patterns; i++) {
        long_segment(pat, seg, (char)('b' + i));
        o += (size_t)snprintf(doc + o, cap - o,
                              "%s{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\","
                              "\"Condition\":{\"StringLike\":{\"%s\":\"%s\"}}}",
                              i ? "," : "", key, pat);
    }
    snprintf(doc + o, cap - o, "]}");
    policy *p = NULL;
    if (policy_compile(coffer_cursor_from_str(doc), &p) != COFFER_OK) {
        fprintf(stderr, "compile failed\n");
        exit(1);
    }
    free(doc);
    free(pat);
    return p;
}

/* Times policy_evaluate without a budget (the matcher's own cost) and as cofferd runs it, with
 * the per-decision budget (policy_budget_reset): the second is what a request can provoke. */
static void run(const char *name, const policy *p, const policy_ctx *ctx, int iters)
{
    struct policy_request req = {"arn:aws:iam::111122223333:root",
                                 NULL,
                                 "111122223333",
                                 "Account",
                                 "kms:Encrypt",
                                 "arn:aws:kms:us-east-1:111122223333:key/k",
                                 ctx,
                                 NULL};
    enum policy_decision d = policy_evaluate(p, &req); /* warm */
    uint64_t s0 = policy_glob_steps();
    double t0 = now_ms(), worst = 0;
    for (int i = 0; i < iters; i++) {
        double a = now_ms();
        d = policy_evaluate(p, &req);
        double b = now_ms() - a;
        worst = b > worst ? b : worst;
    }
    double per = (now_ms() - t0) / iters;
    uint64_t steps = (policy_glob_steps() - s0) / (uint64_t)iters;
    double worst_b = 0;
    enum policy_decision db = d;
    for (int i = 0; i < iters; i++) {
        policy_budget_reset(POLICY_EVAL_BUDGET_STEPS);
        double a = now_ms();
        db = policy_evaluate(p, &req);
        double b = now_ms() - a;
        worst_b = b > worst_b ? b : worst_b;
    }
    bool spent = policy_budget_exhausted();
    policy_budget_reset(0);
    printf("%-50s %8.3f ms (max %7.3f) %10llu steps  %-12s | budgeted max %6.3f ms %s\n", name, per, worst,
           (unsigned long long)steps, policy_decision_name(d), worst_b,
           spent ? "refused (budget)" : policy_decision_name(db));
}

static void typical_one(const char *name, const policy *p, const struct policy_request *req, int iters)
{
    enum policy_decision d = policy_evaluate(p, req); /* warm */
    double t0 = now_ms();
    for (int i = 0; i < iters; i++) {
        d = policy_evaluate(p, req);
    }
    printf("%-50s %8.0f ns                       %-12s\n", name, (now_ms() - t0) * 1e6 / iters,
           policy_decision_name(d));
}

/* The typical costs, for scale: a 20-statement policy whose statements each carry four
 * condition operators (all evaluated, the last Bool failing each time, then with TLS: allowed
 * by the first statement, the final Deny still checked), and AWS's one-statement default key
 * policy. */
static int typical(int iters)
{
    static const char acct[] = "111122223333";
    char doc[16384];
    size_t o = (size_t)snprintf(doc, sizeof(doc), "{\"Version\":\"2012-10-17\",\"Statement\":[");
    for (int i = 0; i < 20; i++) {
        o += (size_t)snprintf(
            doc + o, sizeof(doc) - o,
            "%s{\"Sid\":\"S%d\",\"Effect\":\"%s\",\"Principal\":{\"AWS\":[\"arn:aws:iam::%012d:root\","
            "\"arn:aws:iam::%s:user/"
            "alice\"]},\"Action\":[\"kms:Encrypt\",\"kms:Decrypt\",\"kms:GenerateDataKey*\"],"
            "\"Resource\":\"arn:aws:kms:*:%s:key/*\",\"Condition\":{"
            "\"StringEquals\":{\"kms:CallerAccount\":\"%s\",\"kms:EncryptionContext:Dept\":[\"IT\",\"HR%d\"]}"
            ","
            "\"IpAddress\":{\"aws:SourceIp\":[\"10.0.0.0/8\",\"2001:db8::/32\"]},"
            "\"DateLessThan\":{\"aws:CurrentTime\":\"2030-01-01T00:00:00Z\"},"
            "\"Bool\":{\"aws:SecureTransport\":\"true\"}}}",
            i ? "," : "", i, i == 19 ? "Deny" : "Allow", i + 1, acct, acct, acct, i);
    }
    snprintf(doc + o, sizeof(doc) - o, "]}");
    static const char *const keys[][2] = {{"kms:CallerAccount", "111122223333"},
                                          {"kms:EncryptionContext:Dept", "IT"},
                                          {"aws:SourceIp", "10.1.2.3"},
                                          {"aws:CurrentTime", "2026-11-23T09:00:00Z"}};
    policy *p = NULL, *dflt = NULL;
    policy_ctx *c = NULL;
    if (policy_compile(coffer_cursor_from_str(doc), &p) != COFFER_OK || policy_ctx_new(&c) != COFFER_OK) {
        return 1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (policy_ctx_set(c, keys[i][0], NULL, 0) != COFFER_OK ||
            policy_ctx_add(c, keys[i][0], keys[i][1]) != COFFER_OK) {
            return 1;
        }
    }
    struct policy_request req = {
        "arn:aws:iam::111122223333:user/alice",
        NULL,
        acct,
        "User",
        "kms:Encrypt",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        c,
        NULL};
    if (policy_ctx_set_bool(c, "aws:SecureTransport", false) != COFFER_OK) {
        return 1;
    }
    typical_one("20 statements, every condition evaluated", p, &req, iters);
    if (policy_ctx_set_bool(c, "aws:SecureTransport", true) != COFFER_OK) {
        return 1;
    }
    typical_one("20 statements, allowed, final Deny checked", p, &req, iters);
    if (policy_compile(
            coffer_cursor_from_str("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                                   "\"Principal\":{\"AWS\":\"arn:aws:iam::111122223333:root\"},"
                                   "\"Action\":\"kms:*\",\"Resource\":\"*\"}]}"),
            &dflt) != COFFER_OK) {
        return 1;
    }
    typical_one("default key policy", dflt, &req, iters);
    policy_free(dflt);
    policy_free(p);
    policy_ctx_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 50;
    size_t seg = POLICY_MAX_STRING - 3;
    policy_ctx *ctx = NULL;
    if (policy_ctx_new(&ctx) != COFFER_OK) {
        return 1;
    }
    char *ec = malloc(EC_MAX + 1), *ua = malloc(UA_MAX + 1);
    memset(ec, 'a', EC_MAX - 1); /* key "k" + value: 8192 bytes */
    ec[EC_MAX - 1] = '\0';
    memset(ua, 'a', UA_MAX);
    ua[UA_MAX] = '\0';

    /* 1. the reported case: StringLike patterns against one maximal context value */
    if (policy_ctx_add_variant(ctx, "kms:EncryptionContext:k", ec) != COFFER_OK) {
        return 1;
    }
    for (size_t n = 1; n <= 3; n += 2) {
        policy *p = make_policy("kms:EncryptionContext:k", n, seg);
        char name[96];
        snprintf(name, sizeof(name), "%zu x 2048-byte pattern vs 8 KB context value", n);
        run(name, p, ctx, iters);
        policy_free(p);
    }
    /* 2. the same bytes split into case variants of one key: each variant is evaluated */
    policy_ctx_clear(ctx);
    char chunk[65];
    memset(chunk, 'a', 64);
    chunk[64] = '\0';
    for (size_t used = 0; used + 65 <= EC_MAX;) {
        /* (real variants need distinct spellings of a longer key; the evaluator sees the same) */
        if (policy_ctx_add_variant(ctx, "kms:EncryptionContext:k", chunk) != COFFER_OK) {
            return 1;
        }
        used += 65;
    }
    policy *p3 = make_policy("kms:EncryptionContext:k", 3, seg);
    run("3 x 2048-byte pattern vs 8 KB in 126 case variants", p3, ctx, iters);
    policy_free(p3);
    /* 3. aws:UserAgent at its cap */
    policy_ctx_clear(ctx);
    if (policy_ctx_set_str(ctx, "aws:UserAgent", ua) != COFFER_OK) {
        return 1;
    }
    for (size_t n = 1; n <= 3; n += 2) {
        policy *p = make_policy("aws:UserAgent", n, seg);
        char name[96];
        snprintf(name, sizeof(name), "%zu x 2048-byte pattern vs 8 KB aws:UserAgent", n);
        run(name, p, ctx, iters);
        policy_free(p);
    }
    /* 4. many short segments, "*a*a*...*ab*" at the string limit */
    policy_ctx_clear(ctx);
    if (policy_ctx_set_str(ctx, "kms:EncryptionContext:k", ec) != COFFER_OK) {
        return 1;
    }
    char *pat = malloc(POLICY_MAX_STRING + 1), *doc = malloc(POLICY_MAX_STRING + 512);
    for (size_t i = 0; i + 1 < POLICY_MAX_STRING; i += 2) {
        pat[i] = '*';
        pat[i + 1] = 'a';
    }
    pat[POLICY_MAX_STRING - 2] = 'b';
    pat[POLICY_MAX_STRING - 1] = '*';
    pat[POLICY_MAX_STRING] = '\0';
    snprintf(doc, POLICY_MAX_STRING + 512,
             "{\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\",\"Condition\":"
             "{\"StringLike\":{\"kms:EncryptionContext:k\":\"%s\"}}}]}",
             pat);
    policy *p4 = NULL;
    if (policy_compile(coffer_cursor_from_str(doc), &p4) != COFFER_OK) {
        return 1;
    }
    run("1 x \"*a*a*...*ab*\" (1024 segments) vs 8 KB value", p4, ctx, iters);
    policy_free(p4);
    /* 5. a whole key policy (32 KB) of short patterns that each scan the whole value */
    size_t cap = KEY_POLICY_MAX + 256, o = 0;
    char *big = malloc(cap);
    static const char stmt[] = "{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\","
                               "\"Condition\":{\"StringLike\":{\"kms:EncryptionContext:k\":[";
    o += (size_t)snprintf(big, cap, "{\"Statement\":[%s", stmt);
    size_t n_short = 0;
    while (o + sizeof(stmt) + 32 < KEY_POLICY_MAX) {
        if (n_short > 0 && n_short % 1000 == 0) { /* at most 1024 values per condition */
            o += (size_t)snprintf(big + o, cap - o, "]}}},%s", stmt);
        }
        o += (size_t)snprintf(big + o, cap - o, "%s\"*%c%c*\"", n_short % 1000 ? "," : "",
                              'b' + (int)(n_short % 20), 'b' + (int)(n_short / 20 % 20));
        n_short++;
    }
    snprintf(big + o, cap - o, "]}}}]}");
    policy *p5 = NULL;
    if (policy_compile(coffer_cursor_from_str(big), &p5) != COFFER_OK) {
        fprintf(stderr, "compile of the 32 KB policy failed: %s\n", coffer_last_message());
        return 1;
    }
    char name5[96];
    snprintf(name5, sizeof(name5), "%zu x \"*xy*\" (a 32 KB key policy) vs 8 KB value", n_short);
    run(name5, p5, ctx, iters);
    policy_free(p5);
    free(big);
    free(pat);
    free(doc);
    free(ec);
    free(ua);
    policy_ctx_free(ctx);
    return typical(iters * 4000);
}
