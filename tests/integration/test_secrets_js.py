"""Secrets Manager through the AWS SDK for JavaScript v3 (@aws-sdk/client-secrets-manager), the
client most services read their secrets with: it parses every member by the service model
(timestamps as epoch seconds, blobs as base64, errors by their __type), so a shape cofferd gets
wrong fails here even where the CLI and boto3 are lenient.
"""
import base64
import unittest

from harness import ServerTestCase, js_call, js_ok


def sm(server, operation, **params):
    return js_ok(server, operation, "secretsmanager", **params)


class SecretsJsTest(ServerTestCase):
    def test_life_cycle(self):
        created = sm(self.server, "CreateSecret", Name="js/app/db", SecretString='{"password":"one"}',
                     Description="for the app", Tags=[{"Key": "team", "Value": "core"}])
        self.assertTrue(created["ARN"].startswith("arn:aws:secretsmanager:us-east-1:"))
        self.assertEqual(created["Name"], "js/app/db")
        first = created["VersionId"]

        v = sm(self.server, "GetSecretValue", SecretId="js/app/db")
        self.assertEqual((v["SecretString"], v["VersionId"], v["VersionStages"]),
                         ('{"password":"one"}', first, ["AWSCURRENT"]))
        # CreatedDate comes back as a Date the SDK parsed from epoch seconds
        self.assertRegex(v["CreatedDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

        put = sm(self.server, "PutSecretValue", SecretId="js/app/db", SecretString='{"password":"two"}',
                 ClientRequestToken="11111111-2222-4333-8444-555555555555")
        self.assertEqual(put["VersionStages"], ["AWSCURRENT"])
        # the same token and value again: the same version, no new one
        again = sm(self.server, "PutSecretValue", SecretId="js/app/db", SecretString='{"password":"two"}',
                   ClientRequestToken="11111111-2222-4333-8444-555555555555")
        self.assertEqual(again["VersionId"], put["VersionId"])
        prev = sm(self.server, "GetSecretValue", SecretId="js/app/db", VersionStage="AWSPREVIOUS")
        self.assertEqual(prev["VersionId"], first)

        d = sm(self.server, "DescribeSecret", SecretId=created["ARN"])
        self.assertEqual(d["Description"], "for the app")
        self.assertEqual(d["Tags"], [{"Key": "team", "Value": "core"}])
        stages = {vid: sorted(st) for vid, st in d["VersionIdsToStages"].items()}
        self.assertEqual(stages, {first: ["AWSPREVIOUS"], put["VersionId"]: ["AWSCURRENT"]})
        for member in ("CreatedDate", "LastChangedDate", "LastAccessedDate"):
            self.assertIn(member, d)

        versions = sm(self.server, "ListSecretVersionIds", SecretId="js/app/db")["Versions"]
        self.assertEqual(sorted(x["VersionId"] for x in versions), sorted([first, put["VersionId"]]))

    def test_binary_and_batch(self):
        blob = bytes(range(256))
        sm(self.server, "CreateSecret", Name="js/blob", SecretBinary=base64.b64encode(blob).decode())
        sm(self.server, "CreateSecret", Name="js/text", SecretString="plain")
        v = sm(self.server, "GetSecretValue", SecretId="js/blob")
        self.assertEqual(base64.b64decode(v["SecretBinary"]), blob)
        self.assertNotIn("SecretString", v)

        batch = sm(self.server, "BatchGetSecretValue", SecretIdList=["js/blob", "js/text", "js/none"])
        got = {x["Name"]: x for x in batch["SecretValues"]}
        self.assertEqual(got["js/text"]["SecretString"], "plain")
        self.assertEqual(base64.b64decode(got["js/blob"]["SecretBinary"]), blob)
        self.assertEqual([(e["SecretId"], e["ErrorCode"]) for e in batch["Errors"]],
                         [("js/none", "ResourceNotFoundException")])

        names = []
        token = None
        while True:
            page = sm(self.server, "ListSecrets", MaxResults=1,
                      Filters=[{"Key": "name", "Values": ["js/"]}], **({"NextToken": token} if token else {}))
            names += [s["Name"] for s in page["SecretList"]]
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual(sorted(names), ["js/blob", "js/text"])

    def test_errors_have_their_types(self):
        status, message = js_call(self.server, "GetSecretValue", "secretsmanager", SecretId="js/missing")
        self.assertEqual(status, "ResourceNotFoundException")
        self.assertIn("can't find the specified secret", message)
        sm(self.server, "CreateSecret", Name="js/dup", SecretString="x")
        status, _ = js_call(self.server, "CreateSecret", "secretsmanager", Name="js/dup", SecretString="y")
        self.assertEqual(status, "ResourceExistsException")
        sm(self.server, "DeleteSecret", SecretId="js/dup", RecoveryWindowInDays=7)
        status, _ = js_call(self.server, "GetSecretValue", "secretsmanager", SecretId="js/dup")
        self.assertEqual(status, "InvalidRequestException")
        status, _ = js_call(self.server, "DeleteSecret", "secretsmanager", SecretId="js/dup", RecoveryWindowInDays=3)
        self.assertEqual(status, "InvalidParameterException")
        sm(self.server, "RestoreSecret", SecretId="js/dup")
        self.assertEqual(sm(self.server, "GetSecretValue", SecretId="js/dup")["SecretString"], "x")


if __name__ == "__main__":
    unittest.main()
