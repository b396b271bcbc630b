#!/usr/bin/env bash
# libcoffer's ABI is its coffer_* functions: fail if the shared library exports anything else
# (a helper that lost its `static`, a linked-in dependency's symbol), or exports nothing at all.
# usage: check_exports.sh path/to/libcoffer.so
set -euo pipefail
lib=${1:?usage: check_exports.sh libcoffer.so}
[ -f "$lib" ] || { echo "check_exports: $lib not found" >&2; exit 1; }
# Defined dynamic symbols; versioned entries print as name@@VERSION, keep the name.
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u)
if [ -z "$syms" ]; then
    echo "check_exports: $lib exports nothing" >&2
    exit 1
fi
bad=$(grep -v '^coffer_' <<<"$syms" || true)
if [ -n "$bad" ]; then
    echo "check_exports: $lib exports symbols outside the coffer_ namespace:" >&2
    sed 's/^/  /' <<<"$bad" >&2
    exit 1
fi
echo "check_exports: $(wc -l <<<"$syms") symbols, all coffer_*"
