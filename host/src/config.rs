//! The project file `wasmig.toml` and [`Config`], the validated settings of one run.
//!
//! The database comes from an explicit URL (the CLI passes `--database`, then
//! `DATABASE_URL`), then `wasmig.toml`. Library users build a [`Config`] the same way, so the
//! CLI holds no logic of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::limits::{LimitOverrides, Limits, MAX_SECONDS, OutOfRange, in_range};
use crate::core::{Identifier, IdentifierError};
use crate::db::{DatabaseUrl, UnsupportedUrl};
use crate::ledger::HistoryTable;
use crate::project::backfill::{ProjectBackfillSection, ThrottleOverrides};
use crate::project::layout::PROJECT_FILE;
use crate::trust::{TrustConfigError, TrustPolicy, TrustSection};


/// `wasmig.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub history: HistorySection,
    #[serde(default)]
    pub limits: LimitOverrides,
    #[serde(default)]
    pub lock: LockSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub trust: TrustSection,
    #[serde(default)]
    pub guard: GuardSection,
    #[serde(default)]
    pub backfill: ProjectBackfillSection,
}

impl ProjectFile {
    /// Every numeric setting's range, as the README's table of settings gives it.
    fn validate_ranges(&self) -> Result<(), OutOfRange> {
        in_range("database.connect_timeout_secs", self.database.connect_timeout_secs, 1, MAX_SECONDS)?;
        in_range("lock.timeout_secs", self.lock.timeout_secs, 0, MAX_SECONDS)?;
        self.limits.validate()?;
        self.backfill.validate()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// PostgreSQL: a least-privilege role the component's statements run as (SET LOCAL ROLE);
    /// the database's own wall behind the guard.
    pub postgres_role: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    pub connect_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    pub table: Option<String>,
    /// PostgreSQL schema of the history table; several services can share a database by
    /// giving each its own table or schema.
    pub schema: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSection {
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Where precompiled components are kept; relative to the project folder.
    pub dir: Option<String>,
}

/// The settings of one run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project folder: `wasmig.toml` and one folder per migration.
    pub project_dir: PathBuf,
    /// `None` when neither the caller nor `wasmig.toml` names one: enough for hashing,
    /// signing and verifying artifacts; [`crate::Migrator::open`] refuses it.
    pub database: Option<DatabaseUrl>,
    pub connect_timeout: Duration,
    pub history: HistoryTable,
    pub limits: Limits,
    pub lock_timeout: Duration,
    /// Where precompiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub trust: TrustPolicy,
    /// PostgreSQL role for component statements, validated as an identifier.
    pub postgres_role: Option<String>,
    /// The project's backfill defaults (`[backfill]` in `wasmig.toml`).
    pub backfill: ProjectBackfillSection,
    /// Throttling given for this run (the command line); beats every file.
    pub backfill_overrides: ThrottleOverrides,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid project file: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("no database given: pass --database, set DATABASE_URL, or set [database] url in {path}")]
    NoDatabase { path: PathBuf },
    #[error("{origin}: {source}")]
    Url { origin: String, source: UnsupportedUrl },
    #[error("{path}: [history] {source}")]
    History { path: PathBuf, source: IdentifierError },
    #[error("{path}: {source}")]
    Trust { path: PathBuf, source: TrustConfigError },
    #[error("{path}: [guard] postgres_role: {source}")]
    GuardRole { path: PathBuf, source: IdentifierError },
    #[error("{path}: {source}")]
    OutOfRange { path: PathBuf, source: OutOfRange },
}

/// The folder `wasmig` uses when none is given: the current folder if it holds a
/// `wasmig.toml`, else `./migrations`.
pub fn default_project_dir() -> PathBuf {
    if Path::new(PROJECT_FILE).is_file() { PathBuf::from(".") } else { PathBuf::from("migrations") }
}

impl Config {
    /// Reads `<project_dir>/wasmig.toml`. `database_url`, when given, overrides the file's and
    /// a relative SQLite path in it is taken relative to the current folder; one from the
    /// file is relative to the project folder.
    pub fn load(project_dir: &Path, database_url: Option<&str>) -> Result<Config, ConfigError> {
        let path = project_dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Config::parse(project_dir, &text, database_url)
    }

    /// Validates the text of `<project_dir>/wasmig.toml` (read by [`Config::load`]).
    pub fn parse(project_dir: &Path, text: &str, database_url: Option<&str>) -> Result<Config, ConfigError> {
        let path = project_dir.join(PROJECT_FILE);
        let file: ProjectFile =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { path: path.clone(), message: e.to_string() })?;
        Config::from_project_file(project_dir, &path, file, database_url)
    }

    fn from_project_file(
        project_dir: &Path,
        path: &Path,
        file: ProjectFile,
        database_url: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let database = match (database_url, &file.database.url) {
            (Some(url), _) => Some(
                DatabaseUrl::parse(url, Path::new("."))
                    .map_err(|source| ConfigError::Url { origin: "the database URL given".into(), source })?,
            ),
            (None, Some(url)) => Some(DatabaseUrl::parse(url, project_dir).map_err(|source| ConfigError::Url {
                origin: format!("{}: [database] url", path.display()),
                source,
            })?),
            (None, None) => None,
        };
        let trust = TrustPolicy::from_section(&file.trust)
            .map_err(|source| ConfigError::Trust { path: path.to_owned(), source })?;
        file.validate_ranges().map_err(|source| ConfigError::OutOfRange { path: path.to_owned(), source })?;
        let postgres_role = file
            .guard
            .postgres_role
            .as_deref()
            .map(|role| Identifier::new(role).map(|_| role.to_owned()))
            .transpose()
            .map_err(|source| ConfigError::GuardRole { path: path.to_owned(), source })?;
        let history = HistoryTable::new(file.history.schema.as_deref(), file.history.table.as_deref())
            .map_err(|source| ConfigError::History { path: path.to_owned(), source })?;
        Ok(Config {
            project_dir: project_dir.to_owned(),
            database,
            connect_timeout: Duration::from_secs(file.database.connect_timeout_secs.unwrap_or(30)),
            history,
            limits: Limits::default().with(&file.limits),
            lock_timeout: Duration::from_secs(file.lock.timeout_secs.unwrap_or(600)),
            cache_dir: Some(match file.cache.dir {
                Some(dir) => project_dir.join(dir),
                None => default_cache_dir(),
            }),
            trust,
            postgres_role,
            backfill: file.backfill,
            backfill_overrides: ThrottleOverrides::default(),
        })
    }

    /// Replaces the trust policy with the `[trust]` section of `path`: in production the policy
    /// should come from outside the checkout it judges, or whoever can change the artifacts
    /// could also trust their own key.
    pub fn with_trust_file(mut self, path: &Path) -> Result<Config, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TrustFile {
            trust: TrustSection,
        }
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let file: TrustFile =
            toml::from_str(&text).map_err(|e| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
        self.trust = TrustPolicy::from_section(&file.trust)
            .map_err(|source| ConfigError::Trust { path: path.to_owned(), source })?;
        Ok(self)
    }

    /// The database, or the error saying where one should have been given.
    pub fn database(&self) -> Result<&DatabaseUrl, ConfigError> {
        self.database.as_ref().ok_or_else(|| ConfigError::NoDatabase { path: self.project_dir.join(PROJECT_FILE) })
    }
}

/// `$XDG_CACHE_HOME/wasmig`, else `~/.cache/wasmig`, else a folder in the system temp dir.
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("wasmig")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, url: Option<&str>) -> Result<Config, ConfigError> {
        let file: ProjectFile = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax { path: PathBuf::from("wasmig.toml"), message: e.to_string() })?;
        Config::from_project_file(Path::new("/p"), Path::new("/p/wasmig.toml"), file, url)
    }

    #[test]
    fn explicit_url_overrides_the_file() {
        let config = parse("[database]\nurl = \"sqlite:file.db\"\n", Some("postgres://u@h/d")).unwrap();
        assert_eq!(config.database, Some(DatabaseUrl::Postgres("postgres://u@h/d".into())));
    }

    #[test]
    fn file_sqlite_path_is_relative_to_the_project() {
        let config = parse("[database]\nurl = \"sqlite:demo.db\"\n", None).unwrap();
        assert_eq!(config.database, Some(DatabaseUrl::Sqlite(PathBuf::from("/p/demo.db"))));
    }

    #[test]
    fn missing_database_names_the_file() {
        let error = parse("", None).unwrap().database().unwrap_err();
        assert!(error.to_string().contains("/p/wasmig.toml"), "{error}");
    }

    #[test]
    fn unknown_section_is_refused() {
        let error = parse("[databse]\nurl = \"x\"\n", None).unwrap_err();
        assert!(error.to_string().contains("databse"), "{error}");
    }

    #[test]
    fn history_table_and_limits_apply() {
        let config = parse(
            "[database]\nurl=\"sqlite::memory:\"\n[history]\ntable=\"billing_history\"\n[limits]\nfuel=7\n",
            None,
        )
        .unwrap();
        assert_eq!(config.history.to_string(), "\"billing_history\"");
        assert_eq!(config.limits.fuel, 7);
    }

    #[test]
    fn bad_history_identifier_is_refused() {
        let error = parse("[database]\nurl=\"sqlite::memory:\"\n[history]\ntable=\"x; DROP\"\n", None).unwrap_err();
        assert!(matches!(error, ConfigError::History { .. }), "{error}");
    }
}
