//! The ledger: every table the engine owns in the target database, all named after the
//! history table. The history of applied migrations and their repairs ([`history`]), the
//! progress of backfills and their chunks ([`backfills`]), the migration lock in `table` mode
//! ([`lock`]), and their DDL ([`schema`]).

pub mod backfills;
pub mod history;
pub mod lock;
pub mod schema;
pub mod table;

pub use self::backfills::{BackfillState, BackfillStatus, BackfillStore};
pub use self::history::{AppliedMigration, History, NewRecord, Repair};
pub use self::lock::LockMode;
pub use self::table::{HistoryError, HistoryTable};
