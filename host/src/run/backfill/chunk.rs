//! One leased chunk's batches: each batch calls the component's `backfill` and commits its
//! writes together with the chunk's new cursor (invariant 4), retried smaller when it hits a
//! limit ([`BatchSize`]), paced by the throttle, until the chunk is done, the backfill is
//! paused, or the lease is lost.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::core::Human;
use crate::core::limits::Limit;
use crate::db::Value;
use crate::error::Error;
use crate::ledger::backfills::{self, BackfillState, BatchEnd, CursorStep, EndBatchError, LeasedChunk};
use crate::project::catalog::Migration;
use crate::sandbox::{Call, Outcome, SandboxError};

use super::super::session::{Session, transaction_failed};
use super::crew::{Crew, WorkerRun, WorkerTotals};
use crate::run::events::BackfillEvent;
use super::sizing::{AfterLimit, BatchSize};
use super::throttle::Pacer;

/// How often a worker re-reads the backfill's state (to notice a pause) and its total progress.
const STATE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How one leased chunk ended for this worker.
pub(crate) enum ChunkEnd {
    Done,
    Paused,
    /// The lease expired and another worker took the chunk over; the last batch rolled back.
    LeaseLost,
    Stopped,
}

/// Runs batches of one leased chunk until it is done, the backfill is paused, or the lease
/// is lost. `size` carries the (possibly halved) batch size from chunk to chunk.
pub(crate) async fn run_chunk(
    session: &Session<'_>,
    run: WorkerRun<'_>,
    chunk: &LeasedChunk,
    size: &mut BatchSize,
    pacer: &mut Pacer,
    totals: &mut WorkerTotals,
) -> Result<ChunkEnd, Error> {
    let WorkerRun { migration, plan, crew, .. } = run;
    let observer = &session.shared.observer;
    let mut cursor = chunk.cursor.clone();
    let mut state_checked = Instant::now();
    let mut batch_in_chunk = 0u64;
    size.start_chunk();
    loop {
        if crew.stopped() {
            return Ok(ChunkEnd::Stopped);
        }
        if state_checked.elapsed() >= STATE_POLL_INTERVAL {
            state_checked = Instant::now();
            match session.backfills().state(migration.version).await? {
                None => return Err(Error::BackfillGone { migration: migration.folder.clone() }),
                Some(BackfillState::Paused | BackfillState::Cancelled | BackfillState::Failed) => {
                    return Ok(ChunkEnd::Paused);
                }
                Some(_) => {
                    refresh_progress(session, migration, crew).await?;
                }
            }
        }
        pacer
            .before_batch(session.db.as_ref(), |lag| {
                observer.on_backfill(&BackfillEvent::Waiting {
                    migration: migration.folder.clone(),
                    reason: match plan.throttle.max_replication_lag {
                        Some(bound) => format!("replication lag {} is over the {} bound", Human(lag), Human(bound)),
                        None => format!("replication lag {}", Human(lag)),
                    },
                })
            })
            .await
            .map_err(|source| Error::Sql { migration: migration.folder.clone(), file: "replication lag", source })?;
        batch_in_chunk += 1;
        let attempt = session
            .in_batch_transaction(migration, async || {
                run_batch(session, run, chunk, cursor.as_deref(), size.current()).await
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
                match size.after_limit(limit) {
                    AfterLimit::AtFloor { size, fuel_spent } => {
                        return Err(Error::BackfillAtFloor {
                            migration: migration.folder.clone(),
                            limit,
                            chunk: chunk.chunk,
                            batch: batch_in_chunk,
                            cursor: cursor.clone(),
                            size,
                            fuel_spent,
                        });
                    }
                    AfterLimit::Halved { from, to } => observer.on_backfill(&BackfillEvent::Halved {
                        migration: migration.folder.clone(),
                        chunk: chunk.chunk,
                        cursor: cursor.clone(),
                        from,
                        to,
                        limit: limit.to_string(),
                    }),
                }
                batch_in_chunk -= 1;
                continue;
            }
        };
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        totals.rows += rows;
        totals.batches += 1;
        pacer.count(rows as u64);
        let rate = crew.count_batch(rows);
        let (rows_done, rows_estimate) = (crew.rows_done.load(Ordering::Relaxed), crew.rows_estimate());
        observer.on_backfill(&BackfillEvent::Batch {
            migration: migration.folder.clone(),
            chunk: chunk.chunk,
            rows: rows as u64,
            batch_size: size.current(),
            rows_done,
            rows_estimate,
            rows_per_second: rate,
            eta_ms: backfills::eta(BackfillState::Running, rows_estimate, rows_done, Some(rate))
                .map(crate::report::millis),
        });
        size.after_success();
        let Some(next) = next else { return Ok(ChunkEnd::Done) };
        let batches = u64::try_from(totals.batches).unwrap_or(0);
        if plan.chunking.is_none() && batches >= plan.max_batches {
            return Err(Error::BackfillUnbounded { migration: migration.folder.clone(), batches });
        }
        cursor = Some(next);
        pacer.after_batch().await;
    }
}

/// One batch, inside the transaction the caller opened, which it ends by committing: the
/// component's writes, the chunk's new cursor (only if this worker still holds it at the
/// cursor it started from) and, when this was the last chunk's last batch, the verify and
/// the backfill marked done.
async fn run_batch(
    session: &Session<'_>,
    run: WorkerRun<'_>,
    chunk: &LeasedChunk,
    cursor: Option<&str>,
    size: u32,
) -> Result<(Option<String>, u64), Error> {
    let WorkerRun { migration, component, loaded, plan, worker, .. } = run;
    let call = Call::Backfill { cursor: cursor.map(str::to_owned), until: chunk.until.clone(), batch_size: size };
    let call_name = call.to_string();
    let (next, rows) = match session.call(migration, component, loaded, call).await? {
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
        check_cursor_order(session, migration, chunking.key.as_str(), cursor, next, chunk.until.as_deref()).await?;
    }
    let store = session.backfills();
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
    let commit_failed = transaction_failed(migration, "commit");
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
        session.call(migration, component, loaded, Call::Verify).await?;
        store.finish(migration.version).await?;
    }
    session.db.commit().await.map_err(commit_failed)?;
    Ok((next, rows))
}

/// Re-reads every worker's rows done and the estimate into `crew`; returns the status.
pub(crate) async fn refresh_progress(
    session: &Session<'_>,
    migration: &Migration,
    crew: &Crew,
) -> Result<Option<backfills::BackfillStatus>, Error> {
    let Some(status) = session.backfills().status(migration.version).await? else { return Ok(None) };
    crew.rows_done.store(status.rows_done, Ordering::Relaxed);
    crew.rows_estimate.store(status.rows_estimate.unwrap_or(-1), Ordering::Relaxed);
    Ok(Some(status))
}

/// With a declared key, each cursor must be past the one before it (or the chunk's start)
/// and not past the chunk's end: a cursor that goes back, alternates or runs past `until`
/// would revisit rows or never end.
async fn check_cursor_order(
    session: &Session<'_>,
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
        && key_order(session, migration, next, cursor).await? != std::cmp::Ordering::Greater
    {
        return Err(out_of_order("does not come after it".into()));
    }
    if let Some(until) = until
        && key_order(session, migration, next, until).await? == std::cmp::Ordering::Greater
    {
        return Err(out_of_order(format!("runs past its chunk's end {until:?}")));
    }
    Ok(())
}

/// How two key values (as text) order: as integers when both are, else as the database
/// orders text (the chunk bounds are the key cast to text).
async fn key_order(
    session: &Session<'_>,
    migration: &Migration,
    a: &str,
    b: &str,
) -> Result<std::cmp::Ordering, Error> {
    if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
        return Ok(a.cmp(&b));
    }
    let sql_error = |source| Error::Sql { migration: migration.folder.clone(), file: "cursor order", source };
    let rows = session
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

/// The limit a failed batch hit, when halving the batch may help: fuel or the deadline.
fn batch_limit(error: &Error) -> Option<Limit> {
    match error {
        Error::Sandbox(SandboxError::Trap { limit: Some(limit @ (Limit::Fuel(_) | Limit::Deadline(_))), .. }) => {
            Some(*limit)
        }
        _ => None,
    }
}
