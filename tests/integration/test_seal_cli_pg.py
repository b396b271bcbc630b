"""`coffer seal status` and `coffer seal migrate` on nodes that keep their records in PostgreSQL
(pg_nodes.TwoNodes): the commands find the store as cofferd does (--store, else $COFFER_STORE,
else the store line of DIR/cofferd.conf, else DIR/coffer.db), read the root key provider the
database records, and re-wrap the keyring there so that a node sealed by the new provider
decrypts what was encrypted before.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import COFFER, Cofferd, stop_checked
from pg_nodes import TwoNodes


def coffer(*args, env=None):
    r = subprocess.run([COFFER] + list(args), capture_output=True, timeout=120, text=True, env=env)
    return r.returncode, r.stdout, r.stderr


def fields(out):
    return dict(line.split(": ", 1) for line in out.splitlines())


def no_store_env():
    return {k: v for k, v in os.environ.items() if k != "COFFER_STORE"}


class SealStatusPgTest(TwoNodes):
    DB = "coffer_seal_status"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Stopped: the commands run beside the data dir, as an operator does.
        for node in (cls.node1, cls.node2):
            node.stop()

    def test_status_finds_the_database(self):
        d = self.node1.data_dir
        self.assertFalse(os.path.exists(os.path.join(d, "coffer.db")))
        rc, out, err = coffer("seal", "status", "--data-dir", d, env=no_store_env())
        self.assertEqual(rc, 1, err)
        self.assertIn("coffer seal: %s is not a data dir (no coffer.db)" % d, err)

        rc, out, err = coffer("seal", "status", "--data-dir", d, "--store", self.url, env=no_store_env())
        self.assertEqual(rc, 0, err)
        self.assertEqual(fields(out)["provider"], "file")

        rc, env_out, err = coffer("seal", "status", "--data-dir", d, env=dict(os.environ, COFFER_STORE=self.url))
        self.assertEqual((rc, env_out), (0, out), err)

        conf = os.path.join(d, "cofferd.conf")
        with open(conf, "w") as f:
            f.write("# shared by the nodes\nstore = %s\n" % self.url)
        try:
            rc, conf_out, err = coffer("seal", "status", "--data-dir", d, env=no_store_env())
            self.assertEqual((rc, conf_out), (0, out), err)
            # --store wins over the file
            rc, _, err = coffer("seal", "status", "--data-dir", d, "--store", "sqlite", env=no_store_env())
            self.assertEqual(rc, 1)
            self.assertIn("no coffer.db", err)
        finally:
            os.unlink(conf)

    def test_bad_store_refused_without_echoing_it(self):
        d = self.node1.data_dir
        rc, _, err = coffer("seal", "status", "--data-dir", d, "--store", "mysql://u:hunter2@h/db")
        self.assertEqual(rc, 1)
        self.assertIn("coffer seal: --store must be sqlite or a postgres:// URL", err)
        self.assertNotIn("hunter2", err)
        rc, _, err = coffer("seal", "status", "--data-dir", d,
                            "--store", "postgres://coffer:hunter2@127.0.0.1:1/none?connect_timeout=2")
        self.assertEqual(rc, 1)
        self.assertIn("coffer seal:", err)
        self.assertNotIn("hunter2", err)


class SealMigratePgTest(TwoNodes):
    DB = "coffer_seal_migrate"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="coffer-seal-pg-")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_migrate_in_the_database(self):
        kms = self.node1.client("kms")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"before the move")["CiphertextBlob"]
        for node in (self.node1, self.node2):
            node.stop()
        pw = os.path.join(self.tmp, "pass")
        with open(pw, "w") as f:
            f.write("correct horse battery staple\n")
        spec = "passphrase:file=%s,ops=1,mem=8" % pw
        d = self.node1.data_dir
        rc, out, err = coffer("seal", "migrate", "--data-dir", d, "--store", self.url, "--to", spec)
        self.assertEqual(rc, 0, err)
        self.assertIn("file -> passphrase", out)
        rc, out, err = coffer("seal", "status", "--data-dir", d, "--store", self.url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(fields(out)["provider"], "passphrase")
        node = Cofferd(data_dir=d, extra_args=list(self.ARGS) + ["--seal", spec], store=self.url)
        node.start()
        try:
            out = node.client("kms").decrypt(CiphertextBlob=blob)
            self.assertEqual(out["Plaintext"], b"before the move")
        finally:
            stop_checked(node)


if __name__ == "__main__":
    unittest.main()
