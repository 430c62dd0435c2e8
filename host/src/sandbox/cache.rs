//! The precompiled-component cache: compiling a Python or JavaScript component takes ~10 s,
//! loading it precompiled ~30 ms.
//!
//! Entries are keyed by the blake3 digest of the component's bytes and by the engine's
//! compatibility hash (wasmtime version, target and the codegen settings that matter), so a
//! different artifact or engine never loads a stale entry. Only bytes already checked
//! against the catalog reach here; the cache folder must be as private as the wasmig binary
//! itself, since whoever can write either can run code as the user.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Disabled,
}

pub struct ComponentCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ComponentCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = Blake3StdHasher(blake3::Hasher::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.0.finalize().to_hex()[..16].to_owned();
        ComponentCache { dir, engine_hash }
    }

    fn entry(&self, bytes: &[u8]) -> PathBuf {
        let artifact = blake3::hash(bytes).to_hex();
        self.dir.join(format!("{artifact}-{}.cwasm", self.engine_hash))
    }

    /// Loads a precompiled entry, or compiles `bytes` and stores the result.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(bytes);
        if entry.is_file() {
            // SAFETY: the entry was written by `store` below from `Engine::precompile_component`
            // for these exact bytes (its name carries their digest) and this engine's
            // compatibility hash; wasmtime still checks the header and refuses a mismatch.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => {
                    tracing::warn!(entry = %entry.display(), %error, "ignoring unusable cache entry")
                }
            }
        }
        let precompiled = engine.precompile_component(bytes)?;
        if let Err(error) = store(&entry, &precompiled) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not write the component cache");
        }
        // SAFETY: `precompiled` was produced just now by this engine from `bytes`.
        let component = unsafe { Component::deserialize(engine, &precompiled)? };
        Ok((component, CacheOutcome::Miss))
    }
}

/// Writes atomically: a concurrent run sees the whole entry or none.
fn store(entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = entry.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, entry)
}

/// Feeds `Hash` into blake3, so the key is stable across Rust versions (std's hasher is not).
struct Blake3StdHasher(blake3::Hasher);

impl Hasher for Blake3StdHasher {
    fn finish(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
