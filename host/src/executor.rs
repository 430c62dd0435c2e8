//! Executing one step: a migration applied, reverted or verified inside its own transaction.
//!
//! Invariant 1: the step and its history row commit together, in one transaction and one
//! commit, or not at all. A SQL error, a failing verify, a trap or the guest's own `Err` all
//! roll the whole step back.

use std::time::Instant;

use crate::catalog::{Body, ComponentMigration, Migration};
use crate::db::{Access, LOCK_LOST_CODE, LockError, NotCommitted, is_truthy};
use crate::error::Error;
use crate::history::NewRecord;
use crate::migrator::Migrator;
use crate::report::{Action, Report, RunError, StepReport};
use crate::sandbox::{Call, LoadedComponent, Outcome};

impl Migrator {
    /// Compiles (or loads precompiled) a migration's component, outside any transaction.
    pub(crate) fn load_component(
        &self,
        migration: &Migration,
        component: &ComponentMigration,
    ) -> Result<LoadedComponent, Error> {
        Ok(self.sandbox()?.load(&migration.folder, &component.path, &component.bytes)?)
    }

    /// The migration's component, loaded and checked before any transaction opens; `None` for
    /// a SQL migration.
    fn load_if_component(&self, migration: &Migration) -> Result<Option<LoadedComponent>, Error> {
        match &migration.body {
            Body::Component(component) => self.load_component(migration, component).map(Some),
            Body::Sql(_) => Ok(None),
        }
    }

    /// Runs `work` in a transaction; commits on success, rolls back on any error.
    pub(crate) async fn in_transaction<T>(
        &self,
        migration: &Migration,
        access: Access,
        work: impl AsyncFnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.in_transaction_work_ends(migration, access, async || {
            let value = work().await?;
            match access {
                Access::ReadWrite => self.commit_holding_the_lock(migration).await?,
                Access::ReadOnly => self.db.rollback().await.map_err(|source| Error::Transaction {
                    migration: migration.folder.clone(),
                    action: "roll back",
                    source,
                })?,
            }
            Ok(value)
        })
        .await
    }

    /// Commits, together with the lock's check where the lock can be lost (invariant 8): the
    /// check goes out with COMMIT in one round trip, and if the lock is gone it fails, which
    /// rolls the transaction back instead.
    async fn commit_holding_the_lock(&self, migration: &Migration) -> Result<(), Error> {
        let check = match self.lock_check.lock() {
            Ok(check) => check.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let transaction = |action, source| Error::Transaction { migration: migration.folder.clone(), action, source };
        let Some(check) = check else {
            return self.db.commit().await.map_err(|source| transaction("commit", source));
        };
        match self.db.execute_and_commit(check.statement, &check.params).await {
            Ok(_) => Ok(()),
            Err(NotCommitted::Statement(error)) if error.code == LOCK_LOST_CODE => {
                Err(Error::Lock(LockError::Lost { migration: migration.folder.clone() }))
            }
            Err(NotCommitted::Statement(source)) => {
                Err(transaction("check the migration lock before committing", source))
            }
            Err(NotCommitted::Commit(source)) => Err(transaction("commit", source)),
        }
    }

    /// Runs `work` in a transaction that `work` ends itself when it succeeds (a backfill batch
    /// commits together with its last statement); any error rolls it back.
    pub(crate) async fn in_transaction_work_ends<T>(
        &self,
        migration: &Migration,
        access: Access,
        work: impl AsyncFnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.db.begin(access).await.map_err(|source| Error::Transaction {
            migration: migration.folder.clone(),
            action: "begin",
            source,
        })?;
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

    pub(crate) async fn apply(&self, migration: &Migration, report: &mut Report) -> Result<(), RunError> {
        let started = Instant::now();
        let done = |error: Error, report: &Report| RunError { error, done: report.clone() };
        let loaded = self.load_if_component(migration).map_err(|e| done(e, report))?;
        let applied_by = self.applied_by().await;
        self.in_transaction(migration, Access::ReadWrite, async || {
            match (&migration.body, &loaded) {
                (Body::Sql(scripts), _) => {
                    self.run_sql(migration, "up.sql", &scripts.up).await?;
                    if let Some(verify) = &scripts.verify {
                        self.run_verify_sql(migration, verify).await?;
                    }
                }
                (Body::Component(component), Some(loaded)) => {
                    self.call(migration, loaded, Call::Up).await?;
                    // A migration with a backfill is verified when its last batch commits.
                    if component.manifest.backfill.is_none() {
                        self.call(migration, loaded, Call::Verify).await?;
                    }
                }
                (Body::Component(_), None) => {
                    unreachable!("components are loaded before the transaction")
                }
            }
            let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let signers = self.trust.signer_key_ids().join(",");
            self.history()
                .record(&NewRecord {
                    version: migration.version,
                    name: &migration.name,
                    kind: migration.kind(),
                    digest: &migration.digest,
                    applied_by: &applied_by,
                    duration_ms,
                    signers: &signers,
                })
                .await?;
            Ok(())
        })
        .await
        .map_err(|e| done(e, report))?;
        // The step may have changed the schema, which can make prepared statements stale.
        self.db.forget_prepared_statements();
        report.steps.push(StepReport {
            version: migration.version,
            folder: migration.folder.clone(),
            action: Action::Applied,
            duration: started.elapsed(),
            backfill: None,
        });
        tracing::info!(migration = %migration, "applied");
        if let (Some(loaded), Some(_)) = (&loaded, migration.backfill()) {
            self.run_backfill(migration, loaded, report).await?;
        }
        Ok(())
    }

    pub(crate) async fn revert(&self, migration: &Migration, report: &mut Report) -> Result<(), RunError> {
        let started = Instant::now();
        let done = |error: Error, report: &Report| RunError { error, done: report.clone() };
        let loaded = self.load_if_component(migration).map_err(|e| done(e, report))?;
        self.in_transaction(migration, Access::ReadWrite, async || {
            match (&migration.body, &loaded) {
                (Body::Sql(scripts), _) => {
                    // plan_down refuses a migration without down.sql before anything runs.
                    let down = scripts.down.as_deref().unwrap_or_default();
                    self.run_sql(migration, "down.sql", down).await?;
                }
                (Body::Component(_), Some(loaded)) => {
                    self.call(migration, loaded, Call::Down).await?;
                }
                (Body::Component(_), None) => {
                    unreachable!("components are loaded before the transaction")
                }
            }
            self.history().forget(migration.version).await?;
            Ok(())
        })
        .await
        .map_err(|e| done(e, report))?;
        // The step may have changed the schema, which can make prepared statements stale.
        self.db.forget_prepared_statements();
        report.steps.push(StepReport {
            version: migration.version,
            folder: migration.folder.clone(),
            action: Action::Reverted,
            duration: started.elapsed(),
            backfill: None,
        });
        tracing::info!(migration = %migration, "reverted");
        Ok(())
    }

    /// Re-runs an applied migration's verify in a read-only transaction that is rolled back.
    pub(crate) async fn verify_applied(&self, migration: &Migration, report: &mut Report) -> Result<(), RunError> {
        let started = Instant::now();
        let done = |error: Error, report: &Report| RunError { error, done: report.clone() };
        let loaded = self.load_if_component(migration).map_err(|e| done(e, report))?;
        self.in_transaction(migration, Access::ReadOnly, async || match (&migration.body, &loaded) {
            (Body::Sql(scripts), _) => match &scripts.verify {
                Some(verify) => self.run_verify_sql(migration, verify).await,
                None => Ok(()),
            },
            (Body::Component(_), Some(loaded)) => self.call(migration, loaded, Call::Verify).await.map(|_| ()),
            (Body::Component(_), None) => {
                unreachable!("components are loaded before the transaction")
            }
        })
        .await
        .map_err(|e| done(e, report))?;
        report.steps.push(StepReport {
            version: migration.version,
            folder: migration.folder.clone(),
            action: Action::Verified,
            duration: started.elapsed(),
            backfill: None,
        });
        Ok(())
    }

    async fn run_sql(&self, migration: &Migration, file: &'static str, script: &str) -> Result<(), Error> {
        self.db.run_script(script).await.map(|_| ()).map_err(|source| Error::Sql {
            migration: migration.folder.clone(),
            file,
            source,
        })
    }

    /// Runs verify.sql: every statement must succeed, and every row a query returns must
    /// have a true first column (`SELECT count(*) = 0 FROM users WHERE email IS NULL`).
    async fn run_verify_sql(&self, migration: &Migration, script: &str) -> Result<(), Error> {
        let rows = self.db.run_script(script).await.map_err(|source| Error::Sql {
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

    /// The limits a migration's component calls run under: the project's, then its manifest's.
    fn call_limits(&self, migration: &Migration) -> crate::limits::Limits {
        match &migration.body {
            Body::Component(component) => self.config.limits.with(&component.manifest.limits),
            Body::Sql(_) => self.config.limits,
        }
    }

    /// Calls a component export in the current transaction; `up`, `down` and `verify`
    /// must return nothing.
    pub(crate) async fn call(
        &self,
        migration: &Migration,
        loaded: &LoadedComponent,
        call: Call,
    ) -> Result<Outcome, Error> {
        let Body::Component(component) = &migration.body else { unreachable!("only component migrations are called") };
        let limits = self.call_limits(migration);
        let name = call.to_string();
        let role = self.config.postgres_role.as_deref();
        let report = loaded.call(call, self.db.clone(), &limits, &component.grants, role).await?;
        tracing::debug!(migration = %migration, call = name, fuel_used = report.fuel_used, "component call returned");
        Ok(report.outcome)
    }
}
