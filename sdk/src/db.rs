//! [`Db`], the migration's SQL handle, and what it returns: [`Rows`] and [`Row`], plus the
//! [`Batch`] a backfill step reports.

use crate::__bindings::wasmig::migration::sql::Connection;
use crate::{Columns, Error, FromValue, SqlError, Value};

/// The SQL handle the host grants a migration. Statements run inside the phase's
/// transaction and are checked against the manifest's grants.
pub struct Db<'a> {
    connection: &'a Connection,
}

impl<'a> Db<'a> {
    pub(crate) fn new(connection: &'a Connection) -> Self {
        Db { connection }
    }

    /// Runs one statement and returns its rows.
    pub fn query(&self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError> {
        let params = params.into_iter().map(Value::into_wit).collect::<Vec<_>>();
        let rows = self.connection.query(statement, &params).map_err(SqlError::from_wit)?;
        Ok(Rows::from_wit(rows))
    }

    /// Runs one statement and returns its rows by column. Same result as [`Db::query`], and
    /// the cheaper one for many rows (a backfill's batch): a column crosses from the host in
    /// one or two copies where [`Rows`] takes one per row and per text.
    pub fn query_columns(&self, statement: &str, params: Vec<Value>) -> Result<Columns, SqlError> {
        let params = params.into_iter().map(Value::into_wit).collect::<Vec<_>>();
        let columns = self.connection.query_columns(statement, &params).map_err(SqlError::from_wit)?;
        Ok(Columns::from_wit(columns))
    }

    /// Runs one statement and returns how many rows it changed.
    pub fn execute(&self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let params = params.into_iter().map(Value::into_wit).collect::<Vec<_>>();
        self.connection.execute(statement, &params).map_err(SqlError::from_wit)
    }

    /// Runs one statement once per parameter set in a single host call (prepared once);
    /// returns the total number of rows changed.
    pub fn execute_many(&self, statement: &str, param_sets: Vec<Vec<Value>>) -> Result<u64, SqlError> {
        let param_sets = param_sets
            .into_iter()
            .map(|set| set.into_iter().map(Value::into_wit).collect::<Vec<_>>())
            .collect::<Vec<_>>();
        self.connection.execute_many(statement, &param_sets).map_err(SqlError::from_wit)
    }
}

/// The rows a query returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Row>,
}

impl Rows {
    fn from_wit(rows: crate::__bindings::wasmig::migration::types::Rows) -> Self {
        let columns = rows.columns;
        let rows = rows
            .values
            .into_iter()
            .map(|values| Row { values: values.into_iter().map(Value::from_wit).collect() })
            .collect();
        Rows { columns, rows }
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Row> {
        self.rows.iter()
    }

    /// The first row, or an error saying the query returned none.
    pub fn first(&self) -> Result<&Row, Error> {
        self.rows.first().ok_or_else(|| Error::msg("the query returned no rows"))
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a Row;
    type IntoIter = std::slice::Iter<'a, Row>;

    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

/// One row of [`Rows`].
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// Reads column `index` as `T`; a missing column or another type is an error.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, Error> {
        let value = self.values.get(index).ok_or_else(|| Error::msg(format!("the row has no column {index}")))?;
        T::from_value(value).map_err(|e| Error::msg(format!("column {index}: {e}")))
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

/// What one backfill call is asked to do: at most `size` rows after `cursor` and up to
/// `until`, both inclusive bounds on the key the backfill walks.
///
/// When the manifest names a `[backfill] key`, the host splits the table into chunks by that
/// key and several workers may each run one: `cursor` and `until` are then key values as
/// text, and the cursor a batch returns must be the last key it processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// Resume after this cursor; `None` on a backfill's (or its first chunk's) first batch.
    pub cursor: Option<String>,
    /// Stop after this key; `None` for the last chunk, which runs to the end of the table.
    pub until: Option<String>,
    /// The most rows this batch may process.
    pub size: u32,
}

impl BatchRequest {
    /// The cursor parsed as a key, e.g. `request.cursor_key::<i64>()?.unwrap_or(i64::MIN)`.
    pub fn cursor_key<K: std::str::FromStr>(&self) -> crate::Result<Option<K>> {
        parse_key("cursor", self.cursor.as_deref())
    }

    /// The upper bound parsed as a key, e.g. `request.until_key::<i64>()?.unwrap_or(i64::MAX)`.
    pub fn until_key<K: std::str::FromStr>(&self) -> crate::Result<Option<K>> {
        parse_key("until", self.until.as_deref())
    }

    /// The batch to return after processing `rows`, the last with key `last`: done when
    /// fewer rows than asked for were left in the range.
    pub fn batch_after(&self, last: Option<impl ToString>, rows: u64) -> Batch {
        match last {
            Some(last) if rows >= u64::from(self.size) => Batch::next(last.to_string(), rows),
            _ => Batch::done(rows),
        }
    }
}

fn parse_key<K: std::str::FromStr>(what: &str, text: Option<&str>) -> crate::Result<Option<K>> {
    text.map(|text| text.parse::<K>().map_err(|_| Error::msg(format!("the backfill's {what} {text:?} is not a key"))))
        .transpose()
}

/// What one backfill call did.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub(crate) next_cursor: Option<String>,
    pub(crate) rows: u64,
}

impl Batch {
    /// More rows remain: resume after `cursor`. `rows` is how many this batch processed.
    pub fn next(cursor: impl Into<String>, rows: u64) -> Self {
        Batch { next_cursor: Some(cursor.into()), rows }
    }

    /// The backfill (or its chunk) is complete; this last batch processed `rows`.
    pub fn done(rows: u64) -> Self {
        Batch { next_cursor: None, rows }
    }
}
