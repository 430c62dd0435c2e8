//! What a run waiting for the migration lock says, whichever backend keeps the lock: who holds
//! it, once per holder.

use std::time::Duration;

use crate::core::Human;

/// The holder last named, so a run polling for the lock names each holder once.
#[derive(Default)]
pub(crate) struct HolderNotice {
    shown: Option<String>,
}

impl HolderNotice {
    /// Names `holder` of lock `name` unless it was the last one named; `None` (the holder could
    /// not be read) says nothing.
    pub(crate) fn holder(&mut self, name: &str, holder: Option<String>, timeout: Duration) {
        if holder.is_some() && holder != self.shown {
            tracing::info!(
                "waiting for the migration lock {name} held by {} (gives up after {})",
                holder.as_deref().unwrap_or_default(),
                Human(timeout)
            );
            self.shown = holder;
        }
    }
}
