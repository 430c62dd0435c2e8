//! Pacing a backfill worker: a pause after each batch, a ceiling on rows per second, and on
//! PostgreSQL a wait before each batch while any standby replays further behind than allowed.

use std::time::{Duration, Instant};

use crate::project::backfill::Throttle;
use crate::db::{Database, DbError, Value};

/// How often a worker waiting for replication asks again.
const LAG_POLL_INTERVAL: Duration = Duration::from_millis(250);

pub(crate) struct Pacer {
    throttle: Throttle,
    started: Instant,
    rows: u64,
}

impl Pacer {
    pub fn new(throttle: Throttle) -> Self {
        Pacer { throttle, started: Instant::now(), rows: 0 }
    }

    /// Counts a committed batch of `rows` towards this worker's rate ceiling.
    pub fn count(&mut self, rows: u64) {
        self.rows += rows;
    }

    /// After a committed batch: the pause, then as long as it takes to bring the rate back
    /// under the ceiling.
    pub async fn after_batch(&mut self) {
        let mut wait = self.throttle.pause;
        if let Some(ceiling) = self.throttle.max_rows_per_second {
            let due = Duration::from_secs_f64(self.rows as f64 / ceiling as f64);
            wait = wait.max(due.saturating_sub(self.started.elapsed()));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Before a batch: returns once replication lag is within the bound, calling `waiting`
    /// with the lag each time it is not. SQLite has no standbys, so it never waits.
    pub async fn before_batch(&self, db: &dyn Database, mut waiting: impl FnMut(Duration)) -> Result<(), DbError> {
        let Some(bound) = self.throttle.max_replication_lag else { return Ok(()) };
        let Some(lag_query) = db.dialect().replication_lag_ms else { return Ok(()) };
        loop {
            let lag = replication_lag(db, lag_query).await?;
            if lag <= bound {
                return Ok(());
            }
            waiting(lag);
            tokio::time::sleep(LAG_POLL_INTERVAL).await;
        }
    }
}

/// The largest replay lag of any standby streaming from this server (zero with none).
async fn replication_lag(db: &dyn Database, lag_query: &str) -> Result<Duration, DbError> {
    let rows = db.query(lag_query, &[]).await?;
    match rows.values.first().and_then(|row| row.first()) {
        Some(Value::Int(ms)) => Ok(Duration::from_millis(u64::try_from(*ms).unwrap_or(0))),
        _ => Err(DbError::client("unexpected", "pg_stat_replication's lag is not an integer")),
    }
}
