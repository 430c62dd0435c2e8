//! [`Migrator`]: the API the CLI and library users call. It owns one run's catalog, trust
//! report and database connection, and orders the work: lock, ensure the ledger, read
//! history, plan, execute each step, release the lock on every path.
//!
//! Invariant 6 (concurrent runs apply each migration once) holds because history is read and
//! the plan made only after the lock is taken. A failed run's [`RunError`] is built here, once,
//! from the error and the report of what had committed. Its backfill controls are in
//! `backfills.rs`.

mod backfills;
mod open;
mod repair;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::core::Version;
use crate::db::{Access, Backend, Database, HeldLock, Schema, Transport};
use crate::error::{Error, RunError};
use crate::ledger::foreign::{self, OtherTool};
use crate::ledger::lock::{self, LockMode};
use crate::ledger::{
    AppliedMigration, Audit, AuditEntry, BackfillState, BackfillStatus, HistoryTable, Repair, schema,
};
use crate::project::manifest::Kind;
use crate::plan::{self, DownTarget};
use crate::project::catalog::{Catalog, Migration};
use crate::report::{Action, Report, StepReport};
use crate::report::preview::{PlannedStep, Preview, Way};
use crate::report::status::{self, Finding, FindingClass, StatusEntry};
use crate::run::events::Observer;
use crate::run::{backfill, backup};
use crate::run::executor::{self, Direction, Step};
use crate::run::session::{Session, Shared};
use crate::trust::TrustReport;

pub struct Migrator {
    shared: Shared,
    catalog: Catalog,
    /// The artifacts' verification, done once when the catalog is read.
    trust: TrustReport,
    db: Arc<dyn Database>,
    /// The ledger's tables pinned to the server's current schema, once the lock is taken.
    ledger: OnceLock<HistoryTable>,
}

/// Whether `up` works on backfills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfills {
    /// Run them (after the schema steps, outside the lock), as one more worker.
    Run,
    /// Apply schema steps only; `wasmig backfill run` workers do the backfills.
    Leave,
}

/// How a pass of schema steps under the lock ended.
enum SchemaPass {
    Done,
    /// The next step needs this backfill done first.
    WaitsFor(Version),
}

/// What to do about a step interrupted outside a transaction (`wasmig repair --retry` or
/// `--mark-done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Clear the mark: the next run runs the step again (after a person undid what it left).
    Retry,
    /// Record the step as done: a person checked that it completed.
    MarkDone,
}

impl Migrator {
    /// Lets `stop` ask the run to stop: once it is set, the run applies no further step and
    /// its backfill workers stop after their current batch, ending with
    /// [`Error::StopRequested`]. The CLI sets it on Ctrl-C and SIGTERM.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Migrator {
        self.shared.stop = stop;
        self
    }

    /// Sends backfill progress to `observer` instead of the log.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Migrator {
        self.shared.observer = observer;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn backend(&self) -> Backend {
        self.db.dialect().backend
    }

    /// How the session reaches the database: whether it is encrypted, and what was checked.
    pub fn transport(&self) -> Transport {
        self.db.transport()
    }

    /// The verification of the project's artifacts against `wasmig.sum` and the trust policy.
    pub fn trust(&self) -> &TrustReport {
        &self.trust
    }

    /// A session on this migrator's connection. The ledger's tables are as pinned by a locked
    /// run, else as the project file names them (a fresh session, which holds no temporary
    /// tables).
    fn session(&self) -> Session<'_> {
        let ledger = self.ledger.get().unwrap_or(&self.shared.config.history).clone();
        Session::new(&self.shared, self.db.clone(), ledger)
    }

    /// Runs `work` with a report of its own; a failure carries what had committed.
    async fn reporting<T>(
        &self,
        work: impl AsyncFnOnce(&mut Report) -> Result<T, Error>,
    ) -> Result<(T, Report), RunError> {
        let mut report = Report::default();
        // Boxed: a run's futures nest deep (lock, session, step, backfill, chunk, batch, the
        // component call), and a caller's own future would otherwise carry the whole layout.
        match Box::pin(work(&mut report)).await {
            Ok(value) => Ok((value, report)),
            Err(error) => Err(RunError::new(error, report)),
        }
    }

    /// Runs `work` on verified artifacts, holding the lock, with a report of its own.
    async fn run_locked(
        &self,
        work: impl AsyncFnOnce(&Session<'_>, &mut Report) -> Result<(), Error>,
    ) -> Result<Report, RunError> {
        self.reporting(async |report| {
            self.trust.ensure()?;
            self.locked(async |session| work(session, report).await).await
        })
        .await
        .map(|((), report)| report)
    }

    /// Runs `work` holding the migration lock, with the ledger's tables in place, on a session
    /// whose commits carry the lock's check; releases the lock whatever `work` returns.
    async fn locked<T>(&self, work: impl AsyncFnOnce(&Session<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let config = &self.shared.config;
        let name = config.history.lock_name();
        let lock: Box<dyn HeldLock> = match config.lock_mode {
            LockMode::Table { lease } if self.db.dialect().backend == Backend::Postgres => {
                let url = config.database()?;
                lock::take(url, config.connect, &config.history, &name, config.lock_timeout, lease).await?
            }
            LockMode::Table { .. } | LockMode::Session => self.db.lock(&name, config.lock_timeout).await?,
        };
        let result = match self.pin_ledger().await {
            Ok(()) => {
                let session = self.session().holding(lock.commit_check());
                match schema::ensure(session.db.as_ref(), &session.ledger).await {
                    Ok(()) => work(&session).await,
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => Err(error),
        };
        if let Err(error) = lock.release().await {
            tracing::warn!(%error, "could not release the migration lock; it is freed when this process exits");
        }
        result
    }

    /// Pins the ledger's tables to the server's current schema, once per migrator. Called after
    /// the trust check, so no statement reaches the database before it (invariant 2), and
    /// before this run applies anything, so no migration has made a temporary table yet.
    async fn pin_ledger(&self) -> Result<(), Error> {
        if self.ledger.get().is_none() {
            let history = self.shared.config.history.clone();
            let table = schema::pinned(self.db.as_ref(), history).await.map_err(|source| Error::Sql {
                migration: "(none)".into(),
                file: "the history table's schema",
                source,
            })?;
            let _ = self.ledger.set(table);
        }
        Ok(())
    }

    /// The migrations `up` would apply, without taking the lock or changing anything.
    pub async fn plan_up(&self, target: Option<Version>) -> Result<Vec<&Migration>, Error> {
        let applied = self.applied_if_any().await?;
        Ok(plan::plan_up(&self.catalog, &applied, target)?)
    }

    /// What `up` would do, step by step with its SQL, grants and limits, without taking the
    /// lock or changing anything.
    pub async fn preview_up(&self, target: Option<Version>) -> Result<Preview, Error> {
        let applied = self.applied_if_any().await?;
        let steps = plan::plan_up(&self.catalog, &applied, target)?;
        let backfills = self.backfills_of(&applied).await?;
        let resumes = backfills
            .iter()
            .filter(|b| b.state == BackfillState::Running && self.catalog.get(b.version).is_some())
            .map(|b| b.version)
            .collect();
        Ok(self.preview(Way::Up, resumes, steps))
    }

    /// What `down` would do, without taking the lock or changing anything.
    pub async fn preview_down(&self, target: DownTarget) -> Result<Preview, Error> {
        let applied = self.applied_if_any().await?;
        let steps = plan::plan_down(&self.catalog, &applied, target)?;
        Ok(self.preview(Way::Down, Vec::new(), steps))
    }

    fn preview(&self, way: Way, resumes: Vec<Version>, steps: Vec<&Migration>) -> Preview {
        let config = &self.shared.config;
        let planned = |migration: &Migration| PlannedStep {
            backup: config.backup.as_ref().and_then(|policy| backup::reason(policy, migration, way == Way::Up)),
            ..PlannedStep::of(migration, way, &config.limits)
        };
        Preview { direction: way, resumes, steps: steps.into_iter().map(planned).collect() }
    }

    /// Applies pending migrations up to `target` (all when `None`), and runs their backfills
    /// and any an earlier run left unfinished. A paused backfill is left paused; `up` stops
    /// before a migration that needs it finished (expand/contract).
    pub async fn up(&self, target: Option<Version>) -> Result<Report, RunError> {
        self.up_with(target, Backfills::Run).await
    }

    /// [`Migrator::up`], choosing whether this run works on backfills. The migration lock is
    /// held while schema steps apply, never while a backfill runs: a backfill's batches commit
    /// on their chunks' leases, so another deploy may apply its own migrations meanwhile, and
    /// any number of `wasmig backfill run` workers may share the work.
    pub async fn up_with(&self, target: Option<Version>, backfills: Backfills) -> Result<Report, RunError> {
        self.reporting(async |report| self.apply_up(target, backfills, report).await).await.map(|(_, report)| report)
    }

    /// [`Migrator::up_with`], then the backfills it leaves not done, as
    /// [`Migrator::backfills_left`] reports them: read only when a migration applied when the
    /// run ended declares a backfill (a run that succeeded has every applied migration on
    /// disk), so a project of plain SQL migrations reads its history once.
    pub async fn up_leaving(
        &self,
        target: Option<Version>,
        backfills: Backfills,
    ) -> Result<(Report, Vec<Finding>), RunError> {
        let (applied, report) = self.reporting(async |report| self.apply_up(target, backfills, report).await).await?;
        let declares_backfill = |version: &Version| self.catalog.get(*version).is_some_and(|m| m.backfill().is_some());
        if !applied.iter().any(declares_backfill) {
            return Ok((report, Vec::new()));
        }
        match self.backfills_left().await {
            Ok(left) => Ok((report, left)),
            Err(error) => Err(RunError::new(error, report)),
        }
    }

    /// The work of [`Migrator::up_with`]; returns the versions applied when it ended.
    async fn apply_up(
        &self,
        target: Option<Version>,
        backfills: Backfills,
        report: &mut Report,
    ) -> Result<Vec<Version>, Error> {
        self.trust.ensure()?;
        if let Some(applied) = self.nothing_to_lock_for(target).await? {
            if backfills == Backfills::Run {
                backfill::resume_unfinished(&self.session(), &self.catalog, &applied, report).await?;
            }
            return Ok(applied);
        }
        let mut waited_for = Vec::new();
        loop {
            let (pass, applied) = self
                .locked(async |session| self.apply_schema_steps(session, target, backfills, &waited_for, report).await)
                .await?;
            if backfills == Backfills::Leave {
                return Ok(applied);
            }
            backfill::resume_unfinished(&self.session(), &self.catalog, &applied, report).await?;
            match pass {
                SchemaPass::Done => return Ok(applied),
                SchemaPass::WaitsFor(version) => waited_for.push(version),
            }
        }
    }

    /// The versions applied, when a look without the lock finds nothing to do under it: no
    /// migration to apply up to `target`, no step left interrupted, the ledger's tables as this
    /// wasmig makes them. A deploy whose migrations are all applied then neither opens the lock
    /// session nor waits behind another run's lock. Anything else (including an error, which
    /// the locked pass reports with the state read under the lock) is `None`: take the lock
    /// and look again (invariant 6 holds, as what is applied is decided only under it).
    async fn nothing_to_lock_for(&self, target: Option<Version>) -> Result<Option<Vec<Version>>, Error> {
        let looked = async {
            // Pinned as under the lock: a backfill this run resumes writes the ledger too.
            self.pin_ledger().await?;
            let session = self.session();
            let (history, started) = (session.history(), session.started());
            // Sent together, so that their round trips overlap; read in order.
            let (current, applied, interrupted) = tokio::join!(
                schema::is_current(session.db.as_ref(), &session.ledger),
                history.applied(),
                started.list()
            );
            if !current? {
                return Ok(None);
            }
            let applied = applied?;
            if !plan::plan_up(&self.catalog, &applied, target).is_ok_and(|steps| steps.is_empty()) {
                return Ok(None);
            }
            if !interrupted?.is_empty() {
                return Ok(None);
            }
            Ok::<_, Error>(Some(applied.iter().map(|row| row.version).collect()))
        };
        match looked.await {
            Ok(found) => Ok(found),
            Err(error) => {
                tracing::debug!(%error, "looking without the lock failed; taking it");
                Ok(None)
            }
        }
    }

    /// Under the lock: applies pending schema steps in order, up to and including one with a
    /// backfill (when this run works on backfills), or up to one that needs a backfill not
    /// done yet; the caller then runs the backfills outside the lock and calls again (once per
    /// backfill: one still not done after that, or a paused one, stops the run). Returns, with
    /// how the pass ended, the versions applied when it ended, so that nothing reads the
    /// history again to learn them.
    async fn apply_schema_steps(
        &self,
        session: &Session<'_>,
        target: Option<Version>,
        backfills: Backfills,
        waited_for: &[Version],
        report: &mut Report,
    ) -> Result<(SchemaPass, Vec<Version>), Error> {
        let applied = session.history().applied().await?;
        let steps = plan::plan_up(&self.catalog, &applied, target)?;
        let mut versions: Vec<Version> = applied.iter().map(|row| row.version).collect();
        self.refuse_interrupted(session).await?;
        for migration in steps {
            if self.shared.stop_requested() {
                let after = format!("before {}", migration.folder);
                return Err(Error::StopRequested { after, resume: "wasmig up".into() });
            }
            let may_wait = backfills == Backfills::Run;
            if let Some(version) = self.backfill_to_wait_for(session, migration, &applied, may_wait, waited_for).await? {
                return Ok((SchemaPass::WaitsFor(version), versions));
            }
            let step = Step::prepare(session, migration, Direction::Apply)?;
            executor::execute(session, &step, report).await?;
            versions.push(migration.version);
            // Its backfill runs before the migrations after it, as a later one may rely on
            // the data, but outside the lock.
            if backfills == Backfills::Run && migration.backfill().is_some() {
                return Ok((SchemaPass::WaitsFor(migration.version), versions));
            }
        }
        Ok((SchemaPass::Done, versions))
    }

    /// The backfill `migration` needs done that a backfill pass of this run may still finish
    /// (`may_wait`); an error when one it needs is paused, failed, was already waited for and
    /// is still not done, or is left to workers. `applied` is the history as the pass began:
    /// a migration with a backfill that the pass applies ends the pass, so a backfill this
    /// pass could wait for is in it.
    async fn backfill_to_wait_for(
        &self,
        session: &Session<'_>,
        migration: &Migration,
        applied: &[AppliedMigration],
        may_wait: bool,
        waited_for: &[Version],
    ) -> Result<Option<Version>, Error> {
        for &needed in &migration.needs_backfills {
            let state = session.backfills().state(needed).await?;
            let is_applied = applied.iter().any(|row| row.version == needed);
            match state {
                Some(BackfillState::Done) => continue,
                Some(BackfillState::Running) | None if may_wait && is_applied && !waited_for.contains(&needed) => {
                    return Ok(Some(needed));
                }
                _ => {}
            }
            let needs = self.catalog.get(needed).map_or_else(|| needed.to_string(), |m| m.folder.clone());
            return Err(Error::BackfillUnfinished {
                migration: migration.folder.clone(),
                needs,
                state: state.map_or("not started".to_owned(), |s| s.to_string()),
            });
        }
        Ok(None)
    }

    /// Refuses to run while a step that ran outside a transaction was left unfinished: what it
    /// did has committed, and only a person can say whether it completed.
    async fn refuse_interrupted(&self, session: &Session<'_>) -> Result<(), Error> {
        let Some(step) = session.started().list().await?.into_iter().next() else { return Ok(()) };
        let invalid_indexes = session.db.invalid_indexes().await.unwrap_or_default();
        Err(Error::Interrupted {
            migration: self.catalog.get(step.version).map_or_else(|| format!("{}_{}", step.version, step.name), |m| m.folder.clone()),
            step: Box::new(step),
            invalid_indexes,
        })
    }

    /// Stamps what `tool` had applied to this database, read from its own history table: a
    /// team moving to wasmig keeps its history. Every migration up to the latest it applied
    /// must be one it applied (see [`plan::take_over`]); the reason names the tool's table.
    pub async fn stamp_from(&self, tool: OtherTool, reason: &str) -> Result<Report, RunError> {
        let target = async {
            self.trust.ensure()?;
            let ids = foreign::applied_by(self.db.as_ref(), tool).await?;
            Ok::<_, Error>(plan::take_over(&self.catalog, tool, &ids)?)
        };
        let target = target.await.map_err(|error| RunError::new(error, Report::default()))?;
        self.stamp(target, &format!("taken over from {tool}'s {}: {reason}", tool.table())).await
    }

    /// Marks pending migrations up to and including `target` as applied without running them,
    /// for a database that already has their schema (a baseline, or a move from another tool).
    /// Each is recorded in the history, as applied by a stamp, and in the audit trail with
    /// `reason`; a backfill it declares is recorded as done.
    pub async fn stamp(&self, target: Version, reason: &str) -> Result<Report, RunError> {
        self.run_locked(async |session, report| {
            let applied = session.history().applied().await?;
            let steps = plan::plan_up(&self.catalog, &applied, Some(target))?;
            self.refuse_interrupted(session).await?;
            let stamped_by = format!("{} (stamped)", session.applied_by().await);
            let detail = format!("stamped as applied without running: {reason}");
            for migration in steps {
                let started = std::time::Instant::now();
                session
                    .in_transaction(migration, Access::ReadWrite, async || {
                        session.record_applied(migration, &stamped_by, Duration::ZERO).await?;
                        if migration.backfill().is_some() {
                            let backfills = session.backfills();
                            backfills.start(migration.version, None, &[]).await?;
                            backfills.finish(migration.version).await?;
                        }
                        session.audit(&session.audit_entry(migration, "stamped", &detail, Duration::ZERO)).await
                    })
                    .await?;
                let step = StepReport {
                    version: migration.version,
                    folder: migration.folder.clone(),
                    action: Action::Stamped,
                    duration: started.elapsed(),
                    backfill: None,
                };
                session.committed(report, step);
            }
            Ok(())
        })
        .await
    }

    /// The audit trail, oldest first (empty before the ledger exists).
    pub async fn audit(&self) -> Result<Vec<AuditEntry>, Error> {
        let session = self.session();
        Ok(Audit::new(session.db.as_ref(), &session.ledger).entries().await?)
    }

    /// Reverts applied migrations, newest first.
    pub async fn down(&self, target: DownTarget) -> Result<Report, RunError> {
        self.run_locked(async |session, report| {
            let applied = session.history().applied().await?;
            let steps = plan::plan_down(&self.catalog, &applied, target)?;
            self.refuse_interrupted(session).await?;
            for migration in steps {
                if self.shared.stop_requested() {
                    let after = format!("before reverting {}", migration.folder);
                    return Err(Error::StopRequested { after, resume: "wasmig down".into() });
                }
                let step = Step::prepare(session, migration, Direction::Revert)?;
                executor::execute(session, &step, report).await?;
            }
            Ok(())
        })
        .await
    }

    /// Runs every applied migration's verify again, read-only.
    pub async fn verify(&self) -> Result<Report, RunError> {
        self.reporting(async |report| {
            self.trust.ensure()?;
            let applied = self.applied_if_any().await?;
            plan::check_applied(&self.catalog, &applied)?;
            let session = self.session();
            for row in &applied {
                if let Some(migration) = self.catalog.get(row.version) {
                    let step = Step::prepare(&session, migration, Direction::Verify)?;
                    executor::execute(&session, &step, report).await?;
                }
            }
            Ok(())
        })
        .await
        .map(|((), report)| report)
    }

    /// Every recorded repair.
    pub async fn repairs(&self) -> Result<Vec<Repair>, Error> {
        let session = self.session();
        let history = session.history();
        if history.exists().await? { Ok(history.repairs().await?) } else { Ok(Vec::new()) }
    }

    /// The history table's rows (empty when it does not exist yet).
    pub async fn applied(&self) -> Result<Vec<AppliedMigration>, Error> {
        self.applied_if_any().await
    }

    async fn applied_if_any(&self) -> Result<Vec<AppliedMigration>, Error> {
        Ok(self.session().history().applied_if_created().await?.unwrap_or_default())
    }

    /// The backfills of `applied`'s migrations: none to read when every one is plain SQL,
    /// since only a component declares a backfill.
    async fn backfills_of(&self, applied: &[AppliedMigration]) -> Result<Vec<BackfillStatus>, Error> {
        if applied.iter().all(|row| row.kind == Kind::Sql) { Ok(Vec::new()) } else { self.backfill_status().await }
    }

    /// Every migration in the project or the history, with its state.
    pub async fn status(&self) -> Result<Vec<StatusEntry>, Error> {
        let session = self.session();
        let (history, started) = (session.history(), session.started());
        // Sent together, so that their round trips overlap; a missing table is no step left
        // interrupted either.
        let (applied, interrupted) = tokio::join!(history.applied_if_created(), started.list());
        let Some(applied) = applied? else {
            return Ok(status::status_of(&self.catalog, &[], &[], &[]));
        };
        let interrupted = interrupted?;
        let backfills = self.backfills_of(&applied).await?;
        Ok(status::status_of(&self.catalog, &applied, &backfills, &interrupted))
    }

    /// The database's schema without the engine's own tables, and the namespaces those are in
    /// (where the project keeps its history is a namespace it manages).
    pub async fn schema(&self) -> Result<(Schema, BTreeSet<String>), Error> {
        let session = self.session();
        let full = session.db.schema().await.map_err(|source| Error::Schema {
            database: self.shared.config.database().map(ToString::to_string).unwrap_or_default(),
            source,
        })?;
        let ledger = full
            .objects()
            .filter(|(object, _)| session.ledger.owns(&object.schema, &object.table))
            .map(|(object, _)| object.schema.clone())
            .collect();
        Ok((full.without_tables(|namespace, table| session.ledger.owns(namespace, table)), ledger))
    }

    /// Reverts every applied migration and drops the ledger's tables: a scratch database
    /// the user gave a rehearsal is left as empty as it was.
    pub(crate) async fn vacate(&self) -> Result<(), Error> {
        let applied = self.applied_if_any().await?.len();
        if applied > 0 {
            self.down(DownTarget::Steps(applied)).await.map_err(|run| run.error)?;
        }
        let session = self.session();
        Ok(schema::remove(session.db.as_ref(), &session.ledger).await?)
    }

    /// The backfills of applied migrations that are not done, as the gate reports them: what
    /// `up` leaves for workers (or paused), read without the rest of the gate's checks.
    pub async fn backfills_left(&self) -> Result<Vec<Finding>, Error> {
        let applied = self.applied_if_any().await?;
        let backfills = self.backfills_of(&applied).await?;
        let entries = status::status_of(&self.catalog, &applied, &backfills, &[]);
        Ok(status::findings(&entries, false).into_iter().filter(|f| f.class() == FindingClass::Backfill).collect())
    }

    /// What a deploy gate refuses of the database's state: changed, missing or out-of-order
    /// migrations, backfills not done, and with `pending` the migrations not applied yet.
    pub async fn check(&self, pending: bool) -> Result<Vec<Finding>, Error> {
        Ok(status::findings(&self.status().await?, pending))
    }
}
