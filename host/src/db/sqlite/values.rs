//! Values across the SQLite boundary: parameters bound by number (`$N` and `?N` take the Nth
//! value whatever their order in the text, `?` takes the next one), arrays as JSON text for
//! `json_each`, columns read back, and rusqlite's errors as [`DbError`]s.

use rusqlite::Statement;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::db::database::Value;
use crate::db::error::{DbError, DbErrorKind};

/// Binds `params` by number: `$N`/`?N` take value N, a bare `?` the next one.
pub(super) fn bind(statement: &mut Statement<'_>, params: &[Value]) -> Result<(), DbError> {
    let count = statement.parameter_count();
    let mut next_positional = 0;
    let mut highest_used = 0;
    for index in 1..=count {
        let value_index = match statement.parameter_name(index) {
            None => {
                next_positional += 1;
                next_positional
            }
            Some(name) => name.strip_prefix(['$', '?']).and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| {
                DbError::new(DbErrorKind::InvalidParameter, format!("parameter {name} is not numbered; use $1, $2, … or ?"))
            })?,
        };
        highest_used = highest_used.max(value_index);
        let value = params.get(value_index.wrapping_sub(1)).ok_or_else(|| {
            DbError::new(
                DbErrorKind::InvalidParameter,
                format!("the statement uses parameter {value_index} but {} were given", params.len()),
            )
        })?;
        statement.raw_bind_parameter(index, value).map_err(db_error)?;
    }
    if highest_used != params.len() {
        return Err(DbError::new(
            DbErrorKind::InvalidParameter,
            format!("the statement uses {highest_used} parameters but {} were given", params.len()),
        ));
    }
    Ok(())
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as Sql;
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(Sql::Null),
            Value::Bool(v) => ToSqlOutput::Owned(Sql::Integer(i64::from(*v))),
            Value::Int(v) => ToSqlOutput::Owned(Sql::Integer(*v)),
            Value::Float(v) => ToSqlOutput::Owned(Sql::Real(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::IntArray(v) => ToSqlOutput::Owned(Sql::Text(json(v))),
            Value::FloatArray(v) => ToSqlOutput::Owned(Sql::Text(json(v))),
            Value::TextArray(v) => ToSqlOutput::Owned(Sql::Text(json(v))),
        })
    }
}

fn json<T: serde::Serialize>(items: &[Option<T>]) -> String {
    // Serialising plain numbers and strings cannot fail; an empty array is the safe fallback.
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

pub(super) fn column_value(value: ValueRef<'_>) -> Result<Value, DbError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Float(v),
        ValueRef::Text(bytes) => Value::Text(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| DbError::client("invalid-text", "a text column holds bytes that are not UTF-8"))?,
        ),
        ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
    })
}

pub(super) fn value_as_text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null | ValueRef::Blob(_) => None,
        ValueRef::Integer(v) => Some(v.to_string()),
        ValueRef::Real(v) => Some(v.to_string()),
        ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// SQLite's name for a result code, as its documentation and a guest's error handling use it.
fn code_name(code: rusqlite::ErrorCode) -> &'static str {
    use rusqlite::ErrorCode as C;
    match code {
        C::InternalMalfunction => "SQLITE_INTERNAL",
        C::PermissionDenied => "SQLITE_PERM",
        C::OperationAborted => "SQLITE_ABORT",
        C::DatabaseBusy => "SQLITE_BUSY",
        C::DatabaseLocked => "SQLITE_LOCKED",
        C::OutOfMemory => "SQLITE_NOMEM",
        C::ReadOnly => "SQLITE_READONLY",
        C::OperationInterrupted => "SQLITE_INTERRUPT",
        C::SystemIoFailure => "SQLITE_IOERR",
        C::DatabaseCorrupt => "SQLITE_CORRUPT",
        C::NotFound => "SQLITE_NOTFOUND",
        C::DiskFull => "SQLITE_FULL",
        C::CannotOpen => "SQLITE_CANTOPEN",
        C::FileLockingProtocolFailed => "SQLITE_PROTOCOL",
        C::SchemaChanged => "SQLITE_SCHEMA",
        C::TooBig => "SQLITE_TOOBIG",
        C::ConstraintViolation => "SQLITE_CONSTRAINT",
        C::TypeMismatch => "SQLITE_MISMATCH",
        C::ApiMisuse => "SQLITE_MISUSE",
        C::NoLargeFileSupport => "SQLITE_NOLFS",
        C::AuthorizationForStatementDenied => "SQLITE_AUTH",
        C::ParameterOutOfRange => "SQLITE_RANGE",
        C::NotADatabase => "SQLITE_NOTADB",
        _ => "SQLITE_ERROR",
    }
}

pub(super) fn db_error(error: rusqlite::Error) -> DbError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.clone().unwrap_or_else(|| failure.to_string());
            let kind = if message.contains("no such table") {
                DbErrorKind::UndefinedTable
            } else if message.contains("within a transaction") {
                DbErrorKind::NotInTransaction
            } else {
                DbErrorKind::Database
            };
            DbError { kind, code: code_name(failure.code).to_owned(), message }
        }
        rusqlite::Error::MultipleStatement => {
            DbError::new(DbErrorKind::MultipleStatements, "one call runs one statement; split the text into several calls")
        }
        other => DbError::client("sqlite", other.to_string()),
    }
}
