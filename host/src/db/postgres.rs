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

use std::collections::HashMap;
use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::future::{join3, try_join, try_join_all};
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row, SimpleQueryMessage, Statement};

use crate::guard::GuardSettings;

use super::database::{Access, Database, HeldLock, LockCheck, ResultCap, Rows, ScriptRow, Value};
use super::dialect::{self, Dialect};
use super::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};

/// How often a waiting run asks for the advisory lock again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often an unreachable server is tried again while connecting.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(250);

pub struct PostgresDatabase {
    client: Arc<Client>,
    config: tokio_postgres::Config,
    redacted_url: String,
    statements: Mutex<HashMap<String, Statement>>,
    /// Simple-query text not sent yet: it goes first, pipelined, with the next request.
    pending: Pending,
    /// While a component call runs: its deadline, and the time limit (`limits.timeout_secs`)
    /// that set it.
    deadline: Mutex<Option<(Instant, Duration)>>,
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
    /// Connects with the `postgres://` URL `raw`, which messages show as `redacted_url`.
    pub async fn connect(raw: &str, redacted_url: String, timeout: Duration) -> Result<Self, ConnectError> {
        let config = tokio_postgres::Config::from_str(raw).map_err(|e| ConnectError::Unreachable {
            url: redacted_url.clone(),
            waited: Duration::ZERO,
            reason: format!("invalid URL: {e}"),
        })?;
        let client = connect_client(&config, &redacted_url, timeout).await?;
        Ok(PostgresDatabase {
            client: Arc::new(client),
            config,
            redacted_url,
            statements: Mutex::new(HashMap::new()),
            pending: Pending::default(),
            deadline: Mutex::new(None),
        })
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
        if let Ok(mut cache) = self.statements.lock() {
            cache.insert(statement.to_owned(), prepared.clone());
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
        if let Err(error) = self.client.cancel_token().cancel_query(NoTls).await {
            tracing::warn!(%error, "could not cancel a component's statement; it runs on until statement_timeout");
        }
    }

    fn cached(&self, statement: &str) -> Option<Statement> {
        self.statements.lock().ok()?.get(statement).cloned()
    }
}

/// Connects, retrying while the server is unreachable or starting up, until `timeout`. An
/// answer from the server itself (bad password, unknown database) is final at once.
async fn connect_client(
    config: &tokio_postgres::Config,
    redacted_url: &str,
    timeout: Duration,
) -> Result<Client, ConnectError> {
    let started = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        let mut attempt = config.clone();
        attempt.connect_timeout(remaining.clamp(Duration::from_millis(100), Duration::from_secs(5)));
        match attempt.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "postgresql connection closed");
                    }
                });
                return Ok(client);
            }
            Err(error) => {
                let starting_up = error.code().is_some_and(|c| c.code() == "57P03");
                let final_answer = error.as_db_error().is_some() && !starting_up;
                if final_answer || started.elapsed() + CONNECT_RETRY_INTERVAL >= timeout {
                    return Err(ConnectError::Unreachable {
                        url: redacted_url.to_owned(),
                        waited: started.elapsed(),
                        reason: describe(&error),
                    });
                }
                tokio::time::sleep(CONNECT_RETRY_INTERVAL).await;
            }
        }
    }
}

#[async_trait]
impl Database for PostgresDatabase {
    fn dialect(&self) -> &'static Dialect {
        &dialect::POSTGRES
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

    async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.query_capped(statement, params, ResultCap::NONE).await
    }

    async fn query_capped(&self, statement: &str, params: &[Value], cap: ResultCap) -> Result<Rows, DbError> {
        self.bounded(async {
            let prepared = self.prepare(statement).await?;
            let stream = self.after_pending(self.client.query_raw(&prepared, as_params(params))).await?;
            let mut stream = std::pin::pin!(stream);
            let columns = prepared.columns().iter().map(|c| c.name().to_owned()).collect();
            let (mut values, mut bytes) = (Vec::new(), 0u64);
            while let Some(row) = stream.next().await {
                let row = row_values(&row.map_err(db_error)?)?;
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
            Ok(Rows { columns, values })
        })
        .await
    }

    async fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        self.bounded(async {
            let prepared = self.prepare(statement).await?;
            self.after_pending(self.client.execute(&prepared, &as_params(params))).await
        })
        .await
    }

    async fn execute_many(&self, statement: &str, param_sets: &[Vec<Value>]) -> Result<u64, DbError> {
        self.bounded(async {
            let prepared = self.prepare(statement).await?;
            let bound: Vec<Vec<&(dyn ToSql + Sync)>> = param_sets.iter().map(|set| as_params(set)).collect();
            // Polling all executions together lets tokio-postgres pipeline them: one round trip.
            let counts = self
                .after_pending(try_join_all(bound.iter().map(|params| self.client.execute(&prepared, params))))
                .await?;
            Ok(counts.iter().sum())
        })
        .await
    }

    async fn begin(&self, access: Access) -> Result<(), DbError> {
        let begin = match access {
            Access::ReadWrite => "BEGIN",
            Access::ReadOnly => "BEGIN READ ONLY",
        };
        self.defer(begin)
    }

    async fn commit(&self) -> Result<(), DbError> {
        // A separate message from what is pending: if that fails, COMMIT still ends the
        // transaction (rolling it back) instead of being skipped with it.
        self.after_pending(self.client.batch_execute("COMMIT")).await
    }

    async fn execute_and_commit(&self, statement: &str, params: &[Value]) -> Result<u64, NotCommitted> {
        let prepared = self.prepare(statement).await.map_err(NotCommitted::Statement)?;
        let params = as_params(params);
        let pending = self.take_pending().map_err(NotCommitted::Statement)?;
        let before = async { if pending.is_empty() { Ok(()) } else { self.client.batch_execute(&pending).await } };
        // join3 polls in order, so the three go out in order in one round trip. A failure
        // before COMMIT aborts the transaction, and the server then answers COMMIT by rolling
        // back. All three answers are awaited, so the connection is idle when this returns.
        let (before, executed, committed) =
            join3(before, self.client.execute(&prepared, &params), self.client.batch_execute("COMMIT")).await;
        before.map_err(|e| NotCommitted::Statement(db_error(e)))?;
        let changed = executed.map_err(|e| NotCommitted::Statement(db_error(e)))?;
        committed.map_err(|e| NotCommitted::Commit(db_error(e)))?;
        Ok(changed)
    }

    async fn rollback(&self) -> Result<(), DbError> {
        // ROLLBACK undoes SET LOCAL too; a pending RESET would only fail in an aborted
        // transaction, and a pending BEGIN has nothing to roll back.
        self.pending.clear();
        self.client.batch_execute("ROLLBACK").await.map_err(db_error)
    }

    fn forget_prepared_statements(&self) {
        if let Ok(mut cache) = self.statements.lock() {
            cache.clear();
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
        let session = connect_client(&self.config, &self.redacted_url, Duration::from_secs(10))
            .await
            .map_err(|e| failed(DbError::client("connection", e.to_string())))?;
        let key = advisory_key(name);
        let started = Instant::now();
        loop {
            let row =
                session.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await.map_err(|e| failed(db_error(e)))?;
            let acquired: bool = row.try_get(0).map_err(|e| failed(db_error(e)))?;
            if acquired {
                let row = session.query_one("SELECT pg_backend_pid()", &[]).await.map_err(|e| failed(db_error(e)))?;
                let pid: i32 = row.try_get(0).map_err(|e| failed(db_error(e)))?;
                return Ok(Box::new(AdvisoryLock { session, key, pid }));
            }
            if started.elapsed() >= timeout {
                return Err(LockError::Timeout { name: name.to_owned(), waited: started.elapsed() });
            }
            tokio::time::sleep(LOCK_POLL_INTERVAL).await;
        }
    }

    async fn current_user(&self) -> Result<String, DbError> {
        let row = self.after_pending(self.client.query_one("SELECT current_user::text", &[])).await?;
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

#[async_trait]
impl HeldLock for AdvisoryLock {
    async fn release(self: Box<Self>) -> Result<(), DbError> {
        self.session.execute("SELECT pg_advisory_unlock($1)", &[&self.key]).await.map(|_| ()).map_err(db_error)
    }

    fn commit_check(&self) -> Option<LockCheck> {
        // A bigint advisory key shows in pg_locks as its high and low 32 bits.
        let high = i64::from((self.key >> 32) as u32);
        let low = i64::from(self.key as u32);
        Some(LockCheck {
            statement: "SELECT 1 / count(*)::int FROM pg_catalog.pg_locks WHERE locktype = 'advisory' \
                        AND granted AND pid = $1 AND classid::bigint = $2 AND objid::bigint = $3 AND objsubid = 1",
            params: vec![Value::Int(i64::from(self.pid)), Value::Int(high), Value::Int(low)],
        })
    }
}

/// The advisory lock key for a lock name: stable across runs, versions and platforms.
fn advisory_key(name: &str) -> i64 {
    let hash = blake3::hash(format!("wasmig migration lock\0{name}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(key)
}

fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
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

fn row_values(row: &Row) -> Result<Vec<Value>, DbError> {
    (0..row.len()).map(|index| column_value(row, index)).collect()
}

fn column_value(row: &Row, index: usize) -> Result<Value, DbError> {
    let column = &row.columns()[index];
    let ty = column.type_();
    let get_error = |e: tokio_postgres::Error| DbError::client("client", describe(&e));
    macro_rules! get {
        ($t:ty, $wrap:expr) => {
            row.try_get::<_, Option<$t>>(index).map_err(get_error)?.map_or(Value::Null, $wrap)
        };
    }
    Ok(match *ty {
        Type::BOOL => get!(bool, Value::Bool),
        Type::INT2 => get!(i16, |v| Value::Int(i64::from(v))),
        Type::INT4 => get!(i32, |v| Value::Int(i64::from(v))),
        Type::INT8 => get!(i64, Value::Int),
        Type::OID => get!(u32, |v| Value::Int(i64::from(v))),
        Type::FLOAT4 => get!(f32, |v| Value::Float(f64::from(v))),
        Type::FLOAT8 => get!(f64, Value::Float),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get!(String, Value::Text)
        }
        Type::BYTEA => get!(Vec<u8>, Value::Bytes),
        Type::INT8_ARRAY => get!(Vec<Option<i64>>, Value::IntArray),
        Type::INT4_ARRAY => {
            get!(Vec<Option<i32>>, |v| Value::IntArray(v.into_iter().map(|x| x.map(i64::from)).collect()))
        }
        Type::FLOAT8_ARRAY => get!(Vec<Option<f64>>, Value::FloatArray),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get!(Vec<Option<String>>, Value::TextArray),
        _ => {
            return Err(DbError::client(
                "unsupported-type",
                format!(
                    "column {:?} has type {ty}, which wasmig does not return as a value; \
                     cast it in the query (for example {}::text)",
                    column.name(),
                    column.name()
                ),
            ));
        }
    })
}

impl Value {
    /// Whether this value is sent in PostgreSQL's text format for a parameter of type `ty`:
    /// a value with no binary mapping to `ty` (text for a uuid, an integer for a numeric) is
    /// handed to the server's own input function, exactly as if it were a literal.
    fn sends_text(&self, ty: &Type) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(_) => *ty != Type::BOOL,
            Value::Int(_) => {
                !matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::FLOAT4 | Type::FLOAT8)
            }
            Value::Float(_) => !matches!(*ty, Type::FLOAT4 | Type::FLOAT8),
            Value::Text(_) => !<String as ToSql>::accepts(ty),
            Value::Bytes(_) => false,
            Value::IntArray(_) => !matches!(*ty, Type::INT8_ARRAY | Type::INT4_ARRAY | Type::INT2_ARRAY),
            Value::FloatArray(_) => !matches!(*ty, Type::FLOAT8_ARRAY | Type::FLOAT4_ARRAY),
            Value::TextArray(_) => !<Vec<Option<String>> as ToSql>::accepts(ty),
        }
    }

    fn to_text(&self) -> String {
        fn array<T>(items: &[Option<T>], show: impl Fn(&T) -> String) -> String {
            let inner: Vec<String> = items.iter().map(|i| i.as_ref().map_or("NULL".into(), &show)).collect();
            format!("{{{}}}", inner.join(","))
        }
        match self {
            Value::Null => String::new(),
            Value::Bool(v) => v.to_string(),
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Text(v) => v.clone(),
            Value::Bytes(_) => String::new(),
            Value::IntArray(v) => array(v, i64::to_string),
            Value::FloatArray(v) => array(v, f64::to_string),
            Value::TextArray(v) => array(v, |s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
        }
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

fn narrow<T: TryFrom<i64>>(value: i64, ty: &Type) -> Result<T, BoxError> {
    T::try_from(value).map_err(|_| format!("{value} does not fit a parameter of type {ty}").into())
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if self.sends_text(ty) {
            out.extend_from_slice(self.to_text().as_bytes());
            return Ok(IsNull::No);
        }
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Int(v) => match *ty {
                Type::INT2 => narrow::<i16>(*v, ty)?.to_sql(ty, out),
                Type::INT4 => narrow::<i32>(*v, ty)?.to_sql(ty, out),
                Type::OID => narrow::<u32>(*v, ty)?.to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Float(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
            Value::IntArray(v) => match *ty {
                Type::INT4_ARRAY => v
                    .iter()
                    .map(|x| x.map(|n| narrow::<i32>(n, ty)).transpose())
                    .collect::<Result<Vec<_>, _>>()?
                    .to_sql(ty, out),
                Type::INT2_ARRAY => v
                    .iter()
                    .map(|x| x.map(|n| narrow::<i16>(n, ty)).transpose())
                    .collect::<Result<Vec<_>, _>>()?
                    .to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::FloatArray(v) => match *ty {
                Type::FLOAT4_ARRAY => v.iter().map(|x| x.map(|f| f as f32)).collect::<Vec<_>>().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::TextArray(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Any parameter type: `to_sql` picks the binary mapping or falls back to text.
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if self.sends_text(ty) { Format::Text } else { Format::Binary }
    }

    to_sql_checked!();
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

    #[test]
    fn text_array_literal_escapes_quotes() {
        let value = Value::TextArray(vec![Some("a\"b".into()), None]);
        assert_eq!(value.to_text(), "{\"a\\\"b\",NULL}");
    }

    #[test]
    fn integers_bind_binary_to_integer_types_and_text_to_numeric() {
        assert!(!Value::Int(1).sends_text(&Type::INT4));
        assert!(Value::Int(1).sends_text(&Type::NUMERIC));
        assert!(Value::Text("6f1c…".into()).sends_text(&Type::UUID));
        assert!(!Value::Text("x".into()).sends_text(&Type::VARCHAR));
    }
}
