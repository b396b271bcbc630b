"""Starts a real cofferd on a free loopback port with a temporary data dir and gives tests
the AWS CLI v2 (/usr/bin/aws) and boto3 clients configured against it.

Only Debian's clients are used: /usr/bin/aws (awscli) and /usr/bin/python3 with python3-boto3.

COFFER_TEST_STORE=postgres runs every cofferd the harness starts on the PostgreSQL backend: one
throw-away cluster per test process (pg_cluster.py) and a database of its own per data dir (its
URL kept in DIR/test-store-url, so a restart on the same dir, or a copy of the dir as a second
node, finds the same database). Suites that need PostgreSQL skip when its binaries are missing.
"""
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

BUILD_DIR = os.environ.get("COFFER_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
COFFERD = os.path.join(BUILD_DIR, "cofferd")
COFFER = os.path.join(BUILD_DIR, "coffer")
# cofferd with fault hooks (tests/faults/cofferd_faults.c), for tests that make writes fail.
COFFERD_FAULTS = os.path.join(BUILD_DIR, "cofferd_faults")
UNSEAL_FIXTURE = os.path.join(BUILD_DIR, "seal_unseal_fixture")
AWS = "/usr/bin/aws"
REGION = "us-east-1"


STORE_URL_FILE = "test-store-url"


def test_store():
    """The backend COFFER_TEST_STORE asks for: "sqlite" (the default) or "postgres"."""
    return os.environ.get("COFFER_TEST_STORE", "sqlite")


def pg_store_url(data_dir):
    """The PostgreSQL database of a data dir, created on first use in this process's cluster."""
    path = os.path.join(data_dir, STORE_URL_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    import pg_cluster
    reason = pg_cluster.unavailable_reason()
    if reason:
        raise unittest.SkipTest("COFFER_TEST_STORE=postgres: %s" % reason)
    cluster = pg_cluster.shared()
    pg_store_url.count = getattr(pg_store_url, "count", 0) + 1
    url = cluster.createdb("coffer_%d_%d" % (os.getpid(), pg_store_url.count))
    with open(path, "w") as f:
        f.write(url + "\n")
    return url


class Cofferd:
    """One cofferd process over a data dir; restartable on the same dir. `store` is a store URL
    for --store (default: SQLite, or PostgreSQL when COFFER_TEST_STORE=postgres)."""

    def __init__(self, data_dir=None, extra_args=(), binary=None, store=None):
        self.binary = binary or COFFERD
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="coffer-it-")
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.data_dir, "cofferd.log")
        self.store = store
        if self.store is None and test_store() == "postgres":
            try:
                self.store = pg_store_url(self.data_dir)
            except BaseException:
                if self.owns_dir:
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                raise

    def start(self, port=0, timeout=20):
        log = open(self.log_path, "ab")
        args = [self.binary, "--data-dir", self.data_dir, "--listen", "127.0.0.1:%d" % port,
                "--sweep-interval", "1"] + self.extra_args
        if self.store is not None:
            args += ["--store", self.store]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"listening "):
                self.port = int(line.split()[1])
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError("cofferd did not start: %r\n%s" % (line, self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def scheme(self):
        return "http" if "--insecure-http" in self.extra_args else "https"

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    @property
    def ca(self):
        return os.path.join(self.data_dir, "tls", "ca.pem")

    def credentials(self):
        """(access key id, secret) of the operator profile written at first start."""
        akid = secret = None
        with open(os.path.join(self.data_dir, "credentials")) as f:
            for line in f:
                if "=" in line:
                    k, v = [x.strip() for x in line.split("=", 1)]
                    if k == "aws_access_key_id":
                        akid = v
                    elif k == "aws_secret_access_key":
                        secret = v
        return akid, secret

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.data_dir, "credentials"),
            "AWS_CONFIG_FILE": os.path.join(self.data_dir, "config"),
            "AWS_PROFILE": "coffer",
            "AWS_CA_BUNDLE": self.ca,
            "AWS_PAGER": "",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
        })
        return env

    def aws(self, *args, check=False, input=None):
        """Runs the AWS CLI; returns (exit code, parsed JSON stdout or None, stderr)."""
        cmd = [AWS, "--endpoint-url", self.endpoint, "--output", "json"] + list(args)
        r = subprocess.run(cmd, env=self.env(), capture_output=True, timeout=60, input=input)
        out = None
        if r.stdout.strip():
            try:
                out = json.loads(r.stdout)
            except ValueError:
                out = r.stdout.decode()
        if check and r.returncode != 0:
            raise AssertionError("aws %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.returncode, out, r.stderr.decode()

    def client(self, service="kms", **kw):
        import boto3
        from botocore.config import Config
        akid, secret = self.credentials()
        cfg = kw.pop("config", None) or Config(retries={"max_attempts": 1, "mode": "standard"})
        return boto3.client(service, endpoint_url=self.endpoint, region_name=kw.pop("region", REGION),
                            aws_access_key_id=kw.pop("akid", akid),
                            aws_secret_access_key=kw.pop("secret", secret),
                            verify=self.ca if self.scheme == "https" else False, config=cfg, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc.stdout.close()
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(sig=signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def write_in_clear(data_dir):
    """Rewrites a stopped cofferd's data dir with every record in clear, as versions before the
    barrier sealed every record left it (tests/integration/seal_unseal_fixture.c), so a test can edit
    records as such a version wrote them; the next start seals them again."""
    r = subprocess.run([UNSEAL_FIXTURE, data_dir], capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("seal_unseal_fixture failed: %s" % r.stderr.decode())


def trail_events(data_dir):
    """Every event of the trail in DATA/audit, oldest first (the "current" symlink skipped)."""
    out = []
    for f in sorted(glob.glob(os.path.join(data_dir, "audit", "trail-*.jsonl"))):
        if os.path.islink(f):
            continue
        with open(f, "rb") as fh:
            out.extend(json.loads(line) for line in fh)
    return out


# The AWS SDK for JavaScript v3 (tests/js, installed by scripts/install-deps.sh): for the KMS
# operations and members Debian's CLI 2.9 and boto3 1.26 predate, and as the Secrets Manager
# client services run.
JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "js")


def js_call(server, operation, service="kms", **params):
    """One call through the JS SDK's client for `service` (kms, secretsmanager): ("ok", output)
    or (exception name, message)."""
    akid, secret = server.credentials()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": REGION})
    r = subprocess.run(["node", os.path.join(JS_DIR, "sdk_call.js"), service, server.endpoint, server.ca, operation,
                        json.dumps(params)], env=env, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("node %s failed (%d): %s" % (operation, r.returncode, r.stderr.decode()))
    out = json.loads(r.stdout)
    if out["ok"]:
        return "ok", out["output"]
    return out["name"], out["message"]


def js_ok(server, operation, service="kms", **params):
    status, out = js_call(server, operation, service, **params)
    if status != "ok":
        raise AssertionError("%s: %s %s" % (operation, status, out))
    return out


def readers_never_go_back(server, service, write, read, writes=40, readers=3):
    """Writes 1..writes in order (write(client, i)) on one connection while `readers` others read
    (read(client) -> int) until the last write returned; returns every read that gave less than
    what was acknowledged before it started (a stale cache), as messages."""
    acked, errors = [0], []
    lock, stop = threading.Lock(), threading.Event()

    def writer():
        c = server.client(service)
        try:
            for i in range(1, writes + 1):
                write(c, i)
                with lock:
                    acked[0] = i
        finally:
            stop.set()

    def reader():
        c = server.client(service)
        while not stop.is_set():
            with lock:
                floor = acked[0]
            got = read(c)
            if got < floor:
                errors.append("read %d after %d was acknowledged" % (got, floor))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def signed_call(server, service, target, body, akid, secret, region):
    """One JSON call signed with SigV4 as given and sent as it is (e.g. Coffer's internal
    operations, which no SDK knows): (HTTP status, decoded body)."""
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=server.endpoint + "/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    SigV4Auth(Credentials(akid, secret), service, region).add_auth(req)
    ctx = ssl.create_default_context(cafile=server.ca)
    c = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=20)
    try:
        c.request("POST", "/", body=data, headers=dict(req.prepare().headers))
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def stop_checked(server):
    """Stops a cofferd and fails on an unclean exit or a sanitizer report in its log."""
    if server.proc is None:  # never started: nothing to check
        server.cleanup()
        return
    rc = server.stop()
    log = server.log()
    server.cleanup()
    if rc != 0 or "ERROR: AddressSanitizer" in log or "runtime error:" in log or "LeakSanitizer" in log \
            or "ThreadSanitizer" in log:
        raise AssertionError("cofferd exited with %r:\n%s" % (rc, log[-4000:]))


class PeerRegions:
    """One cofferd per region on loopback, each named as every other's peer (--peer), with a
    policy-less IAM user "replicator" in each as the credential the others replicate with."""
    ACCOUNT = "000000000000"
    REPLICATOR = "arn:aws:iam::%s:user/replicator" % ACCOUNT

    def __init__(self, regions, extra_args=("--quota-crypto-rps", "0")):
        self.regions = tuple(regions)
        self.dirs = {r: tempfile.mkdtemp(prefix="coffer-peer-") for r in self.regions}
        self.ports = {}
        for r in self.regions:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.ports[r] = sock.getsockname()[1]
            sock.close()
        self.servers = {}
        for region in self.regions:
            args = ["--region", region] + list(extra_args)
            for peer in self.regions:
                if peer != region:
                    # The peer's credential file is written once its user exists: a server
                    # reads it when it first needs it.
                    args += ["--peer", "%s=https://127.0.0.1:%d,ca=%s,credentials=%s,profile=replication,principal=%s"
                             % (peer, self.ports[peer], os.path.join(self.dirs[peer], "tls", "ca.pem"),
                                os.path.join(self.dirs[region], "peer-" + peer), self.REPLICATOR)]
            self.servers[region] = Cofferd(data_dir=self.dirs[region], extra_args=args)
        self.replicator_keys = {}

    def start(self):
        try:
            for region in self.regions:
                self.servers[region].start(port=self.ports[region])
            for peer in self.regions:
                iam = self.servers[peer].client("iam", region=peer)
                iam.create_user(UserName="replicator")
                k = iam.create_access_key(UserName="replicator")["AccessKey"]
                self.replicator_keys[peer] = (k["AccessKeyId"], k["SecretAccessKey"])
                for region in self.regions:
                    if region != peer:
                        with open(os.path.join(self.dirs[region], "peer-" + peer), "w") as f:
                            f.write("[replication]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                                    % (k["AccessKeyId"], k["SecretAccessKey"]))
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        failures = []
        for server in self.servers.values():
            try:
                stop_checked(server)
            except AssertionError as e:
                failures.append(str(e))
        for d in self.dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        if failures:
            raise AssertionError("\n".join(failures))


class FaultServerTestCase(unittest.TestCase):
    """One cofferd_faults for the whole class, with its flag directory (COFFER_FAULTS_DIR): a
    test arms a fault by name (tests/faults/cofferd_faults.c lists them); it is disarmed when the
    test ends."""
    extra_args = ("--quota-crypto-rps", "0")

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(COFFERD_FAULTS):
            raise AssertionError("%s is not built" % COFFERD_FAULTS)
        cls.flags = tempfile.mkdtemp(prefix="coffer-faults-")
        os.environ["COFFER_FAULTS_DIR"] = cls.flags
        try:
            cls.server = Cofferd(extra_args=cls.extra_args, binary=COFFERD_FAULTS).start()
        finally:
            del os.environ["COFFER_FAULTS_DIR"]
        cls.kms = cls.server.client("kms")

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        log = cls.server.log()
        cls.server.cleanup()
        shutil.rmtree(cls.flags, ignore_errors=True)
        if rc != 0 or "Sanitizer" in log or "runtime error:" in log:
            raise AssertionError("cofferd_faults exited with %r:\n%s" % (rc, log[-4000:]))

    def arm(self, fault):
        open(os.path.join(self.flags, fault), "w").close()
        self.addCleanup(self.disarm, fault)

    def disarm(self, fault):
        try:
            os.unlink(os.path.join(self.flags, fault))
        except FileNotFoundError:
            pass


class ServerTestCase(unittest.TestCase):
    """One cofferd for the whole class. Quotas are off: functional tests create keys faster
    than AWS's CreateKey rate; test_quota.py covers throttling with quotas on."""
    extra_args = ("--quota-crypto-rps", "0")
    binary = None  # a cofferd variant built with test-only services (None: cofferd)

    @classmethod
    def setUpClass(cls):
        cls.server = Cofferd(extra_args=cls.extra_args, binary=cls.binary).start()

    @classmethod
    def tearDownClass(cls):
        # A clean shutdown and no sanitizer report are part of every test class.
        stop_checked(cls.server)

    def err(self, fn, **kw):
        """The AWS error code and message a call must fail with."""
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")
