//! [`Migrator`]: the API the CLI and library users call. It owns one run's catalog, database
//! connection and sandbox, and orders the work: lock, ensure history, read history, plan,
//! execute each step, release the lock on every path.
//!
//! Invariant 6 (concurrent runs apply each migration once) holds because history is read and
//! the plan made only after the lock is taken.

use std::sync::{Arc, OnceLock};

use crate::backfill::events::{BackfillObserver, LogObserver};
use crate::backfill::store::{BackfillState, BackfillStatus};
use crate::catalog::{Body, Catalog, Migration, Version};
use crate::config::Config;
use crate::db::Access;
use crate::db::{self, Backend, Database, HeldLock, LockCheck};
use crate::digest::Digest;
use crate::error::Error;
use crate::error::RepairError;
use crate::history::{AppliedMigration, History, HistoryTable, Repair};
use crate::plan::{self, DownTarget};
use crate::report::{Report, RunError};
use crate::sandbox::Sandbox;
use crate::trust::{self, Date, TrustReport};

pub struct Migrator {
    pub(crate) config: Config,
    pub(crate) catalog: Catalog,
    /// The artifacts' verification, done once when the catalog is read.
    pub(crate) trust: TrustReport,
    pub(crate) db: Arc<dyn Database>,
    sandbox: OnceLock<Sandbox>,
    /// Who applies migrations, asked of the database once per run.
    applied_by: tokio::sync::OnceCell<String>,
    /// Where backfill progress goes.
    pub(crate) observer: Arc<dyn BackfillObserver>,
    /// While the migration lock is held: the check each migration's COMMIT carries.
    pub(crate) lock_check: std::sync::Mutex<Option<LockCheck>>,
    /// The history table pinned to the server's current schema, once the lock is taken.
    history_table: OnceLock<HistoryTable>,
}

/// Where a migration stands, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Pending,
    Applied {
        applied_at: String,
    },
    /// Applied, but the files changed since (invariant 5).
    Changed {
        recorded: String,
        found: String,
    },
    /// Applied, but its folder is gone.
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusEntry {
    pub version: Version,
    pub folder: String,
    pub kind: String,
    pub state: State,
    pub backfill: Option<BackfillStatus>,
}

impl Migrator {
    /// Reads the project's migrations and connects to its database.
    pub async fn open(config: Config) -> Result<Migrator, Error> {
        let catalog = Catalog::load(&config.project_dir)?;
        let trust = trust::check(&catalog, &config.trust, Date::today());
        let db = db::connect(config.database()?, config.connect_timeout).await?;
        Ok(Migrator {
            config,
            catalog,
            trust,
            db,
            sandbox: OnceLock::new(),
            applied_by: tokio::sync::OnceCell::new(),
            observer: Arc::new(LogObserver),
            lock_check: std::sync::Mutex::new(None),
            history_table: OnceLock::new(),
        })
    }

    /// The same project and settings on a connection of its own: for a backfill worker that
    /// runs beside this one.
    pub(crate) async fn sibling(&self) -> Result<Migrator, Error> {
        let db = db::connect(self.config.database()?, self.config.connect_timeout).await?;
        Ok(Migrator {
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            trust: self.trust.clone(),
            db,
            sandbox: OnceLock::new(),
            applied_by: tokio::sync::OnceCell::new(),
            observer: self.observer.clone(),
            lock_check: std::sync::Mutex::new(None),
            history_table: self.history_table.clone(),
        })
    }

    /// Sends backfill progress to `observer` instead of the log.
    pub fn with_observer(mut self, observer: Arc<dyn BackfillObserver>) -> Migrator {
        self.observer = observer;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub(crate) fn history(&self) -> History<'_> {
        History::new(self.db.as_ref(), self.history_table())
    }

    /// The sandbox, created on first use so that SQL-only runs never start an engine.
    pub(crate) fn sandbox(&self) -> Result<&Sandbox, Error> {
        if let Some(sandbox) = self.sandbox.get() {
            return Ok(sandbox);
        }
        let sandbox = Sandbox::new(self.config.cache_dir.clone())?;
        Ok(self.sandbox.get_or_init(|| sandbox))
    }

    /// Who applies migrations, for the history: the OS account, and on PostgreSQL the role.
    pub(crate) async fn applied_by(&self) -> String {
        self.applied_by
            .get_or_init(|| async {
                let user = crate::report::os_user();
                match (self.db.backend(), self.db.current_user().await) {
                    (Backend::Postgres, Ok(role)) => format!("{user} as {role}"),
                    _ => user,
                }
            })
            .await
            .clone()
    }

    /// Runs `work` holding the migration lock, with the history tables in place; releases
    /// the lock whatever `work` returns.
    async fn locked<T>(&self, work: impl AsyncFnOnce() -> Result<T, RunError>) -> Result<T, RunError> {
        let lock: Box<dyn HeldLock> = self.db.lock(&self.config.history.lock_name(), self.config.lock_timeout).await?;
        self.set_lock_check(lock.commit_check());
        let ready = match self.pin_history_schema().await {
            Ok(()) => self.history().ensure().await.map_err(Error::from),
            Err(error) => Err(error),
        };
        let result = match ready {
            Ok(()) => work().await,
            Err(error) => Err(error.into()),
        };
        self.set_lock_check(None);
        if let Err(error) = lock.release().await {
            tracing::warn!(%error, "could not release the migration lock; it is freed when this process exits");
        }
        result
    }

    /// Pins the history table to the server's current schema, once per migrator. Called with
    /// the lock held, so after the trust check: no statement reaches the database before it
    /// (invariant 2), and no migration has run yet to make a temporary table.
    async fn pin_history_schema(&self) -> Result<(), Error> {
        if self.history_table.get().is_none() {
            let table = resolve_history_schema(self.db.as_ref(), self.config.history.clone()).await?;
            let _ = self.history_table.set(table);
        }
        Ok(())
    }

    /// The engine's tables: pinned to a schema once a locked run resolved it, else as the
    /// project file names them (a fresh session, which holds no temporary tables).
    pub(crate) fn history_table(&self) -> &HistoryTable {
        self.history_table.get().unwrap_or(&self.config.history)
    }

    fn set_lock_check(&self, check: Option<LockCheck>) {
        match self.lock_check.lock() {
            Ok(mut held) => *held = check,
            Err(poisoned) => *poisoned.into_inner() = check,
        }
    }

    /// The migrations `up` would apply, without taking the lock or changing anything.
    pub async fn plan_up(&self, target: Option<Version>) -> Result<Vec<&Migration>, Error> {
        let applied = self.applied_if_any().await?;
        Ok(plan::plan_up(&self.catalog, &applied, target)?)
    }

    /// The verification of the project's artifacts against `wasmig.sum` and the trust policy.
    pub fn trust(&self) -> &TrustReport {
        &self.trust
    }

    /// Applies pending migrations up to `target` (all when `None`), after finishing any
    /// backfill an earlier run left unfinished. A paused backfill is left paused; `up` stops
    /// before a migration that needs it finished (expand/contract).
    pub async fn up(&self, target: Option<Version>) -> Result<Report, RunError> {
        self.trust.ensure().map_err(Error::from)?;
        self.locked(async || {
            let applied = self.history().applied().await?;
            let steps = plan::plan_up(&self.catalog, &applied, target)?;
            let mut report = Report::default();
            self.resume_backfills(&applied, &mut report).await?;
            for migration in steps {
                self.check_needed_backfills(migration)
                    .await
                    .map_err(|e| RunError { error: e, done: report.clone() })?;
                self.apply(migration, &mut report).await?;
            }
            Ok(report)
        })
        .await
    }

    /// Refuses `migration` while a backfill it declares it needs is not done.
    async fn check_needed_backfills(&self, migration: &Migration) -> Result<(), Error> {
        for &needed in &migration.needs_backfills {
            let state = self.backfill_store().state(needed).await?;
            if state != Some(BackfillState::Done) {
                let needs = self.catalog.get(needed).map_or_else(|| needed.to_string(), |m| m.folder.clone());
                return Err(Error::BackfillUnfinished {
                    migration: migration.folder.clone(),
                    needs,
                    state: state.map_or("not started".to_owned(), |s| s.to_string()),
                });
            }
        }
        Ok(())
    }

    /// Every backfill's progress (empty before any started).
    pub async fn backfill_status(&self) -> Result<Vec<BackfillStatus>, Error> {
        Ok(self.backfill_store().statuses().await?)
    }

    /// Runs (or joins, as one more worker) the backfill of applied migration `version` until
    /// it is done or paused. Takes no migration lock: any number of workers may share it.
    pub async fn backfill_run(&self, version: Version) -> Result<Report, RunError> {
        self.trust.ensure().map_err(Error::from)?;
        let migration = self.backfill_migration(version).await?;
        let Body::Component(component) = &migration.body else {
            return Err(Error::NoBackfill { migration: migration.folder.clone() }.into());
        };
        let loaded = self.load_component(migration, component)?;
        let mut report = Report::default();
        let end = self.run_backfill(migration, &loaded, &mut report).await?;
        if end == crate::backfill::WorkerEnd::Paused {
            tracing::info!(migration = %migration, "backfill paused");
        }
        Ok(report)
    }

    /// Pauses a running backfill: its workers stop after their current batch, and `up` leaves
    /// it alone until it is resumed.
    pub async fn backfill_pause(&self, version: Version) -> Result<(), Error> {
        self.backfill_transition(version, BackfillState::Running, BackfillState::Paused).await
    }

    /// Lets a paused backfill go on (`wasmig backfill run` or `up` then continue it).
    pub async fn backfill_resume(&self, version: Version) -> Result<(), Error> {
        self.backfill_transition(version, BackfillState::Paused, BackfillState::Running).await
    }

    async fn backfill_transition(&self, version: Version, from: BackfillState, to: BackfillState) -> Result<(), Error> {
        let migration = self.backfill_migration(version).await?;
        let store = self.backfill_store();
        if store.transition(version, from, to).await? {
            tracing::info!(migration = %migration, %from, %to, "backfill state changed");
            return Ok(());
        }
        match store.state(version).await? {
            Some(state) if state == to => Ok(()),
            Some(state) => Err(Error::BackfillPaused {
                migration: migration.folder.clone(),
                version,
                state: format!("{state}, not {from}"),
            }),
            None => Err(Error::BackfillNotApplied { migration: migration.folder.clone() }),
        }
    }

    /// The applied migration `version`, which must have a backfill and unchanged files.
    async fn backfill_migration(&self, version: Version) -> Result<&Migration, Error> {
        let migration = self.catalog.get(version).ok_or(plan::PlanError::UnknownTarget(version))?;
        if migration.backfill().is_none() {
            return Err(Error::NoBackfill { migration: migration.folder.clone() });
        }
        let applied = self.applied_if_any().await?;
        plan::check_applied(&self.catalog, &applied)?;
        if !applied.iter().any(|row| row.version == version) {
            return Err(Error::BackfillNotApplied { migration: migration.folder.clone() });
        }
        Ok(migration)
    }

    /// Reverts applied migrations, newest first.
    pub async fn down(&self, target: DownTarget) -> Result<Report, RunError> {
        self.trust.ensure().map_err(Error::from)?;
        self.locked(async || {
            let applied = self.history().applied().await?;
            let steps = plan::plan_down(&self.catalog, &applied, target)?;
            let mut report = Report::default();
            for migration in steps {
                self.revert(migration, &mut report).await?;
            }
            Ok(report)
        })
        .await
    }

    /// Runs every applied migration's verify again, read-only.
    pub async fn verify(&self) -> Result<Report, RunError> {
        self.trust.ensure().map_err(Error::from)?;
        let applied = self.applied_if_any().await?;
        plan::check_applied(&self.catalog, &applied)?;
        let mut report = Report::default();
        for row in &applied {
            if let Some(migration) = self.catalog.get(row.version) {
                self.verify_applied(migration, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// Records, with who, when and why, that applied migration `version`'s files changed and
    /// now hash to `accepted`, which becomes its recorded digest. The files must hash to exactly
    /// `accepted`, so what is accepted is what was reviewed; nothing is ever reset silently.
    pub async fn repair(&self, version: Version, accepted: Digest, reason: &str) -> Result<Repair, RunError> {
        self.trust.ensure().map_err(Error::from)?;
        let migration = self.catalog.get(version).ok_or(RepairError::NoFolder { version })?;
        let found = migration.digest;
        if found != accepted {
            return Err(RepairError::NotWhatWasAccepted { folder: migration.folder.clone(), accepted, found }.into());
        }
        let repaired_by = self.applied_by().await;
        self.locked(async || {
            let applied = self.history().applied().await?;
            let row = applied.iter().find(|row| row.version == version).ok_or(RepairError::NotApplied { version })?;
            if row.digest == found.to_string() {
                return Err(RepairError::NothingToRepair { folder: migration.folder.clone() }.into());
            }
            let repair = Repair {
                version,
                old_digest: row.digest.clone(),
                new_digest: found.to_string(),
                reason: reason.to_owned(),
                repaired_by: repaired_by.clone(),
                repaired_at: String::new(),
            };
            self.in_transaction(migration, Access::ReadWrite, async || Ok(self.history().repair(&repair).await?))
                .await?;
            Ok(repair)
        })
        .await
    }

    /// Every recorded repair.
    pub async fn repairs(&self) -> Result<Vec<Repair>, Error> {
        if self.history().exists().await? { Ok(self.history().repairs().await?) } else { Ok(Vec::new()) }
    }

    /// The history table's rows (empty when it does not exist yet).
    pub async fn applied(&self) -> Result<Vec<AppliedMigration>, Error> {
        self.applied_if_any().await
    }

    async fn applied_if_any(&self) -> Result<Vec<AppliedMigration>, Error> {
        let history = self.history();
        if history.exists().await? { Ok(history.applied().await?) } else { Ok(Vec::new()) }
    }

    /// Every migration in the project or the history, with its state.
    pub async fn status(&self) -> Result<Vec<StatusEntry>, Error> {
        let history = self.history();
        let exists = history.exists().await?;
        let applied = if exists { history.applied().await? } else { Vec::new() };
        let backfills = if exists { self.backfill_status().await? } else { Vec::new() };
        let backfill_of = |version| backfills.iter().find(|b| b.version == version).cloned();
        let mut entries: Vec<StatusEntry> = self
            .catalog
            .migrations
            .iter()
            .map(|migration| {
                let state = match applied.iter().find(|row| row.version == migration.version) {
                    None => State::Pending,
                    Some(row) if row.digest != migration.digest.to_string() => {
                        State::Changed { recorded: row.digest.clone(), found: migration.digest.to_string() }
                    }
                    Some(row) => State::Applied { applied_at: row.applied_at.clone() },
                };
                StatusEntry {
                    version: migration.version,
                    folder: migration.folder.clone(),
                    kind: migration.kind().to_owned(),
                    state,
                    backfill: backfill_of(migration.version),
                }
            })
            .collect();
        for row in applied.iter().filter(|row| self.catalog.get(row.version).is_none()) {
            entries.push(StatusEntry {
                version: row.version,
                folder: format!("{}_{}", row.version, row.name),
                kind: row.kind.clone(),
                state: State::Missing,
                backfill: backfill_of(row.version),
            });
        }
        entries.sort_by_key(|entry| entry.version);
        Ok(entries)
    }

    /// Finishes (as one worker) every applied migration's backfill that is not done, oldest
    /// first; a paused one is left paused.
    async fn resume_backfills(&self, applied: &[AppliedMigration], report: &mut Report) -> Result<(), RunError> {
        let statuses = self.backfill_store().statuses().await?;
        for row in applied {
            let Some(migration) = self.catalog.get(row.version) else {
                continue;
            };
            let Body::Component(component) = &migration.body else {
                continue;
            };
            if component.manifest.backfill.is_none() {
                continue;
            }
            match statuses.iter().find(|s| s.version == row.version).map(|s| s.state) {
                Some(BackfillState::Done) => {}
                Some(BackfillState::Paused) => {
                    tracing::warn!(migration = %migration, "backfill is paused; `wasmig backfill resume` lets it go on");
                }
                Some(BackfillState::Running) | None => {
                    tracing::info!(migration = %migration, "resuming an unfinished backfill");
                    let loaded = self
                        .load_component(migration, component)
                        .map_err(|e| RunError { error: e, done: report.clone() })?;
                    self.run_backfill(migration, &loaded, report).await?;
                }
            }
        }
        Ok(())
    }
}

/// On PostgreSQL, an unqualified history table is pinned to the session's current schema, so
/// that the engine's statements never resolve it through `pg_temp` (a temporary table of the
/// same name, made by a SQL migration, would otherwise take the history rows).
async fn resolve_history_schema(db: &dyn Database, history: HistoryTable) -> Result<HistoryTable, Error> {
    if db.backend() != Backend::Postgres || !history.is_unqualified() {
        return Ok(history);
    }
    let rows = db.query("SELECT current_schema()::text", &[]).await.map_err(|source| Error::Sql {
        migration: "(none)".into(),
        file: "the history table's schema",
        source,
    })?;
    match rows.values.first().and_then(|row| row.first()) {
        Some(db::Value::Text(schema)) if !schema.starts_with("pg_temp") => {
            // A schema name wasmig cannot quote as an identifier stays the server's to resolve.
            Ok(history.clone().resolved_in(schema).unwrap_or(history))
        }
        _ => Ok(history),
    }
}
