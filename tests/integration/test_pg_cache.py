"""What one node caches, another node's change makes stale: two cofferd nodes on one PostgreSQL
database, and a change made through node 1 (a key disabled, an alias moved, a key policy
replaced, a grant revoked, an access key deleted, an identity policy removed) is honoured by
node 2 within a second, although node 2 had the old state cached (it used it just before).
Then a node killed with kill -9 under a mixed load whose clients fail over to the other node:
every acknowledged write is there afterwards and every acknowledged ciphertext decrypts.

The throw-away cluster comes from pg_cluster.py; the suite is skipped when the PostgreSQL server
binaries are missing.
"""
import json
import threading
import time
import unittest

from botocore.exceptions import BotoCoreError, ClientError

from pg_nodes import TwoNodes

STALENESS_S = 1.0
ARGS = TwoNodes.ARGS


def error_code(e):
    return e.response["Error"]["Code"]


class PgCacheTest(TwoNodes):
    DB = "coffer_cache"

    def setUp(self):
        self.k1, self.k2 = self.node1.client(), self.node2.client()

    def within_staleness(self, probe, what):
        """Calls probe() until it returns true; fails unless that happens within the bound.
        Returns the seconds it took."""
        t0 = time.monotonic()
        while True:
            if probe():
                return time.monotonic() - t0
            if time.monotonic() - t0 > STALENESS_S:
                self.fail("node 2 still had the old state %.2f s after %s" % (time.monotonic() - t0, what))
            time.sleep(0.02)

    def refused(self, call, code):
        def probe():
            try:
                call()
                return False
            except ClientError as e:
                self.assertEqual(error_code(e), code)
                return True
        return probe

    def test_disabled_key_refused_on_the_other_node(self):
        key = self.k1.create_key()["KeyMetadata"]["KeyId"]
        self.k2.encrypt(KeyId=key, Plaintext=b"cached on node 2")
        self.k1.disable_key(KeyId=key)
        self.within_staleness(self.refused(lambda: self.k2.encrypt(KeyId=key, Plaintext=b"x"),
                                           "DisabledException"), "DisableKey")
        self.k1.enable_key(KeyId=key)

        def works():
            try:
                self.k2.encrypt(KeyId=key, Plaintext=b"x")
                return True
            except ClientError as e:
                self.assertEqual(error_code(e), "DisabledException")
                return False
        self.within_staleness(works, "EnableKey")

    def test_moved_alias_resolves_to_the_new_key_on_the_other_node(self):
        a = self.k1.create_key()["KeyMetadata"]["KeyId"]
        b = self.k1.create_key()["KeyMetadata"]["KeyId"]
        self.k1.create_alias(AliasName="alias/moving-cached", TargetKeyId=a)
        self.assertTrue(self.k2.encrypt(KeyId="alias/moving-cached", Plaintext=b"x")["KeyId"].endswith(a))
        self.k1.update_alias(AliasName="alias/moving-cached", TargetKeyId=b)
        self.within_staleness(
            lambda: self.k2.encrypt(KeyId="alias/moving-cached", Plaintext=b"x")["KeyId"].endswith(b),
            "UpdateAlias")
        self.k1.delete_alias(AliasName="alias/moving-cached")
        self.within_staleness(self.refused(lambda: self.k2.encrypt(KeyId="alias/moving-cached", Plaintext=b"x"),
                                           "NotFoundException"), "DeleteAlias")

    def test_key_policy_change_honoured_on_the_other_node(self):
        key = self.k1.create_key()["KeyMetadata"]
        self.k2.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
        acct = key["Arn"].split(":")[4]
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % acct}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*"}]}
        self.k1.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(policy))
        self.within_staleness(self.refused(lambda: self.k2.encrypt(KeyId=key["KeyId"], Plaintext=b"x"),
                                           "AccessDeniedException"), "PutKeyPolicy")
        # Decrypt stays allowed: node 2 has the new policy, not just a refusal of everything.
        ct = self.k1.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["CiphertextBlob"]
        self.k2.decrypt(CiphertextBlob=ct)

    def user(self, name, policy=None):
        iam = self.node1.client("iam")
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName=name)["AccessKey"]
        return arn, k["AccessKeyId"], self.node2.client(akid=k["AccessKeyId"], secret=k["SecretAccessKey"])

    def test_revoked_grant_honoured_on_the_other_node(self):
        key = self.k1.create_key()["KeyMetadata"]["KeyId"]
        arn, _, app2 = self.user("grantee-cached")
        grant = self.k1.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Encrypt"])["GrantId"]
        deadline = time.monotonic() + 5
        while True:  # the grant is new to node 2 too: it is there within the bound
            try:
                app2.encrypt(KeyId=key, Plaintext=b"x")
                break
            except ClientError:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
        self.k1.revoke_grant(KeyId=key, GrantId=grant)
        self.within_staleness(self.refused(lambda: app2.encrypt(KeyId=key, Plaintext=b"x"),
                                           "AccessDeniedException"), "RevokeGrant")

    def test_deleted_access_key_refused_on_the_other_node(self):
        _, akid, app2 = self.user("deleted-key-cached", {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}]})
        app2.list_keys()  # node 2 caches the key's secret
        self.node1.client("iam").delete_access_key(UserName="deleted-key-cached", AccessKeyId=akid)
        self.within_staleness(self.refused(app2.list_keys, "UnrecognizedClientException"), "DeleteAccessKey")

    def test_removed_identity_policy_honoured_on_the_other_node(self):
        _, _, app2 = self.user("policy-cached", {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}]})
        app2.list_keys()  # node 2 caches the compiled identity policies
        self.node1.client("iam").delete_user_policy(UserName="policy-cached", PolicyName="p")
        self.within_staleness(self.refused(app2.list_keys, "AccessDeniedException"), "DeleteUserPolicy")


class PgFailoverTest(TwoNodes):
    """kill -9 of one node under a mixed load; each client fails over to the other node."""
    DB = "coffer_failover"
    ARGS = ARGS + ("--max-aliases-per-key", "100000")
    THREADS = 6

    def test_acknowledged_writes_survive_a_killed_node(self):
        nodes = [self.node1, self.node2]
        base_key = self.node1.client().create_key()["KeyMetadata"]["KeyId"]
        stop = threading.Event()
        lock = threading.Lock()
        acked = {"keys": [], "cts": [], "aliases": {}, "params": {}}
        errors = []

        def worker(i):
            order = [nodes[i % 2], nodes[(i + 1) % 2]]
            clients = {}

            def call(service, op, **kw):
                # The first node that answers; a dead one is skipped (a connection error is not an
                # acknowledgement, so nothing is recorded for it).
                last = None
                for node in order:
                    try:
                        if (node, service) not in clients:
                            clients[(node, service)] = node.client(service)
                        return getattr(clients[(node, service)], op)(**kw)
                    except (BotoCoreError, ConnectionError) as e:
                        last = e
                        clients.pop((node, service), None)
                raise last

            n = 0
            while not stop.is_set():
                n += 1
                try:
                    kind = n % 4
                    if kind == 0:
                        kid = call("kms", "create_key")["KeyMetadata"]["KeyId"]
                        with lock:
                            acked["keys"].append(kid)
                    elif kind == 1:
                        pt = ("w%d-%d" % (i, n)).encode()
                        ct = call("kms", "encrypt", KeyId=base_key, Plaintext=pt)["CiphertextBlob"]
                        with lock:
                            acked["cts"].append((ct, pt))
                    elif kind == 2:
                        name = "alias/fo-%d-%d" % (i, n)
                        call("kms", "create_alias", AliasName=name, TargetKeyId=base_key)
                        with lock:
                            acked["aliases"][name] = base_key
                    else:
                        name = "/fo/%d/%d" % (i, n)
                        call("ssm", "put_parameter", Name=name, Value="v%d" % n, Type="String")
                        with lock:
                            acked["params"][name] = "v%d" % n
                except ClientError as e:
                    # A write retried on the other node after the first died mid-request may find
                    # its own earlier attempt: not an acknowledgement either way.
                    if error_code(e) not in ("AlreadyExistsException", "ParameterAlreadyExists",
                                             "InternalFailure", "InternalServerError", "KMSInternalException",
                                             "InternalServerErrorException"):
                        errors.append(repr(e))
                except Exception as e:
                    errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(self.THREADS)]
        for t in threads:
            t.start()
        try:
            time.sleep(2)
            self.node1.kill9()
            with lock:
                at_kill = sum(len(v) for v in acked.values())
            time.sleep(3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertEqual(errors, [])
        # The clients went on through the survivor.
        self.assertGreater(sum(len(v) for v in acked.values()), at_kill + 20)
        self.assertGreater(len(acked["keys"]), 0)
        self.assertGreater(len(acked["cts"]), 0)
        # Checked on the survivor, then on the killed node restarted on its data dir.
        self.node1.start()
        for node in (self.node2, self.node1):
            kms, ssm = node.client(), node.client("ssm")
            for kid in acked["keys"]:
                self.assertEqual(kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"], "Enabled")
            for ct, pt in acked["cts"]:
                self.assertEqual(kms.decrypt(CiphertextBlob=ct)["Plaintext"], pt)
            listed = {}
            for page in kms.get_paginator("list_aliases").paginate():
                listed.update({a["AliasName"]: a.get("TargetKeyId") for a in page["Aliases"]})
            for name, target in acked["aliases"].items():
                self.assertEqual(listed.get(name), target, name)
            for name, value in acked["params"].items():
                self.assertEqual(ssm.get_parameter(Name=name)["Parameter"]["Value"], value)


if __name__ == "__main__":
    unittest.main()
