"""GetKeyLastUsage against a live cofferd, through the AWS SDK for JavaScript v3 (boto3 1.26 and
the CLI 2.9 predate the operation): a new key reports an empty KeyLastUsage; each successful
cryptographic operation becomes the last use, with its request id and the eventID of its audit
event; a failed one does not; the record survives a clean restart and, once flushed, a kill -9;
alias names are refused as AWS does; a deleted key's record goes with it."""
import time
import unittest

from botocore.exceptions import ClientError

from harness import REGION, Cofferd, js_call, js_ok, trail_events

ACCOUNT = "000000000000"


def arn(key_id):
    return "arn:aws:kms:%s:%s:key/%s" % (REGION, ACCOUNT, key_id)


class KmsLastUsageTest(unittest.TestCase):

    def start(self, data_dir=None):
        s = Cofferd(data_dir=data_dir, extra_args=("--quota-crypto-rps", "0")).start()
        self.addCleanup(s.cleanup if data_dir is None else s.stop)
        return s

    def event_of(self, server, request_id):
        events = [e for e in trail_events(server.data_dir) if e.get("requestID") == request_id]
        self.assertEqual(len(events), 1, events)
        return events[0]

    def test_last_usage_follows_successful_operations(self):
        s = self.start()
        kms = s.client()
        meta = kms.create_key()["KeyMetadata"]
        k = meta["KeyId"]

        fresh = js_ok(s, "GetKeyLastUsage", KeyId=k)
        self.assertEqual(fresh["KeyId"], k)
        self.assertEqual(fresh["KeyLastUsage"], {})
        self.assertIn("KeyCreationDate", fresh)
        # Tracking began before the key existed: it starts with the key.
        self.assertEqual(fresh["TrackingStartDate"], fresh["KeyCreationDate"])

        enc = kms.encrypt(KeyId=k, Plaintext=b"used once")
        used = js_ok(s, "GetKeyLastUsage", KeyId=arn(k))["KeyLastUsage"]
        self.assertEqual(used["Operation"], "Encrypt")
        self.assertEqual(used["KmsRequestId"], enc["ResponseMetadata"]["RequestId"])
        self.assertEqual(used["CloudTrailEventId"],
                         self.event_of(s, enc["ResponseMetadata"]["RequestId"])["eventID"])

        time.sleep(0.01)
        dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"])
        used = js_ok(s, "GetKeyLastUsage", KeyId=k)["KeyLastUsage"]
        self.assertEqual(used["Operation"], "Decrypt")
        self.assertEqual(used["KmsRequestId"], dec["ResponseMetadata"]["RequestId"])

        # A failed Decrypt (wrong encryption context) is no use of the key.
        with self.assertRaises(ClientError):
            kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext={"a": "b"})
        self.assertEqual(js_ok(s, "GetKeyLastUsage", KeyId=k)["KeyLastUsage"]["Operation"], "Decrypt")

        time.sleep(0.01)
        gdk = kms.generate_data_key(KeyId=k, KeySpec="AES_256")
        self.assertEqual(js_ok(s, "GetKeyLastUsage", KeyId=k)["KeyLastUsage"]["Operation"], "GenerateDataKey")

        # Alias names are not accepted here (the key id or key ARN only).
        kms.create_alias(AliasName="alias/last-usage", TargetKeyId=k)
        status, _ = js_call(s, "GetKeyLastUsage", KeyId="alias/last-usage")
        self.assertEqual(status, "NotFoundException")

        # A clean stop writes what is pending; the restart reads it back.
        s.stop()
        s.start()
        after = js_ok(s, "GetKeyLastUsage", KeyId=k)
        self.assertEqual(after["KeyLastUsage"]["Operation"], "GenerateDataKey")
        self.assertEqual(after["KeyLastUsage"]["KmsRequestId"], gdk["ResponseMetadata"]["RequestId"])
        self.assertEqual(after["TrackingStartDate"], fresh["TrackingStartDate"])

    def test_flushed_usage_survives_kill(self):
        s = self.start()
        kms = s.client()
        k = kms.create_key()["KeyMetadata"]["KeyId"]
        other = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=k, Plaintext=b"x")["CiphertextBlob"]
        rq = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other)["ResponseMetadata"]["RequestId"]
        time.sleep(2.5)  # the flush runs every second
        s.kill9()
        s.start()
        for key in (k, other):
            used = js_ok(s, "GetKeyLastUsage", KeyId=key)["KeyLastUsage"]
            self.assertEqual(used["Operation"], "ReEncrypt")
            self.assertEqual(used["KmsRequestId"], rq)

    def test_other_account_and_unknown_keys(self):
        s = self.start()
        status, _ = js_call(s, "GetKeyLastUsage", KeyId="11111111-2222-3333-4444-555555555555")
        self.assertEqual(status, "NotFoundException")
        status, _ = js_call(s, "GetKeyLastUsage",
                            KeyId="arn:aws:kms:%s:111122223333:key/11111111-2222-3333-4444-555555555555" % REGION)
        self.assertNotEqual(status, "ok")


if __name__ == "__main__":
    unittest.main()
