//! Compilation under a budget: a component is compiled in a child process
//! (this same binary, re-run with [`CHILD_ARG`]) that has an address-space
//! and a CPU-time limit and is killed at a wall-clock backstop, so that no
//! component, however built to attack the compiler, costs the host more than
//! the budget. The child writes wasmtime's serialized artifact to its stdout.
//!
//! Wasmtime has no setting that bounds the work of compiling one module, and
//! Cranelift's memory use is not limited by anything in-process, so the
//! boundary is the operating system's: a process, `setrlimit`, and `kill`.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::LoadError;
use crate::limits::SandboxLimits;

/// The first argument that makes a binary a compile child.
pub const CHILD_ARG: &str = "__c2ssi-compile-component";

/// Exit status of a child that found the component invalid.
const EXIT_INVALID: u8 = 2;
/// Exit status of a child whose engine or limits could not be set up.
const EXIT_SETUP: u8 = 3;
/// Exit status of a child that ran out of memory while compiling (an
/// allocation failure aborts instead; both mean the same).
const EXIT_OUT_OF_MEMORY: u8 = 4;
/// The most of a child's stderr kept for an error message.
const STDERR_KEPT: u64 = 16 << 10;

static HOOKED: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main` of every binary that builds a [`crate::Sandbox`]:
/// in a compile child it compiles and exits; otherwise it records that this
/// binary can serve as its own compile child, which makes
/// [`Compiler::detect`] choose [`Compiler::Subprocess`].
pub fn compile_child_hook() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(OsStr::new(CHILD_ARG)) {
        let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        let code = child_main(&args);
        // Flushes nothing else: the child wrote its artifact already.
        std::process::exit(i32::from(code));
    }
    HOOKED.store(true, Ordering::SeqCst);
}

/// Where components are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// In a child process under the compile budget: the safe setting, and
    /// what every binary of this project uses.
    Subprocess(PathBuf),
    /// In this process, bounded only by the shape check. **Unsafe against a
    /// hostile component**: a compile bomb within the shape limits may still
    /// cost seconds and hundreds of megabytes. For tests and embedders that
    /// cannot re-run their binary.
    InProcess,
}

impl Compiler {
    /// [`Compiler::Subprocess`] with this binary when [`compile_child_hook`]
    /// ran in `main`, else [`Compiler::InProcess`].
    pub fn detect() -> Compiler {
        if HOOKED.load(Ordering::SeqCst)
            && let Ok(exe) = std::env::current_exe()
        {
            return Compiler::Subprocess(exe);
        }
        Compiler::InProcess
    }
}

/// The engine configuration every compile uses, parent and child alike: the
/// serialized artifact only loads into an engine configured the same way.
pub(crate) fn base_config(limits: &SandboxLimits) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(limits.max_wasm_stack)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Wasmtime's inliner (`Inlining::Yes`) made logistic regression 6% faster
    // in the sandbox but doubled compile time (2.0 s of CPU for the linear
    // regression component): with forty wallet agents compiling at once on
    // two cores, honest components ran past the compile budget and every
    // wallet refused them. It stays at wasmtime's default, off.
    config
}

/// Compiles `bytes` in a child process `program` under `limits`' compile
/// budget, counted from `start` (when loading began, so that the checks before
/// count too), and returns the serialized artifact.
pub(crate) fn in_child(
    program: &PathBuf,
    bytes: &[u8],
    limits: &SandboxLimits,
    start: Instant,
) -> Result<Vec<u8>, LoadError> {
    let cpu_seconds = limits.compile_cpu_time.as_secs().max(1);
    let wall_clock = limits.compile_cpu_time * 4 + Duration::from_secs(2);
    let mut child = Command::new(program)
        .arg(CHILD_ARG)
        .arg(limits.compile_memory_bytes.to_string())
        .arg(cpu_seconds.to_string())
        .arg(limits.max_wasm_stack.to_string())
        .env_clear()
        // One malloc arena: per-thread arenas reserve address space that
        // would count against the limit without being used.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LoadError::Compiler(format!("cannot start {}: {e}", program.display())))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LoadError::Compiler("the child's pipes are missing".into()));
    };
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that dies early closes the pipe; its status says why.
        let _ = stdin.write_all(&input);
    });
    // The artifact is machine code for what passed the shape check: bounded
    // by a generous multiple of the largest component accepted.
    let artifact_limit = u64::try_from(limits.max_component_bytes)
        .unwrap_or(u64::MAX)
        .saturating_mul(16);
    let out_reader = std::thread::spawn(move || {
        // One byte past the limit tells an artifact cut off from one that fits.
        let mut out = Vec::new();
        let _ = stdout
            .take(artifact_limit.saturating_add(1))
            .read_to_end(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr.take(STDERR_KEPT).read_to_end(&mut out);
        out
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > wall_clock => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                let _ = out_reader.join();
                let _ = err_reader.join();
                return Err(LoadError::CompileTime {
                    limit: limits.compile_cpu_time,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LoadError::Compiler(format!("waiting for the child: {e}")));
            }
        }
    };
    let _ = writer.join();
    let artifact = out_reader.join().unwrap_or_default();
    let message = String::from_utf8_lossy(&err_reader.join().unwrap_or_default())
        .trim()
        .to_string();
    if status.success() {
        if artifact.len() as u64 > artifact_limit {
            return Err(LoadError::Compiler(format!(
                "the compiled artifact is larger than {artifact_limit} bytes"
            )));
        }
        return Ok(artifact);
    }
    use std::os::unix::process::ExitStatusExt;
    const SIGABRT: i32 = 6;
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    match (status.code(), status.signal()) {
        (Some(code), _) if code == i32::from(EXIT_INVALID) => Err(LoadError::Invalid(message)),
        (Some(code), _) if code == i32::from(EXIT_OUT_OF_MEMORY) => Err(LoadError::CompileMemory {
            limit: limits.compile_memory_bytes,
        }),
        // Rust aborts when an allocation fails under the address-space limit.
        (_, Some(SIGABRT)) => Err(LoadError::CompileMemory {
            limit: limits.compile_memory_bytes,
        }),
        (_, Some(SIGXCPU | SIGKILL)) => Err(LoadError::CompileTime {
            limit: limits.compile_cpu_time,
        }),
        _ => Err(LoadError::Compiler(format!(
            "the compile child ended with {status}: {message}"
        ))),
    }
}

/// The child: reads the component from stdin, limits itself, compiles, and
/// writes the artifact to stdout. `args`: memory bytes, CPU seconds, stack.
fn child_main(args: &[String]) -> u8 {
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(memory), Some(cpu), Some(stack)) = (number(0), number(1), number(2)) else {
        eprintln!("usage: {CHILD_ARG} <memory-bytes> <cpu-seconds> <stack-bytes>");
        return EXIT_SETUP;
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the component: {e}");
        return EXIT_SETUP;
    }
    // At the soft CPU limit the kernel sends SIGXCPU (which ends the
    // process); at the hard one, a second later, SIGKILL.
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, memory, memory)
        .and_then(|()| rlimit::setrlimit(rlimit::Resource::CPU, cpu, cpu.saturating_add(1)))
    {
        eprintln!("setting the compile limits: {e}");
        return EXIT_SETUP;
    }
    let limits = SandboxLimits {
        max_wasm_stack: usize::try_from(stack).unwrap_or(usize::MAX),
        ..SandboxLimits::default()
    };
    let mut config = base_config(&limits);
    // One thread: compile time is measured against one core, and threads'
    // stacks would count against the address-space limit.
    config.parallel_compilation(false);
    let engine = match wasmtime::Engine::new(&config) {
        Ok(engine) => engine,
        Err(e) if is_out_of_memory(&e) => return EXIT_OUT_OF_MEMORY,
        Err(e) => {
            eprintln!("the compile engine could not start: {e:#}");
            return EXIT_SETUP;
        }
    };
    match engine.precompile_component(&bytes) {
        Ok(artifact) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&artifact).and_then(|()| out.flush()).is_err() {
                return EXIT_SETUP;
            }
            0
        }
        Err(e) if is_out_of_memory(&e) => EXIT_OUT_OF_MEMORY,
        Err(e) => {
            eprintln!("{e:#}");
            EXIT_INVALID
        }
    }
}

/// Whether a compile error is the address-space limit showing (a mapping of
/// code memory refused) rather than something wrong with the component.
fn is_out_of_memory(e: &wasmtime::Error) -> bool {
    const ENOMEM: i32 = 12;
    e.is::<wasmtime::OutOfMemory>()
        || e.chain().any(|cause| {
            cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                io.kind() == std::io::ErrorKind::OutOfMemory || io.raw_os_error() == Some(ENOMEM)
            })
        })
}
