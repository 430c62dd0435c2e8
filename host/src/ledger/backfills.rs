//! Backfill progress, kept in the target database beside the history table:
//!
//! - `<history>_backfill`: one row per backfill: its state (running, paused, done), the row
//!   estimate taken when it started, and the window its rate is measured over;
//! - `<history>_backfill_chunks`: one row per key-range chunk: its bounds, the cursor of its
//!   last committed batch, rows and batches counted, and which worker leases it until when.
//!
//! Invariant 4 lives here: a batch's writes and its chunk's new cursor commit in one
//! transaction ([`BackfillStore::advance_and_commit`]), and the advance only succeeds for the
//! worker that holds the lease and from the cursor it started at, so no batch is ever
//! committed twice. Times are the database's own clock in milliseconds, so workers on several
//! machines agree on when a lease expires.

use std::time::Duration;

use crate::core::Version;
use crate::db::{BoundStatement, Database, DbError, DbErrorKind, NotCommitted, Value};

use super::table::{HistoryError, HistoryTable, stored_version, version_key};

/// A backfill's state as `<history>_backfill` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillState {
    Running,
    Paused,
    Done,
    /// Stopped on an error (a denied statement, a failing verify, a limit); `wasmig backfill
    /// retry` lets it go on.
    Failed,
    /// Given up on by a person (`wasmig backfill cancel`); `retry` restarts it.
    Cancelled,
}

impl BackfillState {
    fn as_str(self) -> &'static str {
        match self {
            BackfillState::Running => "running",
            BackfillState::Paused => "paused",
            BackfillState::Done => "done",
            BackfillState::Failed => "failed",
            BackfillState::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(BackfillState::Running),
            "paused" => Some(BackfillState::Paused),
            "done" => Some(BackfillState::Done),
            "failed" => Some(BackfillState::Failed),
            "cancelled" => Some(BackfillState::Cancelled),
            _ => None,
        }
    }
}

impl std::fmt::Display for BackfillState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chunk's key range: rows after `after` up to `until` (either open when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBounds {
    pub after: Option<String>,
    pub until: Option<String>,
}

/// A chunk a worker holds the lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedChunk {
    pub chunk: i64,
    pub until: Option<String>,
    /// Where the next batch starts: the last committed batch's cursor, or the chunk's start.
    pub cursor: Option<String>,
}

/// One batch's move of its chunk's cursor: from `from` (where the batch started) to `to`
/// (`None`: the chunk is done), by the worker holding the lease, renewed for `lease`.
#[derive(Debug, Clone, Copy)]
pub struct CursorStep<'a> {
    pub version: Version,
    pub chunk: i64,
    pub worker: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub rows: i64,
    pub lease: Duration,
}

/// How [`BackfillStore::advance_and_commit`] ended a batch's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    Committed,
    /// Another worker holds the chunk now; the batch was rolled back, or the caller must.
    LeaseLost,
}

/// Why a batch's transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum EndBatchError {
    #[error(transparent)]
    Advance(#[from] HistoryError),
    /// The database refused the COMMIT itself (a deferred constraint, say).
    #[error("{0}")]
    Commit(DbError),
}

/// A worker holding chunk leases of a backfill.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseHolder {
    /// Its id: `host:pid:space.tag`.
    pub worker: String,
    /// How many chunks it holds.
    pub chunks: i64,
    /// Milliseconds until its latest lease runs out, unless it renews it with a batch.
    pub lease_left_ms: i64,
    /// Known to have died: its process, on this machine, no longer exists. False while it
    /// lives, and when that cannot be told (another machine: its lease running out says so).
    pub gone: bool,
}

/// Where one backfill stands, for `status` and progress output.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackfillStatus {
    pub version: Version,
    pub state: BackfillState,
    /// The table's row count when the backfill started, when the manifest names its table.
    pub rows_estimate: Option<i64>,
    pub rows_done: i64,
    pub batches: i64,
    pub chunks: i64,
    pub chunks_done: i64,
    /// Chunks under an unexpired lease now.
    pub chunks_leased: i64,
    /// Who holds those leases (read for a backfill with chunks leased).
    pub workers: Vec<LeaseHolder>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// Rows per second since the backfill started or was last resumed, over the time to its
    /// latest batch.
    pub rows_per_second: Option<f64>,
    /// Why a failed backfill stopped (from the audit trail).
    pub error: Option<String>,
}

impl BackfillStatus {
    /// Percent done against the estimate (at most 100: rows inserted since the start can
    /// make the count pass it).
    pub fn percent(&self) -> Option<f64> {
        match (self.state, self.rows_estimate) {
            (BackfillState::Done, _) => Some(100.0),
            (_, Some(estimate)) if estimate > 0 => Some((self.rows_done as f64 * 100.0 / estimate as f64).min(99.9)),
            _ => None,
        }
    }

    /// Time left at the current rate, while running.
    pub fn eta(&self) -> Option<Duration> {
        eta(self.state, self.rows_estimate, self.rows_done, self.rows_per_second)
    }
}

/// Time left for `done` of `estimate` rows at `rate` rows per second, while running.
pub fn eta(state: BackfillState, estimate: Option<i64>, done: i64, rate: Option<f64>) -> Option<Duration> {
    let (BackfillState::Running, Some(estimate), Some(rate)) = (state, estimate, rate) else { return None };
    if rate <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64((estimate - done).max(0) as f64 / rate))
}

fn millis(duration: Duration) -> Value {
    Value::Int(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

fn text_or_null(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |t| Value::Text(t.to_owned()))
}

/// The progress tables of one database.
pub struct BackfillStore<'a> {
    db: &'a dyn Database,
    backfills: HistoryTable,
    chunks: HistoryTable,
}

impl<'a> BackfillStore<'a> {
    pub fn new(db: &'a dyn Database, history: &HistoryTable) -> Self {
        BackfillStore { db, backfills: history.backfills(), chunks: history.chunks() }
    }

    fn failed(&self, table: &HistoryTable) -> impl Fn(DbError) -> HistoryError {
        let table = table.to_string();
        move |source| HistoryError::Database { table: table.clone(), source }
    }

    fn corrupt(&self, table: &HistoryTable, problem: &str) -> HistoryError {
        HistoryError::Corrupt { table: table.to_string(), problem: problem.to_owned() }
    }

    /// The database clock in milliseconds, as SQL: the same clock for every worker.
    fn now(&self) -> &'static str {
        self.db.dialect().clock_ms
    }

    /// Records a backfill as started, with its chunks, inside the caller's transaction.
    /// Returns false (and writes nothing) when another run recorded it first.
    pub async fn start(
        &self,
        version: Version,
        rows_estimate: Option<i64>,
        chunks: &[ChunkBounds],
    ) -> Result<bool, HistoryError> {
        let insert = format!(
            "INSERT INTO {} (version, state, rows_estimate, started_ms, rate_since_ms, rate_since_rows) \
             VALUES ($1, 'running', $2, {now}, {now}, 0) ON CONFLICT (version) DO NOTHING",
            self.backfills,
            now = self.now()
        );
        let params = [version_key(version), rows_estimate.map_or(Value::Null, Value::Int)];
        let inserted = self.db.execute(&insert, &params).await.map_err(self.failed(&self.backfills))?;
        if inserted == 0 {
            return Ok(false);
        }
        let insert_chunk = format!(
            "INSERT INTO {} (version, chunk, after_key, until_key, cursor, rows_done, batches, done) \
             VALUES ($1, $2, $3, $4, $3, 0, 0, $5)",
            self.chunks
        );
        let param_sets: Vec<Vec<Value>> = chunks
            .iter()
            .zip(0i64..)
            .map(|(bounds, chunk)| {
                vec![
                    version_key(version),
                    Value::Int(chunk),
                    text_or_null(bounds.after.as_deref()),
                    text_or_null(bounds.until.as_deref()),
                    Value::Bool(false),
                ]
            })
            .collect();
        self.db.execute_many(&insert_chunk, &param_sets).await.map_err(self.failed(&self.chunks))?;
        Ok(true)
    }

    /// A backfill's state; `None` when it has not started (or was reverted).
    pub async fn state(&self, version: Version) -> Result<Option<BackfillState>, HistoryError> {
        let select = format!("SELECT state FROM {} WHERE version = $1", self.backfills);
        let rows =
            self.db.query(&select, &[version_key(version)]).await.map_err(self.failed(&self.backfills))?;
        match rows.values.first().and_then(|row| row.first()) {
            None => Ok(None),
            Some(Value::Text(state)) => {
                BackfillState::parse(state).map(Some).ok_or_else(|| self.corrupt(&self.backfills, "unknown state"))
            }
            Some(_) => Err(self.corrupt(&self.backfills, "state is not text")),
        }
    }

    /// Leases the first chunk that is not done and not leased by a live worker, for `lease`.
    /// On PostgreSQL `FOR UPDATE SKIP LOCKED` lets concurrent workers each take a different
    /// chunk without waiting; on SQLite the statement's write lock serialises them.
    pub async fn lease(
        &self,
        version: Version,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<LeasedChunk>, HistoryError> {
        // Without row locks one writer holds the whole database, so nobody needs skipping.
        let skip_locked = if self.db.dialect().row_locks { " FOR UPDATE SKIP LOCKED" } else { "" };
        let update = format!(
            "UPDATE {chunks} SET leased_by = $2, lease_expires_ms = {now} + $3 \
             WHERE version = $1 AND chunk = (\
                SELECT chunk FROM {chunks} WHERE version = $1 AND NOT done \
                AND (leased_by IS NULL OR lease_expires_ms < {now}) ORDER BY chunk LIMIT 1{skip_locked}) \
             RETURNING chunk, until_key, cursor",
            chunks = self.chunks,
            now = self.now()
        );
        let params = [version_key(version), Value::Text(worker.to_owned()), millis(lease)];
        let rows = self.db.query(&update, &params).await.map_err(self.failed(&self.chunks))?;
        let Some(row) = rows.values.into_iter().next() else { return Ok(None) };
        match <[Value; 3]>::try_from(row) {
            Ok([Value::Int(chunk), until, cursor]) => Ok(Some(LeasedChunk {
                chunk,
                until: match until {
                    Value::Text(t) => Some(t),
                    _ => None,
                },
                cursor: match cursor {
                    Value::Text(t) => Some(t),
                    _ => None,
                },
            })),
            _ => Err(self.corrupt(&self.chunks, "bad chunk row")),
        }
    }

    /// Moves a leased chunk's cursor from `from` to `to` after a batch of `rows`, renewing the
    /// lease, inside the batch's transaction. False when this worker no longer holds the lease
    /// at `from` (it expired and another worker took the chunk over): the caller must roll the
    /// batch back.
    pub async fn advance(&self, step: &CursorStep<'_>) -> Result<bool, HistoryError> {
        let (update, params) = self.advance_statement(step);
        let changed = self.db.execute(&update, &params).await.map_err(self.failed(&self.chunks))?;
        Ok(changed == 1)
    }

    /// [`advance`](Self::advance), then COMMIT, ending the batch's transaction: on PostgreSQL
    /// in one round trip. There the advance cannot be checked before COMMIT is on its way, so
    /// it raises instead when the lease is lost (a division by the count of chunks it moved,
    /// zero), which makes the server roll the batch back rather than commit it without its
    /// cursor. On SQLite the advance is checked first and COMMIT only follows a success.
    pub async fn advance_and_commit(&self, step: &CursorStep<'_>) -> Result<BatchEnd, EndBatchError> {
        if !self.db.dialect().raises_division_by_zero {
            if !self.advance(step).await? {
                return Ok(BatchEnd::LeaseLost);
            }
            self.db.commit().await.map_err(EndBatchError::Commit)?;
            return Ok(BatchEnd::Committed);
        }
        let (update, params) = self.advance_statement(step);
        let raising = BoundStatement {
            statement: format!("WITH moved AS ({update} RETURNING 1) SELECT 1 / count(*)::int FROM moved"),
            params: params.to_vec(),
        };
        match self.db.execute_and_commit(&[raising]).await {
            Ok(()) => Ok(BatchEnd::Committed),
            Err(NotCommitted::Statement { error, .. }) if error.kind == DbErrorKind::DivisionByZero => {
                Ok(BatchEnd::LeaseLost)
            }
            Err(NotCommitted::Statement { error, .. }) => Err(self.failed(&self.chunks)(error).into()),
            Err(NotCommitted::Commit(error)) => Err(EndBatchError::Commit(error)),
        }
    }

    fn advance_statement(&self, step: &CursorStep<'_>) -> (String, [Value; 8]) {
        let update = format!(
            "UPDATE {} SET cursor = $4, rows_done = rows_done + $5, batches = batches + 1, done = $6, \
             lease_expires_ms = {now} + $7, updated_ms = {now} \
             WHERE version = $1 AND chunk = $2 AND leased_by = $3 AND cursor IS NOT DISTINCT FROM $8",
            self.chunks,
            now = self.now()
        );
        let params = [
            version_key(step.version),
            Value::Int(step.chunk),
            Value::Text(step.worker.to_owned()),
            // A finished chunk keeps the cursor of its last batch with rows.
            text_or_null(step.to.or(step.from)),
            Value::Int(step.rows),
            Value::Bool(step.to.is_none()),
            millis(step.lease),
            text_or_null(step.from),
        ];
        (update, params)
    }

    /// The workers holding an unexpired lease on a chunk not yet done, with how many chunks
    /// each holds and how long until its latest lease runs out.
    pub async fn lease_holders(&self, version: Version) -> Result<Vec<LeaseHolder>, HistoryError> {
        let select = format!(
            "SELECT leased_by, count(*), max(lease_expires_ms) - {now} FROM {} \
             WHERE version = $1 AND NOT done AND leased_by IS NOT NULL AND lease_expires_ms >= {now} \
             GROUP BY leased_by ORDER BY leased_by",
            self.chunks,
            now = self.now()
        );
        let rows = self.db.query(&select, &[version_key(version)]).await.map_err(self.failed(&self.chunks))?;
        rows.values
            .into_iter()
            .map(|row| match <[Value; 3]>::try_from(row) {
                Ok([Value::Text(worker), Value::Int(chunks), Value::Int(lease_left_ms)]) => {
                    Ok(LeaseHolder { worker, chunks, lease_left_ms, gone: false })
                }
                _ => Err(self.corrupt(&self.chunks, "bad lease holder")),
            })
            .collect()
    }

    /// Gives up every lease `worker` holds; returns how many chunks it held.
    pub async fn release_all(&self, version: Version, worker: &str) -> Result<u64, HistoryError> {
        let update = format!(
            "UPDATE {} SET leased_by = NULL, lease_expires_ms = NULL WHERE version = $1 AND leased_by = $2",
            self.chunks
        );
        let params = [version_key(version), Value::Text(worker.to_owned())];
        self.db.execute(&update, &params).await.map_err(self.failed(&self.chunks))
    }

    /// Gives a chunk's lease up, so another worker can take it at once (on pause or error).
    pub async fn release(&self, version: Version, chunk: i64, worker: &str) -> Result<(), HistoryError> {
        let update = format!(
            "UPDATE {} SET leased_by = NULL, lease_expires_ms = NULL WHERE version = $1 AND chunk = $2 AND leased_by = $3",
            self.chunks
        );
        let params = [version_key(version), Value::Int(chunk), Value::Text(worker.to_owned())];
        self.db.execute(&update, &params).await.map(|_| ()).map_err(self.failed(&self.chunks))
    }

    /// Inside a batch's transaction: locks the backfill's row (so two workers finishing their
    /// last chunks at once cannot both miss the other's) and counts the chunks not yet done.
    pub async fn chunks_left(&self, version: Version) -> Result<i64, HistoryError> {
        if self.db.dialect().row_locks {
            let lock = format!("SELECT version FROM {} WHERE version = $1 FOR UPDATE", self.backfills);
            self.db.query(&lock, &[version_key(version)]).await.map_err(self.failed(&self.backfills))?;
        }
        let count = format!("SELECT count(*) FROM {} WHERE version = $1 AND NOT done", self.chunks);
        let rows = self.db.query(&count, &[version_key(version)]).await.map_err(self.failed(&self.chunks))?;
        match rows.values.first().and_then(|row| row.first()) {
            Some(Value::Int(left)) => Ok(*left),
            _ => Err(self.corrupt(&self.chunks, "count is not an integer")),
        }
    }

    /// Marks a backfill done, inside its last batch's transaction.
    pub async fn finish(&self, version: Version) -> Result<(), HistoryError> {
        let update =
            format!("UPDATE {} SET state = 'done', finished_ms = {} WHERE version = $1", self.backfills, self.now());
        self.db
            .execute(&update, &[version_key(version)])
            .await
            .map(|_| ())
            .map_err(self.failed(&self.backfills))
    }

    /// Moves a backfill from state `from` to `to`; false when it was not in `from`. Resuming
    /// restarts the rate window, so a pause does not drag the rate down.
    pub async fn transition(
        &self,
        version: Version,
        from: BackfillState,
        to: BackfillState,
    ) -> Result<bool, HistoryError> {
        let update = format!(
            "UPDATE {backfills} SET state = $3, rate_since_ms = {now}, rate_since_rows = \
             (SELECT CAST(COALESCE(sum(rows_done), 0) AS BIGINT) FROM {chunks} WHERE version = $1) \
             WHERE version = $1 AND state = $2",
            backfills = self.backfills,
            chunks = self.chunks,
            now = self.now()
        );
        let params = [version_key(version), Value::Text(from.as_str().into()), Value::Text(to.as_str().into())];
        let changed = self.db.execute(&update, &params).await.map_err(self.failed(&self.backfills))?;
        Ok(changed == 1)
    }

    /// Every backfill's status (empty before the tables exist).
    pub async fn statuses(&self) -> Result<Vec<BackfillStatus>, HistoryError> {
        self.read_statuses("", &[]).await
    }

    /// One backfill's status; what a running worker polls, so it reads that backfill's chunks
    /// only, however many backfills the history holds.
    pub async fn status(&self, version: Version) -> Result<Option<BackfillStatus>, HistoryError> {
        Ok(self.read_statuses("WHERE b.version = $1", &[version_key(version)]).await?.into_iter().next())
    }

    async fn read_statuses(&self, filter: &str, params: &[Value]) -> Result<Vec<BackfillStatus>, HistoryError> {
        let select = format!(
            "SELECT b.version, b.state, b.rows_estimate, b.started_ms, b.finished_ms, b.rate_since_ms, b.rate_since_rows, \
             CAST(COALESCE(sum(c.rows_done), 0) AS BIGINT), CAST(COALESCE(sum(c.batches), 0) AS BIGINT), \
             count(c.chunk), CAST(COALESCE(sum(CASE WHEN c.done THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(sum(CASE WHEN NOT c.done AND c.leased_by IS NOT NULL AND c.lease_expires_ms >= {now} \
                  THEN 1 ELSE 0 END), 0) AS BIGINT), \
             max(c.updated_ms) \
             FROM {backfills} b LEFT JOIN {chunks} c ON c.version = b.version {filter} \
             GROUP BY b.version, b.state, b.rows_estimate, b.started_ms, b.finished_ms, b.rate_since_ms, \
             b.rate_since_rows",
            backfills = self.backfills,
            chunks = self.chunks,
            now = self.now()
        );
        let rows = match self.db.query(&select, params).await {
            Ok(rows) => rows,
            Err(e) if e.kind == DbErrorKind::UndefinedTable => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(&self.backfills)(e)),
        };
        // Sorted here: the stored digits sort as text, not as numbers.
        let mut statuses = rows.values.into_iter().map(|row| self.status_row(row)).collect::<Result<Vec<_>, _>>()?;
        statuses.sort_by_key(|status| status.version);
        Ok(statuses)
    }

    fn status_row(&self, row: Vec<Value>) -> Result<BackfillStatus, HistoryError> {
        let corrupt = || self.corrupt(&self.backfills, "bad backfill row");
        let int = |v: &Value| match v {
            Value::Int(n) => Ok(*n),
            _ => Err(corrupt()),
        };
        let optional = |v: &Value| match v {
            Value::Int(n) => Ok(Some(*n)),
            Value::Null => Ok(None),
            _ => Err(corrupt()),
        };
        let [
            version,
            state,
            estimate,
            started,
            finished,
            rate_since,
            rate_rows,
            rows,
            batches,
            chunks,
            done,
            leased,
            last,
        ] = <[Value; 13]>::try_from(row).map_err(|_| corrupt())?;
        let state = match &state {
            Value::Text(text) => BackfillState::parse(text).ok_or_else(corrupt)?,
            _ => return Err(corrupt()),
        };
        let rows_done = int(&rows)?;
        let (rate_since, rate_rows) = (int(&rate_since)?, int(&rate_rows)?);
        let rows_per_second = optional(&last)?.and_then(|last| {
            let seconds = (last - rate_since) as f64 / 1000.0;
            let rows = (rows_done - rate_rows) as f64;
            (seconds > 0.0 && rows > 0.0).then(|| rows / seconds)
        });
        Ok(BackfillStatus {
            version: stored_version(&version).ok_or_else(corrupt)?,
            state,
            rows_estimate: optional(&estimate)?,
            rows_done,
            batches: int(&batches)?,
            chunks: int(&chunks)?,
            chunks_done: int(&done)?,
            chunks_leased: int(&leased)?,
            workers: Vec::new(),
            started_ms: int(&started)?,
            finished_ms: optional(&finished)?,
            rows_per_second,
            error: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_needs_a_rate_an_estimate_and_a_running_backfill() {
        assert_eq!(eta(BackfillState::Running, Some(1000), 400, Some(100.0)), Some(Duration::from_secs(6)));
        assert_eq!(eta(BackfillState::Paused, Some(1000), 400, Some(100.0)), None);
        assert_eq!(eta(BackfillState::Running, None, 400, Some(100.0)), None);
        assert_eq!(eta(BackfillState::Running, Some(1000), 400, None), None);
    }
}
