"""Terraform with the hashicorp/aws provider against cofferd: the KMS resources people write.

Terraform and the provider come from the machine (/usr/local/bin/terraform and the provider
unpacked under /opt/tf-plugins, used as a filesystem mirror), so no registry is needed. One
test walks the life of a configuration: apply, a second plan that must show no change, an
in-place update, and destroy, checking what cofferd holds after each step through boto3.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import unittest

from harness import ServerTestCase, js_ok

TERRAFORM = os.environ.get("COFFER_TERRAFORM", "/usr/local/bin/terraform")
PLUGINS = "/opt/tf-plugins"
# The 256-bit key aws_kms_external_key imports (Terraform wraps it with the import parameters).
MATERIAL = bytes(range(32))
MATERIAL_B64 = base64.b64encode(MATERIAL).decode()

POLICY_TEMPLATE = """{
  "Version": "2012-10-17",
  "Id": "%(id)s",
  "Statement": [{
    "Sid": "Enable IAM policies",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::%(account)s:root"},
    "Action": "kms:*",
    "Resource": "*"
  }]
}"""


def tf_workdir():
    """A temporary working directory with a CLI config that installs the provider from the mirror."""
    if not os.access(TERRAFORM, os.X_OK) or not os.path.isdir(PLUGINS):
        raise AssertionError("terraform (%s) and its provider mirror (%s) are needed" % (TERRAFORM, PLUGINS))
    work = tempfile.mkdtemp(prefix="coffer-tf-")
    with open(os.path.join(work, "cli.tfrc"), "w") as f:
        f.write(textwrap.dedent("""\
            provider_installation {
              filesystem_mirror {
                path    = "%s"
                include = ["registry.terraform.io/hashicorp/aws"]
              }
              direct {
                exclude = ["registry.terraform.io/hashicorp/aws"]
              }
            }
            """ % PLUGINS))
    return work


def tf_run(work, *args, ok_codes=(0,)):
    """Runs terraform in `work` with no AWS_/TF_ settings of the caller's: (exit code, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update({"TF_CLI_CONFIG_FILE": os.path.join(work, "cli.tfrc"), "TF_IN_AUTOMATION": "1",
                "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", "HOME": work})
    if os.environ.get("COFFER_TF_LOG"):  # a debug log of every call the provider makes
        env.update({"TF_LOG": "DEBUG", "TF_LOG_PATH": os.environ["COFFER_TF_LOG"]})
    r = subprocess.run([TERRAFORM] + list(args), cwd=work, env=env, capture_output=True, timeout=600)
    if r.returncode not in ok_codes:
        raise AssertionError("terraform %s exited %d:\n%s\n%s" % (
            " ".join(args), r.returncode, r.stdout.decode()[-6000:], r.stderr.decode()[-6000:]))
    return r.returncode, r.stdout.decode()


def tf_provider(server, services):
    """The terraform block and an aws provider for `server` (us-east-1), with `services` pointed at it."""
    akid, secret = server.credentials()
    endpoints = "".join('    %s = "%s"\n' % (s, server.endpoint) for s in services)
    return textwrap.dedent("""\
        terraform {
          required_providers {
            aws = { source = "hashicorp/aws" }
          }
        }
        provider "aws" {
          region                      = "us-east-1"
          access_key                  = "%(akid)s"
          secret_key                  = "%(secret)s"
          skip_credentials_validation = true
          skip_requesting_account_id  = false
          skip_metadata_api_check     = true
          skip_region_validation      = true
          custom_ca_bundle            = "%(ca)s"
          endpoints {
        """) % {"akid": akid, "secret": secret, "ca": server.ca} + endpoints + "  }\n}\n"


class TerraformSteps:
    """What every Terraform suite asks of its configuration, through its own tf(): the outputs,
    and that a second plan wants no change."""

    def outputs(self):
        _, out = self.tf("output", "-json", "-no-color")
        return {k: v["value"] for k, v in json.loads(out).items()}

    def assert_no_changes(self):
        code, out = self.tf("plan", "-detailed-exitcode", "-no-color", "-input=false", ok_codes=(0, 2))
        self.assertEqual(code, 0, "a second plan wants changes:\n" + out[-6000:])


class TerraformTest(TerraformSteps, ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tf_workdir()
        super().setUpClass()
        cls.kms = cls.server.client("kms")
        cls.account = cls.server.client("sts").get_caller_identity()["Account"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def tf(cls, *args, ok_codes=(0,)):
        return tf_run(cls.work, *args, ok_codes=ok_codes)

    def write_config(self, description, rotation_days, policy_id):
        policy = POLICY_TEMPLATE % {"id": policy_id, "account": self.account}
        provider = tf_provider(self.server, ("kms", "iam", "sts"))
        resources = textwrap.dedent("""\
            resource "aws_kms_key" "sym" {
              description             = "%(description)s"
              deletion_window_in_days = 7
              enable_key_rotation     = true
              rotation_period_in_days = %(rotation)d
              tags = { team = "storage" }
            }
            resource "aws_kms_alias" "sym" {
              name          = "alias/tf-sym"
              target_key_id = aws_kms_key.sym.key_id
            }
            resource "aws_kms_key" "policied" {
              description             = "key with a separate policy resource"
              deletion_window_in_days = 7
            }
            resource "aws_kms_key_policy" "policied" {
              key_id = aws_kms_key.policied.id
              policy = <<-POLICY
            %(policy)s
            POLICY
            }
            resource "aws_kms_grant" "g" {
              name              = "tf-grant"
              key_id            = aws_kms_key.sym.key_id
              grantee_principal = "arn:aws:iam::%(account)s:root"
              operations        = ["Encrypt", "Decrypt", "GenerateDataKey"]
              constraints {
                encryption_context_equals = { app = "tf" }
              }
            }
            resource "aws_kms_key" "rsa" {
              description              = "signing"
              deletion_window_in_days  = 7
              customer_master_key_spec = "RSA_2048"
              key_usage                = "SIGN_VERIFY"
            }
            data "aws_kms_public_key" "rsa" {
              key_id = aws_kms_key.rsa.key_id
            }
            resource "aws_kms_key" "hmac" {
              description              = "macs"
              deletion_window_in_days  = 7
              customer_master_key_spec = "HMAC_256"
              key_usage                = "GENERATE_VERIFY_MAC"
            }
            resource "aws_kms_external_key" "ext" {
              description             = "imported"
              deletion_window_in_days = 7
              key_material_base64     = "%(material)s"
              enabled                 = true
            }
            output "rsa_id" { value = aws_kms_key.rsa.key_id }
            output "rsa_public_key" { value = data.aws_kms_public_key.rsa.public_key }
            output "rsa_signing_algorithms" { value = data.aws_kms_public_key.rsa.signing_algorithms }
            output "hmac_id" { value = aws_kms_key.hmac.key_id }
            output "ext_id" { value = aws_kms_external_key.ext.id }
            output "sym_id" { value = aws_kms_key.sym.key_id }
            output "policied_id" { value = aws_kms_key.policied.key_id }
            output "grant_id" { value = aws_kms_grant.g.grant_id }
            """) % {"description": description, "rotation": rotation_days, "policy": policy,
                    "account": self.account, "material": MATERIAL_B64}
        with open(os.path.join(self.work, "main.tf"), "w") as f:
            f.write(provider + resources)

    def test_lifecycle(self):
        # Apply.
        self.write_config("first description", 180, "policy-1")
        self.tf("init", "-input=false", "-no-color")
        self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        ids = self.outputs()
        sym = self.kms.describe_key(KeyId=ids["sym_id"])["KeyMetadata"]
        self.assertEqual(sym["Description"], "first description")
        self.assertEqual(sym["KeyState"], "Enabled")
        rot = js_ok(self.server, "GetKeyRotationStatus", KeyId=ids["sym_id"])  # period: newer than boto3
        self.assertTrue(rot["KeyRotationEnabled"])
        self.assertEqual(rot["RotationPeriodInDays"], 180)
        aliases = self.kms.list_aliases(KeyId=ids["sym_id"])["Aliases"]
        self.assertEqual([a["AliasName"] for a in aliases], ["alias/tf-sym"])
        tags = self.kms.list_resource_tags(KeyId=ids["sym_id"])["Tags"]
        self.assertEqual(tags, [{"TagKey": "team", "TagValue": "storage"}])
        policy = json.loads(self.kms.get_key_policy(KeyId=ids["policied_id"], PolicyName="default")["Policy"])
        self.assertEqual(policy["Id"], "policy-1")
        grants = self.kms.list_grants(KeyId=ids["sym_id"])["Grants"]
        self.assertEqual([g["GrantId"] for g in grants], [ids["grant_id"]])
        self.assertEqual(grants[0]["Constraints"], {"EncryptionContextEquals": {"app": "tf"}})
        # The asymmetric, HMAC and imported keys, and the public key data source.
        rsa = self.kms.describe_key(KeyId=ids["rsa_id"])["KeyMetadata"]
        self.assertEqual((rsa["KeySpec"], rsa["KeyUsage"]), ("RSA_2048", "SIGN_VERIFY"))
        pub = self.kms.get_public_key(KeyId=ids["rsa_id"])
        self.assertEqual(base64.b64decode(ids["rsa_public_key"]), pub["PublicKey"])
        self.assertIn("RSASSA_PSS_SHA_256", ids["rsa_signing_algorithms"])
        hm = self.kms.describe_key(KeyId=ids["hmac_id"])["KeyMetadata"]
        self.assertEqual((hm["KeySpec"], hm["KeyUsage"]), ("HMAC_256", "GENERATE_VERIFY_MAC"))
        ext = self.kms.describe_key(KeyId=ids["ext_id"])["KeyMetadata"]
        self.assertEqual((ext["Origin"], ext["KeyState"]), ("EXTERNAL", "Enabled"))
        blob = self.kms.encrypt(KeyId=ids["ext_id"], Plaintext=b"imported")["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"imported")

        # The alias Terraform made works for a client.
        blob = self.kms.encrypt(KeyId="alias/tf-sym", Plaintext=b"hello")["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"hello")

        # Nothing drifts: a refresh reads back exactly what was applied.
        self.assert_no_changes()

        # In-place update of description, rotation period and policy.
        self.write_config("second description", 365, "policy-2")
        _, out = self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        self.assertIn("0 added", out)
        self.assertIn("0 destroyed", out)
        self.assertEqual(self.outputs()["sym_id"], ids["sym_id"])
        sym = self.kms.describe_key(KeyId=ids["sym_id"])["KeyMetadata"]
        self.assertEqual(sym["Description"], "second description")
        self.assertEqual(js_ok(self.server, "GetKeyRotationStatus", KeyId=ids["sym_id"])["RotationPeriodInDays"], 365)
        policy = json.loads(self.kms.get_key_policy(KeyId=ids["policied_id"], PolicyName="default")["Policy"])
        self.assertEqual(policy["Id"], "policy-2")
        self.assert_no_changes()

        # Destroy leaves the keys waiting for deletion, as AWS does.
        self.tf("destroy", "-auto-approve", "-no-color", "-input=false")
        for key_id in (ids["sym_id"], ids["policied_id"], ids["rsa_id"], ids["hmac_id"], ids["ext_id"]):
            self.assertEqual(self.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"], "PendingDeletion")
        self.assertEqual(self.kms.list_aliases(KeyId=ids["sym_id"])["Aliases"], [])
        self.assertEqual(self.kms.list_grants(KeyId=ids["sym_id"])["Grants"], [])


if __name__ == "__main__":
    unittest.main()
