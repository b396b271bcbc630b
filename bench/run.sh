#!/usr/bin/env bash
# cofferd load benchmark: Encrypt (64 B), Decrypt and GenerateDataKey over keep-alive HTTPS with
# SigV4-signed requests, audit on, quotas off, compared with a peer HTTPS server (nginx answering
# a fixed JSON body on the same machine, same TLS key type, same load generator) measured in the
# same run. Prints requests/s, p50/p99 latency and the ratio to the peer.
#
#   bash bench/run.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 16)
#   BASELINE_COFFERD=old/cofferd bash bench/run.sh     also runs an older cofferd, same loads, and
#                                                       prints each run's ratio to it
#   WORKERS=N bash bench/run.sh                        cofferd with N worker threads (default: one per CPU)
#   PIN=1 WORKERS=1 bash bench/run.sh                  cofferd on CPU 0, the load generator on CPU 1
#                                                       (the scaling check: 1 worker vs 2, loadgen apart)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }
command -v nginx >/dev/null || { echo "installing nginx for the peer baseline" >&2; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

work=$(mktemp -d)
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# start_cofferd NAME BINARY: a cofferd on a free port with its own data dir, quotas off, and one
# key; sets ENDPOINT_<NAME>, KEY_<NAME>, CT_<NAME> (a ciphertext of pt64) and DATA_<NAME>.
pt64=$(head -c 64 /dev/urandom | base64 -w0)
pids=()
workers_arg=; [ -n "${WORKERS:-}" ] && workers_arg="--workers $WORKERS"
server_pin=; loadgen_pin=
if [ "${PIN:-0}" = 1 ]; then server_pin="taskset -c 0"; loadgen_pin="taskset -c 1"; fi
start_cofferd() {
    local name=$1 bin=$2 dir=$work/data-$1
    $server_pin "$bin" --data-dir "$dir" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn $workers_arg \
        > "$work/$name.out" 2> "$work/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q '^listening' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
    local port ep k c
    port=$(awk '/^listening/ {print $2}' "$work/$name.out")
    ep=https://127.0.0.1:$port
    k=$(AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
        AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "$ep" kms create-key --query KeyMetadata.KeyId --output text)
    c=$(AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
        AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "$ep" kms encrypt --key-id "$k" --plaintext "$pt64" \
        --query CiphertextBlob --output text)
    printf -v "ENDPOINT_$name" %s "$ep"; printf -v "KEY_$name" %s "$k"; printf -v "CT_$name" %s "$c"
    printf -v "DATA_$name" %s "$dir"; printf -v "PORT_$name" %s "$port"
}
start_cofferd new "$build/cofferd"
# BASELINE_COFFERD=/path/to/an/older/cofferd: the same runs against it, interleaved, in this run.
[ -n "${BASELINE_COFFERD:-}" ] && start_cofferd base "$BASELINE_COFFERD"
port=$PORT_new
export AWS_CA_BUNDLE=$DATA_new/tls/ca.pem

# Peer: nginx with the same certificate, answering every POST with a small JSON body.
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:0 ssl;
        listen 127.0.0.1:$((port + 1)) ssl;
        ssl_certificate $DATA_new/tls/server.pem;
        ssl_certificate_key $DATA_new/tls/server-key.pem;
        location / { default_type application/x-amz-json-1.1; return 200 '{"KeyId":"x","CiphertextBlob":"$pt64"}'; }
    }
}
NGINX
sed -i '/listen 127.0.0.1:0 ssl;/d' "$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work/nginx" 2>/dev/null
sleep 0.5

run() { # name instance target body
    local dir=DATA_$2 ep=ENDPOINT_$2
    [ "$2" = peer ] && { dir=DATA_new; ep=PEER; }
    $loadgen_pin "$loadgen" --endpoint "${!ep}" --ca "${!dir}/tls/ca.pem" --credentials "${!dir}/credentials" --profile coffer \
        --region us-east-1 --connections "$conns" --duration "$duration" --warmup 2 --target "$3" --body "$4" --json \
        | tail -1 | sed "s/^/{\"name\":\"$1\",\"result\":/; s/\$/}/"
}
PEER="https://127.0.0.1:$((port + 1))"

results=$work/results.jsonl
run peer-nginx peer Encrypt "{\"KeyId\":\"$KEY_new\",\"Plaintext\":\"$pt64\"}" >> "$results"
instances=(new); [ -n "${BASELINE_COFFERD:-}" ] && instances=(base new)
# Each load runs against the baseline and then the build under test, back to back, so that both
# see the same machine state as nearly as possible.
for op in Encrypt Decrypt GenerateDataKey; do
    for i in "${instances[@]}"; do
        k=KEY_$i; c=CT_$i; sfx=; [ "$i" = base ] && sfx=" (base)"
        case $op in
        Encrypt) run "Encrypt-64B$sfx" "$i" Encrypt "{\"KeyId\":\"${!k}\",\"Plaintext\":\"$pt64\"}" ;;
        Decrypt) run "Decrypt$sfx" "$i" Decrypt "{\"CiphertextBlob\":\"${!c}\"}" ;;
        GenerateDataKey) run "GenerateDataKey$sfx" "$i" GenerateDataKey "{\"KeyId\":\"${!k}\",\"KeySpec\":\"AES_256\"}" ;;
        esac >> "$results"
    done
done

/usr/bin/python3 - "$results" "$conns" "$duration" "${WORKERS:-}" "${PIN:-0}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peer = rows[0]["result"]["rps"]
base = {r["name"][:-len(" (base)")]: r["result"]["rps"] for r in rows if r["name"].endswith(" (base)")}
print("cofferd load benchmark: %s connections, %s s per run, audit on, quotas off, workers %s%s"
      % (sys.argv[2], sys.argv[3], sys.argv[4] or "per CPU", ", pinned" if sys.argv[5] == "1" else ""))
print("%-24s %10s %8s %8s %8s %7s %8s %8s" % ("run", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "vs peer",
                                              "vs base" if base else ""))
for r in rows:
    x = r["result"]
    vs_base = "%7.2fx" % (x["rps"] / base[r["name"]]) if r["name"] in base and base[r["name"]] else ""
    print("%-24s %10.0f %8.2f %8.2f %8.2f %7d %7.2fx %8s" % (r["name"], x["rps"], x["p50_ms"], x["p99_ms"],
          x["max_ms"], x["errors"], x["rps"] / peer if peer else 0, vs_base))
PY
