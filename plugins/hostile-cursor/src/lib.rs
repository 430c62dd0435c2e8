//! Test guest: a backfill whose cursor misbehaves as the table `cursor_mode (mode)` says:
//! `alternate` (5, 3, 5, 3, …), `decrease` (from its chunk's end down), `ignore-until` (1, 2, 3, … past
//! its chunk's end) or `forever` (the same, with no key declared). It writes nothing; the host
//! must stop each with an error that says why.

use wasmig_sdk::{Batch, BatchRequest, Db, Error, Migration, Result};

struct HostileCursor;

impl Migration for HostileCursor {
    fn up(_db: &Db) -> Result<()> {
        Ok(())
    }

    fn backfill(db: &Db, request: &BatchRequest) -> Result<Batch> {
        let rows = db.query("SELECT mode FROM cursor_mode", Vec::new())?;
        let mode: String = rows.first()?.get(0)?;
        let cursor = request.cursor_key::<i64>()?;
        let next = match (mode.as_str(), cursor) {
            ("alternate", Some(5)) => 3,
            ("alternate", _) => 5,
            ("decrease", None) => request.until_key::<i64>()?.unwrap_or(1000),
            ("decrease", Some(n)) => n - 1,
            ("ignore-until" | "forever", None) => 1,
            ("ignore-until" | "forever", Some(n)) => n + 1,
            (other, _) => return Err(Error::msg(format!("unknown mode {other}"))),
        };
        Ok(Batch::next(next.to_string(), 1))
    }
}

wasmig_sdk::export_migration!(HostileCursor);
