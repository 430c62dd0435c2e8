//! [`ProjectFile`]: `wasmig.toml` as written, section by section, before validation.

use serde::Deserialize;

use super::backup::BackupSection;
use crate::core::limits::{LimitOverrides, MAX_SECONDS, OutOfRange, in_range};
use crate::project::backfill::ProjectBackfillSection;
use crate::trust::TrustSection;

/// `wasmig.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub history: HistorySection,
    #[serde(default)]
    pub limits: LimitOverrides,
    #[serde(default)]
    pub lock: LockSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub trust: TrustSection,
    #[serde(default)]
    pub guard: GuardSection,
    #[serde(default)]
    pub backfill: ProjectBackfillSection,
    #[serde(default)]
    pub backup: BackupSection,
}

impl ProjectFile {
    /// Every numeric setting's range, as the README's table of settings gives it.
    pub(super) fn validate_ranges(&self) -> Result<(), OutOfRange> {
        in_range("database.connect_timeout_secs", self.database.connect_timeout_secs, 1, MAX_SECONDS)?;
        in_range("lock.timeout_secs", self.lock.timeout_secs, 0, MAX_SECONDS)?;
        self.limits.validate()?;
        self.backfill.validate()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// PostgreSQL: a least-privilege role the component's statements run as (SET LOCAL ROLE);
    /// the database's own wall behind the guard.
    pub postgres_role: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    /// The limit of one connection attempt.
    pub connect_timeout_secs: Option<u64>,
    /// How long to keep trying a server that is not answering yet (`30s`, `2m`); none by
    /// default, so that a wrong address fails at once.
    pub wait: Option<String>,
    /// `transaction` when the connection goes through a transaction-pooling proxy (PgBouncer's
    /// `pool_mode = transaction`); `none` by default.
    pub pooler: Option<PoolerSetting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolerSetting {
    None,
    Session,
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockModeSetting {
    Advisory,
    Table,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    pub table: Option<String>,
    /// PostgreSQL schema of the history table; several services can share a database by
    /// giving each its own table or schema.
    pub schema: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSection {
    pub timeout_secs: Option<u64>,
    /// `advisory` (PostgreSQL's session advisory lock; SQLite's lock file), the default, or
    /// `table`: a row in a lock table under a lease, for poolers and databases without session
    /// advisory locks.
    pub mode: Option<LockModeSetting>,
    /// `table` mode: how long the lock outlives its holder's last heartbeat (`30s`).
    pub lease: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Where precompiled components are kept; relative to the project folder.
    pub dir: Option<String>,
}

