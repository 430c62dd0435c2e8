//! The names of a project's files, which every layer that reads or writes the project agrees on.
//! One folder per migration (`0001_name/`) holds `up.sql` (and `down.sql`, `verify.sql`) or a
//! manifest and its component; the project's root holds its settings, its sum file and the
//! signatures of the sum file.

/// The project's settings, at its root.
pub const PROJECT_FILE: &str = "wasmig.toml";
/// The blake3 digest of every migration, at the project's root.
pub const SUM_FILE: &str = "wasmig.sum";
/// A signature of the sum file is `wasmig.sum.<signer>` followed by this suffix.
pub const SIGNATURE_SUFFIX: &str = ".minisig";
/// A migration folder's manifest.
pub const MANIFEST_FILE: &str = "migration.toml";
/// A component migration's component, unless its manifest names another file.
pub const DEFAULT_COMPONENT_FILE: &str = "migration.wasm";
