//! Producing artifacts: `wasmig hash` writes `wasmig.sum`, `wasmig keygen` makes a minisign key
//! pair, `wasmig sign` writes a detached signature of the sum file.
//!
//! A secret key is read from a file or an environment variable (a CI secret) and is never
//! printed, logged or put in an error message.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKey, SecretKey, SecretKeyBox};

use crate::project::catalog::Catalog;
use crate::project::layout::{SIGNATURE_SUFFIX, SUM_FILE};
use crate::project::sumfile::{SumFile, signed_bytes};

use super::verify::key_id;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path} already exists; wasmig will not overwrite a key")]
    KeyExists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
    #[error("the secret key from {origin} is not a minisign secret key: {reason}")]
    BadSecretKey { origin: String, reason: String },
    #[error("{SUM_FILE} is missing: run `wasmig hash` first")]
    NoSumFile,
    #[error("{SUM_FILE} does not match the migrations on disk (run `wasmig hash`, review, then sign): {detail}")]
    StaleSumFile { detail: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A generated key pair's public half and where both halves were written.
#[derive(Debug)]
pub struct GeneratedKey {
    pub key_id: String,
    /// The base64 line to put in `[[trust.keys]] public_key`.
    pub public_key: String,
    pub secret_path: PathBuf,
    pub public_path: PathBuf,
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), SigningError> {
    let write_error = |source| SigningError::Write { path: path.to_owned(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => SigningError::KeyExists { path: path.to_owned() },
        _ => write_error(source),
    })?;
    file.write_all(contents).map_err(write_error)
}

/// Writes an unencrypted minisign secret key to `secret_path` (mode 0600) and its public key
/// to `secret_path` + `.pub`. Keep the secret in a CI secret store, never in the repository.
pub fn keygen(secret_path: &Path) -> Result<GeneratedKey, SigningError> {
    let public_path = PathBuf::from(format!("{}.pub", secret_path.display()));
    for path in [secret_path, public_path.as_path()] {
        if path.exists() {
            return Err(SigningError::KeyExists { path: path.to_owned() });
        }
    }
    let pair = KeyPair::generate_unencrypted_keypair().map_err(|e| SigningError::Generate(e.to_string()))?;
    let id = key_id(pair.pk.keynum());
    let secret_box =
        pair.sk.to_box(Some(&format!("wasmig secret key {id}"))).map_err(|e| SigningError::Generate(e.to_string()))?;
    let public_box = pair.pk.to_box().map_err(|e| SigningError::Generate(e.to_string()))?;
    write_file(secret_path, secret_box.into_string().as_bytes(), true)?;
    write_file(&public_path, public_box.into_string().as_bytes(), false)?;
    Ok(GeneratedKey { key_id: id, public_key: pair.pk.to_base64(), secret_path: secret_path.to_owned(), public_path })
}

/// Writes `wasmig.sum` for the catalog as it is on disk.
pub fn write_sum(project_dir: &Path, catalog: &Catalog) -> Result<(PathBuf, SumFile), SigningError> {
    let sum = catalog.current_sum();
    let path = project_dir.join(SUM_FILE);
    std::fs::write(&path, sum.render()).map_err(|source| SigningError::Write { path: path.clone(), source })?;
    Ok((path, sum))
}

/// Parses a secret key's text. `origin` names where it came from (a path or a variable name),
/// never its contents.
pub fn secret_key(text: &str, origin: &str, password: Option<String>) -> Result<SecretKey, SigningError> {
    let bad = |reason: String| SigningError::BadSecretKey { origin: origin.to_owned(), reason };
    let key_box = SecretKeyBox::from_string(text.trim()).map_err(|e| bad(e.to_string()))?;
    match password {
        Some(password) => key_box.into_secret_key(Some(password)).map_err(|e| bad(e.to_string())),
        None => key_box
            .into_unencrypted_secret_key()
            .map_err(|e| bad(format!("{e} (an encrypted key needs WASMIG_SIGNING_KEY_PASSWORD)"))),
    }
}

/// Signs the project's `wasmig.sum` with `key`, after checking it matches the files, and
/// writes `wasmig.sum.<KEYID>.minisig`. Returns the signature's path.
pub fn sign(project_dir: &Path, catalog: &Catalog, key: &SecretKey) -> Result<PathBuf, SigningError> {
    let bytes = catalog.sum_file.as_ref().ok_or(SigningError::NoSumFile)?;
    let recorded = SumFile::parse(bytes).map_err(|e| SigningError::StaleSumFile { detail: e.to_string() })?;
    let current = catalog.current_sum();
    if recorded != current {
        let detail = format!("it records total {}, the files hash to {}", recorded.total, current.total);
        return Err(SigningError::StaleSumFile { detail });
    }
    let public = PublicKey::from_secret_key(key).map_err(|e| SigningError::Sign(e.to_string()))?;
    let id = key_id(public.keynum());
    let trusted_comment = format!("wasmig.sum total {} key {id}", current.total);
    let signature = minisign::sign(
        Some(&public),
        key,
        Cursor::new(signed_bytes(bytes)),
        Some(&trusted_comment),
        Some("signature of wasmig.sum by wasmig sign"),
    )
    .map_err(|e| SigningError::Sign(e.to_string()))?;
    let path = project_dir.join(format!("{SUM_FILE}.{id}{SIGNATURE_SUFFIX}"));
    std::fs::write(&path, signature.into_string())
        .map_err(|source| SigningError::Write { path: path.clone(), source })?;
    Ok(path)
}
