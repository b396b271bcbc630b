"""What the Secrets Manager rotation suites share: rotation functions written in Python (an exec
program in the outline of AWS's reference template, and a webhook handler running the same
steps), the waits and reads of a rotation's outcome (RotationChecks), and TLS material made with
the openssl CLI for HTTPS webhooks.
"""
import http.server
import json
import os
import stat
import subprocess
import time

from botocore.exceptions import ClientError

from harness import REGION, trail_events

ACCOUNT = "000000000000"
WAIT = 120  # the bound of every wait: a loaded machine runs the Python functions slowly


def fn_arn(name):
    return "arn:aws:lambda:%s:%s:function:%s" % (REGION, ACCOUNT, name)


# The rotation function: AWS's reference template (SecretsManagerRotationTemplate) in outline,
# with a mode that misbehaves once: "failtest" fails testSecret on the first attempt of each
# token, "sleepset" sleeps in setSecret on the first attempt, "slow" outlives the timeout in
# setSecret. Every call is logged (step, token, region, time) for the test to read, and what the
# function saw of its token's labels in seen.jsonl.
FUNCTION = r'''#!/usr/bin/python3
import json, os, sys, time
import boto3
from botocore.config import Config

MODE = %(mode)r
CFG = json.load(open(%(cfg)r))
ev = json.load(sys.stdin)
step, arn, token = ev["Step"], ev["SecretId"], ev["ClientRequestToken"]
with open(os.path.join(CFG["dir"], "calls.jsonl"), "a") as f:
    f.write(json.dumps({"mode": MODE, "step": step, "arn": arn, "token": token, "t": time.time(),
                        "region": os.environ.get("AWS_REGION"),
                        "coffer_env": sorted(k for k in os.environ if k.startswith("COFFER_"))}) + "\n")
sm = boto3.client("secretsmanager", endpoint_url=CFG["endpoint"], region_name=os.environ["AWS_REGION"],
                  aws_access_key_id=CFG["akid"], aws_secret_access_key=CFG["secret"], verify=CFG["ca"],
                  config=Config(retries={"max_attempts": 1}))
meta = sm.describe_secret(SecretId=arn)
if not meta.get("RotationEnabled"):
    sys.exit(2)
versions = meta["VersionIdsToStages"]
with open(os.path.join(CFG["dir"], "seen.jsonl"), "a") as f:
    f.write(json.dumps({"step": step, "token": token, "stages": versions.get(token, [])}) + "\n")
if token not in versions:
    sys.exit(3)
if "AWSCURRENT" in versions[token]:
    sys.exit(0)
if "AWSPENDING" not in versions[token]:
    sys.exit(4)

def once(what):
    marker = os.path.join(CFG["dir"], "%%s-%%s" %% (what, token))
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True

if step == "createSecret":
    sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    try:
        sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    except sm.exceptions.ResourceNotFoundException:
        pw = sm.get_random_password(ExcludeCharacters="/@\"'\\")["RandomPassword"]
        sm.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString=pw,
                            VersionStages=["AWSPENDING"])
elif step == "setSecret":
    if MODE == "sleepset" and once("sleeping"):
        time.sleep(60)
    if MODE == "slow":
        time.sleep(60)
elif step == "testSecret":
    sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    if MODE == "failtest" and once("failed"):
        sys.exit(1)
elif step == "finishSecret":
    current = [v for v, st in versions.items() if "AWSCURRENT" in st][0]
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=token,
                                   RemoveFromVersionId=current)
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)
'''

MODES = ("ok", "failtest", "sleepset", "slow")


def webhook_step(sm, step, arn, token):
    """The four steps of the reference template, for the webhook (same as FUNCTION's "ok")."""
    versions = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    if "AWSCURRENT" in versions.get(token, []):
        return
    if step == "createSecret":
        try:
            sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        except sm.exceptions.ResourceNotFoundException:
            sm.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="from-webhook-" + token[:8],
                                VersionStages=["AWSPENDING"])
    elif step == "testSecret":
        sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    elif step == "finishSecret":
        current = [v for v, st in versions.items() if "AWSCURRENT" in st][0]
        sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=token,
                                       RemoveFromVersionId=current)
        sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)


class Webhook(http.server.BaseHTTPRequestHandler):
    """POST /ok runs the step; POST /fail answers 500 to testSecret."""
    calls = []
    client = None

    def do_POST(self):
        ev = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Webhook.calls.append((self.path, self.headers.get("Content-Type"), ev))
        status = 200
        if self.path == "/fail" and ev["Step"] == "testSecret":
            status = 500
        else:
            try:
                webhook_step(Webhook.client, ev["Step"], ev["SecretId"], ev["ClientRequestToken"])
            except Exception:  # noqa: BLE001 - any failure is the step's failure
                status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def write_functions(server, fn_dir, cfg, modes=MODES):
    """The exec functions of `modes` as fn_dir/<mode>.py, calling `server` back (cfg: their settings
    file, rewritten when the server's port changes)."""
    akid, secret = server.credentials()
    with open(cfg, "w") as f:
        json.dump({"endpoint": server.endpoint, "ca": server.ca, "akid": akid, "secret": secret,
                   "dir": fn_dir}, f)
    for mode in modes:
        path = os.path.join(fn_dir, mode + ".py")
        with open(path, "w") as f:
            f.write(FUNCTION % {"mode": mode, "cfg": cfg})
        os.chmod(path, stat.S_IRWXU)


def make_ca(tls_dir, name):
    """A self-signed CA (tls_dir/<name>.key, tls_dir/<name>.pem); returns the certificate's path."""
    key, pem = os.path.join(tls_dir, name + ".key"), os.path.join(tls_dir, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", pem,
                    "-days", "2", "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return pem


def make_server_cert(tls_dir, ca_name, name, ip="127.0.0.1"):
    """A server certificate for `ip` signed by the CA make_ca(tls_dir, ca_name) made; returns
    (certificate path, key path)."""
    key, csr, pem = (os.path.join(tls_dir, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(tls_dir, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n" % ip)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=" + ip], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(tls_dir, ca_name + ".pem"),
                    "-CAkey", os.path.join(tls_dir, ca_name + ".key"), "-CAcreateserial", "-days", "2",
                    "-extfile", ext, "-out", pem], check=True, capture_output=True)
    return pem, key


class RotationChecks:
    """Reads and waits of the rotation suites; the test class has `sm`, `server` and `dir` (where
    the exec functions log their calls)."""

    def err(self, fn, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def stages(self, name):
        return self.sm.describe_secret(SecretId=name).get("VersionIdsToStages", {})

    def calls(self, token=None):
        path = os.path.join(self.dir, "calls.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            out = [json.loads(line) for line in f if line.strip()]
        return [c for c in out if token is None or c["token"] == token]

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = cond()
            if got:
                return got
            time.sleep(0.1)
        self.fail("timed out after %ss waiting for %s\n%s" % (timeout, what, self.server.log()[-3000:]))

    def describe(self, name, sm=None):
        """DescribeSecret as sent (through `sm`, default self.sm): Debian's botocore 1.29 predates
        NextRotationDate in its model and would drop it. Dates are epoch seconds."""
        sm = sm or self.sm
        captured = {}

        def grab(http_response, **_):
            captured["body"] = http_response.content

        sm.meta.events.register("after-call.secrets-manager.DescribeSecret", grab)
        try:
            sm.describe_secret(SecretId=name)
        finally:
            sm.meta.events.unregister("after-call.secrets-manager.DescribeSecret", grab)
        return json.loads(captured["body"])

    def rotated_to(self, name, token):
        """True once `token` is AWSCURRENT and the rotation's success is on record."""
        def done():
            stages = self.stages(name)
            if "AWSCURRENT" not in stages.get(token, []):
                return False
            arn = self.sm.describe_secret(SecretId=name)["ARN"]
            return any(e["eventName"] == "RotationSucceeded" and
                       e["serviceEventDetails"]["ClientRequestToken"] == token for e in self.events(name, arn))
        return done

    def events(self, name, arn):
        return [e for e in trail_events(self.server.data_dir)
                if e.get("eventName", "").startswith("Rotation") and
                (e.get("additionalEventData") or {}).get("SecretId") == arn]
