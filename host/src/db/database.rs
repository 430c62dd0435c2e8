//! The backend boundary: the [`Database`] trait, implemented for PostgreSQL and SQLite, and
//! the values and rows that cross it.
//!
//! Everything above `db` is backend-agnostic: what differs between the backends is asked of
//! the connection's [`Dialect`], never by naming the backend. Where a capability differs
//! (advisory locks, read-only transactions, arrays), the trait names it and each backend says
//! how it provides it; nothing degrades silently.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use crate::guard::GuardSettings;

use super::dialect::Dialect;
use super::schema::Schema;
use super::transport::Transport;
use super::error::{DbError, DbErrorKind, LockError, NotCommitted};

/// A SQL value crossing the backend boundary (parameters and result columns).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    IntArray(Vec<Option<i64>>),
    FloatArray(Vec<Option<f64>>),
    TextArray(Vec<Option<String>>),
}

impl Value {
    /// Roughly what the value costs once copied into a component: what result caps count.
    pub fn cost(&self) -> u64 {
        let len = |n: usize| n as u64;
        match self {
            Value::Text(s) => len(s.len()),
            Value::Bytes(b) => len(b.len()),
            Value::IntArray(a) => len(a.len() * 9),
            Value::FloatArray(a) => len(a.len() * 9),
            Value::TextArray(a) => a.iter().map(|s| 1 + s.as_ref().map_or(0, |s| len(s.len()))).sum(),
            _ => 9,
        }
    }
}

/// Caps on what one query may return to a component (`limits.result_rows`, `result_mib`),
/// applied while the rows arrive: reading stops, and the statement is cancelled, as soon as
/// one is passed, so the host never holds more than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultCap {
    pub rows: u64,
    pub bytes: u64,
}

impl ResultCap {
    /// No cap: the engine's own queries.
    pub const NONE: ResultCap = ResultCap { rows: u64::MAX, bytes: u64::MAX };

    /// The error once `rows` rows of `bytes` bytes have arrived, if that passes a cap.
    pub fn passed(&self, rows: u64, bytes: u64) -> Option<DbError> {
        if rows > self.rows {
            return Some(DbError::new(
                DbErrorKind::Limit,
                format!("the query returned more than {} rows; limits.result_rows is {}", self.rows, self.rows),
            ));
        }
        (bytes > self.bytes).then(|| {
            DbError::new(
                DbErrorKind::Limit,
                format!(
                    "the query returned more than {} bytes; limits.result_mib is {}",
                    self.bytes,
                    self.bytes / (1024 * 1024)
                ),
            )
        })
    }
}

/// The rows a query returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// How a transaction may touch data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// PostgreSQL enforces it (`BEGIN READ ONLY`); SQLite has no read-only transaction, so
    /// read-only work there is rolled back at the end instead.
    ReadOnly,
}

/// The first column of one row returned by a script, as text, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRow {
    /// 1-based position of the statement in the script.
    pub statement: usize,
    pub first_column: Option<String>,
}

/// Which prepared statements a schema change may have made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// A migration's step changed the project's tables.
    ProjectTables,
    /// The ledger's own tables were changed (an earlier wasmig's, brought up to date).
    LedgerTables,
}

/// A connection to the target database. All calls run on one session, in order; the
/// caller opens and closes transactions explicitly.
#[async_trait]
pub trait Database: Send + Sync {
    /// Which backend this is and what differs on it, for the layers above `db`.
    fn dialect(&self) -> &'static Dialect;

    /// How the session reaches the database: whether it is encrypted, and what was checked.
    fn transport(&self) -> Transport;

    /// Runs a script of one or more statements without parameters (a migration's SQL file)
    /// and returns the first column of every row its queries produced.
    async fn run_script(&self, script: &str) -> Result<Vec<ScriptRow>, DbError>;

    /// Runs each statement of `script` on its own, outside any transaction, so that each commits
    /// as it ends: for statements that refuse a transaction block (`CREATE INDEX CONCURRENTLY`).
    /// A failure leaves the statements before it committed.
    async fn run_script_autocommit(&self, script: &str) -> Result<(), DbError>;

    /// Names of the indexes a failed `CREATE INDEX CONCURRENTLY` left behind, unusable but
    /// still maintained (PostgreSQL's `indisvalid = false`); none where there are no such.
    async fn invalid_indexes(&self) -> Result<Vec<String>, DbError>;

    /// A snapshot of every table, view, column, index and constraint outside the server's own
    /// catalogs, for comparing two databases (`wasmig test`, `wasmig drift`).
    async fn schema(&self) -> Result<Schema, DbError>;

    /// Copies the whole database, while it stays open, into the new file `to` with the
    /// backend's own online backup where a client can call one ([`Dialect::online_backup`]:
    /// SQLite's backup API). PostgreSQL has none; a run backs it up with a command instead.
    async fn back_up_to(&self, to: &Path) -> Result<(), DbError>;

    /// Runs one statement and returns its rows.
    async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError>;

    /// Runs a component's query, reading its rows only up to `cap`: past it, reading stops,
    /// the statement is cancelled where the backend can, and the error is a [`DbErrorKind::Limit`].
    async fn query_capped(&self, statement: &str, params: &[Value], cap: ResultCap) -> Result<Rows, DbError>;

    /// Runs one statement and returns the number of rows it changed.
    async fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError>;

    /// Runs one statement once per parameter set, prepared once, in as few round trips as
    /// the backend allows; returns the total number of rows changed.
    async fn execute_many(&self, statement: &str, param_sets: &[Vec<Value>]) -> Result<u64, DbError>;

    async fn begin(&self, access: Access) -> Result<(), DbError>;
    async fn commit(&self) -> Result<(), DbError>;

    /// Runs a transaction's last statements, in order, and commits, in one round trip where the
    /// backend can pipeline them. The transaction never commits without all of them: if one
    /// fails, the transaction is rolled back (PostgreSQL's COMMIT of an aborted transaction is
    /// a rollback) and the error names which. On any error the caller still rolls back, which
    /// is harmless when the transaction has already ended.
    async fn execute_and_commit(&self, statements: &[BoundStatement]) -> Result<(), NotCommitted>;
    async fn rollback(&self) -> Result<(), DbError>;

    /// Forgets the prepared statements a schema change may have made stale (`stale`): after a
    /// migration's step, at least every one a component's call prepared (they name the
    /// project's tables), where a backend may keep the engine's own, which name only its
    /// ledger; after the ledger's own tables changed, every one.
    fn forget_prepared_statements(&self, stale: Stale);

    /// Raises the database's own walls for a component call, inside the current transaction:
    /// PostgreSQL pins `search_path` and sets `statement_timeout`, `lock_timeout` and the
    /// configured role with `SET LOCAL`; SQLite turns its authorizer on with the policy. Until
    /// they are lowered, the call's deadline bounds every statement: one still running when it
    /// passes is cancelled (PostgreSQL) or interrupted (SQLite), and fails with
    /// [`DbErrorKind::Deadline`] (PostgreSQL) or [`DbErrorKind::Limit`] (SQLite).
    async fn enter_guarded(&self, guard: &GuardSettings) -> Result<(), DbError>;

    /// Lowers them again, so the engine's own statements (the history row) run as before.
    async fn leave_guarded(&self) -> Result<(), DbError>;

    /// Takes the migration lock named `name`, polling until `timeout`. The lock is held by a
    /// session of its own (PostgreSQL: an advisory lock on a dedicated connection, which a
    /// blocking lock would deadlock against `CREATE INDEX CONCURRENTLY`; SQLite: an OS file
    /// lock beside the database file), so the process dying releases it.
    async fn lock(&self, name: &str, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError>;

    /// Who the database says we are, for the history's `applied_by`.
    async fn current_user(&self) -> Result<String, DbError>;
}

/// A held migration lock. Dropping it releases the lock too; `release` does so and reports
/// failure.
#[async_trait]
pub trait HeldLock: Send {
    async fn release(self: Box<Self>) -> Result<(), DbError>;

    /// Invariant 8: a statement to run last in each migration's transaction, pipelined with its
    /// COMMIT, that fails (SQLSTATE 22012) unless this lock is still held, so that a run whose
    /// lock session was lost commits nothing more. `None` where the lock cannot be lost while
    /// the process lives (SQLite's file lock).
    fn commit_check(&self) -> Option<BoundStatement>;
}

/// A statement with its parameters, to be run later: the ledger's writes that end a step's
/// transaction, the lock's check ([`HeldLock::commit_check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundStatement {
    pub statement: String,
    pub params: Vec<Value>,
}

/// A catalog query's cell as text (`None` for NULL): the backends' snapshots read their
/// catalogs through the same `Database::query` as every statement.
pub(super) fn cell(row: &[Value], index: usize) -> Option<String> {
    match row.get(index)? {
        Value::Null => None,
        Value::Bool(value) => Some(value.to_string()),
        Value::Int(value) => Some(value.to_string()),
        Value::Float(value) => Some(value.to_string()),
        Value::Text(value) => Some(value.clone()),
        Value::Bytes(value) => Some(String::from_utf8_lossy(value).into_owned()),
        Value::IntArray(_) | Value::FloatArray(_) | Value::TextArray(_) => None,
    }
}

/// Interprets a script row's first column as an assertion: true, `t`, or a non-zero number.
pub fn is_truthy(value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(text) => {
            let text = text.trim();
            text.eq_ignore_ascii_case("t")
                || text.eq_ignore_ascii_case("true")
                || text.parse::<f64>().is_ok_and(|n| n != 0.0)
        }
    }
}
