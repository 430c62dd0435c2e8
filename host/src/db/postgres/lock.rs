//! The migration lock on PostgreSQL: a session-level advisory lock on a session of its own,
//! checked by each migration's COMMIT, and the holder a waiting run names.
//!
//! The lock session also holds a second advisory lock, its mark: a key no other session
//! takes (drawn anew for each run). The COMMIT check tries to take the mark for its own
//! transaction: that fails while the lock session lives, and succeeds (so the check divides
//! by zero and the COMMIT fails) once it has ended. A hash lookup in the server's lock table,
//! where reading pg_locks copies out every lock of the server at each commit.

use std::sync::atomic::{AtomicU64, Ordering};
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
    let (key, mark) = (advisory_key(name), session_mark(name));
    let started = Instant::now();
    let mut notice = HolderNotice::default();
    // The mark is taken only with the lock (CASE evaluates in order): a waiting run holds no
    // advisory lock at all. NULL: the lock is taken by another run; false: the mark is.
    let ask = "SELECT CASE WHEN pg_try_advisory_lock($1) THEN pg_try_advisory_lock($2) END, pg_backend_pid()";
    loop {
        let row = session
            .query_typed_one(ask, &[(&key, Type::INT8), (&mark, Type::INT8)])
            .await
            .map_err(|e| failed(db_error(e)))?;
        let acquired: Option<bool> = row.try_get(0).map_err(|e| failed(db_error(e)))?;
        if acquired == Some(false) {
            // Another session holds a key drawn for this run alone: the check would pass for
            // the wrong session, so the lock is let go with this session.
            return Err(failed(DbError::client(
                "lock",
                format!("another session holds this run's lock mark {mark}; run the command again"),
            )));
        }
        if acquired == Some(true) {
            let pid: i32 = row.try_get(1).map_err(|e| failed(db_error(e)))?;
            let lock = AdvisoryLock { session, key, mark, pid };
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
    /// The lock session's mark, which each COMMIT's check finds held (module docs).
    mark: i64,
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

    /// Fails with SQLSTATE 22012 unless the lock session still holds its mark: taking the
    /// mark for this transaction succeeds only when no session holds it.
    fn check(&self) -> BoundStatement {
        BoundStatement {
            statement: "SELECT 1 / (NOT pg_catalog.pg_try_advisory_xact_lock($1))::int".to_owned(),
            params: vec![Value::Int(self.mark)],
        }
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

/// A key for this lock session alone: the name, this process, a count of the marks it drew
/// and the time, hashed, so that no other session (here or on another machine) draws it.
fn session_mark(name: &str) -> i64 {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let drawn = DRAWN.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hashed_key(&format!("wasmig lock session mark\0{name}\0{}\0{drawn}\0{}", std::process::id(), now.as_nanos()))
}

/// The advisory lock key for a lock name: stable across runs, versions and platforms.
fn advisory_key(name: &str) -> i64 {
    hashed_key(&format!("wasmig migration lock\0{name}"))
}

/// An advisory lock key: the first eight bytes of `seed`'s blake3 hash.
fn hashed_key(seed: &str) -> i64 {
    let hash = blake3::hash(seed.as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_differ_from_run_to_run_and_from_the_lock_key() {
        let (first, second) = (session_mark("public.wasmig_history"), session_mark("public.wasmig_history"));
        assert_ne!(first, second);
        assert_ne!(first, advisory_key("public.wasmig_history"));
    }

    #[test]
    fn advisory_key_is_stable() {
        assert_eq!(advisory_key("public.wasmig_history"), advisory_key("public.wasmig_history"));
        assert_ne!(advisory_key("public.wasmig_history"), advisory_key("billing.wasmig_history"));
    }
}
