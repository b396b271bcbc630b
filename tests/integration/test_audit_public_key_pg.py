"""`coffer audit public-key` on nodes that keep their records in PostgreSQL: two cofferd nodes
share one database (pg_nodes.TwoNodes), each signing the digests of its own trail with its own
key, sealed in that database. The command finds the store as cofferd does (--store, else
$COFFER_STORE, else the store line of DIR/cofferd.conf), picks the node's key (--node-id, else
the node whose digests DIR holds), and the key it prints verifies that node's digests with
`coffer audit verify --public-key`, and not the other node's.
"""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import COFFER, trail_events
from pg_nodes import TwoNodes, copy_data_dir

PERIOD_MS = 700


def listed_files(data_dir):
    """The trail files the digests of data_dir list so far."""
    names = []
    for d in sorted(glob.glob(os.path.join(data_dir, "audit", "digest", "digest-*.json"))):
        with open(d) as f:
            names += [x["fileName"] for x in json.load(f)["logFiles"]]
    return names


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def coffer(*args, env=None):
    r = subprocess.run([COFFER] + list(args), capture_output=True, timeout=120, env=env)
    return r.returncode, r.stdout, r.stderr.decode()


class AuditPublicKeyPgTest(TwoNodes):
    DB = "coffer_audit_public_key"
    ARGS = ("--quota-crypto-rps", "0", "--audit-period-ms", str(PERIOD_MS))

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="coffer-audit-pg-")
        cls.nodes = []
        for node in (cls.node1, cls.node2):
            kms = node.client("kms")
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            # Two periods with events: closed and digested files on each node.
            for _ in range(2):
                n = len(listed_files(node.data_dir))
                kms.encrypt(KeyId=key, Plaintext=b"x")
                wait_for(lambda: len(listed_files(node.data_dir)) > n, what="a digest listing a new file")
            cls.nodes.append((node, trail_events(node.data_dir)[-1]["nodeId"]))
        # Stopped: the last file closed and digested, the trails complete.
        for node in (cls.node1, cls.node2):
            node.stop()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def verify(self, data_dir, pem):
        path = os.path.join(self.tmp, "trusted.pem")
        with open(path, "wb") as f:
            f.write(pem)
        rc, out, err = coffer("audit", "verify", data_dir, "--public-key", path)
        return rc, out.decode() + err

    def test_key_from_the_database_verifies_the_digests(self):
        (n1, id1), (n2, id2) = self.nodes
        self.assertNotEqual(id1, id2)
        pems = {}
        for node, node_id in self.nodes:
            # No coffer.db in a data dir on PostgreSQL: without the store it is not found.
            self.assertFalse(os.path.exists(os.path.join(node.data_dir, "coffer.db")))
            rc, out, err = coffer("audit", "public-key", node.data_dir)
            self.assertEqual(rc, 1, err)
            self.assertIn("no coffer.db", err)

            rc, pem, err = coffer("audit", "public-key", node.data_dir, "--store", self.url, "--node-id", node_id)
            self.assertEqual(rc, 0, err)
            self.assertTrue(pem.startswith(b"-----BEGIN PUBLIC KEY-----\n"), pem)
            # The copy cofferd publishes beside the digests is this key.
            with open(os.path.join(node.data_dir, "audit", "public-key.pem"), "rb") as f:
                self.assertEqual(f.read(), pem)
            rc, out = self.verify(node.data_dir, pem)
            self.assertEqual(rc, 0, out)
            self.assertIn("audit: all valid", out)
            self.assertIn("digest", out)
            pems[node_id] = pem
        self.assertNotEqual(pems[id1], pems[id2])
        # One node's key does not verify the other's digests.
        rc, out = self.verify(n2.data_dir, pems[id1])
        self.assertEqual(rc, 1, out)

        # Two nodes' keys in one database: without --node-id, the one of the node whose digests
        # DIR holds; a dir without digests has to be told.
        for node, node_id in self.nodes:
            rc, pem, err = coffer("audit", "public-key", node.data_dir, "--store", self.url)
            self.assertEqual((rc, pem), (0, pems[node_id]), err)
        bare = copy_data_dir(n1.data_dir)
        try:
            rc, out, err = coffer("audit", "public-key", bare, "--store", self.url)
            self.assertEqual(rc, 1, err)
            self.assertIn("holds 2 signing keys", err)
            self.assertIn("give --node-id", err)
            rc, pem, err = coffer("audit", "public-key", bare, "--store", self.url, "--node-id", id2)
            self.assertEqual((rc, pem), (0, pems[id2]), err)
        finally:
            shutil.rmtree(bare, ignore_errors=True)
        rc, out, err = coffer("audit", "public-key", n1.data_dir, "--store", self.url, "--node-id", "nobody")
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, b"")

    def test_store_from_the_environment_and_the_config_file(self):
        node, node_id = self.nodes[0]
        rc, want, err = coffer("audit", "public-key", node.data_dir, "--store", self.url, "--node-id", node_id)
        self.assertEqual(rc, 0, err)
        env = dict(os.environ, COFFER_STORE=self.url)
        rc, pem, err = coffer("audit", "public-key", node.data_dir, "--node-id", node_id, env=env)
        self.assertEqual((rc, pem), (0, want), err)
        # DIR/cofferd.conf, as cofferd reads it (comments, spaces, the last line wins).
        conf = os.path.join(node.data_dir, "cofferd.conf")
        with open(conf, "w") as f:
            f.write("# the shared database\nstore = sqlite\n  store =  %s  # here\nlog-level = info\n" % self.url)
        try:
            env = {k: v for k, v in os.environ.items() if k != "COFFER_STORE"}
            rc, pem, err = coffer("audit", "public-key", node.data_dir, "--node-id", node_id, env=env)
            self.assertEqual((rc, pem), (0, want), err)
            # --store wins over the file.
            rc, _, err = coffer("audit", "public-key", node.data_dir, "--node-id", node_id, "--store", "sqlite",
                                env=env)
            self.assertEqual(rc, 1)
            self.assertIn("no coffer.db", err)
        finally:
            os.unlink(conf)

    def test_bad_store_is_refused_without_echoing_it(self):
        node, node_id = self.nodes[0]
        rc, _, err = coffer("audit", "public-key", node.data_dir, "--store", "mysql://u:hunter2@h/db")
        self.assertEqual(rc, 1)
        self.assertIn("--store must be sqlite or a postgres:// URL", err)
        self.assertNotIn("hunter2", err)
        # An unreachable database: the reason, never the URL's password.
        rc, _, err = coffer("audit", "public-key", node.data_dir, "--node-id", node_id,
                            "--store", "postgres://coffer:hunter2@127.0.0.1:1/none?connect_timeout=2")
        self.assertEqual(rc, 1)
        self.assertIn("coffer audit public-key:", err)
        self.assertNotIn("hunter2", err)


if __name__ == "__main__":
    unittest.main()
