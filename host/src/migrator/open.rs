//! Opening a [`Migrator`]: reading the project, checking its artifacts, and connecting to its
//! database, the connection made while the project is read.

use std::sync::{Arc, OnceLock};

use tokio::task::JoinError;

use super::Migrator;
use crate::config::Config;
use crate::core::Date;
use crate::db::{self, Database};
use crate::error::Error;
use crate::project::catalog::{Catalog, CatalogError};
use crate::run::events::LogObserver;
use crate::run::session::Shared;
use crate::trust;

impl Migrator {
    /// Reads the project's migrations and connects to its database.
    pub async fn open(config: Config) -> Result<Migrator, Error> {
        let (catalog, db) = Migrator::read_and_connect(&config).await?;
        let trust = trust::check(&catalog, &config.trust, Date::today());
        let db = match db {
            Some(db) => db,
            None => db::connect(config.database()?, config.connect).await?,
        };
        let signers = trust.signer_key_ids().join(",");
        Ok(Migrator {
            shared: Shared::new(config, Arc::new(LogObserver), signers),
            catalog,
            trust,
            db,
            ledger: OnceLock::new(),
        })
    }

    /// Reads the project and, when the database is a server, connects to it meanwhile: the
    /// connection is mostly waiting (for the server to start a session and authenticate), the
    /// reading is work, and a project of hundreds of migrations takes about as long to read.
    /// Connecting sends no statement, so none reaches the database before the trust check
    /// (invariant 2). A project that cannot be read is reported first, without waiting for
    /// the server; a SQLite file is opened only after the project was read, as opening it
    /// creates it.
    async fn read_and_connect(config: &Config) -> Result<(Catalog, Option<Arc<dyn Database>>), Error> {
        let project_dir = config.project_dir.clone();
        let mut reading = tokio::task::spawn_blocking(move || Catalog::load(&project_dir));
        let Some(url) = config.database().ok().filter(|url| url.is_server()) else {
            return Ok((Migrator::finish_reading(config, reading.await)?, None));
        };
        let mut connecting = std::pin::pin!(db::connect(url, config.connect));
        let mut connected = None;
        let read = loop {
            tokio::select! {
                read = &mut reading => break read,
                done = &mut connecting, if connected.is_none() => connected = Some(done),
            }
        };
        let catalog = Migrator::finish_reading(config, read)?;
        let db = match connected {
            Some(done) => done?,
            None => connecting.await?,
        };
        Ok((catalog, Some(db)))
    }

    fn finish_reading(config: &Config, read: Result<Result<Catalog, CatalogError>, JoinError>) -> Result<Catalog, Error> {
        match read {
            Ok(catalog) => Ok(catalog?),
            Err(failed) => match failed.try_into_panic() {
                // A panic while reading is the reader's bug: it goes on as a panic, as it
                // would have on this thread.
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(cancelled) => Err(CatalogError::Read {
                    path: config.project_dir.clone(),
                    source: std::io::Error::other(cancelled),
                }
                .into()),
            },
        }
    }
}
