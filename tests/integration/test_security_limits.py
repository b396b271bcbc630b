"""Resource quotas and input limits: a tenant must not be able to exhaust the server. Each
quota is configured small here; every refusal is checked for the AWS error type and for
leaving no state behind."""
import json
import threading
import unittest

from botocore.config import Config
from botocore.exceptions import ClientError

from harness import Cofferd, ServerTestCase

MAX_KEYS = 3


def error_code(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("%s succeeded" % getattr(fn, "__name__", fn))


def key_ids(kms):
    ids, marker = [], None
    while True:
        page = kms.list_keys(**({"Marker": marker} if marker else {}))
        ids += [k["KeyId"] for k in page["Keys"]]
        if not page.get("Truncated"):
            return ids
        marker = page["NextMarker"]


class KeyCountQuotaTest(unittest.TestCase):
    """KMS keys per account and Region: counted in the store, so it holds across restarts,
    under concurrent creates, and frees up when a key is deleted."""

    def setUp(self):
        self.server = Cofferd(extra_args=("--quota-crypto-rps", "0", "--max-keys", str(MAX_KEYS))).start()

    def tearDown(self):
        self.server.cleanup()

    def test_create_key_over_quota(self):
        kms = self.server.client()
        for _ in range(MAX_KEYS):
            kms.create_key()
        before = key_ids(kms)
        self.assertEqual(error_code(kms.create_key, Description="one too many"), "LimitExceededException")
        self.assertEqual(key_ids(kms), before)
        # The CLI sees the same error.
        rc, _, err = self.server.aws("kms", "create-key")
        self.assertNotEqual(rc, 0)
        self.assertIn("LimitExceededException", err)
        # The count survives a restart.
        self.server.stop()
        self.server.start()
        kms = self.server.client()
        self.assertEqual(error_code(kms.create_key), "LimitExceededException")
        self.assertEqual(sorted(key_ids(kms)), sorted(before))

    def test_concurrent_creates_stop_at_quota(self):
        results = []
        lock = threading.Lock()

        clients = [self.server.client() for _ in range(4)]

        def worker(kms):
            for _ in range(3):
                try:
                    kms.create_key()
                    r = "ok"
                except ClientError as e:
                    r = e.response["Error"]["Code"]
                with lock:
                    results.append(r)

        ts = [threading.Thread(target=worker, args=(c,)) for c in clients]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(results.count("ok"), MAX_KEYS)
        self.assertEqual(set(results) - {"ok"}, {"LimitExceededException"})
        self.assertEqual(len(key_ids(self.server.client())), MAX_KEYS)

    def test_deleted_key_frees_its_place(self):
        kms = self.server.client()
        ids = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(MAX_KEYS)]
        self.assertEqual(error_code(kms.create_key), "LimitExceededException")
        # A key pending deletion still counts, as in AWS.
        kms.schedule_key_deletion(KeyId=ids[0], PendingWindowInDays=7)
        self.assertEqual(error_code(kms.create_key), "LimitExceededException")


class KmsLimitsTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--max-aliases-per-key", "2", "--max-tags-per-key", "3",
                  "--max-key-policy-bytes", "4096")

    def setUp(self):
        self.kms = self.server.client()
        # No client-side checks: the server must refuse what the model forbids on its own.
        self.raw = self.server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))

    def aliases_of(self, key_id):
        return sorted(a["AliasName"] for a in self.kms.list_aliases(KeyId=key_id)["Aliases"])

    def test_aliases_per_key(self):
        k1 = self.kms.create_key()["KeyMetadata"]["KeyId"]
        k2 = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.kms.create_alias(AliasName="alias/lim-a1", TargetKeyId=k1)
        self.kms.create_alias(AliasName="alias/lim-a2", TargetKeyId=k1)
        self.assertEqual(error_code(self.kms.create_alias, AliasName="alias/lim-a3", TargetKeyId=k1),
                         "LimitExceededException")
        self.assertEqual(self.aliases_of(k1), ["alias/lim-a1", "alias/lim-a2"])
        self.assertEqual(error_code(self.kms.describe_key, KeyId="alias/lim-a3"), "NotFoundException")
        # UpdateAlias onto a full key is refused too, and leaves the alias where it was.
        self.kms.create_alias(AliasName="alias/lim-b1", TargetKeyId=k2)
        self.assertEqual(error_code(self.kms.update_alias, AliasName="alias/lim-b1", TargetKeyId=k1),
                         "LimitExceededException")
        self.assertEqual(self.aliases_of(k2), ["alias/lim-b1"])
        # Moving or deleting an alias frees its place.
        self.kms.update_alias(AliasName="alias/lim-a2", TargetKeyId=k2)
        self.kms.create_alias(AliasName="alias/lim-a3", TargetKeyId=k1)
        self.kms.delete_alias(AliasName="alias/lim-a1")
        self.kms.create_alias(AliasName="alias/lim-a4", TargetKeyId=k1)
        self.assertEqual(self.aliases_of(k1), ["alias/lim-a3", "alias/lim-a4"])

    def test_tags_per_key(self):
        tags = [{"TagKey": "k%d" % i, "TagValue": "v"} for i in range(4)]
        before = key_ids(self.kms)
        self.assertEqual(error_code(self.kms.create_key, Tags=tags), "TagException")
        self.assertEqual(key_ids(self.kms), before)
        k = self.kms.create_key(Tags=tags[:2])["KeyMetadata"]["KeyId"]
        self.assertEqual(error_code(self.kms.tag_resource, KeyId=k, Tags=tags[2:]), "TagException")
        self.kms.tag_resource(KeyId=k, Tags=tags[2:3])
        self.assertEqual(len(self.kms.list_resource_tags(KeyId=k)["Tags"]), 3)
        # Replacing a value does not add a tag.
        self.kms.tag_resource(KeyId=k, Tags=[{"TagKey": "k0", "TagValue": "new"}])
        # Duplicate keys in one request, and over-long keys and values.
        self.assertEqual(error_code(self.kms.tag_resource, KeyId=k,
                                    Tags=[{"TagKey": "d", "TagValue": "1"}, {"TagKey": "d", "TagValue": "2"}]),
                         "TagException")
        self.assertEqual(error_code(self.raw.tag_resource, KeyId=k, Tags=[{"TagKey": "x" * 129, "TagValue": ""}]),
                         "ValidationException")
        self.assertEqual(error_code(self.raw.tag_resource, KeyId=k, Tags=[{"TagKey": "k0", "TagValue": "x" * 257}]),
                         "ValidationException")
        got = {t["TagKey"]: t["TagValue"] for t in self.kms.list_resource_tags(KeyId=k)["Tags"]}
        self.assertEqual(got, {"k0": "new", "k1": "v", "k2": "v"})

    def policy_of_size(self, n):
        acct = self.kms.create_key()["KeyMetadata"]["AWSAccountId"]
        doc = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % acct},
            "Action": "kms:*", "Resource": "*"}]}
        text = json.dumps(doc)
        text += " " * (n - len(text))
        self.assertEqual(len(text), n)
        return text

    def test_key_policy_size(self):
        k = self.kms.create_key()["KeyMetadata"]["KeyId"]
        old = self.kms.get_key_policy(KeyId=k, PolicyName="default")["Policy"]
        big = self.policy_of_size(4097)
        self.assertEqual(error_code(self.kms.put_key_policy, KeyId=k, PolicyName="default", Policy=big),
                         "LimitExceededException")
        self.assertEqual(self.kms.get_key_policy(KeyId=k, PolicyName="default")["Policy"], old)
        before = key_ids(self.kms)
        self.assertEqual(error_code(self.kms.create_key, Policy=big), "LimitExceededException")
        self.assertEqual(key_ids(self.kms), before)
        self.kms.put_key_policy(KeyId=k, PolicyName="default", Policy=self.policy_of_size(4096))
        # Empty and non-JSON documents.
        self.assertEqual(error_code(self.raw.put_key_policy, KeyId=k, PolicyName="default", Policy=""),
                         "ValidationException")
        self.assertEqual(error_code(self.kms.put_key_policy, KeyId=k, PolicyName="default", Policy="not json"),
                         "MalformedPolicyDocumentException")

    def test_description_and_random(self):
        before = key_ids(self.kms)
        self.assertEqual(error_code(self.raw.create_key, Description="d" * 8193), "ValidationException")
        self.assertEqual(key_ids(self.kms), before)
        k = self.kms.create_key(Description="d" * 8192)["KeyMetadata"]["KeyId"]
        self.assertEqual(error_code(self.raw.update_key_description, KeyId=k, Description="d" * 8193),
                         "ValidationException")
        self.assertEqual(self.kms.describe_key(KeyId=k)["KeyMetadata"]["Description"], "d" * 8192)
        for n in (0, 1025):
            self.assertEqual(error_code(self.raw.generate_random, NumberOfBytes=n), "ValidationException")
        self.assertEqual(len(self.kms.generate_random(NumberOfBytes=1024)["Plaintext"]), 1024)
        self.assertEqual(error_code(self.raw.describe_key, KeyId="k" * 2049), "ValidationException")
        self.assertEqual(error_code(self.raw.create_alias, AliasName="alias/" + "a" * 251, TargetKeyId=k),
                         "ValidationException")

    def test_encryption_context_size(self):
        k = self.kms.create_key()["KeyMetadata"]["KeyId"]
        ok = {"a": "x" * 8191}
        ct = self.kms.encrypt(KeyId=k, Plaintext=b"p", EncryptionContext=ok)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=ct, EncryptionContext=ok)["Plaintext"], b"p")
        big = {"a": "x" * 8192}
        self.assertEqual(error_code(self.kms.encrypt, KeyId=k, Plaintext=b"p", EncryptionContext=big),
                         "ValidationException")
        self.assertEqual(error_code(self.kms.generate_data_key, KeyId=k, KeySpec="AES_256", EncryptionContext=big),
                         "ValidationException")
        self.assertEqual(error_code(self.kms.decrypt, CiphertextBlob=ct, EncryptionContext=big),
                         "ValidationException")
        self.assertEqual(error_code(self.kms.re_encrypt, CiphertextBlob=ct, SourceEncryptionContext=ok,
                                    DestinationKeyId=k, DestinationEncryptionContext=big), "ValidationException")
        many = {"k%05d" % i: "" for i in range(1400)}  # 8400 bytes of keys
        self.assertEqual(error_code(self.kms.encrypt, KeyId=k, Plaintext=b"p", EncryptionContext=many),
                         "ValidationException")


if __name__ == "__main__":
    unittest.main()
