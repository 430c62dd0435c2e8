//! `wasmig test` and `wasmig drift`: run the library's rehearsal on a scratch database and
//! report it, for a person or as the `result`'s data; a broken round trip ends with
//! [`RoundTripBroken`] (exit 12), a drifted schema with [`DriftFound`] (exit 13).

use std::fmt;

use anyhow::Context;
use serde_json::{Value, json};
use wasmig::{Broken, Config, DatabaseUrl, PgEnv, SchemaDifference, ScratchPlace};

use crate::output::Output;
use crate::route::RehearsalCommand;

/// `wasmig test` found a migration that does not come back as it went.
#[derive(Debug)]
pub struct RoundTripBroken(pub String);

impl fmt::Display for RoundTripBroken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the round trip broke at {}", self.0)
    }
}

impl std::error::Error for RoundTripBroken {}

/// `wasmig drift` found the database's schema other than its migrations build.
#[derive(Debug)]
pub struct DriftFound(pub Vec<SchemaDifference>);

impl fmt::Display for DriftFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the database's schema differs from what its migrations build in {} ways:", self.0.len())?;
        self.0.iter().try_for_each(|difference| write!(f, "\n  - {difference}"))
    }
}

impl std::error::Error for DriftFound {}

pub async fn run(output: &Output, config: &Config, command: RehearsalCommand) -> anyhow::Result<()> {
    match command {
        RehearsalCommand::Test { scratch_url, keep } => {
            let place = ScratchPlace { given: scratch_url.map(|text| parse(config, &text)).transpose()?, keep };
            let trip = wasmig::round_trip(config, &place).await.context("wasmig test could not run")?;
            let broken = trip.broken.as_ref().map(|breakage| {
                let (error, differences) = match &breakage.how {
                    Broken::Failed(error) => (Some(crate::output::describe_chain(error.as_ref())), Vec::new()),
                    Broken::NoDown => (None, Vec::new()),
                    Broken::DownLeft(differences) | Broken::ReapplyDiffers(differences) => {
                        (None, differences.iter().map(difference_json).collect())
                    }
                };
                json!({
                    "version": breakage.version,
                    "migration": breakage.folder,
                    "stage": breakage.stage.name(),
                    "how": how_name(&breakage.how),
                    "error": error,
                    "differences": differences,
                })
            });
            output.data(
                || json!({ "scratch": trip.scratch, "kept": trip.kept, "passed": trip.passed, "broken": broken }),
            );
            say_kept(output, trip.kept, &trip.scratch);
            match trip.broken {
                Some(breakage) => Err(RoundTripBroken(breakage.to_string()).into()),
                None => {
                    output.say(format_args!(
                        "round trip passed: {} migrations applied, reverted and applied again on {}",
                        trip.passed.len(),
                        trip.scratch
                    ));
                    Ok(())
                }
            }
        }
        RehearsalCommand::Drift { scratch_url, keep } => {
            let place = ScratchPlace { given: scratch_url.map(|text| parse(config, &text)).transpose()?, keep };
            let drift = wasmig::drift(config, &place).await.context("wasmig drift could not run")?;
            say_kept(output, drift.kept, &drift.scratch);
            output.data(|| {
                json!({
                    "scratch": drift.scratch,
                    "kept": drift.kept,
                    "applied_up_to": drift.applied_up_to,
                    "pending": drift.pending,
                    "namespaces": drift.namespaces,
                    "differences": drift.differences.iter().map(difference_json).collect::<Vec<_>>(),
                })
            });
            if drift.pending > 0 {
                output.say(format_args!(
                    "{} migrations are not applied to this database; they are not part of the comparison",
                    drift.pending
                ));
            }
            if !drift.differences.is_empty() {
                return Err(DriftFound(drift.differences).into());
            }
            match drift.applied_up_to {
                Some(version) => output.say(format_args!(
                    "no drift: the schema ({}) is what migrations up to {version} build",
                    drift.namespaces.join(", ")
                )),
                None => output.say("no drift: no migration is applied, and no managed schema holds anything"),
            }
            Ok(())
        }
    }
}

/// Where a kept scratch database is, for the person who asked to keep it.
fn say_kept(output: &Output, kept: bool, scratch: &str) {
    if kept {
        output
            .say(format_args!("the scratch database is kept as the rehearsal left it: {scratch} (drop it when done)"));
    }
}

fn parse(config: &Config, text: &str) -> anyhow::Result<DatabaseUrl> {
    DatabaseUrl::parse(text, &config.project_dir, &PgEnv::from_process()).context("--scratch-url")
}

fn how_name(how: &Broken) -> &'static str {
    match how {
        Broken::Failed(_) => "failed",
        Broken::NoDown => "no_down",
        Broken::DownLeft(_) => "down_left_schema",
        Broken::ReapplyDiffers(_) => "reapply_differs",
    }
}

/// A schema difference as the JSON schema gives it (docs/json.md).
pub fn difference_json(difference: &SchemaDifference) -> Value {
    json!({
        "change": difference.change(),
        "kind": difference.object.kind.name(),
        "namespace": difference.object.schema,
        "table": difference.object.table,
        "name": difference.object.name,
        "expected": difference.expected,
        "found": difference.found,
    })
}
