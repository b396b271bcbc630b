"""Two cofferd nodes sharing one PostgreSQL database, as a multi-node deployment runs them: the
second node's data dir is a copy of the first's (same root key, TLS CA and credentials), both
started with --store postgres://.... Checks that what one node writes the other serves at once,
that alias changes racing from both nodes leave the store consistent (no alias created twice, no
per-key alias counter off, one AWS managed key however many first uses race), that time-driven work runs on one node and moves to the other when
that node is killed, and that the nodes ride out a PostgreSQL restart on their own.

The throw-away cluster comes from pg_cluster.py; the suite is skipped when the PostgreSQL server
binaries are missing.
"""
import random
import subprocess
import shutil
import tempfile
import threading
import time
import unittest

from botocore.exceptions import ClientError

from harness import COFFERD, trail_events
from pg_nodes import TwoNodes

THREADS_PER_NODE = 8


def error_code(e):
    return e.response["Error"]["Code"]


class PgMultiNodeTest(TwoNodes):
    # One alias per key: a per-key alias counter that drifts under a race then shows as a
    # CreateAlias refused (or allowed) wrongly.
    # A day of a deletion waiting period is 100 ms: 7 days pass in 0.7 s.
    ARGS = TwoNodes.ARGS + ("--max-aliases-per-key", "1", "--deletion-day-ms", "100")

    def kms(self, node):
        return node.client()

    def new_key(self, node=None):
        return self.kms(node or self.node1).create_key()["KeyMetadata"]["KeyId"]

    def test_key_made_on_one_node_works_on_the_other_at_once(self):
        k1, k2 = self.kms(self.node1), self.kms(self.node2)
        key = k1.create_key(Description="made on node 1")["KeyMetadata"]
        self.assertEqual(k2.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"], "made on node 1")
        ct = k2.encrypt(KeyId=key["KeyId"], Plaintext=b"from node 2")["CiphertextBlob"]
        self.assertEqual(k1.decrypt(CiphertextBlob=ct)["Plaintext"], b"from node 2")
        ct = k1.encrypt(KeyId=key["Arn"], Plaintext=b"from node 1")["CiphertextBlob"]
        self.assertEqual(k2.decrypt(CiphertextBlob=ct)["Plaintext"], b"from node 1")
        # And the other way round, through an alias made on node 2.
        other = k2.create_key()["KeyMetadata"]["KeyId"]
        k2.create_alias(AliasName="alias/made-on-node2", TargetKeyId=other)
        ct = k1.encrypt(KeyId="alias/made-on-node2", Plaintext=b"x")["CiphertextBlob"]
        self.assertEqual(k2.decrypt(CiphertextBlob=ct)["KeyId"].split("/")[-1], other)

    def race(self, fn):
        """Runs fn(client, thread index) on THREADS_PER_NODE threads per node, all released at
        once; returns the per-thread results."""
        clients = [self.kms(self.node1 if i % 2 == 0 else self.node2) for i in range(2 * THREADS_PER_NODE)]
        start = threading.Barrier(len(clients))
        results = [None] * len(clients)

        def run(i):
            start.wait()
            try:
                results[i] = fn(clients[i], i)
            except Exception as e:  # reported by the test, not lost in the thread
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        return results

    def aliases_named(self, node, name):
        out = []
        for page in self.kms(node).get_paginator("list_aliases").paginate():
            out += [a for a in page["Aliases"] if a["AliasName"] == name]
        return out

    def test_create_alias_race_has_one_winner(self):
        keys = [self.new_key(self.node1), self.new_key(self.node2)]

        def create(kms, i):
            try:
                kms.create_alias(AliasName="alias/contested", TargetKeyId=keys[i % 2])
                return keys[i % 2]
            except ClientError as e:
                return error_code(e)

        results = self.race(create)
        winners = [r for r in results if r in keys]
        self.assertEqual(len(winners), 1, results)
        self.assertEqual(sorted(set(results) - set(winners)), ["AlreadyExistsException"], results)
        for node in (self.node1, self.node2):
            listed = self.aliases_named(node, "alias/contested")
            self.assertEqual([a["TargetKeyId"] for a in listed], winners)
        # The loser's key holds no alias: it may still take its one.
        loser = [k for k in keys if k not in winners][0]
        self.kms(self.node2).create_alias(AliasName="alias/contested-loser", TargetKeyId=loser)

    def test_managed_key_first_use_race_makes_one_key(self):
        # An AWS managed key appears on the first use of its alias: both nodes at once make one.
        def describe(kms, i):
            return kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]["KeyId"]

        results = self.race(describe)
        self.assertEqual(len(set(results)), 1, results)
        self.assertIsInstance(results[0], str, results)
        made = [e for node in (self.node1, self.node2) for e in trail_events(node.data_dir)
                if e.get("eventName") == "CreateKey" and e.get("eventType") == "AwsServiceEvent"
                and results[0] in e.get("additionalEventData", {}).get("keyId", "")]
        self.assertEqual(len(made), 1)
        listed = self.aliases_named(self.node2, "alias/aws/secretsmanager")
        self.assertEqual([a.get("TargetKeyId") for a in listed], [results[0]])

    def test_update_alias_race_ends_consistent(self):
        keys = [self.new_key(self.node1 if i % 2 else self.node2) for i in range(4)]
        self.kms(self.node1).create_alias(AliasName="alias/moving", TargetKeyId=keys[0])

        def move(kms, i):
            rnd = random.Random(i)
            errors = []
            for _ in range(5):
                try:
                    kms.update_alias(AliasName="alias/moving", TargetKeyId=keys[rnd.randrange(len(keys))])
                except ClientError as e:
                    errors.append(error_code(e))
            return errors

        results = self.race(move)
        # With one alias over four keys, every move is within the one-alias-per-key limit: a
        # refusal would mean a counter went wrong under the race.
        self.assertEqual([r for r in results if r], [], results)
        listed = [self.aliases_named(node, "alias/moving") for node in (self.node1, self.node2)]
        self.assertEqual(listed[0], listed[1])
        self.assertEqual(len(listed[0]), 1)
        target = listed[0][0]["TargetKeyId"]
        self.assertIn(target, keys)
        # Every counter agrees with the records: the target is at its limit, the others are free.
        for n, key in enumerate(keys):
            kms = self.kms(self.node2 if n % 2 else self.node1)
            if key == target:
                with self.assertRaises(ClientError) as cm:
                    kms.create_alias(AliasName="alias/check-%d" % n, TargetKeyId=key)
                self.assertEqual(error_code(cm.exception), "LimitExceededException")
            else:
                kms.create_alias(AliasName="alias/check-%d" % n, TargetKeyId=key)

    def test_postgres_restart_needs_no_node_restart(self):
        k1, k2 = self.kms(self.node1), self.kms(self.node2)
        key = self.new_key(self.node1)
        k2.encrypt(KeyId=key, Plaintext=b"warm")  # both nodes hold connections now
        r = self.cluster.pg_ctl("-m", "fast", "stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            # Unreachable: a clear server error, quickly, not a hang.
            for kms in (k1, k2):
                t0 = time.time()
                with self.assertRaises(ClientError) as cm:
                    kms.create_key()
                self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500)
                self.assertLess(time.time() - t0, 10)
        finally:
            r = self.cluster.pg_ctl("start")
            self.assertEqual(r.returncode, 0, r.stderr)
        # Back: the first requests on either node succeed without a node restart.
        for kms in (k1, k2):
            new = kms.create_key()["KeyMetadata"]["KeyId"]
            ct = kms.encrypt(KeyId=new, Plaintext=b"after")["CiphertextBlob"]
            other = k2 if kms is k1 else k1
            self.assertEqual(other.decrypt(CiphertextBlob=ct)["Plaintext"], b"after")

    LEASE_LINE = "holds the scheduler lease"

    def lease_holders(self):
        """Nodes whose last word on the lease is that they hold it (a PostgreSQL restart in an
        earlier test may have moved it: the loser logs that it lost it)."""
        out = []
        for n in (self.node1, self.node2):
            lines = [l for l in n.log().splitlines() if "scheduler lease" in l]
            if lines and self.LEASE_LINE in lines[-1]:
                out.append(n)
        return out

    def deletions_on_record(self, node, key_id):
        return [e for e in trail_events(node.data_dir)
                if e.get("eventType") == "AwsServiceEvent" and e.get("eventName") == "DeleteKey"
                and e.get("additionalEventData", {}).get("keyId", "").endswith("/" + key_id)]

    def test_scheduled_deletion_runs_once_after_the_scheduler_node_dies(self):
        deadline = time.time() + 10
        while len(self.lease_holders()) != 1 and time.time() < deadline:
            time.sleep(0.2)
        holders = self.lease_holders()
        self.assertEqual(len(holders), 1, "exactly one node runs the scheduled jobs")
        holder = holders[0]
        survivor = self.node2 if holder is self.node1 else self.node1
        # A key due for deletion while the scheduler's node is dead.
        key = self.new_key(survivor)
        holder.kill9()
        try:
            self.kms(survivor).schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
            deadline = time.time() + 15
            gone = False
            while time.time() < deadline and not gone:
                try:
                    self.kms(survivor).describe_key(KeyId=key)
                    time.sleep(0.2)
                except ClientError as e:
                    self.assertEqual(error_code(e), "NotFoundException")
                    gone = True
            self.assertTrue(gone, "the surviving node took the scheduler over and deleted the key")
            self.assertIn(self.LEASE_LINE, survivor.log())
            self.assertEqual(len(self.deletions_on_record(survivor, key)), 1)
        finally:
            holder.start()
        # Carried out once: the restarted node finds nothing left to do.
        time.sleep(1.5)
        self.assertEqual(self.deletions_on_record(holder, key), [])
        self.assertEqual(len(self.deletions_on_record(survivor, key)), 1)
        with self.assertRaises(ClientError) as cm:
            self.kms(holder).describe_key(KeyId=key)
        self.assertEqual(error_code(cm.exception), "NotFoundException")


class StoreOptionTest(unittest.TestCase):
    """--store needs no PostgreSQL server to be checked."""

    def run_cofferd(self, store):
        d = tempfile.mkdtemp(prefix="coffer-store-opt-")
        try:
            return subprocess.run([COFFERD, "--data-dir", d, "--listen", "127.0.0.1:0", "--store", store],
                                  capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_unknown_backend_refused_without_echoing_it(self):
        r = self.run_cofferd("mysql://app:hunter2@db/coffer")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--store must be sqlite or a postgres:// URL", r.stderr)
        self.assertNotIn(b"hunter2", r.stderr + r.stdout)

    def test_unreachable_database_fails_the_start_quickly_and_keeps_the_password(self):
        t0 = time.time()
        r = self.run_cofferd("postgres://coffer:hunter2@127.0.0.1:1/coffer?sslmode=disable")
        self.assertEqual(r.returncode, 1)
        self.assertLess(time.time() - t0, 15)
        self.assertIn(b"cannot connect to the database", r.stderr)
        self.assertNotIn(b"hunter2", r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main()
