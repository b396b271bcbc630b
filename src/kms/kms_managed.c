/*
 * AWS managed keys: the key a service of this server uses in an account when its caller names
 * no key of their own (alias/aws/ssm for Parameter Store, alias/aws/secretsmanager for Secrets
 * Manager). As in AWS, the key appears the first time its alias is used in the account (by
 * the service, or by DescribeKey or a cryptographic operation naming the alias), with
 * KeyManager AWS, automatic yearly rotation and a key policy that lets the account use it only
 * through that service and read its metadata; nobody can change that policy, because the
 * policy itself grants no kms:PutKeyPolicy. The key, its alias and the event recording its
 * creation are written in one transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "kms/kms_internal.h"

struct managed_key {
    const char *alias;       /* "alias/aws/<service>" */
    const char *service;     /* the service's endpoint prefix, for kms:ViaService */
    const char *title;       /* how the key policy names the service */
    const char *description; /* DescribeKey's Description */
};

/* Sorted by alias: ListAliases shows them in order among the account's own. */
static const struct managed_key managed_keys[] = {
    {"alias/aws/secretsmanager", "secretsmanager", "AWS Secrets Manager",
     "Default key that protects my Secrets Manager data when no other key is defined"},
    {"alias/aws/ssm", "ssm", "AWS Systems Manager",
     "Default key that protects my SSM parameters when no other key is defined"},
};
#define N_MANAGED (sizeof(managed_keys) / sizeof(managed_keys[0]))

static const struct managed_key *managed_find(const char *alias)
{
    for (size_t i = 0; alias != NULL && i < N_MANAGED; i++) {
        if (strcmp(alias, managed_keys[i].alias) == 0) {
            return &managed_keys[i];
        }
    }
    return NULL;
}

bool kms_managed_alias(const char *alias)
{
    return managed_find(alias) != NULL;
}

size_t kms_managed_alias_count(void)
{
    return N_MANAGED;
}

const char *kms_managed_alias_name(size_t i)
{
    return i < N_MANAGED ? managed_keys[i].alias : NULL;
}

/* The key policy AWS gives a managed key, in AWS's layout. */
static char *managed_policy(const struct managed_key *m, const char *acct, const char *region)
{
    static const char fmt[] = "{\n"
                              "  \"Version\" : \"2012-10-17\",\n"
                              "  \"Id\" : \"auto-%s-1\",\n"
                              "  \"Statement\" : [ {\n"
                              "    \"Sid\" : \"Allow access through %s for all principals in the account "
                              "that are authorized to use %s\",\n"
                              "    \"Effect\" : \"Allow\",\n"
                              "    \"Principal\" : {\n"
                              "      \"AWS\" : \"*\"\n"
                              "    },\n"
                              "    \"Action\" : [ \"kms:Encrypt\", \"kms:Decrypt\", \"kms:ReEncrypt*\", "
                              "\"kms:GenerateDataKey*\", \"kms:CreateGrant\", \"kms:DescribeKey\" ],\n"
                              "    \"Resource\" : \"*\",\n"
                              "    \"Condition\" : {\n"
                              "      \"StringEquals\" : {\n"
                              "        \"kms:CallerAccount\" : \"%s\",\n"
                              "        \"kms:ViaService\" : \"%s.%s.amazonaws.com\"\n"
                              "      }\n"
                              "    }\n"
                              "  }, {\n"
                              "    \"Sid\" : \"Allow direct access to key metadata to the account\",\n"
                              "    \"Effect\" : \"Allow\",\n"
                              "    \"Principal\" : {\n"
                              "      \"AWS\" : \"arn:aws:iam::%s:root\"\n"
                              "    },\n"
                              "    \"Action\" : [ \"kms:Describe*\", \"kms:Get*\", \"kms:List*\", "
                              "\"kms:RevokeGrant\" ],\n"
                              "    \"Resource\" : \"*\"\n"
                              "  } ]\n"
                              "}";
    char *s = NULL;
    if (asprintf(&s, fmt, m->service, m->title, m->title, acct, m->service, region, acct) < 0) {
        return NULL;
    }
    return s;
}

/* What the creating transaction writes besides the key: the alias, its counter, the event. */
struct managed_txn {
    struct kms_service *svc;
    const struct managed_key *m;
    const char *acct, *region, *key_id;
    int64_t now_ms, next_rotation_ms;
};

static coffer_err managed_txn_extra(store_txn *t, void *ctx)
{
    const struct managed_txn *x = ctx;
    char skey[STORE_KEY_BUF];
    coffer_err rc = COFFER_OK;
    coffer_buf existing = COFFER_BUF_INIT;
    json_t *alias =
        json_pack("{s:s,s:s,s:I,s:I}", "AliasName", x->m->alias, "TargetKeyId", x->key_id, "CreationDate",
                  (json_int_t)x->now_ms, "LastUpdatedDate", (json_int_t)x->now_ms);
    if (alias == NULL) {
        rc = kms_nomem();
        goto out;
    }
    /* wmu serialises this process only: another node sharing the database may have made the key
     * since our look. Its key stands, and this one is never created (kms_managed_key_ensure). */
    kms_alias_store_key(skey, sizeof(skey), x->acct, x->region, x->m->alias);
    rc = store_txn_get(t, skey, &existing);
    if (rc == COFFER_OK) {
        FAIL_OUT(COFFER_ERR_ALREADY_EXISTS, "the AWS managed key was made by another node");
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    rc = COFFER_OK;
    kms_count_aliases_key(skey, sizeof(skey), x->acct, x->region, x->key_id);
    TRY_OUT(kms_count_add(t, skey, 1, x->svc->limits.kms_aliases_per_key, "aliases for this KMS key"));
    kms_alias_store_key(skey, sizeof(skey), x->acct, x->region, x->m->alias);
    TRY_OUT(kms_txn_put_json(t, skey, alias));
    TRY_OUT(kms_rotation_schedule_txn(t, x->acct, x->region, x->key_id, x->next_rotation_ms));
    TRY_OUT(kms_record_service_event(x->svc, "CreateKey", x->acct, x->region, x->key_id, x->now_ms));
out:
    coffer_buf_free(&existing);
    json_decref(alias);
    return rc;
}

/* wmu held: creates the managed key of `m` in acct/region and points its alias at it. */
static coffer_err managed_create(struct kms_service *svc, const struct managed_key *m, const char *acct,
                                 const char *region, int64_t now_ms, char id[KMS_KEY_ID_MAX + 1])
{
    coffer_err rc = COFFER_OK;
    struct kms_key *k = NULL;
    char *policy_text = managed_policy(m, acct, region);
    json_t *rec = NULL;
    /* Yearly, as AWS rotates its managed keys. */
    int64_t next_rotation = now_ms + KMS_ROTATION_DEFAULT_DAYS * svc->limits.kms_rotation_day_ms;
    TRY_OUT(crypto_uuid_v4(id));
    rec = policy_text == NULL
              ? NULL
              : json_pack("{s:i,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:[],s:{},s:{s:b,s:i,s:I}}",
                          "Version", KMS_RECORD_VERSION, "KeyId", id, "AWSAccountId", acct, "Region", region,
                          "CreationDate", (json_int_t)now_ms, "Description", m->description, "KeySpec",
                          "SYMMETRIC_DEFAULT", "KeyUsage", "ENCRYPT_DECRYPT", "KeyState", "Enabled", "Origin",
                          "AWS_KMS", "KeyManager", "AWS", "MultiRegion", false, "Policy", policy_text, "Tags",
                          "PolicyPrincipals", "Rotation", "Enabled", true, "PeriodInDays",
                          KMS_ROTATION_DEFAULT_DAYS, "NextRotationDate", (json_int_t)next_rotation);
    if (rec == NULL) {
        rc = kms_nomem();
        goto out;
    }
    struct managed_txn x = {
        .svc = svc, .m = m, .acct = acct, .region = region, .key_id = id, .now_ms = now_ms};
    rc = kms_key_create(svc, NULL, rec, managed_txn_extra, &x, &k);
    rec = NULL;
    TRY_OUT(rc);
    rc = kms_alias_cache_set(svc, acct, region, m->alias, id);
out:
    json_decref(rec);
    free(policy_text);
    return rc;
}

coffer_err kms_managed_key_ensure(struct kms_service *svc, const char *acct, const char *region,
                                  const char *alias, int64_t now_ms)
{
    const struct managed_key *m = managed_find(alias);
    char skey[STORE_KEY_BUF], id[KMS_KEY_ID_MAX + 1];
    coffer_buf val = COFFER_BUF_INIT;
    if (m == NULL) {
        return COFFER_ERR_NOT_FOUND;
    }
    kms_write_begin(svc);
    /* Another request may have made it since the caller's lookup missed: look again under wmu. */
    kms_alias_store_key(skey, sizeof(skey), acct, region, alias);
    coffer_err rc = store_get(svc->st, skey, &val);
    if (rc == COFFER_ERR_NOT_FOUND) {
        rc = managed_create(svc, m, acct, region, now_ms, id);
        if (rc == COFFER_ERR_ALREADY_EXISTS) {
            rc = COFFER_OK; /* made by another node: the caller's next lookup finds it */
        }
    }
    kms_write_release(svc);
    coffer_buf_free(&val);
    return rc;
}
