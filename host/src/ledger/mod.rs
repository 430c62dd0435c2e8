//! The ledger: every table the engine owns in the target database, all named after the
//! history table. The history of applied migrations and their repairs ([`history`]), the
//! audit trail of every run ([`audit`]), the progress of backfills and their chunks
//! ([`backfills`]), the migration lock in `table` mode ([`lock`]), the steps running outside
//! a transaction ([`started`]), and their DDL ([`schema`]); and other tools' history tables,
//! read to take them over ([`foreign`]).

pub mod audit;
pub mod backfills;
pub mod foreign;
pub mod history;
pub mod lock;
pub mod schema;
pub mod started;
pub mod table;

pub use self::audit::{Audit, AuditEntry, NewAuditEntry, Who};
pub use self::backfills::{BackfillState, BackfillStatus, BackfillStore, LeaseHolder};
pub use self::history::{AppliedMigration, History, NewRecord, Repair};
pub use self::lock::LockMode;
pub use self::started::{Started, StartedDirection, StartedStep};
pub use self::table::{HistoryError, HistoryTable, LedgerWrite};
