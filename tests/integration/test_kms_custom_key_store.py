"""KMS custom key stores of type AWS_CLOUDHSM end to end, on SoftHSM2 tokens made by the test in a
temporary directory: cofferd maps CloudHSM cluster ids to the tokens (--hsm-cluster), and
/usr/bin/aws creates, connects and describes a store, creates a key in it (generated in the
token as a sensitive, non-extractable AES key, which pkcs11-tool shows), encrypts and decrypts
with it; a disconnected store makes its keys unusable (KMSInvalidStateException) until it is
connected again, also across a restart; GenerateRandom takes its bytes from a connected store's
token; a wrong password or a missing token leaves the store
FAILED with AWS's ConnectionErrorCode; and the rules of AWS's update and delete hold.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from botocore.config import Config
from botocore.exceptions import ClientError

from harness import Cofferd, trail_events

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = "/usr/bin/softhsm2-util"
PKCS11_TOOL = "/usr/bin/pkcs11-tool"
HAVE_SOFTHSM = all(os.path.exists(p) for p in (SOFTHSM_MODULE, SOFTHSM_UTIL, PKCS11_TOOL))
NO_SOFTHSM = "SoftHSM2 or pkcs11-tool is not installed (apt-get install softhsm2 opensc): skipped"

PIN = "kmsuser-pin-1"  # the kmsuser's password is the token's user PIN (7 to 32 characters)
TOKENS = ("coffer-ks", "coffer-ks2")
CLUSTER = "cluster-1234567890a"  # token coffer-ks
RELATED = "cluster-1234567890b"  # token coffer-ks too: a cluster related to CLUSTER
OTHER = "cluster-abcdefghijk"  # token coffer-ks2
ABSENT = "cluster-nohsmhere12"  # a token that is not there
UNMAPPED = "cluster-unmapped123"
ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUTrustAnchor\n-----END CERTIFICATE-----\n"

WORK = None


def setUpModule():
    global WORK
    if not HAVE_SOFTHSM:
        return
    WORK = tempfile.mkdtemp(prefix="coffer-cks-it-")
    os.mkdir(os.path.join(WORK, "tokens"))
    conf = os.path.join(WORK, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % WORK)
    # cofferd and pkcs11-tool inherit it: the tokens live only in WORK.
    os.environ["SOFTHSM2_CONF"] = conf
    for label in TOKENS:
        subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", label, "--pin", PIN,
                        "--so-pin", "5678"], check=True, capture_output=True)
    with open(os.path.join(WORK, "pin"), "w") as f:
        f.write(PIN + "\n")


def tearDownModule():
    os.environ.pop("SOFTHSM2_CONF", None)
    if WORK:
        shutil.rmtree(WORK, ignore_errors=True)


def mapping(cluster, token):
    return "%s=module=%s,token=%s,pin-file=%s" % (cluster, SOFTHSM_MODULE, token, os.path.join(WORK, "pin"))


def token_slot(token):
    """The slot id of the token labelled `token` (pkcs11-tool's --token-label does not pick the
    right slot for --list-objects when it is not the first one)."""
    r = subprocess.run([PKCS11_TOOL, "--module", SOFTHSM_MODULE, "--list-token-slots"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    slot = None
    for line in r.stdout.splitlines():
        m = re.match(r"^Slot \d+ \((0x[0-9a-f]+)\)", line)
        if m:
            slot = m.group(1)
        elif re.match(r"^\s*token label\s*:\s*%s\s*$" % re.escape(token), line):
            return str(int(slot, 16))
    raise AssertionError("no slot holds token %s: %s" % (token, r.stdout))


def token_objects(token):
    """pkcs11-tool's listing of the secret keys in `token` (logged in as the user)."""
    r = subprocess.run([PKCS11_TOOL, "--module", SOFTHSM_MODULE, "--slot", token_slot(token), "--login",
                        "--pin", PIN, "--list-objects", "--type", "secrkey"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def object_block(listing, label):
    """The lines pkcs11-tool prints for the object labelled `label`, or None."""
    for block in listing.split("Secret Key Object")[1:]:
        if re.search(r"^\s*label:\s+%s\s*$" % re.escape(label), block, re.M):
            return block
    return None


@unittest.skipUnless(HAVE_SOFTHSM, NO_SOFTHSM)
class CustomKeyStoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        args = ["--quota-crypto-rps", "0", "--deletion-day-ms", "200"]
        for cluster, token in ((CLUSTER, TOKENS[0]), (RELATED, TOKENS[0]), (OTHER, TOKENS[1]),
                               (ABSENT, "no-such-token")):
            args += ["--hsm-cluster", mapping(cluster, token)]
        cls.server = Cofferd(extra_args=args).start()
        cls.kms = cls.server.client("kms")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.cleanup()

    # ---- helpers ----

    def aws(self, *args):
        rc, out, err = self.server.aws("kms", *args)
        self.assertEqual(rc, 0, err)
        return out

    def aws_error(self, *args):
        rc, out, err = self.server.aws("kms", *args)
        self.assertNotEqual(rc, 0, out)
        return err

    def code(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"]

    def describe(self, store_id):
        out = self.aws("describe-custom-key-stores", "--custom-key-store-id", store_id)
        self.assertEqual(len(out["CustomKeyStores"]), 1)
        return out["CustomKeyStores"][0]

    def create_store(self, name, cluster, password=PIN):
        return self.kms.create_custom_key_store(CustomKeyStoreName=name, CloudHsmClusterId=cluster,
                                                TrustAnchorCertificate=ANCHOR,
                                                KeyStorePassword=password)["CustomKeyStoreId"]

    def encrypt_cli(self, key, text):
        path = os.path.join(self.server.data_dir, "pt.bin")
        with open(path, "wb") as f:
            f.write(text)
        out = self.aws("encrypt", "--key-id", key, "--plaintext", "fileb://" + path)
        return base64.b64decode(out["CiphertextBlob"])

    def decrypt_cli(self, blob):
        path = os.path.join(self.server.data_dir, "ct.bin")
        with open(path, "wb") as f:
            f.write(blob)
        return self.server.aws("kms", "decrypt", "--ciphertext-blob", "fileb://" + path)

    def wait_gone(self, key, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.kms.describe_key(KeyId=key)
            except ClientError as e:
                if e.response["Error"]["Code"] == "NotFoundException":
                    return
                raise
            time.sleep(0.3)
        self.fail("key %s was not deleted" % key)

    # ---- the life of a store and of a key in it ----

    def test_store_and_key_lifecycle(self):
        out = self.aws("create-custom-key-store", "--custom-key-store-name", "hsm-main",
                       "--cloud-hsm-cluster-id", CLUSTER, "--trust-anchor-certificate", ANCHOR,
                       "--key-store-password", PIN)
        store = out["CustomKeyStoreId"]
        self.assertRegex(store, r"^cks-[0-9a-f]{17}$")
        d = self.describe(store)
        self.assertEqual(d["ConnectionState"], "DISCONNECTED")
        self.assertEqual((d["CustomKeyStoreName"], d["CloudHsmClusterId"], d["CustomKeyStoreType"]),
                         ("hsm-main", CLUSTER, "AWS_CLOUDHSM"))
        self.assertEqual(d["TrustAnchorCertificate"], ANCHOR)
        self.assertIn("CreationDate", d)
        self.assertNotIn("ConnectionErrorCode", d)

        # Keys are created only in a connected store.
        err = self.aws_error("create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store)
        self.assertIn("CustomKeyStoreInvalidStateException", err)
        self.aws("connect-custom-key-store", "--custom-key-store-id", store)
        self.assertEqual(self.describe(store)["ConnectionState"], "CONNECTED")
        # Connecting a connected store is fine; updating or deleting it is not.
        self.aws("connect-custom-key-store", "--custom-key-store-id", store)
        self.assertIn("CustomKeyStoreInvalidStateException",
                      self.aws_error("delete-custom-key-store", "--custom-key-store-id", store))
        self.assertIn("CustomKeyStoreInvalidStateException",
                      self.aws_error("update-custom-key-store", "--custom-key-store-id", store,
                                     "--new-custom-key-store-name", "renamed"))

        meta = self.aws("create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store,
                        "--description", "in the HSM")["KeyMetadata"]
        key = meta["KeyId"]
        self.assertEqual((meta["Origin"], meta["CustomKeyStoreId"], meta["CloudHsmClusterId"]),
                         ("AWS_CLOUDHSM", store, CLUSTER))
        self.assertEqual(meta["KeyState"], "Enabled")
        meta = self.aws("describe-key", "--key-id", key)["KeyMetadata"]
        self.assertEqual((meta["Origin"], meta["CustomKeyStoreId"], meta["CloudHsmClusterId"]),
                         ("AWS_CLOUDHSM", store, CLUSTER))

        # The key material is an AES key object of the token, labelled with the key id, that
        # cannot leave it.
        listing = token_objects(TOKENS[0])
        block = object_block(listing, key)
        self.assertIsNotNone(block, listing)
        self.assertIn("AES", block)
        self.assertIn("never extractable", block)
        self.assertIn("sensitive", block)
        self.assertNotIn("extractable,", block.replace("never extractable", ""))

        # Encrypt and decrypt through the CLI; the blob names the key as any other.
        blob = self.encrypt_cli(key, b"held in the HSM")
        out = self.decrypt_cli(blob)
        self.assertEqual(out[0], 0, out[2])
        self.assertEqual(base64.b64decode(out[1]["Plaintext"]), b"held in the HSM")
        self.assertTrue(out[1]["KeyId"].endswith(key))
        # Data keys, contexts and ReEncrypt between a token key and a normal key.
        dk = self.kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"app": "x"})
        self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                                          EncryptionContext={"app": "x"})["Plaintext"], dk["Plaintext"])
        self.assertEqual(self.code(self.kms.decrypt, CiphertextBlob=dk["CiphertextBlob"]),
                         "InvalidCiphertextException")
        wo = self.kms.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=16)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=wo["CiphertextBlob"])["Plaintext"]), 16)
        plain = self.kms.create_key()["KeyMetadata"]["KeyId"]
        moved = self.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=plain)["CiphertextBlob"]
        back = self.kms.re_encrypt(CiphertextBlob=moved, DestinationKeyId=key)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=back)["Plaintext"], b"held in the HSM")
        # A flipped bit is any bad blob.
        bad = bytearray(blob)
        bad[-1] ^= 1
        self.assertEqual(self.code(self.kms.decrypt, CiphertextBlob=bytes(bad)), "InvalidCiphertextException")
        # Rotation is not for keys in a custom key store (as AWS).
        self.assertEqual(self.code(self.kms.enable_key_rotation, KeyId=key), "UnsupportedOperationException")

        # Disconnected: the keys are unavailable, as AWS answers.
        self.aws("disconnect-custom-key-store", "--custom-key-store-id", store)
        self.assertEqual(self.describe(store)["ConnectionState"], "DISCONNECTED")
        err = self.aws_error("encrypt", "--key-id", key, "--plaintext", "aGVsbG8=")
        self.assertIn("KMSInvalidStateException", err)
        rc, _, err = self.decrypt_cli(blob)
        self.assertNotEqual(rc, 0)
        self.assertIn("KMSInvalidStateException", err)
        self.assertEqual(self.code(self.kms.generate_data_key, KeyId=key, KeySpec="AES_256"),
                         "KMSInvalidStateException")
        self.assertEqual(self.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Unavailable")
        self.assertIn("CustomKeyStoreInvalidStateException",
                      self.aws_error("disconnect-custom-key-store", "--custom-key-store-id", store))
        # A store that holds keys cannot be deleted.
        self.assertIn("CustomKeyStoreHasCMKsException",
                      self.aws_error("delete-custom-key-store", "--custom-key-store-id", store))

        # Connected again: the old ciphertext decrypts.
        self.aws("connect-custom-key-store", "--custom-key-store-id", store)
        rc, out, err = self.decrypt_cli(blob)
        self.assertEqual(rc, 0, err)
        self.assertEqual(base64.b64decode(out["Plaintext"]), b"held in the HSM")
        self.assertEqual(self.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Enabled")

        # A restart reconnects the store it stopped with connected.
        self.server.stop()
        self.server.start()
        type(self).kms = self.kms = self.server.client("kms")
        self.assertEqual(self.describe(store)["ConnectionState"], "CONNECTED")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"held in the HSM")

        # Deleting the key (after its waiting period) destroys its token object.
        self.kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        self.wait_gone(key)
        self.assertIsNone(object_block(token_objects(TOKENS[0]), key))
        self.aws("disconnect-custom-key-store", "--custom-key-store-id", store)
        self.aws("delete-custom-key-store", "--custom-key-store-id", store)
        self.assertIn("CustomKeyStoreNotFoundException",
                      self.aws_error("describe-custom-key-stores", "--custom-key-store-id", store))

        # The password reaches neither the trail nor the log.
        self.assertNotIn(PIN, json.dumps(trail_events(self.server.data_dir)))
        self.assertNotIn(PIN, self.server.log())

    # ---- GenerateRandom from a store's token ----

    def test_generate_random_in_store(self):
        # An unknown store, or another account's store id shape, is not found.
        for bad in ("cks-0000000000000000a", "cks-nope"):
            self.assertEqual(self.code(self.kms.generate_random, NumberOfBytes=16, CustomKeyStoreId=bad),
                             "CustomKeyStoreNotFoundException")
        store = self.create_store("hsm-random", OTHER)
        try:
            # Not connected: the store's state is the answer.
            with self.assertRaises(ClientError) as cm:
                self.kms.generate_random(NumberOfBytes=16, CustomKeyStoreId=store)
            err = cm.exception.response["Error"]
            self.assertEqual(err["Code"], "CustomKeyStoreInvalidStateException")
            self.assertIn(store, err["Message"])
            self.assertIn("CustomKeyStoreInvalidStateException",
                          self.aws_error("generate-random", "--number-of-bytes", "8",
                                         "--custom-key-store-id", store))

            self.kms.connect_custom_key_store(CustomKeyStoreId=store)
            self.assertEqual(self.describe(store)["ConnectionState"], "CONNECTED")
            seen = set()
            for n in (1, 32, 1024):
                out = self.kms.generate_random(NumberOfBytes=n, CustomKeyStoreId=store)
                self.assertEqual(len(out["Plaintext"]), n)
                seen.add(out["Plaintext"])
            self.assertEqual(len(seen), 3)
            secret = out["Plaintext"]
            out = self.aws("generate-random", "--number-of-bytes", "64", "--custom-key-store-id", store)
            self.assertEqual(len(base64.b64decode(out["Plaintext"])), 64)
            # NumberOfBytes as for GenerateRandom without a store: 1 to 1024, and required (botocore
            # checks the minimum itself: a client that does not shows the server's answer).
            raw = self.server.client("kms", config=Config(parameter_validation=False,
                                                          retries={"max_attempts": 1}))
            for n, why in ((0, "Member must have value greater than or equal to 1"),
                           (1025, "Member must have value less than or equal to 1024")):
                with self.assertRaises(ClientError) as cm:
                    raw.generate_random(NumberOfBytes=n, CustomKeyStoreId=store)
                err = cm.exception.response["Error"]
                self.assertEqual(err["Code"], "ValidationException")
                self.assertIn("at 'numberOfBytes' failed to satisfy constraint: " + why, err["Message"])
            with self.assertRaises(ClientError) as cm:
                raw.generate_random(CustomKeyStoreId=store)
            err = cm.exception.response["Error"]
            self.assertEqual((err["Code"], err["Message"]), ("ValidationException", "NumberOfBytes is required."))

            # Disconnected again: refused again.
            self.kms.disconnect_custom_key_store(CustomKeyStoreId=store)
            self.assertEqual(self.code(self.kms.generate_random, NumberOfBytes=16, CustomKeyStoreId=store),
                             "CustomKeyStoreInvalidStateException")
        finally:
            self.kms.delete_custom_key_store(CustomKeyStoreId=store)
        # The trail names the store of each call, never the bytes; nor does the log.
        trail = json.dumps([e for e in trail_events(self.server.data_dir) if "GenerateRandom" in json.dumps(e)])
        self.assertIn(store, trail)
        self.assertNotIn(base64.b64encode(secret).decode(), trail)
        self.assertNotIn(base64.b64encode(secret).decode(), self.server.log())

    # ---- failures to connect ----

    def test_wrong_password_fails_and_recovers(self):
        store = self.create_store("hsm-wrong-password", OTHER, password="not-the-pin")
        self.kms.connect_custom_key_store(CustomKeyStoreId=store)
        d = self.describe(store)
        self.assertEqual((d["ConnectionState"], d["ConnectionErrorCode"]), ("FAILED", "INVALID_CREDENTIALS"))
        # FAILED: disconnect first, as AWS; a store not disconnected takes no update.
        self.assertEqual(self.code(self.kms.connect_custom_key_store, CustomKeyStoreId=store),
                         "CustomKeyStoreInvalidStateException")
        self.assertEqual(self.code(self.kms.update_custom_key_store, CustomKeyStoreId=store,
                                   KeyStorePassword=PIN), "CustomKeyStoreInvalidStateException")
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=store)
        d = self.describe(store)
        self.assertEqual(d["ConnectionState"], "DISCONNECTED")
        self.assertNotIn("ConnectionErrorCode", d)
        # Told the right password, it connects.
        self.kms.update_custom_key_store(CustomKeyStoreId=store, KeyStorePassword=PIN)
        self.kms.connect_custom_key_store(CustomKeyStoreId=store)
        self.assertEqual(self.describe(store)["ConnectionState"], "CONNECTED")
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=store)
        self.kms.delete_custom_key_store(CustomKeyStoreId=store)

    def test_missing_token_fails(self):
        store = self.create_store("hsm-absent", ABSENT)
        self.kms.connect_custom_key_store(CustomKeyStoreId=store)
        d = self.describe(store)
        self.assertEqual((d["ConnectionState"], d["ConnectionErrorCode"]),
                         ("FAILED", "INSUFFICIENT_CLOUDHSM_HSMS"))
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=store)
        self.kms.delete_custom_key_store(CustomKeyStoreId=store)

    # ---- the rules of create, update and delete ----

    def test_rules(self):
        self.assertEqual(self.code(self.kms.create_custom_key_store, CustomKeyStoreName="x",
                                   CloudHsmClusterId=UNMAPPED, TrustAnchorCertificate=ANCHOR,
                                   KeyStorePassword=PIN), "CloudHsmClusterNotFoundException")
        self.assertEqual(self.code(self.kms.create_custom_key_store, CustomKeyStoreName="x",
                                   CloudHsmClusterId=CLUSTER, KeyStorePassword=PIN), "ValidationException")
        self.assertEqual(self.code(self.kms.create_custom_key_store, CustomKeyStoreName="x",
                                   CloudHsmClusterId=CLUSTER, TrustAnchorCertificate=ANCHOR),
                         "ValidationException")
        a = self.create_store("hsm-rules-a", CLUSTER)
        try:
            # One store per cluster, and per token (a related cluster is the same HSM).
            self.assertEqual(self.code(self.kms.create_custom_key_store, CustomKeyStoreName="hsm-rules-b",
                                       CloudHsmClusterId=CLUSTER, TrustAnchorCertificate=ANCHOR,
                                       KeyStorePassword=PIN), "CloudHsmClusterInUseException")
            self.assertEqual(self.code(self.kms.create_custom_key_store, CustomKeyStoreName="hsm-rules-b",
                                       CloudHsmClusterId=RELATED, TrustAnchorCertificate=ANCHOR,
                                       KeyStorePassword=PIN), "CloudHsmClusterInUseException")
            # Names are unique in the account and Region.
            self.assertEqual(self.code(self.kms.create_custom_key_store, CustomKeyStoreName="hsm-rules-a",
                                       CloudHsmClusterId=OTHER, TrustAnchorCertificate=ANCHOR,
                                       KeyStorePassword=PIN), "CustomKeyStoreNameInUseException")
            b = self.create_store("hsm-rules-b", OTHER)
            self.assertEqual(self.code(self.kms.update_custom_key_store, CustomKeyStoreId=b,
                                       NewCustomKeyStoreName="hsm-rules-a"), "CustomKeyStoreNameInUseException")
            self.assertEqual(self.code(self.kms.update_custom_key_store, CustomKeyStoreId=b,
                                       CloudHsmClusterId=CLUSTER), "CloudHsmClusterInUseException")
            self.assertEqual(self.code(self.kms.update_custom_key_store, CustomKeyStoreId=b,
                                       CloudHsmClusterId=UNMAPPED), "CloudHsmClusterNotFoundException")
            self.kms.delete_custom_key_store(CustomKeyStoreId=b)
            # A related cluster may replace the store's; an unrelated one may not.
            self.kms.update_custom_key_store(CustomKeyStoreId=a, CloudHsmClusterId=RELATED,
                                             NewCustomKeyStoreName="hsm-rules-renamed")
            d = self.kms.describe_custom_key_stores(CustomKeyStoreName="hsm-rules-renamed")["CustomKeyStores"]
            self.assertEqual([(s["CustomKeyStoreId"], s["CloudHsmClusterId"]) for s in d], [(a, RELATED)])
            self.assertEqual(self.code(self.kms.update_custom_key_store, CustomKeyStoreId=a,
                                       CloudHsmClusterId=OTHER), "CloudHsmClusterNotRelatedException")
            # Unknown ids and names.
            self.assertEqual(self.code(self.kms.describe_custom_key_stores, CustomKeyStoreName="nope"),
                             "CustomKeyStoreNotFoundException")
            self.assertEqual(self.code(self.kms.connect_custom_key_store, CustomKeyStoreId="cks-0000000000000000a"),
                             "CustomKeyStoreNotFoundException")
            # Keys: symmetric only, and the store must exist.
            self.kms.connect_custom_key_store(CustomKeyStoreId=a)
            self.assertEqual(self.code(self.kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=a,
                                       KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT"),
                             "UnsupportedOperationException")
            self.assertEqual(self.code(self.kms.create_key, Origin="AWS_CLOUDHSM",
                                       CustomKeyStoreId="cks-0000000000000000a"),
                             "CustomKeyStoreNotFoundException")
            self.kms.disconnect_custom_key_store(CustomKeyStoreId=a)
            # Paging through the account's stores.
            c = self.create_store("hsm-rules-c", OTHER)
            seen, marker = [], None
            while True:
                kw = {"Limit": 1}
                if marker:
                    kw["Marker"] = marker
                page = self.kms.describe_custom_key_stores(**kw)
                seen += [s["CustomKeyStoreId"] for s in page["CustomKeyStores"]]
                if not page["Truncated"]:
                    break
                marker = page["NextMarker"]
            self.assertEqual(len(seen), len(set(seen)))
            self.assertTrue({a, c} <= set(seen), seen)
            self.kms.delete_custom_key_store(CustomKeyStoreId=c)
        finally:
            self.kms.delete_custom_key_store(CustomKeyStoreId=a)


if __name__ == "__main__":
    unittest.main()
