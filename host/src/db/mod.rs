//! The backend boundary: the [`Database`] trait and what crosses it, a typed [`DbError`], and
//! the [`Dialect`] that answers backend differences; PostgreSQL and SQLite implement it.

mod database;
mod dialect;
mod error;
mod postgres;
mod sqlite;
mod url;

use std::sync::Arc;
use std::time::Duration;

pub use self::database::{
    Access, Database, HeldLock, LockCheck, ResultCap, Rows, ScriptRow, Value, is_truthy,
};
pub use self::dialect::{Backend, Dialect, StatementScreen};
pub use self::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};
pub use self::url::{DatabaseUrl, UnsupportedUrl};

/// Connects to `url`, retrying until `timeout` so that a database that is still starting
/// (a CI service container, say) is waited for.
pub async fn connect(url: &DatabaseUrl, timeout: Duration) -> Result<Arc<dyn Database>, ConnectError> {
    let shown = url.to_string();
    Ok(match url {
        DatabaseUrl::Postgres(raw) => Arc::new(postgres::PostgresDatabase::connect(raw, shown, timeout).await?),
        DatabaseUrl::Sqlite(path) => {
            // Opening may wait on another connection's lock too (switching to WAL).
            let path = path.clone();
            let opened = tokio::task::spawn_blocking(move || sqlite::SqliteDatabase::open(Some(&path), &shown)).await;
            Arc::new(opened.map_err(|error| ConnectError::Sqlite { url: url.to_string(), reason: error.to_string() })??)
        }
        DatabaseUrl::SqliteMemory => Arc::new(sqlite::SqliteDatabase::open(None, &shown)?),
    })
}

