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
//!
//! One process may run several workers (`workers`), each on its own connection: while one
//! waits for the database, another's component runs, so the server's work and the host's
//! overlap. They lease chunks like workers on other machines do; an error in one stops the
//! others after their current batch.

pub(crate) mod chunks;
pub mod events;
mod identity;
pub mod settings;
pub mod store;
mod throttle;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};
use tokio::sync::Notify;

use crate::catalog::{Migration, Version};
use crate::db::{Access, Backend, Value};
use crate::error::Error;
use crate::limits::Limit;
use crate::migrator::Migrator;
use crate::report::{Action, Report, RunError, StepReport};
use crate::sandbox::{Call, LoadedComponent, Outcome, SandboxError};

use self::events::BackfillEvent;
use self::identity::ThisProcess;
use self::settings::BackfillPlan;
use self::store::{BackfillState, BackfillStore, BatchEnd, CursorStep, EndBatchError, LeasedChunk};
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

/// How one worker of this process stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkEnd {
    Finished,
    Paused,
    /// A sibling worker in this process failed; this one stopped after its last batch.
    Stopped,
}

/// How one leased chunk ended for this worker.
enum ChunkEnd {
    Done,
    Paused,
    /// The lease expired and another worker took the chunk over; the last batch rolled back.
    LeaseLost,
    Stopped,
}

/// What every batch of one worker's run shares.
#[derive(Clone, Copy)]
struct WorkerRun<'a> {
    migration: &'a Migration,
    loaded: &'a LoadedComponent,
    plan: &'a BackfillPlan,
    worker: &'a str,
    crew: &'a Crew,
}

/// What the workers of one process share: progress for events, and a way to stop together.
struct Crew {
    started: Instant,
    /// Every worker's rows as last read from the database, plus this process's since.
    rows_done: AtomicI64,
    /// The row estimate, or -1 when there is none.
    rows_estimate: AtomicI64,
    /// Rows this process committed in this run, for its rate.
    rows_this_run: AtomicI64,
    /// Set when a worker fails: the others stop after their current batch.
    stop: AtomicBool,
    /// Wakes workers waiting for a chunk when a chunk ends or a worker fails.
    chunk_ended: Notify,
}

impl Crew {
    fn new() -> Self {
        Crew {
            started: Instant::now(),
            rows_done: AtomicI64::new(0),
            rows_estimate: AtomicI64::new(-1),
            rows_this_run: AtomicI64::new(0),
            stop: AtomicBool::new(false),
            chunk_ended: Notify::new(),
        }
    }

    fn rows_estimate(&self) -> Option<i64> {
        Some(self.rows_estimate.load(Ordering::Relaxed)).filter(|&e| e >= 0)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts a committed batch; returns this process's rows per second in this run.
    fn count_batch(&self, rows: i64) -> f64 {
        self.rows_done.fetch_add(rows, Ordering::Relaxed);
        let total = self.rows_this_run.fetch_add(rows, Ordering::Relaxed) + rows;
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 { total as f64 / seconds } else { 0.0 }
    }
}

/// One worker's totals, for the run's report.
#[derive(Default)]
struct WorkerTotals {
    rows: i64,
    batches: i64,
}

impl Migrator {
    pub(crate) fn backfill_store(&self) -> BackfillStore<'_> {
        BackfillStore::new(self.db.as_ref(), self.history_table())
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

    /// Runs (or joins) the backfill of applied migration `migration` with this process's
    /// workers until it is done or paused. While other workers hold every chunk left, a worker
    /// waits, and takes over any chunk whose lease expires.
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
        let here = ThisProcess::read();
        self.reclaim_from_dead_workers(migration.version, &here).await;
        let crew = Crew::new();
        let status = self.refresh_progress(migration.version, &crew).await.map_err(|e| done(e, report))?;
        let chunks_left = status.as_ref().map_or(0, |s| s.chunks - s.chunks_done);
        let workers = self.worker_count(&plan, chunks_left);
        let ids: Vec<String> = (0..workers).map(|index| here.worker_id(index)).collect();
        self.observer.on_event(&BackfillEvent::Started {
            migration: migration.folder.clone(),
            worker: ids.join(","),
            chunks: status.as_ref().map_or(0, |s| s.chunks),
            rows_done: crew.rows_done.load(Ordering::Relaxed),
            rows_estimate: crew.rows_estimate(),
        });
        let run = |worker| WorkerRun { migration, loaded, plan: &plan, worker, crew: &crew };
        let ended = if ids.len() == 1 { self.work(run(&ids[0])).await } else { self.work_together(&ids, run).await };
        let (end, totals) = ended.map_err(|e| done(e, report))?;
        let end = match end {
            WorkEnd::Finished => WorkerEnd::Finished,
            WorkEnd::Paused | WorkEnd::Stopped => WorkerEnd::Paused,
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

    /// How many workers this process runs: as asked, but no more than the chunks left, and one
    /// on SQLite, where one writer at a time holds the database.
    fn worker_count(&self, plan: &BackfillPlan, chunks_left: i64) -> u32 {
        if plan.workers > 1 && self.db.backend() != Backend::Postgres {
            tracing::info!("SQLite allows one writer at a time: running one backfill worker");
            return 1;
        }
        plan.workers.min(u32::try_from(chunks_left.max(1)).unwrap_or(u32::MAX))
    }

    /// Runs one worker per id, each on a connection of its own, and sums their totals. The
    /// first error wins; it stops the others after their current batch.
    async fn work_together<'a>(
        &self,
        ids: &'a [String],
        run: impl Fn(&'a str) -> WorkerRun<'a>,
    ) -> Result<(WorkEnd, WorkerTotals), Error> {
        let siblings = try_join_all(ids.iter().map(|_| self.sibling())).await?;
        let results = join_all(siblings.iter().zip(ids).map(|(sibling, id)| {
            let run = run(id);
            async move {
                let result = sibling.work(run).await;
                if result.is_err() {
                    run.crew.stop.store(true, Ordering::Relaxed);
                    run.crew.chunk_ended.notify_waiters();
                }
                result
            }
        }))
        .await;
        let mut totals = WorkerTotals::default();
        let mut end = WorkEnd::Stopped;
        for result in results {
            let (worker_end, worker_totals) = result?;
            totals.rows += worker_totals.rows;
            totals.batches += worker_totals.batches;
            end = match (end, worker_end) {
                (WorkEnd::Finished, _) | (_, WorkEnd::Finished) => WorkEnd::Finished,
                (WorkEnd::Paused, _) | (_, WorkEnd::Paused) => WorkEnd::Paused,
                _ => WorkEnd::Stopped,
            };
        }
        Ok((end, totals))
    }

    /// One worker's loop: lease a chunk, run its batches, repeat until the backfill is done,
    /// paused, or a sibling failed.
    async fn work(&self, run: WorkerRun<'_>) -> Result<(WorkEnd, WorkerTotals), Error> {
        let WorkerRun { migration, plan, worker, crew, .. } = run;
        let mut totals = WorkerTotals::default();
        let mut pacer = Pacer::new(plan.throttle);
        let mut size = plan.batch_size;
        // The wait for a chunk is announced once, not at every poll.
        let mut announced_wait = false;
        let end = loop {
            if crew.stopped() {
                break WorkEnd::Stopped;
            }
            match self.backfill_store().state(migration.version).await? {
                None => return Err(Error::BackfillGone { migration: migration.folder.clone() }),
                Some(BackfillState::Done) => break WorkEnd::Finished,
                Some(BackfillState::Paused) => break WorkEnd::Paused,
                Some(BackfillState::Running) => {}
            }
            let Some(chunk) = self.backfill_store().lease(migration.version, worker, plan.lease).await? else {
                if !announced_wait {
                    announced_wait = true;
                    self.observer.on_event(&BackfillEvent::Waiting {
                        migration: migration.folder.clone(),
                        reason: "every chunk left is leased by another worker".into(),
                    });
                }
                // A sibling in this process ending its chunk (or the backfill) wakes us early.
                tokio::select! {
                    () = tokio::time::sleep(LEASE_POLL_INTERVAL.min(plan.lease)) => {}
                    () = crew.chunk_ended.notified() => {}
                }
                continue;
            };
            announced_wait = false;
            let ended = self.run_chunk(run, &chunk, &mut size, &mut pacer, &mut totals).await;
            crew.chunk_ended.notify_waiters();
            let stopped_early = match ended {
                Ok(ChunkEnd::Done | ChunkEnd::LeaseLost) => continue,
                Ok(ChunkEnd::Paused) => Ok(WorkEnd::Paused),
                Ok(ChunkEnd::Stopped) => Ok(WorkEnd::Stopped),
                Err(error) => Err(error),
            };
            // The chunk is unfinished: give it back so that nobody waits out the lease.
            self.release_quietly(migration.version, chunk.chunk, worker).await;
            break stopped_early?;
        };
        Ok((end, totals))
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
        let WorkerRun { migration, plan, crew, .. } = run;
        let mut cursor = chunk.cursor.clone();
        let mut state_checked = Instant::now();
        let mut streak = 0;
        let mut batch_in_chunk = 0u64;
        // Fuel burnt by attempts at the current cursor that ran out of fuel or time.
        let mut fuel_spent = 0u64;
        loop {
            if crew.stopped() {
                return Ok(ChunkEnd::Stopped);
            }
            if state_checked.elapsed() >= STATE_POLL_INTERVAL {
                state_checked = Instant::now();
                match self.backfill_store().state(migration.version).await? {
                    None => return Err(Error::BackfillGone { migration: migration.folder.clone() }),
                    Some(BackfillState::Paused) => return Ok(ChunkEnd::Paused),
                    Some(_) => {
                        self.refresh_progress(migration.version, crew).await?;
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
                .in_transaction_work_ends(migration, Access::ReadWrite, async || {
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
            pacer.count(rows as u64);
            let rate = crew.count_batch(rows);
            let (rows_done, rows_estimate) = (crew.rows_done.load(Ordering::Relaxed), crew.rows_estimate());
            self.observer.on_event(&BackfillEvent::Batch {
                migration: migration.folder.clone(),
                chunk: chunk.chunk,
                rows: rows as u64,
                batch_size: *size,
                rows_done,
                rows_estimate,
                rows_per_second: rate,
                eta_secs: store::eta(BackfillState::Running, rows_estimate, rows_done, Some(rate))
                    .map(|eta| eta.as_secs_f64()),
            });
            streak += 1;
            if streak >= GROW_BACK_AFTER && *size < plan.batch_size {
                *size = size.saturating_mul(2).min(plan.batch_size);
                streak = 0;
            }
            let Some(next) = next else { return Ok(ChunkEnd::Done) };
            let batches = u64::try_from(totals.batches).unwrap_or(0);
            if plan.chunking.is_none() && batches >= plan.max_batches {
                return Err(Error::BackfillUnbounded { migration: migration.folder.clone(), batches });
            }
            cursor = Some(next);
            pacer.after_batch().await;
        }
    }

    /// With a declared key, each cursor must be past the one before it (or the chunk's start)
    /// and not past the chunk's end: a cursor that goes back, alternates or runs past `until`
    /// would revisit rows or never end.
    async fn check_cursor_order(
        &self,
        migration: &Migration,
        key: &str,
        cursor: Option<&str>,
        next: &str,
        until: Option<&str>,
    ) -> Result<(), Error> {
        let out_of_order = |problem: String| Error::CursorOutOfOrder {
            migration: migration.folder.clone(),
            key: key.to_owned(),
            cursor: cursor.unwrap_or("the start").to_owned(),
            next: next.to_owned(),
            problem,
        };
        if let Some(cursor) = cursor
            && self.key_order(migration, next, cursor).await? != std::cmp::Ordering::Greater
        {
            return Err(out_of_order("does not come after it".into()));
        }
        if let Some(until) = until
            && self.key_order(migration, next, until).await? == std::cmp::Ordering::Greater
        {
            return Err(out_of_order(format!("runs past its chunk's end {until:?}")));
        }
        Ok(())
    }

    /// How two key values (as text) order: as integers when both are, else as the database
    /// orders text (the chunk bounds are the key cast to text).
    async fn key_order(&self, migration: &Migration, a: &str, b: &str) -> Result<std::cmp::Ordering, Error> {
        if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
            return Ok(a.cmp(&b));
        }
        let sql_error = |source| Error::Sql { migration: migration.folder.clone(), file: "cursor order", source };
        let rows = self
            .db
            .query(
                "SELECT CASE WHEN CAST($1 AS TEXT) < CAST($2 AS TEXT) THEN -1 \
                 WHEN CAST($1 AS TEXT) = CAST($2 AS TEXT) THEN 0 ELSE 1 END",
                &[Value::Text(a.to_owned()), Value::Text(b.to_owned())],
            )
            .await
            .map_err(sql_error)?;
        Ok(match rows.values.first().and_then(|row| row.first()) {
            Some(Value::Int(n)) => n.cmp(&0),
            _ => std::cmp::Ordering::Equal,
        })
    }

    /// One batch, inside the transaction the caller opened, which it ends by committing: the
    /// component's writes, the chunk's new cursor (only if this worker still holds it at the
    /// cursor it started from) and, when this was the last chunk's last batch, the verify and
    /// the backfill marked done.
    async fn run_batch(
        &self,
        run: WorkerRun<'_>,
        chunk: &LeasedChunk,
        cursor: Option<&str>,
        size: u32,
    ) -> Result<(Option<String>, u64), Error> {
        let WorkerRun { migration, loaded, plan, worker, .. } = run;
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
        if let (Some(next), Some(chunking)) = (&next, &plan.chunking) {
            self.check_cursor_order(migration, chunking.key.as_str(), cursor, next, chunk.until.as_deref()).await?;
        }
        let store = self.backfill_store();
        let step = CursorStep {
            version: migration.version,
            chunk: chunk.chunk,
            worker,
            from: cursor,
            to: next.as_deref(),
            rows: i64::try_from(rows).unwrap_or(i64::MAX),
            lease: plan.lease,
        };
        let lease_lost = || Error::BackfillLeaseLost { migration: migration.folder.clone(), chunk: chunk.chunk };
        let commit_failed =
            |source| Error::Transaction { migration: migration.folder.clone(), action: "commit", source };
        if next.is_some() {
            // The common case: the cursor's advance and COMMIT go out together.
            return match store.advance_and_commit(&step).await {
                Ok(BatchEnd::Committed) => Ok((next, rows)),
                Ok(BatchEnd::LeaseLost) => Err(lease_lost()),
                Err(EndBatchError::Advance(error)) => Err(error.into()),
                Err(EndBatchError::Commit(source)) => Err(commit_failed(source)),
            };
        }
        // The chunk's last batch: whether the backfill is done can only be asked after it.
        if !store.advance(&step).await? {
            return Err(lease_lost());
        }
        if store.chunks_left(migration.version).await? == 0 {
            self.call(migration, loaded, Call::Verify).await?;
            store.finish(migration.version).await?;
        }
        self.db.commit().await.map_err(commit_failed)?;
        Ok((next, rows))
    }

    /// Re-reads every worker's rows done and the estimate into `crew`; returns the status.
    async fn refresh_progress(&self, version: Version, crew: &Crew) -> Result<Option<store::BackfillStatus>, Error> {
        let Some(status) = self.backfill_store().status(version).await? else { return Ok(None) };
        crew.rows_done.store(status.rows_done, Ordering::Relaxed);
        crew.rows_estimate.store(status.rows_estimate.unwrap_or(-1), Ordering::Relaxed);
        Ok(Some(status))
    }

    /// Frees the chunks still leased by workers of this machine whose process is gone (a run
    /// killed here), so a restart need not wait out their leases. Their batches in flight
    /// died with them: a lease only guards the cursor a batch commits with. Failing to is
    /// harmless (the leases expire anyway).
    async fn reclaim_from_dead_workers(&self, version: Version, here: &ThisProcess) {
        let store = self.backfill_store();
        let holders = match store.lease_holders(version).await {
            Ok(holders) => holders,
            Err(error) => return tracing::warn!(%error, "could not read the chunks' lease holders"),
        };
        for holder in holders.iter().filter(|holder| here.outlived(holder)) {
            match store.release_all(version, holder).await {
                Ok(chunks) => {
                    tracing::info!(worker = %holder, chunks, "took over the chunks of a worker that died here")
                }
                Err(error) => tracing::warn!(%error, worker = %holder, "could not free a dead worker's chunks"),
            }
        }
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
