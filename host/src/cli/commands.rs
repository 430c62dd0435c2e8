//! Running a command: each [`Route`] gets what it needs (nothing, the project's files, or a
//! [`Migrator`] on its database), calls the library, and hands what it learnt to [`Output`]:
//! lines for a person, or the `result`'s data for a pipeline. No orchestration lives here;
//! human printing is in `print.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use wasmig::scaffold::{self, Template};
use wasmig::{Backfills, Catalog, Config, Date, DownTarget, Migrator, signing};

use crate::args::{BackfillAction, DatabaseArgs, RepairDecision, StampTarget, ThrottleArgs};
use crate::gate::GateFailed;
use crate::output::Output;
use crate::print;
use crate::route::{ArtifactCommand, DatabaseCommand, Route};

pub async fn run(route: Route, project: PathBuf, output: Arc<Output>) -> anyhow::Result<()> {
    match route {
        Route::Init => {
            let path = scaffold::init(&project)?;
            output.say(format_args!("created {}", path.display()));
            output.data(|| json!({ "created": [path] }));
            Ok(())
        }
        Route::New { name, rust, crate_dir } => new_migration(&output, &project, &name, rust, crate_dir),
        Route::Keygen { out } => {
            let key = signing::keygen(&out)?;
            output.say(format_args!(
                "secret key: {} (keep it in your CI secret store; never commit it)",
                key.secret_path.display()
            ));
            output.say(format_args!("public key: {}", key.public_path.display()));
            output.say(format_args!("key id:     {}", key.key_id));
            output.say(format_args!(
                "\ntrust it in wasmig.toml:\n\n[[trust.keys]]\nname = \"…\"\npublic_key = \"{}\"",
                key.public_key
            ));
            output.data(|| {
                json!({
                    "secret_key_file": key.secret_path,
                    "public_key_file": key.public_path,
                    "key_id": key.key_id,
                    "public_key": key.public_key,
                })
            });
            Ok(())
        }
        Route::Artifacts(command) => {
            let trust_file = match &command {
                ArtifactCommand::Verify { trust } => trust.trust_file.clone(),
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
            artifacts(&output, &config, &catalog.map_err(wasmig::Error::from)?, command)
        }
        Route::Database(command, db) => {
            let throttle = match &command {
                DatabaseCommand::Up { throttle, .. }
                | DatabaseCommand::Backfill(BackfillAction::Run { throttle, .. }) => Some(*throttle),
                _ => None,
            };
            let config = database_config(&project, &db, throttle)?;
            let url = config.database().map(ToString::to_string).unwrap_or_default();
            let mut migrator = Migrator::open(config).await?.with_observer(output.clone());
            if matches!(
                command,
                DatabaseCommand::Up { dry_run: false, .. } | DatabaseCommand::Backfill(BackfillAction::Run { .. })
            ) {
                migrator = migrator.with_stop(crate::stop::on_signal());
            }
            tracing::debug!(database = url, backend = %migrator.backend(), "connected");
            against_database(&output, &migrator, &url, command).await
        }
        Route::Rehearsal(command, db) => {
            let config = database_config(&project, &db, None)?;
            crate::rehearse::run(&output, &config, command).await
        }
    }
}

/// The run's settings: the project file, the database and trust flags, and the throttles a
/// command that runs backfills was given.
fn database_config(project: &Path, db: &DatabaseArgs, throttle: Option<ThrottleArgs>) -> anyhow::Result<Config> {
    let mut config = Config::load(project, db.database.as_deref()).map_err(wasmig::Error::from)?;
    config = with_trust_file(config, &db.trust.trust_file)?;
    if let Some(wait) = db.wait_for_db {
        config.connect.wait = wait;
    }
    if let Some(timeout) = db.lock_timeout {
        config.lock_timeout = timeout;
    }
    if let Some(throttle) = throttle {
        config.backfill_overrides = throttle.into();
    }
    Ok(config)
}

fn with_trust_file(config: Config, trust_file: &Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match trust_file {
        Some(path) => config.with_trust_file(path).map_err(wasmig::Error::from)?,
        None => config,
    })
}

fn new_migration(
    output: &Output,
    project: &Path,
    name: &str,
    rust: bool,
    crate_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let template = if rust { Template::Rust } else { Template::Sql };
    let crate_dir = crate_dir.unwrap_or_else(|| scaffold::default_crate_dir(project, name));
    let created = scaffold::new_migration(project, name, template, &crate_dir)?;
    let files: Vec<PathBuf> = created.files.iter().map(|file| shown(file)).collect();
    for file in &files {
        output.say(format_args!("created {}", file.display()));
    }
    output.data(|| json!({ "folder": shown(&created.folder), "created": files }));
    if rust {
        let crate_dir = shown(&crate_dir);
        let artifact = scaffold::artifact_name(&name.replace('_', "-"));
        output.say(format_args!(
            "\nbuild it (once: rustup target add wasm32-wasip2):\n  \
             cargo build --release --target wasm32-wasip2 --manifest-path {crate}/Cargo.toml\n\
             then copy the component into the migration folder:\n  \
             cp {crate}/target/wasm32-wasip2/release/{artifact}.wasm {folder}/migration.wasm",
            crate = crate_dir.display(),
            folder = shown(&created.folder).display(),
        ));
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

/// `hash`, `sign`, `verify-artifacts` and `grants`: the CI side, which needs no database.
fn artifacts(output: &Output, config: &Config, catalog: &Catalog, command: ArtifactCommand) -> anyhow::Result<()> {
    match command {
        ArtifactCommand::Hash => {
            let (path, sum) = signing::write_sum(&config.project_dir, catalog)?;
            output.say(format_args!(
                "wrote {} ({} migrations, total {})",
                path.display(),
                sum.entries.len(),
                sum.total
            ));
            if !catalog.signatures.is_empty() {
                output.say("existing signatures cover the previous contents; run `wasmig sign` again");
            }
            output.data(|| {
                json!({
                    "sum_file": path,
                    "migrations": sum.entries.len(),
                    "total": sum.total.to_string(),
                    "signatures_outdated": !catalog.signatures.is_empty(),
                })
            });
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
            output.say(format_args!("wrote {}", path.display()));
            output.data(|| json!({ "signature_file": path }));
            Ok(())
        }
        ArtifactCommand::Verify { .. } => {
            let report = wasmig::verify_artifacts(catalog, &config.trust, Date::today());
            output.data(|| &report);
            if !output.json() {
                print::trust_report(&report);
            }
            report.ensure()?;
            Ok(())
        }
        ArtifactCommand::Grants => {
            let previews = print::grants_data(catalog, &config.limits);
            output.data(|| json!({ "migrations": previews }));
            if !output.json() {
                print::grants(&previews);
            }
            Ok(())
        }
    }
}

async fn against_database(
    output: &Output,
    migrator: &Migrator,
    url: &str,
    command: DatabaseCommand,
) -> anyhow::Result<()> {
    match command {
        DatabaseCommand::Status => {
            let entries = migrator.status().await?;
            output.data(
                || json!({ "database": url, "session": migrator.transport().to_string(), "migrations": entries }),
            );
            if !output.json() {
                print::connection(url, migrator.transport());
                print::status(&entries);
            }
        }
        DatabaseCommand::History { audit: true } => {
            let entries = migrator.audit().await?;
            output.data(|| json!({ "database": url, "session": migrator.transport().to_string(), "audit": entries }));
            if !output.json() {
                print::connection(url, migrator.transport());
                print::audit(&entries);
            }
        }
        DatabaseCommand::Stamp { target, reason } => {
            let report = match target {
                StampTarget::UpTo(version) => migrator.stamp(version, &reason).await,
                StampTarget::From(tool) => migrator.stamp_from(tool, &reason).await,
            }
            .context("wasmig stamp failed")?;
            if report.steps.is_empty() {
                output.say("nothing to stamp: no pending migration up to that version");
            }
        }
        DatabaseCommand::History { audit: false } => {
            let (applied, repairs) = (migrator.applied().await?, migrator.repairs().await?);
            output.data(|| {
                json!({
                    "database": url,
                    "session": migrator.transport().to_string(),
                    "applied": applied,
                    "repairs": repairs,
                })
            });
            if !output.json() {
                print::connection(url, migrator.transport());
                print::history(&applied, &repairs);
            }
        }
        DatabaseCommand::Plan { to } | DatabaseCommand::Up { to, dry_run: true, .. } => {
            migrator.trust().ensure()?;
            show_plan(output, &migrator.preview_up(to).await?);
        }
        DatabaseCommand::Check { fail_on_pending } => {
            let findings = migrator.check(fail_on_pending).await?;
            output.data(|| json!({ "database": url, "problems": findings }));
            if let Some(failed) = GateFailed::of(&findings) {
                return Err(failed.into());
            }
            output.say("check passed: every applied migration matches its files and every backfill is done");
        }
        DatabaseCommand::Up { to, dry_run: false, no_backfill, .. } => {
            let backfills = if no_backfill { Backfills::Leave } else { Backfills::Run };
            let (report, left) = migrator.up_leaving(to, backfills).await.context("wasmig up failed")?;
            if report.steps.is_empty() && left.is_empty() {
                output.say("nothing to apply: the database is up to date");
            }
            if no_backfill {
                for finding in &left {
                    output.say(format_args!("left for backfill workers: {finding}"));
                }
                output.data(|| json!({ "backfills_left": left }));
            } else if let Some(failed) = GateFailed::of(&left) {
                // A backfill left paused or unfinished is not "up to date": the deploy must not
                // go on as if the data were migrated.
                return Err(failed.into());
            }
        }
        DatabaseCommand::Down { to, steps, dry_run } => {
            let target = match (to, steps) {
                (Some(version), _) => DownTarget::To(version),
                (None, Some(steps)) => DownTarget::Steps(steps),
                (None, None) => DownTarget::Steps(1),
            };
            if dry_run {
                migrator.trust().ensure()?;
                show_plan(output, &migrator.preview_down(target).await?);
                return Ok(());
            }
            let report = migrator.down(target).await.context("wasmig down failed")?;
            if report.steps.is_empty() {
                output.say("nothing to revert");
            }
        }
        DatabaseCommand::Verify => {
            let report = migrator.verify().await.context("wasmig verify failed")?;
            if report.steps.is_empty() {
                output.say("nothing to verify: no migration is applied");
            }
        }
        DatabaseCommand::RepairDiff { version } => {
            let diff = migrator.repair_diff(version).await.context("wasmig repair --diff failed")?;
            output.data(|| json!({ "diff": diff }));
            if !output.json() {
                print::repair_diff(&diff);
            }
        }
        DatabaseCommand::Repair { version, decision, reason } => {
            // What is accepted is shown with it, not only its digest.
            let (repair, diff) = match decision {
                RepairDecision::AcceptDigest(digest) => {
                    migrator.accept_changes(version, digest, &reason).await.map(|(repair, diff)| (repair, Some(diff)))
                }
                RepairDecision::Interrupted(decision) => {
                    migrator.repair_interrupted(version, decision, &reason).await.map(|repair| (repair, None))
                }
            }
            .context("wasmig repair failed")?;
            if let Some(diff) = &diff
                && !output.json()
            {
                print!("{}", diff.text());
            }
            if repair.new_digest == repair.old_digest {
                output.say(format_args!(
                    "recorded: migration {}, by {}: {}",
                    repair.version, repair.repaired_by, repair.reason
                ));
            } else {
                output.say(format_args!(
                    "recorded: migration {} now {} (was {}), by {}: {}",
                    repair.version, repair.new_digest, repair.old_digest, repair.repaired_by, repair.reason
                ));
            }
            output.data(|| json!({ "repair": repair, "diff": diff }));
        }
        DatabaseCommand::Backfill(action) => backfill(output, migrator, action).await?,
    }
    Ok(())
}

fn show_plan(output: &Output, preview: &wasmig::Preview) {
    output.data(|| preview);
    if !output.json() {
        print::plan(preview);
    }
}

async fn backfill(output: &Output, migrator: &Migrator, action: BackfillAction) -> anyhow::Result<()> {
    match action {
        BackfillAction::Status { version } => {
            let statuses = match version {
                Some(version) => vec![migrator.backfill_status_of(version).await?],
                None => migrator.backfill_status().await?,
            };
            output.data(|| json!({ "backfills": statuses }));
            if !output.json() {
                print::backfills(migrator.catalog(), &statuses);
            }
        }
        BackfillAction::Run { version, .. } => {
            let report = migrator.backfill_run(version).await.context("wasmig backfill run failed")?;
            if report.steps.is_empty() {
                output.say("nothing to do");
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
            output.say(format_args!("backfill of {version} paused; its workers stop after their current batch"));
            output.data(|| json!({ "version": version, "state": "paused" }));
        }
        BackfillAction::Resume { version } => {
            migrator.backfill_resume(version).await?;
            output.say(format_args!(
                "backfill of {version} resumed; `wasmig backfill run {version}` or `wasmig up` continues it"
            ));
            output.data(|| json!({ "version": version, "state": "running" }));
        }
        BackfillAction::Retry { version } => {
            migrator.backfill_retry(version).await?;
            output.say(format_args!(
                "backfill of {version} may go on; `wasmig backfill run {version}` or `wasmig up` continues it from its last committed batch"
            ));
            output.data(|| json!({ "version": version, "state": "running" }));
        }
        BackfillAction::Cancel { version } => {
            migrator.backfill_cancel(version).await?;
            output.say(format_args!(
                "backfill of {version} cancelled; its workers stop after their current batch (`wasmig backfill retry {version}` restarts it)"
            ));
            output.data(|| json!({ "version": version, "state": "cancelled" }));
        }
    }
    Ok(())
}
