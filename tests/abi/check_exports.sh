#!/usr/bin/env bash
# libcoffer's ABI is its coffer_* functions. Fails if the shared library exports anything else
# (a helper that lost its `static`, a linked-in dependency's symbol) or nothing at all; given the
# public headers' directory, also fails unless the exports are exactly the COFFER_API functions
# declared there (a declared function the library does not export, or an export no header declares).
# usage: check_exports.sh path/to/libcoffer.so [path/to/include/coffer]
set -euo pipefail
lib=${1:?usage: check_exports.sh libcoffer.so [include/coffer]}
hdrs=${2:-}
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
if [ -n "$hdrs" ]; then
    # Each declaration that carries COFFER_API names its function before its first '('.
    declared=$(cat "$hdrs"/*.h | perl -0777 -ne '
        s{/\*.*?\*/}{}gs; s{^\s*#.*$}{}gm;
        for my $stmt (split /;/) { print "$1\n" if $stmt =~ /\bCOFFER_API\b[^(]*?\b(coffer_\w+)\s*\(/s }' | sort -u)
    missing=$(comm -23 <(echo "$declared") <(echo "$syms"))
    extra=$(comm -13 <(echo "$declared") <(echo "$syms"))
    if [ -n "$missing" ] || [ -n "$extra" ]; then
        [ -z "$missing" ] || { echo "check_exports: declared in $hdrs but not exported:" >&2; sed 's/^/  /' <<<"$missing" >&2; }
        [ -z "$extra" ] || { echo "check_exports: exported but declared in no public header:" >&2; sed 's/^/  /' <<<"$extra" >&2; }
        exit 1
    fi
fi
echo "check_exports: $(wc -l <<<"$syms") symbols, all coffer_*${hdrs:+, exactly the public API}"
