#!/usr/bin/env bash
# Benchmark: `wasmig verify-artifacts` on a project of 300 migrations including a 20 MB
# component, signed by two trusted keys, beside the floor of reading the same files
# (cat > /dev/null), in one run. Prints the medians of RUNS runs and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-15}
cargo build --quiet --release -p wasmig --bin wasmig
wasmig=$PWD/target/release/wasmig
work=$PWD/target/bench-verify-artifacts
rm -rf "$work" && mkdir -p "$work/project"
project=$work/project
for i in $(seq 1 299); do
    dir=$(printf '%s/%04d_step_%d' "$project" "$i" "$i")
    mkdir -p "$dir"
    printf 'CREATE TABLE t%d (id BIGINT PRIMARY KEY, payload TEXT);\nCREATE INDEX t%d_payload ON t%d (payload);\n' "$i" "$i" "$i" > "$dir/up.sql"
    printf 'DROP TABLE t%d;\n' "$i" > "$dir/down.sql"
    printf 'SELECT count(*) >= 0 FROM t%d;\n' "$i" > "$dir/verify.sql"
done
component=$project/0300_big_component
mkdir -p "$component"
# Hashing does not look inside a component: 20 MB of bytes stand in for a large Python guest.
head -c $((20 * 1024 * 1024)) /dev/urandom > "$component/migration.wasm"
printf 'kind = "component"\n' > "$component/migration.toml"
"$wasmig" keygen --out "$work/a.key" > /dev/null
"$wasmig" keygen --out "$work/b.key" > /dev/null
{
    printf '[trust]\nrequire_signatures = true\nthreshold = 2\n'
    for key in a b; do
        printf '[[trust.keys]]\nname = "%s"\npublic_key = "%s"\n' "$key" "$(tail -n 1 "$work/$key.key.pub")"
    done
} > "$project/wasmig.toml"
"$wasmig" -q hash -p "$project" > /dev/null
"$wasmig" -q sign -p "$project" --key "$work/a.key" > /dev/null
"$wasmig" -q sign -p "$project" --key "$work/b.key" > /dev/null
"$wasmig" -q verify-artifacts -p "$project" > /dev/null

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
time_ms() { local start end; start=$(date +%s%N); "$@" > /dev/null; end=$(date +%s%N); echo $(((end - start) / 1000000)); }
read_all() { find "$project" -type f -exec cat {} + > /dev/null; }

verify_times=() read_times=()
for _ in $(seq 1 "$runs"); do
    read_times+=("$(time_ms read_all)")
    verify_times+=("$(time_ms "$wasmig" -q verify-artifacts -p "$project")")
done
verify=$(printf '%s\n' "${verify_times[@]}" | median)
floor=$(printf '%s\n' "${read_times[@]}" | median)
files=$(find "$project" -type f | wc -l)
bytes=$(du -sb "$project" | cut -f1)
echo "project: 300 migrations, $files files, $bytes bytes, 2 signatures (threshold 2)"
echo "verify-artifacts median of $runs: ${verify} ms"
echo "read the same files (cat) median of $runs: ${floor} ms"
awk -v v="$verify" -v f="$floor" 'BEGIN { if (f > 0) printf "ratio verify-artifacts / read: %.1fx\n", v / f }'
