//! Each hostile component is stopped with its own clear error, and a normal
//! task runs after it in the same sandbox. `foreach_hostile!` makes a missing
//! test for any component in `test-guests/examples/` a compile error.

use std::time::{Duration, Instant};

use c2ssi_guest_sdk::Param;
use c2ssi_sandbox::{CheckedUpdate, LoadError, Sandbox, TaskError, TaskReport};

use crate::support::*;

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
test_guest_artifacts::foreach_hostile!(assert_test_exists);

/// Trains the named hostile component on a small table with default limits.
fn train_hostile(sandbox: &Sandbox, path: &str) -> TaskReport<CheckedUpdate> {
    let component = load(sandbox, path);
    let table = linear_table(8, 2);
    sandbox.train(&component, &[0.0; 3], &[], &table, 7, None)
}

/// A normal task still runs, and gives the right answer, in the same sandbox.
fn assert_normal_task_runs(sandbox: &Sandbox) {
    let component = load(sandbox, test_guest_artifacts::LINEAR_REGRESSION);
    let params: Vec<Param> = vec![text("label", "y")];
    let update = sandbox
        .train(
            &component,
            &[0.0; 3],
            &params,
            &linear_table(16, 2),
            1,
            None,
        )
        .into_result()
        .expect("a normal task runs after a hostile one");
    assert_eq!(update.update.delta.len(), 3);
    assert!(update.update.delta.iter().any(|v| *v != 0.0));
}

fn load_error(sandbox: &Sandbox, path: &str) -> LoadError {
    let bytes = std::fs::read(path).expect("component was built");
    sandbox
        .load(&bytes)
        .expect_err("the component must be refused")
}

#[test]
fn infinite_loop() {
    let sandbox = sandbox();
    let start = Instant::now();
    let report = train_hostile(&sandbox, test_guest_artifacts::INFINITE_LOOP);
    let elapsed = start.elapsed();
    let err = report.result.expect_err("an infinite loop cannot finish");
    assert!(
        matches!(
            err,
            TaskError::OutOfFuel { .. } | TaskError::Deadline { .. }
        ),
        "{err}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
    assert!(report.stats.fuel_used > 0);
    assert_normal_task_runs(&sandbox);
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline_when_fuel_is_ample() {
    let limits = c2ssi_sandbox::SandboxLimits {
        fuel: u64::MAX / 2,
        deadline: Duration::from_millis(200),
        ..Default::default()
    };
    let sandbox = sandbox_with(limits);
    let start = Instant::now();
    let err = train_hostile(&sandbox, test_guest_artifacts::INFINITE_LOOP)
        .result
        .expect_err("stopped");
    assert_eq!(
        err.to_string(),
        "the algorithm ran past its wall-clock deadline of 200ms"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_normal_task_runs(&sandbox);
}

#[test]
fn allocate_3gib() {
    let sandbox = sandbox();
    let report = train_hostile(&sandbox, test_guest_artifacts::ALLOCATE_3GIB);
    match report.result {
        Err(TaskError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 256 << 20);
            assert!(requested > limit, "{requested}");
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert!(report.stats.peak_memory_bytes <= 256 << 20);
    assert_normal_task_runs(&sandbox);
}

#[test]
fn unbounded_recursion() {
    let sandbox = sandbox();
    let err = train_hostile(&sandbox, test_guest_artifacts::UNBOUNDED_RECURSION)
        .result
        .expect_err("recursion without end cannot finish");
    assert_eq!(
        err,
        TaskError::StackOverflow {
            limit: sandbox.limits().max_wasm_stack
        }
    );
    assert!(err.to_string().contains("overflowed its stack"));
    assert_normal_task_runs(&sandbox);
}

#[test]
fn panic() {
    let sandbox = sandbox();
    let err = train_hostile(&sandbox, test_guest_artifacts::PANIC)
        .result
        .expect_err("a panic is an error");
    match &err {
        TaskError::Panic { message } => {
            assert!(
                message.starts_with("this algorithm panics on purpose (seed 7)"),
                "{message}"
            );
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_normal_task_runs(&sandbox);
}

#[test]
fn exit() {
    let sandbox = sandbox();
    let err = train_hostile(&sandbox, test_guest_artifacts::EXIT)
        .result
        .expect_err("exit is an error");
    assert_eq!(err, TaskError::Exited { code: 1 });
    assert_eq!(err.to_string(), "the algorithm exited with status 1");
    assert_normal_task_runs(&sandbox);
}

fn assert_refused_import(path: &str, interface: &str) {
    let sandbox = sandbox();
    match load_error(&sandbox, path) {
        LoadError::ForbiddenImports { imports } => {
            assert!(
                imports.iter().any(|i| i.starts_with(interface)),
                "{imports:?} should name {interface}"
            );
            assert!(imports.iter().all(|i| !i.starts_with("wasi:io/")));
        }
        other => panic!("expected a refused import, got {other}"),
    }
    let message = load_error(&sandbox, path).to_string();
    assert!(message.contains(interface), "{message}");
    assert_normal_task_runs(&sandbox);
}

#[test]
fn import_sockets() {
    assert_refused_import(test_guest_artifacts::IMPORT_SOCKETS, "wasi:sockets/");
}

#[test]
fn import_filesystem() {
    assert_refused_import(test_guest_artifacts::IMPORT_FILESYSTEM, "wasi:filesystem/");
}

#[test]
fn import_http() {
    assert_refused_import(
        test_guest_artifacts::IMPORT_HTTP,
        "wasi:http/outgoing-handler",
    );
}

#[test]
fn wrong_length_update() {
    let sandbox = sandbox();
    let err = train_hostile(&sandbox, test_guest_artifacts::WRONG_LENGTH_UPDATE)
        .result
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the algorithm's result was refused: update has 4 values but the model has 3"
    );
    assert_normal_task_runs(&sandbox);
}

#[test]
fn nan_update() {
    let sandbox = sandbox();
    let err = train_hostile(&sandbox, test_guest_artifacts::NAN_UPDATE)
        .result
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the algorithm's result was refused: update value 0 is NaN, not a finite number"
    );
    assert_normal_task_runs(&sandbox);
}

#[test]
fn stdout_flood() {
    let sandbox = sandbox();
    let report = train_hostile(&sandbox, test_guest_artifacts::STDOUT_FLOOD);
    let update = report.result.expect("a chatty algorithm still completes");
    assert_eq!(update.update.delta, vec![0.0; 3]);
    let stdout = &report.stats.stdout;
    assert_eq!(stdout.total, 100 << 20);
    assert_eq!(stdout.bytes.len(), sandbox.limits().output_capture_bytes);
    assert!(stdout.truncated());
    assert_normal_task_runs(&sandbox);
}

#[test]
fn huge_describe() {
    let sandbox = sandbox();
    let component = load(&sandbox, test_guest_artifacts::HUGE_DESCRIBE);
    let err = sandbox.describe(&component).result.expect_err("refused");
    assert!(
        err.to_string()
            .contains("describe: the name of 1048576 bytes exceeds the limit of 128 bytes"),
        "{err}"
    );
    assert!(matches!(err, TaskError::InvalidResult(_)), "{err:?}");
    assert_normal_task_runs(&sandbox);
}

#[test]
fn huge_output() {
    let sandbox = sandbox();
    let err = train_hostile(&sandbox, test_guest_artifacts::HUGE_OUTPUT)
        .result
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("update of 8388608 values (33554432 bytes) exceeds the limit"),
        "{err}"
    );
    assert_normal_task_runs(&sandbox);
}

#[test]
fn bad_predictions() {
    let sandbox = sandbox();
    let component = load(&sandbox, test_guest_artifacts::BAD_PREDICTIONS);
    let table = linear_table(8, 2);
    for (mode, expected) in [
        (
            "long",
            "column 'long' has 9 values but the table has 8 rows",
        ),
        ("nan", "column 'nan', row 1: NaN is not a finite number"),
        (
            "misnamed",
            "the first column is named 'not-the-label' but must be the label, 'misnamed'",
        ),
        ("many", "2000 columns; at most 1025 are allowed"),
    ] {
        let label = c2ssi_guest_sdk::ColumnSpec {
            name: mode.into(),
            ty: c2ssi_guest_sdk::ColumnType::Real {
                min: None,
                max: None,
            },
        };
        let err = sandbox
            .predict(&component, &[0.0; 3], &[], &table, &label)
            .result
            .expect_err("refused");
        assert!(
            matches!(err, TaskError::InvalidResult(_)),
            "{mode}: {err:?}"
        );
        assert!(err.to_string().contains(expected), "{mode}: {err}");
    }
    assert_normal_task_runs(&sandbox);
}

#[test]
fn contract_0_1() {
    let sandbox = sandbox();
    let err = load_error(&sandbox, test_guest_artifacts::CONTRACT_0_1);
    assert!(
        matches!(&err, LoadError::RetiredContract { version } if version == "0.1.0"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("built against c2ssi:algorithm@0.1.0")
            && message.contains("implements c2ssi:algorithm@0.2.0"),
        "{message}"
    );
    assert_normal_task_runs(&sandbox);
}
