//! Test guest: up creates a table, verify rejects it. The whole migration must roll back.

use wasmig_sdk::{Db, Error, Migration, Result, params};

struct FailingVerify;

impl Migration for FailingVerify {
    fn up(db: &Db) -> Result<()> {
        db.execute("CREATE TABLE verify_marker (id INTEGER)", params![])?;
        Ok(())
    }

    fn verify(db: &Db) -> Result<()> {
        let rows = db.query("SELECT count(*) FROM verify_marker", params![])?;
        let count: i64 = rows.first()?.get(0)?;
        Err(Error::msg(format!("verify_marker must hold at least one row, found {count}")))
    }
}

wasmig_sdk::export_migration!(FailingVerify);
