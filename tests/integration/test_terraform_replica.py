"""Terraform's aws_kms_replica_key across two cofferd deployments (us-east-1 and eu-west-1, each
the other's peer). The provider sends ReplicateKey to the replica region's endpoint, signed for
the primary's region with the replica provider's credentials; cofferd there creates the replica
by pulling it from the primary. Apply, a second plan with no change, an in-place update of the
replica's description, and destroy, checked through boto3 on both sides."""
import json
import os
import shutil
import textwrap
import time
import unittest

from harness import PeerRegions
from test_terraform import TerraformSteps, tf_run, tf_workdir

EAST, WEST = "us-east-1", "eu-west-1"


def allow(action):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})


class TerraformReplicaTest(TerraformSteps, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.work = tf_workdir()
        try:
            cls.peers = PeerRegions((EAST, WEST),
                                    extra_args=("--quota-crypto-rps", "0", "--deletion-day-ms", "100")).start()
        except Exception:
            shutil.rmtree(cls.work, ignore_errors=True)
            raise
        cls.servers = cls.peers.servers
        cls.kms = {r: cls.servers[r].client("kms", region=r) for r in (EAST, WEST)}
        # The primary lets the replica region's replication principal replicate its keys.
        cls.servers[EAST].client("iam", region=EAST).put_user_policy(
            UserName="replicator", PolicyName="replicate", PolicyDocument=allow("kms:ReplicateKey"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        cls.peers.stop()

    def tf(self, *args, ok_codes=(0,)):
        return tf_run(self.work, *args, ok_codes=ok_codes)

    def provider(self, region, alias):
        s = self.servers[region]
        akid, secret = s.credentials()
        return textwrap.dedent("""\
            provider "aws" {
              %(alias)s
              region                      = "%(region)s"
              access_key                  = "%(akid)s"
              secret_key                  = "%(secret)s"
              skip_credentials_validation = true
              skip_requesting_account_id  = false
              skip_metadata_api_check     = true
              skip_region_validation      = true
              custom_ca_bundle            = "%(ca)s"
              endpoints {
                kms = "%(endpoint)s"
                iam = "%(endpoint)s"
                sts = "%(endpoint)s"
              }
            }
            """) % {"alias": 'alias = "%s"' % alias if alias else "", "region": region, "akid": akid,
                    "secret": secret, "ca": s.ca, "endpoint": s.endpoint}

    def write_config(self, replica_description):
        resources = textwrap.dedent("""\
            resource "aws_kms_key" "primary" {
              provider                = aws.primary
              description             = "multi-Region primary"
              deletion_window_in_days = 7
              multi_region            = true
            }
            resource "aws_kms_replica_key" "replica" {
              description             = "%(description)s"
              deletion_window_in_days = 7
              primary_key_arn         = aws_kms_key.primary.arn
              tags = { side = "west" }
            }
            output "key_id" { value = aws_kms_key.primary.key_id }
            output "replica_arn" { value = aws_kms_replica_key.replica.arn }
            """) % {"description": replica_description}
        with open(os.path.join(self.work, "main.tf"), "w") as f:
            f.write('terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }\n}\n')
            f.write(self.provider(EAST, "primary") + self.provider(WEST, None) + resources)

    def test_replica_key_lifecycle(self):
        self.write_config("replica in the west")
        self.tf("init", "-input=false", "-no-color")
        self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        out = self.outputs()
        key_id = out["key_id"]
        self.assertEqual(out["replica_arn"], "arn:aws:kms:%s:%s:key/%s" % (WEST, PeerRegions.ACCOUNT, key_id))
        west = self.kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual((west["KeyState"], west["Description"]), ("Enabled", "replica in the west"))
        self.assertEqual(west["MultiRegionConfiguration"]["MultiRegionKeyType"], "REPLICA")
        self.assertEqual(self.kms[WEST].list_resource_tags(KeyId=key_id)["Tags"],
                         [{"TagKey": "side", "TagValue": "west"}])
        east = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual([r["Region"] for r in east["MultiRegionConfiguration"]["ReplicaKeys"]], [WEST])
        blob = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"across")["CiphertextBlob"]
        self.assertEqual(self.kms[WEST].decrypt(CiphertextBlob=blob)["Plaintext"], b"across")
        self.assert_no_changes()

        # In place: the replica's own description.
        self.write_config("renamed replica")
        _, applied = self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        self.assertIn("0 added", applied)
        self.assertIn("0 destroyed", applied)
        self.assertEqual(self.kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]["Description"],
                         "renamed replica")

        # The replica first; once its waiting period (7 days of 100 ms) is over and the primary
        # knows, the primary's own deletion waits for nothing.
        self.tf("destroy", "-auto-approve", "-no-color", "-input=false", "-target=aws_kms_replica_key.replica")
        deadline = time.time() + 30
        while time.time() < deadline:
            replicas = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
            if not replicas["ReplicaKeys"]:
                break
            time.sleep(0.5)
        self.assertEqual(replicas["ReplicaKeys"], [])
        self.tf("destroy", "-auto-approve", "-no-color", "-input=false")
        self.assertEqual(self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"], "PendingDeletion")


if __name__ == "__main__":
    unittest.main()
