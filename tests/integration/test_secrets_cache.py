"""Reads of Secrets Manager are served from a cache of parsed records: on one node a read never
sees less than what was acknowledged before it started, whatever the write (a new value, a
moved label, a description, a policy, a deletion, a restore), also with writers and readers
racing on several connections.
"""
import json
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase, readers_never_go_back


class SecretsCacheTest(ServerTestCase):
    def test_every_write_is_read_back_at_once(self):
        sm = self.server.client("secretsmanager")
        sm.create_secret(Name="cache/one", SecretString="v0")
        self.assertEqual(sm.get_secret_value(SecretId="cache/one")["SecretString"], "v0")
        for i in range(1, 6):
            put = sm.put_secret_value(SecretId="cache/one", SecretString="v%d" % i)
            got = sm.get_secret_value(SecretId="cache/one")
            self.assertEqual((got["SecretString"], got["VersionId"]), ("v%d" % i, put["VersionId"]))
        sm.update_secret(SecretId="cache/one", Description="described")
        self.assertEqual(sm.describe_secret(SecretId="cache/one")["Description"], "described")
        # move AWSCURRENT back to an older version
        versions = sm.list_secret_version_ids(SecretId="cache/one")["Versions"]
        current = next(v["VersionId"] for v in versions if "AWSCURRENT" in v["VersionStages"])
        older = next(v["VersionId"] for v in versions if "AWSPREVIOUS" in v["VersionStages"])
        sm.update_secret_version_stage(SecretId="cache/one", VersionStage="AWSCURRENT",
                                       MoveToVersionId=older, RemoveFromVersionId=current)
        self.assertEqual(sm.get_secret_value(SecretId="cache/one")["VersionId"], older)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"},
                                                           "Action": "secretsmanager:DeleteSecret", "Resource": "*"}]}
        sm.put_resource_policy(SecretId="cache/one", ResourcePolicy=json.dumps(policy))
        self.assertEqual(json.loads(sm.get_resource_policy(SecretId="cache/one")["ResourcePolicy"]), policy)
        sm.delete_resource_policy(SecretId="cache/one")
        self.assertNotIn("ResourcePolicy", sm.get_resource_policy(SecretId="cache/one"))
        sm.delete_secret(SecretId="cache/one", RecoveryWindowInDays=7)
        with self.assertRaises(ClientError) as cm:
            sm.get_secret_value(SecretId="cache/one")
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidRequestException")
        sm.restore_secret(SecretId="cache/one")
        self.assertEqual(sm.get_secret_value(SecretId="cache/one")["VersionId"], older)
        sm.delete_secret(SecretId="cache/one", ForceDeleteWithoutRecovery=True)
        with self.assertRaises(ClientError) as cm:
            sm.get_secret_value(SecretId="cache/one")
        self.assertEqual(cm.exception.response["Error"]["Code"], "ResourceNotFoundException")
        # a secret made again under the same name is the new one, not the cached old one
        sm.create_secret(Name="cache/one", SecretString="again")
        self.assertEqual(sm.get_secret_value(SecretId="cache/one")["SecretString"], "again")

    def test_racing_readers_never_go_back(self):
        sm = self.server.client("secretsmanager")
        sm.create_secret(Name="cache/race", SecretString="0")
        errors = readers_never_go_back(
            self.server, "secretsmanager",
            lambda c, i: c.put_secret_value(SecretId="cache/race", SecretString=str(i)),
            lambda c: int(c.get_secret_value(SecretId="cache/race")["SecretString"]))
        self.assertEqual(errors, [])
        self.assertEqual(sm.get_secret_value(SecretId="cache/race")["SecretString"], "40")


if __name__ == "__main__":
    unittest.main()
