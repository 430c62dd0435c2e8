//! Where a command's output goes. For a person (`--format human`): reports and tables on
//! stdout, each step as it commits, backfill progress and errors on stderr. For a pipeline
//! (`--format json`): JSON lines on stdout and nothing else, each with `"schema": 1` and an
//! `event`, ending with one `result` object (docs/json.md).
//!
//! [`Output`] is the run's observer too: it hears every step and backfill event, writes it in
//! the chosen format, and keeps the committed steps for the `result`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value, json};
use wasmig::{BackfillEvent, Backup, Observer, StepFailure, StepReport};

use crate::progress::{Progress, Style};

/// The version of the JSON output's shape; a change that could break a reader raises it.
pub const SCHEMA: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

pub struct Output {
    format: Format,
    progress: Progress,
    /// Every step the run committed, in order, for the `result`.
    committed: Mutex<Vec<Value>>,
    /// The command's own payload, for the `result`'s `data`.
    data: Mutex<Option<Value>>,
    started: Instant,
}

/// How a command ended, for the `result` object.
pub struct Ending<'a> {
    pub command: &'a str,
    pub exit_code: u8,
    pub exit: &'a str,
    pub error: Option<(&'a str, String)>,
}

impl Output {
    pub fn new(format: Format, quiet: bool) -> Self {
        Output {
            format,
            progress: Progress::new(Style::pick(format == Format::Json, quiet)),
            committed: Mutex::new(Vec::new()),
            data: Mutex::new(None),
            started: Instant::now(),
        }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// A line for a person: printed in human mode, absent in JSON mode (where the same facts
    /// are in the events and the `result`).
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.json() {
            println!("{line}");
        }
    }

    /// Sets the command's payload, the `result`'s `data`: made only in JSON mode, as a status
    /// of hundreds of migrations is not free to turn into JSON.
    pub fn data<T: Serialize>(&self, value: impl FnOnce() -> T) {
        if !self.json() {
            return;
        }
        let value = serde_json::to_value(value()).unwrap_or(Value::Null);
        if let Ok(mut data) = self.data.lock() {
            *data = Some(value);
        }
    }

    /// One JSON line with the schema's version and `event` first.
    fn event(&self, event: &str, body: Value) {
        let mut line = Map::new();
        line.insert("schema".into(), json!(SCHEMA));
        line.insert("event".into(), json!(event));
        if let Value::Object(fields) = body {
            line.extend(fields.into_iter().filter(|(key, _)| key != "event"));
        }
        write_line(&Value::Object(line));
    }

    /// The `result` object that ends every run in JSON mode.
    pub fn finish(&self, ending: Ending<'_>) {
        if !self.json() {
            return;
        }
        let committed = self.committed.lock().map(|c| c.clone()).unwrap_or_default();
        let data = self.data.lock().ok().and_then(|d| d.clone()).unwrap_or(Value::Null);
        let error = ending.error.map(|(kind, message)| json!({ "kind": kind, "message": message }));
        self.event(
            "result",
            json!({
                "command": ending.command,
                "ok": ending.exit_code == 0,
                "exit_code": ending.exit_code,
                "exit": ending.exit,
                "duration_ms": wasmig::millis(self.started.elapsed()),
                "committed": committed,
                "error": error,
                "data": data,
            }),
        );
    }
}

/// Writes one line to stdout. A closed stdout ends the process quietly (SIGPIPE's default,
/// restored in `main`); any other write error is dropped, as `println!` would panic.
fn write_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

impl Observer for Output {
    fn on_step(&self, step: &StepReport) {
        let value = serde_json::to_value(step).unwrap_or(Value::Null);
        if let Ok(mut committed) = self.committed.lock() {
            committed.push(value.clone());
        }
        match self.format {
            Format::Json => self.event("step", value),
            Format::Human => println!("{step}"),
        }
    }

    fn on_step_failed(&self, failure: &StepFailure) {
        if self.json() {
            self.event("step_failed", serde_json::to_value(failure).unwrap_or(Value::Null));
        }
    }

    fn on_backfill(&self, event: &BackfillEvent) {
        match self.format {
            Format::Json => {
                let value = serde_json::to_value(event).unwrap_or(Value::Null);
                let name = value.get("event").and_then(Value::as_str).unwrap_or("backfill").to_owned();
                self.event(&name, value);
            }
            Format::Human => self.progress.show(event),
        }
    }

    fn on_backup(&self, backup: &Backup) {
        match self.format {
            Format::Json => self.event("backup", serde_json::to_value(backup).unwrap_or(Value::Null)),
            Format::Human => {
                println!(
                    "backed up {} before its {} step ({}): {}",
                    backup.migration, backup.step, backup.reason, backup.file
                )
            }
        }
    }
}

/// An error and its sources as one line for a person, each said once: a cause whose words an
/// outer message already holds is not repeated.
pub fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for cause in std::iter::successors(Some(error), |cause| cause.source()) {
        wasmig::push_cause(&mut text, &cause.to_string());
    }
    text
}
