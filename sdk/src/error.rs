//! The errors a migration sees: [`SqlError`] from the host's SQL handle, and [`Error`], the
//! message a migration returns to fail (and roll back) its phase.

use std::fmt;

use crate::__bindings::wasmig::migration::types::SqlError as WitSqlError;

/// Why the host refused or failed a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlError {
    /// The manifest does not grant what the statement needs; the text names the grant.
    Denied(String),
    /// The statement or its parameters are malformed.
    Invalid(String),
    /// The database failed the statement, with its SQLSTATE or result code.
    Database { code: String, message: String },
    /// A sandbox limit was reached; the text names it.
    Limit(String),
}

impl SqlError {
    pub(crate) fn from_wit(error: WitSqlError) -> Self {
        match error {
            WitSqlError::Denied(m) => SqlError::Denied(m),
            WitSqlError::Invalid(m) => SqlError::Invalid(m),
            WitSqlError::Database(e) => SqlError::Database { code: e.code, message: e.message },
            WitSqlError::Limit(m) => SqlError::Limit(m),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::Denied(m) => write!(f, "denied: {m}"),
            SqlError::Invalid(m) => write!(f, "invalid statement: {m}"),
            SqlError::Database { code, message } => write!(f, "database error {code}: {message}"),
            SqlError::Limit(m) => write!(f, "limit reached: {m}"),
        }
    }
}

impl std::error::Error for SqlError {}

/// A migration's failure message. Anything displayable converts into it, so `?` works on
/// SQL calls, conversions and plain strings alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(String);

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SqlError> for Error {
    fn from(error: SqlError) -> Self {
        Error(error.to_string())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error(message.to_owned())
    }
}

/// The result of a migration phase.
pub type Result<T, E = Error> = std::result::Result<T, E>;
