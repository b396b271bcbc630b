#!/usr/bin/env bash
# Drives `coffer audit verify` on trails built here with sha256sum (an implementation
# independent of src/audit): an intact trail exits 0, tampered ones exit 1, misuse exits 2.
set -euo pipefail
coffer=${1:?usage: cli_audit_test.sh PATH/TO/coffer}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

expect() { # expect CODE DESCRIPTION -- command...
    local want=$1 what=$2
    shift 3
    local got=0
    "$@" >"$work/out" 2>&1 || got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, want $want"
        sed 's/^/    /' "$work/out"
        fails=$((fails + 1))
    else
        echo "ok: $what"
    fi
}

# make_trail DIR N: N chained events in DIR/audit/trail-000001.jsonl
make_trail() {
    mkdir -p "$1/audit"
    local prev=0000000000000000000000000000000000000000000000000000000000000000 i line
    : >"$1/audit/trail-000001.jsonl"
    for i in $(seq 1 "$2"); do
        line="{\"previousEventHash\":\"$prev\",\"eventVersion\":\"1.08\",\"eventName\":\"Encrypt\",\"requestID\":\"r$i\"}"
        printf '%s\n' "$line" >>"$1/audit/trail-000001.jsonl"
        prev=$(printf '%s' "$line" | sha256sum | cut -c1-64)
    done
}

make_trail "$work/good" 20
expect 0 "intact trail verifies" -- "$coffer" audit verify "$work/good"
grep -q "audit trail OK: 20 events in 1 files" "$work/out" || { echo "FAIL: summary missing"; fails=$((fails + 1)); }
expect 0 "trail directory given directly" -- "$coffer" audit verify "$work/good/audit"

cp -r "$work/good" "$work/edited"
sed -i '7s/Encrypt/Decrypt/' "$work/edited/audit/trail-000001.jsonl"
expect 1 "edited event is detected" -- "$coffer" audit verify "$work/edited"
grep -q "trail-000001.jsonl:8:" "$work/out" || { echo "FAIL: edit not reported at line 8"; fails=$((fails + 1)); }

cp -r "$work/good" "$work/deleted"
sed -i '12d' "$work/deleted/audit/trail-000001.jsonl"
expect 1 "deleted event is detected" -- "$coffer" audit verify "$work/deleted"
grep -q "trail-000001.jsonl:12:" "$work/out" || { echo "FAIL: deletion not reported at line 12"; fails=$((fails + 1)); }

cp -r "$work/good" "$work/torn"
truncate -s -5 "$work/torn/audit/trail-000001.jsonl"
expect 1 "torn tail is detected" -- "$coffer" audit verify "$work/torn"

expect 1 "missing directory fails" -- "$coffer" audit verify "$work/nope"
expect 2 "no arguments is a usage error" -- "$coffer"
expect 2 "unknown command is a usage error" -- "$coffer" frobnicate
expect 2 "audit without DIR is a usage error" -- "$coffer" audit verify
expect 2 "unknown audit subcommand is a usage error" -- "$coffer" audit check "$work/good"
expect 0 "help exits 0" -- "$coffer" --help
expect 0 "audit help exits 0" -- "$coffer" audit --help

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all coffer audit verify checks passed"
