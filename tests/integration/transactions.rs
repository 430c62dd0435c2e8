//! The backend boundary's transaction contract, on both backends: `execute_and_commit`, which
//! a step's transaction and a backfill batch end with, commits only together with all of its
//! statements.

use std::path::Path;
use std::time::Duration;

use wasmig::db::{Access, BoundStatement, ConnectOptions, Database, DatabaseUrl, NotCommitted, PgEnv, Value, connect};
use wasmig_tests::{Backend, TestDb};

use crate::on_both_backends;

async fn open(db: &TestDb) -> std::sync::Arc<dyn Database> {
    let url = DatabaseUrl::parse(&db.url, Path::new("."), &PgEnv::default()).expect("the test database's URL parses");
    connect(&url, ConnectOptions::default()).await.expect("the test database answers")
}

fn insert(value: Value) -> BoundStatement {
    BoundStatement { statement: "INSERT INTO ledger VALUES ($1)".to_owned(), params: vec![value] }
}

async fn execute_and_commit_commits_only_with_its_statements(backend: Backend) {
    let db = TestDb::new(backend).await;
    let inspect = db.inspect().await;
    inspect.execute("CREATE TABLE ledger (n INTEGER NOT NULL)").await;
    let wasmig = open(&db).await;

    // The last statement fails: the transaction's earlier write must not be committed.
    wasmig.begin(Access::ReadWrite).await.expect("begin");
    wasmig.execute("INSERT INTO ledger VALUES ($1)", &[Value::Int(1)]).await.expect("first insert");
    let failed = wasmig.execute_and_commit(&[insert(Value::Null)]).await;
    assert!(
        matches!(failed, Err(NotCommitted::Statement { index: 0, .. })),
        "a NOT NULL violation is the statement's: {failed:?}"
    );
    wasmig.rollback().await.expect("rolling back after the failure is harmless");
    assert_eq!(inspect.count("SELECT count(*) FROM ledger").await, 0, "nothing of the failed transaction");

    // The second of three fails: neither the first nor the third is committed, and the error
    // names the one that failed (they are sent together, so the third ran against an aborted
    // transaction on PostgreSQL).
    wasmig.begin(Access::ReadWrite).await.expect("begin");
    let failed = wasmig.execute_and_commit(&[insert(Value::Int(1)), insert(Value::Null), insert(Value::Int(3))]).await;
    assert!(matches!(failed, Err(NotCommitted::Statement { index: 1, .. })), "the second one failed: {failed:?}");
    wasmig.rollback().await.expect("rolling back after the failure is harmless");
    assert_eq!(inspect.count("SELECT count(*) FROM ledger").await, 0, "nothing of the batch that failed");

    // They succeed: the earlier write and its own commit together, and the session is usable after.
    wasmig.begin(Access::ReadWrite).await.expect("begin");
    wasmig.execute("INSERT INTO ledger VALUES ($1)", &[Value::Int(2)]).await.expect("second insert");
    let changed = wasmig.execute_and_commit(&[insert(Value::Int(3)), insert(Value::Int(4))]).await;
    assert_eq!(changed, Ok(()));
    assert_eq!(inspect.count("SELECT count(*) FROM ledger").await, 3);
    let rows = wasmig.query("SELECT sum(n) FROM ledger", &[]).await.expect("the session outlives the commit");
    assert_eq!(rows.values.first().and_then(|row| row.first()), Some(&Value::Int(9)));
}
on_both_backends!(execute_and_commit, execute_and_commit_commits_only_with_its_statements);

/// SQLite's calls block: waiting on another connection's write lock (up to its 30 s busy
/// timeout) must not stall the async runtime, or a second task on it (another backfill
/// worker, a progress ticker) stops with it. On a one-thread runtime a tick that lands while
/// `begin` waits shows the wait ran elsewhere.
#[tokio::test(flavor = "current_thread")]
async fn sqlite_waiting_on_a_lock_leaves_the_runtime_free() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("busy.db");
    let wasmig =
        connect(&DatabaseUrl::Sqlite(path.clone()), ConnectOptions::default()).await.expect("open with wasmig");
    let holder = rusqlite::Connection::open(&path).expect("open SQLite");
    holder.execute_batch("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);").expect("lock");

    let released = Arc::new(AtomicBool::new(false));
    let release = {
        let released = released.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            released.store(true, Ordering::SeqCst);
            holder.execute_batch("COMMIT").expect("release the write lock");
        })
    };
    let ticks = Arc::new(AtomicU32::new(0));
    let ticker = {
        let (ticks, released) = (ticks.clone(), released.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if !released.load(Ordering::SeqCst) {
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    wasmig.begin(Access::ReadWrite).await.expect("begin once the other writer commits");
    wasmig.rollback().await.expect("rollback");
    ticker.abort();
    release.join().expect("the releasing thread");
    let ticks = ticks.load(Ordering::SeqCst);
    assert!(ticks >= 10, "the runtime stalled while SQLite waited for the lock: {ticks} ticks in 600 ms");
}
