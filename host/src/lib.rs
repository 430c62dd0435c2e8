//! wasmig: database migrations as plain SQL or as sandboxed WebAssembly components.
//!
//! A run reads the project (its catalog of migrations), verifies it against the sum file and
//! the trust policy, connects, takes the migration lock, reads the history, makes a plan and
//! executes each step in one transaction with its history row. Components run in a sandbox
//! that grants them nothing but a SQL handle and `log`, under fuel, memory and time limits.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmig::{Config, Migrator};
//!
//! let config = Config::load(std::path::Path::new("migrations"), None)?;
//! let migrator = Migrator::open(config).await?;
//! let report = migrator.up(None).await?;
//! print!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! The engine is built in layers, each a module of `src/`. A layer uses only the layers above
//! it in this table (the foundation first), and the test `tests/layers.rs` holds the code to
//! it: an import of a later layer, or an import circle, fails it.
//!
//! | layer | modules | owns |
//! | --- | --- | --- |
//! | 1 | `core` | Version, Digest, Identifier/TableName and `quote_ident`, limits, durations and dates, OS user and host, error-chain text |
//! | 2 | `guard` | grants, policy, refusals; PostgreSQL analysis, SQLite authorizer; pure |
//! | 3 | `project` | the files on disk: layout and names, manifest and its `[backfill]`, catalog, sum file, scaffold |
//! | 4 | `trust` | verification against the sum file and the trust policy; signing, keygen |
//! | 5 | `db` | the `Database` trait, a typed `DbError`, the `Dialect`; PostgreSQL (libpq connection strings, TLS, poolers), SQLite, URLs |
//! | 6 | `ledger` | every table the engine owns: history, repairs, backfills, chunks, the lock table; their DDL |
//! | 7 | `sandbox` | the wasmtime engine, component loading and cache, the host interfaces |
//! | 8 | `config` | `wasmig.toml` and the environment, validated into a `Config` |
//! | 9 | `plan`, `report` | the pure plan; plain report data |
//! | 10 | `error` | `Error`, `ErrorKind`, `RunError` |
//! | 11 | `run` | `Session`, the step executor, the backfill runner |
//! | 12 | `migrator`, `rehearsal` | the facade a Rust user and the CLI call; the round trip and the drift check on a scratch database |
//! | 13 | `cli` | the `wasmig` binary: arguments, human and JSON output, over this crate's public API |
//!
//! The public API is what this file exports. The `internals` feature makes the layers'
//! modules reachable for the project's own tests, fuzz targets and benchmarks; it is not
//! part of the API and may change with any release.

// Every type the API names is exported, so that a user can name what they are handed.
#![deny(unnameable_types)]

/// Declares the layers' modules: private, or public (and hidden) with `internals`.
macro_rules! layers {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    )*};
}

layers!(core, guard, project, trust, db, ledger, sandbox, config, plan, report, error, run, migrator, rehearsal);

pub use crate::config::{
    BackupPolicy, BackupSection, BackupWhen, BadBackup, CacheSection, Config, ConfigError, DOTENV_FILE,
    DatabaseSection, Environment, GuardSection, HistorySection, LockModeSetting, LockSection, PoolerSetting,
    ProjectFile, UrlOrigin, default_project_dir,
};
pub use crate::core::digest::BadDigest;
pub use crate::core::limits::{Limit, LimitOverrides, Limits, MAX_HOSTCALL_MIB, MAX_SECONDS, OutOfRange};
pub use crate::core::{
    BadDuration, CiRun, Date, Digest, Human, Identifier, IdentifierError, TableName, Version, parse_duration,
    push_cause,
};
pub use crate::db::{
    Backend, ConnInfoError, ConnectError, ConnectOptions, DatabaseUrl, DbError, DbErrorKind, LockError, ObjectKind,
    PgEnv, PgTarget, Pooler, RootCerts, Schema, SchemaDifference, SchemaObject, ScratchError, SslMode, TlsCheck,
    TlsSetupError, Transport, UnsupportedUrl,
};
pub use crate::error::{Error, ErrorKind, RepairError, RunError};
pub use crate::guard::{Access as TableAccess, BadGrant, Grants, GrantsSection};
pub use crate::ledger::foreign::{ForeignHistoryError, OtherTool};
pub use crate::ledger::{
    AppliedMigration, AuditEntry, BackfillState, BackfillStatus, HistoryError, HistoryTable, LeaseHolder, LockMode,
    Repair, StartedDirection, StartedStep,
};
pub use crate::migrator::{Backfills, Decision, Migrator};
pub use crate::plan::{DownTarget, PlanError, TakeOverError};
pub use crate::project::backfill::{
    BackfillSettings, BackfillSettingsError, Chunking, MAX_PAUSE_MS, MAX_WORKERS, ProjectBackfillSection,
    ThrottleOverrides,
};
pub use crate::project::catalog::{Body, Catalog, CatalogError, ComponentMigration, Migration, SqlScripts, Unrecorded};
pub use crate::project::kept_files::{FileChange, KeptFiles};
pub use crate::project::manifest::{Kind, Manifest, ManifestError, TransactionMode};
pub use crate::project::scaffold::{ScaffoldError, Template};
pub use crate::project::sumfile::{SumFile, SumFileError};
pub use crate::rehearsal::{
    Breakage, Broken, Drift, RoundTrip, ScratchPlace, Stage as RoundTripStage, drift, round_trip,
};
pub use crate::report::preview::{ComponentPreview, GrantLine, LimitsPreview, PlannedStep, Preview, Script, Way};
pub use crate::report::repair::RepairDiff;
pub use crate::report::status::{Finding, FindingClass, State, StatusEntry};
pub use crate::report::{Action, Report, StepReport, millis};
pub use crate::run::events::{BackfillEvent, Backup, Failure, Observer, StepFailure};
pub use crate::sandbox::SandboxError;
pub use crate::trust::signing::SigningError;
pub use crate::trust::verify::{KeySection, MigrationCheck, SignatureCheck, TrustProblem, TrustedKey};
pub use crate::trust::{
    DigestState, SignatureState, SumFileState, TrustConfigError, TrustError, TrustPolicy, TrustReport, TrustSection,
    check as verify_artifacts,
};

/// Writing a new migration's files and a project's `wasmig.toml`.
pub mod scaffold {
    pub use crate::project::scaffold::{
        Created, ScaffoldError, Template, artifact_name, default_crate_dir, init, new_migration,
    };
}

/// Hashing a project into `wasmig.sum`, signing it, and making keys.
pub mod signing {
    pub use crate::trust::signing::*;
}
