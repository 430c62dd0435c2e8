//! The PostgreSQL guard: parses a statement with PostgreSQL's own grammar (libpg_query) and
//! finds every table it touches and every function it calls.
//!
//! The parse tree is walked generically (serialised, then every object visited), so no node
//! type can hide a table: a table reference is recognised by its shape (a `RangeVar`, which has
//! `relname`) wherever it appears — joins, subqueries, CTEs, RETURNING, LATERAL, `TABLE x`.
//! Quoted, unicode-escaped and commented spellings are resolved by the parser itself.
//!
//! Invariant 9: a call reaches only `pg_catalog`'s functions and operators. The guard does not
//! try to predict PostgreSQL's resolution by type (a list of spellings cannot keep up with it);
//! it takes resolution out of the component's hands instead. Component statements run with
//! `search_path = pg_catalog, pg_temp`, where unqualified functions, operators, types,
//! collations and operator classes can resolve to `pg_catalog` alone (PostgreSQL never looks
//! up functions or operators in `pg_temp`), and the guard sends the statement with every table
//! reference qualified by its schema ([`qualify`]), so tables still resolve where the grants
//! say. Any other schema a statement names for a non-table object is refused.

mod classes;
mod walk;

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};

use self::classes::{DATA_STATEMENTS, SCHEMA_STATEMENTS, check_schema_change, forbidden};
use self::walk::{Found, dropped_objects, walk, walk_object};
use super::qualify;
use crate::core::TableName;

use super::{Access, Policy, Refusal, postgres_function_allowed};

/// The schema an unqualified table name means: the guard qualifies such names with it before
/// the statement is sent, so the guard and the server resolve tables alike.
pub const DEFAULT_SCHEMA: &str = "public";

/// The `search_path` component statements run under: functions, operators and types can only
/// resolve to `pg_catalog`; `pg_temp` is named last so that it is never searched first.
pub const GUARDED_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// What a statement does, independent of any grants (so it can be cached by text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The statement's kind, e.g. `SelectStmt`.
    pub kind: String,
    pub is_schema_change: bool,
    pub tables: Vec<(Access, TableName)>,
    pub functions: Vec<(Option<String>, String)>,
    /// The statement as it is sent: the text with every table reference qualified.
    pub statement: String,
}

/// Why a statement could not be analysed or is refused whatever the grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not valid SQL for PostgreSQL's grammar.
    Invalid(String),
    Refused(Refusal),
}

/// Parses `statement`, lists what it touches and makes the text that is sent in its place.
pub fn analyze(statement: &str) -> Result<Analysis, Rejection> {
    let analysis = analyze_once(statement)?;
    if analysis.statement != statement {
        confirm(&analysis, DEFAULT_SCHEMA, |sent| match analyze_once(sent) {
            Ok(analysis) => Ok(analysis),
            Err(Rejection::Invalid(message)) => Err(message),
            Err(Rejection::Refused(refusal)) => Err(refusal.to_string()),
        })
        .map_err(Rejection::Invalid)?;
    }
    Ok(analysis)
}

/// Checks that the text to be sent touches the same tables (now qualified) and calls the same
/// functions as the statement that was checked, and leaves no table unqualified.
fn confirm(
    analysis: &Analysis,
    schema: &str,
    analyze: impl Fn(&str) -> Result<Analysis, String>,
) -> Result<(), String> {
    let sent = analyze(&analysis.statement)?;
    let mut expected = analysis.tables.clone();
    for (_, table) in &mut expected {
        table.schema.get_or_insert_with(|| schema.to_owned());
    }
    expected.sort();
    expected.dedup();
    let same = sent.statement == analysis.statement
        && sent.tables == expected
        && sent.functions == analysis.functions
        && sent.kind == analysis.kind;
    if same {
        Ok(())
    } else {
        Err(format!(
            "wasmig could not qualify this statement's table names safely (as sent it would read {:?}); \
             name every table with its schema",
            sent.statement
        ))
    }
}

fn analyze_once(statement: &str) -> Result<Analysis, Rejection> {
    let mut parsed = pg_query::parse(statement, 0).map_err(|e| Rejection::Invalid(e.to_string()))?;
    let statements = &parsed.protobuf.stmts;
    if statements.len() != 1 {
        return Err(match statements.len() {
            0 => Rejection::Invalid("the text holds no statement".into()),
            n => Rejection::Refused(Refusal::SeveralStatements(n)),
        });
    }
    let tree = serde_json::to_value(&statements[0]).map_err(|e| Rejection::Invalid(e.to_string()))?;
    let Some((kind, body)) = tree.pointer("/stmt/node").and_then(Value::as_object).and_then(|m| m.iter().next()) else {
        return Err(Rejection::Invalid("the parser returned no statement".into()));
    };
    let is_schema_change = SCHEMA_STATEMENTS.contains(&kind.as_str());
    if !is_schema_change && !DATA_STATEMENTS.contains(&kind.as_str()) {
        let (what, why) = forbidden(kind);
        return Err(Rejection::Refused(Refusal::StatementClass { what, why }));
    }
    let mut found = Found::default();
    if is_schema_change {
        check_schema_change(kind, body).map_err(Rejection::Refused)?;
        if kind == "DropStmt" {
            dropped_objects(body, &mut found);
            // The dropped names are tables and indexes, checked above as such; the rest of the
            // statement is walked like any other.
            let rest: Map<String, Value> = body
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "objects")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            walk_object(&rest, Access::Ddl, &[], &mut found);
        } else {
            walk(body, Access::Ddl, &[], &mut found);
        }
    } else {
        walk(&tree, Access::Read, &[], &mut found);
    }
    found.refusal().map_err(Rejection::Refused)?;
    let sent = if kind == "DropStmt" {
        qualify::drop_statement(&mut parsed.protobuf, DEFAULT_SCHEMA)
    } else {
        qualify::at_locations(statement, &found.unqualified, DEFAULT_SCHEMA)
    }
    .map_err(Rejection::Invalid)?;
    let Found { mut tables, functions, .. } = found;
    tables.sort();
    tables.dedup();
    Ok(Analysis { kind: kind.clone(), is_schema_change, tables, functions, statement: sent })
}

/// Checks an analysed statement against a policy.
pub fn check(analysis: &Analysis, policy: &Policy) -> Result<(), Refusal> {
    if analysis.is_schema_change && !policy.phase.allows(Access::Ddl) {
        return Err(Refusal::PhaseStatement { what: analysis.kind.clone(), phase: policy.phase });
    }
    for (access, table) in &analysis.tables {
        policy.check(*access, table, DEFAULT_SCHEMA)?;
    }
    for (schema, name) in &analysis.functions {
        if !postgres_function_allowed(schema.as_deref(), name) {
            let qualified = schema.as_ref().map_or_else(|| name.clone(), |s| format!("{s}.{name}"));
            return Err(Refusal::Function(qualified));
        }
    }
    Ok(())
}

/// Analyses by statement text once: a backfill sends the same few statements thousands of times.
#[derive(Default)]
pub struct AnalysisCache {
    entries: Mutex<HashMap<String, Result<Analysis, Rejection>>>,
}

/// Past this many distinct texts the cache starts over, so a guest generating unique
/// statements cannot grow host memory without bound.
const CACHE_CAPACITY: usize = 4096;

impl AnalysisCache {
    pub fn analyze(&self, statement: &str) -> Result<Analysis, Rejection> {
        if let Some(cached) = self.entries.lock().ok().and_then(|e| e.get(statement).cloned()) {
            return cached;
        }
        let result = analyze(statement);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(statement.to_owned(), result.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{Grants, GrantsSection, Phase};

    fn policy(phase: Phase, section: GrantsSection) -> Policy {
        Policy { grants: Grants::from_section(&section).unwrap(), phase }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn backfill_users() -> Policy {
        policy(
            Phase::Data,
            GrantsSection { read: names(&["users", "orders"]), update: names(&["users"]), ..Default::default() },
        )
    }

    fn verdict(sql: &str, policy: &Policy) -> Result<(), String> {
        match analyze(sql) {
            Ok(analysis) => check(&analysis, policy).map_err(|r| r.to_string()),
            Err(Rejection::Refused(r)) => Err(r.to_string()),
            Err(Rejection::Invalid(m)) => Err(format!("invalid: {m}")),
        }
    }

    #[test]
    fn legitimate_statements_pass() {
        let p = backfill_users();
        for sql in [
            "SELECT id, lower(email) FROM users WHERE id > $1 ORDER BY id LIMIT $2",
            "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
            "UPDATE users SET email = lower(email) WHERE id = $1 RETURNING id",
            "UPDATE users SET email = v.e FROM unnest($1::bigint[], $2::text[]) AS v(id, e) WHERE users.id = v.id",
            "WITH recent AS (SELECT id FROM orders) SELECT count(*) FROM recent",
            "TABLE users",
            "SELECT * FROM public.users",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
            "WITH a AS (SELECT id FROM users), b AS (SELECT * FROM a) SELECT * FROM b",
        ] {
            assert_eq!(verdict(sql, &p), Ok(()), "{sql}");
        }
    }

    #[test]
    fn tables_hidden_anywhere_are_found() {
        let p = backfill_users();
        for sql in [
            "SELECT * FROM secrets",
            "SELECT (SELECT token FROM secrets LIMIT 1)",
            "SELECT * FROM users WHERE id IN (SELECT user_id FROM secrets)",
            "WITH s AS (SELECT * FROM secrets) SELECT * FROM s",
            "SELECT * FROM users, LATERAL (SELECT * FROM secrets WHERE secrets.id = users.id) x",
            "TABLE secrets",
            "SELECT * FROM users UNION SELECT * FROM secrets",
            "UPDATE users SET email = (SELECT token FROM secrets LIMIT 1)",
            "UPDATE users SET email = 'x' RETURNING (SELECT token FROM secrets LIMIT 1)",
            "SELECT * FROM \"secrets\"",
            "SELECT * FROM U&\"\\0073ecrets\"",
            "SELECT * FROM /* users */ secrets",
            "SELECT * FROM billing.users",
            // A non-recursive CTE cannot see itself: the inner name is the real table.
            "WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets",
            // A CTE's name does not reach outside the query that defines it.
            "SELECT * FROM (WITH secrets AS (SELECT 1 AS id) SELECT * FROM secrets) a, secrets",
            "WITH a AS (SELECT 1), b AS (SELECT * FROM secrets) SELECT * FROM a, b",
        ] {
            let refusal = verdict(sql, &p).expect_err(sql);
            assert!(refusal.contains("secrets") || refusal.contains("billing.users"), "{sql}: {refusal}");
        }
    }

    #[test]
    fn data_changes_need_their_own_grant() {
        let p = backfill_users();
        assert!(verdict("DELETE FROM users", &p).unwrap_err().contains("grants.delete"));
        assert!(verdict("INSERT INTO users (id) VALUES (1)", &p).unwrap_err().contains("grants.insert"));
        assert!(verdict("UPDATE orders SET total = 0", &p).unwrap_err().contains("grants.update"));
        let cte = "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone";
        assert!(verdict(cte, &p).unwrap_err().contains("deleting from orders"));
        let upsert = policy(Phase::Data, GrantsSection { insert: names(&["users"]), ..Default::default() });
        let sql = "INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = excluded.id";
        assert!(verdict(sql, &upsert).unwrap_err().contains("grants.update"));
    }

    #[test]
    fn session_transaction_and_escape_hatches_are_refused() {
        let p = backfill_users();
        for sql in [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "SET ROLE postgres",
            "RESET ALL",
            "SET search_path = evil",
            "DISCARD ALL",
            "COPY users TO '/tmp/x'",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CALL p()",
            "LISTEN x",
            "NOTIFY x",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DECLARE c CURSOR FOR SELECT 1",
            "EXPLAIN ANALYZE DELETE FROM users",
            "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
            "CREATE EXTENSION dblink",
            "ALTER SYSTEM SET fsync = off",
            "GRANT ALL ON users TO public",
            "REVOKE ALL ON users FROM public",
            "LOCK users",
        ] {
            assert!(verdict(sql, &p).is_err(), "{sql} was allowed");
        }
    }

    #[test]
    fn dangerous_functions_are_refused() {
        let p = backfill_users();
        for sql in [
            "SELECT pg_sleep(10)",
            "SELECT set_config('role', 'postgres', true)",
            "SELECT pg_advisory_unlock_all()",
            "SELECT query_to_xml('select * from secrets', true, true, '')",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT id FROM users WHERE pg_terminate_backend(1)",
            "SELECT public.lower(email) FROM users",
        ] {
            assert!(verdict(sql, &p).unwrap_err().contains("allowlist"), "{sql}");
        }
    }

    #[test]
    fn several_statements_and_dollar_quotes() {
        let p = backfill_users();
        assert!(verdict("SELECT 1; DELETE FROM users", &p).unwrap_err().contains("one statement"));
        assert_eq!(
            verdict("SELECT $x$; DELETE FROM secrets $x$ AS text", &p),
            Ok(()),
            "a dollar-quoted string is data"
        );
    }

    #[test]
    fn tables_are_sent_qualified_and_ctes_are_not() {
        let sent = |sql: &str| analyze(sql).map(|a| a.statement).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(sent("SELECT id FROM users WHERE id > $1"), "SELECT id FROM public.users WHERE id > $1");
        assert_eq!(
            sent("WITH u AS (SELECT id FROM users) SELECT * FROM u JOIN orders o ON o.user_id = u.id"),
            "WITH u AS (SELECT id FROM public.users) SELECT * FROM u JOIN public.orders o ON o.user_id = u.id"
        );
        assert_eq!(sent("UPDATE \"users\" SET email = 'x'"), "UPDATE public.\"users\" SET email = 'x'");
        assert_eq!(sent("SELECT * FROM billing.users"), "SELECT * FROM billing.users");
        assert_eq!(sent("SELECT * FROM ONLY users"), "SELECT * FROM ONLY public.users");
        assert_eq!(sent("SELECT 'FROM users'"), "SELECT 'FROM users'");
        assert_eq!(sent("DROP TABLE users, billing.old"), "DROP TABLE public.users, billing.old");
        assert_eq!(sent("DROP INDEX users_email"), "DROP INDEX public.users_email");
        assert_eq!(
            sent("ALTER TABLE users ADD COLUMN o bigint REFERENCES orders (id)"),
            "ALTER TABLE public.users ADD COLUMN o bigint REFERENCES public.orders (id)"
        );
        assert_eq!(sent("SELECT * FROM U&\"\\0073ecrets\""), "SELECT * FROM public.U&\"\\0073ecrets\"");
        let with_comment = sent("SELECT * FROM /* users */ users");
        assert_eq!(with_comment, "SELECT * FROM /* users */ public.users");
    }

    #[test]
    fn functions_operators_types_and_collations_outside_pg_catalog_are_refused() {
        let p = backfill_users();
        for sql in [
            "SELECT 1 OPERATOR(public.###) 1",
            "SELECT id FROM users WHERE id OPERATOR(public.=) 1",
            "SELECT id FROM users WHERE id OPERATOR(public.=) ANY (SELECT id FROM orders)",
            "SELECT id FROM users ORDER BY id USING OPERATOR(public.<)",
            "SELECT 'x'::public.evil_type",
            "SELECT CAST(id AS public.evil_domain) FROM users",
            "SELECT email COLLATE public.evil FROM users",
            "SELECT * FROM users TABLESAMPLE public.evil_sample (10)",
            "SELECT public.lower(email) FROM users",
            "SELECT evil.lower(email) FROM users",
        ] {
            let refusal = verdict(sql, &p).expect_err(sql);
            assert!(refusal.contains("pg_catalog") || refusal.contains("allowlist"), "{sql}: {refusal}");
        }
        let ddl = policy(Phase::Schema, GrantsSection { ddl: names(&["users"]), ..Default::default() });
        for sql in [
            "CREATE INDEX users_email ON users (email public.evil_ops)",
            "CREATE INDEX users_email ON users (email COLLATE public.evil)",
            "CREATE INDEX users_email ON users USING evil_am (email)",
            "CREATE TABLE users (id int) USING evil_am",
            "ALTER TABLE users ADD COLUMN c int DEFAULT 1 OPERATOR(public.###) 1",
            "ALTER TABLE users ADD COLUMN c public.evil_type",
            "ALTER TABLE users ADD CONSTRAINT c CHECK (public.evil(id))",
            "ALTER TABLE users ADD CONSTRAINT x EXCLUDE USING gist (id WITH OPERATOR(public.&&))",
        ] {
            assert!(verdict(sql, &ddl).is_err(), "{sql} was allowed");
        }
        // pg_catalog's own, however spelled, still pass.
        for sql in [
            "SELECT pg_catalog.lower(email) FROM users",
            "SELECT id FROM users WHERE id OPERATOR(pg_catalog.=) 1",
            "SELECT email::text, id::bigint, CAST(id AS pg_catalog.int8) FROM users",
            "SELECT extract(year FROM now())",
        ] {
            assert_eq!(verdict(sql, &p), Ok(()), "{sql}");
        }
    }

    #[test]
    fn a_quoted_function_name_is_another_function() {
        let p = backfill_users();
        for sql in ["SELECT \"LOWER\"('x')", "SELECT \"Lower\"(email) FROM users", "SELECT \"lower \"('x')"] {
            assert!(verdict(sql, &p).expect_err(sql).contains("allowlist"), "{sql}");
        }
        assert_eq!(verdict("SELECT LOWER('X'), \"lower\"('Y')", &p), Ok(()));
    }

    #[test]
    fn cascade_is_refused() {
        let ddl = policy(Phase::Schema, GrantsSection { ddl: names(&["users", "orders"]), ..Default::default() });
        for sql in [
            "DROP TABLE users CASCADE",
            "DROP TABLE IF EXISTS users, orders CASCADE",
            "DROP INDEX users_email CASCADE",
            "ALTER TABLE users DROP COLUMN email CASCADE",
            "ALTER TABLE users DROP CONSTRAINT users_pkey CASCADE",
            "ALTER TABLE users ADD COLUMN x int, DROP COLUMN email CASCADE",
        ] {
            assert!(verdict(sql, &ddl).expect_err(sql).contains("CASCADE"), "{sql}");
        }
        assert_eq!(verdict("DROP TABLE users RESTRICT", &ddl), Ok(()));
        assert_eq!(verdict("ALTER TABLE users DROP COLUMN email", &ddl), Ok(()));
    }

    #[test]
    fn temporary_objects_are_refused() {
        let ddl = policy(
            Phase::Schema,
            GrantsSection { read: names(&["users"]), ddl: names(&["users", "stolen"]), ..Default::default() },
        );
        for sql in [
            "CREATE TEMP TABLE users (id int)",
            "CREATE TEMPORARY TABLE users (id int) ON COMMIT DROP",
            "CREATE TABLE pg_temp.users (id int)",
            "SELECT * INTO TEMP stolen FROM users",
            "SELECT * FROM pg_temp.users",
            "SELECT * FROM pg_temp_3.users",
            "DROP TABLE pg_temp.users",
            "CREATE INDEX i ON pg_temp.users (id)",
        ] {
            assert!(verdict(sql, &ddl).expect_err(sql).contains("temporary"), "{sql}");
        }
        let grant = GrantsSection { ddl: names(&["pg_temp.users"]), ..Default::default() };
        assert!(Grants::from_section(&grant).is_err(), "a temporary table cannot be granted");
    }

    #[test]
    fn row_locks_need_the_update_grant_and_a_writing_phase() {
        let verify = policy(Phase::ReadOnly, GrantsSection { update: names(&["users"]), ..Default::default() });
        for sql in [
            "SELECT * FROM users FOR UPDATE NOWAIT",
            "SELECT * FROM users FOR SHARE",
            "SELECT * FROM users FOR KEY SHARE SKIP LOCKED",
            "SELECT id FROM (SELECT id FROM users FOR NO KEY UPDATE) u",
            "WITH l AS (SELECT id FROM users FOR UPDATE) SELECT * FROM l",
        ] {
            assert!(verdict(sql, &verify).expect_err(sql).contains("verify"), "{sql}");
        }
        let reader = policy(Phase::Data, GrantsSection { read: names(&["users"]), ..Default::default() });
        assert!(verdict("SELECT * FROM users FOR UPDATE", &reader).unwrap_err().contains("grants.update"));
        let writer = policy(Phase::Data, GrantsSection { update: names(&["users"]), ..Default::default() });
        assert_eq!(verdict("SELECT * FROM users FOR UPDATE SKIP LOCKED", &writer), Ok(()));
        assert_eq!(verdict("SELECT * FROM users", &verify), Ok(()));
    }

    #[test]
    fn schema_changes_need_the_phase_and_the_ddl_grant() {
        let ddl = policy(Phase::Schema, GrantsSection { ddl: names(&["users"]), ..Default::default() });
        assert_eq!(verdict("ALTER TABLE users ADD COLUMN nickname text", &ddl), Ok(()));
        assert_eq!(verdict("CREATE INDEX users_email ON users (email)", &ddl), Ok(()));
        assert!(verdict("DROP TABLE secrets", &ddl).unwrap_err().contains("grants.ddl"));
        assert!(verdict("ALTER TABLE users OWNER TO postgres", &ddl).is_err());
        assert!(verdict("ALTER TABLE users DISABLE ROW LEVEL SECURITY", &ddl).is_err());
        assert!(verdict("DROP SCHEMA public CASCADE", &ddl).is_err());
        let reader = policy(
            Phase::Schema,
            GrantsSection { read: names(&["users"]), ddl: names(&["users"]), ..Default::default() },
        );
        assert!(verdict("SELECT * INTO stolen FROM users", &reader).unwrap_err().contains("grants.ddl = [\"stolen\"]"));
        let backfill = policy(Phase::Data, GrantsSection { ddl: names(&["users"]), ..Default::default() });
        assert!(verdict("ALTER TABLE users ADD COLUMN x int", &backfill).unwrap_err().contains("backfill"));
        let verify = policy(Phase::ReadOnly, GrantsSection { update: names(&["users"]), ..Default::default() });
        assert!(verdict("UPDATE users SET id = id", &verify).unwrap_err().contains("verify"));
    }
}
