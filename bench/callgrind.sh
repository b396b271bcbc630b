#!/usr/bin/env bash
# Instructions per request inside cofferd, counted by callgrind: repeatable on a busy machine,
# unlike requests/s. Starts cofferd (one worker) under callgrind, warms up, zeroes the counters,
# sends N requests of each kind over one keep-alive TLS connection and reads the total. Kinds:
# KMS Encrypt, Decrypt and GenerateDataKey (a 64-byte plaintext), Parameter Store GetParameter of
# a String and of a SecureString with decryption, Secrets Manager GetSecretValue of a 1 KB secret.
#
#   bash bench/callgrind.sh [N]                          (default 2000)
#   BASELINE_COFFERD=old/cofferd bash bench/callgrind.sh   also counts an older cofferd
#   KEEP=1 ...                                             copies the dumps to KEEP_DIR (default /tmp) for callgrind_annotate
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

count() { # name binary
    local name=$1 bin=$2 dir=$work/data-$1
    # First start outside valgrind: creating the data dir (root key, CA) is not what we measure.
    "$bin" --data-dir "$dir" --listen 127.0.0.1:0 --log-level warn > "$work/$name.init" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do grep -q '^listening' "$work/$name.init" 2>/dev/null && break; sleep 0.1; done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg.%p" \
        "$bin" --data-dir "$dir" --listen 127.0.0.1:0 --workers 1 --quota-crypto-rps 0 --log-level warn \
        > "$work/$name.out" 2> "$work/$name.err" &
    pid=$!
    pids+=($pid)
    for _ in $(seq 600); do grep -q '^listening' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
    local ep=https://127.0.0.1:$(awk '/^listening/ {print $2}' "$work/$name.out")
    export AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config
    export AWS_PROFILE=coffer AWS_PAGER=""
    local key ct pt64
    pt64=$(head -c 64 /dev/urandom | base64 -w0)
    key=$(/usr/bin/aws --endpoint-url "$ep" kms create-key --query KeyMetadata.KeyId --output text)
    ct=$(/usr/bin/aws --endpoint-url "$ep" kms encrypt --key-id "$key" --plaintext "$pt64" --query CiphertextBlob --output text)
    /usr/bin/aws --endpoint-url "$ep" ssm put-parameter --name /bench/app/db-url --type String \
        --value "postgres://db.internal:5432/app" >/dev/null
    /usr/bin/aws --endpoint-url "$ep" ssm put-parameter --name /bench/app/db-password --type SecureString \
        --value "$pt64" >/dev/null
    /usr/bin/aws --endpoint-url "$ep" secretsmanager create-secret --name bench/app/db \
        --secret-string "$(head -c 768 /dev/urandom | base64 -w0)" >/dev/null
    lg() { "$loadgen" --endpoint "$ep" --ca "$dir/tls/ca.pem" --credentials "$dir/credentials" --profile coffer \
        --region us-east-1 --connections 1 --requests "$1" --target "$2" --body "$3" >/dev/null; }
    local op target
    for op in Encrypt Decrypt GenerateDataKey GetParameter GetParameterSecure GetSecretValue; do
        target=$op
        case $op in
        Encrypt) body="{\"KeyId\":\"$key\",\"Plaintext\":\"$pt64\"}" ;;
        Decrypt) body="{\"CiphertextBlob\":\"$ct\"}" ;;
        GenerateDataKey) body="{\"KeyId\":\"$key\",\"KeySpec\":\"AES_256\"}" ;;
        GetParameter) target=AmazonSSM.GetParameter body='{"Name":"/bench/app/db-url"}' ;;
        GetParameterSecure)
            target=AmazonSSM.GetParameter body='{"Name":"/bench/app/db-password","WithDecryption":true}' ;;
        GetSecretValue) target=secretsmanager.GetSecretValue body='{"SecretId":"bench/app/db"}' ;;
        esac
        lg 50 "$target" "$body" # warm caches and the connection path
        callgrind_control -z "$pid" >/dev/null
        lg "$n" "$target" "$body"
        callgrind_control -d "$op" "$pid" >/dev/null
        sleep 0.5
        local f total
        f=$(ls -t "$work/$name".cg.$pid.* | head -1)
        total=$(awk '/^summary:/ {print $2}' "$f")
        echo "$name $op $(( total / n ))" >> "$work/results"
        [ -n "${KEEP:-}" ] && cp "$f" "${KEEP_DIR:-/tmp}"/ ; rm -f "$f"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

[ -n "${BASELINE_COFFERD:-}" ] && count base "$BASELINE_COFFERD"
count new "$build/cofferd"
echo "instructions per request inside cofferd (callgrind, one worker, $n requests each, one connection)"
awk '{v[$1" "$2]=$3; ops[$2]=1} END {
    printf "%-20s %12s %12s %8s\n", "op", "base", "new", "ratio";
    for (o in ops) { b=v["base "o]; w=v["new "o];
        printf "%-20s %12s %12d %8s\n", o, b ? b : "-", w, b ? sprintf("%.3f", w/b) : "-" } }' "$work/results"
