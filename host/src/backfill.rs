//! The backfill runner: calls a component's `backfill` batch after batch until it returns no
//! cursor.
//!
//! Invariant 4: each batch is its own transaction holding the batch's writes and the cursor
//! it returned, so a run killed at any instant resumes from the last committed cursor with no
//! row lost and none processed twice. The final batch also runs the migration's `verify`, so
//! "done" and "verified" commit together.

use std::time::Instant;

use crate::catalog::Migration;
use crate::db::Access;
use crate::error::Error;
use crate::history::BackfillProgress;
use crate::manifest::BackfillSettings;
use crate::migrator::Migrator;
use crate::report::{Action, Report, RunError, StepReport};
use crate::sandbox::{Call, LoadedComponent, Outcome};

impl Migrator {
    pub(crate) async fn backfill(
        &self,
        migration: &Migration,
        loaded: &LoadedComponent,
        settings: &BackfillSettings,
        report: &mut Report,
    ) -> Result<(), RunError> {
        let started = Instant::now();
        let done = |error: Error, report: &Report| RunError { error, done: report.clone() };
        let saved = self.history().backfills().await.map_err(|e| done(e.into(), report))?;
        let mut progress = saved.into_iter().find(|p| p.version == migration.version).unwrap_or(BackfillProgress {
            version: migration.version,
            cursor: None,
            rows: 0,
            batches: 0,
            done: false,
        });
        let (rows_before, batches_before) = (progress.rows, progress.batches);
        while !progress.done {
            progress = self
                .in_transaction(migration, Access::ReadWrite, async || {
                    self.run_batch(migration, loaded, settings, &progress).await
                })
                .await
                .map_err(|e| done(e, report))?;
            tracing::info!(
                migration = %migration,
                rows = progress.rows,
                batches = progress.batches,
                cursor = progress.cursor.as_deref().unwrap_or("(done)"),
                "backfill batch committed"
            );
        }
        report.steps.push(StepReport {
            version: migration.version,
            folder: migration.folder.clone(),
            action: Action::Backfilled,
            duration: started.elapsed(),
            backfill: Some((progress.rows - rows_before, progress.batches - batches_before)),
        });
        Ok(())
    }

    /// One batch, inside the caller's transaction: the component's writes, then the new
    /// cursor (and, on the last batch, the verify).
    async fn run_batch(
        &self,
        migration: &Migration,
        loaded: &LoadedComponent,
        settings: &BackfillSettings,
        progress: &BackfillProgress,
    ) -> Result<BackfillProgress, Error> {
        let call = Call::Backfill { cursor: progress.cursor.clone(), batch_size: settings.batch_size };
        let call_name = call.to_string();
        let (next_cursor, rows) = match self.call(migration, loaded, call).await? {
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
        if let Some(cursor) = &next_cursor
            && progress.cursor.as_ref() == Some(cursor)
        {
            return Err(Error::CursorStuck { migration: migration.folder.clone(), cursor: cursor.clone() });
        }
        let next = BackfillProgress {
            version: migration.version,
            done: next_cursor.is_none(),
            cursor: next_cursor,
            rows: progress.rows.saturating_add(i64::try_from(rows).unwrap_or(i64::MAX)),
            batches: progress.batches + 1,
        };
        if next.done {
            self.call(migration, loaded, Call::Verify).await?;
        }
        self.history().save_progress(&next).await?;
        Ok(next)
    }
}
