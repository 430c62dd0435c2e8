#!/usr/bin/env bash
# `standby.sh start`: makes sure a streaming standby of the tests' PostgreSQL (127.0.0.1:5432)
# answers on 127.0.0.1:5433, replaying its WAL two seconds late (recovery_min_apply_delay), so
# the backfill test of max_replication_lag_ms waits behind real replication lag. It allows
# replication connections from 127.0.0.1 on the primary, takes a base backup into
# /var/tmp/wasmig-standby and starts it as the postgres user. Run after ensure-postgres.sh.
# `standby.sh stop` stops it (scripts/test.sh does, so benchmarks never share the CPU with it).
set -euo pipefail
# shellcheck source=servers.sh
source "$(dirname "$0")/servers.sh"
host=127.0.0.1
primary=5432
port=5433
data=/var/tmp/wasmig-standby

bin=$(pg_bin)

stop_standby() {
    if [[ -d "$data" ]]; then
        as_postgres "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    fi
}
server_action "${1:-start}" stop_standby
if answers; then
    exit 0
fi

hba=$(psql -h "$host" -p "$primary" -U postgres -Atc "SHOW hba_file")
if ! as_postgres grep -q '^host replication all 127.0.0.1/32 trust' "$hba"; then
    as_postgres sh -c "echo 'host replication all 127.0.0.1/32 trust' >> '$hba'"
    psql -h "$host" -p "$primary" -U postgres -qAtc "SELECT pg_reload_conf()" >/dev/null
fi

echo "starting a delayed standby on $host:$port" >&2
as_postgres "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$data"
install -d -m 700 -o postgres -g postgres "$data"
as_postgres "$bin/pg_basebackup" -h "$host" -p "$primary" -U postgres -D "$data" -R -X stream -c fast
connections=$(psql -h "$host" -p "$primary" -U postgres -Atc "SHOW max_connections")
# Debian keeps a cluster's configuration outside its data folder; the standby gets its own.
as_postgres sh -c "cat > '$data/postgresql.conf'" <<CONF
listen_addresses = '$host'
port = $port
unix_socket_directories = '$data'
hot_standby = on
recovery_min_apply_delay = '2s'
wal_receiver_status_interval = '1s'
# A hot standby needs at least the primary's max_connections.
max_connections = $connections
shared_buffers = '16MB'
CONF
as_postgres sh -c "printf 'local all all trust\nhost all all $host/32 trust\n' > '$data/pg_hba.conf'"
as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
answers
