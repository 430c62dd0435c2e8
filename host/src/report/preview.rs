//! What a run would do, step by step, for `wasmig plan` and `--dry-run`: each migration with
//! everything a reviewer needs to judge it before it runs — the full SQL of a SQL migration,
//! the grants, limits and backfill settings of a component, and whether it runs in one
//! transaction. Plain data, serialised as `docs/json.md` describes.

use serde::Serialize;

use crate::core::limits::Limits;
use crate::core::{Digest, Version};
use crate::project::backfill::BackfillSettings;
use crate::project::catalog::{Body, Migration};
use crate::project::manifest::{Kind, TransactionMode};

/// Which way a planned run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    Up,
    Down,
}

/// The steps a run would take, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub direction: Way,
    /// Backfills an earlier run left unfinished, which `up` finishes before applying anything.
    pub resumes: Vec<Version>,
    pub steps: Vec<PlannedStep>,
}

/// One migration a run would apply or revert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    pub version: Version,
    pub migration: String,
    pub kind: Kind,
    pub digest: Digest,
    /// Whether the step and its history row commit in one transaction.
    pub transactional: bool,
    /// The script that runs (`up.sql` or `down.sql`) and its text, for a SQL migration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<Script>,
    /// `verify.sql`, run in the same transaction after `up.sql`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Script>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentPreview>,
    /// Earlier migrations whose backfills must be finished first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_backfills: Vec<Version>,
    /// Why `[backup]` backs the database up before this step; `None` when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Script {
    pub file: &'static str,
    pub text: String,
}

/// What a component may touch and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentPreview {
    pub file: String,
    /// The export that runs: `up` or `down` (then `verify`, and `backfill` when declared).
    pub calls: Vec<&'static str>,
    /// Tables by grant key (`read`, `insert`, `update`, `delete`, `ddl`).
    pub grants: Vec<GrantLine>,
    pub limits: LimitsPreview,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantLine {
    pub grant: &'static str,
    pub tables: Vec<String>,
}

/// The limits a call runs under, in the units and names of `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitsPreview {
    pub fuel: u64,
    pub memory_mib: u64,
    pub timeout_secs: u64,
    pub hostcall_mib: u64,
    pub statement_timeout_secs: u64,
    pub lock_timeout_secs: u64,
    pub result_rows: u64,
    pub result_mib: u64,
}

impl From<&Limits> for LimitsPreview {
    fn from(limits: &Limits) -> Self {
        const MIB: u64 = 1024 * 1024;
        LimitsPreview {
            fuel: limits.fuel,
            memory_mib: limits.memory_bytes / MIB,
            timeout_secs: limits.timeout.as_secs(),
            hostcall_mib: limits.hostcall_bytes / MIB,
            statement_timeout_secs: limits.statement_timeout.as_secs(),
            lock_timeout_secs: limits.lock_timeout.as_secs(),
            result_rows: limits.result_rows,
            result_mib: limits.result_bytes / MIB,
        }
    }
}

impl PlannedStep {
    /// `migration` as a run going `way` would take it, under the project's `limits`.
    pub fn of(migration: &Migration, way: Way, limits: &Limits) -> PlannedStep {
        let (sql, verify, component) = match &migration.body {
            Body::Sql(scripts) => match way {
                Way::Up => (
                    Some(Script { file: "up.sql", text: scripts.up.clone() }),
                    scripts.verify.clone().map(|text| Script { file: "verify.sql", text }),
                    None,
                ),
                Way::Down => (scripts.down.clone().map(|text| Script { file: "down.sql", text }), None, None),
            },
            Body::Component(component) => {
                let manifest = &component.manifest;
                let calls = match (way, manifest.backfill.is_some()) {
                    (Way::Up, true) => vec!["up", "backfill", "verify"],
                    (Way::Up, false) => vec!["up", "verify"],
                    (Way::Down, _) => vec!["down"],
                };
                let grants = component
                    .grants
                    .describe()
                    .into_iter()
                    .map(|(grant, tables)| GrantLine { grant, tables })
                    .collect();
                let preview = ComponentPreview {
                    file: manifest.component_file().to_owned(),
                    calls,
                    grants,
                    limits: LimitsPreview::from(&limits.with(&manifest.limits)),
                    backfill: manifest.backfill.clone().filter(|_| way == Way::Up),
                };
                (None, None, Some(preview))
            }
        };
        PlannedStep {
            version: migration.version,
            migration: migration.folder.clone(),
            kind: migration.kind(),
            digest: migration.digest,
            transactional: migration.mode == TransactionMode::OneTransaction,
            sql,
            verify,
            component,
            needs_backfills: if way == Way::Up { migration.needs_backfills.clone() } else { Vec::new() },
            backup: None,
        }
    }
}
