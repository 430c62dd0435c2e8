#!/usr/bin/env bash
# Builds every guest component in plugins/ (release, wasm32-wasip2) into target/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-wasm-target.sh
packages=()
for manifest in plugins/*/Cargo.toml; do
    packages+=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)")
done
cargo build --quiet --release --target wasm32-wasip2 "${packages[@]}"
