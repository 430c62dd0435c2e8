#!/usr/bin/env bash
# `tls-postgres.sh start`: makes sure a TLS-only PostgreSQL answers on 127.0.0.1:5434 for the
# TLS tests. It makes a throwaway CA and a server certificate for the name `localhost` only
# (so that verify-full to 127.0.0.1 must fail), a second CA that signed nothing the server
# shows, and a cluster in /var/tmp/wasmig-tls whose pg_hba.conf accepts TCP only over TLS
# (`hostssl`; `hostnossl` is rejected). Role `wasmig_password` (password `s3cret`) must give
# its password (scram-sha-256) and owns a database of its name; `postgres` is trusted. The CAs are left in
# /var/tmp/wasmig-tls/certs for the tests. `tls-postgres.sh stop` stops the cluster.
set -euo pipefail
# shellcheck source=servers.sh
source "$(dirname "$0")/servers.sh"
host=127.0.0.1
port=5434
root=/var/tmp/wasmig-tls
data=$root/data
certs=$root/certs

bin=$(pg_bin)

stop_cluster() {
    if [[ -d "$data" ]]; then
        as_postgres "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    fi
}
server_action "${1:-start}" stop_cluster
if answers && [[ -f "$certs/ca.crt" ]]; then
    exit 0
fi

echo "starting a TLS-only PostgreSQL on $host:$port" >&2
if [[ -d "$data" ]]; then
    as_postgres "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$root"
install -d -m 755 "$root" "$certs"
install -d -m 700 -o postgres -g postgres "$data"

# A CA, a server certificate it signs for `localhost`, and an unrelated CA.
cd "$certs"
ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=wasmig test CA" \
    -keyout ca.key -out ca.crt "${ca_ext[@]}" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=an unrelated CA" \
    -keyout other-ca.key -out other-ca.crt "${ca_ext[@]}" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile server.ext -out server.crt 2>/dev/null
rm -f ca.key other-ca.key server.csr server.ext ca.srl
cd - >/dev/null

as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
install -m 600 -o postgres -g postgres "$certs/server.crt" "$data/server.crt"
install -m 600 -o postgres -g postgres "$certs/server.key" "$data/server.key"
rm -f "$certs/server.key"
as_postgres sh -c "cat >> '$data/postgresql.conf'" <<CONF
listen_addresses = '$host'
port = $port
unix_socket_directories = '$data'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
shared_buffers = '16MB'
max_connections = 50
CONF
as_postgres sh -c "cat > '$data/pg_hba.conf'" <<HBA
local     all all                            trust
hostssl   all wasmig_password $host/32 scram-sha-256
hostssl   all all             $host/32 trust
hostnossl all all             $host/32 reject
HBA
as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
as_postgres psql -h "$data" -p "$port" -U postgres -qAtc \
    "SET password_encryption = 'scram-sha-256'; CREATE ROLE wasmig_password LOGIN PASSWORD 's3cret'" >/dev/null
# Its own database, named as libpq's default for the role: the tests leave PGDATABASE unset.
as_postgres psql -h "$data" -p "$port" -U postgres -qAtc "CREATE DATABASE wasmig_password OWNER wasmig_password" >/dev/null
answers
