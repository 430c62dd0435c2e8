//! The backend boundary: the [`Database`] trait and what crosses it, a typed [`DbError`], and
//! the [`Dialect`] that answers backend differences; PostgreSQL and SQLite implement it.

mod database;
mod dialect;
mod error;
mod postgres;
mod sqlite;
mod transport;
mod url;

use std::sync::Arc;

pub use self::database::{
    Access, Database, HeldLock, LockCheck, ResultCap, Rows, ScriptRow, Value, is_truthy,
};
pub use self::dialect::{Backend, Dialect, StatementScreen};
pub use self::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};
pub use self::postgres::{ConnInfoError, ConnectOptions, PgEnv, Pooler, PgTarget, RootCerts, SslMode, TlsSetupError};
pub use self::transport::{TlsCheck, Transport};
pub use self::url::{DatabaseUrl, UnsupportedUrl};

/// Connects to `url`; a PostgreSQL server that is not answering yet (a CI service container
/// still starting, say) is waited for as `options` allow.
pub async fn connect(url: &DatabaseUrl, options: ConnectOptions) -> Result<Arc<dyn Database>, ConnectError> {
    let shown = url.to_string();
    Ok(match url {
        DatabaseUrl::Postgres(target) => Arc::new(postgres::PostgresDatabase::connect(target, options).await?),
        DatabaseUrl::Sqlite(path) => {
            // Opening may wait on another connection's lock too (switching to WAL).
            let path = path.clone();
            let opened = tokio::task::spawn_blocking(move || sqlite::SqliteDatabase::open(Some(&path), &shown)).await;
            Arc::new(opened.map_err(|error| ConnectError::Sqlite { url: url.to_string(), reason: error.to_string() })??)
        }
        DatabaseUrl::SqliteMemory => Arc::new(sqlite::SqliteDatabase::open(None, &shown)?),
    })
}

