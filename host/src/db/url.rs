//! [`DatabaseUrl`]: the parsed target database, and the one place its password is redacted
//! for display.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the database is. Displaying it never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A `postgres://` or `postgresql://` URL, kept verbatim for the driver.
    Postgres(String),
    /// A SQLite file.
    Sqlite(PathBuf),
    /// `sqlite::memory:`, a private in-memory database (tests, experiments).
    SqliteMemory,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported database URL {redacted:?}: expected postgres://…, postgresql://…, sqlite:PATH or sqlite::memory:")]
pub struct UnsupportedUrl {
    pub redacted: String,
}

impl DatabaseUrl {
    /// Parses a URL. A relative SQLite path is resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, UnsupportedUrl> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(text.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            if rest == ":memory:" {
                return Ok(DatabaseUrl::SqliteMemory);
            }
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UnsupportedUrl { redacted: redact(text) });
            }
            return Ok(DatabaseUrl::Sqlite(base.join(path)));
        }
        Err(UnsupportedUrl { redacted: redact(text) })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres(url) => f.write_str(&redact(url)),
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

/// Replaces the password of a URL's user info, and any `password=` query parameter, with `***`.
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
    if let Some(start) = out.find("password=") {
        let value_start = start + "password=".len();
        let value_end = out[value_start..].find('&').map_or(out.len(), |i| value_start + i);
        out.replace_range(value_start..value_end, "***");
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
        let url = DatabaseUrl::parse("postgresql://u:pw@h/d", Path::new(".")).unwrap();
        assert!(!url.to_string().contains("pw"));
    }

    #[test]
    fn resolves_relative_sqlite_path_against_base() {
        let url = DatabaseUrl::parse("sqlite:demo.db", Path::new("/srv/project")).unwrap();
        assert_eq!(url, DatabaseUrl::Sqlite(PathBuf::from("/srv/project/demo.db")));
        let url = DatabaseUrl::parse("sqlite:///abs/demo.db", Path::new("/srv")).unwrap();
        assert_eq!(url, DatabaseUrl::Sqlite(PathBuf::from("/abs/demo.db")));
    }

    #[test]
    fn rejects_unknown_scheme_without_leaking_password() {
        let error = DatabaseUrl::parse("mysql://root:pw@h/d", Path::new(".")).unwrap_err();
        assert!(!error.to_string().contains("pw@"));
    }
}
