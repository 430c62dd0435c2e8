//! The PostgreSQL statement as it is sent: every table reference qualified with its schema.
//!
//! Component statements run with `search_path = pg_catalog, pg_temp`, so that functions,
//! operators and types can only resolve to `pg_catalog` however they are spelled and whatever
//! other schemas hold. Tables must still resolve where the grants say, so the guard writes the
//! default schema in front of each unqualified table reference, at the byte offset the parser
//! reports for it. `DROP` names its tables as plain name lists without offsets; it is rebuilt
//! from its parse tree instead. The guard then parses the result again and checks that it
//! reads exactly the tables that were checked, each now qualified, and calls the same functions.

use std::fmt;

use pg_query::protobuf::{self, node::Node as NodeEnum};

/// A name given as `schema.object` for something other than a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    /// The name when it is qualified with a schema other than `pg_catalog`.
    pub fn outside_pg_catalog(names: &[String]) -> Option<QualifiedName> {
        match names {
            [.., schema, name] if schema != "pg_catalog" => {
                Some(QualifiedName { schema: schema.clone(), name: name.clone() })
            }
            _ => None,
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Writes `schema.` in front of the table references starting at `locations` (byte offsets).
pub fn at_locations(statement: &str, locations: &[usize], schema: &str) -> Result<String, String> {
    let mut locations = locations.to_vec();
    locations.sort_unstable();
    locations.dedup();
    let mut sent = String::with_capacity(statement.len() + locations.len() * (schema.len() + 1));
    let mut copied = 0;
    for location in locations {
        if location < copied || !statement.is_char_boundary(location) || location >= statement.len() {
            return Err(format!("the parser placed a table reference at byte {location}, outside the statement"));
        }
        sent.push_str(&statement[copied..location]);
        sent.push_str(schema);
        sent.push('.');
        copied = location;
    }
    sent.push_str(&statement[copied..]);
    Ok(sent)
}

/// `DROP TABLE a, b` with each unqualified name qualified, rebuilt from the parse tree.
pub fn drop_statement(parsed: &mut protobuf::ParseResult, schema: &str) -> Result<String, String> {
    let Some(NodeEnum::DropStmt(drop)) =
        parsed.stmts.first_mut().and_then(|s| s.stmt.as_mut()).and_then(|n| n.node.as_mut())
    else {
        return Err("the statement is not a DROP".into());
    };
    for object in &mut drop.objects {
        if let Some(NodeEnum::List(list)) = object.node.as_mut()
            && list.items.len() == 1
        {
            let name = protobuf::String { sval: schema.to_owned() };
            list.items.insert(0, protobuf::Node { node: Some(NodeEnum::String(name)) });
        }
    }
    pg_query::deparse(parsed, Default::default()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_schema_before_each_reference() {
        let sql = "SELECT * FROM users u JOIN \"Orders\" o ON o.id = u.id";
        let at = |needle: &str| sql.find(needle).unwrap();
        let sent = at_locations(sql, &[at("users"), at("\"Orders\"")], "public").unwrap();
        assert_eq!(sent, "SELECT * FROM public.users u JOIN public.\"Orders\" o ON o.id = u.id");
    }

    #[test]
    fn offsets_outside_the_text_are_refused() {
        assert!(at_locations("SELECT 1", &[40], "public").is_err());
        assert!(at_locations("SELECT 'é'", &[9], "public").is_err());
    }

    #[test]
    fn only_names_outside_pg_catalog_are_reported() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(QualifiedName::outside_pg_catalog(&names(&["pg_catalog", "lower"])), None);
        assert_eq!(QualifiedName::outside_pg_catalog(&names(&["lower"])), None);
        let found = QualifiedName::outside_pg_catalog(&names(&["public", "###"])).unwrap();
        assert_eq!(found.to_string(), "public.###");
    }
}
