/*
 * Multi-Region keys: ReplicateKey and UpdatePrimaryRegion. CreateKey does not make
 * multi-Region keys yet, so every key is a single-Region key and both operations answer as
 * AWS does for one, after the key has been found and the call authorized.
 */
#include "kms/kms_internal.h"

static coffer_err not_multi_region(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                   const char *action, const char *const *audit)
{
    struct kms_req r;
    struct kms_key *k;
    kms_audit_request(call, audit);
    TRY(kms_req_decode(op, call->input, &r));
    TRY(kms_acquire(svc, call, r.key_id, 0, &k));
    kms_audit_key(call, k);
    coffer_err rc = kms_authorize_key(svc, call, k, &(struct kms_authz_in){.action = action, .r = &r});
    if (rc == COFFER_OK) {
        rc = coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION, "%s is not a multi-region primary key.", k->arn);
    }
    kms_release(svc);
    return rc;
}

coffer_err kms_op_ReplicateKey(void *state, struct api_call *call)
{
    static const char *const audit[] = {
        "KeyId", "ReplicaRegion", "Description", "Tags", "BypassPolicyLockoutSafetyCheck", "Policy", NULL};
    return not_multi_region(state, call, KMS_OP_ReplicateKey, "kms:ReplicateKey", audit);
}

coffer_err kms_op_UpdatePrimaryRegion(void *state, struct api_call *call)
{
    static const char *const audit[] = {"KeyId", "PrimaryRegion", NULL};
    return not_multi_region(state, call, KMS_OP_UpdatePrimaryRegion, "kms:UpdatePrimaryRegion", audit);
}
