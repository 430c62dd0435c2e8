//! Running migrations: a [`session::Session`] (a run's connection, lock check and ledger),
//! the step [`executor`], the [`backup`] a step may need first, the [`backfill`] runner, and
//! the [`events`] they report. Everything here takes a session; the
//! facade ([`crate::Migrator`]) decides what runs.

pub mod backfill;
pub mod backup;
pub mod events;
pub mod executor;
pub mod session;
