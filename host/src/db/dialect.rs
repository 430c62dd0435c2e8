//! [`Dialect`]: what differs between the backends, as data. The layers above `db` read the
//! connection's dialect instead of asking which backend they talk to, so a difference is
//! named once, here, with the reason for it.

/// How a component's statements are screened before they reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementScreen {
    /// Parsed with the server's own grammar and checked against the grants before they are
    /// sent, with their tables qualified (PostgreSQL).
    Parsed,
    /// Sent as they are; the database's authorizer checks every table and column as the
    /// statement is prepared (SQLite).
    Authorizer,
}

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        })
    }
}

/// A backend's answers to the engine's questions.
#[derive(Debug, PartialEq, Eq)]
pub struct Dialect {
    /// Which backend this is, for messages (never for deciding what to do).
    pub backend: Backend,
    /// The column type of a moment in time.
    pub timestamp_type: &'static str,
    /// The SQL default for "now" in such a column.
    pub timestamp_now: &'static str,
    /// The column type the engine keeps a flag in.
    pub boolean_type: &'static str,
    /// The database clock in milliseconds since the epoch, as SQL. PostgreSQL's `now()` would
    /// be the transaction's start, so workers would disagree on when a lease expires.
    pub clock_ms: &'static str,
    /// Whether the engine creates the history table's schema itself.
    pub creates_schemas: bool,
    /// The SQL asking the session's current schema (no row when it is a temporary one), where
    /// an unqualified name could instead resolve through a per-session temporary schema
    /// (PostgreSQL's `pg_temp`), so that the engine pins its own tables to the current schema.
    pub current_schema: Option<&'static str>,
    /// Whether rows can be locked (`FOR UPDATE`, `SKIP LOCKED`): several writers at once
    /// need it; without it one writer holds the whole database.
    pub row_locks: bool,
    /// Whether a statement can fail on purpose by dividing by zero, so that one pipelined
    /// with COMMIT keeps the transaction from committing (SQLite's division by zero is NULL).
    pub raises_division_by_zero: bool,
    /// The SQL for the largest replay lag of the standbys, in milliseconds, where there can be
    /// standbys.
    pub replication_lag_ms: Option<&'static str>,
    /// Whether the session runs as a database role of its own, which `applied_by` names.
    pub roles: bool,
    /// How a component's statements are screened.
    pub screen: StatementScreen,
}

pub const POSTGRES: Dialect = Dialect {
    backend: Backend::Postgres,
    timestamp_type: "TIMESTAMPTZ",
    timestamp_now: "now()",
    boolean_type: "BOOLEAN",
    clock_ms: "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
    creates_schemas: true,
    current_schema: Some(
        "SELECT current_schema()::text WHERE current_schema() IS NOT NULL AND current_schema() NOT LIKE 'pg\\_temp%'",
    ),
    row_locks: true,
    raises_division_by_zero: true,
    replication_lag_ms: Some(
        "SELECT CAST(COALESCE(max(extract(epoch FROM replay_lag)) * 1000, 0) AS BIGINT) FROM pg_stat_replication",
    ),
    roles: true,
    screen: StatementScreen::Parsed,
};

pub const SQLITE: Dialect = Dialect {
    backend: Backend::Sqlite,
    timestamp_type: "TEXT",
    timestamp_now: "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    boolean_type: "INTEGER",
    clock_ms: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    creates_schemas: false,
    current_schema: None,
    row_locks: false,
    raises_division_by_zero: false,
    replication_lag_ms: None,
    roles: false,
    screen: StatementScreen::Authorizer,
};
