"""A service is one folder: the test-only Echo service (tests/echo), registered with one line in
cofferd-echo, is served next to KMS with its own target prefix, signing name, error names and
eventSource, authorized by the shared authorizer, audited, and its scheduled job runs.

Echo has no botocore model, so requests are built by hand and signed with botocore's SigV4Auth.
"""
import json
import os
import ssl
import time
import unittest
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness import BUILD_DIR, REGION, ServerTestCase, trail_events

ACCOUNT = "000000000000"
EVENT_SOURCE = "echo.coffer.local"


class EchoServiceTest(ServerTestCase):
    binary = os.path.join(BUILD_DIR, "cofferd-echo")

    def call(self, op, body, creds=None, signing_name="echo", target_prefix="EchoService"):
        """(status, parsed body, request id) of one signed JSON request."""
        akid, secret = self.server.credentials()
        creds = creds or (akid, secret)
        url = self.server.endpoint + "/"
        data = json.dumps(body).encode()
        req = AWSRequest(method="POST", url=url, data=data, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "%s.%s" % (target_prefix, op)})
        SigV4Auth(Credentials(*creds), signing_name, REGION).add_auth(req)
        prepared = urllib.request.Request(url, data=data, method="POST", headers=dict(req.headers.items()))
        ctx = ssl.create_default_context(cafile=self.server.ca)
        try:
            with urllib.request.urlopen(prepared, context=ctx, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}"), r.headers["x-amzn-RequestId"]
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}"), e.headers["x-amzn-RequestId"]

    def events_of(self, request_id):
        return [e for e in trail_events(self.server.data_dir) if e.get("requestID") == request_id]

    def test_echo_answers_and_is_audited_without_its_secret(self):
        status, body, rid = self.call("Echo", {"Message": "hello", "Secret": "s3cr3t-value"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"Message": "hello", "Secret": "s3cr3t-value", "Account": ACCOUNT})
        evs = self.events_of(rid)
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0]["eventSource"], EVENT_SOURCE)
        self.assertEqual(evs[0]["eventName"], "Echo")
        self.assertEqual(evs[0]["requestParameters"], {"message": "hello"})
        self.assertNotIn("s3cr3t-value", json.dumps(evs[0]))

    def test_errors_carry_echo_names(self):
        status, body, rid = self.call("NoSuchOperation", {})
        self.assertEqual((status, body.get("__type")), (404, "EchoUnknownOperationException"))
        status, body, rid = self.call("Echo", {"Secret": "x"})
        self.assertEqual((status, body.get("__type")), (400, "EchoValidationException"), body)
        self.assertIn("message", body["message"])
        evs = self.events_of(rid)
        self.assertEqual([(e["eventSource"], e["errorCode"]) for e in evs],
                         [(EVENT_SOURCE, "EchoValidationException")])
        # KMS keeps its own names for the same failures.
        status, body, _ = self.call("NoSuchOperation", {}, signing_name="kms", target_prefix="TrentService")
        self.assertEqual((status, body.get("__type")), (400, "UnknownOperationException"))

    def test_wrong_signing_name_is_refused(self):
        status, body, rid = self.call("Echo", {"Message": "hi"}, signing_name="kms")
        self.assertEqual((status, body.get("__type")), (400, "InvalidSignatureException"), body)
        self.assertIn("'echo'", body.get("message", ""))
        self.assertEqual([e["eventSource"] for e in self.events_of(rid)], [EVENT_SOURCE])

    def test_shared_authorizer_decides_for_iam_users(self):
        iam = self.server.client("iam")
        try:
            iam.create_user(UserName="echo-user")
        except ClientError as e:
            if e.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
        key = iam.create_access_key(UserName="echo-user")["AccessKey"]
        creds = (key["AccessKeyId"], key["SecretAccessKey"])
        status, body, rid = self.call("Echo", {"Message": "hi"}, creds=creds)
        self.assertEqual((status, body.get("__type")), (400, "AccessDeniedException"), body)
        self.assertIn("echo:Echo", body.get("message", ""))
        self.assertEqual([(e["eventSource"], e["errorCode"], e["userIdentity"]["type"]) for e in self.events_of(rid)],
                         [(EVENT_SOURCE, "AccessDeniedException", "IAMUser")])
        iam.put_user_policy(UserName="echo-user", PolicyName="echo", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "echo:Echo", "Resource": "*"}]}))
        deadline = time.time() + 10
        while True:
            status, body, _ = self.call("Echo", {"Message": "hi"}, creds=creds)
            if status == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual((status, body.get("Message")), (200, "hi"), body)
        # The policy allows echo:Echo only.
        status, body, _ = self.call("GetTicks", {}, creds=creds)
        self.assertEqual((status, body.get("__type")), (400, "AccessDeniedException"), body)

    def test_scheduler_runs_the_services_job(self):
        # cofferd ticks every second here (--sweep-interval 1); the echo job counts the ticks.
        deadline = time.time() + 15
        ticks = 0
        while time.time() < deadline:
            status, body, _ = self.call("GetTicks", {})
            self.assertEqual(status, 200, body)
            ticks = body["Ticks"]
            if ticks >= 2:
                break
            time.sleep(0.5)
        self.assertGreaterEqual(ticks, 2)


if __name__ == "__main__":
    unittest.main()
