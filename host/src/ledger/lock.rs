//! The migration lock in `table` mode: a row in `<history>_lock`, held under a lease that a
//! heartbeat renews, for connections on which a session advisory lock does not hold (a
//! transaction pooler such as PgBouncer's transaction mode, databases without advisory locks).
//!
//! Taking it is one `INSERT … ON CONFLICT … DO UPDATE … WHERE the lease has ended`, so two runs
//! cannot both win; the winner's token is its proof. A holder that dies (`kill -9`) stops
//! renewing, and the next run takes the lock once the lease ends. Each migration's COMMIT
//! carries a check that the token still holds an unexpired lease (invariant 8), so a holder
//! whose lease ran out commits nothing more. Every statement stands alone in its own
//! transaction, which is all a transaction pooler keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::core::{Human, host_name};
use crate::db::{self, ConnectOptions, Database, DatabaseUrl, DbError, HeldLock, HolderNotice, BoundStatement, LockError, Value};

use super::schema;
use super::table::HistoryTable;

/// How the migration lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// The backend's own, tied to a session: PostgreSQL's advisory lock on a connection of its
    /// own, SQLite's lock file. The default.
    Session,
    /// A row in the lock table under a lease of this length, renewed every third of it.
    /// PostgreSQL only: SQLite keeps its lock file, which no pooler stands in front of.
    Table { lease: Duration },
}

impl LockMode {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
}

/// How often a waiting run tries again.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Takes the lock `name` in the lock table beside `history`, on a connection of its own to
/// `url`, waiting up to `timeout`.
pub async fn take(
    url: &DatabaseUrl,
    options: ConnectOptions,
    history: &HistoryTable,
    name: &str,
    timeout: Duration,
    lease: Duration,
) -> Result<Box<dyn HeldLock>, LockError> {
    let failed = |source: DbError| LockError::Failed { name: name.to_owned(), source };
    let db = db::connect(url, options).await.map_err(|e| failed(DbError::client("connection", e.to_string())))?;
    let table = history.locks();
    create_table(db.as_ref(), history).await.map_err(failed)?;
    let token = new_token();
    let holder = format!("wasmig/{}/{}", std::process::id(), host_name());
    let lease_ms = Value::Int(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let take = format!(
        "INSERT INTO {table} AS l (name, token, holder, acquired_at, expires_at) \
         VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp() + $4::float8 * interval '1 millisecond') \
         ON CONFLICT (name) DO UPDATE SET token = excluded.token, holder = excluded.holder, \
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at \
         WHERE l.expires_at < clock_timestamp() RETURNING token"
    );
    let started = Instant::now();
    let mut notice = HolderNotice::default();
    loop {
        let params = [Value::Text(name.to_owned()), Value::Text(token.clone()), Value::Text(holder.clone()), lease_ms.clone()];
        let taken = db.query(&take, &params).await.map_err(failed)?;
        if !taken.values.is_empty() {
            let heartbeat = tokio::spawn(renew(db.clone(), table.clone(), name.to_owned(), token.clone(), lease));
            return Ok(Box::new(TableLock { db, table, name: name.to_owned(), token, heartbeat }));
        }
        if started.elapsed() >= timeout {
            return Err(LockError::Timeout { name: name.to_owned(), waited: started.elapsed() });
        }
        notice.holder(name, current_holder(db.as_ref(), &table, name).await, timeout);
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Creates the lock table (and the history's schema) if missing. Two runs may race to create
/// it, and PostgreSQL's `IF NOT EXISTS` can still fail the loser with a duplicate: the table
/// is there then, which is all that is needed.
async fn create_table(db: &dyn Database, history: &HistoryTable) -> Result<(), DbError> {
    let script = schema::lock_table_script(history, db.dialect());
    match db.run_script(&script).await {
        Ok(_) => Ok(()),
        // The loser of a concurrent CREATE: 23505 (pg_type's unique index), 42710 (its row
        // type exists), 42P07 (the table exists).
        Err(error) if ["23505", "42710", "42P07"].contains(&error.code.as_str()) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Who holds the lock, and when its lease ends, for a waiting run's message.
async fn current_holder(db: &dyn Database, table: &HistoryTable, name: &str) -> Option<String> {
    let rows = db
        .query(
            &format!(
                "SELECT holder, to_char(acquired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                 greatest(0, extract(epoch FROM expires_at - clock_timestamp()))::float8 \
                 FROM {table} WHERE name = $1"
            ),
            &[Value::Text(name.to_owned())],
        )
        .await
        .ok()?;
    match rows.values.first().map(Vec::as_slice) {
        Some([Value::Text(holder), Value::Text(since), Value::Float(left)]) => {
            let left = Duration::try_from_secs_f64(*left).unwrap_or_default();
            Some(format!("{holder} since {since}, its lease ending in {} unless renewed", Human(left)))
        }
        _ => None,
    }
}

/// Renews the lease every third of it until the lock is released (the task is aborted) or
/// the lease is found gone, which the commit check then reports.
async fn renew(db: Arc<dyn Database>, table: HistoryTable, name: String, token: String, lease: Duration) {
    let statement = format!(
        "UPDATE {table} SET expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond' \
         WHERE name = $1 AND token = $2"
    );
    let lease_ms = Value::Int(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    loop {
        tokio::time::sleep(lease / 3).await;
        let params = [Value::Text(name.clone()), Value::Text(token.clone()), lease_ms.clone()];
        match db.execute(&statement, &params).await {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!("the migration lock {name} was taken over after its lease ended; this run stops at its next commit");
                return;
            }
            Err(error) => tracing::warn!(%error, "could not renew the migration lock {name}'s lease; retrying"),
        }
    }
}

struct TableLock {
    db: Arc<dyn Database>,
    table: HistoryTable,
    name: String,
    token: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for TableLock {
    fn drop(&mut self) {
        // Without its heartbeat the row expires at the end of its lease.
        self.heartbeat.abort();
    }
}

#[async_trait]
impl HeldLock for TableLock {
    async fn release(self: Box<Self>) -> Result<(), DbError> {
        self.heartbeat.abort();
        let statement = format!("DELETE FROM {} WHERE name = $1 AND token = $2", self.table);
        self.db.execute(&statement, &[Value::Text(self.name.clone()), Value::Text(self.token.clone())]).await.map(|_| ())
    }

    fn commit_check(&self) -> Option<BoundStatement> {
        Some(BoundStatement {
            statement: format!(
                "SELECT 1 / count(*)::int FROM {} WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp()",
                self.table
            ),
            params: vec![Value::Text(self.name.clone()), Value::Text(self.token.clone())],
        })
    }
}

/// A token no other run holds: this process, this instant, and a counter, hashed.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{}:{}:{nanos}:{}", host_name(), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    blake3::hash(seed.as_bytes()).to_hex()[..32].to_owned()
}
