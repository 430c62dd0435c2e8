//! Ctrl-C and SIGTERM during a long run (`up`, `backfill run`): the first asks the run to stop
//! between steps and after each backfill worker's current batch, so that it ends with
//! everything committed kept and says how to go on; a second stops the process at once, and
//! the batch in flight is rolled back by the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status for a second signal: 128 + SIGINT, as a shell reports it.
const AT_ONCE: i32 = 130;

/// Listens for Ctrl-C and SIGTERM; the flag it returns is set by the first.
pub fn on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        loop {
            if !signalled().await {
                return;
            }
            if flag.swap(true, Ordering::Relaxed) {
                eprintln!("stopping at once; the batch in flight is rolled back");
                std::process::exit(AT_ONCE);
            }
            eprintln!(
                "stopping after the current step or batch (everything committed stays); press Ctrl-C again to stop \
                 at once"
            );
        }
    });
    stop
}

/// Waits for Ctrl-C or SIGTERM; false when neither can be listened for.
async fn signalled() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else { return false };
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.is_ok(),
            terminated = terminate.recv() => terminated.is_some(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
