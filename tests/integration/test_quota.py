"""Quotas with real clients: the shared cryptographic bucket and per-operation control-plane
buckets answer ThrottlingException (which SDKs know to retry) once exhausted."""
import time
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase


class QuotaTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "5")

    def burst(self, op, n, threads=4, **kw):
        """n calls of `op` from `threads` concurrent clients; returns (ok, throttled)."""
        import threading
        counts = {"ok": 0, "throttled": 0, "other": []}
        lock = threading.Lock()

        def worker():
            fn = getattr(self.server.client(), op)
            for _ in range(n // threads):
                try:
                    fn(**kw)
                    key = "ok"
                except ClientError as e:
                    key = "throttled" if e.response["Error"]["Code"] == "ThrottlingException" else None
                    if key is None:
                        with lock:
                            counts["other"].append(e)
                        continue
                    self.assertIn("rate", e.response["Error"]["Message"])
                with lock:
                    counts[key] += 1

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(counts["other"], [])
        return counts["ok"], counts["throttled"]

    def test_crypto_bucket(self):
        kms = self.server.client()
        ok, throttled = self.burst("generate_random", 80, NumberOfBytes=8)
        self.assertGreaterEqual(ok, 5)
        self.assertGreater(throttled, 0)
        time.sleep(1.2)  # the bucket refills
        kms.generate_random(NumberOfBytes=8)

    def test_control_plane_bucket(self):
        kms = self.server.client()
        ok, throttled = self.burst("create_key", 40)
        self.assertGreaterEqual(ok, 5)  # AWS's CreateKey rate is 5/s: one second of burst
        self.assertGreater(throttled, 0)
        # Other operations have their own buckets.
        kms.list_keys()


if __name__ == "__main__":
    unittest.main()
