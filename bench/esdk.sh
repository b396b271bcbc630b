#!/usr/bin/env bash
# Encryption SDK benchmark (not run in CI). Measures, in one run:
#   1. streaming encrypt/decrypt throughput of MIB MiB of generated input (default 1024) for
#      suites 0x0478 and 0x0578 at frame 4096 and 65536 with a raw AES-256 keyring, each run in
#      its own process so its peak RSS (ru_maxrss) is its own;
#   2. the baseline: `openssl speed -evp aes-256-gcm -seconds 3` (one core); every throughput is
#      printed as a ratio to OpenSSL's 16384-byte-block figure;
#   3. the caching CMM against a live KMS keyring (cofferd started here, quotas off): CACHED
#      messages (default 100000) with max_messages_encrypted=1000, and UNCACHED messages (default
#      2000) without the cache; per-message time ratio and keyring call counts, for suite 0x0478
#      and, with SIGNED_CACHED/SIGNED_UNCACHED messages (default 2000/300: each one costs an
#      ECDSA P-384 signature), for the signed default suite 0x0578.
#
# MIB=0 skips 1 and 2 (caching figures only).
#
# The machine may be shared: each streaming configuration runs REPEAT times (default 3) and the
# best run is reported, with the slowest beside it so the spread stays visible.
#
#   bash bench/esdk.sh [MIB] [CACHED] [UNCACHED]
#   CLI=1 bash bench/esdk.sh [MIB]   the same figures through the `coffer` binary (bench/esdk_cli.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CLI:-0}" = 1 ]; then
    exec bash bench/esdk_cli.sh "$@"
fi
mib=${1:-1024}
cached=${2:-100000}
uncached=${3:-2000}
repeat=${REPEAT:-3}
build=${BUILD:-build}
bench=$build/esdk_bench
[ -x "$bench" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }

work=$(mktemp -d)
cleanup() {
    [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

signed_cached=${SIGNED_CACHED:-2000}
signed_uncached=${SIGNED_UNCACHED:-300}
if [ "$mib" != 0 ]; then
echo "== OpenSSL baseline: openssl speed -evp aes-256-gcm -seconds 3"
openssl speed -evp aes-256-gcm -seconds 3 2>/dev/null | tee "$work/openssl.txt" | tail -2
# Last line: name, then 1000s of bytes/s per block size; the last column is 16384 bytes.
base_k=$(awk 'tolower($0) ~ /^aes-256-gcm/ {v=$NF} END {sub(/k$/, "", v); print v}' "$work/openssl.txt")
base=$(awk -v k="$base_k" 'BEGIN {printf "%.1f", k / 1000}')
echo "openssl aes-256-gcm 16384-byte blocks: $base MB/s"

echo
echo "== streaming, $mib MiB per run, best of $repeat (MB = 10^6 bytes; worst run in brackets)"
printf '%-7s %-6s %10s %7s %9s %10s %7s %9s %9s\n' suite frame enc_MB/s ratio "(worst)" dec_MB/s ratio "(worst)" maxrss_MB
field() { sed -E "s/.*$1=([0-9.]+).*/\\1/" <<<"$2"; }
for suite in 0x0478 0x0578; do
    for frame in 4096 65536; do
        enc_best=0 enc_worst=1e12 dec_best=0 dec_worst=1e12 rss=0
        for _ in $(seq "$repeat"); do
            line=$("$bench" stream "$suite" "$frame" "$mib")
            read -r enc_best enc_worst dec_best dec_worst rss < <(awk -v e="$(field enc_MBps "$line")" \
                -v d="$(field dec_MBps "$line")" -v r="$(field maxrss_kB "$line")" -v eb="$enc_best" \
                -v ew="$enc_worst" -v db="$dec_best" -v dw="$dec_worst" -v rr="$rss" 'BEGIN {
                    print (e > eb ? e : eb), (e < ew ? e : ew), (d > db ? d : db), (d < dw ? d : dw), (r > rr ? r : rr) }')
        done
        awk -v s="$suite" -v f="$frame" -v e="$enc_best" -v ew="$enc_worst" -v d="$dec_best" -v dw="$dec_worst" \
            -v r="$rss" -v b="$base" 'BEGIN {printf "%-7s %-6s %10.1f %7.2f %9s %10.1f %7.2f %9s %9.1f\n",
                s, f, e, e / b, "(" sprintf("%.2f", ew / b) ")", d, d / b, "(" sprintf("%.2f", dw / b) ")", r / 1024}'
    done
done

fi

echo
echo "== caching CMM vs KMS keyring (cofferd on loopback, --quota-crypto-rps 0)"
"$build/cofferd" --data-dir "$work/data" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn \
    > "$work/cofferd.out" 2> "$work/cofferd.err" &
cpid=$!
for _ in $(seq 100); do grep -q '^listening' "$work/cofferd.out" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/^listening/ {print $2; exit}' "$work/cofferd.out")
[ -n "$port" ] || { echo "cofferd did not start" >&2; cat "$work/cofferd.err" >&2; exit 1; }
export AWS_SHARED_CREDENTIALS_FILE=$work/data/credentials AWS_CONFIG_FILE=$work/data/config AWS_PROFILE=coffer
export AWS_CA_BUNDLE=$work/data/tls/ca.pem AWS_REGION=us-east-1 AWS_PAGER=""
endpoint=https://127.0.0.1:$port
arn=$(/usr/bin/aws --endpoint-url "$endpoint" kms create-key --query KeyMetadata.Arn --output text)
cache_pair() { # SUITE CACHED UNCACHED
    local with without w wo calls
    with=$("$bench" cache "$endpoint" "$arn" "$2" 1000 "$1")
    without=$("$bench" cache "$endpoint" "$arn" "$3" 0 "$1")
    echo "$with"
    echo "$without"
    w=$(sed -E 's/.*us_per_msg=([0-9.]+).*/\1/' <<<"$with")
    wo=$(sed -E 's/.*us_per_msg=([0-9.]+).*/\1/' <<<"$without")
    calls=$(sed -E 's/.*keyring_calls=([0-9]+).*/\1/' <<<"$with")
    awk -v s="$1" -v w="$w" -v wo="$wo" -v c="$calls" -v n="$2" \
        'BEGIN {printf "suite %s cached: %d keyring calls for %d messages (target <= %d); speed-up %.1fx per message (target >= 50x)\n", s, c, n, n / 1000, wo / w}'
}
cache_pair 0x0478 "$cached" "$uncached"
cache_pair 0x0578 "$signed_cached" "$signed_uncached"
