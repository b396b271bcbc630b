"""IAM, STS and `coffer admin` through real clients: /usr/bin/aws and boto3 against a live cofferd."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from botocore.exceptions import ClientError

from harness import AWS, COFFER, REGION, Cofferd, ServerTestCase

ACCOUNT = "000000000000"

ALLOW_ALL_KMS = json.dumps({"Version": "2012-10-17",
                            "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})


def allow(action, resource="*"):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


def trust(principal):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
                                      "Action": "sts:AssumeRole"}]})


class IamBase(ServerTestCase):

    def ok(self, *args):
        rc, out, err = self.server.aws(*args)
        self.assertEqual(rc, 0, "aws %s: %s" % (" ".join(args), err))
        return out

    def fails(self, code, *args):
        rc, out, err = self.server.aws(*args)
        self.assertNotEqual(rc, 0, "aws %s unexpectedly succeeded" % " ".join(args))
        self.assertIn(code, err, err)
        return err

    def aws_as(self, creds, *args):
        """The CLI with explicit credentials (akid, secret[, token]); returns (rc, json, stderr)."""
        env = self.server.env()
        for k in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.pop(k, None)
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = creds[0], creds[1]
        if len(creds) > 2 and creds[2]:
            env["AWS_SESSION_TOKEN"] = creds[2]
        env["AWS_DEFAULT_REGION"] = REGION
        cmd = [AWS, "--endpoint-url", self.server.endpoint, "--output", "json"] + list(args)
        r = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
        out = json.loads(r.stdout) if r.stdout.strip() else None
        return r.returncode, out, r.stderr.decode()

    def iam(self, creds=None):
        if creds is None:
            return self.server.client("iam")
        return self.server.client("iam", akid=creds[0], secret=creds[1],
                                  aws_session_token=creds[2] if len(creds) > 2 else None)

    def sts(self, creds=None):
        if creds is None:
            return self.server.client("sts")
        return self.server.client("sts", akid=creds[0], secret=creds[1],
                                  aws_session_token=creds[2] if len(creds) > 2 else None)

    def new_user_with_key(self, name):
        self.ok("iam", "create-user", "--user-name", name)
        k = self.ok("iam", "create-access-key", "--user-name", name)["AccessKey"]
        return (k["AccessKeyId"], k["SecretAccessKey"])

    def code(self, ctx):
        return ctx.exception.response["Error"]["Code"]


class IamCliTest(IamBase):

    def test_users(self):
        u = self.ok("iam", "create-user", "--user-name", "cli-alice", "--path", "/dev/")["User"]
        self.assertEqual(u["Arn"], "arn:aws:iam::%s:user/dev/cli-alice" % ACCOUNT)
        self.assertTrue(u["UserId"].startswith("AIDA"))
        self.assertEqual(u["Path"], "/dev/")
        self.assertIn("CreateDate", u)
        got = self.ok("iam", "get-user", "--user-name", "cli-alice")["User"]
        self.assertEqual(got["UserId"], u["UserId"])
        names = [x["UserName"] for x in self.ok("iam", "list-users")["Users"]]
        self.assertIn("cli-alice", names)
        names = [x["UserName"] for x in self.ok("iam", "list-users", "--path-prefix", "/dev/")["Users"]]
        self.assertEqual(names, ["cli-alice"])
        self.fails("EntityAlreadyExists", "iam", "create-user", "--user-name", "cli-alice")
        self.fails("EntityAlreadyExists", "iam", "create-user", "--user-name", "CLI-ALICE")  # names ignore case
        self.fails("NoSuchEntity", "iam", "get-user", "--user-name", "cli-nobody")
        self.fails("NoSuchEntity", "iam", "delete-user", "--user-name", "cli-nobody")
        self.fails("ValidationError", "iam", "create-user", "--user-name", "bad name!")
        self.ok("iam", "delete-user", "--user-name", "cli-alice")
        self.fails("NoSuchEntity", "iam", "get-user", "--user-name", "cli-alice")

    def test_access_keys(self):
        creds = self.new_user_with_key("cli-keys")
        k2 = self.ok("iam", "create-access-key", "--user-name", "cli-keys")["AccessKey"]
        self.fails("LimitExceeded", "iam", "create-access-key", "--user-name", "cli-keys")
        meta = self.ok("iam", "list-access-keys", "--user-name", "cli-keys")["AccessKeyMetadata"]
        self.assertEqual(sorted(m["AccessKeyId"] for m in meta), sorted([creds[0], k2["AccessKeyId"]]))
        self.assertTrue(all(m["Status"] == "Active" for m in meta))
        # The key works: GetCallerIdentity names the user.
        rc, who, err = self.aws_as(creds, "sts", "get-caller-identity")
        self.assertEqual(rc, 0, err)
        self.assertEqual(who["Arn"], "arn:aws:iam::%s:user/cli-keys" % ACCOUNT)
        self.assertEqual(who["Account"], ACCOUNT)
        self.assertTrue(who["UserId"].startswith("AIDA"))
        # Inactive: refused at once, on IAM/STS and on KMS.
        self.ok("iam", "update-access-key", "--user-name", "cli-keys", "--access-key-id", creds[0],
                "--status", "Inactive")
        rc, _, err = self.aws_as(creds, "sts", "get-caller-identity")
        self.assertNotEqual(rc, 0)
        self.assertIn("InvalidClientTokenId", err)
        rc, _, err = self.aws_as(creds, "kms", "list-keys")
        self.assertIn("UnrecognizedClientException", err)
        meta = {m["AccessKeyId"]: m["Status"]
                for m in self.ok("iam", "list-access-keys", "--user-name", "cli-keys")["AccessKeyMetadata"]}
        self.assertEqual(meta[creds[0]], "Inactive")
        self.ok("iam", "update-access-key", "--user-name", "cli-keys", "--access-key-id", creds[0],
                "--status", "Active")
        self.assertEqual(self.aws_as(creds, "sts", "get-caller-identity")[0], 0)
        # A user with keys cannot be deleted; a deleted key is refused at once.
        self.fails("DeleteConflict", "iam", "delete-user", "--user-name", "cli-keys")
        self.ok("iam", "delete-access-key", "--user-name", "cli-keys", "--access-key-id", creds[0])
        rc, _, err = self.aws_as(creds, "sts", "get-caller-identity")
        self.assertIn("InvalidClientTokenId", err)
        self.fails("NoSuchEntity", "iam", "delete-access-key", "--user-name", "cli-keys", "--access-key-id", creds[0])
        self.ok("iam", "delete-access-key", "--user-name", "cli-keys", "--access-key-id", k2["AccessKeyId"])
        self.ok("iam", "delete-user", "--user-name", "cli-keys")

    def test_user_policies_authorize_iam_calls(self):
        creds = self.new_user_with_key("cli-pol")
        rc, _, err = self.aws_as(creds, "iam", "list-users")
        self.assertNotEqual(rc, 0)
        self.assertIn("AccessDenied", err)
        self.assertIn("User: arn:aws:iam::%s:user/cli-pol is not authorized to perform: iam:ListUsers" % ACCOUNT, err)
        self.assertIn("because no identity-based policy allows the iam:ListUsers action", err)
        self.ok("iam", "put-user-policy", "--user-name", "cli-pol", "--policy-name", "list",
                "--policy-document", allow("iam:ListUsers"))
        rc, out, err = self.aws_as(creds, "iam", "list-users")
        self.assertEqual(rc, 0, err)
        self.assertIn("cli-pol", [u["UserName"] for u in out["Users"]])
        # Allowed to list, not to create.
        rc, _, err = self.aws_as(creds, "iam", "create-user", "--user-name", "cli-pol-2")
        self.assertIn("AccessDenied", err)
        doc = self.ok("iam", "get-user-policy", "--user-name", "cli-pol", "--policy-name", "list")
        self.assertEqual(doc["PolicyDocument"], json.loads(allow("iam:ListUsers")))
        self.assertEqual(self.ok("iam", "list-user-policies", "--user-name", "cli-pol")["PolicyNames"], ["list"])
        err = self.fails("MalformedPolicyDocument", "iam", "put-user-policy", "--user-name", "cli-pol",
                         "--policy-name", "bad", "--policy-document", '{"Version":"2012-10-17","Statement":[{}]}')
        self.fails("MalformedPolicyDocument", "iam", "put-user-policy", "--user-name", "cli-pol",
                   "--policy-name", "bad", "--policy-document", "not json")
        self.fails("NoSuchEntity", "iam", "put-user-policy", "--user-name", "cli-nobody", "--policy-name", "p",
                   "--policy-document", allow("iam:ListUsers"))
        self.fails("NoSuchEntity", "iam", "get-user-policy", "--user-name", "cli-pol", "--policy-name", "none")
        # A managed policy attached to the user grants CreateUser; an explicit Deny overrides.
        arn = self.ok("iam", "create-policy", "--policy-name", "cli-create-users",
                      "--policy-document", allow("iam:CreateUser"))["Policy"]["Arn"]
        self.assertEqual(arn, "arn:aws:iam::%s:policy/cli-create-users" % ACCOUNT)
        self.fails("EntityAlreadyExists", "iam", "create-policy", "--policy-name", "cli-create-users",
                   "--policy-document", allow("iam:CreateUser"))
        self.ok("iam", "attach-user-policy", "--user-name", "cli-pol", "--policy-arn", arn)
        att = self.ok("iam", "list-attached-user-policies", "--user-name", "cli-pol")["AttachedPolicies"]
        self.assertEqual(att, [{"PolicyName": "cli-create-users", "PolicyArn": arn}])
        self.assertEqual(self.ok("iam", "get-policy", "--policy-arn", arn)["Policy"]["AttachmentCount"], 1)
        self.fails("DeleteConflict", "iam", "delete-policy", "--policy-arn", arn)
        rc, out, err = self.aws_as(creds, "iam", "create-user", "--user-name", "cli-pol-made")
        self.assertEqual(rc, 0, err)
        self.ok("iam", "put-user-policy", "--user-name", "cli-pol", "--policy-name", "deny",
                "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Deny", "Action": "iam:CreateUser", "Resource": "*"}]}))
        rc, _, err = self.aws_as(creds, "iam", "create-user", "--user-name", "cli-pol-made-2")
        self.assertIn("explicit deny", err)
        self.fails("NoSuchEntity", "iam", "attach-user-policy", "--user-name", "cli-pol", "--policy-arn",
                   "arn:aws:iam::%s:policy/none" % ACCOUNT)
        self.ok("iam", "detach-user-policy", "--user-name", "cli-pol", "--policy-arn", arn)
        self.ok("iam", "delete-user-policy", "--user-name", "cli-pol", "--policy-name", "deny")
        rc, _, err = self.aws_as(creds, "iam", "create-user", "--user-name", "cli-pol-made-3")
        self.assertIn("AccessDenied", err)
        self.ok("iam", "delete-policy", "--policy-arn", arn)
        self.fails("NoSuchEntity", "iam", "get-policy", "--policy-arn", arn)

    def test_roles(self):
        r = self.ok("iam", "create-role", "--role-name", "cli-role", "--assume-role-policy-document",
                    trust("arn:aws:iam::%s:root" % ACCOUNT), "--max-session-duration", "7200")["Role"]
        self.assertEqual(r["Arn"], "arn:aws:iam::%s:role/cli-role" % ACCOUNT)
        self.assertTrue(r["RoleId"].startswith("AROA"))
        self.assertEqual(r["MaxSessionDuration"], 7200)
        self.assertEqual(r["AssumeRolePolicyDocument"], json.loads(trust("arn:aws:iam::%s:root" % ACCOUNT)))
        got = self.ok("iam", "get-role", "--role-name", "cli-role")["Role"]
        self.assertEqual(got["RoleId"], r["RoleId"])
        self.fails("EntityAlreadyExists", "iam", "create-role", "--role-name", "cli-role",
                   "--assume-role-policy-document", trust("*"))
        self.fails("MalformedPolicyDocument", "iam", "create-role", "--role-name", "cli-role-2",
                   "--assume-role-policy-document", allow("sts:AssumeRole"))  # a trust policy needs a Principal
        self.ok("iam", "put-role-policy", "--role-name", "cli-role", "--policy-name", "kms",
                "--policy-document", ALLOW_ALL_KMS)
        self.assertEqual(self.ok("iam", "get-role-policy", "--role-name", "cli-role", "--policy-name", "kms")
                         ["PolicyDocument"], json.loads(ALLOW_ALL_KMS))
        arn = self.ok("iam", "create-policy", "--policy-name", "cli-role-managed",
                      "--policy-document", ALLOW_ALL_KMS)["Policy"]["Arn"]
        self.ok("iam", "attach-role-policy", "--role-name", "cli-role", "--policy-arn", arn)
        self.assertEqual([p["PolicyArn"] for p in
                          self.ok("iam", "list-attached-role-policies", "--role-name", "cli-role")["AttachedPolicies"]],
                         [arn])
        self.fails("DeleteConflict", "iam", "delete-role", "--role-name", "cli-role")
        self.ok("iam", "detach-role-policy", "--role-name", "cli-role", "--policy-arn", arn)
        self.ok("iam", "delete-role-policy", "--role-name", "cli-role", "--policy-name", "kms")
        self.ok("iam", "delete-role", "--role-name", "cli-role")
        self.fails("NoSuchEntity", "iam", "get-role", "--role-name", "cli-role")

    def test_region_scope_and_unsigned(self):
        # IAM is global: any region in the credential scope; STS is regional.
        self.assertIn("Users", self.ok("--region", "eu-west-1", "iam", "list-users"))
        self.fails("SignatureDoesNotMatch", "--region", "eu-west-1", "sts", "get-caller-identity")
        # An unsigned Query request gets the Query error document.
        import ssl
        import urllib.error
        import urllib.request
        req = urllib.request.Request(self.server.endpoint + "/", data=b"Action=ListUsers&Version=2010-05-08",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, context=ssl.create_default_context(cafile=self.server.ca), timeout=30)
        self.assertEqual(cm.exception.code, 403)
        body = cm.exception.read().decode()
        self.assertIn("<ErrorResponse><Error><Type>Sender</Type><Code>MissingAuthenticationToken</Code>", body)
        self.assertIn("<RequestId>", body)

    def test_caller_identity_root(self):
        who = self.ok("sts", "get-caller-identity")
        self.assertEqual(who, {"UserId": ACCOUNT, "Account": ACCOUNT, "Arn": "arn:aws:iam::%s:root" % ACCOUNT})


class StsBoto3Test(IamBase):

    def test_assume_role_named_principal(self):
        iam = self.iam()
        iam.create_user(UserName="b3-direct")
        k = iam.create_access_key(UserName="b3-direct")["AccessKey"]
        user = (k["AccessKeyId"], k["SecretAccessKey"])
        role = iam.create_role(RoleName="b3-direct-role", MaxSessionDuration=3600,
                               AssumeRolePolicyDocument=trust("arn:aws:iam::%s:user/b3-direct" % ACCOUNT))["Role"]
        iam.put_role_policy(RoleName="b3-direct-role", PolicyName="kms", PolicyDocument=ALLOW_ALL_KMS)
        # Same account, the trust policy names the user: no identity policy needed.
        out = self.sts(user).assume_role(RoleArn=role["Arn"], RoleSessionName="sess-1", DurationSeconds=900)
        c = out["Credentials"]
        self.assertTrue(c["AccessKeyId"].startswith("ASIA"))
        self.assertTrue(c["SessionToken"])
        self.assertEqual(out["AssumedRoleUser"]["Arn"], "arn:aws:sts::%s:assumed-role/b3-direct-role/sess-1" % ACCOUNT)
        self.assertEqual(out["AssumedRoleUser"]["AssumedRoleId"], role["RoleId"] + ":sess-1")
        temp = (c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        who = self.sts(temp).get_caller_identity()
        self.assertEqual(who["Arn"], out["AssumedRoleUser"]["Arn"])
        self.assertEqual(who["UserId"], role["RoleId"] + ":sess-1")
        self.assertEqual(who["Account"], ACCOUNT)
        # The temporary credentials work on KMS, through boto3 and the CLI (X-Amz-Security-Token).
        kms = self.server.client("kms", akid=temp[0], secret=temp[1], aws_session_token=temp[2])
        self.assertIn("Keys", kms.list_keys())
        rc, out_cli, err = self.aws_as(temp, "kms", "list-keys")
        self.assertEqual(rc, 0, err)
        # A forged or foreign token is refused.
        bad = temp[2][:-8] + ("A" * 8 if not temp[2].endswith("A" * 8) else "B" * 8)
        with self.assertRaises(ClientError) as cm:
            self.sts((temp[0], temp[1], bad)).get_caller_identity()
        self.assertEqual(self.code(cm), "InvalidClientTokenId")
        with self.assertRaises(ClientError) as cm:
            self.server.client("kms", akid=temp[0], secret=temp[1], aws_session_token=bad).list_keys()
        self.assertEqual(self.code(cm), "UnrecognizedClientException")
        with self.assertRaises(ClientError) as cm:  # the token of one session with the key id of another
            other = self.sts(user).assume_role(RoleArn=role["Arn"], RoleSessionName="sess-2")["Credentials"]
            self.sts((other["AccessKeyId"], other["SecretAccessKey"], temp[2])).get_caller_identity()
        self.assertEqual(self.code(cm), "InvalidClientTokenId")
        # Duration bounds.
        with self.assertRaises(ClientError) as cm:
            self.sts(user).assume_role(RoleArn=role["Arn"], RoleSessionName="too-long", DurationSeconds=7200)
        self.assertEqual(self.code(cm), "ValidationError")
        self.assertIn("MaxSessionDuration", cm.exception.response["Error"]["Message"])

    def test_assume_role_denied_by_trust(self):
        iam = self.iam()
        iam.create_user(UserName="b3-outsider")
        k = iam.create_access_key(UserName="b3-outsider")["AccessKey"]
        user = (k["AccessKeyId"], k["SecretAccessKey"])
        iam.put_user_policy(UserName="b3-outsider", PolicyName="assume", PolicyDocument=allow("sts:AssumeRole"))
        iam.create_user(UserName="someone-else")  # a trust policy may name only existing users
        role = iam.create_role(RoleName="b3-closed-role",
                               AssumeRolePolicyDocument=trust("arn:aws:iam::%s:user/someone-else" % ACCOUNT))["Role"]
        with self.assertRaises(ClientError) as cm:
            self.sts(user).assume_role(RoleArn=role["Arn"], RoleSessionName="x-1")
        self.assertEqual(self.code(cm), "AccessDenied")
        self.assertIn("sts:AssumeRole", cm.exception.response["Error"]["Message"])
        with self.assertRaises(ClientError) as cm:
            self.sts(user).assume_role(RoleArn="arn:aws:iam::%s:role/no-such-role" % ACCOUNT, RoleSessionName="x-1")
        self.assertEqual(self.code(cm), "AccessDenied")

    def test_assume_role_account_trust_needs_identity_policy(self):
        iam = self.iam()
        iam.create_user(UserName="b3-acct")
        k = iam.create_access_key(UserName="b3-acct")["AccessKey"]
        user = (k["AccessKeyId"], k["SecretAccessKey"])
        role = iam.create_role(RoleName="b3-acct-role",
                               AssumeRolePolicyDocument=trust("arn:aws:iam::%s:root" % ACCOUNT))["Role"]
        with self.assertRaises(ClientError) as cm:
            self.sts(user).assume_role(RoleArn=role["Arn"], RoleSessionName="x-2")
        self.assertEqual(self.code(cm), "AccessDenied")
        iam.put_user_policy(UserName="b3-acct", PolicyName="assume", PolicyDocument=allow("sts:AssumeRole", role["Arn"]))
        out = self.sts(user).assume_role(RoleArn=role["Arn"], RoleSessionName="x-2")
        self.assertTrue(out["Credentials"]["AccessKeyId"].startswith("ASIA"))
        # The session's own IAM calls follow the role's policies (none): denied.
        c = out["Credentials"]
        with self.assertRaises(ClientError) as cm:
            self.iam((c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])).list_users()
        self.assertEqual(self.code(cm), "AccessDenied")

    def test_boto3_iam_surface(self):
        iam = self.iam()
        iam.create_user(UserName="b3-surface")
        self.assertEqual(iam.get_user(UserName="b3-surface")["User"]["UserName"], "b3-surface")
        with self.assertRaises(ClientError) as cm:
            iam.get_user(UserName="b3-none")
        self.assertEqual(self.code(cm), "NoSuchEntity")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)
        with self.assertRaises(ClientError) as cm:
            iam.create_user(UserName="b3-surface")
        self.assertEqual(self.code(cm), "EntityAlreadyExists")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 409)
        iam.put_user_policy(UserName="b3-surface", PolicyName="p", PolicyDocument=ALLOW_ALL_KMS)
        self.assertEqual(iam.get_user_policy(UserName="b3-surface", PolicyName="p")["PolicyDocument"],
                         json.loads(ALLOW_ALL_KMS))
        iam.delete_user_policy(UserName="b3-surface", PolicyName="p")
        iam.delete_user(UserName="b3-surface")
        with self.assertRaises(ClientError) as cm:
            iam.create_policy(PolicyName="b3-bad", PolicyDocument='{"Statement":[{"Effect":"Maybe"}]}')
        self.assertEqual(self.code(cm), "MalformedPolicyDocument")
        self.assertTrue(cm.exception.response["Error"]["Message"])
        self.assertIn("Roles", iam.list_roles())


class AdminAndRestartTest(unittest.TestCase):
    """`coffer admin create-account`, account isolation, and a restart keeping everything."""

    def setUp(self):
        self.server = Cofferd(extra_args=("--quota-crypto-rps", "0")).start()

    def tearDown(self):
        rc = self.server.stop()
        log = self.server.log()
        self.server.cleanup()
        if rc != 0 or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            raise AssertionError("cofferd exited with %r:\n%s" % (rc, log[-4000:]))

    def admin(self, *args, data_dir=None):
        r = subprocess.run([COFFER, "admin"] + list(args) + ["--data-dir", data_dir or self.server.data_dir],
                           capture_output=True, timeout=60)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def test_create_account_isolation_and_restart(self):
        s = self.server
        root_iam = s.client("iam")
        root_iam.create_user(UserName="operator-user")
        rc, out, err = self.admin("create-account", "tenant-a")
        self.assertEqual(rc, 0, err)
        acct = json.loads(out)
        self.assertEqual(sorted(acct), ["AccessKeyId", "AccountId", "SecretAccessKey"])
        self.assertRegex(acct["AccountId"], r"^[0-9]{12}$")
        self.assertNotEqual(acct["AccountId"], ACCOUNT)
        rc, out2, err = self.admin("create-account", "tenant-b", "--endpoint", s.endpoint)
        self.assertEqual(rc, 0, err)
        self.assertNotEqual(json.loads(out2)["AccountId"], acct["AccountId"])
        tenant = (acct["AccessKeyId"], acct["SecretAccessKey"])
        who = s.client("sts", akid=tenant[0], secret=tenant[1]).get_caller_identity()
        self.assertEqual(who["Account"], acct["AccountId"])
        self.assertEqual(who["Arn"], "arn:aws:iam::%s:root" % acct["AccountId"])
        t_iam = s.client("iam", akid=tenant[0], secret=tenant[1])
        self.assertEqual(t_iam.list_users()["Users"], [])  # the operator's users are not visible
        t_iam.create_user(UserName="tenant-user")
        names = [u["UserName"] for u in root_iam.list_users()["Users"]]
        self.assertIn("operator-user", names)
        self.assertNotIn("tenant-user", names)
        # The operator's user name is free in the tenant's account, and its policies unreachable.
        t_iam.create_user(UserName="operator-user")
        with self.assertRaises(ClientError) as cm:
            t_iam.attach_user_policy(UserName="tenant-user",
                                     PolicyArn=root_iam.create_policy(PolicyName="op-only",
                                                                      PolicyDocument=ALLOW_ALL_KMS)["Policy"]["Arn"])
        self.assertEqual(cm.exception.response["Error"]["Code"], "NoSuchEntity")
        # Only the operator account's root may create accounts.
        other_dir = tempfile.mkdtemp(prefix="coffer-admin-")
        try:
            os.makedirs(os.path.join(other_dir, "tls"))
            shutil.copy(s.ca, os.path.join(other_dir, "tls", "ca.pem"))
            with open(os.path.join(other_dir, "credentials"), "w") as f:
                f.write("[coffer]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % tenant)
            with open(os.path.join(other_dir, "endpoint"), "w") as f:
                f.write(s.endpoint + "\n")
            rc, out, err = self.admin("create-account", "sneaky", data_dir=other_dir)
            self.assertEqual(rc, 1)
            self.assertIn("AccessDenied", err)
        finally:
            shutil.rmtree(other_dir, ignore_errors=True)
        rc, out, err = self.admin("create-account")
        self.assertEqual(rc, 2)

        # Users, keys and sessions survive a restart.
        k = t_iam.create_access_key(UserName="tenant-user")["AccessKey"]
        role = t_iam.create_role(RoleName="tenant-role",
                                 AssumeRolePolicyDocument=trust("arn:aws:iam::%s:user/tenant-user" %
                                                                acct["AccountId"]))["Role"]
        user = (k["AccessKeyId"], k["SecretAccessKey"])
        c = s.client("sts", akid=user[0], secret=user[1]).assume_role(RoleArn=role["Arn"],
                                                                      RoleSessionName="survivor")["Credentials"]
        s.stop()
        s.start()
        self.assertIn("tenant-user", [u["UserName"] for u in
                                      s.client("iam", akid=tenant[0], secret=tenant[1]).list_users()["Users"]])
        who = s.client("sts", akid=user[0], secret=user[1]).get_caller_identity()
        self.assertEqual(who["Arn"], "arn:aws:iam::%s:user/tenant-user" % acct["AccountId"])
        who = s.client("sts", akid=c["AccessKeyId"], secret=c["SecretAccessKey"],
                       aws_session_token=c["SessionToken"]).get_caller_identity()
        self.assertEqual(who["Arn"], "arn:aws:sts::%s:assumed-role/tenant-role/survivor" % acct["AccountId"])
        rc, out, err = self.admin("list-accounts")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)["Accounts"]), 3)


if __name__ == "__main__":
    unittest.main()
