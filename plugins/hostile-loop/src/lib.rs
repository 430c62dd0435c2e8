//! Test guest: creates a table, then loops forever. Fuel must stop it and the table must
//! be rolled back.

use wasmig_sdk::{Db, Migration, Result, params};

struct LoopForever;

impl Migration for LoopForever {
    fn up(db: &Db) -> Result<()> {
        db.execute("CREATE TABLE loop_marker (id INTEGER)", params![])?;
        let mut counter: u64 = 0;
        loop {
            // black_box keeps the optimiser from proving the loop has no effect.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

wasmig_sdk::export_migration!(LoopForever);
