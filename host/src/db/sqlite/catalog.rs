//! The SQLite schema snapshot, from `sqlite_schema` and the `pragma_*` table functions:
//! tables and views, columns (declared type, `NOT NULL`, default, primary-key position),
//! indexes and triggers as their stored SQL, the constraints SQLite keeps apart from a
//! table's text (foreign keys, and the unique and primary-key indexes it makes for them), and
//! the `CHECK` constraints, which live only in that text ([`checks`]).

use crate::db::database::{Database, cell};
use crate::db::error::DbError;
use crate::db::schema::{ObjectKind, Schema, SchemaObject};

use super::checks::checks;

/// SQLite's one namespace for a connection's own database.
const MAIN: &str = "main";

/// The tables and views a snapshot reads: the database's own, not SQLite's internal ones.
const USER_RELATIONS: &str = "m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";

pub(super) async fn snapshot(db: &dyn Database) -> Result<Schema, DbError> {
    let mut schema = Schema::default();
    let object = |table: &str, kind: ObjectKind, name: &str| SchemaObject {
        schema: MAIN.to_owned(),
        table: table.to_owned(),
        kind,
        name: name.to_owned(),
    };
    let relations = format!("SELECT m.name, m.type, m.sql FROM sqlite_schema m WHERE {USER_RELATIONS}");
    for row in db.query(&relations, &[]).await?.values {
        let Some(table) = cell(&row, 0) else { continue };
        if cell(&row, 1).as_deref() == Some("view") {
            let definition = format!("view {}", cell(&row, 2).unwrap_or_default());
            schema.insert(object(&table, ObjectKind::View, &table), &definition);
        } else {
            schema.insert(object(&table, ObjectKind::Table, &table), "table");
            for check in checks(&cell(&row, 2).unwrap_or_default()) {
                schema.insert(object(&table, ObjectKind::Constraint, &check), &check);
            }
        }
    }
    let columns = format!(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk \
         FROM sqlite_schema m JOIN pragma_table_info(m.name) p WHERE {USER_RELATIONS}"
    );
    for row in db.query(&columns, &[]).await?.values {
        let (Some(table), Some(column)) = (cell(&row, 0), cell(&row, 1)) else { continue };
        let mut definition = cell(&row, 2).unwrap_or_default().to_lowercase();
        if cell(&row, 3).as_deref() == Some("1") {
            definition.push_str(" not null");
        }
        if let Some(default) = cell(&row, 4) {
            definition.push_str(&format!(" default {default}"));
        }
        match cell(&row, 5).as_deref() {
            None | Some("0") => {}
            Some(position) => definition.push_str(&format!(" primary key ({position})")),
        }
        schema.insert(object(&table, ObjectKind::Column, &column), &definition);
    }
    let indexes = "SELECT m.tbl_name, m.name, m.sql, m.type FROM sqlite_schema m \
                   WHERE m.type IN ('index', 'trigger') AND m.sql IS NOT NULL";
    for row in db.query(indexes, &[]).await?.values {
        let (Some(table), Some(name)) = (cell(&row, 0), cell(&row, 1)) else { continue };
        let kind = if cell(&row, 3).as_deref() == Some("trigger") { ObjectKind::Trigger } else { ObjectKind::Index };
        schema.insert(object(&table, kind, &name), &cell(&row, 2).unwrap_or_default());
    }
    // The indexes SQLite makes for UNIQUE and PRIMARY KEY constraints have no SQL of their own
    // and names that follow creation order; they are named here by their columns.
    let keys = format!(
        "SELECT m.name, l.origin, l.\"unique\", group_concat(i.name, ', ') \
         FROM sqlite_schema m JOIN pragma_index_list(m.name) l JOIN pragma_index_info(l.name) i \
         WHERE {USER_RELATIONS} AND l.origin IN ('u', 'pk') GROUP BY m.name, l.name ORDER BY m.name, l.name"
    );
    for row in db.query(&keys, &[]).await?.values {
        let (Some(table), Some(columns)) = (cell(&row, 0), cell(&row, 3)) else { continue };
        let kind = if cell(&row, 1).as_deref() == Some("pk") { "primary key" } else { "unique" };
        let definition = format!("{kind} ({columns})");
        schema.insert(object(&table, ObjectKind::Constraint, &definition), &definition);
    }
    let foreign_keys = format!(
        "SELECT m.name, f.id, f.\"table\", group_concat(f.\"from\", ', '), group_concat(f.\"to\", ', '), \
           f.on_update, f.on_delete \
         FROM sqlite_schema m JOIN pragma_foreign_key_list(m.name) f \
         WHERE {USER_RELATIONS} GROUP BY m.name, f.id ORDER BY m.name, f.id"
    );
    for row in db.query(&foreign_keys, &[]).await?.values {
        let Some(table) = cell(&row, 0) else { continue };
        let from = cell(&row, 3).unwrap_or_default();
        let definition = format!(
            "foreign key ({from}) references {}({}) on update {} on delete {}",
            cell(&row, 2).unwrap_or_default(),
            cell(&row, 4).unwrap_or_default(),
            cell(&row, 5).unwrap_or_default().to_lowercase(),
            cell(&row, 6).unwrap_or_default().to_lowercase(),
        );
        schema.insert(object(&table, ObjectKind::Constraint, &format!("foreign key ({from})")), &definition);
    }
    Ok(schema)
}
