//! Verification: whether the project on disk is exactly what was hashed into `wasmig.sum` and signed
//! by enough trusted keys.
//!
//! Invariant 2: `up`, `down` and `verify` call [`TrustReport::ensure`] before taking the lock
//! or sending any statement, and components are compiled only after it passes. Signatures are
//! minisign signatures of `wasmig.sum` (its LF-normalised bytes), one detached file per signer:
//! `wasmig.sum.<KEYID>.minisig`, which `minisign -Vm wasmig.sum -x <file> -p <key.pub>` checks
//! without wasmig.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;

use minisign::{PublicKey, SignatureBox};
use serde::{Deserialize, Serialize};

use crate::core::Date;
use crate::core::digest::Digest;
use crate::project::catalog::Catalog;
use crate::project::layout::SUM_FILE;
use crate::project::sumfile::{SumFile, SumFileError, signed_bytes};


/// `[trust]` in `wasmig.toml`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    #[serde(default)]
    pub require_signatures: bool,
    /// How many distinct trusted keys must sign (default 1).
    pub threshold: Option<usize>,
    #[serde(default)]
    pub keys: Vec<KeySection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// Who holds the key, for messages and the history.
    pub name: String,
    /// The minisign public key: the base64 line of a `.pub` file.
    pub public_key: String,
    /// The last day (UTC, `YYYY-MM-DD`) a signature by this key counts.
    pub expires: Option<String>,
}

/// A key whose signatures count.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    pub key_id: String,
    public_key: PublicKey,
    pub expires: Option<Date>,
}

/// The validated trust policy.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    pub require_signatures: bool,
    pub threshold: usize,
    pub keys: Vec<TrustedKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustConfigError {
    #[error("[[trust.keys]] {name:?}: public_key is not a minisign public key: {reason}")]
    BadKey { name: String, reason: String },
    #[error("[[trust.keys]] {name:?}: expires {text:?} is not a date (YYYY-MM-DD)")]
    BadExpiry { name: String, text: String },
    #[error("[trust] threshold {threshold} needs at least that many keys, but {keys} are listed")]
    ThresholdTooHigh { threshold: usize, keys: usize },
    #[error("[trust] threshold must be at least 1")]
    ZeroThreshold,
    #[error("[[trust.keys]] {name:?}: public_key uses signature algorithm {tag:?}; minisign keys use \"Ed\"")]
    BadAlgorithm { name: String, tag: String },
    #[error(
        "[[trust.keys]] {first:?} and {second:?} are the same key ({key_id}); \
         the threshold counts distinct keys, so list each key once"
    )]
    DuplicateKey { first: String, second: String, key_id: String },
}

/// The key id minisign shows for a key or signature: its 8-byte id as hex, little-endian.
pub fn key_id(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    let len = keynum.len().min(8);
    bytes[..len].copy_from_slice(&keynum[..len]);
    format!("{:016X}", u64::from_le_bytes(bytes))
}

impl TrustPolicy {
    pub fn from_section(section: &TrustSection) -> Result<TrustPolicy, TrustConfigError> {
        let keys = section
            .keys
            .iter()
            .map(|key| {
                let public_key = PublicKey::from_base64(key.public_key.trim())
                    .map_err(|e| TrustConfigError::BadKey { name: key.name.clone(), reason: e.to_string() })?;
                check_algorithm(&key.name, &public_key)?;
                let expires = key
                    .expires
                    .as_deref()
                    .map(|text| {
                        Date::parse(text).ok_or_else(|| TrustConfigError::BadExpiry {
                            name: key.name.clone(),
                            text: text.to_owned(),
                        })
                    })
                    .transpose()?;
                Ok(TrustedKey { name: key.name.clone(), key_id: key_id(public_key.keynum()), public_key, expires })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (index, key) in keys.iter().enumerate() {
            if let Some(first) = keys[..index].iter().find(|k| k.key_id == key.key_id || k.public_key == key.public_key)
            {
                return Err(TrustConfigError::DuplicateKey {
                    first: first.name.clone(),
                    second: key.name.clone(),
                    key_id: key.key_id.clone(),
                });
            }
        }
        let threshold = section.threshold.unwrap_or(1);
        if threshold == 0 {
            return Err(TrustConfigError::ZeroThreshold);
        }
        if section.require_signatures && threshold > keys.len() {
            return Err(TrustConfigError::ThresholdTooHigh { threshold, keys: keys.len() });
        }
        Ok(TrustPolicy { require_signatures: section.require_signatures, threshold, keys })
    }
}

/// A minisign public key starts with a two-byte algorithm tag; minisign refuses any tag but
/// `Ed` (its parser does not), and so does wasmig.
fn check_algorithm(name: &str, public_key: &PublicKey) -> Result<(), TrustConfigError> {
    let bytes = public_key.to_bytes();
    match bytes.get(..2) {
        Some(b"Ed") => Ok(()),
        tag => Err(TrustConfigError::BadAlgorithm {
            name: name.to_owned(),
            tag: String::from_utf8_lossy(tag.unwrap_or_default()).into_owned(),
        }),
    }
}

/// How a migration's files compare with the sum file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestState {
    Match,
    Mismatch,
    NotInSum,
}

/// What a signature file proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureState {
    /// By a trusted, unexpired key, over the sum file's bytes; it counts toward the threshold.
    Valid,
    /// Valid, but by a key already counted: a key counts once.
    Duplicate,
    Expired,
    /// No trusted key has its id.
    Untrusted,
    Invalid,
}

/// Whether the sum file is there and readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SumFileState {
    Missing,
    Valid,
    Malformed,
}

macro_rules! display_as_serialized {
    ($($ty:ty { $($variant:ident => $text:literal),+ })+) => {$(
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so that `verify-artifacts` can align it as it aligned the text.
                f.pad(self.as_str())
            }
        }
    )+};
}

display_as_serialized! {
    DigestState { Match => "match", Mismatch => "mismatch", NotInSum => "not-in-sum" }
    SignatureState {
        Valid => "valid", Duplicate => "duplicate", Expired => "expired", Untrusted => "untrusted", Invalid => "invalid"
    }
    SumFileState { Missing => "missing", Valid => "valid", Malformed => "malformed" }
}

/// One migration checked against the sum file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationCheck {
    pub folder: String,
    pub digest: String,
    pub state: DigestState,
    /// The digest the sum file records, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum_digest: Option<String>,
}

/// One signature file checked against the policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignatureCheck {
    pub file: String,
    pub key_id: Option<String>,
    pub state: SignatureState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Something that makes the project untrustworthy; each names what it is about.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum TrustProblem {
    #[error(
        "{SUM_FILE} is missing; the trust policy requires signatures over it (run `wasmig hash`, then `wasmig sign`)"
    )]
    SumMissing,
    #[error("{SUM_FILE} is malformed: {message}")]
    SumMalformed { message: String },
    #[error("migration {folder}: its files hash to {files}, but {SUM_FILE} records {sum}")]
    DigestMismatch { folder: String, sum: String, files: String },
    #[error("migration {folder} is not in {SUM_FILE} (run `wasmig hash` and sign again)")]
    NotInSum { folder: String },
    #[error("{SUM_FILE} lists {folder}, but that migration's folder is missing")]
    MissingFolder { folder: String },
    #[error("signature {file} does not verify: {detail}")]
    BadSignature { file: String, detail: String },
    #[error(
        "{SUM_FILE} has {have} valid signature(s) by trusted, unexpired keys{}, {need} required{}",
        list(" (", .signers, ")"),
        list("; not counted: ", .not_counted, "")
    )]
    NotEnoughSignatures { have: usize, need: usize, signers: Vec<String>, not_counted: Vec<String> },
}

fn list(prefix: &str, items: &[String], suffix: &str) -> String {
    if items.is_empty() { String::new() } else { format!("{prefix}{}{suffix}", items.join(", ")) }
}

/// Why a run was refused before it started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("artifacts failed verification, nothing was run: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct TrustError {
    pub problems: Vec<TrustProblem>,
}

/// Everything known about the project's artifacts: what `verify-artifacts` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustReport {
    pub sum_file: SumFileState,
    pub total: Option<String>,
    pub migrations: Vec<MigrationCheck>,
    pub signatures: Vec<SignatureCheck>,
    pub require_signatures: bool,
    pub threshold: usize,
    /// Names of the trusted, unexpired keys whose signatures verified.
    pub signers: Vec<String>,
    pub problems: Vec<TrustProblem>,
}

impl TrustReport {
    pub fn ensure(&self) -> Result<(), TrustError> {
        if self.problems.is_empty() { Ok(()) } else { Err(TrustError { problems: self.problems.clone() }) }
    }

    /// The key ids of the signers, for the history.
    pub fn signer_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for id in self.signatures.iter().filter(|s| s.state == SignatureState::Valid).filter_map(|s| s.key_id.clone()) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// Checks the catalog against its sum file and signatures under `policy`, as of `today`.
pub fn check(catalog: &Catalog, policy: &TrustPolicy, today: Date) -> TrustReport {
    let mut problems = Vec::new();
    let sum = match &catalog.sum_file {
        None => {
            if policy.require_signatures {
                problems.push(TrustProblem::SumMissing);
            }
            None
        }
        Some(bytes) => match SumFile::parse(bytes) {
            Ok(sum) => Some(sum),
            Err(SumFileError { line, problem }) => {
                problems.push(TrustProblem::SumMalformed { message: format!("line {line}: {problem}") });
                None
            }
        },
    };
    let migrations = check_digests(catalog, sum.as_ref(), &mut problems);
    let signatures = match &catalog.sum_file {
        Some(bytes) => check_signatures(catalog, bytes, policy, today, &mut problems),
        None => Vec::new(),
    };
    let mut signers: Vec<String> = Vec::new();
    let mut signer_ids: Vec<&str> = Vec::new();
    for signature in signatures.iter().filter(|s| s.state == SignatureState::Valid) {
        if let (Some(name), Some(id)) = (&signature.signer, &signature.key_id)
            && !signer_ids.contains(&id.as_str())
        {
            signer_ids.push(id);
            signers.push(name.clone());
        }
    }
    if policy.require_signatures && sum.is_some() && signers.len() < policy.threshold {
        let not_counted = signatures
            .iter()
            .filter(|s| s.state != SignatureState::Valid)
            .map(|s| format!("{} ({})", s.key_id.as_deref().unwrap_or(&s.file), s.detail.as_deref().unwrap_or(s.state.as_str())))
            .collect();
        problems.push(TrustProblem::NotEnoughSignatures {
            have: signers.len(),
            need: policy.threshold,
            signers: signers.clone(),
            not_counted,
        });
    }
    TrustReport {
        sum_file: match (&catalog.sum_file, &sum) {
            (None, _) => SumFileState::Missing,
            (Some(_), Some(_)) => SumFileState::Valid,
            (Some(_), None) => SumFileState::Malformed,
        },
        total: sum.as_ref().map(|s| s.total.to_string()),
        migrations,
        signatures,
        require_signatures: policy.require_signatures,
        threshold: policy.threshold,
        signers,
        problems,
    }
}

fn check_digests(catalog: &Catalog, sum: Option<&SumFile>, problems: &mut Vec<TrustProblem>) -> Vec<MigrationCheck> {
    let Some(sum) = sum else {
        return catalog
            .migrations
            .iter()
            .map(|m| MigrationCheck {
                folder: m.folder.clone(),
                digest: m.digest.to_string(),
                state: DigestState::NotInSum,
                sum_digest: None,
            })
            .collect();
    };
    let by_folder: HashMap<&str, &Digest> = sum.entries.iter().map(|(folder, digest)| (folder.as_str(), digest)).collect();
    let recorded = |folder: &str| by_folder.get(folder).copied();
    // Folders the catalog left unparsed because they differ from the sum are judged here too.
    let folders = catalog
        .migrations
        .iter()
        .map(|m| (m.folder.as_str(), m.digest))
        .chain(catalog.unrecorded.iter().map(|u| (u.folder.as_str(), u.found)));
    let checks: Vec<MigrationCheck> = folders
        .map(|(folder, digest)| {
            let (state, sum_digest) = match recorded(folder) {
                Some(recorded) if *recorded == digest => (DigestState::Match, None),
                Some(recorded) => {
                    problems.push(TrustProblem::DigestMismatch {
                        folder: folder.to_owned(),
                        sum: recorded.to_string(),
                        files: digest.to_string(),
                    });
                    (DigestState::Mismatch, Some(recorded.to_string()))
                }
                None => {
                    problems.push(TrustProblem::NotInSum { folder: folder.to_owned() });
                    (DigestState::NotInSum, None)
                }
            };
            MigrationCheck { folder: folder.to_owned(), digest: digest.to_string(), state, sum_digest }
        })
        .collect();
    let checked: HashSet<&str> = checks.iter().map(|c| c.folder.as_str()).collect();
    for (folder, _) in &sum.entries {
        if !checked.contains(folder.as_str()) {
            problems.push(TrustProblem::MissingFolder { folder: folder.clone() });
        }
    }
    checks
}

fn check_signatures(
    catalog: &Catalog,
    sum_bytes: &[u8],
    policy: &TrustPolicy,
    today: Date,
    problems: &mut Vec<TrustProblem>,
) -> Vec<SignatureCheck> {
    let signed = signed_bytes(sum_bytes);
    let mut counted_keys: Vec<String> = Vec::new();
    let mut checks = Vec::new();
    for (file, bytes) in &catalog.signatures {
        let signature = std::str::from_utf8(bytes)
            .map_err(|_| "not text".to_owned())
            .and_then(|text| SignatureBox::from_string(text).map_err(|e| e.to_string()));
        let signature = match signature {
            Ok(signature) => signature,
            Err(detail) => {
                problems.push(TrustProblem::BadSignature { file: file.clone(), detail: detail.clone() });
                checks.push(SignatureCheck {
                    file: file.clone(),
                    key_id: None,
                    state: SignatureState::Invalid,
                    signer: None,
                    detail: Some(detail),
                });
                continue;
            }
        };
        let id = key_id(signature.keynum());
        let check = |state, signer: Option<&TrustedKey>, detail: Option<String>| SignatureCheck {
            file: file.clone(),
            key_id: Some(id.clone()),
            state,
            signer: signer.map(|k| k.name.clone()),
            detail,
        };
        let Some(key) = policy.keys.iter().find(|k| k.key_id == id) else {
            checks.push(check(SignatureState::Untrusted, None, Some("no trusted key has this id".into())));
            continue;
        };
        if let Err(error) = minisign::verify(&key.public_key, &signature, Cursor::new(&signed), true, false, false) {
            problems.push(TrustProblem::BadSignature {
                file: file.clone(),
                detail: format!("key {} ({}): {error}", key.name, id),
            });
            checks.push(check(SignatureState::Invalid, Some(key), Some(error.to_string())));
            continue;
        }
        match key.expires {
            Some(expires) if expires < today => {
                checks.push(check(SignatureState::Expired, Some(key), Some(format!("key {} expired on {expires}", key.name))))
            }
            // The threshold counts distinct keys: the same key's signature under another file
            // name (or twice in one) is not a second signer.
            _ if counted_keys.contains(&id) => checks.push(check(
                SignatureState::Duplicate,
                Some(key),
                Some(format!("key {} already signed; a key counts once", key.name)),
            )),
            _ => {
                counted_keys.push(id.clone());
                checks.push(check(SignatureState::Valid, Some(key), None));
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_order() {
        assert!(Date::parse("2026-11-21").unwrap() < Date::parse("2027-01-01").unwrap());
        assert_eq!(Date::parse("2026-13-01"), None);
        assert_eq!(Date::parse("yesterday"), None);
    }

    #[test]
    fn threshold_above_key_count_is_refused() {
        let section = TrustSection { require_signatures: true, threshold: Some(2), keys: vec![] };
        assert_eq!(
            TrustPolicy::from_section(&section).unwrap_err(),
            TrustConfigError::ThresholdTooHigh { threshold: 2, keys: 0 }
        );
    }

    fn key_with_tag(tag: &[u8; 2]) -> String {
        let mut bytes = tag.to_vec();
        bytes.extend([7u8; 40]);
        PublicKey::from_bytes(&bytes).unwrap().to_base64()
    }

    #[test]
    fn a_key_with_another_algorithm_tag_is_refused() {
        let section = |key: String| TrustSection {
            require_signatures: false,
            threshold: None,
            keys: vec![KeySection { name: "ops".into(), public_key: key, expires: None }],
        };
        let error = TrustPolicy::from_section(&section(key_with_tag(b"ED"))).unwrap_err();
        assert!(matches!(error, TrustConfigError::BadAlgorithm { ref tag, .. } if tag == "ED"), "{error}");
        let error = TrustPolicy::from_section(&section(key_with_tag(b"XX"))).unwrap_err();
        assert!(matches!(error, TrustConfigError::BadAlgorithm { .. }), "{error}");
        assert!(TrustPolicy::from_section(&section(key_with_tag(b"Ed"))).is_ok());
    }

    #[test]
    fn the_same_key_listed_twice_is_refused() {
        let key = key_with_tag(b"Ed");
        let section = TrustSection {
            require_signatures: true,
            threshold: Some(2),
            keys: vec![
                KeySection { name: "alice".into(), public_key: key.clone(), expires: None },
                KeySection { name: "alice-again".into(), public_key: key, expires: None },
            ],
        };
        let error = TrustPolicy::from_section(&section).unwrap_err();
        assert!(matches!(error, TrustConfigError::DuplicateKey { .. }), "{error}");
    }

    #[test]
    fn malformed_public_key_is_named() {
        let section = TrustSection {
            require_signatures: false,
            threshold: None,
            keys: vec![KeySection { name: "ops".into(), public_key: "not-a-key".into(), expires: None }],
        };
        let error = TrustPolicy::from_section(&section).unwrap_err();
        assert!(matches!(error, TrustConfigError::BadKey { ref name, .. } if name == "ops"), "{error}");
    }
}
