//! The statement classes of PostgreSQL's grammar a migration may run, and why every other
//! class is refused: reads and data changes, and schema changes to tables, their columns and
//! indexes only (no ownership, row-level security or CASCADE).

use pg_query::protobuf::{AlterTableType, DropBehavior, ObjectType};
use serde_json::Value;

use crate::guard::Refusal;

pub(super) const DATA_STATEMENTS: &[&str] = &["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"];
pub(super) const SCHEMA_STATEMENTS: &[&str] = &["CreateStmt", "AlterTableStmt", "IndexStmt", "DropStmt", "RenameStmt"];

/// A plain-words name and the reason for statement kinds a migration may never run.
pub(super) fn forbidden(kind: &str) -> (String, &'static str) {
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

fn int_field(body: &Value, field: &str) -> i32 {
    body.get(field).and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
}

/// Refuses schema changes beyond tables and indexes, the ALTER TABLE forms that change
/// ownership or row-level security, and CASCADE, which reaches objects no grant names (a view
/// over the table, another table's foreign key): without it, PostgreSQL refuses a change that
/// other objects depend on, and the migration says what to drop first.
pub(super) fn check_schema_change(kind: &str, body: &Value) -> Result<(), Refusal> {
    let refuse = |what: String| Err(Refusal::StatementClass { what, why: "only tables, their columns and indexes may change" });
    let object_type = |field| ObjectType::try_from(int_field(body, field)).unwrap_or(ObjectType::Undefined);
    let cascade = DropBehavior::DropCascade as i32;
    if kind == "DropStmt" && int_field(body, "behavior") == cascade {
        return Err(Refusal::StatementClass { what: "DROP … CASCADE".into(), why: CASCADE_WHY });
    }
    match kind {
        "DropStmt" if !matches!(object_type("remove_type"), ObjectType::ObjectTable | ObjectType::ObjectIndex) => {
            refuse(format!("DROP {}", object_type("remove_type").as_str_name()))
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
            refuse(format!("RENAME of {}", object_type("rename_type").as_str_name()))
        }
        "AlterTableStmt" => {
            let commands = body.get("cmds").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for command in commands {
                let Some(command) = command.pointer("/node/AlterTableCmd") else { continue };
                if int_field(command, "behavior") == cascade {
                    return Err(Refusal::StatementClass { what: "ALTER TABLE … CASCADE".into(), why: CASCADE_WHY });
                }
                let subtype =
                    AlterTableType::try_from(int_field(command, "subtype")).unwrap_or(AlterTableType::Undefined);
                if matches!(
                    subtype,
                    AlterTableType::AtChangeOwner
                        | AlterTableType::AtEnableRowSecurity
                        | AlterTableType::AtDisableRowSecurity
                        | AlterTableType::AtForceRowSecurity
                        | AlterTableType::AtNoForceRowSecurity
                        | AlterTableType::AtSetAccessMethod
                ) {
                    return refuse(format!("ALTER TABLE … {}", subtype.as_str_name()));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

const CASCADE_WHY: &str = "CASCADE drops objects the grants do not name; drop or alter each dependent object itself";
