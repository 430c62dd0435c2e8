//! Backfill progress for a person, on stderr: a bar with rate and ETA when stderr is a
//! terminal, a plain line every few seconds when it is not (CI logs). JSON mode writes events
//! instead (`output.rs`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmig::BackfillEvent;

/// How often a plain progress line is written when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the terminal bar is redrawn.
const BAR_INTERVAL: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bar,
    Lines,
    Json,
    Quiet,
}

impl Style {
    pub fn pick(json: bool, quiet: bool) -> Style {
        if json {
            Style::Json
        } else if quiet {
            Style::Quiet
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

pub struct Progress {
    style: Style,
    /// When the bar or line was last written; `None` before the first.
    last_drawn: Mutex<Option<Instant>>,
}

impl Progress {
    pub fn new(style: Style) -> Self {
        Progress { style, last_drawn: Mutex::new(None) }
    }

    /// Whether `interval` has passed since the last drawing (and records now if so).
    fn due(&self, interval: Duration) -> bool {
        let Ok(mut last) = self.last_drawn.lock() else { return false };
        if last.is_some_and(|at| at.elapsed() < interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

impl Progress {
    pub fn show(&self, event: &BackfillEvent) {
        match self.style {
            Style::Quiet | Style::Json => {}
            Style::Bar | Style::Lines => self.human(event),
        }
    }

    fn human(&self, event: &BackfillEvent) {
        let bar = self.style == Style::Bar;
        match event {
            BackfillEvent::Batch { migration, rows_done, rows_estimate, rows_per_second, eta_ms, .. } => {
                let interval = if bar { BAR_INTERVAL } else { LINE_INTERVAL };
                if !self.due(interval) {
                    return;
                }
                let line = progress_line(migration, *rows_done, *rows_estimate, *rows_per_second, *eta_ms);
                if bar {
                    let filled = rows_estimate
                        .filter(|&e| e > 0)
                        .map_or(0, |e| ((*rows_done as f64 / e as f64).min(1.0) * BAR_WIDTH as f64) as usize);
                    eprint!("\r[{}{}] {line}\x1b[K", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled));
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("{line}");
                }
            }
            // The error itself is the run's, printed once when it ends.
            BackfillEvent::Failed { .. } => {
                if bar {
                    eprintln!();
                }
            }
            other => {
                if bar {
                    eprint!("\r\x1b[K");
                }
                eprintln!("{}", describe(other));
            }
        }
    }
}

fn describe(event: &BackfillEvent) -> String {
    match event {
        BackfillEvent::Started { migration, chunks, rows_done, rows_estimate, .. } => format!(
            "{migration}: backfill: {} of {} rows done, {chunks} chunk{}",
            thousands(*rows_done),
            rows_estimate.map_or("an unknown number of".to_owned(), |e| format!("~{}", thousands(e))),
            if *chunks == 1 { "" } else { "s" }
        ),
        BackfillEvent::Halved { migration, chunk, cursor, from, to, limit } => format!(
            "{migration}: a batch of {from} rows in chunk {chunk} ({}) hit its {limit}; retrying with {to}",
            cursor.as_deref().map_or("from its start".to_owned(), |c| format!("after {c:?}"))
        ),
        BackfillEvent::Waiting { migration, reason } => format!("{migration}: waiting: {reason}"),
        BackfillEvent::Paused { migration } => format!("{migration}: backfill paused"),
        BackfillEvent::Stopped { migration } => {
            format!("{migration}: backfill stopped on request after its last committed batch")
        }
        BackfillEvent::Finished { migration, rows, batches, duration_ms } => format!(
            "{migration}: backfill finished: this run processed {} rows in {batches} batches in {:.1}s",
            thousands(*rows),
            *duration_ms as f64 / 1000.0
        ),
        BackfillEvent::Batch { migration, rows_done, rows_estimate, rows_per_second, eta_ms, .. } => {
            progress_line(migration, *rows_done, *rows_estimate, *rows_per_second, *eta_ms)
        }
        BackfillEvent::Failed { migration, error } => format!("{migration}: backfill failed: {}", error.message),
    }
}

fn progress_line(migration: &str, done: i64, estimate: Option<i64>, rate: f64, eta_ms: Option<u64>) -> String {
    let of = match estimate {
        Some(estimate) if estimate > 0 => {
            format!(
                "{:.0}% ({} of ~{} rows",
                (done as f64 * 100.0 / estimate as f64).min(99.9),
                thousands(done),
                thousands(estimate)
            )
        }
        _ => format!("({} rows", thousands(done)),
    };
    let eta = eta_ms.map(|ms| format!(", ETA {}", duration(ms as f64 / 1000.0))).unwrap_or_default();
    format!("{migration}: backfill {of}, {} rows/s{eta})", thousands(rate as i64))
}

/// 1234567 → "1,234,567".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Seconds as "4s", "3m 20s" or "2h 05m".
pub fn duration(seconds: f64) -> String {
    let total = seconds.round().max(0.0) as u64;
    match total {
        0..60 => format!("{total}s"),
        60..3600 => format!("{}m {:02}s", total / 60, total % 60),
        _ => format!("{}h {:02}m", total / 3600, (total % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(450), "450");
        assert_eq!(duration(46.2), "46s");
        assert_eq!(duration(200.0), "3m 20s");
        assert_eq!(duration(7500.0), "2h 05m");
        assert_eq!(
            progress_line("0003_x", 450_000, Some(1_000_000), 12_000.0, Some(46_000)),
            "0003_x: backfill 45% (450,000 of ~1,000,000 rows, 12,000 rows/s, ETA 46s)"
        );
    }
}
