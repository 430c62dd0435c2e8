//! The sandbox: compiles, checks and runs migration components.
//!
//! Layer 1 of the design's sandbox: a component gets the `sql` handle and `log`, plus WASI
//! from an empty context (no environment, no preopened directories, no sockets; stdout and
//! stderr captured into the log); any other import is refused before instantiation. Layer 4:
//! every call runs in a fresh `Store` (a trapped instance cannot be entered again) under fuel,
//! an epoch deadline, a memory cap and a cap on bytes per host call.
//!
//! Two failure levels are kept apart: a trap ([`SandboxError::Trap`], naming the limit when
//! one was reached) and the guest's own `Err` ([`SandboxError::Guest`]).

mod bindings;
mod cache;
mod host;
mod imports;
mod log_budget;
mod output;
pub(crate) mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use self::bindings::{BatchRequest, Migration as MigrationWorld, MigrationPre};
pub use self::cache::CacheOutcome;
use self::cache::ComponentCache;
use self::host::sql::SqlConnection;
use self::log_budget::LogBudget;
use self::output::GuestOutput;
use self::state::{MAX_TABLE_ELEMENTS, MemoryCap, StoreState};
use crate::db::Database;
use crate::guard::postgres::AnalysisCache;
use crate::guard::{Grants, GuardSettings, Phase, Policy};
use crate::core::limits::{Limit, Limits, MAX_CONCURRENT_CALLS};

/// How often the epoch advances; the granularity of the wall-clock deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How much of a guest's stdout and stderr is kept per call.
const CAPTURED_OUTPUT_BYTES: usize = 64 * 1024;
/// Guest memory a finished call's slot keeps mapped and resets by copying instead of by
/// `madvise`, so the next batch's instance finds it already paged in. Only dirty pages are
/// reset, and only slots in use stay warm, so this is at most a few MiB per worker.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Which export to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Up,
    Down,
    Verify,
    /// One backfill batch: at most `batch_size` rows after `cursor`, up to `until`.
    Backfill {
        cursor: Option<String>,
        until: Option<String>,
        batch_size: u32,
    },
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Up => f.write_str("up"),
            Call::Down => f.write_str("down"),
            Call::Verify => f.write_str("verify"),
            Call::Backfill { cursor, until, batch_size } => {
                write!(f, "backfill (batch of {batch_size}")?;
                match cursor {
                    Some(cursor) => write!(f, " after cursor {cursor:?}")?,
                    None => f.write_str(" from the start")?,
                }
                match until {
                    Some(until) => write!(f, " up to {until:?})"),
                    None => f.write_str(")"),
                }
            }
        }
    }
}

/// What a successful call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Batch { next_cursor: Option<String>, rows: u64 },
}

/// A completed call and the fuel it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    pub outcome: Outcome,
    pub fuel_used: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("{path}: not a WebAssembly component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },
    #[error("{path}: imports {import}, which migrations may not use (allowed: wasmig:migration and inert WASI)")]
    ImportRefused { path: PathBuf, import: String },
    #[error(
        "{path}: imports {import} with other types than the interface of that name ({reason}); \
         a migration may import wasmig:migration and WASI only as wasmig serves them"
    )]
    ImportMismatch { path: PathBuf, import: String, reason: String },
    #[error("{path}: does not implement the wasmig:migration/migration world: {reason}")]
    WrongWorld { path: PathBuf, reason: String },
    #[error("migration {migration}: {call} trapped{}: {message}{}", limit_suffix(.limit), output_suffix(.guest_output))]
    Trap { migration: String, call: String, limit: Option<Limit>, message: String, guest_output: String },
    #[error("migration {migration}: {call} failed: {message}")]
    Guest { migration: String, call: String, message: String },
    #[error("migration {migration}: could not raise the database's own walls for the call: {source}")]
    Walls { migration: String, source: crate::db::DbError },
}

fn limit_suffix(limit: &Option<Limit>) -> String {
    limit.map(|limit| format!(" on its {limit}")).unwrap_or_default()
}

fn output_suffix(output: &str) -> String {
    if output.trim().is_empty() { String::new() } else { format!("\nguest output:\n{}", output.trim_end()) }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wasmig-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map(|_| EpochTicker { stop })
            .unwrap_or_else(|error| {
                // Without a ticker deadlines cannot fire; fuel still bounds every call.
                tracing::warn!(%error, "could not start the epoch ticker; time limits are off");
                EpochTicker { stop: Arc::new(AtomicBool::new(true)) }
            })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compiles and runs components. One per run; cheap to share across migrations.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: Option<ComponentCache>,
    _ticker: EpochTicker,
}

impl Sandbox {
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, SandboxError> {
        let engine_error = |e: wasmtime::Error| SandboxError::Engine(e.to_string());
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        config.epoch_interruption(true);
        config.allocation_strategy(instance_pool());
        let engine = Engine::new(&config).or_else(|error| {
            // The pool reserves address space up front; where that is refused (a tight
            // `ulimit -v`), instances are allocated per call instead, which is only slower.
            tracing::warn!(error = %format!("{error:#}"), "no instance pool; allocating each call's instance on demand");
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
            Engine::new(&config)
        });
        let engine = engine.map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        MigrationWorld::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |state| state).map_err(engine_error)?;
        let cache = cache_dir.map(|dir| ComponentCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.clone());
        Ok(Sandbox { engine, linker, cache, _ticker: ticker })
    }

    /// Compiles (or loads precompiled) a component and checks its imports and exports.
    /// Call only with bytes already checked against the catalog's digest (invariant 2).
    pub fn load(&self, migration: &str, path: &Path, bytes: &[u8]) -> Result<LoadedComponent, SandboxError> {
        let started = Instant::now();
        let not_a_component =
            |e: wasmtime::Error| SandboxError::NotAComponent { path: path.to_owned(), reason: e.to_string() };
        let (component, cache) = match &self.cache {
            Some(cache) => cache.load(&self.engine, bytes).map_err(not_a_component)?,
            None => (Component::new(&self.engine, bytes).map_err(not_a_component)?, CacheOutcome::Disabled),
        };
        if let Some(import) = imports::refused_import(&self.engine, &component) {
            return Err(SandboxError::ImportRefused { path: path.to_owned(), import });
        }
        let wrong_world =
            |e: wasmtime::Error| SandboxError::WrongWorld { path: path.to_owned(), reason: format!("{e:#}") };
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|error| {
                match imports::mismatched_import(&self.engine, &component, &error) {
                    Some((import, reason)) => SandboxError::ImportMismatch { path: path.to_owned(), import, reason },
                    None => wrong_world(error),
                }
            })?;
        let pre = MigrationPre::new(instance_pre).map_err(wrong_world)?;
        let load_time = started.elapsed();
        tracing::debug!(migration, ?cache, ?load_time, "component loaded");
        Ok(LoadedComponent {
            pre,
            analyses: Arc::default(),
            migration: migration.to_owned(),
            engine: self.engine.clone(),
            cache,
            load_time,
        })
    }
}

/// Slots for [`MAX_CONCURRENT_CALLS`] instances at once. A backfill creates a fresh instance
/// per batch (no state survives from one batch to the next); the pool hands back a slot whose
/// memory was reset in place instead of mapping and unmapping it for every batch. Per call,
/// the limits stay those of the store ([`MemoryCap`], fuel, deadline); the pool's own caps
/// are set so that no component they allow is refused for the pool's sake.
fn instance_pool() -> wasmtime::PoolingAllocationConfig {
    let calls = MAX_CONCURRENT_CALLS;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(calls)
        // A component built from Python or JavaScript holds a dozen core modules or more.
        .total_core_instances(calls * 32)
        .total_memories(calls * 4)
        .total_tables(calls * 16)
        .total_stacks(calls)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_tables_per_module(4)
        .max_component_instance_size(16 << 20)
        .max_core_instance_size(16 << 20)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .max_unused_warm_slots(calls);
    pool
}

/// A checked, pre-instantiated component, ready to be called.
pub struct LoadedComponent {
    pre: MigrationPre<StoreState>,
    /// PostgreSQL statement analyses by text, shared by all calls (a backfill's batches).
    analyses: Arc<AnalysisCache>,
    migration: String,
    engine: Engine,
    pub cache: CacheOutcome,
    pub load_time: Duration,
}

impl LoadedComponent {
    /// Calls one export in a fresh store, with `db` as the component's SQL handle. The
    /// caller owns the transaction around it.
    pub async fn call(
        &self,
        call: Call,
        db: Arc<dyn Database>,
        limits: &Limits,
        grants: &Grants,
        postgres_role: Option<&str>,
    ) -> Result<CallReport, SandboxError> {
        let phase = match call {
            Call::Up | Call::Down => Phase::Schema,
            Call::Backfill { .. } => Phase::Data,
            Call::Verify => Phase::ReadOnly,
        };
        let guard = GuardSettings {
            policy: Policy { grants: grants.clone(), phase },
            postgres_role: postgres_role.map(str::to_owned),
            statement_timeout: limits.statement_timeout,
            lock_timeout: limits.lock_timeout,
            call_timeout: limits.timeout,
            max_value_bytes: limits.result_bytes,
        };
        let walls = |source| SandboxError::Walls { migration: self.migration.clone(), source };
        db.enter_guarded(&guard).await.map_err(walls)?;
        let result = self.call_guarded(call, db.clone(), limits, guard.policy).await;
        let left = db.leave_guarded().await;
        let report = result?;
        left.map_err(walls)?;
        Ok(report)
    }

    async fn call_guarded(
        &self,
        call: Call,
        db: Arc<dyn Database>,
        limits: &Limits,
        policy: Policy,
    ) -> Result<CallReport, SandboxError> {
        let stdout = GuestOutput::new(CAPTURED_OUTPUT_BYTES);
        let stderr = GuestOutput::new(CAPTURED_OUTPUT_BYTES);
        let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let state = StoreState {
            table: ResourceTable::new(),
            wasi,
            limiter: MemoryCap {
                max_memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                refused: false,
            },
            migration: self.migration.clone(),
            log: LogBudget::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let trap = |e: wasmtime::Error, store: &Store<StoreState>| self.trap(&call, e, store, limits, &stdout, &stderr);
        store.set_fuel(limits.fuel).map_err(|e| trap(e, &store))?;
        let ticks = (limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        // The guard returns a `limit` error above limits.hostcall_bytes; wasmtime's own cap, at
        // four times that, keeps a larger transfer from ever being copied into the host.
        store.set_hostcall_fuel(usize::try_from(limits.hostcall_bytes.saturating_mul(4)).unwrap_or(usize::MAX));

        let connection = SqlConnection {
            db,
            policy,
            analyses: self.analyses.clone(),
            migration: self.migration.clone(),
            result_cap: crate::db::ResultCap { rows: limits.result_rows, bytes: limits.result_bytes },
            hostcall_bytes: limits.hostcall_bytes,
        };
        let result = self.invoke(&call, connection, &mut store).await;
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        log_output(&self.migration, &stdout, &stderr);
        store.data().log.report_dropped(&self.migration);
        match result {
            Err(error) => Err(trap(error, &store)),
            Ok(Err(message)) => {
                Err(SandboxError::Guest { migration: self.migration.clone(), call: call.to_string(), message })
            }
            Ok(Ok(outcome)) => Ok(CallReport { outcome, fuel_used }),
        }
    }

    async fn invoke(
        &self,
        call: &Call,
        connection: SqlConnection,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Result<Outcome, String>> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let handle = store.data_mut().table.push(connection)?;
        let borrowed = wasmtime::component::Resource::<SqlConnection>::new_borrow(handle.rep());
        let done = |r: Result<(), String>| r.map(|()| Outcome::Done);
        let result = match call {
            Call::Up => instance.call_up(&mut *store, borrowed).await.map(done),
            Call::Down => instance.call_down(&mut *store, borrowed).await.map(done),
            Call::Verify => instance.call_verify(&mut *store, borrowed).await.map(done),
            Call::Backfill { cursor, until, batch_size } => instance
                .call_backfill(
                    &mut *store,
                    borrowed,
                    &BatchRequest { cursor: cursor.clone(), until: until.clone(), size: *batch_size },
                )
                .await
                .map(|r| r.map(|batch| Outcome::Batch { next_cursor: batch.next_cursor, rows: batch.rows })),
        };
        // The handle lives only for this call; the store is dropped after it anyway.
        let _ = store.data_mut().table.delete(handle);
        result
    }

    fn trap(
        &self,
        call: &Call,
        error: wasmtime::Error,
        store: &Store<StoreState>,
        limits: &Limits,
        stdout: &GuestOutput,
        stderr: &GuestOutput,
    ) -> SandboxError {
        let limit = match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Some(Limit::Fuel(limits.fuel)),
            Some(Trap::Interrupt) => Some(Limit::Deadline(limits.timeout)),
            _ if error.downcast_ref::<host::sql::PastDeadline>().is_some() => Some(Limit::Deadline(limits.timeout)),
            _ if store.data().limiter.refused => Some(Limit::Memory(limits.memory_bytes)),
            _ if hostcall_fuel_exhausted(&error) => Some(Limit::Hostcall(limits.hostcall_bytes)),
            _ => None,
        };
        let mut guest_output = String::from_utf8_lossy(&stdout.contents().0).into_owned();
        guest_output.push_str(&String::from_utf8_lossy(&stderr.contents().0));
        // The cause leads; the wasm backtrace wasmtime wraps around it is for -v.
        if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
            tracing::debug!(migration = self.migration, call = %call, "wasm backtrace:\n{backtrace}");
        }
        SandboxError::Trap {
            migration: self.migration.clone(),
            call: call.to_string(),
            limit,
            message: trap_cause(&error),
            guest_output,
        }
    }
}

/// What stopped the call, in words: the trap itself, without the backtrace wasmtime adds as
/// context around it.
fn trap_cause(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => {
            "call stack exhausted: the component recursed past the wasm stack wasmtime gives each call".to_owned()
        }
        Some(trap) => trap.to_string(),
        None => error.chain().last().map_or_else(|| error.to_string(), ToString::to_string),
    }
}

/// Whether wasmtime refused to copy a call's arguments into the host because they passed the
/// store's hostcall fuel (four times `limits.hostcall_mib`, the guard's own limit behind it).
/// wasmtime keeps that error's type private, so its text is the only sign of it.
fn hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| cause.to_string().contains("fuel allocated for hostcalls has been exhausted"))
}

fn log_output(migration: &str, stdout: &GuestOutput, stderr: &GuestOutput) {
    let (out, out_dropped) = stdout.contents();
    let (err, err_dropped) = stderr.contents();
    for line in String::from_utf8_lossy(&out).lines() {
        tracing::info!(migration, stream = "stdout", "{line}");
    }
    for line in String::from_utf8_lossy(&err).lines() {
        tracing::warn!(migration, stream = "stderr", "{line}");
    }
    if out_dropped + err_dropped > 0 {
        tracing::warn!(
            migration,
            "the component printed {} bytes more than the {} KiB per stream and call that are kept; they were dropped",
            out_dropped + err_dropped,
            CAPTURED_OUTPUT_BYTES / 1024
        );
    }
}
