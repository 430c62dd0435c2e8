//! The SQLite backend over rusqlite (bundled SQLite): the embedded default.
//!
//! Its calls run on tokio's blocking threads ([`SqliteDatabase`]); the authorizer and the
//! call's limits guard a component's statements. Values cross in [`values`]. The migration
//! lock is an OS file lock beside the database file, released by the OS if the process dies.

mod catalog;
mod checks;
mod lock;
mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthContext, Authorization};
use rusqlite::{Connection, Statement};

use crate::db::database::{Access, Database, HeldLock, BoundStatement, ResultCap, Rows, ScriptRow, Stale, Value};
use crate::db::dialect::{self, Dialect};
use crate::db::schema::Schema;
use crate::db::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};
use crate::db::transport::Transport;
use crate::guard::sqlite::StatementScope;
use crate::guard::{GuardSettings, Policy};

use self::values::{bind, column_value, db_error, value_as_text};

/// How many virtual-machine steps SQLite takes between looks at a guarded call's deadline.
const PROGRESS_STEPS: i32 = 10_000;
/// SQLite's own cap on a string or blob, restored when a guarded call ends.
const DEFAULT_MAX_LENGTH: i32 = 1_000_000_000;
/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite database. Its calls block (on another connection's write lock for up to
/// [`BUSY_TIMEOUT`], or on a long statement), so each runs on tokio's blocking threads and
/// never stalls the async workers that other tasks (a second backfill worker, the lock's
/// heartbeat, a progress ticker) run on.
pub struct SqliteDatabase {
    connection: Arc<Connected>,
}

/// The connection itself, and what its calls share; every method blocks.
struct Connected {
    connection: Mutex<Connection>,
    /// `None` for an in-memory database, which no other process can reach.
    path: Option<PathBuf>,
    /// The policy the authorizer enforces while a component call runs, and its first refusal.
    guard: Arc<Mutex<GuardState>>,
}

#[derive(Default)]
struct GuardState {
    policy: Option<Policy>,
    /// What the guard knows of the statement being prepared.
    scope: StatementScope,
    refusal: Option<String>,
    /// While a component call runs: the limits SQLite enforces for it.
    walls: Option<CallWalls>,
    /// Tables whose definition resolves conflicts by REPLACE (lower-cased), as of the schema
    /// version beside them: writing them may delete rows, which needs the delete grant.
    replacing: (i64, Arc<BTreeSet<String>>),
}

/// What SQLite enforces while a component call runs; the messages are made only when a limit
/// is hit, since a backfill enters a call per batch.
struct CallWalls {
    /// When SQLite interrupts the statement it runs.
    deadline: Instant,
    timeout: Duration,
    timeout_setting: &'static str,
    max_value_bytes: u64,
}

impl CallWalls {
    fn new(guard: &GuardSettings) -> CallWalls {
        let (timeout, timeout_setting) = if guard.call_timeout <= guard.statement_timeout {
            (guard.call_timeout, "limits.timeout_secs")
        } else {
            (guard.statement_timeout, "limits.statement_timeout_secs")
        };
        CallWalls {
            deadline: Instant::now() + timeout,
            timeout,
            timeout_setting,
            max_value_bytes: guard.max_value_bytes,
        }
    }

    fn interrupted(&self) -> DbError {
        let (seconds, setting) = (self.timeout.as_secs_f64(), self.timeout_setting);
        DbError::new(
            DbErrorKind::Limit,
            format!("the statement was stopped at the call's time limit of {seconds}s ({setting})"),
        )
    }

    fn too_big(&self) -> DbError {
        let mib = self.max_value_bytes / (1024 * 1024);
        DbError::new(
            DbErrorKind::Limit,
            format!("the statement built a value longer than {mib} MiB (limits.result_mib)"),
        )
    }
}

/// A statement from the cache, or (while a component call runs) freshly prepared: the
/// authorizer runs at prepare time, so a cached statement would skip it.
enum Prepared<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Fresh(Statement<'c>),
}

impl<'c> std::ops::Deref for Prepared<'c> {
    type Target = Statement<'c>;

    fn deref(&self) -> &Self::Target {
        match self {
            Prepared::Cached(statement) => statement,
            Prepared::Fresh(statement) => statement,
        }
    }
}

impl std::ops::DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Prepared::Cached(statement) => statement,
            Prepared::Fresh(statement) => statement,
        }
    }
}

impl SqliteDatabase {
    /// Opens the SQLite file `path`, or a private in-memory database; messages name it as
    /// `shown`.
    pub fn open(path: Option<&Path>, shown: &str) -> Result<Self, ConnectError> {
        Ok(SqliteDatabase { connection: Arc::new(Connected::open(path, shown)?) })
    }

    /// Runs `work` on the connection on a blocking thread, and waits for it without blocking.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connected) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || work(&connection))
            .await
            .map_err(|error| DbError::client("internal", format!("a SQLite call did not finish: {error}")))
    }
}

impl Connected {
    fn open(path: Option<&Path>, shown: &str) -> Result<Self, ConnectError> {
        let failed = |reason: String| ConnectError::Sqlite { url: shown.to_owned(), reason };
        let connection = match path {
            Some(path) => {
                let connection = Connection::open(path).map_err(|e| failed(e.to_string()))?;
                // WAL lets readers (a `status` in another terminal) run beside a long backfill.
                connection.pragma_update(None, "journal_mode", "WAL").map_err(|e| failed(e.to_string()))?;
                connection
            }
            None => Connection::open_in_memory().map_err(|e| failed(e.to_string()))?,
        };
        let path = path.map(Path::to_path_buf);
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|e| failed(e.to_string()))?;
        connection.pragma_update(None, "foreign_keys", "ON").map_err(|e| failed(e.to_string()))?;
        let guard = Arc::new(Mutex::new(GuardState::default()));
        let mut connection = connection;
        let state = guard.clone();
        connection
            .authorizer(Some(move |context: AuthContext<'_>| {
                let Ok(mut state) = state.lock() else { return Authorization::Deny };
                let GuardState { policy, scope, refusal, .. } = &mut *state;
                let Some(policy) = policy else { return Authorization::Allow };
                match crate::guard::sqlite::authorize(policy, scope, &context) {
                    Ok(()) => Authorization::Allow,
                    Err(refused) => {
                        refusal.get_or_insert_with(|| refused.to_string());
                        Authorization::Deny
                    }
                }
            }))
            .map_err(|e| failed(e.to_string()))?;
        // SQLite runs in this process, outside the component's fuel and epoch: a statement it
        // runs for a component (a recursive CTE, a huge sort) is interrupted at the call's
        // deadline instead of running on.
        let state = guard.clone();
        connection
            .progress_handler(
                PROGRESS_STEPS,
                Some(move || {
                    state
                        .lock()
                        .map_or(true, |state| state.walls.as_ref().is_some_and(|w| Instant::now() >= w.deadline))
                }),
            )
            .map_err(|e| failed(e.to_string()))?;
        Ok(Connected { connection: Mutex::new(connection), path, guard })
    }

    fn guarded(&self) -> bool {
        self.guard.lock().map(|state| state.policy.is_some()).unwrap_or(true)
    }

    fn prepare<'c>(&self, connection: &'c Connection, statement: &str) -> Result<Prepared<'c>, DbError> {
        if !self.guarded() {
            return connection.prepare_cached(statement).map(Prepared::Cached).map_err(db_error);
        }
        {
            let mut state = self.guard.lock().map_err(|_| guard_poisoned())?;
            state.refusal = None;
            let mut scope =
                StatementScope::of(statement).map_err(|refusal| DbError::new(DbErrorKind::Denied, refusal.to_string()))?;
            scope.replacing_tables = state.replacing.1.clone();
            state.scope = scope;
        }
        connection.prepare(statement).map(Prepared::Fresh).map_err(|error| {
            match self.guard.lock().ok().and_then(|mut state| state.refusal.take()) {
                Some(refusal) => DbError::new(DbErrorKind::Denied, refusal),
                None => db_error(error),
            }
        })
    }

    fn execute_on(&self, connection: &Connection, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut prepared = self.prepare(connection, statement)?;
        bind(&mut prepared, params)?;
        // Stepping through any rows (INSERT … RETURNING) runs the statement to completion.
        let mut results = prepared.raw_query();
        while results.next().map_err(|e| self.step_error(e))?.is_some() {}
        Ok(connection.changes())
    }

    /// Reads again which tables resolve conflicts by REPLACE, when the schema changed since.
    fn refresh_replacing_tables(&self) -> Result<(), DbError> {
        let connection = self.connection()?;
        let version: i64 = connection.query_row("PRAGMA schema_version", [], |row| row.get(0)).map_err(db_error)?;
        if self.guard.lock().map_err(|_| guard_poisoned())?.replacing.0 == version && version != 0 {
            return Ok(());
        }
        let mut statement = connection
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL")
            .map_err(db_error)?;
        let tables = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .map_err(db_error)?
            .filter_map(Result::ok)
            .filter(|(_, sql)| crate::guard::sqlite::declares_replace(sql))
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        self.guard.lock().map_err(|_| guard_poisoned())?.replacing = (version, Arc::new(tables));
        Ok(())
    }

    /// A statement's error; while a component call runs, an interrupt or a value past
    /// SQLite's length cap is the limit that caused it.
    fn step_error(&self, error: rusqlite::Error) -> DbError {
        let code = match &error {
            rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
            _ => None,
        };
        let Ok(state) = self.guard.lock() else { return db_error(error) };
        match (code, &state.walls) {
            (Some(rusqlite::ErrorCode::OperationInterrupted), Some(walls)) => walls.interrupted(),
            (Some(rusqlite::ErrorCode::TooBig), Some(walls)) => walls.too_big(),
            _ => db_error(error),
        }
    }

    fn connection(&self) -> Result<MutexGuard<'_, Connection>, DbError> {
        self.connection
            .lock()
            .map_err(|_| DbError::client("internal", "the SQLite connection was poisoned by an earlier panic"))
    }
}

/// The blocking calls behind [`Database`] for [`SqliteDatabase`].
impl Connected {

    fn run_script(&self, script: &str) -> Result<Vec<ScriptRow>, DbError> {
        let connection = self.connection()?;
        let mut batch = rusqlite::Batch::new(&connection, script);
        let mut rows = Vec::new();
        let mut statement = 0;
        while let Some(mut prepared) = batch.next().map_err(db_error)? {
            statement += 1;
            let mut results = prepared.raw_query();
            while let Some(row) = results.next().map_err(db_error)? {
                let first_column = row.get_ref(0).ok().and_then(value_as_text);
                rows.push(ScriptRow { statement, first_column });
            }
        }
        Ok(rows)
    }


    fn query_capped(&self, statement: &str, params: &[Value], cap: ResultCap) -> Result<Rows, DbError> {
        let connection = self.connection()?;
        let mut prepared = self.prepare(&connection, statement)?;
        bind(&mut prepared, params)?;
        let columns: Vec<String> = prepared.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let mut results = prepared.raw_query();
        let (mut values, mut bytes) = (Vec::new(), 0u64);
        while let Some(row) = results.next().map_err(|e| self.step_error(e))? {
            let mut out = Vec::with_capacity(width);
            for index in 0..width {
                out.push(column_value(row.get_ref(index).map_err(db_error)?)?);
            }
            bytes += out.iter().map(Value::cost).sum::<u64>();
            values.push(out);
            // Stepping no further stops the statement: SQLite makes a row only when asked.
            if let Some(passed) = cap.passed(values.len() as u64, bytes) {
                return Err(passed);
            }
        }
        Ok(Rows { columns, values })
    }

    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        let connection = self.connection()?;
        self.execute_on(&connection, statement, params)
    }

    fn execute_many(&self, statement: &str, param_sets: &[Vec<Value>]) -> Result<u64, DbError> {
        let connection = self.connection()?;
        let mut total = 0;
        for params in param_sets {
            total += self.execute_on(&connection, statement, params)?;
        }
        Ok(total)
    }

    fn begin(&self, access: Access) -> Result<(), DbError> {
        // IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
        // instead of failing with SQLITE_BUSY half-way through.
        let begin = match access {
            Access::ReadWrite => "BEGIN IMMEDIATE",
            Access::ReadOnly => "BEGIN DEFERRED",
        };
        self.connection()?.execute_batch(begin).map_err(db_error)
    }

    fn commit(&self) -> Result<(), DbError> {
        self.connection()?.execute_batch("COMMIT").map_err(db_error)
    }

    fn execute_and_commit(&self, statements: &[BoundStatement]) -> Result<(), NotCommitted> {
        // One process, no round trips: the statements, then COMMIT only if all succeeded.
        let connection = self.connection().map_err(|error| NotCommitted::Statement { index: 0, error })?;
        for (index, bound) in statements.iter().enumerate() {
            self.execute_on(&connection, &bound.statement, &bound.params)
                .map_err(|error| NotCommitted::Statement { index, error })?;
        }
        connection.execute_batch("COMMIT").map_err(|e| NotCommitted::Commit(db_error(e)))
    }

    fn rollback(&self) -> Result<(), DbError> {
        self.connection()?.execute_batch("ROLLBACK").map_err(db_error)
    }


    fn enter_guarded(&self, guard: &GuardSettings) -> Result<(), DbError> {
        self.refresh_replacing_tables()?;
        let max_length = i32::try_from(guard.max_value_bytes).unwrap_or(i32::MAX).min(DEFAULT_MAX_LENGTH);
        self.connection()?.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, max_length).map_err(db_error)?;
        let mut state = self.guard.lock().map_err(|_| guard_poisoned())?;
        state.policy = Some(guard.policy.clone());
        state.refusal = None;
        state.walls = Some(CallWalls::new(guard));
        Ok(())
    }

    fn leave_guarded(&self) -> Result<(), DbError> {
        let mut state = self.guard.lock().map_err(|_| guard_poisoned())?;
        state.policy = None;
        state.walls = None;
        drop(state);
        self.connection()?
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, DEFAULT_MAX_LENGTH)
            .map_err(db_error)?;
        Ok(())
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn dialect(&self) -> &'static Dialect {
        &dialect::SQLITE
    }

    fn transport(&self) -> Transport {
        Transport::InProcess
    }

    async fn run_script(&self, script: &str) -> Result<Vec<ScriptRow>, DbError> {
        let script = script.to_owned();
        self.blocking(move |c| c.run_script(&script)).await?
    }

    async fn run_script_autocommit(&self, script: &str) -> Result<(), DbError> {
        // Outside BEGIN, SQLite commits each statement of a batch as it ends.
        self.run_script(script).await.map(|_| ())
    }

    async fn invalid_indexes(&self) -> Result<Vec<String>, DbError> {
        // SQLite builds an index in one statement or not at all.
        Ok(Vec::new())
    }

    async fn schema(&self) -> Result<Schema, DbError> {
        catalog::snapshot(self).await
    }

    async fn back_up_to(&self, to: &Path) -> Result<(), DbError> {
        let to = to.to_owned();
        self.blocking(move |connected| {
            let connection = connected.connection()?;
            connection
                .backup(rusqlite::MAIN_DB, &to, None::<fn(rusqlite::backup::Progress)>)
                .map_err(|error| DbError::client("backup", format!("SQLite's backup to {}: {error}", to.display())))
        })
        .await?
    }

    async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.query_capped(statement, params, ResultCap::NONE).await
    }

    async fn query_capped(&self, statement: &str, params: &[Value], cap: ResultCap) -> Result<Rows, DbError> {
        let (statement, params) = (statement.to_owned(), params.to_vec());
        self.blocking(move |c| c.query_capped(&statement, &params, cap)).await?
    }

    async fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        let (statement, params) = (statement.to_owned(), params.to_vec());
        self.blocking(move |c| c.execute(&statement, &params)).await?
    }

    async fn execute_many(&self, statement: &str, param_sets: &[Vec<Value>]) -> Result<u64, DbError> {
        let (statement, param_sets) = (statement.to_owned(), param_sets.to_vec());
        self.blocking(move |c| c.execute_many(&statement, &param_sets)).await?
    }

    async fn begin(&self, access: Access) -> Result<(), DbError> {
        self.blocking(move |c| c.begin(access)).await?
    }

    async fn commit(&self) -> Result<(), DbError> {
        self.blocking(Connected::commit).await?
    }

    async fn execute_and_commit(&self, statements: &[BoundStatement]) -> Result<(), NotCommitted> {
        let statements = statements.to_vec();
        self.blocking(move |c| c.execute_and_commit(&statements))
            .await
            .map_err(|error| NotCommitted::Statement { index: 0, error })?
    }

    async fn rollback(&self) -> Result<(), DbError> {
        self.blocking(Connected::rollback).await?
    }

    fn forget_prepared_statements(&self, _: Stale) {
        if let Ok(connection) = self.connection.connection.lock() {
            connection.flush_prepared_statement_cache();
        }
    }

    async fn enter_guarded(&self, guard: &GuardSettings) -> Result<(), DbError> {
        let guard = guard.clone();
        self.blocking(move |c| c.enter_guarded(&guard)).await?
    }

    async fn leave_guarded(&self) -> Result<(), DbError> {
        self.blocking(Connected::leave_guarded).await?
    }

    async fn lock(&self, name: &str, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError> {
        lock::take(self.connection.path.as_deref(), name, timeout).await
    }

    async fn current_user(&self) -> Result<String, DbError> {
        // SQLite has no users; the operating-system account is the one that ran it.
        Ok(crate::core::os_user())
    }
}

fn guard_poisoned() -> DbError {
    DbError::client("internal", "the guard state was poisoned by an earlier panic; the call is refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> SqliteDatabase {
        SqliteDatabase::open(None, "sqlite::memory:").expect("in-memory SQLite opens")
    }

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_not_by_position() {
        let db = memory();
        let rows =
            db.query("SELECT $2 AS second, $1 AS first", &[Value::Int(1), Value::Text("two".into())]).await.unwrap();
        assert_eq!(rows.values, vec![vec![Value::Text("two".into()), Value::Int(1)]]);
    }

    #[tokio::test]
    async fn too_many_parameters_is_an_error() {
        let db = memory();
        let error = db.query("SELECT $1", &[Value::Int(1), Value::Int(2)]).await.unwrap_err();
        assert_eq!(error.code, "invalid-parameter");
    }

    #[tokio::test]
    async fn arrays_arrive_as_json_for_json_each() {
        let db = memory();
        let rows = db
            .query("SELECT sum(value) FROM json_each($1)", &[Value::IntArray(vec![Some(2), None, Some(5)])])
            .await
            .unwrap();
        assert_eq!(rows.values, vec![vec![Value::Int(7)]]);
    }

    #[tokio::test]
    async fn granted_schema_changes_pass_the_authorizer() {
        use crate::guard::{Grants, GrantsSection, Phase, Policy};
        let db = memory();
        db.run_script("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, email_domain TEXT)").await.unwrap();
        let grants = Grants::from_section(&GrantsSection { ddl: vec!["users".into()], ..Default::default() }).unwrap();
        let guard = GuardSettings {
            policy: Policy { grants, phase: Phase::Schema },
            postgres_role: None,
            statement_timeout: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            max_value_bytes: 1 << 20,
        };
        db.enter_guarded(&guard).await.unwrap();
        db.execute("ALTER TABLE users ADD COLUMN nickname TEXT", &[]).await.unwrap();
        db.execute("ALTER TABLE users DROP COLUMN email_domain", &[]).await.unwrap();
        db.execute("CREATE INDEX users_email ON users (email)", &[]).await.unwrap();
        let refused = db.execute("CREATE TABLE other (id INTEGER)", &[]).await.unwrap_err();
        assert_eq!(refused.code, "denied", "{refused}");
        db.leave_guarded().await.unwrap();
        db.execute("CREATE TABLE other (id INTEGER)", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn two_statements_in_one_call_are_refused() {
        let db = memory();
        let error = db.execute("SELECT 1; SELECT 2", &[]).await.unwrap_err();
        assert_eq!(error.code, "multiple-statements");
    }

    #[tokio::test]
    async fn script_reports_first_column_per_statement() {
        let db = memory();
        let rows = db.run_script("CREATE TABLE t (x); SELECT 1 = 1; SELECT 0").await.unwrap();
        assert_eq!(
            rows,
            vec![
                ScriptRow { statement: 2, first_column: Some("1".into()) },
                ScriptRow { statement: 3, first_column: Some("0".into()) },
            ]
        );
    }
}
