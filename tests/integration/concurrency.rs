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
