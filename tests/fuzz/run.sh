#!/usr/bin/env bash
# Runs every libFuzzer binary in DIR for SECONDS each, starting from its seed corpus in
# tests/fuzz/corpus/<name>/ (copied, so the checked-in corpus is not modified).
set -euo pipefail
dir=${1:?usage: run.sh FUZZ_BIN_DIR SECONDS}
secs=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
shopt -s nullglob
count=0
for bin in "$dir"/*_fuzz; do
    name=$(basename "$bin")
    work=$(mktemp -d)
    seeds="$here/corpus/${name%_fuzz}"
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
    dict=()
    [ -f "$here/${name%_fuzz}.dict" ] && dict=(-dict="$here/${name%_fuzz}.dict")
    echo "fuzz: $name for ${secs}s"
    "$bin" "${dict[@]}" -max_total_time="$secs" -print_final_stats=0 -artifact_prefix="$work/" "$work" \
        > "$work.log" 2>&1 || { tail -50 "$work.log"; echo "fuzz: $name FAILED"; exit 1; }
    count=$((count + 1))
    rm -rf "$work" "$work.log"
done
echo "fuzz: $count targets ran clean"
