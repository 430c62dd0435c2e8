//! Fuzz target for `migration.toml`. For any text: parsing must not panic, and a manifest that
//! parses has limits within their ranges and grants that name tables only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmig::project::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(manifest) = Manifest::parse(text) else { return };
    assert_eq!(manifest.limits.validate(), Ok(()), "{text:?}");
    let limits = wasmig::core::limits::Limits::default().with(&manifest.limits);
    let _ = std::time::Instant::now() + limits.timeout;
    for (_, tables) in manifest.grants().describe() {
        for table in tables {
            assert!(!table.contains([';', '"', ' ', '\'']), "{text:?} grants {table:?}");
        }
    }
});
