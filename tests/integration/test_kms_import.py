"""Imported key material (BYOK) through boto3 and the AWS CLI against a live cofferd: CreateKey
with Origin EXTERNAL, GetParametersForImport for every wrapping algorithm and wrapping key spec,
ImportKeyMaterial (material wrapped on the client side with the `cryptography` module, as AWS's
documentation does it with OpenSSL), DeleteImportedKeyMaterial, re-import of the same material,
the AWS errors for wrong tokens, material and states, expiry carried out by the scheduler, and a
restart (the material survives, sealed)."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import sqlite3
import tempfile
import time

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from harness import Cofferd, ServerTestCase, trail_events


def wrap(public_der, material, algorithm):
    """EncryptedKeyMaterial for `material` under the wrapping key, as a client makes it."""
    pub = serialization.load_der_public_key(public_der)
    sha = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(sha), algorithm=sha, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return pub.encrypt(material, oaep)
    # RSA_AES_KEY_WRAP_*: an ephemeral AES-256 key under RSA-OAEP, then the material under it
    # with AES key wrap with padding (RFC 5649).
    aes = os.urandom(32)
    return pub.encrypt(aes, oaep) + aes_key_wrap_with_padding(aes, material)


class KmsImportTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def external_key(self, **kw):
        return self.kms.create_key(Origin="EXTERNAL", **kw)["KeyMetadata"]

    def params(self, kid, algorithm="RSAES_OAEP_SHA_256", spec="RSA_2048", kms=None):
        return (kms or self.kms).get_parameters_for_import(KeyId=kid, WrappingAlgorithm=algorithm,
                                                           WrappingKeySpec=spec)

    def do_import(self, kid, material, algorithm="RSAES_OAEP_SHA_256", kms=None, **kw):
        kms = kms or self.kms
        p = self.params(kid, algorithm, kms=kms)
        if not kw:
            kw = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
        return kms.import_key_material(KeyId=kid, ImportToken=p["ImportToken"],
                                       EncryptedKeyMaterial=wrap(p["PublicKey"], material, algorithm), **kw)

    # ---- the happy paths ------------------------------------------------------------------------

    def test_every_wrapping_algorithm_and_key_spec(self):
        for algorithm in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1",
                          "RSA_AES_KEY_WRAP_SHA_256"):
            for spec, bits in (("RSA_2048", 2048), ("RSA_3072", 3072), ("RSA_4096", 4096)):
                with self.subTest(algorithm=algorithm, spec=spec):
                    md = self.external_key()
                    self.assertEqual(md["Origin"], "EXTERNAL")
                    self.assertEqual(md["KeyState"], "PendingImport")
                    self.assertFalse(md["Enabled"])
                    self.assertNotIn("ExpirationModel", md)
                    self.assertNotIn("CurrentKeyMaterialId", md)
                    before = datetime.datetime.now(datetime.timezone.utc)
                    p = self.params(md["KeyId"], algorithm, spec)
                    self.assertEqual(p["KeyId"], md["Arn"])
                    left = p["ParametersValidTo"] - before
                    self.assertTrue(datetime.timedelta(hours=23, minutes=59) < left < datetime.timedelta(hours=24,
                                                                                                           minutes=1))
                    pub = serialization.load_der_public_key(p["PublicKey"])
                    self.assertEqual(pub.key_size, bits)
                    material = os.urandom(32)
                    self.kms.import_key_material(
                        KeyId=md["KeyId"], ImportToken=p["ImportToken"],
                        EncryptedKeyMaterial=wrap(p["PublicKey"], material, algorithm),
                        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
                    d = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
                    self.assertEqual(d["KeyState"], "Enabled")
                    self.assertEqual(d["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE")
                    self.assertNotIn("ValidTo", d)
                    ct = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"secret")["CiphertextBlob"]
                    self.assertEqual(self.kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"secret")

    def test_hmac_material_gives_python_hmac(self):
        material = os.urandom(64)
        md = self.external_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")
        self.assertEqual(md["KeyState"], "PendingImport")
        self.do_import(md["KeyId"], material, "RSA_AES_KEY_WRAP_SHA_256")
        mac = self.kms.generate_mac(KeyId=md["KeyId"], Message=b"hello", MacAlgorithm="HMAC_SHA_512")["Mac"]
        self.assertEqual(mac, hmac.new(material, b"hello", hashlib.sha512).digest())

    def test_delete_and_reimport_same_material(self):
        material = os.urandom(32)
        md = self.external_key()
        kid = md["KeyId"]
        # (boto3 1.26 predates the KeyId and KeyMaterialId outputs of these two operations; the unit
        # tests check them.)
        self.do_import(kid, material)
        ct = self.kms.encrypt(KeyId=kid, Plaintext=b"old data")["CiphertextBlob"]
        self.kms.delete_imported_key_material(KeyId=kid)
        d = self.kms.describe_key(KeyId=kid)["KeyMetadata"]
        self.assertEqual(d["KeyState"], "PendingImport")
        self.assertNotIn("CurrentKeyMaterialId", d)
        code, msg = self.error(self.kms.decrypt, CiphertextBlob=ct)
        self.assertEqual((code, msg), ("KMSInvalidStateException", "%s is pending import." % md["Arn"]))
        code, msg = self.error(self.kms.encrypt, KeyId=kid, Plaintext=b"x")
        self.assertEqual(code, "KMSInvalidStateException")
        # Deleting again: no effect.
        self.kms.delete_imported_key_material(KeyId=kid)
        # Other material is refused; the same material comes back under its id: old ciphertexts open.
        code, _ = self.error(self.do_import, kid=kid, material=os.urandom(32))
        self.assertEqual(code, "IncorrectKeyMaterialException")
        self.do_import(kid, material, "RSA_AES_KEY_WRAP_SHA_256")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"old data")
        # Re-importing over present material: the same material only.
        self.do_import(kid, material)
        code, _ = self.error(self.do_import, kid=kid, material=os.urandom(32))
        self.assertEqual(code, "IncorrectKeyMaterialException")

    # ---- errors ---------------------------------------------------------------------------------

    def test_token_and_material_errors(self):
        a = self.external_key()["KeyId"]
        b = self.external_key()["KeyId"]
        pa = self.params(a)
        material = os.urandom(32)
        wrapped = wrap(pa["PublicKey"], material, "RSAES_OAEP_SHA_256")
        dne = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
        # Another key's token; a made-up token.
        code, _ = self.error(self.kms.import_key_material, KeyId=b, ImportToken=pa["ImportToken"],
                             EncryptedKeyMaterial=wrapped, **dne)
        self.assertEqual(code, "InvalidImportTokenException")
        code, _ = self.error(self.kms.import_key_material, KeyId=a, ImportToken=os.urandom(100),
                             EncryptedKeyMaterial=wrapped, **dne)
        self.assertEqual(code, "InvalidImportTokenException")
        # Wrapped under another wrapping key: does not decrypt.
        pb = self.params(b)
        code, _ = self.error(self.kms.import_key_material, KeyId=b, ImportToken=pb["ImportToken"],
                             EncryptedKeyMaterial=wrapped, **dne)
        self.assertEqual(code, "InvalidCiphertextException")
        # Wrapped with the other OAEP digest: does not decrypt either.
        code, _ = self.error(self.kms.import_key_material, KeyId=a, ImportToken=pa["ImportToken"],
                             EncryptedKeyMaterial=wrap(pa["PublicKey"], material, "RSAES_OAEP_SHA_1"), **dne)
        self.assertEqual(code, "InvalidCiphertextException")
        # Material of the wrong size for a symmetric key.
        code, _ = self.error(self.kms.import_key_material, KeyId=a, ImportToken=pa["ImportToken"],
                             EncryptedKeyMaterial=wrap(pa["PublicKey"], os.urandom(16), "RSAES_OAEP_SHA_256"),
                             **dne)
        self.assertEqual(code, "IncorrectKeyMaterialException")
        # A newer token replaces the older one.
        self.params(a)
        code, _ = self.error(self.kms.import_key_material, KeyId=a, ImportToken=pa["ImportToken"],
                             EncryptedKeyMaterial=wrapped, **dne)
        self.assertEqual(code, "InvalidImportTokenException")
        # ValidTo rules.
        p = self.params(a)
        wrapped = wrap(p["PublicKey"], material, "RSAES_OAEP_SHA_256")
        code, msg = self.error(self.kms.import_key_material, KeyId=a, ImportToken=p["ImportToken"],
                               EncryptedKeyMaterial=wrapped)
        self.assertEqual((code, msg), ("ValidationException", "A validTo date must be set if the ExpirationModel "
                                                              "is KEY_MATERIAL_EXPIRES"))
        code, _ = self.error(self.kms.import_key_material, KeyId=a, ImportToken=p["ImportToken"],
                             EncryptedKeyMaterial=wrapped, ValidTo=datetime.datetime(2001, 1, 1),
                             ExpirationModel="KEY_MATERIAL_EXPIRES")
        self.assertEqual(code, "ValidationException")
        code, _ = self.error(self.kms.import_key_material, KeyId=a, ImportToken=p["ImportToken"],
                             EncryptedKeyMaterial=wrapped, ValidTo=datetime.datetime(2999, 1, 1), **dne)
        self.assertEqual(code, "ValidationException")
        # Unknown wrapping names are validation errors of the model; PKCS#1 v1.5 is refused.
        code, _ = self.error(self.params, kid=a, algorithm="RSAES_PKCS1_V1_5")
        self.assertEqual(code, "ValidationException")

    def test_origin_and_state_errors(self):
        own = self.kms.create_key()["KeyMetadata"]
        want = "%s origin is AWS_KMS which is not valid for this operation." % own["Arn"]
        self.assertEqual(self.error(self.params, kid=own["KeyId"]), ("UnsupportedOperationException", want))
        self.assertEqual(self.error(self.kms.delete_imported_key_material, KeyId=own["KeyId"]),
                         ("UnsupportedOperationException", want))
        ext = self.external_key()
        p = self.params(ext["KeyId"])
        code, msg = self.error(self.kms.import_key_material, KeyId=own["KeyId"], ImportToken=p["ImportToken"],
                               EncryptedKeyMaterial=wrap(p["PublicKey"], os.urandom(32), "RSAES_OAEP_SHA_256"),
                               ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.assertEqual((code, msg), ("UnsupportedOperationException", want))
        pending = "%s is pending import." % ext["Arn"]
        self.assertEqual(self.error(self.kms.enable_key, KeyId=ext["KeyId"]), ("KMSInvalidStateException", pending))
        self.assertEqual(self.error(self.kms.encrypt, KeyId=ext["KeyId"], Plaintext=b"x"),
                         ("KMSInvalidStateException", pending))
        # Aliases are not accepted by the import operations (key id or ARN only).
        self.kms.create_alias(AliasName="alias/import-test", TargetKeyId=ext["KeyId"])
        code, _ = self.error(self.params, kid="alias/import-test")
        self.assertEqual(code, "NotFoundException")
        # Pending deletion: no parameters, no import.
        self.kms.schedule_key_deletion(KeyId=ext["KeyId"], PendingWindowInDays=7)
        self.assertEqual(self.error(self.params, kid=ext["KeyId"]),
                         ("KMSInvalidStateException", "%s is pending deletion." % ext["Arn"]))
        code, _ = self.error(self.kms.import_key_material, KeyId=ext["KeyId"], ImportToken=p["ImportToken"],
                             EncryptedKeyMaterial=wrap(p["PublicKey"], os.urandom(32), "RSAES_OAEP_SHA_256"),
                             ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.assertEqual(code, "KMSInvalidStateException")
        # Cancelled: back to waiting for material, not Disabled.
        self.kms.cancel_key_deletion(KeyId=ext["KeyId"])
        self.assertEqual(self.kms.describe_key(KeyId=ext["KeyId"])["KeyMetadata"]["KeyState"], "PendingImport")

    # ---- expiry, audit, restart ------------------------------------------------------------------

    def test_expiry_by_the_scheduler(self):
        """cofferd ticks every second here (--sweep-interval 1): material expiring in ~10 s is
        deleted by the scheduler and the key waits for an import again. (10 s: the import makes
        an RSA wrapping key first, which takes seconds on a loaded machine.)"""
        md = self.external_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
        material = os.urandom(32)
        valid_to = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=10)
        self.do_import(md["KeyId"], material, ValidTo=valid_to, ExpirationModel="KEY_MATERIAL_EXPIRES")
        d = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
        self.assertEqual(d["ExpirationModel"], "KEY_MATERIAL_EXPIRES")
        self.assertEqual(d["ValidTo"], valid_to)
        self.assertEqual(d["KeyState"], "Enabled")
        self.kms.generate_mac(KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        deadline = time.time() + 30
        while time.time() < deadline:
            d = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
            if d["KeyState"] == "PendingImport":
                break
            time.sleep(0.5)
        self.assertEqual(d["KeyState"], "PendingImport")
        self.assertGreaterEqual(datetime.datetime.now(datetime.timezone.utc), valid_to)
        self.assertNotIn("ValidTo", d)
        code, _ = self.error(self.kms.generate_mac, KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        self.assertEqual(code, "KMSInvalidStateException")
        # The service's own action is on record, as CloudTrail shows it.
        events = [e for e in trail_events(self.server.data_dir) if e.get("eventName") == "DeleteExpiredKeyMaterial"
                  and any(r.get("ARN") == md["Arn"] for r in e.get("resources", []))]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["eventType"], "AwsServiceEvent")
        # The same material brings it back.
        self.do_import(md["KeyId"], material)
        mac = self.kms.generate_mac(KeyId=md["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        self.assertEqual(mac, hmac.new(material, b"m", hashlib.sha256).digest())

    def test_trail_has_no_token_or_material(self):
        md = self.external_key()
        p = self.params(md["KeyId"])
        material = os.urandom(32)
        wrapped = wrap(p["PublicKey"], material, "RSAES_OAEP_SHA_256")
        self.kms.import_key_material(KeyId=md["KeyId"], ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrapped,
                                     ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        self.kms.delete_imported_key_material(KeyId=md["KeyId"])
        events = {e["eventName"]: e for e in trail_events(self.server.data_dir)
                  if any(r.get("ARN") == md["Arn"] for r in e.get("resources", []))}
        self.assertEqual(events["GetParametersForImport"]["requestParameters"],
                         {"keyId": md["KeyId"], "wrappingAlgorithm": "RSAES_OAEP_SHA_256",
                          "wrappingKeySpec": "RSA_2048"})
        self.assertEqual(events["ImportKeyMaterial"]["requestParameters"],
                         {"keyId": md["KeyId"], "expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        self.assertEqual(events["DeleteImportedKeyMaterial"]["requestParameters"], {"keyId": md["KeyId"]})
        text = json.dumps(list(events.values()))
        for blob in (p["ImportToken"], wrapped, material, p["PublicKey"]):
            self.assertNotIn(base64.b64encode(blob).decode(), text)

    def test_restart_keeps_material_sealed(self):
        server = Cofferd(extra_args=("--quota-crypto-rps", "0")).start()
        try:
            kms = server.client()
            material = os.urandom(32)
            hkey = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC", Origin="EXTERNAL")["KeyMetadata"]
            self.do_import(hkey["KeyId"], material, kms=kms)
            skey = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
            self.do_import(skey["KeyId"], material[::-1], kms=kms, ValidTo=datetime.datetime.now(
                datetime.timezone.utc) + datetime.timedelta(days=30), ExpirationModel="KEY_MATERIAL_EXPIRES")
            ct = kms.encrypt(KeyId=skey["KeyId"], Plaintext=b"kept")["CiphertextBlob"]
            pending = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
            self.assertEqual(server.stop(), 0)
            # Neither the material nor the wrapping keys are anywhere in the store in clear.
            for name in os.listdir(server.data_dir):
                path = os.path.join(server.data_dir, name)
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        data = f.read()
                    self.assertNotIn(material, data, name)
                    self.assertNotIn(material[::-1], data, name)
            server.start()
            kms = server.client()
            mac = kms.generate_mac(KeyId=hkey["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
            self.assertEqual(mac, hmac.new(material, b"m", hashlib.sha256).digest())
            self.assertEqual(kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"kept")
            d = kms.describe_key(KeyId=skey["KeyId"])["KeyMetadata"]
            self.assertEqual(d["ExpirationModel"], "KEY_MATERIAL_EXPIRES")
            self.assertIn("ValidTo", d)
            self.assertEqual(kms.describe_key(KeyId=pending["KeyId"])["KeyMetadata"]["KeyState"], "PendingImport")
            # A re-import after the restart is still checked against the first material.
            code, _ = self.error(self.do_import, kid=hkey["KeyId"], material=os.urandom(32), kms=kms)
            self.assertEqual(code, "IncorrectKeyMaterialException")
        finally:
            server.cleanup()

    # ---- the AWS CLI ------------------------------------------------------------------------------

    def test_cli(self):
        rc, out, err = self.server.aws("kms", "create-key", "--origin", "EXTERNAL", check=True)
        kid = out["KeyMetadata"]["KeyId"]
        self.assertEqual(out["KeyMetadata"]["KeyState"], "PendingImport")
        rc, out, err = self.server.aws("kms", "get-parameters-for-import", "--key-id", kid, "--wrapping-algorithm",
                                       "RSA_AES_KEY_WRAP_SHA_256", "--wrapping-key-spec", "RSA_3072", check=True)
        token = base64.b64decode(out["ImportToken"])
        material = os.urandom(32)
        wrapped = wrap(base64.b64decode(out["PublicKey"]), material, "RSA_AES_KEY_WRAP_SHA_256")
        with tempfile.TemporaryDirectory() as d:
            tpath, mpath = os.path.join(d, "token.bin"), os.path.join(d, "material.bin")
            with open(tpath, "wb") as f:
                f.write(token)
            with open(mpath, "wb") as f:
                f.write(wrapped)
            rc, out, err = self.server.aws("kms", "import-key-material", "--key-id", kid, "--import-token",
                                           "fileb://" + tpath, "--encrypted-key-material", "fileb://" + mpath,
                                           "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE", check=True)
        rc, out, err = self.server.aws("kms", "describe-key", "--key-id", kid, check=True)
        self.assertEqual(out["KeyMetadata"]["KeyState"], "Enabled")
        self.assertEqual(out["KeyMetadata"]["Origin"], "EXTERNAL")
        self.assertEqual(out["KeyMetadata"]["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE")
        rc, out, err = self.server.aws("kms", "delete-imported-key-material", "--key-id", kid, check=True)
        rc, out, err = self.server.aws("kms", "describe-key", "--key-id", kid, check=True)
        self.assertEqual(out["KeyMetadata"]["KeyState"], "PendingImport")
        rc, out, err = self.server.aws("kms", "get-parameters-for-import", "--key-id", kid, "--wrapping-algorithm",
                                       "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_1024")
        self.assertNotEqual(rc, 0)
