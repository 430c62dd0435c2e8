//! Example schema change: adds `users.email_domain`, the column the backfill example fills.

use wasmig_sdk::{Db, Migration, Result, params};

struct AddEmailDomain;

impl Migration for AddEmailDomain {
    fn up(db: &Db) -> Result<()> {
        db.execute("ALTER TABLE users ADD COLUMN email_domain TEXT", params![])?;
        wasmig_sdk::log_info("added users.email_domain");
        Ok(())
    }

    fn down(db: &Db) -> Result<()> {
        db.execute("ALTER TABLE users DROP COLUMN email_domain", params![])?;
        Ok(())
    }

    fn verify(db: &Db) -> Result<()> {
        // Selecting the column proves it exists; LIMIT 0 keeps it free on a large table.
        db.query("SELECT email_domain FROM users LIMIT 0", params![])?;
        Ok(())
    }
}

wasmig_sdk::export_migration!(AddEmailDomain);
