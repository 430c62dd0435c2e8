#!/usr/bin/env bash
# Fuzzes wasmig's parsers of untrusted text (host/fuzz): the PostgreSQL guard (`guard`), the
# project file (`config`), the manifest (`manifest`) and the sum file (`sumfile`).
#
#   scripts/fuzz.sh [TARGET…]     each target for FUZZ_SECONDS (default 300)
#   scripts/fuzz.sh --smoke       every target for FUZZ_SECONDS (default 20): what CI runs
#
# cargo-fuzz's instrumentation flags are nightly-only: with the stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1, and no sanitizer runtime is needed. New inputs go to a
# scratch folder, so the committed seed corpora stay as they are; a crash is written under
# host/fuzz/artifacts/TARGET/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(guard config manifest sumfile)
seconds=${FUZZ_SECONDS:-300}
if [[ "${1:-}" == "--smoke" ]]; then
    shift
    seconds=${FUZZ_SECONDS:-20}
fi
[[ $# -gt 0 ]] && targets=("$@")
scripts/ensure-build-deps.sh
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd host/fuzz
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzzing $target for ${seconds}s" >&2
    status=0
    cargo fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^stat::number_of_executed_units' "$scratch/$target.log" | sed "s/^/$target: /" >&2 || true
    if [[ $status -ne 0 ]]; then
        tail -n 40 "$scratch/$target.log" >&2
        echo "fuzz target $target failed (exit $status); its input is under host/fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
