//! The history table: which migrations are applied, with their digests, and its companion
//! tables (repairs here; backfill progress in [`crate::backfill::store`]).
//!
//! Its name (and PostgreSQL schema) are configurable so that several services can share a
//! database. Identifiers are validated once into [`Identifier`] and quoted only in
//! [`HistoryTable`]'s `Display`; every value goes through parameters.

use std::fmt;

use crate::catalog::Version;
use crate::db::{Backend, Database, DbError, Value};
use crate::digest::Digest;

pub const DEFAULT_TABLE: &str = "wasmig_history";

/// A SQL identifier: letters, digits and `_`, not starting with a digit, at most 47 bytes
/// (PostgreSQL's 63, less the longest suffix wasmig adds, `_backfill_chunks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a usable identifier: use 1 to 47 letters, digits or _, not starting with a digit")]
pub struct IdentifierError {
    pub name: String,
}

impl Identifier {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn new(name: &str) -> Result<Self, IdentifierError> {
        let valid = !name.is_empty()
            && name.len() <= 47
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid { Ok(Identifier(name.to_owned())) } else { Err(IdentifierError { name: name.to_owned() }) }
    }
}

/// The history table's (optionally schema-qualified) name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTable {
    schema: Option<Identifier>,
    table: Identifier,
    /// The schema an unqualified table was found to resolve to on the server (PostgreSQL's
    /// `current_schema()`), written into every statement so that none resolves through
    /// `pg_temp`; the lock name keeps to what the project file says.
    resolved: Option<Identifier>,
}

impl HistoryTable {
    pub fn new(schema: Option<&str>, table: Option<&str>) -> Result<Self, IdentifierError> {
        Ok(HistoryTable {
            schema: schema.map(Identifier::new).transpose()?,
            table: Identifier::new(table.unwrap_or(DEFAULT_TABLE))?,
            resolved: None,
        })
    }

    /// Whether the project file leaves the schema to the server.
    pub fn is_unqualified(&self) -> bool {
        self.schema.is_none()
    }

    /// The table with its statements qualified by `schema`, the server's current schema, when
    /// the project file names none. Invariant 9: the engine's own SQL never resolves a name
    /// through `pg_temp`, where a temporary table of the same name would shadow it.
    pub fn resolved_in(mut self, schema: &str) -> Result<Self, IdentifierError> {
        if self.schema.is_none() {
            self.resolved = Some(Identifier::new(schema)?);
        }
        Ok(self)
    }

    /// A table beside the history table: `<history>_<suffix>`.
    pub(crate) fn beside(&self, suffix: &str) -> HistoryTable {
        HistoryTable {
            schema: self.schema.clone(),
            table: Identifier(format!("{}_{suffix}", self.table.0)),
            resolved: self.resolved.clone(),
        }
    }

    /// The table recording explicit repairs of applied migrations' digests.
    fn repairs(&self) -> HistoryTable {
        self.beside("repairs")
    }

    /// The name the migration lock is taken under: one lock per history table.
    pub fn lock_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", schema.0, self.table.0),
            None => self.table.0.clone(),
        }
    }
}

impl fmt::Display for HistoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = self.schema.as_ref().or(self.resolved.as_ref()) {
            write!(f, "\"{}\".", schema.0)?;
        }
        write!(f, "\"{}\"", self.table.0)
    }
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedMigration {
    pub version: Version,
    pub name: String,
    pub kind: String,
    pub digest: String,
    pub applied_at: String,
    pub applied_by: String,
    pub duration_ms: i64,
    /// Key ids of the trusted keys whose signatures covered the migration, comma-separated.
    pub signers: String,
}

/// A row to record for a migration being applied.
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    pub version: Version,
    pub name: &'a str,
    pub kind: &'a str,
    pub digest: &'a Digest,
    pub applied_by: &'a str,
    pub duration_ms: i64,
    pub signers: &'a str,
}

/// An explicit, recorded acceptance of an applied migration's changed files.
#[derive(Debug, Clone, PartialEq)]
pub struct Repair {
    pub version: Version,
    pub old_digest: String,
    pub new_digest: String,
    pub reason: String,
    pub repaired_by: String,
    pub repaired_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history table {table}: {source}")]
    Database { table: String, source: DbError },
    #[error("history table {table} holds a row wasmig cannot read: {problem}")]
    Corrupt { table: String, problem: String },
}

/// Whether an error says a table (or its schema) does not exist yet: PostgreSQL's
/// undefined_table and invalid_schema_name, SQLite's "no such table".
pub(crate) fn is_missing_table(error: &DbError) -> bool {
    error.code == "42P01" || error.code == "3F000" || error.message.contains("no such table")
}

/// The history table of one database.
pub struct History<'a> {
    db: &'a dyn Database,
    table: &'a HistoryTable,
}

impl<'a> History<'a> {
    pub fn new(db: &'a dyn Database, table: &'a HistoryTable) -> Self {
        History { db, table }
    }

    fn failed(&self, source: DbError) -> HistoryError {
        HistoryError::Database { table: self.table.to_string(), source }
    }

    /// Creates the history and progress tables if missing. Call it under the migration lock:
    /// concurrent `CREATE TABLE IF NOT EXISTS` can still collide on PostgreSQL.
    pub async fn ensure(&self) -> Result<(), HistoryError> {
        let (timestamp, default_now) = match self.db.backend() {
            Backend::Postgres => ("TIMESTAMPTZ", "now()"),
            Backend::Sqlite => ("TEXT", "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"),
        };
        let mut script = String::new();
        if let (Backend::Postgres, Some(schema)) = (self.db.backend(), &self.table.schema) {
            script.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\";\n", schema.0));
        }
        script.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                digest TEXT NOT NULL,
                applied_at {timestamp} NOT NULL DEFAULT {default_now},
                applied_by TEXT NOT NULL,
                duration_ms BIGINT NOT NULL,
                signers TEXT NOT NULL DEFAULT ''
            );
            CREATE TABLE IF NOT EXISTS {repairs} (
                version BIGINT NOT NULL,
                old_digest TEXT NOT NULL,
                new_digest TEXT NOT NULL,
                reason TEXT NOT NULL,
                repaired_by TEXT NOT NULL,
                repaired_at {timestamp} NOT NULL DEFAULT {default_now}
            );
            {backfill_tables}",
            table = self.table,
            backfill_tables = crate::backfill::store::create_tables(self.table, self.db.backend()),
            repairs = self.table.repairs(),
        ));
        self.db.begin(crate::db::Access::ReadWrite).await.map_err(|e| self.failed(e))?;
        let created = self.db.run_script(&script).await;
        match created {
            Ok(_) => self.db.commit().await.map_err(|e| self.failed(e)),
            Err(error) => {
                let _ = self.db.rollback().await;
                Err(self.failed(error))
            }
        }
    }

    /// Whether the history table exists yet (a read-only look that creates nothing).
    pub async fn exists(&self) -> Result<bool, HistoryError> {
        let probe = format!("SELECT count(*) FROM {} WHERE 1 = 0", self.table);
        match self.db.query(&probe, &[]).await {
            Ok(_) => Ok(true),
            Err(e) if is_missing_table(&e) => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
    }

    pub async fn applied(&self) -> Result<Vec<AppliedMigration>, HistoryError> {
        let select = format!(
            "SELECT version, name, kind, digest, CAST(applied_at AS TEXT), applied_by, duration_ms, signers \
             FROM {} ORDER BY version",
            self.table
        );
        let rows = self.db.query(&select, &[]).await.map_err(|e| self.failed(e))?;
        rows.values.into_iter().map(|row| self.applied_row(row)).collect()
    }

    fn applied_row(&self, row: Vec<Value>) -> Result<AppliedMigration, HistoryError> {
        let corrupt = |problem: &str| HistoryError::Corrupt { table: self.table.to_string(), problem: problem.into() };
        let [version, name, kind, digest, applied_at, applied_by, duration_ms, signers] =
            <[Value; 8]>::try_from(row).map_err(|_| corrupt("wrong number of columns"))?;
        let int = |v: Value, what: &str| match v {
            Value::Int(n) => Ok(n),
            _ => Err(corrupt(what)),
        };
        let text = |v: Value, what: &str| match v {
            Value::Text(s) => Ok(s),
            _ => Err(corrupt(what)),
        };
        let version = int(version, "version is not an integer")?;
        Ok(AppliedMigration {
            version: Version(u64::try_from(version).map_err(|_| corrupt("negative version"))?),
            name: text(name, "name is not text")?,
            kind: text(kind, "kind is not text")?,
            digest: text(digest, "digest is not text")?,
            applied_at: text(applied_at, "applied_at is not a timestamp")?,
            applied_by: text(applied_by, "applied_by is not text")?,
            duration_ms: int(duration_ms, "duration_ms is not an integer")?,
            signers: text(signers, "signers is not text")?,
        })
    }

    /// Records an applied migration. Call it inside the migration's own transaction
    /// (invariant 1: the step and its row commit together).
    pub async fn record(&self, row: &NewRecord<'_>) -> Result<(), HistoryError> {
        let insert = format!(
            "INSERT INTO {} (version, name, kind, digest, applied_by, duration_ms, signers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.table
        );
        let params = [
            Value::Int(row.version.as_i64()),
            Value::Text(row.name.to_owned()),
            Value::Text(row.kind.to_owned()),
            Value::Text(row.digest.to_string()),
            Value::Text(row.applied_by.to_owned()),
            Value::Int(row.duration_ms),
            Value::Text(row.signers.to_owned()),
        ];
        self.db.execute(&insert, &params).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Records that an applied migration's files changed and were accepted, and makes the new
    /// digest the recorded one, in the caller's transaction (invariant 5: never a silent reset).
    pub async fn repair(&self, repair: &Repair) -> Result<(), HistoryError> {
        let insert = format!(
            "INSERT INTO {} (version, old_digest, new_digest, reason, repaired_by) VALUES ($1, $2, $3, $4, $5)",
            self.table.repairs()
        );
        let params = [
            Value::Int(repair.version.as_i64()),
            Value::Text(repair.old_digest.clone()),
            Value::Text(repair.new_digest.clone()),
            Value::Text(repair.reason.clone()),
            Value::Text(repair.repaired_by.clone()),
        ];
        self.db.execute(&insert, &params).await.map_err(|e| self.failed(e))?;
        let update = format!("UPDATE {} SET digest = $1 WHERE version = $2", self.table);
        let params = [Value::Text(repair.new_digest.clone()), Value::Int(repair.version.as_i64())];
        self.db.execute(&update, &params).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Every recorded repair, oldest first (empty before the table exists).
    pub async fn repairs(&self) -> Result<Vec<Repair>, HistoryError> {
        let select = format!(
            "SELECT version, old_digest, new_digest, reason, repaired_by, CAST(repaired_at AS TEXT) FROM {} \
             ORDER BY repaired_at, version",
            self.table.repairs()
        );
        let rows = match self.db.query(&select, &[]).await {
            Ok(rows) => rows,
            Err(e) if is_missing_table(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(e)),
        };
        let corrupt = || HistoryError::Corrupt { table: self.table.repairs().to_string(), problem: "bad row".into() };
        rows.values
            .into_iter()
            .map(|row| match <[Value; 6]>::try_from(row) {
                Ok(
                    [
                        Value::Int(version),
                        Value::Text(old),
                        Value::Text(new),
                        Value::Text(reason),
                        Value::Text(by),
                        Value::Text(at),
                    ],
                ) => Ok(Repair {
                    version: Version(u64::try_from(version).map_err(|_| corrupt())?),
                    old_digest: old,
                    new_digest: new,
                    reason,
                    repaired_by: by,
                    repaired_at: at,
                }),
                _ => Err(corrupt()),
            })
            .collect()
    }

    /// Removes a reverted migration's row and its backfill progress, inside the revert's
    /// transaction.
    pub async fn forget(&self, version: Version) -> Result<(), HistoryError> {
        let mut tables = vec![self.table.clone()];
        tables.extend(crate::backfill::store::tables(self.table));
        for table in tables {
            let delete = format!("DELETE FROM {table} WHERE version = $1");
            self.db.execute(&delete, &[Value::Int(version.as_i64())]).await.map_err(|e| self.failed(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_anything_that_needs_quoting_tricks() {
        assert!(Identifier::new("wasmig_history").is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "t; DROP TABLE x", &"x".repeat(48)] {
            assert!(Identifier::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn qualified_name_is_quoted() {
        let table = HistoryTable::new(Some("billing"), Some("history")).unwrap();
        assert_eq!(table.to_string(), "\"billing\".\"history\"");
        assert_eq!(table.beside("backfill").to_string(), "\"billing\".\"history_backfill\"");
        assert_eq!(table.repairs().to_string(), "\"billing\".\"history_repairs\"");
        assert_eq!(table.lock_name(), "billing.history");
    }
}
