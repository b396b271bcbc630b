"""AWS managed keys through boto3: alias/aws/ssm and alias/aws/secretsmanager appear on first
use, belong to their service and are on record."""
import json
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase, trail_events


class ManagedKeysTest(ServerTestCase):
    def setUp(self):
        self.kms = self.server.client("kms")

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"]

    def test_listed_before_use_then_created_once(self):
        names = {a["AliasName"]: a for a in self.kms.list_aliases()["Aliases"]}
        self.assertIn("alias/aws/ssm", names)
        self.assertIn("alias/aws/secretsmanager", names)
        self.assertNotIn("TargetKeyId", names["alias/aws/secretsmanager"])

        meta = self.kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
        self.assertEqual(meta["KeyManager"], "AWS")
        self.assertEqual(meta["KeySpec"], "SYMMETRIC_DEFAULT")
        self.assertEqual(meta["KeyState"], "Enabled")
        again = self.kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
        self.assertEqual(again["KeyId"], meta["KeyId"])
        names = {a["AliasName"]: a for a in self.kms.list_aliases()["Aliases"]}
        self.assertEqual(names["alias/aws/secretsmanager"]["TargetKeyId"], meta["KeyId"])

        created = [e for e in trail_events(self.server.data_dir)
                   if e.get("eventName") == "CreateKey" and e.get("eventType") == "AwsServiceEvent"]
        self.assertEqual(len(created), 1)
        self.assertIn(meta["KeyId"], json.dumps(created[0]))

    def test_usable_only_through_its_service(self):
        key = self.kms.describe_key(KeyId="alias/aws/ssm")["KeyMetadata"]["KeyId"]
        self.assertEqual(self.error(self.kms.encrypt, KeyId="alias/aws/ssm", Plaintext=b"x"),
                         "AccessDeniedException")
        policy = json.loads(self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        cond = policy["Statement"][0]["Condition"]["StringEquals"]
        self.assertEqual(cond["kms:ViaService"], "ssm.us-east-1.amazonaws.com")
        self.assertEqual(self.error(self.kms.put_key_policy, KeyId=key, PolicyName="default",
                                    Policy=json.dumps(policy)), "AccessDeniedException")
        self.assertEqual(self.error(self.kms.disable_key, KeyId=key), "AccessDeniedException")
        self.assertEqual(self.error(self.kms.schedule_key_deletion, KeyId=key), "AccessDeniedException")

    def test_reserved_names(self):
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.assertEqual(self.error(self.kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=key),
                         "ValidationException")
        self.assertEqual(self.error(self.kms.describe_key, KeyId="alias/aws/lambda"), "NotFoundException")


if __name__ == "__main__":
    unittest.main()
