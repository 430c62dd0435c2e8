//! The audit trail and `stamp`: every up, down, stamp, repair and backfill run appends who,
//! when, what and the outcome, including a failed step; `down` never erases it; `stamp`
//! baselines a database that already has the schema.

use std::process::{Command, Output};

use wasmig_tests::json::JsonRun;
use wasmig_tests::{Backend, Project, TestDb, wasmig_binary};

use crate::backfills::items_project;
use crate::on_both_backends;

fn wasmig(project: &Project, db: &TestDb, args: &[&str]) -> Output {
    Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-audit-test-cache"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ACTOR", "octocat")
        .env("GITHUB_WORKFLOW", "deploy")
        .env("GITHUB_RUN_ID", "4242")
        .args(args)
        .output()
        .expect("run wasmig")
}

fn json(project: &Project, db: &TestDb, args: &[&str]) -> JsonRun {
    JsonRun::parse(&wasmig(project, db, &[args, &["--format", "json"]].concat()).stdout)
}

async fn every_act_is_audited_and_down_keeps_the_trail(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_a", "CREATE TABLE a (id INTEGER);", Some("DROP TABLE a;"), None);
    project.sql("0002_b", "CREATE TABLE b (id INTEGER);", Some("DROP TABLE b;"), None);
    project.sql("0003_broken", "SELECT * FROM no_such_table;", None, None);
    let inspect = db.inspect().await;
    inspect.execute("CREATE TABLE a (id INTEGER)").await;

    let stamp = json(&project, &db, &["stamp", "1", "--reason", "made by hand before wasmig"]);
    assert_eq!(stamp.result.exit_code, 0, "{:?}", stamp.result.error);
    assert_eq!(stamp.result.committed.iter().map(|s| s.action.as_str()).collect::<Vec<_>>(), ["stamped"]);
    let history = json(&project, &db, &["history"]);
    let applied_by = history.result.data["applied"][0]["applied_by"].as_str().unwrap_or_default().to_owned();
    assert!(applied_by.ends_with("(stamped)"), "{applied_by}");
    assert_eq!(json(&project, &db, &["stamp", "1", "--reason", "again"]).result.committed.len(), 0);
    assert_eq!(json(&project, &db, &["stamp", "9", "--reason", "x"]).result.exit_code, 3, "no such migration");

    assert_eq!(json(&project, &db, &["up"]).result.exit_code, 7, "0003 fails after 0002 applies");
    assert_eq!(json(&project, &db, &["down", "--to", "0"]).result.exit_code, 0);
    assert!(!inspect.table_exists("a").await, "the stamped migration's down ran");

    let audit = json(&project, &db, &["history", "--audit"]);
    assert_eq!(audit.result.exit_code, 0, "{:?}", audit.result.error);
    let entries = audit.result.data["audit"].as_array().expect("the audit rows").clone();
    let acts: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| (e["action"].to_string(), e["migration"].to_string(), e["outcome"].to_string()))
        .map(|(a, m, o)| {
            (a.trim_matches('"').to_owned(), m.trim_matches('"').to_owned(), o.trim_matches('"').to_owned())
        })
        .collect();
    let expected = [
        ("stamped", "0001_a", "ok"),
        ("applied", "0002_b", "ok"),
        ("failed", "0003_broken", "failed"),
        ("reverted", "0002_b", "ok"),
        ("reverted", "0001_a", "ok"),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, m, o)| ((*a).to_owned(), (*m).to_owned(), (*o).to_owned())).collect();
    assert_eq!(acts, expected, "every act, in order, kept after down");
    assert!(entries[0]["detail"].as_str().is_some_and(|d| d.contains("made by hand")), "{entries:?}");
    assert!(entries[2]["detail"].as_str().is_some_and(|d| d.contains("no_such_table")), "{entries:?}");
    assert_eq!(
        entries[1]["ci"],
        serde_json::json!({"system": "github-actions", "actor": "octocat", "workflow": "deploy", "run_id": "4242"})
    );
    assert!(entries.iter().all(|e| e["digest"].as_str().is_some_and(|d| d.starts_with("blake3:"))));
    assert!(entries.iter().all(|e| e["at"].as_str().is_some_and(|at| at.contains('T'))), "RFC 3339: {entries:?}");
    let human = wasmig(&project, &db, &["history", "--audit"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("failed FAILED 0003_broken") && text.contains("CI github-actions (octocat"), "{text}");
}
on_both_backends!(audit_trail, every_act_is_audited_and_down_keeps_the_trail);

/// A stamped migration with a backfill counts as done, so the gate passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamped_backfill_counts_as_done() {
    let db = TestDb::sqlite();
    let project = items_project(10, 0, "batch_size = 5", 2_000_000_000);
    let stamp = json(&project, &db, &["stamp", "2", "--reason", "moved from another tool"]);
    assert_eq!(stamp.result.committed.len(), 2, "{:?}", stamp.result.error);
    let check = json(&project, &db, &["check", "--fail-on-pending"]);
    assert_eq!((check.result.exit_code, check.result.data["problems"].clone()), (0, serde_json::json!([])));
    let backfills = json(&project, &db, &["backfill", "status"]);
    assert_eq!(backfills.result.data["backfills"][0]["state"], "done");
}
