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

/// `--keep` leaves the scratch database at the state the round trip broke in, and says where.
async fn keep_leaves_the_scratch_database_as_it_broke(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql(
        "0001_audit",
        "CREATE TABLE audit_log (id BIGINT);\nCREATE TABLE audit_archive (id BIGINT);",
        Some("DROP TABLE audit_log;"),
        None,
    );
    let run = wasmig_json(&project, &db, &["test", "--keep"]);
    assert_eq!((run.result.exit_code, run.result.data["kept"].as_bool()), (12, Some(true)));
    let scratch = run.result.data["scratch"].as_str().expect("the scratch database is named").to_owned();
    let left = "the table its down left behind, and the ledger, as the round trip left them";
    match backend {
        Backend::Postgres => {
            let name = scratch.rsplit('/').next().expect("a database name").to_owned();
            let kept = TestDb::existing(Backend::Postgres, &scratch);
            let inspect = kept.inspect().await;
            assert!(
                inspect.table_exists("audit_archive").await && inspect.table_exists("wasmig_history").await,
                "{left}"
            );
            drop(inspect);
            let drop = format!("DROP DATABASE {name} WITH (FORCE)");
            db.inspect().await.execute(&drop).await;
        }
        Backend::Sqlite => {
            let path = std::path::PathBuf::from(scratch.strip_prefix("sqlite:").expect("a SQLite URL"));
            let kept = rusqlite::Connection::open(&path).expect("open the kept scratch file");
            let count: i64 = kept
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name IN ('audit_archive', 'wasmig_history')",
                    [],
                    |row| row.get(0),
                )
                .expect("read the kept scratch file");
            assert_eq!(count, 2, "{left}");
            std::fs::remove_dir_all(path.parent().expect("its folder")).expect("remove the kept scratch folder");
        }
    }
}
on_both_backends!(keep_leaves_the_scratch_database_as_it_broke, keep_leaves_the_scratch_database_as_it_broke);

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

/// PostgreSQL objects that live beside tables: each changed by hand is drift, and a value a
/// sequence moved to is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_sees_types_functions_triggers_sequences_grants_and_extensions() {
    let db = TestDb::postgres().await;
    let project = Project::new();
    project
        .sql(
            "0001_tickets",
            "CREATE EXTENSION citext;\n\
             CREATE TYPE mood AS ENUM ('happy', 'sad');\n\
             CREATE DOMAIN positive AS integer CHECK (VALUE > 0);\n\
             CREATE SEQUENCE ticket_numbers START 100;\n\
             CREATE TABLE tickets (id BIGSERIAL PRIMARY KEY, owner citext, feeling mood, seats positive, \
               number BIGINT NOT NULL DEFAULT nextval('ticket_numbers'), touched TIMESTAMPTZ);\n\
             GRANT SELECT ON tickets TO PUBLIC;",
            Some("DROP TABLE tickets;\nDROP SEQUENCE ticket_numbers;\nDROP DOMAIN positive;\nDROP TYPE mood;\nDROP EXTENSION citext;"),
            None,
        )
        .sql(
            "0002_touch",
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.touched = now(); RETURN NEW; END $$;\n\
             CREATE TRIGGER tickets_touch BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION touch();",
            Some("DROP TRIGGER tickets_touch ON tickets;\nDROP FUNCTION touch();"),
            None,
        );
    let test = wasmig_json(&project, &db, &["test"]);
    assert_eq!((test.result.exit_code, test.result.exit.as_str()), (0, "ok"), "{:?}", test.result.error);
    assert_eq!(wasmig_json(&project, &db, &["up"]).result.exit_code, 0);
    let inspect = db.inspect().await;
    inspect.execute("INSERT INTO tickets (owner, feeling, seats) VALUES ('a', 'happy', 2), ('b', 'sad', 1)").await;
    let clean = wasmig_json(&project, &db, &["drift"]);
    assert_eq!(
        (clean.result.exit_code, differences(&clean.result.data["differences"])),
        (0, vec![]),
        "rows and the sequences they moved are not drift: {}",
        clean.result.data
    );

    inspect
        .execute(
            "ALTER TYPE mood ADD VALUE 'meh';\n\
             ALTER DOMAIN positive ADD CONSTRAINT small CHECK (VALUE < 100);\n\
             ALTER SEQUENCE ticket_numbers INCREMENT 5;\n\
             REVOKE SELECT ON tickets FROM PUBLIC;\n\
             ALTER TABLE tickets DISABLE TRIGGER tickets_touch;\n\
             CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n\
             CREATE EXTENSION pg_trgm;",
        )
        .await;
    let drifted = wasmig_json(&project, &db, &["drift"]);
    assert_eq!((drifted.result.exit_code, drifted.result.exit.as_str()), (13, "drift"));
    assert_eq!(
        differences(&drifted.result.data["differences"]),
        [
            triple("changed", "type", "mood"),
            triple("unexpected", "extension", "pg_trgm"),
            triple("changed", "type", "positive"),
            triple("changed", "sequence", "ticket_numbers"),
            triple("changed", "trigger", "tickets_touch"),
            triple("missing", "grant", "PUBLIC"),
            triple("changed", "function", "touch()"),
        ],
        "{}",
        drifted.result.data
    );
    scratch_is_gone(&db, &drifted).await;
}

/// A function a down forgets is what the round trip names, as it does a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_that_leaves_a_function_behind_is_named() {
    let db = TestDb::postgres().await;
    let project = Project::new();
    project.sql(
        "0001_helpers",
        "CREATE FUNCTION double_it(n integer) RETURNS integer LANGUAGE sql AS 'SELECT n * 2';\n\
         CREATE TYPE colour AS ENUM ('red', 'blue');",
        Some("DROP TYPE colour;"),
        None,
    );
    let run = wasmig_json(&project, &db, &["test"]);
    assert_eq!((run.result.exit_code, run.result.exit.as_str()), (12, "round_trip"));
    let broken = &run.result.data["broken"];
    assert_eq!(broken["how"], "down_left_schema", "{broken}");
    assert_eq!(differences(&broken["differences"]), [triple("unexpected", "function", "double_it(n integer)")]);
    scratch_is_gone(&db, &run).await;
}

/// SQLite keeps a `CHECK` only in its table's text, and a trigger as its own: a table rebuilt
/// by hand without the one, and the other dropped, are drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_sees_sqlite_checks_and_triggers() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql(
        "0001_orders",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty > 0), touched TEXT);\n\
         CREATE TRIGGER orders_touch AFTER UPDATE ON orders BEGIN UPDATE orders SET touched = 'now' WHERE id = NEW.id; END;",
        Some("DROP TRIGGER orders_touch;\nDROP TABLE orders;"),
        None,
    );
    assert_eq!(wasmig_json(&project, &db, &["up"]).result.exit_code, 0);
    let clean = wasmig_json(&project, &db, &["drift"]);
    assert_eq!((clean.result.exit_code, differences(&clean.result.data["differences"])), (0, vec![]));

    db.inspect()
        .await
        .execute(
            "CREATE TABLE orders_new (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, touched TEXT);\n\
             INSERT INTO orders_new SELECT * FROM orders;\n\
             DROP TABLE orders;\n\
             ALTER TABLE orders_new RENAME TO orders;",
        )
        .await;
    let drifted = wasmig_json(&project, &db, &["drift"]);
    assert_eq!((drifted.result.exit_code, drifted.result.exit.as_str()), (13, "drift"));
    assert_eq!(
        differences(&drifted.result.data["differences"]),
        [triple("missing", "constraint", "check (qty > 0)"), triple("missing", "trigger", "orders_touch")],
        "{}",
        drifted.result.data
    );
}
