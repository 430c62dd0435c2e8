//! [`Environment`]: what a run reads from outside the project — `DATABASE_URL` (from the
//! process, else from a `.env` file in the working folder, as sqlx-cli and dbmate read it)
//! and the `PG*` variables libpq reads.

use std::path::Path;

use crate::db::PgEnv;

/// The name of the file in the working folder read for `DATABASE_URL`.
pub const DOTENV_FILE: &str = ".env";

/// Where a database URL came from, for messages that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlOrigin {
    /// Given by the caller (`--database`).
    Given,
    /// The process's `DATABASE_URL`.
    Variable,
    /// `DATABASE_URL` in `.env`.
    DotEnv,
}

impl UrlOrigin {
    pub(super) fn describe(&self) -> &'static str {
        match self {
            UrlOrigin::Given => "the database URL given",
            UrlOrigin::Variable => "DATABASE_URL",
            UrlOrigin::DotEnv => ".env: DATABASE_URL",
        }
    }
}

/// The environment of one run, captured once so that a test can give its own.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub database_url: Option<(String, UrlOrigin)>,
    pub pg: PgEnv,
}

impl Environment {
    /// This process's: `DATABASE_URL` beats a `.env` file's, as in sqlx-cli and dbmate.
    pub fn from_process() -> Environment {
        let variable = std::env::var("DATABASE_URL").ok().filter(|url| !url.trim().is_empty());
        let database_url = match variable {
            Some(url) => Some((url, UrlOrigin::Variable)),
            None => dotenv_database_url(Path::new(DOTENV_FILE)).map(|url| (url, UrlOrigin::DotEnv)),
        };
        Environment { database_url, pg: PgEnv::from_process() }
    }
}

/// `DATABASE_URL` from a `.env` file: `KEY=VALUE` lines, `export ` allowed, values bare or
/// quoted, `#` comments. Other keys are not read: wasmig takes its database from it, nothing
/// else. A file that cannot be read counts as absent.
fn dotenv_database_url(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=')?;
        (key.trim() == "DATABASE_URL").then(|| unquote(value.trim()))
    })
}

fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner.to_owned();
        }
    }
    // A bare value ends at a comment.
    value.split(" #").next().unwrap_or(value).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_database_url_like_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# local settings\nAPP_PORT=8080\nexport DATABASE_URL=\"postgres://dev@localhost/app\"\nOTHER='x'\n",
        )
        .unwrap();
        assert_eq!(dotenv_database_url(&path).as_deref(), Some("postgres://dev@localhost/app"));
        std::fs::write(&path, "DATABASE_URL=sqlite:dev.db # the demo\n").unwrap();
        assert_eq!(dotenv_database_url(&path).as_deref(), Some("sqlite:dev.db"));
        std::fs::write(&path, "APP_PORT=8080\n").unwrap();
        assert_eq!(dotenv_database_url(&path), None);
        assert_eq!(dotenv_database_url(&dir.path().join("missing")), None);
    }
}
