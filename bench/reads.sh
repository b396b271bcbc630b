#!/usr/bin/env bash
# The services' hot reads: GetSecretValue of a 1 KB secret (default key), GetParameter of a
# String and of a SecureString with decryption, req/s with build/coffer-loadgen (audit on, quotas
# off), and KMS Encrypt (64 B) in the same run as the reference of what the machine gives at
# that moment. With BASELINE_COFFERD=<an older cofferd> both binaries are
# measured in turns (baseline, new, baseline, new, ...) and the medians compared, so the machine's
# load moves both alike. Every run also reports cofferd's CPU time per request (user + system,
# from /proc), which a shared machine's load does not move much.
#
#   bash bench/reads.sh [DURATION_S] [CONNECTIONS] [ROUNDS]     (defaults 10, 16, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
rounds=${3:-3}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
results=$work/results.jsonl

run() { # label binary
    local label=$1 bin=$2 dir=$work/data-$1
    "$bin" --data-dir "$dir" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn > "$work/out" 2> "$work/err" &
    pid=$!
    for _ in $(seq 100); do grep -q '^listening' "$work/out" 2>/dev/null && break; sleep 0.1; done
    local ep=https://127.0.0.1:$(awk '/^listening/ {print $2}' "$work/out")
    aws_() {
        AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
            AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "$ep" "$@"
    }
    aws_ secretsmanager describe-secret --secret-id bench/app/db >/dev/null 2>&1 ||
        aws_ secretsmanager create-secret --name bench/app/db --secret-string "$(head -c 768 /dev/urandom | base64 -w0)" \
            >/dev/null
    aws_ ssm put-parameter --name /bench/app/db-url --type String --overwrite \
        --value "postgres://db.internal:5432/app" >/dev/null
    aws_ ssm put-parameter --name /bench/app/db-password --type SecureString --overwrite \
        --value "$(head -c 48 /dev/urandom | base64 -w0)" >/dev/null
    local key pt64
    key=$(aws_ kms list-aliases --query "Aliases[?AliasName=='alias/bench'].TargetKeyId" --output text)
    if [ -z "$key" ] || [ "$key" = None ]; then
        key=$(aws_ kms create-key --query KeyMetadata.KeyId --output text)
        aws_ kms create-alias --alias-name alias/bench --target-key-id "$key"
    fi
    pt64=$(head -c 64 /dev/urandom | base64 -w0)
    lg() { # name target body
        local t0 line
        t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        line=$("$loadgen" --endpoint "$ep" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" --profile coffer \
            --region us-east-1 --target "$2" --connections "$conns" --duration "$duration" --json --body "$3" | tail -1)
        echo "{\"bin\":\"$label\",\"name\":\"$1\",\"cpu_ticks\":$(($(awk '{print $14 + $15}' "/proc/$pid/stat") - t0)),\"hz\":$(getconf CLK_TCK),\"result\":$line}" \
            >> "$results"
    }
    lg "GetSecretValue 1 KB" secretsmanager.GetSecretValue '{"SecretId":"bench/app/db"}'
    lg "GetParameter String" AmazonSSM.GetParameter '{"Name":"/bench/app/db-url"}'
    lg "GetParameter SecureString" AmazonSSM.GetParameter '{"Name":"/bench/app/db-password","WithDecryption":true}'
    lg "KMS Encrypt (reference)" Encrypt "{\"KeyId\":\"$key\",\"Plaintext\":\"$pt64\"}"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
}

for _ in $(seq "$rounds"); do
    [ -n "${BASELINE_COFFERD:-}" ] && run base "$BASELINE_COFFERD"
    run new "$build/cofferd"
done

/usr/bin/python3 - "$results" "$conns" "$duration" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("Hot reads: %s connections, %s s per run, audit on, quotas off; medians over rounds"
      % (sys.argv[2], sys.argv[3]))
print("load average at the end: %s" % open("/proc/loadavg").read().split()[0])
print("%-6s %-26s %9s %8s %8s %7s %12s" % ("bin", "run", "req/s", "p50 ms", "p99 ms", "errors", "cpu us/req"))
NAMES = ("GetSecretValue 1 KB", "GetParameter String", "GetParameter SecureString", "KMS Encrypt (reference)")
med = {}
for b in ("base", "new"):
    for name in NAMES:
        rs = [r for r in rows if r["bin"] == b and r["name"] == name]
        if not rs:
            continue
        x = [r["result"] for r in rs]
        cpu = statistics.median(r["cpu_ticks"] * 1e6 / r["hz"] / r["result"]["requests"] for r in rs
                                if r["result"]["requests"])
        m = {"rps": statistics.median(v["rps"] for v in x), "cpu": cpu}
        med[(b, name)] = m
        print("%-6s %-26s %9.0f %8.2f %8.2f %7d %12.0f" % (b, name, m["rps"], statistics.median(v["p50_ms"] for v in x),
                                                          statistics.median(v["p99_ms"] for v in x),
                                                          sum(v["errors"] for v in x), cpu))
e = med.get(("new", "KMS Encrypt (reference)"))
for name in NAMES[:-1]:
    g, b = med.get(("new", name)), med.get(("base", name))
    if g and e:
        print("%s / Encrypt: req/s x%.2f, cpu per request x%.2f" % (name, g["rps"] / e["rps"], g["cpu"] / e["cpu"]))
    if g and b:
        print("%s new / base: req/s x%.2f, cpu per request x%.2f" % (name, g["rps"] / b["rps"], g["cpu"] / b["cpu"]))
PY
