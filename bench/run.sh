#!/usr/bin/env bash
# cofferd load benchmark: Encrypt (64 B), Decrypt and GenerateDataKey over keep-alive HTTPS with
# SigV4-signed requests, audit on, quotas off, compared with a peer HTTPS server (nginx answering
# a fixed JSON body on the same machine, same TLS key type, same load generator) measured in the
# same run. Prints requests/s, p50/p99 latency and the ratio to the peer.
#
#   bash bench/run.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 16)
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
    [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# cofferd on a free port, its own data dir, quotas off.
"$build/cofferd" --data-dir "$work/data" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn \
    > "$work/cofferd.out" 2> "$work/cofferd.err" &
cpid=$!
for _ in $(seq 100); do grep -q '^listening' "$work/cofferd.out" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/^listening/ {print $2}' "$work/cofferd.out")
endpoint=https://127.0.0.1:$port
export AWS_CA_BUNDLE=$work/data/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$work/data/credentials
export AWS_CONFIG_FILE=$work/data/config AWS_PROFILE=coffer AWS_PAGER=""
key=$(/usr/bin/aws --endpoint-url "$endpoint" kms create-key --query KeyMetadata.KeyId --output text)
pt64=$(head -c 64 /dev/urandom | base64 -w0)
ct=$(/usr/bin/aws --endpoint-url "$endpoint" kms encrypt --key-id "$key" --plaintext "$pt64" \
    --query CiphertextBlob --output text)

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
        ssl_certificate $work/data/tls/server.pem;
        ssl_certificate_key $work/data/tls/server-key.pem;
        location / { default_type application/x-amz-json-1.1; return 200 '{"KeyId":"x","CiphertextBlob":"$pt64"}'; }
    }
}
NGINX
sed -i '/listen 127.0.0.1:0 ssl;/d' "$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work/nginx" 2>/dev/null
sleep 0.5

run() { # name endpoint target body
    "$loadgen" --endpoint "$2" --ca "$AWS_CA_BUNDLE" --credentials "$AWS_SHARED_CREDENTIALS_FILE" --profile coffer \
        --region us-east-1 --connections "$conns" --duration "$duration" --warmup 2 --target "$3" --body "$4" --json \
        | tail -1 | sed "s/^/{\"name\":\"$1\",\"result\":/; s/\$/}/"
}

results=$work/results.jsonl
run peer-nginx "https://127.0.0.1:$((port + 1))" Encrypt "{\"KeyId\":\"$key\",\"Plaintext\":\"$pt64\"}" >> "$results"
run Encrypt-64B "$endpoint" Encrypt "{\"KeyId\":\"$key\",\"Plaintext\":\"$pt64\"}" >> "$results"
run Decrypt "$endpoint" Decrypt "{\"CiphertextBlob\":\"$ct\"}" >> "$results"
run GenerateDataKey "$endpoint" GenerateDataKey "{\"KeyId\":\"$key\",\"KeySpec\":\"AES_256\"}" >> "$results"

/usr/bin/python3 - "$results" "$conns" "$duration" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peer = rows[0]["result"]["rps"]
print("cofferd load benchmark: %s connections, %s s per run, audit on, quotas off" % (sys.argv[2], sys.argv[3]))
print("%-18s %12s %9s %9s %9s %8s %11s" % ("run", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "vs peer"))
for r in rows:
    x = r["result"]
    print("%-18s %12.0f %9.2f %9.2f %9.2f %8d %10.2fx" % (r["name"], x["rps"], x["p50_ms"], x["p99_ms"],
          x["max_ms"], x["errors"], x["rps"] / peer if peer else 0))
PY
