"""HMAC KMS keys through boto3 and the AWS CLI against a live cofferd: CreateKey for HMAC_224..512,
GenerateMac and VerifyMac (KMSInvalidMacException on a mismatch), the key usage and algorithm
errors, grants and policies for kms:GenerateMac / kms:VerifyMac, and the audit trail (the message
and the MAC never in it). MACs are checked against Python's hmac over material imported into an
EXTERNAL key, where the key bytes are known."""
import base64
import hashlib
import hmac
import json
import os
import tempfile

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from harness import ServerTestCase, trail_events

SPECS = {"HMAC_224": ("HMAC_SHA_224", hashlib.sha224, 28),
         "HMAC_256": ("HMAC_SHA_256", hashlib.sha256, 32),
         "HMAC_384": ("HMAC_SHA_384", hashlib.sha384, 48),
         "HMAC_512": ("HMAC_SHA_512", hashlib.sha512, 64)}


class KmsHmacTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def hmac_key(self, spec, **kw):
        return self.kms.create_key(KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC", **kw)["KeyMetadata"]

    def imported_hmac_key(self, spec, material):
        """An EXTERNAL HMAC key holding `material`."""
        md = self.hmac_key(spec, Origin="EXTERNAL")
        p = self.kms.get_parameters_for_import(KeyId=md["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                               WrappingKeySpec="RSA_2048")
        pub = serialization.load_der_public_key(p["PublicKey"])
        wrapped = pub.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                     label=None))
        self.kms.import_key_material(KeyId=md["KeyId"], ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrapped,
                                     ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        return md

    # ---- keys and MACs --------------------------------------------------------------------------

    def test_create_generate_verify_every_spec(self):
        for spec, (alg, _, n) in SPECS.items():
            with self.subTest(spec=spec):
                md = self.hmac_key(spec)
                self.assertEqual(md["KeySpec"], spec)
                self.assertEqual(md["KeyUsage"], "GENERATE_VERIFY_MAC")
                self.assertEqual(md["KeyState"], "Enabled")
                self.assertEqual(md["Origin"], "AWS_KMS")
                self.assertNotIn("EncryptionAlgorithms", md)
                out = self.kms.generate_mac(KeyId=md["KeyId"], Message=b"payload", MacAlgorithm=alg)
                self.assertEqual(out["KeyId"], md["Arn"])
                self.assertEqual(out["MacAlgorithm"], alg)
                self.assertEqual(len(out["Mac"]), n)
                # Deterministic: the same message gives the same MAC.
                again = self.kms.generate_mac(KeyId=md["Arn"], Message=b"payload", MacAlgorithm=alg)
                self.assertEqual(again["Mac"], out["Mac"])
                v = self.kms.verify_mac(KeyId=md["KeyId"], Message=b"payload", MacAlgorithm=alg, Mac=out["Mac"])
                self.assertEqual(v, {**v, "KeyId": md["Arn"], "MacValid": True, "MacAlgorithm": alg})
                bad = bytes([out["Mac"][0] ^ 1]) + out["Mac"][1:]
                code, msg = self.error(self.kms.verify_mac, KeyId=md["KeyId"], Message=b"payload",
                                       MacAlgorithm=alg, Mac=bad)
                self.assertEqual(code, "KMSInvalidMacException")
                code, _ = self.error(self.kms.verify_mac, KeyId=md["KeyId"], Message=b"payloaD",
                                     MacAlgorithm=alg, Mac=out["Mac"])
                self.assertEqual(code, "KMSInvalidMacException")
                code, _ = self.error(self.kms.verify_mac, KeyId=md["KeyId"], Message=b"payload",
                                     MacAlgorithm=alg, Mac=out["Mac"][:-1])
                self.assertEqual(code, "KMSInvalidMacException")

    def test_mac_equals_hmac_over_imported_material(self):
        for spec, (alg, digest, n) in SPECS.items():
            with self.subTest(spec=spec):
                material = os.urandom(n)
                md = self.imported_hmac_key(spec, material)
                for message in (b"x", b"The quick brown fox", os.urandom(4096)):
                    mac = self.kms.generate_mac(KeyId=md["KeyId"], Message=message, MacAlgorithm=alg)["Mac"]
                    self.assertEqual(mac, hmac.new(material, message, digest).digest())
                    want = hmac.new(material, b"from elsewhere", digest).digest()
                    self.assertTrue(self.kms.verify_mac(KeyId=md["KeyId"], Message=b"from elsewhere",
                                                        MacAlgorithm=alg, Mac=want)["MacValid"])

    def test_aliases_accepted(self):
        md = self.hmac_key("HMAC_256")
        self.kms.create_alias(AliasName="alias/hmac-alias-test", TargetKeyId=md["KeyId"])
        a = self.kms.generate_mac(KeyId="alias/hmac-alias-test", Message=b"m", MacAlgorithm="HMAC_SHA_256")
        b = self.kms.generate_mac(KeyId=md["Arn"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        self.assertEqual(a["Mac"], b["Mac"])

    # ---- errors ---------------------------------------------------------------------------------

    def test_create_key_errors(self):
        code, msg = self.error(self.kms.create_key, KeySpec="HMAC_256")
        self.assertEqual((code, msg), ("ValidationException", "You must specify a KeyUsage value for all KMS keys "
                                                              "except for symmetric encryption keys."))
        code, msg = self.error(self.kms.create_key, KeySpec="HMAC_384", KeyUsage="ENCRYPT_DECRYPT")
        self.assertEqual((code, msg), ("ValidationException",
                                       "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec HMAC_384"))
        code, _ = self.error(self.kms.create_key, KeySpec="SYMMETRIC_DEFAULT", KeyUsage="GENERATE_VERIFY_MAC")
        self.assertEqual(code, "ValidationException")

    def test_wrong_algorithm_and_usage(self):
        md = self.hmac_key("HMAC_512")
        code, msg = self.error(self.kms.generate_mac, KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        self.assertEqual((code, msg), ("InvalidKeyUsageException",
                                       "Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_512."))
        code, _ = self.error(self.kms.verify_mac, KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_384",
                             Mac=b"\0" * 48)
        self.assertEqual(code, "InvalidKeyUsageException")
        sym = self.kms.create_key()["KeyMetadata"]
        code, msg = self.error(self.kms.generate_mac, KeyId=sym["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        self.assertEqual((code, msg), ("InvalidKeyUsageException", "%s key usage is ENCRYPT_DECRYPT which is not "
                                                                   "valid for GenerateMac." % sym["Arn"]))
        code, _ = self.error(self.kms.verify_mac, KeyId=sym["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256",
                             Mac=b"\0" * 32)
        self.assertEqual(code, "InvalidKeyUsageException")
        # An HMAC key does not encrypt or make data keys.
        code, _ = self.error(self.kms.encrypt, KeyId=md["KeyId"], Plaintext=b"x")
        self.assertEqual(code, "InvalidKeyUsageException")
        code, _ = self.error(self.kms.generate_data_key, KeyId=md["KeyId"], KeySpec="AES_256")
        self.assertEqual(code, "InvalidKeyUsageException")

    def test_message_limits_and_states(self):
        md = self.hmac_key("HMAC_256")
        self.kms.generate_mac(KeyId=md["KeyId"], Message=b"m" * 4096, MacAlgorithm="HMAC_SHA_256")
        code, msg = self.error(self.kms.generate_mac, KeyId=md["KeyId"], Message=b"m" * 4097,
                               MacAlgorithm="HMAC_SHA_256")
        self.assertEqual(code, "ValidationException")
        self.assertIn("'message'", msg)
        self.kms.disable_key(KeyId=md["KeyId"])
        code, msg = self.error(self.kms.generate_mac, KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        self.assertEqual((code, msg), ("DisabledException", "%s is disabled." % md["Arn"]))
        self.kms.enable_key(KeyId=md["KeyId"])
        self.kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
        code, msg = self.error(self.kms.verify_mac, KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256",
                               Mac=b"\0" * 32)
        self.assertEqual((code, msg), ("KMSInvalidStateException", "%s is pending deletion." % md["Arn"]))
        code, _ = self.error(self.kms.generate_mac, KeyId="alias/no-such-hmac", Message=b"m",
                             MacAlgorithm="HMAC_SHA_256")
        self.assertEqual(code, "NotFoundException")

    # ---- authorization ----------------------------------------------------------------------------

    def user(self, name):
        iam = self.server.client("iam")
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return iam, self.server.client(akid=key["AccessKeyId"], secret=key["SecretAccessKey"])

    def test_grants_and_policies(self):
        md = self.hmac_key("HMAC_256")
        iam, bob = self.user("mac-bob")
        arn = "arn:aws:iam::000000000000:user/mac-bob"
        code, _ = self.error(bob.generate_mac, KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        self.assertEqual(code, "AccessDeniedException")
        # A grant of GenerateMac alone: MACs, but no verification.
        g = self.kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=arn, Operations=["GenerateMac"])
        mac = bob.generate_mac(KeyId=md["Arn"], Message=b"m", MacAlgorithm="HMAC_SHA_256",
                               GrantTokens=[g["GrantToken"]])["Mac"]
        code, _ = self.error(bob.verify_mac, KeyId=md["Arn"], Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac)
        self.assertEqual(code, "AccessDeniedException")
        grants = self.kms.list_grants(KeyId=md["KeyId"])["Grants"]
        self.assertEqual(grants[0]["Operations"], ["GenerateMac"])
        # An identity policy naming kms:VerifyMac on the key.
        iam.put_user_policy(UserName="mac-bob", PolicyName="verify", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:VerifyMac", "Resource": md["Arn"]}]}))
        self.assertTrue(bob.verify_mac(KeyId=md["Arn"], Message=b"m", MacAlgorithm="HMAC_SHA_256",
                                       Mac=mac)["MacValid"])
        # Grant operations must suit the key.
        code, msg = self.error(self.kms.create_grant, KeyId=md["KeyId"], GranteePrincipal=arn,
                               Operations=["Encrypt"])
        self.assertEqual((code, msg), ("ValidationException", "Grant operation Encrypt is not valid for this KMS key."))
        sym = self.kms.create_key()["KeyMetadata"]
        code, _ = self.error(self.kms.create_grant, KeyId=sym["KeyId"], GranteePrincipal=arn,
                             Operations=["VerifyMac"])
        self.assertEqual(code, "ValidationException")

    # ---- audit ----------------------------------------------------------------------------------

    def test_trail_has_no_message_or_mac(self):
        md = self.hmac_key("HMAC_256")
        secret_msg = b"trail-secret-" + os.urandom(8).hex().encode()
        mac = self.kms.generate_mac(KeyId=md["KeyId"], Message=secret_msg, MacAlgorithm="HMAC_SHA_256")["Mac"]
        self.kms.verify_mac(KeyId=md["KeyId"], Message=secret_msg, MacAlgorithm="HMAC_SHA_256", Mac=mac)
        events = [e for e in trail_events(self.server.data_dir)
                  if e.get("eventName") in ("GenerateMac", "VerifyMac")
                  and any(r.get("ARN") == md["Arn"] for r in e.get("resources", []))]
        self.assertEqual(sorted(e["eventName"] for e in events), ["GenerateMac", "VerifyMac"])
        for e in events:
            self.assertEqual(e["requestParameters"], {"keyId": md["KeyId"], "macAlgorithm": "HMAC_SHA_256"})
            text = json.dumps(e)
            self.assertNotIn(base64.b64encode(secret_msg).decode(), text)
            self.assertNotIn(base64.b64encode(mac).decode(), text)
            self.assertNotIn(secret_msg.decode(), text)

    # ---- the AWS CLI ------------------------------------------------------------------------------

    def test_cli(self):
        rc, out, err = self.server.aws("kms", "create-key", "--key-spec", "HMAC_384", "--key-usage",
                                       "GENERATE_VERIFY_MAC", check=True)
        kid = out["KeyMetadata"]["KeyId"]
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(b"cli message")
            f.flush()
            rc, out, err = self.server.aws("kms", "generate-mac", "--key-id", kid, "--message", "fileb://" + f.name,
                                           "--mac-algorithm", "HMAC_SHA_384", check=True)
            self.assertEqual(out["MacAlgorithm"], "HMAC_SHA_384")
            mac_b64 = out["Mac"]
            self.assertEqual(len(base64.b64decode(mac_b64)), 48)
            rc, out, err = self.server.aws("kms", "verify-mac", "--key-id", kid, "--message", "fileb://" + f.name,
                                           "--mac-algorithm", "HMAC_SHA_384", "--mac", mac_b64, check=True)
            self.assertTrue(out["MacValid"])
            bad = base64.b64encode(b"\0" * 48).decode()
            rc, out, err = self.server.aws("kms", "verify-mac", "--key-id", kid, "--message", "fileb://" + f.name,
                                           "--mac-algorithm", "HMAC_SHA_384", "--mac", bad)
            self.assertNotEqual(rc, 0)
            self.assertIn("KMSInvalidMacException", err)
            rc, out, err = self.server.aws("kms", "generate-mac", "--key-id", kid, "--message", "fileb://" + f.name,
                                           "--mac-algorithm", "HMAC_SHA_512")
            self.assertNotEqual(rc, 0)
            self.assertIn("InvalidKeyUsageException", err)
