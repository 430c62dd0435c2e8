//! [`Migrator`]'s backfill controls: each backfill's status, running one as a worker, and its
//! state changes (pause, resume, retry, cancel), each allowed only from the states named.

use crate::core::Version;
use crate::error::{Error, RunError};
use crate::ledger::{Audit, BackfillState, BackfillStatus};
use crate::plan;
use crate::project::catalog::{Body, Migration};
use crate::report::Report;
use crate::run::backfill::{self, WorkerEnd};

use super::Migrator;

impl Migrator {
    /// Every backfill's progress (empty before any started); a failed one says why.
    pub async fn backfill_status(&self) -> Result<Vec<BackfillStatus>, Error> {
        let session = self.session();
        let mut statuses = session.backfills().statuses().await?;
        let audit = Audit::new(session.db.as_ref(), &session.ledger);
        // A loop with an `if`, not a filter: a closure held across the await would keep the
        // future from being `Send` (the CLI runs it as a task).
        for status in &mut statuses {
            if status.state == BackfillState::Failed {
                status.error = audit.latest_detail(status.version, "backfill_failed").await?;
            }
        }
        backfill::read_lease_holders(&session, &mut statuses).await?;
        Ok(statuses)
    }

    /// The backfill of migration `version`; a project error says why there is none (no such
    /// migration, no `[backfill]`, not applied yet).
    pub async fn backfill_status_of(&self, version: Version) -> Result<BackfillStatus, Error> {
        let migration = self.backfill_migration(version).await?;
        let statuses = self.backfill_status().await?;
        statuses
            .into_iter()
            .find(|status| status.version == version)
            .ok_or_else(|| Error::BackfillNotApplied { migration: migration.folder.clone() })
    }

    /// Runs (or joins, as one more worker) the backfill of applied migration `version` until
    /// it is done or paused. Takes no migration lock: any number of workers may share it.
    pub async fn backfill_run(&self, version: Version) -> Result<Report, RunError> {
        self.reporting(async |report| {
            self.trust.ensure()?;
            let migration = self.backfill_migration(version).await?;
            let Body::Component(component) = &migration.body else {
                return Err(Error::NoBackfill { migration: migration.folder.clone() });
            };
            let session = self.session();
            let loaded = session.load_component(migration, component)?;
            if backfill::run(&session, migration, component, &loaded, report).await? == WorkerEnd::Paused {
                tracing::info!(migration = %migration, "backfill paused");
            }
            Ok(())
        })
        .await
        .map(|((), report)| report)
    }

    /// Pauses a running backfill: its workers stop after their current batch, and `up` leaves
    /// it alone until it is resumed.
    pub async fn backfill_pause(&self, version: Version) -> Result<(), Error> {
        self.backfill_transition(version, &[BackfillState::Running], BackfillState::Paused).await
    }

    /// Lets a paused backfill go on (`wasmig backfill run` or `up` then continue it).
    pub async fn backfill_resume(&self, version: Version) -> Result<(), Error> {
        self.backfill_transition(version, &[BackfillState::Paused], BackfillState::Running).await
    }

    /// Lets a failed (or cancelled) backfill go on from its last committed batch, once what
    /// made it fail is fixed; `wasmig backfill run` or `up` then continue it.
    pub async fn backfill_retry(&self, version: Version) -> Result<(), Error> {
        let from = [BackfillState::Failed, BackfillState::Cancelled];
        self.backfill_transition(version, &from, BackfillState::Running).await
    }

    /// Gives a backfill up: its workers stop after their current batch, and nothing runs it
    /// again until `backfill_retry` (or the migration is reverted). The gate keeps reporting it.
    pub async fn backfill_cancel(&self, version: Version) -> Result<(), Error> {
        let from = [BackfillState::Running, BackfillState::Paused, BackfillState::Failed];
        self.backfill_transition(version, &from, BackfillState::Cancelled).await
    }

    async fn backfill_transition(&self, version: Version, from: &[BackfillState], to: BackfillState) -> Result<(), Error> {
        let migration = self.backfill_migration(version).await?;
        let session = self.session();
        let store = session.backfills();
        for &state in from {
            if store.transition(version, state, to).await? {
                tracing::info!(migration = %migration, from = %state, %to, "backfill state changed");
                return Ok(());
            }
        }
        match store.state(version).await? {
            Some(state) if state == to => Ok(()),
            Some(state) => Err(Error::BackfillState {
                migration: migration.folder.clone(),
                state,
                wanted: to,
            }),
            None => Err(Error::BackfillNotApplied { migration: migration.folder.clone() }),
        }
    }

    /// The applied migration `version`, which must have a backfill and unchanged files.
    async fn backfill_migration(&self, version: Version) -> Result<&Migration, Error> {
        let migration = self.catalog.get(version).ok_or(plan::PlanError::UnknownTarget(version))?;
        if migration.backfill().is_none() {
            return Err(Error::NoBackfill { migration: migration.folder.clone() });
        }
        let applied = self.applied_if_any().await?;
        plan::check_applied(&self.catalog, &applied)?;
        if !applied.iter().any(|row| row.version == version) {
            return Err(Error::BackfillNotApplied { migration: migration.folder.clone() });
        }
        Ok(migration)
    }
}
