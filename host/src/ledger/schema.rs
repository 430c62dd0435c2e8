//! The engine's tables, created together: the history and its repairs, the backfills and
//! their chunks. Their DDL lives here in one script, so that every table the engine owns is
//! read in one place.

use crate::db::{Access, Database, DbError, Dialect, Stale, Value};

use super::table::{HistoryError, HistoryTable};

/// Creates every table of the ledger that is missing, and brings the tables an earlier wasmig
/// made up to date (integer version columns become text; the history gains `files`), in one
/// transaction. Call it under the migration lock: concurrent `CREATE TABLE IF NOT EXISTS` can
/// still collide on PostgreSQL.
pub async fn ensure(db: &dyn Database, table: &HistoryTable) -> Result<(), HistoryError> {
    // One catalog query says whether there is anything to do: on every run after the first,
    // nothing, and then no transaction is spent on it.
    if is_current(db, table).await? {
        return Ok(());
    }
    let failed = |source| HistoryError::Database { table: table.to_string(), source };
    let dialect = db.dialect();
    db.begin(Access::ReadWrite).await.map_err(failed)?;
    let created = async {
        db.run_script(&create_script(table, dialect)).await?;
        let columns = LedgerColumns::read(db, table).await?;
        let mut script = String::new();
        if !columns.has(table, "files") {
            // Added first: on SQLite it then sits last, where a rebuilt table has it.
            script.push_str(&format!("ALTER TABLE {table} ADD COLUMN files TEXT;\n"));
        }
        let narrow: Vec<HistoryTable> =
            keyed_by_version(table).into_iter().filter(|t| columns.is_integer_version(t)).collect();
        if !narrow.is_empty() {
            tracing::info!(tables = narrow.len(), "converting the ledger's version columns to text");
            script.push_str(&widen_script(table, &narrow, dialect));
        }
        if !script.is_empty() {
            db.run_script(&script).await?;
        }
        Ok(())
    };
    let made = match created.await {
        Ok(()) => db.commit().await.map_err(failed),
        Err(error) => {
            let _ = db.rollback().await;
            Err(failed(error))
        }
    };
    // A statement read before (a look without the lock, a status) may have been prepared
    // against the columns as they were.
    db.forget_prepared_statements(Stale::LedgerTables);
    made
}

/// Whether every table of the ledger exists as this wasmig makes it, so that [`ensure`] would
/// do nothing: a run with nothing to apply need not take the lock to bring them up to date.
pub async fn is_current(db: &dyn Database, table: &HistoryTable) -> Result<bool, HistoryError> {
    let columns = LedgerColumns::read(db, table)
        .await
        .map_err(|source| HistoryError::Database { table: table.to_string(), source })?;
    Ok(columns.up_to_date(table))
}

/// The ledger's tables whose rows are keyed by a migration's version.
fn keyed_by_version(table: &HistoryTable) -> [HistoryTable; 6] {
    [table.clone(), table.repairs(), table.backfills(), table.chunks(), table.started(), table.audit()]
}

/// The `version` and `files` columns the version-keyed tables have: (table, column, type).
struct LedgerColumns(Vec<(String, String, String)>);

impl LedgerColumns {
    async fn read(db: &dyn Database, table: &HistoryTable) -> Result<LedgerColumns, DbError> {
        let tables = keyed_by_version(table);
        let schema = table.namespace().map_or(Value::Null, |schema| Value::Text(schema.to_owned()));
        let params: Vec<Value> =
            std::iter::once(schema).chain(tables.iter().map(|t| Value::Text(t.bare_name().to_owned()))).collect();
        let rows = db.query(db.dialect().ledger_columns, &params).await?;
        let text = |row: &[Value], index: usize| match row.get(index) {
            Some(Value::Text(text)) => text.clone(),
            _ => String::new(),
        };
        Ok(LedgerColumns(rows.values.iter().map(|row| (text(row, 0), text(row, 1), text(row, 2))).collect()))
    }

    /// Whether every table exists as this wasmig makes it: a text `version` column in each,
    /// and the history's `files`.
    fn up_to_date(&self, table: &HistoryTable) -> bool {
        self.has(table, "files")
            && keyed_by_version(table)
                .iter()
                .all(|t| self.has(t, "version") && !self.is_integer_version(t))
    }

    fn has(&self, table: &HistoryTable, column: &str) -> bool {
        self.0.iter().any(|(t, c, _)| t == table.bare_name() && c == column)
    }

    fn is_integer_version(&self, table: &HistoryTable) -> bool {
        self.0.iter().any(|(t, c, kind)| t == table.bare_name() && c == "version" && kind.eq_ignore_ascii_case("bigint"))
    }
}

/// Turns each of `narrow`'s `version` columns into text: in place where the backend can change
/// a column's type, else by renaming the table aside, creating it anew and copying its rows
/// (a column of TEXT affinity stores each integer as its digits).
fn widen_script(table: &HistoryTable, narrow: &[HistoryTable], dialect: &Dialect) -> String {
    if dialect.retypes_columns {
        return narrow
            .iter()
            .map(|t| format!("ALTER TABLE {t} ALTER COLUMN version TYPE TEXT USING CAST(version AS TEXT);\n"))
            .collect();
    }
    let aside = |t: &HistoryTable| t.beside("before_text_versions");
    let mut script: String = narrow
        .iter()
        .map(|t| format!("ALTER TABLE {t} RENAME TO {};\n", crate::core::quote_ident(aside(t).bare_name())))
        .collect();
    script.push_str(&create_script(table, dialect));
    script.push('\n');
    for t in narrow {
        script.push_str(&format!("INSERT INTO {t} SELECT * FROM {aside};\nDROP TABLE {aside};\n", aside = aside(t)));
    }
    script
}

/// Drops every table of the ledger, in one transaction: for a scratch database a rehearsal
/// was given, which it leaves as empty as it found it.
pub async fn remove(db: &dyn Database, table: &HistoryTable) -> Result<(), HistoryError> {
    let script: String = [table.chunks(), table.backfills(), table.started(), table.audit(), table.repairs(), table.locks()]
        .iter()
        .chain([table])
        .map(|ledger| format!("DROP TABLE IF EXISTS {ledger};\n"))
        .collect();
    in_one_transaction(db, table, &script).await
}

/// Runs `script` (the ledger's DDL) in a transaction of its own, rolled back if it fails.
async fn in_one_transaction(db: &dyn Database, table: &HistoryTable, script: &str) -> Result<(), HistoryError> {
    let failed = |source| HistoryError::Database { table: table.to_string(), source };
    db.begin(Access::ReadWrite).await.map_err(failed)?;
    match db.run_script(script).await {
        Ok(_) => db.commit().await.map_err(failed),
        Err(error) => {
            let _ = db.rollback().await;
            Err(failed(error))
        }
    }
}

/// The ledger's tables pinned to the session's current schema, where an unqualified name could
/// resolve through a temporary schema: the engine's statements then never resolve them there
/// (a temporary table of the same name, made by a SQL migration, would otherwise take the
/// history rows). A schema wasmig cannot quote as an identifier stays the server's to resolve.
pub async fn pinned(db: &dyn Database, history: HistoryTable) -> Result<HistoryTable, DbError> {
    let Some(current_schema) = db.dialect().current_schema.filter(|_| history.is_unqualified()) else {
        return Ok(history);
    };
    // A script, not a prepared statement: one round trip where preparing it first is two.
    let rows = db.run_script(current_schema).await?;
    match rows.into_iter().next().and_then(|row| row.first_column) {
        Some(schema) => Ok(history.clone().resolved_in(&schema).unwrap_or(history)),
        None => Ok(history),
    }
}

/// `CREATE SCHEMA IF NOT EXISTS` for the history's schema, where the backend has schemas and
/// the project file names one; else nothing.
fn create_schema(table: &HistoryTable, dialect: &Dialect) -> String {
    match (dialect.creates_schemas, table.schema()) {
        (true, Some(schema)) => format!("CREATE SCHEMA IF NOT EXISTS {};\n", crate::core::quote_ident(schema.as_str())),
        _ => String::new(),
    }
}

/// The lock table of `table` mode (PostgreSQL only), and its schema. It is created apart from
/// the others, before the lock is taken, where they are created under it.
pub(super) fn lock_table_script(history: &HistoryTable, dialect: &Dialect) -> String {
    let mut script = create_schema(history, dialect);
    script.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {} (
            name TEXT PRIMARY KEY,
            token TEXT NOT NULL,
            holder TEXT NOT NULL,
            acquired_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        );",
        history.locks()
    ));
    script
}

/// `CREATE TABLE IF NOT EXISTS` for every table, and the schema where the backend has them.
fn create_script(table: &HistoryTable, dialect: &Dialect) -> String {
    let (timestamp, default_now, boolean) = (dialect.timestamp_type, dialect.timestamp_now, dialect.boolean_type);
    let serial_key = dialect.serial_key;
    let mut script = create_schema(table, dialect);
    script.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            version TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            digest TEXT NOT NULL,
            applied_at {timestamp} NOT NULL DEFAULT {default_now},
            applied_by TEXT NOT NULL,
            duration_ms BIGINT NOT NULL,
            signers TEXT NOT NULL DEFAULT '',
            files TEXT
        );
        CREATE TABLE IF NOT EXISTS {repairs} (
            version TEXT NOT NULL,
            old_digest TEXT NOT NULL,
            new_digest TEXT NOT NULL,
            reason TEXT NOT NULL,
            repaired_by TEXT NOT NULL,
            repaired_at {timestamp} NOT NULL DEFAULT {default_now}
        );
        CREATE TABLE IF NOT EXISTS {backfills} (
            version TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            rows_estimate BIGINT,
            started_ms BIGINT NOT NULL,
            finished_ms BIGINT,
            rate_since_ms BIGINT NOT NULL,
            rate_since_rows BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {chunks} (
            version TEXT NOT NULL,
            chunk BIGINT NOT NULL,
            after_key TEXT,
            until_key TEXT,
            cursor TEXT,
            rows_done BIGINT NOT NULL,
            batches BIGINT NOT NULL,
            done {boolean} NOT NULL,
            leased_by TEXT,
            lease_expires_ms BIGINT,
            updated_ms BIGINT,
            PRIMARY KEY (version, chunk)
        );
        CREATE TABLE IF NOT EXISTS {started} (
            version TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            digest TEXT NOT NULL,
            direction TEXT NOT NULL,
            started_by TEXT NOT NULL,
            started_at {timestamp} NOT NULL DEFAULT {default_now}
        );
        CREATE TABLE IF NOT EXISTS {audit} (
            id {serial_key},
            at {timestamp} NOT NULL DEFAULT {default_now},
            action TEXT NOT NULL,
            version TEXT NOT NULL,
            migration TEXT NOT NULL,
            digest TEXT NOT NULL,
            signers TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            duration_ms BIGINT NOT NULL,
            actor TEXT NOT NULL,
            host TEXT NOT NULL,
            ci TEXT
        );",
        repairs = table.repairs(),
        backfills = table.backfills(),
        chunks = table.chunks(),
        started = table.started(),
        audit = table.audit(),
    ));
    script
}
