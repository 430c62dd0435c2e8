//! [`RepairDiff`]: what a changed, applied migration's files look like against the files it
//! was applied with — what `wasmig repair` shows before its new digest is accepted, so that
//! accepting it is a reviewed change rather than a pasted digest.

use serde::Serialize;

use crate::core::{Digest, Version};
use crate::project::kept_files::FileChange;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepairDiff {
    pub version: Version,
    pub migration: String,
    /// The digest the history holds.
    pub recorded_digest: Digest,
    /// The digest of the files now: what `--accept-digest` takes.
    pub digest: Digest,
    /// File by file; `None` when the files as applied were not kept (a migration an earlier
    /// wasmig applied), so only the digests can be compared.
    pub changes: Option<Vec<FileChange>>,
}

impl RepairDiff {
    /// The changes as one text: each file's unified diff, in name order.
    pub fn text(&self) -> String {
        match &self.changes {
            Some(changes) => changes.iter().map(|change| change.diff.as_str()).collect(),
            None => "(the files as applied were not kept: it was applied by an earlier wasmig)\n".to_owned(),
        }
    }
}
