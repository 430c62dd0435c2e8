//! The glue between the generated `Guest` trait and [`crate::Migration`], called by
//! [`crate::export_migration!`]. Not public API.

use crate::__bindings::{self, wasmig::migration::sql::Connection};
use crate::{BatchRequest, Db, Migration};

pub fn up<M: Migration>(connection: &Connection) -> Result<(), String> {
    M::up(&Db::new(connection)).map_err(|error| error.to_string())
}

pub fn down<M: Migration>(connection: &Connection) -> Result<(), String> {
    M::down(&Db::new(connection)).map_err(|error| error.to_string())
}

pub fn verify<M: Migration>(connection: &Connection) -> Result<(), String> {
    M::verify(&Db::new(connection)).map_err(|error| error.to_string())
}

pub fn backfill<M: Migration>(
    connection: &Connection,
    request: __bindings::BatchRequest,
) -> Result<__bindings::Batch, String> {
    let request = BatchRequest { cursor: request.cursor, until: request.until, size: request.size };
    let batch = M::backfill(&Db::new(connection), &request).map_err(|e| e.to_string())?;
    Ok(__bindings::Batch { next_cursor: batch.next_cursor, rows: batch.rows })
}
