"""Audit events written in batches stay fail-closed.

A worker writes the events of the requests it handled in one turn of its event loop with one
write(2) and answers them only after that write. Many concurrent clients send Encrypt requests
while the trail's writes fail on and off (cofferd_faults, flag "audit": write(2) to a trail
file fails with ENOSPC). Then:

- no answered request lacks its event in the trail, and no refused request has one;
- every refusal is KMSInternalException (HTTP 500), as for an event that cannot be written at
  once, and nothing else fails;
- every request of a batch that could not be written is refused: the requests the server
  reports refusing batch by batch are exactly those the clients saw refused, and some failed
  batch held several requests;
- the chain verifies afterwards.
"""
import os
import re
import subprocess
import threading
import time
import unittest

import botocore.exceptions
from botocore.config import Config

from harness import COFFER, FaultServerTestCase, trail_events

CLIENTS = 16
DURATION_S = 4.0


class BatchFailClosedTest(FaultServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--workers", "1")

    def test_failed_batches_refuse_every_request(self):
        key = self.kms.create_key(Description="batched")["KeyMetadata"]["KeyId"]
        # No retries: botocore retries a 500 (max_attempts counts retries, not attempts), and every
        # refusal must reach the test as it was sent.
        no_retry = Config(retries={"total_max_attempts": 1, "mode": "standard"})
        clients = [self.server.client(config=no_retry) for _ in range(CLIENTS)]
        answered, refused, unexpected = [], [], []
        lock = threading.Lock()
        stop = threading.Event()

        def run(kms):
            while not stop.is_set():
                try:
                    r = kms.encrypt(KeyId=key, Plaintext=b"batched payload")
                    ok = bool(r["CiphertextBlob"])
                    with lock:
                        (answered if ok else unexpected).append(r["ResponseMetadata"]["RequestId"])
                except botocore.exceptions.ClientError as e:
                    r = e.response
                    with lock:
                        if r["ResponseMetadata"]["HTTPStatusCode"] == 500 and \
                                r["Error"]["Code"] == "KMSInternalException":
                            refused.append(r["ResponseMetadata"]["RequestId"])
                        else:
                            unexpected.append(repr(e))
                except Exception as e:  # transport errors are failures too
                    with lock:
                        unexpected.append(repr(e))

        threads = [threading.Thread(target=run, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        deadline = time.monotonic() + DURATION_S
        armed = False
        while time.monotonic() < deadline:
            if armed:
                self.disarm("audit")
            else:
                self.arm("audit")
            armed = not armed
            time.sleep(0.15)
        self.disarm("audit")
        stop.set()
        for t in threads:
            t.join()

        self.assertEqual(unexpected, [])
        self.assertGreater(len(answered), 0, "nothing was answered")
        self.assertGreater(len(refused), 0, "nothing was refused: the fault never hit a batch")
        in_trail = {e.get("requestID") for e in trail_events(self.server.data_dir)}
        missing = [rid for rid in answered if rid not in in_trail]
        self.assertEqual(missing, [], "answered without their event in the trail")
        recorded = [rid for rid in refused if rid in in_trail]
        self.assertEqual(recorded, [], "refused, yet their event is in the trail")

        log = self.server.log()
        batches = [int(n) for n in re.findall(r"refusing the (\d+) requests of the batch", log)]
        self.assertEqual(sum(batches), len(refused), "a request of a failed batch was not refused")
        self.assertGreater(max(batches), 1, "no failed batch held more than one request")
        for rid in refused:
            self.assertIn("refusing request %s" % rid, log)

        r = subprocess.run([COFFER, "audit", "verify", os.path.join(self.server.data_dir, "audit")],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # And once the trail can be written, requests are answered again.
        self.assertTrue(self.kms.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"])


class BatchFailClosedTwoWorkersTest(BatchFailClosedTest):
    extra_args = ("--quota-crypto-rps", "0", "--workers", "2")


if __name__ == "__main__":
    unittest.main()
