//! Splitting a backfill's table into key-range chunks, once, when the backfill starts.
//!
//! One pass of `ntile` over the key (an index scan on a primary key) gives each chunk's upper
//! bound, so chunks hold about `chunk_rows` rows each whatever the key's type or gaps. The first
//! chunk is open below and the last open above: rows inserted later past the end still fall in
//! a chunk.

use crate::core::quote_ident;
use crate::db::{Database, DbError, Value};
use crate::ledger::backfills::ChunkBounds;
use crate::project::backfill::Chunking;

/// The table's row count when the backfill starts (its estimate), and its chunks: one open
/// range when the manifest names no key.
pub(crate) async fn plan(
    db: &dyn Database,
    chunking: Option<&Chunking>,
) -> Result<(Option<i64>, Vec<ChunkBounds>), DbError> {
    let whole = vec![ChunkBounds { after: None, until: None }];
    let Some(chunking) = chunking else { return Ok((None, whole)) };
    let table = quoted_table(chunking);
    let rows = db.query(&format!("SELECT count(*) FROM {table}"), &[]).await?;
    let count = match rows.values.first().and_then(|row| row.first()) {
        Some(Value::Int(count)) => *count,
        _ => return Err(DbError::client("unexpected", format!("count(*) of {table} is not an integer"))),
    };
    let tiles = u64::try_from(count).unwrap_or(0).div_ceil(chunking.chunk_rows.max(1));
    if tiles <= 1 {
        return Ok((Some(count), whole));
    }
    let key = quote_ident(chunking.key.as_str());
    let bounds = db
        .query(
            &format!(
                "SELECT CAST(max(k) AS TEXT) FROM (SELECT {key} AS k, ntile($1) OVER (ORDER BY {key}) AS tile \
                 FROM {table}) AS tiles GROUP BY tile ORDER BY tile"
            ),
            &[Value::Int(i64::try_from(tiles).unwrap_or(i64::MAX))],
        )
        .await?;
    let uppers: Vec<String> = bounds
        .values
        .into_iter()
        .filter_map(|row| match row.into_iter().next() {
            Some(Value::Text(bound)) => Some(bound),
            _ => None,
        })
        .collect();
    Ok((Some(count), chunks_between(&uppers)))
}

/// Chunks from each tile's upper bound: `(-, u1], (u1, u2], …, (u(n-1), -)`.
fn chunks_between(uppers: &[String]) -> Vec<ChunkBounds> {
    let mut chunks = Vec::with_capacity(uppers.len().max(1));
    let mut after = None;
    for upper in uppers.iter().take(uppers.len().saturating_sub(1)) {
        chunks.push(ChunkBounds { after: after.clone(), until: Some(upper.clone()) });
        after = Some(upper.clone());
    }
    chunks.push(ChunkBounds { after, until: None });
    chunks
}

fn quoted_table(chunking: &Chunking) -> String {
    match &chunking.table.schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&chunking.table.name)),
        None => quote_ident(&chunking.table.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_with_open_ends() {
        let chunks = chunks_between(&["10".into(), "20".into(), "30".into()]);
        let pairs: Vec<_> = chunks.iter().map(|c| (c.after.as_deref(), c.until.as_deref())).collect();
        assert_eq!(pairs, vec![(None, Some("10")), (Some("10"), Some("20")), (Some("20"), None)]);
        assert_eq!(chunks_between(&[]), vec![ChunkBounds { after: None, until: None }]);
    }
}
