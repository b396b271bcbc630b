#!/usr/bin/env bash
# What a program using libcoffer sees from its headers: they compile on their own in strict C99
# (and as C++ when a C++ compiler is around), an ignored status and a literal NULL for a
# COFFER_NONNULL argument are compile errors under -Werror, and without GNU attributes the
# macros vanish so the same code still compiles.
# usage: check_attributes.sh CC include_dir
set -euo pipefail
cc=${1:?usage: check_attributes.sh CC include_dir}
inc=${2:?usage: check_attributes.sh CC include_dir}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -c, not -fsyntax-only: GCC reports an unused result only once it lowers the code.
flags=(-std=c99 -Wall -Wextra -Wpedantic -Werror -c -o /dev/null -I "$inc")

cat >"$tmp/good.c" <<'C'
#include "coffer/esdk.h"
int good(coffer_cmm *cmm, const uint8_t *in, size_t len)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    int st = coffer_encrypt(cmm, NULL, in, len, &out, &out_len);
    coffer_bytes_free(out, out_len);
    return st == COFFER_STATUS_OK ? 0 : st;
}
C
cat >"$tmp/unused.c" <<'C'
#include "coffer/esdk.h"
void unused(coffer_ec *ec)
{
    coffer_ec_set_str(ec, "k", "v");
}
C
cat >"$tmp/null.c" <<'C'
#include "coffer/esdk.h"
int null_cmm(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    return coffer_encrypt(NULL, NULL, in, len, out, out_len);
}
C

fail=0
expect() { # expect ok|error name command...
    local want=$1 name=$2
    shift 2
    if "$@" >"$tmp/log" 2>&1; then got=ok; else got=error; fi
    if [ "$got" != "$want" ]; then
        echo "check_attributes: $name: expected $want, got $got" >&2
        sed 's/^/  /' "$tmp/log" >&2
        fail=1
    fi
}
expect ok "headers in strict C99" "$cc" "${flags[@]}" "$tmp/good.c"
expect error "an ignored status" "$cc" "${flags[@]}" "$tmp/unused.c"
grep -q "unused-result\|warn_unused_result" "$tmp/log" || { echo "check_attributes: no unused-result diagnostic" >&2; fail=1; }
expect error "a literal NULL for a nonnull argument" "$cc" "${flags[@]}" "$tmp/null.c"
grep -q "nonnull" "$tmp/log" || { echo "check_attributes: no nonnull diagnostic" >&2; fail=1; }
# A compiler without GNU attributes: the macros expand to nothing and the same code compiles.
expect ok "no GNU attributes" "$cc" "${flags[@]}" -U__GNUC__ -U__clang__ -Wno-builtin-macro-redefined \
    "$tmp/unused.c"
if command -v c++ >/dev/null; then
    expect ok "headers as C++" c++ -std=c++11 -Wall -Wextra -Werror -c -o /dev/null -I "$inc" -x c++ "$tmp/good.c"
fi
[ "$fail" = 0 ] && echo "check_attributes: ok"
exit "$fail"
