//! Executing one step: a migration applied, reverted or verified inside its own transaction.
//!
//! Invariant 1: the step and its history row commit together, in one transaction and one
//! commit, or not at all. A SQL error, a failing verify, a trap or the guest's own `Err` all
//! roll the whole step back.
//!
//! A [`Step`] is prepared before its transaction opens (a component is compiled or loaded
//! then), so one body runs every kind of step on every kind of migration.

use std::time::Instant;

use crate::db::{Access, DbErrorKind, ScriptRow, Stale, is_truthy};
use crate::error::Error;
use crate::ledger::{LedgerWrite, NewAuditEntry, StartedDirection};
use crate::project::catalog::{Body, ComponentMigration, Migration, SqlScripts};
use crate::project::manifest::TransactionMode;
use crate::report::{Action, Report, StepReport};
use crate::sandbox::{Call, LoadedComponent};

use super::events::{Failure, StepFailure};
use super::session::Session;

/// What a step does to its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Apply,
    Revert,
    /// Re-run an applied migration's verify, read-only.
    Verify,
}

impl Direction {
    /// The step's name in events: the command that runs it.
    fn name(self) -> &'static str {
        match self {
            Direction::Apply => "up",
            Direction::Revert => "down",
            Direction::Verify => "verify",
        }
    }
}

/// A migration's body, ready to run: its scripts, or its component loaded.
enum Prepared<'m> {
    Sql(&'m SqlScripts),
    Component(&'m ComponentMigration, LoadedComponent),
}

/// One step of a run, prepared outside any transaction.
pub(crate) struct Step<'m> {
    migration: &'m Migration,
    direction: Direction,
    body: Prepared<'m>,
}

impl<'m> Step<'m> {
    pub fn prepare(session: &Session<'_>, migration: &'m Migration, direction: Direction) -> Result<Self, Error> {
        let body = match &migration.body {
            Body::Sql(scripts) => Prepared::Sql(scripts),
            Body::Component(component) => {
                Prepared::Component(component, session.load_component(migration, component)?)
            }
        };
        Ok(Step { migration, direction, body })
    }
}

/// Runs `step` in its transaction and records it in `report` (a component's backfill runs
/// later, outside the migration lock). A failed step is told to the observer before its
/// error returns.
pub(crate) async fn execute(session: &Session<'_>, step: &Step<'_>, report: &mut Report) -> Result<(), Error> {
    let Step { migration, direction, ref body } = *step;
    if direction != Direction::Verify {
        super::backup::before_step(session, migration, direction == Direction::Apply).await?;
    }
    let started = Instant::now();
    let ran = match (migration.mode, direction, body) {
        (TransactionMode::Autocommit, Direction::Apply | Direction::Revert, Prepared::Sql(scripts)) => {
            run_autocommit(session, migration, direction, scripts, started).await
        }
        _ => run_in_transaction(session, step, started).await,
    };
    if let Err(error) = ran {
        if direction != Direction::Verify {
            let detail = error.to_string();
            let entry = session.audit_entry(migration, "failed", &detail, started.elapsed());
            session.audit_apart(migration, &NewAuditEntry { ok: false, ..entry }).await;
        }
        session.shared.observer.on_step_failed(&StepFailure {
            step: direction.name(),
            version: migration.version,
            migration: migration.folder.clone(),
            error: Failure::of(&error),
        });
        return Err(error);
    }
    if direction != Direction::Verify {
        // The step may have changed the schema, which can make prepared statements stale.
        session.db.forget_prepared_statements(Stale::ProjectTables);
    }
    let action = match direction {
        Direction::Apply => Action::Applied,
        Direction::Revert => Action::Reverted,
        Direction::Verify => Action::Verified,
    };
    let done = StepReport {
        version: migration.version,
        folder: migration.folder.clone(),
        action,
        duration: started.elapsed(),
        backfill: None,
    };
    session.committed(report, done);
    if direction != Direction::Verify {
        tracing::debug!(migration = %migration, "{action}");
    }
    Ok(())
}

/// The step's body and its history row, in one transaction (invariant 1). The ledger's rows
/// go out with the COMMIT, in its round trip.
async fn run_in_transaction(session: &Session<'_>, step: &Step<'_>, started: Instant) -> Result<(), Error> {
    let Step { migration, direction, ref body } = *step;
    if direction == Direction::Verify {
        return session
            .in_transaction(migration, Access::ReadOnly, async || run_body(session, migration, direction, body).await)
            .await;
    }
    let applied_by = if direction == Direction::Apply { session.applied_by().await } else { String::new() };
    session
        .in_transaction_ending_with(migration, async || {
            run_body(session, migration, direction, body).await?;
            Ok(match direction {
                Direction::Apply => recorded(session, migration, started, &applied_by).await,
                Direction::Revert => forgotten(session, migration, started).await,
                // Returned above: a verify is read-only and writes no ledger row.
                Direction::Verify => Vec::new(),
            })
        })
        .await
}

/// A `transactional = false` step: marked as started in a transaction of its own, its script
/// run a statement at a time outside any transaction, then (verify.sql and) its history row
/// and the mark's removal committed together. A failure leaves the mark, so the next run
/// stops until `wasmig repair` records what a person decided.
async fn run_autocommit(
    session: &Session<'_>,
    migration: &Migration,
    direction: Direction,
    scripts: &SqlScripts,
    started: Instant,
) -> Result<(), Error> {
    let (file, script, way) = match direction {
        Direction::Revert => ("down.sql", scripts.down.as_deref().unwrap_or_default(), StartedDirection::Down),
        Direction::Apply | Direction::Verify => ("up.sql", scripts.up.as_str(), StartedDirection::Up),
    };
    let by = session.applied_by().await;
    let marks = session.started();
    let digest = migration.digest.to_string();
    session
        .in_transaction(migration, Access::ReadWrite, async || {
            Ok(marks.mark(migration.version, &migration.name, &digest, way, &by).await?)
        })
        .await?;
    if let Err(source) = session.db.run_script_autocommit(script).await {
        let invalid_indexes = session.db.invalid_indexes().await.unwrap_or_default();
        return Err(Error::AutocommitFailed {
            migration: migration.folder.clone(),
            version: migration.version,
            file,
            source: Box::new(source),
            invalid_indexes,
        });
    }
    session
        .in_transaction(migration, Access::ReadWrite, async || {
            match direction {
                Direction::Revert => forget(session, migration, started).await?,
                Direction::Apply | Direction::Verify => {
                    if let Some(verify) = &scripts.verify {
                        run_verify_sql(session, migration, verify).await?;
                    }
                    record(session, migration, started, &by).await?;
                }
            }
            Ok(marks.clear(migration.version).await?)
        })
        .await
}

/// The migration's own work for this step, inside its transaction.
async fn run_body(
    session: &Session<'_>,
    migration: &Migration,
    direction: Direction,
    body: &Prepared<'_>,
) -> Result<(), Error> {
    match (direction, body) {
        (Direction::Apply, Prepared::Sql(scripts)) => {
            run_sql(session, migration, "up.sql", &scripts.up).await?;
            match &scripts.verify {
                Some(verify) => run_verify_sql(session, migration, verify).await,
                None => Ok(()),
            }
        }
        (Direction::Apply, Prepared::Component(component, loaded)) => {
            session.call(migration, component, loaded, Call::Up).await?;
            // A migration with a backfill is verified when its last batch commits.
            if component.manifest.backfill.is_none() {
                session.call(migration, component, loaded, Call::Verify).await?;
            }
            Ok(())
        }
        (Direction::Revert, Prepared::Sql(scripts)) => {
            // plan_down refuses a migration without down.sql before anything runs.
            let down = scripts.down.as_deref().unwrap_or_default();
            run_sql(session, migration, "down.sql", down).await
        }
        (Direction::Revert, Prepared::Component(component, loaded)) => {
            session.call(migration, component, loaded, Call::Down).await.map(|_| ())
        }
        (Direction::Verify, Prepared::Sql(scripts)) => match &scripts.verify {
            Some(verify) => run_verify_sql(session, migration, verify).await,
            None => Ok(()),
        },
        (Direction::Verify, Prepared::Component(component, loaded)) => {
            session.call(migration, component, loaded, Call::Verify).await.map(|_| ())
        }
    }
}

/// The reverted migration's history row removed and the revert audited, in its transaction.
async fn forget(session: &Session<'_>, migration: &Migration, started: Instant) -> Result<(), Error> {
    Ok(LedgerWrite::run_all(forgotten(session, migration, started).await, session.db.as_ref()).await?)
}

/// The applied migration's history row and its audit row, in its transaction.
async fn record(session: &Session<'_>, migration: &Migration, started: Instant, applied_by: &str) -> Result<(), Error> {
    Ok(LedgerWrite::run_all(recorded(session, migration, started, applied_by).await, session.db.as_ref()).await?)
}

/// [`forget`]'s writes, made ready to go with the COMMIT.
async fn forgotten(session: &Session<'_>, migration: &Migration, started: Instant) -> Vec<LedgerWrite> {
    let mut writes = session.history().forget_writes(migration.version);
    writes.push(session.audit_write(&session.audit_entry(migration, "reverted", "", started.elapsed())).await);
    writes
}

/// [`record`]'s writes, made ready to go with the COMMIT.
async fn recorded(session: &Session<'_>, migration: &Migration, started: Instant, applied_by: &str) -> Vec<LedgerWrite> {
    vec![
        session.audit_write(&session.audit_entry(migration, "applied", "", started.elapsed())).await,
        session.applied_write(migration, applied_by, started.elapsed()),
    ]
}

async fn run_sql(session: &Session<'_>, migration: &Migration, file: &'static str, script: &str) -> Result<(), Error> {
    session.db.run_script(script).await.map(|_| ()).map_err(|source| {
        let migration = migration.folder.clone();
        if source.kind == DbErrorKind::NotInTransaction {
            Error::NeedsNoTransaction { migration, file, source }
        } else {
            Error::Sql { migration, file, source }
        }
    })
}

/// Runs verify.sql: every statement must succeed, and every row a query returns must
/// have a true first column (`SELECT count(*) = 0 FROM users WHERE email IS NULL`).
async fn run_verify_sql(session: &Session<'_>, migration: &Migration, script: &str) -> Result<(), Error> {
    let rows: Vec<ScriptRow> = session.db.run_script(script).await.map_err(|source| Error::Sql {
        migration: migration.folder.clone(),
        file: "verify.sql",
        source,
    })?;
    match rows.into_iter().find(|row| !is_truthy(row.first_column.as_deref())) {
        Some(row) => Err(Error::VerifyFailed {
            migration: migration.folder.clone(),
            statement: row.statement,
            value: row.first_column,
        }),
        None => Ok(()),
    }
}
