#!/usr/bin/env bash
# `pgbouncer.sh start`: makes sure PgBouncer answers on 127.0.0.1:6434 in transaction pooling
# mode in front of the tests' PostgreSQL (127.0.0.1:5432), installing Debian's `pgbouncer`
# if it is missing. Its pools are small (4 server connections per database and user), so
# concurrent clients do share server connections, as they do in production. It runs as the
# postgres user from /var/tmp/wasmig-pgbouncer (PgBouncer refuses to run as root).
# `pgbouncer.sh stop` stops it.
set -euo pipefail
# shellcheck source=servers.sh
source "$(dirname "$0")/servers.sh"
host=127.0.0.1
port=6434
dir=/var/tmp/wasmig-pgbouncer

stop_bouncer() {
    if [[ -f "$dir/pgbouncer.pid" ]]; then
        kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
    fi
}
server_action "${1:-start}" stop_bouncer
if answers; then
    exit 0
fi

if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
    echo "installing PgBouncer from Debian's packages" >&2
    sudo_cmd=""
    [[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -q >/dev/null
    # The package starts a system-wide PgBouncer on 6432 where an init system runs; this one
    # is separate from it.
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q pgbouncer >/dev/null
fi
bouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

echo "starting PgBouncer (transaction pooling) on $host:$port" >&2
install -d -m 755 -o postgres -g postgres "$dir"
as_postgres sh -c "cat > '$dir/userlist.txt'" <<USERS
"postgres" ""
"root" ""
USERS
as_postgres sh -c "cat > '$dir/pgbouncer.ini'" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = $host
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 400
max_db_connections = 8
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
as_postgres "$bouncer" -d "$dir/pgbouncer.ini"
for _ in $(seq 1 50); do
    answers && exit 0
    sleep 0.2
done
echo "PgBouncer did not answer on $host:$port; its log:" >&2
tail -n 20 "$dir/pgbouncer.log" >&2 || true
exit 1
