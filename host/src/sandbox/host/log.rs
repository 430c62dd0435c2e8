//! The `log` interface: a component's messages, tagged with its migration, into the host's
//! tracing output, up to the call's [`LogBudget`](crate::sandbox::log_budget::LogBudget).

use crate::sandbox::state::StoreState;
use crate::sandbox::bindings::wasmig::migration::log::{Host, Level};

/// A guest may log at most this many bytes per message; the rest is cut.
const MAX_MESSAGE_BYTES: usize = 4096;

impl Host for StoreState {
    async fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" …");
        }
        let migration = self.migration.as_str();
        if !self.log.admit(migration, message.len()) {
            return Ok(());
        }
        match level {
            Level::Debug => tracing::debug!(migration, "{message}"),
            Level::Info => tracing::info!(migration, "{message}"),
            Level::Warn => tracing::warn!(migration, "{message}"),
            Level::Error => tracing::error!(migration, "{message}"),
        }
        Ok(())
    }
}
