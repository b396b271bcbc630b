"""Root key providers end to end: cofferd sealed by a PKCS#11 token (SoftHSM2, with a token
made in a temporary directory), by a passphrase and by the key file; `coffer seal migrate`
between them with a ciphertext made at the start still decrypting after every step; and
failing closed (wrong PIN, wrong passphrase, wrong provider) with one clear line and nothing
served.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import COFFER, COFFERD, Cofferd

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = "/usr/bin/softhsm2-util"
HAVE_SOFTHSM = os.path.exists(SOFTHSM_MODULE) and os.path.exists(SOFTHSM_UTIL)
NO_SOFTHSM = "SoftHSM2 is not installed (apt-get install softhsm2): PKCS#11 tests skipped"
TOKEN = "coffer-it"

WORK = None


def setUpModule():
    global WORK
    WORK = tempfile.mkdtemp(prefix="coffer-seal-it-")
    with open(os.path.join(WORK, "pin"), "w") as f:
        f.write("1234\n")
    with open(os.path.join(WORK, "bad-pin"), "w") as f:
        f.write("4321\n")
    with open(os.path.join(WORK, "pass"), "w") as f:
        f.write("correct horse battery staple\n")
    with open(os.path.join(WORK, "bad-pass"), "w") as f:
        f.write("correct horse battery stapler\n")
    if HAVE_SOFTHSM:
        os.mkdir(os.path.join(WORK, "tokens"))
        conf = os.path.join(WORK, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % WORK)
        # cofferd and coffer inherit it: the token lives only in WORK.
        os.environ["SOFTHSM2_CONF"] = conf
        subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", TOKEN, "--pin", "1234",
                        "--so-pin", "5678"], check=True, capture_output=True)


def tearDownModule():
    os.environ.pop("SOFTHSM2_CONF", None)
    shutil.rmtree(WORK, ignore_errors=True)


def pkcs11(key, pin="pin", create=False):
    spec = "pkcs11:module=%s,token=%s,pin-file=%s,key=%s" % (SOFTHSM_MODULE, TOKEN, os.path.join(WORK, pin), key)
    return spec + (",create=yes" if create else "")


def passphrase(name="pass"):
    # The cheapest Argon2id costs: the test checks the plumbing, not the cost.
    return "passphrase:file=%s,ops=1,mem=8" % os.path.join(WORK, name)


def coffer(*args):
    return subprocess.run([COFFER] + list(args), capture_output=True, timeout=120, text=True)


def migrate(data_dir, to, frm=None):
    args = ["seal", "migrate", "--data-dir", data_dir, "--to", to] + (["--from", frm] if frm else [])
    r = coffer(*args)
    if r.returncode != 0:
        raise AssertionError("coffer seal migrate failed: %s" % r.stderr)
    return r.stdout


def status(data_dir):
    r = coffer("seal", "status", "--data-dir", data_dir)
    assert r.returncode == 0, r.stderr
    return dict(line.split(": ", 1) for line in r.stdout.splitlines())


def start_fails(data_dir, seal):
    """Runs cofferd with --seal `seal`: it must exit non-zero before listening. Returns its ERROR lines."""
    r = subprocess.run([COFFERD, "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--seal", seal],
                       capture_output=True, timeout=60, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, "cofferd started with --seal %s" % seal
    assert "listening" not in r.stdout, r.stdout
    return [line for line in r.stderr.splitlines() if " ERROR " in line]


class SealProvidersTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="coffer-it-")
        self.server = None

    def tearDown(self):
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, seal=None):
        self.server = Cofferd(data_dir=self.dir, extra_args=["--seal", seal] if seal else [])
        self.server.start()
        return self.server.client("kms")

    def stop(self):
        self.assertEqual(self.server.stop(), 0)
        self.server = None

    def encrypt_one(self, kms):
        key = kms.create_key(Description="sealed by a provider")["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"root of trust")["CiphertextBlob"]
        return key, blob

    def assert_decrypts(self, kms, key, blob):
        out = kms.decrypt(CiphertextBlob=blob)
        self.assertEqual(out["Plaintext"], b"root of trust")
        self.assertTrue(out["KeyId"].endswith(key))

    @unittest.skipUnless(HAVE_SOFTHSM, NO_SOFTHSM)
    def test_pkcs11_start_restart(self):
        kms = self.start(pkcs11("start-root", create=True))
        key, blob = self.encrypt_one(kms)
        self.stop()
        # No key file: the root key is only in the token.
        self.assertFalse(os.path.exists(os.path.join(self.dir, "root.key")))
        st = status(self.dir)
        self.assertEqual(st["provider"], "pkcs11")
        self.assertEqual(st["token"], TOKEN)
        self.assertEqual(st["key"], "start-root")
        kms = self.start(pkcs11("start-root"))
        self.assert_decrypts(kms, key, blob)

    @unittest.skipUnless(HAVE_SOFTHSM, NO_SOFTHSM)
    def test_migrate_file_pkcs11_passphrase_file(self):
        kms = self.start()
        key, blob = self.encrypt_one(kms)
        # Never under a running server.
        r = coffer("seal", "migrate", "--data-dir", self.dir, "--to", passphrase())
        self.assertEqual(r.returncode, 1)
        self.assertIn("a cofferd is running", r.stderr)
        self.assertEqual(status(self.dir)["provider"], "file")
        self.stop()

        out = migrate(self.dir, pkcs11("migrate-root", create=True))
        self.assertIn("file -> pkcs11", out)
        self.assertEqual(status(self.dir)["provider"], "pkcs11")
        # The key file no longer opens the data dir.
        self.assertIn("sealed by the pkcs11 provider", start_fails(self.dir, "file")[-1])
        kms = self.start(pkcs11("migrate-root"))
        self.assert_decrypts(kms, key, blob)
        self.stop()

        migrate(self.dir, passphrase(), frm=pkcs11("migrate-root"))
        st = status(self.dir)
        self.assertEqual(st["provider"], "passphrase")
        self.assertEqual(st["kdf"], "argon2id13")
        kms = self.start(passphrase())
        self.assert_decrypts(kms, key, blob)
        self.stop()

        migrate(self.dir, "file", frm=passphrase())
        self.assertEqual(status(self.dir)["provider"], "file")
        kms = self.start()
        self.assert_decrypts(kms, key, blob)

    @unittest.skipUnless(HAVE_SOFTHSM, NO_SOFTHSM)
    def test_pkcs11_fails_closed(self):
        self.start(pkcs11("closed-root", create=True))
        self.stop()
        cases = [
            (pkcs11("closed-root", pin="bad-pin"), "wrong PIN for token '%s' (CKR_PIN_INCORRECT)" % TOKEN),
            (pkcs11("closed-root").replace("token=" + TOKEN, "token=absent"), "no token labelled 'absent'"),
            (pkcs11("closed-root").replace(SOFTHSM_MODULE, "/nonexistent/module.so"),
             "cannot load module /nonexistent/module.so"),
            (pkcs11("no-such-key"), "holds no AES key labelled 'no-such-key'"),
        ]
        for seal, why in cases:
            errors = start_fails(self.dir, seal)
            self.assertEqual(len(errors), 1, errors)
            self.assertIn(why, errors[0])
        # Nothing was changed by the failed starts.
        kms = self.start(pkcs11("closed-root"))
        kms.list_keys()

    def test_passphrase_fails_closed(self):
        kms = self.start(passphrase())
        key, blob = self.encrypt_one(kms)
        self.stop()
        self.assertEqual(status(self.dir)["provider"], "passphrase")
        errors = start_fails(self.dir, passphrase("bad-pass"))
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("wrong passphrase", errors[0])
        # The same passphrase from the environment opens it.
        os.environ["COFFER_IT_PASS"] = "correct horse battery staple"
        try:
            kms = self.start("passphrase:env=COFFER_IT_PASS")
        finally:
            del os.environ["COFFER_IT_PASS"]
        self.assert_decrypts(kms, key, blob)

    def test_wrong_provider_fails_closed(self):
        self.start()
        self.stop()
        errors = start_fails(self.dir, passphrase())
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("the data dir is sealed by the file provider, not passphrase", errors[0])
        r = subprocess.run([COFFERD, "--data-dir", self.dir, "--seal", "vault:x=1"], capture_output=True,
                           timeout=60, text=True, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--seal: unknown provider 'vault'", r.stderr)


if __name__ == "__main__":
    unittest.main()
