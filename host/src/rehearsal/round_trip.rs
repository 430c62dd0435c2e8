//! `wasmig test`: the round trip. On a scratch database, each migration in turn is applied
//! (with its verify and backfill), reverted, and applied again, and the schema is compared
//! after each: a `down` must leave the schema as it was before the `up`, and applying again
//! must build what the first `up` built. Then, at the head, every verify runs again, the
//! whole project is rolled down to nothing and up once more. The first migration that breaks
//! any of this is named with how it broke.

use crate::config::Config;
use crate::core::Version;
use crate::db::{Schema, SchemaDifference};
use crate::error::Error;
use crate::migrator::Migrator;
use crate::plan::DownTarget;
use crate::project::catalog::Migration;

use super::scratch::{Backstage, ScratchPlace, on_scratch, scratch_for};

/// What a round trip found.
#[derive(Debug)]
pub struct RoundTrip {
    /// Where it ran (a scratch database, removed since unless it was given or kept).
    pub scratch: String,
    /// Whether the scratch database was left as the round trip left it (`--keep`).
    pub kept: bool,
    /// The migrations that came through, in order.
    pub passed: Vec<Version>,
    /// The first that did not, if any.
    pub broken: Option<Breakage>,
}

/// The first migration that broke the round trip, and how.
#[derive(Debug)]
pub struct Breakage {
    pub version: Version,
    pub folder: String,
    pub stage: Stage,
    pub how: Broken,
}

/// Where in the round trip a migration broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Applying it the first time (its up, verify or backfill).
    Up,
    /// Reverting it.
    Down,
    /// Applying it again after its down.
    Reapply,
    /// Every verify, at the head.
    VerifyAtHead,
    /// Rolling the whole project down to nothing.
    DownToBase,
    /// Applying the whole project again.
    UpAgain,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Up => "up",
            Stage::Down => "down",
            Stage::Reapply => "reapply",
            Stage::VerifyAtHead => "verify_at_head",
            Stage::DownToBase => "down_to_base",
            Stage::UpAgain => "up_again",
        }
    }
}

/// How a migration broke the round trip.
#[derive(Debug)]
pub enum Broken {
    /// The step failed; the error says how.
    Failed(Box<Error>),
    /// It cannot be reverted at all.
    NoDown,
    /// Its down left the schema other than before its up.
    DownLeft(Vec<SchemaDifference>),
    /// Applied again, it built another schema than the first time.
    ReapplyDiffers(Vec<SchemaDifference>),
}

impl std::fmt::Display for Breakage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let folder = &self.folder;
        match &self.how {
            Broken::Failed(error) => match self.stage {
                Stage::Up => write!(f, "{folder}: applying it failed: {error}"),
                Stage::Down => write!(f, "{folder}: reverting it failed: {error}"),
                Stage::Reapply => write!(f, "{folder}: applying it again after its down failed: {error}"),
                Stage::VerifyAtHead => write!(f, "{folder}: its verify failed with every migration applied: {error}"),
                Stage::DownToBase => write!(f, "{folder}: rolling the project down to nothing failed: {error}"),
                Stage::UpAgain => write!(f, "{folder}: applying the project again failed: {error}"),
            },
            Broken::NoDown => write!(
                f,
                "{folder} cannot be reverted: it has no down (add down.sql, or a component's down), so the round trip \
                 cannot pass it"
            ),
            Broken::DownLeft(differences) => {
                write!(f, "{folder}: its down did not undo its up:")?;
                differences.iter().try_for_each(|difference| match (&difference.expected, &difference.found) {
                    (None, Some(found)) => write!(f, "\n  - left behind: {} ({found})", difference.object),
                    (Some(expected), None) => write!(f, "\n  - not restored: {} ({expected})", difference.object),
                    _ => write!(f, "\n  - {difference}"),
                })
            }
            Broken::ReapplyDiffers(differences) => {
                write!(f, "{folder}: applied again after its down, it built another schema than the first time:")?;
                differences.iter().try_for_each(|difference| write!(f, "\n  - {difference}"))
            }
        }
    }
}

/// Runs the round trip of `config`'s project on a scratch database: the one `place` gives
/// (it must be empty), else one made beside the target and dropped after, unless kept.
pub async fn round_trip(config: &Config, place: &ScratchPlace) -> Result<RoundTrip, Error> {
    let scratch = scratch_for(config, place).await?;
    let shown = scratch.url().to_string();
    let walked = on_scratch(config, scratch, place.keep, async |migrator, backstage| walk(migrator, backstage).await);
    let (passed, broken) = walked.await?;
    Ok(RoundTrip { scratch: shown, kept: place.keep, passed, broken })
}

/// The round trip itself; `Err` only when it could not run (the trust check, reading the
/// scratch schema), never for what it found.
async fn walk(migrator: &Migrator, backstage: &Backstage) -> Result<(Vec<Version>, Option<Breakage>), Error> {
    migrator.trust().ensure()?;
    let base = snapshot(migrator).await?;
    let mut passed = Vec::new();
    let migrations: Vec<&Migration> = migrator.catalog().migrations.iter().collect();
    for migration in &migrations {
        tracing::info!("round trip: {}", migration.folder);
        if let Some(breakage) = stair(migrator, migration).await? {
            return Ok((passed, Some(breakage)));
        }
        passed.push(migration.version);
    }
    let Some(last) = migrations.last() else { return Ok((passed, None)) };
    let at = |stage, how| Some(Breakage { version: last.version, folder: last.folder.clone(), stage, how });
    if let Err(run) = migrator.verify().await {
        return Ok((passed, Some(failed_in(backstage, last, Stage::VerifyAtHead, run.error))));
    }
    let head = snapshot(migrator).await?;
    if let Err(run) = migrator.down(DownTarget::Steps(migrations.len())).await {
        return Ok((passed, Some(failed_in(backstage, last, Stage::DownToBase, run.error))));
    }
    let differences = base.differences(&snapshot(migrator).await?);
    if !differences.is_empty() {
        return Ok((passed, at(Stage::DownToBase, Broken::DownLeft(differences))));
    }
    if let Err(run) = migrator.up(None).await {
        return Ok((passed, Some(failed_in(backstage, last, Stage::UpAgain, run.error))));
    }
    let differences = head.differences(&snapshot(migrator).await?);
    if !differences.is_empty() {
        return Ok((passed, at(Stage::UpAgain, Broken::ReapplyDiffers(differences))));
    }
    Ok((passed, None))
}

/// One migration's step of the stair: up, down, up again, comparing the schema each time.
async fn stair(migrator: &Migrator, migration: &Migration) -> Result<Option<Breakage>, Error> {
    let broke = |stage, how| Some(Breakage { version: migration.version, folder: migration.folder.clone(), stage, how });
    let before = snapshot(migrator).await?;
    if let Err(run) = migrator.up(Some(migration.version)).await {
        return Ok(broke(Stage::Up, Broken::Failed(Box::new(run.error))));
    }
    let after = snapshot(migrator).await?;
    if !migration.has_down() {
        return Ok(broke(Stage::Down, Broken::NoDown));
    }
    if let Err(run) = migrator.down(DownTarget::Steps(1)).await {
        return Ok(broke(Stage::Down, Broken::Failed(Box::new(run.error))));
    }
    let differences = before.differences(&snapshot(migrator).await?);
    if !differences.is_empty() {
        return Ok(broke(Stage::Down, Broken::DownLeft(differences)));
    }
    if let Err(run) = migrator.up(Some(migration.version)).await {
        return Ok(broke(Stage::Reapply, Broken::Failed(Box::new(run.error))));
    }
    let differences = after.differences(&snapshot(migrator).await?);
    if !differences.is_empty() {
        return Ok(broke(Stage::Reapply, Broken::ReapplyDiffers(differences)));
    }
    Ok(None)
}

/// A failure of a whole-project stage, put on the migration whose step failed (else `last`).
fn failed_in(backstage: &Backstage, last: &Migration, stage: Stage, error: Error) -> Breakage {
    let (version, folder) = backstage.last_failed().unwrap_or_else(|| (last.version, last.folder.clone()));
    Breakage { version, folder, stage, how: Broken::Failed(Box::new(error)) }
}

async fn snapshot(migrator: &Migrator) -> Result<Schema, Error> {
    Ok(migrator.schema().await?.0)
}
