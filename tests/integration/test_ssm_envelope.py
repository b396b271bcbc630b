"""SecureString values beyond one KMS Encrypt (4096 bytes) through boto3: envelope encryption
under the parameter's key on the Advanced tier (4096/4097/8192/8193 bytes on both tiers), both
stored forms reading back, the caller's kms:Decrypt still deciding, and the KMS calls Parameter
Store makes in-process recorded in the trail as KMS events invokedBy ssm.amazonaws.com.
"""
import base64
import json
import time
import unittest

from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase, trail_events

ACCOUNT = "000000000000"


def arn(name):
    return "arn:aws:ssm:%s:%s:parameter/%s" % (REGION, ACCOUNT, name.lstrip("/"))


def value_of(n, seed):
    base = ("%s-" % seed) * (n // (len(seed) + 1) + 1)
    return base[:n]


class SsmEnvelopeTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")

    def read(self, name):
        return self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]

    def test_sizes_on_both_tiers(self):
        for tier, sizes_ok, size_bad in (("Standard", (1, 4096), 4097), ("Advanced", (4096, 4097, 8192), 8193)):
            for n in sizes_ok:
                name = "/env/%s/v%d" % (tier.lower(), n)
                value = value_of(n, "canary%d" % n)
                r = self.ssm.put_parameter(Name=name, Value=value, Type="SecureString", Tier=tier)
                self.assertEqual(r["Tier"], tier)
                self.assertEqual(self.read(name), value, (tier, n))
                stored = self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
                blob = base64.b64decode(stored, validate=True)
                if n >= 64:
                    self.assertNotIn(value[:64].encode(), blob)
            code, msg = self.err(self.ssm.put_parameter, Name="/env/%s/bad" % tier.lower(),
                                 Value=value_of(size_bad, "x"), Type="SecureString", Tier=tier)
            self.assertEqual(code, "ValidationException", (tier, msg))
            self.assertIn("maximum parameter value", msg)
        r = self.ssm.put_parameter(Name="/env/it/v5000", Value=value_of(5000, "it"), Type="SecureString",
                                   Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Advanced")
        self.assertEqual(self.read("/env/it/v5000"), value_of(5000, "it"))

    def test_both_forms_in_one_history(self):
        name = "/env/history/p"
        small, large = value_of(100, "small"), value_of(6000, "large")
        self.ssm.put_parameter(Name=name, Value=small, Type="SecureString", Tier="Advanced")
        self.ssm.put_parameter(Name=name, Value=large, Overwrite=True)
        self.ssm.put_parameter(Name=name, Value=small + "!", Overwrite=True)
        hist = self.ssm.get_parameter_history(Name=name, WithDecryption=True)["Parameters"]
        self.assertEqual([h["Value"] for h in hist], [small, large, small + "!"])
        self.assertEqual(self.ssm.get_parameter(Name=name + ":2", WithDecryption=True)["Parameter"]["Value"], large)
        page = self.ssm.get_parameters_by_path(Path="/env/history", WithDecryption=True)["Parameters"]
        self.assertEqual([p["Value"] for p in page], [small + "!"])
        got = self.ssm.get_parameters(Names=[name + ":2", name + ":1"], WithDecryption=True)["Parameters"]
        self.assertEqual(sorted(p["Value"] for p in got), sorted([large, small]))
        self.assertNotIn(large[:64], json.dumps(self.ssm.get_parameter_history(Name=name)["Parameters"],
                                                 default=str))

    def test_customer_key_and_the_callers_decrypt(self):
        kms = self.server.client("kms")
        key = kms.create_key(Description="ssm envelope key")["KeyMetadata"]
        name, secret = "/env/customer/p", value_of(7000, "customer")
        self.ssm.put_parameter(Name=name, Value=secret, Type="SecureString", KeyId=key["Arn"], Tier="Advanced")
        self.assertEqual(self.read(name), secret)
        iam = self.server.client("iam")
        iam.create_user(UserName="env-no-kms")
        ak = iam.create_access_key(UserName="env-no-kms")["AccessKey"]
        iam.put_user_policy(UserName="env-no-kms", PolicyName="ssm", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}))
        user = self.server.client("ssm", akid=ak["AccessKeyId"], secret=ak["SecretAccessKey"])
        deadline = time.time() + 10
        while True:
            try:
                user.get_parameter(Name=name)
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        code, msg = self.err(user.get_parameter, Name=name, WithDecryption=True)
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("kms:Decrypt", msg)
        # writing a large value needs kms:GenerateDataKey on the key, as in AWS
        code, _ = self.err(user.put_parameter, Name="/env/customer/by-user", Value=value_of(5000, "u"),
                           Type="SecureString", KeyId=key["KeyId"], Tier="Advanced")
        self.assertEqual(code, "AccessDeniedException")
        iam.put_user_policy(UserName="env-no-kms", PolicyName="kms", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt",
                                                   "Resource": key["Arn"]}]}))
        deadline = time.time() + 10
        while True:
            try:
                value = user.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.assertEqual(value, secret)

    def test_kms_calls_are_in_the_trail(self):
        small, large = "/env/trail/small", "/env/trail/large"
        secret = value_of(5000, "trailcanary")
        self.ssm.put_parameter(Name=small, Value="trail-small-canary", Type="SecureString")
        self.ssm.put_parameter(Name=large, Value=secret, Type="SecureString", Tier="Advanced")
        self.read(small)
        self.read(large)
        want = {("Encrypt", small), ("GenerateDataKey", large), ("Decrypt", small), ("Decrypt", large)}
        deadline = time.time() + 10
        while True:
            evs = trail_events(self.server.data_dir)
            kms = [e for e in evs if e.get("eventSource") == "kms.amazonaws.com"
                   and (e.get("userIdentity") or {}).get("invokedBy") == "ssm.amazonaws.com"]
            got = {(e["eventName"], e["requestParameters"]["encryptionContext"]["PARAMETER_ARN"]) for e in kms}
            if {(op, arn(n)) for op, n in want} <= got:
                break
            self.assertLess(time.time(), deadline, got)
            time.sleep(0.2)
        ssm_ids = {e["requestID"]: e for e in evs if e.get("eventSource") == "ssm.amazonaws.com"}
        for e in kms:
            if e["requestParameters"]["encryptionContext"]["PARAMETER_ARN"] not in (arn(small), arn(large)):
                continue
            self.assertEqual(e["sourceIPAddress"], "ssm.amazonaws.com")
            self.assertEqual(e["userIdentity"]["arn"], "arn:aws:iam::%s:root" % ACCOUNT)
            self.assertEqual(e["eventType"], "AwsApiCall")
            self.assertNotIn("errorCode", e)
            self.assertEqual(e["resources"][0]["type"], "AWS::KMS::Key")
            # the KMS event belongs to the Parameter Store request that made it
            self.assertIn(e["requestID"], ssm_ids)
            self.assertIn(ssm_ids[e["requestID"]]["eventName"], ("PutParameter", "GetParameter"))
        text = json.dumps(evs)
        self.assertNotIn("trail-small-canary", text)
        self.assertNotIn(secret[:64], text)
        # a refused KMS call is on record with its error
        code, _ = self.err(self.ssm.put_parameter, Name="/env/trail/nokey", Value="v", Type="SecureString",
                           KeyId="alias/env-does-not-exist")
        self.assertEqual(code, "InvalidKeyId")
        deadline = time.time() + 10
        while True:
            failed = [e for e in trail_events(self.server.data_dir) if e.get("eventSource") == "kms.amazonaws.com"
                      and (e.get("requestParameters") or {}).get("keyId") == "alias/env-does-not-exist"]
            if failed:
                break
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        self.assertEqual(failed[0]["errorCode"], "NotFoundException")
        self.assertEqual(failed[0]["userIdentity"]["invokedBy"], "ssm.amazonaws.com")


if __name__ == "__main__":
    unittest.main()
