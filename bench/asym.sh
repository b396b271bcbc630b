#!/usr/bin/env bash
# Asymmetric KMS keys: Sign and Verify requests/s with an RSA_2048 key (RSASSA_PSS_SHA_256) and an
# ECC_NIST_P256 key (ECDSA_SHA_256), 64-byte RAW messages, over keep-alive HTTPS with SigV4, audit
# on, quotas off; symmetric Encrypt of the same message measured in the same run as the reference.
# Prints requests/s, latency and each run's ratio to Encrypt, and the ECC/RSA ratio per operation.
#
#   bash bench/asym.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 16)
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
ep=https://127.0.0.1:$(awk '/^listening/ {print $2}' "$work/out")
export AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
    AWS_PROFILE=coffer AWS_PAGER=""
kms() { /usr/bin/aws --endpoint-url "$ep" kms "$@"; }
msg=$(head -c 64 /dev/urandom | base64 -w0)
sym=$(kms create-key --query KeyMetadata.KeyId --output text)
rsa=$(kms create-key --key-spec RSA_2048 --key-usage SIGN_VERIFY --query KeyMetadata.KeyId --output text)
ecc=$(kms create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --query KeyMetadata.KeyId --output text)
sign() { kms sign --key-id "$1" --message "$msg" --signing-algorithm "$2" --query Signature --output text; }
rsa_sig=$(sign "$rsa" RSASSA_PSS_SHA_256)
ecc_sig=$(sign "$ecc" ECDSA_SHA_256)

results=$work/results.jsonl
run() { # name target body
    "$loadgen" --endpoint "$ep" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" --profile coffer \
        --region us-east-1 --connections "$conns" --duration "$duration" --warmup 2 --target "$2" --body "$3" --json \
        | tail -1 | sed "s/^/{\"name\":\"$1\",\"result\":/; s/\$/}/" >> "$results"
}
run "Encrypt-64B (symmetric)" Encrypt "{\"KeyId\":\"$sym\",\"Plaintext\":\"$msg\"}"
run "Sign RSA_2048 PSS" Sign "{\"KeyId\":\"$rsa\",\"Message\":\"$msg\",\"SigningAlgorithm\":\"RSASSA_PSS_SHA_256\"}"
run "Sign ECC_NIST_P256" Sign "{\"KeyId\":\"$ecc\",\"Message\":\"$msg\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}"
run "Verify RSA_2048 PSS" Verify "{\"KeyId\":\"$rsa\",\"Message\":\"$msg\",\"Signature\":\"$rsa_sig\",\"SigningAlgorithm\":\"RSASSA_PSS_SHA_256\"}"
run "Verify ECC_NIST_P256" Verify "{\"KeyId\":\"$ecc\",\"Message\":\"$msg\",\"Signature\":\"$ecc_sig\",\"SigningAlgorithm\":\"ECDSA_SHA_256\"}"

/usr/bin/python3 - "$results" "$conns" "$duration" <<'PY'
import json, sys
rows = {json.loads(l)["name"]: json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip()}
ref = rows["Encrypt-64B (symmetric)"]["rps"]
print("cofferd asymmetric keys: %s connections, %s s per run, audit on, quotas off" % (sys.argv[2], sys.argv[3]))
print("%-24s %10s %8s %8s %7s %11s" % ("run", "req/s", "p50 ms", "p99 ms", "errors", "vs Encrypt"))
for name, x in rows.items():
    print("%-24s %10.0f %8.2f %8.2f %7d %10.2fx" % (name, x["rps"], x["p50_ms"], x["p99_ms"], x["errors"],
                                                     x["rps"] / ref if ref else 0))
for op in ("Sign", "Verify"):
    r, e = rows["%s RSA_2048 PSS" % op]["rps"], rows["%s ECC_NIST_P256" % op]["rps"]
    print("%s: ECC_NIST_P256 / RSA_2048 PSS = %.2fx" % (op, e / r if r else 0))
PY
