//! The PostgreSQL backend over tokio-postgres: parameter binding by the server's inferred
//! types, a prepared-statement cache, pipelined `execute_many`, and the advisory lock held on
//! a dedicated session.
//!
//! Transactions are plain `BEGIN`/`COMMIT` on the shared client: a tokio-postgres
//! `Transaction<'_>` borrows the client and cannot live inside a wasmtime `Store`.
//!
//! `BEGIN`, the `SET LOCAL`s that raise a component call's walls and the `RESET`s that lower
//! them are not sent on their own: they wait in `pending` and go out pipelined with the next
//! request, which saves three of a backfill batch's round trips. Order on the wire is kept, so
//! the server still runs them first.

mod catalog;
mod connect;
mod conninfo;
mod pgpass;
mod tls;
mod values;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::{join_all, join3, try_join, try_join_all};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage, Statement};

use self::connect::Dialer;
pub use self::connect::{ConnectOptions, Pooler};
pub use self::conninfo::{ConnInfoError, PgEnv, PgTarget, RootCerts, SslMode};
pub use self::tls::TlsSetupError;
use self::values::{as_params, row_values};
use super::database::{Access, Database, HeldLock, BoundStatement, ResultCap, Rows, ScriptRow, Stale, Value};
use super::dialect::{self, Dialect};
use super::schema::Schema;
use super::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};
use super::transport::Transport;
use crate::core::Human;
use crate::guard::GuardSettings;

/// How often a waiting run asks for the advisory lock again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(200);
pub struct PostgresDatabase {
    client: Arc<Client>,
    /// Opens the lock session and cancel requests the way the first session was opened.
    dialer: Dialer,
    transport: Transport,
    statements: Mutex<HashMap<String, Cached>>,
    /// Simple-query text not sent yet: it goes first, pipelined, with the next request.
    pending: Pending,
    /// While a component call runs: its deadline, and the time limit (`limits.timeout_secs`)
    /// that set it.
    deadline: Mutex<Option<(Instant, Duration)>>,
    /// Behind a transaction pooler: each transaction may run on another server connection,
    /// so statements are prepared afresh in each, dropped on the server before it ends, and a
    /// statement outside a transaction gets one of its own.
    pooled: bool,
    /// Whether an explicit transaction is open (its BEGIN sent or queued).
    in_transaction: AtomicBool,
    /// Behind a transaction pooler, statements sent together (a look that reads several ledger
    /// tables at once) take their transactions of their own in turn: two BEGINs interleaved on
    /// one session would make one transaction, which the first COMMIT ends.
    pooled_turn: tokio::sync::Mutex<()>,
}

/// A prepared statement, and whether a component's call prepared it: those may name the
/// project's tables, which a migration changes, where the engine's own name only its ledger.
struct Cached {
    statement: Statement,
    by_component: bool,
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
}

/// The queue of simple-query text waiting for the next request. Fails closed: the walls of a
/// component call travel this way, so a queue that cannot be written (its lock poisoned by a
/// panic elsewhere) refuses the call instead of letting it run without them.
#[derive(Default)]
struct Pending(Mutex<String>);

impl Pending {
    fn push(&self, script: &str) -> Result<(), DbError> {
        let mut pending = self.0.lock().map_err(|_| poisoned())?;
        if !pending.is_empty() {
            pending.push_str("; ");
        }
        pending.push_str(script);
        Ok(())
    }

    /// What is queued, taken: a poisoned queue is an error, since what it held (BEGIN, the
    /// walls) must not be silently dropped.
    fn take(&self) -> Result<String, DbError> {
        self.0.lock().map(|mut pending| std::mem::take(&mut *pending)).map_err(|_| poisoned())
    }

    /// Forgets what is queued, poisoned or not: a ROLLBACK must still go out.
    fn clear(&self) {
        match self.0.lock() {
            Ok(mut pending) => pending.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }
}

impl PostgresDatabase {
    /// Connects to `target`, waiting for it as `options` allow.
    pub async fn connect(target: &PgTarget, options: ConnectOptions) -> Result<Self, ConnectError> {
        let dialer = Dialer::new(target, options)?;
        let opened = dialer.open().await?;
        Ok(PostgresDatabase {
            client: Arc::new(opened.client),
            dialer,
            transport: opened.transport,
            statements: Mutex::new(HashMap::new()),
            pending: Pending::default(),
            deadline: Mutex::new(None),
            pooled: options.pooler == Pooler::Transaction,
            in_transaction: AtomicBool::new(false),
            pooled_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// What ends a transaction: behind a transaction pooler, the server connection's prepared
    /// statements go with it, in the same request, while this client still holds it (another
    /// client's statement of the same name would collide with them there).
    fn ending(&self, end: End) -> &'static str {
        match (self.pooled, end) {
            (true, End::Commit) => "COMMIT; DEALLOCATE ALL",
            (true, End::Rollback) => "ROLLBACK; DEALLOCATE ALL",
            (false, End::Commit) => "COMMIT",
            (false, End::Rollback) => "ROLLBACK",
        }
    }

    /// After a transaction ended: behind a transaction pooler, what was prepared is gone.
    fn ended(&self) {
        self.in_transaction.store(false, Ordering::SeqCst);
        if self.pooled
            && let Ok(mut cache) = self.statements.lock()
        {
            cache.clear();
        }
    }

    /// Runs `work` (one statement) in a transaction of its own when a transaction pooler could
    /// otherwise send its Parse and its Execute to different server connections; as it is
    /// everywhere else.
    async fn pinned<T>(&self, work: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
        if !self.pooled {
            return work.await;
        }
        let _turn = self.pooled_turn.lock().await;
        if self.in_transaction.load(Ordering::SeqCst) {
            return work.await;
        }
        self.begin(Access::ReadWrite).await?;
        let result = work.await;
        let end = self.ending(if result.is_ok() { End::Commit } else { End::Rollback });
        let ended = self.after_pending(self.client.batch_execute(end)).await;
        self.ended();
        let value = result?;
        ended.map(|()| value)
    }

    async fn prepare(&self, statement: &str) -> Result<Statement, DbError> {
        if let Some(prepared) = self.cached(statement) {
            return Ok(prepared);
        }
        // A statement is parsed under the session's settings (its search_path), so what is
        // pending (a RESET) must reach the server first.
        let pending = self.take_pending()?;
        if !pending.is_empty() {
            self.client.batch_execute(&pending).await.map_err(db_error)?;
        }
        let prepared = self.client.prepare(statement).await.map_err(db_error)?;
        let by_component = self.in_component_call();
        if let Ok(mut cache) = self.statements.lock() {
            cache.insert(statement.to_owned(), Cached { statement: prepared.clone(), by_component });
        }
        Ok(prepared)
    }

    /// Queues simple-query text to go out with the next request.
    fn defer(&self, script: &str) -> Result<(), DbError> {
        self.pending.push(script)
    }

    fn take_pending(&self) -> Result<String, DbError> {
        self.pending.take()
    }

    /// Runs `request` after whatever is pending, both in one round trip.
    async fn after_pending<T>(
        &self,
        request: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        let pending = self.take_pending()?;
        if pending.is_empty() {
            return request.await.map_err(db_error);
        }
        // try_join polls the pending script first, so it is queued on the connection first.
        let ((), value) = try_join(self.client.batch_execute(&pending), request).await.map_err(db_error)?;
        Ok(value)
    }

    /// Runs `work` within the component call's deadline, if one is set. A statement still
    /// running when it passes is cancelled on the server, and `work` is awaited to its end so
    /// that the connection is idle again (and the cancel cannot reach a later statement).
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
        let deadline = *self.deadline.lock().map_err(|_| poisoned())?;
        let Some((at, timeout)) = deadline else { return work.await };
        let mut work = std::pin::pin!(work);
        tokio::select! {
            done = &mut work => done,
            () = tokio::time::sleep_until(at.into()) => {
                self.cancel_running().await;
                let _ = work.await;
                let seconds = timeout.as_secs_f64();
                Err(DbError::new(
                    DbErrorKind::Deadline,
                    format!("the statement was cancelled at the call's time limit of {seconds}s (limits.timeout_secs)"),
                ))
            }
        }
    }

    /// Asks the server to cancel whatever this session runs now.
    async fn cancel_running(&self) {
        if let Err(error) = self.client.cancel_token().cancel_query(self.dialer.connector()).await {
            tracing::warn!(%error, "could not cancel a component's statement; it runs on until statement_timeout");
        }
    }

    /// Whether a component's call is running (its deadline set); a lock that cannot be read
    /// says yes, the side that keeps the more careful path.
    fn in_component_call(&self) -> bool {
        self.deadline.lock().map_or(true, |deadline| deadline.is_some())
    }

    fn cached(&self, statement: &str) -> Option<Statement> {
        self.statements.lock().ok()?.get(statement).map(|cached| cached.statement.clone())
    }
}

#[async_trait]
impl Database for PostgresDatabase {
    fn dialect(&self) -> &'static Dialect {
        &dialect::POSTGRES
    }

    fn transport(&self) -> Transport {
        self.transport
    }

    async fn run_script(&self, script: &str) -> Result<Vec<ScriptRow>, DbError> {
        let messages = self.after_pending(self.client.simple_query(script)).await?;
        let mut statement = 1;
        let mut rows = Vec::new();
        for message in messages {
            match message {
                SimpleQueryMessage::Row(row) => {
                    rows.push(ScriptRow { statement, first_column: row.try_get(0).ok().flatten().map(str::to_owned) })
                }
                SimpleQueryMessage::CommandComplete(_) => statement += 1,
                _ => {}
            }
        }
        Ok(rows)
    }

    async fn run_script_autocommit(&self, script: &str) -> Result<(), DbError> {
        // Statements sent together in one simple query run as one implicit transaction, which
        // CREATE INDEX CONCURRENTLY refuses: each goes in a query of its own, split with
        // PostgreSQL's own grammar (a `;` in a string or a dollar-quoted body stays put).
        let statements = pg_query::split_with_parser(script)
            .map_err(|error| DbError::reported("42601", format!("cannot split the script into statements: {error}")))?;
        for statement in statements {
            self.after_pending(self.client.simple_query(statement)).await?;
        }
        Ok(())
    }

    async fn back_up_to(&self, to: &Path) -> Result<(), DbError> {
        Err(DbError::client(
            "backup",
            format!("PostgreSQL has no backup a client can take to {}; [backup] command takes it", to.display()),
        ))
    }

    async fn invalid_indexes(&self) -> Result<Vec<String>, DbError> {
        let rows = self
            .query(
                "SELECT CAST(CAST(indexrelid AS regclass) AS text) FROM pg_catalog.pg_index WHERE NOT indisvalid \
                 ORDER BY 1",
                &[],
            )
            .await?;
        Ok(rows
            .values
            .into_iter()
            .filter_map(|row| match row.into_iter().next() {
                Some(Value::Text(name)) => Some(name),
                _ => None,
            })
            .collect())
    }

    async fn schema(&self) -> Result<Schema, DbError> {
        catalog::snapshot(self).await
    }

    async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.query_capped(statement, params, ResultCap::NONE).await
    }

    async fn query_capped(&self, statement: &str, params: &[Value], cap: ResultCap) -> Result<Rows, DbError> {
        self.pinned(self.bounded(async {
            let (stream, mut columns) = if params.is_empty() && !self.in_component_call() && self.cached(statement).is_none()
            {
                // The engine's own reads without parameters (the history, the steps started)
                // are parsed, bound and run in one round trip, one transaction on the server,
                // where preparing first costs two of each. A component's keep the prepared
                // path: it tells the columns of an empty result too.
                let none = std::iter::empty::<(&(dyn ToSql + Sync), Type)>();
                (self.after_pending(self.client.query_typed_raw(statement, none)).await?, None)
            } else {
                let prepared = self.prepare(statement).await?;
                let columns = prepared.columns().iter().map(|c| c.name().to_owned()).collect();
                (self.after_pending(self.client.query_raw(&prepared, as_params(params))).await?, Some(columns))
            };
            let mut stream = std::pin::pin!(stream);
            let (mut values, mut bytes) = (Vec::new(), 0u64);
            while let Some(row) = stream.next().await {
                let row = row.map_err(db_error)?;
                if columns.is_none() {
                    columns = Some(row.columns().iter().map(|c| c.name().to_owned()).collect());
                }
                let row = row_values(&row)?;
                bytes += row.iter().map(Value::cost).sum::<u64>();
                values.push(row);
                if let Some(passed) = cap.passed(values.len() as u64, bytes) {
                    // Stop the server producing rows nobody will read, then drain what is
                    // already on its way, so the session is idle when the guest is told.
                    self.cancel_running().await;
                    while stream.next().await.is_some() {}
                    return Err(passed);
                }
            }
            Ok(Rows { columns: columns.unwrap_or_default(), values })
        }))
        .await
    }

    async fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        self.pinned(self.bounded(async {
            let prepared = self.prepare(statement).await?;
            self.after_pending(self.client.execute(&prepared, &as_params(params))).await
        }))
        .await
    }

    async fn execute_many(&self, statement: &str, param_sets: &[Vec<Value>]) -> Result<u64, DbError> {
        self.pinned(self.bounded(async {
            let prepared = self.prepare(statement).await?;
            let bound: Vec<Vec<&(dyn ToSql + Sync)>> = param_sets.iter().map(|set| as_params(set)).collect();
            // Polling all executions together lets tokio-postgres pipeline them: one round trip.
            let counts = self
                .after_pending(try_join_all(bound.iter().map(|params| self.client.execute(&prepared, params))))
                .await?;
            Ok(counts.iter().sum())
        }))
        .await
    }

    async fn begin(&self, access: Access) -> Result<(), DbError> {
        let begin = match access {
            Access::ReadWrite => "BEGIN",
            Access::ReadOnly => "BEGIN READ ONLY",
        };
        self.in_transaction.store(true, Ordering::SeqCst);
        self.defer(begin)
    }

    async fn commit(&self) -> Result<(), DbError> {
        // A separate message from what is pending: if that fails, COMMIT still ends the
        // transaction (rolling it back) instead of being skipped with it.
        let committed = self.after_pending(self.client.batch_execute(self.ending(End::Commit))).await;
        self.ended();
        committed
    }

    async fn execute_and_commit(&self, statements: &[BoundStatement]) -> Result<(), NotCommitted> {
        let failed = |index| move |error| NotCommitted::Statement { index, error };
        let mut prepared = Vec::with_capacity(statements.len());
        for (index, bound) in statements.iter().enumerate() {
            prepared.push(self.prepare(&bound.statement).await.map_err(failed(index))?);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements.iter().map(|bound| as_params(&bound.params)).collect();
        let pending = self.take_pending().map_err(failed(0))?;
        let before = async { if pending.is_empty() { Ok(()) } else { self.client.batch_execute(&pending).await } };
        // join3 polls in order, and join_all (for so few) polls its futures in order, so all of
        // them go out in order in one round trip. A failure before COMMIT aborts the
        // transaction, and the server then answers COMMIT by rolling back. Every answer is
        // awaited, so the connection is idle when this returns.
        let executed = join_all(prepared.iter().zip(&params).map(|(statement, params)| self.client.execute(statement, params)));
        let (before, executed, committed) = join3(before, executed, self.client.batch_execute(self.ending(End::Commit))).await;
        self.ended();
        before.map_err(|e| failed(0)(db_error(e)))?;
        for (index, result) in executed.into_iter().enumerate() {
            result.map_err(|e| failed(index)(db_error(e)))?;
        }
        committed.map_err(|e| NotCommitted::Commit(db_error(e)))
    }

    async fn rollback(&self) -> Result<(), DbError> {
        // ROLLBACK undoes SET LOCAL too; a pending RESET would only fail in an aborted
        // transaction, and a pending BEGIN has nothing to roll back.
        self.pending.clear();
        let rolled_back = self.client.batch_execute(self.ending(End::Rollback)).await.map_err(db_error);
        self.ended();
        rolled_back
    }

    fn forget_prepared_statements(&self, stale: Stale) {
        // The engine's own statements read and write only the ledger's tables, which no
        // migration changes; preparing them again after every step cost a round trip each.
        if let Ok(mut cache) = self.statements.lock() {
            match stale {
                Stale::ProjectTables => cache.retain(|_, cached| !cached.by_component),
                Stale::LedgerTables => cache.clear(),
            }
        }
    }

    async fn enter_guarded(&self, guard: &GuardSettings) -> Result<(), DbError> {
        let mut script = format!(
            "SET LOCAL search_path TO {}; SET LOCAL standard_conforming_strings = on; \
             SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {};",
            crate::guard::postgres::GUARDED_SEARCH_PATH,
            guard.statement_timeout.as_millis(),
            guard.lock_timeout.as_millis()
        );
        if let Some(role) = &guard.postgres_role {
            // The role name was validated as an identifier when the config was read.
            script.push_str(&format!(" SET LOCAL ROLE \"{role}\";"));
        }
        *self.deadline.lock().map_err(|_| poisoned())? =
            Some((Instant::now() + guard.call_timeout, guard.call_timeout));
        // Queued behind a pending BEGIN and sent with the component's first statement, in
        // order on the wire: the walls are up before that statement runs, and if raising them
        // fails, the transaction is aborted, so nothing the component sends can run without them.
        self.defer(&script)
    }

    async fn leave_guarded(&self) -> Result<(), DbError> {
        match self.deadline.lock() {
            Ok(mut deadline) => *deadline = None,
            Err(poisoned) => *poisoned.into_inner() = None,
        }
        // Sent ahead of the engine's next statement, so that statement runs with the walls down.
        self.defer(
            "RESET ROLE; RESET search_path; RESET standard_conforming_strings; \
             RESET statement_timeout; RESET lock_timeout",
        )
    }

    async fn lock(&self, name: &str, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError> {
        let failed = |source| LockError::Failed { name: name.to_owned(), source };
        let session = self
            .dialer
            .open()
            .await
            .map_err(|e| failed(DbError::client("connection", e.to_string())))?
            .client;
        let key = advisory_key(name);
        let started = Instant::now();
        let mut holder_shown = None;
        loop {
            let row = session
                .query_one("SELECT pg_try_advisory_lock($1), pg_backend_pid()", &[&key])
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
            let holder = lock_holder(&session, key).await;
            if holder.is_some() && holder != holder_shown {
                tracing::info!(
                    "waiting for the migration lock {name} held by {} (gives up after {})",
                    holder.as_deref().unwrap_or_default(),
                    Human(timeout)
                );
                holder_shown = holder;
            }
            tokio::time::sleep(LOCK_POLL_INTERVAL).await;
        }
    }

    async fn current_user(&self) -> Result<String, DbError> {
        let row = self.pinned(self.after_pending(self.client.query_one("SELECT current_user::text", &[]))).await?;
        row.try_get(0).map_err(db_error)
    }
}

fn poisoned() -> DbError {
    DbError::client("internal", "the connection's request queue was poisoned by an earlier panic; the call is refused")
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
        let params = self.held_params();
        let statement = format!("SELECT count(*) {HELD_BY_PID}");
        let row = self.session.query_one(statement.as_str(), &as_params(&params)).await;
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
        let high = i64::from((self.key >> 32) as u32);
        let low = i64::from(self.key as u32);
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
        self.session.execute("SELECT pg_advisory_unlock($1)", &[&self.key]).await.map(|_| ()).map_err(db_error)
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
    let high = i64::from((key >> 32) as u32);
    let low = i64::from(key as u32);
    let row = session
        .query_opt(
            "SELECT coalesce(nullif(a.application_name, ''), 'a client'), a.pid, \
             coalesce(host(a.client_addr), 'local socket'), \
             to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 \
             AND l.objid::bigint = $2 AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
            &[&high, &low],
        )
        .await
        .ok()??;
    let application: String = row.try_get(0).ok()?;
    let pid: i32 = row.try_get(1).ok()?;
    let host: String = row.try_get(2).ok()?;
    let since: Option<String> = row.try_get(3).ok()?;
    Some(format!("{application}/{pid}/{host} since {}", since.unwrap_or_else(|| "an unknown time".into())))
}

/// The advisory lock key for a lock name: stable across runs, versions and platforms.
fn advisory_key(name: &str) -> i64 {
    let hash = blake3::hash(format!("wasmig migration lock\0{name}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(key)
}
fn db_error(error: tokio_postgres::Error) -> DbError {
    match error.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_owned();
            if let Some(detail) = db.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            DbError::reported(db.code().code(), message)
        }
        None => DbError::client("client", describe(&error)),
    }
}

/// The error with its causes, which tokio-postgres keeps out of its own `Display`.
fn describe(error: &tokio_postgres::Error) -> String {
    crate::core::error_chain(error)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_queue_refuses_instead_of_dropping_the_walls() {
        let pending = std::sync::Arc::new(Pending::default());
        pending.push("BEGIN").unwrap();
        let holder = pending.clone();
        let panicked = std::thread::spawn(move || {
            let _held = holder.0.lock().unwrap();
            panic!("poison the queue");
        })
        .join();
        assert!(panicked.is_err());
        let refused = pending.push("SET LOCAL search_path TO pg_catalog").unwrap_err();
        assert!(refused.message.contains("poisoned"), "{refused}");
        assert!(pending.take().is_err(), "a poisoned queue is not read as empty");
        pending.clear();
    }

    #[test]
    fn advisory_key_is_stable() {
        assert_eq!(advisory_key("public.wasmig_history"), advisory_key("public.wasmig_history"));
        assert_ne!(advisory_key("public.wasmig_history"), advisory_key("billing.wasmig_history"));
    }
}
