//! `[backup]`: a backup before each step that drops or rewrites data (or before every step),
//! taken by SQLite's online backup API or by `pg_dump` for PostgreSQL, holding the data as it
//! was; where it went is in the events and the audit trail. A backup that cannot be taken
//! stops the run before its step, with exit 14.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmig_tests::json::{Event, JsonRun};
use wasmig_tests::{Backend, Project, TestDb, wasmig_json};

use crate::on_both_backends;

/// A project that keeps three accounts, then drops them; backups go to `dir`.
fn project(backup: &str) -> Project {
    let project = Project::new();
    project.write("wasmig.toml", &format!("[backup]\n{backup}\n"));
    project
        .sql(
            "0001_accounts",
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, email TEXT);\n\
             INSERT INTO accounts VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x');",
            Some("DROP TABLE accounts;"),
            None,
        )
        .sql(
            "0002_drop_accounts",
            "CREATE TABLE ledger (id BIGINT);\n\nDROP TABLE accounts;",
            Some("DROP TABLE ledger;\nCREATE TABLE accounts (id BIGINT PRIMARY KEY, email TEXT);"),
            None,
        );
    project
}

/// The backups a run reported: (migration, step, file, reason).
fn backups(run: &JsonRun) -> Vec<(String, String, PathBuf, String)> {
    run.events
        .iter()
        .filter_map(|event| match event {
            Event::Backup { migration, step, file, reason, .. } => {
                Some((migration.clone(), step.clone(), PathBuf::from(file), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// How many accounts the backup in `file` holds, read back with the backend's own tools.
async fn accounts_in_backup(backend: Backend, file: &Path) -> i64 {
    match backend {
        Backend::Sqlite => {
            let backup = rusqlite::Connection::open(file).expect("open the backup");
            backup.query_row("SELECT count(*) FROM accounts", [], |row| row.get(0)).expect("accounts in the backup")
        }
        Backend::Postgres => {
            let restored = TestDb::new(Backend::Postgres).await;
            let output = Command::new("pg_restore")
                .args(["--no-owner", "--dbname", &restored.url])
                .arg(file)
                .output()
                .expect("run pg_restore (Debian's postgresql-client)");
            assert!(output.status.success(), "pg_restore: {}", String::from_utf8_lossy(&output.stderr));
            restored.inspect().await.count("SELECT count(*) FROM accounts").await
        }
    }
}

async fn a_destructive_step_is_backed_up_first(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("a folder for backups");
    let project = project(&format!("before = \"destructive\"\ndir = \"{}\"", dir.path().display()));

    // The plan says which step will be backed up, and why, before anything runs.
    let plan = wasmig_json(&project, &db, &["plan"]);
    let planned: Vec<Option<&str>> =
        plan.result.data["steps"].as_array().expect("the steps").iter().map(|step| step["backup"].as_str()).collect();
    assert_eq!(planned, [None, Some("DROP TABLE at up.sql line 3")], "{}", plan.result.data);

    let up = wasmig_json(&project, &db, &["up"]);
    assert_eq!(up.result.exit, "ok", "{:?}", up.result.error);
    let taken = backups(&up);
    assert_eq!(taken.len(), 1, "only the step that drops a table: {taken:?}");
    let (migration, step, file, reason) = &taken[0];
    assert_eq!((migration.as_str(), step.as_str()), ("0002_drop_accounts", "up"));
    assert_eq!(reason, "DROP TABLE at up.sql line 3");
    assert!(file.starts_with(dir.path()), "{}", file.display());
    let backup_at = up.events.iter().position(|event| matches!(event, Event::Backup { .. }));
    let step_at = up
        .events
        .iter()
        .position(|event| matches!(event, Event::Step { migration, .. } if migration == "0002_drop_accounts"));
    assert!(backup_at < step_at, "the backup comes before the step");
    assert!(!db.inspect().await.table_exists("accounts").await, "the step ran after its backup");
    assert_eq!(accounts_in_backup(backend, file).await, 3, "the backup holds the data the step dropped");

    let audit = wasmig_json(&project, &db, &["history", "--audit"]);
    let entries = audit.result.data["audit"].as_array().expect("the audit rows").clone();
    let recorded = entries.iter().find(|entry| entry["action"] == "backup").expect("the backup in the audit trail");
    assert_eq!(recorded["migration"], "0002_drop_accounts");
    let detail = recorded["detail"].as_str().expect("detail");
    assert!(detail.contains(&file.display().to_string()), "the audit names the file: {detail}");

    // Down: 0002's down.sql drops only the empty ledger table, which is still a DROP TABLE.
    let down = wasmig_json(&project, &db, &["down", "--to", "1"]);
    assert_eq!(down.result.exit, "ok", "{:?}", down.result.error);
    let taken = backups(&down);
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].1.as_str(), taken[0].3.as_str()), ("down", "DROP TABLE at down.sql line 1"));
}
on_both_backends!(a_destructive_step, a_destructive_step_is_backed_up_first);

async fn always_backs_up_every_step(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("a folder for backups");
    let project = project(&format!("before = \"always\"\ndir = \"{}\"", dir.path().display()));
    let up = wasmig_json(&project, &db, &["up"]);
    assert_eq!(up.result.exit, "ok", "{:?}", up.result.error);
    let taken = backups(&up);
    let reasons: Vec<&str> = taken.iter().map(|(_, _, _, reason)| reason.as_str()).collect();
    assert_eq!(reasons, ["[backup] before = \"always\"", "DROP TABLE at up.sql line 3"]);
    assert_ne!(taken[0].2, taken[1].2, "each backup has a file of its own");
    assert!(taken.iter().all(|(_, _, file, _)| file.is_file()));
}
on_both_backends!(always_backs_up, always_backs_up_every_step);

async fn a_backup_that_fails_stops_before_its_step(backend: Backend) {
    let db = TestDb::new(backend).await;
    let scratch = tempfile::tempdir().expect("a folder");
    // A folder that cannot be made: its parent is a file.
    std::fs::write(scratch.path().join("a-file"), "").expect("write a file");
    let unwritable = scratch.path().join("a-file/backups");
    let project = project(&format!("before = \"destructive\"\ndir = \"{}\"", unwritable.display()));
    let up = wasmig_json(&project, &db, &["up"]);
    assert_eq!((up.result.exit_code, up.result.exit.as_str()), (14, "backup"));
    let error = up.result.error.expect("the backup's error");
    assert!(
        error.message.contains("0002_drop_accounts") && error.message.contains("a-file/backups"),
        "names the migration and the folder: {}",
        error.message
    );
    assert_eq!(up.result.committed.len(), 1, "0001 applied, 0002 never ran");
    let inspect = db.inspect().await;
    assert!(inspect.table_exists("accounts").await && !inspect.table_exists("ledger").await);
    assert_eq!(inspect.count("SELECT count(*) FROM accounts").await, 3);
}
on_both_backends!(a_backup_that_fails, a_backup_that_fails_stops_before_its_step);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backup_command_stops_before_its_step() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("a folder for backups");
    let project = project(&format!(
        "before = \"destructive\"\ndir = \"{}\"\ncommand = [\"sh\", \"-c\", \"echo 'pg_dump: error: disk full' >&2; exit 1\", \"sh\", \"{{file}}\"]",
        dir.path().display()
    ));
    let up = wasmig_json(&project, &db, &["up"]);
    assert_eq!(up.result.exit, "backup");
    let message = up.result.error.expect("the backup's error").message;
    assert!(message.contains("disk full") && message.contains("0002_drop_accounts"), "{message}");
    assert!(db.inspect().await.table_exists("accounts").await, "the DROP never ran");
}
