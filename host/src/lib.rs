//! wasmig: database migrations as plain SQL or as sandboxed WebAssembly components.
//!
//! A run reads the project ([`catalog`]), connects ([`db`]), takes the migration lock, reads
//! the [`history`], makes a [`plan`] and executes each step in one transaction with its
//! history row. Components run in the [`sandbox`], which grants them nothing but a SQL handle
//! and `log`, under fuel, memory and time [`limits`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmig::{Config, Migrator};
//!
//! let config = Config::load(std::path::Path::new("migrations"), None)?;
//! let migrator = Migrator::open(config).await?;
//! let report = migrator.up(None).await?;
//! print!("{report}");
//! # Ok(())
//! # }
//! ```

pub mod backfill;
pub mod catalog;
pub mod config;
pub mod db;
pub mod digest;
mod error;
mod executor;
pub mod guard;
pub mod history;
pub mod limits;
pub mod manifest;
mod migrator;
pub mod plan;
pub mod report;
pub mod sandbox;
pub mod scaffold;
pub mod signing;
pub mod sumfile;
pub mod trust;

pub use backfill::events::{BackfillEvent, BackfillObserver};
pub use backfill::store::{BackfillState, BackfillStatus};
pub use catalog::{Catalog, Migration, Version};
pub use config::Config;
pub use error::{Error, ErrorKind, RepairError};
pub use migrator::{Migrator, State, StatusEntry};
pub use plan::DownTarget;
pub use report::{Report, RunError};
