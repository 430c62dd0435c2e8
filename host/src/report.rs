//! What a run did: [`Report`], the steps it committed, in order. Plain data: a failed run's
//! error carries the report of what had committed before it (`RunError`).

use std::fmt;
use std::time::Duration;

use crate::core::Version;

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
