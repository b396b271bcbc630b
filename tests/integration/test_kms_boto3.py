"""KMS symmetric core through boto3 against a live cofferd, including the error cases."""
import base64
import datetime
import os
import unittest

import botocore
from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase


class KmsBoto3Test(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()

    def error_code(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def new_key(self, **kw):
        return self.kms.create_key(**kw)["KeyMetadata"]

    def test_create_describe_metadata(self):
        md = self.new_key(Description="orders", Tags=[{"TagKey": "team", "TagValue": "pay"}])
        self.assertEqual(md["KeyState"], "Enabled")
        self.assertTrue(md["Enabled"])
        self.assertEqual(md["KeySpec"], "SYMMETRIC_DEFAULT")
        self.assertEqual(md["CustomerMasterKeySpec"], "SYMMETRIC_DEFAULT")
        self.assertEqual(md["KeyUsage"], "ENCRYPT_DECRYPT")
        self.assertEqual(md["EncryptionAlgorithms"], ["SYMMETRIC_DEFAULT"])
        self.assertEqual(md["Origin"], "AWS_KMS")
        self.assertEqual(md["KeyManager"], "CUSTOMER")
        self.assertEqual(md["AWSAccountId"], "000000000000")
        self.assertEqual(md["Arn"], "arn:aws:kms:%s:000000000000:key/%s" % (REGION, md["KeyId"]))
        self.assertIsInstance(md["CreationDate"], datetime.datetime)
        self.assertEqual(md["Description"], "orders")
        d = self.kms.describe_key(KeyId=md["Arn"])["KeyMetadata"]
        self.assertEqual(d["KeyId"], md["KeyId"])
        tags = self.kms.list_resource_tags(KeyId=md["KeyId"])["Tags"]
        self.assertEqual(tags, [{"TagKey": "team", "TagValue": "pay"}])

    def test_encrypt_decrypt_all_keyid_forms(self):
        md = self.new_key()
        self.kms.create_alias(AliasName="alias/forms-test", TargetKeyId=md["KeyId"])
        alias_arn = "arn:aws:kms:%s:000000000000:alias/forms-test" % REGION
        for key_id in (md["KeyId"], md["Arn"], "alias/forms-test", alias_arn):
            ct = self.kms.encrypt(KeyId=key_id, Plaintext=b"hello")
            self.assertEqual(ct["KeyId"], md["Arn"])
            self.assertEqual(ct["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
            pt = self.kms.decrypt(CiphertextBlob=ct["CiphertextBlob"])
            self.assertEqual(pt["Plaintext"], b"hello")
            self.assertEqual(pt["KeyId"], md["Arn"])

    def test_encryption_context(self):
        md = self.new_key()
        ctx = {"Department": "10", "purpose": "test \u00e9"}
        ct = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"x" * 4096, EncryptionContext=ctx)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"], b"x" * 4096)
        code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=ct, EncryptionContext={"Department": "11",
                                                                                       "purpose": "test \u00e9"})
        self.assertEqual(code, "InvalidCiphertextException")
        code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=ct)
        self.assertEqual(code, "InvalidCiphertextException")

    def test_plaintext_limit(self):
        md = self.new_key()
        code, msg = self.error_code(self.kms.encrypt, KeyId=md["KeyId"], Plaintext=b"a" * 4097)
        self.assertEqual(code, "ValidationException")
        self.assertIn("4096", msg)

    def test_tampered_ciphertext(self):
        md = self.new_key()
        ct = bytearray(self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"secret")["CiphertextBlob"])
        for i in (0, len(ct) // 2, len(ct) - 1):
            bad = bytearray(ct)
            bad[i] ^= 0x01
            code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=bytes(bad))
            self.assertEqual(code, "InvalidCiphertextException", "flip at %d" % i)
        code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=bytes(ct[:20]))
        self.assertEqual(code, "InvalidCiphertextException")
        code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=b"\x00" * 64)
        self.assertEqual(code, "InvalidCiphertextException")

    def test_unknown_key(self):
        code, msg = self.error_code(self.kms.encrypt, KeyId="11111111-2222-4333-8444-555555555555", Plaintext=b"x")
        self.assertEqual(code, "NotFoundException")
        code, _ = self.error_code(self.kms.describe_key, KeyId="alias/does-not-exist")
        self.assertEqual(code, "NotFoundException")
        code, _ = self.error_code(self.kms.describe_key, KeyId="not-a-key-id")
        self.assertEqual(code, "NotFoundException")

    def test_disable_enable_and_states(self):
        md = self.new_key()
        ct = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"p")["CiphertextBlob"]
        self.kms.disable_key(KeyId=md["KeyId"])
        self.assertEqual(self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"], "Disabled")
        code, msg = self.error_code(self.kms.encrypt, KeyId=md["KeyId"], Plaintext=b"p")
        self.assertEqual(code, "DisabledException")
        self.assertIn("is disabled", msg)
        code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=ct)
        self.assertEqual(code, "DisabledException")
        self.kms.enable_key(KeyId=md["KeyId"])
        self.assertEqual(self.kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"p")

    def test_schedule_and_cancel_deletion(self):
        md = self.new_key()
        r = self.kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
        self.assertEqual(r["KeyState"], "PendingDeletion")
        self.assertEqual(r["PendingWindowInDays"], 7)
        self.assertEqual(r["KeyId"], md["Arn"])
        d = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
        self.assertEqual(d["KeyState"], "PendingDeletion")
        self.assertIn("DeletionDate", d)
        code, _ = self.error_code(self.kms.encrypt, KeyId=md["KeyId"], Plaintext=b"p")
        self.assertEqual(code, "KMSInvalidStateException")
        code, _ = self.error_code(self.kms.schedule_key_deletion, KeyId=md["KeyId"], PendingWindowInDays=6)
        self.assertEqual(code, "ValidationException")
        self.kms.cancel_key_deletion(KeyId=md["KeyId"])
        self.assertEqual(self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"], "Disabled")
        code, _ = self.error_code(self.kms.cancel_key_deletion, KeyId=md["KeyId"])
        self.assertEqual(code, "KMSInvalidStateException")
        code, _ = self.error_code(self.kms.schedule_key_deletion, KeyId=md["KeyId"], PendingWindowInDays=31)
        self.assertEqual(code, "ValidationException")

    def test_generate_data_key(self):
        md = self.new_key()
        for spec, n in (("AES_256", 32), ("AES_128", 16)):
            r = self.kms.generate_data_key(KeyId=md["KeyId"], KeySpec=spec, EncryptionContext={"a": "b"})
            self.assertEqual(len(r["Plaintext"]), n)
            back = self.kms.decrypt(CiphertextBlob=r["CiphertextBlob"], EncryptionContext={"a": "b"})
            self.assertEqual(back["Plaintext"], r["Plaintext"])
        r = self.kms.generate_data_key(KeyId=md["KeyId"], NumberOfBytes=1024)
        self.assertEqual(len(r["Plaintext"]), 1024)
        r = self.kms.generate_data_key_without_plaintext(KeyId=md["KeyId"], KeySpec="AES_256")
        self.assertNotIn("Plaintext", r)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=r["CiphertextBlob"])["Plaintext"]), 32)
        code, _ = self.error_code(self.kms.generate_data_key, KeyId=md["KeyId"])
        self.assertEqual(code, "ValidationException")
        code, _ = self.error_code(self.kms.generate_data_key, KeyId=md["KeyId"], KeySpec="AES_256", NumberOfBytes=8)
        self.assertEqual(code, "ValidationException")
        code, _ = self.error_code(self.kms.generate_data_key, KeyId=md["KeyId"], NumberOfBytes=1025)
        self.assertEqual(code, "ValidationException")

    def test_generate_random(self):
        a = self.kms.generate_random(NumberOfBytes=32)["Plaintext"]
        b = self.kms.generate_random(NumberOfBytes=32)["Plaintext"]
        self.assertEqual(len(a), 32)
        self.assertNotEqual(a, b)
        # botocore refuses 0 itself; the server must refuse it too when a client does not.
        from botocore.config import Config
        raw = self.server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))
        for n in (0, 1025):
            code, msg = self.error_code(raw.generate_random, NumberOfBytes=n)
            self.assertEqual(code, "ValidationException")
            self.assertIn("numberOfBytes", msg)

    def test_reencrypt(self):
        k1, k2 = self.new_key(), self.new_key()
        ct = self.kms.encrypt(KeyId=k1["KeyId"], Plaintext=b"move me", EncryptionContext={"x": "1"})["CiphertextBlob"]
        r = self.kms.re_encrypt(CiphertextBlob=ct, SourceEncryptionContext={"x": "1"}, DestinationKeyId=k2["KeyId"],
                                DestinationEncryptionContext={"y": "2"})
        self.assertEqual(r["SourceKeyId"], k1["Arn"])
        self.assertEqual(r["KeyId"], k2["Arn"])
        out = self.kms.decrypt(CiphertextBlob=r["CiphertextBlob"], EncryptionContext={"y": "2"})
        self.assertEqual(out["Plaintext"], b"move me")
        self.assertEqual(out["KeyId"], k2["Arn"])
        code, _ = self.error_code(self.kms.decrypt, CiphertextBlob=ct, KeyId=k2["KeyId"], EncryptionContext={"x": "1"})
        self.assertEqual(code, "IncorrectKeyException")

    def test_aliases(self):
        k1, k2 = self.new_key(), self.new_key()
        self.kms.create_alias(AliasName="alias/app-a", TargetKeyId=k1["KeyId"])
        code, _ = self.error_code(self.kms.create_alias, AliasName="alias/app-a", TargetKeyId=k2["KeyId"])
        self.assertEqual(code, "AlreadyExistsException")
        code, _ = self.error_code(self.kms.create_alias, AliasName="app-b", TargetKeyId=k2["KeyId"])
        self.assertEqual(code, "ValidationException")
        code, _ = self.error_code(self.kms.create_alias, AliasName="alias/aws/reserved", TargetKeyId=k2["KeyId"])
        self.assertIn(code, ("NotAuthorizedException", "ValidationException", "AccessDeniedException",
                             "InvalidAliasNameException"))
        aliases = {a["AliasName"]: a for a in self.kms.list_aliases(KeyId=k1["KeyId"])["Aliases"]}
        self.assertEqual(aliases["alias/app-a"]["TargetKeyId"], k1["KeyId"])
        self.kms.update_alias(AliasName="alias/app-a", TargetKeyId=k2["KeyId"])
        self.assertEqual(self.kms.describe_key(KeyId="alias/app-a")["KeyMetadata"]["KeyId"], k2["KeyId"])
        # CreateAlias takes a key id or ARN, never an alias.
        code, _ = self.error_code(self.kms.create_alias, AliasName="alias/app-c", TargetKeyId="alias/app-a")
        self.assertIn(code, ("NotFoundException", "ValidationException"))
        self.kms.delete_alias(AliasName="alias/app-a")
        code, _ = self.error_code(self.kms.describe_key, KeyId="alias/app-a")
        self.assertEqual(code, "NotFoundException")

    def test_alias_refused_where_aws_refuses(self):
        md = self.new_key()
        self.kms.create_alias(AliasName="alias/no-alias-ops", TargetKeyId=md["KeyId"])
        code, _ = self.error_code(self.kms.disable_key, KeyId="alias/no-alias-ops")
        self.assertIn(code, ("NotFoundException", "ValidationException"))
        code, _ = self.error_code(self.kms.tag_resource, KeyId="alias/no-alias-ops",
                                  Tags=[{"TagKey": "a", "TagValue": "b"}])
        self.assertIn(code, ("NotFoundException", "ValidationException"))

    def test_list_keys_paging(self):
        ids = {self.new_key()["KeyId"] for _ in range(5)}
        seen, marker = set(), None
        while True:
            kw = {"Limit": 2}
            if marker:
                kw["Marker"] = marker
            r = self.kms.list_keys(**kw)
            self.assertLessEqual(len(r["Keys"]), 2)
            for k in r["Keys"]:
                self.assertEqual(k["KeyArn"], "arn:aws:kms:%s:000000000000:key/%s" % (REGION, k["KeyId"]))
                seen.add(k["KeyId"])
            if not r.get("Truncated"):
                break
            marker = r["NextMarker"]
        self.assertTrue(ids <= seen)
        code, _ = self.error_code(self.kms.list_keys, Marker="garbage-marker")
        self.assertEqual(code, "InvalidMarkerException")

    def test_tags_and_description(self):
        md = self.new_key()
        self.kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}])
        self.kms.tag_resource(KeyId=md["Arn"], Tags=[{"TagKey": "a", "TagValue": "3"}])
        tags = {t["TagKey"]: t["TagValue"] for t in self.kms.list_resource_tags(KeyId=md["KeyId"])["Tags"]}
        self.assertEqual(tags, {"a": "3", "b": "2"})
        self.kms.untag_resource(KeyId=md["KeyId"], TagKeys=["a"])
        tags = {t["TagKey"]: t["TagValue"] for t in self.kms.list_resource_tags(KeyId=md["KeyId"])["Tags"]}
        self.assertEqual(tags, {"b": "2"})
        code, _ = self.error_code(self.kms.tag_resource, KeyId=md["KeyId"], Tags=[{"TagKey": "aws:x", "TagValue": "1"}])
        self.assertEqual(code, "TagException")
        self.kms.update_key_description(KeyId=md["KeyId"], Description="new words")
        self.assertEqual(self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["Description"], "new words")

    def test_wrong_signature(self):
        akid, secret = self.server.credentials()
        bad = self.server.client(secret=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        code, _ = self.error_code(bad.list_keys)
        self.assertEqual(code, "InvalidSignatureException")
        unknown = self.server.client(akid="AKIAAAAAAAAAAAAAAAAA")
        code, _ = self.error_code(unknown.list_keys)
        self.assertEqual(code, "UnrecognizedClientException")

    def test_wrong_region_scope(self):
        other = self.server.client(region="eu-west-1")
        code, _ = self.error_code(other.list_keys)
        self.assertEqual(code, "InvalidSignatureException")


if __name__ == "__main__":
    unittest.main()
