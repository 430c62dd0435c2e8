//! The backfill runner: one worker's loop over a backfill's chunks and their batches.
//!
//! A worker leases a chunk (a key range) from the target database, calls the component's
//! `backfill` for one batch at a time, and commits each batch in its own transaction together
//! with the chunk's new cursor ([`store`], invariant 4). Any number of workers, on any number of
//! machines, can share one backfill: each takes a different chunk, and a chunk whose worker
//! died is taken over when its lease expires. The batch that finishes the last chunk also runs
//! the migration's `verify`, so "done" and "verified" commit together.
//!
//! A batch that runs out of fuel or time is rolled back and retried at half the size, down to
//! the manifest's floor; batches grow back after a run of successes. Throttling ([`throttle`])
//! paces the worker, and a pause (`wasmig backfill pause`) stops it after its current batch.

pub(crate) mod chunks;
pub mod events;
pub mod settings;
pub mod store;
mod throttle;

use std::time::{Duration, Instant};

use crate::catalog::{Migration, Version};
use crate::db::Access;
use crate::error::Error;
use crate::limits::Limit;
use crate::migrator::Migrator;
use crate::report::{Action, Report, RunError, StepReport};
use crate::sandbox::{Call, LoadedComponent, Outcome, SandboxError};

use self::events::BackfillEvent;
use self::settings::BackfillPlan;
use self::store::{BackfillState, BackfillStore, LeasedChunk};
use self::throttle::Pacer;

/// How often a worker re-reads the backfill's state (to notice a pause) and its total progress.
const STATE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a worker waits before asking again for a chunk while others hold them all.
const LEASE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Successful batches in a row after which a halved batch size doubles again.
const GROW_BACK_AFTER: u32 = 8;

/// How one worker's run of a backfill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The backfill is done and verified.
    Finished,
    /// The backfill is paused; this worker stopped.
    Paused,
}

/// How one leased chunk ended for this worker.
enum ChunkEnd {
    Done,
    Paused,
    /// The lease expired and another worker took the chunk over; the last batch rolled back.
    LeaseLost,
}

/// What every batch of one worker's run shares.
#[derive(Clone, Copy)]
struct WorkerRun<'a> {
    migration: &'a Migration,
    loaded: &'a LoadedComponent,
    plan: &'a BackfillPlan,
    worker: &'a str,
}

/// This worker's running totals, for its report and progress events.
#[derive(Default)]
struct WorkerTotals {
    rows: i64,
    batches: i64,
    /// Every worker's rows as last read from the database, plus this worker's since.
    rows_done: i64,
    rows_estimate: Option<i64>,
}

impl Migrator {
    pub(crate) fn backfill_store(&self) -> BackfillStore<'_> {
        BackfillStore::new(self.db.as_ref(), &self.config.history)
    }

    fn backfill_plan(&self, migration: &Migration) -> Result<BackfillPlan, Error> {
        let settings = migration.backfill().ok_or_else(|| Error::NoBackfill { migration: migration.folder.clone() })?;
        Ok(BackfillPlan::new(&self.config.backfill, settings, &self.config.backfill_overrides))
    }

    /// Records the backfill as started with its chunks, unless a run (this one earlier, or
    /// another worker) already did. Splitting the table reads it once, outside any lock the
    /// schema step took.
    async fn start_backfill(&self, migration: &Migration, plan: &BackfillPlan) -> Result<(), Error> {
        if self.backfill_store().state(migration.version).await?.is_some() {
            return Ok(());
        }
        let chunking_error =
            |source| Error::Sql { migration: migration.folder.clone(), file: "backfill chunks", source };
        let (estimate, bounds) =
            chunks::plan(self.db.as_ref(), plan.chunking.as_ref()).await.map_err(chunking_error)?;
        let started = self
            .in_transaction(migration, Access::ReadWrite, async || {
                Ok(self.backfill_store().start(migration.version, estimate, &bounds).await?)
            })
            .await?;
        if started {
            tracing::info!(migration = %migration, chunks = bounds.len(), rows_estimate = ?estimate, "backfill started");
        }
        Ok(())
    }

    /// Runs (or joins) the backfill of applied migration `migration` as one worker until it is
    /// done or paused. While other workers hold every chunk left, it waits, and takes over any
    /// chunk whose lease expires.
    pub(crate) async fn run_backfill(
        &self,
        migration: &Migration,
        loaded: &LoadedComponent,
        report: &mut Report,
    ) -> Result<WorkerEnd, RunError> {
        let started = Instant::now();
        let done = |error: Error, report: &Report| RunError { error, done: report.clone() };
        let plan = self.backfill_plan(migration).map_err(|e| done(e, report))?;
        self.start_backfill(migration, &plan).await.map_err(|e| done(e, report))?;
        let worker = worker_id();
        let mut totals = WorkerTotals::default();
        let chunk_count = self.refresh_totals(migration.version, &mut totals).await.map_err(|e| done(e, report))?;
        self.observer.on_event(&BackfillEvent::Started {
            migration: migration.folder.clone(),
            worker: worker.clone(),
            chunks: chunk_count,
            rows_done: totals.rows_done,
            rows_estimate: totals.rows_estimate,
        });
        let mut pacer = Pacer::new(plan.throttle);
        let mut size = plan.batch_size;
        let end = loop {
            match self.backfill_store().state(migration.version).await.map_err(|e| done(e.into(), report))? {
                None => return Err(done(Error::BackfillGone { migration: migration.folder.clone() }, report)),
                Some(BackfillState::Done) => break WorkerEnd::Finished,
                Some(BackfillState::Paused) => break WorkerEnd::Paused,
                Some(BackfillState::Running) => {}
            }
            let leased = self.backfill_store().lease(migration.version, &worker, plan.lease).await;
            let Some(chunk) = leased.map_err(|e| done(e.into(), report))? else {
                self.observer.on_event(&BackfillEvent::Waiting {
                    migration: migration.folder.clone(),
                    reason: "every chunk left is leased by another worker".into(),
                });
                tokio::time::sleep(LEASE_POLL_INTERVAL.min(plan.lease)).await;
                continue;
            };
            let run = WorkerRun { migration, loaded, plan: &plan, worker: &worker };
            let ended = self.run_chunk(run, &chunk, &mut size, &mut pacer, &mut totals).await;
            match ended {
                Ok(ChunkEnd::Done | ChunkEnd::LeaseLost) => {}
                Ok(ChunkEnd::Paused) => {
                    self.release_quietly(migration.version, chunk.chunk, &worker).await;
                    break WorkerEnd::Paused;
                }
                Err(error) => {
                    self.release_quietly(migration.version, chunk.chunk, &worker).await;
                    return Err(done(error, report));
                }
            }
        };
        match end {
            WorkerEnd::Paused => {
                self.observer.on_event(&BackfillEvent::Paused { migration: migration.folder.clone() });
            }
            WorkerEnd::Finished => self.observer.on_event(&BackfillEvent::Finished {
                migration: migration.folder.clone(),
                rows: totals.rows,
                batches: totals.batches,
                seconds: started.elapsed().as_secs_f64(),
            }),
        }
        report.steps.push(StepReport {
            version: migration.version,
            folder: migration.folder.clone(),
            action: match end {
                WorkerEnd::Finished => Action::Backfilled,
                WorkerEnd::Paused => Action::BackfillPaused,
            },
            duration: started.elapsed(),
            backfill: Some((totals.rows, totals.batches)),
        });
        Ok(end)
    }

    /// Runs batches of one leased chunk until it is done, the backfill is paused, or the lease
    /// is lost. `size` carries the (possibly halved) batch size from chunk to chunk.
    async fn run_chunk(
        &self,
        run: WorkerRun<'_>,
        chunk: &LeasedChunk,
        size: &mut u32,
        pacer: &mut Pacer,
        totals: &mut WorkerTotals,
    ) -> Result<ChunkEnd, Error> {
        let WorkerRun { migration, plan, .. } = run;
        let mut cursor = chunk.cursor.clone();
        let mut state_checked = Instant::now();
        let mut streak = 0;
        let mut batch_in_chunk = 0u64;
        // Fuel burnt by attempts at the current cursor that ran out of fuel or time.
        let mut fuel_spent = 0u64;
        loop {
            if state_checked.elapsed() >= STATE_POLL_INTERVAL {
                state_checked = Instant::now();
                match self.backfill_store().state(migration.version).await? {
                    None => return Err(Error::BackfillGone { migration: migration.folder.clone() }),
                    Some(BackfillState::Paused) => return Ok(ChunkEnd::Paused),
                    Some(_) => {
                        self.refresh_totals(migration.version, totals).await?;
                    }
                }
            }
            pacer
                .before_batch(self.db.as_ref(), |lag| {
                    self.observer.on_event(&BackfillEvent::Waiting {
                        migration: migration.folder.clone(),
                        reason: format!(
                            "replication lag {lag:?} is over the {:?} bound",
                            plan.throttle.max_replication_lag
                        ),
                    })
                })
                .await
                .map_err(|source| Error::Sql {
                    migration: migration.folder.clone(),
                    file: "replication lag",
                    source,
                })?;
            batch_in_chunk += 1;
            let attempt = self
                .in_transaction(migration, Access::ReadWrite, async || {
                    self.run_batch(run, chunk, cursor.as_deref(), *size).await
                })
                .await;
            let (next, rows) = match attempt {
                Ok(batch) => batch,
                Err(Error::BackfillLeaseLost { .. }) => {
                    tracing::warn!(migration = %migration, chunk = chunk.chunk, "lease lost to another worker");
                    return Ok(ChunkEnd::LeaseLost);
                }
                Err(error) => {
                    let Some(limit) = batch_limit(&error) else { return Err(error) };
                    if let Limit::Fuel(fuel) = limit {
                        fuel_spent = fuel_spent.saturating_add(fuel);
                    }
                    if *size <= plan.min_batch_size {
                        return Err(Error::BackfillAtFloor {
                            migration: migration.folder.clone(),
                            limit,
                            chunk: chunk.chunk,
                            batch: batch_in_chunk,
                            cursor: cursor.clone(),
                            size: *size,
                            fuel_spent,
                        });
                    }
                    let halved = (*size / 2).max(plan.min_batch_size);
                    self.observer.on_event(&BackfillEvent::Halved {
                        migration: migration.folder.clone(),
                        chunk: chunk.chunk,
                        cursor: cursor.clone(),
                        from: *size,
                        to: halved,
                        limit: limit.to_string(),
                    });
                    *size = halved;
                    streak = 0;
                    batch_in_chunk -= 1;
                    continue;
                }
            };
            fuel_spent = 0;
            let rows = i64::try_from(rows).unwrap_or(i64::MAX);
            totals.rows += rows;
            totals.batches += 1;
            totals.rows_done += rows;
            let rate = pacer.rate_with(rows as u64);
            self.observer.on_event(&BackfillEvent::Batch {
                migration: migration.folder.clone(),
                chunk: chunk.chunk,
                rows: rows as u64,
                batch_size: *size,
                rows_done: totals.rows_done,
                rows_estimate: totals.rows_estimate,
                rows_per_second: rate,
                eta_secs: store::eta(BackfillState::Running, totals.rows_estimate, totals.rows_done, Some(rate))
                    .map(|eta| eta.as_secs_f64()),
            });
            streak += 1;
            if streak >= GROW_BACK_AFTER && *size < plan.batch_size {
                *size = size.saturating_mul(2).min(plan.batch_size);
                streak = 0;
            }
            let Some(next) = next else { return Ok(ChunkEnd::Done) };
            cursor = Some(next);
            pacer.after_batch().await;
        }
    }

    /// One batch inside the caller's transaction: the component's writes, the chunk's new
    /// cursor (only if this worker still holds it at the cursor it started from) and, when
    /// this was the last chunk's last batch, the verify and the backfill marked done.
    async fn run_batch(
        &self,
        run: WorkerRun<'_>,
        chunk: &LeasedChunk,
        cursor: Option<&str>,
        size: u32,
    ) -> Result<(Option<String>, u64), Error> {
        let WorkerRun { migration, loaded, plan, worker } = run;
        let call = Call::Backfill { cursor: cursor.map(str::to_owned), until: chunk.until.clone(), batch_size: size };
        let call_name = call.to_string();
        let (next, rows) = match self.call(migration, loaded, call).await? {
            Outcome::Batch { next_cursor, rows } => (next_cursor, rows),
            Outcome::Done => {
                return Err(Error::UnexpectedOutcome {
                    migration: migration.folder.clone(),
                    call: call_name,
                    expected: "a batch",
                    found: "nothing".into(),
                });
            }
        };
        if let Some(next) = &next
            && cursor == Some(next.as_str())
        {
            return Err(Error::CursorStuck { migration: migration.folder.clone(), cursor: next.clone() });
        }
        let store = self.backfill_store();
        let rows_i64 = i64::try_from(rows).unwrap_or(i64::MAX);
        let advanced = store
            .advance(migration.version, chunk.chunk, worker, cursor, next.as_deref(), rows_i64, plan.lease)
            .await?;
        if !advanced {
            return Err(Error::BackfillLeaseLost { migration: migration.folder.clone(), chunk: chunk.chunk });
        }
        if next.is_none() && store.chunks_left(migration.version).await? == 0 {
            self.call(migration, loaded, Call::Verify).await?;
            store.finish(migration.version).await?;
        }
        Ok((next, rows))
    }

    /// Re-reads every worker's rows done and the estimate; returns the number of chunks.
    async fn refresh_totals(&self, version: Version, totals: &mut WorkerTotals) -> Result<i64, Error> {
        let statuses = self.backfill_store().statuses().await?;
        let Some(status) = statuses.into_iter().find(|s| s.version == version) else { return Ok(0) };
        totals.rows_done = status.rows_done;
        totals.rows_estimate = status.rows_estimate;
        Ok(status.chunks)
    }

    /// Gives a chunk back after a pause or an error, so that another worker need not wait for
    /// the lease to expire; failing to is harmless (the lease expires anyway).
    async fn release_quietly(&self, version: Version, chunk: i64, worker: &str) {
        if let Err(error) = self.backfill_store().release(version, chunk, worker).await {
            tracing::warn!(%error, chunk, "could not release the chunk's lease; it expires on its own");
        }
    }
}

/// The limit a failed batch hit, when halving the batch may help: fuel or the deadline.
fn batch_limit(error: &Error) -> Option<Limit> {
    match error {
        Error::Sandbox(SandboxError::Trap { limit: Some(limit @ (Limit::Fuel(_) | Limit::Deadline(_))), .. }) => {
            Some(*limit)
        }
        _ => None,
    }
}

/// A name for this worker, unique across machines and runs: host, process and a random tag.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let tag = blake3::hash(format!("{nanos}:{}", std::process::id()).as_bytes()).to_hex();
    format!("{host}:{}:{}", std::process::id(), &tag[..8])
}
