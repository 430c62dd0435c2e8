//! The `sql` interface: the `connection` resource a component receives, forwarding each
//! statement to the database inside the transaction the host opened.
//!
//! A database error is handed to the guest as `sql-error::database` (its data, which it may
//! handle); it never traps, so the guest decides whether to give up.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::db::{self, Database, DbError};
use crate::sandbox::StoreState;
use crate::sandbox::bindings::wasmig::migration::sql::{Host, HostConnection};
use crate::sandbox::bindings::wasmig::migration::types::{self, SqlError, Value};

/// The host side of a component's `connection`.
pub struct SqlConnection {
    pub db: Arc<dyn Database>,
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

fn sql_error(error: DbError) -> SqlError {
    match error.code.as_str() {
        "multiple-statements" | "invalid-parameter" => SqlError::Invalid(error.message),
        _ => SqlError::Database(types::DbError { code: error.code, message: error.message }),
    }
}

impl StoreState {
    fn connection(&self, handle: &Resource<SqlConnection>) -> wasmtime::Result<Arc<dyn Database>> {
        Ok(self.table.get(handle)?.db.clone())
    }
}

impl HostConnection for StoreState {
    async fn query(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<types::Rows, SqlError>> {
        let db = self.connection(&handle)?;
        let params: Vec<db::Value> = params.into_iter().map(to_db).collect();
        Ok(db.query(&statement, &params).await.map_err(sql_error).map(|rows| types::Rows {
            columns: rows.columns,
            values: rows.values.into_iter().map(|row| row.into_iter().map(to_wit).collect()).collect(),
        }))
    }

    async fn execute(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let db = self.connection(&handle)?;
        let params: Vec<db::Value> = params.into_iter().map(to_db).collect();
        Ok(db.execute(&statement, &params).await.map_err(sql_error))
    }

    async fn execute_many(
        &mut self,
        handle: Resource<SqlConnection>,
        statement: String,
        param_sets: Vec<Vec<Value>>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let db = self.connection(&handle)?;
        let param_sets: Vec<Vec<db::Value>> =
            param_sets.into_iter().map(|set| set.into_iter().map(to_db).collect()).collect();
        Ok(db.execute_many(&statement, &param_sets).await.map_err(sql_error))
    }

    async fn drop(&mut self, handle: Resource<SqlConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl Host for StoreState {}

impl types::Host for StoreState {}
