//! `wasmig.sum`: the digest of every migration and a total digest over the list; the file
//! `wasmig sign` signs and `up`, `down` and CI check.
//!
//! Written with LF line endings; read (and verified) with line endings normalised to LF, so a
//! checkout that converts line endings keeps both the digests and the signatures valid.
//!
//! ```text
//! # wasmig.sum: written by `wasmig hash`, signed by `wasmig sign`; do not edit.
//! wasmig-sum 1
//! 0001_create_users blake3:…
//! 0002_add_email_domain blake3:…
//! total blake3:…
//! ```

use std::fmt::Write as _;

use crate::core::digest::Digest;

use super::layout::SUM_FILE;

const HEADER: &str = "wasmig-sum 1";
const TOTAL_CONTEXT: &str = "wasmig 2026-11 sum total v1";

/// A parsed sum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumFile {
    /// (migration folder, digest), in the order written (version order).
    pub entries: Vec<(String, Digest)>,
    pub total: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{SUM_FILE} line {line}: {problem}")]
pub struct SumFileError {
    pub line: usize,
    pub problem: String,
}

/// The total over a list of entries: every folder and digest, in order.
pub fn total(entries: &[(String, Digest)]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(TOTAL_CONTEXT);
    for (folder, digest) in entries {
        hasher.update(&(folder.len() as u64).to_le_bytes());
        hasher.update(folder.as_bytes());
        hasher.update(digest.as_bytes());
    }
    let hash: [u8; 32] = *hasher.finalize().as_bytes();
    Digest::from_bytes(hash)
}

impl SumFile {
    /// The sum file recording `entries`: each migration folder with its digest, in order.
    pub fn new(entries: Vec<(String, Digest)>) -> SumFile {
        let total = total(&entries);
        SumFile { entries, total }
    }

    pub fn render(&self) -> String {
        let mut text =
            format!("# {SUM_FILE}: written by `wasmig hash`, signed by `wasmig sign`; do not edit.\n{HEADER}\n");
        for (folder, digest) in &self.entries {
            let _ = writeln!(text, "{folder} {digest}");
        }
        let _ = writeln!(text, "total {}", self.total);
        text
    }

    /// Parses a sum file and checks that its total matches its entries.
    pub fn parse(bytes: &[u8]) -> Result<SumFile, SumFileError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| SumFileError { line: 0, problem: "not UTF-8 text".into() })?;
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim_end_matches('\r')))
            .filter(|(_, line)| !line.starts_with('#') && !line.trim().is_empty());
        let bad = |line: usize, problem: &str| SumFileError { line, problem: problem.to_owned() };
        match lines.next() {
            Some((_, HEADER)) => {}
            Some((line, _)) => return Err(bad(line, &format!("expected the header {HEADER:?}"))),
            None => return Err(bad(0, "the file is empty")),
        }
        let mut entries = Vec::new();
        let mut recorded_total = None;
        for (line, text) in lines {
            if recorded_total.is_some() {
                return Err(bad(line, "nothing may follow the total"));
            }
            let (name, digest) = text.split_once(' ').ok_or_else(|| bad(line, "expected `<folder> blake3:<hex>`"))?;
            let digest: Digest = digest.parse().map_err(|e: crate::core::digest::BadDigest| bad(line, &e.to_string()))?;
            if name == "total" {
                recorded_total = Some((line, digest));
            } else {
                entries.push((name.to_owned(), digest));
            }
        }
        let (line, recorded_total) = recorded_total.ok_or_else(|| bad(0, "the total line is missing"))?;
        if total(&entries) != recorded_total {
            return Err(bad(line, "the total does not match the entries above it; the file was edited"));
        }
        Ok(SumFile { entries, total: recorded_total })
    }
}

/// The bytes a signature covers: the file as [`crate::core::digest::normalize_text`] sees it, so a
/// checkout that converts line endings keeps its signatures.
pub fn signed_bytes(bytes: &[u8]) -> Vec<u8> {
    crate::core::digest::normalize_text(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> Digest {
        Digest::from_bytes([byte; 32])
    }

    fn sample() -> SumFile {
        let entries = vec![("0001_a".to_owned(), digest(1)), ("0002_b".to_owned(), digest(2))];
        SumFile { total: total(&entries), entries }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let sum = sample();
        assert_eq!(SumFile::parse(sum.render().as_bytes()), Ok(sum));
    }

    #[test]
    fn crlf_copy_parses_and_signs_the_same() {
        let lf = sample().render();
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(SumFile::parse(crlf.as_bytes()), Ok(sample()));
        assert_eq!(signed_bytes(crlf.as_bytes()), lf.as_bytes());
    }

    #[test]
    fn an_edited_entry_breaks_the_total() {
        let edited = sample().render().replacen(&digest(1).to_string(), &digest(9).to_string(), 1);
        let error = SumFile::parse(edited.as_bytes()).unwrap_err();
        assert!(error.problem.contains("total does not match"), "{error}");
    }

    #[test]
    fn malformed_lines_are_named() {
        let error = SumFile::parse(b"wasmig-sum 1\n0001_a sha256:00\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(SumFile::parse(b"wasmig-sum 2\n").is_err());
        assert!(SumFile::parse(b"wasmig-sum 1\n").unwrap_err().problem.contains("total"));
    }

    #[test]
    fn order_matters_to_the_total() {
        let forward = vec![("0001_a".to_owned(), digest(1)), ("0002_b".to_owned(), digest(2))];
        let reversed = vec![forward[1].clone(), forward[0].clone()];
        assert_ne!(total(&forward), total(&reversed));
    }
}
