//! Test guest: sends statements that reach beyond its grants (read users and orders, update
//! users, insert and update orders), then legitimate ones, and reports every outcome as its
//! error message, one `statement<TAB>outcome` line each. It always fails, so whatever it did
//! is rolled back; the test asserts each outcome and that the database is unchanged. Last, a
//! 2 MiB statement tests the per-call byte limit.

use wasmig_sdk::{Db, Error, Migration, Result, SqlError};

/// Statements the guard must refuse (or the database reject), with every spelling trick.
const ATTACKS: &[&str] = &[
    "SELECT * FROM secrets",
    "SELECT token FROM \"secrets\"",
    "SELECT * FROM main.secrets",
    "SELECT * FROM public.secrets",
    "SELECT * FROM U&\"\\0073ecrets\"",
    "SELECT /* users */ token FROM secrets",
    "SELECT * FROM users WHERE id IN (SELECT id FROM secrets)",
    "WITH s AS (SELECT * FROM secrets) SELECT * FROM s",
    "SELECT * FROM users, LATERAL (SELECT * FROM secrets) s",
    "SELECT * FROM users UNION SELECT id, token FROM secrets",
    "TABLE secrets",
    "UPDATE users SET email = (SELECT token FROM secrets LIMIT 1)",
    "DELETE FROM users",
    "UPDATE secrets SET token = 'stolen'",
    "INSERT INTO secrets (id, token) VALUES (99, 'planted')",
    "WITH gone AS (DELETE FROM secrets RETURNING *) SELECT count(*) FROM gone",
    "INSERT INTO users (id, email) VALUES (99, 'x@y')",
    "DROP TABLE secrets",
    "ALTER TABLE users ADD COLUMN backdoor TEXT",
    "CREATE TABLE stolen AS SELECT * FROM secrets",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "SELECT 1; DELETE FROM users",
    "SET ROLE postgres",
    "RESET ALL",
    "COPY secrets TO '/tmp/stolen'",
    "DO $$ BEGIN DELETE FROM secrets; END $$",
    "ATTACH DATABASE '/tmp/other.db' AS other",
    "PRAGMA writable_schema = 1",
    "SELECT pg_sleep(1)",
    "SELECT set_config('role', 'postgres', true)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT load_extension('/tmp/evil')",
    "SELECT query_to_xml('select * from secrets', true, true, '')",
    "NOTIFY wasmig",
    "PREPARE p AS SELECT * FROM secrets",
];

/// Statements within the grants: they must succeed, even after all the refusals above.
const LEGITIMATE: &[&str] = &[
    "SELECT id, email FROM users ORDER BY id",
    "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
    "UPDATE users SET email = lower(email) WHERE id = 1 RETURNING id",
    "WITH recent AS (SELECT id FROM orders) SELECT count(*) FROM recent",
    "INSERT INTO orders (id, user_id) VALUES (100, 1) ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id",
];

fn outcome(db: &Db, statement: &str) -> String {
    let result = db.query(statement, Vec::new());
    let text = match result {
        Ok(rows) => format!("ok ({} rows)", rows.len()),
        Err(SqlError::Denied(m)) => format!("denied: {m}"),
        Err(SqlError::Invalid(m)) => format!("invalid: {m}"),
        Err(SqlError::Database { code, message }) => format!("database: {code} {message}"),
        Err(SqlError::Limit(m)) => format!("limit: {m}"),
    };
    text.replace(['\t', '\n'], " ")
}

struct HostileSql;

impl Migration for HostileSql {
    fn up(db: &Db) -> Result<()> {
        let mut report = String::new();
        for statement in ATTACKS.iter().chain(LEGITIMATE) {
            report.push_str(&format!("{statement}\t{}\n", outcome(db, statement)));
        }
        // A 2 MiB statement, reported under a label so the report itself stays small.
        let oversized = format!("SELECT '{}'", "x".repeat(2 * 1024 * 1024));
        report.push_str(&format!("OVERSIZED_STATEMENT\t{}\n", outcome(db, &oversized)));
        Err(Error::msg(report))
    }
}

wasmig_sdk::export_migration!(HostileSql);
