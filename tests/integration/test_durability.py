"""kill -9 under a stream of CreateKey/Encrypt: every acknowledged key still decrypts its
ciphertexts after a restart; secrets never appear in plaintext on disk; graceful stop."""
import os
import signal
import subprocess
import threading
import time
import unittest

from harness import COFFER, Cofferd


class DurabilityTest(unittest.TestCase):

    def test_kill9_keeps_acknowledged_work(self):
        server = Cofferd(extra_args=("--quota-crypto-rps", "0")).start()
        try:
            acked = []  # (key id, ciphertext, plaintext) acknowledged by the server
            stop = threading.Event()
            killing = threading.Event()  # from here on, a failed call is the kill's doing
            errors = []

            def writer(n):
                kms = server.client()
                i = 0
                while not stop.is_set():
                    try:
                        key = kms.create_key(Description="k%d-%d" % (n, i))["KeyMetadata"]["KeyId"]
                        pt = ("payload %d %d" % (n, i)).encode()
                        ct = kms.encrypt(KeyId=key, Plaintext=pt)["CiphertextBlob"]
                        acked.append((key, ct, pt))
                    except Exception as e:  # the kill interrupts calls in flight
                        if not killing.is_set():
                            errors.append(e)
                        return
                    i += 1

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            deadline = time.time() + 30
            while len(acked) < 60 and time.time() < deadline:
                time.sleep(0.05)
            killing.set()
            server.kill9()
            stop.set()
            for t in threads:
                t.join()
            # A call that failed before the kill is a server fault, not the kill's.
            self.assertEqual(errors, [])
            self.assertGreaterEqual(len(acked), 20, "too little work before the kill")

            server.start()
            kms = server.client()
            for key, ct, pt in acked:
                self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Enabled")
                self.assertEqual(kms.decrypt(CiphertextBlob=ct)["Plaintext"], pt)
            # The trail survives too (a torn last line is repaired at open).
            r = subprocess.run([COFFER, "audit", "verify", server.data_dir], capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            server.cleanup()

    def test_no_plaintext_or_key_material_on_disk(self):
        server = Cofferd().start()
        try:
            kms = server.client()
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            marker = b"TOP-SECRET-MARKER-" + os.urandom(8).hex().encode()
            ct = kms.encrypt(KeyId=key, Plaintext=marker)["CiphertextBlob"]
            dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256")["Plaintext"]
            self.assertEqual(kms.decrypt(CiphertextBlob=ct)["Plaintext"], marker)
            akid, secret = server.credentials()
            self.assertEqual(server.stop(), 0)
            import base64
            needles = [marker, base64.b64encode(marker), dk, base64.b64encode(dk), secret.encode()]
            for root, _, files in os.walk(server.data_dir):
                for name in files:
                    if name == "credentials":
                        continue  # the operator's own credentials file
                    with open(os.path.join(root, name), "rb") as f:
                        data = f.read()
                    for n in needles:
                        self.assertNotIn(n, data, "secret found in %s" % name)
        finally:
            server.cleanup()

    def test_graceful_shutdown(self):
        server = Cofferd().start()
        try:
            kms = server.client()
            kms.list_keys()
            self.assertEqual(server.stop(signal.SIGTERM), 0)
            self.assertIn("stopped", server.log())
            # restart on the same dir reuses credentials and TLS material
            server.start()
            kms = server.client()
            kms.list_keys()
        finally:
            server.cleanup()

    def test_root_key_file_mode(self):
        server = Cofferd().start()
        try:
            mode = os.stat(os.path.join(server.data_dir, "root.key")).st_mode & 0o777
            self.assertEqual(mode, 0o600)
            mode = os.stat(os.path.join(server.data_dir, "credentials")).st_mode & 0o777
            self.assertEqual(mode, 0o600)
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
