//! Example backfill: sets `users.email_domain` to the lower-cased domain of `users.email`,
//! walking the table by primary key one batch at a time.
//!
//! The cursor is the last id processed, so a batch re-run after a crash starts exactly where
//! the last committed batch stopped, and the host can split the table into chunks by `id`.

use wasmig_sdk::{Batch, BatchRequest, Db, Error, Migration, Result, Value, params};

struct BackfillEmailDomain;

fn domain_of(email: &str) -> Option<String> {
    email.rsplit_once('@').map(|(_, domain)| domain.to_lowercase())
}

impl Migration for BackfillEmailDomain {
    fn up(_db: &Db) -> Result<()> {
        // The work happens in `backfill`; the schema is already in place.
        Ok(())
    }

    fn down(db: &Db) -> Result<()> {
        db.execute("UPDATE users SET email_domain = NULL", params![])?;
        Ok(())
    }

    fn verify(db: &Db) -> Result<()> {
        let rows = db.query("SELECT count(*) FROM users WHERE email_domain IS NULL AND email LIKE '%@%'", params![])?;
        let missing: i64 = rows.first()?.get(0)?;
        if missing > 0 {
            return Err(Error::msg(format!("{missing} users still have no email_domain")));
        }
        Ok(())
    }

    fn backfill(db: &Db, request: &BatchRequest) -> Result<Batch> {
        let after = request.cursor_key::<i64>()?.unwrap_or(i64::MIN);
        let until = request.until_key::<i64>()?.unwrap_or(i64::MAX);
        let rows = db.query(
            "SELECT id, email FROM users WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            params![after, until, request.size],
        )?;
        let mut updates = Vec::with_capacity(rows.len());
        let mut last_id = None;
        for row in &rows {
            let id: i64 = row.get(0)?;
            let email: Option<String> = row.get(1)?;
            updates.push(vec![Value::from(email.as_deref().and_then(domain_of)), Value::from(id)]);
            last_id = Some(id);
        }
        if !updates.is_empty() {
            db.execute_many("UPDATE users SET email_domain = $1 WHERE id = $2", updates)?;
        }
        Ok(request.batch_after(last_id, rows.len() as u64))
    }
}

wasmig_sdk::export_migration!(BackfillEmailDomain);
