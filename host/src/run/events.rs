//! What a run reports as it goes, to an [`Observer`]: each step as it commits or fails, and
//! each backfill's progress ([`BackfillEvent`]). The CLI turns them into a progress bar, log
//! lines or JSON lines (docs/json.md); library users plug in their own.

use serde::Serialize;

use crate::core::Version;
use crate::error::Error;
use crate::report::StepReport;

/// One thing a backfill worker did or is waiting for. Serialised as one JSON object with an
/// `event` field naming the variant (`backfill_started`, …); durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event")]
pub enum BackfillEvent {
    /// A worker joined the backfill.
    #[serde(rename = "backfill_started")]
    Started { migration: String, worker: String, chunks: i64, rows_done: i64, rows_estimate: Option<i64> },
    /// A batch committed. `rows_done` counts every worker's rows as last read, plus this
    /// worker's since; the rate is this worker's.
    #[serde(rename = "backfill_batch")]
    Batch {
        migration: String,
        chunk: i64,
        rows: u64,
        batch_size: u32,
        rows_done: i64,
        rows_estimate: Option<i64>,
        rows_per_second: f64,
        eta_ms: Option<u64>,
    },
    /// A batch hit its fuel or time limit; it was rolled back and is retried smaller.
    #[serde(rename = "backfill_halved")]
    Halved { migration: String, chunk: i64, cursor: Option<String>, from: u32, to: u32, limit: String },
    /// The worker is waiting: for replication to catch up, or for chunks other workers hold.
    #[serde(rename = "backfill_waiting")]
    Waiting { migration: String, reason: String },
    /// The backfill is paused; this worker stopped after its last committed batch.
    #[serde(rename = "backfill_paused")]
    Paused { migration: String },
    /// This process stopped working on the backfill after its last committed batch, because
    /// it was asked to stop (Ctrl-C, SIGTERM); the backfill stays running for a later run.
    #[serde(rename = "backfill_stopped")]
    Stopped { migration: String },
    /// The backfill is complete and verified (or, for this worker, nothing is left to lease).
    #[serde(rename = "backfill_finished")]
    Finished { migration: String, rows: i64, batches: i64, duration_ms: u64 },
    /// The backfill stopped on an error; the batch it was in was rolled back, every batch
    /// before it stays committed.
    #[serde(rename = "backfill_failed")]
    Failed { migration: String, error: Failure },
}

/// An error as an event shows it: its class and its message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// [`crate::ErrorKind::name`]: `migration_failed`, `sandbox`, …
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn of(error: &Error) -> Self {
        Failure { kind: error.kind().name(), message: error.to_string() }
    }
}

/// A step that failed and was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepFailure {
    /// `up`, `down` or `verify`.
    pub step: &'static str,
    pub version: Version,
    pub migration: String,
    pub error: Failure,
}

/// A backup taken before a step (`[backup]`), and where it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backup {
    pub version: Version,
    pub migration: String,
    /// The step it came before: `up` or `down`.
    pub step: &'static str,
    /// The backup file.
    pub file: String,
    /// Why this step was backed up: the statement that drops or rewrites data and its line,
    /// the component's grants, or `before = "always"`.
    pub reason: String,
    pub duration_ms: u64,
}

/// Receives a run's events. Every method has a default that ignores the event.
pub trait Observer: Send + Sync {
    /// A step committed (or, for `verify`, passed).
    fn on_step(&self, _step: &StepReport) {}
    /// A step failed and was rolled back.
    fn on_step_failed(&self, _failure: &StepFailure) {}
    fn on_backfill(&self, _event: &BackfillEvent) {}
    /// A backup was taken before a step.
    fn on_backup(&self, _backup: &Backup) {}
}

/// The default observer: tracing at info level (batches at debug).
pub struct LogObserver;

impl Observer for LogObserver {
    fn on_step(&self, step: &StepReport) {
        tracing::info!("{step}");
    }

    fn on_step_failed(&self, failure: &StepFailure) {
        tracing::debug!(migration = failure.migration, step = failure.step, "step failed and was rolled back");
    }

    fn on_backup(&self, backup: &Backup) {
        tracing::info!(migration = backup.migration, file = backup.file, "backed up before {} ({})", backup.step, backup.reason);
    }

    fn on_backfill(&self, event: &BackfillEvent) {
        match event {
            BackfillEvent::Batch { migration, rows_done, rows_per_second, .. } => {
                tracing::debug!(migration, rows_done, rows_per_second, "backfill batch committed")
            }
            other => match serde_json::to_string(other) {
                Ok(line) => tracing::info!("backfill: {line}"),
                Err(_) => tracing::info!("backfill event"),
            },
        }
    }
}
