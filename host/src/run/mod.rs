//! Running migrations: a [`session::Session`] (a run's connection, lock check and ledger),
//! the step [`executor`], and the [`backfill`] runner. Everything here takes a session; the
//! facade ([`crate::Migrator`]) decides what runs.

pub mod backfill;
pub mod executor;
pub mod session;
