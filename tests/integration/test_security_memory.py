"""Secrets do not linger in cofferd's memory after a request.

Drives Encrypt, Decrypt and GenerateDataKey through boto3 over TLS, then reads the live
process's memory (/proc/<pid>/mem, which needs root or ptrace rights over a non-dumpable
process) and looks for the plaintext and data keys, raw and base64, as they travelled in the
request and response bodies. Freed memory counts: a copy in a free heap chunk is still a copy.
"""
import base64
import os
import re
import time
import unittest

from harness import BUILD_DIR, ServerTestCase

MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


def process_memory(pid):
    """Yields (name, bytes) of every readable, writable mapping of `pid` (heap, stacks, anon)."""
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            m = MAPS_LINE.match(line)
            if not m or not m.group(3).startswith("rw"):
                continue
            name = m.group(4)
            if name.startswith("[v") or (name.startswith("/") and not name.startswith("/memfd")):
                continue  # vvar/vsyscall, and the data segments of files (no request data)
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            try:
                mem.seek(start)
                yield name or "anon", mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue


def sanitized_build():
    """AddressSanitizer keeps freed chunks in quarantine and reserves terabytes of shadow
    memory: a scan of such a process neither fits in memory nor says what the release build does."""
    try:
        with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
            cache = f.read()
            return "COFFER_SANITIZE:BOOL=ON" in cache or "COFFER_TSAN:BOOL=ON" in cache
    except OSError:
        return False


def can_read_memory(pid):
    try:
        for _ in process_memory(pid):
            return True
    except OSError:
        return False
    return False


class SecretsInMemoryTest(ServerTestCase):
    def setUp(self):
        self.pid = self.server.proc.pid
        if sanitized_build():
            self.skipTest("memory scan skipped under sanitizers (see sanitized_build)")
        if not can_read_memory(self.pid):
            self.skipTest("cannot read cofferd's memory (needs root or CAP_SYS_PTRACE)")
        self.kms = self.server.client()
        self.key = self.kms.create_key()["KeyMetadata"]["KeyId"]

    def copies(self, secrets):
        """Where any of `secrets` (name -> bytes) occurs in cofferd's memory now."""
        time.sleep(0.5)  # connections closed by the client are torn down by the worker
        found = []
        for region, data in process_memory(self.pid):
            for what, needle in secrets.items():
                at = data.find(needle)
                if at >= 0:
                    found.append("%s in %s at +0x%x" % (what, region, at))
        return found

    def needles(self, name, raw):
        return {name: raw, name + " (base64)": base64.b64encode(raw)}

    def close_client(self):
        # Ends the keep-alive connection so the server releases every buffer of it.
        self.kms._endpoint.http_session.close()

    def test_scan_sees_what_cofferd_holds(self):
        # The other tests pass when nothing is found: prove the scan reads cofferd's memory by
        # finding what it must hold, the id of the key it just created (its key cache).
        self.assertNotEqual(self.copies({"key id": self.key.encode()}), [])

    def test_decrypt_and_data_keys_leave_no_copy(self):
        plaintext = os.urandom(48)
        blob = self.kms.encrypt(KeyId=self.key, Plaintext=plaintext)["CiphertextBlob"]
        for _ in range(20):
            self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], plaintext)
        secrets = self.needles("plaintext", plaintext)
        for i in range(5):
            dk = self.kms.generate_data_key(KeyId=self.key, KeySpec="AES_256")["Plaintext"]
            secrets.update(self.needles("data key %d" % i, dk))
        raw = self.kms.generate_random(NumberOfBytes=64)["Plaintext"]
        secrets.update(self.needles("random bytes", raw))
        self.close_client()
        self.assertEqual(self.copies(secrets), [])

    def test_large_request_body_leaves_no_copy(self):
        # A 4 KB plaintext spans several evbuffer chains on the way in.
        plaintext = os.urandom(4096)
        blob = self.kms.encrypt(KeyId=self.key, Plaintext=plaintext)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], plaintext)
        self.close_client()
        secrets = {"plaintext head": plaintext[:64], "plaintext tail": plaintext[-64:],
                   "plaintext (base64)": base64.b64encode(plaintext)[1000:1100]}
        self.assertEqual(self.copies(secrets), [])


if __name__ == "__main__":
    unittest.main()
