#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against a real PostgreSQL and real
# SQLite files with real components built from plugins/. Ends with one line totalling every
# test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
scripts/ensure-postgres.sh
# A delayed standby for the replication-lag test, stopped again when the tests end.
scripts/standby.sh start
trap 'scripts/standby.sh stop' EXIT
scripts/build-components.sh
cargo build --quiet -p wasmig --bin wasmig
output=$(mktemp)
trap 'rm -f "$output"; scripts/standby.sh stop' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$output" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$output"
exit "$status"
