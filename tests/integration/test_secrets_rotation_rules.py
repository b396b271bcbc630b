"""Secrets Manager rotation as AWS runs it, beyond the four steps (test_secrets_rotation.py):

- HTTPS webhooks (cofferd --rotation-function ARN=https://...,ca=PATH): the webhook's certificate
  is checked against the function's CA file (or the system's CAs without one); a certificate
  from another CA fails the rotation with a RotationFailed reason that says so.
"""
import http.server
import os
import shutil
import ssl
import tempfile
import threading
import unittest

from harness import Cofferd, stop_checked
from secrets_rotation_common import WAIT, RotationChecks, Webhook, fn_arn, make_ca, make_server_cert

DAY_MS = 12000  # --secret-rotation-day-ms: one hour of a schedule is 0.5 s
TIMEOUT_MS = 8000


def tls_webhook(cert, key):
    """A Webhook server on loopback speaking HTTPS with cert/key; returns (server, base URL)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "https://127.0.0.1:%d" % server.server_address[1]


class SecretsRotationRulesTest(RotationChecks, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="coffer-rotrules-")
        cls.ca = make_ca(cls.dir, "hook-ca")
        cls.other_ca = make_ca(cls.dir, "other-ca")
        cert, key = make_server_cert(cls.dir, "hook-ca", "hook")
        cls.hook, url = tls_webhook(cert, key)
        args = ["--quota-crypto-rps", "0", "--secret-rotation-day-ms", str(DAY_MS),
                "--secret-rotation-timeout-ms", str(TIMEOUT_MS),
                "--rotation-function", "%s=%s/ok,ca=%s" % (fn_arn("tls"), url, cls.ca),
                "--rotation-function", "%s=%s/ok,ca=%s" % (fn_arn("tls-other-ca"), url, cls.other_ca),
                "--rotation-function", "%s=%s/ok" % (fn_arn("tls-system-ca"), url)]
        cls.server = Cofferd(extra_args=args).start()
        cls.sm = cls.server.client("secretsmanager")
        Webhook.client = cls.server.client("secretsmanager")

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.server)
        cls.hook.shutdown()
        cls.hook.server_close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def failed(self, name, arn):
        return self.wait(lambda: [e for e in self.events(name, arn) if e["eventName"] == "RotationFailed"],
                         WAIT, "RotationFailed")[0]["serviceEventDetails"]

    # ---- HTTPS webhooks ----------------------------------------------------------------------

    def test_https_webhook_with_its_ca(self):
        name = "rules/tls"
        r = self.sm.create_secret(Name=name, SecretString="t0")
        arn, old = r["ARN"], r["VersionId"]
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("tls"))["VersionId"]
        self.wait(self.rotated_to(name, token), WAIT, "the HTTPS webhook rotation")
        calls = [c for c in Webhook.calls if c[2]["SecretId"] == arn]
        self.assertEqual([c[2]["Step"] for c in calls], ["createSecret", "setSecret", "testSecret", "finishSecret"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "from-webhook-" + token[:8])
        self.assertEqual(self.stages(name), {old: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})

    def test_https_webhook_refused_when_the_ca_does_not_match(self):
        for fn, trusted_by in (("tls-other-ca", self.other_ca), ("tls-system-ca", "the system's CA certificates")):
            name = "rules/" + fn
            r = self.sm.create_secret(Name=name, SecretString="keep")
            arn, old = r["ARN"], r["VersionId"]
            token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn(fn))["VersionId"]
            details = self.failed(name, arn)
            self.assertEqual(details["FailedStep"], "createSecret")
            self.assertIn("the rotation webhook's TLS certificate is not trusted by %s" % trusted_by,
                          details["Reason"])
            # the webhook never saw the event; AWSCURRENT stays
            self.assertEqual([c for c in Webhook.calls if c[2]["SecretId"] == arn], [])
            self.assertEqual(self.stages(name), {old: ["AWSCURRENT"], token: ["AWSPENDING"]})
            self.sm.cancel_rotate_secret(SecretId=name)


if __name__ == "__main__":
    unittest.main()
