"""`coffer store migrate`: an embedded deployment (SQLite in its data dir) moved to PostgreSQL.
Keys (one rotated, so with two materials), aliases, Parameter Store parameters and Secrets
Manager secrets are made on SQLite; after the migration cofferd runs on the same data dir with
--store postgres://... and serves them all: old ciphertexts decrypt. The tool refuses a target
that holds records unless told, refuses while a cofferd runs on the data dir, and a copy the
data dir's root key does not open is reported as a failure.

The throw-away cluster comes from pg_cluster.py; the suite is skipped when the PostgreSQL server
binaries are missing.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

from botocore.exceptions import ClientError

import pg_cluster
from harness import COFFER, Cofferd, js_ok

ARGS = ("--quota-crypto-rps", "0")


def migrate(data_dir, url, *extra):
    return subprocess.run([COFFER, "store", "migrate", "--from", "sqlite:" + data_dir, "--to", url] + list(extra),
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL, text=True)


class StoreMigrateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = pg_cluster.unavailable_reason()
        if reason:
            raise unittest.SkipTest("no PostgreSQL for the migration tests: %s" % reason)
        cls.cluster = pg_cluster.PgCluster().start()
        cls.node = None
        try:
            cls.node = Cofferd(extra_args=ARGS, store="sqlite").start()
            cls.populate()
            # A migration under a running cofferd is refused: its records could change meanwhile.
            cls.url = cls.cluster.createdb("coffer_migrated")
            cls.refused_while_running = migrate(cls.node.data_dir, cls.url)
            cls.node.stop()
            cls.first = migrate(cls.node.data_dir, cls.url)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def populate(cls):
        kms, ssm, sm = cls.node.client(), cls.node.client("ssm"), cls.node.client("secretsmanager")
        cls.keys = [kms.create_key(Description="k%d" % i)["KeyMetadata"]["KeyId"] for i in range(3)]
        kms.create_alias(AliasName="alias/migrated", TargetKeyId=cls.keys[1])
        cls.cts = [(kms.encrypt(KeyId=k, Plaintext=b"before " + k.encode())["CiphertextBlob"], b"before " + k.encode())
                   for k in cls.keys]
        # A rotated key: ciphertexts of the old material and of the new.
        js_ok(cls.node, "RotateKeyOnDemand", KeyId=cls.keys[2])  # newer than Debian's boto3
        cls.cts.append((kms.encrypt(KeyId=cls.keys[2], Plaintext=b"after rotation")["CiphertextBlob"],
                        b"after rotation"))
        cls.cts.append((kms.encrypt(KeyId="alias/migrated", Plaintext=b"via alias")["CiphertextBlob"], b"via alias"))
        ssm.put_parameter(Name="/app/plain", Value="plain value", Type="String")
        ssm.put_parameter(Name="/app/secret", Value="secure value", Type="SecureString")
        sm.create_secret(Name="app/db", SecretString="s3cr3t")

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.node is not None:
                cls.node.cleanup()
        finally:
            cls.cluster.stop()

    def test_refused_while_cofferd_runs(self):
        self.assertEqual(self.refused_while_running.returncode, 1, self.refused_while_running.stderr)

    def test_migrated_deployment_serves_everything(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        self.assertIn("coffer store: copied", self.first.stderr)
        self.assertIn("coffer store: verified", self.first.stderr)
        # Ours and the AWS managed keys of Parameter Store and Secrets Manager; the rotated key
        # has two materials.
        self.assertIn("5 KMS keys, 6 key materials unseal", self.first.stdout)
        node = Cofferd(data_dir=self.node.data_dir, extra_args=ARGS, store=self.url).start()
        try:
            kms = node.client()
            for ct, pt in self.cts:
                self.assertEqual(kms.decrypt(CiphertextBlob=ct)["Plaintext"], pt)
            listed = [k["KeyId"] for k in kms.list_keys()["Keys"]]
            self.assertEqual(sorted(k for k in listed if k in self.keys), sorted(self.keys))
            self.assertTrue(kms.encrypt(KeyId="alias/migrated", Plaintext=b"x")["KeyId"].endswith(self.keys[1]))
            ssm = node.client("ssm")
            self.assertEqual(ssm.get_parameter(Name="/app/plain")["Parameter"]["Value"], "plain value")
            self.assertEqual(ssm.get_parameter(Name="/app/secret", WithDecryption=True)["Parameter"]["Value"],
                             "secure value")
            sm = node.client("secretsmanager")
            self.assertEqual(sm.get_secret_value(SecretId="app/db")["SecretString"], "s3cr3t")
            # And it goes on as a PostgreSQL deployment.
            new = kms.create_key()["KeyMetadata"]["KeyId"]
            kms.encrypt(KeyId=new, Plaintext=b"new")
        finally:
            self.assertEqual(node.stop(), 0)

    def test_non_empty_target_refused_unless_told(self):
        url = self.cluster.createdb("coffer_twice")
        r = migrate(self.node.data_dir, url)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = migrate(self.node.data_dir, url)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already holds", r.stderr)
        self.assertIn("--overwrite", r.stderr)
        r = migrate(self.node.data_dir, url, "--overwrite")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("5 KMS keys", r.stdout)

    def test_copy_the_root_key_does_not_open_fails(self):
        other = tempfile.mkdtemp(prefix="coffer-migrate-wrongkey-")
        try:
            for name in ("coffer.db", "root.key"):
                shutil.copy2(os.path.join(self.node.data_dir, name), other)
            with open(os.path.join(other, "root.key"), "wb") as f:
                f.write(os.urandom(32))
            r = migrate(other, self.cluster.createdb("coffer_wrongkey"))
            self.assertEqual(r.returncode, 1)
            self.assertIn("the copy does not open", r.stderr)
        finally:
            shutil.rmtree(other, ignore_errors=True)

    def test_bad_arguments(self):
        r = subprocess.run([COFFER, "store", "migrate", "--from", "mysql:x", "--to", "postgres://x"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([COFFER, "store", "migrate", "--from", "sqlite:/nonexistent", "--to",
                            "postgres://u:hunter2@127.0.0.1:1/x"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a data dir", r.stderr)
        self.assertNotIn("hunter2", r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main()
