//! The foundation every other layer builds on: the engine's core types and the small
//! facts about the process, with no knowledge of projects, databases or components.

mod ci;
mod date;
pub mod digest;
pub mod duration;
mod error_chain;
pub mod ident;
pub mod limits;
mod os_user;
mod version;

pub use self::ci::CiRun;
pub use self::date::{Date, rfc3339, utc_timestamp};
pub use self::digest::Digest;
pub use self::duration::{BadDuration, Human, parse_duration};
pub use self::error_chain::{error_chain, push_cause};
pub use self::ident::{Identifier, IdentifierError, TableName, quote_ident};
pub use self::os_user::{host_name, os_user};
pub use self::version::Version;
