#!/usr/bin/env bash
# 300 small SQL migrations, side by side in one run on PostgreSQL: psql applying the same files
# in one session with a transaction each (the floor), dbmate (npm) and sqlx-cli (crates.io),
# both installed by scripts/peer-tools.sh, and wasmig (a release build). For each: apply all, a
# no-op apply, status, and (psql, sqlx and wasmig) revert all. The tools take turns within each
# round, in an order that rotates from round to round, and the short steps (no-op, status) run
# REPEATS times per round interleaved run by run, so a busy spell on a shared machine falls on
# every tool alike; ratios are medians of ratios paired within a round. The transactions a run
# cost the server (pg_stat_database's commits and rollbacks, as a read that ends in ROLLBACK is
# a round trip too) are read on each step's first run. Environment: MIGRATIONS (300), ROUNDS (5),
# REPEATS (10), WASMIG_BENCH_POSTGRES (an admin URL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-deps.sh
scripts/ensure-postgres.sh
count=${MIGRATIONS:-300}
rounds=${ROUNDS:-5}
repeats=${REPEATS:-10}
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

sql() { PGOPTIONS="-c client_min_messages=warning" psql "$admin" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
transactions() {
    # Backends flush their statistics when they end or within a second; wait for the last.
    sleep 1.2
    sql "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$1'"
}
url_of() { echo "$base/bench_migrations_$1?sslmode=disable"; }

# run TOOL STEP: one run of a step by a tool against its own database, output discarded.
run() {
    local tool=$1 step=$2 url
    url=$(url_of "$tool")
    case $tool/$step in
    psql/apply) psql "$url" -qAtX -v ON_ERROR_STOP=1 -f "$work/psql/up.sql" ;;
    psql/noop) psql "$url" -qAtX -c "SELECT 1" ;;
    psql/status) psql "$url" -qAtX -c "SELECT count(*) FROM pg_tables WHERE tablename LIKE 't\_%'" ;;
    psql/revert) psql "$url" -qAtX -v ON_ERROR_STOP=1 -f "$work/psql/down.sql" ;;
    dbmate/apply | dbmate/noop)
        DATABASE_URL=$url "$dbmate" --migrations-dir "$work/dbmate" --no-dump-schema up ;;
    dbmate/status) DATABASE_URL=$url "$dbmate" --migrations-dir "$work/dbmate" status ;;
    sqlx/apply | sqlx/noop) DATABASE_URL=$url "$sqlx" migrate run --source "$work/sqlx" ;;
    sqlx/status) DATABASE_URL=$url "$sqlx" migrate info --source "$work/sqlx" ;;
    sqlx/revert) DATABASE_URL=$url "$sqlx" migrate revert --target-version 0 --source "$work/sqlx" ;;
    wasmig/apply | wasmig/noop) DATABASE_URL=$url "$wasmig" up --project "$work/wasmig" --quiet ;;
    wasmig/status) DATABASE_URL=$url "$wasmig" status --project "$work/wasmig" --quiet ;;
    wasmig/revert) DATABASE_URL=$url "$wasmig" down --to 0 --project "$work/wasmig" --quiet ;;
    *) return 0 ;;
    esac
}
has_step() { [[ $2 != revert || $1 != dbmate ]]; }  # dbmate's down reverts one migration only

results=$work/results.tsv
: > "$results"
# measure ROUND TOOL STEP COUNT: one timed run; COUNT=1 also reads the transactions it cost,
# with a quiet second either side so no other run's statistics land in its window.
measure() {
    local round=$1 tool=$2 step=$3 count=$4 before=0 after=-1 start end
    [[ $count == 1 ]] && before=$(transactions "bench_migrations_$tool")
    start=$(date +%s%N)
    run "$tool" "$step" >/dev/null 2>&1 || { echo "$tool $step failed" >&2; exit 1; }
    end=$(date +%s%N)
    [[ $count == 1 ]] && after=$(transactions "bench_migrations_$tool")
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$tool" "$step" "$(( (end - start) / 1000 ))" \
        "$(( after - before ))" >> "$results"
}

tools=(psql dbmate sqlx wasmig)
for round in $(seq 1 "$rounds"); do
    # The order rotates each round, so no tool always runs first after a database was made.
    order=("${tools[@]:$(( round % 4 ))}" "${tools[@]:0:$(( round % 4 ))}")
    for tool in "${order[@]}"; do
        sql "DROP DATABASE IF EXISTS bench_migrations_$tool WITH (FORCE)"
        sql "CREATE DATABASE bench_migrations_$tool"
    done
    for tool in "${order[@]}"; do measure "$round" "$tool" apply 1; done
    for step in noop status; do
        for repeat in $(seq 1 "$repeats"); do
            for tool in "${order[@]}"; do
                measure "$round" "$tool" "$step" "$(( repeat == 1 ))"
            done
        done
    done
    for tool in "${order[@]}"; do
        has_step "$tool" revert && measure "$round" "$tool" revert 1
    done
    for tool in "${order[@]}"; do sql "DROP DATABASE bench_migrations_$tool WITH (FORCE)"; done
    echo "round $round of $rounds done" >&2
done

python3 - "$results" "$count" "$rounds" "$repeats" <<'PY'
import statistics, sys
path, count, rounds, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs, xacts = {}, {}
for line in open(path):
    rnd, tool, step, micros, spent = line.split()
    runs.setdefault((tool, step, int(rnd)), []).append(int(micros) / 1000)
    if int(spent) >= 0:
        xacts.setdefault((tool, step), []).append(int(spent))
med = statistics.median
def per_round(tool, step):
    # A round's figure for a step is the median of its repeats.
    return {r: med(v) for (t, s, r), v in runs.items() if t == tool and s == step}
def paired(tool, base, step):
    # The median of ratios taken within each round: a busy spell falls on both tools alike.
    mine, theirs = per_round(tool, step), per_round(base, step)
    return med([mine[r] / theirs[r] for r in mine if r in theirs])
print(f"{count} migrations, {rounds} rounds, {repeats} runs of each short step per round, "
      "tools taking turns; ms as median (min-max) of all runs; ratios as the median of ratios "
      "paired within a round; transactions per run")
print(f"{'step':7} {'tool':7} {'ms':>22} {'x psql':>8} {'x sqlx':>8} {'xacts':>6}")
for step in ["apply", "noop", "status", "revert"]:
    for tool in ["psql", "dbmate", "sqlx", "wasmig"]:
        all_ms = [m for (t, s, _), v in runs.items() if t == tool and s == step for m in v]
        if not all_ms:
            continue
        shown = f"{med(all_ms):.1f} ({min(all_ms):.1f}-{max(all_ms):.1f})"
        vs_sqlx = f"{paired(tool, 'sqlx', step):7.2f}x" if step in ("noop", "status") else ""
        print(f"{step:7} {tool:7} {shown:>22} {paired(tool, 'psql', step):7.2f}x "
              f"{vs_sqlx:>8} {med(xacts[(tool, step)]):>6.0f}")
PY
