//! The PostgreSQL backend over tokio-postgres: parameter binding by the server's inferred
//! types, a prepared-statement cache and pipelined `execute_many`; the advisory lock held on a
//! dedicated session is in `lock`.
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
mod error;
mod lock;
mod pending;
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
use self::error::db_error;
use self::pending::{Pending, poisoned};
pub use self::connect::{ConnectOptions, Pooler};
pub use self::conninfo::{ConnInfoError, PgEnv, PgTarget, RootCerts, SslMode};
pub use self::tls::TlsSetupError;
use self::values::{as_params, row_values};
use super::database::{Access, Database, HeldLock, BoundStatement, ResultCap, Rows, ScriptRow, Stale, Value};
use super::dialect::{self, Dialect};
use super::schema::Schema;
use super::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};
use super::transport::Transport;
use crate::guard::GuardSettings;

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
        lock::take(&self.dialer, name, timeout).await
    }

    async fn current_user(&self) -> Result<String, DbError> {
        // Through `query`, whose reads without parameters go out in one round trip.
        let rows = self.query("SELECT current_user::text", &[]).await?;
        match rows.values.into_iter().next().and_then(|row| row.into_iter().next()) {
            Some(Value::Text(user)) => Ok(user),
            _ => Err(DbError::client("unexpected", "current_user returned no text")),
        }
    }
}
