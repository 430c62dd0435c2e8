//! [`connect`]: from a [`DatabaseUrl`] to a session on its backend.

use std::sync::Arc;

use super::database::Database;
use super::error::ConnectError;
use super::postgres::{self, ConnectOptions};
use super::sqlite;
use super::url::DatabaseUrl;

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

