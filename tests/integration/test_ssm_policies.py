"""Parameter policies through boto3: validation with AWS's error names, the tier rules (Advanced
only, Intelligent-Tiering upgrades), Policies in DescribeParameters and GetParameterHistory,
overwrite semantics, and the scheduler carrying them out: an Expiration deletes the parameter
(a DeleteParameter service event in the trail) and notifications are EventBridge-shaped lines in
DATA/events/ssm.jsonl.
"""
import datetime
import json
import os
import time
import unittest

from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase, trail_events

ACCOUNT = "000000000000"


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def expiration(seconds_from_now):
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return {"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": iso(at)}}


def notification(kind, n, unit):
    member = "Before" if kind == "ExpirationNotification" else "After"
    return {"Type": kind, "Version": "1.0", "Attributes": {member: str(n), "Unit": unit}}


def arn(name):
    return "arn:aws:ssm:%s:%s:parameter/%s" % (REGION, ACCOUNT, name.lstrip("/"))


class SsmPoliciesTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")

    def describe(self, name):
        r = self.ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])
        self.assertEqual(len(r["Parameters"]), 1, r)
        return r["Parameters"][0]

    def events(self):
        path = os.path.join(self.server.data_dir, "events", "ssm.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    def test_policies_are_reported(self):
        exp = expiration(86400 * 30)
        note = notification("ExpirationNotification", 2, "Days")
        nochange = notification("NoChangeNotification", 12, "Hours")
        r = self.ssm.put_parameter(Name="/pol/report/a", Value="v", Type="String", Tier="Advanced",
                                   Policies=json.dumps([exp, note, nochange]))
        self.assertEqual(r["Tier"], "Advanced")
        pols = self.describe("/pol/report/a")["Policies"]
        self.assertEqual([p["PolicyType"] for p in pols], ["Expiration", "ExpirationNotification",
                                                            "NoChangeNotification"])
        self.assertEqual({p["PolicyStatus"] for p in pols}, {"Pending"})
        self.assertEqual(json.loads(pols[0]["PolicyText"]), exp)
        self.assertEqual(json.loads(pols[2]["PolicyText"]), nochange)
        hist = self.ssm.get_parameter_history(Name="/pol/report/a")["Parameters"]
        self.assertEqual([p["PolicyType"] for p in hist[0]["Policies"]],
                         ["Expiration", "ExpirationNotification", "NoChangeNotification"])
        # a parameter without policies reports an empty list
        self.ssm.put_parameter(Name="/pol/report/b", Value="v", Type="String")
        self.assertEqual(self.describe("/pol/report/b")["Policies"], [])

    def test_overwrite_keeps_replaces_or_removes(self):
        name = "/pol/overwrite/a"
        self.ssm.put_parameter(Name=name, Value="v1", Type="String", Tier="Advanced",
                               Policies=json.dumps([expiration(86400)]))
        self.ssm.put_parameter(Name=name, Value="v2", Overwrite=True)
        self.assertEqual([p["PolicyType"] for p in self.describe(name)["Policies"]], ["Expiration"])
        self.ssm.put_parameter(Name=name, Value="v3", Overwrite=True,
                               Policies=json.dumps([notification("NoChangeNotification", 3, "Days")]))
        self.assertEqual([p["PolicyType"] for p in self.describe(name)["Policies"]], ["NoChangeNotification"])
        self.ssm.put_parameter(Name=name, Value="v4", Overwrite=True, Policies="[{}]")
        self.assertEqual(self.describe(name)["Policies"], [])
        hist = self.ssm.get_parameter_history(Name=name)["Parameters"]
        self.assertEqual([len(h["Policies"]) for h in hist], [1, 1, 1, 0])

    def test_tiers(self):
        pol = json.dumps([expiration(86400)])
        code, msg = self.err(self.ssm.put_parameter, Name="/pol/tier/std", Value="v", Type="String",
                             Tier="Standard", Policies=pol)
        self.assertEqual(code, "ValidationException")
        self.assertIn("advanced-parameter tier", msg)
        # without a Tier the default (Standard) applies
        code, _ = self.err(self.ssm.put_parameter, Name="/pol/tier/none", Value="v", Type="String", Policies=pol)
        self.assertEqual(code, "ValidationException")
        self.assertEqual(self.err(self.ssm.get_parameter, Name="/pol/tier/std")[0], "ParameterNotFound")
        r = self.ssm.put_parameter(Name="/pol/tier/it", Value="v", Type="String", Tier="Intelligent-Tiering",
                                   Policies=pol)
        self.assertEqual(r["Tier"], "Advanced")
        self.assertEqual(self.describe("/pol/tier/it")["Tier"], "Advanced")
        # an Intelligent-Tiering parameter without policies stays Standard
        r = self.ssm.put_parameter(Name="/pol/tier/it2", Value="v", Type="String", Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Standard")
        # an existing Standard parameter cannot take policies without moving up
        code, _ = self.err(self.ssm.put_parameter, Name="/pol/tier/it2", Value="v", Overwrite=True, Policies=pol)
        self.assertEqual(code, "ValidationException")
        r = self.ssm.put_parameter(Name="/pol/tier/it2", Value="v", Overwrite=True, Policies=pol,
                                   Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Advanced")

    def test_validation(self):
        def put(policies):
            return self.err(self.ssm.put_parameter, Name="/pol/bad/a", Value="v", Type="String",
                            Tier="Advanced", Policies=policies)
        self.assertEqual(put("[{\"Type\": ")[0], "ValidationException")
        self.assertEqual(put("{\"Type\": \"Expiration\"}")[0], "ValidationException")
        code, msg = put(json.dumps([{"Type": "Deletion", "Version": "1.0", "Attributes": {}}]))
        self.assertEqual(code, "InvalidPolicyTypeException")
        self.assertIn("Expiration, ExpirationNotification, and NoChangeNotification", msg)
        past = {"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": "2020-01-01T00:00:00.000Z"}}
        self.assertEqual(put(json.dumps([past]))[0], "InvalidPolicyAttributeException")
        garbled = {"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": "tomorrow"}}
        self.assertEqual(put(json.dumps([garbled]))[0], "InvalidPolicyAttributeException")
        self.assertEqual(put(json.dumps([notification("NoChangeNotification", 3, "Weeks")]))[0],
                         "InvalidPolicyAttributeException")
        self.assertEqual(put(json.dumps([notification("NoChangeNotification", 0, "Days")]))[0],
                         "InvalidPolicyAttributeException")
        no_version = expiration(3600)
        del no_version["Version"]
        self.assertEqual(put(json.dumps([no_version]))[0], "InvalidPolicyAttributeException")
        code, msg = put(json.dumps([expiration(3600), expiration(7200)]))
        self.assertEqual(code, "IncompatiblePolicyException")
        self.assertIn("two Expiration policies", msg)
        self.assertEqual(put(json.dumps([notification("ExpirationNotification", 1, "Days")]))[0],
                         "IncompatiblePolicyException")
        code, msg = put(json.dumps([expiration(3600)] + [notification("NoChangeNotification", i + 1, "Days")
                                                         for i in range(10)]))
        self.assertEqual(code, "PoliciesLimitExceededException")
        self.assertIn("The maximum is 10", msg)
        self.assertEqual(self.err(self.ssm.get_parameter, Name="/pol/bad/a")[0], "ParameterNotFound")
        # an offset time is an ISO-8601 instant too
        ok = {"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": "2099-11-01T22:13:48.87+10:30"}}
        self.ssm.put_parameter(Name="/pol/bad/ok", Value="v", Type="String", Tier="Advanced",
                               Policies=json.dumps([ok]))

    def test_the_scheduler_carries_policies_out(self):
        name = "/pol/sched/expiring"
        self.ssm.put_parameter(Name=name, Value="short-lived", Type="String", Tier="Advanced",
                               Policies=json.dumps([expiration(4),
                                                    notification("ExpirationNotification", 1, "Hours")]))
        # the notification was due at once (an hour before a time seconds away): the next tick sends it
        deadline = time.time() + 20
        while True:
            try:
                self.ssm.get_parameter(Name=name)
            except ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], "ParameterNotFound")
                break
            self.assertLess(time.time(), deadline, "the Expiration policy did not delete the parameter")
            time.sleep(0.3)
        mine = [e for e in self.events() if e["detail"]["parameter-name"] == name]
        self.assertEqual([e["detail"]["policy-type"] for e in mine], ["ExpirationNotification", "Expiration"])
        for e in mine:
            self.assertEqual(e["detail-type"], "Parameter Store Policy Action")
            self.assertEqual(e["source"], "aws.ssm")
            self.assertEqual(e["version"], "0")
            self.assertEqual((e["account"], e["region"]), (ACCOUNT, REGION))
            self.assertEqual(e["resources"], [arn(name)])
            self.assertEqual(e["detail"]["parameter-type"], "String")
            self.assertEqual(e["detail"]["action-status"], "Finished")
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertEqual(len(e["id"]), 36)
        deadline = time.time() + 10
        while True:
            svc = [e for e in trail_events(self.server.data_dir)
                   if e.get("eventType") == "AwsServiceEvent" and e.get("eventName") == "DeleteParameter"
                   and e["resources"][0]["ARN"] == arn(name)]
            if svc:
                break
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        self.assertEqual(svc[0]["eventSource"], "ssm.amazonaws.com")
        self.assertEqual(svc[0]["userIdentity"]["invokedBy"], "ssm.amazonaws.com")
        # a name used again starts afresh: no leftover policy acts on it
        self.ssm.put_parameter(Name=name, Value="again", Type="String")
        time.sleep(2.5)
        self.assertEqual(self.ssm.get_parameter(Name=name)["Parameter"]["Value"], "again")

    def test_overwrite_without_policies_keeps_the_expiration(self):
        name = "/pol/sched/kept"
        self.ssm.put_parameter(Name=name, Value="v1", Type="String", Tier="Advanced",
                               Policies=json.dumps([expiration(5)]))
        self.ssm.put_parameter(Name=name, Value="v2", Overwrite=True)
        deadline = time.time() + 20
        while True:
            try:
                self.ssm.get_parameter(Name=name)
            except ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], "ParameterNotFound")
                break
            self.assertLess(time.time(), deadline, "the kept Expiration did not act")
            time.sleep(0.3)

    def test_removed_policies_do_not_act(self):
        name = "/pol/sched/removed"
        self.ssm.put_parameter(Name=name, Value="v1", Type="String", Tier="Advanced",
                               Policies=json.dumps([expiration(3)]))
        self.ssm.put_parameter(Name=name, Value="v2", Overwrite=True, Policies="[{}]")
        time.sleep(5)
        self.assertEqual(self.ssm.get_parameter(Name=name)["Parameter"]["Value"], "v2")
        self.assertEqual([e for e in self.events() if e["detail"]["parameter-name"] == name], [])


if __name__ == "__main__":
    unittest.main()
