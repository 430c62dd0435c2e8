//! `wasmig init` and `wasmig new`: a new project, and a new migration folder numbered after
//! the project's latest.

use std::path::{Path, PathBuf};

use crate::core::Version;
use crate::project::guest_sdk;
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
# --database, DATABASE_URL (or a .env file's) take precedence. A relative SQLite path is
# relative to this folder.
url = "sqlite:{database}"

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

/// Creates `<dir>/wasmig.toml`. Its SQLite database lies beside the project folder (in the
/// folder above it, `../wasmig.db`), so the migrations folder holds migrations only; when the
/// project is the current folder itself, the database is `wasmig.db` in it, which the catalog
/// leaves alone.
pub fn init(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let path = dir.join(PROJECT_FILE);
    let is_current = std::path::absolute(dir).ok() == std::env::current_dir().ok();
    let database = if is_current { "wasmig.db" } else { "../wasmig.db" };
    write_new(&path, &PROJECT_TEMPLATE.replace("{database}", database))?;
    Ok(path)
}

/// Where `new NAME --rust` puts the guest crate when not told: `plugins/NAME` beside the
/// project folder (in the folder above it), never inside it, where the catalog would take it
/// for a stray file.
pub fn default_crate_dir(project_dir: &Path, name: &str) -> PathBuf {
    let absolute = std::path::absolute(project_dir).unwrap_or_else(|_| project_dir.to_owned());
    let parent = absolute.parent().map_or_else(|| absolute.clone(), Path::to_owned);
    parent.join("plugins").join(name)
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
    let mut sdk_files = Vec::new();
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
            let sdk = match checkout_sdk(crate_dir) {
                Some(path) => path,
                None => {
                    // No wasmig checkout above: the SDK this binary carries, beside the crate.
                    let parent = crate_dir.parent().unwrap_or(Path::new("."));
                    let folder = parent.join(guest_sdk::folder_name());
                    sdk_files = guest_sdk::write_into(&folder)
                        .map_err(|source| ScaffoldError::Write { path: folder.clone(), source })?;
                    format!("../{}", guest_sdk::folder_name())
                }
            };
            write(crate_dir.join("Cargo.toml"), &guest_cargo_toml(&crate_name, &format!("{{ path = \"{sdk}\" }}")))?;
            write(crate_dir.join("src/lib.rs"), GUEST_LIB)?;
        }
    }
    files.extend(sdk_files);
    Ok(Created { folder, files })
}

/// The file name (without `.wasm`) cargo gives a cdylib crate's build.
pub fn artifact_name(crate_name: &str) -> String {
    crate_name.replace('-', "_")
}

/// The SDK of a wasmig checkout above `crate_dir`, as a relative path, if there is one (the
/// project's own plugins build against it).
fn checkout_sdk(crate_dir: &Path) -> Option<String> {
    let absolute = std::path::absolute(crate_dir).unwrap_or_else(|_| crate_dir.to_owned());
    absolute.ancestors().skip(1).enumerate().find_map(|(depth, ancestor)| {
        let manifest = ancestor.join("sdk/Cargo.toml");
        let is_sdk = std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("name = \"wasmig-sdk\""));
        is_sdk.then(|| format!("{}sdk", "../".repeat(depth + 1)))
    })
}

fn guest_cargo_toml(crate_name: &str, sdk: &str) -> String {
    let artifact = artifact_name(crate_name);
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

# Build (once: rustup target add wasm32-wasip2):
#   cargo build --release --target wasm32-wasip2
# then copy target/wasm32-wasip2/release/{artifact}.wasm into the migration folder as
# migration.wasm.

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
        let sdk = format!("wasmig-sdk = {{ path = \"../{}\" }}", guest_sdk::folder_name());
        assert!(manifest.contains(&sdk), "no checkout above a temp dir: {manifest}");
        assert!(dir.path().join(guest_sdk::folder_name()).join("src/lib.rs").is_file(), "the SDK is written beside");
        assert!(created.files.iter().any(|file| file.ends_with("wit/migration.wit")), "{:?}", created.files);
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
