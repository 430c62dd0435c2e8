//! The errors that cross the backend boundary: [`DbError`], whose [`DbErrorKind`] the layers
//! above match instead of comparing codes, and why a lock or a connection failed.

use std::time::Duration;

use crate::core::Human;

/// An error from the database or the client: what kind it is, for the layers that act on it;
/// its code (PostgreSQL's SQLSTATE, SQLite's extended result code name, or the engine's own
/// name for a refusal), for the people and guests who read it; and its message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct DbError {
    pub kind: DbErrorKind,
    pub code: String,
    pub message: String,
}

/// What a [`DbError`] means to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database refused the statement for a reason the engine does not tell apart.
    Database,
    /// A table (or its schema) does not exist yet.
    UndefinedTable,
    /// A division by zero: the engine's own statements raise one on purpose so that a
    /// transaction does not commit (the migration lock or a chunk's lease is gone).
    DivisionByZero,
    /// The SQLite authorizer refused what the statement touches.
    Denied,
    /// The text holds more than one statement where one call runs one.
    MultipleStatements,
    /// A parameter is malformed or missing.
    InvalidParameter,
    /// A component limit (a result cap, SQLite's length cap or its deadline); the message
    /// names the setting.
    Limit,
    /// The component call's deadline passed while the statement ran (PostgreSQL cancels it).
    Deadline,
    /// The statement cannot run inside a transaction block (`CREATE INDEX CONCURRENTLY`,
    /// SQLite's `VACUUM`).
    NotInTransaction,
    /// The client or its connection failed, or returned what the engine cannot read.
    Client,
}

impl DbErrorKind {
    /// The code an error of this kind shows when the engine made it.
    fn code(self) -> &'static str {
        match self {
            DbErrorKind::Database => "database",
            DbErrorKind::UndefinedTable => "42P01",
            DbErrorKind::DivisionByZero => "22012",
            DbErrorKind::Denied => "denied",
            DbErrorKind::MultipleStatements => "multiple-statements",
            DbErrorKind::InvalidParameter => "invalid-parameter",
            DbErrorKind::Limit => "limit",
            DbErrorKind::Deadline => "deadline",
            DbErrorKind::NotInTransaction => "25001",
            DbErrorKind::Client => "client",
        }
    }
}

impl DbError {
    /// An error the engine makes, with its kind's code.
    pub(crate) fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        DbError { kind, code: kind.code().to_owned(), message: message.into() }
    }

    /// A client-side failure, under a code that says where it arose (`connection`, `lock-file`).
    pub(crate) fn client(code: &str, message: impl Into<String>) -> Self {
        DbError { kind: DbErrorKind::Client, code: code.to_owned(), message: message.into() }
    }

    /// An error the database reported under `code`, its kind read from it (PostgreSQL's
    /// undefined_table and invalid_schema_name say a table is missing).
    pub(crate) fn reported(code: &str, message: impl Into<String>) -> Self {
        let kind = match code {
            "42P01" | "3F000" => DbErrorKind::UndefinedTable,
            "22012" => DbErrorKind::DivisionByZero,
            "25001" => DbErrorKind::NotInTransaction,
            _ => DbErrorKind::Database,
        };
        DbError { kind, code: code.to_owned(), message: message.into() }
    }
}

/// Why [`Database::execute_and_commit`] did not commit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotCommitted {
    /// The statement at `index` of those given failed, so the transaction was not committed.
    #[error("{error}")]
    Statement { index: usize, error: DbError },
    /// The statement ran, but the database refused the COMMIT.
    #[error("{0}")]
    Commit(DbError),
}

/// Why the migration lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another wasmig run held the migration lock {name} for {}; giving up (raise --lock-timeout to wait longer)", Human(*waited))]
    Timeout { name: String, waited: Duration },
    #[error("could not take the migration lock {name}: {source}")]
    Failed { name: String, source: DbError },
    #[error(
        "migration {migration}: this run lost the migration lock (its lock session ended), so the \
         migration was rolled back and the run stopped; another run may hold the lock now"
    )]
    Lost { migration: String },
}

/// Why a database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server (or the name service, or the TLS handshake) gave an answer that waiting
    /// would not change.
    #[error("could not connect to {url}: {reason}")]
    Refused { url: String, reason: String },
    /// Nothing answered, and the caller did not ask to wait.
    #[error(
        "could not connect to {url}: {reason}; to wait for a server that is still starting, pass \
         --wait-for-db DURATION (or set [database] wait)"
    )]
    Unreachable { url: String, reason: String },
    /// Nothing answered within the wait.
    #[error("could not connect to {url} in {attempts} attempts over {}: {reason}", Human(*waited))]
    GaveUp { url: String, attempts: u32, waited: Duration, reason: String },
    #[error("could not open SQLite database {url}: {reason}")]
    Sqlite { url: String, reason: String },
}
