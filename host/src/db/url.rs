//! [`DatabaseUrl`]: the parsed target database, and the one place a password is redacted
//! from the text a user gave.

use std::fmt;
use std::path::{Path, PathBuf};

use super::postgres::{ConnInfoError, PgEnv, PgTarget};

/// Where the database is. Displaying it never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL server: a `postgres://` URL or a `key=value` string, completed from the
    /// `PG*` variables and the password file as libpq would.
    Postgres(Box<PgTarget>),
    /// A SQLite file.
    Sqlite(PathBuf),
    /// `sqlite::memory:`, a private in-memory database (tests, experiments).
    SqliteMemory,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedUrl {
    #[error(
        "unsupported database URL {redacted}: expected postgres://…, postgresql://…, host=… dbname=…, \
         sqlite:PATH or sqlite::memory:"
    )]
    Scheme { redacted: String },
    #[error("{redacted}: {source}")]
    Postgres { redacted: String, source: ConnInfoError },
}

impl DatabaseUrl {
    /// Parses a URL. A relative SQLite path is resolved against `base`; a PostgreSQL target
    /// is completed from `env`.
    pub fn parse(text: &str, base: &Path, env: &PgEnv) -> Result<Self, UnsupportedUrl> {
        let text = text.trim();
        if PgTarget::looks_like(text) {
            return PgTarget::resolve(text, env)
                .map(|target| DatabaseUrl::Postgres(Box::new(target)))
                .map_err(|source| UnsupportedUrl::Postgres { redacted: redact(text), source });
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            if rest == ":memory:" {
                return Ok(DatabaseUrl::SqliteMemory);
            }
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UnsupportedUrl::Scheme { redacted: redact(text) });
            }
            return Ok(DatabaseUrl::Sqlite(lexically_normal(&base.join(path))));
        }
        Err(UnsupportedUrl::Scheme { redacted: redact(text) })
    }

    /// Whether connecting is waiting on a server (the connection, its session, authentication),
    /// which other work may overlap; opening a SQLite file instead creates it.
    pub fn is_server(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }

    /// The password the server is reached with, for a program run against it (a backup
    /// command gets it in `PGPASSWORD`; the URL it is given never holds one).
    pub fn password(&self) -> Option<String> {
        match self {
            DatabaseUrl::Postgres(target) => target.password(),
            DatabaseUrl::Sqlite(_) | DatabaseUrl::SqliteMemory => None,
        }
    }

    /// The PostgreSQL server the `PG*` variables name, for a project that gives no URL.
    pub fn from_environment(env: &PgEnv) -> Option<Result<Self, UnsupportedUrl>> {
        env.names_a_server().then(|| {
            PgTarget::resolve("", env)
                .map(|target| DatabaseUrl::Postgres(Box::new(target)))
                .map_err(|source| UnsupportedUrl::Postgres { redacted: "the PG* variables".into(), source })
        })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres(target) => write!(f, "{target}"),
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            DatabaseUrl::SqliteMemory => f.write_str("sqlite::memory:"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `path` with `.` dropped and `dir/..` folded, without touching the file system (the file
/// may not exist yet): `migrations/../wasmig.db` is `wasmig.db`.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// Replaces the password of a URL's user info, and any `password=` parameter (of a URL's
/// query or a `key=value` string), with `***`.
pub fn redact(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    if let Some(start) = out.find("password") {
        let after = &out[start + "password".len()..];
        let spaces = after.len() - after.trim_start().len();
        if after.trim_start().starts_with('=') {
            let value_start = start + "password".len() + spaces + 1;
            let rest = &out[value_start..];
            let skip = rest.len() - rest.trim_start().len();
            let value_start = value_start + skip;
            let rest = &out[value_start..];
            let value_len = if let Some(quoted) = rest.strip_prefix('\'') {
                quoted.find('\'').map_or(rest.len(), |end| end + 2)
            } else {
                rest.find(['&', ' ']).unwrap_or(rest.len())
            };
            out.replace_range(value_start..value_start + value_len, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_password() {
        assert_eq!(redact("postgres://alice:s3cret@db.example:5432/app"), "postgres://alice:***@db.example:5432/app");
    }

    #[test]
    fn redacts_password_parameter() {
        assert_eq!(
            redact("postgres://db/app?user=bob&password=hunter2&sslmode=require"),
            "postgres://db/app?user=bob&password=***&sslmode=require"
        );
    }

    #[test]
    fn keeps_url_without_password() {
        assert_eq!(redact("postgres://bob@db/app"), "postgres://bob@db/app");
    }

    #[test]
    fn display_never_shows_password() {
        let url = DatabaseUrl::parse("postgresql://u:pw@h/d", Path::new("."), &PgEnv::default()).unwrap();
        assert!(!url.to_string().contains("pw"));
        let url = DatabaseUrl::parse("host=h user=u password='p w'", Path::new("."), &PgEnv::default()).unwrap();
        assert!(!url.to_string().contains("p w"), "{url}");
    }

    #[test]
    fn redacts_key_value_passwords() {
        assert_eq!(redact("host=h password = 'se cret' user=u"), "host=h password = *** user=u");
        assert_eq!(redact("host=h password=secret user=u"), "host=h password=*** user=u");
    }

    #[test]
    fn resolves_relative_sqlite_path_against_base() {
        let url = DatabaseUrl::parse("sqlite:demo.db", Path::new("/srv/project"), &PgEnv::default()).unwrap();
        assert_eq!(url, DatabaseUrl::Sqlite(PathBuf::from("/srv/project/demo.db")));
        let url = DatabaseUrl::parse("sqlite:../demo.db", Path::new("migrations"), &PgEnv::default()).unwrap();
        assert_eq!(url, DatabaseUrl::Sqlite(PathBuf::from("demo.db")));
        let url = DatabaseUrl::parse("sqlite:///abs/demo.db", Path::new("/srv"), &PgEnv::default()).unwrap();
        assert_eq!(url, DatabaseUrl::Sqlite(PathBuf::from("/abs/demo.db")));
    }

    #[test]
    fn rejects_unknown_scheme_without_leaking_password() {
        let error = DatabaseUrl::parse("mysql://root:pw@h/d", Path::new("."), &PgEnv::default()).unwrap_err();
        assert!(!error.to_string().contains("pw@"));
    }
}
