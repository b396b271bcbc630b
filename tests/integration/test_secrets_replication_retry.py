"""Multi-Region secrets when a replica's region is down at RemoveRegionsFromReplication: the
deletion of the replica is kept by the primary and retried by its replication job until the
region confirms it, across a restart of the primary too, and dropped when the region is added
back before it could be done (the new replica stays)."""
import time
import unittest
import uuid

from botocore.exceptions import ClientError

from harness import PeerRegions

EAST, WEST = "us-east-1", "eu-west-1"
WAIT = 40  # seconds: a retry every 5 s, plus restarts on a loaded machine


class SecretReplicaRemovalRetryTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.peers = PeerRegions((EAST, WEST)).start()
        cls.servers = cls.peers.servers

    @classmethod
    def tearDownClass(cls):
        cls.peers.stop()

    def sm(self, region):
        return self.servers[region].client("secretsmanager", region=region)

    def name(self):
        return "retry/%s-%s" % (self._testMethodName[5:25], uuid.uuid4().hex[:8])

    def wait_for(self, fn, timeout=WAIT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                v = fn()
                if v:
                    return v
            except ClientError:
                pass
            time.sleep(0.3)
        return fn()

    def in_sync(self, name):
        def check():
            st = self.sm(EAST).describe_secret(SecretId=name).get("ReplicationStatus", [])
            return len(st) == 1 and st[0]["Region"] == WEST and st[0]["Status"] == "InSync"
        return self.wait_for(check)

    def replica_gone(self, name):
        try:
            self.sm(WEST).describe_secret(SecretId=name)
            return False
        except ClientError as e:
            return e.response["Error"]["Code"] == "ResourceNotFoundException"

    def replicated(self, value):
        name = self.name()
        self.sm(EAST).create_secret(Name=name, SecretString=value, AddReplicaRegions=[{"Region": WEST}])
        self.assertTrue(self.in_sync(name))
        return name

    def remove_while_down(self, name):
        self.servers[WEST].stop()
        out = self.sm(EAST).remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[WEST])
        self.assertEqual(out["ReplicationStatus"], [])
        d = self.sm(EAST).describe_secret(SecretId=name)
        self.assertNotIn("ReplicationStatus", d)
        self.assertNotIn("PrimaryRegion", d)

    def start_west(self):
        self.servers[WEST].start(port=self.peers.ports[WEST])

    def test_replica_deleted_once_region_is_back(self):
        name = self.replicated("orphan?")
        try:
            self.remove_while_down(name)
        finally:
            self.start_west()
        self.assertTrue(self.wait_for(lambda: self.replica_gone(name)))
        # the primary is a standalone secret again and can be deleted
        self.sm(EAST).delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

    def test_pending_deletion_survives_primary_restart(self):
        name = self.replicated("durable")
        try:
            self.remove_while_down(name)
            self.servers[EAST].stop()
            self.servers[EAST].start(port=self.peers.ports[EAST])
        finally:
            self.start_west()
        self.assertTrue(self.wait_for(lambda: self.replica_gone(name)))
        self.sm(EAST).delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

    def test_region_added_back_keeps_new_replica(self):
        name = self.replicated("first")
        try:
            self.remove_while_down(name)
            self.sm(EAST).put_secret_value(SecretId=name, SecretString="second")
            self.sm(EAST).replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": WEST}])
        finally:
            self.start_west()
        self.assertTrue(self.in_sync(name))
        # past a retry of the old deletion: the replica the primary lists again is not deleted
        time.sleep(7)
        self.assertEqual(self.sm(WEST).get_secret_value(SecretId=name)["SecretString"], "second")
        self.assertTrue(self.in_sync(name))
        self.sm(EAST).remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[WEST])
        self.assertTrue(self.replica_gone(name))
        self.sm(EAST).delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


if __name__ == "__main__":
    unittest.main()
