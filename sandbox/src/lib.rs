//! The sandbox that runs training algorithms: a wasmtime component-model
//! engine with fuel, an epoch deadline, a memory limit, a stack limit and
//! bounded output, that links nothing but WASI's I/O plumbing.
//!
//! One [`Sandbox`] holds one engine. [`Sandbox::load`] checks a component
//! (size, imports against the allow-list, the exported world), compiles it
//! once and caches it by SHA-256 together with its `InstancePre`. Every call
//! ([`Sandbox::train`] and the others) gets a fresh store and instance, and
//! returns a [`TaskReport`]: the result or a typed [`TaskError`], and what the
//! task cost (fuel, time, peak memory) and printed. A trap, a panic or a limit
//! ends that task only; the host and later tasks go on.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod bindings;
mod compile;
mod error;
pub mod imports;
mod limits;
mod output;
mod shape;
mod validate;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use c2ssi_guest_sdk::{AlgorithmInfo, Column, ColumnSpec, Evaluation, Param, Table};
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use self::compile::{CHILD_ARG, Compiler, compile_child_hook};
pub use self::error::{LoadError, TaskError};
pub use self::limits::SandboxLimits;
pub use self::output::Captured;
pub use self::shape::{Shape, ShapeExceeded, ShapeLimits};
pub use self::validate::{
    CheckedUpdate, MAX_DEFAULT_BYTES, MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES, MAX_PARAMS,
    MAX_PREDICTION_COLUMNS, check_info, check_metrics, check_predictions, check_update,
    check_vector,
};

use self::bindings::AlgorithmPre;
use self::limits::{MemoryLimitExceeded, TaskLimiter};
use self::output::CapturePipe;

/// A SHA-256 digest: the content address of a component.
pub type Sha256 = [u8; 32];

/// A component's bytes with their SHA-256, computed here and nowhere else,
/// so that the digest always belongs to the bytes.
#[derive(Debug, Clone, Copy)]
pub struct HashedComponent<'a> {
    bytes: &'a [u8],
    digest: Sha256,
}

impl<'a> HashedComponent<'a> {
    /// Hashes `bytes`.
    pub fn new(bytes: &'a [u8]) -> HashedComponent<'a> {
        HashedComponent {
            bytes,
            digest: sha256(bytes),
        }
    }

    /// The SHA-256 of the bytes.
    pub fn digest(&self) -> Sha256 {
        self.digest
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// What `bytes` has of each thing the shape check counts, without limits:
/// for reports and for choosing limits.
pub fn component_shape(bytes: &[u8]) -> Result<Shape, LoadError> {
    shape::check(bytes, &ShapeLimits::unlimited()).map_err(|e| match e {
        shape::ShapeError::Exceeded(exceeded) => LoadError::Shape(exceeded),
        shape::ShapeError::Malformed(message) => LoadError::Invalid(message),
    })
}

/// How often the deadline clock ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// How many compiled components the cache keeps.
const CACHE_CAPACITY: usize = 32;

/// What a task cost and printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStats {
    /// Fuel units used (instantiation included).
    pub fuel_used: u64,
    /// Wall-clock time of instantiation and call.
    pub elapsed: Duration,
    /// Largest linear memory reached, in bytes.
    pub peak_memory_bytes: usize,
    /// The guest's stdout, bounded.
    pub stdout: Captured,
    /// The guest's stderr, bounded.
    pub stderr: Captured,
}

/// The outcome of one call into a component.
#[derive(Debug, Clone)]
pub struct TaskReport<T> {
    /// The result, or why there is none.
    pub result: Result<T, TaskError>,
    /// What the task cost and printed.
    pub stats: TaskStats,
}

impl<T> TaskReport<T> {
    /// The result alone.
    pub fn into_result(self) -> Result<T, TaskError> {
        self.result
    }

    /// Continues a successful result with `next`, keeping the stats.
    pub fn and_then<U>(self, next: impl FnOnce(T) -> Result<U, TaskError>) -> TaskReport<U> {
        TaskReport {
            result: self.result.and_then(next),
            stats: self.stats,
        }
    }
}

/// A component that passed the load checks: compiled and pre-instantiated.
pub struct LoadedComponent {
    pre: AlgorithmPre<TaskState>,
    sha256: Sha256,
    size: usize,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("sha256", &hex::encode(self.sha256))
            .field("size", &self.size)
            .finish()
    }
}

impl LoadedComponent {
    /// The component's content address.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// The per-task store data: WASI context (no environment, no arguments,
/// closed stdin, captured stdout and stderr), resource table, limiter.
struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: TaskLimiter,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links exactly the allow-listed interfaces of [`imports::ALLOWED_INTERFACES`].
fn link_allowed_interfaces(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, sync::io};
    let l = linker;
    l.instance(&format!(
        "{}@{}",
        imports::CONTRACT_TYPES,
        imports::CONTRACT_VERSION
    ))?;
    io::error::add_to_linker::<TaskState, HasIo>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<TaskState, HasIo>(l, |t| &mut t.table)?;
    io::streams::add_to_linker::<TaskState, HasIo>(l, |t| &mut t.table)?;
    cli::environment::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::exit::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::stdin::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::stdout::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::stderr::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::terminal_input::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::terminal_output::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::terminal_stdin::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::terminal_stdout::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    cli::terminal_stderr::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli)?;
    Ok(())
}

impl TaskState {
    fn cli(&mut self) -> wasmtime_wasi::cli::WasiCliCtxView<'_> {
        wasmtime_wasi::cli::WasiCliView::cli(self)
    }
}

/// Ticks the engine's epoch so that deadlines fire; stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sandbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Compiled components by SHA-256, the oldest dropped past [`CACHE_CAPACITY`].
#[derive(Default)]
struct ComponentCache {
    by_digest: HashMap<Sha256, Arc<LoadedComponent>>,
    order: VecDeque<Sha256>,
}

impl ComponentCache {
    fn get(&self, digest: &Sha256) -> Option<Arc<LoadedComponent>> {
        self.by_digest.get(digest).cloned()
    }

    fn insert(&mut self, digest: Sha256, component: Arc<LoadedComponent>) {
        if self.by_digest.insert(digest, component).is_none() {
            self.order.push_back(digest);
        }
        while self.order.len() > CACHE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_digest.remove(&old);
            }
        }
    }
}

/// How many tasks may run at once in one sandbox (instances in the pool).
pub const MAX_CONCURRENT_TASKS: u32 = 64;

/// The pooling allocator: memory slots are reserved once and reused, and the
/// first megabytes of a slot stay resident (reset with `memset`, not
/// `madvise`), so a fresh instance per task does not pay for page faults.
fn pooling(limits: &SandboxLimits) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(MAX_CONCURRENT_TASKS)
        .max_core_instances_per_component(16)
        .total_core_instances(MAX_CONCURRENT_TASKS * 16)
        .max_memories_per_component(2)
        .total_memories(MAX_CONCURRENT_TASKS * 2)
        .max_tables_per_component(8)
        .total_tables(MAX_CONCURRENT_TASKS * 8)
        .max_memory_size(limits.memory_bytes)
        .linear_memory_keep_resident(8 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    pool
}

/// The sandbox: one engine, the allow-listed linker, the component cache.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<TaskState>,
    limits: SandboxLimits,
    compiler: Compiler,
    cache: Mutex<ComponentCache>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .field("compiler", &self.compiler)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox with these limits, compiling where [`Compiler::detect`] says:
    /// in a child process under the compile budget in every binary that calls
    /// [`compile_child_hook`].
    pub fn new(limits: SandboxLimits) -> Result<Sandbox, LoadError> {
        Sandbox::with_compiler(limits, Compiler::detect())
    }

    /// A sandbox with these limits that compiles with `compiler`.
    pub fn with_compiler(limits: SandboxLimits, compiler: Compiler) -> Result<Sandbox, LoadError> {
        let mut config = compile::base_config(&limits);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&limits)));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        link_allowed_interfaces(&mut linker).map_err(|e| LoadError::Engine(e.to_string()))?;
        let ticker = EpochTicker::start(&engine).map_err(|e| LoadError::Engine(e.to_string()))?;
        Ok(Sandbox {
            engine,
            linker,
            limits,
            compiler,
            cache: Mutex::new(ComponentCache::default()),
            _ticker: ticker,
        })
    }

    /// The limits every task runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Where components are compiled.
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// Checks, compiles and pre-instantiates a component, or returns the cached
    /// one with the same SHA-256.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedComponent>, LoadError> {
        self.load_hashed(&HashedComponent::new(bytes))
    }

    /// Like [`Sandbox::load`], for bytes whose digest the caller has already
    /// computed (to compare it with a task's): hashed once, not twice.
    pub fn load_hashed(
        &self,
        component: &HashedComponent<'_>,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let HashedComponent { bytes, digest } = *component;
        if bytes.len() > self.limits.max_component_bytes {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_component_bytes,
            });
        }
        if let Some(found) = self.lock_cache().get(&digest) {
            return Ok(found);
        }
        let loaded = Arc::new(self.compile(bytes, digest)?);
        self.lock_cache().insert(digest, loaded.clone());
        Ok(loaded)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ComponentCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn compile(&self, bytes: &[u8], digest: Sha256) -> Result<LoadedComponent, LoadError> {
        let start = Instant::now();
        const MAGIC: &[u8] = b"\0asm";
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(LoadError::Invalid(
                "the file does not start with the WebAssembly magic number".into(),
            ));
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::Invalid(
                "this is a core WebAssembly module, not a component; build the algorithm with \
                 `cargo build --target wasm32-wasip2`"
                    .into(),
            ));
        }
        shape::check(bytes, &self.limits.shape).map_err(|e| match e {
            shape::ShapeError::Exceeded(exceeded) => LoadError::Shape(exceeded),
            shape::ShapeError::Malformed(message) => LoadError::Invalid(message),
        })?;
        let component = match &self.compiler {
            Compiler::InProcess => Component::new(&self.engine, bytes)
                .map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
            Compiler::Subprocess(program) => {
                let artifact = compile::in_child(program, bytes, &self.limits, start)?;
                self.load_artifact(&artifact)?
            }
        };
        let ty = component.component_type();
        if let Some(version) = imports::retired_contract(ty.imports(&self.engine).map(|(n, _)| n)) {
            return Err(LoadError::RetiredContract { version });
        }
        let forbidden = imports::forbidden(ty.imports(&self.engine).map(|(name, _)| name));
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImports { imports: forbidden });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::NotAnAlgorithm(format!("{e:#}")))?;
        let pre =
            AlgorithmPre::new(pre).map_err(|e| LoadError::NotAnAlgorithm(format!("{e:#}")))?;
        Ok(LoadedComponent {
            pre,
            sha256: digest,
            size: bytes.len(),
        })
    }

    /// Loads what the compile child wrote.
    #[expect(
        unsafe_code,
        reason = "wasmtime trusts a serialized artifact to be its own output: this one is, \
                  written by this binary's compile child from the bytes just checked, read \
                  back through a pipe only the two processes hold; wasmtime still checks \
                  that engine version and configuration match"
    )]
    fn load_artifact(&self, artifact: &[u8]) -> Result<Component, LoadError> {
        // SAFETY: see the reason above; the artifact never leaves memory and
        // comes from no one but our own child process.
        unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| LoadError::Compiler(format!("loading the compiled artifact: {e:#}")))
    }

    /// Runs `call` on a fresh instance under the limits.
    fn run<R>(
        &self,
        component: &LoadedComponent,
        call: impl FnOnce(&bindings::Algorithm, &mut Store<TaskState>) -> wasmtime::Result<R>,
    ) -> TaskReport<R> {
        let stdout = CapturePipe::new(self.limits.output_capture_bytes);
        let stderr = CapturePipe::new(self.limits.output_capture_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let mut store = Store::new(
            &self.engine,
            TaskState {
                wasi,
                table: ResourceTable::new(),
                limiter: TaskLimiter::new(&self.limits),
            },
        );
        store.limiter(|state| &mut state.limiter);
        let ticks = self.limits.deadline.as_nanos() / EPOCH_TICK.as_nanos() + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let start = Instant::now();
        let result = match store.set_fuel(self.limits.fuel) {
            Err(e) => Err(TaskError::Instantiate(format!("{e:#}"))),
            Ok(()) => match component.pre.instantiate(&mut store) {
                Err(e) => Err(self.classify(e, &stderr, true)),
                Ok(instance) => {
                    call(&instance, &mut store).map_err(|e| self.classify(e, &stderr, false))
                }
            },
        };
        let elapsed = start.elapsed();
        let fuel_used = self
            .limits
            .fuel
            .saturating_sub(store.get_fuel().unwrap_or(0));
        let peak_memory_bytes = store.data().limiter.peak_memory();
        drop(store);
        TaskReport {
            result,
            stats: TaskStats {
                fuel_used,
                elapsed,
                peak_memory_bytes,
                stdout: stdout.take(),
                stderr: stderr.take(),
            },
        }
    }

    /// Turns a wasmtime error into a [`TaskError`], reading a panic's message
    /// from the captured stderr.
    fn classify(&self, e: wasmtime::Error, stderr: &CapturePipe, instantiating: bool) -> TaskError {
        if let Some(limit) = e.downcast_ref::<MemoryLimitExceeded>() {
            return TaskError::MemoryLimit {
                limit: limit.limit,
                requested: limit.requested,
            };
        }
        if let Some(exit) = e.downcast_ref::<I32Exit>() {
            return TaskError::Exited { code: exit.0 };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => TaskError::OutOfFuel {
                limit: self.limits.fuel,
            },
            Some(Trap::Interrupt) => TaskError::Deadline {
                limit: self.limits.deadline,
            },
            Some(Trap::StackOverflow) => TaskError::StackOverflow {
                limit: self.limits.max_wasm_stack,
            },
            Some(trap) => match panic_message(&stderr.contents()) {
                Some(message) => TaskError::Panic { message },
                None => TaskError::Trap(format!("{trap}: {e:#}")),
            },
            None if instantiating => TaskError::Instantiate(format!("{e:#}")),
            None => TaskError::Trap(format!("{e:#}")),
        }
    }

    /// Calls `describe`.
    pub fn describe(&self, component: &LoadedComponent) -> TaskReport<AlgorithmInfo> {
        self.run(component, |instance, store| {
            instance.call_describe(store).map(bindings::info_from_wit)
        })
        .and_then(|info| {
            check_info(&info)?;
            Ok(info)
        })
    }

    /// Calls `init-model`; the model is checked like an update's delta.
    pub fn init_model(
        &self,
        component: &LoadedComponent,
        params: &[Param],
        feature_count: usize,
    ) -> TaskReport<Vec<f32>> {
        let params = bindings::params_to_wit(params);
        let feature_count = u32::try_from(feature_count).unwrap_or(u32::MAX);
        self.run(component, |instance, store| {
            instance.call_init_model(store, &params, feature_count)
        })
        .and_then(|r| {
            let model = r.map_err(TaskError::Algorithm)?;
            check_vector("model", &model, &self.limits)?;
            if model.is_empty() {
                return Err(TaskError::InvalidResult(
                    "the initial model is empty".into(),
                ));
            }
            Ok(model)
        })
    }

    /// The initial model for a table of `columns`: `describe`, the
    /// hyper-parameters resolved against its declarations, the features
    /// selected (all columns but the label unless `features` names them)
    /// and counted once encoded, then `init-model`.
    pub fn initial_model(
        &self,
        component: &LoadedComponent,
        columns: &[ColumnSpec],
        params: &[Param],
    ) -> Result<Vec<f32>, TaskError> {
        use c2ssi_guest_sdk::encode::{feature_count, select_features};
        use c2ssi_guest_sdk::{FEATURES, LABEL, Params};
        let info = self.describe(component).into_result()?;
        let resolved = Params::resolve(&info.params, params.to_vec())
            .map_err(|e| TaskError::Params(format!("{}: {e}", info.name)))?;
        let label = info.spec(LABEL).and_then(|_| resolved.text(LABEL).ok());
        let requested = if info.spec(FEATURES).is_some() {
            resolved
                .text_list(FEATURES)
                .map(<[String]>::to_vec)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let features = select_features(columns, &requested, label);
        let count = feature_count(columns, &features)
            .map_err(|e| TaskError::Params(format!("the table's columns: {e}")))?;
        self.init_model(component, params, count).into_result()
    }

    /// Calls `train` and checks the update (length, finite values, metrics),
    /// clipping its L2 norm to `clip_norm` when given.
    pub fn train(
        &self,
        component: &LoadedComponent,
        model: &[f32],
        params: &[Param],
        data: &Table,
        seed: u64,
        clip_norm: Option<f64>,
    ) -> TaskReport<CheckedUpdate> {
        let params = bindings::params_to_wit(params);
        let data = bindings::table_to_wit(data);
        self.run(component, |instance, store| {
            instance.call_train(store, model, &params, &data, seed)
        })
        .and_then(|r| {
            let update = bindings::update_from_wit(r.map_err(TaskError::Algorithm)?);
            check_update(update, model.len(), clip_norm, &self.limits)
        })
    }

    /// Calls `evaluate` and checks its metrics.
    pub fn evaluate(
        &self,
        component: &LoadedComponent,
        model: &[f32],
        params: &[Param],
        data: &Table,
    ) -> TaskReport<Evaluation> {
        let params = bindings::params_to_wit(params);
        let data = bindings::table_to_wit(data);
        self.run(component, |instance, store| {
            instance.call_evaluate(store, model, &params, &data)
        })
        .and_then(|r| {
            let evaluation = bindings::evaluation_from_wit(r.map_err(TaskError::Algorithm)?);
            let all: Vec<_> = evaluation.all().cloned().collect();
            check_metrics(&all, &self.limits)?;
            Ok(evaluation)
        })
    }

    /// Calls `predict` and checks the columns: at least one, the first named
    /// like the label, at most [`MAX_PREDICTION_COLUMNS`], names of at most
    /// [`MAX_NAME_BYTES`], one value per row of `data`, each fitting its
    /// declared type (reals finite).
    pub fn predict(
        &self,
        component: &LoadedComponent,
        model: &[f32],
        params: &[Param],
        data: &Table,
        label: &ColumnSpec,
    ) -> TaskReport<Vec<Column>> {
        let params = bindings::params_to_wit(params);
        let wit_data = bindings::table_to_wit(data);
        let wit_label = bindings::column_spec_to_wit(label);
        self.run(component, |instance, store| {
            instance.call_predict(store, model, &params, &wit_data, &wit_label)
        })
        .and_then(|r| {
            let columns: Vec<Column> = r
                .map_err(TaskError::Algorithm)?
                .into_iter()
                .map(bindings::column_from_wit)
                .collect();
            check_predictions(&columns, data.row_count, &label.name)?;
            Ok(columns)
        })
    }
}

/// The message of a guest panic in its captured stderr: the SDK's marked line
/// if there is one, else the standard library's `panicked at` report.
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    if let Some(line) = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(c2ssi_guest_sdk::PANIC_MARKER))
    {
        return Some(line.to_string());
    }
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains("panicked at") {
            let message = lines.next().unwrap_or("").trim();
            return Some(format!("{message} ({})", line.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_found_in_either_form() {
        assert_eq!(
            panic_message(b"noise\nc2ssi-guest-panic: boom at src/lib.rs:3\n").as_deref(),
            Some("boom at src/lib.rs:3")
        );
        assert_eq!(
            panic_message(b"thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\n").as_deref(),
            Some("boom (thread '<unnamed>' panicked at src/lib.rs:3:5:)")
        );
        assert_eq!(panic_message(b"nothing here"), None);
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
