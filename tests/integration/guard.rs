//! The capability-limited SQL handle (invariant 3): a component touches only what its manifest
//! grants. A hostile component tries every category of escape; each is refused with an error
//! naming what was refused, legitimate statements still pass afterwards, and the database is
//! unchanged.

use std::collections::HashMap;

use wasmig::Error;
use wasmig::sandbox::SandboxError;
use wasmig_tests::{Backend, Project, TestDb};

use crate::on_both_backends;

const TABLES: &str = "
    CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL);
    INSERT INTO users VALUES (1, 'A@Example.com'), (2, 'b@example.com'), (3, 'c@example.com');
    CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL);
    INSERT INTO orders VALUES (10, 1), (11, 2);
    CREATE TABLE secrets (id BIGINT PRIMARY KEY, token TEXT NOT NULL);
    INSERT INTO secrets VALUES (1, 's3cret');
";

const GRANTS: &str = "[grants]
read = [\"users\", \"orders\"]
update = [\"users\", \"orders\"]
insert = [\"orders\"]
[limits]
hostcall_mib = 1
";

/// Statements whose refusal must come from wasmig's guard on both backends, with the text the
/// refusal must contain.
const DENIED_EVERYWHERE: &[(&str, &str)] = &[
    ("SELECT * FROM secrets", "grants.read = [\"secrets\"]"),
    ("SELECT token FROM \"secrets\"", "grants.read = [\"secrets\"]"),
    ("SELECT /* users */ token FROM secrets", "grants.read = [\"secrets\"]"),
    ("SELECT * FROM users WHERE id IN (SELECT id FROM secrets)", "secrets"),
    ("WITH s AS (SELECT * FROM secrets) SELECT * FROM s", "secrets"),
    ("SELECT * FROM users UNION SELECT id, token FROM secrets", "secrets"),
    ("UPDATE users SET email = (SELECT token FROM secrets LIMIT 1)", "secrets"),
    ("DELETE FROM users", "grants.delete = [\"users\"]"),
    ("UPDATE secrets SET token = 'stolen'", "secrets"),
    ("INSERT INTO secrets (id, token) VALUES (99, 'planted')", "grants.insert = [\"secrets\"]"),
    ("INSERT INTO users (id, email) VALUES (99, 'x@y')", "grants.insert = [\"users\"]"),
    ("DROP TABLE secrets", "secrets"),
    ("ALTER TABLE users ADD COLUMN backdoor TEXT", "grants.ddl = [\"users\"]"),
    ("BEGIN", "transaction control"),
    ("COMMIT", "transaction control"),
    ("ROLLBACK", "transaction control"),
    ("SAVEPOINT s", "transaction control"),
];

/// Refused by the PostgreSQL guard (these parse as PostgreSQL), with the text to find.
const DENIED_ON_POSTGRES: &[(&str, &str)] = &[
    ("SELECT * FROM main.secrets", "main.secrets"),
    ("SELECT * FROM public.secrets", "secrets"),
    ("SELECT * FROM users, LATERAL (SELECT * FROM secrets) s", "secrets"),
    ("SELECT * FROM U&\"\\0073ecrets\"", "grants.read = [\"secrets\"]"),
    ("TABLE secrets", "secrets"),
    ("WITH gone AS (DELETE FROM secrets RETURNING *) SELECT count(*) FROM gone", "deleting from secrets"),
    ("CREATE TABLE stolen AS SELECT * FROM secrets", "not allowed in a migration"),
    ("SELECT 1; DELETE FROM users", "one statement"),
    ("SET ROLE postgres", "session state"),
    ("RESET ALL", "session state"),
    ("COPY secrets TO '/tmp/stolen'", "COPY"),
    ("DO $$ BEGIN DELETE FROM secrets; END $$", "DO and CALL"),
    ("SELECT pg_sleep(1)", "allowlist"),
    ("SELECT set_config('role', 'postgres', true)", "allowlist"),
    ("SELECT pg_advisory_unlock_all()", "allowlist"),
    ("SELECT load_extension('/tmp/evil')", "allowlist"),
    ("SELECT query_to_xml('select * from secrets', true, true, '')", "allowlist"),
    ("NOTIFY wasmig", "NOTIFY"),
    ("PREPARE p AS SELECT * FROM secrets", "PREPARE"),
];

/// Refused by SQLite's authorizer under wasmig's policy.
const DENIED_ON_SQLITE: &[(&str, &str)] = &[
    ("SELECT * FROM main.secrets", "grants.read = [\"secrets\"]"),
    ("CREATE TABLE stolen AS SELECT * FROM secrets", "stolen"),
    ("ATTACH DATABASE '/tmp/other.db' AS other", "ATTACH"),
    ("PRAGMA writable_schema = 1", "PRAGMA"),
];

const LEGITIMATE: &[&str] = &[
    "SELECT id, email FROM users ORDER BY id",
    "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
    "UPDATE users SET email = lower(email) WHERE id = 1 RETURNING id",
    "WITH recent AS (SELECT id FROM orders) SELECT count(*) FROM recent",
    "INSERT INTO orders (id, user_id) VALUES (100, 1) ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id",
];

async fn hostile_statements_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_tables", TABLES, None, None).component("0002_hostile_sql", "hostile-sql", GRANTS);
    let failure = project.migrator(&db).await.up(None).await.expect_err("the hostile component reports and fails");
    let Error::Sandbox(SandboxError::Guest { message, .. }) = &failure.error else {
        panic!("expected the component's own report, got {failure}");
    };
    let outcomes: HashMap<&str, &str> = message.lines().filter_map(|line| line.split_once('\t')).collect();
    assert!(outcomes.len() > 40, "the report covers every statement: {message}");

    for (statement, outcome) in &outcomes {
        if !LEGITIMATE.contains(statement) && *statement != "OVERSIZED_STATEMENT" {
            assert!(!outcome.starts_with("ok"), "{backend:?} allowed {statement:?}: {outcome}");
        }
    }
    let specific = match backend {
        Backend::Postgres => DENIED_ON_POSTGRES,
        Backend::Sqlite => DENIED_ON_SQLITE,
    };
    for (statement, expected) in DENIED_EVERYWHERE.iter().chain(specific) {
        let outcome = outcomes.get(statement).unwrap_or_else(|| panic!("no outcome for {statement:?}"));
        assert!(outcome.starts_with("denied: ") && outcome.contains(expected), "{backend:?} {statement:?}: {outcome}");
    }
    for statement in LEGITIMATE {
        let outcome = outcomes.get(statement).unwrap_or_else(|| panic!("no outcome for {statement:?}"));
        assert!(outcome.starts_with("ok"), "{backend:?} refused the legitimate {statement:?}: {outcome}");
    }
    let oversized = outcomes.get("OVERSIZED_STATEMENT").expect("the oversized statement's outcome");
    assert!(
        oversized.starts_with("limit: ") && oversized.contains("limits.hostcall_mib is 1"),
        "{backend:?}: {oversized}"
    );

    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM secrets WHERE token = 's3cret'").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM users").await, 3);
    assert_eq!(inspect.count("SELECT count(*) FROM users WHERE email = 'A@Example.com'").await, 1);
    assert_eq!(inspect.count("SELECT count(*) FROM orders").await, 2);
    assert!(!inspect.table_exists("stolen").await);
}
on_both_backends!(hostile_sql, hostile_statements_are_refused);

/// The database's own wall behind the guard: with `[guard] postgres_role`, component
/// statements run as that role, so PostgreSQL refuses what the role may not do even where the
/// manifest (wrongly) grants it, and the engine's own history writes still run as before.
#[tokio::test]
async fn postgres_role_is_the_wall_behind_the_guard() {
    let db = TestDb::postgres().await;
    let role = format!("wasmig_component_{}", std::process::id());
    let admin = RoleGuard::create(&db, &role).await;

    let inspect = db.inspect().await;
    inspect.execute(&format!("{TABLES}\nALTER TABLE users ADD COLUMN email_domain TEXT;")).await;
    admin.grant("GRANT SELECT, UPDATE ON users TO {role}").await;

    let project = Project::new();
    project.write("wasmig.toml", &format!("[guard]\npostgres_role = \"{role}\"\n"));
    project.component(
        "0001_backfill",
        "backfill-email-domain",
        "[backfill]\nbatch_size = 2\n[grants]\nread = [\"users\"]\nupdate = [\"users\"]\n",
    );
    project.migrator(&db).await.up(None).await.expect("the role may do what the backfill needs");
    assert_eq!(inspect.count("SELECT count(*) FROM users WHERE email_domain IS NOT NULL").await, 3);

    // A manifest that grants more than the role has: PostgreSQL refuses what the guard let by.
    let overgranted = Project::new();
    overgranted
        .write("wasmig.toml", &format!("[history]\ntable = \"other_history\"\n[guard]\npostgres_role = \"{role}\"\n"));
    overgranted.component("0001_hostile_sql", "hostile-sql", "[grants]\nread = [\"users\", \"orders\", \"secrets\"]\n");
    let failure = overgranted.migrator(&db).await.up(None).await.expect_err("the component reports and fails");
    let Error::Sandbox(SandboxError::Guest { message, .. }) = &failure.error else {
        panic!("expected the component's report, got {failure}");
    };
    let outcome = message.lines().find_map(|line| line.strip_prefix("SELECT * FROM secrets\t")).expect("outcome");
    assert!(outcome.starts_with("database: 42501"), "PostgreSQL itself refused the role: {outcome}");
    drop(admin);
}

/// Creates a role for one test and drops it (roles are cluster-wide) when dropped.
struct RoleGuard {
    role: String,
    database: String,
}

impl RoleGuard {
    async fn create(db: &TestDb, role: &str) -> RoleGuard {
        let database = db.url.rsplit('/').next().expect("database name").to_owned();
        let guard = RoleGuard { role: role.to_owned(), database };
        guard.admin_execute(&format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} NOLOGIN")).await;
        guard
    }

    async fn grant(&self, template: &str) {
        let sql = template.replace("{role}", &self.role);
        let (client, connection) =
            tokio_postgres::connect(&self.database_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.batch_execute(&format!("GRANT USAGE ON SCHEMA public TO {}; {sql}", self.role)).await.expect("grant");
    }

    fn database_url(&self) -> String {
        let admin = wasmig_tests::postgres_admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base).to_owned();
        format!("{base}/{}", self.database)
    }

    async fn admin_execute(&self, sql: &str) {
        let (client, connection) =
            tokio_postgres::connect(&wasmig_tests::postgres_admin_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        let role = &self.role;
        wasmig_tests::cleanup(self.database_url(), format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"));
    }
}

async fn oversized_results_are_a_limit_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_tables", &format!("{TABLES}\nALTER TABLE users ADD COLUMN email_domain TEXT;"), None, None).component(
        "0002_backfill",
        "backfill-email-domain",
        "[backfill]\nbatch_size = 3\n[grants]\nread = [\"users\"]\nupdate = [\"users\"]\n[limits]\nresult_rows = 2\n",
    );
    let failure = project.migrator(&db).await.up(None).await.expect_err("three rows exceed result_rows = 2");
    let message = failure.to_string();
    assert!(message.contains("limit reached") && message.contains("limits.result_rows is 2"), "{message}");
    let inspect = db.inspect().await;
    assert_eq!(inspect.count("SELECT count(*) FROM users WHERE email_domain IS NOT NULL").await, 0);
}
on_both_backends!(result_limit, oversized_results_are_a_limit_error);
