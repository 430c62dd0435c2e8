//! [`Migrator`]'s repairs: a reviewed decision recorded against an applied migration — its
//! changed files accepted (after [`Migrator::repair_diff`] shows what changed since it was
//! applied), or an interrupted step settled — each kept with who, when and why.

use std::time::Duration;

use crate::core::{Digest, Version};
use crate::db::Access;
use crate::error::{Error, RepairError, RunError};
use crate::ledger::{Repair, StartedDirection};
use crate::project::catalog::Migration;
use crate::project::kept_files::KeptFiles;
use crate::report::repair::RepairDiff;
use crate::run::session::Session;

use super::{Decision, Migrator};

impl Migrator {
    /// Records what a person decided about an interrupted step (one run outside a transaction
    /// that did not finish): [`Decision::Retry`] lets the next run run it again;
    /// [`Decision::MarkDone`] records it as applied (or, for a revert, reverted). Either is
    /// kept in the repairs with who, when and why.
    pub async fn repair_interrupted(&self, version: Version, decision: Decision, reason: &str) -> Result<Repair, RunError> {
        self.reporting(async |_| {
            self.trust.ensure()?;
            let migration = self.catalog.get(version).ok_or(RepairError::NoFolder { version })?;
            let repaired_by = self.session().applied_by().await;
            self.locked(async |session| {
                let started = session.started().list().await?;
                let step = started
                    .iter()
                    .find(|step| step.version == version)
                    .ok_or_else(|| RepairError::NotInterrupted { folder: migration.folder.clone() })?;
                let what = match (decision, step.direction) {
                    (Decision::Retry, _) => "cleared to run again",
                    (Decision::MarkDone, StartedDirection::Up) => "recorded as applied",
                    (Decision::MarkDone, StartedDirection::Down) => "recorded as reverted",
                };
                let repair = Repair {
                    version,
                    old_digest: migration.digest,
                    new_digest: migration.digest,
                    reason: format!("interrupted {} step {what}: {reason}", step.direction.as_str()),
                    repaired_by: repaired_by.clone(),
                    repaired_at: String::new(),
                };
                session
                    .in_transaction(migration, Access::ReadWrite, async || {
                        match (decision, step.direction) {
                            (Decision::Retry, _) => {}
                            (Decision::MarkDone, StartedDirection::Up) => {
                                session.record_applied(migration, &repaired_by, Duration::ZERO).await?
                            }
                            (Decision::MarkDone, StartedDirection::Down) => session.history().forget(version).await?,
                        }
                        session.started().clear(version).await?;
                        session.history().log_repair(&repair).await?;
                        session.audit(&session.audit_entry(migration, "repaired", &repair.reason, Duration::ZERO)).await
                    })
                    .await?;
                Ok(repair)
            })
            .await
        })
        .await
        .map(|(repair, _)| repair)
    }

    /// Records, with who, when and why, that applied migration `version`'s files changed and
    /// now hash to `accepted`, which becomes its recorded digest. The files must hash to exactly
    /// `accepted`, so what is accepted is what was reviewed; nothing is ever reset silently.
    pub async fn repair(&self, version: Version, accepted: Digest, reason: &str) -> Result<Repair, RunError> {
        self.accept_changes(version, accepted, reason).await.map(|(repair, _)| repair)
    }

    /// [`Migrator::repair`], with the diff it accepted (what `--diff` shows).
    pub async fn accept_changes(
        &self,
        version: Version,
        accepted: Digest,
        reason: &str,
    ) -> Result<(Repair, RepairDiff), RunError> {
        self.reporting(async |_| {
            self.trust.ensure()?;
            let migration = self.catalog.get(version).ok_or(RepairError::NoFolder { version })?;
            let found = migration.digest;
            if found != accepted {
                return Err(RepairError::NotWhatWasAccepted { folder: migration.folder.clone(), accepted, found }.into());
            }
            let repaired_by = self.session().applied_by().await;
            self.locked(async |session| {
                let diff = self.diff_of(session, migration).await?;
                if diff.recorded_digest == found {
                    return Err(RepairError::NothingToRepair { folder: migration.folder.clone() }.into());
                }
                let repair = Repair {
                    version,
                    old_digest: diff.recorded_digest,
                    new_digest: found,
                    reason: reason.to_owned(),
                    repaired_by: repaired_by.clone(),
                    repaired_at: String::new(),
                };
                // The audit keeps what was accepted, not only its digest.
                let detail = format!("digest {} accepted: {reason}\n{}", repair.new_digest, diff.text());
                session
                    .in_transaction(migration, Access::ReadWrite, async || {
                        session.history().repair(&repair, &migration.files.to_json()).await?;
                        session.audit(&session.audit_entry(migration, "repaired", &detail, Duration::ZERO)).await
                    })
                    .await?;
                Ok((repair, diff))
            })
            .await
        })
        .await
        .map(|(accepted, _)| accepted)
    }

    /// What changed in an applied migration's files since it was applied: the diff a repair
    /// accepts, and the digest to accept. Records nothing.
    pub async fn repair_diff(&self, version: Version) -> Result<RepairDiff, RunError> {
        self.reporting(async |_| {
            let migration = self.catalog.get(version).ok_or(RepairError::NoFolder { version })?;
            self.locked(async |session| self.diff_of(session, migration).await).await
        })
        .await
        .map(|(diff, _)| diff)
    }

    async fn diff_of(&self, session: &Session<'_>, migration: &Migration) -> Result<RepairDiff, Error> {
        let version = migration.version;
        let (recorded_digest, kept) =
            session.history().recorded_files(version).await?.ok_or(RepairError::NotApplied { version })?;
        let changes = kept.as_deref().and_then(KeptFiles::from_json).map(|kept| kept.changes_to(&migration.files));
        Ok(RepairDiff {
            version,
            migration: migration.folder.clone(),
            recorded_digest,
            digest: migration.digest,
            changes,
        })
    }
}
