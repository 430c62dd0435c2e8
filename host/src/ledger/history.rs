//! The history table: which migrations are applied, with their digests, and the repairs
//! recorded against it. Invariant 5 lives here: a recorded digest only changes through an
//! explicit, recorded repair.

use crate::core::{Digest, Version, rfc3339};
use crate::db::{Database, DbError, DbErrorKind, Value};
use crate::project::manifest::Kind;

use super::table::{HistoryError, HistoryTable, LedgerWrite, rows_if_created, stored_version, version_key};

/// One row of the history table. Its timestamp is RFC 3339.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppliedMigration {
    pub version: Version,
    pub name: String,
    pub kind: Kind,
    pub digest: Digest,
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
    pub kind: Kind,
    pub digest: &'a Digest,
    pub applied_by: &'a str,
    pub duration_ms: i64,
    pub signers: &'a str,
    /// The migration's files as applied ([`crate::project::kept_files::KeptFiles`], as JSON).
    pub files: &'a str,
}

/// An explicit, recorded acceptance of an applied migration's changed files.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Repair {
    pub version: Version,
    pub old_digest: Digest,
    pub new_digest: Digest,
    pub reason: String,
    pub repaired_by: String,
    pub repaired_at: String,
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

    /// Whether the history table exists yet (a read-only look that creates nothing).
    pub async fn exists(&self) -> Result<bool, HistoryError> {
        let probe = format!("SELECT count(*) FROM {} WHERE 1 = 0", self.table);
        match self.db.query(&probe, &[]).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == DbErrorKind::UndefinedTable => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
    }

    pub async fn applied(&self) -> Result<Vec<AppliedMigration>, HistoryError> {
        let rows = self.db.query(&self.applied_select(), &[]).await.map_err(|e| self.failed(e))?;
        self.applied_rows(rows.values)
    }

    /// [`applied`](Self::applied), or `None` when the table does not exist yet: one statement
    /// where asking [`exists`](Self::exists) first would be two.
    pub async fn applied_if_created(&self) -> Result<Option<Vec<AppliedMigration>>, HistoryError> {
        match self.db.query(&self.applied_select(), &[]).await {
            Ok(rows) => self.applied_rows(rows.values).map(Some),
            Err(e) if e.kind == DbErrorKind::UndefinedTable => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn applied_select(&self) -> String {
        format!(
            "SELECT version, name, kind, digest, CAST(applied_at AS TEXT), applied_by, duration_ms, signers \
             FROM {}",
            self.table
        )
    }

    fn applied_rows(&self, rows: Vec<Vec<Value>>) -> Result<Vec<AppliedMigration>, HistoryError> {
        // Sorted here: the stored digits sort as text, not as numbers.
        let mut applied = rows.into_iter().map(|row| self.applied_row(row)).collect::<Result<Vec<_>, _>>()?;
        applied.sort_by_key(|row| row.version);
        Ok(applied)
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
        Ok(AppliedMigration {
            version: stored_version(&version).ok_or_else(|| corrupt("version is not a version's digits"))?,
            name: text(name, "name is not text")?,
            kind: Kind::parse(&text(kind, "kind is not text")?).ok_or_else(|| corrupt("kind is not sql or component"))?,
            digest: text(digest, "digest is not text")?.parse().map_err(|_| corrupt("digest is not a digest"))?,
            applied_at: rfc3339(&text(applied_at, "applied_at is not a timestamp")?),
            applied_by: text(applied_by, "applied_by is not text")?,
            duration_ms: int(duration_ms, "duration_ms is not an integer")?,
            signers: text(signers, "signers is not text")?,
        })
    }

    /// The write that records an applied migration. Run it inside the migration's own
    /// transaction, or send it with its COMMIT (invariant 1: the step and its row commit
    /// together).
    pub fn record_write(&self, row: &NewRecord<'_>) -> LedgerWrite {
        let insert = format!(
            "INSERT INTO {} (version, name, kind, digest, applied_by, duration_ms, signers, files) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            self.table
        );
        let params = vec![
            version_key(row.version),
            Value::Text(row.name.to_owned()),
            Value::Text(row.kind.as_str().to_owned()),
            Value::Text(row.digest.to_string()),
            Value::Text(row.applied_by.to_owned()),
            Value::Int(row.duration_ms),
            Value::Text(row.signers.to_owned()),
            Value::Text(row.files.to_owned()),
        ];
        LedgerWrite::new(self.table, insert, params)
    }

    /// Records that an applied migration's files changed and were accepted, and makes the new
    /// digest (and `files`, the files now, as JSON) the recorded ones, in the caller's
    /// transaction (invariant 5: never a silent reset).
    pub async fn repair(&self, repair: &Repair, files: &str) -> Result<(), HistoryError> {
        self.log_repair(repair).await?;
        let update = format!("UPDATE {} SET digest = $1, files = $3 WHERE version = $2", self.table);
        let params = [Value::Text(repair.new_digest.to_string()), version_key(repair.version), Value::Text(files.into())];
        self.db.execute(&update, &params).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Keeps a repair's record, with who, when and why, in the caller's transaction.
    pub async fn log_repair(&self, repair: &Repair) -> Result<(), HistoryError> {
        let insert = format!(
            "INSERT INTO {} (version, old_digest, new_digest, reason, repaired_by) VALUES ($1, $2, $3, $4, $5)",
            self.table.repairs()
        );
        let params = [
            version_key(repair.version),
            Value::Text(repair.old_digest.to_string()),
            Value::Text(repair.new_digest.to_string()),
            Value::Text(repair.reason.clone()),
            Value::Text(repair.repaired_by.clone()),
        ];
        self.db.execute(&insert, &params).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// An applied migration's recorded digest, and the files it had when it was applied (or
    /// last repaired), as JSON (`None` when an earlier wasmig applied it without keeping them);
    /// `None` when it is not applied.
    pub async fn recorded_files(&self, version: Version) -> Result<Option<(Digest, Option<String>)>, HistoryError> {
        let select = format!("SELECT digest, files FROM {} WHERE version = $1", self.table);
        let rows = self.db.query(&select, &[version_key(version)]).await.map_err(|e| self.failed(e))?;
        let corrupt = || HistoryError::Corrupt { table: self.table.to_string(), problem: "digest is not a digest".into() };
        let Some(row) = rows.values.first() else { return Ok(None) };
        let digest = match row.first() {
            Some(Value::Text(digest)) => digest.parse().map_err(|_| corrupt())?,
            _ => return Err(corrupt()),
        };
        let files = match row.get(1) {
            Some(Value::Text(files)) => Some(files.clone()),
            _ => None,
        };
        Ok(Some((digest, files)))
    }

    /// Every recorded repair, oldest first (empty before the table exists).
    pub async fn repairs(&self) -> Result<Vec<Repair>, HistoryError> {
        let select = format!(
            "SELECT version, old_digest, new_digest, reason, repaired_by, CAST(repaired_at AS TEXT) FROM {} \
             ORDER BY repaired_at",
            self.table.repairs()
        );
        let rows = rows_if_created(self.db, &select, &[], &self.table.repairs()).await?;
        let corrupt = || HistoryError::Corrupt { table: self.table.repairs().to_string(), problem: "bad row".into() };
        rows.into_iter()
            .map(|row| match <[Value; 6]>::try_from(row) {
                Ok(
                    [
                        version,
                        Value::Text(old),
                        Value::Text(new),
                        Value::Text(reason),
                        Value::Text(by),
                        Value::Text(at),
                    ],
                ) => Ok(Repair {
                    version: stored_version(&version).ok_or_else(corrupt)?,
                    old_digest: old.parse().map_err(|_| corrupt())?,
                    new_digest: new.parse().map_err(|_| corrupt())?,
                    reason,
                    repaired_by: by,
                    repaired_at: rfc3339(&at),
                }),
                _ => Err(corrupt()),
            })
            .collect()
    }

    /// Removes a reverted migration's row and its backfill progress, inside the revert's
    /// transaction.
    pub async fn forget(&self, version: Version) -> Result<(), HistoryError> {
        LedgerWrite::run_all(self.forget_writes(version), self.db).await
    }

    /// [`forget`](Self::forget) made ready, to go out with the revert's COMMIT.
    pub fn forget_writes(&self, version: Version) -> Vec<LedgerWrite> {
        [self.table.clone(), self.table.backfills(), self.table.chunks()]
            .iter()
            .map(|table| LedgerWrite::new(table, format!("DELETE FROM {table} WHERE version = $1"), vec![version_key(version)]))
            .collect()
    }
}
