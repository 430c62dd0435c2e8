//! What the CLI prints: reports, status, history and the artifact verification.

use std::fmt::Write as _;
use std::time::Duration;

use wasmig::{
    AppliedMigration, AuditEntry, BackfillState, BackfillStatus, Catalog, ComponentPreview, Human, LeaseHolder, Limits,
    PlannedStep, Preview, Repair, State, StatusEntry, Transport, TrustReport, Way,
};

use crate::progress::{duration, thousands};

/// What each component migration may touch and its limits; a SQL migration as itself.
pub fn grants_data(catalog: &Catalog, defaults: &Limits) -> Vec<PlannedStep> {
    catalog.migrations.iter().map(|migration| PlannedStep::of(migration, Way::Up, defaults)).collect()
}

pub fn grants(migrations: &[PlannedStep]) {
    for migration in migrations {
        match &migration.component {
            None => println!("{}: plain SQL (runs as written; review the files)", migration.migration),
            Some(component) => {
                println!("{}: component {}", migration.migration, component.file);
                component_lines(component);
            }
        }
    }
}

/// A component's grants and limits, indented under its name.
fn component_lines(component: &ComponentPreview) {
    for line in &component.grants {
        let tables = if line.tables.is_empty() { "nothing".to_owned() } else { line.tables.join(", ") };
        println!("  {:<7} {tables}", line.grant);
    }
    let limits = &component.limits;
    println!(
        "  limits  fuel {} per call, memory {} MiB, {}s per call, statements {}s, {} rows per result",
        limits.fuel, limits.memory_mib, limits.timeout_secs, limits.statement_timeout_secs, limits.result_rows
    );
}

/// `wasmig plan` and `--dry-run`: every step in order, with what it runs.
pub fn plan(preview: &Preview) {
    for version in &preview.resumes {
        println!("would first resume the unfinished backfill of {version}");
    }
    if preview.steps.is_empty() {
        println!("{}", if preview.direction == Way::Up { "nothing to apply" } else { "nothing to revert" });
        return;
    }
    let verb = if preview.direction == Way::Up { "apply" } else { "revert" };
    for (index, step) in preview.steps.iter().enumerate() {
        let mode = if step.transactional { "in one transaction with its history row" } else { "NOT in a transaction" };
        println!("{}. would {verb} {} ({}, {mode})", index + 1, step.migration, step.kind);
        if let Some(reason) = &step.backup {
            println!("   backs the database up first ([backup]): {reason}");
        }
        if !step.needs_backfills.is_empty() {
            let needs: Vec<String> = step.needs_backfills.iter().map(ToString::to_string).collect();
            println!("   needs the backfills of {} done", needs.join(", "));
        }
        for script in step.sql.iter().chain(&step.verify) {
            println!("   -- {}", script.file);
            for line in script.text.trim_end().lines() {
                println!("   {line}");
            }
        }
        if let Some(component) = &step.component {
            println!("   component {}, calls {}", component.file, component.calls.join(", "));
            component_lines(component);
            if let Some(backfill) = &component.backfill {
                let settings = toml::to_string(backfill).unwrap_or_default();
                println!("  backfill {}", settings.trim_end().replace('\n', ", "));
            }
        }
    }
}

/// The line `status` and `history` open with: which database, and whether the session to it
/// is encrypted.
pub fn connection(url: &str, transport: Transport) {
    println!("database: {url}");
    println!("session:  {transport}\n");
}

pub fn status(entries: &[StatusEntry]) {
    if entries.is_empty() {
        println!("the project has no migrations yet");
        return;
    }
    // One write for the whole table: a project of hundreds of migrations would otherwise
    // cost a write per line, as stdout flushes at each newline.
    let mut table = format!("{:<8} {:<34} {:<10} STATE\n", "VERSION", "MIGRATION", "KIND");
    for entry in entries {
        let state = match &entry.state {
            State::Pending => "pending".to_owned(),
            State::Applied { applied_at } => format!("applied {applied_at}"),
            State::Changed { recorded, found, .. } => {
                format!("CHANGED since applied (recorded {recorded}, files {found})")
            }
            State::Missing { .. } => "applied, but its folder is MISSING".to_owned(),
            State::Interrupted { direction, started_at, started_by } => format!(
                "INTERRUPTED: its {} step outside a transaction started {started_at} ({started_by}) and did not finish",
                direction.as_str()
            ),
        };
        let backfill = entry.backfill.as_ref().map(|b| format!("; {}", backfill_summary(b))).unwrap_or_default();
        let _ = writeln!(
            table,
            "{:<8} {:<34} {:<10} {state}{backfill}",
            entry.version.to_string(),
            entry.folder,
            entry.kind
        );
    }
    print!("{table}");
}

/// "backfill 45% (450,000 of ~1,000,000 rows, 12,000 rows/s, ETA 46s)", or done, or paused.
pub fn backfill_summary(status: &BackfillStatus) -> String {
    if status.state == BackfillState::Done {
        return format!("backfill done ({} rows in {} batches)", thousands(status.rows_done), status.batches);
    }
    let mut parts = Vec::new();
    match status.rows_estimate {
        Some(estimate) => parts.push(format!("{} of ~{} rows", thousands(status.rows_done), thousands(estimate))),
        None => parts.push(format!("{} rows", thousands(status.rows_done))),
    }
    if let Some(rate) = status.rows_per_second {
        parts.push(format!("{} rows/s", thousands(rate as i64)));
    }
    if let Some(eta) = status.eta() {
        parts.push(format!("ETA {}", duration(eta.as_secs_f64())));
    }
    let percent = status.percent().map(|p| format!(" {p:.0}%")).unwrap_or_default();
    let state = match status.state {
        BackfillState::Paused => "backfill PAUSED at",
        BackfillState::Failed => "backfill FAILED at",
        BackfillState::Cancelled => "backfill CANCELLED at",
        BackfillState::Running | BackfillState::Done => "backfill",
    };
    format!("{state}{percent} ({})", parts.join(", "))
}

pub fn backfills(catalog: &Catalog, statuses: &[BackfillStatus]) {
    if statuses.is_empty() {
        println!("no backfill has started");
        return;
    }
    for status in statuses {
        let folder = catalog.get(status.version).map_or_else(|| status.version.to_string(), |m| m.folder.clone());
        println!("{folder}: {}", backfill_summary(status));
        println!(
            "  state {}, chunks {} done of {} ({} under an unexpired lease), {} batches",
            status.state, status.chunks_done, status.chunks, status.chunks_leased, status.batches
        );
        for holder in &status.workers {
            println!("  {}", worker_line(holder));
        }
        if let Some(error) = &status.error {
            println!("  failed: {error}");
        }
    }
}

/// What is known of a worker holding leases: gone (its process on this machine ended), or
/// holding them until its lease runs out unless it renews it.
fn worker_line(holder: &LeaseHolder) -> String {
    let chunks = if holder.chunks == 1 { "1 chunk".to_owned() } else { format!("{} chunks", holder.chunks) };
    let left = Human(Duration::from_millis(u64::try_from(holder.lease_left_ms).unwrap_or_default()));
    if holder.gone {
        format!(
            "worker {} is gone (its process on this machine has ended); its {chunks} will be taken over at once by \
             the next `wasmig backfill run` or `wasmig up` here, or by any worker in {left}",
            holder.worker
        )
    } else {
        format!(
            "worker {} holds {chunks}; its lease runs out in {left} unless a batch renews it (a worker that stopped \
             on another machine shows so only then)",
            holder.worker
        )
    }
}

pub fn history(applied: &[AppliedMigration], repairs: &[Repair]) {
    if applied.is_empty() {
        println!("no migration is applied");
    } else {
        history_rows(applied);
    }
    repairs_lines(repairs);
}

fn history_rows(applied: &[AppliedMigration]) {
    println!(
        "{:<8} {:<28} {:<10} {:<28} {:<20} {:>7}  {:<72} SIGNERS",
        "VERSION", "NAME", "KIND", "APPLIED AT", "APPLIED BY", "MS", "DIGEST"
    );
    for row in applied {
        println!(
            "{:<8} {:<28} {:<10} {:<28} {:<20} {:>7}  {:<72} {}",
            row.version.to_string(),
            row.name,
            row.kind,
            row.applied_at,
            row.applied_by,
            row.duration_ms,
            row.digest,
            if row.signers.is_empty() { "-" } else { &row.signers }
        );
    }
}

fn repairs_lines(repairs: &[Repair]) {
    if !repairs.is_empty() {
        println!("\nrepairs:");
        for repair in repairs {
            let digests = if repair.old_digest == repair.new_digest {
                String::new()
            } else {
                format!(" {} -> {}", repair.old_digest, repair.new_digest)
            };
            println!(
                "  {} at {} by {}:{digests} ({})",
                repair.version, repair.repaired_at, repair.repaired_by, repair.reason
            );
        }
    }
}

/// The audit trail, oldest first: one line per act, then who did it.
pub fn audit(entries: &[AuditEntry]) {
    if entries.is_empty() {
        println!("the audit trail is empty");
        return;
    }
    for entry in entries {
        let outcome = if entry.outcome == "ok" { String::new() } else { format!(" {}", entry.outcome.to_uppercase()) };
        println!(
            "{} {}{outcome} {} in {} ms, digest {}{}",
            entry.at,
            entry.action,
            entry.migration,
            entry.duration_ms,
            entry.digest,
            if entry.signers.is_empty() { String::new() } else { format!(", signed by {}", entry.signers) }
        );
        let ci = entry.ci.as_ref().map(|ci| format!(", CI {ci}")).unwrap_or_default();
        println!("    by {} on {}{ci}", entry.actor, entry.host);
        if !entry.detail.is_empty() {
            println!("    {}", entry.detail);
        }
    }
}

pub fn trust_report(report: &TrustReport) {
    println!(
        "wasmig.sum: {}{}",
        report.sum_file,
        report.total.as_deref().map(|t| format!(" (total {t})")).unwrap_or_default()
    );
    let width = report.migrations.iter().map(|m| m.folder.chars().count()).max().unwrap_or(0);
    for migration in &report.migrations {
        println!("  {:<11} {:<width$} {}", migration.state, migration.folder, migration.digest);
    }
    for signature in &report.signatures {
        println!(
            "  signature {:<9} {} key {}{}{}",
            signature.state,
            signature.file,
            signature.key_id.as_deref().unwrap_or("?"),
            signature.signer.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
            signature.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
        );
    }
    if report.require_signatures {
        println!("signatures required: {} of the trusted keys; valid: {}", report.threshold, report.signers.len());
    }
    if report.problems.is_empty() {
        println!("artifacts verified");
    }
}

/// What changed in an applied migration's files, and how to accept it.
pub fn repair_diff(diff: &wasmig::RepairDiff) {
    if diff.recorded_digest == diff.digest {
        println!("{}: its files are as applied; nothing to repair", diff.migration);
        return;
    }
    print!("{}", diff.text());
    println!(
        "\n{} changed since it was applied ({} -> {}); once reviewed, accept it with:\n  wasmig repair {} --accept-digest {} --reason \"…\"",
        diff.migration, diff.recorded_digest, diff.digest, diff.version, diff.digest
    );
}
