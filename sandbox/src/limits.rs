//! The limits a task runs under, and the resource limiter that enforces the
//! memory limit (trapping, not failing, when a guest grows past it) and
//! records the peak for the task's report.

use std::time::Duration;

use crate::shape::ShapeLimits;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Limits of one task. The defaults suit a phone-sized wallet: a second or so
/// of compute, 256 MiB of memory.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxLimits {
    /// Fuel per call: deterministic, about one unit per WebAssembly
    /// instruction; also the unit of compute accounting.
    pub fuel: u64,
    /// Wall-clock deadline per call.
    pub deadline: Duration,
    /// Most linear memory a task may hold, in bytes.
    pub memory_bytes: usize,
    /// Most native stack the guest's WebAssembly may use, in bytes.
    pub max_wasm_stack: usize,
    /// Bytes of the guest's stdout and of its stderr that are kept.
    pub output_capture_bytes: usize,
    /// Largest result a guest may return (update delta or model), in bytes.
    pub max_result_bytes: usize,
    /// Most metrics a result may carry.
    pub max_metrics: usize,
    /// Longest metric name, in bytes.
    pub max_metric_name_bytes: usize,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Bounds on the component's shape, checked before compiling.
    pub shape: ShapeLimits,
    /// Most CPU time a component may take to compile (in a child process,
    /// whole seconds, at least one). CPU time, not wall-clock time, so that
    /// a busy machine does not refuse an honest algorithm; a wall-clock
    /// backstop of four times as long plus two seconds stops a child that is
    /// starved or stuck.
    pub compile_cpu_time: Duration,
    /// Most address space the compile child may map, in bytes.
    pub compile_memory_bytes: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel: 1_000_000_000,
            deadline: Duration::from_secs(5),
            memory_bytes: 256 << 20,
            max_wasm_stack: 512 << 10,
            output_capture_bytes: 64 << 10,
            max_result_bytes: 16 << 20,
            max_metrics: 32,
            max_metric_name_bytes: 64,
            max_component_bytes: 32 << 20,
            shape: ShapeLimits::default(),
            compile_cpu_time: Duration::from_secs(4),
            compile_memory_bytes: 512 << 20,
        }
    }
}

/// The error a memory grow past the limit traps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory grow to {requested} bytes exceeds the limit of {limit} bytes")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) requested: usize,
    pub(crate) limit: usize,
}

/// Wasmtime's `StoreLimits` (with trap-on-grow-failure) plus our own check of
/// linear memory, which traps with [`MemoryLimitExceeded`] and records the peak.
#[derive(Debug)]
pub(crate) struct TaskLimiter {
    inner: StoreLimits,
    memory_limit: usize,
    peak_memory: usize,
}

impl TaskLimiter {
    pub(crate) fn new(limits: &SandboxLimits) -> TaskLimiter {
        TaskLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(1 << 20)
                .instances(64)
                .tables(64)
                .memories(8)
                .trap_on_grow_failure(true)
                .build(),
            memory_limit: limits.memory_bytes,
            peak_memory: 0,
        }
    }

    /// The largest linear memory any instance of the task reached.
    pub(crate) fn peak_memory(&self) -> usize {
        self.peak_memory
    }
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                requested: desired,
                limit: self.memory_limit,
            }));
        }
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
