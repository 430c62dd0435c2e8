//! The backend boundary: the [`Database`] trait and what crosses it, a typed [`DbError`], and
//! the [`Dialect`] that answers backend differences; PostgreSQL and SQLite implement it.

mod connect;
mod database;
mod dialect;
mod error;
mod lock_wait;
mod postgres;
mod schema;
mod scratch;
mod sqlite;
mod transport;
mod url;

pub use self::connect::connect;
pub use self::database::{
    Access, Database, HeldLock, BoundStatement, ResultCap, Rows, ScriptRow, Stale, Value, is_truthy,
};
pub use self::dialect::{Backend, Dialect, StatementScreen};
pub(crate) use self::lock_wait::HolderNotice;
pub use self::error::{ConnectError, DbError, DbErrorKind, LockError, NotCommitted};
pub use self::postgres::{ConnInfoError, ConnectOptions, PgEnv, Pooler, PgTarget, RootCerts, SslMode, TlsSetupError};
pub use self::schema::{ObjectKind, Schema, SchemaDifference, SchemaObject};
pub use self::scratch::{Scratch, ScratchError};
pub use self::transport::{TlsCheck, Transport};
pub use self::url::{DatabaseUrl, UnsupportedUrl};
