#!/usr/bin/env bash
# Adds the wasm32-wasip2 target (components are built for it) when the toolchain lacks it.
set -euo pipefail
if ! rustup target list --installed | grep -qx 'wasm32-wasip2'; then
    echo "adding the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi
