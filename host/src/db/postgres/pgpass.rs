//! The password file (`~/.pgpass`, or `PGPASSFILE`), read as libpq reads it: lines of
//! `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`, the
//! first matching line winning, and a file that others can read ignored with a warning.

use std::path::Path;

use tokio_postgres::config::Host;

/// The password for the first host of `config`, if a line of `file` matches it.
pub(super) fn lookup(file: &Path, config: &tokio_postgres::Config) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    if readable_by_others(file) {
        tracing::warn!(
            file = %file.display(),
            "the password file is readable by group or others, so it is ignored; chmod 0600 it"
        );
        return None;
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        // libpq matches a socket connection as `localhost`.
        #[cfg(unix)]
        Some(Host::Unix(_)) => "localhost".to_owned(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let wanted = [host.as_str(), port.as_str(), config.get_dbname().unwrap_or_default(), config.get_user()?];
    text.lines().filter(|line| !line.trim_start().starts_with('#')).find_map(|line| {
        let fields = split_fields(line);
        let [host, port, database, user, password] = fields.as_slice() else { return None };
        let matches = [host, port, database, user]
            .iter()
            .zip(wanted)
            .all(|(pattern, value)| pattern.as_str() == "*" || pattern.as_str() == value);
        matches.then(|| password.clone())
    })
}

/// A line's fields: split on unescaped `:`, with `\:` and `\\` unescaped.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(field) = fields.last_mut()
                {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(unix)]
fn readable_by_others(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_file: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        file
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let passfile = file(
            "# comment\nother:5432:*:ops:nope\ndb.example:6432:app:ops:first\\:pw\n*:*:*:ops:second\n",
            0o600,
        );
        let config = tokio_postgres::Config::from_str("postgres://ops@db.example:6432/app").unwrap();
        assert_eq!(lookup(passfile.path(), &config).as_deref(), Some("first:pw"));
        let config = tokio_postgres::Config::from_str("postgres://ops@elsewhere/app").unwrap();
        assert_eq!(lookup(passfile.path(), &config).as_deref(), Some("second"));
        let config = tokio_postgres::Config::from_str("postgres://nobody@elsewhere/app").unwrap();
        assert_eq!(lookup(passfile.path(), &config), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_ignored() {
        let passfile = file("*:*:*:*:pw\n", 0o644);
        let config = tokio_postgres::Config::from_str("postgres://ops@h/app").unwrap();
        assert_eq!(lookup(passfile.path(), &config), None);
    }
}
