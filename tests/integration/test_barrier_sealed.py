"""The barrier seals every record a service stores: a KMS key's description, tags and policy,
aliases, grants, IAM users and their policies are not in the database file in clear; a sealed
record altered in the file is refused (an error, not a crash, not served); and a data dir
written by versions that stored records in clear is sealed once at start, with everything in
it still working.

Record keys stay in clear (they are the index: account ids, key ids, alias, user and policy
names), so the distinctive strings below are all values, never names.
"""
import glob
import json
import os
import sqlite3
import unittest

from botocore.config import Config
from botocore.exceptions import ClientError

from harness import Cofferd, write_in_clear

ACCOUNT = "000000000000"

DESCRIPTION = "barrier-description-5c1d7e"
TAG_KEY = "barrier-tag-key-91af"
TAG_VALUE = "barrier-tag-value-0b3e"
KEY_POLICY_SID = "BarrierKeyPolicySid7d2a"
GRANT_NAME = "barrier-grant-name-e4f0"
IAM_POLICY_SID = "BarrierIamPolicySid33c8"
MARKERS = [DESCRIPTION, TAG_KEY, TAG_VALUE, KEY_POLICY_SID, GRANT_NAME, IAM_POLICY_SID]

NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def db_bytes(data_dir):
    """The database file and its write-ahead log, as a reader of the data dir sees them."""
    out = b""
    for path in sorted(glob.glob(os.path.join(data_dir, "coffer.db*"))):
        with open(path, "rb") as f:
            out += f.read()
    return out


def populate(server):
    kms = server.client("kms")
    iam = server.client("iam")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": KEY_POLICY_SID, "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT}, "Action": "kms:*", "Resource": "*"}]}
    key = kms.create_key(Description=DESCRIPTION, Policy=json.dumps(policy),
                         Tags=[{"TagKey": TAG_KEY, "TagValue": TAG_VALUE}])["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/barrier", TargetKeyId=key)
    iam.create_user(UserName="barrier-user")
    iam.put_user_policy(UserName="barrier-user", PolicyName="barrier-inline", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Sid": IAM_POLICY_SID, "Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}]}))
    kms.create_grant(KeyId=key, Name=GRANT_NAME, Operations=["Encrypt", "Decrypt"],
                     GranteePrincipal="arn:aws:iam::%s:user/barrier-user" % ACCOUNT)
    blob = kms.encrypt(KeyId="alias/barrier", Plaintext=b"behind the barrier")["CiphertextBlob"]
    other = kms.create_key(Description="another key")["KeyMetadata"]["KeyId"]
    other_blob = kms.encrypt(KeyId=other, Plaintext=b"other")["CiphertextBlob"]
    return {"key": key, "blob": blob, "other": other, "other_blob": other_blob}


def check(test, server, made):
    """Everything populate made reads back and works."""
    kms = server.client("kms")
    iam = server.client("iam")
    key = made["key"]
    test.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["Description"], DESCRIPTION)
    test.assertEqual(kms.describe_key(KeyId="alias/barrier")["KeyMetadata"]["KeyId"], key)
    test.assertIn({"TagKey": TAG_KEY, "TagValue": TAG_VALUE}, kms.list_resource_tags(KeyId=key)["Tags"])
    test.assertIn(KEY_POLICY_SID, kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    aliases = kms.list_aliases(KeyId=key)["Aliases"]
    test.assertEqual([a["AliasName"] for a in aliases], ["alias/barrier"])
    test.assertEqual([g["Name"] for g in kms.list_grants(KeyId=key)["Grants"]], [GRANT_NAME])
    test.assertEqual(kms.decrypt(CiphertextBlob=made["blob"])["Plaintext"], b"behind the barrier")
    test.assertEqual(iam.get_user(UserName="barrier-user")["User"]["UserName"], "barrier-user")
    doc = iam.get_user_policy(UserName="barrier-user", PolicyName="barrier-inline")["PolicyDocument"]
    test.assertIn(IAM_POLICY_SID, doc if isinstance(doc, str) else json.dumps(doc))
    blob = kms.encrypt(KeyId="alias/barrier", Plaintext=b"again")["CiphertextBlob"]
    test.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"again")


def assert_sealed(test, data_dir):
    raw = db_bytes(data_dir)
    test.assertGreater(len(raw), 0)
    for m in MARKERS:
        test.assertNotIn(m.encode(), raw, "%s is in the database file in clear" % m)


class BarrierTest(unittest.TestCase):
    extra_args = ("--quota-crypto-rps", "0")

    def setUp(self):
        self.server = Cofferd(extra_args=self.extra_args)

    def tearDown(self):
        rc = self.server.stop()
        log = self.server.log()
        self.server.cleanup()
        if rc not in (None, 0) or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            raise AssertionError("cofferd exited with %r:\n%s" % (rc, log[-4000:]))

    def restart(self):
        self.assertEqual(self.server.stop(), 0)
        self.server.start()

    def test_no_record_in_clear(self):
        self.server.start()
        made = populate(self.server)
        check(self, self.server, made)
        # While running (database and write-ahead log) and after a clean stop.
        assert_sealed(self, self.server.data_dir)
        self.restart()
        check(self, self.server, made)
        self.assertEqual(self.server.stop(), 0)
        assert_sealed(self, self.server.data_dir)

    def alter_record(self, pattern):
        """Flips one bit in the middle of the one stored (sealed) record whose key is LIKE `pattern`."""
        db = sqlite3.connect(os.path.join(self.server.data_dir, "coffer.db"))
        rows = db.execute("SELECT key, value FROM kv WHERE key LIKE ?", (pattern,)).fetchall()
        self.assertEqual(len(rows), 1, rows)
        name, value = rows[0]
        value = bytearray(value)
        value[len(value) // 2] ^= 0x01
        db.execute("UPDATE kv SET value = ? WHERE key = ?", (bytes(value), name))
        db.commit()
        db.close()
        return name

    def test_altered_record_refused(self):
        self.server.start()
        made = populate(self.server)
        self.assertEqual(self.server.stop(), 0)
        name = self.alter_record("kms/alias/%/alias/barrier")
        self.server.start()
        kms = self.server.client("kms", config=NO_RETRY)
        for call in (lambda: kms.describe_key(KeyId="alias/barrier"),
                     lambda: kms.encrypt(KeyId="alias/barrier", Plaintext=b"x")):
            with self.assertRaises(ClientError) as cm:
                call()
            self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500)
            self.assertEqual(cm.exception.response["Error"]["Code"], "KMSInternalException")
        self.assertIn("%s failed to open" % name, self.server.log())
        # The server is still up and serves every other record.
        kms = self.server.client("kms")
        self.assertEqual(kms.describe_key(KeyId=made["key"])["KeyMetadata"]["Description"], DESCRIPTION)
        self.assertEqual(kms.decrypt(CiphertextBlob=made["blob"])["Plaintext"], b"behind the barrier")
        self.assertEqual(kms.decrypt(CiphertextBlob=made["other_blob"])["Plaintext"], b"other")

    def test_altered_record_read_at_start_refused(self):
        # Key records are read while cofferd binds policy principals at start: an altered one
        # stops the start with a message naming it, rather than a crash or a guess.
        self.server.start()
        made = populate(self.server)
        self.assertEqual(self.server.stop(), 0)
        name = self.alter_record("kms/key/%/" + made["other"])
        with self.assertRaises(RuntimeError):
            self.server.start(timeout=10)
        self.assertEqual(self.server.stop(), 1)
        self.assertIn("%s failed to open" % name, self.server.log())

    def test_clear_data_dir_sealed_at_start(self):
        self.server.start()
        made = populate(self.server)
        self.assertEqual(self.server.stop(), 0)
        # Write the data dir back as versions that stored records in clear left it.
        write_in_clear(self.server.data_dir)
        raw = db_bytes(self.server.data_dir)
        for m in MARKERS:
            self.assertTrue(m.encode() in raw, "the fixture did not write %s in clear" % m)
        self.server.start()
        self.assertIn("sealed", self.server.log())
        check(self, self.server, made)
        self.assertEqual(self.server.stop(), 0)
        assert_sealed(self, self.server.data_dir)
        # Once: the next start has nothing to convert and everything still works.
        log_len = len(self.server.log())
        self.server.start()
        self.assertNotIn("stored in clear", self.server.log()[log_len:])
        check(self, self.server, made)


if __name__ == "__main__":
    unittest.main()
