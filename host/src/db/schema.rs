//! [`Schema`]: a snapshot of what a database's schema holds (tables and views, columns and
//! their types, indexes, constraints, triggers, sequences, functions, enum and domain types,
//! extensions, and the privileges granted on tables), each object with its definition as the
//! server prints it, and the [`SchemaDifference`]s between two snapshots.
//!
//! Definitions are the server's own rendering (PostgreSQL's `format_type`,
//! `pg_get_indexdef`, `pg_get_constraintdef`, `pg_get_triggerdef`, `pg_get_functiondef`;
//! SQLite's `pragma` rows and stored SQL), so two databases built by the same statements
//! compare equal, whatever spelling created them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What kind of object a definition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Table,
    View,
    Column,
    Index,
    Constraint,
    Trigger,
    /// A sequence; one a column owns (`serial`, identity) belongs to that column's table.
    Sequence,
    /// The privileges one role (the object's name) holds on a table, view or sequence, beyond
    /// its owner's.
    Grant,
    /// A function or procedure, named with its argument types.
    Function,
    /// An enum or domain type.
    Type,
    Extension,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Column => "column",
            ObjectKind::Index => "index",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Grant => "grant",
            ObjectKind::Function => "function",
            ObjectKind::Type => "type",
            ObjectKind::Extension => "extension",
        }
    }
}

/// One object of a schema: where it lives (the table it belongs to; its own name for a table,
/// view, function, type, extension or a sequence no column owns) and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaObject {
    /// The namespace: PostgreSQL's schema, SQLite's `main`.
    pub schema: String,
    pub table: String,
    pub kind: ObjectKind,
    /// The object's own name: the table's for a table or view, a function's with its argument
    /// types, a grant's role; else the column's, index's, constraint's, trigger's, sequence's,
    /// type's or extension's.
    pub name: String,
}

impl SchemaObject {
    /// Whether this is the table or view itself rather than a part of one.
    fn is_relation(&self) -> bool {
        matches!(self.kind, ObjectKind::Table | ObjectKind::View)
    }
}

impl fmt::Display for SchemaObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.name();
        match self.kind {
            ObjectKind::Table | ObjectKind::View => write!(f, "{kind} {}.{}", self.schema, self.table),
            ObjectKind::Column => write!(f, "{kind} {}.{}.{}", self.schema, self.table, self.name),
            ObjectKind::Index | ObjectKind::Constraint | ObjectKind::Trigger => {
                write!(f, "{kind} {} on {}.{}", self.name, self.schema, self.table)
            }
            ObjectKind::Grant => write!(f, "grant to {} on {}.{}", self.name, self.schema, self.table),
            ObjectKind::Sequence | ObjectKind::Function | ObjectKind::Type | ObjectKind::Extension => {
                write!(f, "{kind} {}.{}", self.schema, self.name)
            }
        }
    }
}

/// A database's schema: every object and its definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    objects: BTreeMap<SchemaObject, String>,
}

impl Schema {
    /// Adds an object; whitespace runs in its definition count as one space.
    pub fn insert(&mut self, object: SchemaObject, definition: &str) {
        let definition = definition.split_whitespace().collect::<Vec<_>>().join(" ");
        self.objects.insert(object, definition);
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Every object and its definition, in order.
    pub fn objects(&self) -> impl Iterator<Item = (&SchemaObject, &str)> {
        self.objects.iter().map(|(object, definition)| (object, definition.as_str()))
    }

    /// The namespaces that hold an object.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.objects.keys().map(|object| object.schema.clone()).collect()
    }

    /// Drops the objects of the tables `drop(schema, table)` names (the engine's own ledger).
    pub fn without_tables(mut self, drop: impl Fn(&str, &str) -> bool) -> Schema {
        self.objects.retain(|object, _| !drop(&object.schema, &object.table));
        self
    }

    /// Keeps only the objects in `namespaces`.
    pub fn within(mut self, namespaces: &BTreeSet<String>) -> Schema {
        self.objects.retain(|object, _| namespaces.contains(&object.schema));
        self
    }

    /// What `actual` has that differs from `self`, the expected schema. A table missing or
    /// unexpected as a whole is one difference, not one per column, index and constraint.
    pub fn differences(&self, actual: &Schema) -> Vec<SchemaDifference> {
        let whole = |schema: &Schema, other: &Schema| -> BTreeSet<(String, String)> {
            schema
                .objects
                .keys()
                .filter(|object| object.is_relation() && !other.has_relation(&object.schema, &object.table))
                .map(|object| (object.schema.clone(), object.table.clone()))
                .collect()
        };
        let (missing_tables, extra_tables) = (whole(self, actual), whole(actual, self));
        let covered = |object: &SchemaObject, tables: &BTreeSet<(String, String)>| {
            !object.is_relation() && tables.contains(&(object.schema.clone(), object.table.clone()))
        };
        let mut differences = Vec::new();
        for (object, expected) in &self.objects {
            match actual.objects.get(object) {
                Some(found) if found == expected => {}
                Some(found) => differences.push(SchemaDifference::changed(object, expected, found)),
                None if covered(object, &missing_tables) => {}
                None => differences.push(SchemaDifference::missing(object, expected)),
            }
        }
        for (object, found) in &actual.objects {
            if !self.objects.contains_key(object) && !covered(object, &extra_tables) {
                differences.push(SchemaDifference::unexpected(object, found));
            }
        }
        differences.sort_by(|a, b| a.object.cmp(&b.object));
        differences
    }

    fn has_relation(&self, schema: &str, table: &str) -> bool {
        self.objects.keys().any(|object| object.is_relation() && object.schema == schema && object.table == table)
    }
}

/// One way a schema differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDifference {
    pub object: SchemaObject,
    /// Its expected definition; `None` when it should not exist.
    pub expected: Option<String>,
    /// Its definition as found; `None` when it is missing.
    pub found: Option<String>,
}

impl SchemaDifference {
    fn missing(object: &SchemaObject, expected: &str) -> Self {
        SchemaDifference { object: object.clone(), expected: Some(expected.to_owned()), found: None }
    }

    fn unexpected(object: &SchemaObject, found: &str) -> Self {
        SchemaDifference { object: object.clone(), expected: None, found: Some(found.to_owned()) }
    }

    fn changed(object: &SchemaObject, expected: &str, found: &str) -> Self {
        SchemaDifference { object: object.clone(), expected: Some(expected.to_owned()), found: Some(found.to_owned()) }
    }

    /// `missing`, `unexpected` or `changed`: the JSON name of the difference.
    pub fn change(&self) -> &'static str {
        match (&self.expected, &self.found) {
            (Some(_), None) => "missing",
            (None, _) => "unexpected",
            (Some(_), Some(_)) => "changed",
        }
    }
}

impl fmt::Display for SchemaDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.expected, &self.found) {
            (Some(expected), None) => write!(f, "missing {} ({expected})", self.object),
            (Some(expected), Some(found)) => write!(f, "{}: expected {expected}, found {found}", self.object),
            (None, found) => write!(f, "unexpected {} ({})", self.object, found.as_deref().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(table: &str, kind: ObjectKind, name: &str) -> SchemaObject {
        SchemaObject { schema: "public".into(), table: table.into(), kind, name: name.into() }
    }

    fn users() -> Schema {
        let mut schema = Schema::default();
        schema.insert(object("users", ObjectKind::Table, "users"), "table");
        schema.insert(object("users", ObjectKind::Column, "id"), "bigint  not null");
        schema.insert(object("users", ObjectKind::Column, "email"), "text");
        schema.insert(object("users", ObjectKind::Index, "users_email"), "CREATE INDEX users_email ON users (email)");
        schema
    }

    #[test]
    fn equal_schemas_have_no_differences_whatever_the_whitespace() {
        let mut other = Schema::default();
        for (object, definition) in users().objects() {
            other.insert(object.clone(), &format!(" {}\n", definition.replace(' ', "\t ")));
        }
        assert_eq!(users().differences(&other), []);
    }

    #[test]
    fn a_changed_column_and_a_missing_index_are_named() {
        let mut found = users();
        found.insert(object("users", ObjectKind::Column, "email"), "character varying(200)");
        found.objects.remove(&object("users", ObjectKind::Index, "users_email"));
        let differences = users().differences(&found);
        let shown: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "column public.users.email: expected text, found character varying(200)",
                "missing index users_email on public.users (CREATE INDEX users_email ON users (email))",
            ]
        );
        assert_eq!(differences.iter().map(SchemaDifference::change).collect::<Vec<_>>(), ["changed", "missing"]);
    }

    #[test]
    fn a_table_missing_or_unexpected_as_a_whole_is_one_difference() {
        let differences = users().differences(&Schema::default());
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert_eq!(differences[0].object.kind, ObjectKind::Table);
        let differences = Schema::default().differences(&users());
        assert_eq!((differences.len(), differences[0].change()), (1, "unexpected"));
    }

    #[test]
    fn the_ledger_and_other_namespaces_can_be_left_out() {
        let mut schema = users();
        schema.insert(object("wasmig_history", ObjectKind::Table, "wasmig_history"), "table");
        schema.insert(
            SchemaObject { schema: "other".into(), table: "t".into(), kind: ObjectKind::Table, name: "t".into() },
            "table",
        );
        let kept = schema.without_tables(|_, table| table == "wasmig_history").within(&["public".to_owned()].into());
        assert_eq!(kept, users());
    }
}
