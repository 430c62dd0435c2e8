//! The `wasmig` binary: bad input gets a clear error naming the file, migration or URL, and
//! the exit code documented in the README.

use std::process::{Command, Output};

use wasmig_tests::{Project, TestDb, users_migration, wasmig_binary};

fn wasmig(project: &Project, args: &[&str]) -> Output {
    Command::new(wasmig_binary())
        .arg("--project")
        .arg(project.path())
        .args(args)
        .env_remove("DATABASE_URL")
        .env(
            "XDG_CACHE_HOME",
            project.path().join("..").join("wasmig-cli-test-cache"),
        )
        .output()
        .expect("run wasmig")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unreachable_database_exits_4_and_redacts_the_password() {
    let project = Project::new();
    project.write("wasmig.toml", "[database]\nconnect_timeout_secs = 1\n");
    let output = wasmig(
        &project,
        &[
            "--database",
            "postgres://deploy:hunter2@127.0.0.1:9/app",
            "status",
        ],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{text}");
    assert!(
        text.contains("postgres://deploy:***@127.0.0.1:9/app"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[test]
fn malformed_project_file_exits_3_naming_it() {
    let project = Project::new();
    project.write("wasmig.toml", "[database\nurl = 1\n");
    let output = wasmig(&project, &["status"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("wasmig.toml"), "{text}");
}

#[test]
fn malformed_manifest_exits_3_naming_it() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.write(
        "0001_broken/migration.toml",
        "kind = \"component\"\nbatch = 5\n",
    );
    let output = wasmig(&project, &["--database", &db.url, "up"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains("0001_broken/migration.toml") && text.contains("batch"),
        "{text}"
    );
}

#[test]
fn unknown_file_exits_3_naming_it() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), None, None);
    project.write("0001_users/notes.md", "remember to index");
    let output = wasmig(&project, &["--database", &db.url, "up"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("0001_users/notes.md"));
}

#[test]
fn up_status_history_and_integrity_exit_codes() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql(
        "0001_users",
        &users_migration(3),
        Some("DROP TABLE users;"),
        None,
    );
    let dry = wasmig(&project, &["--database", &db.url, "up", "--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would apply 0001_users"));

    let up = wasmig(&project, &["--database", &db.url, "up"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    assert!(String::from_utf8_lossy(&up.stdout).contains("applied 0001_users"));

    let status = wasmig(&project, &["--database", &db.url, "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("applied"),
        "{status:?}"
    );
    let history = wasmig(&project, &["--database", &db.url, "history"]);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("blake3:"),
        "{history:?}"
    );

    project.write("0001_users/up.sql", "-- changed after it was applied");
    let changed = wasmig(&project, &["--database", &db.url, "up"]);
    assert_eq!(changed.status.code(), Some(6), "{}", stderr(&changed));
}

#[test]
fn trapping_component_exits_8_and_failing_migration_exits_7() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.component("0001_loop", "hostile-loop", "[limits]\nfuel = 20000000\n");
    let output = wasmig(&project, &["--database", &db.url, "up"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(8), "{text}");
    assert!(
        text.contains("0001_loop") && text.contains("fuel"),
        "{text}"
    );
    assert!(text.contains("nothing was committed"), "{text}");

    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql(
        "0001_bad",
        "CREATE TABLE t (id INTEGER);\nSELECT * FROM missing_table;",
        None,
        None,
    );
    let output = wasmig(&project, &["--database", &db.url, "up"]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
}
