//! [`CatalogError`]: every way reading a project's migrations can fail, each naming the file
//! or folder; and [`Unrecorded`], a folder whose files differ from the sum file.

use std::path::PathBuf;

use crate::core::Version;
use crate::core::digest::Digest;

use super::layout::{PROJECT_FILE, SUM_FILE};

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

impl CatalogError {
    /// The error for a file or folder at `path` that could not be read, for `map_err`.
    pub(super) fn reading(path: PathBuf) -> impl FnOnce(std::io::Error) -> CatalogError {
        move |source| CatalogError::Read { path, source }
    }
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
