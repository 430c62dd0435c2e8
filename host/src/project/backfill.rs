//! A backfill's settings: the manifest's `[backfill]` (batch sizes, chunking key, throttling),
//! the project's `[backfill]` defaults in `wasmig.toml`, and command-line overrides, merged
//! into the [`BackfillPlan`] one run follows.

use std::time::Duration;

use serde::Deserialize;

use crate::core::limits::{MAX_CONCURRENT_CALLS, MAX_SECONDS, OutOfRange, in_range};
use crate::core::{Identifier, TableName};
use crate::guard::{Access, Grants, parse_table};

pub const DEFAULT_BATCH_SIZE: u32 = 1000;
/// The most rows one batch may ask for.
pub const MAX_BATCH_SIZE: u64 = 1_000_000;
/// Rows per chunk when the manifest names a key but no `chunk_rows`.
pub const DEFAULT_CHUNK_ROWS: u64 = 100_000;
/// How long a worker's lease on a chunk lasts without a committed batch renewing it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Workers one process may run: each holds a connection and, while it runs a batch, one of
/// the sandbox's instance slots. More throughput than this comes from more processes.
pub const MAX_WORKERS: u32 = MAX_CONCURRENT_CALLS;
/// A halved batch never goes below `batch_size / MIN_BATCH_DIVISOR` unless the manifest says so.
const MIN_BATCH_DIVISOR: u32 = 64;

/// `[backfill]` in `migration.toml`. Serialised as written (absent keys left out), for
/// `wasmig plan`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillSettings {
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// The floor a batch that runs out of fuel or time is halved down to before the backfill
    /// stops with an error; default `batch_size / 64` (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_batch_size: Option<u32>,
    /// The table the backfill walks: with `key`, lets wasmig estimate its size and split it
    /// into chunks that several workers share. It must be granted for reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The column the component's cursor walks (unique, ordered, usually the primary key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Rows per chunk when split by `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// A backfill without `key` cannot be checked for a cursor that moves but never ends; this
    /// bounds the batches one run of it may take (default 10,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batches: Option<u64>,
}

/// Batches one run of a keyless backfill may take unless `max_batches` says otherwise.
pub const DEFAULT_MAX_BATCHES: u64 = 10_000_000;

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

/// Throttling as written in `wasmig.toml`, `migration.toml` or on the command line; absent
/// keys keep the value beneath.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ThrottleOverrides {
    /// A pause after every committed batch.
    pub pause_ms: Option<u64>,
    /// A ceiling on rows per second, per worker (each of a process's `workers` too).
    pub max_rows_per_second: Option<u64>,
    /// PostgreSQL: before each batch, wait while any standby replays more than this far behind.
    pub max_replication_lag_ms: Option<u64>,
    /// How many workers one process runs, each on its own connection and chunk.
    pub workers: Option<u32>,
}

/// The longest pause after a batch and the longest replication lag one may set: an hour.
pub const MAX_PAUSE_MS: u64 = 3_600_000;

impl ThrottleOverrides {
    /// Each throttle's range, wherever it was written.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        in_range("backfill.pause_ms", self.pause_ms, 0, MAX_PAUSE_MS)?;
        in_range("backfill.max_rows_per_second", self.max_rows_per_second, 1, 1_000_000_000)?;
        in_range("backfill.max_replication_lag_ms", self.max_replication_lag_ms, 1, MAX_PAUSE_MS)?;
        in_range("backfill.workers", self.workers, 1, u64::from(MAX_WORKERS))
    }

    /// `self`, with `over`'s settings replacing those it names.
    pub fn then(self, over: &ThrottleOverrides) -> ThrottleOverrides {
        ThrottleOverrides {
            pause_ms: over.pause_ms.or(self.pause_ms),
            max_rows_per_second: over.max_rows_per_second.or(self.max_rows_per_second),
            max_replication_lag_ms: over.max_replication_lag_ms.or(self.max_replication_lag_ms),
            workers: over.workers.or(self.workers),
        }
    }
}

/// `[backfill]` in `wasmig.toml`: the project's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectBackfillSection {
    pub pause_ms: Option<u64>,
    pub max_rows_per_second: Option<u64>,
    pub max_replication_lag_ms: Option<u64>,
    pub workers: Option<u32>,
    /// How long a chunk stays leased to a worker that stopped committing batches.
    pub lease_secs: Option<u64>,
}

impl ProjectBackfillSection {
    pub fn validate(&self) -> Result<(), OutOfRange> {
        self.throttle().validate()?;
        in_range("backfill.lease_secs", self.lease_secs, 1, MAX_SECONDS)
    }

    pub fn throttle(&self) -> ThrottleOverrides {
        ThrottleOverrides {
            pause_ms: self.pause_ms,
            max_rows_per_second: self.max_rows_per_second,
            max_replication_lag_ms: self.max_replication_lag_ms,
            workers: self.workers,
        }
    }
}

/// Why a manifest's `[backfill]` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillSettingsError {
    #[error("backfill.batch_size must be at least 1")]
    ZeroBatchSize,
    #[error("backfill.min_batch_size must be between 1 and backfill.batch_size ({batch_size})")]
    BadFloor { batch_size: u32 },
    #[error("backfill.table and backfill.key go together: name both or neither")]
    TableWithoutKey,
    #[error("backfill.chunk_rows needs backfill.table and backfill.key")]
    ChunksWithoutKey,
    #[error("backfill.chunk_rows must be at least 1")]
    ZeroChunkRows,
    #[error("backfill.workers must be between 1 and {MAX_WORKERS}")]
    BadWorkers,
    #[error("backfill.table {0:?} is not a table name (use table or schema.table: letters, digits, _)")]
    BadTable(String),
    #[error("backfill.key {0:?} is not a column name (letters, digits, _)")]
    BadKey(String),
    #[error("backfill.table {0:?} must also be granted for reading ([grants] read, update or delete)")]
    TableNotGranted(String),
    #[error("{0}")]
    OutOfRange(#[from] OutOfRange),
}

/// How the backfill's table is split into chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunking {
    pub table: TableName,
    pub key: Identifier,
    pub chunk_rows: u64,
}

impl BackfillSettings {
    pub fn validate(&self, grants: &Grants) -> Result<(), BackfillSettingsError> {
        if self.batch_size == 0 {
            return Err(BackfillSettingsError::ZeroBatchSize);
        }
        if self.min_batch_size.is_some_and(|floor| floor == 0 || floor > self.batch_size) {
            return Err(BackfillSettingsError::BadFloor { batch_size: self.batch_size });
        }
        if self.chunk_rows == Some(0) {
            return Err(BackfillSettingsError::ZeroChunkRows);
        }
        if self.workers.is_some_and(|workers| !(1..=MAX_WORKERS).contains(&workers)) {
            return Err(BackfillSettingsError::BadWorkers);
        }
        in_range("backfill.batch_size", Some(self.batch_size), 1, MAX_BATCH_SIZE)?;
        in_range("backfill.chunk_rows", self.chunk_rows, 1, 1_000_000_000_000)?;
        in_range("backfill.max_batches", self.max_batches, 1, 1_000_000_000_000)?;
        self.throttle().validate()?;
        match (&self.table, &self.key) {
            (None, None) if self.chunk_rows.is_some() => Err(BackfillSettingsError::ChunksWithoutKey),
            (None, None) => Ok(()),
            (Some(_), None) | (None, Some(_)) => Err(BackfillSettingsError::TableWithoutKey),
            (Some(table), Some(key)) => {
                let parsed =
                    parse_table("backfill", table).map_err(|_| BackfillSettingsError::BadTable(table.clone()))?;
                Identifier::new(key).map_err(|_| BackfillSettingsError::BadKey(key.clone()))?;
                // Unqualified names on both sides compare equal whatever the backend's default schema.
                if !grants.allows(Access::Read, &parsed, "") {
                    return Err(BackfillSettingsError::TableNotGranted(table.clone()));
                }
                Ok(())
            }
        }
    }

    /// The throttling this manifest asks for.
    pub fn throttle(&self) -> ThrottleOverrides {
        ThrottleOverrides {
            pause_ms: self.pause_ms,
            max_rows_per_second: self.max_rows_per_second,
            max_replication_lag_ms: self.max_replication_lag_ms,
            workers: self.workers,
        }
    }

    /// The smallest batch halving may reach.
    pub fn floor(&self) -> u32 {
        self.min_batch_size.unwrap_or_else(|| self.batch_size.div_ceil(MIN_BATCH_DIVISOR)).max(1)
    }

    /// The chunking, when the manifest names a table and key (validated with the manifest).
    pub fn chunking(&self) -> Option<Chunking> {
        let table = parse_table("backfill", self.table.as_deref()?).ok()?;
        let key = Identifier::new(self.key.as_deref()?).ok()?;
        Some(Chunking { table, key, chunk_rows: self.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS) })
    }
}

/// Throttling as one run applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub pause: Duration,
    pub max_rows_per_second: Option<u64>,
    pub max_replication_lag: Option<Duration>,
}

impl From<ThrottleOverrides> for Throttle {
    fn from(settings: ThrottleOverrides) -> Self {
        Throttle {
            pause: Duration::from_millis(settings.pause_ms.unwrap_or(0)),
            max_rows_per_second: settings.max_rows_per_second.filter(|&rate| rate > 0),
            max_replication_lag: settings.max_replication_lag_ms.map(Duration::from_millis),
        }
    }
}

/// Everything one run of one backfill follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPlan {
    pub batch_size: u32,
    pub min_batch_size: u32,
    pub chunking: Option<Chunking>,
    pub throttle: Throttle,
    pub lease: Duration,
    /// Workers this process runs at once (at least 1); more than one needs chunks to share.
    pub workers: u32,
    /// Batches one run may take when there is no key to check the cursor against.
    pub max_batches: u64,
}

impl BackfillPlan {
    /// Merges the project's defaults, the manifest and the command line, in that order.
    ///
    /// A batch that outlives its worker's lease is not done twice (its commit checks the lease)
    /// but may be wasted, so the lease should exceed a batch's usual time; it also bounds how
    /// long a killed worker's chunk waits before another worker takes it over.
    pub fn new(
        project: &ProjectBackfillSection,
        manifest: &BackfillSettings,
        command_line: &ThrottleOverrides,
    ) -> BackfillPlan {
        let throttle = project.throttle().then(&manifest.throttle()).then(command_line);
        let lease = project.lease_secs.map_or(DEFAULT_LEASE, Duration::from_secs).max(Duration::from_secs(1));
        BackfillPlan {
            batch_size: manifest.batch_size,
            min_batch_size: manifest.floor(),
            chunking: manifest.chunking(),
            throttle: throttle.into(),
            lease,
            workers: throttle.workers.unwrap_or(1).clamp(1, MAX_WORKERS),
            max_batches: manifest.max_batches.unwrap_or(DEFAULT_MAX_BATCHES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::GrantsSection;

    fn settings(text: &str) -> BackfillSettings {
        toml::from_str(text).unwrap()
    }

    fn grants(read: &[&str]) -> Grants {
        Grants::from_section(&GrantsSection {
            read: read.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn floor_defaults_to_a_sixty_fourth_of_the_batch() {
        assert_eq!(settings("batch_size = 1000").floor(), 16);
        assert_eq!(settings("batch_size = 10").floor(), 1);
        assert_eq!(settings("batch_size = 1000\nmin_batch_size = 100").floor(), 100);
    }

    #[test]
    fn chunking_needs_a_granted_table_and_a_key() {
        let chunked = settings("table = \"users\"\nkey = \"id\"\nchunk_rows = 50");
        assert_eq!(chunked.validate(&grants(&["users"])), Ok(()));
        assert_eq!(chunked.chunking().map(|c| c.chunk_rows), Some(50));
        assert_eq!(chunked.validate(&grants(&["orders"])), Err(BackfillSettingsError::TableNotGranted("users".into())));
        assert_eq!(
            settings("table = \"users\"").validate(&grants(&["users"])),
            Err(BackfillSettingsError::TableWithoutKey)
        );
        assert_eq!(settings("chunk_rows = 5").validate(&grants(&[])), Err(BackfillSettingsError::ChunksWithoutKey));
        assert_eq!(
            settings("table = \"users\"\nkey = \"id; --\"").validate(&grants(&["users"])),
            Err(BackfillSettingsError::BadKey("id; --".into()))
        );
        assert_eq!(
            settings("min_batch_size = 0").validate(&grants(&[])),
            Err(BackfillSettingsError::BadFloor { batch_size: 1000 })
        );
    }

    #[test]
    fn workers_stay_within_what_one_sandbox_runs_at_once() {
        assert_eq!(settings("workers = 0").validate(&grants(&[])), Err(BackfillSettingsError::BadWorkers));
        assert_eq!(settings("workers = 65").validate(&grants(&[])), Err(BackfillSettingsError::BadWorkers));
        assert_eq!(settings("workers = 64").validate(&grants(&[])), Ok(()));
        // wasmig.toml's [backfill] workers out of range is a project error naming the key; the
        // plan still caps whatever reaches it.
        let project = ProjectBackfillSection { workers: Some(500), ..Default::default() };
        let error = project.validate().unwrap_err();
        assert_eq!(error.to_string(), "backfill.workers = 500 is out of range: it takes 1 to 64");
        assert_eq!(BackfillPlan::new(&project, &settings(""), &Default::default()).workers, MAX_WORKERS);
        let error = settings("pause_ms = 18446744073709551615").validate(&grants(&[])).unwrap_err();
        assert!(error.to_string().contains("backfill.pause_ms"), "{error}");
    }

    #[test]
    fn command_line_beats_manifest_beats_project() {
        let project = ProjectBackfillSection { pause_ms: Some(5), max_rows_per_second: Some(10), ..Default::default() };
        let manifest = settings("pause_ms = 7");
        let cli = ThrottleOverrides { max_rows_per_second: Some(99), ..Default::default() };
        let plan = BackfillPlan::new(&project, &manifest, &cli);
        assert_eq!(plan.throttle.pause, Duration::from_millis(7));
        assert_eq!(plan.throttle.max_rows_per_second, Some(99));
        assert_eq!(plan.lease, DEFAULT_LEASE);
        assert_eq!(plan.workers, 1);
        let cli = ThrottleOverrides { workers: Some(3), ..Default::default() };
        assert_eq!(BackfillPlan::new(&project, &settings("workers = 2"), &cli).workers, 3);
        assert_eq!(BackfillPlan::new(&project, &settings("workers = 2"), &Default::default()).workers, 2);
    }
}
