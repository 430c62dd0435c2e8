#!/usr/bin/env bash
# Runs the demo project end to end on embedded SQLite: builds the host and the demo's
# components, hashes the project into wasmig.sum and checks it, applies every migration
# (including a component backfill), verifies, and shows status and history. Each run starts
# from a fresh database file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
scripts/build-components.sh
cp target/wasm32-wasip2/release/add_email_domain.wasm migrations/0002_add_email_domain/migration.wasm
cp target/wasm32-wasip2/release/backfill_email_domain.wasm migrations/0003_backfill_email_domain/migration.wasm
cargo build --quiet -p wasmig
rm -f target/wasmig-demo.db target/wasmig-demo.db-wal target/wasmig-demo.db-shm
wasmig=target/debug/wasmig
set -x
"$wasmig" hash --project migrations
"$wasmig" verify-artifacts --project migrations
"$wasmig" status --project migrations
"$wasmig" up --project migrations
"$wasmig" verify --project migrations
"$wasmig" backfill status --project migrations
"$wasmig" status --project migrations
"$wasmig" history --project migrations
