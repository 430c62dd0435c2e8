//! The JSON output's schema (docs/json.md, `"schema": 1`) as types: every line a command
//! writes with `--format json` is parsed into one of them, with unknown fields refused, so a
//! test that reads the output checks its shape too. Never grep JSON.

use serde::Deserialize;
use serde_json::Value;

/// One committed step, in a `step` event and in the `result`'s `committed`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `applied`, `reverted`, `verified`, `backfilled`, `backfill_paused`, `stamped`.
    pub action: String,
    pub version: String,
    pub migration: String,
    pub duration_ms: u64,
    pub rows: Option<i64>,
    pub batches: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub kind: String,
    pub message: String,
}

/// Every event a command may write, by its `event` field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    Step {
        action: String,
        version: String,
        migration: String,
        duration_ms: u64,
        rows: Option<i64>,
        batches: Option<i64>,
    },
    StepFailed {
        step: String,
        version: String,
        migration: String,
        error: Failure,
    },
    BackfillStarted {
        migration: String,
        worker: String,
        chunks: i64,
        rows_done: i64,
        rows_estimate: Option<i64>,
    },
    BackfillBatch {
        migration: String,
        chunk: i64,
        rows: u64,
        batch_size: u32,
        rows_done: i64,
        rows_estimate: Option<i64>,
        rows_per_second: f64,
        eta_ms: Option<u64>,
    },
    BackfillHalved {
        migration: String,
        chunk: i64,
        cursor: Option<String>,
        from: u32,
        to: u32,
        limit: String,
    },
    BackfillWaiting {
        migration: String,
        reason: String,
    },
    BackfillPaused {
        migration: String,
    },
    BackfillStopped {
        migration: String,
    },
    BackfillFinished {
        migration: String,
        rows: i64,
        batches: i64,
        duration_ms: u64,
    },
    BackfillFailed {
        migration: String,
        error: Failure,
    },
    Backup {
        version: String,
        migration: String,
        /// The step it came before: `up` or `down`.
        step: String,
        file: String,
        reason: String,
        duration_ms: u64,
    },
    Result(Outcome),
}

/// The `result` object every run ends with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub command: String,
    pub ok: bool,
    pub exit_code: u8,
    /// The exit code's name: `ok`, `project`, `integrity`, `backfill_unfinished`, …
    pub exit: String,
    pub duration_ms: u64,
    pub committed: Vec<Step>,
    pub error: Option<Failure>,
    /// The command's own payload (null for a run that only commits steps).
    pub data: Value,
}

/// A command's JSON output, checked against the schema: its events in order and its result.
#[derive(Debug, Clone)]
pub struct JsonRun {
    pub events: Vec<Event>,
    pub result: Outcome,
}

impl JsonRun {
    /// Parses `stdout` line by line. Panics, naming the line, when a line is not one JSON
    /// object of schema 1 with a known event and exactly its fields, when the last line is not
    /// the one `result`, or when anything else is on stdout.
    pub fn parse(stdout: &[u8]) -> JsonRun {
        let text = String::from_utf8(stdout.to_vec()).expect("stdout is UTF-8");
        let mut events = Vec::new();
        for line in text.lines() {
            let mut value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
            let object = value.as_object_mut().unwrap_or_else(|| panic!("not a JSON object: {line}"));
            assert_eq!(object.remove("schema"), Some(Value::from(1)), "schema 1: {line}");
            let event: Event = serde_json::from_value(value).unwrap_or_else(|e| panic!("off the schema ({e}): {line}"));
            events.push(event);
        }
        let Some(Event::Result(result)) = events.pop() else { panic!("the last line is not the result:\n{text}") };
        assert!(!events.iter().any(|e| matches!(e, Event::Result(_))), "one result only:\n{text}");
        JsonRun { events, result }
    }

    /// The steps the events reported, in order.
    pub fn steps(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Step { action, migration, .. } => Some((action.clone(), migration.clone())),
                _ => None,
            })
            .collect()
    }
}
