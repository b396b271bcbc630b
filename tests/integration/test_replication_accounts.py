"""Multi-Region keys and secrets of an account other than the replication principal's, between
two cofferd processes on loopback (us-east-1, eu-west-1), each the other's peer: the account
"tenant" exists in both deployments with the same id (`coffer admin create-account
--account-id`). A tenant's key and secret replicate into the tenant's account in the other region,
readable there by the tenant's user and absent from the replicator's account; the replication
events name the tenant's account; an account the other region does not have fails clearly; the
pulled replica (ReplicateKey sent to the replica region) reads the key in its own account; and a
material box made for one account does not install into another."""
import json
import subprocess
import time
import unittest
import uuid

from botocore.exceptions import ClientError

from harness import COFFER, PeerRegions, signed_call, trail_events

EAST, WEST = "us-east-1", "eu-west-1"
OPERATOR = PeerRegions.ACCOUNT
REPLICATOR = PeerRegions.REPLICATOR


def allow(*actions):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


class ReplicationAccountsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.peers = PeerRegions((EAST, WEST)).start()
        cls.servers = cls.peers.servers
        try:
            east = cls.create_account(EAST, "tenant")
            cls.tenant = east["AccountId"]
            west = cls.create_account(WEST, "tenant", cls.tenant)
            cls.root = {EAST: east, WEST: west}
            # The tenant's user "alice" in both regions, allowed KMS and Secrets Manager.
            cls.alice = {}
            for r in (EAST, WEST):
                iam = cls.as_creds(r, "iam", cls.root[r])
                iam.create_user(UserName="alice")
                iam.put_user_policy(UserName="alice", PolicyName="all",
                                    PolicyDocument=allow("kms:*", "secretsmanager:*"))
                cls.alice[r] = iam.create_access_key(UserName="alice")["AccessKey"]
            # An account only the east has.
            cls.lonely = cls.create_account(EAST, "lonely")
        except Exception:
            cls.peers.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.peers.stop()

    @classmethod
    def create_account(cls, region, name, account_id=None):
        server = cls.servers[region]
        args = [COFFER, "admin", "create-account", name, "--data-dir", server.data_dir, "--endpoint",
                server.endpoint]
        if account_id is not None:
            args += ["--account-id", account_id]
        r = subprocess.run(args, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(r.stderr.decode())
        return json.loads(r.stdout)

    @classmethod
    def as_creds(cls, region, service, creds, signing_region=None):
        return cls.servers[region].client(service, region=signing_region or region, akid=creds["AccessKeyId"],
                                          secret=creds["SecretAccessKey"])

    def kms(self, region, creds=None):
        return self.as_creds(region, "kms", creds or self.alice[region])

    def sm(self, region, creds=None):
        return self.as_creds(region, "secretsmanager", creds or self.alice[region])

    def error(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        err = cm.exception.response["Error"]
        return err["Code"], err.get("Message", "")

    def call(self, region, target, body, creds):
        server = self.servers[region]
        return signed_call(server, "kms", "TrentService." + target, body, *creds, region)

    def events(self, region, name, pred=lambda e: True, timeout=10):
        deadline = time.time() + timeout
        while True:
            found = [e for e in trail_events(self.peers.dirs[region]) if e.get("eventName") == name and pred(e)]
            if found or time.time() > deadline:
                return found
            time.sleep(0.2)

    def replicator_may_replicate(self, key_id):
        """The tenant's key policy lets the east's replication principal replicate the key, and
        that principal's own policy allows it: consent of both accounts, as across accounts."""
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % self.tenant}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": REPLICATOR}, "Action": "kms:ReplicateKey", "Resource": "*"}]}
        self.kms(EAST).put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
        iam = self.servers[EAST].client("iam", region=EAST)
        iam.put_user_policy(UserName="replicator", PolicyName="replicate", PolicyDocument=allow("kms:ReplicateKey"))
        self.addCleanup(iam.delete_user_policy, UserName="replicator", PolicyName="replicate")

    # ---- KMS ----

    def test_key_replicates_into_its_account(self):
        east, west = self.kms(EAST), self.kms(WEST)
        key_id = east.create_key(MultiRegion=True, Description="tenant mrk")["KeyMetadata"]["KeyId"]
        blob = east.encrypt(KeyId=key_id, Plaintext=b"tenant data")["CiphertextBlob"]
        out = east.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        arn = "arn:aws:kms:%s:%s:key/%s" % (WEST, self.tenant, key_id)
        self.assertEqual(out["ReplicaKeyMetadata"]["Arn"], arn)
        meta = west.describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual((meta["Arn"], meta["AWSAccountId"]), (arn, self.tenant))
        self.assertEqual(meta["MultiRegionConfiguration"]["MultiRegionKeyType"], "REPLICA")
        self.assertEqual(west.decrypt(CiphertextBlob=blob)["Plaintext"], b"tenant data")
        # Not in the replicator's account.
        operator = self.servers[WEST].client("kms", region=WEST)
        self.assertEqual(self.error(operator.describe_key, KeyId=key_id)[0], "NotFoundException")
        self.assertNotIn(key_id, [k["KeyId"] for k in operator.list_keys(Limit=1000)["Keys"]])
        # The west's trail names the tenant's account as the key's.
        ev = self.events(WEST, "CofferSyncReplica",
                         lambda e: any(r.get("ARN") == arn for r in e.get("resources") or []))
        self.assertTrue(ev)
        self.assertEqual(ev[0]["userIdentity"]["arn"], REPLICATOR)
        self.assertEqual([r["accountId"] for r in ev[0]["resources"] if r.get("ARN") == arn], [self.tenant])

    def test_key_of_an_account_the_peer_lacks(self):
        east = self.kms(EAST, self.lonely)
        key_id = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        code, msg = self.error(east.replicate_key, KeyId=key_id, ReplicaRegion=WEST)
        self.assertEqual(code, "NotFoundException")
        self.assertIn("Account %s does not exist in region %s." % (self.lonely["AccountId"], WEST), msg)
        operator = self.servers[WEST].client("kms", region=WEST)
        self.assertEqual(self.error(operator.describe_key, KeyId=key_id)[0], "NotFoundException")

    def test_pulled_replica_reads_the_key_in_its_account(self):
        key_id = self.kms(EAST).create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        blob = self.kms(EAST).encrypt(KeyId=key_id, Plaintext=b"pulled")["CiphertextBlob"]
        west_as_east = self.as_creds(WEST, "kms", self.alice[WEST], signing_region=EAST)
        # Without the tenant's consent the east's replication principal reads nothing.
        code, msg = self.error(west_as_east.replicate_key, KeyId=key_id, ReplicaRegion=WEST)
        self.assertIn("AccessDeniedException", msg)
        self.replicator_may_replicate(key_id)
        out = west_as_east.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        arn = "arn:aws:kms:%s:%s:key/%s" % (WEST, self.tenant, key_id)
        self.assertEqual(out["ReplicaKeyMetadata"]["Arn"], arn)
        self.assertEqual(self.kms(WEST).decrypt(CiphertextBlob=blob)["Plaintext"], b"pulled")
        ev = self.events(EAST, "CofferPullReplica",
                         lambda e: any(key_id in (r.get("ARN") or "") for r in e.get("resources") or []))
        self.assertTrue(ev)
        self.assertEqual({r["accountId"] for r in ev[0]["resources"]}, {self.tenant})

    def test_box_for_one_account_does_not_open_as_another(self):
        key_id = self.kms(EAST).create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        self.replicator_may_replicate(key_id)
        to_west = self.peers.replicator_keys[WEST]  # the credential the east calls the west with
        to_east = self.peers.replicator_keys[EAST]
        status, doc = self.call(WEST, "CofferGetReplicationKey", {"SourceRegion": EAST}, to_west)
        self.assertEqual(status, 200, doc)
        # A real box for the west, made for the tenant's account.
        status, pulled = self.call(EAST, "CofferPullReplica", {
            "SourceRegion": WEST, "PublicKey": doc["PublicKey"],
            "KeyId": "arn:aws:kms:%s:%s:key/%s" % (EAST, self.tenant, key_id)}, to_east)
        self.assertEqual(status, 200, pulled)
        record = json.loads(pulled["KeyRecord"])
        self.assertEqual(record["AWSAccountId"], self.tenant)

        def sync(account, record_account):
            rec = dict(record, AWSAccountId=record_account)
            return self.call(WEST, "CofferSyncReplica", {
                "SourceRegion": EAST, "AccountId": account, "Create": True, "KeyRecord": json.dumps(rec),
                "WrappedMaterial": pulled["WrappedMaterial"]}, to_west)

        # Named as the replicator's account: the box is the tenant's and does not open.
        status, doc = sync(OPERATOR, OPERATOR)
        self.assertEqual((status, doc.get("__type")), (400, "ValidationException"), doc)
        self.assertIn("cannot be opened", doc.get("message", doc.get("Message", "")))
        # A record of another account than the one named: refused.
        status, doc = sync(OPERATOR, self.tenant)
        self.assertEqual((status, doc.get("__type")), (400, "ValidationException"), doc)
        # An account this region does not have.
        status, doc = sync("123456789012", "123456789012")
        self.assertEqual((status, doc.get("__type")), (400, "NotFoundException"), doc)
        operator = self.servers[WEST].client("kms", region=WEST)
        self.assertEqual(self.error(operator.describe_key, KeyId=key_id)[0], "NotFoundException")
        # Named as the tenant's, the same box installs in the tenant's account.
        status, doc = sync(self.tenant, self.tenant)
        self.assertEqual(status, 200, doc)
        self.assertEqual(self.kms(WEST).describe_key(KeyId=key_id)["KeyMetadata"]["AWSAccountId"], self.tenant)

    def test_only_the_peer_principal_may_name_an_account(self):
        # The tenant's own root is no replication principal, naming its account or not.
        status, doc = self.call(WEST, "CofferSyncReplica", {
            "SourceRegion": EAST, "AccountId": self.tenant, "KeyRecord": "{}", "WrappedMaterial": "AAAA"},
            (self.root[WEST]["AccessKeyId"], self.root[WEST]["SecretAccessKey"]))
        self.assertEqual((status, doc.get("__type")), (400, "AccessDeniedException"))

    # ---- Secrets Manager ----

    def status(self, sm, name):
        for s in sm.describe_secret(SecretId=name).get("ReplicationStatus", []):
            if s["Region"] == WEST:
                return s
        return {}

    def wait_status(self, sm, name, want, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline and self.status(sm, name).get("Status") != want:
            time.sleep(0.2)
        return self.status(sm, name)

    def test_secret_replicates_into_its_account(self):
        name = "tenant/%s" % uuid.uuid4().hex[:8]
        east, west = self.sm(EAST), self.sm(WEST)
        arn = east.create_secret(Name=name, SecretString="s3cret", AddReplicaRegions=[{"Region": WEST}])["ARN"]
        self.assertIn(":%s:" % self.tenant, arn)
        self.assertEqual(self.wait_status(east, name, "InSync").get("Status"), "InSync")
        got = west.get_secret_value(SecretId=name)
        self.assertEqual(got["SecretString"], "s3cret")
        self.assertEqual(got["ARN"], arn.replace(EAST, WEST))
        operator = self.servers[WEST].client("secretsmanager", region=WEST)
        self.assertEqual(self.error(operator.get_secret_value, SecretId=name)[0], "ResourceNotFoundException")
        # A new version follows; removing the region deletes the tenant's replica.
        east.put_secret_value(SecretId=name, SecretString="v2")
        deadline = time.time() + 20
        while time.time() < deadline and west.get_secret_value(SecretId=name)["SecretString"] != "v2":
            time.sleep(0.2)
        self.assertEqual(west.get_secret_value(SecretId=name)["SecretString"], "v2")
        ev = self.events(WEST, "CofferSyncSecret",
                         lambda e: (e.get("requestParameters") or {}).get("name") == name)
        self.assertTrue(ev)
        self.assertEqual({r["accountId"] for r in ev[0]["resources"]}, {self.tenant})
        east.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[WEST])
        self.assertEqual(self.error(west.get_secret_value, SecretId=name)[0], "ResourceNotFoundException")

    def test_secret_promoted_in_its_account(self):
        name = "tenant/%s" % uuid.uuid4().hex[:8]
        east, west = self.sm(EAST), self.sm(WEST)
        east.create_secret(Name=name, SecretString="x", AddReplicaRegions=[{"Region": WEST}])
        self.assertEqual(self.wait_status(east, name, "InSync").get("Status"), "InSync")
        west.stop_replication_to_replica(SecretId=name)
        # The primary (the tenant's secret) drops the region it was told of.
        deadline = time.time() + 10
        while time.time() < deadline and east.describe_secret(SecretId=name).get("ReplicationStatus"):
            time.sleep(0.2)
        self.assertFalse(east.describe_secret(SecretId=name).get("ReplicationStatus"))

    def test_secret_of_an_account_the_peer_lacks(self):
        name = "lonely/%s" % uuid.uuid4().hex[:8]
        east = self.sm(EAST, self.lonely)
        east.create_secret(Name=name, SecretString="x", AddReplicaRegions=[{"Region": WEST}])
        st = self.wait_status(east, name, "Failed")
        self.assertEqual(st.get("Status"), "Failed")
        self.assertIn("Account %s does not exist in region %s." % (self.lonely["AccountId"], WEST),
                      st.get("StatusMessage", ""))


if __name__ == "__main__":
    unittest.main()
