//! What a run did: [`Report`] for success, and [`RunError`], which carries the report of what
//! had already committed when a run failed, so the user knows exactly where the database is.

use std::fmt;
use std::time::Duration;

use crate::catalog::Version;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Applied,
    Reverted,
    Verified,
    Backfilled,
    /// The backfill was paused; this run stopped working on it.
    BackfillPaused,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Applied => "applied",
            Action::Reverted => "reverted",
            Action::Verified => "verified",
            Action::Backfilled => "backfilled",
            Action::BackfillPaused => "backfill paused",
        })
    }
}

/// One committed step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub version: Version,
    pub folder: String,
    pub action: Action,
    pub duration: Duration,
    /// Rows and batches, for a backfill.
    pub backfill: Option<(i64, i64)>,
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} in {:.1?}", self.action, self.folder, self.duration)?;
        if let Some((rows, batches)) = self.backfill {
            write!(f, " ({rows} rows in {batches} batches)")?;
        }
        Ok(())
    }
}

/// Everything a run committed, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub steps: Vec<StepReport>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

/// A failed run: the error, and what had committed before it.
#[derive(Debug)]
pub struct RunError {
    pub error: Error,
    pub done: Report,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.done.steps.is_empty() {
            write!(f, "\nnothing was committed by this run")
        } else {
            write!(f, "\ncommitted before the failure:")?;
            for step in &self.done.steps {
                write!(f, "\n  {step}")?;
            }
            Ok(())
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A failure before anything committed converts straight into a [`RunError`].
macro_rules! run_error_from {
    ($($source:ty),+) => {
        $(impl From<$source> for RunError {
            fn from(error: $source) -> Self {
                RunError { error: error.into(), done: Report::default() }
            }
        })+
    };
}

run_error_from!(
    Error,
    crate::config::ConfigError,
    crate::catalog::CatalogError,
    crate::db::ConnectError,
    crate::db::LockError,
    crate::history::HistoryError,
    crate::plan::PlanError,
    crate::sandbox::SandboxError,
    crate::trust::TrustError,
    crate::error::RepairError
);

/// An error followed by each of its causes, `: `-separated (some drivers keep the useful
/// part, such as the server's message, in a cause rather than in their own `Display`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The operating-system account running wasmig, for the history's `applied_by`: the login
/// variables, else (CI containers often set none) the process's uid looked up in /etc/passwd.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(unix)]
fn user_from_uid() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's own uid.
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        (entry_uid == uid).then(|| name.to_owned())
    })
}

#[cfg(not(unix))]
fn user_from_uid() -> Option<String> {
    None
}
