//! SQL values a migration sends and receives: [`Value`], the conversions into it, and
//! [`FromValue`] for reading typed columns out of a row.

use crate::__bindings::wasmig::migration::types::Value as WitValue;
use crate::Error;

/// A SQL parameter or column value.
///
/// The array variants bind a whole batch as one parameter (PostgreSQL arrays; on SQLite
/// they arrive as JSON text, ready for `json_each`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    IntArray(Vec<Option<i64>>),
    FloatArray(Vec<Option<f64>>),
    TextArray(Vec<Option<String>>),
}

impl Value {
    pub(crate) fn into_wit(self) -> WitValue {
        match self {
            Value::Null => WitValue::Null,
            Value::Bool(v) => WitValue::Boolean(v),
            Value::Int(v) => WitValue::Int(v),
            Value::Float(v) => WitValue::Float(v),
            Value::Text(v) => WitValue::Text(v),
            Value::Bytes(v) => WitValue::Bytes(v),
            Value::IntArray(v) => WitValue::IntArray(v),
            Value::FloatArray(v) => WitValue::FloatArray(v),
            Value::TextArray(v) => WitValue::TextArray(v),
        }
    }

    pub(crate) fn from_wit(value: WitValue) -> Self {
        match value {
            WitValue::Null => Value::Null,
            WitValue::Boolean(v) => Value::Bool(v),
            WitValue::Int(v) => Value::Int(v),
            WitValue::Float(v) => Value::Float(v),
            WitValue::Text(v) => Value::Text(v),
            WitValue::Bytes(v) => Value::Bytes(v),
            WitValue::IntArray(v) => Value::IntArray(v),
            WitValue::FloatArray(v) => Value::FloatArray(v),
            WitValue::TextArray(v) => Value::TextArray(v),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::IntArray(_) => "int array",
            Value::FloatArray(_) => "float array",
            Value::TextArray(_) => "text array",
        }
    }
}

macro_rules! value_from {
    ($($from:ty => |$v:ident| $make:expr),+ $(,)?) => {
        $(impl From<$from> for Value {
            fn from($v: $from) -> Self { $make }
        })+
    };
}

value_from! {
    bool => |v| Value::Bool(v),
    i32 => |v| Value::Int(i64::from(v)),
    i64 => |v| Value::Int(v),
    u32 => |v| Value::Int(i64::from(v)),
    f64 => |v| Value::Float(v),
    String => |v| Value::Text(v),
    &str => |v| Value::Text(v.to_owned()),
    &String => |v| Value::Text(v.clone()),
    Vec<u8> => |v| Value::Bytes(v),
    Vec<i64> => |v| Value::IntArray(v.into_iter().map(Some).collect()),
    Vec<Option<i64>> => |v| Value::IntArray(v),
    Vec<f64> => |v| Value::FloatArray(v.into_iter().map(Some).collect()),
    Vec<Option<f64>> => |v| Value::FloatArray(v),
    Vec<String> => |v| Value::TextArray(v.into_iter().map(Some).collect()),
    Vec<Option<String>> => |v| Value::TextArray(v),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// Reads a Rust value out of a column [`Value`].
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, Error>;
}

fn mismatch<T>(wanted: &str, found: &Value) -> Result<T, Error> {
    Err(Error::msg(format!("expected a {wanted} column, found {}", found.kind())))
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Int(v) => Ok(*v),
            other => mismatch("int", other),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Float(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            other => mismatch("float", other),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Bool(v) => Ok(*v),
            // SQLite has no boolean type: it stores 0 and 1.
            Value::Int(v) => Ok(*v != 0),
            other => mismatch("bool", other),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Text(v) => Ok(v.clone()),
            other => mismatch("text", other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Bytes(v) => Ok(v.clone()),
            other => mismatch("bytes", other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}
