//! What the workers of one process share while they run one backfill: the run's settings and
//! component ([`WorkerRun`]), progress and a way to stop together ([`Crew`]), and each
//! worker's totals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use crate::project::backfill::BackfillPlan;
use crate::project::catalog::{ComponentMigration, Migration};
use crate::sandbox::LoadedComponent;

/// What every batch of one worker's run shares.
#[derive(Clone, Copy)]
pub(crate) struct WorkerRun<'a> {
    pub migration: &'a Migration,
    pub component: &'a ComponentMigration,
    pub loaded: &'a LoadedComponent,
    pub plan: &'a BackfillPlan,
    pub worker: &'a str,
    pub crew: &'a Crew,
}

/// What the workers of one process share: progress for events, and a way to stop together.
pub(crate) struct Crew {
    pub started: Instant,
    /// Every worker's rows as last read from the database, plus this process's since.
    pub rows_done: AtomicI64,
    /// The row estimate, or -1 when there is none.
    pub rows_estimate: AtomicI64,
    /// Rows this process committed in this run, for its rate.
    pub rows_this_run: AtomicI64,
    /// Set when a worker fails: the others stop after their current batch.
    pub stop: AtomicBool,
    /// Set when the run is asked to stop: every worker stops after its current batch.
    pub requested: Arc<AtomicBool>,
    /// Wakes workers waiting for a chunk when a chunk ends or a worker fails.
    pub chunk_ended: Notify,
}

impl Crew {
    pub fn new(requested: Arc<AtomicBool>) -> Self {
        Crew {
            started: Instant::now(),
            rows_done: AtomicI64::new(0),
            rows_estimate: AtomicI64::new(-1),
            rows_this_run: AtomicI64::new(0),
            stop: AtomicBool::new(false),
            requested,
            chunk_ended: Notify::new(),
        }
    }

    pub fn rows_estimate(&self) -> Option<i64> {
        Some(self.rows_estimate.load(Ordering::Relaxed)).filter(|&e| e >= 0)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.stop_requested()
    }

    /// Whether the run was asked to stop (rather than a sibling failing).
    pub fn stop_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Counts a committed batch; returns this process's rows per second in this run.
    pub fn count_batch(&self, rows: i64) -> f64 {
        self.rows_done.fetch_add(rows, Ordering::Relaxed);
        let total = self.rows_this_run.fetch_add(rows, Ordering::Relaxed) + rows;
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 { total as f64 / seconds } else { 0.0 }
    }
}

/// One worker's totals, for the run's report.
#[derive(Default)]
pub(crate) struct WorkerTotals {
    pub rows: i64,
    pub batches: i64,
}
