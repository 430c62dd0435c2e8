#!/usr/bin/env bash
# Installs the other migration tools the tests take histories over from, into target/peer-tools
# (nothing global): dbmate from the npm registry, alembic (with psycopg2) from PyPI into a
# virtual environment, sqlx-cli from crates.io (built once, a few minutes; its own build folder
# is removed after). Idempotent; prints the folder of dbmate's bin.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/peer-tools
if [[ ! -x "$tools/node_modules/.bin/dbmate" ]]; then
    command -v npm >/dev/null || { echo "npm is needed to install dbmate (Debian: apt-get install npm)" >&2; exit 1; }
    mkdir -p "$tools"
    (cd "$tools" && npm install --silent --no-audit --no-fund dbmate@2 >/dev/null)
fi
if [[ ! -x "$tools/venv/bin/alembic" ]] || ! "$tools/venv/bin/python" -c "import psycopg2" 2>/dev/null; then
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "alembic>=1.13,<2" psycopg2-binary
fi
if [[ ! -x "$tools/bin/sqlx" ]]; then
    CARGO_TARGET_DIR="$PWD/$tools/sqlx-build" cargo install --quiet --locked --root "$tools" \
        --no-default-features --features rustls,postgres,sqlite sqlx-cli@^0.8
    rm -rf "$tools/sqlx-build"
fi
echo "$PWD/$tools/node_modules/.bin"
