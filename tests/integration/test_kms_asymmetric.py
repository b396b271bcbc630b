"""Asymmetric KMS keys through real clients (boto3 and /usr/bin/aws): RSA and ECC keys for
Sign/Verify, RSA keys for Encrypt/Decrypt/ReEncrypt, GetPublicKey, GenerateDataKeyPair and the
error answers AWS gives. Interoperability is checked against independent implementations: every
signature Coffer makes verifies with the `openssl` CLI and the `cryptography` module using the
key GetPublicKey returns, RSA ciphertext made by `cryptography` decrypts with Coffer, and the
pairs of GenerateDataKeyPair are whole key pairs."""
import base64
import hashlib
import json
import os
import subprocess
import tempfile
import time
import unittest

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from harness import Cofferd, ServerTestCase, trail_events

DIGESTS = {"256": ("sha256", hashes.SHA256(), hashlib.sha256),
           "384": ("sha384", hashes.SHA384(), hashlib.sha384),
           "512": ("sha512", hashes.SHA512(), hashlib.sha512)}

SIGNING = [  # (key spec, signing algorithm)
    ("RSA_2048", "RSASSA_PSS_SHA_256"),
    ("RSA_2048", "RSASSA_PSS_SHA_384"),
    ("RSA_2048", "RSASSA_PSS_SHA_512"),
    ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
    ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_384"),
    ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_512"),
    ("RSA_3072", "RSASSA_PSS_SHA_256"),
    ("ECC_NIST_P256", "ECDSA_SHA_256"),
    ("ECC_NIST_P384", "ECDSA_SHA_384"),
    ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
]


def error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"].get("Message", "")
    raise AssertionError("no error")


class AsymmetricKeysTest(ServerTestCase):
    keys = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kms = cls.server.client()
        cls.tmp = tempfile.mkdtemp(prefix="coffer-asym-")

    def key(self, spec, usage):
        """One key per (spec, usage) for the whole class: RSA generation is slow."""
        if (spec, usage) not in self.keys:
            md = self.kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
            self.keys[(spec, usage)] = md
        return self.keys[(spec, usage)]

    def public_key(self, key_id):
        return serialization.load_der_public_key(self.kms.get_public_key(KeyId=key_id)["PublicKey"])

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # ---- CreateKey and metadata ------------------------------------------------------------

    def test_create_key_metadata(self):
        md = self.key("RSA_2048", "SIGN_VERIFY")
        self.assertEqual(md["KeySpec"], "RSA_2048")
        self.assertEqual(md["CustomerMasterKeySpec"], "RSA_2048")
        self.assertEqual(md["SigningAlgorithms"],
                         ["RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
                          "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512"])
        self.assertNotIn("EncryptionAlgorithms", md)
        md = self.key("RSA_2048", "ENCRYPT_DECRYPT")
        self.assertEqual(md["EncryptionAlgorithms"], ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
        self.assertNotIn("SigningAlgorithms", md)
        for spec, alg in (("ECC_NIST_P256", "ECDSA_SHA_256"), ("ECC_NIST_P384", "ECDSA_SHA_384"),
                          ("ECC_NIST_P521", "ECDSA_SHA_512"), ("ECC_SECG_P256K1", "ECDSA_SHA_256")):
            md = self.key(spec, "SIGN_VERIFY")
            self.assertEqual(md["SigningAlgorithms"], [alg])
            described = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
            self.assertEqual(described["SigningAlgorithms"], [alg])
            self.assertEqual(described["KeyUsage"], "SIGN_VERIFY")
        for n in ("224", "256", "384", "512"):
            md = self.kms.create_key(KeySpec="HMAC_" + n, KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
            self.assertEqual(md["MacAlgorithms"], ["HMAC_SHA_" + n])
            self.assertNotIn("EncryptionAlgorithms", md)
        # The deprecated member still works, and is echoed.
        md = self.kms.create_key(CustomerMasterKeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        self.assertEqual((md["KeySpec"], md["CustomerMasterKeySpec"]), ("ECC_NIST_P256", "ECC_NIST_P256"))

    def test_create_key_refusals(self):
        cases = [
            (dict(KeySpec="RSA_2048"), "ValidationException",
             "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."),
            (dict(KeySpec="ECC_NIST_P256", KeyUsage="ENCRYPT_DECRYPT"), "ValidationException",
             "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec ECC_NIST_P256"),
            (dict(KeySpec="RSA_4096", KeyUsage="GENERATE_VERIFY_MAC"), "ValidationException",
             "KeyUsage GENERATE_VERIFY_MAC is not compatible with KeySpec RSA_4096"),
            (dict(KeySpec="HMAC_384", KeyUsage="SIGN_VERIFY"), "ValidationException",
             "KeyUsage SIGN_VERIFY is not compatible with KeySpec HMAC_384"),
            (dict(KeyUsage="SIGN_VERIFY"), "ValidationException",
             "KeyUsage SIGN_VERIFY is not compatible with KeySpec SYMMETRIC_DEFAULT"),
            (dict(KeySpec="SM2", KeyUsage="SIGN_VERIFY"), "UnsupportedOperationException",
             "KeySpec SM2 is not supported by this server."),
            (dict(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY"), "UnsupportedOperationException",
             "KeySpec ECC_NIST_EDWARDS25519 is not supported by this server."),
            (dict(KeySpec="ML_DSA_44", KeyUsage="SIGN_VERIFY"), "UnsupportedOperationException",
             "KeySpec ML_DSA_44 is not supported by this server."),
            (dict(KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT"), "UnsupportedOperationException",
             "KeyUsage KEY_AGREEMENT is not supported by this server."),
        ]
        for kw, code, msg in cases:
            self.assertEqual(error(self.kms.create_key, **kw), (code, msg), kw)

    # ---- Sign and Verify -------------------------------------------------------------------

    def openssl_verify(self, spec, alg, pub_der, msg, sig):
        """`openssl pkeyutl -verify` over the raw message with the SPKI from GetPublicKey."""
        md = DIGESTS[alg[-3:]][0]
        args = ["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER",
                "-inkey", self.write("pub.der", pub_der), "-rawin", "-digest", md,
                "-in", self.write("msg", msg), "-sigfile", self.write("sig", sig)]
        if alg.startswith("RSASSA_PSS"):
            args += ["-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest",
                     "-pkeyopt", "rsa_mgf1_md:" + md]
        r = subprocess.run(args, capture_output=True)
        return r.returncode == 0 and b"Signature Verified Successfully" in r.stdout

    def test_sign_verify_every_algorithm(self):
        msg = b"Coffer signs this message " * 10
        for spec, alg in SIGNING:
            with self.subTest(spec=spec, alg=alg):
                md = self.key(spec, "SIGN_VERIFY")
                kid = md["KeyId"]
                out = self.kms.sign(KeyId=kid, Message=msg, SigningAlgorithm=alg)
                self.assertEqual(out["KeyId"], md["Arn"])
                self.assertEqual(out["SigningAlgorithm"], alg)
                sig = out["Signature"]
                v = self.kms.verify(KeyId=kid, Message=msg, Signature=sig, SigningAlgorithm=alg)
                self.assertTrue(v["SignatureValid"])
                self.assertEqual(v["KeyId"], md["Arn"])
                pub = self.kms.get_public_key(KeyId=kid)
                self.assertTrue(self.openssl_verify(spec, alg, pub["PublicKey"], msg, sig))
                self.assertFalse(self.openssl_verify(spec, alg, pub["PublicKey"], msg + b"!", sig))
                # The same through `cryptography`, and DIGEST messages signed by Coffer.
                key = serialization.load_der_public_key(pub["PublicKey"])
                _, h, fn = DIGESTS[alg[-3:]]
                digest = fn(msg).digest()
                sig2 = self.kms.sign(KeyId=kid, Message=digest, MessageType="DIGEST",
                                     SigningAlgorithm=alg)["Signature"]
                if spec.startswith("ECC"):
                    key.verify(sig2, digest, ec.ECDSA(Prehashed(h)))
                    key.verify(sig, msg, ec.ECDSA(h))
                    # DER SEQUENCE{r, s}, as AWS returns it.
                    self.assertEqual(sig[0], 0x30)
                elif "PSS" in alg:
                    pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
                    key.verify(sig2, digest, pss, Prehashed(h))
                    key.verify(sig, msg, pss, h)
                else:
                    key.verify(sig2, digest, padding.PKCS1v15(), Prehashed(h))
                    key.verify(sig, msg, padding.PKCS1v15(), h)
                    # PKCS#1 v1.5 is deterministic: RAW and DIGEST give the same bytes.
                    self.assertEqual(sig, sig2)
                # A DIGEST signature verifies as RAW over the message, and the reverse.
                self.kms.verify(KeyId=kid, Message=msg, Signature=sig2, SigningAlgorithm=alg)
                self.kms.verify(KeyId=kid, Message=digest, MessageType="DIGEST", Signature=sig,
                                SigningAlgorithm=alg)

    def test_signature_made_elsewhere_verifies(self):
        """Verify accepts what any correct implementation of the algorithm makes: Coffer's
        private key never leaves, so the signature comes from Coffer's Sign, re-encoded by
        `cryptography` (ECDSA r, s re-serialised), and a forged one is refused."""
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
        kid = self.key("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
        sig = self.kms.sign(KeyId=kid, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        r, s = decode_dss_signature(sig)
        self.kms.verify(KeyId=kid, Message=b"m", Signature=encode_dss_signature(r, s),
                        SigningAlgorithm="ECDSA_SHA_256")
        # The other valid ECDSA signature (r, n - s) is a valid signature too.
        n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        self.kms.verify(KeyId=kid, Message=b"m", Signature=encode_dss_signature(r, n - s),
                        SigningAlgorithm="ECDSA_SHA_256")
        other = ec.generate_private_key(ec.SECP256R1()).sign(b"m", ec.ECDSA(hashes.SHA256()))
        self.assertEqual(error(self.kms.verify, KeyId=kid, Message=b"m", Signature=other,
                               SigningAlgorithm="ECDSA_SHA_256")[0], "KMSInvalidSignatureException")

    def test_sign_verify_errors(self):
        rsa_sign = self.key("RSA_2048", "SIGN_VERIFY")
        p256 = self.key("ECC_NIST_P256", "SIGN_VERIFY")
        rsa_enc = self.key("RSA_2048", "ENCRYPT_DECRYPT")
        sym = self.kms.create_key()["KeyMetadata"]
        sig = self.kms.sign(KeyId=p256["KeyId"], Message=b"abc", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        # Verify failure: no SignatureValid=false, an exception.
        self.assertEqual(error(self.kms.verify, KeyId=p256["KeyId"], Message=b"abd", Signature=sig,
                               SigningAlgorithm="ECDSA_SHA_256")[0], "KMSInvalidSignatureException")
        self.assertEqual(error(self.kms.verify, KeyId=p256["KeyId"], Message=b"abc", Signature=b"\x30\x00",
                               SigningAlgorithm="ECDSA_SHA_256")[0], "KMSInvalidSignatureException")
        # Wrong algorithm for the key spec.
        self.assertEqual(error(self.kms.sign, KeyId=p256["KeyId"], Message=b"abc", SigningAlgorithm="ECDSA_SHA_384"),
                         ("InvalidKeyUsageException", "Algorithm ECDSA_SHA_384 is incompatible with key spec ECC_NIST_P256."))
        self.assertEqual(error(self.kms.sign, KeyId=rsa_sign["KeyId"], Message=b"abc",
                               SigningAlgorithm="ECDSA_SHA_256"),
                         ("InvalidKeyUsageException", "Algorithm ECDSA_SHA_256 is incompatible with key spec RSA_2048."))
        self.assertEqual(error(self.kms.verify, KeyId=p256["KeyId"], Message=b"abc", Signature=sig,
                               SigningAlgorithm="RSASSA_PSS_SHA_256"),
                         ("InvalidKeyUsageException",
                          "Algorithm RSASSA_PSS_SHA_256 is incompatible with key spec ECC_NIST_P256."))
        # Wrong key usage, both ways.
        self.assertEqual(error(self.kms.sign, KeyId=rsa_enc["KeyId"], Message=b"abc",
                               SigningAlgorithm="RSASSA_PSS_SHA_256"),
                         ("InvalidKeyUsageException",
                          "%s key usage is ENCRYPT_DECRYPT which is not valid for Sign." % rsa_enc["Arn"]))
        self.assertEqual(error(self.kms.verify, KeyId=sym["KeyId"], Message=b"abc", Signature=sig,
                               SigningAlgorithm="ECDSA_SHA_256"),
                         ("InvalidKeyUsageException",
                          "%s key usage is ENCRYPT_DECRYPT which is not valid for Verify." % sym["Arn"]))
        self.assertEqual(error(self.kms.encrypt, KeyId=p256["KeyId"], Plaintext=b"abc"),
                         ("InvalidKeyUsageException",
                          "%s key usage is SIGN_VERIFY which is not valid for Encrypt." % p256["Arn"]))
        self.assertEqual(error(self.kms.generate_data_key, KeyId=rsa_sign["KeyId"], KeySpec="AES_256")[0],
                         "InvalidKeyUsageException")
        # Message too long, DIGEST of the wrong length, a message type these keys do not take.
        code, msg = error(self.kms.sign, KeyId=p256["KeyId"], Message=b"x" * 4097, SigningAlgorithm="ECDSA_SHA_256")
        self.assertEqual(code, "ValidationException")
        self.assertIn("4096", msg)
        self.kms.sign(KeyId=p256["KeyId"], Message=b"x" * 4096, SigningAlgorithm="ECDSA_SHA_256")
        for n in (31, 33, 48):
            self.assertEqual(error(self.kms.sign, KeyId=p256["KeyId"], Message=b"x" * n, MessageType="DIGEST",
                                   SigningAlgorithm="ECDSA_SHA_256"),
                             ("ValidationException", "Digest is invalid length for algorithm ECDSA_SHA_256."))
        self.assertEqual(error(self.kms.sign, KeyId=rsa_sign["KeyId"], Message=b"x" * 32, MessageType="DIGEST",
                               SigningAlgorithm="RSASSA_PSS_SHA_512"),
                         ("ValidationException", "Digest is invalid length for algorithm RSASSA_PSS_SHA_512."))
        self.assertEqual(error(self.kms.sign, KeyId=p256["KeyId"], Message=b"x" * 32, MessageType="EXTERNAL_MU",
                               SigningAlgorithm="ECDSA_SHA_256")[0], "ValidationException")
        # SigningAlgorithm is required.
        self.assertEqual(error(self.kms.sign, KeyId=p256["KeyId"], Message=b"abc",
                               SigningAlgorithm="")[0], "ValidationException")

    def test_key_states(self):
        kid = self.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        arn = self.kms.describe_key(KeyId=kid)["KeyMetadata"]["Arn"]
        sig = self.kms.sign(KeyId=kid, Message=b"abc", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        self.kms.disable_key(KeyId=kid)
        self.assertEqual(error(self.kms.sign, KeyId=kid, Message=b"abc", SigningAlgorithm="ECDSA_SHA_256"),
                         ("DisabledException", "%s is disabled." % arn))
        self.assertEqual(error(self.kms.verify, KeyId=kid, Message=b"abc", Signature=sig,
                               SigningAlgorithm="ECDSA_SHA_256"), ("DisabledException", "%s is disabled." % arn))
        # A disabled key still shows its public key.
        self.kms.get_public_key(KeyId=kid)
        self.kms.enable_key(KeyId=kid)
        self.kms.verify(KeyId=kid, Message=b"abc", Signature=sig, SigningAlgorithm="ECDSA_SHA_256")
        self.kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
        self.assertEqual(error(self.kms.sign, KeyId=kid, Message=b"abc", SigningAlgorithm="ECDSA_SHA_256"),
                         ("KMSInvalidStateException", "%s is pending deletion." % arn))
        self.assertEqual(error(self.kms.get_public_key, KeyId=kid),
                         ("KMSInvalidStateException", "%s is pending deletion." % arn))

    # ---- GetPublicKey ----------------------------------------------------------------------

    def test_get_public_key(self):
        md = self.key("RSA_2048", "ENCRYPT_DECRYPT")
        out = self.kms.get_public_key(KeyId=md["KeyId"])
        self.assertEqual(out["KeyId"], md["Arn"])
        self.assertEqual((out["KeySpec"], out["CustomerMasterKeySpec"], out["KeyUsage"]),
                         ("RSA_2048", "RSA_2048", "ENCRYPT_DECRYPT"))
        self.assertEqual(out["EncryptionAlgorithms"], ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
        self.assertNotIn("SigningAlgorithms", out)
        key = serialization.load_der_public_key(out["PublicKey"])
        self.assertIsInstance(key, rsa.RSAPublicKey)
        self.assertEqual(key.key_size, 2048)
        self.assertEqual(key.public_numbers().e, 65537)
        out = self.kms.get_public_key(KeyId=self.key("ECC_SECG_P256K1", "SIGN_VERIFY")["KeyId"])
        self.assertEqual(out["SigningAlgorithms"], ["ECDSA_SHA_256"])
        self.assertEqual(serialization.load_der_public_key(out["PublicKey"]).curve.name, "secp256k1")
        sym = self.kms.create_key()["KeyMetadata"]
        self.assertEqual(error(self.kms.get_public_key, KeyId=sym["KeyId"])[0], "UnsupportedOperationException")
        # Through an alias, as every key-taking operation.
        self.kms.create_alias(AliasName="alias/asym-pub", TargetKeyId=md["KeyId"])
        self.assertEqual(self.kms.get_public_key(KeyId="alias/asym-pub")["KeyId"], md["Arn"])

    # ---- RSA Encrypt / Decrypt / ReEncrypt -------------------------------------------------

    def test_rsa_encrypt_decrypt(self):
        for spec, limits in (("RSA_2048", {"RSAES_OAEP_SHA_1": 214, "RSAES_OAEP_SHA_256": 190}),
                             ("RSA_3072", {"RSAES_OAEP_SHA_1": 342, "RSAES_OAEP_SHA_256": 318})):
            md = self.key(spec, "ENCRYPT_DECRYPT")
            kid = md["KeyId"]
            for alg, limit in limits.items():
                with self.subTest(spec=spec, alg=alg):
                    pt = os.urandom(limit)
                    out = self.kms.encrypt(KeyId=kid, Plaintext=pt, EncryptionAlgorithm=alg)
                    self.assertEqual(out["EncryptionAlgorithm"], alg)
                    self.assertEqual(out["KeyId"], md["Arn"])
                    ct = out["CiphertextBlob"]
                    self.assertEqual(len(ct), int(spec[4:]) // 8)  # raw OAEP output
                    dec = self.kms.decrypt(KeyId=kid, CiphertextBlob=ct, EncryptionAlgorithm=alg)
                    self.assertEqual(dec["Plaintext"], pt)
                    self.assertEqual(dec["EncryptionAlgorithm"], alg)
                    self.assertEqual(dec["KeyId"], md["Arn"])
                    self.assertNotIn("KeyMaterialId", dec)
                    self.assertEqual(error(self.kms.encrypt, KeyId=kid, Plaintext=pt + b"x", EncryptionAlgorithm=alg),
                                     ("ValidationException",
                                      "Algorithm %s and key spec %s cannot encrypt data larger than %d bytes."
                                      % (alg, spec, limit)))
                    # Made by `cryptography` with the public key alone.
                    h = hashes.SHA1() if alg.endswith("SHA_1") else hashes.SHA256()
                    ext = self.public_key(kid).encrypt(b"from outside", padding.OAEP(
                        mgf=padding.MGF1(h), algorithm=h, label=None))
                    self.assertEqual(self.kms.decrypt(KeyId=kid, CiphertextBlob=ext,
                                                      EncryptionAlgorithm=alg)["Plaintext"], b"from outside")
        kid = self.key("RSA_2048", "ENCRYPT_DECRYPT")["KeyId"]
        ct = self.kms.encrypt(KeyId=kid, Plaintext=b"abc", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
        # The algorithm is required for RSA keys and must be the one used.
        self.assertEqual(error(self.kms.encrypt, KeyId=kid, Plaintext=b"abc"),
                         ("InvalidKeyUsageException", "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048."))
        self.assertEqual(error(self.kms.decrypt, KeyId=kid, CiphertextBlob=ct)[0], "InvalidKeyUsageException")
        self.assertEqual(error(self.kms.decrypt, KeyId=kid, CiphertextBlob=ct,
                               EncryptionAlgorithm="RSAES_OAEP_SHA_1")[0], "InvalidCiphertextException")
        # Without KeyId the ciphertext names no key.
        self.assertEqual(error(self.kms.decrypt, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")[0],
                         "InvalidCiphertextException")
        # Another RSA key does not open it.
        other = self.kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
        self.assertEqual(error(self.kms.decrypt, KeyId=other, CiphertextBlob=ct,
                               EncryptionAlgorithm="RSAES_OAEP_SHA_256")[0], "InvalidCiphertextException")
        # Symmetric keys refuse the RSA algorithms; RSA keys take no encryption context.
        sym = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.assertEqual(error(self.kms.encrypt, KeyId=sym, Plaintext=b"abc", EncryptionAlgorithm="RSAES_OAEP_SHA_1"),
                         ("InvalidKeyUsageException",
                          "Algorithm RSAES_OAEP_SHA_1 is incompatible with key spec SYMMETRIC_DEFAULT."))
        self.assertEqual(error(self.kms.encrypt, KeyId=kid, Plaintext=b"abc", EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                               EncryptionContext={"a": "b"})[0], "ValidationException")
        # Disabled.
        self.kms.disable_key(KeyId=other)
        self.assertEqual(error(self.kms.encrypt, KeyId=other, Plaintext=b"abc",
                               EncryptionAlgorithm="RSAES_OAEP_SHA_1")[0], "DisabledException")

    def test_reencrypt_across_key_types(self):
        rsa_key = self.key("RSA_2048", "ENCRYPT_DECRYPT")
        sym = self.kms.create_key()["KeyMetadata"]
        blob = self.kms.encrypt(KeyId=sym["KeyId"], Plaintext=b"secret", EncryptionContext={"k": "v"})["CiphertextBlob"]
        # Symmetric -> RSA.
        out = self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"k": "v"},
                                  DestinationKeyId=rsa_key["KeyId"],
                                  DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
        self.assertEqual((out["SourceKeyId"], out["KeyId"]), (sym["Arn"], rsa_key["Arn"]))
        self.assertEqual((out["SourceEncryptionAlgorithm"], out["DestinationEncryptionAlgorithm"]),
                         ("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256"))
        rsa_ct = out["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(KeyId=rsa_key["KeyId"], CiphertextBlob=rsa_ct,
                                          EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"], b"secret")
        # RSA -> symmetric (source key and algorithm required).
        out = self.kms.re_encrypt(CiphertextBlob=rsa_ct, SourceKeyId=rsa_key["KeyId"],
                                  SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256", DestinationKeyId=sym["KeyId"])
        self.assertEqual(out["SourceEncryptionAlgorithm"], "RSAES_OAEP_SHA_256")
        self.assertEqual(out["DestinationEncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"], b"secret")
        self.assertEqual(error(self.kms.re_encrypt, CiphertextBlob=rsa_ct, DestinationKeyId=sym["KeyId"])[0],
                         "InvalidCiphertextException")
        # A signing key is no destination.
        self.assertEqual(error(self.kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext={"k": "v"},
                               DestinationKeyId=self.key("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"])[0],
                         "InvalidKeyUsageException")

    # ---- GenerateDataKeyPair ---------------------------------------------------------------

    def test_generate_data_key_pair(self):
        sym = self.kms.create_key()["KeyMetadata"]
        ctx = {"purpose": "pair"}
        for spec in ("RSA_2048", "RSA_3072", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1"):
            with self.subTest(spec=spec):
                out = self.kms.generate_data_key_pair(KeyId=sym["KeyId"], KeyPairSpec=spec, EncryptionContext=ctx)
                self.assertEqual((out["KeyId"], out["KeyPairSpec"]), (sym["Arn"], spec))
                priv = serialization.load_der_private_key(out["PrivateKeyPlaintext"], password=None)
                pub = serialization.load_der_public_key(out["PublicKey"])
                # A whole pair: what the private key signs, the public key verifies.
                if spec.startswith("RSA"):
                    self.assertEqual(priv.key_size, int(spec[4:]))
                    s = priv.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
                    pub.verify(s, b"m", padding.PKCS1v15(), hashes.SHA256())
                else:
                    s = priv.sign(b"m", ec.ECDSA(hashes.SHA256()))
                    pub.verify(s, b"m", ec.ECDSA(hashes.SHA256()))
                self.assertEqual(priv.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), out["PublicKey"])
                # The private key, encrypted under the symmetric key with the context.
                dec = self.kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"], EncryptionContext=ctx)
                self.assertEqual(dec["Plaintext"], out["PrivateKeyPlaintext"])
                self.assertEqual(error(self.kms.decrypt, CiphertextBlob=out["PrivateKeyCiphertextBlob"])[0],
                                 "InvalidCiphertextException")
        out = self.kms.generate_data_key_pair_without_plaintext(KeyId=sym["KeyId"], KeyPairSpec="ECC_NIST_P256")
        self.assertNotIn("PrivateKeyPlaintext", out)
        priv = serialization.load_der_private_key(
            self.kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"])["Plaintext"], password=None)
        self.assertEqual(priv.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), out["PublicKey"])
        # Asymmetric wrapping keys and unsupported pairs are refused.
        self.assertEqual(error(self.kms.generate_data_key_pair, KeyId=self.key("RSA_2048", "ENCRYPT_DECRYPT")["KeyId"],
                               KeyPairSpec="ECC_NIST_P256")[0], "InvalidKeyUsageException")
        self.assertEqual(error(self.kms.generate_data_key_pair, KeyId=sym["KeyId"], KeyPairSpec="SM2")[0],
                         "UnsupportedOperationException")
        self.assertEqual(error(self.kms.generate_data_key_pair, KeyId=sym["KeyId"], KeyPairSpec="RSA_1024")[0],
                         "ValidationException")
        self.kms.disable_key(KeyId=sym["KeyId"])
        self.assertEqual(error(self.kms.generate_data_key_pair_without_plaintext, KeyId=sym["KeyId"],
                               KeyPairSpec="ECC_NIST_P256")[0], "DisabledException")

    # ---- CLI and audit ---------------------------------------------------------------------

    def test_cli(self):
        rc, out, err = self.server.aws("kms", "create-key", "--key-spec", "ECC_NIST_P384", "--key-usage",
                                       "SIGN_VERIFY", check=True)
        kid = out["KeyMetadata"]["KeyId"]
        msg = self.write("cli-msg", b"signed by the CLI")
        rc, out, err = self.server.aws("kms", "sign", "--key-id", kid, "--message", "fileb://" + msg,
                                       "--signing-algorithm", "ECDSA_SHA_384", check=True)
        sig = base64.b64decode(out["Signature"])
        rc, out, err = self.server.aws("kms", "verify", "--key-id", kid, "--message", "fileb://" + msg,
                                       "--signature", "fileb://" + self.write("cli-sig", sig),
                                       "--signing-algorithm", "ECDSA_SHA_384", check=True)
        self.assertTrue(out["SignatureValid"])
        rc, out, err = self.server.aws("kms", "verify", "--key-id", kid, "--message", "fileb://" + self.write(
            "cli-msg2", b"other"), "--signature", "fileb://" + self.write("cli-sig", sig),
            "--signing-algorithm", "ECDSA_SHA_384")
        self.assertNotEqual(rc, 0)
        self.assertIn("KMSInvalidSignatureException", err)
        rc, out, err = self.server.aws("kms", "get-public-key", "--key-id", kid, check=True)
        pub = base64.b64decode(out["PublicKey"])
        self.assertEqual(out["SigningAlgorithms"], ["ECDSA_SHA_384"])
        self.assertTrue(self.openssl_verify("ECC_NIST_P384", "ECDSA_SHA_384", pub, b"signed by the CLI", sig))
        rc, out, err = self.server.aws("kms", "create-key", "--key-spec", "RSA_2048", "--key-usage",
                                       "ENCRYPT_DECRYPT", check=True)
        rk = out["KeyMetadata"]["KeyId"]
        rc, out, err = self.server.aws("kms", "encrypt", "--key-id", rk, "--plaintext", "fileb://" + msg,
                                       "--encryption-algorithm", "RSAES_OAEP_SHA_1", check=True)
        ct = self.write("cli-ct", base64.b64decode(out["CiphertextBlob"]))
        rc, out, err = self.server.aws("kms", "decrypt", "--key-id", rk, "--ciphertext-blob", "fileb://" + ct,
                                       "--encryption-algorithm", "RSAES_OAEP_SHA_1", check=True)
        self.assertEqual(base64.b64decode(out["Plaintext"]), b"signed by the CLI")
        sym = self.kms.create_key()["KeyMetadata"]["KeyId"]
        rc, out, err = self.server.aws("kms", "generate-data-key-pair-without-plaintext", "--key-id", sym,
                                       "--key-pair-spec", "RSA_2048", check=True)
        self.assertNotIn("PrivateKeyPlaintext", out)
        self.assertEqual(out["KeyPairSpec"], "RSA_2048")

    def test_audit_never_holds_messages(self):
        kid = self.key("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
        secret = b"audit-must-not-see-this-message"
        sig = self.kms.sign(KeyId=kid, Message=secret, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        self.kms.verify(KeyId=kid, Message=secret, Signature=sig, SigningAlgorithm="ECDSA_SHA_256")
        sym = self.kms.create_key()["KeyMetadata"]["KeyId"]
        pair = self.kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256")
        time.sleep(0.2)
        events = trail_events(self.server.data_dir)
        raw = json.dumps(events)
        for needle in (base64.b64encode(secret).decode(), base64.b64encode(sig).decode(),
                       base64.b64encode(pair["PrivateKeyPlaintext"]).decode(), secret.decode()):
            self.assertNotIn(needle, raw)
        sign = [e for e in events if e.get("eventName") == "Sign"][-1]
        self.assertEqual(sign["requestParameters"],
                         {"keyId": kid, "signingAlgorithm": "ECDSA_SHA_256"})
        self.assertEqual(sign["resources"][0]["type"], "AWS::KMS::Key")
        self.assertEqual([e for e in events if e.get("eventName") == "GenerateDataKeyPair"][-1]["requestParameters"],
                         {"keyId": sym, "keyPairSpec": "ECC_NIST_P256"})


class AsymmetricQuotaTest(unittest.TestCase):
    """RSA and ECC requests count in buckets of their own, apart from each other and from the
    symmetric one, each at its configured rate."""

    @classmethod
    def setUpClass(cls):
        cls.server = Cofferd(extra_args=("--quota-crypto-rps", "1000", "--quota-rsa-rps", "1",
                                         "--quota-ecc-rps", "2")).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        cls.server.cleanup()
        assert rc == 0, rc

    def count_ok(self, fn, n, threads=4, **kw):
        """n calls from `threads` clients at once; (ok, throttled). Checks made here."""
        import threading
        outcomes = []
        lock = threading.Lock()

        def worker():
            for _ in range(n // threads):
                try:
                    fn(**kw)
                    r = "ok"
                except ClientError as e:
                    r = (e.response["Error"]["Code"], e.response["Error"]["Message"])
                with lock:
                    outcomes.append(r)

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        throttled = [o for o in outcomes if o != "ok"]
        for code, msg in throttled:
            self.assertEqual(code, "ThrottlingException")
            self.assertIn("rate", msg)
        return outcomes.count("ok"), len(throttled)

    def test_buckets(self):
        kms = self.server.client()
        # CreateKey has its own (5/s) control-plane bucket.
        rk = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        ek = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        re = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
        sk = kms.create_key()["KeyMetadata"]["KeyId"]
        time.sleep(1.5)
        ok, throttled = self.count_ok(kms.sign, 40, KeyId=rk, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
        self.assertGreaterEqual(ok, 1)
        self.assertGreater(throttled, ok)
        # RSA encryption shares the RSA bucket: Sign and Encrypt together get one bucket's tokens
        # (1 + elapsed seconds at 1/s), not two buckets' worth.
        import threading
        time.sleep(2.5)
        results = []
        t0 = time.monotonic()
        ts = [threading.Thread(target=lambda: results.append(self.count_ok(kms.sign, 20, threads=2, KeyId=rk,
                                                                            Message=b"m",
                                                                            SigningAlgorithm="RSASSA_PSS_SHA_256"))),
              threading.Thread(target=lambda: results.append(self.count_ok(
                  kms.encrypt, 20, threads=2, KeyId=re, Plaintext=b"m", EncryptionAlgorithm="RSAES_OAEP_SHA_1")))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
        self.assertEqual(len(results), 2)
        self.assertGreaterEqual(min(r[1] for r in results), 1)
        self.assertLessEqual(sum(r[0] for r in results), 1 + elapsed + 0.5)
        # ECC and symmetric requests are unaffected.
        kms.sign(KeyId=ek, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
        ok, throttled = self.count_ok(kms.encrypt, 20, KeyId=sk, Plaintext=b"m")
        self.assertEqual((ok, throttled), (20, 0))
        ok, throttled = self.count_ok(kms.sign, 40, KeyId=ek, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
        self.assertGreaterEqual(ok, 1)
        self.assertGreater(throttled, ok)
        time.sleep(1.2)
        kms.sign(KeyId=rk, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")


if __name__ == "__main__":
    unittest.main()
