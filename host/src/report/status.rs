//! Where each migration stands ([`StatusEntry`], for `wasmig status`), and what of that a
//! deploy gate refuses ([`Finding`], for `wasmig check`). Pure functions of the catalog, the
//! history and the backfills' progress.

use serde::Serialize;

use crate::core::{Digest, Version};
use crate::ledger::{AppliedMigration, BackfillState, BackfillStatus, StartedDirection, StartedStep};
use crate::project::catalog::Catalog;
use crate::project::manifest::Kind;

/// Where a migration stands, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Pending,
    Applied {
        applied_at: String,
    },
    /// Applied, but the files changed since (invariant 5).
    Changed {
        applied_at: String,
        #[serde(rename = "recorded_digest")]
        recorded: Digest,
        #[serde(rename = "digest")]
        found: Digest,
    },
    /// Applied, but its folder is gone.
    Missing {
        applied_at: String,
    },
    /// Its step ran outside a transaction and did not finish (`up` refuses to go on until
    /// `wasmig repair` records what a person decided).
    Interrupted {
        direction: StartedDirection,
        started_at: String,
        started_by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEntry {
    pub version: Version,
    #[serde(rename = "migration")]
    pub folder: String,
    pub kind: Kind,
    #[serde(flatten)]
    pub state: State,
    /// Whether the migration's manifest declares a backfill.
    pub has_backfill: bool,
    pub backfill: Option<BackfillStatus>,
}

/// Every migration in the project or the history, with its state, by version.
pub fn status_of(
    catalog: &Catalog,
    applied: &[AppliedMigration],
    backfills: &[BackfillStatus],
    interrupted: &[StartedStep],
) -> Vec<StatusEntry> {
    let backfill_of = |version| backfills.iter().find(|b| b.version == version).cloned();
    let interrupted_state = |version| {
        interrupted.iter().find(|step| step.version == version).map(|step| State::Interrupted {
            direction: step.direction,
            started_at: step.started_at.clone(),
            started_by: step.started_by.clone(),
        })
    };
    let mut entries: Vec<StatusEntry> = catalog
        .migrations
        .iter()
        .map(|migration| {
            let row = applied.iter().find(|row| row.version == migration.version);
            let state = match interrupted_state(migration.version) {
                Some(interrupted) => interrupted,
                None => match row {
                None => State::Pending,
                Some(row) if row.digest != migration.digest => State::Changed {
                    applied_at: row.applied_at.clone(),
                    recorded: row.digest,
                    found: migration.digest,
                },
                Some(row) => State::Applied { applied_at: row.applied_at.clone() },
                },
            };
            StatusEntry {
                version: migration.version,
                folder: migration.folder.clone(),
                kind: migration.kind(),
                state,
                has_backfill: migration.backfill().is_some(),
                backfill: backfill_of(migration.version),
            }
        })
        .collect();
    for row in applied.iter().filter(|row| catalog.get(row.version).is_none()) {
        entries.push(StatusEntry {
            version: row.version,
            folder: format!("{}_{}", row.version, row.name),
            kind: row.kind,
            state: State::Missing { applied_at: row.applied_at.clone() },
            has_backfill: false,
            backfill: backfill_of(row.version),
        });
    }
    entries.sort_by_key(|entry| entry.version);
    entries
}

/// Something a deploy gate refuses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Finding {
    /// Not applied yet (refused only when the gate is asked to).
    Pending { version: Version, migration: String },
    /// Applied, but its files changed since.
    Changed { version: Version, migration: String, recorded_digest: Digest, digest: Digest },
    /// Applied, but its folder is gone.
    Missing { version: Version, migration: String },
    /// Pending below a migration that is already applied: `up` would refuse it.
    OutOfOrder { version: Version, migration: String, latest_applied: Version },
    /// A step run outside a transaction did not finish.
    Interrupted { version: Version, migration: String, direction: StartedDirection, started_at: String },
    /// Applied, and its backfill is not done: `running` (unfinished or interrupted),
    /// `paused`, `failed`, `cancelled`, or `not_started`.
    Backfill { version: Version, migration: String, state: String },
}

/// The class of a finding, which names the gate's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingClass {
    /// History and files disagree.
    Integrity,
    /// A backfill is not done.
    Backfill,
    /// A migration waits to be applied.
    Pending,
}

impl Finding {
    pub fn version(&self) -> Version {
        match self {
            Finding::Pending { version, .. }
            | Finding::Changed { version, .. }
            | Finding::Missing { version, .. }
            | Finding::OutOfOrder { version, .. }
            | Finding::Interrupted { version, .. }
            | Finding::Backfill { version, .. } => *version,
        }
    }

    pub fn class(&self) -> FindingClass {
        match self {
            Finding::Changed { .. }
            | Finding::Missing { .. }
            | Finding::OutOfOrder { .. }
            | Finding::Interrupted { .. } => FindingClass::Integrity,
            Finding::Backfill { .. } => FindingClass::Backfill,
            Finding::Pending { .. } => FindingClass::Pending,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Pending { migration, .. } => write!(f, "{migration} is pending (`wasmig up` applies it)"),
            Finding::Changed { migration, recorded_digest, digest, .. } => write!(
                f,
                "{migration} changed since it was applied (recorded {recorded_digest}, files {digest}); \
                 restore its files, or record the change with `wasmig repair`"
            ),
            Finding::Missing { migration, .. } => {
                write!(f, "{migration} is applied but its folder is missing from the project")
            }
            Finding::OutOfOrder { migration, latest_applied, .. } => write!(
                f,
                "{migration} is pending below the applied {latest_applied}; `wasmig up` refuses it (renumber it)"
            ),
            Finding::Interrupted { migration, direction, started_at, version } => write!(
                f,
                "{migration}'s {} step, run outside a transaction, started at {started_at} and did not finish; \
                 check the database, then `wasmig repair {version} --retry` or `--mark-done`",
                direction.as_str()
            ),
            Finding::Backfill { migration, state, version } => {
                let next = match state.as_str() {
                    "paused" => format!("`wasmig backfill resume {version}` lets it go on"),
                    "failed" => format!(
                        "`wasmig backfill status {version}` shows why; once that is fixed, \
                         `wasmig backfill retry {version}` lets it go on"
                    ),
                    "cancelled" => {
                        format!("`wasmig backfill retry {version}` restarts it, or revert the migration")
                    }
                    "not_started" => format!("`wasmig backfill run {version}` starts it"),
                    _ => format!("`wasmig backfill run {version}` works on it"),
                };
                write!(f, "{migration}'s backfill is {}; {next}", state.replace('_', " "))
            }
        }
    }
}

/// What of `entries` a deploy gate refuses, in version order; pending migrations only when
/// `pending` asks for them.
pub fn findings(entries: &[StatusEntry], pending: bool) -> Vec<Finding> {
    let latest_applied = entries.iter().filter(|e| e.state != State::Pending).map(|e| e.version).max();
    let mut found = Vec::new();
    for entry in entries {
        let (version, migration) = (entry.version, entry.folder.clone());
        match &entry.state {
            State::Pending => match latest_applied {
                Some(latest) if latest > version => {
                    found.push(Finding::OutOfOrder { version, migration, latest_applied: latest })
                }
                _ if pending => found.push(Finding::Pending { version, migration }),
                _ => {}
            },
            State::Changed { recorded, found: digest, .. } => found.push(Finding::Changed {
                version,
                migration,
                recorded_digest: *recorded,
                digest: *digest,
            }),
            State::Missing { .. } => found.push(Finding::Missing { version, migration }),
            State::Interrupted { direction, started_at, .. } => found.push(Finding::Interrupted {
                version,
                migration,
                direction: *direction,
                started_at: started_at.clone(),
            }),
            State::Applied { .. } => {
                let state = match &entry.backfill {
                    Some(backfill) if backfill.state == BackfillState::Done => None,
                    Some(backfill) => Some(backfill.state.to_string()),
                    None if entry.has_backfill => Some("not_started".to_owned()),
                    None => None,
                };
                if let Some(state) = state {
                    found.push(Finding::Backfill { version, migration, state });
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u128, state: State, has_backfill: bool, backfill: Option<BackfillState>) -> StatusEntry {
        StatusEntry {
            version: Version(version),
            folder: format!("{version:04}_m"),
            kind: Kind::Sql,
            state,
            has_backfill,
            backfill: backfill.map(|state| BackfillStatus {
                version: Version(version),
                state,
                rows_estimate: None,
                rows_done: 0,
                batches: 0,
                chunks: 1,
                chunks_done: 0,
                chunks_leased: 0,
                workers: Vec::new(),
                started_ms: 0,
                finished_ms: None,
                rows_per_second: None,
                error: None,
            }),
        }
    }

    fn applied() -> State {
        State::Applied { applied_at: String::new() }
    }

    #[test]
    fn a_clean_database_passes_and_pending_counts_only_when_asked() {
        let entries = [entry(1, applied(), false, None), entry(2, State::Pending, false, None)];
        assert!(findings(&entries, false).is_empty());
        assert_eq!(findings(&entries, true)[0].class(), FindingClass::Pending);
    }

    #[test]
    fn every_problem_is_found_with_its_class() {
        let digest = crate::core::digest::migration_digest(&[]);
        let entries = [
            entry(1, State::Pending, false, None),
            entry(2, State::Changed { applied_at: String::new(), recorded: digest, found: digest }, false, None),
            entry(3, State::Missing { applied_at: String::new() }, false, None),
            entry(4, applied(), true, Some(BackfillState::Paused)),
            entry(5, applied(), true, None),
            entry(6, applied(), true, Some(BackfillState::Done)),
        ];
        let classes: Vec<(u128, FindingClass)> =
            findings(&entries, false).iter().map(|f| (f.version().0, f.class())).collect();
        assert_eq!(
            classes,
            [
                (1, FindingClass::Integrity),
                (2, FindingClass::Integrity),
                (3, FindingClass::Integrity),
                (4, FindingClass::Backfill),
                (5, FindingClass::Backfill)
            ]
        );
    }
}
