"""Terraform with the hashicorp/aws provider against cofferd: SSM parameters people write.

Terraform and the provider come from the machine (/usr/local/bin/terraform and the provider
unpacked under /opt/tf-plugins, used as a filesystem mirror), as in test_terraform.py. One test
walks the life of a configuration: aws_ssm_parameter of type String, StringList and
SecureString (the default key and a customer key made by aws_kms_key), with tags; the
aws_ssm_parameter and aws_ssm_parameters_by_path data sources; an Advanced-tier SecureString over
4 KB; apply, a second plan that must
show no change (the provider reads back through GetParameter, DescribeParameters filters and
ListTagsForResource), an in-place update of value, description and tags that makes a new
version, and destroy, checking what cofferd holds after each step through boto3.
"""
import os
import shutil
import textwrap
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase
from test_terraform import TerraformSteps, tf_provider, tf_run, tf_workdir

# An Advanced-tier SecureString over 4 KB: sealed under a KMS data key (envelope), not one Encrypt.
BIG = "x" * 6000


class TerraformSsmTest(TerraformSteps, ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tf_workdir()
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")
        cls.kms = cls.server.client("kms")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def tf(cls, *args, ok_codes=(0,)):
        return tf_run(cls.work, *args, ok_codes=ok_codes)

    def write_config(self, value, description, tags):
        provider = tf_provider(self.server, ("ssm", "kms", "iam", "sts"))
        resources = textwrap.dedent("""\
            resource "aws_kms_key" "cmk" {
              description             = "parameters"
              deletion_window_in_days = 7
            }
            resource "aws_ssm_parameter" "str" {
              name        = "/tf/app/str"
              type        = "String"
              value       = "%(value)s"
              description = "%(description)s"
              tags        = %(tags)s
            }
            resource "aws_ssm_parameter" "list" {
              name  = "/tf/app/list"
              type  = "StringList"
              value = "a,b,c"
            }
            resource "aws_ssm_parameter" "sec_default" {
              name  = "/tf/app/sec-default"
              type  = "SecureString"
              value = "default-key-secret"
            }
            resource "aws_ssm_parameter" "sec_cmk" {
              name        = "/tf/app/sec-cmk"
              type        = "SecureString"
              value       = "customer-key-secret"
              key_id      = aws_kms_key.cmk.key_id
              description = "customer key"
              tags        = { owner = "ops" }
            }
            resource "aws_ssm_parameter" "big" {
              name  = "/tf/app/big"
              type  = "SecureString"
              tier  = "Advanced"
              value = "%(big)s"
            }
            data "aws_ssm_parameter" "sec_cmk" {
              name = aws_ssm_parameter.sec_cmk.name
            }
            data "aws_ssm_parameters_by_path" "app" {
              path       = "/tf/app"
              depends_on = [aws_ssm_parameter.str, aws_ssm_parameter.list, aws_ssm_parameter.sec_default,
                            aws_ssm_parameter.sec_cmk, aws_ssm_parameter.big]
            }
            output "cmk_id" { value = aws_kms_key.cmk.key_id }
            output "str_version" { value = aws_ssm_parameter.str.version }
            output "str_arn" { value = aws_ssm_parameter.str.arn }
            output "sec_cmk_value" { value = nonsensitive(data.aws_ssm_parameter.sec_cmk.value) }
            output "sec_cmk_type" { value = data.aws_ssm_parameter.sec_cmk.type }
            output "path_names" { value = data.aws_ssm_parameters_by_path.app.names }
            output "path_values" { value = nonsensitive(data.aws_ssm_parameters_by_path.app.values) }
            """) % {"value": value, "description": description, "big": BIG,
                    "tags": "{ %s }" % ", ".join('%s = "%s"' % kv for kv in sorted(tags.items()))}
        with open(os.path.join(self.work, "main.tf"), "w") as f:
            f.write(provider + resources)

    def tags(self, name):
        return {t["Key"]: t["Value"] for t in
                self.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]}

    def test_lifecycle(self):
        # Apply.
        self.write_config("v1", "first", {"team": "core"})
        self.tf("init", "-input=false", "-no-color")
        self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        out = self.outputs()
        p = self.ssm.get_parameter(Name="/tf/app/str")["Parameter"]
        self.assertEqual((p["Type"], p["Value"], p["Version"]), ("String", "v1", 1))
        self.assertEqual(out["str_arn"], p["ARN"])
        self.assertEqual(self.tags("/tf/app/str"), {"team": "core"})
        self.assertEqual(self.ssm.get_parameter(Name="/tf/app/list")["Parameter"]["Value"], "a,b,c")
        meta = {m["Name"]: m for m in self.ssm.describe_parameters(ParameterFilters=[
            {"Key": "Path", "Option": "Recursive", "Values": ["/tf"]}])["Parameters"]}
        self.assertEqual(meta["/tf/app/sec-default"]["KeyId"], "alias/aws/ssm")
        self.assertEqual(meta["/tf/app/sec-cmk"]["KeyId"], out["cmk_id"])
        # the stored values are ciphertexts; decrypted they are what was written
        for name, secret in (("/tf/app/sec-default", "default-key-secret"), ("/tf/app/sec-cmk", "customer-key-secret")):
            self.assertNotEqual(self.ssm.get_parameter(Name=name)["Parameter"]["Value"], secret)
            self.assertEqual(self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"], secret)
        self.assertEqual((out["sec_cmk_value"], out["sec_cmk_type"]), ("customer-key-secret", "SecureString"))
        self.assertEqual(sorted(out["path_names"]), ["/tf/app/big", "/tf/app/list", "/tf/app/sec-cmk",
                                                     "/tf/app/sec-default", "/tf/app/str"])
        self.assertEqual(meta["/tf/app/big"]["Tier"], "Advanced")
        self.assertEqual(self.ssm.get_parameter(Name="/tf/app/big", WithDecryption=True)["Parameter"]["Value"], BIG)
        values = dict(zip(out["path_names"], out["path_values"]))
        self.assertEqual((values["/tf/app/sec-default"], values["/tf/app/str"]), ("default-key-secret", "v1"))

        # Nothing drifts: a refresh reads back exactly what was applied.
        self.assert_no_changes()

        # In-place update of value, description and tags: a new version of the same parameter.
        self.write_config("v2", "second", {"team": "platform", "env": "dev"})
        _, log = self.tf("apply", "-auto-approve", "-no-color", "-input=false")
        self.assertIn("0 added", log)
        self.assertIn("0 destroyed", log)
        p = self.ssm.get_parameter(Name="/tf/app/str")["Parameter"]
        self.assertEqual((p["Value"], p["Version"]), ("v2", 2))
        hist = self.ssm.get_parameter_history(Name="/tf/app/str")["Parameters"]
        self.assertEqual([(h["Version"], h["Value"], h["Description"]) for h in hist],
                         [(1, "v1", "first"), (2, "v2", "second")])
        self.assertEqual(self.tags("/tf/app/str"), {"team": "platform", "env": "dev"})
        self.assertEqual(self.outputs()["str_version"], 2)
        self.assert_no_changes()

        # Destroy deletes every parameter.
        self.tf("destroy", "-auto-approve", "-no-color", "-input=false")
        for name in ("/tf/app/str", "/tf/app/list", "/tf/app/sec-default", "/tf/app/sec-cmk", "/tf/app/big"):
            with self.assertRaises(ClientError) as cm:
                self.ssm.get_parameter(Name=name)
            self.assertEqual(cm.exception.response["Error"]["Code"], "ParameterNotFound")
        self.assertEqual(self.ssm.get_parameters_by_path(Path="/tf", Recursive=True)["Parameters"], [])


if __name__ == "__main__":
    unittest.main()
