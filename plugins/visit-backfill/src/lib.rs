//! Test guest: sets `items.email_lower` from `items.email` by key and adds one to
//! `items.visits` for every row it writes, so a test can prove each row was processed exactly
//! once however often the run was killed or however many workers shared it. It reads its
//! batch by column (`query-columns`) and verifies by row (`query`), so both shapes are tested.
//!
//! Each row's `spin` column makes the guest burn that many loop iterations on it, which lets a
//! test make a batch need more fuel than the limit. A row whose email changed after it was read
//! is left alone: the concurrent writer that changed it wrote its `email_lower` too.

use wasmig_sdk::{Batch, BatchRequest, Db, Error, Migration, Result, Value, params};

struct VisitBackfill;

/// Work proportional to `spin` that the compiler cannot remove.
fn burn(spin: i64) -> u64 {
    let mut acc = 0u64;
    for i in 0..spin {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i as u64));
    }
    acc
}

impl Migration for VisitBackfill {
    fn up(_db: &Db) -> Result<()> {
        Ok(())
    }

    fn down(db: &Db) -> Result<()> {
        db.execute("UPDATE items SET email_lower = NULL, visits = 0", params![])?;
        Ok(())
    }

    fn verify(db: &Db) -> Result<()> {
        let rows =
            db.query("SELECT count(*) FROM items WHERE email_lower IS NULL OR email_lower <> lower(email)", params![])?;
        let wrong: i64 = rows.first()?.get(0)?;
        if wrong > 0 {
            return Err(Error::msg(format!("{wrong} items have no correct email_lower")));
        }
        Ok(())
    }

    fn backfill(db: &Db, request: &BatchRequest) -> Result<Batch> {
        let after = request.cursor_key::<i64>()?.unwrap_or(i64::MIN);
        let until = request.until_key::<i64>()?.unwrap_or(i64::MAX);
        let batch = db.query_columns(
            "SELECT id, email, spin FROM items WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            params![after, until, request.size],
        )?;
        let (ids, emails, spins) = (batch.ints(0)?, batch.texts(1)?, batch.ints(2)?);
        let mut updates = Vec::with_capacity(batch.len());
        let mut last = None;
        for ((id, email), spin) in ids.into_iter().zip(emails).zip(spins) {
            let (Some(id), Some(email), Some(spin)) = (id, email, spin) else {
                return Err(Error::msg("items.id, email and spin must not be NULL"));
            };
            std::hint::black_box(burn(spin));
            updates.push(vec![Value::from(email.to_lowercase()), Value::from(id), Value::from(email)]);
            last = Some(id);
        }
        if !updates.is_empty() {
            db.execute_many(
                "UPDATE items SET email_lower = $1, visits = visits + 1 WHERE id = $2 AND email = $3",
                updates,
            )?;
        }
        Ok(request.batch_after(last, batch.len() as u64))
    }
}

wasmig_sdk::export_migration!(VisitBackfill);
