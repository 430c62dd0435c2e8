//! What a running backfill reports as it goes: [`BackfillEvent`]s handed to a
//! [`BackfillObserver`]. The CLI turns them into a progress bar, log lines or JSON; library
//! users plug in their own.

use serde::Serialize;

/// One thing a backfill worker did or is waiting for. Serialised as one JSON object with an
/// `event` field naming the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BackfillEvent {
    /// A worker joined the backfill.
    Started { migration: String, worker: String, chunks: i64, rows_done: i64, rows_estimate: Option<i64> },
    /// A batch committed. `rows_done` counts every worker's rows as last read, plus this
    /// worker's since; the rate is this worker's.
    Batch {
        migration: String,
        chunk: i64,
        rows: u64,
        batch_size: u32,
        rows_done: i64,
        rows_estimate: Option<i64>,
        rows_per_second: f64,
        eta_secs: Option<f64>,
    },
    /// A batch hit its fuel or time limit; it was rolled back and is retried smaller.
    Halved { migration: String, chunk: i64, cursor: Option<String>, from: u32, to: u32, limit: String },
    /// The worker is waiting: for replication to catch up, or for chunks other workers hold.
    Waiting { migration: String, reason: String },
    /// The backfill is paused; this worker stopped after its last committed batch.
    Paused { migration: String },
    /// The backfill is complete and verified (or, for this worker, nothing is left to lease).
    Finished { migration: String, rows: i64, batches: i64, seconds: f64 },
}

/// Receives a backfill's events.
pub trait BackfillObserver: Send + Sync {
    fn on_event(&self, event: &BackfillEvent);
}

/// The default observer: tracing at info level (batches at debug).
pub struct LogObserver;

impl BackfillObserver for LogObserver {
    fn on_event(&self, event: &BackfillEvent) {
        match event {
            BackfillEvent::Batch { migration, rows_done, rows_per_second, .. } => {
                tracing::debug!(migration, rows_done, rows_per_second, "backfill batch committed")
            }
            other => tracing::info!(event = ?other, "backfill"),
        }
    }
}
