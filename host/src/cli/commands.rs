//! Running a command: each [`Route`] gets what it needs (nothing, the project's files, or a
//! [`Migrator`] on its database), calls the library, and prints the result. No orchestration
//! lives here; printing is in `print.rs`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmig::scaffold::{self, Template};
use wasmig::{Catalog, Config, Date, DownTarget, Migrator, signing};

use crate::args::{Args, ArtifactCommand, BackfillAction, DatabaseCommand, Format, Route};
use crate::print;
use crate::progress::{CliObserver, Style};

pub async fn run(args: Args) -> anyhow::Result<()> {
    let project = args.command.project().unwrap_or_else(wasmig::default_project_dir);
    match Route::from(args.command) {
        Route::Init => {
            let path = scaffold::init(&project)?;
            println!("created {}", path.display());
            Ok(())
        }
        Route::New { name, rust, crate_dir } => new_migration(&project, &name, rust, crate_dir),
        Route::Keygen { out } => {
            let key = signing::keygen(&out)?;
            println!("secret key: {} (keep it in your CI secret store; never commit it)", key.secret_path.display());
            println!("public key: {}", key.public_path.display());
            println!("key id:     {}", key.key_id);
            println!("\ntrust it in wasmig.toml:\n\n[[trust.keys]]\nname = \"…\"\npublic_key = \"{}\"", key.public_key);
            Ok(())
        }
        Route::Artifacts(command) => {
            let trust_file = match &command {
                ArtifactCommand::Verify { trust, .. } => trust.trust_file.clone(),
                _ => None,
            };
            // The CI side reads no database setting, so a DATABASE_URL it cannot use is no error.
            let config =
                Config::load_in(&project, None, &wasmig::Environment::default()).map_err(wasmig::Error::from)?;
            let config = with_trust_file(config, &trust_file)?;
            // `hash` writes the sum file anew, so it reads folders that differ from the old one.
            let catalog = match command {
                ArtifactCommand::Hash => Catalog::load_to_rehash(&project),
                ArtifactCommand::Verify { .. } => Catalog::load_to_verify(&project),
                ArtifactCommand::Sign { .. } | ArtifactCommand::Grants => Catalog::load(&project),
            };
            artifacts(&config, &catalog.map_err(wasmig::Error::from)?, command)
        }
        Route::Database(command, db) => {
            let mut config = Config::load(&project, db.database.as_deref()).map_err(wasmig::Error::from)?;
            config = with_trust_file(config, &db.trust.trust_file)?;
            if let Some(wait) = db.wait_for_db {
                config.connect.wait = wait;
            }
            if let Some(timeout) = db.lock_timeout {
                config.lock_timeout = timeout;
            }
            let (format, throttle) = match &command {
                DatabaseCommand::Up { format, throttle, .. }
                | DatabaseCommand::Backfill(BackfillAction::Run { format, throttle, .. }) => (*format, Some(*throttle)),
                _ => (Format::Human, None),
            };
            if let Some(throttle) = throttle {
                config.backfill_overrides = throttle.into();
            }
            let url = config.database().map(ToString::to_string).unwrap_or_default();
            let observer = CliObserver::new(Style::pick(format == Format::Json, args.quiet));
            let migrator = Migrator::open(config).await?.with_observer(std::sync::Arc::new(observer));
            tracing::debug!(database = url, backend = %migrator.backend(), "connected");
            if matches!(command, DatabaseCommand::Status | DatabaseCommand::History) {
                print::connection(&url, migrator.transport());
            }
            against_database(&migrator, command).await
        }
    }
}

fn with_trust_file(config: Config, trust_file: &Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match trust_file {
        Some(path) => config.with_trust_file(path).map_err(wasmig::Error::from)?,
        None => config,
    })
}

fn new_migration(project: &Path, name: &str, rust: bool, crate_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let template = if rust { Template::Rust } else { Template::Sql };
    let crate_dir = crate_dir.unwrap_or_else(|| scaffold::default_crate_dir(project, name));
    let created = scaffold::new_migration(project, name, template, &crate_dir)?;
    for file in &created.files {
        println!("created {}", shown(file).display());
    }
    if rust {
        let crate_dir = shown(&crate_dir);
        let artifact = scaffold::artifact_name(&name.replace('_', "-"));
        println!(
            "\nbuild it (once: rustup target add wasm32-wasip2):\n  \
             cargo build --release --target wasm32-wasip2 --manifest-path {crate}/Cargo.toml\n\
             then copy the component into the migration folder:\n  \
             cp {crate}/target/wasm32-wasip2/release/{artifact}.wasm {folder}/migration.wasm",
            crate = crate_dir.display(),
            folder = shown(&created.folder).display(),
        );
    }
    Ok(())
}

/// `path` relative to the current folder when it lies inside it, as a person would type it.
fn shown(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match std::env::current_dir() {
        Ok(current) => absolute.strip_prefix(&current).map_or(absolute.clone(), Path::to_owned),
        Err(_) => absolute,
    }
}

/// `hash`, `sign` and `verify-artifacts`: the CI side, which needs no database.
fn artifacts(config: &Config, catalog: &Catalog, command: ArtifactCommand) -> anyhow::Result<()> {
    match command {
        ArtifactCommand::Hash => {
            let (path, sum) = signing::write_sum(&config.project_dir, catalog)?;
            println!("wrote {} ({} migrations, total {})", path.display(), sum.entries.len(), sum.total);
            if !catalog.signatures.is_empty() {
                println!("existing signatures cover the previous contents; run `wasmig sign` again");
            }
            Ok(())
        }
        ArtifactCommand::Sign { key, key_env } => {
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
        ArtifactCommand::Verify { format, .. } => {
            let report = wasmig::verify_artifacts(catalog, &config.trust, Date::today());
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Human => print::trust_report(&report),
            }
            report.ensure()?;
            Ok(())
        }
        ArtifactCommand::Grants => {
            print::grants(catalog, &config.limits);
            Ok(())
        }
    }
}

async fn against_database(migrator: &Migrator, command: DatabaseCommand) -> anyhow::Result<()> {
    match command {
        DatabaseCommand::Status => print::status(&migrator.status().await?),
        DatabaseCommand::History => print::history(&migrator.applied().await?, &migrator.repairs().await?),
        DatabaseCommand::Up { to, dry_run: true, .. } => {
            migrator.trust().ensure()?;
            let steps = migrator.plan_up(to).await?;
            if steps.is_empty() {
                println!("nothing to apply");
            }
            for migration in steps {
                println!("would apply {migration} ({})", migration.kind());
            }
        }
        DatabaseCommand::Up { to, dry_run: false, .. } => {
            let report = migrator.up(to).await.context("wasmig up failed")?;
            print::report(&report, "nothing to apply: the database is up to date");
        }
        DatabaseCommand::Down { to, steps } => {
            let target = match (to, steps) {
                (Some(version), _) => DownTarget::To(version),
                (None, Some(steps)) => DownTarget::Steps(steps),
                (None, None) => DownTarget::Steps(1),
            };
            let report = migrator.down(target).await.context("wasmig down failed")?;
            print::report(&report, "nothing to revert");
        }
        DatabaseCommand::Verify => {
            let report = migrator.verify().await.context("wasmig verify failed")?;
            print::report(&report, "nothing to verify: no migration is applied");
        }
        DatabaseCommand::Repair { version, accept_digest, reason } => {
            let repair = migrator.repair(version, accept_digest, &reason).await.context("wasmig repair failed")?;
            println!(
                "recorded: migration {} now {} (was {}), by {}: {}",
                repair.version, repair.new_digest, repair.old_digest, repair.repaired_by, repair.reason
            );
        }
        DatabaseCommand::Backfill(action) => backfill(migrator, action).await?,
    }
    Ok(())
}

async fn backfill(migrator: &Migrator, action: BackfillAction) -> anyhow::Result<()> {
    match action {
        BackfillAction::Status { version, format } => {
            let statuses = match version {
                Some(version) => vec![migrator.backfill_status_of(version).await?],
                None => migrator.backfill_status().await?,
            };
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
            let paused = report.steps.iter().any(|s| s.action == wasmig::Action::BackfillPaused);
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
