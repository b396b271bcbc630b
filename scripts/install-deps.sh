#!/usr/bin/env bash
# Installs the Debian 12 packages Coffer builds, tests and runs with. Idempotent and quiet when
# everything is already there; run as root (or with sudo available).
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
    libssl-dev libevent-dev libjansson-dev libsqlite3-dev libcurl4-openssl-dev libcmocka-dev
    libsodium-dev libp11-kit-dev libpq-dev postgresql
    awscli python3-boto3 openssl wrk valgrind strace softhsm2
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The AWS SDK for JavaScript v3 the integration tests use for KMS operations newer than Debian's
# CLI and boto3: exactly the versions of tests/js/package-lock.json, once per checkout.
js_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/js"
if [ ! -d "$js_dir/node_modules" ]; then
    if ! command -v npm >/dev/null; then
        # Debian's own Node.js and npm when the machine has none.
        echo "installing: nodejs npm" >&2
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    echo "installing tests/js (npm ci)" >&2
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
