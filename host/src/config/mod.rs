//! [`Config`], the validated settings of one run, from `wasmig.toml` and the environment.
//!
//! The database comes from an explicit URL (the CLI's `--database`), then `DATABASE_URL` (the
//! process's, else a `.env` file's), then `wasmig.toml`'s `[database] url`, then the `PG*`
//! variables. Library users build a [`Config`] the same way, so the CLI holds no logic of its
//! own.

mod backup;
mod environment;
mod file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::limits::{Limits, MAX_SECONDS, OutOfRange};
use crate::core::{BadDuration, Identifier, IdentifierError, parse_duration};
use crate::db::{ConnectOptions, DatabaseUrl, Pooler, UnsupportedUrl};
use crate::ledger::{HistoryTable, LockMode};
use crate::project::backfill::{ProjectBackfillSection, ThrottleOverrides};
use crate::project::layout::PROJECT_FILE;
use crate::trust::{TrustConfigError, TrustPolicy, TrustSection};

pub use self::backup::{BackupPolicy, BackupSection, BackupWhen, BadBackup};
pub use self::environment::{DOTENV_FILE, Environment, UrlOrigin};
pub use self::file::{
    CacheSection, DatabaseSection, GuardSection, HistorySection, LockModeSetting, LockSection, PoolerSetting,
    ProjectFile,
};

/// The settings of one run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project folder: `wasmig.toml` and one folder per migration.
    pub project_dir: PathBuf,
    /// `None` when neither the caller nor `wasmig.toml` names one: enough for hashing,
    /// signing and verifying artifacts; [`crate::Migrator::open`] refuses it.
    pub database: Option<DatabaseUrl>,
    /// How patiently to connect: `[database] wait` and `connect_timeout_secs`.
    pub connect: ConnectOptions,
    pub history: HistoryTable,
    pub limits: Limits,
    pub lock_timeout: Duration,
    /// How the migration lock is held: `[lock] mode`, `lease`.
    pub lock_mode: LockMode,
    /// Where precompiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub trust: TrustPolicy,
    /// PostgreSQL role for component statements, validated as an identifier.
    pub postgres_role: Option<String>,
    /// The project's backfill defaults (`[backfill]` in `wasmig.toml`).
    pub backfill: ProjectBackfillSection,
    /// Throttling given for this run (the command line); beats every file.
    pub backfill_overrides: ThrottleOverrides,
    /// Backups before steps (`[backup]`); `None` takes none.
    pub backup: Option<BackupPolicy>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} does not exist: create a project with `wasmig init` (it writes migrations/wasmig.toml), or \
         point at one with --project DIR"
    )]
    Missing { path: PathBuf },
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
    #[error("{path}: {key}: {source}")]
    Duration { path: PathBuf, key: &'static str, source: BadDuration },
    #[error(
        "{path}: [lock] mode = \"advisory\" cannot hold through [database] pooler = \"transaction\": a \
         transaction pooler hands the lock's session to other clients; use mode = \"table\" (the default there)"
    )]
    AdvisoryBehindPooler { path: PathBuf },
    #[error("{path}: [database] wait is out of range: at most 24h; it is {}", crate::core::Human(*wait))]
    Wait { path: PathBuf, wait: Duration },
    #[error("{path}: [lock] lease must be between 2s and 1h; it is {}", crate::core::Human(*lease))]
    Lease { path: PathBuf, lease: Duration },
    #[error("{path}: {source}")]
    Backup { path: PathBuf, source: BadBackup },
}

/// The folder `wasmig` uses when none is given: the current folder if it holds a
/// `wasmig.toml`, else `./migrations`.
pub fn default_project_dir() -> PathBuf {
    if Path::new(PROJECT_FILE).is_file() { PathBuf::from(".") } else { PathBuf::from("migrations") }
}

impl Config {
    /// Reads `<project_dir>/wasmig.toml` and this process's environment. `database_url`,
    /// when given, overrides every other source; a relative SQLite path in it (or in
    /// `DATABASE_URL`) is taken relative to the current folder, one from the file relative to
    /// the project folder.
    pub fn load(project_dir: &Path, database_url: Option<&str>) -> Result<Config, ConfigError> {
        Config::load_in(project_dir, database_url, &Environment::from_process())
    }

    /// [`Config::load`] with a given environment.
    pub fn load_in(project_dir: &Path, database_url: Option<&str>, env: &Environment) -> Result<Config, ConfigError> {
        let path = project_dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing { path: path.clone() },
            _ => ConfigError::Read { path: path.clone(), source },
        })?;
        Config::parse_in(project_dir, &text, database_url, env)
    }

    /// Validates the text of `<project_dir>/wasmig.toml` (read by [`Config::load`]).
    pub fn parse(project_dir: &Path, text: &str, database_url: Option<&str>) -> Result<Config, ConfigError> {
        Config::parse_in(project_dir, text, database_url, &Environment::from_process())
    }

    /// [`Config::parse`] with a given environment.
    pub fn parse_in(
        project_dir: &Path,
        text: &str,
        database_url: Option<&str>,
        env: &Environment,
    ) -> Result<Config, ConfigError> {
        let path = project_dir.join(PROJECT_FILE);
        let file: ProjectFile =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { path: path.clone(), message: e.to_string() })?;
        Config::from_project_file(project_dir, &path, file, database_url, env)
    }

    fn from_project_file(
        project_dir: &Path,
        path: &Path,
        file: ProjectFile,
        database_url: Option<&str>,
        env: &Environment,
    ) -> Result<Config, ConfigError> {
        let given = database_url.map(|url| (url, UrlOrigin::Given));
        let from_env = env.database_url.as_ref().map(|(url, origin)| (url.as_str(), origin.clone()));
        let database = match (given.or(from_env), &file.database.url) {
            (Some((url, origin)), _) => Some(
                DatabaseUrl::parse(url, Path::new("."), &env.pg)
                    .map_err(|source| ConfigError::Url { origin: origin.describe().into(), source })?,
            ),
            (None, Some(url)) => {
                Some(DatabaseUrl::parse(url, project_dir, &env.pg).map_err(|source| ConfigError::Url {
                    origin: format!("{}: [database] url", path.display()),
                    source,
                })?)
            }
            (None, None) => DatabaseUrl::from_environment(&env.pg)
                .transpose()
                .map_err(|source| ConfigError::Url { origin: "PG* variables".into(), source })?,
        };
        let duration = |text: &Option<String>, key| {
            text.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|source| ConfigError::Duration { path: path.to_owned(), key, source })
        };
        let wait = duration(&file.database.wait, "[database] wait")?.unwrap_or(Duration::ZERO);
        if wait.as_secs() > MAX_SECONDS {
            return Err(ConfigError::Wait { path: path.to_owned(), wait });
        }
        let pooler = match file.database.pooler {
            Some(PoolerSetting::Transaction) => Pooler::Transaction,
            Some(PoolerSetting::None | PoolerSetting::Session) | None => Pooler::None,
        };
        let lease = duration(&file.lock.lease, "[lock] lease")?.unwrap_or(LockMode::DEFAULT_LEASE);
        if !(Duration::from_secs(2)..=Duration::from_secs(3600)).contains(&lease) {
            return Err(ConfigError::Lease { path: path.to_owned(), lease });
        }
        let lock_mode = match (file.lock.mode, pooler) {
            (Some(LockModeSetting::Advisory), Pooler::Transaction) => {
                return Err(ConfigError::AdvisoryBehindPooler { path: path.to_owned() });
            }
            (Some(LockModeSetting::Table), _) | (None, Pooler::Transaction) => LockMode::Table { lease },
            (Some(LockModeSetting::Advisory), Pooler::None) | (None, Pooler::None) => LockMode::Session,
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
        let backup =
            file.backup.policy(project_dir).map_err(|source| ConfigError::Backup { path: path.to_owned(), source })?;
        Ok(Config {
            project_dir: project_dir.to_owned(),
            database,
            connect: ConnectOptions {
                wait,
                attempt_timeout: Duration::from_secs(file.database.connect_timeout_secs.unwrap_or(10)),
                pooler,
            },
            history,
            limits: Limits::default().with(&file.limits),
            lock_timeout: Duration::from_secs(file.lock.timeout_secs.unwrap_or(600)),
            lock_mode,
            cache_dir: Some(match file.cache.dir {
                Some(dir) => project_dir.join(dir),
                None => default_cache_dir(),
            }),
            trust,
            postgres_role,
            backfill: file.backfill,
            backfill_overrides: ThrottleOverrides::default(),
            backup,
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
        parse_with(text, url, &Environment::default())
    }

    fn parse_with(text: &str, url: Option<&str>, env: &Environment) -> Result<Config, ConfigError> {
        let file: ProjectFile = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax { path: PathBuf::from("wasmig.toml"), message: e.to_string() })?;
        Config::from_project_file(Path::new("/p"), Path::new("/p/wasmig.toml"), file, url, env)
    }

    fn shown(config: &Config) -> String {
        config.database.as_ref().map(ToString::to_string).unwrap_or_default()
    }

    #[test]
    fn explicit_url_overrides_the_file() {
        let config = parse("[database]\nurl = \"sqlite:file.db\"\n", Some("postgres://u@h/d")).unwrap();
        assert_eq!(shown(&config), "postgres://u@h:5432/d");
    }

    #[test]
    fn the_url_comes_from_the_caller_then_the_environment_then_the_file() {
        let file = "[database]\nurl = \"sqlite:file.db\"\n";
        let env = |origin| Environment {
            database_url: Some(("postgres://env@h/d".to_owned(), origin)),
            pg: crate::db::PgEnv::default(),
        };
        assert_eq!(shown(&parse_with(file, None, &env(UrlOrigin::DotEnv)).unwrap()), "postgres://env@h:5432/d");
        assert_eq!(shown(&parse_with(file, Some("sqlite:x.db"), &env(UrlOrigin::Variable)).unwrap()), "sqlite:x.db");
        let pg_only = Environment {
            database_url: None,
            pg: crate::db::PgEnv::from_vars([("PGHOST", "pg.internal"), ("PGUSER", "ops")], None),
        };
        assert_eq!(shown(&parse_with("", None, &pg_only).unwrap()), "postgres://ops@pg.internal:5432/ops");
        assert_eq!(shown(&parse_with(file, None, &pg_only).unwrap()), "sqlite:/p/file.db");
        let error = parse_with(file, None, &Environment {
            database_url: Some(("mysql://x".into(), UrlOrigin::DotEnv)),
            pg: crate::db::PgEnv::default(),
        })
        .unwrap_err();
        assert!(error.to_string().starts_with(".env: DATABASE_URL"), "{error}");
    }

    #[test]
    fn wait_is_a_duration() {
        let config = parse("[database]\nurl=\"sqlite::memory:\"\nwait = \"1m30s\"\n", None).unwrap();
        assert_eq!(config.connect.wait, Duration::from_secs(90));
        let error = parse("[database]\nwait = \"soon\"\n", None).unwrap_err();
        assert!(error.to_string().contains("[database] wait"), "{error}");
    }

    #[test]
    fn a_transaction_pooler_takes_the_table_lock() {
        let config = parse("[database]\npooler = \"transaction\"\n", None).unwrap();
        assert_eq!(config.connect.pooler, Pooler::Transaction);
        assert_eq!(config.lock_mode, LockMode::Table { lease: LockMode::DEFAULT_LEASE });
        let config = parse("[lock]\nmode = \"table\"\nlease = \"5s\"\n", None).unwrap();
        assert_eq!(config.lock_mode, LockMode::Table { lease: Duration::from_secs(5) });
        assert_eq!(parse("", None).unwrap().lock_mode, LockMode::Session);
        let error = parse("[database]\npooler = \"transaction\"\n[lock]\nmode = \"advisory\"\n", None).unwrap_err();
        assert!(matches!(error, ConfigError::AdvisoryBehindPooler { .. }), "{error}");
        let error = parse("[lock]\nlease = \"1s\"\n", None).unwrap_err();
        assert!(error.to_string().contains("[lock] lease must be between 2s and 1h"), "{error}");
        let error = parse("[database]\npooler = \"statement\"\n", None).unwrap_err();
        assert!(error.to_string().contains("statement"), "{error}");
    }

    #[test]
    fn file_sqlite_path_is_relative_to_the_project() {
        let config = parse("[database]\nurl = \"sqlite:demo.db\"\n", None).unwrap();
        assert_eq!(shown(&config), "sqlite:/p/demo.db");
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
