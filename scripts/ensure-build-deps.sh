#!/usr/bin/env bash
# Installs what building wasmig needs beyond a Rust toolchain: libclang, which the pg_query
# crate's build uses to bind PostgreSQL's own parser (libpg_query). Debian's libclang-dev,
# installed with apt-get (sudo when not root) when no libclang is found.
set -euo pipefail
# Only libclang itself will do: libclang-cpp (which some images ship alone) is not what
# bindgen loads.
if [[ -n "${LIBCLANG_PATH:-}" ]] || ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1 \
    || ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so'; then
    exit 0
fi
echo "installing libclang-dev (needed to build PostgreSQL's parser)" >&2
sudo_cmd=""
[[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"
$sudo_cmd apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q libclang-dev
