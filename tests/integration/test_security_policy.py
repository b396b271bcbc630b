"""Policy evaluation hardening against a live cofferd, through boto3: condition keys built from
request data cannot be split into case variants to escape a Deny or satisfy an Allow, the
global condition keys a guardrail names are present (or evaluated as absent, as AWS does), and
an adversarial StringLike pattern against a maximal encryption context stays cheap.
"""
import json
import time
import unittest

from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase

ACCOUNT = "000000000000"
ROOT = "arn:aws:iam::%s:root" % ACCOUNT


def statement(effect, actions, condition=None, principal=ROOT):
    st = {"Effect": effect, "Principal": {"AWS": principal}, "Action": actions, "Resource": "*"}
    if condition:
        st["Condition"] = condition
    return st


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ADMIN = statement("Allow", ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey", "kms:CreateGrant",
                            "kms:TagResource", "kms:ListResourceTags", "kms:ListGrants"])


class SecurityPolicyTest(ServerTestCase):

    def setUp(self):
        self.kms = self.server.client()

    def code(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"]

    def key_with(self, *statements):
        key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=doc(ADMIN, *statements))
        return key_id

    # ---- encryption-context keys differing only in case ------------------------------------

    def test_case_variant_context_key_cannot_escape_deny(self):
        key_id = self.key_with(
            statement("Allow", "kms:Encrypt"),
            statement("Deny", "kms:Encrypt",
                      {"StringEquals": {"kms:EncryptionContext:classification": "secret"}}))
        for ec in ({"classification": "secret"},
                   {"classification": "secret", "Classification": "x"},
                   {"Classification": "x", "classification": "secret"},
                   {"CLASSIFICATION": "secret", "classification": "public"}):
            self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p", EncryptionContext=ec),
                             "AccessDeniedException", ec)
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"classification": "public"})

    def test_case_variant_context_key_cannot_satisfy_allow(self):
        key_id = self.key_with(
            statement("Allow", "kms:Encrypt",
                      {"StringEquals": {"kms:EncryptionContext:project": "alpha"}}))
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"project": "alpha"})
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"Project": "alpha"})
        for ec in ({"project": "alpha", "PROJECT": "beta"}, {"PROJECT": "beta", "project": "alpha"}):
            self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p", EncryptionContext=ec),
                             "AccessDeniedException", ec)

    def test_case_variant_negated_deny(self):
        # Deny unless the context says "public": a second spelling saying "public" must not hide
        # the first one's "secret".
        key_id = self.key_with(
            statement("Allow", "kms:Encrypt"),
            statement("Deny", "kms:Encrypt",
                      {"StringNotEqualsIfExists": {"kms:EncryptionContext:classification": "public"}}))
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"classification": "public"})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p",
                                   EncryptionContext={"classification": "secret", "Classification": "public"}),
                         "AccessDeniedException")

    def test_case_variant_request_tag_cannot_escape_deny(self):
        key_id = self.key_with(
            statement("Deny", "kms:TagResource", {"StringEquals": {"aws:RequestTag/env": "prod"}}))
        self.assertEqual(self.code(self.kms.tag_resource, KeyId=key_id,
                                   Tags=[{"TagKey": "env", "TagValue": "prod"},
                                         {"TagKey": "Env", "TagValue": "dev"}]),
                         "AccessDeniedException")
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "dev"}])

    def test_case_variant_resource_tag_cannot_escape_deny(self):
        key_id = self.key_with(
            statement("Allow", "kms:Encrypt"),
            statement("Deny", "kms:Encrypt", {"StringEquals": {"aws:ResourceTag/tier": "locked"}}))
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "Tier", "TagValue": "open"},
                                                  {"TagKey": "tier", "TagValue": "locked"}])
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")

    # ---- global condition keys ------------------------------------------------------------

    def deny_guardrail(self, condition):
        return self.key_with(statement("Allow", "kms:Encrypt"), statement("Deny", "kms:Encrypt", condition))

    def test_requested_region_guardrail(self):
        key_id = self.deny_guardrail({"StringNotEquals": {"aws:RequestedRegion": ["eu-west-1"]}})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        key_id = self.deny_guardrail({"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}})
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p")
        key_id = self.key_with(statement("Allow", "kms:Encrypt", {"StringEquals": {"aws:RequestedRegion": REGION}}))
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p")

    def test_user_agent_and_service_keys(self):
        key_id = self.deny_guardrail({"StringLike": {"aws:UserAgent": "*Boto3*"}})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        key_id = self.deny_guardrail({"Bool": {"aws:ViaAWSService": "false"}})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        key_id = self.deny_guardrail({"Bool": {"aws:PrincipalIsAWSService": "false"}})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")

    def test_absent_keys_evaluate_as_aws_does(self):
        # Root's long-term keys: aws:MultiFactorAuthPresent, aws:TokenIssueTime and
        # aws:PrincipalTag/* are absent; an unknown key is absent too.
        for key in ("aws:MultiFactorAuthPresent", "aws:PrincipalTag/team", "aws:TokenIssueTime",
                    "aws:NoSuchKey", "kms:NoSuchKey"):
            # Negated operator on an absent key: true, so the Deny fires.
            key_id = self.deny_guardrail({"StringNotEquals": {key: "x"}})
            self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException", key)
            # Null true, and any ...IfExists operator: true on an absent key, so the Deny fires.
            for cond in ({"Null": {key: "true"}}, {"StringEqualsIfExists": {key: "x"}},
                         {"StringNotEqualsIfExists": {key: "x"}}):
                key_id = self.deny_guardrail(cond)
                self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"),
                                 "AccessDeniedException", (key, cond))
            # Positive operator, ForAnyValue, Null false: false, the Deny does not fire.
            for cond in ({"StringEquals": {key: "x"}}, {"StringLike": {key: "*"}},
                         {"ForAnyValue:StringEquals": {key: "x"}}, {"ForAnyValue:StringNotEquals": {key: "x"}},
                         {"Null": {key: "false"}}):
                key_id = self.deny_guardrail(cond)
                self.kms.encrypt(KeyId=key_id, Plaintext=b"p")
            # ForAllValues over an absent key is vacuously true.
            key_id = self.deny_guardrail({"ForAllValues:StringEquals": {key: "x"}})
            self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException", key)

    def test_mfa_guardrail_denies_long_term_keys(self):
        # The documented guardrail: deny when MFA is absent or false.
        key_id = self.deny_guardrail({"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        key_id = self.deny_guardrail({"Bool": {"aws:MultiFactorAuthPresent": "false"}})
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p")  # absent for long-term keys: Bool is false
        key_id = self.deny_guardrail({"Null": {"aws:MultiFactorAuthPresent": "true"}})
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")

    def test_iam_and_sts_see_the_global_keys(self):
        # IAM and STS evaluate identity and trust policies themselves: the same keys apply there.
        iam = self.server.client("iam")
        iam.create_user(UserName="guarded")
        iam.put_user_policy(UserName="guarded", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "iam:CreateUser", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:username": "guarded"}}},
                {"Effect": "Deny", "Action": "iam:GetUser", "Resource": "*",
                 "Condition": {"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}},
                {"Effect": "Deny", "Action": "iam:ListUsers", "Resource": "*",
                 "Condition": {"StringEquals": {"kms:EncryptionContext:x": "y"}}}]}))
        key = iam.create_access_key(UserName="guarded")["AccessKey"]
        user = self.server.client("iam", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
        self.assertEqual(self.code(user.create_user, UserName="other"), "AccessDenied")
        self.assertEqual(self.code(user.get_user, UserName="guarded"), "AccessDenied")
        user.list_users()  # a key IAM never sets is absent: the positive condition is false
        # STS: a trust policy Deny on aws:username (set for IAM users, absent for the root).
        iam.create_role(RoleName="guarded-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sts:AssumeRole"},
                {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"aws:username": "guarded"}}}]}))
        iam.put_user_policy(UserName="guarded", PolicyName="assume", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
        sts = self.server.client("sts", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
        self.assertEqual(self.code(sts.assume_role, RoleArn="arn:aws:iam::%s:role/guarded-role" % ACCOUNT,
                                   RoleSessionName="sess"), "AccessDenied")
        self.server.client("sts").assume_role(RoleArn="arn:aws:iam::%s:role/guarded-role" % ACCOUNT,
                                              RoleSessionName="sess")

    # ---- aws:TokenIssueTime -----------------------------------------------------------------

    def role_session(self, role, name, policy=None):
        iam = self.server.client("iam")
        try:
            iam.get_role(RoleName=role)
        except ClientError:
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=doc(
                {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sts:AssumeRole"}))
        iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=policy or json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}))
        c = self.server.client("sts").assume_role(RoleArn="arn:aws:iam::%s:role/%s" % (ACCOUNT, role),
                                                  RoleSessionName=name)["Credentials"]
        return dict(akid=c["AccessKeyId"], secret=c["SecretAccessKey"], aws_session_token=c["SessionToken"])

    def test_token_issue_time_revokes_older_sessions(self):
        # AWS's "revoke older sessions" statement, in a key policy.
        creds = self.role_session("tit-kp", "old")
        session = self.server.client(**creds)
        future = "2099-01-01T00:00:00Z"
        key_id = self.deny_guardrail({"DateLessThan": {"aws:TokenIssueTime": future}})
        self.assertEqual(self.code(session.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        # Long-term keys have no aws:TokenIssueTime: the positive date condition is false.
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p")
        key_id = self.deny_guardrail({"DateLessThan": {"aws:TokenIssueTime": "2020-01-01T00:00:00Z"}})
        session.encrypt(KeyId=key_id, Plaintext=b"p")
        # The cut-off between two sessions: the older is refused, the newer is not.
        time.sleep(1.2)
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        time.sleep(1.2)
        newer = self.server.client(**self.role_session("tit-kp", "new"))
        key_id = self.deny_guardrail({"DateLessThan": {"aws:TokenIssueTime": cutoff}})
        self.assertEqual(self.code(session.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        newer.encrypt(KeyId=key_id, Plaintext=b"p")
        # Present for a session (Null false), absent for a long-term key (Null true).
        key_id = self.deny_guardrail({"Null": {"aws:TokenIssueTime": "false"}})
        self.assertEqual(self.code(session.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p")

    def test_token_issue_time_in_identity_policies(self):
        # The same guardrail in the role's own policy, for KMS, IAM and STS requests.
        guard = {"DateLessThan": {"aws:TokenIssueTime": "2099-01-01T00:00:00Z"}}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kms:*", "iam:*", "sts:AssumeRole"], "Resource": "*"},
            {"Effect": "Deny", "Action": ["kms:Encrypt", "iam:ListUsers", "sts:AssumeRole"], "Resource": "*",
             "Condition": guard}]})
        creds = self.role_session("tit-id", "first", policy)
        key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        session = self.server.client(**creds)
        session.describe_key(KeyId=key_id)
        self.assertEqual(self.code(session.encrypt, KeyId=key_id, Plaintext=b"p"), "AccessDeniedException")
        iam = self.server.client("iam", **creds)
        iam.list_roles()
        self.assertEqual(self.code(iam.list_users), "AccessDenied")
        sts = self.server.client("sts", **creds)
        self.assertEqual(self.code(sts.assume_role, RoleArn="arn:aws:iam::%s:role/tit-id" % ACCOUNT,
                                   RoleSessionName="chain"), "AccessDenied")
        # A guardrail dated before the session does not fire.
        self.server.client("iam").put_role_policy(RoleName="tit-id", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["kms:*", "iam:*", "sts:AssumeRole"], "Resource": "*"},
                {"Effect": "Deny", "Action": ["kms:Encrypt", "iam:ListUsers", "sts:AssumeRole"], "Resource": "*",
                 "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2020-01-01T00:00:00Z"}}}]}))
        session.encrypt(KeyId=key_id, Plaintext=b"p")
        iam.list_users()
        sts.assume_role(RoleArn="arn:aws:iam::%s:role/tit-id" % ACCOUNT, RoleSessionName="chain")

    # ---- evaluation cost ------------------------------------------------------------------

    def test_encryption_context_size_cap(self):
        key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p",
                                   EncryptionContext={"k": "a" * 300000}), "ValidationException")
        self.assertEqual(self.code(self.kms.generate_data_key, KeyId=key_id, KeySpec="AES_256",
                                   EncryptionContext={"k%d" % i: "v" * 100 for i in range(100)}),
                         "ValidationException")
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"k": "a" * 4000})

    def test_adversarial_pattern_is_cheap(self):
        pattern = "*" + "a*" * 900 + "b"
        key_id = self.key_with(
            statement("Allow", "kms:Encrypt"),
            *[statement("Deny", "kms:Encrypt", {"StringLike": {"kms:EncryptionContext:k": pattern + str(i)}})
              for i in range(3)])
        ec = {"k": "a" * 8000}
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext=ec)  # warm
        t0 = time.monotonic()
        for _ in range(5):
            self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext=ec)
        per_call = (time.monotonic() - t0) / 5
        # Generous for a shared machine: the quadratic matcher took seconds here.
        self.assertLess(per_call, 0.5)

    def test_case_variant_behind_a_policy_variable_cannot_escape_deny(self):
        key_id = self.key_with(
            statement("Allow", "kms:Encrypt"),
            statement("Deny", "kms:Encrypt",
                      {"StringEquals": {"kms:EncryptionContext:dept": "${kms:EncryptionContext:owner}"}}))
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"dept": "a", "owner": "b"})
        for ec in ({"dept": "a", "owner": "a"},
                   {"dept": "a", "owner": "a", "Owner": "b"},
                   {"dept": "a", "OWNER": "b", "owner": "a"}):
            self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p", EncryptionContext=ec),
                             "AccessDeniedException", ec)

    def test_costly_policy_refuses_instead_of_holding_a_worker(self):
        # A key policy at the 32 KB quota made of short unanchored patterns, each of which scans
        # the whole value: against an 8 KB context this is ~40 M matcher steps. The evaluation
        # budget refuses it (fail closed: the Deny was not fully evaluated); a small context on
        # the same key costs little and is decided normally.
        values = []
        statements = []
        size = len(doc(ADMIN, statement("Allow", "kms:Encrypt")))
        i = 0
        while True:
            values.append("*%s%s*" % (chr(98 + i % 20), chr(98 + i // 20 % 20)))
            i += 1
            if len(values) == 1000:
                statements.append(statement("Deny", "kms:Encrypt",
                                            {"StringLike": {"kms:EncryptionContext:k": values}}))
                size += len(json.dumps(statements[-1])) + 2
                values = []
            if size + 8 * len(values) > 30000:
                break
        if values:
            statements.append(statement("Deny", "kms:Encrypt", {"StringLike": {"kms:EncryptionContext:k": values}}))
        key_id = self.key_with(statement("Allow", "kms:Encrypt"), *statements)
        self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"k": "aaaa"})
        with self.assertRaises(ClientError) as cm:
            self.kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"k": "a" * 8000})
        self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDeniedException")
        self.assertIn("cost too much to evaluate", cm.exception.response["Error"]["Message"])
        # A value the Deny matches is still denied, whatever its size.
        self.assertEqual(self.code(self.kms.encrypt, KeyId=key_id, Plaintext=b"p", EncryptionContext={"k": "xbb"}),
                         "AccessDeniedException")


if __name__ == "__main__":
    unittest.main()
