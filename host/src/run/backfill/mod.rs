//! The backfill runner: this process's workers on one backfill, each looping over chunks.
//!
//! A worker leases a chunk (a key range) from the target database and runs its batches
//! ([`chunk`]), each committed in its own transaction together with the chunk's new cursor
//! (invariant 4). Any number of workers, on any number of machines, can share one backfill:
//! each takes a different chunk, and a chunk whose worker died is taken over when its lease
//! expires. The batch that finishes the last chunk also runs the migration's `verify`, so
//! "done" and "verified" commit together.
//!
//! One process may run several workers (`workers`), each on a session of its own: while one
//! waits for the database, another's component runs, so the server's work and the host's
//! overlap. They lease chunks like workers on other machines do; an error in one stops the
//! others after their current batch. Throttling ([`throttle`]) paces each worker, and a pause
//! (`wasmig backfill pause`) stops it after its current batch.

mod chunk;
mod chunks;
mod crew;
mod identity;
mod sizing;
mod throttle;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};

use crate::core::Version;
use crate::db::Access;
use crate::error::{Error, ErrorKind};
use crate::ledger::{BackfillState, BackfillStatus};
use crate::project::backfill::BackfillPlan;
use crate::project::catalog::{Body, Catalog, ComponentMigration, Migration};
use crate::ledger::NewAuditEntry;
use crate::report::{Action, Report, StepReport};
use crate::sandbox::LoadedComponent;

use self::chunk::{ChunkEnd, refresh_progress, run_chunk};
use self::crew::{Crew, WorkerRun, WorkerTotals};
use super::events::{BackfillEvent, Failure};
use self::identity::ThisProcess;
use self::sizing::BatchSize;
use self::throttle::Pacer;
use super::session::Session;

/// How long a worker waits before asking again for a chunk while others hold them all.
const LEASE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How this process's run of a backfill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerEnd {
    /// The backfill is done and verified.
    Finished,
    /// The backfill is paused; this process's workers stopped.
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

/// Finishes (as this process's workers) the backfill of every migration in `applied` (in
/// version order) that is not done,
/// oldest first; a paused one is left paused.
pub(crate) async fn resume_unfinished(
    session: &Session<'_>,
    catalog: &Catalog,
    applied: &[Version],
    report: &mut Report,
) -> Result<(), Error> {
    let with_backfills: Vec<(&Migration, &ComponentMigration)> = applied
        .iter()
        .filter_map(|&version| catalog.get(version))
        .filter_map(|migration| match &migration.body {
            Body::Component(component) if component.manifest.backfill.is_some() => Some((migration, &**component)),
            _ => None,
        })
        .collect();
    // A project of plain SQL migrations has no backfill to read the state of.
    if with_backfills.is_empty() {
        return Ok(());
    }
    let statuses = session.backfills().statuses().await?;
    for (migration, component) in with_backfills {
        let version = migration.version;
        match statuses.iter().find(|s| s.version == version).map(|s| s.state) {
            Some(BackfillState::Done) => {}
            Some(BackfillState::Paused) => {
                tracing::warn!(migration = %migration, "backfill is paused; `wasmig backfill resume` lets it go on");
            }
            Some(state @ (BackfillState::Failed | BackfillState::Cancelled)) => {
                tracing::warn!(migration = %migration, "backfill is {state}; `wasmig backfill retry` lets it go on");
            }
            state @ (Some(BackfillState::Running) | None) => {
                if state.is_some() {
                    tracing::info!(migration = %migration, "resuming an unfinished backfill");
                }
                let loaded = session.load_component(migration, component)?;
                run(session, migration, component, &loaded, report).await?;
            }
        }
    }
    Ok(())
}

/// Whether `error` is the backfill's own (its statements, its component, its cursor, its
/// limits), which running it again as it is would repeat, rather than the infrastructure's.
fn its_own_failure(error: &Error) -> bool {
    let own_kind = matches!(error.kind(), ErrorKind::MigrationFailed | ErrorKind::Sandbox);
    let infrastructure = matches!(
        error,
        Error::BackfillLeaseLost { .. } | Error::BackfillGone { .. } | Error::Transaction { .. } | Error::History(_)
    );
    own_kind && !infrastructure
}

/// Runs (or joins) the backfill of applied migration `migration` with this process's
/// workers until it is done or paused. While other workers hold every chunk left, a worker
/// waits, and takes over any chunk whose lease expires.
pub(crate) async fn run(
    session: &Session<'_>,
    migration: &Migration,
    component: &ComponentMigration,
    loaded: &LoadedComponent,
    report: &mut Report,
) -> Result<WorkerEnd, Error> {
    let started = Instant::now();
    let observer = &session.shared.observer;
    let plan = backfill_plan(session, migration)?;
    start(session, migration, &plan).await?;
    let here = ThisProcess::read();
    reclaim_from_dead_workers(session, migration.version, &here).await;
    let crew = Crew::new(session.shared.stop.clone());
    let status = refresh_progress(session, migration, &crew).await?;
    let chunks_left = status.as_ref().map_or(0, |s| s.chunks - s.chunks_done);
    let workers = worker_count(session, &plan, chunks_left);
    let ids: Vec<String> = (0..workers).map(|index| here.worker_id(index)).collect();
    observer.on_backfill(&BackfillEvent::Started {
        migration: migration.folder.clone(),
        worker: ids.join(","),
        chunks: status.as_ref().map_or(0, |s| s.chunks),
        rows_done: crew.rows_done.load(Ordering::Relaxed),
        rows_estimate: crew.rows_estimate(),
    });
    let run = |worker| WorkerRun { migration, component, loaded, plan: &plan, worker, crew: &crew };
    let worked =
        if ids.len() == 1 { work(session, run(&ids[0])).await } else { work_together(session, &ids, run).await };
    let audited = async |action, ok, detail: String| {
        let entry = session.audit_entry(migration, action, &detail, started.elapsed());
        session.audit_apart(migration, &NewAuditEntry { ok, ..entry }).await
    };
    let (end, totals) = match worked {
        Ok(done) => done,
        Err(error) => {
            // A failure of the migration's own making is recorded, so that `up` does not run
            // it again blindly and `status` says why; a lost lease or connection is not its own.
            if its_own_failure(&error) {
                let store = session.backfills();
                let marked = store.transition(migration.version, BackfillState::Running, BackfillState::Failed).await;
                if let Err(marking) = marked {
                    tracing::warn!(migration = %migration, error = %marking, "could not record the backfill as failed");
                }
            }
            observer.on_backfill(&BackfillEvent::Failed { migration: migration.folder.clone(), error: Failure::of(&error) });
            audited("backfill_failed", false, error.to_string()).await;
            return Err(error);
        }
    };
    if end == WorkEnd::Stopped && crew.stop_requested() {
        observer.on_backfill(&BackfillEvent::Stopped { migration: migration.folder.clone() });
        let detail = format!("{} rows in {} batches by this run; stopped on request", totals.rows, totals.batches);
        audited("backfill_stopped", true, detail).await;
        return Err(Error::StopRequested {
            after: format!("after the last committed batch of {}'s backfill", migration.folder),
            resume: format!("wasmig backfill run {}` or `wasmig up", migration.version),
        });
    }
    let end = match end {
        WorkEnd::Finished => WorkerEnd::Finished,
        WorkEnd::Paused | WorkEnd::Stopped => WorkerEnd::Paused,
    };
    observer.on_backfill(&match end {
        WorkerEnd::Paused => BackfillEvent::Paused { migration: migration.folder.clone() },
        WorkerEnd::Finished => BackfillEvent::Finished {
            migration: migration.folder.clone(),
            rows: totals.rows,
            batches: totals.batches,
            duration_ms: crate::report::millis(started.elapsed()),
        },
    });
    let action = if end == WorkerEnd::Finished { "backfilled" } else { "backfill_paused" };
    audited(action, true, format!("{} rows in {} batches by this run", totals.rows, totals.batches)).await;
    session.committed(
        report,
        StepReport {
            version: migration.version,
            folder: migration.folder.clone(),
            action: match end {
                WorkerEnd::Finished => Action::Backfilled,
                WorkerEnd::Paused => Action::BackfillPaused,
            },
            duration: started.elapsed(),
            backfill: Some((totals.rows, totals.batches)),
        },
    );
    Ok(end)
}

fn backfill_plan(session: &Session<'_>, migration: &Migration) -> Result<BackfillPlan, Error> {
    let settings = migration.backfill().ok_or_else(|| Error::NoBackfill { migration: migration.folder.clone() })?;
    let config = session.config();
    Ok(BackfillPlan::new(&config.backfill, settings, &config.backfill_overrides))
}

/// Records the backfill as started with its chunks, unless a run (this one earlier, or
/// another worker) already did. Splitting the table reads it once, outside any lock the
/// schema step took.
async fn start(session: &Session<'_>, migration: &Migration, plan: &BackfillPlan) -> Result<(), Error> {
    if session.backfills().state(migration.version).await?.is_some() {
        return Ok(());
    }
    let chunking_error = |source| Error::Sql { migration: migration.folder.clone(), file: "backfill chunks", source };
    let (estimate, bounds) =
        chunks::plan(session.db.as_ref(), plan.chunking.as_ref()).await.map_err(chunking_error)?;
    let started = session
        .in_transaction(migration, Access::ReadWrite, async || {
            Ok(session.backfills().start(migration.version, estimate, &bounds).await?)
        })
        .await?;
    if started {
        let rows_estimate = estimate.map_or_else(|| "unknown".to_owned(), |rows| rows.to_string());
        tracing::info!(migration = %migration, chunks = bounds.len(), %rows_estimate, "backfill started");
    }
    Ok(())
}

/// How many workers this process runs: as asked, but no more than the chunks left, and one
/// where the database has one writer at a time.
fn worker_count(session: &Session<'_>, plan: &BackfillPlan, chunks_left: i64) -> u32 {
    if plan.workers > 1 && !session.db.dialect().row_locks {
        tracing::info!("SQLite allows one writer at a time: running one backfill worker");
        return 1;
    }
    plan.workers.min(u32::try_from(chunks_left.max(1)).unwrap_or(u32::MAX))
}

/// Runs one worker per id, each on a session of its own, and sums their totals. The first
/// error wins; it stops the others after their current batch.
async fn work_together<'a>(
    session: &Session<'_>,
    ids: &'a [String],
    run: impl Fn(&'a str) -> WorkerRun<'a>,
) -> Result<(WorkEnd, WorkerTotals), Error> {
    let siblings = try_join_all(ids.iter().map(|_| session.sibling())).await?;
    let results = join_all(siblings.iter().zip(ids).map(|(sibling, id)| {
        let run = run(id);
        async move {
            let result = work(sibling, run).await;
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
async fn work(session: &Session<'_>, run: WorkerRun<'_>) -> Result<(WorkEnd, WorkerTotals), Error> {
    let WorkerRun { migration, plan, worker, crew, .. } = run;
    let mut totals = WorkerTotals::default();
    let mut pacer = Pacer::new(plan.throttle);
    let mut size = BatchSize::new(plan.batch_size, plan.min_batch_size);
    // The wait for a chunk is announced once, not at every poll.
    let mut announced_wait = false;
    let end = loop {
        if crew.stopped() {
            break WorkEnd::Stopped;
        }
        match session.backfills().state(migration.version).await? {
            None => return Err(Error::BackfillGone { migration: migration.folder.clone() }),
            Some(BackfillState::Done) => break WorkEnd::Finished,
            // A cancelled or failed backfill stops its other workers as a pause does.
            Some(BackfillState::Paused | BackfillState::Cancelled | BackfillState::Failed) => break WorkEnd::Paused,
            Some(BackfillState::Running) => {}
        }
        let Some(chunk) = session.backfills().lease(migration.version, worker, plan.lease).await? else {
            if !announced_wait {
                announced_wait = true;
                session.shared.observer.on_backfill(&BackfillEvent::Waiting {
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
        let ended = run_chunk(session, run, &chunk, &mut size, &mut pacer, &mut totals).await;
        crew.chunk_ended.notify_waiters();
        let stopped_early = match ended {
            Ok(ChunkEnd::Done | ChunkEnd::LeaseLost) => continue,
            Ok(ChunkEnd::Paused) => Ok(WorkEnd::Paused),
            Ok(ChunkEnd::Stopped) => Ok(WorkEnd::Stopped),
            Err(error) => Err(error),
        };
        // The chunk is unfinished: give it back so that nobody waits out the lease.
        release_quietly(session, migration.version, chunk.chunk, worker).await;
        break stopped_early?;
    };
    Ok((end, totals))
}

/// Reads who holds the chunk leases of each backfill that has any, marking the workers of
/// this machine whose process is gone: a worker killed with `kill -9` shows as gone, not as a
/// live worker holding its lease.
pub(crate) async fn read_lease_holders(session: &Session<'_>, statuses: &mut [BackfillStatus]) -> Result<(), Error> {
    if statuses.iter().all(|status| status.chunks_leased == 0) {
        return Ok(());
    }
    let here = ThisProcess::read();
    // A loop with an `if`, not a filter: a closure held across the await would keep the
    // future from being `Send`.
    for status in statuses {
        if status.chunks_leased == 0 {
            continue;
        }
        let mut holders = session.backfills().lease_holders(status.version).await?;
        for holder in &mut holders {
            holder.gone = here.outlived(&holder.worker);
        }
        status.workers = holders;
    }
    Ok(())
}

/// Frees the chunks still leased by workers of this machine whose process is gone (a run
/// killed here), so a restart need not wait out their leases. Their batches in flight died
/// with them: a lease only guards the cursor a batch commits with. Failing to is harmless
/// (the leases expire anyway).
async fn reclaim_from_dead_workers(session: &Session<'_>, version: Version, here: &ThisProcess) {
    let store = session.backfills();
    let holders = match store.lease_holders(version).await {
        Ok(holders) => holders,
        Err(error) => return tracing::warn!(%error, "could not read the chunks' lease holders"),
    };
    for holder in holders.iter().filter(|holder| here.outlived(&holder.worker)).map(|holder| &holder.worker) {
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
async fn release_quietly(session: &Session<'_>, version: Version, chunk: i64, worker: &str) {
    if let Err(error) = session.backfills().release(version, chunk, worker).await {
        tracing::warn!(%error, chunk, "could not release the chunk's lease; it expires on its own");
    }
}
