"""SSM Parameter Store through boto3 and /usr/bin/aws ssm: a hierarchy of String and StringList
parameters, reading by name, ARN and version selector, listing by path (one level, recursive,
paged), versions and history, DescribeParameters filters, tier limits, name rules and AWS's
error names; identity policies decide for IAM users; unknown or badly signed callers change
nothing; the trail records every call with eventSource ssm.amazonaws.com and never a value.
"""
import base64
import json
import time
import unittest

from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase, trail_events

ACCOUNT = "000000000000"
SEEDS = {
    "/my-department/my-app/dev/db-url": "dev.db.example.com:5432",
    "/my-department/my-app/dev/user": "dev-user",
    "/my-department/my-app/prod/db-url": "prod.db.example.com:5432",
    "/my-department/my-app/prod/db-password": "not-a-secret-in-this-test",
    "/my-department/other-app/dev/flag": "on",
    "/other-department/my-app/dev/db-url": "other.example.com",
}


def arn(name):
    return "arn:aws:ssm:%s:%s:parameter/%s" % (REGION, ACCOUNT, name.lstrip("/"))


class SsmParametersTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")
        for name, value in SEEDS.items():
            cls.ssm.put_parameter(Name=name, Value=value, Type="String", Description="seed")

    def by_path(self, path, **kw):
        names, token, pages = [], None, 0
        while True:
            args = dict(Path=path, **kw)
            if token:
                args["NextToken"] = token
            r = self.ssm.get_parameters_by_path(**args)
            names += [p["Name"] for p in r["Parameters"]]
            pages += 1
            token = r.get("NextToken")
            if not token:
                return names, pages

    def test_put_and_get(self):
        r = self.ssm.put_parameter(Name="/t/get/a", Value="v1", Type="String")
        self.assertEqual((r["Version"], r["Tier"]), (1, "Standard"))
        p = self.ssm.get_parameter(Name="/t/get/a")["Parameter"]
        self.assertEqual((p["Name"], p["Type"], p["Value"], p["Version"], p["ARN"], p["DataType"]),
                         ("/t/get/a", "String", "v1", 1, arn("/t/get/a"), "text"))
        self.assertNotIn("Selector", p)
        # by ARN, and one-level names with or without the leading slash are one parameter
        self.assertEqual(self.ssm.get_parameter(Name=arn("/t/get/a"))["Parameter"]["Value"], "v1")
        self.ssm.put_parameter(Name="/single-level", Value="x", Type="StringList")
        p = self.ssm.get_parameter(Name="single-level")["Parameter"]
        self.assertEqual((p["Name"], p["ARN"], p["Type"]), ("single-level", arn("single-level"), "StringList"))
        self.assertEqual(self.err(self.ssm.put_parameter, Name="single-level", Value="y", Type="String")[0],
                         "ParameterAlreadyExists")

    def test_versions_selectors_and_history(self):
        name = "/t/versions/p"
        self.ssm.put_parameter(Name=name, Value="one", Type="String", Description="first",
                               AllowedPattern="^[a-z]+$")
        code, msg = self.err(self.ssm.put_parameter, Name=name, Value="two", Type="String")
        self.assertEqual(code, "ParameterAlreadyExists")
        self.assertIn("set the overwrite option", msg)
        r = self.ssm.put_parameter(Name=name, Value="two", Overwrite=True)  # Type kept
        self.assertEqual(r["Version"], 2)
        # the pattern is kept across versions
        code, _ = self.err(self.ssm.put_parameter, Name=name, Value="THREE", Overwrite=True)
        self.assertEqual(code, "ParameterPatternMismatchException")
        self.ssm.put_parameter(Name=name, Value="three", Overwrite=True, Description="third")
        self.assertEqual(self.ssm.get_parameter(Name=name)["Parameter"]["Value"], "three")
        p = self.ssm.get_parameter(Name=name + ":1")["Parameter"]
        self.assertEqual((p["Value"], p["Version"], p["Selector"], p["Name"]), ("one", 1, ":1", name))
        self.assertEqual(self.ssm.get_parameter(Name=arn(name) + ":2")["Parameter"]["Value"], "two")
        code, msg = self.err(self.ssm.get_parameter, Name=name + ":9")
        self.assertEqual(code, "ParameterVersionNotFound")
        self.assertIn("version 9 of %s" % name, msg)
        self.assertEqual(self.err(self.ssm.get_parameter, Name=name + ":nolabel")[0], "ParameterNotFound")
        hist = self.ssm.get_parameter_history(Name=name)["Parameters"]
        self.assertEqual([(h["Version"], h["Value"], h["Description"], h["Type"]) for h in hist],
                         [(1, "one", "first", "String"), (2, "two", "first", "String"),
                          (3, "three", "third", "String")])
        self.assertEqual(hist[0]["AllowedPattern"], "^[a-z]+$")
        self.assertTrue(hist[0]["LastModifiedUser"].startswith("arn:aws:iam::%s:" % ACCOUNT))
        page = self.ssm.get_parameter_history(Name=name, MaxResults=2)
        self.assertEqual([h["Version"] for h in page["Parameters"]], [1, 2])
        rest = self.ssm.get_parameter_history(Name=name, MaxResults=2, NextToken=page["NextToken"])
        self.assertEqual([h["Version"] for h in rest["Parameters"]], [3])
        self.assertNotIn("NextToken", rest)

    def test_one_hundred_versions_kept(self):
        name = "/t/hundred"
        self.ssm.put_parameter(Name=name, Value="v1", Type="String")
        for i in range(2, 103):
            self.ssm.put_parameter(Name=name, Value="v%d" % i, Overwrite=True)
        versions, token = [], None
        while True:
            r = self.ssm.get_parameter_history(Name=name, **({"NextToken": token} if token else {}))
            versions += [h["Version"] for h in r["Parameters"]]
            token = r.get("NextToken")
            if not token:
                break
        self.assertEqual(versions, list(range(3, 103)))
        self.assertEqual(self.err(self.ssm.get_parameter, Name=name + ":2")[0], "ParameterVersionNotFound")
        self.assertEqual(self.ssm.get_parameter(Name=name + ":3")["Parameter"]["Value"], "v3")

    def test_get_parameters(self):
        r = self.ssm.get_parameters(Names=["/my-department/my-app/prod/db-url", "/nope",
                                           "/my-department/my-app/dev/db-url", "/my-department/my-app/dev/user:7"])
        self.assertEqual([p["Name"] for p in r["Parameters"]],
                         ["/my-department/my-app/dev/db-url", "/my-department/my-app/prod/db-url"])
        self.assertEqual(r["InvalidParameters"], ["/nope", "/my-department/my-app/dev/user:7"])
        code, msg = self.err(self.ssm.get_parameters, Names=["/a%d" % i for i in range(11)])
        self.assertEqual(code, "ValidationException")
        self.assertIn("length less than or equal to 10", msg)

    def test_by_path_one_level_and_recursive(self):
        names, _ = self.by_path("/my-department/my-app/dev")
        self.assertEqual(names, ["/my-department/my-app/dev/db-url", "/my-department/my-app/dev/user"])
        names, _ = self.by_path("/my-department/my-app/dev/")  # trailing slash tolerated
        self.assertEqual(len(names), 2)
        self.assertEqual(self.by_path("/my-department")[0], [])  # no direct child
        names, _ = self.by_path("/my-department", Recursive=True)
        self.assertEqual(names, sorted(n for n in SEEDS if n.startswith("/my-department/")))
        names, pages = self.by_path("/my-department", Recursive=True, MaxResults=2)
        self.assertEqual(names, sorted(n for n in SEEDS if n.startswith("/my-department/")))
        self.assertEqual(pages, 3)
        names, _ = self.by_path("/my-department/my-app", Recursive=True,
                                ParameterFilters=[{"Key": "Type", "Values": ["StringList"]}])
        self.assertEqual(names, [])
        code, _ = self.err(self.ssm.get_parameters_by_path, Path="/my-department",
                           ParameterFilters=[{"Key": "Name", "Values": ["x"]}])
        self.assertEqual(code, "InvalidFilterKey")
        code, _ = self.err(self.ssm.get_parameters_by_path, Path="/my-department", NextToken="/elsewhere/x")
        self.assertEqual(code, "InvalidNextToken")
        self.assertEqual(self.err(self.ssm.get_parameters_by_path, Path="no-slash")[0], "ValidationException")

    def test_by_path_one_level_pages_past_deep_subtrees(self):
        for i in range(5):
            self.ssm.put_parameter(Name="/t/deep/c%d" % i, Value="v", Type="String")
            for j in range(3):
                self.ssm.put_parameter(Name="/t/deep/c%d/x/y%d" % (i, j), Value="v", Type="String")
        names, pages = self.by_path("/t/deep", MaxResults=2)
        self.assertEqual(names, ["/t/deep/c%d" % i for i in range(5)])
        self.assertEqual(pages, 3)

    def test_cli(self):
        s = self.server
        s.aws("ssm", "put-parameter", "--name", "/t/cli/list", "--value", "a,b,c", "--type", "StringList",
              check=True)
        _, out, _ = s.aws("ssm", "get-parameter", "--name", "/t/cli/list", check=True)
        self.assertEqual((out["Parameter"]["Value"], out["Parameter"]["Type"]), ("a,b,c", "StringList"))
        _, out, _ = s.aws("ssm", "get-parameters-by-path", "--path", "/my-department/my-app", "--recursive",
                          check=True)
        self.assertEqual(len(out["Parameters"]), 4)
        rc, _, err = s.aws("ssm", "get-parameter", "--name", "/t/cli/missing")
        self.assertNotEqual(rc, 0)
        self.assertIn("ParameterNotFound", err)
        _, out, _ = s.aws("ssm", "describe-parameters", "--parameter-filters",
                          "Key=Path,Option=Recursive,Values=/t/cli", check=True)
        self.assertEqual([p["Name"] for p in out["Parameters"]], ["/t/cli/list"])
        s.aws("ssm", "delete-parameter", "--name", "/t/cli/list", check=True)
        rc, _, err = s.aws("ssm", "delete-parameter", "--name", "/t/cli/list")
        self.assertIn("ParameterNotFound", err)

    def test_describe_parameters(self):
        r = self.ssm.describe_parameters(ParameterFilters=[
            {"Key": "Path", "Option": "Recursive", "Values": ["/my-department/my-app"]}])
        self.assertEqual([p["Name"] for p in r["Parameters"]],
                         sorted(n for n in SEEDS if n.startswith("/my-department/my-app/")))
        m = r["Parameters"][0]
        # Debian's botocore predates the ARN member of ParameterMetadata and drops it
        self.assertEqual((m["Type"], m["Tier"], m["Version"], m["Description"], m["DataType"],
                          m.get("ARN", arn(m["Name"]))), ("String", "Standard", 1, "seed", "text", arn(m["Name"])))
        self.assertNotIn("Value", m)
        r = self.ssm.describe_parameters(ParameterFilters=[
            {"Key": "Path", "Values": ["/my-department/my-app/prod"]},
            {"Key": "Name", "Option": "Contains", "Values": ["password"]}])
        self.assertEqual([p["Name"] for p in r["Parameters"]], ["/my-department/my-app/prod/db-password"])
        r = self.ssm.describe_parameters(Filters=[{"Key": "Name", "Values": ["/other-department/my-app/dev/db-url"]}])
        self.assertEqual(len(r["Parameters"]), 1)
        # paging through everything
        names, token = [], None
        while True:
            r = self.ssm.describe_parameters(MaxResults=3,
                                             ParameterFilters=[{"Key": "Name", "Option": "BeginsWith",
                                                                "Values": ["/my-department"]}],
                                             **({"NextToken": token} if token else {}))
            names += [p["Name"] for p in r["Parameters"]]
            token = r.get("NextToken")
            if not token:
                break
        self.assertEqual(names, sorted(n for n in SEEDS if n.startswith("/my-department")))
        code, _ = self.err(self.ssm.describe_parameters, ParameterFilters=[{"Key": "Label", "Values": ["x"]}])
        self.assertEqual(code, "InvalidFilterKey")
        code, _ = self.err(self.ssm.describe_parameters,
                           ParameterFilters=[{"Key": "Type", "Option": "Contains", "Values": ["x"]}])
        self.assertEqual(code, "InvalidFilterOption")

    def test_tiers(self):
        self.ssm.put_parameter(Name="/t/tier/std", Value="x" * 4096, Type="String")
        code, msg = self.err(self.ssm.put_parameter, Name="/t/tier/big", Value="x" * 4097, Type="String")
        self.assertEqual(code, "ValidationException")
        self.assertIn("maximum parameter value of 4096 characters", msg)
        r = self.ssm.put_parameter(Name="/t/tier/big", Value="x" * 4097, Type="String", Tier="Advanced")
        self.assertEqual(r["Tier"], "Advanced")
        r = self.ssm.put_parameter(Name="/t/tier/auto", Value="x" * 5000, Type="String", Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Advanced")
        code, _ = self.err(self.ssm.put_parameter, Name="/t/tier/big", Value="x" * 8193, Overwrite=True)
        self.assertEqual(code, "ValidationException")
        code, msg = self.err(self.ssm.put_parameter, Name="/t/tier/big", Value="y", Overwrite=True, Tier="Standard")
        self.assertIn("can't downgrade", msg)
        r = self.ssm.put_parameter(Name="/t/tier/big", Value="y", Overwrite=True)
        self.assertEqual((r["Tier"], r["Version"]), ("Advanced", 2))

    def test_name_rules_and_errors(self):
        ok = "/" + "/".join("L%d" % i for i in range(1, 15)) + "/name"  # 15 levels
        self.ssm.put_parameter(Name=ok, Value="v", Type="String")
        too_deep = "/" + "/".join("L%d" % i for i in range(1, 16)) + "/name"
        code, msg = self.err(self.ssm.put_parameter, Name=too_deep, Value="v", Type="String")
        self.assertEqual(code, "HierarchyLevelLimitExceededException")
        self.assertIn("maximum of 15 levels", msg)
        for bad in ("no/leading-slash", "/a//b", "/a b/c", "/a/b/", "/a/$x"):
            self.assertEqual(self.err(self.ssm.put_parameter, Name=bad, Value="v", Type="String")[0],
                             "ValidationException", bad)
        code, msg = self.err(self.ssm.put_parameter, Name="awsThing", Value="v", Type="String")
        self.assertEqual((code, msg), ("ValidationException", 'Parameter name: can\'t be prefixed with "aws" or '
                                                             '"ssm" (case-insensitive).'))
        code, msg = self.err(self.ssm.put_parameter, Name="/SSM/x", Value="v", Type="String")
        self.assertEqual(code, "ValidationException")
        self.assertIn('prefixed with "ssm"', msg)
        code, msg = self.err(self.ssm.put_parameter, Name="/aws/x", Value="v", Type="String")
        self.assertEqual((code, msg), ("AccessDeniedException", "No access to reserved parameter name: /aws/x"))
        code, msg = self.err(self.ssm.put_parameter, Name="/t/notype", Value="v")
        self.assertEqual((code, msg), ("ValidationException", "A parameter type is required when you create a "
                                                              "parameter."))
        code, msg = self.err(self.ssm.put_parameter, Name="/t/tagged", Value="v", Type="String", Overwrite=True,
                             Tags=[{"Key": "k", "Value": "v"}])
        self.assertIn("tags and overwrite can't be used together", msg)
        code, _ = self.err(self.ssm.put_parameter, Name="/t/dt", Value="v", Type="String", DataType="image")
        self.assertEqual(code, "ValidationException")
        code, _ = self.err(self.ssm.put_parameter, Name="/t/pat", Value="v", Type="String", AllowedPattern="([")
        self.assertEqual(code, "InvalidAllowedPatternException")
        self.assertEqual(self.err(self.ssm.get_parameter, Name="/t/missing")[0], "ParameterNotFound")
        self.assertEqual(self.err(self.ssm.delete_parameter, Name="/t/missing")[0], "ParameterNotFound")

    def test_delete_parameters(self):
        for n in ("/t/del/a", "/t/del/b"):
            self.ssm.put_parameter(Name=n, Value="v", Type="String")
        r = self.ssm.delete_parameters(Names=["/t/del/a", "/t/del/zz", "/t/del/b"])
        self.assertEqual((r["DeletedParameters"], r["InvalidParameters"]), (["/t/del/a", "/t/del/b"], ["/t/del/zz"]))
        self.assertEqual(self.by_path("/t/del")[0], [])
        # a deleted name starts again at version 1
        self.assertEqual(self.ssm.put_parameter(Name="/t/del/a", Value="v", Type="String")["Version"], 1)

    def test_identity_policies_decide_for_users(self):
        iam = self.server.client("iam")
        iam.create_user(UserName="ssm-reader")
        key = iam.create_access_key(UserName="ssm-reader")["AccessKey"]
        reader = self.server.client("ssm", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
        code, msg = self.err(reader.get_parameter, Name="/my-department/my-app/dev/db-url")
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("ssm:GetParameter", msg)
        iam.put_user_policy(UserName="ssm-reader", PolicyName="dev", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParametersByPath"],
                           "Resource": "arn:aws:ssm:*:*:parameter/my-department/my-app/dev*"}]}))
        deadline = time.time() + 10
        while True:
            try:
                p = reader.get_parameter(Name="/my-department/my-app/dev/db-url")["Parameter"]
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.assertEqual(p["Value"], SEEDS["/my-department/my-app/dev/db-url"])
        self.assertEqual(len(reader.get_parameters_by_path(Path="/my-department/my-app/dev")["Parameters"]), 2)
        self.assertEqual(self.err(reader.get_parameter, Name="/my-department/my-app/prod/db-url")[0],
                         "AccessDeniedException")
        self.assertEqual(self.err(reader.put_parameter, Name="/my-department/my-app/dev/x", Value="v",
                                  Type="String")[0], "AccessDeniedException")

    def test_secure_string_with_the_default_key(self):
        name, secret = "/my-department/my-app/prod/api-key", "default-key-canary-51e2"
        r = self.ssm.put_parameter(Name=name, Value=secret, Type="SecureString")
        self.assertEqual(r["Version"], 1)
        p = self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        self.assertEqual((p["Value"], p["Type"]), (secret, "SecureString"))
        # without decryption: the KMS ciphertext, base64
        stored = self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        self.assertNotEqual(stored, secret)
        blob = base64.b64decode(stored, validate=True)
        self.assertNotIn(secret.encode(), blob)
        # the AWS managed key was made on first use, and is usable only through Parameter Store
        kms = self.server.client("kms")
        md = kms.describe_key(KeyId="alias/aws/ssm")["KeyMetadata"]
        self.assertEqual(md["KeyManager"], "AWS")
        with self.assertRaises(ClientError) as cm:
            kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn(name)})
        self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDeniedException")
        meta = self.ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
        self.assertEqual((meta[0]["Type"], meta[0]["KeyId"]), ("SecureString", "alias/aws/ssm"))
        # overwrite keeps type and key; history and by-path decrypt on request
        self.ssm.put_parameter(Name=name, Value=secret + "-2", Overwrite=True)
        hist = self.ssm.get_parameter_history(Name=name, WithDecryption=True)["Parameters"]
        self.assertEqual([h["Value"] for h in hist], [secret, secret + "-2"])
        self.assertEqual({h["KeyId"] for h in hist}, {"alias/aws/ssm"})
        hist = self.ssm.get_parameter_history(Name=name)["Parameters"]
        self.assertNotIn(secret, json.dumps(hist, default=str))
        page = self.ssm.get_parameters_by_path(Path="/my-department/my-app/prod", WithDecryption=True)
        self.assertIn(secret + "-2", [q["Value"] for q in page["Parameters"]])
        self.assertEqual(self.ssm.get_parameters(Names=[name + ":1"], WithDecryption=True)["Parameters"][0]["Value"],
                         secret)
        # the trail never holds the value
        deadline = time.time() + 10
        while True:
            evs = [e for e in trail_events(self.server.data_dir) if e.get("eventSource") == "ssm.amazonaws.com"]
            if any(e["eventName"] == "GetParameterHistory" for e in evs) or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertNotIn(secret, json.dumps(evs))
        code, _ = self.err(self.ssm.put_parameter, Name="/t/sec/nokey", Value="v", Type="SecureString",
                           KeyId="alias/does-not-exist")
        self.assertEqual(code, "InvalidKeyId")
        code, _ = self.err(self.ssm.put_parameter, Name="/t/sec/plain", Value="v", Type="String",
                           KeyId="alias/aws/ssm")
        self.assertEqual(code, "ValidationException")

    def test_secure_string_with_a_customer_key_needs_the_callers_decrypt(self):
        kms = self.server.client("kms")
        key = kms.create_key(Description="ssm customer key")["KeyMetadata"]
        name, secret = "/t/sec/customer", "customer-key-canary-9c0d"
        self.ssm.put_parameter(Name=name, Value=secret, Type="SecureString", KeyId=key["Arn"])
        self.assertEqual(self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"], secret)
        iam = self.server.client("iam")
        iam.create_user(UserName="ssm-no-kms")
        ak = iam.create_access_key(UserName="ssm-no-kms")["AccessKey"]
        iam.put_user_policy(UserName="ssm-no-kms", PolicyName="ssm", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}))
        user = self.server.client("ssm", akid=ak["AccessKeyId"], secret=ak["SecretAccessKey"])
        deadline = time.time() + 10
        while True:
            try:
                stored = user.get_parameter(Name=name)["Parameter"]["Value"]
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.assertNotEqual(stored, secret)
        base64.b64decode(stored, validate=True)
        code, msg = self.err(user.get_parameter, Name=name, WithDecryption=True)
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("kms:Decrypt", msg)
        code, _ = self.err(user.put_parameter, Name="/t/sec/by-user", Value="v", Type="SecureString",
                           KeyId=key["KeyId"])
        self.assertEqual(code, "AccessDeniedException")
        # the default key needs no KMS permission of the caller: Parameter Store uses it on its behalf
        user.put_parameter(Name="/t/sec/by-user", Value="user-secret", Type="SecureString")
        self.assertEqual(user.get_parameter(Name="/t/sec/by-user", WithDecryption=True)["Parameter"]["Value"],
                         "user-secret")
        iam.put_user_policy(UserName="ssm-no-kms", PolicyName="kms", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt",
                                                   "Resource": key["Arn"]}]}))
        deadline = time.time() + 10
        while True:
            try:
                value = user.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.assertEqual(value, secret)

    def test_unknown_key_and_bad_signature_change_nothing(self):
        akid, secret = self.server.credentials()
        stranger = self.server.client("ssm", akid="AKIAIOSFODNN7EXAMPLE", secret="x" * 40)
        code, _ = self.err(stranger.put_parameter, Name="/t/auth/a", Value="v", Type="String")
        self.assertEqual(code, "UnrecognizedClientException")
        forger = self.server.client("ssm", akid=akid, secret=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        code, _ = self.err(forger.put_parameter, Name="/t/auth/a", Value="v", Type="String")
        self.assertEqual(code, "InvalidSignatureException")
        self.assertEqual(self.err(self.ssm.get_parameter, Name="/t/auth/a")[0], "ParameterNotFound")

    def test_trail_never_holds_a_value(self):
        value = "trail-canary-7f3a9"
        self.ssm.put_parameter(Name="/t/trail/p", Value=value, Type="String")
        self.ssm.get_parameter(Name="/t/trail/p")
        self.ssm.get_parameters_by_path(Path="/t/trail")
        self.ssm.get_parameter_history(Name="/t/trail/p")
        deadline = time.time() + 10
        while True:
            evs = [e for e in trail_events(self.server.data_dir) if e.get("eventSource") == "ssm.amazonaws.com"]
            names = {e["eventName"] for e in evs}
            if {"PutParameter", "GetParameter", "GetParametersByPath", "GetParameterHistory"} <= names:
                break
            self.assertLess(time.time(), deadline, names)
            time.sleep(0.2)
        put = [e for e in evs if e["eventName"] == "PutParameter"
               and (e.get("requestParameters") or {}).get("name") == "/t/trail/p"]
        self.assertEqual(len(put), 1, put)
        self.assertFalse(put[0]["readOnly"])
        for e in evs:
            self.assertNotIn(value, json.dumps(e))


if __name__ == "__main__":
    unittest.main()
