//! The scratch side of a rehearsal: choosing the scratch database, running a [`Migrator`] on
//! it and cleaning up after, and [`Backstage`], the observer its steps report to.

use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::core::Version;
use crate::db::{DatabaseUrl, Scratch};
use crate::error::Error;
use crate::migrator::Migrator;
use crate::report::StepReport;
use crate::run::events::{Observer, StepFailure};

/// Where a rehearsal runs, and what becomes of it after.
#[derive(Debug, Clone, Default)]
pub struct ScratchPlace {
    /// The user's empty database (`--scratch-url`); `None`: one made beside the target.
    pub given: Option<DatabaseUrl>,
    /// Leave it as the rehearsal left it (`--keep`), neither emptied nor removed, for a
    /// person to look into: a broken round trip stays at the state it broke in.
    pub keep: bool,
}

/// The scratch database `place` names: the given one, else one made beside the target.
pub(super) async fn scratch_for(config: &Config, place: &ScratchPlace) -> Result<Scratch, Error> {
    let target = config.database()?;
    Ok(match &place.given {
        Some(url) => Scratch::given(url.clone(), target, config.connect).await?,
        None => Scratch::beside(target, config.connect).await?,
    })
}

/// Runs `work` on a migrator of `config`'s project connected to `scratch`, then, unless
/// `keep`, removes the scratch database whatever `work` returned (its connection closed
/// first), or, when the user gave it, reverts what was applied and drops the ledger, leaving
/// it empty again.
pub(super) async fn on_scratch<T>(
    config: &Config,
    scratch: Scratch,
    keep: bool,
    work: impl AsyncFnOnce(&Migrator, &Backstage) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut scratch_config = config.clone();
    scratch_config.database = Some(scratch.url().clone());
    let result = match Migrator::open(scratch_config).await {
        Ok(migrator) => {
            let backstage = Arc::new(Backstage::default());
            let migrator = migrator.with_observer(backstage.clone());
            let result = Box::pin(work(&migrator, &backstage)).await;
            if keep {
                return result;
            }
            if scratch.was_given()
                && let Err(error) = Box::pin(migrator.vacate()).await
            {
                tracing::warn!("could not empty the scratch database {} again: {error}", scratch.url());
            }
            result
        }
        Err(error) => Err(error),
    };
    if !keep {
        scratch.remove().await;
    }
    result
}

/// The scratch run's steps, logged at debug level only: they are the rehearsal's means, not
/// its result, and must not read as steps applied to the target. It keeps the last step that
/// failed, which names the migration a whole-project run broke on.
#[derive(Default)]
pub(super) struct Backstage {
    failed: Mutex<Option<(Version, String)>>,
}

impl Backstage {
    /// The version and folder of the last step that failed, if any.
    pub(super) fn last_failed(&self) -> Option<(Version, String)> {
        self.failed.lock().ok().and_then(|failed| failed.clone())
    }
}

impl Observer for Backstage {
    fn on_step(&self, step: &StepReport) {
        tracing::debug!("scratch: {step}");
    }

    fn on_step_failed(&self, failure: &StepFailure) {
        if let Ok(mut failed) = self.failed.lock() {
            *failed = Some((failure.version, failure.migration.clone()));
        }
    }
}
