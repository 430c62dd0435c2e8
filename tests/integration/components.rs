//! Component migrations: the SDK examples end to end, and hostile or broken components, each
//! refused with an error naming what failed while the database stays as it was.

use wasmig::Limit;
use wasmig::sandbox::SandboxError;
use wasmig::{DownTarget, Error, ErrorKind, Version};
use wasmig_tests::{Backend, Project, TestDb, users_migration};

use crate::on_both_backends;

fn demo_project(users: u32, batch_size: u32) -> Project {
    let project = Project::new();
    project
        .sql("0001_users", &users_migration(users), Some("DROP TABLE users;"), None)
        .component("0002_add_email_domain", "add-email-domain", "[grants]\nddl = [\"users\"]\nread = [\"users\"]\n")
        .component(
            "0003_backfill_email_domain",
            "backfill-email-domain",
            &format!("[backfill]\nbatch_size = {batch_size}\n[grants]\nread = [\"users\"]\nupdate = [\"users\"]\n"),
        );
    project
}

async fn schema_change_and_backfill(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = demo_project(1050, 100);
    let migrator = project.migrator(&db).await;
    let report = migrator.up(None).await.expect("up");
    let backfill = report.steps.iter().find_map(|s| s.backfill).expect("the backfill ran");
    assert_eq!(backfill, (1050, 11), "1050 rows in 11 batches of 100");

    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM users WHERE email_domain = 'example.com'").await, 1050);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill WHERE state = 'done'").await, 1);

    migrator.verify().await.expect("verify again, read-only");
    migrator.down(DownTarget::To(Version(1))).await.expect("down the two component migrations");
    let columns = match backend {
        Backend::Postgres => {
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email_domain'"
        }
        Backend::Sqlite => "SELECT count(*) FROM pragma_table_info('users') WHERE name = 'email_domain'",
    };
    assert_eq!(inspect.count(columns).await, 0, "the component's down dropped the column");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill").await, 0);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_backfill_chunks").await, 0);
}
on_both_backends!(component_schema_change_and_backfill, schema_change_and_backfill);

async fn interrupted_backfill_resumes_where_it_stopped(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = demo_project(500, 100);
    let migrator = project.migrator(&db).await;
    migrator.up(None).await.expect("up");
    let inspect = db.inspect().await;
    // Rewind as if the run died after the third batch committed: cursor at id 300.
    inspect.execute("UPDATE users SET email_domain = NULL WHERE id > 300").await;
    inspect
        .execute(
            "UPDATE wasmig_history_backfill_chunks SET cursor = '300', rows_done = 300, batches = 3, done = FALSE, leased_by = NULL;
             UPDATE wasmig_history_backfill SET state = 'running', finished_ms = NULL;",
        )
        .await;
    let report = project.migrator(&db).await.up(None).await.expect("up resumes the backfill");
    let backfill = report.steps.iter().find_map(|s| s.backfill).expect("the backfill resumed");
    // Two full batches after the cursor, then an empty one that tells the guest it is done.
    assert_eq!(backfill, (200, 3), "only the 200 rows after the cursor are processed again");
    assert_eq!(inspect.count("SELECT count(*) FROM users WHERE email_domain IS NULL").await, 0);
    assert_eq!(inspect.count("SELECT rows_done FROM wasmig_history_backfill_chunks").await, 500);
}
on_both_backends!(backfill_resume, interrupted_backfill_resumes_where_it_stopped);

/// Applies `plugin` as migration 0002 after a users table, expects it to fail, and checks that
/// only 0001 is applied and `marker` was rolled back.
async fn expect_refused(backend: Backend, plugin: &str, marker: &str, manifest_extra: &str) -> Error {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    let manifest = format!("{manifest_extra}\n[grants]\nddl = [\"{marker}\"]\nread = [\"{marker}\"]\n");
    project.sql("0001_users", &users_migration(2), None, None).component("0002_hostile", plugin, &manifest);
    let failure = project.migrator(&db).await.up(None).await.expect_err("the hostile component must fail");
    assert_eq!(failure.done.steps.len(), 1, "0001 committed, 0002 did not: {failure}");
    let inspect = db.inspect().await;
    assert!(!inspect.table_exists(marker).await, "{marker} was rolled back");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM users").await, 2);
    failure.error
}

async fn infinite_loop_is_stopped_by_fuel(backend: Backend) {
    let error = expect_refused(backend, "hostile-loop", "loop_marker", "[limits]\nfuel = 50000000\n").await;
    assert_eq!(error.kind(), ErrorKind::Sandbox);
    assert!(
        matches!(&error, Error::Sandbox(SandboxError::Trap { limit: Some(Limit::Fuel(50_000_000)), .. })),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("0002_hostile") && message.contains("limits.fuel"), "{message}");
}
on_both_backends!(hostile_loop, infinite_loop_is_stopped_by_fuel);

async fn infinite_loop_is_stopped_by_the_deadline(backend: Backend) {
    // Fuel high enough to run for minutes: the one-second wall-clock deadline must fire first.
    let error =
        expect_refused(backend, "hostile-loop", "loop_marker", "[limits]\nfuel = 1000000000000\ntimeout_secs = 1\n")
            .await;
    assert!(matches!(&error, Error::Sandbox(SandboxError::Trap { limit: Some(Limit::Deadline(_)), .. })), "{error}");
    assert!(error.to_string().contains("limits.timeout_secs"), "{error}");
}
on_both_backends!(hostile_loop_deadline, infinite_loop_is_stopped_by_the_deadline);

async fn panic_is_reported_with_its_message(backend: Backend) {
    let error = expect_refused(backend, "hostile-panic", "panic_marker", "").await;
    assert!(matches!(&error, Error::Sandbox(SandboxError::Trap { limit: None, .. })), "{error}");
    let message = error.to_string();
    assert!(message.contains("deliberate panic after creating panic_marker"), "{message}");
}
on_both_backends!(hostile_panic, panic_is_reported_with_its_message);

async fn unbounded_allocation_hits_the_memory_cap(backend: Backend) {
    let error = expect_refused(backend, "hostile-memory", "memory_marker", "[limits]\nmemory_mib = 48\n").await;
    assert!(matches!(&error, Error::Sandbox(SandboxError::Trap { limit: Some(Limit::Memory(_)), .. })), "{error}");
    assert!(error.to_string().contains("limits.memory_mib"), "{error}");
}
on_both_backends!(hostile_memory, unbounded_allocation_hits_the_memory_cap);

async fn network_import_is_refused_before_instantiation(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.component("0001_network", "hostile-network", "");
    let failure = project.migrator(&db).await.up(None).await.expect_err("sockets are not allowed");
    let message = failure.to_string();
    assert!(
        matches!(&failure.error, Error::Sandbox(SandboxError::ImportRefused { import, .. }) if import.starts_with("wasi:sockets/")),
        "{message}"
    );
    assert!(message.contains("0001_network/migration.wasm"), "{message}");
}
on_both_backends!(hostile_network, network_import_is_refused_before_instantiation);

async fn failing_component_verify_rolls_back(backend: Backend) {
    let error = expect_refused(backend, "failing-verify", "verify_marker", "").await;
    assert_eq!(error.kind(), ErrorKind::MigrationFailed, "a guest Err is the migration's failure, not a trap");
    assert!(
        matches!(&error, Error::Sandbox(SandboxError::Guest { call, message, .. })
            if call == "verify" && message.contains("verify_marker must hold at least one row")),
        "{error}"
    );
}
on_both_backends!(component_verify_failure, failing_component_verify_rolls_back);

async fn wrong_world_is_refused_naming_the_file(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.component("0001_wrong", "wrong-world", "");
    let failure = project.migrator(&db).await.up(None).await.expect_err("not a migration component");
    assert!(matches!(failure.error, Error::Sandbox(SandboxError::WrongWorld { .. })), "{failure}");
    assert!(failure.to_string().contains("0001_wrong/migration.wasm"), "{failure}");
}
on_both_backends!(wrong_world, wrong_world_is_refused_naming_the_file);

async fn core_module_is_not_a_component(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    // The smallest valid core module: magic and version only.
    project.write_bytes("0001_core/migration.wasm", b"\0asm\x01\0\0\0");
    project.write("0001_core/migration.toml", "kind = \"component\"\n");
    let failure = project.migrator(&db).await.up(None).await.expect_err("a core module is not a component");
    assert!(matches!(failure.error, Error::Sandbox(SandboxError::NotAComponent { .. })), "{failure}");
    assert!(failure.to_string().contains("0001_core/migration.wasm"), "{failure}");
}
on_both_backends!(not_a_component, core_module_is_not_a_component);

/// A trap's report leads with its cause and the limit; wasmtime's wasm backtrace is left to `-v`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_reports_lead_with_the_cause_not_the_backtrace() {
    for (plugin, marker, extra) in
        [("hostile-panic", "panic_marker", ""), ("hostile-loop", "loop_marker", "[limits]\nfuel = 50000000\n")]
    {
        let error = expect_refused(Backend::Sqlite, plugin, marker, extra).await;
        let Error::Sandbox(SandboxError::Trap { message, .. }) = &error else { panic!("not a trap: {error}") };
        assert!(!message.contains("backtrace"), "{plugin}: {message}");
        assert!(message.starts_with("wasm trap: "), "{plugin}: {message}");
        let first_line = error.to_string().lines().next().unwrap_or_default().to_owned();
        assert!(first_line.contains("trapped") && !first_line.contains("backtrace"), "{plugin}: {first_line}");
    }
}

/// An import with an allowed name but other types than the interface of that name is refused
/// before instantiation, naming the import, not as a component of the wrong world.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_wasi_import_is_refused_naming_it() {
    let db = TestDb::sqlite();
    let project = Project::new();
    project.component("0001_spoofed", "spoofed-wasi", "");
    let failure = project.migrator(&db).await.up(None).await.expect_err("a spoofed import is refused");
    let message = failure.to_string();
    assert!(
        matches!(&failure.error, Error::Sandbox(SandboxError::ImportMismatch { import, .. }) if import.starts_with("wasi:cli/environment")),
        "{message}"
    );
    assert!(message.contains("0001_spoofed/migration.wasm") && message.contains("exfiltrate"), "{message}");
}
