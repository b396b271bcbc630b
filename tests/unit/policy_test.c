/*
 * Unit tests for the IAM policy language (src/iam/policy.c, policy_eval.c): a table of
 * evaluation cases (policy, caller, action, resource, context -> decision), a table of
 * malformed documents with the message fragment each must produce, the combiner, and the
 * request-context API. Policies in the tables use ' for " to stay readable, and ` for '.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "iam/policy.h"
#include "iam/policy_internal.h"

#define A POLICY_ALLOW
#define N POLICY_NOT_APPLICABLE
#define D POLICY_DENY_EXPLICIT

#define ACCT "111122223333"
#define OTHER "444455556666"
#define ALICE "arn:aws:iam::" ACCT ":user/alice"
#define BOB "arn:aws:iam::" ACCT ":user/bob"
#define ROOT "arn:aws:iam::" ACCT ":root"
#define KEY "arn:aws:kms:us-east-1:" ACCT ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
#define KEY2 "arn:aws:kms:us-east-1:" ACCT ":key/0000ffff-12ab-34cd-56ef-1234567890ab"
#define SESSION "arn:aws:sts::" OTHER ":assumed-role/Reader/s1"
#define ROLE "arn:aws:iam::" OTHER ":role/Reader"

/* Policy builders (single quotes become double quotes at run time). */
#define DOC(stmts) "{'Version':'2012-10-17','Statement':[" stmts "]}"
#define ALLOW_ALL "{'Effect':'Allow','Action':'*','Resource':'*'}"
#define DENY_ALL "{'Effect':'Deny','Action':'*','Resource':'*'}"
#define ACT(a) DOC("{'Effect':'Allow','Action':" a ",'Resource':'*'}")
#define NACT(a) DOC("{'Effect':'Allow','NotAction':" a ",'Resource':'*'}")
#define RES(r) DOC("{'Effect':'Allow','Action':'*','Resource':" r "}")
#define NRES(r) DOC("{'Effect':'Allow','Action':'*','NotResource':" r "}")
#define PRIN(p) DOC("{'Effect':'Allow','Principal':" p ",'Action':'*','Resource':'*'}")
#define NPDENY(p)                                                                                            \
    DOC("{'Effect':'Allow','Principal':'*','Action':'*','Resource':'*'},"                                    \
        "{'Effect':'Deny','NotPrincipal':" p ",'Action':'*','Resource':'*'}")
#define CONDS(c) DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':" c "}")
#define COND(op, key, vals) CONDS("{'" op "':{'" key "':" vals "}}")

struct ecase {
    int line;
    const char *pol;
    const char *who; /* NULL: alice; "-": anonymous; "svc:NAME": service principal */
    const char *act; /* NULL: kms:Encrypt */
    const char *res; /* NULL: KEY */
    const char *ctx; /* "k=v1|v2;k2=" ("k=" is an empty set) */
    enum policy_decision want;
};

#define CASE(pol, who, act, res, ctx, want)                                                                  \
    {                                                                                                        \
        __LINE__, pol, who, act, res, ctx, want                                                              \
    }
#define CX(pol, ctx, want) CASE(pol, NULL, NULL, NULL, ctx, want)

#define NOW "aws:CurrentTime=2026-11-23T09:00:00Z"

static const struct ecase eval_cases[] = {
    /* ---- effect and combining inside one policy ---- */
    CX(DOC(ALLOW_ALL), NULL, A),
    CX(DOC(DENY_ALL), NULL, D),
    CX(DOC(ALLOW_ALL "," DENY_ALL), NULL, D),
    CX(DOC(DENY_ALL "," ALLOW_ALL), NULL, D),
    CX(DOC("{'Effect':'Allow','Action':'kms:Decrypt','Resource':'*'}"), NULL, N),
    CX(DOC(ALLOW_ALL ",{'Effect':'Deny','Action':'kms:Decrypt','Resource':'*'}"), NULL, A),
    CX("{'Version':'2012-10-17','Statement':" ALLOW_ALL "}", NULL, A),
    CX("{'Statement':" ALLOW_ALL "}", NULL, A),
    CX("{'Version':'2008-10-17','Id':'x','Statement':[" ALLOW_ALL "]}", NULL, A),
    CX(DOC("{'Sid':'a','Effect':'Deny','Action':'kms:Encrypt','Resource':'*','Condition':{'Bool':{'aws:"
           "SecureTransport':'false'}}}," ALLOW_ALL),
       "aws:SecureTransport=true", A),
    CX(DOC("{'Sid':'a','Effect':'Deny','Action':'kms:Encrypt','Resource':'*','Condition':{'Bool':{'aws:"
           "SecureTransport':'false'}}}," ALLOW_ALL),
       "aws:SecureTransport=false", D),

    /* ---- Action: case-insensitive, * and ? wildcards, NotAction ---- */
    CX(ACT("'kms:Encrypt'"), NULL, A),
    CX(ACT("'KMS:ENCRYPT'"), NULL, A),
    CX(ACT("'kms:encrypt'"), NULL, A),
    CX(ACT("'kms:*'"), NULL, A),
    CX(ACT("'kms:Enc*'"), NULL, A),
    CX(ACT("'kms:Decrypt'"), NULL, N),
    CX(ACT("'kms:En?rypt'"), NULL, A),
    CX(ACT("'kms:En?crypt'"), NULL, N),
    CX(ACT("'kms:Encrypt?'"), NULL, N),
    CX(ACT("'*'"), NULL, A),
    CX(ACT("['kms:Decrypt','kms:Encrypt']"), NULL, A),
    CX(ACT("['kms:Decrypt','kms:Sign']"), NULL, N),
    CX(ACT("'s3:*'"), NULL, N),
    CX(ACT("'km*:Encrypt'"), NULL, A),
    CASE(ACT("'kms:*Key'"), NULL, "kms:DescribeKey", NULL, NULL, A),
    CASE(ACT("'kms:*Key'"), NULL, "kms:Encrypt", NULL, NULL, N),
    CASE(ACT("'kms:*DataKey*'"), NULL, "kms:GenerateDataKeyWithoutPlaintext", NULL, NULL, A),
    CASE(ACT("'kms:ReEncrypt*'"), NULL, "kms:ReEncryptFrom", NULL, NULL, A),
    CASE(ACT("'kms:Encrypt'"), NULL, "kms:EncryptX", NULL, NULL, N),
    CX(NACT("'kms:Decrypt'"), NULL, A),
    CASE(NACT("'kms:Decrypt'"), NULL, "kms:Decrypt", NULL, NULL, N),
    CASE(NACT("['kms:Describe*','kms:List*']"), NULL, "kms:ListKeys", NULL, NULL, N),
    CASE(NACT("['kms:Describe*','kms:List*']"), NULL, "kms:Encrypt", NULL, NULL, A),
    CASE(DOC(ALLOW_ALL ",{'Effect':'Deny','NotAction':'kms:Describe*','Resource':'*'}"), NULL,
         "kms:DescribeKey", NULL, NULL, A),
    CASE(DOC(ALLOW_ALL ",{'Effect':'Deny','NotAction':'kms:Describe*','Resource':'*'}"), NULL, "kms:Encrypt",
         NULL, NULL, D),

    /* ---- Resource: ARN wildcards per component, case-sensitive, NotResource ---- */
    CX(RES("'" KEY "'"), NULL, A),
    CX(RES("'" KEY2 "'"), NULL, N),
    CX(RES("'arn:aws:kms:*:" ACCT ":key/*'"), NULL, A),
    CX(RES("'arn:aws:kms:us-east-1:*:key/*'"), NULL, A),
    CX(RES("'arn:aws:kms:us-*-1:" ACCT ":key/*'"), NULL, A),
    CX(RES("'arn:aws:kms:*:*:*'"), NULL, A),
    CX(RES("'arn:aws:kms:us-east-1:" ACCT ":*'"), NULL, A),
    CX(RES("'arn:aws:kms:us-east-1:" ACCT ":alias/*'"), NULL, N),
    CX(RES("'arn:aws:kms:us-west-2:" ACCT ":key/*'"), NULL, N),
    CX(RES("'arn:aws:kms:*:" OTHER ":*'"), NULL, N),
    CX(RES("'arn:aws:kms:us-east-1:" ACCT ":KEY/*'"), NULL, N),
    CX(RES("'arn:aws:kms:us-east-1:11112222333?:key/*'"), NULL, A),
    CX(RES("'arn:aws:kms:us-east-1:1111222233?:key/*'"), NULL, N),
    CX(RES("'arn:aws:kms:us-east-1:" ACCT ":key/1234abcd-*'"), NULL, A),
    CX(RES("'arn:aws:kms:us-east-?:" ACCT ":key/1?34?bcd-12ab-34cd-56ef-1234567890a?'"), NULL, A),
    CX(RES("'arn:aws:kms:*1:" ACCT ":key/*'"), NULL, A),
    CX(RES("'arn:aws:s3:::*'"), NULL, N),
    CX(RES("['" KEY2 "','" KEY "']"), NULL, A),
    CX(NRES("'" KEY2 "'"), NULL, A),
    CX(NRES("'" KEY "'"), NULL, N),
    CX(NRES("'arn:aws:kms:*:*:key/*'"), NULL, N),
    CASE(DOC(ALLOW_ALL ",{'Effect':'Deny','Action':'*','NotResource':'" KEY "'}"), NULL, NULL, KEY, NULL, A),
    CASE(DOC(ALLOW_ALL ",{'Effect':'Deny','Action':'*','NotResource':'" KEY "'}"), NULL, NULL, KEY2, NULL, D),
    CASE(RES("'arn:aws:ssm:us-east-1:" ACCT ":parameter/app/*'"), NULL, "ssm:GetParameter",
         "arn:aws:ssm:us-east-1:" ACCT ":parameter/app/db:1", NULL, A),

    /* ---- Principal ---- */
    CX(PRIN("'*'"), NULL, A),
    CASE(PRIN("'*'"), "-", NULL, NULL, NULL, A),
    CX(PRIN("{'AWS':'*'}"), NULL, A),
    CX(PRIN("{'AWS':'" ACCT "'}"), NULL, A),
    CX(PRIN("{'AWS':'" ROOT "'}"), NULL, A),
    CASE(PRIN("{'AWS':'" ROOT "'}"), ROOT, NULL, NULL, NULL, A),
    CASE(PRIN("{'AWS':'" ACCT "'}"), SESSION, NULL, NULL, NULL, N),
    CASE(PRIN("{'AWS':'" OTHER "'}"), SESSION, NULL, NULL, NULL, A),
    CX(PRIN("{'AWS':'" OTHER "'}"), NULL, N),
    CX(PRIN("{'AWS':'arn:aws:iam::" OTHER ":root'}"), NULL, N),
    CX(PRIN("{'AWS':'" ALICE "'}"), NULL, A),
    CASE(PRIN("{'AWS':'" ALICE "'}"), BOB, NULL, NULL, NULL, N),
    CASE(PRIN("{'AWS':['" BOB "','" ALICE "']}"), BOB, NULL, NULL, NULL, A),
    CASE(PRIN("{'AWS':'" ROLE "'}"), SESSION, NULL, NULL, NULL, A),
    CASE(PRIN("{'AWS':'arn:aws:iam::" OTHER ":role/Writer'}"), SESSION, NULL, NULL, NULL, N),
    CASE(PRIN("{'AWS':'" SESSION "'}"), SESSION, NULL, NULL, NULL, A),
    CASE(PRIN("{'Service':'ec2.amazonaws.com'}"), "svc:ec2.amazonaws.com", NULL, NULL, NULL, A),
    CASE(PRIN("{'Service':['s3.amazonaws.com','ec2.amazonaws.com']}"), "svc:ec2.amazonaws.com", NULL, NULL,
         NULL, A),
    CX(PRIN("{'Service':'ec2.amazonaws.com'}"), NULL, N),
    CASE(PRIN("{'AWS':'" ACCT "'}"), "svc:ec2.amazonaws.com", NULL, NULL, NULL, N),
    CASE(PRIN("{'AWS':'" ACCT "'}"), "-", NULL, NULL, NULL, N),
    CASE(PRIN("{'AWS':'" ALICE "','Service':'ec2.amazonaws.com'}"), "svc:ec2.amazonaws.com", NULL, NULL, NULL,
         A),
    CX(PRIN("{'Federated':'cognito-identity.amazonaws.com'}"), NULL, N),
    CX(DOC("{'Effect':'Allow','Principal':{'AWS':'" OTHER "'},'Action':'*','Resource':'*'}," ALLOW_ALL), NULL,
       A),

    /* ---- NotPrincipal with Deny: everyone but the listed identities (all facets) ---- */
    CX(NPDENY("{'AWS':['" ALICE "','" ROOT "']}"), NULL, A),
    CASE(NPDENY("{'AWS':['" ALICE "','" ROOT "']}"), BOB, NULL, NULL, NULL, D),
    CX(NPDENY("{'AWS':'" ALICE "'}"), NULL, D), /* the account is not excluded */
    CASE(NPDENY("{'AWS':'" ROOT "'}"), ROOT, NULL, NULL, NULL, A),
    CX(NPDENY("{'AWS':'" ROOT "'}"), NULL, D),
    CX(NPDENY("{'AWS':['" ALICE "','" ACCT "']}"), NULL, A),
    CASE(NPDENY("{'AWS':['" ROLE "','" OTHER "']}"), SESSION, NULL, NULL, NULL, D),
    CASE(NPDENY("{'AWS':['" SESSION "','" ROLE "','" OTHER "']}"), SESSION, NULL, NULL, NULL, A),
    CASE(NPDENY("{'AWS':['" SESSION "','" OTHER "']}"), SESSION, NULL, NULL, NULL, D),
    CX(NPDENY("{'AWS':'*'}"), NULL, A),
    CASE(NPDENY("{'AWS':['" ALICE "','" ROOT "']}"), "-", NULL, NULL, NULL, D),
    CASE(NPDENY("{'Service':'ec2.amazonaws.com'}"), "svc:ec2.amazonaws.com", NULL, NULL, NULL, A),
    CX(NPDENY("{'Service':'ec2.amazonaws.com'}"), NULL, D),

    /* ---- StringEquals / StringNotEquals (+IgnoreCase) ---- */
    CX(COND("StringEquals", "aws:username", "'alice'"), "aws:username=alice", A),
    CX(COND("StringEquals", "aws:username", "'alice'"), "aws:username=bob", N),
    CX(COND("StringEquals", "aws:username", "'alice'"), NULL, N),
    CX(COND("StringEquals", "aws:username", "'alice'"), "aws:username=Alice", N),
    CX(COND("StringEquals", "AWS:UserName", "'alice'"), "aws:username=alice", A),
    CX(COND("StringEquals", "aws:username", "'alice'"), "AWS:USERNAME=alice", A),
    CX(COND("StringEquals", "aws:username", "['bob','alice']"), "aws:username=alice", A),
    CX(COND("StringEquals", "aws:username", "['bob','carol']"), "aws:username=alice", N),
    CX(COND("StringEquals", "kms:EncryptionContext:Department", "'IT'"),
       "kms:EncryptionContext:Department=IT", A),
    CX(COND("StringEquals", "kms:EncryptionContext:Department", "'IT'"), "kms:EncryptionContext:Project=IT",
       N),
    CX(COND("StringEquals", "kms:CallerAccount", OTHER), "kms:CallerAccount=" OTHER, A),
    CX(COND("StringEquals", "x:multi", "'y'"), "x:multi=x|y", A),
    CX(COND("StringEquals", "x:multi", "'z'"), "x:multi=x|y", N),
    CX(COND("StringEquals", "x:a", "'y'"), "x:a=", N),
    CX(CONDS("{'StringEquals':{'x:a':'1','x:b':'2'}}"), "x:a=1;x:b=2", A),
    CX(CONDS("{'StringEquals':{'x:a':'1','x:b':'2'}}"), "x:a=1;x:b=3", N),
    CX(CONDS("{'StringEquals':{'x:a':'1','x:b':'2'}}"), "x:a=1", N),
    CX(CONDS("{'StringEquals':{'x:a':'1'},'StringLike':{'x:b':'z*'}}"), "x:a=1;x:b=zz", A),
    CX(CONDS("{'StringEquals':{'x:a':'1'},'StringLike':{'x:b':'z*'}}"), "x:a=1;x:b=yz", N),
    CX(COND("StringNotEquals", "aws:username", "'alice'"), "aws:username=bob", A),
    CX(COND("StringNotEquals", "aws:username", "'alice'"), "aws:username=alice", N),
    CX(COND("StringNotEquals", "aws:username", "'alice'"), NULL, A),
    CX(COND("StringNotEquals", "aws:username", "['bob','alice']"), "aws:username=alice", N),
    CX(COND("StringNotEquals", "aws:username", "['bob','carol']"), "aws:username=alice", A),
    CX(COND("StringNotEquals", "x:multi", "'y'"), "x:multi=x|y", N),
    CX(COND("StringEqualsIgnoreCase", "aws:username", "'ALICE'"), "aws:username=alice", A),
    CX(COND("StringEqualsIgnoreCase", "aws:username", "'ALICE'"), "aws:username=bob", N),
    CX(COND("StringEqualsIgnoreCase", "aws:username", "'ALICE'"), NULL, N),
    CX(COND("StringNotEqualsIgnoreCase", "aws:username", "'ALICE'"), "aws:username=alice", N),
    CX(COND("StringNotEqualsIgnoreCase", "aws:username", "'ALICE'"), "aws:username=bob", A),
    CX(COND("StringNotEqualsIgnoreCase", "aws:username", "'ALICE'"), NULL, A),

    /* ---- StringLike / StringNotLike ---- */
    CX(COND("StringLike", "aws:username", "'al*'"), "aws:username=alice", A),
    CX(COND("StringLike", "aws:username", "'a?ice'"), "aws:username=alice", A),
    CX(COND("StringLike", "aws:username", "'a?ce'"), "aws:username=alice", N),
    CX(COND("StringLike", "aws:username", "'AL*'"), "aws:username=alice", N),
    CX(COND("StringLike", "aws:username", "'*'"), "aws:username=alice", A),
    CX(COND("StringLike", "aws:username", "'*'"), NULL, N),
    CX(COND("StringLike", "s3:prefix", "'home/*/docs'"), "s3:prefix=home/a/b/docs", A),
    CX(COND("StringLike", "aws:username", "['b*','*ce']"), "aws:username=alice", A),
    CX(COND("StringNotLike", "aws:username", "'b*'"), "aws:username=alice", A),
    CX(COND("StringNotLike", "aws:username", "'a*'"), "aws:username=alice", N),
    CX(COND("StringNotLike", "aws:username", "'a*'"), NULL, A),

    /* ---- ...IfExists ---- */
    CX(COND("StringEqualsIfExists", "aws:username", "'alice'"), NULL, A),
    CX(COND("StringEqualsIfExists", "aws:username", "'alice'"), "aws:username=alice", A),
    CX(COND("StringEqualsIfExists", "aws:username", "'alice'"), "aws:username=bob", N),
    CX(COND("StringLikeIfExists", "aws:username", "'a*'"), "aws:username=bob", N),
    CX(COND("NumericLessThanIfExists", "x:n", "'5'"), NULL, A),
    CX(COND("NumericLessThanIfExists", "x:n", "'5'"), "x:n=7", N),
    CX(COND("BoolIfExists", "aws:SecureTransport", "'true'"), NULL, A),
    CX(COND("BoolIfExists", "aws:SecureTransport", "'true'"), "aws:SecureTransport=false", N),
    CX(COND("IpAddressIfExists", "aws:SourceIp", "'10.0.0.0/8'"), NULL, A),
    CX(COND("DateLessThanIfExists", "aws:CurrentTime", "'2020-01-01'"), NOW, N),
    CX(COND("ArnLikeIfExists", "aws:SourceArn", "'arn:aws:s3:::b'"), NULL, A),

    /* ---- Numeric* ---- */
    CX(COND("NumericEquals", "x:n", "'10'"), "x:n=10", A),
    CX(COND("NumericEquals", "x:n", "'10'"), "x:n=10.0", A),
    CX(COND("NumericEquals", "x:n", "10"), "x:n=10", A),
    CX(COND("NumericEquals", "x:n", "'10'"), "x:n=11", N),
    CX(COND("NumericEquals", "x:n", "'10'"), "x:n=abc", N),
    CX(COND("NumericEquals", "x:n", "'10'"), NULL, N),
    CX(COND("NumericNotEquals", "x:n", "'10'"), "x:n=11", A),
    CX(COND("NumericNotEquals", "x:n", "'10'"), "x:n=10", N),
    CX(COND("NumericLessThan", "x:n", "'5'"), "x:n=4", A),
    CX(COND("NumericLessThan", "x:n", "'5'"), "x:n=5", N),
    CX(COND("NumericLessThan", "x:n", "'0'"), "x:n=-1", A),
    CX(COND("NumericLessThanEquals", "x:n", "'5'"), "x:n=5", A),
    CX(COND("NumericLessThanEquals", "x:n", "'5'"), "x:n=5.5", N),
    CX(COND("NumericGreaterThan", "x:n", "'5'"), "x:n=6", A),
    CX(COND("NumericGreaterThan", "x:n", "'5'"), "x:n=5", N),
    CX(COND("NumericGreaterThanEquals", "x:n", "'5'"), "x:n=5", A),
    CX(COND("NumericGreaterThanEquals", "x:n", "2.5"), "x:n=2.4", N),
    CX(COND("NumericEquals", "x:n", "['1','2','3']"), "x:n=2", A),

    /* ---- Date* (ISO 8601 and epoch seconds) ---- */
    CX(COND("DateLessThan", "aws:CurrentTime", "'2026-12-01T00:00:00Z'"), NOW, A),
    CX(COND("DateLessThan", "aws:CurrentTime", "'2026-11-23T09:00:00Z'"), NOW, N),
    CX(COND("DateGreaterThan", "aws:CurrentTime", "'2026-12-01T00:00:00Z'"), NOW, N),
    CX(COND("DateGreaterThan", "aws:CurrentTime", "'2026-11-23'"), NOW, A),
    CX(COND("DateEquals", "aws:CurrentTime", "'1795424400'"), NOW, A),
    CX(COND("DateEquals", "aws:CurrentTime", "1795424400"), NOW, A),
    CX(COND("DateEquals", "aws:CurrentTime", "'2026-11-23T11:00:00+02:00'"), NOW, A),
    CX(COND("DateEquals", "aws:CurrentTime", "'2026-11-23T04:00:00-0500'"), NOW, A),
    CX(COND("DateEquals", "aws:CurrentTime", "'2026-11-23T09:00Z'"), NOW, A),
    CX(COND("DateEquals", "aws:CurrentTime", "'2026-11-23T09:00:00.000Z'"), NOW, A),
    CX(COND("DateLessThan", "aws:CurrentTime", "'2026-11-23T09:00:00.001Z'"), NOW, A),
    CX(COND("DateNotEquals", "aws:CurrentTime", "'2026-11-23T09:00:01Z'"), NOW, A),
    CX(COND("DateNotEquals", "aws:CurrentTime", "'2026-11-23T09:00:00Z'"), NOW, N),
    CX(COND("DateLessThanEquals", "aws:CurrentTime", "'2026-11-23T09:00:00Z'"), NOW, A),
    CX(COND("DateGreaterThanEquals", "aws:CurrentTime", "'2026-11-23T09:00:00Z'"), NOW, A),
    CX(COND("DateGreaterThanEquals", "aws:CurrentTime", "'2026-11-23T09:00:01Z'"), NOW, N),
    CX(COND("DateLessThan", "aws:CurrentTime", "'2026-12-01'"), "aws:CurrentTime=1795424400", A),
    CX(COND("DateLessThan", "aws:CurrentTime", "'2026-12-01'"), NULL, N),
    CX(COND("DateLessThan", "aws:CurrentTime", "'2026-12-01'"), "aws:CurrentTime=yesterday", N),
    CX(COND("DateGreaterThan", "aws:EpochTime", "'2000-01-01T00:00:00Z'"), "aws:EpochTime=946684801", A),

    /* ---- Bool ---- */
    CX(COND("Bool", "aws:SecureTransport", "'true'"), "aws:SecureTransport=true", A),
    CX(COND("Bool", "aws:SecureTransport", "'true'"), "aws:SecureTransport=false", N),
    CX(COND("Bool", "aws:SecureTransport", "true"), "aws:SecureTransport=true", A),
    CX(COND("Bool", "aws:SecureTransport", "'false'"), "aws:SecureTransport=false", A),
    CX(COND("Bool", "aws:SecureTransport", "'true'"), NULL, N),
    CX(COND("Bool", "aws:SecureTransport", "'true'"), "aws:SecureTransport=yes", N),
    CX(COND("Bool", "kms:GrantIsForAWSResource", "'true'"), "kms:GrantIsForAWSResource=TRUE", A),

    /* ---- IpAddress / NotIpAddress (IPv4 and IPv6) ---- */
    CX(COND("IpAddress", "aws:SourceIp", "'10.0.0.0/8'"), "aws:SourceIp=10.1.2.3", A),
    CX(COND("IpAddress", "aws:SourceIp", "'10.0.0.0/8'"), "aws:SourceIp=192.168.1.1", N),
    CX(COND("IpAddress", "aws:SourceIp", "'127.0.0.1'"), "aws:SourceIp=127.0.0.1", A),
    CX(COND("IpAddress", "aws:SourceIp", "'127.0.0.1/32'"), "aws:SourceIp=127.0.0.2", N),
    CX(COND("IpAddress", "aws:SourceIp", "['192.0.2.0/24','10.0.0.0/8']"), "aws:SourceIp=10.9.9.9", A),
    CX(COND("IpAddress", "aws:SourceIp", "'203.0.113.0/25'"), "aws:SourceIp=203.0.113.127", A),
    CX(COND("IpAddress", "aws:SourceIp", "'203.0.113.0/25'"), "aws:SourceIp=203.0.113.128", N),
    CX(COND("IpAddress", "aws:SourceIp", "'203.0.113.77/24'"), "aws:SourceIp=203.0.113.1", A),
    CX(COND("IpAddress", "aws:SourceIp", "'0.0.0.0/0'"), "aws:SourceIp=8.8.8.8", A),
    CX(COND("IpAddress", "aws:SourceIp", "'2001:db8::/32'"), "aws:SourceIp=2001:db8:1::5", A),
    CX(COND("IpAddress", "aws:SourceIp", "'2001:db8::/32'"), "aws:SourceIp=2001:db9::1", N),
    CX(COND("IpAddress", "aws:SourceIp", "'2001:db8:abcd:12::/63'"), "aws:SourceIp=2001:db8:abcd:13::1", A),
    CX(COND("IpAddress", "aws:SourceIp", "'2001:db8:abcd:12::/64'"), "aws:SourceIp=2001:db8:abcd:13::1", N),
    CX(COND("IpAddress", "aws:SourceIp", "'::1/128'"), "aws:SourceIp=::1", A),
    CX(COND("IpAddress", "aws:SourceIp", "'2001:db8::/32'"), "aws:SourceIp=10.0.0.1", N),
    CX(COND("IpAddress", "aws:SourceIp", "'10.0.0.0/8'"), "aws:SourceIp=::ffff:10.0.0.1", N),
    CX(COND("IpAddress", "aws:SourceIp", "'10.0.0.0/8'"), "aws:SourceIp=not-an-ip", N),
    CX(COND("IpAddress", "aws:SourceIp", "'10.0.0.0/8'"), NULL, N),
    CX(COND("NotIpAddress", "aws:SourceIp", "'10.0.0.0/8'"), "aws:SourceIp=192.168.1.1", A),
    CX(COND("NotIpAddress", "aws:SourceIp", "'10.0.0.0/8'"), "aws:SourceIp=10.1.2.3", N),
    CX(COND("NotIpAddress", "aws:SourceIp", "'10.0.0.0/8'"), NULL, A),
    CX(COND("NotIpAddress", "aws:SourceIp", "['10.0.0.0/8','fd00::/8']"), "aws:SourceIp=fd12::1", N),

    /* ---- Arn* ---- */
    CX(COND("ArnLike", "aws:PrincipalArn", "'arn:aws:iam::" ACCT ":user/*'"), NULL, A),
    CX(COND("ArnEquals", "aws:PrincipalArn", "'" ALICE "'"), NULL, A),
    CX(COND("ArnEquals", "aws:PrincipalArn", "'" BOB "'"), NULL, N),
    CX(COND("ArnLike", "aws:PrincipalArn", "'arn:aws:iam::" OTHER ":user/*'"), NULL, N),
    CX(COND("ArnLike", "aws:PrincipalArn", "'arn:aws:iam::*:role/*'"), NULL, N),
    CX(COND("ArnLike", "aws:PrincipalArn", "'arn:aws:iam::*:user/al?ce'"), NULL, A),
    CX(COND("ArnLike", "aws:PrincipalArn", "'arn:aws:IAM::*:user/*'"), NULL, N),
    CX(COND("ArnNotLike", "aws:PrincipalArn", "'arn:aws:iam::*:role/*'"), NULL, A),
    CX(COND("ArnNotLike", "aws:PrincipalArn", "'arn:aws:iam::*:user/*'"), NULL, N),
    CX(COND("ArnNotEquals", "aws:SourceArn", "'arn:aws:s3:::bucket'"), NULL, A),
    CX(COND("ArnNotEquals", "aws:SourceArn", "'arn:aws:s3:::bucket'"), "aws:SourceArn=arn:aws:s3:::bucket",
       N),
    CX(COND("ArnLike", "aws:SourceArn", "'arn:aws:s3:::*'"), "aws:SourceArn=bucket", N),
    CX(COND("ArnLike", "aws:SourceArn", "'arn:aws:s3:::*'"), "aws:SourceArn=arn:aws:s3:::my-bucket", A),

    /* ---- Null ---- */
    CX(COND("Null", "aws:username", "'true'"), NULL, A),
    CX(COND("Null", "aws:username", "'true'"), "aws:username=alice", N),
    CX(COND("Null", "aws:username", "'false'"), "aws:username=alice", A),
    CX(COND("Null", "aws:username", "'false'"), NULL, N),
    CX(COND("Null", "aws:username", "true"), "aws:username=", A),
    CX(COND("Null", "aws:PrincipalArn", "'false'"), NULL, A),

    /* ---- ForAnyValue: / ForAllValues: ---- */
    CX(COND("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"),
       "kms:EncryptionContextKeys=Department", A),
    CX(COND("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"),
       "kms:EncryptionContextKeys=Other|Project", A),
    CX(COND("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"),
       "kms:EncryptionContextKeys=Other", N),
    CX(COND("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", "['Department']"),
       "kms:EncryptionContextKeys=", N),
    CX(COND("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", "['Department']"), NULL, N),
    CX(COND("ForAllValues:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"),
       "kms:EncryptionContextKeys=Department|Project", A),
    CX(COND("ForAllValues:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"),
       "kms:EncryptionContextKeys=Department|Other", N),
    CX(COND("ForAllValues:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"),
       "kms:EncryptionContextKeys=", A),
    CX(COND("ForAllValues:StringEquals", "kms:EncryptionContextKeys", "['Department','Project']"), NULL, A),
    CX(COND("ForAllValues:StringLike", "kms:EncryptionContextKeys", "'Dep*'"),
       "kms:EncryptionContextKeys=Dep1|Dep2", A),
    CX(COND("ForAllValues:StringLike", "kms:EncryptionContextKeys", "'Dep*'"),
       "kms:EncryptionContextKeys=Dep1|X", N),
    CX(COND("ForAnyValue:StringNotEquals", "x:s", "'A'"), "x:s=A|B", A),
    CX(COND("ForAnyValue:StringNotEquals", "x:s", "'A'"), "x:s=A", N),
    CX(COND("ForAllValues:StringNotEquals", "x:s", "'A'"), "x:s=B|C", A),
    CX(COND("ForAllValues:StringNotEquals", "x:s", "'A'"), "x:s=A|B", N),
    CX(COND("ForAllValues:StringEqualsIgnoreCase", "x:s", "['a','b']"), "x:s=A|B", A),
    CX(COND("ForAnyValue:StringLike", "kms:ResourceAliases", "'alias/prod-*'"),
       "kms:ResourceAliases=alias/dev-1|alias/prod-1", A),
    CX(COND("ForAnyValue:NumericGreaterThan", "x:n", "'10'"), "x:n=1|20", A),
    CX(COND("ForAllValues:NumericGreaterThan", "x:n", "'10'"), "x:n=1|20", N),
    CX(COND("ForAnyValue:IpAddress", "x:ips", "'10.0.0.0/8'"), "x:ips=1.1.1.1|10.0.0.1", A),
    CX(COND("ForAllValues:StringEquals", "kms:GrantOperations", "['Decrypt','Encrypt']"),
       "kms:GrantOperations=Decrypt|ReEncryptFrom", N),
    CX(COND("ForAnyValue:StringEqualsIfExists", "x:s", "'A'"), NULL, A),
    CX(COND("ForAnyValue:StringEqualsIfExists", "x:s", "'A'"), "x:s=B", N),
    CX(COND("ForAllValues:StringNotLike", "x:s", "'tmp*'"), "x:s=a|b", A),
    CX(COND("ForAllValues:StringNotLike", "x:s", "'tmp*'"), "x:s=a|tmp1", N),
    /* ForAllValues passes on an absent key; the usual guard is Null false, which fails it */
    CX(CONDS("{'ForAllValues:StringEquals':{'aws:TagKeys':['a']},'Null':{'aws:TagKeys':'false'}}"), NULL, N),

    /* ---- policy variables (2012-10-17 only) ---- */
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/alice/f", "aws:username=alice", A),
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/bob/f", "aws:username=alice", N),
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/alice/f", NULL, N),
    CASE(RES("'arn:aws:s3:::bucket/home/${AWS:UserName}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/alice/f", "aws:username=alice", A),
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/bob/f", "aws:username=*", N),
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/*/f", "aws:username=*", A),
    CASE(RES("'arn:aws:s3:::bucket/${*}'"), NULL, "s3:GetObject", "arn:aws:s3:::bucket/*", NULL, A),
    CASE(RES("'arn:aws:s3:::bucket/${*}'"), NULL, "s3:GetObject", "arn:aws:s3:::bucket/x", NULL, N),
    CASE(RES("'arn:aws:s3:::bucket/${?}${$}'"), NULL, "s3:GetObject", "arn:aws:s3:::bucket/?$", NULL, A),
    CASE(RES("'arn:aws:s3:::bucket/${aws:userid}'"), NULL, "s3:GetObject", "arn:aws:s3:::bucket/AIDAEXAMPLE",
         "aws:userid=AIDAEXAMPLE", A),
    CASE("{'Version':'2008-10-17','Statement':{'Effect':'Allow','Action':'*','Resource':'arn:aws:s3:::b/"
         "${aws:username}'}}",
         NULL, "s3:GetObject", "arn:aws:s3:::b/alice", "aws:username=alice", N),
    CASE("{'Version':'2008-10-17','Statement':{'Effect':'Allow','Action':'*','Resource':'arn:aws:s3:::b/"
         "${aws:username}'}}",
         NULL, "s3:GetObject", "arn:aws:s3:::b/${aws:username}", "aws:username=alice", A),
    CX(COND("StringLike", "s3:prefix", "'home/${aws:username}/*'"),
       "s3:prefix=home/alice/docs;aws:username=alice", A),
    CX(COND("StringLike", "s3:prefix", "'home/${aws:username}/*'"),
       "s3:prefix=home/bob/docs;aws:username=alice", N),
    CX(COND("StringEquals", "kms:CallerAccount", "'${aws:PrincipalAccount}'"), "kms:CallerAccount=" ACCT, A),
    CX(COND("StringEquals", "kms:CallerAccount", "'${aws:PrincipalAccount}'"), "kms:CallerAccount=" OTHER, N),
    CX(COND("StringEquals", "x:k", "'${aws:nosuchkey}'"), "x:k=", N),
    CX(COND("StringEquals", "x:k", "'${aws:nosuchkey}'"), "x:k=${aws:nosuchkey}", N),
    CX(COND("ArnLike", "aws:SourceArn", "'arn:aws:iam::*:user/${aws:username}'"),
       "aws:SourceArn=" ALICE ";aws:username=alice", A),

    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username, `nobody`}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/nobody/f", NULL, A),
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username,`nobody`}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/alice/f", "aws:username=alice", A),
    CASE(RES("'arn:aws:s3:::bucket/home/${aws:username, nobody}/*'"), NULL, "s3:GetObject",
         "arn:aws:s3:::bucket/home/nobody/f", NULL, N),
    CASE(RES("'arn:aws:s3:::bucket/${aws:username}'"), NULL, "s3:GetObject", "arn:aws:s3:::bucket/x",
         "aws:username=x|y", N),
    CX(RES("'arn:aws:kms:*:${aws:PrincipalAccount}:key/*'"), NULL, A),
    CASE(RES("'arn:aws:kms:*:${aws:PrincipalAccount}:key/*'"), SESSION, NULL, NULL, NULL, N),
    CX("{'Version':'2008-10-17','Statement':{'Effect':'Allow','Action':'*','Resource':'*','Condition':"
       "{'StringEquals':{'x:k':'${aws:username}'}}}}",
       "x:k=${aws:username};aws:username=alice", A),
    CX(COND("StringEquals", "x:k", "'${aws:username}'"), "x:k=${aws:username};aws:username=alice", N),

    /* ---- JSON scalar types in condition values ---- */
    CX(COND("StringEquals", "x:k", "42"), "x:k=42", A),
    CX(COND("StringEquals", "x:k", "true"), "x:k=true", A),
    CX(COND("NumericEquals", "x:k", "2.5"), "x:k=2.5", A),
    CX(COND("BinaryEquals", "x:k", "'QmluYXJ5'"), "x:k=QmluYXJ5", A),
    CX(COND("BinaryEquals", "x:k", "'QmluYXJ5'"), "x:k=qmluyxj5", N),

    /* ---- realistic KMS key policies ---- */
    CX(DOC("{'Sid':'Enable IAM User Permissions','Effect':'Allow','Principal':{'AWS':'" ROOT "'},"
           "'Action':'kms:*','Resource':'*'}"),
       NULL, A),
    CASE(DOC("{'Sid':'Enable IAM User Permissions','Effect':'Allow','Principal':{'AWS':'" ROOT "'},"
             "'Action':'kms:*','Resource':'*'}"),
         SESSION, NULL, NULL, NULL, N),
    CASE(DOC("{'Effect':'Allow','Principal':{'AWS':'" OTHER "'},'Action':['kms:Decrypt','kms:CreateGrant'],"
             "'Resource':'*','Condition':{'StringEquals':{'kms:CallerAccount':'" OTHER "'}}}"),
         SESSION, "kms:Decrypt", NULL, "kms:CallerAccount=" OTHER, A),
    CASE(DOC("{'Effect':'Allow','Principal':{'AWS':'" OTHER "'},'Action':['kms:Decrypt','kms:CreateGrant'],"
             "'Resource':'*','Condition':{'StringEquals':{'kms:CallerAccount':'" OTHER "'}}}"),
         SESSION, "kms:Encrypt", NULL, "kms:CallerAccount=" OTHER, N),
    CASE(DOC("{'Effect':'Allow','Principal':{'AWS':'*'},'Action':'kms:Decrypt','Resource':'*',"
             "'Condition':{'StringEquals':{'kms:ViaService':'ec2.us-east-1.amazonaws.com','kms:CallerAccount'"
             ":'" ACCT "'}}}"),
         NULL, "kms:Decrypt", NULL, "kms:ViaService=ec2.us-east-1.amazonaws.com;kms:CallerAccount=" ACCT, A),
    CASE(DOC("{'Effect':'Allow','Principal':{'AWS':'*'},'Action':'kms:Decrypt','Resource':'*',"
             "'Condition':{'StringEquals':{'kms:ViaService':'ec2.us-east-1.amazonaws.com','kms:CallerAccount'"
             ":'" ACCT "'}}}"),
         NULL, "kms:Decrypt", NULL, "kms:CallerAccount=" ACCT, N),
};

/* ---------------------------------------------------------------------------------------------
 * Harness
 * ------------------------------------------------------------------------------------------- */

static char *quote(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    for (char *p = d; *p != '\0'; p++) {
        if (*p == '\'') {
            *p = '"';
        } else if (*p == '`') {
            *p = '\''; /* a literal single quote (policy-variable defaults) */
        }
    }
    return d;
}

static policy *compile_ok(const char *text)
{
    char *q = quote(text);
    policy *p = NULL;
    coffer_err rc = policy_compile(coffer_cursor_from_str(q), &p);
    if (rc != COFFER_OK) {
        fail_msg("compile failed: %s\n  %s", coffer_last_message(), q);
    }
    free(q);
    return p;
}

/* "k=v1|v2;k2=" -> context */
static policy_ctx *make_ctx(const char *spec)
{
    policy_ctx *c = NULL;
    assert_int_equal(policy_ctx_new(&c), COFFER_OK);
    if (spec == NULL) {
        return c;
    }
    char *copy = strdup(spec), *save = NULL;
    assert_non_null(copy);
    for (char *kv = strtok_r(copy, ";", &save); kv != NULL; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = '\0';
        assert_int_equal(policy_ctx_set(c, kv, NULL, 0), COFFER_OK);
        char *vals = eq + 1, *vsave = NULL;
        for (char *v = strtok_r(vals, "|", &vsave); v != NULL; v = strtok_r(NULL, "|", &vsave)) {
            assert_int_equal(policy_ctx_add(c, kv, v), COFFER_OK);
        }
    }
    free(copy);
    return c;
}

struct who {
    const char *arn, *role, *account, *type;
    char acct[16], rolebuf[256];
};

static void make_who(const char *spec, struct who *w)
{
    memset(w, 0, sizeof(*w));
    if (spec == NULL) {
        spec = ALICE;
    }
    if (strcmp(spec, "-") == 0) {
        return;
    }
    if (strncmp(spec, "svc:", 4) == 0) {
        w->arn = spec + 4;
        w->type = "Service";
        return;
    }
    w->arn = spec;
    /* arn:aws:iam::ACCT:... -> account is component 4 */
    const char *p = spec;
    for (int i = 0; i < 4; i++) {
        p = strchr(p, ':') + 1;
    }
    memcpy(w->acct, p, 12);
    w->account = w->acct;
    if (strstr(spec, ":root") != NULL) {
        w->type = "Account";
    } else if (strstr(spec, ":assumed-role/") != NULL) {
        const char *r = strstr(spec, ":assumed-role/") + 14;
        const char *slash = strchr(r, '/');
        snprintf(w->rolebuf, sizeof(w->rolebuf), "arn:aws:iam::%s:role/%.*s", w->acct, (int)(slash - r), r);
        w->role = w->rolebuf;
        w->type = "AssumedRole";
    } else {
        w->type = "User";
    }
}

static void test_eval_table(void **state)
{
    (void)state;
    size_t n = sizeof(eval_cases) / sizeof(eval_cases[0]), failures = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ecase *t = &eval_cases[i];
        policy *p = compile_ok(t->pol);
        policy_ctx *c = make_ctx(t->ctx);
        struct who w;
        make_who(t->who, &w);
        struct policy_request req = {
            w.arn, w.role, w.account, w.type, t->act ? t->act : "kms:Encrypt", t->res ? t->res : KEY,
            c,     NULL};
        enum policy_decision got = policy_evaluate(p, &req);
        if (got != t->want) {
            print_error("line %d: got %s, want %s\n", t->line, policy_decision_name(got),
                        policy_decision_name(t->want));
            failures++;
        }
        policy_ctx_free(c);
        policy_free(p);
    }
    print_message("%zu evaluation cases\n", n);
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Malformed documents
 * ------------------------------------------------------------------------------------------- */

struct mcase {
    int line;
    const char *pol;
    const char *fragment;
};

#define M(pol, frag)                                                                                         \
    {                                                                                                        \
        __LINE__, pol, frag                                                                                  \
    }
#define S1(body) DOC("{" body "}")

static const struct mcase malformed_cases[] = {
    M("{", "not valid JSON"),
    M("", "empty"),
    M("[]", "must be a JSON object"),
    M("{'Version':'2012-10-17'}", "missing Statement"),
    M("{'Version':'2012-10-18','Statement':" ALLOW_ALL "}", "Version must be"),
    M("{'Version':20121017,'Statement':" ALLOW_ALL "}", "Version must be"),
    M("{'Statement':" ALLOW_ALL ",'Foo':1}", "unknown top-level element \"Foo\""),
    M("{'Statement':[]}", "Statement must not be an empty array"),
    M("{'Statement':'x'}", "Statement must be an object"),
    M("{'Statement':[1]}", "Statement 0: a statement must be an object"),
    M("{'Id':5,'Statement':" ALLOW_ALL "}", "Id must be"),
    M("{'Statement':" ALLOW_ALL ",'Statement':" ALLOW_ALL "}", "not valid JSON"),
    M(S1("'Action':'*','Resource':'*'"), "Statement 0: missing Effect"),
    M(S1("'Effect':'allow','Action':'*','Resource':'*'"), "Effect must be"),
    M(S1("'Effect':true,'Action':'*','Resource':'*'"), "Effect must be"),
    M(S1("'Effect':'Allow','Resource':'*'"), "missing Action or NotAction"),
    M(S1("'Effect':'Allow','Action':'*','NotAction':'*','Resource':'*'"), "Action and NotAction cannot both"),
    M(S1("'Effect':'Allow','Action':'kms','Resource':'*'"), "\"kms\" is not of the form service:ActionName"),
    M(S1("'Effect':'Allow','Action':'kms:Encrypt:x','Resource':'*'"), "service:ActionName"),
    M(S1("'Effect':'Allow','Action':'kms:En crypt','Resource':'*'"), "service:ActionName"),
    M(S1("'Effect':'Allow','Action':[],'Resource':'*'"), "Action must not be an empty array"),
    M(S1("'Effect':'Allow','Action':5,'Resource':'*'"), "Action must be a string or an array"),
    M(S1("'Effect':'Allow','Action':['kms:Encrypt',5],'Resource':'*'"), "Action must contain strings"),
    M(S1("'Effect':'Allow','Action':'','Resource':'*'"), "Action contains an empty string"),
    M(S1("'Effect':'Allow','Action':'kms:\\u0001','Resource':'*'"), "control characters"),
    M(S1("'Effect':'Allow','Action':'*'"), "missing Resource or NotResource"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','NotResource':'*'"),
      "Resource and NotResource cannot"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'mykey'"), "Resource \"mykey\" must be \"*\" or an ARN"),
    M(S1("'Effect':'Allow','Action':'*','NotResource':{}"), "NotResource must be a string or an array"),
    M(S1("'Effect':'Allow','Actions':'*','Resource':'*'"), "unknown element \"Actions\""),
    M(S1("'Effect':'Allow','NotPrincipal':'*','Action':'*','Resource':'*'"),
      "NotPrincipal is only supported"),
    M(S1("'Effect':'Deny','Principal':'*','NotPrincipal':'*','Action':'*','Resource':'*'"),
      "Principal and NotPrincipal cannot both"),
    M(S1("'Effect':'Allow','Principal':'alice','Action':'*','Resource':'*'"), "Principal must be \"*\""),
    M(S1("'Effect':'Allow','Principal':{},'Action':'*','Resource':'*'"),
      "Principal must be \"*\" or a non-empty"),
    M(S1("'Effect':'Allow','Principal':{'AWS':'arn:aws:iam::" ACCT ":user/*'},'Action':'*','Resource':'*'"),
      "wildcards are not allowed"),
    M(S1("'Effect':'Allow','Principal':{'AWS':'bob'},'Action':'*','Resource':'*'"),
      "\"bob\" is not an ARN, an account id"),
    M(S1("'Effect':'Allow','Principal':{'AWS':'12345'},'Action':'*','Resource':'*'"),
      "not an ARN, an account id"),
    M(S1("'Effect':'Allow','Principal':{'Foo':'x'},'Action':'*','Resource':'*'"), "Principal type \"Foo\""),
    M(S1("'Effect':'Allow','Principal':{'AWS':[]},'Action':'*','Resource':'*'"),
      "Principal must not be an empty"),
    M(S1("'Effect':'Allow','Principal':{'Service':'*.amazonaws.com'},'Action':'*','Resource':'*'"),
      "wildcards"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':[]"), "Condition must be an object"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{}}"),
      "StringEquals must be a non-empty object"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':'x'}"),
      "StringEquals must be a non-empty object"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEqual':{'a:b':'c'}}"),
      "operator \"StringEqual\" is not supported"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'ForSomeValues:StringEquals':{'a:b':'c'}"
         "}"),
      "is not supported"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'stringequals':{'a:b':'c'}}"),
      "is not supported"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'NumericEquals':{'a:b':'abc'}}"),
      "\"abc\" is not a number"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'NumericEquals':{'a:b':'0x10'}}"),
      "is not a number"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'NumericLessThan':{'a:b':'inf'}}"),
      "is not a number"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'DateLessThan':{'a:b':'tomorrow'}}"),
      "ISO 8601"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'DateLessThan':{'a:b':'2026-13-01'}}"),
      "ISO 8601"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'DateLessThan':{'a:b':'2026-11-23T25:00:"
         "00Z'}}"),
      "ISO 8601"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'IpAddress':{'aws:SourceIp':'10.0.0.0/"
         "33'}}"),
      "CIDR"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'IpAddress':{'aws:SourceIp':'300.1.1.1'}"
         "}"),
      "CIDR"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'IpAddress':{'aws:SourceIp':'2001:db8::/"
         "129'}}"),
      "CIDR"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'IpAddress':{'aws:SourceIp':'10.0.0.0/"
         "'}}"),
      "CIDR"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'Bool':{'aws:SecureTransport':'yes'}}"),
      "\"yes\" is not true or false"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'Null':{'a:b':'maybe'}}"),
      "true or false"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'NullIfExists':{'a:b':'true'}}"),
      "Null takes no IfExists"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'ForAnyValue:Null':{'a:b':'true'}}"),
      "Null takes no"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'a:b':[]}}"),
      "empty value list"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'a:b':{'c':'d'}}}"),
      "values must be strings, numbers or booleans"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'a:b':[null]}}"),
      "values must be"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'':'x'}}"),
      "invalid condition key"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'a:b':'${x}\\u0001'}}"),
      "control characters"),
    M(S1("'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'a:b':1e999}}"),
      "not valid JSON"),
    M(S1("'Sid':5,'Effect':'Allow','Action':'*','Resource':'*'"), "Sid must be a string"),
    M(S1("'Sid':'a/b','Effect':'Allow','Action':'*','Resource':'*'"), "Sid \"a/b\" contains characters"),
    M(DOC("{'Sid':'One','Effect':'Allow','Action':'*','Resource':'*'},{'Sid':'One','Effect':'Deny','Action':'"
          "*','Resource':'*'}"),
      "Statement 1 (Sid \"One\"): duplicate Sid"),
    M(DOC(ALLOW_ALL ",{'Sid':'Two','Effect':'Allow','Action':'x','Resource':'*'}"),
      "Statement 1 (Sid \"Two\"): Action"),
    M(DOC(ALLOW_ALL "," ALLOW_ALL
                    ",{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'Bogus':{'a:b':'c'}}}"),
      "Statement 2: Condition operator \"Bogus\""),
};

static void test_malformed_table(void **state)
{
    (void)state;
    size_t n = sizeof(malformed_cases) / sizeof(malformed_cases[0]), failures = 0;
    for (size_t i = 0; i < n; i++) {
        const struct mcase *t = &malformed_cases[i];
        char *q = quote(t->pol);
        policy *p = (policy *)0x1;
        coffer_err rc = policy_compile(coffer_cursor_from_str(q), &p);
        if (rc != COFFER_ERR_MALFORMED_POLICY || p != NULL ||
            strstr(coffer_last_message(), t->fragment) == NULL) {
            print_error("line %d: rc %d, message \"%s\", want fragment \"%s\"\n", t->line, (int)rc,
                        coffer_last_message(), t->fragment);
            failures++;
        }
        policy_free(p == (policy *)0x1 ? NULL : p);
        free(q);
    }
    print_message("%zu malformed cases\n", n);
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Limits, combiner, context API, dates
 * ------------------------------------------------------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    /* document size */
    size_t big = POLICY_MAX_DOCUMENT + 1;
    char *doc = malloc(big + 1);
    assert_non_null(doc);
    memset(doc, ' ', big);
    memcpy(doc, "{\"Statement\":", 13);
    doc[big] = '\0';
    policy *p = NULL;
    assert_int_equal(policy_compile(coffer_cursor_from(doc, big), &p), COFFER_ERR_MALFORMED_POLICY);
    assert_non_null(strstr(coffer_last_message(), "longer than 131072"));
    assert_null(p);
    free(doc);

    /* statement count: 513 statements fit in the size limit */
    coffer_buf b = COFFER_BUF_INIT;
    assert_int_equal(coffer_buf_append_str(&b, "{\"Statement\":["), COFFER_OK);
    for (int i = 0; i <= POLICY_MAX_STATEMENTS; i++) {
        assert_int_equal(
            coffer_buf_append_str(&b, i ? ",{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}"
                                        : "{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}"),
            COFFER_OK);
    }
    assert_int_equal(coffer_buf_append_str(&b, "]}"), COFFER_OK);
    assert_int_equal(policy_compile(coffer_buf_cursor(&b), &p), COFFER_ERR_MALFORMED_POLICY);
    assert_non_null(strstr(coffer_last_message(), "more than 512 statements"));
    coffer_buf_free(&b);

    /* condition keys per statement */
    assert_int_equal(coffer_buf_append_str(&b, "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\","
                                               "\"Resource\":\"*\",\"Condition\":{\"StringEquals\":{"),
                     COFFER_OK);
    for (int i = 0; i <= POLICY_MAX_CONDITIONS; i++) {
        assert_int_equal(coffer_buf_printf(&b, "%s\"k:%d\":\"v\"", i ? "," : "", i), COFFER_OK);
    }
    assert_int_equal(coffer_buf_append_str(&b, "}}}}"), COFFER_OK);
    assert_int_equal(policy_compile(coffer_buf_cursor(&b), &p), COFFER_ERR_MALFORMED_POLICY);
    assert_non_null(strstr(coffer_last_message(), "Statement 0: Condition has more than 128 keys"));
    coffer_buf_free(&b);

    /* values per list */
    assert_int_equal(coffer_buf_append_str(&b, "{\"Statement\":{\"Effect\":\"Allow\",\"Resource\":\"*\","
                                               "\"Action\":[\"a:b\""),
                     COFFER_OK);
    for (int i = 0; i < POLICY_MAX_VALUES; i++) {
        assert_int_equal(coffer_buf_append_str(&b, ",\"a:b\""), COFFER_OK);
    }
    assert_int_equal(coffer_buf_append_str(&b, "]}}"), COFFER_OK);
    assert_int_equal(policy_compile(coffer_buf_cursor(&b), &p), COFFER_ERR_MALFORMED_POLICY);
    assert_non_null(strstr(coffer_last_message(), "Action has more than 1024 entries"));
    coffer_buf_free(&b);

    /* trust policies may omit Resource with the flag, not without */
    const char *trust = "{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"" OTHER
                        "\"},\"Action\":\"sts:AssumeRole\"}}";
    assert_int_equal(policy_compile(coffer_cursor_from_str(trust), &p), COFFER_ERR_MALFORMED_POLICY);
    assert_int_equal(policy_compile_ex(coffer_cursor_from_str(trust), POLICY_COMPILE_RESOURCE_OPTIONAL, &p),
                     COFFER_OK);
    struct policy_request req = {SESSION, ROLE, OTHER, "AssumedRole", "sts:AssumeRole", NULL, NULL, NULL};
    assert_int_equal(policy_evaluate(p, &req), POLICY_ALLOW);
    req.principal_account = ACCT;
    req.principal_arn = ALICE;
    req.principal_role_arn = NULL;
    assert_int_equal(policy_evaluate(p, &req), POLICY_NOT_APPLICABLE);
    assert_int_equal(policy_statement_count(p), 1);
    assert_null(policy_id(p));
    policy_free(p);

    /* resource policies need a Principal, identity policies refuse one */
    const char *noprin = "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}";
    const char *prin =
        "{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"*\",\"Resource\":\"*\"}}";
    assert_int_equal(policy_compile_ex(coffer_cursor_from_str(noprin), POLICY_COMPILE_REQUIRE_PRINCIPAL, &p),
                     COFFER_ERR_MALFORMED_POLICY);
    assert_non_null(strstr(coffer_last_message(), "Statement 0: missing Principal"));
    assert_int_equal(policy_compile_ex(coffer_cursor_from_str(prin), POLICY_COMPILE_NO_PRINCIPAL, &p),
                     COFFER_ERR_MALFORMED_POLICY);
    assert_non_null(strstr(coffer_last_message(), "Principal is not allowed in an identity policy"));
    assert_int_equal(policy_compile_ex(coffer_cursor_from_str(prin), POLICY_COMPILE_REQUIRE_PRINCIPAL, &p),
                     COFFER_OK);
    policy_free(p);
    assert_int_equal(policy_compile_ex(coffer_cursor_from_str(noprin), POLICY_COMPILE_NO_PRINCIPAL, &p),
                     COFFER_OK);
    policy_free(p);

    /* bad arguments */
    assert_int_equal(policy_compile(coffer_cursor_from_str("{}"), NULL), COFFER_ERR_USAGE);
    policy_free(NULL);
}

/* Principal binding: a user or role entry matches the unique id it was bound to, nothing else. */
static const char *bind_stub(void *ctx, const char *arn)
{
    (void)ctx;
    if (strcmp(arn, ALICE) == 0) {
        return "AIDAALICE000000000001";
    }
    if (strcmp(arn, ROLE) == 0) {
        return "AROAREADER00000000001";
    }
    return NULL; /* deleted: bound to nobody */
}

static void test_principal_binding(void **state)
{
    (void)state;
    const char *doc = "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"" ALICE "\",\"" ROLE
                      "\",\"arn:aws:iam::" ACCT ":user/gone\"]},\"Action\":\"kms:*\",\"Resource\":\"*\"}]}";
    policy *p = NULL;
    assert_int_equal(policy_compile(coffer_cursor_from_str(doc), &p), COFFER_OK);
    struct policy_request req = {ALICE, NULL, ACCT, "User", "kms:Encrypt", KEY, NULL, NULL};
    assert_int_equal(policy_evaluate(p, &req), POLICY_ALLOW); /* unbound: by ARN */
    assert_int_equal(policy_bind_principals(p, bind_stub, NULL), COFFER_OK);
    assert_int_equal(policy_evaluate(p, &req), POLICY_NOT_APPLICABLE); /* no id: not the bound alice */
    req.principal_id = "AIDAALICE000000000001";
    assert_int_equal(policy_evaluate(p, &req), POLICY_ALLOW);
    req.principal_id = "AIDAALICE000000000002"; /* a new alice */
    assert_int_equal(policy_evaluate(p, &req), POLICY_NOT_APPLICABLE);
    req.principal_id = "AIDAALICE0000000000011"; /* a prefix is not a match */
    assert_int_equal(policy_evaluate(p, &req), POLICY_NOT_APPLICABLE);
    struct policy_request sess = {SESSION,       ROLE, OTHER, "AssumedRole",
                                  "kms:Encrypt", KEY,  NULL,  "AROAREADER00000000001:s1"};
    assert_int_equal(policy_evaluate(p, &sess), POLICY_ALLOW);
    sess.principal_id = "AROAREADER00000000002:s1"; /* a session of a re-created role */
    assert_int_equal(policy_evaluate(p, &sess), POLICY_NOT_APPLICABLE);
    struct policy_request gone = {"arn:aws:iam::" ACCT ":user/gone",
                                  NULL,
                                  ACCT,
                                  "User",
                                  "kms:Encrypt",
                                  KEY,
                                  NULL,
                                  "AIDAGONE0000000000001"};
    assert_int_equal(policy_evaluate(p, &gone), POLICY_NOT_APPLICABLE);
    policy_free(p);
    assert_true(policy_principal_bindable(ALICE));
    assert_true(policy_principal_bindable(ROLE));
    assert_false(policy_principal_bindable("arn:aws:iam::" ACCT ":root"));
    assert_false(policy_principal_bindable(SESSION));
    assert_false(policy_principal_bindable(ACCT));
    assert_false(policy_principal_bindable("*"));
}

static void test_combine(void **state)
{
    (void)state;
    enum policy_decision none[1] = {N};
    enum policy_decision a[] = {N, A, N};
    enum policy_decision ad[] = {A, D, A};
    enum policy_decision nn[] = {N, N};
    assert_int_equal(policy_combine(none, 0), N);
    assert_int_equal(policy_combine(a, 3), A);
    assert_int_equal(policy_combine(ad, 3), D);
    assert_int_equal(policy_combine(nn, 2), N);
    assert_string_equal(policy_decision_name(D), "ExplicitDeny");
    assert_string_equal(policy_decision_name(N), "ImplicitDeny");
    assert_string_equal(policy_decision_name(A), "Allow");

    /* key policy + identity policy */
    policy *key =
        compile_ok(DOC("{'Effect':'Allow','Principal':{'AWS':'" ROOT "'},'Action':'kms:*','Resource':'*'}"));
    policy *ident = compile_ok(DOC("{'Effect':'Allow','Action':'kms:Encrypt','Resource':'" KEY "'}"));
    policy *deny = compile_ok(DOC("{'Effect':'Deny','Action':'kms:*','Resource':'*','Condition':{'Bool':{'"
                                  "aws:SecureTransport':'false'}}}"));
    policy_ctx *c = make_ctx("aws:SecureTransport=false");
    struct policy_request req = {ALICE, NULL, ACCT, "User", "kms:Encrypt", KEY, NULL, NULL};
    const policy *set1[] = {key, ident, NULL};
    assert_int_equal(policy_evaluate_all(set1, 3, &req), A);
    const policy *set2[] = {key, ident, deny};
    assert_int_equal(policy_evaluate_all(set2, 3, &req), A);
    req.ctx = c;
    assert_int_equal(policy_evaluate_all(set2, 3, &req), D);
    req.ctx = NULL;
    req.action = "kms:Sign";
    const policy *set3[] = {ident};
    assert_int_equal(policy_evaluate_all(set3, 1, &req), N);
    assert_int_equal(policy_evaluate_all(NULL, 0, &req), N);
    policy_ctx_free(c);
    policy_free(key);
    policy_free(ident);
    policy_free(deny);
}

static void test_ctx_api(void **state)
{
    (void)state;
    policy_ctx *c = NULL;
    assert_int_equal(policy_ctx_new(&c), COFFER_OK);
    assert_int_equal(policy_ctx_set_ip(c, "aws:SourceIp", "not-an-ip"), COFFER_ERR_USAGE);
    assert_int_equal(policy_ctx_set_ip(c, "aws:SourceIp", "10.0.0.0/8"), COFFER_ERR_USAGE);
    assert_int_equal(policy_ctx_set_ip(c, "aws:SourceIp", "2001:db8::1"), COFFER_OK);
    assert_int_equal(policy_ctx_set_time(c, "aws:CurrentTime", 1795424400), COFFER_OK);
    assert_int_equal(policy_ctx_set_bool(c, "aws:SecureTransport", true), COFFER_OK);
    assert_int_equal(policy_ctx_set_number(c, "x:n", -42), COFFER_OK);
    assert_int_equal(policy_ctx_set_str(c, "", "x"), COFFER_ERR_USAGE);
    const char *ks[] = {"a", "b"};
    assert_int_equal(policy_ctx_set(c, "kms:EncryptionContextKeys", ks, 2), COFFER_OK);
    assert_int_equal(policy_ctx_set(c, "kms:EncryptionContextKeys", ks, 1), COFFER_OK); /* replaces */

    policy *p = compile_ok(CONDS("{'IpAddress':{'aws:SourceIp':'2001:db8::/64'},"
                                 "'DateEquals':{'aws:CurrentTime':'2026-11-23T09:00:00Z'},"
                                 "'Bool':{'aws:SecureTransport':'true'},'NumericLessThan':{'x:n':'-41'},"
                                 "'ForAllValues:StringEquals':{'kms:EncryptionContextKeys':'a'}}"));
    struct policy_request req = {ALICE, NULL, ACCT, "User", "kms:Encrypt", KEY, c, NULL};
    assert_int_equal(policy_evaluate(p, &req), A);
    assert_int_equal(policy_ctx_add(c, "KMS:EncryptionContextKeys", "b"), COFFER_OK); /* same key, any case */
    assert_int_equal(policy_evaluate(p, &req), N);
    policy_ctx_unset(c, "kms:encryptioncontextkeys");
    assert_int_equal(policy_evaluate(p, &req), A); /* ForAllValues on a missing key */
    policy_ctx_unset(c, "aws:SourceIp");
    assert_int_equal(policy_evaluate(p, &req), N);
    policy_ctx_unset(c, "never-set");
    policy_free(p);
    policy_ctx_free(c);
    policy_ctx_free(NULL);
}

static void test_dates(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_true(policy_parse_date("1970-01-01T00:00:00Z", &ms));
    assert_int_equal(ms, 0);
    assert_true(policy_parse_date("2026-11-23T09:00:00Z", &ms));
    assert_int_equal(ms, 1795424400000LL);
    assert_true(policy_parse_date("2000-02-29", &ms));
    assert_int_equal(ms, 951782400000LL);
    assert_true(policy_parse_date("1795424400", &ms));
    assert_int_equal(ms, 1795424400000LL);
    assert_true(policy_parse_date("2026-11-23T09:00:00.5Z", &ms));
    assert_int_equal(ms, 1795424400500LL);
    assert_false(policy_parse_date("", &ms));
    assert_false(policy_parse_date("2026-11", &ms));
    assert_false(policy_parse_date("2026-11-23T09", &ms));
    assert_false(policy_parse_date("2026-11-23T09:00:00Q", &ms));
    assert_false(policy_parse_date("2026-11-23T09:00:00+25:00", &ms));
    assert_false(policy_parse_date("2026-11-23T09:00:00.Z", &ms));
    assert_false(policy_parse_date("99999999999999", &ms));
    assert_false(policy_parse_date(NULL, &ms));
}

/* Evaluates a one-statement policy `stmt` (no Principal) for the root against ctx `c`. */
static enum policy_decision eval_one(const char *doc, const policy_ctx *c)
{
    policy *p = compile_ok(doc);
    struct policy_request req = {
        "arn:aws:iam::111122223333:root", NULL, "111122223333", "Account", "kms:Encrypt", KEY, c, NULL};
    enum policy_decision d = policy_evaluate(p, &req);
    policy_free(p);
    return d;
}

#define EC_DENY(op, v)                                                                                       \
    DOC("{'Effect':'Deny','Action':'*','Resource':'*','Condition':{'" op                                     \
        "':{'kms:EncryptionContext:classification':" v "}}}")
#define EC_ALLOW(op, v)                                                                                      \
    DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'" op                                    \
        "':{'kms:EncryptionContext:classification':" v "}}}")

/* Case variants of one context key: a Deny fires if any variant matches, an Allow needs all. */
static void test_ctx_variants(void **state)
{
    (void)state;
    policy_ctx *c = NULL;
    assert_int_equal(policy_ctx_new(&c), COFFER_OK);
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:classification", "secret"), COFFER_OK);
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:Classification", "x"), COFFER_OK);
    assert_int_equal(eval_one(EC_DENY("StringEquals", "'secret'"), c), POLICY_DENY_EXPLICIT);
    assert_int_equal(eval_one(EC_DENY("StringLike", "'sec*'"), c), POLICY_DENY_EXPLICIT);
    assert_int_equal(eval_one(EC_DENY("StringNotEquals", "'secret'"), c), POLICY_DENY_EXPLICIT);
    assert_int_equal(eval_one(EC_DENY("ForAnyValue:StringEquals", "'x'"), c), POLICY_DENY_EXPLICIT);
    assert_int_equal(eval_one(EC_DENY("ForAllValues:StringEquals", "'x'"), c), POLICY_DENY_EXPLICIT);
    assert_int_equal(eval_one(EC_DENY("StringEquals", "'other'"), c), POLICY_NOT_APPLICABLE);
    assert_int_equal(eval_one(EC_ALLOW("StringEquals", "'secret'"), c), POLICY_NOT_APPLICABLE);
    assert_int_equal(eval_one(EC_ALLOW("StringEquals", "'x'"), c), POLICY_NOT_APPLICABLE);
    assert_int_equal(eval_one(EC_ALLOW("ForAnyValue:StringEquals", "'x'"), c), POLICY_NOT_APPLICABLE);
    assert_int_equal(eval_one(EC_ALLOW("StringNotEquals", "'x'"), c), POLICY_NOT_APPLICABLE);
    assert_int_equal(eval_one(EC_ALLOW("StringEquals", "['secret','x']"), c), POLICY_ALLOW);
    assert_int_equal(eval_one(EC_ALLOW("StringNotEquals", "'public'"), c), POLICY_ALLOW);
    assert_int_equal(eval_one(EC_ALLOW("Null", "'false'"), c), POLICY_ALLOW);
    /* one spelling only: an ordinary single-valued key */
    policy_ctx_clear(c);
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:Classification", "secret"), COFFER_OK);
    assert_int_equal(eval_one(EC_ALLOW("StringEquals", "'secret'"), c), POLICY_ALLOW);
    assert_int_equal(eval_one(EC_DENY("StringNotEquals", "'secret'"), c), POLICY_NOT_APPLICABLE);
    /* set replaces the variants and the flag: a reused slot is a plain key again */
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:classification", "x"), COFFER_OK);
    assert_int_equal(policy_ctx_set_str(c, "kms:EncryptionContext:classification", "secret"), COFFER_OK);
    assert_int_equal(eval_one(EC_ALLOW("StringEquals", "'secret'"), c), POLICY_ALLOW);
    policy_ctx_free(c);
}

/* A key the context does not hold evaluates as AWS documents for an absent key, operator by operator. */
static void test_absent_key(void **state)
{
    (void)state;
    static const struct {
        const char *op, *value;
        bool holds;
    } cases[] = {
        {"StringEquals", "'x'", false},
        {"StringNotEquals", "'x'", true},
        {"StringLike", "'*'", false},
        {"StringNotLike", "'*'", true},
        {"StringEqualsIgnoreCase", "'x'", false},
        {"NumericEquals", "'1'", false},
        {"NumericNotEquals", "'1'", true},
        {"DateGreaterThan", "'2020-01-01'", false},
        {"DateNotEquals", "'2020-01-01'", true},
        {"Bool", "'false'", false},
        {"IpAddress", "'10.0.0.0/8'", false},
        {"NotIpAddress", "'10.0.0.0/8'", true},
        {"ArnLike", "'arn:*'", false},
        {"ArnNotLike", "'arn:*'", true},
        {"StringEqualsIfExists", "'x'", true},
        {"StringNotEqualsIfExists", "'x'", true},
        {"BoolIfExists", "'false'", true},
        {"Null", "'true'", true},
        {"Null", "'false'", false},
        {"ForAnyValue:StringEquals", "'x'", false},
        {"ForAnyValue:StringNotEquals", "'x'", false},
        {"ForAllValues:StringEquals", "'x'", true},
        {"ForAllValues:StringNotEquals", "'x'", true},
    };
    static const char *const keys[] = {"aws:TokenIssueTime", "aws:PrincipalTag/team", "aws:NoSuchKey",
                                       "kms:NoSuchKey", "example:anything"};
    policy_ctx *c = NULL;
    assert_int_equal(policy_ctx_new(&c), COFFER_OK);
    assert_int_equal(policy_ctx_set_str(c, "aws:RequestedRegion", "us-east-1"), COFFER_OK);
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            char doc[512];
            snprintf(doc, sizeof(doc),
                     "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"*\","
                     "\"Resource\":\"*\",\"Condition\":{\"%s\":{\"%s\":%s}}}]}",
                     cases[i].op, keys[k], cases[i].value);
            for (char *q = doc; *q; q++) {
                *q = *q == '\'' ? '"' : *q;
            }
            enum policy_decision want = cases[i].holds ? POLICY_DENY_EXPLICIT : POLICY_NOT_APPLICABLE;
            if (eval_one(doc, c) != want) {
                fail_msg("%s on absent %s: want %s", cases[i].op, keys[k], policy_decision_name(want));
            }
        }
    }
    policy_ctx_free(c);
}

/* Reference matcher: the textbook dynamic programme, obviously right and O(|p| * |s|). */
static bool ref_glob(const char *p, const char *s)
{
    size_t pn = strlen(p), sn = strlen(s);
    bool *row = calloc(sn + 1, sizeof(bool)), *next = calloc(sn + 1, sizeof(bool));
    assert_non_null(row);
    assert_non_null(next);
    row[0] = true; /* empty pattern matches the empty prefix */
    for (size_t i = 0; i < pn; i++) {
        memset(next, 0, sn + 1);
        for (size_t j = 0; j <= sn; j++) {
            if (p[i] == '*') {
                next[j] = row[j] || (j > 0 && next[j - 1]);
            } else if (j > 0) {
                next[j] = row[j - 1] && (p[i] == '?' || p[i] == s[j - 1]);
            }
        }
        bool *t = row;
        row = next;
        next = t;
    }
    bool r = row[sn];
    free(row);
    free(next);
    return r;
}

/* The linear matcher agrees with the reference on every small pattern/subject over {a,b,?,*}. */
static void test_glob_differential(void **state)
{
    (void)state;
    static const char pat_alpha[] = "ab?*", subj_alpha[] = "ab";
    unsigned seed = 12345;
    char pat[16], subj[20];
    for (int iter = 0; iter < 200000; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t pl = (seed >> 8) % 12, sl = (seed >> 16) % 16;
        for (size_t i = 0; i < pl; i++) {
            seed = seed * 1103515245u + 12345u;
            pat[i] = pat_alpha[(seed >> 12) % 4];
        }
        pat[pl] = '\0';
        for (size_t i = 0; i < sl; i++) {
            seed = seed * 1103515245u + 12345u;
            subj[i] = subj_alpha[(seed >> 12) % 2];
        }
        subj[sl] = '\0';
        if (policy_glob(pat, subj, false, false) != ref_glob(pat, subj)) {
            fail_msg("glob(\"%s\", \"%s\") disagrees with the reference", pat, subj);
        }
    }
    /* long segments (several 64-bit words, and beyond the stack tables) */
    size_t n = 3000;
    char *big = malloc(n + 1), *bp = malloc(n + 8);
    assert_non_null(big);
    assert_non_null(bp);
    memset(big, 'a', n);
    big[n] = '\0';
    for (size_t seg = 60; seg <= 700; seg += 64) {
        bp[0] = '*';
        memset(bp + 1, 'a', seg);
        bp[1 + seg / 2] = '?';
        strcpy(bp + 1 + seg, "*");
        assert_true(policy_glob(bp, big, false, false));
        strcpy(bp + 1 + seg, "b*");
        assert_false(policy_glob(bp, big, false, false));
        big[n - 1] = 'b';
        assert_true(policy_glob(bp, big, false, false));
        big[n - 1] = 'a';
    }
    free(big);
    free(bp);
    /* case folding and escaped literals */
    assert_true(policy_glob("kms:*crypt", "KMS:DeCrypt", true, false));
    assert_false(policy_glob("kms:*crypt", "KMS:DeCrypt", false, false));
    assert_true(policy_glob("a*\x01*b", "axx*b", false, true));
    assert_false(policy_glob("a*\x01*b", "axxyb", false, true));
}

/* A policy variable naming a key held as case variants: a Deny using it still applies. */
static void test_variable_over_variants(void **state)
{
    (void)state;
    policy *p =
        compile_ok(DOC("{'Effect':'Allow','Action':'kms:*','Resource':'*'},"
                       "{'Effect':'Deny','Action':'kms:Encrypt','Resource':'*','Condition':"
                       "{'StringEquals':{'kms:EncryptionContext:dept':'${kms:EncryptionContext:owner}'}}}"));
    policy_ctx *c = NULL;
    assert_int_equal(policy_ctx_new(&c), COFFER_OK);
    struct policy_request req = {
        "arn:aws:iam::111122223333:root", NULL, "111122223333", "Account", "kms:Encrypt", KEY, c, NULL};
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:dept", "a"), COFFER_OK);
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:owner", "a"), COFFER_OK);
    assert_int_equal(policy_evaluate(p, &req), POLICY_DENY_EXPLICIT);
    policy_ctx_clear(c);
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:dept", "a"), COFFER_OK);
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:owner", "b"), COFFER_OK);
    assert_int_equal(policy_evaluate(p, &req), POLICY_ALLOW);
    /* {"owner":"a","Owner":"b"}: the second spelling must not switch the Deny off */
    assert_int_equal(policy_ctx_add_variant(c, "kms:EncryptionContext:owner", "a"), COFFER_OK);
    assert_int_equal(policy_evaluate(p, &req), POLICY_DENY_EXPLICIT);
    policy_ctx_free(c);
    policy_free(p);
}

/*
 * The evaluation budget: a Deny of many unanchored patterns against a long value costs more
 * than the budget and is refused as an explicit deny (fail closed); the same policy against a
 * short value, and any policy without a budget, are decided as usual.
 */
static void test_eval_budget(void **state)
{
    (void)state;
    size_t cap = 64 * 1024, o = 0;
    char *doc = malloc(cap), *val = malloc(8193);
    assert_non_null(doc);
    assert_non_null(val);
    o += (size_t)snprintf(doc, cap,
                          "{\"Version\":\"2012-10-17\",\"Statement\":["
                          "{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}");
    for (int st = 0; st < 4; st++) {
        o += (size_t)snprintf(doc + o, cap - o,
                              ",{\"Effect\":\"Deny\",\"Action\":\"kms:Encrypt\",\"Resource\":\"*\","
                              "\"Condition\":{\"StringLike\":{\"kms:EncryptionContext:k\":[");
        for (int i = 0; i < 1000; i++) {
            o += (size_t)snprintf(doc + o, cap - o, "%s\"*%c%c*\"", i ? "," : "", 'b' + i % 20,
                                  'b' + i / 20 % 20 + st);
        }
        o += (size_t)snprintf(doc + o, cap - o, "]}}}");
    }
    snprintf(doc + o, cap - o, "]}");
    policy *p = compile_ok(doc);
    memset(val, 'a', 8192);
    val[8192] = '\0';
    policy_ctx *c = NULL;
    assert_int_equal(policy_ctx_new(&c), COFFER_OK);
    assert_int_equal(policy_ctx_set_str(c, "kms:EncryptionContext:k", val), COFFER_OK);
    struct policy_request req = {
        "arn:aws:iam::111122223333:root", NULL, "111122223333", "Account", "kms:Encrypt", KEY, c, NULL};
    /* No budget: evaluated in full, nothing matches the Deny. */
    policy_budget_reset(0);
    assert_int_equal(policy_evaluate(p, &req), POLICY_ALLOW);
    assert_false(policy_budget_exhausted());
    /* With the budget: refused, and the reason is visible. */
    policy_budget_reset(POLICY_EVAL_BUDGET_STEPS);
    uint64_t s0 = policy_glob_steps();
    assert_int_equal(policy_evaluate(p, &req), POLICY_DENY_EXPLICIT);
    assert_true(policy_budget_exhausted());
    assert_true(policy_glob_steps() - s0 < POLICY_EVAL_BUDGET_STEPS + 100000);
    /* A short value under the same budget: decided normally. */
    policy_budget_reset(POLICY_EVAL_BUDGET_STEPS);
    assert_int_equal(policy_ctx_set_str(c, "kms:EncryptionContext:k", "aaaa"), COFFER_OK);
    assert_int_equal(policy_evaluate(p, &req), POLICY_ALLOW);
    assert_false(policy_budget_exhausted());
    assert_int_equal(policy_ctx_set_str(c, "kms:EncryptionContext:k", "xbbx"), COFFER_OK);
    assert_int_equal(policy_evaluate(p, &req), POLICY_DENY_EXPLICIT);
    assert_false(policy_budget_exhausted());
    policy_budget_reset(0);
    policy_ctx_free(c);
    policy_free(p);
    free(doc);
    free(val);
}

/*
 * The cost a request can provoke is bounded by construction: count the matcher's steps for the
 * worst patterns against an encryption-context value at the KMS cap and require them to stay
 * within |pattern| + 256 * words + |subject| * words (words = ceil(longest segment / 64)).
 */
static void test_glob_cost_bound(void **state)
{
    (void)state;
    size_t sn = 8192, pn = POLICY_MAX_STRING;
    char *s = malloc(sn + 1), *p = malloc(pn + 1);
    assert_non_null(s);
    assert_non_null(p);
    memset(s, 'a', sn);
    s[sn] = '\0';
    struct {
        const char *name;
        size_t seg; /* 0: "*a*a*a...", else one segment of this length between two stars */
    } shapes[] = {{"*a*a*...ab*", 0}, {"*a^62b*", 62}, {"*a^2045b*", pn - 3}};
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        if (shapes[k].seg == 0) {
            for (size_t i = 0; i + 1 < pn; i += 2) {
                p[i] = '*';
                p[i + 1] = 'a';
            }
            p[pn - 2] = 'b'; /* "...*ab*": every middle segment scans the subject */
            p[pn - 1] = '*';
        } else {
            p[0] = '*';
            memset(p + 1, 'a', shapes[k].seg);
            p[shapes[k].seg] = 'b';
            p[shapes[k].seg + 1] = '*';
            p[shapes[k].seg + 2] = '\0';
        }
        p[shapes[k].seg == 0 ? pn : shapes[k].seg + 2] = '\0';
        size_t seg = shapes[k].seg == 0 ? 2 : shapes[k].seg;
        uint64_t words = (seg + 63) / 64;
        uint64_t bound = 3 * strlen(p) + 256 * words + sn * words;
        uint64_t before = policy_glob_steps();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_false(policy_glob(p, s, false, false));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        uint64_t steps = policy_glob_steps() - before;
        double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
        print_message("%-12s |p|=%zu |s|=%zu: %llu steps (bound %llu; backtracking ~%llu), %.0f us\n",
                      shapes[k].name, strlen(p), sn, (unsigned long long)steps, (unsigned long long)bound,
                      (unsigned long long)(sn * seg), us);
        assert_true(steps <= bound);
    }
    free(s);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_table),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_combine),
        cmocka_unit_test(test_ctx_api),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_glob_differential),
        cmocka_unit_test(test_glob_cost_bound),
        cmocka_unit_test(test_ctx_variants),
        cmocka_unit_test(test_absent_key),
        cmocka_unit_test(test_principal_binding),
        cmocka_unit_test(test_eval_budget),
        cmocka_unit_test(test_variable_over_variants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
