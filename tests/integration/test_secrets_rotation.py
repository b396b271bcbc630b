"""Secrets Manager rotation through boto3 and /usr/bin/aws secretsmanager, with rotation functions
written here in Python and configured with cofferd --rotation-function ARN=exec:PATH: a rotation
through all four steps (the function calls cofferd back with its own credentials, as a Lambda
does), DescribeSecret's rotation members, a testSecret that fails (AWSCURRENT unchanged, the
failure in the trail, the rotation retried at the next window), rotation on a rate() schedule
with a scaled day, CancelRotateSecret, the AWS errors for bad input, a step that outlives its
timeout (killed), and kill -9 in the middle of a rotation with recovery on restart.
"""
import http.server
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import Cofferd, REGION, stop_checked, trail_events
from secrets_rotation_common import MODES, WAIT, RotationChecks, Webhook, fn_arn, write_functions

DAY_MS = 6000  # --secret-rotation-day-ms: rate(1 days) opens a window every 6 s
TIMEOUT_MS = 8000  # --secret-rotation-timeout-ms: one step of a function


class SecretsRotationTest(RotationChecks, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="coffer-rot-")
        cls.cfg = os.path.join(cls.dir, "cfg.json")
        cls.hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
        threading.Thread(target=cls.hook.serve_forever, daemon=True).start()
        hook_url = "http://127.0.0.1:%d" % cls.hook.server_address[1]
        args = ["--quota-crypto-rps", "0", "--secret-rotation-day-ms", str(DAY_MS),
                "--secret-rotation-timeout-ms", str(TIMEOUT_MS),
                "--rotation-function", "%s=%s/ok" % (fn_arn("hook"), hook_url),
                "--rotation-function", "%s=%s/fail" % (fn_arn("hook-fail"), hook_url)]
        for mode in MODES:
            args += ["--rotation-function", "%s=exec:%s" % (fn_arn(mode), os.path.join(cls.dir, mode + ".py"))]
        # cofferd's own settings in its environment never reach a rotation function
        os.environ["COFFER_ROTATION_TEST_CANARY"] = "not-for-functions"
        try:
            cls.server = Cofferd(extra_args=args).start()
        finally:
            del os.environ["COFFER_ROTATION_TEST_CANARY"]
        cls.write_functions()
        cls.sm = cls.server.client("secretsmanager")
        Webhook.client = cls.server.client("secretsmanager")

    @classmethod
    def write_functions(cls):
        write_functions(cls.server, cls.dir, cls.cfg)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.server)
        cls.hook.shutdown()
        cls.hook.server_close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- a rotation through the four steps ----------------------------------------------------

    def test_rotation_through_four_steps(self):
        name = "rot/ok"
        r = self.sm.create_secret(Name=name, SecretString="first")
        arn, old = r["ARN"], r["VersionId"]
        before = time.time()
        # the CLI, as an operator would
        out = self.server.aws("secretsmanager", "rotate-secret", "--secret-id", name, "--rotation-lambda-arn",
                              fn_arn("ok"), "--rotation-rules", "AutomaticallyAfterDays=30", check=True)[1]
        token = out["VersionId"]
        self.assertEqual((out["ARN"], out["Name"]), (arn, name))
        self.wait(self.rotated_to(name, token), WAIT, "the rotation")
        self.assertEqual([c["step"] for c in self.calls(token)],
                         ["createSecret", "setSecret", "testSecret", "finishSecret"])
        self.assertTrue(all(c["arn"] == arn and c["region"] == REGION for c in self.calls(token)))
        self.assertEqual([c["coffer_env"] for c in self.calls(token)], [[]] * 4)
        self.assertEqual(self.stages(name), {old: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})
        new = self.sm.get_secret_value(SecretId=name)["SecretString"]
        self.assertEqual(len(new), 32)
        self.assertEqual(self.sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"],
                         "first")
        # DescribeSecret as AWS shapes it
        d = self.server.aws("secretsmanager", "describe-secret", "--secret-id", name, check=True)[1]
        self.assertIs(d["RotationEnabled"], True)
        self.assertEqual(d["RotationLambdaARN"], fn_arn("ok"))
        self.assertEqual(d["RotationRules"], {"AutomaticallyAfterDays": 30})
        d = self.describe(name)
        last = d["LastRotatedDate"]
        self.assertTrue(before - 1 <= last <= time.time() + 1, last)
        self.assertAlmostEqual(d["NextRotationDate"], last + 30 * DAY_MS / 1000, delta=1)
        # ListSecrets shows the same members
        listed = [s for s in self.sm.list_secrets()["SecretList"] if s["Name"] == name][0]
        self.assertIs(listed["RotationEnabled"], True)
        self.assertEqual(listed["RotationRules"], {"AutomaticallyAfterDays": 30})
        # the trail: started and succeeded, service events of secretsmanager.amazonaws.com
        ev = self.wait(lambda: [e for e in self.events(name, arn) if e["eventName"] == "RotationSucceeded"],
                       WAIT, "RotationSucceeded in the trail")
        self.assertEqual(ev[0]["eventSource"], "secretsmanager.amazonaws.com")
        self.assertEqual(ev[0]["eventType"], "AwsServiceEvent")
        self.assertEqual(ev[0]["serviceEventDetails"]["ClientRequestToken"], token)
        self.assertIn("RotationStarted", [e["eventName"] for e in self.events(name, arn)])
        self.assertNotIn(new, json.dumps(trail_events(self.server.data_dir)))
        # a second rotation, the stored function and rules, a token of the caller's
        token2 = "a" * 8 + "-1111-2222-3333-" + "b" * 12
        r = self.sm.rotate_secret(SecretId=name, ClientRequestToken=token2)
        self.assertEqual(r["VersionId"], token2)
        self.wait(self.rotated_to(name, token2), WAIT, "the second rotation")
        self.assertEqual(self.stages(name), {token: ["AWSPREVIOUS"], token2: ["AWSCURRENT"]})
        self.assertNotIn(old, self.stages(name))

    # ---- a webhook ----------------------------------------------------------------------------

    def test_webhook(self):
        name = "rot/hook"
        r = self.sm.create_secret(Name=name, SecretString="h0")
        arn, old = r["ARN"], r["VersionId"]
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("hook"))["VersionId"]
        self.wait(self.rotated_to(name, token), WAIT, "the webhook rotation")
        calls = [c for c in Webhook.calls if c[2]["SecretId"] == arn]
        self.assertEqual([c[2]["Step"] for c in calls], ["createSecret", "setSecret", "testSecret", "finishSecret"])
        self.assertEqual(calls[0][1], "application/json")
        self.assertEqual(calls[0][2], {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": token})
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "from-webhook-" + token[:8])
        self.assertEqual(self.stages(name), {old: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})
        # a webhook answering 500 to testSecret: a failed rotation, AWSCURRENT unchanged
        name = "rot/hook-fail"
        r = self.sm.create_secret(Name=name, SecretString="f0")
        arn, old = r["ARN"], r["VersionId"]
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("hook-fail"))["VersionId"]
        failed = self.wait(lambda: [e for e in self.events(name, arn) if e["eventName"] == "RotationFailed"],
                           WAIT, "RotationFailed")
        self.assertEqual(failed[0]["serviceEventDetails"]["FailedStep"], "testSecret")
        self.assertIn("HTTP 500", failed[0]["serviceEventDetails"]["Reason"])
        self.assertEqual(self.stages(name), {old: ["AWSCURRENT"], token: ["AWSPENDING"]})
        self.sm.cancel_rotate_secret(SecretId=name)

    # ---- a failing testSecret -----------------------------------------------------------------

    def test_failed_test_leaves_current_and_retries_at_next_window(self):
        name = "rot/failtest"
        r = self.sm.create_secret(Name=name, SecretString="keep")
        arn, old = r["ARN"], r["VersionId"]
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("failtest"),
                                      RotationRules={"ScheduleExpression": "rate(1 days)"})["VersionId"]
        failed = self.wait(lambda: [e for e in self.events(name, arn) if e["eventName"] == "RotationFailed"],
                           WAIT, "RotationFailed")
        details = failed[0]["serviceEventDetails"]
        self.assertEqual((details["FailedStep"], details["ClientRequestToken"]), ("testSecret", token))
        self.assertIn("status 1", details["Reason"])
        # AWSCURRENT did not move; the candidate stays AWSPENDING, finishSecret never ran
        self.assertEqual(self.stages(name), {old: ["AWSCURRENT"], token: ["AWSPENDING"]})
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "keep")
        self.assertNotIn("finishSecret", [c["step"] for c in self.calls(token)])
        self.assertNotIn("LastRotatedDate", self.sm.describe_secret(SecretId=name))
        # a new rotation is refused while that one is unfinished
        code, msg = self.err(self.sm.rotate_secret, SecretId=name)
        self.assertEqual((code, msg), ("InvalidRequestException",
                                       "A previous rotation isn't complete. That rotation will be reattempted."))
        # the next window (a scaled day later) runs the same rotation again, which now succeeds
        self.wait(self.rotated_to(name, token), DAY_MS / 1000 + WAIT, "the retried rotation")
        self.assertEqual(self.stages(name), {old: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})
        steps = [c["step"] for c in self.calls(token)]
        self.assertEqual(steps.count("createSecret"), 2)
        self.assertEqual(steps[-1], "finishSecret")
        self.assertIn("LastRotatedDate", self.describe(name))
        self.sm.cancel_rotate_secret(SecretId=name)  # rate(1 days) would rotate it every 6 s

    # ---- a schedule ---------------------------------------------------------------------------

    def test_rotation_on_schedule(self):
        name = "rot/schedule"
        r = self.sm.create_secret(Name=name, SecretString="s0")
        start = time.time()
        r = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                                  RotationRules={"ScheduleExpression": "rate(1 days)", "Duration": "2h"})
        self.assertNotIn("VersionId", r)
        d = self.describe(name)
        self.assertEqual(d["RotationRules"], {"AutomaticallyAfterDays": 1, "ScheduleExpression": "rate(1 days)",
                                              "Duration": "2h"})
        self.assertAlmostEqual(d["NextRotationDate"], start + DAY_MS / 1000, delta=5)
        self.assertNotIn("LastRotatedDate", d)
        # no rotation now, only AWS's test of the configuration (test_secrets_rotation_rules.py)
        self.assertNotIn("createSecret", [c["step"] for c in self.calls() if c["arn"] == r["ARN"]])
        # bounded: the window opens a scaled day later, the scheduler ticks every second
        self.wait(lambda: "LastRotatedDate" in self.describe(name), DAY_MS / 1000 + WAIT, "the scheduled rotation")
        self.assertGreaterEqual(time.time() - start, DAY_MS / 1000 - 1)
        self.assertNotEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "s0")
        d = self.describe(name)
        self.assertAlmostEqual(d["NextRotationDate"], d["LastRotatedDate"] + DAY_MS / 1000, delta=5)
        self.sm.cancel_rotate_secret(SecretId=name)

    # ---- CancelRotateSecret -------------------------------------------------------------------

    def test_cancel_rotate_secret(self):
        name = "rot/cancel"
        arn = self.sm.create_secret(Name=name, SecretString="c")["ARN"]
        code, _ = self.err(self.sm.cancel_rotate_secret, SecretId=name)
        self.assertEqual(code, "InvalidRequestException")
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                              RotationRules={"AutomaticallyAfterDays": 7})
        self.assertIn("NextRotationDate", self.describe(name))
        out = self.server.aws("secretsmanager", "cancel-rotate-secret", "--secret-id", name, check=True)[1]
        self.assertEqual((out["ARN"], out["Name"]), (arn, name))
        self.assertNotIn("VersionId", out)
        d = self.describe(name)
        self.assertIs(d["RotationEnabled"], False)
        self.assertNotIn("NextRotationDate", d)
        self.assertEqual(d["RotationLambdaARN"], fn_arn("ok"))
        self.assertEqual(d["RotationRules"], {"AutomaticallyAfterDays": 7})
        # an unfinished rotation: cancel names its version and leaves AWSPENDING there
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("failtest"))["VersionId"]
        self.wait(lambda: [e for e in self.events(name, arn) if e["eventName"] == "RotationFailed"], WAIT,
                  "RotationFailed")
        out = self.sm.cancel_rotate_secret(SecretId=name)
        self.assertEqual(out["VersionId"], token)
        self.assertIn("AWSPENDING", self.stages(name)[token])
        code, _ = self.err(self.sm.rotate_secret, SecretId=name)
        self.assertEqual(code, "InvalidRequestException")
        # once the caller removes AWSPENDING, rotation works again
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=token)
        token2 = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"))["VersionId"]
        self.wait(self.rotated_to(name, token2), WAIT, "the rotation after cancel")

    # ---- bad input ----------------------------------------------------------------------------

    def test_errors(self):
        name = "rot/errors"
        self.sm.create_secret(Name=name, SecretString="e")
        code, msg = self.err(self.sm.rotate_secret, SecretId="rot/none", RotationLambdaARN=fn_arn("ok"))
        self.assertEqual((code, msg), ("ResourceNotFoundException", "Secrets Manager can't find the specified secret."))
        code, msg = self.err(self.sm.rotate_secret, SecretId=name)
        self.assertEqual((code, msg), ("InvalidRequestException",
                                       "No Lambda rotation function ARN is associated with this secret."))
        code, msg = self.err(self.sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn("unknown"))
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("Secrets Manager cannot invoke the specified Lambda function", msg)
        code, msg = self.err(self.sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn("ok"),
                             RotationRules={"AutomaticallyAfterDays": 3, "ScheduleExpression": "rate(3 days)"})
        self.assertEqual((code, msg), ("InvalidParameterException",
                                       "You can't specify both rotation frequency and schedule expression "
                                       "together."))
        for expr in ("rate(1 hours)", "rate(5 minutes)", "cron(0 16 1,15 * * *)", "cron(0 16 1 *)", "every day"):
            code, _ = self.err(self.sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn("ok"),
                               RotationRules={"ScheduleExpression": expr})
            self.assertEqual(code, "InvalidParameterException", expr)
        code, msg = self.err(self.sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn("ok"),
                             RotationRules={"AutomaticallyAfterDays": 1001})
        self.assertEqual(code, "ValidationException")
        self.assertIn("rotationRules.automaticallyAfterDays", msg)
        code, msg = self.err(self.sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn("ok"),
                             RotationRules={"ScheduleExpression": "rate(1 days)", "Duration": "25h"})
        self.assertEqual(code, "InvalidParameterException")
        # nothing was configured by the refused calls
        self.assertNotIn("RotationEnabled", self.sm.describe_secret(SecretId=name))
        # cron accepted as AWS writes it
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("ok"), RotateImmediately=False,
                              RotationRules={"ScheduleExpression": "cron(0 16 1,15 * ? *)", "Duration": "3h"})
        d = self.describe(name)
        self.assertEqual(d["RotationRules"], {"ScheduleExpression": "cron(0 16 1,15 * ? *)", "Duration": "3h"})
        nxt = time.gmtime(d["NextRotationDate"])
        self.assertEqual((nxt.tm_hour, nxt.tm_min), (16, 0))
        self.assertIn(nxt.tm_mday, (1, 15))
        # a secret scheduled for deletion cannot be rotated
        self.sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
        code, msg = self.err(self.sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn("ok"))
        self.assertEqual(code, "InvalidRequestException")
        self.assertIn("marked for deletion", msg)
        code, _ = self.err(self.sm.cancel_rotate_secret, SecretId=name)
        self.assertEqual(code, "InvalidRequestException")

    # ---- timeouts and crashes -----------------------------------------------------------------

    def test_step_timeout_kills_the_function(self):
        name = "rot/slow"
        arn = self.sm.create_secret(Name=name, SecretString="slow")["ARN"]
        old = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        started = time.time()
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("slow"))["VersionId"]
        self.assertLess(time.time() - started, TIMEOUT_MS / 1000 - 2, "RotateSecret waits for no step")
        failed = self.wait(lambda: [e for e in self.events(name, arn) if e["eventName"] == "RotationFailed"],
                           TIMEOUT_MS / 1000 + WAIT, "the timeout")
        self.assertEqual(failed[0]["serviceEventDetails"]["FailedStep"], "setSecret")
        self.assertIn("timed out", failed[0]["serviceEventDetails"]["Reason"])
        stages = self.stages(name)
        self.assertEqual(stages[token], ["AWSPENDING"])
        self.assertEqual({v: s for v, s in stages.items() if v != token}, old)
        self.sm.cancel_rotate_secret(SecretId=name)

    def test_kill9_mid_rotation_resumes_on_restart(self):
        name = "rot/crash"
        r = self.sm.create_secret(Name=name, SecretString="before-crash")
        old = r["VersionId"]
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=fn_arn("sleepset"),
                                      RotationRules={"AutomaticallyAfterDays": 1000})["VersionId"]
        marker = os.path.join(self.dir, "sleeping-" + token)
        self.wait(lambda: os.path.exists(marker), WAIT, "setSecret to start")
        self.server.kill9()
        time.sleep(0.5)
        # the function died with cofferd; the candidate is still AWSPENDING, nothing promoted
        self.assertEqual([c["step"] for c in self.calls(token)], ["createSecret", "setSecret"])
        self.server.start()
        self.write_functions()  # the port changed
        self.__class__.sm = self.server.client("secretsmanager")
        self.sm = self.__class__.sm
        Webhook.client = self.server.client("secretsmanager")
        self.assertEqual(self.stages(name)[old], ["AWSCURRENT"])
        self.assertEqual(self.stages(name)[token], ["AWSPENDING"])
        pending = self.sm.get_secret_value(SecretId=name, VersionId=token, VersionStage="AWSPENDING")
        # the claim of the dead process expires and the rotation runs again with the same token
        self.wait(self.rotated_to(name, token), TIMEOUT_MS / 1000 + WAIT, "the resumed rotation")
        self.assertEqual(self.stages(name), {old: ["AWSPREVIOUS"], token: ["AWSCURRENT"]})
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], pending["SecretString"])
        steps = [c["step"] for c in self.calls(token)]
        self.assertEqual(steps, ["createSecret", "setSecret", "createSecret", "setSecret", "testSecret",
                                 "finishSecret"])


if __name__ == "__main__":
    unittest.main()
