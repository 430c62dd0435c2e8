#!/usr/bin/env bash
# 300 small SQL migrations, side by side in one run on PostgreSQL: psql applying the same files
# in one session with a transaction each (the floor), dbmate (npm) and sqlx-cli (crates.io),
# both installed by scripts/peer-tools.sh, and wasmig (a release build). For each: apply all, a
# no-op apply, status, and (psql, sqlx and wasmig) revert all; wall time as the median of ROUNDS rounds with its min and max, and the
# transactions each run cost the server (pg_stat_database's commits and rollbacks, as a read
# that ends in ROLLBACK is a round trip too). Prints one table of ratios
# to psql. Environment: MIGRATIONS (300), ROUNDS (5), WASMIG_BENCH_POSTGRES (an admin URL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
scripts/ensure-postgres.sh
count=${MIGRATIONS:-300}
rounds=${ROUNDS:-5}
admin=${WASMIG_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
base=${admin%/*}
work=target/bench-migrations
cargo build --release --quiet -p wasmig
wasmig=$PWD/target/release/wasmig
scripts/peer-tools.sh >/dev/null
dbmate=$PWD/target/peer-tools/node_modules/.bin/dbmate
sqlx=$PWD/target/peer-tools/bin/sqlx

# The same migrations in each tool's layout: a table and an index each, and its revert.
rm -rf "$work"
mkdir -p "$work/wasmig" "$work/dbmate" "$work/sqlx" "$work/psql"
printf '[history]\ntable = "wasmig_history"\n' > "$work/wasmig/wasmig.toml"
: > "$work/psql/up.sql"
: > "$work/psql/down.sql"
for i in $(seq 1 "$count"); do
    n=$(printf '%04d' "$i")
    up="CREATE TABLE t_$n (id BIGINT PRIMARY KEY, name TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX t_${n}_name ON t_$n (name);"
    down="DROP TABLE t_$n;"
    mkdir -p "$work/wasmig/${n}_t_$n"
    printf '%s\n' "$up" > "$work/wasmig/${n}_t_$n/up.sql"
    printf '%s\n' "$down" > "$work/wasmig/${n}_t_$n/down.sql"
    printf -- '-- migrate:up\n%s\n\n-- migrate:down\n%s\n' "$up" "$down" > "$work/dbmate/2026010100$n""_t_$n.sql"
    printf '%s\n' "$up" > "$work/sqlx/${n}_t_$n.up.sql"
    printf '%s\n' "$down" > "$work/sqlx/${n}_t_$n.down.sql"
    printf 'BEGIN;\n%s\nCOMMIT;\n' "$up" >> "$work/psql/up.sql"
    printf 'BEGIN;\n%s\nCOMMIT;\n' "$down" | cat - "$work/psql/down.sql" > "$work/psql/down.tmp"
    mv "$work/psql/down.tmp" "$work/psql/down.sql"
done
"$wasmig" hash --project "$work/wasmig" --quiet >/dev/null

sql() { psql "$admin" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
transactions() {
    # Backends flush their statistics when they end or within a second; wait for the last.
    sleep 1.2
    sql "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$1'"
}
results=$work/results.tsv
: > "$results"
# measure TOOL STEP DB COMMAND…: one timed run, with the transactions it cost.
measure() {
    local tool=$1 step=$2 db=$3
    shift 3
    local before after start end
    before=$(transactions "$db")
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "$tool $step failed: $*" >&2; exit 1; }
    end=$(date +%s%N)
    after=$(transactions "$db")
    # The two readings' own transactions are the admin database's, not this one's.
    printf '%s\t%s\t%s\t%s\n' "$tool" "$step" "$(( (end - start) / 1000 ))" "$(( after - before ))" >> "$results"
}

for round in $(seq 1 "$rounds"); do
    for tool in psql dbmate sqlx wasmig; do
        db=bench_migrations_$tool
        sql "DROP DATABASE IF EXISTS $db WITH (FORCE)"
        sql "CREATE DATABASE $db"
        # One URL for every tool: the same session (unencrypted on this loopback) for each.
        url="$base/$db?sslmode=disable"
        case $tool in
        psql)
            measure psql apply "$db" psql "$url" -qAtX -v ON_ERROR_STOP=1 -f "$work/psql/up.sql"
            measure psql noop "$db" psql "$url" -qAtX -c "SELECT 1"
            measure psql status "$db" psql "$url" -qAtX -c "SELECT count(*) FROM pg_tables WHERE tablename LIKE 't\_%'"
            measure psql revert "$db" psql "$url" -qAtX -v ON_ERROR_STOP=1 -f "$work/psql/down.sql"
            ;;
        dbmate)
            export DATABASE_URL=$url
            measure dbmate apply "$db" "$dbmate" --migrations-dir "$work/dbmate" --no-dump-schema up
            measure dbmate noop "$db" "$dbmate" --migrations-dir "$work/dbmate" --no-dump-schema up
            measure dbmate status "$db" "$dbmate" --migrations-dir "$work/dbmate" status
            unset DATABASE_URL
            ;;
        sqlx)
            export DATABASE_URL=$url
            measure sqlx apply "$db" "$sqlx" migrate run --source "$work/sqlx"
            measure sqlx noop "$db" "$sqlx" migrate run --source "$work/sqlx"
            measure sqlx status "$db" "$sqlx" migrate info --source "$work/sqlx"
            measure sqlx revert "$db" "$sqlx" migrate revert --target-version 0 --source "$work/sqlx"
            unset DATABASE_URL
            ;;
        wasmig)
            export DATABASE_URL=$url
            measure wasmig apply "$db" "$wasmig" up --project "$work/wasmig" --quiet
            measure wasmig noop "$db" "$wasmig" up --project "$work/wasmig" --quiet
            measure wasmig status "$db" "$wasmig" status --project "$work/wasmig" --quiet
            measure wasmig revert "$db" "$wasmig" down --to 0 --project "$work/wasmig" --quiet
            unset DATABASE_URL
            ;;
        esac
        sql "DROP DATABASE $db WITH (FORCE)"
    done
    echo "round $round of $rounds done" >&2
done

python3 - "$results" "$count" "$rounds" <<'EOF'
import statistics, sys
path, count, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {}
for line in open(path):
    tool, step, micros, commits = line.split()
    runs.setdefault((tool, step), []).append((int(micros) / 1000, int(commits)))
def median(values):
    return statistics.median(values)  # the mean of the two middle values for an even count
print(f"{count} migrations, {rounds} rounds; wall ms as median (min-max); ratio to psql's median; transactions per run")
print(f"{'step':8} {'tool':8} {'ms':>22} {'x psql':>8} {'xacts':>8}")
for step in ["apply", "noop", "status", "revert"]:
    floor = median([ms for ms, _ in runs[("psql", step)]])
    for tool in ["psql", "dbmate", "sqlx", "wasmig"]:
        if (tool, step) not in runs:
            continue
        values = runs[(tool, step)]
        ms = [v[0] for v in values]
        commits = median([v[1] for v in values])
        shown = f"{median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})"
        print(f"{step:8} {tool:8} {shown:>22} {median(ms) / floor:>7.2f}x {commits:>8.0f}")
EOF
