//! The project on disk: the names of its files ([`layout`]), a migration's manifest and its
//! `[backfill]` section, the [`catalog`] of its migrations (each folder read by `folder` into
//! a `migration`, through `disk`, which opens every entry by name relative to its folder and
//! never through a link; what can fail is in `error`), the [`sumfile`], and [`scaffold`] for
//! new migrations.

pub mod backfill;
pub mod catalog;
mod disk;
mod error;
mod folder;
pub mod guest_sdk;
pub mod kept_files;
pub mod layout;
pub mod manifest;
mod migration;
pub mod scaffold;
pub mod sumfile;
