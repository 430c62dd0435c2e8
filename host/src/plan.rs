//! The plan: which migrations a run applies or reverts, in order. A pure function of the
//! catalog, the history and the target, so `--dry-run` prints exactly what would run.
//!
//! Invariant 5 is checked here: an applied migration whose files changed, or whose folder is
//! gone, stops the plan before anything runs.

use crate::core::{Digest, Version};
use crate::ledger::AppliedMigration;
use crate::ledger::foreign::OtherTool;
use crate::project::catalog::{Catalog, Migration};

/// Where `down` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownTarget {
    /// Revert the latest N applied migrations.
    Steps(usize),
    /// Revert every applied migration above this version (it stays applied).
    To(Version),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "migration {folder} was applied with digest {recorded} but its files now hash to {found}; \
         applied migrations are immutable (write a new migration, or record the change with `wasmig repair`)"
    )]
    DigestMismatch { folder: String, recorded: Digest, found: Digest },
    #[error("migration {version} ({name}) is applied but its folder is missing from the project")]
    MissingApplied { version: Version, name: String },
    #[error(
        "migration {folder} is pending but the later {latest_applied} is already applied; \
         renumber it above {latest_applied}"
    )]
    OutOfOrder { folder: String, latest_applied: Version },
    #[error("there is no migration {0} in the project")]
    UnknownTarget(Version),
    #[error("migration {folder} cannot be reverted: it has no down.sql")]
    NoDown { folder: String },
}

/// Checks invariant 5 for every applied migration.
pub fn check_applied(catalog: &Catalog, applied: &[AppliedMigration]) -> Result<(), PlanError> {
    for row in applied {
        let migration = catalog
            .get(row.version)
            .ok_or_else(|| PlanError::MissingApplied { version: row.version, name: row.name.clone() })?;
        check_digest(migration, row)?;
    }
    Ok(())
}

fn check_digest(migration: &Migration, row: &AppliedMigration) -> Result<(), PlanError> {
    if migration.digest != row.digest {
        return Err(PlanError::DigestMismatch {
            folder: migration.folder.clone(),
            recorded: row.digest,
            found: migration.digest,
        });
    }
    Ok(())
}

/// The migrations `up` applies, oldest first, up to and including `target` (all when `None`).
pub fn plan_up<'c>(
    catalog: &'c Catalog,
    applied: &[AppliedMigration],
    target: Option<Version>,
) -> Result<Vec<&'c Migration>, PlanError> {
    check_applied(catalog, applied)?;
    if let Some(target) = target
        && catalog.get(target).is_none()
    {
        return Err(PlanError::UnknownTarget(target));
    }
    let latest_applied = applied.iter().map(|row| row.version).max();
    let is_applied = |version| applied.iter().any(|row| row.version == version);
    let mut steps = Vec::new();
    for migration in &catalog.migrations {
        if is_applied(migration.version) {
            continue;
        }
        if let Some(latest) = latest_applied
            && migration.version < latest
        {
            return Err(PlanError::OutOfOrder { folder: migration.folder.clone(), latest_applied: latest });
        }
        if target.is_some_and(|t| migration.version > t) {
            break;
        }
        steps.push(migration);
    }
    Ok(steps)
}

/// The migrations `down` reverts, newest first.
pub fn plan_down<'c>(
    catalog: &'c Catalog,
    applied: &[AppliedMigration],
    target: DownTarget,
) -> Result<Vec<&'c Migration>, PlanError> {
    if let DownTarget::To(version) = target
        && version.0 != 0
        && catalog.get(version).is_none()
    {
        return Err(PlanError::UnknownTarget(version));
    }
    let mut newest_first: Vec<&AppliedMigration> = applied.iter().collect();
    newest_first.sort_by_key(|row| std::cmp::Reverse(row.version));
    let chosen: Vec<&AppliedMigration> = match target {
        DownTarget::Steps(n) => newest_first.into_iter().take(n).collect(),
        DownTarget::To(version) => newest_first.into_iter().take_while(|row| row.version > version).collect(),
    };
    chosen
        .into_iter()
        .map(|row| {
            let migration = catalog
                .get(row.version)
                .ok_or_else(|| PlanError::MissingApplied { version: row.version, name: row.name.clone() })?;
            check_digest(migration, row)?;
            if !migration.has_down() {
                return Err(PlanError::NoDown { folder: migration.folder.clone() });
            }
            Ok(migration)
        })
        .collect()
}

/// Why the history another tool kept cannot be taken over as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TakeOverError {
    #[error("{tool} records no applied migration: there is nothing to stamp")]
    Empty { tool: OtherTool },
    #[error("{tool} recorded {id} as applied, which is not a version number a wasmig folder can start with")]
    NotAVersion { tool: OtherTool, id: String },
    #[error(
        "{tool} recorded {id} as applied, but the project has no migration {id}: add its folder (named \
         {id}_…) with the same SQL first"
    )]
    UnknownVersion { tool: OtherTool, id: String },
    #[error(
        "{tool}'s head revision is {id}, but no migration is named after it: name the folder that holds that \
         revision NNNN_{id}_… (its version, then the revision id)"
    )]
    UnknownRevision { tool: OtherTool, id: String },
    #[error(
        "migration {folder} comes before what {tool} applied last, but {tool} never applied it: apply it with \
         {tool} first, or stamp up to an earlier version with `wasmig stamp VERSION`"
    )]
    NotApplied { tool: OtherTool, folder: String },
}

/// The version `wasmig stamp --from TOOL` stamps up to, from the ids `tool` recorded as
/// applied: every migration up to it must be one the tool applied (for alembic, whose table
/// holds only its head revisions, the migrations named after them and all before).
pub fn take_over(catalog: &Catalog, tool: OtherTool, ids: &[String]) -> Result<Version, TakeOverError> {
    if ids.is_empty() {
        return Err(TakeOverError::Empty { tool });
    }
    if tool.names_revisions() {
        let head = |id: &String| {
            catalog
                .migrations
                .iter()
                .find(|m| m.name == *id || m.name.starts_with(&format!("{id}_")))
                .map(|m| m.version)
                .ok_or_else(|| TakeOverError::UnknownRevision { tool, id: id.clone() })
        };
        return ids.iter().map(head).collect::<Result<Vec<_>, _>>().map(|heads| heads.into_iter().max().unwrap_or(Version(0)));
    }
    let mut applied = Vec::with_capacity(ids.len());
    for id in ids {
        let version = Version::from_digits(id).ok_or_else(|| TakeOverError::NotAVersion { tool, id: id.clone() })?;
        if catalog.get(version).is_none() {
            return Err(TakeOverError::UnknownVersion { tool, id: id.clone() });
        }
        applied.push(version);
    }
    let target = applied.iter().copied().max().unwrap_or(Version(0));
    match catalog.migrations.iter().find(|m| m.version <= target && !applied.contains(&m.version)) {
        Some(gap) => Err(TakeOverError::NotApplied { tool, folder: gap.folder.clone() }),
        None => Ok(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::catalog::{Body, SqlScripts};
    use crate::core::digest::{Content, DigestInput, migration_digest};

    fn migration(version: u128, down: bool) -> Migration {
        let up = format!("SELECT {version};");
        Migration {
            version: Version(version),
            name: format!("m{version}"),
            folder: format!("{version:04}_m{version}"),
            digest: migration_digest(&[DigestInput { name: "up.sql", content: Content::Text, bytes: up.as_bytes() }]),
            body: Body::Sql(SqlScripts { up, down: down.then(String::new), verify: None }),
            needs_backfills: Vec::new(),
            mode: Default::default(),
            files: Default::default(),
        }
    }

    fn catalog(versions: &[u128]) -> Catalog {
        Catalog { migrations: versions.iter().map(|&v| migration(v, true)).collect(), ..Catalog::default() }
    }

    fn applied(catalog: &Catalog, versions: &[u128]) -> Vec<AppliedMigration> {
        versions
            .iter()
            .map(|&v| {
                let m = catalog.get(Version(v)).unwrap();
                AppliedMigration {
                    version: m.version,
                    name: m.name.clone(),
                    kind: crate::project::manifest::Kind::Sql,
                    digest: m.digest,
                    applied_at: String::new(),
                    applied_by: String::new(),
                    duration_ms: 0,
                    signers: String::new(),
                }
            })
            .collect()
    }

    fn versions(steps: &[&Migration]) -> Vec<u128> {
        steps.iter().map(|m| m.version.0).collect()
    }

    #[test]
    fn up_applies_pending_in_order() {
        let c = catalog(&[1, 2, 3]);
        assert_eq!(versions(&plan_up(&c, &applied(&c, &[1]), None).unwrap()), [2, 3]);
    }

    #[test]
    fn up_to_target_stops_there() {
        let c = catalog(&[1, 2, 3]);
        assert_eq!(versions(&plan_up(&c, &[], Some(Version(2))).unwrap()), [1, 2]);
    }

    #[test]
    fn up_with_everything_applied_is_empty() {
        let c = catalog(&[1, 2]);
        assert!(plan_up(&c, &applied(&c, &[1, 2]), None).unwrap().is_empty());
    }

    #[test]
    fn up_to_unknown_target_fails() {
        let c = catalog(&[1, 2]);
        assert_eq!(plan_up(&c, &[], Some(Version(9))).unwrap_err(), PlanError::UnknownTarget(Version(9)));
    }

    #[test]
    fn pending_below_applied_is_out_of_order() {
        let c = catalog(&[1, 2, 3]);
        let error = plan_up(&c, &applied(&c, &[1, 3]), None).unwrap_err();
        assert!(matches!(error, PlanError::OutOfOrder { latest_applied: Version(3), .. }), "{error}");
    }

    #[test]
    fn changed_applied_migration_is_refused_naming_both_digests() {
        let c = catalog(&[1, 2]);
        let mut history = applied(&c, &[1]);
        history[0].digest = format!("blake3:{}", "0".repeat(64)).parse().expect("a digest");
        let error = plan_up(&c, &history, None).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("0001_m1")
                && text.contains("blake3:00")
                && text.contains(&c.migrations[0].digest.to_string())
        );
    }

    #[test]
    fn applied_migration_without_folder_is_refused() {
        let full = catalog(&[1, 2]);
        let history = applied(&full, &[1, 2]);
        let shrunk = catalog(&[1]);
        assert!(matches!(plan_up(&shrunk, &history, None), Err(PlanError::MissingApplied { .. })));
    }

    #[test]
    fn down_steps_reverts_newest_first() {
        let c = catalog(&[1, 2, 3]);
        let history = applied(&c, &[1, 2, 3]);
        assert_eq!(versions(&plan_down(&c, &history, DownTarget::Steps(2)).unwrap()), [3, 2]);
        assert_eq!(versions(&plan_down(&c, &history, DownTarget::Steps(9)).unwrap()), [3, 2, 1]);
    }

    #[test]
    fn down_to_keeps_the_target_applied() {
        let c = catalog(&[1, 2, 3]);
        let history = applied(&c, &[1, 2, 3]);
        assert_eq!(versions(&plan_down(&c, &history, DownTarget::To(Version(1))).unwrap()), [3, 2]);
        assert_eq!(versions(&plan_down(&c, &history, DownTarget::To(Version(0))).unwrap()), [3, 2, 1]);
    }

    #[test]
    fn down_without_down_sql_is_refused_before_anything_runs() {
        let mut c = catalog(&[1, 2]);
        c.migrations[0] = migration(1, false);
        let history = applied(&c, &[1, 2]);
        let error = plan_down(&c, &history, DownTarget::Steps(2)).unwrap_err();
        assert_eq!(error, PlanError::NoDown { folder: "0001_m1".into() });
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn another_tools_versions_are_taken_over_up_to_the_latest() {
        let c = catalog(&[1, 2, 3]);
        assert_eq!(take_over(&c, OtherTool::Dbmate, &ids(&["1", "2"])), Ok(Version(2)));
        let gap = take_over(&c, OtherTool::Sqlx, &ids(&["1", "3"]));
        assert_eq!(gap, Err(TakeOverError::NotApplied { tool: OtherTool::Sqlx, folder: "0002_m2".into() }));
        let unknown = take_over(&c, OtherTool::Goose, &ids(&["1", "7"]));
        assert_eq!(unknown, Err(TakeOverError::UnknownVersion { tool: OtherTool::Goose, id: "7".into() }));
        let dotted = take_over(&c, OtherTool::Flyway, &ids(&["1.1"]));
        assert_eq!(dotted, Err(TakeOverError::NotAVersion { tool: OtherTool::Flyway, id: "1.1".into() }));
        assert_eq!(take_over(&c, OtherTool::Dbmate, &[]), Err(TakeOverError::Empty { tool: OtherTool::Dbmate }));
    }

    #[test]
    fn an_alembic_head_revision_is_found_by_the_migration_named_after_it() {
        let mut c = catalog(&[1, 2, 3]);
        c.migrations[1].name = "ae1027a6acf_add_email".into();
        assert_eq!(take_over(&c, OtherTool::Alembic, &ids(&["ae1027a6acf"])), Ok(Version(2)));
        let unknown = take_over(&c, OtherTool::Alembic, &ids(&["ffff"]));
        assert_eq!(unknown, Err(TakeOverError::UnknownRevision { tool: OtherTool::Alembic, id: "ffff".into() }));
    }
}
