//! The deploy pipeline's view of wasmig: `--format json` on every command (each line parsed
//! against schema 1, never grepped), `plan` and `--dry-run` showing what would run and
//! changing nothing, and the `check` gate's named exit codes — on PostgreSQL and SQLite.

use std::process::{Command, Output};

use wasmig::Version;
use wasmig_tests::json::{Event, JsonRun};
use wasmig_tests::{Backend, Project, TestDb, wasmig_binary};

use crate::backfills::items_project;
use crate::on_both_backends;

fn wasmig(project: &Project, db: &TestDb, args: &[&str]) -> Output {
    Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-pipeline-test-cache"))
        .args(args)
        .output()
        .expect("run wasmig")
}

/// Runs `args` with `--format json` and parses stdout against the schema.
fn json(project: &Project, db: &TestDb, args: &[&str]) -> JsonRun {
    let output = wasmig(project, db, &[args, &["--format", "json"]].concat());
    let run = JsonRun::parse(&output.stdout);
    assert_eq!(Some(i32::from(run.result.exit_code)), output.status.code(), "the result names the exit code");
    assert_eq!(run.result.ok, run.result.exit_code == 0);
    run
}

/// `2026-12-02T04:05:06.123Z` or `…+01:00`.
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let offset_ok = text.ends_with('Z') || (text.len() > 6 && bytes[text.len() - 3] == b':');
    text.len() >= 20 && bytes[4] == b'-' && bytes[10] == b'T' && bytes[13] == b':' && offset_ok
}

fn ok(run: &JsonRun, command: &str) {
    assert_eq!(run.result.command, command);
    assert_eq!((run.result.exit_code, run.result.exit.as_str()), (0, "ok"), "{:?}", run.result.error);
    assert_eq!(run.result.error, None);
}

fn committed(run: &JsonRun) -> Vec<(String, String)> {
    run.result.committed.iter().map(|step| (step.action.clone(), step.migration.clone())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

async fn every_command_writes_schema_1_json(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(120, 0, "batch_size = 50\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    let inspect = db.inspect().await;

    let plan = json(&project, &db, &["plan"]);
    ok(&plan, "plan");
    let steps = &plan.result.data["steps"];
    assert_eq!(plan.result.data["direction"], "up");
    assert_eq!(steps[0]["migration"], "0001_items");
    assert_eq!(steps[0]["transactional"], true);
    assert!(steps[0]["sql"]["text"].as_str().is_some_and(|sql| sql.contains("CREATE TABLE items")), "{steps}");
    let component = &steps[1]["component"];
    assert_eq!(component["grants"][0], serde_json::json!({ "grant": "read", "tables": ["items"] }));
    assert_eq!(component["limits"]["fuel"], 2_000_000_000u64);
    assert_eq!(component["backfill"]["batch_size"], 50);
    assert!(!inspect.table_exists("wasmig_history").await, "plan changes nothing");
    let dry = json(&project, &db, &["up", "--dry-run"]);
    assert_eq!(dry.result.data, plan.result.data, "up --dry-run shows the plan");

    let up = json(&project, &db, &["up"]);
    ok(&up, "up");
    let applied =
        pairs(&[("applied", "0001_items"), ("applied", "0002_visit_items"), ("backfilled", "0002_visit_items")]);
    assert_eq!(up.steps(), applied, "a step event as each step commits");
    assert_eq!(committed(&up), applied);
    assert!(up.events.iter().any(|e| matches!(e, Event::BackfillFinished { rows: 120, .. })), "{:?}", up.events);

    let status = json(&project, &db, &["status"]);
    ok(&status, "status");
    let migrations = &status.result.data["migrations"];
    assert_eq!(migrations[1]["state"], "applied");
    assert_eq!(migrations[1]["version"], "2", "versions are strings");
    assert_eq!(migrations[1]["backfill"]["state"], "done");
    assert!(migrations[0]["applied_at"].as_str().is_some_and(is_rfc3339), "{migrations}");

    let history = json(&project, &db, &["history"]);
    ok(&history, "history");
    let rows = history.result.data["applied"].as_array().expect("applied rows").clone();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| row["applied_at"].as_str().is_some_and(is_rfc3339)), "{rows:?}");

    let verify = json(&project, &db, &["verify"]);
    ok(&verify, "verify");
    assert_eq!(committed(&verify), pairs(&[("verified", "0001_items"), ("verified", "0002_visit_items")]));
    ok(&json(&project, &db, &["check", "--fail-on-pending"]), "check");
    let backfills = json(&project, &db, &["backfill", "status"]);
    ok(&backfills, "backfill status");
    assert_eq!(backfills.result.data["backfills"][0]["rows_done"], 120);
    let grants = json(&project, &db, &["grants"]);
    ok(&grants, "grants");
    assert_eq!(grants.result.data["migrations"][1]["component"]["grants"][2]["grant"], "update");
    ok(&json(&project, &db, &["verify-artifacts"]), "verify-artifacts");

    let down_plan = json(&project, &db, &["down", "--dry-run", "--to", "0"]);
    ok(&down_plan, "down");
    assert_eq!(down_plan.result.data["direction"], "down");
    assert_eq!(down_plan.result.data["steps"][0]["migration"], "0002_visit_items", "newest first");
    assert_eq!(down_plan.result.data["steps"][1]["sql"]["text"], "DROP TABLE items;");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 2, "a dry run reverts nothing");

    let down = json(&project, &db, &["down"]);
    ok(&down, "down");
    assert_eq!(committed(&down), pairs(&[("reverted", "0002_visit_items")]));

    // A failing step: its event, then a result naming the failure and what committed before it.
    project.sql("0003_broken", "SELECT * FROM no_such_table;", None, None);
    let failed = json(&project, &db, &["up"]);
    assert_eq!((failed.result.exit_code, failed.result.exit.as_str()), (7, "migration_failed"));
    let failure = failed.events.iter().find_map(|event| match event {
        Event::StepFailed { step, migration, error, .. } => Some((step.clone(), migration.clone(), error.kind.clone())),
        _ => None,
    });
    assert_eq!(failure, Some(("up".to_owned(), "0003_broken".to_owned(), "migration_failed".to_owned())));
    let error = failed.result.error.clone().expect("the result carries the error");
    assert!(error.message.contains("0003_broken") && error.message.contains("up.sql"), "{}", error.message);
    assert_eq!(
        committed(&failed),
        pairs(&[("applied", "0002_visit_items"), ("backfilled", "0002_visit_items")]),
        "what committed before the failure"
    );
}
on_both_backends!(json_of_every_command, every_command_writes_schema_1_json);

async fn the_gate_names_each_problem_with_its_exit_code(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_a", "CREATE TABLE a (id INTEGER);", Some("DROP TABLE a;"), None);
    project.sql("0003_c", "CREATE TABLE c (id INTEGER);", Some("DROP TABLE c;"), None);
    let problem = |run: &JsonRun| run.result.data["problems"][0]["problem"].as_str().map(str::to_owned);
    let code = |run: &JsonRun| (run.result.exit_code, run.result.exit.clone());

    ok(&json(&project, &db, &["up", "--to", "1"]), "up");
    ok(&json(&project, &db, &["check"]), "check");
    let pending = json(&project, &db, &["check", "--fail-on-pending"]);
    assert_eq!((code(&pending), problem(&pending).as_deref()), ((11, "pending".into()), Some("pending")));

    ok(&json(&project, &db, &["up"]), "up");
    project.write("0003_c/up.sql", "CREATE TABLE c (id BIGINT);");
    let changed = json(&project, &db, &["check"]);
    assert_eq!((code(&changed), problem(&changed).as_deref()), ((6, "integrity".into()), Some("changed")));
    let human = wasmig(&project, &db, &["check"]);
    let text = String::from_utf8_lossy(&human.stderr);
    assert_eq!(human.status.code(), Some(6), "{text}");
    assert!(text.contains("0003_c changed since it was applied") && text.contains("wasmig repair"), "{text}");

    std::fs::remove_dir_all(project.path().join("0003_c")).expect("remove the folder");
    let missing = json(&project, &db, &["check"]);
    assert_eq!((code(&missing), problem(&missing).as_deref()), ((6, "integrity".into()), Some("missing")));

    project.sql("0003_c", "CREATE TABLE c (id INTEGER);", Some("DROP TABLE c;"), None);
    project.sql("0002_b", "CREATE TABLE b (id INTEGER);", None, None);
    let out_of_order = json(&project, &db, &["check"]);
    assert_eq!(
        (code(&out_of_order), problem(&out_of_order).as_deref()),
        ((6, "integrity".into()), Some("out_of_order"))
    );
}
on_both_backends!(check_gate, the_gate_names_each_problem_with_its_exit_code);

/// A paused backfill is not "up to date": `up` says so with exit 10, and so does the gate.
async fn up_exits_10_while_it_leaves_a_backfill_paused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(300, 0, "batch_size = 100\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    let migrator = project.migrator(&db).await;
    migrator.up(None).await.expect("up with its backfill");
    let inspect = db.inspect().await;
    // Rewind as if the run died after one batch, then pause it.
    inspect
        .execute(
            "UPDATE items SET visits = 0 WHERE id > 100;
             UPDATE wasmig_history_backfill_chunks SET cursor = '100', rows_done = 100, batches = 1, done = FALSE, leased_by = NULL;
             UPDATE wasmig_history_backfill SET state = 'running', finished_ms = NULL;",
        )
        .await;
    migrator.backfill_pause(Version(2)).await.expect("pause");

    let up = json(&project, &db, &["up"]);
    assert_eq!((up.result.exit_code, up.result.exit.as_str()), (10, "backfill_unfinished"), "{:?}", up.result.error);
    let message = up.result.error.expect("an error").message;
    assert!(
        message.contains("0002_visit_items's backfill is paused") && message.contains("backfill resume 0002"),
        "{message}"
    );
    let check = json(&project, &db, &["check"]);
    assert_eq!(check.result.exit_code, 10);
    assert_eq!(check.result.data["problems"][0]["state"], "paused");

    migrator.backfill_resume(Version(2)).await.expect("resume");
    ok(&json(&project, &db, &["up"]), "up");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0);
    ok(&json(&project, &db, &["check"]), "check");
}
on_both_backends!(up_and_a_paused_backfill, up_exits_10_while_it_leaves_a_backfill_paused);

/// Commands that need no database write JSON too.
#[test]
fn project_commands_write_schema_1_json() {
    let db = TestDb::sqlite();
    let folder = tempfile::tempdir().expect("temporary folder");
    let project = Project::new();
    std::fs::remove_file(project.path().join("wasmig.toml")).expect("start empty");
    let init = json(&project, &db, &["init"]);
    ok(&init, "init");
    let new = json(&project, &db, &["new", "add_notes"]);
    ok(&new, "new");
    assert_eq!(new.result.data["created"].as_array().map(Vec::len), Some(3));
    let hash = json(&project, &db, &["hash"]);
    ok(&hash, "hash");
    assert_eq!(hash.result.data["migrations"], 1);
    let key = folder.path().join("release.key");
    let keygen = json(&project, &db, &["keygen", "--out", &key.to_string_lossy()]);
    ok(&keygen, "keygen");
    let sign = json(&project, &db, &["sign", "--key", &key.to_string_lossy()]);
    ok(&sign, "sign");
    let unknown = json(&project, &db, &["backfill", "status", "7"]);
    assert_eq!((unknown.result.exit_code, unknown.result.exit.as_str()), (3, "project"));
}

/// `up --no-backfill` applies the schema steps and leaves the backfill to workers: exit 0,
/// the gate reports it until a `backfill run` finishes it.
async fn no_backfill_leaves_the_backfill_to_workers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(150, 0, "batch_size = 50\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    let up = json(&project, &db, &["up", "--no-backfill"]);
    ok(&up, "up");
    assert_eq!(committed(&up), pairs(&[("applied", "0001_items"), ("applied", "0002_visit_items")]));
    assert_eq!(up.result.data["backfills_left"][0]["state"], "not_started");
    let check = json(&project, &db, &["check"]);
    assert_eq!((check.result.exit_code, check.result.data["problems"][0]["state"].as_str()), (10, Some("not_started")));
    let run = json(&project, &db, &["backfill", "run", "2"]);
    ok(&run, "backfill run");
    assert_eq!(committed(&run), pairs(&[("backfilled", "0002_visit_items")]));
    ok(&json(&project, &db, &["check"]), "check");
}
on_both_backends!(up_no_backfill, no_backfill_leaves_the_backfill_to_workers);

/// `up --no-backfill` before a migration that needs the backfill it leaves to workers stops
/// there with exit 10, never "up to date" with 0; once a worker finishes it, `up` goes on.
async fn no_backfill_stops_before_a_migration_that_needs_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(120, 0, "batch_size = 50\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    project.write("0003_contract/up.sql", "CREATE INDEX items_visits ON items (visits);");
    project.write("0003_contract/migration.toml", "kind = \"sql\"\nneeds_backfills = [2]\n");
    let up = json(&project, &db, &["up", "--no-backfill"]);
    assert_eq!((up.result.exit_code, up.result.exit.as_str()), (10, "backfill_unfinished"), "{:?}", up.result.error);
    assert_eq!(committed(&up), pairs(&[("applied", "0001_items"), ("applied", "0002_visit_items")]));
    let message = &up.result.error.as_ref().expect("an error").message;
    assert!(message.contains("0003_contract needs the backfill of 0002_visit_items"), "{message}");
    // And so does the next deploy's, with the backfill applied by an earlier run.
    let next = json(&project, &db, &["up", "--no-backfill"]);
    assert_eq!((next.result.exit_code, committed(&next)), (10, Vec::new()), "{:?}", next.result.error);
    ok(&json(&project, &db, &["backfill", "run", "2"]), "backfill run");
    let again = json(&project, &db, &["up", "--no-backfill"]);
    ok(&again, "up");
    assert_eq!(committed(&again), pairs(&[("applied", "0003_contract")]));
}
on_both_backends!(up_no_backfill_before_a_contract, no_backfill_stops_before_a_migration_that_needs_it);

/// The migration lock is held while schema steps apply, not while a backfill runs: another
/// deploy's `up` takes it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backfill_does_not_hold_the_migration_lock() {
    let db = TestDb::postgres().await;
    let project =
        items_project(400, 0, "batch_size = 20\npause_ms = 150\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    let mut first = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-pipeline-test-cache"))
        .args(["up", "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the first up");
    let inspect = db.inspect().await;
    let started = std::time::Instant::now();
    while !inspect.table_exists("items").await
        || inspect.count("SELECT count(*) FROM items WHERE visits = 1").await == 0
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the backfill never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = json(&project, &db, &["up", "--no-backfill", "--lock-timeout", "3s"]);
    ok(&second, "up");
    assert!(first.try_wait().expect("poll the first up").is_none(), "the first up's backfill is still running");
    let first = first.wait_with_output().expect("wait for the first up");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "every row once");
}

/// A backfill that fails is recorded as `failed` with its error; `up` does not run it again
/// blindly (exit 10, saying how to retry); `backfill retry` lets it go on from its last
/// committed batch, and `cancel` gives it up until a retry.
async fn a_failed_backfill_is_recorded_and_retried(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(300, 0, "batch_size = 50\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    ok(&json(&project, &db, &["up", "--to", "1"]), "up");
    let inspect = db.inspect().await;
    let (block, unblock) = match backend {
        Backend::Postgres => (
            "ALTER TABLE items ADD CONSTRAINT refuse_150 CHECK (id <> 150 OR visits = 0)",
            "ALTER TABLE items DROP CONSTRAINT refuse_150",
        ),
        Backend::Sqlite => (
            "CREATE TRIGGER refuse_150 BEFORE UPDATE ON items WHEN NEW.id = 150 BEGIN SELECT RAISE(ABORT, 'row 150 refused'); END",
            "DROP TRIGGER refuse_150",
        ),
    };
    inspect.execute(block).await;

    let failed = json(&project, &db, &["up"]);
    assert_eq!(failed.result.exit, "migration_failed", "{:?}", failed.result.error);
    assert!(failed.events.iter().any(|e| matches!(e, Event::BackfillFailed { .. })), "{:?}", failed.events);
    let status = json(&project, &db, &["backfill", "status", "2"]);
    let backfill = &status.result.data["backfills"][0];
    assert_eq!(backfill["state"], "failed");
    assert_eq!(backfill["rows_done"], 100, "the two batches before the refused row stay committed");
    assert!(
        backfill["error"].as_str().is_some_and(|e| e.contains("refuse_150") || e.contains("row 150 refused")),
        "{backfill}"
    );

    let again = json(&project, &db, &["up"]);
    assert_eq!(again.result.exit, "backfill_unfinished", "{:?}", again.result.error);
    let message = again.result.error.map(|e| e.message).unwrap_or_default();
    assert!(message.contains("backfill is failed") && message.contains("backfill retry 0002"), "{message}");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits = 1").await, 100, "not run again blindly");

    ok(&json(&project, &db, &["backfill", "cancel", "2"]), "backfill cancel");
    let check = json(&project, &db, &["check"]);
    assert_eq!((check.result.exit_code, check.result.data["problems"][0]["state"].as_str()), (10, Some("cancelled")));
    let resume = json(&project, &db, &["backfill", "resume", "2"]);
    assert_eq!(resume.result.exit, "project", "a cancelled backfill is not paused: {:?}", resume.result.error);

    inspect.execute(unblock).await;
    ok(&json(&project, &db, &["backfill", "retry", "2"]), "backfill retry");
    ok(&json(&project, &db, &["up"]), "up");
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0, "every row exactly once");
    ok(&json(&project, &db, &["check"]), "check");
}
on_both_backends!(failed_backfill, a_failed_backfill_is_recorded_and_retried);
