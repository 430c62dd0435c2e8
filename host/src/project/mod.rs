//! The project on disk: the names of its files ([`layout`]), a migration's manifest and its
//! `[backfill]` section, the [`catalog`] read through a capability-scoped directory, the
//! [`sumfile`], and [`scaffold`] for new migrations.

pub mod backfill;
pub mod catalog;
pub mod guest_sdk;
pub mod kept_files;
pub mod layout;
pub mod manifest;
pub mod scaffold;
pub mod sumfile;
