"""Multi-Region keys between two cofferd processes on loopback, us-east-1 and eu-west-1, each the
other's peer, driven through boto3: CreateKey MultiRegion, ReplicateKey, DescribeKey on both
sides, ciphertexts crossing regions with no call between the servers, UpdatePrimaryRegion, AWS's
errors, who may call Coffer's own replication operations, and deletion: a replica's reaches its
primary, a primary waits for its replicas (a day is 100 ms here: --deletion-day-ms)."""
import json
import os
import time
import unittest

from botocore.exceptions import ClientError

from harness import Cofferd, PeerRegions, signed_call

EAST, WEST, SOUTH = "us-east-1", "eu-west-1", "ap-southeast-2"
REGIONS = (EAST, WEST, SOUTH)
ACCOUNT = PeerRegions.ACCOUNT
REPLICATOR = PeerRegions.REPLICATOR


def allow(action, resource="*"):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


class MultiRegionTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.peers = PeerRegions(REGIONS, extra_args=("--quota-crypto-rps", "0", "--deletion-day-ms", "100")).start()
        cls.servers, cls.dirs, cls.replicator_keys = cls.peers.servers, cls.peers.dirs, cls.peers.replicator_keys
        cls.kms = {r: cls.servers[r].client("kms", region=r) for r in REGIONS}
        cls.iam = {r: cls.servers[r].client("iam", region=r) for r in REGIONS}

    @classmethod
    def tearDownClass(cls):
        cls.peers.stop()

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        err = cm.exception.response["Error"]
        return err["Code"], err.get("Message", "")

    def arn(self, region, key_id):
        return "arn:aws:kms:%s:%s:key/%s" % (region, ACCOUNT, key_id)

    def replicated_key(self, **kw):
        key_id = self.kms[EAST].create_key(MultiRegion=True, Description="mrk")["KeyMetadata"]["KeyId"]
        out = self.kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST, **kw)
        return key_id, out

    # ---- CreateKey and DescribeKey ----

    def test_create_multi_region_primary(self):
        meta = self.kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]
        self.assertRegex(meta["KeyId"], r"^mrk-[0-9a-f]{32}$")
        self.assertTrue(meta["MultiRegion"])
        self.assertEqual(meta["MultiRegionConfiguration"], {
            "MultiRegionKeyType": "PRIMARY",
            "PrimaryKey": {"Arn": self.arn(EAST, meta["KeyId"]), "Region": EAST},
            "ReplicaKeys": []})
        single = self.kms[EAST].create_key()["KeyMetadata"]
        self.assertFalse(single["MultiRegion"])
        self.assertNotIn("MultiRegionConfiguration", single)
        self.assertNotIn("mrk-", single["KeyId"])

    # ---- ReplicateKey ----

    def test_replicate_describe_both_sides(self):
        key_id, out = self.replicated_key(Description="the replica",
                                          Tags=[{"TagKey": "team", "TagValue": "west"}])
        meta = out["ReplicaKeyMetadata"]
        # AWS answers while the replica is being made; DescribeKey then shows it Enabled.
        self.assertEqual((meta["KeyState"], meta["Enabled"]), ("Creating", False))
        self.assertEqual(meta["KeyId"], key_id)
        self.assertEqual(meta["Arn"], self.arn(WEST, key_id))
        self.assertEqual(meta["Description"], "the replica")
        self.assertEqual(out["ReplicaTags"], [{"TagKey": "team", "TagValue": "west"}])
        self.assertIn("arn:aws:iam::%s:root" % ACCOUNT, out["ReplicaPolicy"])
        primary = {"Arn": self.arn(EAST, key_id), "Region": EAST}
        replicas = [{"Arn": self.arn(WEST, key_id), "Region": WEST}]

        east = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual(east["MultiRegionConfiguration"],
                         {"MultiRegionKeyType": "PRIMARY", "PrimaryKey": primary, "ReplicaKeys": replicas})
        self.assertEqual(east["Description"], "mrk")
        west = self.kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual(west["MultiRegionConfiguration"],
                         {"MultiRegionKeyType": "REPLICA", "PrimaryKey": primary, "ReplicaKeys": replicas})
        self.assertTrue(west["MultiRegion"])
        self.assertEqual(west["KeyState"], "Enabled")
        self.assertEqual(west["Arn"], self.arn(WEST, key_id))
        self.assertEqual(self.kms[WEST].list_resource_tags(KeyId=key_id)["Tags"],
                         [{"TagKey": "team", "TagValue": "west"}])

    def test_replica_policy_given(self):
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "all", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT},
            "Action": "kms:*", "Resource": "*"}]})
        key_id, out = self.replicated_key(Policy=policy)
        self.assertEqual(out["ReplicaPolicy"], policy)
        self.assertEqual(self.kms[WEST].get_key_policy(KeyId=key_id, PolicyName="default")["Policy"], policy)

    def test_ciphertext_crosses_regions_both_ways(self):
        key_id, _ = self.replicated_key()
        ctx = {"purpose": "mrk-test"}
        blob = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"from the east",
                                      EncryptionContext=ctx)["CiphertextBlob"]
        # Stop nothing, ask nothing of the east: the west opens it with its own copy.
        out = self.kms[WEST].decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
        self.assertEqual(out["Plaintext"], b"from the east")
        self.assertEqual(out["KeyId"], self.arn(WEST, key_id))
        out = self.kms[WEST].decrypt(CiphertextBlob=blob, EncryptionContext=ctx,
                                     KeyId=self.arn(WEST, key_id))
        self.assertEqual(out["Plaintext"], b"from the east")
        self.assertEqual(self.error(self.kms[WEST].decrypt, CiphertextBlob=blob)[0],
                         "InvalidCiphertextException")

        blob = self.kms[WEST].encrypt(KeyId=key_id, Plaintext=b"from the west")["CiphertextBlob"]
        self.assertEqual(self.kms[EAST].decrypt(CiphertextBlob=blob)["Plaintext"], b"from the west")
        dk = self.kms[WEST].generate_data_key(KeyId=key_id, KeySpec="AES_256")
        self.assertEqual(self.kms[EAST].decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"],
                         dk["Plaintext"])

    def test_single_region_ciphertext_stays_home(self):
        key_id = self.kms[EAST].create_key()["KeyMetadata"]["KeyId"]
        blob = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
        self.assertEqual(self.error(self.kms[WEST].decrypt, CiphertextBlob=blob)[0],
                         "InvalidCiphertextException")

    def test_replicate_errors(self):
        key_id, _ = self.replicated_key()
        code, msg = self.error(self.kms[EAST].replicate_key, KeyId=key_id, ReplicaRegion=WEST)
        self.assertEqual(code, "AlreadyExistsException")
        self.assertIn(self.arn(WEST, key_id), msg)

        single = self.kms[EAST].create_key()["KeyMetadata"]["KeyId"]
        self.assertEqual(self.error(self.kms[EAST].replicate_key, KeyId=single, ReplicaRegion=WEST),
                         ("UnsupportedOperationException",
                          "%s is not a multi-region primary key." % self.arn(EAST, single)))
        # A replica is not a primary either.
        self.assertEqual(self.error(self.kms[WEST].replicate_key, KeyId=key_id, ReplicaRegion=EAST),
                         ("UnsupportedOperationException",
                          "%s is not a multi-region primary key." % self.arn(WEST, key_id)))
        fresh = self.kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        self.assertEqual(self.error(self.kms[EAST].replicate_key, KeyId=fresh, ReplicaRegion="ca-central-1")[0],
                         "UnsupportedOperationException")
        self.assertEqual(self.error(self.kms[EAST].replicate_key, KeyId=fresh, ReplicaRegion=EAST)[0],
                         "UnsupportedOperationException")
        self.assertEqual(self.error(self.kms[EAST].replicate_key, KeyId=fresh, ReplicaRegion="moon")[0],
                         "ValidationException")
        self.assertEqual(self.error(self.kms[EAST].replicate_key, KeyId="mrk-" + "0" * 32,
                                    ReplicaRegion=WEST)[0], "NotFoundException")
        # A policy the replica region refuses leaves no replica and no trace on the primary.
        code, _ = self.error(self.kms[EAST].replicate_key, KeyId=fresh, ReplicaRegion=WEST, Policy="{not json")
        self.assertEqual(code, "MalformedPolicyDocumentException")
        self.assertEqual(self.kms[EAST].describe_key(KeyId=fresh)["KeyMetadata"]
                         ["MultiRegionConfiguration"]["ReplicaKeys"], [])
        self.assertEqual(self.error(self.kms[WEST].describe_key, KeyId=fresh)[0], "NotFoundException")

    # ---- UpdatePrimaryRegion ----

    def test_update_primary_region_swaps_roles(self):
        key_id, _ = self.replicated_key()
        self.kms[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
        east = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        west = self.kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        primary = {"Arn": self.arn(WEST, key_id), "Region": WEST}
        replicas = [{"Arn": self.arn(EAST, key_id), "Region": EAST}]
        self.assertEqual(east, {"MultiRegionKeyType": "REPLICA", "PrimaryKey": primary, "ReplicaKeys": replicas})
        self.assertEqual(west, {"MultiRegionKeyType": "PRIMARY", "PrimaryKey": primary, "ReplicaKeys": replicas})

        # The east is a replica now: only the west may replicate or move the primary.
        self.assertEqual(self.error(self.kms[EAST].update_primary_region, KeyId=key_id, PrimaryRegion=WEST)[0],
                         "UnsupportedOperationException")
        self.assertEqual(self.error(self.kms[WEST].replicate_key, KeyId=key_id, ReplicaRegion=EAST)[0],
                         "AlreadyExistsException")
        blob = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"still one key")["CiphertextBlob"]
        self.assertEqual(self.kms[WEST].decrypt(CiphertextBlob=blob)["Plaintext"], b"still one key")

        # And back again, from the new primary's side.
        self.kms[WEST].update_primary_region(KeyId=self.arn(WEST, key_id), PrimaryRegion=EAST)
        east = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        self.assertEqual(east["MultiRegionKeyType"], "PRIMARY")
        west = self.kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        self.assertEqual(west["MultiRegionKeyType"], "REPLICA")
        self.assertEqual(west["PrimaryKey"]["Region"], EAST)

    def test_update_primary_region_errors(self):
        single = self.kms[EAST].create_key()["KeyMetadata"]["KeyId"]
        self.assertEqual(self.error(self.kms[EAST].update_primary_region, KeyId=single, PrimaryRegion=WEST)[0],
                         "UnsupportedOperationException")
        lone = self.kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        self.assertEqual(self.error(self.kms[EAST].update_primary_region, KeyId=lone, PrimaryRegion=WEST)[0],
                         "NotFoundException")
        self.assertEqual(self.error(self.kms[EAST].update_primary_region, KeyId=lone, PrimaryRegion="x")[0],
                         "ValidationException")

    def test_every_replica_knows_every_replica(self):
        key_id, _ = self.replicated_key()
        self.kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=SOUTH)
        replicas = [{"Arn": self.arn(WEST, key_id), "Region": WEST},
                    {"Arn": self.arn(SOUTH, key_id), "Region": SOUTH}]
        for region in REGIONS:
            mrc = self.kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
            self.assertEqual(mrc["ReplicaKeys"], replicas, region)
            self.assertEqual(mrc["PrimaryKey"]["Region"], EAST, region)
        blob = self.kms[SOUTH].encrypt(KeyId=key_id, Plaintext=b"three ways")["CiphertextBlob"]
        for region in REGIONS:
            self.assertEqual(self.kms[region].decrypt(CiphertextBlob=blob)["Plaintext"], b"three ways")

        # The old primary tells the third region who the primary is now.
        self.kms[EAST].update_primary_region(KeyId=key_id, PrimaryRegion=SOUTH)
        for region in REGIONS:
            mrc = self.kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
            self.assertEqual(mrc["PrimaryKey"], {"Arn": self.arn(SOUTH, key_id), "Region": SOUTH}, region)
            self.assertEqual(mrc["MultiRegionKeyType"], "PRIMARY" if region == SOUTH else "REPLICA", region)
            self.assertEqual(sorted(r["Region"] for r in mrc["ReplicaKeys"]), [WEST, EAST], region)

    def test_aws_cli(self):
        east, west = self.servers[EAST], self.servers[WEST]
        _, out, _ = east.aws("kms", "create-key", "--multi-region", "--region", EAST, check=True)
        key_id = out["KeyMetadata"]["KeyId"]
        _, out, _ = east.aws("kms", "replicate-key", "--key-id", key_id, "--replica-region", WEST,
                             "--description", "cli replica", "--region", EAST, check=True)
        self.assertEqual(out["ReplicaKeyMetadata"]["Arn"], self.arn(WEST, key_id))
        _, out, _ = west.aws("kms", "describe-key", "--key-id", key_id, "--region", WEST, check=True)
        self.assertEqual(out["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"], "REPLICA")
        self.assertEqual(out["KeyMetadata"]["Description"], "cli replica")
        code, _, err = east.aws("kms", "replicate-key", "--key-id", key_id, "--replica-region", WEST,
                                "--region", EAST)
        self.assertNotEqual(code, 0)
        self.assertIn("AlreadyExistsException", err)
        east.aws("kms", "update-primary-region", "--key-id", key_id, "--primary-region", WEST,
                 "--region", EAST, check=True)
        _, out, _ = west.aws("kms", "describe-key", "--key-id", key_id, "--region", WEST, check=True)
        self.assertEqual(out["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"], "PRIMARY")

    # ---- Coffer's replication operations ----

    def call(self, region, target, body, akid, secret):
        server = self.servers[region]
        return signed_call(server, "kms", "TrentService." + target, body, akid, secret, region)

    def test_rotation_reaches_replicas(self):
        key_id, _ = self.replicated_key()
        akid, secret = self.servers[EAST].credentials()
        old = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
        status, doc = self.call(EAST, "RotateKeyOnDemand", {"KeyId": key_id}, akid, secret)
        self.assertEqual(status, 200, doc)
        # The primary pushes the new material before it answers: a ciphertext under it opens at
        # the replica at once, and the older one still does.
        blob = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"rotated")["CiphertextBlob"]
        self.assertEqual(self.kms[WEST].decrypt(CiphertextBlob=blob)["Plaintext"], b"rotated")
        self.assertEqual(self.kms[WEST].decrypt(CiphertextBlob=old)["Plaintext"], b"before")
        # And the other way round: the replica encrypts under the same current material.
        back = self.kms[WEST].encrypt(KeyId=key_id, Plaintext=b"west")["CiphertextBlob"]
        self.assertEqual(self.kms[EAST].decrypt(CiphertextBlob=back)["Plaintext"], b"west")
        # A replica does not rotate on its own.
        wakid, wsecret = self.servers[WEST].credentials()
        status, doc = self.call(WEST, "RotateKeyOnDemand", {"KeyId": key_id}, wakid, wsecret)
        self.assertEqual((status, doc.get("__type")), (400, "UnsupportedOperationException"))
        status, doc = self.call(WEST, "EnableKeyRotation", {"KeyId": key_id}, wakid, wsecret)
        self.assertEqual((status, doc.get("__type")), (400, "UnsupportedOperationException"))

    def test_replication_operations_only_for_the_peer_principal(self):
        # The operator of the west (root of the account) is not the east's replication principal.
        akid, secret = self.servers[WEST].credentials()
        status, doc = self.call(WEST, "CofferGetReplicationKey", {"SourceRegion": EAST}, akid, secret)
        self.assertEqual((status, doc.get("__type")), (400, "AccessDeniedException"))
        # Nor is a user whose policies allow every KMS action.
        self.iam[WEST].create_user(UserName="kms-admin")
        self.iam[WEST].put_user_policy(UserName="kms-admin", PolicyName="all", PolicyDocument=allow("kms:*"))
        k = self.iam[WEST].create_access_key(UserName="kms-admin")["AccessKey"]
        for target, body in (("CofferGetReplicationKey", {"SourceRegion": EAST}),
                             ("CofferSyncReplica", {"SourceRegion": EAST, "KeyRecord": "{}",
                                                    "WrappedMaterial": "AAAA"}),
                             ("CofferReplicaDeleted", {"SourceRegion": EAST, "KeyId": "mrk-" + "0" * 32})):
            status, doc = self.call(WEST, target, body, k["AccessKeyId"], k["SecretAccessKey"])
            self.assertEqual((status, doc.get("__type")), (400, "AccessDeniedException"), target)

        # The replication credential works only as the region it is configured for ...
        rakid, rsecret = self.replicator_keys[WEST]
        status, doc = self.call(WEST, "CofferGetReplicationKey", {"SourceRegion": EAST}, rakid, rsecret)
        self.assertEqual(status, 200)
        self.assertIn("PublicKey", doc)
        status, doc = self.call(WEST, "CofferGetReplicationKey", {"SourceRegion": "ca-central-1"}, rakid, rsecret)
        self.assertEqual((status, doc.get("__type")), (400, "AccessDeniedException"))
        # ... and is no ordinary caller: it has no KMS permission of its own.
        kms = self.servers[WEST].client("kms", region=WEST, akid=rakid, secret=rsecret)
        self.assertEqual(self.error(kms.list_keys)[0], "AccessDeniedException")
        # A material box it did not seal for this region does not open.
        status, doc = self.call(WEST, "CofferSyncReplica", {
            "SourceRegion": EAST, "Create": True, "WrappedMaterial": "AQAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "KeyRecord": json.dumps({
                "KeyId": "mrk-" + "1" * 32, "AWSAccountId": ACCOUNT, "KeySpec": "SYMMETRIC_DEFAULT",
                "KeyUsage": "ENCRYPT_DECRYPT", "Origin": "AWS_KMS", "KeyMaterials": [],
                "CurrentKeyMaterialId": "0" * 64,
                "MultiRegionConfiguration": {"MultiRegionKeyType": "REPLICA", "PrimaryRegion": EAST,
                                             "ReplicaRegions": [WEST]}})}, rakid, rsecret)
        self.assertEqual((status, doc.get("__type")), (400, "ValidationException"))


    # ---- ReplicateKey sent to the replica region (as Terraform's aws_kms_replica_key does) ----

    def test_replicate_from_the_replica_endpoint(self):
        key_id = self.kms[EAST].create_key(MultiRegion=True, Description="pulled")["KeyMetadata"]["KeyId"]
        blob = self.kms[EAST].encrypt(KeyId=key_id, Plaintext=b"east")["CiphertextBlob"]
        # The west's endpoint, signed for the east (the primary's region), the west's credentials.
        west_as_east = self.servers[WEST].client("kms", region=EAST)

        # The east's key policy lets its replication principal replicate nothing yet.
        code, msg = self.error(west_as_east.replicate_key, KeyId=key_id, ReplicaRegion=WEST)
        self.assertIn("AccessDeniedException", msg)
        self.assertEqual(self.error(self.kms[WEST].describe_key, KeyId=key_id)[0], "NotFoundException")

        self.iam[EAST].put_user_policy(UserName="replicator", PolicyName="replicate",
                                       PolicyDocument=allow("kms:ReplicateKey"))
        self.addCleanup(self.iam[EAST].delete_user_policy, UserName="replicator", PolicyName="replicate")

        # A west user without kms:ReplicateKey on the primary key gets nothing either.
        self.iam[WEST].create_user(UserName="creator-only")
        self.addCleanup(self.iam[WEST].delete_user, UserName="creator-only")
        self.iam[WEST].put_user_policy(UserName="creator-only", PolicyName="c", PolicyDocument=allow("kms:CreateKey"))
        self.addCleanup(self.iam[WEST].delete_user_policy, UserName="creator-only", PolicyName="c")
        k = self.iam[WEST].create_access_key(UserName="creator-only")["AccessKey"]
        self.addCleanup(self.iam[WEST].delete_access_key, UserName="creator-only", AccessKeyId=k["AccessKeyId"])
        weak = self.servers[WEST].client("kms", region=EAST, akid=k["AccessKeyId"], secret=k["SecretAccessKey"])
        self.assertEqual(self.error(weak.replicate_key, KeyId=key_id, ReplicaRegion=WEST)[0],
                         "AccessDeniedException")

        out = west_as_east.replicate_key(KeyId=key_id, ReplicaRegion=WEST, Description="made in the west",
                                         Tags=[{"TagKey": "side", "TagValue": "west"}])
        meta = out["ReplicaKeyMetadata"]
        self.assertEqual(meta["Arn"], self.arn(WEST, key_id))
        self.assertEqual((meta["KeyState"], meta["Description"]), ("Creating", "made in the west"))
        self.assertEqual(out["ReplicaTags"], [{"TagKey": "side", "TagValue": "west"}])
        west = self.kms[WEST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual(west["KeyState"], "Enabled")
        self.assertEqual(west["MultiRegionConfiguration"]["MultiRegionKeyType"], "REPLICA")
        self.assertEqual(west["MultiRegionConfiguration"]["PrimaryKey"]["Region"], EAST)
        east = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertIn(WEST, [r["Region"] for r in east["MultiRegionConfiguration"]["ReplicaKeys"]])
        self.assertEqual(self.kms[WEST].decrypt(CiphertextBlob=blob)["Plaintext"], b"east")
        # Asked again: the replica exists.
        self.assertEqual(self.error(west_as_east.replicate_key, KeyId=key_id, ReplicaRegion=WEST)[0],
                         "AlreadyExistsException")

        # Signed for the east, another replica region: the west creates replicas in the west only.
        self.assertEqual(self.error(west_as_east.replicate_key, KeyId=key_id, ReplicaRegion=SOUTH)[0],
                         "UnsupportedOperationException")
        # Only ReplicateKey may be signed for another region, and only for a peer region.
        self.assertEqual(self.error(west_as_east.describe_key, KeyId=key_id)[0], "InvalidSignatureException")
        stranger = self.servers[WEST].client("kms", region="ca-central-1")
        self.assertEqual(self.error(stranger.replicate_key, KeyId=key_id, ReplicaRegion=WEST)[0],
                         "InvalidSignatureException")

    # ---- ReplicateKey's policy ----

    def test_replicate_key_lockout_safety_check(self):
        key_id = self.kms[EAST].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        # A policy that leaves the caller unable to change it: refused unless bypassed, as CreateKey.
        locked = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT},
            "Action": "kms:Decrypt", "Resource": "*"}]})
        code, msg = self.error(self.kms[EAST].replicate_key, KeyId=key_id, ReplicaRegion=WEST, Policy=locked)
        self.assertEqual((code, msg), ("MalformedPolicyDocumentException",
                                       "The new key policy will not allow you to update the key policy in the future."))
        self.assertEqual(self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
                         ["MultiRegionConfiguration"]["ReplicaKeys"], [])
        out = self.kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST, Policy=locked,
                                           BypassPolicyLockoutSafetyCheck=True)
        self.assertEqual(json.loads(out["ReplicaPolicy"]), json.loads(locked))

    # ---- Deletion ----

    def wait_for(self, fn, timeout=15):
        deadline = time.time() + timeout
        while True:
            value = fn()
            if value or time.time() > deadline:
                return value
            time.sleep(0.2)

    def replica_regions(self, region, key_id):
        meta = self.kms[region].describe_key(KeyId=key_id)["KeyMetadata"]
        return [r["Region"] for r in meta["MultiRegionConfiguration"]["ReplicaKeys"]]

    def gone(self, region, key_id):
        try:
            self.kms[region].describe_key(KeyId=key_id)
            return False
        except ClientError as e:
            return e.response["Error"]["Code"] == "NotFoundException"

    def test_replica_deletion_reaches_primary(self):
        key_id, _ = self.replicated_key()
        self.kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=SOUTH)
        out = self.kms[WEST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertEqual(out["KeyState"], "PendingDeletion")
        self.assertIn("DeletionDate", out)
        # Scheduled is not deleted: the primary still lists it.
        self.assertEqual(sorted(self.replica_regions(EAST, key_id)), sorted([WEST, SOUTH]))
        self.assertTrue(self.wait_for(lambda: self.gone(WEST, key_id)))
        self.assertTrue(self.wait_for(lambda: self.replica_regions(EAST, key_id) == [SOUTH]))
        # The primary tells its other replicas, and may replicate into the region again.
        self.assertTrue(self.wait_for(lambda: self.replica_regions(SOUTH, key_id) == [SOUTH]))
        out = self.kms[EAST].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        self.assertEqual(out["ReplicaKeyMetadata"]["KeyId"], key_id)
        self.assertEqual(sorted(self.replica_regions(EAST, key_id)), sorted([WEST, SOUTH]))

    def test_primary_waits_for_its_replicas(self):
        key_id, _ = self.replicated_key()
        out = self.kms[EAST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertEqual((out["KeyState"], out["PendingWindowInDays"]), ("PendingReplicaDeletion", 7))
        self.assertNotIn("DeletionDate", out)
        meta = self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual((meta["KeyState"], meta["PendingDeletionWindowInDays"]), ("PendingReplicaDeletion", 7))
        self.assertNotIn("DeletionDate", meta)
        arn = self.arn(EAST, key_id)
        self.assertEqual(self.error(self.kms[EAST].encrypt, KeyId=key_id, Plaintext=b"x"),
                         ("KMSInvalidStateException", "%s is pending deletion." % arn))
        self.assertEqual(self.error(self.kms[EAST].replicate_key, KeyId=key_id, ReplicaRegion=SOUTH),
                         ("KMSInvalidStateException", "%s is pending deletion." % arn))
        self.assertEqual(self.error(self.kms[EAST].schedule_key_deletion, KeyId=key_id),
                         ("KMSInvalidStateException", "%s is pending deletion." % arn))
        # Cancelled, it is Disabled as any key; scheduled again, it waits again.
        self.assertEqual(self.kms[EAST].cancel_key_deletion(KeyId=key_id)["KeyId"], arn)
        self.assertEqual(self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"], "Disabled")
        self.kms[EAST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        # Well past the 7 "days": still there, waiting for the replica.
        time.sleep(1.5)
        self.assertEqual(self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"],
                         "PendingReplicaDeletion")
        # The replica's deletion starts the primary's waiting period, which then runs out.
        self.kms[WEST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        meta = self.wait_for(lambda: (lambda m: m if m["KeyState"] == "PendingDeletion" else None)(
            self.kms[EAST].describe_key(KeyId=key_id)["KeyMetadata"]))
        self.assertIsNotNone(meta)
        self.assertIn("DeletionDate", meta)
        self.assertEqual(meta["MultiRegionConfiguration"]["ReplicaKeys"], [])
        self.assertTrue(self.wait_for(lambda: self.gone(EAST, key_id)))

    def test_replica_deletion_retried_while_primary_is_down(self):
        key_id, _ = self.replicated_key()
        east = self.servers[EAST]
        east.stop()
        try:
            self.kms[WEST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
            self.assertTrue(self.wait_for(lambda: self.gone(WEST, key_id)))
            time.sleep(1.2)  # at least one more sweep fails to reach the primary
        finally:
            east.start(port=self.peers.ports[EAST])
        self.assertTrue(self.wait_for(lambda: self.replica_regions(EAST, key_id) == []))


class PeerConfigTest(unittest.TestCase):
    """A peer setting that cannot work stops the start, with the reason in the log."""

    def refused(self, *args):
        server = Cofferd(extra_args=list(args))
        try:
            with self.assertRaises(RuntimeError):
                server.start(timeout=10)
            return server.log()
        finally:
            server.cleanup()

    def test_bad_peers_refuse_to_start(self):
        self.assertIn("--peer", self.refused("--peer", "eu-west-1"))
        self.assertIn("http(s) URL", self.refused("--peer", "eu-west-1=ftp://host"))
        self.assertIn("unknown setting 'cert'", self.refused("--peer", "eu-west-1=https://h:1,cert=/x"))
        self.assertIn("its own peer", self.refused("--region", "eu-west-1", "--peer", "eu-west-1=https://h:1"))

    def test_peers_from_the_config_file(self):
        server = Cofferd(extra_args=["--region", EAST])
        try:
            with open(os.path.join(server.data_dir, "cofferd.conf"), "w") as f:
                f.write("peer = eu-west-1=https://127.0.0.1:1,ca=/nonexistent.pem,credentials=/nonexistent\n")
            server.start()
            kms = server.client("kms", region=EAST)
            key_id = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
            # A configured peer that cannot be reached: the primary stays as it was.
            with self.assertRaises(ClientError) as cm:
                kms.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
            self.assertNotEqual(cm.exception.response["Error"]["Code"], "UnsupportedOperationException")
            with self.assertRaises(ClientError) as cm:
                kms.replicate_key(KeyId=key_id, ReplicaRegion=SOUTH)
            self.assertEqual(cm.exception.response["Error"]["Code"], "UnsupportedOperationException")
            self.assertEqual(kms.describe_key(KeyId=key_id)["KeyMetadata"]
                             ["MultiRegionConfiguration"]["ReplicaKeys"], [])
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
