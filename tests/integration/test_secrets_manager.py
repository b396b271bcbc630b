"""Secrets Manager through boto3 and /usr/bin/aws secretsmanager: the version and staging-label
life cycle (AWSCURRENT, AWSPREVIOUS, custom labels, deprecated versions), ClientRequestToken
idempotency, DescribeSecret's exact shape, name / full ARN / partial ARN lookup, value size
limits, deletion with a recovery window (the scheduler deletes at its end), restore and forced
deletion, ListSecrets filters, sorting and paging, tags, GetRandomPassword's constraints,
BatchGetSecretValue, resource policies decided with identity policies (same account: either;
another account: both), kms:Decrypt on a customer key, unknown or badly signed callers changing
nothing, and a trail that never holds a value.
"""
import base64
import json
import os
import re
import string
import subprocess
import time
import unittest

from botocore.exceptions import ClientError

from harness import AWS, COFFER, REGION, ServerTestCase, trail_events
from test_security_memory import can_read_memory, process_memory, sanitized_build

ACCOUNT = "000000000000"
DAY_MS = 100  # --secret-recovery-day-ms: a 7-day window lasts 0.7 s
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def policy_doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class SecretsManagerTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--secret-recovery-day-ms", str(DAY_MS))

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sm = cls.server.client("secretsmanager")

    # ---- helpers ------------------------------------------------------------------------------

    def err(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def eventually(self, fn, timeout=10):
        """fn() once it stops raising ClientError (new credentials take a moment to be known)."""
        deadline = time.time() + timeout
        while True:
            try:
                return fn()
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def user(self, iam, name, policy=None):
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=policy)
        k = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AccessKeyId": k["AccessKeyId"], "SecretAccessKey": k["SecretAccessKey"]}

    def client_as(self, service, creds):
        return self.server.client(service, akid=creds["AccessKeyId"], secret=creds["SecretAccessKey"])

    def create_account(self, name):
        r = subprocess.run([COFFER, "admin", "create-account", name, "--data-dir", self.server.data_dir,
                            "--endpoint", self.server.endpoint], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout)

    def raw(self, operation, body):
        """One signed call made by hand, for members Debian's botocore predates
        (BatchGetSecretValue, IncludePlannedDeletion): (HTTP status, parsed JSON body)."""
        import ssl
        import urllib.error
        import urllib.request
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        akid, secret = self.server.credentials()
        data = json.dumps(body).encode()
        req = AWSRequest(method="POST", url=self.server.endpoint + "/", data=data,
                         headers={"Content-Type": "application/x-amz-json-1.1",
                                  "X-Amz-Target": "secretsmanager." + operation})
        SigV4Auth(Credentials(akid, secret), "secretsmanager", REGION).add_auth(req)
        prepared = req.prepare()
        ctx = ssl.create_default_context(cafile=self.server.ca)
        r = urllib.request.Request(prepared.url, data=data, headers=dict(prepared.headers), method="POST")
        try:
            with urllib.request.urlopen(r, context=ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stages(self, name):
        return self.sm.describe_secret(SecretId=name).get("VersionIdsToStages", {})

    # ---- versions and labels ------------------------------------------------------------------

    def test_version_and_label_life_cycle(self):
        name = "t/life/db"
        v1 = self.sm.create_secret(Name=name, SecretString="one")["VersionId"]
        self.assertEqual(self.stages(name), {v1: ["AWSCURRENT"]})
        v2 = self.sm.put_secret_value(SecretId=name, SecretString="two")["VersionId"]
        self.assertEqual(self.stages(name), {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]})
        r = self.sm.update_secret(SecretId=name, SecretString="three")
        v3 = r["VersionId"]
        self.assertEqual(self.stages(name), {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]})
        # v1 has no label any more: deprecated, hidden unless asked for
        listed = self.sm.list_secret_version_ids(SecretId=name)["Versions"]
        self.assertEqual({v["VersionId"] for v in listed}, {v2, v3})
        self.assertTrue(all(v["KmsKeyIds"] == ["DefaultEncryptionKey"] for v in listed))
        listed = self.sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
        self.assertEqual({v["VersionId"] for v in listed}, {v1, v2, v3})
        self.assertNotIn("VersionStages", [v for v in listed if v["VersionId"] == v1][0])
        # reading by label, by version id, by both
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "three")
        got = self.sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
        self.assertEqual((got["SecretString"], got["VersionId"], got["VersionStages"]), ("two", v2, ["AWSPREVIOUS"]))
        self.assertEqual(self.sm.get_secret_value(SecretId=name, VersionId=v1)["SecretString"], "one")
        code, msg = self.err(self.sm.get_secret_value, SecretId=name, VersionId=v1, VersionStage="AWSCURRENT")
        self.assertEqual(code, "ResourceNotFoundException")
        code, msg = self.err(self.sm.get_secret_value, SecretId=name, VersionStage="NOPE")
        self.assertEqual((code, msg), ("ResourceNotFoundException",
                                       "Secrets Manager can't find the specified secret value for staging label: NOPE"))
        # a version with custom labels only leaves AWSCURRENT where it is
        v4 = self.sm.put_secret_value(SecretId=name, SecretString="four", VersionStages=["canary"])["VersionId"]
        self.assertEqual(self.stages(name), {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"], v4: ["canary"]})
        # moving AWSCURRENT needs the version it is on; AWSPREVIOUS follows the old current
        code, msg = self.err(self.sm.update_secret_version_stage, SecretId=name, VersionStage="AWSCURRENT",
                             MoveToVersionId=v4)
        self.assertEqual(code, "InvalidParameterException")
        self.assertIn("RemoveFromVersionId", msg)
        self.assertIn(v3, msg)
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=v4,
                                            RemoveFromVersionId=v3)
        self.assertEqual(self.stages(name), {v3: ["AWSPREVIOUS"], v4: ["canary", "AWSCURRENT"]})
        # a custom label moves without touching the others; removing it alone detaches it
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="canary", MoveToVersionId=v3,
                                            RemoveFromVersionId=v4)
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="canary", RemoveFromVersionId=v3)
        self.assertEqual(self.stages(name), {v3: ["AWSPREVIOUS"], v4: ["AWSCURRENT"]})
        code, msg = self.err(self.sm.update_secret_version_stage, SecretId=name, VersionStage="AWSCURRENT",
                             RemoveFromVersionId=v4)
        self.assertEqual(code, "InvalidParameterException")
        code, _ = self.err(self.sm.update_secret_version_stage, SecretId=name, VersionStage="x",
                           MoveToVersionId="0" * 32)
        self.assertEqual(code, "InvalidParameterException")
        # metadata only: no version
        r = self.sm.update_secret(SecretId=name, Description="now described")
        self.assertNotIn("VersionId", r)
        self.assertEqual(self.sm.describe_secret(SecretId=name)["Description"], "now described")
        self.assertEqual(self.stages(name), {v3: ["AWSPREVIOUS"], v4: ["AWSCURRENT"]})

    def test_pending_version_promoted_as_a_rotation_function_does(self):
        name = "t/life/pending"
        old = self.sm.create_secret(Name=name, SecretString="old")["VersionId"]
        token = "99999999-8888-7777-6666-555555555555"
        # createSecret: the candidate goes in as AWSPENDING; AWSCURRENT stays
        r = self.sm.put_secret_value(SecretId=name, ClientRequestToken=token, SecretString="new",
                                     VersionStages=["AWSPENDING"])
        self.assertEqual(r["VersionStages"], ["AWSPENDING"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "old")
        got = self.sm.get_secret_value(SecretId=name, VersionId=token, VersionStage="AWSPENDING")
        self.assertEqual(got["SecretString"], "new")
        # finishSecret: AWSCURRENT moves, AWSPREVIOUS follows, AWSPENDING is removed
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=token,
                                            RemoveFromVersionId=old)
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=token)
        self.assertEqual(self.stages(name), {old: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "new")
        code, _ = self.err(self.sm.get_secret_value, SecretId=name, VersionStage="AWSPENDING")
        self.assertEqual(code, "ResourceNotFoundException")

    def test_secret_without_a_value_then_a_first_value(self):
        name = "t/empty"
        r = self.sm.create_secret(Name=name)
        self.assertNotIn("VersionId", r)
        self.assertNotIn("VersionIdsToStages", self.sm.describe_secret(SecretId=name))
        code, msg = self.err(self.sm.get_secret_value, SecretId=name)
        self.assertEqual((code, msg), ("ResourceNotFoundException", "Secrets Manager can't find the specified "
                                                                    "secret value for staging label: AWSCURRENT"))
        # the first version always becomes AWSCURRENT, even with other labels asked for
        v = self.sm.put_secret_value(SecretId=name, SecretString="x", VersionStages=["mine"])
        self.assertEqual(sorted(v["VersionStages"]), ["AWSCURRENT", "mine"])

    def test_binary_secret(self):
        blob = bytes(range(256)) * 3
        self.sm.create_secret(Name="t/binary", SecretBinary=blob)
        got = self.sm.get_secret_value(SecretId="t/binary")
        self.assertEqual(got["SecretBinary"], blob)
        self.assertNotIn("SecretString", got)

    def test_idempotent_client_request_token(self):
        token = "11111111-2222-3333-4444-555555555555"
        r = self.sm.create_secret(Name="t/idem", SecretString="v", ClientRequestToken=token)
        self.assertEqual(r["VersionId"], token)
        again = self.sm.create_secret(Name="t/idem", SecretString="v", ClientRequestToken=token)
        self.assertEqual((again["ARN"], again["VersionId"]), (r["ARN"], token))
        code, msg = self.err(self.sm.create_secret, Name="t/idem", SecretString="other", ClientRequestToken=token)
        self.assertEqual(code, "ResourceExistsException")
        code, _ = self.err(self.sm.create_secret, Name="t/idem", SecretString="v")  # another token
        self.assertEqual(code, "ResourceExistsException")
        t2 = "aaaaaaaa-2222-3333-4444-555555555555"
        self.sm.put_secret_value(SecretId="t/idem", SecretString="w", ClientRequestToken=t2)
        same = self.sm.put_secret_value(SecretId="t/idem", SecretString="w", ClientRequestToken=t2)
        self.assertEqual((same["VersionId"], same["VersionStages"]), (t2, ["AWSCURRENT"]))
        self.assertEqual(len(self.sm.list_secret_version_ids(SecretId="t/idem", IncludeDeprecated=True)
                             ["Versions"]), 2)
        code, msg = self.err(self.sm.put_secret_value, SecretId="t/idem", SecretString="x", ClientRequestToken=t2)
        self.assertEqual(code, "ResourceExistsException")
        self.assertEqual(msg, "You can't use ClientRequestToken %s because that value is already in use for a "
                              "version of secret %s." % (t2, r["ARN"]))
        code, _ = self.err(self.sm.update_secret, SecretId="t/idem", SecretString="w", ClientRequestToken=t2)
        self.assertEqual(code, "ResourceExistsException")
        self.assertEqual(self.sm.get_secret_value(SecretId="t/idem")["SecretString"], "w")

    # ---- names, ARNs, DescribeSecret ----------------------------------------------------------

    def test_describe_shape_and_lookup_by_arn(self):
        r = self.sm.create_secret(Name="t/shape", SecretString="s", Description="desc",
                                  Tags=[{"Key": "team", "Value": "core"}])
        arn = r["ARN"]
        self.assertRegex(arn, r"^arn:aws:secretsmanager:%s:%s:secret:t/shape-[A-Za-z0-9]{6}$" % (REGION, ACCOUNT))
        self.sm.get_secret_value(SecretId="t/shape")
        d = self.sm.describe_secret(SecretId=arn)
        self.assertEqual(set(d) - {"ResponseMetadata"},
                         {"ARN", "Name", "Description", "LastChangedDate", "LastAccessedDate", "Tags",
                          "VersionIdsToStages", "CreatedDate"})
        self.assertEqual((d["ARN"], d["Name"], d["Description"], d["Tags"]),
                         (arn, "t/shape", "desc", [{"Key": "team", "Value": "core"}]))
        la = d["LastAccessedDate"]
        self.assertEqual((la.hour, la.minute, la.second, la.microsecond), (0, 0, 0, 0))
        # the same secret by partial ARN; a wrong suffix names nothing
        self.assertEqual(self.sm.describe_secret(SecretId=arn[:-7])["ARN"], arn)
        code, msg = self.err(self.sm.describe_secret, SecretId=arn[:-6] + "zzzzzz")
        self.assertEqual((code, msg), ("ResourceNotFoundException", "Secrets Manager can't find the specified secret."))
        code, _ = self.err(self.sm.describe_secret, SecretId=arn.replace(REGION, "eu-west-1"))
        self.assertEqual(code, "ResourceNotFoundException")
        # a re-created secret of the same name gets a new suffix: the old ARN does not reach it
        self.sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        arn2 = self.sm.create_secret(Name="t/shape", SecretString="s2")["ARN"]
        self.assertNotEqual(arn, arn2)
        self.assertEqual(self.err(self.sm.get_secret_value, SecretId=arn)[0], "ResourceNotFoundException")
        self.assertEqual(self.sm.get_secret_value(SecretId=arn2[:-7])["SecretString"], "s2")

    def test_names_values_and_errors(self):
        code, msg = self.err(self.sm.create_secret, Name="bad name", SecretString="x")
        self.assertEqual(code, "ValidationException")
        self.assertIn("Invalid name", msg)
        code, _ = self.err(self.sm.create_secret, Name="t/both", SecretString="x", SecretBinary=b"y")
        self.assertEqual(code, "InvalidParameterException")
        self.sm.create_secret(Name="t/limits")
        code, msg = self.err(self.sm.put_secret_value, SecretId="t/limits")
        self.assertEqual((code, msg), ("InvalidRequestException", "You must provide either SecretString or "
                                                                  "SecretBinary."))
        self.sm.put_secret_value(SecretId="t/limits", SecretString="a" * 65536)
        self.sm.put_secret_value(SecretId="t/limits", SecretBinary=b"\x01" * 65536)
        self.assertEqual(len(self.sm.get_secret_value(SecretId="t/limits")["SecretBinary"]), 65536)
        for kw in ({"SecretString": "a" * 65537}, {"SecretBinary": b"\x01" * 65537},
                   {"SecretString": "\u00e9" * 40000}):
            code, _ = self.err(self.sm.put_secret_value, SecretId="t/limits", **kw)
            self.assertIn(code, ("ValidationException", "InvalidParameterException"), kw.keys())
        self.assertEqual(len(self.sm.get_secret_value(SecretId="t/limits")["SecretBinary"]), 65536)
        code, _ = self.err(self.sm.get_secret_value, SecretId="t/none")
        self.assertEqual(code, "ResourceNotFoundException")
        code, msg = self.err(self.sm.rotate_secret, SecretId="t/limits")
        self.assertEqual(code, "InvalidRequestException")
        self.assertEqual(msg, "No Lambda rotation function ARN is associated with this secret.")

    # ---- deletion ----------------------------------------------------------------------------

    def test_delete_restore_and_scheduled_deletion(self):
        name = "t/del/a"
        arn = self.sm.create_secret(Name=name, SecretString="v")["ARN"]
        for days in (6, 31):
            code, msg = self.err(self.sm.delete_secret, SecretId=name, RecoveryWindowInDays=days)
            self.assertEqual((code, msg), ("InvalidParameterException", "The RecoveryWindowInDays value must be "
                                                                        "between 7 and 30 days (inclusive)."))
        code, _ = self.err(self.sm.delete_secret, SecretId=name, RecoveryWindowInDays=7,
                           ForceDeleteWithoutRecovery=True)
        self.assertEqual(code, "InvalidParameterException")
        r = self.sm.delete_secret(SecretId=name)  # 30 days of DAY_MS
        self.assertEqual((r["ARN"], r["Name"]), (arn, name))
        marked = "You can't perform this operation on the secret because it was marked for deletion."
        for fn, kw in ((self.sm.get_secret_value, {}), (self.sm.put_secret_value, {"SecretString": "w"}),
                       (self.sm.update_secret, {"Description": "x"}),
                       (self.sm.tag_resource, {"Tags": [{"Key": "a", "Value": "b"}]})):
            self.assertEqual(self.err(fn, SecretId=name, **kw), ("InvalidRequestException", marked))
        self.assertIn("DeletedDate", self.sm.describe_secret(SecretId=name))
        self.assertNotIn(name, [s["Name"] for s in self.sm.list_secrets()["SecretList"]])
        status, out = self.raw("ListSecrets", {"IncludePlannedDeletion": True})
        self.assertEqual(status, 200, out)
        self.assertIn(name, [s["Name"] for s in out["SecretList"]])
        self.assertIn("DeletedDate", [s for s in out["SecretList"] if s["Name"] == name][0])
        code, msg = self.err(self.sm.create_secret, Name=name, SecretString="again")
        self.assertEqual(code, "InvalidRequestException")
        self.assertIn("scheduled for deletion", msg)
        self.assertEqual(self.sm.restore_secret(SecretId=name)["ARN"], arn)
        self.assertNotIn("DeletedDate", self.sm.describe_secret(SecretId=name))
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "v")
        # the window ends (7 days of DAY_MS) and the scheduler deletes the secret
        r = self.sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
        self.assertAlmostEqual(r["DeletionDate"].timestamp() - time.time(), 7 * DAY_MS / 1000, delta=2)
        deadline = time.time() + 15
        while True:
            try:
                self.sm.describe_secret(SecretId=name)
            except ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], "ResourceNotFoundException")
                break
            self.assertLess(time.time(), deadline, "the secret was not deleted at the end of its window")
            time.sleep(0.3)
        self.assertEqual(self.err(self.sm.restore_secret, SecretId=name)[0], "ResourceNotFoundException")
        # the name is free again, with a new ARN
        self.assertNotEqual(self.sm.create_secret(Name=name, SecretString="new")["ARN"], arn)
        # forced: gone at once; forcing an unknown name is not an error
        self.sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        self.assertEqual(self.err(self.sm.describe_secret, SecretId=name)[0], "ResourceNotFoundException")
        self.sm.delete_secret(SecretId="t/del/never-existed", ForceDeleteWithoutRecovery=True)
        deletions = [e for e in trail_events(self.server.data_dir)
                     if e.get("eventName") == "DeleteSecret" and e.get("eventType") == "AwsServiceEvent"]
        self.assertTrue(any(e["resources"][0]["ARN"] == arn for e in deletions), deletions)

    # ---- listing, tags -----------------------------------------------------------------------

    def test_list_filters_sort_and_paging(self):
        for i, (desc, tags) in enumerate((("Payments database", [{"Key": "env", "Value": "prod"}]),
                                          ("payments cache", [{"Key": "env", "Value": "dev"}]),
                                          ("Reporting", [{"Key": "owner", "Value": "bi"}]))):
            self.sm.create_secret(Name="t/list/s%d" % i, SecretString="v", Description=desc, Tags=tags)

        def names(**kw):
            out, token = [], None
            while True:
                args = dict(kw)
                if token:
                    args["NextToken"] = token
                r = self.sm.list_secrets(**args)
                out += [s["Name"] for s in r["SecretList"]]
                token = r.get("NextToken")
                if not token:
                    return [n for n in out if n.startswith("t/list/")]

        self.assertEqual(names(Filters=[{"Key": "name", "Values": ["t/list/"]}]), ["t/list/s0", "t/list/s1", "t/list/s2"])
        self.assertEqual(names(Filters=[{"Key": "description", "Values": ["payments"]}]), ["t/list/s0", "t/list/s1"])
        self.assertEqual(names(Filters=[{"Key": "tag-key", "Values": ["env"]},
                                        {"Key": "tag-value", "Values": ["prod"]}]), ["t/list/s0"])
        self.assertEqual(names(Filters=[{"Key": "name", "Values": ["t/list/"]},
                                        {"Key": "tag-key", "Values": ["!env"]}]), ["t/list/s2"])
        self.assertEqual(names(Filters=[{"Key": "all", "Values": ["reporting"]}]), ["t/list/s2"])
        self.assertEqual(names(Filters=[{"Key": "name", "Values": ["t/list/"]}], SortOrder="desc"),
                         ["t/list/s2", "t/list/s1", "t/list/s0"])
        self.assertEqual(names(Filters=[{"Key": "name", "Values": ["t/list/"]}], MaxResults=1),
                         ["t/list/s0", "t/list/s1", "t/list/s2"])
        r = self.sm.list_secrets(Filters=[{"Key": "name", "Values": ["t/list/s0"]}])["SecretList"][0]
        self.assertIn("SecretVersionsToStages", r)
        self.assertNotIn("VersionIdsToStages", r)
        code, _ = self.err(self.sm.list_secrets, NextToken="not-a-token")
        self.assertEqual(code, "InvalidNextTokenException")
        code, _ = self.err(self.sm.list_secrets, Filters=[{"Key": "name", "Values": ["bad#char"]}])
        self.assertEqual(code, "ValidationException")

    def test_tags(self):
        self.sm.create_secret(Name="t/tags", SecretString="v", Tags=[{"Key": "a", "Value": "1"}])
        self.sm.tag_resource(SecretId="t/tags", Tags=[{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in self.sm.describe_secret(SecretId="t/tags")["Tags"]),
                         [("a", "2"), ("b", "3")])
        self.sm.untag_resource(SecretId="t/tags", TagKeys=["a", "missing"])
        self.assertEqual(self.sm.describe_secret(SecretId="t/tags")["Tags"], [{"Key": "b", "Value": "3"}])
        code, _ = self.err(self.sm.tag_resource, SecretId="t/tags", Tags=[{"Key": "aws:x", "Value": "1"}])
        self.assertEqual(code, "InvalidParameterException")
        code, _ = self.err(self.sm.tag_resource, SecretId="t/tags",
                           Tags=[{"Key": "k%d" % i, "Value": "v"} for i in range(50)])
        self.assertEqual(code, "LimitExceededException")

    # ---- GetRandomPassword, BatchGetSecretValue ----------------------------------------------

    def test_get_random_password(self):
        pw = self.sm.get_random_password()["RandomPassword"]
        self.assertEqual(len(pw), 32)
        for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits, PUNCTUATION):
            self.assertTrue(any(c in cls for c in pw), (cls, pw))
        self.assertNotIn(" ", pw)
        for _ in range(20):
            pw = self.sm.get_random_password(PasswordLength=4, ExcludeCharacters="abcXYZ0123")["RandomPassword"]
            self.assertEqual(len(pw), 4)
            self.assertFalse(set(pw) & set("abcXYZ0123"))
            self.assertTrue(any(c.islower() for c in pw) and any(c.isupper() for c in pw)
                            and any(c.isdigit() for c in pw) and any(c in PUNCTUATION for c in pw), pw)
        pw = self.sm.get_random_password(PasswordLength=200, ExcludeNumbers=True, ExcludePunctuation=True,
                                         ExcludeUppercase=True, IncludeSpace=True)["RandomPassword"]
        self.assertTrue(set(pw) <= set(string.ascii_lowercase + " ") and " " in pw, pw)
        pw = self.sm.get_random_password(PasswordLength=1, RequireEachIncludedType=False,
                                         ExcludeLowercase=True, ExcludeUppercase=True,
                                         ExcludePunctuation=True)["RandomPassword"]
        self.assertTrue(pw.isdigit())
        code, msg = self.err(self.sm.get_random_password, PasswordLength=3)
        self.assertEqual((code, msg), ("InvalidParameterException",
                                       "Password length is too short based on the required types."))
        self.assertEqual(len(self.sm.get_random_password(PasswordLength=4096)["RandomPassword"]), 4096)
        code, _ = self.err(self.sm.get_random_password, PasswordLength=4097)
        self.assertEqual(code, "ValidationException")
        # distinct draws
        self.assertEqual(len({self.sm.get_random_password()["RandomPassword"] for _ in range(10)}), 10)

    def test_batch_get_secret_value(self):
        a = self.sm.create_secret(Name="t/batch/a", SecretString="va")["ARN"]
        self.sm.create_secret(Name="t/batch/b", SecretBinary=b"vb")
        status, r = self.raw("BatchGetSecretValue", {"SecretIdList": [a, "t/batch/b", "t/batch/missing"]})
        self.assertEqual(status, 200, r)
        self.assertEqual(sorted((v["Name"], v.get("SecretString") or base64.b64decode(v["SecretBinary"]).decode())
                                for v in r["SecretValues"]), [("t/batch/a", "va"), ("t/batch/b", "vb")])
        self.assertEqual([(e["SecretId"], e["ErrorCode"]) for e in r["Errors"]],
                         [("t/batch/missing", "ResourceNotFoundException")])
        status, r = self.raw("BatchGetSecretValue", {"Filters": [{"Key": "name", "Values": ["t/batch/"]}],
                                                     "MaxResults": 1})
        self.assertEqual((status, len(r["SecretValues"])), (200, 1))
        status, r2 = self.raw("BatchGetSecretValue", {"Filters": [{"Key": "name", "Values": ["t/batch/"]}],
                                                      "MaxResults": 1, "NextToken": r["NextToken"]})
        self.assertEqual({r["SecretValues"][0]["Name"], r2["SecretValues"][0]["Name"]}, {"t/batch/a", "t/batch/b"})
        status, r = self.raw("BatchGetSecretValue", {"SecretIdList": [a],
                                                     "Filters": [{"Key": "name", "Values": ["x"]}]})
        self.assertEqual((status, r["__type"]), (400, "InvalidParameterException"))
        status, r = self.raw("BatchGetSecretValue", {"SecretIdList": [a], "MaxResults": 2})
        self.assertEqual((status, r["__type"]), (400, "InvalidParameterException"))
        for e in trail_events(self.server.data_dir):
            self.assertNotIn('"va"', json.dumps(e.get("responseElements")))

    # ---- KMS ---------------------------------------------------------------------------------

    def test_customer_key_and_kms_decrypt_of_the_caller(self):
        kms = self.server.client("kms")
        key = kms.create_key(Description="secrets customer key")["KeyMetadata"]
        name = "t/kms/customer"
        self.sm.create_secret(Name=name, SecretString="customer-canary-31f", KmsKeyId=key["Arn"])
        d = self.sm.describe_secret(SecretId=name)
        self.assertEqual(d["KmsKeyId"], key["Arn"])
        self.assertEqual(self.sm.list_secret_version_ids(SecretId=name)["Versions"][0]["KmsKeyIds"], [key["Arn"]])
        iam = self.server.client("iam")
        creds = self.user(iam, "sm-no-kms", policy_doc(
            {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}))
        user = self.client_as("secretsmanager", creds)
        self.eventually(lambda: user.describe_secret(SecretId=name))
        code, msg = self.err(user.get_secret_value, SecretId=name)
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("kms:Decrypt", msg)
        # the default key needs no KMS permission of the caller: the service uses it on its behalf
        user.create_secret(Name="t/kms/by-user", SecretString="user-value")
        self.assertEqual(user.get_secret_value(SecretId="t/kms/by-user")["SecretString"], "user-value")
        self.assertNotIn("KmsKeyId", user.describe_secret(SecretId="t/kms/by-user"))
        iam.put_user_policy(UserName="sm-no-kms", PolicyName="kms", PolicyDocument=policy_doc(
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key["Arn"]}))
        self.assertEqual(self.eventually(lambda: user.get_secret_value(SecretId=name))["SecretString"],
                         "customer-canary-31f")
        # a disabled key cannot decrypt
        kms.disable_key(KeyId=key["KeyId"])
        code, _ = self.err(self.sm.get_secret_value, SecretId=name)
        self.assertEqual(code, "DecryptionFailure")
        kms.enable_key(KeyId=key["KeyId"])
        # changing the key re-encrypts the labelled versions
        key2 = kms.create_key(Description="second")["KeyMetadata"]
        self.sm.update_secret(SecretId=name, KmsKeyId=key2["Arn"])
        self.assertEqual(self.sm.list_secret_version_ids(SecretId=name)["Versions"][0]["KmsKeyIds"], [key2["Arn"]])
        kms.disable_key(KeyId=key["KeyId"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "customer-canary-31f")
        # a key that does not exist encrypts nothing and is not kept
        code, _ = self.err(self.sm.update_secret, SecretId=name, KmsKeyId="alias/no-such-key")
        self.assertEqual(code, "EncryptionFailure")
        code, _ = self.err(self.sm.create_secret, Name="t/kms/bad-key", SecretString="x", KmsKeyId="alias/no-such-key")
        self.assertEqual(code, "EncryptionFailure")
        self.assertEqual(self.sm.describe_secret(SecretId=name)["KmsKeyId"], key2["Arn"])
        # back to the default key: KmsKeyId disappears from DescribeSecret
        self.sm.update_secret(SecretId=name, KmsKeyId="")
        self.assertNotIn("KmsKeyId", self.sm.describe_secret(SecretId=name))
        self.assertEqual(self.sm.list_secret_version_ids(SecretId=name)["Versions"][0]["KmsKeyIds"],
                         ["DefaultEncryptionKey"])

    # ---- resource policies -------------------------------------------------------------------

    def test_resource_policy_same_account(self):
        iam = self.server.client("iam")
        creds = self.user(iam, "sm-reader")  # no identity policy at all
        reader = self.client_as("secretsmanager", creds)
        arn = self.sm.create_secret(Name="t/pol/same", SecretString="shared")["ARN"]
        code, _ = self.eventually(lambda: self.err(reader.get_secret_value, SecretId=arn))
        self.assertEqual(code, "AccessDeniedException")
        user_arn = "arn:aws:iam::%s:user/sm-reader" % ACCOUNT
        doc = policy_doc({"Effect": "Allow", "Principal": {"AWS": user_arn},
                          "Action": "secretsmanager:GetSecretValue", "Resource": "*"})
        self.sm.put_resource_policy(SecretId=arn, ResourcePolicy=doc)
        self.assertEqual(json.loads(self.sm.get_resource_policy(SecretId=arn)["ResourcePolicy"]), json.loads(doc))
        self.assertEqual(reader.get_secret_value(SecretId=arn)["SecretString"], "shared")
        self.assertEqual(self.err(reader.describe_secret, SecretId=arn)[0], "AccessDeniedException")
        # an identity policy alone is enough in the same account, even with a policy on the secret
        iam.put_user_policy(UserName="sm-reader", PolicyName="describe", PolicyDocument=policy_doc(
            {"Effect": "Allow", "Action": "secretsmanager:DescribeSecret", "Resource": arn}))
        self.eventually(lambda: reader.describe_secret(SecretId=arn))
        # an explicit Deny on the secret wins
        self.sm.put_resource_policy(SecretId=arn, ResourcePolicy=policy_doc(
            {"Effect": "Deny", "Principal": {"AWS": user_arn}, "Action": "secretsmanager:*", "Resource": "*"}))
        self.assertEqual(self.err(reader.describe_secret, SecretId=arn)[0], "AccessDeniedException")
        self.sm.delete_resource_policy(SecretId=arn)
        self.assertNotIn("ResourcePolicy", self.sm.get_resource_policy(SecretId=arn))
        reader.describe_secret(SecretId=arn)
        self.assertEqual(self.err(reader.get_secret_value, SecretId=arn)[0], "AccessDeniedException")
        # malformed and public policies
        code, _ = self.err(self.sm.put_resource_policy, SecretId=arn, ResourcePolicy="{not json")
        self.assertEqual(code, "MalformedPolicyDocumentException")
        public = policy_doc({"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue",
                             "Resource": "*"})
        code, _ = self.err(self.sm.put_resource_policy, SecretId=arn, ResourcePolicy=public, BlockPublicPolicy=True)
        self.assertEqual(code, "PublicPolicyException")
        self.assertNotIn("ResourcePolicy", self.sm.get_resource_policy(SecretId=arn))
        confined = policy_doc({"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue",
                               "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}})
        self.sm.put_resource_policy(SecretId=arn, ResourcePolicy=confined, BlockPublicPolicy=True)
        v = self.sm.validate_resource_policy(ResourcePolicy=public)
        self.assertFalse(v["PolicyValidationPassed"])
        v = self.sm.validate_resource_policy(SecretId=arn, ResourcePolicy=confined)
        self.assertEqual((v["PolicyValidationPassed"], v["ValidationErrors"]), (True, []))
        v = self.sm.validate_resource_policy(ResourcePolicy="[]")
        self.assertFalse(v["PolicyValidationPassed"])

    def test_identity_policy_on_resource_tags(self):
        iam = self.server.client("iam")
        creds = self.user(iam, "sm-tagged", policy_doc(
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/team": "core"}}},
            {"Effect": "Allow", "Action": "secretsmanager:DescribeSecret", "Resource": "*",
             "Condition": {"StringEquals": {"secretsmanager:ResourceTag/team": "core"}}}))
        user = self.client_as("secretsmanager", creds)
        self.sm.create_secret(Name="t/abac/core", SecretString="c", Tags=[{"Key": "team", "Value": "core"}])
        self.sm.create_secret(Name="t/abac/other", SecretString="o", Tags=[{"Key": "team", "Value": "web"}])
        self.assertEqual(self.eventually(lambda: user.get_secret_value(SecretId="t/abac/core"))["SecretString"], "c")
        user.describe_secret(SecretId="t/abac/core")
        self.assertEqual(self.err(user.get_secret_value, SecretId="t/abac/other")[0], "AccessDeniedException")
        self.assertEqual(self.err(user.describe_secret, SecretId="t/abac/other")[0], "AccessDeniedException")

    def test_resource_policy_cross_account(self):
        b = self.create_account("sm-consumer")
        b_id = b["AccountId"]
        iam_b = self.client_as("iam", b)
        reader = self.user(iam_b, "reader", policy_doc(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "kms:Decrypt"], "Resource": "*"}))
        sm_b = self.client_as("secretsmanager", reader)
        reader_arn = "arn:aws:iam::%s:user/reader" % b_id
        kms = self.server.client("kms")
        key = kms.create_key(Description="shared with B", Policy=policy_doc(
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": reader_arn}, "Action": "kms:Decrypt", "Resource": "*"}))
        key = key["KeyMetadata"]
        arn = self.sm.create_secret(Name="t/pol/cross", SecretString="for-b", KmsKeyId=key["Arn"])["ARN"]
        default_arn = self.sm.create_secret(Name="t/pol/cross-default", SecretString="x")["ARN"]
        # no resource policy: another account is refused whatever its own policies say
        code, _ = self.eventually(lambda: self.err(sm_b.get_secret_value, SecretId=arn))
        self.assertEqual(code, "AccessDeniedException")
        share = {"Effect": "Allow", "Principal": {"AWS": reader_arn}, "Action": "secretsmanager:GetSecretValue",
                 "Resource": "*"}
        self.sm.put_resource_policy(SecretId=arn, ResourcePolicy=policy_doc(share))
        self.sm.put_resource_policy(SecretId=default_arn, ResourcePolicy=policy_doc(share))
        self.assertEqual(sm_b.get_secret_value(SecretId=arn)["SecretString"], "for-b")
        # by name it is B's own namespace: nothing there
        self.assertEqual(self.err(sm_b.get_secret_value, SecretId="t/pol/cross")[0], "ResourceNotFoundException")
        # the default key cannot be used from another account
        code, msg = self.err(sm_b.get_secret_value, SecretId=default_arn)
        self.assertEqual(code, "InvalidRequestException")
        self.assertIn("default KMS service key", msg)
        # both sides must allow: without B's identity policy the resource policy is not enough
        iam_b.delete_user_policy(UserName="reader", PolicyName="inline")
        code, _ = self.eventually(lambda: self.err(sm_b.get_secret_value, SecretId=arn))
        self.assertEqual(code, "AccessDeniedException")

    # ---- authentication, the CLI, the trail --------------------------------------------------

    def test_unknown_key_and_bad_signature_change_nothing(self):
        akid, secret = self.server.credentials()
        stranger = self.server.client("secretsmanager", akid="AKIAIOSFODNN7EXAMPLE", secret="x" * 40)
        code, _ = self.err(stranger.create_secret, Name="t/auth/a", SecretString="v")
        self.assertEqual(code, "UnrecognizedClientException")
        forger = self.server.client("secretsmanager", akid=akid,
                                    secret=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        code, _ = self.err(forger.create_secret, Name="t/auth/a", SecretString="v")
        self.assertEqual(code, "InvalidSignatureException")
        self.assertEqual(self.err(self.sm.describe_secret, SecretId="t/auth/a")[0], "ResourceNotFoundException")

    def test_aws_cli(self):
        rc, out, err = self.server.aws("secretsmanager", "create-secret", "--name", "t/cli/one",
                                       "--secret-string", '{"user":"u","password":"p"}', "--description", "cli",
                                       check=True)
        arn = out["ARN"]
        rc, out, err = self.server.aws("secretsmanager", "get-secret-value", "--secret-id", arn, check=True)
        self.assertEqual(json.loads(out["SecretString"]), {"user": "u", "password": "p"})
        self.server.aws("secretsmanager", "put-secret-value", "--secret-id", "t/cli/one", "--secret-string", "v2",
                        check=True)
        rc, out, err = self.server.aws("secretsmanager", "describe-secret", "--secret-id", "t/cli/one", check=True)
        self.assertEqual(sorted(sum(out["VersionIdsToStages"].values(), [])), ["AWSCURRENT", "AWSPREVIOUS"])
        rc, out, err = self.server.aws("secretsmanager", "get-random-password", "--password-length", "12",
                                       "--exclude-punctuation", check=True)
        self.assertRegex(out["RandomPassword"], r"^[A-Za-z0-9]{12}$")
        rc, out, err = self.server.aws("secretsmanager", "get-secret-value", "--secret-id", "t/cli/missing")
        self.assertNotEqual(rc, 0)
        self.assertIn("ResourceNotFoundException", err)
        rc, out, err = self.server.aws("secretsmanager", "delete-secret", "--secret-id", "t/cli/one",
                                       "--recovery-window-in-days", "7", check=True)
        self.assertIn("DeletionDate", out)

    def test_trail_never_holds_a_value(self):
        value = "trail-canary-5e81b"
        self.sm.create_secret(Name="t/trail", SecretString=value)
        self.sm.put_secret_value(SecretId="t/trail", SecretBinary=value.encode() + b"-bin")
        self.sm.get_secret_value(SecretId="t/trail", VersionStage="AWSPREVIOUS")
        pw = self.sm.get_random_password()["RandomPassword"]
        deadline = time.time() + 10
        while True:
            evs = [e for e in trail_events(self.server.data_dir)
                   if e.get("eventSource") == "secretsmanager.amazonaws.com"]
            names = {e["eventName"] for e in evs}
            if {"CreateSecret", "PutSecretValue", "GetSecretValue", "GetRandomPassword"} <= names:
                break
            self.assertLess(time.time(), deadline, names)
            time.sleep(0.2)
        blob64 = base64.b64encode(value.encode() + b"-bin").decode()
        for e in evs:
            text = json.dumps(e)
            self.assertNotIn(value, text)
            self.assertNotIn(blob64, text)
            self.assertNotIn(pw, text)
        with open(os.path.join(self.server.data_dir, "cofferd.log"), "rb") as f:
            self.assertNotIn(value.encode(), f.read())


class SecretValuesInMemoryTest(ServerTestCase):
    """Secret values and generated passwords do not linger in cofferd's memory after the requests
    that carried them (scan as in test_security_memory.py), nor reach its database in clear."""

    def test_values_leave_no_copy(self):
        pid = self.server.proc.pid
        if sanitized_build():
            self.skipTest("memory scan skipped under sanitizers")
        if not can_read_memory(pid):
            self.skipTest("cannot read cofferd's memory (needs root or CAP_SYS_PTRACE)")
        sm = self.server.client("secretsmanager")
        text = base64.b32encode(os.urandom(40)).decode()
        blob = os.urandom(3000)
        arn = sm.create_secret(Name="mem/string", SecretString=text)["ARN"]
        sm.create_secret(Name="mem/binary", SecretBinary=blob)
        for _ in range(10):
            self.assertEqual(sm.get_secret_value(SecretId=arn)["SecretString"], text)
            self.assertEqual(sm.get_secret_value(SecretId="mem/binary")["SecretBinary"], blob)
        text2 = base64.b32encode(os.urandom(40)).decode()
        sm.put_secret_value(SecretId=arn, SecretString=text2)
        sm.update_secret(SecretId=arn, SecretString=text2 + "-updated")
        pw = sm.get_random_password(PasswordLength=64, ExcludePunctuation=True)["RandomPassword"]
        sm._endpoint.http_session.close()
        time.sleep(0.5)
        needles = {"string": text.encode(), "string 2": text2.encode(), "password": pw.encode(),
                   "binary head": blob[:64], "binary tail": blob[-64:],
                   "binary (base64)": base64.b64encode(blob)[1000:1100]}
        found = []
        for region, data in process_memory(pid):
            for what, needle in needles.items():
                at = data.find(needle)
                if at >= 0:
                    found.append("%s in %s at +0x%x" % (what, region, at))
        self.assertEqual(found, [])
        for f in os.listdir(self.server.data_dir):
            if f.startswith("coffer.db"):
                with open(os.path.join(self.server.data_dir, f), "rb") as fh:
                    db = fh.read()
                for what, needle in needles.items():
                    self.assertNotIn(needle, db, "%s in %s" % (what, f))


if __name__ == "__main__":
    unittest.main()
