//! The migration lock of a SQLite database file: an OS file lock on a file beside it, which
//! names its holder for a run that waits.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::core::{host_name, utc_timestamp};
use crate::db::database::{BoundStatement, HeldLock};
use crate::db::error::{DbError, LockError};
use crate::db::lock_wait::HolderNotice;

/// How often a waiting run tries the lock file again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Takes the lock on `path`'s lock file, waiting up to `timeout`; an in-memory database
/// (`None`) belongs to its connection alone and needs none.
pub(super) async fn take(path: Option<&Path>, name: &str, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError> {
    let Some(path) = path else {
        // An in-memory database belongs to this connection alone.
        return Ok(Box::new(NoLock));
    };
    let lock_path = PathBuf::from(format!("{}.wasmig-lock", path.display()));
    let failed = |reason: String| LockError::Failed {
        name: name.to_owned(),
        source: DbError::client("lock-file", format!("{}: {reason}", lock_path.display())),
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| failed(e.to_string()))?;
    let started = Instant::now();
    let mut notice = HolderNotice::default();
    loop {
        match file.try_lock() {
            Ok(()) => {
                record_holder(&file);
                return Ok(Box::new(FileLock { file }));
            }
            Err(TryLockError::WouldBlock) if started.elapsed() < timeout => {
                // The holder wrote who it is into the lock file; said once per holder.
                let holder = std::fs::read_to_string(&lock_path).ok();
                notice.holder(name, holder.map(|text| text.trim().to_owned()).filter(|text| !text.is_empty()), timeout);
                tokio::time::sleep(LOCK_POLL_INTERVAL).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Timeout { name: name.to_owned(), waited: started.elapsed() });
            }
            Err(TryLockError::Error(e)) => return Err(failed(e.to_string())),
        }
    }
}

struct FileLock {
    file: File,
}

/// Writes who holds the lock into the lock file, for a waiting run to name: the program, its
/// pid and host, and since when. Best effort: the lock holds whether or not this is written.
fn record_holder(mut file: &File) {
    use std::io::{Seek, Write};
    let holder = format!(
        "wasmig/{}/{} since {}\n",
        std::process::id(),
        host_name(),
        utc_timestamp(std::time::SystemTime::now())
    );
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(holder.as_bytes()));
}

#[async_trait]
impl HeldLock for FileLock {
    async fn release(self: Box<Self>) -> Result<(), DbError> {
        self.file.unlock().map_err(|e| DbError::client("lock-file", e.to_string()))
    }

    fn commit_check(&self) -> Option<BoundStatement> {
        // The OS holds the file lock for as long as this process keeps the file open.
        None
    }
}

struct NoLock;

#[async_trait]
impl HeldLock for NoLock {
    async fn release(self: Box<Self>) -> Result<(), DbError> {
        Ok(())
    }

    fn commit_check(&self) -> Option<BoundStatement> {
        None
    }
}
