//! One migration folder: its name parsed (`NNNN_name`), its files read whole (plain files
//! only), their digest, and the migration they make once the digest is trusted: a SQL
//! migration's scripts or a component's manifest and bytes. Anything else in the folder is an
//! error naming the file.

use std::path::{Path, PathBuf};

use crate::core::Version;
use crate::core::digest::{Content, Digest, DigestInput, migration_digest};

use super::error::CatalogError;
use super::migration::{Body, ComponentMigration, Migration, SqlScripts};
use super::disk::{self, EntryKind, Folder};
use super::kept_files::KeptFiles;
use super::layout::MANIFEST_FILE;
use super::manifest::{Kind, Manifest};

/// `0002_add_email_domain` → (2, "add_email_domain").
pub(super) fn parse_folder_name(name: &str) -> Option<(Version, String)> {
    let (digits, rest) = name.split_once('_')?;
    let valid_rest = !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    Some((Version::from_digits(digits)?, rest.to_owned())).filter(|_| valid_rest)
}

/// A migration folder's name, parsed, and its files.
pub(super) struct FolderRead {
    version: Version,
    name: String,
    pub files: FolderFiles,
}

/// Reads the migration folder `entry` of `project` whole: plain files only.
pub(super) fn read_folder(project: &Folder, entry: &disk::Entry, path: &Path) -> Result<FolderRead, CatalogError> {
    let (version, name) =
        parse_folder_name(&entry.name).ok_or_else(|| CatalogError::BadFolderName { path: path.to_owned() })?;
    let mut folder = project.open_child(entry).map_err(CatalogError::reading(path.to_owned()))?;
    let mut files = Vec::new();
    for file in folder.entries().map_err(CatalogError::reading(path.to_owned()))? {
        let file_path = path.join(&file.name);
        if file.kind != EntryKind::File {
            return Err(CatalogError::UnexpectedFile {
                path: file_path,
                kind: "any",
                expected: "plain files only, no sub-folders or links",
            });
        }
        let bytes = folder.read(&file).map_err(CatalogError::reading(file_path))?;
        files.push((file.name, bytes));
    }
    Ok(FolderRead { version, name, files: FolderFiles { files } })
}

/// The files of one migration folder, read whole.
pub(super) struct FolderFiles {
    files: Vec<(String, Vec<u8>)>,
}

impl FolderFiles {
    /// The migration's digest, over the files' raw bytes (text files normalised).
    pub(super) fn digest(&self) -> Digest {
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

pub(super) fn text(bytes: Vec<u8>, path: PathBuf) -> Result<String, CatalogError> {
    let text = String::from_utf8(bytes).map_err(|_| CatalogError::NotUtf8 { path })?;
    Ok(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text))
}

impl FolderRead {
    /// The migration the folder's files make, once their `digest` is trusted.
    pub(super) fn into_migration(self, digest: Digest, path: &Path, folder_name: &str) -> Result<Migration, CatalogError> {
        let FolderRead { version, name, mut files } = self;
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
}

pub(super) fn sql_body(mut files: FolderFiles, path: &Path) -> Result<Body, CatalogError> {
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

pub(super) fn component_body(mut files: FolderFiles, path: &Path, manifest: Manifest) -> Result<Body, CatalogError> {
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
