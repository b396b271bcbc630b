"""The built-in PostgreSQL rotators of Secrets Manager (cofferd --rotation-function
ARN=builtin:postgres-single-user | builtin:postgres-alternating-users) against a real PostgreSQL
server: a throw-away cluster (pg_cluster.py) whose loopback logins need a password
(scram-sha-256), secrets in the JSON of AWS's RDS rotation templates. After a single-user
rotation the old password stops working and the new one works; the alternating-users rotator
creates <username>_clone through the master secret (masterarn), keeps the current user working,
and comes back to the original user on the next rotation. A rotation whose credentials do not
log in fails and leaves AWSCURRENT as it was. The wall time of one rotation is printed.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import pg_cluster
from harness import Cofferd, REGION, stop_checked, trail_events

ACCOUNT = "000000000000"
SINGLE = "arn:aws:lambda:%s:%s:function:pg-single" % (REGION, ACCOUNT)
ALTERNATING = "arn:aws:lambda:%s:%s:function:pg-alternating" % (REGION, ACCOUNT)


@unittest.skipIf(pg_cluster.unavailable_reason(), "no PostgreSQL: %s" % pg_cluster.unavailable_reason())
class PostgresRotatorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = pg_cluster.PgCluster().start()
        # passwords count on loopback, but for the cluster's own superuser
        hba = os.path.join(cls.pg.dir, "data", "pg_hba.conf")
        with open(hba, "w") as f:
            f.write("local all all trust\n"
                    "host all %s 127.0.0.1/32 trust\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n" % pg_cluster.SUPERUSER)
        cls.pg.psql("SELECT pg_reload_conf()")
        cls.pg.psql("CREATE ROLE app_single LOGIN PASSWORD 'single-initial'")
        cls.pg.psql("CREATE ROLE app_alt LOGIN PASSWORD 'alt-initial'")
        cls.pg.psql("CREATE ROLE rot_master LOGIN SUPERUSER PASSWORD 'master-secret'")
        cls.pg.psql("CREATE TABLE alt_data (v int); INSERT INTO alt_data VALUES (42); "
                    "GRANT SELECT ON alt_data TO app_alt")
        cls.dir = tempfile.mkdtemp(prefix="coffer-pgrot-")
        cls.server = Cofferd(extra_args=[
            "--quota-crypto-rps", "0",
            "--rotation-function", "%s=builtin:postgres-single-user" % SINGLE,
            "--rotation-function", "%s=builtin:postgres-alternating-users" % ALTERNATING]).start()
        cls.sm = cls.server.client("secretsmanager")

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.server)
        cls.pg.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------------

    def login(self, user, password, sql="SELECT 1"):
        """True when `user` logs in with `password` over TCP and `sql` runs."""
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
        r = subprocess.run([self.pg._tool("psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(self.pg.port),
                            "-U", user, "-d", "postgres", "-c", sql], env=env, capture_output=True, timeout=30)
        return r.returncode == 0

    def value(self, name, stage="AWSCURRENT"):
        return json.loads(self.sm.get_secret_value(SecretId=name, VersionStage=stage)["SecretString"])

    def db_secret(self, user, password, **extra):
        d = {"engine": "postgres", "host": "127.0.0.1", "port": self.pg.port, "username": user,
             "password": password, "dbname": "postgres"}
        d.update(extra)
        return json.dumps(d)

    def outcome(self, arn, token, timeout=120):
        """The RotationSucceeded or RotationFailed event of the rotation `token`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in trail_events(self.server.data_dir):
                if e.get("eventName") in ("RotationSucceeded", "RotationFailed") and \
                        (e.get("serviceEventDetails") or {}).get("ClientRequestToken") == token:
                    return e
            time.sleep(0.05)
        self.fail("no outcome for rotation %s\n%s" % (token, self.server.log()[-3000:]))

    def rotate(self, name, function):
        arn = self.sm.describe_secret(SecretId=name)["ARN"]
        start = time.time()
        token = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=function,
                                      RotationRules={"AutomaticallyAfterDays": 30})["VersionId"]
        ev = self.outcome(arn, token)
        return token, ev, time.time() - start

    # ---- single user --------------------------------------------------------------------------

    def test_single_user(self):
        name = "rds/single"
        self.sm.create_secret(Name=name, SecretString=self.db_secret("app_single", "single-initial"))
        self.assertTrue(self.login("app_single", "single-initial"))
        token, ev, wall = self.rotate(name, SINGLE)
        self.assertEqual(ev["eventName"], "RotationSucceeded", ev)
        print("\npostgres-single-user rotation wall time: %.3f s" % wall)
        stages = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        self.assertEqual(stages[token], ["AWSCURRENT"])
        new = self.value(name)
        self.assertEqual(new["username"], "app_single")
        self.assertNotEqual(new["password"], "single-initial")
        self.assertEqual(self.value(name, "AWSPREVIOUS")["password"], "single-initial")
        # the old password stops working, the new one works
        self.assertFalse(self.login("app_single", "single-initial"))
        self.assertTrue(self.login("app_single", new["password"]))
        # and again: the second rotation logs in with the first one's password
        token2, ev, _ = self.rotate(name, SINGLE)
        self.assertEqual(ev["eventName"], "RotationSucceeded", ev)
        newer = self.value(name)
        self.assertFalse(self.login("app_single", new["password"]))
        self.assertTrue(self.login("app_single", newer["password"]))
        self.assertNotIn(newer["password"], json.dumps(trail_events(self.server.data_dir)))

    # ---- alternating users --------------------------------------------------------------------

    def test_alternating_users(self):
        master = self.sm.create_secret(Name="rds/master",
                                       SecretString=self.db_secret("rot_master", "master-secret"))["ARN"]
        name = "rds/alt"
        self.sm.create_secret(Name=name, SecretString=self.db_secret("app_alt", "alt-initial", masterarn=master))
        token, ev, wall = self.rotate(name, ALTERNATING)
        self.assertEqual(ev["eventName"], "RotationSucceeded", ev)
        print("\npostgres-alternating-users rotation wall time: %.3f s" % wall)
        clone = self.value(name)
        self.assertEqual(clone["username"], "app_alt_clone")
        self.assertEqual(clone["masterarn"], master)
        # the clone logs in and has the original's privileges; the current user still works
        self.assertTrue(self.login("app_alt_clone", clone["password"], "SELECT v FROM alt_data"))
        self.assertTrue(self.login("app_alt", "alt-initial"))
        # the next rotation comes back to the original user with a new password
        token2, ev, _ = self.rotate(name, ALTERNATING)
        self.assertEqual(ev["eventName"], "RotationSucceeded", ev)
        back = self.value(name)
        self.assertEqual(back["username"], "app_alt")
        self.assertTrue(self.login("app_alt", back["password"], "SELECT v FROM alt_data"))
        self.assertFalse(self.login("app_alt", "alt-initial"))
        self.assertTrue(self.login("app_alt_clone", clone["password"]))  # AWSPREVIOUS keeps working
        self.assertEqual(self.value(name, "AWSPREVIOUS")["username"], "app_alt_clone")

    # ---- failure ------------------------------------------------------------------------------

    def test_credentials_that_do_not_log_in(self):
        name = "rds/broken"
        old = self.sm.create_secret(Name=name, SecretString=self.db_secret("app_single", "wrong"))["VersionId"]
        token, ev, _ = self.rotate(name, SINGLE)
        self.assertEqual(ev["eventName"], "RotationFailed")
        self.assertEqual(ev["serviceEventDetails"]["FailedStep"], "setSecret")
        self.assertIn("cannot log in to PostgreSQL", ev["serviceEventDetails"]["Reason"])
        self.assertNotIn("wrong", json.dumps(ev))
        stages = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        self.assertEqual(stages[old], ["AWSCURRENT"])
        self.assertEqual(stages[token], ["AWSPENDING"])
        self.assertEqual(self.value(name)["password"], "wrong")
        self.sm.cancel_rotate_secret(SecretId=name)


if __name__ == "__main__":
    unittest.main()
