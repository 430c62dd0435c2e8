//! [`KeptFiles`]: a migration's files as the history keeps them when it is applied — text
//! files whole, any other file by its size and digest — so that a later `repair` can show what
//! changed since, line by line, before anyone accepts it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// File name → its text, or for a file that is not text (a component), a line naming its size
/// and blake3 digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeptFiles(BTreeMap<String, String>);

/// One file's change between the kept files and the files now on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub file: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// A unified diff, `--- applied/<file>` against `+++ now/<file>`.
    pub diff: String,
}

impl KeptFiles {
    /// The files of one migration folder, read whole.
    pub fn of(files: &[(String, Vec<u8>)]) -> KeptFiles {
        let kept = files.iter().map(|(name, bytes)| {
            let text = match std::str::from_utf8(bytes) {
                Ok(text) if !name.ends_with(".wasm") => text.strip_prefix('\u{feff}').unwrap_or(text).to_owned(),
                _ => format!("({} bytes, blake3 {})\n", bytes.len(), blake3::hash(bytes).to_hex()),
            };
            (name.clone(), text)
        });
        KeptFiles(kept.collect())
    }

    /// As the history table stores it: one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From the history table; `None` for text that is not such an object.
    pub fn from_json(text: &str) -> Option<KeptFiles> {
        serde_json::from_str(text).ok()
    }

    /// What changed from `self` (as applied) to `now` (on disk), file by file, in name order.
    pub fn changes_to(&self, now: &KeptFiles) -> Vec<FileChange> {
        let names: std::collections::BTreeSet<&String> = self.0.keys().chain(now.0.keys()).collect();
        names
            .into_iter()
            .filter_map(|name| {
                let (before, after) = (self.0.get(name), now.0.get(name));
                let change = match (before, after) {
                    (Some(a), Some(b)) if a == b => return None,
                    (Some(_), Some(_)) => "changed",
                    (None, _) => "added",
                    (_, None) => "removed",
                };
                let (before, after) = (before.map_or("", String::as_str), after.map_or("", String::as_str));
                let diff = similar::TextDiff::from_lines(before, after)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("applied/{name}"), &format!("now/{name}"))
                    .to_string();
                Some(FileChange { file: name.clone(), change, diff })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> KeptFiles {
        KeptFiles::of(&list.iter().map(|(n, t)| ((*n).to_owned(), t.as_bytes().to_vec())).collect::<Vec<_>>())
    }

    #[test]
    fn a_grant_added_and_a_down_written_show_as_diffs() {
        let applied = files(&[("migration.toml", "kind = \"component\"\n[grants]\nread = [\"a\"]\n"), ("up.sql", "x\n")]);
        let now = files(&[
            ("migration.toml", "kind = \"component\"\n[grants]\nread = [\"a\"]\nupdate = [\"a\"]\n"),
            ("up.sql", "x\n"),
            ("down.sql", "DROP TABLE a;\n"),
        ]);
        let changes = applied.changes_to(&now);
        assert_eq!(changes.iter().map(|c| (c.file.as_str(), c.change)).collect::<Vec<_>>(), [
            ("down.sql", "added"),
            ("migration.toml", "changed")
        ]);
        assert!(changes[1].diff.contains("+update = [\"a\"]\n"), "{}", changes[1].diff);
        assert!(changes[1].diff.starts_with("--- applied/migration.toml\n+++ now/migration.toml\n"));
        assert_eq!(KeptFiles::from_json(&applied.to_json()), Some(applied));
    }

    #[test]
    fn a_component_is_kept_by_its_digest() {
        let kept = KeptFiles::of(&[("migration.wasm".to_owned(), b"\0asm\x01".to_vec())]);
        assert!(kept.0["migration.wasm"].starts_with("(5 bytes, blake3 "));
    }
}
