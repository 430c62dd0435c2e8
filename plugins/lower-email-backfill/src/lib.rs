//! Benchmark guest (PostgreSQL): sets `users.email_lower = lower(email)` by key, one batch per
//! call: one SELECT, the lower-casing in the guest, one UPDATE binding the whole batch as two
//! arrays, so each batch is two round trips whatever its size.

use wasmig_sdk::{Batch, Db, Error, Migration, Result, params};

struct LowerEmail;

impl Migration for LowerEmail {
    fn up(_db: &Db) -> Result<()> {
        Ok(())
    }

    fn backfill(db: &Db, cursor: Option<String>, batch_size: u32) -> Result<Batch> {
        let after: i64 = match cursor {
            Some(c) => c.parse().map_err(|_| Error::msg(format!("bad cursor {c:?}")))?,
            None => 0,
        };
        let rows =
            db.query("SELECT id, email FROM users WHERE id > $1 ORDER BY id LIMIT $2", params![after, batch_size])?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut lowered = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.get::<i64>(0)?);
            lowered.push(row.get::<String>(1)?.to_lowercase());
        }
        let Some(&last) = ids.last() else { return Ok(Batch::done(0)) };
        let count = ids.len() as u64;
        db.execute(
            "UPDATE users SET email_lower = v.email_lower \
             FROM unnest($1::bigint[], $2::text[]) AS v(id, email_lower) WHERE users.id = v.id",
            params![ids, lowered],
        )?;
        if count < u64::from(batch_size) { Ok(Batch::done(count)) } else { Ok(Batch::next(last.to_string(), count)) }
    }
}

wasmig_sdk::export_migration!(LowerEmail);
