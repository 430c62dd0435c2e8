//! `wasmig repair` as a reviewed change: a migration whose files changed after it was applied
//! (here, the down.sql someone forgot) shows what changed since, file by file, with the digest
//! to accept; accepting it records the diff in the audit trail, and the next diff starts from
//! the accepted files.

use wasmig_tests::{Backend, Project, TestDb, wasmig_json};

use crate::on_both_backends;

async fn a_forgotten_down_is_repaired_after_its_diff(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_items", "CREATE TABLE items (id BIGINT PRIMARY KEY);", None, None);
    assert_eq!(wasmig_json(&project, &db, &["up"]).result.exit, "ok");
    project.write("0001_items/down.sql", "DROP TABLE items;\n");
    assert_eq!(wasmig_json(&project, &db, &["check"]).result.exit, "integrity", "an applied migration changed");

    let shown = wasmig_json(&project, &db, &["repair", "1", "--diff"]);
    assert_eq!(shown.result.exit, "ok", "{:?}", shown.result.error);
    let diff = &shown.result.data["diff"];
    assert_eq!(diff["migration"], "0001_items");
    let changes = diff["changes"].as_array().expect("the files as applied were kept");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!((changes[0]["file"].as_str(), changes[0]["change"].as_str()), (Some("down.sql"), Some("added")));
    let text = changes[0]["diff"].as_str().expect("a unified diff");
    assert!(text.contains("+++ now/down.sql") && text.contains("+DROP TABLE items;"), "{text}");
    let digest = diff["digest"].as_str().expect("the digest to accept").to_owned();
    assert_ne!(diff["recorded_digest"].as_str(), Some(digest.as_str()));
    assert_eq!(wasmig_json(&project, &db, &["check"]).result.exit, "integrity", "--diff records nothing");

    let accepted =
        wasmig_json(&project, &db, &["repair", "1", "--accept-digest", &digest, "--reason", "down.sql was forgotten"]);
    assert_eq!(accepted.result.exit, "ok", "{:?}", accepted.result.error);
    assert_eq!(accepted.result.data["diff"]["changes"][0]["file"], "down.sql");
    assert_eq!(wasmig_json(&project, &db, &["check"]).result.exit, "ok");
    let audit = wasmig_json(&project, &db, &["history", "--audit"]);
    let rows = audit.result.data["audit"].as_array().expect("the audit rows").clone();
    let repaired = rows.iter().find(|row| row["action"] == "repaired").expect("the repair in the audit trail");
    let detail = repaired["detail"].as_str().expect("detail");
    assert!(detail.contains("down.sql was forgotten") && detail.contains("+DROP TABLE items;"), "{detail}");

    // The accepted files are the new baseline.
    let again = wasmig_json(&project, &db, &["repair", "1", "--diff"]);
    assert_eq!(again.result.data["diff"]["changes"].as_array().map(Vec::len), Some(0));
    assert_eq!(wasmig_json(&project, &db, &["down", "--to", "0"]).result.exit, "ok", "the repaired down runs");
    assert!(!db.inspect().await.table_exists("items").await);
}
on_both_backends!(a_forgotten_down, a_forgotten_down_is_repaired_after_its_diff);
