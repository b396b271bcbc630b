"""Quotas with real clients: the shared cryptographic bucket and per-operation control-plane
buckets answer ThrottlingException (which SDKs know to retry) once exhausted."""
import time
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase


class QuotaTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "5")

    def burst(self, op, n, threads=4, **kw):
        """n calls of `op` from `threads` concurrent clients; returns (ok, throttled).
        Workers only record what each call answered; every check is made here, in the
        test's own thread, where a failed assertion fails the test."""
        import threading
        outcomes = []  # per call: "ok", or the ClientError / other exception it raised
        lock = threading.Lock()

        def worker():
            try:
                fn = getattr(self.server.client(), op)
                for _ in range(n // threads):
                    try:
                        fn(**kw)
                        r = "ok"
                    except ClientError as e:
                        r = e
                    with lock:
                        outcomes.append(r)
            except BaseException as e:  # anything else ends the worker: the test must see it
                with lock:
                    outcomes.append(e)

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(outcomes), n // threads * threads, [o for o in outcomes if o != "ok"][:3])
        throttled = [o for o in outcomes if isinstance(o, ClientError)
                     and o.response["Error"]["Code"] == "ThrottlingException"]
        other = [o for o in outcomes if o != "ok" and not any(o is t for t in throttled)]
        self.assertEqual(other, [])
        for e in throttled:
            self.assertIn("rate", e.response["Error"]["Message"])
        return outcomes.count("ok"), len(throttled)

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
