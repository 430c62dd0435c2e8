//! Benchmark: what the PostgreSQL guard adds to each statement of a backfill, measured
//! directly. A backfill sends the same statements every batch, so after the first batch each
//! costs a cache lookup and a grant check; this times that, and a first-time parse, per
//! statement. Run with `cargo bench -p wasmig --bench guard_check`.

use std::hint::black_box;
use std::time::Instant;

use wasmig::guard::postgres::{AnalysisCache, analyze, check};
use wasmig::guard::{Grants, GrantsSection, Phase, Policy};

const STATEMENTS: [&str; 2] = [
    "SELECT id, email FROM users WHERE id > $1 ORDER BY id LIMIT $2",
    "UPDATE users SET email_lower = v.email_lower \
     FROM unnest($1::bigint[], $2::text[]) AS v(id, email_lower) WHERE users.id = v.id",
];

fn main() -> Result<(), String> {
    let section = GrantsSection { read: vec!["users".into()], update: vec!["users".into()], ..Default::default() };
    let policy = Policy { grants: Grants::from_section(&section).map_err(|e| e.to_string())?, phase: Phase::Data };
    let cache = AnalysisCache::default();
    const ROUNDS: u32 = 200_000;

    let started = Instant::now();
    for _ in 0..ROUNDS / 100 {
        for statement in STATEMENTS {
            let analysis = analyze(black_box(statement)).map_err(|e| format!("{e:?}"))?;
            check(&analysis, &policy).map_err(|e| e.to_string())?;
        }
    }
    let parse = started.elapsed() / (ROUNDS / 100 * 2);

    let started = Instant::now();
    for _ in 0..ROUNDS {
        for statement in STATEMENTS {
            let analysis = cache.analyze(black_box(statement)).map_err(|e| format!("{e:?}"))?;
            check(&analysis, &policy).map_err(|e| e.to_string())?;
        }
    }
    let cached = started.elapsed() / (ROUNDS * 2);

    println!("guard per statement, first time (libpg_query parse + walk + check): {parse:.2?}");
    println!("guard per statement, repeated (cache lookup + check):               {cached:.2?}");
    println!("guard per 1,000-row backfill batch (2 statements, repeated):       {:.2?}", cached * 2);
    Ok(())
}
