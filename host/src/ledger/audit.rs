//! The audit trail, `<history>_audit`: one row for every step a run applied, reverted, stamped
//! or repaired, every backfill run's end, and every step that failed, with who (the OS account
//! and database role, the host, the CI job), when, what, how long, the digest and the signers'
//! key ids, and the outcome. Only ever appended: `down` removes history rows, never these.

use crate::core::{CiRun, Digest, Version, rfc3339};
use crate::db::{Database, Value};

use super::table::{HistoryError, HistoryTable, LedgerWrite, rows_if_created, stored_version, version_key};

/// Who is running: the same for every row a run writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The OS account, and the database role where there is one (`deploy as app_owner`).
    pub actor: String,
    pub host: String,
    /// The CI job, when there is one.
    pub ci: Option<CiRun>,
}

/// A row to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    /// `applied`, `reverted`, `stamped`, `repaired`, `backfilled`, `backfill_paused`,
    /// `backfill_failed`, `failed`.
    pub action: &'a str,
    pub version: Version,
    pub migration: &'a str,
    pub digest: Digest,
    pub signers: &'a str,
    pub ok: bool,
    /// The error for a failure, the reason for a stamp or repair, the rows of a backfill.
    pub detail: &'a str,
    pub duration_ms: i64,
}

/// One row of the audit trail, as read back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    pub action: String,
    pub version: Version,
    pub migration: String,
    pub digest: String,
    pub signers: String,
    /// `ok` or `failed`.
    pub outcome: String,
    pub detail: String,
    pub duration_ms: i64,
    pub actor: String,
    pub host: String,
    pub ci: Option<CiRun>,
}

/// The audit trail of one database.
pub struct Audit<'a> {
    db: &'a dyn Database,
    table: HistoryTable,
}

impl<'a> Audit<'a> {
    pub fn new(db: &'a dyn Database, history: &HistoryTable) -> Self {
        Audit { db, table: history.audit() }
    }

    /// Appends a row, in the caller's transaction (the step's own, so that the two commit
    /// together).
    pub async fn append(&self, entry: &NewAuditEntry<'_>, who: &Who) -> Result<(), HistoryError> {
        self.append_write(entry, who).run(self.db).await
    }

    /// [`append`](Self::append) made ready, to go out with the step's COMMIT.
    pub fn append_write(&self, entry: &NewAuditEntry<'_>, who: &Who) -> LedgerWrite {
        let insert = format!(
            "INSERT INTO {} (action, version, migration, digest, signers, outcome, detail, duration_ms, actor, host, ci) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            self.table
        );
        let text = |s: &str| Value::Text(s.to_owned());
        let params = vec![
            text(entry.action),
            version_key(entry.version),
            text(entry.migration),
            Value::Text(entry.digest.to_string()),
            text(entry.signers),
            text(if entry.ok { "ok" } else { "failed" }),
            text(entry.detail),
            Value::Int(entry.duration_ms),
            text(&who.actor),
            text(&who.host),
            who.ci.as_ref().map_or(Value::Null, |ci| Value::Text(ci.stored())),
        ];
        LedgerWrite::new(&self.table, insert, params)
    }

    /// Every row, oldest first (none before the table exists).
    pub async fn entries(&self) -> Result<Vec<AuditEntry>, HistoryError> {
        let select = format!(
            "SELECT CAST(at AS TEXT), action, version, migration, digest, signers, outcome, detail, duration_ms, \
             actor, host, ci FROM {} ORDER BY id",
            self.table
        );
        let rows = rows_if_created(self.db, &select, &[], &self.table).await?;
        rows.into_iter().map(|row| self.entry(row)).collect()
    }

    /// The detail of the latest row of `action` about `version` (why its backfill last
    /// failed, say), read alone rather than with the whole trail.
    pub async fn latest_detail(&self, version: Version, action: &str) -> Result<Option<String>, HistoryError> {
        let select = format!(
            "SELECT detail FROM {} WHERE version = $1 AND action = $2 ORDER BY id DESC LIMIT 1",
            self.table
        );
        let params = [version_key(version), Value::Text(action.to_owned())];
        let rows = rows_if_created(self.db, &select, &params, &self.table).await?;
        Ok(rows.into_iter().next().and_then(|row| match row.into_iter().next() {
            Some(Value::Text(detail)) => Some(detail),
            _ => None,
        }))
    }

    fn entry(&self, row: Vec<Value>) -> Result<AuditEntry, HistoryError> {
        let corrupt = || HistoryError::Corrupt { table: self.table.to_string(), problem: "bad row".into() };
        let Ok([at, action, version, migration, digest, signers, outcome, detail, duration_ms, actor, host, ci]) =
            <[Value; 12]>::try_from(row)
        else {
            return Err(corrupt());
        };
        let text = |value: Value| match value {
            Value::Text(text) => Ok(text),
            _ => Err(corrupt()),
        };
        let int = |value: Value| match value {
            Value::Int(n) => Ok(n),
            _ => Err(corrupt()),
        };
        Ok(AuditEntry {
            at: rfc3339(&text(at)?),
            action: text(action)?,
            version: stored_version(&version).ok_or_else(corrupt)?,
            migration: text(migration)?,
            digest: text(digest)?,
            signers: text(signers)?,
            outcome: text(outcome)?,
            detail: text(detail)?,
            duration_ms: int(duration_ms)?,
            actor: text(actor)?,
            host: text(host)?,
            ci: match ci {
                Value::Null => None,
                other => Some(CiRun::from_stored(&text(other)?)),
            },
        })
    }
}
