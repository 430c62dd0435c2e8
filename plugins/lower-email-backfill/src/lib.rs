//! Benchmark guest (PostgreSQL): sets `users.email_lower = lower(email)` by key, one batch per
//! call: one SELECT, read by column (no allocation per row), the lower-casing in the guest,
//! one UPDATE binding the whole batch as two arrays, so each batch is two statements whatever
//! its size.
//!
//! The UPDATE also bounds `users.id` by the batch's first and last key: PostgreSQL then reads
//! the batch's rows with one index range scan and hash-joins them to the arrays, instead of
//! descending the index once per row.

use wasmig_sdk::{Batch, BatchRequest, Db, Migration, Result, params};

struct LowerEmail;

impl Migration for LowerEmail {
    fn up(_db: &Db) -> Result<()> {
        Ok(())
    }

    fn backfill(db: &Db, request: &BatchRequest) -> Result<Batch> {
        let after = request.cursor_key::<i64>()?.unwrap_or(i64::MIN);
        let until = request.until_key::<i64>()?.unwrap_or(i64::MAX);
        let batch = db.query_columns(
            "SELECT id, email FROM users WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            params![after, until, request.size],
        )?;
        let ids = batch.ints(0)?;
        let lowered: Vec<Option<String>> =
            batch.texts(1)?.into_iter().map(|email| email.map(str::to_lowercase)).collect();
        let (first, last) = (ids.first().copied().flatten(), ids.last().copied().flatten());
        let count = ids.len() as u64;
        if let (Some(first), Some(last)) = (first, last) {
            db.execute(
                "UPDATE users SET email_lower = v.email_lower \
                 FROM unnest($1::bigint[], $2::text[]) AS v(id, email_lower) \
                 WHERE users.id = v.id AND users.id BETWEEN $3 AND $4",
                params![ids, lowered, first, last],
            )?;
        }
        Ok(request.batch_after(last, count))
    }
}

wasmig_sdk::export_migration!(LowerEmail);
