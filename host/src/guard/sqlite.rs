//! The SQLite guard: SQLite's own prepare-time authorizer, consulted for every table and
//! column a statement reads or writes, every function it calls and every schema change, even
//! inside views, CTEs and subqueries. This module decides each request from the [`Policy`];
//! `db::sqlite` installs it on the connection for the duration of a component call.
//!
//! Two things the authorizer does not say are read from the statement's text first
//! ([`StatementScope::of`]): a REPLACE conflict resolution, which deletes the rows in its way
//! and so needs the delete grant, and `OR ROLLBACK`, which would end the host's transaction.
//! SQLite's internal tables (`sqlite_sequence`, `sqlite_stat1`, …) are written by no
//! component. Of the schema tables a component may read the names and types of objects, so it
//! can see whether a table or index exists; their `sql` column, which holds the text of views
//! and triggers over tables it may have no grant on, is read only by SQLite's own rewrite of
//! the schema during a granted ALTER TABLE.

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::hooks::{AuthAction, AuthContext};

use crate::core::TableName;

use super::{Access, Phase, Policy, Refusal, function_allowed};

pub const DEFAULT_SCHEMA: &str = "main";

/// SQLite's own schema tables: reading them reveals the schema, not data, and SQLite's own
/// DDL reads and writes them (each write is authorised again as the DDL action itself).
const SCHEMA_TABLES: &[&str] = &["sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"];

/// Read-only pragmas a migration may use to inspect its tables.
const READ_PRAGMAS: &[&str] =
    &["table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"];

/// What the guard knows of the statement being prepared, beyond one authorizer request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementScope {
    /// The statement resolves conflicts by REPLACE (`INSERT OR REPLACE`, `REPLACE INTO`,
    /// `UPDATE OR REPLACE`, `ON CONFLICT REPLACE`): every row it writes may delete another.
    pub replaces: bool,
    /// Tables (lower-cased) whose own definition resolves conflicts by REPLACE
    /// ([`declares_replace`]): a plain write to one may delete rows too.
    pub replacing_tables: Arc<BTreeSet<String>>,
    /// The statement is an ALTER TABLE the policy allowed; SQLite's own rewrite of the schema
    /// that follows reads `sqlite_master.sql`.
    pub altering: bool,
}

impl StatementScope {
    /// Reads the conflict resolution from the statement's tokens (strings, quoted names and
    /// comments skipped). `OR ROLLBACK` is refused: it rolls back the host's transaction, after
    /// which the component's statements would commit one by one.
    pub fn of(statement: &str) -> Result<StatementScope, Refusal> {
        let words = keywords(statement);
        let mut replaces = words.first().is_some_and(|w| w == "REPLACE");
        for pair in words.windows(2) {
            match (pair[0].as_str(), pair[1].as_str()) {
                ("OR" | "CONFLICT", "REPLACE") => replaces = true,
                ("OR" | "CONFLICT", "ROLLBACK") => {
                    return Err(class("OR ROLLBACK and ON CONFLICT ROLLBACK", "the host owns the transaction"));
                }
                _ => {}
            }
        }
        Ok(StatementScope { replaces, ..StatementScope::default() })
    }
}

/// Whether a table's definition resolves a constraint's conflicts by REPLACE, so that a plain
/// INSERT or UPDATE into it may delete rows.
pub fn declares_replace(table_sql: &str) -> bool {
    keywords(table_sql).windows(2).any(|pair| pair[0] == "CONFLICT" && pair[1] == "REPLACE")
}

/// The statement's bare words, upper-cased, in order; literals, quoted identifiers, comments,
/// numbers and punctuation are left out.
fn keywords(statement: &str) -> Vec<String> {
    let bytes = statement.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    let skip_until = |from: usize, end: &[u8]| -> usize {
        bytes[from..].windows(end.len()).position(|w| w == end).map_or(bytes.len(), |p| from + p + end.len())
    };
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_until(i + 2, b"\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_until(i + 2, b"*/"),
            // A doubled quote inside a literal or name is two quoted runs back to back.
            quote @ (b'\'' | b'"' | b'`') => i = skip_until(i + 1, &[quote]),
            b'[' => i = skip_until(i + 1, b"]"),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$') {
                    i += 1;
                }
                words.push(statement[start..i].to_ascii_uppercase());
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    words
}

/// SQLite's own tables: the schema tables, AUTOINCREMENT counters, ANALYZE statistics.
fn is_internal(table_name: &str) -> bool {
    table_name.len() >= 7 && table_name[..7].eq_ignore_ascii_case("sqlite_")
}

fn table(name: &str) -> TableName {
    TableName { schema: None, name: name.to_ascii_lowercase() }
}

fn class(what: &str, why: &'static str) -> Refusal {
    Refusal::StatementClass { what: what.to_owned(), why }
}

/// Decides one authorizer request for the statement described by `scope`.
pub fn authorize(policy: &Policy, scope: &mut StatementScope, context: &AuthContext<'_>) -> Result<(), Refusal> {
    let on_schema_table = matches!(
        context.action,
        AuthAction::Read { table_name, .. }
            | AuthAction::Insert { table_name }
            | AuthAction::Update { table_name, .. }
            | AuthAction::Delete { table_name } if SCHEMA_TABLES.contains(&table_name)
    );
    // SQLite's own ALTER TABLE consults the temp schema too; that is the only use of it allowed.
    // ALTER TABLE names its database in the action; SQLite passes a dropped column's name in
    // the slot that usually holds the database.
    let database = match context.action {
        AuthAction::AlterTable { database_name, .. } => Some(database_name),
        _ => context.database_name,
    };
    let other_database = database.is_some_and(|db| db != "main");
    if other_database && !on_schema_table && !matches!(context.action, AuthAction::Function { .. }) {
        let what = format!("{} in database {}", readable(&context.action), database.unwrap_or_default());
        return Err(Refusal::StatementClass { what, why: "only the main database is the migration's" });
    }
    let schema_phase = policy.phase == Phase::Schema;
    match context.action {
        AuthAction::Select | AuthAction::Recursive => Ok(()),
        AuthAction::Read { table_name, column_name } if SCHEMA_TABLES.contains(&table_name) => {
            if column_name.eq_ignore_ascii_case("sql") && !scope.altering {
                Err(class(
                    "reading the sql column of the schema tables",
                    "it holds the text of views and triggers over tables the grants may not name; \
                     PRAGMA table_info and sqlite_master's name and type columns describe a table",
                ))
            } else {
                Ok(())
            }
        }
        AuthAction::Read { table_name, .. } => policy.check(Access::Read, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if SCHEMA_TABLES.contains(&table_name) =>
        {
            // SQLite refuses a direct write to its schema unless writable_schema is on (a
            // pragma the guard refuses); these are its own DDL's writes, allowed with the DDL.
            if schema_phase {
                Ok(())
            } else {
                Err(Refusal::PhaseStatement { what: "a schema change".into(), phase: policy.phase })
            }
        }
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if is_internal(table_name) =>
        {
            // SQLite keeps its counters and statistics itself, without asking the authorizer.
            Err(class(&format!("writing {table_name}"), "SQLite's internal tables are SQLite's own"))
        }
        AuthAction::Insert { table_name } | AuthAction::Update { table_name, .. }
            if scope.replaces || scope.replacing_tables.contains(&table_name.to_ascii_lowercase()) =>
        {
            let target = table(table_name);
            let access =
                if matches!(context.action, AuthAction::Insert { .. }) { Access::Insert } else { Access::Update };
            policy.check(access, &target, DEFAULT_SCHEMA)?;
            // REPLACE deletes the rows that stand in the way of the write.
            policy.check(Access::Delete, &target, DEFAULT_SCHEMA)
        }
        AuthAction::Insert { table_name } => policy.check(Access::Insert, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Update { table_name, .. } => policy.check(Access::Update, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Delete { table_name } => {
            // DROP TABLE deletes the table's rows: allowed where the table itself may be dropped.
            let dropping = schema_phase && policy.check(Access::Ddl, &table(table_name), DEFAULT_SCHEMA).is_ok();
            if dropping { Ok(()) } else { policy.check(Access::Delete, &table(table_name), DEFAULT_SCHEMA) }
        }
        AuthAction::AlterTable { table_name, .. } => {
            policy.check(Access::Ddl, &table(table_name), DEFAULT_SCHEMA)?;
            scope.altering = true;
            Ok(())
        }
        AuthAction::CreateTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::DropIndex { table_name, .. } => policy.check(Access::Ddl, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Function { function_name } => {
            // SQLite's ALTER TABLE runs internal helpers of its own.
            let internal = schema_phase && function_name.starts_with("sqlite_");
            if internal || function_allowed(None, function_name) {
                Ok(())
            } else {
                Err(Refusal::Function(function_name.to_owned()))
            }
        }
        // CREATE INDEX builds its index with a reindex, which changes no data.
        AuthAction::Reindex { .. } if schema_phase => Ok(()),
        AuthAction::Pragma { pragma_name, pragma_value: None } if READ_PRAGMAS.contains(&pragma_name) => Ok(()),
        AuthAction::Pragma { .. } => Err(class("PRAGMA", "migrations may not read or change connection settings")),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Err(class("transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT)", "the host owns the transaction"))
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Err(class("ATTACH and DETACH", "only the main database is the migration's"))
        }
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropTempView { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropVtable { .. } => Err(class(
            "views, triggers, virtual and temporary tables",
            "only tables, their columns and indexes may change",
        )),
        other => Err(Refusal::StatementClass {
            what: readable(&other),
            why: "only reads, granted data changes and granted table and index changes are allowed",
        }),
    }
}

/// An authorizer action in words: `AttachDatabase { filename: "x" }` becomes
/// `attach database x`, for a refusal a person reads.
fn readable(action: &AuthAction<'_>) -> String {
    let debug = format!("{action:?}");
    let variant_end = debug.find([' ', '{', '(']).unwrap_or(debug.len());
    let mut words = String::new();
    for c in debug[..variant_end].chars() {
        if c.is_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    // The names the action carries are its quoted fields.
    let names: Vec<&str> = debug[variant_end..].split('"').skip(1).step_by(2).filter(|name| !name.is_empty()).collect();
    if names.is_empty() { words } else { format!("{words} {}", names.join(" ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_actions_read_as_words() {
        assert_eq!(readable(&AuthAction::Attach { filename: "other.db" }), "attach other.db");
        assert_eq!(readable(&AuthAction::CreateTempTable { table_name: "t" }), "create temp table t");
        assert_eq!(readable(&AuthAction::Transaction { operation: rusqlite::hooks::TransactionOperation::Begin }), "transaction");
    }
    use crate::guard::{Grants, GrantsSection};

    fn policy(phase: Phase, read: &[&str], ddl: &[&str]) -> Policy {
        let section = GrantsSection {
            read: read.iter().map(|s| s.to_string()).collect(),
            ddl: ddl.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Policy { grants: Grants::from_section(&section).unwrap(), phase }
    }

    fn context(action: AuthAction<'_>) -> AuthContext<'_> {
        AuthContext { action, database_name: Some("main"), accessor: None }
    }

    #[test]
    fn reads_follow_grants() {
        let p = policy(Phase::Data, &["users"], &[]);
        assert!(
            authorize(
                &p,
                &mut StatementScope::default(),
                &context(AuthAction::Read { table_name: "users", column_name: "email" })
            )
            .is_ok()
        );
        let refusal = authorize(
            &p,
            &mut StatementScope::default(),
            &context(AuthAction::Read { table_name: "secrets", column_name: "token" }),
        )
        .unwrap_err();
        assert!(refusal.to_string().contains("grants.read"), "{refusal}");
    }

    #[test]
    fn attach_pragma_writes_and_transactions_are_refused() {
        let p = policy(Phase::Schema, &["users"], &["users"]);
        assert!(
            authorize(&p, &mut StatementScope::default(), &context(AuthAction::Attach { filename: "/tmp/x.db" }))
                .is_err()
        );
        assert!(
            authorize(
                &p,
                &mut StatementScope::default(),
                &context(AuthAction::Pragma { pragma_name: "writable_schema", pragma_value: Some("1") })
            )
            .is_err()
        );
        assert!(
            authorize(
                &p,
                &mut StatementScope::default(),
                &context(AuthAction::Pragma { pragma_name: "table_info", pragma_value: None })
            )
            .is_ok()
        );
        assert!(
            authorize(
                &p,
                &mut StatementScope::default(),
                &context(AuthAction::Function { function_name: "load_extension" })
            )
            .is_err()
        );
    }

    #[test]
    fn schema_changes_need_the_schema_phase_and_grant() {
        let p = policy(Phase::Schema, &[], &["users"]);
        assert!(
            authorize(
                &p,
                &mut StatementScope::default(),
                &context(AuthAction::AlterTable { database_name: "main", table_name: "users" })
            )
            .is_ok()
        );
        assert!(
            authorize(&p, &mut StatementScope::default(), &context(AuthAction::DropTable { table_name: "secrets" }))
                .is_err()
        );
        let backfill = policy(Phase::Data, &[], &["users"]);
        assert!(
            authorize(
                &backfill,
                &mut StatementScope::default(),
                &context(AuthAction::AlterTable { database_name: "main", table_name: "users" })
            )
            .is_err()
        );
        assert!(
            authorize(
                &backfill,
                &mut StatementScope::default(),
                &context(AuthAction::Insert { table_name: "sqlite_master" })
            )
            .is_err()
        );
    }

    #[test]
    fn conflict_resolution_is_read_from_the_words_not_the_literals() {
        let replaces = |sql: &str| StatementScope::of(sql).map(|s| s.replaces);
        assert_eq!(replaces("INSERT OR REPLACE INTO t VALUES (1)"), Ok(true));
        assert_eq!(replaces("replace into t values (1)"), Ok(true));
        assert_eq!(replaces("/* x */ REPLACE INTO t VALUES (1)"), Ok(true));
        assert_eq!(replaces("UPDATE OR REPLACE t SET x = 1"), Ok(true));
        assert_eq!(replaces("CREATE TABLE t (id INTEGER PRIMARY KEY ON CONFLICT REPLACE)"), Ok(true));
        assert_eq!(replaces("INSERT INTO t VALUES ('OR REPLACE')"), Ok(false));
        assert_eq!(replaces("INSERT INTO \"or\" VALUES (1) -- or replace"), Ok(false));
        assert_eq!(replaces("SELECT replace(x, 'a', 'b') FROM t"), Ok(false));
        assert_eq!(replaces("INSERT OR IGNORE INTO t VALUES (1)"), Ok(false));
        assert!(StatementScope::of("INSERT OR ROLLBACK INTO t VALUES (1)").is_err());
        assert!(StatementScope::of("UPDATE OR ROLLBACK t SET x = 1").is_err());
        assert!(declares_replace("CREATE TABLE t (id INTEGER PRIMARY KEY ON CONFLICT REPLACE, x)"));
        assert!(declares_replace("CREATE TABLE t (x UNIQUE on conflict replace)"));
        assert!(!declares_replace("CREATE TABLE t (x TEXT DEFAULT 'ON CONFLICT REPLACE')"));
    }

    #[test]
    fn internal_tables_are_written_by_no_component_and_schema_sql_is_not_read() {
        let p = policy(Phase::Schema, &["sqlite_sequence"], &["sqlite_sequence", "users"]);
        let mut scope = StatementScope::default();
        for action in [
            AuthAction::Update { table_name: "sqlite_sequence", column_name: "seq" },
            AuthAction::Insert { table_name: "sqlite_sequence" },
            AuthAction::Delete { table_name: "sqlite_sequence" },
            AuthAction::Insert { table_name: "sqlite_stat1" },
        ] {
            assert!(authorize(&p, &mut scope, &context(action)).is_err(), "{action:?}");
        }
        let sql = || context(AuthAction::Read { table_name: "sqlite_master", column_name: "sql" });
        let name = context(AuthAction::Read { table_name: "sqlite_master", column_name: "name" });
        assert!(authorize(&p, &mut scope, &sql()).is_err());
        assert!(authorize(&p, &mut scope, &name).is_ok());
        let alter = context(AuthAction::AlterTable { database_name: "main", table_name: "users" });
        assert!(authorize(&p, &mut scope, &alter).is_ok());
        assert!(authorize(&p, &mut scope, &sql()).is_ok(), "SQLite's own rewrite during a granted ALTER TABLE");
    }

    #[test]
    fn replacing_needs_the_delete_grant() {
        let section =
            GrantsSection { insert: vec!["users".into()], update: vec!["users".into()], ..Default::default() };
        let p = Policy { grants: Grants::from_section(&section).unwrap(), phase: Phase::Data };
        let mut plain = StatementScope::default();
        let mut replacing = StatementScope { replaces: true, ..StatementScope::default() };
        let insert = context(AuthAction::Insert { table_name: "users" });
        assert!(authorize(&p, &mut plain, &insert).is_ok());
        let refusal = authorize(&p, &mut replacing, &insert).unwrap_err();
        assert!(refusal.to_string().contains("grants.delete"), "{refusal}");
    }

    #[test]
    fn the_temp_database_is_not_the_migrations() {
        let p = policy(Phase::Data, &["users"], &[]);
        let temp = AuthContext {
            action: AuthAction::Read { table_name: "users", column_name: "id" },
            database_name: Some("temp"),
            accessor: None,
        };
        assert!(authorize(&p, &mut StatementScope::default(), &temp).is_err());
    }
}

