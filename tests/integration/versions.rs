//! Versions past 64 bits: a project keeps the 20-digit timestamps other tools name folders by
//! (`20150100000001000000_networks`), they order as numbers (not as the text the ledger keeps
//! them in), and a ledger an earlier wasmig made, with integer version columns, is read as it
//! is by read-only commands and converted, rows kept, by the next locked run.

use std::process::Command;

use wasmig::{DownTarget, Version};
use wasmig_tests::json::JsonRun;
use wasmig_tests::{Backend, Project, TestDb, wasmig_binary};

use crate::on_both_backends;

const NETWORKS: u128 = 20_150_100_000_001_000_000;
const SUBNETS: u128 = 20_150_100_000_002_000_000;

fn project() -> Project {
    let project = Project::new();
    project
        .sql("0009_nine", "CREATE TABLE nine (id BIGINT);", Some("DROP TABLE nine;"), None)
        .sql("0010_ten", "CREATE TABLE ten (id BIGINT);", Some("DROP TABLE ten;"), None)
        .sql("20150100000001000000_networks", "CREATE TABLE networks (id BIGINT);", Some("DROP TABLE networks;"), None)
        .sql("20150100000002000000_subnets", "CREATE TABLE subnets (id BIGINT);", Some("DROP TABLE subnets;"), None);
    project
}

fn json(project: &Project, db: &TestDb, command: &str) -> JsonRun {
    let output = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .args([command, "--format", "json"])
        .output()
        .expect("run wasmig");
    let run = JsonRun::parse(&output.stdout);
    assert_eq!(run.result.exit_code, 0, "{command}: {:?}", run.result.error);
    run
}

fn status_json(project: &Project, db: &TestDb) -> JsonRun {
    json(project, db, "status")
}

/// The versions and states `status --format json` lists, in its order.
fn listed(run: &JsonRun) -> Vec<(String, String)> {
    let entries = run.result.data["migrations"].as_array().expect("status lists its migrations");
    entries
        .iter()
        .map(|entry| {
            let field = |name: &str| entry[name].as_str().unwrap_or_else(|| panic!("{name} in {entry}")).to_owned();
            (field("version"), field("state"))
        })
        .collect()
}

async fn twenty_digit_versions_apply_and_revert_in_numeric_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = project();
    let migrator = project.migrator(&db).await;

    let report = migrator.up(None).await.expect("up");
    let applied: Vec<Version> = report.steps.iter().map(|s| s.version).collect();
    assert_eq!(applied, [Version(9), Version(10), Version(NETWORKS), Version(SUBNETS)]);
    let inspect = db.inspect().await;
    assert_eq!(
        inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '20150100000001000000'").await,
        1,
        "the version kept whole, as its digits"
    );
    let versions: Vec<String> = listed(&status_json(&project, &db)).into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, ["9", "10", "20150100000001000000", "20150100000002000000"]);
    let history = json(&project, &db, "history");
    let rows = history.result.data["applied"].as_array().expect("the applied rows");
    let versions: Vec<&str> = rows.iter().filter_map(|row| row["version"].as_str()).collect();
    assert_eq!(versions, ["9", "10", "20150100000001000000", "20150100000002000000"], "history in numeric order");

    // As text "9" sorts after both long versions: the newest applied is the longest number.
    let reverted = migrator.down(DownTarget::Steps(1)).await.expect("down one");
    assert_eq!(reverted.steps.iter().map(|s| s.version).collect::<Vec<_>>(), [Version(SUBNETS)]);
    assert!(!inspect.table_exists("subnets").await && inspect.table_exists("networks").await);
    let reverted = migrator.down(DownTarget::To(Version(9))).await.expect("down to 9");
    assert_eq!(reverted.steps.iter().map(|s| s.version).collect::<Vec<_>>(), [Version(NETWORKS), Version(10)]);
    assert!(inspect.table_exists("nine").await && !inspect.table_exists("ten").await);
}
on_both_backends!(twenty_digit_versions, twenty_digit_versions_apply_and_revert_in_numeric_order);

async fn a_folder_number_past_38_digits_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    let folder = format!("{}_too_long", "1".repeat(39));
    project.sql(&folder, "CREATE TABLE never (id BIGINT);", None, None);
    let output = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .args(["up", "--format", "json"])
        .output()
        .expect("run wasmig up");
    let run = JsonRun::parse(&output.stdout);
    let error = run.result.error.expect("refused");
    assert_eq!(run.result.exit, "project");
    assert!(error.message.contains(&folder) && error.message.contains("38 digits"), "{}", error.message);
    assert!(!db.inspect().await.table_exists("never").await);
}
on_both_backends!(a_folder_number_past_38_digits, a_folder_number_past_38_digits_is_refused);

/// The ledger's version-keyed tables as wasmig made them while versions were 64-bit integers.
fn integer_ledger(backend: Backend) -> String {
    let (timestamp, now, boolean, serial) = match backend {
        Backend::Postgres => ("TIMESTAMPTZ", "now()", "BOOLEAN", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        Backend::Sqlite => ("TEXT", "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", "INTEGER", "INTEGER PRIMARY KEY"),
    };
    format!(
        "CREATE TABLE wasmig_history (version BIGINT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
            digest TEXT NOT NULL, applied_at {timestamp} NOT NULL DEFAULT {now}, applied_by TEXT NOT NULL,
            duration_ms BIGINT NOT NULL, signers TEXT NOT NULL DEFAULT '');
        CREATE TABLE wasmig_history_repairs (version BIGINT NOT NULL, old_digest TEXT NOT NULL,
            new_digest TEXT NOT NULL, reason TEXT NOT NULL, repaired_by TEXT NOT NULL,
            repaired_at {timestamp} NOT NULL DEFAULT {now});
        CREATE TABLE wasmig_history_backfill (version BIGINT PRIMARY KEY, state TEXT NOT NULL, rows_estimate BIGINT,
            started_ms BIGINT NOT NULL, finished_ms BIGINT, rate_since_ms BIGINT NOT NULL,
            rate_since_rows BIGINT NOT NULL);
        CREATE TABLE wasmig_history_backfill_chunks (version BIGINT NOT NULL, chunk BIGINT NOT NULL, after_key TEXT,
            until_key TEXT, cursor TEXT, rows_done BIGINT NOT NULL, batches BIGINT NOT NULL, done {boolean} NOT NULL,
            leased_by TEXT, lease_expires_ms BIGINT, updated_ms BIGINT, PRIMARY KEY (version, chunk));
        CREATE TABLE wasmig_history_started (version BIGINT PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL,
            direction TEXT NOT NULL, started_by TEXT NOT NULL, started_at {timestamp} NOT NULL DEFAULT {now});
        CREATE TABLE wasmig_history_audit (id {serial}, at {timestamp} NOT NULL DEFAULT {now},
            action TEXT NOT NULL, version BIGINT NOT NULL, migration TEXT NOT NULL, digest TEXT NOT NULL,
            signers TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, duration_ms BIGINT NOT NULL,
            actor TEXT NOT NULL, host TEXT NOT NULL, ci TEXT);"
    )
}

/// Whether the history table's `version` column holds text now.
async fn version_is_text(db: &TestDb, table: &str) -> bool {
    let sql = match db.backend {
        Backend::Postgres => format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = '{table}' \
             AND column_name = 'version' AND data_type = 'text'"
        ),
        Backend::Sqlite => {
            format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = 'version' AND type = 'TEXT'")
        }
    };
    db.inspect().await.count(&sql).await == 1
}

async fn an_integer_keyed_ledger_is_read_then_converted(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_accounts", "CREATE TABLE accounts (id BIGINT);", Some("DROP TABLE accounts;"), None).sql(
        "0002_orders",
        "CREATE TABLE orders (id BIGINT);",
        Some("DROP TABLE orders;"),
        None,
    );
    let migrator = project.migrator(&db).await;
    let inspect = db.inspect().await;
    // What an earlier wasmig left: the ledger with integer versions, 0001 applied and audited.
    inspect.execute(&integer_ledger(backend)).await;
    inspect.execute("CREATE TABLE accounts (id BIGINT)").await;
    let digest = migrator.catalog().migrations[0].digest;
    inspect
        .execute(&format!(
            "INSERT INTO wasmig_history (version, name, kind, digest, applied_by, duration_ms) \
             VALUES (1, 'accounts', 'sql', '{digest}', 'ops', 3);
             INSERT INTO wasmig_history_audit (action, version, migration, digest, signers, outcome, detail, \
             duration_ms, actor, host) VALUES ('up', 1, '0001_accounts', '{digest}', '', 'applied', '', 3, 'ops', 'h');"
        ))
        .await;

    // A read-only command reads it as it is, and changes nothing.
    assert_eq!(
        listed(&status_json(&project, &db)),
        [("1".to_owned(), "applied".to_owned()), ("2".to_owned(), "pending".to_owned())]
    );
    assert!(!version_is_text(&db, "wasmig_history").await);

    let report = migrator.up(None).await.expect("up on the earlier ledger");
    assert_eq!(report.steps.iter().map(|s| s.version).collect::<Vec<_>>(), [Version(2)]);
    for table in [
        "wasmig_history",
        "wasmig_history_repairs",
        "wasmig_history_backfill",
        "wasmig_history_backfill_chunks",
        "wasmig_history_started",
        "wasmig_history_audit",
    ] {
        assert!(version_is_text(&db, table).await, "{table}.version converted to text");
    }
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history WHERE version IN ('1', '2')").await, 2);
    let audit = migrator.audit().await.expect("the audit trail");
    assert_eq!(audit.first().map(|entry| (entry.version, entry.actor.as_str())), Some((Version(1), "ops")));
    assert_eq!(audit.len(), 2, "the earlier row kept, this run's appended");
    // The audit's numbering carried on past the copied rows.
    assert_eq!(inspect.count("SELECT count(DISTINCT id) FROM wasmig_history_audit").await, 2);

    migrator.down(DownTarget::To(Version(0))).await.expect("down on the converted ledger");
    assert!(!inspect.table_exists("accounts").await && !inspect.table_exists("orders").await);
}
on_both_backends!(an_integer_keyed_ledger, an_integer_keyed_ledger_is_read_then_converted);
