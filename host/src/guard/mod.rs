//! The guard: layer 2 of the sandbox. Every statement a component sends is checked against the
//! grants its manifest declares and the phase it runs in, before it reaches the database.
//!
//! Invariant 3: a component sees only what its manifest grants. PostgreSQL statements are
//! parsed with PostgreSQL's own grammar (libpg_query, [`postgres`]); SQLite's faithful check is
//! its own prepare-time authorizer, driven by the same [`Policy`] (`db::sqlite`). Functions
//! come from an allowlist rather than a denylist: PostgreSQL ships thousands of functions and
//! every release adds more, so only a list of known-harmless ones can stay safe over time.
//!
//! [`destructive`] reads a migration's own scripts with the same grammar, for what drops or
//! rewrites data: the steps a backup comes before.

pub mod destructive;
pub mod postgres;
mod qualify;
pub mod sqlite;

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use crate::core::TableName;

/// `[grants]` in `migration.toml`: the tables a component may touch, by kind of access.
/// The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSection {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub insert: Vec<String>,
    #[serde(default)]
    pub update: Vec<String>,
    #[serde(default)]
    pub delete: Vec<String>,
    /// Tables (and indexes) the component may create, alter or drop in `up` and `down`.
    #[serde(default)]
    pub ddl: Vec<String>,
}


/// How a statement touches a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Insert,
    Update,
    Delete,
    Ddl,
}

impl Access {
    fn grant_key(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Insert => "insert",
            Access::Update => "update",
            Access::Delete => "delete",
            Access::Ddl => "ddl",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "reading",
            Access::Insert => "inserting into",
            Access::Update => "updating",
            Access::Delete => "deleting from",
            Access::Ddl => "changing the schema of",
        })
    }
}

/// Which phase a call runs in; each allows a class of statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `up` and `down`: reads, data changes and, where granted, schema changes.
    Schema,
    /// `backfill`: reads and data changes only.
    Data,
    /// `verify`: reads only.
    ReadOnly,
}

impl Phase {
    pub fn allows(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Read) => true,
            (Phase::ReadOnly, _) => false,
            (Phase::Data, Access::Ddl) => false,
            _ => true,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Schema => "up/down (reads, granted data and schema changes)",
            Phase::Data => "backfill (reads and granted data changes only)",
            Phase::ReadOnly => "verify (read-only)",
        })
    }
}

/// The validated grants of one migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    read: BTreeSet<TableName>,
    insert: BTreeSet<TableName>,
    update: BTreeSet<TableName>,
    delete: BTreeSet<TableName>,
    ddl: BTreeSet<TableName>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grants.{key}: {name:?} is not a table name (use table or schema.table: letters, digits, _)")]
pub struct BadGrant {
    pub key: &'static str,
    pub name: String,
}

pub(crate) fn parse_table(key: &'static str, name: &str) -> Result<TableName, BadGrant> {
    let bad = || BadGrant { key, name: name.to_owned() };
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with(|c: char| c.is_ascii_digit())
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let lower = name.trim().to_ascii_lowercase();
    match lower.split_once('.') {
        // A temporary table is never the migration's (invariant 9): none may be granted.
        Some((schema, _)) if schema.starts_with("pg_temp") || schema.starts_with("pg_toast") => Err(bad()),
        Some((schema, table)) if valid(schema) && valid(table) => {
            Ok(TableName { schema: Some(schema.to_owned()), name: table.to_owned() })
        }
        None if valid(&lower) => Ok(TableName { schema: None, name: lower }),
        _ => Err(bad()),
    }
}

impl Grants {
    pub fn from_section(section: &GrantsSection) -> Result<Grants, BadGrant> {
        let set = |key, names: &[String]| names.iter().map(|n| parse_table(key, n)).collect::<Result<BTreeSet<_>, _>>();
        Ok(Grants {
            read: set("read", &section.read)?,
            insert: set("insert", &section.insert)?,
            update: set("update", &section.update)?,
            delete: set("delete", &section.delete)?,
            ddl: set("ddl", &section.ddl)?,
        })
    }

    fn tables(&self, access: Access) -> &BTreeSet<TableName> {
        match access {
            Access::Read => &self.read,
            Access::Insert => &self.insert,
            Access::Update => &self.update,
            Access::Delete => &self.delete,
            Access::Ddl => &self.ddl,
        }
    }

    /// Whether `access` to `table` is granted. `default_schema` is the schema unqualified
    /// names resolve to (PostgreSQL's fixed search_path, SQLite's `main`). Update, delete and
    /// ddl grants imply reading the same table: WHERE and RETURNING read it, building an index
    /// reads it, and whoever may drop a table could read it anyway.
    /// Whether the grants let the component change or remove data or the schema: update,
    /// delete or ddl on any table.
    pub fn changes_data(&self) -> bool {
        !(self.update.is_empty() && self.delete.is_empty() && self.ddl.is_empty())
    }

    pub fn allows(&self, access: Access, table: &TableName, default_schema: &str) -> bool {
        let resolve = |t: &TableName| (t.schema.clone().unwrap_or_else(|| default_schema.to_owned()), t.name.clone());
        let wanted = resolve(table);
        let granted = |access| self.tables(access).iter().any(|t| resolve(t) == wanted);
        granted(access)
            || (access == Access::Read && (granted(Access::Update) || granted(Access::Delete) || granted(Access::Ddl)))
    }

    /// The grants as `access: tables` lines, for `wasmig grants`.
    pub fn describe(&self) -> Vec<(&'static str, Vec<String>)> {
        [Access::Read, Access::Insert, Access::Update, Access::Delete, Access::Ddl]
            .into_iter()
            .map(|access| (access.grant_key(), self.tables(access).iter().map(ToString::to_string).collect()))
            .collect()
    }
}

/// What the guard enforces for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub grants: Grants,
    pub phase: Phase,
}

/// Why a statement was refused; shown to the guest as `sql-error::denied` and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("one call runs one statement; this text holds {0}")]
    SeveralStatements(usize),
    #[error("{what} is not allowed in a migration: {why}")]
    StatementClass { what: String, why: &'static str },
    #[error("{access} {table} is not allowed in {phase}")]
    Phase { access: Access, table: TableName, phase: Phase },
    #[error("{what} is not allowed in {phase}")]
    PhaseStatement { what: String, phase: Phase },
    #[error("{access} {table} needs grants.{} = [\"{table}\"] in migration.toml", .access.grant_key())]
    NotGranted { access: Access, table: TableName },
    #[error("function {0} is not on wasmig's allowlist of side-effect-free functions")]
    Function(String),
}

impl Policy {
    /// Checks one table access against the phase and the grants.
    pub fn check(&self, access: Access, table: &TableName, default_schema: &str) -> Result<(), Refusal> {
        if !self.phase.allows(access) {
            return Err(Refusal::Phase { access, table: table.clone(), phase: self.phase });
        }
        if !self.grants.allows(access, table, default_schema) {
            return Err(Refusal::NotGranted { access, table: table.clone() });
        }
        Ok(())
    }
}

/// Functions a component may call: pure computations on their arguments. Anything that runs
/// SQL of its own, reads files or settings, sleeps, locks, signals or changes session state
/// is absent. Shared by both backends (names SQLite lacks are simply never seen there).
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // text
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "substr",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "split_part",
    "strpos",
    "position",
    "instr",
    "concat",
    "concat_ws",
    "left",
    "right",
    "lpad",
    "rpad",
    "repeat",
    "reverse",
    "initcap",
    "format",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "regexp_split_to_array",
    "starts_with",
    "md5",
    "sha256",
    "encode",
    "decode",
    "to_hex",
    "quote_literal",
    "quote_ident",
    "ascii",
    "chr",
    "translate",
    "string_to_array",
    "array_to_string",
    "unistr",
    "char",
    "hex",
    "unhex",
    "printf",
    "glob",
    "like",
    // numbers
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "mod",
    "power",
    "pow",
    "sqrt",
    "sign",
    "trunc",
    "greatest",
    "least",
    "random",
    "div",
    "width_bucket",
    "max",
    "min",
    // null handling and conditionals
    "coalesce",
    "nullif",
    "ifnull",
    "iif",
    "typeof",
    // aggregates
    "count",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "group_concat",
    "bool_and",
    "bool_or",
    "every",
    "total",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    // arrays and sets
    "unnest",
    "array_length",
    "cardinality",
    "array_position",
    "array_append",
    "array_cat",
    "generate_series",
    "array_remove",
    "array_fill",
    // dates
    "now",
    "date_trunc",
    "date_part",
    "extract",
    "to_char",
    "to_date",
    "to_timestamp",
    "age",
    "make_date",
    "make_timestamp",
    "make_interval",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "timezone",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    // json
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "to_json",
    "to_jsonb",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_set",
    "jsonb_strip_nulls",
    "json_typeof",
    "jsonb_typeof",
    "jsonb_array_length",
    "json_array_length",
    "json_each",
    "jsonb_each",
    "json_each_text",
    "jsonb_each_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements",
    "json_array_elements_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json",
    "json_extract",
    "json_array",
    "json_object",
    "json_group_array",
    "json_group_object",
    "json_valid",
    "json_type",
    "json_quote",
    // identifiers and uuids
    "gen_random_uuid",
    "uuid_generate_v4",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "ntile",
];

/// Whether a function (optionally schema-qualified) may be called, by SQLite's rules: names
/// are case-insensitive there.
pub fn function_allowed(schema: Option<&str>, name: &str) -> bool {
    let schema_ok = matches!(schema, None | Some("pg_catalog"));
    schema_ok && ALLOWED_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str())
}

/// Whether a PostgreSQL function may be called, as the parser hands its name over: unquoted
/// names arrive lower-cased, and a quoted name keeps its case and is another function
/// (`"LOWER"` is not `lower`), so the name is compared exactly.
pub fn postgres_function_allowed(schema: Option<&str>, name: &str) -> bool {
    matches!(schema, None | Some("pg_catalog")) && ALLOWED_FUNCTIONS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(read: &[&str], update: &[&str]) -> Grants {
        Grants::from_section(&GrantsSection {
            read: read.iter().map(|s| s.to_string()).collect(),
            update: update.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn table(schema: Option<&str>, name: &str) -> TableName {
        TableName { schema: schema.map(str::to_owned), name: name.to_owned() }
    }

    #[test]
    fn unqualified_grants_resolve_against_the_default_schema() {
        let g = grants(&["users"], &[]);
        assert!(g.allows(Access::Read, &table(None, "users"), "public"));
        assert!(g.allows(Access::Read, &table(Some("public"), "users"), "public"));
        assert!(!g.allows(Access::Read, &table(Some("billing"), "users"), "public"));
    }

    #[test]
    fn update_implies_read_but_read_implies_nothing_else() {
        let g = grants(&["users"], &["orders"]);
        assert!(g.allows(Access::Read, &table(None, "orders"), "public"));
        assert!(!g.allows(Access::Update, &table(None, "users"), "public"));
        assert!(!g.allows(Access::Delete, &table(None, "orders"), "public"));
    }

    #[test]
    fn phases_limit_statement_classes() {
        assert!(!Phase::ReadOnly.allows(Access::Update));
        assert!(!Phase::Data.allows(Access::Ddl));
        assert!(Phase::Data.allows(Access::Insert));
        assert!(Phase::Schema.allows(Access::Ddl));
    }

    #[test]
    fn refusal_names_the_grant_that_would_allow_it() {
        let policy = Policy { grants: Grants::default(), phase: Phase::Data };
        let refusal = policy.check(Access::Update, &table(None, "secrets"), "public").unwrap_err();
        assert_eq!(refusal.to_string(), "updating secrets needs grants.update = [\"secrets\"] in migration.toml");
    }

    #[test]
    fn bad_grant_names_are_refused() {
        let section = GrantsSection { read: vec!["users; drop".into()], ..Default::default() };
        assert!(Grants::from_section(&section).is_err());
    }

    #[test]
    fn functions_outside_the_allowlist_or_pg_catalog_are_refused() {
        assert!(function_allowed(None, "LOWER"));
        assert!(function_allowed(Some("pg_catalog"), "lower"));
        assert!(!function_allowed(Some("public"), "lower"));
        for dangerous in [
            "pg_sleep",
            "set_config",
            "pg_advisory_unlock",
            "dblink",
            "query_to_xml",
            "pg_read_file",
            "lo_import",
            "load_extension",
        ] {
            assert!(!function_allowed(None, dangerous), "{dangerous}");
        }
    }
}

/// Everything the database's own walls need for one guarded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSettings {
    pub policy: Policy,
    /// PostgreSQL: the least-privilege role component statements run as (`SET LOCAL ROLE`).
    pub postgres_role: Option<String>,
    pub statement_timeout: std::time::Duration,
    pub lock_timeout: std::time::Duration,
    /// The call's wall-clock limit (`limits.timeout_secs`): SQLite, which runs in this process,
    /// interrupts a statement still running when it passes.
    pub call_timeout: std::time::Duration,
    /// The largest value a statement may build (`limits.result_mib`): SQLite refuses a longer
    /// string or blob instead of growing the host's heap for it.
    pub max_value_bytes: u64,
}

/// The guard's off switch, compiled only into the benchmark that measures its cost.
///
/// # Warning
///
/// With the guard off, a component's PostgreSQL statements are sent unchecked: invariant 3 no
/// longer holds. The `unguarded-bench` feature exists for `benches/backfill.rs` alone.
#[cfg(feature = "unguarded-bench")]
pub mod benchmark {
    use std::sync::atomic::{AtomicBool, Ordering};

    static OFF: AtomicBool = AtomicBool::new(false);

    pub fn set_guard_off(off: bool) {
        OFF.store(off, Ordering::SeqCst);
    }

    pub fn guard_off() -> bool {
        OFF.load(Ordering::SeqCst)
    }
}
