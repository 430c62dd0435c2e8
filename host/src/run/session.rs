//! [`Session`]: one run's connection to the target database and what every step on it needs:
//! the run's settings and sandbox ([`Shared`]), the ledger's tables as pinned for this run,
//! and, while the migration lock is held, the check each COMMIT carries (invariant 8).
//!
//! The executor and the backfill runner take a session; a backfill worker that runs beside
//! another gets a session of its own on a connection of its own ([`Session::sibling`]), sharing
//! the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::Config;
use crate::core::limits::Limits;
use crate::db::{self, Access, BoundStatement, Database, DbError, DbErrorKind, LockError, NotCommitted};
use crate::error::Error;
use crate::core::CiRun;
use crate::ledger::{Audit, BackfillStore, History, HistoryTable, LedgerWrite, NewAuditEntry, NewRecord, Started, Who};
use crate::project::catalog::{ComponentMigration, Migration};
use crate::report::{Report, StepReport};
use crate::sandbox::{Call, LoadedComponent, Outcome, Sandbox};

use super::events::Observer;

/// What every session of one migrator shares.
pub(crate) struct Shared {
    pub config: Config,
    /// Created on first use, so that SQL-only runs never start a WebAssembly engine.
    sandbox: OnceLock<Sandbox>,
    /// Where backfill progress goes.
    pub observer: Arc<dyn Observer>,
    /// Who applies migrations, asked of the database once.
    applied_by: tokio::sync::OnceCell<String>,
    /// Key ids of the trusted keys whose signatures cover the project, for the history.
    pub signers: String,
    /// This machine and the CI job, for the audit trail.
    host: String,
    ci: Option<CiRun>,
    /// Set when the run is asked to stop (the CLI's Ctrl-C and SIGTERM): it stops before the
    /// next step, and backfill workers after their current batch.
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    pub fn new(config: Config, observer: Arc<dyn Observer>, signers: String) -> Self {
        Shared {
            config,
            sandbox: OnceLock::new(),
            observer,
            applied_by: tokio::sync::OnceCell::new(),
            signers,
            host: crate::core::host_name(),
            ci: CiRun::from_environment(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the run was asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One connection's worth of a run.
pub(crate) struct Session<'a> {
    pub shared: &'a Shared,
    pub db: Arc<dyn Database>,
    /// The ledger's tables, pinned to a schema once a locked run resolved it.
    pub ledger: HistoryTable,
    /// While the migration lock is held: the check each migration's COMMIT carries.
    lock_check: Option<BoundStatement>,
}

impl<'a> Session<'a> {
    pub fn new(shared: &'a Shared, db: Arc<dyn Database>, ledger: HistoryTable) -> Self {
        Session { shared, db, ledger, lock_check: None }
    }

    /// The session of a run holding the migration lock, whose commits carry `check`.
    pub fn holding(self, check: Option<BoundStatement>) -> Self {
        Session { lock_check: check, ..self }
    }

    /// The same run on a connection of its own, for a backfill worker beside this one. It
    /// holds no lock: batches commit on their chunk's lease, not on the migration lock.
    pub async fn sibling(&self) -> Result<Session<'a>, Error> {
        let config = &self.shared.config;
        let db = db::connect(config.database()?, config.connect).await?;
        Ok(Session::new(self.shared, db, self.ledger.clone()))
    }

    /// Records a committed step in the run's report and tells the observer.
    pub fn committed(&self, report: &mut Report, step: StepReport) {
        self.shared.observer.on_step(&step);
        report.steps.push(step);
    }

    pub fn config(&self) -> &'a Config {
        &self.shared.config
    }

    pub fn history(&self) -> History<'_> {
        History::new(self.db.as_ref(), &self.ledger)
    }

    /// A row of the audit trail about `migration` (its digest, this run's signers), for an
    /// act that took `duration`.
    pub fn audit_entry<'e>(
        &'e self,
        migration: &'e Migration,
        action: &'e str,
        detail: &'e str,
        duration: Duration,
    ) -> NewAuditEntry<'e> {
        NewAuditEntry {
            action,
            version: migration.version,
            migration: &migration.folder,
            digest: migration.digest,
            signers: &self.shared.signers,
            ok: true,
            detail,
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Records `migration` as applied by `applied_by` in the history, in the current
    /// transaction (invariant 1: with the step that applied it).
    pub async fn record_applied(&self, migration: &Migration, applied_by: &str, duration: Duration) -> Result<(), Error> {
        Ok(self.applied_write(migration, applied_by, duration).run(self.db.as_ref()).await?)
    }

    /// [`record_applied`](Self::record_applied) made ready, to go out with the step's COMMIT.
    pub fn applied_write(&self, migration: &Migration, applied_by: &str, duration: Duration) -> LedgerWrite {
        let row = NewRecord {
            version: migration.version,
            name: &migration.name,
            kind: migration.kind(),
            digest: &migration.digest,
            applied_by,
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
            signers: &self.shared.signers,
            files: &migration.files.to_json(),
        };
        self.history().record_write(&row)
    }

    /// Appends to the audit trail in the current transaction, with who this run is.
    pub async fn audit(&self, entry: &NewAuditEntry<'_>) -> Result<(), Error> {
        let who = self.who().await;
        Ok(Audit::new(self.db.as_ref(), &self.ledger).append(entry, &who).await?)
    }

    /// [`audit`](Self::audit) made ready, to go out with the step's COMMIT.
    pub async fn audit_write(&self, entry: &NewAuditEntry<'_>) -> LedgerWrite {
        let who = self.who().await;
        Audit::new(self.db.as_ref(), &self.ledger).append_write(entry, &who)
    }

    /// Who this run is, for the audit trail.
    async fn who(&self) -> Who {
        Who {
            actor: self.applied_by().await,
            host: self.shared.host.clone(),
            ci: self.shared.ci.clone(),
        }
    }

    /// Appends to the audit trail in a transaction of its own, for what happened outside one
    /// that committed (a failed step, a backfill's end). Best effort: a failure to write it
    /// is logged, never put before the run's own error.
    pub async fn audit_apart(&self, migration: &Migration, entry: &NewAuditEntry<'_>) {
        let written = self.in_transaction(migration, Access::ReadWrite, async || self.audit(entry).await).await;
        if let Err(error) = written {
            tracing::warn!(migration = %migration, %error, "could not write the audit trail");
        }
    }

    pub fn started(&self) -> Started<'_> {
        Started::new(self.db.as_ref(), &self.ledger)
    }

    pub fn backfills(&self) -> BackfillStore<'_> {
        BackfillStore::new(self.db.as_ref(), &self.ledger)
    }

    /// The sandbox, created on first use.
    fn sandbox(&self) -> Result<&'a Sandbox, Error> {
        let shared: &'a Shared = self.shared;
        if let Some(sandbox) = shared.sandbox.get() {
            return Ok(sandbox);
        }
        let sandbox = Sandbox::new(shared.config.cache_dir.clone())?;
        Ok(shared.sandbox.get_or_init(|| sandbox))
    }

    /// Who applies migrations, for the history: the OS account, and the database role where
    /// the session runs as one.
    pub async fn applied_by(&self) -> String {
        self.shared
            .applied_by
            .get_or_init(|| async {
                let user = crate::core::os_user();
                match self.db.current_user().await {
                    Ok(role) if self.db.dialect().roles => format!("{user} as {role}"),
                    _ => user,
                }
            })
            .await
            .clone()
    }

    /// Compiles (or loads precompiled) a migration's component, outside any transaction.
    pub fn load_component(
        &self,
        migration: &Migration,
        component: &ComponentMigration,
    ) -> Result<LoadedComponent, Error> {
        let loaded = self.sandbox()?.load(&migration.folder, &component.path, &component.bytes)?;
        tracing::debug!(migration = %migration, cache = ?loaded.cache, load_time = ?loaded.load_time, "component loaded");
        Ok(loaded)
    }

    /// Runs `work` in a transaction; commits on success, rolls back on any error.
    pub async fn in_transaction<T>(
        &self,
        migration: &Migration,
        access: Access,
        work: impl AsyncFnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.in_open_transaction(migration, access, async || {
            let value = work().await?;
            match access {
                Access::ReadWrite => self.commit_holding_the_lock(migration, Vec::new()).await?,
                Access::ReadOnly => self.db.rollback().await.map_err(transaction_failed(migration, "roll back"))?,
            }
            Ok(value)
        })
        .await
    }

    /// Runs `work` in a read-write transaction and commits it together with the ledger writes
    /// `work` returns, which go out pipelined with the COMMIT (and the lock's check): a step's
    /// history and audit rows cost no round trip of their own. Rolls back on any error.
    pub async fn in_transaction_ending_with(
        &self,
        migration: &Migration,
        work: impl AsyncFnOnce() -> Result<Vec<LedgerWrite>, Error>,
    ) -> Result<(), Error> {
        self.in_open_transaction(migration, Access::ReadWrite, async || {
            let writes = work().await?;
            self.commit_holding_the_lock(migration, writes).await
        })
        .await
    }

    /// Runs `writes`, then commits, together with the lock's check where the lock can be lost
    /// (invariant 8), all in one round trip: if a write fails or the lock is gone, the server
    /// rolls the transaction back instead of committing it.
    async fn commit_holding_the_lock(&self, migration: &Migration, writes: Vec<LedgerWrite>) -> Result<(), Error> {
        if writes.is_empty() && self.lock_check.is_none() {
            return self.db.commit().await.map_err(transaction_failed(migration, "commit"));
        }
        let statements: Vec<BoundStatement> =
            writes.iter().map(|write| write.bound.clone()).chain(self.lock_check.clone()).collect();
        match self.db.execute_and_commit(&statements).await {
            Ok(()) => Ok(()),
            Err(NotCommitted::Statement { index, error }) if index < writes.len() => Err(writes[index].failed(error).into()),
            Err(NotCommitted::Statement { error, .. }) if error.kind == DbErrorKind::DivisionByZero => {
                Err(Error::Lock(LockError::Lost { migration: migration.folder.clone() }))
            }
            Err(NotCommitted::Statement { error, .. }) => {
                Err(transaction_failed(migration, "check the migration lock before committing")(error))
            }
            Err(NotCommitted::Commit(source)) => Err(transaction_failed(migration, "commit")(source)),
        }
    }

    /// Runs a backfill batch in a read-write transaction that the batch ends itself when it
    /// succeeds (it commits together with its last statement); any error rolls it back.
    pub async fn in_batch_transaction<T>(&self, migration: &Migration, batch: impl AsyncFnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.in_open_transaction(migration, Access::ReadWrite, batch).await
    }

    /// Begins a transaction and runs `work` in it, which ends it on success; rolls it back on
    /// any error.
    async fn in_open_transaction<T>(&self, migration: &Migration, access: Access, work: impl AsyncFnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.db.begin(access).await.map_err(transaction_failed(migration, "begin"))?;
        let result = work().await;
        if result.is_err() {
            // Harmless when the transaction has already ended: after a failed COMMIT, or when
            // PostgreSQL rolled back a failed statement pipelined with COMMIT.
            if let Err(error) = self.db.rollback().await {
                tracing::debug!(migration = %migration, %error, "rolling back after an error failed");
            }
        }
        result
    }

    /// Calls a component export in the current transaction, under the project's limits and
    /// then its manifest's.
    pub async fn call(
        &self,
        migration: &Migration,
        component: &ComponentMigration,
        loaded: &LoadedComponent,
        call: Call,
    ) -> Result<Outcome, Error> {
        let config = self.config();
        let limits: Limits = config.limits.with(&component.manifest.limits);
        let name = call.to_string();
        let role = config.postgres_role.as_deref();
        let report = loaded.call(call, self.db.clone(), &limits, &component.grants, role).await?;
        tracing::debug!(migration = %migration, call = name, fuel_used = report.fuel_used, "component call returned");
        Ok(report.outcome)
    }
}

/// The error for a transaction of `migration` that could not `action` (begin, commit, …).
pub(crate) fn transaction_failed(migration: &Migration, action: &'static str) -> impl Fn(DbError) -> Error {
    let migration = migration.folder.clone();
    move |source| Error::Transaction { migration: migration.clone(), action, source }
}
