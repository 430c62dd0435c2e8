#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against a real PostgreSQL and real
# SQLite files with real components built from plugins/. Ends with one line totalling every
# test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
scripts/ensure-postgres.sh
# A delayed standby for the replication-lag test, a TLS-only server for the TLS tests and
# PgBouncer in transaction mode for the pooler tests, stopped again when the tests end.
stop_servers() { scripts/standby.sh stop; scripts/tls-postgres.sh stop; scripts/pgbouncer.sh stop; }
scripts/standby.sh start
scripts/tls-postgres.sh start
scripts/pgbouncer.sh start
trap stop_servers EXIT
scripts/build-components.sh
# Other migration tools, for the tests that take their histories over.
scripts/peer-tools.sh >/dev/null
cargo build --quiet -p wasmig --bin wasmig
output=$(mktemp)
trap 'rm -f "$output"; stop_servers' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$output" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$output"
exit "$status"
