"""The parts of the KMS API a self-hosted server answers with AWS's own refusals: custom key
stores with no HSM mapped, multi-Region operations on single-Region keys, key agreement and
key usage tracking. boto3 1.26 predates DeriveSharedSecret and GetKeyLastUsage: those are sent
as SigV4-signed requests built with botocore."""
import json
import ssl
import unittest
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase, trail_events


# Every operation of the 2026 KMS API model (../shared/api/kms.md §1).
ALL_OPERATIONS = """
CreateKey DescribeKey ListKeys EnableKey DisableKey ScheduleKeyDeletion CancelKeyDeletion UpdateKeyDescription
GetKeyLastUsage Encrypt Decrypt ReEncrypt GenerateDataKey GenerateDataKeyWithoutPlaintext GenerateDataKeyPair
GenerateDataKeyPairWithoutPlaintext GenerateRandom Sign Verify GetPublicKey GenerateMac VerifyMac
DeriveSharedSecret CreateAlias UpdateAlias DeleteAlias ListAliases CreateGrant ListGrants ListRetirableGrants
RetireGrant RevokeGrant GetKeyPolicy PutKeyPolicy ListKeyPolicies EnableKeyRotation DisableKeyRotation
GetKeyRotationStatus RotateKeyOnDemand ListKeyRotations ReplicateKey UpdatePrimaryRegion GetParametersForImport
ImportKeyMaterial DeleteImportedKeyMaterial TagResource UntagResource ListResourceTags CreateCustomKeyStore
ConnectCustomKeyStore DisconnectCustomKeyStore DeleteCustomKeyStore DescribeCustomKeyStores UpdateCustomKeyStore
""".split()


class KmsSurfaceTest(ServerTestCase):
    def setUp(self):
        self.kms = self.server.client("kms")

    def code(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def raw(self, op, body):
        """(HTTP status, parsed body) of TrentService.<op> signed as the operator."""
        akid, secret = self.server.credentials()
        req = AWSRequest(method="POST", url=self.server.endpoint + "/", data=json.dumps(body).encode(),
                         headers={"Content-Type": "application/x-amz-json-1.1",
                                  "X-Amz-Target": "TrentService." + op})
        SigV4Auth(Credentials(akid, secret), "kms", REGION).add_auth(req)
        ctx = ssl.create_default_context(cafile=self.server.ca)
        r = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers.items()), method="POST")
        try:
            with urllib.request.urlopen(r, context=ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def test_every_operation_is_served(self):
        """No operation of the model is unknown here: an empty request gets the operation's own
        answer (a validation error for missing members, or a result), never UnknownOperationException
        or a server error."""
        self.assertEqual(len(ALL_OPERATIONS), 54)
        for op in ALL_OPERATIONS:
            status, body = self.raw(op, {})
            self.assertLess(status, 500, (op, body))
            self.assertNotEqual(body.get("__type"), "UnknownOperationException", op)
        status, body = self.raw("NoSuchOperation", {})
        self.assertEqual((status, body.get("__type")), (400, "UnknownOperationException"))

    def test_custom_key_stores(self):
        self.assertEqual(self.kms.describe_custom_key_stores()["CustomKeyStores"], [])
        for fn, kw in ((self.kms.describe_custom_key_stores, {"CustomKeyStoreId": "cks-1234567890abcdef0"}),
                       (self.kms.describe_custom_key_stores, {"CustomKeyStoreName": "hsm"}),
                       (self.kms.connect_custom_key_store, {"CustomKeyStoreId": "cks-1234567890abcdef0"}),
                       (self.kms.disconnect_custom_key_store, {"CustomKeyStoreId": "cks-1234567890abcdef0"}),
                       (self.kms.delete_custom_key_store, {"CustomKeyStoreId": "cks-1234567890abcdef0"}),
                       (self.kms.update_custom_key_store, {"CustomKeyStoreId": "cks-1234567890abcdef0",
                                                           "NewCustomKeyStoreName": "x"})):
            self.assertEqual(self.code(fn, **kw)[0], "CustomKeyStoreNotFoundException", fn)
        code, _ = self.code(self.kms.create_custom_key_store, CustomKeyStoreName="hsm",
                            CloudHsmClusterId="cluster-1234567890a", TrustAnchorCertificate="cert",
                            KeyStorePassword="very-secret-password")
        self.assertEqual(code, "CloudHsmClusterNotFoundException")
        code, msg = self.code(self.kms.create_custom_key_store, CustomKeyStoreName="xks",
                              CustomKeyStoreType="EXTERNAL_KEY_STORE")
        self.assertEqual(code, "UnsupportedOperationException")
        self.assertIn("EXTERNAL_KEY_STORE", msg)
        # The key store password never reaches the trail.
        trail = json.dumps(trail_events(self.server.data_dir))
        self.assertIn("CreateCustomKeyStore", trail)
        self.assertNotIn("very-secret-password", trail)

    def test_multi_region_ops_on_a_single_region_key(self):
        meta = self.kms.create_key()["KeyMetadata"]
        code, msg = self.code(self.kms.replicate_key, KeyId=meta["KeyId"], ReplicaRegion="eu-west-1")
        self.assertEqual(code, "UnsupportedOperationException")
        self.assertEqual(msg, "%s is not a multi-region primary key." % meta["Arn"])
        code, _ = self.code(self.kms.update_primary_region, KeyId=meta["KeyId"], PrimaryRegion="eu-west-1")
        self.assertEqual(code, "UnsupportedOperationException")
        code, _ = self.code(self.kms.replicate_key, KeyId="00000000-0000-4000-8000-000000000000",
                            ReplicaRegion="eu-west-1")
        self.assertEqual(code, "NotFoundException")

    def test_newer_operations(self):
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        status, body = self.raw("DeriveSharedSecret", {"KeyId": key, "KeyAgreementAlgorithm": "ECDH",
                                                       "PublicKey": "AAAA"})
        self.assertEqual((status, body.get("__type")), (400, "InvalidKeyUsageException"))
        self.assertIn("ENCRYPT_DECRYPT", body["message"])
        status, body = self.raw("DeriveSharedSecret", {"KeyId": key, "PublicKey": "AAAA"})
        self.assertEqual((status, body.get("__type")), (400, "ValidationException"))
        status, body = self.raw("GetKeyLastUsage", {"KeyId": key})
        self.assertEqual((status, body["KeyId"], body["KeyLastUsage"]), (200, key, {}))
        status, body = self.raw("GetKeyLastUsage", {"KeyId": "alias/missing"})
        self.assertEqual((status, body.get("__type")), (400, "NotFoundException"))


if __name__ == "__main__":
    unittest.main()
