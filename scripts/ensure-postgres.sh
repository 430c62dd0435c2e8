#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at the tests' address (WASMIG_TEST_POSTGRES, default
# postgres://postgres@127.0.0.1:5432/postgres): starts an installed cluster that is down and,
# in CI (CI=true) or when WASMIG_INSTALL_POSTGRES=1, installs Debian's server first.
set -euo pipefail
host=127.0.0.1
port=5432

answers() { pg_isready -h "$host" -p "$port" -q 2>/dev/null; }

if command -v pg_isready >/dev/null && answers; then
    exit 0
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    if [[ "${CI:-}" == "true" || "${WASMIG_INSTALL_POSTGRES:-}" == "1" ]]; then
        echo "installing PostgreSQL from Debian's packages" >&2
        sudo_cmd=""
        [[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q postgresql postgresql-client
    else
        echo "no PostgreSQL answers at $host:$port and none is installed." >&2
        echo "install one (or rerun with WASMIG_INSTALL_POSTGRES=1), or point WASMIG_TEST_POSTGRES at a server" >&2
        exit 1
    fi
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
config=/etc/postgresql/$version/main
# The tests connect as postgres over TCP without a password: trust local connections.
if ! grep -q '^host all all 127.0.0.1/32 trust' "$config/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$config/pg_hba.conf"
fi
echo "starting PostgreSQL $version" >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 60); do
    answers && exit 0
    sleep 1
done
echo "PostgreSQL $version did not answer at $host:$port within 60 s" >&2
exit 1
