//! `wasmig test` (the round trip on a scratch database) and `wasmig drift` (the target's
//! schema against what its migrations build), through the binary with `--format json`, on
//! PostgreSQL and SQLite: what they find, their exit codes, that the target is left as it
//! was and the scratch database is removed, and that a scratch database that is not empty
//! is refused.

use serde_json::Value;
use wasmig_tests::json::JsonRun;
use wasmig_tests::{Backend, Project, TestDb, wasmig_json};

use crate::backfills::items_project;
use crate::on_both_backends;

/// The scratch database a run names no longer exists.
async fn scratch_is_gone(db: &TestDb, run: &JsonRun) {
    let scratch = run.result.data["scratch"].as_str().expect("the scratch database is named").to_owned();
    match db.backend {
        Backend::Postgres => {
            let name = scratch.rsplit('/').next().expect("a database name");
            assert!(name.starts_with("wasmig_scratch_"), "{scratch}");
            let sql = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
            assert_eq!(db.inspect().await.count(&sql).await, 0, "{scratch} was dropped");
        }
        Backend::Sqlite => {
            let path = std::path::PathBuf::from(scratch.strip_prefix("sqlite:").expect("a SQLite URL"));
            assert!(!path.exists(), "{} was removed", path.display());
            assert!(!path.parent().expect("its folder").exists(), "and its folder");
        }
    }
}

fn versions(value: &Value) -> Vec<&str> {
    value.as_array().expect("a list").iter().filter_map(Value::as_str).collect()
}

/// The (change, kind, name) of each difference a result lists.
fn differences(list: &Value) -> Vec<(String, String, String)> {
    let text = |value: &Value, key: &str| value[key].as_str().unwrap_or_default().to_owned();
    list.as_array()
        .expect("a list of differences")
        .iter()
        .map(|d| (text(d, "change"), text(d, "kind"), text(d, "name")))
        .collect()
}

fn triple(change: &str, kind: &str, name: &str) -> (String, String, String) {
    (change.to_owned(), kind.to_owned(), name.to_owned())
}

async fn a_sound_project_passes_and_the_target_is_untouched(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(40, 0, "batch_size = 16\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    project.sql(
        "0003_tags",
        "CREATE TABLE tags (id BIGINT PRIMARY KEY, item BIGINT NOT NULL REFERENCES items (id), label TEXT);\n\
         CREATE INDEX tags_item ON tags (item);",
        Some("DROP INDEX tags_item;\nDROP TABLE tags;"),
        Some("SELECT count(*) = 0 FROM tags;"),
    );
    let run = wasmig_json(&project, &db, &["test"]);
    assert_eq!((run.result.exit_code, run.result.exit.as_str()), (0, "ok"), "{:?}", run.result.error);
    assert_eq!(versions(&run.result.data["passed"]), ["1", "2", "3"]);
    assert_eq!(run.result.data["broken"], Value::Null);
    assert!(run.result.committed.is_empty(), "nothing is committed to the target: {:?}", run.result.committed);
    assert!(!db.inspect().await.table_exists("items").await, "the target has no migration applied");
    assert!(!db.inspect().await.table_exists("wasmig_history").await, "nor a history table");
    scratch_is_gone(&db, &run).await;
}
on_both_backends!(
    a_sound_project_passes_and_the_target_is_untouched,
    a_sound_project_passes_and_the_target_is_untouched
);

async fn a_down_that_leaves_a_table_behind_is_named(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project
        .sql("0001_accounts", "CREATE TABLE accounts (id BIGINT PRIMARY KEY);", Some("DROP TABLE accounts;"), None)
        .sql(
            "0002_audit",
            "CREATE TABLE audit_log (id BIGINT PRIMARY KEY, account BIGINT);\n\
             CREATE TABLE audit_archive (id BIGINT PRIMARY KEY);",
            Some("DROP TABLE audit_log;"),
            None,
        )
        .sql("0003_later", "CREATE TABLE later (id BIGINT);", Some("DROP TABLE later;"), None);
    let run = wasmig_json(&project, &db, &["test"]);
    assert_eq!((run.result.exit_code, run.result.exit.as_str()), (12, "round_trip"));
    assert_eq!(versions(&run.result.data["passed"]), ["1"]);
    let broken = &run.result.data["broken"];
    assert_eq!(broken["migration"], "0002_audit");
    assert_eq!((broken["stage"].as_str(), broken["how"].as_str()), (Some("down"), Some("down_left_schema")));
    assert_eq!(differences(&broken["differences"]), [triple("unexpected", "table", "audit_archive")], "{broken}");
    let message = &run.result.error.as_ref().expect("an error").message;
    assert!(
        message.contains("0002_audit: its down did not undo its up") && message.contains("left behind: table"),
        "{message}"
    );
    scratch_is_gone(&db, &run).await;
}
on_both_backends!(a_down_that_leaves_a_table_behind_is_named, a_down_that_leaves_a_table_behind_is_named);

async fn a_verify_broken_by_a_later_migration_is_named(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project
        .sql(
            "0001_queue",
            "CREATE TABLE queue (id BIGINT PRIMARY KEY);",
            Some("DROP TABLE queue;"),
            Some("SELECT count(*) = 0 FROM queue;"),
        )
        .sql("0002_seed", "INSERT INTO queue (id) VALUES (1);", Some("DELETE FROM queue;"), None);
    let run = wasmig_json(&project, &db, &["test"]);
    assert_eq!(run.result.exit_code, 12);
    let broken = &run.result.data["broken"];
    assert_eq!(versions(&run.result.data["passed"]), ["1", "2"], "each passes its own stair");
    assert_eq!((broken["migration"].as_str(), broken["stage"].as_str()), (Some("0001_queue"), Some("verify_at_head")));
    assert!(broken["error"].as_str().is_some_and(|e| e.contains("verify")), "{broken}");
    scratch_is_gone(&db, &run).await;
}
on_both_backends!(a_verify_broken_by_a_later_migration_is_named, a_verify_broken_by_a_later_migration_is_named);

async fn a_migration_without_down_breaks_the_round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_kept", "CREATE TABLE kept (id BIGINT);", None, None);
    let run = wasmig_json(&project, &db, &["test"]);
    assert_eq!(run.result.exit_code, 12);
    let broken = &run.result.data["broken"];
    assert_eq!((broken["migration"].as_str(), broken["how"].as_str()), (Some("0001_kept"), Some("no_down")));
    scratch_is_gone(&db, &run).await;
}
on_both_backends!(a_migration_without_down_breaks_the_round_trip, a_migration_without_down_breaks_the_round_trip);

/// A scratch database is emptied by the round trip, so one that holds anything is refused
/// before any migration runs on it, and so is the target itself.
async fn a_scratch_database_that_is_not_empty_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let scratch = TestDb::new(backend).await;
    scratch.inspect().await.execute("CREATE TABLE precious (id BIGINT); INSERT INTO precious VALUES (7);").await;
    let project = Project::new();
    project.sql("0001_precious", "CREATE TABLE other (id BIGINT);", Some("DROP TABLE other;"), None);
    for command in ["test", "drift"] {
        let run = wasmig_json(&project, &db, &[command, "--scratch-url", &scratch.url]);
        assert_eq!((run.result.exit_code, run.result.exit.as_str()), (3, "project"), "{command}");
        let message = &run.result.error.as_ref().expect("an error").message;
        assert!(message.contains("is not empty") && message.contains("precious"), "{message}");
        let same = wasmig_json(&project, &db, &[command, "--scratch-url", &db.url]);
        assert_eq!(same.result.exit_code, 3, "{command} refuses the target as its scratch database");
    }
    let inspect = scratch.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM precious").await, 1, "the scratch database keeps its rows");
    assert!(!inspect.table_exists("other").await && !inspect.table_exists("wasmig_history").await);

    let empty = TestDb::new(backend).await;
    let run = wasmig_json(&project, &db, &["test", "--scratch-url", &empty.url]);
    assert_eq!(run.result.exit_code, 0, "{:?}", run.result.error);
    assert!(!empty.inspect().await.table_exists("other").await, "a given scratch database is left empty");
}
on_both_backends!(a_scratch_database_that_is_not_empty_is_refused, a_scratch_database_that_is_not_empty_is_refused);

async fn drift_reports_what_differs_from_the_migrations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = items_project(40, 0, "batch_size = 16\ntable = \"items\"\nkey = \"id\"", 2_000_000_000);
    project.sql("0003_item_index", "CREATE INDEX items_n ON items (visits);", Some("DROP INDEX items_n;"), None);
    assert_eq!(wasmig_json(&project, &db, &["up"]).result.exit_code, 0);
    let clean = wasmig_json(&project, &db, &["drift"]);
    assert_eq!((clean.result.exit_code, clean.result.exit.as_str()), (0, "ok"), "{:?}", clean.result.error);
    assert_eq!(clean.result.data["applied_up_to"], "3");
    assert_eq!(differences(&clean.result.data["differences"]), []);

    // A pending migration is not drift.
    project.sql("0004_pending", "CREATE TABLE pending (id BIGINT);", Some("DROP TABLE pending;"), None);
    let pending = wasmig_json(&project, &db, &["drift"]);
    assert_eq!((pending.result.exit_code, pending.result.data["pending"].as_u64()), (0, Some(1)));

    // Changed by hand: a column added, an index dropped, a table nobody migrated.
    let inspect = db.inspect().await;
    inspect
        .execute("ALTER TABLE items ADD COLUMN note TEXT; DROP INDEX items_n; CREATE TABLE stray (id BIGINT);")
        .await;
    let drifted = wasmig_json(&project, &db, &["drift"]);
    assert_eq!((drifted.result.exit_code, drifted.result.exit.as_str()), (13, "drift"));
    assert_eq!(
        differences(&drifted.result.data["differences"]),
        [
            triple("unexpected", "column", "note"),
            triple("missing", "index", "items_n"),
            triple("unexpected", "table", "stray")
        ],
        "{}",
        drifted.result.data
    );
    let message = &drifted.result.error.as_ref().expect("an error").message;
    assert!(message.contains("differs from what its migrations build in 3 ways"), "{message}");
    assert_eq!(inspect.count("SELECT count(*) FROM items").await, 40, "drift changes nothing");
    scratch_is_gone(&db, &drifted).await;
}
on_both_backends!(drift_reports_what_differs_from_the_migrations, drift_reports_what_differs_from_the_migrations);
