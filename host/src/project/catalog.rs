//! The catalog: the migrations a project holds on disk, read through [`disk::Folder`] so
//! that nothing outside the project folder is opened.
//!
//! One folder per migration, `NNNN_name/`, holding `up.sql` (with optional `down.sql`,
//! `verify.sql` and a `migration.toml` of kind `sql`) or a `migration.toml` of kind
//! `component` and its `.wasm` (each read by [`super::folder`]). Anything else is an error
//! naming the file: nothing is silently skipped.

use std::collections::HashMap;
use std::path::Path;

use crate::core::Version;
use crate::core::digest::Digest;

use super::disk::{self, EntryKind, Folder};
use super::folder::read_folder;
use super::layout::{MANIFEST_FILE, PROJECT_FILE, SIGNATURE_SUFFIX, SUM_FILE, kept_beside_migrations};
use super::sumfile::SumFile;

pub use super::error::{CatalogError, Unrecorded};
pub use super::migration::{Body, ComponentMigration, Migration, SqlScripts};

/// All migrations of a project, in version order, with the project's sum file and
/// signatures as read (checked by [`crate::trust`]).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub migrations: Vec<Migration>,
    /// The raw bytes of `wasmig.sum`, when present.
    pub sum_file: Option<Vec<u8>>,
    /// `wasmig.sum.<KEYID>.minisig` files: (file name, raw bytes), in name order.
    pub signatures: Vec<(String, Vec<u8>)>,
    /// Folders that differ from `wasmig.sum`, left unparsed: only [`Catalog::load_to_verify`]
    /// keeps them here (for the trust report); [`Catalog::load`] refuses them.
    pub unrecorded: Vec<Unrecorded>,
}

fn is_signature_file(name: &str) -> bool {
    name.strip_prefix(SUM_FILE)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(SIGNATURE_SUFFIX))
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

/// Whether [`Catalog::load`] holds the folders to `wasmig.sum` before parsing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgainstSum {
    /// Folders that differ from a well-formed sum file are refused unparsed.
    Check,
    /// They are kept unparsed in [`Catalog::unrecorded`], for the trust report.
    Report,
    /// `wasmig hash` reads the project to write a new sum file.
    Ignore,
}

impl Catalog {
    /// Reads every migration under `project_dir`. When a well-formed `wasmig.sum` is present,
    /// a folder whose files differ from it is refused before anything parses them.
    pub fn load(project_dir: &Path) -> Result<Catalog, CatalogError> {
        Catalog::read(project_dir, AgainstSum::Check)
    }

    /// Reads every migration, keeping the folders that differ from `wasmig.sum` unparsed in
    /// [`Catalog::unrecorded`]: for `wasmig verify-artifacts`, which reports every problem.
    pub fn load_to_verify(project_dir: &Path) -> Result<Catalog, CatalogError> {
        Catalog::read(project_dir, AgainstSum::Report)
    }

    /// Reads every migration without holding it to `wasmig.sum`: for `wasmig hash`, which
    /// writes that file anew.
    pub fn load_to_rehash(project_dir: &Path) -> Result<Catalog, CatalogError> {
        Catalog::read(project_dir, AgainstSum::Ignore)
    }

    fn read(project_dir: &Path, against_sum: AgainstSum) -> Result<Catalog, CatalogError> {
        let mut project = Folder::open(project_dir)
            .map_err(|source| CatalogError::OpenProject { path: project_dir.to_owned(), source })?;
        let mut catalog = Catalog::default();
        let mut folders = Vec::new();
        for entry in project.entries().map_err(CatalogError::reading(project_dir.to_owned()))? {
            let path = project_dir.join(&entry.name);
            let is_file = entry.kind == EntryKind::File;
            if is_file && entry.name == PROJECT_FILE {
                continue;
            }
            if is_file && (entry.name == SUM_FILE || is_signature_file(&entry.name)) {
                let bytes = project.read(&entry).map_err(CatalogError::reading(path))?;
                if entry.name == SUM_FILE {
                    catalog.sum_file = Some(bytes);
                } else {
                    catalog.signatures.push((entry.name, bytes));
                }
                continue;
            }
            if kept_beside_migrations(&entry.name, entry.kind == EntryKind::Folder) {
                continue;
            }
            if entry.kind != EntryKind::Folder {
                return Err(CatalogError::UnexpectedProjectEntry { path });
            }
            folders.push(entry);
        }
        // A malformed sum file is reported by the trust check; only a readable one can say
        // which folders changed.
        let sum = match against_sum {
            AgainstSum::Check | AgainstSum::Report => {
                catalog.sum_file.as_deref().and_then(|bytes| SumFile::parse(bytes).ok())
            }
            AgainstSum::Ignore => None,
        };
        let recorded: Option<HashMap<&str, Digest>> =
            sum.as_ref().map(|sum| sum.entries.iter().map(|(folder, digest)| (folder.as_str(), *digest)).collect());
        // In name order, so that of several broken folders the same one is named every time.
        folders.sort_by(|a, b| a.name.cmp(&b.name));
        let project = &project;
        let outcomes = disk::in_parallel(&folders, |entry| {
            let path = project_dir.join(&entry.name);
            let found = read_folder(project, entry, &path)?;
            let digest = found.files.digest();
            if let Some(recorded) = &recorded {
                let recorded = recorded.get(entry.name.as_str()).copied();
                if recorded != Some(digest) {
                    return Ok(Found::Unrecorded(Unrecorded { folder: entry.name.clone(), recorded, found: digest }));
                }
            }
            Ok(Found::Migration(found.into_migration(digest, &path, &entry.name)?))
        });
        let mut unrecorded = Vec::new();
        for outcome in outcomes {
            match outcome? {
                Found::Migration(migration) => catalog.migrations.push(migration),
                Found::Unrecorded(folder) => unrecorded.push(folder),
            }
        }
        unrecorded.sort_by(|a, b| a.folder.cmp(&b.folder));
        match against_sum {
            AgainstSum::Check if !unrecorded.is_empty() => {
                return Err(CatalogError::Untrusted { folders: unrecorded });
            }
            _ => catalog.unrecorded = unrecorded,
        }
        catalog.migrations.sort_by_key(|m| m.version);
        catalog.signatures.sort();
        for pair in catalog.migrations.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(CatalogError::DuplicateVersion {
                    version: pair[0].version,
                    first: pair[0].folder.clone(),
                    second: pair[1].folder.clone(),
                });
            }
        }
        catalog.check_needed_backfills(project_dir)?;
        Ok(catalog)
    }

    /// Every `needs_backfills` entry must name an earlier migration that has a backfill.
    fn check_needed_backfills(&self, project_dir: &Path) -> Result<(), CatalogError> {
        for migration in &self.migrations {
            for &version in &migration.needs_backfills {
                let problem = match self.get(version) {
                    None => Some("is not a migration of this project"),
                    Some(needed) if needed.version >= migration.version => Some("does not come before it"),
                    Some(needed) if needed.backfill().is_none() => Some("has no [backfill]"),
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    let path = project_dir.join(&migration.folder).join(MANIFEST_FILE);
                    return Err(CatalogError::BadNeededBackfill { path, version, problem });
                }
            }
        }
        Ok(())
    }

    /// The sum file for the catalog as it is on disk now.
    pub fn current_sum(&self) -> SumFile {
        SumFile::new(self.migrations.iter().map(|m| (m.folder.clone(), m.digest)).collect())
    }

    pub fn get(&self, version: Version) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.version == version)
    }
}

/// What one migration folder turned out to be.
enum Found {
    Migration(Migration),
    /// Its files differ from the sum file: left unparsed.
    Unrecorded(Unrecorded),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROJECT_FILE), "").unwrap();
        for (path, body) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    #[test]
    fn reads_sql_migrations_in_version_order() {
        let dir = project(&[("0002_b/up.sql", "SELECT 2;"), ("0001_a/up.sql", "SELECT 1;"), ("0001_a/down.sql", "")]);
        let catalog = Catalog::load(dir.path()).unwrap();
        let versions: Vec<u128> = catalog.migrations.iter().map(|m| m.version.0).collect();
        assert_eq!(versions, [1, 2]);
        assert!(catalog.migrations[0].has_down());
        assert!(!catalog.migrations[1].has_down());
    }

    #[test]
    fn a_project_read_on_several_threads_keeps_every_folder_and_names_the_first_broken_one() {
        let names: Vec<String> = (1..=240).map(|i| format!("{i:04}_m{i}/up.sql")).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "SELECT 1;")).collect();
        let dir = project(&files);
        let catalog = Catalog::load(dir.path()).unwrap();
        let versions: Vec<String> = catalog.migrations.iter().map(|m| m.version.to_string()).collect();
        assert_eq!(versions, (1..=240).map(|i| format!("{i:04}")).collect::<Vec<_>>());
        assert_eq!(catalog.get(Version::from_digits("0173").unwrap()).unwrap().folder, "0173_m173");
        // Broken folders on either side of the threads' shares: the first by name is named.
        for broken in ["0201_m201", "0031_m31"] {
            std::fs::write(dir.path().join(broken).join("notes.txt"), "").unwrap();
        }
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("0031_m31/notes.txt"), "{error}");
    }

    #[test]
    fn links_are_refused_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.sql"), "SELECT 'outside';").unwrap();
        std::fs::create_dir(outside.path().join("0002_elsewhere")).unwrap();
        std::fs::write(outside.path().join("0002_elsewhere/up.sql"), "SELECT 2;").unwrap();
        let dir = project(&[("0001_a/down.sql", "")]);
        std::os::unix::fs::symlink(outside.path().join("secret.sql"), dir.path().join("0001_a/up.sql")).unwrap();
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(matches!(&error, CatalogError::UnexpectedFile { path, .. } if path.ends_with("0001_a/up.sql")), "{error}");
        std::fs::remove_file(dir.path().join("0001_a/up.sql")).unwrap();
        std::fs::write(dir.path().join("0001_a/up.sql"), "SELECT 1;").unwrap();
        std::os::unix::fs::symlink(outside.path().join("0002_elsewhere"), dir.path().join("0002_elsewhere")).unwrap();
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(matches!(&error, CatalogError::UnexpectedProjectEntry { path } if path.ends_with("0002_elsewhere")), "{error}");
    }

    #[test]
    fn unknown_file_in_a_migration_is_named() {
        let dir = project(&[("0001_a/up.sql", ""), ("0001_a/notes.txt", "")]);
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("0001_a/notes.txt"), "{error}");
    }

    #[test]
    fn a_readme_dotfiles_and_wasmigs_own_database_files_are_left_alone() {
        let dir = project(&[
            ("0001_a/up.sql", ""),
            ("README.md", "# migrations"),
            (".gitkeep", ""),
            (".git/HEAD", "ref"),
            ("wasmig.db", ""),
            ("wasmig.db-wal", ""),
            ("wasmig.db-shm", ""),
            ("wasmig.db.wasmig-lock", ""),
        ]);
        let catalog = Catalog::load(dir.path()).unwrap();
        assert_eq!(catalog.migrations.len(), 1);
        for unknown in ["notes.txt", "README.txt", "backup.db.bak"] {
            let dir = project(&[("0001_a/up.sql", ""), (unknown, "")]);
            let error = Catalog::load(dir.path()).unwrap_err();
            assert!(error.to_string().contains(unknown), "{unknown}: {error}");
        }
    }

    #[test]
    fn unknown_file_in_the_project_is_named() {
        let dir = project(&[("0001_a/up.sql", ""), ("README.txt", "")]);
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("README.txt"), "{error}");
    }

    #[test]
    fn sum_file_and_signatures_are_read_and_other_files_refused() {
        let dir =
            project(&[("0001_a/up.sql", ""), ("wasmig.sum", "sum"), ("wasmig.sum.ABCDEF0123456789.minisig", "sig")]);
        let catalog = Catalog::load(dir.path()).unwrap();
        assert_eq!(catalog.sum_file.as_deref(), Some(&b"sum"[..]));
        assert_eq!(catalog.signatures.len(), 1);
        let dir = project(&[("0001_a/up.sql", ""), ("wasmig.sum.minisig.bak", "")]);
        assert!(matches!(Catalog::load(dir.path()).unwrap_err(), CatalogError::UnexpectedProjectEntry { .. }));
    }

    #[test]
    fn badly_named_folder_is_named() {
        let dir = project(&[("create_users/up.sql", "")]);
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(matches!(error, CatalogError::BadFolderName { .. }), "{error}");
    }

    #[test]
    fn missing_up_sql_is_an_error() {
        let dir = project(&[("0001_a/down.sql", "")]);
        assert!(matches!(Catalog::load(dir.path()).unwrap_err(), CatalogError::MissingUp { .. }));
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let dir = project(&[("0001_a/up.sql", ""), ("1_b/up.sql", "")]);
        assert!(matches!(Catalog::load(dir.path()).unwrap_err(), CatalogError::DuplicateVersion { .. }));
    }

    #[test]
    fn component_manifest_needs_its_file() {
        let dir = project(&[("0001_c/migration.toml", "kind = \"component\"\n")]);
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("migration.wasm"), "{error}");
    }

    #[test]
    fn malformed_manifest_names_the_file() {
        let dir = project(&[("0001_c/migration.toml", "kind = component\n")]);
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("0001_c/migration.toml"), "{error}");
    }

    #[test]
    fn a_folder_that_differs_from_the_sum_is_refused_unparsed() {
        let dir = project(&[
            ("0001_a/up.sql", "SELECT 1;"),
            ("0002_c/migration.toml", "kind = \"sql\"\n"),
            ("0002_c/up.sql", ""),
        ]);
        let catalog = Catalog::load(dir.path()).unwrap();
        std::fs::write(dir.path().join(SUM_FILE), catalog.current_sum().render()).unwrap();
        assert!(Catalog::load(dir.path()).is_ok());
        // Broken TOML and bytes that are not UTF-8: refused as changed files, never parsed.
        std::fs::write(dir.path().join("0002_c/migration.toml"), "kind = \"sql\n").unwrap();
        std::fs::write(dir.path().join("0001_a/up.sql"), b"SELECT \xff;").unwrap();
        let error = Catalog::load(dir.path()).unwrap_err();
        let CatalogError::Untrusted { folders } = &error else { panic!("not a trust failure: {error}") };
        let names: Vec<&str> = folders.iter().map(|f| f.folder.as_str()).collect();
        assert_eq!(names, ["0001_a", "0002_c"], "{error}");
        assert!(error.to_string().contains("wasmig hash"), "{error}");
        // A folder the sum does not know is refused the same way.
        std::fs::create_dir(dir.path().join("0003_new")).unwrap();
        std::fs::write(dir.path().join("0003_new/up.sql"), "").unwrap();
        let error = Catalog::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("0003_new is not in wasmig.sum"), "{error}");
        // `wasmig hash` still reads what it parses.
        std::fs::write(dir.path().join("0001_a/up.sql"), "SELECT 2;").unwrap();
        std::fs::write(dir.path().join("0002_c/migration.toml"), "kind = \"sql\"\n").unwrap();
        assert_eq!(Catalog::load_to_rehash(dir.path()).unwrap().migrations.len(), 3);
    }

    #[test]
    fn digest_ignores_the_checkout_path_and_line_endings() {
        let a = project(&[("0001_a/up.sql", "SELECT 1;\nSELECT 2;\n")]);
        let b = project(&[("0001_a/up.sql", "SELECT 1;\r\nSELECT 2;\r\n")]);
        let digest = |dir: &tempfile::TempDir| Catalog::load(dir.path()).unwrap().migrations[0].digest;
        assert_eq!(digest(&a), digest(&b));
    }
}
