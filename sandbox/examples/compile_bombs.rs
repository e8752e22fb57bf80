//! Measures each compile bomb against the sandbox's compile budget: what it
//! was refused for, how long the refusal took, and the peak resident memory
//! of the compile child. One bomb per run, so that the children's peak is that
//! bomb's own: `scripts/compile-bombs.sh` runs them all.
//!
//! `cargo run --release -p c2ssi-sandbox --example compile_bombs -- <bomb>`

#[path = "../tests/integration/bomb_builders.rs"]
#[allow(dead_code, reason = "shared with the tests, which use all of it")]
mod bomb_builders;

use std::process::ExitCode;
use std::time::Instant;

use c2ssi_sandbox::{Sandbox, SandboxLimits};

/// One bomb: its name, what it is, its builder.
type Bomb = (&'static str, &'static str, fn() -> Vec<u8>);

/// Every bomb, and the honest algorithms to compare with.
const BOMBS: &[Bomb] = &[
    (
        "straight-line-30mb",
        "one function of 30 MB of straight-line code",
        || bomb_builders::straight_line(1, 30 << 20),
    ),
    (
        "straight-line-16mb-in-shape",
        "32 functions of 500 KiB straight-line code (16 MB, within the shape limits)",
        || bomb_builders::straight_line(32, 500 << 10),
    ),
    ("empty-functions-1m", "1,000,000 empty functions", || {
        bomb_builders::empty_functions(1_000_000)
    }),
    (
        "empty-functions-20k",
        "20,000 empty functions (the shape limit)",
        || bomb_builders::empty_functions(20_000),
    ),
    ("branch-table-1m", "a br_table of 1,000,000 targets", || {
        bomb_builders::branch_table(1_000_000)
    }),
    ("huge-frames-50k", "a function of 50,000 i64 locals", || {
        bomb_builders::huge_frames(1, 50_000)
    }),
    (
        "huge-frames-in-shape",
        "200 functions of 10,000 i64 locals each (within the shape limits)",
        || bomb_builders::huge_frames(200, 10_000),
    ),
    ("deep-nesting-100k", "100,000 nested blocks", || {
        bomb_builders::deep_nesting(100_000)
    }),
    (
        "linear-regression",
        "an honest algorithm of this repository",
        || read(test_guest_artifacts::LINEAR_REGRESSION),
    ),
    (
        "logistic-regression",
        "an honest algorithm of this repository",
        || read(test_guest_artifacts::LOGISTIC_REGRESSION),
    ),
    (
        "softmax-regression",
        "an honest algorithm of this repository",
        || read(test_guest_artifacts::SOFTMAX_REGRESSION),
    ),
    (
        "elm-ridge",
        "an honest algorithm of this repository",
        || read(test_guest_artifacts::ELM_RIDGE),
    ),
];

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// The largest resident set of any compile child so far, in bytes.
fn children_peak_rss() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
}

fn main() -> ExitCode {
    c2ssi_sandbox::compile_child_hook();
    let Some(name) = std::env::args().nth(1) else {
        for (name, what, _) in BOMBS {
            println!("{name:28} {what}");
        }
        return ExitCode::SUCCESS;
    };
    let Some((name, what, build)) = BOMBS.iter().find(|(n, _, _)| *n == name) else {
        eprintln!("no bomb named {name}; run without arguments for the list");
        return ExitCode::FAILURE;
    };
    let bytes = build();
    if let Ok(shape) = c2ssi_sandbox::component_shape(&bytes) {
        eprintln!("{name}: {shape:?}");
    }
    let sandbox = match Sandbox::new(SandboxLimits::default()) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let outcome = match sandbox.load(&bytes) {
        Ok(_) => "compiled".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    let elapsed = start.elapsed();
    println!(
        "| {name} | {what} | {:.1} MB | {:.2} s | {:.0} MiB | {outcome} |",
        bytes.len() as f64 / 1e6,
        elapsed.as_secs_f64(),
        children_peak_rss() as f64 / f64::from(1 << 20),
    );
    ExitCode::SUCCESS
}
