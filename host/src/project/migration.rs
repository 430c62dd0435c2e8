//! [`Migration`]: one migration as the catalog found it on disk — its version and folder, its
//! digest, and its body (a SQL migration's scripts or a component and its manifest).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::core::Version;
use crate::core::digest::Digest;

use super::backfill::BackfillSettings;
use super::kept_files::KeptFiles;
use super::manifest::{Kind, Manifest, TransactionMode};

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
