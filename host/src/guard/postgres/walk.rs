//! The walk of a statement's parse tree: every table reference it holds (by its shape, a
//! `RangeVar`, wherever it appears), the access each needs, every function it calls, and the
//! names of other objects (operators, types, collations) that must stay in `pg_catalog`.

use pg_query::protobuf::OnConflictAction;
use serde_json::{Map, Value};

use crate::core::TableName;
use crate::guard::qualify::QualifiedName;
use crate::guard::{Access, Refusal};

/// What a walk of the parse tree finds.
#[derive(Default)]
pub(super) struct Found {
    pub(super) tables: Vec<(Access, TableName)>,
    pub(super) functions: Vec<(Option<String>, String)>,
    /// Byte offsets of table references that name no schema.
    pub(super) unqualified: Vec<usize>,
    /// Why the statement is refused whatever the grants, once the walk is done.
    refusals: Vec<Refusal>,
}

impl Found {
    fn refuse(&mut self, what: String, why: &'static str) {
        self.refusals.push(Refusal::StatementClass { what, why });
    }

    /// The first reason the statement is refused whatever the grants, if any.
    pub(super) fn refusal(&mut self) -> Result<(), Refusal> {
        match self.refusals.drain(..).next() {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

/// `DROP TABLE a, b` names its objects as lists of strings, not table references.
pub(super) fn dropped_objects(body: &Value, found: &mut Found) {
    for object in body.get("objects").and_then(Value::as_array).into_iter().flatten() {
        let names = string_list(object.pointer("/node/List/items"));
        match table_from_names(&names) {
            Some(table) if is_temp_schema(table.schema.as_deref()) => {
                found.refuse(format!("DROP of {table}"), TEMP_WHY);
            }
            Some(table) => found.tables.push((Access::Ddl, table)),
            None => found.refuse(format!("DROP of {}", names.join(".")), "name the table as table or schema.table"),
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

/// A list of names made only of strings (`schema.object`), as functions, operators, types,
/// collations and operator classes are named; `None` for any other list.
fn name_list(value: &Value) -> Option<Vec<String>> {
    let count = value.as_array()?.len();
    let names = string_list(Some(value));
    (count > 0 && names.len() == count).then_some(names)
}

fn table_from_names(names: &[String]) -> Option<TableName> {
    match names {
        [name] => Some(TableName { schema: None, name: name.clone() }),
        [schema, name] => Some(TableName { schema: Some(schema.clone()), name: name.clone() }),
        [_catalog, schema, name] => Some(TableName { schema: Some(schema.clone()), name: name.clone() }),
        _ => None,
    }
}

/// `pg_temp` and the per-session `pg_temp_N` (and their TOAST schemas).
fn is_temp_schema(schema: Option<&str>) -> bool {
    schema.is_some_and(|s| s.starts_with("pg_temp") || s.starts_with("pg_toast_temp"))
}

const TEMP_WHY: &str =
    "a temporary object outlives the component's call and shadows real tables for the rest of the session";

/// Fields of the parse tree that name an operator, type, collation, operator class or sampling
/// method as a list of strings. `items` is a `List` node's content, the form an exclusion
/// constraint's operator takes; a list of names there is checked the same way. Functions
/// (`funcname`) are checked against the allowlist, which admits only `pg_catalog` too.
const OBJECT_NAME_FIELDS: &[&str] =
    &["name", "names", "collname", "opclass", "collation", "use_op", "oper_name", "method", "items"];

/// Visits every node; tables found take `access` unless a data-changing statement says more.
/// `ctes` are the CTE names visible here: an unqualified reference to one is not a table.
pub(super) fn walk(value: &Value, access: Access, ctes: &[String], found: &mut Found) {
    match value {
        Value::Object(map) => walk_object(map, access, ctes, found),
        Value::Array(items) => items.iter().for_each(|item| walk(item, access, ctes, found)),
        _ => {}
    }
}

pub(super) fn walk_object(map: &Map<String, Value>, access: Access, ctes: &[String], found: &mut Found) {
    if let Some(Value::String(name)) = map.get("relname") {
        return table_reference(map, name, access, ctes, found);
    }
    // A statement with a WITH clause: its CTE names are visible in its body, and in the CTE
    // bodies only as SQL scopes them (a non-recursive CTE sees the ones before it, not itself).
    if let Some(with) = map.get("with_clause").filter(|w| w.is_object()) {
        let ctes = walk_with_clause(with, access, ctes, found);
        let rest: Map<String, Value> =
            map.iter().filter(|(k, _)| *k != "with_clause").map(|(k, v)| (k.clone(), v.clone())).collect();
        return walk_object(&rest, access, &ctes, found);
    }
    // SELECT … FOR UPDATE/SHARE locks the rows it reads: that needs the grant and the phase
    // that changing them would.
    let locks_rows = map.get("locking_clause").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    for (key, child) in map {
        if OBJECT_NAME_FIELDS.contains(&key.as_str()) {
            object_name(child, found);
        }
        match key.as_str() {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => walk_data_change(key, child, ctes, found),
            "FuncCall" => {
                let names = string_list(child.get("funcname"));
                if let Some((name, schema)) = names.split_last() {
                    found.functions.push((schema.last().cloned(), name.clone()));
                }
                walk(child, access, ctes, found);
            }
            // SELECT … INTO and CREATE TABLE … AS create a table.
            "into_clause" | "into" => walk(child, Access::Ddl, ctes, found),
            "from_clause" if locks_rows => walk(child, Access::Update, ctes, found),
            "access_method" => {
                if let Some(method) = child.as_str().filter(|m| !m.is_empty() && !BUILT_IN_ACCESS_METHODS.contains(m)) {
                    found.refuse(
                        format!("access method {method}"),
                        "only PostgreSQL's built-in access methods may be used",
                    );
                }
            }
            _ => walk(child, access, ctes, found),
        }
    }
}

/// Access methods PostgreSQL itself defines; any other was created in the database and runs
/// its handler's code.
const BUILT_IN_ACCESS_METHODS: &[&str] = &["heap", "btree", "hash", "gist", "gin", "spgist", "brin"];

/// A `RangeVar`: a table (or index) reference, or a CTE's name.
fn table_reference(map: &Map<String, Value>, name: &str, access: Access, ctes: &[String], found: &mut Found) {
    let schema = map.get("schemaname").and_then(Value::as_str).filter(|s| !s.is_empty());
    if schema.is_none() && ctes.iter().any(|cte| cte == name) {
        return;
    }
    let temporary = map.get("relpersistence").and_then(Value::as_str) == Some("t");
    if temporary || is_temp_schema(schema) {
        let what = format!("the temporary table {}", schema.map_or(name.to_owned(), |s| format!("{s}.{name}")));
        return found.refuse(what, TEMP_WHY);
    }
    if schema.is_none() {
        match map.get("location").and_then(Value::as_u64).and_then(|l| usize::try_from(l).ok()) {
            Some(location) => found.unqualified.push(location),
            None => found.refuse(format!("table {name}"), "name it with its schema (schema.table)"),
        }
    }
    found.tables.push((access, TableName { schema: schema.map(str::to_owned), name: name.to_owned() }));
}

/// A function, operator, type, collation or operator class named as `schema.name`: only
/// `pg_catalog`'s may be named; an unqualified name can only resolve there.
fn object_name(names: &Value, found: &mut Found) {
    let Some(names) = name_list(names) else { return };
    if let Some(name) = QualifiedName::outside_pg_catalog(&names) {
        found.refuse(
            name.to_string(),
            "a component may name only pg_catalog's functions, operators, types and collations",
        );
    }
}

/// Walks the CTE bodies of a WITH clause; returns the names visible in the statement body.
fn walk_with_clause(with: &Value, access: Access, outer: &[String], found: &mut Found) -> Vec<String> {
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
            walk(query, access, &visible, found);
        }
    }
    let mut visible = outer.to_vec();
    visible.extend(names);
    visible
}

fn walk_data_change(kind: &str, statement: &Value, ctes: &[String], found: &mut Found) {
    let Some(fields) = statement.as_object() else { return };
    let ctes = match fields.get("with_clause").filter(|w| w.is_object()) {
        Some(with) => walk_with_clause(with, Access::Read, ctes, found),
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
            walk(target, access, &[], found);
        }
    }
    for (key, child) in fields {
        if key != "relation" && key != "with_clause" {
            walk(child, Access::Read, &ctes, found);
        }
    }
}
