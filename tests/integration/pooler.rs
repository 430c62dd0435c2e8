//! Through PgBouncer in transaction pooling mode (scripts/pgbouncer.sh: 127.0.0.1:6434, four
//! server connections per pool), with `[database] pooler = "transaction"`: concurrent runs
//! apply each migration once under the table lock, a killed holder's lease runs out and its
//! successor takes over, and a backfill and the sandbox's walls work with nothing outliving a
//! transaction.

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmig::Error;
use wasmig::sandbox::SandboxError;
use wasmig_tests::{Backend, Project, TestDb, wasmig_binary};

const BOUNCER_PORT: u16 = 6434;

/// `db`'s URL through PgBouncer; fails with what to run when it does not answer.
fn through_bouncer(db: &TestDb) -> String {
    let answers = TcpStream::connect_timeout(&([127, 0, 0, 1], BOUNCER_PORT).into(), Duration::from_secs(2)).is_ok();
    assert!(answers, "these tests need PgBouncer on 127.0.0.1:{BOUNCER_PORT}: run scripts/pgbouncer.sh start");
    db.url.replace(":5432/", &format!(":{BOUNCER_PORT}/"))
}

const POOLED: &str = "[database]\npooler = \"transaction\"\n[lock]\nlease = \"2s\"\ntimeout_secs = 120\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_ups_through_pgbouncer_apply_each_migration_once() {
    let db = TestDb::postgres().await;
    let url = through_bouncer(&db);
    let project = Project::new();
    project.write("wasmig.toml", POOLED);
    // Applied twice, 0001's CREATE TABLE would fail and the others would log twice.
    project.sql("0001_log", "CREATE TABLE applied (version integer); INSERT INTO applied VALUES (1);", None, None);
    for version in 2..=5 {
        project.sql(
            &format!("000{version}_step"),
            &format!("SELECT pg_sleep(0.1); INSERT INTO applied VALUES ({version});"),
            None,
            None,
        );
    }
    let runs: Vec<_> = (0..8)
        .map(|_| {
            Command::new(wasmig_binary())
                .env("WASMIG_PROJECT", project.path())
                .args(["up", "--database", &url])
                .env("XDG_CACHE_HOME", project.path().join("..").join("pooler-cache"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start wasmig")
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().expect("wasmig ends");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM applied").await, 5);
    assert_eq!(inspect.count("SELECT count(DISTINCT version) FROM applied").await, 5);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history").await, 5);
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history_lock").await, 0, "the lock was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_loses_the_lock_when_its_lease_ends() {
    let db = TestDb::postgres().await;
    let url = through_bouncer(&db);
    let project = Project::new();
    project.write("wasmig.toml", POOLED);
    project.sql("0001_slow", "SELECT pg_sleep(2); CREATE TABLE slow (id integer);", None, None);
    let mut holder = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(["up", "--database", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the first run");
    let inspect = db.inspect().await;
    let mut held = false;
    for _ in 0..200 {
        if inspect.table_exists("wasmig_history_lock").await
            && inspect.count("SELECT count(*) FROM wasmig_history_lock").await == 1
        {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(held, "the first run never took the lock");
    let holder_pid = holder.id();
    holder.kill().expect("kill -9 the holder");
    let _ = holder.wait();
    let successor = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(["up", "--database", &url])
        .output()
        .expect("run the successor");
    let log = String::from_utf8_lossy(&successor.stderr);
    assert!(successor.status.success(), "{log}");
    assert!(log.contains(&format!("held by wasmig/{holder_pid}/")) && log.contains("lease ending in"), "{log}");
    assert_eq!(inspect.count("SELECT count(*) FROM wasmig_history WHERE version = '1'").await, 1);
    assert!(inspect.table_exists("slow").await);
}

/// The walls are `SET LOCAL`s inside the component's transaction, so they hold on whichever
/// server connection runs it; a refused statement stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walls_and_the_guard_hold_through_the_pooler() {
    let db = TestDb::postgres().await;
    let pooled = TestDb::existing(Backend::Postgres, &through_bouncer(&db));
    // `lower(1)` resolves to the trap under an ordinary search_path; the walls pin it to
    // pg_catalog, which has no lower(integer).
    let statements = ["SELECT count(*)::text FROM probe", "SET search_path = public", "SELECT lower(1)"];
    let trap = "CREATE SEQUENCE trap_springs;
        CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE plpgsql
            AS $$ BEGIN PERFORM nextval('public.trap_springs'); RETURN 'trap sprang'; END $$;";
    let rows: Vec<String> =
        statements.iter().map(|s| format!("INSERT INTO probe (phase, statement) VALUES ('up', $q${s}$q$);")).collect();
    let project = Project::new();
    project.write("wasmig.toml", POOLED);
    project
        .sql(
            "0001_setup",
            &format!(
                "{trap}\nCREATE TABLE probe (id SERIAL PRIMARY KEY, phase TEXT NOT NULL, statement TEXT NOT NULL);\n{}",
                rows.join("\n")
            ),
            None,
            None,
        )
        .component("0002_probe", "statement-probe", "[grants]\nread = [\"probe\"]\n");
    let failure = project.migrator(&pooled).await.up(None).await.expect_err("the probe reports and fails");
    let Error::Sandbox(SandboxError::Guest { message, .. }) = &failure.error else {
        panic!("expected the probe's report, got {failure}");
    };
    let outcomes: HashMap<&str, &str> = message.lines().filter_map(|line| line.split_once('\t')).collect();
    let outcome =
        |statement: &str| *outcomes.get(statement).unwrap_or_else(|| panic!("no outcome for {statement}: {message}"));
    assert!(outcome(statements[0]).starts_with("ok"), "{}", outcome(statements[0]));
    assert!(!outcome(statements[1]).starts_with("ok"), "SET is refused: {}", outcome(statements[1]));
    assert!(!outcome(statements[2]).contains("trap sprang"), "{}", outcome(statements[2]));
    let inspect = db.inspect().await;
    let springs = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM trap_springs";
    assert_eq!(inspect.count(springs).await, 0, "the trap was reached: {}", outcome(statements[2]));
    // Positive control: outside the sandbox, the same text does reach it.
    inspect.execute("SELECT lower(1)").await;
    assert_eq!(inspect.count(springs).await, 1, "the trap is real");
}

/// A chunked backfill through the pooler: every row once, its batches' statements prepared in
/// their own transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_runs_through_the_pooler() {
    let db = TestDb::postgres().await;
    let pooled = TestDb::existing(Backend::Postgres, &through_bouncer(&db));
    let project = Project::new();
    project.write("wasmig.toml", &format!("{POOLED}[backfill]\nlease_secs = 5\n"));
    project
        .sql(
            "0001_items",
            "CREATE TABLE items (id BIGINT PRIMARY KEY, email TEXT NOT NULL, email_lower TEXT,
                                 visits INTEGER NOT NULL DEFAULT 0, spin BIGINT NOT NULL DEFAULT 0);
             INSERT INTO items (id, email) SELECT n, 'Item' || n || '@Example.COM' FROM generate_series(1, 3000) n;",
            None,
            None,
        )
        .component(
            "0002_visit_items",
            "visit-backfill",
            "[backfill]\nbatch_size = 100\ntable = \"items\"\nkey = \"id\"\nchunk_rows = 1000\nworkers = 2\n\
             [grants]\nread = [\"items\"]\nupdate = [\"items\"]\n",
        );
    project.migrator(&pooled).await.up(None).await.expect("the backfill completes through the pooler");
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits = 1 AND email_lower = lower(email)").await, 3000);
    assert_eq!(inspect.count("SELECT count(*) FROM items WHERE visits <> 1").await, 0);
}
