//! [`BackupPolicy`]: `[backup]` in `wasmig.toml`, validated — whether a step is backed up
//! before it runs, where the backup goes, and, for PostgreSQL, the command that takes it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[backup]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// `destructive`: before a step that drops or rewrites data; `always`: before every step.
    /// Absent: never.
    pub before: Option<BackupWhen>,
    /// The folder backups are written to, relative to the project folder.
    pub dir: Option<String>,
    /// PostgreSQL: the program and its arguments, `{file}` and `{url}` replaced; SQLite backs
    /// itself up through its online backup API.
    pub command: Option<Vec<String>>,
}

/// Which steps are backed up first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupWhen {
    Destructive,
    Always,
}

/// The backup settings of a run that takes backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicy {
    pub when: BackupWhen,
    /// Where backups go (absolute, or relative to the current folder).
    pub dir: PathBuf,
    /// PostgreSQL's command: program first, with `{file}` and `{url}` still in it.
    pub command: Vec<String>,
}

/// The folder backups go to when `dir` is not given: a dot-folder, which a project may hold,
/// beside `wasmig.toml`.
pub const DEFAULT_DIR: &str = ".backups";

/// pg_dump's own archive format, which `pg_restore` reads back table by table. The password
/// is never in `{url}`: the command finds it in `PGPASSWORD`.
pub const DEFAULT_COMMAND: [&str; 4] = ["pg_dump", "--format=custom", "--file={file}", "{url}"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadBackup {
    #[error(
        "[backup] command is empty: give the program and its arguments, as in \
         [\"pg_dump\", \"--format=custom\", \"--file={{file}}\", \"{{url}}\"]"
    )]
    EmptyCommand,
    #[error(
        "[backup] command never names {{file}}: wasmig gives each backup its file name and records it, so \
         the command must write to {{file}}"
    )]
    NoFile,
    #[error(
        "[backup] sets dir or command but not before: add before = \"destructive\" (before a step that drops \
         or rewrites data) or before = \"always\", or remove the section"
    )]
    NoWhen,
}

impl BackupSection {
    /// The policy, or `None` when no backups are asked for.
    pub fn policy(&self, project_dir: &Path) -> Result<Option<BackupPolicy>, BadBackup> {
        let Some(when) = self.before else {
            return if self.dir.is_some() || self.command.is_some() { Err(BadBackup::NoWhen) } else { Ok(None) };
        };
        let command = match &self.command {
            Some(command) if command.is_empty() || command[0].trim().is_empty() => return Err(BadBackup::EmptyCommand),
            Some(command) if !command.iter().any(|arg| arg.contains("{file}")) => return Err(BadBackup::NoFile),
            Some(command) => command.clone(),
            None => DEFAULT_COMMAND.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        let dir = project_dir.join(self.dir.as_deref().unwrap_or(DEFAULT_DIR));
        Ok(Some(BackupPolicy { when, dir, command }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> BackupSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn no_section_takes_no_backups() {
        assert_eq!(BackupSection::default().policy(Path::new("p")), Ok(None));
    }

    #[test]
    fn defaults_to_pg_dump_into_a_dot_folder() {
        let policy = section("before = \"destructive\"").policy(Path::new("p")).unwrap().unwrap();
        assert_eq!(policy.when, BackupWhen::Destructive);
        assert_eq!(policy.dir, Path::new("p/.backups"));
        assert_eq!(policy.command, DEFAULT_COMMAND);
    }

    #[test]
    fn a_command_must_write_to_its_file() {
        let policy = |text| section(text).policy(Path::new("p"));
        assert_eq!(policy("before = \"always\"\ncommand = []"), Err(BadBackup::EmptyCommand));
        assert_eq!(policy("before = \"always\"\ncommand = [\"pg_dump\", \"{url}\"]"), Err(BadBackup::NoFile));
        assert_eq!(policy("dir = \"/var/backups\""), Err(BadBackup::NoWhen));
        let custom = policy("before = \"always\"\ncommand = [\"sh\", \"-c\", \"pg_dump > {file}\"]").unwrap().unwrap();
        assert_eq!(custom.command[2], "pg_dump > {file}");
    }

    #[test]
    fn an_unknown_when_is_refused_by_the_parser() {
        assert!(toml::from_str::<BackupSection>("before = \"sometimes\"").is_err());
    }
}
