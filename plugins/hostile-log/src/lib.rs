//! Test guest: logs two hundred thousand messages and prints twenty megabytes to stdout and
//! stderr, then succeeds. The host must cap what reaches its log, say that it did, and never
//! fail the guest's writes (a failed write would make `println!` panic).

use wasmig_sdk::{Db, Migration, Result, log_info};

struct HostileLog;

impl Migration for HostileLog {
    fn up(_db: &Db) -> Result<()> {
        for n in 0..200_000 {
            log_info(&format!("flood message {n}"));
        }
        let line = "x".repeat(1023);
        for _ in 0..10_000 {
            println!("{line}");
            eprintln!("{line}");
        }
        log_info("flood done");
        Ok(())
    }
}

wasmig_sdk::export_migration!(HostileLog);
