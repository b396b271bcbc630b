/*
 * Custom key stores: CreateCustomKeyStore, ConnectCustomKeyStore, DisconnectCustomKeyStore,
 * DeleteCustomKeyStore, DescribeCustomKeyStores and UpdateCustomKeyStore. A key store here is
 * a PKCS#11 token the operator maps to a CloudHSM cluster id in the configuration; with no
 * such mapping there is no cluster to build a store on and no store to name, and the
 * operations answer as AWS does for unknown ids. External key stores (an XKS proxy) are not
 * served. All of them are authorized on "*" by identity policies only, as in AWS.
 */
#include <string.h>

#include "kms/kms_internal.h"

static coffer_err store_op_begin(struct kms_service *svc, struct api_call *call, enum kms_op_id op,
                                 const char *action, const char *const *audit, struct kms_req *r)
{
    kms_audit_request(call, audit);
    TRY(kms_req_decode(op, call->input, r));
    return kms_authorize_plain(svc, call, action, "*", r);
}

static coffer_err store_not_found(void)
{
    return coffer_fail(COFFER_ERR_CUSTOM_KEY_STORE_NOT_FOUND, "%s",
                       coffer_err_default_message(COFFER_ERR_CUSTOM_KEY_STORE_NOT_FOUND));
}

coffer_err kms_op_CreateCustomKeyStore(void *state, struct api_call *call)
{
    /* Never the password or the proxy credential: they are sensitive members. */
    static const char *const audit[] = {"CustomKeyStoreName",
                                        "CloudHsmClusterId",
                                        "CustomKeyStoreType",
                                        "XksProxyUriEndpoint",
                                        "XksProxyUriPath",
                                        "XksProxyConnectivity",
                                        NULL};
    struct kms_req r;
    TRY(store_op_begin(state, call, KMS_OP_CreateCustomKeyStore, "kms:CreateCustomKeyStore", audit, &r));
    if (r.custom_key_store_type == 1) {
        return coffer_fail(COFFER_ERR_UNSUPPORTED_OPERATION,
                           "External key stores (EXTERNAL_KEY_STORE) are not supported by this server.");
    }
    if (r.cloud_hsm_cluster_id == NULL) {
        return coffer_fail(COFFER_ERR_VALIDATION,
                           "CloudHsmClusterId is required for a custom key store of type AWS_CLOUDHSM.");
    }
    /* No cluster id maps to a token: the configuration names none. */
    return coffer_fail(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_FOUND, "%s",
                       coffer_err_default_message(COFFER_ERR_CLOUDHSM_CLUSTER_NOT_FOUND));
}

static const char *const audit_store_id[] = {"CustomKeyStoreId", NULL};

coffer_err kms_op_ConnectCustomKeyStore(void *state, struct api_call *call)
{
    struct kms_req r;
    TRY(store_op_begin(state, call, KMS_OP_ConnectCustomKeyStore, "kms:ConnectCustomKeyStore", audit_store_id,
                       &r));
    return store_not_found();
}

coffer_err kms_op_DisconnectCustomKeyStore(void *state, struct api_call *call)
{
    struct kms_req r;
    TRY(store_op_begin(state, call, KMS_OP_DisconnectCustomKeyStore, "kms:DisconnectCustomKeyStore",
                       audit_store_id, &r));
    return store_not_found();
}

coffer_err kms_op_DeleteCustomKeyStore(void *state, struct api_call *call)
{
    struct kms_req r;
    TRY(store_op_begin(state, call, KMS_OP_DeleteCustomKeyStore, "kms:DeleteCustomKeyStore", audit_store_id,
                       &r));
    return store_not_found();
}

coffer_err kms_op_UpdateCustomKeyStore(void *state, struct api_call *call)
{
    static const char *const audit[] = {"CustomKeyStoreId",
                                        "NewCustomKeyStoreName",
                                        "CloudHsmClusterId",
                                        "XksProxyUriEndpoint",
                                        "XksProxyUriPath",
                                        "XksProxyConnectivity",
                                        NULL};
    struct kms_req r;
    TRY(store_op_begin(state, call, KMS_OP_UpdateCustomKeyStore, "kms:UpdateCustomKeyStore", audit, &r));
    return store_not_found();
}

coffer_err kms_op_DescribeCustomKeyStores(void *state, struct api_call *call)
{
    static const char *const audit[] = {"CustomKeyStoreId", "CustomKeyStoreName", "Limit", "Marker", NULL};
    struct kms_req r;
    TRY(store_op_begin(state, call, KMS_OP_DescribeCustomKeyStores, "kms:DescribeCustomKeyStores", audit,
                       &r));
    if (r.custom_key_store_id != NULL || r.custom_key_store_name != NULL) {
        return store_not_found();
    }
    if (r.marker != NULL) {
        /* No page was ever handed out. */
        return coffer_fail(COFFER_ERR_INVALID_MARKER, "Invalid marker: %.64s", r.marker);
    }
    call->output = json_pack("{s:[],s:b}", "CustomKeyStores", "Truncated", 0);
    return call->output != NULL ? COFFER_OK : kms_nomem();
}
