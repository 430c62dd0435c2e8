//! The sandbox's walls against a database that holds traps (invariant 9): functions and
//! operators a database owner created outside `pg_catalog`, views and foreign keys that a
//! CASCADE would reach, temporary tables that would shadow real ones, row locks in a read-only
//! phase, and SQLite's internal tables and conflict clauses. Each statement runs from a real
//! component (`plugins/statement-probe`) in the phase the case names.

use std::collections::HashMap;

use wasmig::Error;
use wasmig::sandbox::SandboxError;
use wasmig_tests::{Backend, Inspector, Project, TestDb};

/// Every trap counts its springing in a sequence, which a rollback does not undo.
const POSTGRES_TRAPS: &str = r#"
    CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL);
    INSERT INTO users VALUES (1, 'A@Example.com'), (2, 'b@example.com');
    CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users (id));
    INSERT INTO orders VALUES (10, 1);
    CREATE VIEW user_emails AS SELECT email FROM users;
    CREATE SEQUENCE trap_springs;
    CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE plpgsql SECURITY DEFINER
        AS $$ BEGIN PERFORM nextval('public.trap_springs'); RETURN 'trap sprang'; END $$;
    CREATE FUNCTION public."LOWER"(text) RETURNS text LANGUAGE plpgsql SECURITY DEFINER
        AS $$ BEGIN PERFORM nextval('public.trap_springs'); RETURN 'trap sprang'; END $$;
    CREATE FUNCTION public.length(bigint) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
        AS $$ BEGIN PERFORM nextval('public.trap_springs'); RETURN -1; END $$;
    CREATE FUNCTION public.trap_op(integer, integer) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
        AS $$ BEGIN PERFORM nextval('public.trap_springs'); RETURN true; END $$;
    CREATE OPERATOR public.### (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.trap_op);
    CREATE FUNCTION public.trap_eq(bigint, integer) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
        AS $$ BEGIN PERFORM nextval('public.trap_springs'); RETURN true; END $$;
    CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.trap_eq);
    CREATE TABLE probe (id SERIAL PRIMARY KEY, phase TEXT NOT NULL, statement TEXT NOT NULL);
"#;

const GRANTS: &str = "[grants]\nread = [\"probe\", \"users\", \"orders\"]\nupdate = [\"users\"]\ninsert = [\"users\", \"replaced\"]\nddl = [\"users\", \"orders\"]\n";

/// Runs `statements` in `phase` from the probe component after `setup`; returns each
/// statement's outcome as the component reported it.
async fn probe(db: &TestDb, setup: &str, phase: &str, statements: &[&str]) -> HashMap<String, String> {
    let rows: Vec<String> = statements
        .iter()
        .map(|s| format!("INSERT INTO probe (phase, statement) VALUES ('{phase}', $q${s}$q$);"))
        .collect();
    let rows = match db.backend {
        Backend::Postgres => rows.join("\n"),
        // SQLite has no dollar quotes: the statements are written as plain literals there.
        Backend::Sqlite => statements
            .iter()
            .map(|s| format!("INSERT INTO probe (phase, statement) VALUES ('{phase}', '{}');", s.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let project = Project::new();
    project.sql("0001_setup", &format!("{setup}\n{rows}"), None, None).component(
        "0002_probe",
        "statement-probe",
        GRANTS,
    );
    let failure = project.migrator(db).await.up(None).await.expect_err("the probe reports and fails");
    let Error::Sandbox(SandboxError::Guest { message, .. }) = &failure.error else {
        panic!("expected the probe's report, got {failure}");
    };
    message
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(statement, outcome)| (statement.to_owned(), outcome.to_owned()))
        .collect()
}

async fn springs(inspect: &Inspector) -> i64 {
    inspect.count("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM trap_springs").await
}

/// Statements that PostgreSQL would resolve to the traps under an ordinary search_path. Each
/// runs in a database of its own, since the first error aborts the transaction.
const RESOLVED_BY_SIGNATURE: &[&str] = &[
    "SELECT lower(1)",
    "SELECT \"LOWER\"('x')",
    "SELECT length(id) FROM users",
    "SELECT 1 ### 1",
    "SELECT id FROM users WHERE id::integer ### 1",
    "SELECT 1 OPERATOR(public.###) 1",
    "SELECT count(*) FROM users WHERE id = 1::integer",
    "SELECT count(*) FROM users WHERE id IN (1::integer, 2::integer)",
    "SELECT count(*) FROM users u JOIN orders o ON o.user_id = 1::integer",
    "UPDATE users SET email = email WHERE id = 1::integer",
    "ALTER TABLE users ADD COLUMN flag boolean DEFAULT 1 ### 1",
    "ALTER TABLE users ADD COLUMN flag boolean DEFAULT 1 OPERATOR(public.###) 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_and_operators_outside_pg_catalog_are_never_reached() {
    for statement in RESOLVED_BY_SIGNATURE {
        let db = TestDb::postgres().await;
        let outcomes = probe(&db, POSTGRES_TRAPS, "up", &[statement]).await;
        let outcome = outcomes.get(*statement).unwrap_or_else(|| panic!("no outcome for {statement}"));
        let inspect = db.inspect().await;
        assert_eq!(springs(&inspect).await, 0, "{statement} reached a trap: {outcome}");
        assert!(!outcome.contains("trap sprang"), "{statement}: {outcome}");
    }
    // pg_catalog's functions and operators still do their work, however they are spelled.
    let db = TestDb::postgres().await;
    let legitimate = [
        "SELECT lower(email) FROM users WHERE id = 1",
        "SELECT pg_catalog.lower(email) FROM users WHERE id = 1",
        "SELECT LOWER(email) FROM users WHERE id = 2",
        "SELECT count(*)::text FROM users WHERE id IN (1, 2)",
        "SELECT count(*)::text FROM users u JOIN orders o ON o.user_id = u.id",
        "SELECT email FROM public.users WHERE id OPERATOR(pg_catalog.=) 1",
    ];
    let outcomes = probe(&db, POSTGRES_TRAPS, "up", &legitimate).await;
    let expected = ["a@example.com", "a@example.com", "b@example.com", "2", "1", "A@Example.com"];
    for (statement, first) in legitimate.iter().zip(expected) {
        let outcome = &outcomes[*statement];
        assert!(outcome.starts_with("ok") && outcome.ends_with(&format!("first {first})")), "{statement}: {outcome}");
    }
    let inspect = db.inspect().await;
    assert_eq!(springs(&inspect).await, 0);
    // Positive control: outside the sandbox, the same text does reach the trap.
    assert_eq!(inspect.count("SELECT length(1::bigint)::bigint").await, -1);
    assert_eq!(springs(&inspect).await, 1, "the trap is real");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_temp_tables_and_row_locks_in_verify_are_refused() {
    let db = TestDb::postgres().await;
    let refused = [
        ("DROP TABLE users CASCADE", "CASCADE"),
        ("DROP TABLE orders, users CASCADE", "CASCADE"),
        ("ALTER TABLE users DROP COLUMN email CASCADE", "CASCADE"),
        ("ALTER TABLE users DROP CONSTRAINT users_pkey CASCADE", "CASCADE"),
        ("CREATE TEMP TABLE users (id bigint, email text)", "temporary"),
        ("CREATE TABLE pg_temp.users (id bigint)", "temporary"),
        ("SELECT * INTO TEMP users FROM users", "temporary"),
        ("SELECT * FROM pg_temp.users", "temporary"),
    ];
    let statements: Vec<&str> = refused.iter().map(|(s, _)| *s).collect();
    let outcomes = probe(&db, POSTGRES_TRAPS, "up", &statements).await;
    for (statement, expected) in refused {
        let outcome = &outcomes[statement];
        assert!(outcome.starts_with("denied: ") && outcome.contains(expected), "{statement}: {outcome}");
    }
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM pg_views WHERE viewname = 'user_emails'").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_id_fkey'").await, 1);

    let db = TestDb::postgres().await;
    let locking = [
        "SELECT id FROM users FOR UPDATE NOWAIT",
        "SELECT id FROM users FOR SHARE",
        "SELECT id FROM (SELECT id FROM users FOR NO KEY UPDATE) u",
    ];
    let outcomes = probe(&db, POSTGRES_TRAPS, "verify", &locking).await;
    for statement in locking {
        let outcome = &outcomes[statement];
        assert!(outcome.starts_with("denied: ") && outcome.contains("verify"), "{statement}: {outcome}");
    }
}

const SQLITE_TABLES: &str = "
    CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE);
    INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');
    CREATE TABLE secrets (id INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT NOT NULL);
    INSERT INTO secrets (token) VALUES ('s3cret');
    CREATE VIEW secret_tokens AS SELECT token FROM secrets WHERE token LIKE 's3%';
    CREATE TABLE orders (id INTEGER PRIMARY KEY);
    CREATE TABLE replaced (id INTEGER PRIMARY KEY ON CONFLICT REPLACE, v TEXT);
    INSERT INTO replaced VALUES (1, 'kept');
    CREATE TABLE probe (id INTEGER PRIMARY KEY, phase TEXT NOT NULL, statement TEXT NOT NULL);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_internal_tables_and_conflict_clauses_follow_the_grants() {
    let db = TestDb::sqlite();
    let refused = [
        ("UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'secrets'", "sqlite_sequence"),
        ("INSERT INTO sqlite_sequence (name, seq) VALUES ('orders', 5)", "sqlite_sequence"),
        ("DELETE FROM sqlite_sequence", "sqlite_sequence"),
        ("INSERT OR REPLACE INTO users (id, email) VALUES (1, 'x@example.com')", "grants.delete = [\"users\"]"),
        ("REPLACE INTO users (id, email) VALUES (1, 'x@example.com')", "grants.delete = [\"users\"]"),
        ("UPDATE OR REPLACE users SET email = 'b@example.com' WHERE id = 1", "grants.delete = [\"users\"]"),
        ("INSERT OR ROLLBACK INTO users (email) VALUES ('a@example.com')", "transaction"),
        // The table's own definition replaces on conflict: a plain INSERT may delete a row.
        ("INSERT INTO replaced (id, v) VALUES (1, 'overwritten')", "grants.delete = [\"replaced\"]"),
        ("SELECT sql FROM sqlite_master WHERE name = 'secret_tokens'", "sql column"),
        ("SELECT sql FROM sqlite_schema", "sql column"),
    ];
    let allowed = [
        "SELECT name FROM sqlite_master WHERE type = 'view'",
        "INSERT OR IGNORE INTO users (email) VALUES ('a@example.com')",
        "SELECT count(*) FROM users",
    ];
    let statements: Vec<&str> = refused.iter().map(|(s, _)| *s).chain(allowed).collect();
    let outcomes = probe(&db, SQLITE_TABLES, "up", &statements).await;
    for (statement, expected) in refused {
        let outcome = &outcomes[statement];
        assert!(outcome.starts_with("denied: ") && outcome.contains(expected), "{statement}: {outcome}");
    }
    for statement in allowed {
        let outcome = &outcomes[statement];
        assert!(outcome.starts_with("ok"), "{statement}: {outcome}");
    }
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT seq FROM sqlite_sequence WHERE name = 'secrets'").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM users WHERE email = 'a@example.com' AND id = 1").await, 1);
}

/// A statement past wasmtime's own cap on a call's transfer (four times `limits.hostcall_mib`)
/// stops the call before the guard sees it; the error names the limit, not wasmtime's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_past_the_engines_cap_names_limits_hostcall_mib() {
    let db = TestDb::sqlite();
    let project = Project::new();
    let setup = format!(
        "{SQLITE_TABLES}\nINSERT INTO probe (phase, statement) VALUES ('up', 'SELECT ''' || hex(zeroblob(3 * 1024 * 1024)) || '''');"
    );
    project.sql("0001_setup", &setup, None, None).component(
        "0002_probe",
        "statement-probe",
        &format!("{GRANTS}[limits]\nhostcall_mib = 1\nresult_mib = 16\n"),
    );
    let failure = project.migrator(&db).await.up(None).await.expect_err("a 6 MiB statement passes a 4 MiB cap");
    assert!(
        matches!(&failure.error, Error::Sandbox(SandboxError::Trap { limit: Some(wasmig::Limit::Hostcall(_)), .. })),
        "{failure}"
    );
    assert!(failure.to_string().contains("limits.hostcall_mib"), "{failure}");
}

/// SQLite runs in this process, outside the component's fuel and epoch: a statement it runs for
/// a component stops at the call's deadline, and a value past `limits.result_mib` is refused
/// before the host's heap grows for it. Each is the component's `limit` error, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_statements_stop_at_the_calls_deadline_and_value_cap() {
    let db = TestDb::sqlite();
    let statements = [
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "SELECT length(printf('%.*c', 400000000, 'x'))",
        "SELECT count(*) FROM users",
    ];
    let rows: Vec<String> = statements
        .iter()
        .map(|s| format!("INSERT INTO probe (phase, statement) VALUES ('up', '{}');", s.replace('\'', "''")))
        .collect();
    let project = Project::new();
    project.sql("0001_setup", &format!("{SQLITE_TABLES}\n{}", rows.join("\n")), None, None).component(
        "0002_probe",
        "statement-probe",
        // SQLite's authorizer reports a recursive CTE's reads as reads of a table of its name.
        &format!("{}[limits]\ntimeout_secs = 2\nresult_mib = 8\n", GRANTS.replace("\"probe\"", "\"probe\", \"r\"")),
    );
    let started = std::time::Instant::now();
    let failure = project.migrator(&db).await.up(None).await.expect_err("the probe reports and fails");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the deadline bound the statement");
    let Error::Sandbox(SandboxError::Guest { message, .. }) = &failure.error else {
        panic!("expected the probe's report, got {failure}");
    };
    let outcomes: HashMap<&str, &str> = message.lines().filter_map(|line| line.split_once('\t')).collect();
    let endless = outcomes[statements[0]];
    assert!(endless.starts_with("limit: ") && endless.contains("limits.timeout_secs"), "{endless}");
    let huge = outcomes[statements[1]];
    assert!(huge.starts_with("limit: ") && huge.contains("limits.result_mib"), "{huge}");
    assert!(outcomes[statements[2]].starts_with("ok"), "the connection still works: {message}");
}

/// The peak resident memory of this process (the host), from the kernel's account.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Result caps bind while rows arrive: a query of fifty million rows, or of rows a megabyte
/// each, is stopped (and cancelled on the server) once it passes the cap, without the host
/// buffering it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_caps_stop_reading_as_soon_as_they_are_passed() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let (rows, wide) = match backend {
            Backend::Postgres => {
                ("SELECT generate_series(1, 50000000)", "SELECT repeat('x', 1000000) FROM generate_series(1, 100000)")
            }
            Backend::Sqlite => (
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 50000000) SELECT n FROM r",
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 100000) SELECT printf('%.*c', 1000000, 'x') FROM r",
            ),
        };
        for (statement, setting) in [(rows, "limits.result_rows"), (wide, "limits.result_mib")] {
            let db = TestDb::new(backend).await;
            let setup = match backend {
                Backend::Postgres => POSTGRES_TRAPS,
                Backend::Sqlite => SQLITE_TABLES,
            };
            let project = Project::new();
            let insert =
                format!("INSERT INTO probe (phase, statement) VALUES ('up', '{}');", statement.replace('\'', "''"));
            project.sql("0001_setup", &format!("{setup}\n{insert}"), None, None).component(
                "0002_probe",
                "statement-probe",
                &format!(
                    "{}[limits]\nresult_rows = 1000\nresult_mib = 8\n",
                    GRANTS.replace("\"probe\"", "\"probe\", \"r\"")
                ),
            );
            let before = peak_rss_kib();
            let failure = project.migrator(&db).await.up(None).await.expect_err("the probe reports and fails");
            let grown_mib = (peak_rss_kib() - before) / 1024;
            let Error::Sandbox(SandboxError::Guest { message, .. }) = &failure.error else {
                panic!("{backend:?} {statement}: expected the probe's report, got {failure}");
            };
            assert!(message.contains("limit: ") && message.contains(setting), "{backend:?} {statement}: {message}");
            assert!(grown_mib < 1024, "{backend:?} {statement}: the host grew by {grown_mib} MiB");
        }
    }
}

/// A call's wall-clock limit bounds the database work it started: a statement still running
/// at the deadline is cancelled on the server, and the call ends as a trap on its time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_deadline_cancels_a_running_statement() {
    let db = TestDb::postgres().await;
    let slow = "SELECT count(*) FROM generate_series(1, 2000000000)";
    let project = Project::new();
    let insert = format!("INSERT INTO probe (phase, statement) VALUES ('up', '{slow}');");
    project.sql("0001_setup", &format!("{POSTGRES_TRAPS}\n{insert}"), None, None).component(
        "0002_probe",
        "statement-probe",
        &format!("{GRANTS}[limits]\ntimeout_secs = 2\nstatement_timeout_secs = 600\n"),
    );
    let started = std::time::Instant::now();
    let failure = project.migrator(&db).await.up(None).await.expect_err("the deadline stops the call");
    let elapsed = started.elapsed();
    assert!(
        matches!(&failure.error, Error::Sandbox(SandboxError::Trap { limit: Some(wasmig::Limit::Deadline(_)), .. })),
        "{failure}"
    );
    assert!(failure.to_string().contains("limits.timeout_secs"), "{failure}");
    assert!(elapsed < std::time::Duration::from_secs(20), "the call ran {elapsed:?} past a 2 s limit");
    let inspect = db.inspect().await;
    let still_running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%generate_series(1, 2000000000)%' AND pid <> pg_backend_pid()";
    assert_eq!(inspect.count(still_running).await, 0, "the statement was cancelled on the server");
}
