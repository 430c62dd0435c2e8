//! Fuzz target for the PostgreSQL guard. For any text: analysing it must not panic, and a
//! differential oracle must hold — when the guard allows a statement under *empty* grants,
//! pg_query's own extraction may find no table in it except CTE names, and no function
//! outside the allowlist. Run with scripts/fuzz-guard.sh.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmig::guard::postgres::{analyze, check};
use wasmig::guard::{Grants, Phase, Policy, function_allowed};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let Ok(analysis) = analyze(sql) else { return };
    let nothing = Policy { grants: Grants::default(), phase: Phase::Schema };
    if check(&analysis, &nothing).is_err() {
        return;
    }
    let Ok(parsed) = pg_query::parse(sql, 0) else { return };
    for (table, _) in &parsed.tables {
        let name = table.rsplit('.').next().unwrap_or(table);
        assert!(parsed.cte_names.iter().any(|cte| cte == name), "allowed with no grants but reads {table}: {sql:?}");
    }
    for (function, _) in &parsed.functions {
        let (schema, name) = match function.rsplit_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, function.as_str()),
        };
        assert!(function_allowed(schema, name), "allowed but calls {function}: {sql:?}");
    }
});
