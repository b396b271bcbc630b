#!/usr/bin/env bash
# Cost of authorization on the Encrypt hot path, measured in one run: cofferd with
# --authorization off, then on with AWS's default key policy, then on with a 20-statement key
# policy with conditions whose only matching statement is the last. Same data dir, same key
# material, same load generator (build/coffer-loadgen), 64-byte plaintexts with a two-pair
# encryption context. Prints Encrypt req/s and the ratio to "off" (issue target: >= 0.9).
#
#   bash bench/authz.sh [DURATION_S] [CONNECTIONS] [ROUNDS]     (defaults 10, 16, 1)
#
# With ROUNDS > 1 the three runs are repeated in turn and the median of each is reported, which
# evens out a shared machine's noise.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
rounds=${3:-1}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }

work=$(mktemp -d)
cpid=
stop_cofferd() {
    if [ -n "$cpid" ]; then
        kill "$cpid" 2>/dev/null || true
        wait "$cpid" 2>/dev/null || true
        cpid=
    fi
}
cleanup() {
    stop_cofferd
    rm -rf "$work"
}
trap cleanup EXIT

start_cofferd() { # authorization on|off
    : > "$work/cofferd.out"
    "$build/cofferd" --data-dir "$work/data" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn \
        --authorization "$1" > "$work/cofferd.out" 2>> "$work/cofferd.err" &
    cpid=$!
    for _ in $(seq 100); do grep -q '^listening' "$work/cofferd.out" 2>/dev/null && break; sleep 0.1; done
    port=$(awk '/^listening/ {print $2}' "$work/cofferd.out")
    endpoint=https://127.0.0.1:$port
}

export AWS_CA_BUNDLE=$work/data/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$work/data/credentials
export AWS_CONFIG_FILE=$work/data/config AWS_PROFILE=coffer AWS_PAGER=""
aws_() { /usr/bin/aws --endpoint-url "$endpoint" "$@"; }

# 19 statements that never match this caller or request (each for a different reason, all with
# conditions the evaluator must look at), then the one that allows.
/usr/bin/python3 - > "$work/policy20.json" <<'PY'
import json
root = "arn:aws:iam::000000000000:root"
sts = []
for i in range(19):
    kind = i % 4
    st = {"Sid": "S%d" % i, "Effect": "Allow", "Principal": {"AWS": root},
          "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}
    if kind == 0:
        st["Condition"] = {"StringEquals": {"kms:EncryptionContext:Department": "dept-%d" % i}}
    elif kind == 1:
        st["Condition"] = {"IpAddress": {"aws:SourceIp": "10.%d.0.0/16" % i}}
    elif kind == 2:
        st["Condition"] = {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:user/team-%d-*" % i}}
    else:
        st["Condition"] = {"DateLessThan": {"aws:CurrentTime": "2001-01-%02dT00:00:00Z" % (i + 1)},
                           "Bool": {"aws:SecureTransport": "true"}}
    sts.append(st)
sts.append({"Sid": "Allow the account", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*",
            "Resource": "*", "Condition": {"StringEquals": {"kms:CallerAccount": "000000000000"},
                                           "StringEqualsIfExists": {"kms:EncryptionContext:Department": "IT"},
                                           "Bool": {"aws:SecureTransport": "true"}}})
print(json.dumps({"Version": "2012-10-17", "Id": "bench-20", "Statement": sts}))
PY

start_cofferd on
key_default=$(aws_ kms create-key --query KeyMetadata.KeyId --output text)
key_20=$(aws_ kms create-key --policy "file://$work/policy20.json" --query KeyMetadata.KeyId --output text)
pt64=$(head -c 64 /dev/urandom | base64 -w0)
ec='"EncryptionContext":{"Department":"IT","Purpose":"bench"}'
aws_ kms encrypt --key-id "$key_20" --plaintext "$pt64" --encryption-context Department=IT,Purpose=bench \
    --query KeyId --output text > /dev/null # the policy admits the benchmark request
stop_cofferd

run() { # name key
    "$loadgen" --endpoint "$endpoint" --ca "$AWS_CA_BUNDLE" --credentials "$AWS_SHARED_CREDENTIALS_FILE" \
        --profile coffer --region us-east-1 --connections "$conns" --duration "$duration" --warmup 1 \
        --target Encrypt --body "{\"KeyId\":\"$2\",\"Plaintext\":\"$pt64\",$ec}" --json \
        | tail -1 | sed "s/^/{\"name\":\"$1\",\"result\":/; s/\$/}/"
}

results=$work/results.jsonl
# The two policies share a server; their order alternates from round to round so that neither
# always runs on the warmer (or the more loaded) half.
for round in $(seq "$rounds"); do
    start_cofferd off
    run off "$key_default" >> "$results"
    stop_cofferd
    start_cofferd on
    if [ $((round % 2)) -eq 1 ]; then
        run default-policy "$key_default" >> "$results"
        run 20-statements "$key_20" >> "$results"
    else
        run 20-statements "$key_20" >> "$results"
        run default-policy "$key_default" >> "$results"
    fi
    stop_cofferd
done

/usr/bin/python3 - "$results" "$conns" "$duration" "$rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["name"], []).append(r["result"])
print("authorization cost on Encrypt: %s connections, %s s per run, %s round(s), medians" % tuple(sys.argv[2:5]))
print("%-16s %12s %9s %9s %8s %9s" % ("run", "req/s", "p50 ms", "p99 ms", "errors", "vs off"))
off = statistics.median(x["rps"] for x in by["off"])
for name in ("off", "default-policy", "20-statements"):
    xs = by[name]
    rps = statistics.median(x["rps"] for x in xs)
    print("%-16s %12.0f %9.2f %9.2f %8d %8.2fx" % (name, rps, statistics.median(x["p50_ms"] for x in xs),
          statistics.median(x["p99_ms"] for x in xs), sum(x["errors"] for x in xs), rps / off if off else 0))
PY
