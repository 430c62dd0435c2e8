//! [`GateFailed`]: the error `wasmig check` ends with when the database is not fit to deploy
//! against, and `up` when it leaves a backfill unfinished. Its exit code names the worst class
//! of what was found: integrity (6), a backfill not done (10), a migration pending (11).

use std::fmt;

use wasmig::{Finding, FindingClass};

#[derive(Debug)]
pub struct GateFailed {
    pub class: FindingClass,
    pub findings: Vec<Finding>,
}

impl GateFailed {
    /// The failure `findings` make, if any; its class is the most severe found.
    pub fn of(findings: &[Finding]) -> Option<GateFailed> {
        let class = findings.iter().map(Finding::class).min()?;
        Some(GateFailed { class, findings: findings.to_vec() })
    }
}

impl fmt::Display for GateFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.class {
            FindingClass::Integrity => "the history needs attention before a deploy",
            FindingClass::Backfill => "a backfill is not done",
            FindingClass::Pending => "a migration is pending",
        };
        write!(f, "{what}:")?;
        for finding in &self.findings {
            write!(f, "\n  - {finding}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GateFailed {}
