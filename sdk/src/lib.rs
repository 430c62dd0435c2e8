//! The Rust SDK for wasmig migration components.
//!
//! A migration is a type implementing [`Migration`], exported with [`export_migration!`] from a
//! `cdylib` crate built for `wasm32-wasip2` (which makes the `.wasm` a component). The SDK owns
//! the generated WIT bindings; a migration only ever sees [`Db`], [`Value`], [`Rows`], [`Row`],
//! [`Columns`], [`Batch`] and [`Error`].
//!
//! # Examples
//!
//! ```no_run
//! use wasmig_sdk::{Db, Migration, Result, params};
//!
//! struct AddNickname;
//!
//! impl Migration for AddNickname {
//!     fn up(db: &Db) -> Result<()> {
//!         db.execute("ALTER TABLE users ADD COLUMN nickname text", params![])?;
//!         Ok(())
//!     }
//!
//!     fn down(db: &Db) -> Result<()> {
//!         db.execute("ALTER TABLE users DROP COLUMN nickname", params![])?;
//!         Ok(())
//!     }
//! }
//!
//! wasmig_sdk::export_migration!(AddNickname);
//! ```

// Lets the generated bindings name this crate by the path guests use (`wasmig_sdk::…`).
extern crate self as wasmig_sdk;

mod columns;
mod db;
mod error;
mod value;

#[doc(hidden)]
pub mod __export;

pub use columns::Columns;
pub use db::{Batch, BatchRequest, Db, Row, Rows};
pub use error::{Error, Result, SqlError};
pub use value::{FromValue, Value};

/// The generated bindings; private API used by [`export_migration!`].
#[doc(hidden)]
// The generated export glue takes the batch request flattened into core-wasm parameters.
#[allow(clippy::too_many_arguments)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "migration",
        pub_export_macro: true,
        export_macro_name: "__export_migration_world",
        default_bindings_module: "wasmig_sdk::__bindings",
        runtime_path: "wasmig_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// A migration: its schema change (`up`, `down`), its check (`verify`) and an optional
/// data backfill run in batches.
///
/// Each method runs inside a transaction the host opened; returning `Err` rolls it back and
/// fails the migration with that message. Only `up` is required.
pub trait Migration {
    /// Applies the migration.
    fn up(db: &Db) -> Result<()>;

    /// Reverts the migration. By default a migration cannot be reverted.
    fn down(_db: &Db) -> Result<()> {
        Err(Error::msg("this migration does not implement down"))
    }

    /// Checks the migration's effect. Runs read-only, after `up` in the same transaction,
    /// and again on `wasmig verify`. By default there is nothing to check.
    fn verify(_db: &Db) -> Result<()> {
        Ok(())
    }

    /// Processes one batch of a backfill: at most `request.size` rows after `request.cursor`
    /// (`None` on the first call) and up to `request.until` (`None`: to the end). Return
    /// [`Batch::next`] with the cursor to resume from, or [`Batch::done`] when nothing is left
    /// in the range. The batch's writes and the returned cursor commit together, so a killed
    /// backfill resumes exactly where it stopped.
    fn backfill(_db: &Db, _request: &BatchRequest) -> Result<Batch> {
        Ok(Batch::done(0))
    }
}

/// Exports a [`Migration`] implementation as the component's `up`, `down`, `verify` and
/// `backfill`.
///
/// # Examples
///
/// ```ignore
/// struct CreateUsers;
/// impl wasmig_sdk::Migration for CreateUsers { /* ... */ }
/// wasmig_sdk::export_migration!(CreateUsers);
/// ```
#[macro_export]
macro_rules! export_migration {
    ($migration:ty) => {
        const _: () = {
            struct WasmigExport;

            impl $crate::__bindings::Guest for WasmigExport {
                fn up(
                    db: &$crate::__bindings::wasmig::migration::sql::Connection,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export::up::<$migration>(db)
                }

                fn down(
                    db: &$crate::__bindings::wasmig::migration::sql::Connection,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export::down::<$migration>(db)
                }

                fn verify(
                    db: &$crate::__bindings::wasmig::migration::sql::Connection,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__export::verify::<$migration>(db)
                }

                fn backfill(
                    db: &$crate::__bindings::wasmig::migration::sql::Connection,
                    request: $crate::__bindings::BatchRequest,
                ) -> ::core::result::Result<$crate::__bindings::Batch, ::std::string::String> {
                    $crate::__export::backfill::<$migration>(db, request)
                }
            }

            $crate::__bindings::__export_migration_world!(
                WasmigExport with_types_in $crate::__bindings
            );
        };
    };
}

/// Builds a parameter list for [`Db::query`], [`Db::execute`] and friends, converting each
/// argument with [`Value::from`].
///
/// # Examples
///
/// ```ignore
/// db.execute("UPDATE users SET email = $1 WHERE id = $2", params!["a@example.com", 7_i64])?;
/// ```
#[macro_export]
macro_rules! params {
    () => { ::std::vec::Vec::<$crate::Value>::new() };
    ($($param:expr),+ $(,)?) => { ::std::vec![$($crate::Value::from($param)),+] };
}

/// Logs a message through the host's log (it appears in `wasmig`'s output, tagged with the
/// migration).
pub fn log_info(message: &str) {
    use __bindings::wasmig::migration::log;
    log::log(log::Level::Info, message);
}

/// Logs a warning through the host's log.
pub fn log_warn(message: &str) {
    use __bindings::wasmig::migration::log;
    log::log(log::Level::Warn, message);
}
