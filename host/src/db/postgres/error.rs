//! tokio-postgres errors as the backend's typed [`DbError`]: the server's SQLSTATE and message, or
//! the client's cause chain.

use crate::db::error::DbError;

pub(super) fn db_error(error: tokio_postgres::Error) -> DbError {
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
