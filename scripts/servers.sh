# Helpers for the scripts that run the tests' own servers (standby.sh, tls-postgres.sh,
# pgbouncer.sh). Sourced, after the script sets $host and $port.

# Runs a command as the postgres user, which PostgreSQL and PgBouncer insist on.
as_postgres() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

# Whether a server answers at $host:$port.
answers() { pg_isready -h "$host" -p "$port" -q 2>/dev/null; }

# The newest installed PostgreSQL's bin folder.
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

# `server_action ACTION STOP...`: for `stop`, runs STOP and exits; for `start`, returns so
# the script starts its server; anything else is a usage error.
server_action() {
    local action=$1
    shift
    case "$action" in
        stop)
            "$@"
            exit 0
            ;;
        start) ;;
        *)
            echo "usage: $0 [start|stop]" >&2
            exit 2
            ;;
    esac
}
