//! The backend boundary's transaction contract, on both backends: `execute_and_commit`, which
//! a backfill batch ends with, commits only together with its statement.

use std::path::Path;
use std::time::Duration;

use wasmig::db::{Access, Database, DatabaseUrl, NotCommitted, Value, connect};
use wasmig_tests::{Backend, TestDb};

use crate::on_both_backends;

async fn open(db: &TestDb) -> std::sync::Arc<dyn Database> {
    let url = DatabaseUrl::parse(&db.url, Path::new(".")).expect("the test database's URL parses");
    connect(&url, Duration::from_secs(10)).await.expect("the test database answers")
}

async fn execute_and_commit_commits_only_with_its_statement(backend: Backend) {
    let db = TestDb::new(backend).await;
    let inspect = db.inspect().await;
    inspect.execute("CREATE TABLE ledger (n INTEGER NOT NULL)").await;
    let wasmig = open(&db).await;

    // The last statement fails: the transaction's earlier write must not be committed.
    wasmig.begin(Access::ReadWrite).await.expect("begin");
    wasmig.execute("INSERT INTO ledger VALUES ($1)", &[Value::Int(1)]).await.expect("first insert");
    let failed = wasmig.execute_and_commit("INSERT INTO ledger VALUES ($1)", &[Value::Null]).await;
    assert!(matches!(failed, Err(NotCommitted::Statement(_))), "a NOT NULL violation is the statement's: {failed:?}");
    wasmig.rollback().await.expect("rolling back after the failure is harmless");
    assert_eq!(inspect.count("SELECT count(*) FROM ledger").await, 0, "nothing of the failed transaction");

    // It succeeds: the earlier write and its own commit together, and the session is usable after.
    wasmig.begin(Access::ReadWrite).await.expect("begin");
    wasmig.execute("INSERT INTO ledger VALUES ($1)", &[Value::Int(2)]).await.expect("second insert");
    let changed = wasmig.execute_and_commit("INSERT INTO ledger VALUES ($1)", &[Value::Int(3)]).await;
    assert_eq!(changed, Ok(1));
    assert_eq!(inspect.count("SELECT count(*) FROM ledger").await, 2);
    let rows = wasmig.query("SELECT sum(n) FROM ledger", &[]).await.expect("the session outlives the commit");
    assert_eq!(rows.values.len(), 1);
}
on_both_backends!(execute_and_commit, execute_and_commit_commits_only_with_its_statement);
