//! A newcomer's first steps, outside this repository: `init`, `new --sql`, `new --rust`, the
//! build the scaffold prints, `up` and `status` on SQLite — with nothing but crates.io for the
//! guest, and no generated file edited.

use std::path::Path;
use std::process::{Command, Output};

use wasmig_tests::wasmig_binary;

fn wasmig(cwd: &Path, args: &[&str]) -> Output {
    Command::new(wasmig_binary())
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("WASMIG_PROJECT")
        .env("XDG_CACHE_HOME", cwd.join(".cache"))
        .output()
        .expect("run wasmig")
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The command lines the scaffold printed after `build it` and `copy`, as a user would paste
/// them.
fn printed_commands(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo build") || line.starts_with("cp "))
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn a_new_project_outside_the_repository_builds_and_applies() {
    let home = tempfile::tempdir().expect("a folder outside the repository");
    let dir = home.path();
    assert!(!dir.starts_with(wasmig_tests::workspace_root()), "the test folder must lie outside the checkout");

    let missing = wasmig(dir, &["status"]);
    let message = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(3), "{message}");
    assert!(message.contains("wasmig init") && message.contains("--project"), "{message}");

    ok(&wasmig(dir, &["init"]), "init");
    ok(&wasmig(dir, &["new", "create_notes", "--sql"]), "new --sql");
    std::fs::write(dir.join("migrations/0001_create_notes/up.sql"), "CREATE TABLE notes (id INTEGER PRIMARY KEY);")
        .expect("write up.sql");
    std::fs::write(dir.join("migrations/0001_create_notes/down.sql"), "DROP TABLE notes;").expect("write down.sql");
    let created = ok(&wasmig(dir, &["new", "add_probe", "--rust"]), "new --rust");
    assert!(created.contains("rustup target add wasm32-wasip2"), "{created}");
    assert!(dir.join("plugins/add_probe/Cargo.toml").is_file(), "the guest crate lies beside the project: {created}");

    let commands = printed_commands(&created);
    assert_eq!(commands.len(), 2, "a build and a copy command: {created}");
    for command in &commands {
        let status = Command::new(&command[0])
            .args(&command[1..])
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run the printed command");
        assert!(status.success(), "{} failed", command.join(" "));
    }

    let up = ok(&wasmig(dir, &["up"]), "up");
    assert!(up.contains("applied 0001_create_notes") && up.contains("applied 0002_add_probe"), "{up}");
    let status = ok(&wasmig(dir, &["status"]), "status");
    assert_eq!(status.matches(" applied ").count(), 2, "{status}");
    // The database lies beside the migrations folder, and the migrations folder holds only
    // what the scaffold wrote there.
    assert!(dir.join("wasmig.db").is_file(), "{status}");
    let mut entries: Vec<String> = std::fs::read_dir(dir.join("migrations"))
        .expect("list migrations")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["0001_create_notes", "0002_add_probe", "wasmig.toml"]);
}
