//! [`StoreState`]: what one call's store holds (WASI's empty context, the resource table with
//! the SQL handle, the memory cap, the log budget), which every host interface implements its
//! trait on.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::log_budget::LogBudget;

/// Cap on table elements (function references) a guest may allocate.
pub(super) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Per-call store data: WASI's empty context, the resource table holding the SQL handle,
/// and the memory cap.
pub struct StoreState {
    pub(super) table: ResourceTable,
    pub(super) wasi: WasiCtx,
    pub(super) limiter: MemoryCap,
    pub(crate) migration: String,
    /// What the component may still log in this call.
    pub(crate) log: LogBudget,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory and tables, and remembers a refusal so a resulting trap can be
/// reported as the memory limit rather than as a crash.
pub(super) struct MemoryCap {
    pub(super) max_memory_bytes: usize,
    pub(super) refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory_bytes;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

