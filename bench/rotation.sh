#!/usr/bin/env bash
# The cost of a rotation-heavy key: Decrypt of ciphertexts spread over the 10 backing materials of
# a key rotated 9 times, against Decrypt of 10 ciphertexts of a key that was never rotated (one
# material), in the same cofferd, in one run. Each side runs 10 coffer-loadgen processes at once,
# one ciphertext each (the load generator repeats one body), with the same connections in total;
# the sides alternate ROUNDS times and the ratio of each round is printed, then the median.
# Requests/s on 2 shared cores vary by 10-40% between rounds, so the same cofferd is then run
# under callgrind (one worker) and the instructions per Decrypt inside it are counted for each
# side over CG_REQUESTS requests (default 2000, spread evenly over the 10 ciphertexts): a
# repeatable ratio. CG_REQUESTS=0 skips it (no valgrind needed).
#
#   bash bench/rotation.sh [DURATION_S] [CONNECTIONS] [ROUNDS]     (defaults 5, 10, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
conns=${2:-10}
rounds=${3:-3}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }
materials=10
per=$(( conns / materials )); [ "$per" -ge 1 ] || per=1

work=$(mktemp -d)
pid=""
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
export AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config
export AWS_PROFILE=coffer AWS_PAGER=""
aws() { /usr/bin/aws --endpoint-url "$ep" "$@"; }
lg() { # requests target body [json]
    "$loadgen" --endpoint "$ep" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" --profile coffer \
        --region us-east-1 "$@"
}
pt64=$(head -c 64 /dev/urandom | base64 -w0)

one=$(aws kms create-key --query KeyMetadata.KeyId --output text)
many=$(aws kms create-key --query KeyMetadata.KeyId --output text)
for i in $(seq 0 $(( materials - 1 ))); do
    if [ "$i" -gt 0 ]; then
        # RotateKeyOnDemand is newer than Debian's CLI: signed and sent by the load generator.
        lg --connections 1 --requests 1 --target RotateKeyOnDemand --body "{\"KeyId\":\"$many\"}" --json \
            | tail -1 | grep -q '"errors":0,' || { echo "RotateKeyOnDemand failed" >&2; exit 1; }
    fi
    aws kms encrypt --key-id "$many" --plaintext "$pt64" --query CiphertextBlob --output text > "$work/many.$i"
    aws kms encrypt --key-id "$one" --plaintext "$pt64" --query CiphertextBlob --output text > "$work/one.$i"
done
# side NAME: 10 load generators at once, one ciphertext each; prints the summed requests/s.
side() {
    local name=$1 i lgs=()
    for i in $(seq 0 $(( materials - 1 ))); do
        lg --connections "$per" --duration "$duration" --warmup 1 --target Decrypt \
            --body "{\"CiphertextBlob\":\"$(cat "$work/$name.$i")\"}" --json > "$work/$name.lg.$i" 2>&1 &
        lgs+=($!)
    done
    wait "${lgs[@]}"
    for i in $(seq 0 $(( materials - 1 ))); do
        # Every answer must be a 200: an error would be cheaper than a decryption.
        tail -1 "$work/$name.lg.$i" | grep -q '"errors":0,' || { echo "Decrypt errors ($name $i):" >&2; cat "$work/$name.lg.$i" >&2; exit 1; }
        tail -1 "$work/$name.lg.$i" | sed -n 's/.*"rps":\([0-9.]*\).*/\1/p'
    done | awk '{s += $1} END {printf "%.0f", s}'
}

echo "# cofferd $(git rev-parse --short HEAD 2>/dev/null || echo ?), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# Decrypt, $conns connections in total ($per per load generator), ${duration}s per side and round"
echo "# key 'many': $materials backing materials, one ciphertext under each; key 'one': 1 material, $materials ciphertexts"
printf "%-6s %12s %12s %8s\n" round "one req/s" "many req/s" "many/one"
ratios=()
for r in $(seq 1 "$rounds"); do
    a=$(side one)
    b=$(side many)
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", (a > 0 ? b / a : 0)}')
    ratios+=("$ratio")
    printf "%-6s %12s %12s %8s\n" "$r" "$a" "$b" "$ratio"
done
printf "%s\n" "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {printf "median many/one: %s\n", v[int((NR + 1) / 2)]}'

cg_n=${CG_REQUESTS:-2000}
[ "$cg_n" -gt 0 ] || exit 0
command -v valgrind >/dev/null || { echo "callgrind part skipped: needs valgrind" >&2; exit 0; }
kill "$pid"; wait "$pid" 2>/dev/null || true
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
    "$build/cofferd" --data-dir "$dir" --listen 127.0.0.1:0 --workers 1 --quota-crypto-rps 0 --log-level warn \
    > "$work/cg.out" 2> "$work/cg.err" &
pid=$!
for _ in $(seq 600); do grep -q '^listening' "$work/cg.out" 2>/dev/null && break; sleep 0.1; done
ep=https://127.0.0.1:$(awk '/^listening/ {print $2}' "$work/cg.out")
each=$(( cg_n / materials ))
count() { # name: instructions per Decrypt over `each` requests of each of its ciphertexts
    local name=$1 i f total
    for i in $(seq 0 $(( materials - 1 ))); do # warm: keys cached, connection path taken
        lg --connections 1 --requests 20 --target Decrypt --body "{\"CiphertextBlob\":\"$(cat "$work/$name.$i")\"}" >/dev/null
    done
    callgrind_control -z "$pid" >/dev/null 2>&1
    for i in $(seq 0 $(( materials - 1 ))); do
        lg --connections 1 --requests "$each" --target Decrypt \
            --body "{\"CiphertextBlob\":\"$(cat "$work/$name.$i")\"}" >/dev/null
    done
    callgrind_control -d "$name" "$pid" >/dev/null 2>&1
    sleep 0.5
    f=$(ls -t "$work"/cg.$pid.* | head -1)
    total=$(awk '/^summary:/ {print $2}' "$f")
    rm -f "$f"
    echo $(( total / (each * materials) ))
}
ione=$(count one)
imany=$(count many)
echo "# instructions per Decrypt inside cofferd (callgrind, one worker, $(( each * materials )) requests per side)"
awk -v a="$ione" -v b="$imany" 'BEGIN {printf "one %d  many %d  many/one %.4f\n", a, b, b / a}'
