#!/usr/bin/env bash
# The storage backends under load, in one run: Encrypt (64 B; the key is cached, so no store
# read) and CreateKey (one write transaction per request) on one cofferd with SQLite, one with
# PostgreSQL, and two cofferd nodes sharing one PostgreSQL database (the load split between
# them). Prints requests/s, latency and the ratios to SQLite. PostgreSQL is a throw-away cluster
# (tests/integration/pg_cluster.py) on this machine, fsync off as in the tests: the figures
# compare the code paths, not disks.
#
#   bash bench/store.sh [DURATION_S] [CONNECTIONS]      (defaults 10 and 16)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${COFFER_TEST_PG_URL:-}" ]; then
    exec /usr/bin/python3 tests/integration/pg_cluster.py run -- bash "$0" "$@"
fi
duration=${1:-10}
conns=${2:-16}
build=${BUILD:-build}
loadgen=$build/coffer-loadgen
[ -x "$loadgen" ] && [ -x "$build/cofferd" ] || { echo "build first: make build" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

pt64=$(head -c 64 /dev/urandom | base64 -w0)
# start NAME DIR [--store URL]: a cofferd on a free port; sets PORT_<NAME>.
start() {
    local name=$1 dir=$2
    shift 2
    "$build/cofferd" --data-dir "$dir" --listen 127.0.0.1:0 --quota-crypto-rps 0 --log-level warn "$@" \
        > "$work/$name.out" 2> "$work/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q '^listening' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
    printf -v "PORT_$name" %s "$(awk '/^listening/ {print $2}' "$work/$name.out")"
}
aws_in() { # DIR PORT args...: the AWS CLI against the node on PORT with DIR's credentials
    local dir=$1 port=$2
    shift 2
    AWS_CA_BUNDLE=$dir/tls/ca.pem AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_CONFIG_FILE=$dir/config \
        AWS_PROFILE=coffer AWS_PAGER="" /usr/bin/aws --endpoint-url "https://127.0.0.1:$port" "$@"
}

start sqlite "$work/sqlite"
start pg1 "$work/pg1" --store "$COFFER_TEST_PG_URL"
# The second node: a copy of the first's data dir (root key, TLS CA, credentials).
mkdir "$work/pg2"
for f in "$work/pg1"/*; do
    case $(basename "$f") in audit) ;; *) cp -a "$f" "$work/pg2/" ;; esac
done
start pg2 "$work/pg2" --store "$COFFER_TEST_PG_URL"
KEY_sqlite=$(aws_in "$work/sqlite" "$PORT_sqlite" kms create-key --query KeyMetadata.KeyId --output text)
KEY_pg=$(aws_in "$work/pg1" "$PORT_pg1" kms create-key --query KeyMetadata.KeyId --output text)

# load DIR PORT CONNS TARGET BODY: one loadgen run, its JSON result line.
load() {
    "$loadgen" --endpoint "https://127.0.0.1:$2" --ca "$1/tls/ca.pem" --credentials "$1/credentials" \
        --profile coffer --region us-east-1 --connections "$3" --duration "$duration" --warmup 2 --target "$4" \
        --body "$5" --json | tail -1
}
results=$work/results.jsonl
row() { echo "{\"name\":\"$1\",\"result\":$2}" >> "$results"; }
two_nodes() { # TARGET BODY: the load split over both PostgreSQL nodes at once, summed
    load "$work/pg1" "$PORT_pg1" $((conns / 2)) "$1" "$2" > "$work/a.json" &
    local a=$!
    load "$work/pg2" "$PORT_pg2" $((conns - conns / 2)) "$1" "$2" > "$work/b.json"
    wait $a
    /usr/bin/python3 -c 'import json,sys; a,b=[json.load(open(p)) for p in sys.argv[1:]]
print(json.dumps({"rps":a["rps"]+b["rps"],"p50_ms":max(a["p50_ms"],b["p50_ms"]),"p99_ms":max(a["p99_ms"],b["p99_ms"]),
"errors":a["errors"]+b["errors"]}))' "$work/a.json" "$work/b.json"
}

enc() { echo "{\"KeyId\":\"$1\",\"Plaintext\":\"$pt64\"}"; }
row "Encrypt sqlite" "$(load "$work/sqlite" "$PORT_sqlite" "$conns" Encrypt "$(enc "$KEY_sqlite")")"
row "Encrypt postgres" "$(load "$work/pg1" "$PORT_pg1" "$conns" Encrypt "$(enc "$KEY_pg")")"
row "Encrypt postgres x2" "$(two_nodes Encrypt "$(enc "$KEY_pg")")"
row "CreateKey sqlite" "$(load "$work/sqlite" "$PORT_sqlite" "$conns" CreateKey '{}')"
row "CreateKey postgres" "$(load "$work/pg1" "$PORT_pg1" "$conns" CreateKey '{}')"
row "CreateKey postgres x2" "$(two_nodes CreateKey '{}')"

/usr/bin/python3 - "$results" "$conns" "$duration" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base = {r["name"].split()[0]: r["result"]["rps"] for r in rows if r["name"].endswith("sqlite")}
print("store backends: %s connections, %s s per run, audit on, quotas off" % (sys.argv[2], sys.argv[3]))
print("%-24s %10s %8s %8s %7s %10s" % ("run", "req/s", "p50 ms", "p99 ms", "errors", "vs sqlite"))
for r in rows:
    x, op = r["result"], r["name"].split()[0]
    print("%-24s %10.0f %8.2f %8.2f %7d %9.2fx" % (r["name"], x["rps"], x["p50_ms"], x["p99_ms"], x["errors"],
                                                  x["rps"] / base[op] if base.get(op) else 0))
PY
