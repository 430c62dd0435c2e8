//! What a run did: [`Report`], the steps it committed, in order. Plain data: a failed run's
//! error carries the report of what had committed before it (`RunError`). A step serialises as
//! the object `--format json` shows (docs/json.md): durations in milliseconds, versions as
//! strings.

pub mod preview;
pub mod repair;
pub mod status;

use std::fmt;
use std::time::Duration;

use crate::core::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Applied,
    Reverted,
    Verified,
    Backfilled,
    /// The backfill was paused; this run stopped working on it.
    BackfillPaused,
    /// Recorded as applied without running (`wasmig stamp`).
    Stamped,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Applied => "applied",
            Action::Reverted => "reverted",
            Action::Verified => "verified",
            Action::Backfilled => "backfilled",
            Action::BackfillPaused => "backfill paused",
            Action::Stamped => "stamped",
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

impl serde::Serialize for StepReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("action", &self.action)?;
        map.serialize_entry("version", &self.version)?;
        map.serialize_entry("migration", &self.folder)?;
        map.serialize_entry("duration_ms", &millis(self.duration))?;
        if let Some((rows, batches)) = self.backfill {
            map.serialize_entry("rows", &rows)?;
            map.serialize_entry("batches", &batches)?;
        }
        map.end()
    }
}

/// A duration as whole milliseconds, the unit of every duration in JSON output.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
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
