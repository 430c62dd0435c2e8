//! Migrations with `transactional = false`: statements that refuse a transaction block run
//! outside one, recorded as started before and as applied after; one that stops halfway
//! blocks the next run until `wasmig repair` records what a person decided.

use std::process::{Command, Output};

use wasmig_tests::json::JsonRun;
use wasmig_tests::{Project, TestDb, wasmig_binary};

fn wasmig(project: &Project, db: &TestDb, args: &[&str]) -> Output {
    Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .args(args)
        .output()
        .expect("run wasmig")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const NOT_IN_A_TRANSACTION: &str = "kind = \"sql\"\ntransactional = false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_concurrently_runs_outside_a_transaction_and_an_interrupted_one_blocks() {
    let db = TestDb::postgres().await;
    let project = Project::new();
    project.sql(
        "0001_items",
        "CREATE TABLE items (id INTEGER, code INTEGER); INSERT INTO items VALUES (1, 7), (2, 7);",
        None,
        None,
    );
    project.sql(
        "0002_unique_code",
        "CREATE UNIQUE INDEX CONCURRENTLY items_code ON items (code);",
        Some("DROP INDEX CONCURRENTLY items_code;"),
        None,
    );
    let inspect = db.inspect().await;

    // In a transaction, PostgreSQL refuses it; the error names the setting that allows it.
    let refused = wasmig(&project, &db, &["up"]);
    assert_eq!(refused.status.code(), Some(7), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("set `transactional = false` in 0002_unique_code/migration.toml"),
        "{}",
        stderr(&refused)
    );

    // Outside one, it runs; duplicates make it fail and leave an INVALID index, which is named.
    project.write("0002_unique_code/migration.toml", NOT_IN_A_TRANSACTION);
    let plan = JsonRun::parse(&wasmig(&project, &db, &["plan", "--format", "json"]).stdout);
    assert_eq!(plan.result.data["steps"][0]["transactional"], false);
    let failed = wasmig(&project, &db, &["up"]);
    let text = stderr(&failed);
    assert_eq!(failed.status.code(), Some(7), "{text}");
    assert!(
        text.contains("failed outside a transaction")
            && text.contains("INVALID indexes")
            && text.contains("items_code"),
        "{text}"
    );
    assert!(text.contains("wasmig repair 0002 --retry"), "{text}");

    // The next run stops before anything, saying what to do.
    let blocked = wasmig(&project, &db, &["up"]);
    let text = stderr(&blocked);
    assert_eq!(blocked.status.code(), Some(6), "{text}");
    assert!(
        text.contains("0002_unique_code: its up step, run outside a transaction") && text.contains("did not finish"),
        "{text}"
    );
    assert!(text.contains("items_code"), "the invalid index is named: {text}");
    let status = JsonRun::parse(&wasmig(&project, &db, &["status", "--format", "json"]).stdout);
    assert_eq!(status.result.data["migrations"][1]["state"], "interrupted");
    assert_eq!(status.result.data["migrations"][1]["direction"], "up");
    let check = JsonRun::parse(&wasmig(&project, &db, &["check", "--format", "json"]).stdout);
    assert_eq!(
        (check.result.exit_code, check.result.data["problems"][0]["problem"].as_str()),
        (6, Some("interrupted"))
    );

    // A person drops the invalid index, fixes the data, and records the retry.
    inspect.execute("DROP INDEX CONCURRENTLY items_code").await;
    inspect.execute("UPDATE items SET code = id").await;
    let retry = wasmig(&project, &db, &["repair", "2", "--retry", "--reason", "dropped the invalid index"]);
    assert_eq!(retry.status.code(), Some(0), "{}", stderr(&retry));
    let up = wasmig(&project, &db, &["up"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let valid = "SELECT count(*) FROM pg_index WHERE indexrelid = 'items_code'::regclass AND indisvalid";
    assert_eq!(inspect.count(valid).await, 1, "the index was built");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '2'").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_started").await, 0);
    let history = JsonRun::parse(&wasmig(&project, &db, &["history", "--format", "json"]).stdout);
    let reason = history.result.data["repairs"][0]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("cleared to run again") && reason.contains("dropped the invalid index"), "{reason}");

    // Its down.sql (DROP INDEX CONCURRENTLY) runs outside a transaction too.
    let down = wasmig(&project, &db, &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(inspect.count("SELECT count(*) FROM pg_class WHERE relname = 'items_code'").await, 0);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '2'").await, 0);
}

#[test]
fn sqlite_vacuum_needs_transactional_false_and_a_half_done_step_can_be_marked_done() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql("0001_vacuum", "VACUUM;", None, None);
    let refused = wasmig(&project, &db, &["up"]);
    assert_eq!(refused.status.code(), Some(7), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("transactional = false"), "{}", stderr(&refused));
    project.write("0001_vacuum/migration.toml", NOT_IN_A_TRANSACTION);
    let up = wasmig(&project, &db, &["up"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));

    // The first statement commits, the second fails: the step is left marked.
    project.sql("0002_half", "CREATE TABLE notes (id INTEGER);\nINSERT INTO no_such_table VALUES (1);", None, None);
    project.write("0002_half/migration.toml", NOT_IN_A_TRANSACTION);
    let failed = wasmig(&project, &db, &["up"]);
    assert_eq!(failed.status.code(), Some(7), "{}", stderr(&failed));
    let blocked = wasmig(&project, &db, &["up", "--format", "json"]);
    let run = JsonRun::parse(&blocked.stdout);
    assert_eq!((run.result.exit_code, run.result.exit.as_str()), (6, "integrity"));

    let not_interrupted = wasmig(&project, &db, &["repair", "1", "--mark-done", "--reason", "x"]);
    assert_eq!(not_interrupted.status.code(), Some(3), "{}", stderr(&not_interrupted));
    assert!(stderr(&not_interrupted).contains("0001_vacuum has no interrupted step"), "{}", stderr(&not_interrupted));
    let marked = wasmig(&project, &db, &["repair", "2", "--mark-done", "--reason", "the table is all it needed"]);
    assert_eq!(marked.status.code(), Some(0), "{}", stderr(&marked));
    let status = JsonRun::parse(&wasmig(&project, &db, &["status", "--format", "json"]).stdout);
    assert_eq!(status.result.data["migrations"][1]["state"], "applied");
    let again = JsonRun::parse(&wasmig(&project, &db, &["up", "--format", "json"]).stdout);
    assert_eq!((again.result.exit_code, again.result.committed.len()), (0, 0), "nothing left to apply");
}

/// A down step that stops halfway leaves its migration applied in the history, so `up` has
/// nothing to apply: it must still refuse, as the schema is neither the one applied nor the
/// one before it.
#[test]
fn an_interrupted_down_blocks_up_with_nothing_to_apply() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql(
        "0001_notes",
        "CREATE TABLE notes (id INTEGER);",
        Some("DROP TABLE notes;\nINSERT INTO no_such_table VALUES (1);"),
        None,
    );
    project.write("0001_notes/migration.toml", NOT_IN_A_TRANSACTION);
    let up = wasmig(&project, &db, &["up"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let down = wasmig(&project, &db, &["down"]);
    assert_eq!(down.status.code(), Some(7), "{}", stderr(&down));

    let blocked = wasmig(&project, &db, &["up"]);
    let text = stderr(&blocked);
    assert_eq!(blocked.status.code(), Some(6), "{text}");
    assert!(
        text.contains("0001_notes: its down step, run outside a transaction") && text.contains("did not finish"),
        "{text}"
    );
}

#[test]
fn a_component_cannot_run_outside_a_transaction() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.write("0001_c/migration.wasm", "");
    project.write("0001_c/migration.toml", "kind = \"component\"\ntransactional = false\n");
    let output = wasmig(&project, &db, &["up"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains("0001_c/migration.toml") && text.contains("transactional = false is for SQL migrations"),
        "{text}"
    );
}
