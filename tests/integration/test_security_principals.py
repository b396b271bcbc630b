"""Principals are bound by their unique id, not by name, against a live cofferd through boto3:
a user or role deleted and re-created under the same name does not inherit what key policies,
grants and trust policies gave the old one; a session ends with its role; key policies, grants
and trust policies naming a principal that does not exist are refused.
"""
import json
import os
import re
import sqlite3
import subprocess
import unittest

from botocore.exceptions import ClientError

from harness import AWS, Cofferd, ServerTestCase, write_in_clear

ACCOUNT = "000000000000"
ROOT = "arn:aws:iam::%s:root" % ACCOUNT
UID = re.compile(r"^(AIDA|AROA)[A-Z2-7]{17}$")


def key_policy(*extra):
    st = [{"Sid": "root", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}]
    st += list(extra)
    return json.dumps({"Version": "2012-10-17", "Statement": st})


def allow_for(arn, actions=("kms:Encrypt", "kms:Decrypt")):
    return {"Sid": "named", "Effect": "Allow", "Principal": {"AWS": arn}, "Action": list(actions), "Resource": "*"}


def trust(principal):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
                                      "Action": "sts:AssumeRole"}]})


ALLOW_KMS = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})


class PrincipalBindingTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()
        self.iam = self.server.client("iam")

    def code(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def user(self, name):
        u = self.iam.create_user(UserName=name)["User"]
        k = self.iam.create_access_key(UserName=name)["AccessKey"]
        return u, self.server.client(akid=k["AccessKeyId"], secret=k["SecretAccessKey"]), k["AccessKeyId"]

    def drop_user(self, name, akid):
        self.iam.delete_access_key(UserName=name, AccessKeyId=akid)
        self.iam.delete_user(UserName=name)

    # ---- unique ids ----------------------------------------------------------------------------

    def test_unique_ids_returned(self):
        u = self.iam.create_user(UserName="uid-user")["User"]
        self.assertRegex(u["UserId"], UID)
        self.assertTrue(u["UserId"].startswith("AIDA"))
        self.assertEqual(self.iam.get_user(UserName="uid-user")["User"]["UserId"], u["UserId"])
        r = self.iam.create_role(RoleName="uid-role", AssumeRolePolicyDocument=trust(ROOT))["Role"]
        self.assertTrue(r["RoleId"].startswith("AROA"))
        self.assertRegex(r["RoleId"], UID)
        self.assertEqual(self.iam.get_role(RoleName="uid-role")["Role"]["RoleId"], r["RoleId"])
        self.iam.delete_user(UserName="uid-user")
        u2 = self.iam.create_user(UserName="uid-user")["User"]
        self.assertNotEqual(u2["UserId"], u["UserId"])

    # ---- key policies --------------------------------------------------------------------------

    def test_key_policy_does_not_match_recreated_user(self):
        u, c, akid = self.user("kp-alice")
        key = self.kms.create_key(Policy=key_policy(allow_for(u["Arn"])))["KeyMetadata"]["KeyId"]
        blob = c.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        self.assertEqual(c.decrypt(CiphertextBlob=blob)["Plaintext"], b"x")
        self.drop_user("kp-alice", akid)
        # The stored policy now shows the unique id of the deleted user, as AWS does.
        shown = json.loads(self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        self.assertEqual(shown["Statement"][1]["Principal"]["AWS"], u["UserId"])
        u2, c2, akid2 = self.user("kp-alice")
        self.assertEqual(u2["Arn"], u["Arn"])
        code, _ = self.code(c2.decrypt, CiphertextBlob=blob)
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.code(c2.encrypt, KeyId=key, Plaintext=b"y")
        self.assertEqual(code, "AccessDeniedException")
        # Naming the new user binds the new id.
        self.kms.put_key_policy(KeyId=key, PolicyName="default", Policy=key_policy(allow_for(u2["Arn"])))
        self.assertEqual(c2.decrypt(CiphertextBlob=blob)["Plaintext"], b"x")
        shown = json.loads(self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        self.assertEqual(shown["Statement"][1]["Principal"]["AWS"], u2["Arn"])
        self.drop_user("kp-alice", akid2)

    def test_key_policy_naming_missing_principal_refused(self):
        for arn in ("arn:aws:iam::%s:user/nobody-here" % ACCOUNT, "arn:aws:iam::%s:role/no-role-here" % ACCOUNT):
            code, msg = self.code(self.kms.create_key, Policy=key_policy(allow_for(arn)))
            self.assertEqual(code, "MalformedPolicyDocumentException")
            self.assertEqual(msg, "Policy contains a statement with one or more invalid principals.")
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        code, msg = self.code(self.kms.put_key_policy, KeyId=key, PolicyName="default",
                              Policy=key_policy(allow_for("arn:aws:iam::%s:user/nobody-here" % ACCOUNT)))
        self.assertEqual(code, "MalformedPolicyDocumentException")
        self.assertEqual(msg, "Policy contains a statement with one or more invalid principals.")
        # Accounts, "*" and service principals are not bound.
        ok = {"Sid": "svc", "Effect": "Allow", "Principal": {"AWS": ["*", "111122223333"],
                                                                 "Service": "logs.amazonaws.com"},
              "Action": "kms:Decrypt", "Resource": "*"}
        self.kms.put_key_policy(KeyId=key, PolicyName="default", Policy=key_policy(ok))

    # ---- grants --------------------------------------------------------------------------------

    def test_grant_does_not_match_recreated_user(self):
        u, c, akid = self.user("gr-bob")
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        blob = self.kms.encrypt(KeyId=key, Plaintext=b"g")["CiphertextBlob"]
        self.kms.create_grant(KeyId=key, GranteePrincipal=u["Arn"], Operations=["Decrypt"])
        self.assertEqual(c.decrypt(CiphertextBlob=blob)["Plaintext"], b"g")
        self.drop_user("gr-bob", akid)
        listed = self.kms.list_grants(KeyId=key)["Grants"]
        self.assertEqual(listed[0]["GranteePrincipal"], u["UserId"])
        u2, c2, akid2 = self.user("gr-bob")
        code, _ = self.code(c2.decrypt, CiphertextBlob=blob)
        self.assertEqual(code, "AccessDeniedException")
        self.drop_user("gr-bob", akid2)

    def test_grant_retiring_principal_bound(self):
        u, c, akid = self.user("gr-ret")
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        g = self.kms.create_grant(KeyId=key, GranteePrincipal=ROOT, RetiringPrincipal=u["Arn"],
                                  Operations=["Decrypt"])
        self.drop_user("gr-ret", akid)
        u2, c2, akid2 = self.user("gr-ret")
        code, _ = self.code(c2.retire_grant, KeyId=key, GrantId=g["GrantId"])
        self.assertEqual(code, "AccessDeniedException")
        self.drop_user("gr-ret", akid2)

    def test_grant_naming_missing_principal_refused(self):
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        for kw in ({"GranteePrincipal": "arn:aws:iam::%s:user/ghost" % ACCOUNT},
                   {"GranteePrincipal": ROOT, "RetiringPrincipal": "arn:aws:iam::%s:role/ghost" % ACCOUNT}):
            code, _ = self.code(self.kms.create_grant, KeyId=key, Operations=["Decrypt"], **kw)
            self.assertEqual(code, "InvalidArnException")
        self.assertEqual(self.kms.list_grants(KeyId=key)["Grants"], [])

    # ---- roles, trust policies and sessions ----------------------------------------------------

    def session(self, role_arn, name):
        sts = self.server.client("sts")
        c = sts.assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
        return self.server.client(akid=c["AccessKeyId"], secret=c["SecretAccessKey"],
                                  aws_session_token=c["SessionToken"])

    def drop_role(self, name):
        self.iam.delete_role_policy(RoleName=name, PolicyName="kms")
        self.iam.delete_role(RoleName=name)

    def test_session_ends_with_its_role(self):
        role = self.iam.create_role(RoleName="sess-role", AssumeRolePolicyDocument=trust(ROOT))["Role"]
        self.iam.put_role_policy(RoleName="sess-role", PolicyName="kms", PolicyDocument=ALLOW_KMS)
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        s = self.session(role["Arn"], "s1")
        s.encrypt(KeyId=key, Plaintext=b"s")
        self.drop_role("sess-role")
        code, _ = self.code(s.encrypt, KeyId=key, Plaintext=b"s")
        self.assertIn(code, ("UnrecognizedClientException", "AccessDeniedException"))
        role2 = self.iam.create_role(RoleName="sess-role", AssumeRolePolicyDocument=trust(ROOT))["Role"]
        self.iam.put_role_policy(RoleName="sess-role", PolicyName="kms", PolicyDocument=ALLOW_KMS)
        self.assertNotEqual(role2["RoleId"], role["RoleId"])
        code, _ = self.code(s.encrypt, KeyId=key, Plaintext=b"s")
        self.assertEqual(code, "UnrecognizedClientException")
        # A new session of the new role works.
        self.session(role2["Arn"], "s2").encrypt(KeyId=key, Plaintext=b"s")
        self.drop_role("sess-role")

    def test_session_of_deleted_role_refused_at_authentication(self):
        # Every service refuses the session, including GetCallerIdentity, which no policy governs.
        role = self.iam.create_role(RoleName="gone-role", AssumeRolePolicyDocument=trust(ROOT))["Role"]
        self.iam.put_role_policy(RoleName="gone-role", PolicyName="kms", PolicyDocument=ALLOW_KMS)
        c = self.server.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="gone")["Credentials"]
        creds = dict(akid=c["AccessKeyId"], secret=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
        sts = self.server.client("sts", **creds)
        self.assertEqual(sts.get_caller_identity()["Arn"],
                         "arn:aws:sts::%s:assumed-role/gone-role/gone" % ACCOUNT)
        self.drop_role("gone-role")
        code, msg = self.code(sts.get_caller_identity)
        self.assertEqual((code, msg), ("InvalidClientTokenId", "The security token included in the request is invalid."))
        code, _ = self.code(self.server.client("iam", **creds).list_users)
        self.assertEqual(code, "InvalidClientTokenId")
        code, _ = self.code(self.server.client(**creds).list_keys)
        self.assertEqual(code, "UnrecognizedClientException")
        # A role of the same name is another role: the old session stays refused everywhere.
        role2 = self.iam.create_role(RoleName="gone-role", AssumeRolePolicyDocument=trust(ROOT))["Role"]
        self.iam.put_role_policy(RoleName="gone-role", PolicyName="kms", PolicyDocument=ALLOW_KMS)
        self.assertNotEqual(role2["RoleId"], role["RoleId"])
        code, _ = self.code(sts.get_caller_identity)
        self.assertEqual(code, "InvalidClientTokenId")
        code, _ = self.code(self.server.client(**creds).list_keys)
        self.assertEqual(code, "UnrecognizedClientException")
        # The CLI sees the same refusal.
        env = self.server.env()
        env.update({"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
                    "AWS_SESSION_TOKEN": c["SessionToken"]})
        r = subprocess.run([AWS, "--endpoint-url", self.server.endpoint, "sts", "get-caller-identity"], env=env,
                           capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("InvalidClientTokenId", r.stderr.decode())
        # A new session of the new role answers.
        s2 = self.server.client("sts").assume_role(RoleArn=role2["Arn"], RoleSessionName="back")["Credentials"]
        who = self.server.client("sts", akid=s2["AccessKeyId"], secret=s2["SecretAccessKey"],
                                 aws_session_token=s2["SessionToken"]).get_caller_identity()
        self.assertEqual(who["UserId"], "%s:back" % role2["RoleId"])
        self.drop_role("gone-role")

    def test_key_policy_role_recreated(self):
        role = self.iam.create_role(RoleName="kp-role", AssumeRolePolicyDocument=trust(ROOT))["Role"]
        key = self.kms.create_key(Policy=key_policy(allow_for(role["Arn"])))["KeyMetadata"]["KeyId"]
        self.session(role["Arn"], "aa").encrypt(KeyId=key, Plaintext=b"r")
        self.iam.delete_role(RoleName="kp-role")
        shown = json.loads(self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        self.assertEqual(shown["Statement"][1]["Principal"]["AWS"], role["RoleId"])
        self.iam.create_role(RoleName="kp-role", AssumeRolePolicyDocument=trust(ROOT))
        code, _ = self.code(self.session(role["Arn"], "bb").encrypt, KeyId=key, Plaintext=b"r")
        self.assertEqual(code, "AccessDeniedException")
        self.iam.delete_role(RoleName="kp-role")

    def test_trust_policy_bound_and_validated(self):
        code, msg = self.code(self.iam.create_role, RoleName="tr-bad",
                              AssumeRolePolicyDocument=trust("arn:aws:iam::%s:user/ghost" % ACCOUNT))
        self.assertEqual(code, "MalformedPolicyDocument")
        self.assertIn("Invalid principal in policy", msg)
        u = self.iam.create_user(UserName="tr-user")["User"]
        self.iam.create_role(RoleName="tr-role", AssumeRolePolicyDocument=trust(u["Arn"]))
        self.iam.delete_user(UserName="tr-user")
        self.iam.create_user(UserName="tr-user")
        k = self.iam.create_access_key(UserName="tr-user")["AccessKey"]
        sts = self.server.client("sts", akid=k["AccessKeyId"], secret=k["SecretAccessKey"])
        role_arn = "arn:aws:iam::%s:role/tr-role" % ACCOUNT
        code, _ = self.code(sts.assume_role, RoleArn=role_arn, RoleSessionName="tt")
        self.assertEqual(code, "AccessDenied")
        doc = self.iam.get_role(RoleName="tr-role")["Role"]["AssumeRolePolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc  # boto3 decodes the URL-encoded JSON
        self.assertEqual(doc["Statement"][0]["Principal"]["AWS"], u["UserId"])
        listed = [r for r in self.iam.list_roles()["Roles"] if r["RoleName"] == "tr-role"][0]
        doc = listed["AssumeRolePolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        self.assertEqual(doc["Statement"][0]["Principal"]["AWS"], u["UserId"])


class LegacyRecordsTest(unittest.TestCase):
    """Key policies and grants stored before principals were bound get their binding at start."""

    def strip_bindings(self, data_dir):
        write_in_clear(data_dir)
        db = sqlite3.connect(os.path.join(data_dir, "coffer.db"))
        n = 0
        for key, value in db.execute("SELECT key, value FROM kv WHERE key LIKE 'kms/key/%' OR key LIKE 'kms/grant/%'"):
            try:
                rec = json.loads(value)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            stripped = {k: v for k, v in rec.items()
                        if k not in ("PolicyPrincipals", "_GranteePrincipalId", "_RetiringPrincipalId")}
            if stripped != rec:
                db.execute("UPDATE kv SET value = ? WHERE key = ?",
                           (json.dumps(stripped, separators=(",", ":"), sort_keys=True).encode(), key))
                n += 1
        db.commit()
        db.close()
        return n

    def test_records_without_binding_are_bound_at_start(self):
        server = Cofferd().start()
        try:
            kms, iam = server.client(), server.client("iam")
            u = iam.create_user(UserName="legacy")["User"]
            akid = iam.create_access_key(UserName="legacy")["AccessKey"]["AccessKeyId"]
            k1 = kms.create_key(Policy=key_policy(allow_for(u["Arn"])))["KeyMetadata"]["KeyId"]
            k2 = kms.create_key()["KeyMetadata"]["KeyId"]
            blob = kms.encrypt(KeyId=k2, Plaintext=b"l")["CiphertextBlob"]
            kms.create_grant(KeyId=k2, GranteePrincipal=u["Arn"], Operations=["Decrypt"])
            server.stop()
            self.assertGreaterEqual(self.strip_bindings(server.data_dir), 2)
            server.start()
            iam = server.client("iam")
            iam.delete_access_key(UserName="legacy", AccessKeyId=akid)
            iam.delete_user(UserName="legacy")
            iam.create_user(UserName="legacy")
            k = iam.create_access_key(UserName="legacy")["AccessKey"]
            c = server.client(akid=k["AccessKeyId"], secret=k["SecretAccessKey"])
            for fn, kw in ((c.encrypt, {"KeyId": k1, "Plaintext": b"x"}), (c.decrypt, {"CiphertextBlob": blob})):
                with self.assertRaises(ClientError) as cm:
                    fn(**kw)
                self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDeniedException")
            shown = json.loads(server.client().get_key_policy(KeyId=k1, PolicyName="default")["Policy"])
            self.assertEqual(shown["Statement"][1]["Principal"]["AWS"], u["UserId"])
        finally:
            server.stop()
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
