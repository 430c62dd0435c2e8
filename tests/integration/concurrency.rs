//! Invariant 6: concurrent runs against one database apply each migration exactly once.

use wasmig_tests::{Backend, Project, TestDb, users_migration};

use crate::on_both_backends;

async fn concurrent_runs_apply_each_migration_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    // Non-idempotent migrations: a second application would fail or double the rows.
    project
        .sql("0001_users", &users_migration(100), None, None)
        .sql("0002_audit", "CREATE TABLE audit (id INTEGER);\nINSERT INTO audit SELECT id FROM users;", None, None)
        .sql("0003_more", "INSERT INTO audit SELECT id + 1000 FROM users;", None, None);
    let (first, second) = (project.migrator(&db).await, project.migrator(&db).await);
    let (a, b) = tokio::join!(first.up(None), second.up(None));
    let (a, b) = (a.expect("first run"), b.expect("second run"));
    assert_eq!(a.steps.len() + b.steps.len(), 3, "each migration applied by exactly one run");
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM audit").await, 200);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 3);
}
on_both_backends!(concurrent_up, concurrent_runs_apply_each_migration_once);

/// Invariant 8: a run whose lock session is terminated mid-migration commits nothing more and
/// stops, while the run that takes the lock over applies the migration exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lock_session_commits_nothing() {
    let db = TestDb::postgres().await;
    let project = Project::new();
    // A slow migration that is not idempotent: applied twice, it would leave two rows.
    project.sql(
        "0001_slow",
        "CREATE TABLE runs (n INTEGER);\nSELECT pg_sleep(3);\nINSERT INTO runs VALUES (1);",
        None,
        None,
    );
    let inspect = db.inspect().await;
    let database = db.url.rsplit('/').next().expect("database name").to_owned();
    let first = project.migrator(&db).await;
    let second = project.migrator(&db).await;
    let first_run = tokio::spawn(async move { first.up(None).await });
    // The lock session: the backend of this database that holds an advisory lock.
    let holder = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND a.datname = '{database}'"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while inspect.count(&holder).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the first run never took the lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Let the first run reach its migration, then start a second run that waits for the lock.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second_run = tokio::spawn(async move { second.up(None).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    inspect
        .execute(&format!(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND a.datname = '{database}'"
        ))
        .await;
    let first = first_run.await.expect("first run's task");
    let second = second_run.await.expect("second run's task");
    let failure = first.expect_err("the run that lost its lock must not commit");
    assert_eq!(failure.error.kind(), wasmig::ErrorKind::Lock, "{failure}");
    assert!(failure.to_string().contains("lost the migration lock"), "{failure}");
    assert_eq!(second.expect("the second run takes the lock over").steps.len(), 1);
    assert_eq!(inspect.count("SELECT count(*) FROM runs").await, 1, "applied exactly once");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 1);
}
