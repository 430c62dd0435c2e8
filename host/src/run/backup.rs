//! The backup `[backup]` asks for before a step: whether this step needs one (`always`, or
//! `destructive` and the step drops or rewrites data), taking it — SQLite through its online
//! backup API, PostgreSQL through the configured command — and recording where it went, in
//! the audit trail and as an event.
//!
//! A backup that fails stops the run before the step: the point of asking for one is that
//! the step does not run without it.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::config::{BackupPolicy, BackupWhen};
use crate::core::utc_timestamp;
use crate::db::DatabaseUrl;
use crate::error::Error;
use crate::guard::destructive::destruction;
use crate::project::catalog::{Body, Migration};

use super::events::Backup;
use super::session::Session;

/// Why a step is backed up, or `None` when `policy` does not ask for it. `up` is true for an
/// apply, false for a revert. The plan shows the same reason before the step runs.
pub(crate) fn reason(policy: &BackupPolicy, migration: &Migration, up: bool) -> Option<String> {
    let destroys = match &migration.body {
        Body::Sql(scripts) => {
            let script = if up { Some(scripts.up.as_str()) } else { scripts.down.as_deref() };
            script.and_then(destruction).map(|found| {
                let file = if up { "up.sql" } else { "down.sql" };
                format!("{} at {file} line {}", found.what, found.line)
            })
        }
        // What a component runs is known only as it runs: its grants say what it may do.
        Body::Component(component) if component.grants.changes_data() => {
            Some("a component whose grants allow update, delete or ddl".to_owned())
        }
        Body::Component(_) => None,
    };
    match (policy.when, destroys) {
        (_, Some(reason)) => Some(reason),
        (BackupWhen::Always, None) => Some("[backup] before = \"always\"".to_owned()),
        (BackupWhen::Destructive, None) => None,
    }
}

/// Takes the backup `[backup]` asks for before `migration`'s step — an apply when `up`, else
/// a revert — if it asks for one, and records it.
pub(crate) async fn before_step(session: &Session<'_>, migration: &Migration, up: bool) -> Result<(), Error> {
    let config = session.config();
    let Some(policy) = &config.backup else { return Ok(()) };
    let Some(reason) = reason(policy, migration, up) else { return Ok(()) };
    let step = if up { "up" } else { "down" };
    let failed = |reason: String| Error::BackupFailed { migration: migration.folder.clone(), step, reason };
    let started = Instant::now();
    let online = session.db.dialect().online_backup;
    let file = new_file(&policy.dir, &migration.folder, step, if online { "sqlite3" } else { "dump" })
        .map_err(|error| failed(format!("cannot create a file in {}: {error}", policy.dir.display())))?;
    if online {
        session.db.back_up_to(&file).await.map_err(|error| failed(error.to_string()))?;
    } else {
        let url = config.database()?;
        run_command(&policy.command, &file, url).await.map_err(failed)?;
    }
    let shown = file.display().to_string();
    let detail = format!("before {step} ({reason}): {shown}");
    let entry = session.audit_entry(migration, "backup", &detail, started.elapsed());
    session.audit_apart(migration, &entry).await;
    session.shared.observer.on_backup(&Backup {
        version: migration.version,
        migration: migration.folder.clone(),
        step,
        file: shown,
        reason,
        duration_ms: crate::report::millis(started.elapsed()),
    });
    Ok(())
}

/// A file in `dir` no backup has used: `<folder>-<step>-<UTC time>.<extension>`, created
/// empty so that a second backup in the same second takes the next name.
fn new_file(dir: &Path, folder: &str, step: &str, extension: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let at: String = utc_timestamp(SystemTime::now()).chars().filter(|c| !matches!(c, '-' | ':')).collect();
    for attempt in 1..100 {
        let suffix = if attempt == 1 { String::new() } else { format!("-{attempt}") };
        let path = dir.join(format!("{folder}-{step}-{at}{suffix}.{extension}"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok(path),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "every name for this second is taken"))
}

/// Runs the backup command, `{file}` and `{url}` replaced, the password in `PGPASSWORD`;
/// the error is what to tell the user.
async fn run_command(command: &[String], file: &Path, url: &DatabaseUrl) -> Result<(), String> {
    let file_text = file.display().to_string();
    let url_text = url.to_string();
    let args: Vec<String> =
        command.iter().map(|arg| arg.replace("{file}", &file_text).replace("{url}", &url_text)).collect();
    let Some((program, rest)) = args.split_first() else { return Err("[backup] command is empty".into()) };
    let mut process = std::process::Command::new(program);
    process.args(rest).stdin(std::process::Stdio::null());
    if let Some(password) = url.password() {
        process.env("PGPASSWORD", password);
    }
    let program = program.clone();
    let output = tokio::task::spawn_blocking(move || process.output())
        .await
        .map_err(|error| format!("the backup command did not finish: {error}"))?
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => format!(
                "cannot run `{program}`: it is not installed or not on PATH (for the default pg_dump, install \
                 the PostgreSQL client of the server's major version, e.g. Debian's postgresql-client)"
            ),
            _ => format!("cannot run `{program}`: {error}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr.trim().lines().last().unwrap_or("it said nothing on stderr");
        return Err(format!("`{program}` exited with {}: {said}", output.status));
    }
    match std::fs::metadata(file) {
        Ok(meta) if meta.len() > 0 => Ok(()),
        _ => Err(format!("`{program}` succeeded but wrote nothing to {file_text}")),
    }
}
