"""No answer without its audit event: a request whose event cannot be written is refused with
KMSInternalException (HTTP 500) and changes nothing, whether it writes or only reads.

- A trail whose newest file is /dev/full (every write(2) fails with ENOSPC, as on a full disk;
  the plain cofferd, no test-only code): reads are refused too (test_security_audit.py covers
  every mutation over such a trail).
- A trail that starts failing while the server runs (cofferd_faults: the trail's write(2) fails
  with ENOSPC while the file "audit" exists in COFFER_FAULTS_DIR): CreateKey and CreateAlias are
  refused and leave no key and no alias behind, reads are refused, and once the trail can be
  written again the server answers and the chain verifies.
- A commit that fails after its pre-commit event was written (cofferd_faults, flag "commit"):
  the request is refused, its change is not visible, and a second event of the same request
  records the failure and names the first in additionalEventData.supersedesEventId.
"""
import glob
import os
import subprocess
import unittest

import botocore.exceptions

from harness import COFFER, Cofferd, FaultServerTestCase, trail_events

ARGS = ("--quota-crypto-rps", "0")



class RefusalAsserts(unittest.TestCase):

    def assert_refused(self, name, call):
        """`call` fails with KMSInternalException, HTTP 500; returns the request id."""
        with self.assertRaises(botocore.exceptions.ClientError, msg="%s answered without its audit event" % name) as cm:
            call()
        r = cm.exception.response
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 500, name)
        self.assertEqual(r["Error"]["Code"], "KMSInternalException", name)
        return r["ResponseMetadata"]["RequestId"]

    def assert_verifies(self, data_dir):
        r = subprocess.run([COFFER, "audit", "verify", os.path.join(data_dir, "audit")], capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class FullTrailAtStartTest(RefusalAsserts):
    """The plain cofferd over a trail that cannot be written: not even a read is answered."""

    @classmethod
    def setUpClass(cls):
        s = cls.server = Cofferd(extra_args=ARGS).start()
        cls.key = s.client("kms").create_key(Description="kept")["KeyMetadata"]["KeyId"]
        s.stop()
        files = sorted(glob.glob(os.path.join(s.data_dir, "audit", "trail-*.jsonl")))
        n = int(os.path.basename(files[-1])[6:12])
        os.symlink("/dev/full", os.path.join(s.data_dir, "audit", "trail-%06d.jsonl" % (n + 1)))
        s.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_reads_refused(self):
        kms = self.server.client("kms")
        self.assert_refused("DescribeKey", lambda: kms.describe_key(KeyId=self.key))
        self.assert_refused("ListKeys", lambda: kms.list_keys())
        self.assert_refused("ListAliases", lambda: kms.list_aliases())
        self.assert_refused("Encrypt", lambda: kms.encrypt(KeyId=self.key, Plaintext=b"secret"))


class FaultServerTest(FaultServerTestCase, RefusalAsserts):
    """One cofferd_faults with its flag directory; each test disarms every fault when done."""
    extra_args = ARGS

    def key_ids(self):
        return sorted(k["KeyId"] for k in self.kms.get_paginator("list_keys").paginate().build_full_result()["Keys"])

    def alias_names(self):
        return sorted(a["AliasName"] for a in self.kms.list_aliases()["Aliases"])


class TrailFailsWhileRunningTest(FaultServerTest):

    def test_writes_and_reads_refused_and_nothing_changed(self):
        kms = self.kms
        key = kms.create_key(Description="before")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/before", TargetKeyId=key)
        keys, aliases = self.key_ids(), self.alias_names()
        events = len(trail_events(self.server.data_dir))

        self.arm("audit")
        refused = [
            self.assert_refused("CreateKey", lambda: kms.create_key(Description="unaudited")),
            self.assert_refused("CreateAlias", lambda: kms.create_alias(AliasName="alias/unaudited",
                                                                        TargetKeyId=key)),
            self.assert_refused("DescribeKey", lambda: kms.describe_key(KeyId=key)),
            self.assert_refused("ListAliases", lambda: kms.list_aliases()),
            self.assert_refused("GenerateDataKey", lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256")),
        ]
        self.disarm("audit")

        self.assertEqual(self.key_ids(), keys, "a key was added without its audit event")
        self.assertEqual(self.alias_names(), aliases, "an alias was added without its audit event")
        self.assertNotIn("alias/unaudited", self.alias_names())
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            kms.describe_key(KeyId="alias/unaudited")
        self.assertEqual(cm.exception.response["Error"]["Code"], "NotFoundException")
        # Nothing of the refused requests reached the trail, and the chain goes on intact.
        trail = trail_events(self.server.data_dir)
        self.assertGreater(len(trail), events)
        self.assertEqual([e for e in trail if e.get("requestID") in refused], [])
        self.assertIn("audit trail", self.server.log())
        self.assert_verifies(self.server.data_dir)


class CommitFailsAfterEventTest(FaultServerTest):

    def test_superseding_event_records_the_failure(self):
        kms = self.kms
        key = kms.create_key(Description="target")["KeyMetadata"]["KeyId"]
        keys = self.key_ids()

        self.arm("commit")
        alias_req = self.assert_refused("CreateAlias", lambda: kms.create_alias(AliasName="alias/uncommitted",
                                                                                TargetKeyId=key))
        key_req = self.assert_refused("CreateKey", lambda: kms.create_key(Description="uncommitted"))
        self.disarm("commit")

        self.assertNotIn("alias/uncommitted", self.alias_names())
        self.assertEqual(self.key_ids(), keys)
        trail = trail_events(self.server.data_dir)
        for name, req in (("CreateAlias", alias_req), ("CreateKey", key_req)):
            evs = [e for e in trail if e.get("requestID") == req]
            self.assertEqual([e["eventName"] for e in evs], [name, name], evs)
            first, second = evs
            # The pre-commit event says what was about to be done; the second one that it failed.
            self.assertNotIn("errorCode", first)
            self.assertEqual(second["errorCode"], "KMSInternalException")
            self.assertEqual(second["additionalEventData"]["supersedesEventId"], first["eventID"])
            self.assertNotEqual(second["eventID"], first["eventID"])
        self.assert_verifies(self.server.data_dir)


if __name__ == "__main__":
    unittest.main()
