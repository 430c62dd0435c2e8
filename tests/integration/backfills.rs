//! Batched backfills: killed at random instants and resumed with every row processed exactly
//! once, a restart taking a killed run's chunk over at once, a batch rolled back when its lease
//! was taken over mid-flight, out-of-fuel batches halved down to the floor and then a clear
//! error, a concurrent writer, two workers sharing one chunked backfill, pause and resume, and
//! the expand/contract gate. The `visit-backfill` guest adds one to `items.visits` for every
//! row it writes, which is how "exactly once" is checked.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmig::{BackfillEvent, BackfillState, Error, ErrorKind, Observer, Version};
use wasmig_tests::json::{Event, JsonRun};
use wasmig_tests::{Backend, Inspector, Project, TestDb, wasmig_binary};

use crate::on_both_backends;

const ITEMS_WRONG: &str = "SELECT count(*) FROM items WHERE email_lower IS NULL OR email_lower <> lower(email)";
const ROWS_DONE: &str = "SELECT COALESCE(CAST(sum(rows_done) AS BIGINT), 0) FROM wasmig_history_backfill_chunks";

/// `items` with `count` rows, each needing `spin` loop iterations of the guest.
pub(crate) fn items_migration(count: u32, spin: u32) -> String {
    format!(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, email TEXT NOT NULL, email_lower TEXT,
                             visits INTEGER NOT NULL DEFAULT 0, spin BIGINT NOT NULL DEFAULT 0);
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count})
         INSERT INTO items (id, email, spin) SELECT n, 'Item' || n || '@Example.COM', {spin} FROM seq;"
    )
}

/// A project whose 0002 backfills `items` with `backfill` as its `[backfill]` settings. Leases
/// last one second, so a killed worker's chunk is taken over quickly.
pub(crate) fn items_project(rows: u32, spin: u32, backfill: &str, fuel: u64) -> Project {
    let project = Project::new();
    project.write(
        "wasmig.toml",
        &format!("[limits]\nfuel = {fuel}\nmemory_mib = 64\ntimeout_secs = 1\n[backfill]\nlease_secs = 1\n"),
    );
    project.sql("0001_items", &items_migration(rows, spin), Some("DROP TABLE items;"), None).component(
        "0002_visit_items",
        "visit-backfill",
        &format!("[backfill]\n{backfill}\n[grants]\nread = [\"items\"]\nupdate = [\"items\"]\n"),
    );
    project
}

fn spawn_wasmig(project: &Project, db: &TestDb, args: &[&str]) -> Child {
    Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-backfill-test-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wasmig")
}

fn finish(child: Child, what: &str) {
    let output = child.wait_with_output().expect("wait for wasmig");
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Progress committed so far (zero before the progress tables exist).
async fn rows_done(inspect: &Inspector) -> i64 {
    if inspect.table_exists("wasmig_history_backfill_chunks").await { inspect.count(ROWS_DONE).await } else { 0 }
}

/// A small deterministic generator: the seed is printed, so a failing run can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

async fn killed_at_random_instants_then_every_row_once(backend: Backend) {
    const ROWS: u32 = 6000;
    let db = TestDb::new(backend).await;
    let project = items_project(
        ROWS,
        0,
        "batch_size = 100\ntable = \"items\"\nkey = \"id\"\nchunk_rows = 1500\npause_ms = 5",
        2_000_000_000,
    );
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    println!("random seed {seed}");
    let mut random = Random(seed);
    let inspect = db.inspect().await;
    let mut kills = 0;
    for _ in 0..4 {
        let before = rows_done(&inspect).await;
        let mut child = spawn_wasmig(&project, &db, &["up"]);
        // Kill only once this run has committed a batch of its own, at a random instant after.
        let deadline = Instant::now() + Duration::from_secs(30);
        while rows_done(&inspect).await <= before && Instant::now() < deadline {
            if child.try_wait().expect("poll wasmig").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(random.below(60))).await;
        if child.try_wait().expect("poll wasmig").is_none() {
            child.kill().expect("kill -9 wasmig");
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(kills >= 3, "the backfill ended before the kills landed ({kills} kills); make it longer");
    let done_before_last_run = rows_done(&inspect).await;
    assert!(done_before_last_run < i64::from(ROWS), "the kills should leave work to resume");
    finish(spawn_wasmig(&project, &db, &["up"]), "the run after the kills");

    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "every row exactly once");
    assert_eq!(inspect.count(ITEMS_WRONG).await, 0);
    assert_eq!(inspect.count(ROWS_DONE).await, i64::from(ROWS), "progress counts every row once");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill WHERE state = 'done'").await, 1);
}
on_both_backends!(backfill_killed_at_random_instants, killed_at_random_instants_then_every_row_once);

async fn restart_takes_over_a_killed_runs_chunk_at_once(backend: Backend) {
    const ROWS: u32 = 3000;
    let db = TestDb::new(backend).await;
    let project = items_project(
        ROWS,
        0,
        "batch_size = 100\ntable = \"items\"\nkey = \"id\"\nchunk_rows = 1000\npause_ms = 20",
        2_000_000_000,
    );
    // A lease far longer than the test may wait: only taking the chunk over lets it finish.
    project.write(
        "wasmig.toml",
        "[limits]\nfuel = 2000000000\nmemory_mib = 64\ntimeout_secs = 1\n[backfill]\nlease_secs = 3600\n",
    );
    let inspect = db.inspect().await;
    let mut killed = spawn_wasmig(&project, &db, &["up"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows_done(&inspect).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (chunks, gone) = lease_holders(&project, &db);
    assert_eq!((chunks, gone), (vec![1], vec![false]), "a live worker holds its chunk");
    killed.kill().expect("kill -9 wasmig");
    let _ = killed.wait();
    let held = "SELECT count(*) FROM wasmig_history_backfill_chunks WHERE leased_by IS NOT NULL AND NOT done";
    assert_eq!(inspect.count(held).await, 1, "the killed run held the chunk it was in");
    assert_eq!(lease_holders(&project, &db), (vec![1], vec![true]), "backfill status says the killed worker is gone");
    let human = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .args(["backfill", "status", "2"])
        .output()
        .expect("run wasmig");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("is gone (its process on this machine has ended)"), "{text}");

    let mut restart = spawn_wasmig(&project, &db, &["up"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while restart.try_wait().expect("poll wasmig").is_none() {
        if Instant::now() > deadline {
            restart.kill().expect("kill wasmig");
            panic!("the restart waited for the killed run's lease instead of taking its chunk over");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    finish(restart, "the restart");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "every row exactly once");
    assert_eq!(inspect.count(ROWS_DONE).await, i64::from(ROWS));
}
on_both_backends!(backfill_restart_takes_over_dead_workers_chunk, restart_takes_over_a_killed_runs_chunk_at_once);

/// Ctrl-C (SIGINT) or SIGTERM stops `up` after the current batch: exit 130 with how to go
/// on, the backfill left running with exactly its committed batches done, the stop in the
/// audit trail, and the next `up` finishing it with every row once.
async fn a_signal_stops_the_backfill_after_its_current_batch(backend: Backend) {
    const ROWS: u32 = 4000;
    let db = TestDb::new(backend).await;
    let project =
        items_project(ROWS, 0, "batch_size = 50\npause_ms = 50\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    let inspect = db.inspect().await;
    let running = spawn_wasmig(&project, &db, &["up"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows_done(&inspect).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let signal = match backend {
        Backend::Postgres => "-INT",
        Backend::Sqlite => "-TERM",
    };
    let sent = Command::new("kill").args([signal, &running.id().to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill {signal}");
    let output = running.wait_with_output().expect("wait for wasmig");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped on request (Ctrl-C or SIGTERM) after the last committed batch"), "{stderr}");
    assert!(stderr.contains("`wasmig backfill run 0002` or `wasmig up` goes on from there"), "{stderr}");
    let done = inspect.count(ROWS_DONE).await;
    assert!(done > 0 && done < i64::from(ROWS), "stopped part-way: {done} rows");
    assert_eq!(
        inspect.count("SELECT count(*) FROM items WHERE visits = 1").await,
        done,
        "each committed batch counted"
    );
    let running_state = "SELECT count(*) FROM wasmig_history_backfill WHERE state = 'running'";
    assert_eq!(inspect.count(running_state).await, 1, "the backfill stays running for the next run");
    let stopped = "SELECT count(*) FROM wasmig_history_audit WHERE action = 'backfill_stopped'";
    assert_eq!(inspect.count(stopped).await, 1, "the stop is in the audit trail");
    finish(spawn_wasmig(&project, &db, &["up"]), "the run after the stop");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "every row exactly once");
}
on_both_backends!(backfill_stopped_by_a_signal, a_signal_stops_the_backfill_after_its_current_batch);

/// The chunks each lease holder of backfill 2 holds and whether it is gone, from
/// `backfill status --format json`.
fn lease_holders(project: &Project, db: &TestDb) -> (Vec<i64>, Vec<bool>) {
    let output = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .args(["backfill", "status", "2", "--format", "json"])
        .output()
        .expect("run wasmig");
    let run = JsonRun::parse(&output.stdout);
    let workers = run.result.data["backfills"][0]["workers"].as_array().cloned().unwrap_or_default();
    let chunks = workers.iter().filter_map(|w| w["chunks"].as_i64()).collect();
    let gone = workers.iter().filter_map(|w| w["gone"].as_bool()).collect();
    (chunks, gone)
}

/// A worker that is slow, not dead: its chunk's lease passes to another worker while a batch
/// is in flight, so that batch must roll back instead of committing rows the new holder will
/// process again. PostgreSQL only: on SQLite the batch's write lock keeps anyone from taking
/// the lease mid-batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_lease_was_taken_over_rolls_back() {
    let db = TestDb::postgres().await;
    // Ten rows per batch, each spinning long enough that a batch lasts a good part of a second.
    let project = items_project(30, 5_000_000, "batch_size = 10\ntable = \"items\"\nkey = \"id\"", 0);
    project.write(
        "wasmig.toml",
        "[limits]\nfuel = 100000000000\nmemory_mib = 64\ntimeout_secs = 60\n[backfill]\nlease_secs = 60\n",
    );
    let inspect = db.inspect().await;
    let mut slow = spawn_wasmig(&project, &db, &["up"]);
    let stderr = slow.stderr.take().expect("stderr is piped");
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let leased = "SELECT count(*) FROM wasmig_history_backfill_chunks WHERE leased_by IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(inspect.table_exists("wasmig_history_backfill_chunks").await && inspect.count(leased).await == 1) {
        assert!(Instant::now() < deadline, "the backfill never leased its chunk");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Another worker takes the chunk over while the first batch is still spinning.
    inspect
        .execute(
            "UPDATE wasmig_history_backfill_chunks
             SET leased_by = 'elsewhere:1:0.thief', lease_expires_ms = lease_expires_ms + 3600000",
        )
        .await;
    let mut seen = Vec::new();
    let lost = loop {
        match log.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("lease lost to another worker") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    slow.kill().expect("kill the slow worker");
    let _ = slow.wait();
    assert!(lost, "the slow worker should have lost its lease; its log:\n{}", seen.join("\n"));
    assert_eq!(inspect.count("SELECT COALESCE(sum(visits), 0) FROM items").await, 0, "the lost batch rolled back");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill_chunks WHERE cursor IS NOT NULL").await, 0);

    // The new holder gives the chunk up; the next run does every row, once.
    inspect.execute("UPDATE wasmig_history_backfill_chunks SET leased_by = NULL, lease_expires_ms = NULL").await;
    inspect.execute("UPDATE items SET spin = 0").await;
    finish(spawn_wasmig(&project, &db, &["up"]), "the run after the takeover");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "every row exactly once");
}

/// Collects a run's backfill events.
#[derive(Default)]
struct Events(Mutex<Vec<BackfillEvent>>);

impl Observer for Events {
    fn on_backfill(&self, event: &BackfillEvent) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event.clone());
        }
    }
}

impl Events {
    /// What `pick` takes from each recorded event it matches.
    fn picked<T>(&self, pick: impl FnMut(BackfillEvent) -> Option<T>) -> Vec<T> {
        let events = self.0.lock().map(|e| e.clone()).unwrap_or_default();
        events.into_iter().filter_map(pick).collect()
    }

    fn waiting_reasons(&self) -> Vec<String> {
        self.picked(|event| match event {
            BackfillEvent::Waiting { reason, .. } => Some(reason),
            _ => None,
        })
    }

    fn halvings(&self) -> Vec<(u32, u32)> {
        self.picked(|event| match event {
            BackfillEvent::Halved { from, to, .. } => Some((from, to)),
            _ => None,
        })
    }
}

// A row costs the guest ~127k fuel at spin 10,000: a 200-row batch needs ~25M, 100 rows ~13M,
// 50 rows ~6.4M. With 8M of fuel per call only batches of 50 fit.
const SPIN: u32 = 10_000;
const FUEL_FOR_ABOUT_60_ROWS: u64 = 8_000_000;

async fn out_of_fuel_batches_are_halved(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(400, SPIN, "batch_size = 200\nmin_batch_size = 25", FUEL_FOR_ABOUT_60_ROWS);
    let events = Arc::new(Events::default());
    let migrator = project.migrator(&db).await.with_observer(events.clone());
    migrator.up(None).await.expect("the halved batches fit the fuel");
    let halvings = events.halvings();
    assert_eq!(&halvings[..2], &[(200, 100), (100, 50)], "halved twice at first: {halvings:?}");
    let inspect = db.inspect().await;
    assert_eq!(
        inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await,
        0,
        "rolled-back batches left nothing"
    );
    assert_eq!(inspect.count(ROWS_DONE).await, 400);
}
on_both_backends!(backfill_out_of_fuel_halves, out_of_fuel_batches_are_halved);

async fn out_of_fuel_at_the_floor_names_limit_batch_and_cursor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(400, SPIN, "batch_size = 200\nmin_batch_size = 100", FUEL_FOR_ABOUT_60_ROWS);
    let failure = project.migrator(&db).await.up(None).await.expect_err("even the floor needs more fuel");
    let message = failure.error.to_string();
    assert_eq!(failure.error.kind(), ErrorKind::Sandbox, "{message}");
    assert!(matches!(failure.error, Error::BackfillAtFloor { size: 100, batch: 1, chunk: 0, .. }), "{message}");
    for part in ["0002_visit_items", "fuel limit of 8000000 (limits.fuel)", "floor of 100 rows", "batch 1 of chunk 0"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(message.contains("burnt 16000000 fuel"), "the fuel spent so far: {message}");
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 0").await, 0, "nothing committed");
    assert_eq!(inspect.count(ROWS_DONE).await, 0);
    assert_eq!(
        inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '2'").await,
        1,
        "the schema step stays"
    );
}
on_both_backends!(backfill_out_of_fuel_at_floor, out_of_fuel_at_the_floor_names_limit_batch_and_cursor);

/// Changes emails (writing their `email_lower` too, as the application does during an
/// expand/contract change) and inserts rows until `stop`; returns the ids it changed.
async fn write_concurrently(db: &TestDb, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<i64> {
    let mut changed = Vec::new();
    let mut random = Random(42);
    let mut next_id = 100_000;
    let inspect = db.inspect().await;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id = 1 + random.below(3000) as i64;
        let email = format!("Changed{id}.{}@Example.ORG", random.below(1000));
        inspect
            .execute(&format!(
                "UPDATE items SET email = '{email}', email_lower = '{}' WHERE id = {id};
                 INSERT INTO items (id, email, email_lower) VALUES ({next_id}, 'New{next_id}@X.COM', 'new{next_id}@x.com');",
                email.to_lowercase()
            ))
            .await;
        changed.push(id);
        next_id += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    changed
}

async fn concurrent_writer_keeps_writing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project =
        items_project(3000, 0, "batch_size = 100\ntable = \"items\"\nkey = \"id\"\npause_ms = 20", 2_000_000_000);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = db.url.clone();
    let migrator = project.migrator(&db).await;
    migrator.up(Some(Version(1))).await.expect("the items table");
    let writer_db = TestDb::existing(backend, &url);
    // On a thread of its own: a SQLite connection cannot move between a runtime's threads.
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(write_concurrently(&writer_db, stop))
        })
    };
    let result = migrator.up(None).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changed = writer.join().expect("the writer ran");
    result.expect("the backfill finishes beside the writer");
    assert!(changed.len() > 10, "the writer wrote during the backfill ({} changes)", changed.len());
    let inspect = db.inspect().await;
    assert_eq!(inspect.count(ITEMS_WRONG).await, 0, "every row, changed or new, has the right email_lower");
    let untouched_twice = inspect.count("SELECT count(*) FROM items WHERE visits > 1").await;
    assert_eq!(untouched_twice, 0, "no row processed twice");
    let ids: Vec<String> = changed.iter().map(ToString::to_string).collect();
    let missed = inspect
        .count(&format!(
            "SELECT count(*) FROM items WHERE id <= 3000 AND visits <> 1 AND id NOT IN ({})",
            ids.join(",")
        ))
        .await;
    assert_eq!(missed, 0, "every row the writer left alone was processed exactly once");
}
on_both_backends!(backfill_beside_a_concurrent_writer, concurrent_writer_keeps_writing);

async fn two_workers_share_one_backfill(backend: Backend) {
    const ROWS: u32 = 4000;
    let db = TestDb::new(backend).await;
    let project = items_project(
        ROWS,
        0,
        "batch_size = 100\ntable = \"items\"\nkey = \"id\"\nchunk_rows = 500\npause_ms = 20",
        2_000_000_000,
    );
    let first = spawn_wasmig(&project, &db, &["up"]);
    let inspect = db.inspect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows_done(&inspect).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = spawn_wasmig(&project, &db, &["backfill", "run", "2"]);
    finish(first, "worker 1 (wasmig up)");
    finish(second, "worker 2 (wasmig backfill run 2)");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "no chunk done twice");
    assert_eq!(inspect.count(ROWS_DONE).await, i64::from(ROWS));
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill_chunks").await, 8);
    let workers = inspect.count("SELECT count(DISTINCT leased_by) FROM wasmig_history_backfill_chunks").await;
    assert_eq!(workers, 2, "both workers finished chunks");
}
on_both_backends!(backfill_two_workers, two_workers_share_one_backfill);

/// `--workers 3` runs three workers in one process on PostgreSQL, each on its own connection,
/// sharing the chunks with no chunk done twice; SQLite, one writer at a time, runs one.
async fn one_process_runs_several_workers(backend: Backend) {
    const ROWS: u32 = 3000;
    let db = TestDb::new(backend).await;
    let project =
        items_project(ROWS, 0, "batch_size = 100\ntable = \"items\"\nkey = \"id\"\nchunk_rows = 250", 2_000_000_000);
    let output = spawn_wasmig(&project, &db, &["up", "--workers", "3"]).wait_with_output().expect("run wasmig up");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "no chunk done twice");
    assert_eq!(inspect.count(ROWS_DONE).await, i64::from(ROWS));
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill_chunks WHERE NOT done").await, 0);
    let workers = inspect.count("SELECT count(DISTINCT leased_by) FROM wasmig_history_backfill_chunks").await;
    let expected = if backend == Backend::Postgres { 3 } else { 1 };
    assert_eq!(workers, expected, "workers that finished chunks");
    if backend == Backend::Postgres {
        let processes = "SELECT count(DISTINCT split_part(leased_by, ':', 2)) FROM wasmig_history_backfill_chunks";
        assert_eq!(inspect.count(processes).await, 1, "all three workers ran in the one process");
    }
}
on_both_backends!(backfill_workers_in_one_process, one_process_runs_several_workers);

async fn pause_resume_and_the_expand_contract_gate(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(500, 0, "batch_size = 100\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    project.sql("0003_contract", "UPDATE items SET email = email;", None, None);
    project.write("0003_contract/migration.toml", "kind = \"sql\"\nneeds_backfills = [2]\n");
    let migrator = project.migrator(&db).await;
    migrator.up(Some(Version(2))).await.expect("up to the backfill");
    let inspect = db.inspect().await;
    // Rewind as if the run died after three batches, then pause it.
    inspect.execute("UPDATE items SET visits = 0, email_lower = NULL WHERE id > 300").await;
    inspect
        .execute(
            "UPDATE wasmig_history_backfill_chunks SET cursor = '300', rows_done = 300, batches = 3, done = FALSE, leased_by = NULL;
             UPDATE wasmig_history_backfill SET state = 'running', finished_ms = NULL;",
        )
        .await;
    migrator.backfill_pause(Version(2)).await.expect("pause");
    let status = migrator.backfill_status().await.expect("status");
    assert_eq!(status[0].state, BackfillState::Paused);
    assert_eq!((status[0].rows_done, status[0].rows_estimate), (300, Some(500)));
    assert_eq!(status[0].percent().map(|p| p.round()), Some(60.0));

    let failure = project.migrator(&db).await.up(None).await.expect_err("0003 needs the paused backfill");
    assert_eq!(failure.error.kind(), ErrorKind::BackfillUnfinished);
    let message = failure.error.to_string();
    assert!(message.contains("0003_contract needs the backfill of 0002_visit_items"), "{message}");
    assert!(message.contains("paused"), "{message}");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '3'").await, 0);
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits = 0").await, 200, "a paused backfill waits");

    let paused_run = spawn_wasmig(&project, &db, &["backfill", "run", "2"]).wait_with_output().expect("run");
    assert_eq!(paused_run.status.code(), Some(10), "{}", String::from_utf8_lossy(&paused_run.stderr));

    migrator.backfill_resume(Version(2)).await.expect("resume");
    let report = project.migrator(&db).await.up(None).await.expect("the resumed backfill finishes, then 0003");
    assert_eq!(report.steps.iter().find_map(|s| s.backfill), Some((200, 3)));
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '3'").await, 1);
}
on_both_backends!(backfill_pause_resume_and_gate, pause_resume_and_the_expand_contract_gate);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_json_events_and_status() {
    let db = TestDb::sqlite();
    let project = items_project(300, 0, "batch_size = 100\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    let output = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(["up", "--database", &db.url, "--format", "json"])
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-backfill-test-cache"))
        .output()
        .expect("run wasmig up");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let run = JsonRun::parse(&output.stdout);
    let batches: Vec<(i64, Option<i64>)> = run
        .events
        .iter()
        .filter_map(|event| match event {
            Event::BackfillBatch { rows_done, rows_estimate, .. } => Some((*rows_done, *rows_estimate)),
            _ => None,
        })
        .collect();
    assert!(matches!(
        run.events.iter().find(|e| !matches!(e, Event::Step { .. })),
        Some(Event::BackfillStarted { .. })
    ));
    assert_eq!(batches.len(), 4, "three full batches and the empty last one: {:?}", run.events);
    assert_eq!(batches.last(), Some(&(300, Some(300))));
    assert!(run.events.iter().any(|e| matches!(e, Event::BackfillFinished { rows: 300, .. })), "{:?}", run.events);
    let actions: Vec<&str> = run.result.committed.iter().map(|step| step.action.as_str()).collect();
    assert_eq!(actions, ["applied", "applied", "backfilled"]);
    assert_eq!(run.result.committed[2].rows, Some(300));

    let status = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(["backfill", "--database", &db.url, "status", "2", "--format", "json"])
        .output()
        .expect("run wasmig backfill status");
    let status = JsonRun::parse(&status.stdout);
    assert_eq!(status.result.command, "backfill status");
    assert_eq!(status.result.data["backfills"][0]["state"], "done");
    assert_eq!(status.result.data["backfills"][0]["rows_done"], 300);
}

/// The rows/s ceiling holds the backfill back (a lower bound on its time, which sleeping
/// guarantees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_throttled_by_rate() {
    let db = TestDb::postgres().await;
    let project = items_project(600, 0, "batch_size = 100\nmax_rows_per_second = 1000", 2_000_000_000);
    let migrator = project.migrator(&db).await;
    migrator.up(Some(Version(1))).await.expect("the items table");
    let started = Instant::now();
    migrator.up(None).await.expect("a throttled backfill still finishes");
    let elapsed = started.elapsed();
    // 600 rows at 1,000 rows/s: the ceiling sleeps after each of the first six batches.
    assert!(elapsed >= Duration::from_millis(550), "the rate ceiling was not applied ({elapsed:?})");
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0);
}

/// The delayed standby `scripts/standby.sh start` starts: it replays the primary's WAL two
/// seconds late.
const STANDBY: &str = "postgres://postgres@127.0.0.1:5433/postgres";

/// Behind a standby that replays two seconds late, a backfill bounded to one second of lag
/// waits before some of its batches until the standby catches up, and still does every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_waits_behind_a_lagging_standby() {
    let db = TestDb::postgres().await;
    if let Err(error) = tokio_postgres::connect(STANDBY, tokio_postgres::NoTls).await {
        panic!(
            "no standby answers at {STANDBY} ({error}); `scripts/standby.sh start` starts one (scripts/test.sh does)"
        );
    }
    let project =
        items_project(1000, 0, "batch_size = 100\npause_ms = 300\nmax_replication_lag_ms = 1000", 2_000_000_000);
    let events = Arc::new(Events::default());
    let migrator = project.migrator(&db).await.with_observer(events.clone());
    // Creating the table is a write the standby replays two seconds late, during the backfill.
    migrator.up(Some(Version(1))).await.expect("the items table");
    migrator.up(None).await.expect("the backfill finishes once the standby catches up");
    let waits = events.waiting_reasons();
    assert!(
        waits.iter().any(|reason| reason.contains("replication lag")),
        "the backfill never waited for the standby: {waits:?}"
    );
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0);
}

/// Runs the cursor-misbehaving guest in `mode`; returns the error its backfill stopped with.
async fn misbehaving_cursor(backend: Backend, mode: &str, backfill: &str) -> Error {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    let setup = format!(
        "CREATE TABLE cursor_mode (mode TEXT NOT NULL);\nINSERT INTO cursor_mode VALUES ('{mode}');\n{}",
        items_migration(100, 0)
    );
    project.sql("0001_setup", &setup, None, None).component(
        "0002_cursor",
        "hostile-cursor",
        &format!("[backfill]\nbatch_size = 10\n{backfill}\n[grants]\nread = [\"cursor_mode\", \"items\"]\n"),
    );
    let failure = project.migrator(&db).await.up(None).await.expect_err(mode);
    failure.error
}

/// A cursor must end: with a key it must grow and stay within its chunk, and a keyless
/// backfill is bounded by backfill.max_batches; each stop says which rule it broke.
async fn cursors_that_go_back_alternate_or_never_end_are_stopped(backend: Backend) {
    let keyed = "table = \"items\"\nkey = \"id\"\nchunk_rows = 10";
    for (mode, expected) in [("alternate", "does not come after it"), ("decrease", "does not come after it")] {
        let error = misbehaving_cursor(backend, mode, keyed).await;
        assert!(matches!(error, Error::CursorOutOfOrder { .. }), "{mode}: {error}");
        assert!(error.to_string().contains(expected) && error.to_string().contains("backfill.key"), "{mode}: {error}");
    }
    let error = misbehaving_cursor(backend, "ignore-until", keyed).await;
    assert!(error.to_string().contains("runs past its chunk's end"), "{error}");
    let error = misbehaving_cursor(backend, "forever", "max_batches = 50").await;
    assert!(matches!(error, Error::BackfillUnbounded { batches: 50, .. }), "{error}");
    assert!(error.to_string().contains("backfill.max_batches"), "{error}");
    assert_eq!(error.kind(), ErrorKind::MigrationFailed);
}
on_both_backends!(misbehaving_cursors, cursors_that_go_back_alternate_or_never_end_are_stopped);
