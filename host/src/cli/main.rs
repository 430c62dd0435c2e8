//! The `wasmig` command: parses arguments into a [`wasmig::Config`], calls the library, prints
//! the result, and maps failures to the exit codes documented in the README.

mod args;
mod commands;
mod gate;
mod output;
mod print;
mod progress;
mod rehearse;
mod route;
mod stop;

use std::process::ExitCode;
use std::sync::Arc;

use wasmig::{ErrorKind, RunError};

/// Exit codes, as documented in the README.
mod exit {
    pub const UNEXPECTED: u8 = 1;
    pub const PROJECT: u8 = 3;
    pub const CONNECTION: u8 = 4;
    pub const LOCK: u8 = 5;
    pub const INTEGRITY: u8 = 6;
    pub const MIGRATION_FAILED: u8 = 7;
    pub const SANDBOX: u8 = 8;
    pub const TRUST: u8 = 9;
    pub const BACKFILL_UNFINISHED: u8 = 10;
    pub const PENDING: u8 = 11;
    pub const ROUND_TRIP: u8 = 12;
    pub const DRIFT: u8 = 13;
    pub const BACKUP: u8 = 14;
    /// 128 + SIGINT, as shells report a command stopped by Ctrl-C.
    pub const STOPPED: u8 = 130;

    /// The code's name, as the JSON `result` gives it.
    pub fn name(code: u8) -> &'static str {
        match code {
            0 => "ok",
            PROJECT => "project",
            CONNECTION => "connection",
            LOCK => "lock",
            INTEGRITY => "integrity",
            MIGRATION_FAILED => "migration_failed",
            SANDBOX => "sandbox",
            TRUST => "trust",
            BACKFILL_UNFINISHED => "backfill_unfinished",
            PENDING => "pending",
            ROUND_TRIP => "round_trip",
            DRIFT => "drift",
            BACKUP => "backup",
            STOPPED => "stopped",
            _ => "unexpected",
        }
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(gate) = error.chain().find_map(|cause| cause.downcast_ref::<gate::GateFailed>()) {
        return match gate.class {
            wasmig::FindingClass::Integrity => exit::INTEGRITY,
            wasmig::FindingClass::Backfill => exit::BACKFILL_UNFINISHED,
            wasmig::FindingClass::Pending => exit::PENDING,
        };
    }
    if error.chain().any(|cause| cause.is::<rehearse::RoundTripBroken>()) {
        return exit::ROUND_TRIP;
    }
    if error.chain().any(|cause| cause.is::<rehearse::DriftFound>()) {
        return exit::DRIFT;
    }
    let kind = error.chain().find_map(|cause| {
        cause
            .downcast_ref::<wasmig::Error>()
            .map(wasmig::Error::kind)
            .or_else(|| cause.downcast_ref::<RunError>().map(|run| run.error.kind()))
            .or_else(|| cause.downcast_ref::<wasmig::scaffold::ScaffoldError>().map(|_| ErrorKind::Project))
            .or_else(|| cause.downcast_ref::<wasmig::signing::SigningError>().map(|_| ErrorKind::Project))
            .or_else(|| cause.downcast_ref::<wasmig::TrustError>().map(|_| ErrorKind::Trust))
    });
    match kind {
        Some(ErrorKind::Project) => exit::PROJECT,
        Some(ErrorKind::Connection) => exit::CONNECTION,
        Some(ErrorKind::Lock) => exit::LOCK,
        Some(ErrorKind::Integrity) => exit::INTEGRITY,
        Some(ErrorKind::MigrationFailed) => exit::MIGRATION_FAILED,
        Some(ErrorKind::Sandbox) => exit::SANDBOX,
        Some(ErrorKind::Trust) => exit::TRUST,
        Some(ErrorKind::BackfillUnfinished) => exit::BACKFILL_UNFINISHED,
        Some(ErrorKind::Stopped) => exit::STOPPED,
        Some(ErrorKind::Backup) => exit::BACKUP,
        None => exit::UNEXPECTED,
    }
}

/// The error and its causes, each said once: a cause whose words an outer message already
/// holds (a run's failure shows its error, an error its source) is not repeated.
fn describe(error: &anyhow::Error) -> String {
    output::describe_chain(error.as_ref())
}

/// A closed stdout (`wasmig status | head`) ends the process quietly, as it does for other
/// command-line tools, instead of failing every later `println!` with a panic. Rust ignores
/// SIGPIPE by default; this restores the operating system's default.
fn exit_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    exit_quietly_on_a_closed_pipe();
    let args = <args::Args as clap::Parser>::parse();
    args::init_logging(args.verbose, args.quiet);
    // At least two workers, also on a one-core machine: while a component computes on one,
    // the other drives the connection and a table lock's heartbeat.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(exit::UNEXPECTED);
        }
    };
    let output = Arc::new(output::Output::new(args.format, args.quiet));
    let command = args.command.name();
    let project = args.command.project().unwrap_or_else(wasmig::default_project_dir);
    // The command runs as a task on a worker, not on this thread: the task that drives the
    // database connection wakes it on the same worker, where a wake-up from a worker to this
    // thread would cost a futex call and a context switch for every reply.
    let run = runtime.spawn(commands::run(args.command.into(), project, output.clone()));
    let result = match runtime.block_on(run) {
        Ok(result) => result,
        // A panic in the command goes on as a panic, as it would have on this thread.
        Err(failed) => match failed.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(cancelled) => {
                eprintln!("error: the command was cancelled: {cancelled}");
                return ExitCode::from(exit::UNEXPECTED);
            }
        },
    };
    let (code, error) = match &result {
        Ok(()) => (0, None),
        Err(error) => {
            let code = exit_code(error);
            eprintln!("error: {}", describe(error));
            (code, Some((exit::name(code), describe(error))))
        }
    };
    output.finish(output::Ending { command, exit_code: code, exit: exit::name(code), error });
    ExitCode::from(code)
}
