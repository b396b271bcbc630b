"""Multi-Region secrets between two cofferd processes on loopback, us-east-1 (the primary's region)
and eu-west-1, each the other's peer: CreateSecret with AddReplicaRegions, ReplicateSecretToRegions,
a replica following its primary's versions, labels, description and tags, encrypted with a KMS key
of its own region, read-only, promoted by StopReplicationToReplica, deleted by
RemoveRegionsFromReplication; a replica region that is down shows Failed and is caught up; a
same-name secret in the target region; who may call Coffer's own replication operations; through
boto3 and /usr/bin/aws."""
import base64
import json
import time
import unittest
import uuid

from botocore.exceptions import ClientError

from harness import PeerRegions, signed_call, trail_events

EAST, WEST = "us-east-1", "eu-west-1"
ACCOUNT = PeerRegions.ACCOUNT
REPLICA_REFUSAL = "Operation not permitted on a replica secret. Call must be made in primary secret's region."


class SecretReplicationTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.peers = PeerRegions((EAST, WEST)).start()
        cls.servers = cls.peers.servers
        cls.sm = {r: cls.servers[r].client("secretsmanager", region=r) for r in (EAST, WEST)}
        cls.kms = {r: cls.servers[r].client("kms", region=r) for r in (EAST, WEST)}

    @classmethod
    def tearDownClass(cls):
        cls.peers.stop()

    def name(self):
        return "repl/%s-%s" % (self._testMethodName[5:25], uuid.uuid4().hex[:8])

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        err = cm.exception.response["Error"]
        return err["Code"], err.get("Message", "")

    def wait_for(self, fn, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                v = fn()
                if v:
                    return v
            except ClientError:
                pass
            time.sleep(0.2)
        return fn()

    def status(self, name, region=WEST):
        for s in self.sm[EAST].describe_secret(SecretId=name).get("ReplicationStatus", []):
            if s["Region"] == region:
                return s
        return None

    def in_sync(self, name, region=WEST):
        return self.wait_for(lambda: (self.status(name, region) or {}).get("Status") == "InSync")

    def replica_value(self, name, **kw):
        return self.sm[WEST].get_secret_value(SecretId=name, **kw)

    def same_versions(self, name):
        east = self.sm[EAST].describe_secret(SecretId=name)["VersionIdsToStages"]
        west = self.sm[WEST].describe_secret(SecretId=name).get("VersionIdsToStages")
        return east == west

    # ---- creating replicas ----

    def test_create_with_add_replica_regions(self):
        name = self.name()
        out = self.sm[EAST].create_secret(Name=name, SecretString="s3cr3t", Description="d",
                                          Tags=[{"Key": "team", "Value": "a"}],
                                          AddReplicaRegions=[{"Region": WEST}])
        self.assertEqual(out["ReplicationStatus"][0]["Region"], WEST)
        self.assertIn(out["ReplicationStatus"][0]["Status"], ("InProgress", "InSync"))
        self.assertTrue(self.in_sync(name))
        st = self.status(name)
        self.assertEqual(st["KmsKeyId"], "alias/aws/secretsmanager")
        self.assertNotIn("StatusMessage", st)
        got = self.replica_value(name)
        self.assertEqual(got["SecretString"], "s3cr3t")
        self.assertEqual(got["VersionId"], out["VersionId"])
        # same name and ARN suffix, the replica's own region in the ARN
        self.assertEqual(got["ARN"], out["ARN"].replace(":%s:" % EAST, ":%s:" % WEST))
        d = self.sm[WEST].describe_secret(SecretId=name)
        self.assertEqual(d["PrimaryRegion"], EAST)
        self.assertEqual(d["Description"], "d")
        self.assertEqual(d["Tags"], [{"Key": "team", "Value": "a"}])
        self.assertNotIn("KmsKeyId", d)  # the replica region's default key
        self.assertEqual(self.sm[EAST].describe_secret(SecretId=name)["PrimaryRegion"], EAST)
        listed = [s for s in self.sm[WEST].list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]]
        self.assertEqual(listed[0]["PrimaryRegion"], EAST)

    def test_replicate_existing_secret_cli(self):
        name = self.name()
        east, west = self.servers[EAST], self.servers[WEST]
        created = self.sm[EAST].create_secret(Name=name, SecretBinary=b"\x00\x01bin")
        rc, out, err = east.aws("secretsmanager", "replicate-secret-to-regions", "--secret-id", name,
                                "--add-replica-regions", "Region=%s" % WEST, "--region", EAST)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["ARN"], created["ARN"])
        self.assertEqual(out["ReplicationStatus"][0]["Region"], WEST)
        self.assertTrue(self.in_sync(name))
        rc, out, err = west.aws("secretsmanager", "get-secret-value", "--secret-id", name, "--region", WEST)
        self.assertEqual(rc, 0, err)
        self.assertEqual(base64.b64decode(out["SecretBinary"]), b"\x00\x01bin")
        # replicating to the same region again, or to itself, is refused
        code, msg = self.error(self.sm[EAST].replicate_secret_to_regions, SecretId=name,
                               AddReplicaRegions=[{"Region": WEST}])
        self.assertEqual(code, "InvalidParameterException")
        code, _ = self.error(self.sm[EAST].replicate_secret_to_regions, SecretId=name,
                             AddReplicaRegions=[{"Region": EAST}])
        self.assertEqual(code, "InvalidParameterException")
        code, _ = self.error(self.sm[EAST].replicate_secret_to_regions, SecretId=name,
                             AddReplicaRegions=[{"Region": "ap-south-9"}])
        self.assertEqual(code, "InvalidParameterException")
        code, _ = self.error(self.sm[EAST].replicate_secret_to_regions, SecretId=name,
                             AddReplicaRegions=[{"Region": "Not_A_Region"}])
        self.assertEqual(code, "ValidationException")

    # ---- a replica follows its primary ----

    def test_replica_follows_versions_and_labels(self):
        name = self.name()
        first = self.sm[EAST].create_secret(Name=name, SecretString="v1",
                                            AddReplicaRegions=[{"Region": WEST}])["VersionId"]
        self.assertTrue(self.in_sync(name))
        second = self.sm[EAST].put_secret_value(SecretId=name, SecretString="v2")["VersionId"]
        self.assertTrue(self.wait_for(lambda: self.replica_value(name)["SecretString"] == "v2"))
        prev = self.replica_value(name, VersionStage="AWSPREVIOUS")
        self.assertEqual((prev["VersionId"], prev["SecretString"]), (first, "v1"))
        # a custom label, then AWSCURRENT moved back
        self.sm[EAST].update_secret_version_stage(SecretId=name, VersionStage="blue", MoveToVersionId=first)
        self.sm[EAST].update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT",
                                                  MoveToVersionId=first, RemoveFromVersionId=second)
        self.assertTrue(self.wait_for(lambda: self.same_versions(name)))
        self.assertEqual(self.replica_value(name)["SecretString"], "v1")
        self.assertEqual(self.replica_value(name, VersionStage="blue")["VersionId"], first)
        self.assertEqual(self.replica_value(name, VersionStage="AWSPREVIOUS")["SecretString"], "v2")
        # UpdateSecret with a value and a description, tags
        self.sm[EAST].update_secret(SecretId=name, SecretString="v3", Description="three")
        self.sm[EAST].tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}])
        self.assertTrue(self.wait_for(
            lambda: self.sm[WEST].describe_secret(SecretId=name).get("Tags") == [{"Key": "k", "Value": "v"}]))
        d = self.sm[WEST].describe_secret(SecretId=name)
        self.assertEqual(d["Description"], "three")
        self.assertEqual(self.replica_value(name)["SecretString"], "v3")
        # the version that lost its last label stays, deprecated, on both sides
        ids = {v["VersionId"] for v in self.sm[WEST].list_secret_version_ids(
            SecretId=name, IncludeDeprecated=True)["Versions"]}
        self.assertIn(first, ids)
        self.assertIn(second, ids)
        self.assertTrue(self.in_sync(name))

    def test_replica_encrypted_with_its_own_regions_key(self):
        name = self.name()
        west_key = self.kms[WEST].create_key(Description="west secrets")["KeyMetadata"]
        self.sm[EAST].create_secret(Name=name, SecretString="keyed",
                                    AddReplicaRegions=[{"Region": WEST, "KmsKeyId": west_key["Arn"]}])
        self.assertTrue(self.in_sync(name))
        self.assertEqual(self.status(name)["KmsKeyId"], west_key["Arn"])
        d = self.sm[WEST].describe_secret(SecretId=name)
        self.assertEqual(d["KmsKeyId"], west_key["Arn"])
        versions = self.sm[WEST].list_secret_version_ids(SecretId=name)["Versions"]
        self.assertEqual(versions[0]["KmsKeyIds"], [west_key["Arn"]])
        self.assertEqual(self.replica_value(name)["SecretString"], "keyed")
        # the value is under the west key: disabled, the replica cannot be read
        self.kms[WEST].disable_key(KeyId=west_key["KeyId"])
        try:
            code, _ = self.error(self.sm[WEST].get_secret_value, SecretId=name)
            self.assertEqual(code, "DecryptionFailure")
        finally:
            self.kms[WEST].enable_key(KeyId=west_key["KeyId"])
        self.assertEqual(self.replica_value(name)["SecretString"], "keyed")

    def test_many_large_versions_travel_in_rounds(self):
        # 20 versions of 60,000 characters: more than one request body may carry (1 MiB)
        name = self.name()
        ids = [self.sm[EAST].create_secret(Name=name, SecretString="0" * 60000)["VersionId"]]
        for i in range(1, 20):
            ids.append(self.sm[EAST].put_secret_value(SecretId=name, SecretString=str(i % 10) * 60000)["VersionId"])
        self.sm[EAST].replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name, ), self.status(name))
        for i in (0, 7, 18, 19):
            got = self.replica_value(name, VersionId=ids[i])["SecretString"]
            self.assertEqual(got, str(i % 10) * 60000)
        self.assertEqual(self.replica_value(name)["VersionId"], ids[19])
        # a later write sends only the new value
        self.sm[EAST].put_secret_value(SecretId=name, SecretString="small")
        self.assertTrue(self.wait_for(lambda: self.replica_value(name)["SecretString"] == "small"))
        self.sm[EAST].remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[WEST])

    def test_operations_authorized_for_the_caller(self):
        name = self.name()
        self.sm[EAST].create_secret(Name=name, SecretString="authz")
        user = "sm-" + uuid.uuid4().hex[:8]
        clients = {}
        for region in (EAST, WEST):
            iam = self.servers[region].client("iam", region=region)
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                    "secretsmanager:CreateSecret", "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue", "kms:*"]}]}))
            k = iam.create_access_key(UserName=user)["AccessKey"]
            clients[region] = self.servers[region].client("secretsmanager", region=region, akid=k["AccessKeyId"],
                                                          secret=k["SecretAccessKey"])
        for fn, kw in ((clients[EAST].replicate_secret_to_regions, {"SecretId": name,
                                                                    "AddReplicaRegions": [{"Region": WEST}]}),
                       (clients[EAST].remove_regions_from_replication, {"SecretId": name,
                                                                        "RemoveReplicaRegions": [WEST]}),
                       (clients[EAST].create_secret, {"Name": name + "-new", "SecretString": "x",
                                                      "AddReplicaRegions": [{"Region": WEST}]})):
            code, msg = self.error(fn, **kw)
            self.assertEqual(code, "AccessDeniedException", fn.__name__)
            self.assertIn("secretsmanager:ReplicateSecretToRegions" if fn.__name__ != "remove_regions_from_replication"
                          else "secretsmanager:RemoveRegionsFromReplication", msg)
        self.sm[EAST].replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        code, msg = self.error(clients[WEST].stop_replication_to_replica, SecretId=name)
        self.assertEqual(code, "AccessDeniedException")
        self.assertIn("secretsmanager:StopReplicationToReplica", msg)
        self.assertEqual(clients[WEST].get_secret_value(SecretId=name)["SecretString"], "authz")

    # ---- a replica is read-only ----

    def test_writes_on_replica_refused(self):
        name = self.name()
        self.sm[EAST].create_secret(Name=name, SecretString="ro", AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        west = self.sm[WEST]
        for fn, kw in ((west.put_secret_value, {"SecretString": "x"}),
                       (west.update_secret, {"Description": "x"}),
                       (west.update_secret_version_stage, {"VersionStage": "x",
                                                           "MoveToVersionId": "a" * 32}),
                       (west.tag_resource, {"Tags": [{"Key": "a", "Value": "b"}]}),
                       (west.untag_resource, {"TagKeys": ["a"]}),
                       (west.delete_secret, {}),
                       (west.put_resource_policy, {"ResourcePolicy": json.dumps({
                           "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"},
                                                                   "Action": "*", "Resource": "*"}]})}),
                       (west.replicate_secret_to_regions, {"AddReplicaRegions": [{"Region": EAST}]}),
                       (west.remove_regions_from_replication, {"RemoveReplicaRegions": [EAST]})):
            self.assertEqual(self.error(fn, SecretId=name, **kw),
                             ("InvalidParameterException", REPLICA_REFUSAL), fn.__name__)
        rc, _, err = self.servers[WEST].aws("secretsmanager", "put-secret-value", "--secret-id", name,
                                            "--secret-string", "x", "--region", WEST)
        self.assertNotEqual(rc, 0)
        self.assertIn("InvalidParameterException", err)
        # a primary with replicas cannot be deleted either
        code, msg = self.error(self.sm[EAST].delete_secret, SecretId=name)
        self.assertEqual(code, "InvalidParameterException")
        self.assertIn("that still has replica regions [%s]." % WEST, msg)

    # ---- StopReplicationToReplica, RemoveRegionsFromReplication ----

    def test_stop_replication_promotes(self):
        name = self.name()
        self.sm[EAST].create_secret(Name=name, SecretString="p", AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        code, _ = self.error(self.sm[EAST].stop_replication_to_replica, SecretId=name)
        self.assertEqual(code, "InvalidParameterException")
        out = self.sm[WEST].stop_replication_to_replica(SecretId=name)
        self.assertIn(":%s:" % WEST, out["ARN"])
        d = self.sm[WEST].describe_secret(SecretId=name)
        self.assertNotIn("PrimaryRegion", d)
        self.assertTrue(self.wait_for(lambda: "ReplicationStatus" not in self.sm[EAST].describe_secret(SecretId=name)))
        # standalone now: writable, and the old primary's writes no longer reach it
        self.sm[WEST].put_secret_value(SecretId=name, SecretString="west own")
        self.sm[EAST].put_secret_value(SecretId=name, SecretString="east own")
        time.sleep(1.5)
        self.assertEqual(self.replica_value(name)["SecretString"], "west own")
        self.sm[EAST].delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

    def test_remove_regions_deletes_replica(self):
        name = self.name()
        self.sm[EAST].create_secret(Name=name, SecretString="r", AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        out = self.sm[EAST].remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[WEST])
        self.assertEqual(out["ReplicationStatus"], [])
        code, _ = self.error(self.sm[WEST].describe_secret, SecretId=name)
        self.assertEqual(code, "ResourceNotFoundException")
        d = self.sm[EAST].describe_secret(SecretId=name)
        self.assertNotIn("ReplicationStatus", d)
        self.assertNotIn("PrimaryRegion", d)
        code, _ = self.error(self.sm[EAST].remove_regions_from_replication, SecretId=name,
                             RemoveReplicaRegions=[WEST])
        self.assertEqual(code, "InvalidParameterException")
        self.sm[EAST].delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

    # ---- a replica region that is down ----

    def test_peer_down_failed_then_caught_up(self):
        name = self.name()
        self.sm[EAST].create_secret(Name=name, SecretString="before", AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        west = self.servers[WEST]
        west.stop()
        try:
            self.sm[EAST].put_secret_value(SecretId=name, SecretString="while down")
            st = self.wait_for(lambda: (self.status(name) or {}).get("Status") == "Failed" and self.status(name))
            self.assertEqual(st["Status"], "Failed")
            self.assertIn(WEST, st["StatusMessage"])
        finally:
            west.start(port=self.peers.ports[WEST])
        # the retry job catches it up without another write
        self.assertTrue(self.in_sync(name, ))
        self.assertEqual(self.replica_value(name)["SecretString"], "while down")
        self.assertNotIn("StatusMessage", self.status(name))

    # ---- a same-name secret in the target region ----

    def test_same_name_conflict_and_force_overwrite(self):
        name = self.name()
        self.sm[WEST].create_secret(Name=name, SecretString="west original")
        self.sm[EAST].create_secret(Name=name, SecretString="east", AddReplicaRegions=[{"Region": WEST}])
        st = self.wait_for(lambda: (self.status(name) or {}).get("Status") == "Failed" and self.status(name))
        self.assertEqual(st["Status"], "Failed")
        self.assertIn("already exists", st["StatusMessage"])
        self.assertEqual(self.replica_value(name)["SecretString"], "west original")
        # without the flag, the other secret stays; with it, it is overwritten
        self.sm[EAST].remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[WEST])
        self.assertEqual(self.replica_value(name)["SecretString"], "west original")
        self.sm[EAST].replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}],
                                                  ForceOverwriteReplicaSecret=True)
        self.assertTrue(self.in_sync(name))
        self.assertEqual(self.replica_value(name)["SecretString"], "east")
        self.assertEqual(self.sm[WEST].describe_secret(SecretId=name)["PrimaryRegion"], EAST)
        # CreateSecret's ForceOverwriteReplicaSecret too
        other = self.name()
        self.sm[WEST].create_secret(Name=other, SecretString="w")
        self.sm[EAST].create_secret(Name=other, SecretString="e", ForceOverwriteReplicaSecret=True,
                                    AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(other))
        self.assertEqual(self.replica_value(other)["SecretString"], "e")

    # ---- Coffer's own operations ----

    def call(self, region, target, body, akid, secret):
        server = self.servers[region]
        return signed_call(server, "secretsmanager", "secretsmanager." + target, body, akid, secret, region)

    def test_internal_operations_only_for_the_peer_principal(self):
        name = self.name()
        self.sm[EAST].create_secret(Name=name, SecretString="mine", AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        akid, secret = self.servers[WEST].credentials()  # the west's root: not the east's replicator
        bodies = (("CofferSyncSecret", {"SourceRegion": EAST, "Name": name, "Secret": {}, "WrappedValues": "AAAA"}),
                  ("CofferRemoveReplicaSecret", {"SourceRegion": EAST, "Name": name, "Suffix": "abcdef"}),
                  ("CofferReplicaPromoted", {"SourceRegion": EAST, "Name": name, "Suffix": "abcdef"}))
        for target, body in bodies:
            status, doc = self.call(WEST, target, body, akid, secret)
            self.assertEqual((status, doc.get("__type")), (400, "AccessDeniedException"), target)
            self.assertIn("secretsmanager:%s" % target, doc.get("Message", doc.get("message", "")))
        # the replicator, naming another source region than its own, neither
        rakid, rsecret = self.peers.replicator_keys[WEST]
        status, doc = self.call(WEST, "CofferRemoveReplicaSecret",
                                {"SourceRegion": "ca-central-1", "Name": name, "Suffix": "abcdef"}, rakid, rsecret)
        self.assertEqual((status, doc.get("__type")), (400, "AccessDeniedException"))
        # a box not sealed for this secret and region does not open
        status, doc = self.call(WEST, "CofferSyncSecret", {
            "SourceRegion": EAST, "Name": name, "WrappedValues": "AQAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "Secret": {"Name": name, "Suffix": "abcdef", "Versions": []}}, rakid, rsecret)
        self.assertEqual(status, 400)
        self.assertEqual(self.replica_value(name)["SecretString"], "mine")

    def test_audited_without_values(self):
        name = self.name()
        value = "audit-canary-%s" % uuid.uuid4().hex[:6]
        self.sm[EAST].create_secret(Name=name, SecretString=value, AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        deadline = time.time() + 10
        while True:
            west = [e for e in trail_events(self.peers.dirs[WEST])
                    if e.get("eventSource") == "secretsmanager.amazonaws.com"
                    and e.get("eventName") == "CofferSyncSecret"
                    and (e.get("requestParameters") or {}).get("name") == name]
            east = [e for e in trail_events(self.peers.dirs[EAST])
                    if e.get("eventSource") == "secretsmanager.amazonaws.com" and e.get("eventName") == "CreateSecret"]
            if west and east:
                break
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        self.assertEqual(west[0]["userIdentity"]["arn"], PeerRegions.REPLICATOR)
        self.assertEqual(west[0]["requestParameters"]["sourceRegion"], EAST)
        for region in (EAST, WEST):
            for e in trail_events(self.peers.dirs[region]):
                self.assertNotIn(value, json.dumps(e))
                self.assertNotIn("WrappedValues", json.dumps(e.get("requestParameters") or {}))


if __name__ == "__main__":
    unittest.main()
