"""The audit trail fails closed and stays bounded, through real clients (boto3, the coffer CLI,
raw SigV4 over HTTPS):

- with a trail that cannot be written (its newest file is /dev/full: every write(2) fails with
  ENOSPC, exactly what a full disk does, with no test-only code in cofferd), every mutating
  operation of every service is refused and leaves the store byte-for-byte unchanged;
- a request padded far beyond the event size still gets its event (bounded, with a marker) and
  its change is not left without one;
- the User-Agent is cut in the trail, and a flood of badly signed requests with a huge
  User-Agent writes a bounded number of bytes, the rest counted in a summary event.
"""
import glob
import http.client
import json
import os
import sqlite3
import ssl
import subprocess
import time
import unittest
import urllib.parse

import botocore.exceptions
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from harness import COFFER, REGION, Cofferd, ServerTestCase

ACCOUNT = "000000000000"
MAX_STRING = 1024          # AUDIT_MAX_STRING_BYTES
EVENT_BUDGET = 256 << 10   # AUDIT_EVENT_BUDGET_BYTES
MARKER = "...[truncated]"  # AUDIT_TRUNCATED_MARKER


def trust(principal):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
                                      "Action": "sts:AssumeRole"}]})


def trail_files(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "audit", "trail-*.jsonl")))


def trail_bytes(data_dir):
    return sum(os.path.getsize(f) for f in trail_files(data_dir) if os.path.isfile(f))


def trail_events(data_dir):
    out = []
    for f in trail_files(data_dir):
        if os.path.islink(f):
            continue
        with open(f, "rb") as fh:
            for line in fh:
                out.append(json.loads(line))
    return out


def store_snapshot(data_dir):
    """Every record of the store (the server must be stopped)."""
    db = sqlite3.connect(os.path.join(data_dir, "coffer.db"))
    try:
        return dict(db.execute("SELECT key, value FROM kv").fetchall())
    finally:
        db.close()


def signed_post(server, service, body, headers, creds=None):
    """One POST signed with botocore's SigV4 (or with `creds`), over HTTPS."""
    akid, secret = server.credentials()
    req = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers=headers)
    SigV4Auth(creds or Credentials(akid, secret), service, REGION).add_auth(req)
    return dict(req.prepare().headers)


def https(server):
    ctx = ssl.create_default_context(cafile=server.ca)
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=30)


class FailingTrailTest(unittest.TestCase):
    """Every mutating operation with a trail that refuses every write leaves no change."""

    @classmethod
    def setUpClass(cls):
        s = cls.server = Cofferd(extra_args=("--quota-crypto-rps", "0")).start()
        kms, iam = s.client("kms"), s.client("iam")
        cls.key = kms.create_key(Description="original")["KeyMetadata"]["KeyId"]
        cls.key2 = kms.create_key(Description="second")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/kept", TargetKeyId=cls.key)
        cls.grant = kms.create_grant(KeyId=cls.key, GranteePrincipal="arn:aws:iam::%s:root" % ACCOUNT,
                                     Operations=["Decrypt"])["GrantId"]
        iam.create_user(UserName="kept-user")
        iam.put_user_policy(UserName="kept-user", PolicyName="p",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}))
        cls.user_key = iam.create_access_key(UserName="kept-user")["AccessKey"]["AccessKeyId"]
        iam.create_role(RoleName="kept-role", AssumeRolePolicyDocument=trust("arn:aws:iam::%s:root" % ACCOUNT))
        s.stop()
        cls.before = store_snapshot(s.data_dir)
        # The next trail file is /dev/full: recovery takes the chain head from the older files,
        # and every append then fails with ENOSPC.
        n = int(os.path.basename(trail_files(s.data_dir)[-1])[6:12])
        cls.full = os.path.join(s.data_dir, "audit", "trail-%06d.jsonl" % (n + 1))
        os.symlink("/dev/full", cls.full)
        s.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_every_mutation_refused_and_nothing_changed(self):
        s = self.server
        kms, iam, sts = s.client("kms"), s.client("iam"), s.client("sts")
        role_arn = "arn:aws:iam::%s:role/kept-role" % ACCOUNT
        policy = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT}, "Action": "kms:*",
             "Resource": "*"}]})
        calls = {
            "kms.CreateKey": lambda: kms.create_key(Description="new"),
            "kms.CreateAlias": lambda: kms.create_alias(AliasName="alias/new", TargetKeyId=self.key),
            "kms.UpdateAlias": lambda: kms.update_alias(AliasName="alias/kept", TargetKeyId=self.key2),
            "kms.DeleteAlias": lambda: kms.delete_alias(AliasName="alias/kept"),
            "kms.UpdateKeyDescription": lambda: kms.update_key_description(KeyId=self.key, Description="changed"),
            "kms.DisableKey": lambda: kms.disable_key(KeyId=self.key),
            "kms.ScheduleKeyDeletion": lambda: kms.schedule_key_deletion(KeyId=self.key2, PendingWindowInDays=7),
            "kms.PutKeyPolicy": lambda: kms.put_key_policy(KeyId=self.key, PolicyName="default", Policy=policy),
            "kms.TagResource": lambda: kms.tag_resource(KeyId=self.key, Tags=[{"TagKey": "a", "TagValue": "b"}]),
            "kms.CreateGrant": lambda: kms.create_grant(KeyId=self.key,
                                                        GranteePrincipal="arn:aws:iam::%s:root" % ACCOUNT,
                                                        Operations=["Encrypt"]),
            "kms.RevokeGrant": lambda: kms.revoke_grant(KeyId=self.key, GrantId=self.grant),
            "iam.CreateUser": lambda: iam.create_user(UserName="new-user"),
            "iam.DeleteUserPolicy": lambda: iam.delete_user_policy(UserName="kept-user", PolicyName="p"),
            "iam.CreateAccessKey": lambda: iam.create_access_key(UserName="kept-user"),
            "iam.UpdateAccessKey": lambda: iam.update_access_key(UserName="kept-user", AccessKeyId=self.user_key,
                                                                 Status="Inactive"),
            "iam.CreateRole": lambda: iam.create_role(RoleName="new-role",
                                                      AssumeRolePolicyDocument=trust(role_arn)),
            "iam.DeleteRole": lambda: iam.delete_role(RoleName="kept-role"),
            "sts.AssumeRole": lambda: sts.assume_role(RoleArn=role_arn, RoleSessionName="sess"),
        }
        accepted = []
        for name, call in calls.items():
            try:
                call()
                accepted.append(name)
            except botocore.exceptions.ClientError as e:
                self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 500, name)
        self.assertEqual(accepted, [], "acknowledged without an audit event")
        r = subprocess.run([COFFER, "admin", "create-account", "new-tenant", "--data-dir", s.data_dir],
                           capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0, "admin create-account acknowledged without an audit event")

        s.stop()
        after = store_snapshot(s.data_dir)
        changed = sorted(k for k in set(self.before) | set(after) if self.before.get(k) != after.get(k))
        self.assertEqual(changed, [], "records changed without an audit event")
        # With the trail writable again the server works and the chain is intact.
        os.unlink(self.full)
        s.start()
        self.assertEqual(s.client("kms").describe_key(KeyId=self.key)["KeyMetadata"]["Description"], "original")
        r = subprocess.run([COFFER, "audit", "verify", os.path.join(s.data_dir, "audit")], capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class BoundedEventsTest(ServerTestCase):

    def query(self, params, service="iam", user_agent=None):
        body = urllib.parse.urlencode(params)
        extra = {"User-Agent": user_agent} if user_agent else {}
        headers = signed_post(self.server, service, body,
                              dict({"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, **extra))
        c = https(self.server)
        c.request("POST", "/", body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def events_of(self, request_id):
        return [e for e in trail_events(self.server.data_dir) if e.get("requestID") == request_id]

    def test_padded_request_is_recorded_bounded(self):
        # ~1 MB of extra parameters and a 60 KB User-Agent: the event would be over any size cap.
        params = {"Action": "CreateUser", "Version": "2010-05-08", "UserName": "padded-user"}
        for i in range(4):
            params["Pad%d" % i] = "p" * 250000
        status, headers, data = self.query(params, user_agent="U" * 60000)
        self.assertEqual(status, 200, data[:300])
        evs = self.events_of(headers["x-amzn-requestid"])
        self.assertEqual([e["eventName"] for e in evs], ["CreateUser"])
        params = evs[0]["requestParameters"]
        self.assertEqual(params["userName"], "padded-user")
        for i in range(4):
            self.assertTrue(params["pad%d" % i].endswith(MARKER))
            self.assertLessEqual(len(params["pad%d" % i]), MAX_STRING)
        self.assertEqual(self.server.client("iam").get_user(UserName="padded-user")["User"]["UserName"],
                         "padded-user")

    def test_many_members_are_omitted_with_marker(self):
        params = {"Action": "CreateUser", "Version": "2010-05-08", "UserName": "wide-user"}
        for i in range(500):
            params["P%d" % i] = "v" * 300
        status, headers, data = self.query(params)
        self.assertEqual(status, 200, data[:300])
        evs = self.events_of(headers["x-amzn-requestid"])
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0]["requestParameters"]["omitted"], True)
        self.assertGreater(evs[0]["requestParameters"]["originalSize"], 100 << 10)

    def test_user_agent_is_cut(self):
        kms = self.server.client("kms", config=Config(retries={"max_attempts": 1},
                                                      user_agent_extra="U" * 60000))
        rid = kms.list_keys()["ResponseMetadata"]["RequestId"]
        evs = self.events_of(rid)
        self.assertEqual(len(evs), 1)
        ua = evs[0]["userAgent"]
        self.assertLessEqual(len(ua.encode()), MAX_STRING)
        self.assertTrue(ua.endswith(MARKER))
        self.assertTrue(ua.startswith("Boto3/"))


class UnauthenticatedFloodTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--audit-unauth-per-source", "5", "--audit-unauth-window", "2")

    def bad_request(self, conn, ua):
        body = "{}"
        headers = signed_post(self.server, "kms", body,
                              {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys",
                               "User-Agent": ua},
                              creds=Credentials(self.server.credentials()[0], "wrong-secret"))
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status

    def test_flood_writes_bounded_bytes_and_a_summary(self):
        s = self.server
        time.sleep(2.1)  # a fresh window
        before = trail_bytes(s.data_dir)
        conn = https(s)
        ua = "A" * 60000
        n = 200
        t0 = time.monotonic()
        for _ in range(n):
            self.assertEqual(self.bad_request(conn, ua), 400)
        windows = int((time.monotonic() - t0) / 2) + 2  # windows the flood may have touched (slow builds)
        grown = trail_bytes(s.data_dir) - before
        # 5 events of at most a few KB per window, instead of 200 x 60 KB (12 MB).
        self.assertLess(grown, windows * 5 * 4096, grown)
        self.assertLess(grown, 200 * 1024, grown)
        time.sleep(2.1)
        self.assertEqual(self.bad_request(conn, ua), 400)  # the next window: the summary is written
        conn.close()
        events = trail_events(s.data_dir)
        written = [e for e in events if e.get("eventName") == "ListKeys" and e["userIdentity"]["type"] == "Unknown"]
        for e in written:
            self.assertLessEqual(len(e["userAgent"]), MAX_STRING)
            self.assertIsNone(e["requestParameters"])
        summaries = [e for e in events if e.get("eventName") == "UnauthenticatedEventsSuppressed"]
        self.assertGreaterEqual(len(summaries), 1)
        suppressed = sum(e["serviceEventDetails"]["suppressedEvents"] for e in summaries)
        self.assertGreater(suppressed, 0)
        self.assertEqual(len(written) + suppressed, n + 1)  # every request is either written or counted
        for e in summaries:
            self.assertEqual(e["eventType"], "AwsServiceEvent")
            self.assertEqual(e["serviceEventDetails"]["topSources"][0]["sourceIPAddress"], "127.0.0.1")
        # Authenticated requests are never suppressed.
        rid = s.client("kms").list_keys()["ResponseMetadata"]["RequestId"]
        self.assertEqual(len([e for e in trail_events(s.data_dir) if e.get("requestID") == rid]), 1)


class AnchoredVerifyTest(ServerTestCase):
    """What the hash chain proves, through `coffer audit verify`: cutting the newest events is
    invisible to the chain alone and caught against an anchor kept from an earlier run."""

    def verify(self, *extra):
        r = subprocess.run([COFFER, "audit", "verify", self.server.data_dir] + list(extra), capture_output=True,
                           timeout=60)
        return r.returncode, r.stdout.decode()

    def test_truncation_caught_only_with_anchor(self):
        s = self.server
        kms = s.client("kms")
        kms.list_keys()
        rc, out = self.verify()
        self.assertEqual(rc, 0, out)
        anchor = [l.split(": ")[1] for l in out.splitlines() if l.startswith("last event hash: ")][0]
        for _ in range(3):
            kms.list_keys()
        rc, out = self.verify("--anchor", anchor)
        self.assertEqual(rc, 0, out)
        self.assertIn("3 events after it", out)
        s.stop()
        # Cut the newest file back to before the anchored event.
        newest = trail_files(s.data_dir)[-1]
        with open(newest, "rb") as f:
            lines = f.readlines()
        with open(newest, "wb") as f:
            f.writelines(lines[:-5])
        rc, out = self.verify()
        # The unkeyed chain alone cannot see a cut tail, but the clean stop listed the file in a
        # signed digest, so the cut shows without an anchor too.
        self.assertEqual(rc, 1, out)
        self.assertIn("trail-000001.jsonl: modified", out)
        rc, out = self.verify("--anchor", anchor)
        self.assertEqual(rc, 1, out)
        self.assertIn("not in the trail", out)
        rc, out = self.verify("--anchor", "xyz")
        self.assertEqual(rc, 2, out)
        s.start()


if __name__ == "__main__":
    unittest.main()
