//! SQL migrations: apply, verify, revert; atomicity with the history row; immutability of
//! applied migrations.

use wasmig::{DownTarget, ErrorKind, Version};
use wasmig_tests::{Backend, Project, TestDb, users_migration};

use crate::on_both_backends;

async fn round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project
        .sql("0001_users", &users_migration(10), Some("DROP TABLE users;"), Some("SELECT count(*) = 10 FROM users;"))
        .sql("0002_posts", "CREATE TABLE posts (id INTEGER PRIMARY KEY);", Some("DROP TABLE posts;"), None);
    let migrator = project.migrator(&db).await;

    let report = migrator.up(None).await.expect("up");
    assert_eq!(report.steps.len(), 2);
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM users").await, 10);
    assert!(inspect.table_exists("posts").await);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 2);

    assert_eq!(migrator.up(None).await.expect("second up").steps.len(), 0, "nothing left to apply");
    assert_eq!(migrator.verify().await.expect("verify").steps.len(), 2);

    migrator.down(DownTarget::Steps(1)).await.expect("down one");
    assert!(!inspect.table_exists("posts").await);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 1);

    migrator.down(DownTarget::To(Version(0))).await.expect("down all");
    assert!(!inspect.table_exists("users").await);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 0);
}
on_both_backends!(sql_round_trip, round_trip);

async fn failing_verify_applies_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_users", &users_migration(3), None, Some("SELECT count(*) = 3 FROM users;")).sql(
        "0002_bad",
        "CREATE TABLE bad (id INTEGER);",
        None,
        Some("SELECT 1 = 1;\nSELECT count(*) > 0 FROM bad;"),
    );
    let migrator = project.migrator(&db).await;

    let failure = migrator.up(None).await.expect_err("verify of 0002 must fail");
    assert_eq!(failure.error.kind(), ErrorKind::MigrationFailed);
    let message = failure.to_string();
    assert!(message.contains("0002_bad") && message.contains("statement 2"), "{message}");
    assert_eq!(failure.done.steps.len(), 1, "0001 committed before the failure and the report says so");

    let inspect = db.inspect().await;
    assert!(!inspect.table_exists("bad").await, "the failed migration's table was rolled back");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 1);
}
on_both_backends!(failing_verify_rolls_back, failing_verify_applies_nothing);

async fn sql_error_rolls_back_the_whole_file(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_half", "CREATE TABLE first_half (id INTEGER);\nSELECT * FROM no_such_table;", None, None);
    let migrator = project.migrator(&db).await;
    let failure = migrator.up(None).await.expect_err("second statement fails");
    assert!(failure.to_string().contains("0001_half: up.sql failed"), "{failure}");
    let inspect = db.inspect().await;
    assert!(!inspect.table_exists("first_half").await);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 0);
}
on_both_backends!(sql_error_rolls_back, sql_error_rolls_back_the_whole_file);

async fn changed_applied_migration_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), None, None);
    project.migrator(&db).await.up(None).await.expect("first up");

    project.write("0001_users/up.sql", &format!("{}\n-- edited after applying", users_migration(1)));
    project.sql("0002_next", "CREATE TABLE next_table (id INTEGER);", None, None);
    let failure = project.migrator(&db).await.up(None).await.expect_err("changed file");
    assert_eq!(failure.error.kind(), ErrorKind::Integrity);
    let message = failure.to_string();
    assert!(message.contains("0001_users") && message.matches("blake3:").count() == 2, "{message}");
    assert!(!db.inspect().await.table_exists("next_table").await, "nothing ran after the refusal");
}
on_both_backends!(changed_applied_migration, changed_applied_migration_is_refused);

async fn crlf_checkout_keeps_the_digest(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_users", "CREATE TABLE users (id INTEGER);\nINSERT INTO users VALUES (1);\n", None, None);
    project.migrator(&db).await.up(None).await.expect("first up");
    project.write("0001_users/up.sql", "\u{feff}CREATE TABLE users (id INTEGER);\r\nINSERT INTO users VALUES (1);\r\n");
    project.migrator(&db).await.up(None).await.expect("the same migration with CRLF and a BOM is unchanged");
}
on_both_backends!(crlf_checkout, crlf_checkout_keeps_the_digest);

async fn missing_down_is_refused_before_anything_runs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), Some("DROP TABLE users;"), None).sql(
        "0002_posts",
        "CREATE TABLE posts (id INTEGER);",
        None,
        None,
    );
    let migrator = project.migrator(&db).await;
    migrator.up(None).await.expect("up");
    let failure = migrator.down(DownTarget::To(Version(0))).await.expect_err("0002 has no down.sql");
    assert!(failure.to_string().contains("0002_posts cannot be reverted"), "{failure}");
    let inspect = db.inspect().await;
    assert!(inspect.table_exists("posts").await && inspect.table_exists("users").await, "nothing was reverted");
}
on_both_backends!(missing_down, missing_down_is_refused_before_anything_runs);

async fn history_tables_are_per_service(backend: Backend) {
    let db = TestDb::new(backend).await;
    let billing = Project::new();
    billing.write("wasmig.toml", "[history]\ntable = \"billing_history\"\n");
    billing.sql("0001_invoices", "CREATE TABLE invoices (id INTEGER);", None, None);
    let search = Project::new();
    search.write("wasmig.toml", "[history]\ntable = \"search_history\"\n");
    search.sql("0001_documents", "CREATE TABLE documents (id INTEGER);", None, None);
    billing.migrator(&db).await.up(None).await.expect("billing up");
    search.migrator(&db).await.up(None).await.expect("search up, same version number, own history");
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM billing_history").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM search_history").await, 1);
}
on_both_backends!(history_per_service, history_tables_are_per_service);

/// Invariant 1 on PostgreSQL: the migration's effect and its history row carry the same
/// transaction id, so they committed in one transaction (and one commit).
#[tokio::test]
async fn postgres_migration_and_history_row_share_one_transaction() {
    let db = TestDb::postgres().await;
    let project = Project::new();
    project.sql("0001_users", &users_migration(5), None, None).sql(
        "0002_posts",
        "CREATE TABLE posts (id INTEGER);",
        None,
        None,
    );
    project.migrator(&db).await.up(None).await.expect("up");
    let inspect = db.inspect().await;
    for (version, table) in [(1, "users"), (2, "posts")] {
        let same = inspect
            .count(&format!(
                "SELECT count(*) FROM wasmig_history h, pg_class c \
                 WHERE h.version = '{version}' AND c.relname = '{table}' AND h.xmin = c.xmin"
            ))
            .await;
        assert_eq!(same, 1, "migration {version}'s table and history row were written by one transaction");
    }
    let distinct = inspect.count("SELECT count(DISTINCT xmin::text) FROM wasmig_history").await;
    assert_eq!(distinct, 2, "each migration commits on its own");
}

/// Invariant 9: the engine's own statements never resolve a name through `pg_temp`. A SQL
/// migration that makes a temporary table named like the history table does not take the
/// history rows: they land in the real table and survive the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_table_named_like_the_history_does_not_take_its_rows() {
    let db = TestDb::postgres().await;
    let project = Project::new();
    project
        .sql(
            "0001_shadow",
            "CREATE TEMP TABLE wasmig_history (LIKE public.wasmig_history INCLUDING ALL);\n\
             CREATE TEMP TABLE wasmig_history_backfill (LIKE public.wasmig_history_backfill INCLUDING ALL);",
            None,
            None,
        )
        .sql("0002_users", &users_migration(2), None, None);
    let migrator = project.migrator(&db).await;
    migrator.up(None).await.expect("both migrations apply");
    drop(migrator);
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM public.wasmig_history").await, 2, "the history kept both rows");
    let again = project.migrator(&db).await.up(None).await.expect("a second run");
    assert!(again.steps.is_empty(), "nothing is applied twice: {again:?}");
}
