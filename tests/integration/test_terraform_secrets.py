"""Terraform with the hashicorp/aws provider against cofferd: Secrets Manager as people write it.

Terraform and the provider come from the machine, as in test_terraform.py. One test walks the
life of a configuration: aws_secretsmanager_secret (the default key and a customer key made by
aws_kms_key, tags, an inline resource policy, a recovery window), aws_secretsmanager_secret_version
with a string and with a binary value, and the aws_secretsmanager_secret,
aws_secretsmanager_secret_version and aws_secretsmanager_random_password data sources, and
aws_secretsmanager_secret_rotation with a rotation function (test_secrets_rotation.py's, run by
cofferd through --rotation-function), whose first rotation runs on apply; apply, a
second plan that must show no change (the provider reads DescribeSecret, GetResourcePolicy and
GetSecretValue on every refresh, so they must read back exactly what was applied), an in-place
update (a new value makes a new AWSCURRENT version, a new description and tags change the
secret), and destroy, which schedules deletion with the recovery window. What cofferd holds is
checked through boto3 after each step.
"""
import base64
import json
import os
import shutil
import stat
import textwrap
import time
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase
from secrets_rotation_common import FUNCTION, fn_arn
from test_terraform import TerraformSteps, tf_provider, tf_run, tf_workdir

BINARY = bytes(range(256))


class TerraformSecretsTest(TerraformSteps, ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tf_workdir()
        fn = os.path.join(cls.work, "rotate.py")
        cls.extra_args = ServerTestCase.extra_args + ("--rotation-function", "%s=exec:%s" % (fn_arn("rotate"), fn))
        super().setUpClass()
        # the function reads where cofferd is from its configuration when it runs
        cfg = os.path.join(cls.work, "rotate.json")
        akid, secret = cls.server.credentials()
        with open(cfg, "w") as f:
            json.dump({"endpoint": cls.server.endpoint, "ca": cls.server.ca, "akid": akid, "secret": secret,
                       "dir": cls.work}, f)
        with open(fn, "w") as f:
            f.write(FUNCTION % {"mode": "ok", "cfg": cfg})
        os.chmod(fn, stat.S_IRWXU)
        cls.sm = cls.server.client("secretsmanager")
        cls.account = cls.server.client("sts").get_caller_identity()["Account"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def tf(cls, *args, ok_codes=(0,)):
        return tf_run(cls.work, *args, ok_codes=ok_codes)

    def write_config(self, value, description, tags, rotation_days=30):
        account = self.account
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "ReadFromTheAccount", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::%s:root" % account},
            "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})
        provider = tf_provider(self.server, ("secretsmanager", "kms", "iam", "sts"))
        resources = textwrap.dedent("""\
            resource "aws_kms_key" "cmk" {
              description             = "secrets"
              deletion_window_in_days = 7
            }
            resource "aws_secretsmanager_secret" "db" {
              name                    = "tf/app/db"
              description             = "%(description)s"
              kms_key_id              = aws_kms_key.cmk.arn
              recovery_window_in_days = 7
              policy                  = jsonencode(%(policy)s)
              tags                    = %(tags)s
            }
            resource "aws_secretsmanager_secret_version" "db" {
              secret_id     = aws_secretsmanager_secret.db.id
              secret_string = jsonencode({ username = "app", password = "%(value)s" })
            }
            resource "aws_secretsmanager_secret" "blob" {
              name                    = "tf/app/blob"
              recovery_window_in_days = 0
            }
            resource "aws_secretsmanager_secret_version" "blob" {
              secret_id     = aws_secretsmanager_secret.blob.id
              secret_binary = "%(binary)s"
            }
            resource "aws_secretsmanager_secret" "rotated" {
              name                    = "tf/app/rotated"
              recovery_window_in_days = 0
            }
            resource "aws_secretsmanager_secret_version" "rotated" {
              secret_id     = aws_secretsmanager_secret.rotated.id
              secret_string = "first"
              lifecycle { ignore_changes = [version_stages] }
            }
            resource "aws_secretsmanager_secret_rotation" "rotated" {
              secret_id           = aws_secretsmanager_secret.rotated.id
              rotation_lambda_arn = "%(function)s"
              rotation_rules {
                automatically_after_days = %(rotation_days)d
              }
              depends_on = [aws_secretsmanager_secret_version.rotated]
            }
            data "aws_secretsmanager_secret" "db" {
              arn = aws_secretsmanager_secret.db.arn
            }
            data "aws_secretsmanager_secret_version" "db" {
              secret_id  = aws_secretsmanager_secret.db.id
              depends_on = [aws_secretsmanager_secret_version.db]
            }
            data "aws_secretsmanager_random_password" "pw" {
              password_length     = 24
              exclude_punctuation = true
            }
            output "db_arn" { value = aws_secretsmanager_secret.db.arn }
            output "db_version" { value = aws_secretsmanager_secret_version.db.version_id }
            output "cmk_arn" { value = aws_kms_key.cmk.arn }
            output "read_value" { value = nonsensitive(data.aws_secretsmanager_secret_version.db.secret_string) }
            output "read_description" { value = data.aws_secretsmanager_secret.db.description }
            """) % {"value": value, "description": description, "policy": policy, "function": fn_arn("rotate"),
                    "rotation_days": rotation_days,
                    "binary": base64.b64encode(BINARY).decode(),
                    "tags": "{ %s }" % ", ".join('%s = "%s"' % kv for kv in sorted(tags.items()))}
        with open(os.path.join(self.work, "main.tf"), "w") as f:
            f.write(provider + resources)

    def current(self, secret_id):
        return self.sm.get_secret_value(SecretId=secret_id)

    def test_lifecycle(self):
        # Apply.
        self.write_config("pw-1", "first", {"team": "core"})
        self.tf("init", "-input=false", "-no-color")
        self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        out = self.outputs()
        d = self.sm.describe_secret(SecretId="tf/app/db")
        self.assertEqual(d["ARN"], out["db_arn"])
        self.assertEqual(d["KmsKeyId"], out["cmk_arn"])
        self.assertEqual(d["Description"], "first")
        self.assertEqual({t["Key"]: t["Value"] for t in d["Tags"]}, {"team": "core"})
        v = self.current("tf/app/db")
        self.assertEqual(json.loads(v["SecretString"]), {"username": "app", "password": "pw-1"})
        self.assertEqual(v["VersionId"], out["db_version"])
        self.assertEqual(json.loads(out["read_value"]), {"username": "app", "password": "pw-1"})
        self.assertEqual(out["read_description"], "first")
        self.assertEqual(self.current("tf/app/blob")["SecretBinary"], BINARY)
        stmt = json.loads(self.sm.get_resource_policy(SecretId="tf/app/db")["ResourcePolicy"])["Statement"][0]
        self.assertEqual(stmt["Action"], "secretsmanager:GetSecretValue")
        # The password data source is read afresh on every plan: read it from the state, not
        # through an output that would then change on every plan.
        _, state = self.tf("show", "-json", "-no-color")
        pw = next(r["values"]["random_password"] for r in json.loads(state)["values"]["root_module"]["resources"]
                  if r["address"] == "data.aws_secretsmanager_random_password.pw")
        self.assertEqual(len(pw), 24)
        self.assertTrue(all(c.isalnum() for c in pw), pw)

        # The rotation is configured, and its first rotation (RotateImmediately) moves AWSCURRENT
        # to a version the function wrote.
        d = self.sm.describe_secret(SecretId="tf/app/rotated")
        self.assertTrue(d["RotationEnabled"])
        self.assertEqual(d["RotationLambdaARN"], fn_arn("rotate"))
        self.assertEqual(d["RotationRules"]["AutomaticallyAfterDays"], 30)
        deadline = time.time() + 120
        while time.time() < deadline and "LastRotatedDate" not in d:
            time.sleep(0.5)
            d = self.sm.describe_secret(SecretId="tf/app/rotated")
        self.assertIn("LastRotatedDate", d)
        self.assertNotEqual(self.current("tf/app/rotated")["SecretString"], "first")

        # Nothing drifts: a refresh reads back exactly what was applied.
        self.assert_no_changes()

        # Update: description and tags change the secret in place; a new value replaces the
        # version resource (the provider's way), which is a new AWSCURRENT version of the same
        # secret, the old one becoming AWSPREVIOUS.
        self.write_config("pw-2", "second", {"team": "platform", "env": "dev"}, rotation_days=45)
        _, log = self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        self.assertIn("Resources: 1 added, 2 changed, 1 destroyed", log)
        self.assertEqual(self.sm.describe_secret(SecretId="tf/app/rotated")["RotationRules"]["AutomaticallyAfterDays"],
                         45)
        out2 = self.outputs()
        self.assertNotEqual(out2["db_version"], out["db_version"])
        self.assertEqual(json.loads(self.current("tf/app/db")["SecretString"])["password"], "pw-2")
        prev = self.sm.get_secret_value(SecretId="tf/app/db", VersionStage="AWSPREVIOUS")
        self.assertEqual(prev["VersionId"], out["db_version"])
        d = self.sm.describe_secret(SecretId="tf/app/db")
        self.assertEqual(d["ARN"], out["db_arn"])
        self.assertEqual(d["Description"], "second")
        self.assertEqual({t["Key"]: t["Value"] for t in d["Tags"]}, {"team": "platform", "env": "dev"})
        self.assert_no_changes()

        # Destroy: the secret with a recovery window is scheduled for deletion (restorable), the
        # one with recovery_window_in_days = 0 is gone at once.
        self.tf("destroy", "-auto-approve", "-no-color", "-input=false")
        d = self.sm.describe_secret(SecretId="tf/app/db")
        self.assertIn("DeletedDate", d)
        with self.assertRaises(ClientError) as cm:
            self.current("tf/app/db")
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidRequestException")
        with self.assertRaises(ClientError) as cm:
            self.sm.describe_secret(SecretId="tf/app/blob")
        self.assertEqual(cm.exception.response["Error"]["Code"], "ResourceNotFoundException")
        # Restored, it reads again once its key (scheduled for deletion by the same destroy) is
        # taken back: while the key is pending deletion nothing decrypts.
        self.sm.restore_secret(SecretId="tf/app/db")
        with self.assertRaises(ClientError) as cm:
            self.current("tf/app/db")
        self.assertEqual(cm.exception.response["Error"]["Code"], "DecryptionFailure")
        kms = self.server.client("kms")
        kms.cancel_key_deletion(KeyId=out["cmk_arn"])
        kms.enable_key(KeyId=out["cmk_arn"])
        self.assertEqual(json.loads(self.current("tf/app/db")["SecretString"])["password"], "pw-2")


if __name__ == "__main__":
    unittest.main()
