"""Resource quotas and input limits: a tenant must not be able to exhaust the server. Each
quota is configured small here; every refusal is checked for the AWS error type and for
leaving no state behind."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from botocore.config import Config
from botocore.exceptions import ClientError

from harness import COFFERD, Cofferd, ServerTestCase

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
                except Exception as e:  # recorded, so the checks below see it
                    r = repr(e)
                with lock:
                    results.append(r)

        ts = [threading.Thread(target=worker, args=(c,)) for c in clients]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(results), 12)
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


class LimitConfigTest(unittest.TestCase):
    """Every quota is a flag, a COFFER_* variable and a config-file key, in that precedence."""

    def test_help_lists_quotas(self):
        r = subprocess.run([COFFERD, "--help"], capture_output=True, timeout=30)
        text = (r.stdout + r.stderr).decode()
        for flag, env in (("max-keys", "COFFER_MAX_KEYS"), ("max-aliases-per-key", "COFFER_MAX_ALIASES_PER_KEY"),
                          ("max-tags-per-key", "COFFER_MAX_TAGS_PER_KEY"),
                          ("max-key-policy-bytes", "COFFER_MAX_KEY_POLICY_BYTES"), ("max-users", "COFFER_MAX_USERS"),
                          ("max-roles", "COFFER_MAX_ROLES"), ("max-policies", "COFFER_MAX_POLICIES"),
                          ("max-attached-policies", "COFFER_MAX_ATTACHED_POLICIES"),
                          ("max-user-inline-policy-chars", "COFFER_MAX_USER_INLINE_POLICY_CHARS"),
                          ("max-role-inline-policy-chars", "COFFER_MAX_ROLE_INLINE_POLICY_CHARS"),
                          ("max-managed-policy-chars", "COFFER_MAX_MANAGED_POLICY_CHARS"),
                          ("max-trust-policy-chars", "COFFER_MAX_TRUST_POLICY_CHARS")):
            self.assertIn("--" + flag, text)
            self.assertIn(env, text)
        r = subprocess.run([COFFERD, "--max-keys", "0"], capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)

    def test_file_then_environment(self):
        d = tempfile.mkdtemp(prefix="coffer-it-")
        server = Cofferd(data_dir=d, extra_args=("--quota-crypto-rps", "0"))
        try:
            with open(os.path.join(d, "cofferd.conf"), "w") as f:
                f.write("max-keys = 1\n")
            server.start()
            kms = server.client()
            kms.create_key()
            self.assertEqual(error_code(kms.create_key), "LimitExceededException")
            server.stop()
            os.environ["COFFER_MAX_KEYS"] = "2"
            try:
                server.start()
            finally:
                del os.environ["COFFER_MAX_KEYS"]
            kms = server.client()
            kms.create_key()
            self.assertEqual(error_code(kms.create_key), "LimitExceededException")
            self.assertEqual(len(key_ids(kms)), 2)
        finally:
            server.cleanup()
            shutil.rmtree(d, ignore_errors=True)


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


def iam_error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("%s succeeded" % fn.__name__)


def doc(actions, pad=0):
    """An identity policy; `pad` extra characters in the Sid, white space not counted by IAM."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "S" + "x" * pad, "Effect": "Allow", "Action": actions, "Resource": "*"}]}, indent=4)


def trust(pad=0):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "T" + "x" * pad, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
         "Action": "sts:AssumeRole"}]}, indent=4)


def chars(text):
    return sum(1 for c in text if not c.isspace())


class IamLimitsTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--max-users", "2", "--max-roles", "2", "--max-policies", "2",
                  "--max-attached-policies", "2", "--max-user-inline-policy-chars", "300",
                  "--max-role-inline-policy-chars", "400", "--max-managed-policy-chars", "250",
                  "--max-trust-policy-chars", "250")

    def setUp(self):
        self.iam = self.server.client("iam")
        self.raw = self.server.client("iam", config=Config(parameter_validation=False,
                                                           retries={"max_attempts": 1}))

    def users(self):
        return sorted(u["UserName"] for u in self.iam.list_users()["Users"])

    def test_users_per_account(self):
        self.iam.create_user(UserName="q-u1")
        self.iam.create_user(UserName="q-u2")
        self.assertEqual(iam_error(self.iam.create_user, UserName="q-u3"), "LimitExceeded")
        self.assertEqual(self.users(), ["q-u1", "q-u2"])
        rc, _, err = self.server.aws("iam", "create-user", "--user-name", "q-u4")
        self.assertNotEqual(rc, 0)
        self.assertIn("LimitExceeded", err)
        # Deleting one frees its place.
        self.iam.delete_user(UserName="q-u1")
        self.iam.create_user(UserName="q-u3")
        self.assertEqual(self.users(), ["q-u2", "q-u3"])
        self.iam.delete_user(UserName="q-u2")
        self.iam.delete_user(UserName="q-u3")

    def test_roles_and_trust_policy(self):
        self.assertLessEqual(chars(trust(100)), 250)
        self.assertGreater(chars(trust(200)), 250)
        self.assertEqual(iam_error(self.iam.create_role, RoleName="q-big", AssumeRolePolicyDocument=trust(200)),
                         "LimitExceeded")
        self.iam.create_role(RoleName="q-r1", AssumeRolePolicyDocument=trust(100))
        self.iam.create_role(RoleName="q-r2", AssumeRolePolicyDocument=trust())
        self.assertEqual(iam_error(self.iam.create_role, RoleName="q-r3", AssumeRolePolicyDocument=trust()),
                         "LimitExceeded")
        self.assertEqual(sorted(r["RoleName"] for r in self.iam.list_roles()["Roles"]), ["q-r1", "q-r2"])
        # Inline policies of a role: the quota is on all of them together.
        self.iam.put_role_policy(RoleName="q-r1", PolicyName="p1", PolicyDocument=doc("kms:*", 100))
        self.assertLessEqual(chars(doc("kms:*", 100)) * 2, 400 + 200)
        self.assertEqual(iam_error(self.iam.put_role_policy, RoleName="q-r1", PolicyName="p2",
                                   PolicyDocument=doc("kms:*", 200)), "LimitExceeded")
        self.assertEqual(self.iam.list_role_policies(RoleName="q-r1")["PolicyNames"], ["p1"])

    def test_user_inline_policies(self):
        self.iam.create_user(UserName="q-inline")
        try:
            one = doc("kms:Encrypt", 100)
            self.assertLess(chars(one), 300)
            self.assertGreater(chars(one) * 2, 300)
            self.iam.put_user_policy(UserName="q-inline", PolicyName="a", PolicyDocument=one)
            self.assertEqual(iam_error(self.iam.put_user_policy, UserName="q-inline", PolicyName="b",
                                       PolicyDocument=one), "LimitExceeded")
            self.assertEqual(self.iam.list_user_policies(UserName="q-inline")["PolicyNames"], ["a"])
            # Replacing the one policy with a smaller one is fine; white space does not count.
            self.iam.put_user_policy(UserName="q-inline", PolicyName="a",
                                     PolicyDocument=doc("kms:Decrypt") + " " * 1000)
            # Names: policy name and user name lengths, bad characters.
            self.assertEqual(iam_error(self.raw.put_user_policy, UserName="q-inline", PolicyName="p" * 129,
                                       PolicyDocument=doc("kms:*")), "ValidationError")
            # Existing-user names may be up to 128 characters (IAM's model), new ones up to 64.
            self.assertEqual(iam_error(self.raw.get_user, UserName="u" * 129), "ValidationError")
            self.assertEqual(iam_error(self.raw.create_user, UserName="u" * 65), "ValidationError")
            self.assertEqual(iam_error(self.raw.create_user, UserName="bad/name"), "ValidationError")
            self.assertEqual(iam_error(self.raw.create_user, UserName="ok", Path="/" + "p" * 512 + "/"),
                             "ValidationError")
            self.assertEqual(iam_error(self.raw.put_user_policy, UserName="q-inline", PolicyName="c",
                                       PolicyDocument="not json"), "MalformedPolicyDocument")
        finally:
            for p in self.iam.list_user_policies(UserName="q-inline")["PolicyNames"]:
                self.iam.delete_user_policy(UserName="q-inline", PolicyName=p)
            self.iam.delete_user(UserName="q-inline")

    def test_managed_policies(self):
        self.assertEqual(iam_error(self.iam.create_policy, PolicyName="q-big", PolicyDocument=doc("kms:*", 250)),
                         "LimitExceeded")
        a = self.iam.create_policy(PolicyName="q-m1", PolicyDocument=doc("kms:*"))["Policy"]["Arn"]
        b = self.iam.create_policy(PolicyName="q-m2", PolicyDocument=doc("kms:*"))["Policy"]["Arn"]
        self.assertEqual(iam_error(self.iam.create_policy, PolicyName="q-m3", PolicyDocument=doc("kms:*")),
                         "LimitExceeded")
        names = sorted(p["PolicyName"] for p in self.iam.list_policies(Scope="Local")["Policies"])
        self.assertEqual(names, ["q-m1", "q-m2"])
        self.iam.delete_policy(PolicyArn=b)
        b = self.iam.create_policy(PolicyName="q-m3", PolicyDocument=doc("kms:*"))["Policy"]["Arn"]
        # Attached managed policies per user.
        self.iam.create_user(UserName="q-att")
        try:
            self.iam.attach_user_policy(UserName="q-att", PolicyArn=a)
            self.iam.attach_user_policy(UserName="q-att", PolicyArn=b)
            self.iam.detach_user_policy(UserName="q-att", PolicyArn=b)
            self.iam.attach_user_policy(UserName="q-att", PolicyArn=b)
            self.assertEqual(len(self.iam.list_attached_user_policies(UserName="q-att")["AttachedPolicies"]), 2)
        finally:
            for p in (a, b):
                self.iam.detach_user_policy(UserName="q-att", PolicyArn=p)
            self.iam.delete_user(UserName="q-att")
            self.iam.delete_policy(PolicyArn=a)
            self.iam.delete_policy(PolicyArn=b)


class IamAttachLimitTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--max-attached-policies", "2")

    def test_attached_per_user_and_role(self):
        iam = self.server.client("iam")
        arns = [iam.create_policy(PolicyName="q-a%d" % i, PolicyDocument=doc("kms:*"))["Policy"]["Arn"]
                for i in range(3)]
        iam.create_user(UserName="q-att")
        iam.create_role(RoleName="q-att", AssumeRolePolicyDocument=trust())
        for p in arns[:2]:
            iam.attach_user_policy(UserName="q-att", PolicyArn=p)
            iam.attach_role_policy(RoleName="q-att", PolicyArn=p)
        self.assertEqual(iam_error(iam.attach_user_policy, UserName="q-att", PolicyArn=arns[2]), "LimitExceeded")
        self.assertEqual(iam_error(iam.attach_role_policy, RoleName="q-att", PolicyArn=arns[2]), "LimitExceeded")
        self.assertEqual(len(iam.list_attached_user_policies(UserName="q-att")["AttachedPolicies"]), 2)
        self.assertEqual(len(iam.list_attached_role_policies(RoleName="q-att")["AttachedPolicies"]), 2)
        self.assertEqual(iam.get_policy(PolicyArn=arns[2])["Policy"]["AttachmentCount"], 0)


if __name__ == "__main__":
    unittest.main()
