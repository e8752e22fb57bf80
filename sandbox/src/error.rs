//! What can go wrong in the sandbox, typed. [`LoadError`]: a component refused
//! before it ever runs. [`TaskError`]: a task that ran and did not produce a
//! valid result, with the algorithm's own error ([`TaskError::Algorithm`])
//! kept apart from traps and limits.

use std::time::Duration;

/// A component refused at load time, before instantiation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Larger than the configured limit.
    #[error("the component is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a valid WebAssembly component (a core module, garbage, a truncated file).
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// Imports outside the allow-list, each named.
    #[error(
        "the component imports {}, which the sandbox does not provide (allowed: {})",
        imports.join(", "),
        crate::imports::ALLOWED_DESCRIPTION
    )]
    ForbiddenImports {
        /// The refused imports, as the component names them.
        imports: Vec<String>,
    },
    /// Built against a version of the contract that this host no longer runs.
    #[error(
        "the component was built against c2ssi:algorithm@{version}, which this host no longer \
         runs (it has no `predict`, and its `evaluate` names no loss or score); rebuild it \
         against this release's c2ssi-guest-sdk, which implements c2ssi:algorithm@{current}",
        current = crate::imports::CONTRACT_VERSION
    )]
    RetiredContract {
        /// The version the component imports.
        version: String,
    },
    /// Does not export the `c2ssi:algorithm` world.
    #[error("the component does not export the c2ssi:algorithm world: {0}")]
    NotAnAlgorithm(String),
    /// Its shape is past a limit checked before compiling (functions, body
    /// size, locals, branch tables, nesting, segments, types, modules).
    #[error(transparent)]
    Shape(#[from] crate::shape::ShapeExceeded),
    /// Compiling it took more CPU time than the compile budget.
    #[error(
        "compiling the component took more than {limit:?} of CPU time, the limit; it is refused"
    )]
    CompileTime {
        /// The compile CPU-time budget.
        limit: Duration,
    },
    /// Compiling it needed more memory than the compile memory limit.
    #[error(
        "compiling the component needed more than {limit} bytes of memory, the limit; it is refused"
    )]
    CompileMemory {
        /// The compile memory limit, in bytes.
        limit: u64,
    },
    /// The compile child failed for a reason of its own (could not start,
    /// crashed).
    #[error("the compiler process failed: {0}")]
    Compiler(String),
    /// The engine could not be set up.
    #[error("the sandbox engine could not start: {0}")]
    Engine(String),
}

/// A task that did not produce a valid result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The algorithm ran and returned an error of its own.
    #[error("the algorithm reported an error: {0}")]
    Algorithm(String),
    /// It used up its fuel.
    #[error("the algorithm ran out of fuel (limit {limit} units)")]
    OutOfFuel {
        /// The fuel limit.
        limit: u64,
    },
    /// It ran past its wall-clock deadline.
    #[error("the algorithm ran past its wall-clock deadline of {limit:?}")]
    Deadline {
        /// The deadline.
        limit: Duration,
    },
    /// It tried to grow its memory past the limit.
    #[error(
        "the algorithm tried to grow its memory to {requested} bytes; the limit is {limit} bytes"
    )]
    MemoryLimit {
        /// The memory limit.
        limit: usize,
        /// The size it asked for.
        requested: usize,
    },
    /// It overflowed the WebAssembly stack.
    #[error("the algorithm overflowed its stack (limit {limit} bytes)")]
    StackOverflow {
        /// The stack limit.
        limit: usize,
    },
    /// It panicked.
    #[error("the algorithm panicked: {message}")]
    Panic {
        /// The panic's message.
        message: String,
    },
    /// It called `exit`.
    #[error("the algorithm exited with status {code}")]
    Exited {
        /// The exit status.
        code: i32,
    },
    /// Any other trap.
    #[error("the algorithm trapped: {0}")]
    Trap(String),
    /// Its result broke the contract (wrong length, not finite, too many metrics).
    #[error("the algorithm's result was refused: {0}")]
    InvalidResult(String),
    /// It could not be instantiated.
    #[error("the algorithm could not be instantiated: {0}")]
    Instantiate(String),
    /// The hyper-parameters or the table's columns do not fit what the
    /// algorithm declares.
    #[error("{0}")]
    Params(String),
}

impl TaskError {
    /// A short, stable name for logs and counts: `algorithm`, `out-of-fuel`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::Algorithm(_) => "algorithm",
            TaskError::OutOfFuel { .. } => "out-of-fuel",
            TaskError::Deadline { .. } => "deadline",
            TaskError::MemoryLimit { .. } => "memory-limit",
            TaskError::StackOverflow { .. } => "stack-overflow",
            TaskError::Panic { .. } => "panic",
            TaskError::Exited { .. } => "exited",
            TaskError::Trap(_) => "trap",
            TaskError::InvalidResult(_) => "invalid-result",
            TaskError::Instantiate(_) => "instantiate",
            TaskError::Params(_) => "params",
        }
    }
}
