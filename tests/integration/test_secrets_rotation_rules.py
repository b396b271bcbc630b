"""Secrets Manager rotation as AWS runs it, beyond the four steps (test_secrets_rotation.py):

- RotateSecret with RotateImmediately=false runs the function's testSecret step alone, now, with
  AWSPENDING on the AWSCURRENT version for the test's time (removed afterwards); a failing test
  is a RotationFailed in the trail and leaves the schedule as it was. The rotation itself waits
  for its window.
- RotationRules Duration: a scheduled rotation starts inside its window, at the moment picked
  from the secret's ARN and the window's opening (sm_schedule_window_start, mirrored here), not
  at the opening; a window that closed while cofferd was down is skipped for the next one.
- AutomaticallyAfterDays: a PutSecretValue / UpdateSecret of a new value counts as a rotation
  (AWS's RotationRulesType documentation): NextRotationDate moves to N days after it; a
  ScheduleExpression keeps its calendar.
- HTTPS webhooks (cofferd --rotation-function ARN=https://...,ca=PATH): the webhook's certificate
  is checked against the function's CA file (or the system's CAs without one); a certificate
  from another CA fails the rotation with a RotationFailed reason that says so.
"""
import http.server
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
import unittest

from harness import Cofferd, stop_checked
from secrets_rotation_common import (WAIT, RotationChecks, Webhook, fn_arn, make_ca, make_server_cert,
                                     write_functions)

DAY_MS = 12000  # --secret-rotation-day-ms: one hour of a schedule is 0.5 s
TIMEOUT_MS = 8000
FNV_PRIME, FNV_MASK = 1099511628211, (1 << 64) - 1


def window_start(opening, end, seed):
    """When cofferd starts a rotation in the window [opening, end) (ms): sm_schedule_window_start."""
    h = 14695981039346656037
    for b in seed.encode():
        h = ((h ^ b) * FNV_PRIME) & FNV_MASK
    for i in range(8):
        h = ((h ^ ((opening >> (8 * i)) & 0xff)) * FNV_PRIME) & FNV_MASK
    h ^= h >> 29
    return opening + h % (end - opening)


def server_args(fn_dir, extra=()):
    return ["--quota-crypto-rps", "0", "--secret-rotation-day-ms", str(DAY_MS),
            "--secret-rotation-timeout-ms", str(TIMEOUT_MS),
            "--rotation-function", "%s=exec:%s" % (fn_arn("ok"), os.path.join(fn_dir, "ok.py"))] + list(extra)


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
        args = server_args(cls.dir, [
            "--rotation-function", "%s=%s/ok,ca=%s" % (fn_arn("tls"), url, cls.ca),
            "--rotation-function", "%s=%s/ok,ca=%s" % (fn_arn("tls-other-ca"), url, cls.other_ca),
            "--rotation-function", "%s=%s/ok" % (fn_arn("tls-system-ca"), url)])
        cls.server = Cofferd(extra_args=args).start()
        write_functions(cls.server, cls.dir, os.path.join(cls.dir, "cfg.json"), ("ok",))
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

    def seen(self, fn_dir, token):
        path = os.path.join(fn_dir, "seen.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [e for e in (json.loads(line) for line in f if line.strip()) if e["token"] == token]

    def wait_tested(self, name):
        """Waits for RotateImmediately=false's configuration test to end (AWSPENDING gone)."""
        self.wait(lambda: all("AWSPENDING" not in st for st in self.stages(name).values()), WAIT,
                  "the configuration test of " + name)

    def steps_of(self, arn, step=None):
        return [c for c in self.calls() if c["arn"] == arn and (step is None or c["step"] == step)]

    # ---- RotateImmediately=false ---------------------------------------------------------------

    def test_rotate_later_runs_only_test_secret_now(self):
        name = "rules/later"
        r = self.sm.create_secret(Name=name, SecretString="l0")
        arn, current = r["ARN"], r["VersionId"]
        start = time.time()
        out = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                                    RotationRules={"AutomaticallyAfterDays": 30})
        self.assertNotIn("VersionId", out)
        # testSecret alone, with the AWSCURRENT version as its token, which carried AWSPENDING then
        self.wait(lambda: self.steps_of(arn) and self.stages(name) == {current: ["AWSCURRENT"]}, WAIT,
                  "the configuration test")
        self.assertEqual([(c["step"], c["token"]) for c in self.steps_of(arn)], [("testSecret", current)])
        self.assertEqual(sorted(self.seen(self.dir, current)[0]["stages"]), ["AWSCURRENT", "AWSPENDING"])
        # no rotation happened: the value, the labels and the schedule are as configured
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "l0")
        d = self.describe(name)
        self.assertIs(d["RotationEnabled"], True)
        self.assertNotIn("LastRotatedDate", d)
        self.assertAlmostEqual(d["NextRotationDate"], start + 30 * DAY_MS / 1000, delta=5)
        self.assertEqual([e["eventName"] for e in self.events(name, arn)], [])
        # the rotation can be started now: no rotation is left unfinished
        token = self.sm.rotate_secret(SecretId=name)["VersionId"]
        self.wait(self.rotated_to(name, token), WAIT, "the rotation after the test")
        self.assertEqual(self.stages(name), {current: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})
        self.sm.cancel_rotate_secret(SecretId=name)

    def test_rotate_later_with_a_failing_test(self):
        name = "rules/later-fails"
        r = self.sm.create_secret(Name=name, SecretString="f0")
        arn, current = r["ARN"], r["VersionId"]
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("tls-other-ca"), RotateImmediately=False,
                              RotationRules={"AutomaticallyAfterDays": 30})
        details = self.failed(name, arn)
        self.assertEqual((details["FailedStep"], details["ClientRequestToken"]), ("testSecret", current))
        self.assertIn("TLS certificate is not trusted", details["Reason"])
        self.wait(lambda: self.stages(name) == {current: ["AWSCURRENT"]}, WAIT, "AWSPENDING to go")
        d = self.describe(name)
        self.assertIs(d["RotationEnabled"], True)
        self.assertIn("NextRotationDate", d)
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "f0")
        self.sm.cancel_rotate_secret(SecretId=name)

    # ---- windows -------------------------------------------------------------------------------

    def test_scheduled_rotation_starts_inside_its_window(self):
        secrets = []
        for i in range(3):
            name = "rules/window%d" % i
            arn = self.sm.create_secret(Name=name, SecretString="w")["ARN"]
            self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                                  RotationRules={"ScheduleExpression": "rate(1 days)", "Duration": "12h"})
            opening = round(self.describe(name)["NextRotationDate"] * 1000)
            # 12 scaled hours, cut at the end of the scaled day
            end = min(opening + 12 * DAY_MS // 24, (opening // DAY_MS + 1) * DAY_MS)
            secrets.append((name, arn, opening, end, window_start(opening, end, arn)))
        for name, arn, opening, end, due in secrets:
            self.wait(lambda: self.steps_of(arn, "createSecret"), DAY_MS / 1000 + WAIT, "the rotation of " + name)
            started = self.steps_of(arn, "createSecret")[0]["t"] * 1000
            self.assertTrue(opening <= due < end, (opening, due, end))
            # the job ticks every second; the function is a Python program that takes its time
            self.assertGreaterEqual(started, due - 100, (name, opening, due, end))
            self.assertLess(started, due + 1000 + 30000, (name, opening, due, end))
            self.sm.cancel_rotate_secret(SecretId=name)

    def test_window_missed_while_down_waits_for_the_next(self):
        fn_dir = tempfile.mkdtemp(prefix="coffer-rotdown-")
        cfg = os.path.join(fn_dir, "cfg.json")
        server = Cofferd(extra_args=server_args(fn_dir)).start()
        try:
            write_functions(server, fn_dir, cfg, ("ok",))
            sm = server.client("secretsmanager")
            name = "rules/down"
            r = sm.create_secret(Name=name, SecretString="d0")
            arn, current = r["ARN"], r["VersionId"]
            # a window of one scaled hour (0.5 s)
            sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                             RotationRules={"ScheduleExpression": "rate(1 days)", "Duration": "1h"})
            self.wait(lambda: sm.describe_secret(SecretId=name)["VersionIdsToStages"] == {current: ["AWSCURRENT"]},
                      WAIT, "the configuration test")
            opening = self.describe(name, sm)["NextRotationDate"]
            server.stop()
            time.sleep(max(0, opening + 0.5 + 1.5 - time.time()))
            server.start()
            write_functions(server, fn_dir, cfg, ("ok",))  # the port changed
            sm = server.client("secretsmanager")
            time.sleep(3)
            calls = os.path.join(fn_dir, "calls.jsonl")
            if os.path.exists(calls):
                with open(calls) as f:
                    self.assertNotIn("createSecret", f.read())
            d = self.describe(name, sm)
            self.assertNotIn("LastRotatedDate", d)
            self.assertAlmostEqual(d["NextRotationDate"], opening + DAY_MS / 1000, delta=0.01)
            self.wait(lambda: "LastRotatedDate" in self.describe(name, sm), DAY_MS / 1000 + WAIT,
                      "the rotation in the next window")
            with open(calls) as f:
                created = [json.loads(line) for line in f if '"createSecret"' in line]
            self.assertGreaterEqual(created[0]["t"], opening + DAY_MS / 1000 - 0.1)
            self.assertEqual(created[0]["arn"], arn)
            sm.cancel_rotate_secret(SecretId=name)
        finally:
            stop_checked(server)
            shutil.rmtree(fn_dir, ignore_errors=True)

    # ---- a new value counts as a rotation --------------------------------------------------------

    def test_new_value_restarts_automatically_after_days(self):
        name = "rules/manual"
        self.sm.create_secret(Name=name, SecretString="m0")
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                              RotationRules={"AutomaticallyAfterDays": 10})
        self.wait_tested(name)
        first = self.describe(name)["NextRotationDate"]
        time.sleep(1.5)
        before = time.time()
        self.sm.put_secret_value(SecretId=name, SecretString="m1")
        after_put = self.describe(name)["NextRotationDate"]
        self.assertGreater(after_put, first + 1)
        self.assertTrue(before + 10 * DAY_MS / 1000 - 0.1 <= after_put <= time.time() + 10 * DAY_MS / 1000 + 0.1)
        self.assertNotIn("LastRotatedDate", self.describe(name))
        time.sleep(1.5)
        self.sm.update_secret(SecretId=name, SecretString="m2")
        self.assertGreater(self.describe(name)["NextRotationDate"], after_put + 1)
        # a value that does not become AWSCURRENT is no rotation, nor is a description
        at = self.describe(name)["NextRotationDate"]
        time.sleep(1.1)
        self.sm.put_secret_value(SecretId=name, SecretString="m3", VersionStages=["CUSTOM"])
        self.sm.update_secret(SecretId=name, Description="d")
        self.assertEqual(self.describe(name)["NextRotationDate"], at)
        self.sm.cancel_rotate_secret(SecretId=name)
        # a schedule expression keeps its calendar
        name = "rules/manual-cron"
        self.sm.create_secret(Name=name, SecretString="c0")
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                              RotationRules={"ScheduleExpression": "cron(0 16 1,15 * ? *)"})
        self.wait_tested(name)
        at = self.describe(name)["NextRotationDate"]
        self.sm.put_secret_value(SecretId=name, SecretString="c1")
        self.assertEqual(self.describe(name)["NextRotationDate"], at)
        self.sm.cancel_rotate_secret(SecretId=name)

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
