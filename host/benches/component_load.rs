//! Benchmark: loading a component cold (compiled by Cranelift) versus precompiled from the
//! cache, side by side in one run. Run with
//! `cargo bench -p wasmig --bench component_load -- [COMPONENT.wasm ...]`
//! (default: the example components, built by scripts/build-components.sh).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmig::sandbox::{CacheOutcome, Sandbox};

const ROUNDS: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(sandbox: &Sandbox, path: &Path, bytes: &[u8], expected: CacheOutcome) -> Result<Duration, String> {
    let started = Instant::now();
    let loaded = sandbox.load("bench", path, bytes).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    if loaded.cache != expected {
        return Err(format!("expected a cache {expected:?}, got {:?}", loaded.cache));
    }
    Ok(elapsed)
}

fn main() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut components: Vec<PathBuf> =
        std::env::args().skip(1).filter(|a| a.ends_with(".wasm")).map(PathBuf::from).collect();
    if components.is_empty() {
        for name in ["add_email_domain", "backfill_email_domain"] {
            components.push(root.join("target/wasm32-wasip2/release").join(format!("{name}.wasm")));
        }
    }
    println!("{:<28} {:>10} {:>14} {:>14} {:>8}", "component", "bytes", "cold (median)", "cached (median)", "ratio");
    for path in components {
        let bytes =
            std::fs::read(&path).map_err(|e| format!("{}: {e} (run scripts/build-components.sh)", path.display()))?;
        let cache = tempfile::tempdir().map_err(|e| e.to_string())?;
        let uncached = Sandbox::new(None).map_err(|e| e.to_string())?;
        let cached = Sandbox::new(Some(cache.path().to_owned())).map_err(|e| e.to_string())?;
        // Fill the cache once; every later load must be a hit.
        measure(&cached, &path, &bytes, CacheOutcome::Miss)?;
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..ROUNDS {
            cold.push(measure(&uncached, &path, &bytes, CacheOutcome::Disabled)?);
            warm.push(measure(&cached, &path, &bytes, CacheOutcome::Hit)?);
        }
        let (cold, warm) = (median(cold), median(warm));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "{name:<28} {:>10} {:>14.2?} {:>14.2?} {:>7.1}x",
            bytes.len(),
            cold,
            warm,
            cold.as_secs_f64() / warm.as_secs_f64()
        );
    }
    Ok(())
}
