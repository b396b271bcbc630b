"""Terraform's aws_secretsmanager_secret with a replica {} block across two cofferd deployments
(us-east-1, the primary's region, and eu-west-1, each the other's peer). The provider creates the
secret with AddReplicaRegions and reads the replica's status back through DescribeSecret on every
refresh; cofferd replicates to the west on its own. Apply (a replica under the west's default key),
a second plan with no change, an in-place change to a second replica under a customer key made in
the west, and destroy (the provider removes the replicas before it deletes the secret), checked
through boto3 on both sides."""
import shutil
import textwrap
import time
import unittest

from botocore.exceptions import ClientError

from harness import PeerRegions
from test_terraform import TerraformSteps, tf_provider, tf_run, tf_workdir

EAST, WEST = "us-east-1", "eu-west-1"
NAME = "tf/replicated"


class TerraformSecretReplicaTest(TerraformSteps, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.work = tf_workdir()
        try:
            cls.peers = PeerRegions((EAST, WEST)).start()
        except Exception:
            shutil.rmtree(cls.work, ignore_errors=True)
            raise
        cls.servers = cls.peers.servers
        cls.sm = {r: cls.servers[r].client("secretsmanager", region=r) for r in (EAST, WEST)}
        cls.kms = {r: cls.servers[r].client("kms", region=r) for r in (EAST, WEST)}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        cls.peers.stop()

    def tf(self, *args, ok_codes=(0,)):
        return tf_run(self.work, *args, ok_codes=ok_codes)

    def write_config(self, description, replica_key_arn=None):
        replica = "  replica {\n    region = \"%s\"\n" % WEST
        if replica_key_arn is not None:
            replica += "    kms_key_id = \"%s\"\n" % replica_key_arn
        replica += "  }\n"
        resources = textwrap.dedent("""\
            resource "aws_secretsmanager_secret" "s" {
              name                    = "%(name)s"
              description             = "%(description)s"
              recovery_window_in_days = 0
            %(replica)s}
            resource "aws_secretsmanager_secret_version" "v" {
              secret_id     = aws_secretsmanager_secret.s.id
              secret_string = "replicated value"
            }
            output "arn" { value = aws_secretsmanager_secret.s.arn }
            output "replica_status" { value = one(aws_secretsmanager_secret.s.replica).status }
            """) % {"name": NAME, "description": description, "replica": replica}
        with open(self.work + "/main.tf", "w") as f:
            f.write(tf_provider(self.servers[EAST], ("secretsmanager", "kms", "iam", "sts")) + resources)

    def wait_west(self, fn, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if fn():
                    return True
            except ClientError:
                pass
            time.sleep(0.3)
        return fn()

    def test_secret_replica_lifecycle(self):
        self.write_config("first")
        self.tf("init", "-input=false", "-no-color")
        self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        out = self.outputs()
        self.assertIn(":%s:" % EAST, out["arn"])
        self.assertIn(out["replica_status"], ("InSync", "InProgress"))
        self.assertTrue(self.wait_west(
            lambda: self.sm[WEST].get_secret_value(SecretId=NAME)["SecretString"] == "replicated value"))
        west = self.sm[WEST].describe_secret(SecretId=NAME)
        self.assertEqual(west["ARN"], out["arn"].replace(":%s:" % EAST, ":%s:" % WEST))
        self.assertEqual((west["PrimaryRegion"], west["Description"]), (EAST, "first"))
        self.assertTrue(self.wait_west(
            lambda: self.sm[EAST].describe_secret(SecretId=NAME)["ReplicationStatus"][0]["Status"] == "InSync"))
        self.tf("refresh", "-no-color", "-input=false")
        self.assertEqual(self.outputs()["replica_status"], "InSync")
        self.assert_no_changes()

        # In place: the description reaches the replica; then the replica under a west key.
        self.write_config("second")
        _, applied = self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        self.assertIn("0 destroyed", applied)
        self.assertTrue(self.wait_west(
            lambda: self.sm[WEST].describe_secret(SecretId=NAME)["Description"] == "second"))
        west_key = self.kms[WEST].create_key(Description="west secrets")["KeyMetadata"]["Arn"]
        self.write_config("second", west_key)
        self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        self.assertTrue(self.wait_west(
            lambda: self.sm[WEST].describe_secret(SecretId=NAME).get("KmsKeyId") == west_key))
        self.assertEqual(self.sm[WEST].get_secret_value(SecretId=NAME)["SecretString"], "replicated value")
        self.assertTrue(self.wait_west(
            lambda: self.sm[EAST].describe_secret(SecretId=NAME)["ReplicationStatus"][0]["Status"] == "InSync"))
        self.tf("refresh", "-no-color", "-input=false")
        self.assert_no_changes()

        # Destroy: the replica goes with RemoveRegionsFromReplication, then the secret.
        self.tf("destroy", "-auto-approve", "-no-color", "-input=false")
        for region in (EAST, WEST):
            with self.assertRaises(ClientError) as cm:
                self.sm[region].describe_secret(SecretId=NAME)
            self.assertEqual(cm.exception.response["Error"]["Code"], "ResourceNotFoundException", region)


if __name__ == "__main__":
    unittest.main()
