#!/usr/bin/env bash
# Parameter Store benchmark: 100,000 parameters under a 4-level hierarchy, all written through
# the API (PutParameter over keep-alive HTTPS, SigV4-signed, from build/coffer-loadgen with
# numbered bodies), then GetParameter req/s (String, spread over the 99,000 bulk names and one
# name; SecureString with decryption) and the latency of a GetParametersByPath page of 10
# results deep in the tree, with the store holding 1,000 and then 100,000 parameters (the same
# page, same run; the ratio is printed). Audit on, quotas off. KMS Encrypt (64 B) runs in the
# same run as the reference of what the machine gives now, and every run reports cofferd's CPU
# time per request (user + system, from /proc), which a shared machine's load does not move much.
#
#   bash bench/ssm.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 16)
#
# Names: the first 1,000 are /a<d0>/b0/c<d1>/p<d2>; the next 99,000 /a<d0>/b<d1>/c<d2>/x<d3><d4>
# (numbers 1000..99999), so the page read, /a3/b0/c5 (p0..p9 first), gains 100 siblings and the
# tree 99,000 neighbours between the two measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
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

dir=$work/data
"$build/cofferd" --data-dir "$dir" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn \
    > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do grep -q '^listening' "$work/out" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/^listening/ {print $2}' "$work/out")
ep=https://127.0.0.1:$port
aws_() {
    AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
        AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "$ep" "$@"
}

results=$work/results.jsonl
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
lg() { # name target [loadgen options...]
    local name=$1 target=$2 t0 line
    shift 2
    t0=$(cpu_ticks)
    line=$("$loadgen" --endpoint "$ep" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" --profile coffer \
        --region us-east-1 --target "$target" --json "$@" | tail -1)
    echo "{\"name\":\"$name\",\"cpu_ticks\":$(($(cpu_ticks) - t0)),\"hz\":$(getconf CLK_TCK),\"result\":$line}" \
        >> "$results"
}
page='{"Path":"/a3/b0/c5","MaxResults":10}'

lg "PutParameter x1,000" AmazonSSM.PutParameter --connections "$conns" --sequence 1000 \
    --body '{"Name":"/a{d0}/b0/c{d1}/p{d2}","Value":"value-{n}","Type":"String"}'
n=$(aws_ ssm get-parameters-by-path --path /a3/b0/c5 --max-results 10 --query 'length(Parameters)' --output text \
    --no-paginate)
[ "$n" = 10 ] || { echo "the page holds $n parameters, not 10" >&2; exit 1; }
lg "ByPath page @1,000" AmazonSSM.GetParametersByPath --connections 1 --duration "$duration" --body "$page"

lg "PutParameter x99,000" AmazonSSM.PutParameter --connections "$conns" --sequence 99000 --sequence-start 1000 \
    --body '{"Name":"/a{d0}/b{d1}/c{d2}/x{d3}{d4}","Value":"value-{n}","Type":"String"}'
lg "ByPath page @100,000" AmazonSSM.GetParametersByPath --connections 1 --duration "$duration" --body "$page"

aws_ ssm put-parameter --name /a3/b0/c5/secret --value "s3cr3t-value-for-the-bench" --type SecureString >/dev/null
lg "GetParameter String" AmazonSSM.GetParameter --connections "$conns" --duration "$duration" \
    --body '{"Name":"/a3/b0/c5/p7"}'
lg "GetParameter String 99k" AmazonSSM.GetParameter --connections "$conns" --duration "$duration" \
    --cycle 99000 --sequence-start 1000 --body '{"Name":"/a{d0}/b{d1}/c{d2}/x{d3}{d4}"}'
lg "GetParameter Secure" AmazonSSM.GetParameter --connections "$conns" --duration "$duration" \
    --body '{"Name":"/a3/b0/c5/secret","WithDecryption":true}'
key=$(aws_ kms create-key --query KeyMetadata.KeyId --output text)
pt64=$(head -c 64 /dev/urandom | base64 -w0)
lg "KMS Encrypt (reference)" Encrypt --connections "$conns" --duration "$duration" \
    --body "{\"KeyId\":\"$key\",\"Plaintext\":\"$pt64\"}"

/usr/bin/python3 - "$results" "$conns" "$duration" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("Parameter Store benchmark: %s connections, %s s per read run, audit on, quotas off" % (sys.argv[2], sys.argv[3]))
print("load average at the end: %s" % open("/proc/loadavg").read().split()[0])
print("%-26s %10s %9s %8s %8s %8s %7s %12s" % ("run", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
                                               "cpu us/req"))
by = {}
for r in rows:
    x = r["result"]
    by[r["name"]] = x
    cpu = r["cpu_ticks"] * 1e6 / r["hz"] / x["requests"] if x["requests"] else 0
    print("%-26s %10d %9.0f %8.2f %8.2f %8.2f %7d %12.0f" % (r["name"], x["requests"], x["rps"], x["p50_ms"],
                                                             x["p99_ms"], x["max_ms"], x["errors"], cpu))
a, b = by.get("ByPath page @1,000"), by.get("ByPath page @100,000")
if a and b and a["p50_ms"] and a["p99_ms"]:
    print("GetParametersByPath (10-result page, /a3/b0/c5): p50 %.2f -> %.2f ms (x%.2f), p99 %.2f -> %.2f ms (x%.2f) "
          "from 1,000 to 100,000 parameters" % (a["p50_ms"], b["p50_ms"], b["p50_ms"] / a["p50_ms"], a["p99_ms"],
                                               b["p99_ms"], b["p99_ms"] / a["p99_ms"]))
PY
