#!/usr/bin/env bash
# Installs the other migration tools the tests take histories over from, into target/peer-tools
# (nothing global): dbmate from the npm registry. Idempotent; prints the folder of their bins.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/peer-tools
if [[ ! -x "$tools/node_modules/.bin/dbmate" ]]; then
    command -v npm >/dev/null || { echo "npm is needed to install dbmate (Debian: apt-get install npm)" >&2; exit 1; }
    mkdir -p "$tools"
    (cd "$tools" && npm install --silent --no-audit --no-fund dbmate@2 >/dev/null)
fi
echo "$PWD/$tools/node_modules/.bin"
