#!/usr/bin/env python3
"""End-to-end tests of `coffer encrypt` / `coffer decrypt`.

usage: esdk_cli_test.py COFFER ONESHOT_DECRYPT COFFER_KMS_STUB VECTORS_DIR

Drives the real binary: round trips for every keyring form, pipes, directories, base64, the
encryption-context check, tampering (exit 1 and no output left behind), usage errors (exit 2),
commitment policies, every algorithm suite, metadata, and official legacy vectors.
"""
import base64
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tty

COFFER, ONESHOT, KMS_STUB, VECTORS = (os.path.abspath(a) for a in sys.argv[1:5])
LEGACY = os.path.join(VECTORS, "esdk", "python-1.3.0-legacy")
SUITES = {
    0x0014: "AES_128_GCM_IV12_TAG16_NO_KDF", 0x0046: "AES_192_GCM_IV12_TAG16_NO_KDF",
    0x0078: "AES_256_GCM_IV12_TAG16_NO_KDF", 0x0114: "AES_128_GCM_IV12_TAG16_HKDF_SHA256",
    0x0146: "AES_192_GCM_IV12_TAG16_HKDF_SHA256", 0x0178: "AES_256_GCM_IV12_TAG16_HKDF_SHA256",
    0x0214: "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256",
    0x0346: "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384",
    0x0378: "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384",
    0x0478: "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", 0x0578: "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
}
COMMITTING = {0x0478, 0x0578}

work = tempfile.mkdtemp(prefix="coffer-esdk-cli-")
failures = []


def p(*names):
    return os.path.join(work, *names)


def run(args, stdin=None, binary=COFFER, env=None):
    r = subprocess.run([binary] + args, input=stdin, capture_output=True, cwd=work, env=env, timeout=120)
    return r.returncode, r.stdout, r.stderr


def check(cond, what, detail=b""):
    if cond:
        print("ok:", what)
    else:
        print("FAIL:", what)
        if detail:
            print("   ", detail.decode(errors="replace")[:2000] if isinstance(detail, bytes) else detail)
        failures.append(what)


def expect(code, what, args, **kw):
    rc, out, err = run(args, **kw)
    check(rc == code, f"{what} (exit {rc}, want {code})", err)
    return rc, out, err


def write(name, data):
    with open(p(name), "wb") as f:
        f.write(data)
    return p(name)


def read(name):
    with open(p(name), "rb") as f:
        return f.read()


# ---- keys and data ----
aes = write("aes256.key", os.urandom(32))
aes128 = write("aes128.key", os.urandom(16))
write("bad.key", os.urandom(20))
legacy = json.load(open(os.path.join(LEGACY, "manifests", "ciphertext.manifest")))
rsa_k = legacy["test_keys"]["RSA"]["2048"]
rsa_priv = write("rsa.pem", rsa_k.get("line_separator", "\n").join(rsa_k["key"]).encode())
pub = subprocess.run(["openssl", "pkey", "-in", rsa_priv, "-pubout"], capture_output=True)
rsa_pub = write("rsa.pub.pem", pub.stdout) if pub.returncode == 0 else None
pt = write("pt", os.urandom(200_000))
write("empty", b"")

AES = ["-w", "provider=raw-aes", f"key-file={aes}", "name=k256", "namespace=ns"]
AES128 = ["-w", "provider=raw-aes", f"key-file={aes128}", "name=k128", "namespace=ns"]
RSA_PRIV = ["-w", "provider=raw-rsa", f"key-file={rsa_priv}", "name=rsa", "namespace=ns", "padding=oaep-sha256"]
RSA_PUB = ["-w", "provider=raw-rsa", f"key-file={rsa_pub or rsa_priv}", "name=rsa", "namespace=ns",
           "padding=oaep-sha256"]


def roundtrip(what, enc_keys, dec_keys, src="pt", extra_enc=(), extra_dec=()):
    ct, out = f"{what}.ct", f"{what}.out"
    expect(0, f"{what}: encrypt", ["encrypt", "-i", src, "-o", ct] + enc_keys + list(extra_enc))
    expect(0, f"{what}: decrypt", ["decrypt", "-i", ct, "-o", out] + dec_keys + list(extra_dec))
    check(os.path.exists(p(out)) and read(out) == read(src), f"{what}: plaintext matches")
    return ct


# ---- help ----
for mode in ("encrypt", "decrypt"):
    rc, out, _ = expect(0, f"{mode} --help", [mode, "--help"])
    check(b"--wrapping-keys" in out and b"exit status" in out, f"{mode} --help describes flags and exit codes")

# ---- round trips ----
ct_aes = roundtrip("raw-aes", AES, AES)
r = subprocess.run([ONESHOT, aes, "ns", "k256", p(ct_aes), pt], capture_output=True)
check(r.returncode == 0, "library one-shot coffer_decrypt opens a CLI message", r.stderr)
roundtrip("raw-aes-128-key", AES128, AES128)
roundtrip("raw-aes-empty", AES, AES, src="empty")
roundtrip("raw-rsa", RSA_PUB, RSA_PRIV)
if rsa_pub:
    expect(2, "raw-rsa: decrypt with a public key is a usage error",
           ["decrypt", "-i", "raw-rsa.ct", "-o", "x"] + RSA_PUB)
for pad in ("pkcs1", "oaep-sha1", "oaep-sha384", "oaep-sha512"):
    keys = ["-w", "provider=raw-rsa", f"key-file={rsa_priv}", "name=rsa", "namespace=ns", f"padding={pad}"]
    roundtrip(f"raw-rsa-{pad}", keys, keys)
multi_ct = roundtrip("multi", AES + RSA_PUB, AES + RSA_PRIV)
expect(0, "multi: the second keyring alone decrypts",
       ["decrypt", "-i", multi_ct, "-o", "multi.rsa.out", "--metadata-output", "multi.meta"] + RSA_PRIV)
check(read("multi.rsa.out") == read("pt"), "multi: plaintext via the RSA child")
m = json.loads(read("multi.meta"))
check(len(m["header"]["encrypted_data_keys"]) == 2, "multi: two EDKs in the header")
check([k["provider"] for k in m["wrapping_keys"]] == ["raw-rsa"], "multi: metadata names the key that decrypted")
expect(0, "multi: the generator alone decrypts", ["decrypt", "-i", multi_ct, "-o", "multi.aes.out"] + AES)
expect(1, "wrong key: exit 1", ["decrypt", "-i", multi_ct, "-o", "wrong.out"] + AES128)
check(not os.path.exists(p("wrong.out")), "wrong key: no output file")
expect(1, "max-encrypted-data-keys below the EDK count: exit 1",
       ["decrypt", "-i", multi_ct, "-o", "maxedk.out", "--max-encrypted-data-keys", "1"] + AES)
check(not os.path.exists(p("maxedk.out")), "max-encrypted-data-keys: no output file")
expect(0, "max-encrypted-data-keys at the EDK count", ["decrypt", "-i", multi_ct, "-o", "maxedk2.out",
                                                         "--max-encrypted-data-keys", "2"] + AES)

# ---- stdin / stdout ----
data = os.urandom(70_000)
rc, ct, err = expect(0, "stdin -> stdout encrypt", ["encrypt", "-i", "-", "-o", "-"] + AES, stdin=data)
rc, back, err = expect(0, "stdin -> stdout decrypt", ["decrypt", "-i", "-", "-o", "-"] + AES, stdin=ct)
check(back == data, "stdin/stdout round trip")
rc, back, err = expect(0, "stdout decrypt with --buffer", ["decrypt", "-i", "-", "-o", "-", "--buffer"] + AES,
                       stdin=ct)
check(back == data, "--buffer round trip")
rc, back, _ = expect(1, "tampered stdin with --buffer: exit 1",
                     ["decrypt", "-i", "-", "-o", "-", "--buffer"] + AES, stdin=ct[:-1] + bytes([ct[-1] ^ 1]))
check(back == b"", "--buffer releases nothing from a tampered message")

# ---- base64 ----
rc, enc, _ = expect(0, "--encode", ["encrypt", "-i", "pt", "-o", "-", "--encode"] + AES)
check(base64.b64decode(enc, validate=True)[:1] in (b"\x01", b"\x02"), "--encode writes one base64 message")
write("b64.ct", enc[:1000] + b"\n" + enc[1000:] + b"\n")
expect(0, "--decode (with line breaks)", ["decrypt", "-i", "b64.ct", "-o", "b64.out", "--decode"] + AES)
check(read("b64.out") == read("pt"), "base64 round trip")
write("b64bad.ct", enc[:-3] + b"!!=")
expect(1, "--decode of broken base64: exit 1", ["decrypt", "-i", "b64bad.ct", "-o", "b64bad.out", "--decode"] + AES)
check(not os.path.exists(p("b64bad.out")), "broken base64: no output file")

# ---- directories ----
os.makedirs(p("tree", "a", "b"))
files = {"top.txt": os.urandom(10), "a/mid.bin": os.urandom(5000), "a/b/deep": b""}
for rel, d in files.items():
    write(os.path.join("tree", rel), d)
expect(2, "directory without -r: usage error", ["encrypt", "-i", "tree", "-o", "tree.enc"] + AES)
expect(0, "encrypt -r", ["encrypt", "-r", "-i", "tree", "-o", "tree.enc"] + AES)
for rel in files:
    check(os.path.isfile(p("tree.enc", rel + ".encrypted")), f"-r: {rel}.encrypted exists")
expect(0, "decrypt -r", ["decrypt", "-r", "-i", "tree.enc", "-o", "tree.dec"] + AES)
for rel, d in files.items():
    out = p("tree.dec", rel + ".encrypted.decrypted")
    check(os.path.isfile(out) and open(out, "rb").read() == d, f"-r: {rel} round trip")
expect(0, "--suffix", ["encrypt", "-r", "-i", "tree", "-o", "tree.sfx", "--suffix", ".cof"] + AES)
check(os.path.isfile(p("tree.sfx", "a", "mid.bin.cof")), "--suffix names outputs")
os.mkdir(p("outdir"))
expect(0, "file into an existing directory", ["encrypt", "-i", "pt", "-o", "outdir"] + AES)
check(os.path.isfile(p("outdir", "pt.encrypted")), "file into directory gets the suffix")
expect(2, "output directory inside the input", ["encrypt", "-r", "-i", "tree", "-o", "tree/inner"] + AES)

# ---- encryption context ----
expect(0, "encrypt with context", ["encrypt", "-i", "pt", "-o", "ec.ct", "-c", "purpose=test", "team=x"] + AES)
expect(0, "decrypt with a required subset", ["decrypt", "-i", "ec.ct", "-o", "ec.out", "-c", "purpose=test"] + AES)
check(read("ec.out") == read("pt"), "context round trip")
expect(1, "context value mismatch: exit 1", ["decrypt", "-i", "ec.ct", "-o", "ec.bad", "-c", "purpose=prod"] + AES)
check(not os.path.exists(p("ec.bad")), "context mismatch: no output file")
expect(1, "context key missing: exit 1", ["decrypt", "-i", "ec.ct", "-o", "ec.bad2", "-c", "owner=me"] + AES)
check(not os.path.exists(p("ec.bad2")), "context key missing: no output file")
expect(2, "reserved context key", ["encrypt", "-i", "pt", "-o", "x", "-c", "aws-crypto-x=1"] + AES)

# ---- tampering and truncation ----
ct = read(ct_aes)
for what, bad in (("truncated", ct[: len(ct) // 2]), ("truncated by one byte", ct[:-1]),
                  ("flipped body bit", ct[:500] + bytes([ct[500] ^ 4]) + ct[501:]),
                  ("flipped header bit", ct[:20] + bytes([ct[20] ^ 1]) + ct[21:]),
                  ("trailing garbage", ct + b"x"), ("empty", b"")):
    write("bad.ct", bad)
    if os.path.exists(p("bad.out")):
        os.unlink(p("bad.out"))
    expect(1, f"{what}: exit 1", ["decrypt", "-i", "bad.ct", "-o", "bad.out"] + AES)
    check(not os.path.exists(p("bad.out")), f"{what}: no output file")
check(not [f for f in os.listdir(work) if ".coffer-" in f], "no temporary files left behind")

# ---- usage errors ----
usage_cases = [
    ("no arguments", ["encrypt"]),
    ("unknown flag", ["encrypt", "-i", "pt", "-o", "x", "--nope"] + AES),
    ("missing -w", ["encrypt", "-i", "pt", "-o", "x"]),
    ("missing input file", ["encrypt", "-i", "does-not-exist", "-o", "x"] + AES),
    ("missing key file", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=raw-aes", "key-file=nokey",
                          "name=a", "namespace=b"]),
    ("AES key of the wrong size", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=raw-aes",
                                   "key-file=bad.key", "name=a", "namespace=b"]),
    ("RSA key file that is not PEM", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=raw-rsa",
                                      f"key-file={aes}", "name=a", "namespace=b", "padding=pkcs1"]),
    ("raw key without a name", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=raw-aes", f"key-file={aes}",
                                "namespace=b"]),
    ("unknown provider", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=hsm"]),
    ("unknown padding", ["encrypt", "-i", "pt", "-o", "x"] + RSA_PRIV[:-1] + ["padding=oaep-md5"]),
    ("bad commitment policy", ["encrypt", "-i", "pt", "-o", "x", "--commitment-policy", "sometimes"] + AES),
    ("unknown algorithm", ["encrypt", "-i", "pt", "-o", "x", "--algorithm", "0x9999"] + AES),
    ("non-committing suite under the default policy", ["encrypt", "-i", "pt", "-o", "x", "--algorithm",
                                                       "0x0178"] + AES),
    ("committing suite under forbid", ["encrypt", "-i", "pt", "-o", "x", "--algorithm", "0x0478",
                                       "--commitment-policy", "forbid-encrypt-allow-decrypt"] + AES),
    ("zero frame length", ["encrypt", "-i", "pt", "-o", "x", "--frame-length", "0"] + AES),
    ("frame length not a number", ["encrypt", "-i", "pt", "-o", "x", "--frame-length", "4k"] + AES),
    ("--buffer on encrypt", ["encrypt", "-i", "pt", "-o", "x", "--buffer"] + AES),
    ("--algorithm on decrypt", ["decrypt", "-i", "pt", "-o", "x", "--algorithm", "0x0478"] + AES),
    ("caching without max_age", ["encrypt", "-i", "pt", "-o", "x", "--caching", "capacity=10"] + AES),
    ("metadata and data both on stdout", ["encrypt", "-i", "pt", "-o", "-", "--metadata-output", "-"] + AES),
    ("input and output the same file", ["encrypt", "-i", "pt", "-o", "pt"] + AES),
    ("aws-kms without credentials", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=aws-kms",
                                     "key=arn:aws:kms:us-east-1:111122223333:key/k",
                                     "profile=no-such-profile-anywhere"]),
]
for what, args in usage_cases:
    rc, _, err = expect(2, f"usage: {what}", args)
check(not os.path.exists(p("x")), "usage errors create no output")
# The real keyring is linked: a KMS that cannot be reached is an encrypt failure, not usage.
kms_env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIAAAAAAAAAAAAAAAAA", AWS_SECRET_ACCESS_KEY="x" * 40)
r = subprocess.run([COFFER, "encrypt", "-i", p("pt"), "-o", p("x"), "-w", "provider=aws-kms",
                    "key=arn:aws:kms:us-east-1:111122223333:key/k", "endpoint=https://127.0.0.1:9"],
                   capture_output=True, env=kms_env, timeout=60)
check(r.returncode == 1 and not os.path.exists(p("x")), "aws-kms: unreachable KMS fails with exit 1, no output",
      r.stderr)

# ---- commitment policies ----
F, RA, RR = "forbid-encrypt-allow-decrypt", "require-encrypt-allow-decrypt", "require-encrypt-require-decrypt"
for pol in (F, RA, RR):
    expect(0, f"encrypt under {pol}", ["encrypt", "-i", "pt", "-o", f"pol-{pol}.ct", "--commitment-policy", pol,
                                       "--metadata-output", f"pol-{pol}.meta"] + AES)
    sid = int(json.loads(read(f"pol-{pol}.meta"))["header"]["algorithm_id"], 16)
    check((sid in COMMITTING) == (pol != F), f"{pol}: suite 0x{sid:04X} commits iff the policy requires")
for pol in (F, RA, RR):
    for src in (F, RR):
        want = 1 if (pol == RR and src == F) else 0
        expect(want, f"decrypt a {src} message under {pol}",
               ["decrypt", "-i", f"pol-{src}.ct", "-o", f"pol-{src}-{pol}.out", "--commitment-policy", pol] + AES)
        check(os.path.exists(p(f"pol-{src}-{pol}.out")) == (want == 0), f"{src} under {pol}: output iff success")

# ---- every algorithm suite, by id and by name ----
for sid, name in SUITES.items():
    pol = RR if sid in COMMITTING else F
    dpol = RR if sid in COMMITTING else RA
    for label, alg in ((f"0x{sid:04X}", f"0x{sid:04x}"), (name, name)):
        ct, out, meta = f"s{sid:04x}.ct", f"s{sid:04x}.out", f"s{sid:04x}.meta"
        expect(0, f"--algorithm {label}", ["encrypt", "-i", "pt", "-o", ct, "--algorithm", alg,
                                          "--commitment-policy", pol, "--frame-length", "1000",
                                          "--metadata-output", meta] + AES)
        h = json.loads(read(meta))["header"]
        check(h["algorithm_id"] == f"0x{sid:04X}" and h["algorithm"] == name, f"{label}: header suite")
        check(h["frame_length"] == 1000, f"{label}: frame length 1000")
        expect(0, f"decrypt {label}", ["decrypt", "-i", ct, "-o", out, "--commitment-policy", dpol] + AES)
        check(read(out) == read("pt"), f"{label}: round trip")

# ---- metadata ----
expect(0, "metadata to a file", ["encrypt", "-i", "pt", "-o", "md.ct", "-c", "k=v", "--metadata-output", "md.json"]
       + AES + RSA_PUB)
lines = read("md.json").decode().splitlines()
check(len(lines) == 1, "metadata: one JSON line per message")
m = json.loads(lines[0])
h = m["header"]
check(m["mode"] == "encrypt" and m["input"] == "pt" and m["output"] == "md.ct", "metadata: mode, input, output")
check(h["version"] == 2 and h["algorithm_id"] == "0x0578", "metadata: default suite 0x0578, v2")
check(len(base64.b64decode(h["message_id"])) == 32, "metadata: 32-byte message id in base64")
check(h["encryption_context"].get("k") == "v" and "aws-crypto-public-key" in h["encryption_context"],
      "metadata: encryption context incl. the signing key")
check([e["key_provider"]["provider_id"] for e in h["encrypted_data_keys"]] == ["ns", "ns"],
      "metadata: EDK provider ids")
check(base64.b64decode(h["encrypted_data_keys"][1]["key_provider"]["key_info"]) == b"rsa",
      "metadata: EDK provider info (RSA key name)")
check(h["content_type"] == "framed" and h["frame_length"] == 4096, "metadata: framing")
check([(k["provider"], k["name"]) for k in m["wrapping_keys"]] == [("raw-aes", "k256"), ("raw-rsa", "rsa")],
      "metadata: keys used")
rc, out, _ = expect(0, "metadata to stdout", ["decrypt", "-i", "md.ct", "-o", "md.out", "--metadata-output", "-"]
                    + AES)
m = json.loads(out)
check(m["mode"] == "decrypt" and m["header"]["message_id"] == h["message_id"], "metadata: decrypt line")
expect(0, "--suppress-metadata", ["encrypt", "-i", "pt", "-o", "sm.ct", "-S"] + AES)
expect(0, "metadata across -r", ["encrypt", "-r", "-i", "tree", "-o", "tree.md", "--metadata-output", "tree.json"]
       + AES)
check(len(read("tree.json").splitlines()) == len(files), "metadata: one line per file under -r")

# ---- caching, frame length, verbose ----
expect(0, "--caching", ["encrypt", "-r", "-i", "tree", "-o", "tree.cache", "--caching", "capacity=10",
                        "max_age=60", "max_messages_encrypted=100", "max_bytes_encrypted=1000000"] + AES)
expect(0, "decrypt cached messages", ["decrypt", "-r", "-i", "tree.cache", "-o", "tree.cache.dec"] + AES)
check(open(p("tree.cache.dec", "a", "mid.bin.encrypted.decrypted"), "rb").read() == files["a/mid.bin"],
      "caching round trip")
roundtrip("non-framed-size-frames", AES, AES, extra_enc=["--frame-length", "65536"])
rc, _, err = expect(0, "-v says what it does", ["encrypt", "-v", "-i", "pt", "-o", "v.ct"] + AES)
check(b"pt -> v.ct" in err, "-v names input and output", err)
rc, _, err = expect(0, "no progress bar when stderr is not a terminal", ["encrypt", "-i", "pt", "-o", "q.ct"] + AES)
check(err == b"", "quiet stderr on success", err)

# ---- official legacy vectors (Python ESDK 1.3.0) through the CLI ----
aes_keys = {}
for bits, e in legacy["test_keys"]["AES"].items():
    aes_keys[int(bits)] = write(f"legacy-aes{bits}.key", base64.b64decode("".join(e["key"])))
done = set()
for t in legacy["test_cases"]:
    mks = t["master_keys"]
    if len(mks) != 1 or mks[0]["provider_id"] != "static-aws-xcompat":
        continue
    sid = int(t["algorithm"], 16)
    alg = mks[0]["encryption_algorithm"]
    kind = alg if alg == "AES" else f"RSA-{mks[0].get('padding_algorithm')}"
    if (sid, kind) in done:
        continue
    done.add((sid, kind))
    if alg == "AES":
        bits = 128 if sid in (0x14, 0x114, 0x214) else 192 if (sid & 0xff) == 0x46 else 256
        keys = ["-w", "provider=raw-aes", f"key-file={aes_keys[bits]}", f"name=AES.{bits}..",
                "namespace=static-aws-xcompat"]
    else:
        pkcs1 = mks[0]["padding_algorithm"] == "PKCS1"
        keys = ["-w", "provider=raw-rsa", f"key-file={rsa_priv}",
                "name=" + ("RSA.2048.PKCS1." if pkcs1 else "RSA.2048.OAEP-MGF1.SHA-1"),
                "namespace=static-aws-xcompat", "padding=" + ("pkcs1" if pkcs1 else "oaep-sha1")]
    out = f"legacy-{sid:04x}-{kind}.out"
    expect(0, f"legacy vector {t['algorithm']} {kind}",
           ["decrypt", "-i", os.path.join(LEGACY, t["ciphertext"]["filename"]), "-o", out,
            "--commitment-policy", RA] + keys)
    want = open(os.path.join(LEGACY, t["plaintext"]["filename"]), "rb").read()
    check(os.path.exists(p(out)) and read(out) == want, f"legacy vector {t['algorithm']} {kind}: plaintext")
    expect(1, f"legacy vector {t['algorithm']} {kind} refused under require-require",
           ["decrypt", "-i", os.path.join(LEGACY, t["ciphertext"]["filename"]), "-o", out + ".rr"] + keys)
check(len(done) >= 18, f"legacy vectors: {len(done)} suite/key combinations decrypted")


# ---- output destinations: only a regular file (or a new name) goes through temp file + rename ----
def reader_thread(path, sink):
    """Opens `path` for reading (a FIFO blocks until the writer comes) and keeps what arrives."""
    def run_reader():
        with open(path, "rb") as f:
            sink.append(f.read())
    t = threading.Thread(target=run_reader, daemon=True)
    t.start()
    return t


small = write("small.pt", os.urandom(3000))
os.mkfifo(p("out.fifo"))
got = []
t = reader_thread(p("out.fifo"), got)
expect(0, "encrypt -o FIFO: exit 0", ["encrypt", "-i", "small.pt", "-o", "out.fifo"] + AES)
t.join(10)
check(stat.S_ISFIFO(os.lstat(p("out.fifo")).st_mode), "encrypt -o FIFO: the FIFO is still a FIFO")
check(len(got) == 1 and len(got[0]) > 3000, "encrypt -o FIFO: the reader got the message")
if got:
    write("fifo.ct", got[0])
    expect(0, "encrypt -o FIFO: what the reader got decrypts", ["decrypt", "-i", "fifo.ct", "-o", "fifo.back"] + AES)
    check(os.path.exists(p("fifo.back")) and read("fifo.back") == read("small.pt"), "FIFO round trip")
    got = []
    t = reader_thread(p("out.fifo"), got)
    expect(0, "decrypt -o FIFO: exit 0", ["decrypt", "-i", "fifo.ct", "-o", "out.fifo"] + AES)
    t.join(10)
    check(got == [read("small.pt")], "decrypt -o FIFO: the reader got the plaintext")
    check(stat.S_ISFIFO(os.lstat(p("out.fifo")).st_mode), "decrypt -o FIFO: still a FIFO")
    got = []
    t = reader_thread(p("out.fifo"), got)
    good = read("fifo.ct")
    write("fifo.bad.ct", good[:-1] + bytes([good[-1] ^ 1]))
    expect(1, "decrypt --buffer -o FIFO of a tampered message: exit 1",
           ["decrypt", "-i", "fifo.bad.ct", "-o", "out.fifo", "--buffer"] + AES)
    t.join(10)
    check(got == [b""], "decrypt --buffer -o FIFO: nothing released from a tampered message")
if t.is_alive():  # never let a blocked reader outlive the test: give it a writer
    os.close(os.open(p("out.fifo"), os.O_WRONLY | os.O_NONBLOCK))

# A pty's slave is a character device this user owns: the device branch without touching /dev.
try:
    master, slave = os.openpty()
except OSError:
    master = None
    print("skip: no pty available for the character-device case")
if master is not None:
    tty.setraw(slave)  # no newline translation: the bytes must arrive as written
    dev = os.ttyname(slave)
    chunks = []

    def drain_master():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                return
            if not b:
                return
            chunks.append(b)
    dt = threading.Thread(target=drain_master, daemon=True)
    dt.start()
    expect(0, "encrypt -o <character device>: exit 0", ["encrypt", "-i", "small.pt", "-o", dev] + AES)
    check(stat.S_ISCHR(os.stat(dev).st_mode), "encrypt -o <character device>: still a character device")
    os.close(slave)
    dt.join(10)
    os.close(master)
    write("pty.ct", b"".join(chunks))
    expect(0, "character device: what came through decrypts", ["decrypt", "-i", "pty.ct", "-o", "pty.back"] + AES)
    check(os.path.exists(p("pty.back")) and read("pty.back") == read("small.pt"), "character device round trip")

# A symlink is followed: the file it names is replaced (in its own directory), the link stays.
os.makedirs(p("sym.dir"), exist_ok=True)
write("sym.dir/target.ct", b"old")
os.chmod(p("sym.dir/target.ct"), 0o640)
os.symlink("sym.dir/target.ct", p("sym.link"))
expect(0, "encrypt -o symlink: exit 0", ["encrypt", "-i", "small.pt", "-o", "sym.link"] + AES)
check(os.path.islink(p("sym.link")) and os.readlink(p("sym.link")) == "sym.dir/target.ct",
      "encrypt -o symlink: the link is kept")
check(stat.S_IMODE(os.stat(p("sym.dir/target.ct")).st_mode) == 0o640, "encrypt -o symlink: the target keeps 0640")
expect(0, "encrypt -o symlink: the target holds the message",
       ["decrypt", "-i", "sym.dir/target.ct", "-o", "sym.back"] + AES)
check(os.path.exists(p("sym.back")) and read("sym.back") == read("small.pt"), "symlink round trip")
check(not [n for n in os.listdir(p("sym.dir")) if "coffer-" in n] and not [n for n in os.listdir(work)
      if n.startswith(".sym.")], "encrypt -o symlink: no temporary file left behind")
os.symlink("sym.dir/new.ct", p("sym.dangling"))
expect(0, "encrypt -o dangling symlink: exit 0", ["encrypt", "-i", "small.pt", "-o", "sym.dangling"] + AES)
check(os.path.islink(p("sym.dangling")) and os.path.isfile(p("sym.dir/new.ct")),
      "encrypt -o dangling symlink: creates the file it names, keeps the link")
write("sym.dir/plain.out", b"old")
os.symlink("sym.dir/plain.out", p("sym.dec"))
expect(0, "decrypt -o symlink: exit 0", ["decrypt", "-i", "sym.dir/target.ct", "-o", "sym.dec"] + AES)
check(os.path.islink(p("sym.dec")) and read("sym.dir/plain.out") == read("small.pt"),
      "decrypt -o symlink: the link is kept, the file it names holds the plaintext")
expect(2, "decrypt -o symlink naming the input: usage error",
       ["decrypt", "-i", "sym.dir/new.ct", "-o", "sym.dangling"] + AES)
expect(0, "symlink naming the input was left alone", ["decrypt", "-i", "sym.dir/new.ct", "-o", "sym.new.back"] + AES)

# An existing regular file keeps its mode (the temporary file is 0600 until the rename).
write("mode.ct", b"old")
os.chmod(p("mode.ct"), 0o640)
expect(0, "encrypt over a 0640 file: exit 0", ["encrypt", "-i", "small.pt", "-o", "mode.ct"] + AES)
check(stat.S_IMODE(os.stat(p("mode.ct")).st_mode) == 0o640, "encrypt over a 0640 file: mode kept")
write("mode.out", b"old")
os.chmod(p("mode.out"), 0o604)
expect(0, "decrypt over a 0604 file: exit 0", ["decrypt", "-i", "mode.ct", "-o", "mode.out"] + AES)
check(stat.S_IMODE(os.stat(p("mode.out")).st_mode) == 0o604 and read("mode.out") == read("small.pt"),
      "decrypt over a 0604 file: mode kept, plaintext in place")
good = read("mode.ct")
write("mode.bad.ct", good[:-1] + bytes([good[-1] ^ 1]))
expect(1, "decrypt of a tampered message over an existing file: exit 1",
       ["decrypt", "-i", "mode.bad.ct", "-o", "mode.out"] + AES)
check(read("mode.out") == read("small.pt"), "a failed decrypt leaves the existing file untouched")
expect(0, "encrypt to a new file: exit 0", ["encrypt", "-i", "small.pt", "-o", "new.ct"] + AES)
check(stat.S_IMODE(os.stat(p("new.ct")).st_mode) == 0o600, "a new output file is 0600")

# -o - and -i -
rc, ct_out, _ = expect(0, "encrypt -i - -o -: exit 0", ["encrypt", "-i", "-", "-o", "-"] + AES, stdin=read("small.pt"))
rc, back, _ = expect(0, "decrypt -i - -o -: exit 0", ["decrypt", "-i", "-", "-o", "-"] + AES, stdin=ct_out)
check(back == read("small.pt"), "-o - round trip")
check(not os.path.exists(p("-")), "-o - never creates a file named '-'")

# The same file as input and output, by any name, is refused before anything is written.
write("same.pt", b"keep me")
os.symlink("same.pt", p("same.link"))
expect(2, "-o symlink to the input: usage error", ["encrypt", "-i", "same.pt", "-o", "same.link"] + AES)
expect(2, "--metadata-output naming the input: usage error",
       ["encrypt", "-i", "same.pt", "-o", "same.ct", "--metadata-output", "same.pt"] + AES)
expect(2, "--metadata-output naming the output: usage error",
       ["encrypt", "-i", "small.pt", "-o", "same.link", "--metadata-output", "same.pt"] + AES)
check(read("same.pt") == b"keep me", "the input survives every refused same-file request")
check(os.path.islink(p("same.link")), "the symlink to the input survives")
got = []
t = reader_thread(p("out.fifo"), got)
expect(0, "--metadata-output to a FIFO", ["encrypt", "-i", "small.pt", "-o", "meta.ct",
                                          "--metadata-output", "out.fifo"] + AES)
t.join(10)
check(stat.S_ISFIFO(os.lstat(p("out.fifo")).st_mode) and len(got) == 1 and b"header" in got[0],
      "--metadata-output to a FIFO: written through, still a FIFO")
if t.is_alive():
    os.close(os.open(p("out.fifo"), os.O_WRONLY | os.O_NONBLOCK))

# ---- aws-kms option parsing (stub keyring build) ----
env = dict(os.environ, COFFER_KMS_STUB_TRACE="1")
KMS = ["-w", "provider=aws-kms", "key=arn:aws:kms:us-east-1:111122223333:key/a",
       "key=arn:aws:kms:us-east-1:111122223333:key/b", "region=us-east-1", "endpoint=https://127.0.0.1:8443",
       "profile=coffer"]
rc, _, err = expect(0, "aws-kms encrypt (stub keyring)", ["encrypt", "-i", "pt", "-o", "kms.ct"] + KMS,
                    binary=KMS_STUB, env=env)
tr = json.loads(err.decode().splitlines()[0]) if rc == 0 else {}
check(tr.get("key_ids") == ["arn:aws:kms:us-east-1:111122223333:key/a", "arn:aws:kms:us-east-1:111122223333:key/b"]
      and tr.get("region") == "us-east-1" and tr.get("endpoint") == "https://127.0.0.1:8443"
      and tr.get("profile") == "coffer" and tr.get("discovery") is False, "aws-kms: options passed through", err)
DISC = ["-w", "provider=aws-kms", "discovery=true", "discovery-partition=aws", "discovery-account=111122223333",
        "discovery-account=444455556666", "region=us-east-1"]
rc, _, err = expect(0, "aws-kms discovery decrypt (stub keyring)", ["decrypt", "-i", "kms.ct", "-o", "kms.out"]
                    + DISC, binary=KMS_STUB, env=env)
tr = json.loads(err.decode().splitlines()[0]) if rc == 0 else {}
check(tr.get("discovery") is True and tr.get("partition") == "aws"
      and tr.get("discovery_accounts") == ["111122223333", "444455556666"], "aws-kms: discovery options", err)
check(rc == 0 and read("kms.out") == read("pt"), "aws-kms: stub round trip")
expect(2, "aws-kms discovery on encrypt", ["encrypt", "-i", "pt", "-o", "x"] + DISC, binary=KMS_STUB)
expect(2, "aws-kms without key= or discovery", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=aws-kms",
                                                "region=us-east-1"], binary=KMS_STUB)
expect(2, "aws-kms discovery-account without discovery",
       ["decrypt", "-i", "kms.ct", "-o", "x", "-w", "provider=aws-kms", "key=arn", "discovery-account=1"],
       binary=KMS_STUB)
expect(2, "aws-kms unknown attribute", ["encrypt", "-i", "pt", "-o", "x", "-w", "provider=aws-kms", "key=a",
                                        "colour=blue"], binary=KMS_STUB)

# ---- a pipe that pauses: what is verified goes out without waiting for more input ----
def stream_pause():
    pt_stream = os.urandom(4096 * 3 + 100)
    rc, ct, err = run(["encrypt", "-i", "-", "-o", "-", "--frame-length", "4096", "--algorithm", "0x0478"] + AES,
                      stdin=pt_stream)
    check(rc == 0, "pausing pipe: encrypt", err)
    if rc != 0:
        return
    proc = subprocess.Popen([COFFER, "decrypt", "-i", "-", "-o", "-"] + AES, cwd=work, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = bytearray()
    try:
        proc.stdin.write(ct[:-140])  # all but the final frame (4+4+12+4 + 100 + 16 bytes)
        proc.stdin.flush()
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + 20
        while len(got) < 4096 * 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                got += chunk
        check(bytes(got) == pt_stream[:4096 * 3], "pausing pipe: verified frames come out before the input ends",
              f"{len(got)} bytes")
        rest, err = proc.communicate(input=ct[-140:], timeout=60)
        check(proc.returncode == 0 and bytes(got) + rest == pt_stream, "pausing pipe: then the rest", err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


stream_pause()

shutil.rmtree(work)
print(f"\n{len(failures)} failure(s)")
for f in failures:
    print("  -", f)
sys.exit(1 if failures else 0)
