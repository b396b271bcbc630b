#!/usr/bin/env bash
# `coffer encrypt` / `coffer decrypt` throughput through the real binary (not run in CI).
#
# One generated MIB MiB input (default 1024), created once and read once so it sits in the page
# cache, raw AES-256 keyring. For each suite (0x0478, 0x0578) x frame (4096, 65536) x
# {encrypt, decrypt} x {-o - > /dev/null, -o FILE}: REPEAT runs (default 3), median MB/s
# (MB = 10^6 bytes, as `openssl speed` counts; plaintext bytes for both directions), peak RSS
# of the coffer process (/usr/bin/time), and the ratio to the bound measured in the same run.
# Two rates: by wall clock (what a user waits) and by the process's CPU time (user + sys).
# `openssl speed` counts its own user CPU time, so on a shared, loaded machine cpu_x is the
# like-for-like ratio and wall_x also carries the waits for a core; quote the load with it.
#   0x0478: openssl speed -evp aes-256-gcm -bytes FRAME
#   0x0578: 1 / (1/aes + 1/sha384), both `openssl speed -evp ... -bytes FRAME`
# floor_x: the cpu rate over what a bare read(2) + AES-256-GCM loop reaches on the same file
# (build/coffer-read-gcm, bench/read_gcm.c; with SHA-384 combined as above for 0x0578): the
# bound above seals a hot buffer and never pays for bringing the bytes in from memory.
# -o FILE goes through the temporary file, fsync and rename; it is written beside the input
# (DIR, default a fresh directory under /tmp), so its figure includes that file system.
#
#   bash bench/esdk_cli.sh [MIB]          REPEAT=5 BUILD=build DIR=/some/dir
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
repeat=${REPEAT:-3}
build=${BUILD:-build}
coffer=$(realpath "$build/coffer")
[ -x "$coffer" ] || { echo "build first: make build" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (GNU time)" >&2; exit 2; }

work=$(mktemp -d ${DIR:+-p "$DIR"})
trap 'rm -rf "$work"' EXIT
echo "== $(date -u '+%F %T') UTC, $(nproc) cores, load:$(uptime | sed 's/.*load average://')"
echo "   coffer: $coffer (built $(date -r "$coffer" "+%F %T")), $mib MiB input, median of $repeat"

head -c 32 /dev/urandom > "$work/key"
keys=(-w provider=raw-aes "key-file=$work/key" name=bench namespace=bench)
head -c $((mib * 1024 * 1024)) /dev/urandom > "$work/pt"
cat "$work/pt" > /dev/null
bytes=$((mib * 1024 * 1024))

# openssl speed -mr prints "+F:<n>:<name>:<bytes per second>" for the one -bytes size.
ossl() { # ALG BYTES
    openssl speed -mr -seconds 2 -evp "$1" -bytes "$2" 2>/dev/null | awk -F: '/^\+F:/ {printf "%.1f", $4 / 1e6}'
}

# Runs "$@" > /dev/null REPEAT times; prints "wall_MBps cpu_MBps max_rss_MB": medians of the
# runs by wall clock and by the child's CPU time (user + sys), and the largest peak RSS.
measure() {
    local t0 t1 walls=() cpus=() rss=0 r u s
    for _ in $(seq "$repeat"); do
        t0=$(date +%s%N)
        /usr/bin/time -f '%U %S %M' -o "$work/rss" "$@" > /dev/null
        t1=$(date +%s%N)
        read -r u s r < <(tail -1 "$work/rss")
        walls+=("$(awk -v b="$bytes" -v ns=$((t1 - t0)) 'BEGIN {printf "%.1f", b / (ns / 1e9) / 1e6}')")
        cpus+=("$(awk -v b="$bytes" -v u="$u" -v s="$s" 'BEGIN {t = u + s; if (t < 0.01) t = 0.01; printf "%.1f", b / t / 1e6}')")
        [ "$r" -gt "$rss" ] && rss=$r
    done
    med() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
    echo "$(med "${walls[@]}") $(med "${cpus[@]}") $(awk -v r="$rss" 'BEGIN {printf "%.1f", r / 1024}')"
}

floor_bin=$build/coffer-read-gcm
printf '%-7s %-6s %-4s %-7s %9s %9s %9s %6s %6s %7s %7s\n' suite frame dir output wall_MB/s cpu_MB/s bound \
    wall_x cpu_x floor_x rss_MB
for frame in 4096 65536; do
    aes=$(ossl aes-256-gcm "$frame")
    sha=$(ossl sha384 "$frame")
    floor=0
    if [ -x "$floor_bin" ]; then
        floor=$("$floor_bin" "$work/pt" "$frame" | sed -E 's/.*read_gcm_MBps=([0-9.]+).*/\1/')
    fi
    echo "# openssl at $frame-byte blocks: aes-256-gcm $aes MB/s, sha384 $sha MB/s;" \
        "read(2) + aes-256-gcm of the file: $floor MB/s"
    for suite in 0x0478 0x0578; do
        if [ "$suite" = 0x0478 ]; then
            bound=$aes
            fl=$floor
        else
            bound=$(awk -v a="$aes" -v s="$sha" 'BEGIN {printf "%.1f", 1 / (1 / a + 1 / s)}')
            fl=$(awk -v a="$floor" -v s="$sha" 'BEGIN {printf "%.1f", (a > 0 ? 1 / (1 / a + 1 / s) : 0)}')
        fi
        enc=(encrypt "${keys[@]}" --algorithm "$suite" --frame-length "$frame" -S -i "$work/pt")
        dec=(decrypt "${keys[@]}" -S -i "$work/ct")
        "$coffer" "${enc[@]}" -o "$work/ct"
        cat "$work/ct" > /dev/null
        for dir in enc dec; do
            if [ "$dir" = enc ]; then cmd=("${enc[@]}"); else cmd=("${dec[@]}"); fi
            for output in stdout file; do
                if [ "$output" = stdout ]; then
                    read -r wall cpu rss < <(measure "$coffer" "${cmd[@]}" -o -)
                else
                    read -r wall cpu rss < <(measure "$coffer" "${cmd[@]}" -o "$work/out")
                    rm -f "$work/out"
                fi
                awk -v s="$suite" -v f="$frame" -v d="$dir" -v o="$output" -v w="$wall" -v c="$cpu" -v b="$bound" \
                    -v fl="$fl" -v m="$rss" 'BEGIN {printf "%-7s %-6s %-4s %-7s %9.1f %9.1f %9.1f %6.2f %6.2f %7s %7.1f\n",
                        s, f, d, o, w, c, b, w / b, c / b, (fl > 0 ? sprintf("%.2f", c / fl) : "-"), m}'
            done
        done
    done
done
echo "targets: 0x0478 stdout ratio >= 0.85 at 65536, >= 0.8 at 4096; 0x0578 >= 0.8; decrypt >= 0.8; rss < 32 MB"
echo "== load at the end:$(uptime | sed 's/.*load average://')"
