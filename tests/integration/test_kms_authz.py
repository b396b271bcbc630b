"""Authorization of KMS requests against a live cofferd: key policies (deny, conditions on the
encryption context and the source address, the lockout safety check), GetKeyPolicy and
ListKeyPolicies, and the grant lifecycle, through /usr/bin/aws and boto3 as the account root.

Cases with another principal (an IAM user as grantee, a user without policy) create IAM users
through the IAM API and skip themselves while the server does not answer it yet.
"""
import base64
import json
import unittest

from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase

ACCOUNT = "000000000000"
ROOT = "arn:aws:iam::%s:root" % ACCOUNT


def statement(effect, actions, condition=None, principal=ROOT, sid=None):
    st = {"Effect": effect, "Principal": {"AWS": principal}, "Action": actions, "Resource": "*"}
    if condition:
        st["Condition"] = condition
    if sid:
        st["Sid"] = sid
    return st


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_ALL = statement("Allow", "kms:*", sid="Enable IAM User Permissions")


class KmsAuthzTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def new_key(self, **kw):
        return self.kms.create_key(**kw)["KeyMetadata"]

    # ---- key policies ---------------------------------------------------------------------

    def test_default_policy_and_listing(self):
        md = self.new_key()
        got = self.kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")
        policy = json.loads(got["Policy"])
        self.assertEqual(policy["Id"], "key-default-1")
        self.assertEqual(policy["Statement"], [{
            "Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": ROOT},
            "Action": "kms:*", "Resource": "*"}])
        self.assertEqual(self.kms.list_key_policies(KeyId=md["KeyId"])["PolicyNames"], ["default"])
        code, msg = self.error(self.kms.get_key_policy, KeyId=md["KeyId"], PolicyName="other")
        self.assertEqual((code, msg), ("NotFoundException", "No such policy exists"))
        # The CLI prints the same policy text.
        rc, out, err = self.server.aws("kms", "get-key-policy", "--key-id", md["KeyId"], "--policy-name", "default")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out["Policy"]), policy)

    def test_deny_encrypt_for_root(self):
        md = self.new_key()
        arn = md["Arn"]
        blob = self.kms.encrypt(KeyId=arn, Plaintext=b"before")["CiphertextBlob"]
        self.kms.put_key_policy(KeyId=arn, PolicyName="default",
                                Policy=doc(ALLOW_ALL, statement("Deny", "kms:Encrypt")))
        code, msg = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"x")
        self.assertEqual(code, "AccessDeniedException")
        self.assertEqual(msg, "User: %s is not authorized to perform: kms:Encrypt on resource: %s "
                              "with an explicit deny in a resource-based policy" % (ROOT, arn))
        # Decrypt is still allowed, at once.
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"before")
        rc, _, err = self.server.aws("kms", "encrypt", "--key-id", arn, "--plaintext", base64.b64encode(b"x").decode())
        self.assertNotEqual(rc, 0)
        self.assertIn("AccessDeniedException", err)
        self.assertIn("with an explicit deny in a resource-based policy", err)
        # Lifting the deny takes effect immediately too.
        self.kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=doc(ALLOW_ALL))
        self.kms.encrypt(KeyId=arn, Plaintext=b"x")

    def test_policy_without_root_denies_everything_else(self):
        md = self.new_key(Policy=doc(statement("Allow", ["kms:PutKeyPolicy", "kms:GetKeyPolicy"])))
        code, msg = self.error(self.kms.encrypt, KeyId=md["KeyId"], Plaintext=b"x")
        self.assertEqual(code, "AccessDeniedException")
        self.assertTrue(msg.endswith("because no resource-based policy allows the kms:Encrypt action"), msg)
        code, _ = self.error(self.kms.describe_key, KeyId=md["KeyId"])
        self.assertEqual(code, "AccessDeniedException")
        self.kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")

    def test_encryption_context_condition(self):
        pol = doc(statement("Allow", ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey"]),
                  statement("Allow", ["kms:Encrypt", "kms:Decrypt"],
                            {"StringEquals": {"kms:EncryptionContext:Department": "IT"}}))
        arn = self.new_key(Policy=pol)["Arn"]
        blob = self.kms.encrypt(KeyId=arn, Plaintext=b"p", EncryptionContext={"Department": "IT"})["CiphertextBlob"]
        code, _ = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"p", EncryptionContext={"Department": "HR"})
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"p")
        self.assertEqual(code, "AccessDeniedException")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"Department": "IT"})["Plaintext"],
                         b"p")
        rc, out, err = self.server.aws("kms", "encrypt", "--key-id", arn, "--plaintext",
                                       base64.b64encode(b"p").decode(), "--encryption-context", "Department=IT")
        self.assertEqual(rc, 0, err)

    def test_source_ip_condition(self):
        admin = statement("Allow", ["kms:PutKeyPolicy", "kms:GetKeyPolicy"])
        arn = self.new_key(Policy=doc(admin, statement("Allow", "kms:Encrypt",
                                                       {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}})))["Arn"]
        self.kms.encrypt(KeyId=arn, Plaintext=b"p")
        self.kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=doc(admin, statement(
            "Allow", "kms:Encrypt", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))
        code, _ = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"p")
        self.assertEqual(code, "AccessDeniedException")
        # kms:CallerAccount is the caller's account.
        self.kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=doc(admin, statement(
            "Allow", "kms:Encrypt", {"StringEquals": {"kms:CallerAccount": ACCOUNT}})))
        self.kms.encrypt(KeyId=arn, Plaintext=b"p")

    def test_lockout_check_and_bypass(self):
        md = self.new_key()
        locked = doc(statement("Allow", "kms:Encrypt"))
        code, msg = self.error(self.kms.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=locked)
        self.assertEqual(code, "MalformedPolicyDocumentException")
        self.assertEqual(msg, "The new key policy will not allow you to update the key policy in the future.")
        code, _ = self.error(self.kms.create_key, Policy=locked)
        self.assertEqual(code, "MalformedPolicyDocumentException")
        rc, _, err = self.server.aws("kms", "put-key-policy", "--key-id", md["KeyId"], "--policy-name", "default",
                                     "--policy", locked)
        self.assertNotEqual(rc, 0)
        self.assertIn("MalformedPolicyDocumentException", err)
        # With the bypass the key is locked for good: not even GetKeyPolicy any more.
        self.kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=locked,
                                BypassPolicyLockoutSafetyCheck=True)
        code, _ = self.error(self.kms.get_key_policy, KeyId=md["KeyId"], PolicyName="default")
        self.assertEqual(code, "AccessDeniedException")
        self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"still")
        md2 = self.new_key(Policy=locked, BypassPolicyLockoutSafetyCheck=True)
        self.kms.encrypt(KeyId=md2["KeyId"], Plaintext=b"x")

    def test_malformed_policies(self):
        md = self.new_key()
        for bad in ("not json", '{"Statement":[]}',
                    json.dumps({"Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}),  # no Principal
                    json.dumps({"Version": "2012-10-17", "Statement": [
                        {"Effect": "Maybe", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}]})):
            code, msg = self.error(self.kms.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=bad)
            self.assertEqual(code, "MalformedPolicyDocumentException", bad)
            self.assertTrue(msg, bad)
            code, _ = self.error(self.kms.create_key, Policy=bad)
            self.assertEqual(code, "MalformedPolicyDocumentException", bad)
        # A good one is kept verbatim.
        good = doc(ALLOW_ALL)
        self.kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=good)
        self.assertEqual(self.kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"], good)

    # ---- grants ---------------------------------------------------------------------------

    def test_grant_lifecycle(self):
        md = self.new_key()
        key = md["KeyId"]
        # A grantee must exist (grants bind to its unique id).
        grantee = self.server.client("iam").create_user(UserName="app")["User"]["Arn"]
        retiring = ROOT
        g = self.kms.create_grant(KeyId=key, GranteePrincipal=grantee, RetiringPrincipal=retiring,
                                  Operations=["Decrypt", "Encrypt"], Name="app-grant",
                                  Constraints={"EncryptionContextSubset": {"Department": "IT"}})
        self.assertEqual(len(g["GrantId"]), 64)
        self.assertTrue(g["GrantToken"])
        # Same name and parameters: same grant.
        again = self.kms.create_grant(KeyId=key, GranteePrincipal=grantee, RetiringPrincipal=retiring,
                                      Operations=["Encrypt", "Decrypt"], Name="app-grant",
                                      Constraints={"EncryptionContextSubset": {"Department": "IT"}})
        self.assertEqual(again["GrantId"], g["GrantId"])
        listed = self.kms.list_grants(KeyId=key)["Grants"]
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0]["GranteePrincipal"], grantee)
        self.assertEqual(listed[0]["RetiringPrincipal"], retiring)
        self.assertEqual(sorted(listed[0]["Operations"]), ["Decrypt", "Encrypt"])
        self.assertEqual(listed[0]["Constraints"], {"EncryptionContextSubset": {"Department": "IT"}})
        self.assertEqual(listed[0]["KeyId"], md["Arn"])
        self.assertEqual(listed[0]["Name"], "app-grant")
        # A grant token is accepted on a request at once; garbage is refused.
        self.kms.encrypt(KeyId=key, Plaintext=b"x", GrantTokens=[g["GrantToken"]])
        code, _ = self.error(self.kms.encrypt, KeyId=key, Plaintext=b"x", GrantTokens=["garbage"])
        self.assertEqual(code, "InvalidGrantTokenException")
        # Retirable grants of the retiring principal.
        retirable = self.kms.list_retirable_grants(RetiringPrincipal=retiring)["Grants"]
        self.assertIn(g["GrantId"], [x["GrantId"] for x in retirable])
        # A second grant revoked, the first retired by token.
        g2 = self.kms.create_grant(KeyId=key, GranteePrincipal=grantee, Operations=["DescribeKey"])
        self.assertEqual(len(self.kms.list_grants(KeyId=key)["Grants"]), 2)
        self.assertEqual(len(self.kms.list_grants(KeyId=key, GrantId=g2["GrantId"])["Grants"]), 1)
        page = self.kms.list_grants(KeyId=key, Limit=1)
        self.assertTrue(page["Truncated"])
        rest = self.kms.list_grants(KeyId=key, Limit=1, Marker=page["NextMarker"])
        self.assertFalse(rest["Truncated"])
        self.assertNotEqual(page["Grants"][0]["GrantId"], rest["Grants"][0]["GrantId"])
        self.kms.revoke_grant(KeyId=key, GrantId=g2["GrantId"])
        code, _ = self.error(self.kms.revoke_grant, KeyId=key, GrantId=g2["GrantId"])
        self.assertEqual(code, "NotFoundException")
        self.kms.retire_grant(GrantToken=g["GrantToken"])
        self.assertEqual(self.kms.list_grants(KeyId=key)["Grants"], [])
        code, _ = self.error(self.kms.retire_grant, GrantToken="not-a-token")
        self.assertEqual(code, "InvalidGrantTokenException")
        code, _ = self.error(self.kms.revoke_grant, KeyId=key, GrantId="nope")
        self.assertEqual(code, "InvalidGrantIdException")

    def test_grant_cli(self):
        md = self.new_key()
        self.server.client("iam").create_role(RoleName="worker", AssumeRolePolicyDocument=doc(
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sts:AssumeRole"}))
        rc, out, err = self.server.aws("kms", "create-grant", "--key-id", md["KeyId"], "--grantee-principal",
                                       "arn:aws:iam::%s:role/worker" % ACCOUNT, "--operations", "Decrypt",
                                       "GenerateDataKey", "--retiring-principal", ROOT)
        self.assertEqual(rc, 0, err)
        gid = out["GrantId"]
        rc, out, err = self.server.aws("kms", "list-grants", "--key-id", md["KeyId"])
        self.assertEqual(rc, 0, err)
        self.assertEqual([x["GrantId"] for x in out["Grants"]], [gid])
        rc, out, err = self.server.aws("kms", "list-retirable-grants", "--retiring-principal", ROOT)
        self.assertEqual(rc, 0, err)
        self.assertIn(gid, [x["GrantId"] for x in out["Grants"]])
        rc, _, err = self.server.aws("kms", "retire-grant", "--key-id", md["Arn"], "--grant-id", gid)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.server.aws("kms", "list-grants", "--key-id", md["KeyId"])
        self.assertEqual(out["Grants"], [])

    def test_grant_validation(self):
        key = self.new_key()["KeyId"]
        code, _ = self.error(self.kms.create_grant, KeyId=key, GranteePrincipal=ROOT, Operations=["Sign"])
        self.assertEqual(code, "ValidationException")
        code, _ = self.error(self.kms.create_grant, KeyId=key, GranteePrincipal="bob", Operations=["Decrypt"])
        self.assertEqual(code, "ValidationException")
        code, _ = self.error(self.kms.retire_grant, GrantId="a" * 64)
        self.assertEqual(code, "ValidationException")
        self.assertEqual(self.kms.list_grants(KeyId=key)["Grants"], [])

    def test_grant_allows_despite_key_policy(self):
        """A grant lets its grantee (here the root itself) use a key whose policy does not."""
        admin = statement("Allow", ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:CreateGrant", "kms:ListGrants",
                                    "kms:RevokeGrant"])
        arn = self.new_key(Policy=doc(admin))["Arn"]
        code, _ = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"x")
        self.assertEqual(code, "AccessDeniedException")
        g = self.kms.create_grant(KeyId=arn, GranteePrincipal=ROOT, Operations=["Encrypt", "Decrypt"],
                                  Constraints={"EncryptionContextEquals": {"app": "a"}})
        blob = self.kms.encrypt(KeyId=arn, Plaintext=b"x", EncryptionContext={"app": "a"})["CiphertextBlob"]
        code, _ = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"x", EncryptionContext={"app": "b"})
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.error(self.kms.encrypt, KeyId=arn, Plaintext=b"x",
                             EncryptionContext={"app": "a", "extra": "1"})
        self.assertEqual(code, "AccessDeniedException")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "a"})["Plaintext"], b"x")
        self.kms.revoke_grant(KeyId=arn, GrantId=g["GrantId"])
        code, _ = self.error(self.kms.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "a"})
        self.assertEqual(code, "AccessDeniedException")

    # ---- other principals (IAM users with their own access keys) ---------------------------

    def iam_user(self, name, policy=None):
        """Creates an IAM user with an access key (and an inline policy) and returns
        (user ARN, KMS client as that user). Any IAM failure fails the test."""
        iam = self.server.client("iam")
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return arn, self.server.client(akid=key["AccessKeyId"], secret=key["SecretAccessKey"])

    def test_user_needs_identity_policy(self):
        md = self.new_key()
        other = self.new_key()
        arn, kms = self.iam_user("authz-nopolicy")
        code, msg = self.error(kms.encrypt, KeyId=md["Arn"], Plaintext=b"x")
        self.assertEqual(code, "AccessDeniedException")
        self.assertEqual(msg, "User: %s is not authorized to perform: kms:Encrypt on resource: %s because no "
                              "identity-based policy allows the kms:Encrypt action" % (arn, md["Arn"]))
        arn2, kms2 = self.iam_user("authz-onekey", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": md["Arn"]}]})
        kms2.encrypt(KeyId=md["Arn"], Plaintext=b"x")
        code, _ = self.error(kms2.encrypt, KeyId=other["Arn"], Plaintext=b"x")
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.error(kms2.decrypt, CiphertextBlob=self.kms.encrypt(KeyId=md["Arn"], Plaintext=b"x")[
            "CiphertextBlob"])
        self.assertEqual(code, "AccessDeniedException")

    def test_grant_for_another_principal(self):
        md = self.new_key()
        arn, kms = self.iam_user("authz-grantee")
        blob = self.kms.encrypt(KeyId=md["Arn"], Plaintext=b"secret",
                                EncryptionContext={"Department": "IT"})["CiphertextBlob"]
        other = self.kms.encrypt(KeyId=md["Arn"], Plaintext=b"secret",
                                 EncryptionContext={"Department": "HR"})["CiphertextBlob"]
        code, _ = self.error(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"Department": "IT"})
        self.assertEqual(code, "AccessDeniedException")
        g = self.kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=arn, RetiringPrincipal=arn,
                                  Operations=["Decrypt"],
                                  Constraints={"EncryptionContextSubset": {"Department": "IT"}})
        # Honoured at once, with or without the token.
        got = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"Department": "IT"}, GrantTokens=[g["GrantToken"]])
        self.assertEqual(got["Plaintext"], b"secret")
        self.assertEqual(kms.decrypt(CiphertextBlob=blob, EncryptionContext={"Department": "IT"})["Plaintext"],
                         b"secret")
        code, _ = self.error(kms.decrypt, CiphertextBlob=other, EncryptionContext={"Department": "HR"})
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.error(kms.encrypt, KeyId=md["Arn"], Plaintext=b"x", EncryptionContext={"Department": "IT"})
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn(g["GrantId"], [x["GrantId"] for x in self.kms.list_retirable_grants(RetiringPrincipal=arn)["Grants"]])
        # The grantee retires its own grant (it is the retiring principal): access ends at once.
        kms.retire_grant(GrantToken=g["GrantToken"])
        code, _ = self.error(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"Department": "IT"})
        self.assertEqual(code, "AccessDeniedException")
        # Revocation by the key's account, likewise.
        g2 = self.kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=arn, Operations=["Decrypt"])
        kms.decrypt(CiphertextBlob=other, EncryptionContext={"Department": "HR"})
        self.kms.revoke_grant(KeyId=md["KeyId"], GrantId=g2["GrantId"])
        code, _ = self.error(kms.decrypt, CiphertextBlob=other, EncryptionContext={"Department": "HR"})
        self.assertEqual(code, "AccessDeniedException")


class KmsAuthzOffTest(ServerTestCase):
    """--authorization off: key policies are stored but not enforced."""
    extra_args = ("--quota-crypto-rps", "0", "--authorization", "off")

    def test_policy_not_enforced(self):
        kms = self.server.client()
        arn = kms.create_key()["KeyMetadata"]["Arn"]
        kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=doc(ALLOW_ALL, statement("Deny", "kms:Encrypt")))
        kms.encrypt(KeyId=arn, Plaintext=b"x")


if __name__ == "__main__":
    unittest.main()
