"""The Encryption SDK's AWS KMS keyring against a live cofferd: keys are made with boto3, the
messages are encrypted and decrypted by the C driver (tests/integration/esdk_kms_driver.c) through libcoffer.
"""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, REGION, ServerTestCase  # noqa: E402

DRIVER = os.environ.get("COFFER_ESDK_KMS_DRIVER") or os.path.join(BUILD_DIR, "esdk_kms_driver")
ACCOUNT = "000000000000"


class EsdkKmsKeyringTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()
        self.tmp = tempfile.TemporaryDirectory(prefix="esdk-kms-")
        self.plain = os.path.join(self.tmp.name, "plain")
        with open(self.plain, "wb") as f:
            f.write(os.urandom(10000) + b"the end")

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def new_key(self):
        return self.kms.create_key()["KeyMetadata"]["Arn"]

    def driver(self, mode, *args, src=None, dst=None):
        cmd = [DRIVER, mode, "--endpoint", self.server.endpoint, "--in", src or self.plain]
        if dst:
            cmd += ["--out", dst]
        r = subprocess.run(cmd + list(args), env=self.server.env(), capture_output=True, timeout=60)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def encrypt(self, keys, *extra):
        out = self.path("msg")
        args = []
        for k in keys:
            args += ["--key", k]
        rc, stdout, err = self.driver("encrypt", *(args + list(extra)), dst=out)
        self.assertEqual(rc, 0, err)
        edks = [line.split(" ", 2)[1:] for line in stdout.splitlines() if line.startswith("edk ")]
        return out, edks

    def decrypt(self, msg, *args):
        out = self.path("dec")
        if os.path.exists(out):
            os.unlink(out)
        rc, _, err = self.driver("decrypt", *args, src=msg, dst=out)
        if rc == 0:
            with open(out, "rb") as f, open(self.plain, "rb") as g:
                self.assertEqual(f.read(), g.read())
        return rc, err

    def test_round_trip_one_key(self):
        arn = self.new_key()
        for suite in ("0x0578", "0x0478"):
            msg, edks = self.encrypt([arn], "--ec", "purpose=test", "--suite", suite)
            self.assertEqual(edks, [["aws-kms", arn]])
            with open(msg, "rb") as f:
                self.assertNotIn(b"the end", f.read())
            rc, err = self.decrypt(msg, "--key", arn, "--ec", "purpose=test")
            self.assertEqual(rc, 0, err)
            rc, err = self.decrypt(msg, "--key", arn)  # the context comes from the header
            self.assertEqual(rc, 0, err)

    def test_alias_generator_records_key_arn(self):
        arn = self.new_key()
        self.kms.create_alias(AliasName="alias/esdk-gen", TargetKeyId=arn)
        msg, edks = self.encrypt(["alias/esdk-gen"])
        self.assertEqual(edks, [["aws-kms", arn]])
        rc, err = self.decrypt(msg, "--key", arn)
        self.assertEqual(rc, 0, err)
        # Strict mode matches EDKs by ARN only: the alias cannot pick the EDK on decrypt.
        rc, err = self.decrypt(msg, "--key", "alias/esdk-gen", "--region", REGION)
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_CANNOT_DECRYPT", err)

    def test_multi_key_decrypt_with_second_only(self):
        a, b = self.new_key(), self.new_key()
        msg, edks = self.encrypt([a, b], "--ec", "tenant=42")
        self.assertEqual(edks, [["aws-kms", a], ["aws-kms", b]])
        rc, err = self.decrypt(msg, "--key", b)
        self.assertEqual(rc, 0, err)
        # The first key alone decrypts too; a third, unrelated key does not.
        self.assertEqual(self.decrypt(msg, "--key", a)[0], 0)
        c = self.new_key()
        rc, err = self.decrypt(msg, "--key", c)
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_CANNOT_DECRYPT", err)

    def test_discovery_filters(self):
        arn = self.new_key()
        msg, _ = self.encrypt([arn])
        rc, err = self.decrypt(msg, "--discovery", "--region", REGION)
        self.assertEqual(rc, 0, err)
        rc, err = self.decrypt(msg, "--discovery", "--region", REGION, "--partition", "aws", "--account", ACCOUNT)
        self.assertEqual(rc, 0, err)
        rc, err = self.decrypt(msg, "--discovery", "--region", REGION, "--partition", "aws",
                               "--account", "111122223333")
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_CANNOT_DECRYPT", err)
        rc, err = self.decrypt(msg, "--discovery", "--region", REGION, "--partition", "aws-cn",
                               "--account", ACCOUNT)
        self.assertEqual(rc, 2)
        # A discovery keyring cannot encrypt; a filter needs both halves.
        rc, _, err = self.driver("encrypt", "--discovery", "--region", REGION, dst=self.path("x"))
        self.assertEqual(rc, 2)
        self.assertIn("discovery keyring cannot encrypt", err)
        rc, _, err = self.driver("decrypt", "--discovery", "--region", REGION, "--partition", "aws",
                                 src=msg, dst=self.path("x"))
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_USAGE", err)

    def test_disabled_key_fails_cleanly(self):
        arn = self.new_key()
        msg, _ = self.encrypt([arn])
        self.kms.disable_key(KeyId=arn)
        rc, err = self.decrypt(msg, "--key", arn)
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_CANNOT_DECRYPT", err)
        self.assertIn("DisabledException", err)
        self.assertFalse(os.path.exists(self.path("dec")))
        rc, _, err = self.driver("encrypt", "--key", arn, dst=self.path("y"))
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_KEYRING", err)
        self.assertIn("GenerateDataKey: DisabledException", err)
        self.kms.enable_key(KeyId=arn)
        self.assertEqual(self.decrypt(msg, "--key", arn)[0], 0)

    def test_wrong_encryption_context(self):
        arn = self.new_key()
        msg, _ = self.encrypt([arn], "--ec", "purpose=a")
        # Through the SDK: the reproduced context must match the header.
        rc, err = self.decrypt(msg, "--key", arn, "--ec", "purpose=b")
        self.assertEqual(rc, 2, err)
        # The keyring alone, asked to unwrap under another context: KMS refuses the data key.
        rc, _, err = self.driver("unwrap-other-ec", "--key", arn, "--ec", "purpose=b", src=msg)
        self.assertEqual(rc, 2)
        self.assertIn("COFFER_STATUS_CANNOT_DECRYPT", err)
        self.assertIn("Decrypt: InvalidCiphertextException", err)
        rc, _, err = self.driver("unwrap-other-ec", "--key", arn, "--ec", "purpose=a", src=msg)
        self.assertEqual(rc, 0, err)

    def test_bad_credentials_and_endpoint(self):
        arn = self.new_key()
        env = self.server.env()
        env["AWS_ACCESS_KEY_ID"] = "AKIAEXAMPLEEXAMPLE00"
        env["AWS_SECRET_ACCESS_KEY"] = "x" * 40
        r = subprocess.run([DRIVER, "encrypt", "--endpoint", self.server.endpoint, "--key", arn,
                            "--in", self.plain, "--out", self.path("z")], env=env, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"UnrecognizedClientException", r.stderr)
        env = self.server.env()
        env.pop("AWS_CA_BUNDLE")
        r = subprocess.run([DRIVER, "encrypt", "--endpoint", self.server.endpoint, "--key", arn,
                            "--in", self.plain, "--out", self.path("z")], env=env, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 2)  # the private CA is not trusted without the bundle
        self.assertIn(b"COFFER_STATUS_UNAVAILABLE", r.stderr)
        env = self.server.env()
        env["AWS_SHARED_CREDENTIALS_FILE"] = self.path("none")
        r = subprocess.run([DRIVER, "encrypt", "--endpoint", self.server.endpoint, "--key", arn,
                            "--in", self.plain, "--out", self.path("z")], env=env, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"no credentials", r.stderr)


if __name__ == "__main__":
    unittest.main()
