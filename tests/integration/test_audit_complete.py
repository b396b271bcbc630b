"""An audit event is written whole or the request is refused.

- A User-Agent that is not UTF-8 (headers are bytes) is kept in the event, with '?' for each
  byte that is not ASCII, instead of the event leaving the field out (plain cofferd).
- When a member of the event cannot be added, as when memory runs out (cofferd_faults, flag
  "json-userAgent": adding a userAgent member to any JSON object fails), the request is refused
  with KMSInternalException (HTTP 500) and changes nothing; once the fault is gone the server
  answers again and the trail verifies.
- The same when a handler cannot build its own audit fields (flag "json-keyId": KMS cannot add
  keyId to the requestParameters it records): the request is refused, not recorded without it.
"""
import os
import subprocess
import unittest

import botocore.exceptions

from harness import COFFER, Cofferd, FaultServerTestCase, trail_events

ARGS = ("--quota-crypto-rps", "0")



class NonUtf8UserAgentTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = Cofferd(extra_args=ARGS).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_user_agent_kept(self):
        kms = self.server.client("kms")

        def raw_agent(request, **_):
            # Bytes, sent as they are: 0xff 0xfe is not UTF-8. User-Agent is not signed.
            request.headers["User-Agent"] = b"probe-\xff\xfe-agent"

        kms.meta.events.register("before-send.kms.ListKeys", raw_agent)
        r = kms.list_keys()
        rid = r["ResponseMetadata"]["RequestId"]
        events = [e for e in trail_events(self.server.data_dir) if e.get("requestID") == rid]
        self.assertEqual(len(events), 1, events)
        self.assertIn("userAgent", events[0])
        self.assertIn("probe-??-agent", events[0]["userAgent"])


class MemberFaultTest(FaultServerTestCase):
    extra_args = ARGS

    def assert_refused(self, name, call):
        with self.assertRaises(botocore.exceptions.ClientError, msg="%s answered with an incomplete event" % name) as cm:
            call()
        r = cm.exception.response
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 500, name)
        self.assertEqual(r["Error"]["Code"], "KMSInternalException", name)

    def test_incomplete_event_refuses_request(self):
        before = len(self.kms.list_keys()["Keys"])
        flag = os.path.join(self.flags, "json-userAgent")
        open(flag, "w").close()
        try:
            self.assert_refused("ListKeys", lambda: self.kms.list_keys())
            self.assert_refused("CreateKey", lambda: self.kms.create_key(Description="never"))
        finally:
            os.unlink(flag)
        self.assertEqual(len(self.kms.list_keys()["Keys"]), before)
        for e in trail_events(self.server.data_dir):
            self.assertIn("userAgent", e)
        r = subprocess.run([COFFER, "audit", "verify", os.path.join(self.server.data_dir, "audit")],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_incomplete_handler_fields_refuse_request(self):
        key = self.kms.create_key(Description="described")["KeyMetadata"]["KeyId"]
        flag = os.path.join(self.flags, "json-keyId")
        open(flag, "w").close()
        try:
            self.assert_refused("DescribeKey", lambda: self.kms.describe_key(KeyId=key))
            self.assert_refused("DisableKey", lambda: self.kms.disable_key(KeyId=key))
        finally:
            os.unlink(flag)
        self.assertTrue(self.kms.describe_key(KeyId=key)["KeyMetadata"]["Enabled"])
        for e in trail_events(self.server.data_dir):
            if e.get("eventName") in ("DescribeKey", "DisableKey"):
                self.assertIn("keyId", e["requestParameters"], e)


if __name__ == "__main__":
    unittest.main()
