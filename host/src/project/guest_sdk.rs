//! The Rust SDK's source, carried in the `wasmig` binary and written beside a new guest crate
//! (`plugins/wasmig-sdk-<version>/`) when no wasmig checkout is at hand.
//!
//! Until `wasmig-sdk` is on crates.io, this is what lets `wasmig new --rust` make a crate that
//! builds anywhere with nothing but crates.io (for wit-bindgen): the SDK written is exactly
//! the one this binary was built with, so its WIT is the host's, byte for byte. Once the
//! SDK is published, the dependency becomes a version and this copy is no longer needed.

use std::path::{Path, PathBuf};

/// The SDK's version: the host's, since they are released together.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// wit-bindgen's version, as the workspace pins it (a unit test holds the two together).
const WIT_BINDGEN: &str = "0.61.1";

/// The SDK's files, by path inside its folder.
const FILES: [(&str, &str); 8] = [
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/__export.rs", include_str!("../../../sdk/src/__export.rs")),
    ("src/columns.rs", include_str!("../../../sdk/src/columns.rs")),
    ("src/db.rs", include_str!("../../../sdk/src/db.rs")),
    ("src/error.rs", include_str!("../../../sdk/src/error.rs")),
    ("src/value.rs", include_str!("../../../sdk/src/value.rs")),
    ("wit/migration.wit", include_str!("../../../sdk/wit/migration.wit")),
    ("README.md", include_str!("../../../sdk/README.md")),
];

/// The folder name of this version's copy.
pub fn folder_name() -> String {
    format!("wasmig-sdk-{VERSION}")
}

/// A standalone manifest: the SDK's own uses the workspace's settings.
fn manifest() -> String {
    format!(
        r#"[package]
name = "wasmig-sdk"
version = "{VERSION}"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"
description = "Write wasmig migrations in Rust (the copy `wasmig new --rust` writes)"
publish = false

[dependencies]
wit-bindgen = "{WIT_BINDGEN}"

# A crate of its own, not a member of any enclosing workspace.
[workspace]
"#
    )
}

/// Writes the SDK into `dir` unless a copy is there already (several guests share one), and
/// returns the files written.
pub fn write_into(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(Vec::new());
    }
    let manifest = manifest();
    let mut written = Vec::new();
    for (relative, contents) in FILES.iter().copied().chain([("Cargo.toml", manifest.as_str())]) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_carries_the_hosts_wit() {
        assert_eq!(
            include_str!("../../../sdk/wit/migration.wit"),
            include_str!("../../../wit/migration.wit"),
            "sdk/wit/migration.wit must be a copy of wit/migration.wit: cp wit/migration.wit sdk/wit/"
        );
    }

    #[test]
    fn the_copy_pins_the_workspaces_wit_bindgen() {
        let workspace = include_str!("../../../Cargo.toml");
        assert!(workspace.contains(&format!("wit-bindgen = \"{WIT_BINDGEN}\"")), "update WIT_BINDGEN");
    }

    #[test]
    fn every_source_file_of_the_sdk_is_carried() {
        let sources = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/src")).unwrap();
        for entry in sources {
            let name = format!("src/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(FILES.iter().any(|(path, _)| *path == name), "{name} is not carried");
        }
    }

    #[test]
    fn writes_once_and_leaves_an_existing_copy() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_into(dir.path()).unwrap();
        assert_eq!(written.len(), FILES.len() + 1);
        assert!(std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap().contains("[workspace]"));
        assert!(write_into(dir.path()).unwrap().is_empty());
    }
}
