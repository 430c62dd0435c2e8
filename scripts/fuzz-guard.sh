#!/usr/bin/env bash
# Fuzzes the PostgreSQL guard (host/fuzz, target `guard`) for FUZZ_SECONDS (default 300).
# Not part of CI. cargo-fuzz's instrumentation flags are nightly-only: with the stable
# toolchain they are unlocked with RUSTC_BOOTSTRAP=1, and no sanitizer runtime is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd host/fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none guard corpus/guard -- -max_total_time="${FUZZ_SECONDS:-300}" -max_len=512
