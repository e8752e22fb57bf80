//! The README's walkthrough ("A collective over HTTP"), run as written: its
//! shell block is taken from `README.md` and run by bash. Only what a test
//! must change is changed: the programs come from this build instead of
//! `cargo build --release`, the scratch directory and the two ports are
//! fresh, and the background processes are stopped at the end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{binary, free_port, repo};

/// The README's fenced `sh` block under `heading`.
fn shell_block(readme: &str, heading: &str) -> String {
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no section {heading:?}"))..];
    let start = section.find("```sh\n").expect("a shell block") + "```sh\n".len();
    let end = start + section[start..].find("\n```").expect("its end");
    section[start..end].to_string()
}

/// How long the whole walkthrough may take (debug builds, a busy machine).
const LIMIT: Duration = Duration::from_secs(420);

pub(crate) fn the_readme_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let block = shell_block(&readme, "## A collective over HTTP");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let scratch = dir.path().join("c2ssi");
    let bin = binary("collective");
    let bin = bin.parent().expect("the binaries' directory");
    let (broker, aggregator) = (free_port(), free_port());
    let mut script = String::from(
        "set -euo pipefail\n\
         # Every process the walkthrough started in the background stops with it.\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    );
    let mut replaced_build = 0;
    for line in block.lines() {
        if line.starts_with("cargo build") {
            replaced_build += 1;
            continue;
        }
        let line = line
            .replace("$PWD/target/release", &bin.display().to_string())
            .replace(
                "target/wasm32-wasip2/release/linear_regression.wasm",
                test_guest_artifacts::LINEAR_REGRESSION,
            )
            .replace("/tmp/c2ssi", &scratch.display().to_string())
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{broker}"))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{aggregator}"));
        script.push_str(&line);
        script.push('\n');
    }
    assert_eq!(
        replaced_build, 2,
        "the walkthrough builds with two commands"
    );
    for (what, needle) in [
        ("starts the aggregator", "aggregator serve"),
        ("starts the broker", "broker serve"),
        ("trains", "collective train"),
        ("verifies the ledger", "collective ledger verify"),
        ("runs the wallet agents", "wallet agent &"),
    ] {
        assert!(script.contains(needle), "the walkthrough no longer {what}");
    }
    let output = dir.path().join("output.txt");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo())
        .env_remove("WALLET_DIR")
        .env_remove("WALLET_IDENTITY")
        .env_remove("WALLET_PASSPHRASE")
        .env_remove("COLLECTIVE_HOME")
        .env_remove("COLLECTIVE_ID")
        .env_remove("BROKER_URL")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&output).expect("output file"))
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&output)
                .expect("output file"),
        ))
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for bash") {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Whatever happened, nothing the walkthrough started outlives it.
    // bash's own kill: procps' `kill -KILL -PGID` can read the group as a
    // signal number and signal every process of the user instead.
    let _ = Command::new("bash")
        .arg("-c")
        .arg(format!("kill -KILL -- -{} 2>/dev/null", child.id()))
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the walkthrough did not end within {LIMIT:?}:\n{text}\n(agents' logs under {})",
            scratch.display()
        )
    });
    assert!(
        status.success(),
        "the walkthrough failed ({status}):\n{text}"
    );
    for needle in [
        "completed  rounds released 5/5",
        " verifies: ",
        // Wallet 1's log: an update it sent; and what it earned.
        ", sent",
        "total from c-",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

use std::os::unix::process::CommandExt as _;
