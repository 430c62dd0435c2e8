//! [`Digest`]: the blake3 digest of a migration's files, shown as `blake3:<hex>`.
//!
//! Invariant 7: one fixed, tagged algorithm over the files' relative names and contents in
//! name order; components as raw bytes, text files (`.sql`, `.toml`) with a leading BOM
//! dropped and line endings normalised to LF. A digest therefore never changes with a
//! checkout's line endings, its path, the platform or wasmig's version.

use std::fmt;
use std::str::FromStr;

/// Domain separation: a digest of anything else can never collide with a migration's.
const MIGRATION_CONTEXT: &str = "wasmig 2026-11 migration digest v1";

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(7 + 64);
        text.push_str("blake3:");
        text.push_str(blake3::Hash::from_bytes(self.0).to_hex().as_str());
        // `pad`, so that tables (`wasmig history`) can align it.
        f.pad(&text)
    }
}

/// As its text, `blake3:<hex>`: the form every file, table and message uses.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a digest: expected blake3: followed by 64 hex digits")]
pub struct BadDigest {
    pub text: String,
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadDigest { text: text.to_owned() };
        let hex = text.strip_prefix("blake3:").ok_or_else(bad)?;
        let hash = blake3::Hash::from_hex(hex).map_err(|_| bad())?;
        Ok(Digest(*hash.as_bytes()))
    }
}

/// How a file's bytes enter the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Hashed after dropping a leading BOM and normalising CRLF and lone CR to LF.
    Text,
    /// Hashed exactly as stored.
    Binary,
}

/// One file of a migration, named relative to the migration's folder.
pub struct DigestInput<'a> {
    pub name: &'a str,
    pub content: Content,
    pub bytes: &'a [u8],
}

/// The digest of a migration's files. The order of `files` does not matter.
pub fn migration_digest(files: &[DigestInput<'_>]) -> Digest {
    let mut sorted: Vec<&DigestInput<'_>> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut hasher = blake3::Hasher::new_derive_key(MIGRATION_CONTEXT);
    hasher.update(&(sorted.len() as u64).to_le_bytes());
    for file in sorted {
        let bytes = match file.content {
            Content::Text => normalize_text(file.bytes),
            Content::Binary => std::borrow::Cow::Borrowed(file.bytes),
        };
        // Length-prefixed fields: no two file sets share an encoding.
        hasher.update(&(file.name.len() as u64).to_le_bytes());
        hasher.update(file.name.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Digest(*hasher.finalize().as_bytes())
}

/// Text as every digest and signature sees it: a leading BOM dropped, CRLF and lone CR as LF.
pub fn normalize_text(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if !bytes.contains(&b'\r') {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().peekable();
    while let Some(&byte) = iter.next() {
        if byte == b'\r' {
            if iter.peek() == Some(&&b'\n') {
                iter.next();
            }
            out.push(b'\n');
        } else {
            out.push(byte);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_pads_in_a_table_column() {
        let digest = migration_digest(&[text("up.sql", b"SELECT 1;")]);
        let cell = format!("{digest:<72}|");
        assert_eq!(cell.len(), 73, "{cell:?}");
        assert!(cell.starts_with(&digest.to_string()));
    }

    fn text(name: &'static str, body: &'static [u8]) -> DigestInput<'static> {
        DigestInput { name, content: Content::Text, bytes: body }
    }

    #[test]
    fn crlf_bom_and_lf_checkouts_agree() {
        let lf = migration_digest(&[text("up.sql", b"CREATE TABLE t (x int);\nSELECT 1;\n")]);
        let crlf = migration_digest(&[text("up.sql", b"\xEF\xBB\xBFCREATE TABLE t (x int);\r\nSELECT 1;\r\n")]);
        assert_eq!(lf, crlf);
    }

    #[test]
    fn binary_files_are_not_normalised() {
        let a = migration_digest(&[DigestInput { name: "m.wasm", content: Content::Binary, bytes: b"a\r\n" }]);
        let b = migration_digest(&[DigestInput { name: "m.wasm", content: Content::Binary, bytes: b"a\n" }]);
        assert_ne!(a, b);
    }

    #[test]
    fn file_order_does_not_matter_but_names_do() {
        let a = migration_digest(&[text("up.sql", b"x"), text("down.sql", b"y")]);
        let b = migration_digest(&[text("down.sql", b"y"), text("up.sql", b"x")]);
        let renamed = migration_digest(&[text("up.sql", b"y"), text("down.sql", b"x")]);
        assert_eq!(a, b);
        assert_ne!(a, renamed);
    }

    #[test]
    fn boundaries_between_name_and_content_are_unambiguous() {
        let a = migration_digest(&[text("up.sql", b"ab")]);
        let b = migration_digest(&[text("up.sqla", b"b")]);
        assert_ne!(a, b);
    }

    #[test]
    fn known_answer_pins_the_algorithm() {
        // Changing the encoding would change every recorded digest: this must never move.
        let digest = migration_digest(&[text("up.sql", b"SELECT 1;\n")]);
        assert_eq!(digest.to_string(), KNOWN_ANSWER);
    }

    // Cross-checked with an independent blake3 implementation (Python `blake3`, derive_key mode).
    const KNOWN_ANSWER: &str = "blake3:3f10fdd00e2d61ccc4a6d2f6c990ec5c8fdc2c4a5dcb26f4258e3d053bc79f4e";

    #[test]
    fn display_and_parse_round_trip() {
        let digest = migration_digest(&[text("up.sql", b"x")]);
        assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
        assert!("sha256:00".parse::<Digest>().is_err());
        assert!("blake3:zz".parse::<Digest>().is_err());
    }
}
