#!/usr/bin/env bash
# Encrypt throughput with a key in a custom key store (AWS_CLOUDHSM type: an AES key inside a
# PKCS#11 token, SoftHSM2 in a temporary directory, and the AES-GCM of every request done by the
# token) against a normal key (material in cofferd's memory), one cofferd, same load generator,
# one run each, back to back.
#
#   bash bench/custom_key_store.sh [DURATION_S] [CONNECTIONS] [SESSIONS]   (defaults 10, 16, 4)
#
# SESSIONS is the store's PKCS#11 session pool (--hsm-cluster ...,sessions=N): how many token
# operations run at once.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
sessions=${3:-4}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
module=/usr/lib/softhsm/libsofthsm2.so
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }
[ -r "$module" ] && command -v softhsm2-util >/dev/null || { echo "needs softhsm2 (apt-get install softhsm2)" >&2; exit 2; }

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

pin=kmsuser-bench-pin
cluster=cluster-benchbench01
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label coffer-cks-bench --pin "$pin" --so-pin 5678 >/dev/null
echo "$pin" > "$work/pin"

dir=$work/data
"$build/cofferd" --data-dir "$dir" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn \
    --hsm-cluster "$cluster=module=$module,token=coffer-cks-bench,pin-file=$work/pin,sessions=$sessions" \
    > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do grep -q '^listening' "$work/out" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening' "$work/out" || { cat "$work/err" >&2; exit 1; }
port=$(awk '/^listening/ {print $2}' "$work/out")
kms() {
    AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
        AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "https://127.0.0.1:$port" kms "$@"
}
store=$(kms create-custom-key-store --custom-key-store-name bench --cloud-hsm-cluster-id "$cluster" \
    --trust-anchor-certificate "bench anchor" --key-store-password "$pin" --query CustomKeyStoreId --output text)
kms connect-custom-key-store --custom-key-store-id "$store" >/dev/null
state=$(kms describe-custom-key-stores --custom-key-store-id "$store" --query 'CustomKeyStores[0].ConnectionState' --output text)
[ "$state" = CONNECTED ] || { echo "the store did not connect ($state)" >&2; cat "$work/err" >&2; exit 1; }
key_normal=$(kms create-key --query KeyMetadata.KeyId --output text)
key_hsm=$(kms create-key --origin AWS_CLOUDHSM --custom-key-store-id "$store" --query KeyMetadata.KeyId --output text)

pt64=$(head -c 64 /dev/urandom | base64 -w0)
results=$work/results.jsonl
for name in normal hsm; do
    key=key_$name
    "$loadgen" --endpoint "https://127.0.0.1:$port" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" \
        --profile coffer --region us-east-1 --connections "$conns" --duration "$duration" --warmup 2 \
        --target Encrypt --body "{\"KeyId\":\"${!key}\",\"Plaintext\":\"$pt64\"}" --json \
        | tail -1 | sed "s/^/{\"name\":\"$name\",\"result\":/; s/\$/}/" >> "$results"
done

/usr/bin/python3 - "$results" "$conns" "$duration" "$sessions" <<'PY'
import json, sys
rows = {json.loads(l)["name"]: json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip()}
print("Encrypt (64 B), %s connections, %s s per run, %s PKCS#11 sessions: a normal key vs a key in a "
      "custom key store (SoftHSM2)" % (sys.argv[2], sys.argv[3], sys.argv[4]))
print("%-20s %10s %8s %8s %7s" % ("key", "req/s", "p50 ms", "p99 ms", "errors"))
for name, label in (("normal", "normal (memory)"), ("hsm", "custom key store")):
    x = rows[name]
    print("%-20s %10.0f %8.2f %8.2f %7d" % (label, x["rps"], x["p50_ms"], x["p99_ms"], x["errors"]))
n, h = rows["normal"]["rps"], rows["hsm"]["rps"]
print("custom key store / normal: %.2fx (every request's AES-GCM runs in the token)" % (h / n if n else 0))
PY
