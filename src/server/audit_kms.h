/*
 * The audit trail's data keys from the in-process KMS (audit_kms.c): the key source of an
 * encrypted trail (audit.h, "Encrypted trail") when cofferd runs with --audit-kms-key-id.
 *
 * Each GenerateDataKey runs as the root of the deployment's default account
 * (arn:aws:iam::CONFIG_DEFAULT_ACCOUNT:root), invoked by "cloudtrail.amazonaws.com"
 * (kms:ViaService cloudtrail.<region>.amazonaws.com), with the encryption context
 * {AUDIT_ENC_CONTEXT_KEY: "<trail file name>"}: the key's policy must allow that principal
 * kms:GenerateDataKey (a key's default policy does), and whoever reads the trail needs
 * kms:Decrypt on the key (`coffer audit cat`). Each call is in the trail as a KMS event.
 */
#ifndef COFFER_SERVER_AUDIT_KMS_H
#define COFFER_SERVER_AUDIT_KMS_H

#include <stdatomic.h>

#include "api/api.h"
#include "audit/audit.h"
#include "kms/kms.h"

struct server_audit_kms {
    const struct kms_api *kms; /* borrowed */
    const char *key_id;        /* borrowed: --audit-kms-key-id */
    const char *region;        /* borrowed */
    struct api_caller caller;  /* the deployment's account root */
    atomic_bool stopped;       /* set before KMS stops: no more keys (the current file goes on) */
    struct audit_key_source source;
};

/* Fills `a` for `kms`; a->source is then the trail's key source. */
void server_audit_kms_init(struct server_audit_kms *a, const struct kms_api *kms, const char *key_id,
                           const char *region);

#endif
