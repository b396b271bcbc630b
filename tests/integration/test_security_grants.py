"""Grants as a security boundary, through real clients: a grant that carries CreateGrant cannot
be widened by its grantee, RetireGrant in one grant does not reach other grants, RevokeGrant and
ListRetirableGrants are decided by policies only and stay in the caller's account, and CreateGrant
input is bounded (operation set, grants per key, name, constraints, grant tokens).

Principals are made through the public surface: `coffer admin create-account` and IAM users.
"""
import hashlib
import json
import os
import sqlite3
import subprocess
import unittest

import botocore.exceptions

from harness import COFFER, Cofferd, ServerTestCase, write_in_clear


class GrantSecurityTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--max-grants-per-key", "5")

    # ---- helpers ------------------------------------------------------------------------------

    def create_account(self, name):
        r = subprocess.run([COFFER, "admin", "create-account", name, "--data-dir", self.server.data_dir,
                            "--endpoint", self.server.endpoint], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout)

    def client(self, service, creds):
        return self.server.client(service, akid=creds["AccessKeyId"], secret=creds["SecretAccessKey"])

    def user(self, iam, name):
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}

    def error(self, fn, **kw):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn(**kw)
        err = cm.exception.response["Error"]
        return err["Code"], err.get("Message", "")

    def setup_account(self, name, users):
        acct = self.create_account(name)
        iam = self.client("iam", acct)
        admin = self.client("kms", acct)
        key = admin.create_key()["KeyMetadata"]
        creds, arns = {}, {}
        for u in users:
            creds[u] = self.user(iam, u)
            arns[u] = "arn:aws:iam::%s:user/%s" % (acct["AccountId"], u)
        return acct, admin, key, creds, arns

    # ---- CreateGrant under a grant --------------------------------------------------------------

    def test_grantee_cannot_widen_its_grant(self):
        acct, admin, key, creds, arns = self.setup_account("widen", ["bob", "eve"])
        kid = key["KeyId"]
        blob = admin.encrypt(KeyId=kid, Plaintext=b"secret", EncryptionContext={"team": "a"})["CiphertextBlob"]
        admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Encrypt", "CreateGrant"])
        bob = self.client("kms", creds["bob"])
        # A Decrypt grant, for itself or anyone, is wider than the parent: refused, nothing stored.
        for grantee in (arns["bob"], arns["eve"]):
            code, _ = self.error(bob.create_grant, KeyId=key["Arn"], GranteePrincipal=grantee,
                                 Operations=["Decrypt"])
            self.assertEqual(code, "AccessDeniedException")
            code, _ = self.error(bob.create_grant, KeyId=key["Arn"], GranteePrincipal=grantee,
                                 Operations=["Encrypt", "Decrypt"])
            self.assertEqual(code, "AccessDeniedException")
        self.assertEqual(len(admin.list_grants(KeyId=kid)["Grants"]), 1)
        code, _ = self.error(bob.decrypt, CiphertextBlob=blob, EncryptionContext={"team": "a"})
        self.assertEqual(code, "AccessDeniedException")
        # Within the parent: allowed, and the child works.
        bob.create_grant(KeyId=key["Arn"], GranteePrincipal=arns["eve"], Operations=["Encrypt"])
        self.client("kms", creds["eve"]).encrypt(KeyId=key["Arn"], Plaintext=b"x")
        # The same through the CLI shape (a subset that includes CreateGrant itself is fine).
        bob.create_grant(KeyId=key["Arn"], GranteePrincipal=arns["eve"], Operations=["CreateGrant", "Encrypt"])

    def test_child_constraints_at_least_as_strict(self):
        acct, admin, key, creds, arns = self.setup_account("strict", ["bob", "eve"])
        kid = key["Arn"]
        admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Decrypt", "CreateGrant"],
                           Constraints={"EncryptionContextSubset": {"team": "a"}})
        bob = self.client("kms", creds["bob"])
        denied = [
            None,  # no constraint at all
            {"EncryptionContextSubset": {"other": "x"}},
            {"EncryptionContextSubset": {"team": "b"}},
            {"EncryptionContextEquals": {"stage": "prod"}},
        ]
        for c in denied:
            kw = {"Constraints": c} if c is not None else {}
            code, _ = self.error(bob.create_grant, KeyId=kid, GranteePrincipal=arns["eve"],
                                 Operations=["Decrypt"], **kw)
            self.assertEqual(code, "AccessDeniedException", c)
        allowed = [
            {"EncryptionContextSubset": {"team": "a"}},
            {"EncryptionContextSubset": {"team": "a", "stage": "prod"}},
            {"EncryptionContextEquals": {"team": "a", "stage": "prod"}},
        ]
        for c in allowed:
            bob.create_grant(KeyId=kid, GranteePrincipal=arns["eve"], Operations=["Decrypt"], Constraints=c)
        # The constraint does not apply to DescribeKey in a constrained grant.
        admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["DescribeKey"],
                           Constraints={"EncryptionContextSubset": {"team": "a"}})
        self.assertEqual(bob.describe_key(KeyId=kid)["KeyMetadata"]["Arn"], kid)
        # An Equals parent allows only the identical Equals constraint (on another key: the
        # class runs with a limit of 5 grants per key).
        kid = admin.create_key()["KeyMetadata"]["Arn"]
        admin.create_grant(KeyId=kid, GranteePrincipal=arns["eve"], Operations=["Decrypt", "CreateGrant"],
                           Constraints={"EncryptionContextEquals": {"team": "a"}})
        eve = self.client("kms", creds["eve"])
        for c in ({"EncryptionContextSubset": {"team": "a"}},
                  {"EncryptionContextEquals": {"team": "a", "x": "y"}}):
            code, _ = self.error(eve.create_grant, KeyId=kid, GranteePrincipal=arns["bob"],
                                 Operations=["Decrypt"], Constraints=c)
            self.assertEqual(code, "AccessDeniedException", c)
        eve.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Decrypt"],
                         Constraints={"EncryptionContextEquals": {"team": "a"}})

    # ---- RetireGrant and RevokeGrant ----------------------------------------------------------

    def test_retire_grant_only_own_grant(self):
        acct, admin, key, creds, arns = self.setup_account("retire", ["bob", "carol", "dave"])
        kid = key["KeyId"]
        gb = admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Encrypt", "RetireGrant"])
        gc = admin.create_grant(KeyId=kid, GranteePrincipal=arns["carol"], Operations=["Encrypt"])
        gd = admin.create_grant(KeyId=kid, GranteePrincipal=arns["dave"], Operations=["Encrypt"],
                                RetiringPrincipal=arns["carol"])
        bob = self.client("kms", creds["bob"])
        # RetireGrant in bob's grant does not reach carol's grant, by id or by token.
        code, _ = self.error(bob.retire_grant, KeyId=key["Arn"], GrantId=gc["GrantId"])
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.error(bob.retire_grant, GrantToken=gc["GrantToken"])
        self.assertEqual(code, "AccessDeniedException")
        # Nor does a grant authorize RevokeGrant.
        code, _ = self.error(bob.revoke_grant, KeyId=key["Arn"], GrantId=gc["GrantId"])
        self.assertEqual(code, "AccessDeniedException")
        self.assertEqual(len(admin.list_grants(KeyId=kid)["Grants"]), 3)
        # Carol as retiring principal of dave's grant; bob retires his own.
        self.client("kms", creds["carol"]).retire_grant(GrantToken=gd["GrantToken"])
        bob.retire_grant(KeyId=key["Arn"], GrantId=gb["GrantId"])
        self.assertEqual([g["GrantId"] for g in admin.list_grants(KeyId=kid)["Grants"]], [gc["GrantId"]])
        # The root of the account that created the grant may retire it.
        admin.retire_grant(KeyId=key["Arn"], GrantId=gc["GrantId"])
        self.assertEqual(admin.list_grants(KeyId=kid)["Grants"], [])

    # ---- ListRetirableGrants ----------------------------------------------------------------------

    def test_list_retirable_grants_scoped_to_caller_account(self):
        a, admin_a, key_a, creds_a, arns_a = self.setup_account("lrg-a", ["ret"])
        b, admin_b, key_b, creds_b, arns_b = self.setup_account("lrg-b", ["spy"])
        ids = [admin_a.create_grant(KeyId=key_a["KeyId"], GranteePrincipal=arns_a["ret"], Operations=["Encrypt"],
                                    RetiringPrincipal=arns_a["ret"])["GrantId"] for _ in range(3)]
        # Account B asking about A's principal gets nothing of A's.
        code, _ = self.error(admin_b.list_retirable_grants, RetiringPrincipal=arns_a["ret"])
        self.assertEqual(code, "AccessDeniedException")
        # A sees them, paged.
        page0 = admin_a.list_retirable_grants(RetiringPrincipal=arns_a["ret"], Limit=1)
        self.assertTrue(page0["Truncated"])
        seen, marker = [], None
        while True:
            kw = {"Marker": marker} if marker else {}
            page = admin_a.list_retirable_grants(RetiringPrincipal=arns_a["ret"], Limit=2, **kw)
            seen += [g["GrantId"] for g in page["Grants"]]
            if not page["Truncated"]:
                break
            marker = page["NextMarker"]
        self.assertEqual(sorted(seen), sorted(ids))
        # A marker of another principal's listing is not accepted.
        code, _ = self.error(admin_a.list_retirable_grants, RetiringPrincipal=arns_a["ret"] + "x",
                             Marker=page0["NextMarker"])
        self.assertEqual(code, "InvalidMarkerException")
        # Revoked grants leave the listing.
        admin_a.revoke_grant(KeyId=key_a["KeyId"], GrantId=ids[0])
        left = admin_a.list_retirable_grants(RetiringPrincipal=arns_a["ret"])["Grants"]
        self.assertEqual(sorted(g["GrantId"] for g in left), sorted(ids[1:]))

    def drop_user(self, iam, name, creds):
        iam.delete_access_key(UserName=name, AccessKeyId=creds["AccessKeyId"])
        iam.delete_user(UserName=name)

    def may_list_retirable(self, iam, name):
        iam.put_user_policy(UserName=name, PolicyName="lrg", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:ListRetirableGrants", "Resource": "*"}]}))

    def drop_user_with_policy(self, iam, name, creds):
        iam.delete_user_policy(UserName=name, PolicyName="lrg")
        self.drop_user(iam, name, creds)

    def retirable_ids(self, kms, **kw):
        return sorted(g["GrantId"] for g in kms.list_retirable_grants(**kw)["Grants"])

    def test_list_retirable_grants_not_inherited_by_namesake(self):
        acct, admin, key, creds, arns = self.setup_account("lrg-reborn", ["bob", "carol"])
        iam = self.client("iam", acct)
        kid = key["KeyId"]
        old = admin.create_grant(KeyId=kid, GranteePrincipal=arns["carol"], Operations=["Encrypt"],
                                 RetiringPrincipal=arns["bob"])
        self.may_list_retirable(iam, "bob")
        bob = self.client("kms", creds["bob"])
        self.assertEqual(self.retirable_ids(bob, RetiringPrincipal=arns["bob"]), [old["GrantId"]])
        self.assertEqual(self.retirable_ids(admin, RetiringPrincipal=arns["bob"]), [old["GrantId"]])
        # Deleted: the grant is retirable by nobody and listed for nobody.
        self.drop_user_with_policy(iam, "bob", creds["bob"])
        self.assertEqual(self.retirable_ids(admin, RetiringPrincipal=arns["bob"]), [])
        # A new user of the same name neither sees nor retires the old user's grant.
        creds["bob"] = self.user(iam, "bob")
        self.may_list_retirable(iam, "bob")
        bob = self.client("kms", creds["bob"])
        self.assertEqual(self.retirable_ids(bob, RetiringPrincipal=arns["bob"]), [])
        self.assertEqual(self.retirable_ids(admin, RetiringPrincipal=arns["bob"]), [])
        code, _ = self.error(bob.retire_grant, GrantToken=old["GrantToken"])
        self.assertEqual(code, "AccessDeniedException")
        code, _ = self.error(bob.retire_grant, KeyId=key["Arn"], GrantId=old["GrantId"])
        self.assertEqual(code, "AccessDeniedException")
        # Its own grants it does see, and only those.
        new = admin.create_grant(KeyId=kid, GranteePrincipal=arns["carol"], Operations=["Encrypt"],
                                 RetiringPrincipal=arns["bob"])
        self.assertEqual(self.retirable_ids(bob, RetiringPrincipal=arns["bob"]), [new["GrantId"]])
        self.assertEqual(self.retirable_ids(admin, RetiringPrincipal=arns["bob"]), [new["GrantId"]])
        bob.retire_grant(GrantToken=new["GrantToken"])
        self.assertEqual(self.retirable_ids(bob, RetiringPrincipal=arns["bob"]), [])
        self.assertEqual([g["GrantId"] for g in admin.list_grants(KeyId=kid)["Grants"]], [old["GrantId"]])
        # The same for a role.
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"AWS": "arn:aws:iam::%s:root" % acct["AccountId"]}}]})
        role = iam.create_role(RoleName="retirer", AssumeRolePolicyDocument=trust)["Role"]
        by_role = admin.create_grant(KeyId=kid, GranteePrincipal=arns["carol"], Operations=["Encrypt"],
                                     RetiringPrincipal=role["Arn"])
        self.assertEqual(self.retirable_ids(admin, RetiringPrincipal=role["Arn"]), [by_role["GrantId"]])
        iam.delete_role(RoleName="retirer")
        iam.create_role(RoleName="retirer", AssumeRolePolicyDocument=trust)
        self.assertEqual(self.retirable_ids(admin, RetiringPrincipal=role["Arn"]), [])

    def test_named_create_grant_not_idempotent_across_namesakes(self):
        acct, admin, key, creds, arns = self.setup_account("idem-reborn", ["bob", "carol"])
        iam = self.client("iam", acct)
        kid = key["KeyId"]
        same = {"KeyId": kid, "GranteePrincipal": arns["bob"], "Operations": ["Encrypt"], "Name": "app"}
        g1 = admin.create_grant(**same)
        self.assertEqual(admin.create_grant(**same)["GrantId"], g1["GrantId"])
        old_id = iam.get_user(UserName="bob")["User"]["UserId"]
        self.drop_user(iam, "bob", creds["bob"])
        # Deleted: no grant is found under the name; the old one is shown, and found, by unique id.
        self.assertEqual(admin.list_grants(KeyId=kid, GranteePrincipal=arns["bob"])["Grants"], [])
        shown = admin.list_grants(KeyId=kid, GranteePrincipal=old_id)["Grants"]
        self.assertEqual([(g["GrantId"], g["GranteePrincipal"]) for g in shown], [(g1["GrantId"], old_id)])
        creds["bob"] = self.user(iam, "bob")
        # The old grant is bound to the deleted user: the same request makes a new grant for the new one.
        g2 = admin.create_grant(**same)
        self.assertNotEqual(g2["GrantId"], g1["GrantId"])
        self.assertEqual(admin.create_grant(**same)["GrantId"], g2["GrantId"])
        self.client("kms", creds["bob"]).encrypt(KeyId=key["Arn"], Plaintext=b"x")
        shown = admin.list_grants(KeyId=kid, GranteePrincipal=arns["bob"])["Grants"]
        self.assertEqual([(g["GrantId"], g["GranteePrincipal"]) for g in shown], [(g2["GrantId"], arns["bob"])])
        self.assertEqual(sorted(g["GrantId"] for g in admin.list_grants(KeyId=kid)["Grants"]),
                         sorted([g1["GrantId"], g2["GrantId"]]))
        # The same when only the retiring principal was re-created.
        same = {"KeyId": kid, "GranteePrincipal": arns["carol"], "Operations": ["Encrypt"], "Name": "ret",
                "RetiringPrincipal": arns["bob"]}
        g3 = admin.create_grant(**same)
        self.assertEqual(admin.create_grant(**same)["GrantId"], g3["GrantId"])
        self.drop_user(iam, "bob", creds["bob"])
        creds["bob"] = self.user(iam, "bob")
        g4 = admin.create_grant(**same)
        self.may_list_retirable(iam, "bob")
        self.assertNotEqual(g4["GrantId"], g3["GrantId"])
        bob = self.client("kms", creds["bob"])
        self.assertEqual(self.retirable_ids(bob, RetiringPrincipal=arns["bob"]), [g4["GrantId"]])

    # ---- CreateGrant input bounds -----------------------------------------------------------------

    def test_operations_are_a_set(self):
        acct, admin, key, creds, arns = self.setup_account("opset", ["bob"])
        kid = key["KeyId"]
        code, msg = self.error(admin.create_grant, KeyId=kid, GranteePrincipal=arns["bob"],
                               Operations=["Decrypt", "Launch"])
        self.assertEqual(code, "ValidationException")
        self.assertIn("Member must satisfy enum value set", msg)
        # Duplicates collapse into one operation each.
        g = admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Decrypt"] * 40 + ["Encrypt"])
        listed = admin.list_grants(KeyId=kid, GrantId=g["GrantId"])["Grants"][0]
        self.assertEqual(sorted(listed["Operations"]), ["Decrypt", "Encrypt"])
        # A huge list is refused before anything is stored.
        code, _ = self.error(admin.create_grant, KeyId=kid, GranteePrincipal=arns["bob"],
                             Operations=["Decrypt"] * 20000)
        self.assertEqual(code, "ValidationException")
        self.assertEqual(len(admin.list_grants(KeyId=kid)["Grants"]), 1)

    def test_grants_per_key_limit(self):
        acct, admin, key, creds, arns = self.setup_account("glimit", ["bob"])
        kid = key["KeyId"]
        for i in range(5):
            admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Encrypt"])
        code, _ = self.error(admin.create_grant, KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Encrypt"])
        self.assertEqual(code, "LimitExceededException")
        self.assertEqual(len(admin.list_grants(KeyId=kid)["Grants"]), 5)
        # A retired grant frees its place.
        g = admin.list_grants(KeyId=kid)["Grants"][0]
        admin.revoke_grant(KeyId=kid, GrantId=g["GrantId"])
        admin.create_grant(KeyId=kid, GranteePrincipal=arns["bob"], Operations=["Encrypt"])

    def test_name_constraints_and_tokens_bounded(self):
        acct, admin, key, creds, arns = self.setup_account("gbounds", ["bob"])
        kid = key["KeyId"]
        base = {"KeyId": kid, "GranteePrincipal": arns["bob"], "Operations": ["Decrypt"]}
        bad = [
            {"Name": "x" * 257},
            {"Name": "no spaces"},
            {"Constraints": {"EncryptionContextSubset": {"k%d" % i: "v" for i in range(9)}}},
            {"Constraints": {"EncryptionContextEquals": {"k": "v" * 385}}},
            {"Constraints": {"EncryptionContextEquals": {"k" * 385: "v"}}},
        ]
        for extra in bad:
            code, _ = self.error(admin.create_grant, **dict(base, **extra))
            self.assertEqual(code, "ValidationException", extra)
        g = admin.create_grant(**base)
        code, _ = self.error(admin.encrypt, KeyId=kid, Plaintext=b"x", GrantTokens=[g["GrantToken"]] * 11)
        self.assertEqual(code, "ValidationException")
        self.assertEqual(len(admin.list_grants(KeyId=kid)["Grants"]), 1)


class RetirableIndexRebuildTest(unittest.TestCase):
    """A store whose retiring-principal index is keyed by ARN (as written before grants were
    indexed by bound principal) is re-indexed once at start, grants stored before principals
    were bound move to their bound id, and a namesake does not inherit either."""

    def old_layout(self, data_dir, arn, unbind):
        write_in_clear(data_dir)
        db = sqlite3.connect(os.path.join(data_dir, "coffer.db"))
        rows = db.execute("SELECT key, value FROM kv WHERE key LIKE 'kms/grant/%'").fetchall()
        self.assertEqual(len(rows), 1)
        skey, value = rows[0]
        if unbind:
            rec = json.loads(value)
            for m in ("_GranteePrincipalId", "_RetiringPrincipalId"):
                self.assertIn(m, rec)
                del rec[m]
            value = json.dumps(rec, separators=(",", ":"), sort_keys=True).encode()
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (value, skey))
        by_arn = "kms/rgrant/%s/" % hashlib.sha256(arn.encode()).hexdigest()
        db.execute("DELETE FROM kv WHERE key LIKE 'kms/rgrant/%' OR key LIKE 'kms/meta/rgrant-index-%'")
        db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (by_arn + skey[len("kms/grant/"):], value))
        db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", ("kms/meta/rgrant-index-v1", b"1"))
        db.commit()
        db.close()
        return by_arn

    def count(self, data_dir, prefix):
        db = sqlite3.connect(os.path.join(data_dir, "coffer.db"))
        n = db.execute("SELECT count(*) FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)).fetchone()[0]
        db.close()
        return n

    def test_index_by_arn_rebuilt(self):
        for unbind in (False, True):
            server = Cofferd(extra_args=("--quota-crypto-rps", "0"))
            server.start()
            try:
                kms, iam = server.client(), server.client("iam")
                bob = iam.create_user(UserName="bob")["User"]
                kid = kms.create_key()["KeyMetadata"]["KeyId"]
                g = kms.create_grant(KeyId=kid, GranteePrincipal=bob["Arn"], Operations=["Encrypt"],
                                     RetiringPrincipal=bob["Arn"])["GrantId"]
                server.stop()
                by_arn = self.old_layout(server.data_dir, bob["Arn"], unbind)
                server.start()
                kms, iam = server.client(), server.client("iam")
                listed = kms.list_retirable_grants(RetiringPrincipal=bob["Arn"])["Grants"]
                self.assertEqual([x["GrantId"] for x in listed], [g], unbind)
                iam.delete_user(UserName="bob")
                iam.create_user(UserName="bob")
                self.assertEqual(kms.list_retirable_grants(RetiringPrincipal=bob["Arn"])["Grants"], [], unbind)
                server.stop()
                self.assertEqual(self.count(server.data_dir, by_arn), 0, unbind)
                self.assertEqual(self.count(server.data_dir, "kms/rgrant/"), 1, unbind)
                self.assertEqual(self.count(server.data_dir, "kms/meta/rgrant-index-v1"), 0, unbind)
            finally:
                server.stop()
                server.cleanup()


class GrantLimitConfigTest(unittest.TestCase):
    """The limit comes from the environment or the config file as well as the flag."""

    def test_env_and_file(self):
        for how in ("env", "file"):
            srv = Cofferd(extra_args=("--quota-crypto-rps", "0"))
            try:
                if how == "file":
                    with open(srv.data_dir + "/cofferd.conf", "w") as f:
                        f.write("max-grants-per-key = 1\n")
                    srv.start()
                else:
                    os.environ["COFFER_MAX_GRANTS_PER_KEY"] = "1"
                    try:
                        srv.start()
                    finally:
                        del os.environ["COFFER_MAX_GRANTS_PER_KEY"]
                kms = srv.client()
                kid = kms.create_key()["KeyMetadata"]["KeyId"]
                root = "arn:aws:iam::000000000000:root"
                kms.create_grant(KeyId=kid, GranteePrincipal=root, Operations=["Encrypt"])
                with self.assertRaises(botocore.exceptions.ClientError) as cm:
                    kms.create_grant(KeyId=kid, GranteePrincipal=root, Operations=["Decrypt"])
                self.assertEqual(cm.exception.response["Error"]["Code"], "LimitExceededException", how)
            finally:
                srv.cleanup()
