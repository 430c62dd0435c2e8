//! [`LogBudget`]: what one component call may log. A component looping over `log` must not
//! flood the deploy's log or its disk: past the budget, messages are counted and dropped, and
//! the log says so, once when it happens and once with the count when the call ends.

/// Messages one call may log.
pub const MAX_MESSAGES_PER_CALL: u32 = 1000;
/// Bytes of messages one call may log.
pub const MAX_LOG_BYTES_PER_CALL: usize = 256 * 1024;

/// What one call may still log, and what it logged past that.
#[derive(Debug)]
pub struct LogBudget {
    messages: u32,
    bytes: usize,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget { messages: MAX_MESSAGES_PER_CALL, bytes: MAX_LOG_BYTES_PER_CALL, dropped: 0 }
    }
}

impl LogBudget {
    /// Whether a message of `len` bytes may be logged; the first refusal is announced.
    pub fn admit(&mut self, migration: &str, len: usize) -> bool {
        if self.messages > 0 && len <= self.bytes {
            self.messages -= 1;
            self.bytes -= len;
            return true;
        }
        if self.dropped == 0 {
            tracing::warn!(
                migration,
                "the component reached its log cap of {MAX_MESSAGES_PER_CALL} messages or {} KiB for this call; \
                 further messages are dropped",
                MAX_LOG_BYTES_PER_CALL / 1024
            );
        }
        self.dropped += 1;
        false
    }

    /// Says, once the call is over, how many messages were dropped.
    pub fn report_dropped(&self, migration: &str) {
        if self.dropped > 0 {
            tracing::warn!(migration, "{} log messages of the component were dropped past its log cap", self.dropped);
        }
    }
}
