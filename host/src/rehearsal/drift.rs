//! `wasmig drift`: the target's schema against the one the project's migrations build. The
//! migrations the target has applied are applied to a scratch database, and both schemas are
//! compared, in the namespaces the project manages: those its migrations create objects in,
//! and the one holding its history. The engine's own tables are left out on both sides.

use crate::config::Config;
use crate::core::Version;
use crate::db::SchemaDifference;
use crate::error::Error;
use crate::migrator::Migrator;

use super::scratch::{ScratchPlace, on_scratch, scratch_for};

/// What a drift check found.
#[derive(Debug)]
pub struct Drift {
    /// The scratch database the expected schema was built in.
    pub scratch: String,
    /// Whether it was left holding that schema (`--keep`).
    pub kept: bool,
    /// The latest migration both sides have applied; `None` when the target has none.
    pub applied_up_to: Option<Version>,
    /// Migrations of the project the target has not applied: not drift, but not compared.
    pub pending: usize,
    /// The namespaces compared.
    pub namespaces: Vec<String>,
    /// How the target differs from what its migrations build; empty when it does not.
    pub differences: Vec<SchemaDifference>,
}

/// Compares the target of `config` with its migrations applied to a scratch database (the
/// one `place` gives, which must be empty; else one made beside the target).
pub async fn drift(config: &Config, place: &ScratchPlace) -> Result<Drift, Error> {
    let target = Migrator::open(config.clone()).await?;
    let applied = target.applied().await?;
    let (actual, mut namespaces) = target.schema().await?;
    drop(target);
    // Up to the latest applied migration the project still has: one missing from disk is
    // `wasmig check`'s to report, and cannot be rebuilt here.
    let applied_versions: Vec<Version> = applied.iter().map(|row| row.version).collect();
    let scratch = scratch_for(config, place).await?;
    let shown = scratch.url().to_string();
    let (up_to, pending, expected) = on_scratch(config, scratch, place.keep, async |migrator, _| {
        let up_to = migrator
            .catalog()
            .migrations
            .iter()
            .map(|migration| migration.version)
            .filter(|version| applied_versions.contains(version))
            .max();
        let pending = migrator.catalog().migrations.iter().filter(|m| !applied_versions.contains(&m.version)).count();
        if let Some(version) = up_to {
            migrator.up(Some(version)).await.map_err(|run| run.error)?;
        }
        Ok((up_to, pending, migrator.schema().await?.0))
    })
    .await?;
    namespaces.extend(expected.namespaces());
    let differences = expected.within(&namespaces).differences(&actual.within(&namespaces));
    Ok(Drift {
        scratch: shown,
        kept: place.keep,
        applied_up_to: up_to,
        pending,
        namespaces: namespaces.into_iter().collect(),
        differences,
    })
}
