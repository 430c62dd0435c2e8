//! The names of the engine's tables, all derived from the history table's (optionally
//! schema-qualified) name, [`HistoryError`], which names the table that failed, and
//! [`LedgerWrite`], a write to one of them made ready to go out with its transaction's COMMIT.
//!
//! Its name (and PostgreSQL schema) are configurable so that several services can share a
//! database. Identifiers are validated once into [`Identifier`] and quoted only in
//! [`HistoryTable`]'s `Display`; every value goes through parameters.

use std::fmt;

use crate::core::{Identifier, IdentifierError, Version, quote_ident};
use crate::db::{BoundStatement, Database, DbError, DbErrorKind, Value};

pub const DEFAULT_TABLE: &str = "wasmig_history";

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

    /// The schema the project file names, which the engine creates where the backend has
    /// schemas.
    pub(crate) fn schema(&self) -> Option<&Identifier> {
        self.schema.as_ref()
    }

    /// The schema the table's statements name (the project file's, or the one it was pinned
    /// to), if any.
    pub(super) fn namespace(&self) -> Option<&str> {
        self.schema.as_ref().or(self.resolved.as_ref()).map(Identifier::as_str)
    }

    /// The table's own name, unquoted and without its schema.
    pub(super) fn bare_name(&self) -> &str {
        self.table.as_str()
    }

    /// A table beside the history table: `<history>_<suffix>`.
    pub(super) fn beside(&self, suffix: &str) -> HistoryTable {
        HistoryTable {
            schema: self.schema.clone(),
            table: self.table.with_suffix(suffix),
            resolved: self.resolved.clone(),
        }
    }

    /// The table recording explicit repairs of applied migrations' digests.
    pub(crate) fn repairs(&self) -> HistoryTable {
        self.beside("repairs")
    }

    /// The table with one row per backfill: its state, estimate and rate window.
    pub(crate) fn backfills(&self) -> HistoryTable {
        self.beside("backfill")
    }

    /// The table holding the migration lock in `table` mode: a row per lock, under a lease.
    pub(crate) fn locks(&self) -> HistoryTable {
        self.beside("lock")
    }

    /// The table marking the steps that run outside a transaction while they run: a row left
    /// behind is a step that was interrupted.
    pub(crate) fn started(&self) -> HistoryTable {
        self.beside("started")
    }

    /// The audit trail: a row per step, stamp, repair and backfill run, never removed.
    pub(crate) fn audit(&self) -> HistoryTable {
        self.beside("audit")
    }

    /// The table with one row per key-range chunk of a backfill.
    pub(crate) fn chunks(&self) -> HistoryTable {
        self.beside("backfill_chunks")
    }

    /// Whether `table` in `namespace` is one of the engine's own tables (this one and those
    /// beside it), which a comparison of schemas leaves out.
    pub fn owns(&self, namespace: &str, table: &str) -> bool {
        let in_namespace = self.namespace().is_none_or(|schema| schema == namespace);
        let ours = [self.clone(), self.repairs(), self.backfills(), self.locks(), self.started(), self.audit(), self.chunks()];
        in_namespace && ours.iter().any(|ledger| ledger.table.as_str() == table)
    }

    /// The name the migration lock is taken under: one lock per history table.
    pub fn lock_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", schema.as_str(), self.table.as_str()),
            None => self.table.as_str().to_owned(),
        }
    }
}

impl fmt::Display for HistoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = self.namespace() {
            write!(f, "{}.", quote_ident(schema))?;
        }
        f.write_str(&quote_ident(self.table.as_str()))
    }
}

/// The rows `select` reads from `table`, or none while the table does not exist yet (a
/// read-only command before the first locked run created the ledger).
pub(super) async fn rows_if_created(
    db: &dyn Database,
    select: &str,
    params: &[Value],
    table: &HistoryTable,
) -> Result<Vec<Vec<Value>>, HistoryError> {
    match db.query(select, params).await {
        Ok(rows) => Ok(rows.values),
        Err(e) if e.kind == DbErrorKind::UndefinedTable => Ok(Vec::new()),
        Err(source) => Err(HistoryError::Database { table: table.to_string(), source }),
    }
}

/// A version as the ledger's statements bind it: its digits as text (see [`Version::key`]).
pub(super) fn version_key(version: Version) -> Value {
    Value::Text(version.key())
}

/// A version as the ledger holds it: digits as text, or an integer in a ledger an earlier
/// wasmig made that no locked run has converted yet (read-only commands still read it).
pub(super) fn stored_version(value: &Value) -> Option<Version> {
    match value {
        Value::Text(digits) => Version::from_digits(digits),
        Value::Int(n) => u128::try_from(*n).ok().map(Version),
        _ => None,
    }
}

/// A write to one of the ledger's tables, made ready rather than run: a step's history and
/// audit rows go out pipelined with its COMMIT ([`Database::execute_and_commit`]), one round
/// trip for all of them. It keeps its table's name for the error if it fails.
#[derive(Debug, Clone)]
pub struct LedgerWrite {
    table: String,
    pub bound: BoundStatement,
}

impl LedgerWrite {
    pub(super) fn new(table: &HistoryTable, statement: String, params: Vec<Value>) -> Self {
        LedgerWrite { table: table.to_string(), bound: BoundStatement { statement, params } }
    }

    /// Runs it now, in the caller's transaction.
    pub async fn run(&self, db: &dyn Database) -> Result<(), HistoryError> {
        db.execute(&self.bound.statement, &self.bound.params).await.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Runs each of `writes` now, in order, in the caller's transaction.
    pub async fn run_all(writes: Vec<LedgerWrite>, db: &dyn Database) -> Result<(), HistoryError> {
        for write in writes {
            write.run(db).await?;
        }
        Ok(())
    }

    /// The error for this write when the database refused it.
    pub fn failed(&self, source: DbError) -> HistoryError {
        HistoryError::Database { table: self.table.clone(), source }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history table {table}: {source}")]
    Database { table: String, source: DbError },
    #[error("history table {table} holds a row wasmig cannot read: {problem}")]
    Corrupt { table: String, problem: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_name_is_quoted() {
        let table = HistoryTable::new(Some("billing"), Some("history")).unwrap();
        assert_eq!(table.to_string(), "\"billing\".\"history\"");
        assert_eq!(table.beside("backfill").to_string(), "\"billing\".\"history_backfill\"");
        assert_eq!(table.repairs().to_string(), "\"billing\".\"history_repairs\"");
        assert_eq!(table.lock_name(), "billing.history");
    }
}
