//! The `sql` interface: the `connection` resource a component receives, forwarding each
//! statement to the database inside the transaction the host opened, and a query's result
//! in either shape the interface offers (by row, or by column for many rows).
//!
//! A database error is handed to the guest as `sql-error::database` (its data, which it may
//! handle); it never traps, so the guest decides whether to give up.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::db::{self, Database, DbError, DbErrorKind, StatementScreen};
use crate::guard::Policy;
use crate::guard::postgres::{self, AnalysisCache, Rejection};
use crate::sandbox::state::StoreState;
use crate::sandbox::bindings::wasmig::migration::sql::{Host, HostConnection};
use crate::sandbox::bindings::wasmig::migration::types::{self, SqlError, Value};

/// The host side of a component's `connection`: the database, and what the guard enforces.
pub struct SqlConnection {
    pub db: Arc<dyn Database>,
    pub policy: Policy,
    pub analyses: Arc<AnalysisCache>,
    pub migration: String,
    pub result_cap: db::ResultCap,
    pub hostcall_bytes: u64,
}

/// A statement the database stopped at the component call's deadline: the call ends as a trap
/// on its time limit, since the guest may not run on past it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PastDeadline(pub String);

impl SqlConnection {
    /// The guard's verdict on a statement before it is sent, and the text to send. On
    /// PostgreSQL the statement is parsed here and sent with its tables qualified (component
    /// statements resolve everything else in `pg_catalog` alone); on SQLite the authorizer
    /// decides while the statement is prepared, and the text goes as it is.
    fn screen(&self, statement: String) -> Result<String, SqlError> {
        if self.db.dialect().screen == StatementScreen::Authorizer {
            return Ok(statement);
        }
        let analysis = match self.analyses.analyze(&statement) {
            Ok(analysis) => analysis,
            Err(Rejection::Refused(refusal)) => return Err(self.denied(refusal.to_string())),
            Err(Rejection::Invalid(message)) => return Err(SqlError::Invalid(message)),
        };
        #[cfg(feature = "unguarded-bench")]
        if crate::guard::benchmark::guard_off() {
            return Ok(analysis.statement);
        }
        postgres::check(&analysis, &self.policy).map_err(|refusal| self.denied(refusal.to_string()))?;
        Ok(analysis.statement)
    }

    fn denied(&self, refusal: String) -> SqlError {
        tracing::warn!(migration = self.migration, "refused: {refusal}");
        SqlError::Denied(refusal)
    }

    /// The guest's error for a database error, or a trap when the call's deadline passed.
    fn sql_error(&self, error: DbError) -> wasmtime::Result<SqlError> {
        Ok(match error.kind {
            DbErrorKind::Denied => self.denied(error.message),
            DbErrorKind::MultipleStatements | DbErrorKind::InvalidParameter => SqlError::Invalid(error.message),
            DbErrorKind::Limit => SqlError::Limit(error.message),
            DbErrorKind::Deadline => return Err(wasmtime::Error::new(PastDeadline(error.message))),
            DbErrorKind::Database
            | DbErrorKind::UndefinedTable
            | DbErrorKind::DivisionByZero
            | DbErrorKind::NotInTransaction
            | DbErrorKind::Client => {
                SqlError::Database(types::DbError { code: error.code, message: error.message })
            }
        })
    }

    /// The statement as it is sent, once the call's size and the guard allow it.
    fn admit<'a>(&self, statement: String, values: impl Iterator<Item = &'a db::Value>) -> Result<String, SqlError> {
        self.check_call_size(&statement, values)?;
        self.screen(statement)
    }

    /// A database call's result as the guest sees it; a trap when the call's deadline passed.
    fn outcome<T>(&self, result: Result<T, DbError>) -> wasmtime::Result<Result<T, SqlError>> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(error) => Ok(Err(self.sql_error(error)?)),
        }
    }

    /// The per-call cap on what a guest sends; wasmtime's own cap, set higher, is the backstop.
    fn check_call_size<'a>(
        &self,
        statement: &str,
        values: impl Iterator<Item = &'a db::Value>,
    ) -> Result<(), SqlError> {
        let bytes = statement.len() as u64 + values.map(db::Value::cost).sum::<u64>();
        if bytes > self.hostcall_bytes {
            return Err(SqlError::Limit(format!(
                "the call sent {bytes} bytes; limits.hostcall_mib is {}",
                self.hostcall_bytes / (1024 * 1024)
            )));
        }
        Ok(())
    }
}

fn to_db(value: Value) -> db::Value {
    match value {
        Value::Null => db::Value::Null,
        Value::Boolean(v) => db::Value::Bool(v),
        Value::Int(v) => db::Value::Int(v),
        Value::Float(v) => db::Value::Float(v),
        Value::Text(v) => db::Value::Text(v),
        Value::Bytes(v) => db::Value::Bytes(v),
        Value::IntArray(v) => db::Value::IntArray(v),
        Value::FloatArray(v) => db::Value::FloatArray(v),
        Value::TextArray(v) => db::Value::TextArray(v),
    }
}

fn to_wit(value: db::Value) -> Value {
    match value {
        db::Value::Null => Value::Null,
        db::Value::Bool(v) => Value::Boolean(v),
        db::Value::Int(v) => Value::Int(v),
        db::Value::Float(v) => Value::Float(v),
        db::Value::Text(v) => Value::Text(v),
        db::Value::Bytes(v) => Value::Bytes(v),
        db::Value::IntArray(v) => Value::IntArray(v),
        db::Value::FloatArray(v) => Value::FloatArray(v),
        db::Value::TextArray(v) => Value::TextArray(v),
    }
}

/// Turns row-major results into the `columns` record: values move, and a text column's
/// strings are copied once into one buffer.
fn by_column(rows: db::Rows) -> types::Columns {
    let count = rows.values.len();
    let mut columns: Vec<Vec<db::Value>> = rows.columns.iter().map(|_| Vec::with_capacity(count)).collect();
    for row in rows.values {
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    types::Columns { names: rows.columns, rows: count as u64, values: columns.into_iter().map(one_column).collect() }
}

/// The narrowest variant that holds every value of the column; `values` when none does
/// (a column of NULLs only, an empty one, or one of mixed types).
fn one_column(values: Vec<db::Value>) -> types::Column {
    use db::Value as V;
    #[derive(Clone, Copy)]
    enum Kind {
        Nulls,
        Ints,
        Floats,
        Texts,
        Mixed,
    }
    let kind = values.iter().fold(Kind::Nulls, |kind, value| match (kind, value) {
        (kind, V::Null) => kind,
        (Kind::Nulls | Kind::Ints, V::Int(_)) => Kind::Ints,
        (Kind::Nulls | Kind::Floats, V::Float(_)) => Kind::Floats,
        (Kind::Nulls | Kind::Texts, V::Text(text)) if u32::try_from(text.len()).is_ok() => Kind::Texts,
        _ => Kind::Mixed,
    });
    match kind {
        Kind::Ints => {
            types::Column::Ints(values.into_iter().map(|v| if let V::Int(i) = v { Some(i) } else { None }).collect())
        }
        Kind::Floats => types::Column::Floats(
            values.into_iter().map(|v| if let V::Float(f) = v { Some(f) } else { None }).collect(),
        ),
        Kind::Texts => {
            let bytes = values.iter().map(|v| if let V::Text(text) = v { text.len() } else { 0 }).sum();
            let mut text = String::with_capacity(bytes);
            let mut lengths = Vec::with_capacity(values.len());
            for value in &values {
                lengths.push(match value {
                    V::Text(one) => {
                        text.push_str(one);
                        u32::try_from(one.len()).ok()
                    }
                    _ => None,
                });
            }
            types::Column::Texts(types::TextColumn { text, lengths })
        }
        Kind::Nulls | Kind::Mixed => types::Column::Values(values.into_iter().map(to_wit).collect()),
    }
}

impl StoreState {
    /// A query's rows after the guard and the result limits, for both result shapes.
    async fn checked_query(
        &mut self,
        handle: &Resource<SqlConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<db::Rows, SqlError>> {
        let connection = self.table.get(handle)?;
        let params: Vec<db::Value> = params.into_iter().map(to_db).collect();
        let statement = match connection.admit(statement, params.iter()) {
            Ok(statement) => statement,
            Err(refused) => return Ok(Err(refused)),
        };
        connection.outcome(connection.db.query_capped(&statement, &params, connection.result_cap).await)
    }
}

impl HostConnection for StoreState {
    async fn query(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<types::Rows, SqlError>> {
        let rows = self.checked_query(&handle, statement, params).await?;
        Ok(rows.map(|rows| types::Rows {
            columns: rows.columns,
            values: rows.values.into_iter().map(|row| row.into_iter().map(to_wit).collect()).collect(),
        }))
    }

    async fn query_columns(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<types::Columns, SqlError>> {
        let rows = self.checked_query(&handle, statement, params).await?;
        Ok(rows.map(by_column))
    }

    async fn execute(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let connection = self.table.get(&handle)?;
        let params: Vec<db::Value> = params.into_iter().map(to_db).collect();
        let statement = match connection.admit(statement, params.iter()) {
            Ok(statement) => statement,
            Err(refused) => return Ok(Err(refused)),
        };
        connection.outcome(connection.db.execute(&statement, &params).await)
    }

    async fn execute_many(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        param_sets: Vec<Vec<Value>>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let connection = self.table.get(&handle)?;
        let param_sets: Vec<Vec<db::Value>> =
            param_sets.into_iter().map(|set| set.into_iter().map(to_db).collect()).collect();
        let statement = match connection.admit(statement, param_sets.iter().flatten()) {
            Ok(statement) => statement,
            Err(refused) => return Ok(Err(refused)),
        };
        connection.outcome(connection.db.execute_many(&statement, &param_sets).await)
    }

    async fn drop(&mut self, handle: Resource<SqlConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl Host for StoreState {}

impl types::Host for StoreState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(values: Vec<Vec<db::Value>>) -> db::Rows {
        let width = values.first().map_or(0, Vec::len);
        db::Rows { columns: (0..width).map(|i| format!("c{i}")).collect(), values }
    }

    #[test]
    fn columns_take_the_narrowest_type_that_holds_every_value() {
        use db::Value as V;
        let result = by_column(rows(vec![
            vec![V::Int(1), V::Text("Ab".into()), V::Float(0.5), V::Int(7), V::Null],
            vec![V::Null, V::Null, V::Null, V::Text("x".into()), V::Null],
            vec![V::Int(3), V::Text("é".into()), V::Float(2.0), V::Int(8), V::Null],
        ]));
        assert_eq!(result.rows, 3);
        assert_eq!(result.names, ["c0", "c1", "c2", "c3", "c4"]);
        let [ints, texts, floats, mixed, nulls] = <[types::Column; 5]>::try_from(result.values).unwrap();
        assert!(matches!(ints, types::Column::Ints(v) if v == [Some(1), None, Some(3)]));
        let types::Column::Texts(texts) = texts else { panic!("c1 is not texts: {texts:?}") };
        assert_eq!((texts.text.as_str(), texts.lengths), ("Abé", vec![Some(2), None, Some(2)]));
        assert!(matches!(floats, types::Column::Floats(v) if v == [Some(0.5), None, Some(2.0)]));
        // SQLite can hand back different types in one column; those go value by value.
        assert!(matches!(mixed, types::Column::Values(v) if v.len() == 3));
        assert!(matches!(nulls, types::Column::Values(v) if v.len() == 3));
    }

    #[test]
    fn no_rows_give_empty_columns_with_their_names() {
        let result = by_column(db::Rows { columns: vec!["id".into()], values: Vec::new() });
        assert_eq!((result.rows, result.names.len()), (0, 1));
        assert!(matches!(&result.values[..], [types::Column::Values(v)] if v.is_empty()));
    }
}
