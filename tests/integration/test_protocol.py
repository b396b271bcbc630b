"""Wire-level behaviour: health, TLS, SigV4 failures, malformed bodies, unknown operations,
limits. Requests are signed with botocore's own SigV4Auth and sent over http.client."""
import http.client
import json
import os
import ssl
import subprocess
import unittest

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import COFFER, REGION, ServerTestCase


class ProtocolTest(ServerTestCase):

    def conn(self):
        ctx = ssl.create_default_context(cafile=self.server.ca)
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, context=ctx, timeout=20)

    def send(self, body, target="TrentService.ListKeys", sign=True, headers=None, service="kms", creds=None):
        akid, secret = self.server.credentials()
        url = self.server.endpoint + "/"
        hdrs = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        if target is None:
            del hdrs["X-Amz-Target"]
        hdrs.update(headers or {})
        req = AWSRequest(method="POST", url=url, data=body, headers=hdrs)
        if sign:
            SigV4Auth(creds or Credentials(akid, secret), service, REGION).add_auth(req)
        prepared = req.prepare()
        c = self.conn()
        c.request("POST", "/", body=body, headers=dict(prepared.headers))
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def error(self, status, headers, data):
        doc = json.loads(data)
        return status, doc["__type"], doc.get("message")

    def test_health(self):
        c = self.conn()
        c.request("GET", "/health")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read())["status"], "ok")

    def test_tls_versions(self):
        ctx = ssl.create_default_context(cafile=self.server.ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        c = http.client.HTTPSConnection("127.0.0.1", self.server.port, context=ctx, timeout=10)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            c.request("GET", "/health")
            c.getresponse()

    def test_request_id_and_date(self):
        status, h, data = self.send(b"{}")
        self.assertEqual(status, 200)
        self.assertEqual(len(h["x-amzn-requestid"]), 36)
        self.assertIn("date", h)
        self.assertEqual(h["content-type"], "application/x-amz-json-1.1")

    def test_missing_authentication(self):
        status, t, msg = self.error(*self.send(b"{}", sign=False))
        self.assertEqual((status, t), (400, "MissingAuthenticationTokenException"))

    def test_incomplete_signature(self):
        status, t, _ = self.error(*self.send(b"{}", sign=False, headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request",
            "X-Amz-Date": "20150830T123600Z"}))
        self.assertEqual((status, t), (400, "IncompleteSignatureException"))

    def test_tampered_body_fails_signature(self):
        akid, secret = self.server.credentials()
        body = b'{"Limit": 5}'
        req = AWSRequest(method="POST", url=self.server.endpoint + "/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys"})
        SigV4Auth(Credentials(akid, secret), "kms", REGION).add_auth(req)
        c = self.conn()
        c.request("POST", "/", body=b'{"Limit": 6}', headers=dict(req.prepare().headers))
        r = c.getresponse()
        doc = json.loads(r.read())
        self.assertEqual(doc["__type"], "InvalidSignatureException")

    def test_old_signature_is_rejected(self):
        akid, secret = self.server.credentials()
        req = AWSRequest(method="POST", url=self.server.endpoint + "/", data=b"{}", headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys"})
        auth = SigV4Auth(Credentials(akid, secret), "kms", REGION)
        import datetime
        from unittest import mock
        old = datetime.datetime.utcnow() - datetime.timedelta(minutes=30)
        with mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = old
            auth.add_auth(req)
        c = self.conn()
        c.request("POST", "/", body=b"{}", headers=dict(req.prepare().headers))
        doc = json.loads(c.getresponse().read())
        self.assertEqual(doc["__type"], "InvalidSignatureException")
        self.assertIn("Signature expired", doc["message"])

    def test_wrong_service_scope(self):
        status, t, _ = self.error(*self.send(b"{}", service="ssm"))
        self.assertEqual((status, t), (400, "InvalidSignatureException"))

    def test_malformed_json(self):
        for body in (b"{not json", b"[1,2]", b'"str"', b'{"Limit": 1', b"\xff\xfe"):
            status, t, _ = self.error(*self.send(body))
            self.assertEqual(status, 400, body)
            self.assertEqual(t, "SerializationException", body)

    def test_wrong_member_type(self):
        status, t, _ = self.error(*self.send(b'{"Limit": "ten"}'))
        self.assertEqual((status, t), (400, "SerializationException"))

    def test_unknown_operation(self):
        status, t, _ = self.error(*self.send(b"{}", target="TrentService.MakeCoffee"))
        self.assertEqual(status, 400)
        self.assertTrue(t.endswith("UnknownOperationException"))
        status, t, _ = self.error(*self.send(b"{}", target=None))
        self.assertTrue(t.endswith("UnknownOperationException"))
        status, t, _ = self.error(*self.send(b"{}", target="NoSuchService_20200101.Op"))
        self.assertTrue(t.endswith("UnknownOperationException"))

    def test_body_limit(self):
        big = b'{"Description": "' + b"a" * (2 * 1024 * 1024) + b'"}'
        try:
            status, h, data = self.send(big, target="TrentService.CreateKey")
        except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
            return  # the server may close the connection outright
        self.assertIn(status, (400, 413))

    def test_audit_trail_records_and_verifies(self):
        self.send(b"{}")
        self.send(b"{}", sign=False)
        trail_dir = os.path.join(self.server.data_dir, "audit")
        events = []
        for name in sorted(n for n in os.listdir(trail_dir) if n.startswith("trail-")):
            with open(os.path.join(trail_dir, name)) as f:
                events += [json.loads(line) for line in f if line.strip()]
        names = [(e["eventName"], e.get("errorCode")) for e in events]
        self.assertIn(("ListKeys", None), names)
        self.assertIn(("ListKeys", "MissingAuthenticationTokenException"), names)
        for e in events:
            for field in ("eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
                          "userAgent", "userIdentity", "requestID", "eventID", "readOnly", "resources",
                          "previousEventHash"):
                self.assertIn(field, e)
            self.assertEqual(e["eventSource"], "kms.amazonaws.com")
            self.assertEqual(e["sourceIPAddress"], "127.0.0.1")
        r = subprocess.run([COFFER, "audit", "verify", self.server.data_dir], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
