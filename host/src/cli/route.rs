//! [`Route`]: what each command needs before it runs (nothing, the project's artifacts, a
//! database, or a scratch database beside it), made from the parsed [`Command`].

use std::path::PathBuf;

use wasmig::{Decision, OtherTool, Version};

use crate::args::{BackfillAction, Command, DatabaseArgs, RepairDecision, StampTarget, ThrottleArgs, TrustArgs};

/// A command, sorted by what it needs before it runs.
pub enum Route {
    Init,
    New {
        name: String,
        rust: bool,
        crate_dir: Option<PathBuf>,
    },
    Keygen {
        out: PathBuf,
    },
    /// The CI side: the project's files, no database.
    Artifacts(ArtifactCommand),
    /// A connection to the project's database.
    Database(DatabaseCommand, DatabaseArgs),
    /// A rehearsal on a scratch database beside the project's.
    Rehearsal(RehearsalCommand, DatabaseArgs),
}

pub enum RehearsalCommand {
    Test { scratch_url: Option<String>, keep: bool },
    Drift { scratch_url: Option<String>, keep: bool },
}

pub enum ArtifactCommand {
    Hash,
    Sign { key: Option<PathBuf>, key_env: Option<String> },
    Verify { trust: TrustArgs },
    Grants,
}

pub enum DatabaseCommand {
    Status,
    History { audit: bool },
    Stamp { target: StampTarget, reason: String },
    Plan { to: Option<Version> },
    Check { fail_on_pending: bool },
    Up { to: Option<Version>, dry_run: bool, no_backfill: bool, throttle: ThrottleArgs },
    Down { to: Option<Version>, steps: Option<usize>, dry_run: bool },
    Verify,
    Repair { version: Version, decision: RepairDecision, reason: String },
    RepairDiff { version: Version },
    Backfill(BackfillAction),
}

impl From<Command> for Route {
    fn from(command: Command) -> Route {
        match command {
            Command::Init { .. } => Route::Init,
            Command::New { name, sql: _, rust, crate_dir, .. } => Route::New { name, rust, crate_dir },
            Command::Keygen { out } => Route::Keygen { out },
            Command::Hash { .. } => Route::Artifacts(ArtifactCommand::Hash),
            Command::Sign { key, key_env, .. } => Route::Artifacts(ArtifactCommand::Sign { key, key_env }),
            Command::VerifyArtifacts { trust, .. } => Route::Artifacts(ArtifactCommand::Verify { trust }),
            Command::Grants { .. } => Route::Artifacts(ArtifactCommand::Grants),
            Command::Status { db } => Route::Database(DatabaseCommand::Status, db),
            Command::History { audit, db } => Route::Database(DatabaseCommand::History { audit }, db),
            Command::Stamp { version, from, reason, db } => {
                let target = match (version, from.as_deref().and_then(OtherTool::parse)) {
                    (_, Some(tool)) => StampTarget::From(tool),
                    (Some(version), None) => StampTarget::UpTo(version),
                    // clap requires one of the two.
                    (None, None) => StampTarget::UpTo(Version(0)),
                };
                Route::Database(DatabaseCommand::Stamp { target, reason }, db)
            }
            Command::Plan { to, db } => Route::Database(DatabaseCommand::Plan { to }, db),
            Command::Check { fail_on_pending, db } => Route::Database(DatabaseCommand::Check { fail_on_pending }, db),
            Command::Up { to, dry_run, no_backfill, throttle, db } => {
                Route::Database(DatabaseCommand::Up { to, dry_run, no_backfill, throttle }, db)
            }
            Command::Down { to, steps, dry_run, db } => {
                Route::Database(DatabaseCommand::Down { to, steps, dry_run }, db)
            }
            Command::Verify { db } => Route::Database(DatabaseCommand::Verify, db),
            Command::Repair { version, diff: true, db, .. } => {
                Route::Database(DatabaseCommand::RepairDiff { version }, db)
            }
            Command::Repair { version, accept_digest, retry, mark_done, reason, db, .. } => {
                // clap requires a reason for every decision.
                let reason = reason.unwrap_or_default();
                let decision = match (accept_digest, retry, mark_done) {
                    (Some(digest), _, _) => RepairDecision::AcceptDigest(digest),
                    (None, true, _) => RepairDecision::Interrupted(Decision::Retry),
                    (None, false, _) => RepairDecision::Interrupted(Decision::MarkDone),
                };
                Route::Database(DatabaseCommand::Repair { version, decision, reason }, db)
            }
            Command::Backfill { action, db } => Route::Database(DatabaseCommand::Backfill(action), db),
            Command::Test { scratch, db } => {
                Route::Rehearsal(RehearsalCommand::Test { scratch_url: scratch.scratch_url, keep: scratch.keep }, db)
            }
            Command::Drift { scratch, db } => {
                Route::Rehearsal(RehearsalCommand::Drift { scratch_url: scratch.scratch_url, keep: scratch.keep }, db)
            }
        }
    }
}
