//! [`Error`]: every way a wasmig run can fail, each carrying the data that names what failed
//! (file, migration, limit, URL); [`ErrorKind`], the coarse class the CLI maps to an exit
//! code; and [`RunError`], a failed run's error with what it had committed.

use std::fmt;

use crate::config::ConfigError;
use crate::core::limits::Limit;
use crate::core::{Digest, Version};
use crate::db::{ConnectError, DbError, LockError, ScratchError};
use crate::ledger::foreign::ForeignHistoryError;
use crate::ledger::{BackfillState, HistoryError, StartedStep};
use crate::plan::{PlanError, TakeOverError};
use crate::project::catalog::CatalogError;
use crate::report::Report;
use crate::sandbox::SandboxError;
use crate::trust::TrustError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Repair(#[from] RepairError),
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error(transparent)]
    ForeignHistory(#[from] ForeignHistoryError),
    #[error(transparent)]
    TakeOver(#[from] TakeOverError),
    #[error("cannot read the schema of {database}: {source}")]
    Schema { database: String, source: DbError },
    #[error("migration {migration}: {file} failed: {source}")]
    Sql { migration: String, file: &'static str, source: DbError },
    #[error(
        "migration {migration}: {file} failed: {source}; such a statement cannot run inside a transaction: \
         set `transactional = false` in {migration}/migration.toml (with kind = \"sql\") to run {file} \
         outside one, a statement at a time"
    )]
    NeedsNoTransaction { migration: String, file: &'static str, source: DbError },
    #[error(
        "migration {migration}: {file} failed outside a transaction: {source}; the statements before the \
         failing one have committed{}; check the database, then `wasmig repair {version} --retry --reason …` \
         lets `wasmig up` run it again, or `wasmig repair {version} --mark-done --reason …` records it done",
        invalid_note(.invalid_indexes)
    )]
    AutocommitFailed {
        migration: String,
        version: Version,
        file: &'static str,
        /// Boxed: the variant would otherwise make every `Error` larger.
        source: Box<DbError>,
        invalid_indexes: Vec<String>,
    },
    #[error(
        "migration {migration}: its {} step, run outside a transaction, was started at {} by {} and did not \
         finish; what it did before it stopped has committed{}; check the database, then `wasmig repair {} \
         --retry --reason …` lets it run again, or `wasmig repair {} --mark-done --reason …` records it done",
        .step.direction.as_str(),
        .step.started_at,
        .step.started_by,
        invalid_note(.invalid_indexes),
        .step.version,
        .step.version
    )]
    Interrupted {
        migration: String,
        /// Boxed: the variant would otherwise make every `Error` larger.
        step: Box<StartedStep>,
        invalid_indexes: Vec<String>,
    },
    #[error(
        "migration {migration}: verify.sql statement {statement} returned {}, expected true",
        .value.as_deref().map_or("NULL".to_owned(), |v| format!("{v:?}"))
    )]
    VerifyFailed { migration: String, statement: usize, value: Option<String> },
    #[error("migration {migration}: could not {action} its transaction: {source}")]
    Transaction { migration: String, action: &'static str, source: DbError },
    #[error(
        "migration {migration}: backfill returned cursor {cursor:?} again; \
         a cursor must advance or the backfill would never end"
    )]
    CursorStuck { migration: String, cursor: String },
    #[error(
        "migration {migration}: backfill returned cursor {next:?} after {cursor:?}, which {problem}; \
         with backfill.key = {key:?} a cursor must grow with every batch and stay within its chunk"
    )]
    CursorOutOfOrder { migration: String, key: String, cursor: String, next: String, problem: String },
    #[error(
        "migration {migration}: backfill took {batches} batches in this run without finishing \
         (backfill.max_batches); a backfill without backfill.key cannot be checked for a cursor \
         that moves but never ends — declare the key, or raise max_batches if this is expected"
    )]
    BackfillUnbounded { migration: String, batches: u64 },
    #[error("migration {migration}: {call} returned {found} where {expected} was expected")]
    UnexpectedOutcome { migration: String, call: String, expected: &'static str, found: String },
    #[error("migration {migration} has no [backfill] in its migration.toml")]
    NoBackfill { migration: String },
    #[error("migration {migration} is not applied yet; `wasmig up` applies it and starts its backfill")]
    BackfillNotApplied { migration: String },
    #[error("migration {migration}: its backfill's progress is gone (was the migration reverted?)")]
    BackfillGone { migration: String },
    #[error("migration {migration}: chunk {chunk}'s lease passed to another worker; the batch was rolled back")]
    BackfillLeaseLost { migration: String, chunk: i64 },
    #[error(
        "migration {migration}: backfill batch {batch} of chunk {chunk} ({}) hit its {limit} even at the \
         floor of {size} rows (backfill.min_batch_size); {} — raise the limit in migration.toml or lower the floor",
        .cursor.as_deref().map_or("from the chunk's start".to_owned(), |c| format!("after cursor {c:?}")),
        if *.fuel_spent > 0 { format!("the halved attempts burnt {} fuel without finishing", .fuel_spent) }
        else { "each attempt was rolled back".to_owned() }
    )]
    BackfillAtFloor {
        migration: String,
        limit: Limit,
        chunk: i64,
        batch: u64,
        cursor: Option<String>,
        size: u32,
        fuel_spent: u64,
    },
    #[error("migration {migration}'s backfill is {state}; `wasmig backfill resume {version}` lets it go on")]
    BackfillPaused { migration: String, version: Version, state: String },
    #[error("migration {migration}'s backfill is {state}, so it cannot become {wanted}")]
    BackfillState { migration: String, state: BackfillState, wanted: BackfillState },
    #[error(
        "migration {migration} needs the backfill of {needs} finished first (it is {state}); \
         `wasmig backfill status` shows it, `wasmig backfill run` finishes it"
    )]
    BackfillUnfinished { migration: String, needs: String, state: String },
    #[error("stopped on request (Ctrl-C or SIGTERM) {after}; everything committed stays, and `{resume}` goes on from there")]
    StopRequested { after: String, resume: String },
    #[error(
        "migration {migration}: the backup [backup] asks for before its {step} step failed, so the step did not \
         run: {reason}; fix the backup (or [backup] in wasmig.toml) and run again"
    )]
    BackupFailed { migration: String, step: &'static str, reason: String },
}

/// The part of a message naming the INVALID indexes a failed `CREATE INDEX CONCURRENTLY` left.
fn invalid_note(indexes: &[String]) -> String {
    if indexes.is_empty() {
        return String::new();
    }
    format!(
        "; PostgreSQL holds INVALID indexes, which a failed CREATE INDEX CONCURRENTLY leaves behind \
         (drop them with DROP INDEX CONCURRENTLY before a retry): {}",
        indexes.join(", ")
    )
}

/// Why `repair` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    #[error("there is no migration {version} in the project")]
    NoFolder { version: Version },
    #[error("migration {version} is not applied; there is nothing to repair")]
    NotApplied { version: Version },
    #[error(
        "migration {folder}'s files hash to {found}, not the accepted {accepted}; review the files and accept their digest"
    )]
    NotWhatWasAccepted { folder: String, accepted: Digest, found: Digest },
    #[error("migration {folder}'s files already match its recorded digest; there is nothing to repair")]
    NothingToRepair { folder: String },
    #[error("migration {folder} has no interrupted step (one run outside a transaction that did not finish)")]
    NotInterrupted { folder: String },
}

/// What class of failure an [`Error`] is; the CLI's exit codes follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The project's files or settings are malformed.
    Project,
    /// The database could not be reached.
    Connection,
    /// Another run held the migration lock too long.
    Lock,
    /// History and files disagree (a changed or missing applied migration, out of order).
    Integrity,
    /// A migration failed (SQL error, verify, the component's own error) and was rolled back.
    MigrationFailed,
    /// A component trapped or hit a sandbox limit, or was refused by the sandbox.
    Sandbox,
    /// The artifacts do not match `wasmig.sum`, or its signatures do not satisfy the policy.
    Trust,
    /// A backfill is paused or unfinished where it must be done (expand/contract).
    BackfillUnfinished,
    /// The run was asked to stop (Ctrl-C, SIGTERM) and stopped between steps or batches.
    Stopped,
    /// The backup `[backup]` asks for before a step could not be taken; the step did not run.
    Backup,
}

impl ErrorKind {
    /// The kind's name in JSON output and in the `result` object's `exit` (docs/json.md).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Project => "project",
            ErrorKind::Connection => "connection",
            ErrorKind::Lock => "lock",
            ErrorKind::Integrity => "integrity",
            ErrorKind::MigrationFailed => "migration_failed",
            ErrorKind::Sandbox => "sandbox",
            ErrorKind::Trust => "trust",
            ErrorKind::BackfillUnfinished => "backfill_unfinished",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Backup => "backup",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Catalog(CatalogError::Untrusted { .. }) => ErrorKind::Trust,
            Error::Config(_) | Error::Catalog(_) | Error::Repair(_) => ErrorKind::Project,
            Error::Trust(_) => ErrorKind::Trust,
            Error::Connect(_) => ErrorKind::Connection,
            Error::ForeignHistory(ForeignHistoryError::Database { .. }) => ErrorKind::Connection,
            Error::ForeignHistory(_) | Error::TakeOver(_) => ErrorKind::Project,
            Error::Scratch(ScratchError::Create { .. } | ScratchError::Connect(_) | ScratchError::Read { .. })
            | Error::Schema { .. } => ErrorKind::Connection,
            Error::Scratch(ScratchError::Folder { .. } | ScratchError::NotEmpty { .. } | ScratchError::IsTarget { .. }) => {
                ErrorKind::Project
            }
            Error::Lock(_) => ErrorKind::Lock,
            Error::Plan(PlanError::UnknownTarget(_) | PlanError::NoDown { .. }) => ErrorKind::Project,
            Error::Plan(_) => ErrorKind::Integrity,
            Error::Sandbox(SandboxError::Guest { .. }) => ErrorKind::MigrationFailed,
            Error::Sandbox(SandboxError::Engine(_)) => ErrorKind::Sandbox,
            Error::Sandbox(_) => ErrorKind::Sandbox,
            Error::History(_)
            | Error::Sql { .. }
            | Error::NeedsNoTransaction { .. }
            | Error::AutocommitFailed { .. }
            | Error::VerifyFailed { .. }
            | Error::Transaction { .. }
            | Error::CursorStuck { .. }
            | Error::CursorOutOfOrder { .. }
            | Error::BackfillUnbounded { .. }
            | Error::BackfillGone { .. }
            | Error::BackfillLeaseLost { .. }
            | Error::UnexpectedOutcome { .. } => ErrorKind::MigrationFailed,
            Error::BackfillAtFloor { .. } => ErrorKind::Sandbox,
            Error::Interrupted { .. } => ErrorKind::Integrity,
            Error::NoBackfill { .. } | Error::BackfillNotApplied { .. } | Error::BackfillState { .. } => {
                ErrorKind::Project
            }
            Error::BackfillPaused { .. } | Error::BackfillUnfinished { .. } => ErrorKind::BackfillUnfinished,
            Error::StopRequested { .. } => ErrorKind::Stopped,
            Error::BackupFailed { .. } => ErrorKind::Backup,
        }
    }
}

/// A failed run: the error, and what had committed before it. Built once, where a run ends,
/// from the error and the run's report so far.
#[derive(Debug)]
pub struct RunError {
    pub error: Error,
    pub done: Report,
}

impl RunError {
    pub fn new(error: impl Into<Error>, done: Report) -> Self {
        RunError { error: error.into(), done }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.done.steps.is_empty() {
            write!(f, "\nnothing was committed by this run")
        } else {
            write!(f, "\ncommitted before the failure:")?;
            for step in &self.done.steps {
                write!(f, "\n  {step}")?;
            }
            Ok(())
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
