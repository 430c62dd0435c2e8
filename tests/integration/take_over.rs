//! `wasmig stamp --from TOOL`: a database another tool migrated keeps its history. dbmate (from
//! npm), alembic (from PyPI) and sqlx-cli (from crates.io), installed by scripts/peer-tools.sh,
//! really migrate a PostgreSQL database and a SQLite file (goose and Flyway install from the Go
//! module proxy and Maven Central, which this project does not install from: their tests write
//! the history table with the DDL and rows those tools write); wasmig stamps what they applied, applies the rest
//! itself, and refuses a history it cannot take over as it is, naming why.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmig_tests::{Backend, Project, TestDb, wasmig_json, workspace_root};

use crate::on_both_backends;

/// The same three migrations, as dbmate and as wasmig lay them out.
const MIGRATIONS: [(&str, &str, &str); 3] = [
    ("20260101000001_accounts", "CREATE TABLE accounts (id BIGINT PRIMARY KEY, email TEXT);", "DROP TABLE accounts;"),
    ("20260101000002_orders", "CREATE TABLE orders (id BIGINT PRIMARY KEY, account BIGINT);", "DROP TABLE orders;"),
    ("20260101000003_refunds", "CREATE TABLE refunds (id BIGINT PRIMARY KEY, amount BIGINT);", "DROP TABLE refunds;"),
];

fn dbmate_binary() -> PathBuf {
    let path = workspace_root().join("target/peer-tools/node_modules/.bin/dbmate");
    assert!(
        path.exists(),
        "dbmate is not installed at {}: run scripts/peer-tools.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

fn dbmate(db: &TestDb, dir: &Path, args: &[&str]) {
    let url = match db.backend {
        Backend::Postgres => format!("{}?sslmode=disable", db.url),
        Backend::Sqlite => db.url.clone(),
    };
    let output = Command::new(dbmate_binary())
        .args(["--url", &url, "--migrations-dir", &dir.to_string_lossy(), "--no-dump-schema"])
        .args(args)
        .output()
        .expect("run dbmate");
    assert!(output.status.success(), "dbmate {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn wasmig_project(extra_first: bool) -> Project {
    let project = Project::new();
    if extra_first {
        project.sql("20251231000000_early", "CREATE TABLE early (id BIGINT);", Some("DROP TABLE early;"), None);
    }
    for (folder, up, down) in MIGRATIONS {
        project.sql(folder, up, Some(down), None);
    }
    project
}

async fn a_history_dbmate_kept_is_taken_over(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("a folder for dbmate's migrations");
    for (folder, up, down) in MIGRATIONS {
        let text = format!("-- migrate:up\n{up}\n\n-- migrate:down\n{down}\n");
        std::fs::write(dir.path().join(format!("{folder}.sql")), text).expect("write a dbmate migration");
    }
    dbmate(&db, dir.path(), &["up"]);
    dbmate(&db, dir.path(), &["rollback"]);

    let project = wasmig_project(false);
    let wrong_tool = wasmig_json(&project, &db, &["stamp", "--from", "sqlx", "--reason", "moving"]);
    assert_eq!(wrong_tool.result.exit_code, 3);
    let message = &wrong_tool.result.error.as_ref().expect("an error").message;
    assert!(message.contains("there is no _sqlx_migrations table"), "{message}");

    let early = wasmig_project(true);
    let gap = wasmig_json(&early, &db, &["stamp", "--from", "dbmate", "--reason", "moving"]);
    assert_eq!((gap.result.exit_code, gap.result.exit.as_str()), (3, "project"));
    let message = &gap.result.error.as_ref().expect("an error").message;
    assert!(message.contains("20251231000000_early comes before what dbmate applied last"), "{message}");

    let stamp = wasmig_json(&project, &db, &["stamp", "--from", "dbmate", "--reason", "moving to wasmig"]);
    assert_eq!(stamp.result.exit_code, 0, "{:?}", stamp.result.error);
    let stamped: Vec<(&str, &str)> =
        stamp.result.committed.iter().map(|s| (s.action.as_str(), s.migration.as_str())).collect();
    assert_eq!(stamped, [("stamped", "20260101000001_accounts"), ("stamped", "20260101000002_orders")]);

    let up = wasmig_json(&project, &db, &["up"]);
    assert_eq!(up.result.exit_code, 0, "{:?}", up.result.error);
    let applied: Vec<&str> = up.result.committed.iter().map(|s| s.migration.as_str()).collect();
    assert_eq!(applied, ["20260101000003_refunds"], "wasmig applies only what dbmate had not");

    let audit = wasmig_json(&project, &db, &["history", "--audit"]);
    let details: Vec<&str> = audit.result.data["audit"]
        .as_array()
        .expect("the audit trail")
        .iter()
        .filter(|entry| entry["action"] == "stamped")
        .filter_map(|entry| entry["detail"].as_str())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details.iter().all(|d| d.contains("taken over from dbmate's schema_migrations: moving to wasmig")),
        "{details:?}"
    );
}
on_both_backends!(stamp_from_dbmate, a_history_dbmate_kept_is_taken_over);

/// Runs alembic (installed from PyPI by scripts/peer-tools.sh) on `db` with the two revisions.
fn alembic_upgrade(db: &TestDb, dir: &Path) {
    let alembic = workspace_root().join("target/peer-tools/venv/bin/alembic");
    assert!(alembic.exists(), "alembic is not installed at {}: run scripts/peer-tools.sh", alembic.display());
    let url = match db.backend {
        Backend::Postgres => db.url.replacen("postgres://", "postgresql+psycopg2://", 1),
        Backend::Sqlite => format!("sqlite:////{}", db.url.trim_start_matches("sqlite:").trim_start_matches('/')),
    };
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("make alembic's folders");
        std::fs::write(path, text).expect("write an alembic file");
    };
    write("alembic.ini", &format!("[alembic]\nscript_location = %(here)s/alembic\nsqlalchemy.url = {url}\n"));
    write(
        "alembic/env.py",
        "from alembic import context\nfrom sqlalchemy import engine_from_config, pool\n\
         config = context.config\n\
         engine = engine_from_config(config.get_section(config.config_ini_section), prefix='sqlalchemy.', poolclass=pool.NullPool)\n\
         with engine.connect() as connection:\n    context.configure(connection=connection, target_metadata=None)\n\
         \x20   with context.begin_transaction():\n        context.run_migrations()\n",
    );
    for (revision, down, up, undo) in [
        ("a1b2c3d4e5f6", "None", MIGRATIONS[0].1, MIGRATIONS[0].2),
        ("b2c3d4e5f6a1", "'a1b2c3d4e5f6'", MIGRATIONS[1].1, MIGRATIONS[1].2),
    ] {
        write(
            &format!("alembic/versions/{revision}.py"),
            &format!(
                "from alembic import op\nrevision = '{revision}'\ndown_revision = {down}\nbranch_labels = None\n\
                 depends_on = None\ndef upgrade():\n    op.execute(\"{up}\")\ndef downgrade():\n    op.execute(\"{undo}\")\n"
            ),
        );
    }
    let output = Command::new(alembic)
        .args(["-c", &dir.join("alembic.ini").to_string_lossy(), "upgrade", "head"])
        .output()
        .expect("run alembic");
    assert!(output.status.success(), "alembic upgrade: {}", String::from_utf8_lossy(&output.stderr));
}

async fn a_history_alembic_kept_is_taken_over(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("a folder for alembic");
    alembic_upgrade(&db, dir.path());

    let unnamed = Project::new();
    unnamed.sql("0001_accounts", MIGRATIONS[0].1, Some(MIGRATIONS[0].2), None);
    let refused = wasmig_json(&unnamed, &db, &["stamp", "--from", "alembic", "--reason", "moving"]);
    assert_eq!(refused.result.exit_code, 3);
    let message = &refused.result.error.as_ref().expect("an error").message;
    assert!(
        message.contains("alembic's head revision is b2c3d4e5f6a1, but no migration is named after it"),
        "{message}"
    );

    let project = Project::new();
    project
        .sql("0001_a1b2c3d4e5f6_accounts", MIGRATIONS[0].1, Some(MIGRATIONS[0].2), None)
        .sql("0002_b2c3d4e5f6a1_orders", MIGRATIONS[1].1, Some(MIGRATIONS[1].2), None)
        .sql("0003_refunds", MIGRATIONS[2].1, Some(MIGRATIONS[2].2), None);
    let stamp = wasmig_json(&project, &db, &["stamp", "--from", "alembic", "--reason", "moving to wasmig"]);
    assert_eq!(stamp.result.exit_code, 0, "{:?}", stamp.result.error);
    let stamped: Vec<&str> = stamp.result.committed.iter().map(|s| s.migration.as_str()).collect();
    assert_eq!(stamped, ["0001_a1b2c3d4e5f6_accounts", "0002_b2c3d4e5f6a1_orders"]);
    let up = wasmig_json(&project, &db, &["up"]);
    let applied: Vec<&str> = up.result.committed.iter().map(|s| s.migration.as_str()).collect();
    assert_eq!((up.result.exit_code, applied), (0, vec!["0003_refunds"]), "{:?}", up.result.error);
}
on_both_backends!(stamp_from_alembic, a_history_alembic_kept_is_taken_over);

/// `stamp --from tool` on a database where `tool` has the first two of [`MIGRATIONS`] applied
/// (`why` says what it left out), then `up`, which applies only the third.
fn stamps_the_first_two_then_applies_the_third(db: &TestDb, tool: &str, why: &str) {
    let project = wasmig_project(false);
    let stamp = wasmig_json(&project, db, &["stamp", "--from", tool, "--reason", "moving to wasmig"]);
    assert_eq!(stamp.result.exit_code, 0, "{:?}", stamp.result.error);
    let stamped: Vec<&str> = stamp.result.committed.iter().map(|s| s.migration.as_str()).collect();
    assert_eq!(stamped, ["20260101000001_accounts", "20260101000002_orders"], "{why}");
    let up = wasmig_json(&project, db, &["up"]);
    let applied: Vec<&str> = up.result.committed.iter().map(|s| s.migration.as_str()).collect();
    assert_eq!((up.result.exit_code, applied), (0, vec!["20260101000003_refunds"]), "{:?}", up.result.error);
}

/// Runs sqlx-cli (built from crates.io by scripts/peer-tools.sh) on `db` with `dir`'s migrations.
fn sqlx(db: &TestDb, dir: &Path, args: &[&str]) {
    let sqlx = workspace_root().join("target/peer-tools/bin/sqlx");
    assert!(sqlx.exists(), "sqlx-cli is not installed at {}: run scripts/peer-tools.sh", sqlx.display());
    // sqlx opens a SQLite file only if it exists, unless told it may create it.
    let url = match db.backend {
        Backend::Postgres => format!("{}?sslmode=disable", db.url),
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
    };
    let output = Command::new(sqlx)
        .args(["migrate"])
        .args(args)
        .args(["--source", &dir.to_string_lossy(), "--database-url", &url])
        .output()
        .expect("run sqlx");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "sqlx migrate {args:?}: {said}");
}

async fn a_history_sqlx_kept_is_taken_over(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("a folder for sqlx's migrations");
    for (folder, up, down) in MIGRATIONS {
        std::fs::write(dir.path().join(format!("{folder}.up.sql")), up).expect("write a sqlx migration");
        std::fs::write(dir.path().join(format!("{folder}.down.sql")), down).expect("write a sqlx revert");
    }
    sqlx(&db, dir.path(), &["run"]);
    sqlx(&db, dir.path(), &["revert"]);

    let early = wasmig_project(true);
    let gap = wasmig_json(&early, &db, &["stamp", "--from", "sqlx", "--reason", "moving"]);
    assert_eq!((gap.result.exit_code, gap.result.exit.as_str()), (3, "project"));
    let message = &gap.result.error.as_ref().expect("an error").message;
    assert!(message.contains("20251231000000_early comes before what sqlx applied last"), "{message}");

    stamps_the_first_two_then_applies_the_third(&db, "sqlx", "what sqlx reverted is not stamped");
}
on_both_backends!(stamp_from_sqlx, a_history_sqlx_kept_is_taken_over);

/// The three migrations' schema and history as goose leaves them after `up` then `down`: its
/// table (DDL as goose creates it on each backend), the version-0 row it writes with the
/// table, a row per up, and for the down a row with `is_applied` false.
async fn migrated_by_goose(db: &TestDb) {
    let inspect = db.inspect().await;
    let table = match db.backend {
        Backend::Postgres => {
            "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, \
             is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));"
        }
        Backend::Sqlite => {
            "CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL, \
             is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));"
        }
    };
    let schema: String = MIGRATIONS.iter().map(|(_, up, _)| *up).collect();
    inspect.execute(&format!("{table}\n{schema}\n{}", MIGRATIONS[2].2)).await;
    inspect
        .execute(
            "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, TRUE), (20260101000001, TRUE), \
             (20260101000002, TRUE), (20260101000003, TRUE), (20260101000003, FALSE);",
        )
        .await;
}

async fn a_history_goose_kept_is_taken_over(backend: Backend) {
    let db = TestDb::new(backend).await;
    migrated_by_goose(&db).await;
    stamps_the_first_two_then_applies_the_third(&db, "goose", "goose's latest row for 3 is a down");
}
on_both_backends!(stamp_from_goose, a_history_goose_kept_is_taken_over);

/// The schema and history Flyway leaves after two versioned
/// migrations, a repeatable one (no version) and a third that failed (on a database without
/// transactional DDL Flyway records the failure): its table with Flyway's own DDL.
async fn migrated_by_flyway(db: &TestDb) {
    let inspect = db.inspect().await;
    let schema: String = MIGRATIONS[..2].iter().map(|(_, up, _)| *up).collect();
    inspect
        .execute(&format!(
            "CREATE TABLE flyway_schema_history (installed_rank INT NOT NULL PRIMARY KEY, version VARCHAR(50), \
             description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, \
             checksum INT, installed_by VARCHAR(100) NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             execution_time INT NOT NULL, success BOOLEAN NOT NULL);\n{schema}"
        ))
        .await;
    inspect
        .execute(
            "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, \
             installed_by, execution_time, success) VALUES \
             (1, '20260101000001', 'accounts', 'SQL', 'V20260101000001__accounts.sql', 11, 'deploy', 4, TRUE), \
             (2, '20260101000002', 'orders', 'SQL', 'V20260101000002__orders.sql', 12, 'deploy', 3, TRUE), \
             (3, NULL, 'views', 'SQL', 'R__views.sql', 13, 'deploy', 2, TRUE), \
             (4, '20260101000003', 'refunds', 'SQL', 'V20260101000003__refunds.sql', 14, 'deploy', 1, FALSE);",
        )
        .await;
}

async fn a_history_flyway_kept_is_taken_over(backend: Backend) {
    let db = TestDb::new(backend).await;
    migrated_by_flyway(&db).await;
    stamps_the_first_two_then_applies_the_third(&db, "flyway", "neither the repeatable nor the failed");
}
on_both_backends!(stamp_from_flyway, a_history_flyway_kept_is_taken_over);
