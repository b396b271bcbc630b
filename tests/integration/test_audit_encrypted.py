"""The encrypted audit trail against a real cofferd (--audit-kms-key-id): every trail file a run
writes after KMS is up gets its own data key (envelope encryption under the deployment's KMS key,
the file name as encryption context) and holds no event in clear. `coffer audit verify` checks
the chain and the digests without the key and still catches an edited line; `coffer audit cat`
prints the events for a caller allowed kms:Decrypt on the key and refuses one without it
(AccessDeniedException). A clean restart and a kill -9 keep every acknowledged event readable.
"""
import glob
import json
import os
import subprocess
import time
import unittest

from harness import COFFER, REGION, Cofferd

PERIOD_MS = 700


def trail_files(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "audit", "trail-*.jsonl")))


def policy_doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class EncryptedTrailTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        base = ("--quota-crypto-rps", "0", "--audit-period-ms", str(PERIOD_MS))
        cls.server = Cofferd(extra_args=base)
        cls.server.start()
        kms = cls.server.client("kms")
        cls.key_arn = kms.create_key(Description="audit trail")["KeyMetadata"]["Arn"]
        iam = cls.server.client("iam")
        cls.reader = cls.user(iam, "trail-reader", policy_doc(
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": cls.key_arn}))
        cls.outsider = cls.user(iam, "trail-outsider", policy_doc(
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": cls.key_arn}))
        cls.server.stop()
        cls.server.extra_args = list(base) + ["--audit-kms-key-id", cls.key_arn]
        cls.first_encrypted = len(trail_files(cls.server.data_dir)) + 1
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    @staticmethod
    def user(iam, name, policy):
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}

    def cat(self, creds, files=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                    "AWS_DEFAULT_REGION": REGION, "AWS_CA_BUNDLE": self.server.ca,
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        names = [os.path.basename(f) for f in (files or trail_files(self.server.data_dir))]
        return subprocess.run([COFFER, "audit", "cat", self.server.data_dir] + names +
                              ["--endpoint", self.server.endpoint], env=env, capture_output=True, timeout=120)

    def cat_events(self):
        r = self.cat(self.reader)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return [json.loads(line) for line in r.stdout.decode().splitlines()]

    def verify(self):
        r = subprocess.run([COFFER, "audit", "verify", self.server.data_dir], capture_output=True, timeout=120)
        return r.returncode, (r.stdout + r.stderr).decode()

    def random_calls(self, n):
        kms = self.server.client("kms")
        return [kms.generate_random(NumberOfBytes=8)["ResponseMetadata"]["RequestId"] for _ in range(n)]

    def trail_bytes(self):
        data = b""
        for f in trail_files(self.server.data_dir):
            with open(f, "rb") as fh:
                data += fh.read()
        return data

    def encrypted_files(self):
        out = []
        for f in trail_files(self.server.data_dir):
            with open(f, "rb") as fh:
                if b'"auditEncryption":' in fh.readline():
                    out.append(f)
        return out

    def test_1_no_event_in_clear_and_cat(self):
        ids = self.random_calls(20)
        data = self.trail_bytes()
        self.assertNotIn(b"GenerateRandom", data)
        for rid in ids:
            self.assertNotIn(rid.encode(), data)
        enc = self.encrypted_files()
        self.assertGreaterEqual(len(enc), 1)
        with open(enc[0], "rb") as fh:
            header = json.loads(fh.readline())["auditEncryption"]
        self.assertEqual(header["keyArn"], self.key_arn)
        self.assertEqual(header["encryptionContext"], {"coffer:auditFile": os.path.basename(enc[0])})
        events = self.cat_events()
        seen = {e.get("requestID") for e in events if e.get("eventName") == "GenerateRandom"}
        self.assertTrue(set(ids) <= seen)
        # The trail's own data keys are on record as KMS calls of the deployment's root.
        gdk = [e for e in events if e.get("eventName") == "GenerateDataKey"
               and e["userIdentity"].get("invokedBy") == "cloudtrail.amazonaws.com"]
        self.assertTrue(gdk)
        self.assertEqual(gdk[0]["userIdentity"]["arn"], "arn:aws:iam::000000000000:root")

    def test_2_cat_denied_without_decrypt(self):
        self.random_calls(2)
        r = self.cat(self.outsider, self.encrypted_files()[:1])
        self.assertNotEqual(r.returncode, 0)
        err = r.stderr.decode()
        self.assertIn("AccessDeniedException", err)
        self.assertIn("kms:Decrypt", err)
        self.assertEqual(r.stdout, b"")

    def test_3_verify_without_key_and_catches_edit(self):
        # An older file, never written again (the server appends to the newest one only), with
        # two events after its header: a file whose period saw no request holds only the event
        # of the next file's key, fetched as it started.
        def older_with_events():
            older = []
            for f in self.encrypted_files()[:-1]:
                with open(f, "rb") as fh:
                    if fh.read().count(b"\n") >= 3:
                        older.append(f)
            return older
        deadline = time.time() + 30
        while not older_with_events() and time.time() < deadline:
            self.random_calls(5)
            time.sleep(PERIOD_MS / 1000)
        rc, out = self.verify()
        self.assertEqual(rc, 0, out)
        target = older_with_events()[0]
        with open(target, "rb") as fh:
            original = fh.read()
        lines = original.split(b"\n")
        self.assertGreaterEqual(len(lines), 4)
        i = lines[2].index(b'"encryptedEvent":"') + len(b'"encryptedEvent":"') + 30
        c = lines[2][i:i + 1]
        lines[2] = lines[2][:i] + (b"B" if c == b"A" else b"A") + lines[2][i + 1:]
        with open(target, "wb") as fh:
            fh.write(b"\n".join(lines))
        try:
            rc, out = self.verify()
            self.assertNotEqual(rc, 0, out)
            self.assertIn(os.path.basename(target), out)
            r = self.cat(self.reader, [target])
            self.assertNotEqual(r.returncode, 0)
        finally:
            with open(target, "wb") as fh:
                fh.write(original)
        rc, out = self.verify()
        self.assertEqual(rc, 0, out)

    def test_4_restart_and_kill9_keep_events(self):
        before = self.random_calls(10)
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        after = self.random_calls(10)
        self.server.kill9()
        self.server.start()
        last = self.random_calls(3)
        seen = {e.get("requestID") for e in self.cat_events()}
        for rid in before + after + last:
            self.assertIn(rid, seen)
        data = self.trail_bytes()
        self.assertNotIn(b"GenerateRandom", data)
        rc, out = self.verify()
        self.assertEqual(rc, 0, out)


class EncryptedTrailStartTest(unittest.TestCase):
    """A trail that cannot have its key does not start in clear: cofferd refuses to start."""

    def test_missing_key_refuses_start(self):
        server = Cofferd(extra_args=("--quota-crypto-rps", "0"))
        os.environ["COFFER_AUDIT_KMS_KEY_ID"] = "alias/no-such-key"
        try:
            with self.assertRaises(RuntimeError):
                server.start()
            self.assertIn("no data key for the audit trail", server.log())
            self.assertIn("alias/no-such-key is not found", server.log())
        finally:
            del os.environ["COFFER_AUDIT_KMS_KEY_ID"]
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
