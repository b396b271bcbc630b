/* Data keys for the encrypted audit trail from the in-process KMS (see audit_kms.h). */
#include "server/audit_kms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "crypto/crypto.h"
#include "server/config.h"

#define TRAIL_VIA_SERVICE_FMT "cloudtrail.%s.amazonaws.com"

static coffer_err kms_data_key(void *ctx, const char *file_name, struct audit_data_key *out)
{
    struct server_audit_kms *a = ctx;
    coffer_err rc = COFFER_OK;
    json_t *ec = NULL;
    char request_id[CRYPTO_UUID_STR_LEN + 1], via[128];
    if (atomic_load(&a->stopped)) {
        return coffer_fail(COFFER_ERR_AUDIT, "KMS is stopping");
    }
    TRY(crypto_uuid_v4(request_id));
    snprintf(via, sizeof(via), TRAIL_VIA_SERVICE_FMT, a->region);
    ec = json_pack("{s:s}", AUDIT_ENC_CONTEXT_KEY, file_name);
    if (ec == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    struct api_call call = {
        .caller = &a->caller,
        .region = a->region,
        .request_id = request_id,
        .operation = "GenerateDataKey",
        .now_ms = coffer_now_ms(),
    };
    TRY_OUT(a->kms->generate_data_key(a->kms->svc, &call, via, a->key_id, ec, AUDIT_ENC_KEY_LEN, &out->key,
                                      &out->wrapped_b64, out->key_arn, sizeof(out->key_arn)));
out:
    json_decref(ec);
    return rc;
}

void server_audit_kms_init(struct server_audit_kms *a, const struct kms_api *kms, const char *key_id,
                           const char *region)
{
    memset(a, 0, sizeof(*a));
    a->kms = kms;
    a->key_id = key_id;
    a->region = region;
    atomic_init(&a->stopped, false);
    snprintf(a->caller.account_id, sizeof(a->caller.account_id), "%s", CONFIG_DEFAULT_ACCOUNT);
    snprintf(a->caller.principal_arn, sizeof(a->caller.principal_arn), "arn:aws:iam::%s:root",
             CONFIG_DEFAULT_ACCOUNT);
    a->caller.principal_kind = API_PRINCIPAL_ROOT;
    a->caller.source_ip = "cloudtrail.amazonaws.com";
    a->caller.user_agent = "cofferd";
    a->caller.secure_transport = true;
    a->source.data_key = kms_data_key;
    a->source.ctx = a;
}
