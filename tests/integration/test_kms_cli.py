"""Every KMS operation of the symmetric core through the AWS CLI v2 (/usr/bin/aws)."""
import base64
import os
import tempfile
import unittest

from harness import REGION, ServerTestCase


class KmsCliTest(ServerTestCase):

    def ok(self, *args):
        rc, out, err = self.server.aws(*args)
        self.assertEqual(rc, 0, "aws %s: %s" % (" ".join(args), err))
        return out

    def fails(self, code, *args):
        rc, out, err = self.server.aws(*args)
        self.assertNotEqual(rc, 0)
        self.assertIn(code, err, err)
        return err

    def test_lifecycle_and_crypto(self):
        md = self.ok("kms", "create-key", "--description", "cli key", "--tags", "TagKey=env,TagValue=ci")["KeyMetadata"]
        key = md["KeyId"]
        self.assertEqual(md["KeyState"], "Enabled")
        self.assertEqual(self.ok("kms", "describe-key", "--key-id", key)["KeyMetadata"]["Description"], "cli key")
        keys = [k["KeyId"] for k in self.ok("kms", "list-keys")["Keys"]]
        self.assertIn(key, keys)
        self.ok("kms", "update-key-description", "--key-id", key, "--description", "renamed")
        self.assertEqual(self.ok("kms", "describe-key", "--key-id", key)["KeyMetadata"]["Description"], "renamed")

        with tempfile.TemporaryDirectory() as d:
            pt = os.path.join(d, "pt")
            with open(pt, "wb") as f:
                f.write(b"cli plaintext \x00\x01")
            enc = self.ok("kms", "encrypt", "--key-id", key, "--plaintext", "fileb://" + pt,
                          "--encryption-context", "app=cli")
            ct_path = os.path.join(d, "ct")
            with open(ct_path, "wb") as f:
                f.write(base64.b64decode(enc["CiphertextBlob"]))
            dec = self.ok("kms", "decrypt", "--ciphertext-blob", "fileb://" + ct_path, "--encryption-context", "app=cli")
            self.assertEqual(base64.b64decode(dec["Plaintext"]), b"cli plaintext \x00\x01")
            self.fails("InvalidCiphertextException", "kms", "decrypt", "--ciphertext-blob", "fileb://" + ct_path,
                       "--encryption-context", "app=other")

            key2 = self.ok("kms", "create-key")["KeyMetadata"]["KeyId"]
            re = self.ok("kms", "re-encrypt", "--ciphertext-blob", "fileb://" + ct_path, "--source-encryption-context",
                         "app=cli", "--destination-key-id", key2)
            self.assertTrue(re["KeyId"].endswith(key2))
            with open(ct_path, "wb") as f:
                f.write(base64.b64decode(re["CiphertextBlob"]))
            dec = self.ok("kms", "decrypt", "--ciphertext-blob", "fileb://" + ct_path)
            self.assertEqual(base64.b64decode(dec["Plaintext"]), b"cli plaintext \x00\x01")

            big = os.path.join(d, "big")
            with open(big, "wb") as f:
                f.write(b"z" * 4097)
            self.fails("ValidationException", "kms", "encrypt", "--key-id", key, "--plaintext", "fileb://" + big)

        gdk = self.ok("kms", "generate-data-key", "--key-id", key, "--key-spec", "AES_256")
        self.assertEqual(len(base64.b64decode(gdk["Plaintext"])), 32)
        gdk = self.ok("kms", "generate-data-key", "--key-id", key, "--number-of-bytes", "64")
        self.assertEqual(len(base64.b64decode(gdk["Plaintext"])), 64)
        wp = self.ok("kms", "generate-data-key-without-plaintext", "--key-id", key, "--key-spec", "AES_128")
        self.assertNotIn("Plaintext", wp)
        rnd = self.ok("kms", "generate-random", "--number-of-bytes", "16")
        self.assertEqual(len(base64.b64decode(rnd["Plaintext"])), 16)

        self.ok("kms", "disable-key", "--key-id", key)
        self.fails("DisabledException", "kms", "encrypt", "--key-id", key, "--plaintext", "aGk=")
        self.ok("kms", "enable-key", "--key-id", key)
        sched = self.ok("kms", "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "7")
        self.assertEqual(sched["KeyState"], "PendingDeletion")
        self.fails("KMSInvalidStateException", "kms", "encrypt", "--key-id", key, "--plaintext", "aGk=")
        self.ok("kms", "cancel-key-deletion", "--key-id", key)
        self.assertEqual(self.ok("kms", "describe-key", "--key-id", key)["KeyMetadata"]["KeyState"], "Disabled")

    def test_aliases_and_tags(self):
        key = self.ok("kms", "create-key")["KeyMetadata"]["KeyId"]
        key2 = self.ok("kms", "create-key")["KeyMetadata"]["KeyId"]
        self.ok("kms", "create-alias", "--alias-name", "alias/cli-app", "--target-key-id", key)
        self.fails("AlreadyExistsException", "kms", "create-alias", "--alias-name", "alias/cli-app",
                   "--target-key-id", key2)
        names = [a["AliasName"] for a in self.ok("kms", "list-aliases")["Aliases"]]
        self.assertIn("alias/cli-app", names)
        filtered = self.ok("kms", "list-aliases", "--key-id", key)["Aliases"]
        self.assertEqual([a["AliasName"] for a in filtered], ["alias/cli-app"])
        enc = self.ok("kms", "encrypt", "--key-id", "alias/cli-app", "--plaintext", "aGk=")
        self.assertTrue(enc["KeyId"].endswith(key))
        self.ok("kms", "update-alias", "--alias-name", "alias/cli-app", "--target-key-id", key2)
        enc = self.ok("kms", "encrypt", "--key-id",
                      "arn:aws:kms:%s:000000000000:alias/cli-app" % REGION, "--plaintext", "aGk=")
        self.assertTrue(enc["KeyId"].endswith(key2))
        self.ok("kms", "delete-alias", "--alias-name", "alias/cli-app")
        self.fails("NotFoundException", "kms", "describe-key", "--key-id", "alias/cli-app")

        self.ok("kms", "tag-resource", "--key-id", key, "--tags", "TagKey=a,TagValue=1", "TagKey=b,TagValue=2")
        tags = self.ok("kms", "list-resource-tags", "--key-id", key)["Tags"]
        self.assertEqual(sorted(t["TagKey"] for t in tags), ["a", "b"])
        self.ok("kms", "untag-resource", "--key-id", key, "--tag-keys", "a")
        tags = self.ok("kms", "list-resource-tags", "--key-id", key)["Tags"]
        self.assertEqual(tags, [{"TagKey": "b", "TagValue": "2"}])

    def test_errors(self):
        self.fails("NotFoundException", "kms", "describe-key", "--key-id", "00000000-0000-4000-8000-000000000000")
        self.fails("ValidationException", "kms", "generate-random", "--number-of-bytes", "1025")


if __name__ == "__main__":
    unittest.main()
