//! Values across the PostgreSQL wire: a [`Value`] bound to a parameter of the type the server
//! inferred (binary where the types match, else the server's own text input), and a result
//! column read back as a [`Value`].

use std::error::Error as StdError;

use bytes::BytesMut;
use tokio_postgres::Row;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};

use crate::core::error_chain;
use crate::db::database::Value;
use crate::db::error::DbError;

pub(super) fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

pub(super) fn row_values(row: &Row) -> Result<Vec<Value>, DbError> {
    (0..row.len()).map(|index| column_value(row, index)).collect()
}

fn column_value(row: &Row, index: usize) -> Result<Value, DbError> {
    let column = &row.columns()[index];
    let ty = column.type_();
    let get_error = |e: tokio_postgres::Error| DbError::client("client", error_chain(&e));
    macro_rules! get {
        ($t:ty, $wrap:expr) => {
            row.try_get::<_, Option<$t>>(index).map_err(get_error)?.map_or(Value::Null, $wrap)
        };
    }
    Ok(match *ty {
        Type::BOOL => get!(bool, Value::Bool),
        Type::INT2 => get!(i16, |v| Value::Int(i64::from(v))),
        Type::INT4 => get!(i32, |v| Value::Int(i64::from(v))),
        Type::INT8 => get!(i64, Value::Int),
        Type::OID => get!(u32, |v| Value::Int(i64::from(v))),
        Type::FLOAT4 => get!(f32, |v| Value::Float(f64::from(v))),
        Type::FLOAT8 => get!(f64, Value::Float),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get!(String, Value::Text)
        }
        Type::BYTEA => get!(Vec<u8>, Value::Bytes),
        Type::INT8_ARRAY => get!(Vec<Option<i64>>, Value::IntArray),
        Type::INT4_ARRAY => {
            get!(Vec<Option<i32>>, |v| Value::IntArray(v.into_iter().map(|x| x.map(i64::from)).collect()))
        }
        Type::FLOAT8_ARRAY => get!(Vec<Option<f64>>, Value::FloatArray),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get!(Vec<Option<String>>, Value::TextArray),
        _ => {
            return Err(DbError::client(
                "unsupported-type",
                format!(
                    "column {:?} has type {ty}, which wasmig does not return as a value; \
                     cast it in the query (for example {}::text)",
                    column.name(),
                    column.name()
                ),
            ));
        }
    })
}

impl Value {
    /// Whether this value is sent in PostgreSQL's text format for a parameter of type `ty`:
    /// a value with no binary mapping to `ty` (text for a uuid, an integer for a numeric) is
    /// handed to the server's own input function, exactly as if it were a literal.
    fn sends_text(&self, ty: &Type) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(_) => *ty != Type::BOOL,
            Value::Int(_) => {
                !matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::FLOAT4 | Type::FLOAT8)
            }
            Value::Float(_) => !matches!(*ty, Type::FLOAT4 | Type::FLOAT8),
            Value::Text(_) => !<String as ToSql>::accepts(ty),
            Value::Bytes(_) => false,
            Value::IntArray(_) => !matches!(*ty, Type::INT8_ARRAY | Type::INT4_ARRAY | Type::INT2_ARRAY),
            Value::FloatArray(_) => !matches!(*ty, Type::FLOAT8_ARRAY | Type::FLOAT4_ARRAY),
            Value::TextArray(_) => !<Vec<Option<String>> as ToSql>::accepts(ty),
        }
    }

    fn to_text(&self) -> String {
        fn array<T>(items: &[Option<T>], show: impl Fn(&T) -> String) -> String {
            let inner: Vec<String> = items.iter().map(|i| i.as_ref().map_or("NULL".into(), &show)).collect();
            format!("{{{}}}", inner.join(","))
        }
        match self {
            Value::Null => String::new(),
            Value::Bool(v) => v.to_string(),
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Text(v) => v.clone(),
            Value::Bytes(_) => String::new(),
            Value::IntArray(v) => array(v, i64::to_string),
            Value::FloatArray(v) => array(v, f64::to_string),
            Value::TextArray(v) => array(v, |s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
        }
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

fn narrow<T: TryFrom<i64>>(value: i64, ty: &Type) -> Result<T, BoxError> {
    T::try_from(value).map_err(|_| format!("{value} does not fit a parameter of type {ty}").into())
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if self.sends_text(ty) {
            out.extend_from_slice(self.to_text().as_bytes());
            return Ok(IsNull::No);
        }
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Int(v) => match *ty {
                Type::INT2 => narrow::<i16>(*v, ty)?.to_sql(ty, out),
                Type::INT4 => narrow::<i32>(*v, ty)?.to_sql(ty, out),
                Type::OID => narrow::<u32>(*v, ty)?.to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Float(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
            Value::IntArray(v) => match *ty {
                Type::INT4_ARRAY => v
                    .iter()
                    .map(|x| x.map(|n| narrow::<i32>(n, ty)).transpose())
                    .collect::<Result<Vec<_>, _>>()?
                    .to_sql(ty, out),
                Type::INT2_ARRAY => v
                    .iter()
                    .map(|x| x.map(|n| narrow::<i16>(n, ty)).transpose())
                    .collect::<Result<Vec<_>, _>>()?
                    .to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::FloatArray(v) => match *ty {
                Type::FLOAT4_ARRAY => v.iter().map(|x| x.map(|f| f as f32)).collect::<Vec<_>>().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::TextArray(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Any parameter type: `to_sql` picks the binary mapping or falls back to text.
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if self.sends_text(ty) { Format::Text } else { Format::Binary }
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_array_literal_escapes_quotes() {
        let value = Value::TextArray(vec![Some("a\"b".into()), None]);
        assert_eq!(value.to_text(), "{\"a\\\"b\",NULL}");
    }

    #[test]
    fn integers_bind_binary_to_integer_types_and_text_to_numeric() {
        assert!(!Value::Int(1).sends_text(&Type::INT4));
        assert!(Value::Int(1).sends_text(&Type::NUMERIC));
        assert!(Value::Text("6f1c…".into()).sends_text(&Type::UUID));
        assert!(!Value::Text("x".into()).sends_text(&Type::VARCHAR));
    }
}
