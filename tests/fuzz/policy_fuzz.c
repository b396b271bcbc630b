/*
 * libFuzzer target for the IAM policy compiler (src/iam/policy.c): every input is compiled as a
 * policy document; whatever compiles is evaluated against a fixed request that carries every
 * kind of context value (strings, multi-valued keys, an empty set, numbers, dates, IPv4/IPv6,
 * booleans, ARNs), as several principals. Must never crash, hang or leak, and the decision must
 * be one of the three values and stable across two evaluations.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "iam/policy.h"

static policy_ctx *fz_ctx;

static void fz_init(void)
{
    static const char *const keys[] = {"Department", "Project"};
    if (policy_ctx_new(&fz_ctx) != COFFER_OK ||
        policy_ctx_set_str(fz_ctx, "aws:username", "alice") != COFFER_OK ||
        policy_ctx_set_str(fz_ctx, "aws:userid", "AIDAEXAMPLE") != COFFER_OK ||
        policy_ctx_set_ip(fz_ctx, "aws:SourceIp", "10.1.2.3") != COFFER_OK ||
        policy_ctx_set_ip(fz_ctx, "x:ip6", "2001:db8::1") != COFFER_OK ||
        policy_ctx_set_time(fz_ctx, "aws:CurrentTime", 1795424400) != COFFER_OK ||
        policy_ctx_set_bool(fz_ctx, "aws:SecureTransport", true) != COFFER_OK ||
        policy_ctx_set_number(fz_ctx, "x:n", 42) != COFFER_OK ||
        policy_ctx_set(fz_ctx, "kms:EncryptionContextKeys", keys, 2) != COFFER_OK ||
        policy_ctx_set(fz_ctx, "x:empty", NULL, 0) != COFFER_OK ||
        policy_ctx_set_str(fz_ctx, "kms:EncryptionContext:Department", "IT") != COFFER_OK ||
        policy_ctx_set_str(fz_ctx, "kms:CallerAccount", "111122223333") != COFFER_OK ||
        policy_ctx_set_str(fz_ctx, "aws:SourceArn", "arn:aws:s3:::bucket/*?${x}") != COFFER_OK) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_ctx == NULL) {
        fz_init();
    }
    policy *p = NULL;
    if (policy_compile(coffer_cursor_from(data, size), &p) != COFFER_OK) {
        if (p != NULL) {
            abort(); /* out-param must stay NULL on failure */
        }
        return 0;
    }
    const struct policy_request reqs[] = {
        {"arn:aws:iam::111122223333:user/alice", NULL, "111122223333", "User", "kms:Encrypt",
         "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", fz_ctx,
         "AIDAEXAMPLEUSERID0001"},
        {"arn:aws:sts::444455556666:assumed-role/Reader/s1", "arn:aws:iam::444455556666:role/Reader",
         "444455556666", "AssumedRole", "kms:Decrypt", "arn:aws:s3:::bucket/home/alice/f", fz_ctx,
         "AROAEXAMPLEROLEID0001:s1"},
        {"ec2.amazonaws.com", NULL, NULL, "Service", "s3:GetObject", "", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        enum policy_decision d = policy_evaluate(p, &reqs[i]);
        if ((d != POLICY_ALLOW && d != POLICY_DENY_EXPLICIT && d != POLICY_NOT_APPLICABLE) ||
            d != policy_evaluate(p, &reqs[i])) {
            abort();
        }
    }
    const policy *all[] = {p, p};
    (void)policy_evaluate_all(all, 2, &reqs[0]);
    policy_free(p);
    return 0;
}
