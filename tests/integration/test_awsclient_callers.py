"""The callers of the AWS client against a live cofferd: where `coffer admin` and the KMS keyring
(through `coffer encrypt|decrypt`) take their credentials from, and how they fail.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, ServerTestCase  # noqa: E402

COFFER = os.path.join(BUILD_DIR, "coffer")


class AwsClientCallersTest(ServerTestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="awsclient-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def run_coffer(self, args, env=None):
        t0 = time.monotonic()
        r = subprocess.run([COFFER] + args, capture_output=True, timeout=120,
                           env=env if env is not None else self.server.env())
        return r.returncode, r.stdout.decode(), r.stderr.decode(), time.monotonic() - t0

    # ---- coffer admin: the data dir only ----

    def test_admin_ignores_the_aws_environment(self):
        # A shell set up for some other AWS account must not leak into operator calls.
        env = dict(self.server.env(), AWS_ACCESS_KEY_ID="AKIDOTHERACCOUNT", AWS_SECRET_ACCESS_KEY="other",
                   AWS_SESSION_TOKEN="tok", AWS_REGION="eu-west-3", AWS_PROFILE="nosuch",
                   AWS_ENDPOINT_URL="http://127.0.0.1:1", AWS_CA_BUNDLE=self.path("missing.pem"))
        rc, out, err, _ = self.run_coffer(["admin", "list-accounts", "--data-dir", self.server.data_dir], env)
        self.assertEqual(rc, 0, err)
        self.assertIn("Accounts", out)

    def test_admin_partial_credentials(self):
        d = self.path("dir")
        os.makedirs(d)
        with open(os.path.join(d, "credentials"), "w") as f:
            f.write("[coffer]\naws_access_key_id = %s\n" % self.server.credentials()[0])
        rc, _, err, _ = self.run_coffer(["admin", "list-accounts", "--data-dir", d,
                                         "--endpoint", self.server.endpoint])
        self.assertEqual(rc, 1)
        self.assertIn("partial credentials", err)
        self.assertIn("aws_secret_access_key", err)

    def test_admin_unreachable_endpoint_is_bounded(self):
        rc, _, err, took = self.run_coffer(["admin", "list-accounts", "--data-dir", self.server.data_dir,
                                            "--endpoint", "http://127.0.0.1:1"])
        self.assertEqual(rc, 1)
        self.assertIn("CofferAdmin.ListAccounts to http://127.0.0.1:1 failed", err)
        self.assertLess(took, 10)  # a few quick retries, then an answer

    # ---- the KMS keyring: the SDK chain ----

    def keyring_env(self, config_text):
        env = {k: v for k, v in self.server.env().items()}
        env.update({"AWS_SHARED_CREDENTIALS_FILE": self.path("no-credentials-file"),
                    "AWS_CONFIG_FILE": self.write("config", config_text),
                    "AWS_PROFILE": "ci"})
        return env

    def test_keyring_credentials_from_the_config_file(self):
        key = self.server.client().create_key()["KeyMetadata"]["Arn"]
        akid, secret = self.server.credentials()
        pt = self.write("pt", "attack at dawn\n" * 100)
        kr = ["-w", "provider=aws-kms", "key=" + key, "endpoint=" + self.server.endpoint]
        # No credentials file; the profile's section of the config file holds the keys.
        env = self.keyring_env("[profile ci]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                               % (akid, secret))
        rc, _, err, _ = self.run_coffer(["encrypt", "-i", pt, "-o", self.path("ct")] + kr, env)
        self.assertEqual(rc, 0, err)
        rc, _, err, _ = self.run_coffer(["decrypt", "-i", self.path("ct"), "-o", self.path("out")] + kr, env)
        self.assertEqual(rc, 0, err)
        with open(self.path("out")) as f:
            self.assertEqual(f.read(), "attack at dawn\n" * 100)

        # In the config file, [ci] is not profile ci: only [profile ci] is.
        env = self.keyring_env("[ci]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (akid, secret))
        rc, _, err, _ = self.run_coffer(["encrypt", "-i", pt, "-o", self.path("ct2")] + kr, env)
        self.assertNotEqual(rc, 0)
        self.assertFalse(os.path.exists(self.path("ct2")) and os.path.getsize(self.path("ct2")) > 0)


if __name__ == "__main__":
    unittest.main()
