//! [`PgTarget`]: which PostgreSQL server and database to reach and how, resolved the way libpq
//! resolves a connection string, so that what works for `psql` works for wasmig.
//!
//! The text is a `postgres://` URL or a `key=value` string. Whatever it leaves out comes from
//! the `PG*` environment variables ([`PgEnv`]), then libpq's defaults; a missing password is
//! looked up in the password file (`PGPASSFILE`, else `~/.pgpass`). The TLS settings
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) are read here and kept apart, since
//! tokio-postgres knows only three of libpq's six modes; the rest goes to tokio-postgres'
//! own parser.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;

use super::pgpass;
use crate::core::os_user;

/// libpq's `sslmode`: whether to encrypt, and what to check of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never encrypt; no TLS request is sent.
    Disable,
    /// Try without TLS first; encrypt (without checking the certificate) if the server
    /// refuses an unencrypted session.
    Allow,
    /// Try TLS first, without checking the certificate; go on unencrypted if the server has
    /// none. libpq's default, and wasmig's.
    Prefer,
    /// Encrypt or fail. The certificate is checked against a CA only if a root certificate
    /// file is given (or `~/.postgresql/root.crt` exists), as libpq does.
    Require,
    /// Encrypt, and check that a trusted CA signed the server's certificate.
    VerifyCa,
    /// Encrypt, check the CA, and check that the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    const NAMES: [(&'static str, SslMode); 6] = [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, mode)| *mode == self).map_or("prefer", |(name, _)| name)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Where the CAs that a server's certificate is checked against come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file: `sslrootcert`, or `~/.postgresql/root.crt` when that exists.
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`, and the fallback when no file is
    /// given: managed databases present certificates from public CAs).
    System,
}

/// The TLS half of a [`PgTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: RootCerts,
    /// Whether `roots` is a file the user gave or keeps at libpq's default place: libpq then
    /// checks the CA even under `require`.
    pub roots_from_file: bool,
    /// A client certificate and its key, for servers that authenticate by certificate.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A resolved PostgreSQL connection target. Displaying it never shows a password.
#[derive(Clone)]
pub struct PgTarget {
    /// Everything but TLS, for tokio-postgres.
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: TlsSettings,
}

impl PartialEq for PgTarget {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
            && self.tls == other.tls
            && self.config.get_password() == other.config.get_password()
    }
}

impl Eq for PgTarget {}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The process environment as libpq reads it: the `PG*` variables and the home folder.
#[derive(Debug, Clone, Default)]
pub struct PgEnv {
    vars: HashMap<String, String>,
    home: Option<PathBuf>,
}

impl PgEnv {
    /// The variables of this process.
    pub fn from_process() -> PgEnv {
        let vars = std::env::vars().filter(|(name, _)| name.starts_with("PG")).collect();
        PgEnv { vars, home: std::env::var_os("HOME").map(PathBuf::from) }
    }

    /// Given variables and home folder (tests, and callers that resolve for another process).
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>, home: Option<&Path>) -> PgEnv {
        let vars = vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        PgEnv { vars, home: home.map(Path::to_owned) }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }

    fn in_home(&self, relative: &str) -> Option<PathBuf> {
        self.home.as_ref().map(|home| home.join(relative))
    }

    /// Whether any variable names a server or database: then a project with no URL at all
    /// targets PostgreSQL, as `psql` with no arguments does.
    pub fn names_a_server(&self) -> bool {
        ["PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE"].iter().any(|name| self.var(name).is_some())
    }
}

/// Why a connection string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error(
        "{origin}{value} is not an sslmode: use disable, allow, prefer, require, verify-ca or verify-full"
    )]
    SslMode { origin: String, value: String },
    #[error("{origin}{value} is not a port number")]
    Port { origin: String, value: String },
    #[error("the connection string is malformed: {reason}")]
    Syntax { reason: String },
    #[error("the connection string is not valid: {reason}")]
    Driver { reason: String },
}

/// The parameters wasmig reads itself instead of passing them to tokio-postgres.
const OWN_KEYS: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"];

/// Default `application_name`, so a DBA looking at `pg_stat_activity` sees who is connected.
pub const APPLICATION_NAME: &str = "wasmig";

impl PgTarget {
    /// The password the server is reached with, if any: for a program wasmig runs against the
    /// same server (a backup command), which gets it in `PGPASSWORD`, never on its command line.
    pub fn password(&self) -> Option<String> {
        self.config.get_password().map(|password| String::from_utf8_lossy(password).into_owned())
    }

    /// Whether `text` is meant as a PostgreSQL connection string: a `postgres://` or
    /// `postgresql://` URL, or `key=value` pairs.
    pub fn looks_like(text: &str) -> bool {
        let text = text.trim();
        text.starts_with("postgres://")
            || text.starts_with("postgresql://")
            || (text.contains('=') && !text.contains("://") && !text.starts_with("sqlite:"))
    }

    /// Resolves `text` (empty: everything from the environment) as libpq would.
    pub fn resolve(text: &str, env: &PgEnv) -> Result<PgTarget, ConnInfoError> {
        let text = text.trim();
        let (rest, own) = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let (rest, own) = split_url(text);
            (with_env_ports(&rest, env)?, own)
        } else {
            split_keywords(text)?
        };
        let mut config = if rest.is_empty() {
            tokio_postgres::Config::new()
        } else {
            tokio_postgres::Config::from_str(&rest)
                .map_err(|e| ConnInfoError::Driver { reason: crate::core::error_chain(&e) })?
        };
        fill_from_env(&mut config, env)?;
        let setting = |key: &str, var: &str| {
            own.get(key)
                .map(|value| (format!("{key}="), value.clone()))
                .or_else(|| env.var(var).map(|value| (format!("{var}="), value.to_owned())))
        };
        let mode = match setting("sslmode", "PGSSLMODE") {
            None => SslMode::Prefer,
            Some((origin, value)) => SslMode::NAMES
                .iter()
                .find(|(name, _)| *name == value)
                .map(|(_, mode)| *mode)
                .ok_or(ConnInfoError::SslMode { origin, value })?,
        };
        let explicit_roots = setting("sslrootcert", "PGSSLROOTCERT").map(|(_, value)| value);
        let default_roots = env.in_home(".postgresql/root.crt").filter(|path| path.is_file());
        let (roots, roots_from_file) = match (explicit_roots.as_deref(), default_roots) {
            (Some("system"), _) => (RootCerts::System, false),
            (Some(path), _) => (RootCerts::File(PathBuf::from(path)), true),
            (None, Some(path)) => (RootCerts::File(path), true),
            (None, None) => (RootCerts::System, false),
        };
        let cert = setting("sslcert", "PGSSLCERT")
            .map(|(_, value)| PathBuf::from(value))
            .or_else(|| env.in_home(".postgresql/postgresql.crt").filter(|path| path.is_file()));
        let key = setting("sslkey", "PGSSLKEY")
            .map(|(_, value)| PathBuf::from(value))
            .or_else(|| env.in_home(".postgresql/postgresql.key"));
        let client = cert.zip(key);
        if config.get_password().is_none() {
            let file = setting("passfile", "PGPASSFILE")
                .map(|(_, value)| PathBuf::from(value))
                .or_else(|| env.in_home(".pgpass"));
            if let Some(password) = file.and_then(|file| pgpass::lookup(&file, &config)) {
                config.password(password);
            }
        }
        Ok(PgTarget { config, tls: TlsSettings { mode, roots, roots_from_file, client } })
    }

    /// The same server, user and TLS settings, naming database `name` on it.
    pub fn on_database(&self, name: &str) -> PgTarget {
        let mut target = self.clone();
        target.config.dbname(name);
        target
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// Whether every host is a Unix socket, where TLS does not apply (libpq ignores
    /// `sslmode` there too).
    pub(super) fn local_socket_only(&self) -> bool {
        #[cfg(unix)]
        let local = self.config.get_hosts().iter().all(|host| matches!(host, Host::Unix(_)));
        #[cfg(not(unix))]
        let local = false;
        local
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.config.get_user().unwrap_or_default();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let name = match host {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                    Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string().replace('/', "%2F"),
                };
                let ports = self.config.get_ports();
                match ports.get(index).or(ports.first()) {
                    Some(port) => format!("{name}:{port}"),
                    None => format!("{name}:5432"),
                }
            })
            .collect();
        let database = self.config.get_dbname().unwrap_or_default();
        write!(f, "postgres://{user}@{}/{database}", hosts.join(","))?;
        if self.tls.mode != SslMode::Prefer {
            write!(f, "?sslmode={}", self.tls.mode)?;
        }
        Ok(())
    }
}

/// Fills what the string left out from the `PG*` variables, then libpq's defaults.
fn fill_from_env(config: &mut tokio_postgres::Config, env: &PgEnv) -> Result<(), ConnInfoError> {
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env.var("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|host| {
                config.host(host.trim());
            }),
            None => {
                // libpq's default is the server's socket folder; Debian's is this one. Without
                // it (a container, a client-only machine) the server is local over TCP.
                let socket = Path::new("/var/run/postgresql");
                config.host(if socket.is_dir() { "/var/run/postgresql" } else { "localhost" });
            }
        }
    }
    if config.get_ports().is_empty()
        && let Some(ports) = env.var("PGPORT")
    {
        for port in ports.split(',') {
            let parsed = port
                .trim()
                .parse::<u16>()
                .map_err(|_| ConnInfoError::Port { origin: "PGPORT=".into(), value: port.to_owned() })?;
            config.port(parsed);
        }
    }
    if config.get_user().is_none() {
        config.user(env.var("PGUSER").map_or_else(os_user, str::to_owned));
    }
    if config.get_password().is_none()
        && let Some(password) = env.var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none() {
        let database = env.var("PGDATABASE").map(str::to_owned).or_else(|| config.get_user().map(str::to_owned));
        if let Some(database) = database {
            config.dbname(database);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name(env.var("PGAPPNAME").unwrap_or(APPLICATION_NAME));
    }
    if config.get_connect_timeout().is_none()
        && let Some(seconds) = env.var("PGCONNECT_TIMEOUT").and_then(|s| s.trim().parse::<u64>().ok())
        && seconds > 0
    {
        config.connect_timeout(Duration::from_secs(seconds.max(2)));
    }
    Ok(())
}

/// A URL whose hosts name no port gets `PGPORT`'s, as libpq gives it: tokio-postgres would
/// take 5432 for them.
fn with_env_ports(url: &str, env: &PgEnv) -> Result<String, ConnInfoError> {
    let Some(ports) = env.var("PGPORT") else { return Ok(url.to_owned()) };
    let ports: Vec<&str> = ports.split(',').map(str::trim).collect();
    if let Some(bad) = ports.iter().find(|port| port.parse::<u16>().is_err()) {
        return Err(ConnInfoError::Port { origin: "PGPORT=".into(), value: (*bad).to_owned() });
    }
    let Some((scheme, rest)) = url.split_once("://") else { return Ok(url.to_owned()) };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    // A bracketed IPv6 address holds colons of its own; a port follows its `]`.
    let has_port = |host: &str| host.rsplit_once(']').map_or(host, |(_, after)| after).contains(':');
    if hosts.is_empty() || hosts.split(',').any(has_port) {
        return Ok(url.to_owned());
    }
    let hosts: Vec<String> = hosts
        .split(',')
        .enumerate()
        .map(|(index, host)| format!("{host}:{}", ports.get(index).or(ports.first()).copied().unwrap_or("5432")))
        .collect();
    Ok(format!("{scheme}://{userinfo}{}{tail}", hosts.join(",")))
}

/// Takes wasmig's own parameters out of a URL's query; the rest stays for tokio-postgres.
fn split_url(text: &str) -> (String, HashMap<String, String>) {
    let mut own = HashMap::new();
    let Some((base, query)) = text.split_once('?') else { return (text.to_owned(), own) };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if OWN_KEYS.contains(&key) {
            own.insert(key.to_owned(), percent_decode(value));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (rest, own)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits libpq's `key = value` syntax (values bare or single-quoted, with `\` escapes),
/// taking wasmig's own keys out and quoting the rest again for tokio-postgres.
fn split_keywords(text: &str) -> Result<(String, HashMap<String, String>), ConnInfoError> {
    let mut own = HashMap::new();
    let mut kept = Vec::new();
    let mut chars = text.chars().peekable();
    let syntax = |reason: &str| ConnInfoError::Syntax { reason: reason.to_owned() };
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(syntax(&format!("`{key}` has no value (write {key}=VALUE)")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(syntax(&format!("the value of {key} has no closing quote"))),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(|| syntax("a value ends in a backslash"))?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(|| syntax("a value ends in a backslash"))?);
                } else {
                    value.push(c);
                }
            }
        }
        if OWN_KEYS.contains(&key.as_str()) {
            own.insert(key, value);
        } else {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((kept.join(" "), own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> PgEnv {
        PgEnv::from_vars(vars.iter().copied(), None)
    }

    #[test]
    fn a_url_keeps_its_parts_and_takes_the_tls_settings() {
        let target = PgTarget::resolve(
            "postgres://deploy:pw@db.example:6543/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(target.to_string(), "postgres://deploy@db.example:6543/app?sslmode=verify-full");
        assert_eq!(target.tls.mode, SslMode::VerifyFull);
        assert_eq!(target.tls.roots, RootCerts::File(PathBuf::from("/etc/ca.pem")));
        assert_eq!(target.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(target.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(target.config.get_application_name(), Some("wasmig"));
    }

    #[test]
    fn key_value_strings_read_like_libpq() {
        let target = PgTarget::resolve(
            "host=db.internal port=5433 user=ops dbname='my app' password='it\\'s' sslmode=require",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(target.to_string(), "postgres://ops@db.internal:5433/my app?sslmode=require");
        assert_eq!(target.config.get_password(), Some(&b"it's"[..]));
    }

    #[test]
    fn the_environment_fills_what_the_string_leaves_out() {
        let vars = [
            ("PGHOST", "pg.example"),
            ("PGPORT", "6432"),
            ("PGUSER", "svc"),
            ("PGPASSWORD", "secret"),
            ("PGDATABASE", "orders"),
            ("PGAPPNAME", "deploy-42"),
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", "/ca.pem"),
        ];
        let target = PgTarget::resolve("", &env(&vars)).unwrap();
        assert_eq!(target.to_string(), "postgres://svc@pg.example:6432/orders?sslmode=verify-ca");
        assert_eq!(target.config.get_application_name(), Some("deploy-42"));
        assert_eq!(target.config.get_password(), Some(&b"secret"[..]));
        // What the string says beats the environment.
        let target = PgTarget::resolve("postgres://me@other/db?sslmode=disable", &env(&vars)).unwrap();
        assert_eq!(target.to_string(), "postgres://me@other:6432/db?sslmode=disable");
    }

    #[test]
    fn the_database_defaults_to_the_user() {
        let target = PgTarget::resolve("postgres://alice@h", &env(&[])).unwrap();
        assert_eq!(target.to_string(), "postgres://alice@h:5432/alice");
    }

    #[test]
    fn bad_settings_name_where_they_came_from() {
        let error = PgTarget::resolve("postgres://h/d?sslmode=verify", &env(&[])).unwrap_err();
        assert!(error.to_string().contains("sslmode=verify is not an sslmode"), "{error}");
        let error = PgTarget::resolve("postgres://h/d", &env(&[("PGSSLMODE", "yes")])).unwrap_err();
        assert!(error.to_string().starts_with("PGSSLMODE=yes is not"), "{error}");
        let error = PgTarget::resolve("", &env(&[("PGPORT", "54x")])).unwrap_err();
        assert!(matches!(error, ConnInfoError::Port { .. }), "{error}");
        let error = PgTarget::resolve("host=h dbname='open", &env(&[])).unwrap_err();
        assert!(error.to_string().contains("closing quote"), "{error}");
        let error = PgTarget::resolve("host=h frobnicate=1", &env(&[])).unwrap_err();
        assert!(error.to_string().contains("frobnicate"), "{error}");
    }

    #[test]
    fn looks_like_tells_postgres_strings_from_others() {
        assert!(PgTarget::looks_like("postgresql://h/d"));
        assert!(PgTarget::looks_like("host=h dbname=d"));
        assert!(!PgTarget::looks_like("sqlite:x.db"));
        assert!(!PgTarget::looks_like("mysql://h/d"));
    }
}
