//! The `wasmig` binary: bad input gets a clear error naming the file, migration or URL, and
//! the exit code documented in the README.

use std::process::{Command, Output};

use wasmig_tests::json::JsonRun;
use wasmig_tests::{Project, TestDb, users_migration, wasmig_binary};

fn wasmig(project: &Project, args: &[&str]) -> Output {
    Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(args)
        .env_remove("DATABASE_URL")
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-cli-test-cache"))
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
    let output = wasmig(&project, &["status", "--database", "postgres://deploy:hunter2@127.0.0.1:9/app"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{text}");
    assert!(text.contains("postgres://deploy@127.0.0.1:9/app"), "{text}");
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

/// Every numeric setting has a range; a value outside it is a project error naming the file,
/// the key and the range, never an overflow or a hang.
#[test]
fn out_of_range_settings_exit_3_naming_the_key_and_range() {
    let huge = u64::MAX;
    for (file, text, key) in [
        ("wasmig.toml", format!("[limits]\ntimeout_secs = {huge}\n"), "limits.timeout_secs"),
        ("wasmig.toml", "[limits]\nhostcall_mib = 0\n".to_owned(), "limits.hostcall_mib"),
        ("wasmig.toml", format!("[backfill]\npause_ms = {huge}\n"), "backfill.pause_ms"),
        ("wasmig.toml", "[backfill]\nworkers = 500\n".to_owned(), "backfill.workers"),
        ("wasmig.toml", format!("[database]\nconnect_timeout_secs = {huge}\n"), "database.connect_timeout_secs"),
        ("wasmig.toml", format!("[lock]\ntimeout_secs = {huge}\n"), "lock.timeout_secs"),
        (
            "0001_c/migration.toml",
            format!("kind = \"component\"\n[limits]\nfuel = 0\ntimeout_secs = {huge}\n"),
            "limits.fuel",
        ),
        (
            "0001_c/migration.toml",
            format!("kind = \"component\"\n[backfill]\nbatch_size = 2000000\npause_ms = {huge}\n"),
            "backfill.batch_size",
        ),
    ] {
        let project = Project::new();
        project.write("0001_c/migration.wasm", "");
        project.write(file, &text);
        let output = wasmig(&project, &["up", "--database", "sqlite::memory:"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{file} {text}: {message}");
        assert!(message.contains(file) && message.contains(key) && message.contains("out of range"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn malformed_manifest_exits_3_naming_it() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.write("0001_broken/migration.toml", "kind = \"component\"\nbatch = 5\n");
    let output = wasmig(&project, &["up", "--database", &db.url]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("0001_broken/migration.toml") && text.contains("batch"), "{text}");
}

/// A component that floods `log`, stdout and stderr still succeeds, and what reaches the
/// deploy's log is capped per call, with a line saying so.
#[test]
fn a_component_flooding_the_log_is_capped_and_not_broken() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.component("0001_flood", "hostile-log", "[limits]\nfuel = 100000000000\ntimeout_secs = 120\n");
    let output = wasmig(&project, &["up", "--database", &db.url]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{}", &log[log.len().saturating_sub(2000)..]);
    assert!(log.len() < 2 * 1024 * 1024, "the log grew to {} bytes", log.len());
    assert!(log.contains("log cap") && log.contains("were dropped"), "{}", &log[log.len().saturating_sub(2000)..]);
    assert!(!log.contains("flood done"), "messages past the cap are dropped");
    assert!(log.contains("printed") && log.contains("they were dropped"), "the dropped output is reported");
}

#[test]
fn unknown_file_exits_3_naming_it() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), None, None);
    project.write("0001_users/notes.md", "remember to index");
    let output = wasmig(&project, &["up", "--database", &db.url]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("0001_users/notes.md"));
}

#[test]
fn up_status_history_and_integrity_exit_codes() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql("0001_users", &users_migration(3), Some("DROP TABLE users;"), None);
    let dry = wasmig(&project, &["up", "--database", &db.url, "--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would apply 0001_users"));

    let up = wasmig(&project, &["up", "--database", &db.url]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    assert!(String::from_utf8_lossy(&up.stdout).contains("applied 0001_users"));

    let status = wasmig(&project, &["status", "--database", &db.url]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("applied"), "{status:?}");
    let history = wasmig(&project, &["history", "--database", &db.url]);
    assert!(String::from_utf8_lossy(&history.stdout).contains("blake3:"), "{history:?}");

    project.write("0001_users/up.sql", "-- changed after it was applied");
    let changed = wasmig(&project, &["up", "--database", &db.url]);
    assert_eq!(changed.status.code(), Some(6), "{}", stderr(&changed));
}

#[test]
fn trapping_component_exits_8_and_failing_migration_exits_7() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.component("0001_loop", "hostile-loop", "[limits]\nfuel = 20000000\n[grants]\nddl = [\"loop_marker\"]\n");
    let output = wasmig(&project, &["up", "--database", &db.url]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(8), "{text}");
    assert!(text.contains("0001_loop") && text.contains("fuel"), "{text}");
    assert!(text.contains("nothing was committed"), "{text}");

    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql("0001_bad", "CREATE TABLE t (id INTEGER);\nSELECT * FROM missing_table;", None, None);
    let output = wasmig(&project, &["up", "--database", &db.url]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
}

fn wasmig_with_env(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(wasmig_binary());
    command.args(args).env("WASMIG_PROJECT", project.path()).env_remove("DATABASE_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run wasmig")
}

#[test]
fn keygen_hash_sign_and_verify_artifacts_never_show_the_secret() {
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), None, None);
    let keys = tempfile::tempdir().expect("temporary folder");
    let secret_path = keys.path().join("ci.key");
    let secret_arg = secret_path.to_string_lossy().into_owned();

    let keygen = wasmig(&project, &["keygen", "--out", &secret_arg]);
    assert_eq!(keygen.status.code(), Some(0), "{}", stderr(&keygen));
    let secret = std::fs::read_to_string(&secret_path).expect("secret key written");
    let secret_line = secret.lines().nth(1).expect("the key line").to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key is private to its owner");
    }
    let public = std::fs::read_to_string(format!("{secret_arg}.pub")).expect("public key written");
    let public_line = public.lines().nth(1).expect("the key line");
    project.write(
        "wasmig.toml",
        &format!("[trust]\nrequire_signatures = true\n[[trust.keys]]\nname = \"ci\"\npublic_key = \"{public_line}\"\n"),
    );

    let unsigned = wasmig(&project, &["verify-artifacts"]);
    assert_eq!(unsigned.status.code(), Some(9), "no sum file yet: {}", stderr(&unsigned));
    assert_eq!(wasmig(&project, &["hash"]).status.code(), Some(0));

    let sign = wasmig_with_env(&project, &["sign", "--key-env", "TEST_SIGNING_KEY"], &[("TEST_SIGNING_KEY", &secret)]);
    assert_eq!(sign.status.code(), Some(0), "{}", stderr(&sign));
    let verified = wasmig(&project, &["verify-artifacts", "--format", "json"]);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    let report = JsonRun::parse(&verified.stdout).result.data;
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["signers"], serde_json::json!(["ci"]));

    project.write("0001_users/up.sql", "DROP TABLE IF EXISTS users;");
    let tampered = wasmig(&project, &["verify-artifacts", "--format", "json"]);
    assert_eq!(tampered.status.code(), Some(9));
    let tampered_run = JsonRun::parse(&tampered.stdout);
    assert_eq!((tampered_run.result.exit_code, tampered_run.result.exit.as_str()), (9, "trust"));
    let report = tampered_run.result.data;
    assert_eq!(report["problems"][0]["problem"], "digest-mismatch");
    assert_eq!(report["problems"][0]["folder"], "0001_users");
    // A change that leaves a file unparseable is still reported as a change, with exit 9.
    project.write_bytes("0001_users/up.sql", b"DROP TABLE \xff users;");
    let unparseable = wasmig(&project, &["verify-artifacts", "--format", "json"]);
    assert_eq!(unparseable.status.code(), Some(9), "{}", stderr(&unparseable));
    let report = JsonRun::parse(&unparseable.stdout).result.data;
    assert_eq!(report["problems"][0]["problem"], "digest-mismatch");
    let up = wasmig(&project, &["up"]);
    assert_eq!(up.status.code(), Some(9), "{}", stderr(&up));

    for output in [&keygen, &unsigned, &sign, &verified, &tampered] {
        let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr(output));
        assert!(!all.contains(&secret_line), "the secret key was printed");
    }
}

#[test]
fn a_trust_file_outside_the_checkout_replaces_the_projects_policy() {
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), None, None);
    assert_eq!(wasmig(&project, &["hash"]).status.code(), Some(0));
    assert_eq!(wasmig(&project, &["verify-artifacts"]).status.code(), Some(0), "the project requires nothing");
    let policy = tempfile::NamedTempFile::new().expect("temporary file");
    std::fs::write(policy.path(), "[trust]\nrequire_signatures = true\n[[trust.keys]]\nname = \"prod\"\npublic_key = \"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"\n")
        .expect("write policy");
    let policy_arg = policy.path().to_string_lossy().into_owned();
    let output = wasmig(&project, &["verify-artifacts", "--trust-file", &policy_arg]);
    assert_eq!(output.status.code(), Some(9), "production's policy requires a signature: {}", stderr(&output));
}

/// `backfill status VERSION` for a version the project lacks, or one without a backfill, is a
/// project error (3) that says which.
#[test]
fn backfill_status_of_an_unknown_or_plain_migration_exits_3() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.sql("0001_users", &users_migration(1), None, None);
    let up = wasmig(&project, &["up", "--database", &db.url]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let unknown = wasmig(&project, &["backfill", "status", "9", "--database", &db.url]);
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("there is no migration 0009"), "{}", stderr(&unknown));
    let plain = wasmig(&project, &["backfill", "status", "1", "--database", &db.url]);
    assert_eq!(plain.status.code(), Some(3), "{}", stderr(&plain));
    assert!(stderr(&plain).contains("0001_users has no [backfill]"), "{}", stderr(&plain));
    assert_eq!(stderr(&plain).matches("error:").count(), 1, "said once: {}", stderr(&plain));
}
