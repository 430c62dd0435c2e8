#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against a real PostgreSQL and real
# SQLite files with real components built from plugins/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
scripts/build-components.sh
cargo build --quiet -p wasmig --bin wasmig
cargo test --workspace "$@"
