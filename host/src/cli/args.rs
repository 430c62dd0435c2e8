//! Command-line arguments (clap): the commands, their flags and how they parse. What each
//! command needs before it runs is `route.rs`; running them is `commands.rs`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wasmig::{Decision, Digest, MAX_PAUSE_MS, MAX_WORKERS, OtherTool, ThrottleOverrides, Version};

pub use crate::output::Format;

#[derive(Debug, Parser)]
#[command(name = "wasmig", version, about = "Database migrations as plain SQL or sandboxed WebAssembly components")]
pub struct Args {
    /// Show debug output (component loads, fuel used per call).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// Show warnings and errors only.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// human: reports on stdout, progress and errors on stderr. json: JSON lines on stdout
    /// (each with "schema": 1 and an "event"), ending with one "result" object; see
    /// docs/json.md.
    #[arg(long, value_enum, global = true, default_value = "human")]
    pub format: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// The project folder, for every command but `keygen`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProjectArgs {
    /// The project folder (holding wasmig.toml). Default: the current folder if it holds a
    /// wasmig.toml, else ./migrations.
    #[arg(long, short = 'p', global = true, env = "WASMIG_PROJECT")]
    pub project: Option<PathBuf>,
}

/// How to reach the database, for the commands that use one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DatabaseArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// The database: a postgres:// URL, a libpq key=value string (host=… dbname=…), or
    /// sqlite:PATH. Default: DATABASE_URL (the environment's, else ./.env's), then [database]
    /// url in wasmig.toml, then the PG* variables.
    #[arg(long, short = 'd', global = true)]
    pub database: Option<String>,

    /// Keep trying a database that is not answering yet for this long (500ms, 30s, 2m), with a
    /// line per attempt. Default: [database] wait, else try once.
    #[arg(long, value_name = "DURATION", global = true, value_parser = duration)]
    pub wait_for_db: Option<Duration>,

    /// Wait at most this long for the migration lock another run holds. Default:
    /// [lock] timeout_secs, else 10m.
    #[arg(long, value_name = "DURATION", global = true, value_parser = duration)]
    pub lock_timeout: Option<Duration>,

    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrustArgs {
    /// A TOML file whose [trust] section replaces wasmig.toml's: keep production's trust policy
    /// outside the checkout it judges.
    #[arg(long, global = true, env = "WASMIG_TRUST_FILE")]
    pub trust_file: Option<PathBuf>,
}

/// A duration flag, at most a day like every time setting.
fn duration(text: &str) -> Result<Duration, String> {
    let duration = wasmig::parse_duration(text).map_err(|error| error.to_string())?;
    if duration.as_secs() > wasmig::MAX_SECONDS {
        return Err(format!("{text} is out of range: at most 24h"));
    }
    Ok(duration)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create wasmig.toml in the project folder.
    Init {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Create the next migration folder.
    New {
        /// The migration's name, e.g. add_email_index.
        name: String,
        /// A plain SQL migration (up.sql, down.sql, verify.sql). The default.
        #[arg(long, conflicts_with = "rust")]
        sql: bool,
        /// A component migration, with a Rust guest crate to build it from.
        #[arg(long)]
        rust: bool,
        /// Where to create the Rust guest crate. Default: plugins/<name> beside the project
        /// folder (in the folder above it).
        #[arg(long, requires = "rust")]
        crate_dir: Option<PathBuf>,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Show every migration's state and backfill progress.
    Status {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Show the history table, with signers and recorded repairs.
    History {
        /// Show the audit trail instead: every up, down, stamp, repair and backfill run, with
        /// who (OS account, database role, host, CI job), when, the digest and the outcome.
        #[arg(long)]
        audit: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Mark the pending migrations up to VERSION as applied without running them, for a
    /// database that already has their schema (a baseline); or, with --from, those another
    /// tool had applied, read from its own history table. Recorded in the audit trail.
    Stamp {
        #[arg(required_unless_present = "from")]
        version: Option<Version>,
        /// Take over the history this tool kept in its own table: alembic (alembic_version;
        /// name the folder of its head revision NNNN_<revision>_…), sqlx (_sqlx_migrations),
        /// goose (goose_db_version), dbmate (schema_migrations), flyway (flyway_schema_history).
        #[arg(long, conflicts_with = "version", value_parser = clap::builder::PossibleValuesParser::new(["alembic", "sqlx", "goose", "dbmate", "flyway"]))]
        from: Option<String>,
        /// Why; kept in the audit trail.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Show what `up` would do, step by step: each migration's full SQL, or a component's
    /// grants, limits and backfill settings, and its transaction mode. Changes nothing.
    Plan {
        /// Stop after this version.
        #[arg(long)]
        to: Option<Version>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// The deploy gate: exit non-zero, with a named code, when an applied migration changed,
    /// went missing or sits above a pending one (6), or a backfill is not done (10); with
    /// --fail-on-pending, also when a migration is pending (11). Changes nothing.
    Check {
        /// Fail when a migration is not applied yet.
        #[arg(long)]
        fail_on_pending: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply pending migrations (after resuming unfinished backfills).
    Up {
        /// Stop after this version.
        #[arg(long)]
        to: Option<Version>,
        /// Show the plan (as `wasmig plan` does) without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Apply the schema steps only and leave backfills to `wasmig backfill run` workers
        /// (exit 0; `wasmig check` then reports them until they are done).
        #[arg(long)]
        no_backfill: bool,
        #[command(flatten)]
        throttle: ThrottleArgs,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Watch and steer backfills: status, run (one more worker), pause, resume, retry, cancel.
    Backfill {
        #[command(subcommand)]
        action: BackfillAction,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revert applied migrations, newest first (default: the latest one).
    Down {
        /// Revert everything above this version (0 reverts all).
        #[arg(long, conflicts_with = "steps")]
        to: Option<Version>,
        /// Revert this many migrations.
        #[arg(long)]
        steps: Option<usize>,
        /// Show the steps (each down.sql in full) without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Run every applied migration's verify again, read-only.
    Verify {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Show what each component migration may touch (its grants) and its limits.
    Grants {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Write wasmig.sum: the blake3 digest of every migration and of the whole list.
    Hash {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Generate a minisign key pair for signing wasmig.sum.
    Keygen {
        /// Where to write the secret key (mode 0600); the public key goes to PATH.pub.
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Sign wasmig.sum, writing wasmig.sum.<KEYID>.minisig beside it.
    Sign {
        /// A file holding the secret key.
        #[arg(long, conflicts_with = "key_env", required_unless_present = "key_env")]
        key: Option<PathBuf>,
        /// An environment variable holding the secret key (a CI secret).
        #[arg(long)]
        key_env: Option<String>,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Check the migrations against wasmig.sum and its signatures against the trust policy
    /// (no database needed). Exits 9 when they fail.
    VerifyArtifacts {
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// The round trip, on a scratch database: apply each migration, revert it and apply it
    /// again, comparing the schema each time; then every verify, down to nothing and up
    /// again. Names the first migration that breaks it and how (exit 12). Leaves the target
    /// untouched.
    Test {
        #[command(flatten)]
        scratch: ScratchArgs,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Compare the database's schema (tables, columns and types, indexes, constraints,
    /// triggers, sequences, functions, types, extensions, grants) with what its applied
    /// migrations build on a scratch database; print the differences and
    /// exit 13 when there are any. Changes nothing.
    Drift {
        #[command(flatten)]
        scratch: ScratchArgs,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Record a reviewed decision about a migration: accept its changed files' new digest, or
    /// settle a step that was interrupted outside a transaction (retry it, or mark it done).
    #[command(group = clap::ArgGroup::new("decision").required(true).args(["diff", "accept_digest", "retry", "mark_done"]))]
    Repair {
        version: Version,
        /// Show what changed in the migration's files since it was applied, file by file, and
        /// the digest to accept; records nothing.
        #[arg(long)]
        diff: bool,
        /// The digest the files must hash to now (shown by `--diff` and `wasmig status`).
        #[arg(long)]
        accept_digest: Option<Digest>,
        /// An interrupted step (transactional = false): clear it so that `wasmig up` (or
        /// `down`) runs it again, once you have undone what it left (an INVALID index, say).
        #[arg(long)]
        retry: bool,
        /// An interrupted step: record it as done (applied, or reverted), once you have checked
        /// that it completed.
        #[arg(long)]
        mark_done: bool,
        /// Why; kept in the repairs that `wasmig history` shows.
        #[arg(long, required_unless_present = "diff")]
        reason: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillAction {
    /// Every backfill's progress: state, rows done of the estimate, chunks, rate and ETA.
    Status {
        /// Only this migration's backfill.
        version: Option<Version>,
    },
    /// Work on an applied migration's backfill until it is done or paused. Run it on several
    /// machines at once to share a chunked backfill.
    Run {
        version: Version,
        #[command(flatten)]
        throttle: ThrottleArgs,
    },
    /// Pause a backfill: its workers stop after their current batch; `up` leaves it alone.
    Pause { version: Version },
    /// Let a paused backfill go on (then `wasmig backfill run` or `wasmig up` continues it).
    Resume { version: Version },
    /// Let a failed (or cancelled) backfill go on from its last committed batch, once what
    /// made it fail is fixed (then `wasmig backfill run` or `wasmig up` continues it).
    Retry { version: Version },
    /// Give a backfill up: its workers stop after their current batch and nothing runs it
    /// again until `retry`; `wasmig check` keeps reporting it.
    Cancel { version: Version },
}

/// What `stamp` marks as applied.
pub enum StampTarget {
    UpTo(Version),
    From(OtherTool),
}

/// Where `test` and `drift` rehearse.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScratchArgs {
    /// An empty database to rehearse in, refused unless empty; it is filled, then emptied again
    /// (every migration reverted, wasmig's tables dropped) and left in place. Default: a database made on the target's server (CREATE DATABASE; the role
    /// needs CREATEDB) and dropped after, or a temporary file for SQLite.
    #[arg(long, value_name = "URL")]
    pub scratch_url: Option<String>,
    /// Leave the scratch database as the rehearsal left it, neither emptied nor dropped, and
    /// print where it is: to look into a broken round trip at the state it broke in.
    #[arg(long)]
    pub keep: bool,
}

/// What `repair` records.
pub enum RepairDecision {
    AcceptDigest(Digest),
    Interrupted(Decision),
}

/// Throttling for this run; beats wasmig.toml and the migration's manifest.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ThrottleArgs {
    /// Pause after every committed batch, in milliseconds (0 to 3600000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_PAUSE_MS))]
    pause_ms: Option<u64>,
    /// At most this many rows per second, per worker (1 to 1000000000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    max_rows_per_second: Option<u64>,
    /// PostgreSQL: wait before each batch while a standby replays further behind than this
    /// many milliseconds (1 to 3600000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_PAUSE_MS))]
    max_replication_lag_ms: Option<u64>,
    /// Run this many workers in this process, each on its own connection and chunk
    /// (a chunked backfill on PostgreSQL; SQLite runs one writer at a time); at most 64.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WORKERS)))]
    workers: Option<u32>,
}

impl From<ThrottleArgs> for ThrottleOverrides {
    fn from(args: ThrottleArgs) -> Self {
        ThrottleOverrides {
            pause_ms: args.pause_ms,
            max_rows_per_second: args.max_rows_per_second,
            max_replication_lag_ms: args.max_replication_lag_ms,
            workers: args.workers,
        }
    }
}

pub fn init_logging(verbose: bool, quiet: bool) {
    let default = if verbose {
        "wasmig=debug,info"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMIG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a CI log or a file gets plain text, and
    // NO_COLOR (https://no-color.org) turns it off everywhere.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .init();
}

impl Command {
    /// The command's name, as the `result` object gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::New { .. } => "new",
            Command::Status { .. } => "status",
            Command::History { .. } => "history",
            Command::Stamp { .. } => "stamp",
            Command::Plan { .. } => "plan",
            Command::Check { .. } => "check",
            Command::Up { .. } => "up",
            Command::Backfill { action, .. } => match action {
                BackfillAction::Status { .. } => "backfill status",
                BackfillAction::Run { .. } => "backfill run",
                BackfillAction::Pause { .. } => "backfill pause",
                BackfillAction::Resume { .. } => "backfill resume",
                BackfillAction::Retry { .. } => "backfill retry",
                BackfillAction::Cancel { .. } => "backfill cancel",
            },
            Command::Down { .. } => "down",
            Command::Verify { .. } => "verify",
            Command::Grants { .. } => "grants",
            Command::Hash { .. } => "hash",
            Command::Keygen { .. } => "keygen",
            Command::Sign { .. } => "sign",
            Command::VerifyArtifacts { .. } => "verify-artifacts",
            Command::Repair { .. } => "repair",
            Command::Test { .. } => "test",
            Command::Drift { .. } => "drift",
        }
    }

    /// The project folder given (`--project`, `WASMIG_PROJECT`); `keygen` has none.
    pub fn project(&self) -> Option<PathBuf> {
        let project = match self {
            Command::Keygen { .. } => return None,
            Command::Init { project }
            | Command::New { project, .. }
            | Command::Grants { project }
            | Command::Hash { project }
            | Command::Sign { project, .. }
            | Command::VerifyArtifacts { project, .. } => project,
            Command::Status { db }
            | Command::History { db, .. }
            | Command::Stamp { db, .. }
            | Command::Plan { db, .. }
            | Command::Check { db, .. }
            | Command::Up { db, .. }
            | Command::Backfill { db, .. }
            | Command::Down { db, .. }
            | Command::Verify { db }
            | Command::Repair { db, .. }
            | Command::Test { db, .. }
            | Command::Drift { db, .. } => &db.project,
        };
        project.project.clone()
    }
}
