"""Many clients at once against the state cofferd's workers share: the KMS key cache (one key
read, encrypted with, re-tagged, re-described and granted on from every thread), aliases moved
between keys, IAM users and access keys (the credentials cache: keys created, used, disabled,
deleted), assumed-role sessions, the SigV4 signing-key cache and the unauthenticated-event
limiter (badly signed requests). Under ThreadSanitizer (make tsan) a race in any of them fails
the run; in every build each answer must be a success or an expected AWS error, and the final
state must hold every thread's last write.
"""
import json
import threading

import botocore.exceptions

from harness import ServerTestCase

ACCOUNT = "000000000000"
THREADS = 6
ROUNDS = 4
# Losing a race to another thread is an answer, not a failure.
EXPECTED = {"NotFoundException", "AlreadyExistsException", "EntityAlreadyExists", "NoSuchEntity"}
ALLOW_KMS = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})


class ConcurrentClientsTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--workers", "4")

    def test_shared_state_under_parallel_clients(self):
        s = self.server
        kms, iam = s.client("kms"), s.client("iam")
        shared = kms.create_key(Description="shared")["KeyMetadata"]["KeyId"]
        iam.create_role(RoleName="worker", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT}}]}))
        iam.put_role_policy(RoleName="worker", PolicyName="kms", PolicyDocument=ALLOW_KMS)
        policy = kms.get_key_policy(KeyId=shared, PolicyName="default")["Policy"]

        created = [[] for _ in range(THREADS)]
        failures = []
        done = []

        def call(what, fn, **kw):
            try:
                return fn(**kw)
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] not in EXPECTED:
                    failures.append("%s: %s" % (what, e))
            return None

        def worker(i):
            try:
                k, im, sts = s.client("kms"), s.client("iam"), s.client("sts")
                bad = s.client("kms", akid="AKIAAAAAAAAAAAAAAAAA", secret="x" * 40)
                call("CreateUser", im.create_user, UserName="u%d" % i)
                call("PutUserPolicy", im.put_user_policy, UserName="u%d" % i, PolicyName="kms",
                     PolicyDocument=ALLOW_KMS)
                for n in range(ROUNDS):
                    key = k.create_key(Description="t%d-%d" % (i, n))["KeyMetadata"]["KeyId"]
                    created[i].append(key)
                    alias = "alias/shared-%d" % (n % 2)
                    call("CreateAlias", k.create_alias, AliasName=alias, TargetKeyId=key)
                    call("UpdateAlias", k.update_alias, AliasName=alias, TargetKeyId=key)
                    call("DescribeKey", k.describe_key, KeyId=shared)
                    call("GetKeyPolicy", k.get_key_policy, KeyId=shared, PolicyName="default")
                    call("PutKeyPolicy", k.put_key_policy, KeyId=shared, PolicyName="default", Policy=policy)
                    blob = k.encrypt(KeyId=shared, Plaintext=b"%d-%d" % (i, n))["CiphertextBlob"]
                    if k.decrypt(CiphertextBlob=blob)["Plaintext"] != b"%d-%d" % (i, n):
                        failures.append("Decrypt returned another thread's plaintext")
                    call("GenerateDataKey", k.generate_data_key, KeyId=key, KeySpec="AES_256")
                    call("TagResource", k.tag_resource, KeyId=shared, Tags=[{"TagKey": "t%d" % i,
                                                                             "TagValue": str(n)}])
                    call("UpdateKeyDescription", k.update_key_description, KeyId=shared,
                         Description="d%d-%d" % (i, n))
                    grant = k.create_grant(KeyId=shared, GranteePrincipal="arn:aws:iam::%s:root" % ACCOUNT,
                                           Operations=["Decrypt"])["GrantId"]
                    call("RevokeGrant", k.revoke_grant, KeyId=shared, GrantId=grant)
                    call("DisableKey", k.disable_key, KeyId=key)
                    call("EnableKey", k.enable_key, KeyId=key)
                    call("ListKeys", k.list_keys)
                    call("ListAliases", k.list_aliases)
                    ak = im.create_access_key(UserName="u%d" % i)["AccessKey"]
                    user = s.client("kms", akid=ak["AccessKeyId"], secret=ak["SecretAccessKey"])
                    call("DescribeKey as user", user.describe_key, KeyId=shared)
                    call("UpdateAccessKey", im.update_access_key, UserName="u%d" % i,
                         AccessKeyId=ak["AccessKeyId"], Status="Inactive")
                    call("DeleteAccessKey", im.delete_access_key, UserName="u%d" % i, AccessKeyId=ak["AccessKeyId"])
                    c = sts.assume_role(RoleArn="arn:aws:iam::%s:role/worker" % ACCOUNT,
                                        RoleSessionName="s%d" % i)["Credentials"]
                    role = s.client("kms", akid=c["AccessKeyId"], secret=c["SecretAccessKey"],
                                    aws_session_token=c["SessionToken"])
                    call("Encrypt as role", role.encrypt, KeyId=shared, Plaintext=b"r")
                    try:
                        bad.list_keys()
                        failures.append("a badly signed request was answered")
                    except botocore.exceptions.ClientError:
                        pass
                done.append(i)
            except Exception as e:  # recorded: an exception would only end this thread
                failures.append("thread %d: %r" % (i, e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        self.assertEqual(failures, [])
        self.assertEqual(sorted(done), list(range(THREADS)))

        keys = {k["KeyId"] for k in kms.get_paginator("list_keys").paginate().build_full_result()["Keys"]}
        for ids in created:
            self.assertEqual(len(ids), ROUNDS)
            self.assertTrue(set(ids) <= keys)
        tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=shared)["Tags"]}
        self.assertEqual(tags, {"t%d" % i: str(ROUNDS - 1) for i in range(THREADS)})
        self.assertEqual(kms.list_grants(KeyId=shared)["Grants"], [])
        self.assertEqual(kms.describe_key(KeyId=shared)["KeyMetadata"]["KeyState"], "Enabled")
        for i in range(THREADS):
            self.assertEqual(iam.list_access_keys(UserName="u%d" % i)["AccessKeyMetadata"], [])
