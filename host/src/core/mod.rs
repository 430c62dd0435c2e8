//! The foundation every other layer builds on: the engine's core types and the small
//! facts about the process, with no knowledge of projects, databases or components.

pub mod digest;
mod error_chain;
pub mod ident;
pub mod limits;
mod os_user;
mod version;

pub use self::digest::Digest;
pub use self::error_chain::error_chain;
pub use self::ident::{Identifier, IdentifierError, TableName, quote_ident};
pub use self::os_user::os_user;
pub use self::version::Version;
