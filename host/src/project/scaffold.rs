//! `wasmig init` and `wasmig new`: a new project, and a new migration folder numbered after
//! the project's latest.

use std::path::{Path, PathBuf};

use crate::core::Version;
use crate::project::catalog::{Catalog, CatalogError};
use crate::project::layout::PROJECT_FILE;

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{path} already exists; wasmig will not overwrite it")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("migration name {0:?}: use letters, digits, '_' or '-'")]
    BadName(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Which kind of migration `new` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Sql,
    /// A component migration, with the source of a Rust guest crate beside the project.
    Rust,
}

const PROJECT_TEMPLATE: &str = r#"# wasmig project: see https://docs.rs/wasmig for every setting.

[database]
# --database and DATABASE_URL take precedence. A relative SQLite path is relative to this folder.
url = "sqlite:wasmig.db"

[history]
table = "wasmig_history"

[limits]
# Defaults for every component call; a migration.toml may override them.
fuel = 10000000000
memory_mib = 256
timeout_secs = 300
"#;

fn write_new(path: &Path, contents: &str) -> Result<(), ScaffoldError> {
    if path.exists() {
        return Err(ScaffoldError::Exists { path: path.to_owned() });
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write { path: parent.to_owned(), source })?;
    }
    std::fs::write(path, contents).map_err(|source| ScaffoldError::Write { path: path.to_owned(), source })
}

/// Creates `<dir>/wasmig.toml`.
pub fn init(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let path = dir.join(PROJECT_FILE);
    write_new(&path, PROJECT_TEMPLATE)?;
    Ok(path)
}

/// What `new` created.
#[derive(Debug)]
pub struct Created {
    pub folder: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Creates the next migration folder. For [`Template::Rust`], also a guest crate at
/// `crate_dir` whose built component goes into the folder as `migration.wasm`.
pub fn new_migration(
    project_dir: &Path,
    name: &str,
    template: Template,
    crate_dir: &Path,
) -> Result<Created, ScaffoldError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    // The new folder is not in wasmig.sum yet, nor are the ones made before it was hashed.
    let catalog = Catalog::load_to_rehash(project_dir)?;
    let next = Version(catalog.migrations.last().map_or(1, |m| m.version.0 + 1));
    let folder = project_dir.join(format!("{next}_{name}"));
    let mut files = Vec::new();
    let mut write = |path: PathBuf, contents: &str| -> Result<(), ScaffoldError> {
        write_new(&path, contents)?;
        files.push(path);
        Ok(())
    };
    match template {
        Template::Sql => {
            write(folder.join("up.sql"), "-- Apply the change. Runs in one transaction with its history row.\n")?;
            write(folder.join("down.sql"), "-- Revert what up.sql did.\n")?;
            write(
                folder.join("verify.sql"),
                "-- Each query's rows must have a true first column, e.g.\n-- SELECT count(*) = 0 FROM users WHERE email IS NULL;\n",
            )?;
        }
        Template::Rust => {
            write(folder.join("migration.toml"), "kind = \"component\"\n# [backfill]\n# batch_size = 1000\n")?;
            let crate_name = name.replace('_', "-");
            write(crate_dir.join("Cargo.toml"), &guest_cargo_toml(&crate_name, &sdk_dependency(crate_dir)))?;
            write(crate_dir.join("src/lib.rs"), GUEST_LIB)?;
        }
    }
    Ok(Created { folder, files })
}

/// The SDK as a path dependency when a wasmig checkout's `sdk/` is found above `crate_dir`,
/// else by version.
fn sdk_dependency(crate_dir: &Path) -> String {
    let absolute = std::path::absolute(crate_dir).unwrap_or_else(|_| crate_dir.to_owned());
    for (depth, ancestor) in absolute.ancestors().skip(1).enumerate() {
        let manifest = ancestor.join("sdk/Cargo.toml");
        let is_sdk = std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("name = \"wasmig-sdk\""));
        if is_sdk {
            let up = "../".repeat(depth + 1);
            return format!("{{ path = \"{up}sdk\" }}");
        }
    }
    "\"0.1\"".to_owned()
}

fn guest_cargo_toml(crate_name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

# Build: cargo build --release --target wasm32-wasip2
# then copy target/wasm32-wasip2/release/*.wasm into the migration folder as migration.wasm.

[lib]
crate-type = ["cdylib"]

[dependencies]
wasmig-sdk = {sdk}

# A crate of its own, not a member of any enclosing workspace.
[workspace]
"#
    )
}

const GUEST_LIB: &str = r#"//! A wasmig migration. `up` runs in one transaction with its history row; `verify` runs
//! after it in the same transaction.

use wasmig_sdk::{Db, Migration, Result, params};

struct ThisMigration;

impl Migration for ThisMigration {
    fn up(db: &Db) -> Result<()> {
        db.execute("SELECT 1", params![])?;
        Ok(())
    }

    fn down(db: &Db) -> Result<()> {
        db.execute("SELECT 1", params![])?;
        Ok(())
    }
}

wasmig_sdk::export_migration!(ThisMigration);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_numbers_after_the_latest_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        assert!(matches!(init(dir.path()), Err(ScaffoldError::Exists { .. })));
        let first = new_migration(dir.path(), "create_users", Template::Sql, Path::new("unused")).unwrap();
        assert!(first.folder.ends_with("0001_create_users"));
        let second = new_migration(dir.path(), "add_index", Template::Sql, Path::new("unused")).unwrap();
        assert!(second.folder.ends_with("0002_add_index"));
    }

    #[test]
    fn rust_template_writes_a_manifest_and_a_guest_crate() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        let crate_dir = dir.path().join("guest");
        let created = new_migration(dir.path(), "backfill", Template::Rust, &crate_dir).unwrap();
        assert!(created.folder.join("migration.toml").is_file());
        assert!(crate_dir.join("src/lib.rs").is_file());
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("wasmig-sdk = \"0.1\""), "no checkout above a temp dir: {manifest}");
    }

    #[test]
    fn rust_template_uses_the_checkout_sdk_by_path() {
        let checkout = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkout.path().join("sdk")).unwrap();
        std::fs::write(checkout.path().join("sdk/Cargo.toml"), "[package]\nname = \"wasmig-sdk\"\n").unwrap();
        let project = checkout.path().join("migrations");
        std::fs::create_dir_all(&project).unwrap();
        init(&project).unwrap();
        let crate_dir = checkout.path().join("plugins/backfill");
        new_migration(&project, "backfill", Template::Rust, &crate_dir).unwrap();
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("wasmig-sdk = { path = \"../../sdk\" }"), "{manifest}");
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        assert!(matches!(
            new_migration(dir.path(), "../escape", Template::Sql, Path::new("x")),
            Err(ScaffoldError::BadName(_))
        ));
    }
}
