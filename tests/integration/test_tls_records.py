"""Requests whose TLS records arrive together are answered at once.

cofferd reads TLS connections with OpenSSL's read-ahead (one read(2) takes every record the
socket holds). Records that were read ahead but not yet decrypted must still be processed
without waiting for another packet from the client, which may never come: the client is waiting
for the answer. Each case sends its records with one sendall, built with ssl.SSLObject so the
record boundaries are exactly as stated, and expects the answers within a few seconds:

- headers and body in two records;
- two pipelined requests in two records;
- a body over 16 KiB (two records) after the headers;
- the last record split across two sends (a partial record is read first).
"""
import socket
import ssl
import time
import unittest

from harness import ServerTestCase

TIMEOUT = 5


class TlsClient:
    """A TLS client over a plain socket whose records are built in memory (ssl.SSLObject)."""

    def __init__(self, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise AssertionError("connection closed during the handshake")
                self.inc.write(data)
        self.flush()
        self.plain = b""

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def records(self, *parts):
        """The TLS records of each part, one or more records per part, as bytes."""
        for p in parts:
            self.tls.write(p)
        return self.out.read()

    def response(self):
        """One HTTP response (status, body), waiting at most TIMEOUT seconds."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            head, sep, rest = self.plain.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if len(rest) >= length:
                    self.plain = rest[length:]
                    return int(head.split(b" ")[1]), rest[:length]
            if time.monotonic() > deadline:
                raise AssertionError("no answer within %ds: the request is stuck" % TIMEOUT)
            try:
                self.plain += self.tls.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError("no answer within %ds: the request is stuck" % TIMEOUT)
            if not data:
                raise AssertionError("connection closed before the answer")
            self.inc.write(data)

    def close(self):
        self.sock.close()


def post(body):
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n"
            b"X-Amz-Target: TrentService.ListKeys\r\nContent-Length: %d\r\n\r\n" % len(body))


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class TlsRecordsTest(ServerTestCase):

    def client(self):
        c = TlsClient(self.server.port, self.server.ca)
        self.addCleanup(c.close)
        return c

    def test_headers_and_body_in_two_records(self):
        c = self.client()
        body = b"{}"
        c.sock.sendall(c.records(post(body), body))
        status, answer = c.response()
        self.assertEqual(status, 400, answer)  # unsigned: refused, but answered
        self.assertIn(b"MissingAuthenticationToken", answer)

    def test_pipelined_requests(self):
        c = self.client()
        c.sock.sendall(c.records(HEALTH, HEALTH))
        for _ in range(2):
            status, answer = c.response()
            self.assertEqual(status, 200)
            self.assertEqual(answer, b'{"status":"ok"}')

    def test_body_over_one_record(self):
        c = self.client()
        body = b'{"Padding":"' + b"x" * 40000 + b'"}'
        c.sock.sendall(c.records(post(body), body))
        status, answer = c.response()
        self.assertEqual(status, 400, answer)

    def test_partial_record(self):
        c = self.client()
        body = b"{}"
        data = c.records(post(body), body)
        c.sock.sendall(data[:-7])
        time.sleep(0.3)
        c.sock.sendall(data[-7:])
        status, _ = c.response()
        self.assertEqual(status, 400)
        # And the connection goes on: one more request, records together.
        c.sock.sendall(c.records(HEALTH))
        self.assertEqual(c.response()[0], 200)


if __name__ == "__main__":
    unittest.main()
