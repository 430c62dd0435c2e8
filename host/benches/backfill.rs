//! Benchmark: a backfill of `users.email_lower = lower(email)` on PostgreSQL, side by side in
//! one run:
//!
//! - plain SQL: `UPDATE … WHERE id > $1 AND id <= $2` by key range, one transaction per batch;
//! - wasmig running plugins/lower-email-backfill with the statement guard on;
//! - the same with the guard off (this benchmark's build only), to measure the guard's cost;
//! - wasmig running plugins/lower-email-set-based (guard on), whose batch is one set-based
//!   statement: the runner's own cost per batch, without moving rows through a component;
//! - wasmig with several workers in the process (WORKERS, default 4; the table split into 8
//!   chunks by id, the split timed too), each on its own connection;
//! - plain SQL on two connections, each taking every other range, for context: how much of
//!   the two workers' gain is the server's own parallelism;
//! - the Alembic-style Python path (benches/alembic_backfill.py: fetch, lower() in Python,
//!   `UPDATE … FROM (VALUES …)` via psycopg2's execute_values), when WASMIG_BENCH_PYTHON names
//!   a Python that has psycopg2 (scripts/bench-backfill.sh installs one).
//!
//! Each run starts from a fresh copy of the table; the order rotates between rounds.
//! `scripts/bench-backfill.sh`, with WASMIG_BENCH_POSTGRES (an admin URL), ROWS (default
//! 1,000,000), BATCH (1000), ROUNDS (2), WORKERS (4), and MODES to run only some of them (for a profile),
//! e.g. `MODES=guarded` (names: plain, guarded, unguarded, setbased, workers, plain2, python).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};
use wasmig::{Config, Migrator};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    PlainSql,
    Guarded,
    Unguarded,
    SetBased,
    Workers,
    PlainSqlTwoConnections,
    Python,
}

impl Mode {
    /// The name `MODES` selects it by.
    fn name(self) -> &'static str {
        match self {
            Mode::PlainSql => "plain",
            Mode::Guarded => "guarded",
            Mode::Unguarded => "unguarded",
            Mode::SetBased => "setbased",
            Mode::Workers => "workers",
            Mode::PlainSqlTwoConnections => "plain2",
            Mode::Python => "python",
        }
    }
}

/// The error with the server's message, which tokio-postgres keeps out of its `Display`.
fn describe(error: impl std::error::Error) -> String {
    wasmig::core::error_chain(&error)
}

fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn reset_table(db: &Client) -> Result<(), String> {
    db.batch_execute(
        "DROP TABLE IF EXISTS users, wasmig_history, wasmig_history_backfill, wasmig_history_backfill_chunks,
            wasmig_history_repairs;
         CREATE TABLE users AS SELECT * FROM users_seed;
         ALTER TABLE users ADD PRIMARY KEY (id);",
    )
    .await
    .map_err(describe)?;
    // On its own: VACUUM cannot run inside a batch's implicit transaction.
    db.batch_execute("VACUUM ANALYZE users").await.map_err(describe)
}

/// Batches `first`, `first + step`, … of the key range, each in its own transaction.
async fn plain_sql(db: &Client, rows: i64, batch: i64, first: i64, step: i64) -> Result<(), String> {
    let update =
        db.prepare("UPDATE users SET email_lower = lower(email) WHERE id > $1 AND id <= $2").await.map_err(describe)?;
    let mut after = first * batch;
    while after < rows {
        db.batch_execute("BEGIN").await.map_err(describe)?;
        db.execute(&update, &[&after, &(after + batch)]).await.map_err(describe)?;
        db.batch_execute("COMMIT").await.map_err(describe)?;
        after += batch * step;
    }
    Ok(())
}

/// A project whose one migration backfills with `backfill` as its extra `[backfill]` settings.
fn project(dir: &Path, component: &Path, batch: i64, backfill: &str) -> Result<(), String> {
    let folder = dir.join("0001_lower_email");
    std::fs::create_dir_all(&folder).map_err(describe)?;
    std::fs::write(dir.join("wasmig.toml"), "[limits]\nfuel = 10000000000\n").map_err(describe)?;
    std::fs::write(
        folder.join("migration.toml"),
        format!(
            "kind = \"component\"\n[backfill]\nbatch_size = {batch}\n{backfill}\n\
             [grants]\nread = [\"users\"]\nupdate = [\"users\"]\n"
        ),
    )
    .map_err(describe)?;
    std::fs::copy(component, folder.join("migration.wasm")).map_err(|e| format!("{}: {e}", component.display()))?;
    Ok(())
}

async fn wasmig_backfill(dir: &Path, cache: &Path, url: &str) -> Result<(), String> {
    let mut config = Config::load(dir, Some(url)).map_err(describe)?;
    config.cache_dir = Some(cache.to_owned());
    let migrator = Migrator::open(config).await.map_err(describe)?;
    migrator.up(None).await.map_err(describe)?;
    Ok(())
}

/// Runs the Python peer; returns the time its loop took (its own measurement, which leaves
/// out the interpreter's start-up).
fn python_backfill(python: &Path, url: &str, batch: i64) -> Result<Duration, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/alembic_backfill.py");
    let output = std::process::Command::new(python)
        .arg(&script)
        .arg(url)
        .arg(batch.to_string())
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!("the Python backfill failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let seconds: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("the Python backfill printed no time: {e}"))?;
    Ok(Duration::from_secs_f64(seconds))
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib / 1024)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let admin_url =
        std::env::var("WASMIG_BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (rows, batch, rounds) = (env_number("ROWS", 1_000_000), env_number("BATCH", 1000), env_number("ROUNDS", 2));
    let worker_count = env_number("WORKERS", 4).max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component: PathBuf = root.join("target/wasm32-wasip2/release/lower_email_backfill.wasm");
    let set_based: PathBuf = root.join("target/wasm32-wasip2/release/lower_email_set_based.wasm");
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b).to_owned();
    let url = format!("{base}/wasmig_bench");

    let admin = connect(&admin_url).await?;
    // Separate calls: CREATE DATABASE cannot run inside the implicit transaction of a batch.
    admin.batch_execute("DROP DATABASE IF EXISTS wasmig_bench WITH (FORCE)").await.map_err(describe)?;
    admin.batch_execute("CREATE DATABASE wasmig_bench").await.map_err(describe)?;
    let db = connect(&url).await?;
    db.batch_execute(&format!(
        "CREATE TABLE users_seed AS SELECT i::bigint AS id, 'User' || i || '@Example.COM' AS email, NULL::text AS email_lower
         FROM generate_series(1, {rows}) AS i"
    ))
    .await
    .map_err(describe)?;

    let work = tempfile::tempdir().map_err(describe)?;
    let work_chunked = tempfile::tempdir().map_err(describe)?;
    let work_set_based = tempfile::tempdir().map_err(describe)?;
    let cache_dir = tempfile::tempdir().map_err(describe)?;
    let cache = cache_dir.path().to_owned();
    project(work.path(), &component, batch, "")?;
    project(work_set_based.path(), &set_based, batch, "")?;
    let chunk_rows = (rows / 8).max(1);
    project(
        work_chunked.path(),
        &component,
        batch,
        &format!("table = \"users\"\nkey = \"id\"\nchunk_rows = {chunk_rows}\nworkers = {worker_count}"),
    )?;
    let second = connect(&url).await?;
    // Compile once up front: the runs below measure the backfill, not Cranelift.
    let warm_up = wasmig::sandbox::Sandbox::new(Some(cache.clone())).map_err(describe)?;
    for guest in [&component, &set_based] {
        let bytes = std::fs::read(guest).map_err(|e| format!("{}: {e}", guest.display()))?;
        warm_up.load("warm-up", guest, &bytes).map_err(describe)?;
    }
    // Each run below opens its own sandbox; this one only filled the cache.
    drop(warm_up);

    let python = std::env::var_os("WASMIG_BENCH_PYTHON").map(PathBuf::from);
    let mut modes = vec![
        Mode::PlainSql,
        Mode::Guarded,
        Mode::Unguarded,
        Mode::SetBased,
        Mode::Workers,
        Mode::PlainSqlTwoConnections,
    ];
    if python.is_some() {
        modes.push(Mode::Python);
    } else {
        println!("WASMIG_BENCH_PYTHON is not set: leaving the Python peer out (scripts/bench-backfill.sh sets it)");
    }
    if let Ok(only) = std::env::var("MODES") {
        let wanted: Vec<String> = only.split(',').map(|m| m.trim().to_lowercase()).collect();
        modes.retain(|mode| wanted.iter().any(|w| w == mode.name()));
    }
    let mut times: Vec<(Mode, Vec<Duration>)> = modes.iter().map(|m| (*m, Vec::new())).collect();
    for round in 0..rounds {
        for offset in 0..modes.len() {
            let mode = modes[(offset + round as usize) % modes.len()];
            reset_table(&db).await?;
            wasmig::guard::benchmark::set_guard_off(mode == Mode::Unguarded);
            let started = Instant::now();
            let elapsed = match (mode, &python) {
                (Mode::PlainSql, _) => plain_sql(&db, rows, batch, 0, 1).await.map(|()| started.elapsed())?,
                (Mode::PlainSqlTwoConnections, _) => futures_util::future::try_join(
                    plain_sql(&db, rows, batch, 0, 2),
                    plain_sql(&second, rows, batch, 1, 2),
                )
                .await
                .map(|_| started.elapsed())?,
                (Mode::Guarded | Mode::Unguarded, _) => {
                    wasmig_backfill(work.path(), &cache, &url).await.map(|()| started.elapsed())?
                }
                (Mode::SetBased, _) => {
                    wasmig_backfill(work_set_based.path(), &cache, &url).await.map(|()| started.elapsed())?
                }
                (Mode::Workers, _) => {
                    wasmig_backfill(work_chunked.path(), &cache, &url).await.map(|()| started.elapsed())?
                }
                (Mode::Python, Some(python)) => python_backfill(python, &url, batch)?,
                (Mode::Python, None) => unreachable!("the Python mode runs only when WASMIG_BENCH_PYTHON is set"),
            };
            wasmig::guard::benchmark::set_guard_off(false);
            let wrong = db
                .query_one("SELECT count(*) FROM users WHERE email_lower IS DISTINCT FROM lower(email)", &[])
                .await
                .map_err(describe)?
                .get::<_, i64>(0);
            if wrong != 0 {
                return Err(format!("{mode:?} left {wrong} rows wrong"));
            }
            println!("round {round} {mode:?}: {:.2?} ({:.0} rows/s)", elapsed, rows as f64 / elapsed.as_secs_f64());
            if let Some((_, list)) = times.iter_mut().find(|(m, _)| *m == mode) {
                list.push(elapsed);
            }
        }
    }
    let median = |mode: Mode| -> f64 {
        let mut list = times.iter().find(|(m, _)| *m == mode).map(|(_, l)| l.clone()).unwrap_or_default();
        list.sort();
        list.get(list.len() / 2).map_or(f64::NAN, |d| rows as f64 / d.as_secs_f64())
    };
    let (plain, guarded, unguarded) = (median(Mode::PlainSql), median(Mode::Guarded), median(Mode::Unguarded));
    let (set_based, workers, plain2) =
        (median(Mode::SetBased), median(Mode::Workers), median(Mode::PlainSqlTwoConnections));
    println!("\n{rows} rows, batches of {batch}, median of {rounds} rounds:");
    println!("  plain SQL by key range   {plain:>10.0} rows/s");
    println!("  wasmig, guard on         {guarded:>10.0} rows/s  ({:.2}x plain SQL)", guarded / plain);
    println!("  wasmig, guard off        {unguarded:>10.0} rows/s  ({:.2}x plain SQL)", unguarded / plain);
    println!("  wasmig, set-based guest  {set_based:>10.0} rows/s  ({:.2}x plain SQL)", set_based / plain);
    println!("  wasmig, {worker_count} workers        {workers:>10.0} rows/s  ({:.2}x plain SQL)", workers / plain);
    println!("  plain SQL, 2 connections {plain2:>10.0} rows/s  ({:.2}x plain SQL)", plain2 / plain);
    if python.is_some() {
        let alembic = median(Mode::Python);
        println!("  Alembic-style Python     {alembic:>10.0} rows/s  ({:.2}x plain SQL)", alembic / plain);
        println!("  wasmig (guard on) vs Alembic-style Python: {:.2}x", guarded / alembic);
        println!("  wasmig ({worker_count} workers) vs Alembic-style Python: {:.2}x", workers / alembic);
    }
    println!("  guard cost: {:.1}% of throughput", (1.0 - guarded / unguarded) * 100.0);
    if let Some(rss) = peak_rss_mib() {
        println!("  peak RSS of this process (host and benchmark driver): {rss} MiB");
    }
    admin.batch_execute("DROP DATABASE IF EXISTS wasmig_bench WITH (FORCE)").await.map_err(describe)?;
    Ok(())
}
