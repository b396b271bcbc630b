"""The largest records the services keep: a SecureString parameter with 100 versions of 8 KB (the
Advanced tier's limit, each sealed under its own data key) and a secret with many versions of
64 KB. Every version is one more entry in one record, so these reach sizes no other test does;
all versions stay readable, and the 101st parameter version drops the oldest as AWS does.
"""
import unittest

from harness import ServerTestCase


class LargeRecordsTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0")

    def test_parameter_with_100_versions_of_8_kb(self):
        ssm = self.server.client("ssm")
        name = "/large/secure"

        def value(i):
            return ("%03d" % i) + "x" * 8189

        for i in range(1, 102):
            ssm.put_parameter(Name=name, Value=value(i), Type="SecureString", Tier="Advanced", Overwrite=True,
                              Description="version %d of the large parameter" % i)
        p = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        self.assertEqual((p["Version"], p["Value"]), (101, value(101)))
        history = []
        token = None
        while True:
            page = ssm.get_parameter_history(Name=name, WithDecryption=True, MaxResults=50,
                                             **({"NextToken": token} if token else {}))
            history += page["Parameters"]
            token = page.get("NextToken")
            if not token:
                break
        # 100 kept: version 1 was dropped by the 101st
        self.assertEqual([h["Version"] for h in history], list(range(2, 102)))
        self.assertTrue(all(h["Value"] == value(h["Version"]) for h in history))
        self.assertEqual(ssm.get_parameter(Name=name + ":2", WithDecryption=True)["Parameter"]["Value"], value(2))

    def test_secret_with_versions_of_64_kb(self):
        sm = self.server.client("secretsmanager")
        sm.create_secret(Name="large/secret", SecretString="0" * 65536)
        ids = []
        for i in range(1, 25):
            ids.append(sm.put_secret_value(SecretId="large/secret", SecretString=str(i % 10) * 65536)["VersionId"])
        self.assertEqual(sm.get_secret_value(SecretId="large/secret")["SecretString"], "4" * 65536)
        # unlabeled versions younger than a day are kept, and every one still opens
        self.assertEqual(sm.get_secret_value(SecretId="large/secret", VersionId=ids[0])["SecretString"], "1" * 65536)
        versions = sm.list_secret_version_ids(SecretId="large/secret", IncludeDeprecated=True)["Versions"]
        self.assertEqual(len(versions), 25)


if __name__ == "__main__":
    unittest.main()
