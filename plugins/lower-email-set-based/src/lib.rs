//! Benchmark guest (PostgreSQL): the backfill of `plugins/lower-email-backfill`, set-based.
//! Each batch is one statement that lower-cases in the server and returns the batch's last key
//! and row count; no row crosses into the component.
//!
//! It exists to split the benchmark's gap to plain SQL in two: what the runner costs per batch
//! (the call into a fresh instance, the guard, the cursor, the transaction), which this guest
//! measures, and what moving each row through a component costs, which the other guest adds.

use wasmig_sdk::{Batch, BatchRequest, Db, Migration, Result, params};

struct LowerEmailSetBased;

impl Migration for LowerEmailSetBased {
    fn up(_db: &Db) -> Result<()> {
        Ok(())
    }

    fn backfill(db: &Db, request: &BatchRequest) -> Result<Batch> {
        let after = request.cursor_key::<i64>()?.unwrap_or(i64::MIN);
        let until = request.until_key::<i64>()?.unwrap_or(i64::MAX);
        let done = db.query(
            "WITH batch AS (SELECT id FROM users WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3), \
             updated AS (UPDATE users SET email_lower = lower(users.email) FROM batch \
                         WHERE users.id = batch.id RETURNING users.id) \
             SELECT max(id), count(*) FROM updated",
            params![after, until, request.size],
        )?;
        let row = done.first()?;
        let (last, count) = (row.get::<Option<i64>>(0)?, row.get::<i64>(1)?);
        Ok(request.batch_after(last, u64::try_from(count).unwrap_or(0)))
    }
}

wasmig_sdk::export_migration!(LowerEmailSetBased);
