//! [`Scratch`]: an empty database of its own for a rehearsal (`wasmig test`, `wasmig drift`),
//! made beside the target and removed after, or given by the user and checked to be empty.
//!
//! PostgreSQL: `CREATE DATABASE` on the target's server, reached with the target's user and
//! TLS settings, and `DROP DATABASE … WITH (FORCE)` after. SQLite: a file in a fresh temporary
//! folder, removed with the folder. A given database must hold nothing: a rehearsal fills it
//! and rolls it back to nothing, which would destroy what was there.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::quote_ident;

use super::connect::connect;
use super::error::{ConnectError, DbError};
use super::postgres::ConnectOptions;
use super::url::DatabaseUrl;

/// The prefix of every scratch database's and folder's name, so that one a killed run left
/// behind is easy to find.
pub const SCRATCH_PREFIX: &str = "wasmig_scratch_";

/// A scratch database, until [`Scratch::remove`].
#[derive(Debug)]
pub struct Scratch {
    url: DatabaseUrl,
    made: Made,
    options: ConnectOptions,
}

#[derive(Debug)]
enum Made {
    /// Created on the server `server` reaches, under `name`.
    Database { server: DatabaseUrl, name: String },
    /// A SQLite file in a temporary folder of its own.
    Folder(PathBuf),
    /// The user's; left in place.
    Given,
}

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "cannot create a scratch database on the server of {server}: {source}; grant the role CREATEDB, or \
         give an empty database with --scratch-url"
    )]
    Create { server: String, source: DbError },
    #[error("cannot create a scratch folder {}: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot read the schema of the scratch database {url}: {source}")]
    Read { url: String, source: DbError },
    #[error(
        "the scratch database {url} is not empty ({count} objects, the first {first}): a rehearsal fills it and \
         rolls it back to nothing, so give an empty database"
    )]
    NotEmpty { url: String, count: usize, first: String },
    #[error("the scratch database {url} was given, not made, and the target is {target}: they must differ")]
    IsTarget { url: String, target: String },
}

impl Scratch {
    /// Makes an empty database beside `target`: on its PostgreSQL server, or a temporary
    /// SQLite file.
    pub async fn beside(target: &DatabaseUrl, options: ConnectOptions) -> Result<Scratch, ScratchError> {
        let name = unique_name();
        match target {
            DatabaseUrl::Postgres(server) => {
                let db = connect(target, options).await?;
                let create = format!("CREATE DATABASE {}", quote_ident(&name));
                db.run_script_autocommit(&create)
                    .await
                    .map_err(|source| ScratchError::Create { server: target.to_string(), source })?;
                let url = DatabaseUrl::Postgres(Box::new(server.on_database(&name)));
                Ok(Scratch { url, made: Made::Database { server: target.clone(), name }, options })
            }
            DatabaseUrl::Sqlite(_) | DatabaseUrl::SqliteMemory => {
                let folder = std::env::temp_dir().join(&name);
                std::fs::create_dir(&folder)
                    .map_err(|source| ScratchError::Folder { path: folder.clone(), source })?;
                let url = DatabaseUrl::Sqlite(folder.join("scratch.db"));
                Ok(Scratch { url, made: Made::Folder(folder), options })
            }
        }
    }

    /// The user's own scratch database, refused unless it is empty and is not `target`.
    pub async fn given(url: DatabaseUrl, target: &DatabaseUrl, options: ConnectOptions) -> Result<Scratch, ScratchError> {
        if &url == target {
            return Err(ScratchError::IsTarget { url: url.to_string(), target: target.to_string() });
        }
        let db = connect(&url, options).await?;
        let schema = db.schema().await.map_err(|source| ScratchError::Read { url: url.to_string(), source })?;
        if let Some((first, _)) = schema.objects().next() {
            return Err(ScratchError::NotEmpty { url: url.to_string(), count: schema.len(), first: first.to_string() });
        }
        Ok(Scratch { url, made: Made::Given, options })
    }

    /// Whether the user gave it (it is left in place).
    pub fn was_given(&self) -> bool {
        matches!(self.made, Made::Given)
    }

    /// Where the scratch database is.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Drops a database this made (its sessions closed by force) or removes its folder; a
    /// given one is left, holding what the rehearsal left. A failure is logged, naming what
    /// to remove by hand: the rehearsal's own result stands.
    pub async fn remove(self) {
        match self.made {
            Made::Database { server, name } => {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name));
                let dropped = match connect(&server, self.options).await {
                    Ok(db) => db.run_script_autocommit(&drop).await.map_err(|error| error.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                if let Err(reason) = dropped {
                    tracing::warn!("could not drop the scratch database {name}: {reason}; drop it by hand");
                }
            }
            Made::Folder(folder) => {
                if let Err(error) = std::fs::remove_dir_all(&folder) {
                    tracing::warn!("could not remove the scratch folder {}: {error}; remove it by hand", folder.display());
                }
            }
            Made::Given => {}
        }
    }
}

/// A name no other run picks: this process and the clock.
fn unique_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or_default();
    format!("{SCRATCH_PREFIX}{}_{nanos:x}", std::process::id())
}
