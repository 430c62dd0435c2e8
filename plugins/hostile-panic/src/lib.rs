//! Test guest: creates a table, then panics. The host must report the panic message and
//! roll the table back.

use wasmig_sdk::{Db, Migration, Result, params};

struct PanicAfterWrite;

impl Migration for PanicAfterWrite {
    fn up(db: &Db) -> Result<()> {
        db.execute("CREATE TABLE panic_marker (id INTEGER)", params![])?;
        panic!("deliberate panic after creating panic_marker");
    }
}

wasmig_sdk::export_migration!(PanicAfterWrite);
