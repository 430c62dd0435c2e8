//! The queue of simple-query text that goes out pipelined ahead of the next request.

use std::sync::Mutex;

use crate::db::error::DbError;

/// The queue of simple-query text waiting for the next request. Fails closed: the walls of a
/// component call travel this way, so a queue that cannot be written (its lock poisoned by a
/// panic elsewhere) refuses the call instead of letting it run without them.
#[derive(Default)]
pub(super) struct Pending(Mutex<String>);

impl Pending {
    pub(super) fn push(&self, script: &str) -> Result<(), DbError> {
        let mut pending = self.0.lock().map_err(|_| poisoned())?;
        if !pending.is_empty() {
            pending.push_str("; ");
        }
        pending.push_str(script);
        Ok(())
    }

    /// What is queued, taken: a poisoned queue is an error, since what it held (BEGIN, the
    /// walls) must not be silently dropped.
    pub(super) fn take(&self) -> Result<String, DbError> {
        self.0.lock().map(|mut pending| std::mem::take(&mut *pending)).map_err(|_| poisoned())
    }

    /// Forgets what is queued, poisoned or not: a ROLLBACK must still go out.
    pub(super) fn clear(&self) {
        match self.0.lock() {
            Ok(mut pending) => pending.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }
}

pub(super) fn poisoned() -> DbError {
    DbError::client("internal", "the connection's request queue was poisoned by an earlier panic; the call is refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_queue_refuses_instead_of_dropping_the_walls() {
        let pending = std::sync::Arc::new(Pending::default());
        pending.push("BEGIN").unwrap();
        let holder = pending.clone();
        let panicked = std::thread::spawn(move || {
            let _held = holder.0.lock().unwrap();
            panic!("poison the queue");
        })
        .join();
        assert!(panicked.is_err());
        let refused = pending.push("SET LOCAL search_path TO pg_catalog").unwrap_err();
        assert!(refused.message.contains("poisoned"), "{refused}");
        assert!(pending.take().is_err(), "a poisoned queue is not read as empty");
        pending.clear();
    }
}
