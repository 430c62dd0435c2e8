//! The PostgreSQL guard: parses a statement with PostgreSQL's own grammar (libpg_query) and
//! finds every table it touches and every function it calls.
//!
//! The parse tree is walked generically (serialised, then every object visited), so no node
//! type can hide a table: a table reference is recognised by its shape (a `RangeVar`, which has
//! `relname`) wherever it appears — joins, subqueries, CTEs, RETURNING, LATERAL, `TABLE x`.
//! Quoted, unicode-escaped and commented spellings are resolved by the parser itself.

use std::collections::HashMap;
use std::sync::Mutex;

use pg_query::protobuf::{AlterTableType, ObjectType, OnConflictAction};
use serde_json::{Map, Value};

use super::{Access, Policy, Refusal, TableName, function_allowed};

/// The schema unqualified names resolve to: the host pins `search_path` to it for guarded
/// calls, so the guard and the server resolve names alike.
pub const DEFAULT_SCHEMA: &str = "public";

/// What a statement does, independent of any grants (so it can be cached by text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The statement's kind, e.g. `SelectStmt`.
    pub kind: String,
    pub is_schema_change: bool,
    pub tables: Vec<(Access, TableName)>,
    pub functions: Vec<(Option<String>, String)>,
}

/// Why a statement could not be analysed or is refused whatever the grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not valid SQL for PostgreSQL's grammar.
    Invalid(String),
    Refused(Refusal),
}

const DATA_STATEMENTS: &[&str] = &["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"];
const SCHEMA_STATEMENTS: &[&str] = &["CreateStmt", "AlterTableStmt", "IndexStmt", "DropStmt", "RenameStmt"];

/// A plain-words name and the reason for statement kinds a migration may never run.
fn forbidden(kind: &str) -> (String, &'static str) {
    let (what, why) = match kind {
        "TransactionStmt" => {
            ("transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT)", "the host owns the transaction")
        }
        "VariableSetStmt" | "VariableShowStmt" | "DiscardStmt" => {
            ("SET, RESET, SET ROLE, SHOW or DISCARD", "migrations may not read or change session state")
        }
        "CopyStmt" => ("COPY", "it reaches files and programs outside the database"),
        "DoStmt" | "CallStmt" => ("DO and CALL", "they run code the guard cannot see"),
        "ListenStmt" | "UnlistenStmt" | "NotifyStmt" => ("LISTEN, UNLISTEN and NOTIFY", "they talk to other sessions"),
        "PrepareStmt" | "ExecuteStmt" | "DeallocateStmt" => {
            ("PREPARE and EXECUTE", "they run statements the guard cannot see")
        }
        "DeclareCursorStmt" | "FetchStmt" | "ClosePortalStmt" => {
            ("cursors", "they outlive the statement that opened them")
        }
        "ExplainStmt" => ("EXPLAIN", "EXPLAIN ANALYZE runs its statement unchecked"),
        "GrantStmt" | "GrantRoleStmt" | "AlterDefaultPrivilegesStmt" => {
            ("GRANT and REVOKE", "privileges are not a migration's to change")
        }
        "AlterSystemStmt" => ("ALTER SYSTEM", "server settings are not a migration's to change"),
        "CreateFunctionStmt" | "CreateExtensionStmt" | "CreateTrigStmt" | "CreateEventTrigStmt" | "RuleStmt" => {
            ("creating functions, extensions, triggers and rules", "they run code outside the guard")
        }
        "LockStmt" => ("LOCK", "explicit locks can block the deploy"),
        _ => {
            return (
                kind.to_owned(),
                "only reads, granted data changes and granted table and index changes are allowed",
            );
        }
    };
    (what.to_owned(), why)
}

/// Parses `statement` and lists what it touches.
pub fn analyze(statement: &str) -> Result<Analysis, Rejection> {
    let parsed = pg_query::parse(statement, 0).map_err(|e| Rejection::Invalid(e.to_string()))?;
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
    let mut analysis = Analysis { kind: kind.clone(), is_schema_change, tables: Vec::new(), functions: Vec::new() };
    if is_schema_change {
        check_schema_change(kind, body)?;
        if kind == "DropStmt" {
            dropped_objects(body, &mut analysis);
        }
        walk(body, Access::Ddl, &[], &mut analysis);
    } else {
        walk(&tree, Access::Read, &[], &mut analysis);
    }
    analysis.tables.sort();
    analysis.tables.dedup();
    Ok(analysis)
}

fn int_field(body: &Value, field: &str) -> i32 {
    body.get(field).and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
}

/// Refuses schema changes beyond tables and indexes, and the ALTER TABLE forms that change
/// ownership or row-level security.
fn check_schema_change(kind: &str, body: &Value) -> Result<(), Rejection> {
    let refuse = |what: String| {
        Err(Rejection::Refused(Refusal::StatementClass {
            what,
            why: "only tables, their columns and indexes may change",
        }))
    };
    let object_type = |field| ObjectType::try_from(int_field(body, field)).unwrap_or(ObjectType::Undefined);
    match kind {
        "DropStmt" if !matches!(object_type("remove_type"), ObjectType::ObjectTable | ObjectType::ObjectIndex) => {
            refuse(format!("DROP {:?}", object_type("remove_type")))
        }
        "RenameStmt"
            if !matches!(
                object_type("rename_type"),
                ObjectType::ObjectTable
                    | ObjectType::ObjectColumn
                    | ObjectType::ObjectIndex
                    | ObjectType::ObjectTabconstraint
            ) =>
        {
            refuse(format!("RENAME of {:?}", object_type("rename_type")))
        }
        "AlterTableStmt" => {
            let commands = body.get("cmds").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for command in commands {
                let subtype = command.pointer("/node/AlterTableCmd/subtype").and_then(Value::as_i64).unwrap_or(0);
                let subtype =
                    AlterTableType::try_from(i32::try_from(subtype).unwrap_or(0)).unwrap_or(AlterTableType::Undefined);
                if matches!(
                    subtype,
                    AlterTableType::AtChangeOwner
                        | AlterTableType::AtEnableRowSecurity
                        | AlterTableType::AtDisableRowSecurity
                        | AlterTableType::AtForceRowSecurity
                        | AlterTableType::AtNoForceRowSecurity
                ) {
                    return refuse(format!("ALTER TABLE … {}", subtype.as_str_name()));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `DROP TABLE a, b` names its objects as lists of strings, not table references.
fn dropped_objects(body: &Value, analysis: &mut Analysis) {
    for object in body.get("objects").and_then(Value::as_array).into_iter().flatten() {
        let names = string_list(object.pointer("/node/List/items"));
        if let Some(table) = table_from_names(&names) {
            analysis.tables.push((Access::Ddl, table));
        }
    }
}

fn string_list(items: Option<&Value>) -> Vec<String> {
    items
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.pointer("/node/String/sval").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn table_from_names(names: &[String]) -> Option<TableName> {
    match names {
        [name] => Some(TableName { schema: None, name: name.clone() }),
        [schema, name] => Some(TableName { schema: Some(schema.clone()), name: name.clone() }),
        [_catalog, schema, name] => Some(TableName { schema: Some(schema.clone()), name: name.clone() }),
        _ => None,
    }
}

/// Visits every node; tables found take `access` unless a data-changing statement says more.
/// `ctes` are the CTE names visible here: an unqualified reference to one is not a table.
fn walk(value: &Value, access: Access, ctes: &[String], analysis: &mut Analysis) {
    match value {
        Value::Object(map) => walk_object(map, access, ctes, analysis),
        Value::Array(items) => items.iter().for_each(|item| walk(item, access, ctes, analysis)),
        _ => {}
    }
}

fn walk_object(map: &Map<String, Value>, access: Access, ctes: &[String], analysis: &mut Analysis) {
    if let Some(Value::String(name)) = map.get("relname") {
        let schema = map.get("schemaname").and_then(Value::as_str).filter(|s| !s.is_empty());
        if schema.is_none() && ctes.contains(name) {
            return;
        }
        analysis.tables.push((access, TableName { schema: schema.map(str::to_owned), name: name.clone() }));
        return;
    }
    // A statement with a WITH clause: its CTE names are visible in its body, and in the CTE
    // bodies only as SQL scopes them (a non-recursive CTE sees the ones before it, not itself).
    if let Some(with) = map.get("with_clause").filter(|w| w.is_object()) {
        let ctes = walk_with_clause(with, access, ctes, analysis);
        let rest: Map<String, Value> =
            map.iter().filter(|(k, _)| *k != "with_clause").map(|(k, v)| (k.clone(), v.clone())).collect();
        return walk_object(&rest, access, &ctes, analysis);
    }
    for (key, child) in map {
        match key.as_str() {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => walk_data_change(key, child, ctes, analysis),
            "FuncCall" => {
                let names = string_list(child.get("funcname"));
                if let Some((name, schema)) = names.split_last() {
                    analysis.functions.push((schema.last().cloned(), name.clone()));
                }
                walk(child, access, ctes, analysis);
            }
            // SELECT … INTO and CREATE TABLE … AS create a table.
            "into_clause" | "into" => walk(child, Access::Ddl, ctes, analysis),
            _ => walk(child, access, ctes, analysis),
        }
    }
}

/// Walks the CTE bodies of a WITH clause; returns the names visible in the statement body.
fn walk_with_clause(with: &Value, access: Access, outer: &[String], analysis: &mut Analysis) -> Vec<String> {
    let recursive = with.get("recursive").and_then(Value::as_bool).unwrap_or(false);
    let definitions: Vec<&Value> = with
        .get("ctes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|cte| cte.pointer("/node/CommonTableExpr"))
        .collect();
    let names: Vec<String> =
        definitions.iter().filter_map(|d| d.get("ctename").and_then(Value::as_str).map(str::to_owned)).collect();
    for (index, definition) in definitions.iter().enumerate() {
        let mut visible = outer.to_vec();
        visible.extend_from_slice(if recursive { &names } else { &names[..index] });
        if let Some(query) = definition.get("ctequery") {
            walk(query, access, &visible, analysis);
        }
    }
    let mut visible = outer.to_vec();
    visible.extend(names);
    visible
}

fn walk_data_change(kind: &str, statement: &Value, ctes: &[String], analysis: &mut Analysis) {
    let Some(fields) = statement.as_object() else { return };
    let ctes = match fields.get("with_clause").filter(|w| w.is_object()) {
        Some(with) => walk_with_clause(with, Access::Read, ctes, analysis),
        None => ctes.to_vec(),
    };
    let mut accesses = match kind {
        "InsertStmt" => vec![Access::Insert],
        "UpdateStmt" => vec![Access::Update],
        "DeleteStmt" => vec![Access::Delete],
        _ => vec![Access::Insert, Access::Update, Access::Delete],
    };
    let upsert = OnConflictAction::OnconflictUpdate as i64;
    if kind == "InsertStmt" && statement.pointer("/on_conflict_clause/action").and_then(Value::as_i64) == Some(upsert) {
        accesses.push(Access::Update);
    }
    // The target is always a real table: a CTE cannot be inserted into, updated or deleted from.
    if let Some(target) = fields.get("relation") {
        for access in accesses {
            walk(target, access, &[], analysis);
        }
    }
    for (key, child) in fields {
        if key != "relation" && key != "with_clause" {
            walk(child, Access::Read, &ctes, analysis);
        }
    }
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
        if !function_allowed(schema.as_deref(), name) {
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
