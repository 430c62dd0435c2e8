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

/// Whether the project folder may hold `name` beside its migrations without wasmig reading
/// it: a `README.md`, dotfiles such as `.gitkeep` or `.gitignore`, and the files wasmig itself
/// creates there (a SQLite database and its `-wal`, `-shm`, `-journal` and lock files). Every
/// other unknown entry is an error, so that nothing meant as a migration is silently skipped.
pub fn kept_beside_migrations(name: &str, is_dir: bool) -> bool {
    if name.starts_with('.') {
        return true;
    }
    if is_dir {
        return false;
    }
    if name == "README.md" {
        return true;
    }
    let base = ["-wal", "-shm", "-journal", ".wasmig-lock"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    [".db", ".sqlite", ".sqlite3"].iter().any(|extension| base.len() > extension.len() && base.ends_with(extension))
}
