//! [`Columns`]: a query's result by column, what [`Db::query_columns`](crate::Db::query_columns)
//! returns. A backfill reading a batch of rows takes its columns whole: the ids as one list,
//! the texts as borrowed slices of one buffer, with no allocation per row or value.

use crate::__bindings::wasmig::migration::types::{Column as WitColumn, Columns as WitColumns};
use crate::{Error, FromValue, Value};

/// A query's result by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    names: Vec<String>,
    rows: usize,
    columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
enum Column {
    Ints(Vec<Option<i64>>),
    Floats(Vec<Option<f64>>),
    Texts { text: String, lengths: Vec<Option<u32>> },
    Values(Vec<Value>),
}

impl Columns {
    pub(crate) fn from_wit(columns: WitColumns) -> Self {
        let column = |column| match column {
            WitColumn::Ints(ints) => Column::Ints(ints),
            WitColumn::Floats(floats) => Column::Floats(floats),
            WitColumn::Texts(texts) => Column::Texts { text: texts.text, lengths: texts.lengths },
            WitColumn::Values(values) => Column::Values(values.into_iter().map(Value::from_wit).collect()),
        };
        Columns {
            names: columns.names,
            rows: usize::try_from(columns.rows).unwrap_or(usize::MAX),
            columns: columns.values.into_iter().map(column).collect(),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many rows the query returned.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn column(&self, index: usize) -> Result<&Column, Error> {
        self.columns.get(index).ok_or_else(|| Error::msg(format!("the result has no column {index}")))
    }

    /// Column `index` as integers (`None` for NULL); any other type is an error.
    pub fn ints(&self, index: usize) -> Result<Vec<Option<i64>>, Error> {
        match self.column(index)? {
            Column::Ints(ints) => Ok(ints.clone()),
            Column::Values(values) => values.iter().map(|v| read::<Option<i64>>(index, v)).collect(),
            _ => Err(mismatch(index, "int")),
        }
    }

    /// Column `index` as floats (`None` for NULL); integers convert, any other type is an error.
    pub fn floats(&self, index: usize) -> Result<Vec<Option<f64>>, Error> {
        match self.column(index)? {
            Column::Floats(floats) => Ok(floats.clone()),
            Column::Ints(ints) => Ok(ints.iter().map(|i| i.map(|i| i as f64)).collect()),
            Column::Values(values) => values.iter().map(|v| read::<Option<f64>>(index, v)).collect(),
            Column::Texts { .. } => Err(mismatch(index, "float")),
        }
    }

    /// Column `index` as texts borrowed from the result (`None` for NULL); any other type is
    /// an error.
    pub fn texts(&self, index: usize) -> Result<Vec<Option<&str>>, Error> {
        match self.column(index)? {
            Column::Texts { text, lengths } => {
                let mut start = 0usize;
                let mut texts = Vec::with_capacity(lengths.len());
                for length in lengths {
                    let Some(length) = length else {
                        texts.push(None);
                        continue;
                    };
                    let end = start.saturating_add(*length as usize);
                    let one = text
                        .get(start..end)
                        .ok_or_else(|| Error::msg(format!("column {index}: malformed text column")))?;
                    texts.push(Some(one));
                    start = end;
                }
                Ok(texts)
            }
            Column::Values(values) => values
                .iter()
                .map(|value| match value {
                    Value::Text(text) => Ok(Some(text.as_str())),
                    Value::Null => Ok(None),
                    _ => Err(mismatch(index, "text")),
                })
                .collect(),
            _ => Err(mismatch(index, "text")),
        }
    }

    /// Column `index` as [`Value`]s, whatever its type.
    pub fn values(&self, index: usize) -> Result<Vec<Value>, Error> {
        Ok(match self.column(index)? {
            Column::Ints(ints) => ints.iter().map(|&i| Value::from(i)).collect(),
            Column::Floats(floats) => floats.iter().map(|&f| Value::from(f)).collect(),
            Column::Texts { .. } => self.texts(index)?.into_iter().map(Value::from).collect(),
            Column::Values(values) => values.clone(),
        })
    }
}

fn read<T: FromValue>(index: usize, value: &Value) -> Result<T, Error> {
    T::from_value(value).map_err(|e| Error::msg(format!("column {index}: {e}")))
}

fn mismatch(index: usize, wanted: &str) -> Error {
    Error::msg(format!("column {index}: expected a {wanted} column"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::__bindings::wasmig::migration::types::{TextColumn, Value as WitValue};

    fn columns(values: Vec<WitColumn>) -> Columns {
        let names = (0..values.len()).map(|i| format!("c{i}")).collect();
        Columns::from_wit(WitColumns { names, rows: 3, values })
    }

    #[test]
    fn texts_are_cut_from_one_buffer_with_nulls_in_place() {
        let texts = TextColumn { text: "aéb".into(), lengths: vec![Some(1), None, Some(3)] };
        let result = columns(vec![WitColumn::Texts(texts)]);
        assert_eq!(result.texts(0).unwrap(), vec![Some("a"), None, Some("éb")]);
        assert_eq!(result.values(0).unwrap(), vec![Value::from("a"), Value::Null, Value::from("éb")]);
    }

    #[test]
    fn a_text_length_past_the_buffer_or_inside_a_character_is_an_error() {
        let past = columns(vec![WitColumn::Texts(TextColumn { text: "ab".into(), lengths: vec![Some(3)] })]);
        assert!(past.texts(0).is_err());
        let inside = columns(vec![WitColumn::Texts(TextColumn { text: "é".into(), lengths: vec![Some(1)] })]);
        assert!(inside.texts(0).is_err());
    }

    #[test]
    fn a_mixed_column_reads_as_a_type_only_when_every_value_is_one() {
        let mixed = vec![WitValue::Int(1), WitValue::Null, WitValue::Int(3)];
        let result = columns(vec![WitColumn::Values(mixed), WitColumn::Values(vec![WitValue::Text("x".into())])]);
        assert_eq!(result.ints(0).unwrap(), vec![Some(1), None, Some(3)]);
        assert_eq!(result.floats(0).unwrap(), vec![Some(1.0), None, Some(3.0)]);
        assert!(result.ints(1).is_err());
        assert!(result.texts(0).is_err());
        assert!(result.ints(2).is_err(), "no such column");
    }
}
