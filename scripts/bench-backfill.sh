#!/usr/bin/env bash
# The 1,000,000-row backfill benchmark, side by side in one run: plain SQL by key range,
# wasmig (a Rust component, guard on and off) and the Alembic-style Python path (psycopg2,
# installed here into target/bench-venv). Passes its arguments' environment through:
# ROWS, BATCH, ROUNDS, WASMIG_BENCH_POSTGRES.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
scripts/ensure-postgres.sh
scripts/build-components.sh
venv=target/bench-venv
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import psycopg2" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet psycopg2-binary
fi
export WASMIG_BENCH_PYTHON="$PWD/$venv/bin/python"
cargo bench -p wasmig --features unguarded-bench --bench backfill
