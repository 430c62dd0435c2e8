//! [`Limits`]: the sandbox's resource limits for one component call, with project defaults
//! in `wasmig.toml` and per-migration overrides in `migration.toml`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The limits a component call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (per batch for a backfill): roughly one unit per wasm instruction.
    pub fuel: u64,
    /// Cap on the component's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline for the call while it runs wasm code.
    pub timeout: Duration,
    /// Cap on the bytes a guest may pass to the host in one call.
    pub hostcall_bytes: u64,
    /// PostgreSQL `statement_timeout` for each of the component's statements.
    pub statement_timeout: Duration,
    /// PostgreSQL `lock_timeout` for each of the component's statements.
    pub lock_timeout: Duration,
    /// Cap on the rows one query may return to the component.
    pub result_rows: u64,
    /// Cap on the bytes one query may return to the component.
    pub result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000_000,
            memory_bytes: 256 * 1024 * 1024,
            timeout: Duration::from_secs(300),
            hostcall_bytes: 64 * 1024 * 1024,
            statement_timeout: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(10),
            result_rows: 100_000,
            result_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A numeric setting outside its documented range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value} is out of range: it takes {min} to {max}")]
pub struct OutOfRange {
    pub key: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

/// Checks that the setting `key`, when given, lies in `min..=max`. Every numeric setting is
/// bounded, so no later arithmetic (deadlines, byte counts, sleeps) can overflow or hang.
pub fn in_range<T: Copy + Into<u64>>(
    key: &'static str,
    value: Option<T>,
    min: u64,
    max: u64,
) -> Result<(), OutOfRange> {
    match value.map(Into::into) {
        Some(value) if value < min || value > max => Err(OutOfRange { key, value, min, max }),
        _ => Ok(()),
    }
}

/// One day: the longest any wait or deadline of wasmig may be set to.
pub const MAX_SECONDS: u64 = 86_400;

/// Limit settings as written in a TOML file; absent keys keep the value beneath.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub memory_mib: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub hostcall_mib: Option<u64>,
    pub statement_timeout_secs: Option<u64>,
    pub lock_timeout_secs: Option<u64>,
    pub result_rows: Option<u64>,
    pub result_mib: Option<u64>,
}

impl LimitOverrides {
    /// Each limit's range, as the README's table of settings gives it.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        in_range("limits.fuel", self.fuel, 1, 1_000_000_000_000_000)?;
        // A component's memory is 32-bit linear memory: 4 GiB at the most.
        in_range("limits.memory_mib", self.memory_mib, 1, 4096)?;
        in_range("limits.timeout_secs", self.timeout_secs, 1, MAX_SECONDS)?;
        in_range("limits.hostcall_mib", self.hostcall_mib, 1, MAX_HOSTCALL_MIB)?;
        in_range("limits.statement_timeout_secs", self.statement_timeout_secs, 1, MAX_SECONDS)?;
        in_range("limits.lock_timeout_secs", self.lock_timeout_secs, 1, MAX_SECONDS)?;
        in_range("limits.result_rows", self.result_rows, 1, 100_000_000)?;
        in_range("limits.result_mib", self.result_mib, 1, 4096)
    }
}

/// The most a guest may send the host in one call. wasmtime's own cap on a call's transfer is
/// set to four times the limit; this keeps that within what the engine accepts.
pub const MAX_HOSTCALL_MIB: u64 = 1024;
/// How many component calls one sandbox runs at once: one per backfill worker of the process.
pub const MAX_CONCURRENT_CALLS: u32 = 64;

impl Limits {
    pub fn with(self, overrides: &LimitOverrides) -> Limits {
        const MIB: u64 = 1024 * 1024;
        Limits {
            fuel: overrides.fuel.unwrap_or(self.fuel),
            memory_bytes: overrides.memory_mib.map_or(self.memory_bytes, |m| m.saturating_mul(MIB)),
            timeout: overrides.timeout_secs.map_or(self.timeout, Duration::from_secs),
            hostcall_bytes: overrides.hostcall_mib.map_or(self.hostcall_bytes, |m| m.saturating_mul(MIB)),
            statement_timeout: overrides.statement_timeout_secs.map_or(self.statement_timeout, Duration::from_secs),
            lock_timeout: overrides.lock_timeout_secs.map_or(self.lock_timeout, Duration::from_secs),
            result_rows: overrides.result_rows.unwrap_or(self.result_rows),
            result_bytes: overrides.result_mib.map_or(self.result_bytes, |m| m.saturating_mul(MIB)),
        }
    }
}

/// Which limit a call exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Fuel(u64),
    Memory(u64),
    Deadline(Duration),
    /// Bytes a guest sent the host in one call (wasmtime's own cap, behind the guard's).
    Hostcall(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Fuel(fuel) => write!(f, "fuel limit of {fuel} (limits.fuel)"),
            Limit::Memory(bytes) => write!(f, "memory limit of {} MiB (limits.memory_mib)", bytes / (1024 * 1024)),
            Limit::Deadline(timeout) => write!(f, "time limit of {}s (limits.timeout_secs)", timeout.as_secs_f64()),
            Limit::Hostcall(bytes) => {
                write!(f, "limit of {} MiB per host call (limits.hostcall_mib)", bytes / (1024 * 1024))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_limits_name_the_key_and_the_range() {
        let huge = LimitOverrides { timeout_secs: Some(u64::MAX), ..Default::default() };
        let error = huge.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "limits.timeout_secs = 18446744073709551615 is out of range: it takes 1 to 86400"
        );
        for bad in [
            LimitOverrides { hostcall_mib: Some(0), ..Default::default() },
            LimitOverrides { fuel: Some(0), ..Default::default() },
            LimitOverrides { memory_mib: Some(5000), ..Default::default() },
            LimitOverrides { result_rows: Some(0), ..Default::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(LimitOverrides::default().validate(), Ok(()));
        let edges = LimitOverrides { timeout_secs: Some(86_400), hostcall_mib: Some(1024), ..Default::default() };
        assert_eq!(edges.validate(), Ok(()));
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let base = Limits::default();
        let limits = base.with(&LimitOverrides { fuel: Some(5), memory_mib: Some(2), ..Default::default() });
        assert_eq!(limits.fuel, 5);
        assert_eq!(limits.memory_bytes, 2 * 1024 * 1024);
        assert_eq!(limits.timeout, base.timeout);
    }
}
