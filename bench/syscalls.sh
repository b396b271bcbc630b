#!/usr/bin/env bash
# System calls per request inside cofferd, counted by strace: like callgrind's instruction count,
# a figure that does not swing with the load on a shared machine. Starts cofferd (audit on,
# quotas off, WORKERS worker threads, default 1), creates a key, warms up CONNECTIONS keep-alive
# TLS connections with Encrypt requests, then attaches `strace -c -f` to cofferd for exactly the
# measured window: N Encrypt requests (64-byte plaintext) over CONNECTIONS connections.
# Prints each system call's count per request and the total.
#
#   bash bench/syscalls.sh [N] [CONNECTIONS]      (defaults 20000 and 16)
#   WORKERS=2 bash bench/syscalls.sh ...           two worker threads
#   COFFERD=old/cofferd bash bench/syscalls.sh ... counts another build
#
# The measured window includes the 16 TLS handshakes of the measured connections (the load
# generator opens new ones) and their closes: about 0.02 calls per request at N = 20000.
# Needs strace (Debian package `strace`).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
conns=${2:-16}
workers=${WORKERS:-1}
build=${BUILD:-build}
bin=${COFFERD:-$build/cofferd}
loadgen=$build/coffer-loadgen
command -v strace >/dev/null || { echo "needs strace (apt-get install strace)" >&2; exit 2; }
[ -x "$loadgen" ] && [ -x "$bin" ] || { echo "build first: make build" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

dir=$work/data
"$bin" --data-dir "$dir" --listen 127.0.0.1:0 --workers "$workers" --quota-crypto-rps 0 --log-level warn \
    > "$work/cofferd.out" 2> "$work/cofferd.err" &
pid=$!
pids+=($pid)
for _ in $(seq 100); do grep -q '^listening' "$work/cofferd.out" 2>/dev/null && break; sleep 0.1; done
ep=https://127.0.0.1:$(awk '/^listening/ {print $2}' "$work/cofferd.out")
export AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config
export AWS_PROFILE=coffer AWS_PAGER=""
pt64=$(head -c 64 /dev/urandom | base64 -w0)
key=$(/usr/bin/aws --endpoint-url "$ep" kms create-key --query KeyMetadata.KeyId --output text)
body="{\"KeyId\":\"$key\",\"Plaintext\":\"$pt64\"}"
lg() {
    "$loadgen" --endpoint "$ep" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" --profile coffer \
        --region us-east-1 --connections "$conns" --requests "$1" --target Encrypt --body "$body"
}
lg 2000 > /dev/null # warm the key cache, the credentials cache and the allocator

strace -c -f -q -o "$work/strace.txt" -p "$pid" &
spid=$!
pids+=($spid)
sleep 1 # strace attaches every thread before the window opens
lg "$n" > "$work/loadgen.txt"
kill -INT "$spid"
wait "$spid" 2>/dev/null || true

echo "system calls per Encrypt request inside cofferd (strace -c -f, $workers worker(s), $n requests, $conns connections)"
awk -v n="$n" '
    $1 ~ /^-+$/ { sep++; next }
    sep == 1 && NF >= 5 { rows[$NF] = $4; total += $4 }
    END {
        for (s in rows) printf "%-20s %10d %8.3f\n", s, rows[s], rows[s] / n | "sort -k2 -nr";
        close("sort -k2 -nr");
        printf "%-20s %10d %8.3f\n", "total", total, total / n }' "$work/strace.txt"
grep -i 'error\|status' "$work/loadgen.txt" || true
