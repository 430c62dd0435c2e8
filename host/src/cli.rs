//! Command-line arguments (clap) and the thin layer that turns them into library calls.
//! No orchestration lives here; printing is in `print.rs`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use wasmig::backfill::settings::{MAX_PAUSE_MS, MAX_WORKERS, ThrottleOverrides};
use wasmig::digest::Digest;
use wasmig::scaffold::{self, Template};
use wasmig::trust::{self, Date};
use wasmig::{Catalog, Config, DownTarget, Migrator, Version, signing};

use crate::print;
use crate::progress::{CliObserver, Style};

#[derive(Debug, Parser)]
#[command(name = "wasmig", version, about = "Database migrations as plain SQL or sandboxed WebAssembly components")]
pub struct Args {
    /// The project folder (holding wasmig.toml). Default: the current folder if it holds a
    /// wasmig.toml, else ./migrations.
    #[arg(long, short = 'p', global = true, env = "WASMIG_PROJECT")]
    project: Option<PathBuf>,

    /// The database URL (postgres://…, sqlite:PATH). Overrides wasmig.toml.
    #[arg(long, short = 'd', global = true, env = "DATABASE_URL", hide_env_values = true)]
    database: Option<String>,

    /// A TOML file whose [trust] section replaces wasmig.toml's: keep production's trust policy
    /// outside the checkout it judges.
    #[arg(long, global = true, env = "WASMIG_TRUST_FILE")]
    trust_file: Option<PathBuf>,

    /// Show debug output (component loads, fuel used per call).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// Show warnings and errors only.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create wasmig.toml in the project folder.
    Init,
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
        /// Where to create the Rust guest crate. Default: plugins/<name>.
        #[arg(long, requires = "rust")]
        crate_dir: Option<PathBuf>,
    },
    /// Show every migration's state and backfill progress.
    Status,
    /// Show the history table, with signers and recorded repairs.
    History,
    /// Apply pending migrations (after resuming unfinished backfills).
    Up {
        /// Stop after this version.
        #[arg(long)]
        to: Option<Version>,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// How to show backfill progress: a bar or log lines (human), or JSON events on stdout.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        #[command(flatten)]
        throttle: ThrottleArgs,
    },
    /// Watch and steer backfills: status, run (one more worker), pause, resume.
    Backfill {
        #[command(subcommand)]
        action: BackfillAction,
    },
    /// Revert applied migrations, newest first (default: the latest one).
    Down {
        /// Revert everything above this version (0 reverts all).
        #[arg(long, conflicts_with = "steps")]
        to: Option<Version>,
        /// Revert this many migrations.
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Run every applied migration's verify again, read-only.
    Verify,
    /// Show what each component migration may touch (its grants) and its limits.
    Grants,
    /// Write wasmig.sum: the blake3 digest of every migration and of the whole list.
    Hash,
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
    },
    /// Check the migrations against wasmig.sum and its signatures against the trust policy
    /// (no database needed). Exits 9 when they fail.
    VerifyArtifacts {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Record that an applied migration's files changed and accept their new digest.
    Repair {
        version: Version,
        /// The digest the files must hash to now (shown by `wasmig status`).
        #[arg(long)]
        accept_digest: Digest,
        /// Why the change is accepted; kept in the history.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum BackfillAction {
    /// Every backfill's progress: state, rows done of the estimate, chunks, rate and ETA.
    Status {
        /// Only this migration's backfill.
        version: Option<Version>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Work on an applied migration's backfill until it is done or paused. Run it on several
    /// machines at once to share a chunked backfill.
    Run {
        version: Version,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        #[command(flatten)]
        throttle: ThrottleArgs,
    },
    /// Pause a backfill: its workers stop after their current batch; `up` leaves it alone.
    Pause { version: Version },
    /// Let a paused backfill go on (then `wasmig backfill run` or `wasmig up` continues it).
    Resume { version: Version },
}

/// Throttling for this run; beats wasmig.toml and the migration's manifest.
#[derive(Debug, Clone, Copy, clap::Args)]
struct ThrottleArgs {
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
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let project = args.project.clone().unwrap_or_else(wasmig::config::default_project_dir);
    match args.command {
        Command::Init => {
            let path = scaffold::init(&project)?;
            println!("created {}", path.display());
            Ok(())
        }
        Command::New { name, sql: _, rust, crate_dir } => new_migration(&project, &name, rust, crate_dir),
        Command::Keygen { out } => {
            let key = signing::keygen(&out)?;
            println!("secret key: {} (keep it in your CI secret store; never commit it)", key.secret_path.display());
            println!("public key: {}", key.public_path.display());
            println!("key id:     {}", key.key_id);
            println!("\ntrust it in wasmig.toml:\n\n[[trust.keys]]\nname = \"…\"\npublic_key = \"{}\"", key.public_key);
            Ok(())
        }
        command @ (Command::Hash | Command::Sign { .. } | Command::VerifyArtifacts { .. } | Command::Grants) => {
            let config = load_config(&project, &args.database, &args.trust_file)?;
            // `hash` writes the sum file anew, so it reads folders that differ from the old one.
            let catalog = match command {
                Command::Hash => Catalog::load_to_rehash(&project),
                Command::VerifyArtifacts { .. } => Catalog::load_to_verify(&project),
                _ => Catalog::load(&project),
            };
            artifacts(&config, &catalog.map_err(wasmig::Error::from)?, command)
        }
        command => {
            let mut config = load_config(&project, &args.database, &args.trust_file)?;
            let (format, throttle) = match &command {
                Command::Up { format, throttle, .. }
                | Command::Backfill { action: BackfillAction::Run { format, throttle, .. } } => {
                    (*format, Some(*throttle))
                }
                _ => (Format::Human, None),
            };
            if let Some(throttle) = throttle {
                config.backfill_overrides = throttle.into();
            }
            let url = config.database().map(ToString::to_string).unwrap_or_default();
            let observer = CliObserver::new(Style::pick(format == Format::Json, args.quiet));
            let migrator = Migrator::open(config).await?.with_observer(std::sync::Arc::new(observer));
            tracing::debug!(database = url, backend = %migrator.backend(), "connected");
            against_database(&migrator, command).await
        }
    }
}

fn load_config(project: &Path, database: &Option<String>, trust_file: &Option<PathBuf>) -> anyhow::Result<Config> {
    let config = Config::load(project, database.as_deref()).map_err(wasmig::Error::from)?;
    Ok(match trust_file {
        Some(path) => config.with_trust_file(path).map_err(wasmig::Error::from)?,
        None => config,
    })
}

fn new_migration(project: &Path, name: &str, rust: bool, crate_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let template = if rust { Template::Rust } else { Template::Sql };
    let crate_dir = crate_dir.unwrap_or_else(|| PathBuf::from("plugins").join(name));
    let created = scaffold::new_migration(project, name, template, &crate_dir)?;
    for file in &created.files {
        println!("created {}", file.display());
    }
    if rust {
        println!(
            "build it with: cargo build --release --target wasm32-wasip2 --manifest-path {}/Cargo.toml\n\
             then copy the .wasm from its target/wasm32-wasip2/release/ to {}/migration.wasm",
            crate_dir.display(),
            created.folder.display()
        );
    }
    Ok(())
}

/// `hash`, `sign` and `verify-artifacts`: the CI side, which needs no database.
fn artifacts(config: &Config, catalog: &Catalog, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Hash => {
            let (path, sum) = signing::write_sum(&config.project_dir, catalog)?;
            println!("wrote {} ({} migrations, total {})", path.display(), sum.entries.len(), sum.total);
            if !catalog.signatures.is_empty() {
                println!("existing signatures cover the previous contents; run `wasmig sign` again");
            }
            Ok(())
        }
        Command::Sign { key, key_env } => {
            let (text, origin) = match (key, key_env) {
                (Some(path), _) => (
                    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?,
                    path.display().to_string(),
                ),
                (None, Some(var)) => {
                    let text = std::env::var(&var).with_context(|| format!("environment variable {var} is not set"))?;
                    (text, format!("${var}"))
                }
                (None, None) => anyhow::bail!("give --key FILE or --key-env VARIABLE"),
            };
            let password = std::env::var("WASMIG_SIGNING_KEY_PASSWORD").ok();
            let secret = signing::secret_key(&text, &origin, password)?;
            let path = signing::sign(&config.project_dir, catalog, &secret)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::VerifyArtifacts { format } => {
            let report = trust::check(catalog, &config.trust, Date::today());
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Human => print::trust_report(&report),
            }
            report.ensure()?;
            Ok(())
        }
        Command::Grants => {
            print::grants(catalog, &config.limits);
            Ok(())
        }
        _ => unreachable!("only artifact commands reach here"),
    }
}

async fn against_database(migrator: &Migrator, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Status => print::status(&migrator.status().await?),
        Command::History => print::history(&migrator.applied().await?, &migrator.repairs().await?),
        Command::Up { to, dry_run: true, .. } => {
            migrator.trust().ensure()?;
            let steps = migrator.plan_up(to).await?;
            if steps.is_empty() {
                println!("nothing to apply");
            }
            for migration in steps {
                println!("would apply {migration} ({})", migration.kind());
            }
        }
        Command::Up { to, dry_run: false, .. } => {
            let report = migrator.up(to).await.context("wasmig up failed")?;
            print::report(&report, "nothing to apply: the database is up to date");
        }
        Command::Down { to, steps } => {
            let target = match (to, steps) {
                (Some(version), _) => DownTarget::To(version),
                (None, Some(steps)) => DownTarget::Steps(steps),
                (None, None) => DownTarget::Steps(1),
            };
            let report = migrator.down(target).await.context("wasmig down failed")?;
            print::report(&report, "nothing to revert");
        }
        Command::Verify => {
            let report = migrator.verify().await.context("wasmig verify failed")?;
            print::report(&report, "nothing to verify: no migration is applied");
        }
        Command::Repair { version, accept_digest, reason } => {
            let repair = migrator.repair(version, accept_digest, &reason).await.context("wasmig repair failed")?;
            println!(
                "recorded: migration {} now {} (was {}), by {}: {}",
                repair.version, repair.new_digest, repair.old_digest, repair.repaired_by, repair.reason
            );
        }
        Command::Backfill { action } => backfill(migrator, action).await?,
        _ => unreachable!("commands without a database are handled before connecting"),
    }
    Ok(())
}

async fn backfill(migrator: &Migrator, action: BackfillAction) -> anyhow::Result<()> {
    match action {
        BackfillAction::Status { version, format } => {
            let mut statuses = migrator.backfill_status().await?;
            if let Some(version) = version {
                statuses.retain(|s| s.version == version);
                if statuses.is_empty() {
                    anyhow::bail!("migration {version} has no backfill in progress or finished");
                }
            }
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&statuses)?),
                Format::Human => print::backfills(migrator.catalog(), &statuses),
            }
        }
        BackfillAction::Run { version, format, .. } => {
            let report = migrator.backfill_run(version).await.context("wasmig backfill run failed")?;
            if format == Format::Human {
                print::report(&report, "nothing to do");
            }
            let paused = report.steps.iter().any(|s| s.action == wasmig::report::Action::BackfillPaused);
            if paused {
                return Err(wasmig::Error::BackfillPaused {
                    migration: version.to_string(),
                    version,
                    state: "paused".into(),
                }
                .into());
            }
        }
        BackfillAction::Pause { version } => {
            migrator.backfill_pause(version).await?;
            println!("backfill of {version} paused; its workers stop after their current batch");
        }
        BackfillAction::Resume { version } => {
            migrator.backfill_resume(version).await?;
            println!("backfill of {version} resumed; `wasmig backfill run {version}` or `wasmig up` continues it");
        }
    }
    Ok(())
}
