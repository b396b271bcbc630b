"""Access control end to end, through real clients: IAM users and their policies deciding KMS
calls, key policies, grants, and the cross-account flow of AWS's snapshot-sharing recipe
(account A's key policy lets a role of account B decrypt; B assumes the role).

Every principal here is made through the public surface: `coffer admin create-account` for
accounts, `aws iam` / boto3 IAM for users, roles and policies, STS AssumeRole for sessions.
"""
import base64
import json
import os
import subprocess
import unittest

import botocore.exceptions

from harness import AWS, COFFER, REGION, ServerTestCase


def policy_doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def default_key_policy(account):
    return {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::%s:root" % account}, "Action": "kms:*", "Resource": "*"}


class AccessControlTest(ServerTestCase):

    # ---- helpers ------------------------------------------------------------------------------

    def create_account(self, name):
        r = subprocess.run([COFFER, "admin", "create-account", name, "--data-dir", self.server.data_dir,
                            "--endpoint", self.server.endpoint],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        acct = json.loads(r.stdout)
        self.assertRegex(acct["AccountId"], r"^\d{12}$")
        return acct

    def client(self, service, creds=None):
        """A boto3 client; creds is None (operator) or a dict with AccessKeyId/SecretAccessKey[/SessionToken]."""
        if creds is None:
            return self.server.client(service)
        kw = {"akid": creds["AccessKeyId"], "secret": creds["SecretAccessKey"]}
        if creds.get("SessionToken"):
            kw["aws_session_token"] = creds["SessionToken"]
        return self.server.client(service, **kw)

    def aws_as(self, creds, *args):
        """Runs /usr/bin/aws with explicit credentials; returns (rc, parsed stdout, stderr)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                    "AWS_DEFAULT_REGION": REGION, "AWS_CA_BUNDLE": self.server.ca, "AWS_PAGER": "",
                    "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1",
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        if creds.get("SessionToken"):
            env["AWS_SESSION_TOKEN"] = creds["SessionToken"]
        r = subprocess.run([AWS, "--endpoint-url", self.server.endpoint, "--output", "json"] + list(args),
                           env=env, capture_output=True, timeout=60)
        out = json.loads(r.stdout) if r.stdout.strip() else None
        return r.returncode, out, r.stderr.decode()

    def user(self, iam, name, policy=None):
        """Creates an IAM user with an access key (and an inline policy); returns its credentials."""
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}

    def assert_denied(self, fn, action=None, **kw):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn(**kw)
        err = cm.exception.response["Error"]
        self.assertEqual(err["Code"], "AccessDeniedException", err)
        if action is not None:
            self.assertIn("is not authorized to perform: %s" % action, err["Message"])
        return err["Message"]

    # ---- same account: users and identity policies ---------------------------------------------

    def test_identity_policies_decide_kms_calls(self):
        acct = self.create_account("identity")
        admin = acct
        iam = self.client("iam", admin)
        kms_admin = self.client("kms", admin)
        k1 = kms_admin.create_key(Description="one")["KeyMetadata"]
        k2 = kms_admin.create_key(Description="two")["KeyMetadata"]

        # A user with no policy is denied, with AWS's message naming principal, action and resource.
        nobody = self.user(iam, "nobody")
        kms_nobody = self.client("kms", nobody)
        msg = self.assert_denied(kms_nobody.encrypt, "kms:Encrypt", KeyId=k1["Arn"], Plaintext=b"x")
        self.assertIn("arn:aws:iam::%s:user/nobody" % acct["AccountId"], msg)
        self.assertIn(k1["Arn"], msg)
        self.assert_denied(kms_nobody.list_keys, "kms:ListKeys")

        # An inline policy allowing kms:Encrypt on one key ARN allows exactly that.
        enc_only = self.user(iam, "enc-only", policy_doc(
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": k1["Arn"]}))
        kms_enc = self.client("kms", enc_only)
        blob = kms_enc.encrypt(KeyId=k1["Arn"], Plaintext=b"secret")["CiphertextBlob"]
        self.assert_denied(kms_enc.encrypt, "kms:Encrypt", KeyId=k2["Arn"], Plaintext=b"x")
        self.assert_denied(kms_enc.decrypt, "kms:Decrypt", CiphertextBlob=blob)
        self.assert_denied(kms_enc.describe_key, "kms:DescribeKey", KeyId=k1["Arn"])
        self.assertEqual(kms_admin.decrypt(CiphertextBlob=blob)["Plaintext"], b"secret")

        # The same through the AWS CLI.
        rc, out, err = self.aws_as(enc_only, "kms", "encrypt", "--key-id", k1["Arn"],
                                   "--plaintext", base64.b64encode(b"cli").decode())
        self.assertEqual(rc, 0, err)
        rc, out, err = self.aws_as(enc_only, "kms", "encrypt", "--key-id", k2["Arn"],
                                   "--plaintext", base64.b64encode(b"cli").decode())
        self.assertNotEqual(rc, 0)
        self.assertIn("AccessDeniedException", err)

        # An explicit Deny overrides an Allow.
        iam.put_user_policy(UserName="enc-only", PolicyName="deny", PolicyDocument=policy_doc(
            {"Effect": "Deny", "Action": "kms:*", "Resource": "*"}))
        self.assert_denied(kms_enc.encrypt, "kms:Encrypt", KeyId=k1["Arn"], Plaintext=b"x")
        iam.delete_user_policy(UserName="enc-only", PolicyName="deny")
        kms_enc.encrypt(KeyId=k1["Arn"], Plaintext=b"again")

        # A condition on kms:EncryptionContext:Department.
        finance = self.user(iam, "finance", policy_doc(
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": k1["Arn"],
             "Condition": {"StringEquals": {"kms:EncryptionContext:Department": "Finance"}}}))
        kms_fin = self.client("kms", finance)
        blob = kms_fin.encrypt(KeyId=k1["Arn"], Plaintext=b"ledger",
                               EncryptionContext={"Department": "Finance"})["CiphertextBlob"]
        self.assertEqual(kms_fin.decrypt(CiphertextBlob=blob, EncryptionContext={"Department": "Finance"})
                         ["Plaintext"], b"ledger")
        self.assert_denied(kms_fin.encrypt, "kms:Encrypt", KeyId=k1["Arn"], Plaintext=b"x",
                           EncryptionContext={"Department": "Sales"})
        self.assert_denied(kms_fin.encrypt, "kms:Encrypt", KeyId=k1["Arn"], Plaintext=b"x")

        # aws:SourceIp against the loopback address the tests connect from.
        local = self.user(iam, "local", policy_doc(
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}))
        self.client("kms", local).encrypt(KeyId=k1["Arn"], Plaintext=b"from loopback")
        remote = self.user(iam, "remote", policy_doc(
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}))
        self.assert_denied(self.client("kms", remote).encrypt, "kms:Encrypt", KeyId=k1["Arn"], Plaintext=b"x")

    def test_key_policy_without_root_delegation(self):
        acct = self.create_account("keypolicy")
        iam = self.client("iam", acct)
        kms_admin = self.client("kms", acct)
        alice = self.user(iam, "alice")  # no identity policy at all
        alice_arn = "arn:aws:iam::%s:user/alice" % acct["AccountId"]
        policy = policy_doc(default_key_policy(acct["AccountId"]),
                            {"Sid": "alice", "Effect": "Allow", "Principal": {"AWS": alice_arn},
                             "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"})
        key = kms_admin.create_key(Policy=policy)["KeyMetadata"]
        kms_alice = self.client("kms", alice)
        # Named directly by the key policy: no IAM policy is needed in the key's own account.
        blob = kms_alice.encrypt(KeyId=key["Arn"], Plaintext=b"direct")["CiphertextBlob"]
        self.assertEqual(kms_alice.decrypt(CiphertextBlob=blob)["Plaintext"], b"direct")
        self.assert_denied(kms_alice.describe_key, "kms:DescribeKey", KeyId=key["Arn"])
        # Removing the statement removes the access at once.
        kms_admin.put_key_policy(KeyId=key["KeyId"], PolicyName="default",
                                 Policy=policy_doc(default_key_policy(acct["AccountId"])))
        self.assert_denied(kms_alice.decrypt, "kms:Decrypt", CiphertextBlob=blob)

    # ---- grants ---------------------------------------------------------------------------------

    def test_grants_within_constraints_and_retire_revoke_at_once(self):
        acct = self.create_account("grants")
        iam = self.client("iam", acct)
        kms_admin = self.client("kms", acct)
        key = kms_admin.create_key()["KeyMetadata"]
        bob = self.user(iam, "bob")
        carol = self.user(iam, "carol")
        bob_arn = "arn:aws:iam::%s:user/bob" % acct["AccountId"]
        carol_arn = "arn:aws:iam::%s:user/carol" % acct["AccountId"]
        blob = kms_admin.encrypt(KeyId=key["KeyId"], Plaintext=b"granted",
                                 EncryptionContext={"purpose": "backup"})["CiphertextBlob"]
        other = kms_admin.encrypt(KeyId=key["KeyId"], Plaintext=b"other",
                                  EncryptionContext={"purpose": "mail"})["CiphertextBlob"]
        kms_bob = self.client("kms", bob)
        self.assert_denied(kms_bob.decrypt, "kms:Decrypt", CiphertextBlob=blob,
                           EncryptionContext={"purpose": "backup"})

        g = kms_admin.create_grant(KeyId=key["KeyId"], GranteePrincipal=bob_arn, RetiringPrincipal=carol_arn,
                                   Operations=["Decrypt"],
                                   Constraints={"EncryptionContextSubset": {"purpose": "backup"}})
        # Honoured immediately, with or without the token.
        self.assertEqual(kms_bob.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "backup"},
                                         GrantTokens=[g["GrantToken"]])["Plaintext"], b"granted")
        self.assertEqual(kms_bob.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "backup"})
                         ["Plaintext"], b"granted")
        # Outside the constraint, or another operation: denied.
        self.assert_denied(kms_bob.decrypt, "kms:Decrypt", CiphertextBlob=other,
                           EncryptionContext={"purpose": "mail"})
        self.assert_denied(kms_bob.encrypt, "kms:Encrypt", KeyId=key["KeyId"], Plaintext=b"x",
                           EncryptionContext={"purpose": "backup"})
        grants = kms_admin.list_grants(KeyId=key["KeyId"])["Grants"]
        self.assertEqual([x["GrantId"] for x in grants], [g["GrantId"]])
        self.assertEqual(grants[0]["GranteePrincipal"], bob_arn)
        self.assertEqual(grants[0]["Operations"], ["Decrypt"])
        retirable = kms_admin.list_retirable_grants(RetiringPrincipal=carol_arn)["Grants"]
        self.assertEqual([x["GrantId"] for x in retirable], [g["GrantId"]])

        # The retiring principal retires it; bob loses access at once.
        self.client("kms", carol).retire_grant(KeyId=key["Arn"], GrantId=g["GrantId"])
        self.assert_denied(kms_bob.decrypt, "kms:Decrypt", CiphertextBlob=blob,
                           EncryptionContext={"purpose": "backup"})

        # Revoke by the key's account.
        g2 = kms_admin.create_grant(KeyId=key["KeyId"], GranteePrincipal=bob_arn, Operations=["Decrypt"])
        self.assertEqual(kms_bob.decrypt(CiphertextBlob=other, EncryptionContext={"purpose": "mail"})
                         ["Plaintext"], b"other")
        kms_admin.revoke_grant(KeyId=key["KeyId"], GrantId=g2["GrantId"])
        self.assert_denied(kms_bob.decrypt, "kms:Decrypt", CiphertextBlob=other,
                           EncryptionContext={"purpose": "mail"})
        self.assertEqual(kms_admin.list_grants(KeyId=key["KeyId"])["Grants"], [])

    # ---- cross account ---------------------------------------------------------------------------

    def test_cross_account_share_through_key_policy_and_role(self):
        a = self.create_account("owner-a")
        b = self.create_account("consumer-b")
        a_id, b_id = a["AccountId"], b["AccountId"]
        kms_a = self.client("kms", a)
        iam_b = self.client("iam", b)

        # Account B: a role its user "operator" may assume, allowed to use keys of other accounts.
        # The user exists first: a trust policy binds the users it names.
        role_arn = "arn:aws:iam::%s:role/snapshot-copier" % b_id
        operator = self.user(iam_b, "operator", policy_doc(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}))
        role_arn = iam_b.create_role(RoleName="snapshot-copier", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:user/operator" % b_id},
                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        iam_b.put_role_policy(RoleName="snapshot-copier", PolicyName="use-shared-keys", PolicyDocument=policy_doc(
            {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"],
             "Resource": "arn:aws:kms:*:%s:key/*" % a_id}))
        # B's other user holds an equally broad identity policy but is not named by A's key policy.
        bystander = self.user(iam_b, "bystander", policy_doc(
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}))

        # Account A: a key whose policy lets B's role decrypt and create grants, only as B.
        share = {"Sid": "AllowUseFromAccountB", "Effect": "Allow", "Principal": {"AWS": role_arn},
                 "Action": ["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"], "Resource": "*",
                 "Condition": {"StringEquals": {"kms:CallerAccount": b_id}}}
        key = kms_a.create_key(Description="snapshot key",
                               Policy=policy_doc(default_key_policy(a_id), share))["KeyMetadata"]
        blob = kms_a.encrypt(KeyId=key["KeyId"], Plaintext=b"snapshot data key",
                             EncryptionContext={"snapshot": "snap-1"})["CiphertextBlob"]

        # B's operator assumes the role, then decrypts A's ciphertext with the session.
        sts = self.client("sts", operator)
        self.assertEqual(sts.get_caller_identity()["Arn"], "arn:aws:iam::%s:user/operator" % b_id)
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="copy")["Credentials"]
        session = {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                   "SessionToken": creds["SessionToken"]}
        who = self.client("sts", session).get_caller_identity()
        self.assertEqual(who["Arn"], "arn:aws:sts::%s:assumed-role/snapshot-copier/copy" % b_id)
        self.assertEqual(who["Account"], b_id)
        kms_role = self.client("kms", session)
        self.assertEqual(kms_role.decrypt(CiphertextBlob=blob, EncryptionContext={"snapshot": "snap-1"})
                         ["Plaintext"], b"snapshot data key")
        self.assertEqual(kms_role.describe_key(KeyId=key["Arn"])["KeyMetadata"]["KeyId"], key["KeyId"])
        # The key policy does not extend to Encrypt, whatever B's own policies say.
        self.assert_denied(kms_role.encrypt, "kms:Encrypt", KeyId=key["Arn"], Plaintext=b"x")
        # The AWS CLI with the session credentials does the same.
        rc, out, err = self.aws_as(session, "kms", "describe-key", "--key-id", key["Arn"])
        self.assertEqual(rc, 0, err)

        # B's other users cannot, even with kms:* on "*" in their own policy.
        kms_by = self.client("kms", bystander)
        self.assert_denied(kms_by.decrypt, "kms:Decrypt", CiphertextBlob=blob,
                           EncryptionContext={"snapshot": "snap-1"})
        # Nor can the role's session when B's side stops allowing it.
        iam_b.delete_role_policy(RoleName="snapshot-copier", PolicyName="use-shared-keys")
        self.assert_denied(kms_role.decrypt, "kms:Decrypt", CiphertextBlob=blob,
                           EncryptionContext={"snapshot": "snap-1"})
        iam_b.put_role_policy(RoleName="snapshot-copier", PolicyName="use-shared-keys", PolicyDocument=policy_doc(
            {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"],
             "Resource": "arn:aws:kms:*:%s:key/*" % a_id}))
        kms_role.decrypt(CiphertextBlob=blob, EncryptionContext={"snapshot": "snap-1"})

        # The role may pass Decrypt on to another principal with a grant (as EBS is given one in
        # the recipe); the grantee needs no policy, and loses access when A revokes the grant.
        bystander_arn = "arn:aws:iam::%s:user/bystander" % b_id
        grant = kms_role.create_grant(KeyId=key["Arn"], GranteePrincipal=bystander_arn, Operations=["Decrypt"])
        self.assertEqual(kms_by.decrypt(CiphertextBlob=blob, EncryptionContext={"snapshot": "snap-1"})
                         ["Plaintext"], b"snapshot data key")
        kms_a.revoke_grant(KeyId=key["KeyId"], GrantId=grant["GrantId"])
        self.assert_denied(kms_by.decrypt, "kms:Decrypt", CiphertextBlob=blob,
                           EncryptionContext={"snapshot": "snap-1"})

        # Removing A's statement removes the role's access.
        kms_a.put_key_policy(KeyId=key["KeyId"], PolicyName="default",
                             Policy=policy_doc(default_key_policy(a_id)))
        msg = self.assert_denied(kms_role.decrypt, "kms:Decrypt", CiphertextBlob=blob,
                                 EncryptionContext={"snapshot": "snap-1"})
        self.assertIn("assumed-role/snapshot-copier/copy", msg)

    def test_accounts_are_isolated(self):
        a = self.create_account("iso-a")
        b = self.create_account("iso-b")
        key = self.client("kms", a).create_key()["KeyMetadata"]
        kms_b = self.client("kms", b)
        # B's root has every identity permission in B, but A's default key policy names only A.
        self.assert_denied(kms_b.encrypt, "kms:Encrypt", KeyId=key["Arn"], Plaintext=b"x")
        self.assertNotIn(key["KeyId"], [k["KeyId"] for k in kms_b.list_keys()["Keys"]])
        # The operator account's users are not B's.
        self.client("iam").create_user(UserName="operator-only")
        names = [u["UserName"] for u in self.client("iam", b).list_users()["Users"]]
        self.assertNotIn("operator-only", names)


if __name__ == "__main__":
    unittest.main()
