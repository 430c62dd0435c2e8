//! Which statements of a migration's script destroy or rewrite stored data — what
//! `[backup] before = "destructive"` backs up before — read with PostgreSQL's grammar.
//!
//! A statement the grammar cannot read (SQLite's own syntax, say) is judged by its leading
//! words instead, so that a backup is never skipped for want of a parse.

use pg_query::protobuf::node::Node;
use pg_query::protobuf::{AlterTableType, ObjectType};

/// The first statement of a script that drops or rewrites data: what it is, and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destruction {
    /// In words: `DROP TABLE`, `ALTER TABLE … DROP COLUMN`, `DELETE`, …
    pub what: String,
    /// The 1-based line the statement starts on.
    pub line: usize,
}

/// The first statement of `script` that drops or rewrites stored data, if any: dropping a
/// table, schema, sequence or materialized view, a column, or a database; changing a
/// column's type; `TRUNCATE`, `DELETE`, `UPDATE` and `MERGE`.
pub fn destruction(script: &str) -> Option<Destruction> {
    match pg_query::parse(script, 0) {
        Ok(parsed) => parsed.protobuf.stmts.iter().find_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let at = usize::try_from(raw.stmt_location).unwrap_or(0);
            destroys(node).map(|what| Destruction { what, line: line_of(script, at) })
        }),
        Err(_) => by_leading_words(script),
    }
}

fn destroys(node: &Node) -> Option<String> {
    let object = |kind: i32| ObjectType::try_from(kind).unwrap_or(ObjectType::Undefined);
    match node {
        Node::DropStmt(drop) => match object(drop.remove_type) {
            ObjectType::ObjectTable => Some("DROP TABLE".into()),
            ObjectType::ObjectSchema => Some("DROP SCHEMA".into()),
            ObjectType::ObjectSequence => Some("DROP SEQUENCE".into()),
            ObjectType::ObjectMatview => Some("DROP MATERIALIZED VIEW".into()),
            _ => None,
        },
        Node::DropdbStmt(_) => Some("DROP DATABASE".into()),
        Node::TruncateStmt(_) => Some("TRUNCATE".into()),
        Node::DeleteStmt(_) => Some("DELETE".into()),
        Node::UpdateStmt(_) => Some("UPDATE".into()),
        Node::MergeStmt(_) => Some("MERGE".into()),
        Node::AlterTableStmt(alter) => alter.cmds.iter().find_map(|command| match command.node.as_ref()? {
            Node::AlterTableCmd(command) => {
                match AlterTableType::try_from(command.subtype).unwrap_or(AlterTableType::Undefined) {
                    AlterTableType::AtDropColumn => Some("ALTER TABLE … DROP COLUMN".into()),
                    AlterTableType::AtAlterColumnType => Some("ALTER TABLE … ALTER COLUMN … TYPE".into()),
                    _ => None,
                }
            }
            _ => None,
        }),
        _ => None,
    }
}

/// For a script the grammar cannot read: each statement (as PostgreSQL's scanner splits them)
/// by its first words.
fn by_leading_words(script: &str) -> Option<Destruction> {
    let statements = pg_query::split_with_scanner(script).unwrap_or_else(|_| vec![script]);
    statements.into_iter().find_map(|statement| {
        let words: Vec<String> =
            statement.split_whitespace().take(3).map(|word| word.trim_end_matches(';').to_ascii_uppercase()).collect();
        let upper = statement.to_ascii_uppercase();
        let what = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["DROP", "TABLE" | "SCHEMA" | "SEQUENCE" | "DATABASE", ..] => format!("DROP {}", words[1]),
            ["DROP", "MATERIALIZED", ..] => "DROP MATERIALIZED VIEW".into(),
            ["TRUNCATE" | "DELETE" | "UPDATE" | "MERGE" | "REPLACE", ..] => words[0].clone(),
            ["ALTER", "TABLE", ..] if upper.contains("DROP COLUMN") => "ALTER TABLE … DROP COLUMN".into(),
            _ => return None,
        };
        // The scanner's pieces are slices of the script, so the offset is where it starts.
        let at = (statement.as_ptr() as usize).saturating_sub(script.as_ptr() as usize);
        Some(Destruction { what, line: line_of(script, at) })
    })
}

/// The line of the first non-blank character at or after byte `at` (a statement's location
/// includes the blanks after the statement before it).
fn line_of(script: &str, at: usize) -> usize {
    let rest = script.get(at..).unwrap_or_default();
    let start = at + (rest.len() - rest.trim_start().len());
    1 + script.bytes().take(start).filter(|&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(script: &str) -> Option<String> {
        destruction(script).map(|d| d.what)
    }

    #[test]
    fn creating_and_adding_destroy_nothing() {
        assert_eq!(what("CREATE TABLE a (id BIGINT); ALTER TABLE a ADD COLUMN b TEXT; CREATE INDEX i ON a (b);"), None);
        assert_eq!(what("INSERT INTO a VALUES (1); DROP INDEX i; DROP VIEW v;"), None);
    }

    #[test]
    fn drops_and_rewrites_are_named_with_their_line() {
        let found = destruction("CREATE TABLE b (id BIGINT);\n\n  DROP TABLE a;\n").unwrap();
        assert_eq!(found, Destruction { what: "DROP TABLE".into(), line: 3 });
        assert_eq!(what("ALTER TABLE a ADD COLUMN c TEXT, DROP COLUMN b;").as_deref(), Some("ALTER TABLE … DROP COLUMN"));
        assert_eq!(what("ALTER TABLE a ALTER COLUMN b TYPE BIGINT;").as_deref(), Some("ALTER TABLE … ALTER COLUMN … TYPE"));
        assert_eq!(what("UPDATE a SET b = 1;").as_deref(), Some("UPDATE"));
        assert_eq!(what("DELETE FROM a;").as_deref(), Some("DELETE"));
        assert_eq!(what("TRUNCATE a;").as_deref(), Some("TRUNCATE"));
        assert_eq!(what("DROP SCHEMA s;").as_deref(), Some("DROP SCHEMA"));
    }

    #[test]
    fn sqlite_syntax_is_judged_by_its_words() {
        let sqlite = "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT);\nDROP TABLE b;";
        assert!(pg_query::parse(sqlite, 0).is_err(), "the grammar cannot read it");
        assert_eq!(destruction(sqlite), Some(Destruction { what: "DROP TABLE".into(), line: 2 }));
        assert_eq!(what("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT);"), None);
    }
}
