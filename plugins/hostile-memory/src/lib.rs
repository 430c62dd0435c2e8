//! Test guest: creates a table, then allocates without bound. The memory cap must stop it
//! and the table must be rolled back.

use wasmig_sdk::{Db, Migration, Result, params};

struct AllocateForever;

impl Migration for AllocateForever {
    fn up(db: &Db) -> Result<()> {
        db.execute("CREATE TABLE memory_marker (id INTEGER)", params![])?;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 16 * 1024 * 1024]);
            std::hint::black_box(&hoard);
        }
    }
}

wasmig_sdk::export_migration!(AllocateForever);
