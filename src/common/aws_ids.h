/*
 * Lengths of the AWS identifiers that several layers carry: the SigV4 verifier fills them in
 * from a credential record, the service contract hands them to handlers, IAM stores them. Each
 * is the number of characters without the terminating NUL, so buffers are `[X + 1]`.
 */
#ifndef COFFER_COMMON_AWS_IDS_H
#define COFFER_COMMON_AWS_IDS_H

#define AWS_ACCOUNT_ID_LEN 12     /* "123456789012": always 12 digits */
#define AWS_ACCESS_KEY_ID_MAX 128 /* the longest AccessKeyId the IAM API admits (16..128) */
#define AWS_PRINCIPAL_ID_MAX 128  /* userIdentity.principalId: "AIDA...", "AROA...:session" */
#define AWS_PRINCIPAL_ARN_MAX 255 /* user, role and session ARNs of a caller (ours stay below) */
#define AWS_PRINCIPAL_TYPE_MAX 31 /* "Root", "IAMUser", "AssumedRole" */
/* "arn:aws:iam::123456789012:root" */
#define AWS_ROOT_ARN_LEN (sizeof("arn:aws:iam::") - 1 + AWS_ACCOUNT_ID_LEN + sizeof(":root") - 1)

#endif
