"""The audit trail's integrity validation against a real cofferd (CloudTrail's log file
integrity validation): with a short --audit-period-ms, trail files rotate and signed digests
are written every period, and `coffer audit verify` reports each kind of tampering by someone
who can write the data dir but does not hold the signing key (sealed in the store): an edited
event, a deleted file, a truncated file, reordered events, a forged digest, and a replaced key
pair (caught against a public key kept elsewhere). A restart, clean or after kill -9, keeps one
digest chain; several data dirs are several nodes, each checked on its own chain.
"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import COFFER, Cofferd, test_store

PERIOD_MS = 700


def digests(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "audit", "digest", "digest-*.json")))


def trail_files(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "audit", "trail-*.jsonl")))


def listed_files(data_dir):
    names = []
    for d in digests(data_dir):
        with open(d) as f:
            names += [x["fileName"] for x in json.load(f)["logFiles"]]
    return names


def rehash_chain(d):
    """Rewrites every previousEventHash from the first event on, as a forger would after an edit:
    the unkeyed chain verifies again."""
    prev = "0" * 64
    head = b'{"previousEventHash":"'
    for f in trail_files(d):
        out = []
        with open(f, "rb") as fh:
            for line in fh:
                line = line.rstrip(b"\n")
                assert line.startswith(head)
                line = head + prev.encode() + line[len(head) + 64:]
                prev = hashlib.sha256(line).hexdigest()
                out.append(line + b"\n")
        with open(f, "wb") as fh:
            fh.writelines(out)


def verify(*args):
    r = subprocess.run([COFFER, "audit", "verify"] + list(args), capture_output=True, timeout=120)
    return r.returncode, (r.stdout + r.stderr).decode()


def wait_for(cond, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


class AuditIntegrityTest(unittest.TestCase):
    """One server run makes a trail of several digested files; each test tampers with a copy."""

    @classmethod
    def setUpClass(cls):
        cls.server = Cofferd(extra_args=["--audit-period-ms", str(PERIOD_MS), "--node-id", "node-1"]).start()
        kms = cls.server.client("kms")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        # Three periods with events: at least three closed, digested files.
        for _ in range(3):
            n = len(listed_files(cls.server.data_dir))
            for _ in range(4):
                kms.encrypt(KeyId=key, Plaintext=b"x")
            wait_for(lambda: len(listed_files(cls.server.data_dir)) > n, what="a digest listing a new file")
        kms.list_keys()
        if test_store() == "sqlite":
            r = subprocess.run([COFFER, "audit", "public-key", cls.server.data_dir], capture_output=True,
                               timeout=60)
            assert r.returncode == 0, r.stderr
            cls.pem = r.stdout
        else:
            with open(os.path.join(cls.server.data_dir, "audit", "public-key.pem"), "rb") as f:
                cls.pem = f.read()
        cls.server.stop()
        cls.tmp = tempfile.mkdtemp(prefix="coffer-audit-int-")
        cls.key_file = os.path.join(cls.tmp, "trusted.pem")
        with open(cls.key_file, "wb") as f:
            f.write(cls.pem)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def copy(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        shutil.copytree(os.path.join(self.server.data_dir, "audit"), os.path.join(d, "audit"))
        return d

    def assert_reports(self, d, *needles):
        rc, out = verify(d, "--public-key", self.key_file)
        self.assertEqual(rc, 1, out)
        for n in needles:
            self.assertIn(n, out)
        return out

    def test_intact_trail_validates(self):
        d = self.server.data_dir
        self.assertGreaterEqual(len(trail_files(d)), 4)
        rc, out = verify(d)
        self.assertEqual(rc, 0, out)
        self.assertIn("audit: all valid", out)
        self.assertIn(", 0 not yet in a digest", out)  # the clean stop closed and listed the last file
        rc, out = verify(d, "--public-key", self.key_file)
        self.assertEqual(rc, 0, out)
        for f in trail_files(d):
            self.assertIn("trail file %s: valid" % os.path.basename(f), out)
        # Every event and every digest names the node; each digest chains to the one before.
        prev = None
        for path in digests(d):
            with open(path, "rb") as f:
                raw = f.read()
            dg = json.loads(raw)
            self.assertEqual(dg["nodeId"], "node-1")
            self.assertEqual(dg["digestSignatureAlgorithm"], "SHA256withRSA")
            if prev is not None:
                self.assertEqual(dg["previousDigestFileName"], os.path.basename(prev[0]))
                self.assertEqual(dg["previousDigestHashValue"], hashlib.sha256(prev[1]).hexdigest())
            for lf in dg["logFiles"]:
                with open(os.path.join(d, "audit", lf["fileName"]), "rb") as f:
                    self.assertEqual(lf["hashValue"], hashlib.sha256(f.read()).hexdigest())
            prev = (path, raw)
        for f in trail_files(d):
            with open(f) as fh:
                for line in fh:
                    self.assertEqual(json.loads(line)["nodeId"], "node-1")
        # --from after everything: nothing in range, nothing wrong.
        rc, out = verify(d, "--from", "2999-01-01T00:00:00Z")
        self.assertEqual(rc, 0, out)
        self.assertIn("0/0 digest files valid", out)

    def test_edited_event(self):
        d = self.copy()
        f = trail_files(d)[1]
        with open(f, "rb") as fh:
            data = fh.read()
        with open(f, "wb") as fh:
            fh.write(data.replace(b'"Encrypt"', b'"Decrypt"', 1))
        self.assert_reports(d, "trail file %s: modified" % os.path.basename(f), "BROKEN")

    def test_deleted_file(self):
        d = self.copy()
        f = trail_files(d)[1]
        os.unlink(f)
        self.assert_reports(d, "trail file %s: deleted" % os.path.basename(f))

    def test_truncated_trail(self):
        d = self.copy()
        f = trail_files(d)[-1]
        with open(f, "rb") as fh:
            lines = fh.readlines()
        with open(f, "wb") as fh:
            fh.writelines(lines[:-1])
        out = self.assert_reports(d, "trail file %s: modified" % os.path.basename(f))
        self.assertIn("audit trail OK", out)  # the unkeyed chain alone would not have seen it

    def test_deleted_digest(self):
        d = self.copy()
        # A digest removed from the middle: the next one names it.
        ds = digests(d)
        os.unlink(ds[1])
        rc, out = verify(d, "--public-key", self.key_file)
        self.assertEqual(rc, 1, out)
        self.assertIn("digest file %s: missing" % os.path.basename(ds[1]), out)

    def test_reordered_events(self):
        d = self.copy()
        f = trail_files(d)[0]
        with open(f, "rb") as fh:
            lines = fh.readlines()
        self.assertGreaterEqual(len(lines), 2)
        lines[0], lines[1] = lines[1], lines[0]
        with open(f, "wb") as fh:
            fh.writelines(lines)
        self.assert_reports(d, "trail file %s: modified" % os.path.basename(f))

    def test_forged_digest_without_the_key(self):
        """An event edited and the digest listing its file rewritten to the new hash: the
        signature (kept, or made with another key) does not verify."""
        d = self.copy()
        f = trail_files(d)[0]
        with open(f, "rb") as fh:
            data = fh.read().replace(b'"Encrypt"', b'"Decrypt"', 1)
        with open(f, "wb") as fh:
            fh.write(data)
        path = digests(d)[0]
        for p in digests(d):
            with open(p) as fh:
                if any(x["fileName"] == os.path.basename(f) for x in json.load(fh)["logFiles"]):
                    path = p
                    break
        with open(path) as fh:
            dg = json.load(fh)
        for lf in dg["logFiles"]:
            if lf["fileName"] == os.path.basename(f):
                lf["hashValue"] = hashlib.sha256(data).hexdigest()
        with open(path, "w") as fh:
            json.dump(dg, fh, indent=2)
        self.assert_reports(d, "digest file %s: invalid" % os.path.basename(path))
        # Even against the key in the directory (not replaced here) it is invalid.
        rc, out = verify(d)
        self.assertEqual(rc, 1, out)
        self.assertIn("signature does not verify", out)

    def test_replaced_key_pair(self):
        """Someone re-signs every digest, after editing a file, with a key pair of their own and
        publishes its public key in the data dir: that verifies against the directory's key,
        not against the one kept elsewhere."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        d = self.copy()
        f = trail_files(d)[0]
        with open(f, "rb") as fh:
            data = fh.read().replace(b'"Encrypt"', b'"Decrypt"', 1)
        with open(f, "wb") as fh:
            fh.write(data)
        rehash_chain(d)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = key.public_key()
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        with open(os.path.join(d, "audit", "public-key.pem"), "wb") as fh:
            fh.write(pub.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        prev_name = prev_hash = prev_sig = None
        for path in digests(d):
            with open(path) as fh:
                dg = json.load(fh)
            for lf in dg["logFiles"]:
                with open(os.path.join(d, "audit", lf["fileName"]), "rb") as fh:
                    lf["hashValue"] = hashlib.sha256(fh.read()).hexdigest()
            dg["digestPublicKeyFingerprint"] = hashlib.sha256(der).hexdigest()
            if prev_name is not None:
                dg["previousDigestFileName"] = prev_name
                dg["previousDigestHashValue"] = prev_hash
                dg["previousDigestSignature"] = prev_sig
            raw = (json.dumps(dg, indent=2) + "\n").encode()
            name = os.path.basename(path)
            h = hashlib.sha256(raw).hexdigest()
            signing = "%s\n%s\n%s\n%s\n%s" % (dg["digestEndTime"], name, dg["nodeId"], h,
                                                 prev_sig if prev_sig else "null")
            sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()
            with open(path, "wb") as fh:
                fh.write(raw)
            with open(path[:-len(".json")] + ".sig", "w") as fh:
                fh.write(sig + "\n")
            prev_name, prev_hash, prev_sig = name, h, sig
        rc, out = verify(d)
        self.assertEqual(rc, 0, "the forger's own key in the dir accepts the forgery: " + out)
        out = self.assert_reports(d, "digest file", "not trusted")
        self.assertNotIn("digest file %s: valid" % os.path.basename(digests(d)[0]), out)


class AuditRestartTest(unittest.TestCase):
    def setUp(self):
        self.server = Cofferd(extra_args=["--audit-period-ms", str(PERIOD_MS)])
        self.other = None

    def tearDown(self):
        self.server.cleanup()
        if self.other is not None:
            self.other.cleanup()

    def test_restarts_keep_one_digest_chain(self):
        s = self.server.start()
        s.client("kms").list_keys()
        s.stop()
        n = len(digests(s.data_dir))
        with open(digests(s.data_dir)[-1]) as f:
            last = json.load(f)
        self.assertTrue(last["finalDigest"])
        s.start()
        s.client("kms").list_keys()
        # A kill -9 loses no acknowledged event: the next start carries on in the same file.
        s.kill9()
        s.start()
        s.client("kms").list_keys()
        wait_for(lambda: len(digests(s.data_dir)) > n + 1, what="digests after the restarts")
        with open(digests(s.data_dir)[n]) as f:
            after = json.load(f)
        self.assertEqual(after["previousDigestFileName"], os.path.basename(digests(s.data_dir)[n - 1]))
        s.stop()
        rc, out = verify(s.data_dir)
        self.assertEqual(rc, 0, out)
        names = [json.loads(l)["eventName"] for f in trail_files(s.data_dir) for l in open(f)]
        self.assertEqual(names.count("ListKeys"), 3)
        # The default node id: the host name and a hash of the data dir, in events and digests.
        node = last["nodeId"]
        self.assertRegex(node, r"^[A-Za-z0-9._-]+-[0-9a-f]{12}$")
        # The data dir keeps its node: another id is refused at start, one trail per node.
        s.extra_args += ["--node-id", "someone-else"]
        with self.assertRaises(RuntimeError):
            s.start()
        self.assertIn("is the chain of node %s, not someone-else" % node, s.log())
        s.stop()

    def test_several_nodes(self):
        a = self.server
        a.extra_args += ["--node-id", "node-a"]
        a.start()
        self.other = Cofferd(extra_args=["--audit-period-ms", str(PERIOD_MS), "--node-id", "node-b"]).start()
        a.client("kms").list_keys()
        self.other.client("kms").list_keys()
        a.stop()
        self.other.stop()
        rc, out = verify(a.data_dir, self.other.data_dir)
        self.assertEqual(rc, 0, out)
        self.assertIn("node node-a:", out)
        self.assertIn("node node-b:", out)
        # One node's trail edited: the run fails, naming that node.
        f = trail_files(self.other.data_dir)[0]
        with open(f, "rb") as fh:
            data = fh.read().replace(b'"ListKeys"', b'"ListKeyz"', 1)
        with open(f, "wb") as fh:
            fh.write(data)
        rc, out = verify(a.data_dir, self.other.data_dir)
        self.assertEqual(rc, 1, out)
        self.assertIn("node node-b does not validate", out)
        self.assertNotIn("node node-a does not validate", out)
        # The same node's trail twice is a copy, not two nodes.
        rc, out = verify(a.data_dir, a.data_dir)
        self.assertEqual(rc, 1, out)
        self.assertIn("same node node-a", out)

    @unittest.skipIf(test_store() != "sqlite", "coffer audit public-key opens an SQLite data dir")
    def test_public_key_command(self):
        s = self.server.start()
        s.stop()
        r = subprocess.run([COFFER, "audit", "public-key", s.data_dir], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(b"-----BEGIN PUBLIC KEY-----\n"))
        with open(os.path.join(s.data_dir, "audit", "public-key.pem"), "rb") as f:
            self.assertEqual(f.read(), r.stdout)
        # The key is sealed in the store, never in clear in the data dir.
        from cryptography.hazmat.primitives import serialization
        pub = serialization.load_pem_public_key(r.stdout)
        self.assertEqual(pub.key_size, 2048)
        # The private key's DER holds the modulus: sealed, it appears nowhere but in the public key.
        modulus = pub.public_numbers().n.to_bytes(256, "big")
        for root, _, files in os.walk(s.data_dir):
            for name in files:
                if name == "public-key.pem":
                    continue
                with open(os.path.join(root, name), "rb") as f:
                    self.assertNotIn(modulus, f.read(), name)
        # A public key replaced in the dir is not what the sealed key says.
        from cryptography.hazmat.primitives.asymmetric import rsa
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        with open(os.path.join(s.data_dir, "audit", "public-key.pem"), "wb") as f:
            f.write(other.public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo))
        r2 = subprocess.run([COFFER, "audit", "public-key", s.data_dir], capture_output=True, timeout=60)
        self.assertEqual(r2.returncode, 1)
        self.assertEqual(r2.stdout, r.stdout)
        self.assertIn(b"replaced", r2.stderr)
        # The next start puts the real one back (and logs it).
        s.start()
        s.stop()
        with open(os.path.join(s.data_dir, "audit", "public-key.pem"), "rb") as f:
            self.assertEqual(f.read(), r.stdout)


if __name__ == "__main__":
    unittest.main()
