"""KMS key rotation against a live cofferd: EnableKeyRotation, DisableKeyRotation and
GetKeyRotationStatus through boto3 and /usr/bin/aws; RotateKeyOnDemand, ListKeyRotations and
RotationPeriodInDays through the AWS SDK for JavaScript v3 (tests/js), which Debian's CLI 2.9
and boto3 1.26 predate. Also: the errors AWS gives, rotation by alias, a rotation surviving a
restart, scheduled rotations (cofferd --rotation-day-ms shortens a day) and a kill -9 while the
scheduler rotates, after which no key is half-rotated."""
import base64
import datetime
import json
import os
import shutil
import subprocess
import time
import unittest

from botocore.exceptions import ClientError

from harness import REGION, Cofferd, ServerTestCase, js_call, js_ok, trail_events

ACCOUNT = "000000000000"


def current_material(server, key_id):
    """DescribeKey's CurrentKeyMaterialId (newer than boto3 1.26's model)."""
    return js_ok(server, "DescribeKey", KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]


def arn(key_id):
    return "arn:aws:kms:%s:%s:key/%s" % (REGION, ACCOUNT, key_id)


class KmsRotationTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def new_key(self):
        return self.kms.create_key()["KeyMetadata"]["KeyId"]

    def test_boto3_enable_disable_status(self):
        k = self.new_key()
        self.assertFalse(self.kms.get_key_rotation_status(KeyId=k)["KeyRotationEnabled"])
        self.kms.enable_key_rotation(KeyId=k)
        self.assertTrue(self.kms.get_key_rotation_status(KeyId=arn(k))["KeyRotationEnabled"])
        # The members boto3 1.26 does not know yet, as a current SDK reads them.
        st = js_ok(self.server, "GetKeyRotationStatus", KeyId=k)
        self.assertEqual(st["KeyId"], arn(k))
        self.assertEqual(st["RotationPeriodInDays"], 365)
        next_date = datetime.datetime.fromisoformat(st["NextRotationDate"].replace("Z", "+00:00")).timestamp()
        self.assertAlmostEqual(next_date, time.time() + 365 * 86400, delta=120)
        self.assertNotIn("OnDemandRotationStartDate", st)
        self.kms.disable_key_rotation(KeyId=k)
        self.assertFalse(self.kms.get_key_rotation_status(KeyId=k)["KeyRotationEnabled"])
        st = js_ok(self.server, "GetKeyRotationStatus", KeyId=k)
        self.assertNotIn("NextRotationDate", st)

    def test_cli_enable_disable_status(self):
        k = self.new_key()
        self.server.aws("kms", "enable-key-rotation", "--key-id", k, check=True)
        _, out, _ = self.server.aws("kms", "get-key-rotation-status", "--key-id", k, check=True)
        self.assertTrue(out["KeyRotationEnabled"])
        self.server.aws("kms", "disable-key-rotation", "--key-id", arn(k), check=True)
        _, out, _ = self.server.aws("kms", "get-key-rotation-status", "--key-id", k, check=True)
        self.assertFalse(out["KeyRotationEnabled"])
        # Aliases are not accepted by the rotation operations (key id or key ARN only).
        self.kms.create_alias(AliasName="alias/rot-cli", TargetKeyId=k)
        rc, _, err = self.server.aws("kms", "enable-key-rotation", "--key-id", "alias/rot-cli")
        self.assertNotEqual(rc, 0)
        self.assertIn("NotFoundException", err)
        self.assertIn("Invalid keyId 'alias/rot-cli'", err)
        self.kms.disable_key(KeyId=k)
        rc, _, err = self.server.aws("kms", "enable-key-rotation", "--key-id", k)
        self.assertNotEqual(rc, 0)
        self.assertIn("DisabledException", err)
        self.assertIn("%s is disabled." % arn(k), err)

    def test_state_errors(self):
        k = self.new_key()
        self.kms.disable_key(KeyId=k)
        for fn in (self.kms.enable_key_rotation, self.kms.disable_key_rotation):
            self.assertEqual(self.error(fn, KeyId=k), ("DisabledException", "%s is disabled." % arn(k)))
        self.assertEqual(js_call(self.server, "RotateKeyOnDemand", KeyId=k),
                         ("DisabledException", "%s is disabled." % arn(k)))
        self.kms.schedule_key_deletion(KeyId=k, PendingWindowInDays=7)
        for fn in (self.kms.enable_key_rotation, self.kms.disable_key_rotation):
            self.assertEqual(self.error(fn, KeyId=k),
                             ("KMSInvalidStateException", "%s is pending deletion." % arn(k)))
        self.assertEqual(js_call(self.server, "RotateKeyOnDemand", KeyId=k),
                         ("KMSInvalidStateException", "%s is pending deletion." % arn(k)))
        # Pending deletion reads as "not rotating"; the operations that only read still answer.
        self.assertFalse(self.kms.get_key_rotation_status(KeyId=k)["KeyRotationEnabled"])
        self.assertEqual(js_ok(self.server, "ListKeyRotations", KeyId=k)["Rotations"], [])
        missing = "11111111-2222-3333-4444-555555555555"
        self.assertEqual(self.error(self.kms.enable_key_rotation, KeyId=missing),
                         ("NotFoundException", "Key '%s' does not exist" % arn(missing)))

    def test_period_through_js(self):
        k = self.new_key()
        js_ok(self.server, "EnableKeyRotation", KeyId=k, RotationPeriodInDays=180)
        st = js_ok(self.server, "GetKeyRotationStatus", KeyId=k)
        self.assertEqual(st["RotationPeriodInDays"], 180)
        self.assertTrue(st["KeyRotationEnabled"])
        for bad, constraint in ((89, "greater than or equal to 90"), (2561, "less than or equal to 2560")):
            self.assertEqual(
                js_call(self.server, "EnableKeyRotation", KeyId=k, RotationPeriodInDays=bad),
                ("ValidationException",
                 "1 validation error detected: Value '%d' at 'rotationPeriodInDays' failed to satisfy "
                 "constraint: Member must have value %s" % (bad, constraint)))
        self.assertEqual(js_ok(self.server, "GetKeyRotationStatus", KeyId=k)["RotationPeriodInDays"], 180)
        # On record with its parameters.
        events = [e for e in trail_events(self.server.data_dir)
                  if e.get("eventName") == "EnableKeyRotation" and e.get("requestParameters", {}).get("keyId") == k]
        self.assertTrue(any(e["requestParameters"].get("rotationPeriodInDays") == 180 for e in events), events)
        self.assertEqual(events[0]["resources"][0]["ARN"], arn(k))

    def test_on_demand(self):
        k = self.new_key()
        before = current_material(self.server, k)
        policy = self.kms.get_key_policy(KeyId=k, PolicyName="default")["Policy"]
        old = self.kms.encrypt(KeyId=k, Plaintext=b"before")["CiphertextBlob"]
        out = js_ok(self.server, "RotateKeyOnDemand", KeyId=k)
        self.assertEqual(out["KeyId"], arn(k))
        after = js_ok(self.server, "DescribeKey", KeyId=k)["KeyMetadata"]
        self.assertNotEqual(after["CurrentKeyMaterialId"], before)
        self.assertEqual((after["Arn"], after["KeyId"]), (arn(k), k))
        new = self.kms.encrypt(KeyId=k, Plaintext=b"after")["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=old)["Plaintext"], b"before")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=new)["Plaintext"], b"after")
        # New ciphertexts use the new material (a current SDK reads Decrypt's KeyMaterialId).
        d = js_ok(self.server, "Decrypt", CiphertextBlob=base64.b64encode(new).decode())
        self.assertEqual(base64.b64decode(d["Plaintext"]), b"after")
        self.assertEqual(d["KeyMaterialId"], after["CurrentKeyMaterialId"])
        d = js_ok(self.server, "Decrypt", CiphertextBlob=base64.b64encode(old).decode())
        self.assertEqual(d["KeyMaterialId"], before)
        rots = js_ok(self.server, "ListKeyRotations", KeyId=k)
        self.assertFalse(rots["Truncated"])
        self.assertEqual(len(rots["Rotations"]), 1)
        self.assertEqual(rots["Rotations"][0]["RotationType"], "ON_DEMAND")
        self.assertEqual(rots["Rotations"][0]["KeyId"], k)
        self.assertIn("RotationDate", rots["Rotations"][0])
        # Complete at once: no rotation in progress to show.
        self.assertNotIn("OnDemandRotationStartDate", js_ok(self.server, "GetKeyRotationStatus", KeyId=k))
        # The policy did not change.
        self.assertEqual(self.kms.get_key_policy(KeyId=k, PolicyName="default")["Policy"], policy)

    def test_on_demand_limit_and_paging(self):
        k = self.new_key()
        for _ in range(25):
            js_ok(self.server, "RotateKeyOnDemand", KeyId=k)
        self.assertEqual(
            js_call(self.server, "RotateKeyOnDemand", KeyId=k),
            ("LimitExceededException",
             "The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations "
             "can be performed for this key: %s" % arn(k)))
        page = js_ok(self.server, "ListKeyRotations", KeyId=k, Limit=10)
        self.assertTrue(page["Truncated"])
        seen = [r["RotationDate"] for r in page["Rotations"]]
        while page.get("NextMarker"):
            page = js_ok(self.server, "ListKeyRotations", KeyId=k, Limit=10, Marker=page["NextMarker"])
            seen += [r["RotationDate"] for r in page["Rotations"]]
        self.assertEqual(len(seen), 25)
        self.assertEqual(js_call(self.server, "ListKeyRotations", KeyId=k, Marker="bm90LWEtbWF0ZXJpYWw=")[0],
                         "InvalidMarkerException")

    def test_manual_rotation_by_alias(self):
        a = self.new_key()
        self.kms.create_alias(AliasName="alias/app-data", TargetKeyId=a)
        old = self.kms.encrypt(KeyId="alias/app-data", Plaintext=b"v1")
        self.assertEqual(old["KeyId"], arn(a))
        b = self.new_key()
        self.kms.update_alias(AliasName="alias/app-data", TargetKeyId=b)
        new = self.kms.encrypt(KeyId="alias/app-data", Plaintext=b"v2")
        self.assertEqual(new["KeyId"], arn(b))
        d = self.kms.decrypt(CiphertextBlob=old["CiphertextBlob"])
        self.assertEqual((d["Plaintext"], d["KeyId"]), (b"v1", arn(a)))
        d = self.kms.decrypt(CiphertextBlob=new["CiphertextBlob"])
        self.assertEqual((d["Plaintext"], d["KeyId"]), (b"v2", arn(b)))


class KmsRotationRestartTest(unittest.TestCase):
    """cofferd processes of their own: restarted, killed, or with a short rotation day."""

    def start(self, *extra, data_dir=None):
        s = Cofferd(data_dir=data_dir, extra_args=("--quota-crypto-rps", "0") + extra).start()
        self.addCleanup(s.cleanup if data_dir is None else s.stop)
        return s

    def test_rotation_survives_restart(self):
        s = self.start()
        kms = s.client()
        k = kms.create_key()["KeyMetadata"]["KeyId"]
        js_ok(s, "EnableKeyRotation", KeyId=k, RotationPeriodInDays=90)
        c0 = kms.encrypt(KeyId=k, Plaintext=b"zero")["CiphertextBlob"]
        js_ok(s, "RotateKeyOnDemand", KeyId=k)
        c1 = kms.encrypt(KeyId=k, Plaintext=b"one")["CiphertextBlob"]
        status = js_ok(s, "GetKeyRotationStatus", KeyId=k)
        rotations = js_ok(s, "ListKeyRotations", KeyId=k)
        current = current_material(s, k)
        self.assertEqual(s.stop(), 0)

        s.start()
        kms = s.client()
        self.assertEqual(kms.decrypt(CiphertextBlob=c0)["Plaintext"], b"zero")
        self.assertEqual(kms.decrypt(CiphertextBlob=c1)["Plaintext"], b"one")
        self.assertEqual(js_ok(s, "GetKeyRotationStatus", KeyId=k), status)
        self.assertEqual(js_ok(s, "ListKeyRotations", KeyId=k), rotations)
        self.assertEqual(current_material(s, k), current)

    def test_on_demand_conflicts_with_a_due_automatic_rotation(self):
        # A day of one second: the 90-day period ends in 90 s, inside AWS's fixed 20-minute window.
        s = self.start("--rotation-day-ms", "1000")
        kms = s.client()
        k = kms.create_key()["KeyMetadata"]["KeyId"]
        js_ok(s, "EnableKeyRotation", KeyId=k, RotationPeriodInDays=90)
        status, message = js_call(s, "RotateKeyOnDemand", KeyId=k)
        self.assertEqual(status, "ConflictException")
        self.assertIn(arn(k), message)
        self.assertEqual(js_ok(s, "ListKeyRotations", KeyId=k)["Rotations"], [])
        # With automatic rotation off nothing is due, and the on-demand rotation goes ahead.
        js_ok(s, "DisableKeyRotation", KeyId=k)
        js_ok(s, "RotateKeyOnDemand", KeyId=k)
        self.assertEqual(len(js_ok(s, "ListKeyRotations", KeyId=k)["Rotations"]), 1)

    def test_scheduled_rotation(self):
        # A day of 20 ms: the shortest period (90 days) is 1.8 s; the scheduler ticks every second.
        s = self.start("--rotation-day-ms", "20")
        kms = s.client()
        k = kms.create_key()["KeyMetadata"]["KeyId"]
        c0 = kms.encrypt(KeyId=k, Plaintext=b"early")["CiphertextBlob"]
        js_ok(s, "EnableKeyRotation", KeyId=k, RotationPeriodInDays=90)
        first = js_ok(s, "GetKeyRotationStatus", KeyId=k)["NextRotationDate"]
        deadline = time.time() + 20
        rots = []
        while time.time() < deadline and not rots:
            time.sleep(0.5)
            rots = js_ok(s, "ListKeyRotations", KeyId=k)["Rotations"]
        self.assertTrue(rots, "no scheduled rotation within 20 s:\n" + s.log()[-2000:])
        self.assertEqual(rots[0]["RotationType"], "AUTOMATIC")
        self.assertGreater(js_ok(s, "GetKeyRotationStatus", KeyId=k)["NextRotationDate"], first)
        self.assertEqual(kms.decrypt(CiphertextBlob=c0)["Plaintext"], b"early")
        c1 = kms.encrypt(KeyId=k, Plaintext=b"late")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=c1)["Plaintext"], b"late")
        # The service's own act is on record (CloudTrail: an AwsServiceEvent).
        events = [e for e in trail_events(s.data_dir) if e.get("eventName") == "RotateKey"]
        self.assertTrue(events)
        self.assertEqual(events[0]["eventType"], "AwsServiceEvent")
        self.assertEqual(events[0]["resources"][0]["ARN"], arn(k))
        # Disabled, it stops rotating.
        kms.disable_key(KeyId=k)
        n = len(js_ok(s, "ListKeyRotations", KeyId=k, Limit=1000)["Rotations"])
        time.sleep(3)
        self.assertEqual(len(js_ok(s, "ListKeyRotations", KeyId=k, Limit=1000)["Rotations"]), n)

    def test_kill_while_rotating(self):
        # A day of 1 ms: every key is due at every tick, so the kill lands among rotations.
        s = self.start("--rotation-day-ms", "1")
        data_dir = s.data_dir
        self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
        kms = s.client()
        keys, blobs = [], []
        for i in range(12):
            k = kms.create_key()["KeyMetadata"]["KeyId"]
            keys.append(k)
            blobs.append((k, kms.encrypt(KeyId=k, Plaintext=b"k%d" % i)["CiphertextBlob"], b"k%d" % i))
            kms.enable_key_rotation(KeyId=k)  # 365 "days": 365 ms
        # Ciphertexts written while keys rotate: every acknowledged one must decrypt later.
        end = time.time() + 3
        i = 0
        while time.time() < end:
            k = keys[i % len(keys)]
            pt = b"w%d" % i
            blobs.append((k, kms.encrypt(KeyId=k, Plaintext=pt)["CiphertextBlob"], pt))
            i += 1
        s.kill9()
        s.owns_dir = False

        s2 = self.start(data_dir=data_dir)  # a normal day: nothing rotates any more
        kms = s2.client()
        for k, blob, pt in blobs:
            self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], pt)
        for k in keys:
            rots = js_ok(s2, "ListKeyRotations", KeyId=k, Limit=1000, IncludeKeyMaterial="ALL_KEY_MATERIAL")
            ids = [r["KeyMaterialId"] for r in rots["Rotations"]]
            self.assertGreater(len(ids), 1, "key %s never rotated" % k)
            self.assertEqual(ids[-1], current_material(s2, k))
            # Each listed material was stored with it: the key encrypts and decrypts.
            ct = kms.encrypt(KeyId=k, Plaintext=b"after")["CiphertextBlob"]
            self.assertEqual(kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"after")
        self.assertEqual(s2.stop(), 0)


if __name__ == "__main__":
    unittest.main()
