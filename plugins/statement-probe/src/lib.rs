//! Test guest: in each phase (`up`, `verify`, `backfill`), runs the statements a test put in the
//! table `probe (phase, statement)` for that phase, in order, and reports every outcome as its
//! error message, one `statement<TAB>outcome` line each. With no statement for a phase it does
//! nothing there, so a test can reach `verify` or `backfill` through a clean `up`. Whatever it
//! ran is rolled back with its failure; the test asserts each outcome and the database after.

use wasmig_sdk::{Batch, BatchRequest, Db, Error, Migration, Result, SqlError, Value};

fn outcome(db: &Db, statement: &str) -> String {
    let text = match db.query(statement, Vec::new()) {
        Ok(rows) => {
            let first = rows.first().ok().and_then(|row| row.get::<Option<String>>(0).ok()).flatten();
            match first {
                Some(value) => format!("ok ({} rows, first {value})", rows.len()),
                None => format!("ok ({} rows)", rows.len()),
            }
        }
        Err(SqlError::Denied(m)) => format!("denied: {m}"),
        Err(SqlError::Invalid(m)) => format!("invalid: {m}"),
        Err(SqlError::Database { code, message }) => format!("database: {code} {message}"),
        Err(SqlError::Limit(m)) => format!("limit: {m}"),
    };
    text.replace(['\t', '\n'], " ")
}

/// Runs the phase's statements; `Err` with the report when there were any.
fn probe(db: &Db, phase: &str) -> Result<()> {
    let rows = db.query("SELECT statement FROM probe WHERE phase = $1 ORDER BY id", vec![Value::Text(phase.into())])?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut report = String::new();
    for row in rows.iter() {
        let statement: String = row.get(0)?;
        report.push_str(&format!("{statement}\t{}\n", outcome(db, &statement)));
    }
    Err(Error::msg(report))
}

struct StatementProbe;

impl Migration for StatementProbe {
    fn up(db: &Db) -> Result<()> {
        probe(db, "up")
    }

    fn verify(db: &Db) -> Result<()> {
        probe(db, "verify")
    }

    fn backfill(db: &Db, _request: &BatchRequest) -> Result<Batch> {
        probe(db, "backfill")?;
        Ok(Batch::done(0))
    }
}

wasmig_sdk::export_migration!(StatementProbe);
