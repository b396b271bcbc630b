"""SSM Parameter Store labels and tags through boto3 and /usr/bin/aws ssm: LabelParameterVersion
and UnlabelParameterVersion (AWS's label rules, moving labels, the 10-label limit), "name:label"
selectors, labels in the history and the Label filter of GetParametersByPath, the 100-version
rule with a labelled oldest version; AddTagsToResource, RemoveTagsFromResource and
ListTagsForResource on parameters with AWS's limits and errors; Secrets Manager references.
"""
import glob
import json
import os
import time

from botocore.config import Config
from botocore.exceptions import ClientError

from harness import REGION, ServerTestCase

ACCOUNT = "000000000000"


def arn(name):
    return "arn:aws:ssm:%s:%s:parameter/%s" % (REGION, ACCOUNT, name.lstrip("/"))


class SsmLabelsTagsTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")

    def versions(self, name, n):
        self.ssm.put_parameter(Name=name, Value="v1", Type="String")
        for i in range(2, n + 1):
            self.ssm.put_parameter(Name=name, Value="v%d" % i, Overwrite=True)

    def labels_of(self, name):
        return {h["Version"]: h["Labels"] for h in self.ssm.get_parameter_history(Name=name)["Parameters"]}

    # ---- labels --------------------------------------------------------------------------------

    def test_label_latest_and_select(self):
        name = "/lbl/a/p"
        self.versions(name, 3)
        r = self.ssm.label_parameter_version(Name=name, Labels=["prod"])
        self.assertEqual((r["ParameterVersion"], r["InvalidLabels"]), (3, []))
        r = self.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["dev", "Old.v-1_x"])
        self.assertEqual(r["ParameterVersion"], 1)
        p = self.ssm.get_parameter(Name=name + ":dev")["Parameter"]
        self.assertEqual((p["Name"], p["Value"], p["Version"], p["Selector"]), (name, "v1", 1, ":dev"))
        p = self.ssm.get_parameter(Name=arn(name) + ":prod")["Parameter"]
        self.assertEqual((p["Value"], p["Selector"]), ("v3", ":prod"))
        self.assertEqual(self.err(self.ssm.get_parameter, Name=name + ":nope")[0], "ParameterNotFound")
        r = self.ssm.get_parameters(Names=[name + ":dev", name + ":nope", name + ":Old.v-1_x"])
        self.assertEqual([(p["Version"], p["Selector"]) for p in r["Parameters"]], [(1, ":dev"), (1, ":Old.v-1_x")])
        self.assertEqual(r["InvalidParameters"], [name + ":nope"])
        self.assertEqual(self.labels_of(name), {1: ["dev", "Old.v-1_x"], 2: [], 3: ["prod"]})
        # history lists labels through the CLI too
        _, out, _ = self.server.aws("ssm", "get-parameter-history", "--name", name, check=True)
        self.assertEqual(out["Parameters"][0]["Labels"], ["dev", "Old.v-1_x"])

    def test_label_moves_between_versions(self):
        name = "/lbl/move"
        self.versions(name, 3)
        self.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["stage", "keep"])
        self.ssm.label_parameter_version(Name=name, ParameterVersion=2, Labels=["stage"])
        self.assertEqual(self.labels_of(name), {1: ["keep"], 2: ["stage"], 3: []})
        self.assertEqual(self.ssm.get_parameter(Name=name + ":stage")["Parameter"]["Version"], 2)
        # labelling the same version again changes nothing
        self.ssm.label_parameter_version(Name=name, ParameterVersion=2, Labels=["stage", "stage"])
        self.assertEqual(self.labels_of(name), {1: ["keep"], 2: ["stage"], 3: []})

    def test_invalid_labels_are_reported(self):
        name = "/lbl/invalid"
        self.versions(name, 1)
        bad = ["1st", "awsLabel", "AWS-x", "ssmthing", "SSM", "has space", "a/b", "x:y"]
        r = self.ssm.label_parameter_version(Name=name, Labels=bad + ["good"])
        self.assertEqual((r["InvalidLabels"], r["ParameterVersion"]), (bad, 1))
        self.assertEqual(self.labels_of(name), {1: ["good"]})
        code, msg = self.err(self.ssm.label_parameter_version, Name=name, Labels=["x" * 101])
        self.assertEqual(code, "ValidationException")
        self.assertIn("length less than or equal to 100", msg)
        r = self.ssm.label_parameter_version(Name=name, Labels=["y" * 100])
        self.assertEqual(r["InvalidLabels"], [])
        code, _ = self.err(self.ssm.label_parameter_version, Name=name, Labels=["l%d" % i for i in range(11)])
        self.assertEqual(code, "ValidationException")

    def test_label_errors(self):
        name = "/lbl/errors"
        self.versions(name, 2)
        self.assertEqual(self.err(self.ssm.label_parameter_version, Name="/lbl/missing", Labels=["a"])[0],
                         "ParameterNotFound")
        code, msg = self.err(self.ssm.label_parameter_version, Name=name, ParameterVersion=5, Labels=["a"])
        self.assertEqual(code, "ParameterVersionNotFound")
        self.assertIn("version 5 of %s" % name, msg)
        self.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["l%d" % i for i in range(10)])
        code, msg = self.err(self.ssm.label_parameter_version, Name=name, ParameterVersion=1, Labels=["eleventh"])
        self.assertEqual(code, "ParameterVersionLabelLimitExceeded")
        self.assertIn("maximum 10 labels", msg)
        # the refused request changed nothing
        self.assertEqual(len(self.labels_of(name)[1]), 10)
        # moving one label away makes room
        self.ssm.label_parameter_version(Name=name, ParameterVersion=2, Labels=["l0"])
        self.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["eleventh"])
        self.assertEqual(self.labels_of(name)[2], ["l0"])
        # ARNs and selectors are not names here
        self.assertEqual(self.err(self.ssm.label_parameter_version, Name=arn(name), Labels=["a"])[0],
                         "ValidationException")

    def test_unlabel(self):
        name = "/lbl/unlabel"
        self.versions(name, 2)
        self.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["a", "b"])
        r = self.ssm.unlabel_parameter_version(Name=name, ParameterVersion=1, Labels=["a", "zz"])
        self.assertEqual((r["RemovedLabels"], r["InvalidLabels"]), (["a"], ["zz"]))
        self.assertEqual(self.labels_of(name), {1: ["b"], 2: []})
        r = self.ssm.unlabel_parameter_version(Name=name, ParameterVersion=2, Labels=["b"])
        self.assertEqual((r["RemovedLabels"], r["InvalidLabels"]), ([], ["b"]))
        self.assertEqual(self.err(self.ssm.get_parameter, Name=name + ":a")[0], "ParameterNotFound")
        self.assertEqual(self.err(self.ssm.unlabel_parameter_version, Name=name, ParameterVersion=9,
                                  Labels=["b"])[0], "ParameterVersionNotFound")
        self.assertEqual(self.err(self.ssm.unlabel_parameter_version, Name="/lbl/none", ParameterVersion=1,
                                  Labels=["b"])[0], "ParameterNotFound")
        # ParameterVersion is required (botocore checks it too: the server is asked without the check)
        raw = self.server.client("ssm", config=Config(parameter_validation=False,
                                                      retries={"max_attempts": 1, "mode": "standard"}))
        code, msg = self.err(raw.unlabel_parameter_version, Name=name, Labels=["b"])
        self.assertEqual(code, "ValidationException")
        self.assertIn("'parameterVersion' failed to satisfy constraint: Member must not be null", msg)

    def test_by_path_label_filter(self):
        self.versions("/lbl/path/x", 2)
        self.versions("/lbl/path/y", 2)
        self.versions("/lbl/path/z", 1)
        self.ssm.label_parameter_version(Name="/lbl/path/x", ParameterVersion=1, Labels=["release"])
        self.ssm.label_parameter_version(Name="/lbl/path/y", ParameterVersion=2, Labels=["release"])
        r = self.ssm.get_parameters_by_path(Path="/lbl/path", ParameterFilters=[
            {"Key": "Label", "Option": "Equals", "Values": ["release"]}])
        self.assertEqual([(p["Name"], p["Version"], p["Value"]) for p in r["Parameters"]],
                         [("/lbl/path/x", 1, "v1"), ("/lbl/path/y", 2, "v2")])
        code, _ = self.err(self.ssm.get_parameters_by_path, Path="/lbl/path", ParameterFilters=[
            {"Key": "Label", "Option": "BeginsWith", "Values": ["rel"]}])
        self.assertEqual(code, "InvalidFilterOption")
        # DescribeParameters does not take Label
        code, _ = self.err(self.ssm.describe_parameters, ParameterFilters=[{"Key": "Label", "Values": ["release"]}])
        self.assertEqual(code, "InvalidFilterKey")

    def test_hundred_versions_with_a_labelled_oldest(self):
        name = "/lbl/hundred"
        self.versions(name, 100)
        self.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["first"])
        code, msg = self.err(self.ssm.put_parameter, Name=name, Value="v101", Overwrite=True)
        self.assertEqual(code, "ParameterMaxVersionLimitExceeded")
        self.assertIn("Version 1, the oldest version, can't be deleted because it has a label", msg)
        self.assertEqual(self.ssm.get_parameter(Name=name)["Parameter"]["Version"], 100)
        # moved away, the oldest goes
        self.ssm.label_parameter_version(Name=name, ParameterVersion=50, Labels=["first"])
        self.assertEqual(self.ssm.put_parameter(Name=name, Value="v101", Overwrite=True)["Version"], 101)
        self.assertEqual(self.err(self.ssm.get_parameter, Name=name + ":1")[0], "ParameterVersionNotFound")
        self.assertEqual(self.ssm.get_parameter(Name=name + ":first")["Parameter"]["Value"], "v50")

    def test_overwrite_keeps_labels(self):
        name = "/lbl/keep"
        self.versions(name, 1)
        self.ssm.label_parameter_version(Name=name, Labels=["one"])
        self.ssm.put_parameter(Name=name, Value="v2", Overwrite=True)
        self.assertEqual(self.labels_of(name), {1: ["one"], 2: []})

    # ---- tags ----------------------------------------------------------------------------------

    def tags(self, name):
        return {t["Key"]: t["Value"] for t in
                self.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]}

    def test_tags_add_list_remove(self):
        name = "/tag/a/p"
        self.ssm.put_parameter(Name=name, Value="v", Type="String", Tags=[{"Key": "team", "Value": "core"}])
        self.assertEqual(self.tags(name), {"team": "core"})
        self.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name,
                                      Tags=[{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "infra"},
                                            {"Key": "a b:c/d=e+f-g@h.i_j", "Value": "ü"}])
        self.assertEqual(self.tags(name), {"team": "infra", "env": "dev", "a b:c/d=e+f-g@h.i_j": "ü"})
        self.ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId=name, TagKeys=["env", "absent"])
        self.assertEqual(set(self.tags(name)), {"team", "a b:c/d=e+f-g@h.i_j"})
        # tags do not make a version, and a new version keeps them
        self.assertEqual(self.ssm.get_parameter(Name=name)["Parameter"]["Version"], 1)
        self.ssm.put_parameter(Name=name, Value="v2", Overwrite=True)
        self.assertEqual(self.tags(name)["team"], "infra")
        # DescribeParameters filters on them
        r = self.ssm.describe_parameters(ParameterFilters=[{"Key": "tag:team", "Values": ["infra"]}])
        self.assertEqual([p["Name"] for p in r["Parameters"]], [name])
        # one-level names with or without the slash are one parameter
        self.ssm.put_parameter(Name="tagone", Value="v", Type="String")
        self.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId="/tagone", Tags=[{"Key": "k", "Value": "v"}])
        self.assertEqual(self.tags("tagone"), {"k": "v"})
        # through the CLI
        _, out, _ = self.server.aws("ssm", "list-tags-for-resource", "--resource-type", "Parameter",
                                    "--resource-id", "tagone", check=True)
        self.assertEqual(out["TagList"], [{"Key": "k", "Value": "v"}])
        # deleting the parameter takes its tags; a new one starts without
        self.ssm.delete_parameter(Name="tagone")
        self.ssm.put_parameter(Name="tagone", Value="v", Type="String")
        self.assertEqual(self.tags("tagone"), {})

    def test_tag_errors(self):
        name = "/tag/errors"
        self.ssm.put_parameter(Name=name, Value="v", Type="String")
        for fn, kw in ((self.ssm.list_tags_for_resource, {}),
                       (self.ssm.add_tags_to_resource, {"Tags": [{"Key": "k", "Value": "v"}]}),
                       (self.ssm.remove_tags_from_resource, {"TagKeys": ["k"]})):
            self.assertEqual(self.err(fn, ResourceType="Parameter", ResourceId="/tag/missing", **kw),
                             ("InvalidResourceId", ""))
            self.assertEqual(self.err(fn, ResourceType="Parameter", ResourceId=arn(name), **kw)[0],
                             "InvalidResourceId")
            self.assertEqual(self.err(fn, ResourceType="Document", ResourceId=name, **kw),
                             ("InvalidResourceType", ""))
        code, msg = self.err(self.ssm.add_tags_to_resource, ResourceType="Parameter", ResourceId=name,
                             Tags=[{"Key": "bad!", "Value": "v"}, {"Key": "aws:x", "Value": "v"}])
        self.assertEqual(code, "ValidationException")
        self.assertIn("'bad!' at 'tags.1.member.key' failed to satisfy constraint: Member must satisfy regular "
                      "expression pattern", msg)
        self.assertIn("'aws:x' at 'tags.2.member.key'", msg)
        code, _ = self.err(self.ssm.add_tags_to_resource, ResourceType="Parameter", ResourceId=name,
                           Tags=[{"Key": "k" * 129, "Value": "v"}])
        self.assertEqual(code, "ValidationException")
        code, _ = self.err(self.ssm.add_tags_to_resource, ResourceType="Parameter", ResourceId=name,
                           Tags=[{"Key": "k", "Value": "v" * 257}])
        self.assertEqual(code, "ValidationException")
        code, _ = self.err(self.ssm.put_parameter, Name="/tag/badput", Value="v", Type="String",
                           Tags=[{"Key": "x*", "Value": "v"}])
        self.assertEqual(code, "ValidationException")
        # 50 tags per parameter; re-setting existing keys does not count twice
        self.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name,
                                      Tags=[{"Key": "k%d" % i, "Value": "v"} for i in range(50)])
        self.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name,
                                      Tags=[{"Key": "k%d" % i, "Value": "w"} for i in range(50)])
        self.assertEqual(self.err(self.ssm.add_tags_to_resource, ResourceType="Parameter", ResourceId=name,
                                  Tags=[{"Key": "one-more", "Value": "v"}]), ("TooManyTagsError", ""))
        self.assertEqual(len(self.tags(name)), 50)
        self.assertEqual(set(self.tags(name).values()), {"w"})

    def test_tags_need_their_own_actions(self):
        iam = self.server.client("iam")
        iam.create_user(UserName="ssm-tagger")
        key = iam.create_access_key(UserName="ssm-tagger")["AccessKey"]
        user = self.server.client("ssm", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
        self.ssm.put_parameter(Name="/tag/authz/p", Value="v", Type="String")
        iam.put_user_policy(UserName="ssm-tagger", PolicyName="list", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:ListTagsForResource",
                           "Resource": arn("/tag/authz/*")}]}))
        deadline = time.time() + 10
        while True:
            try:
                user.list_tags_for_resource(ResourceType="Parameter", ResourceId="/tag/authz/p")
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        code, msg = self.err(user.add_tags_to_resource, ResourceType="Parameter", ResourceId="/tag/authz/p",
                             Tags=[{"Key": "k", "Value": "v"}])
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("ssm:AddTagsToResource", msg)
        self.assertEqual(self.tags("/tag/authz/p"), {})

    # ---- Secrets Manager references ------------------------------------------------------------

    def test_secrets_manager_reference(self):
        sm = self.server.client("secretsmanager")
        created = sm.create_secret(Name="prod/db-password", SecretString="s3cret-v1")
        sm.put_secret_value(SecretId="prod/db-password", SecretString="s3cret-v2")
        ref = "/aws/reference/secretsmanager/prod/db-password"
        code, msg = self.err(self.ssm.get_parameter, Name=ref)
        self.assertEqual((code, msg), ("ValidationException",
                                       "WithDecryption flag must be True for retrieving a Secret Manager secret."))
        p = self.ssm.get_parameter(Name=ref, WithDecryption=True)["Parameter"]
        self.assertEqual((p["Name"], p["Type"], p["Value"], p["Version"]), (ref, "SecureString", "s3cret-v2", 0))
        self.assertEqual(p["ARN"], created["ARN"])
        self.assertEqual(json.loads(p["SourceResult"])["SecretString"], "s3cret-v2")
        # A staging label or a version id after the secret id.
        p = self.ssm.get_parameter(Name=ref + ":AWSPREVIOUS", WithDecryption=True)["Parameter"]
        self.assertEqual((p["Value"], p["Selector"]), ("s3cret-v1", ":AWSPREVIOUS"))
        p = self.ssm.get_parameter(Name=ref + ":" + created["VersionId"], WithDecryption=True)["Parameter"]
        self.assertEqual(p["Value"], "s3cret-v1")
        # GetParameters: found beside a plain parameter; a reference to nothing is an invalid name.
        self.ssm.put_parameter(Name="/ref/plain", Value="v", Type="String")
        out = self.ssm.get_parameters(Names=["/ref/plain", ref, "/aws/reference/secretsmanager/missing"],
                                      WithDecryption=True)
        self.assertEqual(sorted(x["Name"] for x in out["Parameters"]), sorted(["/ref/plain", ref]))
        self.assertEqual(out["InvalidParameters"], ["/aws/reference/secretsmanager/missing"])
        code, _ = self.err(self.ssm.get_parameter, Name="/aws/reference/secretsmanager/missing",
                           WithDecryption=True)
        self.assertEqual(code, "ParameterNotFound")
        # The reader needs the secret too: ssm:GetParameter alone is not enough.
        iam = self.server.client("iam")
        iam.create_user(UserName="ref-reader")
        iam.put_user_policy(UserName="ref-reader", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="ref-reader")["AccessKey"]
        reader = self.server.client("ssm", akid=k["AccessKeyId"], secret=k["SecretAccessKey"])
        code, msg = self.err(reader.get_parameter, Name=ref, WithDecryption=True)
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("secretsmanager:GetSecretValue", msg)
        # The value is in no audit event.
        trail = "".join(open(f).read() for f in glob.glob(os.path.join(self.server.data_dir, "audit", "trail-*.jsonl"))
                        if not os.path.islink(f))
        self.assertNotIn("s3cret-v2", trail)
        # and nothing can be written there
        code, _ = self.err(self.ssm.put_parameter, Name=ref, Value="fake", Type="SecureString")
        self.assertEqual(code, "AccessDeniedException")
