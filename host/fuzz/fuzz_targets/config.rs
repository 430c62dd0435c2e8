//! Fuzz target for `wasmig.toml`. For any text: validating it must not panic, and a project
//! file that validates holds only settings within their documented ranges, so nothing later
//! (deadlines, sleeps, byte counts) can overflow. Run with scripts/fuzz.sh.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmig::{Config, Environment, LockMode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let project = std::path::Path::new("/nonexistent-project");
    let Ok(config) = Config::parse_in(project, text, None, &Environment::default()) else { return };
    let limits = config.limits;
    assert!(limits.timeout.as_secs() <= wasmig::core::limits::MAX_SECONDS, "{text:?}");
    assert!(limits.statement_timeout.as_secs() <= wasmig::core::limits::MAX_SECONDS, "{text:?}");
    assert!(
        limits.hostcall_bytes >= 1 << 20 && limits.hostcall_bytes <= wasmig::core::limits::MAX_HOSTCALL_MIB << 20,
        "{text:?}"
    );
    assert!(limits.fuel >= 1 && limits.memory_bytes >= 1 << 20, "{text:?}");
    assert!(config.lock_timeout.as_secs() <= wasmig::core::limits::MAX_SECONDS, "{text:?}");
    assert!(config.connect.attempt_timeout.as_secs() <= wasmig::core::limits::MAX_SECONDS, "{text:?}");
    assert!(config.connect.wait.as_secs() <= wasmig::core::limits::MAX_SECONDS, "{text:?}");
    let lease = match config.lock_mode {
        LockMode::Table { lease } => lease,
        LockMode::Session => std::time::Duration::ZERO,
    };
    assert!(lease.as_secs() <= 3600, "{text:?}");
    // The instant arithmetic a run does with them must hold.
    let now = std::time::Instant::now();
    let _ = now + limits.timeout + config.lock_timeout + config.connect.attempt_timeout + config.connect.wait + lease;
});
