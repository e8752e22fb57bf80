//! An author's first minutes: `collective algorithm new` makes a crate that
//! builds into a component and runs in a wallet's sandbox at once.

use std::process::Command;

use crate::support::{WalletDir, binary, run_ok};

pub(crate) fn a_new_algorithm_builds_and_runs_in_a_wallet_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let crate_dir = dir.path().join("my-algo");
    let made = run_ok(
        Command::new(binary("collective"))
            .args(["algorithm", "new", "my-algo", "--dir"])
            .arg(&crate_dir),
    );
    assert!(
        made.contains("cargo build --release --target wasm32-wasip2"),
        "{made}"
    );
    // As the author would, from the new crate; offline, on the lock file the
    // scaffold copied from the SDK's workspace.
    run_ok(
        Command::new(env!("CARGO"))
            .args([
                "build",
                "--offline",
                "--release",
                "--target",
                "wasm32-wasip2",
            ])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", dir.path().join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    );
    // Its own tests, natively: it learns a line and predicts in the label's units.
    let tested = run_ok(
        Command::new(env!("CARGO"))
            .args(["test", "--offline"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", dir.path().join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    );
    assert!(tested.contains("test result: ok. 2 passed"), "{tested}");
    let component = dir.path().join("target/wasm32-wasip2/release/my_algo.wasm");
    assert!(component.exists(), "{} was not built", component.display());
    let wallet = WalletDir::create(dir.path(), "author", 3);
    let out = run_ok(&mut wallet.command(&[
        "run",
        component.to_str().expect("utf-8"),
        "--table",
        "diabetes",
        "--params",
        "label=progression",
    ]));
    assert!(out.contains("my-algo 0.1.0"), "{out}");
    assert!(out.contains("result           ok, 1 examples"), "{out}");
}
