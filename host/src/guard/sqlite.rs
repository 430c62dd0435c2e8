//! The SQLite guard: SQLite's own prepare-time authorizer, consulted for every table and
//! column a statement reads or writes, every function it calls and every schema change, even
//! inside views, CTEs and subqueries. This module decides each request from the [`Policy`];
//! `db::sqlite` installs it on the connection for the duration of a component call.

use rusqlite::hooks::{AuthAction, AuthContext};

use super::{Access, Phase, Policy, Refusal, TableName, function_allowed};

pub const DEFAULT_SCHEMA: &str = "main";

/// SQLite's own schema tables: reading them reveals the schema, not data, and SQLite's own
/// DDL reads and writes them (each write is authorised again as the DDL action itself).
const SCHEMA_TABLES: &[&str] = &["sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"];

/// Read-only pragmas a migration may use to inspect its tables.
const READ_PRAGMAS: &[&str] =
    &["table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"];

fn table(name: &str) -> TableName {
    TableName { schema: None, name: name.to_ascii_lowercase() }
}

fn class(what: &str, why: &'static str) -> Refusal {
    Refusal::StatementClass { what: what.to_owned(), why }
}

/// Decides one authorizer request.
pub fn authorize(policy: &Policy, context: &AuthContext<'_>) -> Result<(), Refusal> {
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
        let what = format!("{:?} in database {:?}", context.action, database.unwrap_or_default());
        return Err(Refusal::StatementClass { what, why: "only the main database is the migration's" });
    }
    let schema_phase = policy.phase == Phase::Schema;
    match context.action {
        AuthAction::Select | AuthAction::Recursive => Ok(()),
        AuthAction::Read { table_name, .. } if SCHEMA_TABLES.contains(&table_name) => Ok(()),
        AuthAction::Read { table_name, .. } => policy.check(Access::Read, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if SCHEMA_TABLES.contains(&table_name) =>
        {
            if schema_phase {
                Ok(())
            } else {
                Err(Refusal::PhaseStatement { what: "a schema change".into(), phase: policy.phase })
            }
        }
        AuthAction::Insert { table_name } | AuthAction::Update { table_name, .. }
            if table_name == "sqlite_sequence" =>
        {
            // AUTOINCREMENT bookkeeping for a granted insert.
            if policy.phase.allows(Access::Insert) {
                Ok(())
            } else {
                Err(Refusal::PhaseStatement { what: "a write".into(), phase: policy.phase })
            }
        }
        AuthAction::Insert { table_name } => policy.check(Access::Insert, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Update { table_name, .. } => policy.check(Access::Update, &table(table_name), DEFAULT_SCHEMA),
        AuthAction::Delete { table_name } => {
            // DROP TABLE deletes the table's rows: allowed where the table itself may be dropped.
            let dropping = schema_phase && policy.check(Access::Ddl, &table(table_name), DEFAULT_SCHEMA).is_ok();
            if dropping { Ok(()) } else { policy.check(Access::Delete, &table(table_name), DEFAULT_SCHEMA) }
        }
        AuthAction::CreateTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
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
            what: format!("{other:?}"),
            why: "only reads, granted data changes and granted table and index changes are allowed",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(authorize(&p, &context(AuthAction::Read { table_name: "users", column_name: "email" })).is_ok());
        let refusal =
            authorize(&p, &context(AuthAction::Read { table_name: "secrets", column_name: "token" })).unwrap_err();
        assert!(refusal.to_string().contains("grants.read"), "{refusal}");
    }

    #[test]
    fn attach_pragma_writes_and_transactions_are_refused() {
        let p = policy(Phase::Schema, &["users"], &["users"]);
        assert!(authorize(&p, &context(AuthAction::Attach { filename: "/tmp/x.db" })).is_err());
        assert!(
            authorize(&p, &context(AuthAction::Pragma { pragma_name: "writable_schema", pragma_value: Some("1") }))
                .is_err()
        );
        assert!(authorize(&p, &context(AuthAction::Pragma { pragma_name: "table_info", pragma_value: None })).is_ok());
        assert!(authorize(&p, &context(AuthAction::Function { function_name: "load_extension" })).is_err());
    }

    #[test]
    fn schema_changes_need_the_schema_phase_and_grant() {
        let p = policy(Phase::Schema, &[], &["users"]);
        assert!(authorize(&p, &context(AuthAction::AlterTable { database_name: "main", table_name: "users" })).is_ok());
        assert!(authorize(&p, &context(AuthAction::DropTable { table_name: "secrets" })).is_err());
        let backfill = policy(Phase::Data, &[], &["users"]);
        assert!(
            authorize(&backfill, &context(AuthAction::AlterTable { database_name: "main", table_name: "users" }))
                .is_err()
        );
        assert!(authorize(&backfill, &context(AuthAction::Insert { table_name: "sqlite_master" })).is_err());
    }

    #[test]
    fn the_temp_database_is_not_the_migrations() {
        let p = policy(Phase::Data, &["users"], &[]);
        let temp = AuthContext {
            action: AuthAction::Read { table_name: "users", column_name: "id" },
            database_name: Some("temp"),
            accessor: None,
        };
        assert!(authorize(&p, &temp).is_err());
    }
}
