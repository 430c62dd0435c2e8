//! The catalog: the migrations a project holds on disk, read through a cap-std [`Dir`] so
//! that nothing outside the project folder is opened.
//!
//! One folder per migration, `NNNN_name/`, holding `up.sql` (with optional `down.sql`,
//! `verify.sql` and a `migration.toml` of kind `sql`) or a `migration.toml` of kind
//! `component` and its `.wasm`. Anything else is an error naming the file: nothing is
//! silently skipped.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::core::Version;
use crate::core::digest::{Content, Digest, DigestInput, migration_digest};

use super::backfill::BackfillSettings;
use super::kept_files::KeptFiles;
use super::layout::{MANIFEST_FILE, PROJECT_FILE, SIGNATURE_SUFFIX, SUM_FILE, kept_beside_migrations};
use super::manifest::{Kind, Manifest, TransactionMode};
use super::sumfile::SumFile;


/// A migration as found on disk.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: Version,
    pub name: String,
    /// The folder name, e.g. `0002_add_email_domain`.
    pub folder: String,
    pub digest: Digest,
    pub body: Body,
    /// Expand/contract: earlier migrations whose backfills must finish before this one applies.
    pub needs_backfills: Vec<Version>,
    /// Whether its steps run in one transaction with their history row.
    pub mode: TransactionMode,
    /// Its files as the history keeps them, for the diff a repair shows.
    pub files: KeptFiles,
}

#[derive(Debug, Clone)]
pub enum Body {
    Sql(SqlScripts),
    Component(Box<ComponentMigration>),
}

#[derive(Debug, Clone)]
pub struct SqlScripts {
    pub up: String,
    pub down: Option<String>,
    pub verify: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ComponentMigration {
    pub manifest: Manifest,
    /// What the manifest grants the component.
    pub grants: crate::guard::Grants,
    /// The component's path, for messages.
    pub path: PathBuf,
    pub bytes: Arc<[u8]>,
}

impl Migration {
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Sql(_) => Kind::Sql,
            Body::Component(_) => Kind::Component,
        }
    }

    /// The backfill settings of a component migration that has a backfill.
    pub fn backfill(&self) -> Option<&BackfillSettings> {
        match &self.body {
            Body::Component(component) => component.manifest.backfill.as_ref(),
            Body::Sql(_) => None,
        }
    }

    /// Whether this migration can be reverted: SQL needs a `down.sql`; a component always
    /// exports `down` (the SDK's default refuses, with a message, when it runs).
    pub fn has_down(&self) -> bool {
        match &self.body {
            Body::Sql(scripts) => scripts.down.is_some(),
            Body::Component(_) => true,
        }
    }
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.folder)
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the project folder {path}: {source}")]
    OpenProject { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: wasmig does not know this file; a project holds {PROJECT_FILE}, NNNN_name/ folders, a README.md \
         and dotfiles only"
    )]
    UnexpectedProjectEntry { path: PathBuf },
    #[error("{path}: a migration folder is named NNNN_name (1 to 38 digits, '_', then letters, digits, '_' or '-')")]
    BadFolderName { path: PathBuf },
    #[error("{path}: wasmig does not know this file in a {kind} migration (expected {expected})")]
    UnexpectedFile { path: PathBuf, kind: &'static str, expected: &'static str },
    #[error("{path}: a SQL migration needs up.sql")]
    MissingUp { path: PathBuf },
    #[error("{path}: the manifest names component {file:?}, which is not in the folder")]
    MissingComponent { path: PathBuf, file: String },
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error("{path}: needs_backfills names {version}, which {problem}")]
    BadNeededBackfill { path: PathBuf, version: Version, problem: &'static str },
    #[error("version {version} is used by both {first} and {second}")]
    DuplicateVersion { version: Version, first: String, second: String },
    #[error(
        "artifacts failed verification, nothing was run: {}; \
         review the changes, then run `wasmig hash` (and sign again) if they are meant",
        .folders.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Untrusted { folders: Vec<Unrecorded> },
}

/// A migration folder whose files differ from what `wasmig.sum` records for it. It is refused
/// before any of its files is parsed, so a tampered file is a trust failure whatever its bytes
/// (even where they no longer parse as TOML or UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .recorded {
    Some(recorded) => format!("migration {folder}: its files hash to {found}, but {SUM_FILE} records {recorded}"),
    None => format!("migration {folder} is not in {SUM_FILE} (run `wasmig hash` and sign again)"),
})]
pub struct Unrecorded {
    pub folder: String,
    pub recorded: Option<Digest>,
    pub found: Digest,
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
        let dir = Dir::open_ambient_dir(project_dir, ambient_authority())
            .map_err(|source| CatalogError::OpenProject { path: project_dir.to_owned(), source })?;
        let read_error = |path: PathBuf| move |source| CatalogError::Read { path, source };
        let mut catalog = Catalog::default();
        let mut folders = Vec::new();
        for entry in dir.entries().map_err(read_error(project_dir.to_owned()))? {
            let entry = entry.map_err(read_error(project_dir.to_owned()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = project_dir.join(&name);
            let file_type = entry.file_type().map_err(read_error(path.clone()))?;
            if file_type.is_file() && name == PROJECT_FILE {
                continue;
            }
            if file_type.is_file() && (name == SUM_FILE || is_signature_file(&name)) {
                let bytes = dir.read(&name).map_err(read_error(path))?;
                if name == SUM_FILE {
                    catalog.sum_file = Some(bytes);
                } else {
                    catalog.signatures.push((name, bytes));
                }
                continue;
            }
            if kept_beside_migrations(&name, file_type.is_dir()) {
                continue;
            }
            if !file_type.is_dir() {
                return Err(CatalogError::UnexpectedProjectEntry { path });
            }
            folders.push((name, path));
        }
        // A malformed sum file is reported by the trust check; only a readable one can say
        // which folders changed.
        let sum = match against_sum {
            AgainstSum::Check | AgainstSum::Report => {
                catalog.sum_file.as_deref().and_then(|bytes| SumFile::parse(bytes).ok())
            }
            AgainstSum::Ignore => None,
        };
        let mut unrecorded = Vec::new();
        for (name, path) in folders {
            let (version, migration_name) =
                parse_folder_name(&name).ok_or_else(|| CatalogError::BadFolderName { path: path.clone() })?;
            let folder = dir.open_dir(&name).map_err(read_error(path.clone()))?;
            let files = FolderFiles::read(&folder, &path)?;
            let digest = files.digest();
            if let Some(sum) = &sum {
                let recorded = sum.entries.iter().find(|(f, _)| *f == name).map(|(_, d)| *d);
                if recorded != Some(digest) {
                    unrecorded.push(Unrecorded { folder: name, recorded, found: digest });
                    continue;
                }
            }
            catalog.migrations.push(load_migration(files, digest, &path, version, migration_name, &name)?);
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

/// `0002_add_email_domain` → (2, "add_email_domain").
fn parse_folder_name(name: &str) -> Option<(Version, String)> {
    let (digits, rest) = name.split_once('_')?;
    let valid_rest = !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    Some((Version::from_digits(digits)?, rest.to_owned())).filter(|_| valid_rest)
}

/// The files of one migration folder, read whole.
struct FolderFiles {
    files: Vec<(String, Vec<u8>)>,
}

impl FolderFiles {
    fn read(folder: &Dir, path: &Path) -> Result<Self, CatalogError> {
        let mut files = Vec::new();
        let read_error = |path: PathBuf| move |source| CatalogError::Read { path, source };
        for entry in folder.entries().map_err(read_error(path.to_owned()))? {
            let entry = entry.map_err(read_error(path.to_owned()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let file_path = path.join(&name);
            if !entry.file_type().map_err(read_error(file_path.clone()))?.is_file() {
                return Err(CatalogError::UnexpectedFile {
                    path: file_path,
                    kind: "any",
                    expected: "plain files only, no sub-folders or links",
                });
            }
            let mut bytes = Vec::new();
            let mut file = entry.open().map_err(read_error(file_path.clone()))?;
            file.read_to_end(&mut bytes).map_err(read_error(file_path))?;
            files.push((name, bytes));
        }
        Ok(FolderFiles { files })
    }

    /// The migration's digest, over the files' raw bytes (text files normalised).
    fn digest(&self) -> Digest {
        let inputs: Vec<DigestInput<'_>> = self
            .files
            .iter()
            .map(|(name, bytes)| DigestInput {
                name,
                content: if name.ends_with(".sql") || name.ends_with(".toml") {
                    Content::Text
                } else {
                    Content::Binary
                },
                bytes,
            })
            .collect();
        migration_digest(&inputs)
    }

    fn take(&mut self, name: &str) -> Option<Vec<u8>> {
        let index = self.files.iter().position(|(n, _)| n == name)?;
        Some(self.files.swap_remove(index).1)
    }
}

fn text(bytes: Vec<u8>, path: PathBuf) -> Result<String, CatalogError> {
    let text = String::from_utf8(bytes).map_err(|_| CatalogError::NotUtf8 { path })?;
    Ok(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text))
}

fn load_migration(
    mut files: FolderFiles,
    digest: Digest,
    path: &Path,
    version: Version,
    name: String,
    folder_name: &str,
) -> Result<Migration, CatalogError> {
    let kept = KeptFiles::of(&files.files);
    let manifest = match files.take(MANIFEST_FILE) {
        Some(bytes) => {
            let manifest_path = path.join(MANIFEST_FILE);
            let source = text(bytes, manifest_path.clone())?;
            Some(
                Manifest::parse(&source)
                    .map_err(|e| CatalogError::Manifest { path: manifest_path, message: e.to_string() })?,
            )
        }
        None => None,
    };
    let needs_backfills = manifest.as_ref().map(|m| m.needs_backfills.clone()).unwrap_or_default();
    let mode = manifest.as_ref().map(Manifest::mode).unwrap_or_default();
    let body = match manifest {
        Some(manifest) if manifest.kind == Kind::Component => component_body(files, path, manifest)?,
        _ => sql_body(files, path)?,
    };
    Ok(Migration { version, name, folder: folder_name.to_owned(), digest, body, needs_backfills, mode, files: kept })
}

fn sql_body(mut files: FolderFiles, path: &Path) -> Result<Body, CatalogError> {
    let mut script = |name: &str| files.take(name).map(|bytes| text(bytes, path.join(name))).transpose();
    let up = script("up.sql")?.ok_or_else(|| CatalogError::MissingUp { path: path.to_owned() })?;
    let down = script("down.sql")?;
    let verify = script("verify.sql")?;
    if let Some((stray, _)) = files.files.first() {
        return Err(CatalogError::UnexpectedFile {
            path: path.join(stray),
            kind: "sql",
            expected: "up.sql, down.sql, verify.sql, migration.toml",
        });
    }
    Ok(Body::Sql(SqlScripts { up, down, verify }))
}

fn component_body(mut files: FolderFiles, path: &Path, manifest: Manifest) -> Result<Body, CatalogError> {
    let file = manifest.component_file().to_owned();
    let bytes = files
        .take(&file)
        .ok_or_else(|| CatalogError::MissingComponent { path: path.join(MANIFEST_FILE), file: file.clone() })?;
    if let Some((stray, _)) = files.files.first() {
        return Err(CatalogError::UnexpectedFile {
            path: path.join(stray),
            kind: "component",
            expected: "migration.toml and the component it names",
        });
    }
    Ok(Body::Component(Box::new(ComponentMigration {
        grants: manifest.grants(),
        manifest,
        path: path.join(file),
        bytes: bytes.into(),
    })))
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
