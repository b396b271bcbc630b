#!/usr/bin/env bash
# Encrypt throughput with the root key in a PKCS#11 token (SoftHSM2, a token made in a temporary
# directory) against the root key in a file, same build, same load generator, one run each,
# back to back. The root key only unwraps the barrier keyring at start (and on a keyring
# rotation): requests never reach the token, so the two should be equal within noise.
#
#   bash bench/seal.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 16)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
module=/usr/lib/softhsm/libsofthsm2.so
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }
[ -r "$module" ] && command -v softhsm2-util >/dev/null || { echo "needs softhsm2 (apt-get install softhsm2)" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label coffer-bench --pin 1234 --so-pin 5678 >/dev/null
echo 1234 > "$work/pin"
pkcs11="pkcs11:module=$module,token=coffer-bench,pin-file=$work/pin,key=root,create=yes"

pt64=$(head -c 64 /dev/urandom | base64 -w0)
# start NAME SEAL: a cofferd with its own data dir, quotas off, and one key; sets PORT_, KEY_, DATA_.
start() {
    local name=$1 seal=$2 dir=$work/data-$1
    "$build/cofferd" --data-dir "$dir" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn --seal "$seal" \
        > "$work/$name.out" 2> "$work/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q '^listening' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
    grep -q '^listening' "$work/$name.out" || { cat "$work/$name.err" >&2; exit 1; }
    local port k
    port=$(awk '/^listening/ {print $2}' "$work/$name.out")
    k=$(AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
        AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "https://127.0.0.1:$port" kms create-key \
        --query KeyMetadata.KeyId --output text)
    printf -v "PORT_$name" %s "$port"; printf -v "KEY_$name" %s "$k"; printf -v "DATA_$name" %s "$dir"
}
start file file
start pkcs11 "$pkcs11"

results=$work/results.jsonl
for name in file pkcs11; do
    port=PORT_$name; key=KEY_$name; dir=DATA_$name
    "$loadgen" --endpoint "https://127.0.0.1:${!port}" --ca "${!dir}/tls/ca.pem" --credentials "${!dir}/credentials" \
        --profile coffer --region us-east-1 --connections "$conns" --duration "$duration" --warmup 2 \
        --target Encrypt --body "{\"KeyId\":\"${!key}\",\"Plaintext\":\"$pt64\"}" --json \
        | tail -1 | sed "s/^/{\"name\":\"$name\",\"result\":/; s/\$/}/" >> "$results"
done

/usr/bin/python3 - "$results" "$conns" "$duration" <<'PY'
import json, sys
rows = {json.loads(l)["name"]: json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip()}
print("Encrypt (64 B), %s connections, %s s per run: root key in a file vs in a PKCS#11 token (SoftHSM2)"
      % (sys.argv[2], sys.argv[3]))
print("%-16s %10s %8s %8s %7s" % ("root key", "req/s", "p50 ms", "p99 ms", "errors"))
for name in ("file", "pkcs11"):
    x = rows[name]
    print("%-16s %10.0f %8.2f %8.2f %7d" % (name, x["rps"], x["p50_ms"], x["p99_ms"], x["errors"]))
f, p = rows["file"]["rps"], rows["pkcs11"]["rps"]
print("pkcs11 / file: %.2fx (the token unwraps the barrier keyring once at start; requests never reach it)"
      % (p / f if f else 0))
PY
