//! Command-line arguments (clap) and the thin layer that turns them into library calls and
//! printed output. No orchestration lives here.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmig::scaffold::{self, Template};
use wasmig::{Config, DownTarget, Migrator, State, Version};

#[derive(Debug, Parser)]
#[command(
    name = "wasmig",
    version,
    about = "Database migrations as plain SQL or sandboxed WebAssembly components"
)]
pub struct Args {
    /// The project folder (holding wasmig.toml). Default: the current folder if it holds a
    /// wasmig.toml, else ./migrations.
    #[arg(long, short = 'p', global = true, env = "WASMIG_PROJECT")]
    project: Option<PathBuf>,

    /// The database URL (postgres://…, sqlite:PATH). Overrides wasmig.toml.
    #[arg(
        long,
        short = 'd',
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,

    /// Show debug output (component loads, fuel used per call).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// Show warnings and errors only.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    command: Command,
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
    /// Show the history table.
    History,
    /// Apply pending migrations (after resuming unfinished backfills).
    Up {
        /// Stop after this version.
        #[arg(long)]
        to: Option<Version>,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let project = args
        .project
        .clone()
        .unwrap_or_else(wasmig::config::default_project_dir);
    match args.command {
        Command::Init => {
            let path = scaffold::init(&project)?;
            println!("created {}", path.display());
            Ok(())
        }
        Command::New {
            name,
            sql: _,
            rust,
            crate_dir,
        } => {
            let template = if rust { Template::Rust } else { Template::Sql };
            let crate_dir = crate_dir.unwrap_or_else(|| PathBuf::from("plugins").join(&name));
            let created = scaffold::new_migration(&project, &name, template, &crate_dir)?;
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
        command => {
            let config =
                Config::load(&project, args.database.as_deref()).map_err(wasmig::Error::from)?;
            let url = config.database.to_string();
            let migrator = Migrator::open(config).await?;
            tracing::debug!(database = url, backend = %migrator.backend(), "connected");
            run_against_database(&migrator, command).await
        }
    }
}

async fn run_against_database(migrator: &Migrator, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Status => print_status(migrator).await,
        Command::History => print_history(migrator).await,
        Command::Up { to, dry_run: true } => {
            let steps = migrator.plan_up(to).await?;
            if steps.is_empty() {
                println!("nothing to apply");
            }
            for migration in steps {
                println!("would apply {migration} ({})", migration.kind());
            }
            Ok(())
        }
        Command::Up { to, dry_run: false } => {
            let report = migrator.up(to).await.context("wasmig up failed")?;
            print_report(&report, "nothing to apply: the database is up to date");
            Ok(())
        }
        Command::Down { to, steps } => {
            let target = match (to, steps) {
                (Some(version), _) => DownTarget::To(version),
                (None, Some(steps)) => DownTarget::Steps(steps),
                (None, None) => DownTarget::Steps(1),
            };
            let report = migrator.down(target).await.context("wasmig down failed")?;
            print_report(&report, "nothing to revert");
            Ok(())
        }
        Command::Verify => {
            let report = migrator.verify().await.context("wasmig verify failed")?;
            print_report(&report, "nothing to verify: no migration is applied");
            Ok(())
        }
        Command::Init | Command::New { .. } => unreachable!("handled before connecting"),
    }
}

fn print_report(report: &wasmig::Report, when_empty: &str) {
    if report.steps.is_empty() {
        println!("{when_empty}");
    } else {
        print!("{report}");
    }
}

async fn print_status(migrator: &Migrator) -> anyhow::Result<()> {
    let entries = migrator.status().await?;
    if entries.is_empty() {
        println!("the project has no migrations yet");
        return Ok(());
    }
    println!("{:<8} {:<34} {:<10} STATE", "VERSION", "MIGRATION", "KIND");
    for entry in entries {
        let state = match &entry.state {
            State::Pending => "pending".to_owned(),
            State::Applied { applied_at } => format!("applied {applied_at}"),
            State::Changed { recorded, found } => {
                format!("CHANGED since applied (recorded {recorded}, files {found})")
            }
            State::Missing => "applied, but its folder is MISSING".to_owned(),
        };
        let backfill = match &entry.backfill {
            Some(b) if b.done => {
                format!("; backfill done ({} rows in {} batches)", b.rows, b.batches)
            }
            Some(b) => format!(
                "; backfill running ({} rows in {} batches so far)",
                b.rows, b.batches
            ),
            None => String::new(),
        };
        println!(
            "{:<8} {:<34} {:<10} {state}{backfill}",
            entry.version.to_string(),
            entry.folder,
            entry.kind
        );
    }
    Ok(())
}

async fn print_history(migrator: &Migrator) -> anyhow::Result<()> {
    let applied = migrator.applied().await?;
    if applied.is_empty() {
        println!("no migration has been applied");
        return Ok(());
    }
    println!(
        "{:<8} {:<28} {:<10} {:<32} {:<22} {:>8}  DIGEST",
        "VERSION", "NAME", "KIND", "APPLIED AT", "APPLIED BY", "MS"
    );
    for row in applied {
        println!(
            "{:<8} {:<28} {:<10} {:<32} {:<22} {:>8}  {}",
            row.version.to_string(),
            row.name,
            row.kind,
            row.applied_at,
            row.applied_by,
            row.duration_ms,
            row.digest
        );
    }
    Ok(())
}
