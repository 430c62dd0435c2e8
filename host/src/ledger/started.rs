//! Steps that run outside a transaction (`transactional = false`), marked as started in a
//! transaction of their own before their script runs and cleared in the transaction that
//! records them done. A mark left behind is a step that was interrupted or failed halfway: what
//! it did before then has committed, so the next run stops until a person has looked (and
//! `wasmig repair` records what they decided).

use crate::core::{Version, rfc3339};
use crate::db::{Database, Value};

use super::table::{HistoryError, HistoryTable, rows_if_created, stored_version, version_key};

/// Which way a marked step was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartedDirection {
    Up,
    Down,
}

impl StartedDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            StartedDirection::Up => "up",
            StartedDirection::Down => "down",
        }
    }
}

/// A step marked as started and not recorded done.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StartedStep {
    pub version: Version,
    pub name: String,
    pub digest: String,
    pub direction: StartedDirection,
    pub started_by: String,
    /// RFC 3339.
    pub started_at: String,
}

/// The started marks of one database.
pub struct Started<'a> {
    db: &'a dyn Database,
    table: HistoryTable,
}

impl<'a> Started<'a> {
    pub fn new(db: &'a dyn Database, history: &HistoryTable) -> Self {
        Started { db, table: history.started() }
    }

    fn failed(&self, source: crate::db::DbError) -> HistoryError {
        HistoryError::Database { table: self.table.to_string(), source }
    }

    /// Marks a step as started, in the caller's transaction.
    pub async fn mark(
        &self,
        version: Version,
        name: &str,
        digest: &str,
        direction: StartedDirection,
        started_by: &str,
    ) -> Result<(), HistoryError> {
        let insert = format!(
            "INSERT INTO {} (version, name, digest, direction, started_by) VALUES ($1, $2, $3, $4, $5)",
            self.table
        );
        let params = [
            version_key(version),
            Value::Text(name.to_owned()),
            Value::Text(digest.to_owned()),
            Value::Text(direction.as_str().to_owned()),
            Value::Text(started_by.to_owned()),
        ];
        self.db.execute(&insert, &params).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Clears a step's mark, in the caller's transaction (the one recording it done, or a
    /// repair's).
    pub async fn clear(&self, version: Version) -> Result<(), HistoryError> {
        let delete = format!("DELETE FROM {} WHERE version = $1", self.table);
        self.db.execute(&delete, &[version_key(version)]).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Every step left marked, oldest version first (none before the table exists).
    pub async fn list(&self) -> Result<Vec<StartedStep>, HistoryError> {
        let select = format!(
            "SELECT version, name, digest, direction, started_by, CAST(started_at AS TEXT) FROM {}",
            self.table
        );
        let rows = rows_if_created(self.db, &select, &[], &self.table).await?;
        let corrupt = || HistoryError::Corrupt { table: self.table.to_string(), problem: "bad row".into() };
        rows.into_iter()
            .map(|row| match <[Value; 6]>::try_from(row) {
                Ok(
                    [
                        version,
                        Value::Text(name),
                        Value::Text(digest),
                        Value::Text(direction),
                        Value::Text(started_by),
                        Value::Text(started_at),
                    ],
                ) => Ok(StartedStep {
                    version: stored_version(&version).ok_or_else(corrupt)?,
                    name,
                    digest,
                    direction: match direction.as_str() {
                        "up" => StartedDirection::Up,
                        "down" => StartedDirection::Down,
                        _ => return Err(corrupt()),
                    },
                    started_by,
                    started_at: rfc3339(&started_at),
                }),
                _ => Err(corrupt()),
            })
            .collect::<Result<Vec<_>, _>>()
            // Sorted here: the stored digits sort as text, not as numbers.
            .map(|mut steps| {
                steps.sort_by_key(|step| step.version);
                steps
            })
    }
}
