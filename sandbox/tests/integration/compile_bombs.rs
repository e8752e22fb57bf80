//! Compile bombs, built by `bomb_builders`, are refused before compiling when
//! their shape is past a limit, and stopped by the compile budget (deadline,
//! memory) when it is not; the same sandbox then loads an honest algorithm.

use std::time::{Duration, Instant};

use c2ssi_sandbox::{LoadError, Sandbox, SandboxLimits, ShapeExceeded};

use crate::bomb_builders;
use crate::support::*;

fn refused(sandbox: &Sandbox, bytes: &[u8]) -> (LoadError, Duration) {
    let start = Instant::now();
    let err = sandbox.load(bytes).expect_err("the bomb must be refused");
    (err, start.elapsed())
}

fn assert_honest_algorithm_loads(sandbox: &Sandbox) {
    load(sandbox, test_guest_artifacts::ELM_RIDGE);
}

fn shape_item(err: &LoadError) -> &'static str {
    match err {
        LoadError::Shape(ShapeExceeded { item, .. }) => item,
        other => panic!("expected a shape refusal, got {other:?}"),
    }
}

#[test]
fn bombs_past_the_shape_limits_are_refused_before_compiling() {
    let sandbox = sandbox();
    let cases = [
        (bomb_builders::straight_line(1, 30 << 20), "bytes of code"),
        (
            bomb_builders::straight_line(1, 1 << 20),
            "bytes in one function body",
        ),
        (bomb_builders::empty_functions(1_000_000), "functions"),
        (
            bomb_builders::branch_table(100_000),
            "targets in one br_table",
        ),
        (
            bomb_builders::huge_frames(1, 20_000),
            "locals in one function",
        ),
        (
            bomb_builders::deep_nesting(10_000),
            "levels of nested blocks",
        ),
    ];
    for (bytes, item) in cases {
        let (err, _) = refused(&sandbox, &bytes);
        assert_eq!(shape_item(&err), item, "{err}");
    }
    assert_eq!(
        refused(&sandbox, &bomb_builders::empty_functions(1_000_000))
            .0
            .to_string(),
        "the component has 1000000 functions; the limit is 20000"
    );
    assert_honest_algorithm_loads(&sandbox);
}

#[test]
fn a_bomb_within_the_shape_limits_is_stopped_by_the_compile_cpu_budget() {
    let limits = SandboxLimits {
        compile_cpu_time: Duration::from_secs(1),
        ..Default::default()
    };
    let sandbox = sandbox_with(limits);
    // 16 MB of straight-line code in 32 functions: within every shape limit,
    // and over five seconds of single-threaded compiling.
    let (err, elapsed) = refused(&sandbox, &bomb_builders::straight_line(32, 500 << 10));
    assert!(
        matches!(err, LoadError::CompileTime { limit } if limit == Duration::from_secs(1)),
        "{err:?}"
    );
    // The wall-clock backstop is 6 s; the CPU limit stops it before.
    assert!(
        elapsed < Duration::from_secs(6),
        "stopped after {elapsed:?}"
    );
    // The budget covers compiling only: an honest algorithm still loads
    // under the default budget.
    assert_honest_algorithm_loads(&self::sandbox());
}

#[test]
fn a_bomb_that_needs_more_memory_than_the_budget_is_stopped() {
    let limits = SandboxLimits {
        compile_memory_bytes: 64 << 20,
        compile_cpu_time: Duration::from_secs(120),
        ..Default::default()
    };
    let sandbox = sandbox_with(limits);
    let (err, _) = refused(&sandbox, &bomb_builders::straight_line(32, 500 << 10));
    assert!(
        matches!(err, LoadError::CompileMemory { limit } if limit == 64 << 20),
        "{err:?}"
    );
    assert_honest_algorithm_loads(&self::sandbox());
}

#[test]
fn honest_algorithms_compile_in_the_child_and_run() {
    let sandbox = sandbox();
    assert!(matches!(
        sandbox.compiler(),
        c2ssi_sandbox::Compiler::Subprocess(_)
    ));
    for path in [
        test_guest_artifacts::LINEAR_REGRESSION,
        test_guest_artifacts::LOGISTIC_REGRESSION,
        test_guest_artifacts::SOFTMAX_REGRESSION,
        test_guest_artifacts::ELM_RIDGE,
    ] {
        let component = load(&sandbox, path);
        let info = sandbox
            .describe(&component)
            .into_result()
            .expect("describe runs");
        assert!(!info.name.is_empty());
    }
}

#[test]
fn the_compile_child_refuses_to_run_as_anything_else() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_c2ssi-compile-child"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_c2ssi-compile-child"))
        .arg(c2ssi_sandbox::CHILD_ARG)
        .arg("not-a-number")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
}
