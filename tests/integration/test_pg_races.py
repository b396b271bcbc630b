"""Writers racing on two cofferd nodes that share one PostgreSQL database, on the records that
hold versions: Parameter Store versions and Secrets Manager versions and staging labels. Each
node serialises its own writers, but two nodes may load the same record at once; what both then
write must not undo the other (a lost version, two AWSCURRENT, a label on two versions). A
request refused for that is an error its client sees (and SDKs retry), never a lost write.
"""
import threading
import unittest
import uuid

from botocore.config import Config
from botocore.exceptions import ClientError

from pg_nodes import TwoNodes

THREADS_PER_NODE = 8
WRITES_PER_THREAD = 4


class PgRacesTest(TwoNodes):
    DB = "coffer_races"

    def race(self, service, fn):
        """fn(client, thread, write) on THREADS_PER_NODE threads per node, WRITES_PER_THREAD
        writes each, all released at once; returns (acknowledged results, error codes)."""
        cfg = Config(retries={"mode": "standard", "max_attempts": 10})
        clients = [(self.node1 if i % 2 == 0 else self.node2).client(service, config=cfg)
                   for i in range(2 * THREADS_PER_NODE)]
        start = threading.Barrier(len(clients))
        acked, errors, lock = [], [], threading.Lock()

        def run(i):
            start.wait()
            for j in range(WRITES_PER_THREAD):
                try:
                    r = fn(clients[i], i, j)
                    with lock:
                        acked.append(r)
                except ClientError as e:
                    with lock:
                        errors.append(e.response["Error"]["Code"])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        return acked, errors

    def test_parameter_versions(self):
        ssm = self.node1.client("ssm")
        ssm.put_parameter(Name="/race/param", Value="initial", Type="String")

        def put(c, i, j):
            value = "t%d-w%d" % (i, j)
            return c.put_parameter(Name="/race/param", Value=value, Type="String", Overwrite=True)["Version"], value

        acked, errors = self.race("ssm", put)
        self.assertTrue(set(errors) <= {"TooManyUpdates"}, errors)
        versions = [v for v, _ in acked]
        self.assertEqual(len(versions), len(set(versions)), "a version number given twice")
        history = []
        for page in ssm.get_paginator("get_parameter_history").paginate(Name="/race/param"):
            history += page["Parameters"]
        by_version = {h["Version"]: h["Value"] for h in history}
        self.assertEqual(sorted(by_version), list(range(1, len(history) + 1)))
        for version, value in acked:
            self.assertEqual(by_version[version], value)
        self.assertEqual(len(history), 1 + len(acked))
        for node in (self.node1, self.node2):
            self.assertEqual(node.client("ssm").get_parameter(Name="/race/param")["Parameter"]["Version"],
                             len(history))

    def test_secret_versions_and_labels(self):
        sm = self.node1.client("secretsmanager")
        sm.create_secret(Name="race/secret", SecretString="initial")

        def put(c, i, j):
            return c.put_secret_value(SecretId="race/secret", SecretString="t%d-w%d" % (i, j),
                                      ClientRequestToken=str(uuid.uuid4()))["VersionId"]

        acked, errors = self.race("secretsmanager", put)
        self.assertEqual(errors, [])  # a refused save is retried by the SDK until it lands
        self.assertEqual(len(acked), 2 * THREADS_PER_NODE * WRITES_PER_THREAD)
        versions = sm.list_secret_version_ids(SecretId="race/secret", IncludeDeprecated=True)["Versions"]
        present = {v["VersionId"] for v in versions}
        self.assertTrue(set(acked) <= present, "acknowledged versions lost: %s" % (set(acked) - present))
        stages = [s for v in versions for s in v.get("VersionStages", [])]
        self.assertEqual(stages.count("AWSCURRENT"), 1)
        self.assertEqual(stages.count("AWSPREVIOUS"), 1)

        # A custom label moved to a different version by every writer: it ends on one version.
        targets = sorted(present)

        def move(c, i, j):
            to = targets[(i * WRITES_PER_THREAD + j) % len(targets)]
            cur = [v["VersionId"] for v in c.list_secret_version_ids(SecretId="race/secret", IncludeDeprecated=True)
                   ["Versions"] if "blue" in v.get("VersionStages", [])]
            kw = {"RemoveFromVersionId": cur[0]} if cur and cur[0] != to else {}
            c.update_secret_version_stage(SecretId="race/secret", VersionStage="blue", MoveToVersionId=to, **kw)
            return to

        acked, errors = self.race("secretsmanager", move)
        # a move whose RemoveFromVersionId lost a race is refused as AWS refuses a stale one
        self.assertTrue(set(errors) <= {"InvalidParameterException"}, errors)
        self.assertGreater(len(acked), 0)
        for node in (self.node1, self.node2):
            versions = node.client("secretsmanager").list_secret_version_ids(
                SecretId="race/secret", IncludeDeprecated=True)["Versions"]
            self.assertEqual([v["VersionId"] for v in versions if "blue" in v.get("VersionStages", [])].__len__(), 1)


if __name__ == "__main__":
    unittest.main()
