//! SQL names: [`Identifier`], validated once, and [`quote_ident`], the one place a name is
//! quoted into SQL; [`TableName`], a table as grants and statements compare it.

use std::fmt;

/// A SQL identifier: letters, digits and `_`, not starting with a digit, at most 47 bytes
/// (PostgreSQL's 63, less the longest suffix wasmig adds, `_backfill_chunks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a usable identifier: use 1 to 47 letters, digits or _, not starting with a digit")]
pub struct IdentifierError {
    pub name: String,
}

impl Identifier {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn new(name: &str) -> Result<Self, IdentifierError> {
        let valid = !name.is_empty()
            && name.len() <= 47
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid { Ok(Identifier(name.to_owned())) } else { Err(IdentifierError { name: name.to_owned() }) }
    }

    /// The name followed by `_<suffix>`, for a table beside this one (the length limit leaves
    /// room for the suffixes the engine adds).
    pub(crate) fn with_suffix(&self, suffix: &str) -> Identifier {
        Identifier(format!("{}_{suffix}", self.0))
    }
}

/// `name` as a quoted SQL identifier, with any `"` in it doubled: the one place the engine
/// writes a name into SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name as grants and statements are compared: schema and name, lower-cased unless
/// the statement quoted them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_anything_that_needs_quoting_tricks() {
        assert!(Identifier::new("wasmig_history").is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "t; DROP TABLE x", &"x".repeat(48)] {
            assert!(Identifier::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
