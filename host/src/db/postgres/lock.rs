//! The migration lock on PostgreSQL: a session-level advisory lock on a session of its own,
//! checked by each migration's COMMIT, and the holder a waiting run names.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::connect::Dialer;
use super::error::db_error;
use crate::db::database::{BoundStatement, HeldLock, Value};
use crate::db::error::{DbError, LockError};
use crate::db::lock_wait::HolderNotice;

/// How often a waiting run asks for the advisory lock again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Takes the advisory lock for `name` on a new session opened by `dialer`, asking again until
/// `timeout` has passed. The lock session's statements are typed by the caller, so each is
/// parsed, bound and run in one round trip and one transaction on the server (preparing first
/// costs two of each).
pub(super) async fn take(dialer: &Dialer, name: &str, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError> {
    let failed = |source| LockError::Failed { name: name.to_owned(), source };
    let session = dialer
        .open()
        .await
        .map_err(|e| failed(DbError::client("connection", e.to_string())))?
        .client;
    let key = advisory_key(name);
    let started = Instant::now();
    let mut notice = HolderNotice::default();
    loop {
        let row = session
            .query_typed_one("SELECT pg_try_advisory_lock($1), pg_backend_pid()", &[(&key, Type::INT8)])
            .await
            .map_err(|e| failed(db_error(e)))?;
        let acquired: bool = row.try_get(0).map_err(|e| failed(db_error(e)))?;
        if acquired {
            let pid: i32 = row.try_get(1).map_err(|e| failed(db_error(e)))?;
            let lock = AdvisoryLock { session, key, pid };
            lock.stays_with_its_session().await.map_err(failed)?;
            return Ok(Box::new(lock));
        }
        if started.elapsed() >= timeout {
            return Err(LockError::Timeout { name: name.to_owned(), waited: started.elapsed() });
        }
        // Said once per holder: a run that waits behind another names who it waits for.
        notice.holder(name, lock_holder(&session, key).await, timeout);
        tokio::time::sleep(LOCK_POLL_INTERVAL).await;
    }
}

/// A session-level advisory lock; closing its session (dropping the client) releases it.
struct AdvisoryLock {
    session: Client,
    key: i64,
    /// The lock session's backend, which pg_locks names as the holder.
    pid: i32,
}

impl AdvisoryLock {
    /// Whether the next statement still runs on the backend that took the lock. Behind a
    /// transaction pooler it may not, and a session lock then guards nothing: refused, with
    /// the setting that fixes it. (Whether the pooler moves this statement is chance, so a
    /// pooler is not always caught here; each migration's COMMIT check fails closed anyway.)
    async fn stays_with_its_session(&self) -> Result<(), DbError> {
        let (pid, (high, low)) = (i64::from(self.pid), key_halves(self.key));
        let params = [(&pid as _, Type::INT8), (&high as _, Type::INT8), (&low as _, Type::INT8)];
        let statement = format!("SELECT count(*) {HELD_BY_PID}");
        let row = self.session.query_typed_one(statement.as_str(), &params).await;
        let held: i64 = row.and_then(|row| row.try_get(0)).map_err(db_error)?;
        if held == 0 {
            return Err(DbError::client(
                "pooler",
                "the advisory lock did not stay with its session: the connection goes through a transaction \
                 pooler (PgBouncer's pool_mode = transaction?); set [database] pooler = \"transaction\" in \
                 wasmig.toml, which takes the lock in a table instead",
            ));
        }
        Ok(())
    }

    fn check(&self) -> BoundStatement {
        BoundStatement { statement: format!("SELECT 1 / count(*)::int {HELD_BY_PID}"), params: self.held_params() }
    }

    /// [`HELD_BY_PID`]'s parameters: the holder's pid and the key, which pg_locks shows as its
    /// high and low 32 bits.
    fn held_params(&self) -> Vec<Value> {
        let (high, low) = key_halves(self.key);
        vec![Value::Int(i64::from(self.pid)), Value::Int(high), Value::Int(low)]
    }
}

/// The rows of pg_locks that show the advisory lock held by a backend: `$1` its pid, `$2` and
/// `$3` the key's halves.
const HELD_BY_PID: &str = "FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1 \
                           AND classid::bigint = $2 AND objid::bigint = $3 AND objsubid = 1";

#[async_trait]
impl HeldLock for AdvisoryLock {
    async fn release(self: Box<Self>) -> Result<(), DbError> {
        let unlock = "SELECT pg_advisory_unlock($1)";
        self.session.query_typed(unlock, &[(&self.key, Type::INT8)]).await.map(|_| ()).map_err(db_error)
    }

    fn commit_check(&self) -> Option<BoundStatement> {
        Some(self.check())
    }
}

/// Who holds the advisory lock `key` in this database (advisory locks are per database, and
/// other databases on the server may hold the same key): the holder's application_name, pid and client address,
/// and since when its lock session is connected (it connects to take the lock, so that is
/// when it took it). `None` when that cannot be read (the holder just let go, or the role may
/// not see other sessions).
async fn lock_holder(session: &Client, key: i64) -> Option<String> {
    let (high, low) = key_halves(key);
    let row = session
        .query_typed_opt(
            "SELECT coalesce(nullif(a.application_name, ''), 'a client'), a.pid, \
             coalesce(host(a.client_addr), 'local socket'), \
             to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 \
             AND l.objid::bigint = $2 AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
            &[(&high, Type::INT8), (&low, Type::INT8)],
        )
        .await
        .ok()??;
    let application: String = row.try_get(0).ok()?;
    let pid: i32 = row.try_get(1).ok()?;
    let host: String = row.try_get(2).ok()?;
    let since: Option<String> = row.try_get(3).ok()?;
    Some(format!("{application}/{pid}/{host} since {}", since.unwrap_or_else(|| "an unknown time".into())))
}

/// A key's high and low 32 bits, as pg_locks shows them (classid and objid).
fn key_halves(key: i64) -> (i64, i64) {
    (i64::from((key >> 32) as u32), i64::from(key as u32))
}

/// The advisory lock key for a lock name: stable across runs, versions and platforms.
fn advisory_key(name: &str) -> i64 {
    let hash = blake3::hash(format!("wasmig migration lock\0{name}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_key_is_stable() {
        assert_eq!(advisory_key("public.wasmig_history"), advisory_key("public.wasmig_history"));
        assert_ne!(advisory_key("public.wasmig_history"), advisory_key("billing.wasmig_history"));
    }
}
