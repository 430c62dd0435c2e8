//! Other migration tools' history tables, read (never written) so that a team moving to wasmig
//! keeps its history: `wasmig stamp --from TOOL` stamps what that tool had applied. Each
//! [`OtherTool`] names its table and how a row says a migration is applied.
//!
//! The tables are named as each tool creates them by default, unqualified: they are found on
//! the session's `search_path`, as the tool itself found them. No component has run on the
//! session when they are read, so no temporary table can stand in for one.

use std::fmt;

use crate::db::{Database, DbError, DbErrorKind, Value};

/// A migration tool whose history wasmig can take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherTool {
    /// `alembic_version (version_num)`: the head revision ids, not a list.
    Alembic,
    /// `_sqlx_migrations (version, success)`.
    Sqlx,
    /// `goose_db_version (version_id, is_applied)`: a log, the latest row per version wins.
    Goose,
    /// `schema_migrations (version)`: dbmate's (and Rails').
    Dbmate,
    /// `flyway_schema_history (version, success)`.
    Flyway,
}

impl OtherTool {
    pub const ALL: [OtherTool; 5] =
        [OtherTool::Alembic, OtherTool::Sqlx, OtherTool::Goose, OtherTool::Dbmate, OtherTool::Flyway];

    pub fn name(self) -> &'static str {
        match self {
            OtherTool::Alembic => "alembic",
            OtherTool::Sqlx => "sqlx",
            OtherTool::Goose => "goose",
            OtherTool::Dbmate => "dbmate",
            OtherTool::Flyway => "flyway",
        }
    }

    pub fn parse(name: &str) -> Option<OtherTool> {
        OtherTool::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// The table the tool keeps its history in.
    pub fn table(self) -> &'static str {
        match self {
            OtherTool::Alembic => "alembic_version",
            OtherTool::Sqlx => "_sqlx_migrations",
            OtherTool::Goose => "goose_db_version",
            OtherTool::Dbmate => "schema_migrations",
            OtherTool::Flyway => "flyway_schema_history",
        }
    }

    /// Whether its ids are revision names (alembic) rather than version numbers.
    pub fn names_revisions(self) -> bool {
        self == OtherTool::Alembic
    }

    /// A query whose rows are each one applied id, as text, in the order the tool applied them.
    fn applied_query(self) -> String {
        let table = self.table();
        match self {
            OtherTool::Alembic => format!("SELECT CAST(version_num AS TEXT) FROM {table} ORDER BY 1"),
            OtherTool::Sqlx => format!("SELECT CAST(version AS TEXT) FROM {table} WHERE success ORDER BY version"),
            // goose logs every up and down; a version is applied when its latest row says so.
            // Version 0 is the row goose writes when it creates the table.
            OtherTool::Goose => format!(
                "SELECT CAST(g.version_id AS TEXT) FROM {table} g WHERE g.version_id <> 0 AND g.is_applied \
                 AND g.id = (SELECT max(l.id) FROM {table} l WHERE l.version_id = g.version_id) ORDER BY g.version_id"
            ),
            OtherTool::Dbmate => format!("SELECT CAST(version AS TEXT) FROM {table} ORDER BY version"),
            // Repeatable migrations (no version) and the baseline's own rows carry no version.
            OtherTool::Flyway => format!(
                "SELECT CAST(version AS TEXT) FROM {table} WHERE success AND version IS NOT NULL \
                 ORDER BY installed_rank"
            ),
        }
    }
}

impl fmt::Display for OtherTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForeignHistoryError {
    #[error("there is no {table} table: this database's history was not kept by {tool}")]
    Missing { tool: OtherTool, table: &'static str },
    #[error("cannot read {tool}'s {table}: {source}")]
    Database { tool: OtherTool, table: &'static str, source: DbError },
    #[error("{tool}'s {table} holds a row wasmig cannot read")]
    Unreadable { tool: OtherTool, table: &'static str },
}

/// The ids `tool` recorded as applied, in the order it applied them.
pub async fn applied_by(db: &dyn Database, tool: OtherTool) -> Result<Vec<String>, ForeignHistoryError> {
    let table = tool.table();
    let rows = match db.query(&tool.applied_query(), &[]).await {
        Ok(rows) => rows,
        Err(error) if error.kind == DbErrorKind::UndefinedTable => {
            return Err(ForeignHistoryError::Missing { tool, table });
        }
        Err(source) => return Err(ForeignHistoryError::Database { tool, table, source }),
    };
    rows.values
        .into_iter()
        .map(|row| match row.into_iter().next() {
            Some(Value::Text(id)) => Ok(id.trim().to_owned()),
            _ => Err(ForeignHistoryError::Unreadable { tool, table }),
        })
        .collect()
}
