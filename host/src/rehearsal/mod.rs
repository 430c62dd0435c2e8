//! Rehearsals on a scratch database: `wasmig test` ([`round_trip`]) applies and reverts every
//! migration and names the first that does not come back as it went, and `wasmig drift`
//! ([`drift`]) compares the target's schema with what the project's migrations build.
//!
//! Each runs the same [`Migrator`](crate::migrator::Migrator) as a deploy, on an empty database of its own (made beside
//! the target and dropped after, or the user's `--scratch-url`, checked to be empty), so what
//! it proves is what `up` and `down` will do.

mod drift;
mod round_trip;
mod scratch;

pub use self::drift::{Drift, drift};
pub use self::round_trip::{Breakage, Broken, RoundTrip, Stage, round_trip};
pub use self::scratch::ScratchPlace;
